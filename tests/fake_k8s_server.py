"""A local HTTP server that plays the Kubernetes API for one custom resource.

It serves ``POST``/``GET``/``DELETE`` (and a merge ``PATCH``) on
``/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]`` the way the API
server does for a PyTorchJob, records every request, and answers GETs from a
per-test *script*: a list of condition lists, one per GET, the last repeated
(so ``[[created, running]]`` stays Running forever). ``on_create`` runs when a
job is created — tests use it to play the job's rank 0 (write outputs to the
object store before the scripted ``Succeeded`` is served).
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from servers import send_json

PATH = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/?]+))?(?:\?.*)?$"
)


def expand(arg: str, env: dict[str, str] | None = None) -> str:
    """What a container receives for one ``command``/``args`` item, as the kubelet expands it.

    ``$$`` becomes ``$``; ``$(VAR)`` becomes the value of ``VAR`` when the container
    defines it and stays as written otherwise (Kubernetes API reference,
    "Container.args").
    """
    env = env or {}

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, arg)


def condition(kind: str, reason: str = "", message: str = "") -> dict:
    """One ``status.conditions`` entry as the training operator writes it."""
    return {
        "type": kind,
        "status": "True",
        "reason": reason or f"PyTorchJob{kind}",
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


def trainjob_condition(kind: str, reason: str, message: str = "") -> dict:
    """A TrainJob condition as Trainer v2.3 writes it (types Complete, Failed, Suspended only)."""
    return {**condition(kind, reason, message), "reason": reason}


CREATED = condition("Created", "PyTorchJobCreated", "PyTorchJob is created.")
RUNNING = condition("Running", "PyTorchJobRunning", "PyTorchJob is running.")
SUCCEEDED = condition("Succeeded", "PyTorchJobSucceeded", "PyTorchJob successfully completed.")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: mappings merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


@dataclass
class FakeK8s:
    """State shared with the handler. ``script`` entries are lists of conditions."""

    script: list[list[dict] | dict] = field(
        default_factory=lambda: [[CREATED, RUNNING], [CREATED, RUNNING, SUCCEEDED]]
    )  # a list of conditions, or a whole status (TrainJob: conditions + jobsStatus)
    status_fn: Callable[[dict], dict] | None = None  # when set: the status of each GET, from the job
    on_create: Callable[[dict], None] | None = None
    token: str | None = None
    refuse: int | None = None  # answer every request with this HTTP status (e.g. 403)
    plurals: tuple[str, ...] = ("pytorchjobs", "trainjobs")  # the CRDs installed; others answer 404
    flaky_gets: int = 0  # answer this many GETs of a job with 503 first (an API server blip)
    requests: list[Recorded] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)
    gets: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, method: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method]


class _Handler(BaseHTTPRequestHandler):
    state: FakeK8s  # set on the subclass made per server

    def log_message(self, fmt: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, code: int, obj: dict) -> None:
        send_json(self, code, obj)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _handle(self) -> None:
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with st.lock:
            st.requests.append(Recorded(self.command, self.path, body, dict(self.headers.items())))
            if st.refuse:
                return self._status(st.refuse, "Forbidden", "pytorchjobs.kubeflow.org is forbidden")
            if st.token and self.headers.get("Authorization") != f"Bearer {st.token}":
                return self._status(401, "Unauthorized", "Unauthorized")
            m = PATH.match(self.path)
            if not m:
                return self._status(404, "NotFound", f"the server could not find {self.path}")
            name = m["name"]
            if m["plural"] not in st.plurals:
                return self._status(404, "NotFound", "the server could not find the requested resource")
            if self.command == "POST" and not name:
                key = f"{m['ns']}/{body['metadata']['name']}"
                if key in st.jobs:
                    return self._status(409, "AlreadyExists", f'{m["plural"]} "{key}" already exists')
                st.jobs[key] = body
                st.gets = 0
                hook = st.on_create
            elif name and f"{m['ns']}/{name}" not in st.jobs:
                return self._status(404, "NotFound", f'{m["plural"]} "{name}" not found')
            elif self.command == "GET" and name and st.flaky_gets > 0:
                st.flaky_gets -= 1
                return self._status(503, "ServiceUnavailable", "etcd leader changed")
            elif self.command == "GET" and name:
                job = dict(st.jobs[f"{m['ns']}/{name}"])
                step = st.script[min(st.gets, len(st.script) - 1)]
                job["status"] = (
                    st.status_fn(job) if st.status_fn else step if isinstance(step, dict) else {"conditions": step}
                )
                st.gets += 1
                return self._send(200, job)
            elif self.command == "DELETE" and name:
                return self._send(200, st.jobs.pop(f"{m['ns']}/{name}"))
            elif self.command == "PATCH" and name:  # a JSON merge patch (RFC 7386), as kubectl patch --type merge
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self._status(415, "UnsupportedMediaType", f"{self.headers.get('Content-Type')}")
                key = f"{m['ns']}/{name}"
                st.jobs[key] = merge_patch(st.jobs[key], body)
                return self._send(200, st.jobs[key])
            else:
                return self._status(405, "MethodNotAllowed", f"{self.command} {self.path}")
        if hook:  # outside the lock: the hook may be slow (writes files)
            hook(body)
        self._send(201, body)

    do_GET = do_POST = do_DELETE = do_PATCH = _handle


class FakeK8sServer:
    """``with FakeK8sServer(FakeK8s(...)) as srv:`` → ``srv.url`` serves the API on 127.0.0.1."""

    def __init__(self, state: FakeK8s | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.state = state or FakeK8s()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._httpd.server_address[1]
        if tls:  # serve https like a real API server (in-cluster config is https-only)
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeK8sServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
