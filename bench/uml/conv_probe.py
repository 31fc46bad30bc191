#!/usr/bin/env python3
"""Convergence probe (inside the UML guest): drives bind/unbind cycles through the agent's state
file and checks, on time.monotonic(), from sockets it keeps open (no process is spawned while
a cycle is timed: in UML a fork+exec costs ~35 ms and a vtysh ~650 ms):

  (a) kernel: node A has vrf-tenant, bvbr-1001, bvvx-1001, the route 10.0.0.84/32 in the VRF's
      table and the rule `from 10.0.0.84 lookup <table>` (rtnetlink dumps in A's netns)
  (b) FRR: zebra's running config has `vrf vrf-tenant / vni 1001` and bgpd's has
      `router bgp 65001 vrf vrf-tenant` with `network 10.0.0.84/32` (the daemons' vty sockets)
  (c) node B: 10.0.0.84/32 in vrf-1001's table (rtnetlink dump in B's netns)
  (d) the pod gets an ICMP echo reply from 20.0.0.100 (a raw socket in the pod's netns sends an
      echo every --poll-ms; the time is that of the first reply)

t0 is taken just before the rename that publishes the new state file. (a) and (c) are checked
whenever a link/route/rule notification arrives from that namespace (and every 5th tick as a
fallback), so they are stamped within a few ms; (b) and the ping run every --poll-ms tick, so
they are late by at most one tick.
The unbind half of each cycle times the reverse: (a) gone, (b) `vni 1001` gone from zebra,
(c) route withdrawn at B, (d) the last echo reply (pings keep going).
"""
import argparse
import json
import os
import re
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nl import Events, Rtnl, Vty, in_netns, status_kib  # noqa: E402

POD_IP, VM_IP, VNI, VRF = "10.0.0.84", "20.0.0.100", 1001, "vrf-tenant"
TABLE_A = 1_000_000_000 + VNI     # model::table_for_slot(1001)
TABLE_B = 1001
UNDERLAY = """  underlay:
    asn: 65001
    routerId: 172.30.0.1
    vtepIp: 172.30.0.1
    neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]
"""
BIND = f"""  l3vnis:
    - bgpvpn: bench-vpn
      vni: {VNI}
      vrf: {VRF}
      importTargets: ["65000:{VNI}"]
      exportTargets: ["65000:{VNI}"]
      routeDistinguisher: "172.30.0.1:{VNI}"
      endpoints: [{{ip: {POD_IP}, pod: bench/pod}}]
"""


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Pinger:
    def __init__(self, ns):
        self.s = in_netns(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
        self.s.setblocking(False)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def send(self):
        self.seq = (self.seq + 1) & 0xFFFF
        hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        data = b"bgpvpn-bench" + bytes(20)
        pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + data), self.ident, self.seq) + data
        try:
            self.s.sendto(pkt, (VM_IP, 0))
        except OSError:
            pass   # no route yet: fine
        return self.seq

    def replies(self):
        """Sequence numbers of the echo replies waiting on the socket."""
        out = []
        while True:
            try:
                pkt = self.s.recv(2048)
            except BlockingIOError:
                return out
            ihl = (pkt[0] & 0x0F) * 4
            if len(pkt) >= ihl + 8:
                typ, _code, _ck, ident, seq = struct.unpack_from("!BBHHH", pkt, ihl)
                if typ == 0 and ident == self.ident:
                    out.append(seq)


def write_state(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    t0 = time.monotonic()
    os.rename(tmp, path)
    return t0


def agent_log_lines(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    return data.decode(errors="replace").splitlines(), offset + len(data)


def parse_agent(lines):
    """FRR apply and pass durations the agent logged for one half-cycle."""
    frr, passes, writes = [], [], 0
    for line in lines:
        m = re.search(r"millis=(\d+)", line)
        if "FRR apply" in line and m:
            st = re.search(r'stage="?([^"]*?)"? result', line)
            res = re.search(r'result="?(\w+)', line)
            how = "vtysh delta" if "vtysh delta" in line else "frr-reload" if "frr-reload" in line else "unchanged"
            frr.append({"stage": st.group(1) if st else "?", "result": res.group(1) if res else "?", "ms": int(m.group(1)), "method": how})
        elif "pass done" in line and m:
            kw = re.search(r"kernel_writes=(\d+)", line)
            writes += int(kw.group(1)) if kw else 0
            passes.append(int(m.group(1)))
    return {"frr_applies": frr, "pass_ms": passes, "kernel_writes": writes}


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    if not s:
        return None
    k = max(1, -(-len(s) * p // 100))
    return s[min(len(s), int(k)) - 1]


def main():
    ap = argparse.ArgumentParser()
    for a in ("--work", "--a", "--b", "--pod", "--out"):
        ap.add_argument(a, required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=20)
    ap.add_argument("--agent-pid", type=int, required=True)
    ap.add_argument("--agent-poll-ms", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=90)
    a = ap.parse_args()
    period = a.poll_ms / 1000.0
    state = os.path.join(a.work, "state.yaml")
    status = os.path.join(a.work, "status.json")
    alog = os.path.join(a.work, "agent.log")

    nl_a = in_netns(a.a, Rtnl)
    nl_b = in_netns(a.b, Rtnl)
    ev_a = in_netns(a.a, Events)
    ev_b = in_netns(a.b, Events)
    zebra = Vty(f"/run/frr/{a.a}/zebra.vty")
    bgpd = Vty(f"/run/frr/{a.a}/bgpd.vty")
    pinger = Pinger(a.pod)

    def kernel_ok():
        links = nl_a.links()
        if not {VRF, f"bvbr-{VNI}", f"bvvx-{VNI}"} <= links:
            return False
        return (TABLE_A, f"{POD_IP}/32") in nl_a.routes4() and (TABLE_A, f"{POD_IP}/32") in nl_a.rules4()

    def kernel_gone():
        links = nl_a.links()
        return not ({VRF, f"bvbr-{VNI}", f"bvvx-{VNI}"} & links) and (TABLE_A, f"{POD_IP}/32") not in nl_a.rules4()

    def zebra_vni():
        return f"vrf {VRF}\n vni {VNI}\n" in zebra.cmd("show running-config")[1]

    def frr_ok():
        if not zebra_vni():
            return False
        run = bgpd.cmd("show running-config")[1]
        i = run.find(f"router bgp 65001 vrf {VRF}\n")
        return i >= 0 and f"network {POD_IP}/32" in run[i:]

    def at_b():
        return (TABLE_B, f"{POD_IP}/32") in nl_b.routes4()

    def status_gen():
        try:
            with open(status) as f:
                return json.load(f).get("observedGeneration")
        except (OSError, ValueError):
            return None

    def settle(gen, deadline=120.0):
        """Wait until the agent reported this generation, then let follow-up passes go by."""
        end = time.monotonic() + deadline
        while status_gen() != gen and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(1.0)

    def half(text, gen, checks, ping_mode):
        """Writes the state and polls until every check is done; returns ms per check.

        checks: name -> (netns key or None, fn). Kernel checks (key "a"/"b") run when a netlink
        notification arrived from that namespace, and on every 5th tick as a fallback; FRR
        checks (key None) and the ping run on every tick."""
        off = os.path.getsize(alog)
        t0 = write_state(state, f"apiVersion: bgpvpn.io/v1alpha1\nkind: EVPNNodeState\nmetadata: {{name: node-a, generation: {gen}}}\nspec:\n" + text)
        got = {}
        last_reply = None
        polls = 0
        next_tick = t0
        dirty = {"a": True, "b": True}
        cpu0 = os.times()
        while True:
            tick = time.monotonic() >= next_tick
            if tick:
                polls += 1
                pinger.send()
                if polls % 5 == 0:
                    dirty = {"a": True, "b": True}
                next_tick += period
            for name, (ns, fn) in checks.items():
                if name in got or not (dirty.get(ns) if ns else tick):
                    continue
                if fn():
                    got[name] = (time.monotonic() - t0) * 1000
            dirty = {"a": False, "b": False}
            done = len(got) >= len(checks) + (1 if ping_mode == "first" else 0)
            if ping_mode == "last" and len(got) >= len(checks):
                # pings stop working once the route is gone: wait 1 s of silence after that
                if last_reply is None or (time.monotonic() - t0) * 1000 > max(got.values()) + 1000:
                    got["d_last_reply"] = last_reply
                    done = True
            if done or time.monotonic() - t0 > a.timeout:
                break
            ready, _, _ = select.select([pinger.s, ev_a, ev_b], [], [], max(0.0, next_tick - time.monotonic()))
            for r in ready:
                if r is ev_a:
                    ev_a.drain()
                    dirty["a"] = True
                elif r is ev_b:
                    ev_b.drain()
                    dirty["b"] = True
                elif pinger.replies():
                    tr = (time.monotonic() - t0) * 1000
                    if ping_mode == "first" and "d_ping" not in got:
                        got["d_ping"] = tr
                    last_reply = tr
        cpu1 = os.times()
        probe_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        wall = time.monotonic() - t0
        settle(gen)
        lines, _ = agent_log_lines(alog, off)
        return {"ms": got, "polls": polls, "probe_cpu_share": round(probe_cpu / wall, 3) if wall else None, "agent": parse_agent(lines)}

    # the session must be up before the first bind
    t_start = time.monotonic()
    while "Established" not in bgpd.cmd("show bgp neighbors 172.30.0.2")[1]:
        if time.monotonic() - t_start > 120:
            sys.exit("eBGP session A-B not established within 120 s")
        time.sleep(0.2)
    print(f"eBGP session up after {time.monotonic() - t_start:.1f} s", flush=True)
    rss_idle = status_kib(a.agent_pid, "VmRSS:")

    gen = 1
    cycles = []
    for i in range(a.runs):
        gen += 1
        bind = half(UNDERLAY + BIND, gen, {"a_kernel": ("a", kernel_ok), "b_frr": (None, frr_ok), "c_remote": ("b", at_b)}, "first")
        gen += 1
        unbind = half(UNDERLAY, gen, {"a_kernel": ("a", kernel_gone), "b_frr": (None, lambda: not zebra_vni()), "c_remote": ("b", lambda: not at_b())}, "last")
        cycles.append({"bind": bind, "unbind": unbind})
        b, u = bind["ms"], unbind["ms"]
        f = lambda d, k: f"{d[k]:.0f}" if d.get(k) is not None else "-"   # noqa: E731
        print(f"cycle {i + 1:2d}: bind a={f(b, 'a_kernel')} b={f(b, 'b_frr')} c={f(b, 'c_remote')} d={f(b, 'd_ping')} ms"
              f" | unbind a={f(u, 'a_kernel')} b={f(u, 'b_frr')} c={f(u, 'c_remote')} ms"
              f" | agent FRR applies {[x['ms'] for x in bind['agent']['frr_applies']]} ms, probe cpu {bind['probe_cpu_share']}", flush=True)

    summary = {}
    for half_name, keys in (("bind", ("a_kernel", "b_frr", "c_remote", "d_ping")), ("unbind", ("a_kernel", "b_frr", "c_remote"))):
        for k in keys:
            xs = [c[half_name]["ms"][k] for c in cycles if c[half_name]["ms"].get(k) is not None]
            summary[f"{half_name}.{k}"] = {"n": len(xs), "median": pct(xs, 50), "p99": pct(xs, 99), "min": min(xs, default=None), "max": max(xs, default=None)}
    frr_bind = [sum(x["ms"] for x in c["bind"]["agent"]["frr_applies"]) for c in cycles]
    summary["bind.agent_frr_apply_total"] = {"n": len(frr_bind), "median": pct(frr_bind, 50), "p99": pct(frr_bind, 99)}
    frr_unbind = [sum(x["ms"] for x in c["unbind"]["agent"]["frr_applies"]) for c in cycles]
    summary["unbind.agent_frr_apply_total"] = {"n": len(frr_unbind), "median": pct(frr_unbind, 50), "p99": pct(frr_unbind, 99)}
    result = {"runs": a.runs, "poll_ms": a.poll_ms, "agent_poll_ms": a.agent_poll_ms, "kernel": os.uname().release,
              "agent_rss_kib_idle": rss_idle, "agent_rss_kib_end": status_kib(a.agent_pid, "VmRSS:"),
              "agent_hwm_kib_end": status_kib(a.agent_pid, "VmHWM:"), "summary": summary, "cycles": cycles}
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
