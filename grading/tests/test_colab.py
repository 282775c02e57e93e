"""Colab as a place to train: a simulated Colab runtime (a fake google.colab whose drive.mount makes a temporary
folder the Drive) keeps its runs and data on Drive without any code edited, copies the resume state there by time
rather than every epoch, and a run resumes from Drive on a recycled runtime (a new process, the local disk emptied)
as if never stopped. Nothing here writes to /content or a real Drive."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from normlab import checkpoint, data, places, train
from normlab.session import Session

REPO = Path(__file__).resolve().parents[2]

# One training run as a student's notebook would start it on Colab: set up, then train into the default runs folder.
# STOP_AT_STEP, if set, ends the process at that training step without any clean-up, as a recycled machine does.
NOTEBOOK_RUN = textwrap.dedent("""
    import json, os, sys
    import torch
    from torch import nn
    from normlab import RUNS_ROOT, data, places, train
    from normlab.session import Session

    places.set_up()
    stop_at = int(os.environ.get("STOP_AT_STEP", "0"))
    steps, take_step = [0], Session.step

    def step_or_vanish(session, x, y):
        steps[0] += 1
        if steps[0] == stop_at:
            os._exit(137)
        return take_step(session, x, y)

    Session.step = step_or_vanish
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    dataset = data.load_synthetic("cifar10", train_size=256, test_size=100)
    config = train.TrainConfig(epochs=3, batch_size=64, ema_epochs=1, amp="off", channels_last=False, compile=False)
    history = train.train(model, dataset, config, "cpu", out_dir=RUNS_ROOT / "tiny", progress=False)
    json.dump({"runs_root": str(RUNS_ROOT.resolve()), "data_root": str(data.DATA_ROOT.resolve()),
               "history": history}, sys.stdout)
""")


def fake_colab(root):
    """A google.colab package whose drive.mount, like Colab's, makes the mount point show My Drive; its files
    persist in root/drive-storage, as a real Drive's do across runtimes."""
    package = root / "fake-colab" / "google" / "colab"  # google stays a namespace package, as on Colab
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "drive.py").write_text(textwrap.dedent(f"""
        import os

        def mount(mountpoint, force_remount=False):
            storage = {str(root / "drive-storage")!r}
            os.makedirs(os.path.join(storage, "MyDrive"), exist_ok=True)
            if not os.path.islink(mountpoint):
                os.makedirs(os.path.dirname(mountpoint), exist_ok=True)
                os.symlink(storage, mountpoint)
    """))
    return root / "fake-colab"


def colab_runtime(root, **settings):
    """The environment of a fresh Colab runtime: google.colab importable, Drive mounted under root/content, the local
    disk's state in root/content/local; no NORMLAB_RUNS or NORMLAB_DATA, as a student who edited nothing has."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("NORMLAB_")}
    environment.update(PYTHONPATH=os.pathsep.join([str(root / "fake-colab"), str(REPO)]),
                       NORMLAB_DRIVE_MOUNT=str(root / "content" / "drive"),
                       NORMLAB_LOCAL_STATE=str(root / "content" / "local"), **settings)
    return environment


def run_notebook(root, **settings):
    """Run NOTEBOOK_RUN in a new process on the simulated runtime; its output, and its JSON report if it ended."""
    workdir = root / "content"
    workdir.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", NOTEBOOK_RUN], cwd=workdir, env=colab_runtime(root, **settings),
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout[done.stdout.index("{"):]) if done.returncode == 0 else None
    return done, report


def comparable(history):
    timing = {"train_seconds", "eval_seconds", "warmup_seconds"}
    epochs = [{k: v for k, v in e.items() if k not in timing} for e in history["epochs"]]
    return {**{k: v for k, v in history.items() if k not in ("execution", "resumed", "epochs")}, "epochs": epochs}


def test_a_fresh_colab_runtime_keeps_its_runs_on_drive_and_resumes_them_after_a_recycle(tmp_path):
    recycled, untouched = tmp_path / "recycled", tmp_path / "untouched"
    for root in (recycled, untouched):
        fake_colab(root)
    drive_folder = recycled / "drive-storage" / "MyDrive" / "norm"

    # every epoch reaches Drive at once (0 s between copies); the machine vanishes during epoch 3 (4 steps an epoch)
    first, report = run_notebook(recycled, STOP_AT_STEP="10", NORMLAB_DRIVE_SAVE_SECONDS="0")
    assert first.returncode == 137 and report is None
    assert first.stdout.startswith("Colab: Google Drive mounted")
    saved = torch.load(drive_folder / "runs" / "tiny" / checkpoint.RESUME_FILE, weights_only=True)
    assert saved["epoch"] == 2
    assert (drive_folder / "data" / "synthetic").is_dir()  # the data live on Drive too

    shutil.rmtree(recycled / "content")  # a recycled runtime: only Drive is left
    second, resumed = run_notebook(recycled)
    assert second.returncode == 0, second.stderr
    assert resumed["runs_root"] == str((drive_folder / "runs").resolve())
    assert resumed["data_root"] == str((drive_folder / "data").resolve())
    assert [r["epoch"] for r in resumed["history"]["resumed"]] == [3]
    assert not (drive_folder / "runs" / "tiny" / checkpoint.RESUME_FILE).exists()
    assert (drive_folder / "runs" / "tiny" / "checkpoint.pt").is_file()

    third, uninterrupted = run_notebook(untouched)
    assert third.returncode == 0, third.stderr
    assert uninterrupted["history"]["resumed"] == []
    assert comparable(resumed["history"]) == comparable(uninterrupted["history"])
    assert resumed["history"]["final"]["test_accuracy"] == uninterrupted["history"]["final"]["test_accuracy"]


def test_the_set_up_cell_gets_the_assignment_from_drive_on_a_fresh_colab_runtime(tmp_path):
    fake_colab(tmp_path)
    my_drive = tmp_path / "drive-storage" / "MyDrive"
    shutil.copytree(REPO / "normlab", tmp_path / "zip" / "norm" / "normlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    my_drive.mkdir(parents=True)
    shutil.make_archive(str(my_drive / "norm"), "zip", tmp_path / "zip")  # only norm.zip on Drive, as uploaded
    notebook = json.loads((REPO / "norm.ipynb").read_text())
    cell = "".join(next(c for c in notebook["cells"] if c.get("id") == "colab-setup")["source"])
    environment = colab_runtime(tmp_path)
    environment["PYTHONPATH"] = str(tmp_path / "fake-colab")  # normlab is not importable: it is not here yet
    (tmp_path / "content").mkdir()
    done = subprocess.run([sys.executable, "-c", cell + "\nprint(os.getcwd())"], cwd=tmp_path / "content",
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    said, working_in = done.stdout.splitlines()
    assert said.startswith("Colab: Google Drive mounted; runs in ")
    assert Path(working_in).resolve() == (my_drive / "norm").resolve()
    assert (my_drive / "norm" / "normlab" / "places.py").is_file()


@pytest.fixture
def simulated_drive(tmp_path, monkeypatch):
    """Drive mounted at tmp_path/drive and the local disk at tmp_path/local, in this process."""
    monkeypatch.setenv("NORMLAB_DRIVE_MOUNT", str(tmp_path / "drive"))
    monkeypatch.setenv("NORMLAB_LOCAL_STATE", str(tmp_path / "local"))
    return tmp_path / "drive" / "MyDrive" / "norm" / "runs"


def copies_to_drive(monkeypatch):
    """Count the copies of a resume state from the local disk to Drive."""
    copies, copy = [], shutil.copyfile
    monkeypatch.setattr(checkpoint.shutil, "copyfile", lambda source, target: copies.append(target) or
                        copy(source, target))
    return copies


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    data.write_synthetic("cifar10", root, train_size=256, test_size=100)
    return data.load("cifar10", root)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


CONFIG = train.TrainConfig(epochs=4, batch_size=64, ema_epochs=1, amp="off", channels_last=False, compile=False)


def test_a_run_on_drive_copies_its_state_there_by_time_and_on_a_stop(synthetic, simulated_drive, monkeypatch):
    monkeypatch.setenv("NORMLAB_DRIVE_SAVE_SECONDS", "3600")
    copies = copies_to_drive(monkeypatch)
    steps, take_step = [0], Session.step

    def step_or_stop(session, x, y):
        steps[0] += 1
        if steps[0] == 14:  # during epoch 4 of 4, 4 steps an epoch
            raise KeyboardInterrupt
        return take_step(session, x, y)

    with monkeypatch.context() as patch:
        patch.setattr(Session, "step", step_or_stop)
        with pytest.raises(train.TrainingStopped, match="Its state after epoch 3 is saved"):
            train.train(small_cnn(), synthetic, CONFIG, "cpu", out_dir=simulated_drive / "run", progress=False)
    assert len(copies) == 1  # three epochs saved, one copy to Drive: the stop's
    assert torch.load(simulated_drive / "run" / checkpoint.RESUME_FILE, weights_only=True)["epoch"] == 3

    shutil.rmtree(simulated_drive.parents[2].parent / "local")  # the local disk of a recycled machine
    resumed = train.train(small_cnn(), synthetic, CONFIG, "cpu", out_dir=simulated_drive / "run", progress=False)
    uninterrupted = train.train(small_cnn(), synthetic, CONFIG, "cpu", progress=False)
    assert [r["epoch"] for r in resumed["resumed"]] == [4]
    assert comparable(resumed) == comparable(uninterrupted)
    assert not list((simulated_drive / "run").glob("resume.pt*"))


def test_a_state_on_drive_is_saved_locally_and_the_newer_of_the_two_is_resumed_from(simulated_drive, monkeypatch):
    monkeypatch.setenv("NORMLAB_DRIVE_SAVE_SECONDS", "3600")
    copies = copies_to_drive(monkeypatch)
    resume_state = checkpoint.ResumeState(simulated_drive / "run")
    assert resume_state.local_dir.is_relative_to(simulated_drive.parents[2].parent / "local")
    resume_state.save({"epoch": 1})
    resume_state.flush()
    resume_state.save({"epoch": 2})
    # a restarted kernel on the same machine: Drive holds epoch 1, the local disk epoch 2
    restarted = checkpoint.ResumeState(simulated_drive / "run")
    assert len(copies) == 1 and checkpoint.load(simulated_drive / "run", "cpu")["epoch"] == 1
    assert restarted.load("cpu")["epoch"] == 2
    restarted.discard()
    assert restarted.load("cpu") is None


def test_off_colab_nothing_is_set_up_and_runs_stay_beside_the_code(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("NORMLAB_RUNS", raising=False)
    assert not places.on_colab() and places.runs_root() == Path("runs")
    places.set_up()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Not on Colab or Kaggle: nothing to set up")
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    places.set_up()
    assert capsys.readouterr().out.startswith("Kaggle: nothing to set up")
    assert checkpoint.ResumeState(tmp_path).local_dir is None  # off Drive, every epoch's state goes to out_dir
