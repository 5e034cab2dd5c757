from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.decode import DecodedImage, decode_parallel, open_image
from core.errors import DecodeError
from tests.core import imagefiles as files
from tests.core.access import call_obeying_permissions


def close_to(pixel, colour, tolerance=40) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, colour, strict=True))


def reason_of(path, **kwargs) -> str:
    with pytest.raises(DecodeError) as info:
        open_image(path, 64, **kwargs)
    assert info.value.path == str(path)
    return info.value.reason


# --------------------------------------------------------------------------- sizes and the fast path


def test_jpeg_is_downscaled_to_the_target_with_its_aspect(tmp_path):
    path = files.write_jpeg(tmp_path / "a.jpg", (640, 480))
    decoded = open_image(path, 224)
    assert isinstance(decoded, DecodedImage)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (299, 224)  # 640 * 224 / 480 = 298.7
    assert (decoded.width, decoded.height) == (640, 480)
    assert (decoded.orientation, decoded.taken_at) == (1, None)


def test_jpeg_fast_path_decodes_in_the_dct_domain_just_above_the_target(tmp_path):
    path = files.write_jpeg(tmp_path / "a.jpg", (800, 600))
    decoded = open_image(path, 100)
    shorter = min(decoded.decoded_size)
    assert 100 <= shorter < 2 * 100  # scaled by 1/4 while decoding, not decoded at 800x600
    assert decoded.decoded_size == (200, 150)
    assert decoded.image.size == (133, 100)
    # Portrait, and a target that allows the largest reduction (1/8).
    tall = open_image(files.write_jpeg(tmp_path / "b.jpg", (480, 1000)), 50)
    assert tall.decoded_size == (60, 125)
    assert tall.image.size == (50, 104)
    # Without a target nothing is reduced.
    assert open_image(path, None).decoded_size == (800, 600)


def test_greyscale_progressive_and_multi_picture_jpegs_take_the_fast_path(tmp_path):
    photo = files.photo_like((400, 320))
    grey = tmp_path / "grey.jpg"
    photo.convert("L").save(grey, "JPEG")
    progressive = tmp_path / "progressive.jpg"
    photo.save(progressive, "JPEG", progressive=True)
    mpo = tmp_path / "camera.mpo"
    photo.save(mpo, "MPO", save_all=True, append_images=[photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    for path in (grey, progressive, mpo):
        decoded = open_image(path, 40)
        assert decoded.decoded_size == (50, 40), path.name
        assert decoded.image.mode == "RGB" and decoded.image.size == (50, 40)
    with Image.open(mpo) as im:
        assert im.format == "MPO"


def test_fast_path_looks_like_a_full_decode(tmp_path):
    path = files.write_jpeg(tmp_path / "a.jpg", (512, 384), quality=95)
    fast = np.asarray(open_image(path, 64).image, dtype=np.float32)
    with Image.open(path) as im:
        full = np.asarray(im.convert("RGB").resize((85, 64), Image.Resampling.LANCZOS), dtype=np.float32)
    assert fast.shape == full.shape
    assert np.abs(fast - full).mean() < 6.0


def test_small_images_are_not_enlarged_and_none_means_full_size(tmp_path):
    small = files.write_jpeg(tmp_path / "small.jpg", (100, 80))
    assert open_image(small, 224).image.size == (100, 80)
    big = files.write_png(tmp_path / "big.png", (300, 200))
    assert open_image(big, None).image.size == (300, 200)
    assert open_image(big, 50).image.size == (75, 50)


@pytest.mark.parametrize("fmt,suffix", [("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp"), ("PNG", "png")])
def test_other_formats(tmp_path, fmt, suffix):
    decoded = open_image(files.write_format(tmp_path / f"a.{suffix}", fmt, (120, 90)), 60)
    assert decoded.image.mode == "RGB" and decoded.image.size == (80, 60)
    assert (decoded.width, decoded.height) == (120, 90)


# ------------------------------------------------------------------------------------------ EXIF


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    stored = files.quadrants((64, 48))
    path = files.write_jpeg(tmp_path / "a.jpg", image=stored, orientation=orientation, quality=95)
    decoded = open_image(path, None)
    with Image.open(path) as im:
        expected = ImageOps.exif_transpose(im.convert("RGB"))
    assert decoded.orientation == orientation
    assert decoded.image.size == expected.size
    assert (decoded.width, decoded.height) == expected.size
    width, height = expected.size
    for x, y in ((width // 4, height // 4), (3 * width // 4, height // 4), (width // 4, 3 * height // 4)):
        assert close_to(decoded.image.getpixel((x, y)), expected.getpixel((x, y)))


def test_orientation_six_turns_a_landscape_file_upright(tmp_path):
    stored = files.quadrants((64, 48), colours=(files.RED, files.RED, files.BLUE, files.BLUE))  # red on top
    path = files.write_jpeg(tmp_path / "a.jpg", image=stored, orientation=6, quality=95)
    decoded = open_image(path, 24)  # the downscale and the turn combine
    assert decoded.image.size == (24, 32)
    assert (decoded.width, decoded.height) == (48, 64)
    # Orientation 6: the camera was turned clockwise; the stored top edge is displayed on the right.
    assert close_to(decoded.image.getpixel((20, 16)), files.RED)
    assert close_to(decoded.image.getpixel((3, 16)), files.BLUE)


def test_taken_at_comes_from_date_time_original(tmp_path):
    plain = open_image(files.write_jpeg(tmp_path / "a.jpg", taken_at="2021:07:04 15:30:00"), 32)
    assert plain.taken_at == "2021-07-04T15:30:00"
    zoned = open_image(
        files.write_jpeg(tmp_path / "b.jpg", taken_at="2019:12:31 23:59:59", offset="-05:00"), 32
    )
    assert zoned.taken_at == "2019-12-31T23:59:59-05:00"
    placeholder = open_image(files.write_jpeg(tmp_path / "c.jpg", taken_at="0000:00:00 00:00:00"), 32)
    assert placeholder.taken_at is None
    garbage = open_image(files.write_jpeg(tmp_path / "d.jpg", taken_at="yesterday"), 32)
    assert garbage.taken_at is None


# ------------------------------------------------------------------------------------------ modes


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    decoded = open_image(files.write_cmyk_jpeg(tmp_path / "cyan.jpg"), 16)
    assert decoded.image.mode == "RGB"
    assert close_to(decoded.image.getpixel((5, 5)), (0, 255, 255))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    decoded = open_image(files.write_png16(tmp_path / "ramp.png", (64, 16)), None)
    row = np.asarray(decoded.image)[8, :, 0].astype(int)
    assert decoded.image.mode == "RGB"
    assert row[0] <= 2 and row[-1] >= 253
    assert abs(row[32] - 129) <= 3  # the middle of the ramp is mid-grey, not white
    assert np.all(np.diff(row) >= 0)


def test_palette_transparency_is_composited_on_white(tmp_path):
    decoded = open_image(files.write_palette_png_transparent(tmp_path / "p.png"), None)
    assert decoded.image.getpixel((4, 16)) == (255, 255, 255)
    assert decoded.image.getpixel((28, 16)) == files.RED


@pytest.mark.parametrize("mode,opaque", [("RGBA", files.GREEN), ("LA", (90, 90, 90))])
def test_alpha_is_composited_on_white(tmp_path, mode, opaque):
    decoded = open_image(files.write_alpha_png(tmp_path / "a.png", mode), None)
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((16, 4)) == (255, 255, 255)
    assert decoded.image.getpixel((16, 28)) == opaque


@pytest.mark.parametrize("fmt,suffix", [("GIF", "gif"), ("WEBP", "webp")])
def test_animation_gives_its_first_frame(tmp_path, fmt, suffix):
    path = files.write_animated(tmp_path / f"a.{suffix}", fmt, colours=(files.RED, files.BLUE, files.GREEN))
    with Image.open(path) as im:
        assert im.n_frames == 3
    decoded = open_image(path, 16)
    assert decoded.image.mode == "RGB" and decoded.image.size == (16, 16)
    assert close_to(decoded.image.getpixel((8, 8)), files.RED, tolerance=8)


# ------------------------------------------------------------------------------------------ errors


def test_truncated_jpeg(tmp_path):
    assert reason_of(files.write_truncated_jpeg(tmp_path / "cut.jpg")) == "truncated file"


def test_truncated_png(tmp_path):
    path = files.write_png(tmp_path / "cut.png", (200, 150))
    path.write_bytes(path.read_bytes()[:-200])
    assert reason_of(path) == "truncated file"


def test_empty_file(tmp_path):
    assert reason_of(files.write_empty(tmp_path / "empty.jpg")) == "empty file"


def test_text_named_like_an_image(tmp_path):
    assert reason_of(files.write_text(tmp_path / "notes.jpg")) == "not an image"


def test_missing_file_and_folder(tmp_path):
    assert reason_of(tmp_path / "gone.jpg") == "file not found"
    (tmp_path / "folder.jpg").mkdir()
    assert reason_of(tmp_path / "folder.jpg") == "not a file"


def test_unreadable_file(tmp_path):
    path = files.write_jpeg(tmp_path / "locked.jpg")
    path.chmod(0)
    with pytest.raises(DecodeError) as info:
        call_obeying_permissions(lambda: open_image(path, 32))
    assert info.value.reason == "permission denied"


def test_huge_declared_size_is_refused_without_decoding(tmp_path):
    path = files.write_huge_png_header(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 200
    reason = reason_of(path)
    assert reason.startswith("too large: ") and "900 MP" in reason and "100 MP limit" in reason


def test_own_pixel_cap_reports_the_dimensions(tmp_path):
    path = files.write_huge_png_header(tmp_path / "big.png", 5000, 5000)
    assert reason_of(path, max_pixels=20_000_000) == "too large: 5000x5000 pixels over the 20 MP limit"
    small = files.write_jpeg(tmp_path / "small.jpg", (200, 100))
    assert reason_of(small, max_pixels=10_000) == "too large: 200x100 pixels over the 0.01 MP limit"
    assert open_image(small, 32, max_pixels=20_000).width == 200


def test_pillow_limit_below_ours_is_reported_as_the_limit(tmp_path):
    path = files.write_huge_png_header(tmp_path / "big.png", 20000, 20000)
    reason = reason_of(path, max_pixels=1_000_000_000)
    assert reason.startswith("too large: 400 MP over the ") and "1000 MP" not in reason


def test_decode_error_names_the_file(tmp_path):
    path = files.write_text(tmp_path / "x.png")
    with pytest.raises(DecodeError, match=r"x\.png: not an image"):
        open_image(path, 32)


# ---------------------------------------------------------------------------------- decode_parallel


def test_parallel_keeps_order_and_survives_bad_files(tmp_path):
    paths = []
    for i in range(12):
        if i % 4 == 1:
            paths.append(files.write_text(tmp_path / f"{i:02d}.jpg"))
        elif i % 4 == 3:
            paths.append(files.write_truncated_jpeg(tmp_path / f"{i:02d}.jpg"))
        else:
            paths.append(files.write_jpeg(tmp_path / f"{i:02d}.jpg", (40 + i, 30), seed=i))
    results = list(decode_parallel(paths, lambda p: open_image(p, 16), workers=3, lookahead=4))
    assert [item for item, _ in results] == paths
    for i, (_, outcome) in enumerate(results):
        if i % 4 == 1:
            assert isinstance(outcome, DecodeError) and outcome.reason == "not an image"
        elif i % 4 == 3:
            assert isinstance(outcome, DecodeError) and outcome.reason == "truncated file"
        else:
            assert isinstance(outcome, DecodedImage) and outcome.width == 40 + i


def test_parallel_order_holds_when_later_items_finish_first():
    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0.0)
        return i * i

    assert list(decode_parallel(range(20), slow_first, workers=4)) == [(i, i * i) for i in range(20)]


def test_parallel_look_ahead_is_bounded():
    taken = 0
    lookahead = 5

    def source():
        nonlocal taken
        for i in range(200):
            taken += 1
            yield i

    yielded = 0
    for _item, _outcome in decode_parallel(source(), lambda i: i, workers=2, lookahead=lookahead):
        yielded += 1
        assert taken - yielded <= lookahead
    assert yielded == taken == 200


def test_closing_the_iterator_cancels_pending_work():
    started = []
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            started.append(i)
        time.sleep(0.005)
        return i

    results = decode_parallel(range(10_000), work, workers=2, lookahead=6)
    first = [next(results) for _ in range(3)]
    results.close()
    count_at_close = len(started)
    time.sleep(0.05)
    assert [item for item, _ in first] == [0, 1, 2]
    assert len(started) == count_at_close  # nothing runs after close() returned
    assert count_at_close <= 3 + 6


def test_an_error_of_the_item_source_is_raised():
    def source():
        yield 1
        raise RuntimeError("scan failed")

    with pytest.raises(RuntimeError, match="scan failed"):
        list(decode_parallel(source(), lambda i: i, workers=2))
