"""Files and folders that student code can write, handled from the grader's side through descriptors only.

A sandbox's folder is hostile ground: while (or after) student code runs there, any name in it may be a link, a
FIFO, a folder nested ten thousand deep, a folder without permissions, or gone. So the grader never opens a path
that runs through such a folder. It opens the folder itself once (its own folder, made before any student code ran
there, whose parent the sandbox cannot write), and then works one name at a time relative to a descriptor it holds:
nothing is followed (O_NOFOLLOW), nothing it creates already existed (O_EXCL), no walk leaves the folder's file
system (a mount point in a sandbox's /tmp is spared), and no walk recurses in Python, so depth cannot stop it.

- measure(): what a folder holds, for the disk bound; a walk that holds one descriptor per level, so it refuses
  trees deeper than Settings.folder_depth instead of following them.
- empty() and remove(): delete everything in a folder; they hold one descriptor at a time, go back up through
  "..", and check each step against what they saw going down, so any depth is removed.
- place(): put a grader's file into a sandbox's folder before student code runs there.
"""
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# (device, inode): what a file is, whatever name it has
Identity = tuple[int, int]
# (name, its Identity) of each folder on the way down from the folder being emptied
Trail = list[tuple[str, Identity]]

from grading.settings import Settings

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeChanged(OSError):
    """A folder changed under the grader while it removed it: something still runs there."""


def open_folder(path: str | os.PathLike[str]) -> int:
    """A descriptor of the grader's own folder path (not a link)."""
    return os.open(path, FOLDER_FLAGS)


def open_child(parent: int, name: str) -> int:
    """A descriptor of the folder name inside the folder parent; one that the grader's user owns but may not read
    (a student's chmod 000, where the grader is not root) is made readable first."""
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=parent)
    except PermissionError:
        _make_accessible(parent, name)
        return os.open(name, FOLDER_FLAGS, dir_fd=parent)


def _make_accessible(parent: int, name: str) -> None:
    handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        os.chmod(f"/proc/self/fd/{handle}", 0o700)  # chmod of what the descriptor holds, not of a path
    finally:
        os.close(handle)


@dataclass
class Usage:
    """What a folder holds: disk blocks in bytes, entries, and whether its folders nest deeper than allowed."""
    bytes: int = 0
    entries: int = 0
    too_deep: bool = False


def measure(folder: int, max_bytes: int, max_entries: int, max_depth: int | None = None) -> Usage:
    """Usage of the folder open at descriptor folder: disk blocks and entries of everything in it, links not
    followed and other file systems not entered; the walk stops as soon as it is past max_bytes, max_entries or
    max_depth levels of folders (by default Settings.folder_depth): it holds a descriptor per level."""
    max_depth = Settings.folder_depth if max_depth is None else max_depth
    usage = Usage()
    root_device = os.fstat(folder).st_dev
    levels = [(os.dup(folder), os.scandir(folder))]  # (descriptor, its listing) per level
    try:
        while levels and usage.bytes <= max_bytes and usage.entries <= max_entries and not usage.too_deep:
            entry = next(levels[-1][1], None)
            if entry is None:
                _close(*levels.pop())
                continue
            usage.entries += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            usage.bytes += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode) and info.st_dev == root_device:
                if len(levels) >= max_depth:
                    usage.too_deep = True
                    continue
                try:
                    child = open_child(levels[-1][0], entry.name)
                except OSError:
                    continue
                levels.append((child, os.scandir(child)))
    finally:
        for level in levels:
            _close(*level)
    return usage


def _close(descriptor: int, listing: "os._ScandirIterator[str]") -> None:
    listing.close()
    os.close(descriptor)


def empty(folder: int) -> list[str]:
    """Delete everything inside the folder open at descriptor folder, at any depth, without following a link or
    entering another file system (what is mounted there stays, and so do the folders on the way to it). Returns
    the names, relative to folder, of what could not be deleted. TreeChanged when a folder moved while it was
    being emptied: whatever moved it is still running, and the caller must stop it first."""
    left: list[str] = []
    device = os.fstat(folder).st_dev
    current = os.dup(folder)
    # path: (name, (device, inode)) of each folder from folder down to current; pending: per level from folder down,
    # the subfolders still to empty (None before the level is listed).
    path: Trail = []
    pending: list[list[str] | None] = [None]
    try:
        while True:
            if pending[-1] is None:
                pending[-1] = _delete_files(current, device, path, left)
            if pending[-1]:
                name = pending[-1].pop()
                child = _enter(current, name, device, path, left)
                if child is not None:
                    path.append((name, _identity(child)))
                    pending.append(None)
                    os.close(current)
                    current = child
                continue
            if not path:
                return left
            name, identity = path.pop()
            pending.pop()
            parent = os.open("..", FOLDER_FLAGS, dir_fd=current)
            os.close(current)
            current = parent
            expected = path[-1][1] if path else _identity(folder)
            if _identity(current) != expected:
                raise TreeChanged(errno.ESTALE, "a folder moved while it was being emptied", "/".join(
                    [p for p, _ in path] + [name]))
            _delete(current, name, True, path, left, identity)
    finally:
        os.close(current)


def _identity(descriptor: int) -> Identity:
    info = os.fstat(descriptor)
    return info.st_dev, info.st_ino


def _delete_files(folder: int, device: int, path: Trail, left: list[str]) -> list[str]:
    """Delete every entry of folder that is not a folder on the file system device; the names of its subfolders."""
    subfolders: list[str] = []
    with os.scandir(folder) as entries:
        listed = list(entries)
    for entry in listed:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            _delete(folder, entry.name, False, path, left)
        elif info.st_dev == device:
            subfolders.append(entry.name)
        else:
            left.append(_relative(path, entry.name))  # a mount point
    return subfolders


def _enter(folder: int, name: str, device: int, path: Trail, left: list[str]) -> int | None:
    """A descriptor of subfolder name when it has something in it to delete; None when it was empty and is gone,
    or cannot be entered (then it is in left)."""
    if _delete(folder, name, True, path, None):
        return None
    try:
        child = open_child(folder, name)
    except OSError:
        left.append(_relative(path, name))
        return None
    if os.fstat(child).st_dev != device:
        os.close(child)
        left.append(_relative(path, name))
        return None
    return child


def _delete(folder: int, name: str, is_folder: bool, path: Trail, left: list[str] | None,
            identity: Identity | None = None) -> bool:
    """Unlink name from folder (rmdir when is_folder); a folder the grader's user owns but may not write is made
    writable first. True when it is gone. Otherwise False, and name is added to left (when left is given), unless
    it is a folder that is not empty: what keeps it is in left already, or it is yet to be emptied. identity, when
    given, is the (device, inode) name must still have."""
    if identity is not None and _identity_at(folder, name) != identity:
        raise TreeChanged(errno.ESTALE, "a folder was replaced while it was being emptied", _relative(path, name))
    for attempt in range(2):
        try:
            os.rmdir(name, dir_fd=folder) if is_folder else os.unlink(name, dir_fd=folder)
            return True
        except FileNotFoundError:
            return True
        except PermissionError:
            if attempt == 0 and _owned(folder):
                os.fchmod(folder, 0o700)
                continue
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
        break
    if left is not None:
        left.append(_relative(path, name))
    return False


def _identity_at(folder: int, name: str) -> Identity | None:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _owned(folder: int) -> bool:
    return os.fstat(folder).st_uid == os.geteuid()


def _relative(path: Trail, name: str) -> str:
    return "/".join([p for p, _ in path] + [name])


def remove(path: str | os.PathLike[str]) -> None:
    """Delete the grader's own folder path and everything in it (see empty); a link or a file at path is unlinked,
    and a path that is not there is fine. What cannot be deleted raises OSError naming it."""
    path = Path(path)
    try:
        parent = open_folder(path.parent)
    except FileNotFoundError:
        return
    try:
        try:
            folder = os.open(path.name, FOLDER_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            os.unlink(path.name, dir_fd=parent)
            return
        try:
            left = empty(folder)
        finally:
            os.close(folder)
        if left:
            raise OSError(errno.ENOTEMPTY, f"could not delete {', '.join(left[:3])}", str(path))
        os.rmdir(path.name, dir_fd=parent)
    finally:
        os.close(parent)


def place(folder: int, relative: str | os.PathLike[str], source: str | os.PathLike[str],
          uid: int | None = None) -> None:
    """Copy the grader's file source to relative (a path inside the folder open at descriptor folder), creating the
    folders on the way; nothing there may exist already. Everything created is given to uid when given."""
    parts = Path(relative).parts
    current = os.dup(folder)
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=current)
                created = True
            except FileExistsError:
                created = False
            child = os.open(part, FOLDER_FLAGS, dir_fd=current)
            os.close(current)
            current = child
            if created and uid is not None:
                os.fchown(current, uid, uid)
        target = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=current)
        with os.fdopen(target, "wb") as out, open(source, "rb") as data:
            shutil.copyfileobj(data, out)
            if uid is not None:
                os.fchown(out.fileno(), uid, uid)
    finally:
        os.close(current)
