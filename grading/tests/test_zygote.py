"""Kernels forked from a slot's zygote (grading/isolation/zygote.py): each looks like a fresh kernel, nothing one submission
leaves behind reaches the next on the same slot, and a zygote that a student stops or kills costs the next student
nothing."""
import errno
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import nbformat
import pytest

from conftest import REFERENCE, autograde, reference_with_added_cell, results, submit
from grading.isolation import tree
from grading.isolation.kernel import SandboxedExecute
from grading.isolation.sandbox import Limits, Sandbox, bwrap_works, python_roots
from grading.settings import NORMLAB, REPO, Settings
from grading.isolation.zygote import ForkedKernel, Zygote, Zygotes

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")

LIMITS = Limits.from_settings(Settings())
SLOT = 5  # slots of their own, apart from those of other tests in this process
LEAVES_A_KILLER = """
import os, subprocess, sys
daemon = '''
import os, signal, sys, time
if os.fork():
    os._exit(0)
os.setsid()
spared = {os.getpid(), 1, 2, int(sys.argv[1])}
while True:
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in spared:
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.01)
'''
subprocess.Popen([sys.executable, "-c", daemon, str(os.getpid())], start_new_session=True).wait()
for path in ("/tmp/left-in-tmp", "/dev/shm/left-in-shm", "../left-in-the-slot"):
    try:
        open(path, "w").write("for the next student")
    except PermissionError:  # /dev/shm is not writable in every sandbox
        pass
os.makedirs("/tmp/locked/inside")
os.chmod("/tmp/locked", 0o500)
print("planted")
"""
LOOKS_AROUND = """
import json, os
print(json.dumps({"tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm")),
                  "slot": sorted(os.listdir("..")), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                  "me": os.getpid()}))
"""

ZYGOTES = Zygotes()  # this module's grading run: its zygotes, one per slot and limits


@pytest.fixture(scope="module", autouse=True)
def zygotes_closed() -> Iterator[None]:
    """The module's zygotes end with it, as a run's end with the run."""
    yield
    ZYGOTES.close()


def start_cells(zygote: Zygote, cells: Sequence[str],
                slot: int) -> tuple[SandboxedExecute, nbformat.NotebookNode, list[str], bool]:
    """Run cells in a notebook kernel the way the grader does, forked from zygote when it can be, and leave the
    kernel running: (the executor, the notebook run, the grader's notes, whether the kernel was forked)."""
    folder = zygote.new_folder()  # None once the zygote is retired: then, as in judge.py, a cold kernel
    executor = SandboxedExecute(zygote=zygote if folder else None)
    executor.sandbox = Sandbox(folder or tempfile.mkdtemp(prefix="cold-kernel-", dir="/tmp"), LIMITS, slot)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells])
    notes = executor.start(nb, {"metadata": {"path": str(executor.sandbox.workdir)}}, time.monotonic() + 120, 60)
    return executor, nb, notes, isinstance(executor.km.provisioner.process, ForkedKernel)


def run_cells(zygote: Zygote, *cells: str, slot: int = SLOT) -> tuple[nbformat.NotebookNode, list[str], bool]:
    """start_cells, then stop the kernel (and remove a cold kernel's folder): (the notebook run, the grader's notes,
    whether the kernel was forked)."""
    executor, nb, notes, forked = start_cells(zygote, cells, slot)
    executor.stop()
    if executor.sandbox.workdir != zygote.folder:
        tree.remove(executor.sandbox.workdir)
    return nb, notes, forked


def run_kernel(zygote: Zygote, *cells: str, slot: int = SLOT) -> tuple[list[str], bool]:
    """run_cells for cells that must run without an error: (what each cell printed, whether the kernel was
    forked)."""
    nb, notes, forked = run_cells(zygote, *cells, slot=slot)
    assert notes == []
    printed = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells]
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return printed, forked


def mounted_under_tmp(zygote: Zygote) -> list[str]:
    """The entries of the sandbox's /tmp that the grader mounts things through: the slot's folder, and the course
    and the Python environment where they live under /tmp (as in a fresh clone there)."""
    mounted = [*python_roots(), NORMLAB, zygote.stage]
    return sorted({Path(path).parts[2] for path in mounted if Path(path).parts[1:2] == ("tmp",)})


@pytest.fixture
def zygote() -> Zygote:
    return ZYGOTES.for_slot(SLOT, LIMITS)  # the same one from test to test, unless a test left it retired


def test_a_forked_kernel_is_set_up_like_a_fresh_one(zygote: Zygote) -> None:
    seen = []
    for _ in range(2):
        printed, forked = run_kernel(zygote, """
import json, os, sys
import numpy
print(json.dumps({"cwd": os.getcwd(), "home": os.environ["HOME"], "mode": os.environ.get("NBGRADER_EXECUTION"),
                  "data": os.environ["NORMLAB_DATA"], "path": sys.path, "ppid": os.getppid(),
                  "threads": os.environ["OMP_NUM_THREADS"], "draw": numpy.random.rand(), "argv": sys.argv,
                  "torch": __import__("torch").rand(1).item(), "files": os.listdir()}))
""", "open('mine.py', 'w').write('ANSWER = 42')\nimport mine\nprint(mine.ANSWER)")
        assert forked and printed[1].strip() == "42"
        seen.append(json.loads(printed[0]))
    for kernel in seen:
        assert kernel["home"] == kernel["cwd"] and kernel["data"] == kernel["cwd"] + "/data"
        assert kernel["mode"] == "autograde" and kernel["threads"] == "1" and kernel["ppid"] == 2
        # the working folder as a fresh kernel has it: "" once, just before the first site-packages (IPython's
        # InteractiveShellApp.init_path), never as an absolute path, which would be the zygote's folder
        first_site = next(i for i, entry in enumerate(kernel["path"]) if Path(entry).name == "site-packages")
        assert kernel["path"].count("") == 1 and kernel["path"].index("") == first_site - 1, kernel["path"]
        assert kernel["cwd"] not in kernel["path"]
    assert seen[0]["path"] == seen[1]["path"]  # nothing piles up from kernel to kernel
    assert "mine.py" not in seen[1]["files"]  # the folder is emptied before each submission's kernel
    # each kernel seeds numpy and torch afresh, as a new process would
    assert seen[0]["draw"] != seen[1]["draw"] and seen[0]["torch"] != seen[1]["torch"]
    assert seen[0]["argv"][0].endswith("ipykernel_launcher.py")


def test_nothing_a_kernel_leaves_behind_reaches_the_next(zygote: Zygote) -> None:
    printed, forked = run_kernel(zygote, LEAVES_A_KILLER)
    assert forked and printed[0].strip() == "planted"
    printed, forked = run_kernel(zygote, LOOKS_AROUND)
    seen = json.loads(printed[0])
    assert forked
    # in /tmp: the kernel's own IPython folder (IPYTHONDIR) and the grader's mount points, nothing left before it
    assert seen["tmp"] == sorted([".ipython", *mounted_under_tmp(zygote)]) and seen["shm"] == []
    assert seen["slot"] == ["kernel"]
    assert seen["pids"] == sorted({1, 2, seen["me"]})  # bwrap's init, the zygote and this kernel: the killer is gone


def test_the_zygote_is_out_of_the_kernels_reach(zygote: Zygote) -> None:
    printed, forked = run_kernel(zygote, """
import os
for part in ("mem", "environ", "maps", "fd", "cwd"):
    path = f"/proc/{os.getppid()}/{part}"
    try:
        os.listdir(path) if part in ("fd", "cwd") else open(path, "rb").read(1)
        print(part, "read")
    except OSError:
        print(part, "denied")
""")
    assert forked
    assert printed[0].split() == ["mem", "denied", "environ", "denied", "maps", "denied", "fd", "denied", "cwd",
                                  "denied"]


def test_a_course_kept_under_tmp_is_mounted_there_and_spared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A course cloned under /tmp is mounted into the sandbox's /tmp: cleaning after a kernel spares it (and did
    not, so every kernel started cold), and kernels are still forked."""
    home = Path(tempfile.mkdtemp(prefix="course-", dir="/tmp"))
    shutil.copytree(REPO / "normlab", home / "normlab")
    monkeypatch.setattr("grading.isolation.sandbox.NORMLAB", home / "normlab")
    slot = SLOT + 2
    zygote = Zygote(slot, LIMITS)
    try:
        for _ in range(2):
            printed, forked = run_kernel(zygote, LOOKS_AROUND, slot=slot)
            assert forked and zygote.failure is None
            assert home.name in json.loads(printed[0])["tmp"]
        assert (home / "normlab" / "checks.py").read_bytes() == (REPO / "normlab" / "checks.py").read_bytes()
    finally:
        zygote.close()
        shutil.rmtree(home)


@pytest.mark.parametrize("signum", [signal.SIGSTOP, signal.SIGKILL], ids=["stops", "kills"])
def test_a_kernel_that_stops_or_kills_its_zygote_costs_the_next_nothing(signum: signal.Signals) -> None:
    slot = SLOT + 1
    zygote = ZYGOTES.for_slot(slot, LIMITS)
    # What becomes of the attacker's own kernel is left open: once the zygote (the sandbox's first process) is
    # killed, bwrap's init exits and the kernel goes with it, sooner or later.
    _, _, forked = run_cells(zygote, f"import os\nos.kill(os.getppid(), {int(signum)})", slot=slot)
    assert forked
    started = time.monotonic()
    printed, forked = run_kernel(zygote, "print('graded')", slot=slot)
    assert printed[0].strip() == "graded" and not forked and time.monotonic() - started < 30
    assert zygote.failure
    fresh = ZYGOTES.for_slot(slot, LIMITS)  # the owner replaces it
    assert fresh is not zygote
    printed, forked = run_kernel(fresh, "print('graded')", slot=slot)
    assert printed[0].strip() == "graded" and forked
    fresh.close()


LEAVES_IPC_AND_KEYS = """
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p


def shmem():
    return int(next(line for line in open("/proc/meminfo") if line.startswith("Shmem:")).split()[1]) << 10


def made(result):
    return result if result >= 0 else -ctypes.get_errno()


before, segments = shmem(), []
for _ in range(4):  # attached one at a time, so that no address-space limit binds
    segment = made(libc.shmget(0, 256 << 20, 0o1600))
    if segment >= 0:
        address = libc.shmat(segment, None, 0)
        ctypes.memset(address, 1, 256 << 20)
        libc.shmdt(ctypes.c_void_p(address))
    segments.append(segment)
grew = shmem() - before
print(json.dumps({"segments": segments, "grew": grew, "queue": made(libc.msgget(0, 0o1600)),
                  "semaphores": made(libc.semget(0, 1, 0o1600)),
                  "key": made(libc.syscall(248, b"user", b"for-the-next", b"secret", 6, -4)),
                  "posix queue": made(ctypes.CDLL("librt.so.1", use_errno=True).mq_open(b"/for-the-next", 0o102,
                                                                                           0o600, None))}))
"""
LOOKS_FOR_IPC = """
import json
print(json.dumps({kind: open(f"/proc/sysvipc/{kind}").read().splitlines()[1:] for kind in ("shm", "msg", "sem")}))
"""
SHARES_MEMORY_THROUGH_FILES = """
from multiprocessing import shared_memory
import torch
block = shared_memory.SharedMemory(create=True, size=1 << 20)
block.buf[:3] = b"abc"
tensor = torch.ones(3).share_memory_()
print(bytes(block.buf[:3]).decode(), tensor.is_shared())
block.close()
block.unlink()
"""


def keys_of(uid: int) -> str | None:
    """The keys uid holds, from the host's /proc/key-users (None where the grader cannot read it)."""
    try:
        lines = Path("/proc/key-users").read_text().splitlines()
    except OSError:
        return None
    return next((line.split()[3] for line in lines if line.split()[0] == f"{uid}:"), "0/0")


def test_no_ipc_or_key_is_made_and_none_reaches_the_next_kernel(zygote: Zygote) -> None:
    """System V shared memory, semaphores and message queues, POSIX message queues and keys are refused: nothing
    of the kind outlives a kernel, reaches the next one on the slot, or takes host memory past every limit. Honest
    code sharing memory the usual way (files in /dev/shm, which the disk bound counts) runs as before."""
    uid = Sandbox(zygote.new_folder(), LIMITS, SLOT).uid
    keys = keys_of(uid)
    printed, forked = run_kernel(zygote, LEAVES_IPC_AND_KEYS)
    tried = json.loads(printed[0])
    assert forked and tried["grew"] < 256 << 20
    assert tried["segments"] == [-errno.EPERM] * 4 and {tried[kind] for kind in ("queue", "semaphores", "key",
                                                                               "posix queue")} == {-errno.EPERM}
    printed, forked = run_kernel(zygote, LOOKS_FOR_IPC)
    assert forked and json.loads(printed[0]) == {"shm": [], "msg": [], "sem": []}
    assert keys_of(uid) == keys
    printed, forked = run_kernel(zygote, SHARES_MEMORY_THROUGH_FILES)
    assert printed[0].split() == ["abc", "True"]


LOOKS_AT_ITSELF = """
import ctypes, os, resource
print(os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0),
      resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_NPROC),
      open("/proc/self/oom_score_adj").read().strip(), ctypes.CDLL(None).syscall(252, 1, 0))
"""
CHANGES_ITS_ZYGOTE = {  # what a kernel can try on its zygote, which runs as the same user
    "prlimit": "resource.prlimit(os.getppid(), resource.RLIMIT_AS, (1 << 30, 1 << 30))",
    "setpriority": "os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
    "sched_setaffinity": "os.sched_setaffinity(os.getppid(), {min(os.sched_getaffinity(0))})",
    "sched_setscheduler": "os.sched_setscheduler(os.getppid(), os.SCHED_IDLE, os.sched_param(0))",
    "oom_score_adj": "open(f'/proc/{os.getppid()}/oom_score_adj', 'w').write('1000')",
    "ioprio_set": "import ctypes\nif ctypes.CDLL(None).syscall(251, 1, os.getppid(), 3 << 13):\n    raise OSError",
}


@pytest.mark.parametrize("attack", CHANGES_ITS_ZYGOTE)
def test_what_a_kernel_changes_in_its_zygote_never_reaches_the_next_kernel(attack: str) -> None:
    """Where the kernel may change its zygote (same user), the next kernel starts cold and the zygote is replaced;
    where it may not (the zygote is not dumpable), nothing changed."""
    slot = SLOT + 3
    zygote = ZYGOTES.for_slot(slot, LIMITS)
    pristine, forked = run_kernel(zygote, LOOKS_AT_ITSELF, slot=slot)
    assert forked
    attempt = textwrap.indent(CHANGES_ITS_ZYGOTE[attack], "    ")
    tried, forked = run_kernel(zygote, f"import os, resource\ntry:\n{attempt}\n    print('changed')\n"
                                       "except OSError:\n    print('denied')", slot=slot)
    assert forked
    after, forked = run_kernel(zygote, LOOKS_AT_ITSELF, slot=slot)
    assert after == pristine
    if tried[0].strip() == "changed":
        assert not forked and "a kernel changed the zygote's" in zygote.failure
        zygote = ZYGOTES.for_slot(slot, LIMITS)  # the owner replaces it
        again, forked = run_kernel(zygote, LOOKS_AT_ITSELF, slot=slot)
        assert again == pristine and forked
    else:
        assert forked and zygote.failure is None
        assert attack not in ("prlimit", "setpriority", "ioprio_set")  # these reached the zygote before it was checked


def runs_and_vanishes(zygote: Zygote, slot: int, code: str) -> NoReturn:
    """A grading child whose kernel, forked from zygote, runs code, and which then dies before it cleans up (as one
    the watchdog kills)."""
    _, nb, _, forked = start_cells(zygote, [code], slot)
    errors = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    os._exit(0 if forked and not errors else 1)


def test_a_change_to_the_zygote_by_a_slots_first_kernel_is_caught_by_the_owner() -> None:
    """As in grading, the owner starts the zygote, and a forked child runs the slot's first kernel, which changes the
    zygote; the child dies before it cleans up. The owner knows the zygote's state from before any kernel, so its
    cleaning catches the change and retires the zygote."""
    slot = SLOT + 4
    zygote = Zygote(slot, LIMITS)
    try:
        child = multiprocessing.get_context("fork").Process(
            target=runs_and_vanishes, args=(zygote, slot, "import os, resource\n" + CHANGES_ITS_ZYGOTE["prlimit"]))
        child.start()
        child.join()
        assert child.exitcode == 0
        assert not zygote.sweep() and "a kernel changed the zygote's resource limits" in zygote.failure
    finally:
        zygote.close()


def test_attackers_on_a_slot_cost_the_students_after_them_nothing(bundle: Path, release_dir: Path,
                                                                  tmp_path: Path) -> None:
    """One slot, so each honest student's kernel is forked from the zygote the attacker before had."""
    students = {"a1-leaves-a-killer": reference_with_added_cell(LEAVES_A_KILLER), "a2-honest": REFERENCE,
                "a3-stops-its-zygote": reference_with_added_cell("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"),
                "a4-honest": REFERENCE,
                "a5-kills-its-zygote": reference_with_added_cell("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
                "a6-honest": REFERENCE,
                "a7-changes-its-zygote": reference_with_added_cell("import os, resource\n" + "\n".join(
                    CHANGES_ITS_ZYGOTE[attack] for attack in ("prlimit", "setpriority"))),
                "a8-honest": REFERENCE}
    submissions = submit(bundle, tmp_path / "submissions", students)
    # the notebook's questions alone: the .py is graded in a process of its own, which no zygote forks
    completed = autograde(submissions, tmp_path / "out", release_dir, "--jobs", "1", "--questions", "q3,q4,q5")
    assert completed.returncode == 0, completed.stderr[-3000:]
    graded = results(tmp_path / "out")
    honest = [name for name in students if name.endswith("honest")]
    assert {name: graded[name].total for name in honest} == {name: 40 for name in honest}
    # the attackers hurt no one but themselves: taking the zygote down takes their own kernel with it
    assert graded["a1-leaves-a-killer"].total == 40 and graded["a3-stops-its-zygote"].total == 40
    assert graded["a7-changes-its-zygote"].total == 40
