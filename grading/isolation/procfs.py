"""What the grader reads of processes from /proc: their state, their tree, and a sandbox's own file system.

A sandbox's /tmp and /dev/shm exist only in its mount namespace; the grader reaches them through /proc/<pid>/root of
a process inside it. A PID can be reused once that process ends, so a SandboxRoot remembers when its process
started and checks it again after opening the root: a root opened through a reused PID is never taken for the
sandbox's.
"""
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

GONE = (None, "Z", "X")  # states of a process that runs no more


def stat(pid: int | Literal["self"]) -> tuple[str, int] | tuple[None, None]:
    """(state, start time in clock ticks) of a host process, or (None, None) when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return fields[0], int(fields[19])


def argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children() -> dict[int, list[int]]:
    """{parent PID: [child PIDs]} of every process on the host."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parent = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def children_of(pid: int) -> list[int]:
    """The child PIDs of one process."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def started(pids: Iterable[int]) -> list[tuple[int, int]]:
    """[(pid, start time)] of the processes pids that run now."""
    return [(pid, start) for pid, (state, start) in ((pid, stat(pid)) for pid in pids)
            if state not in GONE and start is not None]


def wait_ended(processes: Iterable[tuple[int, int]], timeout: float) -> bool:
    """Wait until none of processes ([(pid, start time)], from started()) runs any more, or timeout seconds;
    whether none does."""
    end = time.monotonic() + timeout
    while any((pid, start) in started([pid]) for pid, start in processes):
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def threads_of(uid: int) -> int:
    """How many threads the processes of uid run, all together."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


class SandboxRoot:
    """The root folder of the sandbox that the process pid runs in, for as long as that process lives."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = stat(pid)[1]

    @classmethod
    def of(cls, pid: int) -> "SandboxRoot | None":
        """The SandboxRoot of a sandbox started as the process pid: pid itself when it is already in a mount
        namespace of its own (a kernel forked in the sandbox), else its child (bubblewrap's init); None when
        there is neither, or no sandbox (bubblewrap is missing)."""
        ours = _mount_namespace("self")
        for candidate in [pid, *children_of(pid)]:
            namespace = _mount_namespace(candidate)
            if namespace is not None and namespace != ours:
                return cls(candidate)
        return None

    def open(self, relative: str) -> int | None:
        """A descriptor of the folder relative, a file system the grader mounted in the sandbox, such as "tmp";
        None once the process is gone, and while bubblewrap is still building the sandbox: until its root is
        switched, the process sees the host's root, and relative there is the host's own folder."""
        try:
            root = os.open(f"/proc/{self.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if self.started is None or stat(self.pid)[1] != self.started or _same_file(root, os.stat("/")):
                return None
            folder = os.open(relative, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            root_device = os.fstat(root).st_dev
        except OSError:
            return None
        finally:
            os.close(root)
        if os.fstat(folder).st_dev == root_device:  # a plain folder: bubblewrap has not mounted it yet
            os.close(folder)
            return None
        return folder


def _same_file(descriptor: int, other: os.stat_result) -> bool:
    seen = os.fstat(descriptor)
    return (seen.st_dev, seen.st_ino) == (other.st_dev, other.st_ino)


def _mount_namespace(pid: int | Literal["self"]) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
