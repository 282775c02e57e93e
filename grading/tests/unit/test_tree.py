"""isolation/tree.py: folders that student code wrote, walked and removed from the grader's side through descriptors:
no link is followed, no depth stops it, another file system is left alone, and a folder its owner locked is
unlocked first."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grading.isolation import tree
from grading.isolation.sandbox import bwrap_works
from grading.settings import REPO

DEPTH = 10_000


def chain(top, depth, name="d"):
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
def outside(tmp_path):
    """A host folder with a file, which links in the tree point at: (folder, file). Whatever a test leaves in
    tmp_path goes with tree.remove, since pytest's own clean-up of old temporary folders is shutil.rmtree, which a
    tree this deep stops with RecursionError."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("the host's")
    yield folder, folder / "keep.txt"
    for left in tmp_path.iterdir():
        tree.remove(left)


def hostile_tree(root, outside):
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


def test_a_tree_of_any_depth_goes_and_nothing_it_points_at(tmp_path, outside):
    root = tmp_path / "work"
    hostile_tree(root, outside)
    tree.remove(root)
    assert not root.exists()
    assert outside[1].read_text() == "the host's" and sorted(p.name for p in outside[0].iterdir()) == ["keep.txt"]


def test_a_link_or_a_missing_path_is_fine_to_remove(tmp_path, outside):
    (tmp_path / "link").symlink_to(outside[0])
    tree.remove(tmp_path / "link")
    tree.remove(tmp_path / "never-made")
    assert not os.path.lexists(tmp_path / "link") and outside[1].is_file()


def test_measuring_stops_at_the_depth_it_may_hold_and_follows_no_link(tmp_path, outside):
    deep, shallow = tmp_path / "deep", tmp_path / "shallow"
    hostile_tree(deep, outside)
    shallow.mkdir()
    os.close(chain(shallow, 10))
    (shallow / "small.bin").write_bytes(bytes(8192))
    (shallow / "to-host").symlink_to(outside[0])
    (outside[0] / "big.bin").write_bytes(bytes(4 << 20))
    seen = {}
    for name, root in (("deep", deep), ("shallow", shallow)):
        folder = tree.open_folder(root)
        try:
            seen[name] = tree.measure(folder, 1 << 30, 1 << 20, max_depth=64)
        finally:
            os.close(folder)
    assert seen["deep"].too_deep and seen["deep"].entries < 100
    assert not seen["shallow"].too_deep and seen["shallow"].entries == 12  # 10 folders, the file, the link
    assert 8192 <= seen["shallow"].bytes < 1 << 20  # the host's big file, behind the link, is not counted


def test_emptying_spares_what_is_mounted_and_the_folders_on_the_way_to_it(tmp_path, outside):
    """Run where a tmpfs is mounted inside the folder (a mount namespace of its own, as the sandbox's /tmp holds
    the kernel folder and a course under /tmp): what is mounted keeps its files, the folder around the mount point
    loses what a student put there."""
    if not bwrap_works():
        pytest.skip("bubblewrap makes the mount here: .ci/run installs it")
    root = tmp_path / "work"
    for path in (root / "on-the-way" / "mounted", root / "stray" / "inside"):
        path.mkdir(parents=True)
    (root / "on-the-way" / "planted.txt").write_text("x")
    code = ("import json, os, sys\nsys.path.insert(0, sys.argv[2])\nfrom grading.isolation import tree\n"
            "open(os.path.join(sys.argv[1], 'on-the-way', 'mounted', 'kept.txt'), 'w').write('mounted')\n"
            "folder = tree.open_folder(sys.argv[1])\nleft = tree.empty(folder)\n"
            "print(json.dumps({'left': left, 'kept': os.listdir(os.path.join(sys.argv[1], 'on-the-way', 'mounted')),"
            " 'top': sorted(os.listdir(sys.argv[1])), 'way': os.listdir(os.path.join(sys.argv[1], 'on-the-way'))}))")
    completed = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(root / "on-the-way" / "mounted"),
                                sys.executable, "-c", code, str(root), str(REPO)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout)
    assert seen == {"left": ["on-the-way/mounted"], "kept": ["kept.txt"], "top": ["on-the-way"],
                    "way": ["mounted"]}


def test_a_folder_its_owner_locked_is_unlocked_and_emptied(tmp_path, outside):
    """As a grader that is not root, who owns what the sandbox wrote (here: a user namespace in which the tree's
    owner is the only user and has no capabilities, as in bwrap)."""
    if not bwrap_works():
        pytest.skip("bubblewrap makes the user namespace here: .ci/run installs it")
    root = tmp_path / "work"
    hostile_tree(root, outside)
    code = ("import os, sys\nsys.path.insert(0, sys.argv[2])\nfrom grading.isolation import tree\n"
            "assert os.getuid() != 0\ntree.remove(sys.argv[1])\n")
    completed = subprocess.run(["bwrap", "--unshare-user", "--uid", "1000", "--gid", "1000", "--dev-bind", "/", "/",
                                sys.executable, "-c", code, str(root), str(REPO)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert not root.exists() and outside[1].read_text() == "the host's"


def test_placing_a_file_follows_no_link_and_overwrites_nothing(tmp_path, outside):
    root = tmp_path / "work"
    root.mkdir()
    source = tmp_path / "history.json"
    source.write_text("{}")
    (root / "runs").symlink_to(outside[0])
    (root / "taken.txt").write_text("the student's")
    folder = tree.open_folder(root)
    try:
        with pytest.raises(OSError):
            tree.place(folder, "runs/grid/history.json", source)
        with pytest.raises(FileExistsError):
            tree.place(folder, "taken.txt", source)
        tree.place(folder, "data/new/history.json", source)
    finally:
        os.close(folder)
    assert sorted(p.name for p in outside[0].iterdir()) == ["keep.txt"]
    assert (root / "data" / "new" / "history.json").read_text() == "{}"
    assert (root / "taken.txt").read_text() == "the student's"


def test_every_descriptor_is_closed(tmp_path, outside):
    before = len(os.listdir("/proc/self/fd"))
    root = tmp_path / "work"
    hostile_tree(root, outside)
    folder = tree.open_folder(root)
    tree.measure(folder, 1 << 30, 1 << 20, max_depth=64)
    tree.empty(folder)
    os.close(folder)
    assert len(os.listdir("/proc/self/fd")) == before
    assert Path(root).is_dir() and not any(Path(root).iterdir())
