"""Benchmarks behind ``simclr-pipeline bench`` and ``benchmarks/gpu_check.sh``."""
