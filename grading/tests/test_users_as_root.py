"""isolation/users.py, as root: where bubblewrap cannot run and the grader is root, a user of its own per slot is
the wall. The grader refuses to grade unless that user can run Python and reach no secret; once a submission is
graded, no process of that user is left, however it was started, and nothing it left in the folders every user may
write.

The checks run as root in a container (unix_users.without_bwrap_as_root) whose PID namespace is its own, so that
killing a user's processes reaches nothing else of this machine."""
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from grading.isolation import sandbox, users
from grading.settings import ConfigurationError
from unix_users import DETACHES, without_bwrap_as_root

SLOT = 7
needs_root_and_bwrap = pytest.mark.skipif(os.geteuid() != 0 or not sandbox.bwrap_works(),
                                          reason="as root, and bubblewrap makes the container: CI runs as root and "
                                                 ".ci/run installs it")
REPO = Path(__file__).resolve().parents[2]


def in_container(code: str, *paths: Path) -> Any:
    """Run code (Python, with the grading package importable) as root in the container, where other users can
    reach this Python and paths; what it printed last, as JSON."""
    completed = subprocess.run([*without_bwrap_as_root(paths), sys.executable, "-c", code],
                               cwd=REPO, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@needs_root_and_bwrap
def test_a_user_that_cannot_run_python_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="cannot run /nonexistent/python.*not under /root"):
        users.check_users([SLOT], "/nonexistent/python", hidden=[], protected=[])


@needs_root_and_bwrap
def test_what_the_user_could_read_or_write_is_named_and_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # (pytest makes it 0700)
    secret, private = tmp_path / "solution.py", tmp_path / "hidden.py"
    secret.write_text("solution")
    private.write_text("hidden")
    private.chmod(0o600)
    open_folder, closed_folder = tmp_path / "open", tmp_path / "closed"
    open_folder.mkdir(mode=0o777)
    open_folder.chmod(0o777)
    closed_folder.mkdir(mode=0o755)
    seen = in_container(f"""
import json
from grading.isolation import users
from grading.isolation.sandbox import PYTHON
from grading.settings import ConfigurationError
try:
    users.check_users([{SLOT}], PYTHON, hidden=[{str(secret)!r}, {str(private)!r}],
                      protected=[{str(open_folder)!r}, {str(closed_folder)!r}])
    print(json.dumps("accepted"))
except ConfigurationError as error:
    print(json.dumps(str(error)))
""", tmp_path)
    assert f"can read {secret}; and can write in {open_folder}. Take those rights" in seen
    assert str(private) not in seen and str(closed_folder) not in seen
    assert not any(open_folder.iterdir())  # the probe's file went


@needs_root_and_bwrap
def test_no_process_of_the_user_outlives_its_submission_and_nothing_it_left(tmp_path: Path) -> None:
    """A daemon in a session of its own (double fork, setsid), processes that keep forking, files and a deep folder
    in /tmp and /dev/shm; a root file in /tmp beside them stays."""
    seen = in_container(f"""
import json, os, subprocess, time
from grading.isolation import users
from grading.isolation.sandbox import PYTHON
uid = users.uid_of({SLOT})
daemon = {DETACHES!r} + '''
import time
open("/tmp/left-by-the-user", "w").write("x")
os.makedirs("/dev/shm/deep/" + "/".join(["d"] * 200), exist_ok=True)
while True:
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
    time.sleep(0.05)
'''
open("/tmp/the-hosts-own", "w").write("root's")
subprocess.run(["setpriv", f"--reuid={{uid}}", f"--regid={{uid}}", "--clear-groups", PYTHON, "-c", daemon],
               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
time.sleep(1)
running = len(users.processes_of(uid))
ended = users.end_user(uid, PYTHON)
print(json.dumps({{"running": running, "ended": ended, "left": len(users.processes_of(uid)),
                  "files": [name for folder, name in users.files_of(uid)],
                  "hosts": open("/tmp/the-hosts-own").read()}}))
os.unlink("/tmp/the-hosts-own")
""")
    assert seen == {"running": seen["running"], "ended": True, "left": 0, "files": [], "hosts": "root's"}
    assert seen["running"] >= 2
