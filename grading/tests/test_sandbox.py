"""The sandbox on its own: what sandboxed code can see and reach, and every limit, with and without bwrap."""
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grading.isolation.sandbox import Isolation, Limits, Sandbox, bwrap_works
from grading.settings import Settings

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(cpu_seconds=30, memory_mb=1024, processes=40, file_size_mb=8, open_files=128, output_kb=64)

MEMORY_PROBE = """
try:
    block = bytearray(4 << 30)
    print("allocated")
except MemoryError:
    print("MemoryError")
"""

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is required: .ci/run installs it")


def run(tmp_path, code, timeout=60, isolation=Isolation.BUBBLEWRAP, limits=LIMITS):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    box = Sandbox(work, limits, slot=3, isolation=isolation)
    return box.run([sys.executable, "-c", textwrap.dedent(code)], timeout=timeout)


def test_no_network_reaches_the_host(tmp_path, listener):
    port, received = listener
    completed = run(tmp_path, f"""
        import socket
        for address in [("127.0.0.1", {port}), ("10.0.0.1", 80), ("1.1.1.1", 53)]:
            try:
                socket.create_connection(address, timeout=2).sendall(b"exfiltrated")
                print("REACHED", address)
            except OSError as error:
                print("blocked", address, error.errno)
    """)
    assert "REACHED" not in completed.output and completed.output.count("blocked") == 3, completed.output
    time.sleep(0.5)
    assert received == []


def test_only_the_environment_normlab_and_its_folder_are_visible(tmp_path):
    """No course file (sources with solutions, hidden tests, the gradebook), no other folder, no host files."""
    limits = Limits(cpu_seconds=60, memory_mb=6144, processes=40, file_size_mb=8, open_files=256, output_kb=64)
    (tmp_path / "other-student").mkdir()
    completed = run(tmp_path, f"""
        import json, os
        paths = [{str(REPO / "grading")!r}, {str(REPO / "batchnormalization.py")!r}, {str(REPO / "norm.ipynb")!r},
                 {str(REPO / ".git")!r}, "/home", "/etc/passwd", "/var", {str(tmp_path / "other-student")!r}]
        import normlab.checks
        open("written.txt", "w").write("ok")
        open("/tmp/private.txt", "w").write("ok")
        print(json.dumps({{"visible": [p for p in paths if os.path.exists(p)], "pid": os.getpid(),
                          "uid": os.getuid(), "siblings": os.listdir({str(tmp_path)!r})}}))
    """, limits=limits)
    assert completed.returncode == 0, completed.output
    seen = json.loads(completed.output.strip().splitlines()[-1])
    assert seen["visible"] == [] and seen["siblings"] == ["work"], seen
    assert seen["pid"] < 10 and (seen["uid"] != 0 or os.geteuid() != 0), seen
    assert (tmp_path / "work" / "written.txt").read_text() == "ok"
    assert not (Path("/tmp") / "private.txt").exists()


def test_processes_are_limited_and_all_killed_at_the_end(tmp_path):
    completed = run(tmp_path, """
        import os, time
        started = 0
        try:
            for _ in range(500):
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                started += 1
        except OSError:
            pass
        print("started", started)
    """)
    started = int(completed.output.split()[-1])
    assert started < LIMITS.processes, completed.output


def test_memory_is_limited(tmp_path):
    completed = run(tmp_path, MEMORY_PROBE)
    assert "MemoryError" in completed.output


def test_file_size_is_limited(tmp_path):
    completed = run(tmp_path, """
        with open("big.bin", "wb") as f:
            f.write(b"x" * (64 << 20))
    """)
    assert completed.returncode != 0
    assert (tmp_path / "work" / "big.bin").stat().st_size <= LIMITS.file_size_mb << 20


def test_wall_clock_timeout_kills_everything_even_a_new_session(tmp_path):
    marker = tmp_path / "work" / "still-running"
    started = time.monotonic()
    completed = run(tmp_path, f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(4)
            open({str(marker)!r}, "w").write("escaped")
            os._exit(0)
        while True:
            pass
    """, timeout=2)
    assert completed.timed_out and time.monotonic() - started < 10
    time.sleep(4)
    assert not marker.exists(), "a process outlived the sandbox"


def test_cpu_time_is_limited(tmp_path):
    limits = Limits(cpu_seconds=1, memory_mb=1024, processes=40, file_size_mb=8, open_files=128, output_kb=64)
    started = time.monotonic()
    completed = run(tmp_path, "while True: pass", timeout=30, limits=limits)
    assert not completed.timed_out and completed.returncode != 0 and time.monotonic() - started < 10


def test_output_is_capped(tmp_path):
    completed = run(tmp_path, "print('x' * (8 << 20))")
    assert len(completed.output) <= LIMITS.output_kb << 10


WRITERS = {  # what a submission's processes write, and what stops them, with a disk bound of 4 MiB and 500 entries
    "its folder": ("open('big', 'wb').write(bytes(6 << 20))", "wrote more than 4 MiB"),
    "/tmp": ("open('/tmp/big', 'wb').write(bytes(6 << 20))", "full"),
    "/dev/shm": ("open('/dev/shm/big', 'wb').write(bytes(6 << 20))", "full"),
    "past the bound in all places together": (
        "for path in ('a', '/tmp/a', '/dev/shm/a'):\n    open(path, 'wb').write(bytes(2 << 20))",
        "wrote more than 4 MiB"),
    "many files in /tmp": ("for i in range(600):\n    open(f'/tmp/{i}', 'w').close()", "more than 500 files"),
    "folders nested deeper than allowed": ("import os\nos.makedirs('/'.join(['d'] * 70))", "nested folders"),
    "a little in each place": ("for path in ('a', '/tmp/a', '/dev/shm/a'):\n    open(path, 'wb').write(bytes(1 << 20))",
                               ""),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_one_disk_bound_holds_for_everything_a_sandbox_writes(tmp_path, monkeypatch, writer):
    """Its folder on the host's disk, /tmp and /dev/shm in host memory: one bound for all of them together (and
    for their entries, and the depth of folders), declared once in Settings. A process past it is stopped, and a
    single tmpfs is full at the bound by itself; one that writes a little everywhere runs to its end."""
    monkeypatch.setattr(Settings, "disk_bytes", 4 << 20)
    monkeypatch.setattr(Settings, "disk_entries", 500)
    code, stopped_for = WRITERS[writer]
    completed = run(tmp_path, f"{code}\nprint('written', flush=True)\nimport time\ntime.sleep(1.5)", timeout=30)
    if stopped_for == "full":
        assert "No space left on device" in completed.output and "written" not in completed.output, completed
    elif stopped_for:
        assert stopped_for in completed.stopped, completed
    else:
        assert not completed.stopped and completed.returncode == 0 and "written" in completed.output, completed
    assert sum(p.lstat().st_blocks * 512 for p in (tmp_path / "work").rglob("*")) <= 8 << 20


def test_without_bwrap_the_limits_still_apply(tmp_path):
    completed = run(tmp_path, MEMORY_PROBE, isolation=Isolation.NONE)
    assert "MemoryError" in completed.output
    assert run(tmp_path, "while True: pass", timeout=2, isolation=Isolation.NONE).timed_out
