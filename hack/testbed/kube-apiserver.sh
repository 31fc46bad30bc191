#!/usr/bin/env bash
# kube-apiserver.sh -- a real kube-apiserver (+ etcd, optionally kube-controller-manager) for
# controller/operator tests, of the Kubernetes version in KUBE_VERSION (default v1.37.2).
#
#   kube-apiserver.sh build [name..] build kube-apiserver, kube-controller-manager, kube-scheduler,
#                                    kubectl and kubelet (or only the named ones) from the k8s.io/kubernetes Go module at
#                                    $KUBE_VERSION (Go module proxy; cached by version and binary: only
#                                    the missing ones are built, a second run is a no-op)
#   kube-apiserver.sh start <rundir> start etcd + kube-apiserver on free ports, write
#                                    <rundir>/kubeconfig and <rundir>/env, wait for /readyz;
#                                    with KUBE_CONTROLLER_MANAGER=1 also kube-controller-manager,
#                                    with KUBE_SCHEDULER=1 also kube-scheduler
#   kube-apiserver.sh stop  <rundir> stop the processes recorded in <rundir>/env
#   kube-apiserver.sh kubectl        print the path of the kubectl of the same version (built by `build`)
#   kube-apiserver.sh kubelet        print the path of the kubelet of the same version (built by `build`)
#
# Env: KUBE_VERSION (a k8s.io/kubernetes tag, e.g. v1.35.4), TESTBED_CACHE (artifact cache),
#      KUBE_BIND_ADDRESS (default 127.0.0.1; set it to an address inside a network namespace you
#      created, e.g. a tap address for a UML guest), READY_TIMEOUT (s), KEEP_BUILD_TREE=1 (keep the
#      build tree with its multi-GB Go build cache), KUBE_GOTOOLCHAIN (used when the installed Go is
#      older than the tag's go.mod asks; default go1.27.3, fetched from the module proxy), PYTHON,
#      EXTRA_APISERVER_FLAGS (appended to the apiserver command line),
#      KUBE_CONTROLLER_MANAGER=1 and KUBE_CONTROLLERS (its --controllers, default below),
#      EXTRA_CONTROLLER_MANAGER_FLAGS,
#      KUBE_NODES="name ..." (kubelets that will register: for each a token of system:node:<name> in
#      group system:nodes and <rundir>/kubelet-<name>.kubeconfig; the apiserver then authorizes
#      with Node,RBAC and admits with NodeRestriction, as a cluster with real kubelets does; with
#      KUBE_CONTROLLER_MANAGER=1 too, which makes each namespace's `default` ServiceAccount and
#      `kube-root-ca.crt`, also with ServiceAccount: the pods get service-account tokens).
# Needs Go >= 1.21 on PATH for `build`, and root only when etcd-server/openssl/curl are missing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
[[ $KUBE_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || { echo "KUBE_VERSION=$KUBE_VERSION: want a release tag like v1.37.2" >&2; exit 64; }
KUBE_MINOR=${BASH_REMATCH[1]}
# the staging modules (k8s.io/api, client-go, ...) are tagged v0.MINOR.PATCH for kubernetes v1.MINOR.PATCH
STAGING_VERSION=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
KDIR=$CACHE/kube-$KUBE_VERSION
BIN=$KDIR/kube-apiserver KCM_BIN=$KDIR/kube-controller-manager KUBECTL_BIN=$KDIR/kubectl KUBELET_BIN=$KDIR/kubelet
SCHED_BIN=$KDIR/kube-scheduler
GOMODCACHE_DIR=$CACHE/go-mod   # module downloads (and a fetched Go toolchain) are kept: ~0.8 GB a release
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

# version_lt A B: true if Go version A (1.26.8, 1.26, go1.26.0) sorts before B
version_lt() { [ "${1#go}" != "${2#go}" ] && [ "$(printf '%s\n%s\n' "${1#go}" "${2#go}" | sort -V | head -1)" = "${1#go}" ]; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }

cmd_build() {
  apt_install etcd-server openssl curl   # runtime deps of `start`; a no-op when present
  local all=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet) names=() n
  [ $# = 0 ] || all=("$@")
  for n in "${all[@]}"; do
    case $n in kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet) ;; *) die "build: unknown binary $n" ;; esac
  done
  # only what is missing: a cache from before kubelet was added gains kubelet alone (the
  # apiserver alone takes ~13 min cold)
  missing() { names=(); for n in "${all[@]}"; do [ -x "$KDIR/$n" ] || names+=("$n"); done; [ ${#names[@]} -gt 0 ]; }
  if ! missing; then log "cached: $KDIR ($("$BIN" --version 2>/dev/null || echo "$KUBE_VERSION"))"; return 0; fi
  command -v go >/dev/null || die "go not found: building Kubernetes $KUBE_VERSION needs Go >= 1.21 on PATH"
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"; flock 9          # two parallel builds into one cache would clobber each other
  if ! missing; then log "cached (built by a parallel run): $KDIR"; return 0; fi
  log "to build: ${names[*]}"

  local B=$KDIR/build; chmod -R u+w "$B" 2>/dev/null || true; rm -rf "$B"; mkdir -p "$B/mod" "$B/tmp" "$B/out"
  # Everything Go writes goes to the cache dir: the module cache (kept, shared between versions) and
  # the build cache (GBs, inside the build tree, deleted with it). GOFLAGS replaces the caller's.
  export GOMODCACHE=$GOMODCACHE_DIR GOCACHE=$B/gocache GOTMPDIR=$B/tmp TMPDIR=$B/tmp \
         GOFLAGS="-mod=mod -modcacherw" GOWORK=off GO111MODULE=on CGO_ENABLED=0
  local t0 t1 tdl tbuild
  t0=$(now)
  # The tag's own go.mod says which Go it needs and how the staging modules are wired.
  local gomod
  gomod=$(GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || die "go mod download k8s.io/kubernetes@$KUBE_VERSION failed"
  local need have
  need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
  have=$(GOTOOLCHAIN=local go env GOVERSION)
  if [ -z "${GOTOOLCHAIN:-}" ] || [ "$GOTOOLCHAIN" = local ]; then
    if version_lt "$have" "$need"; then export GOTOOLCHAIN=${KUBE_GOTOOLCHAIN:-go1.27.3}; else export GOTOOLCHAIN=local; fi
  fi
  log "k8s.io/kubernetes@$KUBE_VERSION needs go $need; building with $(go env GOVERSION) (GOTOOLCHAIN=$GOTOOLCHAIN)"

  # A module of our own that requires k8s.io/kubernetes. Its go.mod points the staging modules
  # (k8s.io/api, ...) at ./staging/src/... which a module download does not contain: every such
  # replace becomes a replace by the published staging module of the same release. Other replaces,
  # the go line and the godebug lines (they set the binaries' runtime defaults) are copied as they are.
  {
    echo "module testbed/kube"
    echo
    grep -E '^(go|godebug) ' "$gomod"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    awk -v sv="$STAGING_VERSION" '
      /^replace \($/ { inblock = 1; next }
      inblock && /^\)$/ { inblock = 0; next }
      /^replace / && !/\($/ { sub(/^replace /, ""); line = 1 }
      inblock || line {
        line = 0
        if ($1 ~ /^\/\// || NF == 0) next
        if ($2 != "=>") { print "bad replace line: " $0 > "/dev/stderr"; exit 1 }
        if ($3 ~ /^\.\/staging\/src\//) { print "\t" $1 " => " $1 " " sv }
        else if ($3 ~ /^\./) { print "local replace not from staging: " $0 > "/dev/stderr"; exit 1 }
        else print "\t" $0
      }' "$gomod"
    echo ")"
  } >"$B/mod/go.mod" || die "cannot derive the replaces from $gomod"
  log "go.mod: $(grep -c ' => ' "$B/mod/go.mod") replaces from k8s.io/kubernetes' own go.mod (staging modules at $STAGING_VERSION)"
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    for n in "${names[@]}"; do echo "import _ \"k8s.io/kubernetes/cmd/$n\""; done
  } >"$B/mod/tools.go"
  (cd "$B/mod" && go mod tidy) >"$B/build.log" 2>&1 || { tail -30 "$B/build.log" >&2; die "go mod tidy failed (tree kept in $B)"; }
  t1=$(now); tdl=$(secs "$t0" "$t1")
  log "modules resolved and downloaded in ${tdl}s"

  # Like hack/lib/version.sh of a release build. The module proxy does not say which commit a tag is,
  # so gitCommit is empty unless KUBE_GIT_COMMIT gives it.
  local ld="-s -w" key val p
  for key in gitVersion gitMajor gitMinor gitCommit gitTreeState buildDate; do
    case $key in
      gitVersion) val=$KUBE_VERSION ;; gitMajor) val=1 ;; gitMinor) val=$KUBE_MINOR ;;
      gitCommit) val=${KUBE_GIT_COMMIT:-} ;; gitTreeState) val=clean ;;
      buildDate) val=$(date -u ${SOURCE_DATE_EPOCH:+--date=@$SOURCE_DATE_EPOCH} +%Y-%m-%dT%H:%M:%SZ) ;;
    esac
    for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do ld+=" -X '$p.$key=$val'"; done
  done
  local times=()
  for n in "${names[@]}"; do
    log "go build k8s.io/kubernetes/cmd/$n (log: $B/build.log)"
    t0=$(now)
    (cd "$B/mod" && go build -trimpath -ldflags "$ld" -o "$B/out/$n" "k8s.io/kubernetes/cmd/$n") >>"$B/build.log" 2>&1 \
      || { tail -30 "$B/build.log" >&2; die "go build $n failed (tree kept in $B)"; }
    t1=$(now); tbuild=$(secs "$t0" "$t1"); times+=("$n ${tbuild}s")
    log "built $n in ${tbuild}s ($(du -h "$B/out/$n" | cut -f1))"
  done
  for n in "${names[@]}"; do install -m 755 "$B/out/$n" "$KDIR/$n.tmp"; done
  for n in "${names[@]}"; do mv "$KDIR/$n.tmp" "$KDIR/$n"; done
  # appended: a later build of a missing binary keeps the record of the earlier ones
  { echo "go: $(go env GOVERSION)"; echo "download: ${tdl}s"; printf 'build: %s\n' "${times[@]}"
    for n in "${names[@]}"; do echo "size: $n $(stat -c %s "$KDIR/$n")"; done
    cat "$B/mod/go.mod"; } >>"$KDIR/build-info"
  cat "$B/build.log" >>"$KDIR/build.log"
  # the build cache alone is several GB and only the binaries are needed afterwards
  [ -n "${KEEP_BUILD_TREE:-}" ] || { chmod -R u+w "$B"; rm -rf "$B"; }
  log "built ${names[*]} in $KDIR: $("$KDIR/${names[0]}" --version 2>/dev/null || true)"
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

# The controllers a test bed without kubelets can run: all the default ones except those that act on
# Nodes and their Pods (fake Nodes never turn Ready, so node-lifecycle would taint them and evict
# their Pods, and pod-garbage-collector deletes Pods bound to Nodes that do not exist).
KCM_CONTROLLERS_DEFAULT='*,-node-lifecycle-controller,-taint-eviction-controller,-pod-garbage-collector-controller'

# Called by cmd_start once the apiserver is ready (uses its locals): kube-controller-manager on a
# free loopback port, with the admin's kubeconfig (system:masters, so no per-controller RBAC is
# needed), no leader election, the service-account key and the CA of this run.
start_controller_manager() {
  [ -x "$KCM_BIN" ] || die "no kube-controller-manager $KUBE_VERSION in $KDIR: run '$0 build' first"
  local CP
  read -r CP < <(free_ports 127.0.0.1 1)
  # shellcheck disable=SC2086
  "$KCM_BIN" --kubeconfig="$RUN/kubeconfig" \
    --authentication-kubeconfig="$RUN/kubeconfig" --authorization-kubeconfig="$RUN/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$CP" --cert-dir="$RUN/controller-manager-pki" \
    --leader-elect=false --controllers="${KUBE_CONTROLLERS:-$KCM_CONTROLLERS_DEFAULT}" \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$RUN/pki/sa.key" --root-ca-file="$RUN/pki/ca.crt" \
    --cluster-signing-cert-file="$RUN/pki/ca.crt" --cluster-signing-key-file="$RUN/pki/ca.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    ${EXTRA_CONTROLLER_MANAGER_FLAGS:-} </dev/null >"$RUN/controller-manager.log" 2>&1 &
  KCM_PID=$!
  KCM_URL="https://127.0.0.1:$CP"
  wait_healthy "$KCM_URL" "$KCM_PID" controller-manager
}

# Until the component at url (pid, its log <rundir>/<name>.log) answers /healthz with ok: served
# without authentication, its serving certificate self-signed. Uses cmd_start's deadline.
wait_healthy() {
  local url=$1 pid=$2 name=$3
  until [ "$(curl -sk "$url/healthz" 2>/dev/null)" = ok ]; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$RUN/$name.log" >&2; die "kube-$name exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$RUN/$name.log" >&2; die "$name not healthy after ${READY_TIMEOUT:-120}s"; }
    sleep 0.2
  done
}

# Called by cmd_start once the apiserver is ready: kube-scheduler on a free loopback port, with
# the admin's kubeconfig and no leader election.
start_scheduler() {
  [ -x "$SCHED_BIN" ] || die "no kube-scheduler $KUBE_VERSION in $KDIR: run '$0 build' first"
  local SP
  read -r SP < <(free_ports 127.0.0.1 1)
  "$SCHED_BIN" --kubeconfig="$RUN/kubeconfig" \
    --authentication-kubeconfig="$RUN/kubeconfig" --authorization-kubeconfig="$RUN/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SP" --leader-elect=false \
    </dev/null >"$RUN/scheduler.log" 2>&1 &
  SCHED_PID=$!
  wait_healthy "https://127.0.0.1:$SP" "$SCHED_PID" scheduler
}

cmd_start() {
  local RUN=${1:?usage: $0 start <rundir>}
  [ -x "$BIN" ] || die "no kube-apiserver $KUBE_VERSION in $KDIR: run '$0 build' first"
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
  local node node_tokens=() AUTHZ=RBAC ADMIT=''
  for node in ${KUBE_NODES:-}; do
    [[ $node =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "KUBE_NODES: '$node' is not a node name"
    node_tokens+=("$node=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')")
    echo "${node_tokens[-1]#*=},system:node:$node,system:node:$node,system:nodes" >>"$RUN/pki/tokens.csv"
  done
  # the Node authorizer limits a kubelet to its own Node and the objects of its pods
  local NO_ADMIT=--disable-admission-plugins=ServiceAccount
  [ ${#node_tokens[@]} = 0 ] || { AUTHZ=Node,RBAC; ADMIT=--enable-admission-plugins=NodeRestriction; }
  # pods that run get service-account tokens once the controller-manager makes the accounts
  [ ${#node_tokens[@]} = 0 ] || [ "${KUBE_CONTROLLER_MANAGER:-}" != 1 ] || NO_ADMIT=""
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
  ETCD_PID='' API_PID='' KCM_PID='' SCHED_PID=''
  trap 'kill $SCHED_PID $KCM_PID $API_PID $ETCD_PID 2>/dev/null || true' EXIT
  etcd --name testbed --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
    --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "testbed=http://127.0.0.1:$PP" </dev/null >"$RUN/etcd.log" 2>&1 &
  ETCD_PID=$!
  # --disable-admission-plugins=ServiceAccount unless kubelets and the controller-manager run:
  # Pods need no ServiceAccount (none exists without the controller-manager), and without a
  # kubelet no pod runs to use its token. 1.37's lease endpoint reconciler refuses a loopback advertise address (1.35's
  # does not): on loopback nobody reaches the apiserver through the `kubernetes` Service, so none.
  local RECONCILER=lease
  case $BIND in 127.*|::1) RECONCILER=none ;; esac
  # shellcheck disable=SC2086
  "$BIN" --etcd-servers="http://127.0.0.1:$EP" --bind-address="$BIND" --advertise-address="$BIND" \
    --secure-port="$AP" --cert-dir="$RUN/pki" \
    --tls-cert-file="$RUN/pki/apiserver.crt" --tls-private-key-file="$RUN/pki/apiserver.key" \
    --token-auth-file="$RUN/pki/tokens.csv" --authorization-mode="$AUTHZ" $ADMIT \
    --service-account-key-file="$RUN/pki/sa.key" --service-account-signing-key-file="$RUN/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 $NO_ADMIT \
    --endpoint-reconciler-type="$RECONCILER" \
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
  local nt
  for nt in "${node_tokens[@]}"; do
    cat >"$RUN/kubelet-${nt%%=*}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: testbed, cluster: {server: "$URL", certificate-authority-data: "$CA"}}]
users: [{name: "system:node:${nt%%=*}", user: {token: "${nt#*=}"}}]
contexts: [{name: testbed, context: {cluster: testbed, user: "system:node:${nt%%=*}"}}]
current-context: testbed
EOF
  done
  local t0=$SECONDS deadline=$((SECONDS + ${READY_TIMEOUT:-120}))
  until [ "$(curl -s --cacert "$RUN/pki/ca.crt" -H "Authorization: Bearer $TOKEN" "$URL/readyz" 2>/dev/null)" = ok ]; do
    kill -0 "$ETCD_PID" 2>/dev/null || { tail -20 "$RUN/etcd.log" >&2; die "etcd exited"; }
    kill -0 "$API_PID" 2>/dev/null || { tail -20 "$RUN/apiserver.log" >&2; die "kube-apiserver exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$RUN/apiserver.log" >&2; die "not ready after ${READY_TIMEOUT:-120}s"; }
    sleep 0.2
  done
  local KCM_URL=''
  [ "${KUBE_CONTROLLER_MANAGER:-}" != 1 ] || start_controller_manager
  [ "${KUBE_SCHEDULER:-}" != 1 ] || start_scheduler
  # sourceable by sh (set -a; . <rundir>/env) and readable by any test harness
  cat >"$RUN/env" <<EOF
KUBECONFIG=$RUN/kubeconfig
KUBE_APISERVER_URL=$URL
KUBE_TOKEN=$TOKEN
KUBE_CA_FILE=$RUN/pki/ca.crt
ETCD_ENDPOINT=http://127.0.0.1:$EP
ETCD_PID=$ETCD_PID
KUBE_APISERVER_PID=$API_PID
KUBE_VERSION=$KUBE_VERSION
EOF
  [ -z "$KCM_PID" ] || printf 'KUBE_CONTROLLER_MANAGER_PID=%s\nKUBE_CONTROLLER_MANAGER_URL=%s\n' "$KCM_PID" "$KCM_URL" >>"$RUN/env"
  [ -z "$SCHED_PID" ] || printf 'KUBE_SCHEDULER_PID=%s\n' "$SCHED_PID" >>"$RUN/env"
  trap - EXIT
  log "ready after $((SECONDS - t0))s at $URL ($KUBE_VERSION; apiserver pid $API_PID, etcd pid $ETCD_PID${KCM_PID:+, controller-manager pid $KCM_PID}${SCHED_PID:+, scheduler pid $SCHED_PID}); env: $RUN/env"
}

stop_pid() {  # pid expected-comm
  local pid=$1
  [ -n "$pid" ] || return 0
  # only signal it if the PID still belongs to the process we started (PIDs get reused)
  # (comm is cut to 15 characters: kube-controller-manager is "kube-controller")
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${2:0:15}" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
  local RUN=${1:?usage: $0 stop <rundir>} ETCD_PID='' KUBE_APISERVER_PID='' KCM_PID='' SCHED_PID=''
  [ -f "$RUN/env" ] || { log "nothing to stop ($RUN/env missing)"; return 0; }
  SCHED_PID=$(sed -n 's/^KUBE_SCHEDULER_PID=//p' "$RUN/env")
  KCM_PID=$(sed -n 's/^KUBE_CONTROLLER_MANAGER_PID=//p' "$RUN/env")
  ETCD_PID=$(sed -n 's/^ETCD_PID=//p' "$RUN/env")
  KUBE_APISERVER_PID=$(sed -n 's/^KUBE_APISERVER_PID=//p' "$RUN/env")
  stop_pid "$SCHED_PID" kube-scheduler
  stop_pid "$KCM_PID" kube-controller-manager
  stop_pid "$KUBE_APISERVER_PID" kube-apiserver
  stop_pid "$ETCD_PID" etcd
  rm -f "$RUN/env"
  log "stopped (state left in $RUN)"
}

# kubectl of the server's own version, built with it: no version skew, and a kubectl the host
# already has is left alone.
cmd_kubectl() {
  [ -x "$KUBECTL_BIN" ] || die "no kubectl for $KUBE_VERSION: run '$0 build' first"
  echo "$KUBECTL_BIN"
}
cmd_kubelet() {
  [ -x "$KUBELET_BIN" ] || die "no kubelet for $KUBE_VERSION: run '$0 build' first"
  echo "$KUBELET_BIN"
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  kubectl) cmd_kubectl ;;
  kubelet) cmd_kubelet ;;
  start) cmd_start "${2:-}" ;;
  stop)  cmd_stop "${2:-}" ;;
  *) sed -n '2,/^set -euo/p' "$HERE/$(basename "$0")" | grep '^#' >&2; exit 64 ;;
esac
