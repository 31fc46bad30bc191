#!/usr/bin/env bash
# install.sh -- prepares the OpenStack tier of the tests: the cached venvs of neutron-server 29.0.0 +
# networking-bgpvpn 25.0.0 and of Keystone 30.0.0 (both pinned by the 2026.2 upper-constraints,
# ../testbed/upper-constraints-2026.2.txt), so the tests only create per-run config and databases,
# and the Debian OVN packages for NEUTRON_BACKEND=ovn (ovn.sh). Idempotent; run by hack/test.sh as
# root.
# Cold: ~1.5 min (PyPI); warm: ~15 s (config + schema in a throwaway directory, as a check, and an
# OVN NB/SB + northd started and stopped).
# Installs python3-venv, curl and ovn-central/ovn-common/openvswitch-common with apt when they are
# missing (Debian; the container's policy-rc.d keeps the packages' services from starting, and
# ovn.sh runs its own daemons in a directory of its own).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
log() { printf '[neutron-install %4ss] %s\n' "$SECONDS" "$*" >&2; }

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v curl >/dev/null || missing+=(curl)
command -v ovn-northd >/dev/null || missing+=(ovn-central)
command -v ovn-nbctl >/dev/null || missing+=(ovn-common)
command -v ovsdb-server >/dev/null && command -v ovsdb-tool >/dev/null || missing+=(openvswitch-common)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; install them (apt-get install ${missing[*]})"; exit 1; }
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

tmp=$(mktemp -d); trap '"$HERE/ovn.sh" stop "$tmp/ovn" 2>/dev/null || true; rm -rf "$tmp"' EXIT
t0=$SECONDS; "$HERE/neutron-bgpvpn.sh" setup "$tmp/neutron"; log "neutron-server venv ready ($((SECONDS - t0)) s)"
t0=$SECONDS; "$HERE/keystone.sh" setup "$tmp/keystone"; log "keystone venv ready ($((SECONDS - t0)) s)"
t0=$SECONDS; "$HERE/ovn.sh" start "$tmp/ovn" && "$HERE/ovn.sh" stop "$tmp/ovn"; log "OVN ok ($((SECONDS - t0)) s)"
