"""A fast CIFAR training loop: the whole dataset lives on the device, augmentation runs there too.

    python -m normlab.train [--dataset cifar10] [--norm BN] [--stem cifar] [--epochs 30] [--export FILE]

trains the notebook's ResNet-18 with the recipe of TrainConfig (the command behind BENCHMARKS.md's figures).

Per step the loop gathers a batch of uint8 images on the device, crops (zero padding 4) and flips it there,
normalizes it (normlab.batches), and runs the model under autocast in the precision that suits the device
(normlab.devices: bf16 where it is native, fp16 with loss scaling on older GPUs) with a fused SGD update. There is
no DataLoader and no host-to-device copy inside an epoch. Every shape is static: an epoch drops its last partial
batch (the data is reshuffled every epoch, so nothing is lost over training) and evaluation uses a batch size that
divides the test set, so torch.compile compiles once per mode and cuDNN tunes once.

How the model executes (channels_last or not, torch.compile or not) is chosen per model by timing the candidates
on the device (normlab.execution). Over the last epochs the loop keeps an exponential moving average of the
weights (BN statistics included); the model holds it when train() returns, and its final evaluation adds flip
test-time augmentation. The loop evaluates after every epoch and writes a JSON history as it goes; with an out_dir
it also saves its whole state after every epoch (normlab.checkpoint), so that a stopped run resumes at the next
epoch. It runs on CUDA, MPS and the CPU.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from normlab import RUNS_ROOT, checkpoint
from normlab import data as cifar
from normlab.batches import DeviceBatches, eval_batch_size
from normlab.data import MEAN, STD
from normlab.devices import best_device, device_name, synchronize
from normlab.execution import architecture, choose_execution, mark_compiled
from normlab.session import Session, WeightAverage


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run. The defaults are the recipe documented in BENCHMARKS.md.

    channels_last and compile change how the model executes, not what it learns. None leaves the choice to
    normlab.execution.choose_execution, which times the candidates on the device (torch.compile only on CUDA).
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
    amp: str = "auto"             # "auto" (per device: normlab.devices), "bf16", "fp16" or "off"
    channels_last: Optional[bool] = None
    compile: Optional[bool] = None  # torch.compile the model; eval outputs are checked against eager mode
    tune_steps: int = 5           # timed steps per candidate execution, after TUNE_WARMUP_STEPS untimed ones
    tune_share: float = 0.02      # time candidates only if their steps are at most this share of the run's steps
    eval_batch_size: int = 1000   # at most: evaluation uses the largest divisor of the test-set size up to this
    seed: int = 0

    def replace(self, **changes):
        return replace(self, **changes)


class TrainingStopped(KeyboardInterrupt):
    """Training stopped by the user (the notebook's stop button, Ctrl+C), with a message that says what was kept and
    how to resume. Jupyter shows the message alone (IPython shows what _render_traceback_ returns): the traceback
    through torch of the KeyboardInterrupt would only hide it."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


def stopped_during(name, epoch, epochs, out_dir, saved_epoch):
    """What a run stopped during an epoch tells the student: what is kept, and how to go on."""
    said = f"{name}: stopped during epoch {epoch} of {epochs}. "
    if out_dir is None:
        return said + "Nothing of it was saved (it has no out_dir): running it again starts from the first epoch."
    if saved_epoch < 1:
        return said + (f"No epoch had finished, so nothing was saved in {out_dir}: running it again starts from the "
                       "first epoch.")
    return said + (f"Its state after epoch {saved_epoch} is saved in {out_dir}: run the cell (or the command) again "
                   f"and it resumes from there, losing only the epoch in progress.")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], autocast: torch.autocast,
             tta: bool = False) -> dict:
    """Eval-mode mean cross-entropy and accuracy of model over batches: {"test_loss", "test_accuracy"}. With tta,
    also "tta_test_accuracy": the accuracy of the summed logits of each image and its mirror image."""
    model.eval()
    loss_sum: Union[float, torch.Tensor] = 0.0
    correct: Union[int, torch.Tensor] = 0
    tta_correct: Union[int, torch.Tensor] = 0
    count = 0
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


def timing_first(batches, device, timing):
    """Yield the batches; when the second is asked for, store in timing["seconds"] how long the first took to
    process, its work on the device included."""
    started = time.perf_counter()
    for index, batch in enumerate(batches):
        if index == 1:
            synchronize(device)
            timing["seconds"] = time.perf_counter() - started
        yield batch


def excess_of_first(first_seconds, total_seconds, count):
    """How much longer the first of count like pieces of work took than the others did on average (0 if unknown)."""
    if first_seconds is None or count < 2:
        return 0.0
    return max(0.0, first_seconds - (total_seconds - first_seconds) / (count - 1))


def train_epoch(session: Session, batches: DeviceBatches, average: Optional[WeightAverage], progress: bool,
                description: str, warm_up: bool = False) -> dict:
    """One epoch of training steps, each followed by an update of average (a WeightAverage or None). With warm_up,
    what the first step took beyond a later one (compiling, cuDNN autotuning) is reported as warmup_seconds and
    left out of train_seconds, so that train_seconds compares epochs and norms fairly.

    A step whose loss is not finite is counted in skipped_steps and left out of train_loss (NaN if no step's loss
    was finite): in fp16 the loss scaler skips it and leaves the weights as they were (see diverged)."""
    session.model.train()
    synchronize(session.device)
    started = time.perf_counter()
    loss_sum = torch.zeros((), device=session.device)
    finite_steps = torch.zeros((), device=session.device, dtype=torch.long)
    correct = torch.zeros((), device=session.device, dtype=torch.long)
    lr = session.optimizer.param_groups[0]["lr"]
    first: dict[str, float] = {}
    steps = timing_first(batches.epoch(), session.device, first) if warm_up else batches.epoch()
    for x, y in tqdm(steps, total=len(batches), desc=description, leave=False, disable=not progress):
        loss, logits = session.step(x, y)
        if average is not None:
            average.update()
        finite = torch.isfinite(loss)
        loss_sum += torch.where(finite, loss, 0.0) * len(y)
        finite_steps += finite
        correct += (logits.argmax(dim=1) == y).sum()
    synchronize(session.device)
    seconds = time.perf_counter() - started
    warmup = excess_of_first(first.get("seconds"), seconds, len(batches))
    count, finite_count = len(batches) * batches.batch_size, int(finite_steps) * batches.batch_size
    return {"train_loss": float(loss_sum) / finite_count if finite_count else math.nan,
            "skipped_steps": len(batches) - int(finite_steps), "train_accuracy": float(correct) / count,
            "train_seconds": seconds - warmup, "warmup_seconds": warmup, "lr": lr}


def diverged(record: dict, model: nn.Module) -> bool:
    """Whether a run cannot go on after the epoch of record: no training step of it had a finite loss, or the
    weights are no longer finite. In bf16 or float32 a step with a non-finite loss makes the weights non-finite. In
    fp16 the activations of a network without normalization can exceed fp16's range (65504) where bf16's, that of
    float32, holds them: the loss scaler skips such a step without touching the weights, so a few of them are no
    divergence, while an epoch of nothing else is."""
    return not math.isfinite(record["train_loss"]) or \
        not bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def timed_evaluation(session: Session, batches: DeviceBatches, tta: bool = False, warm_up: bool = False) -> dict:
    """evaluate() with eval_seconds; with warm_up, the first batch's extra time apart, as in train_epoch."""
    synchronize(session.device)
    started = time.perf_counter()
    first: dict[str, float] = {}
    test_batches = timing_first(batches.epoch(shuffle=False), session.device, first) if warm_up \
        else batches.epoch(shuffle=False)
    result = evaluate(session.step_model, test_batches, session.autocast, tta)
    synchronize(session.device)
    seconds = time.perf_counter() - started
    warmup = excess_of_first(first.get("seconds"), seconds, len(batches))
    return {**result, "eval_seconds": seconds - warmup, "warmup_seconds": warmup}


def describe_data(data):
    return {"name": data.name, "synthetic": data.synthetic, "train_size": len(data.train_labels),
            "test_size": len(data.test_labels), "num_classes": data.num_classes}


def run_identity(model, data, config, metadata):
    """A digest of what decides a run's course: its settings, its model's layers and shapes, and its data."""
    shapes = [(name, list(tensor.shape)) for name, tensor in model.state_dict().items()]
    described = [asdict(config), architecture(model, classifier=True), shapes, describe_data(data), metadata]
    return hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def finished_run(out_dir, identity):
    """The history in out_dir if it is of this run, finished, with its final weights beside it; else None."""
    path = Path(out_dir) / "history.json" if out_dir is not None else None
    if path is None or not path.is_file() or not (path.parent / "checkpoint.pt").is_file():
        return None
    history = json.loads(path.read_text())
    return history if history.get("identity") == identity and history["status"] != "running" else None


def saved_state(resume_state, out_dir, identity, device, label):
    """The state resume_state (a checkpoint.ResumeState or None) holds if it is this run's, else None (saying why
    where it is another run's)."""
    state = resume_state.load(device) if resume_state is not None else None
    if state is not None and state["identity"] != identity:
        tqdm.write(f"{label or out_dir}: {Path(out_dir) / checkpoint.RESUME_FILE} is the state of a run with other "
                   "settings, model or data; training from the first epoch")
        return None
    if state is not None:
        tqdm.write(f"{label or out_dir}: resuming after epoch {state['epoch']} from {out_dir}")
    return state


def end_of_epoch_state(identity, epoch, history, session, batches, average, device):
    return {"identity": identity, "epoch": epoch, "history": history, "session": session.state_dict(),
            "batches": batches.generator.get_state(), "average": average.state_dict() if average else None,
            "random": checkpoint.random_states(device)}


def restore(state, session, batches, config, device):
    """Put session, batches and the random number generators back where state left them; return the weight
    average it held, or None."""
    session.load_state_dict(state["session"])
    batches.generator.set_state(state["batches"].cpu())
    checkpoint.restore_random_states(state["random"], device)
    if state["average"] is None:
        return None
    average = WeightAverage(session.model, config.ema_decay)
    average.load_state_dict(state["average"])
    return average


def train(model, data, config=TrainConfig(), device=None, out_dir=None, progress=True, label=None,
          metadata=None, keep_weights=True):
    """Train model on data (a normlab.data.Cifar) and return the history as a dict. When it returns, model holds
    the final weights: their moving average over the last config.ema_epochs epochs.

    The history holds the config, the device, the precision, the data's origin, the execution and how it was
    chosen, and one record per epoch: train_loss, skipped_steps, train_accuracy, test_loss, test_accuracy,
    train_seconds, eval_seconds, warmup_seconds, lr, and with torch.compile compiled_graphs, the graphs compiled
    during the epoch.
    warmup_seconds is the first step's and first evaluation batch's time beyond a later one's (compiling,
    cuDNN autotuning), left out of train_seconds and eval_seconds. The last epoch's test figures are those of the
    final weights, which "final" repeats with tta_test_accuracy, their accuracy with flip test-time augmentation.
    A run that diverges (see diverged) ends early with status "diverged" and no "final"; skipped_steps counts an
    epoch's steps whose loss was not finite (train_epoch). metadata (a dict) is stored in the history as it is.

    With out_dir, the history is written to out_dir/history.json after every epoch, and the run's whole state to
    out_dir/resume.pt (normlab.checkpoint; on Google Drive by time, after every epoch on the local disk, and on a stop
    or a crash): called again with the same model, data, config and metadata, train()
    resumes after the last saved epoch, records that in history["resumed"], and ends with the same weights and
    history as an uninterrupted run (on the CPU bit for bit; on GPUs up to the nondeterminism of their kernels).
    A finished run leaves its final weights in out_dir/checkpoint.pt (unless keep_weights is False) and no resume.pt;
    called again, train() loads them into model and returns the history without training (without them, it trains
    again). Stopped by the user (KeyboardInterrupt), it raises
    TrainingStopped, which says what was kept and how to resume.
    """
    device = torch.device(device) if device is not None else best_device()
    seed_everything(config.seed)
    steps_per_epoch = len(data.train_labels) // config.batch_size
    identity = run_identity(model, data, config, metadata)
    finished = finished_run(out_dir, identity)
    if finished is not None:
        model.load_state_dict(torch.load(Path(out_dir) / "checkpoint.pt", map_location="cpu",
                                         weights_only=True)["model"])
        tqdm.write(f"{label or out_dir}: trained before ({finished['status']}); its final weights loaded")
        return finished
    resume_state = checkpoint.ResumeState(out_dir) if out_dir is not None else None
    state = saved_state(resume_state, out_dir, identity, device, label)
    first_epoch = state["epoch"] + 1 if state else 1
    choosing = time.perf_counter()
    execution, chosen = choose_execution(model, config, device, data.train_images, data.train_labels,
                                         (config.epochs - first_epoch + 1) * steps_per_epoch)
    chosen["seconds"] = time.perf_counter() - choosing
    train_batches = DeviceBatches(data.train_images, data.train_labels, device, config.batch_size,
                                  execution.memory_format, config.seed, config.padding, config.flip)
    test_batches = DeviceBatches(data.test_images, data.test_labels, device,
                                 eval_batch_size(len(data.test_labels), config.eval_batch_size),
                                 execution.memory_format)
    session = Session(model, config, device, config.epochs * steps_per_epoch, execution)
    mark_compiled(model, config, device, execution)
    average = restore(state, session, train_batches, config, device) if state else None
    session_record = {"device": device_name(device), "autocast": session.precision, "execution": chosen}
    if state:
        history = state["history"]
        history["resumed"].append({"epoch": first_epoch, **session_record})
    else:
        history = {"run": label, "status": "running", "identity": identity, "config": asdict(config),
                   **session_record, "data": describe_data(data),
                   "parameters": sum(p.numel() for p in model.parameters()), **(metadata or {}), "resumed": [],
                   "epochs": []}
    averaged_epochs = min(config.ema_epochs, config.epochs)
    # counted by hand after each finished epoch: a bar that an iterator drives misses the epoch the loop breaks in
    bar = tqdm(total=config.epochs, initial=first_epoch - 1, desc=label or "training", unit="epoch",
               disable=not progress, leave=True)
    saved_epoch, epoch = first_epoch - 1 if state else 0, first_epoch
    try:
        for epoch in range(first_epoch, config.epochs + 1):
            graphs_before = compiled_graphs() if execution.compile else 0
            if averaged_epochs and epoch == config.epochs - averaged_epochs + 1:
                average = WeightAverage(session.model, config.ema_decay)
            warm_up = epoch == first_epoch
            record = {"epoch": epoch, **train_epoch(session, train_batches, average, progress, f"epoch {epoch}",
                                                    warm_up)}
            last = epoch == config.epochs
            if last and average is not None:
                average.copy_into_model()
            evaluation = timed_evaluation(session, test_batches, tta=last, warm_up=warm_up)
            tta_test_accuracy = evaluation.pop("tta_test_accuracy", None)
            record["warmup_seconds"] += evaluation.pop("warmup_seconds")
            record.update(evaluation)
            if execution.compile:
                record["compiled_graphs"] = compiled_graphs() - graphs_before
            history["epochs"].append(record)
            bar.update()
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", test_acc=f"{record['test_accuracy']:.3f}")
            if diverged(record, session.model):
                history["status"] = "diverged"
                bar.set_postfix_str(f"diverged in epoch {epoch}: the loss is no longer finite")
                break
            if last:
                history["status"] = "complete"
                weights = f"moving average over the last {averaged_epochs} epoch(s)" if average else "last"
                history["final"] = {"weights": weights, "test_loss": record["test_loss"],
                                    "test_accuracy": record["test_accuracy"], "tta_test_accuracy": tta_test_accuracy}
                break
            if resume_state is not None:
                resume_state.save(end_of_epoch_state(identity, epoch, history, session, train_batches, average,
                                                     device))
                saved_epoch = epoch
            _write_history(history, out_dir)
    except BaseException as stop:
        if resume_state is not None:  # a stop or a crash: the last finished epoch reaches out_dir, whatever the time
            resume_state.flush()
        if isinstance(stop, KeyboardInterrupt):
            raise TrainingStopped(stopped_during(label or "the run", epoch, config.epochs, out_dir,
                                                 saved_epoch)) from None
        raise
    finally:
        bar.close()
    if execution.compile:
        history["compile_check"] = compare_with_eager(session.model, session.step_model, test_batches,
                                                      session.autocast)
    if out_dir is not None and keep_weights:  # the final weights first: a history that says finished has them beside it
        checkpoint.atomic_save({"model": session.model.state_dict(), "config": asdict(config)},
                               Path(out_dir) / "checkpoint.pt")
    _write_history(history, out_dir)
    if resume_state is not None:
        resume_state.discard()
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


def steady_epoch_seconds(history):
    """The median training seconds of an epoch, warm-up left out: what a run's speed is compared by (None for a
    run without epochs)."""
    seconds = [e["train_seconds"] for e in history["epochs"]]
    return statistics.median(seconds) if seconds else None


def warmup_seconds(history):
    """Seconds a run spent compiling and autotuning, in all its sessions: choosing its execution included."""
    chosen = [history["execution"]] + [r["execution"] for r in history.get("resumed", [])]
    return sum(e.get("warmup_seconds", 0.0) for e in history["epochs"]) + sum(c.get("seconds", 0.0) for c in chosen)


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
    wrapped = Normalized(copy.deepcopy(model)).to("cpu").to(memory_format=torch.contiguous_format).float().eval()
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
                        help="torch.compile, checked against eager mode; auto: if it pays (default: %(default)s)")
    parser.add_argument("--synthetic", action="store_true", help="train on the synthetic stand-in (offline)")
    parser.add_argument("--out", default=str(RUNS_ROOT / "recipe"),
                        help="folder for each run's history.json and checkpoint.pt; a stopped run resumes from it "
                             "(default: %(default)s, under NORMLAB_RUNS if set)")
    parser.add_argument("--export", help="also export the model as a .pt2 program to this file")
    args = parser.parse_args(argv)
    from normlab.notebook import load_models

    dataset = cifar.load_synthetic(args.dataset) if args.synthetic else cifar.load(args.dataset,
                                                                                   download_if_missing=True)
    print(dataset.describe())
    compiling = {"auto": None, "on": True, "off": False}[args.compile]
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, compile=compiling)
    seed_everything(config.seed)  # the initial weights too: two runs of one command give the same history
    model = load_models().resnet18(norm_type=args.norm, stem=args.stem, num_classes=dataset.num_classes,
                                   base_width=args.width)
    label = f"{args.dataset}-{args.norm}-{args.stem}"
    try:
        history = train(model, dataset, config, out_dir=Path(args.out) / label, label=label)
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        raise SystemExit(130) from None  # the shell's status for a program stopped by Ctrl+C
    epochs, final, execution = history["epochs"], history.get("final", {}), history["execution"]
    print(f"{label} on {history['device']} ({history['autocast']}, channels_last {execution['channels_last']}, "
          f"compile {execution['compile']}, by {execution['chosen_by']}): status {history['status']}")
    if final:
        print(f"final weights ({final['weights']}): test accuracy {final['test_accuracy']:.2%}, with flip TTA "
              f"{final['tta_test_accuracy']:.2%}")
    print(f"last epoch's weights: test accuracy {epochs[-1]['test_accuracy']:.2%}; "
          f"{steady_epoch_seconds(history):.2f} s per training epoch (median), and {warmup_seconds(history):.1f} s "
          "of choosing the execution, compiling and autotuning" + ("; SYNTHETIC data" if dataset.synthetic else ""))
    if args.export:
        print(f"exported to {export_model(model, args.export)}")


if __name__ == "__main__":
    main()
