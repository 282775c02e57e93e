"""Due dates and late penalties, in one place: `python -m grading autograde` applies them to grades.csv, and the
course's nbgrader_config.py hands the same policy to nbgrader's AssignLatePenalties as its plugin, so the
gradebook, `nbgrader export` and the formgrader agree.

Policies (--late-policy):
- "none": record how late a submission was, take nothing off;
- "zero": a late submission scores 0;
- "per-day:P[:MAX]": P points off per started day late (1 second late is one day, exactly 24 hours late is one
  day, a second more is two), at most MAX, and never below 0.
Submission times come only from sources a student cannot write: a CSV of times as an LMS exports it or a TA
writes it (--submission-times, read by `read_submission_times`), and the times nbgrader's exchange handed over,
which collect checks and records beside the submissions it copies (TIMES_FILE, see pipeline/front_door.py). What
a submission holds (a timestamp.txt, a zip's entry dates) is the student's to write and is never read for a time.
A time without a time zone is taken in the due date's zone; a submission without a time counts as on time, with a
note. `lateness` reads the time and how late it is, once per submission; `LatePolicy.penalty` turns that into
points, for grades.csv and, as nbgrader's plugin, the gradebook.
"""
import csv
import io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import dateutil.parser
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Unicode

from grading.records.results import StudentResult, write_atomic
from grading.settings import NBGRADER_TIME_FORMAT

# The times of a submitted/ tree's submissions, written beside them by the grader (nbgrader's collect here, or
# python -m grading autograde into its course) from sources students cannot write; students cannot write there.
TIMES_FILE = ".submission-times.csv"
TIMES_COLUMNS = ["student_id", "submitted_at", "source"]
# Column names (compared in lower case) of the student id and of the time in the CSVs LMSs export: Gradescope's
# "SID" and "Submission Time", Moodle's grading worksheet's "Last modified (submission)", a TA's own student_id and
# submitted_at.
ID_COLUMNS = ("student_id", "id", "sid", "login", "login id", "sis login id", "username", "user", "email",
              "email address")
TIME_COLUMNS = ("submitted_at", "submission time", "submitted", "submitted at", "submission date",
                "last modified (submission)", "timestamp")


# The kinds of --late-policy (see the module's docstring).
LateKind = Literal["none", "zero", "per-day"]


@dataclass(frozen=True)
class LatePolicy:
    kind: LateKind = "none"
    points_per_day: float = 0.0
    cap: float = math.inf

    @classmethod
    def parse(cls, text: str) -> "LatePolicy":
        """The policy of a --late-policy value; ValueError with a message that says what to write instead."""
        name, _, rest = text.strip().partition(":")
        if name == "none" and not rest:
            return cls("none")
        if name == "zero" and not rest:
            return cls("zero")
        if name == "per-day" and rest:
            try:
                numbers = [float(part) for part in rest.split(":")]
            except ValueError:
                numbers = []
            if len(numbers) in (1, 2) and all(n >= 0 for n in numbers):
                return cls("per-day", numbers[0], numbers[1] if len(numbers) == 2 else math.inf)
        raise ValueError(f"--late-policy takes none, zero or per-day:P[:MAX] (for example per-day:10:30), "
                         f"not {text!r}")

    def penalty(self, score: float, seconds_late: float) -> float:
        """Points taken off a score for a submission seconds_late late (0 for an on-time one)."""
        if seconds_late <= 0 or self.kind == "none":
            return 0.0
        if self.kind == "zero":
            return max(score, 0.0)
        days = math.ceil(seconds_late / 86400)
        return max(0.0, min(self.points_per_day * days, self.cap, score))


class LatePenaltyPlugin(LateSubmissionPlugin):
    """nbgrader's late-submission plugin for this course: the policy of LatePolicy."""

    policy = Unicode("none", help="the --late-policy of grading.settings.Settings").tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float:
        return LatePolicy.parse(self.policy).penalty(score, total_seconds_late)


def parse_due(text: str) -> datetime:
    """The due date of --due as an aware datetime; ValueError unless it names its time zone."""
    try:
        due = dateutil.parser.isoparse(text)
    except ValueError:
        raise ValueError(f"--due takes an ISO 8601 date and time with its time zone, for example "
                         f"2026-12-01T23:59:00+08:00, not {text!r}") from None
    if due.tzinfo is None:
        raise ValueError(f"--due {text} has no time zone: write it as, for example, {text}+08:00 or {text}Z")
    return due


@dataclass(frozen=True)
class Lateness:
    """When a submission was handed in (UTC, nbgrader's format, or None), how many seconds after the due date (0 if
    on time or without one), and a note about the time as found ("" when there is nothing to say)."""

    timestamp: str | None = None
    seconds: float = 0.0
    note: str = ""


def lateness(text: str | None, due: datetime | None) -> Lateness:
    """The Lateness of a submission time from a source students cannot write (text, or None) against due (an aware
    datetime, or None). A time without a zone is read in the due date's zone (UTC without a due date). Notes only
    matter, so are only made, when there is a due date or the time cannot be read."""
    if not text:
        return Lateness(note="no submission time from nbgrader's exchange or --submission-times; counted as on time"
                        if due else "")
    try:
        when = dateutil.parser.parse(text)
    except (ValueError, OverflowError):
        return Lateness(note=f"the submission time {text[:40]!r} could not be read; counted as on time")
    note = ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=due.tzinfo if due else timezone.utc)
        if due:
            note = f"the submission time {text[:40]!r} names no time zone; it was read as {when.isoformat()}"
    when = when.astimezone(timezone.utc)
    late = max(0.0, (when - due).total_seconds()) if due else 0.0
    return Lateness(when.strftime(NBGRADER_TIME_FORMAT), late, note)


def read_submission_times(path: str | os.PathLike[str], name: str = "--submission-times") -> dict[str, str]:
    """{student_id: time as written} of a CSV of submission times (see ID_COLUMNS and TIME_COLUMNS); a student
    listed more than once gets their latest time, and rows without a time (no submission) are left out. ValueError
    with a message that names the file as name and says what to fix."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{name} {path} could not be read: {error}") from None
    header = [name.strip().lower() for name in rows[0]] if rows else []
    id_column = next((header.index(name) for name in ID_COLUMNS if name in header), None)
    time_column = next((header.index(name) for name in TIME_COLUMNS if name in header), None)
    if id_column is None or time_column is None:
        raise ValueError(f"{name} {path} needs a student id column ({', '.join(ID_COLUMNS)}) and a "
                         f"time column ({', '.join(TIME_COLUMNS)}); its columns are {rows[0] if rows else []}. "
                         "Rename the two columns, or write the CSV as student_id,submitted_at")
    times: dict[str, str] = {}
    unreadable: list[str] = []
    for number, row in enumerate(rows[1:], 2):
        student, text = (row[i].strip() if i < len(row) else "" for i in (id_column, time_column))
        if not student or not any(c.isdigit() for c in text):  # LMSs write "-" or nothing where none was made
            continue
        try:
            when = _aware(dateutil.parser.parse(text))
        except (ValueError, OverflowError):
            unreadable.append(f"line {number}: {text[:40]!r}")
            continue
        if student not in times or when > _aware(dateutil.parser.parse(times[student])):
            times[student] = text
    if unreadable:
        raise ValueError(f"{name} {path} has times that cannot be read ({'; '.join(unreadable[:3])}): "
                         "write them as ISO 8601, for example 2026-12-01T23:59:00+08:00")
    return times


def _aware(when: datetime) -> datetime:
    """Only to order one student's times: a time without a zone taken as UTC."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def read_record(folder: str | os.PathLike[str]) -> dict[str, tuple[str, str]]:
    """{student_id: (time, source)} of the TIMES_FILE in a submitted/ tree ({} where there is none)."""
    path = Path(folder) / TIMES_FILE
    if path.is_symlink() or not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student_id"]: (row["submitted_at"], row.get("source") or "") for row in csv.DictReader(f)
                if row.get("student_id") and row.get("submitted_at")}


def record_graded_times(course: str | os.PathLike[str], results: Iterable[StudentResult],
                        source: str) -> None:
    """The submission times of results (StudentResults) as course/submitted/TIMES_FILE, so that nbgrader's own
    autograde in the course finds the same times (pipeline/front_door.py)."""
    write_atomic(Path(course) / "submitted" / TIMES_FILE,
                 record_text({r.student_id: (r.timestamp, source) for r in results if r.timestamp}))


def record_text(times: dict[str, tuple[str, str]]) -> str:
    """The TIMES_FILE of {student_id: (time, source)}, as CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TIMES_COLUMNS)
    writer.writerows((student, when, source) for student, (when, source) in sorted(times.items()))
    return buffer.getvalue()
