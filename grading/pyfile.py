"""Q1 and Q2: the student's batchnormalization.py behind a sandboxed child process.

The child (grading/sandboxed/pyfile_server.py) only computes: each request and reply is a wire archive
(grading/sandboxed/wire.py) of float64 arrays, and the hidden tests compare in the grader. The child's exit code
and output are never evidence. A call that times out or kills the child fails its test, and the child is
restarted for the next; after two timeouts in a grade cell the rest of that cell fails at once, so a stuck
submission costs seconds, not minutes.
"""
import os
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

from grading.kernel import StudentFailure
from grading.protocol import MAX_REPLY_BYTES, BadReply, parse_reply
from grading.sandbox import kill_group
from grading.sandboxed.wire import encode

SANDBOXED = Path(__file__).resolve().parent / "sandboxed"
SERVER_SOURCE = (SANDBOXED / "wire.py").read_text() + "\n" + (SANDBOXED / "pyfile_server.py").read_text()
TIMEOUTS_PER_CELL = 2


class StudentRaised(StudentFailure):
    def __init__(self, error, message):
        super().__init__(f"your code raised {error}: {message}" if message else f"your code raised {error}")
        self.error = error


class StudentModule:
    """The student's batchnormalization.py, behind a sandboxed child process. `cell` is the grade cell whose
    checks are running, for the timeout budget; the hidden suite's plugin sets it."""

    def __init__(self, sandbox, path, call_timeout):
        self.sandbox = sandbox
        self.path = Path(path)
        self.call_timeout = call_timeout
        self.process = None
        self.cell = None
        self.timeouts = {}

    def start(self):
        self.process = self.sandbox.popen([sys.executable, "-I", "-c", SERVER_SOURCE, str(self.path)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def close(self):
        if self.process is not None:
            kill_group(self.process)
            self.process = None

    def call(self, op, dtype="float64", bn_param=None, **arrays):
        """Send one request; return (meta, arrays) of the reply, or raise StudentFailure."""
        if self.timeouts.get(self.cell, 0) >= TIMEOUTS_PER_CELL:
            raise StudentFailure("not run: earlier calls of this check timed out")
        if self.process is None:
            self.start()
        payload = encode({"op": op, "dtype": dtype, "bn_param": bn_param or {"mode": "train"}}, arrays)
        deadline = time.monotonic() + self.call_timeout
        try:
            self.process.stdin.write(struct.pack(">Q", len(payload)) + payload)
            self.process.stdin.flush()
            (length,) = struct.unpack(">Q", self._read(8, deadline))
            if length > MAX_REPLY_BYTES:
                self.close()  # its unread bytes would answer the next call
                raise StudentFailure(f"the reply was too large ({length} bytes)")
            meta, reply = parse_reply(self._read(length, deadline))
        except TimeoutError:
            self.timeouts[self.cell] = self.timeouts.get(self.cell, 0) + 1
            self.close()
            raise StudentFailure(f"timed out after {self.call_timeout:g} s") from None
        except BadReply as error:
            self.close()
            raise StudentFailure(str(error)) from None
        except (OSError, struct.error, EOFError) as error:
            self.close()
            raise StudentFailure(f"the process running batchnormalization.py stopped ({type(error).__name__})") \
                from None
        if meta.get("ok") is not True:
            raise StudentRaised(str(meta.get("error", "Error"))[:80], str(meta.get("message", ""))[:500])
        return meta, reply

    def _read(self, count, deadline):
        chunks, received, fd = [], 0, self.process.stdout.fileno()
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
