"""Fine-tune profiles: named, versioned results of fine-tuning, kept in the library folder.

::

    profiles/<name>/v1.safetensors   an adapter (mode "adapter") or whole model weights ("full")
    profiles/<name>/v1.json          what it is: base model, mode, blend, metrics, tags, when

A profile always sits on top of one base model, recorded as its :class:`~core.models.ModelIdentity`
(architecture and exact weights). The base is never changed; a profile trained on another base
is refused with a message (:meth:`ProfileStore.check_base`). Saving another fine-tune under the
same name adds a version; earlier versions stay until deleted.

Files are written atomically (temporary file, fsync, rename), weights first and the JSON last:
a version is listed only once its JSON exists, so a crash never leaves a half-saved profile.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.adapters import Adapter
from core.errors import ProfileError
from core.models import ModelIdentity

logger = logging.getLogger(__name__)

PROFILES_DIR = "profiles"
MODES = ("adapter", "full")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


def clean_profile_name(name: str) -> str:
    """The canonical form of a profile name: lower case, spaces as ``-``.

    Raises:
        ProfileError: nothing usable is left, or characters other than letters, digits, ``. _ -``.
    """
    text = "-".join(str(name).strip().lower().split())
    if not _NAME.match(text):
        raise ProfileError(
            f"{name!r} cannot name a profile: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example grandmas-garden)."
        )
    return text


def suggest_profile_name(text: str) -> str:
    """A valid profile name made from any text (a folder name, say)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", str(text).strip().lower()).strip("-._")[:64]
    return slug or "my-photos"


@dataclass(frozen=True)
class ProfileProgress:
    """One progress record of switching to a profile.

    ``phase``: "load" (the model), "apply" (transforming stored vectors), "index" (building the
    profile's search index), "embed" (a full profile re-embedding photos), "done".
    """

    phase: str
    done: int
    total: int | None


@dataclass(frozen=True)
class ProfileInfo:
    """One version of a profile.

    Attributes:
        name, version: what the user calls it (``name`` is canonical, see :func:`clean_profile_name`).
        mode: ``"adapter"`` (vectors of the base model transformed) or ``"full"`` (new model weights).
        base: identity of the base model it was trained on.
        base_spec: the model spec of that base, to switch back to it.
        weights: the weights file.
        created: seconds since the epoch.
        blend: the blend toward the base model (adapters).
        adapter_id: what goes into ``ModelIdentity.adapter`` for adapted vectors.
        report: metrics before and after, tags, split sizes, training settings.
    """

    name: str
    version: int
    mode: str
    base: ModelIdentity
    base_spec: str
    weights: Path
    created: float
    blend: float = 1.0
    adapter_id: str | None = None
    report: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def model_spec(self) -> str | None:
        """For a full profile, the model spec of its weights."""
        return f"file:{self.weights}#{self.base.arch}" if self.mode == "full" else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "mode": self.mode,
            "base": self.base.to_dict(),
            "base_spec": self.base_spec,
            "weights": self.weights.name,
            "created": self.created,
            "blend": self.blend,
            "adapter_id": self.adapter_id,
            "report": dict(self.report),
        }


class ProfileStore:
    """The profiles of one library (folder ``<library>/profiles``)."""

    def __init__(self, library_root: str | os.PathLike[str]):
        self.dir = Path(library_root) / PROFILES_DIR

    # -- reading

    def list(self, name: str | None = None) -> list[ProfileInfo]:
        """Every saved version (of one profile when ``name`` is given), by name then version."""
        if not self.dir.is_dir():
            return []
        folders = [self.dir / clean_profile_name(name)] if name is not None else sorted(self.dir.iterdir())
        found: list[ProfileInfo] = []
        for folder in folders:
            if not folder.is_dir() or not _NAME.match(folder.name):
                continue
            for entry in sorted(folder.iterdir()):
                match = _VERSION_FILE.match(entry.name)
                if match is None:
                    continue
                try:
                    found.append(self._read(entry))
                except ProfileError as e:
                    logger.warning("ignoring profile file %s: %s", entry, e)
        return sorted(found, key=lambda p: (p.name, p.version))

    def names(self) -> list[str]:
        return sorted({p.name for p in self.list()})

    def get(self, name: str, version: int | None = None) -> ProfileInfo:
        """A profile version (the latest when ``version`` is None).

        Raises:
            ProfileError: no such profile or version (the message lists what exists).
        """
        canonical = clean_profile_name(name)
        versions = self.list(canonical)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise ProfileError(f"There is no profile named {canonical!r} (profiles: {known}).")
        if version is None:
            return versions[-1]
        for info in versions:
            if info.version == version:
                return info
        raise ProfileError(
            f"Profile {canonical!r} has no version {version} "
            f"(versions: {', '.join(str(p.version) for p in versions)})."
        )

    def _read(self, path: Path) -> ProfileInfo:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            base = ModelIdentity.from_dict(data["base"])
            weights = path.parent / data["weights"]
            mode = data["mode"]
            if mode not in MODES:
                raise ProfileError(f"unknown mode {mode!r}")
            return ProfileInfo(
                name=str(data["name"]),
                version=int(data["version"]),
                mode=mode,
                base=base,
                base_spec=str(data["base_spec"]),
                weights=weights,
                created=float(data["created"]),
                blend=float(data.get("blend", 1.0)),
                adapter_id=data.get("adapter_id"),
                report=data.get("report") or {},
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProfileError(f"the profile description {path} is unreadable ({e})") from e
        except Exception as e:  # ModelError from a malformed identity
            raise ProfileError(f"the profile description {path} is unreadable ({e})") from e

    def load_adapter(self, info: ProfileInfo) -> Adapter:
        """The adapter of an adapter profile.

        Raises:
            ProfileError: it is a full profile, or its file is missing or damaged.
        """
        if info.mode != "adapter":
            raise ProfileError(f"Profile {info.label} holds whole model weights, not an adapter.")
        try:
            adapter = Adapter.load(info.weights)
        except Exception as e:  # CheckpointError
            raise ProfileError(f"Profile {info.label} cannot be loaded: {e}") from e
        if info.adapter_id and adapter_id(info.name, info.version, adapter) != info.adapter_id:
            raise ProfileError(
                f"Profile {info.label}: its weights file {info.weights} was changed after it was saved. "
                "Fine-tune again or delete this version."
            )
        return adapter

    @staticmethod
    def check_base(info: ProfileInfo, identity: ModelIdentity) -> None:
        """Refuse a profile trained on another base model.

        Raises:
            ProfileError: the profile's base is not ``identity`` (the message says what to do).
        """
        base = identity.with_adapter(None)
        if info.base != base:
            raise ProfileError(
                f"Profile {info.label} was fine-tuned on the model {info.base} ({info.base_spec}), but the "
                f"library now uses {base}. Switch the library back to {info.base_spec} to use it, or "
                "fine-tune a new profile on the current model."
            )

    # -- writing

    def next_version(self, name: str) -> int:
        versions = self.list(name)
        return versions[-1].version + 1 if versions else 1

    def _new_version(self, name: str) -> tuple[str, Path, int]:
        """The canonical name, the (created) folder and the next version number of a profile."""
        canonical = clean_profile_name(name)
        folder = self.dir / canonical
        folder.mkdir(parents=True, exist_ok=True)
        return canonical, folder, self.next_version(canonical)

    def save_adapter(
        self,
        name: str,
        adapter: Adapter,
        base: ModelIdentity,
        base_spec: str,
        report: Mapping[str, Any] | None = None,
    ) -> ProfileInfo:
        """Save an adapter as the next version of profile ``name``."""
        canonical, folder, version = self._new_version(name)
        base = base.with_adapter(None)
        adapter = adapter.with_metadata(
            profile=canonical, profile_version=str(version), base=base.to_dict(), base_spec=base_spec
        )
        weights = folder / f"v{version}.safetensors"
        adapter.save(weights)
        info = ProfileInfo(
            name=canonical,
            version=version,
            mode="adapter",
            base=base,
            base_spec=base_spec,
            weights=weights,
            created=time.time(),
            blend=adapter.blend,
            adapter_id=adapter_id(canonical, version, adapter),
            report=dict(report or {}),
        )
        self._write_json(folder / f"v{version}.json", info)
        logger.info("saved profile %s", info.label)
        return info

    def save_model(
        self,
        name: str,
        weights_file: str | os.PathLike[str],
        base: ModelIdentity,
        base_spec: str,
        report: Mapping[str, Any] | None = None,
    ) -> ProfileInfo:
        """Save whole model weights (a full fine-tune; the file is moved in) as the next version."""
        canonical, folder, version = self._new_version(name)
        weights = folder / f"v{version}.model.safetensors"
        tmp = weights.with_name(f".{weights.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(weights_file, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, weights)
        finally:
            tmp.unlink(missing_ok=True)
        info = ProfileInfo(
            name=canonical,
            version=version,
            mode="full",
            base=base.with_adapter(None),
            base_spec=base_spec,
            weights=weights,
            created=time.time(),
            report=dict(report or {}),
        )
        self._write_json(folder / f"v{version}.json", info)
        return info

    @staticmethod
    def _write_json(path: Path, info: ProfileInfo) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(info.to_dict(), fh, indent=1, default=_json_default)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, name: str, version: int | None = None) -> list[ProfileInfo]:
        """Delete one version, or every version of a profile; returns what was deleted.

        Raises:
            ProfileError: no such profile or version.
        """
        targets = [self.get(name, version)] if version is not None else self.list(name)
        if not targets:
            self.get(name)  # raises with the list of profiles
        for info in targets:
            (info.weights.parent / f"v{info.version}.json").unlink(missing_ok=True)
            info.weights.unlink(missing_ok=True)
        folder = self.dir / clean_profile_name(name)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return targets


def adapter_id(name: str, version: int, adapter: Adapter) -> str:
    """What goes into ``ModelIdentity.adapter`` for vectors made with this adapter."""
    return f"{name}.v{version}.{adapter.digest.removeprefix('sha256:')}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
