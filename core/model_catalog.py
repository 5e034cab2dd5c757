"""Recommended models to choose from: what each is good for, how big its download is, whether its
weights are on this computer already, and how fast it ran here.

Where the numbers come from:

* Download sizes of the open_clip models are their parameter counts (open_clip's architecture
  configs, counted on a model built without memory) times 4 bytes: the published weights are 32-bit
  floats. ``tests/core/test_model_catalog.py`` recounts them. The real file may differ by a few
  MB (file format overhead); the figure is shown as "about".
* ImageNet accuracy is the published zero-shot top-1 accuracy on ImageNet-1k: open_clip's results
  table (``docs/openclip_results.csv`` in the open_clip repository) for the ViT models, the
  MobileCLIP paper (Vasu et al., CVPR 2024, table of zero-shot results) for MobileCLIP-S2.
* The starter model's size is its bundled file's size, read from the disk.
* Speeds are never estimated: :func:`measure_speed` times the model on this computer, and
  :func:`record_speed` keeps the result in a small JSON file in the per-user cache folder.

Nothing here downloads anything; torch and open_clip are imported only by the functions that
load or time a model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import paths
from core.errors import ModelError, ModelUnavailableError
from core.models import ModelSpec, starter_weights_path

if TYPE_CHECKING:
    from core.embedder import Embedder

logger = logging.getLogger(__name__)

__all__ = [
    "CATALOG",
    "DEFAULT_SPEC",
    "CatalogEntry",
    "ModelChoice",
    "SpeedRecord",
    "catalog_entries",
    "find_entry",
    "measure_and_record",
    "measure_speed",
    "model_choices",
    "read_speeds",
    "record_speed",
    "speed_file",
    "starter_entry",
    "weights_cached",
]

DEFAULT_SPEC = "openclip:ViT-B-32-256/datacomp_s34b_b86k"
SPEED_FILE_NAME = "model-speeds.json"
SPEED_FILE_VERSION = 1
# open_clip's names for the weights file in a Hugging Face repository (open_clip.constants):
# the safetensors file is tried first, as core.models does when downloading.
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
SIZE_FROM_PARAMETERS = "estimated: parameters × 4 bytes"
SIZE_FROM_FILE = "size of the bundled file"

SPEED_IMAGES = 16
SPEED_BATCH = 8
SPEED_IMAGE_SIZE = (640, 480)


@dataclass(frozen=True)
class CatalogEntry:
    """One model to choose from.

    Attributes:
        spec: the model's text form (:class:`core.models.ModelSpec`).
        name: a short display name.
        good_for: what it is good for, in plain words.
        size_mb: download size in MB (10^6 bytes); see ``size_source``.
        size_source: how ``size_mb`` was found.
        imagenet_top1: published ImageNet-1k zero-shot top-1 accuracy in percent, if known.
        hf_hub: where open_clip downloads the weights (``org/repo/``), as its registry names it.
        recommended: the one to suggest for real photos.
    """

    spec: str
    name: str
    good_for: str
    size_mb: int
    size_source: str = SIZE_FROM_PARAMETERS
    imagenet_top1: float | None = None
    hf_hub: str | None = None
    recommended: bool = False

    @property
    def is_starter(self) -> bool:
        return self.spec == "starter"


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        DEFAULT_SPEC,
        "ViT-B/32 DataComp (256 px)",
        "Recommended for your own photos: good accuracy at a speed an ordinary laptop handles.",
        605,
        imagenet_top1=72.8,
        hf_hub="laion/CLIP-ViT-B-32-256x256-DataComp-s34B-b86K/",
        recommended=True,
    ),
    CatalogEntry(
        "openclip:MobileCLIP-S2/datacompdr",
        "MobileCLIP-S2",
        "Built for phones and laptops: a smaller download and quick to read photos, as accurate as "
        "ViT-B/16 on ImageNet.",
        397,
        imagenet_top1=74.4,
        hf_hub="apple/MobileCLIP-S2-OpenCLIP/",
    ),
    CatalogEntry(
        "openclip:ViT-B-32/laion2b_s34b_b79k",
        "ViT-B/32 LAION-2B",
        "A widely used all-rounder: a little faster than the recommended model, less accurate.",
        605,
        imagenet_top1=66.6,
        hf_hub="laion/CLIP-ViT-B-32-laion2B-s34B-b79K/",
    ),
    CatalogEntry(
        "openclip:ViT-B-16/datacomp_xl_s13b_b90k",
        "ViT-B/16 DataComp-XL",
        "More accurate on small details; reads photos several times slower than ViT-B/32.",
        598,
        imagenet_top1=73.5,
        hf_hub="laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K/",
    ),
    CatalogEntry(
        "openclip:ViT-L-14/datacomp_xl_s13b_b90k",
        "ViT-L/14 DataComp-XL",
        "The most accurate here; a large download and slow without a graphics card.",
        1710,
        imagenet_top1=79.2,
        hf_hub="laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K/",
    ),
)


def starter_entry() -> CatalogEntry:
    """The bundled starter model; its size is its file's (0 when it is not installed)."""
    weights = starter_weights_path()
    size = weights.stat().st_size if weights.is_file() else 0
    return CatalogEntry(
        "starter",
        "Starter model (bundled)",
        "Knows only the demo scene world (cars, kites, boats… in eight colours); "
        "it cannot find things in real photos.",
        round(size / 1e6),
        size_source=SIZE_FROM_FILE,
    )


def catalog_entries() -> list[CatalogEntry]:
    """The recommended open_clip models, the default first, then the bundled starter."""
    return [*CATALOG, starter_entry()]


def find_entry(spec: str) -> CatalogEntry | None:
    """The catalog's entry for ``spec`` (any text form of it), or None."""
    canonical = _canonical(spec)
    if canonical is None:
        return None
    return next((e for e in catalog_entries() if e.spec == canonical), None)


def _canonical(spec: str) -> str | None:
    try:
        return str(ModelSpec.parse(spec))
    except ModelError:
        return None


# --------------------------------------------------------------------------- is it downloaded?


def weights_cached(spec: str | ModelSpec, cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the weights ``spec`` names are on this computer: nothing is downloaded.

    open_clip models are looked up in the Hugging Face cache (``cache_dir``, else the standard
    one) under the names :func:`core.models.load_model` downloads them as; the starter and
    checkpoint files are looked for where they are. An unreadable spec is not cached.
    """
    try:
        parsed = ModelSpec.parse(spec)
    except ModelError:
        return False
    if parsed.kind == "starter":
        return starter_weights_path().is_file()
    if parsed.kind == "file":
        return parsed.path is not None and parsed.path.is_file()
    if parsed.kind == "random":
        return True
    return _openclip_cached(parsed, cache_dir)


def _openclip_cached(spec: ModelSpec, cache_dir: str | os.PathLike[str] | None) -> bool:
    entry = find_entry(str(spec))
    hub = entry.hf_hub if entry is not None else None
    url = None
    if hub is None:
        hub, url = _registry_location(spec)
    if hub:
        return _hub_cached(hub, cache_dir)
    if url:
        folder = Path(cache_dir) if cache_dir else Path("~/.cache/clip").expanduser()
        return (folder / os.path.basename(url)).is_file()
    return False


def _registry_location(spec: ModelSpec) -> tuple[str | None, str | None]:
    """open_clip's (hf_hub, url) for a model outside the catalog; (None, None) if it has none."""
    import open_clip

    from core.models import register_configs

    register_configs()
    cfg = open_clip.get_pretrained_cfg(spec.arch, spec.tag) or {}
    return cfg.get("hf_hub") or None, cfg.get("url") or None


def _hub_cached(hub: str, cache_dir: str | os.PathLike[str] | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = os.path.split(hub)
    for name in _weight_file_names(filename):
        found = try_to_load_from_cache(repo_id, name, cache_dir=os.fspath(cache_dir) if cache_dir else None)
        if isinstance(found, str) and os.path.isfile(found):
            return True
    return False


def _weight_file_names(filename: str) -> list[str]:
    """The file names a download tries, in order (as core.models does)."""
    if not filename or filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


# --------------------------------------------------------------------------- speed on this computer


@dataclass(frozen=True)
class SpeedRecord:
    """How fast a model read images on this computer.

    Attributes:
        images_per_second: synthetic photos preprocessed and embedded per second.
        device: where the model ran (``cpu``, ``cuda``, ``mps``).
        images: how many images were timed.
        measured_at: when, as an ISO 8601 time (UTC).
    """

    images_per_second: float
    device: str
    images: int
    measured_at: str

    @classmethod
    def from_dict(cls, data: Any) -> SpeedRecord | None:
        """The record in ``data``, or None when it is not a valid one."""
        if not isinstance(data, dict):
            return None
        try:
            ips = float(data["images_per_second"])
            record = cls(ips, str(data["device"]), int(data["images"]), str(data["measured_at"]))
        except (KeyError, TypeError, ValueError):
            return None
        return record if ips > 0 else None


def speed_file(cache: str | os.PathLike[str] | None = None) -> Path:
    """The JSON file of measured speeds, in the per-user cache folder (:func:`core.paths.cache_dir`)."""
    return paths.cache_dir(cache) / SPEED_FILE_NAME


def read_speeds(path: str | os.PathLike[str] | None = None) -> dict[str, SpeedRecord]:
    """Measured speeds by model spec; empty when none were measured or the file is unreadable."""
    path = Path(path) if path is not None else speed_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the speeds file %s: %s", path, exc)
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return {}
    speeds = {spec: SpeedRecord.from_dict(value) for spec, value in models.items()}
    return {spec: record for spec, record in speeds.items() if record is not None}


def record_speed(
    spec: str | ModelSpec, record: SpeedRecord, path: str | os.PathLike[str] | None = None
) -> None:
    """Keep ``record`` as ``spec``'s speed (replacing an older one); the file is replaced whole."""
    path = Path(path) if path is not None else speed_file()
    speeds = read_speeds(path)
    speeds[str(ModelSpec.parse(spec))] = record
    payload = {
        "version": SPEED_FILE_VERSION,
        "models": {key: asdict(value) for key, value in sorted(speeds.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".speeds-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def synthetic_images(count: int, size: Sequence[int] = SPEED_IMAGE_SIZE, seed: int = 0) -> list[Any]:
    """``count`` noise pictures of ``size`` (width, height): photo-sized work for preprocessing."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = int(size[0]), int(size[1])
    return [
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB") for _ in range(count)
    ]


def measure_speed(
    embedder: Embedder,
    images: int = SPEED_IMAGES,
    batch_size: int = SPEED_BATCH,
    size: Sequence[int] = SPEED_IMAGE_SIZE,
) -> SpeedRecord:
    """Time ``embedder`` preprocessing and embedding ``images`` synthetic photos of ``size``.

    One batch runs first, untimed (the first call of a model is slower). Decoding photo files is
    not included: it depends on the files, not the model.
    """
    if images < 1 or batch_size < 1:
        raise ValueError("images and batch_size must be at least 1")
    pictures = synthetic_images(images, size)
    embedder.encode_images(pictures[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    embedder.encode_images(pictures, batch_size=batch_size)
    elapsed = max(time.perf_counter() - start, 1e-9)
    return SpeedRecord(
        images_per_second=images / elapsed,
        device=str(embedder.device.type),
        images=images,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def measure_and_record(
    spec: str | ModelSpec,
    device: str | None = None,
    path: str | os.PathLike[str] | None = None,
    images: int = SPEED_IMAGES,
) -> SpeedRecord:
    """Load ``spec`` (only when its weights are here: nothing is downloaded), time it, keep the result.

    Raises:
        ModelUnavailableError: the weights are not on this computer.
        ModelError, CheckpointError: as :func:`core.models.load_model`.
    """
    from core.embedder import Embedder

    if not weights_cached(spec):
        raise ModelUnavailableError(
            f"{spec} is not on this computer yet; use it once (it is downloaded then) to measure its speed."
        )
    embedder = Embedder.from_spec(spec, device=device)
    record = measure_speed(embedder, images=images)
    record_speed(spec, record, path)
    return record


# --------------------------------------------------------------------------- everything at once


@dataclass(frozen=True)
class ModelChoice:
    """A catalog entry with what this computer knows of it."""

    entry: CatalogEntry
    cached: bool
    speed: SpeedRecord | None


def model_choices(
    cache_dir: str | os.PathLike[str] | None = None, speeds_path: str | os.PathLike[str] | None = None
) -> list[ModelChoice]:
    """Every catalog entry with whether it is downloaded and its measured speed (if any)."""
    speeds = read_speeds(speeds_path)
    return [
        ModelChoice(entry, weights_cached(entry.spec, cache_dir), speeds.get(entry.spec))
        for entry in catalog_entries()
    ]
