#!/usr/bin/env bash
# neutron-bgpvpn.sh -- a real neutron-server 29.0.0 (OpenStack 2026.2) API with networking-bgpvpn
# 25.0.0, for testing the OpenStack sync against the genuine REST API.
# Adapted from the shared test-bed recipe (same cached venv): adds the
# Keystone mode (NEUTRON_AUTH=keystone) and runs gunicorn without its control socket.
#
#   neutron-bgpvpn.sh setup <dir>   venv from PyPI (cached), config + SQLite schema in <dir>
#   neutron-bgpvpn.sh start <dir>   gunicorn on a free loopback port; writes <dir>/endpoint
#   neutron-bgpvpn.sh stop  <dir>   stop the server started by `start`
#
# Default (NEUTRON_BACKEND=api): API only, ML2 with no mechanism drivers and no agents (ports stay
# "unbound"). NEUTRON_BACKEND=ovn at setup: ML2/OVN (mechanism driver ovn, geneve tenant networks,
# the ovn-router L3 plugin) plus Neutron 29's EVPN service plugin (`evpn`: routers' evpn_vni,
# add_router_interface's advertise_host), against an OVN NB/SB + ovn-northd that `start` brings up
# in <dir>/ovn with ./ovn.sh (Debian's ovn-central; no ovn-controller, no datapath) and `stop`
# stops again.
# Both: noauth (no Keystone; every request is admin whatever X-Project-Id / X-Roles say, and a
# create must name its project_id in the body: roles/policies need keystone mode) unless
# NEUTRON_AUTH=keystone at setup (then keystonemiddleware checks tokens against KEYSTONE_URL with
# the service user KEYSTONE_USER / KEYSTONE_PASSWORD of project KEYSTONE_PROJECT, domain Default),
# fake RPC transport (no RabbitMQ), SQLite. The BGPVPN service driver is a no-op that stores
# everything and enables the vni, local_pref and port-association extensions (the stock "Dummy"
# driver rejects them).
# Env: TESTBED_CACHE, PYTHON (>= 3.11; default python3), PIP_CACHE_DIR (default: in the cache),
#      READY_TIMEOUT (s, default 120), NEUTRON_BACKEND (api|ovn, at setup).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
PKGS=(neutron==29.0.0 networking-bgpvpn==25.0.0 gunicorn)
# OpenStack's upper-constraints for 2026.2 pin every transitive dependency to the set that release
# was tested with; without them pip resolves to newer libraries that neutron 29 was never run
# against. (Derived from 2026.1's: see the file's header.)
CONSTRAINTS=$HERE/../testbed/upper-constraints-2026.2.txt
VENV=$CACHE/neutron-29.0.0-bgpvpn-25.0.0
PY=${PYTHON:-python3}

log() { printf '[neutron-bgpvpn %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_venv() {
  [ -f "$VENV/.complete" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.neutron-venv.lock"; flock 9        # parallel first runs build the venv once
  [ -f "$VENV/.complete" ] && return 0
  log "creating venv $VENV (pip install ${PKGS[*]}, ~1-2 min)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} "$VENV/bin/pip" install -q --disable-pip-version-check \
    -c "$CONSTRAINTS" "${PKGS[@]}"
  touch "$VENV/.complete"
  flock -u 9
}

cmd_setup() {
  local D=${1:?usage: $0 setup <dir>}
  ensure_venv
  mkdir -p "$D"; D=$(cd "$D" && pwd)
  mkdir -p "$D/etc" "$D/app" "$D/state/lock" "$D/log"

  # gunicorn entry point: neutron.server._init_configuration() hands sys.argv[1:] to oslo.config,
  # which would choke on gunicorn's own options -> hide them while importing the app.
  local AUTH=${NEUTRON_AUTH:-noauth} BACKEND=${NEUTRON_BACKEND:-api} PLUGINS=router,bgpvpn
  case $AUTH in noauth|keystone) ;; *) die "NEUTRON_AUTH must be noauth or keystone" ;; esac
  case $BACKEND in
    api) ;;
    # ovn-router (OVNL3RouterPlugin) instead of router: EVPN routers must have the OVN provider
    ovn) PLUGINS=ovn-router,evpn,bgpvpn
         [ ${#D} -le 60 ] || die "NEUTRON_BACKEND=ovn: path too long for OVN's unix sockets: $D" ;;
    *) die "NEUTRON_BACKEND must be api or ovn" ;;
  esac
  echo "$BACKEND" >"$D/backend"
  {
    echo 'import sys'
    # ML2/OVN writes to the DB from its OVSDB event threads (hash ring heartbeats, port status)
    # while requests run; see testbed_sqlite.py
    [ "$BACKEND" = ovn ] && echo 'import testbed_sqlite  # noqa: F401'
    cat <<'EOF'
_argv, sys.argv = sys.argv, [sys.argv[0]]
from neutron.wsgi.api import application  # noqa: E402,F401  (config from OS_NEUTRON_CONFIG_*)
sys.argv = _argv
EOF
  } >"$D/app/neutron_api_wsgi.py"
  cat >"$D/app/testbed_sqlite.py" <<'EOF'
# SQLite under ML2/OVN (NEUTRON_BACKEND=ovn): the OVN driver's OVSDB event threads write to the
# DB (hash ring heartbeats, port status) while API requests run. A transaction that read first
# and then writes after another connection committed gets "database is locked" at once (in WAL
# mode: SQLITE_BUSY_SNAPSHOT; the DB is in WAL mode so that readers never wait). That is what
# MySQL calls a deadlock: map it to oslo.db's DBDeadlock, so that neutron's DB retry decorators
# run the transaction again, as they do on MySQL.
from oslo_db import exception
from oslo_db.sqlalchemy import exc_filters
from sqlalchemy import exc as sqla_exc


@exc_filters.filters("sqlite", sqla_exc.OperationalError, r".*database is locked")
def _sqlite_locked_as_deadlock(error, match, engine_name, is_disconnect):
    raise exception.DBDeadlock(error)
EOF
  # No-op BGPVPN driver = networking_bgpvpn's own unit-test driver (TestBgpvpnDriverWithVni):
  # BGPVPNDriverRC persists everything and advertises local_pref/ports/port-associations; adding the
  # bgpvpn-vni alias enables `vni`. The stock Dummy driver answers "Unrecognized attribute(s) 'vni'".
  cat >"$D/app/testbed_bgpvpn_driver.py" <<'EOF'
from neutron_lib.api.definitions import bgpvpn_vni as bgpvpn_vni_def
from networking_bgpvpn.neutron.services.service_drivers import driver_api


class NoopFullDriver(driver_api.BGPVPNDriverRC):
    more_supported_extension_aliases = (
        driver_api.BGPVPNDriverRC.more_supported_extension_aliases + [bgpvpn_vni_def.ALIAS])
EOF
  cat >"$D/etc/neutron.conf" <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins = $PLUGINS
auth_strategy = $AUTH
api_paste_config = $VENV/etc/neutron/api-paste.ini
# oslo.messaging in-memory driver: no RabbitMQ, RPC casts to (absent) agents go nowhere
transport_url = fake:/
state_path = $D/state
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false

[database]
connection = sqlite:///$D/neutron.db

[oslo_concurrency]
lock_path = $D/state/lock

[service_providers]
service_provider = BGPVPN:NoopFull:testbed_bgpvpn_driver.NoopFullDriver:default
EOF
  if [ "$AUTH" = keystone ]; then
    : "${KEYSTONE_URL:?NEUTRON_AUTH=keystone needs KEYSTONE_URL (the v3 URL)}"
    chmod 600 "$D/etc/neutron.conf"
    cat >>"$D/etc/neutron.conf" <<EOF

[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
username = ${KEYSTONE_USER:-admin}
password = ${KEYSTONE_PASSWORD:?NEUTRON_AUTH=keystone needs KEYSTONE_PASSWORD}
user_domain_name = Default
project_name = ${KEYSTONE_PROJECT:-admin}
project_domain_name = Default
EOF
  fi
  if [ "$BACKEND" = api ]; then
  # "local" tenant networks need no segmentation pool and no agent; no mechanism drivers.
  cat >"$D/etc/ml2_conf.ini" <<EOF
[ml2]
type_drivers = local,flat,vxlan
tenant_network_types = local
mechanism_drivers =
extension_drivers =

[ml2_type_flat]
flat_networks = *

[ml2_type_vxlan]
vni_ranges = 1:1000
EOF
  else
  # ML2/OVN as deployed (geneve project networks, flat provider networks, port_security); the
  # minimum that works is less: type geneve, mechanism ovn, the geneve ranges, max_header_size
  # >= 38 (below, the driver refuses to start: "Geneve max_header_size set too low for OVN (30
  # vs 38)", and gunicorn restarts the worker forever) and the NB/SB connections, which are
  # those of `ovn.sh start $D/ovn`.
  cat >"$D/etc/ml2_conf.ini" <<EOF
[ml2]
type_drivers = geneve,flat
tenant_network_types = geneve
mechanism_drivers = ovn
extension_drivers = port_security

[ml2_type_geneve]
vni_ranges = 1:65536
max_header_size = 38

[ml2_type_flat]
flat_networks = *

[ovn]
ovn_nb_connection = unix:$D/ovn/ovnnb_db.sock
ovn_sb_connection = unix:$D/ovn/ovnsb_db.sock
EOF
  fi
  if [ ! -f "$D/neutron.db" ]; then
    # The alembic migrations use ALTER operations SQLite lacks, so build the schema from the
    # models (as neutron's own unit tests do; bgpvpn's head imports neutron's) and then stamp the
    # alembic heads so the DB counts as fully migrated.
    "$VENV/bin/python" - "$D/neutron.db" <<'EOF'
import sys, sqlalchemy as sa
from networking_bgpvpn.neutron.db import head
head.get_metadata().create_all(sa.create_engine("sqlite:///" + sys.argv[1]))
EOF
    "$VENV/bin/neutron-db-manage" --config-file "$D/etc/neutron.conf" --config-file "$D/etc/ml2_conf.ini" \
      stamp heads >"$D/log/db-manage.log" 2>&1 || { cat "$D/log/db-manage.log" >&2; die "stamp heads failed"; }
    # WAL (persistent in the file): readers do not block the OVN driver's writers, nor they them
    [ "$BACKEND" = api ] || "$VENV/bin/python" -c \
      'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$D/neutron.db"
  fi
  log "set up $D"
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
  local D=${1:?usage: $0 start <dir>} PORT
  [ -f "$D/etc/neutron.conf" ] || die "run '$0 setup $D' first"
  D=$(cd "$D" && pwd)
  [ -f "$D/neutron.pid" ] && kill -0 "$(cat "$D/neutron.pid")" 2>/dev/null && die "already running ($D/neutron.pid)"
  local env=()
  if [ "$(cat "$D/backend" 2>/dev/null)" = ovn ]; then
    "$HERE/ovn.sh" start "$D/ovn"
    OVN_STOP=$(printf '%q stop %q' "$HERE/ovn.sh" "$D/ovn")
    trap "$OVN_STOP" EXIT
    # The OVN driver's hash ring wants the API worker count, which neutron reads from uwsgi,
    # mod_wsgi or else $ASGI_WORKERS ("The Neutron API workers count is zero" without it); and it
    # writes its start time to $TMPDIR/neutron_start_time<ppid>: keep that in <dir>.
    mkdir -p "$D/state/tmp"
    env=(ASGI_WORKERS=1 TMPDIR="$D/state/tmp")
  fi
  PORT=$(free_port)        # not 9696: parallel runs must not clash
  # one worker: SQLite + neutron's in-process state do not like concurrent processes; threads suffice
  env "${env[@]}" OS_NEUTRON_CONFIG_DIR="$D/etc" OS_NEUTRON_CONFIG_FILES="neutron.conf;ml2_conf.ini" \
    "$VENV/bin/gunicorn" --no-control-socket --chdir "$D/app" -b "127.0.0.1:$PORT" -w 1 -k gthread --threads 4 --timeout 120 --graceful-timeout 2 \
    neutron_api_wsgi:application </dev/null >"$D/log/neutron.log" 2>&1 &
  PID=$!
  echo "$PID" >"$D/neutron.pid"
  # on failure: stop what we started
  trap 'kill "$PID" 2>/dev/null || true; eval "${OVN_STOP:-}"' EXIT
  local deadline=$((SECONDS + ${READY_TIMEOUT:-120})) t0=$SECONDS
  # in keystone mode an unauthenticated request gets 401, which also proves the API is up
  until [[ $(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2.0/bgpvpn/bgpvpns") =~ ^(200|401)$ ]]; do
    kill -0 "$PID" 2>/dev/null || { tail -20 "$D/log/neutron.log" >&2; die "neutron-server exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$D/log/neutron.log" >&2; die "not ready after ${READY_TIMEOUT:-120}s"; }
    sleep 0.2
  done
  echo "http://127.0.0.1:$PORT" >"$D/endpoint"
  trap - EXIT
  log "ready after $((SECONDS - t0))s: $(cat "$D/endpoint") (pid $PID)"
}

cmd_stop() {
  local D=${1:?usage: $0 stop <dir>} PID
  [ -f "$D/neutron.pid" ] || { log "nothing to stop"; stop_ovn "$D"; return 0; }
  PID=$(cat "$D/neutron.pid")
  # only signal the PID if it is still our gunicorn (PIDs get reused); TERM stops master + worker
  if tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep "gunicorn.*neutron_api_wsgi" >/dev/null; then
    local workers; workers=$(pgrep -P "$PID" || true)
    kill "$PID"
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    # a worker orphaned by the KILL would keep serving its open connections for a while
    for w in $workers; do
      tr '\0' ' ' 2>/dev/null <"/proc/$w/cmdline" | grep "gunicorn.*neutron_api_wsgi" >/dev/null && kill -KILL "$w" 2>/dev/null || true
    done
  fi
  rm -f "$D/neutron.pid" "$D/endpoint"
  log "stopped"
  stop_ovn "$D"      # after neutron: its OVN driver would log reconnect errors
}

stop_ovn() { [ "$(cat "$1/backend" 2>/dev/null)" != ovn ] || "$HERE/ovn.sh" stop "$1/ovn"; }

case ${1:-} in
  setup) cmd_setup "${2:-}" ;;
  start) cmd_start "${2:-}" ;;
  stop)  cmd_stop "${2:-}" ;;
  *) sed -n '2,/^set -euo/p' "$HERE/$(basename "$0")" | grep '^#' >&2; exit 64 ;;
esac
