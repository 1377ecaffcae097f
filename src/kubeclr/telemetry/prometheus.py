"""Prometheus metrics for training and for every pipeline step.

Each step gets its own :class:`~prometheus_client.CollectorRegistry` (never the
global one), labelled with ``run`` (the run name) and ``step``. Two optional
ways out, both from :class:`~kubeclr.config.MetricsConfig`:

- **Pushgateway** (``pushgateway_url``): ``pushadd`` under the grouping key
  ``{job, run, step}`` after every epoch and when the step ends. Following the
  Pushgateway's own advice for batch jobs, the final values stay in the gateway
  together with ``simclr_step_last_success_timestamp_seconds`` (alert on its
  age, not on absence); the run-scoped grouping key keeps runs apart, and
  :func:`delete_run` removes a run's groups when they are no longer wanted. A
  gateway that is down never fails the step: one warning, then silence.
- **/metrics endpoint** (``port``, bound to ``addr``): served while the step
  runs, for a PodMonitor.

Series: ``simclr_epoch``, ``simclr_loss``, ``simclr_learning_rate``,
``simclr_images_per_second``, ``simclr_epoch_seconds``, ``simclr_knn_top1``
(when the monitor runs), ``simclr_gpu_memory_bytes`` (CUDA only),
``simclr_step_duration_seconds`` (histogram of optimiser-step times),
``simclr_training_completed_timestamp_seconds``, and per pipeline step
``simclr_step_success``, ``simclr_step_last_duration_seconds``,
``simclr_step_last_success_timestamp_seconds``; from the report step, the regression gate
(:func:`export_gate`): ``simclr_gate_status{series}`` (0 pass, 1 warn, 2 fail, -1 not armed),
``simclr_metric_vs_median{series, metric}`` (this run / the history's median),
``simclr_series_last_run_timestamp_seconds{series}`` and
``simclr_series_expected_interval_seconds{series}`` (for the dead-canary alert).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import delete_from_gateway, pushadd_to_gateway, start_http_server

from kubeclr.config import MetricsConfig
from kubeclr.core.train import Callback

log = logging.getLogger(__name__)

LABELS = ("run", "step")
PUSH_TIMEOUT_S = 3.0
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_EPOCH_GAUGES = {  # history record key -> (metric name, help)
    "epoch": ("simclr_epoch", "Completed pretraining epochs (1-based)"),
    "loss": ("simclr_loss", "NT-Xent loss, mean over the last epoch"),
    "lr": ("simclr_learning_rate", "Learning rate at the end of the last epoch"),
    "images_per_second": ("simclr_images_per_second", "Training throughput of the last epoch"),
    "seconds": ("simclr_epoch_seconds", "Wall time of the last epoch"),
    "knn_top1": ("simclr_knn_top1", "kNN monitor top-1 accuracy (fraction)"),
}

_active: dict[tuple[str, str], Exporter] = {}  # (run, step) -> exporter of a running step


class Exporter:
    """One step's registry and its two outputs (Pushgateway, /metrics).

    Args:
        cfg: the metrics section (``pushgateway_url``, ``port``, ``addr``, ``job``).
        run_name: value of the ``run`` label and of the grouping key.
        step: value of the ``step`` label (``pretrain``, ``linear_eval``, …).
    """

    def __init__(self, cfg: MetricsConfig, run_name: str, step: str) -> None:
        self.cfg, self.run_name, self.step = cfg, run_name, step
        self.registry = CollectorRegistry()
        self._metrics: dict[str, Any] = {}
        self._server: Any = None
        self._push_failed = False

    def gauge(self, name: str, doc: str, **extra: str) -> Gauge:
        """The labelled child of gauge ``name`` in this registry (created on first use).

        ``extra`` labels (e.g. ``series``, ``metric``) come after ``run`` and ``step``; one gauge
        always takes the same label names.
        """
        if name not in self._metrics:
            self._metrics[name] = Gauge(name, doc, (*LABELS, *extra), registry=self.registry)
        return self._metrics[name].labels(run=self.run_name, step=self.step, **extra)

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
        if name not in self._metrics:
            self._metrics[name] = Histogram(name, doc, LABELS, registry=self.registry, buckets=buckets)
        return self._metrics[name].labels(run=self.run_name, step=self.step)

    def serve(self) -> None:
        """Start the /metrics endpoint on ``cfg.addr:cfg.port`` (no-op when port is 0 or already up)."""
        if self.cfg.port and self._server is None:
            try:
                self._server, _ = start_http_server(self.cfg.port, addr=self.cfg.addr, registry=self.registry)
            except OSError as exc:  # e.g. the port is taken: metrics must never fail the step
                log.warning(
                    "cannot serve /metrics on %s:%d (%s); continuing without it",
                    self.cfg.addr,
                    self.cfg.port,
                    exc.strerror or exc,
                )
                return
            log.info("serving /metrics on %s:%d", self.cfg.addr, self.cfg.port)

    def push(self) -> bool:
        """pushadd to the Pushgateway; returns False (one warning per exporter) if it is unreachable."""
        if not self.cfg.pushgateway_url:
            return False
        try:
            pushadd_to_gateway(
                self.cfg.pushgateway_url,
                job=self.cfg.job,
                registry=self.registry,
                grouping_key={"run": self.run_name, "step": self.step},
                timeout=PUSH_TIMEOUT_S,
            )
            return True
        except Exception as exc:
            level = logging.DEBUG if self._push_failed else logging.WARNING
            log.log(
                level,
                "cannot push metrics to Pushgateway %s (%s); training continues without it",
                self.cfg.pushgateway_url,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            self._push_failed = True
            return False

    def close(self) -> None:
        """Stop the /metrics endpoint."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class TrainingMetrics(Callback):
    """Training callback that mirrors each epoch's history record into Prometheus gauges.

    Uses the exporter of the enclosing :func:`step_metrics` block when there is
    one (same registry, same endpoint); otherwise owns one for the ``pretrain``
    step, serving /metrics from ``on_train_start`` to ``on_train_end``.
    """

    def __init__(self, exporter: Exporter, *, owned: bool) -> None:
        self.exporter, self.owned = exporter, owned
        self._device = "cpu"
        self.step_seconds = exporter.histogram(
            "simclr_step_duration_seconds", "Wall time of one optimiser step", STEP_BUCKETS
        )

    def on_train_start(self, info: Mapping[str, Any]) -> None:
        self._device = str(info.get("device", "cpu"))
        if self.owned:
            self.exporter.serve()
        self.exporter.gauge("simclr_epoch", _EPOCH_GAUGES["epoch"][1]).set(info.get("start_epoch", 0))

    def on_step_end(self, step: int, seconds: float) -> None:
        self.step_seconds.observe(seconds)

    def on_epoch_end(self, record: Mapping[str, Any]) -> None:
        for key, (name, doc) in _EPOCH_GAUGES.items():
            if record.get(key) is not None:
                self.exporter.gauge(name, doc).set(float(record[key]))
        self._gpu_memory()
        self.exporter.push()

    def on_train_end(self, summary: Mapping[str, Any]) -> None:
        self._gpu_memory()
        self.exporter.gauge("simclr_training_completed_timestamp_seconds", "Unix time pretraining finished").set(
            time.time()
        )
        self.exporter.push()
        if self.owned:
            self.exporter.close()

    def _gpu_memory(self) -> None:
        if not self._device.startswith("cuda"):
            return
        import torch  # lazily: this module must stay importable without touching CUDA

        if torch.cuda.is_available():
            self.exporter.gauge("simclr_gpu_memory_bytes", "Peak GPU memory allocated by tensors").set(
                torch.cuda.max_memory_allocated(torch.device(self._device))
            )


def _is_rank0() -> bool:
    """Only one process of a torchrun job exports (RANK is set by torchrun and the operators)."""
    return int(os.environ.get("RANK", "0")) == 0


def training_callback(cfg: MetricsConfig, run_name: str) -> Callback:
    """The callback that exports training metrics for ``run_name``.

    Args:
        cfg: the metrics section.
        run_name: the ``run`` label.

    Returns:
        A :class:`TrainingMetrics`, or a no-op :class:`Callback` when both
        outputs are off or on ranks other than 0.
    """
    if not (cfg.pushgateway_url or cfg.port) or not _is_rank0():
        return Callback()
    active = _active.get((run_name, "pretrain"))
    if active is not None:
        return TrainingMetrics(active, owned=False)
    return TrainingMetrics(Exporter(cfg, run_name, "pretrain"), owned=True)


@contextlib.contextmanager
def step_metrics(cfg: MetricsConfig, run_name: str, step: str) -> Iterator[Exporter | None]:
    """Record a pipeline step's success and duration; serve /metrics while it runs.

    On exit sets ``simclr_step_success`` (1/0), ``simclr_step_last_duration_seconds``
    and, on success, ``simclr_step_last_success_timestamp_seconds``, then pushes.
    The step's exception, if any, propagates unchanged.

    Yields:
        The step's :class:`Exporter` (``None`` when both outputs are off).
    """
    if not (cfg.pushgateway_url or cfg.port) or not _is_rank0():
        yield None
        return
    if (run_name, step) in _active:  # nested (a component's wrapper and the step itself): one record
        yield _active[(run_name, step)]
        return
    exporter = Exporter(cfg, run_name, step)
    exporter.serve()
    _active[(run_name, step)] = exporter
    start = time.monotonic()
    ok = False
    try:
        yield exporter
        ok = True
    finally:
        _active.pop((run_name, step), None)
        exporter.gauge("simclr_step_success", "1 if the step's last run succeeded, else 0").set(int(ok))
        exporter.gauge("simclr_step_last_duration_seconds", "Wall time of the step's last run").set(
            time.monotonic() - start
        )
        if ok:
            exporter.gauge("simclr_step_last_success_timestamp_seconds", "Unix time of the step's last success").set(
                time.time()
            )
        exporter.push()
        exporter.close()


def delete_run(cfg: MetricsConfig, run_name: str, steps: tuple[str, ...]) -> None:
    """Delete a finished run's groups from the Pushgateway (it never forgets them by itself)."""
    for step in steps:
        delete_from_gateway(
            cfg.pushgateway_url, job=cfg.job, grouping_key={"run": run_name, "step": step}, timeout=PUSH_TIMEOUT_S
        )


def export_gate(
    cfg: MetricsConfig, run_name: str, gate: Mapping[str, Any], status_code: int, series: str, interval_s: float
) -> None:
    """Set the gate's series on the report step's exporter (pushed when the step ends).

    Args:
        gate: the metrics.json ``gate`` block (its ``comparisons`` give ``simclr_metric_vs_median``).
        status_code: ``simclr_gate_status``: 0 pass, 1 warn, 2 fail, -1 not armed.
    """
    with step_metrics(cfg, run_name, "report") as exporter:
        if exporter is None:
            return
        exporter.gauge(
            "simclr_gate_status", "Regression gate: 0 pass, 1 warn, 2 fail, -1 not armed", series=series
        ).set(status_code)
        for c in gate["comparisons"]:
            if c.get("median"):
                exporter.gauge(
                    "simclr_metric_vs_median",
                    "This run's value over its series' median",
                    series=series,
                    metric=c["metric"],
                ).set(c["value"] / c["median"])
        exporter.gauge(
            "simclr_series_last_run_timestamp_seconds", "When a run of the series last reported", series=series
        ).set(time.time())
        exporter.gauge(
            "simclr_series_expected_interval_seconds", "How often the series is scheduled to run", series=series
        ).set(interval_s)
