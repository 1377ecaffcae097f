#!/usr/bin/env bash
# System packages the integration tests drive: Debian's Prometheus Pushgateway,
# promtool (Debian's prometheus: the alert rules' checks) and headless Chromium
# (the report's browser test). Idempotent; needs root or
# sudo. Without either it says what is missing and the tests that need it fail
# (in CI) or skip (elsewhere) with that reason.
set -euo pipefail
need=()
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
  echo "install-tools: not root and no sudo; install these yourself: ${need[*]}" >&2; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
