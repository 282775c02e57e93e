"""pipeline/verdicts.py: what the grader writes into the judged notebook, what it keeps out of messages, how it
merges repeated ones, and what it makes of an answer cell that stopped with an error."""
import nbformat
import pytest
from collections.abc import Sequence
from typing import Any, NoReturn

from grading.authoring.regions import hidden_test_lines
from grading.failures import StudentFailure
from grading.pipeline.hidden_suites import KernelProbes
from grading.pipeline.verdicts import cell_failures, clean, kernel_said, merge_repeated, tampering_flags, \
    verdict_lines, write_verdicts
from grading.records.results import QuestionScore, StudentResult
from grading.records.results import Test as Check
from grading.settings import Settings


def grade_cell(grade_id: str, outputs: Sequence[nbformat.NotebookNode] = ()) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("checks.test()")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": grade_id, "locked": True,
                                 "points": 5, "schema_version": 3}
    cell.outputs = list(outputs)
    return cell


def test_a_message_loses_every_hidden_test_line_and_is_cut_to_its_cap() -> None:
    hidden = sorted(hidden_test_lines())[0]
    message = f"first line\n    {hidden}\nlast line" + "x" * 2000
    cleaned = clean(message)
    assert hidden not in cleaned and cleaned.startswith("first line\nlast line")
    assert len(cleaned) == Settings.message_chars


def test_verdicts_replace_the_outputs_of_a_grade_cell_with_lines_and_its_score() -> None:
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


def test_a_question_that_could_not_be_graded_says_why() -> None:
    assert verdict_lines("q3_shortcut", QuestionScore(graded=False, status="no norm.ipynb was submitted")) == \
        ["Not graded: no norm.ipynb was submitted"]


def test_what_a_cell_printed_is_cut_to_its_cap() -> None:
    printed = nbformat.v4.new_output("stream", name="stdout", text="y" * 5000)
    raised = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[])
    assert kernel_said(grade_cell("q1_forward", [raised])) == "ValueError: bad"
    said = kernel_said(grade_cell("q1_forward", [printed]))
    assert said == "y" * Settings.kernel_output_chars + " [...]"


def test_code_that_reaches_into_the_kernel_is_flagged_but_locked_cells_are_not() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("get_ipython().showtraceback = None"),
                                         nbformat.v4.new_code_cell("np.allclose = lambda *a: True")])
    locked = nbformat.v4.new_code_cell("import atexit")
    locked.metadata["nbgrader"] = {"locked": True}
    nb.cells.append(locked)
    assert tampering_flags(nb) == ["get_ipython (can rewrite or skip later cells)", "IPython error handling",
                                   "rebinding a library function"]


SYNTAX_ERROR = nbformat.v4.new_output(  # as ipykernel 7 / IPython 9 report a missing colon on line 3 of a cell
    "error", ename="SyntaxError", evalue="expected ':' (2939136432.py, line 3)",
    traceback=["  \x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 3\x1b[39m\n"
               "\x1b[31m    \x1b[39m\x1b[31mif a == 2\x1b[39m\n             ^\n"
               "\x1b[31mSyntaxError\x1b[39m\x1b[31m:\x1b[39m expected ':'\n"])
RAISED = nbformat.v4.new_output(
    "error", ename="IndexError", evalue="index 5 is out of bounds for axis 0 with size 3",
    traceback=["\x1b[31m---\x1b[39m", "\x1b[31mIndexError\x1b[39m    Traceback (most recent call last)",
               "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[3]\x1b[39m\x1b[32m, line 7\x1b[39m\n"
               "\x1b[32m----> \x1b[39m\x1b[32m7\x1b[39m y = x[\x1b[32m5\x1b[39m]\n",
               "\x1b[31mIndexError\x1b[39m: index 5 is out of bounds for axis 0 with size 3"])


def answer_cell(grade_id: str, outputs: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("def broken(:\n")
    cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": grade_id, "locked": False,
                                 "schema_version": 3}
    cell.outputs = outputs
    return cell


def test_an_answer_cell_that_stopped_explains_the_names_it_should_have_defined() -> None:
    nb = nbformat.v4.new_notebook(cells=[answer_cell("q3_make_norm", [SYNTAX_ERROR]),
                                         answer_cell("q5_make_cifar_stem", [RAISED]),
                                         answer_cell("q4_make_no_norm", [])])
    assert cell_failures(nb) == {
        "make_norm": "make_norm is not defined: its cell, q3_make_norm, stopped with SyntaxError at line 3: "
                     "expected ':'",
        "make_cifar_stem": "make_cifar_stem is not defined: its cell, q5_make_cifar_stem, stopped with IndexError "
                           "at line 7: index 5 is out of bounds for axis 0 with size 3"}


def test_what_a_test_cell_raised_about_a_name_its_failed_cell_should_define_says_why_it_is_missing() -> None:
    raised = nbformat.v4.new_output("error", ename="NameError", evalue="name 'make_norm' is not defined",
                                    traceback=[])
    nb = nbformat.v4.new_notebook(cells=[answer_cell("q3_make_norm", [SYNTAX_ERROR]),
                                         grade_cell("q3_layer_norm", [raised])])
    result = StudentResult("bob", questions={"q3": QuestionScore(0.0, 20.0, tests=[
        Check("test_axes[LN-0]", 0, 1, False, "make_norm is not defined: ...", cell="q3_layer_norm")])})
    write_verdicts(nb, result)
    shown = nb.cells[1].outputs[0].text
    assert "NameError" not in shown and shown.endswith(
        "make_norm is not defined: its cell, q3_make_norm, stopped with SyntaxError at line 3: expected ':'\n")


def test_a_probe_that_misses_a_name_of_a_failed_cell_says_which_cell_and_error() -> None:
    class Executor:
        def probe(self, op: str, args: dict[str, Any], arrays: dict[str, Any], timeout: float) -> NoReturn:
            raise StudentFailure(f"your code raised NameError: name '{args['name']}' is not defined",
                                 error="NameError", undefined=args["name"])

    kernel = KernelProbes(Executor(), 5, {"make_norm": "make_norm is not defined: its cell, q3_make_norm, ..."})
    with pytest.raises(StudentFailure, match=r"^make_norm is not defined: its cell, q3_make_norm"):
        kernel.call("norm_layer", {"name": "make_norm"})
    # a name no failed cell should define is the student's own NameError, reported as such
    with pytest.raises(StudentFailure, match="your code raised NameError: name 'helper'"):
        kernel.call("norm_layer", {"name": "helper"})


def test_repeated_messages_are_said_once_naming_the_cells_and_once_per_cell_in_the_notebook() -> None:
    same = "no"
    tests = [Check("test_axes[LN-0]", 0, 1, False, same, cell="q3_layer_norm"),
             Check("test_axes[LN-1]", 0, 1, False, same, cell="q3_layer_norm"),
             Check("test_gamma[LN]", 1, 1, True, cell="q3_layer_norm"),
             Check("test_axes[IN-0]", 0, 1, False, same, cell="q3_instance_norm"),
             Check("test_axes[IN-1]", 0, 1, False, same, cell="q3_instance_norm"),
             Check("test_other[IN]", 0, 1, False, "its own message", cell="q3_instance_norm")]
    merge_repeated(tests)
    assert tests[0].message == f"4 checks, in q3_layer_norm, q3_instance_norm: {same}"
    assert {t.message for t in tests[1:2] + tests[3:5]} == {"the same as test_axes[LN-0] in q3_layer_norm"}
    assert tests[5].message == "its own message"
    question = QuestionScore(1.0, 20.0, tests=tests)
    assert verdict_lines("q3_instance_norm", question) == [
        " 0.00 /  2.00  test_axes[IN-0], test_axes[IN-1]: the same as test_axes[LN-0] in q3_layer_norm",
        " 0.00 /  1.00  test_other[IN]: its own message"]
    assert verdict_lines("q3_layer_norm", question) == [
        f" 0.00 /  2.00  test_axes[LN-0], test_axes[LN-1]: 4 checks, in q3_layer_norm, q3_instance_norm: {same}",
        " 1.00 /  1.00  test_gamma[LN]: passed"]
