# What bench/restore.sh and bench/restore-pg.sh share: timing, and a node started on a market's
# configuration that supplies packs through its API, and the restored store verified and served.
# Sourced, not run.

secs() { python3 -c "import time; print(f'{time.monotonic():.3f}')"; }
took() { python3 -c "print(f'{$2 - $1:.1f}')"; }

# start_node BIN CONFIG OUT LOG: starts `openmvs serve national` in the background, waits for its
# ready line; the pid in $server.
start_node() {
  "$1" serve national --config "$2" >"$3" 2>"$4" &
  server=$!
  for _ in $(seq 3000); do grep -q "listening on" "$3" 2>/dev/null && break; sleep 0.1; done
}

# supply_packs BIN CONFIG PORT N: a pharmacy client created, then the seeded packs 0..N-1
# supplied one by one through the running node on PORT (each an audit record).
supply_packs() {
  local bin=$1 config=$2 port=$3 n=$4 client id secret token i serial
  client=$("$bin" admin client create --config "$config" --market DE --role PHARMACY --location DE-PH-1)
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$client")
  secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$client")
  token=$(curl -s "http://127.0.0.1:$port/oauth/token" -d grant_type=client_credentials -d "client_id=$id" \
    -d "client_secret=$secret" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  for i in $(seq 0 $((n - 1))); do
    printf -v serial 'S%010d' "$i"
    curl -s -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      "http://127.0.0.1:$port/v1/packs/supply" \
      -d "{\"client_trx_id\":\"r$i\",\"scheme\":\"GTIN\",\"product_code\":\"09501101530003\",\"serial\":\"$serial\",\"batch\":\"SEED1\",\"expiry\":\"301231\"}"
  done
}

# verify_and_serve BIN CONFIG OUT LOG PORT: the restored store's `audit verify` (its last line
# printed), then a node started on it until it answers ready, then stopped. Sets t2 after the
# verify and t3 once the node is ready.
verify_and_serve() {
  "$1" audit verify --config "$2" | tail -n 1
  t2=$(secs)
  start_node "$1" "$2" "$3" "$4"
  curl -sf "http://127.0.0.1:$5/health/ready" >/dev/null
  t3=$(secs)
  kill -TERM "$server"
  wait "$server" || true
}
