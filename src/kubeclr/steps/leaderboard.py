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
from kubeclr.config import Config, config_digest
from kubeclr.config.sweep import trial_config
from kubeclr.errors import DataError
from kubeclr.report.leaderboard import leaderboard, trial_row
from kubeclr.report.leaderboard_page import render_html, render_markdown
from kubeclr.steps.report import export_results
from kubeclr.steps.trial_config import trial_name

log = logging.getLogger(__name__)

OUTPUT_FILES = ("leaderboard.json", "leaderboard.html", "leaderboard.md", "encoder.pt")


def _by_digest(what: str, paths: Sequence[str | Path]) -> dict[str, dict]:
    out = {}
    for path in paths:
        doc = read_json(path)
        if not isinstance(doc, dict) or not doc.get("config_sha256"):
            raise DataError(f"{what} {path}: no config_sha256 (not written by this version's steps)")
        out[doc["config_sha256"]] = doc
    return out


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
    histories = _by_digest("history", history_paths)
    results = _by_digest("results", results_paths)
    rows = []
    for i, (trial, tcfg) in enumerate(zip(trials, configs)):
        digest = config_digest(tcfg)
        history, result = histories.get(digest), results.get(digest)
        if history is None or result is None:
            missing = "pretraining history" if history is None else "linear-eval results"
            raise DataError(f"{trial_name(i)}: no {missing} with its config sha256 {digest[:12]}…")
        numbers = {
            "config_sha256": digest,
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
