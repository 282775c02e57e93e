"""The sandbox every piece of student code runs in: bubblewrap when it is there, resource limits always.

Inside bwrap a process sees the Python environment and normlab read-only, its own copy of one submission
read-write, a private /tmp and /dev/shm (tmpfs, that is the host's memory, so each is sized), /proc of its own PID
namespace, and no network. A submission's own folder is on the host's disk: a FolderWatch stops whatever fills it
past Settings.folder_bytes. Nothing else of the course is mounted:
not the sources with solutions, the hidden tests, the gradebook, other students or the grader's outputs. It dies
with the grader (--die-with-parent). When the grader runs as root, the sandboxed code runs as an unprivileged user
of its own, one per worker slot, so the process limit binds and slots cannot touch each other's processes.
prlimit applies CPU time, address space, processes, file size and open files; a wall-clock timeout kills the
whole process group. Without bwrap the limits still apply, and every run says loudly that the sandbox is missing.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from grading.settings import BWRAP, NORMLAB, REPO, Settings

MISSING_SANDBOX = ("WARNING: bubblewrap (bwrap) is missing or does not work here, so student code runs WITHOUT a "
                   "sandbox: it can read the course files and use the network. Only resource limits apply. "
                   "Install it (Debian/Ubuntu: apt-get install bubblewrap) or pass --require-sandbox.")


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_mb: int
    processes: int
    file_size_mb: int
    open_files: int
    output_kb: int

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.cpu_seconds, settings.memory_mb, settings.processes, settings.file_size_mb,
                   settings.open_files, settings.output_kb)


class SandboxMissing(Exception):
    """bubblewrap is required and cannot run here."""


@dataclass
class Completed:
    returncode: int
    output: str
    timed_out: bool


_bwrap_works = None


def bwrap_works():
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


def check_sandbox(required, log):
    """Whether student code runs under bubblewrap here: True, or a warning through log and False; SandboxMissing
    instead when required."""
    if bwrap_works():
        return True
    if required:
        raise SandboxMissing("bubblewrap (bwrap) is missing or cannot create namespaces here, and the sandbox is "
                             "required (--require-sandbox)")
    log(MISSING_SANDBOX)
    return False


# This interpreter, reached through its folder's real path: only real paths are mounted into the sandbox, so a
# symbolically linked .venv (or $HOME) would leave sys.executable unreachable inside it. The folder is resolved, not
# the file, so that a virtual environment stays one.
PYTHON = str(Path(sys.executable).parent.resolve() / Path(sys.executable).name)


def python_roots():
    """Folders the interpreter and its packages live in, to mount read-only."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(os.path.realpath(sys.executable)).parent.parent}
    return sorted({root.resolve() for root in roots})


def _ancestors(path):
    return list(reversed(Path(path).parents))[1:]


class Sandbox:
    """Runs commands for one submission whose files are in workdir."""

    def __init__(self, workdir, limits, slot=0, readonly=(), use_bwrap=True):
        self.workdir = Path(workdir).resolve()
        self.limits = limits
        self.readonly = [Path(p).resolve() for p in readonly]
        self.use_bwrap = use_bwrap and bwrap_works()
        # Inside bwrap, root drops to a user of its own. Without bwrap that user could not even reach an
        # interpreter kept under /root, so the grader's user runs the code (and, for root, nproc cannot bind).
        self.separate_user = os.geteuid() == 0 and self.use_bwrap
        self.uid = Settings.sandbox_uid_base + slot if self.separate_user else os.getuid()
        if self.separate_user:
            for path in [self.workdir, *self.workdir.rglob("*")]:
                os.lchown(path, self.uid, self.uid)

    def environment(self, extra=None):
        """A minimal environment: nothing of the grader's own leaks in."""
        env = {
            "PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin", "HOME": str(self.workdir), "USER": "student",
            "LANG": "C.UTF-8", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": str(self.workdir / ".matplotlib"), "MPLBACKEND": "Agg",
            "NORMLAB_DATA": str(self.workdir / "data"),
            # One thread each: submissions are graded in parallel, and the process limit counts threads.
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
        }
        env.update(extra or {})
        return env

    def limits_prefix(self):
        limits = self.limits
        processes = limits.processes
        if os.geteuid() != 0:
            # The process limit counts every process and thread of this user, the grader's included.
            processes += _threads_of(self.uid)
        return ["prlimit", f"--cpu={limits.cpu_seconds}", f"--as={limits.memory_mb << 20}",
                f"--nproc={processes}", f"--fsize={limits.file_size_mb << 20}", f"--nofile={limits.open_files}",
                "--core=0", "--"]

    def wrap(self, argv):
        """The full command line that runs argv in the sandbox."""
        inner = self.limits_prefix() + [str(a) for a in argv]
        if self.separate_user:
            inner = ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all"] + inner
        if not self.use_bwrap:
            return inner
        command = [shutil.which(BWRAP), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                   "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--tmpfs", "/"]
        if os.geteuid() != 0:
            command.insert(1, "--unshare-user")
        for system in ("/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/ld.so.cache", "/etc/alternatives", "/etc/fonts"):
            if os.path.exists(system):
                command += ["--ro-bind", system, system]
        command += ["--proc", "/proc", "--dev", "/dev"]
        for shared in ("/dev/shm", "/tmp"):
            command += ["--perms", "1777", "--size", str(Settings.tmpfs_bytes), "--tmpfs", shared]
        mounted = set()
        for path, mode in [(p, "--ro-bind") for p in [*python_roots(), NORMLAB, *self.readonly]] + \
                          [(self.workdir, "--bind")]:
            for parent in _ancestors(path):
                if parent not in mounted and str(parent) not in ("/usr", "/tmp"):
                    command += ["--perms", "0755", "--dir", str(parent)]
                    mounted.add(parent)
            command += [mode, str(path), str(path)]
            mounted.add(path)
        command += ["--remount-ro", "/", "--chdir", str(self.workdir), "--"]
        return command + inner

    def popen(self, argv, env=None, **kwargs):
        return subprocess.Popen(self.wrap(argv), cwd=self.workdir, env=self.environment(env),
                                start_new_session=True, **kwargs)

    def run(self, argv, timeout, env=None):
        """Run argv to completion or until timeout; output (stdout and stderr) is capped at limits.output_kb."""
        with tempfile.TemporaryFile() as captured:
            process = self.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=captured, stderr=subprocess.STDOUT)
            timed_out = False
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(process)
            captured.seek(0)
            output = captured.read(self.limits.output_kb << 10).decode("utf-8", "replace")
        return Completed(process.returncode, output, timed_out)


def kill_group(process):
    """SIGKILL a sandboxed process and everything in its session; bwrap's PID namespace takes the rest."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


class FolderWatch(threading.Thread):
    """Calls stop_writer, once, when folder holds more than Settings.folder_bytes on disk (or more than
    Settings.folder_entries entries): checked every half second, from the grader's side, for as long as the watch
    runs. exceeded says whether it did."""

    def __init__(self, folder, stop_writer):
        super().__init__(daemon=True)
        self.folder = Path(folder)
        self.stop_writer = stop_writer
        self.exceeded = False
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(0.5):
            if folder_too_full(self.folder):
                self.exceeded = True
                self.stop_writer()
                return

    def stop(self):
        self._done.set()
        if self.is_alive():
            self.join()


def folder_too_full(folder):
    """Whether folder holds more than Settings.folder_bytes of disk blocks or Settings.folder_entries entries; links
    are not followed, and the walk stops as soon as it knows."""
    used, entries, stack = 0, 0, [folder]
    while stack:
        try:
            listing = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in listing:
            entries += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            used += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            if used > Settings.folder_bytes or entries > Settings.folder_entries:
                return True
    return False


def _threads_of(uid):
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count
