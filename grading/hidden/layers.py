"""Oracles of the hidden Q3–Q5 suites: the definitions of the layers, computed by PyTorch in float64 in the grader,
and the inputs the grader sends to the kernel. Never released.

CLOSE = 1e-4 (torch.allclose's rtol and atol): the student's layers compute in float32; a normalization over the
wrong axes, a missing affine part or a missing ReLU is off by more than 0.1 on these inputs.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.checks import EPS, NORMALIZATION_MODULES, NORMALIZED_OVER, reference_normalize

CLOSE = 1e-4
NORM_TYPES = ("BN", "LN", "IN", "GN", "none")
# torch.nn's normalization layers, by class name: the kernel reports the names of every module's classes.
NORMALIZATION_CLASSES = frozenset(cls.__name__ for cls in vars(nn).values()
                                  if isinstance(cls, type) and issubclass(cls, NORMALIZATION_MODULES))


def probe_input(shape, seed):
    """Noise with its own offset and scale for every (sample, channel), so BN, LN, IN and GN all disagree."""
    rng = np.random.default_rng(seed)
    n, c = shape[:2]
    offset = 4 * rng.standard_normal((n, c, 1, 1))
    scale = np.exp(rng.standard_normal((n, c, 1, 1)))
    return (rng.standard_normal(shape) * scale + offset).astype(np.float32).astype(np.float64)


def marker_values(seed, channels=256):
    """The per-channel scale and shift of the kernel's Marker (grading/sandboxed/kernel_probe.py)."""
    rng = np.random.default_rng(seed)
    return {"marker_scale": rng.uniform(0.5, 2.0, channels).astype(np.float32).astype(np.float64),
            "marker_shift": rng.standard_normal(channels).astype(np.float32).astype(np.float64)}


def as_tensor(values):
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def normalize(x, norm_type, groups=4):
    """The definition of each normalization, without its affine part, on x of shape (N, C, H, W): normlab's, in the
    grader's own process (a kernel that patches its copy of normlab changes nothing here)."""
    return reference_normalize(as_tensor(x), norm_type, groups, EPS)


def marker(x, arrays):
    channels = x.shape[1]
    return as_tensor(x) * as_tensor(arrays["marker_scale"][:channels]).reshape(1, -1, 1, 1) + \
        as_tensor(arrays["marker_shift"][:channels]).reshape(1, -1, 1, 1)


def conv(x, weight, stride=1, padding=0):
    return F.conv2d(as_tensor(x), as_tensor(weight), stride=stride, padding=padding)


def close(actual, expected):
    """Whether an array the student's process returned matches: same shape, finite, within CLOSE."""
    if actual is None:
        return False
    actual, expected = as_tensor(actual), as_tensor(expected)
    return actual.shape == expected.shape and bool(torch.isfinite(actual).all()) and \
        bool(torch.allclose(actual, expected, rtol=CLOSE, atol=CLOSE))


def normalization_of(output, x, group_counts=(2, 3, 4, 8)):
    """Which normalization of x output is (no affine part): 'BN', 'LN', 'IN', 'GN with k groups', 'none' or None."""
    channels = as_tensor(x).shape[1]
    candidates = [("none", None), ("BN", None), ("LN", None), ("IN", None)]
    candidates += [("GN", g) for g in group_counts if 1 < g < channels and channels % g == 0]
    for norm_type, groups in candidates:
        if close(output, normalize(x, norm_type, groups or 1)):
            return f"GN with {groups} groups" if groups else norm_type
    return None


def parameters(meta, arrays):
    """[(name, shape, values)] of the trainable parameters a kernel reply describes."""
    described = meta.get("parameters")
    if not isinstance(described, list):
        return []
    found = []
    for index, entry in enumerate(described):
        values = arrays.get(f"parameter_{index}")
        if not (isinstance(entry, list) and len(entry) == 2 and values is not None):
            return []
        found.append((str(entry[0]), tuple(values.shape), values))
    return found


def describe(found):
    return ", ".join(f"{name} {list(shape)}" for name, shape, _ in found) or "none"
