#!/usr/bin/env bash
# The cloud buses under load, in one run (docs/BENCHMARKS.md, "Cloud buses"): `liveops bench`
# single-event ingest with the ceiling, on the embedded default, then over SQS (moto) and over
# AMQP 1.0 (the test broker standing in for Service Bus); then, for SQS, a separate
# `liveops serve` driven by `liveops bench --url`, whose /metrics give the SQS round trips per
# event. Against emulators on the same two cores the absolute numbers mean little; the round
# trips per batch carry over.
# Needs scripts/services-cloud.sh (started here if its env file is missing).
# Usage: scripts/bench-cloud.sh [duration-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-8}"
CLOUD_ENV="${LIVEOPS_CLOUD_DIR:-/tmp/liveops-cloud}/env"
[ -f "$CLOUD_ENV" ] || bash scripts/services-cloud.sh start >/dev/null
# shellcheck disable=SC1090
source "$CLOUD_ENV"
# LIVEOPS_BIN: a release build with these features already made (none is built then).
BIN="${LIVEOPS_BIN:-${CARGO_TARGET_DIR:-target}/release/liveops}"
[ -n "${LIVEOPS_BIN:-}" ] || cargo build --release -q -p liveops --features sqs,servicebus
export LOG_LEVEL=warn RATE_LIMIT_MAX=100000
# Static keys and an explicit endpoint: nothing reaches for instance metadata.
SQS=(env BUS_KIND=sqs SQS_ENDPOINT="$LIVEOPS_TEST_SQS_ENDPOINT" AWS_REGION=us-east-1
     AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true)
AMQP=(env BUS_KIND=servicebus BUS_CONN="$LIVEOPS_TEST_AMQP_URL")
RUN=(--spawn --ceiling --players 10000 --connections 32 --duration "$DURATION")

echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cores"
echo "== embedded default"
"$BIN" bench "${RUN[@]}"
echo "== SQS on moto"
"${SQS[@]}" SQS_QUEUE_PREFIX="b$RANDOM" "$BIN" bench "${RUN[@]}"
echo "== AMQP 1.0 test broker"
"${AMQP[@]}" "$BIN" bench "${RUN[@]}"

echo "== SQS round trips per event (liveops serve + bench --url)"
DIR=$(mktemp -d)
PORT=18480
"${SQS[@]}" SQS_QUEUE_PREFIX="r$RANDOM" DATA_DIR="$DIR" PORT="$PORT" BIND=127.0.0.1 \
  HMAC_SECRET=bench-secret-0123456789abcdef-0123456789 "$BIN" serve &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done
HMAC_SECRET=bench-secret-0123456789abcdef-0123456789 "$BIN" bench --url "http://127.0.0.1:$PORT" \
  --players 10000 --connections 32 --duration "$DURATION"
curl -fs "http://127.0.0.1:$PORT/metrics" | grep -E '^(bus_round_trips_total|events_ingested_total)'
