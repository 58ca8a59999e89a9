#!/usr/bin/env bash
# Logical backups of a LiveOps database on a server (PostgreSQL or MySQL/MariaDB), for the cases
# the managed service's own backups (PITR, geo-redundant copies) do not cover: the MySQL VM, a copy
# to take elsewhere, a restore into a new database for a drill. The embedded default (SQLite and
# the local bus) is backed up by `liveops backup` instead.
#
#   scripts/db-backup.sh dump    <DB_URL> <file>   # consistent online dump, no table locks
#   scripts/db-backup.sh restore <DB_URL> <file>   # into an EMPTY database (refuses otherwise)
#   scripts/db-backup.sh tables  <DB_URL>          # "<table> <rows> <content hash>" per table
#
# DB_URL is the URL LiveOps reads: postgres://user:pass@host:port/db[?sslmode=...] or
# mysql://user:pass@host:port/db[?ssl-mode=...]. The password is passed to the tools through the
# environment (PGPASSWORD, MYSQL_PWD), never on a command line.
#
# PostgreSQL: pg_dump's custom format (one snapshot: the dump is the database at one instant while
# writers go on), restored with pg_restore in one transaction. MySQL/MariaDB: mysqldump (or
# mariadb-dump) --single-transaction (one InnoDB snapshot), gzip-compressed, restored with the
# client. `tables` prints what a restore must reproduce exactly; the drill
# (scripts/check/db-backup.sh) compares it before and after.
#
# Tools: postgresql-client, mariadb-client (Debian), the same major version as the server or newer.
set -euo pipefail

die() { echo "db-backup: $*" >&2; exit 1; }

# parse_url URL: sets SCHEME USER PASS HOST PORT DB QUERY.
parse_url() {
  local url=$1 rest auth hostport
  SCHEME=${url%%://*}
  rest=${url#*://}
  [ "$rest" != "$url" ] || die "not a URL: ${url%%@*}@..."
  QUERY=""
  case "$rest" in *\?*) QUERY=${rest#*\?}; rest=${rest%%\?*} ;; esac
  auth=""
  case "$rest" in *@*) auth=${rest%@*}; rest=${rest##*@} ;; esac
  USER=${auth%%:*}
  PASS=""
  case "$auth" in *:*) PASS=${auth#*:} ;; esac
  # Percent-decoded user and password (a password may hold reserved characters).
  USER=$(printf '%b' "${USER//%/\\x}")
  PASS=$(printf '%b' "${PASS//%/\\x}")
  hostport=${rest%%/*}
  DB=${rest#*/}
  [ "$DB" != "$rest" ] && [ -n "$DB" ] || die "the URL names no database"
  HOST=${hostport%:*}
  PORT=${hostport##*:}
  [ "$PORT" != "$hostport" ] || PORT=""
}

mysql_client() { command -v mariadb >/dev/null && echo mariadb || echo mysql; }
mysql_dump() { command -v mariadb-dump >/dev/null && echo mariadb-dump || echo mysqldump; }

# mysql_args: connection options for the MySQL tools (TLS when the URL asks for it).
mysql_args() {
  MYARGS=(--no-defaults --protocol=tcp -h "$HOST" -u "$USER")
  [ -n "$PORT" ] && MYARGS+=(-P "$PORT")
  case "$QUERY" in
    *ssl-mode=required* | *ssl-mode=REQUIRED* | *ssl-mode=verify* | *ssl-mode=VERIFY*) MYARGS+=(--ssl) ;;
  esac
}

pg_url() { # the URL without query parameters libpq does not know
  local q="" p
  for p in ${QUERY//&/ }; do
    case "$p" in sslmode=* | sslrootcert=* | sslcert=* | sslkey=* | application_name=*) q="$q&$p" ;; esac
  done
  echo "postgresql://$HOST${PORT:+:$PORT}/$DB${q:+?${q#&}}"
}

pg_env() { export PGUSER="$USER" PGPASSWORD="$PASS"; }

# Fails unless the database holds no table (a restore never mixes with existing rows).
ensure_empty() {
  local n
  case "$SCHEME" in
    postgres | postgresql)
      n=$(psql -X -q -t -A "$(pg_url)" -c \
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()")
      ;;
    mysql | mariadb)
      n=$(MYSQL_PWD="$PASS" "$(mysql_client)" "${MYARGS[@]}" -N -B -e \
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()" "$DB")
      ;;
  esac
  [ "$n" = 0 ] || die "database $DB holds $n tables: restore only into an empty database"
}

dump() {
  local url=$1 file=$2
  parse_url "$url"
  [ ! -e "$file" ] || die "$file exists already"
  case "$SCHEME" in
    postgres | postgresql)
      pg_env
      pg_dump --format=custom --compress=6 --no-owner --no-privileges --file="$file.partial" "$(pg_url)"
      ;;
    mysql | mariadb)
      mysql_args
      MYSQL_PWD="$PASS" "$(mysql_dump)" "${MYARGS[@]}" --single-transaction --quick \
        --skip-lock-tables --routines --triggers --no-create-db "$DB" | gzip -6 > "$file.partial"
      ;;
    *) die "unsupported scheme $SCHEME (postgres:// or mysql://)" ;;
  esac
  sync "$file.partial"
  mv "$file.partial" "$file"
  echo "db-backup: $SCHEME database $DB dumped to $file ($(stat -c %s "$file") bytes)" >&2
}

restore() {
  local url=$1 file=$2
  parse_url "$url"
  [ -f "$file" ] || die "no dump at $file"
  case "$SCHEME" in
    postgres | postgresql)
      pg_env
      ensure_empty
      pg_restore --no-owner --no-privileges --exit-on-error --single-transaction \
        --dbname="$(pg_url)" "$file"
      ;;
    mysql | mariadb)
      mysql_args
      ensure_empty
      gzip -t "$file" || die "$file is not a whole gzip file"
      gunzip -c "$file" | MYSQL_PWD="$PASS" "$(mysql_client)" "${MYARGS[@]}" "$DB"
      ;;
    *) die "unsupported scheme $SCHEME (postgres:// or mysql://)" ;;
  esac
  echo "db-backup: $file restored into $SCHEME database $DB" >&2
}

# One line per table: name, rows, and an MD5 of every row in a fixed order.
tables() {
  local url=$1 t
  parse_url "$url"
  case "$SCHEME" in
    postgres | postgresql)
      pg_env
      for t in $(psql -X -q -t -A "$(pg_url)" -c "SELECT table_name FROM information_schema.tables
          WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"); do
        psql -X -q -t -A -F ' ' "$(pg_url)" -c "SELECT '$t', count(*),
            coalesce(md5(string_agg(r::text, E'\n' ORDER BY r::text)), '-') FROM \"$t\" r"
      done
      ;;
    mysql | mariadb)
      mysql_args
      for t in $(MYSQL_PWD="$PASS" "$(mysql_client)" "${MYARGS[@]}" -N -B -e "SELECT table_name
          FROM information_schema.tables WHERE table_schema = DATABASE()
          AND table_type = 'BASE TABLE' ORDER BY 1" "$DB"); do
        local count sum
        count=$(MYSQL_PWD="$PASS" "$(mysql_client)" "${MYARGS[@]}" -N -B -e \
          "SELECT count(*) FROM \`$t\`" "$DB")
        sum=$(MYSQL_PWD="$PASS" "$(mysql_client)" "${MYARGS[@]}" -N -B -e \
          "CHECKSUM TABLE \`$t\` EXTENDED" "$DB" | awk '{print $2}')
        echo "$t $count $sum"
      done
      ;;
    *) die "unsupported scheme $SCHEME" ;;
  esac
}

case "${1:-}" in
  dump) [ $# -eq 3 ] || die "usage: $0 dump <DB_URL> <file>"; dump "$2" "$3" ;;
  restore) [ $# -eq 3 ] || die "usage: $0 restore <DB_URL> <file>"; restore "$2" "$3" ;;
  tables) [ $# -eq 2 ] || die "usage: $0 tables <DB_URL>"; tables "$2" ;;
  *) echo "usage: $0 dump|restore <DB_URL> <file> | tables <DB_URL>" >&2; exit 2 ;;
esac
