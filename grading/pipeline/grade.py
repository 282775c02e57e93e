"""Grading one submission whose files intake already took: the SANITIZE and JUDGE chains of chains.py, exactly as
nbgrader's autograde runs them in a course built here. It runs in a child process of its own (parallel.py), which
only reads the gradebook (a snapshot copy); the main process records what it returns (RECORD).
"""
import logging
import time

import nbformat

from grading.assignment import ASSIGNMENT, NOTEBOOK_ID
from grading.handoff import GradingRun, Intake, Submission, SubmissionContext
from grading.isolation.sandbox import Isolation
from grading.nbgrader_support import apply_chain
from grading.pipeline import chains
from grading.pipeline.notebook import submitted_notebook
from grading.stages import stage
from grading.records.results import StudentResult


def grade(submission: Submission, intake: Intake, run: GradingRun,
          slot: int) -> tuple[StudentResult, nbformat.NotebookNode]:
    """(StudentResult, judged notebook) of one submission (a handoff.Submission whose files intake took) in the
    GradingRun run, on worker slot slot. A notebook that could not be graded is judged as the released one, so that
    Q1, Q2 and the bonus are recorded."""
    started = time.monotonic()
    nb, problem, notes = submitted_notebook(intake, run.released)
    context = SubmissionContext(settings=run.settings, intake=intake, deadline=started + run.settings.timeout,
                                slot=slot, notebook_problem=problem, zygotes=run.zygotes)
    resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": submission.student_id,
                              "db_url": f"sqlite:///{run.snapshot}"},
                 "metadata": {"path": str(intake.folder)}, "normlab": context}
    # What nbgrader warns of as it resets cells, submitted_notebook has already noted from its own comparison with
    # the release; the warnings would only fill the child's stderr.
    log = logging.getLogger("grading.pipeline.submission")
    log.handlers, log.propagate = [logging.NullHandler()], False
    with stage("nbgrader's SANITIZE chain"):
        nb, resources = apply_chain(chains.SANITIZE, nb, resources, run.config, log)
    with stage("the JUDGE chain", rest="sandbox checks, IgnorePattern, LimitOutput"):
        nb, resources = apply_chain(chains.JUDGE, nb, resources, run.config, log)
    result = context.result
    assert result is not None, "the JUDGE chain's JudgedExecute leaves the result in the context"
    result.kind = submission.kind
    result.fingerprint, result.submission = run.fingerprint, intake.digest
    result.notes = intake.notes + notes + result.notes
    result.status = status_line(result, intake.problems, problem)
    result.seconds = time.monotonic() - started
    return result, nb


def status_line(result: StudentResult, problems: dict[str, str], notebook_problem: str) -> str:
    """"ok", or what kept parts from being graded, what a TA may want to look at, and how it was graded."""
    parts = [f"pyfile: {problems['pyfile']}"] if "pyfile" in problems else []
    parts += [f"notebook: {notebook_problem}"] if notebook_problem else []
    if "bonus" in result.questions and not result.questions["bonus"].graded:
        parts.append("bonus NOT GRADED (see notes)")
    if result.flags:
        parts.append("REVIEW: the notebook uses " + ", ".join(result.flags))
    parts += [f"REVIEW: {q.review}" for q in result.questions.values() if q.review]
    parts += [Isolation(result.isolation).note] if Isolation(result.isolation).note else []
    return "; ".join(parts) or "ok"
