#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every test (unit, adapter
# conformance, end-to-end against the real binary). Installs what it needs and starts nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
# The sample events live beside the repository (../shared/sample_events); tests read them there.
if [ ! -d ../shared/sample_events ]; then
  echo "../shared/sample_events is missing: the tests use the reference events" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
echo "== doc tests"
cargo test --workspace --locked --doc
echo "== benches compile"
cargo bench --workspace --locked --no-run
