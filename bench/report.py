#!/usr/bin/env python3
"""report.py <run dir> <mode>: the markdown report of one `bench/run.sh` run (stdout)."""
import glob
import json
import os
import re
import sys

D, MODE = sys.argv[1], sys.argv[2]


def meta():
    m = {}
    for line in open(os.path.join(D, "meta.env")):
        k, _, v = line.rstrip("\n").partition("=")
        m[k] = v
    return m


def fmt_ms(x):
    if x is None:
        return "-"
    return f"{x / 1000:.2f} s" if x >= 1000 else f"{x:.0f} ms"


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def header(m):
    loads = ", ".join(f"{k[5:]} {v}" for k, v in m.items() if k.startswith("load_"))
    guest = ""
    c = load(os.path.join(D, "convergence.json"))
    if c:
        guest = c.get("kernel", "")
    else:
        for f in glob.glob(os.path.join(D, "guest-scale.log")):
            mm = re.search(r"guest kernel (\S+)", open(f, errors="replace").read())
            guest = mm.group(1) if mm else ""
    print(f"### {m['date']}: `{m['command']}`\n")
    print(f"- machine: {m['nproc']} CPUs ({m.get('cpu', '?')}), host kernel {m['host_kernel']}, "
          f"{int(m['mem_total_kib']) // 1024} MiB; kernel work in the UML guest (Linux {guest or '?'} um, 1 CPU, ptrace-based)")
    print(f"- load average (1/5/15 min): {loads}")
    print(f"- code: git {m['git']} ({m['dirty_agent_files']} uncommitted files under daemonset-agent/operator/crds at run time), FRR {m['frr']}")
    print(f"- raw results: `bench/out/{os.path.basename(D)}/`\n")


def convergence():
    c = load(os.path.join(D, "convergence.json"))
    if not c:
        print("**convergence: no result** (see guest-convergence.log)\n")
        return
    s = c["summary"]
    print(f"#### Convergence ({c['runs']} bind/unbind cycles; polled every {c['poll_ms']} ms, kernel checks on netlink events; "
          f"agent --poll-ms {c['agent_poll_ms']}; p99 of {c['runs']} samples is the maximum)\n")
    print("| from the state-file rename to | median | p99 | min | target |")
    print("|---|---|---|---|---|")
    rows = [("bind.a_kernel", "(a) kernel programmed (VRF, bridge, VXLAN, pod route + rule)", ""),
            ("bind.b_frr", "(b) FRR configured (zebra `vni 1001`, bgpd `network`)", ""),
            ("bind.c_remote", "(c) type-5 route in node B's VRF table", "≤ 1 s median"),
            ("bind.d_ping", "(d) first ping reply pod → remote VM", ""),
            ("bind.agent_frr_apply_total", "agent's FRR apply inside (a)-(d)", ""),
            ("unbind.a_kernel", "unbind: (a) devices, route and rule gone", ""),
            ("unbind.c_remote", "unbind: (c) route withdrawn at node B", ""),
            ("unbind.b_frr", "unbind: (b) `vni 1001` gone from zebra", ""),
            ("unbind.agent_frr_apply_total", "unbind: agent's FRR apply", "")]
    for k, label, target in rows:
        v = s.get(k, {})
        t = target
        if k == "bind.c_remote" and v.get("median") is not None:
            t += " (met)" if v["median"] <= 1000 else " (**not met**)"
        print(f"| {label} | {fmt_ms(v.get('median'))} | {fmt_ms(v.get('p99'))} | {fmt_ms(v.get('min'))} | {t} |")
    shares = [cy["bind"]["probe_cpu_share"] for cy in c["cycles"] if cy["bind"].get("probe_cpu_share") is not None]
    if shares:
        print(f"\nProbe CPU share during the bind half (the guest has one CPU): median {sorted(shares)[len(shares) // 2]:.3f}. "
              f"Agent VmRSS {c['agent_rss_kib_idle'] / 1024:.1f} MiB idle, {c['agent_rss_kib_end'] / 1024:.1f} MiB after the cycles.\n")
    methods = {}
    for cy in c["cycles"]:
        for half in ("bind", "unbind"):
            for f in cy[half]["agent"]["frr_applies"]:
                methods[f.get("method", "?")] = methods.get(f.get("method", "?"), 0) + 1
    if methods:
        print("How the agent applied FRR over all cycles: " + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())) + ".\n")


def scale():
    files = sorted(glob.glob(os.path.join(D, "scale-*.json")), key=lambda f: int(re.search(r"scale-(\d+)x", f).group(1)))
    steps = [load(f) for f in files]
    steps = [s for s in steps if s]
    if not steps:
        print("**scale: no result** (see guest-scale.log)\n")
        return
    print("#### Cold scale (one node, empty → N L3 VNIs with M pod endpoints → empty; target ≤ 30 s each way)\n")
    print("| VNIs / endpoints | agent up: total (FRR part and how; kernel writes over) | agent down: total (FRR part) | "
          "pyroute2 kernel up / down | frr-reload.py --reload full config up / to empty | kernel writes up / down (agent) | FRR config lines |")
    print("|---|---|---|---|---|---|---|")
    for s in steps:
        a, p = s["agent"], s["peer"]
        up, dn = a.get("up", {}), a.get("down", {})

        def tot(x):
            if x.get("total_s") is None:
                if x.get("timeout_s"):
                    return f"> {x['timeout_s']} s (timeout; {x.get('passes', 0)} passes failed)"
                return "unfinished" if x else "-"
            failed = f"; {x['failed_passes']} failed pass(es) retried" if x.get("failed_passes") else ""
            how = ", ".join(sorted({f.get("method", "?") for f in x.get("frr_applies", [])})) or "-"
            return f"{fmt_s(x['total_s'])} ({fmt_s((x.get('frr_ms') or 0) / 1000)} {how}; {fmt_s(x.get('kernel_writes_span_s'))}{failed})"
        pu, pd = p.get("pyroute2_up") or {}, p.get("pyroute2_down") or {}
        fu, fd = p.get("frr_up", {}), p.get("frr_down", {})
        pk = lambda x: "timeout" if x.get("timeout") else fmt_s(x.get("total_s"))  # noqa: E731
        fr = lambda x: ("-" if not x else fmt_s(x["s"]) + ("" if x.get("rc", 0) == 0 else f" (rc {x['rc']})"))  # noqa: E731
        print(f"| {s['vnis']} / {s['endpoints']} | {tot(up)} | {tot(dn)} | {pk(pu)} / {pk(pd)} | {fr(fu)} / {fr(fd)} | "
              f"{up.get('netlink_writes_metric', {}).get('total', '-')} / {dn.get('netlink_writes_metric', {}).get('total', '-')} | {s['frr_config_lines']} |")
    for s in steps:
        if s.get("preload_frr"):
            print(f"\n{s['vnis']} / {s['endpoints']}: run with PRELOAD_FRR: FRR was first given the full configuration by one "
                  f"frr-reload.py --reload ({fmt_s(s['preload_frr']['s'])}, rc {s['preload_frr'].get('rc')}); the agent then started with the full "
                  f"state, so its 'up' is the kernel work plus one frr-reload.py --test that finds nothing to change.")
    print()
    print("| VNIs / endpoints | steady state: no-op pass (dump + diff) | `plan --no-frr` (new process) | one resync's FRR check (`plan`, frr-reload.py --test) | peer frr-reload.py --test | checks after up (routes / rules / links / zebra L3VNIs / bgp networks) |")
    print("|---|---|---|---|---|---|")
    for s in steps:
        a, ck = s["agent"], s["checks"]
        fp = a.get("up", {}).get("followup_pass", {})
        print(f"| {s['vnis']} / {s['endpoints']} | {fmt_ms(fp.get('ms'))} | {fmt_s(s.get('plan_nofrr_s'))} | {fmt_s(s.get('plan_with_frr_test_s'))} | "
              f"{fr(s['peer'].get('frr_test'))} | {ck.get('check_kernel_routes', '-')} / {ck.get('check_kernel_rules', '-')} / {ck.get('check_kernel_links', '-')} / "
              f"{ck.get('check_zebra_l3vnis', '-')} / {ck.get('check_bgp_networks', '-')} |")
    print()
    return steps


def incremental(steps):
    if not steps:
        return
    s = steps[-1] if not any(x["agent"].get("add_vni") for x in steps[-1:]) else steps[-1]
    for s in [x for x in steps if x["agent"].get("add_vni")][-1:]:
        print(f"#### Incremental, with {s['vnis']} VNIs / {s['endpoints']} endpoints present (target ≤ 1 s each, writes proportional to the change)\n")
        print("| change | agent: state write → pass done | agent FRR part (how) | netlink writes (agent /metrics) | peer: full frr-reload.py --reload | peer: one `vtysh -f <delta>` | delta over the vty sockets (resident process) |")
        print("|---|---|---|---|---|---|---|")
        labels = {"add_vni": "add one VNI (with one endpoint)", "add_ep": "add one endpoint", "del_ep": "remove that endpoint", "del_vni": "remove that VNI"}
        for ch, label in labels.items():
            a = s["agent"].get(ch, {})
            p = s["peer"]
            w = a.get("netlink_writes_metric", {})
            ops = ", ".join(f"{k.split('/')[0]} {v}" for k, v in w.get("by_op", {}).items())
            vty = p.get(f"vty_{ch}") or {}
            vt = "-" if not vty else f"{vty['ms']:.0f} ms" + (" (errors)" if vty.get("errors") else "")
            fr = p.get(f"frr_{ch}")
            vs = p.get(f"vtysh_{ch}")
            how = ", ".join(sorted({f.get("method", "?") for f in a.get("frr_applies", [])})) or "-"
            print(f"| {label} | {fmt_s(a.get('total_s'))} | {fmt_s((a.get('frr_ms') or 0) / 1000)} ({how}) | {w.get('total', '-')} ({ops}) | "
                  f"{fmt_s(fr['s']) if fr else '-'} | {fmt_s(vs['s']) if vs else '-'} | {vt} |")
        print()


def memory(steps):
    print("#### Memory\n")
    print("| process | figure | target |")
    print("|---|---|---|")
    c = load(os.path.join(D, "convergence.json"))
    if c:
        print(f"| agent (UML guest) | VmRSS {c['agent_rss_kib_idle'] / 1024:.1f} MiB idle (underlay only) | ≤ 25 MB |")
    for s in steps or []:
        mk = s["memory_kib"]
        if "agent_rss_up_kib" in mk:
            print(f"| agent (UML guest), {s['vnis']} VNIs / {s['endpoints']} endpoints | VmRSS {mk['agent_rss_idle_kib'] / 1024:.1f} MiB idle → "
                  f"{mk['agent_rss_up_kib'] / 1024:.1f} MiB at the scale point (VmHWM {mk.get('agent_hwm_end_kib', 0) / 1024:.1f} MiB over the run) | ≤ 25 MB / ≤ 60 MB |")
        if "zebra_rss_kib" in mk:
            print(f"| zebra / bgpd at {s['vnis']} VNIs (for scale) | {mk['zebra_rss_kib'] / 1024:.0f} / {mk['bgpd_rss_kib'] / 1024:.0f} MiB | |")
    for f in sorted(glob.glob(os.path.join(D, "operator-bench-*.txt"))):
        t = open(f, errors="replace").read()
        lat = re.search(r"binding create -> EVPNNodeState written \((\d+) samples\): median ([\d.]+) ms, p99 ([\d.]+) ms", t)
        mem = re.search(r"(\d+) pods, (\d+) bindings, (\d+) nodes: converged in ([\d.]+) s .*?operator VmRSS ([\d.]+) MiB \(peak VmHWM ([\d.]+) MiB; ([\d.]+) MiB before", t)
        if mem:
            print(f"| operator (host), {mem.group(1)} pods / {mem.group(2)} bindings / {mem.group(3)} nodes | VmRSS {mem.group(5)} MiB (VmHWM {mem.group(6)} MiB; "
                  f"{mem.group(7)} MiB before), converged in {mem.group(4)} s | ≤ 100 MB |")
        else:
            print(f"| operator (host) | no result in {os.path.basename(f)} | |")
        if lat:
            print(f"| operator latency, binding create → EVPNNodeState written | median {lat.group(2)} ms, p99 {lat.group(3)} ms ({lat.group(1)} samples) | |")
    print()
    for f in sorted(glob.glob(os.path.join(D, "operator-churn-*.txt")), key=lambda f: int(re.search(r"churn-(\d+)x", f).group(1))):
        t = open(f, errors="replace").read()
        print(f"#### Operator API writes per pod change (operator_churn, real kube-apiserver, {os.path.basename(f)[15:-4].replace('x', ' pods / ')} nodes)\n")
        print("\n".join(l for l in t.splitlines() if l.startswith("|") or l.startswith("(")))
        print()


def main():
    m = meta()
    header(m)
    if MODE in ("convergence", "all"):
        convergence()
    steps = None
    if MODE in ("scale", "incremental", "memory", "all"):
        steps = scale() if MODE != "memory" else [load(f) for f in glob.glob(os.path.join(D, "scale-*.json")) if load(f)]
    if MODE in ("scale", "incremental", "all"):
        incremental(steps)
    if MODE in ("memory", "operator", "all"):
        memory(steps)
    if os.path.exists(os.path.join(D, "errors")):
        print("Errors: " + open(os.path.join(D, "errors")).read().replace("\n", "; "))


if __name__ == "__main__":
    main()
