"""Runs inside the student's notebook kernel, sent by the grader after the notebook has run: it calls the
student's definitions on the grader's inputs and writes what comes back, as float64 arrays, shapes and names, to
the file REPLY. It judges nothing; the grader compares everything in its own process.

The grader executes `exec(<wire.py><this file>, {"STUDENT": globals(), "REQUEST": <path>, "REPLY": <path>,
"MESSAGE_CHARS": <int>})`: STUDENT is the kernel's namespace, REQUEST a file the grader wrote, encoding
{"op", "args"} and input arrays, and MESSAGE_CHARS how much of an exception's message the grader keeps.

Where a check must not depend on another question's answer, the grader asks for stand-ins: `make_norm` becomes a
Marker (a per-channel affine map the grader knows) or plain BatchNorm2d, `make_shortcut` a 1x1 convolution and
norm. They are put into STUDENT for the duration of one request and taken out again.
"""
import contextlib

import numpy as np
import torch
from torch import nn


def tensor(values):
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def array(value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(value).__name__}")
    return value.detach().to(torch.float64).cpu().numpy()


def describe_parameters(module, arrays):
    """Names and shapes of the trainable parameters in meta, their values as arrays parameter_<i>."""
    described = []
    for index, (name, parameter) in enumerate((n, p) for n, p in module.named_parameters() if p.requires_grad):
        described.append([name, list(parameter.shape)])
        arrays[f"parameter_{index}"] = array(parameter)
    return described


class Marker(nn.Module):
    """What make_norm returns while the grader checks a part that only has to call it: out = x * scale + shift,
    per channel, with values the grader chose."""

    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


def marker_factory(arrays, calls):
    scale, shift = tensor(arrays["marker_scale"]), tensor(arrays["marker_shift"])

    def make_norm(norm_type, num_channels, num_groups=4):
        calls.append([norm_type, num_channels, num_groups])
        return Marker(scale[:num_channels].clone(), shift[:num_channels].clone())
    return make_norm


def batchnorm_only(norm_type, num_channels, num_groups=4):
    if norm_type != "BN":
        raise ValueError(f"the grader's stand-in make_norm only builds BN, not {norm_type!r}")
    return nn.BatchNorm2d(num_channels)


def no_norm_only(norm_type, num_channels, num_groups=4):
    if norm_type != "none":
        raise ValueError(f"the grader's stand-in make_norm only builds 'none', not {norm_type!r}")
    return STUDENT["make_no_norm"](num_channels)


def projection(in_channels, out_channels, stride, norm_type, num_groups=4):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         STUDENT["make_norm"](norm_type, out_channels, num_groups))


@contextlib.contextmanager
def stand_ins(**replacements):
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


def norm_layer(args, arrays):
    reply = {}
    layer = STUDENT["make_norm"](args["norm_type"], args["channels"], args["groups"])
    meta = {"parameters": describe_parameters(layer, reply),
            "buffers": [[name, list(buffer.shape)] for name, buffer in layer.named_buffers()]}
    with torch.no_grad():
        layer.train()
        reply["train"] = array(layer(tensor(arrays["x"])))
        layer(tensor(arrays["x_other"]))
        layer.eval()
        reply["eval"] = array(layer(tensor(arrays["x_eval"])))
        layer.train()
        trainable = [p for p in layer.parameters() if p.requires_grad]
        if len(trainable) == 2 and all(p.numel() == args["channels"] for p in trainable):
            for parameter, values in zip(trainable, (arrays["gamma"], arrays["beta"])):
                parameter.copy_(tensor(values).reshape(parameter.shape))
            reply["affine"] = array(layer(tensor(arrays["x"])))
    return meta, reply


def through_marker(build, arrays):
    """Build a module with make_norm replaced by a Marker, run it in train mode on x."""
    calls, reply = [], {}
    with stand_ins(make_norm=marker_factory(arrays, calls)):
        module = build()
    meta = {"calls": calls, "parameters": describe_parameters(module, reply)}
    module.train()
    with torch.no_grad():
        reply["out"] = array(module(tensor(arrays["x"])))
    return meta, reply


def shortcut(args, arrays):
    return through_marker(lambda: STUDENT["make_shortcut"](args["in_channels"], args["out_channels"],
                                                           args["stride"], args["norm_type"], args["groups"]), arrays)


def stem(args, arrays):
    return through_marker(lambda: STUDENT["make_cifar_stem"](args["norm_type"], args["groups"], args["channels"]),
                          arrays)


def no_norm_layer(args, arrays):
    with torch.no_grad():
        return {}, {"out": array(STUDENT["make_no_norm"](args["channels"])(tensor(arrays["x"])))}


def no_norm_network(args):
    torch.manual_seed(args["seed"])
    with stand_ins(make_norm=no_norm_only, make_shortcut=projection):
        return STUDENT[args["depth"]](norm_type="none", num_classes=args["classes"], base_width=args["width"])


def no_norm_outputs(args, arrays):
    model = no_norm_network(args)
    kinds = sorted({cls.__name__ for module in model.modules() for cls in type(module).__mro__})
    model.train()
    with torch.no_grad():
        outputs = {name: array(model(tensor(arrays[name]))) for name in ("x", "x_other", "x_scaled")}
    return {"module_types": kinds}, outputs


def adam_step(parameters, moments, step, lr, betas=(0.9, 0.999), eps=1e-8):
    """One step of Adam, written out: torch.optim's first optimizer costs a process about 2 s of imports."""
    with torch.no_grad():
        for parameter, (first, second) in zip(parameters, moments):
            first.mul_(betas[0]).add_(parameter.grad, alpha=1 - betas[0])
            second.mul_(betas[1]).addcmul_(parameter.grad, parameter.grad, value=1 - betas[1])
            denominator = (second / (1 - betas[1] ** step)).sqrt_().add_(eps)
            parameter.addcdiv_(first, denominator, value=-lr / (1 - betas[0] ** step))


def trains(args, arrays):
    """Adam with gradient clipping on one fixed batch; the logits on it before and after."""
    model = no_norm_network(args)
    x, labels = tensor(arrays["x"]), torch.as_tensor(arrays["labels"]).long()
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


def cifar_resnet(args, arrays):
    torch.manual_seed(0)
    with stand_ins(make_norm=batchnorm_only, make_shortcut=projection):
        model = STUDENT[args["depth"]](stem="cifar", num_classes=args["classes"], base_width=args["width"])
    seen = {}

    def record(name):
        def hook(module, inputs):
            seen.setdefault(name, list(inputs[0].shape))
        return hook
    hooks = [getattr(model, name).register_forward_pre_hook(record(name)) for name in ("layer1", "avgpool")]
    model.train()
    with torch.no_grad():
        out = model(tensor(arrays["x"]))
    for hook in hooks:
        hook.remove()
    return {"shapes": {**seen, "output": list(out.shape)}}, {}


OPERATIONS = {"norm_layer": norm_layer, "shortcut": shortcut, "stem": stem, "no_norm_layer": no_norm_layer,
              "no_norm_outputs": no_norm_outputs, "trains": trains, "cifar_resnet": cifar_resnet}


def answer():
    with open(REQUEST, "rb") as request_file:
        request, arrays = decode(request_file.read())
    try:
        meta, reply = OPERATIONS[request["op"]](request["args"], arrays)
        meta["ok"] = True
    except BaseException as error:  # the grader wants to know what happened, whatever it was
        meta, reply = {"ok": False, "error": type(error).__name__, "message": str(error)[:MESSAGE_CHARS]}, {}
    with open(REPLY, "wb") as reply_file:
        reply_file.write(encode(meta, reply))


answer()
