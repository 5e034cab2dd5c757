"""Fine-tuning on tagged folders: data, split, adapter training, guards, bad input, the library end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.errors import FinetuneError, ProfileError
from core.library import Library
from trainer.finetune import (
    FinetuneConfig,
    FinetuneProgress,
    finetune,
    format_report,
    iter_finetune,
    iter_train_adapter,
    save_profile,
)
from trainer.finetune_data import iter_prepare, split_by_group
from trainer.tagged_world import write_tagged_tree

DIM = 32
PLACES = ["praia", "chamonix", "lisbon", "garden"]
THINGS = ["kayak", "volvo", "oak"]


def synthetic(n: int, seed: int = 0):
    """Photos tagged (place, thing) whose image vectors follow their tags, and a frozen text encoder
    that knows the tag words but puts them in directions unrelated to the images."""
    rng = np.random.default_rng(seed)
    words = PLACES + THINGS
    visual = {w: rng.normal(size=DIM) for w in words}
    textual = {w: rng.normal(size=DIM) for w in words}
    tags, image = [], []
    for _ in range(n):
        tag_set = (PLACES[rng.integers(len(PLACES))], THINGS[rng.integers(len(THINGS))])
        tags.append(tag_set)
        image.append(sum(visual[w] for w in tag_set) + 0.6 * rng.normal(size=DIM))
    image = np.array(image, np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)

    def encode(texts):
        out = []
        for text in texts:
            noise = np.random.default_rng(abs(hash(text)) % 2**32).normal(size=DIM) * 0.3
            out.append(sum((textual[w] for w in words if w in text), np.zeros(DIM)) + noise)
        out = np.array(out, np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return tags, image, encode


def drive(gen):
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            return stop.value, records


def test_split_keeps_every_tag_set_in_training_and_holds_some_out():
    groups = np.repeat(np.arange(6), [1, 2, 5, 10, 20, 40])
    split = split_by_group(groups, 0.15, 0.15, seed=0)
    parts = [split.train, split.val, split.test]
    assert sum(len(p) for p in parts) == len(groups)
    assert len(np.unique(np.concatenate(parts))) == len(groups)
    assert len(split.val) >= 1 and len(split.test) >= 1
    for g in (1, 2, 3, 4, 5):  # groups of two or more always keep a photo for training
        assert np.isin(np.flatnonzero(groups == g), split.train).any()
    assert 0.2 < (len(split.val) + len(split.test)) / len(groups) < 0.4


def test_adapter_learns_the_vocabulary_and_reports_before_and_after():
    tags, image, encode = synthetic(240)
    config = FinetuneConfig(epochs=8, batch_size=12, patience=8, general_scenes=0, seed=1)
    data, prep = drive(iter_prepare(tags, image, encode, config))
    assert {p.phase for p in prep} == {"captions"}
    (adapter, report), records = drive(iter_train_adapter(data, config))
    before, after = report["heldout"]["base"], report["heldout"]["finetuned"]
    assert after["R@1"] > before["R@1"] + 0.2
    assert after["CS"] > before["CS"]
    assert report["blend"] in config.blends and report["blend"] > 0
    assert report["split"]["test"] == before["photos"]
    assert [r.epoch for r in records if r.phase == "validate"] == list(range(9))
    steps = [r for r in records if r.phase == "train"]
    assert steps[-1].done == steps[-1].total and all(np.isfinite(r.loss) for r in steps)
    # the exported adapter gives the reported numbers
    test = data.pools["test"]
    img = adapter.apply_image(data.image[test.items])
    txt = adapter.apply_text(data.query_vecs[test.queries])
    from trainer.finetune_eval import pool_metrics

    again = pool_metrics(img, txt, test.relevance, test.gt, config.cs_k)
    assert again["R@1"] == pytest.approx(after["R@1"])
    text = format_report(report)
    assert "held-out, one-tag queries" in text and "held-out, tag-set queries" in text and "change" in text
    assert report["heldout_tags"]["finetuned"]["R@1"] > report["heldout_tags"]["base"]["R@1"]
    # the plain-words part: a clear gain, per tag too, measured against noise
    change = report["heldout_change"]
    assert change["queries"] == before["queries"] and change["low"] > 0
    assert text.startswith("Recommendation: Worth applying.")
    moved = {row["tag"]: row for row in report["tag_changes"]}
    assert moved and set(moved) <= set(PLACES + THINGS)
    tag, row = next(iter(moved.items()))
    assert f"photos tagged '{tag}' now rank {row['base'] - row['finetuned']:.1f} places higher" in text
    json.dumps(report)  # saved with the profile: plain values only


def test_early_stopping_and_the_blend_guard_against_a_useless_fine_tune():
    tags, image, encode = synthetic(120, seed=3)
    rng = np.random.default_rng(0)
    shuffled = [tags[i] for i in rng.permutation(len(tags))]  # tags no longer match the images
    config = FinetuneConfig(epochs=30, batch_size=8, patience=2, general_scenes=0, lr=5e-3)
    data, _ = drive(iter_prepare(shuffled, image, encode, config))
    (_adapter, report), _ = drive(iter_train_adapter(data, config))
    assert report["stopped_early"] and report["epochs_run"] < 30
    assert not format_report(report).startswith("Recommendation: Worth applying")
    val = report["blend_scores"]
    best = max(val.values())
    assert report["blend"] == min(float(b) for b, s in val.items() if s >= best - config.blend_tolerance)


def test_everyday_captions_keep_their_scores_when_asked():
    tags, image, encode = synthetic(200, seed=7)
    anchors = encode([f"a {w} photo of something else {i}" for i, w in enumerate(["plain"] * 64)])
    change = {}
    for preserve in (0.0, 5.0):
        config = FinetuneConfig(epochs=6, batch_size=12, patience=6, general_scenes=0, preserve=preserve)
        data, _ = drive(iter_prepare(tags, image, encode, config))
        (adapter, report), _ = drive(iter_train_adapter(data, config, None, anchors))
        before = anchors @ data.image.T
        after = adapter.apply_text(anchors) @ adapter.apply_image(data.image).T
        change[preserve] = float(np.abs(after - before).mean())
        assert report["heldout"]["finetuned"]["score"] >= report["heldout"]["base"]["score"] - 0.05
    assert change[5.0] < 0.5 * change[0.0]


def test_triplet_and_infonce_objectives_train_too():
    tags, image, encode = synthetic(60, seed=5)
    for loss in ("triplet", "infonce", "infonce+0.5*adaptive"):
        config = FinetuneConfig(epochs=1, batch_size=8, general_scenes=0, loss=loss, caption_variants=2)
        data, _ = drive(iter_prepare(tags, image, encode, config))
        (_adapter, report), _ = drive(iter_train_adapter(data, config))
        assert report["epochs_run"] == 1


def test_settings_are_checked():
    with pytest.raises(FinetuneError, match="unknown loss"):
        FinetuneConfig(loss="hinge").validate()
    with pytest.raises(FinetuneError, match="mode"):
        FinetuneConfig(mode="lora").validate()
    with pytest.raises(FinetuneError, match="epochs"):
        FinetuneConfig(epochs=0).validate()


# ------------------------------------------------------------------------------ with a library


@pytest.fixture(scope="module")
def tagged_library(tmp_path_factory, tiny_checkpoint):
    """A tagged tree of 60 scene photos, indexed with the tiny model (made once; copy to change)."""
    base = tmp_path_factory.mktemp("tagged")
    write_tagged_tree(base / "Tagged", 60, seed=2, size=(32, 32))
    with Library.open(base / "lib", model=f"file:{tiny_checkpoint}") as lib:
        lib.add_folder(base / "Tagged")
        lib.index()
    return base


@pytest.fixture
def lib(tagged_library, tmp_path, tiny_checkpoint):
    shutil.copytree(tagged_library / "lib", tmp_path / "lib")
    library = Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}")
    yield library
    library.close()


FAST = FinetuneConfig(epochs=2, batch_size=16, general_scenes=0, min_photos=4, caption_variants=3)


def test_fine_tune_a_library_save_and_use_the_profile(lib, tagged_library):
    records: list[FinetuneProgress] = []
    config = FinetuneConfig(epochs=2, batch_size=16, general_scenes=12, caption_variants=3)
    result = finetune(lib, tagged_library / "Tagged", config, on_progress=records.append)
    phases = [r.phase for r in records]
    for phase in ("scan", "match", "captions", "general", "train", "validate", "blend", "report", "done"):
        assert phase in phases
    summary = result.report["collection"]
    assert summary["photos"] == 60 and summary["not_indexed"] == 0
    assert summary["top_tags"][0][1] >= 60 // 5
    assert set(result.report["general"]) == {"base", "finetuned", "change"}
    assert result.report["general"]["change"]["queries"] == 12
    assert list((lib.root / "profiles" / ".general").glob("*.npz"))  # cached for next time
    assert lib.profiles() == []  # nothing saved until asked

    info = save_profile(lib, result, "tagged")
    assert info.report["heldout"]["base"]["photos"] == result.report["split"]["test"]
    lib.use_profile("tagged")
    assert lib.status().profile == "tagged v1"
    assert len(lib.search("a photo of Lisbon", k=10).hits) == 10


def test_cancelling_a_fine_tune_leaves_nothing(lib, tagged_library):
    gen = iter_finetune(lib, tagged_library / "Tagged", FAST)
    for record in gen:
        if record.phase == "train":
            break
    gen.close()
    assert lib.profiles() == [] and lib.active_profile is None
    assert not (lib.root / "profiles").exists() or not any(
        p.name != ".general" for p in (lib.root / "profiles").iterdir()
    )


def test_photos_not_indexed_yet_are_counted_and_named(lib, tmp_path):
    root = tmp_path / "new"
    write_tagged_tree(root, 8, seed=9, size=(32, 32))
    with pytest.raises(FinetuneError, match=r"None of the 8 tagged photos under .* is indexed yet.*index"):
        finetune(lib, root, FAST)


def test_folders_without_images_one_tag_and_bad_sidecars(lib, tagged_library, tmp_path):
    empty = tmp_path / "empty"
    (empty / "boats" / "red").mkdir(parents=True)
    with pytest.raises(FinetuneError, match="No tagged photos found"):
        finetune(lib, empty, FAST)

    one_tag = tmp_path / "one"
    (one_tag / "Holidays").mkdir(parents=True)
    for path in list((tagged_library / "Tagged").rglob("*.jpg"))[:12]:
        shutil.copyfile(path, one_tag / "Holidays" / path.name)  # same content: indexed already
    with pytest.raises(FinetuneError, match="same tags \\(holidays\\)"):
        finetune(lib, one_tag, FAST)

    # broken sidecars are reported, the rest still trains
    tree = tmp_path / "tree"
    shutil.copytree(tagged_library / "Tagged", tree)
    photos = sorted(tree.rglob("*.jpg"))
    (photos[0].parent / f"{photos[0].name}.xmp").write_text("<x:xmpmeta><broken>", encoding="utf-8")
    (photos[1].parent / f"{photos[1].stem}.xmp").write_bytes(b"x" * 2_000_000)
    (photos[2].parent / "tags.txt").write_text(f"{photos[2].name}: lighthouse\n", encoding="utf-8")
    result = finetune(lib, tree, FAST)
    assert result.report["single_photo_tags"] == ["lighthouse"]
    assert "Warning: tag 'lighthouse' has only one photo" in format_report(result.report)
    problems = dict(result.report["problems"])
    assert "well-formed" in problems[str(photos[0]) + ".xmp"]
    assert "larger than" in problems[str(photos[1].with_suffix(".xmp"))]
    assert result.report["collection"]["photos"] == 60


def test_too_few_photos_are_refused(lib, tagged_library, tmp_path):
    few = tmp_path / "few"
    for i, path in enumerate(sorted((tagged_library / "Tagged").rglob("*.jpg"))[:3]):
        (few / f"tag {i}").mkdir(parents=True)
        shutil.copyfile(path, few / f"tag {i}" / path.name)
    with pytest.raises(FinetuneError, match="Only 3 tagged, indexed photos"):
        finetune(lib, few, FinetuneConfig(general_scenes=0))


def test_user_tags_from_the_app_count(lib, tagged_library, tmp_path):
    from core.tags import UserTags

    plain = tmp_path / "plain"
    plain.mkdir()
    ids = []
    for path in sorted((tagged_library / "Tagged").rglob("*.jpg"))[:20]:
        shutil.copyfile(path, plain / path.name)
        photo = lib.catalog.photo_by_path(path)
        ids.append(photo.id)
    UserTags(lib.catalog).add(ids[:10], ["red kayak"])
    UserTags(lib.catalog).add(ids[10:], ["the cottage"])
    result = finetune(lib, plain, FinetuneConfig(epochs=1, batch_size=4, general_scenes=0, min_photos=4))
    assert dict(result.report["collection"]["top_tags"]) == {"red kayak": 10, "the cottage": 10}
    # without a folder: every photo tagged in the app
    result = finetune(lib, None, FinetuneConfig(epochs=1, batch_size=4, general_scenes=0, min_photos=4))
    assert result.report["collection"]["photos"] == 20


def test_a_result_is_not_saved_onto_another_model(lib, tagged_library, tmp_path):
    result = finetune(lib, tagged_library / "Tagged", FAST)
    from core.models import ModelIdentity

    result.base_identity = ModelIdentity("other-arch", "sha256:0000000000000000")
    with pytest.raises(ProfileError, match="changed"):
        save_profile(lib, result, "x")


def test_root_that_does_not_exist(lib, tmp_path):
    from core.errors import FolderError

    with pytest.raises(FolderError):
        finetune(lib, tmp_path / "missing", FAST)


def test_general_set_needs_no_photos_on_disk(tiny_embedder, tmp_path):
    from trainer.finetune_eval import iter_general_set

    general, records = drive(iter_general_set(tiny_embedder, 10, tmp_path))
    assert general.image.shape == (10, tiny_embedder.dim) and general.text.shape == (10, tiny_embedder.dim)
    assert np.all(np.diag(general.relevance) == 1.0)
    assert records and records[-1].done == 10
    again, records = drive(iter_general_set(tiny_embedder, 10, tmp_path))
    assert records == []  # from the cache
    np.testing.assert_array_equal(again.image, general.image)


def test_multi_positive_infonce_is_clip_loss_with_one_positive_and_rewards_all_positives():
    import torch

    from trainer.losses import InfoNCELoss, multi_positive_nce

    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    eye = torch.eye(6, dtype=torch.bool)
    logits = img @ txt.T / 0.05
    ours = (multi_positive_nce(logits, eye) + multi_positive_nce(logits.T, eye)) / 2
    clip = InfoNCELoss(temperature=0.05)(img, txt)["loss"]
    torch.testing.assert_close(ours, clip)
    both = eye.clone()
    both[0, 1] = True
    assert multi_positive_nce(logits, both) < multi_positive_nce(logits, eye)


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    from trainer.finetune_eval import EarlyStopping

    stopping = EarlyStopping.start({"score": 0.5, "R@1": 0.1}, patience=2, epochs=10)
    assert stopping.history == [{"epoch": 0, "loss": None, "val_score": 0.5, "val_R@1": 0.1}]
    assert stopping.update(1, 0.9, {"score": 0.6}) is True
    assert stopping.update(2, 0.8, {"score": 0.6}) is False  # no gain (ties do not count)
    assert not stopping.stop
    assert stopping.update(3, 0.7, {"score": 0.65}) is True  # a gain resets the count
    assert stopping.update(4, 0.6, {"score": 0.64}) is False
    assert stopping.update(5, 0.5, {"score": 0.60}) is False
    assert stopping.stop and stopping.stopped_early
    summary = stopping.summary()
    assert summary["best_epoch"] == 3 and summary["epochs_run"] == 5 and summary["stopped_early"]
    assert [row["loss"] for row in summary["history"]] == [None, 0.9, 0.8, 0.7, 0.6, 0.5]


def test_early_stopping_at_the_last_epoch_is_not_early():
    from trainer.finetune_eval import EarlyStopping

    stopping = EarlyStopping.start({"score": 0.5}, patience=1, epochs=2)
    stopping.update(1, 1.0, {"score": 0.7})
    stopping.update(2, 1.0, {"score": 0.6})
    assert stopping.stop and not stopping.stopped_early and stopping.best_epoch == 1


def test_choose_blend_takes_the_least_change_within_tolerance():
    from trainer.finetune_eval import choose_blend

    scores = {0.25: 0.40, 0.5: 0.495, 0.75: 0.50, 1.0: 0.49}
    assert choose_blend(scores, tolerance=0.01) == 0.5
    assert choose_blend(scores, tolerance=0.0) == 0.75
    assert choose_blend(scores, tolerance=1.0) == 0.25


def test_thousands_of_distinct_tags_across_the_collection():
    """Every photo in its own dated event folder (plus a shared place): thousands of tags and tag
    sets must still prepare and train, with each tag set counted once."""
    n = 2000
    rng = np.random.default_rng(11)
    tags = [(f"event {i:04d}", PLACES[i % len(PLACES)]) for i in range(n)]
    image = rng.normal(size=(n, DIM)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)

    def encode(texts):
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=DIM) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    config = FinetuneConfig(epochs=1, batch_size=32, general_scenes=0, caption_variants=1)
    data, _ = drive(iter_prepare(tags, image, encode, config))
    assert len(data.tag_sets) == n
    assert len(data.caption_texts) <= config.caption_budget + len(data.caption_sets)
    (_adapter, report), records = drive(iter_train_adapter(data, config))
    assert report["epochs_run"] == 1 and report["tag_sets"] == n
    assert all(np.isfinite(r.loss) for r in records if r.phase == "train")


# ---------------------------------------------------------------------------------------- report


def metrics(r1: float, score: float, **more: float) -> dict[str, float]:
    """A pool_metrics-like row of 40 queries over 30 photos."""
    row = {"R@1": r1, "R@5": 0.8, "R@10": 0.9, "CS": 0.3, "CS_ceiling": 0.9, "CS_k": 30.0, "nDCG@10": 0.5}
    row.update({"mean_rank": 3.0, "queries": 40.0, "photos": 30.0, "score": score, **more})
    return row


def made_report(base: dict, tuned: dict, change: float | None, low: float = 0.0, high: float = 0.0) -> dict:
    report = {"heldout": {"base": base, "finetuned": tuned}, "blend": 0.5, "best_epoch": 3, "epochs_run": 5}
    if change is not None:
        report["heldout_change"] = {"queries": 40.0, "change": change, "low": low, "high": high}
    return report


def test_report_in_words_for_a_gain():
    report = made_report(metrics(0.5, 0.40), metrics(0.7, 0.48, mean_rank=2.1), 0.08, 0.03, 0.13)
    report["tag_changes"] = [{"tag": "beach", "photos": 4, "base": 5.0, "finetuned": 2.7}]
    text = format_report(report)
    assert text.startswith("Recommendation: Worth applying.\n")
    assert "the overall score rose by 0.080 (95% range +0.030 to +0.130): more than noise" in text
    improved = text.split("What improved:")[1].split("What got worse:")[0]
    assert "a right photo comes first in 28 of 40 searches (was 20)" in improved
    assert "photos tagged 'beach' now rank 2.3 places higher on average" in improved
    assert "the first right photo of a search comes at place 2.1 on average (was 3.0)" in improved
    assert "nothing measured got worse" in text
    assert "Unchanged:" in text and "is among the first 5 in 32 of 40 searches (was 32)" in text
    assert "Details" in text and "+0.200" in text  # the table follows


def test_report_in_words_for_no_change_at_all():
    same = metrics(0.5, 0.40)
    text = format_report(made_report(same, dict(same), 0.0))
    assert text.startswith("Recommendation: No gain: not worth applying.\n")
    assert "the overall score did not change: 0.000." in text
    assert "+0.000" not in text and "rose" not in text and "What improved" not in text
    table = text.split("Details")[1]
    assert "change" in table and "0.000" in table


def test_report_in_words_for_a_change_within_noise():
    report = made_report(metrics(0.5, 0.40), metrics(0.525, 0.41), 0.01, -0.02, 0.04)
    text = format_report(report)
    assert text.startswith("Recommendation: No gain: not worth applying.\n")
    assert "moved by +0.010 (95% range -0.020 to +0.040), within noise" in text
    assert "What improved (within noise):" in text
    # below one search's worth (1/40) even when the interval leaves out zero
    report = made_report(metrics(0.5, 0.40), metrics(0.525, 0.41), 0.01, 0.005, 0.02)
    assert format_report(report).startswith("Recommendation: No gain")


def test_report_in_words_for_a_loss():
    report = made_report(metrics(0.5, 0.40), metrics(0.3, 0.34, mean_rank=4.5), -0.06, -0.1, -0.02)
    report["tag_changes"] = [{"tag": "kayak", "photos": 3, "base": 2.0, "finetuned": 3.5}]
    text = format_report(report)
    assert text.startswith("Recommendation: Worse: do not apply.\n")
    assert "the overall score fell by 0.060" in text
    worse = text.split("What got worse:")[1]
    assert "a right photo comes first in 12 of 40 searches (was 20)" in worse
    assert "photos tagged 'kayak' now rank 1.5 places lower on average" in worse


def test_report_without_a_bootstrap_uses_one_search_as_the_noise_floor():
    assert format_report(made_report(metrics(0.5, 0.40), metrics(0.6, 0.45), None)).startswith(
        "Recommendation: Worth applying."
    )
    assert format_report(made_report(metrics(0.5, 0.40), metrics(0.5, 0.42), None)).startswith(
        "Recommendation: No gain"
    )
    assert format_report({}).startswith("Recommendation: No gain")


def test_report_names_a_cost_outside_the_tags_and_single_photo_tags():
    report = made_report(metrics(0.5, 0.40), metrics(0.7, 0.48), 0.08, 0.03, 0.13)
    report["general"] = {
        "base": metrics(0.5, 0.5),
        "finetuned": metrics(0.4, 0.45),
        "change": {"queries": 40.0, "change": -0.05, "low": -0.08, "high": -0.02},
    }
    report["single_photo_tags"] = ["boat", "lighthouse"]
    text = format_report(report)
    assert "But everyday searches unlike your tags got worse" in text
    worse = text.split("What got worse:")[1]
    assert "everyday searches unlike your tags (30 generated scenes)" in worse
    assert "Warning: tags 'boat', 'lighthouse' each have only one photo." in text


def test_noise_is_judged_by_a_paired_bootstrap_and_one_query_s_worth():
    from trainer.finetune_eval import judge_change, paired_change

    before = np.linspace(0, 1, 50)
    same = paired_change(before, before)
    assert same == {"queries": 50.0, "change": 0.0, "low": 0.0, "high": 0.0}
    assert judge_change(same["change"], 50, same["low"], same["high"]) == "none"
    steady = paired_change(before, before + 0.1)
    assert steady["change"] == pytest.approx(0.1) and steady["low"] == pytest.approx(0.1)
    assert judge_change(0.1, 50, steady["low"], steady["high"]) == "gain"
    assert judge_change(-0.1, 50, -0.15, -0.05) == "loss"
    mixed = paired_change(before, before + np.where(np.arange(50) % 2, 0.3, -0.28))
    assert mixed["low"] < 0 < mixed["high"]
    assert judge_change(mixed["change"], 50, mixed["low"], mixed["high"]) == "none"
    assert judge_change(0.015, 50, 0.01, 0.02) == "none"  # under one query's worth (0.02)
    assert judge_change(0.0, 0) == "none"
