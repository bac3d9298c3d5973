#!/usr/bin/env bash
# Cross-checks `openmvs-bench national` with an external load generator (wrk, `apt-get install wrk`):
# starts a national system over HTTPS on a fresh data directory, seeds 1,000,000 packs, and measures
# durable supplies and verifications with one connection and with 64. Usage: bench/wrk-national.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p openmvs
B=$PWD/target/release/openmvs
dir=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout k.pem -out cert.pem -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in k.pem -out key.pem
cat > national.toml <<TOML
[national]
market = "DE"
listen = "127.0.0.1:18444"
data_dir = "data"
log = "warn"
[national.tls]
cert = "cert.pem"
key = "key.pem"
[national.limits]
client_rate_per_second = 10000000
client_burst = 10000000
TOML
"$B" admin seed --config national.toml --packs 1000000
"$B" admin client create --config national.toml --market DE --role PHARMACY --location DE-PH-1 > client.json
"$B" serve national --config national.toml > serve.out 2> serve.log &
server=$!
for _ in $(seq 50); do grep -q listening serve.out 2>/dev/null && break; sleep 0.2; done
id=$(sed -n 's/.*"client_id": "\(.*\)".*/\1/p' client.json)
secret=$(sed -n 's/.*"client_secret": "\(.*\)".*/\1/p' client.json)
token=$(curl -sk -d "grant_type=client_credentials&client_id=$id&client_secret=$secret" https://127.0.0.1:18444/oauth/token \
  | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
# One script per run: RUN names the run (client_trx_ids stay unique), OP the operation, SERIAL the serial of request n.
script() {
  cat > "$1.lua" <<LUA
local n = 0
local threads = 0
function setup(t) t:set("id", threads); threads = threads + 1 end
function request()
  n = n + 1
  local serial = string.format("S%010d", $4)
  local body = string.format('{"client_trx_id":"$1-%d-%d","scheme":"GTIN","product_code":"09501101530003","serial":"%s","batch":"SEED1","expiry":"301231"}', id, n, serial)
  return wrk.format("POST", "/v1/packs/$2", {["Authorization"]="Bearer $token", ["Content-Type"]="application/json"}, body)
end
LUA
  echo "== $3"
  wrk -t"$5" -c"$6" -d10s --latency -s "$1.lua" https://127.0.0.1:18444 | grep -E "Requests/sec|  50%|  99%|Non-2xx|Socket errors"
}
script supply1 supply "supply, one connection" "id * 400000 + n" 1 1
script supply64 supply "supply, 64 connections" "200000 + id * 400000 + n" 2 64
script verify1 verify "verify, one connection" "(id * 7919 + n * 13) % 1000000" 1 1
script verify64 verify "verify, 64 connections" "(id * 7919 + n * 13) % 1000000" 2 64
