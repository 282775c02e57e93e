"""Who is at fault, decided by the type of what was raised, never by the words of a message.

- StudentFailure: the student's code gave no usable answer (its `ending` says how). A verdict: the check fails.
- SubmissionDefect: a part of the student's files cannot be graded as submitted (its `part` says which). A verdict
  on that part, which is graded as not submitted; every other part is graded.
- GraderError: the grading machine failed (its `cause` says what). No points: the student is an ERROR, flagged,
  and graded again on the next run.
- Any other exception raised while grading is a bug of the grader: an ERROR too (Cause.BUG), with its whole
  traceback kept for whoever fixes it.

Across a process boundary (a grading child's result.json, a reply of the student's process) these travel as data,
an enum's value beside the message, and are never recovered by parsing text.
"""
import enum
from typing import Literal

# The parts of a submission that are graded apart: SubmissionDefect.part.
Part = Literal["notebook", "pyfile", "bonus"]


class Ending(enum.Enum):
    """How a student's code failed to answer one call."""

    RAISED = "raised"  # it raised an exception (its name is StudentFailure.error)
    TIMED_OUT = "timed out"  # no answer within the call's timeout
    ENDED = "ended"  # its process or kernel ended while answering
    BAD_REPLY = "bad reply"  # it answered with something that is not data the grader accepts
    NOT_RUN = "not run"  # the call was not made: a budget ran out, or its process had already been stopped
    OUT_OF_TIME = "out of time"  # not run: the submission's whole time budget ran out


class StudentFailure(Exception):
    """The student's code gave no usable answer; the message is for the student. error is the name of the exception
    their code raised and undefined the name a NameError of theirs reported, where there was one: data their process
    handed over, like any reply, which only shapes the message."""

    def __init__(self, message: str, ending: Ending = Ending.RAISED, error: str | None = None,
                 undefined: str | None = None) -> None:
        super().__init__(message)
        self.ending = ending
        self.error = error
        self.undefined = undefined


class BadReply(StudentFailure):
    """What a student's process handed back is not data the grader accepts."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Ending.BAD_REPLY)


class Slip(AssertionError):
    """A check found the student's answer right but for named slips (grading/hidden/slips.py): found is {slip key:
    what the slip is, in this check's words}. A slip is charged once per question, whichever checks and cells reveal
    it (pipeline/hidden_suites.charge_slips, with the size in assignment.SLIP_SHARE), where a failed assertion costs
    the check its points."""

    def __init__(self, message: str, found: dict[str, str]) -> None:
        super().__init__(message)
        self.found = found


class SubmissionDefect(Exception):
    """A part of the submission cannot be graded as submitted; the message, for the student, says why. part is
    "notebook", "pyfile" or "bonus"."""

    def __init__(self, part: Part, message: str) -> None:
        super().__init__(message)
        self.part = part


class Cause(enum.Enum):
    """What of the grading machine failed, with what a TA should do about it."""

    SANDBOX = "sandbox"
    OVERLOAD = "overload"
    KILLED = "killed"
    CLEAN_UP = "clean-up"
    SUITE = "suite"
    BUG = "bug"

    @property
    def advice(self) -> str:
        return ADVICE[self]


ADVICE = {
    Cause.SANDBOX: "check that bubblewrap works here (`bwrap --ro-bind / / true`) and that the grader's Python "
                   "environment is intact; run the grader with the interpreter of the course's .venv",
    Cause.OVERLOAD: "the machine is too slow or too loaded for these settings: use fewer --jobs or a larger "
                    "--timeout",
    Cause.KILLED: "something outside the grader (the out-of-memory killer, a scheduler, a person) ended it: grade "
                  "again, with fewer --jobs if memory is short",
    Cause.CLEAN_UP: "processes of the sandbox's user outlived grading: see which (`ps -u <uid>`) and grade again",
    Cause.SUITE: "make the points of the checks in grading/hidden/ add up to grading/assignment.py",
    Cause.BUG: "this is a bug of the grader: send its traceback to the course's maintainers",
}


class GraderError(Exception):
    """The grading machine failed, not the student's work: the submission gets no verdict, is flagged, and is
    graded again on the next run. The message says what failed, for the TA."""

    def __init__(self, message: str, cause: Cause = Cause.SANDBOX) -> None:
        super().__init__(message)
        self.cause = cause


# What third-party readers (json, nbformat, numpy) may raise on malformed data that a student handed over. Where the
# grader parses such data, these mean "the student's data is malformed"; anything else is the grader's.
MALFORMED = (ValueError, LookupError, TypeError, AttributeError, RecursionError, EOFError)
