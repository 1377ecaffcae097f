"""``python -m kubeclr.launch.entry``: one training process under torchrun.

The torchrun engine launches this with ``torchrun --standalone
--nproc_per_node=GPUS`` in one pod; the multi-node engine with ``--nnodes`` in
several. Every rank runs the same command; rank 0 writes the outputs (local
paths and/or ``--output-uri``). Inputs may be local paths or ``s3://`` /
``file://`` URIs (pods of a multi-node job share no filesystem). The config is
the pretraining step's view of the run's resolved config (the sections it
reads, see ``kubeclr.steps.pretrain.READS``) as one JSON argument (so ``kubectl get … -o
yaml`` shows exactly what trains) or one file; with ``--config-sha256`` a
config that changed on the way is refused.

Example::

    torchrun --standalone --nproc_per_node=2 -m kubeclr.launch.entry \\
        --config config.json --train train.npz --stats stats.json \\
        --encoder-out encoder.pt --history-out history.json --run-name demo
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import yaml

from kubeclr.config import Config, config_digest
from kubeclr.core import distributed
from kubeclr.cpus import cap_torch_threads
from kubeclr.errors import ConfigError, UserError
from kubeclr.launch.process import TrainFiles, train_and_save
from kubeclr.progress import setup_logging
from kubeclr.storage.store import parent_and_key

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kubeclr.launch.entry", description="One SimCLR pretraining process (run it under torchrun)."
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", metavar="FILE", help="the pretraining step's config (JSON or YAML), its keys")
    which.add_argument("--config-json", metavar="JSON", help="the same, inline")
    p.add_argument("--config-sha256", metavar="HEX", help="refuse a config whose digest differs")
    p.add_argument("--train", required=True, help="train split .npz (path or URI)")
    p.add_argument("--stats", required=True, help="stats JSON (path or URI)")
    p.add_argument("--encoder-out", help="path for the encoder state dict (rank 0)")
    p.add_argument("--history-out", help="path for the history JSON (rank 0)")
    p.add_argument("--output-uri", default="", help="store URI receiving encoder.pt, history.json, summary.json")
    p.add_argument("--checkpoint-uri", help="where checkpoints go and are resumed from (default: the config's)")
    p.add_argument("--run-name", default="pretrain", help="labels the exported metrics")
    return p


def entry_args(
    cfg: Config,
    *,
    train: str,
    stats: str,
    run_name: str,
    output_uri: str = "",
    encoder_out: str = "",
    history_out: str = "",
    checkpoint_uri: str = "",
) -> list[str]:
    """The arguments of this entry point for ``cfg`` with the config inline (a job's command line)."""
    args = [
        "--config-json",
        json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":")),
        "--config-sha256",
        config_digest(cfg),
        "--train",
        train,
        "--stats",
        stats,
        "--run-name",
        run_name,
    ]
    optional = {
        "--output-uri": output_uri,
        "--encoder-out": encoder_out,
        "--history-out": history_out,
        "--checkpoint-uri": checkpoint_uri,
    }
    for flag, value in optional.items():
        if value:
            args += [flag, value]
    return args


def read_config(args: argparse.Namespace) -> Config:
    """The config of ``--config`` / ``--config-json``, checked against ``--config-sha256``."""
    origin = args.config or "--config-json"
    try:
        text = Path(args.config).read_text() if args.config else args.config_json
        raw = yaml.safe_load(text)  # JSON is YAML
    except OSError as exc:
        raise ConfigError(f"--config {args.config}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid JSON or YAML ({str(exc).splitlines()[0]})") from None
    cfg = Config.from_dict(raw, origin=origin, partial=True)  # a view: reading a key not given is an error
    if args.config_sha256 and config_digest(cfg) != args.config_sha256:
        raise ConfigError(
            f"{origin}: config digest {config_digest(cfg)[:12]}… differs from --config-sha256 "
            f"{args.config_sha256[:12]}… (the config changed on its way here)"
        )
    return cfg


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
    cap_torch_threads()
    try:
        if not (args.encoder_out or args.history_out or args.output_uri):
            raise UserError("entry: give --encoder-out/--history-out or --output-uri (nothing would be written)")
        cfg = read_config(args)
        ctx = distributed.init_from_env(cfg.pretrain.device)
        if ctx.is_main:
            log.info("config sha256 %s", config_digest(cfg))
        else:
            logging.getLogger("kubeclr").setLevel(logging.WARNING)  # one rank tells the story
            # Only rank 0 exports metrics; other ranks must not bind the same /metrics port.
            cfg = cfg.override({"metrics.port": 0, "metrics.pushgateway_url": ""})
        with tempfile.TemporaryDirectory(prefix=f"kubeclr-rank{ctx.rank}-") as tmp:
            files = TrainFiles(
                train=_fetch(args.train, Path(tmp)),
                stats=_fetch(args.stats, Path(tmp)),
                encoder_out=Path(args.encoder_out) if args.encoder_out else None,
                history_out=Path(args.history_out) if args.history_out else None,
                checkpoints=cfg.storage.checkpoint_uri if args.checkpoint_uri is None else args.checkpoint_uri,
            )
            train_and_save(cfg, files, run_name=args.run_name, device=ctx.device, output_uri=args.output_uri)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
