"""pipeline/hidden_suites.py with the real Q1/Q2 suites and a real sandboxed child: the reference earns every point,
a mistake costs points on its own question, what the student's code raised is the message, and a suite whose points
do not add up stops the grader. The suites run in a Python process of their own, as in a grading child (their
conftest.py would clash with this one's): one for the students below, one for the inconsistent suite. How slips are
charged, without a suite: unit/test_hidden_suites.py."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from grading.assignment import PYFILE
from grading.settings import HIDDEN, REPO

RUN_SUITES = """
import json, os, sys
from pathlib import Path
from grading.failures import GraderError
from grading.isolation.sandbox import Limits, Sandbox
from grading.isolation.student_module import StudentModule
from grading.pipeline import hidden_suites
from grading.settings import Settings

boxes, hidden = json.loads(sys.argv[1]), sys.argv[2]
if hidden:
    hidden_suites.HIDDEN = Path(hidden)
    hidden_suites.PYTEST_ARGS = [*hidden_suites.PYTEST_ARGS[:-1], hidden]
outcomes = {}
for name, box in boxes.items():
    student = StudentModule(Sandbox(box, Limits.from_settings(Settings())), "batchnormalization.py", call_timeout=10)
    try:
        tests = hidden_suites.run_hidden_suite(["q1_forward", "q2_backward"], student=student)
    except GraderError as error:
        outcomes[name] = {"error": str(error), "cause": error.cause.value}
    else:
        outcomes[name] = {"scores": {cell: sum(t.score for t in found) for cell, found in tests.items()},
                          "messages": [t.message for found in tests.values() for t in found if not t.passed],
                          "environment": os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")}
    finally:
        student.close()
print(json.dumps(outcomes))
"""
STUDENTS = {
    "reference": (REPO / PYFILE).read_text(),
    "unbiased-running-variance": (REPO / PYFILE).read_text().replace(
        "(1 - momentum) * batch_var", "(1 - momentum) * x.var(axis=0, ddof=1)"),
    "raises": "def batchnorm_forward(*args):\n    raise NotImplementedError('not yet')\n",
}


def judged(root: Path, students: dict[str, str], hidden: str | Path = "") -> dict[str, Any]:
    boxes = {}
    for name, source in students.items():
        boxes[name] = root / name
        boxes[name].mkdir(parents=True)
        (boxes[name] / PYFILE).write_text(source)
    completed = subprocess.run([sys.executable, "-c", RUN_SUITES, json.dumps({k: str(v) for k, v in boxes.items()}),
                                str(hidden)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return judged(tmp_path_factory.mktemp("suites"), STUDENTS)


def test_the_reference_earns_every_point_and_leaves_the_environment_alone(outcomes: dict[str, Any]) -> None:
    assert outcomes["reference"] == {"scores": {"q1_forward": 20, "q2_backward": 20}, "messages": [],
                                     "environment": None}


def test_an_unbiased_running_variance_costs_q1_only(outcomes: dict[str, Any]) -> None:
    scores = outcomes["unbiased-running-variance"]["scores"]
    assert 0 < scores["q1_forward"] < 20 and scores["q2_backward"] == 20


def test_what_the_students_code_raised_is_the_message_of_each_failed_check(outcomes: dict[str, Any]) -> None:
    outcome = outcomes["raises"]
    assert outcome["scores"] == {"q1_forward": 0, "q2_backward": 0}
    assert all("your code raised NotImplementedError: not yet" in message for message in outcome["messages"])


def test_a_suite_whose_points_do_not_add_up_stops_the_grader(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for path in HIDDEN.glob("*.py"):
        shutil.copy(path, hidden)
    (hidden / "check_q1_forward.py").write_text(textwrap.dedent("""
        import pytest


        @pytest.mark.points(19)
        def test_only_part(student):
            pass
    """))
    outcome = judged(tmp_path / "boxes", {"anyone": "x = 1\n"}, hidden)
    assert outcome == {"anyone": {"error": "the hidden tests of q1_forward are worth 19 points, not 20",
                                  "cause": "suite"}}
