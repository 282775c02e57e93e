"""Grading submissions in parallel: each in a forked child process of its own, at most --jobs at a time, each child
on a worker slot whose zygote forks its kernel (isolation/zygote.py).

The parent takes each submission's files (intake) before it forks the child, so that a submission is unpacked
once and the parent holds the files it records, whatever becomes of the child. A child writes its result
(records/results.py) and the judged notebook into its folder and exits; one that overruns --timeout by more than
the watchdog's grace is killed. What a child leaves behind, or the reason it left nothing, goes to `finish`.
"""
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grading.assignment import KERNEL_QUESTIONS
from grading.handoff import Intake, Submission
from grading.isolation.sandbox import Limits
from grading.isolation.zygote import zygote_for
from grading.pipeline.grade import grade
from grading.pipeline.hidden_suites import warm_up
from grading.pipeline.intake import unpack
from grading.records.results import QuestionScore, StudentResult, load_result, save_result, write_atomic
from grading.settings import SCRATCH_PREFIX, Settings

RESULT, JUDGED, CRASH = "result.json", "judged.ipynb", "crash.txt"  # what a child leaves in its folder


@dataclass
class Job:
    """A submission to grade, with what the caller wants back in finish (anything: say, the earlier result)."""

    submission: Submission
    extra: object = None
    intake: Intake = None


def grade_in_children(jobs, run, work, finish):
    """Grade jobs (Job) in forked children, at most run.settings.jobs at a time, in folders under work; call
    finish(job, result, judged notebook or None) for each, in the order they end. Nothing is started (no slot, no
    zygote) that the jobs do not need."""
    if not jobs:
        return
    settings = run.settings
    warm_up()
    context_fork = multiprocessing.get_context("fork")
    free_slots = list(range(min(max(1, settings.jobs), len(jobs))))
    limits = Limits.from_settings(settings)
    uses_kernel = any(q in KERNEL_QUESTIONS for q in settings.question_list)
    if uses_kernel:
        for slot in free_slots:
            zygote_for(slot, limits)  # started here, so that they outlive the children that fork kernels from them
    queue = list(jobs)
    running = {}
    while queue or running:
        while queue and free_slots:
            job = queue.pop(0)
            slot = free_slots.pop(0)
            folder = Path(work) / job.submission.student_id
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "in").mkdir(parents=True)
            job.intake = unpack(job.submission, folder / "in")
            child = context_fork.Process(target=_child, args=(job, run, slot, folder), daemon=False)
            child.start()
            running[child.sentinel] = (child, job, slot, folder, time.monotonic())
        ready = multiprocessing.connection.wait(list(running), timeout=5)
        for sentinel in list(running):
            child, job, slot, folder, started = running[sentinel]
            overdue = time.monotonic() - started > settings.timeout + Settings.watchdog_grace
            if sentinel not in ready and not overdue:
                continue
            if overdue and child.is_alive():
                child.kill()
            child.join()
            del running[sentinel]
            zygote = zygote_for(slot, limits) if uses_kernel else None
            # a child killed as overdue leaves its kernel running: it goes now; a zygote that fails is replaced
            if zygote is not None and not zygote.sweep():
                zygote_for(slot, limits)
            free_slots.append(slot)
            result, judged = child_outcome(folder, job, run, overdue)
            finish(job, result, judged)
            shutil.rmtree(folder, ignore_errors=True)


def _child(job, run, slot, folder):
    """Body of a submission's child process: grade, write the result, exit."""
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader, taking the sandboxes along
    import torch
    torch.set_num_threads(1)
    try:
        result, judged = grade(job.submission, job.intake, run, slot)
        if judged is not None:
            write_atomic(folder / JUDGED, nbformat.writes(judged))
        save_result(folder / RESULT, result)
    except BaseException:
        write_atomic(folder / CRASH, traceback.format_exc())
    sys.stdout.flush()
    os._exit(0)


def child_outcome(folder, job, run, overdue):
    """The child's (result, judged notebook), or a result that says why there is none (every part then scores 0)."""
    result = load_result(folder / RESULT)
    if result is not None:
        judged = nbformat.read(folder / JUDGED, as_version=4) if (folder / JUDGED).is_file() else None
        return result, judged
    if overdue:
        reason = f"grading took longer than {run.settings.timeout + Settings.watchdog_grace:g} s and was stopped"
    elif (folder / CRASH).is_file():
        last_line = (folder / CRASH).read_text().strip().splitlines()[-1]
        reason = "the grader failed on this submission: " + last_line[:Settings.message_chars]
    else:
        reason = "the grading process ended without a result"
    result = StudentResult(job.submission.student_id, status=reason, fingerprint=run.fingerprint,
                           kind=job.submission.kind, sandboxed=run.use_bwrap)
    result.questions = {q: QuestionScore(graded=False, status=reason) for q in run.settings.question_list}
    return result, None


def clear_stale_scratch():
    """Remove the scratch folders of graders that are no longer running (killed before they could)."""
    for folder in Path("/tmp").glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
