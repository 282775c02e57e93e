"""Hidden check that the network without normalization trains (cell q4_trains, 4 points). Never released.

The kernel builds ResNet-18 (width 8) with norm_type='none' (make_norm building make_no_norm, make_shortcut a plain
1x1 convolution and norm, so Q3 costs nothing here), trains it with Adam and gradient clipping on one batch of the
grader's 16x16 images and labels, and returns its logits on that batch before and after. The grader computes the
cross-entropy itself: it must stay finite and end below FACTOR = 0.5 of where it started (over 12 initializations
and batches of correct no-norm networks it ended at most at 0.09 of its start, with these STEPS, BATCH and SIZE).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layers import probe_input

if TYPE_CHECKING:
    from conftest import Replies

FACTOR = 0.5
STEPS = 15
BATCH = 16
SIZE = 16  # pixels: the network pools to 1x1 from 16 as from 32, at half the cost


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels).long()))


@pytest.mark.points(4)
def test_the_network_without_normalization_learns_a_fixed_batch(replies: Replies) -> None:
    x = probe_input((BATCH, 3, SIZE, SIZE), seed=11)
    labels = np.random.default_rng(12).integers(0, 10, BATCH).astype(np.float64)
    meta, reply = replies.ask("trains", {"depth": "resnet18", "classes": 10, "width": 8, "seed": 2, "steps": STEPS,
                                         "lr": 3e-3}, x=x, labels=labels)
    before, after = reply.get("before"), reply.get("after")
    assert before is not None and after is not None and before.shape == after.shape == (BATCH, 10), (
        f"the network's logits on the batch were not returned with shape ({BATCH}, 10)")
    start, end = cross_entropy(before, labels), cross_entropy(after, labels)
    assert np.isfinite(start) and np.isfinite(end), "the loss became NaN or infinite while training on a fixed batch"
    assert end < FACTOR * start, (
        f"with norm_type='none' the loss on a fixed batch fell only from {start:.3f} to {end:.3f} in {STEPS} steps; "
        f"it should end below {FACTOR:g} of its start")
