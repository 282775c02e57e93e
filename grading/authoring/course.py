"""The nbgrader course: source/norm/ holds the student bundle (the stubbed batchnormalization.py, the public tests,
normlab/, data/, README.md, requirements.txt) and the source notebook; `nbgrader generate_assignment` turns it into
release/norm/, which is exactly what students get, and the gradebook.

Its nbgrader_config.py plugs this project's grading into nbgrader (grading/pipeline/chains.py), so `nbgrader
autograde`, the formgrader's autograde button and nbgrader's exchange grade as `python -m grading autograde` does.
"""
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from ipykernel.ipkernel import IPythonKernel

from grading.assignment import ASSIGNMENT, CODE_STUB, COURSE_ID, NOTEBOOK, PYFILE, TEXT_STUB
from grading.authoring.regions import stub_pyfile
from grading.settings import REPO, Settings

# The student bundle's README.md is the part of this file between the two markers.
STUDENT_README_SOURCE = "docs/students.md"
STUDENT_README = ("<!-- student-readme:start -->", "<!-- student-readme:end -->")
# Besides the notebook and the stubbed .py, what students get (folders are copied whole, but caches).
BUNDLED = ["tests/conftest.py", "tests/test_batchnorm.py", "data/README.md", "data/download.py", "requirements.txt",
           "normlab"]
# What the course's files are written by, besides the sources (course_fingerprint).
COURSE_MODULES = ("grading/authoring/course.py", "grading/assignment.py", "grading/settings.py")
# Everything besides the course that decides a score, listed once (relative to the repository; a folder counts
# with every .py file under it): a change to any of it regrades every student, a change anywhere else in grading/
# (the commands, the reports, report.html, export, shards) regrades no one. unit/test_fingerprint.py checks that
# this and COURSE_MODULES are exactly what the judgement imports.
SCORING = (
    "normlab",  # the students' package, which the hidden suites, the probes and the bonus import too
    "grading/hidden",  # the hidden suites
    "grading/sandboxed",  # the probes and servers, sent into the sandbox as source text
    "grading/isolation",  # the sandbox, the zygote, the kernel, the .py child and what they hand back
    "grading/pipeline/parallel.py",  # the child process that grades a submission, and what it hands back
    "grading/pipeline/intake.py",
    "grading/pipeline/notebook.py",
    "grading/pipeline/front_door.py",
    "grading/pipeline/canary.py",
    "grading/pipeline/grade.py",
    "grading/pipeline/chains.py",
    "grading/pipeline/restore_cells.py",
    "grading/pipeline/judged_execute.py",
    "grading/pipeline/judge.py",
    "grading/pipeline/hidden_suites.py",
    "grading/pipeline/bonus.py",
    "grading/pipeline/verdicts.py",
    "grading/records/results.py",  # the typed result, whose totals add the scores up
    "grading/records/late.py",  # the late penalty
    "grading/records/gradebook.py",  # what nbgrader's gradebook records (the bonus as extra credit)
    "grading/authoring/regions.py",
    "grading/failures.py",
    "grading/handoff.py",
    "grading/stages.py",  # imported by the judgement to time its stages (bench --profile); it decides nothing
    "grading/nbgrader_support.py",
    "grading/compat.py",  # how the kernel is started and nbgrader's autograde is entered
)
NBGRADER_CONFIG = """\
# Written by grading/authoring/course.py; change grading/settings.py or grading/pipeline/chains.py instead.
import sys
sys.path.insert(0, {repo!r})
from grading.nbgrader_support import prepare_nbgrader
prepare_nbgrader()
from grading.pipeline import chains, front_door
# nbgrader reads submissions only as python -m grading autograde does: no links, no special files, capped sizes.
front_door.install()

c = get_config()
c.ExchangeFactory.collect = "grading.pipeline.front_door.CheckedCollect"
c.CourseDirectory.course_id = {course_id!r}
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
# Judged outside the student's process, in a sandbox, with deleted grade cells put back.
c.Autograde.sanitize_preprocessors = chains.SANITIZE
c.Autograde.autograde_preprocessors = chains.JUDGE + chains.RECORD
c.JudgedExecute.settings = {settings!r}
# Plain nbgrader would replace every student's {pyfile} with the course's copy.
c.Autograde.exclude_overwriting = {{{assignment!r}: [{pyfile!r}]}}
# The late policy of python -m grading autograde (the due date is the gradebook's).
c.AssignLatePenalties.plugin_class = "grading.records.late.LatePenaltyPlugin"
c.LatePenaltyPlugin.policy = {late_policy!r}
# What students wrote renders inert in the formgrader and in nbgrader's feedback (grading/records/inert.py).
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.preprocessors = ["grading.records.inert.InertMetadata"]
c.HTMLExporter.filters = {{"markdown2html": "grading.records.inert.markdown2html",
                          "clean_html": "grading.records.inert.clean_html",
                          "highlight_code": "grading.records.inert.CodeHighlight"}}
"""


def course_fingerprint(source_dir: Path = REPO) -> str:
    """What the course is built from: the sources, everything bundled, and COURSE_MODULES."""
    source_dir = Path(source_dir)
    paths = [source_dir / NOTEBOOK, source_dir / PYFILE, source_dir / STUDENT_README_SOURCE,
             *(source_dir / module for module in COURSE_MODULES)]
    for entry in BUNDLED:
        path = source_dir / entry
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return _digest(source_dir, paths)


def scoring_files(repo: Path = REPO) -> list[Path]:
    """The files of SCORING in repo, in a fixed order."""
    files = []
    for entry in SCORING:
        path = Path(repo) / entry
        if path.is_dir():
            files += sorted(path.rglob("*.py"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} is listed in SCORING (grading/authoring/course.py) as deciding scores "
                                    "but does not exist: list what replaced it there")
    return files


def grading_fingerprint(repo: Path = REPO) -> str:
    """Everything that decides a score: the course and SCORING. A student graded under another fingerprint is
    regraded; one graded under this one is not, whatever else in grading/ changed since."""
    return _digest(Path(repo), scoring_files(repo), course_fingerprint(repo))


def _digest(root: Path, paths: Iterable[Path], prefix: str = "") -> str:
    """A short digest of the files at paths (under root) and of where they are, after prefix."""
    digest = hashlib.sha256(prefix.encode())
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def db_url(root: Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"


def student_readme(source_dir: Path = REPO) -> str:
    text = (Path(source_dir) / STUDENT_README_SOURCE).read_text(encoding="utf-8")
    start, end = (text.index(marker) for marker in STUDENT_README)
    return text[start + len(STUDENT_README[0]):end].strip() + "\n"


def write_source(folder: Path, source_dir: Path = REPO) -> None:
    """The assignment's source folder of the course: the source notebook and the student bundle's other files."""
    source_dir = Path(source_dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notebook = json.loads((source_dir / NOTEBOOK).read_text(encoding="utf-8"))
    # What the kernel will report, so that JupyterLab has nothing to change (and the notebook does not open modified)
    notebook["metadata"]["language_info"] = IPythonKernel.language_info
    (folder / NOTEBOOK).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / PYFILE).write_text(stub_pyfile((source_dir / PYFILE).read_text(encoding="utf-8")), encoding="utf-8")
    (folder / "README.md").write_text(student_readme(source_dir), encoding="utf-8")
    for entry in BUNDLED:
        origin, target = source_dir / entry, folder / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)


def write_config(root: Path, settings: Settings | None = None) -> None:
    """The course's nbgrader_config.py, with the settings nbgrader's autograde there should grade with."""
    settings = settings or Settings()
    Path(root, "nbgrader_config.py").write_text(NBGRADER_CONFIG.format(
        repo=str(REPO), course_id=COURSE_ID, code_stub=CODE_STUB, text_stub=TEXT_STUB, assignment=ASSIGNMENT,
        pyfile=PYFILE, settings=settings.to_json(), late_policy=settings.late_policy))


def build_course(root: Path, source_dir: Path = REPO, template: Path | None = None) -> str:
    """Create (or refresh, when what it is built from changed) the nbgrader course in root; return its
    fingerprint. A new course is copied from template, a course folder nobody has graded in yet, where that was
    built from the same sources: nbgrader's generate_assignment takes seconds."""
    root = Path(root)
    stamp = course_fingerprint(source_dir)
    if template is not None and not root.exists() and _is_built(Path(template), stamp):
        shutil.copytree(template, root)
    if _is_built(root, stamp):
        return stamp
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "nbgrader_config.py").is_file():
        write_config(root)
    write_source(root / "source" / ASSIGNMENT, source_dir)
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
                                "--create"], cwd=root, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{completed.stdout}\n{completed.stderr}")
    (root / ".fingerprint").write_text(stamp)
    return stamp


def _is_built(root: Path, stamp: str) -> bool:
    stamp_file = root / ".fingerprint"
    return stamp_file.is_file() and stamp_file.read_text() == stamp and (root / "release" / ASSIGNMENT).is_dir()


def import_roster(root: Path, roster: Path) -> None:
    """Load student names and emails from a CSV (id, first_name, last_name, email) with nbgrader's student import."""
    completed = subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "import",
                                str(Path(roster).resolve())], cwd=root, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ValueError(f"the roster {roster} could not be imported by nbgrader: "
                         f"{(completed.stderr or completed.stdout).strip().splitlines()[-1:]}")
