"""Scene-world data for training and validation: rendered images, captions, relevance.

Images are rendered larger than the model's input and downsampled (as the app's decoder does with
real photos), then cached on disk as one uint8 array per (split, count, seed, size, version), so a
second run does not render again. Captions are drawn afresh every epoch from a seeded generator, a
mix of full captions (every attribute) and partial ones, so the relevance between a caption and the
other scenes of a batch is graded.

Everything here is deterministic given the seed: the same (seed, epoch, step) gives the same
batch on any machine, which is what makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from core.paths import cache_dir
from trainer import captions as scene_captions
from trainer import scene_render
from trainer import scenes as scene_world

logger = logging.getLogger(__name__)

# Bump when rendering or caching changes so stale caches are not reused.
DATA_VERSION = 1
# Scenes are rendered at this multiple of the model's input size, then downsampled.
RENDER_SCALE = 2
# Same constants as open_clip's OpenAI preprocessing (what the starter model's config uses).
DEFAULT_MEAN = (0.48145466, 0.4578275, 0.40821073)
DEFAULT_STD = (0.26862954, 0.26130258, 0.27577711)

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


@dataclass(frozen=True)
class SceneSetSpec:
    """Which scenes, at which size: everything that decides the rendered pixels."""

    split: str  # "train", "test" (held-out seed) or "heldout" (held-out compositions)
    count: int
    seed: int
    image_size: int
    twins: bool = False  # scenes come in counterfactual pairs (2i, 2i + 1): see load_scene_set

    def scenes(self) -> list:
        """The scenes, in order (with ``twins``, each drawn scene followed by its twin)."""
        if not self.twins:
            return list(scene_world.sample_scenes(self.count, seed=self.seed, split=self.split))
        base = scene_world.sample_scenes(self.count // 2, seed=self.seed, split=self.split)
        twins = scene_world.counterfactual_twins(base, seed=self.seed)
        return [s for pair in zip(base, twins, strict=True) for s in pair]

    def __post_init__(self) -> None:
        if self.split not in ("train", "test", "heldout"):
            raise ValueError(f"split must be train, test or heldout, got {self.split!r}")
        if self.count < 1:
            raise ValueError(f"need at least one scene, got {self.count}")
        if self.image_size < 8:
            raise ValueError(f"image size must be at least 8 pixels, got {self.image_size}")
        if self.twins and (self.count % 2 or self.split == "heldout"):
            raise ValueError(
                f"twins need an even number of train or test scenes, got {self.count} {self.split}"
            )

    @property
    def cache_name(self) -> str:
        return (
            f"scenes-v{DATA_VERSION}-{renderer_fingerprint()}-{self.split}-n{self.count}-s{self.seed}"
            f"-{self.image_size}px{'-twins' if self.twins else ''}.npy"
        )


@functools.cache
def renderer_fingerprint() -> str:
    """8 hex digits of the scene world's source (sampling and renderer): a change re-renders caches."""
    import hashlib
    import inspect

    digest = hashlib.sha256()
    for module in (scene_world, scene_render):
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()[:8]


@dataclass
class SceneSet:
    """Scenes with their rendered pixels (N, H, W, 3) uint8."""

    spec: SceneSetSpec
    scenes: list
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.scenes)


def render_images(
    scenes: Sequence,
    image_size: int,
    on_progress: ProgressFn | None = None,
    workers: int | None = None,
    chunk: int = 512,
) -> np.ndarray:
    """Render ``scenes`` at RENDER_SCALE x ``image_size`` and downsample to ``image_size`` (bicubic).

    Sets of two chunks or more are rendered by ``workers`` forked processes (default: one per
    CPU core), ``chunk`` scenes at a time.
    """
    import multiprocessing

    out = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    workers = workers if workers is not None else (os.cpu_count() or 1)
    # Worker processes are forked (Linux): spawning would re-run the caller's main module.
    can_fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
    if workers <= 1 or len(scenes) < 2 * chunk or not can_fork:
        for start in range(0, len(scenes), chunk):
            out[start : start + chunk] = _render_chunk(scenes[start : start + chunk], image_size)
            if on_progress is not None:
                on_progress(min(start + chunk, len(scenes)), len(scenes))
        return out
    import concurrent.futures
    import warnings

    starts = list(range(0, len(scenes), chunk))
    context = multiprocessing.get_context("fork")
    with (
        warnings.catch_warnings(),
        concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
    ):
        # Python 3.12+ warns about forking a process that has threads (torch's). The workers
        # only draw with PIL and numpy and never touch the parent's thread pools.
        warnings.filterwarnings(
            "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
        )
        futures = {pool.submit(_render_chunk, list(scenes[s : s + chunk]), image_size): s for s in starts}
        done = 0
        for future in concurrent.futures.as_completed(futures):
            start = futures[future]
            pixels = future.result()
            out[start : start + len(pixels)] = pixels
            done += len(pixels)
            if on_progress is not None:
                on_progress(done, len(scenes))
    return out


def _render_chunk(scenes: Sequence, image_size: int) -> np.ndarray:
    from PIL import Image

    big = image_size * RENDER_SCALE
    out = np.empty((len(scenes), image_size, image_size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        image = scene_render.render_scene(scene, size=(big, big)).convert("RGB")
        out[i] = np.asarray(image.resize((image_size, image_size), Image.Resampling.BICUBIC))
    return out


def load_scene_set(
    spec: SceneSetSpec, cache_root: Path | None = None, on_progress: ProgressFn | None = None
) -> SceneSet:
    """The scenes of ``spec`` with their pixels, from the cache or rendered (then cached).

    With ``spec.twins``, scenes ``2i`` and ``2i + 1`` are counterfactual twins: the same look (seed)
    with one attribute changed (:func:`trainer.scenes.counterfactual_twins`), so a batch that keeps
    pairs together teaches the differences that matter (mostly count) on otherwise equal pictures.

    The cache lives in ``<cache>/scenes`` (see :func:`core.paths.cache_dir`); a damaged cache
    file is rendered again. Writes are atomic, so two processes may race safely.
    """
    scenes = spec.scenes()
    folder = (cache_root if cache_root is not None else cache_dir()) / "scenes"
    path = folder / spec.cache_name
    expected = (spec.count, spec.image_size, spec.image_size, 3)
    if path.is_file():
        try:
            images = np.load(path, mmap_mode="r")
            if images.shape == expected and images.dtype == np.uint8:
                return SceneSet(spec, scenes, images)
            logger.warning(
                "cached scenes %s have shape %s, expected %s; rendering again", path, images.shape, expected
            )
        except (OSError, ValueError) as exc:
            logger.warning("cached scenes %s are unreadable (%s); rendering again", path, exc)
    logger.info("rendering %d %s scenes at %d px into %s", spec.count, spec.split, spec.image_size, path)
    images = render_images(scenes, spec.image_size, on_progress)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, images)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return SceneSet(spec, scenes, images)


@dataclass
class Captions:
    """One caption per scene: the text, the attributes it names and (when asked) its tokens."""

    texts: list[str]
    attributes: list[dict[str, str]]
    tokens: torch.Tensor | None  # (N, context_length) int64


# Training captions: half name every attribute, half only some. Partial captions make the
# relevance between a caption and the other scenes of a batch graded; one-attribute captions
# are rarer because in a batch of 128 a dozen scenes match them fully (false negatives for a
# contrastive loss).
FULL_CAPTION_SHARE = 0.5
PARTIAL_SIZES = (1, 2, 3, 4)
PARTIAL_SIZE_WEIGHTS = (0.1, 0.3, 0.3, 0.3)


def draw_captions(
    scenes: Sequence,
    seed: int,
    tokenizer: Callable | None,
    salt: int = 0,
    full_share: float = FULL_CAPTION_SHARE,
) -> Captions:
    """One caption per scene, drawn from a generator seeded by (seed, salt).

    A ``full_share`` of them name all five attributes; the rest name a random subset (sizes
    drawn with :data:`PARTIAL_SIZE_WEIGHTS`). Without a tokenizer, ``tokens`` is None.
    """
    rng = np.random.default_rng([0x1ADDE2, seed, salt & 0xFFFFFFFF])
    texts: list[str] = []
    attributes: list[dict[str, str]] = []
    sizes = np.asarray(PARTIAL_SIZES)
    weights = np.asarray(PARTIAL_SIZE_WEIGHTS) / sum(PARTIAL_SIZE_WEIGHTS)
    names = np.asarray(scene_world.ATTRIBUTES)
    for scene in scenes:
        if rng.random() < full_share:
            texts.append(scene_captions.caption(scene, rng))
            attributes.append(scene.attributes())
        else:
            k = int(rng.choice(sizes, p=weights))
            named = [str(a) for a in names[np.sort(rng.choice(len(names), size=k, replace=False))]]
            text, attrs = scene_captions.partial_caption(scene, rng, named=named)
            texts.append(text)
            attributes.append(attrs)
    return Captions(texts, attributes, tokenizer(texts) if tokenizer is not None else None)


def relevance_of(captions_attributes: Sequence[dict[str, str]], scenes: Sequence) -> np.ndarray:
    """R[i, j] = relevance of caption j to scene i, as float32 (rows: scenes, columns: captions)."""
    matrix = scene_world.relevance_matrix(captions_attributes, scenes)  # (Q captions, N scenes)
    return np.ascontiguousarray(np.asarray(matrix, dtype=np.float32).T)


@dataclass
class Batch:
    """One training batch. ``relevance[i, j]`` grades caption j against image i; its diagonal is 1.

    ``levels`` holds the adaptive ladder levels of ``relevance`` when the stream computes them
    (:class:`TrainStream`'s ``levels``): the relevance is known before the model runs, so the
    data pipeline computes them and the training step passes them to the loss.
    """

    images: torch.Tensor  # (B, 3, H, W) float32, normalised
    tokens: torch.Tensor  # (B, context_length) int64
    relevance: torch.Tensor  # (B, B) float32 in [0, 1]
    indices: torch.Tensor  # (B,) scene indices in the training set
    attributes: list[dict[str, str]]  # what each caption names
    levels: torch.Tensor | None = None  # (2, B, B) int64, see trainer.levels.ladder_levels


class ImageNormalizer:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W), with optional light augmentation."""

    def __init__(self, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, pixels: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)
        if generator is not None:
            x = augment(x, generator)
        return (x - self.mean) / self.std


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation that keeps every attribute true: mirror, and shift by a few pixels.

    Colour, brightness and crops are left alone: they carry colour, time of day and count.
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(3), x)
    pad = max(1, h // 32)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


class TrainStream:
    """Batches of the training set, sharded across processes like ``DistributedSampler``.

    Every process sees ``batches_per_epoch`` batches of ``batch_size`` per epoch; captions are drawn
    anew each epoch. Nothing depends on global random state.

    With ``unambiguous`` (the default), a partial caption that fully matches another scene of its
    batch ("a red car" beside another red car) is replaced by its scene's full caption for that
    batch: every loss of the family treats the diagonal as the one best match, and a second
    perfect match would be a false negative (InfoNCE) or an unsatisfiable hinge (the ladder's
    triplet boundary). Twins (two scenes with all five attributes equal) stay as they are.

    With ``levels`` (e.g. an adaptive ladder loss's ``level_settings``), every batch also
    carries the levels that function computes from its relevance matrix.

    A scene set drawn with twins (``data.spec.twins``) is shuffled by pairs, so every batch holds
    whole counterfactual pairs (the batch size must be even).
    """

    def __init__(
        self,
        data: SceneSet,
        tokenizer: Callable,
        batch_size: int,
        seed: int,
        normalizer: ImageNormalizer,
        rank: int = 0,
        world_size: int = 1,
        augment_images: bool = True,
        unambiguous: bool = True,
        levels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if batch_size < 2:
            raise ValueError(
                f"batch size must be at least 2 (contrastive losses need negatives), got {batch_size}"
            )
        self.data = data
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.normalizer = normalizer
        self.rank = rank
        self.world_size = world_size
        self.augment_images = augment_images
        self.unambiguous = unambiguous
        self.levels = levels
        self.pairs = bool(getattr(getattr(data, "spec", None), "twins", False))
        if self.pairs and batch_size % 2:
            raise ValueError(f"a scene set of twins needs an even batch size, got {batch_size}")
        self.per_rank = len(data) // world_size
        self.batches_per_epoch = self.per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{len(data)} training scenes cannot fill one batch of {batch_size} on each of {world_size} "
                "process(es); use more scenes or a smaller batch"
            )
        self._captions: tuple[int, Captions] | None = None

    def _order(self, epoch: int) -> list[int]:
        from torch.utils.data import DistributedSampler

        unit = 2 if self.pairs else 1
        sampler = DistributedSampler(
            range(len(self.data) // unit),  # type: ignore[arg-type]
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return [unit * i + j for i in sampler for j in range(unit)]

    def captions(self, epoch: int) -> Captions:
        """The epoch's captions (texts and attributes; batches tokenize their own)."""
        if self._captions is None or self._captions[0] != epoch:
            self._captions = (epoch, draw_captions(self.data.scenes, self.seed, None, salt=epoch + 1))
        return self._captions[1]

    def full_caption(self, epoch: int, index: int) -> str:
        """A full caption of scene ``index`` for ``epoch`` (what an ambiguous partial caption becomes)."""
        rng = np.random.default_rng([0xF011, self.seed, epoch, index])
        return scene_captions.caption(self.data.scenes[index], rng)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch``, beginning at ``start_batch`` (to resume mid-epoch)."""
        order = self._order(epoch)
        caps = self.captions(epoch)
        for b in range(start_batch, self.batches_per_epoch):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            sorted_idx = np.sort(np.asarray(idx))  # memory-mapped reads go faster in order
            pixels = self.data.images[sorted_idx]
            pixels = pixels[np.searchsorted(sorted_idx, idx)]
            gen = None
            if self.augment_images:
                gen = torch.Generator().manual_seed(hash_seed(self.seed, epoch, b, self.rank))
            images = self.normalizer(pixels, gen)
            scenes = [self.data.scenes[i] for i in idx]
            attributes = [caps.attributes[i] for i in idx]
            texts = [caps.texts[i] for i in idx]
            relevance = relevance_of(attributes, scenes)
            if self.unambiguous:
                off_diagonal = relevance >= 1.0 - 1e-6
                np.fill_diagonal(off_diagonal, False)
                ambiguous = [j for j in np.flatnonzero(off_diagonal.any(axis=0)) if len(attributes[j]) < 5]
                for j in ambiguous:
                    texts[j] = self.full_caption(epoch, idx[j])
                    attributes[j] = scenes[j].attributes()
                if ambiguous:
                    relevance = relevance_of(attributes, scenes)
            tokens = self.tokenizer(texts)
            relevance_t = torch.from_numpy(relevance)
            levels = self.levels(relevance_t) if self.levels is not None else None
            yield Batch(images, tokens, relevance_t, torch.as_tensor(idx), attributes, levels)


def prefetched(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``batches`` produced ahead in a background thread, at most ``depth`` waiting.

    The training step then overlaps with the making of the next batches (rendered pixels
    normalised, captions tokenized, relevance and adaptive levels computed: numpy and torch
    release the interpreter lock in their kernels). The order is unchanged, an exception in the
    producer is raised here, and closing this generator (e.g. leaving a ``for`` loop early)
    stops the producer, so an epoch abandoned midway leaves no thread behind.
    """
    if depth < 1:
        yield from batches
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(
        target=_produce, args=(batches, items, stop), name="batch-prefetch", daemon=True
    )
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


_DONE = object()  # what the producer of prefetched() puts after the last batch


def _produce(batches: Iterable[object], items: queue.Queue, stop: threading.Event) -> None:
    """Put every item of ``batches`` on ``items``, then ``_DONE`` or the failure, until ``stop``.

    The source is closed in the end, whether it ran out, failed or was stopped.
    """
    source = iter(batches)
    try:
        for item in source:
            if not _put(items, item, stop):
                return
        _put(items, _DONE, stop)
    except BaseException as exc:  # handed to the consumer, raised there
        _put(items, _Failure(exc), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _put(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` on ``items``, waiting while it is full; False when ``stop`` came first."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


@dataclass
class _Failure:
    error: BaseException


def hash_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and platforms)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value ^= (int(part) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2)) & 0xFFFFFFFFFFFFFFFF
    return value & 0x7FFFFFFFFFFFFFFF


@dataclass
class EvalSet:
    """A validation pool: scenes, their pixels, one fixed caption per scene and the relevance.

    ``full`` pools caption every scene with all five attributes (R@K is well defined: the
    ground truth is the captioned scene); partial pools name subsets, for the graded metrics.
    """

    name: str
    data: SceneSet
    captions: Captions
    relevance: np.ndarray  # (Q captions, N scenes)
    full: bool = True


def build_eval_set(name: str, data: SceneSet, tokenizer: Callable, seed: int, full: bool = True) -> EvalSet:
    """Fix one caption per scene (seeded) and the caption-by-scene relevance for ``data``."""
    caps = draw_captions(
        data.scenes, seed, tokenizer, salt=-1 if full else -2, full_share=1.0 if full else 0.0
    )
    relevance = np.asarray(scene_world.relevance_matrix(caps.attributes, data.scenes), dtype=np.float32)
    return EvalSet(name, data, caps, relevance, full)
