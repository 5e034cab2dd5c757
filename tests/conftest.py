"""Test-wide settings: nothing touches the user's real folders, Qt runs offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Point every per-user location (library, caches) at a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LADDERLENS_HOME", str(home / "library"))
    monkeypatch.setenv("LADDERLENS_CACHE", str(home / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
