#!/usr/bin/env bash
# Soak: MINUTES (default 10) at half the measured capacity against the embedded default on
# loopback, sampling RSS, disk, latency and the consumers' backlog (scripts/attack/soak.py).
# Not part of the test suite; the figures go in docs/RELIABILITY.md.
#
#   scripts/soak.sh [minutes] [extra soak.py flags]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-10}"
shift || true
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build -p liveops --locked
exec python3 scripts/attack/soak.py --bin "$TARGET_DIR/debug/liveops" --minutes "$MINUTES" "$@"
