"""Oracles of the hidden Q1/Q2 suite, and what every hidden suite shares. Never released.

The fixtures come from the plugin that runs the suite (grading/pipeline/hidden_suites.py): `student` is the
student's batchnormalization.py behind a sandboxed child (isolation/student_module.py) and `kernel` the notebook's
sandboxed kernel (hidden_suites.KernelProbes). Their calls return float64 arrays; everything is compared here, in the
grader. The oracle is PyTorch in float64 (F.batch_norm and autograd), independent of the course's reference.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grading.failures import StudentFailure
from slips import FORMS, Form, denominators, follows, recognise

if TYPE_CHECKING:
    from grading.pipeline.hidden_suites import KernelProbes
    from grading.sandboxed.wire import Arrays, Meta

Gradients = tuple[np.ndarray, np.ndarray, np.ndarray]  # dx, dgamma, dbeta

EPS = 1e-5


class Replies:
    """Each distinct request to the kernel asked once per suite run: tests that judge different aspects of one
    answer share it, and a failure (StudentFailure) is remembered and raised again for each of them."""

    def __init__(self, kernel: KernelProbes) -> None:
        self.kernel = kernel
        self.cache: dict[tuple[str, str], tuple[Meta, Arrays] | StudentFailure] = {}

    def ask(self, op: str, args: dict[str, Any], **arrays: np.ndarray) -> tuple[Meta, Arrays]:
        key = (op, json.dumps(args, sort_keys=True))
        if key not in self.cache:
            try:
                self.cache[key] = self.kernel.call(op, args, **arrays)
            except StudentFailure as failure:
                self.cache[key] = failure
        answer = self.cache[key]
        if isinstance(answer, StudentFailure):
            raise answer
        return answer


@pytest.fixture(scope="session")
def replies(kernel: KernelProbes) -> Replies:
    return Replies(kernel)


def reference_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mode: str, running_mean: np.ndarray,
                      running_var: np.ndarray, eps: float = EPS,
                      momentum: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(out, new running_mean, new running_var) by the course's definition, computed with torch in float64."""
    tx, tmean, tvar = (torch.tensor(a, dtype=torch.float64) for a in (x, running_mean, running_var))
    out = F.batch_norm(tx, tmean.clone(), tvar.clone(), torch.tensor(gamma, dtype=torch.float64),
                       torch.tensor(beta, dtype=torch.float64), training=mode == "train", eps=eps)
    if mode == "train":
        # The course keeps the biased batch variance in running_var (torch would keep the unbiased one).
        batch_mean, batch_var = tx.mean(dim=0), tx.var(dim=0, unbiased=False)
        tmean, tvar = momentum * tmean + (1 - momentum) * batch_mean, momentum * tvar + (1 - momentum) * batch_var
    return out.numpy(), tmean.numpy(), tvar.numpy()


def oracle_gradients(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dout: np.ndarray,
                     eps: float = EPS) -> Gradients:
    """(dx, dgamma, dbeta) of train-mode batch normalization, by torch autograd in float64."""
    tx, tgamma, tbeta = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(tx, None, None, tgamma, tbeta, training=True, eps=eps)
    return gradients(out, dout, tx, tgamma, tbeta)


def gradients(out: torch.Tensor, dout: np.ndarray, tx: torch.Tensor, tgamma: torch.Tensor,
              tbeta: torch.Tensor) -> Gradients:
    """The gradients of sum(out * dout) with respect to tx, tgamma and tbeta, by torch autograd."""
    dx, dgamma, dbeta = torch.autograd.grad(out, (tx, tgamma, tbeta), torch.tensor(dout, dtype=torch.float64))
    return dx.numpy(), dgamma.numpy(), dbeta.numpy()


def feature_rows(out: Any, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                 mean: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(normalized, centred), one row per feature: out with β and γ undone, and x centred on its batch mean (on the
    running mean in test mode)."""
    out, x = np.asarray(out, dtype=np.float64), np.asarray(x, dtype=np.float64)
    centre = x.mean(axis=0) if mean is None else mean
    return ((out - beta) / gamma).T, (x - centre).T


def batch_norm_up_to_a_slip(out: Any, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, tolerance: float,
                            mean: np.ndarray | None = None, var: np.ndarray | None = None) -> bool:
    """Whether out is batch normalization of x, then γ and β, whatever slip it makes in the denominator
    (slips.follows, which leaves features of zero variance to the check of eps); in test mode, with the running
    mean and var."""
    if out is None or np.shape(out) != np.shape(x):
        return False
    normalized, centred = feature_rows(out, x, gamma, beta, mean)
    return follows(normalized, centred, denominators(normalized, centred), tolerance,
                   spread=None if var is None else np.sqrt(var))


def recognised_forward(out: Any, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                       precision: float = 1e-9) -> Form | None:
    """The slips.Form of a train-mode output that is batch normalization up to a slip, else None."""
    if not batch_norm_up_to_a_slip(out, x, gamma, beta, precision):
        return None
    normalized, centred = feature_rows(out, x, gamma, beta)
    return recognise(denominators(normalized, centred), np.mean(centred ** 2, axis=1), len(x), precision)


def form_gradients(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, dout: np.ndarray, form: Form) -> Gradients:
    """(dx, dgamma, dbeta) of train-mode batch normalization computed as form (a slips.Form), by torch autograd in
    float64: the derivative of a forward with that slip."""
    tx, tgamma, tbeta = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta))
    centred = tx - tx.mean(dim=0)
    variance = (centred ** 2).mean(dim=0)
    denominator = FORMS[form.variance, form.eps_goes](variance, len(x), form.eps)
    return gradients(tgamma * centred / denominator + tbeta, dout, tx, tgamma, tbeta)


def formula_with_own_statistics(out: Any, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                dout: np.ndarray) -> Gradients:
    """(dx, dgamma, dbeta) by batch normalization's gradient formula, fed with the normalized values and
    denominators of the student's own forward: what a right backward computes from a forward with a slip."""
    normalized, centred = (rows.T for rows in feature_rows(out, x, gamma, beta))
    denominator = denominators(normalized.T, centred.T)
    scaled = dout * gamma
    dx = (scaled - scaled.mean(axis=0) - normalized * (scaled * normalized).mean(axis=0)) / denominator
    return dx, (dout * normalized).sum(axis=0), dout.sum(axis=0)


def case(seed: int, n: int, d: int, scale: float = 5.0,
         shift: float = 12.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, gamma, beta, dout) of a batch of n samples of d features, drawn from seed."""
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n, d)) + shift, rng.standard_normal(d), rng.standard_normal(d),
            rng.standard_normal((n, d)))


def largest_error(actual: Any, expected: Any) -> float:
    """Largest absolute difference relative to the size of the expected values (at least 1); inf for a missing
    value, another shape, or NaN."""
    if actual is None:
        return np.inf
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return np.inf
    return float(np.max(np.abs(actual - expected), initial=0.0) / max(1.0, float(np.max(np.abs(expected),
                                                                                    initial=0.0))))


def assert_close(name: str, actual: Any, expected: Any, tolerance: float, why: str = "") -> None:
    """Fail, saying why and what differs (differs), unless actual is within tolerance of expected."""
    assert largest_error(actual, expected) < tolerance, why + differs(name, actual, expected, tolerance)


def differs(name: str, actual: Any, expected: Any, tolerance: float) -> str:
    """What is wrong with actual, for a student: the quantity, how far off relative to its size, and the limit."""
    if actual is None:
        return f"{name} was not returned"
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return f"{name} has shape {actual.shape}, expected {expected.shape}"
    if not np.all(np.isfinite(actual)):
        return f"{name} contains NaN or infinite values"
    size = float(np.max(np.abs(expected), initial=0.0))
    worst = float(np.max(np.abs(actual - expected), initial=0.0))
    return (f"{name} is off by up to {worst:.3g} where its values reach {size:.3g} ({worst / max(size, 1e-300):.2g} of "
            f"its size; at most {tolerance:g} is allowed)")
