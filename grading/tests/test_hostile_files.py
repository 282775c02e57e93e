"""What a student's processes leave where they can write reaches nothing of the host (docs/security.md, "Files
the grader touches in places students write"). Attackers plant links to host files, FIFOs, folders and trees ten
thousand deep at every name the grader uses in their folder and /tmp (the names of today and of earlier versions),
before and after their kernel restarts (warm, then cold once they have killed their zygote), while the grader
probes them. Nothing outside the grader's scratch folders is created, truncated or written, grading/ is unchanged,
the batch finishes with the exact score of every student graded after them on the same slot, and so does the next
batch, after a grader killed with a deep tree in its scratch folder."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbformat

from conftest import REFERENCE, REPO, autograde, reference_with_added_cell, results, submit
from grading.authoring.samples import Answers
from grading.isolation.sandbox import bwrap_works
from grading.settings import SCRATCH_PREFIX

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")

HIDDEN_CHECK = REPO / "grading" / "hidden" / "check_q1_forward.py"
# Names a kernel's folder held in earlier versions of the grader, which opened some of them as the grader's user
OLD_NAMES = [".kernel-stderr", ".kernel.json", ".k-1", ".k-2", ".k-3", ".k-4", ".k-5"]
PLANTS = """
import os, threading, time
targets = {targets!r}
old_names = {old_names!r}


def plant(name, kind):
    try:
        if os.path.isdir(name) and not os.path.islink(name):
            os.rename(name, f"{{name}}.moved-{{time.monotonic_ns()}}")
        else:
            os.unlink(name)
    except OSError:
        pass
    try:
        if kind == 0:
            os.symlink(targets[time.monotonic_ns() % len(targets)], name)
        elif kind == 1:
            os.mkfifo(name)
        else:
            os.makedirs(os.path.join(name, "inside"))
            os.symlink(targets[0], os.path.join(name, "inside", "link"))
    except OSError:
        pass


def keep_planting():
    kind = 0
    while True:
        for folder in (".", "/tmp", "/dev/shm"):
            names = os.listdir(folder) + [os.path.join(folder, name) for name in old_names]
            for name in names:
                if os.path.basename(name).startswith((".kernel", ".request", ".reply", ".k-")):
                    plant(name if "/" in name else os.path.join(folder, name), kind % 3)
                    kind += 1
        time.sleep(0.002)


threading.Thread(target=keep_planting, daemon=True).start()
"""
ENDS_ITS_KERNEL_AND_ZYGOTE = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos._exit(1)"
DEEP_TREES = """
import os
for top in (".", "/tmp", "/dev/shm"):
    descriptor = os.open(top, os.O_RDONLY)
    for _ in range(10_000):
        try:
            os.mkdir("d", dir_fd=descriptor)
            inner = os.open("d", os.O_RDONLY, dir_fd=descriptor)
        except OSError:
            break
        os.close(descriptor)
        descriptor = inner
    os.symlink({target!r}, "link", dir_fd=descriptor)
    os.close(descriptor)
"""


def tree_digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def plants_and_restarts(targets):
    """The reference, with a cell that keeps planting (in a thread, which the replay after the restart starts again)
    and, after it, a cell that kills its zygote and its kernel, so that the kernel is restarted cold."""
    planter = reference_with_added_cell(PLANTS.format(targets=targets, old_names=OLD_NAMES))
    killer = reference_with_added_cell(ENDS_ITS_KERNEL_AND_ZYGOTE)
    # each edit inserts its cell at the same place: the killer's first, so that the planter's lands before it
    return Answers(base="reference", notebook_edits=killer.notebook_edits + planter.notebook_edits)


def deep_trees(target):
    """The reference, with a last cell that leaves trees 10,000 folders deep in its folder, /tmp and /dev/shm."""
    def edit(nb):
        nb.cells.append(nbformat.v4.new_code_cell(DEEP_TREES.format(target=target)))
    return Answers(base="reference", notebook_edits=[edit])


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Host files a student tries to reach: (folder, a file there, a path that does not exist, the hidden check);
    the hidden check is put back if any test changed it, so that a failing defence does not damage the tree."""
    folder = tmp_path_factory.mktemp("host")
    existing, absent = folder / "existing.txt", folder / "absent.txt"
    existing.write_text("the host's own file")
    hidden = HIDDEN_CHECK.read_bytes()
    yield folder, existing, absent
    if HIDDEN_CHECK.read_bytes() != hidden:
        HIDDEN_CHECK.write_bytes(hidden)


@pytest.fixture(scope="module")
def graded(bundle, release_dir, tmp_path_factory, host):
    """Two batches on one slot (each student's kernel forked from the zygote the student before had): attackers
    between honest students, then, after a grader killed with a 10,000-deep tree left in its scratch folder, the
    next batch. ({student: result} of both, grading/'s digest before, the exit statuses)"""
    folder, existing, absent = host
    targets = [str(existing), str(absent), str(HIDDEN_CHECK)]
    root = tmp_path_factory.mktemp("hostile-files")
    before = tree_digest(REPO / "grading")
    students = {"a-honest": REFERENCE, "b-plants-and-restarts": plants_and_restarts(targets), "c-honest": REFERENCE,
                "d-deep-trees": deep_trees(str(absent)), "e-honest": REFERENCE}
    first = autograde(submit(bundle, root / "first", students), root / "out-first", release_dir, "--jobs", "1",
                      "--questions", "q3,q4,q5", "--probe-timeout", "5")
    stale = killed_grader_with_a_deep_tree()
    second = autograde(submit(bundle, root / "second", {"f-honest": REFERENCE}), root / "out-second", release_dir,
                       "--jobs", "1", "--questions", "q3,q4,q5")
    return ({**results(root / "out-first"), **results(root / "out-second")}, before, (first, second), stale)


def killed_grader_with_a_deep_tree():
    """A scratch folder as a grader killed mid-run leaves it, its kernel folder holding a tree 10,000 deep. It is
    built under a hidden name, which no grader clears, and then given its name: graders of other tests, running
    meanwhile, would clear it half built."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = Path(f"/tmp/{SCRATCH_PREFIX}{dead.pid}-z0-stale")
    building = stale.with_name(f".{stale.name}")
    descriptor = os.open(stale.parent, os.O_RDONLY)
    for name in (building.name, "kernel", *["d"] * 10_000):
        os.mkdir(name, dir_fd=descriptor)
        inner = os.open(name, os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.mkfifo("fifo", dir_fd=descriptor)
    os.close(descriptor)
    building.rename(stale)
    return stale


def test_the_batch_and_the_next_finish(graded):
    _, _, (first, second), _ = graded
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]


def test_every_student_after_an_attacker_gets_the_exact_score(graded):
    graded_results = graded[0]
    assert {name: graded_results[name].total for name in ("a-honest", "c-honest", "e-honest", "f-honest")} == \
        {name: 40 for name in ("a-honest", "c-honest", "e-honest", "f-honest")}
    for name in ("a-honest", "c-honest", "e-honest", "f-honest"):
        assert graded_results[name].status == "ok", graded_results[name].status


def test_attackers_get_at_most_their_honest_work_and_a_verdict(graded):
    graded_results = graded[0]
    for name in ("b-plants-and-restarts", "d-deep-trees"):
        assert graded_results[name].total <= 40 and not graded_results[name].error, graded_results[name].status
    assert "nested folders more than 64 deep" in " ".join(graded_results["d-deep-trees"].notes)


def test_no_host_file_is_created_truncated_or_written(graded, host):
    folder, existing, absent = host
    assert existing.read_text() == "the host's own file" and not absent.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["existing.txt"]
    assert tree_digest(REPO / "grading") == graded[1]


def test_a_stale_scratch_folder_of_any_depth_is_cleared_by_the_next_run(graded):
    assert not os.path.lexists(graded[3])

