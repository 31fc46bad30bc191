#!/usr/bin/env bash
# install.sh -- prepares the OpenStack tier of the tests: the cached venvs of neutron-server 28.0.2 +
# networking-bgpvpn 24.0.0 and of Keystone 29.1.0 (both pinned by the 2026.1 upper-constraints),
# so the tests only create per-run config and databases. Idempotent; run by hack/test.sh as root.
# Cold: ~1.5 min (PyPI); warm: ~15 s (config + schema in a throwaway directory, as a check).
# Installs python3-venv and curl with apt when they are missing (Debian).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
log() { printf '[neutron-install %4ss] %s\n' "$SECONDS" "$*" >&2; }

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; install them (apt-get install ${missing[*]})"; exit 1; }
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS; "$HERE/neutron-bgpvpn.sh" setup "$tmp/neutron"; log "neutron-server venv ready ($((SECONDS - t0)) s)"
t0=$SECONDS; "$HERE/keystone.sh" setup "$tmp/keystone"; log "keystone venv ready ($((SECONDS - t0)) s)"
