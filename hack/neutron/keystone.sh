#!/usr/bin/env bash
# keystone.sh -- a real Keystone 30.0.0 (OpenStack 2026.2) identity API, for testing the OpenStack
# sync's token flow (clouds.yaml, password and application credentials, catalog, renewal).
#
#   keystone.sh setup <dir>   venv from PyPI (cached), config, SQLite schema, fernet keys, and
#                             `keystone-manage bootstrap` (admin user/project/role, RegionOne,
#                             identity endpoints on a free loopback port) in <dir>
#   keystone.sh start <dir>   gunicorn on that port; writes <dir>/endpoint (the v3 URL)
#   keystone.sh stop  <dir>   stop the server started by `start`
#
# The admin password is in <dir>/admin-password (mode 600). SQLite in WAL mode (without it, API
# writes fail with "database is locked": a reader's open transaction blocks the commit), fernet
# tokens, no memcached.
# Env: TESTBED_CACHE, PYTHON (>= 3.11; default python3), PIP_CACHE_DIR (default: in the cache),
#      KEYSTONE_TOKEN_EXPIRATION (token lifetime in s, default 3600), READY_TIMEOUT (s, default 60).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
PKGS=(keystone==30.0.0 gunicorn)
# the same 2026.2 upper-constraints as neutron: the dependency set that release was tested with
CONSTRAINTS=$HERE/../testbed/upper-constraints-2026.2.txt
VENV=$CACHE/keystone-30.0.0
PY=${PYTHON:-python3}

log() { printf '[keystone %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_venv() {
  [ -f "$VENV/.complete" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.keystone-venv.lock"; flock 9
  [ -f "$VENV/.complete" ] && return 0
  log "creating venv $VENV (pip install ${PKGS[*]}, ~30-60 s)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  PIP_CACHE_DIR=${PIP_CACHE_DIR:-$CACHE/pip} "$VENV/bin/pip" install -q --disable-pip-version-check \
    -c "$CONSTRAINTS" "${PKGS[@]}"
  touch "$VENV/.complete"
  flock -u 9
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

manage() { "$VENV/bin/keystone-manage" --config-file "$D/etc/keystone.conf" "$@" >>"$D/log/manage.log" 2>&1 \
  || { tail -20 "$D/log/manage.log" >&2; die "keystone-manage $1 failed"; }; }

cmd_setup() {
  D=${1:?usage: $0 setup <dir>}
  ensure_venv
  mkdir -p "$D"; D=$(cd "$D" && pwd)
  [ -f "$D/.bootstrapped" ] && { log "already set up: $D"; return 0; }
  mkdir -p "$D/etc" "$D/app" "$D/fernet" "$D/credential" "$D/log"
  chmod 700 "$D/fernet" "$D/credential"
  # Like neutron's: keystone's app hands sys.argv to oslo.config, which would choke on gunicorn's.
  cat >"$D/app/keystone_api_wsgi.py" <<'EOF'
import sys
_argv, sys.argv = sys.argv, [sys.argv[0]]
from keystone.wsgi.api import application  # noqa: E402,F401  (config from OS_KEYSTONE_CONFIG_DIR)
sys.argv = _argv
EOF
  cat >"$D/etc/keystone.conf" <<EOF
[DEFAULT]
log_file = $D/log/keystone.log

[database]
connection = sqlite:///$D/keystone.db

[token]
provider = fernet
expiration = ${KEYSTONE_TOKEN_EXPIRATION:-3600}

[fernet_tokens]
key_repository = $D/fernet

[fernet_receipts]
key_repository = $D/fernet

[credential]
key_repository = $D/credential
EOF
  local port; port=$(free_port)
  echo "$port" >"$D/port"
  ( umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$D/admin-password" )
  manage db_sync
  manage fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  manage credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
  local url="http://127.0.0.1:$port/v3"
  manage bootstrap --bootstrap-password "$(cat "$D/admin-password")" \
    --bootstrap-admin-url "$url" --bootstrap-internal-url "$url" --bootstrap-public-url "$url" \
    --bootstrap-region-id RegionOne
  "$VENV/bin/python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$D/keystone.db"
  touch "$D/.bootstrapped"
  log "set up $D (port $port)"
}

cmd_start() {
  local D=${1:?usage: $0 start <dir>} PORT
  [ -f "$D/.bootstrapped" ] || die "run '$0 setup $D' first"
  D=$(cd "$D" && pwd)
  [ -f "$D/keystone.pid" ] && kill -0 "$(cat "$D/keystone.pid")" 2>/dev/null && die "already running ($D/keystone.pid)"
  PORT=$(cat "$D/port")
  OS_KEYSTONE_CONFIG_DIR="$D/etc" \
    "$VENV/bin/gunicorn" --no-control-socket --chdir "$D/app" -b "127.0.0.1:$PORT" -w 1 -k gthread --threads 4 \
    --timeout 120 --graceful-timeout 2 keystone_api_wsgi:application </dev/null >"$D/log/gunicorn.log" 2>&1 &
  PID=$!
  echo "$PID" >"$D/keystone.pid"
  trap 'kill "$PID" 2>/dev/null || true' EXIT
  local deadline=$((SECONDS + ${READY_TIMEOUT:-60})) t0=$SECONDS
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/v3"; do
    kill -0 "$PID" 2>/dev/null || { tail -20 "$D/log/gunicorn.log" >&2; die "keystone exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$D/log/gunicorn.log" >&2; die "not ready after ${READY_TIMEOUT:-60}s"; }
    sleep 0.2
  done
  echo "http://127.0.0.1:$PORT/v3" >"$D/endpoint"
  trap - EXIT
  log "ready after $((SECONDS - t0))s: $(cat "$D/endpoint") (pid $PID)"
}

cmd_stop() {
  local D=${1:?usage: $0 stop <dir>} PID
  [ -f "$D/keystone.pid" ] || { log "nothing to stop"; return 0; }
  PID=$(cat "$D/keystone.pid")
  if tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null | grep "gunicorn.*keystone_api_wsgi" >/dev/null; then
    local workers; workers=$(pgrep -P "$PID" || true)
    kill "$PID"
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    # a worker orphaned by the KILL would keep serving its open connections for a while
    for w in $workers; do
      tr '\0' ' ' 2>/dev/null <"/proc/$w/cmdline" | grep "gunicorn.*keystone_api_wsgi" >/dev/null && kill -KILL "$w" 2>/dev/null || true
    done
  fi
  rm -f "$D/keystone.pid" "$D/endpoint"
  log "stopped"
}

case ${1:-} in
  setup) cmd_setup "${2:-}" ;;
  start) cmd_start "${2:-}" ;;
  stop)  cmd_stop "${2:-}" ;;
  *) sed -n '2,/^set -euo/p' "$HERE/$(basename "$0")" | grep '^#' >&2; exit 64 ;;
esac
