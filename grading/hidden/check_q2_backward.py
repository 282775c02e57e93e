"""Hidden checks of Q2, batchnorm_backward (20 points). Never released.

Two kinds of check, each scored for dx, dgamma and dbeta separately:
- the student's backward against centred differences of the student's own forward (h = 1e-5, float64), as in
  CS231n, with CS231n's rel_error below NUMERICAL = 1e-6 (correct code lands near 1e-9 on these inputs). This
  credits a backward that is right for the forward the student wrote, so it counts only where that forward is
  batch normalization up to a slip (eps outside the square root, N - 1 in the variance): within
  BATCH_NORM_LIKE = 0.25 of the reference output, relative to its size. A degenerate forward (a constant, the
  input itself) earns nothing here, whatever its backward. A backward that is one of the right ones below passes
  this check too;
- the student's backward against torch autograd in float64 on several shapes and seeds, below ORACLE = 1e-9
  relative to the size of the gradient (conftest.largest_error); on features with variance 1e-6, where
  cancellation costs digits, below SMALL_VARIANCE = 1e-6. A slip in the forward (the unbiased variance, eps outside
  the square root) is Q1's, not Q2's: where the student's forward is batch normalization with a slip, the right
  backwards (right_backwards) also include the exact derivative of that forward (conftest.form_gradients) and
  batch normalization's gradient formula fed with that forward's own statistics
  (conftest.formula_with_own_statistics), which is what a right backward computes from that forward's cache.
A test's points are its function's total, shared by its parametrized cases.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from conftest import case, differs, form_gradients, formula_with_own_statistics, largest_error, oracle_gradients, \
    recognised_forward, reference_forward
from normlab.gradcheck import numerical_gradient_from_outputs, perturbations, rel_error

if TYPE_CHECKING:
    from grading.isolation.student_module import StudentModule
    from grading.sandboxed.wire import Arrays

NUMERICAL = 1e-6
BATCH_NORM_LIKE = 0.25
ORACLE = 1e-9
SMALL_VARIANCE = 1e-6
STEP = 1e-5
GRADIENTS = ("dx", "dgamma", "dbeta")


def student_gradients(student: StudentModule, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      dout: np.ndarray) -> Arrays:
    meta, reply = student.call("forward_backward", x=x, gamma=gamma, beta=beta, dout=dout)
    return reply


def right_backwards(reply: Arrays, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                    dout: np.ndarray) -> list[Arrays]:
    """[{gradient name: values}] that a right backward may give: batch normalization's; and, where the student's
    forward is batch normalization with a slip, that forward's own derivative and the gradient formula fed with its
    statistics."""
    accepted = [oracle_gradients(x, gamma, beta, dout)]
    form = recognised_forward(reply.get("out"), x, gamma, beta)
    if form is not None:
        accepted += [form_gradients(x, gamma, beta, dout, form),
                     formula_with_own_statistics(reply["out"], x, gamma, beta, dout)]
    return [dict(zip(GRADIENTS, gradients)) for gradients in accepted]


def assert_right(name: str, analytic: Any, accepted: list[Arrays], tolerance: float, what: str) -> None:
    assert min(largest_error(analytic, gradients[name]) for gradients in accepted) < tolerance, (
        differs(what, analytic, accepted[0][name], tolerance))


def numerical_gradient(student: StudentModule, name: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       dout: np.ndarray) -> np.ndarray:
    """Centred differences of sum(forward * dout) with respect to x, gamma or beta, from one batched call."""
    inputs = {"dx": x, "dgamma": gamma, "dbeta": beta}
    moved = perturbations(inputs[name], STEP)
    count = 2 * inputs[name].size
    batch = {key: np.repeat(value[None], count, axis=0) for key, value in (("x", x), ("gamma", gamma), ("beta", beta))}
    batch[{"dx": "x", "dgamma": "gamma", "dbeta": "beta"}[name]] = moved.reshape((count,) + inputs[name].shape)
    meta, reply = student.call("forward_many", x=batch["x"], gamma=batch["gamma"], beta=batch["beta"])
    outputs = reply["out"].reshape((inputs[name].size, 2) + x.shape)
    return numerical_gradient_from_outputs(outputs, dout, STEP).reshape(inputs[name].shape)


@pytest.mark.parametrize("name", GRADIENTS)
@pytest.mark.points(6)
def test_backward_matches_numerical_gradient_of_own_forward(student: StudentModule, name: str) -> None:
    x, gamma, beta, dout = case(0, 4, 5)
    reply = student_gradients(student, x, gamma, beta, dout)
    zeros = np.zeros(x.shape[1])
    expected_out, _, _ = reference_forward(x, gamma, beta, "train", zeros, zeros)
    assert largest_error(reply["out"], expected_out) < BATCH_NORM_LIKE, (
        "your train-mode forward is not batch normalization (" + differs("its output", reply["out"], expected_out,
                                                                         BATCH_NORM_LIKE)
        + "), so agreeing with its numerical gradient earns nothing")
    analytic = reply[name]
    if min(largest_error(analytic, right[name]) for right in right_backwards(reply, x, gamma, beta, dout)) < ORACLE:
        return  # a right backward for batch normalization, or for the slip its forward makes (charged in Q1)
    numerical = numerical_gradient(student, name, x, gamma, beta, dout)
    assert analytic.shape == numerical.shape, f"{name} has shape {analytic.shape}, expected {numerical.shape}"
    error = rel_error(analytic, numerical)
    assert error < NUMERICAL, f"{name} differs from the numerical gradient of your forward (rel_error {error:.2e})"


@pytest.mark.parametrize("name", GRADIENTS)
@pytest.mark.parametrize("seed,n,d", [(1, 4, 5), (2, 16, 3), (3, 64, 10)])
@pytest.mark.points(9)
def test_backward_matches_autograd(student: StudentModule, name: str, seed: int, n: int, d: int) -> None:
    x, gamma, beta, dout = case(seed, n, d)
    reply = student_gradients(student, x, gamma, beta, dout)
    assert_right(name, reply[name], right_backwards(reply, x, gamma, beta, dout), ORACLE,
                 f"{name} for x of shape {x.shape}")


@pytest.mark.parametrize("name", GRADIENTS)
@pytest.mark.points(3)
def test_backward_with_a_tiny_variance(student: StudentModule, name: str) -> None:
    rng = np.random.default_rng(4)
    x = 3.0 + 1e-3 * rng.standard_normal((30, 4))
    gamma, beta, dout = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal((30, 4))
    reply = student_gradients(student, x, gamma, beta, dout)
    assert_right(name, reply[name], right_backwards(reply, x, gamma, beta, dout), SMALL_VARIANCE,
                 f"{name} on features with a tiny variance")


@pytest.mark.parametrize("n,d", [(2, 3), (6, 1)])
@pytest.mark.points(2)
def test_backward_with_one_feature_and_two_samples(student: StudentModule, n: int, d: int) -> None:
    x, gamma, beta, dout = case(5 + n, n, d)
    reply = student_gradients(student, x, gamma, beta, dout)
    accepted = right_backwards(reply, x, gamma, beta, dout)
    for name in GRADIENTS:
        assert_right(name, reply[name], accepted, ORACLE, f"{name} for N={n}, D={d}")
