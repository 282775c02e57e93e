"""The submitted notebook, read without trusting it: a notebook that cannot be read is replaced by the released one
(so that batchnormalization.py and the bonus are still graded), and test cells that differ from the release are
noted (SANITIZE restores them)."""
import json

import nbformat
from nbgrader.utils import is_grade, is_solution


def submitted_notebook(intake, released):
    """(notebook to grade, why the submitted one cannot be, notes): a missing or unreadable notebook is replaced by
    the released one, so batchnormalization.py and the bonus are still graded and recorded."""
    if intake.notebook is None:
        return nbformat.from_dict(released), intake.problems.get("notebook", "no norm.ipynb was submitted"), []
    try:
        nb, notes = read_notebook(intake.notebook.read_bytes())
    except ValueError as error:
        return nbformat.from_dict(released), str(error), []
    return nb, "", notes + test_cell_changes(nb, released)


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
