"""A training run's state at the end of an epoch, so that a run stopped at any moment (a kill, a crash, a recycled
Colab machine) resumes at the next epoch and ends as it would have without the interruption.

The state is everything the remaining epochs depend on: the weights and buffers, the optimizer's momentum, the loss
scaler, the position in the learning-rate schedule, the moving average of the weights, the generator that shuffles
and augments the data, the global random number generators, and the history so far. save() writes it to a
temporary file and then renames that over resume.pt, so a kill while writing leaves the previous epoch's state.

A run kept on Google Drive (normlab.places) saves its state to the local disk after every epoch instead, and copies
it to Drive by time (ResumeState): Drive keeps every replaced file in its trash, counted against the 15 GB quota,
and the grid would replace a resume.pt of up to 135 MB 580 times. A recycled machine then loses at most the epochs
since the last copy; the run still ends as it would have without the interruption.
"""
import hashlib
import os
import random
import shutil
import time
import typing
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


class ResumeState:
    """The resume state of the run in out_dir, saved after every epoch.

    Where out_dir is on Google Drive, save() writes to a folder of its own under places.local_state_root() and
    copies that file to out_dir when places.drive_save_seconds() have passed since this object was made or last
    copied; flush() copies it at once (on a stop or a crash). Elsewhere save() writes to out_dir itself. load()
    returns the later of the two states, so a restarted kernel on the same machine loses nothing.
    """

    def __init__(self, out_dir):
        from normlab import places

        self.out_dir = Path(out_dir)
        on_drive = places.is_on_drive(out_dir)
        digest = hashlib.sha1(str(self.out_dir.resolve()).encode()).hexdigest()[:16]
        self.local_dir = places.local_state_root() / digest if on_drive else None
        self.copy_every_seconds = places.drive_save_seconds()
        self.last_copied = time.monotonic()
        self.uncopied = False

    def save(self, state):
        if self.local_dir is None:
            save(self.out_dir, state)
            return
        save(self.local_dir, state)
        self.uncopied = True
        if time.monotonic() - self.last_copied >= self.copy_every_seconds:
            self.flush()

    def flush(self):
        """Copy a state that only the local disk holds to out_dir, through a temporary file."""
        if not self.uncopied or self.local_dir is None:
            return
        target = self.out_dir / RESUME_FILE
        partial = target.with_name(target.name + ".partial")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.local_dir / RESUME_FILE, partial)
        os.replace(partial, target)
        self.last_copied, self.uncopied = time.monotonic(), False

    def load(self, device):
        """The latest saved state, its tensors on device, or None where there is none."""
        states = [load(folder, device) for folder in (self.out_dir, self.local_dir) if folder is not None]
        return max((s for s in states if s is not None), key=lambda s: s["epoch"], default=None)

    def discard(self):
        """Remove the state of a run that has finished: it is twice the size of the model."""
        for folder in (self.out_dir, self.local_dir):
            if folder is not None:
                discard(folder)


def random_states(device):
    """The states of every global random number generator a model's forward pass may draw from (dropout, say)."""
    # np.random's legacy generator is MT19937, whose state is this tuple (typeshed allows a dict too)
    kind, keys, position, has_gauss, cached = typing.cast(tuple[str, np.ndarray, int, int, float],
                                                          np.random.get_state())
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
