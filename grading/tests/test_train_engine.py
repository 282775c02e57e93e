"""normlab.train's engine on the CPU: static shapes, compiling once, the timed choice of execution, the moving
average of the weights and flip test-time augmentation."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from normlab import data, train


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    data.write_synthetic("cifar10", root, train_size=400, test_size=150)
    return root


@pytest.fixture(scope="module")
def synthetic(synthetic_root):
    return data.load("cifar10", synthetic_root)


def small_cnn(num_classes=10):
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, num_classes))


def plain(**changes):
    """A CPU config without autocast or channels_last, so results compare exactly."""
    return train.TrainConfig(amp="off", channels_last=False, compile=False).replace(**changes)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_every_batch_is_full_and_distinct(synthetic, memory_format):
    batches = train.DeviceBatches(synthetic.train_images, synthetic.train_labels, torch.device("cpu"), 128,
                                  memory_format, seed=0, padding=4, flip=True)
    assert len(batches) == 3  # 400 images: 3 full batches, 16 left out
    shapes, seen = set(), []
    for x, y in batches.epoch():
        shapes.add(tuple(x.shape))
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=memory_format)
        seen.append(y)
    assert shapes == {(128, 3, 32, 32)} and len(torch.cat(seen)) == 384


def test_the_eval_batch_divides_the_test_set():
    assert train.eval_batch_size(10_000, 1000) == 1000 and train.eval_batch_size(10_000, 1024) == 1000
    assert train.eval_batch_size(64, 1000) == 64 and train.eval_batch_size(150, 64) == 50
    assert train.eval_batch_size(97, 64) == 1


def compiled_run(root):
    """Train small_cnn compiled on the synthetic data in root; return its history and the eager evaluation of the
    final weights. 400 / 64 leaves a partial training batch and 150 / 64 a partial eval batch: both left out."""
    loaded = data.load("cifar10", root)
    model = small_cnn()
    config = plain(epochs=3, batch_size=64, eval_batch_size=64, compile=True, ema_epochs=2)
    history = train.train(model, loaded, config, "cpu", progress=False)
    test_batches = train.DeviceBatches(loaded.test_images, loaded.test_labels, torch.device("cpu"), 50)
    eager = train.evaluate(model, test_batches.epoch(shuffle=False), torch.autocast("cpu", enabled=False), tta=True)
    return {"history": history, "eager": eager}


def test_compiled_training_compiles_in_the_first_epoch_only_and_agrees_with_eager(synthetic_root):
    # In a process of its own: after torch.compile has run a backward pass, forked processes (the grid's device
    # workers) can no longer use autograd.
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_train_engine import compiled_run; print(json.dumps(compiled_run({str(synthetic_root)!r})))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    history, eager = result["history"], result["eager"]
    assert history["execution"]["compile"] and history["execution"]["chosen_by"] == "config"
    compiled = [e["compiled_graphs"] for e in history["epochs"]]
    # the training and the eval graph, then nothing: not for the averaged weights or mirrored images either
    assert compiled[0] >= 2 and compiled[1:] == [0, 0]
    assert history["compile_check"]["ok"] and history["compile_check"]["max_relative_difference"] < 1e-3
    for key in ("test_accuracy", "tta_test_accuracy"):
        assert abs(eager[key] - history["final"][key]) <= 2 / 150
    assert eager["test_loss"] == pytest.approx(history["final"]["test_loss"], rel=1e-3)


class MirrorSymmetric(nn.Module):
    """Logits from the average colour of each image: the same for an image and its mirror image."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 10)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3)))


class LeftHalf(nn.Module):
    """Logits from the left half of each image only: mirroring changes them."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 32 * 16, 10)

    def forward(self, x):
        return self.linear(x[..., :16].flatten(1))


def test_flip_tta_equals_the_plain_result_for_a_mirror_symmetric_model_and_a_hand_computation_otherwise(synthetic):
    torch.manual_seed(0)
    batches = train.DeviceBatches(synthetic.test_images, synthetic.test_labels, torch.device("cpu"), 50)
    no_autocast = torch.autocast("cpu", enabled=False)
    symmetric = train.evaluate(MirrorSymmetric(), batches.epoch(shuffle=False), no_autocast, tta=True)
    assert symmetric["tta_test_accuracy"] == symmetric["test_accuracy"]

    model = LeftHalf()
    result = train.evaluate(model, batches.epoch(shuffle=False), no_autocast, tta=True)
    with torch.no_grad():
        hits = [((model(x) + model(x.flip(3))).argmax(1) == y).sum() for x, y in batches.epoch(shuffle=False)]
    assert result["tta_test_accuracy"] == pytest.approx(float(sum(hits)) / 150)
    assert result["tta_test_accuracy"] != result["test_accuracy"]


def test_the_weight_average_equals_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    states = [copy.deepcopy(model.state_dict())]
    average = train.WeightAverage(model, decay=0.5)
    for _ in range(4):
        with torch.no_grad():
            model[0].weight.add_(torch.randn_like(model[0].weight))
        model(torch.randn(8, 3, 6, 6))  # training mode: moves BN's running statistics and num_batches_tracked
        average.update()
        states.append(copy.deepcopy(model.state_dict()))
    expected = dict(states[0])
    for n, state in enumerate(states[1:]):
        decay = min(0.5, (1 + n) / (10 + n))  # 0.1, 0.18..., then 0.5
        expected = {k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v
                    for k, v in state.items()}
    assert not torch.allclose(expected["1.running_mean"], model.state_dict()["1.running_mean"])
    average.copy_into_model()
    for name, value in model.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-6), name
    assert model.state_dict()["1.num_batches_tracked"] == 4


def test_train_leaves_the_average_of_its_last_epochs_in_the_model(synthetic, monkeypatch):
    states = []
    step = train.Session.step

    def recording_step(session, x, y):
        result = step(session, x, y)
        states.append(copy.deepcopy(session.model.state_dict()))
        return result

    monkeypatch.setattr(train.Session, "step", recording_step)
    torch.manual_seed(0)
    model = small_cnn()
    config = plain(epochs=3, batch_size=128, ema_epochs=2, ema_decay=0.9)
    history = train.train(model, synthetic, config, "cpu", progress=False)
    assert len(states) == 9 and history["final"]["weights"] == "moving average over the last 2 epoch(s)"
    expected = states[2]  # the weights when epoch 2 starts
    for n, state in enumerate(states[3:]):
        decay = min(0.9, (1 + n) / (10 + n))
        expected = {k: decay * expected[k] + (1 - decay) * v if v.is_floating_point() else v
                    for k, v in state.items()}
    for name, value in model.state_dict().items():
        assert torch.allclose(value, expected[name], atol=1e-5), name
    batches = train.DeviceBatches(synthetic.test_images, synthetic.test_labels, torch.device("cpu"), 50)
    again = train.evaluate(model, batches.epoch(shuffle=False), torch.autocast("cpu", enabled=False))
    assert again["test_accuracy"] == history["final"]["test_accuracy"]


def fake_timings(step_seconds, setup_seconds=None):
    """time_executions' stand-in: fixed seconds per step (and setup) per (channels_last, compile)."""
    def time_executions(model, config, device, images, labels, executions, steps):
        keys = [(execution.channels_last, execution.compile) for execution in executions]
        return [{"channels_last": key[0], "compile": key[1], "step_seconds": step_seconds[key],
                 "setup_seconds": (setup_seconds or {}).get(key, 0.0)} for key in keys]
    return time_executions


def test_the_execution_is_the_one_with_the_shortest_predicted_run(synthetic, monkeypatch):
    monkeypatch.setattr(train, "_timed", {})
    images, labels, cuda = synthetic.train_images, synthetic.train_labels, torch.device("cuda")
    steps = {(True, False): 2.0, (False, False): 1.0, (False, True): 0.5, (True, True): 0.1}
    monkeypatch.setattr(train, "time_executions", fake_timings(steps, {(False, True): 60.0}))
    config = train.TrainConfig()
    # compiling halves a step in the faster eager layout but takes 60 s: worth it for 2,000 steps, not for 100
    execution, record = train.choose_execution(small_cnn(), config, cuda, images, labels, total_steps=2000)
    assert execution == train.Execution(channels_last=False, compile=True) and record["chosen_by"] == "timing"
    assert [(t["channels_last"], t["compile"]) for t in record["timings"]] == [(True, False), (False, False),
                                                                              (False, True)]
    execution, record = train.choose_execution(small_cnn(100), config, cuda, images, labels, total_steps=100)
    assert execution == train.Execution(channels_last=False, compile=False) and "cached" in record["chosen_by"]
    # 3 candidates x 7 steps to time would be more than 2% of 1,000 steps
    execution, record = train.choose_execution(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()), config, cuda, images,
                                               labels, total_steps=1000)
    assert execution == train.Execution() and record["chosen_by"].startswith("default")
    cpu_candidates = train.candidate_executions(config, torch.device("cpu"))
    assert cpu_candidates == [train.Execution(True, False), train.Execution(False, False)]


def test_a_long_cpu_run_times_both_layouts_and_records_its_choice(synthetic):
    # a real timing (no assertion on its outcome): 2 layouts x 3 steps are 2% of 300 steps
    config = train.TrainConfig(epochs=100, batch_size=128, amp="off", tune_steps=1, ema_epochs=0)
    model = small_cnn()
    before = copy.deepcopy(model.state_dict())
    execution, record = train.choose_execution(model, config, torch.device("cpu"), synthetic.train_images,
                                               synthetic.train_labels, total_steps=300)
    assert record["chosen_by"] == "timing" and len(record["timings"]) == 2
    fastest = min(record["timings"], key=lambda t: t["step_seconds"])
    assert execution.channels_last == fastest["channels_last"] and not execution.compile
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())  # copies trained
