"""Prometheus metrics of the pipeline steps (Pushgateway and /metrics)."""
