#!/usr/bin/env bash
# hack/lab/guest.sh -- the lab's user-mode-linux payload (started by hack/lab.sh through
# hack/testbed/uml-guest.sh with TAP=...). Inside the VRF-capable guest kernel:
#
#   guest root namespace = Kubernetes node "$NODE_NAME" (AS 65001, underlay 172.30.0.1):
#       vec0 $GUEST_IP/24 -> the host's netns, where kube-apiserver and the operator run
#       the bgpvpn agent + its FRR (zebra, bgpd; pathspace $FRR_A)
#       pod netns "web": 10.0.0.84, HTTP on 8080, attached by a veth like a CNI plugin does
#                        (pod IP routed in the node's MAIN table via the host-side veth)
#   netns "remote": the other cloud (AS 64999, underlay 172.30.0.2), its own FRR, configured
#       here once: vm1 20.0.0.100 on VNI 1001, vm2 20.0.0.100 on VNI 1003, each answering
#       HTTP with its own name; explicit route targets 65000:<vni>.
#
# The host asks questions through hack/lab/check-server.py on $GUEST_IP:$CHECK_PORT and ends the
# guest with /shutdown. Inputs (KEY=VAL from uml-guest.sh): GUEST_IP, HOST_IP, CHECK_PORT,
# NODE_NAME, AGENT_CMD (the agent's command line; FRR_A (pathspace), FRR_WORK and FRR_A_DIR are
# exported to it), LAB_TIMEOUT (s).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
FRR=/usr/lib/frr
SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
POD=web-$SFX REMOTE=remote-$SFX VM1=vm1-$SFX VM2=vm2-$SFX
export FRR_A=node-a FRR_B=remote
WORK=$(mktemp -d); chmod 755 "$WORK"
# FRR directories are named after their pathspace: vtysh --config_dir and frr-reload --confdir
# look for <dir>/<pathspace>/
export FRR_WORK=$WORK FRR_A_DIR=$WORK/$FRR_A
PIDS=()
log() { printf '[guest %4ss] %s\n' "$SECONDS" "$*"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
bg() { "$@" & PIDS+=($!); }

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in /run/frr/*/*.pid; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then mkdir -p "$OUT/guest"; cp -r "$WORK"/. "$OUT/guest/" 2>/dev/null || true; fi
  for n in "$POD" "$REMOTE" "$VM1" "$VM2"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT

for m in vrf vxlan bridge veth; do modprobe "$m" 2>/dev/null || true; done
ip link add vrfprobe type vrf table 4242 || { echo "guest kernel has no VRF" >&2; exit 1; }
ip link del vrfprobe

# ---------------------------------------------------------------- host link, node sysctls
ip addr add "$GUEST_IP/24" dev "$UML_NIC"; ip link set "$UML_NIC" up
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

# ---------------------------------------------------------------- underlay to the remote cloud
ip netns add "$REMOTE"
ip link add eth-u type veth peer name eth-u netns "$REMOTE"
ip addr add 172.30.0.1/24 dev eth-u; ip link set eth-u up
nsx "$REMOTE" ip link set lo up
nsx "$REMOTE" ip addr add 172.30.0.2/24 dev eth-u
nsx "$REMOTE" ip link set eth-u up
nsx "$REMOTE" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

serve() {  # netns bind-ip text
  mkdir -p "$WORK/www-$1"; echo "$3" >"$WORK/www-$1/index.html"
  bg nsx "$1" python3 -m http.server 8080 --bind "$2" --directory "$WORK/www-$1" >/dev/null 2>&1
}

# ---------------------------------------------------------------- the pod, CNI style
ip netns add "$POD"
ip link add lxc-web type veth peer name eth0 netns "$POD"
ip link set lxc-web up
nsx "$POD" ip link set lo up
nsx "$POD" ip addr add 10.0.0.84/32 dev eth0
nsx "$POD" ip link set eth0 up
nsx "$POD" ip route add 169.254.1.1 dev eth0 scope link
nsx "$POD" ip route add default via 169.254.1.1 dev eth0
nsx "$POD" ip neigh replace 169.254.1.1 lladdr "$(cat /sys/class/net/lxc-web/address)" dev eth0 nud permanent
ip route add 10.0.0.84/32 dev lxc-web
ip neigh replace 10.0.0.84 lladdr "$(nsx "$POD" cat /sys/class/net/eth0/address)" dev lxc-web nud permanent
serve "$POD" 10.0.0.84 "hello from pod web (10.0.0.84, Kubernetes node $NODE_NAME)"

# ---------------------------------------------------------------- the remote cloud's two VMs
vm() {  # netns vni
  local ns=$1 vni=$2 mac
  nsx "$REMOTE" ip link add "vrf-$vni" type vrf table "$vni"
  nsx "$REMOTE" ip link set "vrf-$vni" up
  nsx "$REMOTE" ip link add "br-$vni" address "02:00:64:99:$(printf '%02x:%02x' $((vni >> 8)) $((vni & 255)))" type bridge
  nsx "$REMOTE" ip link set "br-$vni" master "vrf-$vni" mtu 1450 up
  nsx "$REMOTE" ip link add "vxlan-$vni" type vxlan id "$vni" local 172.30.0.2 dstport 4789 nolearning
  nsx "$REMOTE" ip link set "vxlan-$vni" master "br-$vni" mtu 1450 up
  nsx "$REMOTE" bridge link set dev "vxlan-$vni" learning off
  ip netns add "$ns"
  nsx "$REMOTE" ip link add "tap-$vni" mtu 1450 type veth peer name eth0 mtu 1450 netns "$ns"
  nsx "$REMOTE" ip link set "tap-$vni" master "vrf-$vni" up
  nsx "$ns" ip link set lo up
  nsx "$ns" ip addr add 20.0.0.100/24 dev eth0
  nsx "$ns" ip link set eth0 up
  nsx "$REMOTE" ip addr add 20.0.0.1/24 dev "tap-$vni"
  nsx "$ns" ip route add default via 20.0.0.1
  serve "$ns" 20.0.0.100 "hello from vm$((vni == 1001 ? 1 : 2)) (20.0.0.100, VNI $vni, remote cloud AS 64999)"
}
vm "$VM1" 1001
vm "$VM2" 1003

frr_start() {  # pathspace netns-or-empty config-file
  local ps=$1 ns=$2 conf=$3 d
  d=$(dirname "$conf"); mkdir -p "/run/frr/$ps"; : >"$d/vtysh.conf"
  chown -R frr:frr "$d" "/run/frr/$ps"
  local run=(); [ -n "$ns" ] && run=(ip netns exec "$ns")
  "${run[@]}" $FRR/zebra -N "$ps" -d -P 0 -f "$conf" -i "/run/frr/$ps/zebra.pid"
  "${run[@]}" $FRR/bgpd -N "$ps" -d -P 0 -f "$conf" -i "/run/frr/$ps/bgpd.pid"
}
mkdir -p "$WORK/$FRR_B"
{
  cat <<EOF
hostname remote-cloud
log file $WORK/$FRR_B/frr.log
vrf vrf-1001
 vni 1001
exit-vrf
vrf vrf-1003
 vni 1003
exit-vrf
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
EOF
  for vni in 1001 1003; do cat <<EOF
router bgp 64999 vrf vrf-$vni
 bgp router-id 172.30.0.2
 no bgp ebgp-requires-policy
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
 address-family l2vpn evpn
  advertise ipv4 unicast
  route-target import 65000:$vni
  route-target export 65000:$vni
 exit-address-family
exit
EOF
  done
} >"$WORK/$FRR_B/frr.conf"
frr_start "$FRR_B" "$REMOTE" "$WORK/$FRR_B/frr.conf"

# node A's FRR starts empty: its whole configuration comes from the agent, which puts the
# preamble (hostname, log file) in front of what it renders
mkdir -p "$FRR_A_DIR/run"
printf 'hostname %s\nlog file %s/frr.log\n' "$NODE_NAME" "$FRR_A_DIR" >"$FRR_A_DIR/preamble.conf"
cp "$FRR_A_DIR/preamble.conf" "$FRR_A_DIR/base.conf"
frr_start "$FRR_A" "" "$FRR_A_DIR/base.conf"
log "node $NODE_NAME, pod 10.0.0.84, remote cloud (vm1/vm2 at 20.0.0.100) and FRR are up"

# ---------------------------------------------------------------- the agent
bash -c "$AGENT_CMD" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
log "agent started: $AGENT_CMD"

# ---------------------------------------------------------------- what the host may ask
vty_b() { printf '"vtysh", "-N", "%s", "--config_dir", "%s", "-c", "%s"' "$FRR_B" "$WORK" "$1"; }
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
