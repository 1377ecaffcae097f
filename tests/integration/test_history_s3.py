"""The run history on a real SeaweedFS and the gate's series on a real Pushgateway."""

from __future__ import annotations

import datetime as dt

import pytest

from kubeclr.config import Config
from kubeclr.report.canary import judge, record
from kubeclr.report.gate import STATUS_CODE
from kubeclr.report.history import read_history
from kubeclr.storage.store import open_store
from kubeclr.telemetry.prometheus import export_gate, step_metrics


def _summary(linear: float, run: str) -> dict:
    return {
        "run_name": run,
        "linear_eval": {"test_top1": linear},
        "knn": {"test_top1": linear - 0.1},
        "pretrain": {"images_per_second": 1000.0, "final_loss": 4.0, "device": "cpu"},
        "config_sha256": "0" * 64,
    }


def _one_run(cfg: Config, linear: float, run: str) -> dict:
    summary = _summary(linear, run)
    gate, facts = judge(cfg, summary)
    summary |= {"gate": gate, "history": facts}
    record(cfg, summary, run_id=run, started=dt.datetime.now(dt.timezone.utc))
    return summary


def test_history_survives_a_server_restart_and_skips_a_corrupt_record(s3_server):
    uri = s3_server.uri("history")
    cfg = Config().override(
        {"storage.history_uri": uri, "report.series": "nightly", "gate.min_runs": 2, "gate.action": "fail"}
    )
    _one_run(cfg, 0.80, "r1")
    s3_server.server.stop()
    down = _one_run(cfg, 0.80, "r-down")  # neither readable nor writable: a warning, not a failure
    assert down["gate"]["status"] == "not-armed" and "error" in down["history"]
    s3_server.server.start()
    _one_run(cfg, 0.81, "r2")
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="history/nightly/20990101T000000Z-x.json", Body=b"{oops")
    history = read_history(open_store(uri), "nightly", 20)
    assert [r["run_name"] for r in history.records] == ["r1", "r2"]  # the record of the outage is absent, not partial
    assert history.skipped == 1
    third = _one_run(cfg, 0.60, "r3")
    assert third["history"]["skipped"] == 1 and third["gate"]["runs_compared"] == 2
    assert third["gate"]["status"] == "fail"


def test_the_gate_reaches_a_real_pushgateway(pushgateway):
    cfg = Config().override({"metrics.pushgateway_url": pushgateway.url})
    gate = {
        "status": "fail",
        "comparisons": [
            {"metric": "linear_top1", "value": 0.6, "median": 0.8},
            {"metric": "throughput", "value": 900.0, "median": 1000.0},
        ],
    }
    with step_metrics(cfg.metrics, "night-7", "report"):
        export_gate(cfg.metrics, "night-7", gate, STATUS_CODE["fail"], "nightly", 86400)
    pushed = [line for line in pushgateway.metrics_text().splitlines() if line.startswith("simclr_")]

    def one(name: str, *fragments: str) -> str:
        hits = [x for x in pushed if x.startswith(name + "{") and all(f in x for f in fragments)]
        assert len(hits) == 1, (name, fragments, pushed)
        return hits[0]

    assert float(one("simclr_gate_status", 'run="night-7"', 'series="nightly"').rsplit(" ", 1)[1]) == 2
    assert float(
        one("simclr_metric_vs_median", 'metric="linear_top1"', 'series="nightly"').rsplit(" ", 1)[1]
    ) == pytest.approx(0.75)
    assert float(one("simclr_metric_vs_median", 'metric="throughput"').rsplit(" ", 1)[1]) == pytest.approx(0.9)
    assert float(one("simclr_series_expected_interval_seconds", 'series="nightly"').rsplit(" ", 1)[1]) == 86400
