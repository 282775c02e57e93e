"""Grading one submission (in a child process of its own): intake, then Q1–Q2, Q3–Q5 and the bonus.

Each part gets a fresh folder in a private scratch directory and its own sandbox, and whatever time of the
submission's budget is left; a part that fails or times out costs only its own points.
"""
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from grading.bonus import MAX_POINTS as BONUS_POINTS
from grading.bonus import grade_bonus
from grading.course import db_url
from grading.intake import unpack
from grading.notebook import Release, grade_notebook
from grading.pyfile import grade_pyfile
from grading.results import Question, StudentResult, Test
from grading.sandbox import Limits, Sandbox
from grading.settings import NOTEBOOK, PYFILE, PYFILE_QUESTIONS, Settings, question_of

NOTEBOOK_QUESTIONS = ("q3", "q4", "q5")
SCRATCH_PREFIX = "nl-"


@dataclass
class Context:
    """What every submission's grading needs, prepared once by the main process."""

    snapshot: Path  # a copy of the gradebook: workers read test cells from it and never touch the real one
    fingerprint: str
    settings: Settings
    secret_lines: frozenset
    release: Release
    use_bwrap: bool
    grader_pid: int


def clear_stale_scratch():
    """Remove the scratch folders of graders that are no longer running (killed before they could)."""
    for folder in Path("/tmp").glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def grade(submission, context, slot):
    """(StudentResult, executed notebook or None) for one submission."""
    settings = context.settings
    questions = settings.question_list
    started = time.monotonic()
    deadline = started + settings.timeout
    limits = Limits.from_settings(settings)
    # short, for the kernels' IPC sockets, and named after the grader so a later run can clear what a killed one left
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{context.grader_pid}-", dir="/tmp"))
    scratch.chmod(0o711)

    def sandbox(folder):
        return Sandbox(folder, limits, slot, use_bwrap=context.use_bwrap)

    def part_folder(name, files):
        folder = scratch / name
        folder.mkdir()
        for source, target in files:
            target = folder / target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
        return folder

    result = StudentResult(submission.student_id, kind=submission.kind, timestamp=submission.timestamp,
                           fingerprint=context.fingerprint, sandboxed=context.use_bwrap)
    executed = None
    try:
        incoming = scratch / "in"
        incoming.mkdir()
        intake = unpack(submission, incoming)
        result.notes += intake.notes
        result.submission = intake.digest
        asked = [q for q in questions if q in PYFILE_QUESTIONS]
        if asked:
            folder = part_folder("py", [(intake.pyfile, PYFILE)] if intake.pyfile else [])
            scores = grade_pyfile(folder / PYFILE if intake.pyfile else None, sandbox(folder),
                                  settings.call_timeout, asked)
            for q, score in scores.items():
                result.questions[q] = Question(score.score, score.max_score, status=intake.problems.get("pyfile", ""),
                                               graded=intake.pyfile is not None,
                                               tests=[Test(t.name, t.points, t.max_points, t.passed, t.message, True)
                                                      for t in score.tests])
        asked = [q for q in questions if q in NOTEBOOK_QUESTIONS]
        if asked:
            executed = grade_notebook_part(intake, context, asked, deadline, part_folder, sandbox, result, scratch)
        if "bonus" in questions:
            bonus = grade_bonus(intake.bonus, sandbox, scratch, settings.cifar_root,
                                timeout=max(1.0, deadline - time.monotonic()))
            status = "; ".join(filter(None, [intake.problems.get("bonus", ""), *bonus.lines]))
            result.questions["bonus"] = Question(bonus.score, BONUS_POINTS, graded=not bonus.not_graded,
                                                 status=status)
            if bonus.not_graded:
                result.notes.append(f"bonus NOT GRADED: {bonus.not_graded}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.status = status_line(result, intake.problems, context.use_bwrap)
    result.seconds = time.monotonic() - started
    return result, executed


def ungraded(points, question, status):
    """A notebook question that could not be graded: 0 of its autograded points, its written part unmarked."""
    def total(manual):
        return sum(p for g, (p, m) in points.items() if question_of(g) == question and m == manual)
    return Question(0.0, total(False), manual_max=total(True), graded=False, status=status)


def grade_notebook_part(intake, context, asked, deadline, part_folder, sandbox, result, scratch):
    release = context.release
    if intake.notebook is None:
        for q in asked:
            result.questions[q] = ungraded(release.points, q, intake.problems.get("notebook", ""))
        return None
    files = [(intake.notebook, NOTEBOOK)] + ([(intake.pyfile, "batchnormalization.py")] if intake.pyfile else [])
    files += [(p, p.relative_to(intake.notebook.parent)) for p in (intake.notebook.parent / "runs").rglob("*.json")]
    folder = part_folder("nb", files)
    shutil.copy(context.snapshot, scratch / "gradebook.db")  # nbgrader's OverwriteCells reads the test cells there
    graded = grade_notebook((folder / NOTEBOOK).read_bytes(), sandbox(folder), db_url(scratch), result.student_id,
                            deadline, context.settings.cell_timeout, context.settings.output_kb << 10,
                            context.secret_lines, release)
    result.notes += graded.notes
    result.flags += graded.flags
    if graded.problem:
        intake.problems["notebook"] = graded.problem
    for q in asked:
        if graded.problem:
            result.questions[q] = ungraded(release.points, q, graded.problem)
            continue
        cells = [c for c in graded.cells if question_of(c.grade_id) == q]
        auto = [c for c in cells if not c.manual]
        manual = [c for c in cells if c.manual]
        result.questions[q] = Question(
            sum(c.score for c in auto), sum(c.max_score for c in auto),
            manual_max=sum(c.max_score for c in manual), manual_pending=any(c.pending for c in manual),
            status="; ".join(f"{c.grade_id}: {c.message}" for c in manual if c.message),
            tests=[Test(c.grade_id, c.score, c.max_score, c.score == c.max_score, c.message) for c in auto])
    return None if graded.problem else graded.executed


def status_line(result, problems, sandboxed):
    """"ok", or what kept parts from being graded, what needs a human, and a missing sandbox."""
    parts = [f"{part}: {problem}" for part, problem in problems.items() if part in ("pyfile", "notebook")]
    if "bonus" in result.questions and not result.questions["bonus"].graded:
        parts.append("bonus NOT GRADED (see notes)")
    if result.flags:
        parts.append("REVIEW: the notebook uses " + ", ".join(result.flags))
    if not sandboxed:
        parts.append("graded WITHOUT a sandbox")
    return "; ".join(parts) or "ok"
