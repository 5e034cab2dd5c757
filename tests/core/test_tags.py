"""Tags from folder names, tags.txt and XMP sidecars; normalisation; tags given in the app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from core.catalog import Catalog, PhotoEntry
from core.errors import FolderError
from core.tags import (
    MAX_TAGS_PER_PHOTO,
    TagSourceError,
    UserTags,
    embedded_keywords,
    expand_tags,
    file_tags,
    folder_tag,
    iter_tag_scan,
    normalise_tag,
    read_tags_file,
    read_xmp_keywords,
    scan_tags,
)

XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/">
   <dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag>
     <rdf:li>Places|Portugal|Lisbon</rdf:li>
     <rdf:li>darktable|format|jpg</rdf:li>
   </rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def xmp(*keywords: str) -> str:
    return XMP.format(items="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords))


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(path)
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Grandma's_Garden ", "grandma's garden"),
        ("Lisbon 2019", "lisbon 2019"),
        ("Lisbon.2019_07_14", "lisbon 2019-07-14"),
        ("20190714-beach", "2019-07-14 beach"),
        ("2019.07 summer", "2019-07 summer"),
        ("the--red__kayak", "the red kayak"),
        ("ÉTÉ", "été"),
        ("   ", None),
        ("!!!", None),
        ("x" * 200, "x" * 80),
    ],
)
def test_normalise_tag(raw, expected):
    assert normalise_tag(raw) == expected


def test_dates_imply_years_and_the_words_around_them():
    assert expand_tags(["lisbon 2019-07-14"]) == (
        "lisbon 2019-07-14",
        "lisbon",
        "2019-07-14",
        "2019",
        "2019-07",
    )
    assert expand_tags(["lisbon 2019"]) == ("lisbon 2019", "lisbon", "2019")
    assert expand_tags(["red kayak"]) == ("red kayak",)


def test_camera_and_export_folders_are_no_tags():
    assert folder_tag("DCIM") is None
    assert folder_tag("100CANON") is None
    assert folder_tag("101_PANA") is None
    assert folder_tag("Camera Roll") is None
    assert folder_tag("Red kayak") == "red kayak"


def test_tree_tags_inherit_folders_and_read_sidecars_and_tags_files(tmp_path):
    root = tmp_path / "Tagged"
    a = image(root / "Grandma's Garden" / "a.jpg")
    b = image(root / "Grandma's Garden" / "2019-07-14 Lisbon trip" / "b.JPG")
    (b.parent / "b.JPG.xmp").write_text(xmp("Red_Kayak", "lake"), encoding="utf-8")
    c = image(root / "DCIM" / "100CANON" / "c.jpg")
    (c.parent / "tags.txt").write_text("summer, family # holidays\nc.jpg: broken camera\n", encoding="utf-8")
    d = image(root / "Grandma's Garden" / "d.jpg")
    (d.parent / "d.xmp").write_text(xmp("roses"), encoding="utf-8")  # PHOTO.xmp form

    scan = scan_tags(root)
    tags = {Path(p.path).name: p.tags for p in scan.photos}
    assert tags[a.name] == ("grandma's garden",)
    assert tags[b.name] == ("grandma's garden", "2019-07-14 lisbon trip", "red kayak", "lake", "lisbon")
    assert tags[c.name] == ("summer", "family", "broken camera")
    assert tags[d.name] == ("grandma's garden", "roses", "lisbon")
    assert scan.counts()["grandma's garden"] == 3
    assert scan.problems == []


def test_folders_without_images_are_reported_not_fatal(tmp_path):
    root = tmp_path / "Tagged"
    image(root / "boats" / "a.jpg")
    (root / "empty" / "nested").mkdir(parents=True)
    (root / "only text").mkdir()
    (root / "only text" / "notes.txt").write_text("hello")
    scan = scan_tags(root)
    assert [Path(p.path).name for p in scan.photos] == ["a.jpg"]
    assert sorted(Path(p).name for p in scan.empty_folders) == ["empty", "only text"]  # topmost only


def test_a_tree_with_no_images_at_all(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    scan = scan_tags(tmp_path)
    assert scan.photos == [] and scan.tagged == []


def test_missing_root_is_a_folder_error(tmp_path):
    with pytest.raises(FolderError):
        scan_tags(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("<x:xmpmeta><rdf:RDF><unclosed></x:xmpmeta>", "well-formed"),
        (b"\x00\x01\x02binary", "well-formed"),
        (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
            "<x>&lol2;</x>",
            "DTD",
        ),
    ],
)
def test_bad_sidecars_become_problems(tmp_path, content, reason):
    photo = image(tmp_path / "boats" / "a.jpg")
    sidecar = photo.parent / "a.jpg.xmp"
    if isinstance(content, bytes):
        sidecar.write_bytes(content)
    else:
        sidecar.write_text(content, encoding="utf-8")
    with pytest.raises(TagSourceError, match=reason):
        read_xmp_keywords(sidecar)
    scan = scan_tags(tmp_path)
    assert scan.photos[0].tags == ("boats",)  # the folder tag still counts
    assert [(Path(p.path).name, reason in p.reason) for p in scan.problems] == [("a.jpg.xmp", True)]


def test_huge_sidecars_are_skipped_without_reading_them(tmp_path):
    photo = image(tmp_path / "boats" / "a.jpg")
    sidecar = photo.parent / "a.xmp"
    sidecar.write_text(xmp("x" * 5000), encoding="utf-8")
    scan = scan_tags(tmp_path, max_sidecar_bytes=1024)
    assert scan.photos[0].tags == ("boats",)
    assert "larger than" in scan.problems[0].reason


def test_unreadable_sidecar_is_a_problem(tmp_path):
    photo = image(tmp_path / "boats" / "a.jpg")
    (photo.parent / "a.xmp").mkdir()  # a folder where a file was expected: not read
    scan = scan_tags(tmp_path)
    assert scan.photos[0].tags == ("boats",)
    assert scan.problems and "not a regular file" in scan.problems[0].reason


def test_thousands_of_tags_are_capped_per_photo(tmp_path):
    photo = image(tmp_path / "boats" / "a.jpg")
    (photo.parent / "a.jpg.xmp").write_text(xmp(*(f"tag {i}" for i in range(3000))), encoding="utf-8")
    scan = scan_tags(tmp_path)
    tags = scan.photos[0].tags
    assert len(tags) == MAX_TAGS_PER_PHOTO
    assert tags[:2] == ("boats", "tag 0")
    assert "3002 tags" in scan.problems[0].reason  # 3000 + the folder + the Lisbon leaf


def test_tags_file_forms(tmp_path):
    path = tmp_path / "tags.txt"
    text = "\ufeffRed kayak; Lake\n# comment only\nIMG_1.JPG: Sunset, Dog\nnot-a-file: x\n"
    path.write_text(text, encoding="utf-8")
    parsed = read_tags_file(path)
    assert parsed.folder == ("red kayak", "lake", "not a file: x")
    assert parsed.files == {"img_1.jpg": ("sunset", "dog")}
    path.write_bytes(b"\x00\x00binary")
    with pytest.raises(TagSourceError, match="not a text file"):
        read_tags_file(path)


def test_scan_can_be_cancelled(tmp_path):
    for i in range(30):
        image(tmp_path / f"folder {i % 3}" / f"{i}.jpg")
    gen = iter_tag_scan(tmp_path, report_every=5)
    first = next(gen)
    assert first.photos == 5
    gen.close()  # no exception, nothing left behind


def test_user_tags_follow_content(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        folder = catalog.add_folder(tmp_path)
        ids = catalog.upsert_photos(
            folder.id,
            [
                PhotoEntry(str(tmp_path / "a.jpg"), 1, 1, "hash-a"),
                PhotoEntry(str(tmp_path / "copy-of-a.jpg"), 1, 1, "hash-a"),
                PhotoEntry(str(tmp_path / "b.jpg"), 1, 1, "hash-b"),
            ],
        )
        tags = UserTags(catalog)
        assert tags.add([ids[0]], ["The Red_Kayak", "  "]) == ["the red kayak"]
        tags.add([ids[2]], ["lake"])
        assert tags.of(ids) == {ids[0]: ("the red kayak",), ids[1]: ("the red kayak",), ids[2]: ("lake",)}
        assert tags.counts() == {"the red kayak": 2, "lake": 1}
        # the file moves: a new row with the same content keeps its tags
        catalog.remove_photos([ids[0], ids[1]])
        moved = catalog.upsert_photos(folder.id, [PhotoEntry(str(tmp_path / "moved.jpg"), 1, 1, "hash-a")])
        assert tags.of(moved) == {moved[0]: ("the red kayak",)}
        tags.remove(moved, ["the red kayak"])
        assert tags.of(moved) == {}
        assert tags.tagged() == {"hash-b": ("lake",)}


def test_file_tags_of_one_photo_follow_the_tree_scan(tmp_path):
    from core.tags import file_tags

    root = tmp_path / "Pictures"
    trip = root / "Lisbon_2019" / "Tram 28"
    trip.mkdir(parents=True)
    photo = trip / "IMG_0001.JPG"
    photo.write_bytes(b"jpeg")
    (root / "tags.txt").write_text("family\n", encoding="utf-8")
    (trip / "tags.txt").write_text("yellow, street\nimg_0001.jpg: the red kayak\nother.jpg: nope\n")
    (trip / "img_0001.jpg.xmp").write_text(xmp("Portugal", "Yellow"), encoding="utf-8")
    assert file_tags(photo, root) == (
        "lisbon 2019",
        "tram 28",
        "family",
        "yellow",
        "street",
        "the red kayak",
        "portugal",
        "lisbon",  # the leaf of the template's lr:hierarchicalSubject
    )
    # a broken sidecar adds nothing; outside the root only the photo's own folder counts
    (trip / "img_0001.jpg.xmp").write_text("<not xml", encoding="utf-8")
    assert "portugal" not in file_tags(photo, root)
    assert file_tags(photo, tmp_path / "elsewhere") == ("yellow", "street", "the red kayak")


def test_library_photo_tags_on_disk_and_given_in_the_app(tmp_path, tiny_checkpoint):
    from core.library import Library
    from tests.core.imagefiles import write_jpeg

    root = tmp_path / "photos"
    (root / "Grandma's garden").mkdir(parents=True)
    write_jpeg(root / "Grandma's garden" / "a.jpg")
    with Library.open(tmp_path / "lib", model=f"file:{tiny_checkpoint}") as lib:
        lib.add_folder(root)
        lib.index()
        pid = lib.catalog.photo_by_path(root / "Grandma's garden" / "a.jpg").id
        tags = lib.photo_tags(pid)
        assert tags.on_disk == ("grandma's garden",) and tags.given == ()
        lib.tags.add([pid], ["The Kayak", "  "])
        assert lib.photo_tags(pid).given == ("the kayak",)
        lib.tags.remove([pid], ["the kayak"])
        assert lib.photo_tags(pid).given == ()


def test_a_utf16_sidecar_cannot_smuggle_in_entities(tmp_path):
    """The byte check for <!ENTITY misses UTF-16; the parser itself refuses DTDs in any encoding."""
    photo = image(tmp_path / "boats" / "a.jpg")
    sidecar = photo.parent / "a.jpg.xmp"
    bomb = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "' + "boom," * 200 + '">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><rdf:RDF><rdf:Description><dc:subject><rdf:Bag>'
        "<rdf:li>&b;</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    sidecar.write_bytes(bomb.encode("utf-16"))
    with pytest.raises(TagSourceError, match="DTD"):
        read_xmp_keywords(sidecar)
    assert scan_tags(tmp_path).photos[0].tags == ("boats",)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.timeout(20)
def test_a_pipe_named_like_a_tag_file_is_skipped_not_waited_on(tmp_path):
    photo = image(tmp_path / "boats" / "a.jpg")
    os.mkfifo(photo.parent / "tags.txt")
    os.mkfifo(photo.parent / "a.jpg.xmp")
    for path in (photo.parent / "tags.txt", photo.parent / "a.jpg.xmp"):
        with pytest.raises(TagSourceError, match="not a regular file"):
            read_xmp_keywords(path) if path.suffix == ".xmp" else read_tags_file(path)
    scan = scan_tags(tmp_path)
    assert scan.photos[0].tags == ("boats",)
    assert sorted(Path(p.path).name for p in scan.problems) == ["a.jpg.xmp", "tags.txt"]


def test_keywords_embedded_in_a_jpeg_are_tags(tmp_path):
    """Lightroom writes keywords into the JPEG itself (an XMP packet in APP1), not only sidecars."""
    photo = tmp_path / "boats" / "kayak.jpg"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (16, 16), "red").save(photo, xmp=xmp("Red kayak", "Lake Bled").encode("utf-8"))
    assert embedded_keywords(photo) == ["Red kayak", "Lake Bled", "Lisbon"]  # + the template's hierarchy leaf
    assert file_tags(photo, tmp_path) == ("boats", "red kayak", "lake bled", "lisbon")
    assert scan_tags(tmp_path).photos[0].tags == ("boats", "red kayak", "lake bled", "lisbon")
    plain = image(tmp_path / "boats" / "plain.jpg")
    assert embedded_keywords(plain) == []
    broken = tmp_path / "boats" / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    assert embedded_keywords(broken) == []  # indexing reports unreadable photos, not the tag scan
