#!/usr/bin/env bash
# bench/run.sh <convergence|scale|incremental|memory|operator|all> [KEY=VAL ...] -- the benchmarks of
# issue 7, as commands (never tests). Run as root on the host, from anywhere:
#
#   bench/run.sh convergence            # 20 bind/unbind cycles, node guest, ~5 min
#   bench/run.sh scale                  # cold scale + incremental + agent RSS, node guest
#   bench/run.sh incremental            # the same guest run as `scale` (it needs the scale point)
#   bench/run.sh memory                 # agent RSS (the scale guest run) + operator RSS and API writes per pod change
#   bench/run.sh operator               # only the operator figures of `memory` (no guest)
#   bench/run.sh all                    # everything above, one scale guest run
#
# KEY=VAL: RUNS=20 (convergence cycles), POLL_MS=20, AGENT_POLL_MS=20 (the agent's --poll-ms),
#   SCALES="100:1000 300:3000" (VNIs:endpoints steps; a step that exceeds PHASE_TIMEOUT
#   seconds in one phase stops the series; the full size is SCALES=1000:10000, see RESULTS.md),
#   PHASE_TIMEOUT=1200, GUEST_MEM=3G, GUEST_KERNEL=uml|qemu, PRELOAD_FRR=1 (FRR gets the full config before the agent
#   starts: the agent's up is then its kernel work), SKIP_PEER=1, SKIP_DOWN_FRR_PEER=1,
#   OPERATOR_SCALES="1000:100 10000:1000" (pods:bindings for operator_bench),
#   OPERATOR_CHURN="100:10 10000:100" (pods:nodes for operator_churn), NO_BUILD=1,
#   NO_RECORD=1 (do not append to bench/RESULTS.md).
# Prints a markdown table per benchmark and appends it, with the exact command, the machine and
# the load, to the run log at the end of bench/RESULTS.md. Raw results: bench/out/<run>/ (ignored
# by git). The kernel work runs inside the node guest (hack/testbed/guest.sh, FRR 10:
# this host kernel has no VRF); the operator figures run on the host against the real
# kube-apiserver (testkit). Nothing is left running: the guest is a process of this script, the
# apiserver/etcd are stopped by the testkit's watcher, namespaces live inside the guest only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
MODE=${1:-}
case "$MODE" in convergence|scale|incremental|memory|operator|all) shift ;; *) sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2; exit 64 ;; esac
for kv in "$@"; do [[ $kv =~ ^[A-Z_]+= ]] || { echo "not KEY=VAL: $kv" >&2; exit 64; }; export "${kv?}"; done
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (node guest, apiserver tier)" >&2; exit 1; }
RUNS=${RUNS:-20} POLL_MS=${POLL_MS:-20} AGENT_POLL_MS=${AGENT_POLL_MS:-20}
SCALES=${SCALES:-100:1000 300:3000} PHASE_TIMEOUT=${PHASE_TIMEOUT:-1200} GUEST_MEM=${GUEST_MEM:-3G}
OPERATOR_SCALES=${OPERATOR_SCALES-1000:100 10000:1000} OPERATOR_CHURN=${OPERATOR_CHURN-100:10 10000:100}  # set empty to skip
COMMAND="bench/run.sh $MODE${*:+ $*}"

if [ -z "${NO_BUILD:-}" ]; then
  (cd "$REPO" && cargo build --release -p bgpvpn-agent -p bgpvpn-bench -p bgpvpn-operator)
fi
BIN=$REPO/target/release
"$REPO/hack/testbed/guest.sh" prepare >/dev/null   # downloads, from the host's network
for b in bgpvpn-agent bgpvpn-operator operator_bench operator_churn; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p bgpvpn-agent -p bgpvpn-bench -p bgpvpn-operator" >&2; exit 1; }
done

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)-$MODE-$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
OUTDIR=$HERE/out/$RUN_ID
mkdir -p "$OUTDIR"
GUEST_PID=""
cleanup() { [ -n "$GUEST_PID" ] && kill "$GUEST_PID" 2>/dev/null; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM

{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command=$COMMAND"
  echo "nproc=$(nproc)"
  echo "host_kernel=$(uname -r)"
  echo "cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
  echo "mem_total_kib=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
  echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "git=$(git -C "$REPO" rev-parse --short HEAD)"
  echo "dirty_agent_files=$(git -C "$REPO" status --porcelain daemonset-agent operator crds | wc -l)"
  echo "guest=$("$REPO/hack/testbed/guest.sh" versions)"
} >"$OUTDIR/meta.env"
echo "== $COMMAND -> $OUTDIR (load $(cut -d' ' -f1-3 /proc/loadavg))"

guest() {  # <payload> [KEY=VAL...]: one node-guest run, results in $OUTDIR
  GUEST_OUT=$OUTDIR GUEST_MEM=$GUEST_MEM GUEST_TIMEOUT=${GUEST_TIMEOUT:-14400} "$REPO/hack/testbed/guest.sh" run "$@" &
  GUEST_PID=$!
  wait "$GUEST_PID"; local rc=$?
  GUEST_PID=""
  cp "$OUTDIR/.guest.log" "$OUTDIR/guest-$(basename "$1" .sh).log" 2>/dev/null || true
  return $rc
}
load_sample() { echo "load_$1=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUTDIR/meta.env"; }

if [ "$MODE" = convergence ] || [ "$MODE" = all ]; then
  load_sample convergence_start
  guest "$HERE/uml/convergence.sh" AGENT="$BIN/bgpvpn-agent" RUNS="$RUNS" POLL_MS="$POLL_MS" AGENT_POLL_MS="$AGENT_POLL_MS" \
    || echo "convergence guest failed (exit $?)" | tee -a "$OUTDIR/errors"
  load_sample convergence_end
fi
if [ "$MODE" != convergence ] && [ "$MODE" != operator ]; then
  PEER_PY=$("$HERE/peer/setup.sh")
  load_sample scale_start
  guest "$HERE/uml/scale.sh" AGENT="$BIN/bgpvpn-agent" PEER_PY="$PEER_PY" SCALES="$SCALES" PHASE_TIMEOUT="$PHASE_TIMEOUT" \
    ${PRELOAD_FRR:+PRELOAD_FRR=1} ${SKIP_PEER:+SKIP_PEER=1} ${SKIP_DOWN_FRR_PEER:+SKIP_DOWN_FRR_PEER=1} \
    || echo "scale guest failed (exit $?)" | tee -a "$OUTDIR/errors"
  load_sample scale_end
fi
if [ "$MODE" = memory ] || [ "$MODE" = operator ] || [ "$MODE" = all ]; then
  for s in $OPERATOR_SCALES; do
    load_sample "operator_${s%%:*}_start"
    echo "== operator_bench --pods ${s%%:*} --bindings ${s##*:}"
    "$BIN/operator_bench" --pods "${s%%:*}" --bindings "${s##*:}" 2>&1 | tee "$OUTDIR/operator-bench-${s%%:*}x${s##*:}.txt" \
      || echo "operator_bench ${s} failed" | tee -a "$OUTDIR/errors"
  done
  for s in $OPERATOR_CHURN; do
    load_sample "operator_churn_${s%%:*}_start"
    echo "== operator_churn --pods ${s%%:*} --nodes ${s##*:}"
    "$BIN/operator_churn" --pods "${s%%:*}" --nodes "${s##*:}" 2>&1 | tee "$OUTDIR/operator-churn-${s%%:*}x${s##*:}.txt" \
      || echo "operator_churn ${s} failed" | tee -a "$OUTDIR/errors"
  done
  load_sample operator_end
fi
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUTDIR/meta.env"

python3 "$HERE/report.py" "$OUTDIR" "$MODE" >"$OUTDIR/report.md"
cat "$OUTDIR/report.md"
if [ -z "${NO_RECORD:-}" ]; then
  { echo; cat "$OUTDIR/report.md"; } >>"$HERE/RESULTS.md"
  echo "(appended to bench/RESULTS.md)"
fi
[ ! -s "$OUTDIR/errors" ]
