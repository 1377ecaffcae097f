"""The ``leaderboard`` step of a sweep: every trial's outputs in, the ranking and the winner's encoder out.

The ParallelFor's outputs arrive as collected lists (``dsl.Collected``) in no promised order;
each file says which trial it belongs to by its config digest (the pretraining history and the
linear-eval results carry ``config_sha256``), and the winning encoder is the file whose SHA-256
the winner's history recorded. So the encoder handed on is, bit for bit, the one the winning
trial trained and evaluated.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from kubeclr.atomic import file_sha256, read_json, write_bytes_atomic, write_json
from kubeclr.config import Config, config_digest, restrict
from kubeclr.config.sweep import trial_config
from kubeclr.errors import DataError
from kubeclr.report.leaderboard import leaderboard, trial_row
from kubeclr.report.leaderboard_page import render_html, render_markdown
from kubeclr.steps import reads
from kubeclr.steps.report import export_results
from kubeclr.steps.trial_config import trial_name

log = logging.getLogger(__name__)

OUTPUT_FILES = ("leaderboard.json", "leaderboard.html", "leaderboard.md", "encoder.pt")


def _by_digest(what: str, paths: Sequence[str | Path], *keys: str) -> dict[tuple, dict]:
    """The documents at ``paths`` by their ``keys`` (``config_sha256``: the digest of what the step read)."""
    out = {}
    for path in paths:
        doc = read_json(path)
        if not isinstance(doc, dict) or not all(doc.get(k) for k in keys):
            raise DataError(f"{what} {path}: no {' or '.join(keys)} (not written by this version's steps)")
        out[tuple(doc[k] for k in keys)] = doc
    return out


def _digest(cfg: Config, step: str) -> str:
    """The digest ``step`` logs and records when it runs on ``cfg``: that of its view (its ``READS``)."""
    return config_digest(restrict(cfg, reads(step) or ()))


def run(
    cfg: Config,
    sweep: Mapping[str, Any],
    history_paths: Sequence[str | Path],
    results_paths: Sequence[str | Path],
    encoder_paths: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
    *,
    run_name: str,
    metrics: Any = None,
) -> dict:
    """Rank the trials on validation, write the leaderboard and copy the winner's encoder.

    Args:
        cfg: the run's resolved config (every trial's base).
        sweep: :meth:`kubeclr.config.sweep.Sweep.spec`: ``metric``, ``seeds``, ``trials``.
        history_paths, results_paths, encoder_paths: every trial's pretraining history,
            linear-eval results and encoder, in any order.
        outputs: where ``leaderboard.json``, ``leaderboard.html``, ``leaderboard.md`` and
            ``encoder.pt`` (the winner's) go, by those names.
        run_name: the sweep's name (page title; the export folder under ``storage.export_uri``).
        metrics: a KFP ``Metrics`` artifact for the run page (winner's numbers), or None.

    Returns:
        The ``leaderboard.json`` dict.

    Raises:
        DataError: a trial's outputs are missing or do not match its config.
    """
    trials = sweep["trials"]
    configs = [trial_config(cfg, t["overrides"], origin=trial_name(int(t["index"]))) for t in trials]
    # a trial's history is the one its pretraining view made; its results, those of its encoder under its
    # evaluation view (trials that differ only in what evaluation reads share one encoder)
    histories = _by_digest("history", history_paths, "config_sha256")
    results = _by_digest("results", results_paths, "encoder_sha256", "config_sha256")
    rows = []
    for i, (trial, tcfg) in enumerate(zip(trials, configs)):
        digest = _digest(tcfg, "pretrain")
        history = histories.get((digest,))
        if history is None:
            raise DataError(f"{trial_name(i)}: no pretraining history with its config sha256 {digest[:12]}…")
        result = results.get((history.get("encoder_sha256"), _digest(tcfg, "linear_eval")))
        if result is None:
            raise DataError(f"{trial_name(i)}: no linear-eval results of its encoder and its evaluation config")
        if result.get("labelled") is False:
            raise DataError(
                "a sweep ranks its trials on validation accuracy, and this dataset has no labels: run the trials "
                "one by one and compare their label-free measures (representation in metrics.json) instead"
            )
        numbers = {
            "config_sha256": config_digest(tcfg),
            "linear_eval": result,
            "knn": result.get("knn"),
            "seconds": float(history["summary"]["seconds"]) + float(result.get("seconds") or 0.0),
        }
        rows.append({**trial_row(i, trial["overrides"], numbers), "encoder_sha256": history.get("encoder_sha256")})
    board = leaderboard(sweep["metric"], rows, seeds=bool(sweep.get("seeds")))
    board = {"run_name": run_name, "base_config_sha256": config_digest(cfg), **board}
    winner = board["trials"][board["winner"]]

    encoders = {file_sha256(p): p for p in encoder_paths}
    if winner["encoder_sha256"] not in encoders:
        raise DataError(
            f"{trial_name(winner['index'])}: its encoder (sha256 {winner['encoder_sha256']}) is not among the inputs"
        )
    shutil.copyfile(encoders[winner["encoder_sha256"]], outputs["encoder.pt"])
    write_json(outputs["leaderboard.json"], board)
    write_bytes_atomic(outputs["leaderboard.md"], render_markdown(board, run_name=run_name).encode())
    page = render_html(board, run_name=run_name, configs=[c.to_dict() for c in configs])
    write_bytes_atomic(outputs["leaderboard.html"], page.encode())
    log.info(
        "leaderboard: %s wins on %s (%.4f); its test top-1 %.4f",
        trial_name(winner["index"]),
        board["metric"],
        board["headline"][board["metric"].split(".", 1)[1]],
        board["headline"]["test_top1"],
    )
    if metrics is not None:
        metrics.log_metric("trials", float(len(rows)))
        metrics.log_metric("winner_trial", float(winner["index"]))
        for key in ("val_top1", "test_top1", "knn_test_top1"):
            if winner[key] is not None:
                metrics.log_metric(f"winner_{key}", float(winner[key]))
    if cfg.storage.export_uri:
        export_results(cfg.storage.export_uri, run_name, {name: outputs[name] for name in OUTPUT_FILES})
    return board
