"""The only format in which student processes hand anything to the grader: an .npz archive (no pickles) of
float64 arrays plus an entry "meta" holding JSON. Self-contained, because its text also runs inside the sandbox
(prepended to the code of the sandboxed servers), where the grading package is not mounted."""
import io
import json
from typing import Any

import numpy as np

Meta = dict[str, Any]  # a JSON object
Arrays = dict[str, np.ndarray]


def encode(meta: Meta, arrays: Arrays) -> bytes:
    """Bytes of an .npz with meta (a JSON-able dict) and arrays (name -> array, stored as float64)."""
    buffer = io.BytesIO()
    # Any: to a checker, savez's keyword arguments include its allow_pickle flag
    entries: dict[str, Any] = {name: np.asarray(value, dtype=np.float64) for name, value in arrays.items()}
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **entries)
    return buffer.getvalue()


def decode(raw: bytes) -> tuple[Meta, Arrays]:
    """(meta, arrays) from bytes made by encode; raises ValueError for anything else."""
    archive = np.load(io.BytesIO(raw), allow_pickle=False)
    if not hasattr(archive, "files") or "meta" not in archive.files:
        raise ValueError("not an archive with a 'meta' entry")
    meta = json.loads(bytes(archive["meta"]).decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("its meta entry is not a JSON object")
    return meta, {name: archive[name] for name in archive.files if name != "meta"}
