"""Training throughput of ResNet-18 with the CIFAR stem, per normalization, against a naive DataLoader loop.

    python -m normlab.bench [--device cuda|cpu] [--norm BN,GN,LN,IN,none] [--steps S] [--warmup W]

Both loops run in this process, on the same device, with the notebook's ResNet-18 and the same optimizer, on
synthetic CIFAR-shaped data (random uint8 images), so only the loop differs:
- naive: a torchvision DataLoader whose CPU workers turn each image into a PIL image and apply RandomCrop(32,
  padding=4), RandomHorizontalFlip, ToTensor and Normalize; float32, NCHW; the loss is read back every step.
- normlab: normlab.train's loop: the dataset on the device, crop and flip there, bf16 autocast where the device
  supports it, channels_last.
Seconds per epoch are for 50,000 images. The last line is speedup_vs_naive=<x>: the normlab loop's images per
second over the naive loop's, for BN. This is a benchmark, not a test: run it on the machine you want figures for.
"""
import argparse
import itertools
import os
import time

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from normlab.data import MEAN, STD
from normlab.notebook import load_models
from normlab.train import DeviceBatches, Session, TrainConfig, best_device, device_name, synchronize

EPOCH_IMAGES = 50_000
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


def seconds_for(step, batches, warmup, steps, device):
    """Wall-clock seconds of `steps` calls of step on batches, after `warmup` calls."""
    started = None
    for index, (x, y) in enumerate(batches):
        if index == warmup:
            synchronize(device)
            started = time.perf_counter()
        if index == warmup + steps:
            synchronize(device)
            return time.perf_counter() - started
        step(x, y)
    raise ValueError("ran out of batches")


def naive_images_per_second(models, norm_type, images, labels, device, args):
    model = models.resnet18(norm_type=norm_type, stem="cifar").to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    augment = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                  transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    loader = DataLoader(PilImages(images, labels, augment), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()

    model.train()
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    return args.steps * args.batch_size / seconds_for(step, batches, args.warmup, args.steps, device)


def normlab_images_per_second(models, norm_type, images, labels, device, args, stem="cifar"):
    config = TrainConfig(batch_size=args.batch_size)
    session = Session(models.resnet18(norm_type=norm_type, stem=stem), config, device, total_steps=10 ** 6)
    batches = DeviceBatches(images, labels, device, config, seed=0, augment=True)
    session.model.train()
    infinite = itertools.chain.from_iterable(batches.epoch() for _ in itertools.count())
    return args.steps * args.batch_size / seconds_for(session.step, infinite, args.warmup, args.steps, device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=str(best_device()), help="cuda, cpu or mps (default: %(default)s)")
    parser.add_argument("--norm", default=",".join(NORMS), help="comma-separated norm types (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, help="default: 512 on a GPU, 128 on a CPU")
    parser.add_argument("--steps", type=int, help="timed steps per loop (default: 50 on a GPU, 5 on a CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 20 on a GPU, 2 on a CPU)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the naive loop (default: %(default)s)")
    parser.add_argument("--grid-estimate", action="store_true",
                        help="also time the ImageNet stem and estimate the full 30-epoch grid")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type != "cpu"
    args.batch_size = args.batch_size or (512 if on_gpu else 128)
    args.steps = args.steps or (50 if on_gpu else 5)
    args.warmup = args.warmup or (20 if on_gpu else 2)
    norms = [n.strip() for n in args.norm.split(",") if n.strip()]
    unknown = sorted(set(norms) - set(NORMS))
    if unknown:
        parser.error(f"unknown norm types {unknown}; choose from {', '.join(NORMS)}")
    models = load_models()
    torch.manual_seed(0)
    count = max(2048, args.batch_size * (args.warmup + args.steps + 1))
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,))
    print(f"device: {device_name(device)}; torch {torch.__version__}; ResNet-18, CIFAR stem; batch {args.batch_size};"
          f" {args.warmup} warm-up + {args.steps} timed steps per loop; synthetic CIFAR-shaped data")
    rates = {}
    if "BN" in norms:
        rates[("naive", "BN")] = naive_images_per_second(models, "BN", images, labels, device, args)
    for norm_type in norms:
        rates[("normlab", norm_type)] = normlab_images_per_second(models, norm_type, images, labels, device, args)
    bn_rate = rates.get(("normlab", "BN"))
    print(f"{'loop':<8} {'norm':<5} {'img/s':>9} {'s/epoch':>8} {'time vs normlab BN':>19}")
    for (loop, norm_type), rate in rates.items():
        relative = f"{bn_rate / rate:.2f}x" if bn_rate else "-"
        print(f"{loop:<8} {norm_type:<5} {rate:>9.1f} {EPOCH_IMAGES / rate:>8.2f} {relative:>19}")
    if args.grid_estimate:
        seconds = sum(EPOCH_IMAGES / rates[("normlab", n)] for n in norms)
        seconds += sum(EPOCH_IMAGES / normlab_images_per_second(models, n, images, labels, device, args, "imagenet")
                       for n in norms)
        print(f"grid estimate, training only: 2 datasets x 30 epochs x {len(norms)} norms x 2 stems = "
              f"{2 * 30 * seconds / 60:.1f} min")
    if ("naive", "BN") in rates:
        print(f"speedup_vs_naive={rates[('normlab', 'BN')] / rates[('naive', 'BN')]:.2f}")


if __name__ == "__main__":
    main()
