#!/bin/sh
# Build-time only: install the kubeclr wheel and its locked dependencies into
# /opt/venv, then remove pip from that venv so nothing can be installed at run
# time. Called by images/Dockerfile once per image flavour.
#
#   $1  PyTorch wheel index for this flavour: .../whl/cu130 (gpu) or .../whl/cpu
#   $2  optional extras of kubeclr to install too, e.g. "serve" (the serve target)
#
# torch and torchvision come from that index without dependencies (the index
# decides CUDA vs CPU build of the locked version); everything else, torch's own
# dependencies included, comes from PyPI under the lock's exact pins.
set -eu
torch_index="$1"
extras="${2:-}"
lock=/tmp/requirements.lock
pip="/opt/venv/bin/python -m pip --no-cache-dir --disable-pip-version-check"

grep -E '^(torch|torchvision)==' "$lock" > /tmp/torch-requirements.txt
$pip install --no-deps --index-url "$torch_index" --requirement /tmp/torch-requirements.txt
wheel=$(ls /wheels/kubeclr-*.whl)
$pip install --constraint "$lock" "${wheel}${extras:+[$extras]}"
$pip check
$pip uninstall --yes pip
rm -f /tmp/torch-requirements.txt
