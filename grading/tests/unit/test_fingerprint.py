"""The grader's fingerprint covers exactly what decides a score (authoring/course.py's SCORING and COURSE_MODULES):
every module the judgement imports, so that a change there regrades everyone, and none of the commands or reports,
so that a change there regrades no one."""
import ast
import shutil
from pathlib import Path

import pytest

from grading.assignment import NOTEBOOK, PYFILE
from grading.authoring.course import (BUNDLED, COURSE_MODULES, STUDENT_README_SOURCE, grading_fingerprint,
                                      scoring_files, write_config)

REPO = Path(__file__).resolve().parents[3]
# Where a judgement starts, besides what the course's nbgrader_config.py imports for nbgrader's own autograde: the
# child that `python -m grading autograde` forks per submission (parallel.py, which runs grade.py's chains), the late
# penalty put on a fresh judgement (late.py), and what runs by path rather than by import: the hidden suites (under
# pytest, in the sandbox) and the sandboxed programs (sent there as source text).
ENTRY_POINTS = ["grading/pipeline/parallel.py", "grading/records/late.py", "grading/hidden", "grading/sandboxed"]
# What TAs and students read, and the commands around a judgement: a wording changed here must regrade no one.
NOT_SCORING = ["grading/__main__.py", "grading/commands", "grading/records/reports.py", "grading/records/cohort.py",
               "grading/records/final.py", "grading/records/inert.py", "grading/pipeline/shards.py",
               "grading/authoring/samples.py"]
IMPORTED_PACKAGES = ("grading", "normlab")


def python_files(entries: list[str]) -> set[Path]:
    """The .py files of entries (files, or folders taken whole), relative to the repository."""
    files: set[Path] = set()
    for entry in entries:
        path = REPO / entry
        files |= {p.relative_to(REPO) for p in path.rglob("*.py")} if path.is_dir() else {Path(entry)}
    return files


def module_file(module: str) -> Path | None:
    """The file of a dotted module name of this repository, relative to it; None for a name that is not a module
    (an attribute imported from one)."""
    base = Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (REPO / candidate).is_file():
            return candidate
    return None


def imported_files(source: str) -> set[Path]:
    """The files of this repository that the Python source imports anywhere (in functions too), with every package
    on the way, whose __init__.py runs first."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    files = set()
    for name in names:
        parts = name.split(".")
        if parts[0] not in IMPORTED_PACKAGES:
            continue
        files |= {file for i in range(1, len(parts) + 1) if (file := module_file(".".join(parts[:i]))) is not None}
    return files


@pytest.fixture(scope="module")
def judgement(tmp_path_factory: pytest.TempPathFactory) -> set[Path]:
    """Every file of this repository that the entry points and the course's nbgrader_config.py import, directly or
    not, with the entry points."""
    course = tmp_path_factory.mktemp("course")
    write_config(course)
    seen: set[Path] = set()
    pending = sorted(python_files(ENTRY_POINTS) | imported_files((course / "nbgrader_config.py").read_text()))
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending += sorted(imported_files((REPO / path).read_text(encoding="utf-8")) - seen)
    return seen


def only_documents(path: Path) -> bool:
    """Whether the module is a docstring and nothing else (a package's __init__.py that only describes it)."""
    body = ast.parse((REPO / path).read_text(encoding="utf-8")).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def fingerprinted() -> set[Path]:
    """The .py files the fingerprint digests, relative to the repository."""
    return {path.relative_to(REPO) for path in scoring_files(REPO)} | python_files(list(COURSE_MODULES))


def test_every_module_the_judgement_imports_is_fingerprinted(judgement: set[Path]) -> None:
    missing = {path for path in judgement - fingerprinted() if not only_documents(path)}
    assert not missing, (f"{sorted(map(str, missing))} can change a score (the judgement imports them) but are not "
                         "in SCORING (grading/authoring/course.py): add them there")


def test_every_grading_module_fingerprinted_is_one_the_judgement_imports(judgement: set[Path]) -> None:
    extra = {path for path in fingerprinted() - judgement if path.parts[0] == "grading"}
    assert not extra, (f"{sorted(map(str, extra))} are in SCORING (grading/authoring/course.py), so a change there "
                       "regrades everyone, but nothing that judges imports them: take them out of SCORING")


def test_no_command_or_report_is_fingerprinted(judgement: set[Path]) -> None:
    assert not python_files(NOT_SCORING) & fingerprinted()
    assert not python_files(NOT_SCORING) & judgement


def copy_of_the_repository(to: Path) -> Path:
    """What the fingerprint reads, and the reports, copied to `to` (caches left behind)."""
    caches = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "examples")
    for folder in ("grading", "normlab"):
        shutil.copytree(REPO / folder, to / folder, ignore=caches)
    for path in fingerprinted_sources():
        (to / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, to / path)
    return to


def fingerprinted_sources() -> list[Path]:
    """The course's sources and bundled files outside grading/ and normlab/, relative to the repository."""
    return [Path(name) for name in (NOTEBOOK, PYFILE, STUDENT_README_SOURCE, *BUNDLED) if name != "normlab"]


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first old in the file at path by new."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}: pick another line to edit"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_reports_wording_changes_nothing_and_a_hidden_suite_or_normlab_changes_the_fingerprint(
        tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    before = grading_fingerprint(REPO)
    assert grading_fingerprint(copy) == before  # where the repository is does not count
    edit(copy / "grading/records/reports.py", '"""', '"""Reworded. ')
    edit(copy / "grading/commands/autograde.py", '"""', '"""Reworded. ')
    assert grading_fingerprint(copy) == before
    suite = sorted((copy / "grading/hidden").glob("check_*.py"))[0]
    edit(suite, "\n", "\n# a stricter hidden test\n")
    after_suite = grading_fingerprint(copy)
    assert after_suite != before
    edit(copy / "normlab/gradcheck.py", "\n", "\n# a changed tolerance\n")
    assert grading_fingerprint(copy) not in (before, after_suite)


def test_a_listed_module_that_is_gone_is_named_with_what_to_do(tmp_path: Path) -> None:
    copy = copy_of_the_repository(tmp_path / "repo")
    (copy / "grading/pipeline/judge.py").unlink()
    with pytest.raises(FileNotFoundError, match=r"pipeline/judge\.py is listed in SCORING .* list what replaced it"):
        grading_fingerprint(copy)
