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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Checked after parsing: argparse (3.11) refuses an empty list against `choices`, so no dataset named failed.
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"any of {', '.join(data.NUM_CLASSES)} (default: all of them)")
    parser.add_argument("--root", type=Path, default=data.DATA_ROOT, help="where to put the data (default: %(default)s)")
    args = parser.parse_args()
    unknown = [name for name in args.datasets if name not in data.NUM_CLASSES]
    if unknown:
        parser.error(f"no dataset {', '.join(unknown)}: choose from {', '.join(data.NUM_CLASSES)}")
    for name in args.datasets or list(data.NUM_CLASSES):
        data.download(name, args.root)
        print(data.load(name, args.root).describe())


if __name__ == "__main__":
    main()
