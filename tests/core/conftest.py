"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def model(tiny_checkpoint) -> str:
    """The spec of the tiny test model's checkpoint."""
    return f"file:{tiny_checkpoint}"
