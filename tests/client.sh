#!/usr/bin/env bash
# Generates a TypeScript client from the served /openapi.json (openapi-typescript, with
# openapi-fetch as the runtime) and type-checks tests/client/client.ts against it with tsc
# --strict: the contract is fit to generate a client from, and says what the server does
# (list shapes, problem+json errors). Run by .ci/run; needs node and npm (Debian's nodejs).
#
#   tests/client.sh [path/to/synchub]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/synchub}"
port="${PORT:-18593}"
data="$(mktemp -d)"
SYNCHUB_DATA_DIR="$data" SYNCHUB_LISTEN="127.0.0.1:$port" "$bin" serve >"$data/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
cd tests/client
mkdir -p generated
curl -fsS "http://127.0.0.1:$port/openapi.json" >generated/openapi.json
npm ci --no-audit --no-fund --loglevel=error >/dev/null
npx --no-install openapi-typescript generated/openapi.json -o generated/synchub.d.ts --silent
npx --no-install tsc -p tsconfig.json
echo "client: a TypeScript client generated from /openapi.json type-checks ($(wc -l <generated/synchub.d.ts) lines of types)"
