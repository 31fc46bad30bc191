# Sourced by the guest payloads in bench/uml (they run as PID 1's only job inside the UML guest
# that hack/testbed/uml-guest.sh boots). Namespaces and FRR pathspaces carry a random suffix;
# cleanup kills only the PIDs recorded here and deletes only the namespaces made here.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
FRR_LIB=/usr/lib/frr
BENCH_UML=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NSES=() PIDFILES=() FRR_NODES=()
: "${OUT:?OUT, the writable results dir of the guest, is not set: run through bench/run.sh}"
: "${AGENT:?AGENT=<path to bgpvpn-agent> is required}"
PY=/usr/bin/python3
WORK=$(mktemp -d)      # tmpfs inside the guest (/run/tmp)
chmod 755 "$WORK"

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_new() { ip netns add "$1"; NSES+=("$1"); ip -n "$1" link set lo up; }
mono_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }   # coarse (10 ms), only for scale phases

guest_cleanup() {
  local f p n v
  for f in "${PIDFILES[@]}"; do
    [ -s "$f" ] || continue
    p=$(cat "$f"); kill "$p" 2>/dev/null || true
  done
  sleep 0.5
  for n in "${NSES[@]}"; do
    for v in $(ip -n "$n" -br link show type vrf 2>/dev/null | awk '{print $1}'); do ip -n "$n" link del "$v" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  for n in "${FRR_NODES[@]}"; do rm -rf "/run/frr/$n"; done
  rm -rf "$WORK"
}

# frr_prepare <node>: config dir $WORK/<node> with a preamble (log file only)
frr_prepare() {
  local n=$1
  mkdir -p "$WORK/$n/run" "$WORK/$n/$n" "/run/frr/$n"; FRR_NODES+=("$n")
  # vtysh -N <n> --config_dir <d> reads <d>/<n>/vtysh.conf
  : >"$WORK/$n/vtysh.conf"; : >"$WORK/$n/$n/vtysh.conf"
  printf 'log file %s/%s/frr.log\n' "$WORK" "$n" >"$WORK/$n/preamble.conf"
  cp "$WORK/$n/preamble.conf" "$WORK/$n/base.conf"
  chown -R frr:frr "$WORK/$n" "/run/frr/$n"
}
# frr_start <node> <netns> [zebra.conf] [bgpd.conf]
frr_start() {
  local n=$1 ns=$2 z=${3:-$WORK/$1/base.conf} b=${4:-$WORK/$1/base.conf}
  PIDFILES+=("/run/frr/$n/bgpd.pid" "/run/frr/$n/zebra.pid")
  # -s: a netlink receive buffer big enough for thousands of devices/routes at once
  nsx "$ns" $FRR_LIB/zebra -N "$n" -d -P 0 -s 67108864 -f "$z" -i "/run/frr/$n/zebra.pid" 2>>"$WORK/$n/startup.log"
  nsx "$ns" $FRR_LIB/bgpd -N "$n" -d -P 0 -f "$b" -i "/run/frr/$n/bgpd.pid" 2>>"$WORK/$n/startup.log"
}
frr_stop() {  # <node>: SIGTERM both daemons by PID, wait until gone
  local n=$1 d p
  for d in bgpd zebra; do
    p=$(cat "/run/frr/$n/$d.pid" 2>/dev/null) || continue
    kill "$p" 2>/dev/null || true
    timeout 60 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true
  done
}
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
    --frr-pathspace "$n" --frr-confdir "$WORK/$n" --frr-rundir "$WORK/$n/run" --frr-piddir "/run/frr/$n" \
    --frr-preamble "$WORK/$n/preamble.conf" --metrics-addr 127.0.0.1:9469 "$@" >>"$WORK/agent.log" 2>&1 &
  echo $! >"$WORK/agent.pid"; PIDFILES+=("$WORK/agent.pid")
}
agent_stop() {
  local p; p=$(cat "$WORK/agent.pid")
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = bgpvpn-agent ] || return 0
  kill "$p"; timeout 30 tail --pid="$p" -f /dev/null || kill -9 "$p"
}
