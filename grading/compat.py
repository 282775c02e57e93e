"""Every use the grader makes of another package's private names, in one place: the rest of grading/ uses only the
public names these give. Each is pinned by grading/constraints.txt to the release the suite passed with, and
grading/tests/unit/test_compat.py checks that each name is still there and behaves as used here, so that a new
release that changes one fails that test instead of changing grading unnoticed.

- jupyter_client: a kernel manager whose launch step (_async_launch_kernel) can hand over a process started
  elsewhere (a kernel forked from a zygote) by filling in the provisioner's fields and reconciling the connection
  info, whose connection file can be written by us, and whose sockets' URLs (_make_url) are ours to give, on the
  manager and on its client.
- nbclient: a NotebookClient's per-run state reset on a live object, as nbconvert's ExecutePreprocessor does, and
  its kernel cleaned up (_cleanup_kernel).
- nbgrader: its autograde converter replaced where its apps look it up; the converter's source folders
  (_format_source) and whether it is sanitizing (_sanitizing); ClearSolutions' stubbing of one cell
  (_replace_solution_region).
- jsonschema: validate, replaced process-wide by one that checks each schema once.
- nbgrader: the create_engine its Gradebook calls by that name in nbgrader.api, replaced process-wide by one that
  keeps one SQLAlchemy engine per database URL.
- pytest-xdist: the scheduler's grouping of tests (_split_scope).
- argparse (the standard library's): a parser's options and subcommands, which the README's commands are checked
  against (_actions, _SubParsersAction, _option_string_actions).
"""
import argparse
import json
import os
from collections.abc import Callable
from typing import Any, Protocol

import jsonschema
import nbformat
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
import nbgrader.api
from nbgrader.apps import api, autogradeapp
from nbgrader.converters import Autograde
from nbgrader.preprocessors import ClearSolutions


class KernelProcess(Protocol):
    """What jupyter_client's LocalProvisioner uses of a kernel process (subprocess.Popen's names)."""

    pid: int

    def poll(self) -> int | None: ...


class LaunchingKernelManager(AsyncKernelManager):
    """jupyter_client's AsyncKernelManager with its private launch step, connection-file flag and socket URLs under
    names of our own: launch_kernel (by default jupyter_client's launch), adopt_process, mark_connection_file_written
    and channel_url (by default jupyter_client's URL)."""

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        await self.launch_kernel(kernel_cmd, kw["env"], kw)

    async def launch_kernel(self, kernel_cmd: list[str], env: dict[str, str], options: dict[str, Any]) -> None:
        """Start the kernel process: kernel_cmd in env; options are all of jupyter_client's launch arguments."""
        await self.launch_cold(kernel_cmd, options)

    async def launch_cold(self, kernel_cmd: list[str], options: dict[str, Any]) -> None:
        """jupyter_client's own launch of kernel_cmd, through the provisioner, with the launch arguments options."""
        await super()._async_launch_kernel(kernel_cmd, **options)

    def adopt_process(self, process: KernelProcess, cwd: str) -> None:
        """Make process, started in cwd by other means than the provisioner, the provisioner's kernel process (its
        own process group), and take the connection info the provisioner holds as the kernel's."""
        provisioner: Any = self.provisioner  # a LocalProvisioner: these fields are its own
        provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, process.pid
        provisioner.cwd = cwd
        self._reconcile_connection_info(provisioner.connection_info)

    def mark_connection_file_written(self) -> None:
        """Tell jupyter_client that the connection file exists, written by us, so that it removes it at cleanup and
        does not write it again."""
        self._connection_file_written = True

    def _make_url(self, channel: str) -> str:
        return self.channel_url(channel)

    def channel_url(self, channel: str) -> str:
        """The ZeroMQ URL of channel ("shell", "iopub", "stdin", "control", "hb")."""
        return super()._make_url(channel)


class ChannelUrlKernelClient(AsyncKernelClient):
    """jupyter_client's AsyncKernelClient whose sockets' URLs come from channel_url (by default jupyter_client's)."""

    def _make_url(self, channel: str) -> str:
        return self.channel_url(channel)

    def channel_url(self, channel: str) -> str:
        """The ZeroMQ URL of channel ("shell", "iopub", "stdin", "control", "hb")."""
        return super()._make_url(channel)


def provisioned_process(manager: AsyncKernelManager) -> tuple[int, int | None] | None:
    """(PID, process group or None) of the kernel process manager's provisioner holds; None where there is none."""
    provisioner: Any = manager.provisioner
    if provisioner is None or not getattr(provisioner, "pid", None):
        return None
    return provisioner.pid, provisioner.pgid


def kernel_exited(manager: AsyncKernelManager) -> bool:
    """Whether the kernel process that manager's provisioner started (or adopted) has ended."""
    provisioner: Any = manager.provisioner
    return bool(provisioner.process.poll() is not None)


def reset_notebook_client(client: NotebookClient, nb: nbformat.NotebookNode) -> None:
    """Give client, a NotebookClient already used, the per-run state of a new one for nb (no kernel, no client,
    fresh execution trackers), as nbconvert's ExecutePreprocessor does before each notebook."""
    NotebookClient.__init__(client, nb)


def cleanup_kernel(client: NotebookClient) -> None:
    """Shut down client's kernel (as its shutdown_kernel setting says) and drop its manager and kernel client."""
    client._cleanup_kernel()


def use_autograde_converter(converter: type[Autograde]) -> None:
    """Make converter the class nbgrader's autograde (the command's and the formgrader's) converts with, in this
    process: nbgrader looks it up by name in these two modules."""
    autogradeapp.Autograde = api.Autograde = converter


class SourceFolderAutograde(Autograde):
    """nbgrader's Autograde whose submissions' source folders come from source_folder (by default nbgrader's,
    submitted/<student>/<assignment>), and which says whether it is sanitizing."""

    def _format_source(self, assignment_id: str, student_id: str, escape: bool = False) -> str:
        return self.source_folder(assignment_id, student_id, escape)

    def source_folder(self, assignment_id: str, student_id: str, escape: bool = False) -> str:
        """The folder of student_id's assignment_id that nbgrader reads; with escape, a regular expression in which
        the two ids (passed as groups) are not escaped."""
        return super()._format_source(assignment_id, student_id, escape)

    @property
    def sanitizing(self) -> bool:
        """Whether nbgrader is in the sanitize step (reading submissions), not the autograde step (autograded/)."""
        return bool(self._sanitizing)


def stub_solution_regions(cell: nbformat.NotebookNode, code_stub: str) -> None:
    """Replace each solution region (### BEGIN SOLUTION ... ### END SOLUTION) of the Python code cell with
    code_stub, as nbgrader's generate_assignment does."""
    ClearSolutions(code_stub={"python": code_stub}, enforce_metadata=False)._replace_solution_region(cell, "python")


CHECKS_EACH_SCHEMA_ONCE = "grading_checks_each_schema_once"  # marks our validate: replacing it again is a no-op


def validate_each_schema_once() -> None:
    """Replace jsonschema.validate, process-wide (nbgrader calls it as jsonschema.validate for every cell), by one
    that checks each schema only the first time it meets it; every instance is validated as before. Idempotent."""
    validate = jsonschema.validate
    if getattr(validate, CHECKS_EACH_SCHEMA_ONCE, False):
        return
    checked: dict[str, Any] = {}

    def validate_once(instance: Any, schema: Any, cls: Any = None, *args: Any, **kwargs: Any) -> None:
        if cls is not None or args or kwargs or not isinstance(schema, dict):
            return validate(instance, schema, cls, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True)
        validator = checked.get(key)
        if validator is None:
            validator_class = jsonschema.validators.validator_for(schema)
            validator_class.check_schema(schema)
            validator = checked[key] = validator_class(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error
        return None

    setattr(validate_once, CHECKS_EACH_SCHEMA_ONCE, True)
    jsonschema.validate = validate_once


SHARES_ENGINES = "grading_shares_engines"  # marks our create_engine: replacing it again is a no-op


def share_gradebook_engines() -> None:
    """Make every nbgrader Gradebook in this process use one SQLAlchemy engine per database URL (and creation
    arguments) instead of one engine each, so that a statement compiled for one Gradebook is reused by the next:
    nbgrader's preprocessors each open their own, four or more per recorded submission. Idempotent.

    Each Gradebook still opens its own session and connection, and its close() still disposes of the engine's pool,
    which closes every connection not in use: no connection outlives the last Gradebook open on it, so a database
    removed and made again at the same path is read afresh, and a process forked between Gradebooks inherits no
    connection. A child forked while one is open forgets the parent's connections (SQLAlchemy's own recipe)."""
    create_engine = nbgrader.api.create_engine
    if getattr(create_engine, SHARES_ENGINES, False):
        return
    engines: dict[str, Any] = {}

    def shared_engine(url: Any, **kwargs: Any) -> Any:
        if not isinstance(url, str):  # a URL object prints its password masked: not a key
            return create_engine(url, **kwargs)
        key = json.dumps([url, sorted(kwargs.items())], default=repr)
        engine = engines.get(key)
        if engine is None:
            engine = engines[key] = create_engine(url, **kwargs)
        return engine

    def forget_parents_connections() -> None:
        for engine in engines.values():
            engine.dispose(close=False)

    os.register_at_fork(after_in_child=forget_parents_connections)
    setattr(shared_engine, SHARES_ENGINES, True)
    nbgrader.api.create_engine = shared_engine


def scope_scheduler(config: Any, log: Any, scope_of: Callable[[str], str]) -> Any:
    """A pytest-xdist scheduler that sends all the tests of one scope to one worker; scope_of(test node id) names
    the scope. (pytest-xdist is imported here, only by the tests that run under it.)"""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class ByScope(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ByScope(config, log)


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{name: parser} of parser's subcommands (none where it has none)."""
    return {name: sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, sub in action.choices.items()}


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string parser accepts ("-h", "--help", "--out", ...), its subcommands' aside."""
    return set(parser._option_string_actions)
