"""The comparison grid: datasets x normalization types x stems, trained with normlab.train.

Each run writes <grid folder>/<dataset>-<norm>-<stem>/history.json, and its state after every epoch: a stopped grid,
run again, skips the finished runs and resumes the others after their last finished epoch. A finished run keeps its
history only (its final weights are not kept), so the folder that students submit stays small. The grid folder is
GRID_DIR (runs/grid, under NORMLAB_RUNS if set) unless given. With several GPUs, one spawned process per GPU takes
runs from a shared queue, once each dataset is downloaded, and builds its models with the code that the running
notebook defines (normlab.kernel), whatever the notebook file on disk holds. `show` prints a markdown summary and
shows the plots (normlab.plots).
"""
import hashlib
import json
import multiprocessing
import os
import pickle
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from tqdm.auto import tqdm

from normlab import RUNS_ROOT
from normlab import data as cifar
from normlab import kernel
from normlab.devices import usable_cuda_indices
from normlab.notebook import NotebookFunction
from normlab.train import (TrainConfig, TrainingStopped, best_device, seed_everything, steady_epoch_seconds, train,
                           warmup_seconds)

GRID_DIR = RUNS_ROOT / "grid"  # the real grid: submitted with the notebook
FOLLOW_SECONDS = 5  # how often the progress bar of the grid's processes reads their histories
DATASET_ORDER = ("cifar10", "cifar100")
NORM_ORDER = ("BN", "LN", "IN", "GN", "none")
STEM_ORDER = ("imagenet", "cifar")


@dataclass(frozen=True)
class Grid:
    """What to compare and how to train each variant. `Grid.smoke()` is the tiny CPU configuration. To train less,
    take one dataset (`Grid(datasets=("cifar10",))`) or fewer epochs (`Grid(train=TrainConfig(epochs=15))`)."""

    datasets: tuple = DATASET_ORDER
    norms: tuple = NORM_ORDER
    stems: tuple = STEM_ORDER
    base_width: int = 64
    num_groups: int = 4
    synthetic: bool = False
    train_size: Optional[int] = None  # train on the first train_size images only (None: all)
    test_size: Optional[int] = None
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def smoke(cls):
        """Seconds on a CPU (4.6 to 18.0 s for its 10 runs, measured on 2 shared cores: BENCHMARKS.md): narrow
        ResNets, two epochs on 64 synthetic CIFAR-10 images, evaluated on 32 (the last evaluation, with flip TTA,
        passes over them twice).

        Plain float32 NCHW: on CPUs, bf16 and channels_last slow GroupNorm down several times at these widths.
        """
        return cls(datasets=("cifar10",), base_width=8, synthetic=True, train_size=64, test_size=32,
                   train=TrainConfig(epochs=2, batch_size=32, eval_batch_size=32, amp="off", channels_last=False))

    def runs(self):
        return [Run(dataset, norm, stem) for dataset in self.datasets for norm in self.norms for stem in self.stems]

    def fingerprint(self, run):
        settings = {k: v for k, v in asdict(self).items() if k not in ("datasets", "norms", "stems")}
        return hashlib.sha1(json.dumps([settings, asdict(run)], sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    dataset: str
    norm_type: str
    stem: str

    @property
    def name(self):
        return f"{self.dataset}-{self.norm_type}-{self.stem}"


def available_devices():
    """Every CUDA GPU this torch can run on, if there are several, else the best device there is."""
    usable = usable_cuda_indices()
    if len(usable) > 1:
        return [f"cuda:{index}" for index in usable]
    return [str(best_device())]


def load_dataset(name, synthetic):
    return cifar.load_synthetic(name) if synthetic else cifar.load(name, download_if_missing=True)


def is_finished(run_dir, fingerprint):
    history = read_history(run_dir)
    return history is not None and history.get("fingerprint") == fingerprint and history["status"] != "running"


def read_history(run_dir):
    path = Path(run_dir) / "history.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_grid(build_model: Callable, grid: Grid, out_dir: Union[str, Path] = GRID_DIR,
             devices: Optional[list[str]] = None, progress: bool = True) -> list[dict]:
    """Train every run of grid that is not finished yet, and return the histories of all its runs.

    build_model(norm_type=..., stem=..., num_classes=..., base_width=..., num_groups=...) returns a fresh model.
    devices defaults to every CUDA GPU; with more than one, the runs are shared among spawned processes, one per
    device (run_in_processes), which build exactly the models build_model builds here (plan_training); where they
    cannot, the runs train here on the first device, one after another, and the grid says why.
    """
    out_dir = Path(out_dir)
    runs = grid.runs()
    pending = [run for run in runs if not is_finished(out_dir / run.name, grid.fingerprint(run))]
    if grid.synthetic:
        print("SYNTHETIC DATA: this grid trains on a small synthetic stand-in written in the CIFAR format; its "
              "accuracies show that the code runs, not how the normalizations compare on CIFAR.")
    print(f"{len(runs) - len(pending)} of {len(runs)} runs already finished in {out_dir}; {len(pending)} to train")
    build_each(build_model, grid, pending)
    plan = plan_training(build_model, grid, pending, devices)
    if plan.note:
        print(plan.note)
    try:
        if len(plan.devices) == 1:
            datasets = {}  # each dataset is loaded once for all its runs
            for run in pending:
                if run.dataset not in datasets:
                    datasets[run.dataset] = grid_data(grid, run.dataset)
                train_run(plan.builder, grid, run, out_dir, plan.devices[0], progress, datasets[run.dataset])
        else:
            for dataset in dict.fromkeys(run.dataset for run in pending):  # downloaded and cached once, here
                grid_data(grid, dataset)
            run_in_processes(plan.builder, grid, pending, out_dir, plan.devices, progress)
    except KeyboardInterrupt as stop:
        finished = sum(is_finished(out_dir / run.name, grid.fingerprint(run)) for run in runs)
        raise TrainingStopped(
            (f"{stop}\n" if isinstance(stop, TrainingStopped) else "The grid stopped. ")
            + f"{finished} of {len(runs)} runs of the grid are finished in {out_dir}. Run this cell again to train the "
            "rest: finished runs are kept, and every other run resumes after its last finished epoch.") from None
    return [history for run in runs if (history := read_history(out_dir / run.name)) is not None]


@dataclass(frozen=True)
class TrainingPlan:
    """Where a grid's runs train: on devices, each building its models with builder; note says why they are fewer
    than the devices there are (None where they are not)."""

    devices: list[str]
    builder: Callable
    note: Optional[str] = None


def plan_training(build_model: Callable, grid: Grid, runs: list[Run],
                  devices: Optional[list[str]] = None) -> TrainingPlan:
    """On which of devices (every usable GPU unless given) runs will train, and with what builder: one process per
    device where build_model, or a builder of exactly its models, can be sent to other processes
    (builder_for_processes); else the first device alone, with a note that says why."""
    devices = devices or available_devices()
    if len(devices) == 1 or len(runs) <= 1:
        return TrainingPlan(devices[:1], build_model)
    builder, why_not = builder_for_processes(build_model, grid, runs)
    if builder is None:
        return TrainingPlan(devices[:1], build_model, note=(
            f"Training on {devices[0]} only, one run after another, not on all {len(devices)} GPUs: the processes "
            f"that would train on the others cannot build the models that "
            f"{getattr(build_model, '__name__', 'build_model')} builds here ({why_not}). Define it and everything "
            "it uses at the top level of the notebook's cells, run them, and run this cell again."))
    return TrainingPlan(devices[:len(runs)], builder)


def training_devices(build_model: Callable, grid: Grid) -> list[str]:
    """The devices the runs of grid will train on (plan_training), as the notebook's time estimate counts them; it
    says why where they are fewer than the GPUs there are. A model that cannot be built raises its error, as in
    run_grid (build_each), not a note about GPUs."""
    build_each(build_model, grid, grid.runs())
    plan = plan_training(build_model, grid, grid.runs())
    if plan.note:
        print(plan.note)
    return plan.devices


def build_each(build_model, grid, runs):
    """Build the model of every kind that runs train, once, before any of them trains: a model that cannot be built
    (an answer of the notebook not written yet) stops the grid at once, not after hours of training the others."""
    built = set()
    for run in runs:
        if (run.norm_type, run.stem) in built:
            continue
        built.add((run.norm_type, run.stem))
        with torch.random.fork_rng(devices=[]):  # the runs' initial weights stay as they would be without this
            build_model(norm_type=run.norm_type, stem=run.stem, num_classes=cifar.NUM_CLASSES[run.dataset],
                        base_width=grid.base_width, num_groups=grid.num_groups)


def grid_data(grid, dataset):
    return load_dataset(dataset, grid.synthetic).subset(grid.train_size, grid.test_size)


def train_run(build_model, grid, run, out_dir, device, progress, data=None):
    """Train one run of grid on data (grid_data(grid, run.dataset) unless given); it resumes if it was stopped.
    Its model starts from the same weights whichever process builds it, and whatever ran before. Its folder keeps
    what the TA reads, the history, and no final weights: nothing reads them, and they would make runs/grid, which
    students submit, 45 MB a run."""
    data = data if data is not None else grid_data(grid, run.dataset)
    seed_everything(grid.train.seed)
    model = build_model(norm_type=run.norm_type, stem=run.stem, num_classes=data.num_classes,
                        base_width=grid.base_width, num_groups=grid.num_groups)
    run_dir = Path(out_dir) / run.name
    metadata = dict(fingerprint=grid.fingerprint(run), dataset=run.dataset, norm_type=run.norm_type, stem=run.stem)
    return train(model, data, grid.train, device=device, out_dir=run_dir, progress=progress, label=run.name,
                 metadata=metadata, keep_weights=False)


def importable(function):
    """Whether function pickles as a reference that another (spawned) process can import: not one defined in a
    notebook or an interactive session, nor one executed from a notebook's cells."""
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    if module is None or (module.__name__ == "__main__" and not getattr(module, "__file__", None)):
        return False
    try:
        pickle.dumps(function)
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    return True


def builder_for_processes(build_model: Callable, grid: Grid,
                          runs: list[Run]) -> tuple[Optional[Callable], Optional[str]]:
    """build_model in a form that spawned processes can rebuild, and None; or None and why there is none.

    That is build_model itself where it is importable; else, for a function of a running notebook, its code as the
    kernel runs it (normlab.kernel), whatever the notebook file on disk holds; else the function of the same name in
    the saved norm.ipynb (normlab.notebook). Either must build the same models as build_model for the runs: the same
    parameters and buffers and, given the same weights, the same outputs (builds_alike)."""
    if importable(build_model):
        return build_model, None
    try:
        captured = kernel.capture(build_model)
    except kernel.CannotCapture as error:
        why_not = str(error)
    else:
        try:
            if builds_alike(build_model, captured, grid, runs):
                return captured, None
            why_not = "its code, run again in a fresh namespace, builds other models"
        except Exception as error:  # code that runs in the kernel and not on its own: a global it needs is missing
            why_not = f"its code, run again in a fresh namespace, fails: {type(error).__name__}: {error}"
    saved = NotebookFunction(getattr(build_model, "__name__", ""))
    try:
        if builds_alike(build_model, saved, grid, runs):
            return saved, None
    except Exception:  # a notebook that does not load, or lacks the function: nothing another process could use
        pass
    return None, why_not


def builds_alike(build_model, other, grid, runs):
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for norm_type, stem in sorted({(run.norm_type, run.stem) for run in runs}):
        options = dict(norm_type=norm_type, stem=stem, num_classes=cifar.NUM_CLASSES[runs[0].dataset],
                       base_width=grid.base_width, num_groups=grid.num_groups)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random numbers as they were
            ours, theirs = build_model(**options).eval(), other(**options).eval()
        state = ours.state_dict()
        if {k: v.shape for k, v in state.items()} != {k: v.shape for k, v in theirs.state_dict().items()}:
            return False
        theirs.load_state_dict(state)
        with torch.no_grad():
            if not torch.allclose(ours(images), theirs(images), rtol=1e-4, atol=1e-5):
                return False
    return True


def run_in_processes(build_model, grid, pending, out_dir, devices, progress):
    """One spawned process per device; each takes runs from a shared queue until it is empty. Spawned processes
    start afresh, so they can use CUDA whatever this process has done with it (a forked one cannot, once CUDA is
    initialized here); build_model must therefore pickle (builder_for_processes)."""
    context = multiprocessing.get_context("spawn")
    work = context.Queue()
    workers = devices[:len(pending)]
    for run in pending:
        work.put(run)
    for _ in workers:
        work.put(None)  # one stop sign per process
    threads = max(1, (os.cpu_count() or 1) // len(workers))  # processes on CPU devices share the cores
    processes = [context.Process(target=_worker, args=(build_model, grid, work, out_dir, device, threads))
                 for device in workers]
    for process in processes:
        process.start()
    try:
        _follow(processes, grid, pending, out_dir, progress, f"{len(pending)} runs on {len(workers)} devices")
    finally:  # a stopped cell stops its processes too; their runs resume after the last epoch each finished
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    failed = [process.exitcode for process in processes if process.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} training process(es) failed (exit codes {failed}); see their output above")


def _follow(processes, grid, pending, out_dir, progress, description):
    """Wait for processes, with a progress bar of the epochs their runs have finished."""
    def finished_epochs():
        return sum(len((read_history(Path(out_dir) / run.name) or {}).get("epochs", [])) for run in pending)

    bar = tqdm(total=len(pending) * grid.train.epochs, initial=finished_epochs(), desc=description, unit="epoch",
               disable=not progress)
    while any(process.is_alive() for process in processes):
        next(process for process in processes if process.is_alive()).join(timeout=FOLLOW_SECONDS)
        bar.update(finished_epochs() - bar.n)
    bar.update(finished_epochs() - bar.n)
    bar.close()


def _worker(build_model, grid, work, out_dir, device, threads):
    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    datasets = {}
    try:
        while (run := work.get()) is not None:
            if run.dataset not in datasets:
                datasets[run.dataset] = grid_data(grid, run.dataset)
            train_run(build_model, grid, run, out_dir, device, False, datasets[run.dataset])
    except KeyboardInterrupt:  # the stop button signals every process of the kernel: the notebook says what to do
        sys.exit(130)


def load_results(out_dir=GRID_DIR):
    """Histories of every run under out_dir (for example the runs/grid folder you submit)."""
    paths = sorted(Path(out_dir).glob("*/history.json"))
    return [history for path in paths if (history := read_history(path.parent)) is not None]


def in_table_order(results):
    """The histories by dataset, then norm and stem in the grid's order: the order of the table and the plots."""
    def place(order, value):
        return order.index(value) if value in order else len(order)

    return sorted(results, key=lambda h: (place(DATASET_ORDER, h["dataset"]), h["dataset"],
                                          place(NORM_ORDER, h["norm_type"]), h["norm_type"],
                                          place(STEM_ORDER, h["stem"]), h["stem"]))


def final_accuracies(history):
    """Test accuracy of a run's final weights, plainly and with flip TTA (None for runs without a final
    evaluation, such as diverged runs)."""
    final = history.get("final")
    if final is None:
        return (history["epochs"][-1]["test_accuracy"] if history["epochs"] else None), None
    return final["test_accuracy"], final["tta_test_accuracy"]


def best_epoch(history: dict) -> Optional[dict]:
    """The record of the epoch whose weights reached the highest test accuracy (the first of equals), or None for a
    run without epochs."""
    return max(history["epochs"], key=lambda e: e["test_accuracy"], default=None)


def summary_table(results: list) -> str:
    """A markdown table per run: test accuracy of the final (averaged) weights, plainly and with flip TTA, the
    epoch whose weights reached the highest test accuracy and that accuracy, the steady seconds per epoch (the
    median; warm-up left out), the seconds spent choosing the execution, compiling and autotuning, and the execution
    that was chosen."""
    rows = ["| dataset | norm | stem | final test acc | with flip TTA | best epoch | best epoch's test acc | s / epoch "
            "| warm-up s | execution | epochs | status | data |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in in_table_order(results):
        epochs = h["epochs"]
        final, tta = (f"{a:.2%}" if a is not None else "-" for a in final_accuracies(h))
        best = best_epoch(h)
        best_number, best_accuracy = (str(best["epoch"]), f"{best['test_accuracy']:.2%}") if best else ("-", "-")
        seconds = f"{steady_epoch_seconds(h):.2f}" if epochs else "-"
        execution = h.get("execution", {})
        layout = ("channels_last" if execution.get("channels_last") else "NCHW") + \
            (", compiled" if execution.get("compile") else "")
        origin = "SYNTHETIC" if h["data"]["synthetic"] else "CIFAR"
        rows.append(f"| {h['dataset']} | {h['norm_type']} | {h['stem']} | {final} | {tta} | {best_number} | "
                    f"{best_accuracy} | {seconds} | {warmup_seconds(h):.1f} | {layout} | {len(epochs)} | "
                    f"{h['status']} | {origin} |")
    return "\n".join(rows)


def show(results, out_dir, plot=True):
    """Plot results into out_dir (unless plot is False), and show the plots and the summary table (in a
    notebook, else print it)."""
    if not results:
        print(f"no finished runs to show in {out_dir}")
        return
    from normlab.plots import plot_results

    paths = plot_results(in_table_order(results), out_dir) if plot else []
    table = summary_table(results)
    devices = sorted({h["device"] for h in results})
    try:
        from IPython.display import Image, Markdown, display
    except ImportError:
        print(table)
    else:
        for path in paths:
            display(Image(filename=str(path)))
        display(Markdown(table))
    print(f"trained on: {', '.join(devices)}; plots saved in {out_dir}")
