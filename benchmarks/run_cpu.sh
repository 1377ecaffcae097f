#!/usr/bin/env bash
# The CPU row of the benchmark table (issue 8 target: a/b >= 0.90, a/c >= 1.0):
# ResNet-18 width 32, batch 128, on this machine's CPU. A few minutes on 2 cores.
#
#   bash benchmarks/run_cpu.sh              # writes benchmarks/results/cpu-<date>.json
#   KUBECLR_BENCH_THREADS=1 bash benchmarks/run_cpu.sh   # pin torch to 1 intra-op thread
#
# Knobs: KUBECLR_BENCH_{WARMUP,REPEATS,STEPS,WORKERS,IMAGES,THREADS,SEED}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
out="benchmarks/results/cpu-$(date -u +%F)${KUBECLR_BENCH_THREADS:+-t$KUBECLR_BENCH_THREADS}.json"
exec timeout "${RUN_CPU_TIMEOUT:-600}" "$PY" -m kubeclr.cli bench --device cpu --preset smoke \
  --set model.width=32 --set pretrain.batch_size=128 --json "$out" "$@"
