"""Due dates and late penalties, in one place: `python -m grading autograde` applies them to grades.csv, and the
course's nbgrader_config.py hands the same policy to nbgrader's AssignLatePenalties as its plugin, so the
gradebook, `nbgrader export` and the formgrader agree.

Policies (--late-policy):
- "none": record how late a submission was, take nothing off;
- "zero": a late submission scores 0;
- "per-day:P[:MAX]": P points off per started day late (1 second late is one day, exactly 24 hours late is one
  day, a second more is two), at most MAX, and never below 0.
Submission times come from nbgrader's timestamp.txt or, for zips, from the newest entry's time (see
grading/intake.py). A time without a time zone is taken in the due date's zone; a submission whose time is missing
or unreadable counts as on time, with a note.
"""
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import dateutil.parser
from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Unicode

NBGRADER_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


@dataclass(frozen=True)
class LatePolicy:
    kind: str = "none"
    points_per_day: float = 0.0
    cap: float = math.inf

    @classmethod
    def parse(cls, text):
        """The policy of a --late-policy value; ValueError with a message that says what to write instead."""
        name, _, rest = text.strip().partition(":")
        if name in ("none", "zero") and not rest:
            return cls(name)
        if name == "per-day" and rest:
            try:
                numbers = [float(part) for part in rest.split(":")]
            except ValueError:
                numbers = []
            if len(numbers) in (1, 2) and all(n >= 0 for n in numbers):
                return cls(name, numbers[0], numbers[1] if len(numbers) == 2 else math.inf)
        raise ValueError(f"--late-policy takes none, zero or per-day:P[:MAX] (for example per-day:10:30), "
                         f"not {text!r}")

    def penalty(self, score, seconds_late):
        """Points taken off a score for a submission seconds_late late (0 for an on-time one)."""
        if seconds_late <= 0 or self.kind == "none":
            return 0.0
        if self.kind == "zero":
            return max(score, 0.0)
        days = math.ceil(seconds_late / 86400)
        return max(0.0, min(self.points_per_day * days, self.cap, score))


class LatePenaltyPlugin(LateSubmissionPlugin):
    """nbgrader's late-submission plugin for this course: the policy of LatePolicy."""

    policy = Unicode("none", help="the --late-policy of grading/settings.py").tag(config=True)

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return LatePolicy.parse(self.policy).penalty(score, total_seconds_late)


def parse_due(text):
    """The due date of --due as an aware datetime; ValueError unless it names its time zone."""
    try:
        due = dateutil.parser.isoparse(text)
    except ValueError:
        raise ValueError(f"--due takes an ISO 8601 date and time with its time zone, for example "
                         f"2026-12-01T23:59:00+08:00, not {text!r}") from None
    if due.tzinfo is None:
        raise ValueError(f"--due {text} has no time zone: write it as, for example, {text}+08:00 or {text}Z")
    return due


def submission_time(text, due):
    """(UTC time in nbgrader's format or None, note or "") of a submission time as found. A time without a zone is
    read in the due date's zone (UTC without a due date). Notes only matter, so are only made, when there is a due
    date or the time cannot be read."""
    if not text:
        return None, "no submission time was found; counted as on time" if due else ""
    try:
        when = dateutil.parser.parse(text)
    except (ValueError, OverflowError):
        return None, f"the submission time {text[:40]!r} could not be read; counted as on time"
    note = ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=due.tzinfo if due else timezone.utc)
        if due:
            note = f"the submission time {text[:40]!r} names no time zone; it was read as {when.isoformat()}"
    return when.astimezone(timezone.utc).strftime(NBGRADER_FORMAT), note


def seconds_late(utc_time, due):
    """How many seconds after due a submission (UTC time in nbgrader's format, or None) came in; 0 if on time."""
    if utc_time is None or due is None:
        return 0.0
    submitted = datetime.strptime(utc_time, NBGRADER_FORMAT).replace(tzinfo=timezone.utc)
    return max(0.0, (submitted - due).total_seconds())
