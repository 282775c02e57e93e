"""The first program of every sandboxed command: it sets the resource limits, forbids what no limit bounds, then
executes the command, which keeps both. The grader runs `python -I -S -c <this file> LIMITS -- COMMAND...`, where
LIMITS is a JSON object {"cpu", "as", "nproc", "fsize", "nofile"} (isolation/sandbox.py).

Forbidden, by a seccomp filter: SysV shared memory, semaphores and message queues, POSIX message queues and the
kernel's keyrings. They belong to the IPC namespace or to the user, not to a process: a kernel forked from a
slot's zygote would share them with every kernel after it, and shared memory is counted by no memory limit. No
code a student needs uses them (Python's multiprocessing and torch share memory through files in /dev/shm, which
the disk bound counts); their calls fail with EPERM. Calls of another architecture (int 0x80 from a 64-bit
process, x32) fail too, so that the filter cannot be gone round.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import struct
import sys

# The audit architecture and the forbidden calls' numbers: shmget shmat shmctl shmdt, semget semop semctl
# semtimedop, msgget msgsnd msgrcv msgctl, mq_open mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr,
# add_key request_key keyctl.
FORBIDDEN = {
    "x86_64": (0xC000003E, [29, 30, 31, 67, 64, 65, 66, 220, 68, 69, 70, 71, 240, 241, 242, 243, 244, 245,
                            248, 249, 250]),
    "aarch64": (0xC00000B7, [194, 196, 195, 197, 190, 193, 191, 192, 186, 189, 188, 187, 180, 181, 182, 183, 184,
                             185, 217, 218, 219]),
}
X32_SYSCALL_BIT = 0x40000000
LOAD_WORD, JUMP_IF_EQUAL, JUMP_IF_AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06
ALLOW, FAIL_WITH_EPERM = 0x7FFF0000, 0x00050001
PR_SET_SECCOMP, SECCOMP_MODE_FILTER, PR_SET_NO_NEW_PRIVS = 22, 2, 38


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


def filter_program(architecture: int, numbers: list[int]) -> list[bytes]:
    """A classic BPF program: other architectures and the forbidden numbers fail, everything else is allowed."""
    count = len(numbers)
    program = [instruction(LOAD_WORD, 4), instruction(JUMP_IF_EQUAL, architecture, 1, 0),
               instruction(RETURN, FAIL_WITH_EPERM), instruction(LOAD_WORD, 0),
               instruction(JUMP_IF_AT_LEAST, X32_SYSCALL_BIT, count + 1, 0)]
    program += [instruction(JUMP_IF_EQUAL, number, count - i, 0) for i, number in enumerate(numbers)]
    return program + [instruction(RETURN, ALLOW), instruction(RETURN, FAIL_WITH_EPERM)]


def forbid() -> None:
    machine = platform.machine()
    if machine not in FORBIDDEN:
        sys.exit(f"confine: no system call filter for {machine}; the grader runs on {', '.join(FORBIDDEN)}")
    program = filter_program(*FORBIDDEN[machine])
    code = ctypes.create_string_buffer(b"".join(program))
    fprog = SockFprog(len(program), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0):
        sys.exit(f"confine: the system call filter could not be installed: {os.strerror(ctypes.get_errno())}")


def main(limits: dict[str, int], command: list[str]) -> None:
    for name, value in [("CPU", limits["cpu"]), ("AS", limits["as"]), ("NPROC", limits["nproc"]),
                        ("FSIZE", limits["fsize"]), ("NOFILE", limits["nofile"]), ("CORE", 0)]:
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))
    forbid()
    os.execvp(command[0], command)


main(json.loads(sys.argv[1]), sys.argv[3:])
