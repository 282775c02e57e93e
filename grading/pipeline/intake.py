"""Finding submissions and copying what can be graded out of them, safely.

SUBMISSIONS may hold, per student, a folder `<student_id>/`, a `<student_id>.zip`, or be an nbgrader `submitted/`
tree (`<student_id>/norm/...`). Only known files are taken: batchnormalization.py, norm.ipynb, the training
histories under runs/grid/, and the bonus models; names like `batchnormalization (1).py` are accepted with a note.
Symbolic links are never followed, zip entries that would land outside the folder or are links are skipped, and
sizes are capped while reading, so zip bombs and huge files cost nothing. Every problem becomes a note or a part's
status; nothing here raises for bad input. nbgrader's own autograde and collect read submissions through the same
rules (pipeline/front_door.py).

A submission's time is never read from the submission: a timestamp.txt in it, or a zip's entry dates, are the
student's to write. An nbgrader tree's times come from the record the grader keeps beside it (records/late.py).
"""
import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from grading.assignment import ASSIGNMENT, BONUS_FILES, NOTEBOOK, PYFILE
from grading.handoff import Intake, Submission, SubmissionKind
from grading.records.late import read_record
from grading.records.results import Rejected
from grading.settings import Settings

# Matched whole (fullmatch): with re.match and "$", which also matches before a final newline, "alice\n" was a second
# student beside alice, and a grades.csv row that an LMS, trimming it, took for alice's.
Member = tuple[str, int, Callable[[], IO[bytes]]]  # (relative posix path, size, opener) of a submitted file
Part = Literal["pyfile", "notebook", "history", "bonus"]  # a kind of file, by its size limit (MAX_BYTES)
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
STUDENT_ID_RULE = "1 to 64 letters, digits, '.', '_', '@' and '-', the first a letter or a digit"
FOLDER_DEPTH = 6  # folders deeper in a submission than this are not looked into
MAX_BYTES: dict[Part, int] = {"pyfile": Settings.pyfile_bytes, "notebook": Settings.notebook_bytes,
             "history": Settings.history_bytes, "bonus": Settings.bonus_bytes}
SKIPPED_FOLDERS = {".ipynb_checkpoints", "__MACOSX", "__pycache__", ".git"}
PATTERNS = {
    "pyfile": re.compile(r"^batch_?normalization.*\.py$", re.I),
    "notebook": re.compile(r"^norm.*\.ipynb$", re.I),
    # the stem and then no further digit: bonus_cifar10 (1).pt2 is CIFAR-10's, bonus_cifar100.pt2 is not
    **{f"bonus_{name}": re.compile(rf"^{re.escape(Path(filename).stem)}(?!\d).*\.pt2$", re.I)
       for name, filename in BONUS_FILES.items()},
}
HISTORY = re.compile(r"(^|/)runs/grid/([A-Za-z0-9._-]{1,80})/history\.json$")
OWN_TIME_IGNORED = ("its own timestamp.txt was not used: what a submission holds is the student's to write; "
                    "submission times come from nbgrader's exchange or --submission-times")


def student_id_refusal(name: str) -> str:
    """Why name cannot be a student's id, naming it as Python writes it (so that a newline or a space shows); "" when
    it can. The one check of every id the grader takes: a submission's name, an nbgrader submitted/ folder, an
    exchange inbox's, a shard's student."""
    return "" if STUDENT_ID.fullmatch(name) else f"{name!r} is not a usable student id ({STUDENT_ID_RULE})"


def discover(root: str | os.PathLike[str]) -> tuple[list[Submission], list[Rejected]]:
    """The submissions under root, and the entries that cannot be graded at all. Only the submissions of an
    nbgrader tree can have a time: the one its record holds (records/late.py)."""
    root = Path(root)
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    nbgrader_tree = bool(entries) and all(p.is_dir() and not p.is_symlink() and (p / ASSIGNMENT).is_dir()
                                          for p in entries if p.is_dir())
    recorded = read_record(root) if nbgrader_tree else {}
    found: dict[str, Submission] = {}
    rejected: list[Rejected] = []
    for entry in entries:
        # grades.csv has a row for each entry: one whose name is no usable id goes by the name as Python writes
        # it, in quotes, which no LMS trims into another student's id
        shown = entry.name if not student_id_refusal(entry.name) else repr(entry.name)
        if entry.is_symlink():
            rejected.append(Rejected(shown, "a symbolic link; submissions must be folders or .zip files"))
            continue
        kind: SubmissionKind
        if entry.is_dir():
            student_id, kind, path = entry.name, "folder", entry
            if nbgrader_tree:
                kind, path = "nbgrader", entry / ASSIGNMENT
        elif entry.suffix.lower() == ".zip" and entry.is_file():
            student_id, kind, path = entry.stem, "zip", entry
        else:
            rejected.append(Rejected(shown, "not a folder or a .zip file"))
            continue
        refusal = student_id_refusal(student_id)
        if refusal:
            rejected.append(Rejected(shown, f"{refusal}; rename it to the student's id"))
            continue
        submission = Submission(student_id, path, kind, timestamp=recorded.get(student_id, (None,))[0])
        if submission.timestamp is None and _holds_a_time(path, kind):
            submission.notes.append(OWN_TIME_IGNORED)
        if student_id in found:
            kept, dropped = sorted([found[student_id], submission],
                                   key=lambda s: (s.path.stat().st_mtime, s.kind == "folder"), reverse=True)
            kept.notes.append(f"{student_id} also submitted {dropped.path.name}; graded the newer "
                              f"{kept.path.name} only")
            found[student_id] = kept
        else:
            found[student_id] = submission
    return [found[k] for k in sorted(found)], rejected


def _holds_a_time(path: Path, kind: SubmissionKind) -> bool:
    """Whether the submission holds a timestamp.txt (which is never read)."""
    if kind != "zip":
        return (path / "timestamp.txt").is_file()
    try:
        with zipfile.ZipFile(path) as archive:
            return any(PurePosixPath(name).name == "timestamp.txt"
                       for name in archive.namelist()[:Settings.zip_entries])
    except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return False


def _folder_members(folder: Path) -> tuple[list[Member], list[str]]:
    """(relative posix path, size, opener) of the regular files under folder; links are not followed, folder itself
    included (ValueError)."""
    if folder.is_symlink():
        raise ValueError(f"{folder.name} is a symbolic link, not a folder")
    members: list[Member] = []
    notes: list[str] = []
    stack = [folder]
    while stack:
        current = stack.pop()
        for entry in sorted(current.iterdir()):
            info = entry.lstat()
            relative = entry.relative_to(folder).as_posix()
            if stat.S_ISLNK(info.st_mode):
                notes.append(f"skipped the symbolic link {relative}")
            elif stat.S_ISDIR(info.st_mode):
                if entry.name not in SKIPPED_FOLDERS and relative.count("/") < FOLDER_DEPTH:
                    stack.append(entry)
            elif stat.S_ISREG(info.st_mode):
                members.append((relative, info.st_size, partial(open_member, folder, relative)))
    return members, notes


def open_member(folder: Path, relative: str) -> IO[bytes]:
    """A binary stream of the regular file at relative (a posix path) under folder, opened one component at a time
    without following a link, so that nothing swapped in after the folder was listed (a link, a FIFO) is read: an
    exchange inbox stays writable by its student while collect reads it. OSError otherwise."""
    *parents, name = PurePosixPath(relative).parts
    fd = open_folder(folder, parents)
    try:
        member = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(member).st_mode):
        os.close(member)
        raise OSError(f"{relative} is not a regular file")
    return os.fdopen(member, "rb")


def open_folder(folder: Path, parts: list[str]) -> int:
    """A descriptor of the folder at parts (names) under folder, opened one component at a time without following a
    link, folder itself included. OSError otherwise."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY
    fd = os.open(folder, flags)
    try:
        for part in parts:
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd


def _zip_members(archive: zipfile.ZipFile) -> tuple[list[Member], list[str]]:
    """(path, size, opener) of the zip's entries that may be taken, and notes on those skipped; ValueError for a zip
    too large to read."""
    members: list[Member] = []
    notes: list[str] = []
    infos = archive.infolist()
    if len(infos) > Settings.zip_entries:
        raise ValueError(f"the zip holds {len(infos)} entries (at most {Settings.zip_entries})")
    if sum(info.file_size for info in infos) > Settings.zip_bytes:
        raise ValueError(f"the zip would unpack to more than {Settings.zip_bytes >> 30} GiB")
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if info.is_dir():
            continue
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            notes.append(f"skipped {name!r}: it would be written outside the submission folder")
        elif stat.S_ISLNK(info.external_attr >> 16):
            notes.append(f"skipped {name!r}: a symbolic link")
        elif not any(part in SKIPPED_FOLDERS for part in parts):
            members.append((name, info.file_size, partial(archive.open, info)))
    return members, notes


def _read_capped(opener: Callable[[], IO[bytes]], limit: int) -> bytes | None:
    """The member's bytes, or None if it holds more than limit bytes (whatever its declared size)."""
    with opener() as stream:
        data = stream.read(limit + 1)
    return None if len(data) > limit else data


def _choose(members: list[Member], kind: str, expected: str, notes: list[str]) -> Member | None:
    """The member taken as expected (a file of kind, PATTERNS), noting in notes what was chosen or ignored; None if
    no member is of kind."""
    candidates = [m for m in members if PATTERNS[kind].match(PurePosixPath(m[0]).name)]
    if not candidates:
        return None
    exact = [m for m in candidates if PurePosixPath(m[0]).name == expected]
    chosen = min(exact or candidates, key=lambda m: (m[0].count("/"), m[0]))
    if PurePosixPath(chosen[0]).name != expected:
        notes.append(f"used {chosen[0]!r} as {expected}")
    elif chosen[0] != expected:
        notes.append(f"used {chosen[0]} (inside a folder)")
    if len(candidates) > 1:
        others = ", ".join(repr(m[0]) for m in candidates if m is not chosen)
        notes.append(f"ignored {others}")
    return chosen


def unpack(submission: Submission, dest: str | os.PathLike[str]) -> Intake:
    """Copy what can be graded from submission into dest (which must exist and be empty); its Intake."""
    dest = Path(dest)
    intake = Intake(folder=dest, notes=list(submission.notes))
    try:
        if submission.kind == "zip":
            archive = zipfile.ZipFile(submission.path)
            members, notes = _zip_members(archive)
        else:
            members, notes = _folder_members(submission.path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        message = f"the submission could not be opened: {error}"
        intake.problems.update(pyfile=message, notebook=message, bonus=message)
        return intake
    intake.notes += notes
    digest = hashlib.sha256()
    wanted: list[tuple[str, str, Part]] = [("pyfile", PYFILE, "pyfile"), ("notebook", NOTEBOOK, "notebook")]
    wanted += [(f"bonus_{name}", filename, "bonus") for name, filename in BONUS_FILES.items()]
    for kind, expected, limit in wanted:
        try:
            member = _choose(members, kind, expected, intake.notes)
            data = None if member is None else _read_capped(member[2], MAX_BYTES[limit])
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as error:
            intake.problems[limit if limit == "bonus" else kind] = f"{expected} could not be read: {error}"
            continue
        if member is None:
            if kind in ("pyfile", "notebook"):
                intake.problems[kind] = f"no {expected} was submitted"
            continue
        if data is None:
            intake.problems[limit if limit == "bonus" else kind] = (
                f"{expected} is larger than {MAX_BYTES[limit] >> 20} MiB; it was not graded")
            continue
        if kind == "pyfile":
            data = _python_source(data, intake)
            if data is None:
                continue
        path = dest / expected
        path.write_bytes(data)
        digest.update(expected.encode() + b"\0" + hashlib.sha256(data).digest())
        if kind == "pyfile":
            intake.pyfile = path
        elif kind == "notebook":
            intake.notebook = path
        else:
            intake.bonus[kind.removeprefix("bonus_")] = path
    for name, size, opener in members:
        match = HISTORY.search(name)
        if match and intake.histories < Settings.histories and size <= MAX_BYTES["history"]:
            try:
                data = _read_capped(opener, MAX_BYTES["history"])
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as error:
                intake.notes.append(f"{name} could not be read: {error}")
                continue
            if data is not None:
                path = dest / "runs" / "grid" / match.group(2) / "history.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                intake.histories += 1
    intake.digest = digest.hexdigest()
    return intake


def _python_source(data: bytes, intake: Intake) -> bytes | None:
    """UTF-8 source text of batchnormalization.py, converting GB18030 with a note; None (with a problem) if it is
    empty or not text."""
    if not data.strip():
        intake.problems["pyfile"] = "batchnormalization.py is empty"
        return None
    if b"\0" in data:
        intake.problems["pyfile"] = "batchnormalization.py is not text (it contains NUL bytes)"
        return None
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        intake.problems["pyfile"] = "batchnormalization.py is neither UTF-8 nor GB18030 text"
        return None
    intake.notes.append("batchnormalization.py was not UTF-8; it was read as GB18030 and converted")
    return text.encode("utf-8")
