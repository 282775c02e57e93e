"""Plain `nbgrader autograde`, run by a TA in the course that `python -m grading autograde` wrote, gives the same
gradebook, cell by cell, and the same `nbgrader export`: for the sample students of the demo and for bad inputs
(a notebook that is not JSON, one in nbformat 3, a missing notebook, a missing or misnamed .py)."""
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import REFERENCE, autograde, gradebook_cells, submit
from grading.assignment import NOTEBOOK, PYFILE

def export(course, to):
    subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(to)], cwd=course, capture_output=True,
                   check=True)
    return to.read_text()


def both_ways(course, root):
    """(our course, the same course after nbgrader's own autograde), with their exports."""
    native = root / "native"
    shutil.copytree(course, native)
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "norm", "--force"], cwd=native,
                               capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return ((gradebook_cells(course), export(course, root / "ours.csv")),
            (gradebook_cells(native), export(native, root / "native.csv")))


@pytest.fixture(scope="module")
def bad_inputs(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("native-bad")
    good = submit(bundle, root / "good", {"reference": REFERENCE}) / "reference"
    submissions = root / "submissions"
    cases = {"not-json": {NOTEBOOK: b'{"cells": [ not json', PYFILE: None},
             "nbformat-3": {NOTEBOOK: nbformat.writes(nbformat.convert(nbformat.read(good / NOTEBOOK, 4), 3)).encode(),
                            PYFILE: None},
             "no-notebook": {PYFILE: None},
             "no-pyfile": {NOTEBOOK: None},
             "misnamed": {"norm (1).ipynb": (good / NOTEBOOK).read_bytes(), "batchnormalization-2.py": None}}
    for student, files in cases.items():
        (submissions / student).mkdir(parents=True)
        for name, content in files.items():
            source = good / (PYFILE if name.endswith(".py") else NOTEBOOK)
            (submissions / student / name).write_bytes(source.read_bytes() if content is None else content)
    completed = autograde(submissions, root / "out", release_dir, "--jobs", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return root


def test_the_sample_students_get_the_same_grades_from_nbgrader(demo, tmp_path):
    out, completed = demo
    assert completed.returncode == 0, completed.stderr[-3000:]
    ours, theirs = both_ways(out / "graded" / "course", tmp_path)
    assert ours == theirs


def test_bad_inputs_get_the_same_grades_from_nbgrader(bad_inputs):
    ours, theirs = both_ways(bad_inputs / "out" / "course", bad_inputs)
    assert ours == theirs
    q1 = {row[0]: row[3] for row in ours[0] if row[2] == "q1_forward"}
    assert q1["no-notebook"] == 20 and q1["not-json"] == 20  # the .py is graded all the same
    assert json.loads((bad_inputs / "out" / "no-pyfile" / "grade.json").read_text())["questions"]["q3"]["score"] == 20
