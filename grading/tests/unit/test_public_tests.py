"""The notebook's Q1 and Q2 cells (normlab.checks.public_tests) as a student sees them: run in a real kernel, which
asks for colours (FORCE_COLOR), on the stub and on the ddof=1 bug, and read from the executed notebook. Each
failing test's own message comes in full, in lines that `nbgrader validate` keeps whole, without colour codes and
without a frame of the checks."""
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
               "ddof1": SOURCE.replace("batch_var = x.var(axis=0)", "batch_var = x.var(axis=0, ddof=1)")}
VALIDATE_WIDTH = 87 - 4  # nbgrader validate cuts lines past 87 characters, after a 4-space indent


def source_of_cell(grade_id):
    nb = nbformat.read(REPO / NOTEBOOK, as_version=4)
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id).source


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """{(submission, grade id): the lines the cell's error shows}, from one kernel that runs the Q1 and Q2 cells in
    each submission's folder."""
    cells = ["from normlab import checks\nimport os"]
    for name, source in SUBMISSIONS.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / PYFILE).write_text(source)
        shutil.copytree(REPO / "tests", folder / "tests")
        (folder / "normlab").symlink_to(REPO / "normlab")
        cells += [f"os.chdir({str(folder)!r})", source_of_cell("q1_forward"), source_of_cell("q2_backward")]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    errors = [o for c in nb.cells[1:] for o in c.outputs if o.output_type == "error"]
    keys = [(name, grade_id) for name in SUBMISSIONS for grade_id in ("q1_forward", "q2_backward")]
    assert len(errors) == len(keys), [o.get("evalue") for c in nb.cells for o in c.outputs]
    return {key: (error.ename, "\n".join(error.traceback).split("\n")) for key, error in zip(keys, errors)}


def joined(lines):
    return re.sub(r"\s+", " ", " ".join(lines))


@pytest.mark.parametrize("key", [(name, grade_id) for name in SUBMISSIONS for grade_id in ("q1_forward", "q2_backward")])
def test_the_message_is_clean_and_whole(shown, key):
    ename, lines = shown[key]
    assert ename == "PublicTestsFailed" and lines[0].startswith("PublicTestsFailed: batchnormalization.py fails")
    assert not any("\x1b[" in line or len(line) > VALIDATE_WIDTH for line in lines), lines
    assert not any(re.search(r"Traceback|checks\.py|File \"|\.\.\.$", line) for line in lines), lines
    assert lines[-1] == f"`pytest tests/ -k {key[1][:2]}` in a terminal runs them with every detail."


def test_the_stub_names_every_test_once_with_what_to_do(shown):
    q1 = joined(shown["stub", "q1_forward"][1])
    tests = re.findall(r"^def (test_q1_\w+)", (REPO / "tests/test_batchnorm.py").read_text(), re.M)
    assert f"fails {len(tests)} public tests of Q1" in q1 and all(name in q1 for name in tests)
    assert q1.count("not implemented yet. Fill in the region between the YOUR CODE BEGINS / ENDS markers in "
                    "batchnormalization.py.") == 1


def test_the_ddof1_bug_shows_each_failing_tests_own_message_in_full(shown):
    q1, q2 = joined(shown["ddof1", "q1_forward"][1]), joined(shown["ddof1", "q2_backward"][1])
    assert "test_q1_train_mode_uses_the_biased_variance_and_eps: for x=[1, 3] with eps=1 the output should be " \
           "[-0.7071, 0.7071]; got [-0.5774, 0.5774]. Use the biased variance (np.var, divide by N) and add eps " \
           "inside the square root." in q1
    assert "test_q2_backward_matches_numerical_gradient[dx]: dx differs from the numerical gradient" in q2
    assert "remember the paths through the batch mean and the batch variance, both of which depend on x" in q2
