#!/usr/bin/env bash
# hack/lab/guest.sh -- the lab's node-guest payload (started by hack/lab.sh through
# hack/testbed/guest.sh run with TAP=...). Inside the VRF-capable guest kernel, FRR 10:
#
#   guest root namespace = Kubernetes node "$NODE_NAME" (AS 65001, underlay 172.30.0.1):
#       vec0 $GUEST_IP/24 -> the host's netns, where kube-apiserver and the operator run
#       the bgpvpn agent + its FRR (mgmtd, zebra, bgpd; pathspace $FRR_A)
#       pod netns "web": 10.0.0.84, HTTP on 8080, attached by a veth like a CNI plugin does
#                        (pod IP routed in the node's MAIN table via the host-side veth)
#   netns "remote": the other cloud (AS 64999, underlay 172.30.0.2), its own FRR, configured
#       here once: vm1 20.0.0.100 on VNI 1001, vm2 20.0.0.100 on VNI 1003, each answering
#       HTTP with its own name; explicit route targets 65000:<vni>. Built by hack/lib/remote-cloud.sh.
#
# The host asks questions through hack/lab/check-server.py on $GUEST_IP:$CHECK_PORT and ends the
# guest with /shutdown. Inputs (KEY=VAL from guest.sh): GUEST_IP, HOST_IP, CHECK_PORT,
# NODE_NAME, AGENT_CMD (the agent's command line; FRR_A (pathspace), FRR_WORK and FRR_A_DIR are
# exported to it), LAB_TIMEOUT (s).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/remote-cloud.sh"   # the topology: nsx, ns_new, rc_*, frr_*
POD=web-$SFX REMOTE=remote-$SFX VM1=vm1-$SFX VM2=vm2-$SFX
export FRR_A=node-a   # node B's pathspace is its netns name, $REMOTE
WORK=$(mktemp -d); chmod 755 "$WORK"
# FRR directories are named after their pathspace: vtysh --config_dir and frr-reload --confdir
# look for <dir>/<pathspace>/
export FRR_WORK=$WORK FRR_A_DIR=$WORK/$FRR_A
PIDS=()
log() { printf '[guest %4ss] %s\n' "$SECONDS" "$*"; }
bg() { "$@" & PIDS+=($!); }

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rc_cleanup
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then mkdir -p "$OUT/guest"; cp -r "$WORK"/. "$OUT/guest/" 2>/dev/null || true; fi
}
trap cleanup EXIT

rc_need_vrf

# ---------------------------------------------------------------- host link, node sysctls
ip addr add "$GUEST_IP/24" dev "$GUEST_NIC"; ip link set "$GUEST_NIC" up
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

# ---------------------------------------------------------------- underlay, pod, remote cloud
# node A is this root namespace ("")
ns_new "$REMOTE"
rc_underlay "" "$REMOTE"
rc_pod "" "$POD" lxc-web "hello from pod web (10.0.0.84, Kubernetes node $NODE_NAME)"
rc_vm "$REMOTE" 1001 "$VM1" "hello from vm1 (20.0.0.100, VNI 1001, remote cloud AS 64999)"
rc_vm "$REMOTE" 1003 "$VM2" "hello from vm2 (20.0.0.100, VNI 1003, remote cloud AS 64999)"
rc_remote_frr "$REMOTE" 1001 1003

# node A's FRR starts empty: its whole configuration comes from the agent, which puts the
# preamble (hostname, log file) in front of what it renders
frr_prepare "$FRR_A" "$NODE_NAME"
frr_start "$FRR_A" ""
log "node $NODE_NAME, pod 10.0.0.84, remote cloud (vm1/vm2 at 20.0.0.100) and FRR are up"

# ---------------------------------------------------------------- the agent
bash -c "$AGENT_CMD" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
log "agent started: $AGENT_CMD"

# ---------------------------------------------------------------- what the host may ask
vty_b() { printf '"vtysh", "-N", "%s", "--config_dir", "%s", "-c", "%s"' "$REMOTE" "$WORK" "$1"; }
cat >"$WORK/checks.json" <<EOF
{
  "ready": ["true"],
  "pod-to-vpn": ["ip", "netns", "exec", "$POD", "curl", "-s", "--max-time", "2", "http://20.0.0.100:8080/"],
  "vm1-to-pod": ["ip", "netns", "exec", "$VM1", "curl", "-s", "--max-time", "2", "http://10.0.0.84:8080/"],
  "vm2-to-pod": ["ip", "netns", "exec", "$VM2", "curl", "-s", "--max-time", "2", "http://10.0.0.84:8080/"],
  "pod-to-node": ["ip", "netns", "exec", "$POD", "ping", "-c", "1", "-W", "1", "172.30.0.1"],
  "remote-vrf-1001": ["ip", "-n", "$REMOTE", "route", "show", "vrf", "vrf-1001"],
  "remote-vrf-1003": ["ip", "-n", "$REMOTE", "route", "show", "vrf", "vrf-1003"],
  "remote-evpn": [$(vty_b "show bgp l2vpn evpn route type prefix")],
  "agent-log": ["tail", "-n", "40", "$WORK/agent.log"],
  "frr-log": ["tail", "-n", "40", "$FRR_A_DIR/frr.log"],
  "node-links": ["ip", "-br", "link"],
  "node-rules": ["ip", "rule"]
}
EOF
bg python3 "$HERE/check-server.py" "$GUEST_IP" "$CHECK_PORT" "$WORK/checks.json"
CHECK_PID=${PIDS[-1]}
log "check server on $GUEST_IP:$CHECK_PORT"
# the check server exits on /shutdown; LAB_TIMEOUT bounds a lab whose host died
deadline=$((SECONDS + ${LAB_TIMEOUT:-1800}))
while kill -0 "$CHECK_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 1; done
log "shutting down"
