#!/usr/bin/env bash
# kube-bed.sh -- the machines of the agent's Kubernetes-mode test, started; then the Rust test
# (daemonset-agent/tests/kube_mode.rs, this same test binary) runs inside them. Payload of
#     hack/testbed/guest.sh chroot hack/dataplane/kube-bed.sh RUN=<test binary> SCENARIO=<test name> \
#         TESTBED_CACHE=<cache>
# on the host kernel, in the node guest's trixie root (FRR 10, etcd, openssl): the host kernel is
# used on purpose when it has no VRF (the test then checks that a kernel error reaches the
# status). One network namespace of its own (loopback only) holds a kube-apiserver (v1.37 from
# hack/testbed/kube-apiserver.sh), the node's own FRR (mgmtd/zebra/bgpd, -N pathspace) and the
# test, which starts the agent. This script only starts and stops machines; every step and check
# is in Rust. Exit code: the test's; 77 when the API server is not built.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/remote-cloud.sh"   # frr_prepare, frr_start, frr_stop
KA=$HERE/../testbed/kube-apiserver.sh
[ "$(id -u)" = 0 ] || { echo "kube-bed.sh: must run as root" >&2; exit 1; }
for v in RUN SCENARIO; do [ -n "${!v:-}" ] || { echo "kube-bed.sh: $v is required" >&2; exit 2; }; done
"$KA" kubectl >/dev/null 2>&1 || { echo "kube-apiserver not built: $KA build" >&2; exit 77; }

SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NS=kubemode-$SFX
WORK=$(mktemp -d); chmod 755 "$WORK"; mkdir -p "$WORK/pids"
RUN_DIR=$WORK/apiserver
cleanup() {
  local f
  for f in "$WORK"/pids/*.pid; do [ -s "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; }; done
  frr_stop "$NS"
  [ -f "$RUN_DIR/env" ] && { ip netns exec "$NS" "$KA" stop "$RUN_DIR" >/dev/null 2>&1 || true; }
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "/run/frr/$NS"
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then mkdir -p "$OUT/kube-mode"; cp "$WORK"/*.log "$OUT/kube-mode/" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"; ip -n "$NS" link set lo up
ip netns exec "$NS" "$KA" start "$RUN_DIR" >"$WORK/apiserver-start.log" 2>&1 || { cat "$WORK/apiserver-start.log"; exit 1; }
frr_prepare "$NS"
frr_start "$NS" "$NS"

set +e
ip netns exec "$NS" env BGPVPN_IN_GUEST="$SCENARIO" KUBE_BED_NODE="node-$SFX" KUBE_BED_PATHSPACE="$NS" \
  KUBE_BED_WORK="$WORK" KUBE_BED_APISERVER="$RUN_DIR" KUBECONFIG="$RUN_DIR/kubeconfig" RUST_BACKTRACE=1 \
  "$RUN" --exact "$SCENARIO" --nocapture --test-threads=1
exit $?
