"""The honest-student catalogue: what honest students do to a notebook costs them nothing. Each of these answers
every question as the source does (or in another correct way) and must keep all 80 autograded points, with no
REVIEW flag."""
import nbformat
import pytest

from conftest import autograde, results, submit
from grading.authoring.samples import Answers
from grading.assignment import BY_ID
from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, MODULE_CLASSES

AUTOGRADED = {q.id: q.points for q in BY_ID.values() if q.points}


def cell_index(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def delete(*grade_ids):
    def edit(nb):
        for grade_id in grade_ids:
            del nb.cells[cell_index(nb, grade_id)]
    return edit


def move_to_end(grade_id):
    def edit(nb):
        nb.cells.append(nb.cells.pop(cell_index(nb, grade_id)))
    return edit


def rewrite(grade_id, source):
    def edit(nb):
        nb.cells[cell_index(nb, grade_id)].source = source
    return edit


def insert_after(grade_id, source):
    def edit(nb):
        nb.cells.insert(cell_index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
    return edit


NOISY_MAKE_NORM = """
import sys
import warnings
warnings.warn("LN, IN and GN are written with GroupNorm here", UserWarning)
print("building", norm_type, num_channels, file=sys.stderr)
print("building", norm_type, num_channels)
groups_for = {"LN": 1, "IN": num_channels, "GN": num_groups}
return nn.GroupNorm(groups_for[norm_type], num_channels)
"""

HONEST = {  # name: what the student did
    "warnings-and-stderr": Answers(base="reference", regions={"q3_make_norm": NOISY_MAKE_NORM}),
    "deleted-test-cells": Answers(base="reference", notebook_edits=[
        delete("q1_forward", "q3_layer_norm", "q3_shortcut", "q4_trains", "q5_cifar_stem")]),
    "moved-test-cells": Answers(base="reference", notebook_edits=[move_to_end("q3_group_norm"),
                                                                  move_to_end("q4_no_norm")]),
    "edited-test-cells": Answers(base="reference", notebook_edits=[
        rewrite("q3_instance_norm", "# I will run this later\n"),
        rewrite("q4_trains", "raise RuntimeError('my own test')")]),
    "added-helper-cell": Answers(base="reference", notebook_edits=[insert_after(
        "q3_block_1_1", "def channels_of(x):\n    return x.shape[1]\n\nprint('my helper is ready')")]),
    "module-classes": Answers(base="reference", regions=MODULE_CLASSES),
    "layernorm-instancenorm-and-groups-by-hand": Answers(
        base="reference", regions={"q3_make_norm": LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS}),
    # for their own experiments; the grader's probes then work in float64
    "float64-as-torchs-default": Answers(base="reference", notebook_edits=[insert_after(
        "setup_header", "import torch\n\ntorch.set_default_dtype(torch.float64)")]),
    # the question never fixes eps
    "other-eps-values": Answers(base="reference", regions={"q3_make_norm": """
groups_for = {"LN": 1, "IN": num_channels, "GN": num_groups}
return nn.GroupNorm(groups_for[norm_type], num_channels, eps=1e-8 if norm_type == "IN" else 1e-6)
"""}),
}


@pytest.fixture(scope="module")
def graded(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("honest")
    submissions = submit(bundle, root / "submissions", HONEST)
    completed = autograde(submissions, root / "out", release_dir, "--jobs", "2", "--questions", "q1,q2,q3,q4,q5")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return results(root / "out")


def test_the_catalogue_covers_what_honest_students_do():
    assert len(HONEST) >= 7


@pytest.mark.parametrize("name", HONEST)
def test_an_honest_student_keeps_every_point(graded, name):
    result = graded[name]
    lost = {q: [f"{t.name}: {t.message}" for t in result.questions[q].tests if not t.passed]
            for q in AUTOGRADED if result.questions[q].score != AUTOGRADED[q]}
    assert not lost, lost
    assert "REVIEW" not in result.status, result.status


def test_restored_and_edited_test_cells_are_noted(graded):
    assert any("q3_shortcut was deleted" in note for note in graded["deleted-test-cells"].notes)
    assert any("q4_trains was edited" in note for note in graded["edited-test-cells"].notes)
