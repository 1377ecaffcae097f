"""Decoding untrusted image files: every mode to RGB, EXIF orientation, and each hostile file refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kubeclr.data.images import BadImage, Limits, decode_image
from kubeclr.data.ingest import decode_files
from tests.dataset_fixtures import bomb_png, encode, solid, varied_image


@pytest.mark.parametrize(
    "img, fmt, expected",
    [
        (solid((200, 30, 90)), "PNG", (200, 30, 90)),
        (solid((200, 30, 90)).convert("L"), "PNG", None),  # gray: R = G = B
        (Image.new("L", (20, 20), 77), "PNG", (77, 77, 77)),
        (Image.new("RGBA", (20, 20), (10, 20, 30, 0)), "PNG", (255, 255, 255)),  # fully transparent: white
        (Image.new("RGBA", (20, 20), (10, 20, 30, 255)), "PNG", (10, 20, 30)),  # opaque: the colour
        (solid((0, 0, 255)).convert("P"), "PNG", (0, 0, 255)),
        (Image.new("I;16", (20, 20), 65535), "PNG", (255, 255, 255)),
        (solid((0, 128, 0)), "WEBP", None),
    ],
)
def test_every_mode_becomes_rgb(img, fmt, expected):
    out = decode_image(encode(img, fmt, **({"lossless": True} if fmt == "WEBP" else {})), 16, name="x")
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    if expected is None:
        if img.mode == "L":
            assert (out[0] == out[1]).all() and (out[1] == out[2]).all()
    else:
        np.testing.assert_array_equal(out[:, 8, 8], expected)


def test_cmyk_jpeg_becomes_rgb():
    cyan = Image.new("CMYK", (20, 20), (255, 0, 0, 0))
    out = decode_image(encode(cyan, "JPEG", quality=95), 8, name="c.jpg").astype(int)
    r, g, b = out[:, 4, 4]
    assert r < 40 and g > 200 and b > 200  # cyan


def test_exif_orientation_is_applied():
    # left half black, right half white; orientation 6 = displayed rotated 90° clockwise: top black, bottom white
    arr = np.zeros((32, 32, 3), dtype=np.uint8)
    arr[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif), 32, name="r.jpg").astype(int)
    plain = decode_image(encode(Image.fromarray(arr), "JPEG", quality=95), 32, name="p.jpg").astype(int)
    assert plain[0, 16, 2] < 30 and plain[0, 16, 29] > 225  # not rotated: dark left, light right
    assert out[0, 2, 16] < 30 and out[0, 29, 16] > 225  # rotated: dark top, light bottom


def test_non_square_images_are_centre_cropped_then_resized():
    arr = np.zeros((20, 60, 3), dtype=np.uint8)  # 60 wide: the centre 20 columns are white
    arr[:, 20:40] = 255
    out = decode_image(encode(Image.fromarray(arr), "PNG"), 10, name="wide.png")
    assert out[:, :, 1:-1].min() >= 250  # only the white centre survives the square crop
    assert out.min() > 200  # (the filter reads a pixel's width past the crop at the edges)


@pytest.mark.parametrize(
    "data, limits, fragment",
    [
        (bomb_png(), Limits(), "declares 60000x60000 = 3600000000 pixels, more than data.max_image_pixels"),
        (b"#!/bin/sh\necho not an image\n", Limits(), "not a JPEG, PNG or WEBP image"),
        (encode(solid((1, 2, 3)), "GIF"), Limits(), "not a JPEG, PNG or WEBP image"),
        (encode(solid((1, 2, 3)), "BMP"), Limits(), "not a JPEG, PNG or WEBP image"),
        (encode(solid((1, 2, 3), (200, 200)), "PNG"), Limits(max_bytes=100), "more than data.max_image_bytes=100"),
        (b"", Limits(), "empty file"),
    ],
)
def test_hostile_files_are_refused_with_their_name(data, limits, fragment):
    with pytest.raises(BadImage, match="^evil.file: ") as err:
        decode_image(data, 32, name="evil.file", limits=limits)
    assert fragment in str(err.value)


def test_a_truncated_jpeg_is_an_error_not_a_grey_image():
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(BadImage, match="^cut.jpg: corrupt or truncated image"):
        decode_image(data[: len(data) // 2], 32, name="cut.jpg")


def _folder_of(tmp_path, n):
    rng = np.random.default_rng(1)
    names = []
    for i in range(n):
        suffix, data = varied_image(i, rng)
        names.append(f"f{i:04d}{suffix}")
        (tmp_path / names[-1]).write_bytes(data)
    return names


def test_the_process_pool_decodes_what_this_process_decodes(tmp_path):
    names = _folder_of(tmp_path, 300)  # above the inline threshold: two workers, several chunks in flight
    pooled = decode_files(tmp_path, names, 16, workers=2)
    inline = decode_files(tmp_path, names, 16, workers=1)
    np.testing.assert_array_equal(pooled.images, inline.images)
    assert pooled.sha256 == inline.sha256 and len(set(pooled.sha256)) == 300
    assert pooled.kept.all() and pooled.images.shape == (300, 3, 16, 16)


def test_bad_files_fail_by_name_or_are_skipped_and_counted(tmp_path):
    names = _folder_of(tmp_path, 6)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    names.insert(2, "broken.png")
    with pytest.raises(BadImage, match=r"^broken.png: not a JPEG, PNG or WEBP image \(data.on_bad_image=skip"):
        decode_files(tmp_path, names, 16, workers=1)
    out = decode_files(tmp_path, names, 16, workers=1, on_bad="skip")
    assert out.images.shape[0] == 6 and not out.kept[2] and out.kept.sum() == 6
    assert len(out.skipped) == 1 and out.skipped[0].startswith("broken.png")
    assert out.sha256[2]  # a skipped file is still in the manifest: changing it changes the input
