"""Device choice and autocast precision, with CUDA and MPS faked where this machine has neither."""

from __future__ import annotations

import contextlib

import pytest
import torch

from core import devices
from core.devices import (
    DeviceUnavailableError,
    autocast,
    autocast_dtype,
    device_of,
    needs_loss_scaling,
    pick_device,
    uses_cuda,
    widest_float,
)
from core.errors import ModelError


@pytest.fixture
def machine(monkeypatch):
    """Say which of CUDA and MPS this machine has: ``machine(cuda=..., mps=...)``."""

    def have(cuda: bool = False, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return have


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_prefers_cuda_then_mps_then_the_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert pick_device() == torch.device(expected)
    assert pick_device(None) == torch.device(expected)
    assert pick_device("auto") == torch.device(expected)


def test_auto_in_a_distributed_run_takes_the_gpu_of_its_local_rank(machine):
    machine(cuda=True)
    assert pick_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda:1", local_rank=3) == torch.device("cuda", 1)  # an index asked for is kept
    assert pick_device("cuda") == torch.device("cuda")  # outside a distributed run: the current GPU


def test_mps_can_be_left_out_of_auto(machine):
    machine(mps=True)
    assert pick_device("auto", allow_mps=False) == torch.device("cpu")
    assert pick_device("mps", allow_mps=False) == torch.device("mps")  # asked for by name


def test_cuda_asked_for_without_a_gpu_is_a_clear_error(machine):
    machine()
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU is available") as info:
        pick_device("cuda")
    assert isinstance(info.value, ModelError)
    with pytest.raises(DeviceUnavailableError):
        pick_device("cuda:0", local_rank=0)
    assert pick_device("cpu") == torch.device("cpu")


def test_uses_cuda_says_whether_the_choice_is_a_gpu(machine):
    machine(cuda=True)
    assert uses_cuda() and uses_cuda("cuda") and uses_cuda("cuda:1")
    assert not uses_cuda("cpu") and not uses_cuda("not-a-device")
    machine(cuda=False)
    assert not uses_cuda() and not uses_cuda("cuda")


def test_no_autocast_off_cuda():
    for name in ("cpu", "mps", "meta"):
        assert autocast_dtype(torch.device(name)) is None
        assert not needs_loss_scaling(torch.device(name))
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize(
    ("bf16", "dtype", "scaling"), [(True, torch.bfloat16, False), (False, torch.float16, True)]
)
def test_cuda_autocasts_in_bfloat16_where_supported_else_float16(monkeypatch, bf16, dtype, scaling):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda) == dtype
    assert needs_loss_scaling(cuda) is scaling


def test_emulated_bfloat16_counts_as_unsupported(monkeypatch):
    """A pre-Ampere GPU: torch emulates bfloat16 there (slowly); float16 with loss scaling instead."""

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return including_emulation  # emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert autocast_dtype(torch.device("cuda")) == torch.float16
    assert needs_loss_scaling(torch.device("cuda"))


def test_an_indexed_gpu_is_asked_about_itself(monkeypatch):
    """torch.cuda.is_bf16_supported() answers for the current GPU: cuda:2 is made current meanwhile."""
    current = [0]
    entered = []

    @contextlib.contextmanager
    def select(index):
        entered.append(index)
        before, current[0] = current[0], index
        try:
            yield
        finally:
            current[0] = before

    monkeypatch.setattr(torch.cuda, "device", select)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: current[0] == 2)
    assert autocast_dtype(torch.device("cuda", 2)) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda", 1)) == torch.float16
    assert entered == [2, 1] and current == [0]


def test_widest_float_is_float64_except_on_mps():
    assert widest_float(torch.device("cpu")) == torch.float64
    assert widest_float(torch.device("cuda", 1)) == torch.float64
    assert widest_float(torch.device("mps")) == torch.float32


def test_device_of_a_module():
    assert device_of(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(torch.nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert device_of(torch.nn.ReLU()) == torch.device("cpu")  # no parameters


def test_the_models_default_device_is_this_choice(machine):
    from core.models import default_device

    machine(mps=True)
    assert default_device() == torch.device("mps") == devices.pick_device()
