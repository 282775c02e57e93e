"""The sandbox every piece of student code runs in: bubblewrap when it is there, resource limits always.

Inside bwrap a process sees the Python environment and normlab read-only, its own folder read-write (a folder the
grader made, in a folder of the grader's that the sandbox cannot see, so it can neither be renamed nor replaced from
inside), a private /tmp and /dev/shm (tmpfs, that is the host's memory), /proc of its own PID namespace, and no
network. Nothing else of the course is mounted: not the sources with solutions, the hidden tests, the gradebook,
other students or the grader's outputs. It dies with the grader (--die-with-parent). When the grader runs as root,
the sandboxed code runs as an unprivileged user of its own, one per worker slot, so the process limit binds and
slots cannot touch each other's processes. The first program of every command (sandboxed/confine.py) applies the
limits on CPU time, address space, processes, file size and open files, and forbids the System V and POSIX IPC and
keyrings that no limit bounds; a wall-clock timeout kills the whole process group. A DiskWatch stops processes
that write more than Settings.disk_bytes in their folder, /tmp and /dev/shm together.

Without bwrap (Isolation): as root, student code runs as a user of its own per slot (isolation/users.py), with the
same limits; as another user the grader refuses to grade, unless told the submissions are trusted (--unsandboxed).
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from enum import Enum
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable

from grading.isolation import procfs, tree, users
from grading.sandboxed import program
from grading.settings import BWRAP, NORMLAB, REPO, Settings

logger = logging.getLogger(__name__)

CONFINE = program("confine")
SHARED_MOUNTS = ("tmp", "dev/shm")  # a sandbox's own tmpfs mounts, relative to its root: host memory

NO_BWRAP = "bubblewrap (bwrap) is missing or cannot create namespaces here"
INSTALL_BWRAP = "install it (Debian/Ubuntu: apt-get install bubblewrap)"
UNSANDBOXED = (f"WARNING: {NO_BWRAP}, and --unsandboxed was given: student code runs WITHOUT a sandbox, as this "
               "grader's own user. It can read the course files and every other student's, write the grader's files "
               "and outputs, and use the network. Only resource limits apply.")
SEPARATE_USER = (f"WARNING: {NO_BWRAP}: student code runs without it, as a user of its own per worker slot, which "
                 "can read no course file and write nothing of the grader's, and whose processes are all killed "
                 "before results are written; it can still use the network and read what every user may read. "
                 f"For the whole sandbox, {INSTALL_BWRAP}.")


class Isolation(Enum):
    """How student code is kept from the grading machine (docs/security.md)."""

    BUBBLEWRAP = "bubblewrap"  # namespaces: it sees the environment and its folder, no network, no other process
    SEPARATE_USER = "separate user"  # no bwrap, the grader is root: a user of its own (isolation/users.py)
    NONE = "none"  # --unsandboxed: the grader's own user, for submissions the TA trusts

    @property
    def note(self) -> str:
        """What a TA is told of a submission graded so ("" under bubblewrap)."""
        return {Isolation.BUBBLEWRAP: "", Isolation.SEPARATE_USER: "graded without bubblewrap, as a user of its own",
                Isolation.NONE: "graded WITHOUT a sandbox (--unsandboxed)"}[self]


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mb: int
    processes: int
    file_size_mb: int
    open_files: int
    output_kb: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(settings.cpu_seconds, settings.memory_mb, settings.processes, settings.file_size_mb,
                   settings.open_files, settings.output_kb)


class SandboxMissing(Exception):
    """bubblewrap is required and cannot run here."""


@dataclass
class Completed:
    returncode: int
    output: str
    timed_out: bool
    stopped: str = ""  # why the DiskWatch stopped it ("" when it did not)


_bwrap_works: bool | None = None


def bwrap_works() -> bool:
    """Whether bwrap exists and can create the namespaces used here (it cannot where user namespaces are off)."""
    global _bwrap_works
    if _bwrap_works is None:
        binary = shutil.which(BWRAP)
        if binary is None:
            _bwrap_works = False
        else:
            probe = [binary, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "true"]
            if os.geteuid() != 0:
                probe.insert(1, "--unshare-user")
            _bwrap_works = subprocess.run(probe, capture_output=True).returncode == 0
    return _bwrap_works


def check_sandbox(settings: Settings, warn: Callable[[str], object] | None = None) -> Isolation:
    """The Isolation student code gets here under settings (a warning where it is not bubblewrap: through warn,
    by default this module's logger), or SandboxMissing, saying what to do, where it would get none it should."""
    warn = warn or logger.warning
    if bwrap_works():
        return Isolation.BUBBLEWRAP
    if settings.require_sandbox:
        raise SandboxMissing(f"{NO_BWRAP}, and the sandbox is required (--require-sandbox): {INSTALL_BWRAP}")
    if settings.unsandboxed:
        warn(UNSANDBOXED)
        return Isolation.NONE
    if os.geteuid() == 0:
        warn(SEPARATE_USER)
        return Isolation.SEPARATE_USER
    raise SandboxMissing(f"{NO_BWRAP}, and without it student code would run as you, able to read and write all "
                         f"you can: {INSTALL_BWRAP} (it needs user namespaces, which some systems turn off), run the "
                         "grader as root (student code then runs as a user of its own), or pass --unsandboxed for "
                         "submissions you trust")


# This interpreter, reached through its folder's real path: only real paths are mounted into the sandbox, so a
# symbolically linked .venv (or $HOME) would leave sys.executable unreachable inside it. The folder is resolved, not
# the file, so that a virtual environment stays one.
PYTHON = str(Path(sys.executable).parent.resolve() / Path(sys.executable).name)


def python_roots() -> list[Path]:
    """Folders the interpreter and its packages live in, to mount read-only."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(os.path.realpath(sys.executable)).parent.parent}
    return sorted({root.resolve() for root in roots})


def _ancestors(path: str | os.PathLike[str]) -> list[Path]:
    return list(reversed(Path(path).parents))[1:]


class Sandbox:
    """Runs commands for one submission in workdir: a folder the grader made, in a folder of its own that sandboxed
    code cannot write (so that the grader's paths through it stay the grader's)."""

    def __init__(self, workdir: str | os.PathLike[str], limits: Limits, slot: int = 0,
                 isolation: Isolation = Isolation.BUBBLEWRAP) -> None:
        self.workdir = Path(workdir).resolve()
        self.limits = limits
        self.use_bwrap = isolation is Isolation.BUBBLEWRAP and bwrap_works()
        # As root, the code drops to a user of its own: inside bwrap one per slot, and without it one per slot of
        # a range of its own, whose every process the grader kills (isolation/users.py).
        self.separate_user = os.geteuid() == 0 and isolation is not Isolation.NONE
        self.uid = os.getuid()
        if self.separate_user:
            self.uid = Settings.sandbox_uid_base + slot if self.use_bwrap else users.uid_of(slot)
            folder = tree.open_folder(self.workdir)
            try:
                os.fchown(folder, self.uid, self.uid)
                os.fchmod(folder, 0o700)  # the other slots' users may not read it
            finally:
                os.close(folder)

    def place(self, files: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]]) -> None:
        """Copy the grader's files into the folder, each (source, path inside the folder), before any student code
        runs there; they belong to the sandbox's user."""
        folder = tree.open_folder(self.workdir)
        try:
            for source, target in files:
                tree.place(folder, target, source, self.uid if self.separate_user else None)
        finally:
            os.close(folder)

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A minimal environment: nothing of the grader's own leaks in."""
        env = {
            "PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin", "HOME": str(self.workdir), "USER": "student",
            "LANG": "C.UTF-8", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
            # Nothing a student's code left in its folder (which is also HOME) runs when a new Python starts there.
            "PYTHONNOUSERSITE": "1",
            "MPLCONFIGDIR": str(self.workdir / ".matplotlib"), "MPLBACKEND": "Agg",
            "NORMLAB_DATA": str(self.workdir / "data"),
            # Without bwrap /tmp is the machine's: temporary files go to the folder, under the disk bound.
            **({} if self.use_bwrap else {"TMPDIR": str(self.workdir)}),
            # One thread each: submissions are graded in parallel, and the process limit counts threads.
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        }
        env.update(extra or {})
        return env

    def confine_prefix(self) -> list[str]:
        """The command line of sandboxed/confine.py with this sandbox's limits, to put before a command."""
        limits = self.limits
        processes = limits.processes
        if os.geteuid() != 0:
            # The process limit counts every process and thread of this user, the grader's included.
            processes += procfs.threads_of(self.uid)
        numbers = {"cpu": limits.cpu_seconds, "as": limits.memory_mb << 20, "nproc": processes,
                   "fsize": limits.file_size_mb << 20, "nofile": limits.open_files}
        return [PYTHON, "-I", "-S", "-c", CONFINE, json.dumps(numbers), "--"]

    def wrap(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """The full command line that runs argv in the sandbox."""
        inner = self.confine_prefix() + [str(a) for a in argv]
        if self.separate_user:
            inner = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all"] + inner
        if not self.use_bwrap:
            return inner
        # use_bwrap found it there; were it gone since, running the bare name fails as loudly
        command = [shutil.which(BWRAP) or BWRAP, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                   "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--tmpfs", "/"]
        if os.geteuid() != 0:
            command.insert(1, "--unshare-user")
        for system in ("/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/ld.so.cache", "/etc/alternatives", "/etc/fonts"):
            if os.path.exists(system):
                command += ["--ro-bind", system, system]
        command += ["--proc", "/proc", "--dev", "/dev"]
        for shared in SHARED_MOUNTS:
            command += ["--perms", "1777", "--size", str(Settings.disk_bytes), "--tmpfs", f"/{shared}"]
        mounted = set()
        for path, mode in self.mounts():
            for parent in _ancestors(path):
                if parent not in mounted and str(parent) not in ("/usr", "/tmp"):
                    command += ["--perms", "0755", "--dir", str(parent)]
                    mounted.add(parent)
            command += [mode, str(path), str(path)]
            mounted.add(path)
        command += ["--remount-ro", "/", "--chdir", str(self.workdir), "--"]
        return command + inner

    def mounts(self) -> list[tuple[Path, str]]:
        """(host path, bwrap option) of what is mounted into the sandbox at the same path: the Python environment
        and normlab read-only, the folder read-write."""
        return [(path, "--ro-bind") for path in [*python_roots(), NORMLAB]] + [(self.workdir, "--bind")]

    def popen(self, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None,
              **kwargs: Any) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(self.wrap(argv), cwd=self.workdir, env=self.environment(env),
                                start_new_session=True, **kwargs)

    def run(self, argv: Sequence[str | os.PathLike[str]], timeout: float,
            env: dict[str, str] | None = None) -> Completed:
        """Run argv to completion or until timeout, under a DiskWatch; the last limits.output_kb of its output
        (stdout and stderr) are kept."""
        output = Drain(self.limits.output_kb << 10)
        process = self.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=output.writer, stderr=output.writer)
        output.start()
        watch = DiskWatch(self, lambda: kill_group(process), lambda: process.pid)
        watch.start()
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(process)
        finally:
            watch.stop()
        return Completed(process.returncode, output.text(), timed_out, watch.reason)


def kill_group(process: "subprocess.Popen[bytes]") -> None:
    """SIGKILL a sandboxed process and everything in its session; bwrap's PID namespace takes the rest, and this
    returns once it has (bwrap's init ends last), so that nothing of the sandbox runs when its folder is emptied."""
    inits = procfs.started(procfs.children_of(process.pid))
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
    procfs.wait_ended(inits, Settings.sandbox_end_timeout)


class Drain(threading.Thread):
    """The read end of a pipe that a sandboxed process writes its output to, read to its end, of which the last
    max_bytes are kept: what the process writes costs the grader no disk, and no more memory than that. Give
    writer to the process; text() once it is done."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(daemon=True)
        self._reader, self.writer = os.pipe()
        self.max_bytes = max_bytes
        self._kept = b""

    def start(self) -> None:
        """Start reading; the writer is the process's now (call once the process is started)."""
        os.close(self.writer)
        super().start()

    def run(self) -> None:
        try:
            while chunk := os.read(self._reader, 1 << 16):
                self._kept = (self._kept + chunk)[-self.max_bytes:]
        finally:
            os.close(self._reader)

    def text(self, timeout: float = 5.0) -> str:
        """What was kept, decoded, once every writer has closed the pipe (or after timeout)."""
        self.join(timeout)
        return self._kept.decode("utf-8", "replace")


class DiskWatch(threading.Thread):
    """Calls stop_writer, once, when a sandbox's processes have written more than Settings.disk_bytes in the places
    they can write, together (their folder on the host's disk, and the sandbox's /tmp and /dev/shm, in host memory),
    made more than Settings.disk_entries files and folders there, or nested folders deeper than
    Settings.folder_depth: checked every half second, from the grader's side, for as long as the watch runs.
    started_as() gives the PID the sandbox's processes were started as (None while none runs); reason, once it has
    stopped them, says why ("" until then)."""

    def __init__(self, sandbox: Sandbox, stop_writer: Callable[[], object],
                 started_as: Callable[[], int | None]) -> None:
        super().__init__(daemon=True)
        self.sandbox = sandbox
        self.stop_writer = stop_writer
        self.started_as = started_as
        self.reason = ""
        self._root: tuple[int, procfs.SandboxRoot] | None = None  # (the PID it was found for, its sandbox's root)
        self._done = threading.Event()

    @property
    def exceeded(self) -> bool:
        return bool(self.reason)

    def run(self) -> None:
        while not self._done.wait(0.5):
            try:
                self.reason = self.check()
            except OSError:
                continue  # the folder or the sandbox went away between two looks: the next look will tell
            if self.reason:
                self.stop_writer()
                return

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()

    def check(self) -> str:
        """Why the sandbox's processes must be stopped, or ""."""
        shared_bytes, shared_entries = self._shared_usage()
        folder = tree.open_folder(self.sandbox.workdir)
        try:
            usage = tree.measure(folder, Settings.disk_bytes - shared_bytes, Settings.disk_entries - shared_entries)
        finally:
            os.close(folder)
        if usage.bytes + shared_bytes > Settings.disk_bytes:
            return f"wrote more than {Settings.disk_bytes >> 20} MiB (in its folder, /tmp and /dev/shm together)"
        if usage.entries + shared_entries > Settings.disk_entries:
            return f"made more than {Settings.disk_entries:,} files and folders"
        if usage.too_deep:
            return f"nested folders more than {Settings.folder_depth} deep"
        return ""

    def _shared_usage(self) -> tuple[int, int]:
        """(bytes, entries) that the sandbox's processes hold outside their folder: in the sandbox's /tmp and
        /dev/shm, which are its own file systems; without bwrap, as a user of its own, in the folders every user may
        write (isolation/users.py)."""
        if not self.sandbox.use_bwrap:
            if not self.sandbox.separate_user:
                return 0, 0
            found = users.usage(self.sandbox.uid, Settings.disk_bytes, Settings.disk_entries)
            return found.bytes, found.entries
        pid = self.started_as()
        if pid is None:
            return 0, 0
        if self._root is None or self._root[0] != pid:
            root = procfs.SandboxRoot.of(pid)
            if root is None:  # not started yet, or gone
                return 0, 0
            self._root = (pid, root)
        used = entries = 0
        for mount in SHARED_MOUNTS:
            folder = self._root[1].open(mount)
            if folder is None:
                continue
            try:
                info = os.fstatvfs(folder)
            finally:
                os.close(folder)
            used += (info.f_blocks - info.f_bfree) * info.f_frsize
            entries += info.f_files - info.f_ffree
        return used, entries

