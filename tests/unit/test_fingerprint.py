"""The data source's fingerprint (the data step's cache key): equal content, equal digest; any change, a new one."""

from __future__ import annotations

import pytest

from kubeclr.config import Config
from kubeclr.errors import DataError
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


def test_a_pinned_file_is_fingerprinted_by_uri_and_md5_without_reaching_it(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the fingerprint of a pinned download must not reach the server")

    monkeypatch.setattr("kubeclr.storage.fingerprint.urlopen", refuse)
    a, b = source_fingerprint(_data()), source_fingerprint(_data(md5="0" * 32))  # the canonical CIFAR-10 URL
    assert a != b and a == source_fingerprint(_data())
    gone = _data(source=str(tmp_path / "gone.tar.gz"))  # a mirror may hold it: the data step decides
    assert source_fingerprint(gone) != a


def test_an_unpinned_download_uses_the_server_tags_or_never_repeats(monkeypatch):
    import io
    import urllib.error

    class Response(io.BytesIO):
        headers = {"ETag": '"abc"', "Last-Modified": None, "Content-Length": "10"}

    monkeypatch.setattr("kubeclr.storage.fingerprint.urlopen", lambda *a, **k: Response())
    d = _data(source="https://example.test/data.tar.gz", md5="none")
    assert source_fingerprint(d) == source_fingerprint(d)

    def refused(*args, **kwargs):
        raise urllib.error.HTTPError("https://example.test/data.tar.gz", 405, "Method Not Allowed", {}, None)

    monkeypatch.setattr("kubeclr.storage.fingerprint.urlopen", refused)
    assert source_fingerprint(d) != source_fingerprint(d)  # nothing pins the content: never a cache hit


def test_resolve_config_fingerprints_the_resolved_data_section(tmp_path):
    """The first task resolves the config, then fingerprints its data section (the data step's cache key)."""
    from kubeclr.config import load_config, pipeline_parameters
    from kubeclr.steps.resolve_config import run as resolve_config

    root = tmp_path / "ds"
    write_image_folder(root, train=2, test=1)
    ui, struct = pipeline_parameters(load_config("smoke", overrides=["data.sample_per_class=7"]))
    config, digest, *_ = resolve_config(struct, ui, ())
    assert digest == source_fingerprint(_data(source="sample", sample_per_class=7))
    assert config["data"]["sample_per_class"] == 7
    folder = {**ui, "data_format": "imagefolder", "data_source": str(root)}
    assert resolve_config(struct, folder, ())[1] == source_fingerprint(_data(format="imagefolder", source=str(root)))
    with pytest.raises(DataError, match="no such file or folder"):
        resolve_config(struct, {**folder, "data_source": str(tmp_path / "missing")}, ())
