"""Q1 and Q2: the student's batchnormalization.py behind a sandboxed child process.

The child (grading/sandboxed/pyfile_server.py) only computes: each request and reply is a wire archive
(grading/sandboxed/wire.py) of float64 arrays, and the hidden tests compare in the grader. The child's exit code
and output are never evidence. A call that times out or kills the child fails its test, and the child is
restarted for the next; the CallBudget ends a grade cell whose calls keep timing out. A child that does not
say it is ready, before the student's module is imported, is started once more; then it is a GraderError. A
DiskWatch stops a child that writes past the disk bound, and no call is made after that.
"""
import os
import select
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from grading.failures import BadReply, Ending, GraderError, StudentFailure
from grading.isolation.protocol import CallBudget, Reply, parse_reply
from grading.isolation.sandbox import PYTHON, DiskWatch, Drain, Sandbox, kill_group
from grading.sandboxed import program
from grading.sandboxed.wire import encode
from grading.settings import Settings

SERVER_SOURCE = program("pyfile_server")
# What each operation of the child (sandboxed/pyfile_server.py) always replies. A reply without it is forged or broken,
# and is the student's BadReply before any check reads it, never a check that fails on a missing key.
REPLY_ARRAYS = {"forward": {"out", "x_after", "gamma_after", "beta_after"}, "forward_many": {"out"},
                "forward_backward": {"out", "dx", "dgamma", "dbeta"}}


class StudentModule(CallBudget):
    """The student's batchnormalization.py, behind a sandboxed child process."""

    def __init__(self, sandbox: Sandbox, path: str | os.PathLike[str], call_timeout: float) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.path = Path(path)
        self.call_timeout = call_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.watch = DiskWatch(sandbox, self._kill, lambda: self.process.pid if self.process else None)

    def start(self) -> None:
        """Start the child and wait until it is ready, twice at most; GraderError if it never is."""
        for _ in range(2):
            errors = Drain(Settings.message_chars)
            try:
                self.process = self.sandbox.popen(
                    [PYTHON, "-I", "-c", SERVER_SOURCE, str(self.path), str(Settings.message_chars)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors.writer)
            finally:
                errors.start()
            try:
                self._reply(time.monotonic() + Settings.child_start_timeout)
                if not self.watch.is_alive() and not self.watch.exceeded:
                    self.watch.start()
                return
            except (TimeoutError, EOFError, OSError, struct.error, BadReply):
                self._kill()
                said = errors.text().strip()
        raise GraderError("the sandboxed Python for batchnormalization.py did not start, twice: "
                          + (said or "it said nothing"))

    def close(self) -> None:
        """Stop the child and the watch on its folder, for good."""
        self.watch.stop()
        self._kill()

    def _kill(self) -> None:
        if self.process is not None:
            kill_group(self.process)
            self.process = None

    def call(self, op: str, dtype: str = "float64", bn_param: dict[str, Any] | None = None,
             **arrays: Any) -> Reply:
        """Send one request; return (meta, arrays) of the reply, or raise StudentFailure."""
        self.check()
        if self.watch.exceeded:
            raise StudentFailure(f"not run: batchnormalization.py {self.watch.reason}", Ending.NOT_RUN)
        if self.process is None:
            self.start()
        payload = encode({"op": op, "dtype": dtype, "bn_param": bn_param or {"mode": "train"}}, arrays)
        deadline = time.monotonic() + self.call_timeout
        try:
            # held here: the DiskWatch may stop the child (and clear self.process) at any moment
            process = self.process
            if process is None or process.stdin is None:
                raise EOFError  # the DiskWatch stopped the child
            process.stdin.write(struct.pack(">Q", len(payload)) + payload)
            process.stdin.flush()
            return self.received(checked(op, self._reply(deadline)))
        except TimeoutError:
            self.spend()
            self._kill()
            raise StudentFailure(f"timed out after {self.call_timeout:g} s", Ending.TIMED_OUT) from None
        except BadReply:
            self.spend()
            self._kill()  # its unread bytes would answer the next call
            raise
        except (OSError, struct.error, EOFError) as error:
            self.spend()
            self._kill()
            if self.watch.exceeded:
                raise StudentFailure(f"batchnormalization.py {self.watch.reason} and was stopped",
                                     Ending.ENDED) from None
            raise StudentFailure("batchnormalization.py ended its own process (or was stopped) before it answered",
                                 Ending.ENDED) from None

    def _reply(self, deadline: float) -> Reply:
        (length,) = struct.unpack(">Q", self._read(8, deadline))
        if length > Settings.reply_bytes:
            raise BadReply(f"the reply was too large ({length} bytes)")
        return parse_reply(self._read(length, deadline))

    def _read(self, count: int, deadline: float) -> bytes:
        process = self.process
        if process is None or process.stdout is None:
            raise EOFError  # the DiskWatch stopped the child
        chunks: list[bytes] = []
        received, fd = 0, process.stdout.fileno()
        while received < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(count - received, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)


def checked(op: str, reply: Reply) -> Reply:
    """reply (meta, arrays) of op if it holds what the child always replies (REPLY_ARRAYS, and a forward's dtype
    names); BadReply otherwise."""
    meta, arrays = reply
    missing = sorted(REPLY_ARRAYS[op] - set(arrays))
    if missing:
        raise BadReply(f"the reply had no {', '.join(missing)}")
    dtypes = meta.get("dtypes")
    if op == "forward" and not (isinstance(dtypes, dict) and "out" in dtypes
                                and all(isinstance(value, str) for value in dtypes.values())):
        raise BadReply("the reply did not name the dtypes of what was returned")
    return reply
