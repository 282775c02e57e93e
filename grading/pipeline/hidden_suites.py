"""The hidden suites (grading/hidden/check_*.py), run with pytest in the grader's process.

A plugin gives the tests the student: the fixture `student` is batchnormalization.py behind its sandboxed child
(isolation/student_module.py), and `kernel` is the notebook's sandboxed kernel, which answers probes
(isolation/kernel.py). Each test
belongs to one grade cell of assignment.QUESTIONS: the one its `cell` marker names, else the one its file is named
after (check_<cell>.py). A test earns its points if it passes and none otherwise; a test function's points are
shared equally by its parametrized cases of the same cell; and the points of a cell's tests must add up to the
cell's points in assignment.py, or the grader refuses to run.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pytest

from grading.assignment import AUTOGRADED_POINTS, BY_ID, CELLS, SLIP_SHARE, question_of
from grading.failures import Cause, Ending, GraderError, Slip, StudentFailure
from grading.isolation.protocol import CallBudget
from grading.stages import stage
from grading.pipeline.verdicts import points
from grading.records.results import SLIP, WRONG, Test
from grading.settings import HIDDEN, Settings

if TYPE_CHECKING:
    from grading.isolation.student_module import StudentModule
    from grading.sandboxed.wire import Arrays, Meta


class Prober(Protocol):
    """What runs the probe program against the notebook's definitions: the sandboxed kernel
    (isolation/kernel.SandboxedExecute), or in the tests a namespace of their own."""

    def probe(self, op: str, args: dict[str, Any], arrays: Arrays, timeout: float) -> tuple[Meta, Arrays]: ...

PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception", "-p",
               "no:logging", "--assert=plain", "--tb=native", "-q", "-o", "python_files=check_*.py", "--rootdir", str(HIDDEN)]


class KernelProbes(CallBudget):
    """The notebook's kernel as the hidden tests see it: call(op, args, **arrays) -> (meta, arrays).

    undefined: {name: why it is not defined} (verdicts.cell_failures): a probe that finds one of these names
    missing fails with why, the cell and its error, instead of Python's NameError."""

    def __init__(self, executor: Prober, timeout: float, undefined: dict[str, str] | None = None) -> None:
        super().__init__()
        self.executor = executor
        self.timeout = timeout
        self.undefined = undefined or {}

    @stage("probes of the kernel")
    def call(self, op: str, args: dict[str, Any] | None = None, **arrays: np.ndarray) -> tuple[Meta, Arrays]:
        self.check()
        try:
            return self.received(self.executor.probe(op, args or {}, arrays, self.timeout))
        except StudentFailure as failure:
            if failure.ending in (Ending.TIMED_OUT, Ending.ENDED):
                self.spend()
            if failure.undefined in self.undefined:
                raise StudentFailure(self.undefined[failure.undefined], failure.ending, failure.error,
                                     failure.undefined) from None
            raise


def warm_up() -> None:
    """Pay once, in the process that forks the workers, what torch's first calls in the hidden suites cost (about
    1.2 s: lazy imports such as sympy's, kernel registration), instead of once per submission. One thread, so forked
    children inherit no thread pool."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    x = torch.ones(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    out = F.batch_norm(x, None, None, training=True) + F.group_norm(x, 1) + F.conv2d(x, torch.ones(3, 3, 1, 1,
                                                                                                  dtype=torch.float64))
    out.backward(torch.ones_like(out))  # with a gradient given, as the Q2 oracle calls it: that imports sympy


def files_for(cells: Iterable[str]) -> list[Path]:
    """The hidden test files that score any of cells."""
    chosen = []
    for path in sorted(HIDDEN.glob("check_*.py")):
        named = path.stem.removeprefix("check_")
        marked = set(re.findall(r"""mark\.cell\(["'](\w+)["']\)""", path.read_text()))
        if named in cells or marked & set(cells):
            chosen.append(path)
    return chosen


class Collector:
    """A pytest plugin that provides the student to the tests and turns reports into points per grade cell.

    Who is at fault is read from the type of what a test raised: a StudentFailure (the student's code gave no
    usable answer) or a failed assertion (its answer was judged wrong) fails the test; a GraderError, or any other
    exception (a bug of the hidden test or of the grader), is kept in grader_error, and then no outcome counts."""

    def __init__(self, student: StudentModule | None = None, kernel: KernelProbes | None = None) -> None:
        self._student = student
        self._kernel = kernel
        self.outcomes: dict[str, Test] = {}  # by node id
        self.cell_of: dict[str, str] = {}  # {node id: the grade cell it scores}
        self.worth: dict[str, float] = {}  # {node id: the points it earns if it passes}
        self.failures: dict[str, tuple[str, str]] = {}  # {node id: (Test.failure, message)} of the tests that failed
        self.slips: dict[str, list[str]] = {}  # {node id: [slip key]} of the tests that found the answer right but
        # for slips
        self.grader_error: GraderError | None = None  # the first GraderError, or unexpected exception, a test or the
        # suite met

    @pytest.fixture(scope="session")
    def student(self) -> StudentModule:
        if self._student is None:
            raise StudentFailure("no batchnormalization.py to check", Ending.NOT_RUN)
        return self._student

    @pytest.fixture(scope="session")
    def kernel(self) -> KernelProbes:
        if self._kernel is None:
            raise StudentFailure("no notebook kernel to check", Ending.NOT_RUN)
        return self._kernel

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "points(n): what the test is worth")
        config.addinivalue_line("markers", "cell(grade_id): the grade cell the test scores (default: from the file)")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._grader_error(GraderError(f"the hidden tests could not be collected: {report.longreprtext}",
                                           Cause.SUITE))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        groups: dict[tuple[Path, str, str], list[pytest.Item]] = {}
        for item in items:
            marker = item.get_closest_marker("cell")
            cell = marker.args[0] if marker else item.path.stem.removeprefix("check_")
            if cell not in CELLS:
                self._grader_error(GraderError(f"hidden test {item.nodeid} scores {cell!r}, which is not a grade "
                                               "cell", Cause.SUITE))
            self.cell_of[item.nodeid] = cell
            function = item.originalname if isinstance(item, pytest.Function) else item.name
            groups.setdefault((item.path, function, cell), []).append(item)
        for group in groups.values():
            points = group[0].get_closest_marker("points")
            if points is None:
                self._grader_error(GraderError(f"hidden test {group[0].nodeid} has no @pytest.mark.points",
                                               Cause.SUITE))
                continue
            for item in group:
                self.worth[item.nodeid] = float(points.args[0]) / len(group)
        if self.grader_error is not None:
            items.clear()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        with stage(question_of(self.cell_of.get(item.nodeid, "")) or "tests of no question"):
            yield

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        for target in (self._student, self._kernel):
            if target is not None:
                target.cell = self.cell_of[item.nodeid]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        if call.excinfo is None:
            return
        raised = call.excinfo.value
        if isinstance(raised, Slip) and call.when == "call":
            self.failures[item.nodeid] = (SLIP, str(raised))
            self.slips[item.nodeid] = list(raised.found)
        elif isinstance(raised, StudentFailure):
            self.failures[item.nodeid] = (raised.ending.value, str(raised))
        elif isinstance(raised, (AssertionError, pytest.fail.Exception)) and call.when == "call":
            self.failures[item.nodeid] = (WRONG, str(raised))
        elif isinstance(raised, GraderError):
            self._grader_error(raised)
        else:
            error = GraderError(f"the hidden test {item.nodeid} raised {type(raised).__name__}: {raised}", Cause.BUG)
            error.__cause__ = raised
            self._grader_error(error)

    def _grader_error(self, error: GraderError) -> None:
        if self.grader_error is None:
            self.grader_error = error

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or report.failed:
            points = self.worth.get(report.nodeid, 0.0)
            failure, message = self.failures.get(report.nodeid, ("", "")) if report.failed else ("", "")
            self.outcomes[report.nodeid] = Test(report.nodeid.split("::")[-1], points if report.passed else 0.0,
                                                points, report.passed, message.strip()[:Settings.message_chars],
                                                hidden=True, cell=self.cell_of.get(report.nodeid, ""),
                                                failure=failure, slips=self.slips.get(report.nodeid, []))


@stage("hidden suites", rest="pytest's session: start, collection, reports")
def run_hidden_suite(cells: list[str], student: StudentModule | None = None,
                     kernel: KernelProbes | None = None) -> dict[str, list[Test]]:
    """{grade cell: [Test]} for the given autograded cells, from the hidden tests that score them."""
    collector = Collector(student, kernel)
    with only_named_plugins(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        pytest.main([*PYTEST_ARGS, *map(str, files_for(cells))], plugins=[collector])
    if collector.grader_error is not None:
        raise collector.grader_error
    tests: dict[str, list[Test]] = {cell: [] for cell in cells}
    for test in collector.outcomes.values():
        if test.cell in tests:
            tests[test.cell].append(test)
    for cell, found in tests.items():
        available = sum(t.max_score for t in found)
        if abs(available - AUTOGRADED_POINTS[cell]) > 1e-9:
            raise GraderError(f"the hidden tests of {cell} are worth {available:g} points, not "
                              f"{AUTOGRADED_POINTS[cell]:g}", Cause.SUITE)
    charge_slips([test for found in tests.values() for test in found])
    return tests


def charge_slips(tests: list[Test]) -> None:
    """Charge each slip once per question (tests: [Test], in the order they ran, changed in place): a slip costs
    assignment.SLIP_SHARE of its question's points, taken from the checks that reveal it in that order, each losing
    at most its own points; a check that reveals only slips charged before loses nothing. Messages say where each slip
    is charged and where else it shows."""
    by_question: dict[str, list[Test]] = {}
    for test in tests:
        if test.failure == SLIP:
            by_question.setdefault(question_of(test.cell), []).append(test)
    for question, slipped in by_question.items():
        size = SLIP_SHARE * BY_ID[question].points
        left: dict[str, float] = {}  # {slip key: its points not yet charged}
        charged_in: dict[str, Test] = {}
        shows_in: dict[str, list[Test]] = {}
        for test in slipped:
            for key in test.slips:
                left.setdefault(key, size)
                shows_in.setdefault(key, []).append(test)
        for test in slipped:
            taken = 0.0
            for key in test.slips:
                take = min(left[key], test.max_score - taken)
                left[key] -= take
                taken += take
                if take > 0:
                    charged_in.setdefault(key, test)
            test.score = points([test.max_score - taken])
        for test in slipped:
            test.message += "".join(slip_note(key, test, charged_in.get(key), shows_in[key], question,
                                              size - left[key]) for key in test.slips)


def slip_note(key: str, test: Test, charged_in: Test | None, shows_in: list[Test], question: str,
              cost: float) -> str:
    """What a check that reveals the slip key says of where it is charged (cost: its points off, in all)."""
    if charged_in is None:
        return f" [a slip ({key}): the checks that reveal it have no points left to take]"
    if charged_in is not test:
        return f" [the slip ({key}) is charged once, in {charged_in.name}]"
    elsewhere = [other.name for other in shows_in if other is not test]
    return (f" [a slip ({key}): {points([cost]):g} point(s) off {question}, once"
            + (f"; it also shows in {', '.join(elsewhere)}, which lose nothing more for it]" if elsewhere else "]"))


@contextlib.contextmanager
def only_named_plugins() -> Iterator[None]:
    """Only the plugins the suite names take part in grading (faster, and no third-party plugin decides anything);
    the environment is as it was afterwards."""
    saved = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"]
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = saved
