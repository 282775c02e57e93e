"""Runs inside the sandbox: calls a student's batchnormalization.py on request and sends back plain arrays.

It is started as `python -I -c <wire.py><this file> <path to batchnormalization.py> <message chars>`; the grader writes requests
to its stdin and reads replies from its stdout. Each message is an 8-byte big-endian length followed by a wire
archive (encode/decode of wire.py). The first reply, {"ok": true, "ready": true}, comes before the student's module is
imported: it tells the grader that the sandboxed Python started, so that whatever follows is the student's doing. Everything the student's code prints goes to student_output.log instead. This
process only computes: it never decides anything about a score.
"""
import importlib.util
import os
import struct
import sys
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # in the sandbox, wire.py's text comes first
    from grading.sandboxed.wire import Arrays, Meta, decode, encode


def read_message(stream: IO[bytes]) -> tuple[Meta, Arrays] | None:
    header = stream.read(8)
    if len(header) < 8:
        return None
    (length,) = struct.unpack(">Q", header)
    return decode(stream.read(length))


def write_message(stream: IO[bytes], meta: Meta, arrays: Arrays) -> None:
    payload = encode(meta, arrays)
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def as_float64(value: Any, what: str) -> np.ndarray:
    try:
        return np.array(value, dtype=np.float64, copy=True)
    except Exception as error:
        raise TypeError(f"{what} must be a NumPy array, not {type(value).__name__} ({error})") from None


def dtype_name(value: Any) -> str:
    return value.dtype.name if isinstance(value, np.ndarray) else type(value).__name__


def forward(module: ModuleType, meta: Meta, arrays: Arrays, x: np.ndarray, gamma: np.ndarray,
            beta: np.ndarray) -> tuple[tuple[Any, Any], dict[str, Any]]:
    """((out, cache) of the student's batchnorm_forward, the bn_param it was given and may have changed)."""
    bn_param = {key: value for key, value in meta["bn_param"].items()}
    for key in ("running_mean", "running_var"):
        if key in arrays:
            bn_param[key] = arrays[key].copy()
    result = module.batchnorm_forward(x, gamma, beta, bn_param)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError("batchnorm_forward must return a tuple (out, cache)")
    return result, bn_param


def handle(module: ModuleType, meta: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    op = meta["op"]
    dtype = np.dtype(meta.get("dtype", "float64"))
    x, gamma, beta = (arrays[name].astype(dtype) for name in ("x", "gamma", "beta"))
    if op == "forward":
        (out, _), bn_param = forward(module, meta, arrays, x, gamma, beta)
        reply = {"out": as_float64(out, "out"), "x_after": x.astype(np.float64),
                 "gamma_after": gamma.astype(np.float64), "beta_after": beta.astype(np.float64)}
        dtypes = {"out": dtype_name(out)}
        for key in ("running_mean", "running_var"):
            if key in bn_param:
                reply[key] = as_float64(bn_param[key], f"bn_param['{key}']")
                dtypes[key] = dtype_name(bn_param[key])
        return {"dtypes": dtypes}, reply
    if op == "forward_many":
        outs = [as_float64(forward(module, meta, {}, x[i], gamma[i], beta[i])[0][0], "out") for i in range(len(x))]
        return {}, {"out": np.stack(outs)}
    if op == "forward_backward":
        (out, cache), _ = forward(module, meta, arrays, x, gamma, beta)
        grads = module.batchnorm_backward(arrays["dout"].astype(dtype), cache)
        if not isinstance(grads, tuple) or len(grads) != 3:
            raise TypeError("batchnorm_backward must return a tuple (dx, dgamma, dbeta)")
        names = ("dx", "dgamma", "dbeta")
        return {}, {"out": as_float64(out, "out"), **{n: as_float64(g, n) for n, g in zip(names, grads)}}
    raise ValueError(f"unknown request {op!r}")


def main(path: str, message_chars: int) -> None:
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    log = os.open("student_output.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdin = open(os.devnull)
    write_message(replies, {"ok": True, "ready": True}, {})
    try:
        spec = importlib.util.spec_from_file_location("batchnormalization", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"Python has no way to import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["batchnormalization"] = module
        spec.loader.exec_module(module)
        import_error = None
    except BaseException as error:
        import_error = f"importing batchnormalization.py failed: {type(error).__name__}: {error}"
    while True:
        request = read_message(requests)
        if request is None:
            return
        if import_error is not None:
            write_message(replies, {"ok": False, "error": "ImportError", "message": import_error}, {})
            continue
        try:
            meta, arrays = request
            reply_meta, reply = handle(module, meta, arrays)
            reply_meta["ok"] = True
        except BaseException as error:
            reply_meta, reply = {"ok": False, "error": type(error).__name__, "message": str(error)[:message_chars]}, {}
        write_message(replies, reply_meta, reply)


main(sys.argv[1], int(sys.argv[2]))
