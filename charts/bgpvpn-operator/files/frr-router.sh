#!/bin/sh
# FRR router entrypoint (upstream FRR image): install the daemons list and vtysh.conf, then run
# the daemons under the image's own launcher (watchfrr). /etc/frr and /var/run/frr are directories
# of the node, shared with the agent pod: the agent writes frr.conf there and applies it over the
# vty sockets, so a restarted router boots into the configuration it last had.
set -eu
cp /etc/bgpvpn-frr/daemons /etc/bgpvpn-frr/vtysh.conf /etc/frr/
[ -f /etc/frr/frr.conf ] || : >/etc/frr/frr.conf
# the previous router's sockets and pid files: its daemons are gone
rm -f /var/run/frr/*.vty /var/run/frr/*.pid
chown -R frr:frr /etc/frr /var/run/frr 2>/dev/null || true
exec /usr/lib/frr/docker-start
