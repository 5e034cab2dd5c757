"""The model catalog: its entries against open_clip's registry, the cache check, the speed store."""

from __future__ import annotations

import json

import pytest

from core import model_catalog
from core.errors import ModelUnavailableError
from core.model_catalog import (
    CATALOG,
    DEFAULT_SPEC,
    SpeedRecord,
    catalog_entries,
    find_entry,
    measure_and_record,
    measure_speed,
    model_choices,
    read_speeds,
    record_speed,
    speed_file,
    starter_entry,
    weights_cached,
)
from core.models import ModelSpec, starter_weights_path


def fake_hub_cache(cache, hub: str, filename: str = "open_clip_model.safetensors"):
    """A Hugging Face cache folder holding ``filename`` of the repository in ``hub`` (org/repo/)."""
    repo_id = hub.rstrip("/")
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    weights = snapshot / filename
    weights.write_bytes(b"not really weights")
    return weights


# ---------------------------------------------------------------------- the table


def test_every_entry_is_a_pretrained_model_open_clip_lists_with_its_download_location():
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    listed = set(open_clip.list_pretrained())
    for entry in CATALOG:
        spec = ModelSpec.parse(entry.spec)
        assert str(spec) == entry.spec and spec.kind == "openclip"
        assert (spec.arch, spec.tag) in listed, entry.spec
        assert open_clip.get_pretrained_cfg(spec.arch, spec.tag)["hf_hub"] == entry.hf_hub
    assert (model_catalog.HF_SAFE_WEIGHTS_NAME, model_catalog.HF_WEIGHTS_NAME) == (
        HF_SAFE_WEIGHTS_NAME,
        HF_WEIGHTS_NAME,
    )


def test_download_sizes_are_the_parameter_counts_in_32_bit_floats():
    import torch

    from core.models import create_architecture

    for entry in CATALOG:
        arch = ModelSpec.parse(entry.spec).arch
        with torch.device("meta"):
            model = create_architecture(arch, "meta")
        count = sum(t.numel() for t in model.state_dict().values())
        assert entry.size_mb == round(count * 4 / 1e6), entry.spec


def test_the_default_is_recommended_first_and_the_starter_says_what_it_knows():
    entries = catalog_entries()
    assert entries[0].spec == DEFAULT_SPEC and entries[0].recommended
    assert [e.spec for e in entries if e.recommended] == [DEFAULT_SPEC]
    assert len({e.spec for e in entries}) == len(entries)
    starter = entries[-1]
    assert starter.is_starter and "demo scene world" in starter.good_for
    assert starter.imagenet_top1 is None  # it was never measured on ImageNet
    assert starter.size_mb == round(starter_weights_path().stat().st_size / 1e6)
    for entry in CATALOG:
        assert entry.imagenet_top1 is None or 50 < entry.imagenet_top1 < 90


def test_find_entry_reads_any_text_form():
    assert find_entry("openclip:ViT-B-32-256/datacomp-s34b-b86k").spec == DEFAULT_SPEC
    assert find_entry(" starter ") == starter_entry()
    assert find_entry("openclip:ViT-B-32/openai") is None
    assert find_entry("not a model") is None


# ---------------------------------------------------------------------- is it downloaded?


def test_weights_cached_looks_in_the_cache_without_downloading(tmp_path):
    cache = tmp_path / "hf"
    default = find_entry(DEFAULT_SPEC)
    assert not weights_cached(DEFAULT_SPEC, cache)
    fake_hub_cache(cache, default.hf_hub)
    assert weights_cached(DEFAULT_SPEC, cache)
    assert weights_cached(ModelSpec.parse(DEFAULT_SPEC), cache)
    assert not weights_cached("openclip:ViT-L-14/datacomp_xl_s13b_b90k", cache)
    # the PyTorch file (repositories without safetensors) counts too
    large = find_entry("openclip:ViT-L-14/datacomp_xl_s13b_b90k")
    fake_hub_cache(cache, large.hf_hub, "open_clip_pytorch_model.bin")
    assert weights_cached(large.spec, cache)
    assert not any((tmp_path / "hf").rglob("*.incomplete"))


def test_weights_cached_for_a_model_outside_the_catalog_asks_open_clip_where_it_lives(tmp_path):
    import open_clip

    cache = tmp_path / "hf"
    spec = "openclip:ViT-B-16/laion2b_s34b_b88k"
    assert find_entry(spec) is None
    assert not weights_cached(spec, cache)
    fake_hub_cache(cache, open_clip.get_pretrained_cfg("ViT-B-16", "laion2b_s34b_b88k")["hf_hub"])
    assert weights_cached(spec, cache)


def test_weights_cached_for_files_the_starter_and_nonsense(tmp_path, tiny_checkpoint):
    assert weights_cached(f"file:{tiny_checkpoint}")
    assert not weights_cached(f"file:{tmp_path / 'missing.safetensors'}")
    assert weights_cached("starter") == starter_weights_path().is_file()
    assert not weights_cached("openclip:nonsense")
    assert not weights_cached("")


# ---------------------------------------------------------------------- speed on this computer


def test_measure_speed_times_the_model_on_synthetic_photos(tiny_embedder):
    record = measure_speed(tiny_embedder, images=6, batch_size=4, size=(96, 64))
    assert record.images_per_second > 0 and record.images == 6 and record.device == "cpu"
    assert record.measured_at.endswith("+00:00")
    with pytest.raises(ValueError):
        measure_speed(tiny_embedder, images=0)


def test_speeds_are_kept_per_model_in_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LADDERLENS_CACHE", str(tmp_path / "cache"))
    assert speed_file() == (tmp_path / "cache" / "model-speeds.json").resolve()
    assert read_speeds() == {}
    first = SpeedRecord(12.5, "cpu", 16, "2025-01-01T00:00:00+00:00")
    record_speed("starter", first)
    record_speed("openclip:ViT-B-32-256/datacomp-s34b-b86k", SpeedRecord(3.0, "cpu", 16, "t"))
    speeds = read_speeds()
    assert speeds == {"starter": first, DEFAULT_SPEC: SpeedRecord(3.0, "cpu", 16, "t")}
    newer = SpeedRecord(20.0, "cuda", 16, "later")
    record_speed("starter", newer)
    assert read_speeds()["starter"] == newer
    data = json.loads(speed_file().read_text(encoding="utf-8"))
    assert data["version"] == 1 and set(data["models"]) == {"starter", DEFAULT_SPEC}
    assert [p.name for p in speed_file().parent.iterdir()] == ["model-speeds.json"]


def test_an_unreadable_speeds_file_or_entry_is_ignored(tmp_path):
    path = tmp_path / "speeds.json"
    path.write_text("{not json", encoding="utf-8")
    assert read_speeds(path) == {}
    path.write_text(json.dumps([1, 2]), encoding="utf-8")
    assert read_speeds(path) == {}
    good = {"images_per_second": 4, "device": "cpu", "images": 8, "measured_at": "t"}
    bad = [{"images_per_second": "fast"}, {"images_per_second": -1, "device": "cpu", "images": 8}, 7]
    models = {"starter": good, **{f"file:/x{i}": b for i, b in enumerate(bad)}}
    path.write_text(json.dumps({"version": 1, "models": models}), encoding="utf-8")
    assert read_speeds(path) == {"starter": SpeedRecord(4.0, "cpu", 8, "t")}
    record_speed("openclip:ViT-B-32/laion2b_s34b_b79k", SpeedRecord(1.0, "cpu", 8, "t"), path)
    assert set(read_speeds(path)) == {"starter", "openclip:ViT-B-32/laion2b_s34b_b79k"}


def test_measure_and_record_loads_only_what_is_here(tmp_path, tiny_checkpoint):
    path = tmp_path / "speeds.json"
    spec = f"file:{tiny_checkpoint}"
    record = measure_and_record(spec, device="cpu", path=path, images=4)
    assert read_speeds(path) == {spec: record}
    with pytest.raises(ModelUnavailableError, match="not on this computer"):
        measure_and_record("openclip:ViT-B-32/laion2b_s34b_b79k", device="cpu", path=path)
    assert set(read_speeds(path)) == {spec}


def test_model_choices_combine_the_catalog_the_cache_and_the_speeds(tmp_path):
    cache = tmp_path / "hf"
    fake_hub_cache(cache, find_entry(DEFAULT_SPEC).hf_hub)
    speeds = tmp_path / "speeds.json"
    record_speed(DEFAULT_SPEC, SpeedRecord(9.0, "cpu", 16, "t"), speeds)
    choices = model_choices(cache, speeds)
    assert [c.entry for c in choices] == catalog_entries()
    by_spec = {c.entry.spec: c for c in choices}
    assert by_spec[DEFAULT_SPEC].cached and by_spec[DEFAULT_SPEC].speed.images_per_second == 9.0
    assert not by_spec["openclip:ViT-L-14/datacomp_xl_s13b_b90k"].cached
    assert by_spec["openclip:ViT-L-14/datacomp_xl_s13b_b90k"].speed is None


def test_listing_the_choices_loads_no_model_library(tmp_path):
    """The picker lists the choices in the GUI thread: that must not import torch or open_clip."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(repo)!r})
        from core.model_catalog import model_choices
        assert len(model_choices({str(tmp_path / "hf")!r}, {str(tmp_path / "speeds.json")!r})) > 1
        assert "torch" not in sys.modules, "torch was imported"
        assert "open_clip" not in sys.modules, "open_clip was imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
