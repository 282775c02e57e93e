"""Score an exported model (.pt2) on a CIFAR test set without running any Python from its author.

    python -m normlab.evaluate bonus_cifar10.pt2 --dataset cifar10

The file must hold a torch.export program, as normlab.train.export_model writes it, that maps float32 images of
shape (N, 3, 32, 32) with values in [0, 1] to logits (N, classes). The program is a graph of PyTorch operators, so
scoring it runs no code from the notebook that made it.

The grader uses the second form, which sees no labels and writes only the predicted class of each image:

    python -m normlab.evaluate bonus_cifar10.pt2 --predict images.npy --out predictions.npy
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from normlab import data as cifar


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
    print(f"{args.model}: test accuracy {accuracy(args.model, dataset):.2%} on {dataset.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
