"""A local HTTP server that plays the Kubeflow Model Registry REST API (v1) for one registration.

It serves what ``model_registry.ModelRegistry`` calls to connect (list registered models) and to
``register_model``: find a registered model by
name (404 when there is none), create one, find a version by name and parent (404), create a
version, and add an artifact to it. Every object gets a server id and timestamps; every request
is recorded.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from servers import send_json

API = "/api/model_registry/v1"


@dataclass
class FakeRegistry:
    models: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    artifacts: dict[str, list[dict]] = field(default_factory=dict)  # by version id
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 1

    def new(self, body: dict, **extra: Any) -> dict:
        obj = {**body, **extra, "id": str(self.next_id), "createTimeSinceEpoch": "1", "lastUpdateTimeSinceEpoch": "1"}
        self.next_id += 1
        return obj


def _not_found(handler: BaseHTTPRequestHandler, what: str) -> None:
    send_json(handler, 404, {"code": "404", "message": f"no {what} found"})


class _Handler(BaseHTTPRequestHandler):
    state: FakeRegistry

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        st = self.state
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = url.path.removeprefix(API)
        with st.lock:
            st.requests.append((self.command, path, body))
            if self.command == "GET" and path == "/registered_model":
                hit = [m for m in st.models.values() if m["name"] == query.get("name")]
                return send_json(self, 200, hit[0]) if hit else _not_found(self, "registered model")
            if self.command == "GET" and path == "/registered_models":  # the client's first call: a ping
                items = list(st.models.values())[: int(query.get("pageSize", 100))]
                return send_json(
                    self, 200, {"items": items, "nextPageToken": "", "pageSize": len(items), "size": len(items)}
                )
            if self.command == "POST" and path == "/registered_models":
                model = st.new(body, state="LIVE")
                st.models[model["id"]] = model
                return send_json(self, 201, model)
            if self.command == "GET" and path == "/model_version":
                hit = [
                    v
                    for v in st.versions.values()
                    if v["name"] == query.get("name") and v["registeredModelId"] == query.get("parentResourceId")
                ]
                return send_json(self, 200, hit[0]) if hit else _not_found(self, "model version")
            if self.command == "POST" and path == "/model_versions":
                if body.get("registeredModelId") not in st.models:
                    return _not_found(self, "registered model")
                version = st.new(body, state="LIVE")
                st.versions[version["id"]] = version
                return send_json(self, 201, version)
            parts = path.strip("/").split("/")
            if self.command == "POST" and len(parts) == 3 and parts[0] == "model_versions" and parts[2] == "artifacts":
                if parts[1] not in st.versions:
                    return _not_found(self, "model version")
                artifact = st.new(body)
                st.artifacts.setdefault(parts[1], []).append(artifact)
                return send_json(self, 201, artifact)
        send_json(self, 404, {"code": "404", "message": f"{self.command} {self.path}: not served by this fake"})

    do_GET = do_POST = do_PATCH = _handle


class FakeRegistryServer:
    """``with FakeRegistryServer() as srv:`` → ``srv.url`` serves the registry on 127.0.0.1."""

    def __init__(self, state: FakeRegistry | None = None) -> None:
        self.state = state or FakeRegistry()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeRegistryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
