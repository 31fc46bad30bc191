#!/usr/bin/env bash
# hack/lab.sh -- the seed demo in a local lab. PLACEHOLDER until the lab issue lands: it only
# prints the plan. The dataplane half of the story already runs as a test:
#     cargo test -p bgpvpn-agent --test dataplane_uml -- --nocapture     (as root)
set -euo pipefail
cat <<'PLAN'
bgpvpn-operator lab (not built yet). It will:
  1. start kube-apiserver v1.20.2 in a network namespace of its own, and the operator;
  2. boot a user-mode-linux guest with a Kubernetes node (agent + FRR, pod 10.0.0.84:8080) and a
     remote cloud (FRR, VM1 20.0.0.100 on VNI 1001, VM2 20.0.0.100 on VNI 1003);
  3. play the story with kubectl apply/delete of examples/seed/ and print each observed result.
PLAN
exit 1
