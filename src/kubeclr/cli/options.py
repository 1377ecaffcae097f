"""Flags to library objects: the config, the pods' settings, the compile options, names."""

from __future__ import annotations

import argparse
import datetime as dt

from kubeclr.config import DEFAULT_PRESET, Config, load_config
from kubeclr.config.sweep import Sweep, build_sweep
from kubeclr.errors import UserError
from kubeclr.launch.settings import CompileOptions, LaunchSettings


def preset(args: argparse.Namespace) -> str:
    """The preset asked for, or the command's default (``smoke`` for local work, ``fast`` on a cluster)."""
    return args.preset or getattr(args, "default_preset", DEFAULT_PRESET)


def config_from(args: argparse.Namespace) -> Config:
    return load_config(preset(args), args.config, args.overrides)


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    """``--sweep FILE`` and ``--sweep-set KEY=V1,V2`` (run, compile, upload, submit, schedule)."""
    g = p.add_argument_group("sweep (one run: the data steps once, then each trial's pretraining and evaluation)")
    g.add_argument(
        "--sweep", metavar="FILE", help="sweep spec YAML: grid and/or trials, parallelism, metric, max_trials"
    )
    g.add_argument(
        "--sweep-set",
        dest="sweep_sets",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep KEY over these values (repeatable: the grid of every combination; "
        "pretrain.seed=0,1,2 reports mean ± std per setting)",
    )


def sweep_from(args: argparse.Namespace, cfg: Config) -> Sweep | None:
    """The sweep of ``--sweep FILE`` / ``--sweep-set KEY=V1,V2`` over ``cfg``, checked; None without them."""
    if not (getattr(args, "sweep", None) or getattr(args, "sweep_sets", None)):
        return None
    return build_sweep(cfg, args.sweep, args.sweep_sets or ())


def what_compiled(args: argparse.Namespace) -> str:
    """``preset 'fast'`` (saying when it was the command's default) or ``config FILE``."""
    if args.config:
        return f"config {args.config}"
    return f"preset '{preset(args)}'" + ("" if args.preset else " (the default: no --preset or --config given)")


def launch_settings(args: argparse.Namespace) -> LaunchSettings:
    """The pods' settings from the compile options (shared by compile, upload, submit, schedule, render-job)."""
    selector = {}
    for item in args.node_selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--node-selector {item!r}: expected KEY=VALUE")
        selector[key] = value
    return LaunchSettings(
        image=args.image,
        secret_name=args.secret_name,
        node_selector=selector,
        cpu=args.pretrain_cpu,
        memory=args.pretrain_memory,
        shm_size=args.shm_size,
        timeout_s=args.timeout,
        delete_after=not args.keep_jobs,
        launcher_only=getattr(args, "launcher", False),
        priority_class=args.priority_class,
        queue_name=args.queue_name,
        namespace=getattr(args, "job_namespace", None) or "",
        service_account=getattr(args, "job_service_account", None) or "",
    )


def compile_options(args: argparse.Namespace) -> CompileOptions:
    return CompileOptions(
        launch=launch_settings(args),
        pipeline_root=args.pipeline_root,
        pretrain_retries=args.retries,
        cache_pretrain=args.cache_pretrain,
        extract_gpu=args.extract_gpu,
        step_cpu=args.step_cpu,
        step_memory=args.step_memory,
        deploy=args.deploy,
    )


def label(args: argparse.Namespace) -> str:
    """The preset's name, or 'custom' for a --config file."""
    return "custom" if args.config else preset(args)


def utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
