"""`python -m grading release`: the bundle a student gets, and a self-check that refuses a bad one."""
import json
import re
import shutil
import zipfile

import pytest

from conftest import REPO
from grading.commands import release
from grading.authoring.regions import secret_lines
from grading.authoring.course import build_course, student_readme
from grading.assignment import BONUS_THRESHOLDS, CODE_STUB
from grading.settings import Settings

EXPECTED = {"batchnormalization.py", "norm.ipynb", "README.md", "requirements.txt", "tests/conftest.py",
            "tests/test_batchnorm.py", "data/README.md", "data/download.py"}


@pytest.fixture(scope="module")
def released(demo):
    """The release that `python -m grading demo` made with `python -m grading release`'s code, its check included
    (the release command's own arguments are tested by test_readme): (its folder, the completed demo)."""
    out, completed = demo
    return out / "release", completed


def test_release_writes_the_bundle_and_its_check_passes(released):
    out, completed = released
    assert completed.returncode == 0 and "release check passed" in completed.stderr, completed.stderr[-2000:]
    bundle = out / "norm"
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert EXPECTED <= files and {f for f in files if f.startswith("normlab/")} == \
        {f"normlab/{p.name}" for p in (REPO / "normlab").glob("*.py")}
    assert not any(f.startswith("grading") or "hidden" in f for f in files)
    with zipfile.ZipFile(out / "norm.zip") as archive:
        assert {name.removeprefix("norm/") for name in archive.namelist()} == files


def test_the_student_files_carry_stubs_with_findable_markers(released):
    bundle = released[0] / "norm"
    stub = (bundle / "batchnormalization.py").read_text()
    assert stub.count(CODE_STUB.splitlines()[0]) == 3 and stub.count("raise NotImplementedError") == 3
    assert "题目1" in stub and "Q1 (train mode)" in stub
    notebook = json.loads((bundle / "norm.ipynb").read_text())
    sources = ["".join(c["source"]) for c in notebook["cells"]]
    assert sum(CODE_STUB.splitlines()[0] in s for s in sources) == 4
    assert sum(s.strip() == "请在此作答 / YOUR ANSWER HERE" for s in sources) == 2
    readme = (bundle / "README.md").read_text()
    assert readme.startswith("# 归一化层作业") and "For TAs" not in readme


def test_the_leak_check_catches_a_planted_solution_line(released, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(released[0] / "norm", out / "norm")
    shutil.copy(released[0] / "norm.zip", out / "norm.zip")
    secrets = secret_lines(REPO)
    assert release.find_leaks(out / "norm", out / "norm.zip", secrets) == []
    line = "return nn.GroupNorm(groups_for[norm_type], num_channels)"
    assert line in secrets
    helper = out / "norm" / "normlab" / "checks.py"
    helper.write_text(helper.read_text() + f"\n    {line}\n")
    notebook = out / "norm" / "norm.ipynb"
    data = json.loads(notebook.read_text())
    data["cells"][0]["source"].append("\n### BEGIN SOLUTION\n")
    notebook.write_text(json.dumps(data))
    problems = release.find_leaks(out / "norm", out / "norm.zip", secrets)
    assert any("normlab/checks.py" in p and "ships a solution or hidden-test line" in p for p in problems)
    assert any("norm.ipynb" in p and "marker" in p for p in problems)


def test_the_check_catches_public_tests_that_pass_on_the_stubs(released, tmp_path):
    bundle = tmp_path / "norm"
    shutil.copytree(released[0] / "norm", bundle)
    (bundle / "tests" / "test_trivial.py").write_text("def test_nothing():\n    assert True\n")
    assert release.public_test_problems(bundle) == ["public test test_nothing does not fail on the stubs"]


def test_the_check_refuses_sources_that_miss_points(released, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "release", "grading-out", "runs",
                                                               "data"))
    pyfile = source / "batchnormalization.py"
    pyfile.write_text(pyfile.read_text().replace("dbeta = dout.sum(axis=0)", "dbeta = dout.mean(axis=0)"))
    shutil.copytree(released[0] / "course", tmp_path / "check" / "course")  # as release() leaves it beside
    problems = release.grading_problems(released[0] / "norm", tmp_path / "check", Settings(jobs=2), source=source)
    assert len(problems) == 1 and problems[0].startswith("the source earns 12 of 20 autograded points on q2")


def test_a_new_course_is_copied_only_from_a_template_built_from_the_same_sources(released, tmp_path):
    template = tmp_path / "template"
    shutil.copytree(released[0] / "course", template)
    (template / "from-the-template").write_text("")
    build_course(tmp_path / "new", template=template)
    assert (tmp_path / "new" / "from-the-template").is_file()
    shutil.copytree(released[0] / "course", tmp_path / "graded-in")  # a course in use is never replaced
    build_course(tmp_path / "graded-in", template=template)
    assert not (tmp_path / "graded-in" / "from-the-template").exists()
    (template / ".fingerprint").write_text("built from other sources")
    build_course(tmp_path / "rebuilt", template=template)
    assert not (tmp_path / "rebuilt" / "from-the-template").exists()
    assert (tmp_path / "rebuilt" / "release" / "norm" / "norm.ipynb").is_file()


def test_the_readme_states_the_bonus_thresholds_the_grader_uses():
    readme = student_readme(REPO)
    for dataset, (floor, target, points) in BONUS_THRESHOLDS.items():
        name = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}[dataset]
        assert re.search(rf"{name} target {target:.0%}, floor {floor:.0%}", readme), dataset
        assert f"{points:g} points at or above the target" in readme
