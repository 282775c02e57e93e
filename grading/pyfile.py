"""Q1 and Q2: the hidden pytest suite, run in the grader, against a student's batchnormalization.py in a sandbox.

The student's module lives in a sandboxed child (grading/sandboxed/pyfile_server.py) that only computes and
returns float64 arrays; the hidden tests compute references and compare in this process. The child's exit code
and output are never evidence. A call that times out or kills the child fails its test; the child is restarted
for the next. After two timeouts in a question the rest of that question fails at once, so a stuck submission
costs seconds, not minutes, and the other questions are still graded.
"""
import contextlib
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from grading.course import HIDDEN_TESTS, PYFILE_POINTS
from grading.sandbox import kill_group

SERVER = Path(__file__).resolve().parent / "sandboxed" / "pyfile_server.py"
MAX_REPLY_BYTES = 64 << 20
TIMEOUTS_PER_QUESTION = 2


class StudentFailure(Exception):
    """The student's code did not give an answer: it raised, crashed, hung or replied nonsense."""


class StudentRaised(StudentFailure):
    def __init__(self, error, message):
        super().__init__(f"your code raised {error}: {message}" if message else f"your code raised {error}")
        self.error = error


class StudentModule:
    """The student's batchnormalization.py, behind a sandboxed child process."""

    def __init__(self, sandbox, path, call_timeout):
        self.sandbox = sandbox
        self.path = Path(path)
        self.call_timeout = call_timeout
        self.process = None
        self.question = None
        self.timeouts = {}

    def start(self):
        self.process = self.sandbox.popen([sys.executable, "-I", "-c", SERVER.read_text(), str(self.path)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def close(self):
        if self.process is not None:
            kill_group(self.process)
            self.process = None

    def call(self, op, dtype="float64", bn_param=None, **arrays):
        """Send one request; return (meta, arrays) of the reply, or raise StudentFailure."""
        if self.timeouts.get(self.question, 0) >= TIMEOUTS_PER_QUESTION:
            raise StudentFailure(f"not run: earlier calls in {self.question} timed out")
        if self.process is None:
            self.start()
        buffer = io.BytesIO()
        meta = {"op": op, "dtype": dtype, "bn_param": bn_param or {"mode": "train"}}
        np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                 **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
        payload = buffer.getvalue()
        deadline = time.monotonic() + self.call_timeout
        try:
            self.process.stdin.write(struct.pack(">Q", len(payload)) + payload)
            self.process.stdin.flush()
            (length,) = struct.unpack(">Q", self._read(8, deadline))
            if length > MAX_REPLY_BYTES:
                self.close()  # its unread bytes would answer the next call
                raise StudentFailure(f"the reply was too large ({length} bytes)")
            reply = np.load(io.BytesIO(self._read(length, deadline)), allow_pickle=False)
            reply_meta = json.loads(bytes(reply["meta"]).decode())
            reply_arrays = {k: reply[k] for k in reply.files if k != "meta"}
        except TimeoutError:
            self.timeouts[self.question] = self.timeouts.get(self.question, 0) + 1
            self.close()
            raise StudentFailure(f"timed out after {self.call_timeout:g} s") from None
        except (OSError, ValueError, KeyError, struct.error, EOFError) as error:
            self.close()
            raise StudentFailure(f"the process running batchnormalization.py stopped ({type(error).__name__})") \
                from None
        if not reply_meta.get("ok"):
            raise StudentRaised(reply_meta.get("error", "Error"), reply_meta.get("message", ""))
        return reply_meta, reply_arrays

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


ACTIVE = {}


def active_student():
    """The StudentModule the hidden tests are running against (set by grade_pyfile)."""
    if "module" not in ACTIVE:
        raise RuntimeError("the hidden tests run inside `python -m grading autograde`")
    return ACTIVE["module"]


@dataclass
class TestOutcome:
    name: str
    points: float
    max_points: float
    passed: bool
    message: str = ""


@dataclass
class QuestionScore:
    score: float
    max_score: float
    tests: list = field(default_factory=list)
    note: str = ""


class Collector:
    """A pytest plugin that turns reports into points: a test's points if it passed, none otherwise."""

    def __init__(self, module):
        self.module = module
        self.outcomes = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.module.question = question_of(item.path)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.failed:
            points = dict(report.user_properties).get("points", 0.0)
            message = report.longrepr.reprcrash.message if report.failed and hasattr(report.longrepr, "reprcrash") \
                else ("" if report.passed else str(report.longrepr)[-300:])
            message = re.sub(r"^(AssertionError|grading\.pyfile\.Student\w+): ", "", message)
            self.outcomes[report.nodeid] = TestOutcome(report.nodeid.split("::")[-1], points if report.passed
                                                       else 0.0, points, report.passed, message.strip())

    def pytest_collection_modifyitems(self, items):
        """A test function's points are shared equally by its parametrized cases."""
        cases = {}
        for item in items:
            cases.setdefault((item.path, item.originalname), []).append(item)
        for group in cases.values():
            marker = group[0].get_closest_marker("points")
            if marker is None:
                raise RuntimeError(f"hidden test {group[0].nodeid} has no @pytest.mark.points")
            for item in group:
                item.user_properties.append(("points", float(marker.args[0]) / len(group)))


def question_of(path):
    return Path(path).stem.split("_")[1]


def hidden_test_files(questions):
    return [path for q in questions for path in sorted(HIDDEN_TESTS.glob(f"check_{q}_*.py"))]


def grade_pyfile(path, sandbox, call_timeout, questions):
    """{question: QuestionScore} for the questions of batchnormalization.py among questions."""
    questions = [q for q in questions if q in PYFILE_POINTS]
    if path is None:
        return {q: QuestionScore(0.0, PYFILE_POINTS[q], note="no batchnormalization.py was submitted") for q in
                questions}
    module = StudentModule(sandbox, path, call_timeout)
    collector = Collector(module)
    ACTIVE["module"] = module
    # no:unraisableexception saves a full garbage collection (0.4 s with torch loaded) per submission
    args = ["-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:threadexception", "-p",
            "no:logging", "--assert=plain", "-q", "-o", "python_files=check_*.py",
            "--rootdir", str(HIDDEN_TESTS), *map(str, hidden_test_files(questions))]
    # Only the plugins the suite needs: faster, and no third-party plugin takes part in grading.
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            pytest.main(args, plugins=[collector])
    finally:
        ACTIVE.clear()
        module.close()
    scores = {}
    for q in questions:
        tests = [o for nodeid, o in collector.outcomes.items() if question_of(nodeid.split("::")[0]) == q]
        available = sum(t.max_points for t in tests)
        if abs(available - PYFILE_POINTS[q]) > 1e-9:
            raise RuntimeError(f"the hidden tests of {q} are worth {available} points, not {PYFILE_POINTS[q]}")
        scores[q] = QuestionScore(sum(t.points for t in tests), PYFILE_POINTS[q], tests)
    return scores
