#!/usr/bin/env bash
# Read replicas against a real PostgreSQL streaming replica: makes one of the test server
# (scripts/services.sh) with pg_basebackup on its own port, runs `liveops serve` with
# DB_URL=primary and DB_READ_URL=replica, and checks what players and operators see:
#   1. the replica catches up: /readyz says "ok", db_read_replica_usable is 1;
#   2. reads go to the replica: with its replay paused, a just-applied event is not visible yet
#      (the read is stale, as replicas are), while the primary already has it;
#   3. when the replica lags more than DB_READ_MAX_LAG, reads go to the primary (the event is
#      visible) and /readyz, still 200, says the replica is lagging;
#   4. replay resumed: reads go back to the replica;
#   5. the replica stopped: reads keep working on the primary, /readyz says why; restarted: used
#      again.
#
#   source /tmp/liveops-services/env; LIVEOPS_BIN=target/debug/liveops scripts/check/replica.sh
#
# Needs: the servers of scripts/services.sh (LIVEOPS_TEST_PG_URL, LIVEOPS_SERVICES_DIR), a
# liveops built with --features full, PostgreSQL's binaries (Debian postgresql), python3.
# The replica listens on LIVEOPS_PG_REPLICA_PORT (default 15433) and is deleted at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${LIVEOPS_BIN:-$ROOT/target/debug/liveops}"
SERVICES="${LIVEOPS_SERVICES_DIR:-/tmp/liveops-services}"
[ -n "${LIVEOPS_TEST_PG_URL:-}" ] || { echo "replica: source $SERVICES/env first" >&2; exit 1; }
[ -x "$BIN" ] || { echo "replica: no liveops binary at $BIN (cargo build --features full)" >&2; exit 1; }
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
PRIMARY_PORT=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$LIVEOPS_TEST_PG_URL")
REPLICA_PORT="${LIVEOPS_PG_REPLICA_PORT:-15433}"
PORT="${LIVEOPS_REPLICA_CHECK_PORT:-$((REPLICA_PORT + 1))}"
WORK="$(mktemp -d /tmp/liveops-replica.XXXXXX)"
chmod 755 "$WORK"
chown postgres "$WORK"  # the replica's socket and log live here
DB="liveops_replica_$$"
PRIMARY="postgres://liveops:liveops@127.0.0.1:$PRIMARY_PORT/$DB"
REPLICA="postgres://liveops:liveops@127.0.0.1:$REPLICA_PORT/$DB"
BASE="http://127.0.0.1:$PORT"
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PLAYER="player_replica_$$"
passed=0

pg() { runuser -u postgres -- "$PGBIN/$1" "${@:2}"; }
sql() { psql -X -q -t -A -h 127.0.0.1 -p "$1" -U postgres -d "${3:-$DB}" -c "$2"; }
fail() { echo "FAILED: $*" >&2; tail -n 30 "$WORK/liveops.log" >&2 || true; exit 1; }
ok() { passed=$((passed + 1)); echo "  ok   [$(date +%T)] $*"; }
cleanup() {
  [ -n "${APP:-}" ] && kill "$APP" 2>/dev/null && wait "$APP" 2>/dev/null
  [ -d "$WORK/replica" ] && pg pg_ctl -D "$WORK/replica" -m immediate stop >/dev/null 2>&1
  sql "$PRIMARY_PORT" "DROP DATABASE IF EXISTS $DB" postgres >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_until SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
wait_until() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || fail "$what (not within ${limit}s)"
    sleep 0.2
  done
}

readyz() { curl -s "$BASE/readyz"; }
repository_check() { readyz | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["repository"])' 2>/dev/null; }
xp() { curl -s "$BASE/players/$PLAYER/progress" | python3 -c 'import json,sys; print(json.load(sys.stdin)["xp"])'; }
primary_xp() { sql "$PRIMARY_PORT" "SELECT coalesce(sum(xp), 0) FROM player_xp WHERE player_id = '$PLAYER'"; }
usable() { curl -s "$BASE/metrics" | awk '$1 == "db_read_replica_usable" {print $2}'; }
replica_pool() { curl -s "$BASE/metrics" | awk '$1 ~ /^db_pool_max_connections[{]/ && $1 ~ /pool="replica"/ {print $2}'; }
replica_reads() { curl -s "$BASE/metrics" | awk '$1 ~ /^db_call_seconds_count[{]/ && $1 ~ /pool="replica"/ && $1 ~ /call="progress"/ {n += $2} END {print n + 0}'; }
send_xp() { # amount
  printf '{"events":[{"type":"progression","playerId":"%s","ts":%s,"payload":{"deltaXp":%s,"activity":"quest_completion"}}]}' \
    "$PLAYER" "$(date +%s)" "$1" > "$WORK/event.json"
  HMAC_SECRET="$SECRET" "$BIN" send --url "$BASE" --data-dir "$WORK/client" "$WORK/event.json" >/dev/null \
    || fail "liveops send"
}

echo "== a streaming replica of 127.0.0.1:$PRIMARY_PORT on 127.0.0.1:$REPLICA_PORT"
sql "$PRIMARY_PORT" "CREATE DATABASE $DB OWNER liveops" postgres >/dev/null
# A standby needs at least the primary's max_connections.
MAXCONN=$(sql "$PRIMARY_PORT" "SHOW max_connections" postgres)
install -d -o postgres -g postgres -m 700 "$WORK/replica"
pg pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$WORK/replica" -R -X stream -c fast
pg pg_ctl -D "$WORK/replica" -l "$WORK/replica.log" -w \
  -o "-p $REPLICA_PORT -k $WORK -c listen_addresses=127.0.0.1 -c hot_standby=on -c max_connections=$MAXCONN" start >/dev/null
[ "$(sql "$REPLICA_PORT" "SELECT pg_is_in_recovery()")" = t ] || fail "the replica is not in recovery"
ok "replica streaming (pg_is_in_recovery on $REPLICA_PORT)"

echo "== liveops serve with DB_URL=primary, DB_READ_URL=replica, DB_READ_MAX_LAG=4s"
ENV=dev HMAC_SECRET="$SECRET" DATA_DIR="$WORK/data" PORT="$PORT" BIND=127.0.0.1 LOG_LEVEL=info \
  DB_URL="$PRIMARY" DB_READ_URL="$REPLICA" DB_READ_MAX_LAG=4s BACKUP_EVERY=0 \
  "$BIN" serve > "$WORK/liveops.log" 2>&1 &
APP=$!
wait_until 60 "liveops ready" bash -c "curl -sf $BASE/readyz >/dev/null"
wait_until 20 "replica in use (/readyz: ok)" bash -c "[ \"\$(curl -s $BASE/readyz | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"checks\"][\"repository\"])')\" = ok ]"
[ "$(usable)" = 1 ] || fail "db_read_replica_usable is $(usable), expected 1"
ok "/readyz: repository ok, db_read_replica_usable 1"

send_xp 100
wait_until 20 "100 XP visible (through the replica)" bash -c "[ \"\$(curl -s $BASE/players/$PLAYER/progress | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"xp\"])')\" = 100 ]"
ok "an event's XP reaches the reads (100)"
[ "$(replica_pool)" = 10 ] || fail "db_pool_max_connections of the replica pool is '$(replica_pool)', expected 10: $(curl -s $BASE/metrics | grep db_pool)"
ok "the replica's pool is reported beside the primary's (db_pool_max_connections 10)"
[ "$(replica_reads)" -gt 0 ] || fail "no progress read counted on the replica pool (db_call_seconds_count{pool=\"replica\"})"
ok "reads through the replica are timed as such ($(replica_reads) progress calls with pool=\"replica\")"

echo "== replay paused: reads stay on the replica (stale) until it lags more than 4s"
sql "$REPLICA_PORT" "SELECT pg_wal_replay_pause()" >/dev/null
send_xp 50
wait_until 10 "the primary has 150 XP" bash -c "[ \"\$(psql -X -q -t -A -h 127.0.0.1 -p $PRIMARY_PORT -U postgres -d $DB -c \"SELECT coalesce(sum(xp),0) FROM player_xp WHERE player_id = '$PLAYER'\")\" = 150 ]"
stale=$(xp)
[ "$stale" = 100 ] || fail "right after the write, the read said $stale: expected the replica's stale 100"
ok "primary 150, read 100: served by the paused replica"

switched=$SECONDS
wait_until 30 "reads move to the primary (150)" bash -c "[ \"\$(curl -s $BASE/players/$PLAYER/progress | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"xp\"])')\" = 150 ]"
note=$(repository_check)
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")
[ "$code" = 200 ] || fail "/readyz answered $code with a lagging replica"
grep -q "lagging" <<<"$note" && grep -q "reads on the primary" <<<"$note" || fail "/readyz says: $note"
[ "$(usable)" = 0 ] || fail "db_read_replica_usable is $(usable), expected 0"
switched=$((SECONDS - switched))
# 4 s of allowed lag, a probe a second, and slack for a loaded machine.
[ "$switched" -le 12 ] || fail "reads moved to the primary only after ${switched}s"
ok "lagging replica: reads from the primary (150) after ${switched}s, /readyz 200: \"$note\""

echo "== replay resumed: reads go back to the replica"
sql "$REPLICA_PORT" "SELECT pg_wal_replay_resume()" >/dev/null
wait_until 20 "replica in use again" bash -c "[ \"\$(curl -s $BASE/readyz | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"checks\"][\"repository\"])')\" = ok ]"
[ "$(xp)" = 150 ] || fail "after catching up the replica reads $(xp)"
ok "caught up: /readyz ok, reads 150"

echo "== replica down: reads on the primary, /readyz says so"
pg pg_ctl -D "$WORK/replica" -m immediate stop >/dev/null
send_xp 25
wait_until 20 "reads from the primary while the replica is down (175)" bash -c "[ \"\$(curl -s $BASE/players/$PLAYER/progress | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"xp\"])')\" = 175 ]"
note=$(repository_check)
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")
[ "$code" = 200 ] && grep -q "reads on the primary" <<<"$note" || fail "/readyz $code: $note"
ok "replica down: reads 175 from the primary, /readyz 200: \"$note\""
pg pg_ctl -D "$WORK/replica" -l "$WORK/replica.log" -w \
  -o "-p $REPLICA_PORT -k $WORK -c listen_addresses=127.0.0.1 -c hot_standby=on -c max_connections=$MAXCONN" start >/dev/null
wait_until 30 "replica in use after its restart" bash -c "[ \"\$(curl -s $BASE/readyz | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"checks\"][\"repository\"])')\" = ok ]"
[ "$(xp)" = 175 ] || fail "after the restart the replica reads $(xp)"
ok "replica back: /readyz ok, reads 175"
grep -q "read replica" "$WORK/liveops.log" || fail "no log line about the replica's state changes"

echo "replica: $passed passed"
