"""The preprocessor chains a notebook goes through, shared by nbgrader's own autograde (through the course's
nbgrader_config.py) and by `python -m grading autograde`, so both give the same grades.

- SANITIZE: first ReadThroughIntake, which lets nbgrader's own autograde read only the copy of a submission that
  intake took (front_door.py stages it); then nbgrader's own, but OverwriteCells is RestoringOverwriteCells
  (restore_cells.py), which puts back every deleted grade cell.
- JUDGE: JudgedExecute (judged_execute.py) runs the notebook in a sandbox and judges every autograded cell outside
  it; then nbgrader's IgnorePattern and LimitOutput.
- RECORD: nbgrader's SaveAutoGrades, SaveJudgement (records/gradebook.py: the bonus as extra credit, REVIEW flags),
  nbgrader's AssignLatePenalties. nbgrader runs the three in one process; `python -m grading autograde` runs
  SANITIZE and JUDGE in a child per submission (grade.py) and RECORD in its main process, the only writer of the
  gradebook.
"""
import os
from typing import Any

import nbformat
from nbgrader.converters.base import NbGraderException
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern, LimitOutput,
                                    NbGraderPreprocessor, OverwriteKernelspec)

from grading.handoff import SubmissionContext
from grading.pipeline.judged_execute import JudgedExecute
from grading.pipeline.restore_cells import RestoringOverwriteCells
from grading.records.gradebook import RECORD  # noqa: F401 (the third chain, named here beside the others)


class ReadThroughIntake(NbGraderPreprocessor):
    """First in SANITIZE: a notebook may be sanitized only from the folder intake took its submission into, which
    resources["normlab"] (a SubmissionContext) names: grade.py's under `python -m grading autograde`, the front
    door's (front_door.CheckedAutograde) under nbgrader's own autograde."""

    def preprocess(self, nb: nbformat.NotebookNode,
                   resources: dict[str, Any]) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
        folder = os.path.normpath(resources.get("metadata", {}).get("path") or ".")
        context = resources.get("normlab")
        staged = context.intake.folder if isinstance(context, SubmissionContext) and context.intake else None
        if staged is None or os.path.normpath(staged) != folder:
            raise NbGraderException(f"{folder} was not read through the grader's intake: the course's "
                                    "nbgrader_config.py must be the one grading/authoring/course.py writes, whose "
                                    "front_door.install() makes nbgrader's autograde read submissions safely")
        return nb, resources


SANITIZE = [ReadThroughIntake, ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoringOverwriteCells,
            CheckCellMetadata]
JUDGE = [JudgedExecute, IgnorePattern, LimitOutput]
