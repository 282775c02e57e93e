"""`python -m grading demo`, the README's main command: each sample student scores what its description says."""
from conftest import grades

EXPECTED = {  # student: (q1, q2, q3, q4, q5, total)
    "full_marks": ("20.00", "20.00", "20.00", "10.00", "10.00", "80.00"),
    "zipped_resubmission": ("20.00", "20.00", "20.00", "0.00", "0.00", "60.00"),
    # Q1: two slips, each charged once (2 points each): eps outside the square root in test mode, running_var from
    # the unbiased variance; Q3: LN written as BatchNorm2d (a wrong idea) keeps the point of its γ and β
    "common_mistakes": ("16.00", "20.00", "16.00", "10.00", "0.00", "62.00"),
    # Q3: the GN with a fixed group count keeps the points of its γ and β and of keeping no running statistics
    "forward_only": ("20.00", "0.00", "12.33", "0.00", "0.00", "32.33"),
    "untouched": ("0.00", "0.00", "0.00", "0.00", "0.00", "0.00"),
    "hostile": ("0.00", "0.00", "0.00", "0.00", "0.00", "0.00"),
}


def test_the_demo_releases_and_grades_the_sample_students(demo):
    out, completed = demo
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "release check passed" in completed.stderr and "SYNTHETIC" in completed.stderr  # logged
    # it points TAs to the formgrader the way nbgrader 0.9 serves it (there is no `nbgrader formgrader` command)
    assert "jupyter lab, then open http://localhost:8888/formgrader" in completed.stderr
    assert "nbgrader formgrader" not in completed.stderr
    rows = grades(out / "graded")
    assert {s: tuple(rows[s][c] for c in ("q1", "q2", "q3", "q4", "q5", "total")) for s in EXPECTED} == EXPECTED
    assert "REVIEW" in rows["hostile"]["status"] and "NOT GRADED" in rows["full_marks"]["status"]
    assert "used 'batchnormalization (1).py' as batchnormalization.py" in rows["zipped_resubmission"]["notes"]
