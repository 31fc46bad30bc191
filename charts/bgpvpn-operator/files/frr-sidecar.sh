#!/bin/sh
# FRR sidecar entrypoint (upstream FRR image): start the daemons with the image's own launcher,
# then run the reloader in the foreground. Exits when FRR exits, so the kubelet restarts the
# container; the agent notices the restart and hands the reloader its config again.
set -eu
cp /etc/bgpvpn-frr/daemons /etc/bgpvpn-frr/vtysh.conf /etc/frr/
[ -f /etc/frr/frr.conf ] || : >/etc/frr/frr.conf
chown -R frr:frr /etc/frr 2>/dev/null || true
/usr/lib/frr/docker-start &
frr_pid=$!
trap 'kill "$frr_pid" 2>/dev/null; exit 0' TERM INT
FRR_PID=$frr_pid exec /bin/sh /etc/bgpvpn-frr/frr-reloader.sh
