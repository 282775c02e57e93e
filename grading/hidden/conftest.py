"""Fixtures and oracles of the hidden Q1/Q2 suite. Never released.

`student` is the student's batchnormalization.py behind a sandbox (grading.pyfile.StudentModule): its calls
return float64 arrays, and everything is compared here, in the grader. The oracle is PyTorch in float64
(F.batch_norm and autograd), independent of the course's reference solution.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grading.pyfile import active_student

EPS = 1e-5


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): what the test is worth")


@pytest.fixture
def student():
    return active_student()


def reference_forward(x, gamma, beta, mode, running_mean, running_var, eps=EPS, momentum=0.9):
    """(out, new running_mean, new running_var) by the course's definition, computed with torch in float64."""
    tx, tmean, tvar = (torch.tensor(a, dtype=torch.float64) for a in (x, running_mean, running_var))
    out = F.batch_norm(tx, tmean.clone(), tvar.clone(), torch.tensor(gamma, dtype=torch.float64),
                       torch.tensor(beta, dtype=torch.float64), training=mode == "train", eps=eps)
    if mode == "train":
        # The course keeps the biased batch variance in running_var (torch would keep the unbiased one).
        batch_mean, batch_var = tx.mean(dim=0), tx.var(dim=0, unbiased=False)
        tmean, tvar = momentum * tmean + (1 - momentum) * batch_mean, momentum * tvar + (1 - momentum) * batch_var
    return out.numpy(), tmean.numpy(), tvar.numpy()


def oracle_gradients(x, gamma, beta, dout, eps=EPS):
    """(dx, dgamma, dbeta) of train-mode batch normalization, by torch autograd in float64."""
    tx, tgamma, tbeta = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta))
    out = F.batch_norm(tx, None, None, tgamma, tbeta, training=True, eps=eps)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return tx.grad.numpy(), tgamma.grad.numpy(), tbeta.grad.numpy()


def case(seed, n, d, scale=5.0, shift=12.0):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal((n, d)) + shift, rng.standard_normal(d), rng.standard_normal(d),
            rng.standard_normal((n, d)))


def largest_error(actual, expected):
    """Largest absolute difference relative to the size of the expected values (at least 1)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return np.inf
    return float(np.max(np.abs(actual - expected), initial=0.0) / max(1.0, float(np.max(np.abs(expected),
                                                                                    initial=0.0))))
