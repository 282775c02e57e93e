"""pipeline/notebook.py: a submitted notebook is read without trusting it, replaced by the release where it cannot
be graded, given the release's grading metadata where an honest student's Jupyter changed it, and its changed or
deleted test cells are noted."""
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from grading.failures import SubmissionDefect
from grading.handoff import Intake
from grading.pipeline import notebook
from grading.pipeline.notebook import NESTING, nesting_within, read_notebook, submitted_notebook

ROLES = {"test": (True, False, True), "answer": (False, True, False), "written": (True, True, False),
         "text": (False, False, True)}  # (grade, solution, locked)


def cell(source: str, grade_id: str, role: str = "test", cell_type: str = "code") -> nbformat.NotebookNode:
    made = nbformat.v4.new_code_cell(source) if cell_type == "code" else nbformat.v4.new_markdown_cell(source)
    grade, solution, locked = ROLES[role]
    made.metadata["nbgrader"] = {"grade": grade, "solution": solution, "grade_id": grade_id, "locked": locked,
                                 "schema_version": 3, **({"points": 1} if grade else {})}
    return made


def released() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell("answer = None", "q_answer", "answer"), cell("assert check(answer)", "q_test"),
                cell("assert other()", "q_other"), cell("# Read me", "q_text", "text", "markdown"),
                cell("YOUR ANSWER HERE", "q_written", "written", "markdown")]
    return nb


def graded(nb: nbformat.NotebookNode | bytes, tmp_path: Path) -> tuple[nbformat.NotebookNode, str, list[str]]:
    """submitted_notebook of nb, handed in as norm.ipynb."""
    path = tmp_path / "norm.ipynb"
    path.write_text(nbformat.writes(nb) if not isinstance(nb, bytes) else nb.decode())
    return submitted_notebook(Intake(notebook=path), released())


def grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]


def released_json(edit: Callable[[Any], object]) -> bytes:
    """The released notebook's JSON, as edit(its data) leaves it."""
    nb = json.loads(nbformat.writes(released()))
    edit(nb)
    return json.dumps(nb).encode()


def nested(depth: int) -> bytes:
    """The released notebook, nested depth levels deep: its first cell's metadata (the fourth level) holds lists."""
    return released_json(lambda nb: nb["cells"][0]["metadata"].update(deep=json.loads("[" * (depth - 4) +
                                                                                      "]" * (depth - 4))))


@pytest.mark.parametrize("raw,message", [
    (b'{"cells": [ not json', "not valid JSON (line 1"),
    (b"[]", "not a Jupyter notebook in nbformat 4 (found nbformat 'list')"),
    (json.dumps({"nbformat": 99, "cells": []}).encode(), "found nbformat 99"),
    (json.dumps({"nbformat": 4, "nbformat_minor": "5", "cells": []}).encode(), "nbformat_minor '5'"),
    (bytes(range(256)) * 4, "not text"),
    (b'{"cells": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", f"nested more than {NESTING} levels deep"),
    (nested(NESTING + 1), f"nested more than {NESTING} levels deep"),
    (released_json(lambda nb: nb["cells"][0].update(source=5)), "not a notebook that Jupyter can open"),
])
def test_what_is_not_a_notebook_says_so_for_the_student(raw: bytes, message: str) -> None:
    with pytest.raises(SubmissionDefect) as defect:
        read_notebook(raw)
    assert defect.value.part == "notebook" and message in str(defect.value), str(defect.value)


def test_a_notebook_nested_to_the_limit_or_with_outputs_jupyter_does_not_know_is_read() -> None:
    """What SANITIZE clears (outputs, execution counts) and keys the schema does not know cost nothing."""
    nb = json.loads(nested(NESTING))
    nb["cells"][1]["outputs"] = [{"output_type": "a widget's own", "data": {}}]
    nb["cells"][1]["execution_count"] = "[*]"
    nb["cells"][2]["editor_state"] = {"folded": True}
    read, notes = read_notebook(json.dumps(nb).encode())
    assert len(read.cells) == len(released().cells) and notes == []


def test_nesting_counts_levels_of_lists_and_objects() -> None:
    assert nesting_within({"a": [1, {"b": []}]}, 4) and not nesting_within({"a": [1, {"b": []}]}, 3)
    assert nesting_within("text", 0) and nesting_within([[]] * 10_000, 2)


def test_nbformat_3_and_gb18030_are_read_with_a_note() -> None:
    nb3 = nbformat.writes(nbformat.convert(released(), 3))
    nb, notes = read_notebook(nb3.replace("answer = None", "answer = '答案'").encode("gb18030"))
    assert nb.nbformat == 4 and "答案" in nb.cells[0].source
    assert notes == ["norm.ipynb was not UTF-8; it was read as GB18030",
                     "norm.ipynb was in nbformat 3; it was converted to nbformat 4"]


def test_edited_and_deleted_test_cells_are_noted_and_answers_are_not() -> None:
    nb = released()
    nb.cells[0].source = "answer = 42"
    nb.cells[1].source = "assert True"
    del nb.cells[2]
    assert notebook.test_cell_changes(nb, released()) == ["the test cell q_test was edited; the grader restored it",
                                                          "the test cell q_other was deleted; the grader restored it"]


def test_a_missing_or_unreadable_notebook_is_graded_as_the_release(tmp_path: Path) -> None:
    nb, problem, notes = submitted_notebook(Intake(problems={"notebook": "no norm.ipynb was submitted"}), released())
    assert problem == "no norm.ipynb was submitted" and nb.cells[0].source == "answer = None" and notes == []
    nb, problem, _ = graded(b"{broken", tmp_path)
    assert "not valid JSON" in problem and len(nb.cells) == len(released().cells)


def with_cell(index: int, made: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = released()
    nb.cells[0].source = "answer = 42"
    nb.cells.insert(index, made)
    return nb


@pytest.mark.parametrize("name,edit,problem", [
    ("a test cell made an answer cell", lambda nb: nb.cells[1].metadata.nbgrader.update(solution=True),
     "the cell q_test of norm.ipynb is a test cell of the assignment, but its nbgrader metadata was changed to make "
     "it an answer cell graded by hand"),
    ("an answer cell made an ordinary one", lambda nb: nb.cells[0].metadata.nbgrader.update(solution=False),
     "the cell q_answer of norm.ipynb is an answer cell of the assignment, but its nbgrader metadata was changed to "
     "make it an ordinary cell"),
    ("a duplicated test cell whose copy became an answer cell",
     lambda nb: nb.cells.insert(2, cell("assert check(answer)", "q_test", "answer")), "an answer cell"),
    ("a grade id the assignment does not have", lambda nb: nb.cells.insert(1, cell("points = 100", "my_extra")),
     "norm.ipynb has a cell marked for nbgrader as a test cell with the grade id 'my_extra', which the assignment "
     "does not have"),
    ("a locked cell with no grade id", lambda nb: nb.cells.insert(1, cell("x", "", "text")),
     "norm.ipynb has a cell marked for nbgrader as a locked cell without a grade id"),
    ("a grade id that is not text", lambda nb: nb.cells.insert(1, cell("x", ["q_test"], "answer")),
     "with the grade id ['q_test']"),
    ("nbgrader metadata that is not a set of settings",
     lambda nb: nb.cells[1].metadata.update(nbgrader=["grade"]), "is not a set of settings (['grade'])"),
])
def test_a_notebook_whose_grading_metadata_was_forged_is_graded_as_the_release(tmp_path: Path, name: str,
                                                                               edit: Callable[[Any], object],
                                                                               problem: str) -> None:
    nb = released()
    nb.cells[0].source = "answer = 42"
    edit(nb)
    graded_nb, said, notes = graded(nb, tmp_path)
    assert problem in said and "download norm.ipynb again" in said, (name, said)
    assert graded_nb.cells[0].source == "answer = None" and grade_ids(graded_nb) == grade_ids(released()), name
    assert notes == [], name


def test_a_duplicated_answer_cell_keeps_the_copy_with_the_answer(tmp_path: Path) -> None:
    """Duplicated in Jupyter above a written answer, the untouched stub below it must not be the copy graded (a
    blank answer, scoring 0, as nbgrader's DeduplicateIds would keep it)."""
    nb = released()
    nb.cells[4].source = "Normalization helps because..."
    nb.cells.insert(5, cell("YOUR ANSWER HERE", "q_written", "written", "markdown"))
    nb.cells[0].source = "answer = 42"
    nb.cells.insert(1, copy.deepcopy(nb.cells[0]))
    graded_nb, problem, notes = graded(nb, tmp_path)
    assert problem == "" and sorted(grade_ids(graded_nb)) == sorted(grade_ids(released()))
    kept = {c.metadata.nbgrader.grade_id: c.source for c in graded_nb.cells if "nbgrader" in c.metadata}
    assert kept["q_written"] == "Normalization helps because..." and kept["q_answer"] == "answer = 42"
    assert [c.source for c in graded_nb.cells].count("answer = 42") == 2  # the other copy still runs
    assert notes == ["the cell q_answer appears 2 times (a duplicated cell?); the grader graded the last copy you "
                     "changed and kept the others as ordinary cells",
                     "the cell q_written appears 2 times (a duplicated cell?); the grader graded the last copy you "
                     "changed and kept the others as ordinary cells"]


def test_a_duplicated_test_cell_is_graded_once(tmp_path: Path) -> None:
    nb = with_cell(2, cell("assert check(answer)", "q_test"))
    graded_nb, problem, notes = graded(nb, tmp_path)
    assert problem == "" and grade_ids(graded_nb) == grade_ids(released()) and len(graded_nb.cells) == 6
    assert notes == ["the cell q_test appears 2 times (a duplicated cell?); the grader graded the last copy and kept "
                     "the others as ordinary cells"]


def test_metadata_that_gives_no_role_or_only_differs_harmlessly_is_dropped_without_a_note(tmp_path: Path) -> None:
    """nbgrader ignores a cell whose metadata gives it no role (a feedback notebook's deduplicated cells have an
    empty one); extra keys and an older schema version in a cell of the assignment change nothing either."""
    nb = with_cell(1, nbformat.v4.new_code_cell("helper = 1", metadata={"nbgrader": {}}))
    nb.cells.insert(2, nbformat.v4.new_code_cell("more = 2", metadata={"nbgrader": {"grade_id": "from_lab_3",
                                                                                   "grade": False}}))
    nb.cells[3].metadata.nbgrader.update(schema_version=1, comment="mine")
    nb.cells[3].metadata.update(tags=["checked"], jupyter={"source_hidden": True})
    graded_nb, problem, notes = graded(nb, tmp_path)
    assert problem == "" and notes == [] and grade_ids(graded_nb) == grade_ids(released())
    assert graded_nb.cells[3].metadata.nbgrader == released().cells[1].metadata.nbgrader
    assert graded_nb.cells[3].metadata.tags == ["checked"]


def test_changed_settings_are_put_back_with_a_note_each(tmp_path: Path) -> None:
    nb = released()
    nb.cells[0].source = "answer = 42"
    nb.cells[1].metadata.nbgrader.update(points=1000)
    nb.cells[2] = nbformat.v4.new_markdown_cell(nb.cells[2].source, metadata=nb.cells[2].metadata)
    nb.cells[3].metadata.nbgrader.update(locked=False)
    graded_nb, problem, notes = graded(nb, tmp_path)
    assert problem == "" and [c.cell_type for c in graded_nb.cells] == [c.cell_type for c in released().cells]
    assert [c.metadata.nbgrader for c in graded_nb.cells] == [c.metadata.nbgrader for c in released().cells]
    assert notes == ["a changed cell setting was reset: the number of points of the cell q_test was 1000; the "
                     "assignment's 1 was put back",
                     "a changed cell setting was reset: the cell type of the cell q_other was 'markdown'; the "
                     "assignment's 'code' was put back",
                     "a changed cell setting was reset: the locked flag of the cell q_text was False; the "
                     "assignment's True was put back"]


def test_cells_without_ids_are_read(tmp_path: Path) -> None:
    nb = json.loads(nbformat.writes(released()))
    for each in nb["cells"]:
        del each["id"]
    graded_nb, problem, notes = graded(json.dumps(nb).encode(), tmp_path)
    assert problem == "" and notes == [] and all(c.get("id") for c in graded_nb.cells)
