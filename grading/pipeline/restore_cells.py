"""SANITIZE's cell restoring: nbgrader's OverwriteCells, which also puts back every deleted grade cell (nbgrader
0.9's add_missing_cells fails when the cell before a deleted one is not a grade cell)."""
from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import OverwriteCells
from traitlets import Bool


class RestoringOverwriteCells(OverwriteCells):
    """nbgrader's OverwriteCells, which also puts every deleted grade cell back, after the nearest cell before it
    that the submission still has."""

    add_missing_cells = Bool(True, help="put deleted grade cells back (always, for this assignment)").tag(
        config=True)

    def add_missing_grade_cells(self, nb: NotebookNode,
                                resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
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
