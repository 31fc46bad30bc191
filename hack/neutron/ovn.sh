#!/usr/bin/env bash
# ovn.sh -- a minimal OVN control plane for neutron-server's ML2/OVN driver (the `ovn` mechanism
# driver that Neutron 29's EVPN service plugin requires): the OVN northbound and southbound
# ovsdb-servers on unix sockets inside <dir>, and ovn-northd between them. No ovs-vswitchd, no
# ovn-controller, no datapath: enough for the Neutron API, which only writes the NB DB.
#
#   ovn.sh start <dir>   create <dir>/ovnnb_db.db and ovnsb_db.db (first time, from the schemas in
#                        /usr/share/ovn), start both ovsdb-servers and ovn-northd (--detach, each
#                        with its own --pidfile in <dir>), add a fake gateway chassis to the SB
#                        (OVN_FAKE_CHASSIS=0: none); writes <dir>/nb and <dir>/sb (the connections)
#   ovn.sh stop  <dir>   stop the three processes, by the PIDs in their pidfiles
#   ovn.sh nbctl|sbctl <dir> ARGS...   ovn-nbctl / ovn-sbctl against that NB / SB
#
# The fake chassis (name testbed-gw, encap geneve 127.0.0.1, other_config
# ovn-cms-options=enable-chassis-as-gw) stands in for a gateway node: Neutron schedules router
# gateway ports and EVPN routers' HA chassis groups onto the chassis that carry that option.
# Debian packages: ovn-central, ovn-common, openvswitch-common (hack/neutron/install.sh, as root).
# Bookworm ships OVN 23.03: it stores the EVPN options Neutron writes (dynamic-routing-*) but
# does not implement them (that needs OVN >= 25.09); nothing here forwards packets anyway.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SCHEMAS=${OVN_SCHEMA_DIR:-/usr/share/ovn}

log() { printf '[ovn %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ovs/ovn tools default to /var/run/openvswitch etc.: keep everything in <dir>
ovs_env() { export OVS_RUNDIR=$1 OVS_LOGDIR=$1 OVS_DBDIR=$1; }

# is PID (from pidfile $1) still the process we started? (PIDs get reused)
ours() {
  local pidfile=$1 what=$2 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -F -- "$what" | grep -F -- "--pidfile=$pidfile" >/dev/null
}

# running, not a zombie: the daemons detach to PID 1, which reaps them only after a while
alive() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1); [ -n "$st" ] && [ "$st" != Z ]; }

stop_one() {
  local pidfile=$1 what=$2 pid
  if ours "$pidfile" "$what"; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_stop() {
  local D=${1:?usage: $0 stop <dir>}
  [ -d "$D" ] || { log "nothing to stop"; return 0; }
  D=$(cd "$D" && pwd)
  stop_one "$D/ovn-northd.pid" ovn-northd
  stop_one "$D/ovnsb_db.pid" ovsdb-server
  stop_one "$D/ovnnb_db.pid" ovsdb-server
  rm -f "$D/nb" "$D/sb"
  log "stopped ($D)"
}

db_server() {   # db_server <dir> nb|sb <schema>
  local D=$1 x=$2 schema=$3
  local db=$D/ovn${x}_db.db
  [ -f "$db" ] || ovsdb-tool create "$db" "$schema"
  ovsdb-server -vconsole:off --detach --no-chdir \
    --pidfile="$D/ovn${x}_db.pid" --unixctl="$D/ovn${x}_db.ctl" \
    --log-file="$D/ovsdb-server-$x.log" \
    --remote="punix:$D/ovn${x}_db.sock" "$db"
}

cmd_start() {
  local D=${1:?usage: $0 start <dir>}
  for t in ovsdb-server ovsdb-tool ovn-northd ovn-nbctl ovn-sbctl; do
    command -v "$t" >/dev/null || die "$t missing: apt-get install ovn-central ovn-common openvswitch-common (or run hack/neutron/install.sh as root)"
  done
  mkdir -p "$D"; D=$(cd "$D" && pwd)
  # unix socket paths are limited to 107 bytes
  [ ${#D} -le 80 ] || die "path too long for unix sockets: $D"
  ours "$D/ovnnb_db.pid" ovsdb-server && die "already running ($D/ovnnb_db.pid)"
  ovs_env "$D"
  local t0=$SECONDS
  trap "cmd_stop $(printf %q "$D")" EXIT       # on failure: stop what we started
  # --detach returns once the server listens (the pidfile is written by then)
  db_server "$D" nb "$SCHEMAS/ovn-nb.ovsschema"
  db_server "$D" sb "$SCHEMAS/ovn-sb.ovsschema"
  ovn-northd -vconsole:off --detach --no-chdir --pidfile="$D/ovn-northd.pid" --unixctl="$D/ovn-northd.ctl" \
    --log-file="$D/ovn-northd.log" \
    --ovnnb-db="unix:$D/ovnnb_db.sock" --ovnsb-db="unix:$D/ovnsb_db.sock"
  local NB="unix:$D/ovnnb_db.sock" SB="unix:$D/ovnsb_db.sock"
  # northd fills SB_Global from NB_Global once connected: wait for that (the SB is usable then)
  ovn-nbctl --db="$NB" --timeout=10 --wait=sb sync
  if [ "${OVN_FAKE_CHASSIS:-1}" = 1 ] && [ -z "$(ovn-sbctl --db="$SB" --timeout=10 --bare --columns=name find Chassis name=testbed-gw)" ]; then
    ovn-sbctl --db="$SB" --timeout=10 chassis-add testbed-gw geneve 127.0.0.1 -- \
      set Chassis testbed-gw hostname=testbed-gw \
      other_config:ovn-cms-options=enable-chassis-as-gw
  fi
  echo "$NB" >"$D/nb"
  echo "$SB" >"$D/sb"
  trap - EXIT
  log "ready after $((SECONDS - t0))s: NB $NB, SB $SB (pids $(cat "$D/ovnnb_db.pid") $(cat "$D/ovnsb_db.pid") $(cat "$D/ovn-northd.pid"))"
}

case ${1:-} in
  start) cmd_start "${2:-}" ;;
  stop)  cmd_stop "${2:-}" ;;
  nbctl) D=$(cd "${2:?usage: $0 nbctl <dir> ARGS}" && pwd); shift 2; ovs_env "$D"; exec ovn-nbctl --db="unix:$D/ovnnb_db.sock" --timeout=10 "$@" ;;
  sbctl) D=$(cd "${2:?usage: $0 sbctl <dir> ARGS}" && pwd); shift 2; ovs_env "$D"; exec ovn-sbctl --db="unix:$D/ovnsb_db.sock" --timeout=10 "$@" ;;
  *) sed -n '2,/^set -euo/p' "$HERE/$(basename "$0")" | grep '^#' >&2; exit 64 ;;
esac
