"""The submitted notebook, read without trusting it and checked against the released one, so that what nbgrader's
chains receive is a notebook of the assignment's cells with the release's grading metadata. Both front doors grade
what submitted_notebook returns (grade.py, and front_door.CheckedAutograde for nbgrader's own autograde), so no
nbgrader step meets a defect of the student's.

A notebook that cannot be graded as submitted is a SubmissionDefect of part "notebook": the released notebook is
graded in its place (its questions score 0, and batchnormalization.py and the bonus are still graded), and the
student's status says why. That is a notebook which
- cannot be read: not text, not JSON, nested deeper than NESTING levels, not in nbformat 3 or 4, or with cells that
  break the notebook format (their outputs aside, which SANITIZE clears: an output or a key that the format does
  not know costs nothing);
- changes the role of a cell of the assignment: a test cell made an answer cell, an answer cell made a test cell
  or an ordinary one (nbgrader's grade and solution flags). Only an edit of the notebook's metadata does this, no
  command of Jupyter's; nbgrader itself cannot grade it (a locked cell's checksum no longer matches), and which
  role the student meant cannot be known;
- gives a cell a role (grade, solution or locked) under a grade id the assignment does not have, or under none:
  nbgrader refuses such a cell too, and the points it claims would be the student's to set; or holds nbgrader
  metadata that is not a set of settings at all.

What honest students do to the same metadata is graded, with the release's settings put back and a note:
- a duplicated cell (JupyterLab's duplicate, and copy and paste, copy its nbgrader metadata): one copy keeps the
  grade id, the last one the student changed, or the last one where they changed none, so that an answer written
  in either copy is the one graded (nbgrader's DeduplicateIds keeps the last, which graded an untouched stub below
  a written answer as a blank answer); the other copies become ordinary cells, which still run;
- a changed locked flag, points or cell type of a cell of the assignment: the release's is put back, as nbgrader's
  OverwriteCells does, each with a note "a changed cell setting was reset";
- edited or deleted test cells: noted (SANITIZE puts them back).
Nothing is noted where no grade can change: nbgrader metadata that gives a cell no role is removed (nbgrader ignores
such a cell, and nbgrader 0.9's add_missing_cells fails on one without a grade id); a cell of the assignment gets
the release's nbgrader metadata whole, so extra keys or an older schema version in the student's copy are dropped;
cells without nbformat ids get them from nbformat.
"""
import copy
import json
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbgrader.utils import is_grade, is_locked, is_solution

from grading.assignment import NOTEBOOK
from grading.failures import MALFORMED, SubmissionDefect
from grading.handoff import Intake

# Levels of JSON nesting a notebook may have. Notebooks that tools write nest about ten deep (a plot's spec in an
# output perhaps thirty); every recursive reader after json (nbformat's, jsonschema's, copy.deepcopy, the
# encoders) must stay within Python's recursion limit, which a notebook nested a thousand levels deep exceeds.
NESTING = 100
GRADED_AS_RELEASED = f"its questions were not graded: download {NOTEBOOK} again and copy your answers into it"
Role = tuple[bool, bool]  # (a grade cell, a solution cell), as nbgrader's flags say
ROLES: dict[Role, str] = {(True, False): "a test cell", (False, True): "an answer cell", (True, True): "an answer cell graded by hand",
         (False, False): "an ordinary cell"}


def submitted_notebook(intake: Intake, released: NotebookNode) -> tuple[NotebookNode, str, list[str]]:
    """(notebook to grade, why the submitted one cannot be graded, notes): the submitted notebook with the release's
    grading metadata (the module's docstring says what is restored), or the released one in place of one that is
    missing or a SubmissionDefect, so that batchnormalization.py and the bonus are still graded and recorded."""
    if intake.notebook is None:
        return nbformat.from_dict(released), intake.problems.get("notebook", f"no {NOTEBOOK} was submitted"), []
    try:
        nb, notes = read_notebook(intake.notebook.read_bytes())
        notes += restore_grading_metadata(nb, released)
    except SubmissionDefect as defect:
        return nbformat.from_dict(released), str(defect), []
    return nb, "", notes + test_cell_changes(nb, released)


def read_notebook(raw: bytes) -> tuple[NotebookNode, list[str]]:
    """A v4 notebook from raw bytes, and notes; raises SubmissionDefect("notebook", message for the student)."""
    notes = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
            notes.append(f"{NOTEBOOK} was not UTF-8; it was read as GB18030")
        except UnicodeDecodeError:
            raise SubmissionDefect("notebook", f"{NOTEBOOK} is not text (neither UTF-8 nor GB18030)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionDefect("notebook", f"{NOTEBOOK} is not valid JSON (line {error.lineno}: {error.msg}); it "
                                           "could not be graded") from None
    except RecursionError:
        raise SubmissionDefect("notebook", too_deep()) from None
    if not nesting_within(data, NESTING):
        raise SubmissionDefect("notebook", too_deep())
    version = data.get("nbformat") if isinstance(data, dict) else type(data).__name__
    minor = data.get("nbformat_minor", 0) if isinstance(data, dict) else 0
    if not isinstance(version, int) or version not in (3, 4) or not isinstance(minor, int):
        found = f"nbformat {shown(version)}" + ("" if isinstance(minor, int) else f", nbformat_minor {shown(minor)}")
        raise SubmissionDefect("notebook", f"{NOTEBOOK} is not a Jupyter notebook in nbformat 4 (found {found})")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(as_graded(nb), relax_add_props=True)
    except (*MALFORMED, nbformat.ValidationError) as error:
        said = (str(error).splitlines() or [type(error).__name__])[0]
        raise SubmissionDefect("notebook", f"{NOTEBOOK} is not a notebook that Jupyter can open ({said[:120]}); it "
                                           "could not be graded") from None
    if data["nbformat"] == 3:
        notes.append(f"{NOTEBOOK} was in nbformat 3; it was converted to nbformat 4")
    return nb, notes


def as_graded(nb: NotebookNode) -> dict[str, Any]:
    """What of nb is graded, for validation: the cells without their outputs, which SANITIZE clears (ClearOutput),
    so that an output or a key that Jupyter's schema does not know costs no one anything. A shallow copy: nb is not
    changed."""
    cells = nb.get("cells")
    if isinstance(cells, list):
        cells = [{**cell, "outputs": [], "execution_count": None}
                 if isinstance(cell, dict) and cell.get("cell_type") == "code" else cell for cell in cells]
    return {**nb, "cells": cells}


def too_deep() -> str:
    return f"{NOTEBOOK} is nested more than {NESTING} levels deep, which no notebook is; it could not be graded"


def nesting_within(data: Any, limit: int) -> bool:
    """Whether the JSON value data nests at most limit levels of lists and objects (read without recursion)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            if depth > limit:
                return False
            pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def shown(value: Any, length: int = 60) -> str:
    """value as Python writes it, cut to about length characters: a student's data, quoted in a message."""
    text = repr(value)
    return text if len(text) <= length else text[:length] + "..."


def restore_grading_metadata(nb: NotebookNode, released: NotebookNode) -> list[str]:
    """Give every cell of nb that carries a grade id of the release the release's nbgrader metadata and cell type,
    one copy per grade id, and remove nbgrader metadata that gives a cell no role; notes on what was put back.
    Raises SubmissionDefect where a cell's role differs from the release's or a cell with a role has a grade id the
    release does not have (the module's docstring says why)."""
    release = {c.metadata.nbgrader.grade_id: c for c in released.cells if "nbgrader" in c.metadata}
    copies: dict[str, list[NotebookNode]] = {}  # {grade id: the cells that carry it}
    for cell in nb.cells:
        settings = cell.metadata.get("nbgrader")
        if settings is None:
            continue
        if not isinstance(settings, dict):
            raise SubmissionDefect("notebook", f"a cell of {NOTEBOOK} has nbgrader metadata that is not a set of "
                                               f"settings ({shown(settings)}); {GRADED_AS_RELEASED}")
        grade_id = settings.get("grade_id")
        role = (bool(settings.get("grade")), bool(settings.get("solution")))
        if isinstance(grade_id, str) and grade_id in release:
            expected = role_of(release[grade_id])
            if role != expected:
                raise SubmissionDefect("notebook", f"the cell {grade_id} of {NOTEBOOK} is {ROLES[expected]} of the "
                                                   f"assignment, but its nbgrader metadata was changed to make it "
                                                   f"{ROLES[role]}; {GRADED_AS_RELEASED}")
            copies.setdefault(grade_id, []).append(cell)
        elif any(role) or settings.get("locked"):
            marked = f"{NOTEBOOK} has a cell marked for nbgrader as {ROLES[role] if any(role) else 'a locked cell'}"
            raise SubmissionDefect("notebook", f"{marked} with the grade id {shown(grade_id)}, which the assignment "
                                               f"does not have (a cell copied from another assignment's notebook "
                                               f"brings its marks along); {GRADED_AS_RELEASED}" if grade_id else
                                               f"{marked} without a grade id; {GRADED_AS_RELEASED}")
        else:
            del cell.metadata["nbgrader"]
    notes = []
    for grade_id, cells in copies.items():
        kept = chosen_copy(cells, release[grade_id])
        if len(cells) > 1:
            changed = "the last copy you changed" if kept.source.strip() != release[grade_id].source.strip() \
                else "the last copy"
            notes.append(f"the cell {grade_id} appears {len(cells)} times (a duplicated cell?); the grader graded "
                         f"{changed} and kept the others as ordinary cells")
            for other in cells:
                if other is not kept:
                    del other.metadata["nbgrader"]
        notes += changed_settings(kept, release[grade_id])
        kept.metadata["nbgrader"] = copy.deepcopy(release[grade_id].metadata.nbgrader)
        if kept.cell_type != release[grade_id].cell_type:
            nb.cells[next(i for i, c in enumerate(nb.cells) if c is kept)] = retyped(kept, release[grade_id].cell_type)
    return notes


def role_of(cell: NotebookNode) -> Role:
    return is_grade(cell), is_solution(cell)


def chosen_copy(cells: list[NotebookNode], released_cell: NotebookNode) -> NotebookNode:
    """The copy of a cell that keeps its grade id: the last one whose source differs from the release's, or the
    last one."""
    changed = [c for c in cells if c.source.strip() != released_cell.source.strip()]
    return (changed or cells)[-1]


def changed_settings(cell: NotebookNode, released_cell: NotebookNode) -> list[str]:
    """Notes on the settings of cell (a cell of the assignment, in the role it has in the release) that differ from
    released_cell's and are put back: its cell type, whether it is locked, and a grade cell's points."""
    grade_id, notes = released_cell.metadata.nbgrader.grade_id, []
    found = {"cell type": cell.cell_type, "locked flag": is_locked(cell)}
    expected = {"cell type": released_cell.cell_type, "locked flag": is_locked(released_cell)}
    if is_grade(released_cell):
        found["number of points"] = cell.metadata.nbgrader.get("points")
        expected["number of points"] = released_cell.metadata.nbgrader.points
    for setting, value in found.items():
        if not same_setting(value, expected[setting]):
            notes.append(f"a changed cell setting was reset: the {setting} of the cell {grade_id} was {shown(value)};"
                         f" the assignment's {shown(expected[setting])} was put back")
    return notes


def same_setting(found: Any, expected: Any) -> bool:
    """Whether a submitted setting equals the release's; points compare as numbers (5 and 5.0 are the same)."""
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return isinstance(found, (int, float)) and not isinstance(found, bool) and float(found) == float(expected)
    return found == expected


def retyped(cell: NotebookNode, cell_type: str) -> NotebookNode:
    """cell as a cell of cell_type, with its id, source and metadata."""
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
            "raw": nbformat.v4.new_raw_cell}[cell_type]
    remade = make(source=cell.source, metadata=cell.metadata)
    if "id" in cell:
        remade["id"] = cell["id"]
    else:
        del remade["id"]
    return remade


def test_cell_changes(nb: NotebookNode, released: NotebookNode) -> list[str]:
    """Notes on test cells of nb that differ from the released notebook or are missing (SANITIZE restores both)."""
    tests = {c.metadata.nbgrader.grade_id: c.source for c in released.cells if is_grade(c) and not is_solution(c)}
    submitted: dict[str, str] = {}  # {grade id: the source of its first cell}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in tests:
            submitted.setdefault(grade_id, cell.source)
    notes = [f"the test cell {g} was edited; the grader restored it" for g, source in submitted.items()
             if source.strip() != tests[g].strip()]
    notes += [f"the test cell {g} was deleted; the grader restored it" for g in tests if g not in submitted]
    return notes
