"""The bad-input catalogue: each gets a clear status line or note, zero only for what could not be graded, and the
batch never crashes."""
import io
import json
import os
import shutil
import stat
import zipfile

import nbformat
import pytest

from conftest import REFERENCE, REPO, autograde, graded_both_ways, grades, results, submit
from grading.assignment import NOTEBOOK, PYFILE

FULL = {"q1": 20, "q2": 20, "q3": 20, "q4": 10, "q5": 10}


def zipped(folder, extra=(), leave_out=()):
    """The files of folder (but those named in leave_out) as zip bytes, plus (name, bytes or ZipInfo) extras."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.name not in leave_out:
                archive.write(path, path.name)
        for name, content in extra:
            if isinstance(content, zipfile.ZipInfo):
                archive.writestr(content, name)
            else:
                archive.writestr(name, content)
    return buffer.getvalue()


def symlink_entry(name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return target, info


@pytest.fixture(scope="module")
def batch(bundle, release_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = submit(bundle, root / "good", {"reference": REFERENCE}) / "reference"
    subs = root / "submissions"
    subs.mkdir()

    def folder(name, **files):
        path = subs / name
        path.mkdir()
        for filename, content in files.items():
            filename = filename.replace("__", " ")
            data = content if isinstance(content, bytes) else (good / content).read_bytes()
            (path / filename).write_bytes(data)
        return path

    reference_py, reference_nb = (good / PYFILE).read_bytes(), (good / NOTEBOOK).read_bytes()
    folder("invalid-notebook-json", **{PYFILE: reference_py, NOTEBOOK: b'{"cells": [ not json'})
    folder("wrong-nbformat", **{PYFILE: reference_py, NOTEBOOK: json.dumps({"nbformat": 99, "cells": []}).encode()})
    folder("notebook-is-a-list", **{PYFILE: reference_py, NOTEBOOK: b"[]"})
    folder("nbformat-3", **{PYFILE: reference_py, NOTEBOOK: nbformat.writes(nbformat.convert(
        nbformat.reads(reference_nb.decode(), as_version=4), 3)).encode()})
    folder("missing-notebook", **{PYFILE: reference_py})
    folder("missing-pyfile", **{NOTEBOOK: reference_nb})
    folder("misnamed-files", **{"batchnormalization__(1).py": reference_py, "norm-Copy1.ipynb": reference_nb})
    folder("syntax-error", **{PYFILE: reference_py.replace(b"def batchnorm_backward", b"def batchnorm_backward(("),
                              NOTEBOOK: reference_nb})
    folder("empty-pyfile", **{PYFILE: b"", NOTEBOOK: reference_nb})
    folder("binary-pyfile", **{PYFILE: os.urandom(4096) + b"\0", NOTEBOOK: reference_nb})
    folder("gb18030-pyfile", **{PYFILE: ("# 批归一化，GB18030 编码\n" + reference_py.decode()).encode("gb18030"),
                                NOTEBOOK: reference_nb})
    folder("binary-notebook", **{PYFILE: reference_py, NOTEBOOK: os.urandom(8192)})
    huge = nbformat.reads(reference_nb.decode(), as_version=4)
    huge.cells.insert(3, nbformat.v4.new_code_cell("for _ in range(200):\n    print('x' * 500_000)"))
    folder("huge-output", **{PYFILE: reference_py, NOTEBOOK: nbformat.writes(huge).encode()})
    (subs / "zip-path-traversal.zip").write_bytes(zipped(good, [("../../escaped.py", b"print('out')"),
                                                                ("/absolute.py", b"print('out')")]))
    (subs / "zip-symlink.zip").write_bytes(zipped(good, [symlink_entry(PYFILE, str(REPO / PYFILE))],
                                                  leave_out=[PYFILE]))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(PYFILE, reference_py)
        with archive.open(NOTEBOOK, "w") as member:
            for _ in range(200):
                member.write(bytes(1 << 20))
    (subs / "zip-bomb.zip").write_bytes(bomb.getvalue())
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(10_001):
            archive.writestr(f"f{index}.txt", b"")
    (subs / "zip-too-many-entries.zip").write_bytes(many.getvalue())
    (subs / "corrupt-zip.zip").write_bytes(os.urandom(3000))
    linked = folder("folder-symlink-to-the-solution", **{NOTEBOOK: reference_nb})
    (linked / PYFILE).symlink_to(REPO / PYFILE)
    shutil.copytree(good, subs / "duplicate")
    (subs / "duplicate.zip").write_bytes(zipped(good))
    os.utime(subs / "duplicate.zip", (1, 1))
    nested = subs / "nested-folder" / "my submission" / "final"
    shutil.copytree(good, nested)
    shutil.copytree(good, subs / "bad name!")
    shutil.copytree(good, subs / "duplicate\n")  # a second row for duplicate, once an LMS trims the newline
    (subs / "notes.txt").write_text("a stray file")
    shutil.copytree(good, subs / "claims-its-own-time")
    (subs / "claims-its-own-time" / "timestamp.txt").write_text("2026-11-20T18:00:00+08:00")
    completed = autograde(subs, root / "out", release_dir, "--jobs", "2", "--cell-timeout", "30",
                          "--output-kb", "64")
    assert completed.returncode == 0, completed.stderr[-3000:]
    return results(root / "out"), grades(root / "out"), root


def scores(result):
    return {q: result.questions[q].score for q in FULL}


def expect(result, **expected):
    actual = scores(result)
    assert actual == {**FULL, **expected}, (actual, result.status, result.notes)


@pytest.mark.parametrize("name,status", [
    ("invalid-notebook-json", "not valid JSON"),
    ("wrong-nbformat", "nbformat 4 (found nbformat 99)"),
    ("notebook-is-a-list", "not a Jupyter notebook"),
    ("binary-notebook", "norm.ipynb is not"),
    ("missing-notebook", "no norm.ipynb was submitted"),
])
def test_an_ungradable_notebook_costs_only_the_notebook(batch, name, status):
    result = batch[0][name]
    expect(result, q3=0, q4=0, q5=0)
    assert status in result.status or any(status in q.status for q in result.questions.values()), result.status


@pytest.mark.parametrize("name,status", [
    ("missing-pyfile", "no batchnormalization.py was submitted"),
    ("empty-pyfile", "batchnormalization.py is empty"),
    ("binary-pyfile", "batchnormalization.py is not text"),
    ("folder-symlink-to-the-solution", "no batchnormalization.py was submitted"),
    ("zip-symlink", "no batchnormalization.py was submitted"),
])
def test_an_ungradable_pyfile_costs_only_q1_and_q2(batch, name, status):
    result = batch[0][name]
    expect(result, q1=0, q2=0)
    assert status in result.status, result.status


def test_a_syntax_error_says_so_in_the_feedback(batch):
    result = batch[0]["syntax-error"]
    expect(result, q1=0, q2=0)
    first, *others = result.questions["q1"].tests
    assert "SyntaxError" in first.message  # said once; the other checks point to it (82ec9eb)
    assert all("SyntaxError" in t.message or f"the same as {first.name}" in t.message for t in others)


@pytest.mark.parametrize("name,note", [
    ("misnamed-files", "used 'batchnormalization (1).py' as batchnormalization.py"),
    ("gb18030-pyfile", "read as GB18030"),
    ("nbformat-3", "nbformat 3"),
    ("nested-folder", "inside a folder"),
    ("zip-path-traversal", "would be written outside the submission folder"),
    ("duplicate", "also submitted duplicate.zip"),
    ("claims-its-own-time", "its own timestamp.txt was not used"),
])
def test_recoverable_inputs_are_graded_with_a_note(batch, name, note):
    result = batch[0][name]
    expect(result)
    assert any(note in n for n in result.notes), result.notes


def test_path_traversal_writes_nothing_outside(batch):
    root = batch[2]
    assert not list(root.rglob("escaped.py")) and not (root.parent / "escaped.py").exists()
    assert not os.path.exists("/absolute.py")


def test_huge_outputs_are_capped_at_output_kb(batch):
    """--output-kb caps a notebook cell's output (it once reached only the .py child's)."""
    expect(batch[0]["huge-output"])
    executed = batch[2] / "out" / "course" / "autograded" / "huge-output" / "norm" / NOTEBOOK
    assert executed.stat().st_size < 5 << 20
    cell = next(c for c in nbformat.read(executed, as_version=4).cells if "500_000" in c.source)
    assert "[output beyond 64 KiB dropped by the grader]" in "".join(o.get("text", "") for o in cell.outputs)


@pytest.mark.parametrize("name,status", [
    ("zip-bomb", "norm.ipynb is larger than 50 MiB"),
    ("zip-too-many-entries", "the zip holds 10001 entries"),
    ("corrupt-zip", "could not be opened"),
])
def test_hostile_archives_are_refused_cheaply(batch, name, status):
    result = batch[0][name]
    assert status in result.status and result.seconds < 60, (result.status, result.seconds)


def test_entries_that_are_not_submissions_get_a_row_with_the_reason(batch):
    rows = batch[1]
    assert "not a usable student id" in rows["'bad name!'"]["status"]
    assert "'duplicate\\n' is not a usable student id" in rows["'duplicate\\n'"]["status"]
    assert [name for name in rows if name.strip() == "duplicate"] == ["duplicate"] and "duplicate\n" not in batch[0]
    assert "not a folder or a .zip file" in rows["notes.txt"]["status"]
    assert "duplicate.zip" not in rows


def test_a_time_the_student_wrote_into_the_submission_is_not_recorded(batch):
    result = batch[0]["claims-its-own-time"]
    assert result.timestamp is None and result.late_seconds == 0


def test_nbgrader_gives_the_same_grades_to_inputs_it_reads_in_its_own_way(batch, tmp_path):
    """Plain `nbgrader autograde` in the course the batch wrote, for the inputs nbgrader's own reading could treat
    otherwise: the same gradebook, cell by cell, and the same export."""
    students = ["invalid-notebook-json", "nbformat-3", "missing-notebook", "missing-pyfile", "misnamed-files"]
    ours, theirs = graded_both_ways(batch[2] / "out" / "course", tmp_path, students)
    assert ours == theirs
    q1 = {row[0]: row[3] for row in ours[0] if row[2] == "q1_forward"}
    assert q1["missing-notebook"] == 20 and q1["invalid-notebook-json"] == 20  # the .py is graded all the same
