#!/bin/sh
# FRR sidecar entrypoint (upstream FRR image): install the daemons list and vtysh.conf, then run
# the daemons under the image's own launcher (watchfrr). The agent container applies the
# configuration with the same image's frr-reload.py and vtysh through the shared /etc/frr and
# /var/run/frr, and sees a restart through the shared process namespace.
set -eu
cp /etc/bgpvpn-frr/daemons /etc/bgpvpn-frr/vtysh.conf /etc/frr/
[ -f /etc/frr/frr.conf ] || : >/etc/frr/frr.conf
chown -R frr:frr /etc/frr /var/run/frr 2>/dev/null || true
exec /usr/lib/frr/docker-start
