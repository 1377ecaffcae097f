"""A local stand-in for the Kubeflow Pipelines v2beta1 REST API.

No KFP API server can run on the build machines, so the client tests talk to
this one: a ``ThreadingHTTPServer`` on 127.0.0.1 that serves the endpoints
``kfp.Client`` 2.17 calls for upload / submit / schedule (paths from
``kfp_server_api/api/*.py``), keeps pipelines, versions, experiments, runs and
recurring runs in memory, and records every request for assertions.

Usage::

    with FakeKfpServer(token="t0k") as server:
        client = kfp_client.connect(server.url, existing_token="t0k")
        ...
        server.find("POST", "/apis/v2beta1/runs")[0].json
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from servers import send_json

API = "/apis/v2beta1"


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    json: Any = None
    files: dict[str, bytes] = field(default_factory=dict)  # multipart file parts by field name


class FakeKfpServer:
    """In-memory KFP v2beta1 API with request recording.

    Args:
        token: when set, every request must carry ``Authorization: Bearer <token>`` (else 401).
        cookie: when set, every request must carry this exact ``Cookie`` header (else 401).
        multi_user: the ``multi_user`` flag healthz reports.

    Set ``stall_path`` to a path to make requests there hang (recorded, then no
    answer until the server stops) -- for client timeouts.
    """

    def __init__(self, token: str | None = None, cookie: str | None = None, multi_user: bool = False):
        self.token, self.cookie, self.multi_user = token, cookie, multi_user
        self.stall_path: str | None = None
        self._stop = threading.Event()
        self.requests: list[Recorded] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def find(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests with this method and exact path (no query)."""
        return [r for r in self.requests if r.method == method and r.path == path]

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):04d}"

    # ------------------------------------------------------------------ routing

    def handle(self, req: Recorded) -> tuple[int, dict]:
        """Answer one request: (HTTP status, JSON body)."""
        auth = req.headers.get("authorization")
        if self.token is not None and auth != f"Bearer {self.token}":
            return 401, _error(16, "Request header error: there is no user identity header.")
        if self.cookie is not None and req.headers.get("cookie") != self.cookie:
            return 401, _error(16, "missing or wrong session cookie")
        route = (req.method, req.path)
        if route == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if route == ("GET", f"{API}/pipelines"):
            return 200, _listing("pipelines", self.pipelines.values(), req)
        if route == ("POST", f"{API}/pipelines/upload"):
            return self._upload(req)
        if route == ("POST", f"{API}/pipelines/upload_version"):
            return self._upload_version(req)
        if route == ("GET", f"{API}/experiments"):
            return 200, _listing("experiments", self.experiments.values(), req)
        if route == ("POST", f"{API}/experiments"):
            exp = dict(req.json, experiment_id=self.new_id("exp"), storage_state="AVAILABLE")
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if route == ("POST", f"{API}/runs"):
            return self._create_in_experiment(req, self.runs, "run_id", "run", state="PENDING")
        if route == ("POST", f"{API}/recurringruns"):
            return self._create_in_experiment(req, self.recurring_runs, "recurring_run_id", "rr", status="ENABLED")
        return 404, _error(5, f"Not Found: {req.method} {req.path}")

    def _create_in_experiment(
        self, req: Recorded, store: dict, id_key: str, prefix: str, **fields: Any
    ) -> tuple[int, dict]:
        """A run or recurring run: its experiment must exist; the server adds an id and a state."""
        if req.json.get("experiment_id") not in self.experiments:
            return 404, _error(5, f"experiment {req.json.get('experiment_id')} not found")
        obj = dict(req.json, **{id_key: self.new_id(prefix)}, **fields)
        store[obj[id_key]] = obj
        return 200, obj

    def _upload(self, req: Recorded) -> tuple[int, dict]:
        name = _one(req.query, "name") or _one(req.query, "display_name")
        if "uploadfile" not in req.files:
            return 400, _error(3, "Failed to create a pipeline. uploadfile is missing")
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return 409, _error(6, f"Failed to create a pipeline. The name {name} already exists")
        pipeline = {
            "pipeline_id": self.new_id("pl"),
            "display_name": name,
            "name": name,
            "description": _one(req.query, "description") or "",
            "namespace": _one(req.query, "namespace") or "",
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, req.files["uploadfile"])
        return 200, pipeline

    def _upload_version(self, req: Recorded) -> tuple[int, dict]:
        pipeline_id = _one(req.query, "pipelineid")
        if pipeline_id not in self.pipelines:
            return 404, _error(5, f"Pipeline {pipeline_id} not found")
        name = _one(req.query, "name") or _one(req.query, "display_name")
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name for v in self.versions.values()):
            return 409, _error(6, f"The name {name} already exists")
        return 200, self._add_version(pipeline_id, name, req.files.get("uploadfile", b""))

    def _add_version(self, pipeline_id: str, name: str, package: bytes) -> dict:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": self.new_id("ver"),
            "display_name": name,
            "name": name,
            "package_bytes": len(package),
        }
        self.versions[version["pipeline_version_id"]] = version
        return version


def _error(code: int, message: str) -> dict:
    """grpc-gateway's error body."""
    return {"error": message, "code": code, "message": message, "details": []}


def _one(query: dict[str, list[str]], key: str) -> str | None:
    return query.get(key, [None])[0]


def _listing(kind: str, items, req: Recorded) -> dict:
    """List with KFP's JSON filter (EQUALS predicates only) and namespace."""
    items = list(items)
    raw = _one(req.query, "filter")
    for predicate in json.loads(raw).get("predicates", []) if raw else []:
        items = [i for i in items if str(i.get(predicate["key"])) == predicate.get("stringValue")]
    namespace = _one(req.query, "namespace")
    if namespace:
        items = [i for i in items if i.get("namespace") in (None, "", namespace)]
    return {kind: items, "total_size": len(items)} if items else {}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


def _handler_for(server: FakeKfpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            split = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            req = Recorded(
                self.command, split.path, parse_qs(split.query), {k.lower(): v for k, v in self.headers.items()}
            )
            if ctype.startswith("multipart/form-data"):
                req.files = _parse_multipart(ctype, body)
            elif body:
                req.json = json.loads(body)
            with server._lock:
                server.requests.append(req)
            if req.path == server.stall_path:
                server._stop.wait(30)
                return
            with server._lock:
                status, payload = server.handle(req)
            send_json(self, status, payload)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    return Handler
