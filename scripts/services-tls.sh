#!/usr/bin/env bash
# Starts (or stops) TLS-only twins of the servers of scripts/services.sh, on their own loopback
# ports and directory, for the TLS tests: Redis, a 3-master Redis Cluster (TLS between nodes too),
# PostgreSQL (ssl=on, hostssl only) and MariaDB (require_secure_transport). Certificates are made
# here with openssl: a CA, a server certificate for localhost and 127.0.0.1, and a second,
# unrelated CA for the "wrong CA" cases. Every server also listens on 127.0.0.2, a name its
# certificate does not cover, for the "wrong host name" cases. Plain instances are left alone.
#
#   scripts/services-tls.sh start   # needs the packages scripts/services.sh installs; writes $DIR/env
#   scripts/services-tls.sh stop    # stops them and deletes their data
#   scripts/services-tls.sh env     # prints the env file (source it to run tests by hand)
set -euo pipefail

DIR="${LIVEOPS_TLS_SERVICES_DIR:-/tmp/liveops-services-tls}"
REDIS_PORT="${LIVEOPS_REDIS_TLS_PORT:-16390}"
read -r -a CLUSTER_PORTS <<< "${LIVEOPS_CLUSTER_TLS_PORTS:-17021 17022 17023}"
PG_PORT="${LIVEOPS_PG_TLS_PORT:-15442}"
MY_PORT="${LIVEOPS_MYSQL_TLS_PORT:-13316}"
# Throw-away credentials of throw-away servers; the tests check none of them reaches a log.
REDIS_PASS=redis-tls-secret-7f3a
DB_PASS=db-tls-secret-91c2

# shellcheck source=scripts/services-lib.sh
source "$(dirname "$0")/services-lib.sh"
NAME=services-tls

make_certs() {
  local c="$DIR/certs"
  mkdir -p "$c"
  # CAs: EC P-256, CA:TRUE, keyCertSign. rustls (webpki) wants v3 extensions done right.
  for ca in ca other-ca; do
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$c/$ca.key" -out "$c/$ca.pem" -days 30 -subj "/CN=LiveOps test $ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
  done
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$c/server.key" -out "$c/server.csr" -subj "/CN=localhost" 2>/dev/null
  cat > "$c/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
  openssl x509 -req -in "$c/server.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
    -out "$c/server.pem" -days 30 -extfile "$c/server.ext" 2>/dev/null
  chmod 644 "$c"/*.pem
  chmod 600 "$c"/*.key
}

tls_cli() { # port, args... (redis-cli over TLS with the test CA and password)
  local port=$1; shift
  REDISCLI_AUTH="$REDIS_PASS" redis-cli --tls --cacert "$DIR/certs/ca.pem" -h 127.0.0.1 -p "$port" "$@"
}

redis_tls_args() { # dir, port
  echo --port 0 --tls-port "$2" --bind 127.0.0.1 127.0.0.2 --dir "$1" --save '' --appendonly no \
    --tls-cert-file "$DIR/certs/server.pem" --tls-key-file "$DIR/certs/server.key" \
    --tls-ca-cert-file "$DIR/certs/ca.pem" --tls-auth-clients no --requirepass "$REDIS_PASS" \
    --daemonize yes --pidfile "$1/redis.pid" --logfile "$1/redis.log"
}

cluster_node() { # dir, port
  # shellcheck disable=SC2046
  redis-server $(redis_tls_args "$1" "$2") --masterauth "$REDIS_PASS" \
    --tls-cluster yes --tls-replication yes --cluster-enabled yes \
    --cluster-config-file "$1/nodes.conf" --cluster-node-timeout 2000
}

start_redis() {
  mkdir -p "$DIR/redis"
  # shellcheck disable=SC2046
  redis-server $(redis_tls_args "$DIR/redis" "$REDIS_PORT")
  wait_for "redis (TLS)" tls_cli "$REDIS_PORT" ping
  start_redis_cluster tls_cli "redis (TLS)" cluster_node "${CLUSTER_PORTS[@]}"
}

start_postgres() {
  local data
  data=$(init_postgres)
  # The server reads its key as its own user, mode 0600.
  install -o postgres -g postgres -m 600 "$DIR/certs/server.key" "$data/server.key"
  install -o postgres -g postgres -m 644 "$DIR/certs/server.pem" "$data/server.crt"
  cat > "$data/pg_hba.conf" <<HBA
local   all  all                 trust
hostssl all  all  127.0.0.1/32   scram-sha-256
hostssl all  all  127.0.0.2/32   scram-sha-256
HBA
  start_postgres_on "$PG_PORT" "$DB_PASS" -c listen_addresses=127.0.0.1,127.0.0.2 -c max_connections=200 \
    -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key
}

write_env() {
  local cluster="rediss://:$REDIS_PASS@127.0.0.1:${CLUSTER_PORTS[0]}"
  for p in "${CLUSTER_PORTS[@]:1}"; do cluster="$cluster,rediss://:$REDIS_PASS@127.0.0.1:$p"; done
  cat > "$DIR/env" <<ENV
# TLS-only servers (scripts/services-tls.sh). Database URLs carry no TLS parameters: tests add
# sslmode / ssl-mode and the CA. 127.0.0.2 reaches the same servers under a name their
# certificate does not cover.
export LIVEOPS_TEST_REDIS_TLS_URL=rediss://:$REDIS_PASS@127.0.0.1:$REDIS_PORT/
export LIVEOPS_TEST_REDIS_TLS_CLUSTER=$cluster
export LIVEOPS_TEST_PG_TLS_URL=postgres://liveops:$DB_PASS@127.0.0.1:$PG_PORT/liveops
export LIVEOPS_TEST_MYSQL_TLS_URL=mysql://liveops:$DB_PASS@127.0.0.1:$MY_PORT/liveops
export LIVEOPS_TEST_TLS_CA=$DIR/certs/ca.pem
export LIVEOPS_TEST_TLS_OTHER_CA=$DIR/certs/other-ca.pem
export LIVEOPS_TLS_SERVICES_DIR=$DIR
ENV
}

start_all() {
  for tool in openssl redis-server redis-cli mariadb-install-db; do
    command -v "$tool" >/dev/null || { log "$tool is missing: run scripts/services.sh start first"; exit 1; }
  done
  make_certs
  start_redis
  start_postgres
  start_mariadb_on "$MY_PORT" % "$DB_PASS" --bind-address=127.0.0.1,127.0.0.2 --max-connections=300 \
    --ssl-cert="$DIR/certs/server.pem" --ssl-key="$DIR/certs/server.key" --ssl-ca="$DIR/certs/ca.pem" \
    --require-secure-transport=ON
  write_env
}

services_main "$@"
