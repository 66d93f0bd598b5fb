#!/usr/bin/env bash
# Validates the served /openapi.json as OpenAPI 3.1 with openapi-spec-validator (PyPI),
# against a real `synchub serve` on a throw-away SQLite, and keeps it where the second
# argument says (tests/client.sh generates a client from it). Run by .ci/run after the tests.
#
#   pip install openapi-spec-validator
#   tests/openapi.sh [path/to/synchub] [path/to/keep/openapi.json]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/synchub}"
keep="${2:-}"
port="${PORT:-18592}"
data="$(mktemp -d)"
SYNCHUB_DATA_DIR="$data" SYNCHUB_LISTEN="127.0.0.1:$port" "$bin" serve >"$data/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/openapi.json" >"$data/openapi.json"
python3 - "$data/openapi.json" <<'PY'
import sys
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.readers import read_from_filename
spec, _ = read_from_filename(sys.argv[1])
errors = list(OpenAPIV31SpecValidator(spec).iter_errors())
for error in errors[:20]:
    print(f"openapi: {'/'.join(map(str, error.absolute_path))}: {error.message[:300]}")
print(f"openapi: {len(errors)} error(s) in {len(spec['paths'])} paths")
sys.exit(1 if errors else 0)
PY
if [ -n "$keep" ]; then
  cp "$data/openapi.json" "$keep"
fi
