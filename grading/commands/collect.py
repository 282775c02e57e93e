"""`python -m grading collect OUT1 OUT2 ... --out MERGED [--partial]`: put the shards of `autograde --shard I/N`
back together (pipeline/shards.py says who is in which shard).

collect gives what one unsharded run gives: one grades.csv, one gradebook, one set of per-student files. It
records each student into MERGED/course from their shard's files (the judged notebook and the submitted files
in the shard's course), through the same RECORD chain, so the gradebook matches cell by cell. Like autograde it
resumes: a student whose grade.json in MERGED already equals their shard's is skipped, and grade.json is written
last.

It merges whole shards only. The shards must agree on what decides a score (their OUT/run.json), and every student
in SUBMISSIONS must hold a verdict in their own shard: a grade.json from that shard's latest grader, of the files
submitted now, without a grader error. That is, nobody a plain rerun of the shard would grade again. Otherwise it
names who is missing and merges nothing; with --partial it merges what there is (grader errors as ERROR, without
points, each with its account in MERGED/errors/<student>.txt as in its shard) and names who is missing.
"""
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm
from traitlets.config import Config

from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, QUESTION_IDS
from grading.authoring.course import db_url
from grading.commands.autograde import source_stamp
from grading.nbgrader_support import course_config
from grading.pipeline.intake import discover
from grading.pipeline.shards import ShardError, check_agreement, in_shard, read_run
from grading.records import gradebook
from grading.records.cohort import write_report
from grading.records.final import waiting
from grading.records.late import record_graded_times
from grading.records.reports import errors_summary, grades_csv, table
from grading.records.results import (ERRORS, GRADE_FILE, StudentResult, error_file, load_result, mark_done,
                                     read_rejected, write_atomic, write_rejected)

logger = logging.getLogger(__name__)
# {shard index: (its folder, its run record: OUT/run.json as pipeline/shards.read_run reads it)}
Shards = dict[int, tuple[Path, dict[str, Any]]]

NAMES_SHOWN = 10  # students named per shard and reason in a message; the rest are counted


@dataclass
class Stock:
    """Where each student of SUBMISSIONS stands: mergeable ({student: grade.json}, grader errors included, which
    merge only with --partial), and the rest {student: (shard index, why it cannot be merged)}."""

    mergeable: dict[str, Path] = field(default_factory=dict)
    # {student: (shard index, the grader error, its file in the shard)}
    errors: dict[str, tuple[int, str, Path]] = field(default_factory=dict)
    ungraded: dict[str, tuple[int, str]] = field(default_factory=dict)  # {student: (shard index, why)}


def collect(shard_dirs: Sequence[Path], merged: Path, partial: bool = False,
            progress: bool = True) -> tuple[list[StudentResult], dict[str, tuple[int, str]]]:
    """Merge the autograde outputs shard_dirs into merged; return (every merged student's StudentResult, {student:
    why they are not in the merge}). ShardError, merging nothing, unless the shards are whole or partial is set."""
    shards = read_shards([Path(d) for d in shard_dirs])
    merged = Path(merged)
    stock = take_stock(shards)
    if (stock.errors or stock.ungraded) and not partial:
        raise ShardError("the shards are not finished, so nothing was merged:\n" + shortfall(stock, shards)
                         + "\nrun each shard named above again (the same autograde command grades only who is "
                         "missing; on Slurm, the same command with --shards I,J), then collect again; or pass "
                         "--partial to merge what is graded now")
    if stock.errors or stock.ungraded:
        logger.warning(f"--partial: merging {len(stock.mergeable)} of {len(stock.mergeable) + len(stock.ungraded)} students; "
                       "missing or not graded:\n" + shortfall(stock, shards))
    course = merged / "course"
    if not (course / "gradebook.db").is_file():
        shutil.copytree(shards[min(shards)][0] / "course", course)
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    config = course_config(course)
    run_questions = {folder: record["questions"].split(",") for folder, record in shards.values()}
    pending = [(student, path) for student, path in sorted(stock.mergeable.items())
               if not same_file(merged / student / GRADE_FILE, path)]
    if len(stock.mergeable) - len(pending):
        logger.info(f"{len(stock.mergeable) - len(pending)} of {len(stock.mergeable)} students already collected "
                    "and unchanged")
    for student, path in tqdm(pending, desc="collecting", unit="student", disable=not progress or not pending):
        record_student(path, course, merged, released, config, run_questions[path.parent.parent])
    results = [readable_result(merged / student / GRADE_FILE) for student in sorted(stock.mergeable)]
    rejected_by_name = {entry.name: entry for folder, _ in shards.values() for entry in read_rejected(folder)}
    rejected = [rejected_by_name[name] for name in sorted(rejected_by_name)]
    write_rejected(merged, rejected)
    write_atomic(merged / "grades.csv", grades_csv(results, rejected))
    record_graded_times(course, results, "python -m grading collect")
    write_report(merged, results, rejected, waiting(course, merged))
    print(table(results))
    summary = errors_summary(results, merged)
    if summary:
        logger.warning(summary)
    logger.info(f"collected {len(results)} students from {len(shards)} shards into {merged / 'grades.csv'} and the "
                f"gradebook {course / 'gradebook.db'}")
    return results, stock.ungraded


def read_shards(folders: list[Path]) -> Shards:
    """{shard index: (folder, run record)} of autograde outputs that agree on what decides a score."""
    records = [(folder, read_run(folder)) for folder in folders]  # a folder given twice is refused below
    unusable = [str(d) for d, record in records if record is None or not (d / "course" / "gradebook.db").is_file()]
    if unusable:
        raise ShardError(f"not the output of this grader's `python -m grading autograde` (no course/gradebook.db "
                         f"or no run.json): {', '.join(unusable)}; run autograde on them again")
    shards: Shards = {}
    for folder, record in records:
        assert record is not None  # a folder without one was refused above
        index, count = record["shard"]
        if index in shards:
            raise ShardError(f"{shards[index][0]} and {folder} are both shard {index}/{count}; pass only one")
        shards[index] = (folder, record)
    check_agreement({str(folder): record for folder, record in shards.values()})
    return shards


def take_stock(shards: Shards) -> Stock:
    """Where every student of the shards' SUBMISSIONS stands (Stock): what a plain rerun of their shard would
    grade again cannot be merged as graded."""
    record = next(iter(shards.values()))[1]
    count = record["shard"][1]
    try:
        submissions, _ = discover(record["submissions"])
    except OSError as error:
        raise ShardError(f"the shards graded {record['submissions']}, which cannot be read here ({error}); collect "
                         "needs it, at the same path, to tell who is missing") from None
    stock = Stock()
    for submission in submissions:
        student = submission.student_id
        index = next(i for i in range(1, count + 1) if in_shard(student, (i, count)))
        if index not in shards:
            stock.ungraded[student] = (index, "not graded")
            continue
        folder, record = shards[index]
        result = load_result(folder / student / GRADE_FILE)
        if result is None or result.fingerprint != record["fingerprint"]:
            stock.ungraded[student] = (index, "not graded yet")
        elif result.student_id != student:  # merged under the id it names, into the gradebook and grades.csv
            stock.ungraded[student] = (index, f"holding the grade.json of {result.student_id!r}")
        elif result.stamp != source_stamp(submission):
            stock.ungraded[student] = (index, "resubmitted since graded")
        else:
            stock.mergeable[student] = folder / student / GRADE_FILE
            if result.error:
                stock.errors[student] = (index, result.error, folder / error_file(student))
    return stock


def shortfall(stock: Stock, shards: Shards) -> str:
    """One line per shard that is not whole: who is missing, by reason, and who holds a grader error."""
    count = next(iter(shards.values()))[1]["shard"][1]
    by_shard: dict[int, dict[str, list[str]]] = {}
    for student, (index, why) in stock.ungraded.items():
        by_shard.setdefault(index, {}).setdefault(why, []).append(student)
    for student, (index, error, told) in stock.errors.items():
        by_shard.setdefault(index, {}).setdefault("grader error", []).append(f"{student}: {error} (see {told})")
    lines = []
    for index in sorted(by_shard):
        where = shards[index][0] if index in shards else "not started or not given"
        reasons = "; ".join(f"{len(names)} {why} ({', '.join(sorted(names)[:NAMES_SHOWN])}"
                            f"{', ...' if len(names) > NAMES_SHOWN else ''})"
                            for why, names in sorted(by_shard[index].items()))
        lines.append(f"  shard {index}/{count} ({where}): {reasons}")
    return "\n".join(lines)


def record_student(grade_file: Path, course: Path, merged: Path, released: nbformat.NotebookNode, config: Config,
                   run_questions: list[str]) -> None:
    """Copy one student's files from their shard into merged, and record them in its gradebook; grade.json last.
    The questions recorded are those the shard recorded: every question the student was ever graded on (runs with
    --questions keep the others), and for a grader error those of the run that met it."""
    shard_course = grade_file.parent.parent / "course"
    result = readable_result(grade_file)
    questions = run_questions if result.error else [q for q in QUESTION_IDS if q in result.questions]
    student = result.student_id
    (merged / student).mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "feedback.html"):
        shutil.copy(grade_file.parent / name, merged / student / name)
    told = error_file(student)  # a grader error's account: where the status line says, as in the shard
    (merged / told).unlink(missing_ok=True)
    if result.error and (grade_file.parent.parent / told).is_file():
        (merged / ERRORS).mkdir(exist_ok=True)
        shutil.copy(grade_file.parent.parent / told, merged / told)
    copy_student(shard_course, course, student)
    judged = shard_course / "autograded" / student / ASSIGNMENT / NOTEBOOK
    gradebook.record(course, shard_course / "submitted" / student / ASSIGNMENT, result,
                     nbformat.read(judged, as_version=4) if judged.is_file() else None, questions, config,
                     released)
    mark_done(merged, result)


def readable_result(grade_file: Path) -> StudentResult:
    """The StudentResult of grade_file, which take_stock found readable; ShardError where it no longer is."""
    result = load_result(grade_file)
    if result is None:
        raise ShardError(f"{grade_file} can no longer be read (was its shard graded again during collect?); "
                         "collect again")
    return result


def same_file(path: Path, other: Path) -> bool:
    """Whether path is a file with other's bytes."""
    return path.is_file() and path.read_bytes() == other.read_bytes()


def copy_student(source_course: Path, course: Path, student: str) -> None:
    """The student's name and email, as the shard's gradebook has them (from a roster)."""
    with Gradebook(db_url(source_course), COURSE_ID) as source:
        try:
            found = source.find_student(student)
        except MissingEntry:
            return
        details = {"first_name": found.first_name, "last_name": found.last_name, "email": found.email}
    with Gradebook(db_url(course), COURSE_ID) as gb:
        gb.update_or_create_student(student, **details)
