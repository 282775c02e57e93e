"""The notebook's kernel, in a sandbox: it runs the student's cells top to bottom, then answers the grader's probes.

The executor (nbgrader's Execute, hence nbclient) stays in the grader; the kernel is started inside a
isolation.sandbox.Sandbox and reached over IPC sockets in the submission's folder. Cells run one by one: a cell past
its timeout is interrupted, each cell's output is capped, and a kernel that dies is restarted and the cells before
the one that killed it are replayed, so the student's definitions are there for the probes. A probe is grader-written
code (grading/sandboxed/kernel_probe.py) that calls the student's definitions on the grader's inputs and writes
plain arrays to a reply file, which the grader reads without trusting it (isolation/protocol.py).

The submission's folder is the kernel's to write, so every name the grader uses in it is one that no code of the
student's has seen before the grader acts on it: each kernel start gets a connection file created under a new name
(O_EXCL) and sockets under new names, which the grader opens (O_PATH, not following links) as soon as the kernel has
made them, before any student code runs in that kernel, and then connects to through those descriptors; request
files are new names too, and replies are opened without following links. The kernel's stderr is a pipe.
"""
import asyncio
import enum
import json
import os
import queue
import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any as AnyValue

import nbformat
import zmq
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Any, Dict, Integer, List, Type

from grading.authoring.regions import provided_model_code
from grading.compat import (ChannelUrlKernelClient, LaunchingKernelManager, cleanup_kernel, kernel_exited,
                            provisioned_process, reset_notebook_client)
from grading.failures import Cause, Ending, GraderError, StudentFailure
from grading.isolation.protocol import parse_reply, read_regular_file
from grading.isolation.sandbox import PYTHON, DiskWatch, Drain
from grading.isolation import procfs, tree
from grading.sandboxed import program
from grading.sandboxed.wire import encode
from grading.settings import Settings
from grading.stages import stage

PROBE_SOURCE = program("kernel_probe")
# The kernel's channels, each on the IPC socket "<ip>-<number>" that the kernel makes
CHANNELS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
# How a kernel's start fails on a sound grader: it ends or does not answer (RuntimeError, TimeoutError, nbclient's
# DeadKernelError), a process or file cannot be made (OSError), its sockets cannot be reached (zmq).
KERNEL_START_FAILURES = (RuntimeError, TimeoutError, OSError, zmq.ZMQError)


class Answer(enum.Enum):
    """What came of code sent to the kernel."""

    REPLIED = "replied"
    TIMED_OUT = "timed out"
    ENDED = "ended"


class SandboxedKernelManager(LaunchingKernelManager):
    """Starts the kernel inside a grading.isolation.sandbox.Sandbox, forked from the slot's zygote where there is one;
    it is interrupted by message, not by signal. Its connection file and sockets have names of their own, and the
    grader reaches the sockets only through descriptors it took once the kernel made them (pinned)."""

    sandbox = Any(help="the grading.isolation.sandbox.Sandbox the kernel runs in")
    zygote = Any(None, allow_none=True, help="the grading.isolation.zygote.Zygote whose sandbox holds "
                                             "sandbox.workdir, to fork the kernel from; None, or a zygote that "
                                             "fails, starts it cold")
    pinned: "Dict[str, int]" = Dict(help="{channel: descriptor (O_PATH) of the socket the kernel made for it}")
    inits: "List[tuple[int, int]]" = List(help="[(PID, start time)] of bwrap's init in a cold kernel's sandbox, which ends last")
    client_class = "grading.isolation.kernel.PinnedKernelClient"

    async def launch_kernel(self, kernel_cmd: list[str], env: dict[str, str], options: dict[str, AnyValue]) -> None:
        """Fork the kernel from the zygote, or where there is none or it fails, start it cold; then pin its sockets."""
        process = None
        if self.zygote is not None:
            process = self.zygote.fork_kernel(self.sandbox.workdir, env, self._kernel_argv)
        if process is None:
            await self.launch_cold(kernel_cmd, options)
        else:
            self.adopt_process(process, str(self.sandbox.workdir))
        await self._pin_sockets()
        started = provisioned_process(self)
        if process is None and started is not None:  # its sandbox's init is there: the kernel in it made its sockets
            self.inits = procfs.started(procfs.children_of(started[0]))

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        # the grader is outside the kernel's PID namespace: don't poll for it
        self._kernel_argv = ["-f", self.connection_file, "--IPKernelApp.parent_handle=1", *(extra_arguments or [])]
        # -P: the folder is not on sys.path while the kernel starts, so nothing a student left there shadows a module
        return self.sandbox.wrap([PYTHON, "-P", "-m", "ipykernel_launcher", *self._kernel_argv])

    def write_connection_file(self, **kwargs: AnyValue) -> None:
        """The connection file, under its new name, created here (jupyter_client's own writer removes the name
        and then creates it, following whatever link is put there in between)."""
        for channel, number in CHANNELS.items():
            setattr(self, f"{channel}_port", number)
        info = {**{f"{c}_port": n for c, n in CHANNELS.items()}, "ip": self.ip, "key": self.session.key.decode(),
                "transport": self.transport, "signature_scheme": self.session.signature_scheme,
                "kernel_name": self.kernel_name}
        descriptor = os.open(self.connection_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "w") as written:
            json.dump(info, written)
            if self.sandbox.separate_user:
                os.fchown(descriptor, self.sandbox.uid, self.sandbox.uid)
        self.mark_connection_file_written()

    async def _pin_sockets(self) -> None:
        """Open the kernel's sockets (O_PATH, never through a link) once it has made them all; the grader connects
        through these descriptors only. RuntimeError when the kernel ends or takes too long first."""
        folder = tree.open_folder(self.sandbox.workdir)
        name = os.path.basename(self.ip)
        end = time.monotonic() + Settings.kernel_start_timeout
        try:
            while True:
                for channel, number in CHANNELS.items():
                    if channel not in self.pinned:
                        descriptor = _open_socket(folder, f"{name}-{number}")
                        if descriptor is not None:
                            self.pinned[channel] = descriptor
                if len(self.pinned) == len(CHANNELS):
                    return
                if kernel_exited(self):
                    raise RuntimeError("the kernel ended before it opened its sockets")
                if time.monotonic() > end:
                    raise RuntimeError(f"the kernel opened no sockets within {Settings.kernel_start_timeout:g} s")
                await asyncio.sleep(0.01)
        finally:
            os.close(folder)

    def released(self) -> None:
        """Once the kernel is shut down: close the descriptors of its sockets (nothing of jupyter_client connects
        to them any more), and wait until a cold kernel's sandbox has ended, so that nothing of it runs when its
        folder is emptied."""
        for descriptor in self.pinned.values():
            os.close(descriptor)
        self.pinned = {}
        procfs.wait_ended(self.inits, Settings.sandbox_end_timeout)

    def channel_url(self, channel: str) -> str:
        return f"ipc:///proc/self/fd/{self.pinned[channel]}"

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=[], display_name="Python 3 (sandboxed)", language="python",
                          interrupt_mode="message")


class PinnedKernelClient(ChannelUrlKernelClient):
    """The client of a SandboxedKernelManager: it connects through the manager's descriptors of the sockets."""

    def channel_url(self, channel: str) -> str:
        manager: AnyValue = self.parent  # the SandboxedKernelManager that made this client
        return str(manager.channel_url(channel))


def _open_socket(folder: int, name: str) -> int | None:
    """A descriptor (O_PATH) of the socket name in folder; None while there is none. A link or anything else that
    is not a socket there is refused (RuntimeError)."""
    try:
        descriptor = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise RuntimeError(f"{name} in the kernel's folder is not the kernel's socket")
    return descriptor


class SandboxedExecute(Execute):
    """nbgrader's Execute with the kernel in a sandbox, one cell at a time, each cell's output capped, and
    probes into the same kernel once the cells have run."""

    kernel_manager_class = Type(SandboxedKernelManager, klass=AsyncKernelManager,
                                help="the kernel manager; the default starts kernels in the grader's sandbox"
                                ).tag(config=True)
    output_limit = Integer(Settings().kernel_output_bytes, help="bytes of output kept per cell (--output-kb)"
                           ).tag(config=True)
    sandbox = Any(help="the grading.isolation.sandbox.Sandbox of the submission being graded")
    _watch = None  # the DiskWatch on what the kernel writes, from start() to stop()
    _errors = None  # the Drain of the latest kernel process's stderr
    _program_in: AnyValue = None  # the kernel manager whose kernel holds the compiled probe program (_program_name)
    _program_name = ""
    zygote = Any(None, allow_none=True, help="the grading.isolation.zygote.Zygote the kernel is forked from (None: "
                                             "cold)")

    def __init__(self, **kwargs: AnyValue) -> None:
        # nbgrader's Execute would otherwise put its plain AsyncKernelManager in, outside the sandbox
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        kwargs.setdefault("shutdown_kernel", "immediate")  # its state is of no use once the grader is done
        kwargs.setdefault("startup_timeout", Settings.kernel_start_timeout)
        super().__init__(**kwargs)

    def create_kernel_manager(self) -> SandboxedKernelManager:
        manager_class = self.kernel_manager_class
        if not issubclass(manager_class, SandboxedKernelManager):
            raise TypeError(f"{manager_class.__name__} would start the student's kernel outside the "
                            "sandbox; a kernel manager for grading must subclass SandboxedKernelManager")
        work, name = self.sandbox.workdir, f".kernel-{secrets.token_hex(6)}"  # names no student code has seen
        manager = manager_class(sandbox=self.sandbox, zygote=self.zygote, transport="ipc", ip=str(work / name),
                                connection_file=str(work / f"{name}.json"))
        assert isinstance(manager, SandboxedKernelManager)  # checked above, as a class
        self.km = manager
        return manager

    def output(self, outs: list[nbformat.NotebookNode], msg: dict[str, AnyValue], display_id: str | None,
               cell_index: int) -> nbformat.NotebookNode | None:
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        self._output_total += size
        over = [f"{self.output_limit >> 10} KiB" if used + size > self.output_limit else "",
                f"{Settings.notebook_output_bytes >> 20} MiB for the whole notebook"
                if self._output_total > Settings.notebook_output_bytes else ""]
        if any(over):
            if cell_index not in self._capped:
                self._capped.add(cell_index)
                outs.append(nbformat.v4.new_output("stream", name="stdout", text=f"\n[output beyond "
                                                   f"{next(filter(None, over))} dropped by the grader]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def start(self, nb: nbformat.NotebookNode, resources: dict[str, AnyValue], deadline: float,
              cell_timeout: float) -> list[str]:
        """Start the kernel and run nb's code cells; returns notes about cells that could not run."""
        reset_notebook_client(self, nb)
        self.reset_execution_trackers()
        self.resources = resources
        self._output_bytes: dict[int, int] = {}
        self._output_total = 0
        self._capped: set[int] = set()
        self._deadline = deadline
        self._cell_timeout = cell_timeout
        self._restarts_left = Settings.kernel_restarts
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        self._code = code[:Settings.notebook_cells]
        self._completed = 0  # code cells run so far
        self._left_out = set()  # positions of cells that killed the kernel or timed out: replays leave them out
        notes = [not_run([c for _, c in code[Settings.notebook_cells:]], f"the notebook has more than "
                         f"{Settings.notebook_cells} code cells, and the grader runs no more")] \
            if len(code) > Settings.notebook_cells else []
        with stage("start the kernel"):
            self._start_or_retry_cold()
        self._watch = DiskWatch(self.sandbox, self._kill_kernel, self._kernel_pid)
        self._watch.start()
        while self._completed < len(self._code):
            position = self._completed
            index, cell = self._code[position]
            remaining = deadline - time.monotonic()
            if remaining < 1:
                notes.append(not_run([c for _, c in self._code[position:]], "the submission's time budget ran out"))
                break
            self.timeout = max(1, int(min(cell_timeout, remaining)))
            began = time.monotonic()
            try:
                self.execute_cell(cell, index, store_history=True)
            except DeadKernelError:
                if self._watch.exceeded:
                    notes.append(not_run([c for _, c in self._code[position:]], f"the notebook {self._watch.reason} "
                                         f"while running cell {index + 1}"))
                    break
                cell.outputs.append(error_output("DeadKernelError", "the kernel died while running this cell"))
                notes.append(f"the kernel died while running cell {index + 1}")
                self._left_out.add(position)
                self._completed += 1
                why_not = self._restart()
                if why_not:
                    notes.append(not_run([c for _, c in self._code[position + 1:]], why_not))
                    break
                continue
            except CellTimeoutError:  # raised where the configuration does not interrupt (nbgrader's interrupts)
                cell.outputs.append(error_output("CellTimeoutError", "no reply before the timeout"))
            if time.monotonic() - began >= self.timeout:
                self._left_out.add(position)  # it ran into its timeout: a replay would only wait for it again
            self._completed += 1
        return notes

    def stop(self) -> None:
        """Stop the kernel, and the watch on its folder."""
        if self._watch is not None:
            self._watch.stop()
        self._stop_kernel()

    def _stop_kernel(self) -> None:
        if self.km is not None:
            km: AnyValue = self.km  # a SandboxedKernelManager (create_kernel_manager)
            cleanup_kernel(self)
            km.released()
            if self.zygote is not None:
                self.zygote.sweep(empty_folder=False)  # what the kernel left running goes with it

    def _kernel_pid(self) -> int | None:
        started = provisioned_process(self.km) if self.km is not None else None
        return started[0] if started is not None else None

    def _kill_kernel(self) -> None:
        """From the disk watch: kill the kernel's whole process group."""
        started = provisioned_process(self.km) if self.km is not None else None
        if started is not None:
            pid, group = started
            try:
                os.killpg(group or pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def alive(self) -> bool:
        return self.km is not None and self.kc is not None and run_sync(self.km.is_alive)()

    def _start_or_retry_cold(self) -> None:
        """Start the kernel, and once more cold (in a sandbox of its own) if that fails: no student code has run yet,
        so a kernel that does not start is the machine's failure, a GraderError, never the student's. Only the ways
        a start fails (KERNEL_START_FAILURES) are retried; anything else is a bug and propagates."""
        reasons = []
        for attempt in range(2):
            if attempt:
                self.zygote = None  # the second try starts cold
            try:
                self._start_kernel()
                return
            except KERNEL_START_FAILURES as error:
                self._stop_kernel()
                said = self._errors.text().strip() if self._errors is not None else ""
                reasons.append(f"{type(error).__name__}: {error}" + (f"; it said: {said}" if said else ""))
                failure = error
        raise GraderError("the notebook's kernel could not be started, twice: " + "; then, cold: ".join(reasons),
                          Cause.SANDBOX) from failure

    def _start_kernel(self) -> None:
        self.km = self.create_kernel_manager()
        self._errors = Drain(Settings.message_chars)  # read only to say why a kernel did not start
        env = {"NBGRADER_EXECUTION": "autograde"}
        if self.sandbox.use_bwrap:
            # IPython's profile (startup files, configuration) in the sandbox's own /tmp, which is emptied before
            # each kernel, not in the folder a kernel that died may have written for the one that replaces it
            env["IPYTHONDIR"] = "/tmp/.ipython"
        try:
            self.start_new_kernel(cwd=str(self.sandbox.workdir), stdout=subprocess.DEVNULL,
                                  stderr=self._errors.writer, env=self.sandbox.environment(env))
        finally:
            self._errors.start()
        self.start_new_kernel_client()
        self.wait_for_reply(self.kc.kernel_info())

    def _restart(self) -> str:
        """A fresh kernel with the cells that completed so far replayed, without keeping their output; "" when it
        is ready, else why not, for the student: no restart left, the submission's time budget ran out, or a
        replayed cell ended the kernel again (their code's doing, as the first time).

        A kernel that does not start is a GraderError, as at the first start. So is a replayed cell that gets no
        reply within the cell timeout: its first run finished within that timeout (cells that timed out or ended
        the kernel are not replayed), so on the same code a replay that does not can only be the machine's load,
        and must not cost the student the questions after it. Anything else raised propagates: a bug."""
        self._stop_kernel()
        if self._restarts_left <= 0:
            return "the kernel kept dying"
        self._restarts_left -= 1
        self._start_or_retry_cold()
        for position, (index, cell) in enumerate(self._code[:self._completed]):
            if position in self._left_out:
                continue
            remaining = self._deadline - time.monotonic()
            if remaining < 1:
                return "the submission's time budget ran out while its cells were run again"
            timeout = min(self._cell_timeout, remaining)
            answer = self._quiet(cell.source, timeout)
            if answer is Answer.ENDED:
                self._stop_kernel()
                if self._watch is not None and self._watch.exceeded:
                    return f"the notebook {self._watch.reason}"
                return f"the kernel died again when cell {index + 1} was run again"
            if answer is Answer.TIMED_OUT:
                if timeout < self._cell_timeout:
                    return "the submission's time budget ran out while its cells were run again"
                raise GraderError(f"cell {index + 1} ran within {self._cell_timeout:g} s the first time but not "
                                  "when it was run again after the kernel died (is the machine overloaded?)",
                                  Cause.OVERLOAD)
        return ""

    def _quiet(self, code: str, timeout: float) -> Answer:
        """Execute code with nothing kept of its output: the kernel's Answer within timeout seconds."""
        return self._execute(code, timeout)[0]

    def _execute(self, code: str, timeout: float) -> tuple[Answer, dict[str, AnyValue]]:
        """Execute code with nothing kept of its output: the kernel's Answer within timeout seconds, and the content
        of its execute_reply ({} without one)."""
        message_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._drain_iopub()
            try:
                reply = run_sync(self.kc.get_shell_msg)(timeout=0.2)
            except queue.Empty:
                if not self.alive:
                    return Answer.ENDED, {}
                continue
            if reply.get("parent_header", {}).get("msg_id") == message_id:
                return Answer.REPLIED, reply.get("content", {})
        return Answer.TIMED_OUT, {}

    def _drain_iopub(self) -> None:
        while True:
            try:
                run_sync(self.kc.get_iopub_msg)(timeout=0)
            except queue.Empty:
                return

    def probe(self, op: str, args: dict[str, AnyValue], arrays: dict[str, AnyValue],
              timeout: float) -> tuple[dict[str, AnyValue], dict[str, AnyValue]]:
        """Ask the kernel for op on the grader's inputs; (meta, arrays) of its reply, or StudentFailure."""
        timeout = min(timeout, self._deadline - time.monotonic())
        if timeout < 1:
            raise StudentFailure("not run: the submission's time budget ran out", Ending.OUT_OF_TIME)
        watch = self._watch
        assert watch is not None, "probe() before start()"
        if watch.exceeded:
            raise StudentFailure(f"not run: the notebook {watch.reason}", Ending.NOT_RUN)
        if not self.alive:
            why_not = self._restart()
            if why_not:
                raise StudentFailure(f"not run: the notebook's kernel is gone ({why_not})", Ending.NOT_RUN)
        nonce = secrets.token_hex(8)
        request_name, reply_name = f".request-{nonce}.npz", f".reply-{nonce}.npz"
        # a new name, created here and never through a link the student may have planted
        descriptor = os.open(self.sandbox.workdir / request_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o644)
        with os.fdopen(descriptor, "wb") as request:
            request.write(encode({"op": op, "args": args}, arrays))
        started = time.monotonic()
        try:
            answer = self._run_probe_program(request_name, reply_name, timeout)
        finally:
            _unlink(self.sandbox.workdir / request_name)
        if answer is Answer.TIMED_OUT:
            run_sync(self.km.interrupt_kernel)()
            if self._quiet("None", Settings.interrupt_grace) is not Answer.REPLIED:
                self._stop_kernel()  # stuck for good: the next probe starts a fresh kernel
            raise StudentFailure(f"timed out after {time.monotonic() - started:.0f} s", Ending.TIMED_OUT)
        if answer is Answer.ENDED:
            self._stop_kernel()
            raise StudentFailure("the kernel died while answering", Ending.ENDED)
        path = self.sandbox.workdir / reply_name
        try:
            return parse_reply(read_regular_file(path))
        finally:
            _unlink(path)

    def _run_probe_program(self, request_name: str, reply_name: str, timeout: float) -> Answer:
        """Run the probe program on the request file, within timeout seconds; the kernel's Answer.

        Sending and compiling the program's 15 kB of text cost a layer's probe about 11 ms of its 18 (issue 33; an
        execute round trip is 3), so the first probe into a kernel leaves the compiled program there, under a new
        name, and later ones only name it. Each run still gets a namespace of its own, as before. Should the
        student's code have removed the name during an earlier probe, the short cell fails before anything of theirs
        runs, and the program is sent in full again."""
        end = time.monotonic() + timeout
        if self._program_in is self.km:
            answer, reply = self._execute(self._probe_cell(request_name, reply_name, install=False), timeout)
            if not (answer is Answer.REPLIED and reply.get("status") == "error" and reply.get("ename") == "NameError"
                    and repr(self._program_name) in str(reply.get("evalue", ""))):
                return answer
        self._program_name = f"_grader_probe_{secrets.token_hex(6)}"
        answer = self._quiet(self._probe_cell(request_name, reply_name, install=True), end - time.monotonic())
        self._program_in = self.km if answer is Answer.REPLIED else None
        return answer

    def _probe_cell(self, request_name: str, reply_name: str, install: bool) -> str:
        """The code that runs the probe program (compiled into the kernel under _program_name first, if install) in
        a namespace of its own, with STUDENT the kernel's namespace; the program and the arguments that never change
        are kept as a tuple, which nothing can change in place. It names no builtin but those the program always
        needed (a student may well have a variable called dict)."""
        arguments = probe_arguments(request_name, reply_name)
        fixed = tuple((name, value) for name, value in arguments.items() if name not in ("REQUEST", "REPLY"))
        program = self._program_name
        run = (f"exec({program}[0], {{'STUDENT': globals(), **{{name: value for name, value in {program}[1]}}, "
               f"'REQUEST': {request_name!r}, 'REPLY': {reply_name!r}}})")
        if not install:
            return run
        return f"{self._program_name} = (compile({PROBE_SOURCE!r}, '<grader probe>', 'exec'), {fixed!r})\n{run}"


def _unlink(path: Path) -> None:
    """Unlink a name the grader made in the kernel's folder; whatever the kernel put in its place (a folder, say)
    stays until the folder is emptied."""
    try:
        os.unlink(path)
    except OSError:
        pass


def probe_arguments(request: str, reply: str) -> dict[str, AnyValue]:
    """What the probe program (sandboxed/kernel_probe.py) is given besides STUDENT, the namespace it probes."""
    return {"REQUEST": str(request), "REPLY": str(reply), "MESSAGE_CHARS": Settings.message_chars,
            "MODEL_CODE": provided_model_code()}


def error_output(name: str, value: str) -> nbformat.NotebookNode:
    """An error output of the grader's, as nbformat writes one."""
    return nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[f"{name}: {value}"])


def not_run(cells: list[nbformat.NotebookNode], reason: str) -> str:
    """Mark cells as not run, for reason; the note that says so."""
    for cell in cells:
        cell.outputs = [error_output("NotRun", reason)]
        cell.execution_count = None
    return f"{reason}; {len(cells)} cell(s) from there on did not run"
