"""The bad-input catalogue: each gets a clear status line or note, zero only for what could not be graded, and the
batch never crashes."""
import copy
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
DEPTH = 200_000  # levels of lists in the deeply nested notebook: far past what json, or any recursive reader, takes


def cell_index(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def edited(notebook, *edits):
    """The notebook's bytes once each edit(nb) has changed it."""
    nb = nbformat.reads(notebook.decode(), as_version=4)
    for edit in edits:
        edit(nb)
    return nbformat.writes(nb).encode()


def duplicate(grade_id, stub=None):
    """JupyterLab's duplicate of a cell: the copy, below it, with the same metadata and a new id; stub, where given,
    is what the lower copy holds (the student wrote the answer into the upper one)."""
    def edit(nb):
        index = cell_index(nb, grade_id)
        copied = copy.deepcopy(nb.cells[index])
        copied["id"] = f"{copied['id']}-copy"
        copied.source = copied.source if stub is None else stub
        nb.cells.insert(index + 1, copied)
    return edit


def nested_deep(notebook):
    """The notebook with DEPTH levels of lists in the metadata of a cell (built as text: json writes no such thing)."""
    data = json.loads(notebook)
    data["cells"][2]["metadata"]["deep"] = "DEEP"
    return json.dumps(data).replace('"DEEP"', "[" * DEPTH + "]" * DEPTH).encode()


def unknown_grade_cell(nb):
    """A cell that claims 10 more points under a grade id the assignment does not have."""
    claim = nbformat.v4.new_code_cell("print('q6: 10 / 10')")
    claim.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "q6_extra",
                                  "points": 10, "schema_version": 3}
    nb.cells.insert(cell_index(nb, "q5_cifar_stem") + 1, claim)


def harmless_metadata(nb):
    """What editors and nbgrader's own feedback leave in a notebook that changes no grade: no cell ids, a cell whose
    nbgrader metadata gives it no role, extra keys and tags beside a test cell's nbgrader metadata."""
    for each in nb.cells:
        each.pop("id", None)
    helper = nbformat.v4.new_code_cell("shapes = {}", metadata={"nbgrader": {}})
    helper.pop("id")
    nb.cells.insert(cell_index(nb, "q3_make_shortcut") + 1, helper)
    test = nb.cells[cell_index(nb, "q3_shortcut")]
    test.metadata.nbgrader.update(schema_version=1, comment="checked with my own shapes")
    test.metadata.update(tags=["tests"], jupyter={"source_hidden": True})


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
    folder("test-cell-made-an-answer-cell", **{PYFILE: reference_py, NOTEBOOK: edited(reference_nb, lambda nb: nb.cells[
        cell_index(nb, "q3_layer_norm")].metadata.nbgrader.update(solution=True))})
    folder("deeply-nested-notebook", **{PYFILE: reference_py, NOTEBOOK: nested_deep(reference_nb)})
    folder("unknown-grade-id", **{PYFILE: reference_py, NOTEBOOK: edited(reference_nb, unknown_grade_cell)})
    released = nbformat.read(bundle / NOTEBOOK, as_version=4)
    written_stub = released.cells[cell_index(released, "q4_analysis")].source
    folder("duplicated-answer-cells", **{PYFILE: reference_py, NOTEBOOK: edited(
        reference_nb, duplicate("q3_make_norm"), duplicate("q4_analysis", stub=written_stub))})
    folder("duplicated-test-cells", **{PYFILE: reference_py, NOTEBOOK: edited(
        reference_nb, duplicate("q3_layer_norm"), duplicate("q4_trains"), duplicate("model_code"))})
    folder("harmless-metadata", **{PYFILE: reference_py, NOTEBOOK: edited(reference_nb, harmless_metadata)})
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
    ("test-cell-made-an-answer-cell", "the cell q3_layer_norm of norm.ipynb is a test cell of the assignment, but "
                                      "its nbgrader metadata was changed to make it an answer cell graded by hand"),
    ("deeply-nested-notebook", "norm.ipynb is nested more than 100 levels deep"),
    ("unknown-grade-id", "norm.ipynb has a cell marked for nbgrader as a test cell with the grade id 'q6_extra', "
                         "which the assignment does not have"),
])
def test_a_notebook_nbgrader_cannot_grade_costs_only_the_notebook(batch, name, status):
    """Defects that once made the whole submission a grader ERROR (nbgrader's checksums, a RecursionError, a
    KeyError): the .py is graded, the notebook is graded as the released one, and the status says why."""
    result, row = batch[0][name], batch[1][name]
    expect(result, q3=0, q4=0, q5=0)
    assert result.status.startswith("notebook: ") and status in result.status, result.status
    assert row["status"] == result.status and float(row["total"]) == 40 and row["manual_pending"] == "", row


@pytest.mark.parametrize("name,note", [
    ("duplicated-answer-cells", "the cell q4_analysis appears 2 times (a duplicated cell?); the grader graded the "
                                "last copy you changed"),
    ("duplicated-test-cells", "the cell q3_layer_norm appears 2 times (a duplicated cell?); the grader graded the "
                              "last copy"),
])
def test_duplicated_cells_keep_full_marks(batch, name, note):
    """JupyterLab's duplicate copies a cell's nbgrader metadata; the written answer in the upper copy of a duplicated
    answer cell, above an untouched stub, still waits for the TA rather than scoring a blank answer's 0."""
    result = batch[0][name]
    expect(result)
    assert result.status == "ok" and any(note in n for n in result.notes), (result.status, result.notes)
    assert result.questions["q4"].manual_pending and result.questions["q5"].manual_pending


def test_metadata_that_changes_no_grade_costs_nothing(batch):
    result = batch[0]["harmless-metadata"]
    expect(result)
    assert result.status == "ok" and result.notes == [], (result.status, result.notes)


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
    """Plain `nbgrader autograde` of the inputs nbgrader's own reading could treat otherwise, as handed in (a TA's
    copy into submitted/; the course the batch wrote keeps the released notebook in place of one it could not
    grade): the same gradebook, cell by cell, and the same export."""
    students = ["invalid-notebook-json", "nbformat-3", "missing-notebook", "missing-pyfile", "misnamed-files",
                "test-cell-made-an-answer-cell", "deeply-nested-notebook", "unknown-grade-id",
                "duplicated-answer-cells"]
    course = tmp_path / "course"
    shutil.copytree(batch[2] / "out" / "course", course)
    for student in students:
        shutil.rmtree(course / "submitted" / student / "norm")
        shutil.copytree(batch[2] / "submissions" / student, course / "submitted" / student / "norm")
    ours, theirs = graded_both_ways(course, tmp_path, students)
    assert ours == theirs
    q1 = {row[0]: row[3] for row in ours[0] if row[2] == "q1_forward"}
    assert q1["missing-notebook"] == 20 and q1["invalid-notebook-json"] == 20  # the .py is graded all the same
