"""Search on a small scene-world library with the bundled starter model, family by family: what a
user is told ("no exact match", the words the model does not know) and how true it is."""

from __future__ import annotations

import pytest

from trainer.query_families import FAMILIES, HAS_MATCH, evaluate, make_queries, scene_library, summarise

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    lib, scenes, where = scene_library(
        root / "photos", root / "library", "starter", 300, seed=77, photo_size=(96, 72)
    )
    with lib:
        queries = make_queries(scenes, 12, seed=78)
        rows = evaluate(lib, scenes, where, queries)
    return {f: summarise([r for r in rows if r["family"] == f]) for f in FAMILIES}, rows


def test_every_family_is_asked(measured):
    by_family, _ = measured
    assert all(by_family[f]["queries"] >= 10 for f in FAMILIES)
    assert all(by_family[f]["with_match"] == by_family[f]["queries"] for f in HAS_MATCH)
    assert all(by_family[f]["with_match"] == 0 for f in FAMILIES if f not in HAS_MATCH)


def test_a_photo_that_is_there_is_not_called_missing(measured):
    by_family, _ = measured
    for family in HAS_MATCH:
        assert by_family[family]["wrong_no_match"] <= 0.1, family


def test_words_outside_the_models_world_are_named_and_never_match(measured):
    by_family, rows = measured
    assert by_family["unknown"]["right_no_match"] == 1.0
    assert by_family["nonsense"]["right_no_match"] == 1.0
    for row in rows:
        if row["family"] in ("unknown", "nonsense"):
            assert row["unknown_words"], row["text"]
        elif row["family"] in HAS_MATCH:
            assert not row["unknown_words"], row["text"]


def test_missing_compositions_are_mostly_called_missing(measured):
    by_family, _ = measured
    for family in ("heldout", "near_count", "near_colour", "near_kind"):
        assert by_family[family]["right_no_match"] >= 0.6, family


def test_best_matches_are_matches(measured):
    by_family, _ = measured
    for family in HAS_MATCH:
        assert by_family[family]["tier0_precision"] >= 0.8, family
        assert by_family[family]["R@1"] >= 0.8, family


def test_tiers_are_ordered_by_true_relevance(measured):
    _, rows = measured
    ordered = [r["tiers_ordered"] for r in rows if r["tiers_ordered"] is not None]
    assert sum(ordered) / len(ordered) >= 0.85
