"""Training throughput of ResNet-18 per normalization, side by side, against a naive DataLoader loop.

    python -m normlab.bench [--device cuda|cpu] [--norm BN,GN,LN,IN,none] [--steps S] [--warmup W] [--rounds R]
                            [--compile] [--grid-estimate]

All loops run in this process, on the same device, with the notebook's ResNet-18 (CIFAR stem) and the same
optimizer settings, on synthetic CIFAR-shaped data (random uint8 images):
- naive: a torchvision DataLoader whose CPU workers turn each image into a PIL image and apply RandomCrop(32,
  padding=4), RandomHorizontalFlip, ToTensor and Normalize; float32, NCHW; the loss is read back every step.
- normlab: normlab.train's loop (data and augmentation on the device, autocast in the precision normlab.devices
  picks: bf16 where native, fp16 with loss scaling on older GPUs; fused SGD) in the execution that
  normlab.execution.choose_execution picks for each norm by timing the candidates (channels_last or NCHW;
  torch.compile too on CUDA, or with --compile). Those timings are printed first.
Then every loop runs W untimed steps, and R rounds time S steps of each loop, in alternating order, so that all
loops meet the same machine. Each loop's time relative to normlab BN is taken within a round; the table shows the
median over rounds. Seconds per epoch are for 50,000 images. The last line is speedup_vs_naive=<x>: the normlab
loop's images per second over the naive loop's, for BN. This is a benchmark, not a test: run it on the machine you
want figures for.

--grid-estimate also times the ImageNet stem and evaluation, and predicts the time of the notebook's full grid
(2 datasets x 5 norms x 2 stems, TrainConfig's recipe) from the measured step times, as normlab.estimate does for
the notebook's time-estimate cell.
"""
import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm.auto import tqdm

from normlab.batches import DeviceBatches
from normlab.data import MEAN, STD
from normlab.devices import best_device, device_name, synchronize
from normlab.estimate import Timing, eval_image_seconds, run_seconds, where_to_train
from normlab.execution import TUNE_WARMUP_STEPS, choose_execution
from normlab.notebook import load_models
from normlab.session import Execution, Session, keep_compiled_graphs
from normlab.train import TrainConfig

EPOCH_IMAGES = 50_000
TEST_IMAGES = 10_000
NORMS = ("BN", "LN", "IN", "GN", "none")


class PilImages(Dataset):
    """What torchvision.datasets.CIFAR10 hands a DataLoader: a PIL image per item, then the transforms."""

    def __init__(self, images, labels, transform):
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


@dataclass
class Loop:
    """A training loop to time: run(steps) takes that many optimizer steps."""

    name: str
    norm_type: str
    stem: str
    run: Callable[[int], object]
    execution: Execution | None = None
    timings: list[dict[str, Any]] | None = None  # what choose_execution measured
    session: Session | None = None


def naive_loop(models, images, labels, device, args):
    model = models.resnet18(norm_type="BN", stem="cifar").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    loader = DataLoader(PilImages(images, labels, augment), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    model.train()

    def run(steps):
        for x, y in itertools.islice(batches, steps):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()

    return Loop("naive", "BN", "cifar", run)


def normlab_loop(models, norm_type, stem, images, labels, device, config, total_steps, candidates):
    model = models.resnet18(norm_type=norm_type, stem=stem)
    execution, chosen = choose_execution(model, config, device, images, labels, total_steps, force=True,
                                         candidates=candidates)
    session = Session(model, config, device, total_steps, execution)
    batches = DeviceBatches(images, labels, device, config.batch_size, execution.memory_format, 0, config.padding,
                            config.flip)
    endless = itertools.chain.from_iterable(batches.epoch() for _ in itertools.count())
    session.model.train()

    def run(steps):
        for x, y in itertools.islice(endless, steps):
            session.step(x, y)

    return Loop("normlab", norm_type, stem, run, execution, chosen["timings"], session)


def describe(execution):
    return f"{'channels_last' if execution.channels_last else 'NCHW'}, {'compiled' if execution.compile else 'eager'}"


def describe_choice(loop):
    """One line: the seconds per step of every execution choose_execution timed for this loop, and its choice."""
    timings = [f"{describe(Execution(t['channels_last'], t['compile']))} {t['step_seconds']:.3f} s/step"
               + (f" + {t['setup_seconds']:.0f} s setup" if t["compile"] else "") for t in loop.timings]
    return f"{loop.norm_type:<5} {loop.stem:<9} {'; '.join(timings)} -> {describe(loop.execution)}"


def time_side_by_side(loops, device, args):
    """Seconds per step of each loop in each round; rounds alternate the order of the loops."""
    for loop in tqdm(loops, desc="warm-up", leave=False):
        loop.run(args.warmup)
    seconds: dict[int, list[float]] = {id(loop): [] for loop in loops}
    for round_index in tqdm(range(args.rounds), desc="rounds", leave=False):
        for loop in (loops if round_index % 2 == 0 else loops[::-1]):
            synchronize(device)
            started = time.perf_counter()
            loop.run(args.steps)
            synchronize(device)
            seconds[id(loop)].append((time.perf_counter() - started) / args.steps)
    return seconds


def print_table(loops, seconds, bn, batch_size):
    """Images per second of every loop (median over rounds), and its time relative to normlab BN's in the same
    round: the median, and the range over rounds."""
    print(f"{'loop':<8} {'norm':<5} {'stem':<9} {'execution':<22} {'img/s':>9} {'s/epoch':>8} "
          f"{'time vs normlab BN (range)':>26}")
    for loop in loops:
        rate = batch_size / statistics.median(seconds[id(loop)])
        execution = "-" if loop.execution is None else describe(loop.execution)
        relative = "-"
        if bn is not None and loop.stem == "cifar":
            ratios = [a / b for a, b in zip(seconds[id(loop)], seconds[id(bn)])]
            relative = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"{loop.name:<8} {loop.norm_type:<5} {loop.stem:<9} {execution:<22} {rate:>9.1f} "
              f"{EPOCH_IMAGES / rate:>8.2f} {relative:>26}")


def grid_estimate(loops, seconds, images, labels, device, config, args):
    """Predicted minutes of the notebook's full grid (normlab.estimate.run_seconds) from the steps timed here:
    per variant and dataset, the epochs' training steps and evaluations, the final evaluation with flip TTA; and
    per architecture the timing of the candidates (compiling included), and compiling once more for the other
    dataset's classifier where the execution compiles."""
    recipe = TrainConfig().replace(batch_size=args.batch_size)
    evaluation = config.replace(eval_batch_size=args.eval_batch_size)
    total = setup = 0.0
    for loop in loops:
        if loop.name != "normlab":
            continue
        per_image = eval_image_seconds(loop.session.step_model, evaluation, device, images, labels,
                                       loop.execution.memory_format)
        timing = Timing(statistics.median(seconds[id(loop)]), per_image)
        chosen = next(t for t in loop.timings if Execution(t["channels_last"], t["compile"]) == loop.execution)
        total += 2 * run_seconds(timing, recipe)  # CIFAR-10 and CIFAR-100
        setup += chosen["setup_seconds"] * chosen["compile"] + sum(
            t["setup_seconds"] + (TUNE_WARMUP_STEPS + config.tune_steps) * t["step_seconds"] for t in loop.timings)
    variants = 2 * sum(loop.name == "normlab" for loop in loops)
    print(f"grid estimate: {variants} runs x {recipe.epochs} epochs, batch {args.batch_size}: training and evaluation "
          f"{total / 60:.1f} min + setup and timing {setup / 60:.1f} min = {(total + setup) / 60:.1f} min")
    if device.type != "cuda":
        print(where_to_train(f"That is on {device_name(device)}, not on a CUDA GPU."))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=str(best_device()), help="cuda, cpu or mps (default: %(default)s)")
    parser.add_argument("--norm", default=",".join(NORMS), help="comma-separated norm types (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, help="default: 512 on a GPU, 128 on a CPU")
    parser.add_argument("--steps", type=int, help="timed steps per loop and round (default: 50 on a GPU, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 20 on a GPU, 2 on a CPU)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of timing (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the naive loop (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help="time torch.compile on every device, not only CUDA")
    parser.add_argument("--grid-estimate", action="store_true",
                        help="also time the ImageNet stem and evaluation, and estimate the full 30-epoch grid")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type != "cpu"
    args.batch_size = args.batch_size or (512 if on_gpu else 128)
    args.steps = args.steps or (50 if on_gpu else 3)
    args.warmup = args.warmup or (20 if on_gpu else 2)
    norms = [n.strip() for n in args.norm.split(",") if n.strip()]
    unknown = sorted(set(norms) - set(NORMS))
    if unknown:
        parser.error(f"unknown norm types {unknown}; choose from {', '.join(NORMS)}")
    args.eval_batch_size = TrainConfig.eval_batch_size if on_gpu else args.batch_size
    config = TrainConfig(batch_size=args.batch_size, tune_steps=args.steps)
    candidates = [Execution(layout, compiled) for compiled in (False, True) for layout in (True, False)] \
        if args.compile else None
    if args.compile or device.type == "cuda":
        keep_compiled_graphs()  # all loops live in this process: each architecture is one more graph of forward
    models = load_models()
    torch.manual_seed(0)
    count = max(2048, 2 * args.batch_size)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,))
    print(f"device: {device_name(device)}; torch {torch.__version__}; ResNet-18; batch {args.batch_size}; "
          f"{args.warmup} warm-up steps, then {args.rounds} rounds of {args.steps} timed steps per loop; "
          f"synthetic CIFAR-shaped data")
    stems = ("cifar", "imagenet") if args.grid_estimate else ("cifar",)
    total_steps = TrainConfig().epochs * (EPOCH_IMAGES // args.batch_size)
    print("execution timings per norm (choose_execution), and the choice:")
    loops = []
    for stem, norm_type in tqdm([(s, n) for s in stems for n in norms], desc="choosing executions", leave=False):
        loops.append(normlab_loop(models, norm_type, stem, images, labels, device, config, total_steps, candidates))
        print(describe_choice(loops[-1]))
    if "BN" in norms:
        loops.insert(0, naive_loop(models, images, labels, device, args))
    seconds = time_side_by_side(loops, device, args)
    bn = next((loop for loop in loops if loop.name == "normlab" and loop.norm_type == "BN" and loop.stem == "cifar"),
              None)
    print_table(loops, seconds, bn, args.batch_size)
    if args.grid_estimate:
        grid_estimate(loops, seconds, images, labels, device, config, args)
    if bn is not None:
        naive = statistics.median(seconds[id(loops[0])])
        print(f"speedup_vs_naive={naive / statistics.median(seconds[id(bn)]):.2f}")


if __name__ == "__main__":
    main()
