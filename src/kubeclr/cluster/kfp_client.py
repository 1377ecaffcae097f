"""Connecting to a Kubeflow Pipelines API server, and its errors as one line each.

:func:`connect` checks the host, the token and TLS at the first request;
:func:`calls` turns whatever the server or the network says during an action
into a :class:`~kubeclr.cluster.kfp_checks.KfpError` with one line naming the
cause; nothing retries for minutes. The actions are :mod:`kubeclr.cluster.kfp_runs`.

Auth for multi-user Kubeflow follows ``kfp.Client``: ``existing_token`` is sent
as ``Authorization: Bearer <token>`` (when not given, the ``KF_PIPELINES_TOKEN``
environment variable is used -- our convention, so tokens stay off command
lines); ``cookies`` is sent verbatim as the ``Cookie`` header (e.g.
``authservice_session=...`` behind Dex/oauth2-proxy); ``namespace`` is the
profile namespace runs and experiments go to. ``kfp.Client`` itself reads
``KF_PIPELINES_ENDPOINT`` (host) and ``~/.config/kfp/context.json``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import certifi
import kfp
import kfp_server_api
import urllib3

from kubeclr.cluster.kfp_checks import KfpError

log = logging.getLogger(__name__)

TOKEN_ENV = "KF_PIPELINES_TOKEN"
HEALTHZ_PATH = "/apis/v2beta1/healthz"


# --------------------------------------------------------------------------- connection


class _FailFastClient(kfp.Client):
    """``kfp.Client`` whose HTTP pool retries a refused connect once and never re-sends a request."""

    def _load_config(self, *args, **kwargs):
        config = super()._load_config(*args, **kwargs)
        config.retries = urllib3.Retry(total=2, connect=1, read=0, status=0, other=0, redirect=False)
        return config


def connect(
    host: str,
    *,
    namespace: str | None = None,
    existing_token: str | None = None,
    cookies: str | None = None,
    ssl_ca_cert: str | None = None,
    timeout: float = 30,
) -> kfp.Client:
    """Open a client on a KFP API server after checking that it answers.

    A ``GET /apis/v2beta1/healthz`` probe (no retries, ``timeout`` seconds)
    runs first, with the same auth headers, so a wrong host, a login redirect
    or a rejected token fails in seconds with one line instead of kfp's
    25-second retry loop.

    Args:
        host: API endpoint, e.g. ``http://localhost:8080`` (port-forward of
            ``ml-pipeline-ui``) or ``https://kubeflow.example.com/pipeline``;
            empty -> ``KF_PIPELINES_ENDPOINT``.
        namespace: Kubeflow profile namespace (multi-user); None = kfp default.
        existing_token: bearer token; None -> ``KF_PIPELINES_TOKEN``.
        cookies: raw ``Cookie`` header value, e.g. ``authservice_session=...``.
        ssl_ca_cert: CA bundle path for a private TLS certificate.
        timeout: seconds per HTTP request (connect and read).

    Returns:
        A ``kfp.Client`` whose requests all use ``timeout``.

    Raises:
        KfpError: unreachable host, TLS failure, auth rejected, or not a KFP API.
    """
    host = (host or os.environ.get("KF_PIPELINES_ENDPOINT", "")).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise KfpError(f"bad KFP host {host!r}: use a URL such as http://localhost:8080")
    token = existing_token or os.environ.get(TOKEN_ENV) or None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookies:
        headers["Cookie"] = cookies
    if ssl_ca_cert and not Path(ssl_ca_cert).is_file():
        raise KfpError(f"CA bundle not found: {ssl_ca_cert}")
    multi_user = _probe(host, headers, ssl_ca_cert, timeout)
    log.info("KFP API at %s is up (multi_user=%s)", host, multi_user)
    if multi_user and not namespace:
        log.warning("%s is multi-user Kubeflow: pass your profile namespace (--namespace)", host)
    with calls(host, "connect"):
        client = _FailFastClient(
            host=host, namespace=namespace or "kubeflow", existing_token=token, cookies=cookies, ssl_ca_cert=ssl_ca_cert
        )
    if namespace:  # kfp ignores namespace == "kubeflow"; set_user_namespace would rewrite ~/.config/kfp
        client._context_setting["namespace"] = namespace
    rest = client._run_api.api_client.rest_client  # one ApiClient is shared by every service API
    send = rest.request

    def request(*args, _request_timeout=None, **kwargs):
        return send(*args, _request_timeout=_request_timeout or (timeout, timeout), **kwargs)

    rest.request = request
    return client


def _probe(host: str, headers: dict, ssl_ca_cert: str | None, timeout: float) -> bool:
    """GET the healthz endpoint once; return ``multi_user`` or raise KfpError."""
    url = host + HEALTHZ_PATH
    pool = urllib3.PoolManager(
        ca_certs=ssl_ca_cert or certifi.where(), retries=False, timeout=urllib3.Timeout(connect=timeout, read=timeout)
    )
    try:
        response = pool.request("GET", url, headers=headers, redirect=False)
    except urllib3.exceptions.HTTPError as error:
        raise KfpError(f"cannot reach the KFP API at {host}: {_reason(error, timeout)}") from None
    finally:
        pool.clear()
    if 300 <= response.status < 400:
        where = response.headers.get("Location", "?")
        raise KfpError(f"KFP API at {host} redirected to a login page ({where}); pass --token or --cookies")
    if response.status in (401, 403):
        raise KfpError(
            f"KFP API at {host} rejected the credentials (HTTP {response.status}); "
            f"check --token/{TOKEN_ENV}, --cookies and --namespace"
        )
    if response.status != 200:
        raise KfpError(f"no KFP v2 API at {url} (HTTP {response.status}); check --host")
    try:
        return bool(json.loads(response.data or b"{}").get("multi_user", False))
    except (ValueError, AttributeError):
        raise KfpError(f"{url} did not answer like a KFP API (not JSON); check --host") from None


def _reason(error: Exception, timeout: float | None = None) -> str:
    """One short phrase for a urllib3 transport error."""
    error = getattr(error, "reason", None) or error
    within = f" within {timeout:g} s" if timeout else " in time"
    if isinstance(error, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        error, urllib3.exceptions.NewConnectionError
    ):  # the latter subclasses the former
        return f"no connection{within}"
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return f"no answer{within}"
    if isinstance(error, urllib3.exceptions.SSLError):
        return f"TLS verification failed ({str(error).splitlines()[0][:160]}); pass --ssl-ca-cert"
    text = str(error)
    match = re.search(r"\[Errno -?\d+\] [^')\"]+", text)
    return match.group(0) if match else text.splitlines()[0][:200]


@contextlib.contextmanager
def calls(host: str, action: str) -> Iterator[None]:
    """Turn kfp/HTTP failures into one-line KfpErrors; route kfp's prints to the log."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2 beta.2+"
            yield
    except kfp_server_api.ApiException as error:
        raise KfpError(
            f"{action} failed: KFP API at {host} answered HTTP {error.status} "
            f"{error.reason or ''}: {_api_message(error)}".rstrip(": ")
        ) from None
    except urllib3.exceptions.HTTPError as error:
        raise KfpError(f"{action} failed: cannot reach the KFP API at {host}: {_reason(error)}") from None
    except (ValueError, TimeoutError) as error:
        raise KfpError(f"{action} failed: {str(error).splitlines()[0]}") from None
    finally:
        for line in captured.getvalue().splitlines():
            log.info("%s", line)


def _api_message(error: kfp_server_api.ApiException) -> str:
    """The server's error message (grpc-gateway JSON ``message``/``error``), first line only."""
    try:
        body = json.loads(error.body or b"{}")
        text = body.get("message") or body.get("error") or ""
    except (ValueError, AttributeError):
        text = (error.body or b"").decode("utf-8", "replace") if isinstance(error.body, bytes) else ""
    return (text.strip().splitlines() or [""])[0][:300]


def ui_link(client: kfp.Client, fragment: str) -> str:
    """A KFP UI link (``KF_PIPELINES_UI_ENDPOINT`` or the host) to ``#/<fragment>``."""
    return f"{client._get_url_prefix().rstrip('/')}/#/{fragment}"


def host_of(client: kfp.Client) -> str:
    """The API host a client talks to, for error messages."""
    return client._existing_config.host
