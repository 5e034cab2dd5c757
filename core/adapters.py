"""Residual adapters: a small learned correction on top of a frozen model's vectors.

An adapter holds two residual MLPs, one for image vectors and one for text vectors::

    f(x) = normalise(x + blend * (up @ gelu(down @ x + b_down) + b_up))

trained by :mod:`trainer.finetune` with ``up`` and ``b_up`` starting at zero, so a new adapter is
the identity. ``blend`` in [0, 1] moves the result back toward the base model (0 is the base
model itself); it is chosen on validation photos to limit forgetting.

Applying an adapter needs only numpy: the stored photo vectors of the base model are transformed
(no photo is decoded again), and a query's text vector goes through the text side. The adapter is
saved as ``.safetensors`` with its metadata; :attr:`Adapter.digest` names its exact weights and
blend, and goes into ``ModelIdentity.adapter`` so adapted vectors never mix with others.

GELU is the tanh approximation (``torch.nn.functional.gelu(x, approximate="tanh")``), the same
in training and here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import CheckpointError

if TYPE_CHECKING:
    from core.embedder import Embedder
    from core.models import ModelIdentity

logger = logging.getLogger(__name__)

FORMAT = "ladderlens-adapter"
FORMAT_VERSION = 1
APPLY_BATCH = 16384
_SIDES = ("image", "text")
_PARTS = ("down.weight", "down.bias", "up.weight", "up.bias")
_GELU_C = np.float32(np.sqrt(2.0 / np.pi))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation, in place on float32 ``x`` (returned)."""
    inner = x * x
    inner *= np.float32(0.044715)
    inner += 1.0
    inner *= x
    inner *= _GELU_C
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= 0.5
    x *= inner
    return x


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (in place); zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    np.maximum(norms, np.float32(1e-12), out=norms)
    x /= norms
    return x


@dataclass(frozen=True)
class ResidualMLP:
    """One side of an adapter: ``x + up(gelu(down(x)))`` with weights as numpy float32 arrays.

    Attributes:
        down_weight: (hidden, dim). down_bias: (hidden,). up_weight: (dim, hidden). up_bias: (dim,).
    """

    down_weight: np.ndarray
    down_bias: np.ndarray
    up_weight: np.ndarray
    up_bias: np.ndarray

    def __post_init__(self) -> None:
        for name in ("down_weight", "down_bias", "up_weight", "up_bias"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        hidden, dim = self.down_weight.shape if self.down_weight.ndim == 2 else (-1, -1)
        if (
            hidden < 1
            or self.down_bias.shape != (hidden,)
            or self.up_weight.shape != (dim, hidden)
            or self.up_bias.shape != (dim,)
        ):
            raise CheckpointError(
                "adapter weights have inconsistent shapes: "
                f"down {self.down_weight.shape}, {self.down_bias.shape}; "
                f"up {self.up_weight.shape}, {self.up_bias.shape}"
            )
        if not all(np.isfinite(getattr(self, n)).all() for n in ("down_weight", "up_weight")):
            raise CheckpointError("adapter weights contain NaN or infinity")

    @property
    def dim(self) -> int:
        return int(self.down_weight.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.down_weight.shape[0])

    @classmethod
    def identity(cls, dim: int, hidden: int, seed: int = 0) -> ResidualMLP:
        """A random ``down`` with a zero ``up``: the identity map."""
        rng = np.random.default_rng(seed)
        return cls(
            rng.normal(0, 1 / np.sqrt(dim), (hidden, dim)),
            np.zeros(hidden),
            np.zeros((dim, hidden)),
            np.zeros(dim),
        )

    def residual(self, x: np.ndarray) -> np.ndarray:
        """The correction ``up(gelu(down(x)))`` for rows ``x`` (N, dim)."""
        h = x @ self.down_weight.T
        h += self.down_bias
        gelu_tanh(h)
        out = h @ self.up_weight.T
        out += self.up_bias
        return out

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.down.weight": self.down_weight,
            f"{prefix}.down.bias": self.down_bias,
            f"{prefix}.up.weight": self.up_weight,
            f"{prefix}.up.bias": self.up_bias,
        }


@dataclass(frozen=True)
class Adapter:
    """Image and text residual MLPs with a blend toward the base model.

    Attributes:
        image: the image side (None: image vectors pass unchanged).
        text: the text side (None: text vectors pass unchanged).
        blend: 1 is the trained adapter, 0 the base model.
        metadata: free text fields saved with it (base model identity, profile, metrics...).
    """

    image: ResidualMLP | None
    text: ResidualMLP | None
    blend: float = 1.0
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image is None and self.text is None:
            raise CheckpointError("an adapter needs an image side, a text side or both")
        dims = {side.dim for side in (self.image, self.text) if side is not None}
        if len(dims) != 1:
            raise CheckpointError(f"the image and text sides of an adapter differ in width: {sorted(dims)}")
        if not 0.0 <= float(self.blend) <= 1.0:
            raise CheckpointError(f"an adapter's blend must be in [0, 1], not {self.blend}")
        object.__setattr__(self, "blend", float(self.blend))

    @property
    def dim(self) -> int:
        side = self.image if self.image is not None else self.text
        assert side is not None
        return side.dim

    def with_blend(self, blend: float) -> Adapter:
        return replace(self, blend=float(blend))

    def with_metadata(self, **fields: Any) -> Adapter:
        merged = dict(self.metadata)
        merged.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
        return replace(self, metadata=merged)

    # -- applying

    def _apply(self, side: ResidualMLP | None, vectors: np.ndarray, batch_size: int) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of width {self.dim}, got shape {np.shape(vectors)}")
        out = np.empty_like(x)
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            if side is None or self.blend == 0.0:
                block = chunk.copy()
            else:
                block = side.residual(chunk)
                if self.blend != 1.0:
                    block *= np.float32(self.blend)
                block += chunk
            out[start : start + batch_size] = normalise_rows(block)
        return out[0] if single else out

    def apply_image(self, vectors: np.ndarray, batch_size: int = APPLY_BATCH) -> np.ndarray:
        """Adapted, L2-normalised image vectors (N, D) (or one (D,) vector)."""
        return self._apply(self.image, vectors, batch_size)

    def apply_text(self, vectors: np.ndarray, batch_size: int = APPLY_BATCH) -> np.ndarray:
        """Adapted, L2-normalised text vectors (N, D) (or one (D,) vector)."""
        return self._apply(self.text, vectors, batch_size)

    # -- identity and files

    @property
    def digest(self) -> str:
        """``sha256:`` + 16 hex digits of the exact weights and blend: what made adapted vectors."""
        sha = hashlib.sha256()
        for name, array in sorted(self._tensors().items()):
            sha.update(name.encode())
            sha.update(str(array.shape).encode())
            sha.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
        sha.update(f"blend={self.blend!r}".encode())
        return f"sha256:{sha.hexdigest()[:16]}"

    def _tensors(self) -> dict[str, np.ndarray]:
        tensors: dict[str, np.ndarray] = {}
        for name in _SIDES:
            side = getattr(self, name)
            if side is not None:
                tensors.update(side.tensors(name))
        return tensors

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a ``.safetensors`` file atomically (temporary file, fsync, rename)."""
        from safetensors.numpy import save_file

        path = Path(path)
        metadata = dict(self.metadata)
        metadata.update({"format": FORMAT, "format_version": str(FORMAT_VERSION), "blend": repr(self.blend)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            save_file(self._tensors(), str(tmp), metadata=metadata)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Adapter:
        """Read an adapter written by :meth:`save`.

        Raises:
            CheckpointError: missing, damaged, not an adapter, or of a newer format.
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as fh:
                metadata = dict(fh.metadata() or {})
                tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        except FileNotFoundError as e:
            raise CheckpointError(f"The adapter file {path} does not exist.") from e
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"The adapter file {path} is damaged or not an adapter ({e}).") from e
        if metadata.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a LadderLens adapter (format {metadata.get('format')!r}).")
        try:
            version = int(metadata.get("format_version", "0"))
            blend = float(metadata.get("blend", "1.0"))
        except ValueError as e:
            raise CheckpointError(f"The adapter file {path} has malformed metadata ({e}).") from e
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"The adapter {path} was written by a newer LadderLens (format {version}); update LadderLens."
            )
        sides: dict[str, ResidualMLP | None] = {}
        for side in _SIDES:
            names = [f"{side}.{part}" for part in _PARTS]
            present = [n in tensors for n in names]
            if any(present) and not all(present):
                raise CheckpointError(f"The adapter file {path} lacks part of its {side} side.")
            sides[side] = ResidualMLP(*(tensors[n] for n in names)) if all(present) else None
        for key in ("format", "format_version", "blend"):
            metadata.pop(key, None)
        return cls(sides["image"], sides["text"], blend, metadata)

    @staticmethod
    def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
        """The metadata of an adapter file, without reading its weights.

        Raises:
            CheckpointError: missing or damaged.
        """
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as fh:
                return dict(fh.metadata() or {})
        except FileNotFoundError as e:
            raise CheckpointError(f"The adapter file {path} does not exist.") from e
        except Exception as e:
            raise CheckpointError(f"The adapter file {path} is damaged or not an adapter ({e}).") from e


class AdaptedEmbedder:
    """An :class:`~core.embedder.Embedder` whose vectors go through an adapter.

    It exposes what the library's search needs (``encode_texts``, ``encode_images``, ``dim``,
    ``image_size``, ``identity``, ``preprocess``); the identity carries the adapter's id.
    """

    def __init__(self, base: Embedder, adapter: Adapter, identity: ModelIdentity):
        if adapter.dim != base.dim:
            raise CheckpointError(
                f"The adapter works on {adapter.dim}-d vectors but the model makes {base.dim}-d ones."
            )
        self.base = base
        self.adapter = adapter
        self.identity = identity
        self.spec = base.spec
        self.device = base.device
        self.match_gate = getattr(base, "match_gate", None)

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def image_size(self) -> int:
        return self.base.image_size

    @property
    def model(self) -> Any:
        return self.base.model

    def preprocess(self, image: Any) -> Any:
        return self.base.preprocess(image)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.adapter.apply_text(self.base.encode_texts(texts))

    def encode_images(self, images: Sequence[Any], **options: Any) -> np.ndarray:
        return self.adapter.apply_image(self.base.encode_images(images, **options))

    def encode_image_batch(self, batch: Any) -> np.ndarray:
        return self.adapter.apply_image(self.base.encode_image_batch(batch))
