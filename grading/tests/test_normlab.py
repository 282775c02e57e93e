"""normlab on the CPU: the CIFAR format and cache, device-side augmentation, learning, the grid, export, bench."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn
from torchvision import datasets

from grading.authoring.course import student_readme
from normlab import batches, data, estimate, evaluate, experiments, plots, session, train
from normlab.notebook import load_models

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    for name in ("cifar10", "cifar100"):
        data.write_synthetic(name, root, train_size=1000, test_size=300)
    return root


def small_cnn(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, num_classes))


@pytest.mark.parametrize("name,torchvision_class", [("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)])
def test_synthetic_files_are_read_identically_by_torchvision(synthetic_root, name, torchvision_class, monkeypatch):
    # torchvision's parser is the oracle for the format; its checksums are meant to reject anything unofficial
    monkeypatch.setattr(torchvision_class, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda path, md5=None: True)
    loaded = data.load(name, synthetic_root)
    for train_split, images, labels in ((True, loaded.train_images, loaded.train_labels),
                                        (False, loaded.test_images, loaded.test_labels)):
        reference = torchvision_class(str(synthetic_root), train=train_split, download=False)
        assert np.array_equal(reference.data, images.permute(0, 2, 3, 1).numpy())
        assert reference.targets == labels.tolist()
    assert reference.classes == loaded.classes
    assert loaded.synthetic and "SYNTHETIC" in loaded.describe()
    assert loaded.num_classes == (10 if name == "cifar10" else 100)


@pytest.mark.parametrize("name,torchvision_class", [("cifar10", datasets.CIFAR10), ("cifar100", datasets.CIFAR100)])
def test_the_layout_matches_torchvisions(name, torchvision_class):
    layout = data.LAYOUTS[name]
    assert layout.base_folder == torchvision_class.base_folder and layout.meta == torchvision_class.meta
    assert [list(entry) for entry in layout.train_list + layout.test_list] == \
        torchvision_class.train_list + torchvision_class.test_list


def test_loads_come_from_the_cache_until_a_file_changes(synthetic_root, monkeypatch):
    first = data.load("cifar10", synthetic_root)
    monkeypatch.setattr(data, "_read_batches", lambda *args: pytest.fail("read the batches despite the cache"))
    again = data.load("cifar10", synthetic_root)
    assert torch.equal(first.train_images, again.train_images) and again.synthetic
    batch = data.dataset_folder("cifar10", synthetic_root) / "test_batch"
    os.utime(batch, ns=(batch.stat().st_atime_ns, batch.stat().st_mtime_ns + 10 ** 9))
    with pytest.raises(pytest.fail.Exception, match="despite the cache"):
        data.load("cifar10", synthetic_root)


def test_a_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python data/download.py cifar100"):
        data.load("cifar100", tmp_path)


def test_crop_and_flip_match_a_reference_on_a_known_image():
    images = torch.arange(2 * 3 * 32 * 32, dtype=torch.int32).reshape(2, 3, 32, 32).to(torch.uint8)
    rows, cols = torch.tensor([0, 8]), torch.tensor([5, 3])
    cropped = batches.crop_at(images, rows, cols, padding=4)
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    for i in range(2):
        expected = padded[i, :, rows[i]:rows[i] + 32, cols[i]:cols[i] + 32]
        assert np.array_equal(cropped[i].numpy(), expected)
    flipped = batches.flip_where(images, torch.tensor([True, False]))
    assert np.array_equal(flipped[0].numpy(), images[0].numpy()[:, :, ::-1])
    assert torch.equal(flipped[1], images[1])


def test_the_loop_learns_a_learnable_dataset_and_records_it(synthetic_root, tmp_path):
    loaded = data.load("cifar10", synthetic_root)
    history = train.train(small_cnn(), loaded, train.TrainConfig(epochs=6, batch_size=128), "cpu", out_dir=tmp_path,
                          progress=False)
    assert history["status"] == "complete" and history["data"]["synthetic"]
    assert history["epochs"][-1]["test_accuracy"] > 0.9
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2, 3, 4, 5, 6]
    assert set(torch.load(tmp_path / "checkpoint.pt", weights_only=True)) == {"model", "config"}


def test_one_cycle_schedule_warms_up_then_decays_to_zero():
    config = train.TrainConfig(warmup_fraction=0.2)
    factors = [session.learning_rate_factor(step, 100, config) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 20 and factors[-1] == pytest.approx(0.0, abs=1e-9)


def tiny_grid(**changes):
    settings = dict(datasets=("cifar10",), norms=("BN", "none"), stems=("imagenet",), base_width=8, synthetic=True,
                    train_size=128, test_size=64,
                    train=train.TrainConfig(epochs=1, batch_size=64, amp="off", channels_last=False))
    settings.update(changes)
    return experiments.Grid(**settings)


@pytest.fixture
def synthetic_data_root(synthetic_root, monkeypatch):
    monkeypatch.setattr(data, "SYNTHETIC_ROOT", synthetic_root)
    monkeypatch.setattr(experiments, "load_dataset", lambda name, synthetic: data.load(name, synthetic_root))


def test_the_grid_resumes_finished_runs_and_plots(synthetic_data_root, tmp_path, monkeypatch):
    models = load_models()
    results = experiments.run_grid(models.resnet18, tiny_grid(), tmp_path, progress=False)
    assert sorted(h["run"] for h in results) == ["cifar10-BN-imagenet", "cifar10-none-imagenet"]
    assert all(h["status"] == "complete" and len(h["epochs"]) == 1 for h in results)

    trained = []
    monkeypatch.setattr(experiments, "train", lambda *args, **kwargs: trained.append(kwargs["label"]))
    again = experiments.run_grid(models.resnet18, tiny_grid(), tmp_path, progress=False)
    assert trained == [] and again == results
    experiments.run_grid(models.resnet18, tiny_grid(train_size=64), tmp_path, progress=False)
    assert sorted(trained) == ["cifar10-BN-imagenet", "cifar10-none-imagenet"]

    paths = plots.plot_results(results, tmp_path / "plots")
    assert [p.name for p in paths] == ["accuracy_vs_epoch.png", "final_accuracy_and_speed.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") and p.stat().st_size > 10_000 for p in paths)
    table = experiments.summary_table(results)
    assert table.count("SYNTHETIC") == 2 and "| cifar10 | none | imagenet |" in table


def finished_history(dataset, norm_type, stem, accuracies, seconds):
    """The history of a finished run, as far as the summary and the plots read it."""
    epochs = [{"epoch": number, "test_accuracy": accuracy, "train_seconds": seconds, "warmup_seconds": 0.0}
              for number, accuracy in enumerate(accuracies, 1)]
    return {"run": f"{dataset}-{norm_type}-{stem}", "dataset": dataset, "norm_type": norm_type, "stem": stem,
            "status": "complete", "device": "cpu", "data": {"synthetic": False}, "execution": {"seconds": 0.0},
            "resumed": [], "epochs": epochs,
            "final": {"test_accuracy": accuracies[-1], "tta_test_accuracy": accuracies[-1] + 0.01}}


def test_the_plots_show_every_run_on_whole_epochs_with_readable_labels_in_the_tables_order():
    # twenty runs in no particular order, all with the same accuracies, so that their lines coincide
    results = [finished_history(dataset, norm_type, stem, [0.3, 0.5, 0.6], 2.0)
               for dataset in ("cifar100", "cifar10") for norm_type in ("none", "GN", "IN", "LN", "BN")
               for stem in ("cifar", "imagenet")]
    ordered = experiments.in_table_order(results)
    figure = plots.accuracy_figure(ordered)
    assert len(figure.axes) == 4 and all(len(axis.get_lines()) == 5 for axis in figure.axes)
    for axis in figure.axes:
        assert all(float(tick).is_integer() for tick in axis.get_xticks())
        # coinciding runs stay visible: each later one thinner, with a smaller marker, than the one before
        widths = [(line.get_linewidth(), line.get_markersize()) for line in axis.get_lines()]
        assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(widths, widths[1:]))
    figure = plots.final_figure(ordered)
    labels = figure.axes[0].get_yticklabels()
    rows = [row.split(" | ")[:3] for row in experiments.summary_table(results).splitlines()[2:]]
    assert [label.get_text().replace(" stem", "").replace(",", "").split() for label in labels] == \
        [[row[0].lstrip("| "), row[1], row[2]] for row in rows]
    assert all(label.get_rotation() == 0 and label.get_fontsize() >= 9 for label in labels)


def test_the_tables_best_epoch_is_an_epoch_number_beside_its_accuracy() -> None:
    peaked = finished_history("cifar10", "BN", "cifar", [0.3, 0.7, 0.6], 2.0)
    untrained = {**finished_history("cifar10", "LN", "cifar", [0.1], 2.0), "epochs": [], "final": None,
                 "status": "diverged"}
    header, _, peaked_row, untrained_row = experiments.summary_table([peaked, untrained]).splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    best = columns.index("best epoch")
    assert columns[best + 1] == "best epoch's test acc"
    assert [cell.strip() for cell in peaked_row.strip("|").split("|")][best:best + 2] == ["2", "70.00%"]
    assert [cell.strip() for cell in untrained_row.strip("|").split("|")][best:best + 2] == ["-", "-"]


def test_export_and_evaluate_agree_with_the_model(synthetic_root, tmp_path):
    loaded = data.load("cifar10", synthetic_root)
    model = small_cnn()
    train.train(model, loaded, train.TrainConfig(epochs=1, batch_size=128), "cpu", progress=False)
    path = train.export_model(model, tmp_path / "model.pt2")
    model.eval()
    with torch.no_grad():
        direct = train.Normalized(model.cpu().float())(loaded.test_images.float() / 255).argmax(dim=1).numpy()
    assert np.array_equal(evaluate.predict(path, loaded.test_images.numpy()), direct)
    assert evaluate.accuracy(path, loaded) == pytest.approx(float((direct == loaded.test_labels.numpy()).mean()))

    np.save(tmp_path / "images.npy", loaded.test_images.numpy())
    evaluate.main([str(path), "--predict", str(tmp_path / "images.npy"), "--out", str(tmp_path / "labels.npy")])
    assert np.array_equal(np.load(tmp_path / "labels.npy", allow_pickle=False), direct)


def test_the_benchmark_reports_its_ratio_last():
    result = subprocess.run([sys.executable, "-m", "normlab.bench", "--device", "cpu", "--norm", "BN,GN",
                             "--steps", "1", "--warmup", "1", "--rounds", "1", "--batch-size", "8", "--workers", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup_vs_naive=\d+\.\d\d", lines[-1])
    assert any(line.startswith("normlab  GN") for line in lines)


def test_the_recipe_command_trains_exports_and_says_synthetic(synthetic_data_root, tmp_path, capsys):
    train.main(["--synthetic", "--width", "8", "--epochs", "1", "--batch-size", "256", "--out", str(tmp_path),
                "--export", str(tmp_path / "model.pt2")])
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "cifar10-BN-cifar" in printed and (tmp_path / "model.pt2").is_file()
    assert json.loads((tmp_path / "cifar10-BN-cifar" / "history.json").read_text())["status"] == "complete"


def test_the_estimate_adds_up_every_runs_steps_and_evaluations():
    timing = estimate.Timing(step_seconds=0.1, eval_image_seconds=1e-4)
    config = train.TrainConfig(epochs=30, batch_size=512)
    # 97 full batches per epoch; 31 passes over the 10,000 test images (the last evaluation adds flip TTA)
    assert estimate.run_seconds(timing, config) == pytest.approx(30 * 97 * 0.1 + 31 * 10_000 * 1e-4)
    grid = experiments.Grid()
    timings = {(norm_type, stem): timing for norm_type in grid.norms for stem in grid.stems}
    assert estimate.grid_seconds(timings, grid) == pytest.approx(20 * estimate.run_seconds(timing, config))


def test_the_estimate_times_this_machines_models_and_says_how_to_train_less(capsys):
    models = load_models()

    def narrow_resnet18(**options):  # the bonus's ResNet-18 too, for speed
        return models.resnet18(**{**options, "base_width": 8})

    recipe = train.TrainConfig(batch_size=32, eval_batch_size=50, tune_steps=1, amp="off", channels_last=False)
    grid = experiments.Grid(norms=("BN", "GN"), stems=("cifar",), base_width=8, train=recipe)
    estimate.print_estimate(narrow_resnet18, grid, recipe.replace(epochs=60), torch.device("cpu"), devices=2)
    printed = capsys.readouterr().out
    for expected in ("the grid, 4 runs x 30 epochs: about", "shared among 2 GPUs", "the bonus, 2 runs x 60 epochs",
                     "Run All trains the grid, then the bonus", "experiments.Grid(datasets=('cifar10',))",
                     "experiments.Grid(train=train.TrainConfig(epochs=15))"):
        assert expected in printed, printed


def test_the_estimate_command_on_a_machine_without_a_gpu_says_where_to_train_and_how_long_it_takes_there():
    result = subprocess.run([sys.executable, "-m", "normlab.estimate"], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    t4 = estimate.EXPECTED_TIMES[0]
    assert result.stdout.splitlines()[:2] == [
        "This machine has no CUDA GPU that torch can see, so training here would run on the CPU.",
        "Train on a T4 GPU instead: on Colab, Runtime > Change runtime type > T4 GPU; on Kaggle, Settings > Accelerator "
        f"> GPU T4 x2. There the grid (20 runs x 30 epochs) takes about {estimate.span(t4.grid)} and the bonus (2 runs x "
        f"60 epochs) about {estimate.span(t4.bonus)} (estimated, not measured; the notebook's time-estimate cell "
        "measures the GPU you get). To train less, train the grid on one dataset or with fewer epochs: the "
        "time-estimate cell says how."], result.stdout


def time_table_rows(text):
    """{GPU: (grid, bonus)} of the markdown rows in text that begin with a GPU of estimate.EXPECTED_TIMES: the last
    two cells of each (BENCHMARKS.md's table has an assumed epoch time between)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and cells[0] in {e.gpu for e in estimate.EXPECTED_TIMES}:
            rows[cells[0]] = tuple(cells[-2:])
    return rows


def test_every_time_table_shows_the_one_source_of_figures_marked_estimated():
    expected = {e.gpu: (estimate.span(e.grid), estimate.span(e.bonus)) for e in estimate.EXPECTED_TIMES}
    notebook = "\n".join(cell.source for cell in nbformat.read(REPO / "norm.ipynb", as_version=4).cells)
    benchmarks = (REPO / "BENCHMARKS.md").read_text()
    for name, text in (("norm.ipynb", notebook), ("docs/students.md", student_readme()), ("BENCHMARKS.md", benchmarks)):
        assert time_table_rows(text) == expected, name
        assert "estimated, not measured" in text, name
    assert time_table_rows(estimate.expected_times_table()) == expected
    assert not re.search(r"\d+ minutes", notebook), "a time claim outside the table"
