"""What training on students' GPUs depends on, tested on the CPU: a run killed mid-epoch resumes at the next epoch
and ends as if never stopped, with its runs and data folders placed anywhere; and the grid's processes for several
GPUs start afresh (spawned), rebuilding a model defined in the notebook from the saved notebook.

Spawned processes import this module to build their models, so it imports little.
"""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from normlab import data, estimate, experiments, train
from normlab.notebook import MODEL_CELLS, NotebookFunction, load_models
from normlab.session import Session

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 4  # 128 training images in batches of 32


def resume_grid():
    """One narrow ResNet for 3 epochs, its weights averaged over the last 2."""
    return experiments.Grid(datasets=("cifar10",), norms=("BN",), stems=("imagenet",), base_width=8, synthetic=True,
                            train_size=128, test_size=64,
                            train=train.TrainConfig(epochs=3, batch_size=32, amp="off", channels_last=False,
                                                    ema_epochs=2))


def train_until_killed(step):
    """Train resume_grid into GRID_DIR (NORMLAB_RUNS decides where), and SIGKILL this process in its step-th
    training step: nothing gets to clean up, as when a Colab machine is recycled."""
    torch.set_num_threads(1)
    steps, take_step = [0], Session.step

    def step_or_die(session, x, y):
        steps[0] += 1
        if steps[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return take_step(session, x, y)

    Session.step = step_or_die
    experiments.run_grid(NotebookFunction("resnet18"), resume_grid(), progress=False)


def comparable(history):
    """A history without what differs between equal runs: times, and the record of resuming."""
    timing = {"train_seconds", "eval_seconds", "warmup_seconds"}
    epochs = [{k: v for k, v in e.items() if k not in timing} for e in history["epochs"]]
    return {**{k: v for k, v in history.items() if k not in ("execution", "resumed", "epochs")}, "epochs": epochs}


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """A folder standing in for a mounted Google Drive, with the synthetic data in its data/ folder; this process
    loads the grid's data from there too."""
    root = tmp_path / "drive"
    data.write_synthetic("cifar10", root / "data" / "synthetic", train_size=200, test_size=100)
    monkeypatch.setattr(experiments, "load_dataset",
                        lambda name, synthetic: data.load(name, root / "data" / "synthetic"))
    return root


def test_a_run_killed_mid_epoch_resumes_at_the_next_epoch_and_ends_as_if_never_stopped(drive, tmp_path):
    environment = {**os.environ, "NORMLAB_RUNS": str(drive / "runs"), "NORMLAB_DATA": str(drive / "data"),
                   "PYTHONPATH": str(REPO)}
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_training_gpu_paths import train_until_killed; train_until_killed({2 * STEPS_PER_EPOCH + 2})")
    killed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = drive / "runs" / "grid" / "cifar10-BN-imagenet"  # placed by NORMLAB_RUNS, not under the cwd
    stopped = json.loads((run_dir / "history.json").read_text())
    assert stopped["status"] == "running" and len(stopped["epochs"]) == 2 and (run_dir / "resume.pt").is_file()
    assert not (tmp_path / "runs").exists()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed process: one thread computes the same sums in the same order
    models, built = load_models(), []

    def resnet18(**options):  # the last model built of a grid's run is the one it trained: train() leaves it final
        built.append(models.resnet18(**options))
        return built[-1]

    try:
        resumed, = experiments.run_grid(resnet18, resume_grid(), drive / "runs" / "grid", progress=False)
        weights = built[-1].state_dict()
        uninterrupted, = experiments.run_grid(resnet18, resume_grid(), tmp_path / "reference", progress=False)
        reference = built[-1].state_dict()
    finally:
        torch.set_num_threads(threads)
    assert [r["epoch"] for r in resumed["resumed"]] == [3] and resumed["status"] == "complete"
    # bit for bit: the CPU is deterministic with one thread
    assert comparable(resumed) == comparable(uninterrupted)
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
    assert sorted(path.name for path in run_dir.iterdir()) == ["history.json"]  # what the TA reads, and no more


def builds_and_notes_its_process(**options):
    """A model builder that spawned processes can import; it notes which process built which model, and whether
    that process had inherited this one's modules (a forked one would have)."""
    note = Path(os.environ["NORMLAB_TEST_NOTES"]) / f"{os.getpid()}-{options['norm_type']}.json"
    note.write_text(json.dumps({"inherited": "normlab_test_parent_only" in sys.modules}))
    return NotebookFunction("resnet18")(**options)


def two_run_grid():
    return experiments.Grid(datasets=("cifar10",), norms=("BN", "GN"), stems=("imagenet",), base_width=8,
                            synthetic=True, train_size=64, test_size=32,
                            train=train.TrainConfig(epochs=1, batch_size=32, amp="off", channels_last=False))


def test_the_grid_shares_its_runs_among_fresh_spawned_processes_once_its_data_is_here(drive, tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    monkeypatch.setenv("NORMLAB_TEST_NOTES", str(notes))
    monkeypatch.setenv("NORMLAB_DATA", str(drive / "data"))  # where the processes find the synthetic data
    monkeypatch.setitem(sys.modules, "normlab_test_parent_only", sys)
    events, load, start = [], experiments.load_dataset, multiprocessing.context.SpawnProcess.start
    monkeypatch.setattr(experiments, "load_dataset", lambda *args: events.append("load") or load(*args))
    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start",
                        lambda process: events.append("start") or start(process))
    results = experiments.run_grid(builds_and_notes_its_process, two_run_grid(), tmp_path / "grid",
                                   devices=["cpu", "cpu"], progress=False)
    assert events == ["load", "start", "start"]  # downloaded once, here, before the processes could each try
    assert sorted(h["run"] for h in results) == ["cifar10-BN-imagenet", "cifar10-GN-imagenet"]
    assert all(h["status"] == "complete" for h in results)
    # this process builds each model once too, to find a missing answer before anything trains
    spawned = [path for path in notes.glob("*.json") if path.name.split("-")[0] != str(os.getpid())]
    assert len({path.name.split("-")[0] for path in spawned}) == 2 and len(spawned) == 2
    assert not any(json.loads(path.read_text())["inherited"] for path in spawned)


def test_a_model_no_other_process_can_build_is_trained_here_with_a_reason_and_counted_once(
        drive: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    models = load_models()

    # made inside a function: no other process can have it, and the saved notebook differs
    def resnet18(**options: Any) -> torch.nn.Module:
        return models.resnet18(**{**options, "num_groups": 2})

    grid = two_run_grid()
    assert experiments.builder_for_processes(models.resnet18, grid, grid.runs()) == \
        (NotebookFunction("resnet18"), None)
    builder, why_not = experiments.builder_for_processes(resnet18, grid, grid.runs())
    assert builder is None and "is not defined in a notebook's cells" in why_not
    monkeypatch.setattr(experiments, "usable_cuda_indices", lambda: [0, 1])  # two GPUs, as on Kaggle
    assert experiments.training_devices(resnet18, grid) == ["cuda:0"]  # what the time estimate counts
    assert experiments.training_devices(models.resnet18, grid) == ["cuda:0", "cuda:1"]

    def unanswered(**options: Any) -> torch.nn.Module:  # make_norm not written yet: its error, not a note
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        experiments.training_devices(unanswered, grid)
    results = experiments.run_grid(resnet18, grid, tmp_path / "grid", devices=["cpu", "cpu"], progress=False)
    assert all(h["status"] == "complete" for h in results)
    assert "Training on cpu only, one run after another, not on all 2 GPUs" in capsys.readouterr().out


# A notebook kernel (IPython, as Jupyter, Colab and Kaggle run one) that ran the model cells of norm.ipynb and then
# redefined make_no_norm: the file on disk no longer builds what the kernel builds.
KERNEL_EDIT = """
class ChannelScale(nn.Module):
    def __init__(self, num_channels):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_channels, 1, 1))

    def forward(self, x):
        return x * self.scale


def make_no_norm(num_channels):
    return ChannelScale(num_channels)
"""
KERNEL_GRID = """
import json, multiprocessing, os
from normlab import experiments, train

started, start = [], multiprocessing.context.SpawnProcess.start
multiprocessing.context.SpawnProcess.start = lambda process: started.append(process) or start(process)
grid = experiments.Grid(datasets=("cifar10",), norms=("BN", "none"), stems=("imagenet",), base_width=8,
                        synthetic=True, train_size=64, test_size=32,
                        train=train.TrainConfig(epochs=1, batch_size=32, amp="off", channels_last=False))
experiments.usable_cuda_indices = lambda: [0, 1]  # two GPUs, as on Kaggle
counted = experiments.training_devices(resnet18, grid)
results = experiments.run_grid(resnet18, grid, os.environ["GRID_OUT"], devices=["cpu", "cpu"], progress=False)
kernel_parameters = {norm: sum(p.numel() for p in resnet18(norm_type=norm, stem="imagenet", num_classes=10,
                                                           base_width=8).parameters()) for norm in grid.norms}
print("REPORT" + json.dumps({"processes": len(started), "counted": counted, "kernel": kernel_parameters,
                             "trained": {h["norm_type"]: h["parameters"] for h in results},
                             "statuses": [h["status"] for h in results]}))
"""
KERNEL = """
import json, os, sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
for cell in json.loads(os.environ["KERNEL_CELLS"]):
    if not shell.run_cell(cell).success:
        sys.exit(1)
"""


def test_the_grids_processes_build_the_model_the_running_kernel_defines_not_the_saved_notebooks(
        tmp_path: Path) -> None:
    notebook = json.loads((REPO / "norm.ipynb").read_text())
    sources = {cell["metadata"]["nbgrader"]["grade_id"]: "".join(cell["source"]) for cell in notebook["cells"]
               if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in MODEL_CELLS}
    cells = ["import torch\nfrom torch import nn\n", *(sources[grade_id] for grade_id in MODEL_CELLS), KERNEL_EDIT,
             KERNEL_GRID]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "NORMLAB_DATA": str(tmp_path / "data"),
                   "GRID_OUT": str(tmp_path / "grid"), "KERNEL_CELLS": json.dumps(cells)}
    done = subprocess.run([sys.executable, "-c", KERNEL], cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and "REPORT" in done.stdout, done.stdout + done.stderr
    report = json.loads(done.stdout.split("REPORT", 1)[1])
    saved = load_models()
    on_disk = sum(p.numel() for p in saved.resnet18(norm_type="none", stem="imagenet", num_classes=10,
                                                     base_width=8).parameters())
    assert report["kernel"]["none"] != on_disk  # the file on disk is not the code that runs
    assert report["processes"] == 2 and report["counted"] == ["cuda:0", "cuda:1"]
    assert report["trained"] == report["kernel"] and report["statuses"] == ["complete", "complete"]
    assert "Training on" not in done.stdout


def test_the_estimate_command_counts_the_gpus_that_will_train(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = []
    monkeypatch.setattr(estimate, "best_device", lambda: torch.device("cuda"))
    monkeypatch.setattr(estimate, "print_estimate", lambda *args, devices: counted.append(devices))
    monkeypatch.setattr(experiments, "usable_cuda_indices", lambda: [0, 1])  # two GPUs, as on Kaggle
    estimate.main([])
    monkeypatch.setattr(experiments, "builds_alike", lambda *args: False)  # no process could build the models
    estimate.main([])
    assert counted == [2, 1]
