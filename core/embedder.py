"""Turn images and texts into L2-normalised float32 vectors with one open_clip model.

The model runs in eval mode under ``torch.inference_mode()``; on CUDA under autocast (bf16
where supported, else fp16), elsewhere in float32. Text goes through a shortcut when the
text tower is causal (see :class:`TruncatedTextEncoder`). On a CPU with native bfloat16
(AVX512-BF16 or AMX), the few phrases of a search query go through a bfloat16 copy of a large
text tower: at batch 1 the time is spent reading the weights, and half the bytes halve it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.devices import autocast, device_of, pick_device
from core.models import DownloadProgress, ModelIdentity, ModelSpec, load_model

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_BATCH = 32
TEXT_BATCH = 256
# A query's few phrases are encoded on one CPU thread: the work is too small to split, and on a
# busy machine a second thread waiting for a time slice multiplied the latency by 5-10
# (ViT-B-32 text tower, one phrase: 40 ms of CPU on one thread, 580 ms with two, under load).
SMALL_TEXT_BATCH = 8
_FAST_POOL_TYPES = ("argmax", "eos", "first")
# Query phrases go through a bfloat16 copy of the text transformer when it has at least this many
# parameters (and the CPU computes in bfloat16 natively). ViT-B-32's 38M: 52 -> 19 ms for one
# phrase on one thread, cosine to the float32 vector 0.99993; the starter's 0.6M fit in cache and
# are faster in float32 (2.0 against 2.7 ms).
QUERY_BF16_MIN_PARAMS = 4_000_000
QUERY_PRECISIONS = ("auto", "float32", "bfloat16")


class Embedder:
    """One model, ready to embed images and texts.

    Attributes:
        identity: what makes these vectors (stored beside them).
        spec: what was asked for (``None`` for an in-memory model).
        device: where the model runs.
        query_precision: ``"auto"`` (bfloat16 for the phrases of a query where the CPU and the
            tower's size make it pay, see :data:`QUERY_BF16_MIN_PARAMS`), ``"float32"`` or
            ``"bfloat16"``. Batches of more than :data:`SMALL_TEXT_BATCH` texts and images are
            always float32 on a CPU. Keep ``"float32"`` for a model whose weights change (one
            being fine-tuned): the bfloat16 copy is made once.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        identity: ModelIdentity,
        *,
        spec: ModelSpec | None = None,
        device: torch.device | str | None = None,
        fast_text: bool = True,
        query_precision: str = "float32",
    ) -> None:
        if query_precision not in QUERY_PRECISIONS:
            raise ValueError(f"query_precision must be one of {QUERY_PRECISIONS}, not {query_precision!r}")
        self.device = torch.device(device) if device is not None else device_of(model)
        self._model = model.to(self.device).eval()
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._tokenizer_lock = threading.Lock()
        self.identity = identity
        self.spec = spec
        self._text_encoder = TruncatedTextEncoder.for_model(self._model) if fast_text else None
        if fast_text and self._text_encoder is None:
            logger.info("text shortcut does not apply to %s; using model.encode_text", identity.arch)
        self._query_dtype = _query_dtype(query_precision, self.device, self._text_encoder)
        self._query_encoder: TruncatedTextEncoder | None = None
        self._query_encoder_lock = threading.Lock()

    @classmethod
    def from_spec(
        cls,
        spec: str | ModelSpec,
        device: torch.device | str | None = None,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        cache_dir: str | None = None,
        query_precision: str = "auto",
    ) -> Embedder:
        """Load the model ``spec`` names (see :func:`core.models.load_model` for the errors)."""
        device = pick_device(device)
        loaded = load_model(spec, device=device, on_progress=on_progress, cache_dir=cache_dir)
        return cls(
            loaded.model,
            loaded.preprocess,
            loaded.tokenizer,
            loaded.identity,
            spec=loaded.spec,
            device=device,
            query_precision=query_precision,
        )

    @classmethod
    def from_model(
        cls,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        identity: ModelIdentity,
        device: torch.device | str | None = None,
    ) -> Embedder:
        """Wrap a model already in memory (e.g. one being fine-tuned)."""
        return cls(model, preprocess, tokenizer, identity, device=device)

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def uses_text_shortcut(self) -> bool:
        return self._text_encoder is not None

    @property
    def query_dtype(self) -> torch.dtype:
        """The precision of the text tower for a query's few phrases."""
        return self._query_dtype or torch.float32

    @cached_property
    def dim(self) -> int:
        """Length of every vector."""
        return int(self.encode_texts([""]).shape[1])

    @cached_property
    def image_size(self) -> int:
        """Side of the square image the model sees (decoders can shrink photos to about this)."""
        size = getattr(getattr(self._model, "visual", None), "image_size", None)
        if size is None:
            size = getattr(self._model.visual, "preprocess_cfg", {}).get("size", 224)
        return int(max(size)) if isinstance(size, (tuple, list)) else int(size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The model's eval transform: an RGB image to a (C, H, W) float tensor. Thread-safe."""
        return self._preprocess(image)

    def encode_image_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Embed preprocessed images (N, C, H, W): float32 (N, D), each row of length 1."""
        if batch.ndim != 4:
            raise ValueError(f"expected a batch of shape (N, C, H, W), got {tuple(batch.shape)}")
        with torch.inference_mode(), self._autocast():
            features = self._model.encode_image(batch.to(self.device, non_blocking=True))
        return _normalised_numpy(features)

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = DEFAULT_IMAGE_BATCH
    ) -> np.ndarray:
        """Preprocess and embed PIL images, ``batch_size`` at a time: float32 (N, D)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not images:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [
            self.encode_image_batch(
                torch.stack([self.preprocess(im) for im in images[start : start + batch_size]])
            )
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, context length) as the model's tokenizer makes them."""
        with self._tokenizer_lock:  # Hugging Face tokenizers are not safe to share across threads
            return self._tokenizer(list(texts))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts: float32 (N, D), each row of length 1."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a sequence of texts; wrap a single text in a list")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = []
        small = len(texts) <= SMALL_TEXT_BATCH and self.device.type == "cpu"
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenize(texts[start : start + TEXT_BATCH]).to(self.device)
            with torch.inference_mode(), self._autocast(), _cpu_threads(1 if small else None):
                if small and self._query_dtype is not None:
                    features = self._small_batch_encoder()(tokens)
                elif self._text_encoder is not None:
                    features = self._text_encoder(tokens)
                else:
                    features = self._model.encode_text(tokens)
            parts.append(_normalised_numpy(features))
        return np.concatenate(parts, axis=0)

    def _small_batch_encoder(self) -> TruncatedTextEncoder:
        with self._query_encoder_lock:
            if self._query_encoder is None:
                assert self._text_encoder is not None and self._query_dtype is not None
                self._query_encoder = self._text_encoder.cast(self._query_dtype)
            return self._query_encoder

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device)


@dataclass(frozen=True)
class _TextTower:
    token_embedding: torch.nn.Module
    positional_embedding: torch.Tensor
    transformer: torch.nn.Module
    ln_final: torch.nn.Module
    text_projection: torch.nn.Module | torch.Tensor | None
    attn_mask: torch.Tensor
    pool_type: str
    eos_id: int | None


class TruncatedTextEncoder:
    """``model.encode_text`` that stops at the batch's last end-of-text token.

    With a causal attention mask, token ``i`` only sees tokens ``0..i``, and every other step
    (layer norm, MLP) works token by token, so the pooled end-of-text feature does not depend on
    the padding after it. Running the transformer over ``max(eot position) + 1`` tokens instead
    of the full context (77 for most models) gives the same vectors, several times faster for
    short queries. :meth:`for_model` returns ``None`` where this does not hold (bidirectional or
    Hugging Face text towers, a class token, 'last' pooling, a subclass with its own
    ``encode_text``); callers then use ``model.encode_text``.
    """

    def __init__(self, tower: _TextTower) -> None:
        self._tower = tower

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> TruncatedTextEncoder | None:
        tower = _causal_text_tower(model)
        return cls(tower) if tower is not None else None

    @property
    def transformer_parameters(self) -> int:
        return sum(p.numel() for p in self._tower.transformer.parameters())

    def cast(self, dtype: torch.dtype) -> TruncatedTextEncoder:
        """A copy whose transformer, final norm and projection hold ``dtype`` weights.

        The token embedding is shared, not copied: it is only indexed, and its rows are cast.
        """
        t = self._tower
        projection = t.text_projection
        if isinstance(projection, torch.nn.Module):
            projection = copy.deepcopy(projection).to(dtype)
        elif projection is not None:
            projection = projection.detach().to(dtype)
        return TruncatedTextEncoder(
            _TextTower(
                token_embedding=t.token_embedding,
                positional_embedding=t.positional_embedding.detach().to(dtype),
                transformer=copy.deepcopy(t.transformer).to(dtype),
                ln_final=copy.deepcopy(t.ln_final).to(dtype),
                text_projection=projection,
                attn_mask=t.attn_mask.to(dtype),
                pool_type=t.pool_type,
                eos_id=t.eos_id,
            )
        )

    def needed_length(self, tokens: torch.Tensor) -> int:
        """How many leading positions decide the pooled output of every row."""
        pool = self._tower.pool_type
        if pool == "first":
            return 1
        if pool == "argmax":
            last = tokens.argmax(dim=-1)
        else:
            last = (tokens == self._tower.eos_id).int().argmax(dim=-1)
        return int(last.max().item()) + 1

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        from open_clip.transformer import text_global_pool

        t = self._tower
        length = self.needed_length(tokens)
        tokens = tokens[:, :length]
        cast_dtype = t.transformer.get_cast_dtype()
        x = t.token_embedding(tokens).to(cast_dtype)
        x = x + t.positional_embedding[:length].to(cast_dtype)
        x = t.transformer(x, attn_mask=t.attn_mask[:length, :length])
        x = t.ln_final(x)
        pooled = text_global_pool(x, tokens, t.pool_type, eos_token_id=t.eos_id)
        if t.text_projection is None:
            return pooled
        if isinstance(t.text_projection, torch.nn.Linear):
            return t.text_projection(pooled)
        return pooled @ t.text_projection


def _causal_text_tower(model: torch.nn.Module) -> _TextTower | None:
    """The text tower's parts, if it is open_clip's own causal TextTransformer, else ``None``."""
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transformer import TextTransformer, Transformer

    if type(model).encode_text is CLIP.encode_text:
        owner, pool_type, eos_id = model, model.text_pool_type, getattr(model, "text_eos_id", None)
    elif (
        type(model).encode_text is CustomTextCLIP.encode_text
        and type(model.text).forward is TextTransformer.forward
    ):
        text = model.text
        if text.cls_emb is not None or text.use_pad_mask or text.output_tokens:
            return None
        owner, pool_type, eos_id = text, text.pool_type, text.eos_id
    else:
        return None
    mask = getattr(owner, "attn_mask", None)
    if pool_type not in _FAST_POOL_TYPES or not isinstance(owner.transformer, Transformer):
        return None
    if mask is None or mask.ndim != 2 or not _is_causal(mask):
        return None
    if pool_type == "eos" and eos_id is None:
        return None
    return _TextTower(
        token_embedding=owner.token_embedding,
        positional_embedding=owner.positional_embedding,
        transformer=owner.transformer,
        ln_final=owner.ln_final,
        text_projection=owner.text_projection,
        attn_mask=mask,
        pool_type=pool_type,
        eos_id=eos_id,
    )


def _is_causal(mask: torch.Tensor) -> bool:
    n = mask.shape[0]
    upper = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    return bool(torch.isneginf(mask[upper]).all() and (mask[~upper] == 0).all())


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # pragma: no cover - a build without the CPU probe
            continue
    return False


def _query_dtype(
    precision: str, device: torch.device, encoder: TruncatedTextEncoder | None
) -> torch.dtype | None:
    """bfloat16 where a query's phrases should use the cast copy of the tower, else ``None``."""
    if encoder is None or device.type != "cpu" or precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if encoder.transformer_parameters >= QUERY_BF16_MIN_PARAMS and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _normalised_numpy(features: torch.Tensor) -> np.ndarray:
    features = F.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


@contextlib.contextmanager
def _cpu_threads(count: int | None):
    """Run the block with ``count`` intra-op threads in the calling thread (None: unchanged)."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
