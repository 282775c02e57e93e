"""Hidden checks of Q1, batchnorm_forward (20 points). Never released.

Tolerances, relative to the size of the expected values (conftest.largest_error):
- FLOAT64 = 1e-9: float64 arithmetic in any correct order of operations lands far below it, while a wrong
  variance (N-1), eps outside the square root or a wrong momentum is off by 1e-4 or more on these inputs.
- FLOAT32 = 1e-4: float32 inputs carry about 7 significant digits.
- SMALL_VARIANCE = 1e-7: features with variance 1e-6 lose a few digits to cancellation; eps outside the square
  root is off by more than 0.5 there.
A test's points are its function's total, shared by its parametrized cases. Tests of properties (inputs left
alone, unknown modes rejected) first require a correct output, so a function that returns anything earns nothing.
"""
import numpy as np
import pytest

from conftest import EPS, assert_close, case, differs, largest_error, reference_forward

FLOAT64 = 1e-9
FLOAT32 = 1e-4
SMALL_VARIANCE = 1e-7


def train_step(student, x, gamma, beta, running_mean, running_var, **bn_param):
    meta, reply = student.call("forward", bn_param={"mode": "train", **bn_param}, x=x, gamma=gamma, beta=beta,
                               running_mean=running_mean, running_var=running_var)
    return reply


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,n,d", [(0, 4, 5), (1, 50, 3), (2, 200, 8)])
def test_train_forward_matches_the_reference(student, seed, n, d):
    x, gamma, beta, _ = case(seed, n, d)
    zeros = np.zeros(d)
    reply = train_step(student, x, gamma, beta, zeros, zeros)
    expected, _, _ = reference_forward(x, gamma, beta, "train", zeros, zeros)
    assert largest_error(reply["out"], expected) < FLOAT64, (
        differs(f"the train-mode output for x of shape {x.shape}", reply["out"], expected, FLOAT64))


@pytest.mark.points(2)
def test_one_train_step_updates_the_running_statistics(student):
    x, gamma, beta, _ = case(3, 20, 4)
    mean, var = np.random.default_rng(3).standard_normal(4), np.random.default_rng(4).random(4) + 0.5
    reply = train_step(student, x, gamma, beta, mean, var, momentum=0.8)
    _, expected_mean, expected_var = reference_forward(x, gamma, beta, "train", mean, var, momentum=0.8)
    assert "running_mean" in reply and "running_var" in reply, "bn_param's running statistics were not written back"
    assert_close("running_mean", reply["running_mean"], expected_mean, FLOAT64,
                 "running_mean should become momentum * running_mean + (1 - momentum) * batch mean: ")
    assert_close("running_var", reply["running_var"], expected_var, FLOAT64,
                 "running_var should become momentum * running_var + (1 - momentum) * biased batch variance: ")


@pytest.mark.points(2)
def test_running_statistics_over_several_steps(student):
    d = 6
    mean, var = np.zeros(d), np.zeros(d)
    expected_mean, expected_var = mean, var
    for step in range(6):
        x, gamma, beta, _ = case(10 + step, 32, d, scale=1.0 + step, shift=-3.0 + step)
        reply = train_step(student, x, gamma, beta, mean, var)
        _, expected_mean, expected_var = reference_forward(x, gamma, beta, "train", expected_mean, expected_var)
        mean, var = reply.get("running_mean"), reply.get("running_var")
        assert mean is not None and var is not None, "bn_param's running statistics were not written back"
    assert_close("running_mean", mean, expected_mean, FLOAT64, "after six train steps ")
    assert_close("running_var", var, expected_var, FLOAT64, "after six train steps ")


@pytest.mark.points(1)
def test_running_statistics_default_to_zeros_in_the_input_dtype(student):
    x, gamma, beta, _ = case(20, 16, 3)
    meta, reply = student.call("forward", dtype="float32", bn_param={"mode": "train"}, x=x, gamma=gamma, beta=beta)
    _, expected_mean, expected_var = reference_forward(x.astype(np.float32), gamma.astype(np.float32),
                                                       beta.astype(np.float32), "train", np.zeros(3), np.zeros(3))
    assert reply.get("running_mean", np.empty(0)).shape == (3,) and reply.get("running_var", np.empty(0)).shape == (3,), (
        "without running statistics in bn_param, they should start as zeros of shape (D,) and be written back")
    assert meta["dtypes"].get("running_mean") == "float32" and meta["dtypes"].get("running_var") == "float32", (
        f"for float32 inputs the running statistics should stay float32, not {meta['dtypes']}")
    assert_close("running_mean", reply["running_mean"], expected_mean, FLOAT32,
                 "starting from zeros, one train step should give running_mean = (1 - momentum) * batch mean: ")
    assert_close("running_var", reply["running_var"], expected_var, FLOAT32,
                 "starting from zeros, one train step should give running_var = (1 - momentum) * biased batch "
                 "variance: ")


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,n,d", [(30, 5, 4), (31, 1, 7)])
def test_test_forward_uses_the_running_statistics(student, seed, n, d):
    x, gamma, beta, _ = case(seed, n, d)
    rng = np.random.default_rng(seed)
    mean, var = 10 + rng.standard_normal(d), rng.random(d) * 20 + 1
    meta, reply = student.call("forward", bn_param={"mode": "test"}, x=x, gamma=gamma, beta=beta, running_mean=mean,
                               running_var=var)
    expected, _, _ = reference_forward(x, gamma, beta, "test", mean, var)
    assert largest_error(reply["out"], expected) < FLOAT64, (
        differs(f"the test-mode output for x of shape {x.shape}", reply["out"], expected, FLOAT64))
    assert largest_error(reply.get("running_mean"), mean) == 0 and largest_error(reply.get("running_var"), var) == 0, (
        "test mode must leave the running statistics as they are")


@pytest.mark.points(2)
def test_float32_inputs(student):
    x, gamma, beta, _ = case(40, 64, 5)
    zeros = np.zeros(5)
    meta, reply = student.call("forward", dtype="float32", bn_param={"mode": "train"}, x=x, gamma=gamma, beta=beta,
                               running_mean=zeros, running_var=zeros)
    x32, gamma32, beta32 = (a.astype(np.float32).astype(np.float64) for a in (x, gamma, beta))
    expected, _, _ = reference_forward(x32, gamma32, beta32, "train", zeros, zeros)
    assert meta["dtypes"]["out"] == "float32", f"float32 inputs should give a float32 output, not {meta['dtypes']['out']}"
    assert largest_error(reply["out"], expected) < FLOAT32, (
        differs("the output for float32 inputs", reply["out"], expected, FLOAT32))


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_small_variance_features(student, mode):
    rng = np.random.default_rng(50)
    x = 3.0 + 1e-3 * rng.standard_normal((40, 4))
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    mean, var = np.full(4, 3.0), np.full(4, 1e-6)
    meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta, running_mean=mean,
                               running_var=var)
    expected, _, _ = reference_forward(x, gamma, beta, mode, mean, var)
    assert largest_error(reply["out"], expected) < SMALL_VARIANCE, (
        differs(f"the {mode}-mode output on features with a tiny variance", reply["out"], expected, SMALL_VARIANCE)
        + f"; eps = {EPS:g} belongs inside the square root, sqrt(var + eps)")


@pytest.mark.points(2)
@pytest.mark.parametrize("n,d", [(7, 1), (2, 6)])
def test_one_feature_and_two_samples(student, n, d):
    x, gamma, beta, _ = case(60 + n, n, d)
    zeros = np.zeros(d)
    reply = train_step(student, x, gamma, beta, zeros, zeros)
    expected, expected_mean, expected_var = reference_forward(x, gamma, beta, "train", zeros, zeros)
    assert largest_error(reply["out"], expected) < FLOAT64, differs(f"the output for N={n}, D={d}", reply["out"],
                                                                    expected, FLOAT64)
    assert reply.get("running_mean", np.empty(0)).shape == (d,) and reply.get("running_var", np.empty(0)).shape == (d,), (
        f"for D={d} the running statistics should have shape ({d},)")
    assert largest_error(reply["running_var"], expected_var) < FLOAT64, (
        differs(f"running_var for N={n}, D={d}", reply["running_var"], expected_var, FLOAT64))


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_inputs_are_not_modified(student, mode):
    x, gamma, beta, _ = case(70, 10, 4)
    meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta,
                               running_mean=np.ones(4), running_var=np.ones(4))
    expected, _, _ = reference_forward(x, gamma, beta, mode, np.ones(4), np.ones(4))
    assert largest_error(reply["out"], expected) < FLOAT64, f"{mode}-mode output is wrong: fix that first"
    for name, original in (("x", x), ("gamma", gamma), ("beta", beta)):
        assert np.array_equal(reply[f"{name}_after"], original), f"{mode} mode changed its input {name} in place"


@pytest.mark.points(2)
def test_only_train_and_test_modes_are_accepted(student):
    x, gamma, beta, _ = case(80, 8, 3)
    for mode in ("train", "test"):
        meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta,
                                   running_mean=np.zeros(3), running_var=np.ones(3))
        expected, _, _ = reference_forward(x, gamma, beta, mode, np.zeros(3), np.ones(3))
        assert largest_error(reply["out"], expected) < FLOAT64, f"{mode}-mode output is wrong: fix that first"
    try:
        student.call("forward", bn_param={"mode": "eval"}, x=x, gamma=gamma, beta=beta)
    except Exception as error:
        assert getattr(error, "error", None) == "ValueError", f"an unknown mode should raise ValueError, not {error}"
    else:
        raise AssertionError("an unknown mode ('eval') should raise ValueError")
