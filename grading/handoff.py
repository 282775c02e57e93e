"""The typed objects handed from step to step (see grading/__init__.py for the order): a Submission found in
SUBMISSIONS, the Intake taken from it, the Job of grading it in a child, the GradingRun prepared once per run, and
the SubmissionContext that nbgrader's preprocessors pass along as resources["normlab"], which ends up holding the
StudentResult."""
from dataclasses import dataclass, field
from pathlib import Path

from grading.records.results import StudentResult
from grading.settings import Settings


@dataclass
class Submission:
    student_id: str
    path: Path
    kind: str  # "folder", "zip" or "nbgrader"
    timestamp: str = None  # when it was handed in, from a source the student cannot write (records/late.py)
    notes: list = field(default_factory=list)


@dataclass
class Intake:
    """What was taken from a submission: files in the folder it was unpacked into, notes, and per-part problems
    ({"pyfile" | "notebook" | "bonus": why that part cannot be graded})."""

    folder: Path = None
    pyfile: Path = None
    notebook: Path = None
    bonus: dict = field(default_factory=dict)  # {dataset: path of the model}
    histories: int = 0
    notes: list = field(default_factory=list)
    problems: dict = field(default_factory=dict)
    digest: str = ""


@dataclass
class Job:
    """A submission to grade in a child process, with what the caller wants back when it ends (anything: say, the
    earlier result), and the Intake taken from it just before the child starts."""

    submission: Submission
    extra: object = None
    intake: Intake = None


@dataclass(kw_only=True)
class GradingRun:
    """What every submission's grading needs, prepared once by the process that runs autograde."""

    settings: Settings
    fingerprint: str  # of everything that decides a score; a result under another one is regraded
    snapshot: Path  # a copy of the gradebook: graders read test cells from it and never touch the real one
    released: object  # the released notebook (nbformat node)
    config: object  # the course's nbgrader configuration (traitlets Config)
    isolation: object  # isolation.sandbox.Isolation
    grader_pid: int
    due: object = None  # aware datetime, or None for no due date
    late_policy: object = None  # records.late.LatePolicy


@dataclass(kw_only=True)
class SubmissionContext:
    """resources["normlab"]: what nbgrader's preprocessors know of the submission beyond the notebook. The JUDGE
    step fills in result; the RECORD step records it."""

    settings: Settings = field(default_factory=Settings)
    intake: Intake = None
    deadline: float = None  # time.monotonic() by which grading must end
    slot: int = 0  # the worker slot: its zygote, and as root its sandbox user
    notebook_problem: str = ""  # why the submitted notebook cannot be graded ("" when it can)
    result: StudentResult = None
