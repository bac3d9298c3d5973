#!/usr/bin/env bash
# PostgreSQL backups of a system on PostgreSQL: a base backup (pg_basebackup) plus the WAL the
# servers archive (archive_command; ops/pg-cluster.sh sets it to copy into one archive directory),
# restored to any moment after the base backup: point-in-time recovery.
#
#   ops/pg-backup.sh base URL_HOST PORT OUT_DIR
#       a base backup of the server at HOST:PORT (a primary or a standby) into OUT_DIR
#   ops/pg-backup.sh restore BASE_DIR WAL_ARCHIVE DATA_DIR PORT [TARGET_TIME]
#       a new server in DATA_DIR on 127.0.0.1:PORT from the base backup, replaying the archived
#       WAL up to TARGET_TIME ('2026-12-06 23:59:59.123+00'; without it, to the end of the
#       archive), then promoted to accept writes; it runs until `pg_ctl -D DATA_DIR stop`
#
# Run as root, the servers run as the `postgres` user. After a restore, point the systems'
# configurations at the restored server and run `openmvs audit verify --config FILE` for each.
set -euo pipefail

die() {
  echo "pg-backup: $*" >&2
  exit 1
}

bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
    d=$(pg_config --bindir)
  fi
  [ -n "$d" ] && [ -x "$d/postgres" ] || die "no PostgreSQL server binaries (apt-get install postgresql)"
  echo "$d"
}

AS_PG=()
if [ "$(id -u)" = 0 ]; then
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

base() {
  local host=$1 port=$2 out=$3
  [ -e "$out" ] && die "$out exists: give a new directory"
  mkdir -p "$out"
  [ "$(id -u)" = 0 ] && chown postgres: "$out"
  # Streams the WAL it needs beside the copy, so that the base backup alone is consistent.
  "${AS_PG[@]}" "$(bin_dir)/pg_basebackup" -h "$host" -p "$port" -U postgres -D "$out" \
    -Fp -X stream -c fast --no-password
  echo "pg-backup: base backup of $host:$port in $out"
}

restore() {
  local base=$1 archive=$2 data=$3 port=$4 target=${5:-}
  [ -d "$base" ] || die "$base: no base backup there"
  [ -d "$archive" ] || die "$archive: no WAL archive there"
  [ -e "$data" ] && die "$data exists: give a new directory"
  mkdir -p "$data"
  cp -a "$base/." "$data/"
  chmod 700 "$data"
  # The copied server's settings are the cluster's (synchronous standbys, archiving, its port):
  # the restored server gets its own.
  rm -f "$data/standby.signal" "$data/postgresql.auto.conf" "$data/postmaster.pid" "$data/patroni.dynamic.json"
  cat >"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
hba_file = '$data/pg_hba.conf'
ident_file = '$data/pg_ident.conf'
max_connections = 200
wal_level = replica
archive_mode = off
hot_standby = on
restore_command = 'cp "$archive/%f" "%p"'
recovery_target_timeline = 'latest'
recovery_target_action = 'promote'
EOF
  if [ -n "$target" ]; then
    echo "recovery_target_time = '$target'" >>"$data/postgresql.conf"
  fi
  cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  : >"$data/pg_ident.conf"
  touch "$data/recovery.signal"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$data"
  "${AS_PG[@]}" "$(bin_dir)/pg_ctl" -D "$data" -l "$data/restore.log" -w -t 600 start >/dev/null \
    || die "the restored server did not start: $(tail -n 20 "$data/restore.log")"
  local i
  for i in $(seq 6000); do
    if [ "$(psql -X -At -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
      echo "pg-backup: restored into $data, serving on 127.0.0.1:$port${target:+ as of $target}"
      return 0
    fi
    sleep 0.1
  done
  die "the restored server did not finish recovery within 600 s: $(tail -n 20 "$data/restore.log")"
}

case "${1:-}" in
  base)
    [ $# -eq 4 ] || die "usage: base HOST PORT OUT_DIR"
    base "$2" "$3" "$4"
    ;;
  restore)
    [ $# -ge 5 ] || die "usage: restore BASE_DIR WAL_ARCHIVE DATA_DIR PORT [TARGET_TIME]"
    restore "$2" "$3" "$4" "$5" "${6:-}"
    ;;
  stop)
    [ $# -eq 2 ] || die "usage: stop DATA_DIR"
    "${AS_PG[@]}" "$(bin_dir)/pg_ctl" -D "$2" -m fast -w stop >/dev/null
    ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
