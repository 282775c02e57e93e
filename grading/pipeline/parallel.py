"""Grading submissions in parallel: each in a forked child process of its own, at most --jobs at a time, each child
on a worker slot whose zygote forks its kernel (isolation/zygote.py).

The parent takes each submission's files (intake) before it forks the child, so that a submission is unpacked
once and the parent holds the files it records, whatever becomes of the child. A child writes its result
(records/results.py) and the judged notebook into its folder and exits; one that overruns --timeout by more than
the watchdog's grace is killed. What a child leaves behind goes to `finish`; a child that leaves no result (it
crashed, was killed, met a GraderError or overran) becomes a grader error, never a verdict.

A child that fails hands its failure over as data, failure.json in its folder (a records.results.GraderFailure:
cause, message, traceback), which the parent reads from its own child's folder and nowhere else, and never parses
out of text. The parent adds what only it can see (a child that overran, or ended without a word) and passes the
GraderFailure on to `finish`, whose caller writes it where the TA reads it.
"""
import ctypes
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import nbformat

from grading.assignment import KERNEL_QUESTIONS
from grading.handoff import GradingRun, Job, Submission
from grading.isolation import tree, users
from grading.failures import Cause
from grading.isolation.sandbox import PYTHON, Isolation, Limits
from grading.isolation.zygote import Zygote, Zygotes
from grading.pipeline.grade import grade
from grading.pipeline.hidden_suites import warm_up
from grading.pipeline.intake import unpack
from grading.stages import STAGES, absorb, reset, save, stage
from grading.records.results import (GraderFailure, QuestionScore, StudentResult, error_file, load_result, save_result,
                                     write_atomic)

logger = logging.getLogger(__name__)

RESULT, JUDGED, FAILURE = "result.json", "judged.ipynb", "failure.json"  # what a child leaves in its folder


# What a finished job hands to its caller: the job, its result, the judged notebook (or None), its GraderFailure (or
# None)
Finish = Callable[[Job, StudentResult, nbformat.NotebookNode | None, GraderFailure | None], None]
# {sentinel: (the child, its job, its worker slot, its folder, when it started)}
Running = dict[int, tuple[BaseProcess, Job, int, Path, float]]


def grade_in_children(jobs: list[Job], run: GradingRun, work: Path, finish: Finish, canary: Job | None = None,
                      check_canary: Callable[[StudentResult, GraderFailure | None], None] | None = None) -> None:
    """Grade jobs (Job) in forked children, at most run.settings.jobs at a time, in folders under work; call
    finish(job, result, judged notebook or None, GraderFailure or None) for each, in the order they end: the
    GraderFailure of a result that is a grader error, None for a verdict (or for an error kept from earlier). Nothing
    is started (no slot, no zygote) that the jobs do not need.

    A canary Job, when given, is graded first, on slot 0, while the other slots start on the jobs; check_canary(its
    result, its GraderFailure or None) raises when the grader must not go on, and then nothing is finished and every
    child is stopped. Until it has passed, finished jobs wait. The run's zygotes are started here and end with it."""
    if not jobs:
        return
    with Zygotes() as zygotes:
        _grade_all(jobs, replace(run, zygotes=zygotes), zygotes, work, finish, canary, check_canary)


def _grade_all(jobs: list[Job], run: GradingRun, zygotes: Zygotes, work: Path, finish: Finish, canary: Job | None,
               check_canary: Callable[[StudentResult, GraderFailure | None], None] | None) -> None:
    settings = run.settings
    queue = ([canary] if canary else []) + list(jobs)
    free_slots = list(range(min(max(1, settings.jobs), len(queue))))
    limits = Limits.from_settings(settings)
    uses_kernel = any(q in KERNEL_QUESTIONS for q in settings.question_list)
    if uses_kernel:
        with stage("per run: start the zygotes"):
            for slot in free_slots:
                zygotes.for_slot(slot, limits)  # started here, so that they outlive the children that fork kernels
    with stage("per run: warm up the hidden suites"):
        warm_up()  # while the zygotes import torch
    held: list[tuple[Job, StudentResult, nbformat.NotebookNode | None, GraderFailure | None]] | None = \
        [] if canary else None  # what ended before the canary passed
    running: Running = {}
    try:
        while queue or running:
            while queue and free_slots:
                job, slot = queue.pop(0), free_slots.pop(0)
                with stage("per run: the canary's intake and fork" if job is canary else "main: intake and fork"):
                    running.update(_start(job, run, slot, Path(work) / job.submission.student_id))
            ready = multiprocessing.connection.wait(list(running), timeout=5)
            for sentinel in list(running):
                child, job, slot, folder, started = running[sentinel]
                overdue = time.monotonic() - started > settings.timeout + settings.watchdog_grace
                if sentinel not in ready and not overdue:
                    continue
                if overdue and child.is_alive():
                    child.kill()
                child.join()
                del running[sentinel]
                zygote = zygotes.for_slot(slot, limits) if uses_kernel else None
                # a child killed as overdue leaves its kernel running: it goes now; a zygote that fails is replaced
                if zygote is not None and not _swept(zygote):
                    zygotes.for_slot(slot, limits)
                free_slots.append(slot)
                result, judged, failure = child_outcome(folder, job, run, overdue, child.exitcode)
                absorb(folder / STAGES, "per run: the canary's child" if job is canary else "child")
                # a child killed as overdue leaves its user's processes: no result is written while one runs
                if run.isolation is Isolation.SEPARATE_USER and not users.end_user(users.uid_of(slot), PYTHON):
                    failure = GraderFailure(Cause.CLEAN_UP, f"the processes or files of the user {users.uid_of(slot)}, "
                                            "which ran the submission's code, could not all be removed")
                    result, judged = grader_error(job.submission, run, failure), None
                if job is canary:
                    assert check_canary is not None and held is not None, "a canary is checked by check_canary"
                    check_canary(result, failure)
                    tree.remove(folder)
                    for waiting in held:
                        _finish(finish, *waiting)
                    held = None
                elif held is not None:
                    held.append((job, result, judged, failure))
                else:
                    _finish(finish, job, result, judged, failure)
    finally:
        for child, *_ in running.values():
            child.kill()
            child.join()


def _swept(zygote: Zygote) -> bool:
    """Whether the zygote's sandbox was cleaned after a submission. Whatever goes wrong there retires the zygote
    (the slot's next kernel starts in a new one) and never stops the batch; what was unexpected is logged whole."""
    try:
        return zygote.sweep()
    except Exception:
        logger.warning("cleaning a slot's sandbox after a submission failed; its zygote is retired (-v: why)")
        logger.debug("the sweep's failure", exc_info=True)
        zygote.retire("cleaning after a submission failed (see the grader's log)")
        return False


def _start(job: Job, run: GradingRun, slot: int, folder: Path) -> Running:
    """Take the job's files (intake, in this process) and fork its child: {sentinel: what the loop keeps of it}."""
    tree.remove(folder)
    (folder / "in").mkdir(parents=True)
    job.intake = unpack(job.submission, folder / "in")
    child = multiprocessing.get_context("fork").Process(target=_child, args=(job, run, slot, folder), daemon=False)
    child.start()
    return {child.sentinel: (child, job, slot, folder, time.monotonic())}


def _finish(finish: Finish, job: Job, result: StudentResult, judged: nbformat.NotebookNode | None,
            failure: GraderFailure | None) -> None:
    """Hand a finished job to finish, then remove the files the parent took for it."""
    with stage("main: finish", rest="results.json, feedback.html, grade.json, grades.csv"):
        finish(job, result, judged, failure)
    assert job.intake is not None and job.intake.folder is not None, "a started job has its intake"
    tree.remove(job.intake.folder.parent)


def _child(job: Job, run: GradingRun, slot: int, folder: Path) -> None:
    """Body of a submission's child process: grade, write the result (or the GraderFailure of whatever was raised
    instead: a GraderError's cause, any other exception a bug), exit."""
    reset()
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader, taking the sandboxes along
    with stage("import torch"):
        import torch
    torch.set_num_threads(1)
    try:
        assert job.intake is not None, "_start took the job's files before it forked this child"
        with stage("grade", rest="the notebook against the release, status"):
            result, judged = grade(job.submission, job.intake, run, slot)
        with stage("result files (result.json, judged.ipynb)"):
            if judged is not None:
                write_atomic(folder / JUDGED, nbformat.writes(judged))
            save_result(folder / RESULT, result)
    except BaseException as error:
        write_atomic(folder / FAILURE, json.dumps(GraderFailure.of(error).to_json()))
    save(folder / STAGES)
    sys.stdout.flush()
    os._exit(0)


def child_outcome(folder: Path, job: Job, run: GradingRun, overdue: bool, exitcode: int | None
                  ) -> tuple[StudentResult, nbformat.NotebookNode | None, GraderFailure | None]:
    """(result, judged notebook, None) of the child that graded in folder, or, where it left no result, (a result
    that says what of the machine failed, None, its GraderFailure): the one the child handed over, else an overdue
    child's (OVERLOAD) or a silent one's (KILLED). exitcode: the child's, as multiprocessing has it (minus the signal
    that ended it)."""
    result = load_result(folder / RESULT)
    if result is not None:
        judged = nbformat.read(folder / JUDGED, as_version=4) if (folder / JUDGED).is_file() else None
        return result, judged, None
    failure = handed_over(folder / FAILURE)
    if failure is None and overdue:
        failure = GraderFailure(Cause.OVERLOAD, f"grading took longer than "
                                f"{run.settings.timeout + run.settings.watchdog_grace:g} s, past the submission's own time "
                                "budget, and was stopped (is the machine overloaded?)")
    elif failure is None:
        how = f"was killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else \
            f"exited with status {exitcode}"
        failure = GraderFailure(Cause.KILLED, f"the grading process ended without a result: it {how}")
    return grader_error(job.submission, run, failure), None, failure


def handed_over(path: Path) -> GraderFailure | None:
    """The GraderFailure a child wrote at path, or None where it wrote none that can be read."""
    try:
        return GraderFailure.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return None


def grader_error(submission: Submission, run: GradingRun, failure: GraderFailure) -> StudentResult:
    """The StudentResult of a submission the machine failed to grade (failure: a GraderFailure): no points, and its
    status says what failed and which file under OUT tells the rest."""
    error, where = failure.summary, error_file(submission.student_id)
    result = StudentResult(submission.student_id, status=f"ERROR: {error} (cause: {failure.cause.value}; traceback "
                           f"and what to do in {where})", error=error, error_cause=failure.cause, error_file=where,
                           fingerprint=run.fingerprint, kind=submission.kind, isolation=run.isolation.value)
    result.questions = {q: QuestionScore(graded=False, status=f"not graded yet: {error}")
                        for q in run.settings.question_list}
    return result
