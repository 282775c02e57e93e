"""Killing the grader and everything it started with SIGKILL mid-run, then starting it again, finishes the rest
without regrading finished students, without duplicate rows, with the scores of a clean run, and with a
consistent gradebook."""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import REFERENCE, STUB, autograde, grades, submit


def command_lines():
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def processes_mentioning(text):
    return [pid for pid, line in command_lines().items() if text in line]


def orphans_of_dead_graders():
    """Processes working in a scratch folder (/tmp/nl-<grader PID>-...) whose grader is gone; those of graders
    still running (other tests, in parallel) are theirs."""
    return [pid for pid, line in command_lines().items()
            if any(not Path(f"/proc/{owner}").exists() for owner in re.findall(r"/tmp/nl-(\d+)-", line))]


def test_sigkill_mid_run_then_restart(bundle, release_dir, tmp_path):
    students = {f"s{i}": REFERENCE if i % 2 == 0 else STUB for i in range(5)}
    submissions = submit(bundle, tmp_path / "submissions", students)
    clean = {"q1": "20.00", "q2": "20.00", "q3": "20.00", "q4": "10.00", "q5": "10.00", "bonus": "0.00",
             "total": "80.00", "status": "ok"}  # what an uninterrupted run gives the reference, and 0 the stub
    out = tmp_path / "out"
    shutil.copytree(release_dir / "course", out / "course")
    command = [sys.executable, "-m", "grading", "autograde", str(submissions), "--out", str(out), "--jobs", "2"]
    grader = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*/grade.json"))) < 2 and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.2)
    os.killpg(grader.pid, signal.SIGKILL)
    grader.wait()
    finished = {p.parent.name: p.read_bytes() for p in out.glob("*/grade.json")}
    assert 2 <= len(finished) < 5, "the grader was not killed mid-run"
    time.sleep(1)
    assert processes_mentioning(str(out)) == [] and orphans_of_dead_graders() == [], "something survived"

    again = autograde(submissions, out, release_dir, "--jobs", "2")
    assert again.returncode == 0 and f"{len(finished)} of 5 submissions already graded" in again.stdout
    assert {name: (out / name / "grade.json").read_bytes() for name in finished} == finished

    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 6 and len(set(row.split(",")[0] for row in rows)) == 6
    assert {s: {c: r[c] for c in clean} for s, r in grades(out).items()} == \
        {s: clean if students[s] is REFERENCE else {**{c: "0.00" for c in clean}, "status": "ok"} for s in students}

    database = sqlite3.connect(out / "course" / "gradebook.db")
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert database.execute("SELECT COUNT(*) FROM submitted_assignment").fetchone() == (5,)
    assert database.execute("SELECT COUNT(*), COUNT(DISTINCT student_id) FROM submitted_assignment").fetchone() == (5, 5)
    database.close()
    export = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(tmp_path / "export.csv")],
                            cwd=out / "course", capture_output=True, text=True)
    assert export.returncode == 0
    scores = {line.split(",")[3]: float(line.split(",")[-2]) for line in (tmp_path / "export.csv").read_text()
              .splitlines()[1:]}
    assert scores == {s: 80.0 if students[s] is REFERENCE else 0.0 for s in students}
