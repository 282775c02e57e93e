"""The typed result of grading one student, handed from the judge to every writer, and the grader's own record of
it: grade.json, written last, which marks the student as done. It goes through JSON only where it crosses a process
boundary (the grading child's result.json, grade.json between runs and shards). Every file here is written
atomically (a temporary file, then rename)."""
import json
import os
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grading.failures import Cause, GraderError
from grading.settings import Settings

GRADE_FILE = "grade.json"  # per student: the grader's record, written last
REJECTED_FILE = "rejected.json"  # per run: what could not be taken as a submission, for collect
ERRORS = "errors"  # per run: OUT/errors/<student>.txt, the whole of each grader error (error_file)


@dataclass
class Test:
    name: str
    score: float
    max_score: float
    passed: bool
    message: str = ""
    hidden: bool = False
    cell: str = ""  # the grade cell the test scores
    failure: str = ""  # how it failed: a failures.Ending value, WRONG for an answer judged wrong, SLIP for an answer
    # right but for slips (named in slips); "" if it passed
    slips: list[str] = field(default_factory=list)  # keys of the slips it revealed (grading/hidden/slips.py)
    same_as: str = ""  # the name of the check whose message this one repeats (verdicts.merge_repeated), if any


WRONG = "wrong"  # Test.failure of a check whose answer came back and was judged wrong
SLIP = "slip"  # Test.failure of a check whose answer was right but for slips, charged once per question


@dataclass
class QuestionScore:
    """How one question scored (assignment.Question is what it asks): autograded points; manual_max points are
    graded by hand (pending until a TA does); extra_max is extra credit on top of the 100 points (the bonus)."""

    score: float = 0.0
    max_score: float = 0.0
    manual_max: float = 0.0
    extra_max: float = 0.0
    manual_pending: bool = False
    graded: bool = True
    status: str = ""
    review: str = ""  # why a TA should look before the autograded score stands (a bonus withheld), "" if not
    tests: list[Test] = field(default_factory=list)


@dataclass
class StudentResult:
    """A student's grading. error, when not empty, says what of the grading machine failed (a grader error, as
    opposed to a verdict on the student's work), in one line; error_cause is its kind, and error_file the file under
    OUT that holds the rest. Such a result holds no points, is never taken as done, and the next run grades the
    student again."""

    student_id: str
    status: str = "ok"
    error: str = ""
    error_cause: Cause | None = None  # what of the machine failed, for a grader error; None otherwise
    error_file: str = ""  # a grader error's traceback and what to do, relative to OUT (error_file()); "" otherwise
    questions: dict[str, QuestionScore] = field(default_factory=dict)  # by question id
    notes: list[str] = field(default_factory=list)  # for the student and the TA
    ta_notes: list[str] = field(default_factory=list)  # about the grading itself, for the TA only
    flags: list[str] = field(default_factory=list)
    submission: str = ""  # digest of the files taken from the submission
    stamp: str = ""  # names, sizes and times of the submitted files, to notice a resubmission cheaply
    fingerprint: str = ""
    kind: str = ""
    timestamp: str | None = None  # when it was handed in, UTC, in nbgrader's format (settings.NBGRADER_TIME_FORMAT)
    late_seconds: float = 0.0
    late_penalty: float = 0.0
    isolation: str = "bubblewrap"  # the value of the isolation.sandbox.Isolation it was graded under
    seconds: float = 0.0

    @property
    def raw_total(self) -> float:
        return sum(q.score for q in self.questions.values())

    @property
    def total(self) -> float:
        """Points after the late penalty."""
        return self.raw_total - self.late_penalty

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "error_cause": self.error_cause.value if self.error_cause else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StudentResult":
        data = dict(data)
        questions = {name: QuestionScore(**{**q, "tests": [Test(**t) for t in q["tests"]]})
                     for name, q in data.pop("questions").items()}
        cause = data.pop("error_cause", None)
        return cls(questions=questions, error_cause=Cause(cause) if cause else None, **data)


@dataclass
class GraderFailure:
    """A grader error as the process that met it hands it over (a grading child, as JSON): what failed, the whole
    message for the TA, and the traceback where there is one ("" for a process that was killed or overran)."""

    cause: Cause
    message: str
    traceback: str = ""

    @classmethod
    def of(cls, error: BaseException) -> "GraderFailure":
        """The failure of a caught exception: a GraderError's own cause; any other exception is a bug of the
        grader."""
        told = "".join(traceback.format_exception(error))
        if isinstance(error, GraderError):
            return cls(error.cause, str(error), told)
        return cls(Cause.BUG, f"the grader failed: {type(error).__name__}: {error}", told)

    @property
    def summary(self) -> str:
        """The message's first line, cut to Settings.message_chars: what StudentResult.error and status lines
        show."""
        first = next((line.strip() for line in self.message.splitlines() if line.strip()), self.cause.value)
        return first if len(first) <= Settings.message_chars else first[:Settings.message_chars - 1] + "\u2026"

    def to_json(self) -> dict[str, str]:
        return {"cause": self.cause.value, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GraderFailure":
        """ValueError, KeyError or TypeError where data is not a failure's JSON."""
        if not isinstance(data.get("message"), str) or not isinstance(data.get("traceback"), str):
            raise TypeError("a grader failure's message and traceback are text")
        return cls(Cause(data["cause"]), data["message"], data["traceback"])


def error_file(student_id: str) -> str:
    """Where a student's grader error is told in whole, relative to OUT: errors/<student_id>.txt. Intake took only
    ids that are plain names; this refuses (ValueError) any other, so that no id makes the path lead elsewhere."""
    if not student_id or "/" in student_id or "\0" in student_id:
        raise ValueError(f"{student_id!r} cannot name a file")
    return f"{ERRORS}/{student_id}.txt"


@dataclass
class Rejected:
    """An entry of SUBMISSIONS that is not a submission at all, and why."""

    name: str
    status: str


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def save_result(path: str | os.PathLike[str], result: StudentResult) -> None:
    write_atomic(path, json.dumps(result.to_json(), indent=1, ensure_ascii=False))


def load_result(path: str | os.PathLike[str]) -> StudentResult | None:
    """The StudentResult saved in path, or None where there is none (or only a broken one)."""
    try:
        return StudentResult.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark_done(out_dir: str | os.PathLike[str], result: StudentResult) -> None:
    save_result(Path(out_dir) / result.student_id / GRADE_FILE, result)


def write_rejected(out_dir: str | os.PathLike[str], rejected: Iterable[Rejected]) -> None:
    write_atomic(Path(out_dir) / REJECTED_FILE, json.dumps([vars(entry) for entry in rejected], indent=1))


def read_rejected(out_dir: str | os.PathLike[str]) -> list[Rejected]:
    path = Path(out_dir) / REJECTED_FILE
    return [Rejected(**entry) for entry in json.loads(path.read_text())] if path.is_file() else []
