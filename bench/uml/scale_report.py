#!/usr/bin/env python3
"""scale_report.py <step dir>: turns what scale.sh recorded (marks, the agent's log, /metrics
snapshots, the peers' outputs) into one JSON document on stdout.

Agent phases are timed from the state-file rename (scale.sh's EPOCHREALTIME, taken just before
`mv`) to the timestamp of the agent's own "pass done" line for that generation.
"""
import datetime
import json
import os
import re
import sys

D = sys.argv[1]


def marks():
    out = {}
    for line in open(os.path.join(D, "marks")):
        k, _, v = line.rstrip("\n").partition(" ")
        out[k] = v
    return out


def ts(line):
    return datetime.datetime.fromisoformat(line.split()[0]).timestamp()


def agent_log():
    path = os.path.join(D, "agent.log")
    return open(path, errors="replace").read().splitlines() if os.path.exists(path) else []


def parse_pass(l):
    m = re.search(r"millis=(\d+)", l)
    k = re.search(r"kernel_writes=(\d+)", l)
    ok = re.search(r"ok=(\w+)", l)
    return {"ms": int(m.group(1)) if m else None, "kernel_writes": int(k.group(1)) if k else 0, "ok": bool(ok and ok.group(1) == "true")}


def apply_method(line):
    """How the agent applied FRR (its log message says `(vtysh delta)` or `(frr-reload)`)."""
    return "vtysh delta" if "vtysh delta" in line else "frr-reload" if "frr-reload" in line else "unchanged"


def phase(lines, gen, t_write):
    """The passes after the agent took generation `gen`, up to the first one that succeeded (a
    failed pass is retried by the agent after a backoff)."""
    start = next((i for i, l in enumerate(lines) if "new desired state vnis=" in l and f"generation=Some({gen})" in l), None)
    if start is None:
        return None
    res = {"pickup_s": round(ts(lines[start]) - t_write, 3)}
    frr, kw_ts, passes, warnings = [], [], [], []
    for j in range(start + 1, len(lines)):
        l = lines[j]
        if "new desired state vnis=" in l:
            break
        if " WARN " in l:
            warnings.append(re.sub(r"^\S+\s+WARN\s+", "", l)[:300])
        if "FRR apply" in l and "FRR apply failed" not in l:
            m = re.search(r"millis=(\d+)", l)
            ch = re.search(r"(\d+) lines changed", l)
            st = re.search(r'stage="([^"]*)"', l)
            rs = re.search(r'result="(\w+)"', l)
            frr.append({"stage": st.group(1) if st else None, "result": rs.group(1) if rs else None,
                        "ms": int(m.group(1)) if m else None, "lines": int(ch.group(1)) if ch else 0, "method": apply_method(l)})
        elif "kernel write" in l and "failed" not in l:
            kw_ts.append(ts(l))
        elif "pass done" in l:
            p = parse_pass(l)
            passes.append(p)
            if not p["ok"]:
                continue
            res.update(total_s=round(ts(l) - t_write, 3), passes=len(passes), failed_passes=len(passes) - 1,
                       pass_ms=sum(x["ms"] or 0 for x in passes), kernel_writes=sum(x["kernel_writes"] for x in passes),
                       frr_applies=frr, frr_ms=sum(f["ms"] or 0 for f in frr), warnings=warnings[:10], warning_count=len(warnings))
            if kw_ts:
                res["kernel_first_write_after_write_s"] = round(kw_ts[0] - t_write, 3)
                res["kernel_writes_span_s"] = round(kw_ts[-1] - kw_ts[0], 3)
            # the next pass (started by the netlink events of this one's writes) = a no-op pass
            nxt = next((x for x in lines[j + 1:] if "pass done" in x or "new desired state vnis=" in x), None)
            if nxt and "pass done" in nxt:
                res["followup_pass"] = parse_pass(nxt)
            return res
    res.update(unfinished=True, passes=len(passes), frr_applies=frr, warnings=warnings[:10], warning_count=len(warnings))
    return res


def metrics(name):
    path = os.path.join(D, f"metrics.{name}")
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        m = re.match(r'bgpvpn_agent_netlink_ops_total\{op="([^"]+)",result="(\w+)"\} (\d+)', line)
        if m:
            out[f"{m.group(1)}/{m.group(2)}"] = int(m.group(3))
    return out


def delta(a, b):
    ma, mb = metrics(a), metrics(b)
    d = {k: mb.get(k, 0) - ma.get(k, 0) for k in set(ma) | set(mb)}
    d = {k: v for k, v in sorted(d.items()) if v}
    return {"total": sum(d.values()), "by_op": d}


def span(v):
    """'t0 t1 [rc]' -> seconds (and rc)."""
    p = v.split()
    out = {"s": round(float(p[1]) - float(p[0]), 3)}
    if len(p) > 2:
        out["rc"] = int(p[2])
    return out


def load_json(name):
    path = os.path.join(D, name)
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def main():
    mk = marks()
    lines = agent_log()
    r = {"vnis": int(mk["vnis"]), "endpoints": int(mk["endpoints"]), "frr_config_lines": int(mk.get("frr_config_lines", 0))}
    agent = {}
    for name, gen, key in (("up", 2, "t_up"), ("add_vni", 3, "t_add_vni"), ("add_ep", 4, "t_add_ep"),
                           ("del_ep", 5, "t_del_ep"), ("del_vni", 6, "t_del_vni"), ("down", 7, "t_down")):
        if key in mk:
            agent[name] = phase(lines, gen, float(mk[key])) or {}
            if f"{name}_timeout" in mk:
                agent[name]["timeout_s"] = int(mk[f"{name}_timeout"])
    for name, (a, b) in {"up": ("0", "up"), "add_vni": ("add_vni.before", "add_vni.after"), "add_ep": ("add_ep.before", "add_ep.after"),
                         "del_ep": ("del_ep.before", "del_ep.after"), "del_vni": ("del_vni.before", "del_vni.after"),
                         "down": ("down.before", "down.after")}.items():
        if name in agent:
            agent[name]["netlink_writes_metric"] = delta(a, b)
    r["agent"] = agent
    if "preload_frr" in mk:
        r["preload_frr"] = span(mk["preload_frr"])
    r["plan_nofrr_s"] = span(mk["plan_nofrr"])["s"] if "plan_nofrr" in mk else None
    r["plan_with_frr_test_s"] = span(mk["plan_frr"])["s"] if "plan_frr" in mk else None
    r["memory_kib"] = {k: int(v) for k, v in mk.items() if k.endswith("_kib") and v.strip().isdigit()}
    r["checks"] = {k: int(v) for k, v in mk.items() if k.startswith("check_") or k.startswith("peer_check_") if v.strip().isdigit()}
    peer = {"pyroute2_up": load_json("pyroute2-up.json"), "pyroute2_down": load_json("pyroute2-down.json")}
    for k, v in mk.items():
        if k.startswith("peer_frr_") or k.startswith("peer_vtysh_"):
            peer[k[5:]] = span(v)
    for ch in ("add_vni", "add_ep", "del_ep", "del_vni"):
        peer[f"vty_{ch}"] = load_json(f"peer-vty-{ch}.json")
    r["peer"] = peer
    json.dump(r, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
