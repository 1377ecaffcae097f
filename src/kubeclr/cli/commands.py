"""``simclr-pipeline``: compile, upload, submit, schedule and run the pipeline.

Each command parses its flags (:mod:`kubeclr.cli.parser`), then makes one
library call. User errors print one line (``error: …``) and exit 2; nothing
prints a traceback for them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from kubeclr.cli.parser import build_parser
from kubeclr.config import DEFAULT_PRESET, UI_PARAMS, Config, describe_keys, load_config, resolve
from kubeclr.errors import UserError
from kubeclr.launch.settings import LaunchSettings

log = logging.getLogger("kubeclr")


# -- commands ---------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.preset or DEFAULT_PRESET, args.config, args.overrides)


def _compile_options(args: argparse.Namespace):
    from kubeclr.pipelines.simclr import CompileOptions

    selector = {}
    for item in args.node_selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--node-selector {item!r}: expected KEY=VALUE")
        selector[key] = value
    launch = LaunchSettings(
        image=args.image,
        secret_name=args.secret_name,
        node_selector=selector,
        cpu=args.pretrain_cpu,
        memory=args.pretrain_memory,
        shm_size=args.shm_size,
        timeout_s=args.timeout,
        delete_after=not args.keep_pytorchjobs,
        launcher_only=args.launcher,
        priority_class=args.priority_class,
    )
    return CompileOptions(
        launch=launch,
        pipeline_root=args.pipeline_root,
        pretrain_retries=args.retries,
        cache_pretrain=args.cache_pretrain,
    )


def _label(args: argparse.Namespace) -> str:
    """The preset's name, or 'custom' for a --config file."""
    return "custom" if args.config else args.preset or DEFAULT_PRESET


def _utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def cmd_run(args: argparse.Namespace) -> int:
    from kubeclr.cli.local_run import default_workdir, run_local

    cfg = _config(args)
    run_name = args.run_name or f"simclr-{_label(args)}-{_utc_stamp()}"
    files = run_local(
        cfg,
        run_name=run_name,
        output_dir=Path(args.output_dir),
        cifar_source=args.cifar_source,
        cifar_md5=args.cifar_md5,
        checkpoint_uri=args.checkpoint_uri,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    summary = json.loads(files["metrics.json"].read_text())
    linear, knn, pretrain = summary["linear_eval"], summary["knn"], summary["pretrain"]
    print(
        f"\nrun {run_name} finished: linear test top-1 {linear['test_top1']:.3f}, kNN test top-1 "
        f"{knn['test_top1']:.3f}, final loss {pretrain['final_loss']:.4f}"
        + (" (SYNTHETIC sample data, not CIFAR-10)" if summary["dataset"]["synthetic"] else "")
    )
    for name, path in files.items():
        print(f"  {name:13s} {path}")
    print(f"  every step's artifacts: {args.workdir or default_workdir(Path(args.output_dir))}")
    print(f"\nopen the report: {files['report.html'].resolve().as_uri()}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from kubeclr.pipelines.simclr import compile_pipeline

    path = compile_pipeline(_config(args), args.output, _compile_options(args))
    print(f"wrote {path} (image {args.image})")
    return 0


def _package(args: argparse.Namespace, tmpdir: str) -> str:
    if getattr(args, "package", None):
        if not Path(args.package).is_file():
            raise UserError(f"--package {args.package}: no such file")
        return args.package
    from kubeclr.pipelines.simclr import compile_pipeline

    return compile_pipeline(_config(args), str(Path(tmpdir) / "simclr-cifar10.yaml"), _compile_options(args))


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
        raw[key.strip()] = value
    spec = kfp_checks.load_pipeline_spec(package)
    params = kfp_checks.validate_params(raw, spec)
    check_run_config(params, spec)
    return params


def check_run_config(params: dict[str, Any], spec: dict) -> None:
    """Resolve the config the run would get (compiled defaults + ``--param``) before submitting it.

    Raises:
        ConfigError: a key set twice (a UI parameter and inside ``config``), missing, or invalid.
    """
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    if "config" not in declared:
        return  # not a kubeclr pipeline package: nothing to resolve
    values = {name: p.get("defaultValue") for name, p in declared.items()} | params
    resolve(
        values["config"] or {},
        {p.name: values[p.name] for p in UI_PARAMS if p.name in values},
        origin="--param config" if "config" in params else "the package's config",
    )


def _on_cluster(args: argparse.Namespace, call) -> int:
    """Compile (or take --package), check --param against it, connect, then ``call``; print its result."""
    with tempfile.TemporaryDirectory() as tmp:
        package = _package(args, tmp)
        params = _params(getattr(args, "param", []), package)
        out = call(_connect(args), package, params)
    print(json.dumps(out, indent=2))
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
            run_name=args.run_name or f"simclr-{_utc_stamp()}",
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
            job_name=args.job_name or f"simclr-{_label(args)}-recurring",
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


def cmd_bench(args: argparse.Namespace) -> int:
    from kubeclr.bench import throughput as bench

    bench.main(_config(args), device=args.device, json_path=args.json)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    print("config keys (set with --set section.key=value):")
    print(describe_keys())
    return 0


COMMANDS = {
    "run": cmd_run,
    "compile": cmd_compile,
    "upload": cmd_upload,
    "submit": cmd_submit,
    "schedule": cmd_schedule,
    "bench": cmd_bench,
    "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
