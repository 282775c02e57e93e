"""`python -m grading autograde`: grade every submission, in parallel, each in a child process of its own.

The main process prepares the course once (prepare_run), finds the submissions (pipeline/intake.py) and grades the
new or changed ones in children (pipeline/parallel.py), after the reference solution has passed as the canary
(pipeline/canary.py). It is the only writer of outputs: when a child ends it writes that student's results.json and
feedback.html, records the grades in the gradebook, and writes grade.json last, which marks the student as done;
grades.csv is rewritten after every student. Killed at any moment (even with SIGKILL), a new run finds every student
either done or not, regrades only the latter, and ends with the same files and gradebook as an uninterrupted run.
A student whose grading the machine failed (a grader error) is recorded without points, flagged, listed at the end,
and graded again by the next run; what failed, what to do and the traceback are in OUT/errors/<student>.txt, which
goes once the student is graded.
"""
import hashlib
import json
import logging
import os
import shutil
from dataclasses import replace
from datetime import timezone
from pathlib import Path
from typing import Sequence

import nbformat
from nbgrader.api import Gradebook
from tqdm import tqdm

from grading.assignment import ASSIGNMENT, BONUS_THRESHOLDS, COURSE_ID, NOTEBOOK, QUESTION_IDS
from grading.authoring.course import build_course, db_url, grading_fingerprint, import_roster, write_config
from grading.isolation import scratch, users
from grading.isolation.sandbox import PYTHON, Isolation, SandboxMissing, check_sandbox
from grading.nbgrader_support import course_config
from grading.handoff import GradingRun, Job, OnRecord, Submission
from grading.pipeline.canary import CANARY, canary_job, check_canary
from grading.pipeline.intake import discover
from grading.pipeline.parallel import grade_in_children
from grading.pipeline.shards import in_shard, record_run
from grading.records import gradebook
from grading.records.cohort import write_report
from grading.records.final import waiting
from grading.records.late import LatePolicy, lateness, parse_due, read_submission_times, record_graded_times
from grading.records.reports import error_report, errors_summary, grades_csv, table, write_student
from grading.records.results import (GRADE_FILE, GraderFailure, StudentResult, error_file, load_result, mark_done,
                                     write_atomic, write_rejected)
from grading.settings import GRADING, REPO, SECRETS, ConfigurationError, Settings

logger = logging.getLogger(__name__)


def source_stamp(submission: Submission) -> str:
    """Cheap fingerprint of what was submitted (names, sizes and times of its files), to skip unchanged work."""
    path = submission.path
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if not p.is_symlink())
    return hashlib.sha256(repr([(str(p.relative_to(path.parent)), p.lstat().st_size, p.lstat().st_mtime_ns)
                                for p in entries]).encode()).hexdigest()[:20]


def prepare_run(out_dir: Path, settings: Settings, roster: Path | None = None, course_template: Path | None = None,
                submissions_dir: Path | None = None, protected: Sequence[Path] = ()) -> tuple[Path, GradingRun]:
    """Build the course (a copy of course_template where that fits: authoring.course.build_course) and the
    GradingRun every child shares; (course folder, GradingRun). Where student code runs as users of its own
    (isolation/users.py), out_dir is made the grader's alone, and those users are checked to reach none of the
    secrets, out_dir and submissions_dir, and to write in none of the grader's folders and protected."""
    try:
        settings.question_list
        due = parse_due(settings.due) if settings.due else None
        policy = LatePolicy.parse(settings.late_policy)
        isolation = check_sandbox(settings)
    except (ValueError, SandboxMissing) as error:
        raise ConfigurationError(str(error)) from None
    if isolation is Isolation.SEPARATE_USER:
        out_dir.chmod(0o700)
        users.check_users(range(settings.jobs), PYTHON,
                          hidden=[*SECRETS, out_dir, *([submissions_dir] if submissions_dir else [])],
                          protected=[REPO, GRADING, out_dir, *protected])
    if roster is not None and not Path(roster).is_file():
        raise ConfigurationError(f"the roster {roster} is not a file")
    course = out_dir / "course"
    build_course(course, template=course_template)
    write_config(course, settings)
    with Gradebook(db_url(course), COURSE_ID) as gb:  # nbgrader's autograde and export see the same due date
        gb.update_or_create_assignment(ASSIGNMENT, duedate=due.astimezone(timezone.utc).replace(tzinfo=None)
                                       if due else None)
    if roster is not None:
        try:
            import_roster(course, roster)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
    # Everything that decides a score; the due date and the late policy decide the total.
    fingerprint = hashlib.sha256(json.dumps([grading_fingerprint(), BONUS_THRESHOLDS, settings.due,
                                             settings.late_policy]).encode()).hexdigest()[:20]
    work = out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    snapshot = work / "gradebook-snapshot.db"
    shutil.copy(course / "gradebook.db", snapshot)
    scratch.clear_stale()
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    return course, GradingRun(settings=settings, fingerprint=fingerprint, snapshot=snapshot, released=released,
                              config=course_config(course), isolation=isolation, grader_pid=os.getpid(), due=due,
                              late_policy=policy)


def autograde(submissions_dir: Path, out_dir: Path, settings: Settings, report: bool = True, progress: bool = True,
              roster: Path | None = None, shard: tuple[int, int] = (1, 1), course_template: Path | None = None,
              canary: bool = True, protected: Sequence[Path] = (), cohort_report: bool = True) -> list[StudentResult]:
    """Grade the submissions in submissions_dir (those of shard (I, N): pipeline/shards.py) into out_dir; return
    every student's StudentResult. report: print the table and log who was not graded and what was written (a
    check inside another command, such as the release's, reports nothing). Without the canary, the caller checks
    the grader's results itself (the release's self-check, which requires every point of the reference).
    cohort_report: write OUT/report.html (its plots cost a second and a half of CPU), which a run whose folder
    nobody reads (Gradescope's, one student per run) does without.
    protected: more folders that student code must not be able to write in (prepare_run)."""
    submissions_dir, out_dir = Path(submissions_dir), Path(out_dir)
    if not submissions_dir.is_dir():
        raise ConfigurationError(f"{submissions_dir} is not a folder of submissions")
    try:  # the times a TA declares (an LMS's export), over those of an nbgrader tree's record
        if settings.submission_times:  # absolute, for nbgrader's autograde in the course too
            settings = replace(settings, submission_times=str(Path(settings.submission_times).resolve()))
        declared = read_submission_times(settings.submission_times) if settings.submission_times else {}
        submissions, rejected = discover(submissions_dir)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    course, run = prepare_run(out_dir, settings, roster, course_template, submissions_dir, protected)
    record_run(out_dir, submissions_dir, shard, run)  # what collect checks the shards against
    if shard != (1, 1):
        submissions = [s for s in submissions if in_shard(s.student_id, shard)]
        rejected = [entry for entry in rejected if in_shard(entry.name, shard)]
        logger.info(f"shard {shard[0]}/{shard[1]}: {len(submissions)} submissions")
    write_rejected(out_dir, rejected)
    full_run = set(settings.question_list) == set(QUESTION_IDS)
    results, jobs = {}, []
    for submission in submissions:
        previous = load_result(out_dir / submission.student_id / GRADE_FILE)
        stamp = source_stamp(submission)
        late = lateness(declared.get(submission.student_id, submission.timestamp), run.due)
        if previous is not None:
            results[submission.student_id] = previous
        unchanged = previous is not None and not previous.error and previous.fingerprint == run.fingerprint \
            and previous.stamp == stamp and previous.timestamp == late.timestamp
        if settings.force or not full_run or not unchanged:
            submission.notes += [late.note] if late.note else []
            jobs.append(Job(submission, OnRecord(stamp, previous, late)))
    skipped = len(submissions) - len(jobs)
    if skipped:
        logger.info(f"{skipped} of {len(submissions)} submissions already graded and unchanged (use --force to "
                    "regrade)")
    bar = tqdm(total=len(jobs), desc="grading", unit="submission", disable=not progress or not jobs)
    tqdm.monitor_interval = 0  # no monitor thread: this process forks

    def finish(job: Job, result: StudentResult, judged: nbformat.NotebookNode | None,
               failure: GraderFailure | None) -> None:
        assert job.on_record is not None  # every job made above has one
        stamp, previous, late = job.on_record.stamp, job.on_record.previous, job.on_record.late
        kept = [q for q in previous.questions if q not in result.questions] if previous and not full_run else []
        if result.error:
            assert failure is not None  # parallel.child_outcome hands over what failed with each grader error
            told = error_report(result, failure)
            write_atomic(out_dir / result.error_file, told)
            logger.debug(f"grader error on {result.student_id}, as {result.error_file} tells it:\n{told}")
        elif previous is not None and previous.error and kept:  # its error file stays: it still tells what failed
            result.error, result.error_cause, result.error_file = previous.error, previous.error_cause, \
                previous.error_file
            told = f"; see {previous.error_file}" if previous.error_file else ""
            result.status = f"ERROR: {previous.error} ({', '.join(kept)} not graded since; regrade them{told})"
        elif previous is not None and not full_run:
            merged = {**previous.questions, **result.questions}
            result.questions = {q: merged[q] for q in QUESTION_IDS if q in merged}
            if kept and previous.submission != result.submission:
                result.notes.append(f"the submission changed since {', '.join(kept)} were graded; they keep their "
                                    "earlier scores until regraded")
        result.stamp = stamp
        result.timestamp, result.late_seconds = late.timestamp, late.seconds
        result.late_penalty = 0.0 if result.error else run.late_policy.penalty(result.raw_total, late.seconds)
        write_student(out_dir, result)
        taken = job.intake.folder if job.intake else None
        assert taken is not None  # parallel.grade_in_children unpacks every job's files before its child starts
        gradebook.record(course, taken, result, judged, settings.question_list, run.config,
                         run.released)
        mark_done(out_dir, result)
        if not result.error:
            (out_dir / error_file(result.student_id)).unlink(missing_ok=True)
        results[result.student_id] = result
        write_atomic(out_dir / "grades.csv", grades_csv(results.values(), rejected))
        bar.update()
        bar.set_postfix_str(f"{result.student_id}: {result.total:.1f}")

    try:
        grade_in_children(jobs, run, out_dir / ".work", finish,
                          canary=canary_job(out_dir / ".work") if jobs and canary else None,
                          check_canary=lambda result, failure: check_canary(result, settings, failure,
                                                                            out_dir / error_file(CANARY)))
    finally:
        bar.close()  # before a failed canary's message, which would otherwise end under the bar's last line
    write_atomic(out_dir / "grades.csv", grades_csv(results.values(), rejected))
    record_graded_times(course, results.values(), "python -m grading autograde")
    if cohort_report:
        write_report(out_dir, results.values(), rejected, waiting(course, out_dir))
    if report:
        print(table(results.values()))
        for entry in rejected:
            logger.warning(f"not graded: {entry.name}: {entry.status}")
        summary = errors_summary(results.values(), out_dir)
        if summary:
            logger.warning(summary)
        cohort = f", the cohort's {out_dir / 'report.html'}" if cohort_report else ""
        logger.info(f"wrote {out_dir / 'grades.csv'}{cohort}, per-student "
                    f"results.json and feedback.html, and the gradebook {course / 'gradebook.db'}")
    return [results[k] for k in sorted(results)]
