"""Grading in shards, as a cluster does (grading/cluster/autograde.sbatch; test_slurm.py runs it on a real Slurm):
three shards run at the same time on one machine, one of them killed midway with SIGKILL, with everything it
started, and run again, then `python -m grading collect`. The killed shard leaves no process behind, and its rerun
finishes the rest without regrading or duplicating anyone, with a sound gradebook. Before the rerun, collect refuses
the unfinished shard, or with --partial merges the rest and exits 3. After it, the merge equals one unsharded run:
byte for byte in grades.csv, and cell by cell in the gradebook."""
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REFERENCE, REPO, STUB, autograde, gradebook_cells, grades, submit
from grading.pipeline.shards import in_shard, parse_shard

SHARDS = 3
STUDENTS = {f"student{i:02d}": REFERENCE if i % 3 == 0 else STUB for i in range(5)}


def command_lines():
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def left_behind(folder):
    """Processes that work in folder, or in a scratch folder (/tmp/nl-<grader PID>-...) of a grader that is gone;
    those of graders still running (other tests, in parallel) are theirs."""
    return [line for line in command_lines().values() if str(folder) in line
            or any(not Path(f"/proc/{owner}").exists() for owner in re.findall(r"/tmp/nl-(\d+)-", line))]


def shard_command(submissions, out, index):
    return [sys.executable, "-m", "grading", "autograde", str(submissions), "--out", str(out / f"shard-{index}"),
            "--shard", f"{index}/{SHARDS}", "--jobs", "1"]


@pytest.fixture(scope="module")
def runs(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    submissions = submit(bundle, root / "submissions", STUDENTS)
    (submissions / "notes.txt").write_text("not a submission")
    whole = autograde(submissions, root / "whole", release_dir, "--jobs", "2")
    assert whole.returncode == 0, whole.stderr[-3000:]
    sizes = {i: sum(in_shard(s, (i, SHARDS)) for s in STUDENTS) for i in range(1, SHARDS + 1)}
    killed = max(sizes, key=sizes.get)
    for index in sizes:
        shutil.copytree(release_dir / "course", root / "sharded" / f"shard-{index}" / "course")
    running = {index: subprocess.Popen(shard_command(submissions, root / "sharded", index), cwd=REPO,
                                       start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for index in sizes}
    victim = root / "sharded" / f"shard-{killed}"
    deadline = time.monotonic() + 300
    while not list(victim.glob("*/grade.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(running[killed].pid, signal.SIGKILL)
    for process in running.values():
        process.wait(timeout=600)
    time.sleep(1)  # what the killed grader started dies with it (PR_SET_PDEATHSIG), a moment later
    survivors = left_behind(victim)
    finished = {p.parent.name: p.read_bytes() for p in victim.glob("*/grade.json")}
    for index, process in running.items():
        assert index == killed or process.returncode == 0, process.stderr.read()[-3000:]
    early = {"refused": collect(root, sizes, root / "refused"), "partial": collect(root, sizes, root / "partial",
                                                                                   "--partial")}
    again = subprocess.run(shard_command(submissions, root / "sharded", killed), cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    merged = collect(root, sizes, root / "merged")
    assert merged.returncode == 0, merged.stderr[-3000:]
    return root, sizes, killed, finished, again, early, survivors


def collect(root, shards, out, *options):
    return subprocess.run([sys.executable, "-m", "grading", "collect",
                           *(str(root / "sharded" / f"shard-{i}") for i in shards), "--out", str(out), *options],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_every_student_is_in_exactly_one_shard_whoever_else_submitted():
    for student in [*STUDENTS, "someone-added-later"]:
        assert sum(in_shard(student, (i, SHARDS)) for i in range(1, SHARDS + 1)) == 1
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("two")


def test_collect_refuses_a_shard_still_unfinished_and_names_who_is_missing(runs):
    root, sizes, killed, finished, _, early, _ = runs
    unfinished = sorted(s for s in STUDENTS if in_shard(s, (killed, SHARDS)) and s not in finished)
    refused = early["refused"]
    assert refused.returncode == 2 and not (root / "refused" / "grades.csv").exists()
    assert f"shard {killed}/{SHARDS}" in refused.stderr and all(s in refused.stderr for s in unfinished)


def test_a_partial_collect_merges_the_rest_says_who_is_missing_and_does_not_exit_0(runs):
    root, sizes, killed, finished, _, early, _ = runs
    unfinished = sorted(s for s in STUDENTS if in_shard(s, (killed, SHARDS)) and s not in finished)
    partial = early["partial"]
    assert partial.returncode == 3 and all(s in partial.stderr for s in unfinished)  # a warning
    assert set(grades(root / "partial")) == set(STUDENTS) - set(unfinished) | {"notes.txt"}


def test_the_killed_shard_lost_nothing_when_run_again(runs):
    root, sizes, killed, finished, again, _, _ = runs
    assert 1 <= len(finished) < sizes[killed], "the shard was not killed midway"
    assert f"{len(finished)} of {sizes[killed]} submissions already graded" in again.stderr
    victim = root / "sharded" / f"shard-{killed}"
    assert {name: (victim / name / "grade.json").read_bytes() for name in finished} == finished


def test_the_killed_shard_left_no_process_behind(runs):
    assert runs[-1] == []


def test_the_rerun_shard_records_each_student_once_in_a_sound_gradebook(runs):
    root, sizes, killed = runs[:3]
    victim = root / "sharded" / f"shard-{killed}"
    named = [row.split(",")[0] for row in (victim / "grades.csv").read_text().splitlines()[1:]]
    assert len(named) == len(set(named)) and {s for s in STUDENTS if in_shard(s, (killed, SHARDS))} <= set(named)
    database = sqlite3.connect(victim / "course" / "gradebook.db")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert database.execute("SELECT COUNT(*), COUNT(DISTINCT student_id) FROM submitted_assignment").fetchone() \
            == (sizes[killed], sizes[killed])
    finally:
        database.close()
    export = subprocess.run([sys.executable, "-m", "nbgrader", "export", "--to", str(root / "victim.csv")],
                            cwd=victim / "course", capture_output=True, text=True)
    assert export.returncode == 0, export.stderr[-2000:]
    scores = {line.split(",")[3]: float(line.split(",")[-2]) for line in (root / "victim.csv").read_text()
              .splitlines()[1:]}
    assert scores == {s: 80.0 if STUDENTS[s] is REFERENCE else 0.0 for s in STUDENTS if in_shard(s, (killed, SHARDS))}


def test_the_merge_equals_one_unsharded_run(runs):
    root = runs[0]
    assert (root / "merged" / "grades.csv").read_bytes() == (root / "whole" / "grades.csv").read_bytes()
    assert (root / "merged" / "report.html").read_bytes() == (root / "whole" / "report.html").read_bytes()
    assert gradebook_cells(root / "merged" / "course") == gradebook_cells(root / "whole" / "course")
    assert {p.parent.name for p in (root / "merged").glob("*/feedback.html")} == set(STUDENTS)


def test_collect_resumes_without_recording_anyone_twice(runs):
    root = runs[0]
    again = collect(root, range(1, SHARDS + 1), root / "merged")
    assert again.returncode == 0 and f"{len(STUDENTS)} of {len(STUDENTS)} students already collected" in again.stderr
    assert (root / "merged" / "grades.csv").read_bytes() == (root / "whole" / "grades.csv").read_bytes()
