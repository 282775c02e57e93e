"""pipeline/notebook.py: a submitted notebook is read without trusting it, replaced by the release where it cannot
be, and its changed or deleted test cells are noted."""
import json

import nbformat
import pytest

from grading.handoff import Intake
from grading.pipeline import notebook
from grading.pipeline.notebook import read_notebook, submitted_notebook


def cell(source, grade_id, solution=False):
    code = nbformat.v4.new_code_cell(source)
    code.metadata["nbgrader"] = {"grade": not solution, "solution": solution, "grade_id": grade_id, "locked": False,
                                 "points": 0 if solution else 1, "schema_version": 3}
    return code


def released():
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell("answer = None", "q_answer", solution=True), cell("assert check(answer)", "q_test"),
                cell("assert other()", "q_other")]
    return nb


@pytest.mark.parametrize("raw,message", [
    (b'{"cells": [ not json', "not valid JSON (line 1"),
    (b"[]", "not a Jupyter notebook in nbformat 4 (found nbformat 'list')"),
    (json.dumps({"nbformat": 99, "cells": []}).encode(), "found nbformat 99"),
    (bytes(range(256)) * 4, "not text"),
])
def test_what_is_not_a_notebook_says_so_for_the_student(raw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_notebook(raw)


def test_nbformat_3_and_gb18030_are_read_with_a_note():
    nb3 = nbformat.writes(nbformat.convert(released(), 3))
    nb, notes = read_notebook(nb3.replace("answer = None", "answer = '答案'").encode("gb18030"))
    assert nb.nbformat == 4 and "答案" in nb.cells[0].source
    assert notes == ["norm.ipynb was not UTF-8; it was read as GB18030",
                     "norm.ipynb was in nbformat 3; it was converted to nbformat 4"]


def test_edited_and_deleted_test_cells_are_noted_and_answers_are_not():
    nb = released()
    nb.cells[0].source = "answer = 42"
    nb.cells[1].source = "assert True"
    del nb.cells[2]
    assert notebook.test_cell_changes(nb, released()) == ["the test cell q_test was edited; the grader restored it",
                                                 "the test cell q_other was deleted; the grader restored it"]


def test_a_missing_or_unreadable_notebook_is_graded_as_the_release(tmp_path):
    nb, problem, notes = submitted_notebook(Intake(problems={"notebook": "no norm.ipynb was submitted"}), released())
    assert problem == "no norm.ipynb was submitted" and nb.cells[0].source == "answer = None" and notes == []
    (tmp_path / "norm.ipynb").write_bytes(b"{broken")
    nb, problem, _ = submitted_notebook(Intake(notebook=tmp_path / "norm.ipynb"), released())
    assert "not valid JSON" in problem and len(nb.cells) == 3
