"""A grader whose reports changed regrades no one; one whose hidden suites changed regrades everyone
(authoring/course.py's SCORING; unit/test_fingerprint.py checks the list). So `collect` merges shards graded on
either side of a reworded report, and refuses shards graded on either side of a changed hidden suite. Each run is
the real `python -m grading autograde` or `collect`, of a copy of the repository edited as a maintainer would edit
it mid-semester."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REFERENCE, REPO, grades, reference_with_added_cell, results, submit
from grading.records.results import StudentResult

ALREADY_GRADED = "submissions already graded and unchanged"
# The reference, and an honest student whose notebook has a cell of their own before Q4's.
STUDENTS = {"plain": REFERENCE, "with_a_cell_of_her_own": reference_with_added_cell("seen = 'my own note'")}
# What collect did with two shards: (its run, the students of the merge's grades.csv).
Collected = tuple[subprocess.CompletedProcess[str], set[str]]
# What a copy of the repository needs to grade: the code and the course's sources.
COPIED = ["grading", "normlab", "tests", "data", "docs", "norm.ipynb", "batchnormalization.py", "requirements.txt",
          "README.md"]


def copy_repository(to: Path) -> Path:
    """The files of the repository that grading reads, copied to `to`, without caches."""
    for name in COPIED:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, to / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "cifar*"))
        else:
            shutil.copy2(origin, to / name)
    return to


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first old in the file at path by new."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}: pick another line to edit"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def grading_with(repo: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m grading ARGUMENTS` as the copy of the repository at repo runs it."""
    return subprocess.run([sys.executable, "-m", "grading", *arguments], cwd=repo, capture_output=True, text=True,
                          timeout=900)


def autograde_with(repo: Path, submissions: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`python -m grading autograde` as the copy of the repository at repo runs it, which must succeed."""
    completed = grading_with(repo, "autograde", str(submissions), "--out", str(out), "--jobs", "2", *options)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def graded(out: Path) -> dict[str, StudentResult]:
    """{student: result} of every student graded into out, who must be all of STUDENTS."""
    found = results(out)
    assert set(found) == set(STUDENTS)
    return found


@pytest.fixture(scope="module")
def runs(bundle: Path, release_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, dict[str, StudentResult]]]:
    """Three runs on the same OUT: the first; after a report was reworded and one student resubmitted; after a
    hidden suite changed. {run name: (its output, the results it left)}."""
    root = tmp_path_factory.mktemp("regrading")
    repo = copy_repository(root / "repo")
    submissions = submit(bundle, root / "submissions", STUDENTS)
    out = root / "out"
    shutil.copytree(release_dir / "course", out / "course")  # built from the same sources: no generate_assignment
    outcome: dict[str, tuple[str, dict[str, StudentResult]]] = {}
    first = autograde_with(repo, submissions, out)
    outcome["first"] = (first.stdout + first.stderr, graded(out))
    edit(repo / "grading/records/reports.py", '"""', '"""Reworded for the TAs. ')
    edit(submissions / "with_a_cell_of_her_own" / "batchnormalization.py", "\n", "\n# resubmitted\n")
    reworded = autograde_with(repo, submissions, out)
    outcome["reworded"] = (reworded.stdout + reworded.stderr, graded(out))
    suite = repo / "grading/hidden/check_q1_forward.py"
    edit(suite, "\n", "\n# one more hidden test would go here\n")
    stricter = autograde_with(repo, submissions, out)
    outcome["stricter"] = (stricter.stdout + stricter.stderr, graded(out))
    return outcome


def test_both_students_are_graded_first_alike(runs: dict[str, tuple[str, dict[str, StudentResult]]]) -> None:
    _, first = runs["first"]
    assert not any(result.error for result in first.values())
    assert first["plain"].total > 0 and first["with_a_cell_of_her_own"].total == first["plain"].total


def test_a_reworded_report_regrades_only_the_student_who_resubmitted(
        runs: dict[str, tuple[str, dict[str, StudentResult]]]) -> None:
    output, after = runs["reworded"]
    _, first = runs["first"]
    assert f"1 of 2 {ALREADY_GRADED}" in output
    assert after["plain"].seconds == first["plain"].seconds  # the result kept, not a new one
    assert after["with_a_cell_of_her_own"].seconds != first["with_a_cell_of_her_own"].seconds
    assert {result.fingerprint for result in after.values()} == {first["plain"].fingerprint}
    assert {student: result.total for student, result in after.items()} == \
        {student: result.total for student, result in first.items()}


def test_a_changed_hidden_suite_regrades_everyone(runs: dict[str, tuple[str, dict[str, StudentResult]]]) -> None:
    output, after = runs["stricter"]
    _, before = runs["reworded"]
    assert ALREADY_GRADED not in output
    for student, result in after.items():
        assert result.fingerprint != before[student].fingerprint
        assert result.seconds != before[student].seconds
        assert result.total == before[student].total and not result.error


@pytest.fixture(scope="module")
def collected(bundle: Path, release_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Collected]:
    """Two shards, one student each: shard 1 graded, a report reworded, shard 2 graded, both collected; then a
    hidden suite changed, shard 2 graded again and both collected again. {when: (collect's run, who it merged)}."""
    root = tmp_path_factory.mktemp("regrading-shards")
    repo = copy_repository(root / "repo")
    submissions = submit(bundle, root / "submissions", STUDENTS)
    shards = [root / f"shard-{index}" for index in (1, 2)]
    for shard in shards:
        shutil.copytree(release_dir / "course", shard / "course")

    def collect(merged: str) -> Collected:
        completed = grading_with(repo, "collect", *map(str, shards), "--out", str(root / merged))
        return completed, set(grades(root / merged)) if (root / merged / "grades.csv").is_file() else set()

    autograde_with(repo, submissions, shards[0], "--shard", "1/2")
    edit(repo / "grading/records/reports.py", '"""', '"""Reworded for the TAs. ')
    autograde_with(repo, submissions, shards[1], "--shard", "2/2")
    outcome = {"reworded between the shards": collect("merged")}
    edit(repo / "grading/hidden/check_q1_forward.py", "\n", "\n# one more hidden test would go here\n")
    autograde_with(repo, submissions, shards[1], "--shard", "2/2")
    outcome["a hidden suite changed between the shards"] = collect("merged-again")
    return outcome


def test_collect_merges_shards_graded_on_either_side_of_a_reworded_report(collected: dict[str, Collected]) -> None:
    merged, students = collected["reworded between the shards"]
    assert merged.returncode == 0, merged.stdout[-3000:] + merged.stderr[-3000:]
    assert students == set(STUDENTS)


def test_collect_refuses_shards_graded_on_either_side_of_a_changed_hidden_suite(
        collected: dict[str, Collected]) -> None:
    refused, students = collected["a hidden suite changed between the shards"]
    assert refused.returncode != 0 and "grader fingerprint" in refused.stderr, refused.stderr[-3000:]
    assert students == set()
