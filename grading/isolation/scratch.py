"""The grader's scratch folders in /tmp, and clearing those that graders killed midway left behind.

A folder is in use for as long as a process holds a lock on it (flock on the folder itself): the process that made
it, and the children it forks, which inherit the lock. Whether its maker's PID still runs would not do: a grader in
a container of its own (as on Gradescope, or in this project's tests) sees none of the host's PIDs and would take
every other grader's folders for stale, and a PID can be reused. A folder is made under a hidden name and renamed
once locked, so that no grader ever sees one of them unlocked while it is in use.
"""
import fcntl
import os
import tempfile
from pathlib import Path

from grading.isolation import tree
from grading.settings import SCRATCH_PREFIX

_held: dict[Path, int] = {}  # {path: descriptor holding its lock}, in the process that made it


def make(tag: str = "") -> Path:
    """A new scratch folder /tmp/nl-<PID>-<tag>..., mode 0711 (the sandboxes' users reach their folders inside),
    locked until remove() or the end of this process and its children."""
    hidden = Path(tempfile.mkdtemp(prefix=f".{SCRATCH_PREFIX}{os.getpid()}-{tag}", dir="/tmp"))
    descriptor = tree.open_folder(hidden)
    fcntl.flock(descriptor, fcntl.LOCK_SH)
    os.fchmod(descriptor, 0o711)
    folder = hidden.with_name(hidden.name[1:])
    os.rename(hidden, folder)
    _held[folder] = descriptor
    return folder


def remove(folder: str | os.PathLike[str]) -> None:
    """Delete a scratch folder this process made, and drop its lock."""
    tree.remove(folder)
    descriptor = _held.pop(Path(folder), None)
    if descriptor is not None:
        os.close(descriptor)


def clear_stale() -> None:
    """Remove the scratch folders of this user that no process holds a lock on (their graders were killed before
    they could); others' folders, and anything that is not a folder, stay. A folder that cannot be removed is left
    for the next run."""
    with os.scandir("/tmp") as entries:
        for entry in entries:
            if not entry.name.startswith(SCRATCH_PREFIX):
                continue
            try:
                descriptor = tree.open_folder(entry.path)
            except OSError:
                continue  # not a folder, or gone
            try:
                if os.fstat(descriptor).st_uid != os.geteuid():
                    continue
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                tree.remove(entry.path)
            except OSError:
                continue  # in use (locked), or not removable now
            finally:
                os.close(descriptor)
