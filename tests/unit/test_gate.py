"""The regression gate and the run history, against hand-computed medians and a real local store."""

from __future__ import annotations

import json

import pytest

from kubeclr.config import Config, GateConfig
from kubeclr.report.gate import evaluate, summary_line
from kubeclr.report.history import append_record, read_history, series_name
from kubeclr.storage.store import LocalStore


def _metrics(linear=0.80, knn=0.70, ips=1000.0, loss=4.0, rankme=None):
    return {
        "linear_eval": {"test_top1": linear},
        "knn": {"test_top1": knn},
        "pretrain": {"images_per_second": ips, "final_loss": loss},
        **({"representation": {"rankme": rankme}} if rankme is not None else {}),
    }


def _records(*values):
    return [{"metrics": _metrics(*v)} for v in values]


def test_medians_and_drops_are_computed_as_documented():
    history = _records((0.80, 0.70, 1000), (0.90, 0.60, 1200), (0.70, 0.80, 800))  # medians 0.80, 0.70, 1000
    gate = evaluate(GateConfig(min_runs=3), _metrics(0.79, 0.69, 900), history)
    by = {c["metric"]: c for c in gate["comparisons"]}
    assert gate["status"] == "pass" and gate["runs_compared"] == 3
    assert by["linear_top1"]["median"] == 0.80 and by["linear_top1"]["floor"] == pytest.approx(0.78)
    assert by["knn_top1"]["drop"] == pytest.approx(0.01)
    assert by["throughput"]["floor"] == pytest.approx(850.0) and by["throughput"]["drop"] == pytest.approx(0.10)
    assert summary_line(gate) == "gate passed against the median of 3 earlier runs"


@pytest.mark.parametrize("action, status", [("fail", "fail"), ("warn", "warn")])
def test_a_drop_beyond_the_allowed_one_fails_or_warns(action, status):
    history = _records((0.80, 0.70, 1000), (0.80, 0.70, 1000))
    gate = evaluate(GateConfig(min_runs=2, action=action), _metrics(0.77, 0.70, 800), history)
    verdicts = {c["metric"]: c["verdict"] for c in gate["comparisons"]}
    assert gate["status"] == status
    assert verdicts == {"linear_top1": "fail", "knn_top1": "pass", "throughput": "fail"}
    line = summary_line(gate)
    assert line.startswith("gate FAILED: " if action == "fail" else "gate warning: ")
    assert "linear_top1 0.77 < 0.78 (median 0.8 - 0.02)" in line and "throughput 800 < 850 (median 1000 - 15%)" in line


def test_too_few_runs_leave_the_gate_unarmed_but_report_the_numbers():
    gate = evaluate(GateConfig(min_runs=3), _metrics(0.10, 0.10, 1.0), _records((0.8, 0.7, 1000)))
    assert gate["status"] == "not-armed" and gate["runs_compared"] == 1
    assert all(c["verdict"] == "not-armed" and c["median"] is not None for c in gate["comparisons"])
    first = evaluate(GateConfig(), _metrics(), [])
    assert first["status"] == "not-armed" and all(c["median"] is None for c in first["comparisons"])


def _with_health(status, init=0.40, final=0.35, **values):
    metrics = _metrics(**values)
    metrics["pretrain"]["health"] = {"status": status, "knn_top1_init": init, "knn_top1_final": final}
    return metrics


@pytest.mark.parametrize("action", ["fail", "warn"])
def test_a_run_below_its_random_init_fails_the_gate_without_history(action):
    gate = evaluate(GateConfig(action=action), _with_health("below-random-init"), [])
    assert gate["status"] == action and gate["runs_compared"] == 0  # no earlier run needed
    assert gate["health"] == {
        "status": "below-random-init",
        "verdict": "fail",
        "knn_top1_init": 0.40,
        "knn_top1_final": 0.35,
        "rankme_final": None,
    }
    head = "gate FAILED: " if action == "fail" else "gate warning: "
    assert summary_line(gate) == head + "pretrain below-random-init: kNN top-1 0.35 <= 0.4 at epoch 0"
    # armed, every comparison passing: still failed, by the health check alone
    armed = evaluate(
        GateConfig(min_runs=1, action=action), _with_health("below-random-init"), _records((0.8, 0.7, 1000))
    )
    assert armed["status"] == action and all(c["verdict"] == "pass" for c in armed["comparisons"])
    # both: the health check first, then the comparisons
    both = evaluate(GateConfig(min_runs=1), _with_health("below-random-init", linear=0.5), _records((0.8, 0.7, 1000)))
    assert summary_line(both).startswith(
        "gate warning: pretrain below-random-init"
    ) and "linear_top1 0.5 <" in summary_line(both)


def test_rankme_is_compared_relatively_against_the_runs_that_measured_it():
    history = _records((0.8, 0.7, 1000, 4.0, 100.0), (0.8, 0.7, 1000, 4.0, 120.0), (0.8, 0.7, 1000))  # one before
    gate = evaluate(GateConfig(min_runs=2, action="fail"), _metrics(rankme=80.0), history)
    (rank,) = [c for c in gate["comparisons"] if c["metric"] == "rankme"]
    assert (rank["median"], rank["floor"], rank["verdict"]) == (110.0, pytest.approx(82.5), "fail")  # 25% below
    assert gate["status"] == "fail" and "rankme 80 < 82.5 (median 110 - 25%)" in summary_line(gate)
    assert evaluate(GateConfig(min_runs=2), _metrics(rankme=90.0), history)["status"] == "pass"
    few = evaluate(
        GateConfig(min_runs=3), _metrics(rankme=10.0), _records(*[(0.8, 0.7, 1000)] * 2, (0.8, 0.7, 1000, 4.0, 99.0))
    )
    assert [c["verdict"] for c in few["comparisons"] if c["metric"] == "rankme"] == ["not-armed"]  # 1 of 3 runs
    unmeasured = evaluate(GateConfig(min_runs=1), _metrics(), history)  # this run has none: nothing to compare
    assert "rankme" not in {c["metric"] for c in unmeasured["comparisons"]}


def test_a_collapsing_run_fails_the_gate_without_history():
    metrics = _metrics()
    metrics["pretrain"]["health"] = {"status": "collapsing", "rankme_final": 1.3}
    gate = evaluate(GateConfig(action="fail"), metrics, [])
    assert gate["status"] == "fail" and summary_line(gate) == "gate FAILED: pretrain collapsing: RankMe 1.3"


@pytest.mark.parametrize("status", ["healthy", "slow-start", "not-learning", None])
def test_other_verdicts_leave_the_gate_to_the_comparisons(status):
    gate = evaluate(GateConfig(action="fail"), _with_health(status), [])
    assert gate["status"] == "not-armed" and gate["health"]["verdict"] == "pass"
    armed = evaluate(GateConfig(min_runs=1, action="fail"), _with_health(status), _records((0.8, 0.7, 1000)))
    assert armed["status"] == "pass"


def test_series_follow_the_comparability_keys_or_the_given_name():
    a = Config()
    assert series_name(a) == series_name(a.override({"pretrain.seed": 5, "metrics.port": 9}))
    assert series_name(a) != series_name(a.override({"pretrain.epochs": 5}))
    assert series_name(a).startswith("resnet18-e100-b512-")
    assert series_name(a.override({"report.series": "nightly canary/v2"})) == "nightly-canary-v2"


def test_history_keeps_the_newest_and_skips_unreadable_records(tmp_path):
    store = LocalStore(tmp_path)
    for day in range(1, 6):
        rec = {
            "end_time": f"2026-12-0{day}T03:00:00Z",
            "kfp_run_id": f"run-{day}",
            "metrics": _metrics(0.8 + day / 100),
        }
        append_record(store, "s", rec)
    (tmp_path / "s" / "20261203T040000Z-corrupt.json").write_text("{not json")
    (tmp_path / "s" / "20261203T050000Z-partial.json").write_text(json.dumps({"metrics": {"knn": {}}}))
    history = read_history(store, "s", limit=3)
    assert [r["kfp_run_id"] for r in history.records] == ["run-3", "run-4", "run-5"]
    assert history.skipped == 2  # both lie among the newest: skipped, counted, never fatal
    assert read_history(store, "other-series", 20).records == []
    assert read_history(LocalStore(tmp_path / "missing"), "s", 20).records == []  # a first run


def test_a_record_is_never_overwritten(tmp_path):
    store = LocalStore(tmp_path)
    rec = {"end_time": "2026-12-01T03:00:00Z", "kfp_run_id": "same", "metrics": _metrics()}
    first, second = append_record(store, "s", rec), append_record(store, "s", rec)
    assert first != second and len(read_history(store, "s", 10).records) == 2


def test_published_references_appear_for_real_cifar10_only():
    from kubeclr.report.notebook import references_html
    from kubeclr.report.references import references_for

    metrics = {
        "dataset": {"synthetic": False, "format": "cifar10"},
        "pretrain": {"arch": "resnet18", "epochs": 200},
        "linear_eval": {"test_top1": 0.88},
        "knn": {"test_top1": 0.85},
    }
    refs = references_for(metrics)
    assert refs and all(r.arch == "resnet18" for r in refs) and refs[0].epochs == 200  # nearest epochs first
    assert all(r.url.startswith("https://") for r in refs)
    html = references_html(metrics)
    assert "this run: 200 epochs, linear 88.0%" in html and "solo-<wbr>learn" in html
    for other in ({"synthetic": True, "format": "cifar10"}, {"synthetic": False, "format": "stl10"}):
        assert references_html({**metrics, "dataset": other}) == ""
