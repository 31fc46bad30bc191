#!/usr/bin/env bash
# node.sh -- guest payload (hack/testbed/guest.sh run hack/testbed/node/node.sh KEY=VAL...): the
# node guest as a real Kubernetes node. containerd (CRI, runc, Debian's CNI plugins with a
# bridge + host-local network) and the kubelet, which registers the Node with the apiserver
# reached over the tap. Runs until the host creates $OUT/stop, then stops both and exits 0.
#
# KEY=VALs: NODE_NAME, NODE_IP (on $GUEST_NIC, /24), KUBELET (the binary), KUBELET_KUBECONFIG
# (token of system:node:<NODE_NAME>), IMAGES (hack/testbed/node/images.sh's directory),
# POD_CIDR (this node's pod range, e.g. 10.244.0.0/24); optional EXTRA_IMAGES (more OCI
# archives to import, space separated: hack/testbed/node/lab-images.sh's) and POD_IPS (pods that
# get a fixed address from CNI instead of one from POD_CIDR, as Kuryr gives a pod its Neutron
# port's: "namespace/name=ip/prefixlen ...").
# Writes to $OUT: containerd.log, kubelet.log, kubelet.started (the guest's uptime when the
# kubelet was started) and pods/ (the containers' logs: this bed has no `kubectl logs`); its own
# steps go to stdout (guest.sh keeps them in $OUT/.guest.log). The host runs a command on the node
# (no `kubectl exec` either) by writing $OUT/exec/<n>.sh (renamed into place): the node runs it
# once and writes <n>.out, then <n>.rc.
set -euo pipefail
: "${NODE_NAME:?}" "${NODE_IP:?}" "${KUBELET:?}" "${KUBELET_KUBECONFIG:?}" "${IMAGES:?}" "${POD_CIDR:?}" "${GUEST_NIC:?TAP=}"
up() { cut -d' ' -f1 /proc/uptime; }
log() { printf '[node %6ss] %s\n' "$(up)" "$*"; }
die() { log "ERROR: $*"; tail -20 "$OUT/containerd.log" "$OUT/kubelet.log" 2>/dev/null; exit 1; }
CPID='' KPID=''
stop() {
  set +e
  [ -z "$KPID" ] || { kill "$KPID"; wait "$KPID"; }
  [ -z "$CPID" ] || { kill "$CPID"; wait "$CPID"; }
}
trap stop EXIT

ip addr add "$NODE_IP/24" dev "$GUEST_NIC"
ip link set "$GUEST_NIC" up
# overlayfs: containerd's snapshotter; veth: the CNI ptp plugin; bridge: the agent's VRF bridges.
# The host reaches the pods through this node: it forwards between the tap and the pods' veths
for m in overlay bridge veth; do modprobe "$m"; done
sysctl -qw net.ipv4.ip_forward=1
# the root is read-only: the runtime's state lives in tmpfs (mount points made by guest-root.sh)
for d in /var/lib/containerd /var/lib/kubelet /var/lib/cni /var/lib/bgpvpn-agent /var/lib/bgpvpn-frr; do
  mount -t tmpfs -o mode=755 tmpfs "$d"
done
S=/run/node
mkdir -p "$S/cni/net.d" /var/log/pods /var/log/containers "$OUT/pods" "$OUT/exec"
mount --bind "$OUT/pods" /var/log/pods
# UML's /proc/cpuinfo has no "cpu MHz" line and no cpufreq in sysfs, and the kubelet's cAdvisor
# refuses to start without a clock speed: give it one that says "unknown" (QEMU's has it already)
if ! grep -q '^cpu MHz' /proc/cpuinfo; then
  sed 's/^\(model name.*\)$/\1\ncpu MHz\t\t: 0.000/' /proc/cpuinfo >"$S/cpuinfo"
  mount --bind "$S/cpuinfo" /proc/cpuinfo
fi

# ptp: a veth per pod and a host route to it, as routed CNIs (Calico, Kuryr's) do: the agent finds
# a pod's interface by that route. IPAM is host-local, through testbed-ipam for POD_IPS.
mkdir -p "$S/cni/bin"
ln -s /usr/lib/cni/* "$S/cni/bin/"
cp "$(dirname "$0")/testbed-ipam" "$S/cni/bin/testbed-ipam"
PINNED=$(python3 -c 'import json,sys; print(json.dumps(dict(p.split("=", 1) for p in sys.argv[1:])))' ${POD_IPS:-})
cat >"$S/cni/net.d/10-testbed.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "testbed", "plugins": [
  {"type": "ptp", "ipMasq": false, "mtu": 1450,
   "ipam": {"type": "testbed-ipam", "pinned": $PINNED,
            "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
cat >"$S/containerd.toml" <<EOF
version = 2
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/testbed-pause:1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$S/cni/bin"
    conf_dir = "$S/cni/net.d"
EOF
log "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
containerd --config "$S/containerd.toml" >"$OUT/containerd.log" 2>&1 &
CPID=$!
SOCK=/run/containerd/containerd.sock
until ctr -a "$SOCK" version >/dev/null 2>&1; do
  kill -0 "$CPID" 2>/dev/null || die "containerd exited"
  sleep 0.1
done
log "containerd ready"
for i in "$IMAGES/pause.tar" "$IMAGES/web.tar" ${EXTRA_IMAGES:-}; do
  ctr -a "$SOCK" -n k8s.io images import "$i" >/dev/null || die "ctr images import $i"
done
log "images imported: $(ctr -a "$SOCK" -n k8s.io images ls -q | tr '\n' ' ')"

: >"$S/resolv.conf"
cat >"$S/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
# nobody calls the kubelet's API in this bed (no logs/exec through the apiserver)
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failSwapOn: false
resolvConf: $S/resolv.conf
# the guest's file systems are small tmpfs and hostfs: no eviction or image GC on their figures
localStorageCapacityIsolation: false
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# the default, /usr/libexec/kubernetes/..., is on the read-only root
volumePluginDir: /var/lib/kubelet/volume-plugins
EOF
log "kubelet $("$KUBELET" --version | awk '{print $2}') as node $NODE_NAME ($NODE_IP)"
"$KUBELET" --config="$S/kubelet.yaml" --kubeconfig="$KUBELET_KUBECONFIG" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1 >"$OUT/kubelet.log" 2>&1 &
KPID=$!
up >"$OUT/kubelet.started"
# the host decides when the node goes away
# readdir, not a lookup: a hostfs lookup may answer from a cached negative dentry
until ls "$OUT" | grep -x stop >/dev/null; do
  for req in $(ls "$OUT/exec" | grep '^[0-9]*\.sh$'); do
    n=${req%.sh}
    ls "$OUT/exec" | grep -qx "$n.rc" && continue
    rc=0; bash "$OUT/exec/$req" >"$OUT/exec/$n.out" 2>&1 || rc=$?
    echo "$rc" >"$OUT/exec/$n.rc.tmp"; mv "$OUT/exec/$n.rc.tmp" "$OUT/exec/$n.rc"
  done
  kill -0 "$KPID" 2>/dev/null || die "kubelet exited"
  kill -0 "$CPID" 2>/dev/null || die "containerd exited"
  sleep 0.2
done
log "stop requested"
