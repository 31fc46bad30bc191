#!/usr/bin/env bash
# scale.sh -- guest payload of `bench/run.sh scale|incremental|memory` (inside the UML guest).
#
# For each step VNIS:ENDPOINTS of $SCALES, in fresh namespaces:
#  agent  (netns sA-*, FRR -N sA-*): the agent in file mode goes empty -> VNIS L3 VNIs with
#         ENDPOINTS pod endpoints (netlink + FRR), then the incremental changes (add a VNI with
#         one endpoint, add an endpoint, remove it, remove the VNI), then back to empty.
#         Timed from the state-file rename to the agent's "pass done" (its own log timestamps);
#         kernel writes from its /metrics; RSS from /proc.
#  peer   (netns sP-*, FRR -N sP-*): the same kernel work with bench/peer/pyroute2_scale.py, the
#         same FRR configuration (bgpvpn-agent render) applied with one full frr-reload.py
#         --reload, the same incremental FRR changes with full frr-reload.py runs, with one
#         `vtysh -f <delta>` and over the vty sockets (vty_apply.py), then back to empty.
# A step whose phase exceeds PHASE_TIMEOUT seconds is recorded as such, and larger steps are
# skipped. Results: $OUT/scale-<vnis>x<endpoints>.json (written by scale_report.py).
# Env: AGENT, OUT, PEER_PY (venv python with pyroute2), SCALES ("100:1000"), PHASE_TIMEOUT (900),
#      SKIP_PEER, SKIP_DOWN_FRR_PEER, PRELOAD_FRR (give FRR the full config before the agent
#      starts with the full state: isolates the agent's kernel work at sizes where frr-reload.py
#      itself does not finish within the agent's FRR deadline, --frr-timeout-secs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SCALES=${SCALES:-100:1000} PHASE_TIMEOUT=${PHASE_TIMEOUT:-900}
trap 'rc=$?; guest_cleanup; exit $rc' EXIT
trap 'exit 130' INT TERM
for m in vrf vxlan bridge veth dummy; do modprobe $m 2>/dev/null || true; done
log "guest kernel $(uname -r), $(nproc) cpu, $(awk '/MemTotal/{print $2" "$3}' /proc/meminfo), steps: $SCALES"
mkfifo "$WORK/tick"; exec 7<>"$WORK/tick"
nap() { read -rt "$1" -u 7 || true; }          # sleep without spawning a process
now() { echo "$EPOCHREALTIME"; }
TOPGEN=$'\n  "observedGeneration": ([0-9]+)'   # the top-level field (conditions carry one too, deeper)
ready_gen() {  # <gen>: the agent's status file says Ready=True for this generation (no process spawned)
  local s=""
  # conditions and observedGeneration come first; the per-VNI list after them is megabytes at
  # 1000 VNIs, and bash's regex over all of it took minutes per poll
  [ -f "$WORK/status.json" ] && { IFS= read -r -N 16384 s <"$WORK/status.json" || true; }
  [[ $s =~ $TOPGEN ]] && [ "${BASH_REMATCH[1]}" = "$1" ] \
    && [[ $s =~ \"status\":\ \"True\",[[:space:]]*\"type\":\ \"Ready\" ]]
}
wait_gen() {  # <gen> <timeout s>: 0 once the agent reported this generation as Ready (failed passes are retried by the agent)
  local end=$((SECONDS + $2))
  until ready_gen "$1"; do [ $SECONDS -lt $end ] || return 1; nap 0.1; done
}
publish() {  # <state file>: the agent's state file now has this content (rename)
  cp "$1" "$WORK/state.next"; local t; t=$(now); mv "$WORK/state.next" "$WORK/state.json"; echo "$t"
}
conf_for() { cp "$D/$2.peer.conf" "$WORK/$1/frr.conf"; echo "$WORK/$1/frr.conf"; }   # <node> <state>
kv() { printf '%s %s\n' "$1" "$2" >>"$MARKS"; }
rss() { awk -v f="$2" '$1==f{print $2}' "/proc/$1/status"; }
metrics() { nsx "$NS_A" curl -s --max-time 20 http://127.0.0.1:9469/metrics >"$1" || true; }

run_step() {
  local vnis=$1 eps=$2 tag="${1}x${2}" t gen rc
  local D=$WORK/$tag; mkdir -p "$D"
  MARKS=$D/marks; : >"$MARKS"
  kv vnis "$vnis"; kv endpoints "$eps"
  "$PY" "$BENCH_UML/gen_state.py" --vnis "$vnis" --endpoints "$eps" --dir "$D" >/dev/null
  for s in empty base add_vni add_ep del_ep del_vni down; do "$AGENT" render --state-file "$D/$s.json" >"$D/$s.render"; done
  kv frr_config_lines "$(grep -vc '^!' "$D/base.render")"

  # ---------------------------------------------------------------- agent
  NS_A=sA-$SFX-$tag; local N=$NS_A
  ns_new "$N"
  nsx "$N" ip link add underlay0 type dummy; nsx "$N" ip addr add 172.30.0.1/24 dev underlay0; nsx "$N" ip link set underlay0 up
  nsx "$N" sysctl -qw net.ipv4.ip_forward=1
  nsx "$N" ip -batch "$D/links.batch"; nsx "$N" ip -batch "$D/routes.batch"
  frr_prepare "$N"; frr_start "$N" "$N"
  rm -f "$WORK/status.json" "$WORK/agent.log"; rm -rf "$WORK/agent-state"
  # the agent's log lives on the host share, so a long step can be followed while it runs
  : >"$OUT/agent-$tag.log"; ln -s "$OUT/agent-$tag.log" "$WORK/agent.log"
  local AP
  if [ -z "${PRELOAD_FRR:-}" ]; then
    cp "$D/empty.json" "$WORK/state.json"
    agent_start "$N" "$N" "$WORK/state.json" --resync-secs 100000
    wait_gen 1 120 || { log "agent did not start"; return 1; }
    nap 1
    AP=$(cat "$WORK/agent.pid")
    kv agent_rss_idle_kib "$(rss "$AP" VmRSS:)"
    log "[$tag] agent idle VmRSS $(rss "$AP" VmRSS:) kB; going up"
    metrics "$D/metrics.0"
    t=$(publish "$D/base.json"); kv t_up "$t"
  else
    # PRELOAD_FRR: FRR gets the full configuration first (one frr-reload.py --reload, timed on its
    # own), then the agent starts straight with the full state: its FRR step finds nothing to
    # change, so its "up" is the kernel work (plus one frr-reload.py --test)
    { cat "$WORK/$N/preamble.conf"; echo "hostname $(hostname)"; cat "$D/base.render"; } >"$WORK/$N/frr.conf"
    log "[$tag] preloading FRR with the full configuration"
    t=$(now); rc=0; FRR_TIMEOUT=$PHASE_TIMEOUT frr_reload "$N" reload "$WORK/$N/frr.conf" >"$D/preload-frr.out" 2>&1 || rc=$?
    kv preload_frr "$t $(now) $rc"
    kv check_preload_networks "$(vty "$N" 'show running-config' | grep -c '^  network ')"
    log "[$tag] FRR preloaded ($rc); starting the agent with the full state"
    cp "$D/base.json" "$WORK/state.json"
    t=$(now); kv t_up "$t"
    agent_start "$N" "$N" "$WORK/state.json" --resync-secs 100000
    AP=$(cat "$WORK/agent.pid")
  fi
  local up_ok=1
  if wait_gen 2 "$PHASE_TIMEOUT"; then kv up_done_poll "$(now)"; else kv up_timeout "$PHASE_TIMEOUT"; log "[$tag] up: TIMEOUT"; up_ok=0; fi
  nap 2   # the follow-up pass (netlink events of the agent's own writes) goes by
  metrics "$D/metrics.up"
  kv agent_rss_up_kib "$(rss "$AP" VmRSS:)"; kv agent_hwm_up_kib "$(rss "$AP" VmHWM:)"
  kv zebra_rss_kib "$(rss "$(cat "/run/frr/$N/zebra.pid")" VmRSS:)"; kv bgpd_rss_kib "$(rss "$(cat "/run/frr/$N/bgpd.pid")" VmRSS:)"
  # independent checks of what is programmed (not timed)
  kv check_kernel_routes "$(nsx "$N" ip route show table all proto 232 | wc -l)"
  kv check_kernel_rules "$(nsx "$N" ip rule show | grep -c 'proto 232')"
  kv check_kernel_links "$(nsx "$N" ip -br link show group 1650946166 | wc -l)"
  kv check_zebra_l3vnis "$(vty "$N" 'show vrf vni' | grep -c '^vrf-')"
  kv check_bgp_networks "$(vty "$N" 'show running-config' | grep -c '^  network ')"
  # the cost of one resync (dump + diff + frr-reload.py --test) and of a no-op kernel diff
  t=$(now); nsx "$N" "$AGENT" plan --state-file "$D/base.json" --no-frr --frr-confdir "$WORK/$N" >"$D/plan-nofrr.out" 2>&1 || true
  kv plan_nofrr "$t $(now)"
  t=$(now); nsx "$N" "$AGENT" plan --state-file "$D/base.json" --frr-pathspace "$N" --frr-confdir "$WORK/$N" --frr-rundir "$WORK/$N/run" \
    --frr-statedir "/run/frr/$N" --frr-preamble "$WORK/$N/preamble.conf" >"$D/plan.out" 2>&1 || true
  kv plan_frr "$t $(now)"
  log "[$tag] up done; incremental changes"
  gen=2
  for change in add_vni add_ep del_ep del_vni; do
    [ $up_ok = 1 ] || break
    gen=$((gen + 1))
    metrics "$D/metrics.$change.before"
    t=$(publish "$D/$change.json"); kv "t_$change" "$t"
    wait_gen $gen "$PHASE_TIMEOUT" || kv "${change}_timeout" "$PHASE_TIMEOUT"
    nap 2
    metrics "$D/metrics.$change.after"
  done
  log "[$tag] going down"
  metrics "$D/metrics.down.before"
  t=$(publish "$D/down.json"); kv t_down "$t"
  if [ $up_ok = 0 ]; then log "[$tag] (the up phase did not finish: down not timed)"
  elif wait_gen 7 "$PHASE_TIMEOUT"; then kv down_done_poll "$(now)"; else kv down_timeout "$PHASE_TIMEOUT"; log "[$tag] down: TIMEOUT"; fi
  nap 2
  metrics "$D/metrics.down.after"
  kv agent_rss_down_kib "$(rss "$AP" VmRSS:)"; kv agent_hwm_end_kib "$(rss "$AP" VmHWM:)"
  kv check_after_down_links "$(nsx "$N" ip -br link show group 1650946166 | wc -l)"
  agent_stop; frr_stop "$N"
  cp "$WORK/agent.log" "$D/agent.log"

  # ---------------------------------------------------------------- peer
  if [ -z "${SKIP_PEER:-}" ]; then
    local P=sP-$SFX-$tag
    ns_new "$P"
    nsx "$P" ip link add underlay0 type dummy; nsx "$P" ip addr add 172.30.0.1/24 dev underlay0; nsx "$P" ip link set underlay0 up
    nsx "$P" sysctl -qw net.ipv4.ip_forward=1
    log "[$tag] peer: pyroute2 up"
    nsx "$P" timeout "$PHASE_TIMEOUT" "$PEER_PY" "$BENCH_UML/../peer/pyroute2_scale.py" up --vnis "$vnis" --endpoints "$eps" --pod-ifaces 100 >"$D/pyroute2-up.json" \
      || echo '{"timeout": true}' >"$D/pyroute2-up.json"
    frr_prepare "$P"; frr_start "$P" "$P"
    for s in empty base add_vni add_ep del_ep del_vni down; do
      { cat "$WORK/$P/preamble.conf"; echo "hostname $(hostname)"; cat "$D/$s.render"; } >"$D/$s.peer.conf"
    done
    nap 3
    log "[$tag] peer: frr-reload --reload (full config)"
    f=$(conf_for "$P" base); t=$(now); rc=0; FRR_TIMEOUT=$PHASE_TIMEOUT frr_reload "$P" reload "$f" >"$D/peer-reload-up.out" 2>&1 || rc=$?
    kv peer_frr_up "$t $(now) $rc"
    kv peer_zebra_rss_kib "$(rss "$(cat "/run/frr/$P/zebra.pid")" VmRSS:)"; kv peer_bgpd_rss_kib "$(rss "$(cat "/run/frr/$P/bgpd.pid")" VmRSS:)"
    kv peer_check_bgp_networks "$(vty "$P" 'show running-config' | grep -c '^  network ')"
    f=$(conf_for "$P" base); t=$(now); rc=0; FRR_TIMEOUT=$PHASE_TIMEOUT frr_reload "$P" test "$f" >"$D/peer-test.out" 2>&1 || rc=$?
    kv peer_frr_test "$t $(now) $rc"
    for change in add_vni add_ep del_ep del_vni; do
      f=$(conf_for "$P" "$change"); t=$(now); rc=0; FRR_TIMEOUT=$PHASE_TIMEOUT frr_reload "$P" reload "$f" >"$D/peer-reload-$change.out" 2>&1 || rc=$?
      kv "peer_frr_$change" "$t $(now) $rc"
    done
    # the same four changes as deltas: one vtysh -f each, and over the vty sockets
    for change in add_vni add_ep del_ep del_vni; do
      t=$(now); rc=0; command vtysh --config_dir "$WORK/$P" -N "$P" -f "$D/delta/$change.conf" >"$D/peer-vtysh-$change.out" 2>&1 || rc=$?
      kv "peer_vtysh_$change" "$t $(now) $rc"
    done
    for change in add_vni add_ep del_ep del_vni; do
      "$PY" "$BENCH_UML/vty_apply.py" "$P" "$D/delta/$change.conf" >"$D/peer-vty-$change.json" 2>&1 || true
    done
    if [ -z "${SKIP_DOWN_FRR_PEER:-}" ]; then
      log "[$tag] peer: frr-reload --reload to empty"
      f=$(conf_for "$P" down); t=$(now); rc=0; FRR_TIMEOUT=$PHASE_TIMEOUT frr_reload "$P" reload "$f" >"$D/peer-reload-down.out" 2>&1 || rc=$?
      kv peer_frr_down "$t $(now) $rc"
    fi
    frr_stop "$P"
    log "[$tag] peer: pyroute2 down"
    nsx "$P" timeout "$PHASE_TIMEOUT" "$PEER_PY" "$BENCH_UML/../peer/pyroute2_scale.py" down --vnis "$vnis" --endpoints "$eps" >"$D/pyroute2-down.json" \
      || echo '{"timeout": true}' >"$D/pyroute2-down.json"
  fi
  kv guest_mem_used_kib "$(awk '/MemTotal/{t=$2}/MemAvailable/{a=$2}END{print t-a}' /proc/meminfo)"
  "$PY" "$BENCH_UML/scale_report.py" "$D" >"$OUT/scale-$tag.json"
  mkdir -p "$OUT/scale-$tag"; cp "$D"/*.out "$D"/pyroute2-*.json "$D"/peer-vty-*.json "$D/agent.log" "$D/marks" "$D"/metrics.* "$OUT/scale-$tag/" 2>/dev/null || true
  log "[$tag] done: $(cat "$OUT/scale-$tag.json" | head -c 600)"
  # a step that timed out makes the next (bigger) one pointless
  ! grep -q timeout "$MARKS"
}

for step in $SCALES; do
  run_step "${step%%:*}" "${step##*:}" || { log "step $step hit PHASE_TIMEOUT: larger steps skipped"; break; }
done
