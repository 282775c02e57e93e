"""The reference batchnormalization.py agrees with PyTorch (F.batch_norm and autograd) in float64 to about 1e-12."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchnormalization import batchnorm_backward, batchnorm_forward

TOLERANCE = 1e-12


def max_relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


@pytest.mark.parametrize("shape,seed", [((4, 5), 0), ((64, 3), 1), ((2, 1), 2), ((257, 31), 3)])
def test_train_forward_running_stats_and_gradients_match_torch(shape, seed):
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal(shape) + 12
    gamma, beta, dout = rng.standard_normal(shape[1]), rng.standard_normal(shape[1]), rng.standard_normal(shape)
    running_mean, running_var = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    bn_param = {"mode": "train", "running_mean": running_mean.copy(), "running_var": running_var.copy()}

    out, cache = batchnorm_forward(x, gamma, beta, bn_param)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)

    tx, tgamma, tbeta = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    torch_mean, torch_var = torch.tensor(running_mean), torch.tensor(running_var)
    # torch's momentum is the weight of the new statistic (ours is the weight of the old one), and torch feeds the
    # unbiased batch variance into running_var where the course's definition uses the biased one.
    tout = F.batch_norm(tx, torch_mean, torch_var, tgamma, tbeta, training=True, momentum=0.1, eps=1e-5)
    tout.backward(torch.tensor(dout))
    n = shape[0]
    unbiased_to_biased = (n - 1) / n
    expected_running_var = 0.9 * running_var + 0.1 * x.var(axis=0, ddof=1) * unbiased_to_biased

    assert max_relative(out, tout.detach().numpy()) < TOLERANCE
    assert max_relative(bn_param["running_mean"], torch_mean.numpy()) < TOLERANCE
    assert max_relative(bn_param["running_var"], expected_running_var) < TOLERANCE
    assert max_relative(dx, tx.grad.numpy()) < TOLERANCE
    assert max_relative(dgamma, tgamma.grad.numpy()) < TOLERANCE
    assert max_relative(dbeta, tbeta.grad.numpy()) < TOLERANCE


def test_test_mode_matches_torch():
    rng = np.random.default_rng(4)
    x = 3 * rng.standard_normal((10, 6)) - 2
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    running_mean, running_var = rng.standard_normal(6), rng.random(6) + 0.1
    bn_param = {"mode": "test", "running_mean": running_mean, "running_var": running_var}

    out, _ = batchnorm_forward(x, gamma, beta, bn_param)
    expected = F.batch_norm(torch.tensor(x), torch.tensor(running_mean), torch.tensor(running_var),
                            torch.tensor(gamma), torch.tensor(beta), training=False, eps=1e-5)

    assert max_relative(out, expected.numpy()) < TOLERANCE
