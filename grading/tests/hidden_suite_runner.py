"""Runs the real hidden suites on a list of students, in a process of its own (the suites' conftest.py would clash
with the tests'), and prints {student: [test]} as JSON.

`python grading/tests/hidden_suite_runner.py SPEC.json`, SPEC being {student: spec}:
- {"pyfile": source, "cells": [...]}: batchnormalization.py behind its real sandboxed child;
- {"answers": {grade id: code}, "cells": [...], "default_dtype": "float64", "executed": path}: the source notebook's
  answer cells with these answers (the others as in the source) and its model code, defined in a namespace of this
  process under that default dtype; the grader's probe program runs against it here, as the kernel would run it,
  and KernelProbes reads its replies. A cell that does not compile or raises is left undefined, as in a kernel;
  "executed" is a notebook those cells ran in, whose error outputs KernelProbes explains (verdicts.cell_failures).
"""
import json
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import nbformat  # noqa: E402
import torch  # noqa: E402

from grading.assignment import NOTEBOOK, PYFILE  # noqa: E402
from grading.authoring.regions import solution_cells  # noqa: E402
from grading.isolation.kernel import PROBE_SOURCE, probe_arguments  # noqa: E402
from grading.isolation.protocol import parse_reply, read_regular_file  # noqa: E402
from grading.isolation.sandbox import Limits, Sandbox  # noqa: E402
from grading.isolation.student_module import StudentModule  # noqa: E402
from grading.pipeline.hidden_suites import KernelProbes, run_hidden_suite  # noqa: E402
from grading.pipeline.verdicts import cell_failures  # noqa: E402
from grading.records.results import Test  # noqa: E402
from grading.sandboxed.wire import encode  # noqa: E402
from grading.settings import Settings  # noqa: E402

SOLUTION = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^\1### END SOLUTION\n?", re.M | re.S)


class InProcessExecutor:
    """isolation/kernel.py's probe without the kernel: the same probe program, against a namespace here."""

    def __init__(self, namespace: dict[str, Any], default_dtype: torch.dtype) -> None:
        self.namespace = namespace
        self.default_dtype = default_dtype

    def probe(self, op: str, args: dict[str, Any], arrays: dict[str, Any],
              timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
        with tempfile.TemporaryDirectory() as folder:
            request, reply = Path(folder) / "request.npz", Path(folder) / "reply.npz"
            request.write_bytes(encode({"op": op, "args": args}, arrays))
            with default_dtype(self.default_dtype):
                exec(compile(PROBE_SOURCE, "<grader probe>", "exec"),
                     {"STUDENT": self.namespace, **probe_arguments(request, reply)})
            return parse_reply(read_regular_file(reply))


class default_dtype:
    """torch's default dtype as the student set it, for as long as their code runs."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __enter__(self) -> None:
        self.saved = torch.get_default_dtype()
        torch.set_default_dtype(self.dtype)

    def __exit__(self, *exc: object) -> None:
        torch.set_default_dtype(self.saved)


def notebook_namespace(answers: dict[str, str], dtype: torch.dtype) -> dict[str, Any]:
    """The source notebook's answer cells (with answers in place of their solutions) and model code, defined in a
    fresh namespace; a cell that fails is left out, as a kernel would."""
    nb = nbformat.read(REPO / NOTEBOOK, as_version=4)
    answer_cells = solution_cells(nb)
    namespace = {"__name__": "__main__"}
    exec("import numpy as np\nimport torch\nfrom torch import nn", namespace)
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type != "code" or not (grade_id == "model_code" or grade_id in answer_cells):
            continue
        source = cell.source
        if grade_id in answers:
            indent = SOLUTION.search(source).group(1)
            source = SOLUTION.sub(lambda m: textwrap.indent(answers[grade_id].strip("\n"), indent) + "\n", source)
        try:
            with default_dtype(dtype):
                exec(compile(source, grade_id, "exec"), namespace)
        except Exception:
            continue
    return namespace


def judged(spec: dict[str, Any], box: Path) -> dict[str, list[Test]]:
    if "pyfile" in spec:
        box.mkdir()
        (box / PYFILE).write_text(spec["pyfile"])
        student = StudentModule(Sandbox(box, Limits.from_settings(Settings())), PYFILE, call_timeout=10)
        try:
            return run_hidden_suite(spec["cells"], student=student)
        finally:
            student.close()
    dtype = getattr(torch, spec.get("default_dtype", "float32"))
    executed = nbformat.read(spec["executed"], as_version=4) if spec.get("executed") else None
    kernel = KernelProbes(InProcessExecutor(notebook_namespace(spec.get("answers", {}), dtype), dtype), 60,
                          cell_failures(executed) if executed else {})
    return run_hidden_suite(spec["cells"], kernel=kernel)


def main(path: str) -> None:
    students = json.loads(Path(path).read_text())
    outcome = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, spec in students.items():
            tests = judged(spec, Path(scratch) / name)
            outcome[name] = [{"cell": t.cell, "name": t.name, "score": t.score, "max_score": t.max_score,
                              "passed": t.passed, "message": t.message} for found in tests.values() for t in found]
    print(json.dumps(outcome))


def judged_in_a_process(spec: Path) -> dict[str, list[dict[str, Any]]]:
    """Run this file on the students of spec in a process of its own: {student: [test, as main prints it]}."""
    completed = subprocess.run([sys.executable, __file__, str(spec)], cwd=REPO, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    judged: dict[str, list[dict[str, Any]]] = json.loads(completed.stdout.splitlines()[-1])
    return judged


def points_and_messages(spec: Path) -> dict[str, dict[str, tuple[float, list[str]]]]:
    """The students of spec judged in a process of their own: {student: {cell: (points, [failure messages])}}."""
    outcome: dict[str, dict[str, tuple[float, list[str]]]] = {}
    for student, tests in judged_in_a_process(spec).items():
        cells = outcome[student] = {}
        for test in tests:
            points, messages = cells.get(test["cell"], (0.0, []))
            cells[test["cell"]] = (points + test["score"], messages + ([] if test["passed"] else [test["message"]]))
    return outcome

if __name__ == "__main__":
    main(sys.argv[1])
