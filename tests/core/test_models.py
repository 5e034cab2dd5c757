"""Model specs, identities and loading: local files, the starter model, open_clip's pretrained cache."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from core import models
from core.checkpoints import read_state_dict, save_checkpoint
from core.errors import CheckpointError, ModelError, ModelUnavailableError
from core.models import (
    STARTER_ARCH,
    DownloadProgress,
    ModelIdentity,
    ModelSpec,
    create_architecture,
    default_device,
    load_model,
    register_bundled_configs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("text", "kind", "arch", "tag"),
    [
        ("starter", "starter", STARTER_ARCH, None),
        ("  STARTER ", "starter", STARTER_ARCH, None),
        ("openclip:ViT-B-32-256/datacomp_s34b_b86k", "openclip", "ViT-B-32-256", "datacomp_s34b_b86k"),
        ("openclip:ViT-B-32/LAION2B-s34b-b79k", "openclip", "ViT-B-32", "laion2b_s34b_b79k"),
        ("random:ViT-B-32-256", "random", "ViT-B-32-256", None),
    ],
)
def test_spec_parse_and_canonical_text(text, kind, arch, tag):
    spec = ModelSpec.parse(text)
    assert (spec.kind, spec.arch, spec.tag) == (kind, arch, tag)
    assert ModelSpec.parse(str(spec)) == spec


def test_file_spec_paths_are_absolute_and_arch_optional(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec.parse("file:weights/m.safetensors")
    assert spec.path == tmp_path / "weights" / "m.safetensors"
    assert spec.arch is None
    assert str(spec) == f"file:{tmp_path / 'weights' / 'm.safetensors'}"

    assert ModelSpec("file", path=str(tmp_path / "a.pt")).path == tmp_path / "a.pt"

    named = ModelSpec.parse("file:m.pt#ViT-B-32")
    assert (named.path, named.arch) == (tmp_path / "m.pt", "ViT-B-32")
    assert ModelSpec.parse(str(named)) == named


def test_file_spec_keeps_a_hash_that_is_part_of_an_existing_file_name(tmp_path):
    odd = tmp_path / "run#3"
    odd.write_bytes(b"x")
    assert ModelSpec.parse(f"file:{odd}").path == odd
    assert ModelSpec.parse(f"file:{odd}").arch is None


@pytest.mark.parametrize(
    "text", ["", "openclip:ViT-B-32", "openclip:", "file:", "random:", "clip:xyz", "starter:x"]
)
def test_bad_specs_say_which_forms_exist(text):
    with pytest.raises(ModelError) as info:
        ModelSpec.parse(text)
    assert "openclip:ARCH/TAG" in str(info.value) or "file:PATH" in str(info.value)


# ----------------------------------------------------------------------------- identities


def test_identity_key_is_stable_safe_and_distinct():
    a = ModelIdentity("ViT-B-32-256", "openclip:datacomp_s34b_b86k")
    assert a.key == ModelIdentity("ViT-B-32-256", "openclip:datacomp_s34b_b86k").key
    others = [
        ModelIdentity("ViT-B-32-256", "openclip-datacomp_s34b_b86k"),  # same slug, other identity
        ModelIdentity("ViT-B-32-256", "openclip:datacomp_s34b_b86k", adapter="sha256:0123456789abcdef"),
        ModelIdentity("ViT-B-32", "openclip:datacomp_s34b_b86k"),
        ModelIdentity("x/../../etc", "sha256:00"),
    ]
    keys = {a.key} | {o.key for o in others}
    assert len(keys) == 1 + len(others)
    for key in keys:
        assert all(c.isalnum() or c in "._-" for c in key), key
        assert not key.startswith(".") and len(key) <= 120


def test_identity_dict_round_trip_and_text():
    ident = ModelIdentity("ViT-B-32", "sha256:0011223344556677", adapter="sha256:8899aabbccddeeff")
    assert ModelIdentity.from_dict(json.loads(json.dumps(ident.to_dict()))) == ident
    assert "ViT-B-32" in str(ident) and "adapter" in str(ident)
    assert ident.with_adapter(None) == ModelIdentity("ViT-B-32", "sha256:0011223344556677")
    assert "random" in str(ModelIdentity("ViT-B-32", "random:seed0"))
    with pytest.raises(ModelError):
        ModelIdentity.from_dict({"arch": "ViT-B-32"})
    with pytest.raises(ModelError):
        ModelIdentity.from_dict({"arch": "ViT-B-32", "weights": "x", "adapter": 3})


# ----------------------------------------------------------------------------- registry, device, imports


def test_importing_specs_and_errors_does_not_import_torch():
    code = "import sys, core.errors, core.models, core.checkpoints; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr or "torch was imported"


def test_bundled_configs_are_registered_once():
    register_bundled_configs()
    register_bundled_configs()
    bundled = sorted(
        p.stem
        for p in models.RESOURCES_MODELS.glob("*.json")
        if "embed_dim" in json.loads(p.read_text(encoding="utf-8"))  # model configs, not gate files
    )
    if not bundled:
        pytest.skip("no bundled model configs yet")
    assert set(bundled) <= set(open_clip.list_models())
    paths = open_clip.factory._MODEL_CONFIG_PATHS
    assert paths.count(models.RESOURCES_MODELS) == 1


def test_an_extra_config_file_is_registered_under_its_stem(tmp_path):
    from tests.conftest import TINY_CONFIG

    path = tmp_path / "ladderlens-test-extra.json"
    path.write_text(json.dumps(TINY_CONFIG))
    models.register_configs(path)
    assert open_clip.get_model_config("ladderlens-test-extra") == TINY_CONFIG
    assert open_clip.factory._MODEL_CONFIG_PATHS.count(models.RESOURCES_MODELS) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("{not json", "not readable JSON"),
        ('{"arch": "ViT-B-32"}', "not an open_clip model config"),
    ],
)
def test_a_bad_extra_config_file_is_a_clear_error(tmp_path, content, expected):
    path = tmp_path / "ladderlens-test-bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelError, match=expected):
        models.register_configs(path)
    assert "ladderlens-test-bad" not in open_clip.list_models()


def test_configs_given_by_name_are_registered_without_a_file_left(tmp_path, monkeypatch):
    from tests.conftest import TINY_CONFIG

    monkeypatch.setattr(models.tempfile, "tempdir", str(tmp_path))
    models.register_configs({"ladderlens-test-by-name": TINY_CONFIG})
    assert open_clip.get_model_config("ladderlens-test-by-name") == TINY_CONFIG
    assert list(tmp_path.iterdir()) == []  # open_clip kept the config, not the file
    other = json.loads(json.dumps(TINY_CONFIG))
    other["embed_dim"] = 16
    models.register_configs({"ladderlens-test-by-name": other})  # a name already known stays as it is
    assert open_clip.get_model_config("ladderlens-test-by-name")["embed_dim"] == TINY_CONFIG["embed_dim"]


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_default_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert default_device().type == expected


def test_unknown_architecture_lists_close_names():
    with pytest.raises(ModelError, match="ViT-B-32-256"):
        create_architecture("ViT-B-32-265")


# ----------------------------------------------------------------------------- local files


def test_file_model_loads_its_weights_and_names_them_by_hash(tiny_arch, tiny_checkpoint):
    loaded = load_model(f"file:{tiny_checkpoint}", device="cpu")
    expected_hash = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()[:16]
    assert loaded.identity == ModelIdentity(tiny_arch, f"sha256:{expected_hash}")
    assert not loaded.model.training
    saved = read_state_dict(tiny_checkpoint)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert loaded.tokenizer(["a cat"]).shape == (1, 16)


def test_torch_state_dict_needs_an_architecture_name(tiny_arch, tiny_checkpoint, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(read_state_dict(tiny_checkpoint), path)
    with pytest.raises(ModelError, match="#ARCH"):
        load_model(f"file:{path}", device="cpu")
    loaded = load_model(f"file:{path}#{tiny_arch}", device="cpu")
    assert loaded.identity.arch == tiny_arch


def test_architecture_can_come_from_a_json_beside_the_file(tiny_arch, tiny_checkpoint, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(read_state_dict(tiny_checkpoint), path)
    (tmp_path / "weights.json").write_text(json.dumps({"arch": tiny_arch}))
    assert load_model(f"file:{path}", device="cpu").identity.arch == tiny_arch


def test_a_whole_config_beside_the_file_is_registered(tiny_arch, tiny_checkpoint, tmp_path):
    from tests.conftest import TINY_CONFIG

    path = tmp_path / "ladderlens-test-beside.bin"
    torch.save(read_state_dict(tiny_checkpoint), path)
    (tmp_path / "ladderlens-test-beside.json").write_text(json.dumps(TINY_CONFIG))
    assert load_model(f"file:{path}", device="cpu").identity.arch == "ladderlens-test-beside"


def _other_width_checkpoint(tmp_path, arch: str, register) -> Path:
    """Weights of ``arch``: the tiny architecture with another embedding width, its config
    registered with ``register``."""
    from tests.conftest import TINY_CONFIG

    other = json.loads(json.dumps(TINY_CONFIG))
    other["embed_dim"] = 16
    config = tmp_path / f"{arch}.json"
    config.write_text(json.dumps(other))
    register(config)
    path = tmp_path / f"{arch}.safetensors"
    save_checkpoint(create_architecture(arch), path, arch)
    return path


def test_wrong_architecture_is_refused_with_what_to_do(tiny_arch, tmp_path):
    path = _other_width_checkpoint(tmp_path, "ladderlens-test-other", open_clip.add_model_config)

    with pytest.raises(CheckpointError) as info:
        load_model(f"file:{path}#{tiny_arch}", device="cpu")
    message = str(info.value)
    assert str(path) in message and tiny_arch in message
    assert "another shape" in message and "text_projection" in message


def test_damaged_file_is_refused_through_load_model(tiny_checkpoint, tmp_path):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(f"file:{path}", device="cpu")


def test_missing_file_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_model(f"file:{tmp_path / 'gone.safetensors'}", device="cpu")


def test_preprocessing_recorded_in_the_file_is_used(tiny_arch, tmp_path):
    model = create_architecture(
        tiny_arch, preprocess_cfg={"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    )
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, tiny_arch)
    loaded = load_model(f"file:{path}", device="cpu")
    normalize = loaded.preprocess.transforms[-1]
    assert tuple(normalize.mean) == (0.5, 0.5, 0.5) and tuple(normalize.std) == (0.25, 0.25, 0.25)


# ----------------------------------------------------------------------------- random and starter


def test_random_weights_only_when_asked_and_said(tiny_arch):
    a = load_model(f"random:{tiny_arch}", device="cpu")
    b = load_model(f"random:{tiny_arch}", device="cpu")
    assert a.identity.is_random and "random" in str(a.identity)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )


def test_missing_starter_says_how_to_get_a_model(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "RESOURCES_MODELS", tmp_path)
    with pytest.raises(ModelUnavailableError) as info:
        load_model("starter", device="cpu")
    message = str(info.value)
    assert "starter model is not installed" in message
    assert "file:PATH" in message and "openclip:ARCH/TAG" in message


@pytest.mark.skipif(not models.starter_weights_path().is_file(), reason="starter weights not trained yet")
def test_installed_starter_loads():
    loaded = load_model("starter", device="cpu")
    assert loaded.identity.arch == STARTER_ARCH
    assert loaded.identity.weights.startswith("sha256:")


# ----------------------------------------------------------------------------- open_clip pretrained


HUB_REPO = "ladderlens-test/tiny-clip"
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(cache_dir: Path, repo: str, filename: str, source: Path) -> Path:
    """Lay ``source`` out as Hugging Face's cache does after a download of ``repo``/``filename``."""
    repo_dir = cache_dir / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(HUB_REVISION)
    snapshot = repo_dir / "snapshots" / HUB_REVISION
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(source.read_bytes())
    return snapshot / filename


@pytest.fixture
def tiny_pretrained_tag(tiny_arch, monkeypatch):
    """Register pretrained tags for the tiny architecture in open_clip's registry (test-only)."""
    from open_clip import pretrained

    entry = {
        "hubtag": {"hf_hub": f"{HUB_REPO}/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
        "quicktag": {"hf_hub": f"{HUB_REPO}/", "quick_gelu": True},
        "bintag": {"hf_hub": f"{HUB_REPO}-bin/weights.bin"},
        "absent": {"hf_hub": "ladderlens-test/never-downloaded/"},
    }
    monkeypatch.setitem(pretrained._PRETRAINED, tiny_arch, entry)
    return tiny_arch


def test_pretrained_tag_loads_from_the_hub_cache_offline(tiny_pretrained_tag, tiny_checkpoint, tmp_path):
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME

    cached = _hub_cache(tmp_path / "hub", HUB_REPO, HF_SAFE_WEIGHTS_NAME, tiny_checkpoint)
    assert models.resolve_pretrained_file(tiny_pretrained_tag, "hubtag", cache_dir=tmp_path / "hub") == cached

    loaded = load_model(f"openclip:{tiny_pretrained_tag}/HubTag", device="cpu", cache_dir=tmp_path / "hub")
    assert loaded.identity == ModelIdentity(tiny_pretrained_tag, "openclip:hubtag")
    saved = read_state_dict(tiny_checkpoint)
    assert all(torch.equal(t, saved[n]) for n, t in loaded.model.state_dict().items())
    normalize = loaded.preprocess.transforms[-1]
    assert tuple(normalize.mean) == (0.5, 0.5, 0.5)  # the tag's preprocessing, not the default


def test_pretrained_torch_file_in_the_cache_is_found(tiny_pretrained_tag, tiny_checkpoint, tmp_path):
    state = tmp_path / "state.bin"
    torch.save(read_state_dict(tiny_checkpoint), state)
    _hub_cache(tmp_path / "hub", f"{HUB_REPO}-bin", "weights.bin", state)
    loaded = load_model(f"openclip:{tiny_pretrained_tag}/bintag", device="cpu", cache_dir=tmp_path / "hub")
    assert loaded.identity.weights == "openclip:bintag"


def test_quick_gelu_tags_get_quick_gelu(tiny_pretrained_tag, tiny_checkpoint, tmp_path):
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME
    from open_clip.transformer import QuickGELU

    _hub_cache(tmp_path / "hub", HUB_REPO, HF_SAFE_WEIGHTS_NAME, tiny_checkpoint)
    quick = load_model(f"openclip:{tiny_pretrained_tag}/quicktag", device="cpu", cache_dir=tmp_path / "hub")
    plain = load_model(f"openclip:{tiny_pretrained_tag}/hubtag", device="cpu", cache_dir=tmp_path / "hub")
    assert any(isinstance(m, QuickGELU) for m in quick.model.modules())
    assert not any(isinstance(m, QuickGELU) for m in plain.model.modules())


def test_uncached_pretrained_offline_names_the_options(tiny_pretrained_tag, tmp_path):
    with pytest.raises(ModelUnavailableError) as info:
        load_model(f"openclip:{tiny_pretrained_tag}/absent", device="cpu", cache_dir=tmp_path / "empty")
    message = str(info.value)
    assert "not in the local cache" in message
    assert "'starter'" in message and "file:PATH" in message
    assert f"openclip:{tiny_pretrained_tag}/absent" in message and "connect" in message


def test_uncached_real_model_offline_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailableError, match="ViT-B-32-256/datacomp_s34b_b86k"):
        models.resolve_pretrained_file("ViT-B-32-256", "datacomp_s34b_b86k", cache_dir=tmp_path)


def test_unknown_pretrained_architecture_and_tag_list_close_matches():
    with pytest.raises(ModelError, match="ViT-B-32-256"):
        load_model("openclip:ViT-B-32-265/datacomp_s34b_b86k", device="cpu")
    with pytest.raises(ModelError) as info:
        load_model("openclip:ViT-B-32-256/datacomp_s34b_b68k", device="cpu")
    assert "Did you mean datacomp_s34b_b86k" in str(info.value)


def test_download_progress_reaches_the_callback():
    reports: list[DownloadProgress] = []
    bar_class = models._reporting_bar_class(reports.append)
    bar = bar_class(total=1000, desc="open_clip_model.safetensors", disable=True)
    bar.update(400)
    bar.update(600)
    bar.close()
    assert [(r.done_bytes, r.total_bytes) for r in reports] == [(400, 1000), (1000, 1000)]
    assert reports[-1].fraction == 1.0 and reports[0].name == "open_clip_model.safetensors"


def test_a_tiny_file_naming_a_huge_architecture_fails_before_building_it(tmp_path, monkeypatch):
    """Names and shapes are checked on a skeleton without memory: no real ViT-H-14 is ever built."""
    from safetensors.torch import save_file

    path = tmp_path / "huge.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"arch": "ViT-H-14"})
    built: list[str] = []
    real = models.create_architecture

    def spy(arch, device="cpu", **kw):
        built.append(str(device))
        return real(arch, device, **kw)

    monkeypatch.setattr(models, "create_architecture", spy)
    with pytest.raises(CheckpointError, match="does not fit architecture 'ViT-H-14'"):
        load_model(f"file:{path}", device="cpu")
    assert built == ["meta"]


def test_model_from_weights_checks_on_a_skeleton_and_says_what_the_caller_asks(tiny_arch, tmp_path):
    path = _other_width_checkpoint(tmp_path, "ladderlens-test-other2", models.register_configs)

    with pytest.raises(CheckpointError) as info:
        models.model_from_weights(tiny_arch, path, subject="this model", advice="Do something else.")
    message = str(info.value)
    assert message.startswith(f"{path} does not fit this model: ") and message.endswith("Do something else.")
    assert "#ARCH" not in message

    model = models.model_from_weights("ladderlens-test-other2", path, preprocess_cfg={})
    assert not model.training and model.text_projection.shape[1] == 16


def test_invalid_recorded_preprocessing_is_a_clear_error(tiny_arch, tiny_checkpoint, tmp_path):
    from safetensors.torch import save_file

    state = read_state_dict(tiny_checkpoint)
    path = tmp_path / "odd-preprocess.safetensors"
    bad = {"mean": [0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize_mode": "sideways"}
    save_file(state, str(path), metadata={"arch": tiny_arch, "preprocess_cfg": json.dumps(bad)})
    with pytest.raises(CheckpointError, match="preprocessing settings are invalid"):
        load_model(f"file:{path}", device="cpu")
