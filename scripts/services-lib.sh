# What scripts/services.sh, services-tls.sh and services-cloud.sh share; sourced, not run.
# The sourcing script sets NAME (its log prefix) and DIR (where its servers keep their data,
# pid files and env file), defines start_all, then calls `services_main "$@"`.

log() { echo "$NAME: $*" >&2; }

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "timed out waiting for $what"
  return 1
}

pg_bin() { # the directory of the newest installed PostgreSQL's programs
  dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)"
}

init_postgres() { # prints the new cluster's data directory, $DIR/pg/data, owned by postgres
  mkdir -p "$DIR/pg"
  chown postgres:postgres "$DIR/pg"
  runuser -u postgres -- "$(pg_bin)/initdb" -D "$DIR/pg/data" -A trust -U postgres >/dev/null
  echo "$DIR/pg/data"
}

start_postgres_on() { # port, password, extra server options: starts it, makes user and database liveops
  local port=$1 pass=$2; shift 2
  runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
    -o "-p $port -k $DIR/pg -c fsync=off $*" start >/dev/null
  psql -h "$DIR/pg" -p "$port" -U postgres -qc "CREATE USER liveops PASSWORD '$pass' SUPERUSER" >/dev/null
  psql -h "$DIR/pg" -p "$port" -U postgres -qc "CREATE DATABASE liveops OWNER liveops" >/dev/null
}

mariadb_root() { # mariadb client as root on the local socket
  mariadb --no-defaults -uroot --socket="$DIR/mysql/mysql.sock" "$@"
}

start_mariadb_on() { # port, user host, password, extra server options: makes user and database liveops
  # (max_allowed_packet as the deployed server's, infra/terraform/modules/stack/mysql-cloud-init)
  local port=$1 host=$2 pass=$3 server=mariadbd; shift 3
  command -v mariadbd >/dev/null || server=mysqld
  mkdir -p "$DIR/mysql"
  mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=root --auth-root-authentication-method=normal \
    --skip-test-db >/dev/null 2>&1
  "$server" --no-defaults --datadir="$DIR/mysql/data" --user=root --port="$port" \
    --socket="$DIR/mysql/mysql.sock" --pid-file="$DIR/mysql/mysql.pid" --innodb-flush-log-at-trx-commit=2 \
    --log-error="$DIR/mysql/error.log" --max-allowed-packet=256M "$@" &
  wait_for "mariadb on $port" mariadb_root -e "SELECT 1"
  mariadb_root -e "
    CREATE DATABASE liveops;
    CREATE USER 'liveops'@'$host' IDENTIFIED BY '$pass';
    GRANT ALL ON *.* TO 'liveops'@'$host';"
}

start_redis_cluster() { # cli function, label, server function (dir, port), ports...
  local cli=$1 label=$2 server=$3 nodes=(); shift 3
  for p in "$@"; do
    mkdir -p "$DIR/cluster-$p"
    "$server" "$DIR/cluster-$p" "$p"
    wait_for "$label cluster node $p" "$cli" "$p" ping
    nodes+=("127.0.0.1:$p")
  done
  "$cli" "$1" --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for "$label cluster" cluster_ok "$cli" "$1"
}

cluster_ok() { # cli function, port
  "$1" "$2" cluster info | grep -q cluster_state:ok
}

stop_all() { # every server with a pid file in a directory of $DIR, PostgreSQL, then the data
  for pidfile in "$DIR"/*/pid "$DIR"/*/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  if [ -d "$DIR/pg/data" ]; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  sleep 0.5
  rm -rf "$DIR"
}

all_alive() { # whether the env file is there and every server of $DIR still runs
  [ -f "$DIR/env" ] || return 1
  local pidfile found=0
  for pidfile in "$DIR"/*/pid "$DIR"/*/*.pid; do
    [ -f "$pidfile" ] || continue
    found=1
    kill -0 "$(cat "$pidfile")" 2>/dev/null || return 1
  done
  if [ -d "$DIR/pg/data" ]; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$DIR/pg/data" status >/dev/null 2>&1 || return 1
  fi
  [ "$found" = 1 ]
}

services_main() { # start | stop | env
  case "${1:-}" in
    start)
      # Several shells of one machine may each start the servers: one that finds them running
      # keeps them (a restart would break the others' tests), unless asked for fresh ones.
      if [ "${LIVEOPS_SERVICES_FRESH:-0}" != 1 ] && all_alive; then
        log "already running: $DIR/env (LIVEOPS_SERVICES_FRESH=1 starts fresh ones)"
        return 0
      fi
      stop_all
      mkdir -p "$DIR"
      chmod 755 "$DIR"
      start_all
      log "ready: $DIR/env"
      ;;
    stop) stop_all ;;
    env) cat "$DIR/env" ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
  esac
}
