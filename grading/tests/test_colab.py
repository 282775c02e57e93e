"""Colab and Kaggle as places to train. A simulated Colab runtime (a fake google.colab whose drive.mount makes a
temporary folder the Drive) keeps its runs and data on Drive without any code edited, copies the resume state there by
time rather than every epoch, and a run resumes from Drive on a recycled runtime (a new process, the local disk
emptied) as if never stopped. A simulated Kaggle session (its environment variable, a read-only input folder and a
working folder in temporary folders) gets the assignment from an attached dataset into the working folder, keeps its
runs and data there, and resumes in the next session. Nothing here writes to /content, /kaggle or a real Drive."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from torch import nn

from normlab import checkpoint, data, places, train
from normlab.notebook import NotebookFunction
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


def fake_colab(root: Path) -> Path:
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


def colab_runtime(root: Path, **settings: str) -> dict[str, str]:
    """The environment of a fresh Colab runtime: google.colab importable, Drive mounted under root/content, the local
    disk's state in root/content/local; no NORMLAB_RUNS or NORMLAB_DATA, as a student who edited nothing has."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("NORMLAB_")}
    environment.update(PYTHONPATH=os.pathsep.join([str(root / "fake-colab"), str(REPO)]),
                       NORMLAB_DRIVE_MOUNT=str(root / "content" / "drive"),
                       NORMLAB_LOCAL_STATE=str(root / "content" / "local"), **settings)
    return environment


def run_notebook(root: Path, **settings: str) -> tuple[subprocess.CompletedProcess, Optional[dict]]:
    """Run NOTEBOOK_RUN in a new process on the simulated runtime; its output, and its JSON report if it ended."""
    workdir = root / "content"
    workdir.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", NOTEBOOK_RUN], cwd=workdir, env=colab_runtime(root, **settings),
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout[done.stdout.index("{"):]) if done.returncode == 0 else None
    return done, report


def comparable(history: dict) -> dict:
    timing = {"train_seconds", "eval_seconds", "warmup_seconds"}
    epochs = [{k: v for k, v in e.items() if k not in timing} for e in history["epochs"]]
    return {**{k: v for k, v in history.items() if k not in ("execution", "resumed", "epochs")}, "epochs": epochs}


def test_a_fresh_colab_runtime_keeps_its_runs_on_drive_and_resumes_them_after_a_recycle(tmp_path: Path) -> None:
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


# The comparison grid as a student's notebook trains it on Colab: two processes (two devices), the runs in the default
# grid folder. STOP_AT_STEP, if set, ends each process at that training step, as a recycled machine does.
GRID_RUN = textwrap.dedent(f"""
    import json, sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from normlab import experiments, places, train
    from test_colab import build_or_vanish

    places.set_up()
    grid = experiments.Grid(datasets=("cifar10",), norms=("BN", "GN"), stems=("cifar",), base_width=8, synthetic=True,
                            train_size=128, test_size=64,
                            train=train.TrainConfig(epochs=3, batch_size=32, ema_epochs=1, amp="off",
                                                    channels_last=False))
    histories = experiments.run_grid(build_or_vanish, grid, devices=["cpu", "cpu"], progress=False)
    json.dump({{"grid_dir": str(experiments.GRID_DIR.resolve()), "histories": histories}}, sys.stdout)
""")


def build_or_vanish(**options: Any) -> nn.Module:
    """The notebook's resnet18, built in one of the grid's processes, which from then on ends at training step
    STOP_AT_STEP if that is set, without any clean-up."""
    stop_at = int(os.environ.get("STOP_AT_STEP", "0"))
    if stop_at and not getattr(Session.step, "vanishes", False):
        steps, take_step = [0], Session.step

        def step_or_vanish(session: Session, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            steps[0] += 1
            if steps[0] == stop_at:
                os._exit(137)
            return take_step(session, x, y)

        step_or_vanish.vanishes = True
        Session.step = step_or_vanish
    return NotebookFunction("resnet18")(**options)


def test_the_grids_processes_on_colab_keep_their_runs_on_drive_and_resume_them_after_a_recycle(
        tmp_path: Path) -> None:
    fake_colab(tmp_path)
    workdir, drive_folder = tmp_path / "content", tmp_path / "drive-storage" / "MyDrive" / "norm"
    workdir.mkdir()

    def grid_run(**settings: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", GRID_RUN], cwd=workdir, env=colab_runtime(tmp_path, **settings),
                              capture_output=True, text=True, timeout=600)

    # each process vanishes during epoch 3 of its run (4 steps an epoch); every epoch reaches Drive at once
    first = grid_run(STOP_AT_STEP="10", NORMLAB_DRIVE_SAVE_SECONDS="0")
    assert first.returncode != 0 and "2 training process(es) failed" in first.stderr, first.stderr
    runs = drive_folder / "runs" / "grid"
    for name in ("cifar10-BN-cifar", "cifar10-GN-cifar"):
        assert torch.load(runs / name / checkpoint.RESUME_FILE, weights_only=True)["epoch"] == 2
    assert (drive_folder / "data" / "synthetic").is_dir() and not (workdir / "runs").exists()

    shutil.rmtree(tmp_path / "content" / "local")  # a recycled runtime: only Drive is left
    second = grid_run()
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout[second.stdout.index("{"):])
    assert report["grid_dir"] == str(runs.resolve())
    assert [[r["epoch"] for r in h["resumed"]] for h in report["histories"]] == [[3], [3]]
    assert all(h["status"] == "complete" for h in report["histories"])
    assert sorted(path.name for path in (runs / "cifar10-BN-cifar").iterdir()) == ["history.json"]


def test_the_set_up_cell_gets_the_assignment_from_drive_on_a_fresh_colab_runtime(tmp_path: Path) -> None:
    fake_colab(tmp_path)
    my_drive = tmp_path / "drive-storage" / "MyDrive"
    shutil.copytree(REPO / "normlab", tmp_path / "zip" / "norm" / "normlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    my_drive.mkdir(parents=True)
    shutil.make_archive(str(my_drive / "norm"), "zip", tmp_path / "zip")  # only norm.zip on Drive, as uploaded
    notebook = json.loads((REPO / "norm.ipynb").read_text())
    cell = "".join(next(c for c in notebook["cells"] if c.get("id") == "setup")["source"])
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


def kaggle_session(root: Path) -> dict[str, str]:
    """The environment of an interactive Kaggle session under root/kaggle, with the assignment not importable, and the
    working folder as the current folder."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("NORMLAB_")}
    environment.update(KAGGLE_KERNEL_RUN_TYPE="Interactive", PYTHONPATH="",
                       NORMLAB_KAGGLE_FOLDER=str(root / "kaggle" / "working" / "norm"),
                       NORMLAB_KAGGLE_INPUT=str(root / "kaggle" / "input"))
    (root / "kaggle" / "working").mkdir(parents=True, exist_ok=True)
    return environment


def setup_cell() -> str:
    notebook = json.loads((REPO / "norm.ipynb").read_text())
    return "".join(next(c for c in notebook["cells"] if c.get("id") == "setup")["source"])


def attached_dataset(root: Path, as_zip: bool) -> None:
    """The assignment as a Kaggle dataset attached to the notebook: read-only, its folder or the norm.zip uploaded."""
    dataset = root / "kaggle" / "input" / "norm-assignment"
    shutil.copytree(REPO / "normlab", root / "upload" / "norm" / "normlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "upload" / "norm" / "batchnormalization.py").write_text("ANSWER = 'the released stub'\n")
    if as_zip:
        dataset.mkdir(parents=True)
        shutil.make_archive(str(dataset / "norm"), "zip", root / "upload")
    else:
        shutil.copytree(root / "upload", dataset)
    for path in sorted(dataset.rglob("*"), reverse=True) + [dataset]:
        path.chmod(0o555 if path.is_dir() else 0o444)


IMPORTED = "import batchnormalization\nprint('imported', batchnormalization.__file__, batchnormalization.ANSWER)\n"


@pytest.mark.parametrize("as_zip", [False, True])
def test_the_set_up_cell_copies_the_assignment_from_a_kaggle_dataset_into_the_working_folder(tmp_path: Path,
                                                                                             as_zip: bool) -> None:
    attached_dataset(tmp_path, as_zip)
    working = tmp_path / "kaggle" / "working"
    done = subprocess.run([sys.executable, "-c", setup_cell() + IMPORTED + "print(os.getcwd())"], cwd=working,
                          env=kaggle_session(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    said, imported, working_in = done.stdout.splitlines()
    assert said.startswith(f"Kaggle: runs in {working / 'norm' / 'runs'} and data in {working / 'norm' / 'data'}")
    assert Path(working_in) == working / "norm"
    assert imported == f"imported {working / 'norm' / 'batchnormalization.py'} the released stub"
    assert os.access(working / "norm" / "batchnormalization.py", os.W_OK) and (working / "norm" / "runs").is_dir()


def test_without_the_dataset_attached_the_kaggle_set_up_cell_says_how_to_attach_it(tmp_path: Path) -> None:
    (tmp_path / "kaggle" / "input").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", setup_cell()], cwd=tmp_path / "kaggle" / "working",
                          env=kaggle_session(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "FileNotFoundError: The assignment is not attached to this notebook" in done.stderr
    assert "add it to this notebook (Add Input), and run this cell again" in done.stderr


def test_a_kaggle_session_keeps_its_runs_and_edits_in_the_working_folder_and_resumes_in_the_next(
        tmp_path: Path) -> None:
    attached_dataset(tmp_path, as_zip=False)
    working = tmp_path / "kaggle" / "working" / "norm"

    def session(**settings: str) -> tuple[subprocess.CompletedProcess, Optional[dict]]:
        environment = {**kaggle_session(tmp_path), "NORMLAB_LOCAL_STATE": str(tmp_path / "local"), **settings}
        done = subprocess.run([sys.executable, "-c", setup_cell() + IMPORTED + NOTEBOOK_RUN], cwd=working.parent,
                              env=environment, capture_output=True, text=True, timeout=600)
        report = json.loads(done.stdout[done.stdout.index("{"):]) if done.returncode == 0 else None
        return done, report

    first, report = session(STOP_AT_STEP="10")  # the session ends during epoch 3 (4 steps an epoch)
    assert first.returncode == 137 and report is None
    assert torch.load(working / "runs" / "tiny" / checkpoint.RESUME_FILE, weights_only=True)["epoch"] == 2
    assert not (tmp_path / "local").exists()  # a local disk: every epoch's state goes straight to the run's folder
    assert (working / "data" / "synthetic").is_dir()

    (working / "batchnormalization.py").write_text("ANSWER = 'my answer'\n")
    second, resumed = session()  # Persistence > Files: the next session finds the working folder as it was
    assert second.returncode == 0, second.stderr
    assert f"imported {working / 'batchnormalization.py'} my answer" in second.stdout.splitlines()
    assert resumed["runs_root"] == str((working / "runs").resolve())
    assert resumed["data_root"] == str((working / "data").resolve())
    assert [r["epoch"] for r in resumed["history"]["resumed"]] == [3] and resumed["history"]["status"] == "complete"


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


def test_off_colab_and_kaggle_nothing_is_set_up_and_runs_stay_beside_the_code(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.delenv("NORMLAB_RUNS", raising=False)
    monkeypatch.delenv("NORMLAB_DATA", raising=False)
    assert not places.on_colab() and places.kept_folder() is None
    assert places.runs_root() == Path("runs") and places.data_root(tmp_path) == tmp_path
    places.set_up()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Not on Colab or Kaggle: nothing to set up")
    assert checkpoint.ResumeState(tmp_path).local_dir is None  # off Drive, every epoch's state goes to out_dir
