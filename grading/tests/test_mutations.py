"""Mutation tests of the grader: each planted bug loses points on its own question and nowhere else; the
reference and two differently written correct solutions keep full marks.

A mutant of batchnormalization.py is graded on Q1 and Q2, a mutant of the notebook on Q3–Q5: the notebook's test
cells never import batchnormalization.py and the hidden Q1/Q2 suite never reads the notebook, so a mutant cannot
move the other file's questions. The reference and the alternatives are graded on everything. A mistake in one
grade cell (a norm, the shortcut) must not cost its neighbours either.
"""
import re

import pytest

from conftest import REFERENCE, autograde, results, submit
from variants import LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS, MODULE_CLASSES
from grading.authoring.regions import reference_answers
from grading.authoring.samples import Answers
from grading.assignment import NOTEBOOK, PYFILE
from grading.settings import REPO

REFERENCE_CODE = {**reference_answers(REPO)[PYFILE], **reference_answers(REPO)[NOTEBOOK]}


def mutant(region, old, new):
    code = REFERENCE_CODE[region]
    assert old in code, f"the mutation {old!r} -> {new!r} no longer applies to {region}"
    return Answers(base="reference", regions={region: code.replace(old, new)})


def scaffolding_mutant(old, new):
    assert old in (REPO / PYFILE).read_text()
    return Answers(base="reference", file_edits={PYFILE: lambda text: text.replace(old, new)})


PYFILE_MUTANTS = {  # name: (answers, the question that must lose points)
    "momentum-swapped": (mutant("forward_train", "momentum * running_mean + (1 - momentum) * batch_mean",
                                "(1 - momentum) * running_mean + momentum * batch_mean"), "q1"),
    "running-var-unbiased": (mutant("forward_train", "(1 - momentum) * batch_var",
                                    "(1 - momentum) * x.var(axis=0, ddof=1)"), "q1"),
    "running-var-from-std": (mutant("forward_train", "(1 - momentum) * batch_var",
                                    "(1 - momentum) * np.sqrt(batch_var)"), "q1"),
    "running-stats-not-updated": (mutant("forward_train",
                                         "running_var = momentum * running_var + (1 - momentum) * batch_var", "pass"),
                                  "q1"),
    "running-stats-keepdims": (mutant("forward_train", "batch_mean = x.mean(axis=0)",
                                      "batch_mean = x.mean(axis=0, keepdims=True)"), "q1"),
    "mutates-x-in-place": (mutant("forward_train", "x_hat = (x - batch_mean) * inv_std",
                                  "x -= batch_mean\nx_hat = x * inv_std"), "q1"),
    "upcasts-float32": (mutant("forward_train", "batch_mean = x.mean(axis=0)",
                               "x = x.astype(np.float64)\nbatch_mean = x.mean(axis=0)"), "q1"),
    "test-mode-batch-statistics": (mutant("forward_test", "(x - running_mean) / np.sqrt(running_var + eps)",
                                          "(x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)"), "q1"),
    "test-mode-forgets-beta": (mutant("forward_test", " + beta", ""), "q1"),
    "test-mode-eps-outside-sqrt": (mutant("forward_test", "np.sqrt(running_var + eps)",
                                          "(np.sqrt(running_var) + eps)"), "q1"),
    "test-mode-updates-running-stats": (mutant("forward_test", "cache = None",
                                               "cache = None\nrunning_mean = 0.9 * running_mean + 0.1 * x.mean(0)"),
                                        "q1"),
    "unknown-mode-accepted": (scaffolding_mutant(
        "raise ValueError(f\"Invalid forward batchnorm mode {mode!r}: bn_param['mode'] must be 'train' or 'test'\")",
        "out, cache = x, None"), "q1"),
    "dx-without-mean-path": (mutant("backward", "batch_size * dx_hat - dx_hat.sum(axis=0) -",
                                    "batch_size * dx_hat -"), "q2"),
    "dx-without-variance-path": (mutant("backward", " - x_hat * (dx_hat * x_hat).sum(axis=0)", ""), "q2"),
    "dx-sign-error": (mutant("backward", "- dx_hat.sum(axis=0)", "+ dx_hat.sum(axis=0)"), "q2"),
    "dx-over-n-minus-1": (mutant("backward", "inv_std / batch_size", "inv_std / (batch_size - 1)"), "q2"),
    "dgamma-without-x-hat": (mutant("backward", "dgamma = (dout * x_hat).sum(axis=0)", "dgamma = dout.sum(axis=0)"),
                             "q2"),
    "dbeta-mean-not-sum": (mutant("backward", "dbeta = dout.sum(axis=0)", "dbeta = dout.mean(axis=0)"), "q2"),
    # slips cost less than the mistakes above, but still cost their own question, and only it
    "train-unbiased-variance": (mutant("forward_train", "batch_var = x.var(axis=0)",
                                       "batch_var = x.var(axis=0, ddof=1)"), "q1"),
    "train-eps-outside-sqrt": (mutant("forward_train", "np.sqrt(batch_var + eps)", "(np.sqrt(batch_var) + eps)"),
                               "q1"),
}

UNBIASED_LAYER_NORM = """
if norm_type == "LN":
    class UnbiasedLayerNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(num_channels, 1, 1))
            self.bias = nn.Parameter(torch.zeros(num_channels, 1, 1))

        def forward(self, x):
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            var = x.var(dim=(1, 2, 3), keepdim=True)  # torch's default: the unbiased variance
            return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias
    return UnbiasedLayerNorm()
return nn.GroupNorm({"IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""
NOTEBOOK_MUTANTS = {
    "ln-as-batchnorm": (Answers(base="reference", regions={"q3_make_norm": """
if norm_type == "LN":
    return nn.BatchNorm2d(num_channels)
return nn.GroupNorm({"IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""}), "q3"),
    "in-without-affine": (Answers(base="reference", regions={"q3_make_norm": """
if norm_type == "IN":
    return nn.InstanceNorm2d(num_channels)
return nn.GroupNorm({"LN": 1, "GN": num_groups}[norm_type], num_channels)
"""}), "q3"),
    "gn-ignores-num-groups": (mutant("q3_make_norm", '"GN": num_groups', '"GN": 2'), "q3"),
    "shortcut-stride-one": (mutant("q3_make_shortcut", "stride=stride", "stride=1"), "q3"),
    "shortcut-without-norm": (Answers(base="reference", regions={"q3_make_shortcut": """
return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
"""}), "q3"),
    "no-norm-is-batchnorm": (Answers(base="reference", regions={"q4_make_no_norm": "return nn.BatchNorm2d(num_channels)"}),
                             "q4"),
    "no-norm-zeroes-activations": (Answers(base="reference", regions={"q4_make_no_norm": """
class Zero(nn.Module):
    def forward(self, x):
        return x * 0
return Zero()
"""}), "q4"),
    "cifar-stem-keeps-maxpool": (mutant("q5_make_cifar_stem", "nn.ReLU(inplace=True))",
                                        "nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))"), "q5"),
    "cifar-stem-5x5": (mutant("q5_make_cifar_stem", "kernel_size=3, stride=1, padding=1", "kernel_size=5, stride=1, padding=2"),
                       "q5"),
    "cifar-stem-stride-2": (mutant("q5_make_cifar_stem", "stride=1", "stride=2"), "q5"),
    "cifar-stem-without-norm": (Answers(base="reference", regions={"q5_make_cifar_stem": """
return nn.Sequential(nn.Conv2d(3, out_channels, 3, padding=1, bias=False), nn.ReLU())
"""}), "q5"),
    "cifar-stem-without-relu": (mutant("q5_make_cifar_stem", ", nn.ReLU(inplace=True))", ")"), "q5"),
    "cifar-stem-always-batchnorm": (mutant("q5_make_cifar_stem", "make_norm(norm_type, out_channels, num_groups)",
                                           "nn.BatchNorm2d(out_channels)"), "q5"),
    "shortcut-with-bias": (mutant("q3_make_shortcut", "bias=False", "bias=True"), "q3"),
    "shortcut-drops-num-groups": (mutant("q3_make_shortcut", "make_norm(norm_type, out_channels, num_groups)",
                                         "make_norm(norm_type, out_channels)"), "q3"),
    "ln-as-layernorm-over-channels": (Answers(base="reference", regions={"q3_make_norm": """
if norm_type == "LN":
    return nn.LayerNorm(num_channels)
return nn.GroupNorm({"IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""}), "q3"),
    "ln-runs-for-minutes": (Answers(base="reference", regions={"q3_make_norm": """
import time
if norm_type == "LN":
    time.sleep(600)
return nn.GroupNorm({"LN": 1, "IN": num_channels, "GN": num_groups}[norm_type], num_channels)
"""}), "q3"),
    "ln-unbiased-variance": (Answers(base="reference", regions={"q3_make_norm": UNBIASED_LAYER_NORM}), "q3"),
}
# An answer cell that does not compile, in each of the four: named with its line, never as a later NameError.
SYNTAX_ERRORS = Answers(base="reference", regions={
    "q3_make_norm": 'if norm_type == "LN"\n    return nn.GroupNorm(1, num_channels)',
    "q3_make_shortcut": "return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride),,)",
    "q4_make_no_norm": "return nn.Identity())",
    "q5_make_cifar_stem": "for layer in []\n    pass"})
# Mutants whose mistake sits in one grade cell: every other cell of their question keeps its points too, so a
# mistake in a norm does not cost the shortcut (it would if the shortcut were checked with the student's norms).
ONE_CELL = {"ln-as-batchnorm": "q3_layer_norm", "in-without-affine": "q3_instance_norm",
            "gn-ignores-num-groups": "q3_group_norm", "shortcut-stride-one": "q3_shortcut",
            "shortcut-without-norm": "q3_shortcut", "shortcut-with-bias": "q3_shortcut",
            "shortcut-drops-num-groups": "q3_shortcut", "ln-as-layernorm-over-channels": "q3_layer_norm",
            "ln-runs-for-minutes": "q3_layer_norm", "ln-unbiased-variance": "q3_layer_norm"}

ALTERNATIVES = {
    "staged-and-layernorm": Answers(regions={
        "forward_train": """
mu = np.sum(x, axis=0) / x.shape[0]
centered = x - mu
var = np.sum(centered ** 2, axis=0) / x.shape[0]
std = np.sqrt(var + eps)
x_norm = centered / std
out = x_norm * gamma + beta
running_mean = momentum * running_mean + (1.0 - momentum) * mu
running_var = momentum * running_var + (1.0 - momentum) * var
cache = {"centered": centered, "std": std, "x_norm": x_norm, "gamma": gamma}
""",
        "forward_test": """
out = (x - running_mean) / np.sqrt(running_var + eps) * gamma + beta
cache = {}
""",
        "backward": """
n = dout.shape[0]
dbeta = np.sum(dout, axis=0)
dgamma = np.sum(dout * cache["x_norm"], axis=0)
dx_norm = dout * cache["gamma"]
dstd = -np.sum(dx_norm * cache["centered"], axis=0) / cache["std"] ** 2
dvar = 0.5 * dstd / cache["std"]
dcentered = dx_norm / cache["std"] + 2.0 * cache["centered"] * dvar / n
dx = dcentered - np.sum(dcentered, axis=0) / n
""",
        "q3_make_norm": LAYER_NORM_INSTANCE_NORM_AND_MANUAL_GROUPS,
        "q3_make_shortcut": """
from collections import OrderedDict
return nn.Sequential(OrderedDict(conv=nn.Conv2d(in_channels, out_channels, (1, 1), (stride, stride), bias=False),
                                 norm=make_norm(norm_type, out_channels, num_groups)))
""",
        "q4_make_no_norm": """
class PassThrough(nn.Module):
    def forward(self, x):
        return x
return PassThrough()
""",
        "q5_make_cifar_stem": """
from collections import OrderedDict
return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, out_channels, 3, padding="same", bias=False),
                                 norm=make_norm(norm_type, out_channels, num_groups), relu=nn.ReLU()))
""",
    }),
    "einsum-and-modules": Answers(regions={
        "forward_train": """
mean = np.einsum("nd->d", x) / len(x)
var = np.einsum("nd,nd->d", x - mean, x - mean) / len(x)
inverse = (var + eps) ** -0.5
normalized = (x - mean) * inverse
out = normalized * gamma + beta
running_mean = running_mean * momentum + mean * (1 - momentum)
running_var = running_var * momentum + var * (1 - momentum)
cache = normalized, inverse, gamma
""",
        "forward_test": """
scale = gamma / np.sqrt(running_var + eps)
out = x * scale + (beta - running_mean * scale)
cache = None
""",
        "backward": """
normalized, inverse, gamma = cache
dbeta = dout.sum(0)
dgamma = np.einsum("nd,nd->d", dout, normalized)
g = dout * gamma
dx = inverse * (g - g.mean(0) - normalized * (g * normalized).mean(0))
""",
        "q3_make_norm": """
groups = num_channels if norm_type == "IN" else (1 if norm_type == "LN" else num_groups)
return nn.GroupNorm(num_groups=groups, num_channels=num_channels, eps=1e-5, affine=True)
""",
        "q3_make_shortcut": MODULE_CLASSES["q3_make_shortcut"],
        "q4_make_no_norm": "return nn.Sequential()",
        "q5_make_cifar_stem": MODULE_CLASSES["q5_make_cifar_stem"],
    }),
}


# A forward that returns a constant and a backward of zeros agree with each other, and with nothing else.
DEGENERATE = Answers(regions={"forward_train": "out, cache = np.zeros_like(x) + beta, None",
                              "forward_test": "out, cache = np.zeros_like(x) + beta, None",
                              "backward": "dx, dgamma, dbeta = np.zeros_like(dout), np.zeros(dout.shape[1]), "
                                          "np.zeros(dout.shape[1])"})


@pytest.fixture(scope="module")
def graded(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("mutations")
    pyfile = submit(bundle, root / "pyfile", {name: answers for name, (answers, _) in PYFILE_MUTANTS.items()}
                    | {"degenerate": DEGENERATE})
    notebook = submit(bundle, root / "notebook", {name: answers for name, (answers, _) in NOTEBOOK_MUTANTS.items()}
                      | {"reference": REFERENCE, **ALTERNATIVES, "syntax-errors": SYNTAX_ERRORS})
    first = autograde(pyfile, root / "pyfile-out", release_dir, "--questions", "q1,q2", "--jobs", "2")
    # a probe of correct code answers within 2 s (test_attacks' honest students keep every point at 3 s); the
    # mutant that sleeps for minutes then costs seconds, not a minute
    second = autograde(notebook, root / "notebook-out", release_dir, "--jobs", "2", "--cell-timeout", "30",
                       "--probe-timeout", "4")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    return {**results(root / "pyfile-out"), **results(root / "notebook-out")}


def test_there_are_enough_mutants():
    assert len(PYFILE_MUTANTS) >= 12 and len(NOTEBOOK_MUTANTS) >= 17


@pytest.mark.parametrize("name", ["reference", *ALTERNATIVES])
def test_correct_solutions_keep_full_marks(graded, name):
    for question, result in graded[name].questions.items():
        if question != "bonus":
            failed = [f"{t.name}: {t.message}" for t in result.tests if not t.passed]
            assert result.score == result.max_score > 0, f"{name} lost points on {question}: {failed}"


@pytest.mark.parametrize("name", [*PYFILE_MUTANTS, *NOTEBOOK_MUTANTS])
def test_each_bug_costs_points_on_its_question_only(graded, name):
    _, question = {**PYFILE_MUTANTS, **NOTEBOOK_MUTANTS}[name]
    for other, result in graded[name].questions.items():
        if other == "bonus":
            continue
        if other == question:
            assert result.score < result.max_score, f"the bug {name} cost no points on {question}"
        else:
            lost = [t.name for t in result.tests if not t.passed]
            assert result.score == result.max_score, f"the bug {name} in {question} also cost points on {other}: {lost}"


@pytest.mark.parametrize("name", ONE_CELL)
def test_a_bug_in_one_cell_costs_points_in_that_cell_only(graded, name):
    question = NOTEBOOK_MUTANTS[name][1]
    tests = graded[name].questions[question].tests
    lost = {t.cell for t in tests if not t.passed}
    assert lost == {ONE_CELL[name]}, [f"{t.cell} {t.name}: {t.message}" for t in tests if not t.passed]


def test_a_degenerate_forward_earns_nothing_for_agreeing_with_its_own_backward(graded):
    assert graded["degenerate"].questions["q2"].score == 0


def test_a_slip_is_charged_once_in_its_question_and_named(graded):
    assert graded["train-unbiased-variance"].questions["q1"].score == 18
    layer_norm = [t for t in graded["ln-unbiased-variance"].questions["q3"].tests if t.cell == "q3_layer_norm"]
    assert sum(t.score for t in layer_norm) == 3 and graded["ln-unbiased-variance"].questions["q3"].score == 18
    assert [t.message for t in layer_norm if not t.passed] == [
        "the LN layer normalizes per sample, over (C, H, W), but it uses the unbiased variance, dividing by n - 1 = "
        "239 (as torch's var and std do by default, and numpy's with ddof=1), where normalization divides by n = 240 "
        "[a slip (the unbiased variance): 2 point(s) off q3, once]"]


def test_a_shortcut_without_num_groups_loses_only_its_gn_case(graded):
    lost = [t.name for t in graded["shortcut-drops-num-groups"].questions["q3"].tests if not t.passed]
    assert lost == ["test_is_a_strided_1x1_convolution_without_bias_then_the_chosen_norm[8to16-stride2-GN]"]


def test_an_answer_cell_that_does_not_compile_is_named_once_with_its_line(graded):
    result = graded["syntax-errors"]
    assert result.questions["q1"].score == 20 and result.questions["q2"].score == 20
    failed = [t for q in ("q3", "q4", "q5") for t in result.questions[q].tests if not t.passed]
    assert {t.cell for t in failed} == {"q3_layer_norm", "q3_instance_norm", "q3_group_norm", "q3_shortcut",
                                        "q4_no_norm", "q4_trains", "q5_cifar_stem"}
    said = {t.message for t in failed}
    assert not any("NameError" in m or "KeyError" in m for m in said), said
    first_lines = {m for m in said if not m.startswith("the same as ")}
    for name, cell in (("make_norm", "q3_make_norm"), ("make_shortcut", "q3_make_shortcut"),
                       ("make_no_norm", "q4_make_no_norm"), ("make_cifar_stem", "q5_make_cifar_stem")):
        assert any(re.search(rf"{name} is not defined: its cell, {cell}, stopped with SyntaxError at line \d+", m)
                   for m in first_lines), first_lines
