"""pipeline/verdicts.py: what the grader writes into the judged notebook, and what it keeps out of messages."""
import nbformat

from grading.authoring.regions import hidden_test_lines
from grading.pipeline.verdicts import clean, kernel_said, tampering_flags, verdict_lines, write_verdicts
from grading.records.results import QuestionScore, StudentResult
from grading.records.results import Test as Check
from grading.settings import Settings


def grade_cell(grade_id, outputs=()):
    cell = nbformat.v4.new_code_cell("checks.test()")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": grade_id, "locked": True,
                                 "points": 5, "schema_version": 3}
    cell.outputs = list(outputs)
    return cell


def test_a_message_loses_every_hidden_test_line_and_is_cut_to_its_cap():
    hidden = sorted(hidden_test_lines())[0]
    message = f"first line\n    {hidden}\nlast line" + "x" * 2000
    cleaned = clean(message)
    assert hidden not in cleaned and cleaned.startswith("first line\nlast line")
    assert len(cleaned) == Settings.message_chars


def test_verdicts_replace_the_outputs_of_a_grade_cell_with_lines_and_its_score():
    printed = nbformat.v4.new_output("stream", name="stdout", text="my own check passed\n")
    nb = nbformat.v4.new_notebook(cells=[grade_cell("q3_layer_norm", [printed])])
    result = StudentResult("alice", questions={"q3": QuestionScore(3.5, 20.0, tests=[
        Check("test_layer_norm_output", 2.0, 2.0, True, cell="q3_layer_norm"),
        Check("test_layer_norm_affine", 1.5, 3.0, False, "gamma is ignored", cell="q3_layer_norm")])})
    write_verdicts(nb, result)
    text, score = nb.cells[0].outputs
    assert score.data["text/plain"] == "3.5"
    assert text.text.splitlines() == [
        "Graded by the grader's hidden checks, outside your notebook:",
        " 2.00 /  2.00  test_layer_norm_output: passed",
        " 1.50 /  3.00  test_layer_norm_affine: gamma is ignored",
        "", "What this cell printed in your kernel (information only, not graded):", "my own check passed"]


def test_a_question_that_could_not_be_graded_says_why():
    assert verdict_lines("q3_shortcut", QuestionScore(graded=False, status="no norm.ipynb was submitted")) == \
        ["Not graded: no norm.ipynb was submitted"]


def test_what_a_cell_printed_is_cut_to_its_cap():
    printed = nbformat.v4.new_output("stream", name="stdout", text="y" * 5000)
    raised = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    assert kernel_said(grade_cell("q1_forward", [raised])) == "ValueError: bad"
    said = kernel_said(grade_cell("q1_forward", [printed]))
    assert said == "y" * Settings.kernel_output_chars + " [...]"


def test_code_that_reaches_into_the_kernel_is_flagged_but_locked_cells_are_not():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("get_ipython().showtraceback = None"),
                                         nbformat.v4.new_code_cell("np.allclose = lambda *a: True")])
    locked = nbformat.v4.new_code_cell("import atexit")
    locked.metadata["nbgrader"] = {"locked": True}
    nb.cells.append(locked)
    assert tampering_flags(nb) == ["get_ipython (can rewrite or skip later cells)", "IPython error handling",
                                   "rebinding a library function"]
