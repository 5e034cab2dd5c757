"""The trainable side of :mod:`core.adapters`: residual MLP adapters as torch modules.

``ResidualAdapter(x) = normalise(x + blend * up(gelu(down(x))))`` with ``up`` initialised to zero,
so training starts from the identity (the base model). :meth:`TwinAdapter.export` turns the
trained modules into a :class:`core.adapters.Adapter` (numpy), which is what profiles store and
what the library applies.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.adapters import Adapter, ResidualMLP

logger = logging.getLogger(__name__)

DEFAULT_REDUCTION = 4
"""Hidden width = embedding width / this (CLIP-Adapter's choice)."""


def default_hidden(dim: int) -> int:
    return max(8, dim // DEFAULT_REDUCTION)


class ResidualAdapter(nn.Module):
    """``x + up(gelu(down(x)))``, L2-normalised; the identity when created."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        hidden = default_hidden(dim) if hidden is None else int(hidden)
        if hidden < 1:
            raise ValueError(f"hidden width must be positive, got {hidden}")
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def residual(self, x: Tensor) -> Tensor:
        return self.up(F.gelu(self.down(x), approximate="tanh"))

    def forward(self, x: Tensor, blend: float = 1.0) -> Tensor:
        return F.normalize(x + blend * self.residual(x), dim=-1)

    def to_numpy(self) -> ResidualMLP:
        return ResidualMLP(
            self.down.weight.detach().cpu().numpy(),
            self.down.bias.detach().cpu().numpy(),
            self.up.weight.detach().cpu().numpy(),
            self.up.bias.detach().cpu().numpy(),
        )

    @classmethod
    def from_numpy(cls, mlp: ResidualMLP) -> ResidualAdapter:
        module = cls(mlp.dim, mlp.hidden)
        with torch.no_grad():
            module.down.weight.copy_(torch.from_numpy(mlp.down_weight))
            module.down.bias.copy_(torch.from_numpy(mlp.down_bias))
            module.up.weight.copy_(torch.from_numpy(mlp.up_weight))
            module.up.bias.copy_(torch.from_numpy(mlp.up_bias))
        return module


class TwinAdapter(nn.Module):
    """An image adapter and a text adapter, trained together."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.image = ResidualAdapter(dim, hidden)
        self.text = ResidualAdapter(dim, hidden)

    def forward(self, image: Tensor, text: Tensor, blend: float = 1.0) -> tuple[Tensor, Tensor]:
        return self.image(image, blend), self.text(text, blend)

    def export(self, blend: float = 1.0, **metadata: object) -> Adapter:
        """The numpy :class:`~core.adapters.Adapter` for these weights and ``blend``."""
        adapter = Adapter(self.image.to_numpy(), self.text.to_numpy(), blend)
        return adapter.with_metadata(**metadata) if metadata else adapter

    @classmethod
    def from_adapter(cls, adapter: Adapter) -> TwinAdapter:
        if adapter.image is None or adapter.text is None:
            raise ValueError("only an adapter with both sides can be trained further")
        twin = cls(adapter.dim, adapter.image.hidden)
        twin.image = ResidualAdapter.from_numpy(adapter.image)
        twin.text = ResidualAdapter.from_numpy(adapter.text)
        return twin
