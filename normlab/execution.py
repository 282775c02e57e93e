"""How a model should execute on its device, chosen by timing the candidates: BN and the GroupNorm-based norms are
fastest with different memory layouts, and torch.compile pays only when the steps it saves outweigh its compiling.

Compiling is paid once per model per process: dynamo keeps every graph it builds (session.keep_compiled_graphs),
so a later run of the same model, a grid's next run of that architecture say, reuses them. The choice therefore
counts a compile's seconds only where the model has not been compiled yet, and weighs them against the steps the
run has left, fewer for a resumed run.
"""
import copy
import statistics
import time
import warnings
from dataclasses import asdict
from typing import Any

from torch import nn

from normlab.batches import DeviceBatches
from normlab.devices import can_compile, compile_problem, synchronize
from normlab.session import Execution, Session

TUNE_WARMUP_STEPS = 2  # untimed steps of each candidate: compiling and cuDNN autotuning happen here

_timed: dict[tuple[object, ...], list[dict[str, Any]]] = {}  # per architecture, device, batch size and precision: what time_executions measured
_compiled: set[tuple[object, ...]] = set()  # the compiled_model_key of every model compiled in this process
_compile_failures: dict[str, str] = {}  # str(device): why torch.compile failed on it in this process


def compile_blocked(device):
    """Why torch.compile cannot run on device in this process, or None: a compile already failed on it here, or,
    on a CUDA GPU, Triton does not work (devices.compile_problem). On the CPU Inductor generates C++, not Triton."""
    if str(device) in _compile_failures:
        return _compile_failures[str(device)]
    return compile_problem(device) if device.type == "cuda" else None


def candidate_executions(config, device):
    """The executions to choose from: both memory layouts, and torch.compile where it is offered (can_compile)
    and has not failed here, unless config fixes them. A compile that config asks for but that cannot run here
    (compile_blocked) gives way to eager execution: compile_note says so."""
    layouts = [True, False] if config.channels_last is None else [config.channels_last]
    if config.compile is None:
        compiling = [False, True] if can_compile(device) and str(device) not in _compile_failures else [False]
    else:
        compiling = [bool(config.compile and not compile_blocked(device))]
    return [Execution(layout, compiled) for compiled in compiling for layout in layouts]


def compile_note(config, device):
    """What a run's record of its execution says about torch.compile on a CUDA GPU where it cannot run (or on any
    device where it failed in this process); None where there is nothing to say."""
    blocked = compile_blocked(device)
    if blocked is None or config.compile is False:
        return None
    if config.compile:
        return f"torch.compile was asked for, but {blocked}: eager instead"
    return f"torch.compile not a candidate: {blocked}"


def architecture(model, classifier=False):
    """The model's layers as text; without its classifier (nn.Linear) unless classifier: CIFAR-10 and CIFAR-100
    variants execute alike, but torch.compile builds a graph for each."""
    return type(model).__name__ + "".join(repr(m) for m in model.modules()
                                          if not list(m.children()) and (classifier or not isinstance(m, nn.Linear)))


def compiled_model_key(model, config, device, execution):
    """What decides whether dynamo's cached graphs fit a model: its layers, batch shape, precision and layout."""
    return architecture(model, classifier=True), str(device), config.batch_size, config.amp, execution.channels_last


def mark_compiled(model, config, device, execution):
    """Record that model is compiled in this process, so that its next run counts no compiling."""
    if execution.compile:
        _compiled.add(compiled_model_key(model, config, device, execution))


def timed_steps(session, batch, steps):
    """Seconds that `steps` training steps of session on batch take."""
    synchronize(session.device)
    started = time.perf_counter()
    for _ in range(steps):
        session.step(*batch)
    synchronize(session.device)
    return time.perf_counter() - started


def time_executions(model, config, device, images, labels, executions, steps):
    """For each execution, a copy of model's median seconds per training step on one batch, and the extra seconds
    its first TUNE_WARMUP_STEPS steps took (compiling, autotuning). The timed steps alternate between the
    executions, so that all of them meet the same load on a shared machine."""
    trials, batches, timings = [], [], []
    for execution in executions:
        batch = next(DeviceBatches(images[:config.batch_size], labels[:config.batch_size], device,
                                   config.batch_size, execution.memory_format).epoch(shuffle=False))
        try:
            trial = Session(copy.deepcopy(model), config, device, TUNE_WARMUP_STEPS + steps, execution)
            trial.model.train()
            warmup_seconds = timed_steps(trial, batch, TUNE_WARMUP_STEPS)
        except Exception as error:  # torch.compile's first steps compile: a broken toolchain fails here
            if not execution.compile:
                raise
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            _compile_failures[str(device)] = f"torch.compile failed here ({type(error).__name__}: {first_line})"
            warnings.warn(f"{_compile_failures[str(device)]}; training runs without it", stacklevel=2)
            continue
        trials.append(trial)
        batches.append(batch)
        timings.append({**asdict(execution), "warmup_seconds": warmup_seconds, "step_times": []})
    for round_index in range(steps):
        order = range(len(trials)) if round_index % 2 == 0 else reversed(range(len(trials)))
        for index in order:
            timings[index]["step_times"].append(timed_steps(trials[index], batches[index], 1))
    for timing in timings:
        timing["step_seconds"] = statistics.median(timing.pop("step_times"))
        timing["setup_seconds"] = max(0.0, timing.pop("warmup_seconds") - TUNE_WARMUP_STEPS * timing["step_seconds"])
    return timings


def compile_outlook():
    """From the compiled trials of this process so far: the largest share of a step that compiling saved, and the
    longest compile; None before the first compiled trial."""
    gains, seconds = [], []
    for timings in _timed.values():
        for compiled in (t for t in timings if t["compile"]):
            eager = next(t for t in timings if not t["compile"] and t["channels_last"] == compiled["channels_last"])
            gains.append(1 - compiled["step_seconds"] / eager["step_seconds"])
            seconds.append(compiled["setup_seconds"])
    return (max(gains), max(seconds)) if gains else None


def predicted_seconds(timing, model, config, device, remaining_steps):
    """remaining_steps at the timing's seconds per step, plus its compiling where model is not compiled yet."""
    execution = Execution(timing["channels_last"], timing["compile"])
    compiling = execution.compile and compiled_model_key(model, config, device, execution) not in _compiled
    return remaining_steps * timing["step_seconds"] + (timing["setup_seconds"] if compiling else 0.0)


def _known(model, config, device):
    """The timings this process measured for model's architecture with config on device (a list to add to)."""
    return _timed.setdefault((architecture(model), str(device), config.batch_size, config.amp, config.tune_steps), [])


def _untimed(model, config, device, executions):
    timed = {Execution(t["channels_last"], t["compile"]) for t in _known(model, config, device)}
    return [e for e in executions if e not in timed]


def timings_for(model, config, device, images, labels, executions):
    """Timings of model in each of executions: those this process measured for its architecture already, and
    time_executions' for the others."""
    timings = _known(model, config, device)
    untimed = _untimed(model, config, device, executions)
    if untimed:
        timings += time_executions(model, config, device, images, labels, untimed, config.tune_steps)
        for execution in untimed:
            mark_compiled(model, config, device, execution)  # dynamo's graphs of the timed copy fit model too
    return [t for t in timings if Execution(t["channels_last"], t["compile"]) in executions]


def _in_layout(executions, timing):
    return [e for e in executions if e.channels_last == timing["channels_last"]]


def _trials_needed(model, config, device, eager, compiling):
    """How many copies of model choose_execution would have to time: the eager candidates without a timing, and
    the compiled one in the faster eager layout if that has none."""
    untimed = len(_untimed(model, config, device, eager))
    if untimed or not compiling:
        return untimed + bool(compiling)
    timed = [t for t in _known(model, config, device) if Execution(t["channels_last"], t["compile"]) in eager]
    return len(_untimed(model, config, device, _in_layout(compiling, min(timed, key=lambda t: t["step_seconds"]))))


def choose_execution(model, config, device, images, labels, remaining_steps, force=False, candidates=None):
    """The candidate execution of model with the shortest predicted rest of the run, and a record of the choice.

    candidates defaults to candidate_executions(config, device). Each eager candidate trains a copy of model for
    config.tune_steps timed steps (timings_for); then torch.compile is timed in the faster layout, unless the
    trials of earlier models show that it cannot pay here: their best saving per step, over remaining_steps, less
    than their longest compile. Timings are kept per architecture, device, batch size and precision for the rest of
    the process, and only candidates without one are timed. An execution is predicted to take remaining_steps x
    step_seconds, plus setup_seconds if it compiles a model not yet compiled in this process. Unless force, a run
    too short to pay for the timings it needs (more than config.tune_share of its steps) takes the default
    instead: eager and NCHW wherever config leaves the choice open. Where torch.compile cannot run (compile_blocked:
    no working Triton on a CUDA GPU, or a compiled trial that failed in this process), the run executes eagerly,
    with a warning and a note in the record (compile_note).
    """
    note = compile_note(config, device) if candidates is None else None
    if note:
        warnings.warn(note, stacklevel=2)
    note = f"; {note}" if note else ""
    candidates = candidates or candidate_executions(config, device)
    if len(candidates) == 1:
        return candidates[0], {**asdict(candidates[0]), "chosen_by": "config" + note}
    eager = [c for c in candidates if not c.compile] or candidates
    compiling = [c for c in candidates if c not in eager]
    trials = _trials_needed(model, config, device, eager, compiling)
    chosen_by = "timing" if trials else "timing (cached from an earlier run of this architecture)"
    if trials and not force and trials * (TUNE_WARMUP_STEPS + config.tune_steps) > config.tune_share * remaining_steps:
        default = Execution(bool(config.channels_last), bool(config.compile) and candidates[0].compile)
        return default, {**asdict(default), "chosen_by": "default: the run is too short to time candidates" + note}
    timings = timings_for(model, config, device, images, labels, eager)
    fastest = min(timings, key=lambda t: t["step_seconds"])
    compiled = _in_layout(compiling, fastest)
    outlook = compile_outlook()
    if _untimed(model, config, device, compiled) and not force and outlook and \
            remaining_steps * fastest["step_seconds"] * outlook[0] < outlook[1]:
        chosen_by += (f"; torch.compile not timed: saving {outlook[0]:.0%} of a step at best, the run's "
                      f"{remaining_steps} steps would not pay back a {outlook[1]:.0f} s compile")
    elif compiled:
        timings += timings_for(model, config, device, images, labels, compiled)
        if str(device) in _compile_failures:
            chosen_by += f"; {_compile_failures[str(device)]}: eager instead"
    considered = [{**t, "predicted_seconds": predicted_seconds(t, model, config, device, remaining_steps)}
                  for t in timings]
    best = min(considered, key=lambda t: t["predicted_seconds"])
    execution = Execution(best["channels_last"], best["compile"])
    return execution, {**asdict(execution), "chosen_by": chosen_by + note, "timings": considered}
