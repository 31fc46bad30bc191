#!/usr/bin/env bash
# install-deps.sh -- host packages for the dataplane tier (run as root, idempotent).
#
# The UML guest (hack/testbed/uml-guest.sh) uses the host's "/" read-only, so everything the
# payload runs inside the guest is installed here, on the host:
#   frr (zebra, bgpd, vtysh: FRR 8.4 in Debian 12), frr-pythontools (/usr/lib/frr/frr-reload.py,
#   which the agent applies its config with), python3 (http servers, frr-reload.py), iproute2,
#   iputils-ping, curl, kmod (depmod for the UML module tree), procps.
# frr's postinst would start zebra/bgpd/staticd on the host itself: a temporary
# /usr/sbin/policy-rc.d (exit 101) stops it, created only if none exists and removed afterwards.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: must run as root" >&2; exit 1; }
PKGS=(frr frr-pythontools python3 iproute2 iputils-ping curl kmod procps)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all present (${PKGS[*]})"
  exit 0
fi
(
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
)
echo "install-deps.sh: installed ${missing[*]}"
