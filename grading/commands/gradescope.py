"""`python -m grading gradescope --out DIR`: DIR/autograder.zip, a Gradescope autograder that grades one submission
with `python -m grading autograde`'s own code, and the two steps that run inside it.

Gradescope unpacks the zip into /autograder/source (here: the repository's sources, solutions and hidden suites
included), runs setup.sh once when it builds the image, and run_autograder for every submission, with the student's
upload in /autograder/submission; whatever run_autograder writes to /autograder/results/results.json is the result,
and its stdout is shown to instructors only. Inside the zip:

    setup.sh                  apt: bubblewrap and the Python of the build; source/.venv from requirements.txt, pinned
                              by constraints.txt (torch and torchvision as CPU builds); then `prepare`
    run_autograder            source/.venv/bin/python -m grading.commands.gradescope run ROOT
    constraints.txt           name==version of every package of the environment that built the zip
    gradescope-settings.json  the grading settings given at build time (--require-sandbox, limits, timeouts)
    batchnormalization.py, norm.ipynb, docs/students.md, requirements.txt, tests/, data/README.md, data/download.py,
    normlab/, grading/ (without its own tests and the sample students)

Student code never sees source/: it runs in the same bubblewrap sandbox as under autograde, which mounts only the
Python environment, normlab/ and the student's own files. Where the container cannot run bubblewrap (Gradescope's
cannot make namespaces), run_autograder, which runs as root, runs student code as a user of its own
(isolation/users.py): `prepare` takes from other users every right to source/ but to normlab/ and .venv/, each run
keeps its work folder and results/ to root, the grader checks that this user can read and write none of it before
grading, and every process of that user is killed before results.json is written. It says so on stdout; built with
--require-sandbox, it grades nothing instead.

A submission the grader could not grade (a grader error, the canary failing, a missing sandbox that is required)
gets no results.json at all, and run_autograder exits with autograde's status (3, or 2 when misconfigured):
Gradescope then marks the run as failed, with no score, for the instructors to regrade once the machine is fixed,
instead of a 0 that looks like a verdict. What failed is on stdout, which only instructors see, whole: the file
that autograde writes for a grader error (OUT/errors/<student>.txt) or a failed canary, with its traceback, is
printed there, since the container and its work folder are gone after the run.
"""
import json
import logging
import os
import re
import shutil
import stat
import sys
import time
import traceback
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

from grading import logs
from grading.assignment import NOTEBOOK, PYFILE
from grading.isolation.sandbox import bwrap_works
from grading.nbgrader_support import prepare_nbgrader
from grading.records.results import write_atomic
from grading.settings import EXIT_GRADER_ERRORS, EXIT_MISCONFIGURED, REPO, ConfigurationError, Settings

# Not __name__, which is "__main__" when Gradescope runs this module: under "grading", which main() configures.
logger = logging.getLogger(f"{logs.ROOT}.commands.gradescope")

ZIP_NAME = "autograder.zip"
SETTINGS_FILE = REPO / "gradescope-settings.json"
# Built once by setup.sh; every run grades in a copy, so that generate_assignment (about 15 s) never runs per student.
PREPARED_COURSE = REPO / "gradescope-course"
STUDENT = "student"  # the id of the one student a run grades; Gradescope knows who it is
# What student code runs with, which other users may read when it runs as a user of its own (the rest of source/
# holds the solutions, the hidden suites and the prepared course)
SHARED_WITH_STUDENT_CODE = {"normlab", ".venv"}
# The settings fixed when the zip is built: how one submission is graded (parallelism, regrading and the bonus data
# have no meaning inside Gradescope; its late policy replaces ours).
BUILD_SETTINGS = ("require_sandbox", "timeout", "cell_timeout", "probe_timeout", "call_timeout", "memory_mb",
                  "cpu_seconds", "processes", "file_size_mb", "open_files", "output_kb")
# Folders left out: grading/tests/ and grading/examples/ (the grader's own tests, the sample students), caches.
SKIPPED = {"__pycache__", ".ipynb_checkpoints", "tests", "examples"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root and with internet access, when it builds the autograder image (Ubuntu).
# Written by grading/gradescope.py.
set -euxo pipefail
source_dir=/autograder/source
python=python{python_version}
export DEBIAN_FRONTEND=noninteractive
apt-get update
# bwrap is the sandbox of student code; prlimit and setpriv (util-linux) apply its limits and drop root.
apt-get install -y --no-install-recommends bubblewrap util-linux ca-certificates
# The grader's tests ran on Python {python_version}; the image may lack it, have a release candidate (Ubuntu 22.04's),
# or have it without venv: then take deadsnakes' build.
if ! "$python" -c 'import sys; assert sys.version_info.releaselevel == "final"' \\
        || ! "$python" -m venv "$source_dir/.venv"; then
    rm -rf "$source_dir/.venv"
    apt-get install -y --no-install-recommends software-properties-common gnupg
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
    apt-get install -y --no-install-recommends "$python" "$python-venv"
    "$python" -m venv "$source_dir/.venv"
fi
pip="$source_dir/.venv/bin/python -m pip"
$pip install --upgrade pip
# CPU builds: Gradescope has no GPU, and the CUDA builds are gigabytes larger. The versions are the tested ones.
$pip install --no-deps --index-url {torch_index} {torch_pins}
# constraints.txt is the whole environment that built the zip; grading/constraints.txt the versions the grader's
# private uses of its dependencies were tested with (pip refuses to install where the two disagree).
$pip install -r "$source_dir/requirements.txt" -c "$source_dir/constraints.txt" -c "$source_dir/grading/constraints.txt"
$pip check
chmod +x "$source_dir/run_autograder"
cd "$source_dir" && .venv/bin/python -m grading.commands.gradescope prepare
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission, as /autograder/run_autograder (a copy of source/run_autograder).
# Only tests and `python -m grading gradescope --try` set AUTOGRADER_ROOT, to stand a folder in for /autograder.
# Written by grading/gradescope.py.
set -eu
root="${AUTOGRADER_ROOT:-/autograder}"
cd "$root/source"
# The sandbox mounts the Python environment where it really is: resolve .venv if it is a link (tests link theirs).
venv="$(cd .venv && pwd -P)"
exec "$venv/bin/python" -m grading.commands.gradescope run "$root"
"""


def source_files(source_dir: Path = REPO) -> list[tuple[str, Path]]:
    """(path in the zip, file) of every source the autograder needs: the assignment with its solutions, what the
    course bundles for students, normlab/ and the grader with its hidden suites."""
    from grading.authoring.course import BUNDLED, STUDENT_README_SOURCE  # (the notebook machinery: only when needed)

    source_dir = Path(source_dir)
    found = []
    for entry in [PYFILE, NOTEBOOK, STUDENT_README_SOURCE, *BUNDLED, "grading"]:
        path = source_dir / entry
        if path.is_file():
            found.append((entry, path))
            continue
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(path)
            if file.is_file() and not SKIPPED & set(relative.parts[:-1]) and file.suffix != ".pyc":
                found.append((f"{entry}/{relative.as_posix()}", file))
    return found


def constraints() -> str:
    """constraints.txt: name==version of every distribution in the running environment (the one the grader's tests
    ran in), without local labels such as +cu130, so that the CPU builds of torch satisfy them too."""
    pins: dict[str, str] = {}
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name != "pip":  # setup.sh upgrades pip itself
            pins.setdefault(name, dist.version.split("+")[0])  # the first on sys.path is the one imported
    header = (f"# The environment grading/gradescope.py built this autograder in (Python "
              f"{sys.version_info.major}.{sys.version_info.minor}).\n")
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def setup_script() -> str:
    """setup.sh for this Python and these torch/torchvision versions."""
    pins = " ".join(f'"{name}=={metadata.version(name).split("+")[0]}"' for name in ("torch", "torchvision"))
    return SETUP_SH.format(python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
                           torch_index=TORCH_CPU_INDEX, torch_pins=pins)


def build_autograder(out_dir: Path, settings: Settings) -> Path:
    """Write out_dir/autograder.zip, with settings' BUILD_SETTINGS fixed in it; return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fixed = {name: value for name, value in settings.to_json().items() if name in BUILD_SETTINGS}
    generated = {"setup.sh": (setup_script(), 0o755), "run_autograder": (RUN_AUTOGRADER, 0o755),
                 "constraints.txt": (constraints(), 0o644),
                 SETTINGS_FILE.name: (json.dumps(fixed, indent=1) + "\n", 0o644)}
    target = out_dir / ZIP_NAME
    partial = out_dir / f".{ZIP_NAME}.partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (text, mode) in generated.items():
            info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
            info.external_attr = (stat.S_IFREG | mode) << 16  # run_autograder must stay executable
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text)
        for name, path in source_files():
            archive.write(path, name)
    os.replace(partial, target)
    logger.info(f"wrote {target}: upload it as the autograder of a Gradescope programming assignment"
                + (" (built with --require-sandbox)" if settings.require_sandbox else ""))
    return target


def build_settings() -> Settings:
    """The Settings run_autograder grades with: those fixed at build time, the defaults for the rest."""
    fixed = json.loads(SETTINGS_FILE.read_text()) if SETTINGS_FILE.is_file() else {}
    return Settings.from_json({**fixed, "jobs": 1})


def prepare_image() -> None:
    """setup.sh's last step: build the nbgrader course once, for every run to copy, and keep source/ to root but for
    what student code runs with (normlab/, the Python environment), should it run as a user of its own."""
    from grading.authoring.course import build_course

    build_course(PREPARED_COURSE)
    logger.info(f"prepared the nbgrader course in {PREPARED_COURSE}")
    for entry in REPO.iterdir():
        if entry.name not in SHARED_WITH_STUDENT_CODE:
            keep_to_owner(entry)
    logger.info(f"took every right to {REPO} from other users, but to "
                f"{', '.join(sorted(SHARED_WITH_STUDENT_CODE))}")


def keep_to_owner(path: Path) -> None:
    """chmod go-rwx path and everything in it; links are neither followed nor changed."""
    paths = [path]
    if path.is_dir() and not path.is_symlink():
        for folder, folders, files in os.walk(path):  # (os.walk enters no linked folder)
            paths += [Path(folder, name) for name in folders + files]
    for each in paths:
        if not each.is_symlink():
            each.chmod(each.stat().st_mode & 0o700)


def stage_submission(uploaded: Path, submissions: Path) -> str:
    """Make Gradescope's upload folder a one-student SUBMISSIONS folder for autograde: a lone .zip becomes
    submissions/<STUDENT>.zip, anything else (the notebook, the .py, runs/, the bonus files, folders) the folder
    submissions/<STUDENT>/. Files are hard-linked where possible, symbolic links copied as links and anything that is
    not a regular file left out; intake then takes what it knows, as for any other submission. Returns what was
    uploaded, in words for the instructors."""
    uploaded = Path(uploaded)
    submissions.mkdir(parents=True)
    entries = sorted(p for p in uploaded.iterdir() if not p.name.startswith(".")) if uploaded.is_dir() else []
    if len(entries) == 1 and entries[0].suffix.lower() == ".zip" and stat.S_ISREG(entries[0].lstat().st_mode):
        _link_or_copy(entries[0], submissions / f"{STUDENT}.zip")
        return f"the upload is one zip, {entries[0].name}"
    if uploaded.is_dir():
        shutil.copytree(uploaded, submissions / STUDENT, symlinks=True, copy_function=_link_or_copy)
    else:
        (submissions / STUDENT).mkdir()
    return "the upload holds " + (", ".join(p.name + "/" * p.is_dir() for p in entries) or "nothing")


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link source at target, or copy it where that fails; anything but a regular file is left out."""
    if not stat.S_ISREG(os.lstat(source).st_mode):
        return  # a FIFO or device would block or mislead a copy; intake would skip it anyway
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def run_autograder(root: Path) -> int:
    """run_autograder: grade root/submission with autograde, in root/work, and write root/results/results.json;
    returns autograde's exit status, and writes no results.json unless it is 0 (see the module's docstring). What
    it says is printed: stdout is what Gradescope shows the instructors, and all they have once the run is over."""
    root = Path(root)
    results = root / "results"
    (results / "results.json").unlink(missing_ok=True)
    settings = build_settings()
    if not bwrap_works():
        # autograde warns too; this says what it means here, and what to do about it.
        print("bubblewrap (bwrap) is missing or cannot run in this container: it needs user namespaces (or, as "
              "root, CAP_SYS_ADMIN), which many containers do not allow. "
              + ("The autograder was built with --require-sandbox: not grading." if settings.require_sandbox else
                 "Student code runs as a user of its own, which cannot read source/ nor write the results; it can "
                 "use the network. Build the autograder with --require-sandbox to refuse grading instead."))
        if settings.require_sandbox:
            return EXIT_MISCONFIGURED
    from grading.commands.autograde import autograde  # (seconds of imports: not before a refusal)
    from grading.pipeline.canary import CanaryFailed

    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)  # the grader's alone: a user of its own runs student code where bwrap cannot
    if os.geteuid() == 0 and results.is_dir():
        os.chown(results, 0, 0)
        results.chmod(0o755)  # results.json is the grader's to write
    out = work / "graded"
    try:
        print(stage_submission(root / "submission", work / "submissions"))
        if PREPARED_COURSE.is_dir():
            shutil.copytree(PREPARED_COURSE, out / "course", symlinks=True)
        else:
            print(f"no prepared course in {PREPARED_COURSE} (did setup.sh finish?); building one now")
        # No report.html: the run's folder goes with the container, and nobody reads a cohort of one.
        graded = autograde(work / "submissions", out, settings, progress=False, protected=[results],
                           cohort_report=False)
    except CanaryFailed as failed:
        details = failed.details
        print(f"error: {failed}\n" + (details.read_text(encoding="utf-8") if details and details.is_file() else ""))
        return EXIT_MISCONFIGURED
    except ConfigurationError as error:
        print(f"error: {error}")
        return EXIT_MISCONFIGURED
    except Exception:  # the grader's own failure: the traceback is for the instructors
        traceback.print_exc(file=sys.stdout)
        return EXIT_GRADER_ERRORS
    if not graded:
        print(f"ERROR: nothing to grade was found in {root / 'submission'}")
        return EXIT_GRADER_ERRORS
    if graded[0].error:
        told = out / graded[0].error_file
        print(f"ERROR: {graded[0].error}\n" + (told.read_text(encoding="utf-8") if told.is_file() else ""))
        return EXIT_GRADER_ERRORS
    # The very results.json autograde writes for every student: Gradescope and autograde cannot disagree.
    write_atomic(results / "results.json", (out / STUDENT / "results.json").read_text(encoding="utf-8"))
    return 0


def try_autograder(archive: Path, upload: Path, root: Path) -> int:
    """Do with archive (autograder.zip) what Gradescope does with one upload, in root, which stands in for
    /autograder: unzip it into root/source keeping its modes, stand this Python environment in for what setup.sh
    installs (source/.venv links to it), run setup.sh's last step (prepare), put upload (a folder of the files a
    student hands in, or one file such as a zip) into root/submission, and run run_autograder as Gradescope does.
    Prints what instructors see (its stdout) and then what the student sees (results.json); returns
    run_autograder's exit status."""
    import subprocess

    upload, root = Path(upload), Path(root)
    if not upload.exists():
        raise ConfigurationError(f"--try {upload}: no such file or folder; pass a folder of the files a student "
                                 "uploads (batchnormalization.py, norm.ipynb, ...) or one zip of them")
    shutil.rmtree(root, ignore_errors=True)
    source = root / "source"
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, source))
            if info.external_attr >> 16 & 0o777:
                path.chmod(info.external_attr >> 16 & 0o777)  # run_autograder and setup.sh stay executable
    (source / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    logger.info(f"unpacked {archive} into {source}; preparing the course as setup.sh's last step does")
    prepared = subprocess.run([str(source / ".venv" / "bin" / "python"), "-m", "grading.commands.gradescope",
                               "prepare"], cwd=source, capture_output=True, text=True)
    if prepared.returncode:
        logger.error(f"preparing the course failed (exit status {prepared.returncode}):\n"
                     + (prepared.stdout + prepared.stderr).rstrip())
        return prepared.returncode
    if upload.is_dir():
        shutil.copytree(upload, root / "submission", symlinks=True)
    else:
        (root / "submission").mkdir()
        shutil.copy(upload, root / "submission")
    (root / "results").mkdir()
    root.chmod(0o755)  # as /autograder is: where student code runs as a user of its own, it must reach source/.venv
    shutil.copy2(source / "run_autograder", root / "run_autograder")  # Gradescope runs its copy of it
    completed = subprocess.run([str(root / "run_autograder")], cwd=root, capture_output=True, text=True,
                               env={**os.environ, "AUTOGRADER_ROOT": str(root)})
    print("--- run_autograder's stdout (on Gradescope, instructors only) ---")
    print((completed.stdout + completed.stderr).rstrip())
    results = root / "results" / "results.json"
    print("--- what the student sees ---")
    print(student_view(json.loads(results.read_text())) if results.is_file() else
          f"no results.json (exit status {completed.returncode}): Gradescope shows the run as failed, with no score, "
          "until you regrade it; stdout above says what failed")
    return completed.returncode


def student_view(results: dict[str, Any]) -> str:
    """results.json as Gradescope shows it to a student, in text: the score, the output, then each test. Control
    characters (a verdict may quote what student code said) are shown escaped, so that none drives the terminal."""
    lines = [f"Autograder score: {results['score']:.2f}" if "score" in results else "Autograder score: none", "",
             results.get("output", ""), ""]
    for test in results.get("tests", []):
        mark = "PASS" if test.get("status") == "passed" else "FAIL"
        lines.append(f"[{mark}] {test['name']} ({test['score']:g} / {test['max_score']:g})"
                     + (f"\n       {test['output']}" if test.get("output") and test["output"] != "passed" else ""))
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in "\n".join(lines).rstrip())


def main(argv: list[str] | None = None) -> int:
    """The two steps inside the Gradescope image: `prepare` (setup.sh's last) and `run ROOT` (run_autograder's)."""
    argv = sys.argv[1:] if argv is None else argv
    logs.configure(logs.DEFAULT, stdout=True)  # Gradescope shows instructors stdout: the grader's logs go there too
    prepare_nbgrader()
    if argv == ["prepare"]:
        prepare_image()
        return 0
    if len(argv) == 2 and argv[0] == "run":
        return run_autograder(Path(argv[1]))
    print("usage: python -m grading.commands.gradescope prepare | run AUTOGRADER_ROOT   (inside the Gradescope "
          "autograder; build it with python -m grading gradescope)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
