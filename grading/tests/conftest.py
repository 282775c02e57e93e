"""Shared fixtures of the repository's own tests: a release bundle, submissions built onto it, and the real CLI."""
import csv
import shutil
import sqlite3
import socket
import subprocess
import sys
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from grading.nbgrader_support import prepare_nbgrader  # noqa: E402

prepare_nbgrader()  # the tests run nbgrader's code in this process too, as the grader's commands do

from grading.compat import scope_scheduler  # noqa: E402
from grading.authoring.samples import Answers, build_submission  # noqa: E402
from grading.commands.release import build_bundle  # noqa: E402
from grading.records.results import load_result  # noqa: E402


# Gradescope's documented fields of results.json (the autograder specification).
GRADESCOPE_SCHEMA = {
    "type": "object",
    "required": ["score", "tests"],
    "properties": {
        "score": {"type": "number"}, "execution_time": {"type": "number"}, "output": {"type": "string"},
        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "stdout_visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
        "tests": {"type": "array", "items": {
            "type": "object", "required": ["score", "max_score"], "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "score": {"type": "number"}, "max_score": {"type": "number"},
                           "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
                           "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                           "number": {"type": "string"}, "tags": {"type": "array"}}}},
    },
    "additionalProperties": False,
}


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`python -m grading demo` run once per session (it grades the sample students, which takes minutes):
    (its --out folder, the completed process)."""
    out = tmp_path_factory.mktemp("demo")
    completed = subprocess.run([sys.executable, "-m", "grading", "demo", "--out", str(out), "--jobs", "2"],
                               cwd=REPO, capture_output=True, text=True, timeout=900)
    return out, completed


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release (bundle and nbgrader course) built once per session, without its self-check."""
    out = tmp_path_factory.mktemp("release")
    build_bundle(out)
    return out


@pytest.fixture(scope="session")
def bundle(release_dir: Path) -> Path:
    return release_dir / "norm"


def submit(bundle: Path, root: str | Path, students: dict[str, Answers]) -> Path:
    """Write one submission per {student_id: Answers} into root; return root."""
    root = Path(root)
    for student, answers in students.items():
        build_submission(answers, bundle, REPO, root / student)
    return root


def autograde(submissions: str | Path, out: str | Path, release_dir: Path, *options: str, timeout: float = 900,
              through: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Run `python -m grading autograde` (reusing the session's course so generate_assignment runs once), through
    the command line `through` if given (a wrapper that runs the rest)."""
    out = Path(out)
    if not (out / "course").exists():
        shutil.copytree(release_dir / "course", out / "course")
    return subprocess.run([*through, sys.executable, "-m", "grading", "autograde", str(submissions), "--out", str(out),
                           *options], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def grades(out: str | Path) -> dict[str, dict[str, str]]:
    """{student_id: row} of OUT/grades.csv."""
    with open(Path(out) / "grades.csv", newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


GRADEBOOK_CELLS = """
SELECT student.id, student.first_name, base_cell.name, grade.auto_score, grade.manual_score, grade.extra_credit,
       grade.needs_manual_grade, submitted_notebook.flagged, submitted_notebook.late_submission_penalty,
       submitted_assignment.timestamp
FROM grade
JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
JOIN student ON submitted_assignment.student_id = student.id
JOIN base_cell ON grade.cell_id = base_cell.id
ORDER BY student.id, base_cell.name
"""


def gradebook_cells(course: str | Path) -> list[Any]:
    """Every grade of an nbgrader course's gradebook, a row per student and cell, with what decides it."""
    database = sqlite3.connect(Path(course) / "gradebook.db")
    try:
        return database.execute(GRADEBOOK_CELLS).fetchall()
    finally:
        database.close()


def nbgrader_export(course: str | Path, to: str | Path) -> str:
    """`nbgrader export` of course, as a TA runs it; the CSV's text."""
    subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(to)], cwd=course, capture_output=True,
                   check=True)
    return Path(to).read_text()


def graded_both_ways(course: Path, root: str | Path, students: Iterable[str] | None = None
                     ) -> tuple[tuple[list[Any], str], tuple[list[Any], str]]:
    """(our course, a copy of it after nbgrader's own `autograde --force` of students, all when None), each as
    (its gradebook's cells, its export)."""
    native = Path(root) / "native"
    shutil.copytree(course, native)
    if students is not None:
        for submitted in (native / "submitted").iterdir():
            if submitted.is_dir() and submitted.name not in students:
                shutil.rmtree(submitted)
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "norm", "--force"], cwd=native,
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return ((gradebook_cells(course), nbgrader_export(course, Path(root) / "ours.csv")),
            (gradebook_cells(native), nbgrader_export(native, Path(root) / "native.csv")))


def results(out: str | Path) -> dict[str, Any]:
    """{student_id: StudentResult} of every OUT/<student>/grade.json."""
    return {p.parent.name: load_result(p) for p in Path(out).glob("*/grade.json")}


# Modules that share the session's `demo` run: under pytest-xdist (`make test`) they go to the same worker.
SHARE_THE_DEMO = {"test_demo", "test_export", "test_gradescope", "test_golden_verdicts", "test_nbgrader_native",
                  "test_readme", "test_release"}
# The groups that take longest (from about 40 s to 2 minutes each on two workers: BENCHMARKS.md, "The test
# suite"), longest first, so that no worker is left with a long one at the end.
LONGEST_FIRST = ["demo", "test_attacks", "test_machine_failures", "test_browser", "test_zygote", "test_mutations",
                 "test_nbgrader_exchange", "test_sharding", "test_autograde", "test_bad_inputs", "test_slurm",
                 "test_notebook_tests", "test_regrading"]


def group_of(path: str | Path) -> str:
    """The group whose tests go to one worker: "demo" for the modules that share the demo run, else the module."""
    return "demo" if Path(path).stem in SHARE_THE_DEMO else str(path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = group_of(item.path)
        name = "demo" if group == "demo" else Path(group).stem
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: each module's tests stay together and in order


def pytest_configure(config: pytest.Config) -> None:
    # nbgrader 0.9 trips over SQLAlchemy 2's session rules in its own code; the rows it writes are right
    # (nbgrader_support.prepare_nbgrader silences the same warning in the grader's processes).
    config.addinivalue_line("filterwarnings", "ignore:.*not in session, add operation along:Warning")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist, each module runs on one worker, so that its module-scoped batch is graded once, and the
    modules that share the demo run on one worker, so that it runs once."""
    return scope_scheduler(config, log, lambda nodeid: group_of(nodeid.split("::", 1)[0]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """Keep each phase's report on the test item, so fixtures can see in their teardown whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


REFERENCE = Answers(base="reference")
STUB = Answers()


def reference_with_added_cell(code: str) -> Answers:
    """The reference, with one more code cell right after the shortcut's answer: a cell that runs before Q4's."""
    def edit(nb: nbformat.NotebookNode) -> None:
        index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id")
                     == "q3_make_shortcut")
        nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return Answers(base="reference", notebook_edits=[edit])


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's loopback that records whatever reaches it: (port, received)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received, stop = [], threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            received.append(connection.recv(1024))
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()
