"""normlab.train's engine on the CPU: static shapes, compiling once, the timed choice of execution, the moving
average of the weights and flip test-time augmentation; the GPUs it trains on (faked): only those this torch has
code for, in the precision each runs fast, with torch.compile only where Triton works and eager execution wherever
a compile fails; what a student sees of a run: a progress bar that ends full, a stop that says how to resume, and
the same history from the same command."""
import copy
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn
from tqdm import tqdm

from normlab import checkpoint, data, devices, estimate, execution, experiments, train
from normlab.batches import DeviceBatches, eval_batch_size
from normlab.session import Execution, Session, WeightAverage


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
    batches = DeviceBatches(synthetic.train_images, synthetic.train_labels, torch.device("cpu"), 128,
                                  memory_format, seed=0, padding=4, flip=True)
    assert len(batches) == 3  # 400 images: 3 full batches, 16 left out
    shapes, seen = set(), []
    for x, y in batches.epoch():
        shapes.add(tuple(x.shape))
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=memory_format)
        seen.append(y)
    assert shapes == {(128, 3, 32, 32)} and len(torch.cat(seen)) == 384


def test_the_eval_batch_divides_the_test_set():
    assert eval_batch_size(10_000, 1000) == 1000 and eval_batch_size(10_000, 1024) == 1000
    assert eval_batch_size(64, 1000) == 64 and eval_batch_size(150, 64) == 50
    assert eval_batch_size(97, 64) == 1


def compiled_run(root):
    """Train small_cnn compiled on the synthetic data in root, then a second small_cnn in the same process; return
    both histories and the eager evaluation of the first's final weights. 400 / 64 leaves a partial training batch
    and 150 / 64 a partial eval batch: both left out."""
    loaded = data.load("cifar10", root)
    model = small_cnn()
    config = plain(epochs=3, batch_size=64, eval_batch_size=64, compile=True, ema_epochs=2)
    history = train.train(model, loaded, config, "cpu", progress=False)
    test_batches = DeviceBatches(loaded.test_images, loaded.test_labels, torch.device("cpu"), 50)
    eager = train.evaluate(model, test_batches.epoch(shuffle=False), torch.autocast("cpu", enabled=False), tta=True)
    again = train.train(small_cnn(), loaded, config.replace(epochs=1, seed=1), "cpu", progress=False)
    return {"history": history, "eager": eager, "again": again}


def test_compiled_training_compiles_once_per_process_reports_it_apart_and_agrees_with_eager(synthetic_root):
    # In a process of its own: after torch.compile has run a backward pass, forked processes can no longer use
    # autograd, and the compiled graphs stay in the process.
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"from test_train_engine import compiled_run; print(json.dumps(compiled_run({str(synthetic_root)!r})))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    history, eager, again = result["history"], result["eager"], result["again"]
    assert history["execution"]["compile"] and history["execution"]["chosen_by"] == "config"
    compiled = [e["compiled_graphs"] for e in history["epochs"]]
    # the training and the eval graph, then nothing: not for the averaged weights or mirrored images either, nor
    # for another model of the same architecture later in the process
    assert compiled[0] >= 2 and compiled[1:] == [0, 0] and again["epochs"][0]["compiled_graphs"] == 0
    # compiling happens in the first step of epoch 1 (and its first evaluation batch): counted apart
    warmups = [e["warmup_seconds"] for e in history["epochs"]]
    assert warmups[0] > 0 and warmups[1:] == [0.0, 0.0]
    assert train.warmup_seconds(history) == pytest.approx(warmups[0], rel=1e-3)
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
    batches = DeviceBatches(synthetic.test_images, synthetic.test_labels, torch.device("cpu"), 50)
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
    average = WeightAverage(model, decay=0.5)
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
    step = Session.step

    def recording_step(session, x, y):
        result = step(session, x, y)
        states.append(copy.deepcopy(session.model.state_dict()))
        return result

    monkeypatch.setattr(Session, "step", recording_step)
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
    batches = DeviceBatches(synthetic.test_images, synthetic.test_labels, torch.device("cpu"), 50)
    again = train.evaluate(model, batches.epoch(shuffle=False), torch.autocast("cpu", enabled=False))
    assert again["test_accuracy"] == history["final"]["test_accuracy"]


def fake_gpu(monkeypatch, capability, name="a fake GPU", arch_list=("sm_75", "sm_80", "sm_86", "sm_90", "sm_120")):
    """Make torch report CUDA GPUs of the given compute capability (one, or a list: one per GPU), and a build with
    kernels for arch_list, as far as choosing a device, a precision and an execution asks (nothing here runs on
    them)."""
    capabilities = capability if isinstance(capability, list) else [capability]
    names = name if isinstance(name, list) else [name] * len(capabilities)

    def index(device):  # None, an index, "cuda:1" or a torch.device
        if device is None or isinstance(device, int):
            return device or 0
        return torch.device(device).index or 0

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(arch_list))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[index(device)])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: names[index(device)])
    return torch.device("cuda")


@pytest.mark.parametrize("capability,dtype,compiles", [
    ((6, 1), None, False),             # GTX 10 series: fp16 at 1/64 of the float32 rate, no Triton
    ((6, 0), torch.float16, False),    # P100: double-rate fp16
    ((7, 5), torch.float16, True),     # T4, RTX 20: tensor cores, bf16 only emulated
    ((8, 0), torch.bfloat16, True),    # A100
    ((8, 9), torch.bfloat16, True),    # RTX 40
    ((9, 0), torch.bfloat16, True)])   # H100
def test_each_gpu_generation_trains_in_the_precision_it_runs_fast(monkeypatch, capability, dtype, compiles):
    cuda = fake_gpu(monkeypatch, capability)
    assert devices.autocast_dtype("auto", cuda) == dtype
    assert any(c.compile for c in execution.candidate_executions(train.TrainConfig(), cuda)) == compiles
    assert devices.autocast_dtype("bf16", cuda) == torch.bfloat16  # asked for, it is obeyed
    assert devices.autocast_dtype("off", cuda) is None


@pytest.mark.parametrize("capability,arch_list,runs", [
    ((7, 5), ["sm_75", "sm_80"], True),              # T4 on pip's torch
    ((6, 0), ["sm_75", "sm_80"], False),             # Kaggle's P100: no kernels below sm_75
    ((7, 0), ["sm_75", "sm_80"], False),             # V100
    ((8, 6), ["sm_80"], True),                       # RTX 30 runs sm_80 code: same major, older minor
    ((8, 6), ["sm_90"], False),
    ((12, 0), ["sm_90", "compute_90"], True),        # a newer GPU: the driver compiles the PTX
    ((9, 0), ["sm_90a"], True),
    ((10, 0), ["sm_90a"], False)])                   # sm_90a code runs on sm_90 only
def test_a_gpu_is_usable_where_this_torch_has_code_for_it(capability, arch_list, runs):
    assert devices.runs_on(capability, arch_list) == runs


def test_a_gpu_this_torch_cannot_run_on_is_passed_over_with_the_reason_and_where_to_train(monkeypatch, capsys):
    fake_gpu(monkeypatch, (6, 0), "Tesla P100-PCIE-16GB")
    with pytest.warns(UserWarning) as warned:
        assert devices.best_device() == torch.device("cpu")
    assert str(warned[0].message).startswith(
        f"Tesla P100-PCIE-16GB (compute capability 6.0) cannot run this torch {torch.__version__}, whose GPU code is "
        "built for sm_75, sm_80, sm_86, sm_90, sm_120 only, so training runs on the CPU instead. Choose a T4 GPU")
    assert devices.usable_cuda_indices() == []
    with pytest.warns(UserWarning, match="Tesla P100"):
        assert experiments.available_devices() == ["cpu"]
    with pytest.warns(UserWarning, match="Tesla P100"):
        estimate.main([])
    printed = capsys.readouterr().out
    assert printed.startswith(str(warned[0].message) + "\nTrain on a T4 GPU instead: on Colab, Runtime > Change "
                              "runtime type > T4 GPU; on Kaggle, Settings > Accelerator > GPU T4 x2. There the grid (20 "
                              "runs x 30 epochs) takes about 1.5–3 h and the bonus (2 runs x 60 epochs) about 30–45 min "
                              "(estimated, not measured;"), printed


def test_of_two_gpus_only_the_one_this_torch_can_run_on_trains(monkeypatch):
    fake_gpu(monkeypatch, [(6, 0), (7, 5)], ["Tesla P100-PCIE-16GB", "Tesla T4"])
    assert devices.best_device() == torch.device("cuda", 1) and devices.usable_cuda_indices() == [1]
    assert experiments.available_devices() == ["cuda:1"]
    fake_gpu(monkeypatch, [(7, 5), (7, 5)], "Tesla T4")  # Kaggle's two T4s
    assert devices.best_device() == torch.device("cuda") and experiments.available_devices() == ["cuda:0", "cuda:1"]


def test_an_fp16_step_that_overflows_is_skipped_and_halves_the_loss_scale(synthetic):
    torch.manual_seed(0)
    session = Session(small_cnn(), plain(amp="fp16"), torch.device("cpu"), total_steps=10)
    x, y = next(DeviceBatches(synthetic.train_images, synthetic.train_labels, torch.device("cpu"), 64).epoch())
    session.step(x, y)
    assert session.precision == "float16" and session.scaler.get_scale() == 2.0 ** 16
    state = copy.deepcopy(session.optimizer.state_dict())
    weights = copy.deepcopy(session.model.state_dict())
    session.step(x * 1e6, y)  # activations beyond fp16's largest number (65504): infinite gradients
    assert session.scaler.get_scale() == 2.0 ** 15
    assert all(torch.equal(value, weights[name]) for name, value in session.model.named_parameters())
    momentum = [s["momentum_buffer"] for s in session.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, s["momentum_buffer"]) for a, s in zip(momentum, state["state"].values()))
    session.step(x, y)
    assert not all(torch.equal(value, weights[name]) for name, value in session.model.named_parameters())


def unnormalized_cnn() -> nn.Module:
    """A network without normalization, as the grid's "none" variant: nothing keeps its activations in fp16's range."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def overflow_at(monkeypatch: pytest.MonkeyPatch, steps: set[int]) -> None:
    """Make the given training steps (counted from 1) feed images a million times too bright: activations beyond
    fp16's largest number (65504), as those of a network without normalization can grow in fp16."""
    count, take_step = [0], Session.step

    def step(session: Session, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count[0] += 1
        return take_step(session, x * 1e6 if count[0] in steps else x, y)

    monkeypatch.setattr(Session, "step", step)


def test_an_fp16_step_that_overflows_is_skipped_and_counted_while_the_run_goes_on(
        synthetic: data.Cifar, monkeypatch: pytest.MonkeyPatch) -> None:
    overflow_at(monkeypatch, {2, 3})  # 6 steps an epoch
    model = unnormalized_cnn()
    history = train.train(model, synthetic, plain(epochs=2, batch_size=64, amp="fp16"), "cpu", progress=False)
    assert history["autocast"] == "float16" and history["status"] == "complete"
    assert [e["skipped_steps"] for e in history["epochs"]] == [2, 0]
    assert all(math.isfinite(e["train_loss"]) for e in history["epochs"])
    assert all(p.isfinite().all() for p in model.parameters())


def test_an_fp16_epoch_of_nothing_but_overflowing_steps_is_a_divergence(
        synthetic: data.Cifar, monkeypatch: pytest.MonkeyPatch) -> None:
    overflow_at(monkeypatch, set(range(1, 7)))
    history = train.train(unnormalized_cnn(), synthetic, plain(epochs=3, batch_size=64, amp="fp16"), "cpu",
                          progress=False)
    assert history["status"] == "diverged" and len(history["epochs"]) == 1
    assert history["epochs"][0]["skipped_steps"] == 6 and math.isnan(history["epochs"][0]["train_loss"])


def test_warm_up_is_reported_apart_from_the_epoch_times(synthetic, monkeypatch):
    # a clock that only the steps move: the first step of each session takes 100 s (compiling), the others 1 s
    clock = types.SimpleNamespace(now=0.0, steps=0)
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    step = Session.step

    def timed_step(session, x, y):
        clock.now += 100.0 + 1.0 if clock.steps == 0 else 1.0
        clock.steps += 1
        return step(session, x, y)

    monkeypatch.setattr(Session, "step", timed_step)
    history = train.train(small_cnn(), synthetic, plain(epochs=2, batch_size=64, ema_epochs=0), "cpu",
                          progress=False)
    assert [e["train_seconds"] for e in history["epochs"]] == [6.0, 6.0]  # 400 images: 6 steps of 64
    assert [e["warmup_seconds"] for e in history["epochs"]] == [100.0, 0.0]
    assert train.steady_epoch_seconds(history) == 6.0 and train.warmup_seconds(history) == 100.0


def fake_timings(step_seconds, setup_seconds=None):
    """time_executions' stand-in: fixed seconds per step (and setup) per (channels_last, compile); it records
    which executions it was asked to time."""
    asked = []

    def time_executions(model, config, device, images, labels, executions, steps):
        keys = [(e.channels_last, e.compile) for e in executions]
        asked.extend(keys)
        return [{"channels_last": key[0], "compile": key[1], "step_seconds": step_seconds[key],
                 "setup_seconds": (setup_seconds or {}).get(key, 0.0)} for key in keys]
    time_executions.asked = asked
    return time_executions


@pytest.fixture
def fresh_process(monkeypatch):
    """No timings and no compiled models yet, as in a new process."""
    monkeypatch.setattr(execution, "_timed", {})
    monkeypatch.setattr(execution, "_compiled", set())


@pytest.fixture
def without_triton(monkeypatch):
    """A Python in which `import triton` fails, as on Windows, where pip's torch comes without it."""
    monkeypatch.setitem(sys.modules, "triton", None)
    devices.triton_problem.cache_clear()
    yield
    devices.triton_problem.cache_clear()


def test_without_triton_a_gpu_trains_eagerly_and_says_why(monkeypatch, fresh_process, without_triton):
    cuda = fake_gpu(monkeypatch, (8, 9), "NVIDIA GeForce RTX 4090")
    assert not any(c.compile for c in execution.candidate_executions(train.TrainConfig(), cuda))
    images, labels = torch.zeros(8, 3, 32, 32, dtype=torch.uint8), torch.zeros(8, dtype=torch.long)
    for compiling, said in ((None, "torch.compile not a candidate: Triton does not import here (ModuleNotFoundError: "),
                            (True, "torch.compile was asked for, but Triton does not import here (ModuleNotFoundError: ")):
        config = train.TrainConfig(channels_last=False, compile=compiling)
        with pytest.warns(UserWarning, match=re.escape(said)):
            chosen, record = execution.choose_execution(small_cnn(), config, cuda, images, labels, 3000)
        assert chosen == Execution(False, False) and record["chosen_by"].startswith(f"config; {said}"), record
    assert record["chosen_by"].endswith("): eager instead")


def test_a_compile_that_fails_gives_way_to_eager_execution_for_the_rest_of_the_process(synthetic, monkeypatch,
                                                                                        fresh_process):
    def broken_compile(model, **options):  # what a missing C++ compiler or a broken Triton does on the first step
        def fails(*args, **kwargs):
            raise RuntimeError("Compiler: cl is not found.\nmore details")
        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(execution, "_compile_failures", {})
    failed = "torch.compile failed here (RuntimeError: Compiler: cl is not found.)"
    with pytest.warns(UserWarning, match=re.escape(f"{failed}; training runs without it")):
        chosen, record = execution.choose_execution(small_cnn(), plain(batch_size=64), torch.device("cpu"),
                                                    synthetic.train_images, synthetic.train_labels, 300, force=True,
                                                    candidates=[Execution(False, False), Execution(False, True)])
    assert chosen == Execution(False, False) and record["chosen_by"] == f"timing; {failed}: eager instead"
    assert [t["compile"] for t in record["timings"]] == [False]
    with pytest.warns(UserWarning, match=re.escape(f"torch.compile was asked for, but {failed}: eager instead")):
        history = train.train(small_cnn(), synthetic, plain(epochs=1, batch_size=64, compile=True), "cpu",
                              progress=False)
    assert history["status"] == "complete" and not history["execution"]["compile"]


def test_the_execution_is_the_one_with_the_shortest_predicted_run(synthetic, monkeypatch, fresh_process):
    cuda = fake_gpu(monkeypatch, (9, 0))
    images, labels = synthetic.train_images, synthetic.train_labels
    steps = {(True, False): 2.0, (False, False): 1.0, (False, True): 0.5, (True, True): 0.1}
    monkeypatch.setattr(execution, "time_executions", fake_timings(steps, {(False, True): 60.0}))
    config = train.TrainConfig()
    # compiling halves a step in the faster eager layout but takes 60 s: worth it for 2,000 steps
    chosen, record = execution.choose_execution(small_cnn(), config, cuda, images, labels, remaining_steps=2000)
    assert chosen == Execution(channels_last=False, compile=True) and record["chosen_by"] == "timing"
    assert [(t["channels_last"], t["compile"]) for t in record["timings"]] == [(True, False), (False, False),
                                                                              (False, True)]
    # not for 100 steps of the CIFAR-100 variant, whose classifier needs a compile of its own
    chosen, record = execution.choose_execution(small_cnn(100), config, cuda, images, labels, remaining_steps=100)
    assert chosen == Execution(channels_last=False, compile=False) and "cached" in record["chosen_by"]
    # 3 candidates x 7 steps to time would be more than 2% of 1,000 steps
    chosen, record = execution.choose_execution(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()), config, cuda,
                                                images, labels, remaining_steps=1000)
    assert chosen == Execution() and record["chosen_by"].startswith("default")
    cpu_candidates = execution.candidate_executions(config, torch.device("cpu"))
    assert cpu_candidates == [Execution(True, False), Execution(False, False)]


def test_a_compile_is_counted_once_per_model_and_process_against_the_remaining_steps(synthetic, monkeypatch,
                                                                                    fresh_process):
    cuda = fake_gpu(monkeypatch, (7, 5))
    images, labels = synthetic.train_images, synthetic.train_labels
    timer = fake_timings({(True, False): 1.0, (False, False): 1.2, (True, True): 0.8}, {(True, True): 100.0})
    monkeypatch.setattr(execution, "time_executions", timer)
    config = train.TrainConfig()
    choose = execution.choose_execution
    # a run of 2,000 steps: 400 s saved for a 100 s compile; its trial compiles the model for this process
    assert choose(small_cnn(), config, cuda, images, labels, remaining_steps=2000)[0].compile
    # a run of the same model resumed with 100 steps left: the compile is done, 20 s saved for nothing
    assert choose(small_cnn(), config, cuda, images, labels, remaining_steps=100)[0].compile
    # the CIFAR-100 variant still needs its compile: 100 s for 100 steps does not pay, for 1,000 it does
    assert not choose(small_cnn(100), config, cuda, images, labels, remaining_steps=100)[0].compile
    assert choose(small_cnn(100), config, cuda, images, labels, remaining_steps=1000)[0].compile
    assert timer.asked == [(True, False), (False, False), (True, True)]  # each timed once


def test_compile_is_not_even_timed_where_earlier_models_show_it_cannot_pay(synthetic, monkeypatch, fresh_process):
    cuda = fake_gpu(monkeypatch, (7, 5))
    images, labels = synthetic.train_images, synthetic.train_labels
    steps = {(True, False): 1.0, (False, False): 1.5, (True, True): 0.95}
    timer = fake_timings(steps, {(True, True): 100.0})
    monkeypatch.setattr(execution, "time_executions", timer)
    config = train.TrainConfig()
    execution.choose_execution(small_cnn(), config, cuda, images, labels, remaining_steps=2000)
    # another architecture with 1,100 steps left: at the 5% saving measured, 55 s against a 100 s compile
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
    chosen, record = execution.choose_execution(other, config, cuda, images, labels, remaining_steps=1100)
    assert chosen == Execution(channels_last=True, compile=False) and "not timed" in record["chosen_by"]
    assert timer.asked.count((True, True)) == 1


def test_a_long_cpu_run_times_both_layouts_and_records_its_choice(synthetic):
    # a real timing (no assertion on its outcome): 2 layouts x 3 steps are 2% of 300 steps
    config = train.TrainConfig(epochs=100, batch_size=128, amp="off", tune_steps=1, ema_epochs=0)
    model = small_cnn()
    before = copy.deepcopy(model.state_dict())
    chosen, record = execution.choose_execution(model, config, torch.device("cpu"), synthetic.train_images,
                                                synthetic.train_labels, remaining_steps=300)
    assert record["chosen_by"] == "timing" and len(record["timings"]) == 2
    fastest = min(record["timings"], key=lambda t: t["step_seconds"])
    assert chosen.channels_last == fastest["channels_last"] and not chosen.compile
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())  # copies trained


def comparable(history):
    """A history without what differs between equal runs: times, and the record of resuming."""
    timing = {"train_seconds", "eval_seconds", "warmup_seconds"}
    epochs = [{k: v for k, v in e.items() if k not in timing} for e in history["epochs"]]
    return {**{k: v for k, v in history.items() if k not in ("execution", "resumed", "epochs")}, "epochs": epochs}


def stop_at_step(monkeypatch, step):
    """Make the step-th training step from now raise KeyboardInterrupt, as the notebook's stop button does."""
    steps, take_step = [0], Session.step

    def step_or_stop(session, x, y):
        steps[0] += 1
        if steps[0] == step:
            raise KeyboardInterrupt
        return take_step(session, x, y)

    monkeypatch.setattr(Session, "step", step_or_stop)


def test_an_interrupted_run_resumes_where_it_stopped_and_a_changed_one_starts_over(synthetic, tmp_path, monkeypatch):
    config = plain(epochs=2, batch_size=64, ema_epochs=1)  # 6 steps per epoch
    torch.manual_seed(0)
    initial = small_cnn().state_dict()
    uninterrupted_model = small_cnn()
    uninterrupted_model.load_state_dict(initial)
    uninterrupted = train.train(uninterrupted_model, synthetic, config, "cpu", progress=False)

    stopped = small_cnn()
    stopped.load_state_dict(initial)
    with monkeypatch.context() as patch:
        stop_at_step(patch, 8)
        with pytest.raises(train.TrainingStopped) as stopped_run:
            train.train(stopped, synthetic, config, "cpu", out_dir=tmp_path, progress=False)
    assert str(stopped_run.value) == (
        f"the run: stopped during epoch 2 of 2. Its state after epoch 1 is saved in {tmp_path}: run the cell (or "
        "the command) again and it resumes from there, losing only the epoch in progress.")
    assert torch.load(tmp_path / checkpoint.RESUME_FILE, weights_only=True)["epoch"] == 1
    resumed_model = small_cnn()  # other initial weights: the saved state replaces them
    resumed = train.train(resumed_model, synthetic, config, "cpu", out_dir=tmp_path, progress=False)
    assert [r["epoch"] for r in resumed["resumed"]] == [2] and comparable(resumed) == comparable(uninterrupted)
    assert all(torch.equal(value, uninterrupted_model.state_dict()[name])
               for name, value in resumed_model.state_dict().items())
    assert not (tmp_path / checkpoint.RESUME_FILE).exists()

    with monkeypatch.context() as patch:  # a state saved with another learning rate is not resumed from
        stop_at_step(patch, 8)
        with pytest.raises(KeyboardInterrupt):
            train.train(small_cnn(), synthetic, config, "cpu", out_dir=tmp_path / "other", progress=False)
    changed = train.train(small_cnn(), synthetic, config.replace(lr=0.1), "cpu", out_dir=tmp_path / "other",
                          progress=False)
    assert changed["resumed"] == [] and [e["epoch"] for e in changed["epochs"]] == [1, 2]

    with monkeypatch.context() as patch:  # a finished run is not trained again: its final weights are loaded
        stop_at_step(patch, 1)
        loaded = small_cnn()
        assert train.train(loaded, synthetic, config, "cpu", out_dir=tmp_path, progress=False) == resumed
    assert all(torch.equal(value, resumed_model.state_dict()[name]) for name, value in loaded.state_dict().items())


def test_a_run_stopped_before_its_first_epoch_ended_or_without_a_folder_says_it_starts_over(synthetic, tmp_path,
                                                                                               monkeypatch):
    config = plain(epochs=2, batch_size=64)
    stop_at_step(monkeypatch, 2)
    with pytest.raises(train.TrainingStopped, match=f"No epoch had finished, so nothing was saved in {tmp_path}: "
                                                    "running it again starts from the first epoch"):
        train.train(small_cnn(), synthetic, config, "cpu", out_dir=tmp_path, progress=False)
    stop_at_step(monkeypatch, 8)
    with pytest.raises(train.TrainingStopped, match="Nothing of it was saved"):
        train.train(small_cnn(), synthetic, config, "cpu", progress=False)


@pytest.fixture
def bars(monkeypatch):
    """[(description, count, total, postfix)] of every progress bar that normlab.train and normlab.experiments
    show, as each closes."""
    closed = []

    class RecordedBar(tqdm):
        def close(self):
            if not self.disable and not getattr(self, "recorded", False):
                self.recorded = True
                closed.append((self.desc, self.n, self.total, self.postfix))
            super().close()

    monkeypatch.setattr(train, "tqdm", RecordedBar)
    monkeypatch.setattr(experiments, "tqdm", RecordedBar)
    return closed


def run_bars(closed):
    """The bars of whole runs (one per run, counting epochs), not those of the steps of an epoch."""
    return [bar for bar in closed if not bar[0].startswith("epoch ")]


def test_a_finished_run_ends_with_a_full_bar_a_resumed_one_too_and_a_diverged_one_says_so(synthetic, tmp_path,
                                                                                         monkeypatch, bars):
    train.train(small_cnn(), synthetic, plain(epochs=1, batch_size=64), "cpu", label="one epoch")  # the bonus cell
    assert [bar[:3] for bar in run_bars(bars)] == [("one epoch", 1, 1)]
    with monkeypatch.context() as patch:
        stop_at_step(patch, 8)
        with pytest.raises(train.TrainingStopped):
            train.train(small_cnn(), synthetic, plain(epochs=3, batch_size=64), "cpu", out_dir=tmp_path,
                        label="stopped")
    train.train(small_cnn(), synthetic, plain(epochs=3, batch_size=64), "cpu", out_dir=tmp_path, label="resumed")
    assert [bar[:3] for bar in run_bars(bars)[1:]] == [("stopped", 1, 3), ("resumed", 3, 3)]

    diverging = small_cnn()
    with torch.no_grad():
        diverging[-1].weight.fill_(float("nan"))
    history = train.train(diverging, synthetic, plain(epochs=3, batch_size=64), "cpu", label="diverging")
    description, count, total, postfix = run_bars(bars)[-1]
    assert history["status"] == "diverged" and (description, count, total) == ("diverging", 1, 3)
    assert postfix == "diverged in epoch 1: the loss is no longer finite"


def test_every_run_of_the_smoke_grid_ends_with_a_full_bar(synthetic_root, tmp_path, monkeypatch, bars):
    monkeypatch.setattr(data, "SYNTHETIC_ROOT", synthetic_root)
    grid = dataclasses.replace(experiments.Grid.smoke(), norms=("BN", "none"), stems=("cifar",))
    results = experiments.run_grid(lambda **options: small_cnn(options["num_classes"]), grid, tmp_path,
                                   devices=["cpu"])
    assert [h["status"] for h in results] == ["complete", "complete"]
    assert [bar[:3] for bar in run_bars(bars)] == [(run.name, 2, 2) for run in grid.runs()]


@pytest.fixture(scope="module")
def two_cli_runs(tmp_path_factory):
    """Two runs of one `python -m normlab.train --synthetic` command, each in a process of its own, on a small
    synthetic CIFAR-10: [(what it wrote to stderr, its history)]."""
    root = tmp_path_factory.mktemp("cli")
    data.write_synthetic("cifar10", root / "synthetic", train_size=512, test_size=100)
    runs = []
    for attempt in ("first", "second"):
        completed = subprocess.run([sys.executable, "-m", "normlab.train", "--synthetic", "--width", "8", "--epochs",
                                    "2", "--batch-size", "256", "--out", str(root / attempt)], cwd=REPO,
                                   env={**os.environ, "NORMLAB_DATA": str(root)}, capture_output=True, text=True,
                                   timeout=600)
        assert completed.returncode == 0, completed.stderr[-3000:]
        runs.append((completed.stderr, json.loads((root / attempt / "cifar10-BN-cifar" / "history.json").read_text())))
    return runs


def test_two_runs_of_one_cli_command_give_the_same_history(two_cli_runs):
    (_, first), (_, second) = two_cli_runs
    assert first["status"] == "complete" and comparable(first) == comparable(second)


def test_the_cli_shows_its_bar_full_when_the_run_ends(two_cli_runs):
    shown = [line for line in two_cli_runs[0][0].replace("\r", "\n").splitlines()
             if line.startswith("cifar10-BN-cifar:")]
    assert shown and re.match(r"cifar10-BN-cifar: 100%\|█+\| 2/2 ", shown[-1]), shown


def test_a_stopped_grid_says_how_many_runs_are_kept_and_how_to_go_on(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYNTHETIC_ROOT", synthetic_root)
    grid = dataclasses.replace(experiments.Grid.smoke(), norms=("BN", "none"), stems=("cifar",))
    stop_at_step(monkeypatch, 5)  # two steps per epoch: in the first epoch of the second run
    with pytest.raises(train.TrainingStopped) as stopped:
        experiments.run_grid(lambda **options: small_cnn(options["num_classes"]), grid, tmp_path, devices=["cpu"],
                             progress=False)
    assert str(stopped.value).splitlines() == [
        f"cifar10-none-cifar: stopped during epoch 1 of 2. No epoch had finished, so nothing was saved in "
        f"{tmp_path / 'cifar10-none-cifar'}: running it again starts from the first epoch.",
        f"1 of 2 runs of the grid are finished in {tmp_path}. Run this cell again to train the rest: finished runs "
        "are kept, and every other run resumes after its last finished epoch."]
