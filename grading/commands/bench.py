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

    python -m grading bench --profile [--submissions K] [--out DIR]

Where a submission's time goes instead: the K submissions graded one at a time (--jobs 1), each stage's wall and CPU
seconds per submission (grading/stages.py records them in the process the stage runs in), then what a run costs
before its first student: a fresh interpreter's imports, the zygotes, the canary, the run's set-up.
"""
import logging
import os
import resource
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
from grading.stages import SEPARATOR, Stage, record, reset

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


# The stages of a submission that no grader can skip, its floor: its kernel must start and its cells must run (the
# cells are the notebook stage's own time).
NOTEBOOK_STAGE = "child/grade/the JUDGE chain/judge/the notebook"
KERNEL_STAGE = f"{NOTEBOOK_STAGE}/start the kernel"
PER_RUN = "per run: "


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_interpreter(code: str) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh interpreter that runs code, as a command of the grader starts."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - started, children_cpu() - cpu


def tree(stages: dict[str, Stage]) -> dict[str, Stage]:
    """stages in the order they began, each under its parent, with every parent present (one that ran no code of
    its own, such as a process's group, sums its children) and, after a parent's children, its own time outside
    them, named by its rest."""
    begun: list[str] = []  # every path and its prefixes, in the order they first appear: a parent before its own
    for path in stages:
        parts = path.split(SEPARATOR)
        begun += [p for p in (SEPARATOR.join(parts[:depth]) for depth in range(1, len(parts) + 1)) if p not in begun]

    def inner(parent: str | None) -> list[str]:
        return [p for p in begun if (p.rpartition(SEPARATOR)[0] or None) == parent]

    ordered: dict[str, Stage] = {}

    def visit(path: str) -> Stage:
        own = stages.get(path)
        ordered[path] = own if own is not None else Stage()
        children = [visit(child) for child in inner(path)]
        if own is None:
            ordered[path] = Stage(max((s.count for s in children), default=0), sum(s.wall for s in children),
                                  sum(s.cpu for s in children))
        elif own.rest and children:
            ordered[path + SEPARATOR + own.rest] = Stage(own.count, own.wall - sum(s.wall for s in children),
                                                         own.cpu - sum(s.cpu for s in children))
        return ordered[path]

    for top in inner(None):
        visit(top)
    return ordered


def table(rows: dict[str, Stage], per: int, whole: float) -> str:
    """rows as lines of stage (indented under its parent), runs, wall s, CPU s and share of whole, each divided by
    per."""
    lines = [f"{'stage':<62} {'count':>6} {'wall s':>8} {'CPU s':>8} {'share':>6}"]
    for path, entry in rows.items():
        name = "  " * path.count(SEPARATOR) + path.rsplit(SEPARATOR, 1)[-1]
        lines.append(f"{name[:62]:<62} {entry.count / per:6.1f} {entry.wall / per:8.3f} {entry.cpu / per:8.3f} "
                     f"{entry.wall / per / whole if whole else 0:6.1%}")
    return "\n".join(lines)


def profile(count: int, out: Path) -> None:
    """Grade count sample submissions one at a time and print where a submission's time goes, stage by stage, then
    what the run cost before its first student, and the floor."""
    shutil.rmtree(out, ignore_errors=True)
    bundle = build_bundle(out / "release")
    submissions = make_submissions(bundle, out / "submissions", count)

    imports = time_interpreter("import grading.__main__, grading.commands.autograde, grading.pipeline.parallel")
    torch = time_interpreter("import torch")

    empty = out / "empty"
    empty.mkdir()
    shutil.copytree(out / "release" / "course", out / "setup" / "course")
    started, cpu = time.perf_counter(), time.process_time()
    autograde(empty, out / "setup", Settings(jobs=1), report=False, progress=False)
    setup = Stage(1, time.perf_counter() - started, time.process_time() - cpu)

    shutil.copytree(out / "release" / "course", out / "pipeline" / "course")
    reset()
    started, cpu, children = time.perf_counter(), time.process_time(), children_cpu()
    autograde(submissions, out / "pipeline", Settings(jobs=1), report=False, progress=False)
    wall, cpu, children = time.perf_counter() - started, time.process_time() - cpu, children_cpu() - children
    stages = tree(record())

    per_submission = {p: s for p, s in stages.items() if not p.startswith(PER_RUN)}
    tops = [s for p, s in per_submission.items() if SEPARATOR not in p]
    submission_wall = sum(s.wall for s in tops) / count
    per_run = {p: s for p, s in stages.items() if p.startswith(PER_RUN) and SEPARATOR not in p}
    per_run[f"{PER_RUN}a fresh interpreter: the grader's imports"] = Stage(1, *imports)
    per_run[f"{PER_RUN}a fresh interpreter: import torch (alone)"] = Stage(1, *torch)
    per_run[f"{PER_RUN}set-up and reports of a run with no student"] = setup
    run_wall = sum(s.wall for p, s in per_run.items() if "torch (alone)" not in p)
    outside = wall - count * submission_wall - sum(s.wall for p, s in stages.items() if p in per_run)

    kernel, notebook = stages.get(KERNEL_STAGE, Stage()), stages.get(NOTEBOOK_STAGE, Stage())
    floor = notebook.wall / count
    probes = [s for p, s in stages.items() if p.startswith("child/") and p.endswith("probes of the kernel")]
    print(f"where a submission's time goes: {count} submissions graded one at a time (--jobs 1) on "
          f"{os.cpu_count()} cores; seconds per submission, CPU of the process the stage runs in")
    print(table(per_submission, count, submission_wall))
    print(f"{'a submission, all stages':<62} {'':>6} {submission_wall:8.3f}")
    print("\nper run, before the first student (once; the canary is the reference solution, graded first):")
    print(table(per_run, 1, run_wall))
    print(f"\nthe whole run: {wall:.1f} s wall, {cpu + children:.1f} s CPU (the main process and the children it "
          f"waited for); {wall / count:.2f} s per submission with the per-run costs; {outside:.1f} s of it in no "
          "stage (the run's set-up, its report, the main process's wait for each child)")
    print(f"probes of the kernel: {sum(s.count for s in probes) / count:.0f} per submission, "
          f"{sum(s.wall for s in probes) / count:.3f} s")
    print(f"floor: starting the kernel ({kernel.wall / count:.3f} s) and the student's cells "
          f"({(notebook.wall - kernel.wall) / count:.3f} s) = {floor:.3f} s of {submission_wall:.3f} s per "
          f"submission ({floor / submission_wall if submission_wall else 0:.0%}): the rest is the grader's own")
