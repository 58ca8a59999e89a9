#!/usr/bin/env bash
# The server databases' logical backups (scripts/db-backup.sh) against real PostgreSQL and
# MariaDB (scripts/services.sh), with LiveOps writing to them. For each server:
#   1. `liveops serve` on a fresh database takes XP events (10 XP each, many players);
#   2. a dump taken WHILE it writes restores into a new database that is one consistent
#      instant: every player's XP is 10 x the progression events it records as applied;
#   3. once the traffic is drained, a dump restored into another new database equals the source
#      table for table (rows and content hash), and a restore over a database holding tables is
#      refused;
#   4. `liveops serve` on the restored database answers every player's progress as the source.
#
#   source /tmp/liveops-services/env; LIVEOPS_BIN=target/debug/liveops scripts/check/db-backup.sh
#
# Needs: liveops built with --features full, postgresql-client, mariadb-client, python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${LIVEOPS_BIN:-$ROOT/target/debug/liveops}"
TOOL="$ROOT/scripts/db-backup.sh"
[ -n "${LIVEOPS_TEST_PG_URL:-}" ] && [ -n "${LIVEOPS_TEST_MYSQL_URL:-}" ] || {
  echo "db-backup check: source the env of scripts/services.sh first" >&2; exit 1; }
[ -x "$BIN" ] || { echo "db-backup check: no liveops at $BIN (cargo build --features full)" >&2; exit 1; }
WORK="$(mktemp -d /tmp/liveops-dbbackup.XXXXXX)"
export PGOPTIONS="-c client_min_messages=warning"
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PORT="${LIVEOPS_DBBACKUP_CHECK_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
BASE="http://127.0.0.1:$PORT"
PLAYERS=40
passed=0
APP=""
DBS=()

ok() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { echo "FAILED: $*" >&2; [ -f "$WORK/liveops.log" ] && tail -n 20 "$WORK/liveops.log" >&2; exit 1; }
stop_app() { [ -n "$APP" ] && kill "$APP" 2>/dev/null && wait "$APP" 2>/dev/null; APP=""; }
cleanup() {
  stop_app || true
  for url in "${DBS[@]}"; do admin "$url" drop >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# url_for BASE_URL NAME: the same server and credentials, database NAME.
url_for() { sed -E "s#/[^/?]+(\?.*)?\$#/$2\1#" <<<"$1"; }

# admin URL create|drop: creates or drops the database URL names (through the server's
# maintenance database).
admin() {
  local url=$1 db
  db=$(sed -E 's#.*/([^/?]+)(\?.*)?$#\1#' <<<"$url")
  case "$url" in
    postgres*)
      local maint; maint=$(url_for "$url" postgres)
      if [ "$2" = create ]; then psql -X -q "$maint" -c "CREATE DATABASE $db" >/dev/null
      else psql -X -q "$maint" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; fi ;;
    mysql*)
      local hostport user pass
      user=$(sed -E 's#mysql://([^:]+):.*#\1#' <<<"$url"); pass=$(sed -E 's#mysql://[^:]+:([^@]+)@.*#\1#' <<<"$url")
      hostport=$(sed -E 's#.*@([^/]+)/.*#\1#' <<<"$url")
      if [ "$2" = create ]; then stmt="CREATE DATABASE $db"; else stmt="DROP DATABASE IF EXISTS $db"; fi
      MYSQL_PWD="$pass" mariadb --no-defaults --protocol=tcp -h "${hostport%:*}" -P "${hostport#*:}" -u "$user" -e "$stmt" ;;
  esac
}

fresh() { # base URL, name -> prints the URL of a new empty database
  local url; url=$(url_for "$1" "$2_$$")
  admin "$url" drop; admin "$url" create; DBS+=("$url"); echo "$url"
}

# query URL SQL: one value.
query() {
  case "$1" in
    postgres*) psql -X -q -t -A "$1" -c "$2" ;;
    mysql*)
      local hostport user pass db
      user=$(sed -E 's#mysql://([^:]+):.*#\1#' <<<"$1"); pass=$(sed -E 's#mysql://[^:]+:([^@]+)@.*#\1#' <<<"$1")
      hostport=$(sed -E 's#.*@([^/]+)/.*#\1#' <<<"$1"); db=$(sed -E 's#.*/([^/?]+)(\?.*)?$#\1#' <<<"$1")
      MYSQL_PWD="$pass" mariadb --no-defaults --protocol=tcp -h "${hostport%:*}" -P "${hostport#*:}" -u "$user" -N -B -e "$2" "$db" ;;
  esac
}

serve() { # DB_URL
  ENV=dev HMAC_SECRET="$SECRET" DATA_DIR="$WORK/data-$RANDOM" PORT="$PORT" BIND=127.0.0.1 \
    LOG_LEVEL=warn DB_URL="$1" BACKUP_EVERY=0 RATE_LIMIT_MAX=1000000 "$BIN" serve > "$WORK/liveops.log" 2>&1 &
  APP=$!
  for _ in $(seq 1 300); do curl -sf "$BASE/readyz" >/dev/null && return 0; sleep 0.2; done
  fail "liveops serve on the database never became ready"
}

# traffic ROUNDS: every player gets ROUNDS events of 10 XP, in batches of PLAYERS. Every batch is
# a new body (the activity carries a nanosecond stamp): two writers sending the same batch in the
# same second would be refused as a replayed signature.
traffic() {
  local round
  for round in $(seq 1 "$1"); do
    python3 - "$WORK/batch.json" "$round" "$PLAYERS" <<'EOF'
import json, sys, time
path, rnd, players = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
events = [{"type": "progression", "playerId": f"player_dump_{p}", "ts": int(time.time()),
           "payload": {"deltaXp": 10, "activity": f"quest_{rnd}_{time.time_ns()}"}} for p in range(players)]
json.dump({"events": events}, open(path, "w"))
EOF
    HMAC_SECRET="$SECRET" "$BIN" send --url "$BASE" --data-dir "$WORK/client" "$WORK/batch.json" \
      > "$WORK/send.log" 2>&1 || { cat "$WORK/send.log"; tail -20 "$WORK/liveops.log"; fail "liveops send (round $round)"; }
  done
}

consistent() { # URL: XP total == 10 x applied progression events
  local xp applied
  xp=$(query "$1" "SELECT coalesce(sum(xp), 0) FROM player_xp")
  applied=$(query "$1" "SELECT count(*) FROM processed_events WHERE consumer = 'progression'")
  [ "$xp" -eq $((10 * applied)) ] || fail "$1: $xp XP for $applied applied events"
  echo "$applied"
}

progress_of_all() {
  local p
  for p in $(seq 0 $((PLAYERS - 1))); do
    curl -s "$BASE/players/player_dump_$p/progress" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["xp"], d.get("pendingCount", len(d.get("pendingRewards", []))))'
  done
}

drill() { # name, admin URL
  local name=$1 base=$2 src online copy restored
  echo "== $name"
  src=$(fresh "$base" liveops_dump_src)
  serve "$src"
  traffic 3
  traffic 40 &
  local writer=$!
  sleep 2
  "$TOOL" dump "$src" "$WORK/$name-online.dump" 2>/dev/null || fail "online dump"
  wait "$writer"
  online=$(fresh "$base" liveops_dump_online)
  "$TOOL" restore "$online" "$WORK/$name-online.dump" 2>/dev/null || fail "restore of the online dump"
  local applied total
  applied=$(consistent "$online")
  [ "$applied" -gt 0 ] || fail "the online dump holds no applied event"
  ok "dump taken while liveops wrote: restored, consistent ($applied events applied, XP = 10 x events)"

  # Drained: every sent event applied.
  total=$((PLAYERS * 43))
  for _ in $(seq 1 300); do
    [ "$(query "$src" "SELECT count(*) FROM processed_events WHERE consumer = 'progression'")" = "$total" ] && break
    sleep 0.2
  done
  [ "$(consistent "$src")" = "$total" ] || fail "the source never applied all $total events"
  [ "$applied" -lt "$total" ] || fail "the online dump was taken after the traffic ended"
  "$TOOL" dump "$src" "$WORK/$name.dump" 2>/dev/null || fail "dump"
  "$TOOL" tables "$src" > "$WORK/$name-src.tables"
  progress_of_all > "$WORK/$name-src.progress"
  stop_app
  copy=$(fresh "$base" liveops_dump_copy)
  "$TOOL" restore "$copy" "$WORK/$name.dump" 2>/dev/null || fail "restore"
  "$TOOL" tables "$copy" > "$WORK/$name-copy.tables"
  diff -u "$WORK/$name-src.tables" "$WORK/$name-copy.tables" || fail "restored tables differ"
  ok "drained ($total events): restored copy equals the source, $(wc -l < "$WORK/$name-src.tables") tables (rows and content hash)"
  if "$TOOL" restore "$copy" "$WORK/$name.dump" 2>"$WORK/refused.txt"; then
    fail "a restore over a database holding tables was accepted"
  fi
  grep -q "restore only into an empty database" "$WORK/refused.txt" || fail "$(cat "$WORK/refused.txt")"
  ok "a restore over a database holding tables is refused"

  restored=$copy
  serve "$restored"
  progress_of_all > "$WORK/$name-copy.progress"
  diff -u "$WORK/$name-src.progress" "$WORK/$name-copy.progress" || fail "progress differs after restore"
  stop_app
  ok "liveops on the restored database answers the same progress for all $PLAYERS players"
}

drill postgresql "$LIVEOPS_TEST_PG_URL"
drill mariadb "$LIVEOPS_TEST_MYSQL_URL"
echo "db-backup: $passed passed"
