#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, then every test (unit, adapter
# conformance against real Redis / Redis Cluster / PostgreSQL / MariaDB, end-to-end against the
# real binary, split deployment, outages, crash). Installs and starts what it needs on loopback
# (scripts/services.sh) and stops it at the end.
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
echo "== cargo clippy (all features)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== the default (embedded) build compiles on its own"
cargo check -p liveops --locked

echo "== servers: Redis, Redis Cluster, PostgreSQL, MariaDB on loopback"
scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source "${LIVEOPS_SERVICES_DIR:-/tmp/liveops-services}/env"

echo "== tests (all features, real servers)"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
echo "== doc tests"
cargo test --workspace --all-features --locked --doc
