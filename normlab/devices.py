"""Which device to train on, and in which precision.

A CUDA GPU is used only where this torch build has kernels for it: pip's torch wheels leave out older GPUs (the
CUDA 12.8 and 13 builds start at sm_75, so Kaggle's P100, sm_60, and a V100 fail with "no kernel image is
available"). best_device falls back to the CPU there and says why.

bf16 autocast only where the hardware computes in bf16: CUDA GPUs of compute capability 8.0 or above (A100, RTX 30
and 40, H100) and CPUs with AVX512-BF16 or AMX. Older GPUs only emulate bf16, slowly: cuDNN has no bf16 convolutions
below sm_80, and Inductor will not compile bf16 there. So a T4 (sm_75), a V100 or an RTX 20 trains in fp16 with loss
scaling, which their tensor cores run fast, as does the P100's double-rate fp16 (sm_60); other GPUs train in float32.
"""
import functools
import re
import warnings

import torch

BF16_FROM = (8, 0)        # compute capability from which bf16 is native (Ampere)
FP16_FROM = (7, 0)        # tensor cores (Volta): fp16 matrix products several times faster than float32
FAST_FP16 = {(6, 0)}      # P100: no tensor cores, but fp16 arithmetic at twice the float32 rate
COMPILE_FROM = (7, 0)     # Triton, which torch.compile generates GPU kernels with, needs sm_70


def runs_on(capability, arch_list):
    """Whether a torch built for arch_list (torch.cuda.get_arch_list(): "sm_75", "compute_120", ...) has kernels
    for a GPU of this compute capability: machine code for its major version and a minor one no newer than its own
    (an sm_86 GPU runs sm_80 code), or PTX (compute_XY) no newer than it, which the driver compiles for it. Code
    for an architecture-specific target (sm_90a) runs on that exact capability only."""
    for arch in arch_list:
        found = re.fullmatch(r"(sm|compute)_(\d+)([a-z]?)", arch)
        if found is None:
            continue
        kind, number, specific = found.groups()
        built = divmod(int(number), 10)
        if specific == "a" and built != tuple(capability):
            continue
        if kind == "sm" and built[0] == capability[0] and built[1] <= capability[1]:
            return True
        if kind == "compute" and built <= tuple(capability):
            return True
    return False


def cuda_problem(index=0):
    """Why this torch cannot train on CUDA GPU `index`, in words with what to do instead; None where it can, or
    where there is no CUDA GPU at all."""
    if not torch.cuda.is_available() or torch.version.hip:  # ROCm builds name their targets otherwise (gfx...)
        return None
    capability, built_for = torch.cuda.get_device_capability(index), torch.cuda.get_arch_list()
    if runs_on(capability, built_for):
        return None
    return (f"{torch.cuda.get_device_name(index)} (compute capability {capability[0]}.{capability[1]}) cannot run "
            f"this torch {torch.__version__}, whose GPU code is built for {', '.join(built_for) or 'no GPU'} only, "
            "so training runs on the CPU instead. Choose a T4 GPU (Colab, Kaggle), or install a torch build for "
            "this GPU; `python -m normlab.estimate` says how long training takes on a T4.")


def usable_cuda_indices():
    """The CUDA GPUs this torch can train on."""
    if not torch.cuda.is_available():
        return []
    return [index for index in range(torch.cuda.device_count()) if cuda_problem(index) is None]


def best_device():
    """The first CUDA GPU this torch can run on, else Apple's GPU (MPS), else the CPU. A CUDA GPU it cannot run on
    is passed over with a warning that says why (cuda_problem)."""
    usable = usable_cuda_indices()
    if usable:
        return torch.device("cuda", usable[0]) if usable[0] else torch.device("cuda")
    if torch.cuda.is_available():
        warnings.warn(cuda_problem(), stacklevel=2)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU, {torch.get_num_threads()} threads"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def cpu_supports_bf16():
    """bf16 autocast only pays on CPUs with bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_autocast_dtype(device):
    """The fastest autocast dtype that trains well on a CUDA device, or None for float32 (see the module's doc).

    Decided from the compute capability rather than torch.cuda.is_bf16_supported(), whose default counts emulated
    bf16 as supported (True on a T4) and which asks about the current device only."""
    if torch.version.hip:  # ROCm GPUs that PyTorch supports compute in bf16
        return torch.bfloat16
    capability = torch.cuda.get_device_capability(device)
    if capability >= BF16_FROM:
        return torch.bfloat16
    if capability >= FP16_FROM or capability in FAST_FP16:
        return torch.float16
    return None


def autocast_dtype(setting, device):
    """The autocast dtype for an amp setting ("auto", "bf16", "fp16" or "off") on a device, or None for float32.
    "auto" picks per device (cuda_autocast_dtype, bf16 on CPUs with bf16 instructions); the others are obeyed."""
    if setting not in ("auto", "bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', not {setting!r}")
    if setting == "off" or device.type == "mps":
        return None
    if setting == "bf16":
        return torch.bfloat16
    if setting == "fp16":
        return torch.float16
    if device.type == "cuda":
        return cuda_autocast_dtype(device)
    return torch.bfloat16 if cpu_supports_bf16() else None


@functools.cache
def triton_problem():
    """Why Triton, which torch.compile generates GPU kernels with, cannot work here; None where it imports. pip's
    torch for Windows comes without it, and a broken install fails on import."""
    try:
        import triton  # noqa: F401
    except Exception as error:  # any failure to import it, not only its absence, rules it out
        return f"Triton does not import here ({type(error).__name__}: {error})"
    return None


def compile_problem(device):
    """Why torch.compile is not offered on device, or None where it is: CUDA GPUs that Triton supports, with
    Triton working. On the CPU, compiling ResNet-18 took minutes and was no faster (BENCHMARKS.md)."""
    if device.type != "cuda":
        return "torch.compile is offered on CUDA GPUs only"
    if not torch.version.hip and torch.cuda.get_device_capability(device) < COMPILE_FROM:
        return "Triton needs a GPU of compute capability 7.0 or more"
    return triton_problem()


def can_compile(device):
    """Whether torch.compile is worth offering on device (compile_problem)."""
    return compile_problem(device) is None
