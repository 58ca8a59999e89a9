#!/usr/bin/env bash
# Starts (or stops) throw-away Redis (and a replica of it), a 3-master Redis Cluster, PostgreSQL
# and MariaDB on loopback ports for the test suite, installing Debian's packages if they are
# missing.
#
#   scripts/services.sh start   # installs if needed, starts, writes $LIVEOPS_SERVICES_DIR/env
#                               # (keeps them if they run; LIVEOPS_SERVICES_FRESH=1 restarts)
#   scripts/services.sh stop    # stops them and deletes their data
#   scripts/services.sh env     # prints the env file (source it to run tests by hand)
set -euo pipefail

DIR="${LIVEOPS_SERVICES_DIR:-/tmp/liveops-services}"
REDIS_PORT="${LIVEOPS_REDIS_PORT:-16379}"
REDIS_REPLICA_PORT="${LIVEOPS_REDIS_REPLICA_PORT:-16380}"
read -r -a CLUSTER_PORTS <<< "${LIVEOPS_CLUSTER_PORTS:-17001 17002 17003}"
PG_PORT="${LIVEOPS_PG_PORT:-15432}"
MY_PORT="${LIVEOPS_MYSQL_PORT:-13306}"

# shellcheck source=scripts/services-lib.sh
source "$(dirname "$0")/services-lib.sh"
NAME=services

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

cli() { # port, args...
  local port=$1; shift
  redis-cli -p "$port" "$@"
}

redis_at() { # dir, port, more server options...
  local dir=$1 port=$2; shift 2
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@"
}

replica_up() {
  cli "$REDIS_REPLICA_PORT" info replication | grep -q '^master_link_status:up'
}

cluster_node() { # dir, port
  redis_at "$1" "$2" --cluster-enabled yes --cluster-config-file "$1/nodes.conf" --cluster-node-timeout 2000
}

start_redis() {
  mkdir -p "$DIR/redis"
  redis_at "$DIR/redis" "$REDIS_PORT"
  wait_for "redis" cli "$REDIS_PORT" ping
  # A replica, for the bus that waits until one holds each event (BUS_REDIS_REPLICAS).
  mkdir -p "$DIR/redis-replica"
  redis_at "$DIR/redis-replica" "$REDIS_REPLICA_PORT" --replicaof 127.0.0.1 "$REDIS_PORT"
  wait_for "redis replica" replica_up
  start_redis_cluster cli "redis" cluster_node "${CLUSTER_PORTS[@]}"
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

start_all() {
  need_install
  start_redis
  init_postgres >/dev/null
  start_postgres_on "$PG_PORT" liveops -c listen_addresses=127.0.0.1 -c max_connections=300
  start_mariadb_on "$MY_PORT" 127.0.0.1 liveops --bind-address=127.0.0.1 --max-connections=500
  write_env
}

services_main "$@"
