"""`python -m grading release`: the student bundle, generated from the sources and then checked.

The bundle (DIR/norm/ and DIR/norm.zip) is the nbgrader course's release folder (authoring/course.py):
batchnormalization.py with each solution region replaced by the code stub, the notebook as nbgrader's
generate_assignment releases it, the public tests, data/README.md and data/download.py, normlab/, the student part
of README.md, and requirements.txt. Then it checks itself and fails loudly if the notebook's grade cells are not
those of grading/assignment.py, if a line of a solution or hidden test appears anywhere in it, if the sources do not
earn every autograded point, if the untouched bundle earns any or breaks the grader, or if the public tests do not
fail cleanly on the stubs.
"""
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path
from typing import Collection, Iterator

import nbformat
from nbgrader.utils import is_grade

from grading.assignment import ASSIGNMENT, NOTEBOOK, PYFILE, QUESTIONS
from grading.authoring.course import build_course
from grading.authoring.regions import BEGIN_HIDDEN, BEGIN_SOLUTION, secret_lines
from grading.settings import REPO, Settings

logger = logging.getLogger(__name__)

NOT_IMPLEMENTED = "not implemented yet"


class ReleaseCheckFailed(Exception):
    """The bundle fails its check; the message names every problem."""


def build_bundle(out_dir: Path, source: Path = REPO) -> Path:
    """Write DIR/course (nbgrader), DIR/norm/ (its release folder: what students get) and DIR/norm.zip; return
    the bundle folder."""
    out_dir = Path(out_dir)
    course = out_dir / "course"
    build_course(course, source)
    bundle = out_dir / ASSIGNMENT
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(course / "release" / ASSIGNMENT, bundle)
    archive = out_dir / f"{ASSIGNMENT}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                zf.write(path, Path(ASSIGNMENT) / path.relative_to(bundle))
    return bundle


def bundle_texts(bundle: Path, archive: Path) -> Iterator[tuple[str, str]]:
    """(name, text) of every file in the bundle folder and the zip; notebooks contribute their cell sources."""
    members = [(str(p.relative_to(bundle.parent)), p.read_bytes()) for p in sorted(bundle.rglob("*")) if p.is_file()]
    with zipfile.ZipFile(archive) as zf:
        members += [(f"{archive.name}:{name}", zf.read(name)) for name in zf.namelist()]
    for name, raw in members:
        text = raw.decode("utf-8", "replace")
        if name.endswith(".ipynb"):
            text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                             for c in json.loads(text)["cells"])
        yield name, text


def find_leaks(bundle: Path, archive: Path, secrets: Collection[str]) -> list[str]:
    """Problems: bundled lines that belong to a solution or hidden test, and files that must never ship."""
    problems = []
    for name, text in bundle_texts(bundle, archive):
        if "grading/" in name.replace("\\", "/") or "/hidden/" in name:
            problems.append(f"{name} must not be in the bundle")
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() in secrets:
                problems.append(f"{name}:{number} ships a solution or hidden-test line: {line.strip()[:80]}")
            elif BEGIN_SOLUTION in line or BEGIN_HIDDEN in line:
                problems.append(f"{name}:{number} ships a solution or hidden-test marker")
    return problems


def public_test_problems(bundle: Path) -> list[str]:
    """Every public test must fail on the stubs, each with the short 'not implemented yet' message."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                        "tests"], cwd=bundle, capture_output=True, text=True, timeout=600)
        if not report.is_file():
            return ["the public tests did not run on the bundle"]
        cases = ElementTree.parse(report).getroot().iter("testcase")
        problems = []
        count = 0
        for case in cases:
            count += 1
            failure = case.find("failure")
            if failure is None:
                problems.append(f"public test {case.get('name')} does not fail on the stubs")
            elif NOT_IMPLEMENTED not in (failure.get("message", "") + (failure.text or "")):
                problems.append(f"public test {case.get('name')} fails on the stubs without saying "
                                f"'{NOT_IMPLEMENTED}'")
        return problems if count else ["no public test was collected from the bundle"]


def grading_problems(bundle: Path, out_dir: Path, settings: Settings, source: Path = REPO) -> list[str]:
    """The sources must earn every autograded point; the untouched bundle none, without breaking the grader."""
    from grading.commands.autograde import autograde

    submissions = out_dir / "selfcheck" / "submissions"
    shutil.rmtree(submissions.parent, ignore_errors=True)
    for student, origin in (("source", source), ("untouched", bundle)):
        (submissions / student).mkdir(parents=True)
        for name in (PYFILE, NOTEBOOK):
            shutil.copy(origin / name, submissions / student / name)
    check = Settings(jobs=settings.jobs, require_sandbox=settings.require_sandbox,
                     questions=",".join(q.id for q in QUESTIONS if q.points))
    # No canary: "source" is the reference, and must earn every point, not only its canary's
    results = {r.student_id: r for r in autograde(submissions, out_dir / "selfcheck" / "out", check,
                                                  report=False, progress=False,
                                                  course_template=out_dir / "course", canary=False)}
    problems = []
    for name, q in results["source"].questions.items():
        if q.score != q.max_score:
            problems.append(f"the source earns {q.score:g} of {q.max_score:g} autograded points on {name}: "
                            f"{[t.name for t in q.tests if not t.passed] or q.status}")
    for name, q in results["untouched"].questions.items():
        if q.score > 0:
            problems.append(f"the untouched bundle earns {q.score:g} points on {name}")
    if not all(q.graded for q in results["untouched"].questions.values()):
        problems.append(f"the grader could not grade the untouched bundle: {results['untouched'].status}")
    return problems


def question_table_problems(bundle: Path) -> list[str]:
    """The notebook's grade cells and points must be those of assignment.QUESTIONS."""
    notebook = nbformat.read(bundle / NOTEBOOK, as_version=4)
    found = {c.metadata.nbgrader.grade_id: float(c.metadata.nbgrader.points) for c in notebook.cells if is_grade(c)}
    expected = {cell: points for q in QUESTIONS for cell, points in {**q.autograded, **q.written}.items()}
    return [f"{NOTEBOOK} has grade cells {found}, but grading/assignment.py declares {expected}"] \
        if found != expected else []


def release(out_dir: Path, settings: Settings) -> Path:
    """Write the student bundle into out_dir and check it; return the bundle's folder. ReleaseCheckFailed, naming
    every problem, where the check fails."""
    out_dir = Path(out_dir)
    bundle = build_bundle(out_dir)
    logger.info(f"wrote {bundle}/ and {out_dir / (ASSIGNMENT + '.zip')}; checking them")
    problems = question_table_problems(bundle)
    problems += find_leaks(bundle, out_dir / f"{ASSIGNMENT}.zip", secret_lines(REPO))
    problems += public_test_problems(bundle)
    problems += grading_problems(bundle, out_dir, settings)
    if problems:
        raise ReleaseCheckFailed("the release check failed:\n  " + "\n  ".join(problems))
    logger.info("release check passed: the grade cells match grading/assignment.py; no solution or hidden-test line "
                "in the bundle; the sources earn every autograded point; the untouched bundle earns none; the public "
                "tests fail cleanly on the stubs")
    return bundle
