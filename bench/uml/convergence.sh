#!/usr/bin/env bash
# convergence.sh -- guest payload of `bench/run.sh convergence` (runs inside the UML guest).
#
#   nodeA (AS 65001, VTEP 172.30.0.1) ==veth== nodeB (AS 64999, VTEP 172.30.0.2), eBGP l2vpn evpn
#   nodeA: bgpvpn-agent in file mode + zebra/bgpd (-N); a pod netns 10.0.0.84 behind a veth with a
#          /32 main-table route (as a CNI plugin wires it)
#   nodeB: static FRR, vrf-1001 (VNI 1001, table 1001, RTs 65000:1001) with a VM 20.0.0.100
# conv_probe.py then drives RUNS bind/unbind cycles through the state file and times, from the
# state-file rename: (a) kernel, (b) FRR running config, (c) route at node B, (d) first ping reply.
# Topology: hack/lib/remote-cloud.sh (through lib.sh).
# Env: AGENT, OUT (set by run.sh), RUNS (20), POLL_MS (20), AGENT_POLL_MS (20).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20} POLL_MS=${POLL_MS:-20} AGENT_POLL_MS=${AGENT_POLL_MS:-20}
A=cA-$SFX B=cB-$SFX POD=cpod-$SFX VM=cvm-$SFX
# the agent's log and both nodes' FRR logs (a daemon that died says so there) outlive the guest
trap 'rc=$?; cp "$WORK/agent.log" "$OUT/conv-agent.log" 2>/dev/null; for n in "$A" "$B"; do cp "$WORK/$n/frr.log" "$OUT/frr-$n.log" 2>/dev/null; done; guest_cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM
rc_need_vrf
log "guest kernel $(uname -r), namespaces *-$SFX"

ns_new "$A"; ns_new "$B"
rc_underlay "$A" "$B"
nsx "$A" sysctl -qw net.ipv4.ip_forward=1
rc_vm "$B" 1001 "$VM"
rc_pod "$A" "$POD" cali-pod
frr_prepare "$A"; rc_remote_frr "$B" 1001; frr_start "$A" "$A"
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
