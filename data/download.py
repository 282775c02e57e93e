"""Download CIFAR-10 and CIFAR-100 into this folder (needs internet):

    python data/download.py             # both
    python data/download.py cifar10     # one

torchvision fetches the official archives and verifies their checksums; normlab.data then loads them.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from normlab import data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", choices=["cifar10", "cifar100"], default=["cifar10", "cifar100"])
    parser.add_argument("--root", type=Path, default=data.DATA_ROOT, help="where to put the data (default: %(default)s)")
    args = parser.parse_args()
    for name in args.datasets:
        data.download(name, args.root)
        print(data.load(name, args.root).describe())


if __name__ == "__main__":
    main()
