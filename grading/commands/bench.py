"""Grading speed: this pipeline against sequential `nbgrader autograde`, on the same K submissions.

    python -m grading bench [--submissions K] [--jobs N] [--out DIR]

The submissions cycle through the sample students of grading/examples/ (but the hostile one, whose timeouts
measure the limits, not the grader). They carry no bonus models (only the demo exports them), so the bonus costs
nothing here. Three ways, each from a copy of the same course, built beforehand and not timed:
- this pipeline: `python -m grading autograde --jobs N`;
- nbgrader autograde: nbgrader's own autograde in that course, whose nbgrader_config.py plugs in the same
  judgement (sandbox, probes, hidden suites, bonus), one submission after another: the speed-up is the last line,
  speedup_vs_nbgrader=<its seconds over this pipeline's>;
- stock nbgrader: the same course with nbgrader's default configuration, which only executes each notebook in a
  kernel of its own, unsandboxed, and judges nothing: a floor, for reference.
A benchmark, not a test: run it on the machine you want figures for.
"""
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from grading.assignment import ASSIGNMENT, COURSE_ID, NOTEBOOK, PYFILE
from grading.authoring.samples import build_submission, load_example
from grading.commands.autograde import autograde
from grading.commands.release import build_bundle
from grading.settings import EXAMPLES, REPO, Settings

logger = logging.getLogger(__name__)


def make_submissions(bundle: Path, folder: Path, count: int) -> Path:
    """count submissions in folder, built from bundle as the sample students (but the hostile one) answer, in turn;
    returns folder."""
    examples = [p for p in sorted(EXAMPLES.iterdir()) if p.is_dir() and p.name != "hostile"]
    for index in range(count):
        example = examples[index % len(examples)]
        build_submission(load_example(example), bundle, REPO, folder / f"student{index:03d}-{example.name}")
    return folder


def time_nbgrader(release_course: Path, course: Path, submissions: Path, stock: bool = False) -> float:
    """Seconds of `nbgrader autograde` over submissions in a copy of release_course; with stock, under nbgrader's
    default configuration (but for keeping each student's batchnormalization.py)."""
    logger.debug(f"timing {'stock ' if stock else ''}nbgrader autograde in {course}")
    shutil.copytree(release_course, course)
    if stock:
        (course / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.CourseDirectory.course_id = {COURSE_ID!r}\n"
            f"c.Autograde.exclude_overwriting = {{{ASSIGNMENT!r}: [{PYFILE!r}]}}\n")
    for student in sorted(submissions.iterdir()):
        target = course / "submitted" / student.name / ASSIGNMENT
        target.mkdir(parents=True)
        for name in (PYFILE, NOTEBOOK):
            if (student / name).exists():
                shutil.copy(student / name, target / name)
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=course, env=environment,
                   capture_output=True, check=True)
    return time.perf_counter() - started


def bench(count: int, jobs: int, out: Path) -> None:
    """Grade count sample submissions the three ways, from copies of one course, and print the figures; the last
    line is speedup_vs_nbgrader=<nbgrader's seconds over this pipeline's>."""
    shutil.rmtree(out, ignore_errors=True)
    bundle = build_bundle(out / "release")
    submissions = make_submissions(bundle, out / "submissions", count)

    pipeline = out / "pipeline"
    shutil.copytree(out / "release" / "course", pipeline / "course")
    logger.debug(f"timing this pipeline in {pipeline}")
    started = time.perf_counter()
    autograde(submissions, pipeline, Settings(jobs=jobs), report=False, progress=False)
    ours = time.perf_counter() - started

    theirs = time_nbgrader(out / "release" / "course", out / "nbgrader", submissions)
    stock = time_nbgrader(out / "release" / "course", out / "stock", submissions, stock=True)

    cores = os.cpu_count() or 1
    print(f"{count} submissions on {cores} cores")
    print(f"this pipeline (--jobs {jobs}, sandboxed, Q1-Q5, no bonus models): {ours:7.1f} s, "
          f"{ours / count:5.2f} s per submission, {ours * cores / count:5.2f} s per submission per core")
    print(f"nbgrader autograde (sequential, the same judgement):       {theirs:7.1f} s, "
          f"{theirs / count:5.2f} s per submission")
    print(f"stock nbgrader (sequential, executes notebooks only):      {stock:7.1f} s, "
          f"{stock / count:5.2f} s per submission")
    print(f"speedup_vs_nbgrader={theirs / ours:.2f}")
