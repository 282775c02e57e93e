"""Grading speed: this pipeline against plain sequential `nbgrader autograde`, on the same K submissions.

    python -m grading.bench [--submissions K] [--jobs N] [--out DIR]

The submissions cycle through the sample students of grading/examples/ (but the hostile one, whose timeouts
measure the limits, not the grader). Both ways start from the same course, built beforehand and not timed.
nbgrader executes the notebooks only, in the grader's own kernel; this pipeline also runs the hidden Q1/Q2 suite,
the bonus check and the sandbox, so it does more work per submission. The last line is
speedup_vs_nbgrader=<nbgrader's seconds over this pipeline's>. A benchmark, not a test: run it on the machine you
want figures for.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from grading.answers import build_submission, load_example
from grading.autograde import autograde
from grading.demo import EXAMPLES
from grading.release import build_bundle
from grading.settings import ASSIGNMENT, NOTEBOOK, PYFILE, REPO, Settings


def make_submissions(bundle, folder, count):
    examples = [p for p in sorted(EXAMPLES.iterdir()) if p.is_dir() and p.name != "hostile"]
    for index in range(count):
        example = examples[index % len(examples)]
        build_submission(load_example(example), bundle, REPO, folder / f"student{index:03d}-{example.name}")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=8, help="K, submissions to grade (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="this pipeline's --jobs (default: cores)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="scratch folder (default: %(default)s)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    bundle = build_bundle(args.out / "release")
    submissions = make_submissions(bundle, args.out / "submissions", args.submissions)

    pipeline = args.out / "pipeline"
    shutil.copytree(args.out / "release" / "course", pipeline / "course")
    started = time.perf_counter()
    autograde(submissions, pipeline, Settings(jobs=args.jobs), log=lambda *_: None, progress=False)
    ours = time.perf_counter() - started

    course = args.out / "nbgrader"
    shutil.copytree(args.out / "release" / "course", course)
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
    theirs = time.perf_counter() - started

    count, cores = args.submissions, os.cpu_count()
    print(f"{count} submissions on {cores} cores")
    print(f"this pipeline (--jobs {args.jobs}, sandboxed, Q1-Q5 and bonus): {ours:7.1f} s, "
          f"{ours / count:5.2f} s per submission, {ours * cores / count:5.2f} s per submission per core")
    print(f"nbgrader autograde (sequential, notebook only):            {theirs:7.1f} s, "
          f"{theirs / count:5.2f} s per submission")
    print(f"speedup_vs_nbgrader={theirs / ours:.2f}")


if __name__ == "__main__":
    main()
