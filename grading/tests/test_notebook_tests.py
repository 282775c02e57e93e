"""The notebook's visible test cells, students' quick feedback (the grader scores with its hidden suites): they pass
for any correct way of writing each norm and fail for a wrong-axis one, and `nbgrader validate` (the Validate
button) passes on the sources and fails while batchnormalization.py is not implemented. Run All on the untouched
release (through nbclient, and through JupyterLab in Chromium) goes past every failing test cell, which the tag
raises-exception marks, to the last cell; the training cells say which answer they wait for.

One real kernel runs the source notebook up to its last test cell of Q1–Q5; each case then runs make_norm's cell
again with another implementation in its solution region, and the test cells of Q3–Q5 after it, and reads every
test cell with nbgrader's own determine_grade. Another kernel, interrupted as the stop button does during a training
run, shows how to resume in one line.

The Q1/Q2 cells run the public tests of batchnormalization.py: on every Q1/Q2 mutant, slip and alternative that the
grader's own tests have (test_mutations.py, test_hidden_batchnorm.py), the public Q2 tests pass exactly where the
real hidden suite gives Q2 full marks, and a public Q1 test fails only where it takes Q1 points.
"""
import copy
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from xml.etree import ElementTree

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from nbgrader.utils import determine_grade, is_grade

from test_browser import By, Keys, browser, jupyter_lab, wait_for  # noqa: F401 (browser is a fixture)
from test_mutations import ALTERNATIVES, DEGENERATE, PYFILE_MUTANTS
from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, PER_PIXEL_LN_AND_NO_AFFINE, SWAPPED_AXES
from grading.assignment import PYFILE, PYFILE_REGIONS
from grading.authoring.regions import reference_answers, stub_pyfile
from grading.authoring.samples import fill_code

from hidden_suite_runner import judged_in_a_process

REPO = Path(__file__).resolve().parents[2]

NORM_CELLS = ("q3_layer_norm", "q3_instance_norm", "q3_group_norm")

REFERENCE = None  # keep the solution as written: nn.GroupNorm for all three


def load_source():
    return nbformat.read(REPO / "norm.ipynb", as_version=4)


def replace_solution(cell, code):
    pattern = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^\1### END SOLUTION\n?", re.M | re.S)
    indent = pattern.search(cell.source).group(1)
    cell.source = pattern.sub(lambda m: textwrap.indent(code.strip("\n"), indent) + "\n", cell.source, count=1)


def is_test_cell(cell):
    return is_grade(cell) and cell.cell_type == "code" and cell.metadata.nbgrader.grade_id != "bonus"


@pytest.fixture(scope="module")
def kernel():
    """One kernel that ran the source notebook up to its last test cell of Q1–Q5: (client, {grade_id: (score,
    max_score)} of every test cell, [(position, cell)] of make_norm's cell and the test cells of Q3–Q5 as they were
    before running: nbclient puts each cell it runs back into its notebook)."""
    nb = load_source()
    nb.cells = nb.cells[:max(i for i, c in enumerate(nb.cells) if is_test_cell(c)) + 1]
    again = [(i, copy.deepcopy(c)) for i, c in enumerate(nb.cells)
             if c.metadata.get("nbgrader", {}).get("grade_id") == "q3_make_norm"
             or (is_test_cell(c) and c.metadata.nbgrader.grade_id not in ("q1_forward", "q2_backward"))]
    client = NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        reference = {c.metadata.nbgrader.grade_id: determine_grade(c) for c in nb.cells if is_test_cell(c)}
        said = {c.metadata.nbgrader.grade_id: printed(c) for c in nb.cells if is_test_cell(c)}
        yield client, reference, again, said


def printed(cell):
    """What a cell printed."""
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def scores_with(kernel, make_norm_body):
    """{grade_id: (score, max_score)} of the test cells of Q3–Q5 after make_norm's cell is run again with
    make_norm_body in place of its solution (the Q1/Q2 cells do not use it); the reference's, of every test cell,
    without a body."""
    client, reference, again, _ = kernel
    if make_norm_body is None:
        return reference
    cells = [(index, copy.deepcopy(cell)) for index, cell in again]
    replace_solution(cells[0][1], make_norm_body)
    for index, cell in cells:
        client.execute_cell(cell, index)
    return {c.metadata.nbgrader.grade_id: determine_grade(c) for _, c in cells if is_test_cell(c)}


@pytest.mark.parametrize("make_norm_body", [REFERENCE, LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS],
                         ids=["groupnorm-for-all", "layernorm-instancenorm-manual-groups"])
def test_correct_implementations_get_full_credit(kernel, make_norm_body):
    scores = scores_with(kernel, make_norm_body)
    assert scores and all(score == max_score for score, max_score in scores.values()), scores


def test_every_passing_test_cell_says_so_in_words(kernel):
    said = kernel[3]
    assert set(said) == {"q1_forward", "q2_backward", *NORM_CELLS, "q3_shortcut", "q4_no_norm", "q4_trains",
                         "q5_cifar_stem"}
    for grade_id, text in said.items():
        assert text.startswith("passed / 通过: ") and "Traceback" not in text, (grade_id, text)
    assert said["q1_forward"] == ("passed / 通过: batchnorm_forward passes all 8 public tests of Q1. The grader runs "
                                  "more checks of its own.\n")
    assert said["q3_layer_norm"] == ("passed / 通过: your LN layer normalizes per sample, over (C, H, W), with "
                                     "per-channel γ and β, in train and eval mode alike\n")


@pytest.mark.parametrize("make_norm_body", [SWAPPED_AXES, PER_PIXEL_LN_AND_NO_AFFINE],
                         ids=["swapped-axes", "per-pixel-ln-and-no-affine"])
def test_wrong_axes_get_no_credit_and_cost_nothing_elsewhere(kernel, make_norm_body):
    scores = scores_with(kernel, make_norm_body)
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


def test_run_all_on_the_untouched_release_reaches_the_last_cell_and_shows_every_failure(bundle, tmp_path):
    """Run All as JupyterLab runs it: a cell that raises stops the run unless it is tagged raises-exception (nbclient
    with allow_errors=False honours the tag as JupyterLab does). A laptop without a GPU: the smoke configuration."""
    student = tmp_path / "norm"
    shutil.copytree(bundle, student)
    nb = nbformat.read(student / "norm.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, allow_errors=False, kernel_name="python3",
                   resources={"metadata": {"path": str(student)}}).execute()
    failed = {c.metadata.nbgrader.grade_id for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"}
    assert failed == {c.metadata.nbgrader.grade_id for c in nb.cells if is_test_cell(c)}
    for cell in nb.cells:
        if cell.cell_type == "code" and "raises-exception" in cell.metadata.get("tags", []):
            assert is_test_cell(cell), cell.source  # no other cell may fail and let Run All go on
    said = "".join(printed(c) for c in nb.cells if c.cell_type == "code")
    assert "Train on a T4 GPU instead: on Colab, Runtime > Change runtime type > T4 GPU" in said  # no GPU here
    for what, needs in (("the comparison grid", "make_shortcut (Q3)"), ("the bonus", "make_cifar_stem (Q5)")):
        assert f"Not run / 未运行: {what} needs {needs}, which is not implemented yet." in said, said
    assert printed(nb.cells[-1]) == "bonus_cifar10.pt2: not exported yet (optional)\nbonus_cifar100.pt2: not exported " \
                                    "yet (optional)\n"


@pytest.fixture
def lab(bundle, tmp_path):
    """(the untouched release's folder, the base URL of a `jupyter lab` serving its parent)."""
    student = tmp_path / "untouched"
    shutil.copytree(bundle, student)
    with jupyter_lab(tmp_path, tmp_path) as base:
        yield student, base


def test_run_all_in_jupyterlab_goes_past_every_failing_test_to_the_last_cell(lab, browser):
    """JupyterLab's Run All, clicked in Chromium on the untouched release: it sends every cell at once, and the
    kernel stops at a failing cell unless that cell's tag raises-exception asks it to go on."""
    student, base = lab
    browser.get(f"{base}/lab/tree/untouched/norm.ipynb?reset")
    wait_for(browser, "[...document.querySelectorAll('.jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus')]"
                      ".some(e => (e.getAttribute('title') || e.textContent).includes('Idle'))", timeout=120,
             what="the kernel")
    browser.find_element(By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']").click()
    browser.find_element(By.XPATH, "//div[contains(@class, 'lm-Menu-itemLabel') and text()='Run All Cells']").click()
    wait_for(browser, "(() => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]; "
                      "return prompts.length > 0 && /\\[\\d+\\]/.test(prompts[prompts.length - 1].textContent); })()",
             timeout=600, what="the last cell to run")
    browser.find_element(By.CSS_SELECTOR, ".jp-Notebook").send_keys(Keys.CONTROL, "s")
    wait_for(browser, "![...document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')].length", what="the save")
    nb = nbformat.read(student / "norm.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), [c.execution_count for c in code]
    failed = {c.metadata.nbgrader.grade_id for c in code for o in c.outputs if o.output_type == "error"}
    assert failed == {c.metadata.nbgrader.grade_id for c in code if is_test_cell(c)}


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


STOPPED_RUN = """
import sys
sys.path.insert(0, {repo!r})
from torch import nn
from normlab import data, train
root = {root!r}
data.write_synthetic("cifar10", root, train_size=1024, test_size=50)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 10))
config = train.TrainConfig(epochs=1000, batch_size=64, amp="off", channels_last=False, compile=False)
train.train(model, data.load("cifar10", root), config, "cpu", out_dir={out!r}, label="bonus")
"""


def test_the_stop_button_says_how_to_resume_instead_of_showing_a_traceback(tmp_path):
    """A real kernel, interrupted as Jupyter's stop button does, once a run has saved its first epoch."""
    out = tmp_path / "bonus"
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        request = client.execute(STOPPED_RUN.format(repo=str(REPO), root=str(tmp_path / "data"), out=str(out)))
        deadline = time.monotonic() + 300
        while not (out / "resume.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=120)
        errors = []
        while True:
            message = client.get_iopub_msg(timeout=30)
            if message["parent_header"].get("msg_id") != request:
                continue
            if message["msg_type"] == "error":
                errors.append(message["content"])
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "error" and len(errors) == 1
    shown = errors[0]["traceback"]
    assert len(shown) == 1
    said = re.fullmatch(
        rf"TrainingStopped: bonus: stopped during epoch (\d+) of 1000\. Its state after epoch (\d+) is saved in "
        rf"{re.escape(str(out))}: run the cell \(or the command\) again and it resumes from there, losing only the "
        r"epoch in progress\.", shown[0])
    assert said and int(said[2]) == int(said[1]) - 1, shown


def pyfile_of(answers):
    """The batchnormalization.py that answers (a grading.authoring.samples.Answers) describes."""
    fills = dict(reference_answers(REPO)[PYFILE]) if answers.base == "reference" else {}
    fills.update(answers.regions)
    text = fill_code(stub_pyfile((REPO / PYFILE).read_text()), [fills.get(name) for name in PYFILE_REGIONS])
    return answers.file_edits.get(PYFILE, lambda unchanged: unchanged)(text)


def batchnorm_students():
    """{name: batchnormalization.py} of every Q1/Q2 mutant, slip and alternative the grader's tests have."""
    sys.path.insert(0, str(REPO / "grading" / "tests" / "unit"))
    from test_hidden_batchnorm import STUDENTS

    students = {f"mutant {name}": pyfile_of(answers) for name, (answers, _) in PYFILE_MUTANTS.items()}
    students["degenerate"] = pyfile_of(DEGENERATE)
    students |= {f"alternative {name}": pyfile_of(answers) for name, answers in ALTERNATIVES.items()}
    return students | {f"hidden-suite student {name}": source for name, (source, *_) in STUDENTS.items()}


# Runs the public tests of Q1 and Q2 with pytest, in one process, on the folders given: a student's folder holds
# their batchnormalization.py and the public tests/, as released. Between folders it forgets the modules that
# pytest imported from the last one.
PUBLIC_TESTS_RUNNER = """
import sys
import pytest
for folder in sys.argv[1:]:
    for name in ("batchnormalization", "test_batchnorm", "conftest"):
        sys.modules.pop(name, None)
    pytest.main(["-q", "-p", "no:cacheprovider", "--assert=plain", f"--junitxml={folder}/report.xml", "-k",
                 "q1 or q2", f"{folder}/tests"])
"""


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """{student: {"public": {question: whether all its public tests pass}, "grader": {question: whether the hidden
    suite gives full marks}}} for Q1 and Q2, the hidden suites run by grading/tests/hidden_suite_runner.py."""
    students = batchnorm_students()
    root = tmp_path_factory.mktemp("students")
    folders = {}
    for index, (name, source) in enumerate(students.items()):
        folder = folders[name] = root / f"student{index}"
        folder.mkdir()
        (folder / PYFILE).write_text(source)
        shutil.copytree(REPO / "tests", folder / "tests")
    completed = subprocess.run([sys.executable, "-c", PUBLIC_TESTS_RUNNER, *map(str, folders.values())], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    spec = root / "students.json"
    spec.write_text(json.dumps({name: {"pyfile": source, "cells": ["q1_forward", "q2_backward"]}
                                for name, source in students.items()}))
    hidden = judged_in_a_process(spec)
    found = {}
    for name, folder in folders.items():
        cases = list(ElementTree.parse(folder / "report.xml").getroot().iter("testcase"))
        public = {question: all(case.find("failure") is None and case.find("error") is None for case in cases
                                if case.get("name").startswith(f"test_{question}_")) for question in ("q1", "q2")}
        grader = {question: all(test["passed"] for test in hidden[name] if test["cell"].startswith(question))
                  for question in ("q1", "q2")}
        found[name] = {"public": public, "grader": grader}
    return found


@pytest.mark.parametrize("student", batchnorm_students())
def test_the_public_q2_tests_pass_exactly_where_the_grader_gives_q2_full_marks(verdicts, student):
    assert verdicts[student]["public"]["q2"] == verdicts[student]["grader"]["q2"], verdicts[student]


@pytest.mark.parametrize("student", batchnorm_students())
def test_a_public_q1_test_fails_only_where_the_grader_takes_q1_points(verdicts, student):
    assert verdicts[student]["public"]["q1"] or not verdicts[student]["grader"]["q1"], verdicts[student]


def test_the_agreement_is_tested_on_right_and_wrong_backwards_and_on_slips_of_the_forward(verdicts):
    assert {tuple(v["grader"].values()) for v in verdicts.values()} == {(True, True), (True, False), (False, True),
                                                                          (False, False)}
    for slip in ("mutant train-unbiased-variance", "mutant train-eps-outside-sqrt",
                 "hidden-suite student unbiased-variance", "hidden-suite student no-eps"):
        assert verdicts[slip]["public"] == {"q1": False, "q2": True}, slip
