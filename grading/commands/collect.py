"""`python -m grading collect OUT1 OUT2 ... --out MERGED`: put the shards of `autograde --shard I/N` back together
(pipeline/shards.py says who is in which shard).

collect gives what one unsharded run gives: one grades.csv, one gradebook, one set of per-student files. It
records each student into MERGED/course from their shard's files (the judged notebook and the submitted files
in the shard's course), through the same RECORD chain, so the gradebook matches cell by cell. Like autograde it
resumes: a student whose grade.json in MERGED already equals their shard's is skipped, and grade.json is written
last.
"""
import shutil
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from tqdm import tqdm

from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, QUESTION_IDS
from grading.authoring.course import db_url
from grading.nbgrader_support import course_config
from grading.pipeline.shards import ShardError
from grading.records import gradebook
from grading.records.reports import grades_csv, table
from grading.records.results import GRADE_FILE, load_result, mark_done, read_rejected, write_atomic, write_rejected


def collect(shard_dirs, merged, log=print, progress=True):
    """Merge the autograde outputs shard_dirs into merged; return every student's StudentResult."""
    shard_dirs, merged = [Path(d) for d in shard_dirs], Path(merged)
    missing = [str(d) for d in shard_dirs if not (d / "course" / "gradebook.db").is_file()]
    if missing:
        raise ShardError(f"not the output of `python -m grading autograde`: {', '.join(missing)}")
    chosen, duplicates = {}, []
    for shard in shard_dirs:
        for path in sorted(shard.glob(f"*/{GRADE_FILE}")):
            student = path.parent.name
            if student in chosen:
                duplicates.append(student)
                if path.stat().st_mtime <= chosen[student].stat().st_mtime:
                    continue
            chosen[student] = path
    fingerprints = {load_result(path).fingerprint for path in chosen.values()}
    if len(fingerprints) > 1:
        raise ShardError("the shards were graded by different versions of the grader or the assignment; regrade "
                         "them with the same one")
    course = merged / "course"
    if not (course / "gradebook.db").is_file():
        shutil.copytree(shard_dirs[0] / "course", course)
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    config = course_config(course)
    pending = [(student, path) for student, path in sorted(chosen.items())
               if not same_file(merged / student / GRADE_FILE, path)]
    if len(chosen) - len(pending):
        log(f"{len(chosen) - len(pending)} of {len(chosen)} students already collected and unchanged")
    for student in sorted(set(duplicates)):
        log(f"{student} is in more than one shard; kept the newest result")
    for student, path in tqdm(pending, desc="collecting", unit="student", disable=not progress or not pending):
        shard_course = path.parent.parent / "course"
        result = load_result(path)
        (merged / student).mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "feedback.html"):
            shutil.copy(path.parent / name, merged / student / name)
        copy_student(shard_course, course, student)
        judged = shard_course / "autograded" / student / ASSIGNMENT / NOTEBOOK
        gradebook.record(course, shard_course / "submitted" / student / ASSIGNMENT, result,
                         nbformat.read(judged, as_version=4) if judged.is_file() else None, QUESTION_IDS, config,
                         released)
        mark_done(merged, result)
    results = [load_result(merged / student / GRADE_FILE) for student in sorted(chosen)]
    rejected = {entry.name: entry for shard in shard_dirs for entry in read_rejected(shard)}
    rejected = [rejected[name] for name in sorted(rejected)]
    write_rejected(merged, rejected)
    write_atomic(merged / "grades.csv", grades_csv(results, rejected))
    log(table(results))
    log(f"collected {len(results)} students from {len(shard_dirs)} shards into {merged / 'grades.csv'} and the "
        f"gradebook {course / 'gradebook.db'}")
    return results


def same_file(path, other):
    return path.is_file() and path.read_bytes() == other.read_bytes()


def copy_student(source_course, course, student):
    """The student's name and email, as the shard's gradebook has them (from a roster)."""
    with Gradebook(db_url(source_course), COURSE_ID) as source:
        try:
            found = source.find_student(student)
        except MissingEntry:
            return
        details = {"first_name": found.first_name, "last_name": found.last_name, "email": found.email}
    with Gradebook(db_url(course), COURSE_ID) as gb:
        gb.update_or_create_student(student, **details)
