"""The notebook's visible test cells, students' quick feedback (the grader scores with its hidden suites): they pass
for any correct way of writing each norm and fail for a wrong-axis one, and `nbgrader validate` (the Validate
button) passes on the sources and fails while batchnormalization.py is not implemented.

Each case swaps the solution region of make_norm for another implementation, executes the source notebook up to
its last test cell of Q1–Q5 in a real kernel, and reads every test cell with nbgrader's own determine_grade.
"""
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.utils import determine_grade, is_grade

from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, PER_PIXEL_LN_AND_NO_AFFINE, SWAPPED_AXES

REPO = Path(__file__).resolve().parents[2]

NORM_CELLS = ("q3_layer_norm", "q3_instance_norm", "q3_group_norm")

REFERENCE = None  # keep the solution as written: nn.GroupNorm for all three


def load_source():
    return nbformat.read(REPO / "norm.ipynb", as_version=4)


def replace_solution(nb, grade_id, code):
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    pattern = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^\1### END SOLUTION\n?", re.M | re.S)
    indent = pattern.search(cell.source).group(1)
    cell.source = pattern.sub(lambda m: textwrap.indent(code.strip("\n"), indent) + "\n", cell.source, count=1)


def score_test_cells(nb, leave_out=()):
    """Execute nb up to its last test cell of Q1–Q5 (without the cells leave_out) and return
    {grade_id: (score, max_score)} of its test cells."""
    last_test = max(i for i, c in enumerate(nb.cells) if is_grade(c) and c.cell_type == "code"
                    and c.metadata.nbgrader.grade_id != "bonus")
    nb.cells = [c for c in nb.cells[:last_test + 1] if c.metadata.get("nbgrader", {}).get("grade_id") not in leave_out]
    NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    return {c.metadata.nbgrader.grade_id: determine_grade(c) for c in nb.cells if is_grade(c) and c.cell_type == "code"}


@pytest.mark.parametrize("make_norm_body", [REFERENCE, LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS],
                         ids=["groupnorm-for-all", "layernorm-instancenorm-manual-groups"])
def test_correct_implementations_get_full_credit(make_norm_body):
    nb = load_source()
    if make_norm_body is not None:
        replace_solution(nb, "q3_make_norm", make_norm_body)
    scores = score_test_cells(nb)
    assert scores and all(score == max_score for score, max_score in scores.values()), scores


@pytest.mark.parametrize("make_norm_body", [SWAPPED_AXES, PER_PIXEL_LN_AND_NO_AFFINE],
                         ids=["swapped-axes", "per-pixel-ln-and-no-affine"])
def test_wrong_axes_get_no_credit_and_cost_nothing_elsewhere(make_norm_body):
    nb = load_source()
    replace_solution(nb, "q3_make_norm", make_norm_body)
    scores = score_test_cells(nb, leave_out=("q1_forward", "q2_backward"))
    for grade_id, (score, max_score) in scores.items():
        expected = 0 if grade_id in NORM_CELLS else max_score
        assert score == expected, f"{grade_id}: {score} of {max_score}, expected {expected}"


def test_nbgrader_validate_passes_on_the_source_within_two_minutes_on_a_cpu():
    """validate runs the whole notebook headless, as a student's laptop without a GPU would (smoke mode)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "validate", "norm.ipynb"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Success! Your notebook passes all the tests." in result.stdout, (
        result.stdout[-3000:] + result.stderr[-3000:])
    assert time.monotonic() - started < 120


def test_nbgrader_validate_reports_the_unimplemented_pyfile(bundle, tmp_path):
    """The Validate button of a student who has not started batchnormalization.py says so, in full."""
    student = tmp_path / "norm"
    shutil.copytree(bundle, student)
    result = subprocess.run([sys.executable, "-m", "nbgrader", "validate", "norm.ipynb"], cwd=student,
                            capture_output=True, text=True, timeout=600)
    assert "Success!" not in result.stdout, result.stdout[-2000:]
    shown = result.stdout.splitlines()
    start = next(i for i, line in enumerate(shown) if "PublicTestsFailed: batchnormalization.py fails" in line)
    end = next(i for i in range(start, len(shown)) if "`pytest tests/ -k q1` in a terminal" in shown[i])
    block = shown[start:end + 1]  # Q1's message, whole: no colour codes, no line cut short by validate
    assert not any("\x1b[" in line or line.endswith("...") for line in block), block
    assert "not implemented yet. Fill in the region" in " ".join(block), block
