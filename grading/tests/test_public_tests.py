"""The notebook's Q1 and Q2 cells (normlab.checks.public_tests) as a student sees them: run in a real kernel, which
asks for colours (FORCE_COLOR), on the stub, on the ddof=1 slip and on a forward that is not batch normalization,
and read from the executed notebook. Each failing test's own message comes in full, in lines that `nbgrader
validate` keeps whole, without colour codes and without a frame of the checks. A slip of the forward fails Q1 alone:
Q2 judges the backward against the student's own forward, as the grader does (test_notebook_tests.py tests that
agreement on every mutant and slip the grader's tests have)."""
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from grading.assignment import NOTEBOOK, PYFILE
from grading.authoring.regions import stub_pyfile
from grading.settings import REPO

SOURCE = (REPO / PYFILE).read_text()
SUBMISSIONS = {"stub": stub_pyfile(SOURCE),
               "ddof1": SOURCE.replace("batch_var = x.var(axis=0)", "batch_var = x.var(axis=0, ddof=1)"),
               "constant-forward": SOURCE.replace("out = gamma * x_hat + beta", "out = 0 * x_hat + beta")}
CELLS = ("q1_forward", "q2_backward")
FAILING = [("stub", "q1_forward"), ("stub", "q2_backward"), ("ddof1", "q1_forward"), ("constant-forward", "q1_forward"),
           ("constant-forward", "q2_backward")]
# {(submission, grade id): (the error's name, the lines it shows) or (None, the lines the cell printed)}
Shown = dict[tuple[str, str], tuple[str | None, list[str]]]
VALIDATE_WIDTH = 87 - 4  # nbgrader validate cuts lines past 87 characters, after a 4-space indent


def source_of_cell(grade_id: str) -> str:
    nb = nbformat.read(REPO / NOTEBOOK, as_version=4)
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id).source


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Shown:
    """{(submission, grade id): (the error's name, the lines it shows) or (None, the lines the cell printed)}, from
    one kernel that runs the Q1 and Q2 cells in each submission's folder."""
    cells = ["from normlab import checks\nimport os"]
    for name, source in SUBMISSIONS.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / PYFILE).write_text(source)
        shutil.copytree(REPO / "tests", folder / "tests")
        (folder / "normlab").symlink_to(REPO / "normlab")
        cells += [f"os.chdir({str(folder)!r})", *(source_of_cell(grade_id) for grade_id in CELLS)]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    test_cells = [cell for cell in nb.cells[1:] if not cell.source.startswith("os.chdir")]
    found = {}
    for key, cell in zip([(name, grade_id) for name in SUBMISSIONS for grade_id in CELLS], test_cells):
        error = next((o for o in cell.outputs if o.output_type == "error"), None)
        found[key] = (error.ename, "\n".join(error.traceback).split("\n")) if error else (
            None, "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").splitlines())
    return found


def joined(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(lines))


@pytest.mark.parametrize("key", FAILING)
def test_the_message_is_clean_and_whole(shown: Shown, key: tuple[str, str]) -> None:
    ename, lines = shown[key]
    assert ename == "PublicTestsFailed" and lines[0].startswith("PublicTestsFailed: batchnormalization.py fails")
    assert not any("\x1b[" in line or len(line) > VALIDATE_WIDTH for line in lines), lines
    assert not any(re.search(r"Traceback|checks\.py|File \"|\.\.\.$", line) for line in lines), lines
    assert lines[-1] == f"`pytest tests/ -k {key[1][:2]}` in a terminal runs them with every detail."


def test_the_stub_names_every_test_once_with_what_to_do(shown: Shown) -> None:
    q1 = joined(shown["stub", "q1_forward"][1])
    tests = re.findall(r"^def (test_q1_\w+)", (REPO / "tests/test_batchnorm.py").read_text(), re.M)
    assert f"fails {len(tests)} public tests of Q1" in q1 and all(name in q1 for name in tests)
    assert q1.count("not implemented yet. Fill in the region between the YOUR CODE BEGINS / ENDS markers in "
                    "batchnormalization.py.") == 1


def test_the_ddof1_slip_shows_q1s_failing_test_in_full_and_passes_q2(shown: Shown) -> None:
    q1 = joined(shown["ddof1", "q1_forward"][1])
    assert "test_q1_train_mode_uses_the_biased_variance_and_eps: for x=[1, 3] with eps=1 the output should be " \
           "[-0.7071, 0.7071]; got [-0.5774, 0.5774]. Use the biased variance (np.var, divide by N) and add eps " \
           "inside the square root." in q1
    assert shown["ddof1", "q2_backward"] == (None, [
        "passed / 通过: batchnorm_backward passes all 3 public tests of Q2. The grader runs more checks of its own."])


def test_a_forward_that_is_not_batch_normalization_fails_q2_with_what_to_fix_first(shown: Shown) -> None:
    q2 = joined(shown["constant-forward", "q2_backward"][1])
    assert re.search(r"test_q2_backward_is_the_gradient_of_your_forward\[dx\], test_q2_\w+\[dgamma\], "
                     r"test_q2_\w+\[dbeta\]: Q2 is checked against your train-mode forward, which is not batch "
                     r"normalization: its output is off by up to \S+ where batch normalization's reaches \S+\. Fix Q1 "
                     r"first\.", q2), q2
