"""Which model to run, what it is called, and how its weights are found and loaded.

A model is named by a :class:`ModelSpec` (text forms: ``starter``, ``openclip:ARCH/TAG``,
``file:PATH``, ``file:PATH#ARCH``; ``random:ARCH`` for benchmarks only). Loading goes in small
stages: resolve the weights file (bundled, local, or open_clip's pretrained download into the
standard Hugging Face cache), create the architecture without weights, then read, check and
copy the weights in (:mod:`core.checkpoints`). Every set of vectors is labelled with the
:class:`ModelIdentity` of the model that made it, so vectors of two models never mix.

torch and open_clip are imported inside the functions that need them: importing this module
(to parse a spec or read an identity) stays cheap.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.checkpoints import (
    ARCH_KEY,
    PREPROCESS_KEY,
    file_digest,
    fit_state_dict,
    load_weights,
    preprocess_from_metadata,
    read_metadata,
    read_state_dict,
    save_checkpoint,
)
from core.errors import CheckpointError, ModelError, ModelUnavailableError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "RESOURCES_MODELS",
    "STARTER_ARCH",
    "DownloadProgress",
    "LoadedModel",
    "ModelIdentity",
    "ModelSpec",
    "create_architecture",
    "default_device",
    "load_model",
    "model_from_weights",
    "register_bundled_configs",
    "register_configs",
    "save_checkpoint",
    "starter_weights_path",
]


def _bundled_models_dir() -> Path:
    """The bundled model files: the installed ``ladderlens`` package, else this checkout's resources/."""
    try:
        from ladderlens import models_dir
    except ImportError:  # running from a checkout that was never installed
        return Path(__file__).resolve().parent.parent / "resources" / "models"
    return models_dir()


RESOURCES_MODELS: Path = _bundled_models_dir()
STARTER_ARCH = "ladderlens-starter"
RANDOM_SEED = 0

KINDS = ("starter", "openclip", "file", "random")
_OPENCLIP_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")
_OPEN_CLIP_RANDOM_NOTICE = "No pretrained weights loaded for model"
_MODEL_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")

_register_lock = threading.Lock()
_registered = False

ProgressCallback = Callable[["DownloadProgress"], None]


# --------------------------------------------------------------------------- specs and identities


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for; :meth:`parse` reads the text form and ``str()`` writes it back.

    Attributes:
        kind: ``"starter"``, ``"openclip"``, ``"file"`` or ``"random"`` (benchmarks only).
        arch: open_clip architecture name; ``None`` for a file whose metadata names it.
        tag: open_clip pretrained tag (``openclip`` only).
        path: absolute checkpoint path (``file`` only).
    """

    kind: str
    arch: str | None = None
    tag: str | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if self.kind not in KINDS:
            raise ModelError(f"unknown model kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.kind == "openclip" and not (self.arch and self.tag):
            raise ModelError(
                "an openclip model needs an architecture and a pretrained tag: openclip:ARCH/TAG"
            )
        if self.kind == "file" and self.path is None:
            raise ModelError("a file model needs a path: file:PATH or file:PATH#ARCH")
        if self.kind == "random" and not self.arch:
            raise ModelError("a random-weight model needs an architecture: random:ARCH")

    @classmethod
    def parse(cls, text: str | ModelSpec) -> ModelSpec:
        """Read ``starter``, ``openclip:ARCH/TAG``, ``file:PATH``, ``file:PATH#ARCH`` or ``random:ARCH``.

        Raises:
            ModelError: the text is none of these forms.
        """
        if isinstance(text, ModelSpec):
            return text
        text = text.strip()
        kind, sep, rest = text.partition(":")
        kind = kind.lower()
        if kind == "starter" and not rest:
            return cls("starter", STARTER_ARCH)
        if sep and kind == "openclip":
            arch, slash, tag = rest.strip().partition("/")
            if not (arch and slash and tag):
                raise ModelError(
                    f"{text!r} names no pretrained tag; write openclip:ARCH/TAG, for example "
                    "openclip:ViT-B-32-256/datacomp_s34b_b86k"
                )
            return cls("openclip", arch, clean_tag(tag))
        if sep and kind == "file" and rest:
            path, arch = _split_file_arch(rest.strip())
            return cls("file", arch, path=Path(os.path.abspath(os.path.expanduser(path))))
        if sep and kind == "random" and rest:
            return cls("random", rest.strip())
        raise ModelError(
            f"{text!r} is not a model; write 'starter' (the bundled model), openclip:ARCH/TAG "
            "(for example openclip:ViT-B-32-256/datacomp_s34b_b86k) or file:PATH to a checkpoint"
        )

    def __str__(self) -> str:
        if self.kind == "starter":
            return "starter"
        if self.kind == "openclip":
            return f"openclip:{self.arch}/{self.tag}"
        if self.kind == "file":
            return f"file:{self.path}" + (f"#{self.arch}" if self.arch else "")
        return f"random:{self.arch}"


def clean_tag(tag: str) -> str:
    """open_clip's normal form of a pretrained tag (lower case, ``_`` for ``-``)."""
    return tag.strip().lower().replace("-", "_")


def _split_file_arch(rest: str) -> tuple[str, str | None]:
    """``PATH#ARCH`` -> (PATH, ARCH); a ``#`` that belongs to an existing file name is kept."""
    path, hash_sign, arch = rest.rpartition("#")
    if not hash_sign or not path or not arch or "/" in arch or os.sep in arch:
        return rest, None
    if os.path.isfile(os.path.expanduser(rest)) and not os.path.isfile(os.path.expanduser(path)):
        return rest, None
    return path, arch


@dataclass(frozen=True)
class ModelIdentity:
    """What made a set of vectors: architecture, weights and optional adapter.

    Attributes:
        arch: open_clip architecture name.
        weights: ``"openclip:TAG"``, ``"sha256:<16 hex>"`` of a weights file, or ``"random:seed0"``.
        adapter: identity of an adapter applied on top (e.g. its file's ``"sha256:..."``), if any.
    """

    arch: str
    weights: str
    adapter: str | None = None

    @property
    def key(self) -> str:
        """A stable, filesystem-safe name: readable slug plus a hash of the exact identity."""
        exact = json.dumps(self.to_dict(), sort_keys=True)
        digest = hashlib.sha256(exact.encode("utf-8")).hexdigest()[:10]
        parts = [self.arch, self.weights] + ([self.adapter] if self.adapter else [])
        slug = "__".join(re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-.") for part in parts)
        return f"{slug[:96]}__{digest}"

    @property
    def is_random(self) -> bool:
        return self.weights.startswith("random:")

    def with_adapter(self, adapter: str | None) -> ModelIdentity:
        return ModelIdentity(self.arch, self.weights, adapter)

    def to_dict(self) -> dict[str, str | None]:
        return {"arch": self.arch, "weights": self.weights, "adapter": self.adapter}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelIdentity:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelError: ``arch`` or ``weights`` missing or not text.
        """
        arch, weights, adapter = data.get("arch"), data.get("weights"), data.get("adapter")
        if not isinstance(arch, str) or not arch or not isinstance(weights, str) or not weights:
            raise ModelError(f"not a model identity: {dict(data)!r}")
        if adapter is not None and not isinstance(adapter, str):
            raise ModelError(f"not a model identity (adapter must be text): {dict(data)!r}")
        return cls(arch, weights, adapter or None)

    def __str__(self) -> str:
        text = f"{self.arch} ({self.weights})"
        if self.is_random:
            text += " [random weights, for benchmarks only]"
        return text + (f" + adapter {self.adapter}" if self.adapter else "")


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report of a weights download (bytes so far; total when the server says)."""

    name: str
    done_bytes: int
    total_bytes: int | None

    @property
    def fraction(self) -> float | None:
        return self.done_bytes / self.total_bytes if self.total_bytes else None


@dataclass
class LoadedModel:
    """A model ready to embed with: eval mode, on its device, with its preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    identity: ModelIdentity
    spec: ModelSpec


# --------------------------------------------------------------------------- registry and device


def register_configs(extra: str | os.PathLike[str] | Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Make architectures known to open_clip: the bundled ones, and ``extra``.

    The bundled configs (``resources/models/*.json``) are registered once; later calls only add
    ``extra``: an open_clip model config file, registered under its file's stem (open_clip names
    a config after its file), or configs by name, each registered where open_clip does not know
    that name yet (one sent by another process, for example).

    Raises:
        ModelError: ``extra`` is a file that does not exist, is not readable JSON, or is not an
            open_clip model config.
    """
    global _registered
    import open_clip

    with _register_lock:
        if not _registered:
            open_clip.add_model_config(RESOURCES_MODELS)
            _registered = True
        if extra is None:
            return
        if isinstance(extra, Mapping):
            _register_by_name(extra)
            return
        path = Path(extra)
        _check_model_config(path)
        open_clip.add_model_config(path)


def register_bundled_configs() -> None:
    """Register ``resources/models/*.json`` with open_clip (once; later calls do nothing)."""
    register_configs()


def _check_model_config(path: Path) -> None:
    if not path.is_file():
        raise ModelError(f"model config {path} does not exist")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}); fix or remove it") from exc
    if not _is_model_config(config):
        raise ModelError(
            f"{path} is not an open_clip model config (it needs {', '.join(_MODEL_CONFIG_KEYS)})"
        )


def _is_model_config(config: Any) -> bool:
    return isinstance(config, dict) and all(key in config for key in _MODEL_CONFIG_KEYS)


def _register_by_name(configs: Mapping[str, Mapping[str, Any]]) -> None:
    """Register configs given as data: open_clip reads configs from files, so each goes through a
    temporary one (read at once; open_clip keeps the config, not the file)."""
    import open_clip

    new = {name: dict(config) for name, config in configs.items() if name not in open_clip.list_models()}
    if not new:
        return
    folder = Path(tempfile.mkdtemp(prefix="ladderlens-arch-"))
    try:
        for name, config in new.items():
            (folder / f"{name}.json").write_text(json.dumps(config), encoding="utf-8")
        open_clip.add_model_config(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def default_device() -> torch.device:
    """CUDA if present, then Apple MPS, then the CPU."""
    from core.devices import pick_device

    return pick_device()


def starter_weights_path() -> Path:
    """Where the bundled starter model's weights are (they may not be installed)."""
    return RESOURCES_MODELS / f"{STARTER_ARCH}.safetensors"


# --------------------------------------------------------------------------- loading


def load_model(
    spec: str | ModelSpec,
    device: torch.device | str | None = None,
    on_progress: ProgressCallback | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Build the model ``spec`` names, with its weights, in eval mode on ``device``.

    Args:
        spec: a :class:`ModelSpec` or its text form.
        device: where to run; :func:`default_device` when ``None``.
        on_progress: receives :class:`DownloadProgress` while pretrained weights download.
        cache_dir: download cache for ``openclip`` weights; the standard Hugging Face cache
            when ``None``.

    Raises:
        ModelUnavailableError: no weights can be had (not installed, offline and not cached,
            file missing); the message lists the alternatives.
        CheckpointError: the weights file is damaged or does not fit the architecture.
        ModelError: unknown architecture or tag (with close matches).
    """
    import torch

    spec = ModelSpec.parse(spec)
    device = torch.device(device) if device is not None else default_device()
    loaders = {
        "starter": _load_starter,
        "openclip": _load_openclip,
        "file": _load_file,
        "random": _load_random,
    }
    model, identity = loaders[spec.kind](spec, device, on_progress, cache_dir)
    model.eval()
    return LoadedModel(model, _eval_transform(model), _tokenizer(identity.arch), identity, spec)


def create_architecture(
    arch: str,
    device: torch.device | str = "cpu",
    *,
    force_quick_gelu: bool = False,
    preprocess_cfg: Mapping[str, Any] | None = None,
) -> torch.nn.Module:
    """The open_clip model ``arch`` with fresh (random) weights, in eval mode, nothing downloaded.

    Raises:
        ModelError: ``arch`` is not a known architecture (the message lists close names).
    """
    import open_clip

    register_configs()
    if open_clip.get_model_config(arch) is None:
        raise ModelError(
            f"unknown model architecture {arch!r}.{_did_you_mean(arch, open_clip.list_models())}"
        )
    try:
        with _quiet_random_init_notice():
            model = open_clip.create_model(
                arch,
                pretrained=None,
                device=device,
                pretrained_image=False,
                pretrained_text=False,
                force_quick_gelu=force_quick_gelu,
                force_preprocess_cfg=dict(preprocess_cfg) if preprocess_cfg else None,
            )
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        if not preprocess_cfg:
            raise
        # open_clip checks preprocessing settings with asserts
        raise CheckpointError(
            f"the checkpoint's preprocessing settings are invalid ({dict(preprocess_cfg)}: "
            f"{exc or type(exc).__name__}); fix or remove its '{PREPROCESS_KEY}' metadata"
        ) from exc
    return model.eval()


def model_from_weights(
    arch: str,
    path: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    preprocess_cfg: Mapping[str, Any] | None = None,
    force_quick_gelu: bool = False,
    subject: str | None = None,
    advice: str | None = None,
) -> torch.nn.Module:
    """The open_clip model ``arch`` holding the weights in ``path``, in eval mode on ``device``.

    Names and shapes are checked on a skeleton without memory (the meta device) before the model
    is built: a small or foreign file whose metadata names a large architecture fails at once, not
    after building gigabytes.

    Args:
        arch: open_clip architecture name (registered: see :func:`register_configs`).
        path: a ``.safetensors`` file or a PyTorch state dict (see :func:`read_state_dict`).
        device: where the model is built.
        preprocess_cfg: the image preprocessing to build the model with; ``None``: the one the
            file records (checked), else the architecture's own. ``{}``: the architecture's own.
        force_quick_gelu: build with QuickGELU activations (weights trained with them).
        subject, advice: how a mismatch is described, as :func:`fit_state_dict` takes them.

    Raises:
        ModelUnavailableError: the file does not exist.
        CheckpointError: the file is damaged, does not fit ``arch``, or records invalid
            preprocessing.
        ModelError: ``arch`` is not a known architecture.
    """
    import torch

    metadata = read_metadata(path)
    recorded = metadata.get(ARCH_KEY)
    if recorded and recorded != arch:
        logger.info("%s records architecture %r; loading it as %r as asked", path, recorded, arch)
    if preprocess_cfg is None:
        preprocess_cfg = _preprocess_overrides(metadata)
    build = {"force_quick_gelu": force_quick_gelu, "preprocess_cfg": preprocess_cfg}
    state = read_state_dict(path)
    with torch.device("meta"):
        skeleton = create_architecture(arch, "meta", **build)
    state = fit_state_dict(skeleton, state, path, arch, subject=subject, advice=advice)
    del skeleton
    model = create_architecture(arch, device, **build)
    load_weights(model, path, arch, state_dict=state, subject=subject, advice=advice)
    return model


def _load_starter(spec: ModelSpec, device, on_progress, cache_dir) -> tuple[torch.nn.Module, ModelIdentity]:
    weights = starter_weights_path()
    config = RESOURCES_MODELS / f"{STARTER_ARCH}.json"
    if not weights.is_file() or not config.is_file():
        missing = weights if config.is_file() else config
        raise ModelUnavailableError(
            f"The bundled starter model is not installed ({missing} is missing). Train it with "
            "'python -m trainer' or reinstall LadderLens, or choose another model: a local "
            "checkpoint (file:PATH) or an open_clip model (openclip:ARCH/TAG, downloaded once)."
        )
    model = model_from_weights(STARTER_ARCH, weights, device)
    return model, ModelIdentity(STARTER_ARCH, file_digest(weights))


def _load_file(spec: ModelSpec, device, on_progress, cache_dir) -> tuple[torch.nn.Module, ModelIdentity]:
    assert spec.path is not None
    arch = spec.arch or _arch_of_file(spec.path)
    return model_from_weights(arch, spec.path, device), ModelIdentity(arch, file_digest(spec.path))


def _arch_of_file(path: Path) -> str:
    """From the safetensors metadata, else from ``<stem>.json`` beside the file.

    The JSON is either ``{"arch": NAME}`` or a whole open_clip model config, which is then
    registered under the file's stem.
    """
    arch = read_metadata(path).get(ARCH_KEY)
    if arch:
        return arch
    beside = path.with_suffix(".json")
    if beside.is_file():
        try:
            config = json.loads(beside.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{beside} is not readable JSON ({exc}); fix or remove it") from exc
        if isinstance(config, dict) and isinstance(config.get(ARCH_KEY), str):
            return config[ARCH_KEY]
        if _is_model_config(config):
            register_configs(beside)
            return beside.stem
    raise ModelError(
        f"{path} does not say which architecture it holds. Name it: file:{path}#ARCH (for "
        f'example #ViT-B-32), or put a JSON beside it ({beside.name}) holding {{"arch": NAME}} or '
        "the open_clip model config."
    )


def _preprocess_overrides(metadata: Mapping[str, str]) -> dict[str, Any] | None:
    """The preprocessing a checkpoint records, checked (open_clip would assert on bad values later)."""
    recorded = preprocess_from_metadata(metadata)
    if not recorded:
        return None
    cfg = {k: recorded[k] for k in _OPENCLIP_PREPROCESS_KEYS if k in recorded}
    problems = []
    for key in ("mean", "std"):
        value = cfg.get(key)
        numbers = value if isinstance(value, list) else [value]
        if value is not None and not (
            len(numbers) in (1, 3)
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers
            )
            and (key == "mean" or all(v > 0 for v in numbers))
        ):
            problems.append(
                f"{key} {value!r} (one or three finite numbers{', above 0' if key == 'std' else ''})"
            )
    choices = {
        "interpolation": ("bicubic", "bilinear", "random"),
        "resize_mode": ("shortest", "longest", "squash"),
    }
    for key, allowed in choices.items():
        if key in cfg and cfg[key] is not None and cfg[key] not in allowed:
            problems.append(f"{key} {cfg[key]!r} (one of {', '.join(allowed)})")
    fill = cfg.get("fill_color")
    if fill is not None and not (isinstance(fill, int) and not isinstance(fill, bool) and 0 <= fill <= 255):
        problems.append(f"fill_color {fill!r} (0 to 255)")
    if problems:
        raise CheckpointError(
            f"the checkpoint's preprocessing settings are invalid: {'; '.join(problems)}. Fix or remove "
            f"its '{PREPROCESS_KEY}' metadata."
        )
    return cfg


def _load_random(spec: ModelSpec, device, on_progress, cache_dir) -> tuple[torch.nn.Module, ModelIdentity]:
    import torch

    assert spec.arch is not None
    logger.warning("creating %s with random weights, as asked (benchmarks only)", spec.arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = create_architecture(spec.arch, "cpu")
    return model.to(device), ModelIdentity(spec.arch, f"random:seed{RANDOM_SEED}")


def _load_openclip(spec: ModelSpec, device, on_progress, cache_dir) -> tuple[torch.nn.Module, ModelIdentity]:
    import open_clip

    assert spec.arch is not None and spec.tag is not None
    pretrained_cfg = _pretrained_cfg(spec.arch, spec.tag)
    path = resolve_pretrained_file(spec.arch, spec.tag, cache_dir=cache_dir, on_progress=on_progress)
    arch_quick_gelu = bool((open_clip.get_model_config(spec.arch) or {}).get("quick_gelu", False))
    model = model_from_weights(
        spec.arch,
        path,
        device,
        force_quick_gelu=bool(pretrained_cfg.get("quick_gelu", False)) and not arch_quick_gelu,
        preprocess_cfg={k: pretrained_cfg[k] for k in _OPENCLIP_PREPROCESS_KEYS if k in pretrained_cfg},
    )
    return model, ModelIdentity(spec.arch, f"openclip:{spec.tag}")


def _pretrained_cfg(arch: str, tag: str) -> dict[str, Any]:
    """open_clip's registry entry for ``arch``/``tag``; ModelError with close matches if absent."""
    import open_clip

    register_configs()
    if open_clip.get_model_config(arch) is None:
        known = sorted({name for name, _ in open_clip.list_pretrained()})
        raise ModelError(f"unknown open_clip architecture {arch!r}.{_did_you_mean(arch, known)}")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if cfg:
        return dict(cfg)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not tags:
        raise ModelError(
            f"open_clip has no downloadable weights for {arch!r}; "
            f"use a local checkpoint with file:PATH#{arch}"
        )
    close = difflib.get_close_matches(clean_tag(tag), tags, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ModelError(f"{arch!r} has no pretrained tag {tag!r}.{hint} Its tags: {', '.join(tags)}.")


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in candidates if lowered in c.lower()][:5]
    return f" Close matches: {', '.join(close)}." if close else ""


# --------------------------------------------------------------------------- pretrained downloads


def resolve_pretrained_file(
    arch: str,
    tag: str,
    cache_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """The local file of open_clip's pretrained ``arch``/``tag``, downloading it once if needed.

    Follows open_clip's own conventions (its registry entry's Hugging Face repo and file name,
    ``.safetensors`` preferred) and the standard Hugging Face cache, so a model downloaded by
    any open_clip program is found here too. A progress bar shows on a terminal; ``on_progress``
    receives :class:`DownloadProgress` records as well.

    Raises:
        ModelUnavailableError: not cached and cannot be downloaded now (offline, unreachable).
        ModelError: unknown architecture or tag.
    """
    import open_clip

    cfg = _pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "")
    try:
        if hub:
            return _download_from_hub(hub, cache_dir, on_progress)
        if cfg.get("url"):
            cache = os.fspath(cache_dir) if cache_dir else None
            return Path(open_clip.download_pretrained_from_url(cfg["url"], cache_dir=cache))
    except ModelUnavailableError:
        raise
    except Exception as exc:  # hub, HTTP and file errors all mean: cannot get it now
        raise _unavailable(arch, tag, exc) from exc
    raise ModelError(f"open_clip lists {arch}/{tag} without a download location; use file:PATH#{arch}")


def _download_from_hub(hub: str, cache_dir, on_progress: ProgressCallback | None) -> Path:
    import open_clip
    from huggingface_hub import hf_hub_download
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hub)
    filename = filename or HF_WEIGHTS_NAME
    candidates = [filename]
    if filename == HF_WEIGHTS_NAME:
        candidates.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    errors: list[Exception] = []
    for name in candidates:
        try:
            local = hf_hub_download(
                repo_id,
                name,
                cache_dir=os.fspath(cache_dir) if cache_dir else None,
                library_name="open_clip",
                library_version=open_clip.__version__,
                tqdm_class=_reporting_bar_class(on_progress) if on_progress else None,
            )
            return Path(local)
        except Exception as exc:  # the safetensors variant is often absent: try the next name
            errors.append(exc)
    raise _pick_error(errors)


def _pick_error(errors: list[Exception]) -> Exception:
    """The most telling of the per-file errors: a 'not cached, offline' one if any."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    for exc in errors:
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return exc
    return errors[-1]


def _unavailable(arch: str, tag: str, exc: BaseException) -> ModelUnavailableError:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError)):
        why = "they are not in the local cache and cannot be downloaded now (offline or unreachable)"
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = f"the download failed ({first})"
    return ModelUnavailableError(
        f"The weights of {arch}/{tag} are not available: {why}. Options: use the bundled starter "
        f"model ('starter'), a local checkpoint (file:PATH), or connect to the internet once so "
        f"openclip:{arch}/{tag} can be downloaded (it is kept in the cache afterwards)."
    )


def _reporting_bar_class(on_progress: ProgressCallback) -> type:
    """A huggingface_hub progress-bar class that also reports to ``on_progress``."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class _ReportingBar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._reported = 0
            self._name = str(kwargs.get("desc") or "weights")
            self._total_bytes = kwargs.get("total")

        def update(self, n: float | None = 1) -> bool | None:
            self._reported += int(n or 0)
            total = self.total if self.total else self._total_bytes
            on_progress(DownloadProgress(self._name, self._reported, int(total) if total else None))
            return super().update(n)

    return _ReportingBar


# --------------------------------------------------------------------------- preprocessing, tokenizer


def _eval_transform(model: torch.nn.Module) -> Callable[[Any], torch.Tensor]:
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = PreprocessCfg(**open_clip.get_model_preprocess_cfg(model))
    return image_transform_v2(cfg, is_train=False)


def _tokenizer(arch: str) -> Callable[..., torch.Tensor]:
    import open_clip

    try:
        return open_clip.get_tokenizer(arch)
    except OSError as exc:  # a Hugging Face tokenizer that is not cached while offline
        raise ModelUnavailableError(
            f"the tokenizer of {arch} is not available ({exc}); connect to the internet once to fetch it"
        ) from exc


@contextlib.contextmanager
def _quiet_random_init_notice() -> Iterator[None]:
    """open_clip logs 'initialized randomly' when created without weights, even though the
    weights are loaded right after; drop that one misleading line."""

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_OPEN_CLIP_RANDOM_NOTICE)

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
