#!/usr/bin/env bash
# guest.sh -- the node guest: a throw-away Linux kernel whose root is the Debian trixie tree of
# hack/testbed/guest-root.sh (FRR 10, iproute2, Python), running one script as its only job.
#
#   guest.sh prepare                  everything a run needs: the root, the kernel, the boot probe.
#                                     Downloads: run it as root from the host's own network
#                                     namespace, never from inside a lab namespace.
#   guest.sh versions                 one line: the kernel and how it runs, FRR, iproute2, Python
#   guest.sh run <script> [KEY=VAL]   boot, run <script> as root inside, exit with its exit code
#                                     (125: the guest never reported one). Downloads nothing.
#   guest.sh chroot <script> [KEY=VAL] run <script> on the HOST kernel with the same root and
#                                     binds (no VRF there: for tests of the agent's Kubernetes
#                                     side with FRR 10 that want a kernel without VRF)
#
# Kernels (GUEST_KERNEL=auto|uml|qemu; auto, the default, takes UML unless UML did not boot on
# this CPU when prepare probed it):
#   * uml: forky/sid's user-mode-linux 7.x (resolved with apt at prepare time, cached by version),
#     run from inside the trixie root (it needs glibc >= 2.38) in a private mount namespace.
#     Older UML (6.1, 6.12) panics at the first process on hosts with AMX: not used.
#   * qemu: QEMU with Debian trixie's own x86 kernel, the root over virtio-9p. KVM only where
#     /proc/cpuinfo shows vmx/svm and QEMU can open /dev/kvm (a /dev/kvm without them, such as
#     kvm_pvm, dies in KVM's emulator); TCG otherwise (VM_ACCEL=kvm|tcg forces one).
#
# Inside: the trixie root read-only; tmpfs on /run, /var/log, /var/tmp, /var/lib/frr, /dev/shm;
# $OUT (= /run/out) is the writable results share (GUEST_OUT on the host; a temporary dir
# without it); KEY=VAL arguments become environment variables; $GUEST_NIC is the NIC on TAP
# (vec0 under UML, eth0 under QEMU); modprobe works (the kernel's own module tree).
# Host paths the guest needs (the script, this repository, GUEST_OUT, every KEY=VAL value that is
# an absolute host path, and GUEST_BIND="dir ...") are bound into the root at the same path; a
# bind never covers anything the root has.
#
# Env: TAP=<ifname> attach this host tap (create it in a netns of your own and run guest.sh
#      there), GUEST_MEM (default 1G; QEMU 2G), GUEST_TIMEOUT (s, default 900), GUEST_OUT,
#      GUEST_BIND, VM_SMP (QEMU vCPUs, default 2), VM_ACCEL, TESTBED_CACHE.
# Paths must not contain spaces or commas (they travel on the kernel command line).
set -euo pipefail

# ------------------------------------------------------------------ guest side (PID 1)
if [ "$$" = 1 ] && [ -n "${TESTBED_GUEST:-}" ]; then
  set +e
  export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  [ -e /dev/console ] && [ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
  [ "$TESTBED_GUEST" = qemu ] && exec </dev/console >/dev/console 2>&1
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir -p /dev/pts /dev/shm
  mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
  [ -e /dev/fd ] || ln -sf /proc/self/fd /dev/fd
  for d in /var/log /var/tmp /var/lib/frr; do mount -t tmpfs tmpfs "$d"; done
  mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
  mkdir -p /run/out /run/tmp /run/testbed /run/netns /run/lock /run/frr
  if [ "$TESTBED_GUEST" = uml ]; then
    # UML 7's hostfs takes the host path as hostfs=<path> (6.x took it bare)
    mount -t hostfs -o "hostfs=$TESTBED_OUT" none /run/out 2>/dev/null || mount -t hostfs -o "$TESTBED_OUT" none /run/out
  else
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none out /run/out
  fi || { echo "guest: cannot mount the results share"; echo o >/proc/sysrq-trigger; sleep 5; }
  # the root has no /lib/modules for this kernel: point modprobe at the kernel's own tree,
  # MODPROBE_OPTIONS for explicit `modprobe`, a wrapper for kernel auto-loading (ip link add type vrf)
  export MODPROBE_OPTIONS="-d $TESTBED_MODTREE"
  printf '#!/bin/sh\nexec /sbin/modprobe -d %s "$@"\n' "$TESTBED_MODTREE" >/run/testbed/modprobe
  chmod 755 /run/testbed/modprobe; echo /run/testbed/modprobe >/proc/sys/kernel/modprobe
  hostname node-guest; ip link set lo up
  export TMPDIR=/run/tmp OUT=/run/out
  if [ -n "${TESTBED_TAP:-}" ]; then
    if [ "$TESTBED_GUEST" = uml ]; then GUEST_NIC=vec0; else
      GUEST_NIC=eth0; modprobe virtio_net
      for _ in $(seq 50); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
    fi
    export GUEST_NIC
  fi
  [ -f /run/out/.guest-env ] && . /run/out/.guest-env      # the caller's KEY=VAL pairs
  cut -d' ' -f1 /proc/uptime >/run/out/.guest-boot-s       # kernel start -> payload start
  cd /run
  if [ -x "$TESTBED_PAYLOAD" ]; then "$TESTBED_PAYLOAD"; else bash "$TESTBED_PAYLOAD"; fi </dev/null 2>&1 \
    | tee /run/out/.guest.log
  echo "${PIPESTATUS[0]}" >/run/out/.guest-rc
  sync
  poweroff -f 2>/dev/null; echo o >/proc/sysrq-trigger; sleep 5; exit 0
fi

# ------------------------------------------------------------------ host side
HERE=$(cd "$(dirname "$0")" && pwd)
SELF=$HERE/$(basename "$0")
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
log() { printf '[guest %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 125; }

# the root must exist already for everything but prepare (guest-root.sh would build it)
root_path() {
  if [ "${1:-}" = build ]; then "$HERE/guest-root.sh" path; return; fi
  local r; r=$(TESTBED_GUEST_ROOT_NO_BUILD=1 "$HERE/guest-root.sh" path 2>/dev/null) \
    || die "the guest root is not built: run '$SELF prepare' first (as root, from the host's network)"
  echo "$r"
}
ROOT=''
TB=/opt/testbed   # inside the root: kernels, unpacked per version

# apt inside the root (trixie's keys and apt); forky/sid through lists of their own, so the
# root itself stays on trixie. A stale forky/sid Release ("expired") must not stop a download.
forky_apt() {  # apt-get|apt-cache args...
  local tool=$1; shift
  chroot "$ROOT" "$tool" -o Dir::Etc::SourceList=/etc/apt/sources.list.forky -o Dir::Etc::SourceParts=- \
    -o Dir::State::Lists=/var/lib/apt/lists-forky -o Acquire::Check-Valid-Until=false "$@"
}
root_apt() { chroot "$ROOT" "$@"; }   # apt inside the root, its own trixie lists
# fetch_deb <root_apt|forky_apt> <pkg=version> <dir inside the root>: the .deb unpacked into
# <dir>/root, atomically: a failed download leaves no <dir>
fetch_deb() {
  local apt=$1 pkg=$2 dir=$3 tmp=$3.tmp-$$
  rm -rf "$ROOT$tmp"; mkdir -p "$ROOT$tmp/deb"
  # apt-get download writes to the cwd: / of the chroot
  if "$apt" apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1 && mv "$ROOT"/*.deb "$ROOT$tmp/deb/" &&
    dpkg-deb -x "$ROOT$tmp"/deb/*.deb "$ROOT$tmp/root"; then
    rm -rf "$ROOT$tmp/deb" "$ROOT$dir"; mv "$ROOT$tmp" "$ROOT$dir"
  else
    rm -rf "$ROOT$tmp"; return 1
  fi
}

uml_version() { forky_apt apt-cache show --no-all-versions user-mode-linux 2>/dev/null | sed -n 's/^Version: //p' | head -1; }
# the newest UML unpacked in the root (run never asks apt)
# (a download killed half-way leaves <dir>.tmp-<pid>: never taken for a kernel)
uml_dir() { ls -d "$ROOT$TB"/uml-* 2>/dev/null | grep -v '\.tmp-' | sort -V | tail -1 | sed "s|^$ROOT||"; }
vmk_dir() { ls -d "$ROOT$TB"/vmkernel-* 2>/dev/null | grep -v '\.tmp-' | sort -V | tail -1 | sed "s|^$ROOT||"; }
# the module tree's base (depmod -b, modprobe -d) of an unpacked kernel: trixie's is merged-/usr
vmk_modbase() { if [ -d "$ROOT$1/root/usr/lib/modules" ]; then echo "$1/root/usr"; else echo "$1/root"; fi; }
cpu_key() { { grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo; } | cksum | cut -d' ' -f1; }

prepare_uml() {
  local v u
  mkdir -p "$ROOT/var/lib/apt/lists-forky/partial"
  printf 'deb %s forky main\ndeb %s sid main\n' "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$ROOT/etc/apt/sources.list.forky"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  forky_apt apt-get update -qq >/dev/null 2>&1 || log "WARN: apt-get update of forky/sid failed; using what is cached"
  v=$(uml_version)
  if [ -n "$v" ]; then
    case $v in [0-6].*) die "forky/sid's user-mode-linux is $v; the bed needs 7.x (6.x panics on AMX hosts)" ;; esac
    u=$TB/uml-${v//[^A-Za-z0-9.+-]/_}
    if [ ! -x "$ROOT$u/root/usr/bin/linux.uml" ]; then
      log "downloading user-mode-linux $v (forky/sid)"
      fetch_deb forky_apt "user-mode-linux=$v" "$u" || die "apt-get download user-mode-linux=$v failed"
    fi
  fi
  u=$(uml_dir); [ -n "$u" ] || die "no user-mode-linux 7.x: apt found none and none is cached"
  local kver; kver=$(ls "$ROOT$u/root/usr/lib/uml/modules")
  if [ ! -f "$ROOT$u/modtree/lib/modules/$kver/modules.dep" ]; then
    # the package ships no modules.dep (its postinst would run depmod); trixie's depmod makes one
    mkdir -p "$ROOT$u/modtree/lib/modules"
    ln -sfn "$u/root/usr/lib/uml/modules/$kver" "$ROOT$u/modtree/lib/modules/$kver"
    chroot "$ROOT" depmod -b "$u/modtree" "$kver"
  fi
  : >"$ROOT/etc/resolv.conf"
}

prepare_qemu() {
  local kpkg kv bv k b
  if ! command -v qemu-system-x86_64 >/dev/null; then
    log "installing qemu-system-x86 (host)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; } \
      || die "cannot install qemu-system-x86"
  fi
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  root_apt apt-get update -qq >/dev/null 2>&1 || log "WARN: apt-get update in the root failed"
  kpkg=$(root_apt apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || die "apt knows no linux-image-amd64 in $(basename "$ROOT")"
  kv=$(root_apt apt-cache show --no-all-versions "$kpkg" | sed -n 's/^Version: //p' | head -1)
  bv=$(root_apt apt-cache show --no-all-versions busybox-static | sed -n 's/^Version: //p' | head -1)
  k=$TB/vmkernel-$kpkg-${kv//[^A-Za-z0-9.+-]/_} b=$TB/busybox-static-${bv//[^A-Za-z0-9.+-]/_}
  if ! ls "$ROOT$k"/root/boot/vmlinuz-* >/dev/null 2>&1; then
    log "downloading $kpkg $kv"; fetch_deb root_apt "$kpkg=$kv" "$k" || die "apt-get download $kpkg failed"
  fi
  if [ ! -x "$ROOT$b/root/usr/bin/busybox" ] && [ ! -x "$ROOT$b/root/bin/busybox" ]; then
    log "downloading busybox-static $bv"; fetch_deb root_apt "busybox-static=$bv" "$b" || die "apt-get download busybox-static failed"
  fi
  : >"$ROOT/etc/resolv.conf"
  local kver; kver=$(ls "$ROOT$(vmk_modbase "$k")/lib/modules" | head -1)
  [ -f "$ROOT$(vmk_modbase "$k")/lib/modules/$kver/modules.dep" ] || chroot "$ROOT" depmod -b "$(vmk_modbase "$k")" "$kver"
  # the uncompressed ELF boots through its PVH entry point: no real-mode setup, no in-guest xz
  # decompression (~2.5 s under TCG)
  if [ ! -s "$ROOT$k/vmlinux" ]; then
    python3 - "$ROOT$k/root/boot/vmlinuz-$kver" "$ROOT$k/vmlinux.tmp" <<'PY' && mv "$ROOT$k/vmlinux.tmp" "$ROOT$k/vmlinux" || rm -f "$ROOT$k/vmlinux.tmp"
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
out = lzma.LZMADecompressor().decompress(d[i:]) if i >= 0 else b''
sys.exit(1) if out[:4] != b'\x7fELF' else open(sys.argv[2], 'wb').write(out)
PY
  fi
  build_initrd "$k" "$b" "$kver"
}

# initramfs: busybox + the virtio-pci/9p modules + an /init that mounts the root (9p, read-only)
# and switch_root's into this file. Keyed by the text of /init and the module list.
build_initrd() {
  local k=$1 b=$2 kver=$3 mods init ir
  mods=$(chroot "$ROOT" modprobe -d "$(vmk_modbase "$k")" -S "$kver" --show-depends -a virtio_pci 9pnet_virtio 9p \
    | awk '$1 == "insmod" && !seen[$2]++ {print $2}')
  init=$(cat <<'EOF'
#!/bin/sh
export PATH=/bin
mount -t devtmpfs devtmpfs /dev; exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc; mount -t sysfs sysfs /sys
for m in $(cat /mod/order); do insmod /mod/$m || echo "initramfs: insmod $m failed"; done
i=0   # virtio devices are probed asynchronously: the mount tag may take a moment to appear
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose rootfs /newroot 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "initramfs: cannot mount the root (9p tag rootfs)"; echo o >/proc/sysrq-trigger; sleep 5; }
  sleep 0.05
done
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot "$TESTBED_INIT"
EOF
)
  local key; key=$(printf '%s\n%s\n' "$init" "$mods" | cksum | cut -d' ' -f1)
  [ -s "$ROOT$k/initrd-$key.cpio.gz" ] && return 0
  log "building the initramfs for $kver"
  rm -f "$ROOT$k"/initrd-*.cpio.gz
  ir=$(mktemp -d); mkdir -p "$ir"/{bin,proc,sys,dev,newroot,mod}
  cp "$(ls "$ROOT$b"/root/usr/bin/busybox "$ROOT$b"/root/bin/busybox 2>/dev/null | head -1)" "$ir/bin/busybox"
  for a in sh mount umount insmod ls cat echo sleep switch_root; do ln -s busybox "$ir/bin/$a"; done
  for m in $mods; do cp "$ROOT$m" "$ir/mod/"; basename "$m" >>"$ir/mod/order"; done
  printf '%s\n' "$init" >"$ir/init"; chmod 755 "$ir/init"
  (cd "$ir" && find . | "$ir/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 >"$ROOT$k/initrd.tmp")
  mv "$ROOT$k/initrd.tmp" "$ROOT$k/initrd-$key.cpio.gz"; rm -rf "$ir"
}

# ------------------------------------------------------------------ boot
# binds_for <host path>...: the shallowest ancestor of each path that the root lacks (binding it
# covers nothing of the root); paths the root has already are left alone. The mount points made
# for earlier binds are listed in $ROOT/.mountpoints and count as missing.
binds_for() {
  local p a
  for p in "$@"; do
    [ -e "$p" ] || continue
    p=$(readlink -f "$p"); a=''
    while [ "$p" != / ]; do
      # /tmp is a fresh tmpfs in the guest's view: everything below it is missing there
      if [ "$p" = /tmp ] || { [ -e "$ROOT$p" ] && [[ $p != /tmp/* ]] && ! grep -qxF "$p" "$ROOT/.mountpoints" 2>/dev/null; }
      then :; else a=$p; fi
      p=$(dirname "$p")
    done
    [ -z "$a" ] || echo "$a"
  done | sort -u | awk 'NR == 1 || index($0, prev "/") != 1 {print; prev = $0}'
}
# The start of every mount namespace a guest or a chroot runs in (arguments: the root, the binds,
# --): the root a mount point of its own (ip netns needs "/" to be one inside a chroot), a fresh
# tmpfs /tmp, then the binds (their mount points below /tmp made after the tmpfs).
NS_SETUP='set -e; R=$1; shift; mount --bind "$R" "$R"; mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
  while [ "$1" != -- ]; do if [ -d "$1" ]; then mkdir -p "$R$1"; else mkdir -p "${R}${1%/*}"; touch "$R$1"; fi
    mount --rbind "$1" "$R$1"; shift; done; shift'
# mount points outside /tmp are made in the root itself, once, and remembered
make_mountpoints() {
  local p
  for p in "$@"; do
    [[ $p == /tmp/* ]] && continue
    grep -qxF "$p" "$ROOT/.mountpoints" 2>/dev/null || echo "$p" >>"$ROOT/.mountpoints"
    if [ -d "$p" ]; then mkdir -p "$ROOT$p"; else mkdir -p "$(dirname "$ROOT$p")"; touch "$ROOT$p"; fi
  done
}

accel() {
  local a=${VM_ACCEL:-auto}
  if [ "$a" = auto ]; then
    a=tcg
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo &&
      echo quit | timeout 20 qemu-system-x86_64 -accel kvm -M none -nodefaults -display none -monitor stdio >/dev/null 2>&1
    then a=kvm; fi
  fi
  echo "$a"
}

# boot <uml|qemu> <payload> <outdir> [KEY=VAL...]
boot() {
  local kind=$1 payload=$2 outdir=$3; shift 3
  local kv binds=() b extra=()
  rm -f "$outdir/.guest-rc" "$outdir/.guest.log" "$outdir/.guest-boot-s"
  : >"$outdir/.guest-env"
  for kv in "$@"; do
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}" >>"$outdir/.guest-env"
    [[ ${kv#*=} == /* ]] && extra+=("${kv#*=}")
  done
  # shellcheck disable=SC2206 # a list of directories
  extra+=($REPO $payload $outdir ${GUEST_BIND:-})
  mapfile -t binds < <(binds_for "${extra[@]}")
  make_mountpoints "${binds[@]}"
  local nic=() nicenv=()
  if [ -n "${TAP:-}" ]; then
    [ -e "/sys/class/net/$TAP" ] || die "TAP=$TAP: no such interface in this network namespace"
    nicenv=("TESTBED_TAP=$TAP")
  fi
  local args="TESTBED_GUEST=$kind TESTBED_PAYLOAD=$payload ${nicenv[*]}"
  if [ "$kind" = uml ]; then
    local u kver; u=$(uml_dir); kver=$(ls "$ROOT$u/root/usr/lib/uml/modules")
    # gro=1: the host tap hands over GSO frames; without it UML logs a warning per frame
    [ -n "${TAP:-}" ] && nic=("vec0:transport=tap,ifname=$TAP,gro=1")
    # UML re-executes itself through /proc/self/exe and keeps its memory file in $TMPDIR
    timeout --foreground -k 10 "${GUEST_TIMEOUT:-900}" unshare --mount --propagation private bash -c "$NS_SETUP"'
      mount -t proc proc "$R/proc"; mount --rbind /dev "$R/dev"
      exec env TMPDIR=/dev/shm chroot "$R" "$@"' guest-ns "$ROOT" "${binds[@]}" -- \
      "$u/root/usr/bin/linux.uml" mem="${GUEST_MEM:-1G}" umid="guest-$$" uml_dir="/tmp" \
      root=/dev/root rootfstype=hostfs rootflags=/ ro init="$SELF" $args \
      TESTBED_OUT="$outdir" TESTBED_MODTREE="$u/modtree" "${nic[@]}" con=null con0=fd:0,fd:1 quiet </dev/null \
      | grep -av -e '^SELinux:' -e 'reboot: System halted' -e 'reboot: Power down' -e 'sysrq: Power Off' -e '^mmapper_init' -e 'Failed to initialize ubd' || true
  else
    local k kver initrd acc a; k=$(vmk_dir); kver=$(ls "$ROOT$(vmk_modbase "$k")/lib/modules" | head -1)
    initrd=$(ls "$ROOT$k"/initrd-*.cpio.gz | head -1)
    local img=$ROOT$k/vmlinux; [ -s "$img" ] || img=$ROOT$k/root/boot/vmlinuz-$kver
    a=$(accel)
    case $a in
      kvm) acc=(-accel kvm -cpu host) ;;
      # tb-size: TCG's code cache (QEMU's default of 1 GiB shows up as ~1 GiB more RSS)
      tcg) acc=(-accel "tcg,thread=multi,tb-size=256" -cpu max) ;;
      *) die "VM_ACCEL=$a: want auto, kvm or tcg" ;;
    esac
    [ -n "${TAP:-}" ] && nic=(-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" -device "virtio-net-pci,netdev=n0,romfile=")
    timeout --foreground -k 10 "${GUEST_TIMEOUT:-900}" unshare --mount --propagation private bash -c "$NS_SETUP"'
      exec "$@"' guest-ns "$ROOT" "${binds[@]}" -- \
      qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -machine q35 "${acc[@]}" \
      -smp "${VM_SMP:-2}" -m "${GUEST_MEM:-2G}" -display none -serial stdio -monitor none \
      -kernel "$img" -initrd "$initrd" \
      -fsdev "local,id=root,path=$ROOT,security_model=none,readonly=on,multidevs=remap" \
      -device virtio-9p-pci,fsdev=root,mount_tag=rootfs \
      -fsdev "local,id=out,path=$outdir,security_model=none" -device virtio-9p-pci,fsdev=out,mount_tag=out \
      "${nic[@]}" \
      -append "console=ttyS0 quiet panic=-1 rdinit=/init TESTBED_INIT=$SELF TESTBED_MODTREE=$(vmk_modbase "$k") $args" \
      </dev/null | sed -u 's/\r$//' \
      | grep -av --line-buffered -e 'reboot: Power down' -e 'sysrq: Power Off' -e 'ACPI: PM: Preparing to enter' || true
  fi
  [ -f "$outdir/.guest-rc" ] || return 125
  return "$(cat "$outdir/.guest-rc")"
}

probe_file() { echo "$ROOT$(uml_dir)/boots-on-$(cpu_key)"; }

kernel_kind() {
  case ${GUEST_KERNEL:-auto} in
    uml | qemu) echo "$GUEST_KERNEL" ;;
    auto) if [ "$(cat "$(probe_file)" 2>/dev/null)" = yes ]; then echo uml; else echo qemu; fi ;;
    *) die "GUEST_KERNEL=$GUEST_KERNEL: want auto, uml or qemu" ;;
  esac
}

versions() {
  local kind; kind=$(kernel_kind)
  if [ "$kind" = uml ]; then
    printf 'kernel=user-mode-linux-%s (ptrace, 1 CPU)' "$(basename "$(uml_dir)" | sed 's/^uml-//')"
  else
    printf 'kernel=%s (qemu %s, %s)' "$(basename "$(vmk_dir)" | sed 's/^vmkernel-//')" \
      "$(qemu-system-x86_64 --version | awk 'NR==1{print $4}')" "$(accel)"
  fi
  printf ' root=%s %s\n' "$(basename "$ROOT")" "$("$HERE/guest-root.sh" versions)"
}

cmd=${1:-}; shift || true
case $cmd in
  prepare)
    [ "$(id -u)" = 0 ] || die "prepare needs root"
    ROOT=$(root_path build)
    exec 9>"$ROOT.lock"; flock 9
    prepare_uml
    if [ "${GUEST_KERNEL:-auto}" != qemu ] && [ ! -s "$(probe_file)" ]; then
      # does this UML boot on this CPU? One trivial payload, a few seconds, remembered per CPU
      out=$(mktemp -d); printf '#!/bin/sh\necho booted\n' >"$out/probe.sh"; chmod 755 "$out/probe.sh"
      if boot uml "$out/probe.sh" "$out" >"$out/console" 2>&1 && grep -q booted "$out/.guest.log"; then
        echo yes >"$(probe_file)"
      else
        log "user-mode-linux does not boot on this CPU: the guest runs on QEMU ($(tail -2 "$out/console" | tr '\n' ' '))"
        echo no >"$(probe_file)"
      fi
      rm -rf "$out"
    fi
    if [ "$(kernel_kind)" = qemu ]; then prepare_qemu; fi
    flock -u 9
    versions
    ;;
  versions) ROOT=$(root_path); versions ;;
  __boot) ROOT=$(root_path); boot "$@"; exit $? ;;
  run)
    [ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$SELF" | grep '^#' >&2; exit 64; }
    [ "$(id -u)" = 0 ] || die "run needs root (mount namespace, chroot)"
    ROOT=$(root_path)
    PAYLOAD=$(readlink -f "$1"); shift
    [ -f "$PAYLOAD" ] || die "no such script: $PAYLOAD"
    for kv in "$@"; do [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "not KEY=VAL: $kv"; done
    KIND=$(kernel_kind)
    if [ "$KIND" = uml ]; then [ -n "$(uml_dir)" ] || die "no UML kernel: run '$SELF prepare' first"
    else [ -n "$(vmk_dir)" ] && command -v qemu-system-x86_64 >/dev/null || die "no QEMU kernel: run 'GUEST_KERNEL=qemu $SELF prepare' first"; fi
    RUN=$(mktemp -d)
    trap 'rm -rf "$RUN"' EXIT
    if [ -n "${GUEST_OUT:-}" ]; then mkdir -p "$GUEST_OUT"; OUTDIR=$(cd "$GUEST_OUT" && pwd)
    else OUTDIR=$RUN/out; mkdir -p "$OUTDIR"; fi
    log "booting $(versions | cut -d' ' -f1-4) (payload $(basename "$PAYLOAD"))"
    t0=$SECONDS rc=0
    # the guest in a process group of its own: a killed run takes the kernel and all it forked along
    # (boot's `timeout --foreground` stays in it: without --foreground timeout makes a group of
    # its own, and a killed run left the kernel running until GUEST_TIMEOUT)
    setsid "$SELF" __boot "$KIND" "$PAYLOAD" "$OUTDIR" "$@" &
    BOOT=$!
    trap 'kill -TERM -- -$BOOT 2>/dev/null && sleep 1 && kill -KILL -- -$BOOT 2>/dev/null; rm -rf "$RUN"' EXIT
    trap 'exit 143' TERM INT
    wait "$BOOT" || rc=$?
    [ -f "$OUTDIR/.guest-rc" ] || die "the guest did not report an exit code (crash or GUEST_TIMEOUT)"
    log "guest finished after $((SECONDS - t0))s (kernel->payload $(cat "$OUTDIR/.guest-boot-s" 2>/dev/null)s), exit code $rc${GUEST_OUT:+ (results in $OUTDIR)}"
    exit "$rc"
    ;;
  chroot)
    [ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$SELF" | grep '^#' >&2; exit 64; }
    [ "$(id -u)" = 0 ] || die "chroot needs root"
    ROOT=$(root_path)
    PAYLOAD=$(readlink -f "$1"); shift
    env=() extra=("$REPO" "$PAYLOAD" ${GUEST_BIND:-})
    for kv in "$@"; do
      [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "not KEY=VAL: $kv"
      env+=("$kv"); [[ ${kv#*=} == /* ]] && extra+=("${kv#*=}")
    done
    mapfile -t binds < <(binds_for "${extra[@]}")
    make_mountpoints "${binds[@]}"
    exec unshare --mount --propagation private bash -c "$NS_SETUP"'
      mount -t proc proc "$R/proc"; mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
      mount -t tmpfs -o mode=755 tmpfs "$R/run"; mkdir -p "$R/run/netns" "$R/run/frr"
      for d in /var/log /var/tmp /var/lib/frr; do mount -t tmpfs tmpfs "$R$d"; done
      exec chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb "$@"' guest-chroot \
      "$ROOT" "${binds[@]}" -- "${env[@]}" bash "$PAYLOAD"
    ;;
  *) sed -n '2,/^set -euo/p' "$SELF" | grep '^#' >&2; exit 64 ;;
esac
