"""The typed objects handed from step to step (see grading/__init__.py for the order): a Submission found in
SUBMISSIONS, the Intake taken from it, the Job of grading it in a child, the GradingRun prepared once per run, and
the SubmissionContext that nbgrader's preprocessors pass along as resources["normlab"], which ends up holding the
StudentResult."""
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nbformat import NotebookNode
from traitlets.config import Config

from grading.records.late import Lateness, LatePolicy
from grading.records.results import StudentResult
from grading.settings import Settings

if TYPE_CHECKING:
    from grading.isolation.sandbox import Isolation
    from grading.isolation.zygote import Zygotes

# How a submission was handed in: a folder of files, a zip of them, or an nbgrader submitted/ tree's folder.
SubmissionKind = Literal["folder", "zip", "nbgrader"]


@dataclass
class Submission:
    student_id: str
    path: Path
    kind: SubmissionKind
    timestamp: str | None = None  # when it was handed in, from a source the student cannot write (records/late.py)
    notes: list[str] = field(default_factory=list)


@dataclass
class Intake:
    """What was taken from a submission: files in the folder it was unpacked into, notes, and per-part problems
    ({"pyfile" | "notebook" | "bonus": why that part cannot be graded})."""

    folder: Path | None = None
    pyfile: Path | None = None
    notebook: Path | None = None
    bonus: dict[str, Path] = field(default_factory=dict)  # {dataset: path of the model}
    histories: int = 0
    notes: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    digest: str = ""


@dataclass(frozen=True)
class OnRecord:
    """What autograde knew of a submission when it queued it, and needs again when its result comes back."""

    stamp: str  # names, sizes and times of the submitted files (StudentResult.stamp)
    previous: StudentResult | None  # the result recorded by an earlier run, if any
    late: Lateness


@dataclass
class Job:
    """A submission to grade in a child process, with what autograde had on record for it (None for a job that
    needs nothing back, such as the canary), and the Intake taken from it just before the child starts."""

    submission: Submission
    on_record: OnRecord | None = None
    intake: Intake | None = None


@dataclass(kw_only=True)
class GradingRun:
    """What every submission's grading needs, prepared once by the process that runs autograde."""

    settings: Settings
    fingerprint: str  # of everything that decides a score; a result under another one is regraded
    snapshot: Path  # a copy of the gradebook: graders read test cells from it and never touch the real one
    released: NotebookNode  # the released notebook
    config: Config  # the course's nbgrader configuration
    isolation: "Isolation"
    grader_pid: int
    due: datetime | None = None  # aware; None for no due date
    late_policy: LatePolicy = field(default_factory=LatePolicy)  # a run without one (the canary's) takes nothing off
    zygotes: "Zygotes | None" = None  # the run's, once it starts grading; None: every kernel starts cold


@dataclass(kw_only=True)
class SubmissionContext:
    """resources["normlab"]: what nbgrader's preprocessors know of the submission beyond the notebook. The JUDGE
    step fills in result; the RECORD step records it."""

    settings: Settings = field(default_factory=Settings)
    intake: Intake | None = None
    deadline: float | None = None  # time.monotonic() by which grading must end
    slot: int = 0  # the worker slot: its zygote, and as root its sandbox user
    notebook_problem: str = ""  # why the submitted notebook cannot be graded ("" when it can)
    zygotes: "Zygotes | None" = None  # the run's, to fork the kernel from; None: the kernel starts cold
    result: StudentResult | None = None
