#!/usr/bin/env bash
# The whole test suite, from a fresh machine: formatting, lints, every test (unit, adapter
# conformance against real Redis / Redis Cluster / PostgreSQL / MariaDB, end-to-end against the
# real binary, split deployment, outages, crash), and the checks of every deployment asset
# (Terraform, Jenkinsfile, monitoring rules and dashboards against a live Prometheus).
# Installs and starts what it needs on loopback (scripts/tools.sh, scripts/services.sh) and stops
# it at the end. Independent validators run in the background while the Rust suite runs.
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
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
LOGS="$(mktemp -d /tmp/liveops-checks.XXXXXX)"

echo "== tools: validators and servers (Debian, PyPI, npm; cached in ${LIVEOPS_TOOLS:-/var/tmp/liveops-tools})"
scripts/tools.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check

# Deployment-asset checks need no build: run them beside the Rust suite.
background=()
run_bg() { # name, command...
  local name=$1; shift
  # `|| rc=$?`: under `set -e` a failing check would end the subshell before its status is
  # written, and the wait below would sit out its 30 minutes.
  ( rc=0; "$@" > "$LOGS/$name.log" 2>&1 || rc=$?; echo "$rc" > "$LOGS/$name.rc" ) &
  background+=("$name")
}
run_bg infra scripts/check/infra.sh
run_bg deploy scripts/check/deploy.sh

echo "== cargo clippy (all features)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo doc: every intra-doc link resolves (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked --quiet
echo "== the default (embedded) build compiles on its own"
cargo check -p liveops --locked
echo "== each cloud bus builds on its own"
cargo check -p liveops --locked --features sqs
cargo check -p liveops --locked --features servicebus
# The cargo-fuzz targets need no servers: each runs 20 s beside the rest (scripts/fuzz.sh).
run_bg fuzz scripts/fuzz.sh 20

echo "== servers: Redis, Redis Cluster, PostgreSQL, MariaDB on loopback"
LIVEOPS_SERVICES_FRESH=1 scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source "${LIVEOPS_SERVICES_DIR:-/tmp/liveops-services}/env"
echo "== TLS servers: Redis, Redis Cluster, PostgreSQL, MariaDB behind a test CA"
LIVEOPS_SERVICES_FRESH=1 scripts/services-tls.sh start
trap 'scripts/services-tls.sh stop; scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source "${LIVEOPS_TLS_SERVICES_DIR:-/tmp/liveops-services-tls}/env"
echo "== cloud-bus emulators: moto (SQS) and the AMQP 1.0 test broker on loopback"
LIVEOPS_SERVICES_FRESH=1 scripts/services-cloud.sh start
trap 'scripts/services-cloud.sh stop; scripts/services-tls.sh stop; scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source "${LIVEOPS_CLOUD_DIR:-/tmp/liveops-cloud}/env"

echo "== tests (all features, real servers)"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
echo "== the Redis bus and hot state on an older Redis (Azure Cache runs 6.0)"
scripts/check/redis-compat.sh
echo "== doc tests"
cargo test --workspace --all-features --locked --doc

# The binary the integration tests ran (`--tests` keeps the features they were built with, so
# nothing is compiled again; `-p liveops --all-features` alone unified them differently and
# rebuilt 62 crates, 12 minutes on two cores).
cargo build --workspace --all-features --tests --locked
export LIVEOPS_BIN="$TARGET_DIR/debug/liveops"
# The contract fuzzer runs against its own server while the monitoring checks run against theirs.
run_bg contract scripts/check/contract.sh
echo "== fairness under attack: false positives over honest events, scripted cheaters blocked"
# Bounded (tier bands) and long-tailed (log-normal) honest rewards, each on its own server.
run_bg fairness-lognormal python3 scripts/attack/fairness.py --bin "$LIVEOPS_BIN" --events 20000 --dist lognormal
python3 scripts/attack/fairness.py --bin "$LIVEOPS_BIN" --events 20000
echo "== server database backups: scripts/db-backup.sh against PostgreSQL and MariaDB under traffic"
scripts/check/db-backup.sh
echo "== read replica: a PostgreSQL streaming replica (pg_basebackup), lag and outage"
scripts/check/replica.sh
echo "== monitoring: rules, tests, dashboards, Alertmanager, Alloy; a live Prometheus on the binary"
scripts/check/monitoring.sh

failed=0
for name in "${background[@]}"; do
  wait_for=0
  while [ ! -f "$LOGS/$name.rc" ]; do
    sleep 2; wait_for=$((wait_for + 2))
    if [ "$wait_for" -gt 1800 ]; then echo "== $name: still running after 30 min" >&2; break; fi
  done
  echo "== $name (ran in the background)"
  cat "$LOGS/$name.log"
  if [ "$(cat "$LOGS/$name.rc" 2>/dev/null || echo 1)" != 0 ]; then
    echo "== $name FAILED" >&2
    failed=1
  fi
done
exit "$failed"
