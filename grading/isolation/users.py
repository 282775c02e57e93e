"""Student code without bubblewrap, where the grader runs as root (Isolation.SEPARATE_USER, as on Gradescope, whose
containers cannot make namespaces): a user of its own per worker slot is then the wall between student code and
the grader.

That user (Settings.separate_user_uid_base + slot, a uid no account has) owns nothing but the folder of the part it
runs (mode 0700). Before anyone is graded, check_users() makes sure it can run the Python environment and can read
none of the secrets (the sources with solutions, the hidden suites, the gradebook, the submissions) nor write the
grader's files or outputs; otherwise the run refuses to grade and says what to change. Once a submission is graded,
before its results are written, end_user() kills every process of that user, however it was started (a kill(-1)
made as that user reaches all of them at once, and a new process cannot slip between), and deletes what it left in
the folders every user may write. Meanwhile those files count against the disk bound (usage()).

What this does not give, which bubblewrap does: a network of its own, a /tmp of its own, and a view of the machine
limited to the environment (files other users may read stay readable). docs/security.md says what holds where.
"""
import json
import os
import secrets
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from grading.isolation import tree
from grading.settings import ConfigurationError, Settings

WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # where any user may make files on Linux
KILL_ROUNDS = 50
# Run as the slot's user: which of the paths given it can read, and in which of the folders given it can make a
# file (such a file is removed at once).
PROBE = """
import json, os, sys
hidden, protected, name = json.loads(sys.argv[1])
readable, writable = [], []
for path in hidden:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
        readable.append(path)
    except OSError:
        pass
for folder in protected:
    try:
        os.close(os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(os.path.join(folder, name))
        writable.append(folder)
    except OSError:
        pass
print(json.dumps({"readable": readable, "writable": writable}))
"""


def uid_of(slot: int) -> int:
    return Settings.separate_user_uid_base + slot


def as_user(uid: int, python: str, code: str, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """Run Python code as uid, with nothing of root's but this interpreter; the completed process."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                           "--bounding-set=-all", "--", python, "-I", "-S", "-c", code, *args],
                          cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, capture_output=True,
                          text=True, timeout=timeout)


def check_users(slots: Iterable[int], python: str, hidden: Iterable[str | os.PathLike[str]],
                protected: Iterable[str | os.PathLike[str]]) -> None:
    """ConfigurationError, saying what to change, unless the user of every slot in slots can run python, can read
    none of hidden and can write in none of protected."""
    for slot in slots:
        uid = uid_of(slot)
        completed = as_user(uid, python, PROBE, json.dumps([[str(p) for p in hidden], [str(p) for p in protected],
                                                            f".normlab-probe-{secrets.token_hex(6)}"]))
        try:
            found = json.loads(completed.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise ConfigurationError(
                f"without bubblewrap, student code runs as the user {uid}, which cannot run {python}: "
                f"{(completed.stderr.strip() or 'it said nothing')[-300:]}. Install bubblewrap, or keep the Python "
                "environment where every user may read it (not under /root)") from None
        if found["readable"] or found["writable"]:
            raise ConfigurationError(
                f"without bubblewrap, student code runs as the user {uid}, which "
                + "; and ".join(part for part in (
                    f"can read {', '.join(found['readable'])}" if found["readable"] else "",
                    f"can write in {', '.join(found['writable'])}" if found["writable"] else "") if part)
                + ". Take those rights from other users (chmod o-rwx, or go-rwx where a group has them), or install "
                  "bubblewrap")


def processes_of(uid: int) -> list[int]:
    """PIDs of the processes running as uid (real, effective or saved), but for those that have ended."""
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = dict(line.split(":", 1) for line in Path(entry.path, "status").read_text().splitlines()
                          if ":" in line)
        except OSError:
            continue
        if status.get("State", "").split()[:1] in (["Z"], ["X"]):
            continue
        if str(uid) in status.get("Uid", "").split()[:3]:
            found.append(int(entry.name))
    return found


def end_user(uid: int, python: str) -> bool:
    """Kill every process of uid and delete what it left in WORLD_WRITABLE; whether nothing of it is left."""
    for _ in range(KILL_ROUNDS):
        if not processes_of(uid):
            break
        as_user(uid, python, "import os, signal\nos.kill(-1, signal.SIGKILL)")
    else:
        return False
    left = False
    for folder, name in files_of(uid):
        try:
            tree.remove(os.path.join(folder, name))
        except OSError:
            left = True
    return not left and not processes_of(uid)


def files_of(uid: int) -> list[tuple[str, str]]:
    """(folder, name) of what uid owns directly in WORLD_WRITABLE."""
    found: list[tuple[str, str]] = []
    for folder in WORLD_WRITABLE:
        try:
            with os.scandir(folder) as entries:
                found += [(folder, e.name) for e in entries if _owner(e) == uid]
        except OSError:
            continue
    return found


def _owner(entry: "os.DirEntry[str]") -> int | None:
    try:
        return entry.stat(follow_symlinks=False).st_uid
    except OSError:
        return None


def usage(uid: int, max_bytes: int, max_entries: int) -> tree.Usage:
    """tree.Usage of everything uid has put in WORLD_WRITABLE (links not followed, as tree.measure)."""
    total = tree.Usage()
    for folder, name in files_of(uid):
        path = os.path.join(folder, name)
        try:
            info = os.lstat(path)
            child = os.open(path, tree.FOLDER_FLAGS) if stat.S_ISDIR(info.st_mode) else None
        except OSError:
            continue
        total.entries += 1
        total.bytes += info.st_blocks * 512
        if child is not None:
            try:
                inside = tree.measure(child, max_bytes - total.bytes, max_entries - total.entries)
            finally:
                os.close(child)
            total.bytes += inside.bytes
            total.entries += inside.entries
            total.too_deep = total.too_deep or inside.too_deep
    return total
