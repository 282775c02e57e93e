"""`python -m grading export OUT [--format csv|canvas|moodle] [--out FILE]`: the final grades of the course in
OUT/course, after manual grading, as a CSV for people or for an LMS's grade import (records/final.py reads them).

- csv: per student the points of each question (the TA's scores and overrides included), the bonus, the late
  penalty and the total, then `needs_person`, why the grade is not final yet ("" when it is);
- canvas: the CSV Canvas's gradebook import takes: `Student`, `ID`, `SIS User ID`, `SIS Login ID`, `Section`, then
  one column for the assignment (--column; Canvas matches it to an existing assignment by the `Name (id)` its own
  export shows, and otherwise creates one). ID is the roster's lms_user_id (Canvas's user id), SIS User ID the
  student's id;
- moodle: the CSV Moodle's grade import (Grades > Import > CSV file) takes, matched on `Email address`, with one
  column for the grade item (--column).

An LMS file leaves the grade of a student who needs a person empty (both LMSs then change nothing for them): a
provisional number must not reach a student as their grade. Those students are named on stderr, with why. Students
of the roster who submitted nothing have an empty grade too. Every text cell that a spreadsheet would take for a
formula (it starts with =, +, -, @, a tab or a carriage return) is written with a leading apostrophe.
"""
import csv
import io
import logging
from pathlib import Path

from grading.assignment import ASSIGNMENT, QUESTION_IDS
from grading.records.final import FinalGrade, read_final
from grading.records.results import write_atomic
from grading.settings import ConfigurationError

logger = logging.getLogger(__name__)
Rows = tuple[list[str], list[list[str]]]  # (the header, one row per student)

FORMATS = ("csv", "canvas", "moodle")
DEFAULT_FILES = {"csv": "final-grades.csv", "canvas": "canvas-import.csv", "moodle": "moodle-import.csv"}
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["Email address", "First name", "Last name", "ID number"]
# What spreadsheets (and so an LMS's CSV, opened by a TA) read as the start of a formula: OWASP's list.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def guard(text: object) -> str:
    """text, made a spreadsheet's text rather than a formula by a leading apostrophe where it would start one."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def number(points: float | None) -> str:
    """points with two decimals, or "" for none."""
    return "" if points is None else f"{points:.2f}"


def rows_csv(grades: dict[str, FinalGrade]) -> Rows:
    """Every question, the late penalty, the total and why a grade is not final, for people."""
    header = ["student_id", "first_name", "last_name", "email", *QUESTION_IDS, "late_penalty", "total",
              "needs_person"]
    rows: list[list[str]] = []
    for g in grades.values():
        if not g.submitted:
            rows.append([guard(g.student_id), guard(g.first_name), guard(g.last_name), guard(g.email),
                         *[""] * len(QUESTION_IDS), "", "", "no submission"])
            continue
        rows.append([guard(g.student_id), guard(g.first_name), guard(g.last_name), guard(g.email),
                     *(number(g.points(q)) for q in QUESTION_IDS), number(g.late_penalty), number(g.total),
                     guard(" | ".join(g.needs_person))])
    return header, rows


def final_points(grade: FinalGrade) -> str:
    """The grade an LMS gets: the total, or "" while it is not final (or nothing was submitted)."""
    return "" if not grade.submitted or grade.needs_person else number(grade.total)


def rows_canvas(grades: dict[str, FinalGrade], column: str) -> Rows:
    """Canvas's gradebook import, the grade in column."""
    rows = [[guard(f"{g.last_name}, {g.first_name}" if g.last_name or g.first_name else g.student_id),
             guard(g.lms_user_id), guard(g.student_id), "", "", final_points(g)] for g in grades.values()]
    return [*CANVAS_COLUMNS, guard(column)], rows


def rows_moodle(grades: dict[str, FinalGrade], column: str) -> Rows:
    """Moodle's CSV grade import, the grade in column."""
    rows = [[guard(g.email), guard(g.first_name), guard(g.last_name), guard(g.student_id), final_points(g)]
            for g in grades.values()]
    return [*MOODLE_COLUMNS, guard(column)], rows


def export(out_dir: Path, fmt: str = "csv", target: Path | None = None,
           column: str = ASSIGNMENT) -> dict[str, list[str]]:
    """Write the final grades of out_dir/course in fmt to target (default: out_dir/DEFAULT_FILES[fmt]); return
    {student: why they need a person} of those whose grade is not final. ConfigurationError where out_dir holds no
    gradebook or fmt is unknown."""
    out_dir = Path(out_dir)
    course = out_dir / "course"
    if not (course / "gradebook.db").is_file():
        raise ConfigurationError(f"{out_dir} holds no course/gradebook.db: pass the --out folder of "
                                 "`python -m grading autograde` (or of collect)")
    if fmt not in FORMATS:
        raise ConfigurationError(f"--format takes {', '.join(FORMATS)}, not {fmt!r}")
    grades = read_final(course, out_dir)
    if fmt == "csv":
        header, rows = rows_csv(grades)
    elif fmt == "canvas":
        header, rows = rows_canvas(grades, column)
    else:
        header, rows = rows_moodle(grades, column)
        unmatched = [g.student_id for g in grades.values() if not g.email]
        if unmatched:
            logger.warning(f"{len(unmatched)} student(s) have no email, on which Moodle matches grades: {', '.join(unmatched)}; "
                           f"load a roster with emails (in {course}: nbgrader db student import ROSTER.csv, or "
                           "autograde --roster) and export again")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    target = Path(target) if target else out_dir / DEFAULT_FILES[fmt]
    write_atomic(target, buffer.getvalue())
    waiting = {g.student_id: g.needs_person for g in grades.values() if g.needs_person}
    if waiting:
        left = " (their grade is left empty in the file)" if fmt != "csv" else " (needs_person in the file)"
        logger.warning(f"{len(waiting)} student(s) still need a person{left}:")
        for student, why in waiting.items():
            logger.warning(f"  {student}: {'; '.join(why)}")
    logger.info(f"wrote the final grades of {len(grades)} students ({fmt}) to {target}")
    return waiting
