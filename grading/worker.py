"""Grading one submission in a child process of its own: intake, then the SANITIZE and JUDGE chains of
grading/pipeline.py, exactly as nbgrader's autograde runs them in a course built here.

The child only reads the gradebook (a snapshot copy); the main process records what it returns (RECORD).
"""
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grading import pipeline
from grading.intake import unpack
from grading.late import submission_time
from grading.sandbox import SCRATCH_PREFIX
from grading.settings import ASSIGNMENT, NOTEBOOK_ID, Settings


@dataclass
class Context:
    """What every submission's grading needs, prepared once by the main process."""

    snapshot: Path  # a copy of the gradebook: workers read test cells from it and never touch the real one
    fingerprint: str
    settings: Settings
    released: object  # the released notebook (nbformat node)
    config: object  # the course's nbgrader configuration
    use_bwrap: bool
    grader_pid: int
    due: object = None  # aware datetime, or None for no due date
    late_policy: object = None  # grading.late.LatePolicy


class _ChangedSettings(logging.Handler):
    """Keeps nbgrader's warnings about cell settings it reset, as notes for the student and the TA."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.notes = []

    def emit(self, record):
        text = record.getMessage()
        # Every released test cell differs from its gradebook copy by its checksum; edits are found by comparing
        # with the release instead (pipeline.test_cell_changes).
        if "has changed" in text and "'checksum'" not in text:
            self.notes.append(f"a changed cell setting was reset: {text}")


def clear_stale_scratch():
    """Remove the scratch folders of graders that are no longer running (killed before they could)."""
    for folder in Path("/tmp").glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def grade(submission, context, slot):
    """(StudentResult, judged notebook) for one submission; a notebook that could not be graded is judged as the
    released one, so that Q1, Q2 and the bonus are recorded."""
    settings = context.settings
    started = time.monotonic()
    incoming = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{context.grader_pid}-in-", dir="/tmp"))
    try:
        intake = unpack(submission, incoming)
        nb, problem, notes = submitted_notebook(intake, context.released)
        resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": submission.student_id,
                                  "db_url": f"sqlite:///{context.snapshot}"},
                     "metadata": {"path": str(incoming)},
                     "normlab": {"deadline": started + settings.timeout, "notebook_problem": problem}}
        changed = _ChangedSettings()
        log = logging.getLogger("grading.worker.submission")
        log.handlers, log.propagate = [logging.NullHandler(), changed], False
        nb, resources = pipeline.run(pipeline.SANITIZE, nb, resources, context.config, log)
        nb, resources = pipeline.run(pipeline.JUDGE, nb, resources, context.config, log,
                                     settings=settings.to_json(), slot=slot)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    from grading.results import StudentResult
    result = StudentResult.from_json(dict(resources["normlab"]["result"]))
    result.kind = submission.kind
    result.timestamp, when = submission_time(submission.timestamp, context.due)
    intake.notes += [when] if when else []
    result.fingerprint, result.submission = context.fingerprint, intake.digest
    result.notes = intake.notes + notes + changed.notes + result.notes
    result.status = status_line(result, intake.problems, problem)
    result.seconds = time.monotonic() - started
    return result, nb


def submitted_notebook(intake, released):
    """(notebook to grade, why the submitted one cannot be, notes): a missing or unreadable notebook is replaced by
    the released one, so batchnormalization.py and the bonus are still graded and recorded."""
    if intake.notebook is None:
        return nbformat.from_dict(released), intake.problems.get("notebook", "no norm.ipynb was submitted"), []
    try:
        nb, notes = pipeline.read_notebook(intake.notebook.read_bytes())
    except ValueError as error:
        return nbformat.from_dict(released), str(error), []
    return nb, "", notes + pipeline.test_cell_changes(nb, released)


def status_line(result, problems, notebook_problem):
    """"ok", or what kept parts from being graded, what a TA may want to look at, and how it was graded."""
    parts = [f"pyfile: {problems['pyfile']}"] if "pyfile" in problems else []
    parts += [f"notebook: {notebook_problem}"] if notebook_problem else []
    if "bonus" in result.questions and not result.questions["bonus"].graded:
        parts.append("bonus NOT GRADED (see notes)")
    if result.flags:
        parts.append("REVIEW: the notebook uses " + ", ".join(result.flags))
    if not result.sandboxed:
        parts.append("graded WITHOUT a sandbox")
    return "; ".join(parts) or "ok"
