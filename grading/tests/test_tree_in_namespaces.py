"""isolation/tree.py where the folder is in a namespace of its own, as in the sandbox: a mount inside the folder is
left alone, and a folder its owner locked is unlocked by a grader that is not root. The rest, in this process:
unit/test_tree.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grading.isolation.sandbox import bwrap_works
from grading.settings import REPO
from hostile_trees import hostile_tree, outside  # noqa: F401 (outside is a fixture)


def test_emptying_spares_what_is_mounted_and_the_folders_on_the_way_to_it(tmp_path: Path,
                                                                          outside: tuple[Path, Path]) -> None:
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


def test_a_folder_its_owner_locked_is_unlocked_and_emptied(tmp_path: Path, outside: tuple[Path, Path]) -> None:
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
