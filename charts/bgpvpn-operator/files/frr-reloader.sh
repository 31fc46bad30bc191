#!/bin/sh
# frr-reloader.sh -- applies the frr.conf the bgpvpn agent hands over, and hands back the result.
#
# Protocol, all files in $EXCHANGE_DIR (written by rename, so never seen half-written):
#   frr.conf   the complete desired configuration (agent)
#   request    one line: a request id, written after frr.conf (agent)
#   result     line 1: "<request id> applied|failed <exit code>", then the tail of the output (us)
# A request is applied with `frr-reload.py --test` first (a config FRR refuses never reaches the
# daemons), then `--reload`. The applied file is also copied to $FRR_CONF, so daemons restarted by
# watchfrr come back with it.
#
# Env: EXCHANGE_DIR (required), FRR_RELOAD (default /usr/lib/frr/frr-reload.py), RELOAD_ARGS
#      (extra frr-reload.py arguments, e.g. --vty_socket for a pathspace), FRR_CONF
#      (default /etc/frr/frr.conf), FRR_PID (exit when this process is gone), POLL (seconds).
set -u
: "${EXCHANGE_DIR:?}"
FRR_RELOAD=${FRR_RELOAD:-/usr/lib/frr/frr-reload.py}
FRR_CONF=${FRR_CONF:-/etc/frr/frr.conf}
POLL=${POLL:-0.2}
last=""
while :; do
  if [ -n "${FRR_PID:-}" ] && ! kill -0 "$FRR_PID" 2>/dev/null; then
    echo "frr-reloader: FRR ($FRR_PID) is gone" >&2; exit 1
  fi
  id=$(cat "$EXCHANGE_DIR/request" 2>/dev/null || true)
  if [ -n "$id" ] && [ "$id" != "$last" ]; then
    out=$EXCHANGE_DIR/.reload.out
    # shellcheck disable=SC2086
    if python3 "$FRR_RELOAD" ${RELOAD_ARGS:-} --test --stdout "$EXCHANGE_DIR/frr.conf" >"$out" 2>&1 \
       && python3 "$FRR_RELOAD" ${RELOAD_ARGS:-} --reload --stdout "$EXCHANGE_DIR/frr.conf" >>"$out" 2>&1; then
      rc=0 verdict=applied
      cp "$EXCHANGE_DIR/frr.conf" "$FRR_CONF.tmp" && mv "$FRR_CONF.tmp" "$FRR_CONF"
    else
      rc=$? verdict=failed
    fi
    { echo "$id $verdict $rc"; tail -n 40 "$out"; } >"$EXCHANGE_DIR/.result.tmp"
    mv "$EXCHANGE_DIR/.result.tmp" "$EXCHANGE_DIR/result"
    echo "frr-reloader: request $id $verdict ($rc)" >&2
    last=$id
  fi
  sleep "$POLL"
done
