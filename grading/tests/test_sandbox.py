"""The sandbox on its own: what sandboxed code can see and reach, and every limit, with and without bwrap."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from grading.isolation.sandbox import PYTHON, FolderWatch, Limits, Sandbox, bwrap_works, kill_group
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


def run(tmp_path, code, timeout=60, use_bwrap=True, limits=LIMITS):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    box = Sandbox(work, limits, slot=3, use_bwrap=use_bwrap)
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


def test_tmp_and_shm_are_sized_so_they_cannot_fill_the_hosts_memory(tmp_path):
    completed = run(tmp_path, f"""
        for folder in ("/tmp", "/dev/shm"):
            written = 0
            try:
                with open(folder + "/fill", "wb") as out:
                    for _ in range(({Settings.tmpfs_bytes} >> 20) + 64):
                        out.write(bytes(1 << 20))
                        written += 1
            except OSError as error:
                print(folder, "full at", written, "MiB", error.errno)
    """)
    full = {line.split()[0]: int(line.split()[3]) for line in completed.output.splitlines() if "full at" in line}
    assert set(full) == {"/tmp", "/dev/shm"} and max(full.values()) <= Settings.tmpfs_bytes >> 20, completed.output


def test_a_process_that_fills_its_folder_is_stopped_and_one_that_writes_a_little_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(Settings, "folder_bytes", 2 << 20)
    work = tmp_path / "work"
    work.mkdir()
    box = Sandbox(work, LIMITS, slot=3)
    writers = {"fills": "open('big', 'wb').write(bytes(8 << 20))", "writes-a-little": "open('small', 'w').write('x')"}
    for name, code in writers.items():
        process = box.popen([PYTHON, "-c", f"{code}\nimport time\ntime.sleep(3)"])
        watch = FolderWatch(work, lambda: kill_group(process))
        watch.start()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            kill_group(process)
        watch.stop()
        assert watch.exceeded == (name == "fills"), name
        for path in work.iterdir():
            path.unlink()


def test_without_bwrap_the_limits_still_apply(tmp_path):
    completed = run(tmp_path, MEMORY_PROBE, use_bwrap=False)
    assert "MemoryError" in completed.output
    assert run(tmp_path, "while True: pass", timeout=2, use_bwrap=False).timed_out
