# hack/lab/kubelet-node.sh -- sourced by hack/lab.sh (its variables and helpers): the lab up to
# the story with a real Kubernetes node. The apiserver with the controller-manager and the
# scheduler in the lab's netns, the node guest registered by its own kubelet, the chart
# installed with Helm, and the demo pod web scheduled there with 10.0.0.84 from CNI.

step "start kube-apiserver, the controller-manager and the scheduler in network namespace $NS"
# the pods (the operator) reach the apiserver here; their answers go back through the node
ip -n "$NS" route add "$POD_CIDR" via "$GUEST_IP"
# every controller: a real kubelet registers its Node tainted not-ready, and only the
# node-lifecycle controller lifts that
inns env KUBE_BIND_ADDRESS=$HOST_IP KUBE_NODES=$NODE KUBE_CONTROLLER_MANAGER=1 KUBE_SCHEDULER=1 KUBE_CONTROLLERS='*' \
  hack/testbed/kube-apiserver.sh start "$RUN/kube" 2>&1 | tail -1
set -a; . "$RUN/kube/env"; set +a
ok "apiserver at $KUBE_APISERVER_URL"

step "boot the node guest: Kubernetes node $NODE (containerd, CNI, kubelet) and the remote cloud"
mkdir -p "$RUN/guest-out"
ip netns exec "$NS" env TAP=$TAPIF GUEST_OUT="$RUN/guest-out" GUEST_TIMEOUT=3600 GUEST_MEM=2G \
  hack/testbed/guest.sh run hack/lab/node-guest.sh \
  NODE_NAME=$NODE NODE_IP=$GUEST_IP POD_CIDR=$POD_CIDR CHECK_PORT=$CHECK_PORT \
  KUBELET="$KUBELET" KUBELET_KUBECONFIG="$RUN/kube/kubelet-$NODE.kubeconfig" \
  IMAGES="$NODE_IMAGES" EXTRA_IMAGES="$(head -1 <<<"$LAB_IMAGES")" POD_IPS=demo/web=10.0.0.84/24 \
  >"$RUN/guest.log" 2>&1 &
GUEST_PID=$!
# kubectl wait watches; the guest's death ends the wait at once
await_k() {  # kubectl wait arguments...
  local pid
  k wait "$@" >/dev/null 2>"$RUN/wait.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    kill -0 "$GUEST_PID" 2>/dev/null || { kill "$pid"; tail -30 "$RUN/guest.log"; fail "the node guest exited"; }
    sleep 0.2
  done
  wait "$pid" || fail "kubectl wait $*: $(cat "$RUN/wait.err")"
}
await_k --for=create "node/$NODE" --timeout=600s
await_k --for=condition=Ready "node/$NODE" --timeout=600s
ok "$(k get node "$NODE" -o jsonpath='node {.metadata.name} Ready: kubelet {.status.nodeInfo.kubeletVersion}, {.status.nodeInfo.containerRuntimeVersion}')"
deadline=$((SECONDS + 120))
until check ready >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { tail -30 "$RUN/guest.log"; fail "the guest's check server is not up after 120 s"; }
  sleep 0.5
done
ok "remote cloud up, check server on $GUEST_IP:$CHECK_PORT"

step "admin: the node's underlay address, then helm install the chart"
# the kubelet registered the tap's address; the EVPN underlay is eth-u's
k annotate node "$NODE" --overwrite bgpvpn.io/vtep-ip=172.30.0.1 bgpvpn.io/router-id=172.30.0.1 >/dev/null
VALUES="operator.image.repository=localhost/bgpvpn-operator,operator.image.tag=lab,operator.image.pullPolicy=Never"
VALUES+=",operator.replicas=1,operator.logFormat=text,agent.logFormat=text"
VALUES+=",agent.image.repository=localhost/bgpvpn-agent,agent.image.tag=lab,agent.image.pullPolicy=Never"
VALUES+=",frr.image.repository=localhost/bgpvpn-frr,frr.image.tag=lab,frr.image.pullPolicy=Never"
VALUES+=",apiServer.host=$HOST_IP,apiServer.port=${KUBE_APISERVER_URL##*:}"
VALUES+=",underlay.asn=65001,underlay.neighbors[0].address=172.30.0.2,underlay.neighbors[0].remoteAsn=64999"
inns "$HELM" install "$RELEASE" charts/bgpvpn-operator --namespace "$RELEASE_NS" --create-namespace \
  --kubeconfig "$RUN/kube/kubeconfig" --set "$VALUES" >/dev/null
await_k --for=condition=Available "deployment/$RELEASE-operator" -n "$RELEASE_NS" --timeout=600s
await_k --for=jsonpath='{.status.numberReady}'=1 "daemonset/$RELEASE-agent" -n "$RELEASE_NS" --timeout=600s
await_k --for=jsonpath='{.status.numberReady}'=1 "daemonset/$RELEASE-router" -n "$RELEASE_NS" --timeout=600s
await_k --for=create "evpnnodestate/$NODE" --timeout=300s
await_k --for=condition=Ready "evpnnodestate/$NODE" --timeout=300s
await_k --for=jsonpath='{.status.frrVersion}' "evpnnodestate/$NODE" --timeout=120s
# the underlay session with the remote cloud's router, as the status reports it
await_k --for=jsonpath='{.status.sessionsEstablished}'=1/1 "evpnnodestate/$NODE" --timeout=120s
ok "operator, agent and router running; the router pod's FRR: $(k get evpnnodestate "$NODE" -o jsonpath='{.status.frrVersion}')"

step "tenant: namespace demo and its pod web (HTTP on 8080)"
k apply -f examples/seed/00-namespace.yaml >/dev/null
# the ServiceAccount admission wants the namespace's account, which the controller-manager makes
await_k --for=create serviceaccount/default -n demo --timeout=120s
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  automountServiceAccountToken: false
  containers:
    - name: web
      image: localhost/testbed-web:1
      imagePullPolicy: Never
      command: [/bin/sh, -c, "trap 'exit 0' TERM INT; echo 'hello from pod web (10.0.0.84, Kubernetes node $NODE)' >/www/index.html && httpd -f -p 8080 -h /www & wait \$!"]
      ports: [{containerPort: 8080}]
      readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
EOF
await_k --for=condition=Ready pod/web -n demo --timeout=300s
POD_IP=$(k get pod web -n demo -o jsonpath='{.status.podIP}')
[ "$POD_IP" = 10.0.0.84 ] || fail "pod web got $POD_IP from CNI, not 10.0.0.84"
ok "$(k get pod -n demo web -o jsonpath='{.metadata.name} {.status.phase} {.status.podIP} on {.spec.nodeName}')"
k get pods -A -o wide
