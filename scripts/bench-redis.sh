#!/usr/bin/env bash
# Redis mode against Redis itself, in one run (docs/BENCHMARKS.md, "Redis mode"):
#  1. redis-benchmark: ZINCRBY on a board, and ZREVRANGE 0 99 WITHSCORES on a 1M-member board,
#     the operations the leaderboard issues;
#  2. liveops bench --spawn with hot state and ranks on that Redis (bus: the local SQLite file),
#     then with the Redis Streams bus as well, without and with waiting for the replica
#     (BUS_REDIS_REPLICAS=1): single-event ingest and top-100 / rank reads; then the replica
#     leaving mid-run without and with BUS_REDIS_REPLICAS_AWAY=1, and stalling silently with it;
#  3. the embedded default, same load, for the ratio.
# Needs the loopback servers of scripts/services.sh (started here if not running).
# Usage: scripts/bench-redis.sh [duration-seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-8}"
ENV_FILE=/tmp/liveops-services/env
if ! { [ -f "$ENV_FILE" ] && redis-cli -p 16379 ping >/dev/null 2>&1; }; then
    bash scripts/services.sh start >/dev/null
fi
# shellcheck disable=SC1090
source "$ENV_FILE"
# LIVEOPS_BIN: a release build with these features already made (none is built then).
BIN="${LIVEOPS_BIN:-${CARGO_TARGET_DIR:-target}/release/liveops}"
[ -n "${LIVEOPS_BIN:-}" ] || cargo build --release -q -p liveops --features redis
export LOG_LEVEL=warn RATE_LIMIT_MAX=100000
R=(redis-cli -u "$LIVEOPS_TEST_REDIS_URL")
# redis-benchmark rewrites a progress line with carriage returns; keep its final line only.
rb() { redis-benchmark -u "$LIVEOPS_TEST_REDIS_URL" -c 32 -q "$@" | tr '\r' '\n' | grep -v 'rps=' | grep -v '^ *$'; }

echo "== redis-benchmark ($(redis-server --version | awk '{print $3}')), 32 connections"
"${R[@]}" del bench:lb:small bench:lb:big >/dev/null
rb -n 400000 -r 100000 ZINCRBY bench:lb:small 1 player___rand_int__
"${R[@]}" eval "for i = 1, 1000000 do redis.call('ZADD', KEYS[1], (i * 7919) % 1000003, 'player_' .. i) end return redis.call('ZCARD', KEYS[1])" 1 bench:lb:big >/dev/null
echo "members: $("${R[@]}" zcard bench:lb:big); bytes used: $("${R[@]}" memory usage bench:lb:big)"
rb -n 200000 ZREVRANGE bench:lb:big 0 99 WITHSCORES
rb -n 400000 -r 1000000 ZREVRANK bench:lb:big player___rand_int__
"${R[@]}" del bench:lb:small bench:lb:big >/dev/null

echo "== liveops, hot state and ranks on Redis, bus on the local file"
"${R[@]}" flushdb >/dev/null
REDIS_URL="$LIVEOPS_TEST_REDIS_URL" "$BIN" bench --spawn --players 10000 --connections 32 --duration "$DURATION"
"${R[@]}" flushdb >/dev/null
REDIS_URL="$LIVEOPS_TEST_REDIS_URL" "$BIN" bench --spawn --mode read --players 1000000 --connections 32 --duration "$DURATION"

echo "== liveops, everything on Redis (Streams bus)"
"${R[@]}" flushdb >/dev/null
REDIS_URL="$LIVEOPS_TEST_REDIS_URL" BUS_KIND=redis "$BIN" bench --spawn --players 10000 --connections 32 --duration "$DURATION"
"${R[@]}" flushdb >/dev/null

echo "== liveops, everything on Redis, each event waiting for the replica (BUS_REDIS_REPLICAS=1)"
REDIS_URL="$LIVEOPS_TEST_REDIS_URL" BUS_KIND=redis BUS_REDIS_REPLICAS=1 "$BIN" bench --spawn --players 10000 --connections 32 --duration "$DURATION"
"${R[@]}" flushdb >/dev/null

echo "== liveops, the replica leaving mid-run, without and with BUS_REDIS_REPLICAS_AWAY=1 (ADR 0022)"
# 3 s into a 10 s run the replica stops following (REPLICAOF NO ONE) for 3 s, then follows again
# (a full resync): the statuses show the 503s, the latencies the wait for the replica.
REPLICA_PORT="${LIVEOPS_REDIS_REPLICA_PORT:-16380}"
PRIMARY_PORT="$("${R[@]}" config get port | tail -1)"
# A 10 s ingest run waiting for the replica, BUS_REDIS_REPLICAS_AWAY=$1, while the background
# job started before it acts on the replica; then an empty Redis and the replica following.
replica_run() {
    REDIS_URL="$LIVEOPS_TEST_REDIS_URL" BUS_KIND=redis BUS_REDIS_REPLICAS=1 BUS_REDIS_REPLICAS_AWAY="$1" \
        BUS_REDIS_REPLICA_WAIT_MS=500 "$BIN" bench --spawn --players 10000 --connections 32 --duration 10
    wait
    "${R[@]}" flushdb >/dev/null
    until redis-cli -p "$REPLICA_PORT" info replication | grep -q '^master_link_status:up'; do sleep 1; done
}
for away in 0 1; do
    echo "-- BUS_REDIS_REPLICAS_AWAY=$away"
    (sleep 3; redis-cli -p "$REPLICA_PORT" replicaof no one >/dev/null
     sleep 3; redis-cli -p "$REPLICA_PORT" replicaof 127.0.0.1 "$PRIMARY_PORT" >/dev/null) &
    replica_run "$away"
done

echo "== liveops, the replica stalling silently mid-run, with BUS_REDIS_REPLICAS_AWAY=1 (ADR 0022)"
# 3 s into a 10 s run the replica process is stopped (SIGSTOP) for 3 s: its connection stays
# open and the primary reports it as recent (lag at most 3 s) for most of the stop, so until a
# read shows it behind, only a publish it fails to confirm (a shortfall) stops the waiting.
REPLICA_PID="$(redis-cli -p "$REPLICA_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')"
(sleep 3; kill -STOP "$REPLICA_PID"; sleep 3; kill -CONT "$REPLICA_PID") &
replica_run 1

echo "== liveops, embedded default"
"$BIN" bench --spawn --players 10000 --connections 32 --duration "$DURATION"
