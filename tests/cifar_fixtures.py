"""Tiny CIFAR-10 python tarballs for tests: well-formed ones and hostile ones.

``make_cifar_tarball(path, per_batch=20, seed=0) -> md5`` writes a valid
tarball in the exact CIFAR-10 layout (random pixels, balanced labels); other
test modules import it. The helpers below build the broken and malicious
variants the data step must refuse.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from kubeclr.data.cifar import META, ROOT, TEST_BATCH, TRAIN_BATCHES, dump_batch, dump_meta, pack_tarball

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES = (*TRAIN_BATCHES, TEST_BATCH)


def batch_arrays(per_batch: int = 20, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{batch name: (images uint8 (n,3,32,32), labels int64 (n,))}`` with balanced labels."""
    out = {}
    for i, name in enumerate(BATCHES):
        rng = np.random.default_rng([seed, i])
        labels = rng.permutation(np.arange(per_batch) % len(CLASS_NAMES)).astype(np.int64)
        images = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        out[name] = (images, labels)
    return out


def cifar_members(per_batch: int = 20, seed: int = 0) -> dict[str, bytes]:
    """The seven pickled members of a valid tarball, keyed by their path in the archive."""
    members = {f"{ROOT}/{META}": dump_meta(CLASS_NAMES, per_batch)}
    for name, (images, labels) in batch_arrays(per_batch, seed).items():
        members[f"{ROOT}/{name}"] = dump_batch(images, labels, batch_label=name)
    members[f"{ROOT}/readme.html"] = b"<html>not a batch</html>"  # the real tarball has one too
    return members


def write_tarball(path: str | Path, members: Mapping[str, bytes], extra: Iterable[tarfile.TarInfo] = ()) -> str:
    """Write ``members`` (plus raw ``extra`` headers: links, devices, odd names) as .tar.gz; return its MD5."""
    extra = list(extra)
    if extra:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for info in extra:
                data = b"x"  # a regular member's content does not matter: its header is the test
                info.size = len(data) if info.isfile() else 0
                tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        blob = buf.getvalue()
    else:
        blob = pack_tarball(members)
    Path(path).write_bytes(blob)
    return hashlib.md5(blob).hexdigest()


def make_cifar_tarball(path: str | Path, per_batch: int = 20, seed: int = 0) -> str:
    """Write a valid CIFAR-10-layout ``.tar.gz`` with ``per_batch`` images per batch; return its MD5."""
    return write_tarball(path, cifar_members(per_batch, seed))


def member(name: str, *, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    """A raw tar header (e.g. ``member("../x")``, ``member("l", kind=tarfile.SYMTYPE, linkname="/etc/passwd")``)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates ``marker`` if it ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_batch(marker: Path) -> bytes:
    """A batch pickle whose ``data`` would create ``marker`` when unpickled by plain ``pickle``."""
    import pickle

    return pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=4)
