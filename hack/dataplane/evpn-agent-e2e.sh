#!/usr/bin/env bash
# evpn-agent-e2e.sh -- the seed demo at dataplane level, driven by the real bgpvpn-agent.
# Runs as root INSIDE a VRF-capable kernel, normally as the payload of a UML guest:
#     hack/testbed/guest.sh run hack/dataplane/evpn-agent-e2e.sh AGENT=$PWD/target/debug/bgpvpn-agent
# (daemonset-agent/tests/dataplane_guest.rs does exactly that). FRR 10, iproute2 and Python come
# from the guest's trixie root (hack/testbed/guest-root.sh).
#
# Topology (every namespace and process name carries a random suffix):
#   nodeA (AS 65001, 172.30.0.1) ==veth underlay== nodeB (AS 64999, 172.30.0.2), eBGP l2vpn evpn
#   nodeA: a Kubernetes node: bgpvpn-agent + its own zebra/bgpd (-N nodeA); pod netns 10.0.0.84
#          (HTTP :8080) on a veth, routed in nodeA's MAIN table the way a CNI plugin does it; an
#          "ext" netns 192.168.50.2 (HTTP :8080) on a main-table route = the pod's non-VPN traffic
#   nodeB: the remote cloud, configured statically: vrf-1001 (VNI 1001) with VM1 20.0.0.100 and
#          vrf-1003 (VNI 1003) with VM2 20.0.0.100; route targets 65000:<vni> on both sides
# The agent is driven only through its --state-file. Last line: "N passed, M failed"; exit 0 iff M=0.
# Env: AGENT (required), OUT (results: agent/FRR logs are copied to $OUT/e2e), KEEP_WORK.
set -euo pipefail

. "$(dirname "$0")/../lib/remote-cloud.sh"   # the topology: nsx, ns_new, rc_*, frr_*
PASS=0 FAIL=0 T0=$(date +%s%N)
el() { echo $((($(date +%s%N) - T0) / 1000000)); }
log() { printf '[%6sms] == %s\n' "$(el)" "$*"; }
ok()  { printf '[%6sms] CHECK PASS: %s\n' "$(el)" "$*"; PASS=$((PASS + 1)); }
bad() { printf '[%6sms] CHECK FAIL: %s\n' "$(el)" "$*"; FAIL=$((FAIL + 1)); }
check() {  # what cmd... ; a failing cmd may leave diagnostics in $DIAG
  local what=$1; shift; rm -f "$DIAG"
  if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; [ -s "$DIAG" ] && sed 's/^/    | /' "$DIAG"; fi; rm -f "$DIAG"
}
wait_for() {  # seconds cmd... : poll every 0.1 s until cmd succeeds or the deadline passes
  local end=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt $end ] || return 1; sleep 0.1; done
}
not() { ! "$@"; }

[ "$(id -u)" = 0 ] || { echo "must run as root (inside the UML guest)" >&2; exit 1; }
[ -n "${AGENT:-}" ] && [ -x "$AGENT" ] || { echo "AGENT=<path to bgpvpn-agent> is required" >&2; exit 1; }
for c in ip vtysh curl ping "$PY" "$FRR_LIB/zebra" "$FRR_LIB/bgpd" "$FRR_LIB/frr-reload.py"; do
  command -v "$c" >/dev/null || { echo "missing $c: the guest root lacks it (hack/testbed/guest-root.sh)" >&2; exit 1; }
done

A=nodeA-$SFX B=nodeB-$SFX POD=pod-$SFX VM1=vm1-$SFX VM2=vm2-$SFX EXT=ext-$SFX
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"; chmod 755 "$WORK"
DIAG=$WORK/diag.txt STATE=$WORK/state.yaml STATUS=$WORK/status.json AGENT_LOG=$WORK/agent.log AGENT_PID=$WORK/agent.pid

cleanup() {  # only what this run started: PIDs from our pidfiles, namespaces with our suffix
  [ -s "$AGENT_PID" ] && { kill "$(cat "$AGENT_PID")" 2>/dev/null || true; }
  rc_cleanup
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then mkdir -p "$OUT/e2e"; cp -r "$WORK"/. "$OUT/e2e/" 2>/dev/null || true; fi
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
  return 0
}
dump_debug() {
  [ $FAIL -gt 0 ] || return 0
  log "DEBUG node A"
  vty "$A" 'show running-config' 'show evpn vni detail' 'show bgp l2vpn evpn route type prefix' 'show ip route vrf all' 2>/dev/null | head -150 || true
  nsx "$A" ip -d link show 2>/dev/null | head -60 || true
  nsx "$A" ip rule show 2>/dev/null || true
  log "DEBUG node B"; vty "$B" 'show bgp l2vpn evpn route type prefix' 2>/dev/null | head -60 || true
  log "agent log (tail)"; tail -n 60 "$AGENT_LOG" || true
  tail -n 20 "$WORK/$A/frr.log" 2>/dev/null || true
}
trap 'echo "ABORTED: line $LINENO: $BASH_COMMAND" >&2' ERR
on_abort() { local rc=$?; FAIL=$((FAIL + 1)); dump_debug; cleanup; echo "aborted (exit $rc)"; echo "$PASS passed, $FAIL failed"; }
trap on_abort EXIT
trap 'exit 130' INT TERM

log "kernel $(uname -r), namespaces *-$SFX, work $WORK"
rc_need_vrf

# ------------------------------------------------------------------ underlay
ns_new "$A"; ns_new "$B"
rc_underlay "$A" "$B"
# node B forwards (rc_underlay); node A's sysctls are the agent's job
# a Kubernetes node usually runs with strict rp_filter on new devices: the agent must cope
nsx "$A" sysctl -qw net.ipv4.conf.default.rp_filter=1

# ------------------------------------------------------------------ workloads
# node B: two VRFs with the same VM address; node A: the pod, wired like a CNI plugin
rc_vm "$B" 1001 "$VM1" "hello from VM1 (VNI 1001)"
rc_vm "$B" 1003 "$VM2" "hello from VM2 (VNI 1003)"
rc_pod "$A" "$POD" cali-pod "hello from the pod on node A"
# node A: another host on a main-table route (the pod's ordinary, non-VPN traffic)
ns_new "$EXT"
nsx "$A" ip link add h-ext type veth peer name eth0 netns "$EXT"
nsx "$A" ip addr add 192.168.50.1/24 dev h-ext; nsx "$A" ip link set h-ext up
nsx "$EXT" ip addr add 192.168.50.2/24 dev eth0; nsx "$EXT" ip link set eth0 up
nsx "$EXT" ip route add default via 192.168.50.1
nsx "$A" sysctl -qw net.ipv4.ip_forward=1
rc_serve "$EXT" 192.168.50.2 "hello from ext (main table)"
log "workloads up"

# ------------------------------------------------------------------ FRR
vtysh() { command vtysh --config_dir "$WORK" "$@"; }
vty() { local n=$1 c a=(); shift; for c in "$@"; do a+=(-c "$c"); done; vtysh -N "$n" "${a[@]}"; }
# node B: static (rc_remote_frr); node A: only what an FRR sidecar starts with (logging), the
# agent owns the rest
rc_remote_frr "$B" 1001 1003
frr_prepare "$A"
frr_start "$A" "$A"
log "FRR started on both nodes"

# ------------------------------------------------------------------ the agent
write_state() {  # vrf-name vni   (or nothing: no L3 VNI)
  local tmp=$STATE.tmp
  GEN=$((GEN + 1))
  cat >"$tmp" <<EOF
apiVersion: bgpvpn.io/v1alpha1
kind: EVPNNodeState
metadata: {name: node-a, generation: $GEN}
spec:
  underlay:
    asn: 65001
    routerId: 172.30.0.1
    vtepIp: 172.30.0.1
    neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]
EOF
  if [ $# -eq 2 ]; then cat >>"$tmp" <<EOF
  l3vnis:
    - bgpvpn: demo-vpn
      vni: $2
      vrf: $1
      importTargets: ["65000:$2"]
      exportTargets: ["65000:$2"]
      routeDistinguisher: "172.30.0.1:$2"
      endpoints: [{ip: 10.0.0.84, pod: demo/web}]
EOF
  fi
  mv "$tmp" "$STATE"
}
GEN=0
AGENT_ARGS=(run --state-file "$STATE" --status-file "$STATUS" --state-dir "$WORK/agent-state"
  --frr-pathspace "$A" --frr-confdir "$WORK" --frr-rundir "$WORK/$A/run" --frr-piddir "/run/frr/$A"
  --frr-preamble "$WORK/$A/preamble.conf" --metrics-addr 127.0.0.1:9469)
agent_start() {
  ip netns exec "$A" "$AGENT" "${AGENT_ARGS[@]}" >>"$AGENT_LOG" 2>&1 &
  echo $! >"$AGENT_PID"
}
agent_stop() {  # SIGTERM our agent by PID and wait until that process is gone
  local p; p=$(cat "$AGENT_PID")
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = bgpvpn-agent ] || { echo "pid $p is not the agent" >&2; return 1; }
  kill "$p"
  timeout 20 tail --pid="$p" -f /dev/null || return 1
}
agents_running() { local n=0 p; for p in /proc/[0-9]*; do [ "$(cat "$p/comm" 2>/dev/null)" = bgpvpn-agent ] && n=$((n + 1)); done; echo $n; }
status_has() { grep -q "$1" "$STATUS"; }
ready_gen() {  # generation: status says Ready=True for it
  "$PY" - "$STATUS" "$1" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); g = int(sys.argv[2])
ok = s.get("observedGeneration") == g and any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions", []))
sys.exit(0 if ok else 1)
EOF
}

# helpers for the checks
fetch_vm() { nsx "$POD" curl -s --max-time 2 http://20.0.0.100:8080/; }
vm_says() { [[ $(fetch_vm) == *"$1"* ]]; }
no_vm() { ! nsx "$POD" curl -s --max-time 1 -o /dev/null http://20.0.0.100:8080/; }
ext_ok() { [[ $(nsx "$POD" curl -s --max-time 2 http://192.168.50.2:8080/) == *ext* ]]; }
vm_reaches_pod() { [[ $(nsx "$1" curl -s --max-time 2 http://10.0.0.84:8080/) == *pod* ]]; }
route_at_b() { nsx "$B" ip route show vrf "vrf-$1" | grep '^10.0.0.84 ' >/dev/null; }
owned_links() { nsx "$A" ip -br link show group 1650946166; }
nothing_owned() { [ -z "$(owned_links)" ] && [ -z "$(nsx "$A" ip rule show | grep 'proto 232')" ]; }
frr_idempotent() {  # frr-reload --test against node A's running config: no difference
  local out rc=0; out=$("$FRR_LIB/frr-reload.py" --test --stdout --confdir "$WORK" --bindir /usr/bin --rundir "$WORK/$A/run" --pathspace "$A" "$WORK/frr.conf" 2>&1) || rc=$?
  if [ $rc != 0 ] || grep -q 'Lines To' <<<"$out"; then echo "$out" | sed -n '/Lines To/,$p' | head -40 >"$DIAG"; return 1; fi
}
plan_zero() {
  local out; out=$(nsx "$A" "$AGENT" plan --state-file "$STATE" --no-frr 2>&1)
  grep -q '^# kernel: 0 change' <<<"$out" || { echo "$out" | head -30 >"$DIAG"; return 1; }
}
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

write_state
agent_start
check "agent up: status Ready for the underlay-only state" wait_for 60 ready_gen "$GEN"
established() { vty "$A" 'show bgp neighbors 172.30.0.2' | grep 'BGP state = Established' >/dev/null; }
check "eBGP EVPN session to node B established" wait_for 60 established
check "no state: the pod cannot reach 20.0.0.100" no_vm
check "no state: the pod reaches ext on a main-table route" ext_ok

# ------------------------------------------------------------------ bind to VNI 1001
log "bind the pod to VNI 1001 (vrf-tenant)"
kernel_ready() { nsx "$A" ip route show table 1000001001 | grep '^10.0.0.84 ' >/dev/null; }
t=$(date +%s%N); write_state vrf-tenant 1001
wait_for 60 kernel_ready && KERNEL_MS=$(ms_since "$t") || KERNEL_MS=timeout
if wait_for 60 route_at_b 1001; then
  APPLY_MS=$(ms_since "$t"); ok "node B learned 10.0.0.84 in vrf-1001"
  log "MEASURED: state file written -> route visible at node B: ${APPLY_MS} ms (pod route in node A's VRF table after ${KERNEL_MS} ms; FRR apply times: agent log 'FRR apply ... millis=')"
else bad "node B learned 10.0.0.84 in vrf-1001"; fi
check "pod -> VM1: curl gets VM1's name" wait_for 30 vm_says VM1
check "VM1 -> pod:8080" wait_for 10 vm_reaches_pod "$VM1"
check "the pod's non-VPN traffic still uses main (ext)" ext_ok
in_echos() {  # Icmp InEchos of a namespace
  nsx "$1" awk '/^Icmp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == "InEchos") c = i; next } print $c; exit }' /proc/net/snmp
}
vpn_to_ext() {  # prints "<pod InEchos delta> <ext InEchos delta>" for 3 pings each from VM1
  # Real packets: node B sends VM1's packets for 192.168.50.0/24 (ext, in node A's MAIN table
  # only) into the VXLAN towards node A; they arrive in node A's VRF and find no route there.
  # B does it with a policy rule + a table its FRR ignores (a route in B's VRF would be
  # redistributed to A, which would then send the packets back: a loop). Control: VM1 -> pod.
  nsx "$B" ip route replace 192.168.50.0/24 via 172.30.0.1 dev br-1001 onlink table 999
  nsx "$B" ip rule add pref 500 iif h-vm1001 to 192.168.50.0/24 lookup 999
  local e0 p0; e0=$(in_echos "$EXT"); p0=$(in_echos "$POD")
  nsx "$VM1" ping -c 3 -i 0.2 -W 1 192.168.50.2 >/dev/null 2>&1 || true
  nsx "$VM1" ping -c 3 -i 0.2 -W 1 10.0.0.84 >/dev/null 2>&1 || true
  echo "$(($(in_echos "$POD") - p0)) $(($(in_echos "$EXT") - e0))"
  nsx "$B" ip rule del pref 500 iif h-vm1001 to 192.168.50.0/24 lookup 999
  nsx "$B" ip route del 192.168.50.0/24 table 999
}
vrf_isolated() {
  local d; read -r -a d < <(vpn_to_ext)
  echo "with the guard: echo requests received by the pod +${d[0]} (control), by ext +${d[1]}" >>"$WORK/isolation.txt"
  [ "${d[0]}" -ge 3 ] && [ "${d[1]}" -eq 0 ]
}
guard_is_the_reason() {  # the same packets leak into main without the guard rule (agent paused meanwhile)
  local p d; p=$(cat "$AGENT_PID")
  kill -STOP "$p"
  nsx "$A" ip rule del pref 1001 iif bvbr-1001 unreachable
  read -r -a d < <(vpn_to_ext)
  kill -CONT "$p"
  echo "without the guard: pod +${d[0]}, ext +${d[1]}" >>"$WORK/isolation.txt"
  [ "${d[1]}" -ge 3 ]
}
guard_back() { nsx "$A" ip -4 rule show | grep -q '^1001:.*iif bvbr-1001 unreachable'; }
check "VRF isolation: VPN packets to a main-table address (ext) stop at node A, VPN -> pod delivered" vrf_isolated
check "control: with the guard rule removed (agent paused) the same packets leak into main" guard_is_the_reason
check "the resumed agent restores the guard rule" wait_for 10 guard_back
sed 's/^/    /' "$WORK/isolation.txt" 2>/dev/null || true
check "status Ready for generation $GEN" wait_for 30 ready_gen "$GEN"
check "ownership markers: VRF, bridge, VXLAN in group 1650946166" bash -c "[ \$(ip netns exec '$A' ip -br link show group 1650946166 | wc -l) = 3 ]"
check "pod rule: from 10.0.0.84 lookup 1000001001 suppress_prefixlength 0 proto 232" \
  bash -c "ip netns exec '$A' ip rule show | grep -E 'from 10.0.0.84 lookup 1000001001 suppress_prefixlength 0 proto 232'"
check "VXLAN port: learning off, neigh_suppress on" bash -c "ip netns exec '$A' bridge -d link show dev bvvx-1001 | grep -q 'learning off' && ip netns exec '$A' bridge -d link show dev bvvx-1001 | grep -q 'neigh_suppress on'"
check "idempotent kernel: plan shows 0 changes" plan_zero
check "idempotent FRR: frr-reload --test shows no difference" frr_idempotent
incremental_applies() { nsx "$A" curl -s http://127.0.0.1:9469/metrics | sed -n 's/^bgpvpn_agent_frr_incremental_applies_total //p'; }
check "the bind reached FRR as one vtysh delta, not a frr-reload.py run" test "$(incremental_applies)" -ge 1
log "node A: ip route show vrf vrf-tenant"; nsx "$A" ip route show vrf vrf-tenant || true
log "node A: ip rule"; nsx "$A" ip rule show || true
if [ -n "${QUICK:-}" ]; then trap - EXIT; dump_debug; cleanup; echo "$PASS passed, $FAIL failed"; [ $FAIL -eq 0 ]; exit; fi

# ------------------------------------------------------------------ unbind
log "unbind (no L3 VNI)"
t=$(date +%s%N); write_state
if wait_for 60 not route_at_b 1001; then ok "route to 10.0.0.84 withdrawn at node B ($(ms_since "$t") ms)"; else bad "route to 10.0.0.84 withdrawn at node B"; fi
check "unbound: no connectivity to 20.0.0.100" wait_for 10 no_vm
check "unbound: every owned device and rule swept" wait_for 20 nothing_owned
check "unbound: ext still reachable" ext_ok
check "unbound: status Ready for generation $GEN" wait_for 30 ready_gen "$GEN"
check "unbound: the incremental removal left FRR where a full reload would" frr_idempotent

# ------------------------------------------------------------------ bind to VNI 1003
log "bind the pod to VNI 1003"
t=$(date +%s%N); write_state vrf-tenant 1003
if wait_for 60 route_at_b 1003; then ok "node B learned 10.0.0.84 in vrf-1003 ($(ms_since "$t") ms)"; else bad "node B learned 10.0.0.84 in vrf-1003"; fi
check "pod -> VM2 (VNI 1003)" wait_for 30 vm_says VM2
check "VM1 is not reachable any more (no route in vrf-1001, VM1 cannot reach the pod)" bash -c "! ip netns exec '$B' ip route show vrf vrf-1001 | grep -q '^10.0.0.84 ' && ! ip netns exec '$VM1' curl -s --max-time 1 http://10.0.0.84:8080/"
check "VM2 -> pod:8080" wait_for 10 vm_reaches_pod "$VM2"

# ------------------------------------------------------------------ VNI move, both ways (safe order)
log "move vrf-tenant from VNI 1003 to 1001 (same VRF name)"
t=$(date +%s%N); write_state vrf-tenant 1001
check "after move 1003->1001: VM1 answers" wait_for 60 vm_says VM1
log "move took $(ms_since "$t") ms"
check "after move 1003->1001: node B vrf-1003 has no route to the pod" wait_for 30 not route_at_b 1003
log "move vrf-tenant from VNI 1001 to 1003"
t=$(date +%s%N); write_state vrf-tenant 1003
check "after move 1001->1003: VM2 answers" wait_for 60 vm_says VM2
log "move took $(ms_since "$t") ms"
MACB=$(nsx "$B" cat /sys/class/net/br-1003/address)
rmac_ok() { nsx "$A" ip neigh show | grep 172.30.0.2 | grep -i "$MACB" >/dev/null; }
check "router MAC of node B's VNI 1003 installed on node A ($MACB)" wait_for 20 rmac_ok
check "the VRF kept its table across both moves (1000001003)" bash -c "ip netns exec '$A' ip -d link show vrf-tenant | grep -q 'table 1000001003'"
check "status Ready after the moves" wait_for 30 ready_gen "$GEN"
check "idempotent after the moves: plan shows 0 changes" plan_zero
check "idempotent FRR after the moves" frr_idempotent

# ------------------------------------------------------------------ self-healing
log "delete the VXLAN device by hand"
t=$(date +%s%N); nsx "$A" ip link del bvvx-1003
if wait_for 10 bash -c "ip netns exec '$A' ip link show bvvx-1003"; then ok "bvvx-1003 recreated ($(ms_since "$t") ms)"; else bad "bvvx-1003 recreated"; fi
check "traffic back after the VXLAN repair" wait_for 60 vm_says VM2
log "delete the pod's rule and VRF route by hand"
t=$(date +%s%N)
nsx "$A" ip rule del from 10.0.0.84 lookup 1000001003 pref 2000
nsx "$A" ip route del 10.0.0.84/32 table 1000001003
rule_back() { nsx "$A" ip rule show | grep 'from 10.0.0.84 lookup 1000001003' >/dev/null && nsx "$A" ip route show table 1000001003 | grep '^10.0.0.84 ' >/dev/null; }
if wait_for 10 rule_back; then ok "rule and route repaired ($(ms_since "$t") ms)"; else bad "rule and route repaired"; fi
check "traffic back after the rule/route repair" wait_for 60 vm_says VM2

log "kill node A's FRR daemons and start them again with the base config only"
for d in bgpd zebra mgmtd; do kill "$(cat "/run/frr/$A/$d.pid")"; done
gone() { local d; for d in bgpd zebra mgmtd; do ! kill -0 "$(cat "/run/frr/$A/$d.pid")" 2>/dev/null || return 1; done; }
wait_for 10 gone || true
t=$(date +%s%N)
frr_start "$A" "$A"
frr_has_config() { command vtysh --config_dir "$WORK" -N "$A" -c 'show running-config' | grep -q 'router bgp 65001 vrf vrf-tenant'; }
if wait_for 60 frr_has_config; then ok "agent re-applied its FRR config after the restart ($(ms_since "$t") ms)"; else bad "agent re-applied its FRR config after the restart"; fi
if wait_for 90 route_at_b 1003; then ok "route back at node B after the FRR restart ($(ms_since "$t") ms)"; else bad "route back at node B after the FRR restart"; fi
check "traffic back after the FRR restart" wait_for 60 vm_says VM2

# ------------------------------------------------------------------ agent restart under traffic
log "restart the agent during ping -i 0.01"
ip netns exec "$POD" ping -i 0.01 -c 700 -W 1 20.0.0.100 >"$WORK/ping.log" 2>&1 &
PING=$!
sleep 1
agent_stop || bad "agent did not stop on SIGTERM"
check "no agent process left before the restart" test "$(agents_running)" = 0
sleep 0.5
mark=$(wc -l <"$AGENT_LOG")
agent_start
wait "$PING" || true
tail -n 3 "$WORK/ping.log"
sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$WORK/ping.log")
recv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$WORK/ping.log")
check "no ping lost across the agent restart ($recv/$sent)" test -n "$sent" -a "${sent:-0}" -gt 0 -a "${sent:-0}" = "${recv:-x}"
first_pass() { tail -n +"$((mark + 1))" "$AGENT_LOG" | grep -m1 'pass done'; }
wait_for 30 first_pass || true
log "first pass of the restarted agent: $(first_pass | sed 's/.*pass done//' | cut -c1-200)"
check "restarted agent adopted the state: 0 kernel writes, FRR unchanged" \
  bash -c "tail -n +$((mark + 1)) '$AGENT_LOG' | grep -m1 'pass done' | grep -q 'kernel_writes=0' && ! tail -n +$((mark + 1)) '$AGENT_LOG' | grep -qE 'result=\"?Applied'"
check "exactly one agent process runs" test "$(agents_running)" = 1
check "metrics endpoint serves netlink/FRR counters" bash -c "ip netns exec '$A' curl -s http://127.0.0.1:9469/metrics | grep -q bgpvpn_agent_frr_applies_total"
check "healthz" bash -c "ip netns exec '$A' curl -sf http://127.0.0.1:9469/healthz"

trap - EXIT
dump_debug
cleanup
echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ] && [ $PASS -gt 0 ]
