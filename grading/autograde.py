"""`python -m grading autograde`: grade every submission, in parallel, each in a child process of its own.

The main process prepares the course once, forks one child per submission (at most --jobs at a time) and is the
only writer of outputs: when a child ends it writes that student's results.json and feedback.html, records the
grades in the gradebook, and writes grade.json last, which marks the student as done; grades.csv is rewritten after
every student. Killed at any moment (even with SIGKILL), a new run finds every student either done or not, regrades
only the latter, and ends with the same files and gradebook as an uninterrupted run.
"""
import ctypes
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import time
import traceback
from datetime import timezone
from pathlib import Path

from tqdm import tqdm

import nbformat
from nbgrader.api import Gradebook

from grading import gradebook
from grading.course import build_course, db_url, grading_fingerprint, import_roster, write_config
from grading.intake import discover
from grading.late import LatePolicy, parse_due, seconds_late
from grading.pipeline import course_config
from grading.results import (Question, StudentResult, grades_csv, load_result, mark_done, table, write_atomic,
                             write_student)
from grading.sandbox import MISSING_SANDBOX, Limits, bwrap_works
from grading.settings import ASSIGNMENT, BONUS_THRESHOLDS, COURSE_ID, KERNEL_QUESTIONS, NOTEBOOK, QUESTION_IDS
from grading.shards import in_shard, write_rejected
from grading.suite import warm_up
from grading.worker import Context, clear_stale_scratch, grade
from grading.zygote import zygote_for

WATCHDOG_GRACE = 120


class ConfigurationError(Exception):
    """The grader itself cannot run as asked (as opposed to a submission that cannot be graded)."""


def source_stamp(submission):
    """Cheap fingerprint of what was submitted (names, sizes and times of its files), to skip unchanged work."""
    path = submission.path
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if not p.is_symlink())
    return hashlib.sha256(repr([(str(p.relative_to(path.parent)), p.lstat().st_size, p.lstat().st_mtime_ns)
                                for p in entries]).encode()).hexdigest()[:20]


def prepare(out_dir, settings, log, roster=None):
    """Build the course and everything the children share."""
    try:
        settings.question_list
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if roster is not None and not Path(roster).is_file():
        raise ConfigurationError(f"the roster {roster} is not a file")
    try:
        due = parse_due(settings.due) if settings.due else None
        policy = LatePolicy.parse(settings.late_policy)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if not bwrap_works():
        if settings.require_sandbox:
            raise ConfigurationError("bubblewrap (bwrap) is missing or cannot create namespaces here, and "
                                     "--require-sandbox was given")
        log(MISSING_SANDBOX)
    course = out_dir / "course"
    build_course(course)
    write_config(course, settings)
    with Gradebook(db_url(course), COURSE_ID) as gb:  # nbgrader's autograde and export see the same due date
        gb.update_or_create_assignment(ASSIGNMENT, duedate=due.astimezone(timezone.utc).replace(tzinfo=None)
                                       if due else None)
    if roster is not None:
        try:
            import_roster(course, roster)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    fingerprint = hashlib.sha256(json.dumps([grading_fingerprint(), BONUS_THRESHOLDS]).encode()).hexdigest()[:20]
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "gradebook-snapshot.db"
    shutil.copy(course / "gradebook.db", snapshot)
    clear_stale_scratch()
    warm_up()
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return course, Context(snapshot, fingerprint, settings, released, course_config(course), bwrap_works(),
                           os.getpid(), due, policy)


def autograde(submissions_dir, out_dir, settings, log=print, progress=True, roster=None, shard=(1, 1)):
    """Grade the submissions in submissions_dir (those of shard (I, N): grading/shards.py) into out_dir; return
    every student's StudentResult."""
    submissions_dir, out_dir = Path(submissions_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise ConfigurationError(f"{submissions_dir} is not a folder of submissions")
    out_dir.mkdir(parents=True, exist_ok=True)
    course, context = prepare(out_dir, settings, log, roster)
    submissions, rejected = discover(submissions_dir)
    if shard != (1, 1):
        submissions = [s for s in submissions if in_shard(s.student_id, shard)]
        rejected = [entry for entry in rejected if in_shard(entry.name, shard)]
        log(f"shard {shard[0]}/{shard[1]}: {len(submissions)} submissions")
    write_rejected(out_dir, rejected)
    full_run = set(settings.question_list) == set(QUESTION_IDS)
    results, pending = {}, []
    for submission in submissions:
        previous = load_result(out_dir / submission.student_id / "grade.json")
        stamp = source_stamp(submission)
        if previous is not None:
            results[submission.student_id] = previous
        unchanged = previous is not None and previous.fingerprint == context.fingerprint and previous.stamp == stamp
        if settings.force or not full_run or not unchanged:
            pending.append((submission, stamp, previous))
    skipped = len(submissions) - len(pending)
    if skipped:
        log(f"{skipped} of {len(submissions)} submissions already graded and unchanged (use --force to regrade)")
    bar = tqdm(total=len(pending), desc="grading", unit="submission", disable=not progress or not pending)
    tqdm.monitor_interval = 0  # no monitor thread: this process forks

    def finish(submission, stamp, previous, result, judged):
        if previous is not None and not full_run:
            kept = [q for q in previous.questions if q not in result.questions]
            merged = {**previous.questions, **result.questions}
            result.questions = {q: merged[q] for q in QUESTION_IDS if q in merged}
            if kept and previous.submission != result.submission:
                result.notes.append(f"the submission changed since {', '.join(kept)} were graded; they keep their "
                                    "earlier scores until regraded")
        result.stamp = stamp
        result.late_seconds = seconds_late(result.timestamp, context.due)
        result.late_penalty = context.late_policy.penalty(result.raw_total, result.late_seconds)
        write_student(out_dir, result)
        gradebook.record(course, submission, result, judged, settings.question_list, context.config,
                         context.released)
        mark_done(out_dir, result)
        results[result.student_id] = result
        write_atomic(out_dir / "grades.csv", grades_csv(results.values(), rejected))
        bar.update()
        bar.set_postfix_str(f"{result.student_id}: {result.total:.1f}")

    run_children(pending, context, out_dir / ".work", settings, finish)
    bar.close()
    write_atomic(out_dir / "grades.csv", grades_csv(results.values(), rejected))
    log(table(results.values()))
    for entry in rejected:
        log(f"not graded: {entry.name}: {entry.status}")
    log(f"wrote {out_dir / 'grades.csv'}, per-student results.json and feedback.html, and the gradebook "
        f"{course / 'gradebook.db'}")
    return [results[k] for k in sorted(results)]


def run_children(pending, context, work, settings, finish):
    """Grade pending submissions in forked children, at most settings.jobs at a time, and call finish for each."""
    context_fork = multiprocessing.get_context("fork")
    free_slots = list(range(max(1, settings.jobs)))
    limits = Limits.from_settings(settings)
    uses_kernel = any(q in KERNEL_QUESTIONS for q in settings.question_list)
    if uses_kernel:
        for slot in free_slots:
            zygote_for(slot, limits)  # started here, so that they outlive the children that fork kernels from them
    queue = list(pending)
    running = {}
    while queue or running:
        while queue and free_slots:
            submission, stamp, previous = queue.pop(0)
            slot = free_slots.pop(0)
            folder = work / submission.student_id
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            child = context_fork.Process(target=_child, args=(submission, context, slot, folder), daemon=False)
            child.start()
            running[child.sentinel] = (child, submission, stamp, previous, slot, folder, time.monotonic())
        ready = multiprocessing.connection.wait(list(running), timeout=5)
        for sentinel in list(running):
            child, submission, stamp, previous, slot, folder, started = running[sentinel]
            overdue = time.monotonic() - started > settings.timeout + WATCHDOG_GRACE
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
            result, judged = collect(folder, submission, context, overdue)
            finish(submission, stamp, previous, result, judged)
            shutil.rmtree(folder, ignore_errors=True)


def _child(submission, context, slot, folder):
    """Body of a submission's child process: grade, write the result, exit."""
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader, taking the sandboxes along
    import torch
    torch.set_num_threads(1)
    try:
        result, judged = grade(submission, context, slot)
        if judged is not None:
            write_atomic(folder / "judged.ipynb", nbformat.writes(judged))
        write_atomic(folder / "result.json", json.dumps(result.to_json()))
    except BaseException:
        write_atomic(folder / "crash.txt", traceback.format_exc())
    sys.stdout.flush()
    os._exit(0)


def collect(folder, submission, context, overdue):
    """The child's result, or a result that says why there is none (every part then scores 0)."""
    result = load_result(folder / "result.json")
    if result is not None:
        judged = None
        if (folder / "judged.ipynb").is_file():
            judged = nbformat.read(folder / "judged.ipynb", as_version=4)
        return result, judged
    if overdue:
        reason = f"grading took longer than {context.settings.timeout + WATCHDOG_GRACE:g} s and was stopped"
    elif (folder / "crash.txt").is_file():
        reason = "the grader failed on this submission: " + \
                 (folder / "crash.txt").read_text().strip().splitlines()[-1][:300]
    else:
        reason = "the grading process ended without a result"
    result = StudentResult(submission.student_id, status=reason, fingerprint=context.fingerprint,
                           kind=submission.kind, sandboxed=context.use_bwrap)
    result.questions = {q: Question(graded=False, status=reason) for q in context.settings.question_list}
    return result, None
