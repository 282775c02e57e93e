"""The demo's verdicts, student by student, against a stored copy: a change that makes grading faster must leave
every score and every message a student reads as it was.

What is compared, for each sample student of `python -m grading demo` (the session's `demo` run, no grading of its
own): their row of grades.csv, their results.json (what Gradescope shows) and the text of their feedback.html. Only
what legitimately differs from run to run is normalised away: results.json's execution_time, and the repository's
and the run's folders in any text. The stored copy is grading/tests/golden/demo/<student>.txt.

A change that is meant to change verdicts rewrites the copy deliberately, then the diff is reviewed and committed:

    GOLDEN_VERDICTS=rewrite .venv/bin/python -m pytest grading/tests/test_golden_verdicts.py

(the test then skips, saying what it wrote, so that a rewrite never passes for a check).
"""
import csv
import difflib
import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO

GOLDEN = Path(__file__).parent / "golden" / "demo"
REWRITE = os.environ.get("GOLDEN_VERDICTS") == "rewrite"
# Seconds the grading took: the only field of results.json that differs between two runs of the same grader.
VARYING_RESULT_FIELDS = {"execution_time"}


class _VisibleText(HTMLParser):
    """The text a browser shows of a page, a line per element's text, without its style sheet or scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.lines.extend(line.strip() for line in data.splitlines() if line.strip())


def visible_text(page: str) -> list[str]:
    parser = _VisibleText()
    parser.feed(page)
    parser.close()
    return parser.lines


def verdict_lines(graded: Path, student: str, row: dict[str, str]) -> list[str]:
    """What decides student's grade and what they read, a fact per line, each line saying where it comes from."""
    lines = [f"grades.csv {column}: {value}" for column, value in row.items()]
    result: dict[str, Any] = json.loads((graded / student / "results.json").read_text(encoding="utf-8"))
    for key in sorted(set(result) - VARYING_RESULT_FIELDS - {"tests", "output"}):
        lines.append(f"results.json {key}: {result[key]}")
    lines += [f"results.json output: {line}" for line in result.get("output", "").splitlines()]
    for test in result.get("tests", []):
        details = ", ".join(f"{key}={test[key]}" for key in sorted(set(test) - {"name", "output"}))
        lines.append(f"results.json test {test['name']}: {details}")
        lines += [f"results.json test output: {line}" for line in test.get("output", "").splitlines()]
    page = (graded / student / "feedback.html").read_text(encoding="utf-8")
    lines += [f"feedback.html: {line}" for line in visible_text(page)]
    return lines


def normalised(line: str, run_folder: Path) -> str:
    """line without the folders that differ between machines and runs."""
    return line.replace(str(run_folder), "<run>").replace(str(REPO), "<repo>")


def current_verdicts(run_folder: Path) -> dict[str, str]:
    """{student: their verdict lines as one text} of the demo graded under run_folder."""
    graded = run_folder / "graded"
    with open(graded / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    return {student: "".join(normalised(line, run_folder) + "\n" for line in verdict_lines(graded, student, row))
            for student, row in sorted(rows.items())}


def stored_verdicts() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(GOLDEN.glob("*.txt"))}


def differences(stored: dict[str, str], current: dict[str, str]) -> str:
    """A unified diff per student whose verdicts differ, each headed by the student's name; empty when none do."""
    report: list[str] = []
    for student in sorted(set(stored) | set(current)):
        report += difflib.unified_diff(stored.get(student, "").splitlines(keepends=True),
                                       current.get(student, "").splitlines(keepends=True),
                                       fromfile=f"{student} (stored, {GOLDEN.name}/{student}.txt)",
                                       tofile=f"{student} (this run)", n=1)
    return "".join(report)


def test_every_demo_verdict_and_message_is_the_stored_one(demo: tuple[Path, subprocess.CompletedProcess[str]]
                                                          ) -> None:
    out, completed = demo
    assert completed.returncode == 0, completed.stderr[-3000:]
    current = current_verdicts(out)
    if REWRITE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for stale in set(stored_verdicts()) - set(current):
            (GOLDEN / f"{stale}.txt").unlink()
        for student, text in current.items():
            (GOLDEN / f"{student}.txt").write_text(text, encoding="utf-8")
        pytest.skip(f"GOLDEN_VERDICTS=rewrite: wrote {len(current)} students' verdicts into {GOLDEN}; review the diff")
    assert len(current) >= 6, f"the demo graded only {sorted(current)}"
    diff = differences(stored_verdicts(), current)
    assert not diff, ("verdicts differ from the stored copy (if the change is meant, rewrite it as this module's "
                      f"docstring says):\n{diff}")


def test_the_comparison_names_the_student_and_the_line_that_changed() -> None:
    stored = stored_verdicts()
    assert stored, f"no stored verdicts in {GOLDEN}"
    student = sorted(stored)[0]
    changed = dict(stored, **{student: stored[student].replace("grades.csv q1: ", "grades.csv q1: 1", 1)})
    diff = differences(stored, changed)
    assert f"{student} (stored" in diff and "\n+grades.csv q1: 1" in diff
    assert differences(stored, dict(stored)) == ""
