#!/usr/bin/env python3
"""The kernel half of the cold-scale benchmark, done the way ovn-bgp-agent does it: pyroute2
(the version OpenStack 2026.1 pins), one IPRoute socket, one request per object, no diffing.

    pyroute2_scale.py up   --vnis 1000 --endpoints 10000 --pod-ifaces 100
    pyroute2_scale.py down --vnis 1000 --endpoints 10000

Per VNI: VRF vrf-<vni> (table 0x10000000+vni), bridge br-<vni> (master VRF), VXLAN vx-<vni>
(id vni, dstport 4789, local 172.30.0.1, nolearning, master bridge), all up. Per endpoint: its
/32 in the VRF table via one of the pre-made pod interfaces, and a rule `from <ip> lookup <table>`.
The pod interfaces (dummies, with main-table routes like a CNI's) are made by `up` before timing.
Prints one JSON line with the timings. Runs as root in a network namespace made for it.
"""
import argparse, ipaddress, json, sys, time

from pyroute2 import IPRoute

TABLE_BASE = 0x10000000
RULE_PRIO = 2000


def endpoint_ip(i):
    return str(ipaddress.IPv4Address("10.128.0.0") + i)


def up(ipr, a):
    pod_if = []
    for p in range(a.pod_ifaces):
        name = f"pod{p}"
        ipr.link("add", ifname=name, kind="dummy")
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, state="up")
        pod_if.append(idx)
    for i in range(a.endpoints):   # what the CNI plugin did before us
        ipr.route("add", dst=f"{endpoint_ip(i)}/32", oif=pod_if[i % a.pod_ifaces])
    t0 = time.monotonic()
    for v in range(a.vnis):
        vni = a.first_vni + v
        ipr.link("add", ifname=f"vrf-{vni}", kind="vrf", vrf_table=TABLE_BASE + vni)
        vrf = ipr.link_lookup(ifname=f"vrf-{vni}")[0]
        ipr.link("add", ifname=f"br-{vni}", kind="bridge", br_stp_state=0)
        br = ipr.link_lookup(ifname=f"br-{vni}")[0]
        ipr.link("set", index=br, master=vrf)
        ipr.link("add", ifname=f"vx-{vni}", kind="vxlan", vxlan_id=vni, vxlan_port=4789,
                 vxlan_local="172.30.0.1", vxlan_learning=0)
        vx = ipr.link_lookup(ifname=f"vx-{vni}")[0]
        ipr.link("set", index=vx, master=br)
        for idx in (vrf, br, vx):
            ipr.link("set", index=idx, state="up")
    t_links = time.monotonic()
    for i in range(a.endpoints):
        vni = a.first_vni + i % a.vnis
        ip = endpoint_ip(i)
        ipr.route("add", dst=f"{ip}/32", oif=pod_if[i % a.pod_ifaces], table=TABLE_BASE + vni)
        ipr.rule("add", src=ip, src_len=32, table=TABLE_BASE + vni, priority=RULE_PRIO)
    t_end = time.monotonic()
    return {"links_s": round(t_links - t0, 3), "routes_rules_s": round(t_end - t_links, 3), "total_s": round(t_end - t0, 3)}


def down(ipr, a):
    t0 = time.monotonic()
    for i in range(a.endpoints):
        vni = a.first_vni + i % a.vnis
        ipr.rule("del", src=endpoint_ip(i), src_len=32, table=TABLE_BASE + vni, priority=RULE_PRIO)
    t_rules = time.monotonic()
    for v in range(a.vnis):   # deleting the VRF flushes its table's routes
        vni = a.first_vni + v
        for name in (f"vx-{vni}", f"br-{vni}", f"vrf-{vni}"):
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
    t_end = time.monotonic()
    return {"rules_s": round(t_rules - t0, 3), "links_s": round(t_end - t_rules, 3), "total_s": round(t_end - t0, 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["up", "down"])
    ap.add_argument("--vnis", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10000)
    ap.add_argument("--pod-ifaces", type=int, default=100)
    ap.add_argument("--first-vni", type=int, default=10000)
    a = ap.parse_args()
    with IPRoute() as ipr:
        result = up(ipr, a) if a.action == "up" else down(ipr, a)
    result.update(tool="pyroute2", action=a.action, vnis=a.vnis, endpoints=a.endpoints)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
