"""The canary: before anyone is graded, the reference solution (the source files, solutions included) is graded in
the same sandbox, with the same Python and the same settings. A grader that cannot give it every autograded point
must grade no one: the run stops, saying what failed and what to do. It also checks, once, that each hidden suite's
points add up. Both front doors use it: autograde grades it as the first job (on slot 0, whose zygote it warms) and
nbgrader's autograde grades it in its front door (front_door.CheckedAutograde) before its first student.

What failed is read from typed data, never from the words of a message: the cause of a grader error
(failures.Cause, with its advice), or how each check the reference failed ended (Test.failure). The message says
what failed on its first line and what to do on the next; the rest (every failing check with its message, the
traceback) goes to a file whose path it gives: OUT/errors/.canary.txt under autograde, and under nbgrader's
autograde, which has no OUT, errors/.canary.txt in the course folder."""
import os
import shutil
from pathlib import Path

import nbformat
from traitlets.config import Config

from grading.assignment import ASSIGNMENT, BY_ID, KERNEL_QUESTIONS, NOTEBOOK, PYFILE
from grading.failures import Cause, Ending
from grading.handoff import GradingRun, Job, Submission
from grading.isolation import scratch
from grading.isolation.sandbox import Limits, check_sandbox
from grading.isolation.zygote import Zygotes
from grading.pipeline.grade import grade
from grading.pipeline.intake import unpack
from grading.records.results import GraderFailure, StudentResult, error_file, write_atomic
from grading.settings import REPO, ConfigurationError, Settings

CANARY = ".canary"  # a name no student can have (intake takes no entry that starts with a dot)
# How a check ends when the machine, not the reference, is too slow: it ran out of time, or was not run for lack of it
OUT_OF_TIME = {Ending.TIMED_OUT.value, Ending.OUT_OF_TIME.value, Ending.NOT_RUN.value}
SHOWN_CHARS = 160  # of a message quoted on the first line; the details file has it whole
WHAT_FAILED = {  # the first words of the first line, by the cause of a grader error
    Cause.SANDBOX: "the sandbox or the notebook's kernel did not start",
    Cause.OVERLOAD: "grading the reference solution timed out",
    Cause.KILLED: "the process grading the reference solution was killed",
    Cause.CLEAN_UP: "the sandbox's processes could not be removed after grading the reference solution",
    Cause.SUITE: "the points of the hidden suites do not add up",
    Cause.BUG: "grading the reference solution met a bug",
}


class CanaryFailed(ConfigurationError):
    """The reference solution did not earn every autograded point: the grader is broken or misconfigured here. The
    message's first line says what failed, the next ones what to do; details is the file that holds the rest."""

    def __init__(self, message: str, details: Path | None) -> None:
        super().__init__(message)
        self.details = details


def canary_job(work: Path) -> Job:
    """A Job that grades the source files, staged in work."""
    folder = work / "canary-source"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in (PYFILE, NOTEBOOK):
        shutil.copy(REPO / name, folder / name)
    return Job(Submission(CANARY, folder, "folder"))


def grade_canary_here(settings: Settings, config: Config, gradebook: Path, slot: int,
                      zygotes: Zygotes | None = None) -> None:
    """Grade the canary in this process, as nbgrader's autograde grades (no child process), and check it; gradebook
    is the course's gradebook file, only read, beside the course's release folder; zygotes the run's (None: the
    kernel starts cold). The details of a failure go to errors/.canary.txt in the course folder."""
    if zygotes is not None and any(q in KERNEL_QUESTIONS for q in settings.question_list):
        # Started before the canary's intake and sanitizing, so that its imports are done, or nearly, when the
        # canary's kernel is forked; the canary's judge finds it by the same slot and limits.
        zygotes.for_slot(slot, Limits.from_settings(settings))
    folder = scratch.make("canary-")
    failure = None
    try:
        job = canary_job(folder)
        (folder / "in").mkdir()
        intake = unpack(job.submission, folder / "in")
        released = nbformat.read(gradebook.parent / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
        try:
            run = GradingRun(settings=settings, fingerprint="", snapshot=gradebook, released=released, config=config,
                             isolation=check_sandbox(settings, lambda message: None), grader_pid=os.getpid(),
                             zygotes=zygotes)
            result, _ = grade(job.submission, intake, run, slot)
        except Exception as error:  # a grader error (a hidden suite whose points do not add up among them), or a bug
            failure = GraderFailure.of(error)
            result = StudentResult(CANARY, error=failure.summary, error_cause=failure.cause)
    finally:
        scratch.remove(folder)
    check_canary(result, settings, failure, gradebook.parent / error_file(CANARY))


def check_canary(result: StudentResult, settings: Settings, failure: GraderFailure | None, details: Path) -> None:
    """Raise CanaryFailed unless result gives the reference every autograded point of settings' questions, after
    writing the details to the file details: every check it failed, with its message, and failure's traceback
    (failure: the GraderFailure behind result's error, None if there is none). A canary that passes removes the
    details of one that failed before."""
    if not result.error and not lost_points(result, settings.question_list):
        details.unlink(missing_ok=True)
        return
    what, to_do = diagnosis(result, settings)
    write_atomic(details, details_text(result, settings, failure, what, to_do))
    raise CanaryFailed(f"the canary failed, so no student was graded: {what}\nTo fix it: {to_do}.\nThe reference "
                       f"solution was graded first as a check of this machine; every failing check, and any "
                       f"traceback, is in {details}", details)


def lost_points(result: StudentResult, questions: tuple[str, ...]) -> dict[str, float]:
    """{question: points the reference did not earn} of the questions it did not earn every point of."""
    return {q: BY_ID[q].points - result.questions[q].score for q in questions
            if result.questions[q].score < BY_ID[q].points}


def diagnosis(result: StudentResult, settings: Settings) -> tuple[str, str]:
    """(what failed, in one line; what to do) for a canary that did not earn every point."""
    if result.error:
        cause = result.error_cause or Cause.BUG
        return f"{WHAT_FAILED[cause]}: {shortened(result.error)}", advice(cause, settings)
    lost = lost_points(result, settings.question_list)
    failing = [(q, t) for q in lost for t in result.questions[q].tests if not t.passed]
    total = f"{shown(sum(lost.values()))} of {shown(sum(BY_ID[q].points for q in settings.question_list))} points"
    if failing and all(t.failure in OUT_OF_TIME for _, t in failing):
        return (f"it timed out: the reference solution lost {total}, all to checks that ran out of time or were not "
                f"run for lack of it ({len(failing)} checks)"), advice(Cause.OVERLOAD, settings)
    to_do = ("the hidden suites and the reference solution disagree on this machine: read the failing checks in the "
             "details, then fix the sources or grading/hidden/ (python -m grading release checks them on their own)")
    if not failing:
        q = next(iter(lost))
        return f"the reference solution lost {total}: {q} was not graded ({shortened(result.questions[q].status)})", \
            to_do
    kinds: dict[str, int] = {}
    for _, t in failing:
        kinds[t.failure or "failed"] = kinds.get(t.failure or "failed", 0) + 1
    q, first = failing[0]
    return (f"the reference solution lost {total}: {len(failing)} checks failed ("
            + ", ".join(f"{count} {kind}" for kind, count in kinds.items())
            + f"), the first {q} {first.name}: {shortened(first.message)}"), to_do


def advice(cause: Cause, settings: Settings) -> str:
    """What to do about a cause, with the settings that bear on it where those are the TA's to change."""
    if cause is Cause.OVERLOAD:
        return f"{cause.advice} (this run: --timeout {settings.timeout:g}, --jobs {settings.jobs})"
    return cause.advice


def shown(points: float) -> str:
    """Points as the messages show them: at most two decimals, no trailing zeros."""
    return f"{round(points, 2):g}"


def shortened(message: str) -> str:
    """The first line of message that says something, cut to SHOWN_CHARS."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    return first if len(first) <= SHOWN_CHARS else first[:SHOWN_CHARS - 1] + "\u2026"


def details_text(result: StudentResult, settings: Settings, failure: GraderFailure | None, what: str,
                 to_do: str) -> str:
    """The details file of a failed canary: what failed and what to do, the settings, every check the reference
    failed with its whole message, what could not be graded, the notes, and the traceback of a grader error."""
    lines = ["The canary (the reference solution, graded first as a check of this machine, with the settings of "
             "the run) did not earn every autograded point, so no student was graded.", "",
             f"What failed: {what}", f"What to do: {to_do}.", "",
             f"Settings: --timeout {settings.timeout:g} --jobs {settings.jobs} --cell-timeout "
             f"{settings.cell_timeout:g} --probe-timeout {settings.probe_timeout:g} --call-timeout "
             f"{settings.call_timeout:g} --questions {','.join(settings.question_list)}"]
    if result.error:
        lines += ["", f"Grader error (cause: {result.error_cause.value if result.error_cause else 'unknown'}): "
                      f"{failure.message if failure else result.error}"]
    else:
        for q in lost_points(result, settings.question_list):
            scored = result.questions[q]
            lines += ["", f"{q}: {shown(scored.score)} of {shown(BY_ID[q].points)} points"
                      + (f" ({scored.status})" if scored.status else "")]
            lines += [f"  {t.name} [{t.failure or 'failed'}, {shown(t.score)} of {shown(t.max_score)}]: {t.message}"
                      for t in scored.tests if not t.passed]
    if result.notes:
        lines += ["", "Notes:", *(f"  {note}" for note in result.notes)]
    lines += ["", "Traceback:", failure.traceback.rstrip() if failure and failure.traceback else "none"]
    return "\n".join(lines) + "\n"
