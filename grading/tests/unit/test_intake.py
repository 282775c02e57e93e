"""pipeline/intake.py on small fixtures: which entries are submissions, which files are taken from each and with
which notes, and that nothing a submission holds is followed, unpacked or read beyond its caps."""
import os
import shutil
import stat
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from grading.assignment import NOTEBOOK, PYFILE
from grading.handoff import Intake, Submission
from grading.pipeline import intake
from grading.pipeline.intake import discover, unpack
from grading.records.late import TIMES_FILE, record_text

SOURCE = b"def batchnorm_forward(x, gamma, beta, bn_param):\n    pass\n"
NOTEBOOK_TEXT = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def folder(root: Path, name: str, files: dict[str, bytes]) -> Path:
    path = root / name
    path.mkdir(parents=True)
    for relative, data in files.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_bytes(data)
    return path


def zip_of(path: Path, entries: dict[str, bytes], links: Sequence[str] = ()) -> Path:
    """A zip of entries ({name: bytes}) and of links (names of symbolic links to /etc)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc")
    return path


def take(tmp_path: Path, submission: Submission) -> Intake:
    dest = tmp_path / "taken"
    dest.mkdir(parents=True)
    return unpack(submission, dest)


def test_folders_and_zips_are_submissions_and_anything_else_gets_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "submissions"
    folder(root, "alice", {PYFILE: SOURCE})
    zip_of(root / "bob.zip", {PYFILE: SOURCE})
    (root / "notes.txt").write_text("stray")
    folder(root, "bad name!", {PYFILE: SOURCE})
    os.symlink(root / "alice", root / "carol")
    found, rejected = discover(root)
    assert [(s.student_id, s.kind) for s in found] == [("alice", "folder"), ("bob", "zip")]
    reasons = {entry.name: entry.status for entry in rejected}
    assert "not a folder or a .zip" in reasons["notes.txt"]
    assert "not a usable student id" in reasons["'bad name!'"]  # quoted: no id of a student
    assert "symbolic link" in reasons["carol"]


def test_an_id_with_a_final_newline_is_refused_and_named_so_that_the_newline_shows(tmp_path: Path) -> None:
    """alice\\n beside alice was a second student, and a grades.csv row an LMS trims into alice's."""
    root = tmp_path / "submissions"
    folder(root, "alice", {PYFILE: SOURCE})
    folder(root, "alice\n", {PYFILE: b"x = 0\n"})
    zip_of(root / "alice\n.zip", {PYFILE: b"x = 0\n"})
    found, rejected = discover(root)
    assert [s.student_id for s in found] == ["alice"]
    assert sorted(entry.name for entry in rejected) == ["'alice\\n'", "'alice\\n.zip'"]
    assert all(entry.status.startswith("'alice\\n' is not a usable student id") for entry in rejected)


def test_unusual_ids_within_the_documented_set_are_students(tmp_path: Path) -> None:
    root = tmp_path / "submissions"
    honest = ["o.brien-2@uni", "Z", "9_lives", "a" * 64]
    for student in [*honest, "a" * 65, "-dash", "tab\tin", "é"]:
        folder(root, student, {PYFILE: SOURCE})
    found, rejected = discover(root)
    assert sorted(s.student_id for s in found) == sorted(honest)
    assert len(rejected) == 4 and all("is not a usable student id" in entry.status for entry in rejected)


def test_an_nbgrader_tree_takes_its_times_from_the_graders_record_only(tmp_path: Path) -> None:
    root = tmp_path / "submitted"
    for student in ("alice", "bob"):
        folder(root, student, {f"norm/{PYFILE}": SOURCE, "norm/timestamp.txt": b"2026-11-20 10:00:00.000000 UTC"})
    (root / TIMES_FILE).write_text(record_text({"alice": ("2026-11-21 10:00:00.000000 UTC", "nbgrader's exchange")}))
    alice, bob = discover(root)[0]
    assert alice.kind == "nbgrader" and alice.path == root / "alice" / "norm"
    assert alice.timestamp == "2026-11-21 10:00:00.000000 UTC" and not alice.notes  # the record's, not the file's
    assert bob.timestamp is None and bob.notes == [intake.OWN_TIME_IGNORED]


def test_a_time_a_student_put_in_a_folder_or_a_zip_is_never_read(tmp_path: Path) -> None:
    root = tmp_path / "submissions"
    folder(root, "alice", {PYFILE: SOURCE, "timestamp.txt": b"2026-11-19 10:00:00.000000 UTC"})
    with zipfile.ZipFile(root / "bob.zip", "w") as archive:  # entry dates a week before the others
        archive.writestr(zipfile.ZipInfo(PYFILE, date_time=(2026, 11, 12, 9, 0, 0)), SOURCE)
        archive.writestr("final/timestamp.txt", "2026-11-19 10:00:00.000000 UTC")
    zip_of(root / "carol.zip", {PYFILE: SOURCE})
    found = {s.student_id: s for s in discover(root)[0]}
    assert all(s.timestamp is None for s in found.values())
    assert found["alice"].notes == found["bob"].notes == [intake.OWN_TIME_IGNORED] and not found["carol"].notes


def test_a_symlinked_assignment_folder_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "submitted"
    folder(tmp_path, "instructor", {PYFILE: SOURCE, NOTEBOOK: NOTEBOOK_TEXT})
    folder(root, "bob", {f"norm/{PYFILE}": SOURCE})
    (root / "alice").mkdir()
    os.symlink(tmp_path / "instructor", root / "alice" / "norm")
    alice, bob = discover(root)[0]
    taken = take(tmp_path / "alice", alice)
    assert taken.pyfile is None and taken.notebook is None and "symbolic link" in taken.problems["pyfile"]
    assert take(tmp_path / "bob", bob).pyfile is not None


def test_a_student_with_a_folder_and_a_zip_is_graded_once_from_the_newer(tmp_path: Path) -> None:
    root = tmp_path / "submissions"
    folder(root, "alice", {PYFILE: SOURCE})
    zip_of(root / "alice.zip", {PYFILE: SOURCE})
    os.utime(root / "alice.zip", (1, 1))
    (found,), _ = discover(root)
    assert found.kind == "folder" and "graded the newer alice only" in found.notes[0]


def test_misnamed_and_nested_files_are_taken_with_a_note_and_unknown_files_are_not(tmp_path: Path) -> None:
    path = folder(tmp_path, "alice", {"final/batchnormalization (1).py": SOURCE, "norm-Copy1.ipynb": NOTEBOOK_TEXT,
                                      "secret.txt": b"x", "runs/grid/bn/history.json": b"{}",
                                      "runs/other/history.json": b"{}"})
    taken = take(tmp_path, Submission("alice", path, "folder"))
    assert sorted(p.relative_to(taken.folder).as_posix() for p in taken.folder.rglob("*") if p.is_file()) == \
        [PYFILE, NOTEBOOK, "runs/grid/bn/history.json"]
    assert taken.pyfile.read_bytes() == SOURCE and taken.histories == 1 and not taken.problems
    assert "used 'final/batchnormalization (1).py' as batchnormalization.py" in taken.notes
    assert "used 'norm-Copy1.ipynb' as norm.ipynb" in taken.notes


def test_what_is_missing_or_unreadable_becomes_a_problem_of_that_part_only(tmp_path: Path) -> None:
    path = folder(tmp_path, "alice", {PYFILE: b"\n  \n"})
    taken = take(tmp_path, Submission("alice", path, "folder"))
    assert taken.problems == {"pyfile": "batchnormalization.py is empty", "notebook": "no norm.ipynb was submitted"}
    assert taken.pyfile is None and taken.notebook is None


@pytest.mark.parametrize("data,problem", [
    (b"x = 1\0", "contains NUL bytes"),
    (b"\xff\xfe\xfd\x80\x81", "neither UTF-8 nor GB18030"),
])
def test_a_pyfile_that_is_not_text_is_a_problem(tmp_path: Path, data: bytes, problem: str) -> None:
    taken = take(tmp_path, Submission("alice", folder(tmp_path, "alice", {PYFILE: data}), "folder"))
    assert problem in taken.problems["pyfile"]


def test_a_gb18030_pyfile_is_converted_to_utf8_with_a_note(tmp_path: Path) -> None:
    text = "# 批归一化\nx = 1\n"
    taken = take(tmp_path, Submission("alice", folder(tmp_path, "alice", {PYFILE: text.encode("gb18030")}), "folder"))
    assert taken.pyfile.read_text(encoding="utf-8") == text and any("GB18030" in n for n in taken.notes)


def test_files_over_their_cap_are_not_taken_whatever_the_zip_declares(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(intake.MAX_BYTES, "notebook", 1000)
    archive = zip_of(tmp_path / "alice.zip", {PYFILE: SOURCE, NOTEBOOK: b" " * 5000})
    taken = take(tmp_path, Submission("alice", archive, "zip"))
    assert taken.pyfile is not None and taken.notebook is None
    assert "larger than 0 MiB" in taken.problems["notebook"]


def test_zip_entries_that_escape_or_are_links_are_skipped_with_a_note(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "alice.zip", {"../../escaped.py": b"x", "/absolute.py": b"x"}, links=[PYFILE])
    taken = take(tmp_path, Submission("alice", archive, "zip"))
    assert not (tmp_path / "escaped.py").exists() and taken.pyfile is None
    assert sum("outside the submission folder" in n for n in taken.notes) == 2
    assert any("a symbolic link" in n for n in taken.notes)


def test_a_symlink_in_a_folder_is_never_followed(tmp_path: Path) -> None:
    (tmp_path / "solution.py").write_bytes(SOURCE)
    path = folder(tmp_path, "alice", {})
    os.symlink(tmp_path / "solution.py", path / PYFILE)
    taken = take(tmp_path, Submission("alice", path, "folder"))
    assert taken.pyfile is None and "skipped the symbolic link batchnormalization.py" in taken.notes


def test_a_broken_zip_is_a_problem_of_every_part(tmp_path: Path) -> None:
    (tmp_path / "alice.zip").write_bytes(os.urandom(500))
    taken = take(tmp_path, Submission("alice", tmp_path / "alice.zip", "zip"))
    assert set(taken.problems) == {"pyfile", "notebook", "bonus"}
    assert "could not be opened" in taken.problems["pyfile"]


def test_the_digest_changes_with_the_content_only(tmp_path: Path) -> None:
    first = take(tmp_path / "a", Submission("a", folder(tmp_path / "a", "s", {PYFILE: SOURCE}), "folder"))
    same = take(tmp_path / "b", Submission("b", zip_of(tmp_path / "b.zip", {PYFILE: SOURCE}), "zip"))
    other = take(tmp_path / "c", Submission("c", folder(tmp_path / "c", "s", {PYFILE: SOURCE + b"#"}), "folder"))
    assert first.digest == same.digest != other.digest


def test_what_is_swapped_for_a_link_or_a_fifo_after_listing_is_not_read(tmp_path: Path) -> None:
    """An exchange inbox stays writable by its student while collect reads it."""
    folder(tmp_path, "instructor", {PYFILE: b"# the solution", NOTEBOOK: NOTEBOOK_TEXT})
    path = folder(tmp_path, "alice", {PYFILE: SOURCE, f"final/{NOTEBOOK}": NOTEBOOK_TEXT, "runs/grid/bn/history.json":
                                      b"{}"})
    members, _ = intake._folder_members(path)
    assert sorted(name for name, _, _ in members) == [PYFILE, f"final/{NOTEBOOK}", "runs/grid/bn/history.json"]
    with members[0][2]() as honest:
        assert honest.read() in (SOURCE, NOTEBOOK_TEXT, b"{}")
    os.unlink(path / PYFILE)
    os.symlink(tmp_path / "instructor" / PYFILE, path / PYFILE)
    shutil.rmtree(path / "final")
    os.symlink(tmp_path / "instructor", path / "final")
    os.unlink(path / "runs" / "grid" / "bn" / "history.json")
    os.mkfifo(path / "runs" / "grid" / "bn" / "history.json")
    for name, _, opener in members:
        with pytest.raises(OSError):
            opener()
