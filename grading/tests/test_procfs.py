"""isolation/procfs.py: a sandbox's own /tmp and /dev/shm, reached from the grader's side, are never the host's.

A process that bubblewrap is still setting up is already in a mount namespace of its own but still sees the host's
root; the disk watch that measured its "/tmp" then measured the host's, and killed a kernel that had written
nothing (seen in CI, on a busy machine, as "the kernel ended before it opened its sockets")."""
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from grading.isolation import procfs
from grading.isolation.sandbox import SHARED_MOUNTS, DiskWatch, Limits, Sandbox, bwrap_works
from grading.settings import Settings

T = TypeVar("T")
PYTHON_SLEEPS = [sys.executable, "-c", "import time; time.sleep(60)"]


def eventually(found: Callable[[], T | None]) -> T:
    """found() once it is not None, within 10 s."""
    end = time.monotonic() + 10
    while (value := found()) is None:
        assert time.monotonic() < end, "not found within 10 s"
        time.sleep(0.01)
    return value


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    if not bwrap_works():
        pytest.skip("bubblewrap cannot create namespaces here")
    work = tmp_path / "work"
    work.mkdir()
    return Sandbox(work, Limits.from_settings(Settings()), slot=5)


def test_a_namespace_whose_root_is_still_the_hosts_gives_no_folder(processes: list[subprocess.Popen[bytes]],
                                                                   sandbox: Sandbox) -> None:
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    processes.append(subprocess.Popen(unshare + PYTHON_SLEEPS))
    pid = processes[-1].pid
    root = eventually(lambda: procfs.SandboxRoot.of(pid))
    assert os.readlink(f"/proc/{root.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    for mount in SHARED_MOUNTS:
        assert root.open(mount) is None, mount
    # the host's own /tmp holds more files than a submission may make: none of them is the sandbox's
    assert DiskWatch(sandbox, lambda: None, lambda: pid).check() == ""


def test_a_sandbox_gives_its_own_file_systems(processes: list[subprocess.Popen[bytes]], sandbox: Sandbox) -> None:
    processes.append(subprocess.Popen(sandbox.wrap(PYTHON_SLEEPS), cwd=sandbox.workdir))
    root = eventually(lambda: procfs.SandboxRoot.of(processes[-1].pid))
    for mount in SHARED_MOUNTS:
        folder = eventually(lambda: root.open(mount))
        try:
            assert os.fstat(folder).st_dev != os.stat(f"/{mount}").st_dev
        finally:
            os.close(folder)
