"""Failures of the grading machine, made on purpose: `install(name)` patches the grader in this process before it
runs (python -c "import faults; faults.install(...); grading.__main__.main(...)"), and the forked grading children
inherit the patches. Each fault strikes only the students whose id names it, so the canary and the others are
graded as usual; none of them changes what a student's code does."""
import os
import shutil
import signal
import sys
from pathlib import Path

from grading.nbgrader_support import prepare_nbgrader

prepare_nbgrader()

from grading.isolation.kernel import SandboxedExecute  # noqa: E402
from grading.isolation.sandbox import Sandbox  # noqa: E402
from grading.isolation.zygote import Zygote  # noqa: E402
from grading.pipeline import hidden_suites, parallel  # noqa: E402
from grading.settings import HIDDEN  # noqa: E402

FAILING_BWRAP = ["/bin/sh", "-c", "echo 'bwrap: Creating new namespace failed: Operation not permitted' >&2; exit 1"]


def kernel_fails(times):
    """The next `times` kernels this process starts fail before they answer."""
    start = SandboxedExecute._start_kernel
    left = [times]

    def failing(self):
        if left[0] > 0:
            left[0] -= 1
            raise RuntimeError("Kernel died before replying to kernel_info")
        return start(self)
    SandboxedExecute._start_kernel = failing


def marked_restarts():
    """[whether a kernel is being restarted now], kept up to date from now on."""
    restart, restarting = SandboxedExecute._restart, [False]

    def marked(self):
        restarting[0] = True
        try:
            return restart(self)
        finally:
            restarting[0] = False
    SandboxedExecute._restart = marked
    return restarting


def restart_fails(times):
    """The next `times` kernels this process starts to replace one that died fail before they answer."""
    start, restarting, left = SandboxedExecute._start_kernel, marked_restarts(), [times]

    def failing(self):
        if restarting[0] and left[0] > 0:
            left[0] -= 1
            raise RuntimeError("Kernel died before replying to kernel_info")
        return start(self)
    SandboxedExecute._start_kernel = failing


def replay_bug():
    """A bug of the grader in the replay of a restarted kernel's cells: an AttributeError, as a typo would raise."""
    quiet, restarting = SandboxedExecute._quiet, marked_restarts()

    def buggy(self, code, timeout):
        if restarting[0]:
            raise AttributeError("'SandboxedExecute' object has no attribute 'replayed' (made by faults.py)")
        return quiet(self, code, timeout)
    SandboxedExecute._quiet = buggy


def zygote_killed(job, slot):
    """The slot's zygote is killed from outside just before this student's kernel is forked from it."""
    fork = Zygote.fork_kernel

    def killed_first(self, *args):
        members = self._members()
        if members:
            os.kill(members[-1], signal.SIGKILL)
        return fork(self, *args)
    Zygote.fork_kernel = killed_first


def bwrap_fails():
    """bubblewrap fails for every sandbox started from now on, and no kernel is forked from a zygote."""
    Sandbox.wrap = lambda self, argv: FAILING_BWRAP
    Zygote.fork_kernel = lambda self, *args: None


FAULTS = {  # student id: what happens in that student's grading child, before it grades
    "fault-kernel-once": lambda job, slot: kernel_fails(1),
    "fault-kernel-twice": lambda job, slot: kernel_fails(2),
    "fault-zygote-killed": zygote_killed,
    "fault-bwrap-fails": lambda job, slot: bwrap_fails(),
    "fault-child-killed": lambda job, slot: os.kill(os.getpid(), signal.SIGKILL),
    # for students whose notebook ends its own kernel once, so that the grader restarts it
    "fault-restart-once": lambda job, slot: restart_fails(1),
    "fault-restart-fails": lambda job, slot: restart_fails(3),
    "fault-replay-bug": lambda job, slot: replay_bug(),
}


def per_student():
    grade = parallel.grade

    def faulty(submission, intake, run, slot):
        if submission.student_id in FAULTS:
            FAULTS[submission.student_id](submission, slot)
        return grade(submission, intake, run, slot)
    parallel.grade = faulty


def inconsistent_suite():
    """The hidden Q1 suite is worth 21 points instead of 20: a copy of the suites, in FAULT_SCRATCH, with one more
    check."""
    copy = Path(os.environ["FAULT_SCRATCH"]) / "hidden"
    shutil.copytree(HIDDEN, copy)
    check = copy / "check_q1_forward.py"
    check.write_text(check.read_text() + "\n\n@pytest.mark.points(1)\ndef test_one_point_too_many(student):\n"
                                         "    pass\n")
    hidden_suites.HIDDEN = copy
    hidden_suites.PYTEST_ARGS = [*hidden_suites.PYTEST_ARGS[:-1], str(copy)]


def install(name):
    {"per-student": per_student, "inconsistent-suite": inconsistent_suite}[name]()


if __name__ == "__main__":
    install(sys.argv[1])
    from grading.__main__ import main
    sys.exit(main(sys.argv[2:]))
