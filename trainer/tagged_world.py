"""A tagged folder tree made from the scene world: fine-tuning data whose truth is known.

Scenes are written as JPEGs into ``<place>/<thing>/<colour>/`` folders, the way a person sorts
photos, with *personal* names for the places and things ("Grandma's garden" for the meadow,
"the kayak" for boats) that a model trained on the scene world's captions has never read. The
colour folders use words it knows. A fine-tune on this tree has to learn the new vocabulary;
benchmarks and tests measure how well it does on photos held out of the tree's training part.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.scene_render import render_scene
from trainer.scenes import Scene, sample_scenes

logger = logging.getLogger(__name__)

PLACE_NAMES: dict[str, str] = {
    "beach": "Praia da Luz",
    "snow": "Chamonix",
    "meadow": "Grandma's garden",
    "city": "Lisbon",
    "desert": "Tabernas",
}
THING_NAMES: dict[str, str] = {
    "car": "the old Volvo",
    "house": "the cottage",
    "tree": "the oak",
    "boat": "the kayak",
    "balloon": "balloon festival",
    "kite": "kite day",
}


@dataclass(frozen=True)
class TaggedScene:
    path: Path
    scene: Scene
    folders: tuple[str, ...]


def folders_for(scene: Scene) -> tuple[str, ...]:
    """The folder names (tags) a scene is sorted into."""
    return (PLACE_NAMES[scene.setting], THING_NAMES[scene.kind], scene.colour)


def write_tagged_tree(
    out_dir: str | os.PathLike[str],
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (64, 64),
    split: str = "train",
    quality: int = 90,
) -> list[TaggedScene]:
    """Render ``count`` scenes into a tagged tree under ``out_dir``; returns what was written."""
    out = Path(out_dir)
    written = []
    for n, scene in enumerate(sample_scenes(count, seed=seed, split=split)):  # type: ignore[arg-type]
        folders = folders_for(scene)
        folder = out.joinpath(*folders)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"IMG_{n:05d}.jpg"
        render_scene(scene, size=size).save(path, "JPEG", quality=quality)
        written.append(TaggedScene(path, scene, folders))
    return written
