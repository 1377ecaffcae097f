"""Talking to a Kubeflow Pipelines API server: upload, submit, schedule.

The CLI's cluster commands call exactly one function here each. Everything a
user can get wrong (a misspelled parameter, a 5-field cron, a wrong host, a
missing token) is checked before or at the first request and raised as a
:class:`KfpError` with one line naming the cause; nothing retries for minutes.

Auth for multi-user Kubeflow follows ``kfp.Client``: ``existing_token`` is sent
as ``Authorization: Bearer <token>`` (when not given, the ``KF_PIPELINES_TOKEN``
environment variable is used -- our convention, so tokens stay off command
lines); ``cookies`` is sent verbatim as the ``Cookie`` header (e.g.
``authservice_session=...`` behind Dex/oauth2-proxy); ``namespace`` is the
profile namespace runs and experiments go to. ``kfp.Client`` itself reads
``KF_PIPELINES_ENDPOINT`` (host) and ``~/.config/kfp/context.json``.

KFP cron expressions have 6 fields, seconds first (robfig/cron), see
https://pkg.go.dev/github.com/robfig/cron#hdr-CRON_Expression_Format.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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

from kubeclr import __version__
from kubeclr.kfp_checks import (  # noqa: F401  (re-exported: the CLI's one import)
    KfpError, _MAX_CONCURRENCY, _rfc3339, load_pipeline_spec, validate_cron, validate_params)

log = logging.getLogger(__name__)

TOKEN_ENV = "KF_PIPELINES_TOKEN"
HEALTHZ_PATH = "/apis/v2beta1/healthz"



# --------------------------------------------------------------------------- connection


class _FailFastClient(kfp.Client):
    """``kfp.Client`` whose HTTP pool retries a refused connect once and never re-sends a request."""

    def _load_config(self, *args, **kwargs):  # noqa: D401 - kfp private hook, called before the pool exists
        config = super()._load_config(*args, **kwargs)
        config.retries = urllib3.Retry(total=2, connect=1, read=0, status=0, other=0, redirect=False)
        return config


def connect(host: str, *, namespace: str | None = None, existing_token: str | None = None,
            cookies: str | None = None, ssl_ca_cert: str | None = None,
            timeout: float = 30) -> kfp.Client:
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
    with _calls(host, "connect"):
        client = _FailFastClient(host=host, namespace=namespace or "kubeflow", existing_token=token,
                                 cookies=cookies, ssl_ca_cert=ssl_ca_cert)
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
    pool = urllib3.PoolManager(ca_certs=ssl_ca_cert or certifi.where(), retries=False,
                               timeout=urllib3.Timeout(connect=timeout, read=timeout))
    try:
        response = pool.request("GET", url, headers=headers, redirect=False)
    except urllib3.exceptions.HTTPError as error:
        raise KfpError(f"cannot reach the KFP API at {host}: {_reason(error, timeout)}") from None
    finally:
        pool.clear()
    if 300 <= response.status < 400:
        where = response.headers.get("Location", "?")
        raise KfpError(f"KFP API at {host} redirected to a login page ({where}); "
                       f"pass --token or --cookies")
    if response.status in (401, 403):
        raise KfpError(f"KFP API at {host} rejected the credentials (HTTP {response.status}); "
                       f"check --token/{TOKEN_ENV}, --cookies and --namespace")
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
            error, urllib3.exceptions.NewConnectionError):  # the latter subclasses the former
        return f"no connection{within}"
    if isinstance(error, urllib3.exceptions.ReadTimeoutError):
        return f"no answer{within}"
    if isinstance(error, urllib3.exceptions.SSLError):
        return f"TLS verification failed ({str(error).splitlines()[0][:160]}); pass --ssl-ca-cert"
    text = str(error)
    match = re.search(r"\[Errno -?\d+\] [^')\"]+", text)
    return match.group(0) if match else text.splitlines()[0][:200]


@contextlib.contextmanager
def _calls(host: str, action: str) -> Iterator[None]:
    """Turn kfp/HTTP failures into one-line KfpErrors; route kfp's prints to the log."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "This client only works with KFP v2 beta.2+"
            yield
    except kfp_server_api.ApiException as error:
        raise KfpError(f"{action} failed: KFP API at {host} answered HTTP {error.status} "
                       f"{error.reason or ''}: {_api_message(error)}".rstrip(": ")) from None
    except urllib3.exceptions.HTTPError as error:
        raise KfpError(f"{action} failed: cannot reach the KFP API at {host}: "
                       f"{_reason(error)}") from None
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


def _ui(client: kfp.Client, fragment: str) -> str:
    """A KFP UI link (``KF_PIPELINES_UI_ENDPOINT`` or the host) to ``#/<fragment>``."""
    return f"{client._get_url_prefix().rstrip('/')}/#/{fragment}"


def _host(client: kfp.Client) -> str:
    """The API host a client talks to, for error messages."""
    return client._existing_config.host


# --------------------------------------------------------------------------- operations


def upload(client: kfp.Client, package_path: str, *, pipeline_name: str, version: str | None,
           description: str = "", namespace: str | None = None) -> dict:
    """Upload a compiled pipeline, or a new version of it when the name exists.

    Args:
        client: from :func:`connect`.
        package_path: compiled pipeline YAML.
        pipeline_name: display name in the UI (unique on the server).
        version: version name for an existing pipeline; None -> ``<kubeclr version>-<UTC time>``.
        description: shown in the UI.
        namespace: profile namespace of a new pipeline (multi-user Kubeflow); None = shared.

    Returns:
        ``{"pipeline_id", "pipeline_name", "version_id", "version_name", "created", "url"}``;
        ``created`` is True for a new pipeline (its first version is made by the server).
    """
    load_pipeline_spec(package_path)  # a broken package fails here, not on the server
    if not pipeline_name.strip():
        raise KfpError("pipeline name must not be empty")
    host = _host(client)
    with _calls(host, f"upload of pipeline {pipeline_name!r}"):
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            made = client.upload_pipeline(str(package_path), pipeline_name=pipeline_name,
                                          description=description or None, namespace=namespace or None)
            return {"pipeline_id": made.pipeline_id, "pipeline_name": pipeline_name, "version_id": None,
                    "version_name": pipeline_name, "created": True,
                    "url": _ui(client, f"pipelines/details/{made.pipeline_id}")}
        name = version or f"{__version__}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
        made = client.upload_pipeline_version(str(package_path), pipeline_version_name=name,
                                              pipeline_id=pipeline_id, description=description or None)
    return {"pipeline_id": pipeline_id, "pipeline_name": pipeline_name,
            "version_id": made.pipeline_version_id, "version_name": name, "created": False,
            "url": _ui(client, f"pipelines/details/{pipeline_id}/version/{made.pipeline_version_id}")}


def submit(client: kfp.Client, package_path: str, *, experiment: str, run_name: str, params: dict,
           pipeline_root: str | None = None, namespace: str | None = None,
           service_account: str | None = None) -> dict:
    """Start one run of a compiled pipeline in an experiment (created if missing).

    Parameters are checked against the package before any request is sent.

    Returns:
        ``{"run_id", "run_name", "experiment_id", "experiment", "params", "url"}``.
    """
    arguments = validate_params(params, load_pipeline_spec(package_path))
    host = _host(client)
    with _calls(host, f"submit of run {run_name!r}"):
        exp = client.create_experiment(name=experiment, namespace=namespace)
        result = client.create_run_from_pipeline_package(
            str(package_path), arguments=arguments, run_name=run_name,
            experiment_id=exp.experiment_id, namespace=namespace, pipeline_root=pipeline_root or None,
            service_account=service_account or None)
    return {"run_id": result.run_id, "run_name": run_name, "experiment_id": exp.experiment_id,
            "experiment": experiment, "params": arguments, "url": _ui(client, f"runs/details/{result.run_id}")}


def check_schedule(cron: str, start_time: str | None, end_time: str | None,
                   max_concurrency: int) -> tuple[str, str | None, str | None]:
    """The cron expression and RFC 3339 start/end times a recurring run gets, checked without any request.

    Raises:
        KfpError: a malformed cron or time, an end before the start, or a concurrency out of range.
    """
    cron = validate_cron(cron)
    start, end = _rfc3339(start_time, "start time"), _rfc3339(end_time, "end time")
    if start and end and end <= start:
        raise KfpError(f"end time {end} must be after start time {start}")
    if not 1 <= int(max_concurrency) <= _MAX_CONCURRENCY:
        raise KfpError(f"max concurrency {max_concurrency} must be within 1-{_MAX_CONCURRENCY}")
    return cron, start, end


def schedule(client: kfp.Client, package_path: str, *, experiment: str, job_name: str, cron: str,
             params: dict, no_catchup: bool = True, max_concurrency: int = 1,
             start_time: str | None = None, end_time: str | None = None, enabled: bool = True,
             pipeline_root: str | None = None, namespace: str | None = None,
             service_account: str | None = None) -> dict:
    """Create a recurring run on a 6-field cron schedule.

    ``no_catchup=True`` (default) runs only the latest missed interval after a
    pause instead of a backfill storm; ``max_concurrency=1`` keeps one run at a time.
    Cron, times, concurrency and parameters are checked before any request.

    Returns:
        ``{"recurring_run_id", "job_name", "experiment_id", "cron", "no_catchup",
        "max_concurrency", "start_time", "end_time", "enabled", "url"}``.
    """
    cron, start, end = check_schedule(cron, start_time, end_time, max_concurrency)
    arguments = validate_params(params, load_pipeline_spec(package_path))
    host = _host(client)
    with _calls(host, f"schedule of {job_name!r}"):
        exp = client.create_experiment(name=experiment, namespace=namespace)
        job = client.create_recurring_run(
            exp.experiment_id, job_name, cron_expression=cron, max_concurrency=int(max_concurrency),
            no_catchup=bool(no_catchup), start_time=start, end_time=end, params=arguments,
            pipeline_package_path=str(package_path), enabled=enabled, pipeline_root=pipeline_root or None,
            service_account=service_account or None)
    return {"recurring_run_id": job.recurring_run_id, "job_name": job_name,
            "experiment_id": exp.experiment_id, "cron": cron, "no_catchup": bool(no_catchup),
            "max_concurrency": int(max_concurrency), "start_time": start, "end_time": end,
            "enabled": enabled, "url": _ui(client, f"recurringrun/details/{job.recurring_run_id}")}
