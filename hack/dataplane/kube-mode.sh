#!/usr/bin/env bash
# kube-mode.sh -- bgpvpn-agent in Kubernetes mode against a real kube-apiserver (v1.37, from
# hack/testbed/kube-apiserver.sh): it watches its own EVPNNodeState (field selector on the name),
# programs it, writes the status by server-side apply, reports a kernel failure in the status, and
# keeps running (dataplane untouched) while the API server is gone.
# Runs as root on the host kernel, inside the node guest's trixie root (FRR 10, etcd, openssl):
# the API server, etcd, the node's own FRR (mgmtd/zebra/bgpd, -N pathspace) and the agent all live
# in ONE network namespace this script creates (loopback only). The host kernel is used on purpose
# when it has no VRF: the second step then checks that a kernel error shows up in the status.
#     hack/testbed/guest.sh chroot hack/dataplane/kube-mode.sh AGENT=$PWD/target/debug/bgpvpn-agent \
#         TESTBED_CACHE=$HOME/.cache/bgpvpn-operator
# Last line: "N passed, M failed"; exit 0 iff M = 0; exit 77 when the API server binary is not
# built (hack/testbed/kube-apiserver.sh build, on the host).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/remote-cloud.sh"   # frr_prepare, frr_start, frr_stop
REPO=$(cd "$HERE/../.." && pwd)
KA=$REPO/hack/testbed/kube-apiserver.sh
PASS=0 FAIL=0 T0=$SECONDS
log() { printf '[%4ss] == %s\n' $((SECONDS - T0)) "$*"; }
ok()  { printf '[%4ss] CHECK PASS: %s\n' $((SECONDS - T0)) "$*"; PASS=$((PASS + 1)); }
bad() { printf '[%4ss] CHECK FAIL: %s\n' $((SECONDS - T0)) "$*"; FAIL=$((FAIL + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
wait_for() { local end=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.3; done; }

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
[ -n "${AGENT:-}" ] && [ -x "$AGENT" ] || { echo "AGENT=<path to bgpvpn-agent> is required" >&2; exit 1; }
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
KUBECTL=$("$KA" kubectl 2>/dev/null) || { echo "kube-apiserver not built: $KA build" >&2; exit 77; }

SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NS=kubemode-$SFX NODE=node-$SFX
W=$(mktemp -d); chmod 755 "$W"
RUN=$W/apiserver AGENT_PID=$W/agent.pid
cleanup() {
  if [ -s "$AGENT_PID" ]; then
    kill "$(cat "$AGENT_PID")" 2>/dev/null || true
    timeout 10 tail --pid="$(cat "$AGENT_PID")" -f /dev/null || kill -9 "$(cat "$AGENT_PID")" 2>/dev/null || true
  fi
  frr_stop "$NS"
  [ -f "$RUN/env" ] && { ip netns exec "$NS" "$KA" stop "$RUN" >/dev/null 2>&1 || true; }
  sleep 0.3
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "/run/frr/$NS"
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/kube-mode"; cp "$W"/*.log "$OUT/kube-mode/" 2>/dev/null || true; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$W"
}
trap 'rc=$?; cleanup; [ $rc = 0 ] || echo "$PASS passed, $((FAIL + 1)) failed"' EXIT

ip netns add "$NS"; ip -n "$NS" link set lo up
inns() { ip netns exec "$NS" "$@"; }
inns "$KA" start "$RUN" >"$W/apiserver-start.log" 2>&1 || { cat "$W/apiserver-start.log"; exit 1; }
set -a; . "$RUN/env"; set +a
k() { inns "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
k apply --validate=false -f "$REPO/crds/evpnnodestate.yaml" >/dev/null
check "CRD established" wait_for 30 k wait --for condition=established --timeout=5s crd/evpnnodestates.bgpvpn.io

# the node's own FRR, in the namespace, with its own pathspace (nothing on the host's FRR paths)
WORK=$W
frr_prepare "$NS"
frr_start "$NS" "$NS"

obj() {  # with-vrf?
  cat <<EOF
apiVersion: bgpvpn.io/v1alpha1
kind: EVPNNodeState
metadata: {name: $NODE}
spec:
  underlay: {asn: 65001, routerId: 172.30.0.1, vtepIp: 172.30.0.1, neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]}
EOF
  [ "${1:-}" = vrf ] && cat <<EOF
  l3vnis:
    - {vni: 1001, vrf: vrf-blue, importTargets: ["65000:1001"], exportTargets: ["65000:1001"], routeDistinguisher: "172.30.0.1:1001"}
EOF
  return 0
}
obj | k apply --validate=false -f - >/dev/null
# not through nsx: $! must be the agent's own PID (ip netns exec and env exec it)
ip netns exec "$NS" env NODE_NAME="$NODE" KUBECONFIG="$KUBECONFIG" "$AGENT" run --state-dir "$W/state" \
  --frr-pathspace "$NS" --frr-confdir "$W" --frr-rundir "$W" --frr-piddir "/run/frr/$NS" \
  --frr-preamble "$W/$NS/preamble.conf" --metrics-addr 127.0.0.1:9470 >"$W/agent.log" 2>&1 &
echo $! >"$AGENT_PID"

status() { k get evpnnodestate "$NODE" -o json; }
cond() {  # type status generation
  status | python3 -c '
import json, sys
o = json.load(sys.stdin); t, s, g = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = o.get("status", {})
ok = st.get("observedGeneration") == g and any(c["type"] == t and c["status"] == s and c.get("observedGeneration") == g for c in st.get("conditions", []))
sys.exit(0 if ok else 1)' "$1" "$2" "$3"
}
check "generation 1: status Ready=True written by the agent" wait_for 60 cond Ready True 1
frr_result() { status | grep -Eq '"result": "(Applied|Unchanged)"'; }
ssa_by_agent() {  # kubectl 1.21+ leaves managedFields out unless asked
  k get evpnnodestate "$NODE" -o json --show-managed-fields | python3 -c 'import json,sys; m=json.load(sys.stdin)["metadata"]["managedFields"]; sys.exit(0 if any(f["manager"]=="bgpvpn-agent" and f["operation"]=="Apply" for f in m) else 1)'
}
check "generation 1: FrrApplied=True, status.frr.result set" frr_result
check "status written by server-side apply, field manager bgpvpn-agent" ssa_by_agent

log "generation 2: a VRF on a kernel without VRF support"
obj vrf | k apply --validate=false -f - >/dev/null
check "generation 2: DataplaneProgrammed=False reported" wait_for 60 cond DataplaneProgrammed False 2
check "generation 2: Ready=False" cond Ready False 2
log "status message: $(status | python3 -c 'import json,sys; c=[c for c in json.load(sys.stdin)["status"]["conditions"] if c["type"]=="DataplaneProgrammed"][0]; print(c["message"][:160])')"

log "stop the API server"
inns "$KA" stop "$RUN" >/dev/null 2>&1
sleep 5
check "agent still running without the API server" kill -0 "$(cat "$AGENT_PID")"
check "agent healthy without the API server" inns curl -sf http://127.0.0.1:9470/healthz
check "agent logged the watch failure and kept the dataplane" grep -q "keeping the dataplane as it is" "$W/agent.log"
p=$(cat "$AGENT_PID"); kill "$p"
check "agent exits on SIGTERM" timeout 10 tail --pid="$p" -f /dev/null

trap - EXIT
cleanup
echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
