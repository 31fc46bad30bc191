# hack/lib/remote-cloud.sh -- the "remote cloud" topology, sourced by the UML guest payloads
# hack/lab/guest.sh, hack/dataplane/bed.sh, hack/dataplane/kube-bed.sh and bench/uml/convergence.sh (via lib.sh):
#
#   node A (AS 65001, 172.30.0.1) ==veth eth-u== node B (AS 64999, 172.30.0.2), eBGP l2vpn evpn
#   node A: a Kubernetes node; pod netns at 10.0.0.84 behind a veth, /32 in MAIN (CNI style)
#   node B: the remote cloud, static FRR: per VNI a vrf-<vni> (table <vni>, RTs 65000:<vni>)
#           holding a "VM" netns at 20.0.0.100; the same VM address on every VNI
#
# Names carry the caller's random $SFX. Everything made here is recorded (NSES, PIDFILES,
# FRR_NODES) so that rc_cleanup removes only that: other runs may share the kernel.
# The caller sets WORK (mode 755: frr reads it) before calling anything. A netns argument ""
# means the current namespace (the lab's node A is the guest's root namespace).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
FRR_LIB=/usr/lib/frr
PY=/usr/bin/python3
SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NSES=() PIDFILES=() FRR_NODES=()

nsx() { local ns=$1; shift; if [ -n "$ns" ]; then ip netns exec "$ns" "$@"; else "$@"; fi; }
ns_new() { ip netns add "$1"; NSES+=("$1"); ip -n "$1" link set lo up; }

rc_need_vrf() {  # modules, then a probe: without VRFs nothing below works
  local m
  for m in vrf vxlan bridge veth dummy; do modprobe "$m" 2>/dev/null || true; done
  ip link add rcvrfprobe type vrf table 4242 2>/dev/null || { echo "this kernel has no VRF support" >&2; return 1; }
  ip link del rcvrfprobe
}

rc_underlay() {  # <node A netns> <node B netns>; node B forwards like the router it stands for
  nsx "$1" ip link add eth-u type veth peer name eth-u netns "$2"
  nsx "$1" ip addr add 172.30.0.1/24 dev eth-u; nsx "$1" ip link set eth-u up
  nsx "$2" ip addr add 172.30.0.2/24 dev eth-u; nsx "$2" ip link set eth-u up
  nsx "$2" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

rc_serve() {  # <netns> <ip> <text>: HTTP on :8080, "/" answers <text>
  mkdir -p "$WORK/www-$1"; echo "$3" >"$WORK/www-$1/index.html"
  # ip netns exec execs the server: $! is its PID, not a subshell's
  ip netns exec "$1" "$PY" -m http.server 8080 --bind "$2" --directory "$WORK/www-$1" >"$WORK/http-$1.log" 2>&1 &
  echo $! >"$WORK/http-$1.pid"; PIDFILES+=("$WORK/http-$1.pid")
}

rc_wire() {  # <node netns> <workload netns> <ip> <host ifname>: /32 behind a veth, Calico style
  local n=$1 w=$2 ip=$3 h=$4 hmac wmac
  nsx "$n" ip link add "$h" mtu 1450 type veth peer name eth0 mtu 1450 netns "$w"
  nsx "$n" ip link set "$h" up
  nsx "$w" ip addr add "$ip/32" dev eth0; nsx "$w" ip link set eth0 up
  hmac=$(nsx "$n" cat "/sys/class/net/$h/address"); wmac=$(nsx "$w" cat /sys/class/net/eth0/address)
  # gateway 169.254.1.1 exists only as a static neighbour, as Calico does it
  nsx "$w" ip route add 169.254.1.1 dev eth0 scope link
  nsx "$w" ip route add default via 169.254.1.1 dev eth0
  nsx "$w" ip neigh replace 169.254.1.1 lladdr "$hmac" dev eth0 nud permanent
  nsx "$n" ip neigh replace "$ip" lladdr "$wmac" dev "$h" nud permanent
}

rc_pod() {  # <node A netns> <pod netns> <host ifname> [http text] [ip, default 10.0.0.84]: the pod, routed in node A's MAIN
  local ip=${5:-10.0.0.84}
  ns_new "$2"
  rc_wire "$1" "$2" "$ip" "$3"
  nsx "$1" ip route add "$ip/32" dev "$3"
  [ -z "${4:-}" ] || rc_serve "$2" "$ip" "$4"
}

rc_vm() {  # <node B netns> <vni> <vm netns> [http text]: vrf-<vni> on node B with a VM at 20.0.0.100
  local b=$1 vni=$2 vm=$3
  nsx "$b" ip link add "vrf-$vni" type vrf table "$vni"
  nsx "$b" ip link set "vrf-$vni" up
  # pinned bridge MAC: it is the router MAC node A must learn
  nsx "$b" ip link add "br-$vni" address "$(printf '02:00:0b:00:%02x:%02x' $((vni >> 8)) $((vni & 255)))" type bridge
  nsx "$b" ip link set "br-$vni" master "vrf-$vni" mtu 1450 up
  nsx "$b" ip link add "vxlan-$vni" type vxlan id "$vni" local 172.30.0.2 dstport 4789 nolearning
  nsx "$b" ip link set "vxlan-$vni" master "br-$vni" mtu 1450 up
  nsx "$b" bridge link set dev "vxlan-$vni" learning off
  ns_new "$vm"
  rc_wire "$b" "$vm" 20.0.0.100 "h-vm$vni"
  nsx "$b" ip link set "h-vm$vni" master "vrf-$vni"
  nsx "$b" ip route add 20.0.0.100/32 dev "h-vm$vni" vrf "vrf-$vni"
  [ -z "${4:-}" ] || rc_serve "$vm" 20.0.0.100 "$4"
}

# frr_prepare <pathspace> [hostname]: $WORK/<ps>/{preamble,base}.conf (log file only), run/.
# vtysh -N <ps> --config_dir <d> reads <d>/<ps>/vtysh.conf; callers use <d> = $WORK (lab,
# e2e) or $WORK/<ps> (bench: one agent frr.conf per node), so both exist.
frr_prepare() {
  local n=$1
  mkdir -p "$WORK/$n/run" "$WORK/$n/$n" "/run/frr/$n"; FRR_NODES+=("$n")
  : >"$WORK/$n/vtysh.conf"; : >"$WORK/$n/$n/vtysh.conf"
  { [ -z "${2:-}" ] || echo "hostname $2"; echo "log file $WORK/$n/frr.log"; } >"$WORK/$n/preamble.conf"
  cp "$WORK/$n/preamble.conf" "$WORK/$n/base.conf"
  chown -R frr:frr "$WORK/$n" "/run/frr/$n"
}
# frr_start <pathspace> <netns> [frr.conf] (default $WORK/<ps>/base.conf): FRR 10 the way the
# chart's router pod (frrinit/watchfrr) runs it: mgmtd first (zebra is its backend; vtysh refuses
# `vrf`/`vni` lines while it is down), zebra and bgpd without a config of their own, then the
# integrated configuration pushed with `vtysh -b`.
frr_start() {
  local n=$1 ns=$2 conf=${3:-$WORK/$1/base.conf} d i
  local boot=$WORK/$n/boot
  mkdir -p "$boot/$n"; cp "$conf" "$boot/$n/frr.conf"; : >"$boot/$n/vtysh.conf"; : >"$WORK/$n/empty.conf"
  chown -R frr:frr "$boot" "$WORK/$n/empty.conf"
  for d in mgmtd zebra bgpd; do
    PIDFILES+=("/run/frr/$n/$d.pid")
    case $d in
      mgmtd) nsx "$ns" $FRR_LIB/mgmtd -N "$n" -d -P 0 -i "/run/frr/$n/mgmtd.pid" 2>>"$WORK/$n/startup.log" ;;
      # -s: a netlink receive buffer big enough for thousands of devices/routes at once (bench)
      zebra) nsx "$ns" $FRR_LIB/zebra -N "$n" -d -P 0 -s 67108864 -f "$WORK/$n/empty.conf" -i "/run/frr/$n/zebra.pid" 2>>"$WORK/$n/startup.log" ;;
      bgpd) nsx "$ns" $FRR_LIB/bgpd -N "$n" -d -P 0 -f "$WORK/$n/empty.conf" -i "/run/frr/$n/bgpd.pid" 2>>"$WORK/$n/startup.log" ;;
    esac
  done
  for i in $(seq 200); do [ -S "/run/frr/$n/bgpd.vty" ] && [ -S "/run/frr/$n/zebra.vty" ] && break; sleep 0.05; done
  vtysh --config_dir "$boot" -N "$n" -b >>"$WORK/$n/startup.log" 2>&1 \
    || { echo "frr_start $n: vtysh -b failed:" >&2; tail -5 "$WORK/$n/startup.log" >&2; return 1; }
}
frr_stop() {  # <pathspace>: SIGTERM the daemons by PID, wait until gone
  local n=$1 d p
  for d in bgpd zebra mgmtd; do
    p=$(cat "/run/frr/$n/$d.pid" 2>/dev/null) || continue
    kill "$p" 2>/dev/null || true
    timeout 60 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true
  done
}

# rc_remote_frr <node B netns = pathspace> <vni>...: node B's static FRR, started. Explicit RTs:
# eBGP auto RTs carry the AS and would never match node A's.
rc_remote_frr() {
  local b=$1 v; shift
  frr_prepare "$b"
  { for v in "$@"; do printf 'vrf vrf-%s\n vni %s\nexit-vrf\n' "$v" "$v"; done
    cat <<EOF
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
    for v in "$@"; do cat <<EOF
router bgp 64999 vrf vrf-$v
 bgp router-id 172.30.0.2
 address-family ipv4 unicast
  redistribute kernel
 exit-address-family
 address-family l2vpn evpn
  advertise ipv4 unicast
  route-target import 65000:$v
  route-target export 65000:$v
 exit-address-family
exit
EOF
    done; } >>"$WORK/$b/base.conf"
  frr_start "$b" "$b"
}

rc_cleanup() {  # kill the recorded PIDs, then delete our VRFs and namespaces
  local f n v
  for f in "${PIDFILES[@]}"; do [ -s "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; }; done
  sleep 0.5
  for n in "${NSES[@]}"; do
    for v in $(ip -n "$n" -br link show type vrf 2>/dev/null | awk '{print $1}'); do ip -n "$n" link del "$v" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  for n in "${FRR_NODES[@]}"; do rm -rf "/run/frr/$n"; done
  return 0
}
