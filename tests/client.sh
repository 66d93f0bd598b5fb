#!/usr/bin/env bash
# Generates a TypeScript client from synchub's OpenAPI document (openapi-typescript, with
# openapi-fetch as the runtime) and type-checks tests/client/client.ts against it with tsc
# --strict: the contract is fit to generate a client from, and says what the server does
# (list shapes, problem+json errors). Run by .ci/run on the document tests/openapi.sh kept;
# needs node and npm (Debian's nodejs).
#
#   tests/client.sh [path/to/openapi.json]   # without one: tests/openapi.sh serves and validates it
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p tests/client/generated
if [ -n "${1:-}" ]; then
  cp "$1" tests/client/generated/openapi.json
else
  bash tests/openapi.sh target/debug/synchub tests/client/generated/openapi.json
fi
cd tests/client
npm ci --no-audit --no-fund --loglevel=error >/dev/null
npx --no-install openapi-typescript generated/openapi.json -o generated/synchub.d.ts --silent
npx --no-install tsc -p tsconfig.json
echo "client: a TypeScript client generated from /openapi.json type-checks ($(wc -l <generated/synchub.d.ts) lines of types)"
