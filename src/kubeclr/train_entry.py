"""``python -m kubeclr.train_entry``: one training process under torchrun.

The pretrain step launches this with ``torchrun --standalone
--nproc_per_node=GPUS`` on one pod; the PyTorchJob launcher launches it with
``--nnodes`` on several. Every rank runs the same command; rank 0 writes the
outputs (local paths and/or ``--output-uri``). Inputs may be local paths or
``s3://`` / ``file://`` URIs (pods of a multi-node job share no filesystem).

Example::

    torchrun --standalone --nproc_per_node=2 -m kubeclr.train_entry \\
        --preset smoke --set pretrain.device=cpu --train train.npz --stats stats.json \\
        --encoder-out encoder.pt --history-out history.json --run-name demo
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from kubeclr import distributed
from kubeclr.config import load_config
from kubeclr.errors import UserError
from kubeclr.progress import setup_logging
from kubeclr.storage import parent_and_key

log = logging.getLogger("kubeclr.train_entry")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubeclr.train_entry",
                                description="One SimCLR pretraining process (run it under torchrun).")
    p.add_argument("--preset", default="smoke", help="config preset (ignored with --config)")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    p.add_argument("--train", required=True, help="train split .npz (path or URI)")
    p.add_argument("--stats", required=True, help="stats JSON (path or URI)")
    p.add_argument("--encoder-out", help="path for the encoder state dict (rank 0)")
    p.add_argument("--history-out", help="path for the history JSON (rank 0)")
    p.add_argument("--output-uri", default="", help="store URI receiving encoder.pt, history.json, summary.json")
    p.add_argument("--checkpoint-uri", default="", help="overrides storage.checkpoint_uri")
    p.add_argument("--run-name", default="pretrain", help="labels the exported metrics")
    return p


def _fetch(path_or_uri: str, workdir: Path) -> Path:
    """A local file for ``path_or_uri`` (URIs are downloaded into ``workdir``)."""
    if "://" not in path_or_uri:
        return Path(path_or_uri)
    store, key = parent_and_key(path_or_uri)
    dest = workdir / Path(key).name
    store.get_file(key, dest)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, join the group, train, write; returns the exit code (2 on a user error)."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        if not (args.encoder_out or args.history_out or args.output_uri):
            raise UserError("train_entry: give --encoder-out/--history-out or --output-uri (nothing would be written)")
        cfg = load_config(args.preset, args.config, args.overrides)
        if args.checkpoint_uri:
            cfg = cfg.override({"storage.checkpoint_uri": args.checkpoint_uri})
        ctx = distributed.init_from_env(cfg.pretrain.device)
        if not ctx.is_main:
            logging.getLogger("kubeclr").setLevel(logging.WARNING)  # one rank tells the story
            # Only rank 0 exports metrics; other ranks must not bind the same /metrics port.
            cfg = cfg.override({"metrics.port": 0, "metrics.pushgateway_url": ""})
        from kubeclr.steps.pretrain import run  # after logging is set up

        with tempfile.TemporaryDirectory(prefix=f"kubeclr-rank{ctx.rank}-") as tmp:
            train_path, stats_path = _fetch(args.train, Path(tmp)), _fetch(args.stats, Path(tmp))
            run(cfg, train_path, stats_path, args.encoder_out, args.history_out, run_name=args.run_name,
                device=ctx.device, output_uri=args.output_uri)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
