"""Layering: core and trainer work with Qt absent; opening the library does not load torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCK_QT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    sys.path.insert(0, {repo!r})

    class NoQt:
        def find_spec(self, name, path=None, target=None):
            if name == "PySide6" or name.startswith("PySide6.") or name == "app" or name.startswith("app."):
                raise ImportError(f"{{name}} is blocked: core and trainer must work without Qt")

    sys.meta_path.insert(0, NoQt())
    for package in ("core", "trainer"):
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            importlib.import_module(info.name)
    print("ok")
    """
)


def test_core_and_trainer_import_without_qt():
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_QT.format(repo=str(REPO))], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_opening_a_library_does_not_import_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from core.library import Library
        with Library.open({str(tmp_path / "lib")!r}) as lib:
            lib.status()
        assert "torch" not in sys.modules, "torch was imported"
        assert "open_clip" not in sys.modules, "open_clip was imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_import_contracts():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
