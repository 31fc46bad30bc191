#!/usr/bin/env python3
"""Writes the desired states of the scale/incremental benchmark (EVPNNodeState objects as JSON)
and the CNI side of it (an `ip -batch` file with the pods' main-table routes).

The layout is the one bench/peer/pyroute2_scale.py uses, so both do the same kernel work:
VNI v = first_vni + k (k < vnis), VRF `vrf-<v>`; endpoint i = 10.128.0.0 + i in VNI
first_vni + i % vnis, reached through pod interface `pod<i % pod_ifaces>`.

Files (generation in brackets, in the order the benchmark applies them):
  empty.json [1]   underlay only
  base.json [2]    all VNIs and endpoints
  add_vni.json [3] + VNI first_vni+vnis with one new endpoint (i = endpoints)
  add_ep.json [4]  + endpoint i = endpoints+1 in VNI first_vni
  del_ep.json [5]  - that endpoint again
  del_vni.json [6] - the added VNI (= base)
  down.json [7]    underlay only (back to empty)
  routes.batch     `route add <ip>/32 dev pod<n>` for i < endpoints+2 (run before timing)
  links.batch      the pod dummies
  delta/<name>.conf  the FRR lines of each change, for `vtysh -f` and the vty-socket apply
"""
import argparse
import ipaddress
import json
import os

ASN, RID = 65001, "172.30.0.1"


def ep_ip(i):
    return str(ipaddress.IPv4Address("10.128.0.0") + i)


def vni_obj(vni, ips):
    return {"bgpvpn": f"bench-{vni}", "vni": vni, "vrf": f"vrf-{vni}", "importTargets": [f"65000:{vni}"],
            "exportTargets": [f"65000:{vni}"], "routeDistinguisher": f"{RID}:{vni}", "endpoints": [{"ip": ip} for ip in ips]}


def state(gen, l3vnis):
    return {"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "metadata": {"name": "node-a", "generation": gen},
            "spec": {"underlay": {"asn": ASN, "routerId": RID, "vtepIp": RID, "neighbors": [{"address": "172.30.0.2", "remoteAsn": 64999}]},
                     "l3vnis": l3vnis}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vnis", type=int, required=True)
    ap.add_argument("--endpoints", type=int, required=True)
    ap.add_argument("--pod-ifaces", type=int, default=100)
    ap.add_argument("--first-vni", type=int, default=10000)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.dir, "delta"), exist_ok=True)
    per = {a.first_vni + k: [] for k in range(a.vnis)}
    for i in range(a.endpoints):
        per[a.first_vni + i % a.vnis].append(ep_ip(i))
    base = [vni_obj(v, ips) for v, ips in per.items()]
    new_vni, new_ip, extra_ip = a.first_vni + a.vnis, ep_ip(a.endpoints), ep_ip(a.endpoints + 1)
    first = base[0]
    with_ep = dict(first, endpoints=first["endpoints"] + [{"ip": extra_ip}])
    states = {
        "empty": state(1, []),
        "base": state(2, base),
        "add_vni": state(3, base + [vni_obj(new_vni, [new_ip])]),
        "add_ep": state(4, [with_ep] + base[1:] + [vni_obj(new_vni, [new_ip])]),
        "del_ep": state(5, base + [vni_obj(new_vni, [new_ip])]),
        "del_vni": state(6, base),
        "down": state(7, []),
    }
    for name, s in states.items():
        with open(os.path.join(a.dir, f"{name}.json"), "w") as f:
            json.dump(s, f, separators=(",", ":"))
    with open(os.path.join(a.dir, "links.batch"), "w") as f:
        for p in range(a.pod_ifaces):
            f.write(f"link add pod{p} type dummy\nlink set pod{p} up\n")
    with open(os.path.join(a.dir, "routes.batch"), "w") as f:
        for i in range(a.endpoints + 2):
            f.write(f"route add {ep_ip(i)}/32 dev pod{i % a.pod_ifaces}\n")
    # the same changes as FRR configuration lines (what a delta apply would send)
    v0 = a.first_vni
    deltas = {
        "add_vni": f"""vrf vrf-{new_vni}
 vni {new_vni}
exit-vrf
router bgp {ASN} vrf vrf-{new_vni}
 bgp router-id {RID}
 address-family ipv4 unicast
  network {new_ip}/32
 exit-address-family
 address-family l2vpn evpn
  advertise ipv4 unicast
  rd {RID}:{new_vni}
  route-target import 65000:{new_vni}
  route-target export 65000:{new_vni}
 exit-address-family
exit
""",
        "add_ep": f"router bgp {ASN} vrf vrf-{v0}\n address-family ipv4 unicast\n  network {extra_ip}/32\n exit-address-family\nexit\n",
        "del_ep": f"router bgp {ASN} vrf vrf-{v0}\n address-family ipv4 unicast\n  no network {extra_ip}/32\n exit-address-family\nexit\n",
        "del_vni": f"no router bgp {ASN} vrf vrf-{new_vni}\nvrf vrf-{new_vni}\n no vni {new_vni}\nexit-vrf\n",
    }
    for name, text in deltas.items():
        with open(os.path.join(a.dir, "delta", f"{name}.conf"), "w") as f:
            f.write(text)
    print(json.dumps({"vnis": a.vnis, "endpoints": a.endpoints, "new_vni": new_vni, "new_ip": new_ip, "extra_ip": extra_ip}))


if __name__ == "__main__":
    main()
