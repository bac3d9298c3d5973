#!/usr/bin/env bash
# A replicated PostgreSQL cluster on one machine, for tests and for trying failover: one etcd and
# three PostgreSQL servers run by Patroni, in synchronous strict mode (an acknowledged commit is on
# two servers), with WAL archived to a directory every server shares. Separate ports and data
# directories; nothing of the machine's own PostgreSQL is touched.
#
#   ops/pg-cluster.sh install        Patroni (PyPI, into a virtualenv) and etcd (Debian's etcd-server)
#   ops/pg-cluster.sh start          starts etcd and the three nodes; waits for a primary and a sync standby
#   ops/pg-cluster.sh stop           stops the nodes, then etcd, cleanly
#   ops/pg-cluster.sh status         Patroni's view of the cluster
#   ops/pg-cluster.sh url [DB]       the multi-host URL that follows the primary
#   ops/pg-cluster.sh primary        the port of the current primary (none: exit 1)
#   ops/pg-cluster.sh wait-primary   waits until a primary with a sync standby accepts writes
#   ops/pg-cluster.sh kill-primary   SIGKILLs the primary's PostgreSQL server, as a crash would
#   ops/pg-cluster.sh destroy        stop, then remove the cluster's directory
#
# Settings (environment):
#   OPENMVS_PG_CLUSTER_DIR   where data, logs and the WAL archive live (default /tmp/openmvs-pg-cluster)
#   OPENMVS_PG_CLUSTER_PORT  the first server's port; the others follow, Patroni's REST ports are
#                            +10, +11, +12 and etcd's +20, +21 (default 15441)
#   OPENMVS_HA_VENV          the virtualenv Patroni is installed into (default /opt/openmvs-ha/venv
#                            as root, ~/.cache/openmvs-ha/venv otherwise)
#
# PostgreSQL refuses to run as root: run as root, the script runs the servers as the `postgres`
# user and gives it the cluster's directory. In production each node runs on its own machine, with
# three etcd members; README.md ("Replicated PostgreSQL") says what changes.
set -euo pipefail

DIR="${OPENMVS_PG_CLUSTER_DIR:-/tmp/openmvs-pg-cluster}"
PORT="${OPENMVS_PG_CLUSTER_PORT:-15441}"
# Run as root, the virtualenv is where the `postgres` user can read it.
if [ "$(id -u)" = 0 ]; then default_venv=/opt/openmvs-ha/venv; else default_venv="$HOME/.cache/openmvs-ha/venv"; fi
VENV="${OPENMVS_HA_VENV:-$default_venv}"
ETCD_PORT=$((PORT + 20))
ETCD_PEER=$((PORT + 21))
NODES=(1 2 3)
SCOPE=openmvs

pg_port() { echo $((PORT + $1 - 1)); }
rest_port() { echo $((PORT + 9 + $1)); }

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

bin_dir() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
    pg_config --bindir
    return
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/postgres" ] || die "no PostgreSQL server binaries (apt-get install postgresql)"
  echo "$d"
}

# The prefix that runs a command as the user the servers run as, in place (exec, no process in
# between, so that a pid recorded is the command's own).
AS_PG=()
if [ "$(id -u)" = 0 ]; then
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
as_pg() { "${AS_PG[@]}" "$@"; }

install() {
  if ! command -v etcd >/dev/null 2>&1; then
    local apt_get="apt-get"
    [ "$(id -u)" = 0 ] || apt_get="sudo apt-get"
    $apt_get update -qq || die "apt-get update failed: etcd cannot be installed"
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq etcd-server >/dev/null \
      || die "apt-get install etcd-server failed"
  fi
  command -v etcd >/dev/null 2>&1 || die "etcd is not on the PATH after installing etcd-server"
  # Run as root, the servers run as postgres, which must be able to run the virtualenv's
  # interpreter: Debian's, not one under root's home.
  local py=python3
  if [ "$(id -u)" = 0 ]; then
    py=/usr/bin/python3
    [ -x "$py" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null \
      || die "apt-get install python3 failed"
    if [ -d "$VENV" ] && ! grep -q '^home = /usr/bin$' "$VENV/pyvenv.cfg" 2>/dev/null; then
      rm -rf "$VENV"
    fi
  fi
  if [ ! -x "$VENV/bin/patroni" ]; then
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
      [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$VENV"
      "$py" -m venv "$VENV" || die "$py -m venv $VENV failed"
    fi
    "$VENV/bin/pip" install --quiet "patroni[etcd3,psycopg3]==4.1.5" || die "pip install patroni failed"
  fi
  "$VENV/bin/patroni" --version >/dev/null || die "Patroni does not run from $VENV"
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$VENV/bin/patroni" --version >/dev/null \
      || die "the postgres user cannot run Patroni from $VENV (set OPENMVS_HA_VENV to a place it can read)"
  fi
}

node_config() {
  local n=$1 bin=$2
  local p r
  p=$(pg_port "$n")
  r=$(rest_port "$n")
  cat <<EOF
scope: $SCOPE
namespace: /openmvs/
name: pg$n
log:
  level: WARNING
  dir: $DIR/pg$n/log
restapi:
  listen: 127.0.0.1:$r
  connect_address: 127.0.0.1:$r
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    # A primary whose server crashed is not restarted in place: a synchronous standby, which has
    # every acknowledged commit, takes over at once.
    primary_start_timeout: 0
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 512MB
        max_connections: 200
        archive_mode: "always"
        archive_command: "$DIR/archive-wal %p %f"
        archive_timeout: 60
  initdb:
    - encoding: UTF8
    - data-checksums
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$p
  connect_address: 127.0.0.1:$p
  data_dir: $DIR/pg$n/data
  bin_dir: $bin
  pgpass: $DIR/pg$n/pgpass
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: $DIR/pg$n
EOF
}

running() {
  local pidfile=$1
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# The port of the node whose Patroni says it is the primary, if any.
primary() {
  local n
  for n in "${NODES[@]}"; do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$(rest_port "$n")/primary" 2>/dev/null; then
      pg_port "$n"
      return 0
    fi
  done
  return 1
}

# Waits (up to $1 seconds) for a primary that has a synchronous standby and commits a write.
wait_primary() {
  local limit=${1:-120} start p
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$limit" ]; do
    if p=$(primary) \
      && curl -fsS --max-time 1 "http://127.0.0.1:$(rest_port $((p - PORT + 1)))/cluster" 2>/dev/null \
        | grep '"role": *"sync_standby"' >/dev/null \
      && psql -X -q -h 127.0.0.1 -p "$p" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE TABLE IF NOT EXISTS pg_cluster_probe (at timestamptz); INSERT INTO pg_cluster_probe VALUES (now())" \
        >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

start() {
  install
  local bin n
  bin=$(bin_dir)
  mkdir -p "$DIR/etcd" "$DIR/wal-archive"
  cat >"$DIR/archive-wal" <<'EOF'
#!/bin/sh
# archive_command: copies a WAL file into the shared archive, durably, once. A file already there
# with the same bytes is success (a new primary archiving what the old one had); other bytes fail.
set -e
src="$1"; name="$2"; dir="$(dirname "$0")/wal-archive"
if [ -f "$dir/$name" ]; then cmp -s "$src" "$dir/$name"; exit $?; fi
cp "$src" "$dir/.$name.tmp"
sync "$dir/.$name.tmp"
mv "$dir/.$name.tmp" "$dir/$name"
EOF
  chmod 755 "$DIR/archive-wal"
  if ! running "$DIR/etcd.pid"; then
    setsid etcd --name openmvs-etcd --data-dir "$DIR/etcd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
      --initial-cluster "openmvs-etcd=http://127.0.0.1:$ETCD_PEER" --log-level warn \
      >"$DIR/etcd.log" 2>&1 </dev/null &
    echo $! >"$DIR/etcd.pid"
  fi
  local i
  for i in $(seq 50); do
    curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 \
    || die "etcd did not start: $(tail -n 20 "$DIR/etcd.log")"
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/pg$n/log"
    node_config "$n" "$bin" >"$DIR/pg$n/patroni.yml"
  done
  [ "$(id -u)" = 0 ] && chown -R postgres: "$DIR"
  for n in "${NODES[@]}"; do
    running "$DIR/pg$n/patroni.pid" && continue
    # The first node alone, until it is the primary: the others then copy it.
    setsid "${AS_PG[@]}" "$VENV/bin/patroni" "$DIR/pg$n/patroni.yml" >>"$DIR/pg$n/patroni.out" 2>&1 </dev/null &
    echo $! >"$DIR/pg$n/patroni.pid"
    if [ "$n" = 1 ]; then
      for i in $(seq 300); do
        primary >/dev/null && break
        sleep 0.2
      done
    fi
  done
  wait_primary 180 || die "no primary with a synchronous standby within 180 s; see $DIR/pg*/patroni.out"
  echo "pg-cluster: primary on port $(primary); $(url)"
}

stop() {
  local n i
  for n in "${NODES[@]}"; do
    if running "$DIR/pg$n/patroni.pid"; then kill -TERM "$(cat "$DIR/pg$n/patroni.pid")"; fi
  done
  for n in "${NODES[@]}"; do
    for i in $(seq 300); do
      running "$DIR/pg$n/patroni.pid" || break
      sleep 0.1
    done
    if running "$DIR/pg$n/patroni.pid"; then
      echo "pg-cluster: pg$n did not stop within 30 s; killing it" >&2
      kill -KILL "$(cat "$DIR/pg$n/patroni.pid")" 2>/dev/null || true
    fi
    rm -f "$DIR/pg$n/patroni.pid"
    # A server left behind by a killed Patroni.
    if [ -f "$DIR/pg$n/data/postmaster.pid" ]; then
      as_pg "$(bin_dir)/pg_ctl" -D "$DIR/pg$n/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
  done
  if running "$DIR/etcd.pid"; then
    kill -TERM "$(cat "$DIR/etcd.pid")"
    for i in $(seq 100); do
      running "$DIR/etcd.pid" || break
      sleep 0.1
    done
  fi
  rm -f "$DIR/etcd.pid"
}

url() {
  local db=${1:-postgres} hosts="" n
  for n in "${NODES[@]}"; do
    hosts="$hosts${hosts:+,}127.0.0.1:$(pg_port "$n")"
  done
  echo "postgres://postgres@$hosts/$db?target_session_attrs=read-write"
}

kill_primary() {
  local p n pid
  p=$(primary) || die "no primary to kill"
  n=$((p - PORT + 1))
  pid=$(head -n 1 "$DIR/pg$n/data/postmaster.pid")
  kill -KILL "$pid"
  echo "$p"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) "$VENV/bin/patronictl" -c "$DIR/pg1/patroni.yml" list ;;
  url) url "${2:-postgres}" ;;
  primary) primary ;;
  wait-primary) wait_primary "${2:-120}" ;;
  kill-primary) kill_primary ;;
  destroy)
    stop
    rm -rf "$DIR"
    ;;
  *)
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
