"""The checks the test cells of norm.ipynb run, for quick feedback while you work. The grader scores with its own
hidden checks, outside your notebook; under the autograder these do nothing.

- public_tests runs the public tests of batchnormalization.py (Q1, Q2).
- The layer checks (Q3–Q5) feed tensors with known per-sample and per-channel offsets and scales and compare the
  result with the definition of each normalization, so any correct implementation passes (nn.GroupNorm,
  nn.LayerNorm, nn.InstanceNorm2d, a module of your own) and a normalization over the wrong axes fails with a
  message that says which normalization it computes instead.
Each check raises AssertionError with that message, or says in a printed line what it found and returns None.
"""
import functools
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import typing
from pathlib import Path
from xml.etree import ElementTree

import torch
import torch.nn.functional as F
from torch import nn

from normlab import BONUS_FILES

NORMALIZED_OVER = {
    "BN": "per channel, over (N, H, W)",
    "LN": "per sample, over (C, H, W)",
    "IN": "per sample and channel, over (H, W)",
    "GN": "per sample and group of channels, over (C/G, H, W)",
    "none": "nowhere (no normalization)",
}

NORMALIZATION_MODULES = tuple(
    cls for cls in (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
                    nn.CrossMapLRN2d, getattr(nn, "RMSNorm", None)) if cls is not None
)

FUNCTIONS = {"q1": "batchnorm_forward", "q2": "batchnorm_backward"}
EPS = 1e-5
TOLERANCE = 1e-4
REPORT_WIDTH = 80  # `nbgrader validate` cuts lines longer than 87 characters, its indent included


def for_students(check):
    """A check that gives students feedback and does nothing under the autograder, whose own hidden checks
    replace it (running it there would only cost time)."""
    @functools.wraps(check)
    def run(*args, **kwargs):
        if os.environ.get("NBGRADER_EXECUTION") != "autograde":
            return check(*args, **kwargs)
    return run


def passed(what):
    """Say in words that a test cell's check passed, and what it found."""
    print(f"passed / 通过: {what}")


class PublicTestsFailed(AssertionError):
    """Some public tests failed. Jupyter and nbgrader's Validate show its message alone, without a traceback
    (IPython shows what _render_traceback_ returns instead): the frames of this module would only hide it."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


@for_students
def public_tests(question):
    """Run the public tests of one question of batchnormalization.py ("q1" or "q2") in a fresh Python, as
    `pytest tests/ -k <question>` would, and raise PublicTestsFailed with each failing test's own message, in full,
    in lines short enough for `nbgrader validate`."""
    tests = Path("tests") / "test_batchnorm.py"
    assert tests.is_file(), (f"{tests} is not next to this notebook: run the notebook from the assignment's folder, "
                             "where batchnormalization.py and tests/ are")
    # the kernel asks for colours (FORCE_COLOR): pytest's would land in the messages
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE")}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.xml"
        completed = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no",
                                    "--assert=plain", f"--junitxml={report}", "-k", question, str(tests)],
                                   capture_output=True, text=True, timeout=600, env={**environment, "NO_COLOR": "1"})
        failed = failures(report) if report.is_file() else {"pytest": completed.stderr.strip()[-500:]}
        tests_run = test_names(report) if report.is_file() else []
    if completed.returncode == 0:
        passed(f"{FUNCTIONS[question]} passes all {len(tests_run)} public tests of {question.upper()}. The grader runs "
               "more checks of its own.")
        return
    by_message: dict[str, list[str]] = {}
    for name, message in failed.items():
        by_message.setdefault(message, []).append(name)
    lines = [f"batchnormalization.py fails {len(failed)} public test{'s' * (len(failed) > 1)} of {question.upper()}:"]
    for message, names in by_message.items():
        lines.append(textwrap.fill(f"- {', '.join(names)}: {message}", REPORT_WIDTH, subsequent_indent="  ",
                                   break_on_hyphens=False))
    lines.append(f"`pytest tests/ -k {question}` in a terminal runs them with every detail.")
    raise PublicTestsFailed("\n".join(lines))


def test_names(report):
    """The names of the tests pytest ran, from its JUnit XML report."""
    return [case.get("name", "") for case in ElementTree.parse(report).getroot().iter("testcase")]


def failures(report):
    """{test name: its own failure message} from pytest's JUnit XML report; a module that could not be collected
    (batchnormalization.py does not import, say) counts as one failure, with the error it raised."""
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            continue
        message, text = problem.get("message", ""), problem.text or ""
        if message == "collection failure":  # what went wrong is in the text: the exception on pytest's last "E" line
            raised = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")][-1:] or [message]
            lines = re.findall(r'batchnormalization\.py"?(?:, line |:)(\d+)', text)
            found["the tests"] = (f"batchnormalization.py does not import: {raised[0]}"
                                  + (f" (line {lines[-1]})" if lines else ""))
        else:
            found[case.get("name", "")] = message.removeprefix("AssertionError: ")
    return found


def bonus_files():
    """Say which bonus models are next to this notebook (the grader scores them on the CIFAR test sets)."""
    for name in BONUS_FILES.values():
        path = Path(name)
        print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, ready to submit" if path.is_file() else
              f"{name}: not exported yet (optional)")


def reference_normalize(x, norm_type, num_groups=4, eps=EPS):
    """The definition of each normalization (no affine part) on x of shape (N, C, H, W), computed in float64."""
    x = x.double()
    n, c = x.shape[:2]
    if norm_type == "none":
        return x
    if norm_type == "BN":
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps)
    groups = {"LN": 1, "IN": c, "GN": num_groups}[norm_type]
    grouped = x.reshape(n, groups, -1)
    mean = grouped.mean(dim=2, keepdim=True)
    var = grouped.var(dim=2, unbiased=False, keepdim=True)
    return ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)


def probe_input(shape, seed=0):
    """Noise with a different offset and scale for every (sample, channel), so BN, LN, IN and GN all disagree. Every
    std is 3 or more, so that eps (any value up to 1e-3) changes a normalization by less than TOLERANCE."""
    generator = torch.Generator().manual_seed(seed)
    n, c = shape[:2]
    offset = 4 * torch.randn(n, c, 1, 1, generator=generator)
    scale = 3 + 7 * torch.rand(n, c, 1, 1, generator=generator)
    return torch.randn(shape, generator=generator) * scale + offset


def in_dtype_of(module, x):
    """x in the floating dtype module holds (float64 for a student who made it torch's default)."""
    held = next((t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)
    return x.to(held or torch.get_default_dtype())


def describe_normalization(output, x, num_groups_candidates=()):
    """Name the normalization of x that output matches (no affine part), or None."""
    channels = x.shape[1]
    candidates = [("none", None), ("BN", None), ("LN", None), ("IN", None)]
    candidates += [("GN", g) for g in num_groups_candidates if 1 < g < channels and channels % g == 0]
    for norm_type, groups in candidates:
        expected = reference_normalize(x, norm_type, groups or 1)
        if output.shape == expected.shape and _close(output, expected):
            return f"GN with {groups} groups" if groups else norm_type
    return None


@for_students
def check_norm_layer(layer, norm_type, num_groups=4, shape=(4, 8, 5, 6), seed=0):
    """Check that layer normalizes (N, C, H, W) activations as norm_type does, with per-channel affine γ and β."""
    assert norm_type in ("BN", "LN", "IN", "GN"), f"unknown norm_type {norm_type!r}"
    assert isinstance(layer, nn.Module), f"the {norm_type} layer must be an nn.Module, got {type(layer).__name__}"
    channels = shape[1]
    x = in_dtype_of(layer, probe_input(shape, seed))
    was_training = layer.training
    layer.train()
    with torch.no_grad():
        y = layer(x)
    assert isinstance(y, torch.Tensor) and y.shape == x.shape, (
        f"the {norm_type} layer must keep the shape {tuple(x.shape)}; it returned "
        f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
    )
    expected = reference_normalize(x, norm_type, num_groups)
    if not _close(y, expected):
        groups = (num_groups, 2, 4, 8) if norm_type == "GN" else (2, 4)
        actual = describe_normalization(y, x, groups)
        if norm_type == "GN" and actual and actual.startswith("GN"):
            raise AssertionError(f"asked for num_groups={num_groups}, your GN layer normalizes {actual.removeprefix('GN ')}"
                                 ": pass num_groups on to the layer")
        what = f"it normalizes like {actual} ({NORMALIZED_OVER[actual.split()[0]]})" if actual else (
            f"its output matches none of BN, LN, IN, GN (largest difference from {norm_type}: "
            f"{_max_difference(y, expected):.3g})")
        raise AssertionError(
            f"your {norm_type} layer does not normalize {NORMALIZED_OVER[norm_type]}: {what}. "
            "Check the axes it averages over, and that γ starts at 1 and β at 0."
        )
    _check_per_channel_affine(layer, norm_type, x, expected, channels)
    if norm_type != "BN":
        layer.eval()
        with torch.no_grad():
            y_eval = layer(x)
        assert _close(y_eval, expected), (
            f"in eval mode your {norm_type} layer gives a different output than in train mode: {norm_type} uses "
            "each sample's own statistics at test time too, so it keeps no running statistics"
        )
    layer.train(was_training)
    passed(f"your {norm_type} layer normalizes {NORMALIZED_OVER[norm_type]}, with per-channel γ and β"
           + ("" if norm_type == "BN" else ", in train and eval mode alike"))


def _check_per_channel_affine(layer, norm_type, x, normalized, channels):
    params = [p for p in layer.parameters() if p.requires_grad]
    assert len(params) == 2 and all(p.numel() == channels for p in params), (
        f"your {norm_type} layer needs learnable per-channel affine parameters γ and β ({channels} values each); "
        f"it has {len(params)} trainable tensor(s) with {[p.numel() for p in params]} values"
    )
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(1)
    first, second = (torch.randn(channels, generator=generator) for _ in range(2))
    try:
        with torch.no_grad():
            params[0].copy_(first.reshape(params[0].shape))
            params[1].copy_(second.reshape(params[1].shape))
            y = layer(x)
        per_channel = lambda v: v.double().reshape(1, channels, 1, 1)
        options = (normalized * per_channel(first) + per_channel(second),
                   normalized * per_channel(second) + per_channel(first))
        assert any(_close(y, option) for option in options), (
            f"your {norm_type} layer's γ and β do not act per channel as out = γ[c] * normalized + β[c]"
        )
    finally:
        with torch.no_grad():
            for p, value in zip(params, saved):
                p.copy_(value)


@for_students
def check_shortcut(shortcut, in_channels, out_channels, stride, norm_type, num_groups=4, size=8, seed=0):
    """Check a projection shortcut: one 1x1 conv with the given stride and channels, then the chosen norm."""
    assert isinstance(shortcut, nn.Module), f"the shortcut must be an nn.Module, got {type(shortcut).__name__}"
    convs = [m for m in shortcut.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1, f"the shortcut should contain exactly one convolution (1x1); it has {len(convs)}"
    conv = convs[0]
    assert conv.kernel_size == (1, 1), f"the shortcut's convolution should be 1x1, not {conv.kernel_size}"
    assert conv.stride == (stride, stride), f"the shortcut's convolution needs stride {stride}, not {conv.stride}"
    assert (conv.in_channels, conv.out_channels) == (in_channels, out_channels), (
        f"the shortcut should map {in_channels} to {out_channels} channels, not "
        f"{conv.in_channels} to {conv.out_channels}"
    )
    captured: dict[str, torch.Tensor] = {}
    hook = conv.register_forward_hook(lambda module, inputs, output: captured.setdefault("conv", output))
    x = in_dtype_of(shortcut, probe_input((4, in_channels, size, size), seed))
    shortcut.train()
    try:
        with torch.no_grad():
            y = shortcut(x)
    finally:
        hook.remove()
    side = math.ceil(size / stride)
    assert y.shape == (4, out_channels, side, side), (
        f"the shortcut should turn {tuple(x.shape)} into {(4, out_channels, side, side)}, not {tuple(y.shape)}"
    )
    expected = reference_normalize(captured["conv"], norm_type, num_groups)
    if not _close(y, expected):
        actual = describe_normalization(y, captured["conv"], (num_groups, 2, 4))
        raise AssertionError(
            f"after its 1x1 convolution the shortcut should apply {norm_type} "
            f"({NORMALIZED_OVER[norm_type]}); it applies {actual or 'something else'}"
        )
    passed(f"the shortcut is a 1x1 convolution with stride {stride} from {in_channels} to {out_channels} channels, "
           f"then {norm_type}")


@for_students
def check_no_normalization(model, shape=(4, 3, 32, 32), seed=0):
    """Check that model contains no normalization: no norm module, no dependence on the batch, no scale invariance."""
    found = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NORMALIZATION_MODULES)})
    assert not found, f"with norm_type='none' the model must contain no normalization layer; found {found}"
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator)
    other = x.clone()
    other[1:] = torch.randn((shape[0] - 1,) + tuple(shape[1:]), generator=generator)
    model.train()
    with torch.no_grad():
        first, second, scaled = model(x), model(other), model(3 * x)
    assert _close(first[0], second[0]), (
        "sample 0's output changes when the other samples in the batch change: something still normalizes over "
        "the batch"
    )
    assert not _close(first, scaled), (
        "the output does not change when the input is scaled by 3: something still normalizes each sample"
    )
    passed("the model normalizes nowhere: no norm layer, no dependence on the rest of the batch, and an input "
           "scaled by 3 changes the output")


@for_students
def check_loss_falls(model, steps=60, batch_size=32, num_classes=10, seed=0, factor=0.5):
    """Train model with Adam on one fixed random batch; its loss must end below factor times where it started.

    Gradient clipping keeps networks without normalization stable whatever their initialization: over 60
    initializations of the notebook's no-norm networks the loss ended at most at 0.05 of its start.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, 32, 32, generator=generator)
    y = torch.randint(0, num_classes, (batch_size,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses), (
        "the loss became NaN or infinite while training on a small fixed batch"
    )
    assert losses[-1] < factor * losses[0], (
        f"the loss did not fall on a small fixed batch: from {losses[0]:.3f} to {losses[-1]:.3f} in {steps} steps"
    )
    passed(f"the loss fell from {losses[0]:.3f} to {losses[-1]:.3f} in {steps} steps on a small fixed batch")


@for_students
def check_receptive_field(stem, kernel_size, stride=1, size=16, seed=0):
    """Check that output pixel (i, j) of stem depends exactly on a kernel_size window of the input around
    (i * stride, j * stride), which rules out larger kernels, extra strides and pooling. Runs in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size, size, generator=generator, requires_grad=True)
    stem.eval()
    y = stem(x)
    side = math.ceil(size / stride)
    assert y.shape[-2:] == (side, side), (
        f"a {size}x{size} input should come out {side}x{side}, not {tuple(y.shape[-2:])}"
    )
    centre = side // 2
    y[0, :, centre, centre].sum().backward()
    rows, cols = torch.nonzero(typing.cast(torch.Tensor, x.grad)[0].abs().sum(dim=0), as_tuple=True)
    half = kernel_size // 2
    expected = (centre * stride - half, centre * stride + half)
    found = (int(rows.min()), int(rows.max())) if len(rows) else None
    assert found == expected and (int(cols.min()), int(cols.max())) == expected, (
        f"output pixel ({centre}, {centre}) should depend on input rows and columns {expected[0]}..{expected[1]} "
        f"(a {kernel_size}x{kernel_size} window at stride {stride}); it depends on rows "
        f"{found[0] if found else '-'}..{found[1] if found else '-'}"
    )
    passed(f"each output pixel depends on a {kernel_size}x{kernel_size} window of the input, at stride {stride}")


def _close(actual, expected):
    return bool(torch.allclose(actual.double(), expected.double(), atol=TOLERANCE, rtol=TOLERANCE))


def _max_difference(actual, expected):
    return float((actual.double() - expected.double()).abs().max())
