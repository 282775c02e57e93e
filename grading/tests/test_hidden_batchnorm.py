"""The hidden Q1/Q2 suites as a careful TA grades batchnormalization.py: a slip (the unbiased variance or std, eps
outside the square root, no eps, momentum swapped) is named and charged once in Q1, assignment.SLIP_SHARE of its
points, however many checks reveal it; two slips are charged once each; the textbook backward, fed by such a forward,
is not charged again on Q2; real mistakes still lose points on their own question; and an output that is not batch
normalization earns nothing for its other properties.

Every student runs behind the real sandboxed child, all in one process (hidden_suite_runner.py).
"""
import json
import re

import pytest

from grading.assignment import PYFILE
from grading.settings import REPO

from hidden_suite_runner import points_and_messages

# {student: {cell: (points, [failure messages])}}
Graded = dict[str, dict[str, tuple[float, list[str]]]]
SOURCE = (REPO / PYFILE).read_text()
TRAIN_DENOMINATOR = "inv_std = 1.0 / np.sqrt(batch_var + eps)"
TEST_DENOMINATOR = "/ np.sqrt(running_var + eps) + beta"


def edited(*changes: tuple[str, str]) -> str:
    text = SOURCE
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


# CS231n's staged way: a forward that keeps every intermediate, a backward through the computational graph
STAGED_FORWARD = """
        sample_mean = x.mean(axis=0)
        sample_var = ((x - sample_mean) ** 2).mean(axis=0)
        x_hat = (x - sample_mean) * (sample_var + eps) ** -0.5
        out = gamma * x_hat + beta
        running_mean = momentum * running_mean + (1 - momentum) * sample_mean
        running_var = momentum * running_var + (1 - momentum) * sample_var
        cache = (x, x_hat, sample_mean, sample_var, gamma, eps)
"""
STAGED_BACKWARD = """
    x, x_hat, sample_mean, sample_var, gamma, eps = cache
    n = x.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - sample_mean) * -0.5 * (sample_var + eps) ** -1.5, axis=0)
    dmean = np.sum(-dx_hat / np.sqrt(sample_var + eps), axis=0) + dvar * np.mean(-2 * (x - sample_mean), axis=0)
    dx = dx_hat / np.sqrt(sample_var + eps) + dvar * 2 * (x - sample_mean) / n + dmean / n
"""


def with_regions(forward_train: str, backward: str) -> str:
    """SOURCE with its train-mode and backward solutions replaced (the test-mode one kept)."""
    regions = re.findall(r"### BEGIN SOLUTION\n(.*?)[ ]*### END SOLUTION", SOURCE, re.S)
    return SOURCE.replace(regions[0], forward_train.lstrip("\n")).replace(regions[2], backward.lstrip("\n"))


STUDENTS = {  # name: (batchnormalization.py, Q1 points, Q2 points, words of Q1's messages)
    "reference": (SOURCE, 20, 20, []),
    "staged-cs231n-style": (with_regions(STAGED_FORWARD, STAGED_BACKWARD), 20, 20, []),
    # the ddof=1 bug: normalization and running_var both use the unbiased variance
    "unbiased-variance": (edited(("batch_var = x.var(axis=0)", "batch_var = x.var(axis=0, ddof=1)")), 18, 20,
                          ["train mode normalizes each feature with the batch variance, but it uses the unbiased "
                           "variance, dividing by n - 1", "2 point(s) off q1, once",
                           "updated with the unbiased batch variance (N - 1, as torch.nn.BatchNorm1d does)",
                           "the slip (the unbiased variance) is charged once, in "
                           "test_divides_by_the_square_root_of_the_biased_variance_plus_eps[train]"]),
    # torch's convention for running_var alone: one slip, said once where it is charged
    "running-var-unbiased": (edited(("running_var = momentum * running_var + (1 - momentum) * batch_var",
                                     "running_var = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)")),
                             18, 20, ["running_var is updated with the unbiased batch variance",
                                      "2 point(s) off q1, once; it also shows in "
                                      "test_running_statistics_over_several_steps, "
                                      "test_running_statistics_default_to_zeros_in_the_input_dtype"]),
    # the demo's common_mistakes: two slips, each charged once
    "two-slips": (edited(("running_var = momentum * running_var + (1 - momentum) * batch_var",
                          "running_var = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)"),
                         (TEST_DENOMINATOR, "/ (np.sqrt(running_var) + eps) + beta")), 16, 20,
                  ["a slip (eps outside the square root)", "a slip (the unbiased variance)"]),
    "unbiased-std": (edited((TRAIN_DENOMINATOR, "inv_std = 1.0 / (x.std(axis=0, ddof=1) + eps)")), 18, 20,
                     ["unbiased variance, dividing by n - 1 = 15", "eps = 1e-05 outside the square root"]),
    "eps-outside-sqrt": (edited((TRAIN_DENOMINATOR, "inv_std = 1.0 / (np.sqrt(batch_var) + eps)"),
                                (TEST_DENOMINATOR, "/ (np.sqrt(running_var) + eps) + beta")), 18, 20,
                         ["train mode normalizes each feature with the batch variance, but it adds eps = 1e-05 "
                          "outside the square root", "test mode normalizes each feature with running_var, but it "
                          "adds eps = 1e-05 outside the square root"]),
    "no-eps": (edited((TRAIN_DENOMINATOR, "inv_std = 1.0 / np.sqrt(batch_var)"),
                      (TEST_DENOMINATOR, "/ np.sqrt(running_var) + beta")), 18, 20,
               ["no eps: a feature whose values are all equal divides by zero",
                "no eps: a feature whose running_var is 0 divides by zero"]),
    "momentum-swapped": (edited(("momentum * running_mean + (1 - momentum) * batch_mean",
                                 "(1 - momentum) * running_mean + momentum * batch_mean")), 18, 20,
                         ["momentum and 1 - momentum are swapped"]),
    # a wrong idea beside a slip: the wrong idea (no test mode at all) still loses its own checks
    "slip-and-no-test-mode": (edited(("running_var = momentum * running_var + (1 - momentum) * batch_var",
                                      "running_var = momentum * running_var + (1 - momentum) * x.var(axis=0, ddof=1)"),
                                     ("out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
                                      "out = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta")),
                              11.5, 20, ["a slip (the unbiased variance)", "the test-mode output is not batch "
                                                                        "normalization"]),
    # real mistakes keep costing their own question
    "dx-over-n-minus-1": (edited(("inv_std / batch_size", "inv_std / (batch_size - 1)")), 20, 12, []),
    # attacks on the properties now judged on their own: an output that is not batch normalization earns none
    "output-scaled-by-a-constant": (edited(("out = gamma * x_hat + beta", "out = gamma * 1.3 * x_hat + beta"),
                                           ("out = gamma * (x - running_mean)", "out = 1.3 * gamma * (x - running_mean)")),
                                    5, None, ["the train-mode output is not batch normalization"]),
    "returns-its-input": (edited(("out = gamma * x_hat + beta", "out = x.copy()"),
                                 ("out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta",
                                  "out = x.copy()")), 5, None, ["the train-mode output is not batch normalization"]),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Graded:
    """{student: {cell: (points, [failure messages])}}"""
    spec = tmp_path_factory.mktemp("batchnorm") / "students.json"
    spec.write_text(json.dumps({name: {"pyfile": source, "cells": ["q1_forward", "q2_backward"]}
                                for name, (source, _, _, _) in STUDENTS.items()}))
    return points_and_messages(spec)


@pytest.mark.parametrize("name", STUDENTS)
def test_each_student_scores_as_a_careful_ta_would_and_is_told_why(graded: Graded, name: str) -> None:
    _, q1, q2, words = STUDENTS[name]
    assert round(graded[name]["q1_forward"][0], 6) == q1, graded[name]["q1_forward"][1]
    if q2 is not None:
        assert round(graded[name]["q2_backward"][0], 6) == q2, graded[name]["q2_backward"][1]
    said = "\n".join(graded[name]["q1_forward"][1])
    assert all(re.search(re.escape(w), said) for w in words), said


def test_a_backward_that_is_wrong_for_every_forward_still_fails_with_the_quantity_that_differs(graded: Graded) -> None:
    messages = graded["dx-over-n-minus-1"]["q2_backward"][1]
    assert messages[0].startswith("dx differs from the numerical gradient of your forward")
    assert any(re.match(r"dx for x of shape \(4, 5\) is off by up to \S+ where its values reach", m) for m in messages)
