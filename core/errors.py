"""Typed errors raised by the library. Messages are written for the user: they say what to do."""

from __future__ import annotations


class LadderLensError(Exception):
    """Base class of every error the library raises on purpose."""


class LibraryError(LadderLensError):
    """The library folder or catalog cannot be used (unreadable, newer schema, locked...)."""


class FolderError(LadderLensError):
    """A folder to index does not exist, is not a folder, or cannot be read."""


class DecodeError(LadderLensError):
    """An image could not be decoded; ``reason`` is a short, user-readable cause."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ModelError(LadderLensError):
    """A model spec is invalid, its weights are missing, or a checkpoint does not fit."""


class ModelUnavailableError(ModelError):
    """No weights can be had for the requested model (offline, not bundled, not cached)."""


class CheckpointError(ModelError):
    """A checkpoint file is corrupt, of the wrong format, or does not match its architecture."""


class IndexCorruptError(LadderLensError):
    """The vector index file is corrupt or inconsistent with the catalog (it is rebuilt)."""


class QueryError(LadderLensError):
    """A search query is empty or malformed."""


class ProfileError(LadderLensError):
    """A fine-tune profile is missing, damaged, or made for another base model."""


class FinetuneError(LadderLensError):
    """A fine-tune cannot start or go on: too few tagged photos, too few tags, bad settings."""
