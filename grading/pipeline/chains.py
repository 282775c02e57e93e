"""The preprocessor chains a notebook goes through, shared by nbgrader's own autograde (through the course's
nbgrader_config.py) and by `python -m grading autograde`, so both give the same grades.

- SANITIZE: first ReadThroughIntake (front_door.py), which lets nbgrader's own autograde read only the copy of a
  submission that intake took; then nbgrader's own, but OverwriteCells is RestoringOverwriteCells (restore_cells.py),
  which puts back every deleted grade cell.
- JUDGE: JudgedExecute (judged_execute.py) runs the notebook in a sandbox and judges every autograded cell outside
  it; then nbgrader's IgnorePattern and LimitOutput.
- RECORD: nbgrader's SaveAutoGrades, SaveJudgement (records/gradebook.py: the bonus as extra credit, REVIEW flags),
  nbgrader's AssignLatePenalties. nbgrader runs the three in one process; `python -m grading autograde` runs
  SANITIZE and JUDGE in a child per submission (grade.py) and RECORD in its main process, the only writer of the
  gradebook.
"""
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern, LimitOutput,
                                    OverwriteKernelspec)

from grading.pipeline.front_door import ReadThroughIntake
from grading.pipeline.judged_execute import JudgedExecute
from grading.pipeline.restore_cells import RestoringOverwriteCells
from grading.records.gradebook import RECORD  # noqa: F401 (the third chain, named here beside the others)

SANITIZE = [ReadThroughIntake, ClearOutput, DeduplicateIds, OverwriteKernelspec, RestoringOverwriteCells,
            CheckCellMetadata]
JUDGE = [JudgedExecute, IgnorePattern, LimitOutput]
