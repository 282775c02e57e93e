"""A training run's state at the end of an epoch, so that a run stopped at any moment (a kill, a crash, a recycled
Colab machine) resumes at the next epoch and ends as it would have without the interruption.

The state is everything the remaining epochs depend on: the weights and buffers, the optimizer's momentum, the loss
scaler, the position in the learning-rate schedule, the moving average of the weights, the generator that shuffles
and augments the data, the global random number generators, and the history so far. save() writes it to a
temporary file and then renames that over resume.pt, so a kill while writing leaves the previous epoch's state.
"""
import os
import random
from pathlib import Path

import numpy as np
import torch

RESUME_FILE = "resume.pt"


def atomic_save(value, path):
    """torch.save value to path through a temporary file, so that path holds either the old or the new value."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(value, partial)
    os.replace(partial, path)


def save(out_dir, state):
    """Write a run's state (tensors, numbers, strings, lists and dicts) to out_dir/resume.pt, atomically."""
    atomic_save(state, Path(out_dir) / RESUME_FILE)


def load(out_dir, device):
    """The state saved in out_dir, its tensors on device, or None where there is none."""
    path = Path(out_dir) / RESUME_FILE
    return torch.load(path, map_location=device, weights_only=True) if path.is_file() else None


def discard(out_dir):
    """Remove the resume state of a run that has finished: it is twice the size of the model."""
    (Path(out_dir) / RESUME_FILE).unlink(missing_ok=True)


def random_states(device):
    """The states of every global random number generator a model's forward pass may draw from (dropout, say)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_random_states(states, device):
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(states["torch"].cpu())
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), position, has_gauss, cached))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)
