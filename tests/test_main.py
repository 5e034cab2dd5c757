"""The command line: contracts of `index`, `search --json`, `status`, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import main
from tests.conftest import SEARCH_JSON_KEYS
from tests.core.imagefiles import write_jpeg, write_text


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    for i in range(8):
        write_jpeg(root / f"p{i}.jpg", (64, 48), seed=i)
    write_text(root / "broken.jpg")
    return root


@pytest.fixture
def cli(tmp_path, tiny_checkpoint, capsys):
    base = ["--library", str(tmp_path / "lib"), "--model", f"file:{tiny_checkpoint}"]

    def run(*args: str) -> tuple[int, str, str]:
        code = main.main([*args[:1], *base, *args[1:]])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_index_search_json_status(cli, photos):
    code, out, _ = cli("index", str(photos), "--no-progress")
    assert code == 0 and "8 embedded" in out and "1 failed" in out

    code, out, _ = cli("search", "red car at night", "--json", "-k", "5")
    assert code == 0
    data = json.loads(out)  # exactly one JSON object
    assert set(data) == SEARCH_JSON_KEYS
    assert isinstance(data["long_tail"], bool)
    assert len(data["results"]) == 5
    assert all(set(r) == {"path", "score", "z", "tier", "differs", "offline"} for r in data["results"])
    assert all(set(t) == {"rank", "label", "count", "min_score", "max_score"} for t in data["tiers"])
    assert all(Path(r["path"]).is_absolute() for r in data["results"])
    assert [r["score"] for r in data["results"]] == sorted(
        (r["score"] for r in data["results"]), reverse=True
    )

    assert isinstance(data["match_count"], int) and isinstance(data["match_count_capped"], bool)
    matched = sum(t["count"] for t in data["tiers"] if t["label"] == "Best matches")
    assert data["match_count"] >= matched and (data["match_count"] == 0) == data["long_tail"]

    code, out, _ = cli("search", "red car")
    assert code == 0 and "scores" in out
    assert "No exact match" in out or " match" in out.splitlines()[1]

    code, out, _ = cli("status", "--json", "--failures")
    status = json.loads(out)
    assert status["photos"] == 8 and status["indexed"] == 8 and status["failures"] == 1
    assert status["failure_list"][0]["reason"] == "not an image"
    code, out, _ = cli("status")
    assert code == 0 and str(photos) in out


def test_the_match_count_in_words():
    assert main.match_count_text(1, False, 50) == "1 photo matches."
    assert main.match_count_text(83, False, 50) == "83 photos match; the best 50 are shown (-k for more)."
    assert main.match_count_text(12, False, 50) == "12 photos match."
    assert main.match_count_text(1000, True, 60).startswith("At least 1,000 photos match; the best 60")


def test_options_before_or_after_the_command(tmp_path, tiny_checkpoint, photos, capsys):
    lib = str(tmp_path / "lib2")
    assert main.main(["--library", lib, "--model", f"file:{tiny_checkpoint}", "index", str(photos)]) == 0
    capsys.readouterr()
    assert main.main(["search", "boat", "--json", "--library", lib, "-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3


def test_clear_errors_not_tracebacks(cli, tmp_path, capsys):
    code, _, err = cli("index", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err and "Traceback" not in err
    code, _, err = cli("search", "")
    assert code == 1 and "error:" in err
    with pytest.raises(SystemExit) as exc:
        main.main(["search", "x", "-k", "0"])
    assert exc.value.code == 2
    assert "expected a number >= 1" in capsys.readouterr().err


def test_bad_checkpoint_is_a_clear_error(tmp_path, photos, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    code = main.main(
        ["index", str(photos), "--library", str(tmp_path / "l"), "--model", f"file:{bad}#ViT-B-32"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "error:" in err and "Traceback" not in err


def test_missing_starter_or_offline_model_says_what_to_do(tmp_path, photos, capsys):
    code = main.main(
        [
            "index",
            str(photos),
            "--library",
            str(tmp_path / "l"),
            "--model",
            "openclip:ViT-B-32/laion2b_s34b_b79k",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "file:" in err or "starter" in err  # names the alternatives


def test_no_command_opens_the_app_with_the_common_options(monkeypatch, tmp_path):
    import app.main

    calls = []
    monkeypatch.setattr(app.main, "run", lambda argv: calls.append(argv) or 0)
    assert main.main([]) == 0
    assert main.main(["gui", "--library", str(tmp_path), "--model", "starter"]) == 0
    assert calls == [[], ["--library", str(tmp_path), "--model", "starter"]]


def test_hostile_file_names_are_escaped_in_text_and_round_trip_in_json(cli, tmp_path):
    """A name with terminal escape codes and bytes that are not UTF-8: plain output shows escapes
    (never the raw control characters), --json stays valid UTF-8 and gives the name's bytes back."""
    import os

    root = tmp_path / "hostile"
    root.mkdir()
    name = b"evil\x1b[31mred\x07\xff.jpg"
    write_jpeg(Path(os.fsdecode(os.path.join(os.fsencode(root), name))), (40, 30), seed=1)
    assert cli("index", str(root), "--no-progress")[0] == 0

    code, out, _ = cli("search", "a red car", "-k", "3")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b[31mred\\x07\\xff.jpg" in out

    code, out, _ = cli("search", "a red car", "-k", "3", "--json")
    assert code == 0
    out.encode("utf-8")  # valid UTF-8 (no lone surrogates left in the text)
    data = json.loads(out)
    paths = [os.fsencode(r["path"]) for r in data["results"]]
    assert os.path.join(os.fsencode(root.resolve()), name) in paths


def test_a_search_starting_with_a_minus_gets_a_hint(capsys):
    with pytest.raises(SystemExit) as exc:
        main.main(["search", "-people"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: -people" in err and "ladderlens search -- 'beach -people'" in err


def test_results_from_an_unreachable_folder_are_marked(cli, photos, tmp_path):
    """A folder moved away (or an unplugged drive) keeps its photos, and search says they are offline."""
    assert cli("index", str(photos), "--no-progress")[0] == 0
    photos.rename(tmp_path / "moved-away")
    code, out, _ = cli("index", "--no-progress")
    assert code == 0 and "offline (photos kept)" in out
    code, out, _ = cli("search", "a red car", "-k", "3", "--json")
    assert code == 0 and all(r["offline"] for r in json.loads(out)["results"])
    code, out, _ = cli("search", "a red car", "-k", "3")
    assert out.count("[offline: its folder is not reachable now]") == 3


def test_a_moved_folder_is_recognised_and_re_pointed(cli, photos, tmp_path):
    assert cli("index", str(photos), "--no-progress")[0] == 0
    moved = tmp_path / "renamed photos"
    photos.rename(moved)
    assert cli("index", "--no-progress")[0] == 0  # the old place is offline now, its photos kept
    code, out, _ = cli("index", str(moved), "--no-progress")
    assert code == 0 and "holds the photos of the offline library folder" in out
    assert "0 embedded" in out and "8 unchanged" in out  # vectors and ids are kept: nothing to redo
    code, out, _ = cli("status", "--json")
    folders = json.loads(out)["folders"]
    assert [(f["path"], f["state"], f["photos"]) for f in folders] == [(str(moved.resolve()), "online", 8)]
    code, out, _ = cli("search", "a red car", "-k", "8", "--json")
    results = json.loads(out)["results"]
    assert len(results) == 8 and all(
        r["path"].startswith(str(moved.resolve())) and not r["offline"] for r in results
    )


def test_a_copy_is_added_as_new_when_asked(cli, photos, tmp_path):
    import shutil

    assert cli("index", str(photos), "--no-progress")[0] == 0
    copy = tmp_path / "copy"
    shutil.copytree(photos, copy)
    shutil.rmtree(photos)
    cli("index", "--no-progress")
    code, out, _ = cli("index", str(copy), "--no-relocate", "--no-progress")
    assert code == 0 and "holds the photos" not in out
    code, out, _ = cli("status", "--json")
    assert sorted(f["state"] for f in json.loads(out)["folders"]) == ["offline", "online"]


def test_a_folder_emptied_on_purpose_can_be_forgotten(cli, photos):
    assert cli("index", str(photos), "--no-progress")[0] == 0
    for path in list(photos.iterdir()):
        path.unlink()
    code, out, _ = cli("index", "--no-progress")
    assert code == 0 and "offline (photos kept)" in out and "--forget-missing" in out  # an unplugged drive?
    code, out, _ = cli("index", "--forget-missing", "--no-progress")
    assert code == 0 and "8 removed" in out and "offline" not in out
    code, out, _ = cli("status", "--json")
    assert [(f["state"], f["photos"]) for f in json.loads(out)["folders"]] == [("online", 0)]


def test_search_filters_and_not_like_from_the_command_line(cli, photos, tmp_path):
    other = tmp_path / "other"
    for i in range(3):
        write_jpeg(other / f"o{i}.jpg", (64, 48), seed=40 + i)
    assert cli("index", str(photos), "--no-progress")[0] == 0
    assert cli("index", str(other), "--no-progress")[0] == 0
    code, out, _ = cli("search", "a photo", "--folder", str(other), "--json")
    assert code == 0
    assert sorted(Path(r["path"]).name for r in json.loads(out)["results"]) == ["o0.jpg", "o1.jpg", "o2.jpg"]
    code, out, err = cli("search", "a photo", "--taken-to", "1990-01-01")
    assert code == 0 and "No photo taken up to 1990-01-01." in err
    code, _, err = cli("search", "a photo", "--taken-from", "last week")
    assert code == 1 and "YYYY-MM-DD" in err and "Traceback" not in err
    code, _, err = cli("search", "--image", str(other / "o0.jpg"), "--not-like")
    assert code == 1 and "not like this" in err
    code, out, _ = cli(
        "search", "a photo", "--image", str(other / "o0.jpg"), "--not-like", "--json", "-k", "3"
    )
    assert code == 0 and len(json.loads(out)["results"]) == 3


def _plain_result(**fields):
    from core.grading import Tier

    tiers = [
        Tier(1, "Best matches", 1, 0.8, 0.8, 3.0, 3.0, level=0),
        Tier(2, "One detail differs", 2, 0.5, 0.6, 2.0, 2.5, level=1),
    ]
    hits = [
        SimpleNamespace(score=0.8, z=3.0, tier=1, differs=(), path="/p/match.jpg", offline=False),
        SimpleNamespace(score=0.6, z=2.5, tier=2, differs=("colour",), path="/p/blue.jpg", offline=False),
        SimpleNamespace(score=0.5, z=2.0, tier=2, differs=(), path="/p/plain.jpg", offline=False),
    ]
    values = dict(
        query="a red car",
        model="m",
        unknown_words=(),
        long_tail=False,
        tiers=tiers,
        hits=hits,
        match_count=1,
        match_count_capped=False,
        details_checked=True,
    )
    return SimpleNamespace(**(values | fields))


def test_each_result_says_what_it_gets_wrong_and_when_nothing_was_found():
    """A tier is named for most of its photos: a photo in it with nothing found wrong says so."""
    lines = main.format_result(_plain_result()).splitlines()

    def line(name: str) -> str:
        (found,) = [ln for ln in lines if f"/p/{name}" in ln]
        return found

    assert line("match.jpg").endswith("/p/match.jpg")  # a best match: nothing to say
    assert line("blue.jpg").endswith("/p/blue.jpg  (colour differs)")
    assert line("plain.jpg").endswith("/p/plain.jpg  (no difference found)")
    # A tier's score range; one photo has a score, not a range from a number to itself.
    assert "\nBest matches: 1 photo (score 0.800)" in "\n".join(lines)
    assert "One detail differs: 2 photos (scores 0.500 to 0.600)" in lines
    # Scores alone (no details checked), or words the model does not know: no such note.
    for result in (_plain_result(details_checked=False), _plain_result(unknown_words=("dog",))):
        assert "no difference found" not in main.format_result(result)
