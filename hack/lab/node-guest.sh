#!/usr/bin/env bash
# hack/lab/node-guest.sh -- the lab's node-guest payload with a real Kubernetes node (started by
# hack/lab.sh through hack/testbed/guest.sh run with TAP=...). Inside the guest kernel:
#
#   guest root namespace = Kubernetes node "$NODE_NAME": containerd, CNI and the kubelet
#       (hack/testbed/node/node.sh), which runs what the apiserver schedules there: the chart's
#       agent and router pods (host network; the router runs FRR 10), the operator and the demo pod web, which CNI
#       gives 10.0.0.84. Underlay 172.30.0.1 on eth-u, $NODE_IP on the tap.
#   netns "remote": the other cloud (AS 64999, underlay 172.30.0.2), its own FRR, vm1 20.0.0.100
#       on VNI 1001 and vm2 20.0.0.100 on VNI 1003 (hack/lib/remote-cloud.sh).
#
# The host asks questions through hack/lab/check-server.py on $NODE_IP:$CHECK_PORT; the node stops
# when the host creates $OUT/stop (node.sh). Inputs (KEY=VAL from guest.sh): node.sh's, CHECK_PORT.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib/remote-cloud.sh"   # the topology: nsx, ns_new, rc_*, frr_*
: "${NODE_IP:?}" "${CHECK_PORT:?}"
REMOTE=remote-$SFX VM1=vm1-$SFX VM2=vm2-$SFX
WORK=$(mktemp -d); chmod 755 "$WORK"
CHECK_PID=''
log() { printf '[lab-node %4ss] %s\n' "$SECONDS" "$*"; }
cleanup() {
  [ -z "$CHECK_PID" ] || kill "$CHECK_PID" 2>/dev/null || true
  rc_cleanup
}
trap cleanup EXIT

rc_need_vrf
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
ns_new "$REMOTE"
rc_underlay "" "$REMOTE"
rc_vm "$REMOTE" 1001 "$VM1" "hello from vm1 (20.0.0.100, VNI 1001, remote cloud AS 64999)"
rc_vm "$REMOTE" 1003 "$VM2" "hello from vm2 (20.0.0.100, VNI 1003, remote cloud AS 64999)"
rc_remote_frr "$REMOTE" 1001 1003
log "remote cloud up: vm1 and vm2 at 20.0.0.100 on VNI 1001 and 1003"

# in the pod's network namespace, found by its address: this node has no `kubectl exec`
cat >"$WORK/in-pod" <<'EOF'
#!/bin/sh
ip=$1; shift
for ns in /run/netns/cni-*; do
  nsenter --net="$ns" ip -4 -o addr show | grep -q " $ip/" && exec nsenter --net="$ns" "$@"
done
echo "no pod network namespace holds $ip"; exit 3
EOF
chmod 755 "$WORK/in-pod"
vty_b() { printf '"vtysh", "-N", "%s", "--config_dir", "%s", "-c", "%s"' "$REMOTE" "$WORK" "$1"; }
cat >"$WORK/checks.json" <<EOF
{
  "ready": ["true"],
  "pod-to-vpn": ["$WORK/in-pod", "10.0.0.84", "curl", "-s", "--max-time", "2", "http://20.0.0.100:8080/"],
  "vm1-to-pod": ["ip", "netns", "exec", "$VM1", "curl", "-s", "--max-time", "2", "http://10.0.0.84:8080/"],
  "vm2-to-pod": ["ip", "netns", "exec", "$VM2", "curl", "-s", "--max-time", "2", "http://10.0.0.84:8080/"],
  "pod-to-node": ["$WORK/in-pod", "10.0.0.84", "ping", "-c", "1", "-W", "1", "172.30.0.1"],
  "remote-vrf-1001": ["ip", "-n", "$REMOTE", "route", "show", "vrf", "vrf-1001"],
  "remote-vrf-1003": ["ip", "-n", "$REMOTE", "route", "show", "vrf", "vrf-1003"],
  "remote-evpn": [$(vty_b "show bgp l2vpn evpn route type prefix")],
  "remote-bgp": [$(vty_b "show bgp summary")],
  "node-bgp": ["$HERE/../testbed/node/agent-vtysh", "-c", "show bgp summary"],
  "node-frr-config": ["$HERE/../testbed/node/agent-vtysh", "-c", "show running-config"],
  "agent-log": ["sh", "-c", "tail -n 40 /var/log/pods/*_*-agent-*/agent/*.log"],
  "frr-log": ["sh", "-c", "tail -n 40 /var/log/pods/*_*-agent-*/frr/*.log"],
  "flow-start": ["sh", "-c", "ip netns exec $VM2 ping -i 0.01 -W 1 10.0.0.84 >$WORK/flow.log 2>&1 & echo \$! >$WORK/flow.pid"],
  "flow-stop": ["sh", "-c", "kill -INT \$(cat $WORK/flow.pid) && while kill -0 \$(cat $WORK/flow.pid) 2>/dev/null; do sleep 0.1; done; tail -n 2 $WORK/flow.log"],
  "node-links": ["ip", "-br", "link"],
  "node-rules": ["ip", "rule"]
}
EOF
# node.sh puts $NODE_IP on the tap; the check server listens there once it is up
(
  until ip -4 -o addr show dev "$GUEST_NIC" | grep -q " $NODE_IP/"; do sleep 0.2; done
  exec python3 "$HERE/check-server.py" "$NODE_IP" "$CHECK_PORT" "$WORK/checks.json"
) &
CHECK_PID=$!
bash "$HERE/../testbed/node/node.sh"
