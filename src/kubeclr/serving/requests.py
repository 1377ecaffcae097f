"""What a request to the embedding service may hold, checked before any model runs.

An ``images`` input is either a ``UINT8`` tensor ``[B, 3, H, W]`` (the model's own size) or
``BYTES`` ``[B]`` of base64 PNG / JPEG / WebP files, each decoded with the bounds of the image
folder reader (file size, declared pixels, formats) and centre-cropped and resized to the
model's size. Anything else is a :class:`RequestError` naming the problem (HTTP 400); nothing
here unpickles or evaluates anything.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from kubeclr.data.images import BadImage, Limits, decode_image

INPUT = "images"


class RequestError(ValueError):
    """A request the service refuses (HTTP 400), with the reason."""


@dataclass(frozen=True)
class RequestLimits:
    max_batch: int = 64  # images per request
    max_image_bytes: int = 8 * 1024 * 1024  # one encoded (PNG/JPEG/WebP) image
    max_image_pixels: int = 40_000_000  # pixels one encoded image may declare


def tensor_images(shape: Sequence[int], data: Any, *, size: int, limits: RequestLimits) -> np.ndarray:
    """``data`` of a ``UINT8`` input of ``shape`` as uint8 ``(B, 3, size, size)``."""
    shape = [int(s) for s in shape]
    if len(shape) != 4 or shape[1:] != [3, size, size]:
        raise RequestError(f"input '{INPUT}': shape {shape}, expected [B, 3, {size}, {size}]")
    _check_batch(shape[0], limits)
    array = np.asarray(data)
    if array.dtype == object or array.dtype.kind not in "iub":
        raise RequestError(f"input '{INPUT}': UINT8 data must be whole numbers 0..255 (got {array.dtype.name})")
    if array.size != math.prod(shape):
        raise RequestError(f"input '{INPUT}': {array.size} values for shape {shape} ({math.prod(shape)} expected)")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise RequestError(f"input '{INPUT}': UINT8 values must be 0..255 (got {array.min()}..{array.max()})")
    return array.astype(np.uint8).reshape(shape)


def encoded_images(shape: Sequence[int], data: Any, *, size: int, limits: RequestLimits) -> np.ndarray:
    """``BYTES`` ``[B]`` of base64 image files as uint8 ``(B, 3, size, size)``."""
    items = list(np.asarray(data, dtype=object).reshape(-1)) if data is not None else []
    if [int(s) for s in shape] != [len(items)]:
        raise RequestError(f"input '{INPUT}': BYTES shape {list(shape)}, expected [{len(items)}] (one per image)")
    _check_batch(len(items), limits)
    bounds = Limits(max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)
    out = np.empty((len(items), 3, size, size), dtype=np.uint8)
    for i, item in enumerate(items):
        raw = item.encode("ascii", "replace") if isinstance(item, str) else item
        if not isinstance(raw, (bytes, bytearray)):
            raise RequestError(f"input '{INPUT}'[{i}]: expected a base64 string, got {type(item).__name__}")
        if len(raw) > limits.max_image_bytes * 4 // 3 + 4:
            raise RequestError(f"input '{INPUT}'[{i}]: more than {limits.max_image_bytes} bytes once decoded")
        try:
            blob = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"input '{INPUT}'[{i}]: not base64") from None
        try:
            out[i] = decode_image(blob, size, name=f"input '{INPUT}'[{i}]", limits=bounds)
        except BadImage as exc:
            raise RequestError(str(exc)) from None
    return out


def _check_batch(batch: int, limits: RequestLimits) -> None:
    if batch < 1:
        raise RequestError(f"input '{INPUT}': no images")
    if batch > limits.max_batch:
        raise RequestError(f"input '{INPUT}': {batch} images, more than the limit of {limits.max_batch} per request")


def request_images(inputs: Sequence[Any], *, size: int, limits: RequestLimits) -> np.ndarray:
    """The images of a v2 request's inputs (objects with ``name``, ``datatype``, ``shape``, ``data``)."""
    named = [i for i in inputs if getattr(i, "name", None) == INPUT]
    if len(named) != 1:
        got = ", ".join(repr(getattr(i, "name", None)) for i in inputs) or "none"
        raise RequestError(f"expected one input named '{INPUT}' (got {got})")
    (inp,) = named
    datatype = str(inp.datatype).upper()
    data = inp.data
    if data is None and hasattr(inp, "as_numpy"):  # the binary tensor extension: raw bytes, no JSON list
        try:
            data = inp.as_numpy()
        except ValueError as exc:
            raise RequestError(f"input '{INPUT}': binary data does not fit its shape ({exc})") from None
    if datatype == "UINT8":
        return tensor_images(inp.shape, data, size=size, limits=limits)
    if datatype == "BYTES":
        return encoded_images(inp.shape, data, size=size, limits=limits)
    raise RequestError(f"input '{INPUT}': datatype {datatype}, expected UINT8 [B, 3, H, W] or BYTES (base64 images)")
