"""What a normalization computes, told from its output alone: the definition, the definition with a slip, or
something else. Shared by the Q1/Q2 and Q3 suites. Never released.

Every normalization here centres a group of values (Q1: one feature over the batch; Q3: a sample, a sample's
channel, or a sample's group of channels) and divides it by a denominator D computed from the group's variance v
(the biased one, 1/n) and its size n. The definition is D = sqrt(v + eps). From the student's output, `denominators`
reads the D their code used for each group; `recognise` finds the FORM, and the eps, that explain every one of them.
A form other than the definition, an eps above EPS_MAX, or a NaN on a group with zero variance is a slip, and
`slips` names it as a TA would, by a key under which it is charged once per question.

On a group of std 1 or more, the definition's D is the std to within a hair, and no slip makes it smaller: the
unbiased variance makes it larger by sqrt(n / (n - 1)), eps outside the square root or a wrong eps by a little
more. So a normalization over the right groups, slips allowed, has every such D between (1 - BAND_SLACK) times the
std and sqrt(n / (n - 1)) (1 + WRONG_EPS_ROOM) times it (an eps up to a fifth of the variance); a normalization
over other axes, no division, or an output scaled by some factor misses that band on some group of the grader's
inputs.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

EPS_MAX = 1e-3  # any eps up to this is the definition (the question never fixes it); none at all is a slip
# float32 holds 1e-3 as 1.00000005e-3 and computes with about 7 digits: an eps read as at most this much above the
# range is in it
EPS_SLACK = 1.01
BAND_SLACK = 1e-3  # float32 reads D to about 1e-7
WRONG_EPS_ROOM = 0.1
Variance = Literal["biased", "unbiased"]  # the variance estimator: 1/n or 1/(n - 1)
EpsGoes = Literal["inside", "outside"]  # where eps goes: inside or outside the square root
# D from the biased variance v (numpy or torch), the group size n (None where v is given, not estimated) and eps
Denominator = Callable[[Any, Any, float], Any]
FORMS: dict[tuple[Variance, EpsGoes], Denominator] = {  # by (variance, where eps goes)
    ("biased", "inside"): lambda v, n, eps: (v + eps) ** 0.5,
    ("unbiased", "inside"): lambda v, n, eps: (v * n / (n - 1) + eps) ** 0.5,
    ("biased", "outside"): lambda v, n, eps: v ** 0.5 + eps,
    ("unbiased", "outside"): lambda v, n, eps: (v * n / (n - 1)) ** 0.5 + eps,
}


@dataclass(frozen=True)
class Form:
    variance: Variance
    eps_goes: EpsGoes
    eps: float
    size: int | None = None  # of each group, where the variance was estimated from it


def denominators(normalized: Any, centred: Any) -> np.ndarray:
    """Per group (row), the D with normalized ≈ centred / D, by least squares; NaN for a group whose centred values
    are all zero (its D is undefined) or whose output does not follow them at all."""
    normalized, centred = np.asarray(normalized, dtype=np.float64), np.asarray(centred, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        found = np.sum(centred ** 2, axis=1) / np.sum(normalized * centred, axis=1)
    return np.where(np.isfinite(found) & (found > 0), found, np.nan)


def follows(normalized: Any, centred: Any, found: np.ndarray, tolerance: float, relu: bool = False,
            spread: Any = None) -> bool:
    """Whether every group's output is its centred values divided by its D (within tolerance, relative to the
    output's size; relu: only the positive part kept), with D in the band of a slip on every group of std 1 or more
    (smaller groups are exempt: a large eps, a slip too, shrinks them). spread: the std each group is divided by in
    the definition, where it is given rather than estimated from the group (test mode's running variance), so that
    N - 1 cannot apply."""
    normalized, centred = np.asarray(normalized, dtype=np.float64), np.asarray(centred, dtype=np.float64)
    if normalized.shape != centred.shape:
        return False
    size = centred.shape[1]
    unbiased = np.sqrt(size / (size - 1)) if spread is None and size > 1 else 1.0
    spread = np.sqrt(np.mean(centred ** 2, axis=1)) if spread is None else np.asarray(spread, dtype=np.float64)
    live = spread > 0
    if not live.any() or not np.all(np.isfinite(found[live])):
        return False
    large = spread >= 1
    ratio = found[large] / spread[large]
    if np.any(ratio < 1 - BAND_SLACK) or np.any(ratio > unbiased * (1 + WRONG_EPS_ROOM)):
        return False
    predicted = centred[live] / found[live, None]
    if relu:
        predicted = np.maximum(predicted, 0.0)
    return bool(np.all(np.abs(normalized[live] - predicted) <= tolerance * (1 + np.abs(predicted))))


def recognise(found: Any, variance: Any, size: int | None, precision: float) -> Form | None:
    """The Form whose D, with one eps for every group, gives each found D within precision (relative); None if no
    form does. size None: the variances are given, not estimated (test mode), so no unbiased forms. Where several
    fit (one group cannot tell them apart), an eps up to EPS_MAX is preferred, then the order of FORMS."""
    found, variance = np.asarray(found, dtype=np.float64), np.asarray(variance, dtype=np.float64)
    live = np.isfinite(found) & (variance > 0)
    if not live.any():
        return None
    found, variance = found[live], variance[live]
    fitting: list[Form] = []
    for (estimate, goes), denominator in FORMS.items():
        if estimate == "unbiased" and (size is None or size < 2):
            continue
        zero = denominator(variance, size, 0.0)
        # eps from the group where it weighs most: the smallest variance
        smallest = np.argmin(variance)
        eps = found[smallest] ** 2 - zero[smallest] ** 2 if goes == "inside" else found[smallest] - zero[smallest]
        eps = max(float(eps), 0.0)
        if np.all(np.abs(denominator(variance, size, eps) - found) <= precision * found):
            fitting.append(Form(estimate, goes, eps, size))
    in_range = [form for form in fitting if form.eps <= EPS_MAX * EPS_SLACK]
    preferred = in_range or fitting
    return preferred[0] if preferred else None


# The slips a check may name, by key: each is charged once per question (grading/failures.Slip)
UNBIASED, NO_EPS, LARGE_EPS, EPS_OUTSIDE, MOMENTUM_SWAPPED = (
    "the unbiased variance", "no eps", "too large an eps", "eps outside the square root",
    "momentum and 1 - momentum swapped")


def slips(form: Form, finite_on_constant_groups: bool = True,
          constant_group: str = "a group whose values are all equal") -> dict[str, str]:
    """{slip key: what a TA would say is wrong} with a recognised Form; {} for the definition.
    finite_on_constant_groups: whether the output stayed finite on constant_group (where only eps keeps 0 / 0
    away)."""
    said = {}
    if form.variance == "unbiased" and form.size is not None:  # recognise finds no unbiased form without a size
        said[UNBIASED] = (f"it uses the unbiased variance, dividing by n - 1 = {form.size - 1} (as torch's var and "
                          f"std do by default, and numpy's with ddof=1), where normalization divides by "
                          f"n = {form.size}")
    if not finite_on_constant_groups:
        said[NO_EPS] = f"it has no eps: {constant_group} divides by zero (add eps inside the square root)"
    elif form.eps > EPS_MAX * EPS_SLACK:
        said[LARGE_EPS] = (f"its eps is {form.eps:.3g}, far larger than a small constant such as 1e-5: it shrinks "
                           "groups of small variance")
    if form.eps_goes == "outside" and form.eps > 0 and finite_on_constant_groups:
        said[EPS_OUTSIDE] = (f"it adds eps = {form.eps:.2g} outside the square root, std + eps, where the definition "
                             "has sqrt(var + eps)")
    return said
