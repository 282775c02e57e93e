"""Grading on a real Slurm, through the command docs/cluster.md documents ("Grading on a cluster (Slurm)"): a
one-node cluster (munged, slurmctld and slurmd from Debian's slurm-wlm and munge) configured in a temporary folder
and started here, as root, as CI runs. A shard cancelled midway is recovered by the documented steps, without
touching any job, and the merged grades then equal one unsharded run; what the partition cannot run is refused
before anything is queued.

Cheap on purpose: 7 students graded on Q1 and Q2 only (no notebook kernels), one CPU per shard. It skips, saying
why, where Slurm cannot start; with GRADING_REQUIRE_SLURM=1 (.ci/run sets it) it fails instead.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REFERENCE, REPO, STUB, autograde, gradebook_cells, submit
from grading.pipeline.shards import in_shard

SHARDS = 3
SIZES = {1: 4, 2: 2, 3: 1}  # students per shard: shard 1, cancelled midway, has the most
SCRIPT = "grading/cluster/autograde.sbatch"
AUTOGRADE_OPTIONS = ["--questions", "q1,q2"]
DAEMONS = {"munged": "munge", "slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm"}
START_TIMEOUT = 60
JOB_TIMEOUT = 300


def students():
    """{student id: answers}, SIZES[I] of them in shard I."""
    chosen, count = {}, dict.fromkeys(SIZES, 0)
    for i in range(1000):
        name = f"student{i:03d}"
        index = next(j for j in SIZES if in_shard(name, (j, SHARDS)))
        if count[index] < SIZES[index]:
            count[index] += 1
            chosen[name] = REFERENCE if len(chosen) % 2 else STUB
    return chosen


def cannot_start(reason):
    if os.environ.get("GRADING_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm is required here (GRADING_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(f"no Slurm to test against: {reason}")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def configure(root):
    """munge's key and slurm.conf for a one-node cluster whose every file is under root; the path of slurm.conf."""
    (root / "munge").mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=normlab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN
PartitionName=small Nodes={host} Default=YES MaxTime=30 State=UP
""")
    return conf


@pytest.fixture(scope="session")
def slurm_installed():
    """Skip (or fail) at once where Slurm cannot start, before the session's release is built for nothing."""
    if os.geteuid() != 0:
        cannot_start("starting slurmd takes root (CI runs as root)")
    missing = sorted({package for program, package in DAEMONS.items() if not shutil.which(program)})
    if missing:
        cannot_start(f"apt-get install {' '.join(missing)} (.ci/run does)")


@pytest.fixture(scope="module")
def slurm(slurm_installed, tmp_path_factory):
    """A running one-node cluster: the environment its commands need. munged, slurmctld and slurmd run in the
    foreground as this process's children, and are stopped by PID, after every job is cancelled."""
    root = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_CONF": str(configure(root))}
    logs = open(root / "daemons.log", "wb")
    daemons = [subprocess.Popen(command, env=env, stdout=logs, stderr=subprocess.STDOUT, start_new_session=True)
               for command in (["munged", "-F", "--force", f"--socket={root}/munge.socket",
                                f"--key-file={root}/munge/munge.key", f"--pid-file={root}/munged.pid",
                                f"--log-file={root}/munged.log", f"--seed-file={root}/munge/seed"],
                               ["slurmctld", "-D", "-i"], ["slurmd", "-D"])]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while sinfo(env) != "idle":
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                cannot_start(f"the cluster did not come up in {START_TIMEOUT} s: "
                             + (root / "daemons.log").read_text(errors="replace")[-1500:])
            time.sleep(0.5)
        yield env
    finally:
        queued = subprocess.run(["squeue", "-h", "-o", "%A"], env=env, capture_output=True, text=True).stdout.split()
        if queued:
            subprocess.run(["scancel", *queued], env=env)
            wait_for(queued, env, timeout=60)
        for daemon in reversed(daemons):
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        logs.close()


def sinfo(env):
    state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
    return state.stdout.strip() if state.returncode == 0 else ""


def wait_for(jobs, env, timeout=JOB_TIMEOUT):
    """Wait until none of jobs is queued or running any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run(["squeue", "-h", "-o", "%A", "-j", ",".join(jobs)], env=env, capture_output=True,
                                text=True)
        if listed.returncode == 0 and not listed.stdout.strip():
            return
        time.sleep(0.5)
    raise AssertionError(f"jobs {jobs} still queued after {timeout} s")


def grade_on_slurm(env, submissions, out, *options):
    """Run the documented command; its labelled job ids {"grading": id, "merge": id}."""
    completed = subprocess.run(["bash", SCRIPT, str(submissions), str(out), str(SHARDS), "--cpus", "1",
                                "--mem-per-cpu", "1G", "--python", sys.executable, *options, "--",
                                *AUTOGRADE_OPTIONS], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return dict(re.findall(r"^(grading|merge) job: (\d+)", completed.stdout, re.M))


@pytest.fixture(scope="module")
def course(bundle, release_dir, tmp_path_factory):
    """The submissions, graded once without shards: (submissions, the unsharded --out folder)."""
    root = tmp_path_factory.mktemp("slurm-course")
    submissions = submit(bundle, root / "submissions", students())
    whole = autograde(submissions, root / "whole", release_dir, *AUTOGRADE_OPTIONS, "--jobs", "2")
    assert whole.returncode == 0, whole.stderr[-3000:]
    return submissions, root / "whole"


def prepared(out, release_dir):
    """out, with each shard's course copied from the session's release (as conftest.autograde does, so that no
    shard builds the course again)."""
    for index in SIZES:
        shutil.copytree(release_dir / "course", out / f"shard-{index}" / "course")
    return out


def assert_same_as_unsharded(merged, whole):
    assert (merged / "grades.csv").read_bytes() == (whole / "grades.csv").read_bytes()
    assert gradebook_cells(merged / "course") == gradebook_cells(whole / "course")


def logs(jobs, shards):
    return {f"shard-{i}-job-{jobs['grading']}.log" for i in shards} | {f"merge-job-{jobs['merge']}.log"}


def test_a_shard_cancelled_midway_is_recovered_by_the_readme_steps(slurm, course, release_dir, tmp_path):
    """The documented sharded run, with one shard cancelled midway: the merge job says which shard is missing and
    merges nothing; the documented recovery step grades that shard again, and the merge equals one unsharded run,
    with a log per shard and per merge."""
    submissions, whole = course
    out = prepared(tmp_path / "out", release_dir)
    jobs = grade_on_slurm(slurm, submissions, out)
    victim = out / "shard-1"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not list(victim.glob("*/grade.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["scancel", f"{jobs['grading']}_1"], env=slurm, check=True)
    wait_for(list(jobs.values()), slurm)
    assert 1 <= len(list(victim.glob("*/grade.json"))) < SIZES[1], "shard 1 was not cancelled midway"
    merge_log = (out / "logs" / f"merge-job-{jobs['merge']}.log").read_text()
    assert f"shard 1/{SHARDS}" in merge_log and "not graded yet" in merge_log
    assert not (out / "merged" / "grades.csv").exists()
    again = grade_on_slurm(slurm, submissions, out, "--shards", "1")  # the documented recovery step
    wait_for(list(again.values()), slurm)
    assert_same_as_unsharded(out / "merged", whole)
    assert {p.name for p in (out / "logs").iterdir()} == logs(jobs, SIZES) | logs(again, [1])


def test_what_the_partition_cannot_run_is_refused_before_anything_is_queued(slurm, course, tmp_path):
    submissions, _ = course
    for too_much in (["--cpus", str(os.cpu_count() + 1)], ["--time", "2:00:00"]):
        refused = subprocess.run(["bash", SCRIPT, str(submissions), str(tmp_path / "out"), str(SHARDS), *too_much,
                                  "--python", sys.executable], cwd=REPO, env=slurm, capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 2 and "partition small" in refused.stderr, refused.stderr
        assert subprocess.run(["squeue", "-h"], env=slurm, capture_output=True, text=True).stdout == ""
