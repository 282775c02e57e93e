"""grading/compat.py: each private name of another package that the grader uses is still there, and behaves as the
grader uses it; and no module of grading/ but compat.py names one. A release that changes one of them fails here
(grading/constraints.txt pins the versions this passed with)."""
import argparse
import ast
import inspect
import os
from importlib import metadata
from pathlib import Path

import jsonschema
import nbformat
import pytest
import sqlalchemy
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import ConnectionFileMixin
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from nbclient import NotebookClient
import nbgrader.api
from nbgrader.api import Gradebook
from nbgrader.apps import api, autogradeapp
from nbgrader.converters import Autograde
from nbgrader.converters.base import BaseConverter
from nbgrader.coursedir import CourseDirectory

from grading import compat
from grading.commands.gradescope import setup_script, source_files
from grading.compat import (ChannelUrlKernelClient, LaunchingKernelManager, SourceFolderAutograde, cleanup_kernel,
                            option_strings, provisioned_process, reset_notebook_client, scope_scheduler,
                            share_gradebook_engines, stub_solution_regions, subcommand_parsers,
                            use_autograde_converter, validate_each_schema_once)

GRADING = Path(compat.__file__).parent


def calls(function: object, name: str) -> bool:
    """Whether the source of function calls self.<name>(...)."""
    return f"self.{name}(" in inspect.getsource(function)  # type: ignore[arg-type]


class Process:
    """What LocalProvisioner uses of a process."""

    pid = 4242

    def poll(self) -> None:
        return None


def test_jupyter_client_launches_through_the_step_the_kernel_manager_overrides() -> None:
    assert inspect.iscoroutinefunction(AsyncKernelManager._async_launch_kernel)
    assert list(inspect.signature(AsyncKernelManager._async_launch_kernel).parameters) == ["self", "kernel_cmd", "kw"]
    assert calls(AsyncKernelManager._async_start_kernel, "_async_launch_kernel")
    assert "env=" in inspect.getsource(AsyncKernelManager._async_pre_start_kernel) or \
        "env" in inspect.getsource(LocalProvisioner.pre_launch)  # the launch arguments carry the environment


def test_an_adopted_process_is_the_provisioners_and_its_connection_info_the_managers(tmp_path: Path) -> None:
    manager = LaunchingKernelManager(transport="ipc", ip=str(tmp_path / "k"),
                                     connection_file=str(tmp_path / "k.json"))
    manager.provisioner = LocalProvisioner(kernel_id="k", kernel_spec=None, parent=manager)
    info = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5, "ip": manager.ip,
            "key": b"secret", "transport": "ipc", "signature_scheme": "hmac-sha256", "kernel_name": ""}
    manager.provisioner.connection_info = info
    manager.adopt_process(Process(), str(tmp_path))
    assert manager.provisioner.has_process and manager.provisioner.pid == manager.provisioner.pgid == 4242
    assert manager.provisioner.cwd == str(tmp_path) and provisioned_process(manager) == (4242, 4242)
    assert manager.shell_port == 1 and manager.session.key == b"secret"  # _reconcile_connection_info loaded it
    assert not compat.kernel_exited(manager)


def test_the_connection_file_flag_is_what_jupyter_client_checks_before_writing_or_removing_it() -> None:
    assert ConnectionFileMixin.class_traits()["_connection_file_written"].default_value is False
    assert "self._connection_file_written" in inspect.getsource(ConnectionFileMixin.cleanup_connection_file)
    manager = LaunchingKernelManager()
    manager.mark_connection_file_written()
    assert manager._connection_file_written is True


def test_the_manager_and_its_client_take_their_socket_urls_from_channel_url() -> None:
    for channel in ("shell", "iopub", "stdin", "control"):
        assert calls(getattr(AsyncKernelClient, f"{channel}_channel").fget, "_make_url")
    assert calls(ConnectionFileMixin.connect_iopub, "_create_connected_socket")
    assert calls(ConnectionFileMixin._create_connected_socket, "_make_url")

    class Pinned(ChannelUrlKernelClient):
        def channel_url(self, channel: str) -> str:
            return f"ipc:///proc/self/fd/{channel}"

    assert Pinned()._make_url("shell") == "ipc:///proc/self/fd/shell"
    assert LaunchingKernelManager(transport="ipc", ip="/x/k", shell_port=1)._make_url("shell") == "ipc:///x/k-1"
    assert ChannelUrlKernelClient(transport="tcp", ip="127.0.0.1", hb_port=9)._make_url("hb") == "tcp://127.0.0.1:9"


def test_a_used_notebook_client_is_reset_as_a_new_one_and_cleans_up_without_a_kernel() -> None:
    first, second = nbformat.v4.new_notebook(), nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    client = NotebookClient(first)
    client.kc, client.code_cells_executed = object(), 7
    reset_notebook_client(client, second)
    assert client.nb is second and client.km is None and client.kc is None and client.code_cells_executed == 0
    assert "_async_cleanup_kernel" in vars(NotebookClient) and callable(NotebookClient._cleanup_kernel)
    assert "self.km = None" in inspect.getsource(NotebookClient._async_cleanup_kernel)
    with pytest.raises(AssertionError):  # as nbclient's: a client with no kernel manager has nothing to clean up
        cleanup_kernel(client)


def test_nbgrader_looks_its_autograde_converter_up_where_it_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autogradeapp.Autograde is Autograde or issubclass(autogradeapp.Autograde, Autograde)
    assert "Autograde(" in inspect.getsource(autogradeapp.AutogradeApp.start)
    assert "Autograde(" in inspect.getsource(api.NbGraderAPI.autograde)

    class Ours(Autograde):
        pass

    monkeypatch.setattr(autogradeapp, "Autograde", autogradeapp.Autograde)
    monkeypatch.setattr(api, "Autograde", api.Autograde)
    use_autograde_converter(Ours)
    assert autogradeapp.Autograde is Ours and api.Autograde is Ours


def test_nbgrader_reads_submissions_from_the_source_folder_it_formats(tmp_path: Path) -> None:
    assert list(inspect.signature(BaseConverter._format_source).parameters) == ["self", "assignment_id",
                                                                                "student_id", "escape"]
    assert calls(BaseConverter.init_single_notebook_resources, "_format_source")
    assert calls(BaseConverter.convert_notebooks, "_format_source")
    assert calls(Autograde.init_assignment, "_format_source")

    class Staged(SourceFolderAutograde):
        def source_folder(self, assignment_id: str, student_id: str, escape: bool = False) -> str:
            return f"/staged/{student_id}/{assignment_id}" if self.sanitizing else \
                super().source_folder(assignment_id, student_id, escape)

    converter = Staged(coursedir=CourseDirectory(root=str(tmp_path)))
    assert converter._format_source("norm", "alice") == "/staged/alice/norm" and converter.sanitizing
    resources = converter.init_single_notebook_resources("/staged/alice/norm/norm.ipynb")
    assert resources["nbgrader"]["student"] == "alice"
    converter._sanitizing = False  # as nbgrader's convert_single_notebook sets it for the autograde step
    assert not converter.sanitizing and converter._format_source("norm", "alice") == str(tmp_path / "autograded" /
                                                                                          "alice" / "norm")
    assert "self._sanitizing = False" in inspect.getsource(Autograde.convert_single_notebook)


def test_nbgrader_stubs_a_solution_region_of_one_cell() -> None:
    cell = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    stub_solution_regions(cell, "raise NotImplementedError()")
    assert cell.source == "def f():\n    raise NotImplementedError()\n"


def test_each_schema_is_checked_once_and_every_instance_still_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonschema, "validate", jsonschema.validate)
    checked = []
    monkeypatch.setattr(jsonschema.Draft202012Validator, "check_schema",
                        classmethod(lambda cls, schema: checked.append(schema)))
    validate_each_schema_once()
    validate_each_schema_once()  # idempotent: not wrapped twice
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "required": ["grade"], "properties": {"grade": {"type": "boolean"}}}
    jsonschema.validate({"grade": True}, schema)
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'boolean'"):
        jsonschema.validate({"grade": "yes"}, schema)
    assert checked == [schema]
    assert "jsonschema.validate(" in inspect.getsource(__import__("nbgrader.nbgraderformat.common").nbgraderformat
                                                       .common)


def test_a_bad_schema_is_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsonschema, "validate", jsonschema.validate)
    validate_each_schema_once()
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.validate({}, {"type": "no such type"})


@pytest.fixture
def shared_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """share_gradebook_engines() in force with engines of this test's own, undone afterwards."""
    monkeypatch.setattr(nbgrader.api, "create_engine", sqlalchemy.create_engine)
    share_gradebook_engines()
    share_gradebook_engines()  # idempotent: not wrapped twice


@pytest.mark.usefixtures("shared_engines")
def test_gradebooks_of_one_database_share_its_engine_and_no_other(tmp_path: Path) -> None:
    assert "create_engine(db_url" in inspect.getsource(Gradebook.__init__)
    first, second = (f"sqlite:///{tmp_path / name}.db" for name in ("first", "second"))
    with Gradebook(first) as a, Gradebook(first) as b, Gradebook(second) as c:
        assert a.engine is b.engine and a.engine is not c.engine and a.db is not b.db
        a.add_student("alice")
        assert [s.id for s in b.students] == ["alice"] and c.students == []


@pytest.mark.usefixtures("shared_engines")
def test_a_database_made_again_at_the_same_path_is_read_afresh(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_student("alice")
    (tmp_path / "gradebook.db").unlink()
    with Gradebook(url) as gb:
        assert gb.students == []


@pytest.mark.usefixtures("shared_engines")
def test_a_child_forked_while_a_gradebook_is_open_uses_connections_of_its_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_student("alice")
        assert gb.engine.pool.checkedin() == 1, "the parent's connection waits in the pool"
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if it reads and writes through its own connection
            try:
                if gb.engine.pool.checkedin():
                    os._exit(3)
                with Gradebook(url) as child:
                    child.add_student("bob")
                    os._exit(0 if {s.id for s in child.students} == {"alice", "bob"} else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        gb.db.expire_all()
        assert {s.id for s in gb.students} == {"alice", "bob"}


def test_xdist_groups_tests_by_the_scope_the_scheduler_gives() -> None:
    from xdist.scheduler import LoadScopeScheduling

    assert calls(LoadScopeScheduling, "_split_scope")  # how it groups the collected tests into work units

    class Config:
        def getvalue(self, name: str) -> object:
            return {"tx": ["2*popen"], "dist": "loadscope"}.get(name)

    scheduler = scope_scheduler(Config(), None, lambda nodeid: nodeid.split("::")[0].upper())
    assert isinstance(scheduler, LoadScopeScheduling)
    assert scheduler._split_scope("a/test_x.py::test_y") == "A/TEST_X.PY"


CONSTRAINTS = GRADING / "constraints.txt"


def pins() -> dict[str, str]:
    """{distribution: version} of grading/constraints.txt."""
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def test_the_packages_whose_private_names_are_used_are_pinned_at_the_versions_installed() -> None:
    pinned = pins()
    assert {"jupyter_client", "nbclient", "ipykernel", "nbgrader", "nbconvert", "jsonschema", "pytest-xdist"} <= \
        set(pinned)
    installed = {name: metadata.version(name) for name in pinned}
    assert installed == pinned, "the suite runs on other versions than grading/constraints.txt pins: update it " \
                                "once `make test` passes on them"


def test_make_and_gradescopes_setup_install_with_the_constraints() -> None:
    install = (GRADING.parent / "Makefile").read_text().split("$(VENV)/installed:", 1)[1].split("\n\n", 1)[0]
    assert "pip install" in install and "-c grading/constraints.txt" in install
    assert '-c "$source_dir/grading/constraints.txt"' in setup_script()
    assert ("grading/constraints.txt", CONSTRAINTS) in source_files()  # in the zip, where setup.sh reads it


def test_argparse_names_a_parsers_options_and_its_subcommands() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    commands = parser.add_subparsers()
    autograde = commands.add_parser("autograde")
    autograde.add_argument("-j", "--jobs")
    assert subcommand_parsers(parser) == {"autograde": autograde} and subcommand_parsers(autograde) == {}
    assert option_strings(parser) == {"-h", "--help", "--out"}
    assert option_strings(autograde) == {"-h", "--help", "-j", "--jobs"}


# The private names of other packages that compat.py uses (or overrides), there only
FOREIGN = {"_async_launch_kernel", "_reconcile_connection_info", "_connection_file_written", "_make_url",
           "_cleanup_kernel", "_format_source", "_sanitizing", "_replace_solution_region", "_split_scope", "_actions",
           "_SubParsersAction", "_option_string_actions"}
# CPython's documented names that begin with an underscore
DOCUMENTED = {"_exit", "_getframe", "_replace", "_asdict", "_fields", "_make", "_value_", "_name_", "_missing_"}
# Code that runs inside the sandbox, sent there as source text: grading/ (compat.py) cannot be imported there
SANDBOXED = GRADING / "sandboxed"


def private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__") and name not in DOCUMENTED


def grader_sources() -> list[Path]:
    return [path for path in sorted(GRADING.rglob("*.py")) if SANDBOXED not in path.parents]


def defined_here() -> set[str]:
    """The private names grading/ defines itself: functions, classes, arguments, assigned names and attributes."""
    names = set()
    for path in grader_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
                names.add(node.id if isinstance(node, ast.Name) else node.attr)
    return {name for name in names if private(name)} - FOREIGN


def test_no_module_of_the_grader_but_compat_uses_a_private_name_of_another_package() -> None:
    """Outside compat.py (and this test), every private attribute grading/ reads or writes, tests included, is one
    it defines itself, and no method overrides one of another package's."""
    ours = defined_here()
    offenders = []
    for path in grader_sources():
        if path in (GRADING / "compat.py", Path(__file__)):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = node.attr if isinstance(node, ast.Attribute) else \
                node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
            if private(named) and (named in FOREIGN or named not in ours):
                offenders.append(f"{path.relative_to(GRADING.parent)}:{getattr(node, 'lineno', '?')} {named}")
    assert not offenders, "private names of other packages outside grading/compat.py: " + ", ".join(offenders)


def test_a_private_name_used_outside_compat_is_found(tmp_path: Path) -> None:
    assert private("_make_url") and private("_cleanup_kernel") and not private("__init__") and not private("_exit")
    assert "_make_url" not in defined_here() and "_cleanup_kernel" not in defined_here()
