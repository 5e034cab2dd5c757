"""A user's install: the wheel carries the bundled model, and runs from any folder without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("ladderlens-*.whl")
    return found


def test_wheel_carries_the_starter_model_and_no_checkout_only_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("ladderlens-starter.safetensors", "ladderlens-starter.json", "ladderlens-starter.vocab.json"):
        assert f"ladderlens/models/{f}" in names
    assert {"ladderlens/__init__.py", "ladderlens/__main__.py", "main.py", "core/models.py"} <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "resources/")) or n.endswith(".png") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "ladderlens = main:main" in text
        and "[gui_scripts]" in text
        and "ladderlens-app = main:gui_main" in text
    )


def test_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    """Installed without the checkout on the path, the starter model loads and the CLI answers."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import core.models as m, ladderlens; "
        "print(m.starter_weights_path().is_file(), "
        "m.RESOURCES_MODELS.is_relative_to(ladderlens.models_dir().parent), m.RESOURCES_MODELS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, check=True, capture_output=True, text=True
    ).stdout
    assert out.startswith("True True") and str(site) in out, out
    version = subprocess.run(
        [sys.executable, "-m", "ladderlens", "--version"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and version.stdout.startswith("ladderlens "), version


def test_version_and_messages_name_the_installed_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("ladderlens ")
    source = (ROOT / "main.py").read_text(encoding="utf-8")
    body = source.split('"""', 2)[2]  # the module docstring may say how to run from a checkout
    assert "python main.py" not in body
    for path in sorted((ROOT / "trainer").glob("finetune*.py")):  # the fine-tune's messages
        assert "python main.py" not in path.read_text(encoding="utf-8"), path


def test_exactly_one_hnswlib_build_is_installed_on_every_platform():
    """hnswlib where it builds (or has to), chroma-hnswlib where its wheels exist; never both, never none."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    deps = [
        Requirement(d)
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    builds = [d for d in deps if d.name in ("hnswlib", "chroma-hnswlib")]
    for platform in ("linux", "darwin", "win32", "freebsd14"):
        for python in ("3.10", "3.11", "3.12", "3.13", "3.14"):
            chosen = [
                d.name
                for d in builds
                if d.marker.evaluate({"sys_platform": platform, "python_version": python})
            ]
            assert len(chosen) == 1, (platform, python, chosen)
            wheels = (platform == "darwin" and python < "3.13") or (platform == "win32" and python < "3.12")
            assert chosen == ["chroma-hnswlib" if wheels else "hnswlib"], (platform, python)
