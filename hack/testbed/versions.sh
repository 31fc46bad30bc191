#!/usr/bin/env bash
# versions.sh -- one line per part the tests and the lab run, read from the parts themselves
# (not from what this repository expects). Prints "not prepared" for a part not built yet.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
say() { printf '[versions] %-15s %s\n' "$1" "$2"; }
say "node guest" "$("$HERE/guest.sh" versions 2>/dev/null || echo 'not prepared (hack/testbed/guest.sh prepare)')"
api=$(ls -d "$CACHE/kube-${KUBE_VERSION:-v1.37.2}/kube-apiserver" 2>/dev/null)
say kube-apiserver "$([ -n "$api" ] && "$api" --version 2>/dev/null || echo 'not built')"
kubectl=$("$HERE/kube-apiserver.sh" kubectl 2>/dev/null)
say kubectl "$([ -n "$kubectl" ] && "$kubectl" version --client 2>/dev/null | sed -n 1p || echo 'not installed')"
kubelet=$("$HERE/kube-apiserver.sh" kubelet 2>/dev/null)
say kubelet "$([ -n "$kubelet" ] && "$kubelet" --version 2>/dev/null || echo 'not built')"
img=$(ls -td "$CACHE"/node-images/*/ 2>/dev/null | head -1)   # the newest build (hack/testbed/node/images.sh)
say "node images" "$([ -f "$img/build-info" ] && awk '/^localhost/ {printf "%s (%d bytes)  ", $1, $2}' "$img/build-info" || echo 'not built')"
say "etcd (host)" "$(etcd --version 2>/dev/null | head -1 || echo 'not installed')"
for v in "$CACHE"/neutron-*/bin/python "$CACHE"/keystone-*/bin/python; do
  [ -x "$v" ] || continue
  say "$(basename "$(dirname "$(dirname "$v")")" | cut -d- -f1)" "$("$v" -m pip list 2>/dev/null | awk '$1 ~ /^(neutron|networking-bgpvpn|keystone)$/ {printf "%s %s  ", $1, $2}')"
done
