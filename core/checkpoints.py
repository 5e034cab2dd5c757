"""Model weight files: written atomically, read without running code, checked against a model.

Two formats are read: ``.safetensors`` (preferred; the architecture name travels in its
metadata under ``"arch"``) and PyTorch state dicts, loaded with ``weights_only=True`` so a
file can never execute code. Every way a file can be unusable ends in :class:`CheckpointError`
with a message that names the file, what is wrong and what to do.

torch is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import CheckpointError, ModelUnavailableError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ARCH_KEY = "arch"
PREPROCESS_KEY = "preprocess_cfg"
_DDP_PREFIX = "module."
_NESTED_STATE_KEYS = ("state_dict", "model")
_EXAMPLES = 3

_digest_lock = threading.Lock()
_digest_cache: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """``"sha256:"`` and the first 16 hex digits of the file's SHA-256 (cached by path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        cached = _digest_cache.get(key)
    if cached is not None:
        return cached
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    digest = f"sha256:{sha.hexdigest()[:16]}"
    with _digest_lock:
        _digest_cache[key] = digest
    return digest


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    arch: str,
    extra_metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write the model's weights to a ``.safetensors`` file, atomically.

    The metadata records ``arch`` (so ``file:PATH`` needs no architecture name), the model's
    image preprocessing (mean, std, resize mode) and ``extra_metadata`` (values that are not
    strings are stored as JSON). The file appears complete or not at all: it is written to a
    temporary file in the same folder, flushed to disk, then renamed over ``path``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path.name}")
    state = _strip_ddp_prefix(dict(model.state_dict()))
    tensors = {name: tensor.detach().to("cpu").clone().contiguous() for name, tensor in state.items()}
    metadata = {"format": "pt", ARCH_KEY: arch}
    preprocess = _model_preprocess_cfg(model)
    if preprocess:
        metadata[PREPROCESS_KEY] = json.dumps(preprocess)
    for key, value in (extra_metadata or {}).items():
        metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("saved %s weights to %s", arch, path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file; ``{}`` for a PyTorch file (which has none).

    Raises:
        ModelUnavailableError: the file does not exist.
        CheckpointError: the file is a damaged ``.safetensors`` file.
    """
    path = _existing_file(path)
    if not _is_safetensors(path):
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error type, plus OSError
        raise _unreadable(path, exc) from exc


def preprocess_from_metadata(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The image preprocessing recorded by :func:`save_checkpoint`, if any."""
    text = metadata.get(PREPROCESS_KEY)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        logger.warning("ignoring unreadable %s metadata", PREPROCESS_KEY)
        return None
    return value if isinstance(value, dict) else None


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict (name -> tensor) on the CPU, from ``.safetensors`` or a PyTorch file.

    A training checkpoint holding the weights under ``"state_dict"`` or ``"model"`` is
    unwrapped, and the ``module.`` prefix left by DistributedDataParallel is removed.

    Raises:
        ModelUnavailableError: the file does not exist.
        CheckpointError: the file is damaged, not a checkpoint, holds objects other than
            tensors, or holds no weights.
    """
    path = _existing_file(path)
    loaded = _read_safetensors(path) if _is_safetensors(path) else _read_torch_file(path)
    return _strip_ddp_prefix(_as_state_dict(loaded, path))


def fit_state_dict(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    arch: str,
    *,
    subject: str | None = None,
    advice: str | None = None,
) -> dict[str, torch.Tensor]:
    """Adapt harmless format differences, then check every name and shape against ``model``.

    Args:
        subject: what the file does not fit, for the message (default: ``architecture 'ARCH'``).
        advice: what to do about it, for the message (default: name the right architecture
            with ``file:PATH#ARCH``).

    Raises:
        CheckpointError: names missing or unexpected, or shapes that differ; the message names
            a few of each.
    """
    state = _adapt_open_clip_format(model, _strip_ddp_prefix(dict(state_dict)))
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    reshaped = [
        f"{name} {tuple(state[name].shape)} in the file, {tuple(tensor.shape)} in the model"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} weights missing ({_examples(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected weights ({_examples(unexpected)})")
        if reshaped:
            problems.append(f"{len(reshaped)} weights of another shape ({_examples(reshaped)})")
        advice = advice or (
            f"It was probably saved from another architecture: name the right one with "
            f"file:{path}#ARCH, or use the checkpoint the model was trained with."
        )
        raise CheckpointError(
            f"{path} does not fit {subject or f'architecture {arch!r}'}: {'; '.join(problems)}. {advice}"
        )
    return state


def load_weights(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    arch: str,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    *,
    subject: str | None = None,
    advice: str | None = None,
) -> None:
    """Read ``path`` (or take its ``state_dict`` already read), check it against ``model``
    (:func:`fit_state_dict`, which takes ``subject`` and ``advice``) and copy the weights in
    (strict; each cast to the dtype of the model's own)."""
    state = read_state_dict(path) if state_dict is None else state_dict
    state = fit_state_dict(model, state, path, arch, subject=subject, advice=advice)
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s weights from %s", arch, path)


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(
            f"checkpoint file {path} does not exist; check the path, or choose another model "
            "(the bundled 'starter' model, or openclip:ARCH/TAG)"
        )
    return path


def _is_safetensors(path: Path) -> bool:
    """By content: 8 bytes of header length, then a JSON object; else by the file name."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return True
    return path.suffix == ".safetensors"


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type, plus OSError
        raise _unreadable(path, exc) from exc


def _read_torch_file(path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        # torch's safe unpickler refused something (its message suggests weights_only=False, which
        # would run whatever the file holds: never repeat that advice)
        if _refused_by_safe_unpickler(exc):
            raise CheckpointError(
                f"{path} holds Python objects besides tensors (a whole model object, for example), "
                "which are not loaded because they could run code. Save the model's state dict "
                "instead (as .safetensors, or torch.save(model.state_dict(), ...)) and use that file."
            ) from exc
        raise _unreadable(path, exc) from exc
    for warning in caught:
        logger.debug("while reading %s: %s", path, warning.message)
    return loaded


def _refused_by_safe_unpickler(exc: BaseException) -> bool:
    return "Unsupported global" in str(exc)


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:  # keep the unpickler's finding, not torch's advice around it
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    reason = text.splitlines()[0].strip() if text else type(exc).__name__
    if "weights_only" in reason or not reason:
        reason = type(exc).__name__
    return CheckpointError(
        f"{path} is not a readable checkpoint ({reason}). It may be damaged or incomplete "
        "(an interrupted download or copy): copy or export it again. Readable formats are "
        ".safetensors and PyTorch state dicts."
    )


def _as_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if isinstance(loaded, dict):
        for key in _NESTED_STATE_KEYS:
            nested = loaded.get(key)
            if (
                isinstance(nested, dict)
                and nested
                and all(isinstance(v, torch.Tensor) for v in nested.values())
            ):
                loaded = nested
                break
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(
            f"{path} holds no model weights (found {_describe(loaded)}, expected a mapping of names "
            "to tensors). Choose the file that holds the model's state dict."
        )
    not_tensors = [str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{path} is not a state dict: {len(not_tensors)} entries are not tensors "
            f"({_examples(not_tensors)}). Choose the file that holds the model's state dict."
        )
    return loaded


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an empty mapping"
    return f"a {type(value).__name__}"


def _strip_ddp_prefix(state: dict[str, Any]) -> dict[str, Any]:
    if state and all(name.startswith(_DDP_PREFIX) for name in state):
        return {name[len(_DDP_PREFIX) :]: value for name, value in state.items()}
    return state


def _adapt_open_clip_format(
    model: torch.nn.Module, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The few representation changes open_clip itself accepts when loading its checkpoints."""
    from open_clip.convert import convert_state_dict

    state = convert_state_dict(model, state)
    for name in ("logit_scale", "logit_bias"):
        param = getattr(model, name, None)
        value = state.get(name)
        if (
            param is not None
            and value is not None
            and value.shape != param.shape
            and value.numel() == param.numel()
        ):
            state[name] = value.reshape(param.shape)
    state.pop("text.transformer.embeddings.position_ids", None)
    return state


def _model_preprocess_cfg(model: torch.nn.Module) -> dict[str, Any] | None:
    visual = getattr(model, "visual", None)
    cfg = getattr(visual, "preprocess_cfg", None)
    if not isinstance(cfg, dict):
        return None
    try:
        return json.loads(json.dumps(cfg))
    except (TypeError, ValueError):
        return None


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (", ..." if len(items) > _EXAMPLES else "")
