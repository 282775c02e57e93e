"""Hidden checks of Q3 BLOCK 1.1: the LN, IN and GN layers of make_norm, 5 points each. Never released.

The kernel builds make_norm(norm_type, C, G) and runs it on the grader's inputs, which have their own offset and
scale for every (sample, channel), so BN, LN, IN and GN all give different outputs; the grader compares what comes
back with the definitions (layers.py, tolerance layers.CLOSE). For each norm type:
- 2 points: it normalizes over the right axes, on three shapes (for GN, three group counts);
- 1.5 points: it has learnable per-channel γ and β, starting at 1 and 0, acting as γ[c] * x̂ + β[c];
- 1.5 points: it keeps no running statistics: after two batches in train mode, eval mode still normalizes each
  sample with its own statistics.
The last two count only once the first holds for that case, so a layer that does not normalize earns nothing.
"""
import numpy as np
import pytest

from layers import NORMALIZED_OVER, close, describe, normalization_of, normalize, parameters, probe_input

NORMS = [pytest.param("LN", marks=pytest.mark.cell("q3_layer_norm"), id="LN"),
         pytest.param("IN", marks=pytest.mark.cell("q3_instance_norm"), id="IN"),
         pytest.param("GN", marks=pytest.mark.cell("q3_group_norm"), id="GN")]
CASES = {  # norm type: [(channels, groups, shape)], the first case also checks γ, β and eval mode
    "LN": [(8, 4, (4, 8, 5, 6)), (12, 4, (1, 12, 4, 7)), (6, 4, (3, 6, 9, 9))],
    # a batch of one would not tell IN from BN
    "IN": [(8, 4, (4, 8, 5, 6)), (12, 4, (2, 12, 4, 7)), (6, 4, (3, 6, 9, 9))],
    "GN": [(8, 4, (4, 8, 5, 6)), (16, 2, (2, 16, 5, 3)), (12, 3, (1, 12, 6, 6))],
}

def inputs(shape, seed):
    rng = np.random.default_rng(seed + 100)
    channels = shape[1]
    return {"x": probe_input(shape, seed), "x_other": probe_input(shape, seed + 50),
            "x_eval": probe_input(shape, seed + 70), "gamma": rng.standard_normal(channels),
            "beta": rng.standard_normal(channels)}


def layer(replies, norm_type, case):
    channels, groups, shape = CASES[norm_type][case]
    arrays = inputs(shape, case)
    meta, reply = replies.ask("norm_layer", {"norm_type": norm_type, "channels": channels, "groups": groups,
                                                     "case": case}, **arrays)
    return arrays, meta, reply


def what_it_computes(norm_type, groups, output, x):
    actual = normalization_of(output, x)
    if actual is None:
        found = np.asarray(output).shape
        if found != np.asarray(x).shape:
            return f"it turns an input of shape {np.asarray(x).shape} into shape {found}"
        return "its output matches none of BN, LN, IN and GN with γ = 1 and β = 0"
    if norm_type == "GN" and actual.startswith("GN"):
        return f"asked for num_groups={groups}, it normalizes {actual}: pass num_groups on to the layer"
    return f"it normalizes like {actual} ({NORMALIZED_OVER[actual.split()[0]]})"


def require_normalization(norm_type, case, arrays, reply):
    channels, groups, shape = CASES[norm_type][case]
    expected = normalize(arrays["x"], norm_type, groups)
    assert close(reply.get("train"), expected), (
        f"make_norm({norm_type!r}, {channels}, {groups}) should normalize {NORMALIZED_OVER[norm_type]}, with γ = 1 and "
        f"β = 0 at first: {what_it_computes(norm_type, groups, reply.get('train'), arrays['x'])}")
    return expected


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [0, 1, 2])
@pytest.mark.parametrize("norm_type", NORMS)
def test_normalizes_over_the_right_axes(replies, norm_type, case):
    arrays, meta, reply = layer(replies, norm_type, case)
    require_normalization(norm_type, case, arrays, reply)


@pytest.mark.points(1.5)
@pytest.mark.parametrize("norm_type", NORMS)
def test_has_per_channel_gamma_and_beta_starting_at_one_and_zero(replies, norm_type):
    arrays, meta, reply = layer(replies, norm_type, 0)
    normalized = require_normalization(norm_type, 0, arrays, reply)
    channels = CASES[norm_type][0][0]
    found = parameters(meta, reply)
    assert len(found) == 2 and all(int(np.prod(shape)) == channels for _, shape, _ in found), (
        f"the {norm_type} layer needs two learnable tensors of {channels} values each, γ and β; its trainable "
        f"parameters are: {describe(found)}")
    starts = sorted(float(values.mean()) for _, _, values in found)
    assert all(np.allclose(values, values.flat[0]) for _, _, values in found) and np.allclose(starts, [0, 1]), (
        f"the {norm_type} layer's γ should start at 1 and β at 0")
    gamma, beta = (arrays[name].reshape(1, -1, 1, 1) for name in ("gamma", "beta"))
    assert close(reply.get("affine"), normalized * gamma + beta) or close(reply.get("affine"),
                                                                         normalized * beta + gamma), (
        f"the {norm_type} layer's γ and β do not act per channel as out = γ[c] * x̂ + β[c]")


@pytest.mark.points(1.5)
@pytest.mark.parametrize("norm_type", NORMS)
def test_keeps_no_running_statistics(replies, norm_type):
    arrays, meta, reply = layer(replies, norm_type, 0)
    require_normalization(norm_type, 0, arrays, reply)
    groups = CASES[norm_type][0][1]
    assert close(reply.get("eval"), normalize(arrays["x_eval"], norm_type, groups)), (
        f"in eval mode the {norm_type} layer does not normalize each sample with its own statistics "
        f"({what_it_computes(norm_type, groups, reply.get('eval'), arrays['x_eval'])}): {norm_type} keeps no running "
        "statistics, so test time works as training does")
