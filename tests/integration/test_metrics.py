"""kubeclr.telemetry.prometheus against a real Pushgateway and its own /metrics endpoint."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port

from kubeclr.config import MetricsConfig
from kubeclr.core.train import Callback
from kubeclr.telemetry.prometheus import TrainingMetrics, delete_run, step_metrics, training_callback

pytestmark = pytest.mark.integration

RUN = "run-7f3a"
RECORDS = [
    {"epoch": 1, "loss": 5.25, "lr": 0.1, "images_per_second": 812.5, "seconds": 3.0},
    {"epoch": 2, "loss": 4.75, "lr": 0.05, "images_per_second": 830.0, "seconds": 2.5, "knn_top1": 0.375},
]
STEP_TIMES = [0.02, 0.03, 0.2, 0.04]


def _samples(text: str) -> list:
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(text: str, name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    found = [s.value for s in _samples(text) if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def _fake_training(cb: Callback, on_epoch=None) -> None:
    """Drive the callback hooks like train.train_simclr does, with synthetic records."""
    cb.on_train_start(
        {"arch": "resnet18", "device": "cpu", "epochs": 2, "steps_per_epoch": 2, "world_size": 1, "start_epoch": 0}
    )
    for i, record in enumerate(RECORDS):
        for j in range(2):
            cb.on_step_end(2 * i + j + 1, STEP_TIMES[2 * i + j])
        cb.on_epoch_end(record)
        if on_epoch:
            on_epoch(record)
    cb.on_train_end({"arch": "resnet18", "epochs": 2, "final_loss": 4.75})


def test_training_series_reach_gateway_and_endpoint(pushgateway):
    port = free_port()
    cfg = MetricsConfig(pushgateway_url=pushgateway.url, port=port, addr="127.0.0.1")
    scraped = []
    with step_metrics(cfg, RUN, "pretrain") as exporter:
        cb = training_callback(cfg, RUN)
        assert isinstance(cb, TrainingMetrics) and cb.exporter is exporter  # one registry per step
        _fake_training(cb, on_epoch=lambda record: scraped.append(_scrape(port)))

    # The running step's endpoint parsed with prometheus_client's parser, after epoch 1.
    live = dict(run=RUN, step="pretrain")
    assert _value(scraped[0], "simclr_loss", **live) == 5.25
    assert _value(scraped[0], "simclr_epoch", **live) == 1
    assert _value(scraped[1], "simclr_knn_top1", **live) == 0.375
    with pytest.raises(urllib.error.URLError):  # the endpoint is gone once the step ends
        _scrape(port)

    text = pushgateway.metrics_text()
    labels = dict(job="simclr", run=RUN, step="pretrain")
    assert _value(text, "simclr_epoch", **labels) == 2
    assert _value(text, "simclr_loss", **labels) == 4.75
    assert _value(text, "simclr_learning_rate", **labels) == 0.05
    assert _value(text, "simclr_images_per_second", **labels) == 830.0
    assert _value(text, "simclr_epoch_seconds", **labels) == 2.5
    assert _value(text, "simclr_step_duration_seconds_count", **labels) == len(STEP_TIMES)
    assert _value(text, "simclr_step_duration_seconds_sum", **labels) == pytest.approx(sum(STEP_TIMES))
    assert _value(text, "simclr_step_duration_seconds_bucket", le="0.05", **labels) == 3
    assert _value(text, "simclr_step_success", **labels) == 1
    assert _value(text, "simclr_step_last_duration_seconds", **labels) >= 0
    assert _value(text, "simclr_step_last_success_timestamp_seconds", **labels) > 1.6e9
    assert _value(text, "simclr_training_completed_timestamp_seconds", **labels) > 1.6e9
    assert not [s for s in _samples(text) if s.name == "simclr_gpu_memory_bytes"]  # CPU run


def test_callback_alone_serves_during_training(pushgateway):
    port = free_port()
    cfg = MetricsConfig(pushgateway_url=pushgateway.url, port=port, addr="127.0.0.1")
    scraped = []
    _fake_training(training_callback(cfg, RUN), on_epoch=lambda record: scraped.append(_scrape(port)))
    assert _value(scraped[1], "simclr_images_per_second", run=RUN, step="pretrain") == 830.0
    with pytest.raises(urllib.error.URLError):
        _scrape(port)
    assert _value(pushgateway.metrics_text(), "simclr_epoch", run=RUN, step="pretrain") == 2


def test_failed_step_is_recorded_and_reraised(pushgateway):
    cfg = MetricsConfig(pushgateway_url=pushgateway.url)
    with pytest.raises(ValueError, match="boom"), step_metrics(cfg, RUN, "linear_eval"):
        raise ValueError("boom")
    text = pushgateway.metrics_text()
    assert _value(text, "simclr_step_success", run=RUN, step="linear_eval") == 0
    assert not [s for s in _samples(text) if s.name == "simclr_step_last_success_timestamp_seconds"]


def test_steps_are_separate_groups_and_delete_run(pushgateway):
    cfg = MetricsConfig(pushgateway_url=pushgateway.url)
    for step in ("download_split", "compute_stats"):
        with step_metrics(cfg, RUN, step):
            pass
    with step_metrics(cfg, "other-run", "compute_stats"):
        pass
    text = pushgateway.metrics_text()
    assert _value(text, "simclr_step_success", run=RUN, step="download_split") == 1
    assert _value(text, "simclr_step_success", run=RUN, step="compute_stats") == 1
    delete_run(cfg, RUN, ("download_split", "compute_stats"))
    runs = {s.labels.get("run") for s in _samples(pushgateway.metrics_text()) if s.name == "simclr_step_success"}
    assert runs == {"other-run"}


def test_nested_step_metrics_share_one_endpoint(pushgateway):
    port = free_port()
    cfg = MetricsConfig(pushgateway_url=pushgateway.url, port=port, addr="127.0.0.1")
    with step_metrics(cfg, RUN, "pretrain") as outer:
        with step_metrics(cfg, RUN, "pretrain") as inner:  # runtime wrapper + the step itself
            assert inner is outer
        assert _scrape(port) is not None  # still served: the inner block did not close it
    assert _value(pushgateway.metrics_text(), "simclr_step_success", run=RUN, step="pretrain") == 1


def test_gateway_down_logs_one_warning_and_training_completes(pushgateway, caplog):
    url = pushgateway.url
    pushgateway.stop()
    cfg = MetricsConfig(pushgateway_url=url)
    caplog.set_level(logging.DEBUG, logger="kubeclr.telemetry.prometheus")
    with step_metrics(cfg, RUN, "pretrain"):
        _fake_training(training_callback(cfg, RUN))  # pushes after each epoch, at the end, at step exit
    warnings = [r for r in caplog.records if r.name == "kubeclr.telemetry.prometheus" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and url in warnings[0].getMessage()


def test_busy_port_does_not_fail_the_step(caplog):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = MetricsConfig(port=busy.getsockname()[1], addr="127.0.0.1")
        with step_metrics(cfg, RUN, "report"):
            pass
    assert any("cannot serve /metrics" in r.getMessage() for r in caplog.records)


def test_outputs_off_or_other_rank_is_a_no_op(monkeypatch):
    assert type(training_callback(MetricsConfig(), RUN)) is Callback
    with step_metrics(MetricsConfig(), RUN, "report") as exporter:
        assert exporter is None
    monkeypatch.setenv("RANK", "1")
    assert type(training_callback(MetricsConfig(pushgateway_url="http://127.0.0.1:9"), RUN)) is Callback
