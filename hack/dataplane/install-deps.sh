#!/usr/bin/env bash
# install-deps.sh -- host packages of the lab and the dataplane tiers (run as root, idempotent).
#
# FRR, iproute2 and Python for everything inside the node guest come from its trixie root
# (hack/testbed/guest-root.sh), not from the host. The host itself needs: iproute2 (network
# namespaces, the tap), curl and python3 (the lab asks the guest's check server), and
# util-linux's unshare/setsid/flock (present on every Debian). The guest's module trees are
# depmod'ed with the root's own kmod.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: must run as root" >&2; exit 1; }
PKGS=(iproute2 curl python3 ca-certificates)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all present (${PKGS[*]})"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
echo "install-deps.sh: installed ${missing[*]}"
