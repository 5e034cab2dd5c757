"""The array operations the adaptive levels (:mod:`trainer.levels`) are computed with.

The level computation is written once against the small interface of :class:`NumpyArrays` and
:class:`TorchArrays` plus the operators and methods numpy arrays and torch tensors share
(arithmetic, comparisons, slicing, ``sum``, ``cumsum``, ``argmax``, ``all``, ``any``,
``reshape``, ``tolist``). :func:`arrays_for` picks the backend of a tensor:

* numpy for a tensor on the CPU, on the tensor's own memory. That is where a data pipeline
  computes levels, on small arrays where per-call overhead and indexing dominate: numpy's
  vectorised row sort, fancy indexing and ``repeat`` are several times faster there than torch's.
  The few kernels where torch is the faster on the CPU (cumulative sums, batched binary search,
  broadcasting over the dynamic programme's tables) run through torch on the same memory.
* torch on the tensor's device otherwise (CUDA, MPS), so nothing leaves the device.

Both give the same results: the tests run the two on the same rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.devices import widest_float

logger = logging.getLogger(__name__)


def work_dtype(device: torch.device) -> torch.dtype:
    """float64 for the clustering arithmetic, except on MPS, which has no float64."""
    return widest_float(device)


class NumpyArrays:
    """numpy, for tensors on the CPU (shares their memory, no copy)."""

    inf = np.inf
    int64 = np.int64
    int8 = np.int8
    work = np.float64

    @staticmethod
    def quiet() -> contextlib.AbstractContextManager:
        """Silence floating-point warnings: inf - inf and 0 / 0 arise, by design, in splits
        that are then discarded."""
        return np.errstate(divide="ignore", invalid="ignore", over="ignore")

    @staticmethod
    def from_tensor(values: Tensor) -> np.ndarray:
        return values.detach().numpy()

    @staticmethod
    def to_tensor(array: Any) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array))

    @staticmethod
    def as_torch(array: np.ndarray) -> Tensor:
        """A tensor on the same memory, for the kernels where torch is the faster."""
        return torch.from_numpy(array)

    @staticmethod
    def from_torch(tensor: Tensor) -> np.ndarray:
        return tensor.numpy()

    @staticmethod
    def both_directions(matrix: np.ndarray) -> np.ndarray:
        """(2, B, B): a copy of the matrix and one of its transpose."""
        return np.stack([matrix, matrix.T])

    @staticmethod
    def sort_rows(x: np.ndarray) -> np.ndarray:
        return np.sort(x, axis=1)

    @staticmethod
    def isfinite(x: np.ndarray) -> np.ndarray:
        return np.isfinite(x)

    @staticmethod
    def astype(x: np.ndarray, dtype: Any) -> np.ndarray:
        return x.astype(dtype, copy=False)

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> np.ndarray:
        return np.where(cond, a, b)

    @staticmethod
    def clip(x: np.ndarray, low: Any = None, high: Any = None) -> np.ndarray:
        # np.maximum / np.minimum: np.clip costs several times more on small arrays
        if low is not None:
            x = np.maximum(x, low)
        return x if high is None else np.minimum(x, high)

    @staticmethod
    def cumsum(x: np.ndarray) -> np.ndarray:
        """Cumulative sums along each row (torch's kernel: numpy's is several times slower)."""
        out = np.empty(x.shape, dtype=x.dtype)
        torch.cumsum(torch.from_numpy(np.ascontiguousarray(x)), 1, out=torch.from_numpy(out))
        return out

    @staticmethod
    def cat(parts: Sequence[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(parts, axis=axis)

    @staticmethod
    def take(x: np.ndarray, index: np.ndarray) -> np.ndarray:
        """x[..., index] along the last axis, index with the same leading shape."""
        if x.ndim == 2:  # plain fancy indexing: several times faster than take_along_axis
            return x[np.arange(x.shape[0])[:, None], index]
        return np.take_along_axis(x, index, axis=-1)

    @staticmethod
    def copy(x: np.ndarray) -> np.ndarray:
        return x.copy()

    @staticmethod
    def full(shape: tuple[int, ...], value: Any, dtype: Any) -> np.ndarray:
        return np.full(shape, value, dtype=dtype)

    @staticmethod
    def arange(n: int) -> np.ndarray:
        return np.arange(n)

    @staticmethod
    def array(values: Sequence[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    @staticmethod
    def nonzero(x: np.ndarray) -> tuple[np.ndarray, ...]:
        flat = np.flatnonzero(x)  # several times faster than np.nonzero on a matrix
        return (flat,) if x.ndim == 1 else tuple(np.divmod(flat, x.shape[1]))

    @staticmethod
    def stable_order(x: np.ndarray) -> np.ndarray:
        return np.argsort(x, kind="stable")

    @staticmethod
    def kth_largest(x: np.ndarray, k: int) -> np.ndarray:
        """The k-th largest value of every row (a value: the same whatever breaks ties)."""
        return np.partition(x, x.shape[1] - k, axis=1)[:, x.shape[1] - k]

    @staticmethod
    def run_starts(starts: np.ndarray, distinct: np.ndarray, width: int) -> np.ndarray:
        """(G, width) positions of the True entries of each row in order, padded with N."""
        g, n = starts.shape
        if 4 * width > n:  # many: a radix sort of the booleans of every row
            order = np.argsort(~starts, axis=1, kind="stable")[:, :width]
            return np.where(np.arange(width) < distinct[:, None], order, n)
        row, col = np.divmod(np.flatnonzero(starts), n)  # few: where they are, rank in their row
        out = np.full((g, width), n, dtype=np.int64)
        out[row, np.arange(row.shape[0]) - (np.cumsum(distinct) - distinct)[row]] = col
        return out

    @staticmethod
    def expand(tables: Sequence[np.ndarray], counts: np.ndarray, width: int) -> list[np.ndarray]:
        """Repeat entry c of each (G, S, C) table counts[g, s, c] times along the last axis.

        Each counts[g, s] sums to ``width``; the results are (G, S, width).
        """
        repeats = counts.reshape(-1)
        return [np.repeat(t.reshape(-1), repeats).reshape(*counts.shape[:2], width) for t in tables]

    @staticmethod
    def searchsorted_rows(sorted_rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """For each query of row g, how many values of sorted_rows[g] are <= it."""
        # torch's batched binary search on the same memory: numpy has no batched searchsorted
        out = np.empty(queries.shape, dtype=np.int64)
        torch.searchsorted(
            torch.from_numpy(np.ascontiguousarray(sorted_rows)),
            torch.from_numpy(np.ascontiguousarray(queries)),
            right=True,
            out=torch.from_numpy(out),
        )
        return out


class TorchArrays:
    """torch, on the tensor's own device (CUDA, MPS; the CPU too, where tests compare both)."""

    inf = float("inf")
    int64 = torch.int64
    int8 = torch.int8

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.work = work_dtype(device)

    @staticmethod
    def quiet() -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    @staticmethod
    def from_tensor(values: Tensor) -> Tensor:
        return values.detach()

    @staticmethod
    def to_tensor(array: Tensor) -> Tensor:
        return array

    @staticmethod
    def as_torch(tensor: Tensor) -> Tensor:
        return tensor

    @staticmethod
    def from_torch(tensor: Tensor) -> Tensor:
        return tensor

    @staticmethod
    def both_directions(matrix: Tensor) -> Tensor:
        return torch.stack([matrix, matrix.T])

    @staticmethod
    def sort_rows(x: Tensor) -> Tensor:
        return torch.sort(x, dim=1).values

    @staticmethod
    def isfinite(x: Tensor) -> Tensor:
        return torch.isfinite(x)

    @staticmethod
    def astype(x: Tensor, dtype: Any) -> Tensor:
        return x.to(dtype)

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Tensor:
        return torch.where(cond, a, b)

    @staticmethod
    def clip(x: Tensor, low: Any = None, high: Any = None) -> Tensor:
        return x.clamp(low, high)

    @staticmethod
    def cumsum(x: Tensor) -> Tensor:
        return x.cumsum(1)

    @staticmethod
    def cat(parts: Sequence[Tensor], axis: int) -> Tensor:
        return torch.cat(list(parts), dim=axis)

    @staticmethod
    def take(x: Tensor, index: Tensor) -> Tensor:
        return x.gather(-1, index)

    @staticmethod
    def copy(x: Tensor) -> Tensor:
        return x.clone()

    def full(self, shape: tuple[int, ...], value: Any, dtype: Any) -> Tensor:
        return torch.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, n: int) -> Tensor:
        return torch.arange(n, device=self.device)

    def array(self, values: Sequence[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.int64, device=self.device)

    @staticmethod
    def nonzero(x: Tensor) -> tuple[Tensor, ...]:
        return torch.nonzero(x, as_tuple=True)

    @staticmethod
    def stable_order(x: Tensor) -> Tensor:
        return torch.sort(x, stable=True).indices

    @staticmethod
    def kth_largest(x: Tensor, k: int) -> Tensor:
        return torch.topk(x, k, dim=1).values[:, k - 1]

    def run_starts(self, starts: Tensor, distinct: Tensor, width: int) -> Tensor:
        row, col = torch.nonzero(starts, as_tuple=True)
        # rank of each run start within its row (nonzero lists them row by row, in order)
        rank = torch.arange(col.shape[0], device=self.device) - (distinct.cumsum(0) - distinct)[row]
        out = torch.full((starts.shape[0], width), starts.shape[1], dtype=torch.int64, device=self.device)
        out[row, rank] = col
        return out

    def expand(self, tables: Sequence[Tensor], counts: Tensor, width: int) -> list[Tensor]:
        g, s, c = counts.shape
        label = torch.repeat_interleave(
            torch.arange(c, device=self.device).repeat(g * s), counts.reshape(-1), output_size=g * s * width
        ).view(g, s, width)
        return [t.gather(2, label) for t in tables]

    @staticmethod
    def searchsorted_rows(sorted_rows: Tensor, queries: Tensor) -> Tensor:
        return torch.searchsorted(sorted_rows.contiguous(), queries.contiguous(), right=True)


Arrays = NumpyArrays | TorchArrays


def arrays_for(values: Tensor) -> Arrays:
    """numpy for a tensor on the CPU, torch on the tensor's device otherwise."""
    return NumpyArrays() if values.device.type == "cpu" else TorchArrays(values.device)
