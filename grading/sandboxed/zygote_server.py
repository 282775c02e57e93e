"""A worker slot's zygote: it runs in the slot's sandbox, imports once what every notebook kernel imports (torch
above all), then forks one kernel per submission. grading/isolation/zygote.py starts it and talks to it.

The grader runs `python -c <this file> CONTROL`, CONTROL being a socket inherited from the grader. Requests and
replies are JSON lines, each carrying the request's "id":
- {"op": "fork", "cwd", "env", "argv"}: fork a kernel (argv as ipykernel_launcher's); reply {"pid"}, its PID in
  the sandbox;
- {"op": "clean"}: delete what the kernels left in /tmp and /dev/shm; reply {"left"}, what could not be deleted.
  What the grader mounted there (the slot's folder, and the course and Python environment when they live under
  /tmp) is spared, and a folder on the way to such a mount point is emptied around it.
The zygote judges nothing and holds nothing secret. It is not dumpable, so the kernels it forks (same user) cannot
read its memory or file descriptors, and each kernel closes the control socket before it runs a line of the
student's code.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import sys

PR_SET_DUMPABLE = 4


def preload():
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


def become_kernel(control, request):
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


def mount_points():
    """The mount points of the sandbox (its own mount namespace), from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as mountinfo:
        escaped = [line.split()[4] for line in mountinfo]
    return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point) for point in escaped]


def empty_shared_folders():
    """Empty /tmp and /dev/shm for the next kernel; what could not be removed."""
    mounted = set(mount_points())
    left = []
    for folder in ("/tmp", "/dev/shm"):
        empty(folder, mounted, left)
    return left


def empty(folder, mounted, left):
    """Delete what is in folder but the mount points in mounted; a folder on the way to one is emptied around it
    (where the grader is not root, the sandbox's user owns such folders and could leave files in them)."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for name in entries:
        path = os.path.join(folder, name)
        if path in mounted:
            continue
        if any(point.startswith(path + os.sep) for point in mounted):
            empty(path, mounted, left)
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, onerror=_make_removable)
            else:
                os.unlink(path)
        except OSError:
            pass
        if os.path.lexists(path):
            left.append(path)


def _make_removable(function, path, error):
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_make_removable)
    else:
        function(path)


def serve(control):
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
            elif request.get("op") == "clean":
                reply["left"] = empty_shared_folders()
            control.sendall(json.dumps(reply).encode() + b"\n")


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    if (os.getpid(), os.getppid()) != (2, 1):
        # Not the first process under bwrap's init in a PID namespace of its own: not in the sandbox, where
        # "clean" would empty the machine's /tmp.
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
