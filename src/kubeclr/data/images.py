"""Decode one untrusted image file into a uint8 ``(3, S, S)`` array, or refuse it with a reason.

An image folder is user content, so every file is treated as hostile until
decoded: its size is bounded before it is read, only JPEG, PNG and WebP are
recognised (Pillow is asked for those formats only, whatever the file's name),
the declared pixel count is checked *before* any pixel is decoded (the
decompression-bomb limit), truncated data is an error rather than a grey
image, EXIF orientation is applied, and every mode (grayscale, palette, CMYK,
16-bit, alpha) ends up as RGB — transparency composited over white. The image
is then centre-cropped to a square and resized to ``S`` with Pillow's
antialiased bicubic filter, once, at ingestion.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from kubeclr.errors import DataError

FORMATS = ("JPEG", "PNG", "WEBP")
WHITE = (255, 255, 255)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a partly grey image


class BadImage(DataError):
    """One file of an image folder could not be used; the message names the file and why."""


@dataclass(frozen=True)
class Limits:
    """What an image may be: at most ``max_bytes`` on disk and ``max_pixels`` declared pixels."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparency (RGBA, LA, a palette's transparent index) over white."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode.startswith("I;16"):  # 16-bit grayscale: the high byte (no float copy of a large image)
        img = Image.fromarray((np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8), mode="L")
    elif img.mode in ("I", "F"):  # 32-bit grayscale: scaled to its own maximum
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray((np.clip(arr, 0, None) * (255.0 / max(float(arr.max()), 1.0))).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, WHITE + (255,))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


@contextlib.contextmanager
def _refusing(name: str) -> Iterator[None]:
    """Any failure to open or decode ``name`` as one :class:`BadImage` saying why; Pillow's own
    pixel limit is lifted meanwhile (ours, in :func:`_opened`, names the config key)."""
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage(f"{name}: not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"{name}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise BadImage(f"{name}: corrupt or truncated image ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # a plugin's or the EXIF parser's own error (struct.error, KeyError, …): still this file's
        raise BadImage(f"{name}: cannot be decoded ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit


def _opened(data: bytes, name: str, limits: Limits) -> Image.Image:
    """The image's header, read and checked against ``limits``; no pixel decoded yet."""
    if len(data) > limits.max_bytes:
        raise BadImage(f"{name}: {len(data)} bytes, more than data.max_image_bytes={limits.max_bytes}")
    if not data:
        raise BadImage(f"{name}: empty file")
    img = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    width, height = img.size
    if width * height > limits.max_pixels:
        raise BadImage(
            f"{name}: declares {width}x{height} = {width * height} pixels, more than "
            f"data.max_image_pixels={limits.max_pixels} (a decompression bomb?)"
        )
    return img


def check_image(data: bytes, *, name: str, limits: Limits = Limits()) -> None:
    """What :func:`decode_image` checks before decoding (bytes, format, declared pixels), without decoding.

    Raises:
        BadImage: too large, not a JPEG/PNG/WebP, too many pixels, an unreadable header.
    """
    with _refusing(name):
        _opened(data, name, limits)


def decode_image(data: bytes, size: int, *, name: str, limits: Limits = Limits()) -> np.ndarray:
    """Decode, orient, convert to RGB, centre-crop and resize one image file.

    Args:
        data: the file's bytes.
        size: side of the square output.
        name: the file's name in the dataset, for errors.
        limits: file-size and pixel-count limits.

    Returns:
        uint8 ``(3, size, size)``.

    Raises:
        BadImage: too large, not a JPEG/PNG/WebP, too many pixels, truncated or corrupt.
    """
    with _refusing(name):
        img = _opened(data, name, limits)
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # decode at the smallest DCT scale still >= size
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
