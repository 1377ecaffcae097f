"""Flags to library objects: the config, the pods' settings, the compile options, names."""

from __future__ import annotations

import argparse
import datetime as dt

from kubeclr.cluster.kfp_checks import check_pipeline_root
from kubeclr.cluster.quantities import check_cpu, check_memory
from kubeclr.config import DEFAULT_PRESET, Config, load_config
from kubeclr.config.sweep import Sweep, build_sweep
from kubeclr.errors import UserError
from kubeclr.launch.settings import CompileOptions, LaunchSettings, check_world


def preset(args: argparse.Namespace) -> str:
    """The preset asked for, or the command's default (``smoke`` for local work, ``fast`` on a cluster)."""
    return args.preset or getattr(args, "default_preset", DEFAULT_PRESET)


def config_from(args: argparse.Namespace) -> Config:
    """The config of ``--preset``/``--config``/``--set``, its batch checked against the world the command fixes."""
    cfg = load_config(preset(args), args.config, args.overrides)
    world = fixed_world(args)
    if world:
        check_world(cfg.pretrain.batch_size, *world)
    return cfg


def fixed_world(args: argparse.Namespace) -> tuple[int, int, str] | None:
    """``(nodes, gpus_per_node, where they come from)`` if the command itself fixes them, else None.

    render-job takes them as flags; compile bakes in the pipeline's defaults (2 nodes with
    ``--launcher``, else 1; 1 GPU: pipelines/simclr.py). upload, submit and schedule check the
    package's values, ``--param`` included, in :func:`kubeclr.cli.cluster.check_run_config`.
    """
    if hasattr(args, "gpus_per_node"):
        return args.nodes, args.gpus_per_node, ""
    if getattr(args, "command", None) == "compile":
        return (2, 1, "the defaults of a --launcher pipeline") if args.launcher else (1, 1, "")
    return None


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
    sweep = build_sweep(cfg, args.sweep, args.sweep_sets or ())
    world = fixed_world(args)
    for i, trial in enumerate(sweep.configs if world else ()):
        try:
            check_world(trial.pretrain.batch_size, *world)
        except UserError as exc:
            raise UserError(f"sweep trial {i} ({sweep.overrides[i]}): {exc}") from None
    return sweep


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
        cpu=check_cpu("--pretrain-cpu", args.pretrain_cpu),
        memory=check_memory("--pretrain-memory", args.pretrain_memory),
        shm_size=check_memory("--shm-size", args.shm_size),
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
        pipeline_root=check_pipeline_root(args.pipeline_root, "--pipeline-root"),
        pretrain_retries=args.retries,
        cache_pretrain=args.cache_pretrain,
        extract_gpu=args.extract_gpu,
        step_cpu=check_cpu("--step-cpu", args.step_cpu),
        step_memory=check_memory("--step-memory", args.step_memory),
        deploy=args.deploy,
    )


def label(args: argparse.Namespace) -> str:
    """The preset's name, or 'custom' for a --config file."""
    return "custom" if args.config else preset(args)


def utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
