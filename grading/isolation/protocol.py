"""What the grader accepts from a student's process, and how it reads it without trusting it.

Replies are grading/sandboxed/wire.py archives: JSON meta plus arrays, every array float64, read with
allow_pickle=False and capped in size; their entries must be stored, not compressed, so that what is read into
memory is no larger than what was handed over, and the replies of one submission are capped in all. A reply file is opened without following links and must be a regular
file, so a student cannot point the grader at a FIFO, a device or someone else's file. Whatever goes wrong on the
student's side is a StudentFailure, whose message is meant for the student; what goes wrong on the grader's side (a
kernel or a sandboxed Python that does not start) is a GraderError, which is never a verdict.
"""
import io
import os
import stat
import zipfile
from typing import Any

import numpy as np

from grading.failures import MALFORMED, BadReply, Ending, StudentFailure
from grading.sandboxed.wire import decode
from grading.settings import Settings

# (meta, arrays) of a student's reply: JSON meta, float64 arrays by name
Reply = tuple[dict[str, Any], dict[str, np.ndarray]]


def parse_reply(raw: bytes, max_bytes: int = Settings.reply_bytes) -> Reply:
    """(meta, arrays) of a reply; BadReply for anything but a wire archive of float64 arrays, and StudentFailure
    with the student's own exception where their code raised."""
    if len(raw) > max_bytes:
        raise BadReply(f"the reply was too large ({len(raw)} bytes)")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            compressed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
    except zipfile.BadZipFile:
        raise BadReply("the reply was not in the grader's format (not an archive)") from None
    if compressed:
        raise BadReply(f"the reply's entries were compressed ({', '.join(compressed[:3])}); the grader reads only "
                       "stored ones")
    try:
        meta, arrays = decode(raw)
    except (*MALFORMED, zipfile.BadZipFile, OSError) as error:  # numpy reads the student's bytes
        raise BadReply(f"the reply was not in the grader's format ({type(error).__name__})") from None
    for name, value in arrays.items():
        if value.dtype != np.float64:
            raise BadReply(f"the reply's {name!r} was {value.dtype}, not float64")
    if meta.get("ok") is not True:
        raised = str(meta.get("error", "Error"))[:Settings.error_name_chars]
        message = str(meta.get("message", ""))[:Settings.message_chars]
        undefined = meta.get("undefined")
        raise StudentFailure(f"your code raised {raised}: {message}" if message else f"your code raised {raised}",
                             error=raised, undefined=undefined[:Settings.error_name_chars]
                             if raised == "NameError" and isinstance(undefined, str) else None)
    return meta, arrays


def read_regular_file(path: str | os.PathLike[str], max_bytes: int = Settings.reply_bytes) -> bytes:
    """The bytes of path if it is a regular file of at most max_bytes; BadReply otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise BadReply(f"no reply was written ({error.strerror})") from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadReply("the reply was not a regular file")
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadReply(f"the reply was larger than {max_bytes >> 20} MiB")
    return data


class CallBudget:
    """What calls into one submission's code may cost the grader. Calls that timed out or ended the student's
    process, per grade cell: after Settings.timeouts_per_cell of them, the rest of the cell's calls fail at once, so
    a stuck or self-destroying submission costs seconds, not minutes (`cell` is the grade cell whose checks are
    running; the hidden suite's plugin sets it). And the bytes of all replies, which the hidden suites keep: past
    Settings.replies_bytes, no call is made."""

    def __init__(self) -> None:
        self.cell: str | None = None
        self.timeouts: dict[str | None, int] = {}
        self.reply_bytes = 0

    def check(self) -> None:
        if self.reply_bytes > Settings.replies_bytes:
            raise StudentFailure(f"not run: the replies to earlier checks added up to more than "
                                 f"{Settings.replies_bytes >> 20} MiB", Ending.NOT_RUN)
        if self.timeouts.get(self.cell, 0) >= Settings.timeouts_per_cell:
            raise StudentFailure("not run: earlier calls of this check timed out or ended the process",
                                 Ending.NOT_RUN)

    def spend(self) -> None:
        self.timeouts[self.cell] = self.timeouts.get(self.cell, 0) + 1

    def received(self, reply: "Reply") -> Reply:
        """Count a reply (meta, arrays) against the budget; return it."""
        self.reply_bytes += sum(array.nbytes for array in reply[1].values())
        return reply
