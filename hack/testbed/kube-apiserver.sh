#!/usr/bin/env bash
# kube-apiserver.sh -- a real kube-apiserver v1.20.2 (+ etcd) for controller/operator tests.
#
#   kube-apiserver.sh build          build the binary from Debian bookworm's `kubernetes` source
#                                    package with Debian's Go 1.19 (cached; a second run is a no-op)
#   kube-apiserver.sh start <rundir> start etcd + kube-apiserver on free ports, write
#                                    <rundir>/kubeconfig and <rundir>/env, wait for /readyz
#   kube-apiserver.sh stop  <rundir> stop the processes recorded in <rundir>/env
#   kube-apiserver.sh kubectl        print the path of a kubectl matching the server (v1.20.2, from
#                                    Debian's kubernetes-client .deb, unpacked into the cache)
#
# Env: TESTBED_CACHE (artifact cache), KUBE_BIND_ADDRESS (default 127.0.0.1; set it to an address
#      inside a network namespace you created, e.g. a tap address for a UML guest), READY_TIMEOUT (s),
#      KEEP_BUILD_TREE=1 (keep the 1.8 GB build tree), DEBIAN_MIRROR, PYTHON,
#      EXTRA_APISERVER_FLAGS (appended to the apiserver command line).
# Needs root for `build` (apt-get install); `start`/`stop` do not.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
K8S_VERSION=v1.20.2
# upstream commit of the v1.20.2 tag; stamped into the binary like a release build
K8S_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
KDIR=$CACHE/kube-apiserver-$K8S_VERSION
BIN=$KDIR/kube-apiserver
GOROOT_BIN=/usr/lib/go-1.19/bin          # where Debian's golang-1.19-go puts go
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PYTHON:-python3}

log() { printf '[kube-apiserver %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install missing Debian packages without letting their postinst start services on this host
# (etcd-server ships an etcd.service that would grab 2379/2380).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  (
    # policy-rc.d exiting 101 = "action forbidden" for invoke-rc.d/deb-systemd-invoke.
    # Only create it if the admin has none, and always remove ours again.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive
    inst() { apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null; }
    inst || { apt-get update -qq && inst; }
  ) 2> >(grep -v 'delaying package configuration' >&2)  # debconf noise when apt-utils is absent
}

# Download the Debian source package WITHOUT touching /etc/apt: a private deb-src list and a
# private lists dir inside the cache (nothing is left in sources.list.d).
fetch_debian_source() {  # pkg/suite destdir
  local a=$CACHE/apt-src
  mkdir -p "$a/lists/partial" "$a/sources.list.d" "$2"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bookworm main" >"$a/sources.list"
  local o=(-o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts="$a/sources.list.d"
           -o Dir::State::Lists="$a/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
           -o APT::Sandbox::User=root)  # _apt cannot write into a cache under a 0700 $HOME
  apt-get "${o[@]}" update -qq
  (cd "$2" && apt-get "${o[@]}" source --download-only -qq "$1")
}

cmd_build() {
  apt_install etcd-server openssl curl   # runtime deps of `start`; a no-op when present
  if [ -x "$BIN" ]; then log "cached: $BIN ($("$BIN" --version))"; return 0; fi
  [ "$(id -u)" = 0 ] || die "build needs root (apt-get install)"
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9          # two parallel builds into one cache would clobber each other
  if [ -x "$BIN" ]; then log "cached (built by a parallel run): $BIN"; return 0; fi

  # Go 1.19 is the only Go in bookworm; the two -dev packages provide the fixed vendored libs (below).
  apt_install golang-1.19-go golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev \
              dpkg-dev make rsync  # rsync: the k8s Makefile copies generated trees with it
  local B=$KDIR/build; rm -rf "$B"; mkdir -p "$B/dl"
  log "fetching Debian source package kubernetes/bookworm"
  fetch_debian_source kubernetes/bookworm "$B/dl"
  # dpkg-source applies Debian's patches (kubectl printing fixes, CVE-2021-25743) like a package build
  dpkg-source -x "$B"/dl/kubernetes_*.dsc "$B/src" >"$B/dpkg-source.log" 2>&1 \
    || { cat "$B/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
  [ -f "$B/src/cmd/kube-apiserver/apiserver.go" ] || die "unexpected source layout in $B/src"

  # k8s 1.20 vendors modern-go/reflect2 1.0.1, which reads Go runtime map internals that changed in
  # Go 1.18 -> SIGSEGV in json-iterator as soon as the apiserver encodes a map. Debian's
  # reflect2 1.0.2 / json-iterator 1.1.12 (the versions k8s itself moved to) fix that. GOPATH-mode
  # build, so swapping the vendor directories is enough (vendor/modules.txt is not consulted).
  local m
  for m in modern-go/reflect2 json-iterator/go; do
    rm -rf "$B/src/vendor/github.com/$m"
    cp -r "/usr/share/gocode/src/github.com/$m" "$B/src/vendor/github.com/$m"
    find "$B/src/vendor/github.com/$m" -name '*_test.go' -delete
  done

  # The tarball has no .git: version info comes from this file (hack/lib/version.sh).
  cat >"$B/version.env" <<EOF
KUBE_GIT_COMMIT='$K8S_COMMIT'
KUBE_GIT_TREE_STATE='clean'
KUBE_GIT_VERSION='$K8S_VERSION'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
EOF
  # `make WHAT=...` (as debian/rules does), not `go build`: make first runs the code generators
  # (openapi-gen, deepcopy/conversion/defaulter-gen, go-bindata) whose output is not in the tarball --
  # a plain `go build ./cmd/kube-apiserver` fails with "undefined: openapi.GetOpenAPIDefinitions".
  # It also sets up the GOPATH-mode tree (GO111MODULE=off) and stamps the version ldflags.
  log "make WHAT=cmd/kube-apiserver (Go 1.19, ~4 min on 2 cores; log: $B/make.log)"
  mkdir -p "$B/tmp"   # TMPDIR inside the tree: whatever the build leaves in it goes with the tree
  if ! (cd "$B/src" && env -u GOFLAGS PATH="$GOROOT_BIN:$PATH" CGO_ENABLED=0 GOPROXY=off TMPDIR="$B/tmp" \
        KUBE_GIT_VERSION_FILE="$B/version.env" make WHAT=cmd/kube-apiserver GOLDFLAGS="-s -w") \
        >"$B/make.log" 2>&1; then
    tail -30 "$B/make.log" >&2; die "build failed (tree kept in $B)"
  fi
  install -m 755 "$B/src/_output/bin/kube-apiserver" "$BIN.tmp"
  mv "$BIN.tmp" "$BIN"
  cp "$B/make.log" "$KDIR/make.log"
  # the tree (sources + GOCACHE) is ~1.8 GB and only the binary is needed afterwards
  [ -n "${KEEP_BUILD_TREE:-}" ] || rm -rf "$B"
  log "built $BIN: $("$BIN" --version)"
}

free_ports() {  # addr count -> ports the kernel hands out for bind(port 0) right now
  "$PY" - "$@" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(); s.bind((sys.argv[1], 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

cmd_start() {
  local RUN=${1:?usage: $0 start <rundir>}
  [ -x "$BIN" ] || die "no cached binary: run '$0 build' first"
  command -v etcd >/dev/null || die "etcd not found (run '$0 build', it installs etcd-server)"
  mkdir -p "$RUN"; RUN=$(cd "$RUN" && pwd)
  [ -f "$RUN/env" ] && die "$RUN/env exists: already started? ('$0 stop $RUN' first)"
  local BIND=${KUBE_BIND_ADDRESS:-127.0.0.1} EP PP AP TOKEN
  # free ports instead of 2379/2380/6443 so parallel runs (and a host etcd) don't clash;
  # etcd is always on loopback: only the apiserver talks to it
  read -r EP PP < <(free_ports 127.0.0.1 2)
  read -r AP < <(free_ports "$BIND" 1)
  TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -p "$RUN/pki"
  echo "$TOKEN,admin,admin,system:masters" >"$RUN/pki/tokens.csv"
  openssl genrsa -out "$RUN/pki/sa.key" 2048 2>/dev/null
  # Own CA + serving cert (SAN = bind address) so clients can verify TLS (kube-rs/rustls included)
  # instead of relying on insecure-skip-tls-verify.
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=testbed-ca -keyout "$RUN/pki/ca.key" \
    -out "$RUN/pki/ca.crt" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout "$RUN/pki/apiserver.key" \
    -out "$RUN/pki/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$RUN/pki/apiserver.csr" -CA "$RUN/pki/ca.crt" -CAkey "$RUN/pki/ca.key" -CAcreateserial \
    -days 7 -out "$RUN/pki/apiserver.crt" -extfile <(printf '%s\n' 'basicConstraints=CA:FALSE' \
    'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' \
    "subjectAltName=IP:$BIND,IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc") 2>/dev/null

  # On any failure below, kill what we started (by PID) -- never leave orphans behind.
  ETCD_PID='' API_PID=''
  trap 'kill $API_PID $ETCD_PID 2>/dev/null || true' EXIT
  etcd --name testbed --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "testbed=http://127.0.0.1:$PP" </dev/null >"$RUN/etcd.log" 2>&1 &
  ETCD_PID=$!
  # --disable-admission-plugins=ServiceAccount: no controller-manager creates default SAs/tokens.
  # shellcheck disable=SC2086
  "$BIN" --etcd-servers="http://127.0.0.1:$EP" --bind-address="$BIND" --advertise-address="$BIND" \
    --secure-port="$AP" --cert-dir="$RUN/pki" \
    --tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
    --token-auth-file="$RUN/pki/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$RUN/pki/sa.key" --service-account-signing-key-file="$RUN/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 --disable-admission-plugins=ServiceAccount \
    ${EXTRA_APISERVER_FLAGS:-} </dev/null >"$RUN/apiserver.log" 2>&1 &
  API_PID=$!

  local URL="https://$BIND:$AP" CA
  CA=$(base64 -w0 <"$RUN/pki/ca.crt")
  cat >"$RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: testbed, cluster: {server: "$URL", certificate-authority-data: "$CA"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: testbed, context: {cluster: testbed, user: admin, namespace: default}}]
current-context: testbed
EOF
  local t0=$SECONDS deadline=$((SECONDS + ${READY_TIMEOUT:-120}))
  until [ "$(curl -s --cacert "$RUN/pki/ca.crt" -H "Authorization: Bearer $TOKEN" "$URL/readyz" 2>/dev/null)" = ok ]; do
    kill -0 "$ETCD_PID" 2>/dev/null || { tail -20 "$RUN/etcd.log" >&2; die "etcd exited"; }
    kill -0 "$API_PID" 2>/dev/null || { tail -20 "$RUN/apiserver.log" >&2; die "kube-apiserver exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$RUN/apiserver.log" >&2; die "not ready after ${READY_TIMEOUT:-120}s"; }
    sleep 0.2
  done
  # sourceable by sh (set -a; . <rundir>/env) and readable by any test harness
  cat >"$RUN/env" <<EOF
KUBECONFIG=$RUN/kubeconfig
KUBE_APISERVER_URL=$URL
KUBE_TOKEN=$TOKEN
KUBE_CA_FILE=$RUN/pki/ca.crt
ETCD_ENDPOINT=http://127.0.0.1:$EP
ETCD_PID=$ETCD_PID
KUBE_APISERVER_PID=$API_PID
EOF
  trap - EXIT
  log "ready after $((SECONDS - t0))s at $URL (apiserver pid $API_PID, etcd pid $ETCD_PID); env: $RUN/env"
}

stop_pid() {  # pid expected-comm
  local pid=$1
  [ -n "$pid" ] || return 0
  # only signal it if the PID still belongs to the process we started (PIDs get reused)
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
  local RUN=${1:?usage: $0 stop <rundir>} ETCD_PID='' KUBE_APISERVER_PID=''
  [ -f "$RUN/env" ] || { log "nothing to stop ($RUN/env missing)"; return 0; }
  ETCD_PID=$(sed -n 's/^ETCD_PID=//p' "$RUN/env")
  KUBE_APISERVER_PID=$(sed -n 's/^KUBE_APISERVER_PID=//p' "$RUN/env")
  stop_pid "$KUBE_APISERVER_PID" kube-apiserver
  stop_pid "$ETCD_PID" etcd
  rm -f "$RUN/env"
  log "stopped (state left in $RUN)"
}

# kubectl from the same Debian source as the server: no version skew, and nothing is installed
# (the .deb is only unpacked), so a kubectl the host already has is left alone.
cmd_kubectl() {
  local d=$CACHE/kubectl-$K8S_VERSION
  if [ ! -x "$d/usr/bin/kubectl" ]; then
    mkdir -p "$d"
    exec 8>"$d.lock"; flock 8
    if [ ! -x "$d/usr/bin/kubectl" ]; then
      local dl; dl=$(mktemp -d)
      (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root kubernetes-client) \
        || { apt-get update -qq && (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root kubernetes-client); }
      dpkg-deb -x "$dl"/kubernetes-client_*.deb "$d"
      rm -rf "$dl"
    fi
  fi
  echo "$d/usr/bin/kubectl"
}

case ${1:-} in
  build) cmd_build; cmd_kubectl >/dev/null ;;
  kubectl) cmd_kubectl ;;
  start) cmd_start "${2:-}" ;;
  stop)  cmd_stop "${2:-}" ;;
  *) sed -n '2,/^set -euo/p' "$HERE/$(basename "$0")" | grep '^#' >&2; exit 64 ;;
esac
