"""Users of this machine for the tests of nbgrader's exchange, where the user who owns an inbox decides whose
submission it is. Each is made with useradd for one test module, named after a role and a random tag so that no
other run or account is taken, and removed with userdel afterwards. Making users takes root, as CI has."""
import contextlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What a user's nbgrader needs to reach: this Python, its packages, and the repository the course's config imports.
_PATHS = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, Path(sys.executable).resolve().parent, REPO)}
NEEDED = sorted(p for p in _PATHS if not _PATHS & set(p.parents))


# The start of a program that leaves its parent's session for good (a double fork, as daemons do): what a student
# leaves running after their code returns.
DETACHES = """
import os
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
"""


def new_tag():
    """A tag for the names of one module's users."""
    return secrets.token_hex(3)


@contextlib.contextmanager
def unix_users(names, homes):
    """{name: its pwd entry} of a new user per name, each with a home of its own under homes."""
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("the exchange takes a submission as the user who owns it, so these tests make students' users "
                    "with useradd, which takes root (CI runs as root)")
    if _hidden(NEEDED) and not shutil.which("bwrap"):
        pytest.skip(f"other users cannot reach {', '.join(map(str, _hidden(NEEDED)))} (this Python or the repository), "
                    "and bwrap, which would show it to them, is missing: apt-get install bubblewrap")
    made = []
    try:
        for name in names:
            home = Path(homes, name)
            # --badname: an id such as o.brien@uni, as SSSD's user@domain names are, is a user all the same
            subprocess.run(["useradd", "--badname", "--no-create-home", "--no-user-group", "--home-dir", home,
                            "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
            made.append(name)
            home.mkdir(parents=True)
            os.chown(home, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
        yield {name: pwd.getpwnam(name) for name in names}
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True)


def as_user(user, argv, cwd, **kwargs):
    """Run argv as user (a pwd entry) in cwd, with a minimal environment whose HOME is the user's. Where this Python
    or the repository lies under a folder other users cannot enter (a Python under /root), bwrap shows the user
    that folder as an empty one holding only them, as the grader's sandbox does."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": user.pw_dir, "USER": user.pw_name,
                   "LOGNAME": user.pw_name, "LANG": "C.UTF-8"}
    command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", *map(str, argv)]
    if _hidden(NEEDED):
        command = ["bwrap", "--dev-bind", "/", "/", *showing(NEEDED), "--", *command]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, **kwargs)


def showing(paths):
    """bwrap options that let other users reach paths where a folder on the way is closed to them (this Python
    under /root, pytest's folders): that folder becomes an empty one holding only what lies on the way to paths,
    as the grader's sandbox shows the environment."""
    paths = sorted({Path(p).resolve() for p in paths})
    options = []
    for folder in _hidden(paths):
        options += ["--perms", "0755", "--tmpfs", str(folder)]
        for path in (p for p in paths if folder in p.parents and not set(paths) & set(p.parents)):
            options += [arg for parent in reversed(path.parents) if folder in parent.parents
                        for arg in ("--perms", "0755", "--dir", str(parent))]
            options += ["--bind", str(path), str(path)]
    return options


def without_bwrap_as_root(paths):
    """The command line before a command that runs it as Gradescope runs run_autograder where bubblewrap cannot
    work: as root, in a container (a PID namespace of its own, so that the grader's kill of a user reaches nothing
    else of this machine) where other users can reach this Python and paths."""
    return ["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--die-with-parent",
            "--cap-add", "ALL", *showing([*NEEDED, *paths]), "--"]


def _hidden(paths):
    """The outermost folders on the way to paths that users other than their owner cannot enter."""
    hidden = set()
    for path in paths:
        for folder in reversed(path.parents):
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                hidden.add(folder)
                break
    return sorted(hidden)
