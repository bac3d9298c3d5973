#!/usr/bin/env bash
# The restore time of a market: a national system on the embedded store seeded with N packs (and
# one supply each for a tenth of them, so that the audit trail is not empty), its online backup,
# then the restore into a new data directory, `openmvs audit verify` of the restored trail, and the
# restored node's start until it serves. Prints each step's time and the sizes.
#
#   bench/restore.sh [PACKS]        default 10000000; uses target/release/openmvs
#
# Everything is made under ${OPENMVS_BENCH_DIR:-/tmp/openmvs-restore-bench} and removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

packs=${1:-10000000}
bin=${OPENMVS_BIN:-target/release/openmvs}
root=${OPENMVS_BENCH_DIR:-/tmp/openmvs-restore-bench}
[ -x "$bin" ] || { echo "build it first: cargo build --release -p openmvs" >&2; exit 1; }
rm -rf "$root"
mkdir -p "$root"
trap 'rm -rf "$root"' EXIT

port=$((20000 + RANDOM % 20000))
config() { # DIR PORT
  printf '[national]\nmarket = "DE"\nlisten = "127.0.0.1:%s"\ndata_dir = "%s"\nlog = "warn"\n' "$2" "$1"
}
config "$root/live" "$port" >"$root/live.toml"
config "$root/restored" "$port" >"$root/restored.toml"

# shellcheck source=bench/restore-common.sh
. bench/restore-common.sh

t0=$(secs)
"$bin" admin seed --config "$root/live.toml" --packs "$packs" >/dev/null
t1=$(secs)
echo "seeded $packs packs in $(took "$t0" "$t1") s"

# Supplies through the server are what a market writes: the trail gets a record per supply.
supplies=$((packs / 1000 < 1000 ? packs / 1000 : 1000))
start_node "$bin" "$root/live.toml" "$root/live.out" "$root/live.log"
supply_packs "$bin" "$root/live.toml" "$port" "$supplies"
echo "supplied $supplies packs through the server"

t0=$(secs)
"$bin" admin backup --config "$root/live.toml" --out "$root/de.backup"
t1=$(secs)
echo "online backup (server running) in $(took "$t0" "$t1") s: $(du -h "$root/de.backup" | cut -f1)"
kill -TERM "$server"
wait "$server" || true

# The keys kept apart from the backup, as an operator keeps them.
mkdir -p "$root/restored"
cp "$root/live/audit-signing.key" "$root/live/audit-signing.pub" "$root/live/market" "$root/restored/"
t0=$(secs)
"$bin" admin restore --config "$root/restored.toml" --from "$root/de.backup"
t1=$(secs)
verify_and_serve "$bin" "$root/restored.toml" "$root/restored.out" "$root/restored.log" "$port"
echo "restore: file in place $(took "$t0" "$t1") s, audit verify $(took "$t1" "$t2") s, node ready $(took "$t2" "$t3") s; total $(took "$t0" "$t3") s for $packs packs"
