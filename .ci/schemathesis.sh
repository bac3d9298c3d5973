#!/usr/bin/env bash
# Fuzzes the public APIs from their own contract documents with schemathesis: starts `openmvs
# demo` on a data directory and ports of its own, then runs schemathesis against each national
# system's `/v1/openapi.json` (as a pharmacy, then as the NMVO on its own routes, with bearer
# tokens) and the hub's (as an OBP, with its client certificate), trusting the demo's CA. Every generated request must get an answer
# that is not a 5xx, with a status and a content type its operation documents, and a body valid
# against the documented schema. Any failed check fails the run (exit status 1). A line near the
# end sums up: runs, operations tested, cases generated, operations that failed a check.
#
# Environment: OPENMVS_FUZZ_EXAMPLES (test cases per operation and phase, default 50),
# OPENMVS_FUZZ_PORT_BASE (default 29400), OPENMVS_FUZZ_SEED (default 1),
# OPENMVS_FUZZ_VENV (where schemathesis is installed once per machine, default
# ~/.cache/openmvs/schemathesis-venv), OPENMVS_BIN (an openmvs binary; default: built here).
# Reports (JUnit, and every request and answer as a VCR cassette) and the demo's log are written
# to target/schemathesis/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples="${OPENMVS_FUZZ_EXAMPLES:-50}"
port_base="${OPENMVS_FUZZ_PORT_BASE:-29400}"
seed="${OPENMVS_FUZZ_SEED:-1}"
venv="${OPENMVS_FUZZ_VENV:-$HOME/.cache/openmvs/schemathesis-venv}"
out="$PWD/target/schemathesis"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv (once per machine)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin="${OPENMVS_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --locked -q -p openmvs
  bin="$PWD/target/debug/openmvs"
fi

rm -rf "$out"
mkdir -p "$out"
data="$out/data"
"$bin" demo --data-dir "$data" --port-base "$port_base" --markets DE,FR --fake-clock >"$out/demo.log" 2>&1 &
demo=$!
stop_demo() {
  kill "$demo" 2>/dev/null || true
  wait "$demo" 2>/dev/null || true
}
trap stop_demo EXIT

# The demo writes demo.json once it has seeded everything; then every component is up.
for _ in $(seq 1 600); do
  if [ -s "$data/demo.json" ] &&
    curl -sf --cacert "$(jq -r .ca_cert "$data/demo.json")" "https://127.0.0.1:$port_base/health/ready" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$demo" 2>/dev/null; then
    echo "openmvs demo stopped:" >&2
    cat "$out/demo.log" >&2
    exit 1
  fi
  sleep 0.5
done
[ -s "$data/demo.json" ] || { echo "openmvs demo wrote no demo.json in 300 s" >&2; exit 1; }
# Still running: the ports answering are its own, not another process's.
kill -0 "$demo" 2>/dev/null || { echo "openmvs demo stopped:" >&2; cat "$out/demo.log" >&2; exit 1; }

J="$data/demo.json"
ca=$(jq -r .ca_cert "$J")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
common=(--checks "$checks" --max-examples "$examples" --seed "$seed" --tls-verify "$ca"
  --phases examples,coverage,fuzzing --continue-on-failure --no-shrink
  --suppress-health-check all --warnings off --request-timeout 30)

failed=0
run() {
  local name=$1 url=$2
  shift 2
  echo "== schemathesis: $name ($url)"
  local started=$SECONDS
  # Run from the output folder, where schemathesis keeps its cache (.schemathesis/).
  if (cd "$out" && "$venv/bin/schemathesis" run "$url/v1/openapi.json" --url "$url" "${common[@]}" \
    --report junit,vcr --report-junit-path "$out/$name.junit.xml" --report-vcr-path "$out/$name.vcr.yaml" "$@"); then
    echo "== $name: passed in $((SECONDS - started)) s"
  else
    echo "== $name: FAILED in $((SECONDS - started)) s"
    failed=1
  fi
}

# A bearer token of the market's first client in the role.
token() {
  local client
  client=$(jq -c "[.markets.$1.clients[] | select(.role == \"$2\")][0]" "$J")
  curl -sf --cacert "$ca" \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$(jq -r .client_id <<<"$client")" \
    --data-urlencode "client_secret=$(jq -r .client_secret <<<"$client")" \
    "$(jq -r ".markets.$1.url" "$J")/oauth/token" | jq -r .access_token
}

for market in $(jq -r '.markets | keys[]' "$J"); do
  url=$(jq -r ".markets.$market.url" "$J")
  run "national-$market" "$url" -H "Authorization: Bearer $(token "$market" PHARMACY)"
  # The NMVO's own routes (alerts, clients, the audit trail), which a pharmacy is refused.
  run "national-$market-nmvo" "$url" -H "Authorization: Bearer $(token "$market" NMVO)" \
    --include-tag alerts --include-tag clients --include-tag audit
done

# The callback is left out: a URL generated there would have the hub send the OBP's events to
# a host on the internet.
hub=$(jq -r .hub.url "$J")
run hub "$hub" --request-cert "$(jq -r '.obps[0].cert' "$J")" --request-cert-key "$(jq -r '.obps[0].key' "$J")" \
  --exclude-path /v1/callback

# The figures of the whole run: operations tested (per run, from its JUnit report), the requests
# generated (its VCR cassette), and the failed checks.
summary() {
  local runs=0 operations=0 cases=0 failures=0 f n
  for f in "$out"/*.junit.xml; do
    [ -e "$f" ] || continue
    runs=$((runs + 1))
    n=$(grep -o -m1 '<testsuites[^>]*' "$f")
    operations=$((operations + $(sed -E 's/.* tests="([0-9]+)".*/\1/' <<<"$n")))
    failures=$((failures + $(sed -E 's/.* failures="([0-9]+)".*/\1/' <<<"$n") + $(sed -E 's/.* errors="([0-9]+)".*/\1/' <<<"$n")))
    cases=$((cases + $(grep -c '^- id:' "${f%.junit.xml}.vcr.yaml" || true)))
  done
  echo "== schemathesis: $runs runs, $operations operations tested, $cases cases, $failures failed operations"
}
summary

if grep -q "panicked" "$out/demo.log"; then
  echo "the demo panicked while fuzzed:" >&2
  grep -B2 -A8 "panicked" "$out/demo.log" >&2
  failed=1
fi
exit "$failed"
