"""How long the comparison grid and the bonus will take on this machine, measured before they start.

measure() times each architecture on the device as a run would execute it without torch.compile: a few training
steps in each memory layout (normlab.execution, whose timings the grid's runs then reuse instead of timing again)
and a few evaluation batches. A run's time is then predicted from the steps and test images it has. Left out:
torch.compile, which a run uses only where it is predicted to pay, and the checkpoint after every epoch (under a
second each on a local disk, more on a network drive such as Google Drive).
"""
import time
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from normlab.batches import DeviceBatches, eval_batch_size
from normlab.data import NUM_CLASSES, TEST_SIZE, TRAIN_SIZE
from normlab.devices import autocast_dtype, device_name, synchronize
from normlab.execution import candidate_executions, timings_for
from normlab.session import Execution
from normlab.train import evaluate

EVAL_PASSES = 2  # timed passes over one evaluation batch, after an untimed one (cuDNN autotuning)


@dataclass(frozen=True)
class Timing:
    """What one architecture costs on the device."""

    step_seconds: float        # a training step of a full batch, in its faster eager layout
    eval_image_seconds: float  # evaluating one test image


def run_seconds(timing, config, train_size=TRAIN_SIZE, test_size=TEST_SIZE):
    """Predicted seconds of one run: config.epochs epochs of full batches, and an evaluation after each, the last
    with flip test-time augmentation (a second pass)."""
    steps = config.epochs * (train_size // config.batch_size)
    return steps * timing.step_seconds + (config.epochs + 1) * test_size * timing.eval_image_seconds


def grid_seconds(timings, grid):
    """Predicted seconds of every run of grid (a normlab.experiments.Grid), one after another; timings maps
    (norm_type, stem) to a Timing."""
    sizes = (grid.train_size or TRAIN_SIZE, grid.test_size or TEST_SIZE)
    return sum(run_seconds(timings[run.norm_type, run.stem], grid.train, *sizes) for run in grid.runs())


def measure(build_model, variants, config, device, base_width=64, num_groups=4, progress=True):
    """A Timing per (norm_type, stem) in variants, of build_model's models on device with config."""
    generator = torch.Generator().manual_seed(0)
    count = max(config.batch_size, config.eval_batch_size)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, NUM_CLASSES["cifar10"], (count,), generator=generator)
    candidates = candidate_executions(config, device)
    eager = [c for c in candidates if not c.compile] or candidates
    timings = {}
    for norm_type, stem in tqdm(variants, desc="timing each model", disable=not progress):
        model = build_model(norm_type=norm_type, stem=stem, num_classes=NUM_CLASSES["cifar10"], base_width=base_width,
                            num_groups=num_groups)
        fastest = min(timings_for(model, config, device, images, labels, eager), key=lambda t: t["step_seconds"])
        memory_format = Execution(fastest["channels_last"], fastest["compile"]).memory_format
        model = model.to(device, memory_format=memory_format)
        timings[norm_type, stem] = Timing(fastest["step_seconds"],
                                          eval_image_seconds(model, config, device, images, labels, memory_format))
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the memory the trials held goes back to the GPU, for the training processes
    return timings


def eval_image_seconds(model, config, device, images, labels, memory_format):
    """Eval-mode seconds per image of model on device (already there, in memory_format)."""
    size = eval_batch_size(TEST_SIZE, min(config.eval_batch_size, len(labels)))
    batch = next(DeviceBatches(images[:size], labels[:size], device, size, memory_format).epoch(shuffle=False))
    dtype = autocast_dtype(config.amp, device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    evaluate(model, [batch], autocast)
    synchronize(device)
    started = time.perf_counter()
    evaluate(model, [batch] * EVAL_PASSES, autocast)
    synchronize(device)
    return (time.perf_counter() - started) / (EVAL_PASSES * size)


def duration(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def print_estimate(build_model, grid, bonus_config, device, devices=1):
    """Time grid's models on device, then print how long the grid will take (shared among `devices` GPUs), how
    long the bonus will take (ResNet-18 with the CIFAR stem and BN, on both datasets, with bonus_config), and how
    to train less."""
    variants = list(dict.fromkeys((run.norm_type, run.stem) for run in grid.runs()))
    timings = measure(build_model, variants, grid.train, device, grid.base_width, grid.num_groups)
    bonus = measure(build_model, [("BN", "cifar")], bonus_config, device, progress=False)["BN", "cifar"]
    total = grid_seconds(timings, grid)
    bonus_total = len(NUM_CLASSES) * run_seconds(bonus, bonus_config)
    shared = f", about {duration(total / devices)} shared among {devices} GPUs" if devices > 1 else ""
    one_dataset = replace(grid, datasets=grid.datasets[:1])
    fewer_epochs = replace(grid, train=grid.train.replace(epochs=max(1, grid.train.epochs // 2)))
    dtype = autocast_dtype(grid.train.amp, device)
    print(f"Measured on {device_name(device)} ({str(dtype).replace('torch.', '') if dtype else 'float32'}), "
          "without torch.compile, which the runs use only where it is predicted to pay:")
    print(f"- the grid, {len(grid.runs())} runs x {grid.train.epochs} epochs: about {duration(total)}{shared}")
    print(f"- the bonus, {len(NUM_CLASSES)} runs x {bonus_config.epochs} epochs: about {duration(bonus_total)}")
    print(f"Run All trains the grid, then the bonus: about {duration(total / devices + bonus_total)} in all. "
          f"To train less, set full_grid above to "
          f"experiments.Grid(datasets={one_dataset.datasets!r}) (about {duration(grid_seconds(timings, one_dataset))})"
          f" or experiments.Grid(train=train.TrainConfig(epochs={fewer_epochs.train.epochs})) "
          f"(about {duration(grid_seconds(timings, fewer_epochs))}), and bonus_config to fewer epochs.")
