#!/usr/bin/env bash
# Starts (or stops) throw-away Redis, a 3-master Redis Cluster, PostgreSQL and MariaDB on loopback
# ports for the test suite, installing Debian's packages if they are missing.
#
#   scripts/services.sh start   # installs if needed, starts, writes $LIVEOPS_SERVICES_DIR/env
#   scripts/services.sh stop    # stops them and deletes their data
#   scripts/services.sh env     # prints the env file (source it to run tests by hand)
set -euo pipefail

DIR="${LIVEOPS_SERVICES_DIR:-/tmp/liveops-services}"
REDIS_PORT="${LIVEOPS_REDIS_PORT:-16379}"
read -r -a CLUSTER_PORTS <<< "${LIVEOPS_CLUSTER_PORTS:-17001 17002 17003}"
PG_PORT="${LIVEOPS_PG_PORT:-15432}"
MY_PORT="${LIVEOPS_MYSQL_PORT:-13306}"

log() { echo "services: $*" >&2; }

need_install() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Do not let the packages start their own instances.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' RETURN
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out waiting for $what"
  return 1
}

start_redis() {
  mkdir -p "$DIR/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR/redis" --save '' --appendonly no \
    --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log"
  wait_for "redis" redis-cli -p "$REDIS_PORT" ping
  local nodes=()
  for p in "${CLUSTER_PORTS[@]}"; do
    mkdir -p "$DIR/cluster-$p"
    redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/cluster-$p" --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$DIR/cluster-$p/nodes.conf" --cluster-node-timeout 2000 \
      --daemonize yes --pidfile "$DIR/cluster-$p/redis.pid" --logfile "$DIR/cluster-$p/redis.log"
    wait_for "redis cluster node $p" redis-cli -p "$p" ping
    nodes+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for "redis cluster" bash -c "redis-cli -p ${CLUSTER_PORTS[0]} cluster info | grep -q cluster_state:ok"
}

start_postgres() {
  local bin
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  mkdir -p "$DIR/pg"
  chown postgres:postgres "$DIR/pg"
  runuser -u postgres -- "$bin/initdb" -D "$DIR/pg/data" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE USER liveops PASSWORD 'liveops' SUPERUSER" >/dev/null
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE liveops OWNER liveops" >/dev/null
}

start_mariadb() {
  local server=mariadbd
  command -v mariadbd >/dev/null || server=mysqld
  mkdir -p "$DIR/mysql"
  mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=root --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null 2>&1
  "$server" --no-defaults --datadir="$DIR/mysql/data" --user=root --port="$MY_PORT" --bind-address=127.0.0.1 \
    --socket="$DIR/mysql/mysql.sock" --pid-file="$DIR/mysql/mysql.pid" --innodb-flush-log-at-trx-commit=2 \
    --max-connections=500 --log-error="$DIR/mysql/error.log" &
  wait_for "mariadb" mariadb --no-defaults -uroot --socket="$DIR/mysql/mysql.sock" -e "SELECT 1"
  mariadb --no-defaults -uroot --socket="$DIR/mysql/mysql.sock" -e "
    CREATE DATABASE liveops;
    CREATE USER 'liveops'@'127.0.0.1' IDENTIFIED BY 'liveops';
    GRANT ALL ON *.* TO 'liveops'@'127.0.0.1';"
}

write_env() {
  local cluster="redis://127.0.0.1:${CLUSTER_PORTS[0]}"
  for p in "${CLUSTER_PORTS[@]:1}"; do cluster="$cluster,redis://127.0.0.1:$p"; done
  cat > "$DIR/env" <<ENV
export LIVEOPS_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
export LIVEOPS_TEST_REDIS_CLUSTER=$cluster
export LIVEOPS_TEST_PG_URL=postgres://liveops:liveops@127.0.0.1:$PG_PORT/liveops
export LIVEOPS_TEST_MYSQL_URL=mysql://liveops:liveops@127.0.0.1:$MY_PORT/liveops
export LIVEOPS_SERVICES_DIR=$DIR
ENV
}

stop() {
  for pidfile in "$DIR"/redis/redis.pid "$DIR"/cluster-*/redis.pid "$DIR"/mysql/mysql.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ -d "$DIR/pg/data" ]; then
    local bin
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")
    runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  sleep 0.5
  rm -rf "$DIR"
}

case "${1:-}" in
  start)
    need_install
    stop
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    start_redis
    start_postgres
    start_mariadb
    write_env
    log "ready: $(tr '\n' ' ' < "$DIR/env")"
    ;;
  stop) stop ;;
  env) cat "$DIR/env" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
