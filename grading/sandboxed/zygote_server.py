"""A worker slot's zygote: it runs in the slot's sandbox, imports once what every notebook kernel imports (torch
above all), then forks one kernel per submission. grading/isolation/zygote.py starts it and talks to it.

The grader runs `python -c <this file> CONTROL`, CONTROL being a socket inherited from the grader. Requests and
replies are JSON lines, each carrying the request's "id":
- {"op": "fork", "cwd", "env", "argv"}: fork a kernel (argv as ipykernel_launcher's); reply {"pid"}, its PID in
  the sandbox.
The grader itself kills what the kernels leave running and deletes what they leave in the sandbox. The zygote
judges nothing and holds nothing secret. It is not dumpable, so the kernels it forks (same user) cannot
read its memory or file descriptors, and each kernel closes the control socket before it runs a line of the
student's code.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
from typing import Any, NoReturn

PR_SET_DUMPABLE = 4


def preload() -> None:
    """Import and exercise once what each kernel would otherwise pay for: torch's import, its lazily loaded parts,
    and the modules the Jupyter kernel imports when it starts (about 0.15 s a kernel). Not torch.optim's
    optimizers: the first one imports torch._dynamo (about 2 s), and nothing the notebook runs under autograde
    builds one. Nothing here may start a thread: a fork keeps only the calling one."""
    import numpy  # noqa: F401
    import torch
    import torch.nn.functional as F
    from torch import nn
    import IPython.core.completerlib  # noqa: F401
    import IPython.core.debugger  # noqa: F401
    import IPython.core.oinspect  # noqa: F401
    import ipykernel.debugger  # noqa: F401
    import psutil  # noqa: F401
    import tornado.platform.asyncio  # noqa: F401
    from ipykernel import kernelapp  # noqa: F401

    x = torch.ones(2, 4, 3, 3, requires_grad=True)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    loss = F.cross_entropy(model(x) + F.layer_norm(x, x.shape[1:]).mean(), torch.tensor([0, 1]))
    loss.backward()


def become_kernel(control: socket.socket, request: dict[str, Any]) -> NoReturn:
    """The forked child: a fresh-looking process in the submission's folder, then the kernel. Never returns."""
    try:
        control.close()
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if sys.path and sys.path[0] == "":
            del sys.path[0]  # as ipykernel_launcher does; the kernel puts the working folder back
        import numpy
        import torch
        numpy.random.seed()  # a fresh process draws its own seeds
        torch.seed()
        from ipykernel import kernelapp
        import ipykernel_launcher
        sys.argv = [ipykernel_launcher.__file__, *request["argv"]]
        kernelapp.launch_new_instance(argv=request["argv"])
    finally:
        os._exit(0)


def serve(control: socket.socket) -> None:
    buffer = b""
    while True:
        data = control.recv(1 << 16)
        if not data:
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            try:
                request = json.loads(line)
            except ValueError:
                continue  # blank, or what a grader process killed halfway through a request left
            reply = {"id": request.get("id")}
            if request.get("op") == "fork":
                pid = os.fork()
                if pid == 0:
                    become_kernel(control, request)
                reply["pid"] = pid
            control.sendall(json.dumps(reply).encode() + b"\n")


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    if (os.getpid(), os.getppid()) != (2, 1):
        # Not the first process under bwrap's init in a PID namespace of its own: not in the sandbox, whose
        # processes and /tmp the grader cleans by way of this process.
        control.sendall(b'{"id": "ready", "error": "not started in a sandbox"}\n')
        return
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped as they end, leaving no zombies
    preload()
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        control.sendall(json.dumps({"id": "ready", "error": f"{threads} threads after preloading"}).encode() + b"\n")
        return
    control.sendall(b'{"id": "ready"}\n')
    serve(control)


main()
