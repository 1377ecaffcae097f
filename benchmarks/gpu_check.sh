#!/usr/bin/env bash
# The one-shot GPU check of issue 27, under 10 minutes on an H100/H200-class GPU:
#  1. python -m kubeclr.bench.gpu: ResNet-18 and ResNet-50 (CIFAR stem, batch 512, bf16,
#     channels_last) on 50,000 synthetic images — the `fast` preset compiled as configured and
#     eager, the bare model step, the PIL DataLoader baseline with 4 and all-cores workers, a
#     CUDA-event split of one step by phase; writes benchmarks/results/gpu-<device>-<date>.{json,md} after
#     each architecture;
#  2. benchmarks/digits_device.py: the smoke recipe on real digits on the GPU (bf16, compiled),
#     then (unless GPU_CHECK_DIGITS_CPU=0) the same on the CPU in fp32: the accuracies should
#     agree within 1.5 points.
# Creates nothing outside the repository.
#
#   bash benchmarks/gpu_check.sh                 # everything
#   bash benchmarks/gpu_check.sh --arch resnet18 # one architecture (step 1 only takes --arch)
#   bash benchmarks/gpu_check.sh --dry-run       # both steps tiny on the CPU (the test suite runs it)
#
# Knobs: KUBECLR_BENCH_{WARMUP,REPEATS,STEPS,WORKERS,IMAGES,THREADS,SEED}; GPU_CHECK_TIMEOUT (s, step 1),
# GPU_CHECK_DIGITS_SEEDS (default "0 1"), GPU_CHECK_DIGITS_CPU (1/0), GPU_CHECK_OUT (default benchmarks/results).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
out="${GPU_CHECK_OUT:-benchmarks/results}"
timeout "${GPU_CHECK_TIMEOUT:-420}" "$PY" -m kubeclr.bench.gpu --out "$out" "$@"
date=$(date -u +%F)
read -r -a seeds <<< "${GPU_CHECK_DIGITS_SEEDS:-0 1}"
digits=("$PY" benchmarks/digits_device.py --seeds "${seeds[@]}")
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then  # the same commands, tiny, on the CPU
    exec "${digits[@]}" --device cpu --precision bf16 --epochs 1 --width 4 --json "$out/digits-device-dry-run-$date.json"
  fi
done
name=$("$PY" -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name().lower()).strip('-'))")
"${digits[@]}" --device cuda --precision bf16 --compile --json "$out/digits-device-$name-$date.json"
if [[ "${GPU_CHECK_DIGITS_CPU:-1}" == 1 ]]; then
  "${digits[@]}" --device cpu --precision fp32 --json "$out/digits-device-cpu-$date.json"
fi
