"""The data source's fingerprint (the data step's cache key): equal content, equal digest; any change, a new one."""

from __future__ import annotations

import pytest

from kubeclr.config import Config
from kubeclr.errors import DataError
from kubeclr.steps.fingerprint import run as fingerprint
from kubeclr.storage.fingerprint import source_fingerprint
from tests.dataset_fixtures import write_image_folder


def _data(**values):
    return Config().override({f"data.{k}": v for k, v in values.items()}).data


def test_a_local_folder_changes_with_any_file(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, train=2, test=1)
    d = _data(format="imagefolder", source=str(root))
    first = source_fingerprint(d)
    (root / "train" / "cat" / "cat-000.jpg").touch()  # a new mtime, same bytes: same content
    assert source_fingerprint(d) == first
    victim = next((root / "test" / "dog").iterdir())
    data = victim.read_bytes()
    victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    changed = source_fingerprint(d)
    assert changed != first
    (root / "train" / "cat" / "extra.png").write_bytes(data)
    assert source_fingerprint(d) not in (first, changed)


def test_the_format_and_the_sample_parameters_are_part_of_it(tmp_path):
    tarball = tmp_path / "c.tar.gz"
    tarball.write_bytes(b"same bytes")
    a = source_fingerprint(_data(format="cifar10", source=str(tarball), md5="none"))
    b = source_fingerprint(_data(format="cifar100", source=str(tarball), md5="none"))
    assert a != b
    s1, s2 = (source_fingerprint(_data(source="sample", sample_per_class=n)) for n in (10, 20))
    assert s1 != s2 and s1 == source_fingerprint(_data(source="sample", sample_per_class=10))


def test_a_pinned_download_is_fingerprinted_by_url_and_md5_without_a_request():
    d = _data()  # the canonical CIFAR-10 URL: no network here, and none is needed
    assert source_fingerprint(d) == source_fingerprint(_data())


def test_the_task_reads_the_data_section_of_the_struct(tmp_path):
    root = tmp_path / "ds"
    write_image_folder(root, train=2, test=1)
    digest = fingerprint({"data": {"seed": 3}, "model": {"width": 8}}, str(root), "none", "imagefolder")
    assert digest == source_fingerprint(_data(format="imagefolder", source=str(root), seed=3))
    with pytest.raises(DataError, match="no such file or folder"):
        fingerprint({}, str(tmp_path / "missing"), "none", "imagefolder")
