"""`python -m grading gradescope`: autograder.zip, unpacked into a folder that stands in for /autograder (source/,
submission/, results/), grades each sample student of the demo through run_autograder exactly as
`python -m grading autograde` graded them, in Gradescope's schema. Without bubblewrap (as in Gradescope's
containers) it grades as root with student code as a user of its own, which can neither read the solutions nor
write its score, and whose every process is gone before results.json is written; or, built to require the
sandbox, refuses.

setup.sh's installs need Gradescope's Ubuntu image as root, so source/.venv links to the environment running these
tests instead, and only setup.sh's last step (prepare) runs here. Runs without bubblewrap run as root in a container
of their own (unix_users.without_bwrap_as_root), where other users can reach this Python, as in Gradescope's."""
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import jsonschema
import nbformat
import pytest

from conftest import GRADESCOPE_SCHEMA, REPO, grades
from grading.assignment import PYFILE
from grading.authoring.samples import Answers, build_submission
from grading.commands.gradescope import BUILD_SETTINGS
from grading.settings import EXIT_MISCONFIGURED, Settings
from unix_users import DETACHES, without_bwrap_as_root

# Sample students whose uploads differ in kind: a folder answering everything (with bonus models), a zip with a
# renamed file, and the untouched release. (Every sample student's scores are the demo's, which test_demo.py checks;
# run_autograder's results.json is autograde's very file.)
STUDENTS = ["full_marks", "untouched", "zipped_resubmission"]
NO_BWRAP = {"GRADING_BWRAP": "/nonexistent/bwrap"}  # how the sandbox is told bubblewrap is not there (settings.BWRAP)
# Graded without bubblewrap: every answer right, and an attack besides (STEALS_AND_FORGES).
UNSANDBOXED = "right-but-forges"
NOTHING = "(nothing uploaded)"
# At the top of its batchnormalization.py, and in a cell of its notebook: it tries the solutions and the hidden suites
# on disk, and fails to import, losing Q1 and Q2, if it could read any; and it leaves a process in a session of its
# own that keeps writing its own score into results.json and over the grader's files, as one upload did when the
# zip built by default ran student code as root.
FORGER = DETACHES + """
import sys, time
while True:
    for path in sys.argv[1:]:
        try:
            open(path, "w").write('{"score": 999.0, "tests": []}')
        except OSError:
            pass
    time.sleep(0.01)
"""
STEALS_AND_FORGES = """
import glob, subprocess, sys
subprocess.Popen([sys.executable, "-c", {forger!r}, {results!r}, {hidden!r}, {reference!r}],
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait()
read = []
for path in [{reference!r}, {hidden!r}, *glob.glob({source!r} + "/**/batchnormalization.py", recursive=True)]:
    try:
        read.append(open(path).read())
    except OSError:
        pass
assert not any("BEGIN SOLUTION" in text or "def test_" in text for text in read), "read the solutions"
"""


def build(out, *options):
    """autograder.zip, built as docs/gradescope.md says."""
    completed = subprocess.run([sys.executable, "-m", "grading", "gradescope", "--out", str(out), *options],
                               cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out / "autograder.zip"


def unpack(archive, source):
    """Unzip as Gradescope does, keeping the modes the zip records; link source/.venv to the environment running
    these tests, where setup.sh would have created it."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16 & 0o777
            path = Path(zf.extract(info, source))
            if mode:
                path.chmod(mode)
    (source / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return source


# Runs share a thread pool: a thread's fork while another thread writes its copy of run_autograder hands the child
# that file open for writing, and the other thread's exec of it then fails with ETXTBSY ("Text file busy").
SPAWNING = threading.Lock()


def run_autograder(source, root, upload=None, env=None):
    """(completed process, results.json or None) of one run in a fresh root: source/ (a link to the unpacked zip),
    submission/ holding upload (a folder's contents, or one file), results/, and run_autograder copied to the root
    as Gradescope copies it. With NO_BWRAP in env, it runs as in a Gradescope container, which cannot run
    bubblewrap: as root, in a container of its own, which then waits two seconds and writes into root/left the
    PIDs of the student code's users' processes still running."""
    root.mkdir(parents=True)
    (root / "source").symlink_to(source, target_is_directory=True)
    if upload is not None and upload.is_dir():
        shutil.copytree(upload, root / "submission")
    else:
        (root / "submission").mkdir()
        if upload is not None:
            shutil.copy(upload, root / "submission")
    (root / "results").mkdir()
    command = [str(root / "run_autograder")]
    if env == NO_BWRAP:
        root.chmod(0o755)  # (pytest's folders are 0700; /autograder is not)
        command = [*without_bwrap_as_root([root, source]), "sh", "-c",
                   f'"$0"; status=$?; sleep 2; grep -l "^Uid:[[:space:]]*{Settings.separate_user_uid_base}[[:space:]]" '
                   '/proc/[0-9]*/status > "$1"; exit $status', *command, str(root / "left")]
    with SPAWNING:
        shutil.copy2(source / "run_autograder", root / "run_autograder")
        process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "AUTOGRADER_ROOT": str(root), **(env or {})})
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()  # as subprocess.run would, so that a run that hangs leaves nothing behind
        process.wait()
        raise
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    results = root / "results" / "results.json"
    return completed, json.loads(results.read_text()) if results.is_file() else None


def build_and_prepare(out):
    """autograder.zip unpacked, after setup.sh's last step, run as setup.sh runs it."""
    source = unpack(build(out), out / "source")
    prepared = subprocess.run([".venv/bin/python", "-m", "grading.commands.gradescope", "prepare"], cwd=source,
                              capture_output=True, text=True, timeout=300)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    return source


@pytest.fixture(scope="module")
def autograders(tmp_path_factory):
    """{"plain": source/, "strict": source/}: the zip as built by default, unpacked and prepared, and as built with
    --require-sandbox, only unpacked (it never gets as far as grading here). Built side by side."""
    out = tmp_path_factory.mktemp("gradescope")
    with ThreadPoolExecutor(2) as pool:
        plain = pool.submit(build_and_prepare, out / "plain")
        strict = pool.submit(lambda: unpack(build(out / "strict", "--require-sandbox"), out / "strict" / "source"))
        return {"plain": plain.result(), "strict": strict.result()}


def right_but_forges(source, root, bundle, folder):
    """The UNSANDBOXED upload, in folder, for a run in root of the autograder in source."""
    header = STEALS_AND_FORGES.format(forger=FORGER, results=str(root / "results" / "results.json"),
                                      hidden=str(source / "grading" / "hidden" / "check_q1_forward.py"),
                                      reference=str(source / PYFILE), source=str(source))

    def forges_in_a_cell(nb):
        nb.cells.insert(1, nbformat.v4.new_code_cell(header))

    build_submission(Answers(base="reference", file_edits={PYFILE: lambda text: header + "\n" + text},
                             notebook_edits=[forges_in_a_cell]), bundle, REPO, folder)
    return folder


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """The folders that stand in for /autograder, one per run of `runs`."""
    return tmp_path_factory.mktemp("roots")


@pytest.fixture(scope="module")
def runs(autograders, demo, bundle, roots, tmp_path_factory):
    """{student: (completed, results.json)} of run_autograder, two at a time, with bubblewrap on every sample
    student, uploaded as the demo submitted them (a folder's files, or one zip), and on an empty upload (NOTHING);
    without bubblewrap, on UNSANDBOXED."""
    demo_out, completed = demo
    assert completed.returncode == 0, completed.stderr[-3000:]
    attacker = right_but_forges(autograders["plain"], roots / UNSANDBOXED, bundle,
                                tmp_path_factory.mktemp("uploads") / UNSANDBOXED)
    with ThreadPoolExecutor(2) as pool:
        futures = {UNSANDBOXED: pool.submit(run_autograder, autograders["plain"], roots / UNSANDBOXED, attacker,
                                            NO_BWRAP)}
        futures |= {name: pool.submit(run_autograder, autograders["plain"], roots / name,
                                      next(demo_out.glob(f"submissions/{name}*"))) for name in STUDENTS}
        futures[NOTHING] = pool.submit(run_autograder, autograders["plain"], roots / "nothing")
        return {name: future.result() for name, future in futures.items()}


def test_the_zip_has_gradescopes_layout(autograders):
    source = autograders["plain"]
    with zipfile.ZipFile(source.parent / "autograder.zip") as zf:
        names = set(zf.namelist())
        modes = {info.filename: info.external_attr >> 16 & 0o777 for info in zf.infolist()}
    assert {"setup.sh", "run_autograder", "constraints.txt", "gradescope-settings.json"} <= names
    assert modes["setup.sh"] & modes["run_autograder"] & 0o111 == 0o111
    # the sources with solutions and the hidden suites travel; the grader's own tests and local leftovers do not
    assert {"batchnormalization.py", "norm.ipynb", "grading/commands/autograde.py", "grading/hidden/check_q1_forward.py",
            "normlab/checks.py", "tests/test_batchnorm.py"} <= names
    assert not [n for n in names if n.startswith(("grading/tests/", "grading/examples/", ".venv", "runs/",
                                                  "data/synthetic")) or "__pycache__" in n]
    settings = json.loads((source / "gradescope-settings.json").read_text())
    assert set(settings) == set(BUILD_SETTINGS) and settings["require_sandbox"] is False


def test_setup_sh_installs_the_tested_versions_and_prepares_the_course(autograders):
    source = autograders["plain"]
    for script in ("setup.sh", "run_autograder"):
        checked = subprocess.run(["bash", "-n", str(source / script)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    setup = (source / "setup.sh").read_text()
    assert "apt-get install -y --no-install-recommends bubblewrap" in setup
    assert f"python={'python%d.%d' % sys.version_info[:2]}" in setup
    for name in ("torch", "torchvision"):
        assert f'"{name}=={metadata.version(name).split("+")[0]}"' in setup
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup
    assert '-r "$source_dir/requirements.txt" -c "$source_dir/constraints.txt"' in setup
    assert setup.rstrip().endswith(".venv/bin/python -m grading.commands.gradescope prepare")  # as the fixture ran it
    pins = set((source / "constraints.txt").read_text().splitlines())
    for name in ("numpy", "nbgrader", "jupyter-client", "ipykernel", "jsonschema"):
        assert f"{name}=={metadata.version(name).split('+')[0]}" in pins
    assert (source / "gradescope-course" / "release" / "norm" / "norm.ipynb").is_file()


@pytest.mark.parametrize("student", STUDENTS)
def test_each_sample_student_gets_the_results_json_autograde_gives_them(runs, demo, roots, student):
    completed, results = runs[student]
    assert not (roots / student / "work" / "graded" / "report.html").exists()  # a cohort of one: no report
    assert (roots / student / "work" / "graded" / "grades.csv").is_file()
    assert completed.returncode == 0 and results is not None, completed.stdout[-3000:] + completed.stderr[-3000:]
    jsonschema.validate(results, GRADESCOPE_SCHEMA)
    demo_out, _ = demo
    autograded = json.loads((demo_out / "graded" / student / "results.json").read_text())
    assert {k: v for k, v in results.items() if k != "execution_time"} == \
        {k: v for k, v in autograded.items() if k != "execution_time"}
    assert f"{results['score']:.2f}" == grades(demo_out / "graded")[student]["total"]
    assert "WARNING: bubblewrap (bwrap) is missing" not in completed.stdout


def test_students_see_each_checks_name_score_and_verdict_only(runs):
    for student in STUDENTS:
        results = runs[student][1]
        assert results["visibility"] == "visible" and results["stdout_visibility"] == "hidden"
        assert "leaderboard" not in results
        for test in results["tests"]:
            assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
            assert test["visibility"] == "visible" and "\n" not in test["output"]
            assert len(test["output"]) <= Settings.verdict_chars and (test["output"] == "passed") == (test["status"] == "passed")
        assert ("Graded by hand, not part of this score: the written answers of Q4 no normalization (10 points"
                in results["output"]) and "Q5 ResNet for CIFAR (10 points" in results["output"]
        assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(80)


def test_without_bubblewrap_it_grades_as_usual_with_a_loud_warning_for_instructors(runs):
    completed, results = runs[UNSANDBOXED]
    assert completed.returncode == 0 and results is not None, completed.stdout[-3000:] + completed.stderr[-3000:]
    jsonschema.validate(results, GRADESCOPE_SCHEMA)
    assert "WARNING: bubblewrap (bwrap) is missing" in completed.stdout  # stdout: for instructors only
    assert "Student code runs as a user of its own, which cannot read source/ nor write the results" in \
        completed.stdout
    assert "Build the autograder with --require-sandbox to refuse grading instead" in completed.stdout
    assert "sandbox" not in results["output"]  # the machine's set-up is the instructors' business


def test_without_bubblewrap_student_code_can_neither_read_the_solutions_nor_set_its_score(runs, roots, autograders):
    """Every answer right, so the 80 points it gets say that it read nothing (it would fail to import); its
    processes could write neither results.json nor source/, and none was left when results.json was written (the
    test fails with the grader's kill of its user turned off)."""
    results, root = runs[UNSANDBOXED][1], roots / UNSANDBOXED
    assert results["score"] == 80 and json.loads((root / "results" / "results.json").read_text()) == results
    assert (root / "left").read_text() == ""  # two seconds later, in the container: no process of its user
    assert "BEGIN SOLUTION" in (autograders["plain"] / PYFILE).read_text()


def test_built_with_require_sandbox_it_refuses_to_grade_and_gives_gradescope_no_score(autograders, demo, tmp_path):
    """No results.json: Gradescope shows the run as failed, with no score, rather than a 0 that reads as a verdict."""
    source = autograders["strict"]
    assert json.loads((source / "gradescope-settings.json").read_text())["require_sandbox"] is True
    completed, results = run_autograder(source, tmp_path / "root", demo[0] / "submissions" / "full_marks", NO_BWRAP)
    assert completed.returncode == EXIT_MISCONFIGURED and results is None, completed.stdout[-3000:]
    assert "built with --require-sandbox: not grading" in completed.stdout


def test_an_upload_of_nothing_is_graded_as_nothing_submitted(runs):
    completed, results = runs[NOTHING]
    assert completed.returncode == 0 and results is not None, completed.stdout[-3000:] + completed.stderr[-3000:]
    jsonschema.validate(results, GRADESCOPE_SCHEMA)
    assert "the upload holds nothing" in completed.stdout
    assert results["score"] == 0 and "no batchnormalization.py was submitted" in results["output"]



def test_try_runs_the_zip_on_a_sample_as_gradescope_does_and_shows_the_students_view(autograders, demo, tmp_path,
                                                                                      capsys):
    """`gradescope --try` (here on the zip the module built): the demo's zipped student, one file uploaded, gets the
    results.json autograde gave them, shown as the student sees it after what the instructors see."""
    from grading.commands.gradescope import try_autograder
    upload = demo[0] / "submissions" / "zipped_resubmission.zip"
    assert try_autograder(autograders["plain"].parent / "autograder.zip", upload, tmp_path / "try") == 0
    shown = capsys.readouterr().out  # the transcript the TA asked for, on stdout
    instructors, student = shown.split("--- what the student sees ---")
    assert "the upload is one zip, zipped_resubmission.zip" in instructors
    assert student.strip().startswith("Autograder score: 60.00") and "[PASS] Q1 batchnorm_forward: " in student
    results = json.loads((tmp_path / "try" / "results" / "results.json").read_text())
    autograded = json.loads((demo[0] / "graded" / "zipped_resubmission" / "results.json").read_text())
    assert results["tests"] == autograded["tests"]
