#!/usr/bin/env bash
# Walks every operation of the REST API from its own /openapi.json with schemathesis
# (`--checks all`: statuses, content types, headers and bodies as documented, no 5xx, schema-
# valid data taken, schema-invalid data refused, 405 with the right Allow), as an attacker
# with a tenant token and as the operator would, against a real `synchub serve` on SQLite
# and (when a server is named) PostgreSQL, private targets closed as in production. Fails on
# any failure. tests/schemathesis.toml says where a schema-valid body may still get a 400 (its
# validity rests on a manifest or on other resources). Run by .ci/run (about 3 minutes).
#
#   pip install schemathesis
#   tests/schemathesis.sh                       # SQLite, then PostgreSQL if configured
#   SYNCHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test tests/schemathesis.sh
#   MAX_EXAMPLES=200 FUZZ_BIN=target/debug/synchub CHECKS=not_a_server_error tests/schemathesis.sh
#   SEED=<the seed a failed run printed> tests/schemathesis.sh   # replays that run
#
# The fuzzer writes URLs into connection settings and alert channels and the server calls
# them, so both run in a network namespace of their own with only loopback (root, iproute2):
# no call can leave this machine. PostgreSQL is reached there through its Unix socket
# (PGSOCKET, default /var/run/postgresql), as user postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${INSIDE_FUZZ_NETNS:-}" ]; then
  ns="synchub-fuzz-$$"
  ip netns add "$ns"
  trap 'ip netns del "$ns"' EXIT
  ip -n "$ns" link set lo up
  INSIDE_FUZZ_NETNS=1 ip netns exec "$ns" "$0" "$@"
  exit $?
fi
PGSOCKET="${PGSOCKET:-/var/run/postgresql}"

MAX_EXAMPLES="${MAX_EXAMPLES:-10}"
PORT="${PORT:-18591}"
BIN="${FUZZ_BIN:-target/release/synchub}"
OPERATOR="shk_schemathesis_operator_token_0123456789"
command -v st >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 2; }
if [ ! -x "$BIN" ]; then
  cargo build --release --locked
fi

# Reports and server logs stay in target/schemathesis/<backend>/ for reading afterwards.
work="target/schemathesis"
rm -rf "$work"
server=""
fuzz_db=""
# The PostgreSQL walk's database goes with its server, whether the walk passed or not.
drop_fuzz_db() {
  if [ -n "$fuzz_db" ]; then
    psql -h "$PGSOCKET" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $fuzz_db WITH (FORCE)" >/dev/null || true
    fuzz_db=""
  fi
}
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; fi
  drop_fuzz_db
  rm -rf "$work"/*/data
}
trap cleanup EXIT

# Runs one backend; prints "<backend>: N requests, M server errors" and fails on any 5xx.
fuzz() {
  local backend="$1" database_url="$2" dir="$work/$1"
  mkdir -p "$dir/data"
  if [ -n "$database_url" ]; then
    local name="synchub_fuzz_$$_$RANDOM"
    psql -h "$PGSOCKET" -U postgres -d postgres -qc "CREATE DATABASE $name" >/dev/null
    fuzz_db="$name"
    database_url="postgres://postgres@localhost/$name?host=$PGSOCKET"
  fi
  SYNCHUB_DATA_DIR="$dir/data" SYNCHUB_LISTEN="127.0.0.1:$PORT" SYNCHUB_BOOTSTRAP_TOKEN="$OPERATOR" \
    SYNCHUB_LOG_JSON=false RUST_LOG=warn DATABASE_URL="$database_url" \
    SYNCHUB_ALLOW_PRIVATE_TARGETS=false \
    "$BIN" serve >"$dir/server.log" 2>&1 &
  server=$!
  local ready=""
  for _ in $(seq 1 100); do
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    if curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  if [ -z "$ready" ]; then
    echo "$backend: the server did not become ready (port $PORT taken?):" >&2
    tail -n 20 "$dir/server.log" >&2
    return 1
  fi
  local base="http://127.0.0.1:$PORT" tenant token
  tenant=$(curl -fs -X POST "$base/v1/tenants" -H "authorization: Bearer $OPERATOR" \
    -H 'content-type: application/json' -d '{"name":"fuzz","timezone":"Asia/Shanghai"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  token=$(curl -fs -X POST "$base/v1/tenants/$tenant/tokens" -H "authorization: Bearer $OPERATOR" \
    -H 'content-type: application/json' -d '{"name":"fuzz","scopes":["read","write","deploy","admin"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  # Every check but the server-error one is the contract's business (the pilot-readiness
  # issue); here any 5xx fails. Once as the tenant, once as the operator (tenants, tokens).
  local failed=0 who bearer
  for who in tenant operator; do
    local walk_failed=0
    bearer="$token"
    [ "$who" = operator ] && bearer="$OPERATOR"
    st --config-file tests/schemathesis.toml run "$base/openapi.json" --url "$base" \
      -H "Authorization: Bearer $bearer" \
      --checks "${CHECKS:-all}" --max-examples "$MAX_EXAMPLES" --workers 1 --no-color ${SEED:+--seed "$SEED"} \
      --report har --report-har-path "$dir/$who.har" >"$dir/$who.log" 2>&1 || walk_failed=1
    grep -E "generated|failures|Seed" "$dir/$who.log" | sed "s/^/$backend ($who): /"
    # A clean checkout keeps nothing after CI, so a failure's details go to the CI log.
    if [ "$walk_failed" -eq 1 ]; then
      failed=1
      { sed -n '/= FAILURES =/,/= SUMMARY =/p' "$dir/$who.log" | grep . || tail -n 80 "$dir/$who.log"; } |
        head -n 120 | sed "s/^/$backend ($who): /" || true
    fi
    python3 - "$dir/$who.har" "$backend ($who)" <<'PY'
import collections, json, sys
entries = json.load(open(sys.argv[1]))["log"]["entries"]
codes = collections.Counter(e["response"]["status"] for e in entries)
errors = sum(n for code, n in codes.items() if code >= 500)
print(f"{sys.argv[2]}: {len(entries)} requests, {errors} server errors; by status: {dict(sorted(codes.items()))}")
PY
  done
  kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  server=""
  drop_fuzz_db
  if grep -i "panicked" "$dir/server.log"; then return 1; fi
  [ "$failed" -eq 0 ]
}

status=0
fuzz sqlite "" || status=1
if [ -n "${SYNCHUB_TEST_DATABASE_URL:-}" ]; then
  fuzz postgres "$SYNCHUB_TEST_DATABASE_URL" || status=1
fi
exit $status
