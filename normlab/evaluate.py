"""Score an exported model (.pt2) on a CIFAR test set without running any Python from its author.

    python -m normlab.evaluate bonus_cifar10.pt2 --dataset cifar10

The file must hold a torch.export program, as normlab.train.export_model writes it, that maps float32 images of
shape (N, 3, 32, 32) with values in [0, 1] to logits (N, classes). The program is a graph of PyTorch operators, so
scoring it runs no code from the notebook that made it.

The grader credits models, not tables of the public test images: it also scores perturbed copies of some test
images (flipped, shifted, cropped, noisy: RobustnessCheck below) and withholds the bonus, for a TA to review, where
the model keeps less than RETENTION_FLOOR of its accuracy under any kind of perturbation. The command above runs the
same check, on perturbations of its own drawing, and says how the model fares.

The grader uses the second form, which sees no labels and writes only the predicted class of each image:

    python -m normlab.evaluate bonus_cifar10.pt2 --predict images.npy --out predictions.npy
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from normlab import data as cifar

# The perturbations. Each leaves what an image shows as it was, and flips and shifts are what normlab.train trains on
# (random flips, and crops of an image padded by 4 pixels), while any change to an image defeats a table of the exact
# test images. Which images get which, and by how much within these bounds, is drawn afresh at every grading.
PERTURBATIONS = ("flip", "shift", "crop", "noise")
SHIFT_PIXELS = 2  # "shift" moves an image by up to this many pixels along each axis (not by 0 along both), edges
# repeated into the gap: training crops shift by up to 4
CROP_SIZE = 28  # "crop" cuts a random CROP_SIZE x CROP_SIZE window and resizes it back to 32 x 32: a zoom of 8/7
NOISE_LEVEL = 4.0  # "noise" adds Gaussian noise of this standard deviation, in levels of 255, to every pixel: under
# half the mildest Gaussian noise of the CIFAR-10-C benchmark (0.04 of the range, about 10 levels)
PERTURBED_IMAGES = 1000  # test images scored perturbed, per dataset (all of a smaller set), one kind each: 250 per
# kind measure a model's accuracy to within 3 points (one standard error at most), far finer than the gap between a
# network and a table; it adds a tenth to the evaluation of CIFAR's 10,000 test images
RETENTION_FLOOR = 0.5  # a model must keep at least this share of its accuracy above chance under every kind of
# perturbation: a table of the test images keeps about none of it, networks trained briefly on the synthetic set
# kept 0.9 and more, with augmentation or without; halfway leaves room for an unusual honest model


def predict(path, images, batch_size=500):
    """Predicted classes (int64, shape (N,)) of the program at path for uint8 images of shape (N, 3, 32, 32)."""
    module = torch.export.load(str(path)).module()
    images = torch.as_tensor(np.asarray(images, dtype=np.uint8))
    if images.ndim != 4 or tuple(images.shape[1:]) != cifar.IMAGE_SHAPE:
        raise ValueError(f"images must have shape (N, 3, 32, 32), not {tuple(images.shape)}")
    predictions = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = module(images[start:start + batch_size].float() / 255)
            predictions.append(logits.argmax(dim=1))
    return torch.cat(predictions).numpy().astype(np.int64)


def accuracy(path, dataset):
    """Test accuracy of the program at path on a normlab.data.Cifar."""
    predictions = predict(path, dataset.test_images.numpy())
    return float((predictions == dataset.test_labels.numpy()).mean())


def perturb(images, kinds, generator):
    """Copies of uint8 images (N, 3, 32, 32), image i perturbed as kinds[i] (one of PERTURBATIONS) says, by amounts
    that generator (a numpy.random.Generator) draws within the bounds above; uint8 like images."""
    images = torch.as_tensor(np.array(images, dtype=np.uint8)).float()
    perturbed = [PERTURB[kind](image, generator) for image, kind in zip(images, kinds)]
    return torch.stack(perturbed).round().clamp(0, 255).to(torch.uint8).numpy()


def flip(image, generator):
    return image.flip(2)


def shift(image, generator):
    offsets = [(dy, dx) for dy in range(-SHIFT_PIXELS, SHIFT_PIXELS + 1) for dx in range(-SHIFT_PIXELS,
                                                                                          SHIFT_PIXELS + 1) if dy or dx]
    dy, dx = offsets[generator.integers(len(offsets))]
    padded = F.pad(image[None], (SHIFT_PIXELS,) * 4, mode="replicate")[0]
    top, left = SHIFT_PIXELS - dy, SHIFT_PIXELS - dx
    return padded[:, top:top + image.shape[1], left:left + image.shape[2]]


def crop(image, generator):
    top, left = generator.integers(image.shape[1] - CROP_SIZE + 1, size=2)
    window = image[None, :, top:top + CROP_SIZE, left:left + CROP_SIZE]
    return F.interpolate(window, size=image.shape[1:], mode="bilinear", align_corners=False)[0]


def noise(image, generator):
    return image + torch.from_numpy(generator.normal(0.0, NOISE_LEVEL, image.shape)).float()


PERTURB = {"flip": flip, "shift": shift, "crop": crop, "noise": noise}


@dataclass
class RobustnessCheck:
    """Perturbed copies of a random share of a test set: images[i] is test image indices[i], perturbed as kinds[i]."""

    indices: np.ndarray
    kinds: np.ndarray
    images: np.ndarray

    @classmethod
    def draw(cls, test_images, generator):
        """PERTURBED_IMAGES of the uint8 test_images (all of fewer), chosen and perturbed by generator, each kind of
        perturbation in turn."""
        count = min(PERTURBED_IMAGES, len(test_images))
        indices = generator.choice(len(test_images), count, replace=False)
        kinds = np.resize(np.array(PERTURBATIONS), count)
        return cls(indices, kinds, perturb(np.asarray(test_images)[indices], kinds, generator))

    def scores(self, clean_predictions, perturbed_predictions, labels, num_classes):
        """{kind: (accuracy on its perturbed copies, retention)}, given the predictions for the whole clean test set
        and for self.images. Retention is the share of its accuracy above chance, on the same images clean, that
        the model keeps on their copies: 1 when it loses nothing, about 0 where the copies fare no better than
        chance. A model no better than chance on the clean images has nothing to lose and keeps 1."""
        chance = 1 / num_classes
        clean_correct = np.asarray(clean_predictions)[self.indices] == np.asarray(labels)[self.indices]
        perturbed_correct = np.asarray(perturbed_predictions) == np.asarray(labels)[self.indices]
        scores = {}
        for kind in PERTURBATIONS:
            chosen = self.kinds == kind
            clean_accuracy, accuracy = clean_correct[chosen].mean(), perturbed_correct[chosen].mean()
            retained = (accuracy - chance) / (clean_accuracy - chance) if clean_accuracy > chance else 1.0
            scores[kind] = (float(accuracy), float(retained))
        return scores


def collapses(scores):
    """Whether a model whose RobustnessCheck.scores are scores keeps under RETENTION_FLOOR under any perturbation."""
    return min(retained for _, retained in scores.values()) < RETENTION_FLOOR


def describe(scores):
    """scores as a line: 'flip 93.1%, shift 92.0%, ...'."""
    return ", ".join(f"{kind} {accuracy:.1%}" for kind, (accuracy, _) in scores.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="the exported program (.pt2)")
    parser.add_argument("--dataset", choices=sorted(cifar.LAYOUTS), help="score on this test set")
    parser.add_argument("--data-root", type=Path, default=cifar.DATA_ROOT, help="where the datasets are")
    parser.add_argument("--predict", type=Path, help="uint8 images (N, 3, 32, 32) in a .npy file")
    parser.add_argument("--out", type=Path, help="where --predict writes the predicted classes (.npy)")
    args = parser.parse_args(argv)
    if args.predict is not None:
        if args.out is None:
            parser.error("--predict needs --out")
        np.save(args.out, predict(args.model, np.load(args.predict, allow_pickle=False)))
        return 0
    if args.dataset is None:
        parser.error("give --dataset, or --predict with --out")
    dataset = cifar.load(args.dataset, args.data_root)
    clean = predict(args.model, dataset.test_images.numpy())
    check = RobustnessCheck.draw(dataset.test_images.numpy(), np.random.default_rng())
    scores = check.scores(clean, predict(args.model, check.images), dataset.test_labels.numpy(),
                          dataset.num_classes)
    verdict = ("it keeps less than half its accuracy above chance under some: the grader would withhold its bonus "
               "until a TA has reviewed it" if collapses(scores) else "it keeps enough of its accuracy under each")
    print(f"{args.model}: test accuracy {float((clean == dataset.test_labels.numpy()).mean()):.2%} on "
          f"{dataset.describe()}\nperturbed copies of {len(check.indices)} test images: {describe(scores)}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
