"""How long the comparison grid and the bonus will take, and where to train them.

    python -m normlab.estimate

times the notebook's models on this machine's GPU and prints how long the grid and the bonus will take there; on
a machine without a CUDA GPU that this torch can run on, it says why, where to train instead (Colab or Kaggle,
with a T4) and how long it takes there (EXPECTED_TIMES).

measure() times each architecture on the device as a run would execute it without torch.compile: a few training
steps in each memory layout (normlab.execution, whose timings the grid's runs then reuse instead of timing again)
and a few evaluation batches. A run's time is then predicted from the steps and test images it has. Left out:
torch.compile, which a run uses only where it is predicted to pay, and the checkpoint after every epoch (under a
second each on a local disk, more on a network drive such as Google Drive).
"""
import argparse
import time
from dataclasses import dataclass, replace
from typing import Optional

import torch
from tqdm.auto import tqdm

from normlab.batches import DeviceBatches, eval_batch_size
from normlab.data import NUM_CLASSES, TEST_SIZE, TRAIN_SIZE
from normlab.devices import autocast_dtype, best_device, cuda_problem, device_name, synchronize
from normlab.execution import candidate_executions, timings_for
from normlab.session import Execution
from normlab.train import evaluate

HOUR, MINUTE = 3600, 60


@dataclass(frozen=True)
class ExpectedTime:
    """How long the notebook's full grid (20 runs x 30 epochs) and the bonus (2 runs x 60 epochs) take on one GPU
    of a class, in seconds, (low, high)."""

    gpu: str
    grid: tuple
    bonus: tuple


# The one source of the time figures that docs/students.md, BENCHMARKS.md and the notebook show (a test keeps
# them equal).
# ESTIMATED, NOT MEASURED: from the models' FLOP counts and each GPU's published training throughput (BENCHMARKS.md
# shows the arithmetic); no GPU has run the grid yet. The notebook's time-estimate cell measures the student's GPU.
EXPECTED_BASIS = "estimated, not measured"
EXPECTED_TIMES = (
    ExpectedTime("T4 (Colab, Kaggle), in fp16", (1.5 * HOUR, 3 * HOUR), (30 * MINUTE, 45 * MINUTE)),
    ExpectedTime("RTX 3060", (1.2 * HOUR, 2.5 * HOUR), (20 * MINUTE, 45 * MINUTE)),
    ExpectedTime("RTX 3090", (35 * MINUTE, 75 * MINUTE), (10 * MINUTE, 20 * MINUTE)),
    ExpectedTime("RTX 4090", (25 * MINUTE, 45 * MINUTE), (6 * MINUTE, 11 * MINUTE)),
    ExpectedTime("A100", (15 * MINUTE, 35 * MINUTE), (4 * MINUTE, 7 * MINUTE)),
    ExpectedTime("H100", (10 * MINUTE, 20 * MINUTE), (2 * MINUTE, 4 * MINUTE)),
)
WHERE_TO_TRAIN = EXPECTED_TIMES[0]


def span(seconds):
    """(low, high) seconds as the tables write them: "1.5–3 h" or "30–45 min"."""
    low, high = seconds
    if high >= 90 * MINUTE:
        return f"{low / HOUR:g}–{high / HOUR:g} h"
    return f"{low / MINUTE:g}–{high / MINUTE:g} min"


def expected_times_table():
    """EXPECTED_TIMES as the markdown table that docs/students.md and the notebook show."""
    rows = ["| GPU | the grid (20 runs x 30 epochs) | the bonus (2 runs x 60 epochs) |", "|---|---|---|"]
    return "\n".join(rows + [f"| {e.gpu} | {span(e.grid)} | {span(e.bonus)} |" for e in EXPECTED_TIMES])


def where_to_train(reason):
    """What to do without a GPU to train on here (reason says why there is none): the text that the notebook's
    time-estimate cell and `python -m normlab.estimate` print."""
    t4 = WHERE_TO_TRAIN
    return (f"{reason}\n"
            f"Train on a T4 GPU instead: on Colab, Runtime > Change runtime type > T4 GPU; on Kaggle, Settings > "
            f"Accelerator > GPU T4 x2. There the grid (20 runs x 30 epochs) takes about {span(t4.grid)} and the bonus "
            f"(2 runs x 60 epochs) about {span(t4.bonus)} ({EXPECTED_BASIS}; the notebook's time-estimate cell "
            "measures the GPU you get). To train less, train the grid on one dataset or with fewer epochs: the "
            "time-estimate cell says how.\n"
            "Without a GPU the notebook's training cells run a tiny smoke configuration on synthetic data: it shows "
            "that your code runs, not how the norms compare.")


def no_gpu_reason():
    """Why this machine has no CUDA GPU to train on, in words."""
    return cuda_problem() or "This machine has no CUDA GPU that torch can see, so training here would run on the CPU."

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


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    if best_device().type != "cuda":
        print(where_to_train(no_gpu_reason()))
        return
    from normlab.experiments import Grid, training_devices
    from normlab.notebook import load_models
    from normlab.train import TrainConfig

    grid, bonus_config, build_model = Grid(), TrainConfig(epochs=60), load_models().resnet18
    print_estimate(build_model, grid, bonus_config, best_device(),
                   devices=len(training_devices(build_model, grid)))


if __name__ == "__main__":
    main()
