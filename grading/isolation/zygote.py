"""Kernels forked from a zygote: the notebook's kernel without paying torch's import for every submission.

Starting a kernel and importing torch cost about 3.5 s of CPU per submission, more than half of grading one. Each
worker slot therefore keeps one sandbox alive for as long as the grader runs, with a zygote in it
(grading/sandboxed/zygote_server.py) that has imported torch and ipykernel once; each submission's kernel is a fork of it.

The sandbox is the one every kernel had (isolation/sandbox.py: the same mounts, user, limits and namespaces), but a
slot's submissions now share it one after another. What one of them could leave for the next is removed before
every kernel is forked, and again once the submission is graded:
- every process in the sandbox but the zygote (and bwrap's init) is killed, found from the grader's side through
  the process tree under the sandbox's bwrap, which nothing in the sandbox can leave;
- the slot's folder is emptied but for the submission's own, and the zygote empties the sandbox's /tmp and
  /dev/shm;
- a zygote that cannot be cleaned, has stopped answering or has died is retired (its whole sandbox killed) and the
  submission's kernel starts cold, as before; the process that owns the zygote starts a new one for the next;
- so is a zygote whose state a kernel changed (same-uid processes may: resource limits, priority, scheduling policy,
  CPU affinity, OOM score), checked from the grader's side before every fork against what it was before the first,
  so that no kernel starts with what an earlier one left.
The zygote is not dumpable, so a kernel cannot read its memory or descriptors; each kernel closes its end of the
control socket before running the student's code. Nothing the zygote says decides a score: it only forks.
"""
import atexit
import ctypes
import json
import os
import platform
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from grading.isolation.sandbox import PYTHON, Sandbox, bwrap_works
from grading.sandboxed import program
from grading.settings import SCRATCH_PREFIX, Settings

SOURCE = program("zygote_server")
SWEEP_ROUNDS = 50  # rounds of killing before processes that keep appearing retire the zygote
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}  # the syscall's number, by machine

_zygotes = {}  # (slot, limits) -> Zygote, in the process that started them


def zygote_for(slot, limits):
    """The slot's zygote, started here if this process owns none; None without bubblewrap (no PID namespace to
    clean) or when the zygote a parent process started is gone (its owner replaces it between submissions)."""
    if not bwrap_works():
        return None
    key = (slot, limits)
    zygote = _zygotes.get(key)
    if zygote is not None and not zygote.alive():
        if zygote.owner != os.getpid():
            return None
        zygote.close()
        zygote = None
    if zygote is None:
        atexit.unregister(close_all)  # registered once, by the first zygote this process starts
        atexit.register(close_all)
        zygote = _zygotes[key] = Zygote(slot, limits)
    return zygote


def close_all():
    """Close the zygotes this process started (a forked child that exits normally leaves its parent's alone)."""
    for key, zygote in list(_zygotes.items()):
        if zygote.owner == os.getpid():
            zygote.close()
            del _zygotes[key]


class ForkedKernel:
    """A forked kernel as jupyter_client's LocalProvisioner sees a subprocess.Popen: by its PID on the host."""

    stdin = stdout = stderr = None

    def __init__(self, pid):
        self.pid = pid
        self.started = _stat(pid)[1]
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            state, started = _stat(self.pid)
            if state is None or state in "ZX" or started != self.started:
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def terminate(self):
        self.send_signal(signal.SIGTERM)


class Zygote:
    """One slot's sandbox with its zygote; used by the process that started it and by the workers it forks."""

    def __init__(self, slot, limits):
        self.owner = os.getpid()
        self.stage = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-z{slot}-", dir="/tmp"))
        self.stage.chmod(0o711)  # sandboxed users must reach their folders inside
        self.sandbox = Sandbox(self.stage, limits, slot)
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            self.sandbox.wrap([PYTHON, "-c", SOURCE, str(theirs.fileno())]), cwd=self.stage,
            env=self.sandbox.environment(), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.channel = ours
        self._buffer = b""
        self.failure = None  # why it was retired
        # Taken here, in the owner, before any kernel is forked: a worker forked later inherits it. Once the zygote
        # runs Python, prlimit has set its limits and nothing of ours changes its state again.
        self.baseline = self._started_state()

    def new_folder(self):
        """A fresh folder for one submission's kernel, inside the slot's sandbox."""
        folder = self.stage / f"nb-{secrets.token_hex(6)}"
        folder.mkdir()
        return folder

    def fork_kernel(self, folder, env, argv):
        """A ForkedKernel running in folder, after the sandbox is cleaned of everything before it; None (and the
        zygote retired) when that cannot be done."""
        try:
            if not self.sweep(keep=folder):
                return None
            reply = self._request({"op": "fork", "cwd": str(folder), "env": env, "argv": [str(a) for a in argv]})
            return ForkedKernel(self._host_pid(int(reply["pid"])))
        except (OSError, ValueError, KeyError, TypeError, ZygoteFailed) as error:
            self.retire(f"{type(error).__name__}: {error}")
            return None

    def sweep(self, keep=None):
        """Kill every process in the sandbox but the zygote, and empty the slot's folder (but keep), /tmp and
        /dev/shm; False, with the zygote retired, when something would not go."""
        try:
            for _ in range(SWEEP_ROUNDS):
                strays = self._strays()
                if not strays:
                    break
                for pid in strays:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.01)
            else:
                raise ZygoteFailed("processes kept appearing in the sandbox")
            self._check_unchanged()
            for entry in self.stage.iterdir():
                if entry != keep:
                    _remove(entry)
            left = self._request({"op": "clean"}).get("left")
            if left:
                raise ZygoteFailed(f"could not remove {left[:3]}")
            return True
        except (OSError, ValueError, ZygoteFailed) as error:
            self.retire(f"{type(error).__name__}: {error}")
            return False

    def alive(self):
        """Whether the zygote runs and is not stopped (it was started when __init__ returned)."""
        members = self._members()
        return members is not None and _stat(members[-1])[0] not in (None, "T", "t", "Z", "X")

    def retire(self, reason=""):
        """Kill the whole sandbox; its owner starts a new zygote for the slot's next submission. The first reason
        is kept: what follows a retirement only says that the zygote is gone."""
        self.failure = self.failure or reason
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self):
        self.retire()
        if self.owner == os.getpid():
            self.process.wait()
        self.channel.close()
        shutil.rmtree(self.stage, ignore_errors=True)

    def _started_state(self):
        """The zygote's _state once bubblewrap, setpriv and prlimit have exec'd into its Python; None when the
        sandbox ends first or that takes longer than the start grace."""
        end = time.monotonic() + Settings.zygote_start_grace
        while time.monotonic() < end and _stat(self.process.pid)[0] not in (None, "Z", "X"):
            members = self._members()
            if members is not None and _argv(members[-1])[:2] == [str(PYTHON), "-c"]:
                try:
                    return _state(members[-1])
                except OSError:
                    return None
            time.sleep(0.005)
        return None

    def _check_unchanged(self):
        """ZygoteFailed when a kernel changed what the zygote hands on to the kernels it forks."""
        members = self._members()
        if members is None:
            raise ZygoteFailed("the zygote is gone")
        if self.baseline is None:
            raise ZygoteFailed(f"the zygote did not start within {Settings.zygote_start_grace:g} s")
        state = _state(members[-1])
        changed = sorted(key for key in state if state[key] != self.baseline[key])
        if changed:
            raise ZygoteFailed(f"a kernel changed the zygote's {', '.join(changed)}")

    def _members(self):
        """Host PIDs of bwrap's init in the sandbox and of the zygote, or None when the sandbox is gone.

        bwrap (self.process) has one child, the init of the sandbox's PID namespace; the zygote is the init's
        first child. Orphans in the sandbox become the init's children too, but every one of them was forked after
        the zygote (by a kernel it forked), so the zygote is the child started first. Once the zygote is dead, that
        is an orphan instead; but then the control socket, which only the zygote holds, is closed, and the first
        request retires the sandbox before anything is forked or spared for long."""
        if _stat(self.process.pid)[0] in (None, "Z", "X"):
            return None
        tree = _children()
        inits = tree.get(self.process.pid, [])
        if len(inits) != 1 or not tree.get(inits[0]):
            return None
        zygote = min(tree[inits[0]], key=lambda pid: (_stat(pid)[1] or 1 << 62, pid))
        return [inits[0], zygote]

    def _strays(self):
        members = self._members()
        if members is None:
            raise ZygoteFailed("the zygote is gone")
        tree = _children()
        found, frontier = [], list(members)
        while frontier:
            for child in tree.get(frontier.pop(), []):
                if child not in members:
                    found.append(child)
                frontier.append(child)
        return found

    def _host_pid(self, sandbox_pid):
        zygote = self._members()[-1]
        for child in _children().get(zygote, []):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == sandbox_pid:
                    return child
        raise ZygoteFailed(f"the forked kernel (PID {sandbox_pid} in the sandbox) is not there")

    def _request(self, payload):
        """Send one request and read its reply. The first reply may wait for the zygote's imports; a zygote that
        stops or dies while we wait fails at once."""
        payload["id"] = nonce = secrets.token_hex(8)
        # The leading newline ends whatever a worker killed halfway through a request may have left.
        self.channel.sendall(b"\n" + json.dumps(payload).encode() + b"\n")
        end = time.monotonic() + Settings.zygote_ready_timeout
        while True:
            while b"\n" not in self._buffer:
                if not self.alive():
                    raise ZygoteFailed("the zygote stopped or died")
                if time.monotonic() > end:
                    raise ZygoteFailed("no reply")
                if select.select([self.channel], [], [], 0.05)[0]:
                    data = self.channel.recv(1 << 16)
                    if not data:
                        raise ZygoteFailed("the zygote closed its socket")
                    self._buffer += data
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if message.get("error"):
                raise ZygoteFailed(message["error"])
            if message.get("id") == "ready":
                end = time.monotonic() + Settings.zygote_reply_timeout
            elif message.get("id") == nonce:
                return message


class ZygoteFailed(Exception):
    pass


def _stat(pid):
    """(state, start time in clock ticks) of a host process, or (None, None) when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return fields[0], int(fields[19])


def _argv(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _state(pid):
    """What a process hands on to the children it forks, and others of its uid can change: its resource limits,
    priority, scheduling policy, I/O priority, CPU and memory-node affinity, and OOM score."""
    base = Path(f"/proc/{pid}")
    fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in (base / "status").read_text().splitlines() if ":" in line)
    return {"resource limits": (base / "limits").read_text(), "priority": (fields[15], fields[16]),
            "scheduling policy": (fields[37], fields[38]), "I/O priority": _io_priority(pid),
            "affinity": (status["Cpus_allowed_list"].strip(), status["Mems_allowed_list"].strip()),
            "OOM score": (base / "oom_score_adj").read_text().strip()}


def _io_priority(pid):
    """ioprio_get(IOPRIO_WHO_PROCESS, pid), which Python does not wrap; None where the syscall's number is unknown."""
    number = IOPRIO_GET.get(platform.machine())
    return None if number is None else ctypes.CDLL(None, use_errno=True).syscall(number, 1, pid)


def _children():
    tree = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                parent = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        for folder in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
            folder.chmod(0o700)
        shutil.rmtree(path)
    else:
        path.unlink()
