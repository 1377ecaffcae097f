#!/usr/bin/env bash
# Single-GPU check of issue 8: ResNet-18 and ResNet-50 (CIFAR stem, batch 512,
# bf16, channels_last) on 50,000 synthetic CIFAR-sized images generated on the
# GPU. Reports seconds per epoch, MFU and the ratios a/b, a/c, and writes
# benchmarks/results/gpu-<device>-<date>.{json,md}. Under 8 minutes on an
# A100/H100-class GPU; creates nothing outside the repository.
#
#   bash benchmarks/gpu_check.sh            # both archs
#   bash benchmarks/gpu_check.sh --compile  # also torch.compile (adds compile time)
#   bash benchmarks/gpu_check.sh --dry-run  # tiny CPU run of the same code
#
# Knobs: KUBECLR_BENCH_{WARMUP,REPEATS,STEPS,WORKERS,IMAGES,THREADS,SEED}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" -m kubeclr.bench.gpu --out benchmarks/results "$@"
