"""Provided code for the normalization-layers assignment. Students use it; they do not edit it.

- normlab.gradcheck: CS231n-style relative error and centred-difference gradients (Q1–Q2 checks).
- normlab.checks: behavioural checks of normalization layers, shortcuts and stems (Q3–Q5 checks).
- normlab.data: CIFAR-10/100 download, loading, caching, and a synthetic stand-in in the same on-disk format.
- normlab.train: the GPU-resident CIFAR training loop, resumable after every epoch; its parts are normlab.devices
  (device and precision), normlab.batches (data on the device), normlab.session (one step), normlab.execution
  (memory layout and torch.compile, timed) and normlab.checkpoint (the state a run resumes from).
- normlab.experiments: the norm x stem comparison grid, its summary, and its plots (normlab.plots).
- normlab.estimate: how long the grid and the bonus will take on this machine's GPU.
- normlab.evaluate: scores an exported .pt2 model on the CIFAR test set (the bonus).
- normlab.bench: training-throughput benchmark against a naive DataLoader loop.
- normlab.places: Colab, Kaggle or elsewhere, and where the runs and the data live there (its settings).
"""
from normlab import places

# What students submit for the bonus, by dataset.
BONUS_FILES = {"cifar10": "bonus_cifar10.pt2", "cifar100": "bonus_cifar100.pt2"}

# Where training runs are written (runs/grid is submitted): on Colab on Google Drive, where a recycled machine cannot
# take them along; NORMLAB_RUNS moves them (normlab.places holds the settings).
RUNS_ROOT = places.runs_root()
