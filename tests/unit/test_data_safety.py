"""Every bad input to ``download_split`` fails with one line naming the cause and writes nothing."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from cifar_fixtures import cifar_members, evil_batch, member, write_tarball

from kubeclr.config import Config
from kubeclr.data.cifar import ROOT
from kubeclr.data.safe_pickle import safe_loads
from kubeclr.errors import DataError, UserError
from kubeclr.steps.download_split import run as download_split


def _cfg(source: Path, md5: str, tmp_path: Path) -> Config:
    return Config().override({"data.source": str(source), "data.md5": md5, "data.cache_dir": str(tmp_path / "cache")})


def _run_and_expect(tmp_path: Path, source: Path, md5: str, *needles: str) -> str:
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        download_split(_cfg(source, md5, tmp_path), out / "train.npz", out / "val.npz", out / "test.npz")
    message = str(info.value)
    assert "\n" not in message
    assert str(source) in message
    for needle in needles:
        assert needle in message
    # Nothing half-written: no output file, and no temporary left behind either.
    assert not out.exists() or list(out.iterdir()) == []
    return message


def _members_with(name: str, data: bytes) -> dict[str, bytes]:
    members = cifar_members(per_batch=10)
    members[f"{ROOT}/{name}"] = data
    return members


def _batch(data, labels) -> bytes:
    return pickle.dumps({b"data": data, b"labels": labels}, protocol=4)


def test_md5_mismatch_names_both_hashes(tmp_path):
    src = tmp_path / "c.tar.gz"
    actual = write_tarball(src, cifar_members(per_batch=10))
    _run_and_expect(tmp_path, src, "0" * 32, "MD5 mismatch", "0" * 32, actual)


def test_truncated_gzip(tmp_path):
    src = tmp_path / "c.tar.gz"
    write_tarball(src, cifar_members(per_batch=10))
    src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _run_and_expect(tmp_path, src, "none", "truncated")


def test_not_a_tarball(tmp_path):
    src = tmp_path / "c.tar.gz"
    src.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _run_and_expect(tmp_path, src, "none", "not a readable tar archive")


def test_missing_file(tmp_path):
    _run_and_expect(tmp_path, tmp_path / "nope.tar.gz", "none", "no such file")


@pytest.mark.parametrize(
    "bad, needle",
    [
        (member("../x"), "'..'"),
        (member(f"{ROOT}/../../x"), "'..'"),
        (member("/tmp/abs"), "absolute path"),
        (member("link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
        (member("hard", kind=tarfile.LNKTYPE, linkname=f"{ROOT}/batches.meta"), "hard link"),
        (member("dev", kind=tarfile.CHRTYPE), "device"),
        (member("fifo", kind=tarfile.FIFOTYPE), "device or FIFO"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "chardev", "fifo"],
)
def test_unsafe_members_are_refused(tmp_path, bad, needle):
    src = tmp_path / "c.tar.gz"
    write_tarball(src, cifar_members(per_batch=10), extra=[bad])
    _run_and_expect(tmp_path, src, "none", needle, repr(bad.name))
    assert not (tmp_path / "x").exists() and not Path("/tmp/abs").exists()


def test_pickle_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "c.tar.gz"
    write_tarball(src, _members_with("data_batch_2", evil_batch(marker)))
    _run_and_expect(tmp_path, src, "none", "data_batch_2", "refusing to load global")
    assert not marker.exists()
    # The oracle: plain pickle *would* have run it, so the test above can fail.
    pickle.loads(evil_batch(marker))
    assert marker.exists()


def test_unknown_codec_in_a_pickle_is_a_data_error():
    payload = b"c_codecs\nencode\n(Vx\nVno-such-codec\ntR."  # protocol 0: _codecs.encode('x', 'no-such-codec')
    with pytest.raises(DataError, match="corrupt pickle|unsafe or corrupt pickle"):
        safe_loads(payload, origin="x")


@pytest.mark.parametrize("global_name", ["os system", "builtins eval", "numpy load", "subprocess Popen"])
def test_unpickler_refuses_other_globals(global_name):
    module, name = global_name.split()
    payload = f"c{module}\n{name}\n(S'true'\ntR.".encode()  # protocol 0: GLOBAL, then REDUCE
    with pytest.raises(DataError, match=f"refusing to load global {module}.{name}"):
        safe_loads(payload, origin="x")


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("data_batch_1", _batch(np.zeros((10, 3071), np.uint8), [0] * 10), "expected (N, 3072) uint8"),
        ("data_batch_1", _batch(np.zeros((10, 3072), np.float32), [0] * 10), "expected (N, 3072) uint8"),
        ("test_batch", _batch(np.zeros((10, 3072), np.uint8), [0] * 9 + [10]), "label 10 is outside 0..9"),
        ("data_batch_4", _batch(np.zeros((10, 3072), np.uint8), [-1] * 10), "label -1 is outside"),
        ("data_batch_3", _batch(np.zeros((10, 3072), np.uint8), [0] * 9), "10 images but 9 labels"),
        ("data_batch_5", pickle.dumps([1, 2, 3], protocol=4), "expected a dict"),
        ("batches.meta", pickle.dumps({b"names": []}, protocol=4), "label_names"),
        ("data_batch_1", b"\x80\x04garbage", "corrupt pickle"),
    ],
    ids=["shape", "dtype", "label10", "negative", "count", "not-dict", "meta", "garbage"],
)
def test_malformed_batches(tmp_path, name, data, needle):
    src = tmp_path / "c.tar.gz"
    write_tarball(src, _members_with(name, data))
    message = _run_and_expect(tmp_path, src, "none", needle)
    assert name in message


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch", "batches.meta"])
def test_missing_batch(tmp_path, missing):
    members = cifar_members(per_batch=10)
    del members[f"{ROOT}/{missing}"]
    src = tmp_path / "c.tar.gz"
    write_tarball(src, members)
    _run_and_expect(tmp_path, src, "none", f"missing {ROOT}/{missing}")


def test_errors_are_user_errors():
    assert issubclass(DataError, UserError)


@pytest.mark.parametrize("variant", ["protocol2", "protocol4", "protocol5", "numpy1-names"])
def test_unpickler_accepts_the_encodings_cifar_batches_use(variant):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    protocol = {"protocol2": 2, "protocol4": 4, "protocol5": 5, "numpy1-names": 2}[variant]
    blob = pickle.dumps({b"data": data, b"labels": [3, 9]}, protocol=protocol)
    if variant == "numpy1-names":  # how the original (numpy 1.x era) batches name the reconstructor
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    loaded = safe_loads(blob, origin="x")
    np.testing.assert_array_equal(loaded[b"data"], data)
    assert loaded[b"labels"] == [3, 9]


def test_codecs_encode_is_latin1_only():
    payload = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(DataError, match="rot13"):
        safe_loads(payload, origin="x")
