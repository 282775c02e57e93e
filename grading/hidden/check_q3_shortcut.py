"""Hidden checks of Q3 BLOCK 1.2: the projection shortcut, 5 points. Never released.

The kernel builds make_shortcut(in, out, stride, norm_type, G) while make_norm is a Marker, a per-channel affine
map whose scale and shift only the grader knows, and runs it in train mode. The grader reads the one 4-D
parameter as the convolution's weight W and requires out = Marker(conv(x, W, stride)), with make_norm called once
as make_norm(norm_type, out, G); only GN uses G, so a call without it costs only the GN case. A shortcut that builds
its norm itself instead passes when its output is norm_type's normalization of conv(x, W, stride) (layers.normalizes_as:
any eps, slips counted in make_norm's cells). Either way the student's own make_norm takes no part, so a mistake
there is not counted twice. No bias: besides W, only a norm's own γ and β (out values each) may be trainable.
Tolerance: layers.CLOSE. The points are shared by the six cases.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from layers import NORMALIZED_OVER, close, conv, describe, marker, marker_values, normalization_of, normalizes_as, \
    parameters, probe_input, same_call

if TYPE_CHECKING:
    from conftest import Replies

Case = tuple[int, int, int, str, int, int]

CASES: list[Case] = [  # in_channels, out_channels, stride, norm_type, num_groups, input size
    (8, 16, 2, "BN", 4, 8), (16, 64, 1, "BN", 4, 5), (4, 8, 2, "BN", 4, 7),
    (8, 16, 2, "LN", 2, 8), (8, 16, 2, "IN", 2, 6), (8, 16, 2, "GN", 2, 8),
]


@pytest.mark.points(5)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}to{c[1]}-stride{c[2]}-{c[3]}")
def test_is_a_strided_1x1_convolution_without_bias_then_the_chosen_norm(replies: Replies, case: Case) -> None:
    in_channels, out_channels, stride, norm_type, groups, size = case
    arrays = {"x": probe_input((4, in_channels, size, size), seed=size + stride), **marker_values(out_channels)}
    meta, reply = replies.ask("shortcut", {"in_channels": in_channels, "out_channels": out_channels, "stride": stride,
                                           "norm_type": norm_type, "groups": groups}, **arrays)
    call = f"make_shortcut({in_channels}, {out_channels}, {stride}, {norm_type!r}, {groups})"
    found = parameters(meta, reply)
    weights = [values for _, shape, values in found if len(shape) == 4]
    assert len(weights) == 1 and weights[0].shape == (out_channels, in_channels, 1, 1), (
        f"{call} should hold one 1x1 convolution from {in_channels} to {out_channels} channels; its trainable "
        f"parameters are: {describe(found)}")
    projected = conv(arrays["x"], weights[0], stride=stride)
    out = reply.get("out")
    assert out is not None and out.shape == tuple(projected.shape), (
        f"{call} should turn an input of shape {arrays['x'].shape} into {tuple(projected.shape)} (a 1x1 "
        f"convolution with stride {stride}), not {None if out is None else out.shape}")
    others = [(name, shape) for name, shape, _ in found if len(shape) != 4]
    calls = meta.get("calls") or []
    if calls:
        assert same_call(calls, norm_type, out_channels, groups), (
            f"{call} calls make_norm as {', '.join(f'make_norm{tuple(c)}' for c in calls)}; it should call it once, "
            f"as make_norm({norm_type!r}, {out_channels}, {groups})"
            + (": pass num_groups on" if isinstance(calls[0], list) and calls[0][:2] == [norm_type, out_channels]
               else ""))
        assert not others, f"{call}'s convolution should have no bias (bias=False); it also has: {others}"
        assert close(out, marker(projected, arrays)), (
            f"{call} should apply the layer make_norm returns to the convolution's output, and nothing else")
    else:
        assert len(others) in (0, 2) and all(int(np.prod(shape)) == out_channels for _, shape in others), (
            f"{call}'s convolution should have no bias (bias=False); besides it, the shortcut has: {others}")
        actual = normalization_of(out, projected)
        assert normalizes_as(out, projected, norm_type, groups), (
            f"after its 1x1 convolution, {call} should apply {norm_type} ({NORMALIZED_OVER[norm_type]}), best "
            f"through make_norm; it applies {actual or 'something else'}")
