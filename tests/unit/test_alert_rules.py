"""The canary's PrometheusRule: ``promtool check rules`` and ``promtool test rules`` on synthetic series.

The rules are read from the manifest itself (its ``spec``), so what is tested is what is deployed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULE = Path(__file__).resolve().parents[2] / "manifests" / "base" / "kubeclr-canary-prometheusrule.yaml"
DAY = 86400


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool (Debian prometheus) is required in CI")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return tool


@pytest.fixture
def rules_file(tmp_path):
    doc = yaml.safe_load(RULE.read_text())
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(doc["spec"]))
    return path


def test_promtool_accepts_the_rules(rules_file):
    proc = subprocess.run([_promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


def _alert(name: str, value: str = "", **labels: str) -> dict:
    """An expected alert: its labels and its annotations as the manifest's templates render them."""
    rules = yaml.safe_load(RULE.read_text())["spec"]["groups"][0]["rules"]
    rule = next(r for r in rules if r.get("alert") == name)
    annotations = {}
    for key, text in rule["annotations"].items():
        for label, v in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", v)
        annotations[key] = text.replace("{{ $value | humanizePercentage }}", value)
    return {"exp_labels": {**labels, **rule["labels"]}, "exp_annotations": annotations}


def _series(name: str, labels: dict, values: str) -> dict:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def test_the_alerts_fire_on_the_newest_run_only(rules_file, tmp_path):
    """Series a: an old failed run (r1) then a passing one (r2): no gate alert. Series b: its newest run
    failed the gate and trained at 70% of the median. Series c: reported once, then silent for 3 days."""
    interval = _series("simclr_series_expected_interval_seconds", {"series": "a", "run": "r1"}, f"{DAY}x300")
    series = [
        _series("simclr_gate_status", {"series": "a", "run": "r1"}, "2x300"),
        _series("simclr_series_last_run_timestamp_seconds", {"series": "a", "run": "r1"}, "0x300"),
        _series("simclr_gate_status", {"series": "a", "run": "r2"}, "0x300"),
        _series("simclr_series_last_run_timestamp_seconds", {"series": "a", "run": "r2"}, "600+0x300"),
        interval,
        _series("simclr_gate_status", {"series": "b", "run": "r9"}, "2x300"),
        _series("simclr_metric_vs_median", {"series": "b", "run": "r9", "metric": "throughput"}, "0.7x300"),
        _series("simclr_series_last_run_timestamp_seconds", {"series": "b", "run": "r9"}, "600+0x300"),
        _series("simclr_series_expected_interval_seconds", {"series": "b", "run": "r9"}, f"{DAY}x300"),
        _series("simclr_series_last_run_timestamp_seconds", {"series": "c", "run": "r5"}, "0x300"),
        _series("simclr_series_expected_interval_seconds", {"series": "c", "run": "r5"}, f"{DAY}x300"),
    ]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "15m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "1h",
                        "alertname": "SimCLRGateFailed",
                        "exp_alerts": [_alert("SimCLRGateFailed", series="b", run="r9")],
                    },
                    {
                        "eval_time": "1h",
                        "alertname": "SimCLRThroughputBelowHistory",
                        "exp_alerts": [_alert("SimCLRThroughputBelowHistory", "70%", series="b", run="r9")],
                    },
                    {"eval_time": "1h", "alertname": "SimCLRCanaryDead", "exp_alerts": []},
                    {
                        "eval_time": "50h",  # > 2 days after c (and a, b) last reported
                        "alertname": "SimCLRCanaryDead",
                        "exp_alerts": [_alert("SimCLRCanaryDead", series=s) for s in ("a", "b", "c")],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests))
    proc = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# PrometheusRule (monitoring.coreos.com/v1), from the Prometheus Operator API reference:
# spec.groups[] of RuleGroup {name, interval, rules, partial_response_strategy, limit, query_offset,
# labels}; rules[] of Rule {record | alert, expr, for, keep_firing_for, labels, annotations}.
_GROUP_FIELDS = {"name", "interval", "rules", "partial_response_strategy", "limit", "query_offset", "labels"}
_RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_the_rule_matches_the_operator_schema_and_is_deployed():
    from tests.unit.test_manifests import TARGETS, _render

    doc = yaml.safe_load(RULE.read_text())
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert set(group) <= _GROUP_FIELDS and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= _RULE_FIELDS, rule
            assert ("alert" in rule) != ("record" in rule) and isinstance(rule["expr"], str)
            if "alert" in rule:
                assert rule["labels"]["severity"] in ("page", "ticket") and rule["annotations"]["summary"]
    for target in TARGETS:
        kinds = {(o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(_render(target)) if o}
        assert ("PrometheusRule", "kubeclr-canary") in kinds and ("PodMonitor", "pushgateway") in kinds, target
