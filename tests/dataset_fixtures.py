"""Small datasets in the real layouts of CIFAR-100, STL-10 and image folders, and hostile variants.

Each writer builds its files independently of the readers under test: the
STL-10 binary is written plane by plane in column-major (Fortran) order as the
format defines, CIFAR-100 as the pickled dicts its site documents, images with
Pillow in every mode the reader must convert.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from kubeclr.data.cifar import ROW, pack_tarball

FOLDER_CLASSES = ("cat", "dog", "emu")  # sorted: labels 0, 1, 2


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def varied_image(i: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """File ``i``: name suffix and bytes of one of eight kinds (JPEG, PNG, gray, CMYK, palette, EXIF, RGBA, WebP)."""
    pixels = rng.integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    kind = i % 8
    if kind == 0:
        return ".jpg", encode(img, "JPEG", quality=90)
    if kind == 1:
        return ".png", encode(img, "PNG")
    if kind == 2:
        return ".png", encode(img.convert("L"), "PNG")
    if kind == 3:
        return ".jpg", encode(img.convert("CMYK"), "JPEG", quality=90)
    if kind == 4:
        return ".png", encode(img.convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    if kind == 5:
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
        return ".jpeg", encode(img, "JPEG", quality=90, exif=exif)
    if kind == 6:
        return ".png", encode(img.convert("RGBA"), "PNG")
    return ".webp", encode(img, "WEBP", lossless=True)


def write_image_folder(
    root: Path,
    *,
    classes: tuple[str, ...] = FOLDER_CLASSES,
    train: int = 8,
    test: int = 4,
    val: int = 0,
    unlabeled: int = 0,
    seed: int = 0,
) -> dict[str, int]:
    """A folder in the image folder layout with every kind of file; returns the counts written."""
    rng = np.random.default_rng(seed)
    counts = {"train": train, "test": test, "val": val}
    i = 0
    for split, n in counts.items():
        for cls in classes:
            for k in range(n):
                suffix, data = varied_image(i, rng)
                path = root / split / cls / f"{cls}-{k:03d}{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                i += 1
    for k in range(unlabeled):
        suffix, data = varied_image(k, rng)
        path = root / "unlabeled" / f"u{k:04d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {
        "train": train * len(classes),
        "val": val * len(classes),
        "test": test * len(classes),
        "unlabeled": unlabeled,
    }


def pack_folder(root: Path, archive: Path, *, prefix: str = "") -> Path:
    """Pack ``root`` as ``.zip`` or ``.tar.gz`` (by ``archive``'s name), members under ``prefix``."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for p in files:
                zf.write(p, prefix + p.relative_to(root).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for p in files:
                tar.add(p, prefix + p.relative_to(root).as_posix())
    return archive


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header declares ``width`` × ``height`` grayscale pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def zip_with(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    """A zip of ``members``; with ``symlink``, that name is added as a Unix symbolic link to /etc/passwd."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK | rwx
            zf.writestr(info, "/etc/passwd")
    return path


# -- STL-10 ----------------------------------------------------------------------------


def stl10_images(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 3, 96, 96) with a different row and column structure, so a transposition shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)


def stl10_bytes(images: np.ndarray) -> bytes:
    """The STL-10 ``_X.bin`` encoding: per image, per channel, the 96×96 plane in column-major order."""
    return b"".join(plane.tobytes(order="F") for image in images for plane in image)


def make_stl10_tarball(path: Path, *, train: int = 20, test: int = 10, unlabeled: int = 30, seed: int = 0) -> dict:
    """A ``stl10_binary.tar.gz`` with the real member names; returns the arrays it holds (the oracle)."""
    arrays = {
        "train": (stl10_images(train, seed), (np.arange(train) % 10 + 1).astype(np.uint8)),
        "test": (stl10_images(test, seed + 1), (np.arange(test) % 10 + 1).astype(np.uint8)),
    }
    unl = stl10_images(unlabeled, seed + 2)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    members = {
        "stl10_binary/class_names.txt": ("\n".join(names) + "\n").encode(),
        "stl10_binary/unlabeled_X.bin": stl10_bytes(unl),
        "stl10_binary/fold_indices.txt": b"0 1 2\n",
    }
    for split, (x, y) in arrays.items():
        members[f"stl10_binary/{split}_X.bin"] = stl10_bytes(x)
        members[f"stl10_binary/{split}_y.bin"] = y.tobytes()  # one byte per label, 1-10
    path.write_bytes(pack_tarball(members, compresslevel=1))
    return {"train": arrays["train"], "test": arrays["test"], "unlabeled": unl, "class_names": tuple(names)}


# -- CIFAR-100 -------------------------------------------------------------------------


def dump_cifar100(images: np.ndarray, fine: Sequence[int], coarse: Sequence[int]) -> bytes:
    """Pickle one CIFAR-100 split: uint8 (N, 3, 32, 32) and both label sets."""
    data = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), ROW)
    return pickle.dumps(
        {b"data": data, b"fine_labels": [int(x) for x in fine], b"coarse_labels": [int(x) for x in coarse]},
        protocol=4,
    )


def dump_cifar100_meta(fine_names: Sequence[str], coarse_names: Sequence[str]) -> bytes:
    return pickle.dumps({"fine_label_names": list(fine_names), "coarse_label_names": list(coarse_names)}, protocol=4)


def make_cifar100_tarball(path: Path, *, train: int = 100, test: int = 40, seed: int = 0) -> dict:
    """A ``cifar-100-python.tar.gz`` (5 fine classes per coarse one, like the real set); returns its arrays."""
    rng = np.random.default_rng(seed)
    fine_names = [f"fine{i:02d}" for i in range(100)]
    coarse_names = [f"coarse{i:02d}" for i in range(20)]
    out = {"fine_names": tuple(fine_names), "coarse_names": tuple(coarse_names)}
    members = {"cifar-100-python/meta": dump_cifar100_meta(fine_names, coarse_names)}
    for split, n in (("train", train), ("test", test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        fine = np.arange(n) % 100
        coarse = fine // 5
        members[f"cifar-100-python/{split}"] = dump_cifar100(images, fine, coarse)
        out[split] = (images, fine, coarse)
    path.write_bytes(pack_tarball(members, compresslevel=1))
    return out


# -- datasets without labels -------------------------------------------------------------


def coded_color(code: int) -> tuple[int, int, int]:
    """A colour that names ``code`` (0-255): R is the code; G and B vary, so no channel is constant."""
    return code, 255 - code, (code * 37) % 256


def write_coded_images(root: Path, names: Sequence[str]) -> dict[str, int]:
    """One solid PNG per name (a path under ``root``), coloured by its index; returns ``{name: code}``.

    A decoded image's red value at any pixel is its file's code (PNG is lossless, a solid image resizes to itself).
    """
    codes = {}
    for code, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(solid(coded_color(code)), "PNG"))
        codes[name] = code
    return codes


def make_stl10_unlabelled_tarball(path: Path, *, unlabeled: int = 30, seed: int = 0) -> np.ndarray:
    """A ``stl10_binary.tar.gz`` with ``unlabeled_X.bin`` (and class_names.txt) only; returns its images."""
    unl = stl10_images(unlabeled, seed)
    names = "airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n"
    members = {"stl10_binary/class_names.txt": names.encode(), "stl10_binary/unlabeled_X.bin": stl10_bytes(unl)}
    path.write_bytes(pack_tarball(members, compresslevel=1))
    return unl
