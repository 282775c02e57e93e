"""Hidden checks of Q4's make_no_norm and the network without normalization (cell q4_no_norm, 6 points). Never
released.

- 3 points: make_no_norm(C) returns its input unchanged, exactly, on three shapes.
- 1 point: ResNet-18 (width 16) built with norm_type='none' holds no torch normalization layer (by the class names
  of every module, bases included).
- 2 points: ResNet-18 with norm_type='none' does not normalize: sample 0's logits do not change when the other
  samples of the batch change (no batch statistics), and the logits change when the input is scaled by 3 (no
  per-sample normalization), within layers.CLOSE.
While the networks are built, make_norm builds make_no_norm for 'none' and make_shortcut is a plain 1x1
convolution with make_norm after it, so a mistake in Q3 costs nothing here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from layers import CLOSE, NORMALIZATION_CLASSES, close, probe_input

if TYPE_CHECKING:
    from conftest import Replies
    from grading.sandboxed.wire import Arrays, Meta

SHAPES = [(2, 16, 4, 4), (3, 5, 7, 2), (1, 64, 8, 8)]
NETWORK = {"depth": "resnet18", "classes": 10, "width": 16, "seed": 0}  # the width changes nothing checked here


def network(replies: Replies, batch: int = 4) -> tuple[Meta, Arrays]:
    x = probe_input((batch, 3, 32, 32), seed=3)
    other = x.copy()
    other[1:] = probe_input((batch - 1, 3, 32, 32), seed=4)
    return replies.ask("no_norm_outputs", NETWORK, x=x, x_other=other, x_scaled=3 * x)


@pytest.mark.points(3)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_make_no_norm_returns_its_input(replies: Replies, shape: tuple[int, int, int, int]) -> None:
    x = probe_input(shape, seed=shape[1])
    meta, reply = replies.ask("no_norm_layer", {"channels": shape[1]}, x=x)
    out = reply.get("out")
    assert out is not None and out.shape == x.shape and np.array_equal(out, x), (
        f"make_no_norm({shape[1]}) should return its input unchanged; on an input of shape {shape} it returns "
        + ("nothing" if out is None else f"shape {out.shape}" if out.shape != x.shape else
           f"values off by up to {float(np.nanmax(np.abs(out - x))):.3g}"))


@pytest.mark.points(1)
def test_the_network_holds_no_normalization_layer(replies: Replies) -> None:
    meta, _ = network(replies)
    kinds = meta.get("module_types")
    assert isinstance(kinds, list), "the network's modules were not reported"
    found = sorted(NORMALIZATION_CLASSES & {str(kind) for kind in kinds})
    assert not found, f"with norm_type='none' the network must hold no normalization layer; it holds {found}"


@pytest.mark.points(2)
def test_the_network_does_not_normalize(replies: Replies) -> None:
    _, reply = network(replies)
    first, other, scaled = (reply.get(key) for key in ("x", "x_other", "x_scaled"))
    assert first is not None and other is not None and close(first[0], other[0]), (
        "with norm_type='none', ResNet-18's output for sample 0 changes when the other samples of the batch change: "
        "something still normalizes over the batch")
    assert scaled is not None and scaled.shape == first.shape and not np.allclose(scaled, first, rtol=CLOSE,
                                                                                  atol=CLOSE), (
        "with norm_type='none', ResNet-18's output does not change when its input is scaled by 3: something still "
        "normalizes each sample")
