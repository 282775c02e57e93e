"""Oracles of the hidden Q3–Q5 suites: the definitions of the layers, computed by PyTorch in float64 in the grader,
and the inputs the grader sends to the kernel. Never released.

CLOSE = 1e-4 (torch.allclose's rtol and atol): the student's layers may compute in float32; a normalization over the
wrong axes, a missing affine part or a missing ReLU is off by more than 0.1 on these inputs.
RECOGNISE = 1e-4: how closely the denominators a layer used must follow one formula (slips.recognise); float32
reads them to about 1e-7, while N - 1 for a group of 240 moves them by 2e-3.
Normalization layers are judged on layer_input, whose every group has a variance of at least 9, so that any eps up to
slips.EPS_MAX moves the output by less than CLOSE (eps / (2 var) < 6e-5), and on slip_input, whose groups range
from constant to large, where every slip shows.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.checks import NORMALIZATION_MODULES, NORMALIZED_OVER
from slips import denominators, follows

if TYPE_CHECKING:
    from grading.sandboxed.wire import Arrays, Meta

Shape = Sequence[int]
Parameter = tuple[str, tuple[int, ...], np.ndarray]  # a trainable parameter's name, shape and values

CLOSE = 1e-4
RECOGNISE = 1e-4
NORM_TYPES = ("BN", "LN", "IN", "GN", "none")
# torch.nn's normalization layers, by class name: the kernel reports the names of every module's classes.
NORMALIZATION_CLASSES = frozenset(cls.__name__ for cls in vars(nn).values()
                                  if isinstance(cls, type) and issubclass(cls, NORMALIZATION_MODULES))
# the std of slip_input's groups, in turn: one constant group, two small ones that tell where eps goes, large ones
# that tell the variance estimator
SLIP_SCALES = (0.0, 0.003, 0.03, 3.0, 0.01, 10.0)


def as_float32_values(values: Any) -> np.ndarray:
    """values as the kernel receives them in float32: then every dtype a student's module holds sees the same."""
    return np.asarray(values).astype(np.float32).astype(np.float64)


def probe_input(shape: Shape, seed: int) -> np.ndarray:
    """Noise with its own offset and scale for every (sample, channel), so BN, LN, IN and GN all disagree."""
    rng = np.random.default_rng(seed)
    n, c = shape[:2]
    offset = 4 * rng.standard_normal((n, c, 1, 1))
    scale = np.exp(rng.standard_normal((n, c, 1, 1)))
    return as_float32_values(rng.standard_normal(shape) * scale + offset)


def layer_input(shape: Shape, seed: int) -> np.ndarray:
    """Like probe_input, but every (sample, channel) has a std of 3 to 10, so no group's variance is small enough
    for eps to matter."""
    rng = np.random.default_rng(seed)
    n, c = shape[:2]
    offset = 10 * rng.standard_normal((n, c, 1, 1))
    scale = rng.uniform(3.0, 10.0, (n, c, 1, 1))
    return as_float32_values(rng.standard_normal(shape) * scale + offset)


def slip_input(shape: Shape, norm_type: str, groups: int, seed: int) -> np.ndarray:
    """Each group of norm_type gets a std from SLIP_SCALES in turn, the first group none at all (all zeros)."""
    rng = np.random.default_rng(seed)
    rows = grouped(np.zeros(shape), norm_type, groups)
    scales = np.resize(SLIP_SCALES, len(rows))[:, None]
    rows = scales * (rng.standard_normal(rows.shape) + rng.standard_normal((len(rows), 1)))
    return as_float32_values(ungrouped(rows, shape, norm_type, groups))


def grouped(x: Any, norm_type: str, groups: int = 1) -> np.ndarray:
    """x of shape (N, C, H, W) as rows, one per group of values that share a mean and a variance under norm_type."""
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape[:2]
    if norm_type == "BN":
        return x.swapaxes(0, 1).reshape(c, -1)
    return x.reshape(n * {"LN": 1, "IN": c, "GN": groups}[norm_type], -1)


def ungrouped(rows: np.ndarray, shape: Shape, norm_type: str, groups: int = 1) -> np.ndarray:
    """rows (from grouped) in shape again."""
    if norm_type == "BN":
        return rows.reshape((shape[1], shape[0]) + tuple(shape[2:])).swapaxes(0, 1)
    return rows.reshape(shape)


def statistics(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(centred rows, biased variance per row, row length)."""
    centred = rows - rows.mean(axis=1, keepdims=True)
    return centred, np.mean(centred ** 2, axis=1), rows.shape[1]


def normalizes_as(output: Any, x: Any, norm_type: str, groups: int = 1, relu: bool = False) -> bool:
    """Whether output is norm_type's normalization of x (no affine part), slips allowed (slips.follows); relu: of
    which only the positive part is kept."""
    if norm_type == "none":
        return close(output, np.maximum(x, 0.0) if relu else x)
    output = np.asarray(output, dtype=np.float64)
    if output.shape != np.shape(x) or not np.all(np.isfinite(output)):
        return False
    rows = grouped(output, norm_type, groups)
    centred, _, _ = statistics(grouped(x, norm_type, groups))
    kept = rows > 0 if relu else np.ones(rows.shape, dtype=bool)
    found = denominators(np.where(kept, rows, 0.0), np.where(kept, centred, 0.0))
    return follows(rows, centred, found, CLOSE, relu=relu)


def marker_values(seed: int, channels: int = 256) -> Arrays:
    """The per-channel scale and shift of the kernel's Marker (grading/sandboxed/kernel_probe.py)."""
    rng = np.random.default_rng(seed)
    return {"marker_scale": as_float32_values(rng.uniform(0.5, 2.0, channels)),
            "marker_shift": as_float32_values(rng.standard_normal(channels))}


def as_tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def marker(x: Any, arrays: Arrays) -> torch.Tensor:
    """x through the kernel's Marker with the scale and shift in arrays (marker_values)."""
    channels = x.shape[1]
    return as_tensor(x) * as_tensor(arrays["marker_scale"][:channels]).reshape(1, -1, 1, 1) + \
        as_tensor(arrays["marker_shift"][:channels]).reshape(1, -1, 1, 1)


def conv(x: Any, weight: Any, stride: int = 1, padding: int = 0) -> torch.Tensor:
    return F.conv2d(as_tensor(x), as_tensor(weight), stride=stride, padding=padding)


def close(actual: Any, expected: Any) -> bool:
    """Whether an array the student's process returned matches: same shape, finite, within CLOSE."""
    if actual is None:
        return False
    actual, expected = as_tensor(actual), as_tensor(expected)
    return actual.shape == expected.shape and bool(torch.isfinite(actual).all()) and \
        bool(torch.allclose(actual, expected, rtol=CLOSE, atol=CLOSE))


def looks_normalized(output: Any, spread: float = 3.0) -> bool:
    """Whether output varies as a normalization's does, each sample with a std between 1 / spread and spread:
    neither a constant nor the grader's inputs, whose std is about 10."""
    if output is None or np.ndim(output) < 2 or not np.all(np.isfinite(output)):
        return False
    std = np.asarray(output, dtype=np.float64).reshape(len(output), -1).std(axis=1)
    return bool(np.all((std > 1 / spread) & (std < spread)))


def normalization_of(output: Any, x: Any, group_counts: Sequence[int] = (2, 3, 4, 8)) -> str | None:
    """Which normalization of x output is (no affine part, slips allowed): 'BN', 'LN', 'IN', 'GN with k groups',
    'none' or None."""
    if close(output, x):
        return "none"
    channels = np.shape(x)[1]
    candidates = [("BN", 1), ("LN", 1), ("IN", 1)]
    candidates += [("GN", g) for g in group_counts if 1 < g < channels and channels % g == 0]
    for norm_type, groups in candidates:
        if normalizes_as(output, x, norm_type, groups):
            return f"GN with {groups} groups" if norm_type == "GN" else norm_type
    return None


def same_call(calls: list[Any], norm_type: str, channels: int, groups: int) -> bool:
    """Whether the kernel saw make_norm called once as make_norm(norm_type, channels, groups); only GN uses its
    num_groups, so for the others any value (or the default) is the same call."""
    if len(calls) != 1 or not isinstance(calls[0], list) or len(calls[0]) != 3:
        return False
    called_type, called_channels, called_groups = calls[0]
    return [called_type, called_channels] == [norm_type, channels] and (norm_type != "GN" or called_groups == groups)


def parameters(meta: Meta, arrays: Arrays) -> list[Parameter]:
    """[(name, shape, values)] of the trainable parameters a kernel reply describes."""
    described = meta.get("parameters")
    if not isinstance(described, list):
        return []
    found: list[Parameter] = []
    for index, entry in enumerate(described):
        values = arrays.get(f"parameter_{index}")
        if not (isinstance(entry, list) and len(entry) == 2 and values is not None):
            return []
        found.append((str(entry[0]), tuple(values.shape), values))
    return found


def describe(found: list[Parameter]) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape, _ in found) or "none"
