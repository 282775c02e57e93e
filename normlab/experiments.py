"""The comparison grid: datasets x normalization types x stems, trained with normlab.train.

Each run writes runs/<grid>/<dataset>-<norm>-<stem>/history.json; a run whose history is complete for the same
settings is skipped, so an interrupted grid resumes where it stopped. With several GPUs, one process per GPU
takes runs from a shared queue. `show` plots the results and prints a markdown summary.
"""
import hashlib
import json
import multiprocessing
import queue
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from normlab import data as cifar
from normlab.train import TrainConfig, best_device, train

NORM_COLOURS = {"BN": "tab:blue", "LN": "tab:orange", "IN": "tab:green", "GN": "tab:red", "none": "tab:gray"}
STEM_STYLES = {"cifar": "-", "imagenet": "--"}


@dataclass(frozen=True)
class Grid:
    """What to compare and how to train each variant. `Grid.smoke()` is the tiny CPU configuration."""

    datasets: tuple = ("cifar10", "cifar100")
    norms: tuple = ("BN", "LN", "IN", "GN", "none")
    stems: tuple = ("imagenet", "cifar")
    base_width: int = 64
    num_groups: int = 4
    synthetic: bool = False
    train_size: Optional[int] = None  # train on the first train_size images only (None: all)
    test_size: Optional[int] = None
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def smoke(cls):
        """About a second on a laptop CPU: narrow ResNets, two epochs on 64 synthetic CIFAR-10 images, evaluated on
        32 (the last evaluation, with flip TTA, passes over them twice).

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
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
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


def run_grid(build_model, grid, out_dir, devices=None, progress=True):
    """Train every run of grid that is not finished yet, and return the histories of all its runs.

    build_model(norm_type=..., stem=..., num_classes=..., base_width=..., num_groups=...) returns a fresh model.
    """
    out_dir = Path(out_dir)
    runs = grid.runs()
    pending = [run for run in runs if not is_finished(out_dir / run.name, grid.fingerprint(run))]
    if grid.synthetic:
        print("SYNTHETIC DATA: this grid trains on a small synthetic stand-in written in the CIFAR format; its "
              "accuracies show that the code runs, not how the normalizations compare on CIFAR.")
    print(f"{len(runs) - len(pending)} of {len(runs)} runs already finished in {out_dir}; {len(pending)} to train")
    devices = devices or available_devices()
    if len(devices) > 1 and len(pending) > 1 and torch.cuda.is_initialized():
        print("CUDA is already initialized in this process, so the runs share one GPU, one after another. "
              "Restart the kernel and run the grid first to use every GPU.")
        devices = devices[:1]
    if len(devices) == 1 or len(pending) <= 1:
        datasets = {}  # each dataset is loaded once for all its runs
        for run in pending:
            if run.dataset not in datasets:
                datasets[run.dataset] = grid_data(grid, run.dataset)
            train_run(build_model, grid, run, out_dir, devices[0], progress, datasets[run.dataset])
    else:
        run_in_processes(build_model, grid, pending, out_dir, devices, progress)
    return [history for run in runs if (history := read_history(out_dir / run.name)) is not None]


def grid_data(grid, dataset):
    return load_dataset(dataset, grid.synthetic).subset(grid.train_size, grid.test_size)


def train_run(build_model, grid, run, out_dir, device, progress, data=None):
    """Train one run of grid on data (grid_data(grid, run.dataset) unless given)."""
    data = data if data is not None else grid_data(grid, run.dataset)
    model = build_model(norm_type=run.norm_type, stem=run.stem, num_classes=data.num_classes,
                        base_width=grid.base_width, num_groups=grid.num_groups)
    run_dir = Path(out_dir) / run.name
    metadata = dict(fingerprint=grid.fingerprint(run), dataset=run.dataset, norm_type=run.norm_type, stem=run.stem)
    return train(model, data, grid.train, device=device, out_dir=run_dir, progress=progress, label=run.name,
                 metadata=metadata)


def run_in_processes(build_model, grid, pending, out_dir, devices, progress):
    """One process per device; each takes runs from a shared queue. Fork keeps build_model usable even when it
    was defined in a notebook."""
    context = multiprocessing.get_context("fork")
    work = context.Queue()
    for run in pending:
        work.put(run)
    workers = [context.Process(target=_worker, args=(build_model, grid, work, out_dir, device, progress))
               for device in devices[:len(pending)]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    failed = [worker.exitcode for worker in workers if worker.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} training process(es) failed (exit codes {failed}); see their output above")


def _worker(build_model, grid, work, out_dir, device, progress):
    # A forked child that uses the parent's OpenMP thread pool hangs; the work is on the device anyway.
    torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    while True:
        try:
            run = work.get(timeout=1)
        except queue.Empty:
            return
        train_run(build_model, grid, run, out_dir, device, progress)


def load_results(out_dir):
    """Histories of every run under out_dir (for example the runs/grid folder you submit)."""
    paths = sorted(Path(out_dir).glob("*/history.json"))
    return [history for path in paths if (history := read_history(path.parent)) is not None]


def final_accuracies(history):
    """Test accuracy of a run's final weights, plainly and with flip TTA (None for runs without a final
    evaluation, such as diverged runs)."""
    final = history.get("final")
    if final is None:
        return (history["epochs"][-1]["test_accuracy"] if history["epochs"] else None), None
    return final["test_accuracy"], final["tta_test_accuracy"]


def summary_table(results):
    """A markdown table per run: test accuracy of the final (averaged) weights, plainly and with flip TTA, the
    best accuracy after an epoch, seconds per epoch, and the execution that was chosen."""
    rows = ["| dataset | norm | stem | final test acc | with flip TTA | best epoch | s / epoch | execution | epochs "
            "| status | data |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in sorted(results, key=lambda h: (h["dataset"], h["norm_type"], h["stem"])):
        epochs = h["epochs"]
        final, tta = (f"{a:.2%}" if a is not None else "-" for a in final_accuracies(h))
        best = f"{max(e['test_accuracy'] for e in epochs):.2%}" if epochs else "-"
        seconds = f"{sum(e['train_seconds'] for e in epochs) / len(epochs):.2f}" if epochs else "-"
        execution = h.get("execution", {})
        layout = ("channels_last" if execution.get("channels_last") else "NCHW") + \
            (", compiled" if execution.get("compile") else "")
        origin = "SYNTHETIC" if h["data"]["synthetic"] else "CIFAR"
        rows.append(f"| {h['dataset']} | {h['norm_type']} | {h['stem']} | {final} | {tta} | {best} | {seconds} | "
                    f"{layout} | {len(epochs)} | {h['status']} | {origin} |")
    return "\n".join(rows)


def plot_results(results, out_dir):
    """Save the figures under out_dir and return their paths: test accuracy per epoch; and the final weights' test
    accuracy, plainly and with flip TTA, next to seconds per epoch, for every variant."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = sorted({h["dataset"] for h in results})
    synthetic = any(h["data"]["synthetic"] for h in results)
    note = " (SYNTHETIC data: smoke test only)" if synthetic else ""
    paths = []

    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for h in (h for h in results if h["dataset"] == dataset):
            epochs = [e["epoch"] for e in h["epochs"]]
            accuracy = [e["test_accuracy"] for e in h["epochs"]]
            axis.plot(epochs, accuracy, STEM_STYLES.get(h["stem"], ":"), color=NORM_COLOURS.get(h["norm_type"]),
                      label=f"{h['norm_type']}, {h['stem']} stem")
        axis.set(title=f"{dataset}: test accuracy{note}", xlabel="epoch", ylabel="test accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    paths.append(_save(figure, out_dir / "accuracy_vs_epoch.png"))

    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    labels = [f"{h['dataset']}\n{h['norm_type']}/{h['stem']}" for h in results]
    colours = [NORM_COLOURS.get(h["norm_type"]) for h in results]
    places = range(len(results))
    plain, tta = zip(*(final_accuracies(h) for h in results))
    axes[0].bar([x - 0.2 for x in places], [a or 0 for a in plain], width=0.4, color=colours, label="plain")
    axes[0].bar([x + 0.2 for x in places], [a or 0 for a in tta], width=0.4, color=colours, alpha=0.5, hatch="//",
                label="flip TTA")
    axes[0].legend(fontsize=7)
    seconds = [sum(e["train_seconds"] for e in h["epochs"]) / max(1, len(h["epochs"])) for h in results]
    axes[1].bar(places, seconds, color=colours)
    for axis, title in ((axes[0], "final test accuracy (averaged weights)"), (axes[1], "seconds per epoch")):
        axis.set_xticks(places, labels, rotation=90, fontsize=6)
        axis.set_title(title + note)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    paths.append(_save(figure, out_dir / "final_accuracy_and_speed.png"))
    return paths


def _save(figure, path):
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def show(results, out_dir, plot=True):
    """Plot results into out_dir (unless plot is False), and show the plots and the summary table (in a
    notebook, else print it)."""
    if not results:
        print(f"no finished runs to show in {out_dir}")
        return
    paths = plot_results(results, out_dir) if plot else []
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
