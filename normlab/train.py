"""A fast CIFAR training loop: the whole dataset lives on the device, augmentation runs there too.

    python -m normlab.train [--dataset cifar10] [--norm BN] [--stem cifar] [--epochs 30] [--export FILE]

trains the notebook's ResNet-18 with the recipe of TrainConfig (the command behind BENCHMARKS.md's figures).

Per step the loop gathers a batch of uint8 images on the device, crops (zero padding 4) and flips it there,
normalizes it, and runs the model in channels_last under bf16 autocast (fp16 with loss scaling on GPUs without
bf16). There is no DataLoader and no host-to-device copy inside an epoch. It evaluates after every epoch, writes a
JSON history as it goes and a checkpoint at the end, and runs on CUDA, MPS and the CPU.
"""
import argparse
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from normlab import data as cifar
from normlab.data import MEAN, STD


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run. The defaults are the recipe documented in BENCHMARKS.md."""

    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.2               # peak learning rate of the one-cycle schedule
    warmup_fraction: float = 0.15  # share of all steps spent warming up linearly from lr / 10
    schedule: str = "onecycle"    # "onecycle": linear warm-up, then cosine decay to 0; "cosine": cosine decay only
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4    # on weights of convolutions and linear layers; none on biases and norm γ, β
    label_smoothing: float = 0.1
    padding: int = 4              # random crop of a zero-padded image
    flip: bool = True
    amp: str = "auto"             # "auto", "bf16", "fp16" or "off"
    channels_last: bool = True
    compile: bool = False         # torch.compile the model; eval outputs are checked against eager mode
    eval_batch_size: int = 1024
    seed: int = 0

    def replace(self, **changes):
        return replace(self, **changes)


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
    """Crop each zero-padded image at its own offset: images (N, C, H, W), rows/cols (N,) in [0, 2 * padding]."""
    n, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)
    row_index = rows[:, None, None] + torch.arange(height, device=images.device)[None, :, None]
    col_index = cols[:, None, None] + torch.arange(width, device=images.device)[None, None, :]
    batch_index = torch.arange(n, device=images.device)[:, None, None]
    return padded[batch_index, row_index, col_index].permute(0, 3, 1, 2)


def flip_where(images, flips):
    """Mirror the images whose entry in flips (N,) is True, left to right."""
    return torch.where(flips[:, None, None, None], images.flip(3), images)


class DeviceBatches:
    """Shuffled, augmented, normalized batches drawn from uint8 images that stay on the device."""

    def __init__(self, images, labels, device, config, seed, augment):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.device = device
        self.config = config
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)
        shape = (1, 3, 1, 1)
        self.scale = (1 / (255 * torch.tensor(STD))).reshape(shape).to(device)
        self.shift = (-torch.tensor(MEAN) / torch.tensor(STD)).reshape(shape).to(device)

    def __len__(self):
        return math.ceil(len(self.labels) / self.config.batch_size)

    def normalize(self, images):
        x = images.float() * self.scale + self.shift
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x.contiguous()

    def epoch(self, shuffle=True):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * self.config.padding + 1, (2, n), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        order, offsets, flips = order.to(self.device), offsets.to(self.device), flips.to(self.device)
        for start in range(0, n, self.config.batch_size):
            index = order[start:start + self.config.batch_size]
            images = self.images[index]
            if self.augment:
                if self.config.padding:
                    images = crop_at(images, offsets[0, index], offsets[1, index], self.config.padding)
                if self.config.flip:
                    images = flip_where(images, flips[index])
            yield self.normalize(images), self.labels[index]


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


@torch.no_grad()
def evaluate(model, batches, autocast, label_smoothing=0.0):
    """Mean cross-entropy and accuracy of model over batches, in eval mode."""
    model.eval()
    loss_sum = correct = count = 0
    for x, y in batches:
        with autocast:
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum", label_smoothing=label_smoothing)
        correct += (logits.argmax(dim=1) == y).sum()
        count += len(y)
    return float(loss_sum) / count, float(correct) / count


class Session:
    """A model on its device with everything a training step needs: autocast, loss scaling, SGD with Nesterov
    momentum, the learning-rate schedule and, optionally, torch.compile."""

    def __init__(self, model, config, device, total_steps):
        self.config = config
        self.device = device
        self.model = model.to(device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dtype = autocast_dtype(config.amp, device)
        self.autocast = torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, total_steps, config))
        self.step_model = torch.compile(self.model) if config.compile else self.model

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


def train(model, data, config=TrainConfig(), device=None, out_dir=None, progress=True, label=None,
          metadata=None):
    """Train model on data (a normlab.data.Cifar) and return the history as a dict.

    The history holds the config, the device, the data's origin and one record per epoch: train_loss,
    train_accuracy, test_loss, test_accuracy, train_seconds, eval_seconds and lr. With out_dir it is written to
    out_dir/history.json after every epoch, and the final weights to out_dir/checkpoint.pt. A run whose loss stops
    being finite ends early with status "diverged". metadata (a dict) is stored in the history as it is.
    """
    device = torch.device(device) if device is not None else best_device()
    seed_everything(config.seed)
    train_batches = DeviceBatches(data.train_images, data.train_labels, device, config, config.seed, augment=True)
    eval_config = config.replace(batch_size=config.eval_batch_size)
    test_batches = DeviceBatches(data.test_images, data.test_labels, device, eval_config, config.seed, augment=False)
    session = Session(model, config, device, config.epochs * len(train_batches))
    history = {
        "run": label, "status": "running", "config": asdict(config), "device": device_name(device),
        "autocast": session.precision,
        "data": {"name": data.name, "synthetic": data.synthetic, "train_size": len(data.train_labels),
                 "test_size": len(data.test_labels), "num_classes": data.num_classes},
        "parameters": sum(p.numel() for p in model.parameters()), **(metadata or {}), "epochs": [],
    }
    epochs = tqdm(range(1, config.epochs + 1), desc=label or "training", disable=not progress, leave=True)
    for epoch in epochs:
        session.model.train()
        synchronize(device)
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        lr = session.optimizer.param_groups[0]["lr"]
        for x, y in tqdm(train_batches.epoch(), total=len(train_batches), desc=f"epoch {epoch}", leave=False,
                         disable=not progress):
            loss, logits = session.step(x, y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
        synchronize(device)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        test_loss, test_accuracy = evaluate(session.step_model, test_batches.epoch(shuffle=False), session.autocast)
        synchronize(device)
        count = len(data.train_labels)
        record = {"epoch": epoch, "train_loss": float(loss_sum) / count, "train_accuracy": float(correct) / count,
                  "test_loss": test_loss, "test_accuracy": test_accuracy, "train_seconds": train_seconds,
                  "eval_seconds": time.perf_counter() - started, "lr": lr}
        history["epochs"].append(record)
        epochs.set_postfix(loss=f"{record['train_loss']:.3f}", test_acc=f"{test_accuracy:.3f}")
        if not math.isfinite(record["train_loss"]):
            history["status"] = "diverged"
            break
        _write_history(history, out_dir)
    if history["status"] == "running":
        history["status"] = "complete"
    if config.compile:
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
    parser.add_argument("--compile", action="store_true", help="torch.compile, checked against eager mode")
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
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, compile=args.compile)
    label = f"{args.dataset}-{args.norm}-{args.stem}"
    history = train(model, dataset, config, out_dir=Path(args.out) / label, label=label)
    epochs = history["epochs"]
    print(f"{label} on {history['device']} ({history['autocast']}): final test accuracy "
          f"{epochs[-1]['test_accuracy']:.2%}, best {max(e['test_accuracy'] for e in epochs):.2%}, "
          f"{sum(e['train_seconds'] for e in epochs) / len(epochs):.2f} s per training epoch, status "
          f"{history['status']}" + (", SYNTHETIC data" if dataset.synthetic else ""))
    if args.export:
        print(f"exported to {export_model(model, args.export)}")


if __name__ == "__main__":
    main()
