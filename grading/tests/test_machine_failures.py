"""When the grading machine fails, no student is recorded with a score: the failure is retried where it can be, or
the student is an ERROR (exit status 3), whose cause, message and traceback are kept in OUT/errors/<student>.txt,
and whom a plain rerun grades exactly; a grader that cannot grade the reference solution grades no one (exit status
2) and says in a few lines what failed and what to do, the details in a file. The faults are made on purpose
(faults.py), each in one student's grading child; a symlinked Python environment, and a machine kept busy, are
real."""
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REFERENCE, REPO, autograde, grades, reference_with_added_cell, results, submit
from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, MODULE_CLASSES
from grading.authoring.samples import Answers
from grading.failures import Cause
from grading.isolation.sandbox import bwrap_works
from grading.records.results import StudentResult
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")
EXACT = {"q1": 20.0, "q3": 20.0}  # what the reference earns on the questions graded here
QUESTIONS = ("--questions", "q1,q3")  # one question of the .py child and one of the kernel: each machine part
EVERY_POINT = {"q1": 20.0, "q2": 20.0, "q3": 20.0, "q4": 10.0, "q5": 10.0}
# A run with faults and the rerun without: (first run, its results, second run, its results, what OUT held).
Faulty = tuple[subprocess.CompletedProcess[str], dict[str, StudentResult], subprocess.CompletedProcess[str],
               dict[str, StudentResult], dict[str, Any]]
# A run under load and the quiet rerun: (first run, its results, second run, its results).
Loaded = tuple[subprocess.CompletedProcess[str], dict[str, StudentResult], subprocess.CompletedProcess[str],
               dict[str, StudentResult]]


# A cell that ends the kernel, as a stray os._exit would: the grader restarts the kernel and replays the cells
# before that one, and the rest run in the new kernel.
ENDS_ITS_KERNEL_ONCE = reference_with_added_cell("import os\nos._exit(1)")


def with_fault(fault: str, submissions: Path, out: Path, release_dir: Path, *options: str,
               scratch: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m grading autograde` with a fault installed (faults.py)."""
    if not (out / "course").exists():
        subprocess.run(["cp", "-r", str(release_dir / "course"), str(out / "course")], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAULT_SCRATCH": str(scratch or out)}
    return subprocess.run([sys.executable, str(Path(__file__).parent / "faults.py"), fault, "autograde",
                           str(submissions), "--out", str(out), *options], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def faulty(bundle: Path, release_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Faulty:
    """The reference submitted by one student per fault and by one without: graded with the faults (and --verbose),
    then again without them, with every question, as a TA runs it. (first run, its results, second run, its
    results, their files)"""
    root = tmp_path_factory.mktemp("faults")
    students = ["fault-kernel-once", "fault-kernel-twice", "fault-zygote-killed", "fault-bwrap-fails",
                "fault-child-killed", "untouched-by-faults"]
    submissions = submit(bundle, root / "submissions", {student: REFERENCE for student in students}
                         | {student: ENDS_ITS_KERNEL_ONCE for student in ("fault-restart-once", "fault-restart-fails",
                                                                          "fault-replay-bug")})
    (root / "out").mkdir()
    first = with_fault("per-student", submissions, root / "out", release_dir, "--jobs", "2", "--verbose")
    outputs: dict[str, Any] = {s: {"row": row, **{name: (root / "out" / s / name).read_text()
                                                        for name in ("results.json", "feedback.html")}}
                               for s, row in grades(root / "out").items()}
    outputs |= {"errors": {path.name: path.read_text() for path in (root / "out" / "errors").glob("*.txt")}}
    first_results = results(root / "out")
    second = autograde(submissions, root / "out", release_dir, "--jobs", "2")
    outputs |= {"errors after the rerun": sorted(path.name for path in (root / "out" / "errors").glob("*"))}
    return first, first_results, second, results(root / "out"), outputs


def scores(result: StudentResult, expected: dict[str, float] = EXACT) -> dict[str, float]:
    """{question: the result's score} of the questions in expected."""
    return {q: result.questions[q].score for q in expected}


def test_what_is_retried_ends_with_the_exact_score(faulty: Faulty) -> None:
    first, graded, _, _, _ = faulty
    for student in ("fault-kernel-once", "fault-zygote-killed", "fault-restart-once", "untouched-by-faults"):
        result = graded[student]
        assert not result.error and scores(result, EVERY_POINT) == EVERY_POINT, (student, result.status)


@pytest.mark.parametrize("student,words", [
    ("fault-kernel-twice", "the notebook's kernel could not be started, twice: RuntimeError: Kernel died"),
    ("fault-bwrap-fails", "could not be started, twice: RuntimeError: the kernel ended before it opened its sockets; "
                          "it said: bwrap: Creating new namespace failed"),
    ("fault-child-killed", "the grading process ended without a result"),
    ("fault-restart-fails", "the notebook's kernel could not be started, twice: RuntimeError: Kernel died"),
    ("fault-replay-bug", "the grader failed: AttributeError: 'SandboxedExecute' object has no attribute"),
])
def test_what_cannot_be_retried_is_an_error_without_points(faulty: Faulty, student: str, words: str) -> None:
    first, graded, _, _, outputs = faulty
    assert first.returncode == EXIT_GRADER_ERRORS, first.stdout[-2000:] + first.stderr[-2000:]
    assert words in graded[student].error and graded[student].status.startswith("ERROR: ")
    row = outputs[student]["row"]
    assert {row[q] for q in EVERY_POINT} == {""} and row["total"] == "" and row["status"].startswith("ERROR: ")
    assert student in first.stderr.split("could not be graded because the grading machine failed")[1]
    assert "score" not in outputs[student]["results.json"]
    assert "the grading machine failed, not your code" in outputs[student]["feedback.html"]


# {student: (cause, what its error file holds)}: every ERROR of the faulty batch
ACCOUNTS = {
    "fault-kernel-twice": (Cause.SANDBOX, ["GraderError: the notebook's kernel could not be started, twice",
                                           "Traceback (most recent call last):", "RuntimeError: Kernel died"]),
    "fault-bwrap-fails": (Cause.SANDBOX, ["Traceback (most recent call last):",
                                          "bwrap: Creating new namespace failed"]),
    "fault-child-killed": (Cause.KILLED, ["the grading process ended without a result: it was killed by signal 9",
                                          "Traceback:\nnone: the grading process did not end on its own"]),
    "fault-restart-fails": (Cause.SANDBOX, ["Traceback (most recent call last):", "in _restart",
                                            "GraderError: the notebook's kernel could not be started, twice"]),
    "fault-replay-bug": (Cause.BUG, ["Traceback (most recent call last):", "in _restart", "in buggy",
                                     "AttributeError: 'SandboxedExecute' object has no attribute 'replayed'"]),
}


@pytest.mark.parametrize("student", ACCOUNTS)
def test_every_error_keeps_its_cause_and_traceback_in_a_file_its_status_line_names(faulty: Faulty,
                                                                                   student: str) -> None:
    first, graded, _, _, outputs = faulty
    cause, told = ACCOUNTS[student]
    result = graded[student]
    assert result.error_cause is cause and result.error_file == f"errors/{student}.txt"
    assert result.status.endswith(f"(cause: {cause.value}; traceback and what to do in errors/{student}.txt)")
    assert outputs[student]["row"]["status"] == result.status
    account = outputs["errors"][f"{student}.txt"]
    assert account.startswith(f"{student} was not graded: the grading machine failed (cause: {cause.value}).")
    assert f"What to do: {cause.advice}" in account and all(words in account for words in told), account
    assert f"  {cause.value} (" in first.stderr.split("could not be graded because the grading machine failed")[1]


def test_verbose_logs_each_grader_error_whole_as_its_file_tells_it(faulty: Faulty) -> None:
    first, graded, _, _, outputs = faulty
    for student in ACCOUNTS:
        account = outputs["errors"][f"{student}.txt"]  # its traceback included
        assert f"grader error on {student}, as errors/{student}.txt tells it:\n{account}" in first.stderr
    assert not any(f"grader error on {student}," in first.stderr for student, r in graded.items() if not r.error)


def test_the_summary_of_a_run_says_where_the_tracebacks_are(faulty: Faulty) -> None:
    first, _, _, _, outputs = faulty
    summary = first.stderr.split("could not be graded because the grading machine failed")[1]
    assert "errors/<student>.txt; by cause:" in summary
    assert f"  bug (fault-replay-bug): {Cause.BUG.advice}" in summary
    assert sorted(outputs["errors"]) == sorted(f"{student}.txt" for student in ACCOUNTS)


def test_a_plain_rerun_grades_exactly_the_students_with_errors_and_drops_their_accounts(faulty: Faulty) -> None:
    first, graded, second, regraded, outputs = faulty
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "4 of 9 submissions already graded and unchanged" in second.stderr
    assert all(not r.error and scores(r, EVERY_POINT) == EVERY_POINT for r in regraded.values())
    assert regraded["untouched-by-faults"].seconds == graded["untouched-by-faults"].seconds  # not regraded
    assert outputs["errors after the rerun"] == []


def test_a_bug_in_the_kernels_replay_is_an_error_and_without_it_the_notebook_gets_every_point(faulty: Faulty) -> None:
    first, graded, _, regraded, _ = faulty
    assert first.returncode == EXIT_GRADER_ERRORS, first.stdout[-2000:] + first.stderr[-2000:]
    assert graded["fault-replay-bug"].error_cause is Cause.BUG
    assert scores(regraded["fault-replay-bug"], EVERY_POINT) == EVERY_POINT  # the same notebook, graded without it


def test_a_suite_whose_points_do_not_add_up_stops_the_grader_before_anyone_is_graded(bundle: Path, release_dir: Path,
                                                                                     tmp_path: Path) -> None:
    submissions = submit(bundle, tmp_path / "submissions", {"alice": REFERENCE})
    (tmp_path / "out").mkdir()
    completed = with_fault("inconsistent-suite", submissions, tmp_path / "out", release_dir, "--questions", "q1",
                           scratch=tmp_path)
    assert completed.returncode == EXIT_MISCONFIGURED, completed.stdout[-2000:] + completed.stderr[-2000:]
    message = canary_message(completed)
    assert message[0] == ("error: the canary failed, so no student was graded: the points of the hidden suites do "
                          "not add up: the hidden tests of q1_forward are worth 21 points, not 20")
    assert message[1].startswith("To fix it: make the points of the checks in grading/hidden/ add up")
    details = tmp_path / "out" / "errors" / ".canary.txt"
    assert message[-1].endswith(f"is in {details}") and len(message) <= 4
    assert "GraderError: the hidden tests of q1_forward are worth 21 points" in details.read_text()
    assert not (tmp_path / "out" / "alice").exists()


def canary_message(completed: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of the error that stopped a run (the end of its stderr, after the progress bar)."""
    return ("error: " + completed.stderr.rsplit("error: ", 1)[1]).strip().splitlines()


def test_a_canary_that_runs_out_of_time_says_so_first_and_what_to_do(bundle: Path, release_dir: Path,
                                                                     tmp_path: Path) -> None:
    """--timeout far too short for this machine: each check of the reference ends not run, for lack of time."""
    submissions = submit(bundle, tmp_path / "submissions", {"alice": REFERENCE})
    completed = autograde(submissions, tmp_path / "out", release_dir, "--questions", "q3", "--timeout", "2",
                          "--jobs", "1")
    assert completed.returncode == EXIT_MISCONFIGURED, completed.stdout[-2000:] + completed.stderr[-2000:]
    message = canary_message(completed)
    assert re.match(r"error: the canary failed, so no student was graded: it timed out: the reference solution lost "
                    r"[\d.]+ of 20 points, all to checks that ran out of time", message[0]), message
    assert message[1] == f"To fix it: {Cause.OVERLOAD.advice} (this run: --timeout 2, --jobs 1)."
    details = tmp_path / "out" / "errors" / ".canary.txt"
    assert message[-1].endswith(f"is in {details}") and len(message) <= 4 and len(message[0]) <= 250
    assert "[out of time, 0 of" in details.read_text() and "--timeout 2 " in details.read_text()
    assert not (tmp_path / "out" / "alice").exists()


def test_a_symlinked_python_environment_grades_exactly(bundle: Path, release_dir: Path, tmp_path: Path) -> None:
    """A .venv reached through a symbolic link (or a $HOME that is one) once gave every student 0 with exit 0."""
    linked = tmp_path / "linked-venv"
    linked.symlink_to(Path(sys.prefix))
    submissions = submit(bundle, tmp_path / "submissions", {"alice": REFERENCE})
    (tmp_path / "out").mkdir()
    subprocess.run(["cp", "-r", str(release_dir / "course"), str(tmp_path / "out" / "course")], check=True)
    completed = subprocess.run([str(linked / "bin" / "python"), "-m", "grading", "autograde", str(submissions),
                                "--out", str(tmp_path / "out"), *QUESTIONS], cwd=REPO, capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert scores(results(tmp_path / "out")["alice"]) == EXACT


@pytest.fixture(scope="module")
def loaded(bundle: Path, release_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """Twelve honest students graded with --jobs at twice the cores while busy loops keep every core busy, then
    graded again, quietly: (first run, its results, second run, its results)."""
    root = tmp_path_factory.mktemp("loaded")
    students = {f"honest-{i:02d}": REFERENCE for i in range(10)}
    students |= {"honest-module-classes": Answers(base="reference", regions=MODULE_CLASSES),
                 "honest-groups-by-hand": Answers(base="reference",
                                                  regions={"q3_make_norm": LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS})}
    submissions = submit(bundle, root / "submissions", students)
    cores = os.cpu_count() or 1
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        first = autograde(submissions, root / "out", release_dir, *QUESTIONS, "--jobs", str(2 * cores))
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()
    first_results = results(root / "out")
    second = autograde(submissions, root / "out", release_dir, *QUESTIONS)
    return first, first_results, second, results(root / "out")


# Of the twelve loaded students, how many at least get their exact score rather than an ERROR: all twelve did on two
# shared, busy cores (2026-12-08), so a grader that turns load into errors, or every student into one, fails here.
LEAST_EXACT_UNDER_LOAD = 9
# What of the machine may fail under load; a bug of the grader or a suite's points may not.
LOAD_CAUSES = {Cause.OVERLOAD, Cause.SANDBOX, Cause.KILLED, Cause.CLEAN_UP}


def test_under_load_a_student_gets_the_exact_score_or_an_error_never_a_wrong_ok(loaded: Loaded) -> None:
    first, graded, _, _ = loaded
    errors = {s: (r.error_cause, r.error) for s, r in graded.items() if r.error}
    assert first.returncode == (EXIT_GRADER_ERRORS if errors else 0), first.stdout[-2000:] + first.stderr[-2000:]
    assert len(graded) == 12
    wrong = {s: (r.status, scores(r)) for s, r in graded.items() if not r.error and scores(r) != EXACT}
    assert not wrong
    assert all(cause in LOAD_CAUSES for cause, _ in errors.values()), errors
    assert len(graded) - len(errors) >= LEAST_EXACT_UNDER_LOAD, errors


def test_after_load_a_plain_rerun_gives_every_exact_score(loaded: Loaded) -> None:
    _, _, second, regraded = loaded
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert all(not r.error and scores(r) == EXACT for r in regraded.values())
