"""Fetching the tarball: cached and resumable HTTP downloads, file sources, the mirror."""

from __future__ import annotations

import http.server
import re
import socket
import threading
from pathlib import Path

import pytest
from cifar_fixtures import make_cifar_tarball

from kubeclr.config import Config, DataConfig
from kubeclr.errors import ConfigError, DataError
from kubeclr.steps.download_split import run as download_split
from kubeclr.storage.sources import MIRROR_NAME, cache_path, fetch_tarball


class _Server:
    """A loopback HTTP server for one file; it records requests and can misbehave on purpose."""

    def __init__(self, body: bytes) -> None:
        self.body, self.requests = body, []
        self.honour_range, self.cut_after, self.status = True, None, 200
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append(dict(self.headers))
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start, rng = 0, self.headers.get("Range")
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
                else:
                    self.send_response(200)
                payload = server.body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                # cut_after: send only part of the body, then drop the connection.
                self.wfile.write(payload if server.cut_after is None else payload[: server.cut_after])
                self.wfile.flush()
                if server.cut_after is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def tarball(tmp_path):
    path = tmp_path / "src" / "cifar-10-python.tar.gz"
    path.parent.mkdir()
    md5 = make_cifar_tarball(path, per_batch=10)
    return path, md5


@pytest.fixture()
def server(tarball):
    srv = _Server(tarball[0].read_bytes())
    yield srv
    srv.close()


def _data_cfg(tmp_path, source, md5, **extra):
    values = {"data.source": str(source), "data.md5": md5, "data.cache_dir": str(tmp_path / "cache"), **extra}
    return Config().override(values)


def test_download_is_cached(tmp_path, tarball, server):
    cfg = _data_cfg(tmp_path, server.url, tarball[1])
    first = fetch_tarball(cfg.data)
    assert first.md5 == tarball[1] and Path(first.data).read_bytes() == tarball[0].read_bytes()
    second = fetch_tarball(cfg.data)
    assert second.data == first.data
    assert len(server.requests) == 1  # the verified cached copy was reused


def test_interrupted_download_resumes_with_range(tmp_path, tarball, server):
    cfg = _data_cfg(tmp_path, server.url, tarball[1])
    server.cut_after = 1000
    with pytest.raises(DataError, match="broke off after 1000"):
        fetch_tarball(cfg.data)
    dest = cache_path(cfg.data.cache_dir, server.url)
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 1000 and not dest.exists()
    server.cut_after = None
    got = fetch_tarball(cfg.data)
    assert server.requests[-1].get("Range") == "bytes=1000-"
    assert got.md5 == tarball[1] and not part.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path, tarball, server):
    cfg = _data_cfg(tmp_path, server.url, tarball[1])
    dest = cache_path(cfg.data.cache_dir, server.url)
    dest.parent.mkdir(parents=True)
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes")
    server.honour_range = False
    assert fetch_tarball(cfg.data).md5 == tarball[1]


def test_downloaded_md5_mismatch_is_not_cached(tmp_path, tarball, server):
    cfg = _data_cfg(tmp_path, server.url, "f" * 32)
    with pytest.raises(DataError, match=f"MD5 mismatch \\(expected {'f' * 32}, got {tarball[1]}\\)"):
        fetch_tarball(cfg.data)
    assert not cache_path(cfg.data.cache_dir, server.url).exists()


def test_http_error_names_url(tmp_path, tarball, server):
    server.status = 404
    out = tmp_path / "out"
    with pytest.raises(DataError, match="HTTP error 404") as info:
        download_split(_data_cfg(tmp_path, server.url, tarball[1]), out / "a", out / "b", out / "c")
    assert server.url in str(info.value)
    assert not out.exists()


def test_unreachable_url(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    with pytest.raises(DataError, match="cannot download") as info:
        fetch_tarball(_data_cfg(tmp_path, url, "none").data)
    assert url in str(info.value)


@pytest.mark.parametrize("as_uri", [True, False], ids=["file-uri", "plain-path"])
def test_file_sources(tmp_path, tarball, as_uri):
    source = tarball[0].as_uri() if as_uri else str(tarball[0])
    got = fetch_tarball(_data_cfg(tmp_path, source, tarball[1]).data)
    assert Path(got.data) == tarball[0] and got.md5 == tarball[1] and not got.synthetic


def test_malformed_md5_is_a_config_error(tmp_path, tarball):
    with pytest.raises(ConfigError, match="data.md5"):
        fetch_tarball(_data_cfg(tmp_path, tarball[0], "abc").data)


def test_unsupported_scheme_names_the_allowed_forms(tmp_path):
    allowed = re.escape("(allowed: http(s)://, s3://, file://, a path, 'sample' or 'sample-folder')")
    with pytest.raises(ConfigError, match=r"data.source='ftp://x/y.tar.gz' has an unsupported scheme " + allowed):
        _data_cfg(tmp_path, "ftp://x/y.tar.gz", "none")
    # a DataConfig made without the config checks still fails in the fetch, naming the URI
    with pytest.raises(DataError, match=r"^data.source='ftp://x/y.tar.gz' has an unsupported scheme " + allowed):
        fetch_tarball(DataConfig(source="ftp://x/y.tar.gz", md5="none", cache_dir=str(tmp_path)))


@pytest.mark.parametrize("key", ["storage.checkpoint_uri", "storage.mirror_uri", "storage.export_uri", "model.init"])
def test_store_uris_with_an_unsupported_scheme_fail_at_config_time(key):
    with pytest.raises(
        ConfigError,
        match=rf"{re.escape(key)}: gs://b/x: unsupported scheme "
        r"\(allowed: s3://, file://, or a path\)",
    ):
        Config().override({key: "gs://b/x"})


def test_mirror_is_filled_then_used(tmp_path, tarball, server):
    mirror = tmp_path / "mirror"
    cfg = _data_cfg(tmp_path, server.url, tarball[1], **{"storage.mirror_uri": mirror.as_uri()})
    fetch_tarball(cfg.data, cfg.storage.mirror_uri)
    mirrored = mirror / tarball[1] / MIRROR_NAME
    assert mirrored.read_bytes() == tarball[0].read_bytes()
    # With the mirror filled, the (now failing) source is never asked.
    server.status = 500
    (tmp_path / "cache").rename(tmp_path / "old-cache")
    got = fetch_tarball(cfg.data, cfg.storage.mirror_uri)
    assert got.md5 == tarball[1] and len(server.requests) == 1


def test_corrupt_mirror_copy_falls_back_to_source(tmp_path, tarball, server):
    mirror = tmp_path / "mirror"
    (mirror / tarball[1]).mkdir(parents=True)
    (mirror / tarball[1] / MIRROR_NAME).write_bytes(b"corrupt")
    cfg = _data_cfg(tmp_path, server.url, tarball[1], **{"storage.mirror_uri": str(mirror)})
    assert fetch_tarball(cfg.data, cfg.storage.mirror_uri).md5 == tarball[1]
    assert len(server.requests) == 1
    assert (mirror / tarball[1] / MIRROR_NAME).read_bytes() == tarball[0].read_bytes()  # repaired


def test_unwritable_cache_dir_is_named(tmp_path, server, tarball):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    cfg = Config().override({"data.source": server.url, "data.md5": tarball[1], "data.cache_dir": str(blocker)})
    with pytest.raises(DataError, match="data.cache_dir"):
        fetch_tarball(cfg.data)
