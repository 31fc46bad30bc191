#!/usr/bin/env bash
# uml-guest.sh <script> [KEY=VAL ...] -- run <script> as the only job of a throw-away Linux kernel.
#
# Why: the CI/dev host kernel may lack VRF/VXLAN or forbid touching its network; Debian's
# `user-mode-linux` package is a complete Linux 6.1 kernel that runs as an ordinary process
# (no KVM, no disk image), with VRF/VXLAN/bridge/veth as modules.
#
#   * guest root fs = this host's "/" via hostfs, READ-ONLY (host-installed frr, iproute2, curl,
#     python3 ... are used as they are); tmpfs on /run, /var/log, /var/tmp, /dev/shm
#   * one writable share for results: $UML_OUT (host dir) is mounted at /run/out; the payload
#     sees it as $OUT. Without UML_OUT a temporary dir is used and removed afterwards.
#   * KEY=VAL arguments become environment variables of <script>
#   * exit code = <script>'s exit code; 125 = the guest never reported one (crash/timeout)
#   * modprobe works inside the guest (module tree from the package, depmod'ed into the cache)
#
# Env: TAP=<ifname>  attach an existing host tap device as the guest NIC "vec0". Create the tap
#                    inside a network namespace of your own and run uml-guest.sh in that netns:
#          ns=tb-$RANDOM; ip netns add $ns; ip -n $ns tuntap add dev tap0 mode tap
#          ip -n $ns addr add 10.99.0.1/24 dev tap0; ip -n $ns link set tap0 up
#          ip netns exec $ns env TAP=tap0 ./uml-guest.sh payload.sh     # guest: 10.99.0.2 on vec0
#          ip netns del $ns                                             (see uml-tap-example.sh)
#      UML_MEM (default 1G), UML_TIMEOUT (s, default 900), UML_OUT, TESTBED_CACHE.
# Limits: uniprocessor and ptrace-based, so syscall-heavy work (Go binaries!) is several times
# slower than on the host. Paths of the script, this file and the cache must not lie under /run,
# /dev, /proc, /sys, /var/log or /var/tmp (the guest mounts its own filesystems there) and must not
# contain spaces or commas (they travel on the kernel command line).
set -euo pipefail

# ------------------------------------------------------------------ guest side (PID 1)
if [ "$$" = 1 ] && [ -n "${TESTBED_UML_GUEST:-}" ]; then
  set +e
  export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev 2>/dev/null   # guest device nodes, not the host's via hostfs
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
  [ -e /dev/fd ] || ln -sf /proc/self/fd /dev/fd
  mount -t tmpfs tmpfs /var/log; mount -t tmpfs tmpfs /var/tmp
  mkdir -p /run/out /run/tmp /run/testbed /run/netns /run/lock
  mount -t hostfs -o "$TESTBED_OUT" none /run/out || { echo "uml-guest: cannot mount $TESTBED_OUT"; poweroff -f; }
  # root is the host's read-only /lib/modules (wrong kernel), so point modprobe at our tree:
  # MODPROBE_OPTIONS for explicit `modprobe`, a wrapper for kernel auto-loading (ip link add type vrf)
  export MODPROBE_OPTIONS="-d $TESTBED_MODTREE"
  printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$TESTBED_MODTREE" >/run/testbed/modprobe
  chmod 755 /run/testbed/modprobe; echo /run/testbed/modprobe >/proc/sys/kernel/modprobe
  hostname uml-guest; ip link set lo up
  export TMPDIR=/run/tmp OUT=/run/out TESTBED_GUEST=uml
  [ -n "${TESTBED_TAP:-}" ] && export UML_NIC=vec0
  [ -f /run/out/.uml-env ] && . /run/out/.uml-env      # the caller's KEY=VAL pairs
  cd /run
  if [ -x "$TESTBED_PAYLOAD" ]; then "$TESTBED_PAYLOAD"; else bash "$TESTBED_PAYLOAD"; fi </dev/null 2>&1 \
    | tee /run/out/.uml-guest.log
  echo "${PIPESTATUS[0]}" >/run/out/.uml-rc
  sync
  poweroff -f 2>/dev/null; echo o >/proc/sysrq-trigger; sleep 5; exit 0
fi

# ------------------------------------------------------------------ host side
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
log() { printf '[uml-guest %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 125; }

[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$SELF" | grep '^#' >&2; exit 64; }
PAYLOAD=$(readlink -f "$1"); shift
[ -f "$PAYLOAD" ] || die "no such script: $PAYLOAD"
for kv in "$@"; do [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "not KEY=VAL: $kv"; done
command -v depmod >/dev/null || die "kmod (depmod/modprobe) is needed on the host"

# 1. kernel + modules: the .deb is only unpacked into the cache (nothing installed, no root needed
#    once cached). Keyed by package version so an upgrade gets its own tree.
UVER=$(apt-cache show --no-all-versions user-mode-linux 2>/dev/null | sed -n 's/^Version: //p' | head -1)
[ -n "$UVER" ] || { [ "$(id -u)" = 0 ] && apt-get update -qq; \
  UVER=$(apt-cache show --no-all-versions user-mode-linux | sed -n 's/^Version: //p' | head -1); }
[ -n "$UVER" ] || die "apt knows no user-mode-linux package"
U=$CACHE/uml-${UVER//[^A-Za-z0-9.+-]/_}
mkdir -p "$CACHE"
exec 9>"$CACHE/.uml.lock"; flock 9                       # parallel first runs: unpack only once
if [ ! -x "$U/root/usr/bin/linux.uml" ]; then
  log "downloading user-mode-linux $UVER"
  rm -rf "$U"; mkdir -p "$U/deb"
  # stale package lists name a .deb the mirror no longer has (404): refresh them once and retry
  (cd "$U/deb" && apt-get download -qq -o APT::Sandbox::User=root "user-mode-linux=$UVER") || {
    rm -rf "$U"; [ "$(id -u)" = 0 ] && apt-get update -qq || die "apt-get download user-mode-linux failed"
    UVER=$(apt-cache show --no-all-versions user-mode-linux | sed -n 's/^Version: //p' | head -1)
    U=$CACHE/uml-${UVER//[^A-Za-z0-9.+-]/_}; rm -rf "$U"; mkdir -p "$U/deb"
    (cd "$U/deb" && apt-get download -qq -o APT::Sandbox::User=root "user-mode-linux=$UVER")
  }
  dpkg-deb -x "$U"/deb/user-mode-linux_*.deb "$U/root"
  rm -rf "$U/deb"
fi
KVER=$(ls "$U/root/usr/lib/uml/modules")
MODTREE=$U/modtree
if [ ! -f "$MODTREE/lib/modules/$KVER/modules.dep" ]; then
  # the package ships no modules.dep (its postinst would run depmod); build one in the cache
  mkdir -p "$MODTREE/lib/modules"
  ln -sfn "$U/root/usr/lib/uml/modules/$KVER" "$MODTREE/lib/modules/$KVER"
  depmod -b "$MODTREE" "$KVER"
fi
flock -u 9

# 2. per-run state: uml_dir (UML's pid/mconsole files, instead of ~/.uml) and the results share
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT
if [ -n "${UML_OUT:-}" ]; then mkdir -p "$UML_OUT"; OUTDIR=$(cd "$UML_OUT" && pwd)
else OUTDIR=$RUN/out; mkdir -p "$OUTDIR"; fi
rm -f "$OUTDIR/.uml-rc" "$OUTDIR/.uml-guest.log"
: >"$OUTDIR/.uml-env"
for kv in "$@"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$OUTDIR/.uml-env"; done

NIC=()
if [ -n "${TAP:-}" ]; then
  [ -e "/sys/class/net/$TAP" ] || die "TAP=$TAP: no such interface in this network namespace"
  # gro=1: the host tap hands over GSO frames; without it UML logs a warning per frame
  NIC=("vec0:transport=tap,ifname=$TAP,gro=1" "TESTBED_TAP=$TAP")
fi

# 3. boot. init=this very file: the branch at the top runs when it finds itself as PID 1.
log "booting UML $KVER (payload $(basename "$PAYLOAD"))"
t0=$SECONDS
timeout -k 10 "${UML_TIMEOUT:-900}" "$U/root/usr/bin/linux.uml" mem="${UML_MEM:-1G}" \
  umid="testbed-$$" uml_dir="$RUN" \
  root=/dev/root rootfstype=hostfs rootflags=/ ro init="$SELF" \
  TESTBED_UML_GUEST=1 TESTBED_OUT="$OUTDIR" TESTBED_MODTREE="$MODTREE" TESTBED_PAYLOAD="$PAYLOAD" \
  "${NIC[@]}" con=null con0=fd:0,fd:1 quiet </dev/null \
  | grep -av -e '^SELinux:' -e 'reboot: System halted' -e '^mmapper_init' -e 'Failed to initialize ubd' || true
[ -f "$OUTDIR/.uml-rc" ] || die "the guest did not report an exit code (crash or UML_TIMEOUT)"
rc=$(cat "$OUTDIR/.uml-rc")
log "guest finished after $((SECONDS - t0))s, exit code $rc${UML_OUT:+ (results in $OUTDIR)}"
exit "$rc"
