"""Hidden checks of Q5's CIFAR stem (cell q5_cifar_stem, 10 points). Never released.

- 6 points, shared by the five norm types: make_cifar_stem(norm_type, G, C), built while make_norm is a Marker (a
  per-channel affine map whose scale and shift only the grader knows), holds one 3x3 convolution W from 3 to C
  channels and computes relu(Marker(conv(x, W, stride 1, padding 1))), with make_norm called once as
  make_norm(norm_type, C, G) (G matters only for GN): a 3x3 stride-1 convolution that keeps the resolution, the
  chosen norm, a ReLU, no pooling. A stem that builds its norm itself passes when it computes relu(norm_type's
  normalization of conv(x, W)), any eps (layers.normalizes_as). Inputs of odd and even sizes; tolerance layers.CLOSE.
- 4 points: ResNet-18 (width 16) with stem='cifar' (make_norm building BatchNorm2d, make_shortcut a plain 1x1
  convolution and norm, so Q3 costs nothing here) feeds layer1 with 32x32 maps, pools 4x4 maps, and returns
  (N, 100) logits for CIFAR-100.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import torch

from layers import NORM_TYPES, NORMALIZED_OVER, close, conv, describe, marker, marker_values, normalizes_as, \
    parameters, probe_input, same_call

if TYPE_CHECKING:
    from conftest import Replies

STEMS = {"BN": (16, 4, 16), "LN": (8, 4, 9), "IN": (8, 4, 12), "GN": (16, 2, 11), "none": (8, 4, 10)}


def relu(values: Any) -> torch.Tensor:
    return torch.relu(torch.as_tensor(values))


@pytest.mark.points(6)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_the_stem_is_a_3x3_stride_1_convolution_then_the_norm_and_a_relu(replies: Replies, norm_type: str) -> None:
    channels, groups, size = STEMS[norm_type]
    arrays = {"x": probe_input((4, 3, size, size), seed=size), **marker_values(size)}
    meta, reply = replies.ask("stem", {"norm_type": norm_type, "groups": groups, "channels": channels}, **arrays)
    call = f"make_cifar_stem({norm_type!r}, {groups}, {channels})"
    found = parameters(meta, reply)
    weights = [values for _, shape, values in found if len(shape) == 4]
    assert len(weights) == 1 and weights[0].shape == (channels, 3, 3, 3), (
        f"{call} should hold one 3x3 convolution from 3 to {channels} channels; its trainable parameters are: "
        f"{describe(found)}")
    features = conv(arrays["x"], weights[0], stride=1, padding=1)
    out = reply.get("out")
    assert out is not None and out.shape == tuple(features.shape), (
        f"{call} should keep the resolution: an input of shape {arrays['x'].shape} should come out as "
        f"{tuple(features.shape)}, not {None if out is None else out.shape} (stride 1, padding 1, no pooling)")
    calls = meta.get("calls") or []
    if calls:
        assert same_call(calls, norm_type, channels, groups), (
            f"{call} calls make_norm as {', '.join(f'make_norm{tuple(c)}' for c in calls)}; it should call it once, "
            f"as make_norm({norm_type!r}, {channels}, {groups})")
        if close(out, relu(marker(features, arrays))):
            return
        without_relu = close(out, marker(features, arrays))
    else:
        if normalizes_as(out, features, norm_type, groups, relu=True):
            return
        without_relu = normalizes_as(out, features, norm_type, groups)
    if without_relu:
        problem = "it leaves out the ReLU"
    elif close(out, relu(features)):
        problem = "it leaves out the normalization"
    elif norm_type != "BN" and normalizes_as(out, features, "BN", relu=True):
        problem = "it applies BN whatever norm_type is; build the norm with make_norm(norm_type, ...)"
    else:
        problem = "its output differs from that"
    raise AssertionError(f"{call} should compute relu({norm_type}(conv3x3(x))), with {norm_type} normalizing "
                         f"{NORMALIZED_OVER[norm_type]}: {problem}")


@pytest.mark.points(4)
def test_resnet18_with_the_cifar_stem_keeps_32x32_until_layer1_and_4x4_before_pooling(replies: Replies) -> None:
    meta, _ = replies.ask("cifar_resnet", {"depth": "resnet18", "classes": 100, "width": 16},
                          x=probe_input((2, 3, 32, 32), seed=5))
    shapes = meta.get("shapes")
    if not isinstance(shapes, dict):
        shapes = {}
    expected = {"layer1": [2, 16, 32, 32], "avgpool": [2, 128, 4, 4], "output": [2, 100]}
    found = {part: shapes.get(part) for part in expected}
    assert found == expected, (f"resnet18(stem='cifar', num_classes=100, base_width=16) on 32x32 images should give "
                               f"{expected}; it gives {found}")
