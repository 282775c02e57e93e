"""Hidden checks of Q3 BLOCK 1.1: the LN, IN and GN layers of make_norm, 5 points each. Never released.

The kernel builds make_norm(norm_type, C, G) and runs it on the grader's inputs (layers.layer_input), which have
their own offset and scale for every (sample, channel), so BN, LN, IN and GN all give different outputs; the grader
reads what comes back. Rubric, per norm type, each property judged on its own:
- 1 point: it normalizes over the right axes, on three shapes (for GN, three group counts): each group's values
  come out centred and divided by one number close to their std, whatever slip it makes computing that number;
- 2 points: it computes (x - mean) / sqrt(var + eps) as defined, with the biased variance and any eps up
  to slips.EPS_MAX, on layers.slip_input, whose groups range from constant to large: the unbiased variance or std,
  eps outside the square root, no eps or a wrong eps are slips, named and charged once for all of Q3 (a slip in a
  helper that LN, IN and GN share is one slip: grading/failures.Slip); one over the wrong axes loses these 2 as
  well, 3 in all;
- 1 point: learnable per-channel γ and β, starting at 1 and 0, acting on its own output as γ[c] * out + β[c];
- 1 point: it keeps no running statistics: in eval mode it gives what it gives in train mode, and it still
  normalizes each sample: its output does not move when a sample is shifted (whatever eps, it subtracts the mean).
The last two count only for a layer whose output looks normalized (layers.looks_normalized), so a layer that
returns a constant, or its input, earns nothing.
Tolerances: layers.CLOSE for outputs, layers.RECOGNISE for the formula a layer follows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from grading.failures import Slip

from layers import CLOSE, NORMALIZED_OVER, RECOGNISE, close, describe, grouped, layer_input, looks_normalized, \
    normalization_of, normalizes_as, parameters, slip_input, statistics
from slips import denominators, follows, recognise, slips

if TYPE_CHECKING:
    from conftest import Replies
    from grading.sandboxed.wire import Arrays, Meta

NORMS = [pytest.param("LN", marks=pytest.mark.cell("q3_layer_norm"), id="LN"),
         pytest.param("IN", marks=pytest.mark.cell("q3_instance_norm"), id="IN"),
         pytest.param("GN", marks=pytest.mark.cell("q3_group_norm"), id="GN")]
SLIP_BATCH = 6  # samples in x_slips: LN's groups then take every std of layers.SLIP_SCALES
CASES = {  # norm type: [(channels, groups, shape)], the first case also checks the formula, γ, β and eval mode
    "LN": [(8, 4, (4, 8, 5, 6)), (12, 4, (1, 12, 4, 7)), (6, 4, (3, 6, 9, 9))],
    # a batch of one would not tell IN from BN
    "IN": [(8, 4, (4, 8, 5, 6)), (12, 4, (2, 12, 4, 7)), (6, 4, (3, 6, 9, 9))],
    "GN": [(8, 4, (4, 8, 5, 6)), (16, 2, (2, 16, 5, 3)), (12, 3, (1, 12, 6, 6))],
}


def inputs(norm_type: str, case: int) -> Arrays:
    channels, groups, shape = CASES[norm_type][case]
    rng = np.random.default_rng(case + 100)
    x_eval = layer_input(shape, case + 70)
    # each sample shifted by its own amount: a per-sample normalization does not notice
    shifted = x_eval + 5 * rng.standard_normal((shape[0], 1, 1, 1))
    return {"x": layer_input(shape, case), "x_other": layer_input(shape, case + 50), "x_eval": x_eval,
            "x_shifted": shifted.astype(np.float32).astype(np.float64),
            "x_slips": slip_input((SLIP_BATCH,) + shape[1:], norm_type, groups, case + 30),
            "gamma": rng.standard_normal(channels), "beta": rng.standard_normal(channels)}


def layer(replies: Replies, norm_type: str, case: int) -> tuple[Arrays, Meta, Arrays]:
    channels, groups, shape = CASES[norm_type][case]
    arrays = inputs(norm_type, case)
    meta, reply = replies.ask("norm_layer", {"norm_type": norm_type, "channels": channels, "groups": groups,
                                             "case": case}, **arrays)
    return arrays, meta, reply


def what_it_computes(norm_type: str, groups: int, output: Any, x: Any) -> str:
    found = np.asarray(output).shape
    if found != np.asarray(x).shape:
        return f"it turns an input of shape {np.asarray(x).shape} into shape {found}"
    actual = normalization_of(output, x)
    if actual is None:
        return "its output is none of BN, LN, IN and GN with γ = 1 and β = 0, even allowing for slips"
    if actual == "none":
        return "it returns its input unchanged: it does not normalize"
    if norm_type == "GN" and actual.startswith("GN"):
        return f"asked for num_groups={groups}, it normalizes {actual}: pass num_groups on to the layer"
    return f"it normalizes like {actual} ({NORMALIZED_OVER[actual.split()[0]]})"


def require_right_axes(norm_type: str, case: int, arrays: Arrays, reply: Arrays) -> None:
    channels, groups, shape = CASES[norm_type][case]
    assert normalizes_as(reply.get("train"), arrays["x"], norm_type, groups), (
        f"make_norm({norm_type!r}, ...) should normalize {NORMALIZED_OVER[norm_type]}, with γ = 1 and β = 0 at "
        f"first: {what_it_computes(norm_type, groups, reply.get('train'), arrays['x'])}")


@pytest.mark.points(1)
@pytest.mark.parametrize("case", [0, 1, 2])
@pytest.mark.parametrize("norm_type", NORMS)
def test_normalizes_over_the_right_axes(replies: Replies, norm_type: str, case: int) -> None:
    arrays, meta, reply = layer(replies, norm_type, case)
    require_right_axes(norm_type, case, arrays, reply)


@pytest.mark.points(2)
@pytest.mark.parametrize("norm_type", NORMS)
def test_divides_by_the_square_root_of_the_biased_variance_plus_eps(replies: Replies, norm_type: str) -> None:
    arrays, meta, reply = layer(replies, norm_type, 0)
    groups = CASES[norm_type][0][1]
    output, x = reply.get("slips"), arrays["x_slips"]
    if output is None or np.shape(output) != x.shape:
        require_right_axes(norm_type, 0, arrays, reply)  # says why, as the check of the axes does
        raise AssertionError(f"the {norm_type} layer returned nothing usable for an input of shape {x.shape}")
    rows = grouped(output, norm_type, groups)
    centred, variance, size = statistics(grouped(x, norm_type, groups))
    constant = variance == 0
    found = denominators(rows, centred)
    if not follows(rows[~constant], centred[~constant], found[~constant], CLOSE):
        require_right_axes(norm_type, 0, arrays, reply)
        raise AssertionError(f"the {norm_type} layer normalizes {NORMALIZED_OVER[norm_type]} on ordinary inputs, "
                             "but not on groups of very small variance, where eps decides")
    form = recognise(found[~constant], variance[~constant], size, RECOGNISE)
    assert form is not None, (
        f"the {norm_type} layer divides each group by a number that follows no formula of its variance: "
        "normalization divides by sqrt(var + eps), with the biased variance")
    said = slips(form, bool(np.all(np.isfinite(rows[constant]))),
                 "a group whose values are all equal (a channel a ReLU zeroed, say)")
    if said:
        raise Slip(f"the {norm_type} layer normalizes {NORMALIZED_OVER[norm_type]}, but " + "; and ".join(
            said.values()), said)


@pytest.mark.points(1)
@pytest.mark.parametrize("norm_type", NORMS)
def test_has_per_channel_gamma_and_beta_starting_at_one_and_zero(replies: Replies, norm_type: str) -> None:
    arrays, meta, reply = layer(replies, norm_type, 0)
    channels = CASES[norm_type][0][0]
    found = parameters(meta, reply)
    assert len(found) == 2 and all(int(np.prod(shape)) == channels for _, shape, _ in found), (
        f"the {norm_type} layer needs two learnable tensors of {channels} values each, γ and β; its trainable "
        f"parameters are: {describe(found)}")
    starts = sorted(float(values.mean()) for _, _, values in found)
    assert all(np.allclose(values, values.flat[0]) for _, _, values in found) and np.allclose(starts, [0, 1]), (
        f"the {norm_type} layer's γ should start at 1 and β at 0")
    own = reply.get("train")
    assert looks_normalized(own), f"the {norm_type} layer does not normalize, so its γ and β earn nothing"
    gamma, beta = (arrays[name].reshape(1, -1, 1, 1) for name in ("gamma", "beta"))
    assert close(reply.get("affine"), own * gamma + beta) or close(reply.get("affine"), own * beta + gamma), (
        f"the {norm_type} layer's γ and β do not act per channel as out = γ[c] * x̂ + β[c]")


@pytest.mark.points(1)
@pytest.mark.parametrize("norm_type", NORMS)
def test_keeps_no_running_statistics(replies: Replies, norm_type: str) -> None:
    arrays, meta, reply = layer(replies, norm_type, 0)
    evaluated = reply.get("eval")
    assert close(evaluated, reply.get("train_eval")), (
        f"in eval mode the {norm_type} layer gives another output than in train mode on the same batch: it keeps "
        f"running statistics, which {norm_type} does not; at test time it normalizes each sample as in training")
    assert looks_normalized(evaluated) and close(reply.get("eval_shifted"), evaluated), (
        f"in eval mode the {norm_type} layer does not normalize each sample with its own statistics: its output "
        "moves when a sample is shifted, or does not look normalized at all")
