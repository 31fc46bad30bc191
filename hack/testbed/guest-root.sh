#!/usr/bin/env bash
# guest-root.sh [path|versions] -- the node guest's root file system: a Debian trixie tree with
# FRR 10, debootstrapped once into the cache and then only reused. Prints its path (`path`, the
# default) or the versions of what it holds (`versions`). With ROOT_KIND=frr-image, the root of
# the lab's FRR / agent / operator images instead (hack/testbed/node/images.sh): FRR 10 with
# frr-reload.py and iproute2 from Debian's packages, nothing of the node.
#
#   * minbase first, then `apt-get install` inside the chroot with a policy-rc.d that starts no
#     daemon (`debootstrap --include=frr,...` fails: systemd's pre-depends in one dpkg batch)
#   * keyed by the package list below: a changed list builds a new tree next to the old one
#   * built under a temporary name and renamed when complete, so a failed or interrupted build
#     leaves nothing that a later run would take for a root
#   * needs root and the host's own network (never run it inside a lab namespace)
#
# Env: TESTBED_GUEST_ROOT_NO_BUILD=1 fails instead of building, TESTBED_CACHE (default ~/.cache/bgpvpn-operator), GUEST_SUITE (default trixie),
#      DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
SUITE=${GUEST_SUITE:-trixie}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# what the payloads run inside the guest: FRR 10 and frr-reload.py, iproute2, ping/curl, python3
# (check server, HTTP servers, frr-reload.py), kmod (modprobe), procps; etcd + openssl for an
# apiserver started inside the root (hack/testbed/kube-apiserver.sh start); containerd, runc and
# the CNI plugins for the kubelet of the node payload (hack/testbed/node/), busybox-static for the
# images it builds without a registry
PKGS=(frr frr-pythontools iproute2 iputils-ping curl python3 kmod procps psmisc ca-certificates etcd-server openssl
  containerd runc containernetworking-plugins busybox-static)
KIND=${ROOT_KIND:-guest}
case $KIND in
  guest) PREFIX=$SUITE ;;
  # frr-reload.py needs python3 (a dependency of frr-pythontools); procps: pgrep/ps for debugging
  frr-image) PREFIX=frr-image-$SUITE; PKGS=(frr frr-pythontools iproute2 procps ca-certificates) ;;
  *) echo "ROOT_KIND=$KIND: want guest or frr-image" >&2; exit 64 ;;
esac
log() { printf '[guest-root %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# the last item: the layout version, raised when the tree's layout changes (3: node mount points,
# 4: the agent's state directory)
KEY=$(printf '%s\n' "$SUITE" "${PKGS[@]}" 5 | cksum | cut -d' ' -f1)
ROOT=$CACHE/guest-root/$PREFIX-$KEY

versions() {
  chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n' frr iproute2 python3 etcd-server containerd runc \
    containernetworking-plugins 2>/dev/null \
    | awk '{printf "%s%s=%s", sep, $1, $2; sep=" "} END {print ""}'
}

build() {
  [ "$(id -u)" = 0 ] || die "building the guest root needs root (debootstrap, chroot)"
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  fi
  mkdir -p "$CACHE/guest-root"
  local tmp=$CACHE/guest-root/.build-$PREFIX-$KEY-$$
  # shellcheck disable=SC2064 # the path is fixed now
  trap "umount -R '$tmp/proc' 2>/dev/null; rm -rf '$tmp'" EXIT
  rm -rf "$CACHE"/guest-root/.build-"$PREFIX"-*   # leftovers of an interrupted build (we hold the lock)
  log "debootstrap --variant=minbase $SUITE (once; about 2 minutes)"
  debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$CACHE/guest-root/.debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/guest-root/.debootstrap.log" >&2; die "debootstrap $SUITE failed"; }
  local sec=${MIRROR%/debian}/debian-security
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$sec" "$SUITE" >"$tmp/etc/apt/sources.list"
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  mount -t proc proc "$tmp/proc"
  log "apt-get install ${PKGS[*]}"
  chroot "$tmp" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends ${PKGS[*]} && apt-get clean" >"$CACHE/guest-root/.apt.log" 2>&1 \
    || { tail -20 "$CACHE/guest-root/.apt.log" >&2; die "apt-get install in the $SUITE root failed"; }
  umount "$tmp/proc"
  if [ "$KIND" = frr-image ]; then
    # what an image does not need: documentation, locales, apt's lists and caches
    rm -rf "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/locale/* "$tmp"/usr/share/info/* \
      "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/* "$tmp"/var/cache/debconf/*-old "$tmp"/var/log/*.log
  fi
  # the guest mounts its own /run, /tmp, /var/log...: these are mount points, nothing else
  mkdir -p "$tmp/mnt/out" "$tmp/srv"
  # and where the node payload mounts the state of containerd, the kubelet and CNI (libcni's cache
  # is always /var/lib/cni), and of the agent and the router the chart runs there (their hostPaths)
  mkdir -p "$tmp/var/lib/containerd" "$tmp/var/lib/kubelet" "$tmp/var/lib/cni" "$tmp/var/lib/bgpvpn-agent" \
    "$tmp/var/lib/bgpvpn-frr"
  : >"$tmp/etc/resolv.conf"
  echo "$SUITE" >"$tmp/etc/hostname"
  mv "$tmp" "$ROOT"
  trap - EXIT
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.guest-root-$KIND.lock"; flock 9
if [ ! -x "$ROOT/usr/lib/frr/zebra" ]; then
  [ -z "${TESTBED_GUEST_ROOT_NO_BUILD:-}" ] || die "$ROOT is not built"
  build
fi
flock -u 9
case ${1:-path} in
  path) echo "$ROOT" ;;
  versions) versions ;;
  *) echo "usage: $0 [path|versions]" >&2; exit 64 ;;
esac
