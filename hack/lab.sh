#!/usr/bin/env bash
# hack/lab.sh -- the seed demo, end to end on real parts. Run as root on Debian 12 or later:
#
#     hack/lab.sh              # a real Kubernetes node; kubectl apply/delete of examples/seed/
#     hack/lab.sh --openstack  # the BGPVPN and the router association come from Neutron
#     hack/lab.sh --process    # lighter: the agent as a plain process, the lab plays the kubelet
#
# It installs what it needs (hack/test.sh's installers), builds the operator and the agent, and
# brings up:
#   host netns bgpvpn-lab-<rand>: tap 10.99.0.1/24, etcd + kube-apiserver (v1.37.2) with the
#       controller-manager and the scheduler (and, with --openstack, neutron-server +
#       networking-bgpvpn)
#   the node guest (hack/testbed/guest.sh: user-mode-linux 7.x or QEMU, a trixie root with
#       FRR 10) on that tap, 10.99.0.2: the Kubernetes node lab-node-a (containerd, CNI, the
#       kubelet: hack/lab/node-guest.sh) and the remote cloud (its own FRR in another AS, vm1 and
#       vm2 both at 20.0.0.100, on VNI 1001 and VNI 1003)
#   the chart (charts/bgpvpn-operator), installed with Helm, with images built here from the same
#       binaries (hack/testbed/node/lab-images.sh): the operator Deployment, the agent DaemonSet
#       and the router DaemonSet (FRR 10) run as pods on the node, as does the demo pod web,
#       which CNI gives 10.0.0.84
# and plays the story, printing each step and what it observed. Every observation is asserted:
# the script exits non-zero as soon as one does not hold (e2e/tests/lab.rs runs it that way).
# With --process (and, for now, with --openstack) the operator runs in the host netns and the
# agent as a process in the guest, and the lab writes the Node and the Pod itself
# (hack/lab/guest.sh). Everything it started is stopped on exit, Ctrl-C included. Every download
# happens in the first step, from the host's own network, before the lab's namespace exists.
#
# Env: LAB_KEEP=1 keeps the run directory (logs); LAB_HOLD=1 keeps a failed lab up until its
#      run directory's `hold` file is removed; STEP_TIMEOUT (s, default 90);
#      GUEST_KERNEL=qemu boots the node guest on QEMU instead of user-mode-linux;
#      OPERATOR_BIN / AGENT_BIN: use these binaries instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=kubernetes NODE_KIND=kubelet
for a in "$@"; do
  case $a in
    --openstack) MODE=openstack NODE_KIND=process ;;   # the chart's OpenStack sync wants Keystone; the lab's Neutron is noauth
    --process) NODE_KIND=process ;;
    *) echo "usage: $0 [--openstack] [--process]" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "hack/lab.sh needs root (network namespaces, tap device, the node guest)" >&2; exit 1; }

T0=$SECONDS
log()  { printf '[lab %4ss] %s\n' $((SECONDS - T0)) "$*"; }
step() { printf '\n[lab %4ss] ==== %s\n' $((SECONDS - T0)) "$*"; STEP_T0=$SECONDS; }
ok()   { printf '[lab %4ss]   OK  %s (%ss)\n' $((SECONDS - T0)) "$*" $((SECONDS - STEP_T0)); }
fail() {
  printf '[lab %4ss]   FAILED  %s\n' $((SECONDS - T0)) "$*"
  diagnose
  if [ -n "${LAB_HOLD:-}" ]; then   # a developer's look at the failed lab before it goes
    : >"$RUN/hold"; log "LAB_HOLD: the lab stays up until $RUN/hold is removed"
    while [ -e "$RUN/hold" ]; do sleep 1; done
  fi
  exit 1
}

SFX=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
NS=bgpvpn-lab-$SFX TAPIF=labtap0 HOST_IP=10.99.0.1 GUEST_IP=10.99.0.2 CHECK_PORT=9000
NODE=lab-node-a POD_CIDR=10.244.0.0/24 RELEASE=bgpvpn-operator RELEASE_NS=bgpvpn-system
RUN=$(mktemp -d /tmp/bgpvpn-lab.XXXXXX)   # not under /run or /var/tmp: the guest mounts its own there
chmod 755 "$RUN"
log "run directory $RUN"
OPERATOR_PID='' GUEST_PID='' NEUTRON_DIR=''

cleanup() {
  set +e
  if [ -n "$GUEST_PID" ] && kill -0 "$GUEST_PID" 2>/dev/null; then
    : >"$RUN/guest-out/stop"   # the kubelet node's way out (node.sh)
    guest_ask shutdown >/dev/null 2>&1
  fi
  for _ in $(seq 150); do [ -n "$GUEST_PID" ] && kill -0 "$GUEST_PID" 2>/dev/null || break; sleep 0.2; done
  [ -n "$GUEST_PID" ] && kill "$GUEST_PID" 2>/dev/null
  if [ -n "$OPERATOR_PID" ] && kill "$OPERATOR_PID" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$OPERATOR_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  [ -n "$NEUTRON_DIR" ] && hack/neutron/neutron-bgpvpn.sh stop "$NEUTRON_DIR" >/dev/null 2>&1
  hack/testbed/kube-apiserver.sh stop "$RUN/kube" >/dev/null 2>&1
  ip netns del "$NS" 2>/dev/null
  if [ -n "${LAB_KEEP:-}" ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inns() { ip netns exec "$NS" "$@"; }
k() { inns "$KUBECTL" --kubeconfig "$RUN/kube/kubeconfig" "$@"; }
# one question to the guest's check server; prints the command's output, fails if it failed
guest_ask() {
  local body
  body=$(inns curl -s --max-time 25 "http://$GUEST_IP:$CHECK_PORT/$1" 2>/dev/null) || return 1
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["out"]); sys.exit(0 if d["rc"] == 0 else 1)' "$body"
}
check() { guest_ask "check/$1"; }
# wait until `check NAME` succeeds (want=ok) or fails (want=fail) and its output matches REGEX
# (with a 5th argument `!`: does NOT match it)
await() {  # description want name regex [!]
  local what=$1 want=$2 name=$3 re=$4 negate=${5:-} out rc matched deadline=$((SECONDS + ${STEP_TIMEOUT:-90}))
  while :; do
    if out=$(check "$name"); then rc=ok; else rc=fail; fi
    if [[ $out =~ $re ]]; then matched=yes; else matched=no; fi
    [ "$negate" = '!' ] && { [ $matched = yes ] && matched=no || matched=yes; }
    if [ "$rc" = "$want" ] && [ $matched = yes ]; then ok "$what: ${out//$'\n'/ | }"; return 0; fi
    [ $SECONDS -lt $deadline ] || fail "$what (last: $rc, '${out//$'\n'/ | }')"
    sleep 0.5
  done
}
diagnose() {
  set +e
  log "--- diagnostics"
  k get bgpvpn,vnibinding -A 2>&1; k get evpnnodestate -o yaml 2>&1 | tail -40
  for c in agent-log frr-log remote-evpn remote-vrf-1001 remote-vrf-1003 node-links node-rules; do echo "# $c"; check "$c"; done
  if [ "$NODE_KIND" = kubelet ]; then
    for c in remote-bgp node-bgp node-frr-config; do echo "# $c"; check "$c"; done
    k get pods -A -o wide 2>&1
    echo "# operator log"; tail -n 30 "$RUN"/guest-out/pods/"$RELEASE_NS"_*-operator-*/operator/*.log
    echo "# node guest"; tail -n 20 "$RUN/guest-out/.guest.log"
  else
    echo "# operator log"; tail -n 30 "$RUN/operator.log"
  fi
}

# ------------------------------------------------------------------ install and build
step "install the real parts and build (every download happens here, from the host's network)"
hack/dataplane/install-deps.sh >/dev/null
hack/testbed/guest.sh prepare >/dev/null
if [ "$NODE_KIND" = kubelet ]; then
  hack/testbed/kube-apiserver.sh build >/dev/null   # with the kubelet and the scheduler
  KUBELET=$(hack/testbed/kube-apiserver.sh kubelet)
  HELM=$(hack/testbed/get-helm.sh)
  NODE_IMAGES=$(hack/testbed/node/images.sh)
  ROOT_KIND=frr-image hack/testbed/guest-root.sh >/dev/null   # the Debian root of the lab's images
else
  hack/testbed/kube-apiserver.sh build kube-apiserver kubectl >/dev/null   # what the lab starts (no kubelet)
fi
KUBECTL=$(hack/testbed/kube-apiserver.sh kubectl)
[ "$MODE" = kubernetes ] || hack/neutron/install.sh >/dev/null
hack/testbed/versions.sh
if [ -z "${OPERATOR_BIN:-}" ] || [ -z "${AGENT_BIN:-}" ]; then   # the e2e test passes the ones it was built with
  cargo build --locked -q -p bgpvpn-operator -p bgpvpn-agent
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  OPERATOR_BIN=$TARGET/debug/bgpvpn-operator AGENT_BIN=$TARGET/debug/bgpvpn-agent
fi
if [ "$NODE_KIND" = kubelet ]; then
  LAB_IMAGES=$(hack/testbed/node/lab-images.sh "$AGENT_BIN" "$OPERATOR_BIN")
  sed 1d <<<"$LAB_IMAGES" | while read -r ref layers bytes; do log "image $ref: $layers layers, $((bytes / 1000000)) MB"; done
  ok "kube-apiserver, kubelet, helm, the node guest (FRR 10), binaries and their images"
else
  ok "kube-apiserver, the node guest (FRR 10), binaries"
fi

# ------------------------------------------------------------------ host side: apiserver + operator
# the lab's network namespace and the tap the node guest attaches to
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" tuntap add dev "$TAPIF" mode tap
ip -n "$NS" addr add "$HOST_IP/24" dev "$TAPIF"
ip -n "$NS" link set "$TAPIF" up
if [ "$NODE_KIND" = kubelet ]; then
  . hack/lab/kubelet-node.sh   # the story's first steps with a real node: it sets up to the pod
else
step "start kube-apiserver in network namespace $NS"
inns env KUBE_BIND_ADDRESS=$HOST_IP hack/testbed/kube-apiserver.sh start "$RUN/kube" 2>&1 | tail -1
k apply -f crds/ >/dev/null
k wait --for condition=established --timeout=60s crd/bgpvpns.bgpvpn.io crd/vnibindings.bgpvpn.io crd/evpnnodestates.bgpvpn.io >/dev/null
ok "apiserver at https://$HOST_IP, CRDs established"

step "register node $NODE and pod demo/web (the lab plays the kubelet: no kubelet runs here)"
k apply -f examples/seed/00-namespace.yaml >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  labels: {kubernetes.io/hostname: $NODE}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  nodeName: $NODE
  containers: [{name: web, image: registry.invalid/http-server:8080, ports: [{containerPort: 8080}]}]
EOF
# status is the kubelet's: set it through the status subresource, as the kubelet does
set -a; . "$RUN/kube/env"; set +a
api_status() {  # path json
  inns curl -sf --cacert "$KUBE_CA_FILE" -H "Authorization: Bearer $KUBE_TOKEN" -H 'Content-Type: application/merge-patch+json' \
    -X PATCH --data "$2" "$KUBE_APISERVER_URL$1/status" >/dev/null
}
api_status /api/v1/nodes/$NODE '{"status":{"addresses":[{"type":"InternalIP","address":"172.30.0.1"},{"type":"Hostname","address":"'$NODE'"}],"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"lab","lastHeartbeatTime":null,"lastTransitionTime":null}]}}'
api_status /api/v1/namespaces/demo/pods/web '{"status":{"phase":"Running","podIP":"10.0.0.84","podIPs":[{"ip":"10.0.0.84"}],"hostIP":"172.30.0.1","conditions":[{"type":"Ready","status":"True"}]}}'
ok "$(k get pod -n demo web -o jsonpath='{.metadata.name} {.status.phase} {.status.podIP} on {.spec.nodeName}')"

cat >"$RUN/operator.yaml" <<EOF
underlay:
  asn: 65001
  neighbors:
    - {address: 172.30.0.2, remoteAsn: 64999}
EOF

if [ "$MODE" = openstack ]; then
  step "start neutron-server + networking-bgpvpn; create the pod's Neutron network, router and port"
  NEUTRON_DIR=$RUN/neutron
  ip netns exec "$NS" hack/neutron/neutron-bgpvpn.sh setup "$NEUTRON_DIR" 2>/dev/null
  ip netns exec "$NS" hack/neutron/neutron-bgpvpn.sh start "$NEUTRON_DIR" 2>/dev/null
  NEUTRON=$(cat "$NEUTRON_DIR/endpoint")
  PROJECT=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  # noauth Neutron: the request context comes from these headers, as Keystone middleware would set
  neutron() {  # METHOD PATH [JSON] -> body; fails unless 2xx
    local out code
    out=$(inns curl -s -w '\n%{http_code}' -X "$1" -H 'Content-Type: application/json' -H "X-Project-Id: $PROJECT" \
      -H 'X-User-Id: lab' -H 'X-Roles: admin' ${3:+--data "$3"} "$NEUTRON$2")
    code=${out##*$'\n'}; out=${out%$'\n'*}
    [[ $code == 2* ]] || { echo "neutron $1 $2: HTTP $code $out" >&2; return 1; }
    printf '%s' "$out"
  }
  jfield() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
  NET=$(neutron POST /v2.0/networks '{"network": {"project_id": "'$PROJECT'", "name": "demo-pods"}}' | jfield 'd["network"]["id"]')
  SUBNET=$(neutron POST /v2.0/subnets '{"subnet": {"project_id": "'$PROJECT'", "network_id": "'$NET'", "ip_version": 4, "cidr": "10.0.0.0/24", "name": "demo-pods"}}' | jfield 'd["subnet"]["id"]')
  ROUTER=$(neutron POST /v2.0/routers '{"router": {"project_id": "'$PROJECT'", "name": "demo-router"}}' | jfield 'd["router"]["id"]')
  neutron PUT "/v2.0/routers/$ROUTER/add_router_interface" '{"subnet_id": "'$SUBNET'"}' >/dev/null
  PORT_JSON=$(neutron POST /v2.0/ports '{"port": {"project_id": "'$PROJECT'", "network_id": "'$NET'", "name": "demo/web", "device_owner": "compute:kuryr", "fixed_ips": [{"subnet_id": "'$SUBNET'", "ip_address": "10.0.0.84"}]}}')
  PORT=$(jfield 'd["port"]["id"]' <<<"$PORT_JSON") PORT_MAC=$(jfield 'd["port"]["mac_address"]' <<<"$PORT_JSON")
  ok "neutron at $NEUTRON: network $NET, subnet 10.0.0.0/24, router $ROUTER, port $PORT (10.0.0.84)"

  step "Kuryr's objects for namespace demo and pod web (the lab plays Kuryr: no Kuryr controller runs here)"
  k apply -f operator/tests/fixtures/kuryr-crds.yaml >/dev/null
  k wait --for condition=established --timeout=60s crd/kuryrnetworks.openstack.org crd/kuryrports.openstack.org >/dev/null
  POD_UID=$(k get pod -n demo web -o jsonpath='{.metadata.uid}')
  k apply -f - >/dev/null <<EOF
apiVersion: openstack.org/v1
kind: KuryrNetwork
metadata: {name: demo, namespace: demo}
spec: {nsName: demo, projectId: "$PROJECT", nsLabels: {bgpvpn.io/tenant: demo}}
status: {netId: "$NET", subnetId: "$SUBNET", subnetCIDR: 10.0.0.0/24, routerId: "$ROUTER", populated: true}
---
apiVersion: openstack.org/v1
kind: KuryrPort
metadata:
  name: web
  namespace: demo
  labels: {kuryr.openstack.org/nodeName: $NODE}
spec: {podUid: "$POD_UID", podNodeName: $NODE, podStatic: false}
status:
  vifs:
    eth0:
      default: true
      vif:
        versioned_object.name: VIFVlanNested
        versioned_object.namespace: os_vif
        versioned_object.version: "1.0"
        versioned_object.data:
          id: "$PORT"
          address: "$PORT_MAC"
          vif_name: lxc-web
          active: true
          network:
            versioned_object.name: Network
            versioned_object.data:
              id: "$NET"
              subnets:
                versioned_object.name: SubnetList
                versioned_object.data:
                  objects:
                    - versioned_object.name: Subnet
                      versioned_object.data:
                        cidr: 10.0.0.0/24
                        ips:
                          versioned_object.name: FixedIPList
                          versioned_object.data:
                            objects:
                              - versioned_object.name: FixedIP
                                versioned_object.data: {address: 10.0.0.84}
EOF
  ok "KuryrNetwork demo (router $ROUTER) and KuryrPort web (port $PORT, 10.0.0.84)"
  # the cluster admin maps the namespace to its OpenStack project: the sync binds no other
  k label namespace demo "bgpvpn.io/openstack-project-id=$PROJECT" --overwrite >/dev/null
  ok "namespace demo mapped to project $PROJECT (label bgpvpn.io/openstack-project-id)"
  cat >>"$RUN/operator.yaml" <<EOF
openstack:
  neutronUrl: $NEUTRON
  pollIntervalSeconds: 2
EOF
fi

step "start the operator"
# started with ip netns exec directly (which execs), not through a shell function: $! must be
# the operator itself so that cleanup's kill reaches it
ip netns exec "$NS" env RUST_LOG=info KUBECONFIG="$RUN/kube/kubeconfig" POD_NAMESPACE=default POD_NAME=lab-operator \
  "$OPERATOR_BIN" run --config "$RUN/operator.yaml" --metrics-addr "$HOST_IP:9090" >"$RUN/operator.log" 2>&1 &
OPERATOR_PID=$!
deadline=$((SECONDS + 60))
until k get evpnnodestate "$NODE" >/dev/null 2>&1; do
  kill -0 "$OPERATOR_PID" 2>/dev/null || { tail -20 "$RUN/operator.log"; fail "operator exited"; }
  [ $SECONDS -lt $deadline ] || fail "no EVPNNodeState for $NODE after 60 s"
  sleep 0.5
done
ok "operator pid $OPERATOR_PID wrote EVPNNodeState/$NODE"

# ------------------------------------------------------------------ guest: node + remote cloud
step "boot the node guest: node $NODE (agent + FRR + pod) and the remote cloud"
AGENT_CMD="RUST_LOG=info KUBECONFIG=$RUN/kube/kubeconfig $AGENT_BIN run --node-name $NODE --metrics-addr $GUEST_IP:9469"
AGENT_CMD+=' --state-dir "$FRR_A_DIR/agent-state" --frr-pathspace "$FRR_A" --frr-confdir "$FRR_WORK"'
AGENT_CMD+=' --frr-rundir "$FRR_A_DIR/run" --frr-statedir "/run/frr/$FRR_A" --frr-preamble "$FRR_A_DIR/preamble.conf"'
mkdir -p "$RUN/guest-out"
ip netns exec "$NS" env TAP=$TAPIF GUEST_OUT="$RUN/guest-out" GUEST_TIMEOUT=3600 GUEST_BIND="$RUN $AGENT_BIN" \
  hack/testbed/guest.sh run hack/lab/guest.sh \
  GUEST_IP=$GUEST_IP HOST_IP=$HOST_IP CHECK_PORT=$CHECK_PORT NODE_NAME=$NODE AGENT_CMD="$AGENT_CMD" \
  >"$RUN/guest.log" 2>&1 &
GUEST_PID=$!
deadline=$((SECONDS + 120))
until check ready >/dev/null 2>&1; do
  kill -0 "$GUEST_PID" 2>/dev/null || { tail -30 "$RUN/guest.log"; fail "the guest exited"; }
  [ $SECONDS -lt $deadline ] || { tail -30 "$RUN/guest.log"; fail "guest not ready after 120 s"; }
  sleep 0.5
done
ok "guest up: node $NODE, remote cloud, check server on $GUEST_IP:$CHECK_PORT"
fi
LAB_START=$((SECONDS - T0))

# ------------------------------------------------------------------ the story
step "0. nothing bound yet: the pod cannot reach 20.0.0.100"
await "pod -> 20.0.0.100:8080" fail pod-to-vpn '.*'
await "pod -> node (its ordinary traffic)" ok pod-to-node '1 received'

if [ "$MODE" = kubernetes ]; then
  step "1. admin: BGPVPN vni 1001; tenant: bind the pod to it"
  k apply -f examples/seed/10-bgpvpn-vni-1001.yaml -f examples/seed/20-binding-vni-1001.yaml
else
  step "1. OpenStack admin: BGPVPN vni 1001; tenant: associate the pod network's router (all in Neutron)"
  VPN1=$(neutron POST /v2.0/bgpvpn/bgpvpns '{"bgpvpn": {"project_id": "'$PROJECT'", "name": "vpn-1001", "type": "l3", "vni": 1001, "route_targets": ["65000:1001"]}}' | jfield 'd["bgpvpn"]["id"]')
  ASSOC1=$(neutron POST "/v2.0/bgpvpn/bgpvpns/$VPN1/router_associations" '{"router_association": {"project_id": "'$PROJECT'", "router_id": "'$ROUTER'"}}' | jfield 'd["router_association"]["id"]')
  log "neutron: bgpvpn $VPN1, router association $ASSOC1"
fi
await "remote cloud learned 10.0.0.84 in vrf-1001" ok remote-vrf-1001 '10\.0\.0\.84'
await "pod -> 20.0.0.100:8080 answers" ok pod-to-vpn 'hello from vm1'
await "vm1 -> pod 10.0.0.84:8080 answers" ok vm1-to-pod 'hello from pod web'
await "pod -> node still works" ok pod-to-node '1 received'
k get bgpvpn,vnibinding -A

if [ "$MODE" = kubernetes ]; then
  step "2. tenant: remove the binding"
  k delete -f examples/seed/20-binding-vni-1001.yaml
else
  step "2. tenant: remove the router association in Neutron"
  neutron DELETE "/v2.0/bgpvpn/bgpvpns/$VPN1/router_associations/$ASSOC1" >/dev/null
fi
await "remote cloud withdrew 10.0.0.84 from vrf-1001" ok remote-vrf-1001 '10\.0\.0\.84' !
await "pod -> 20.0.0.100:8080 no longer answers" fail pod-to-vpn '.*'
await "vm1 -> pod no longer answers" fail vm1-to-pod '.*'

if [ "$MODE" = kubernetes ]; then
  step "3. admin: BGPVPN vni 1003; tenant: bind the pod to it"
  k apply -f examples/seed/30-bgpvpn-vni-1003.yaml -f examples/seed/40-binding-vni-1003.yaml
else
  step "3. OpenStack admin: BGPVPN vni 1003; tenant: associate the router with it (in Neutron)"
  VPN3=$(neutron POST /v2.0/bgpvpn/bgpvpns '{"bgpvpn": {"project_id": "'$PROJECT'", "name": "vpn-1003", "type": "l3", "vni": 1003, "route_targets": ["65000:1003"]}}' | jfield 'd["bgpvpn"]["id"]')
  neutron POST "/v2.0/bgpvpn/bgpvpns/$VPN3/router_associations" '{"router_association": {"project_id": "'$PROJECT'", "router_id": "'$ROUTER'"}}' >/dev/null
  log "neutron: bgpvpn $VPN3, router associated"
fi
await "remote cloud learned 10.0.0.84 in vrf-1003" ok remote-vrf-1003 '10\.0\.0\.84'
await "pod -> 20.0.0.100:8080: now the OTHER vm answers" ok pod-to-vpn 'hello from vm2'
await "vm2 -> pod 10.0.0.84:8080 answers" ok vm2-to-pod 'hello from pod web'
await "vm1 -> pod does not" fail vm1-to-pod '.*'
k get bgpvpn,vnibinding,evpnnodestate -A

if [ "$NODE_KIND" = kubelet ]; then
  step "4. node operator: the agent pod is deleted during a flow (vm2 -> pod, one ping every 10 ms)"
  agent_pod() { k get pods -n "$RELEASE_NS" -l app.kubernetes.io/component=agent -o jsonpath='{.items[*].metadata.name}'; }
  OLD_AGENT=$(agent_pod)
  check flow-start >/dev/null || fail "could not start the flow"
  k delete pod -n "$RELEASE_NS" "$OLD_AGENT" --wait=true >/dev/null
  deadline=$((SECONDS + 300))
  until NEW_AGENT=$(agent_pod) && [ -n "$NEW_AGENT" ] && [ "$NEW_AGENT" != "$OLD_AGENT" ] && [[ $NEW_AGENT != *' '* ]]; do
    [ $SECONDS -lt $deadline ] || fail "no agent pod replaced $OLD_AGENT"
    sleep 0.5
  done
  await_k --for=condition=Ready "pod/$NEW_AGENT" -n "$RELEASE_NS" --timeout=300s
  # the new agent has taken the node over once its first pass is done
  deadline=$((SECONDS + 120))
  until FIRST=$(grep -h -m1 'pass done' "$RUN"/guest-out/pods/"$RELEASE_NS"_"$NEW_AGENT"_*/agent/0.log 2>/dev/null); do
    [ $SECONDS -lt $deadline ] || fail "no pass of $NEW_AGENT in its log"
    sleep 0.5
  done
  FLOW=$(check flow-stop) || fail "could not stop the flow: $FLOW"
  [[ $FLOW =~ ([0-9]+)\ packets\ transmitted,\ ([0-9]+)\ received ]] || fail "no ping summary: $FLOW"
  SENT=${BASH_REMATCH[1]} GOT=${BASH_REMATCH[2]}
  [ "$SENT" -gt 0 ] || fail "the flow sent nothing: $FLOW"
  WRITES=$(sed -n 's/.*kernel_writes=\([0-9]*\).*/\1/p' <<<"$FIRST")
  [ "$WRITES" = 0 ] || fail "the new agent's first pass wrote $WRITES kernel objects: $FIRST"
  # FRR runs in the router pod: its sessions and routes never noticed the agent going
  [ "$GOT" = "$SENT" ] || fail "$((SENT - GOT)) of $SENT pings lost while the agent pod was replaced: $FLOW"
  ok "agent pod $OLD_AGENT replaced by $NEW_AGENT: all $SENT pings answered, its first pass wrote 0 kernel objects"
  await "vm2 -> pod 10.0.0.84:8080 still answers" ok vm2-to-pod 'hello from pod web'
fi

printf '\n[lab %4ss] the seed story held on real parts (lab up in %ss)\n' $((SECONDS - T0)) "$LAB_START"
