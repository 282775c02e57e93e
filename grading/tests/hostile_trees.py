"""What student code leaves in a folder for the grader to walk and remove (isolation/tree.py), shared by
unit/test_tree.py and test_tree_in_namespaces.py."""
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from grading.isolation import tree

DEPTH = 10_000


def chain(top: Path, depth: int, name: str = "d") -> int:
    """A chain of depth folders under top, made through descriptors (no path is that long); the innermost one's
    descriptor."""
    descriptor = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=descriptor)
        inner = os.open(name, os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    return descriptor


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A host folder with a file, which links in the tree point at: (folder, file). Whatever a test leaves in
    tmp_path goes with tree.remove, since pytest's own clean-up of old temporary folders is shutil.rmtree, which a
    tree this deep stops with RecursionError."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("the host's")
    yield folder, folder / "keep.txt"
    for left in tmp_path.iterdir():
        tree.remove(left)


def hostile_tree(root: Path, outside: tuple[Path, Path]) -> None:
    """What a student leaves: a chain 10,000 deep ending in links and a FIFO, a link to a host folder, a folder
    locked by its owner with a locked folder inside, odd names."""
    root.mkdir()
    innermost = chain(root, DEPTH)
    os.symlink(outside[0], "folder-link", dir_fd=innermost)
    os.symlink(outside[1], "file-link", dir_fd=innermost)
    os.mkfifo("fifo", dir_fd=innermost)
    os.close(innermost)
    (root / "to-host").symlink_to(outside[0])
    (root / "locked" / "inner").mkdir(parents=True)
    (root / "locked" / "inner" / "file").write_text("x")
    (root / "locked" / "inner").chmod(0)
    (root / "locked").chmod(0o500)
    os.mkdir(os.path.join(os.fsencode(root), b"new\nline \xff"))
