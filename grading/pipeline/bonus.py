"""The bonus: each exported model is scored on its CIFAR test set in a sandbox that never sees the labels.

A fresh sandbox folder holds only the submitted .pt2 and the images; `python -m normlab.evaluate --predict` writes
the predicted class of each image, and the grader compares them with the labels it kept. Points per dataset rise
linearly from the floor to the target accuracy of assignment.BONUS_THRESHOLDS.

The bonus credits models, not lookup tables of the test images, which are public. Beside the test images the
sandbox gets perturbed copies of some of them (normlab.evaluate.RobustnessCheck: flipped, shifted, cropped, noisy),
drawn afresh at every grading and shuffled among the test images, so the model cannot tell them apart. A model
that earns points but keeps less than normlab.evaluate.RETENTION_FLOOR of its accuracy under any kind of
perturbation scores 0 for that dataset, says so to the student, and is flagged REVIEW for a TA, who can give the
bonus by hand in the gradebook.

A missing test set on the grading machine is a status, not a zero: the bonus is marked not graded. A model that
gives no valid predictions scores nothing, unless the sandbox cannot run Python at all: that is the machine's
failure, a GraderError.
"""
from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from grading.assignment import BONUS_THRESHOLDS
from grading.failures import BadReply, Cause, GraderError
from grading.isolation.protocol import read_regular_file
from grading.isolation.sandbox import PYTHON, Sandbox
from grading.settings import Settings

if TYPE_CHECKING:
    from normlab.data import Cifar
    from normlab.evaluate import RobustnessCheck

MakeSandbox = Callable[[Path], Sandbox]  # a Sandbox for a folder


@dataclass
class BonusResult:
    score: float = 0.0
    lines: list[str] = field(default_factory=list)  # what the student is told, a line per dataset
    not_graded: str = ""  # why part of the bonus could not be graded, in a few words
    review: list[str] = field(default_factory=list)  # why a TA should look at a withheld bonus, per dataset


def points_for(dataset: str, accuracy: float) -> float:
    """The bonus points an accuracy on dataset earns: none at the floor, all at the target, linear between."""
    floor, target, points = BONUS_THRESHOLDS[dataset]
    return points * float(np.clip((accuracy - floor) / (target - floor), 0.0, 1.0))


def grade_bonus(models: dict[str, Path], make_sandbox: MakeSandbox, workdir: Path, cifar_root: str | Path,
                timeout: float, generator: np.random.Generator | None = None) -> BonusResult:
    """Score the submitted models ({dataset: path}); make_sandbox(folder) returns a Sandbox for a folder. generator
    (a numpy Generator) draws the perturbations; by default it is seeded afresh from the operating system."""
    # torch comes with these: imported here, nbgrader's commands in the course that never grade (export, db,
    # generate_feedback, the formgrader) start 1.4 s sooner
    from normlab import data as cifar
    from normlab.evaluate import RobustnessCheck

    generator = generator or np.random.default_rng()
    result = BonusResult()
    if not models:
        result.lines.append("no bonus models were submitted")
        return result
    for dataset in BONUS_THRESHOLDS:
        points = BONUS_THRESHOLDS[dataset][2]
        if dataset not in models:
            result.lines.append(f"{dataset}: no model was submitted (0 of {points:g})")
            continue
        try:
            test_set = cifar.load(dataset, cifar_root)
        except FileNotFoundError:
            result.not_graded = (f"no CIFAR test set in {cifar_root}; download it there and regrade with "
                                 "--questions bonus")
            result.lines.append(f"{dataset}: NOT GRADED: the test set is not on the grading machine")
            continue
        test_images = test_set.test_images.numpy()
        check = RobustnessCheck.draw(test_images, generator)
        order = generator.permutation(len(test_images) + len(check.images))
        folder = Path(workdir) / f"bonus-{dataset}"
        folder.mkdir()
        shutil.copy(models[dataset], folder / "model.pt2")
        np.save(folder / "images.npy", np.concatenate([test_images, check.images])[order])
        completed = make_sandbox(folder).run([PYTHON, "-m", "normlab.evaluate", "model.pt2", "--predict",
                                              "images.npy", "--out", "predictions.npy"], timeout=timeout)
        predictions = _predictions(folder / "predictions.npy", len(order), test_set.num_classes)
        if completed.timed_out or predictions is None:
            check_python_runs(make_sandbox, Path(workdir) / f"check-{dataset}")
            reason = "timed out" if completed.timed_out else "gave no valid predictions"
            tail = " ".join(completed.output.strip().splitlines()[-1:])[:Settings.message_chars]
            result.lines.append(f"{dataset}: the model {reason} (0 of {points:g}) {tail}")
            continue
        in_order = np.empty_like(predictions)
        in_order[order] = predictions
        score_dataset(result, test_set, check, in_order[:len(test_images)], in_order[len(test_images):])
    return result


def score_dataset(result: BonusResult, test_set: Cifar, check: RobustnessCheck, clean: np.ndarray,
                  perturbed: np.ndarray) -> None:
    """Add to result the points, the student's line and any review of one dataset's predictions: clean for its test
    images, perturbed for check.images."""
    from normlab.evaluate import collapses, describe

    dataset, labels = test_set.name, test_set.test_labels.numpy()
    floor, target, points = BONUS_THRESHOLDS[dataset]
    accuracy = float((clean == labels).mean())
    scores = check.scores(clean, perturbed, labels, test_set.num_classes)
    perturbed_accuracy = float((perturbed == labels[check.indices]).mean())
    earned = points_for(dataset, accuracy)
    origin = " on a SYNTHETIC test set" if test_set.synthetic else ""
    measured = f"{dataset}: test accuracy {accuracy:.2%}{origin}, {perturbed_accuracy:.2%} on perturbed copies"
    if earned and collapses(scores):
        result.lines.append(f"{measured}: WITHHELD until a TA has reviewed the model (0 of {points:g} for now). "
                            "A trained network keeps most of its accuracy on slightly flipped, shifted, cropped or "
                            "noisy copies of test images, and this model lost most of it")
        result.review.append(f"bonus {dataset} withheld ({earned:.2f} of {points:g} on the test set at "
                             f"{accuracy:.1%}): on perturbed copies {describe(scores)}")
        return
    result.score += earned
    result.lines.append(f"{measured}: {earned:.2f} of {points:g} (full at {target:.0%}, none below {floor:.0%})")


def check_python_runs(make_sandbox: MakeSandbox, folder: Path) -> None:
    """GraderError unless a sandbox made as the model's was can run Python with numpy."""
    folder.mkdir()
    completed = make_sandbox(folder).run([PYTHON, "-c", "import numpy"], timeout=Settings.child_start_timeout)
    if completed.returncode != 0:
        raise GraderError("the sandboxed Python for the bonus models did not start: "
                          + (completed.output.strip()[:Settings.message_chars] or "it said nothing"), Cause.SANDBOX)


def _predictions(path: Path, count: int, num_classes: int) -> np.ndarray | None:
    """The predictions the sandbox wrote at path, which it may have made a link, a FIFO or a huge file: read as a
    reply is, without following links, capped at what count predictions can take."""
    try:
        data = read_regular_file(path, max_bytes=count * 8 + 4096)
        predictions = np.load(io.BytesIO(data), allow_pickle=False)
    except (BadReply, OSError, ValueError):
        return None
    if predictions.shape != (count,) or predictions.dtype.kind not in "iu":
        return None
    if predictions.min(initial=0) < 0 or predictions.max(initial=0) >= num_classes:
        return None
    return predictions
