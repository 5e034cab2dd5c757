"""Fine-tune profiles: saved versions, refusal of another base, and the library serving through one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

import numpy as np
import pytest

import core.profile_serving as profile_serving_module
from core.adapters import Adapter
from core.errors import ProfileError
from core.library import Library
from core.models import ModelIdentity
from core.profiles import ProfileStore, clean_profile_name, suggest_profile_name
from tests.core.imagefiles import write_jpeg
from tests.core.test_adapters import trained_side, unit_rows

DIM = 32  # the tiny test model's width


def adapter(seed: int = 0, blend: float = 1.0) -> Adapter:
    return Adapter(trained_side(DIM, 8, seed), trained_side(DIM, 8, seed + 100), blend)


BASE = ModelIdentity("some-arch", "sha256:0123456789abcdef")


def write_photos(root):
    for i in range(10):
        write_jpeg(root / f"img_{i:02d}.jpg", (48, 40), seed=i)
    return root


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_checkpoint):
    """A library of 10 indexed photos, made once; tests use copies of its folder."""
    base = tmp_path_factory.mktemp("profiles")
    photos = write_photos(base / "photos")
    with Library.open(base / "lib", model=f"file:{tiny_checkpoint}") as library:
        library.add_folder(photos)
        library.index()
    return base / "lib"


@pytest.fixture
def lib(tmp_path, tiny_checkpoint, indexed):
    shutil.copytree(indexed, tmp_path / "lib")
    library = Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}")
    yield library
    library.close()


@contextlib.contextmanager
def library_on_boats(tmp_path, tiny_checkpoint):
    """A library of indexed photos in ``tmp_path / "lib"`` serving through profile "boats"."""
    photos = write_photos(tmp_path / "photos")
    with Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}") as lib:
        lib.add_folder(photos)
        lib.index()
        save(lib)
        lib.use_profile("boats")
        yield lib, photos


def save(lib: Library, name: str = "boats", seed: int = 0, blend: float = 1.0):
    return lib.profile_store.save_adapter(name, adapter(seed, blend), lib.embedder().identity, lib.model_spec)


# ---------------------------------------------------------------------------------------- the store


def test_names_are_checked_and_suggested():
    assert clean_profile_name("  Grandma's Garden ".replace("'", "")) == "grandmas-garden"
    with pytest.raises(ProfileError, match="cannot name a profile"):
        clean_profile_name("../escape")
    with pytest.raises(ProfileError):
        clean_profile_name("")
    assert suggest_profile_name("Tagged Photos 2019!") == "tagged-photos-2019"
    assert suggest_profile_name("???") == "my-photos"


def test_versions_are_kept_and_listed(tmp_path):
    store = ProfileStore(tmp_path)
    assert store.list() == []
    first = store.save_adapter("Boats", adapter(1), BASE, "file:/base.safetensors", {"note": 1})
    second = store.save_adapter("boats", adapter(2, 0.5), BASE, "file:/base.safetensors")
    other = store.save_adapter("lisbon", adapter(3), BASE, "file:/base.safetensors")
    assert [(p.name, p.version) for p in store.list()] == [("boats", 1), ("boats", 2), ("lisbon", 1)]
    assert store.get("boats") == second
    assert store.get("BOATS", 1) == first
    assert first.report == {"note": 1}
    assert second.blend == 0.5 and first.adapter_id != second.adapter_id
    assert store.load_adapter(second).digest == adapter(2, 0.5).digest
    with pytest.raises(ProfileError, match="no version 7"):
        store.get("boats", 7)
    with pytest.raises(ProfileError, match=r"no profile named 'cars'.*boats, lisbon"):
        store.get("cars")
    store.delete("boats", 1)
    assert [p.version for p in store.list("boats")] == [2]
    store.delete("lisbon")
    assert store.names() == ["boats"]
    assert not (store.dir / other.name).exists()


def test_a_version_without_its_description_is_not_listed(tmp_path):
    store = ProfileStore(tmp_path)
    info = store.save_adapter("boats", adapter(1), BASE, "file:/b.safetensors")
    (info.weights.parent / "v1.json").write_text("{ not json", encoding="utf-8")
    (info.weights.parent / "v2.safetensors").write_bytes(b"half written")  # a crash before its JSON
    assert store.list() == []


def test_changed_weights_are_detected(tmp_path):
    store = ProfileStore(tmp_path)
    info = store.save_adapter("boats", adapter(1), BASE, "file:/b.safetensors")
    adapter(2).save(info.weights)
    with pytest.raises(ProfileError, match="changed after it was saved"):
        store.load_adapter(info)


def test_another_base_model_is_refused_with_a_message(tmp_path):
    store = ProfileStore(tmp_path)
    info = store.save_adapter("boats", adapter(1), BASE, "openclip:ViT-B-32/laion2b_s34b_b79k")
    store.check_base(info, BASE.with_adapter("something"))  # the adapter part does not matter
    with pytest.raises(ProfileError, match=r"fine-tuned on the model.*Switch the library back to openclip"):
        store.check_base(info, ModelIdentity("some-arch", "sha256:ffffffffffffffff"))


# ---------------------------------------------------------------------------------------- the library


def test_searches_go_through_the_active_profile_and_back(lib):
    base_ids, base_vecs = lib.vectors().photo_matrix()
    plain = lib.search("a red boat", k=5)
    info = save(lib, blend=1.0)
    assert lib.active_profile is None

    progress = []
    lib.use_profile("boats", on_progress=progress.append)
    assert lib.active_profile == info
    assert lib.status().profile == "boats v1"
    assert lib.status().to_dict()["profile"] == "boats v1"
    assert {p.phase for p in progress} >= {"load", "apply", "index", "done"}

    tuned = lib.search("a red boat", k=5)
    expected_query = adapter().apply_text(lib.embedder().encode_texts(["a red boat"]))[0]
    expected = adapter().apply_image(base_vecs) @ expected_query
    best = base_ids[np.argsort(-expected)[:5]]
    assert [h.photo_id for h in tuned.hits] == best.tolist()
    np.testing.assert_allclose([h.score for h in tuned.hits], np.sort(expected)[::-1][:5], atol=1e-5)
    # the base vectors are untouched, and switching back is instant
    np.testing.assert_array_equal(lib.vectors().photo_matrix()[1], base_vecs)
    lib.use_profile(None)
    assert lib.active_profile is None and lib.status().profile is None
    back = lib.search("a red boat", k=5)
    assert [h.photo_id for h in back.hits] == [h.photo_id for h in plain.hits]


def test_profile_survives_reopening_and_follows_indexing(tmp_path, tiny_checkpoint):
    with library_on_boats(tmp_path, tiny_checkpoint) as (_lib, photos):
        pass  # closed while profile "boats" serves
    with Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}") as again:
        assert again.active_profile is not None
        first = again.search("a tree", k=20)
        assert len(first.hits) == 10
        write_jpeg(photos / "new.jpg", (48, 40), seed=77)
        (photos / "img_00.jpg").unlink()
        again.index()
        ids = {h.photo_id for h in again.search("a tree", k=50).hits}
        paths = {again.photo(i).path for i in ids}
        assert str(photos / "new.jpg") in paths
        assert str(photos / "img_00.jpg") not in paths
        assert len(ids) == 10


def test_a_cancelled_switch_leaves_nothing_half_applied(lib, monkeypatch):
    monkeypatch.setattr(profile_serving_module, "PROFILE_APPLY_CHUNK", 3)
    save(lib)
    gen = lib.iter_use_profile("boats")
    phases = [next(gen).phase for _ in range(3)]  # load, apply 0/10, apply 3/10
    assert phases == ["load", "apply", "apply"]
    gen.close()
    assert lib.active_profile is None
    assert lib.status().profile is None
    assert not list((lib.root / "index").glob("*boats*"))  # nothing of it was saved
    plain = lib.search("a kite", k=10).hits
    progress = []
    lib.use_profile("boats", on_progress=progress.append)
    applied = [p for p in progress if p.phase == "apply"]
    assert applied[-1].done == applied[-1].total == 10
    assert lib.active_profile is not None
    tuned = lib.search("a kite", k=10).hits
    assert len(tuned) == 10
    assert not np.allclose(sorted(h.score for h in tuned), sorted(h.score for h in plain), atol=1e-3)


def test_a_profile_of_another_base_is_refused(lib):
    lib.profile_store.save_adapter("other", adapter(), BASE, "file:/elsewhere.safetensors")
    with pytest.raises(ProfileError, match=r"Switch the library back to file:/elsewhere.safetensors"):
        lib.use_profile("other")
    assert lib.active_profile is None


def test_a_profile_of_another_width_is_refused(lib):
    narrow = Adapter(trained_side(16, 4, 0), None)
    lib.profile_store.save_adapter("narrow", narrow, lib.embedder().identity, lib.model_spec)
    with pytest.raises(Exception, match="16-d vectors but the model makes 32-d"):
        lib.use_profile("narrow")
    assert lib.active_profile is None


def test_deleting_the_active_profile_switches_back_and_drops_its_vectors(lib, tiny_checkpoint):
    info = save(lib)
    lib.use_profile("boats")
    key = lib.embedder().identity.with_adapter(info.adapter_id).key
    lib.close()  # waits for the profile index written in the background
    files = list((lib.root / "index").glob(f"{key}.idx*"))
    names = {f.name.removeprefix(key) for f in files if not f.name.endswith(".data")}
    assert names == {".idx", ".idx.content.npz"}
    with Library.open(lib.root, model=f"file:{tiny_checkpoint}") as again:
        again.delete_profile("boats")
        assert again.active_profile is None
        assert again.profiles() == []
        assert not list((again.root / "index").glob(f"{key}.idx*"))
        assert len(again.search("a car", k=50).hits) == 10


def test_a_lost_profile_falls_back_to_the_model(lib):
    info = save(lib)
    lib.use_profile("boats")
    lib.close()
    info.weights.unlink()
    with Library.open(lib.root, model=lib.model_spec) as again:
        assert len(again.search("a car", k=50).hits) == 10  # served by the model, with a warning
        assert again.active_profile is None
        assert json.loads(again.catalog.get_meta("profile") or "null") is None


def test_a_changed_photo_is_transformed_again(tmp_path, tiny_checkpoint):
    with library_on_boats(tmp_path, tiny_checkpoint) as (lib, photos):
        write_jpeg(photos / "img_03.jpg", (48, 40), seed=333)  # same name, new content
        os.utime(photos / "img_03.jpg", ns=(1, 1))
        lib.index()
        photo_id = lib.catalog.photo_by_path(photos / "img_03.jpg").id
        base_vec = lib.vectors().get([lib.catalog.photo_by_path(photos / "img_03.jpg").content_hash])[0]
        served = lib.serving.serving(lib.model_spec).index.get_vectors([photo_id])[0]
        np.testing.assert_allclose(served, adapter().apply_image(base_vec), atol=1e-5)
    with Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}") as again:
        served = again.serving.serving(again.model_spec).index.get_vectors([photo_id])[0]
        np.testing.assert_allclose(served, adapter().apply_image(base_vec), atol=1e-5)


def test_adapted_vectors_are_unit_length():
    x = unit_rows(3, DIM)
    np.testing.assert_allclose(np.linalg.norm(adapter().apply_image(x), axis=1), 1.0, atol=1e-5)


def test_tags_given_in_the_app(lib):
    ids = [h.photo_id for h in lib.search("a boat", k=3).hits]
    assert lib.tags.add(ids[:2], ["Red Kayak"]) == ["red kayak"]
    assert lib.tags.of(ids) == {ids[0]: ("red kayak",), ids[1]: ("red kayak",)}
    assert lib.tags.counts() == {"red kayak": 2}
