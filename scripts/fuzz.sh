#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (issue 14, docs/RELIABILITY.md):
#
#   scripts/fuzz.sh [seconds-each]     # default 20 s per target; longer by hand (e.g. 600)
#
# cargo-fuzz comes from scripts/tools.sh (into $LIVEOPS_TOOLS/cargo). The only toolchain is
# stable, so RUSTC_BOOTSTRAP=1 lets it take libFuzzer's nightly flags; no sanitizer (safe Rust:
# the targets look for panics, failed assertions, hangs and runaway memory). The corpus lives
# outside the checkout, seeded with the sample events; a crash leaves its input in
# $FUZZ_WORK/artifacts and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
EACH="${1:-20}"
TOOLS="${LIVEOPS_TOOLS:-/var/tmp/liveops-tools}"
export PATH="$TOOLS/cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}"
WORK="${FUZZ_WORK:-$(mktemp -d /tmp/liveops-fuzz.XXXXXX)}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "cargo-fuzz is missing: run scripts/tools.sh install" >&2
  exit 1
fi
cargo fuzz build --sanitizer none --release
total=0
for target in $(cargo fuzz list); do
  corpus="$WORK/corpus/$target"
  mkdir -p "$corpus" "$WORK/artifacts/$target"
  if [ -d ../shared/sample_events ]; then cp ../shared/sample_events/*.json "$corpus/" 2>/dev/null || true; fi
  log="$WORK/$target.log"
  if ! cargo fuzz run --sanitizer none --release "$target" "$corpus" -- \
      -max_total_time="$EACH" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
      -artifact_prefix="$WORK/artifacts/$target/" -print_final_stats=1 > "$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target FAILED; the input is in $WORK/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  total=$((total + ${runs:-0}))
  echo "fuzz: $target: ${runs:-?} inputs in ${EACH} s, no crash"
done
echo "fuzz: $total inputs in all, no crash"
