#!/usr/bin/env bash
# The restore time of a market on PostgreSQL: the replicated cluster of ops/pg-cluster.sh (on ports
# from 35441), a national system's schema seeded with N packs, a base backup with ops/pg-backup.sh,
# a thousand supplies after it (in the archived WAL), then the point-in-time restore into a new
# server, `openmvs audit verify` against it, and a node started on it until it serves.
#
#   bench/restore-pg.sh [PACKS]     default 10000000; uses target/release/openmvs
set -euo pipefail
cd "$(dirname "$0")/.."

packs=${1:-10000000}
bin=${OPENMVS_BIN:-target/release/openmvs}
root=${OPENMVS_BENCH_DIR:-/tmp/openmvs-restore-pg-bench}
export OPENMVS_PG_CLUSTER_DIR="$root/cluster" OPENMVS_PG_CLUSTER_PORT=35441
[ -x "$bin" ] || { echo "build it first: cargo build --release -p openmvs" >&2; exit 1; }
ops/pg-cluster.sh destroy >/dev/null 2>&1 || true
rm -rf "$root"
mkdir -p "$root"
cleanup() {
  [ -d "$root/restored" ] && ops/pg-backup.sh stop "$root/restored" >/dev/null 2>&1 || true
  ops/pg-cluster.sh destroy >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

# shellcheck source=bench/restore-common.sh
. bench/restore-common.sh

ops/pg-cluster.sh start >/dev/null
url=$(ops/pg-cluster.sh url postgres)
port=$((20000 + RANDOM % 20000))
config() { # URL PORT
  printf '[national]\nmarket = "DE"\nlisten = "127.0.0.1:%s"\ndata_dir = "%s"\nlog = "warn"\nstorage = "postgres"\n\n[national.postgres]\nurl = "%s"\nschema = "market_de"\n' \
    "$2" "$root/data" "$1"
}
config "$url" "$port" >"$root/live.toml"
"$bin" migrate --config "$root/live.toml" >/dev/null
t0=$(secs)
"$bin" admin seed --config "$root/live.toml" --packs "$packs" >/dev/null
t1=$(secs)
echo "seeded $packs packs (synchronous replication) in $(took "$t0" "$t1") s"

t0=$(secs)
ops/pg-backup.sh base 127.0.0.1 "$(ops/pg-cluster.sh primary)" "$root/base" >/dev/null
t1=$(secs)
echo "base backup in $(took "$t0" "$t1") s: $(du -sh "$root/base" | cut -f1)"

start_node "$bin" "$root/live.toml" "$root/live.out" "$root/live.log"
supply_packs "$bin" "$root/live.toml" "$port" 1000
kill -TERM "$server"
wait "$server" || true
target=$(psql -X -At -h 127.0.0.1 -p "$(ops/pg-cluster.sh primary)" -U postgres -d postgres -c "SELECT clock_timestamp()")
primary=$(ops/pg-cluster.sh primary)
psql -X -q -h 127.0.0.1 -p "$primary" -U postgres -d postgres -c "CREATE TABLE after_the_target (x int)"
segment=$(psql -X -At -h 127.0.0.1 -p "$primary" -U postgres -d postgres -c "SELECT pg_walfile_name(pg_switch_wal())")
for _ in $(seq 600); do [ -f "$OPENMVS_PG_CLUSTER_DIR/wal-archive/$segment" ] && break; sleep 0.1; done
echo "1000 supplies after the base backup; restoring to $target"

rport=$((OPENMVS_PG_CLUSTER_PORT + 40))
t0=$(secs)
ops/pg-backup.sh restore "$root/base" "$OPENMVS_PG_CLUSTER_DIR/wal-archive" "$root/restored" "$rport" "$target" >/dev/null
t1=$(secs)
config "postgres://postgres@127.0.0.1:$rport/postgres" "$port" >"$root/restored.toml"
verify_and_serve "$bin" "$root/restored.toml" "$root/restored.out" "$root/restored.log" "$port"
echo "restore: server recovered to the target $(took "$t0" "$t1") s, audit verify $(took "$t1" "$t2") s, node ready $(took "$t2" "$t3") s; total $(took "$t0" "$t3") s for $packs packs"
