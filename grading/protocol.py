"""What the grader accepts from a student's process, and how it reads it without trusting it.

Replies are grading/sandboxed/wire.py archives: JSON meta plus arrays, every array float64, read with
allow_pickle=False and capped in size. A reply file is opened without following links and must be a regular
file, so a student cannot point the grader at a FIFO, a device or someone else's file.
"""
import os
import stat

import numpy as np

from grading.sandboxed.wire import decode

MAX_REPLY_BYTES = 64 << 20


class BadReply(Exception):
    """What a student's process handed back is not data the grader accepts."""


def parse_reply(raw, max_bytes=MAX_REPLY_BYTES):
    """(meta, arrays) of a reply; BadReply for anything but a wire archive of float64 arrays."""
    if len(raw) > max_bytes:
        raise BadReply(f"the reply was too large ({len(raw)} bytes)")
    try:
        meta, arrays = decode(raw)
    except Exception as error:
        raise BadReply(f"the reply was not in the grader's format ({type(error).__name__})") from None
    for name, value in arrays.items():
        if value.dtype != np.float64:
            raise BadReply(f"the reply's {name!r} was {value.dtype}, not float64")
    return meta, arrays


def read_regular_file(path, max_bytes=MAX_REPLY_BYTES):
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
