"""Runs inside the student's notebook kernel, sent by the grader after the notebook has run: it calls the
student's definitions on the grader's inputs and writes what comes back, as float64 arrays, shapes and names, to
the file REPLY. It judges nothing; the grader compares everything in its own process.

The grader executes `exec(<wire.py><this file>, {"STUDENT": globals(), "REQUEST": <path>, "REPLY": <path>,
"MESSAGE_CHARS": <int>, "MODEL_CODE": <str>})`: STUDENT is the kernel's namespace, REQUEST a file the grader wrote,
encoding {"op", "args"} and input arrays, MESSAGE_CHARS how much of an exception's message the grader keeps, and
MODEL_CODE the grader's copy of the notebook's provided model code: networks are built from it, with the student's
make_norm, make_shortcut, make_no_norm and make_cifar_stem, so that a resnet18, BasicBlock or make_stem the student
redefined decides nothing.

Where a check must not depend on another question's answer, the grader asks for stand-ins: `make_norm` becomes a
Marker (a per-channel affine map the grader knows) or plain BatchNorm2d, `make_shortcut` a 1x1 convolution and
norm. They are put into STUDENT for the duration of one request and taken out again.

Inputs go in the dtype the student's module holds (float32, or float64 for a student who changed torch's default),
so that any default dtype works; what comes back is float64 either way.
"""
import contextlib
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # in the kernel, wire.py's text comes first, and the grader's exec puts in these globals
    from grading.sandboxed.wire import Arrays, Meta, decode, encode
    STUDENT: dict[str, Any]
    REQUEST: str
    REPLY: str
    MESSAGE_CHARS: int
    MODEL_CODE: str


def tensor(values: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).to(dtype or torch.get_default_dtype())


def dtype_of(module: nn.Module) -> torch.dtype:
    """The floating dtype the student's module computes in: its first parameter's or buffer's, else torch's
    default."""
    for value in itertools.chain(module.parameters(), module.buffers()):
        if value.is_floating_point():
            return value.dtype
    return torch.get_default_dtype()


def defined(name: str) -> Any:
    """The student's definition of name, or the NameError Python itself raises for a name never defined (say,
    because the cell that defines it did not compile): the grader tells the student which cell."""
    if name not in STUDENT:
        raise NameError(f"name {name!r} is not defined", name=name)
    return STUDENT[name]


STUDENT_PARTS = ("make_norm", "make_shortcut", "make_no_norm", "make_cifar_stem")


def provided(name: str) -> Any:
    """name (resnet18, ...) from the grader's copy of the provided model code, run in a namespace of its own that
    holds only the student's parts (or the stand-ins put in their place)."""
    namespace = {"torch": torch, "nn": nn, **{part: STUDENT[part] for part in STUDENT_PARTS if part in STUDENT}}
    exec(compile(MODEL_CODE, "<the provided model code>", "exec"), namespace)
    return namespace[name]


def array(value: Any) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(value).__name__}")
    # a copy: a float64 tensor's numpy() would share its memory, and the probe changes parameters afterwards
    return value.detach().to(torch.float64, copy=True).cpu().numpy()


def describe_parameters(module: nn.Module, arrays: Arrays) -> list[list[Any]]:
    """Names and shapes of the trainable parameters in meta, their values as arrays parameter_<i>."""
    described = []
    for index, (name, parameter) in enumerate((n, p) for n, p in module.named_parameters() if p.requires_grad):
        described.append([name, list(parameter.shape)])
        arrays[f"parameter_{index}"] = array(parameter)
    return described


class Marker(nn.Module):
    """What make_norm returns while the grader checks a part that only has to call it: out = x * scale + shift,
    per channel, with values the grader chose."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def marker_factory(arrays: Arrays, calls: list[list[Any]]) -> Callable[..., Marker]:
    scale, shift = tensor(arrays["marker_scale"]), tensor(arrays["marker_shift"])

    def make_norm(norm_type: str, num_channels: int, num_groups: int = 4) -> Marker:
        calls.append([norm_type, num_channels, num_groups])
        return Marker(scale[:num_channels].clone(), shift[:num_channels].clone())
    return make_norm


def batchnorm_only(norm_type: str, num_channels: int, num_groups: int = 4) -> nn.Module:
    if norm_type != "BN":
        raise ValueError(f"the grader's stand-in make_norm only builds BN, not {norm_type!r}")
    return nn.BatchNorm2d(num_channels)


def no_norm_only(norm_type: str, num_channels: int, num_groups: int = 4) -> Any:
    if norm_type != "none":
        raise ValueError(f"the grader's stand-in make_norm only builds 'none', not {norm_type!r}")
    return defined("make_no_norm")(num_channels)


def projection(in_channels: int, out_channels: int, stride: int, norm_type: str, num_groups: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         defined("make_norm")(norm_type, out_channels, num_groups))


@contextlib.contextmanager
def stand_ins(**replacements: Any) -> Iterator[None]:
    missing = object()
    saved = {name: STUDENT.get(name, missing) for name in replacements}
    STUDENT.update(replacements)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                STUDENT.pop(name, None)
            else:
                STUDENT[name] = value


def norm_layer(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    """The layer in train mode on x (then x_other, which moves any running statistics), in eval mode on x_eval and
    x_shifted, in train mode on x_eval and x_slips, then with the grader's γ and β on x."""
    reply: Arrays = {}
    layer = defined("make_norm")(args["norm_type"], args["channels"], args["groups"])
    meta = {"parameters": describe_parameters(layer, reply),
            "buffers": [[name, list(buffer.shape)] for name, buffer in layer.named_buffers()]}
    dtype = dtype_of(layer)

    def run(name: str) -> Any:
        return layer(tensor(arrays[name], dtype))
    with torch.no_grad():
        layer.train()
        reply["train"] = array(run("x"))
        run("x_other")
        layer.eval()
        reply["eval"] = array(run("x_eval"))
        reply["eval_shifted"] = array(run("x_shifted"))
        layer.train()
        reply["train_eval"] = array(run("x_eval"))
        reply["slips"] = array(run("x_slips"))
        trainable = [p for p in layer.parameters() if p.requires_grad]
        if len(trainable) == 2 and all(p.numel() == args["channels"] for p in trainable):
            for parameter, values in zip(trainable, (arrays["gamma"], arrays["beta"])):
                parameter.copy_(tensor(values, parameter.dtype).reshape(parameter.shape))
            reply["affine"] = array(run("x"))
    return meta, reply


def through_marker(build: Callable[[], Any], arrays: Arrays) -> tuple[Meta, Arrays]:
    """Build a module with make_norm replaced by a Marker, run it in train mode on x."""
    calls: list[list[Any]] = []
    reply: Arrays = {}
    with stand_ins(make_norm=marker_factory(arrays, calls)):
        module = build()
    meta = {"calls": calls, "parameters": describe_parameters(module, reply)}
    module.train()
    with torch.no_grad():
        reply["out"] = array(module(tensor(arrays["x"], dtype_of(module))))
    return meta, reply


def shortcut(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    return through_marker(lambda: defined("make_shortcut")(args["in_channels"], args["out_channels"],
                                                           args["stride"], args["norm_type"], args["groups"]), arrays)


def stem(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    return through_marker(lambda: defined("make_cifar_stem")(args["norm_type"], args["groups"], args["channels"]),
                          arrays)


def no_norm_layer(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    layer = defined("make_no_norm")(args["channels"])
    with torch.no_grad():
        return {}, {"out": array(layer(tensor(arrays["x"], dtype_of(layer))))}


def no_norm_network(args: Meta) -> Any:
    torch.manual_seed(args["seed"])
    with stand_ins(make_norm=no_norm_only, make_shortcut=projection):
        return provided(args["depth"])(norm_type="none", num_classes=args["classes"], base_width=args["width"])


def no_norm_outputs(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    model = no_norm_network(args)
    kinds = sorted({cls.__name__ for module in model.modules() for cls in type(module).__mro__})
    model.train()
    dtype = dtype_of(model)
    with torch.no_grad():
        outputs = {name: array(model(tensor(arrays[name], dtype))) for name in ("x", "x_other", "x_scaled")}
    return {"module_types": kinds}, outputs


def adam_step(parameters: list[torch.Tensor], moments: list[tuple[torch.Tensor, torch.Tensor]], step: int, lr: float,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """One step of Adam, written out: torch.optim's first optimizer costs a process about 2 s of imports. As
    torch.optim.Adam does, it leaves alone a parameter that has no gradient (one the forward did not use)."""
    with torch.no_grad():
        for parameter, (first, second) in zip(parameters, moments):
            gradient = parameter.grad
            if gradient is None:
                continue
            first.mul_(betas[0]).add_(gradient, alpha=1 - betas[0])
            second.mul_(betas[1]).addcmul_(gradient, gradient, value=1 - betas[1])
            denominator = (second / (1 - betas[1] ** step)).sqrt_().add_(eps)
            parameter.addcdiv_(first, denominator, value=-lr / (1 - betas[0] ** step))


def trains(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    """Adam with gradient clipping on one fixed batch; the logits on it before and after."""
    model = no_norm_network(args)
    x, labels = tensor(arrays["x"], dtype_of(model)), torch.as_tensor(arrays["labels"]).long()
    parameters = [p for p in model.parameters() if p.requires_grad]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in parameters]
    model.train()
    with torch.no_grad():
        before = array(model(x))
    for step in range(1, args["steps"] + 1):
        loss = nn.functional.cross_entropy(model(x), labels)
        for parameter in parameters:
            parameter.grad = None
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        adam_step(parameters, moments, step, args["lr"])
    with torch.no_grad():
        after = array(model(x))
    return {}, {"before": before, "after": after}


def cifar_resnet(args: Meta, arrays: Arrays) -> tuple[Meta, Arrays]:
    torch.manual_seed(0)
    with stand_ins(make_norm=batchnorm_only, make_shortcut=projection):
        model = provided(args["depth"])(stem="cifar", num_classes=args["classes"], base_width=args["width"])
    seen: dict[str, list[int]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            seen.setdefault(name, list(inputs[0].shape))
        return hook
    hooks = [getattr(model, name).register_forward_pre_hook(record(name)) for name in ("layer1", "avgpool")]
    model.train()
    with torch.no_grad():
        out = model(tensor(arrays["x"], dtype_of(model)))
    for hook in hooks:
        hook.remove()
    return {"shapes": {**seen, "output": list(out.shape)}}, {}


OPERATIONS: dict[str, Callable[[Meta, Arrays], tuple[Meta, Arrays]]] = {
    "norm_layer": norm_layer, "shortcut": shortcut, "stem": stem, "no_norm_layer": no_norm_layer,
    "no_norm_outputs": no_norm_outputs, "trains": trains, "cifar_resnet": cifar_resnet}


def answer() -> None:
    with open(REQUEST, "rb") as request_file:
        request, arrays = decode(request_file.read())
    try:
        meta, reply = OPERATIONS[request["op"]](request["args"], arrays)
        meta["ok"] = True
    except BaseException as error:  # the grader wants to know what happened, whatever it was
        meta, reply = {"ok": False, "error": type(error).__name__, "message": str(error)[:MESSAGE_CHARS]}, {}
        if isinstance(error, NameError) and isinstance(error.name, str):
            meta["undefined"] = error.name
    with open(REPLY, "wb") as reply_file:
        reply_file.write(encode(meta, reply))


answer()
