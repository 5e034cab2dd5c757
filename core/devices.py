"""Where a model runs and in what precision: the device to use, and the autocast dtype on it.

Every part that runs a model (the embedder, training, the full fine-tune, the level computation)
asks here, so that "auto" means the same everywhere: a CUDA GPU (in a distributed run, the GPU of
the process's local rank), then Apple's MPS, then the CPU. On CUDA the forward passes run under
autocast, in bfloat16 where the GPU supports it and in float16 (which needs loss scaling when
training) where it does not; elsewhere they run in float32.

This module imports torch: import it only where torch is needed anyway.
"""

from __future__ import annotations

import contextlib

import torch

from core.errors import ModelError

AUTO = "auto"


class DeviceUnavailableError(ModelError):
    """A device was asked for that this machine does not have."""


def pick_device(
    pref: str | torch.device | None = AUTO,
    *,
    local_rank: int | None = None,
    allow_mps: bool = True,
) -> torch.device:
    """The device to run on.

    Args:
        pref: ``"auto"`` (or ``None``): CUDA if present, then MPS (when ``allow_mps``), then the
            CPU. Anything else names a device as torch does: ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``.
        local_rank: the process's local rank in a distributed run: CUDA then means that GPU
            (for ``"auto"`` and for ``"cuda"`` without an index). ``None`` outside one: plain
            ``cuda``, the current GPU.
        allow_mps: whether ``"auto"`` may choose MPS.

    Raises:
        DeviceUnavailableError: CUDA was asked for and there is no CUDA GPU.
    """
    if pref is None or pref == AUTO:
        if torch.cuda.is_available():
            return _cuda(local_rank)
        if allow_mps and mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError("device 'cuda' was asked for but no CUDA GPU is available")
        if device.index is None:
            device = _cuda(local_rank)
    return device


def uses_cuda(pref: str | torch.device | None = AUTO) -> bool:
    """Whether :func:`pick_device` chooses a CUDA GPU for ``pref`` (e.g. to choose NCCL over gloo)."""
    if not torch.cuda.is_available():
        return False
    if pref is None or pref == AUTO:
        return True
    try:
        return torch.device(pref).type == "cuda"
    except RuntimeError:  # not a device name: pick_device says so
        return False


def mps_available() -> bool:
    """Whether Apple's MPS backend is present and usable."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of the module's first parameter (the CPU for a module without parameters)."""
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype forward passes on ``device`` run in under autocast; ``None``: no autocast (float32).

    CUDA only: bfloat16 where that GPU computes it natively (Ampere and later), else float16
    (torch would report emulated bfloat16 on older GPUs as supported, and it is slow there).
    Other devices run in float32.
    """
    if device.type != "cuda":
        return None
    if device.index is None:  # plain "cuda" is the current GPU, the one torch asks about
        supported = torch.cuda.is_bf16_supported(including_emulation=False)
    else:  # torch.cuda.is_bf16_supported() asks about the current GPU: make it this one meanwhile
        with torch.cuda.device(device.index):
            supported = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if supported else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast in :func:`autocast_dtype` on ``device``, or nothing where there is none."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_loss_scaling(device: torch.device) -> bool:
    """Whether training under :func:`autocast` on ``device`` needs a gradient scaler (float16 does;
    bfloat16 and float32 do not)."""
    return autocast_dtype(device) == torch.float16


def widest_float(device: torch.device) -> torch.dtype:
    """float64 for arithmetic that needs it, except on MPS, which has no float64 (float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _cuda(local_rank: int | None) -> torch.device:
    return torch.device("cuda") if local_rank is None else torch.device("cuda", local_rank)
