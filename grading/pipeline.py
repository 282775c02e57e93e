"""The preprocessor chains a notebook goes through, shared by nbgrader's own autograde (through the course's
nbgrader_config.py) and by `python -m grading autograde`, so both give the same grades.

- SANITIZE: nbgrader's own, but OverwriteCells is RestoringOverwriteCells, which puts back every deleted grade
  cell (nbgrader 0.9's add_missing_cells fails when the cell before a deleted one is not a grade cell).
- JUDGE: JudgedExecute (grading/judge.py) runs the notebook in a sandbox and judges every autograded cell outside
  it; then nbgrader's IgnorePattern and LimitOutput.
- RECORD: nbgrader's SaveAutoGrades, SaveJudgement (below: the bonus as extra credit, REVIEW flags), nbgrader's
  AssignLatePenalties. nbgrader runs the three in one process; `python -m grading autograde` runs SANITIZE and JUDGE
  in a worker per submission and RECORD in its main process, the only writer of the gradebook.
"""
import json
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds,
                                    IgnorePattern, LimitOutput, NbGraderPreprocessor, OverwriteCells,
                                    OverwriteKernelspec, SaveAutoGrades)
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from grading.judge import JudgedExecute
from grading.results import StudentResult


class RestoringOverwriteCells(OverwriteCells):
    """nbgrader's OverwriteCells, which also puts every deleted grade cell back, after the nearest cell before it
    that the submission still has."""

    add_missing_cells = Bool(True, help="put deleted grade cells back (always, for this assignment)").tag(
        config=True)

    def add_missing_grade_cells(self, nb, resources):
        source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source.source_cells]
        solutions = {cell.name for cell in source.solution_cells}
        present = {cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells}
        for grade_cell in source.grade_cells:
            if grade_cell.name in present:
                continue
            self.log.warning(f"Missing grade cell {grade_cell.name} encountered, adding to notebook")
            source_cell = source.source_cells[order.index(grade_cell.name)]
            restored = self.missing_cell_transform(source_cell, grade_cell.max_score,
                                                   is_solution=grade_cell.name in solutions)
            before = [name for name in order[:order.index(grade_cell.name)] if name in present]
            position = 0
            if before:
                position = 1 + next(i for i, cell in enumerate(nb.cells)
                                    if cell.metadata.get("nbgrader", {}).get("grade_id") == before[-1])
            nb.cells.insert(position, restored)
            present.add(grade_cell.name)
        return nb, resources


class SaveJudgement(NbGraderPreprocessor):
    """Records what SaveAutoGrades cannot: the bonus as extra credit (or as needing a TA where it could not be
    graded), and a REVIEW flag on the submitted notebook with its reason as a comment."""

    def preprocess(self, nb, resources):
        judged = resources.get("normlab", {}).get("result")
        if judged is None:
            return nb, resources
        result = StudentResult.from_json(dict(judged))
        ids = resources["nbgrader"]
        keys = (ids["notebook"], ids["assignment"], ids["student"])
        with Gradebook(ids["db_url"]) as gb:
            bonus = result.questions.get("bonus")
            if bonus is not None:
                grade = gb.find_grade("bonus", *keys)
                grade.extra_credit = bonus.score if bonus.graded else None
                grade.needs_manual_grade = not bonus.graded or grade.manual_score is not None
            if result.flags:
                gb.find_submission_notebook(*keys).flagged = True
                first_answer = next(c.metadata.nbgrader.grade_id for c in nb.cells if is_solution(c))
                gb.find_comment(first_answer, *keys).auto_comment = (
                    "Flagged for review: the notebook uses " + ", ".join(result.flags) + ". Its checks ran outside "
                    "the notebook, so this cannot change a score; a TA may want to look.")
            gb.db.commit()
        return nb, resources


SANITIZE = [ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoringOverwriteCells, CheckCellMetadata]
JUDGE = [JudgedExecute, IgnorePattern, LimitOutput]
RECORD = [SaveAutoGrades, SaveJudgement, AssignLatePenalties, CheckCellMetadata]


def course_config(course):
    """The course's nbgrader_config.py, so our chains are configured exactly as nbgrader's are."""
    path = Path(course) / "nbgrader_config.py"
    return PyFileConfigLoader(path.name, str(path.parent)).load_config() if path.is_file() else Config()


def run(steps, nb, resources, config, log=None, **traits):
    """Apply the preprocessors steps to nb; traits go to those that declare them."""
    for step in steps:
        preprocessor = step(config=config, **{k: v for k, v in traits.items() if step.class_traits().get(k)})
        if log is not None:
            preprocessor.log = log
        nb, resources = preprocessor.preprocess(nb, resources)
    return nb, resources


def read_notebook(raw):
    """A v4 notebook from raw bytes, and notes; raises ValueError with a message for the student."""
    notes = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
            notes.append("norm.ipynb was not UTF-8; it was read as GB18030")
        except UnicodeDecodeError:
            raise ValueError("norm.ipynb is not text (neither UTF-8 nor GB18030)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"norm.ipynb is not valid JSON (line {error.lineno}: {error.msg}); it could not be graded") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int) or data["nbformat"] not in (3, 4):
        found = data.get("nbformat") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"norm.ipynb is not a Jupyter notebook in nbformat 4 (found nbformat {found!r})")
    try:
        nb = nbformat.reads(text, as_version=4)
        if data["nbformat"] == 3:
            notes.append("norm.ipynb was in nbformat 3; it was converted to nbformat 4")
    except Exception as error:
        raise ValueError(f"norm.ipynb could not be read as a notebook: {error}") from None
    return nb, notes


def test_cell_changes(nb, released):
    """Notes on test cells of nb that differ from the released notebook or are missing (SANITIZE restores both)."""
    tests = {c.metadata.nbgrader.grade_id: c.source for c in released.cells if is_grade(c) and not is_solution(c)}
    submitted = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in tests:
            submitted.setdefault(grade_id, cell.source)
    notes = [f"the test cell {g} was edited; the grader restored it" for g, source in submitted.items()
             if source.strip() != tests[g].strip()]
    notes += [f"the test cell {g} was deleted; the grader restored it" for g in tests if g not in submitted]
    return notes
