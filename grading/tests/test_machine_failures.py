"""When the grading machine fails, no student is recorded with a score: the failure is retried where it can be, or
the student is an ERROR (exit status 3) that a plain rerun grades exactly; a grader that cannot grade the reference
solution grades no one (exit status 2). The faults are made on purpose (faults.py), each in one student's
grading child; a symlinked Python environment, and a machine kept busy, are real."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REFERENCE, REPO, autograde, grades, reference_with_added_cell, results, submit
from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, MODULE_CLASSES
from grading.authoring.samples import Answers
from grading.isolation.sandbox import bwrap_works
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")
EXACT = {"q1": 20.0, "q3": 20.0}  # what the reference earns on the questions graded here
QUESTIONS = ("--questions", "q1,q3")  # one question of the .py child and one of the kernel: each machine part
EVERY_POINT = {"q1": 20.0, "q2": 20.0, "q3": 20.0, "q4": 10.0, "q5": 10.0}


# A cell that ends the kernel, as a stray os._exit would: the grader restarts the kernel and replays the cells
# before that one, and the rest run in the new kernel.
ENDS_ITS_KERNEL_ONCE = reference_with_added_cell("import os\nos._exit(1)")


def with_fault(fault, submissions, out, release_dir, *options, scratch=None):
    """`python -m grading autograde` with a fault installed (faults.py)."""
    if not (out / "course").exists():
        subprocess.run(["cp", "-r", str(release_dir / "course"), str(out / "course")], check=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAULT_SCRATCH": str(scratch or out)}
    return subprocess.run([sys.executable, str(Path(__file__).parent / "faults.py"), fault, "autograde",
                           str(submissions), "--out", str(out), *options], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def faulty(bundle, release_dir, tmp_path_factory):
    """The reference submitted by one student per fault and by one without: graded with the faults, then again
    without them, with every question, as a TA runs it. (first run, its results, second run, its results)"""
    root = tmp_path_factory.mktemp("faults")
    students = ["fault-kernel-once", "fault-kernel-twice", "fault-zygote-killed", "fault-bwrap-fails",
                "fault-child-killed", "untouched-by-faults"]
    submissions = submit(bundle, root / "submissions", {student: REFERENCE for student in students}
                         | {student: ENDS_ITS_KERNEL_ONCE for student in ("fault-restart-once", "fault-restart-fails")})
    (root / "out").mkdir()
    first = with_fault("per-student", submissions, root / "out", release_dir, "--jobs", "2")
    outputs = {s: {"row": row, **{name: (root / "out" / s / name).read_text() for name in ("results.json",
                                                                                      "feedback.html")}}
               for s, row in grades(root / "out").items()}
    first_results = results(root / "out")
    second = autograde(submissions, root / "out", release_dir, "--jobs", "2")
    return first, first_results, second, results(root / "out"), outputs


def scores(result, expected=EXACT):
    return {q: result.questions[q].score for q in expected}


def test_what_is_retried_ends_with_the_exact_score(faulty):
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
])
def test_what_cannot_be_retried_is_an_error_without_points(faulty, student, words):
    first, graded, _, _, outputs = faulty
    assert first.returncode == EXIT_GRADER_ERRORS, first.stdout[-2000:] + first.stderr[-2000:]
    assert words in graded[student].error and graded[student].status.startswith("ERROR: ")
    row = outputs[student]["row"]
    assert {row[q] for q in EVERY_POINT} == {""} and row["total"] == "" and row["status"].startswith("ERROR: ")
    assert student in first.stdout.split("could not be graded because the grading machine failed")[1]
    assert "score" not in outputs[student]["results.json"]
    assert "the grading machine failed, not your code" in outputs[student]["feedback.html"]


def test_a_plain_rerun_grades_exactly_the_students_with_errors(faulty):
    first, graded, second, regraded, _ = faulty
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "4 of 8 submissions already graded and unchanged" in second.stdout
    assert all(not r.error and scores(r, EVERY_POINT) == EVERY_POINT for r in regraded.values())
    assert regraded["untouched-by-faults"].seconds == graded["untouched-by-faults"].seconds  # not regraded


def test_a_suite_whose_points_do_not_add_up_stops_the_grader_before_anyone_is_graded(bundle, release_dir, tmp_path):
    submissions = submit(bundle, tmp_path / "submissions", {"alice": REFERENCE})
    (tmp_path / "out").mkdir()
    completed = with_fault("inconsistent-suite", submissions, tmp_path / "out", release_dir, "--questions", "q1",
                           scratch=tmp_path)
    assert completed.returncode == EXIT_MISCONFIGURED, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "the hidden tests of q1_forward are worth 21 points, not 20" in completed.stderr
    assert "make the points of the checks in grading/hidden/ add up" in completed.stderr
    assert not (tmp_path / "out" / "alice").exists()


def test_a_symlinked_python_environment_grades_exactly(bundle, release_dir, tmp_path):
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
def loaded(bundle, release_dir, tmp_path_factory):
    """Twelve honest students graded with --jobs at twice the cores while busy loops keep every core busy, then
    graded again, quietly: (first run, its results, second run, its results)."""
    root = tmp_path_factory.mktemp("loaded")
    students = {f"honest-{i:02d}": REFERENCE for i in range(10)}
    students |= {"honest-module-classes": Answers(base="reference", regions=MODULE_CLASSES),
                 "honest-groups-by-hand": Answers(base="reference",
                                                  regions={"q3_make_norm": LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS})}
    submissions = submit(bundle, root / "submissions", students)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count())]
    try:
        first = autograde(submissions, root / "out", release_dir, *QUESTIONS, "--jobs", str(2 * os.cpu_count()))
    finally:
        for loop in busy:
            loop.kill()
            loop.wait()
    first_results = results(root / "out")
    second = autograde(submissions, root / "out", release_dir, *QUESTIONS)
    return first, first_results, second, results(root / "out")


def test_under_load_a_student_gets_the_exact_score_or_an_error_never_a_wrong_ok(loaded):
    first, graded, _, _ = loaded
    assert first.returncode in (0, EXIT_GRADER_ERRORS), first.stdout[-2000:] + first.stderr[-2000:]
    assert len(graded) == 12
    wrong = {s: (r.status, scores(r)) for s, r in graded.items() if not r.error and scores(r) != EXACT}
    assert not wrong


def test_after_load_a_plain_rerun_gives_every_exact_score(loaded):
    _, _, second, regraded = loaded
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert all(not r.error and scores(r) == EXACT for r in regraded.values())
