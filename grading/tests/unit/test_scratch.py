"""isolation/scratch.py: a scratch folder is in use for as long as a process holds its lock, which the children of
its maker inherit; only folders no one holds, of this user, are cleared, whatever PIDs another grader sees."""
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from grading.isolation import scratch


def test_a_folder_in_use_is_kept_and_a_dead_graders_is_cleared() -> None:
    kept = scratch.make("kept-")
    made = multiprocessing.get_context("fork").Queue()
    grader = multiprocessing.get_context("fork").Process(target=lambda: made.put(str(scratch.make("killed-"))))
    grader.start()
    left = made.get(timeout=30)
    grader.join()  # a grader that ended without removing its folder, as one killed midway does
    try:
        scratch.clear_stale()
        assert kept.is_dir() and not os.path.lexists(left)
    finally:
        scratch.remove(kept)
    assert not kept.exists()


def test_a_folder_a_forked_child_still_uses_is_kept_after_its_maker_is_gone(tmp_path: Path) -> None:
    """The lock, not the maker's PID, says a folder is in use: here the maker exits and its child goes on."""
    code = ("import os, sys, time\nsys.path.insert(0, sys.argv[1])\nfrom grading.isolation import scratch\n"
            "folder = scratch.make('handed-on-')\nprint(folder, flush=True)\n"
            "if os.fork() == 0:\n    time.sleep(2)\n    os._exit(0)\nos._exit(0)")
    maker = subprocess.Popen([sys.executable, "-c", code, os.getcwd()], stdout=subprocess.PIPE, text=True)
    folder = maker.stdout.readline().strip()
    maker.wait(timeout=30)  # the maker is gone; its child, holding the lock, sleeps on
    scratch.clear_stale()
    assert os.path.isdir(folder)
    maker.stdout.read()  # until the child has ended
    scratch.clear_stale()
    assert not os.path.lexists(folder)
