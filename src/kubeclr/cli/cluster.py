"""The commands that talk to a Kubeflow Pipelines server: ``upload``, ``submit``, ``schedule``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from kubeclr.cli.options import compile_options, config_from, label, sweep_from, utc_stamp, what_compiled
from kubeclr.cluster.kfp_checks import check_pipeline_root
from kubeclr.config import UI_PARAMS, resolve
from kubeclr.config.resolve import UI_ALIASES
from kubeclr.errors import UserError
from kubeclr.launch.settings import check_world

log = logging.getLogger(__name__)


def _package(args: argparse.Namespace, tmpdir: str) -> str:
    if getattr(args, "package", None):
        if not Path(args.package).is_file():
            raise UserError(f"--package {args.package}: no such file")
        return args.package
    from kubeclr.pipelines.simclr import compile_pipeline

    cfg = config_from(args)
    return compile_pipeline(cfg, str(Path(tmpdir) / "simclr.yaml"), compile_options(args), sweep=sweep_from(args, cfg))


def _connect(args: argparse.Namespace):
    from kubeclr.cluster import kfp_client

    return kfp_client.connect(
        args.host,
        namespace=args.namespace,
        existing_token=args.token,
        cookies=args.cookies,
        ssl_ca_cert=args.ssl_ca_cert,
    )


def _params(items: Sequence[str], package: str) -> dict[str, Any]:
    from kubeclr.cluster import kfp_checks

    raw = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected NAME=VALUE")
        key = key.strip()
        if key in UI_ALIASES:
            log.info("--param %s: the parameter's name before 0.3; using %s", key, UI_ALIASES[key])
            key = UI_ALIASES[key]
        raw[key] = value
    spec = kfp_checks.load_pipeline_spec(package)
    params = kfp_checks.validate_params(raw, spec)
    check_run_config(params, spec)
    return params


def check_run_config(params: dict[str, Any], spec: dict) -> None:
    """Resolve the config the run would get (compiled defaults + ``--param``) before submitting it.

    Raises:
        ConfigError: a key set twice (a UI parameter and inside ``config``), missing, or invalid; a
            ``pretrain.batch_size`` that the run's ``nodes`` × ``gpus_per_node`` processes do not divide.
    """
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    if "config" not in declared:
        return  # not a kubeclr pipeline package: nothing to resolve
    values = {name: p.get("defaultValue") for name, p in declared.items()} | params
    cfg = resolve(
        values["config"] or {},
        {p.name: values[p.name] for p in UI_PARAMS if p.name in values},
        origin="--param config" if "config" in params else "the package's config",
    )
    if values.get("nodes") is not None and values.get("gpus_per_node") is not None:
        given = sum(name in params for name in ("nodes", "gpus_per_node"))
        where = ("the package's defaults", "--param and the package's defaults", "--param")[given]
        check_world(cfg.pretrain.batch_size, int(values["nodes"]), int(values["gpus_per_node"]), where)


def _on_cluster(args: argparse.Namespace, call) -> int:
    """Compile (or take --package), check --param against it, connect, then ``call``; print its result."""
    check_pipeline_root(getattr(args, "pipeline_root", None), "--pipeline-root")  # used even with --package
    with tempfile.TemporaryDirectory() as tmp:
        package = _package(args, tmp)
        params = _params(getattr(args, "param", []), package)
        out = call(_connect(args), package, params)
    print(json.dumps(out, indent=2))
    if not getattr(args, "package", None):
        print(f"{args.command}: compiled {what_compiled(args)}", file=sys.stderr)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from kubeclr.cluster import kfp_runs

    return _on_cluster(
        args,
        lambda client, package, _: kfp_runs.upload(
            client,
            package,
            pipeline_name=args.pipeline_name,
            version=args.pipeline_version,
            description=args.description,
            namespace=args.namespace,
        ),
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from kubeclr.cluster import kfp_runs

    return _on_cluster(
        args,
        lambda client, package, params: kfp_runs.submit(
            client,
            package,
            experiment=args.experiment,
            run_name=args.run_name or f"simclr-{utc_stamp()}",
            params=params,
            pipeline_root=args.pipeline_root,
            namespace=args.namespace,
            service_account=args.service_account,
        ),
    )


def cmd_schedule(args: argparse.Namespace) -> int:
    from kubeclr.cluster import kfp_runs

    # fail before compiling or connecting
    cron, _, _ = kfp_runs.check_schedule(args.cron, args.start_time, args.end_time, args.max_concurrency)
    return _on_cluster(
        args,
        lambda client, package, params: kfp_runs.schedule(
            client,
            package,
            experiment=args.experiment,
            job_name=args.job_name or f"simclr-{label(args)}-recurring",
            cron=cron,
            params=params,
            no_catchup=args.no_catchup,
            max_concurrency=args.max_concurrency,
            start_time=args.start_time,
            end_time=args.end_time,
            pipeline_root=args.pipeline_root,
            namespace=args.namespace,
            service_account=args.service_account,
        ),
    )
