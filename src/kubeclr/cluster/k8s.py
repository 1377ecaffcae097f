"""A minimal Kubernetes REST client (stdlib ``urllib``) for custom resources.

In a pod it uses the service-account token and CA mounted under
``/var/run/secrets/kubernetes.io/serviceaccount``; tests pass an explicit
``base_url`` pointing at a local server. Errors become one-line
:class:`K8sError` messages that name the request and the server's reason.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from kubeclr.errors import UserError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}  # the NVIDIA taint
# Keys of the S3 credentials Secret (manifests/base/kubeclr-s3-credentials-secret.yaml), each exposed to the
# pods under the same name, as boto3 reads them.
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")


class K8sError(UserError):
    """The Kubernetes API server cannot be reached or refuses a request (``status``: HTTP code or None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class K8sApi:
    """A minimal Kubernetes REST client for custom resources.

    Args:
        base_url: API server URL, e.g. ``https://10.0.0.1:443`` or ``http://127.0.0.1:8001``.
        token: bearer token; or ``token_file``, re-read per request (projected tokens rotate).
        ca_file: CA bundle that signs the API server's certificate (https only).
        timeout_s: per-request socket timeout.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token, self._token_file, self.timeout_s = token, token_file, timeout_s
        self._ssl = (
            ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if self.base_url.startswith("https://")
            else None
        )

    @classmethod
    def in_cluster(cls, sa_dir: Path = SA_DIR) -> K8sApi:
        """The API server of the cluster this pod runs in (service-account credentials).

        Raises:
            K8sError: not running in a pod, or no service-account token mounted.
        """
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (sa_dir / "token").is_file():
            raise K8sError(
                "not running inside Kubernetes (KUBERNETES_SERVICE_HOST or the service-account "
                f"token in {sa_dir} is missing); multi-node pretraining must run in a cluster"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token_file=sa_dir / "token", ca_file=sa_dir / "ca.crt")

    def request(
        self, method: str, path: str, body: dict | None = None, *, content_type: str = "application/json"
    ) -> dict:
        """Send one request; return the decoded JSON body (``content_type``: e.g. a merge patch's).

        Raises:
            K8sError: connection failure or a non-2xx answer (with the server's message).
        """
        url = self.base_url + path
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self._token or (self._token_file.read_text().strip() if self._token_file else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise K8sError(f"{method} {url}: HTTP {exc.code} {_status_message(exc)}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise K8sError(f"{method} {url}: cannot reach the Kubernetes API server ({reason})") from None


def own_namespace(sa_dir: Path = SA_DIR) -> str:
    """The namespace of this pod (its service account's), or ``default`` outside a cluster."""
    try:
        return (sa_dir / "namespace").read_text().strip()
    except OSError:
        return "default"


# What a 404 on a job collection means: the operator that serves it is not installed.
MISSING_OPERATOR = {
    "trainjobs": "is Kubeflow Trainer v2.3+ installed? kubectl get clustertrainingruntime torch-distributed",
    "pytorchjobs": "is the Kubeflow Training Operator installed? kubectl get crd pytorchjobs.kubeflow.org",
}


def _status_message(exc: urllib.error.HTTPError) -> str:
    try:
        status = json.loads(exc.read() or b"{}")
    except ValueError:
        status = {}
    plural = next((p for p in MISSING_OPERATOR if f"/{p}" in exc.url), "")
    hint = {
        403: " (the pipeline's service account needs create/get/delete on this resource; see manifests RBAC)",
        404: f" ({MISSING_OPERATOR[plural]})" if plural else " (no such resource)",
        409: " (a job with this name already exists)",
    }.get(exc.code, "")
    return (status.get("message") or exc.reason or "").strip() + hint
