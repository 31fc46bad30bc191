#!/usr/bin/env bash
# A cached venv with the peer tools the benchmarks compare against: pyroute2 at the version
# OpenStack 2026.1 pins (what ovn-bgp-agent runs with). Prints the venv's python.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
VENV=$CACHE/bench-peer-venv
if [ ! -f "$VENV/.complete" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "pyroute2==$(sed -n 's/^pyroute2===//p' "$HERE/../../hack/testbed/upper-constraints-2026.1.txt")"
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python3"
