"""The canary: before anyone is graded, the reference solution (the source files, solutions included) is graded in
the same sandbox, with the same Python and the same settings. A grader that cannot give it every autograded point
must grade no one: the run stops, saying what failed and what to do. It also checks, once, that each hidden suite's
points add up. Both front doors use it: autograde grades it as the first job (on slot 0, whose zygote it warms) and
nbgrader's autograde grades it in JudgedExecute before its first student."""
import os
import shutil

import nbformat

from grading.assignment import ASSIGNMENT, BY_ID, NOTEBOOK, PYFILE
from grading.handoff import GradingRun, Job, Submission
from grading.isolation import scratch
from grading.isolation.sandbox import check_sandbox
from grading.pipeline.grade import grade
from grading.pipeline.intake import unpack
from grading.records.results import StudentResult
from grading.settings import REPO, ConfigurationError

CANARY = ".canary"  # a name no student can have (intake takes no entry that starts with a dot)
ADVICE = [  # (words of what failed, what to do)
    ("did not start", "check that bubblewrap works here (`bwrap --ro-bind / / true`) and that the grader's Python "
                      "environment is intact; run the grader with the interpreter of the course's .venv"),
    ("could not be started", "check that bubblewrap works here and that the grader's Python environment is intact"),
    ("hidden tests of", "make the points of the checks in grading/hidden/ add up to grading/assignment.py"),
    ("took longer than", "the machine is too slow or too loaded for these settings: use fewer --jobs or a larger "
                         "--timeout"),
]


class CanaryFailed(ConfigurationError):
    """The reference solution did not earn every autograded point: the grader is broken or misconfigured here."""


def canary_job(work):
    """A Job that grades the source files, staged in work."""
    folder = work / "canary-source"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in (PYFILE, NOTEBOOK):
        shutil.copy(REPO / name, folder / name)
    return Job(Submission(CANARY, folder, "folder"))


def grade_canary_here(settings, config, gradebook, slot):
    """Grade the canary in this process, as nbgrader's autograde grades (no child process), and check it; gradebook
    is the course's gradebook file, only read, beside the course's release folder."""
    folder = scratch.make("canary-")
    try:
        job = canary_job(folder)
        (folder / "in").mkdir()
        intake = unpack(job.submission, folder / "in")
        released = nbformat.read(gradebook.parent / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
        try:
            run = GradingRun(settings=settings, fingerprint="", snapshot=gradebook, released=released, config=config,
                             isolation=check_sandbox(settings, log=lambda message: None), grader_pid=os.getpid())
            result, _ = grade(job.submission, intake, run, slot)
        except Exception as error:  # a grader error, or a hidden suite whose points do not add up
            result = StudentResult(CANARY, error=f"{type(error).__name__}: {error}")
    finally:
        scratch.remove(folder)
    check_canary(result, settings.question_list)


def check_canary(result, questions):
    """Raise CanaryFailed, with what failed and what to do, unless result gives the reference every autograded
    point of questions."""
    problems = missed(result, questions)
    if problems:
        advice = next((what for words, what in ADVICE if any(words in p for p in problems)),
                      "grade the source files alone (python -m grading release checks them) to see why")
        raise CanaryFailed("the reference solution, graded first as a check of this machine, did not earn every "
                           "autograded point, so no student was graded: " + "; ".join(problems) + ". To fix it: "
                           + advice + ".")


def missed(result, questions):
    """What the reference missed, in words."""
    if result.error:
        return [result.error]
    problems = []
    for q in questions:
        scored = result.questions[q]
        if scored.score < BY_ID[q].points:
            why = "; ".join(f"{t.name}: {t.message}" for t in scored.tests if not t.passed) or scored.status
            problems.append(f"{q} earned {scored.score:g} of {BY_ID[q].points:g} points ({why})")
    return problems
