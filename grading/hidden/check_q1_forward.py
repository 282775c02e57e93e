"""Hidden checks of Q1, batchnorm_forward (20 points). Never released.

Rubric, each property judged on its own. "Batch normalization up to a slip" (conftest.batch_norm_up_to_a_slip)
means: each feature comes out centred, divided by one number close to its std (slips.follows), then scaled by γ and
shifted by β, whatever slip it makes computing that number.
- 4: train mode is batch normalization up to a slip, on five shapes (N from 2 to 200, D from 1 to 8);
- 4: it divides by sqrt(var + eps) as defined, on features whose variance ranges from zero to large: in train mode
  with the biased batch variance (2), in test mode with the running variance (2), eps inside the square root and
  at most slips.EPS_MAX. The unbiased variance or std, eps outside the square root, no eps or a wrong eps are
  slips, named; nothing else is judged here;
- 2: one train step updates the running statistics: momentum * running + (1 - momentum) * batch statistic, with
  the biased batch variance; 2: the same over six steps; 1: without running statistics in bn_param they start as
  zeros of shape (D,) in the input's dtype. Momentum and 1 - momentum swapped, or running_var updated with the
  unbiased variance (torch's convention), are slips;
- a slip is charged once for all of Q1, assignment.SLIP_SHARE of its points, however many checks reveal it
  (grading/failures.Slip); the other checks it shows in lose nothing for it;
- 3: test mode normalizes with the running statistics, up to a slip, on two shapes, and leaves them as they are;
- 2: float32 inputs give a float32 output that is batch normalization up to a slip;
- 1: train and test mode leave their inputs unchanged; 1: a mode other than 'train' and 'test' raises ValueError.
  These two count only for a forward that is batch normalization up to a slip, so a function that returns anything
  earns nothing.
Tolerances, relative to the size of the values: FLOAT64 = 1e-9 for outputs and running statistics (any correct
order of operations lands far below it; a wrong momentum or variance is off by 1e-4 or more); FLOAT32 = 1e-4;
RECOGNISE = 1e-9 for the formula the denominators follow (slips.recognise), which float64 reads to 1e-13.
A test's points are its function's total, shared by its parametrized cases.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from grading.failures import Slip, StudentFailure

from conftest import assert_close, batch_norm_up_to_a_slip, case, differs, feature_rows, largest_error, \
    reference_forward
from slips import MOMENTUM_SWAPPED, UNBIASED, denominators, recognise, slips

if TYPE_CHECKING:
    from grading.isolation.student_module import StudentModule
    from grading.sandboxed.wire import Arrays

Statistics = dict[str, Any]  # {"running_mean": values, "running_var": values}

FLOAT64 = 1e-9
FLOAT32 = 1e-4
RECOGNISE = 1e-9
# the std of the features of the slip-revealing batch: a constant one, two small ones that tell where eps goes,
# large ones that tell the variance estimator
SLIP_STDS = np.array([0.0, 1e-3, 3e-3, 0.03, 5.0, 20.0])


def train_step(student: StudentModule, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
               running_var: np.ndarray, **bn_param: Any) -> Arrays:
    meta, reply = student.call("forward", bn_param={"mode": "train", **bn_param}, x=x, gamma=gamma, beta=beta,
                               running_mean=running_mean, running_var=running_var)
    return reply


def require_batch_norm(reply: Arrays, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mode: str,
                       tolerance: float = FLOAT64, /, **test_mode: np.ndarray) -> None:
    assert batch_norm_up_to_a_slip(reply.get("out"), x, gamma, beta, tolerance, **test_mode), (
        f"the {mode}-mode output is not batch normalization (" + differs(
            f"the output for x of shape {x.shape}", reply.get("out"), reference_forward(
                x, gamma, beta, mode, test_mode.get("mean", np.zeros(x.shape[1])),
                test_mode.get("var", np.ones(x.shape[1])))[0], tolerance) + ")")


@pytest.mark.points(4)
@pytest.mark.parametrize("seed,n,d", [(0, 4, 5), (1, 50, 3), (2, 200, 8), (62, 2, 6), (67, 7, 1)])
def test_train_mode_normalizes_each_feature_over_the_batch_then_scales_and_shifts(student: StudentModule, seed: int,
                                                                                  n: int, d: int) -> None:
    x, gamma, beta, _ = case(seed, n, d)
    zeros = np.zeros(d)
    require_batch_norm(train_step(student, x, gamma, beta, zeros, zeros), x, gamma, beta, "train")


def slip_batch(mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, γ, β and the running statistics of a batch whose features range from constant to large variance (in
    test mode, the running variances do)."""
    rng = np.random.default_rng(90)
    d = len(SLIP_STDS)
    gamma, beta = rng.uniform(0.5, 2.0, d) * rng.choice([-1, 1], d), rng.standard_normal(d)
    if mode == "train":
        x = 3.0 + SLIP_STDS * rng.standard_normal((16, d))
        return x, gamma, beta, np.zeros(d), np.zeros(d)
    return 3.0 + rng.standard_normal((5, d)), gamma, beta, np.full(d, 3.5), SLIP_STDS ** 2


@pytest.mark.points(4)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_divides_by_the_square_root_of_the_biased_variance_plus_eps(student: StudentModule, mode: str) -> None:
    x, gamma, beta, mean, var = slip_batch(mode)
    meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta, running_mean=mean,
                               running_var=var)
    test_mode = {} if mode == "train" else {"mean": mean, "var": var}
    out = reply.get("out")
    require_batch_norm(reply, x, gamma, beta, mode, **test_mode)
    normalized, centred = feature_rows(out, x, gamma, beta, test_mode.get("mean"))
    variance = np.mean(centred ** 2, axis=1) if mode == "train" else var
    constant = variance == 0
    form = recognise(denominators(normalized, centred)[~constant], variance[~constant],
                     len(x) if mode == "train" else None, RECOGNISE)
    assert form is not None, (
        f"the {mode}-mode output divides each feature by a number that follows no formula of its variance: batch "
        "normalization divides by sqrt(var + eps), with the biased variance")
    said = slips(form, bool(np.all(np.isfinite(normalized[constant]))),
                 "a feature whose values are all equal" if mode == "train" else "a feature whose running_var is 0")
    statistic = "the batch variance" if mode == "train" else "running_var"
    if said:
        raise Slip(f"{mode} mode normalizes each feature with {statistic}, but " + "; and ".join(said.values()), said)


def running_update(name: str, start: np.ndarray, x: np.ndarray, momentum: float,
                   slip: str | None = None) -> np.ndarray:
    """What one train step makes of the running statistic name: the definition, or the definition with one of the
    known slips (MOMENTUM_SWAPPED; UNBIASED for running_var)."""
    batch = x.mean(axis=0) if name == "running_mean" else x.var(axis=0, ddof=1 if slip == UNBIASED else 0)
    kept = 1 - momentum if slip == MOMENTUM_SWAPPED else momentum
    return kept * start + (1 - kept) * batch


RUNNING_SLIPS = {  # slip key: what a running statistic updated with it follows
    MOMENTUM_SWAPPED: "momentum and 1 - momentum are swapped: the running statistics should keep momentum of "
                      "their old value",
    UNBIASED: "running_var is updated with the unbiased batch variance (N - 1, as torch.nn.BatchNorm1d does), where "
              "this assignment keeps the biased one",
}


def require_running(found: Statistics, expected: dict[str | None, Statistics], tolerance: float,
                    why: dict[str, str]) -> None:
    """Pass if every running statistic of found ({name: value}) is within tolerance of expected[None][name]; a Slip
    where they all follow the definition with known slips (expected[slip key][name]); else fail saying why."""
    wrong = [name for name, value in found.items() if largest_error(value, expected[None][name]) >= tolerance]
    if not wrong:
        return
    slipped: dict[str, str] = {}
    for name in wrong:
        matching = [slip for slip in RUNNING_SLIPS if slip in expected
                    and largest_error(found[name], expected[slip][name]) < tolerance]
        if not matching:
            assert_close(name, found[name], expected[None][name], tolerance, why[name])
        slipped.setdefault(matching[0], RUNNING_SLIPS[matching[0]])
    raise Slip(why[wrong[0]] + "; and ".join(slipped.values()), slipped)


@pytest.mark.points(2)
def test_one_train_step_updates_the_running_statistics(student: StudentModule) -> None:
    x, gamma, beta, _ = case(3, 20, 4)
    mean, var = np.random.default_rng(3).standard_normal(4), np.random.default_rng(4).random(4) + 0.5
    reply = train_step(student, x, gamma, beta, mean, var, momentum=0.8)
    assert "running_mean" in reply and "running_var" in reply, "bn_param's running statistics were not written back"
    starts = {"running_mean": mean, "running_var": var}
    expected = {slip: {name: running_update(name, start, x, 0.8, slip) for name, start in starts.items()}
                for slip in (None, *RUNNING_SLIPS)}
    why = {name: f"{name} should become momentum * {name} + (1 - momentum) * "
                 f"{'batch mean' if name == 'running_mean' else 'biased batch variance'}: " for name in starts}
    require_running({name: reply[name] for name in starts}, expected, FLOAT64, why)


@pytest.mark.points(2)
def test_running_statistics_over_several_steps(student: StudentModule) -> None:
    d = 6
    mean, var = np.zeros(d), np.zeros(d)
    expected = {slip: {"running_mean": mean, "running_var": var} for slip in (None, *RUNNING_SLIPS)}
    for step in range(6):
        x, gamma, beta, _ = case(10 + step, 32, d, scale=1.0 + step, shift=-3.0 + step)
        reply = train_step(student, x, gamma, beta, mean, var)
        expected = {slip: {name: running_update(name, before[name], x, 0.9, slip) for name in before}
                    for slip, before in expected.items()}
        assert "running_mean" in reply and "running_var" in reply, "bn_param's running statistics were not written back"
        mean, var = reply["running_mean"], reply["running_var"]
    require_running({"running_mean": mean, "running_var": var}, expected, FLOAT64,
                    {name: "after six train steps " for name in ("running_mean", "running_var")})


@pytest.mark.points(1)
def test_running_statistics_default_to_zeros_in_the_input_dtype(student: StudentModule) -> None:
    x, gamma, beta, _ = case(20, 16, 3)
    meta, reply = student.call("forward", dtype="float32", bn_param={"mode": "train"}, x=x, gamma=gamma, beta=beta)
    x32 = x.astype(np.float32).astype(np.float64)
    assert reply.get("running_mean", np.empty(0)).shape == (3,) and reply.get("running_var", np.empty(0)).shape == (3,), (
        "without running statistics in bn_param, they should start as zeros of shape (D,) and be written back")
    assert meta["dtypes"].get("running_mean") == "float32" and meta["dtypes"].get("running_var") == "float32", (
        f"for float32 inputs the running statistics should stay float32, not {meta['dtypes']}")
    expected = {slip: {name: running_update(name, np.zeros(3), x32, 0.9, slip)
                       for name in ("running_mean", "running_var")} for slip in (None, *RUNNING_SLIPS)}
    require_running({name: reply[name] for name in ("running_mean", "running_var")}, expected, FLOAT32, {
        "running_mean": "starting from zeros, one train step should give running_mean = (1 - momentum) * batch mean: ",
        "running_var": "starting from zeros, one train step should give running_var = (1 - momentum) * biased batch "
                       "variance: "})


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,n,d", [(30, 5, 4), (31, 1, 7)])
def test_test_mode_normalizes_with_the_running_statistics(student: StudentModule, seed: int, n: int, d: int) -> None:
    x, gamma, beta, _ = case(seed, n, d)
    rng = np.random.default_rng(seed)
    mean, var = 10 + rng.standard_normal(d), rng.random(d) * 20 + 1
    meta, reply = student.call("forward", bn_param={"mode": "test"}, x=x, gamma=gamma, beta=beta, running_mean=mean,
                               running_var=var)
    require_batch_norm(reply, x, gamma, beta, "test", mean=mean, var=var)
    assert all(name in reply and np.array_equal(reply[name], start)
               for name, start in (("running_mean", mean), ("running_var", var))), (
        "test mode must leave the running statistics as they are")


@pytest.mark.points(2)
def test_float32_inputs(student: StudentModule) -> None:
    x, gamma, beta, _ = case(40, 64, 5)
    zeros = np.zeros(5)
    meta, reply = student.call("forward", dtype="float32", bn_param={"mode": "train"}, x=x, gamma=gamma, beta=beta,
                               running_mean=zeros, running_var=zeros)
    x32, gamma32, beta32 = (a.astype(np.float32).astype(np.float64) for a in (x, gamma, beta))
    assert meta["dtypes"]["out"] == "float32", f"float32 inputs should give a float32 output, not {meta['dtypes']['out']}"
    require_batch_norm(reply, x32, gamma32, beta32, "train", FLOAT32)


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_inputs_are_not_modified(student: StudentModule, mode: str) -> None:
    x, gamma, beta, _ = case(70, 10, 4)
    meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta,
                               running_mean=np.ones(4), running_var=np.ones(4))
    require_batch_norm(reply, x, gamma, beta, mode, **({"mean": np.ones(4), "var": np.ones(4)} if mode == "test"
                                                         else {}))
    for name, original in (("x", x), ("gamma", gamma), ("beta", beta)):
        assert np.array_equal(reply[f"{name}_after"], original), f"{mode} mode changed its input {name} in place"


@pytest.mark.points(1)
def test_only_train_and_test_modes_are_accepted(student: StudentModule) -> None:
    x, gamma, beta, _ = case(80, 8, 3)
    for mode in ("train", "test"):
        meta, reply = student.call("forward", bn_param={"mode": mode}, x=x, gamma=gamma, beta=beta,
                                   running_mean=np.zeros(3), running_var=np.ones(3))
        require_batch_norm(reply, x, gamma, beta, mode, **({"mean": np.zeros(3), "var": np.ones(3)}
                                                             if mode == "test" else {}))
    try:
        student.call("forward", bn_param={"mode": "eval"}, x=x, gamma=gamma, beta=beta)
    except StudentFailure as error:
        assert error.error == "ValueError", f"an unknown mode should raise ValueError, not {error}"
    else:
        raise AssertionError("an unknown mode ('eval') should raise ValueError")
