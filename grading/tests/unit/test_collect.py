"""commands/collect.py on shard outputs written by hand: it merges nothing from shards that are not whole (students
not graded yet, grader errors, resubmissions, a shard left out) or that were graded with different options, and
says who and what. Merging whole shards, and --partial, are tested on real shards in test_sharding.py."""
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from grading.commands import collect as collect_command
from grading.commands.autograde import source_stamp
from grading.commands.collect import collect, read_shards, record_student, take_stock
from grading.pipeline.intake import discover
from grading.pipeline.shards import ShardError, in_shard, record_run
from grading.handoff import Submission
from grading.isolation.sandbox import Isolation
from grading.failures import Cause
from grading.records.results import GRADE_FILE, StudentResult, error_file, load_result, save_result
from grading.settings import Settings

SHARDS = 2
STUDENTS = [*(f"student{i}" for i in range(5)), "o.brien-2@uni"]  # the last an unusual id, as SSSD's user@domain
FINGERPRINT = "f" * 20


def shard_of(student: str) -> int:
    return next(i for i in range(1, SHARDS + 1) if in_shard(student, (i, SHARDS)))


def shards(tmp_path: Path, error: str | None = None, fingerprint: str = FINGERPRINT, **options: Any) -> list[Path]:
    """Submissions of STUDENTS and SHARDS autograde outputs in which every student is graded (the one named in error
    with that grader error); options change the settings of shard 2. The shard folders, in order."""
    submissions = tmp_path / "submissions"
    for student in STUDENTS:
        (submissions / student).mkdir(parents=True)
        (submissions / student / "norm.ipynb").write_text("{}")
    found, _ = discover(submissions)
    folders = []
    for index in range(1, SHARDS + 1):
        out = tmp_path / f"shard-{index}"
        (out / "course").mkdir(parents=True)
        (out / "course" / "gradebook.db").touch()
        settings = Settings(jobs=1, **(options if index == 2 else {}))
        run = SimpleNamespace(settings=settings, fingerprint=fingerprint, isolation=Isolation.BUBBLEWRAP)
        record_run(out, submissions, (index, SHARDS), run)
        for submission in found:
            if in_shard(submission.student_id, (index, SHARDS)):
                failed = submission.student_id == error
                save_result(out / submission.student_id / GRADE_FILE, StudentResult(
                    submission.student_id, fingerprint=fingerprint, stamp=source_stamp(submission),
                    error="the kernel could not be started" if failed else "",
                    error_cause=Cause.SANDBOX if failed else None,
                    error_file=error_file(submission.student_id) if failed else ""))
                if failed:
                    (out / "errors").mkdir()
                    (out / error_file(submission.student_id)).write_text("Traceback: the kernel's")
        folders.append(out)
    return folders


def refusal(folders: list[Path], tmp_path: Path) -> str:
    with pytest.raises(ShardError) as refused:
        collect(folders, tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged").exists(), "a refused merge wrote something"
    return str(refused.value)


def test_a_shard_still_being_graded_is_refused_and_its_missing_students_are_named(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    unfinished = [s for s in STUDENTS if shard_of(s) == 1][:2]
    for student in unfinished:
        (folders[0] / student / GRADE_FILE).unlink()
    message = refusal(folders, tmp_path)
    assert f"shard 1/{SHARDS}" in message and f"shard 2/{SHARDS}" not in message
    assert all(student in message for student in unfinished) and "--partial" in message


def test_a_student_graded_by_an_earlier_grader_counts_as_not_graded(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    stale = next(s for s in STUDENTS if shard_of(s) == 2)
    save_result(folders[1] / stale / GRADE_FILE, StudentResult(stale, fingerprint="an older grader"))
    assert f"1 not graded yet ({stale})" in refusal(folders, tmp_path)


def test_a_grader_error_is_refused_with_its_message_and_where_its_traceback_is(tmp_path: Path) -> None:
    student = STUDENTS[3]
    folders = shards(tmp_path, error=student)
    message = refusal(folders, tmp_path)
    assert f"{student}: the kernel could not be started (see {folders[shard_of(student) - 1] / 'errors' / student}" \
           f".txt)" in message and f"shard {shard_of(student)}/" in message


def test_a_merged_grader_error_keeps_its_traceback_and_a_merged_verdict_drops_a_stale_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect_command.gradebook, "record", lambda *args: None)
    monkeypatch.setattr(collect_command, "copy_student", lambda *args: None)
    failed, fine = STUDENTS[3], STUDENTS[4]
    folders = shards(tmp_path, error=failed)
    merged = tmp_path / "merged"
    (merged / "errors").mkdir(parents=True)
    (merged / error_file(fine)).write_text("from an earlier merge")
    for student in (failed, fine):
        folder = folders[shard_of(student) - 1] / student
        for name in ("results.json", "feedback.html"):
            (folder / name).write_text(name)
        record_student(folder / GRADE_FILE, merged / "course", merged, None, None, ["q1"])
    assert (merged / error_file(failed)).read_text() == "Traceback: the kernel's"
    assert load_result(merged / failed / GRADE_FILE).error_file == f"errors/{failed}.txt"
    assert not (merged / error_file(fine)).exists()


def test_an_id_with_a_final_newline_is_no_student_of_the_merge_and_unusual_ids_are(tmp_path: Path) -> None:
    """student0\\n, a folder beside student0's, graded as a student of its own by a grader that took it for one."""
    folders = shards(tmp_path)
    attacker = f"{STUDENTS[0]}\n"
    (tmp_path / "submissions" / attacker).mkdir()
    (tmp_path / "submissions" / attacker / "norm.ipynb").write_text("{}")
    save_result(folders[shard_of(attacker) - 1] / attacker / GRADE_FILE, StudentResult(
        attacker, fingerprint=FINGERPRINT, stamp=source_stamp(Submission(attacker, tmp_path / "submissions" / attacker,
                                                                         "folder"))))
    stock = take_stock(read_shards(folders))
    assert sorted(stock.mergeable) == sorted(STUDENTS) and not stock.ungraded and not stock.errors


def test_a_grade_file_that_names_another_student_is_not_merged_as_theirs(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    student, other = STUDENTS[1], STUDENTS[2]
    path = folders[shard_of(student) - 1] / student / GRADE_FILE
    result = load_result(path)
    result.student_id = other
    save_result(path, result)
    assert f"1 holding the grade.json of {other!r} ({student})" in refusal(folders, tmp_path)


def test_a_student_who_resubmitted_after_grading_is_not_merged_as_graded(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    (tmp_path / "submissions" / STUDENTS[0] / "norm.ipynb").write_text('{"cells": []}')
    assert f"resubmitted since graded ({STUDENTS[0]})" in refusal(folders, tmp_path)


def test_a_shard_left_out_names_its_students(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    message = refusal(folders[:1], tmp_path)
    left_out = sorted(s for s in STUDENTS if shard_of(s) == 2)
    assert f"shard 2/{SHARDS} (not started or not given)" in message and all(s in message for s in left_out)


@pytest.mark.parametrize("option, value", [("due", "2026-12-01T23:59:00+08:00"), ("late_policy", "zero"),
                                           ("questions", "q1,q2")])
def test_shards_graded_with_different_options_are_refused_whatever_partial_says(tmp_path: Path, option: str,
                                                                                value: str) -> None:
    folders = shards(tmp_path, **{option: value})
    with pytest.raises(ShardError, match=f"(?s)different options.*{option.replace('_', ' ')}: .*{re.escape(value)}"):
        collect(folders, tmp_path / "merged", partial=True, progress=False)


def test_shards_graded_with_different_submission_times_are_refused(tmp_path: Path) -> None:
    times = tmp_path / "times.csv"
    times.write_text(f"student_id,submitted\n{STUDENTS[0]},2026-11-20T10:00:00Z\n")
    folders = shards(tmp_path, submission_times=str(times))
    with pytest.raises(ShardError, match="(?s)different options.*submission times: .*has none"):
        collect(folders, tmp_path / "merged", partial=True, progress=False)


def test_the_same_options_written_differently_agree(tmp_path: Path) -> None:
    """A due date in another time zone and per-day:5 for per-day:5.0 are the same options: only the students
    left ungraded stop this merge."""
    folders = shards(tmp_path, due="2026-12-01T15:59:00Z", late_policy="per-day:5.0")
    record = (folders[0] / "run.json").read_text()
    (folders[0] / "run.json").write_text(record.replace('"due": ""', '"due": "2026-12-01T23:59:00+08:00"')
                                         .replace('"late_policy": "none"', '"late_policy": "per-day:5"'))
    (folders[shard_of(STUDENTS[0]) - 1] / STUDENTS[0] / GRADE_FILE).unlink()
    assert "different options" not in refusal(folders, tmp_path)


def test_two_folders_of_one_shard_or_a_folder_without_a_run_record_are_refused(tmp_path: Path) -> None:
    folders = shards(tmp_path)
    with pytest.raises(ShardError, match="both shard 1/2"):
        collect([folders[0], folders[0]], tmp_path / "merged")
    (folders[1] / "run.json").unlink()
    with pytest.raises(ShardError, match="no run.json"):
        collect(folders, tmp_path / "merged")
