#!/usr/bin/env bash
# Soak: MINUTES (default 10) at half the measured capacity against the embedded default on
# loopback, sampling RSS, disk, latency and the consumers' backlog (scripts/attack/soak.py).
# Not part of the test suite; the figures go in docs/RELIABILITY.md.
#
#   scripts/soak.sh [minutes] [extra soak.py flags]
#   LIVEOPS_BIN=/path/to/release/liveops scripts/soak.sh 10   # soak a given build, none made
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-10}"
shift || true
if [ -z "${LIVEOPS_BIN:-}" ]; then
  cargo build -p liveops --locked
  LIVEOPS_BIN="${CARGO_TARGET_DIR:-target}/debug/liveops"
fi
exec python3 scripts/attack/soak.py --bin "$LIVEOPS_BIN" --minutes "$MINUTES" "$@"
