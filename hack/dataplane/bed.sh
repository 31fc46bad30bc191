#!/usr/bin/env bash
# bed.sh -- starts the two-node EVPN bed inside the node guest and runs one Rust scenario on it.
# Payload of hack/testbed/guest.sh; daemonset-agent/tests/guest/mod.rs boots it as
#     guest.sh run hack/dataplane/bed.sh RUN=<test binary> SCENARIO=<test name> AGENT=<bgpvpn-agent>
# and the test binary, started here with BGPVPN_IN_GUEST=<test name>, runs that one test's body
# against the bed. This script only starts machines; every step and check is in Rust.
#
# Bed (names carry a random suffix; the scenario gets them as BED_* variables):
#   node A (AS 65001, 172.30.0.1) ==veth eth-u== node B (AS 64999, 172.30.0.2), eBGP l2vpn evpn
#   node A: FRR with only its preamble (the agent owns the rest); per address in PODS a pod netns
#           pod<i>-<sfx> behind host interface cali-p<i>, routed in node A's MAIN table, serving
#           "hello from the pod <ip>" on :8080
#   node B: per VNI in VNIS a vrf-<vni> (table <vni>, route targets 65000:<vni>) holding a VM
#           vm<vni>-<sfx> at 20.0.0.100 serving "hello from VM (VNI <vni>)" on :8080
# Env: RUN, SCENARIO, AGENT (required); VNIS (default "1001 1003"); PODS (default "10.0.0.84").
# Scenario-made namespaces must end in -$BED_SFX and scenario-made processes write their PID to
# $BED_WORK/pids/<name>.pid: the trap removes them with the rest. Exit code: the scenario's.
set -euo pipefail
. "$(dirname "$0")/../lib/remote-cloud.sh"
[ "$(id -u)" = 0 ] || { echo "bed.sh: must run as root inside the node guest" >&2; exit 1; }
for v in RUN SCENARIO AGENT; do [ -n "${!v:-}" ] || { echo "bed.sh: $v is required" >&2; exit 2; }; done
VNIS=${VNIS:-1001 1003} PODS=${PODS:-10.0.0.84}
A=nodeA-$SFX B=nodeB-$SFX
WORK=$(mktemp -d); chmod 755 "$WORK"; mkdir -p "$WORK/pids"

cleanup() {
  local f n
  for f in "$WORK"/pids/*.pid; do [ -s "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; }; done
  rc_cleanup
  for n in $(ip netns list | awk '{print $1}' | grep -- "-$SFX\$"); do ip netns del "$n" 2>/dev/null || true; done
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then mkdir -p "$OUT/bed"; cp -r "$WORK"/. "$OUT/bed/" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rc_need_vrf
ns_new "$A"; ns_new "$B"
rc_underlay "$A" "$B"
nsx "$A" sysctl -qw net.ipv4.conf.default.rp_filter=1
for vni in $VNIS; do rc_vm "$B" "$vni" "vm$vni-$SFX" "hello from VM (VNI $vni)"; done
i=0 pod_list=()
for ip in $PODS; do
  i=$((i + 1))
  rc_pod "$A" "pod$i-$SFX" "cali-p$i" "hello from the pod $ip" "$ip"
  pod_list+=("pod$i-$SFX=$ip")
done
nsx "$A" sysctl -qw net.ipv4.ip_forward=1
# shellcheck disable=SC2086
rc_remote_frr "$B" $VNIS
frr_prepare "$A"
frr_start "$A" "$A"
echo "bed: kernel $(uname -r), nodes $A $B, VNIs $VNIS, pods ${pod_list[*]}"

set +e
BGPVPN_IN_GUEST=$SCENARIO BED_A=$A BED_B=$B BED_SFX=$SFX BED_WORK=$WORK BED_VNIS=$VNIS BED_PODS="${pod_list[*]}" \
  BED_AGENT=$AGENT RUST_BACKTRACE=1 "$RUN" --exact "$SCENARIO" --nocapture --test-threads=1
rc=$?
exit $rc
