#!/usr/bin/env bash
# hack/test.sh -- every test of the project, on real parts. Run as root on Debian 12:
#
#     sudo hack/test.sh
#
# Installs what it needs first (each step is cached and a no-op the second time):
#   * Debian packages: etcd-server, Go 1.19 (build only), frr + frr-pythontools, iproute2, kmod...
#   * kube-apiserver v1.20.2 built from Debian's `kubernetes` source package (~4-6 min cold)
#     and a matching kubectl (Debian's kubernetes-client, unpacked into the cache)
#   * the user-mode-linux kernel (VRF-capable; unpacked into the cache, not installed)
#   * neutron-server + networking-bgpvpn in a venv from PyPI (~1 min cold)
# Cache: ${TESTBED_CACHE:-~/.cache/bgpvpn-operator}. As root every real-parts tier is required
# (a tier that cannot start fails the run); as non-root those tiers print SKIPPED and only the
# pure tests run. Extra arguments go to `cargo test` (e.g. `hack/test.sh -p bgpvpn-crds`).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[test %4ss] %s\n' "$SECONDS" "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: this project needs a Rust toolchain >= 1.89 (rustup)"; exit 1; }

if [ "$(id -u)" = 0 ]; then
  log "installing / checking the real parts"
  hack/testbed/kube-apiserver.sh build
  for installer in hack/dataplane/install-deps.sh hack/neutron/install.sh; do
    if [ -x "$installer" ]; then log "$installer"; "$installer"; fi
  done
  export BGPVPN_REQUIRE_APISERVER=1 BGPVPN_REQUIRE_DATAPLANE=1 BGPVPN_REQUIRE_NEUTRON=1
else
  log "not root: the real-parts tiers (apiserver, UML dataplane, neutron) will print SKIPPED"
fi

log "cargo build --workspace (the e2e tests run the built binaries)"
cargo build --workspace --locked
log "cargo test --workspace"
cargo test --workspace --locked "$@"
log "done"
