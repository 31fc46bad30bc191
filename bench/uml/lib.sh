# Sourced by the guest payloads in bench/uml (they run as PID 1's only job inside the node guest
# that hack/testbed/guest.sh boots). Namespaces and FRR pathspaces carry a random suffix;
# the topology and its cleanup (by recorded PID and namespace) come from hack/lib/remote-cloud.sh.

. "$(dirname "${BASH_SOURCE[0]}")/../../hack/lib/remote-cloud.sh"   # nsx, ns_new, frr_*, rc_*
BENCH_UML=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${OUT:?OUT, the writable results dir of the guest, is not set: run through bench/run.sh}"
: "${AGENT:?AGENT=<path to bgpvpn-agent> is required}"
WORK=$(mktemp -d)      # tmpfs inside the guest (/run/tmp)
chmod 755 "$WORK"

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
mono_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }   # coarse (10 ms), only for scale phases

guest_cleanup() { rc_cleanup; rm -rf "$WORK"; }

vty() { local n=$1 c a=(); shift; for c in "$@"; do a+=(-c "$c"); done; command vtysh --config_dir "$WORK/$n" -N "$n" "${a[@]}"; }
# frr_reload <node> <test|reload> <file>   (under `timeout $FRR_TIMEOUT` when that is set). Pass
# $WORK/<node>/frr.conf as the file, as the agent does: any other name makes --reload end with a
# `write` of the whole configuration.
frr_reload() {
  ${FRR_TIMEOUT:+timeout "$FRR_TIMEOUT"} "$FRR_LIB/frr-reload.py" "--$2" --stdout --confdir "$WORK/$1" --bindir /usr/bin --rundir "$WORK/$1/run" --pathspace "$1" "$3"
}

# agent_start <node> <netns> <state file> [extra args...]: pid in $WORK/agent.pid, log $WORK/agent.log
agent_start() {
  local n=$1 ns=$2 state=$3; shift 3
  ip netns exec "$ns" "$AGENT" run --state-file "$state" --status-file "$WORK/status.json" --state-dir "$WORK/agent-state" \
    --frr-pathspace "$n" --frr-confdir "$WORK/$n" --frr-rundir "$WORK/$n/run" --frr-statedir "/run/frr/$n" \
    --frr-preamble "$WORK/$n/preamble.conf" --metrics-addr 127.0.0.1:9469 "$@" >>"$WORK/agent.log" 2>&1 &
  echo $! >"$WORK/agent.pid"; PIDFILES+=("$WORK/agent.pid")
}
agent_stop() {
  local p; p=$(cat "$WORK/agent.pid")
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = bgpvpn-agent ] || return 0
  kill "$p"; timeout 30 tail --pid="$p" -f /dev/null || kill -9 "$p"
}
