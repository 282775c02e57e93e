"""Which device to train on, and in which precision.

bf16 autocast only where the hardware computes in bf16: CUDA GPUs of compute capability 8.0 or above (A100, RTX 30
and 40, H100) and CPUs with AVX512-BF16 or AMX. Older GPUs only emulate bf16, slowly: cuDNN has no bf16 convolutions
below sm_80, and Inductor will not compile bf16 there. So a T4 (sm_75), a V100 or an RTX 20 trains in fp16 with loss
scaling, which their tensor cores run fast, as does the P100's double-rate fp16 (sm_60); other GPUs train in float32.
"""
import torch

BF16_FROM = (8, 0)        # compute capability from which bf16 is native (Ampere)
FP16_FROM = (7, 0)        # tensor cores (Volta): fp16 matrix products several times faster than float32
FAST_FP16 = {(6, 0)}      # P100: no tensor cores, but fp16 arithmetic at twice the float32 rate
COMPILE_FROM = (7, 0)     # Triton, which torch.compile generates GPU kernels with, needs sm_70


def best_device():
    if torch.cuda.is_available():
        return torch.device("cuda")
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


def can_compile(device):
    """Whether torch.compile is worth offering on device: CUDA GPUs that Triton supports. On the CPU, compiling
    ResNet-18 took minutes and was no faster (BENCHMARKS.md)."""
    if device.type != "cuda":
        return False
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device) >= COMPILE_FROM
