"""pipeline/bonus.py and the perturbations of normlab.evaluate it scores models on: a lookup table of the test
images gets no bonus and a review, a network trained without augmentation keeps its points, the sandbox sees images
only, and a sandbox that cannot run Python is the machine's failure."""
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bonus_models import export_lookup_table, trained_network
from grading.failures import GraderError
from grading.isolation.sandbox import Completed
from grading.pipeline.bonus import BonusResult, grade_bonus, points_for
from normlab import data, evaluate

# (the synthetic CIFAR's folder, its data as normlab.data.load gives it)
Synthetic = tuple[Path, Any]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Synthetic:
    root = tmp_path_factory.mktemp("cifar")
    data.write_synthetic("cifar10", root, train_size=1000, test_size=300)
    return root, data.load("cifar10", root)


class InProcessSandbox:
    """Runs `python -m normlab.evaluate ...` in this process, in folder, and keeps the files it was handed."""

    handed = []

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def run(self, argv: list[str], timeout: float) -> Completed:
        InProcessSandbox.handed.append(sorted(p.name for p in self.folder.iterdir()))
        here = Path.cwd()
        os.chdir(self.folder)
        try:
            evaluate.main(argv[3:])
        finally:
            os.chdir(here)
        return Completed(0, "", False)


def grade(model: Path, cifar_root: Path, workdir: Path, seed: int = 0) -> BonusResult:
    return grade_bonus({"cifar10": model}, InProcessSandbox, workdir, cifar_root, timeout=60,
                       generator=np.random.default_rng(seed))


def test_a_lookup_table_of_the_test_images_is_withheld_for_review(synthetic: Synthetic, tmp_path: Path) -> None:
    root, test_set = synthetic
    table = export_lookup_table(test_set, tmp_path / "table.pt2")
    InProcessSandbox.handed.clear()
    (tmp_path / "work").mkdir()
    bonus = grade(table, root, tmp_path / "work")
    assert bonus.score == 0 and len(bonus.review) == 1 and bonus.review[0].startswith("bonus cifar10 withheld")
    # it would earn the whole bonus on the test set alone
    assert "test accuracy 100.00%" in bonus.lines[0] and "WITHHELD until a TA has reviewed the model" in bonus.lines[0]
    assert InProcessSandbox.handed == [["images.npy", "model.pt2"]]  # images only, never labels


def test_a_network_trained_without_augmentation_keeps_its_bonus(synthetic: Synthetic, tmp_path: Path) -> None:
    root, test_set = synthetic
    network = trained_network(test_set, tmp_path / "network.pt2", augment=False, epochs=5)
    (tmp_path / "work").mkdir()
    bonus = grade(network, root, tmp_path / "work")
    check = evaluate.RobustnessCheck.draw(test_set.test_images.numpy(), np.random.default_rng(1))
    labels, predicted = test_set.test_labels.numpy(), evaluate.predict(network, test_set.test_images.numpy())
    accuracy = (predicted == labels).mean()
    assert accuracy >= 0.95 and bonus.score == pytest.approx(points_for("cifar10", accuracy)) and not bonus.review
    scores = check.scores(predicted, evaluate.predict(network, check.images), labels, 10)
    assert min(retained for _, retained in scores.values()) > 0.8  # well clear of the floor, not just over it


def test_the_floor_is_half_the_accuracy_above_chance_under_each_kind_of_perturbation() -> None:
    labels = np.arange(400) % 10
    kinds = np.resize(np.array(evaluate.PERTURBATIONS), 400)  # image i is perturbed by kind i % 4
    check = evaluate.RobustnessCheck(np.arange(400), kinds, images=None)
    for kept, collapses in ((0.55, False), (0.45, True)):
        right = np.arange(400) // 4 < 100 * (0.1 + 0.9 * kept)  # the same share of each kind's 100 images
        perturbed = np.where(right, labels, (labels + 1) % 10)
        scores = check.scores(labels, perturbed, labels, 10)  # right on every clean image: 90 points above chance
        assert evaluate.collapses(scores) == collapses
        assert all(retained == pytest.approx(kept, abs=0.01) for _, retained in scores.values())


def test_perturbations_are_mild_and_drawn_by_the_generator(synthetic: Synthetic) -> None:
    images = synthetic[1].test_images.numpy()[:8]
    kinds = np.array(["flip", "shift", "crop", "noise"] * 2)
    perturbed = evaluate.perturb(images, kinds, np.random.default_rng(0))
    assert perturbed.dtype == np.uint8 and perturbed.shape == images.shape
    assert np.array_equal(perturbed, evaluate.perturb(images, kinds, np.random.default_rng(0)))
    assert np.array_equal(perturbed[0], images[0][:, :, ::-1])
    most, inner = evaluate.SHIFT_PIXELS, slice(evaluate.SHIFT_PIXELS, -evaluate.SHIFT_PIXELS)
    for shifted, image in zip(perturbed[1::4], images[1::4]):
        moves = [(dy, dx) for dy in range(-most, most + 1) for dx in range(-most, most + 1) if np.array_equal(
            shifted[:, inner, inner], np.roll(image, (dy, dx), axis=(1, 2))[:, inner, inner])]
        assert len(moves) == 1 and moves != [(0, 0)]
    columns = np.broadcast_to(np.arange(32, dtype=np.uint8) * 8, (2, 3, 32, 32))
    zoomed = evaluate.perturb(columns, ["crop", "crop"], np.random.default_rng(0))
    assert all(z.max() - z.min() == (evaluate.CROP_SIZE - 1) * 8 for z in zoomed)  # a window of 28 columns
    noise = perturbed[3::4].astype(float) - images[3::4]
    assert abs(noise.std() - evaluate.NOISE_LEVEL) < 0.5


def test_a_sandbox_that_cannot_run_python_is_a_grader_error(synthetic: Synthetic, tmp_path: Path) -> None:
    class Broken:
        def __init__(self, folder: Path) -> None:
            pass

        def run(self, argv: list[str], timeout: float) -> Completed:
            return Completed(1, "bwrap: setting up uid map: Permission denied", False)

    (tmp_path / "model.pt2").write_bytes(b"any model")
    with pytest.raises(GraderError, match="uid map"):
        grade_bonus({"cifar10": tmp_path / "model.pt2"}, Broken, tmp_path, synthetic[0], timeout=60)


@pytest.mark.parametrize("planted", ["link", "fifo", "folder"])
def test_predictions_the_sandbox_replaced_are_not_read_through(synthetic: Synthetic, tmp_path: Path,
                                                               planted: str) -> None:
    """The sandbox's folder is its own: predictions.npy may be a link to a host file (here, perfect predictions),
    a FIFO (which would block a reader) or a folder. None is read through; the model gave no valid predictions."""
    root, test_set = synthetic
    perfect = tmp_path / "perfect.npy"

    class Plants:
        def __init__(self, folder: Path) -> None:
            self.folder = Path(folder)

        def run(self, argv: list[str], timeout: float) -> Completed:
            if "-c" in argv:  # the check that the sandbox runs Python at all
                return Completed(0, "", False)
            count = len(np.load(self.folder / "images.npy", mmap_mode="r"))
            np.save(perfect, np.zeros(count, dtype=np.int64))
            target = self.folder / "predictions.npy"
            {"link": lambda: target.symlink_to(perfect), "fifo": lambda: os.mkfifo(target),
             "folder": target.mkdir}[planted]()
            return Completed(0, "", False)

    (tmp_path / "work").mkdir()
    (tmp_path / "model.pt2").write_bytes(b"any model")
    bonus = grade_bonus({"cifar10": tmp_path / "model.pt2"}, Plants, tmp_path / "work", root, timeout=60)
    assert bonus.score == 0 and "gave no valid predictions" in bonus.lines[0], bonus.lines
