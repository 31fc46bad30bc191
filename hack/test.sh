#!/usr/bin/env bash
# hack/test.sh -- every test of the project, on real parts. Run as root on Debian 12 or later:
#
#     hack/test.sh
#
# First the gates: `cargo fmt --all --check` and `cargo clippy --workspace --all-targets -D warnings`.
# Then it installs what it needs (each step is cached and a no-op the second time), all from the
# host's own network before any test namespace exists:
#   * host packages: iproute2, curl, python3, kmod (hack/dataplane/install-deps.sh)
#   * the node guest (hack/testbed/guest.sh prepare): a Debian trixie root with FRR 10
#     (debootstrap, ~1 min cold) and forky/sid's user-mode-linux 7.x, or QEMU with Debian's
#     kernel where that UML does not boot
#   * kube-apiserver, kube-controller-manager and kubectl v1.37.2 (KUBE_VERSION), and v1.35.4 (the
#     oldest supported: the CRD, controller and chart tiers run on it too), built from the
#     k8s.io/kubernetes Go module with the machine's Go (~18 min cold each on 2 cores); the
#     kubelet and kube-scheduler of v1.37.2 too, for the node guest (containerd, runc and CNI from
#     the guest root)
#   * the node guest's container images, built locally without a registry (hack/testbed/node/images.sh),
#     and the Debian root of the lab's FRR / agent / operator images (debootstrap, ~1 min cold; the
#     images themselves are layered from the built binaries by the node test: lab-images.sh)
#   * neutron-server + networking-bgpvpn and Keystone in venvs from PyPI (~1.5 min cold)
# It prints the versions of every part it runs. Cache: ${TESTBED_CACHE:-~/.cache/bgpvpn-operator}.
# As root every real-parts tier is required (a tier that cannot start fails the run); as non-root
# those tiers print SKIPPED and only the pure tests run. Extra arguments go to `cargo test`
# (e.g. `hack/test.sh -p bgpvpn-crds`). GUEST_KERNEL=qemu runs the node guest on QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[test %4ss] %s\n' "$SECONDS" "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: this project needs a Rust toolchain >= 1.89 (rustup)"; exit 1; }

# gates first: a formatting or lint slip fails in seconds, not after the tiers
for tool in rustfmt clippy; do
  cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1 || rustup component add "$tool"
done
log "cargo fmt --all --check"
cargo fmt --all --check
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# the oldest Kubernetes supported: the CRD, controller and chart tiers run on it too
OLDEST_KUBE=v1.35.4

if [ "$(id -u)" = 0 ]; then
  log "installing / checking the real parts"
  hack/dataplane/install-deps.sh
  log "hack/testbed/guest.sh prepare"
  hack/testbed/guest.sh prepare >/dev/null
  hack/testbed/kube-apiserver.sh build   # with the kubelet and kube-scheduler of the node guest (e2e/tests/node.rs)
  KUBE_VERSION=$OLDEST_KUBE hack/testbed/kube-apiserver.sh build kube-apiserver kube-controller-manager kubectl
  log "hack/testbed/node/images.sh: $(hack/testbed/node/images.sh)"
  log "the lab images' Debian root: $(ROOT_KIND=frr-image hack/testbed/guest-root.sh)"
  log "hack/neutron/install.sh"
  hack/neutron/install.sh
  hack/testbed/versions.sh
  export BGPVPN_REQUIRE_APISERVER=1 BGPVPN_REQUIRE_DATAPLANE=1 BGPVPN_REQUIRE_NEUTRON=1
else
  log "not root: the real-parts tiers (apiserver, UML dataplane, neutron) will print SKIPPED"
fi

log "cargo build --workspace (the e2e tests run the built binaries)"
cargo build --workspace --locked
log "cargo test --workspace"
cargo test --workspace --locked "$@"
if [ $# = 0 ]; then
  for tier in "bgpvpn-crds apiserver" "bgpvpn-operator controller" "bgpvpn-e2e chart"; do
    set -- $tier
    log "Kubernetes $OLDEST_KUBE: cargo test -p $1 --test $2"
    KUBE_VERSION=$OLDEST_KUBE cargo test --locked -p "$1" --test "$2"
  done
fi
log "done"
