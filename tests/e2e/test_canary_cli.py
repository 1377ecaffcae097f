"""The canary through ``run --local``: three runs into one ``file://`` history, the third broken.

Runs 1 and 2 are the same healthy recipe; run 3 trains with ``pretrain.lr=1e-6`` (the encoder
barely moves). With ``gate.action=fail`` run 3 exits non-zero with one line naming the failed
comparison, after the report, the summary, metrics.json and its history record were written;
with ``warn`` the same run succeeds and says so.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_cli import run

GATE = ["gate.min_runs=2", "gate.max_drop_linear_top1=0.01", "gate.max_drop_knn_top1=0.01"]
GATE += ["gate.max_drop_throughput=0.95"]  # 2 shared cores: throughput is not what this test judges
# The smoke preset as shipped (the demo's data, schedule and kNN monitor): runs 1-2 are also the
# check that the demo's encoder beats the random one. At 6 epochs it did not on an AMD EPYC
# machine (monitor 0.760 -> 0.745, below-random-init); the preset now trains 12.
RECIPE = ["eval.tsne_points=0", "report.series=canary-test"]


def _run(tmp_path, name: str, *sets: str):
    history = f"file://{tmp_path / 'history'}"
    args = ["run", "--local", "--preset", "smoke", "--output-dir", str(tmp_path / name), "--run-name", name]
    for s in (*RECIPE, *GATE, f"storage.history_uri={history}", *sets):
        args += ["--set", s]
    return run(*args)


def _records(tmp_path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "history" / "canary-test").glob("*.json"))]


@pytest.mark.e2e
@pytest.mark.timeout(1500)  # four whole local runs (about 5 minutes on 2 free cores)
def test_a_broken_recipe_fails_the_gate_after_writing_everything(tmp_path):
    for i, name in enumerate(("night-1", "night-2")):
        proc = _run(tmp_path, name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        gate, health = metrics["gate"], metrics["pretrain"]["health"]
        assert gate["status"] == "not-armed" and gate["runs_compared"] == i
        assert health["status"] == "healthy" and health["knn_top1_final"] > health["knn_top1_init"] + 0.05, health
    assert len(_records(tmp_path)) == 2

    proc = _run(tmp_path, "night-3", "pretrain.lr=1e-6", "gate.action=fail")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: local run failed: regression_gate: gate FAILED: "), last
    assert "(median " in last and f"in {tmp_path / 'night-3'}" in last
    out = tmp_path / "night-3"
    metrics = json.loads((out / "metrics.json").read_text())
    gate = metrics["gate"]
    assert gate["status"] == "fail" and gate["runs_compared"] == 2
    failed = [c for c in gate["comparisons"] if c["verdict"] == "fail"]
    assert failed and all(c["value"] < c["floor"] for c in failed)
    assert {"metric", "value", "median", "allowed_drop", "verdict"} <= set(failed[0])
    assert "gate FAILED" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert 'role="alert"><b>Regression gate: fail</b>' in html and "Against earlier runs" in html
    records = _records(tmp_path)
    assert len(records) == 3 and records[-1]["gate"]["status"] == "fail" and records[-1]["run_name"] == "night-3"

    proc = _run(tmp_path, "night-4", "pretrain.lr=1e-6", "gate.action=warn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    gate = json.loads((tmp_path / "night-4" / "metrics.json").read_text())["gate"]
    assert gate["status"] == "warn" and gate["runs_compared"] == 3
    assert "gate warning: " in proc.stdout + proc.stderr
    assert len(_records(tmp_path)) == 4
