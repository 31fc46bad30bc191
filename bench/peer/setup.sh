#!/usr/bin/env bash
# The peer tools the benchmarks compare against: pyroute2 at the version OpenStack 2026.1 pins
# (what ovn-bgp-agent runs with), installed once into the cache as a plain library directory,
# and a wrapper that runs the node guest's own python3 with it (the benchmarks run inside the
# guest, whose Python is trixie's, not the host's). Prints the wrapper's path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
V=$(sed -n 's/^pyroute2===//p' "$HERE/../../hack/testbed/upper-constraints-2026.1.txt")
D=$CACHE/bench-peer-pyroute2-$V
if [ ! -f "$D/.complete" ]; then
  rm -rf "$D.tmp"
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$D.tmp/lib" "pyroute2==$V" \
    || { rm -rf "$D.tmp"; echo "pip install pyroute2==$V failed" >&2; exit 1; }
  printf '#!/bin/sh\nPYTHONPATH=%s exec /usr/bin/python3 "$@"\n' "$D/lib" >"$D.tmp/python3"
  chmod 755 "$D.tmp/python3"; touch "$D.tmp/.complete"
  rm -rf "$D"; mv "$D.tmp" "$D"
fi
echo "$D/python3"
