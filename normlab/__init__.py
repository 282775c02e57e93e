"""Provided code for the normalization-layers assignment. Students use it; they do not edit it.

- normlab.gradcheck: CS231n-style relative error and centred-difference gradients (Q1–Q2 checks).
- normlab.checks: behavioural checks of normalization layers, shortcuts and stems (Q3–Q5 checks).
- normlab.data: CIFAR-10/100 download, loading, caching, and a synthetic stand-in in the same on-disk format.
- normlab.train: the GPU-resident CIFAR training loop.
- normlab.experiments: the norm x stem comparison grid, its plots and summary.
- normlab.evaluate: scores an exported .pt2 model on the CIFAR test set (the bonus).
- normlab.bench: training-throughput benchmark against a naive DataLoader loop.
"""

# What students submit for the bonus, by dataset.
BONUS_FILES = {"cifar10": "bonus_cifar10.pt2", "cifar100": "bonus_cifar100.pt2"}
