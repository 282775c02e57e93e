"""Q3–Q5: the notebook, sanitized and scored by nbgrader, with its kernel running in the sandbox.

Sanitizing is nbgrader's own: ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells (which restores
edited and deleted test cells, hidden tests included, from the gradebook and verifies checksums) and
CheckCellMetadata. Execution uses nbgrader's Execute, but the kernel is started inside the sandbox and reached over
IPC sockets in the submission's folder, so the executor, and everything it decides, stays outside. Cells run one
by one: a cell past its timeout is interrupted, a dead kernel or an exhausted time budget fails only the cells after
it (nbgrader would count an unexecuted test cell as passed), and each cell's output is capped. Scores come from
nbgrader's determine_grade.
"""
import json
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, Execute, IgnorePattern,
                                    LimitOutput, OverwriteCells, OverwriteKernelspec)
from nbgrader.utils import determine_grade, is_grade, is_solution
from traitlets import Any, Integer

from grading.settings import ASSIGNMENT, NOTEBOOK_ID

MESSAGE_CHARS = 400
# Code that can change how later cells run, or what the grader sees of them: in-kernel tests cannot defend
# against it, so the grader flags it for a human instead (grading/SECURITY.md).
TAMPERING = {
    r"\bget_ipython\b": "get_ipython (can rewrite or skip later cells)",
    r"\binput_transformers|\bast_transformers": "IPython input transformers",
    r"\bshowtraceback\b|\bset_custom_exc\b": "IPython error handling",
    r"\bsys\.(settrace|setprofile|_getframe|modules)\b": "interpreter internals (sys)",
    r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\.": "builtins",
    r"\bos\._exit\b|\batexit\b": "process exit hooks",
    r"\bctypes\b|\bgc\.get_objects\b": "ctypes or the garbage collector",
    r"\b(checks|torch|nn|np|numpy)\.\w+(\.\w+)*\s*=[^=]": "rebinding a library function",
}


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside a grading.sandbox.Sandbox; it is interrupted by message, not by signal."""

    sandbox = Any()

    def format_kernel_cmd(self, extra_arguments=None):
        return self.sandbox.wrap([sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file,
                                  # the grader is outside the kernel's PID namespace: don't poll for it
                                  "--IPKernelApp.parent_handle=1", *(extra_arguments or [])])

    def write_connection_file(self, **kwargs):
        super().write_connection_file(**kwargs)
        if self.sandbox.separate_user:
            os.chown(self.connection_file, self.sandbox.uid, self.sandbox.uid)

    @property
    def kernel_spec(self):
        return KernelSpec(argv=[], display_name="Python 3 (sandboxed)", language="python",
                          interrupt_mode="message")


class SandboxedExecute(Execute):
    """nbgrader's Execute, one cell at a time, with the kernel in a sandbox and each cell's output capped."""

    sandbox = Any()
    output_limit = Integer(256 << 10)

    def create_kernel_manager(self):
        work = self.sandbox.workdir
        self.km = SandboxedKernelManager(sandbox=self.sandbox, transport="ipc", ip=str(work / ".k"),
                                         connection_file=str(work / ".kernel.json"))
        return self.km

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._output_bytes.get(cell_index, 0)
        self._output_bytes[cell_index] = used + size
        if used + size > self.output_limit:
            if used <= self.output_limit:
                outs.append(nbformat.v4.new_output("stream", name="stdout",
                                                   text=f"\n[output beyond {self.output_limit >> 10} KiB dropped "
                                                        "by the grader]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def run(self, nb, resources, deadline, cell_timeout):
        """Execute nb's code cells in order; return a note about cells that could not run, or ''."""
        NotebookClient.__init__(self, nb)  # the per-run state, as nbconvert's ExecutePreprocessor resets it
        self.reset_execution_trackers()
        self.resources = resources
        self._output_bytes = {}
        code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        try:
            with self.setup_kernel(cwd=str(self.sandbox.workdir), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL,
                                   env=self.sandbox.environment({"NBGRADER_EXECUTION": "autograde"})):
                self.wait_for_reply(self.kc.kernel_info())
                for position, (index, cell) in enumerate(code):
                    remaining = deadline - time.monotonic()
                    if remaining < 1:
                        return not_run([c for _, c in code[position:]], "the submission's time budget ran out")
                    self.timeout = max(1, int(min(cell_timeout, remaining)))
                    try:
                        self.execute_cell(cell, index, store_history=True)
                    except DeadKernelError:
                        return not_run([c for _, c in code[position:]],
                                       f"the kernel died while running cell {index + 1}")
                    except CellTimeoutError:
                        cell.outputs.append(error_output("CellTimeoutError", "no reply before the timeout"))
        except Exception as error:
            return not_run([c for _, c in code if c.get("execution_count") is None and not c.outputs],
                           f"the notebook could not be run: {type(error).__name__}: {error}")
        return ""


def error_output(name, value):
    return nbformat.v4.new_output("error", ename=name, evalue=value, traceback=[f"{name}: {value}"])


def not_run(cells, reason):
    for cell in cells:
        cell.outputs = [error_output("NotRun", reason)]
        cell.execution_count = None
    return f"{reason}; {len(cells)} cell(s) after it did not run"


@dataclass
class CellScore:
    """One grade cell's result. A written answer (manual) is pending until a TA grades it, unless it was left
    blank, which nbgrader scores 0 at once."""

    grade_id: str
    score: float
    max_score: float
    message: str = ""
    manual: bool = False
    pending: bool = False


@dataclass
class NotebookResult:
    cells: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    flags: list = field(default_factory=list)
    problem: str = ""
    executed: dict = None


class _Notes(logging.Handler):
    """Keeps nbgrader's warnings about changed cell settings as notes for the student and the TA."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.notes = []

    def emit(self, record):
        text = record.getMessage()
        # Every released test cell differs from its gradebook copy by its hidden tests: edits are found by
        # comparing with the release instead (test_cell_changes).
        if "has changed" in text and "'checksum'" not in text:
            self.notes.append(f"a changed cell setting was reset: {text}")


def test_cell_changes(nb, release_tests):
    """Notes on test cells of nb that differ from the release or are missing (nbgrader restores both)."""
    submitted = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in release_tests:
            submitted.setdefault(grade_id, cell.source)
    notes = [f"the test cell {g} was edited; the grader restored it from the gradebook" for g, source in
             submitted.items() if source.strip() != release_tests[g].strip()]
    notes += [f"the test cell {g} was deleted; the grader restored it from the gradebook" for g in release_tests
              if g not in submitted]
    return notes


def read_notebook(raw):
    """A v4 notebook from raw bytes, and notes; raises ValueError with a message for the student."""
    notes = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
            notes.append("norm.ipynb was not UTF-8; it was read as GB18030")
        except UnicodeDecodeError:
            raise ValueError("norm.ipynb is not text (neither UTF-8 nor GB18030)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"norm.ipynb is not valid JSON (line {error.lineno}: {error.msg}); it could not be graded") \
            from None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int) or data["nbformat"] not in (3, 4):
        found = data.get("nbformat") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"norm.ipynb is not a Jupyter notebook in nbformat 4 (found nbformat {found!r})")
    try:
        nb = nbformat.reads(text, as_version=4)
        if data["nbformat"] == 3:
            notes.append("norm.ipynb was in nbformat 3; it was converted to nbformat 4")
    except Exception as error:
        raise ValueError(f"norm.ipynb could not be read as a notebook: {error}") from None
    return nb, notes


def tampering_flags(nb, release_text):
    """What the submitted code cells do to the kernel that the released notebook does not."""
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and not (
        c.get("metadata", {}).get("nbgrader", {}).get("locked")))
    return [what for pattern, what in TAMPERING.items()
            if re.search(pattern, code) and not re.search(pattern, release_text)]


def failure_message(cell, secret_lines):
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            message = f"{output.ename}: {output.evalue}" if output.evalue else output.ename
            break
        if output.output_type == "stream" and output.name == "stderr":
            first = output.text.strip().splitlines()[0] if output.text.strip() else ""
            message = f"the test wrote to stderr, which nbgrader counts as a failure: {first}"
            break
    else:
        return ""
    kept = [line for line in message.splitlines() if line.strip() not in secret_lines]
    return "\n".join(kept)[:MESSAGE_CHARS]


@dataclass(frozen=True)
class Release:
    """What grading a notebook compares with: the released notebook's text, its test cells' sources, and the
    points of every grade cell ({grade_id: (points, graded by hand)})."""

    text: str
    tests: dict
    points: dict

    @classmethod
    def read(cls, path):
        text = open(path, encoding="utf-8").read()
        cells = [c for c in nbformat.reads(text, as_version=4).cells if is_grade(c)]
        tests = {c.metadata.nbgrader.grade_id: c.source for c in cells if not is_solution(c)}
        points = {c.metadata.nbgrader.grade_id: (float(c.metadata.nbgrader.points), is_solution(c)) for c in cells}
        return cls(text, tests, points)


def grade_notebook(raw, sandbox, db_url, student_id, deadline, cell_timeout, output_limit, secret_lines, release):
    """Sanitize, execute and score a submitted notebook given as bytes."""
    result = NotebookResult()
    try:
        nb, result.notes = read_notebook(raw)
    except ValueError as error:
        result.problem = str(error)
        return result
    result.flags = tampering_flags(nb, release.text)
    result.notes += test_cell_changes(nb, release.tests)
    resources = {"nbgrader": {"notebook": NOTEBOOK_ID, "assignment": ASSIGNMENT, "student": student_id,
                              "db_url": db_url}, "metadata": {"path": str(sandbox.workdir)}}
    notes = _Notes()
    log = logging.getLogger("grading.notebook.submission")
    log.handlers = [logging.NullHandler(), notes]
    log.propagate = False
    try:
        for step in (ClearOutput(), DeduplicateIds(), OverwriteKernelspec(), OverwriteCells(add_missing_cells=True),
                     CheckCellMetadata()):
            step.log = log
            nb, resources = step.preprocess(nb, resources)
    except Exception as error:
        result.problem = f"the notebook's cells could not be matched to the assignment: {error}"
        return result
    result.notes += notes.notes
    executor = SandboxedExecute(sandbox=sandbox, output_limit=output_limit, allow_errors=True,
                                interrupt_on_timeout=True, shutdown_kernel="immediate", startup_timeout=120)
    executor.log = log
    problem = executor.run(nb, resources, deadline, cell_timeout)
    if problem:
        result.notes.append(problem)
    for step in (IgnorePattern(), LimitOutput()):
        nb, resources = step.preprocess(nb, resources)
    for cell in nb.cells:
        if not is_grade(cell):
            continue
        score, max_score = determine_grade(cell)
        manual = is_solution(cell)
        message = "" if manual or score == max_score else failure_message(cell, secret_lines)
        if manual and score is not None:
            message = "no answer was written"
        result.cells.append(CellScore(cell.metadata.nbgrader.grade_id, float(score or 0.0), float(max_score),
                                      message, manual, pending=score is None))
    result.executed = nb
    return result
