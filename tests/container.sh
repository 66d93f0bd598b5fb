#!/usr/bin/env bash
# Proves deploy/Containerfile, not only lints it. podman builds the image (chroot isolation:
# no daemon) on a Debian base made here with debootstrap, since no registry is reachable;
# the image wraps the binary the tests built (`--target prebuilt`: the `from-source` stage
# needs a Rust image from a registry). This sandbox refuses `podman run`, so the image's file
# system is exported and its entrypoint started under chroot as the image's user, with the
# image's environment; then /readyz, the image's own HEALTHCHECK command, and SIGTERM, which
# must stop it cleanly. Run by .ci/run.
#
#   apt-get install podman debootstrap
#   tests/container.sh [path/to/synchub]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/debug/synchub}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="$(mktemp -d)"
podman=(podman --storage-driver vfs --root "$work/storage" --runroot "$work/run")
server=""
cleanup() {
  [ -n "$server" ] && kill -KILL "$server" 2>/dev/null || true
  "${podman[@]}" rm --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "container: $*"; }
fail() { echo "container: $*" >&2; exit 1; }

step "a Debian base with debootstrap"
debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log"; fail "debootstrap failed"; }
tar -C "$work/rootfs" -c . | "${podman[@]}" import - localhost/synchub-base:bookworm >/dev/null 2>&1

step "podman build --target prebuilt"
mkdir -p "$work/context/target/release" "$work/context/deploy"
cp deploy/Containerfile "$work/context/deploy/"
strip --strip-debug -o "$work/context/target/release/synchub" "$bin"
"${podman[@]}" build --isolation chroot --format docker --target prebuilt \
  --build-arg RUNTIME_IMAGE=localhost/synchub-base:bookworm \
  -f deploy/Containerfile -t localhost/synchub:ci "$work/context" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; fail "podman build failed"; }

inspect() { "${podman[@]}" image inspect --format "$1" localhost/synchub:ci; }
user="$(inspect '{{.Config.User}}')"
[ "${user%%:*}" = 10001 ] || fail "the image runs as '$user', not uid 10001"
mapfile -t image_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t command < <(inspect '{{json .Config.Entrypoint}}|{{json .Config.Cmd}}' | python3 -c '
import json, sys
entrypoint, cmd = sys.stdin.read().strip().split("|")
print("\n".join(json.loads(entrypoint) + json.loads(cmd)))')
mapfile -t health < <(inspect '{{json .Config.Healthcheck.Test}}' | python3 -c '
import json, sys
test = json.loads(sys.stdin.read())
assert test[0] == "CMD", test
print("\n".join(test[1:]))')
[ "$(inspect '{{.Config.StopSignal}}')" = SIGTERM ] || fail "the stop signal is not SIGTERM"

step "the image's file system, its entrypoint under chroot as $user"
cid="$("${podman[@]}" create localhost/synchub:ci)"
mkdir "$work/image"
"${podman[@]}" export "$cid" | tar -C "$work/image" -x
chroot --userspec="$user" "$work/image" /usr/bin/env -i "${image_env[@]}" \
  SYNCHUB_MASTER_KEY="q2aDjkNwL6Sw8wJXoVh9v1F+Gm2bKc0n3ZyYt4uRk8E=" \
  SYNCHUB_BOOTSTRAP_TOKEN="shk_container_proof_token_0123456789abcdef" \
  "${command[@]}" >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 150); do
  curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { tail -20 "$work/serve.log"; fail "the service exited"; }
  sleep 0.2
done
curl -fsS http://127.0.0.1:8080/readyz >/dev/null || { tail -20 "$work/serve.log"; fail "never ready"; }
printf '%s\n' "${image_env[@]}" | grep -qx 'SYNCHUB_ENV=production' \
  || fail "the image does not run in production"
owner="$(ps -o uid= -p "$server" | tr -d ' ')"
[ "$owner" = 10001 ] || fail "the service runs as uid '$owner', not 10001"

step "the HEALTHCHECK command: ${health[*]}"
chroot --userspec="$user" "$work/image" "${health[@]}" >/dev/null \
  || fail "the image's health check failed against a ready service"

step "SIGTERM"
kill -TERM "$server"
for _ in $(seq 1 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$server" 2>/dev/null; then fail "still running 10 s after SIGTERM"; fi
wait "$server" || fail "exited with $? after SIGTERM"
server=""
grep -q "graceful shutdown" "$work/serve.log" || fail "no graceful shutdown in the log"
step "built, started as uid ${user%%:*}, ready, healthy and stopped by SIGTERM"
