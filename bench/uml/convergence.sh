#!/usr/bin/env bash
# convergence.sh -- guest payload of `bench/run.sh convergence` (runs inside the UML guest).
#
#   nodeA (AS 65001, VTEP 172.30.0.1) ==veth== nodeB (AS 64999, VTEP 172.30.0.2), eBGP l2vpn evpn
#   nodeA: bgpvpn-agent in file mode + zebra/bgpd (-N); a pod netns 10.0.0.84 behind a veth with a
#          /32 main-table route (as a CNI plugin wires it)
#   nodeB: static FRR, vrf-1001 (VNI 1001, table 1001, RTs 65000:1001) with a VM 20.0.0.100
# conv_probe.py then drives RUNS bind/unbind cycles through the state file and times, from the
# state-file rename: (a) kernel, (b) FRR running config, (c) route at node B, (d) first ping reply.
# Env: AGENT, OUT (set by run.sh), RUNS (20), POLL_MS (20), AGENT_POLL_MS (20).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20} POLL_MS=${POLL_MS:-20} AGENT_POLL_MS=${AGENT_POLL_MS:-20}
A=cA-$SFX B=cB-$SFX POD=cpod-$SFX VM=cvm-$SFX
trap 'rc=$?; cp "$WORK/agent.log" "$OUT/conv-agent.log" 2>/dev/null; guest_cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM
for m in vrf vxlan bridge veth dummy; do modprobe $m 2>/dev/null || true; done
log "guest kernel $(uname -r), namespaces *-$SFX"

ns_new "$A"; ns_new "$B"; ns_new "$POD"; ns_new "$VM"
nsx "$A" ip link add eth-u type veth peer name eth-u netns "$B"
nsx "$A" ip addr add 172.30.0.1/24 dev eth-u; nsx "$A" ip link set eth-u up
nsx "$B" ip addr add 172.30.0.2/24 dev eth-u; nsx "$B" ip link set eth-u up
nsx "$B" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
nsx "$A" sysctl -qw net.ipv4.ip_forward=1

wire() {  # <node ns> <workload ns> <ip> <host ifname>: /32 behind a veth, gateway 169.254.1.1
  local n=$1 w=$2 ip=$3 h=$4 hmac wmac
  nsx "$n" ip link add "$h" mtu 1450 type veth peer name eth0 mtu 1450 netns "$w"
  nsx "$n" ip link set "$h" up
  nsx "$w" ip addr add "$ip/32" dev eth0; nsx "$w" ip link set eth0 up
  hmac=$(nsx "$n" cat "/sys/class/net/$h/address"); wmac=$(nsx "$w" cat /sys/class/net/eth0/address)
  nsx "$w" ip route add 169.254.1.1 dev eth0 scope link
  nsx "$w" ip route add default via 169.254.1.1 dev eth0
  nsx "$w" ip neigh replace 169.254.1.1 lladdr "$hmac" dev eth0 nud permanent
  nsx "$n" ip neigh replace "$ip" lladdr "$wmac" dev "$h" nud permanent
}
# node B: vrf-1001 by hand (pinned bridge MAC, learning off), the VM in it
nsx "$B" ip link add vrf-1001 type vrf table 1001; nsx "$B" ip link set vrf-1001 up
nsx "$B" ip link add br-1001 address 02:00:0b:00:03:e9 type bridge
nsx "$B" ip link set br-1001 master vrf-1001 mtu 1450 up
nsx "$B" ip link add vxlan-1001 type vxlan id 1001 local 172.30.0.2 dstport 4789 nolearning
nsx "$B" ip link set vxlan-1001 master br-1001 mtu 1450 up
nsx "$B" bridge link set dev vxlan-1001 learning off
wire "$B" "$VM" 20.0.0.100 h-vm
nsx "$B" ip link set h-vm master vrf-1001
nsx "$B" ip route add 20.0.0.100/32 dev h-vm vrf vrf-1001
# node A: the pod, CNI style
wire "$A" "$POD" 10.0.0.84 cali-pod
nsx "$A" ip route add 10.0.0.84/32 dev cali-pod

frr_prepare "$A"; frr_prepare "$B"
printf 'vrf vrf-1001\n vni 1001\nexit-vrf\n' >>"$WORK/$B/base.conf"
cat >>"$WORK/$B/base.conf" <<EOF
router bgp 64999
 bgp router-id 172.30.0.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 172.30.0.1 remote-as 65001
 address-family l2vpn evpn
  neighbor 172.30.0.1 activate
  advertise-all-vni
 exit-address-family
exit
router bgp 64999 vrf vrf-1001
 bgp router-id 172.30.0.2
 address-family ipv4 unicast
  redistribute kernel
 exit-address-family
 address-family l2vpn evpn
  advertise ipv4 unicast
  route-target import 65000:1001
  route-target export 65000:1001
 exit-address-family
exit
EOF
chown frr:frr "$WORK/$B/base.conf"
frr_start "$B" "$B"; frr_start "$A" "$A"
log "FRR up on both nodes"

cat >"$WORK/underlay.yaml" <<'EOF'
underlay:
  asn: 65001
  routerId: 172.30.0.1
  vtepIp: 172.30.0.1
  neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]
EOF
cp "$WORK/underlay.yaml" "$WORK/state.yaml"
agent_start "$A" "$A" "$WORK/state.yaml" --poll-ms "$AGENT_POLL_MS"
sleep 1
log "agent pid $(cat "$WORK/agent.pid") VmRSS idle: $(awk '/VmRSS/{print $2" "$3}' "/proc/$(cat "$WORK/agent.pid")/status")"

"$PY" "$BENCH_UML/conv_probe.py" --work "$WORK" --a "$A" --b "$B" --pod "$POD" --runs "$RUNS" --poll-ms "$POLL_MS" \
  --agent-pid "$(cat "$WORK/agent.pid")" --agent-poll-ms "$AGENT_POLL_MS" --out "$OUT/convergence.json"
