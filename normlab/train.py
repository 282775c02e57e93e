"""A fast CIFAR training loop: the whole dataset lives on the device, augmentation runs there too.

    python -m normlab.train [--dataset cifar10] [--norm BN] [--stem cifar] [--epochs 30] [--export FILE]

trains the notebook's ResNet-18 with the recipe of TrainConfig (the command behind BENCHMARKS.md's figures).

Per step the loop gathers a batch of uint8 images on the device, crops (zero padding 4) and flips it there,
normalizes it, and runs the model under bf16 autocast (fp16 with loss scaling on GPUs without bf16) with a fused
SGD update. There is no DataLoader and no host-to-device copy inside an epoch. Every shape is static: an epoch
drops its last partial batch (the data is reshuffled every epoch, so nothing is lost over training) and evaluation
uses a batch size that divides the test set, so torch.compile compiles once per mode and cuDNN tunes once.

How the model executes (channels_last or not, torch.compile or not) is chosen per model by timing the candidates
on the device (choose_execution): BN and the GroupNorm-based norms are fastest with different settings. Over the
last epochs the loop keeps an exponential moving average of the weights (BN statistics included); the model holds
it when train() returns, and its final evaluation adds flip test-time augmentation. The loop evaluates after every
epoch, writes a JSON history as it goes and a checkpoint at the end, and runs on CUDA, MPS and the CPU.
"""
import argparse
import copy
import json
import math
import os
import random
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from normlab import data as cifar
from normlab.data import MEAN, STD


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. The defaults are the recipe documented in BENCHMARKS.md.

    channels_last and compile change how the model executes, not what it learns. None leaves the choice to
    choose_execution, which times the candidates on the device (torch.compile only on CUDA).
    """

    epochs: int = 30
    batch_size: int = 512         # every step takes a full batch: an epoch drops the rest of its shuffled order
    lr: float = 0.2               # peak learning rate of the one-cycle schedule
    warmup_fraction: float = 0.15  # share of all steps spent warming up linearly from lr / 10
    schedule: str = "onecycle"    # "onecycle": linear warm-up, then cosine decay to 0; "cosine": cosine decay only
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4    # on weights of convolutions and linear layers; none on biases and norm γ, β
    label_smoothing: float = 0.1
    padding: int = 4              # random crop of a zero-padded image
    flip: bool = True
    ema_epochs: int = 5           # average the weights over the last ema_epochs epochs (0: keep the last weights)
    ema_decay: float = 0.99       # per step; WeightAverage ramps up to it
    amp: str = "auto"             # "auto", "bf16", "fp16" or "off"
    channels_last: Optional[bool] = None
    compile: Optional[bool] = None  # torch.compile the model; eval outputs are checked against eager mode
    tune_steps: int = 5           # timed steps per candidate execution, after TUNE_WARMUP_STEPS untimed ones
    tune_share: float = 0.02      # time candidates only if their steps are at most this share of the run's steps
    eval_batch_size: int = 1000   # at most: evaluation uses the largest divisor of the test-set size up to this
    seed: int = 0

    def replace(self, **changes):
        return replace(self, **changes)


TUNE_WARMUP_STEPS = 2  # untimed steps of each candidate: compiling and cuDNN autotuning happen here


def best_device():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU, {torch.get_num_threads()} threads"


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_supports_bf16():
    """bf16 autocast only pays on CPUs with bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(setting, device):
    """The autocast dtype for an amp setting on a device, or None for plain float32."""
    if setting not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', not {setting!r}")
    if setting == "off" or device.type == "mps":
        return None
    if setting == "bf16":
        return torch.bfloat16
    if setting == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def crop_at(images, rows, cols, padding):
    """Crop each zero-padded image at its own offset: images (N, C, H, W), rows/cols (N,) in [0, 2 * padding].

    One gather over the flattened padded images: a crop's pixel (i, j) is padded pixel (row + i, col + j)."""
    n, channels, height, width = images.shape
    padded_width = width + 2 * padding
    padded = F.pad(images, (padding, padding, padding, padding)).flatten(2)
    pixels = (torch.arange(height, device=images.device)[:, None] * padded_width
              + torch.arange(width, device=images.device)).flatten()
    index = (rows * padded_width + cols)[:, None] + pixels
    return padded.gather(2, index[:, None, :].expand(n, channels, height * width)).view(n, channels, height, width)


def flip_where(images, flips):
    """Mirror the images whose entry in flips (N,) is True, left to right."""
    return torch.where(flips[:, None, None, None], images.flip(3), images)


class DeviceBatches:
    """Batches of images that stay on the device as uint8: shuffled, augmented (a random crop of the image padded
    with `padding` zeros, a random mirroring if flip), normalized and laid out in memory_format.

    Every batch is full, so shapes never change: an epoch leaves out the last len(labels) % batch_size images of
    its order."""

    def __init__(self, images, labels, device, batch_size, memory_format=torch.contiguous_format, seed=0,
                 padding=0, flip=False):
        if not 0 < batch_size <= len(labels):
            raise ValueError(f"batch size {batch_size} does not fit {len(labels)} images")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.device = device
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.padding = padding
        self.flip = flip
        self.generator = torch.Generator().manual_seed(seed)
        shape = (1, 3, 1, 1)
        self.scale = (1 / (255 * torch.tensor(STD))).reshape(shape).to(device)
        self.shift = (-torch.tensor(MEAN) / torch.tensor(STD)).reshape(shape).to(device)

    def __len__(self):
        return len(self.labels) // self.batch_size

    def normalize(self, images):
        return (images.float() * self.scale + self.shift).contiguous(memory_format=self.memory_format)

    def epoch(self, shuffle=True):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, n), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        order, offsets, flips = order.to(self.device), offsets.to(self.device), flips.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.padding:
                images = crop_at(images, offsets[0, index], offsets[1, index], self.padding)
            if self.flip:
                images = flip_where(images, flips[index])
            yield self.normalize(images), self.labels[index]


def eval_batch_size(test_size, largest):
    """The largest divisor of test_size up to largest, so that every evaluation batch has the same shape
    (10,000 test images and at most 1,000: 1,000)."""
    return max(size for size in range(1, min(test_size, largest) + 1) if test_size % size == 0)


def parameter_groups(model, weight_decay):
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    undecayed = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]


def learning_rate_factor(step, total_steps, config):
    """Multiplier of config.lr at a given optimizer step."""
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if config.schedule != "onecycle":
        raise ValueError(f"schedule must be 'onecycle' or 'cosine', not {config.schedule!r}")
    warmup = max(1, int(config.warmup_fraction * total_steps))
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass(frozen=True)
class Execution:
    """How a model executes on its device. Neither choice changes what training computes."""

    channels_last: bool = False
    compile: bool = False  # torch.compile with static shapes

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format


class Session:
    """A model on its device with everything a training step needs: autocast, loss scaling, fused SGD with
    Nesterov momentum, the learning-rate schedule and the execution (memory layout, torch.compile)."""

    def __init__(self, model, config, device, total_steps, execution=Execution()):
        self.config = config
        self.device = device
        self.model = model.to(device, memory_format=execution.memory_format)
        self.dtype = autocast_dtype(config.amp, device)
        self.autocast = torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        # One fused kernel per step instead of one per parameter tensor (fused SGD exists for CUDA and CPU).
        update = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov, **update)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, total_steps, config))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are static, so each convolution is tuned once
        self.step_model = torch.compile(self.model, dynamic=False) if execution.compile else self.model

    def step(self, x, y):
        """One optimizer step on a batch; returns the (detached) loss and the logits."""
        with self.autocast:
            logits = self.step_model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach(), logits

    @property
    def precision(self):
        return str(self.dtype).replace("torch.", "") if self.dtype is not None else "float32"


def candidate_executions(config, device):
    """The executions to choose from: both memory layouts, and torch.compile on CUDA, unless config fixes them.
    Not torch.compile elsewhere: on the CPU, compiling ResNet-18 took minutes and was no faster (BENCHMARKS.md)."""
    layouts = [True, False] if config.channels_last is None else [config.channels_last]
    compiling = [False, True] if device.type == "cuda" else [False]
    compiling = compiling if config.compile is None else [config.compile]
    return [Execution(layout, compiled) for compiled in compiling for layout in layouts]


def time_executions(model, config, device, images, labels, executions, steps):
    """For each execution, a copy of model's median seconds per training step on one batch, and the extra seconds
    its first TUNE_WARMUP_STEPS steps took (compiling, autotuning). The timed steps alternate between the
    executions, so that all of them meet the same load on a shared machine."""
    trials, batches, timings = [], [], []
    for execution in executions:
        trial = Session(copy.deepcopy(model), config, device, TUNE_WARMUP_STEPS + steps, execution)
        trial.model.train()
        batch = next(DeviceBatches(images[:config.batch_size], labels[:config.batch_size], device,
                                   config.batch_size, execution.memory_format).epoch(shuffle=False))
        trials.append(trial)
        batches.append(batch)
        timings.append({**asdict(execution), "warmup_seconds": timed_steps(trial, batch, TUNE_WARMUP_STEPS),
                        "step_times": []})
    for round_index in range(steps):
        order = range(len(trials)) if round_index % 2 == 0 else reversed(range(len(trials)))
        for index in order:
            timings[index]["step_times"].append(timed_steps(trials[index], batches[index], 1))
    for timing in timings:
        timing["step_seconds"] = statistics.median(timing.pop("step_times"))
        timing["setup_seconds"] = max(0.0, timing.pop("warmup_seconds") - TUNE_WARMUP_STEPS * timing["step_seconds"])
    return timings


def timed_steps(session, batch, steps):
    """Seconds that `steps` training steps of session on batch take."""
    synchronize(session.device)
    started = time.perf_counter()
    for _ in range(steps):
        session.step(*batch)
    synchronize(session.device)
    return time.perf_counter() - started


_timed = {}  # what choose_execution measured, per architecture: the runs of a grid time each variant once


def choose_execution(model, config, device, images, labels, total_steps, force=False, candidates=None):
    """The candidate execution of model with the shortest predicted run, and a record of how it was chosen.

    candidates defaults to candidate_executions(config, device). Each trains a copy of model for
    config.tune_steps timed steps (time_executions), and a run of total_steps steps is predicted to take
    setup_seconds + total_steps x step_seconds. torch.compile is timed in the faster eager layout only. Timings are
    kept per architecture, device, batch size and precision for the rest of the process. Unless force, a run too
    short to pay for new timings (more than config.tune_share of its steps) takes the default instead: eager and
    NCHW wherever config leaves the choice open.
    """
    candidates = candidates or candidate_executions(config, device)
    if len(candidates) == 1:
        return candidates[0], {**asdict(candidates[0]), "chosen_by": "config"}
    key = (architecture(model), str(device), config.batch_size, config.amp, config.tune_steps, tuple(candidates))
    chosen_by = "timing (cached from an earlier run of this architecture)"
    if key not in _timed:
        first = [c for c in candidates if not c.compile] or candidates
        trials = len(first) + (len(first) < len(candidates))
        if not force and trials * (TUNE_WARMUP_STEPS + config.tune_steps) > config.tune_share * total_steps:
            default = Execution(bool(config.channels_last), bool(config.compile))
            return default, {**asdict(default), "chosen_by": "default: the run is too short to time candidates"}
        chosen_by = "timing"
        timings = time_executions(model, config, device, images, labels, first, config.tune_steps)
        fastest = min(timings, key=lambda t: t["step_seconds"])
        compiled = [c for c in candidates if c not in first and c.channels_last == fastest["channels_last"]]
        if compiled:
            timings += time_executions(model, config, device, images, labels, compiled, config.tune_steps)
        _timed[key] = timings
    timings = [{**t, "predicted_seconds": t["setup_seconds"] + total_steps * t["step_seconds"]} for t in _timed[key]]
    best = min(timings, key=lambda t: t["predicted_seconds"])
    execution = Execution(best["channels_last"], best["compile"])
    return execution, {**asdict(execution), "chosen_by": chosen_by, "timings": timings}


def architecture(model):
    """The model's layers without its classifier, as text: CIFAR-10 and CIFAR-100 variants execute alike."""
    return type(model).__name__ + "".join(repr(m) for m in model.modules()
                                          if not list(m.children()) and not isinstance(m, nn.Linear))


class WeightAverage:
    """An exponential moving average of a model's state: its parameters and floating-point buffers (BN's running
    statistics). Integer buffers (BN's num_batches_tracked) follow the model.

    It starts as a copy of the model's state. The n-th update (n = 0, 1, ...) moves each average to
    decay_n x average + (1 - decay_n) x current, with decay_n = min(decay, (1 + n) / (10 + n)): the ramp of
    tf.train.ExponentialMovingAverage, so a short window is not dominated by its starting point.
    """

    def __init__(self, model, decay):
        self.decay = decay
        self.updates = 0
        self.current = model.state_dict()  # aliases of the live tensors, which training updates in place
        self.average = {name: tensor.detach().clone() for name, tensor in self.current.items()}
        self.floats = [name for name, tensor in self.average.items() if tensor.is_floating_point()]
        self.others = [name for name in self.average if name not in self.floats]

    @torch.no_grad()
    def update(self):
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        # One kernel per step for all tensors, as torch.optim.swa_utils' EMA does.
        torch._foreach_lerp_([self.average[n] for n in self.floats], [self.current[n] for n in self.floats],
                             1 - decay)
        for name in self.others:
            self.average[name].copy_(self.current[name])
        self.updates += 1

    @torch.no_grad()
    def copy_into_model(self):
        """Overwrite the model's state with the averages."""
        torch._foreach_copy_(list(self.current.values()), list(self.average.values()))


@torch.no_grad()
def evaluate(model, batches, autocast, tta=False):
    """Eval-mode mean cross-entropy and accuracy of model over batches: {"test_loss", "test_accuracy"}. With tta,
    also "tta_test_accuracy": the accuracy of the summed logits of each image and its mirror image."""
    model.eval()
    loss_sum = correct = tta_correct = count = 0
    for x, y in batches:
        with autocast:
            logits = model(x).float()
            if tta:
                logits_mirrored = model(x.flip(3)).float()  # flip keeps x's memory layout: no recompiling
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
        if tta:
            tta_correct += ((logits + logits_mirrored).argmax(dim=1) == y).sum()
        count += len(y)
    result = {"test_loss": float(loss_sum) / count, "test_accuracy": float(correct) / count}
    if tta:
        result["tta_test_accuracy"] = float(tta_correct) / count
    return result


def compiled_graphs():
    """How many graphs torch.compile has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def train_epoch(session, batches, average, progress, description):
    """One epoch of training steps, each followed by an update of average (a WeightAverage or None)."""
    session.model.train()
    synchronize(session.device)
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=session.device)
    correct = torch.zeros((), device=session.device, dtype=torch.long)
    lr = session.optimizer.param_groups[0]["lr"]
    for x, y in tqdm(batches.epoch(), total=len(batches), desc=description, leave=False, disable=not progress):
        loss, logits = session.step(x, y)
        if average is not None:
            average.update()
        loss_sum += loss * len(y)
        correct += (logits.argmax(dim=1) == y).sum()
    synchronize(session.device)
    count = len(batches) * batches.batch_size
    return {"train_loss": float(loss_sum) / count, "train_accuracy": float(correct) / count,
            "train_seconds": time.perf_counter() - started, "lr": lr}


def timed_evaluation(session, batches, tta=False):
    synchronize(session.device)
    started = time.perf_counter()
    result = evaluate(session.step_model, batches.epoch(shuffle=False), session.autocast, tta)
    synchronize(session.device)
    return {**result, "eval_seconds": time.perf_counter() - started}


def train(model, data, config=TrainConfig(), device=None, out_dir=None, progress=True, label=None,
          metadata=None):
    """Train model on data (a normlab.data.Cifar) and return the history as a dict. When it returns, model holds
    the final weights: their moving average over the last config.ema_epochs epochs.

    The history holds the config, the device, the data's origin, the execution and how it was chosen, and one
    record per epoch: train_loss, train_accuracy, test_loss, test_accuracy, train_seconds, eval_seconds, lr, and
    with torch.compile compiled_graphs, the graphs compiled during the epoch. The last epoch's test figures are
    those of the final weights, which "final" repeats with tta_test_accuracy, their accuracy with flip test-time
    augmentation. With out_dir the history is written to out_dir/history.json after every epoch, and the final
    weights to out_dir/checkpoint.pt. A run whose loss stops being finite ends early with status "diverged" and no
    "final". metadata (a dict) is stored in the history as it is.
    """
    device = torch.device(device) if device is not None else best_device()
    seed_everything(config.seed)
    total_steps = config.epochs * (len(data.train_labels) // config.batch_size)
    if any(c.compile for c in candidate_executions(config, device)):
        from torch import _dynamo

        _dynamo.reset()  # a fresh cache per run: a grid of many variants stays under the recompile limit
    execution, chosen = choose_execution(model, config, device, data.train_images, data.train_labels, total_steps)
    train_batches = DeviceBatches(data.train_images, data.train_labels, device, config.batch_size,
                                  execution.memory_format, config.seed, config.padding, config.flip)
    test_batches = DeviceBatches(data.test_images, data.test_labels, device,
                                 eval_batch_size(len(data.test_labels), config.eval_batch_size),
                                 execution.memory_format)
    session = Session(model, config, device, total_steps, execution)
    history = {
        "run": label, "status": "running", "config": asdict(config), "device": device_name(device),
        "autocast": session.precision, "execution": chosen,
        "data": {"name": data.name, "synthetic": data.synthetic, "train_size": len(data.train_labels),
                 "test_size": len(data.test_labels), "num_classes": data.num_classes},
        "parameters": sum(p.numel() for p in model.parameters()), **(metadata or {}), "epochs": [],
    }
    averaged_epochs = min(config.ema_epochs, config.epochs)
    average = None
    epochs = tqdm(range(1, config.epochs + 1), desc=label or "training", disable=not progress, leave=True)
    for epoch in epochs:
        graphs_before = compiled_graphs() if execution.compile else 0
        if averaged_epochs and epoch == config.epochs - averaged_epochs + 1:
            average = WeightAverage(session.model, config.ema_decay)
        record = {"epoch": epoch, **train_epoch(session, train_batches, average, progress, f"epoch {epoch}")}
        last = epoch == config.epochs
        if last and average is not None:
            average.copy_into_model()
        evaluation = timed_evaluation(session, test_batches, tta=last)
        tta_test_accuracy = evaluation.pop("tta_test_accuracy", None)
        record.update(evaluation)
        if execution.compile:
            record["compiled_graphs"] = compiled_graphs() - graphs_before
        history["epochs"].append(record)
        epochs.set_postfix(loss=f"{record['train_loss']:.3f}", test_acc=f"{record['test_accuracy']:.3f}")
        if not math.isfinite(record["train_loss"]):
            history["status"] = "diverged"
            break
        if last:
            history["status"] = "complete"
            weights = f"moving average over the last {averaged_epochs} epoch(s)" if average else "last"
            history["final"] = {"weights": weights, "test_loss": record["test_loss"],
                                "test_accuracy": record["test_accuracy"], "tta_test_accuracy": tta_test_accuracy}
        _write_history(history, out_dir)
    if execution.compile:
        history["compile_check"] = compare_with_eager(session.model, session.step_model, test_batches,
                                                      session.autocast)
    _write_history(history, out_dir)
    if out_dir is not None:
        torch.save({"model": session.model.state_dict(), "config": asdict(config)}, Path(out_dir) / "checkpoint.pt")
    return history


@torch.no_grad()
def compare_with_eager(model, compiled, batches, autocast, tolerance=0.05):
    """Eval-mode logits of the compiled model against eager mode on one test batch (torch.compile has had BN/GN
    eval bugs). Relative to the largest logit; the tolerance allows for bf16 rounding."""
    model.eval()
    x, _ = next(iter(batches.epoch(shuffle=False)))
    with autocast:
        eager, fast = model(x).float(), compiled(x).float()
    difference = float((eager - fast).abs().max() / eager.abs().max().clamp_min(1e-6))
    return {"max_relative_difference": difference, "tolerance": tolerance, "ok": difference <= tolerance}


def _write_history(history, out_dir):
    if out_dir is None:
        return
    path = Path(out_dir) / "history.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(history, indent=1))
    os.replace(partial, path)


class Normalized(nn.Module):
    """A model that takes images in [0, 1] and normalizes them with the CIFAR mean and std first."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).reshape(1, 3, 1, 1))

    def forward(self, images):
        return self.model((images - self.mean) / self.std)


def export_model(model, path):
    """Export model as a self-contained torch.export program (.pt2) for normlab.evaluate.

    The program takes float32 images of shape (N, 3, 32, 32) with values in [0, 1] and returns logits (N, classes).
    """
    wrapped = Normalized(copy.deepcopy(model)).to("cpu", memory_format=torch.contiguous_format).float().eval()
    example = torch.rand(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=8192)
    program = torch.export.export(wrapped, (example,), dynamic_shapes={"images": {0: batch}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(cifar.LAYOUTS), default="cifar10")
    parser.add_argument("--norm", default="BN", help="BN, LN, IN, GN or none (default: %(default)s)")
    parser.add_argument("--stem", default="cifar", help="cifar or imagenet (default: %(default)s)")
    parser.add_argument("--width", type=int, default=64, help="channels of the first stage (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile, checked against eager mode; auto: if faster (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true", help="train on the synthetic stand-in (offline)")
    parser.add_argument("--out", default="runs/recipe", help="folder for history.json and checkpoint.pt")
    parser.add_argument("--export", help="also export the model as a .pt2 program to this file")
    args = parser.parse_args(argv)
    from normlab.notebook import load_models

    dataset = cifar.load_synthetic(args.dataset) if args.synthetic else cifar.load(args.dataset,
                                                                                   download_if_missing=True)
    print(dataset.describe())
    model = load_models().resnet18(norm_type=args.norm, stem=args.stem, num_classes=dataset.num_classes,
                                   base_width=args.width)
    compiling = {"auto": None, "on": True, "off": False}[args.compile]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, compile=compiling)
    label = f"{args.dataset}-{args.norm}-{args.stem}"
    history = train(model, dataset, config, out_dir=Path(args.out) / label, label=label)
    epochs, final, execution = history["epochs"], history.get("final", {}), history["execution"]
    print(f"{label} on {history['device']} ({history['autocast']}, channels_last {execution['channels_last']}, "
          f"compile {execution['compile']}, by {execution['chosen_by']}): status {history['status']}")
    if final:
        print(f"final weights ({final['weights']}): test accuracy {final['test_accuracy']:.2%}, with flip TTA "
              f"{final['tta_test_accuracy']:.2%}")
    print(f"last epoch's weights: test accuracy {epochs[-1]['test_accuracy']:.2%}; "
          f"{sum(e['train_seconds'] for e in epochs) / len(epochs):.2f} s per training epoch"
          + ("; SYNTHETIC data" if dataset.synthetic else ""))
    if args.export:
        print(f"exported to {export_model(model, args.export)}")


if __name__ == "__main__":
    main()
