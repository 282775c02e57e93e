"""The nbgrader course directory, and the gradebook entries for the checks that run outside the notebook.

nbgrader knows notebooks only, so Q1 and Q2 (batchnormalization.py) and the bonus (the exported models) get a
notebook of their own in the gradebook, with one grade cell each. The grader writes a matching report notebook for
every student, so `nbgrader formgrader` shows them and `nbgrader export` counts them like any other question.
"""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.utils import compute_checksum

from grading.settings import (ASSIGNMENT, CODE_STUB, COURSE_ID, NOTEBOOK, PYFILE, REPO, TEXT_STUB, Settings)

HIDDEN_TESTS = Path(__file__).resolve().parent / "hidden"
# Q1 and Q2 points; the hidden tests' own points must add up to these (the grader checks).
PYFILE_POINTS = {"q1": 20.0, "q2": 20.0}
OFFLINE_NOTEBOOKS = {
    "batchnormalization": (
        ("q1_forward", PYFILE_POINTS["q1"], "# Q1: batchnorm_forward, graded by the hidden pytest suite"),
        ("q2_backward", PYFILE_POINTS["q2"], "# Q2: batchnorm_backward, graded by the hidden pytest suite"),
    ),
    # Worth 0 points: the bonus is extra credit on top of 100.
    "bonus": (("bonus", 0.0, "# Bonus: the exported models, scored on the CIFAR test sets"),),
}
NBGRADER_CONFIG = """\
# Written by grading/course.py from grading/settings.py; edit those instead.
c = get_config()
c.CourseDirectory.course_id = {course_id!r}
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
# Deleted test cells come back at autograde; nbgrader's default would leave them out.
c.OverwriteCells.add_missing_cells = True
# Plain `nbgrader autograde` would otherwise replace every student's {pyfile} with the instructor's.
c.Autograde.exclude_overwriting = {{{assignment!r}: [{pyfile!r}]}}
c.Execute.timeout = {cell_timeout!r}
"""


def fingerprint(source_dir=REPO):
    """What the course is built from: the source notebook, the source .py, the hidden tests and this file."""
    digest = hashlib.sha256()
    paths = [Path(source_dir) / NOTEBOOK, Path(source_dir) / PYFILE, Path(__file__)]
    paths += sorted(HIDDEN_TESTS.glob("*.py"))
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def db_url(root):
    return f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"


def build_course(root, source_dir=REPO):
    """Create (or refresh, when the sources changed) the nbgrader course in root; return its fingerprint."""
    root = Path(root)
    stamp = fingerprint(source_dir)
    stamp_file = root / ".fingerprint"
    if stamp_file.is_file() and stamp_file.read_text() == stamp and (root / "release" / ASSIGNMENT).is_dir():
        return stamp
    (root / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        course_id=COURSE_ID, code_stub=CODE_STUB, text_stub=TEXT_STUB, assignment=ASSIGNMENT, pyfile=PYFILE,
        cell_timeout=int(Settings().cell_timeout)))
    shutil.copy2(Path(source_dir) / NOTEBOOK, root / "source" / ASSIGNMENT / NOTEBOOK)
    result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
                             "--create"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{result.stdout}\n{result.stderr}")
    register_offline_notebooks(root)
    stamp_file.write_text(stamp)
    return stamp


def offline_cell(grade_id, points, source, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
                                 "schema_version": 3, "solution": False, "task": False}
    cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text) for text in outputs]
    return cell


def register_offline_notebooks(root):
    with Gradebook(db_url(root), COURSE_ID) as gb:
        for name, cells in OFFLINE_NOTEBOOKS.items():
            gb.update_or_create_notebook(name, ASSIGNMENT)
            for grade_id, points, source in cells:
                cell = offline_cell(grade_id, points, source)
                gb.update_or_create_grade_cell(grade_id, name, ASSIGNMENT, max_score=points, cell_type="code")
                gb.update_or_create_source_cell(grade_id, name, ASSIGNMENT, cell_type="code", locked=True,
                                                source=cell.source, checksum=cell.metadata.nbgrader.checksum)


def offline_report(name, outputs):
    """The report notebook of offline check `name` for one student: outputs maps grade_id to lines of text."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"# {name}: checks run by the grader outside the notebook\n\nEach cell below shows what the grader found; "
        "its score is in the gradebook. Student code ran in a sandbox and only returned data."))
    for grade_id, points, source in OFFLINE_NOTEBOOKS[name]:
        nb.cells.append(offline_cell(grade_id, points, source, outputs.get(grade_id, ())))
    return nb
