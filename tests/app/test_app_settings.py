"""Search history persists in the settings file, newest first, without duplicates."""

from __future__ import annotations

from app.app_settings import QueryHistory, settings_at


def test_history_is_newest_first_deduplicated_and_persisted(tmp_path):
    path = tmp_path / "s.ini"
    history = QueryHistory(settings_at(path), limit=3)
    assert history.add("red car")
    assert not history.add("   ")
    history.add("beach")
    history.add("Red   Car")
    history.add("snow")
    history.add("night")
    assert history.items == ["night", "snow", "Red Car"]
    settings = settings_at(path)
    settings.sync()
    assert QueryHistory(settings_at(path)).items == ["night", "snow", "Red Car"]
    history.clear()
    assert QueryHistory(settings_at(path)).items == []


def test_a_single_item_survives_the_ini_round_trip(tmp_path):
    path = tmp_path / "one.ini"
    history = QueryHistory(settings_at(path))
    history.add("only one")
    assert QueryHistory(settings_at(path)).items == ["only one"]


def test_settings_of_the_wrong_type_are_ignored_not_fatal(tmp_path, caplog):
    path = tmp_path / "bad.ini"
    path.write_text("[search]\nhistory=@Rect(1 2 3 4)\n[view]\ninspector=@Point(1 2)\ndetails=maybe\n")
    with caplog.at_level("WARNING"):
        assert QueryHistory(settings_at(path)).items == []
    assert "ignoring the setting search/history" in caplog.text
