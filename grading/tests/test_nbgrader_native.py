"""Plain `nbgrader autograde`, run by a TA in the course that `python -m grading autograde` wrote, gives the same
gradebook, cell by cell, and the same `nbgrader export` for the sample students of the demo. (test_bad_inputs.py
checks the same for bad inputs: a notebook that is not JSON, one in nbformat 3, a missing notebook, a missing or
misnamed .py.)"""
from conftest import graded_both_ways


def test_the_sample_students_get_the_same_grades_from_nbgrader(demo, tmp_path):
    out, completed = demo
    assert completed.returncode == 0, completed.stderr[-3000:]
    ours, theirs = graded_both_ways(out / "graded" / "course", tmp_path)
    assert ours == theirs
