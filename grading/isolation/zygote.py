"""Kernels forked from a zygote: the notebook's kernel without paying torch's import for every submission.

Starting a kernel and importing torch cost about 3.5 s of CPU per submission, more than half of grading one. Each
worker slot therefore keeps one sandbox alive for as long as the grader runs, with a zygote in it
(grading/sandboxed/zygote_server.py) that has imported torch and ipykernel once; each submission's kernel is a fork of it.

The sandbox is the one every kernel had (isolation/sandbox.py: the same mounts, user, limits and namespaces), but a
slot's submissions now share it one after another, and its one writable folder: the kernel folder, in a folder of
the grader's (the slot's stage) that the sandbox cannot see. What one of them could leave for the next is removed
before every kernel is forked, and again once the submission is graded:
- every process in the sandbox but the zygote (and bwrap's init) is killed, found from the grader's side through
  the process tree under the sandbox's bwrap, which nothing in the sandbox can leave;
- the grader empties the sandbox's /tmp and /dev/shm, through the zygote's /proc/<pid>/root and descriptors only
  (isolation/tree.py), sparing what it mounted there; and, once the submission is graded, the kernel folder;
- a zygote that cannot be cleaned, has stopped answering or has died is retired (its whole sandbox killed) and the
  submission's kernel starts cold, as before; the process that owns the zygote starts a new one for the next;
- so is a zygote whose state a kernel changed (same-uid processes may: resource limits, priority, scheduling policy,
  CPU affinity, OOM score), checked from the grader's side before every fork against what it was before the first,
  so that no kernel starts with what an earlier one left.
The zygote is not dumpable, so a kernel cannot read its memory or descriptors; each kernel closes its end of the
control socket before running the student's code. Nothing the zygote says decides a score: it only forks.

A grading run keeps its zygotes in a Zygotes of its own (GradingRun.zygotes, handed to each submission's context):
the process that runs it starts them, the children it forks fork kernels from them, and they end with the run.
"""
import ctypes
import json
import os
import platform
import secrets
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from grading.isolation import procfs, scratch, tree
from grading.isolation.procfs import stat as _stat
from grading.isolation.sandbox import PYTHON, SHARED_MOUNTS, Limits, Sandbox, bwrap_works
from grading.sandboxed import program
from grading.settings import Settings

SOURCE = program("zygote_server")
SWEEP_ROUNDS = 50  # rounds of killing before processes that keep appearing retire the zygote
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}  # the syscall's number, by machine

class Zygotes:
    """The zygotes of one grading run, one per (worker slot, limits): started by the process that made this (their
    owner), used by it and by the children it forks, closed by close() or at the end of a `with` block."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self._started: dict[tuple[int, Limits], Zygote] = {}

    def for_slot(self, slot: int, limits: Limits) -> "Zygote | None":
        """The slot's zygote, started here if there is none and this is the owner; None without bubblewrap (no PID
        namespace to clean), or in a forked child when the owner's zygote is gone (the owner replaces it between
        submissions)."""
        if not bwrap_works():
            return None
        key = (slot, limits)
        zygote = self._started.get(key)
        if zygote is not None and not zygote.alive():
            if os.getpid() != self.owner:
                return None
            zygote.close()
            zygote = None
        if zygote is None:
            if os.getpid() != self.owner:
                return None
            zygote = self._started[key] = Zygote(slot, limits)
        return zygote

    def close(self) -> None:
        """Close the zygotes, in their owner (a forked child leaves its parent's alone)."""
        if os.getpid() != self.owner:
            return
        for key, zygote in list(self._started.items()):
            zygote.close()
            del self._started[key]

    def __enter__(self) -> "Zygotes":
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> "Zygotes":
        """The run's zygotes themselves: a copy of what holds them (nbconvert copies a notebook's resources, where
        the SubmissionContext carries them) shares them."""
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class ForkedKernel:
    """A forked kernel as jupyter_client's LocalProvisioner sees a subprocess.Popen: by its PID on the host."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = _stat(pid)[1]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            state, started = _stat(self.pid)
            if state is None or state in "ZX" or started != self.started:
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if timeout is not None and end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """One slot's sandbox with its zygote; used by the process that started it and by the workers it forks."""

    def __init__(self, slot: int, limits: Limits) -> None:
        self.owner = os.getpid()
        self.stage = scratch.make(f"z{slot}-")
        self.folder = self.stage / "kernel"
        self.folder.mkdir()
        self.sandbox = Sandbox(self.folder, limits, slot)
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            self.sandbox.wrap([PYTHON, "-c", SOURCE, str(theirs.fileno())]), cwd=self.folder,
            env=self.sandbox.environment(), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.channel = ours
        self._buffer = b""
        self.failure: str | None = None  # why it was retired
        # Taken here, in the owner, before any kernel is forked: a worker forked later inherits it. Once the zygote
        # runs Python, prlimit has set its limits and nothing of ours changes its state again.
        self.baseline = self._started_state()

    def new_folder(self) -> Path | None:
        """The kernel folder, empty, for one submission's kernel; None (and the zygote retired) when it cannot be
        emptied."""
        return self.folder if self.sweep() else None

    def fork_kernel(self, folder: Path, env: dict[str, str], argv: list[str]) -> ForkedKernel | None:
        """A ForkedKernel running in folder (the kernel folder), after the sandbox is cleaned of everything but that
        folder; None (and the zygote retired) when that cannot be done."""
        try:
            if folder != self.folder or not self.sweep(empty_folder=False):
                return None
            reply = self._request({"op": "fork", "cwd": str(folder), "env": env, "argv": [str(a) for a in argv]})
            return ForkedKernel(self._host_pid(int(reply["pid"])))
        except (OSError, ValueError, KeyError, TypeError, ZygoteFailed) as error:
            self.retire(f"{type(error).__name__}: {error}")
            return None

    def sweep(self, empty_folder: bool = True) -> bool:
        """Kill every process in the sandbox but the zygote, and empty /tmp, /dev/shm and (when empty_folder) the
        kernel folder; False, with the zygote retired, when something would not go."""
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
            left = self._empty_shared_mounts()
            if empty_folder:
                folder = tree.open_folder(self.folder)
                try:
                    left += tree.empty(folder)
                finally:
                    os.close(folder)
            if left:
                raise ZygoteFailed(f"could not remove {left[:3]}")
            return True
        except (OSError, ValueError, ZygoteFailed) as error:
            self.retire(f"{type(error).__name__}: {error}")
            return False

    def _empty_shared_mounts(self) -> list[str]:
        """Empty the sandbox's /tmp and /dev/shm, seen through the zygote's root; what could not be removed, but for
        what the grader mounted there and the folders on the way to it."""
        members = self._members()
        root = procfs.SandboxRoot.of(members[-1]) if members else None
        if root is None:
            raise ZygoteFailed("the zygote is gone, or not in a sandbox of its own")
        mounted = {str(path) for path, _ in self.sandbox.mounts()}
        left = []
        for mount in SHARED_MOUNTS:
            folder = root.open(mount)
            if folder is None:
                raise ZygoteFailed(f"the sandbox's /{mount} cannot be reached")
            try:
                left += [f"/{mount}/{name}" for name in tree.empty(folder) if f"/{mount}/{name}" not in mounted]
            finally:
                os.close(folder)
        return left

    def alive(self) -> bool:
        """Whether the zygote runs and is not stopped (it was started when __init__ returned)."""
        members = self._members()
        return members is not None and _stat(members[-1])[0] not in (None, "T", "t", "Z", "X")

    def retire(self, reason: str = "") -> None:
        """Kill the whole sandbox; its owner starts a new zygote for the slot's next submission. The first reason
        is kept: what follows a retirement only says that the zygote is gone."""
        self.failure = self.failure or reason
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """Kill the zygote's sandbox and remove its stage; its owner waits for it."""
        self.retire()
        if self.owner == os.getpid():
            self.process.wait()
        self.channel.close()
        try:
            scratch.remove(self.stage)
        except OSError:
            pass  # a process of the sandbox not yet gone: scratch.clear_stale removes it after this grader

    def _started_state(self) -> dict[str, Any] | None:
        """The zygote's _state once bubblewrap, setpriv and confine have exec'd into its Python; None when the
        sandbox ends first or that takes longer than the start grace."""
        end = time.monotonic() + Settings.zygote_start_grace
        while time.monotonic() < end and _stat(self.process.pid)[0] not in (None, "Z", "X"):
            members = self._members()
            if members is not None and procfs.argv(members[-1])[:2] == [str(PYTHON), "-c"]:
                try:
                    return _state(members[-1])
                except OSError:
                    return None
            time.sleep(0.005)
        return None

    def _check_unchanged(self) -> None:
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

    def _members(self) -> list[int] | None:
        """Host PIDs of bwrap's init in the sandbox and of the zygote, or None when the sandbox is gone.

        bwrap (self.process) has one child, the init of the sandbox's PID namespace; the zygote is the init's
        first child. Orphans in the sandbox become the init's children too, but every one of them was forked after
        the zygote (by a kernel it forked), so the zygote is the child started first. Once the zygote is dead, that
        is an orphan instead; but then the control socket, which only the zygote holds, is closed, and the first
        request retires the sandbox before anything is forked or spared for long."""
        if _stat(self.process.pid)[0] in (None, "Z", "X"):
            return None
        family = procfs.children()
        inits = family.get(self.process.pid, [])
        if len(inits) != 1 or not family.get(inits[0]):
            return None
        zygote = min(family[inits[0]], key=lambda pid: (_stat(pid)[1] or 1 << 62, pid))
        return [inits[0], zygote]

    def _strays(self) -> list[int]:
        members = self._members()
        if members is None:
            raise ZygoteFailed("the zygote is gone")
        family = procfs.children()
        found, frontier = [], list(members)
        while frontier:
            for child in family.get(frontier.pop(), []):
                if child not in members:
                    found.append(child)
                frontier.append(child)
        return found

    def _host_pid(self, sandbox_pid: int) -> int:
        members = self._members()
        if members is None:
            raise ZygoteFailed("the zygote is gone")
        zygote = members[-1]
        for child in procfs.children().get(zygote, []):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == sandbox_pid:
                    return child
        raise ZygoteFailed(f"the forked kernel (PID {sandbox_pid} in the sandbox) is not there")

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
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
    """The zygote cannot be used any more: it is retired, and the kernel starts cold."""


def _state(pid: int) -> dict[str, Any]:
    """What a process hands on to the children it forks, and others of its uid can change: its resource limits,
    priority, scheduling policy, I/O priority, CPU and memory-node affinity, and OOM score."""
    base = Path(f"/proc/{pid}")
    fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in (base / "status").read_text().splitlines() if ":" in line)
    return {"resource limits": (base / "limits").read_text(), "priority": (fields[15], fields[16]),
            "scheduling policy": (fields[37], fields[38]), "I/O priority": _io_priority(pid),
            "affinity": (status["Cpus_allowed_list"].strip(), status["Mems_allowed_list"].strip()),
            "OOM score": (base / "oom_score_adj").read_text().strip()}


def _io_priority(pid: int) -> int | None:
    """ioprio_get(IOPRIO_WHO_PROCESS, pid), which Python does not wrap; None where the syscall's number is unknown."""
    number = IOPRIO_GET.get(platform.machine())
    return None if number is None else ctypes.CDLL(None, use_errno=True).syscall(number, 1, pid)
