"""The finetune and profiles commands."""

from __future__ import annotations

import json
import shutil

import pytest

import main
from core.library import Library
from trainer.tagged_world import write_tagged_tree


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-tagged") / "My Tagged Photos"
    write_tagged_tree(root, 40, seed=6, size=(32, 32))
    return root


def run(capsys, *argv):
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_indexes_trains_saves_and_applies(tmp_path, tagged, tiny_checkpoint, capsys):
    lib = tmp_path / "lib"
    spec = f"file:{tiny_checkpoint}"
    common = ("--library", lib, "--model", spec)
    code, out, err = run(capsys, "finetune", tagged, *common, "--epochs", "2", "--general", "8")
    assert code == 0, err
    assert "added" in err  # the folder was not in the library: added and indexed first
    assert "held-out, tag-set queries" in out and "general (scene world)" in out and "change" in out
    assert "saved profile my-tagged-photos v1" in out
    assert "searches now use profile my-tagged-photos v1" in out

    code, out, _ = run(capsys, "status", *common)
    assert "profile: my-tagged-photos v1" in out
    code, out, _ = run(capsys, "profiles", *common, "--json")
    data = json.loads(out)
    rows = [(p["name"], p["version"], p["active"]) for p in data["profiles"]]
    assert rows == [("my-tagged-photos", 1, True)]

    # a second fine-tune under the same name is version 2; --no-apply keeps v1 active
    code, out, _ = run(capsys, "finetune", tagged, *common, "--epochs", "1", "--general", "0", "--no-apply")
    assert code == 0 and "saved profile my-tagged-photos v2" in out
    code, out, _ = run(capsys, "profiles", *common)
    assert "* my-tagged-photos v1" in out and "  my-tagged-photos v2" in out

    assert run(capsys, "profiles", "none", *common)[0] == 0
    with Library.open(lib, model=spec) as library:
        assert library.active_profile is None
    code, out, _ = run(capsys, "profiles", "use", "my-tagged-photos", *common)
    assert code == 0 and "v2" in out
    code, out, _ = run(capsys, "profiles", "delete", "my-tagged-photos", *common, "--version", "1")
    assert code == 0 and "deleted profile my-tagged-photos v1" in out
    assert run(capsys, "profiles", "use", *common)[0] == main.EXIT_USAGE


def test_errors_are_clear_messages(tmp_path, tagged, tiny_checkpoint, capsys):
    common = ("--library", tmp_path / "lib", "--model", f"file:{tiny_checkpoint}")
    empty = tmp_path / "empty" / "boats"
    empty.mkdir(parents=True)
    code, _, err = run(capsys, "finetune", empty.parent, *common, "--general", "0", "--no-progress")
    assert code == main.EXIT_ERROR
    assert err.startswith("error: No tagged photos found") and "Traceback" not in err

    one = tmp_path / "one" / "Holidays"
    one.mkdir(parents=True)
    for path in sorted(tagged.rglob("*.jpg"))[:12]:
        shutil.copyfile(path, one / path.name)
    code, _, err = run(capsys, "finetune", one.parent, *common, "--general", "0", "--no-progress")
    assert code == main.EXIT_ERROR and "same tags (holidays)" in err

    code, _, err = run(capsys, "finetune", tmp_path / "missing", *common, "--no-progress")
    assert code == main.EXIT_ERROR and "missing" in err

    code, _, err = run(capsys, "profiles", "use", "nothing", *common)
    assert code == main.EXIT_ERROR and "no profile named 'nothing'" in err


def test_finetune_lists_the_tag_files_it_could_not_read(tmp_path, tagged, tiny_checkpoint, capsys):
    root = tmp_path / "tree"
    shutil.copytree(tagged, root)
    photo_dirs = sorted({p.parent for p in root.rglob("*.jpg")})
    for folder in photo_dirs[:2]:
        (folder / "tags.txt").write_bytes(b"\x00binary\x00")  # not text
        photo = next(folder.glob("*.jpg"))
        (folder / f"{photo.name}.xmp").write_text("<x:xmpmeta><unclosed>", encoding="utf-8")
    spec = f"file:{tiny_checkpoint}"
    code, out, err = run(
        capsys,
        "finetune",
        root,
        "--library",
        tmp_path / "lib",
        "--model",
        spec,
        "--epochs",
        "1",
        "--no-apply",
    )
    assert code == 0, err
    assert "4 tag files could not be read:" in out
    listed = [line for line in out.splitlines() if line.startswith("  ") and "tags.txt" in line]
    assert len(listed) == 2 and all("not a text file" in line for line in listed)
    assert sum("well-formed" in line for line in out.splitlines()) == 2
    assert "see the log" not in out
