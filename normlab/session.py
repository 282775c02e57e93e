"""One training step and everything it needs: a model on its device, autocast and loss scaling, fused SGD with
Nesterov momentum, the learning-rate schedule, how the model executes, and a moving average of the weights.

config is a normlab.train.TrainConfig. Session and WeightAverage give their whole state as a state_dict, so that a
run can be resumed exactly (normlab.checkpoint).
"""
import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from normlab.devices import autocast_dtype

COMPILED_GRAPHS_KEPT = 64  # dynamo's cache per function: the grid's 10 architectures x 2 classifiers x train and eval


def parameter_groups(model, weight_decay):
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    undecayed = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]


def learning_rate_factor(step, total_steps, config):
    """Multiplier of config.lr at a given optimizer step."""
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * step / total_steps))
    if config.schedule != "onecycle":
        raise ValueError(f"schedule must be 'onecycle' or 'cosine', not {config.schedule!r}")
    warmup = max(1, int(config.warmup_fraction * total_steps))
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))


@dataclass(frozen=True)
class Execution:
    """How a model executes on its device. Neither choice changes what training computes."""

    channels_last: bool = False
    compile: bool = False  # torch.compile with static shapes

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format


def keep_compiled_graphs():
    """Let dynamo keep the graphs of every model a process compiles. Its default keeps 8 per function (all the
    models' forward), and beyond that it runs the function eagerly without a word; a cache that holds them all
    also means that a model is compiled once per process, not once per run."""
    from torch._dynamo import config  # here, not at the top: importing dynamo takes seconds that eager runs spare

    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(config, name, max(getattr(config, name), COMPILED_GRAPHS_KEPT))


class Session:
    """A model on its device with everything a training step needs. total_steps is the length of the whole run,
    which the learning-rate schedule spans."""

    def __init__(self, model, config, device, total_steps, execution=Execution()):
        self.config = config
        self.device = device
        self.model = model.to(device, memory_format=execution.memory_format)
        self.dtype = autocast_dtype(config.amp, device)
        self.autocast = torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)
        # fp16's narrow range needs the loss scaled so that small gradients do not flush to zero; bf16's does not.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        # One fused kernel per step instead of one per parameter tensor (fused SGD exists for CUDA and CPU).
        update = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=config.nesterov, **update)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: learning_rate_factor(step, total_steps, config))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # shapes are static, so each convolution is tuned once
        if execution.compile:
            keep_compiled_graphs()
        # torch.compile returns a module for a module, though its annotation says only a callable
        self.step_model = cast(nn.Module, torch.compile(self.model, dynamic=False)) if execution.compile \
            else self.model

    def step(self, x, y):
        """One optimizer step on a batch; returns the (detached) loss and the logits. With fp16, a step whose
        gradients overflow is skipped and the loss scale halves."""
        with self.autocast:
            logits = self.step_model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach(), logits

    @property
    def precision(self):
        return str(self.dtype).replace("torch.", "") if self.dtype is not None else "float32"

    def state_dict(self):
        """What the next steps depend on: weights and buffers, momentum, loss scale, position in the schedule."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "schedule": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # A run saved in another precision (resumed on another GPU) has no loss scale to restore, or none to use.
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.scheduler.load_state_dict(state["schedule"])


class WeightAverage:
    """An exponential moving average of a model's state: its parameters and floating-point buffers (BN's running
    statistics). Integer buffers (BN's num_batches_tracked) follow the model.

    It starts as a copy of the model's state. The n-th update (n = 0, 1, ...) moves each average to
    decay_n x average + (1 - decay_n) x current, with decay_n = min(decay, (1 + n) / (10 + n)): the ramp of
    tf.train.ExponentialMovingAverage, so a short window is not dominated by its starting point.
    """

    def __init__(self, model, decay):
        self.decay = decay
        self.updates = 0
        self.current = model.state_dict()  # aliases of the live tensors, which training updates in place
        self.average = {name: tensor.detach().clone() for name, tensor in self.current.items()}
        self.floats = [name for name, tensor in self.average.items() if tensor.is_floating_point()]
        self.others = [name for name in self.average if name not in self.floats]

    @torch.no_grad()
    def update(self):
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        # One kernel per step for all tensors, as torch.optim.swa_utils' EMA does.
        torch._foreach_lerp_([self.average[n] for n in self.floats], [self.current[n] for n in self.floats],
                             1 - decay)
        for name in self.others:
            self.average[name].copy_(self.current[name])
        self.updates += 1

    @torch.no_grad()
    def copy_into_model(self):
        """Overwrite the model's state with the averages."""
        torch._foreach_copy_(list(self.current.values()), list(self.average.values()))

    def state_dict(self):
        return {"average": self.average, "updates": self.updates}

    @torch.no_grad()
    def load_state_dict(self, state):
        for name, tensor in state["average"].items():
            self.average[name].copy_(tensor)
        self.updates = state["updates"]
