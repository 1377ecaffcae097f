"""The lifecycle of a training job custom resource: create, wait, clean up.

Generic over the job kind (Training Operator ``PyTorchJob``, Trainer v2
``TrainJob``): it only reads ``status.conditions``. Reached through
:class:`kubeclr.cluster.k8s.K8sApi`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from kubeclr.cluster.k8s import K8sApi, K8sError
from kubeclr.errors import UserError

logger = logging.getLogger(__name__)

SUCCESS_CONDITIONS = ("Succeeded", "Complete")  # PyTorchJob v1 / TrainJob v2 (Trainer v2.3 has no Running)
FAILURE_CONDITIONS = ("Failed",)
HEARTBEAT_S = 600  # log "still Running" this often while waiting


class JobFailed(UserError):
    """The training job ended in the Failed condition."""


class JobTimeout(UserError):
    """The training job did not finish in time (it has been deleted)."""


def resource_path(job: dict) -> str:
    """Collection path of ``job``'s kind, e.g. ``/apis/kubeflow.org/v1/namespaces/ns/pytorchjobs``."""
    ns = job["metadata"]["namespace"]
    return f"/apis/{job['apiVersion']}/namespaces/{ns}/{job['kind'].lower()}s"


def progress(obj: dict) -> str:
    """A TrainJob's child jobs as one phrase, e.g. ``node: 2 active, 2 ready`` ('' for a PyTorchJob).

    Trainer v2 reports no Running condition; ``status.jobsStatus`` counts the pods
    of each replicated job instead.
    """
    parts = []
    for child in (obj.get("status") or {}).get("jobsStatus") or []:
        counts = [f"{child[k]} {k}" for k in ("active", "ready", "succeeded", "failed", "suspended") if child.get(k)]
        parts.append(f"{child.get('name', '?')}: {', '.join(counts) or 'pending'}")
    return "; ".join(parts)


def _true_conditions(obj: dict) -> list[dict]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]


def launch_and_wait(
    job: dict,
    *,
    api: K8sApi,
    timeout_s: float,
    poll_s: float = 5,
    delete_after: bool = True,
    log: logging.Logger = logger,
) -> dict:
    """Create ``job``, wait until it succeeds or fails, and clean up.

    Each new condition (Created → Running → Succeeded/Failed, also Restarting)
    is logged once, with a heartbeat line every 10 minutes. Unreachable-server
    and 5xx answers while waiting are retried until the deadline. On timeout or
    interruption the job is always deleted, so no GPU pods are left behind;
    otherwise it is deleted when ``delete_after``.

    Returns:
        The job object as last read (status included).

    Raises:
        K8sError: the API refused a request (4xx) or the create could not be sent.
        JobFailed: the job reached Failed (message carries its reason and message) or vanished.
        JobTimeout: no terminal condition within ``timeout_s``.
    """
    collection, name = resource_path(job), job["metadata"]["name"]
    what = f"{job['kind']} {job['metadata']['namespace']}/{name}"
    deadline, seen, obj = time.monotonic() + timeout_s, set(), job
    logged: dict[str, tuple[bool, str | None]] = {}  # condition type -> (is True, reason) last logged
    _create(api, collection, job, what, deadline, poll_s, log)
    log.info("%s created (timeout %.0fs)", what, timeout_s)
    delete, heartbeat, last_progress = True, time.monotonic() + HEARTBEAT_S, ""
    # A cancelled KFP run or an evicted launcher pod gets SIGTERM: turn it into an exception so
    # the `finally` below deletes the job instead of leaving its GPU pods running.
    previous = _raise_on_sigterm()
    try:
        while True:
            obj = _get_status(api, f"{collection}/{name}", what, log) or obj
            now = progress(obj)
            if now and now != last_progress:
                last_progress = now
                log.info("%s: %s", what, now)
            for cond in (obj.get("status") or {}).get("conditions") or []:
                kind, true = cond.get("type"), cond.get("status") == "True"
                if logged.get(kind) != (true, cond.get("reason")) and (true or kind in logged):
                    # each change once: Suspended (queued by Kueue), its Resumed, a second suspension …
                    logged[kind] = (true, cond.get("reason"))
                    if true:
                        seen.add(kind)
                    log.info(
                        "%s: %s%s",
                        what,
                        kind if true else f"{kind}=False",
                        f" ({cond.get('reason', '')}: {cond.get('message', '')})" if cond.get("reason") else "",
                    )
            types = {c.get("type") for c in _true_conditions(obj)}
            if types & set(FAILURE_CONDITIONS):
                cond = next(c for c in _true_conditions(obj) if c.get("type") in FAILURE_CONDITIONS)
                delete = delete_after
                raise JobFailed(
                    f"{what} failed: {cond.get('reason') or 'no reason'}: {(cond.get('message') or '').strip()}"
                )
            if types & set(SUCCESS_CONDITIONS):
                delete = delete_after
                return obj
            if time.monotonic() >= heartbeat:
                heartbeat += HEARTBEAT_S
                log.info("%s: still %s", what, ", ".join(sorted(types)) or last_progress or "pending")
            if time.monotonic() >= deadline:
                raise JobTimeout(
                    f"{what} did not finish within {timeout_s:.0f}s "
                    f"(last state: {', '.join(sorted(seen)) or 'pending'}); deleted it"
                )
            time.sleep(poll_s)
    finally:
        _restore_sigterm(previous)
        if delete:
            _delete(api, f"{collection}/{name}", what, log)


def _raise_on_sigterm():
    """Install a SIGTERM handler that raises SystemExit(143); return the previous handler (or None)."""
    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers can only be set from the main thread

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _get_status(api: K8sApi, path: str, what: str, log: logging.Logger) -> dict | None:
    """The job as it is now; ``None`` after a transient API failure (hours of training survive a blip)."""
    try:
        return api.request("GET", path)
    except K8sError as exc:
        if exc.status == 404:
            raise JobFailed(f"{what} disappeared while running (deleted by someone else?)") from None
        if exc.status is not None and exc.status < 500:
            raise
        log.warning("%s: status check failed, will retry: %s", what, exc)
        return None


def _create(
    api: K8sApi, collection: str, job: dict, what: str, deadline: float, poll_s: float, log: logging.Logger
) -> None:
    """POST ``job``; if a job of that name survives from an earlier attempt, delete it first."""
    try:
        api.request("POST", collection, job)
        return
    except K8sError as exc:
        if exc.status != 409:
            raise
    path = f"{collection}/{job['metadata']['name']}"
    log.warning("%s already exists (left by an earlier attempt); replacing it", what)
    _delete(api, path, what, log)
    while True:
        try:
            api.request("GET", path)
        except K8sError as exc:
            if exc.status == 404:
                break
            raise
        if time.monotonic() >= deadline:
            raise JobTimeout(f"{what}: the earlier job of that name was not deleted in time")
        time.sleep(poll_s)
    api.request("POST", collection, job)


def _delete(api: K8sApi, path: str, what: str, log: logging.Logger) -> None:
    try:
        api.request("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"})
        log.info("%s deleted", what)
    except K8sError as exc:  # cleanup must not hide the real outcome
        log.warning("could not delete %s: %s", what, exc)
