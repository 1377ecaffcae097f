"""``simclr-pipeline``: run the pipeline locally, compile it, render its multi-node job, benchmark, make shards.

The commands that talk to a KFP server are :mod:`kubeclr.cli.cluster`. Each
command parses its flags (:mod:`kubeclr.cli.parser`, :mod:`kubeclr.cli.options`),
then makes one library call. User errors print one line (``error: …``) and exit 2; nothing
prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from kubeclr.cli.cluster import cmd_schedule, cmd_submit, cmd_upload
from kubeclr.cli.make_shards import cmd_make_shards
from kubeclr.cli.options import (
    compile_options,
    config_from,
    label,
    launch_settings,
    sweep_from,
    utc_stamp,
    what_compiled,
)
from kubeclr.cli.parser import build_parser
from kubeclr.cli.serve import cmd_serve
from kubeclr.config import describe_keys, load_config
from kubeclr.errors import UserError

log = logging.getLogger("kubeclr")


# -- commands ---------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from kubeclr.cli.local_run import default_workdir, run_local

    cfg = config_from(args)
    sweep = sweep_from(args, cfg)
    run_name = args.run_name or f"simclr-{label(args)}{'-sweep' if sweep else ''}-{utc_stamp()}"
    files = run_local(
        cfg,
        run_name=run_name,
        output_dir=Path(args.output_dir),
        data_source=args.data_source,
        data_md5=args.data_md5,
        checkpoint_uri=args.checkpoint_uri,
        workdir=Path(args.workdir) if args.workdir else None,
        sweep=sweep,
    )
    if sweep:
        _print_leaderboard(run_name, json.loads(files["leaderboard.json"].read_text()))
    else:
        _print_run(run_name, json.loads(files["metrics.json"].read_text()))
    for name, path in files.items():
        print(f"  {name:16s} {path}")
    print(f"  every step's artifacts: {args.workdir or default_workdir(Path(args.output_dir))}")
    page = files["leaderboard.html" if sweep else "report.html"]
    print(f"\nopen the {'leaderboard' if sweep else 'report'}: {page.resolve().as_uri()}")
    return 0


def _print_leaderboard(run_name: str, board: dict) -> None:
    head, winner = board["headline"], board["trials"][board["winner"]]
    setting = ", ".join(f"{k}={v}" for k, v in winner["overrides"].items()) or "the base config"
    print(
        f"\nsweep {run_name} finished: {len(board['trials'])} trials; winner trial {winner['index']} ({setting}), "
        f"chosen on {board['metric']}: test top-1 {head['test_top1']:.3f}, kNN test top-1 {head['knn_test_top1']:.3f}"
    )
    for rank, index in enumerate(board["ranking"], 1):
        t = board["trials"][index]
        print(f"  {rank:2d}. trial {index:2d}  val top-1 {t['val_top1']:.3f}  {t['overrides']}")


def _print_run(run_name: str, summary: dict) -> None:
    linear, knn, pretrain = summary["linear_eval"], summary["knn"], summary["pretrain"]
    rep = summary.get("representation") or {}
    if linear is not None:
        measured = f"linear test top-1 {linear['test_top1']:.3f}, kNN test top-1 {knn['test_top1']:.3f}"
    elif rep:
        measured = f"no labels; RankMe {rep['rankme']:.1f} of {rep['feature_dim']}, alignment {rep['alignment']:.3f}"
        measured += f", uniformity {rep['uniformity']:.3f}"
    else:
        measured = "no labels"
    print(
        f"\nrun {run_name} finished: {measured}, final loss {pretrain['final_loss']:.4f}"
        + (" (SYNTHETIC sample data, not CIFAR-10)" if summary["dataset"]["synthetic"] else "")
    )
    gate = summary.get("gate") or {}
    if gate.get("status") not in (None, "not-armed") or gate.get("runs_compared"):
        from kubeclr.report.gate import summary_line

        print(f"  {summary_line(gate)} (series {summary.get('history', {}).get('series', '?')})")


def cmd_compile(args: argparse.Namespace) -> int:
    from kubeclr.pipelines.simclr import compile_pipeline

    cfg = config_from(args)
    sweep = sweep_from(args, cfg)
    path = compile_pipeline(cfg, args.output, compile_options(args), sweep=sweep)
    what = f", a sweep of {len(sweep)} trials ({sweep.parallelism} at once)" if sweep else ""
    print(f"wrote {path}: {what_compiled(args)}{what}, image {args.image}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kubeclr.bench import throughput as bench

    bench.main(config_from(args), device=args.device, json_path=args.json)
    return 0


PLACEHOLDER_CHECKPOINTS = "s3://CHANGE-ME/checkpoints"


def cmd_render_job(args: argparse.Namespace) -> int:
    import yaml

    from kubeclr.launch.multinode import check_request, job_object

    cfg = config_from(args)
    if args.engine:
        cfg = cfg.override({"cluster.engine": args.engine})
    checkpoints = args.checkpoint_uri or cfg.storage.checkpoint_uri
    if not checkpoints:
        print(f"render-job: no checkpoint URI given; using the placeholder {PLACEHOLDER_CHECKPOINTS}", file=sys.stderr)
        checkpoints = PLACEHOLDER_CHECKPOINTS
    check_request(args.nodes, checkpoints)  # what the step would refuse, refused here too
    job = job_object(
        cfg,
        checkpoints=checkpoints,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        settings=launch_settings(args),
        run_name=args.run_name,
    )
    print(yaml.safe_dump(job, sort_keys=False, width=1000), end="")
    print(f"render-job: {job['kind']} of {what_compiled(args)}", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    cfg = load_config(args.preset, args.config) if args.preset or args.config else None
    given = f" with the values of {what_compiled(args)} (key = value; " if cfg else " ("
    print(f"config keys{given}set with --set section.key=value):")
    print(describe_keys(cfg))
    return 0


COMMANDS = {
    "run": cmd_run,
    "compile": cmd_compile,
    "upload": cmd_upload,
    "submit": cmd_submit,
    "schedule": cmd_schedule,
    "bench": cmd_bench,
    "render-job": cmd_render_job,
    "keys": cmd_keys,
    "serve": cmd_serve,
    "make-shards": cmd_make_shards,
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
    except BrokenPipeError:  # `simclr-pipeline keys | head`: the reader left; say nothing, as cat would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
