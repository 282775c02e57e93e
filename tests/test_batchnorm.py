"""Public checks for Q1 (batchnorm_forward) and Q2 (batchnorm_backward).

They give quick feedback; the grader runs more checks. Each failure says what to look at.
"""
import numpy as np
import pytest

from batchnormalization import batchnorm_backward, batchnorm_forward
from normlab.gradcheck import eval_numerical_gradient_array, rel_error

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


def gradient_case(seed):
    rng = np.random.default_rng(seed)
    x = 5 * rng.standard_normal((4, 5)) + 12
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    return x, gamma, beta, dout


@pytest.mark.parametrize("name", ["dx", "dgamma", "dbeta"])
def test_q2_backward_matches_numerical_gradient(name):
    x, gamma, beta, dout = gradient_case(6)

    def forward(x=x, gamma=gamma, beta=beta):
        return batchnorm_forward(x, gamma, beta, {"mode": "train"})[0]

    numerical = {
        "dx": eval_numerical_gradient_array(lambda v: forward(x=v), x, dout),
        "dgamma": eval_numerical_gradient_array(lambda v: forward(gamma=v), gamma, dout),
        "dbeta": eval_numerical_gradient_array(lambda v: forward(beta=v), beta, dout),
    }[name]
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    analytic = dict(zip(["dx", "dgamma", "dbeta"], batchnorm_backward(dout, cache)))[name]
    assert np.shape(analytic) == numerical.shape, f"{name} has shape {np.shape(analytic)}; expected {numerical.shape}"
    error = rel_error(analytic, numerical)
    hints = {
        "dx": "remember the paths through the batch mean and the batch variance, both of which depend on x",
        "dgamma": "dgamma sums dout times the normalized input over the batch",
        "dbeta": "dbeta sums dout over the batch",
    }
    assert error < 1e-7, (
        f"{name} differs from the numerical gradient: relative error {error:.2e}, expected below 1e-7; {hints[name]}"
    )
