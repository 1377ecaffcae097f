"""The actions on a Kubeflow Pipelines server: upload, submit, schedule.

The CLI's cluster commands call exactly one function here each. Everything a
user can get wrong (a misspelled parameter, a 5-field cron, a wrong host, a
missing token) is checked before or at the first request and raised as a
:class:`~kubeclr.cluster.kfp_checks.KfpError` with one line naming the cause.

KFP cron expressions have 6 fields, seconds first (robfig/cron), see
https://pkg.go.dev/github.com/robfig/cron#hdr-CRON_Expression_Format.
"""

from __future__ import annotations

import datetime as dt
import logging

import kfp

from kubeclr import __version__
from kubeclr.cluster.kfp_checks import (
    MAX_CONCURRENCY,
    KfpError,
    load_pipeline_spec,
    rfc3339,
    validate_cron,
    validate_params,
)
from kubeclr.cluster.kfp_client import calls, host_of, ui_link

log = logging.getLogger(__name__)


def upload(
    client: kfp.Client,
    package_path: str,
    *,
    pipeline_name: str,
    version: str | None,
    description: str = "",
    namespace: str | None = None,
) -> dict:
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
    host = host_of(client)
    with calls(host, f"upload of pipeline {pipeline_name!r}"):
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            made = client.upload_pipeline(
                str(package_path),
                pipeline_name=pipeline_name,
                description=description or None,
                namespace=namespace or None,
            )
            return {
                "pipeline_id": made.pipeline_id,
                "pipeline_name": pipeline_name,
                "version_id": None,
                "version_name": pipeline_name,
                "created": True,
                "url": ui_link(client, f"pipelines/details/{made.pipeline_id}"),
            }
        name = version or f"{__version__}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
        made = client.upload_pipeline_version(
            str(package_path), pipeline_version_name=name, pipeline_id=pipeline_id, description=description or None
        )
    return {
        "pipeline_id": pipeline_id,
        "pipeline_name": pipeline_name,
        "version_id": made.pipeline_version_id,
        "version_name": name,
        "created": False,
        "url": ui_link(client, f"pipelines/details/{pipeline_id}/version/{made.pipeline_version_id}"),
    }


def submit(
    client: kfp.Client,
    package_path: str,
    *,
    experiment: str,
    run_name: str,
    params: dict,
    pipeline_root: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> dict:
    """Start one run of a compiled pipeline in an experiment (created if missing).

    Parameters are checked against the package before any request is sent.

    Returns:
        ``{"run_id", "run_name", "experiment_id", "experiment", "params", "url"}``.
    """
    arguments = validate_params(params, load_pipeline_spec(package_path))
    host = host_of(client)
    with calls(host, f"submit of run {run_name!r}"):
        exp = client.create_experiment(name=experiment, namespace=namespace)
        result = client.create_run_from_pipeline_package(
            str(package_path),
            arguments=arguments,
            run_name=run_name,
            experiment_id=exp.experiment_id,
            namespace=namespace,
            pipeline_root=pipeline_root or None,
            service_account=service_account or None,
        )
    return {
        "run_id": result.run_id,
        "run_name": run_name,
        "experiment_id": exp.experiment_id,
        "experiment": experiment,
        "params": arguments,
        "url": ui_link(client, f"runs/details/{result.run_id}"),
    }


def check_schedule(
    cron: str, start_time: str | None, end_time: str | None, max_concurrency: int
) -> tuple[str, str | None, str | None]:
    """The cron expression and RFC 3339 start/end times a recurring run gets, checked without any request.

    Raises:
        KfpError: a malformed cron or time, an end before the start, or a concurrency out of range.
    """
    cron = validate_cron(cron)
    start, end = rfc3339(start_time, "start time"), rfc3339(end_time, "end time")
    if start and end and end <= start:
        raise KfpError(f"end time {end} must be after start time {start}")
    if not 1 <= int(max_concurrency) <= MAX_CONCURRENCY:
        raise KfpError(f"max concurrency {max_concurrency} must be within 1-{MAX_CONCURRENCY}")
    return cron, start, end


def schedule(
    client: kfp.Client,
    package_path: str,
    *,
    experiment: str,
    job_name: str,
    cron: str,
    params: dict,
    no_catchup: bool = True,
    max_concurrency: int = 1,
    start_time: str | None = None,
    end_time: str | None = None,
    enabled: bool = True,
    pipeline_root: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
) -> dict:
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
    host = host_of(client)
    with calls(host, f"schedule of {job_name!r}"):
        exp = client.create_experiment(name=experiment, namespace=namespace)
        job = client.create_recurring_run(
            exp.experiment_id,
            job_name,
            cron_expression=cron,
            max_concurrency=int(max_concurrency),
            no_catchup=bool(no_catchup),
            start_time=start,
            end_time=end,
            params=arguments,
            pipeline_package_path=str(package_path),
            enabled=enabled,
            pipeline_root=pipeline_root or None,
            service_account=service_account or None,
        )
    return {
        "recurring_run_id": job.recurring_run_id,
        "job_name": job_name,
        "experiment_id": exp.experiment_id,
        "cron": cron,
        "no_catchup": bool(no_catchup),
        "max_concurrency": int(max_concurrency),
        "start_time": start,
        "end_time": end,
        "enabled": enabled,
        "url": ui_link(client, f"recurringrun/details/{job.recurring_run_id}"),
    }
