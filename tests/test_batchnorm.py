"""Public checks for Q1 (batchnorm_forward) and Q2 (batchnorm_backward).

They give quick feedback; the grader runs more checks. Each failure says what to look at. Q2 judges the backward
against your own forward: a slip in the forward (the unbiased variance, say) fails Q1's tests, not Q2's, as long as
the backward is right for what the forward computed.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from batchnormalization import batchnorm_backward, batchnorm_forward
from normlab.gradcheck import eval_numerical_gradient_array

N, D = 200, 3


def batch(seed, n=N, d=D, scale=5.0, shift=12.0):
    return scale * np.random.default_rng(seed).standard_normal((n, d)) + shift


def describe(values):
    return "[" + ", ".join(f"{v:.4g}" for v in np.ravel(values)) + "]"


def test_q1_train_mode_gives_zero_mean_unit_std_per_feature():
    x = batch(0)
    out, _ = batchnorm_forward(x, np.ones(D), np.zeros(D), {"mode": "train"})
    assert out.shape == x.shape, f"out has shape {out.shape}; it should have the shape of x, {x.shape}"
    assert np.allclose(out.mean(axis=0), 0, atol=1e-7), (
        f"with gamma=1, beta=0 each feature should have mean 0 after BN; got means {describe(out.mean(axis=0))}. "
        "Subtract the mean over the batch axis (axis=0)."
    )
    assert np.allclose(out.std(axis=0), 1, atol=1e-4), (
        f"with gamma=1, beta=0 each feature should have std 1 after BN; got stds {describe(out.std(axis=0))}. "
        "Divide by sqrt(var + eps) with the variance over the batch axis (axis=0)."
    )


def test_q1_train_mode_applies_gamma_and_beta():
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([11.0, 12.0, 13.0])
    out, _ = batchnorm_forward(batch(1), gamma, beta, {"mode": "train"})
    assert np.allclose(out.mean(axis=0), beta, atol=1e-6), (
        f"each feature's mean after BN should equal beta {describe(beta)}; got {describe(out.mean(axis=0))}"
    )
    assert np.allclose(out.std(axis=0), gamma, atol=1e-4), (
        f"each feature's std after BN should equal gamma {describe(gamma)}; got {describe(out.std(axis=0))}"
    )


def test_q1_train_mode_uses_the_biased_variance_and_eps():
    x = np.array([[1.0], [3.0]])
    out, _ = batchnorm_forward(x, np.ones(1), np.zeros(1), {"mode": "train", "eps": 1.0})
    expected = np.array([[-1.0], [1.0]]) / np.sqrt(2.0)
    assert np.allclose(out, expected), (
        f"for x=[1, 3] with eps=1 the output should be [-0.7071, 0.7071]; got {describe(out)}. "
        "Use the biased variance (np.var, divide by N) and add eps inside the square root."
    )


def test_q1_running_statistics_start_at_zero_and_are_written_back():
    x = batch(2)
    bn_param = {"mode": "train"}
    batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
    for key, batch_stat in (("running_mean", x.mean(axis=0)), ("running_var", x.var(axis=0))):
        assert key in bn_param, f"bn_param['{key}'] was not written back after a train step"
        assert np.allclose(bn_param[key], 0.1 * batch_stat), (
            f"starting from zeros with momentum 0.9, one train step should give {key} = 0.1 * batch statistic "
            f"= {describe(0.1 * batch_stat)}; got {describe(bn_param[key])}"
        )


def test_q1_running_statistics_move_toward_batch_statistics_over_steps():
    bn_param = {"mode": "train", "momentum": 0.9}
    previous_var_gap = None
    for step in range(60):
        batchnorm_forward(batch(100 + step), np.ones(D), np.zeros(D), bn_param)
        var_gap = np.abs(bn_param["running_var"] - 25.0).max()
        if previous_var_gap is not None and step < 10:
            assert var_gap < previous_var_gap, (
                "running_var did not move toward the batch variance after a train step "
                f"(step {step}: distance {var_gap:.3g}, before {previous_var_gap:.3g})"
            )
        previous_var_gap = var_gap
    assert np.allclose(bn_param["running_mean"], 12.0, rtol=0.05), (
        f"after 60 train steps on batches with mean 12 running_mean should be near 12; got "
        f"{describe(bn_param['running_mean'])}"
    )
    assert np.allclose(bn_param["running_var"], 25.0, rtol=0.2), (
        f"after 60 train steps on batches with variance 25 running_var should be near 25; got "
        f"{describe(bn_param['running_var'])}"
    )


def test_q1_test_mode_uses_running_statistics_and_leaves_them_alone():
    running_mean, running_var = np.array([12.0, 0.0, -3.0]), np.array([25.0, 1.0, 4.0])
    bn_param = {"mode": "test", "running_mean": running_mean.copy(), "running_var": running_var.copy()}
    x = batch(3, n=4)
    out, _ = batchnorm_forward(x, np.full(D, 2.0), np.full(D, 0.5), bn_param)
    expected = 2.0 * (x - running_mean) / np.sqrt(running_var + 1e-5) + 0.5
    assert np.allclose(out, expected), (
        "in test mode normalize with bn_param's running_mean and running_var, not with the batch statistics"
    )
    assert np.array_equal(bn_param["running_mean"], running_mean) and np.array_equal(bn_param["running_var"],
                                                                                         running_var), (
        "test mode must not change the running statistics"
    )
    single, _ = batchnorm_forward(x[:1], np.full(D, 2.0), np.full(D, 0.5), bn_param)
    assert np.allclose(single, out[:1]), "in test mode each sample's output must not depend on the rest of the batch"


def test_q1_only_train_and_test_modes_are_accepted():
    x = batch(4)
    bn_param = {"mode": "train"}
    batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
    bn_param["mode"] = "test"
    batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)
    bn_param["mode"] = "validate"
    with pytest.raises(ValueError):
        batchnorm_forward(x, np.ones(D), np.zeros(D), bn_param)


def test_q1_forward_leaves_x_unchanged():
    x = batch(5)
    original = x.copy()
    batchnorm_forward(x, np.ones(D), np.zeros(D), {"mode": "train"})
    assert np.array_equal(x, original), "batchnorm_forward changed its input x in place; work on new arrays instead"


GRADIENT_NAMES = ("dx", "dgamma", "dbeta")
GRADIENT_SHAPES = ((4, 5), (16, 3), (2, 3))  # (N, D): CS231n's, a larger batch, and two samples
GRADIENT_TOLERANCE = 1e-7  # error_for_its_size; a right backward lands near 1e-10 on these inputs
# A train-mode output within this of batch normalization's, relative to its size, is batch normalization with a
# slip (Q1's to fix): Q2 judges the backward against it. The grader draws the line at the same place.
BATCH_NORM_WITH_A_SLIP = 0.25
# Q1's slips divide each feature by more than its std: sqrt(N / (N - 1)) times more for the unbiased variance, a
# little more for eps outside the square root or a larger eps. A forward that divides by a denominator in this band
# is batch normalization with a slip.
SLIP_ROOM = 0.1


def gradient_case(n, d, seed=6):
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal((n, d)) + 12
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    dout = rng.standard_normal((n, d))
    return x, gamma, beta, dout


def batch_norm_with_autograd(x, gamma, beta, dout, eps):
    """(out, {gradient name: values}) of train-mode batch normalization computed by torch (F.batch_norm and
    autograd, in float64), with an eps per feature: an independent oracle."""
    inputs = [torch.from_numpy(np.array(value, dtype=np.float64)).requires_grad_() for value in (x, gamma, beta)]
    x_in, gamma_in, beta_in = inputs
    out = torch.cat([F.batch_norm(x_in[:, [f]], None, None, gamma_in[[f]], beta_in[[f]], training=True,
                                  eps=float(feature_eps)) for f, feature_eps in enumerate(eps)], dim=1)
    out.backward(torch.from_numpy(np.array(dout, dtype=np.float64)))
    return out.detach().numpy(), {name: value.grad.numpy() for name, value in zip(GRADIENT_NAMES, inputs)}


def own_denominators(out, x, gamma, beta):
    """Per feature, what a train-mode output divided x's centred values by: D with (out - beta) / gamma as close to
    (x - mean) / D as can be (least squares)."""
    normalized, centred = (out - beta) / gamma, x - x.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(centred ** 2, axis=0) / np.sum(normalized * centred, axis=0)


def right_backwards(x, gamma, beta, dout, out):
    """[{gradient name: values}] that a right backward may return: batch normalization's (eps = 1e-5) and, where
    the forward that gave out is batch normalization with a slip, batch normalization's backward fed with that
    forward's own denominators. That is what a backward right for batch normalization computes from the cache of
    a forward with a slip, so the slip is charged in Q1 alone."""
    n = len(x)
    right = [batch_norm_with_autograd(x, gamma, beta, dout, np.full(x.shape[1], 1e-5))[1]]
    denominators, std = own_denominators(out, x, gamma, beta), x.std(axis=0)
    normalized_with_them = np.allclose((out - beta) / gamma, (x - x.mean(axis=0)) / denominators, rtol=1e-9,
                                       atol=1e-9)
    in_band = np.all((denominators >= std) & (denominators <= np.sqrt(n / (n - 1)) * (1 + SLIP_ROOM) * std))
    if normalized_with_them and in_band:  # as eps per feature, batch normalization divides by sqrt(var + eps)
        right.append(batch_norm_with_autograd(x, gamma, beta, dout, denominators ** 2 - std ** 2)[1])
    return right


def error_for_its_size(actual, expected):
    """The largest difference between two gradients, relative to the largest value of the expected one (or to 1,
    if that is smaller): unlike the relative error of each value, not fooled by a gradient that is 0 up to
    rounding. Infinite where actual is not finite everywhere."""
    if not np.all(np.isfinite(actual)):
        return np.inf
    return float(np.max(np.abs(actual - expected)) / max(1.0, np.max(np.abs(expected))))


def numerical_gradient_of_forward(name, x, gamma, beta, dout):
    def forward(x=x, gamma=gamma, beta=beta):
        return batchnorm_forward(x.copy(), gamma, beta, {"mode": "train"})[0]

    inputs = {"dx": (lambda v: forward(x=v), x), "dgamma": (lambda v: forward(gamma=v), gamma),
              "dbeta": (lambda v: forward(beta=v), beta)}
    function, at = inputs[name]
    return eval_numerical_gradient_array(function, at, dout)


@pytest.mark.parametrize("name", GRADIENT_NAMES)
def test_q2_backward_is_the_gradient_of_your_forward(name):
    hints = {
        "dx": "remember the paths through the batch mean and the batch variance, both of which depend on x",
        "dgamma": "dgamma sums dout times the normalized input over the batch",
        "dbeta": "dbeta sums dout over the batch",
    }
    for number, (n, d) in enumerate(GRADIENT_SHAPES):
        x, gamma, beta, dout = gradient_case(n, d)
        out, cache = batchnorm_forward(x.copy(), gamma, beta, {"mode": "train"})
        if number == 0:  # as the grader does, on CS231n's case: with two samples a slip moves the output further
            expected, _ = batch_norm_with_autograd(x, gamma, beta, dout, np.full(d, 1e-5))
            worst, size = np.max(np.abs(out - expected)), np.max(np.abs(expected))
            assert worst < BATCH_NORM_WITH_A_SLIP * max(1.0, size), (
                f"Q2 is checked against your train-mode forward, which is not batch normalization: its output is off "
                f"by up to {worst:.3g} where batch normalization's reaches {size:.3g}. Fix Q1 first."
            )
        analytic = dict(zip(GRADIENT_NAMES, batchnorm_backward(dout, cache)))[name]
        numerical = numerical_gradient_of_forward(name, x, gamma, beta, dout)
        assert np.shape(analytic) == numerical.shape, (
            f"{name} has shape {np.shape(analytic)}; expected {numerical.shape}")
        accepted = [numerical] + [right[name] for right in right_backwards(x, gamma, beta, dout, out)]
        if min(error_for_its_size(analytic, gradient) for gradient in accepted) >= GRADIENT_TOLERANCE:
            worst, size = np.max(np.abs(analytic - numerical)), np.max(np.abs(numerical))
            raise AssertionError(
                f"{name} differs from the numerical gradient of your forward for x of shape {x.shape}: off by up to "
                f"{worst:.2e} where the gradient reaches {size:.3g}, and at most {GRADIENT_TOLERANCE:g} of its size "
                f"(or of 1) is allowed; {hints[name]}")
