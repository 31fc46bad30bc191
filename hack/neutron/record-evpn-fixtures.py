#!/usr/bin/env python3
"""record-evpn-fixtures.py <neutron-dir> <out-dir> [<keystone-dir>]

Records real answers of Neutron 29's EVPN API (the `evpn` service plugin: routers' `evpn_vni`,
add_router_interface's `advertise_host`) for the OpenStack sync's tests
(operator/tests/fixtures/openstack/neutron-29/). Run against a fresh server from
`NEUTRON_BACKEND=ovn neutron-bgpvpn.sh setup/start <neutron-dir>` (ML2/OVN + ovn.sh's NB/SB).

Without <keystone-dir> (the server in noauth mode, admin): builds two projects' networks and
subnets, routers with evpn_vni 1001 (explicit), 0 (auto-allocated) and none, router interfaces
with and without advertise_host, and records the answers (creates, lists, errors) plus what the
OVN northbound DB holds for the EVPN router (ovn-nb-evpn-router.txt, via ovn.sh nbctl).
With <keystone-dir> (the server set up with NEUTRON_AUTH=keystone against that Keystone): records
what a project member (role `member` only) sees of evpn_vni and the answer to a member's create
with evpn_vni (files *-as-member.json).

Each JSON file is {"request": {"method", "path", "body"}, "status": int, "body": <the answer>}.
IDs are the server's own (random UUIDs); nothing is rewritten.
"""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

neutron_dir, out = sys.argv[1:3]
ks_dir = sys.argv[3] if len(sys.argv) > 3 else None
HERE = os.path.dirname(os.path.abspath(__file__))
base = open(os.path.join(neutron_dir, "endpoint")).read().strip()
os.makedirs(out, exist_ok=True)


def http(url, method, body=None, headers=()):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Accept", "application/json")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in headers:
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req) as r:
            raw = r.read()
            return r.status, r.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


class Client:
    """noauth: admin context, project_id in the bodies; keystone: a token."""

    def __init__(self, project, token=None):
        self.project, self.token = project, token

    def call(self, method, path, body=None):
        headers = [("X-Auth-Token", self.token)] if self.token else [("X-Project-Id", self.project), ("X-Roles", "admin")]
        status, _, answer = http(base + path, method, body, headers)
        return {"request": {"method": method, "path": path, "body": body}, "status": status, "body": answer}


def save(name, rec):
    with open(os.path.join(out, name), "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")
    print(f"{name}: HTTP {rec['status']}")
    return rec


def ok(rec, status):
    assert rec["status"] == status, (rec["request"], rec["status"], rec["body"])
    return rec["body"]


def keystone_tokens():
    """admin token; a user with role member only in a new project; that user's token."""
    ks = open(os.path.join(ks_dir, "endpoint")).read().strip()
    pw = open(os.path.join(ks_dir, "admin-password")).read().strip()

    def auth(user, password, project):
        s, h, b = http(ks + "/auth/tokens", "POST", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}})
        assert s == 201, (s, b)
        return h["X-Subject-Token"], b["token"]["project"]["id"]

    admin, admin_project = auth("admin", pw, "admin")
    hdr = [("X-Auth-Token", admin)]
    name = f"evpn-member-{os.getpid()}"
    s, _, p = http(ks + "/projects", "POST", {"project": {"name": name, "domain_id": "default"}}, hdr)
    assert s == 201, (s, p)
    s, _, u = http(ks + "/users", "POST", {"user": {"name": name, "domain_id": "default", "password": "pw-" + pw}}, hdr)
    assert s == 201, (s, u)
    role = http(ks + "/roles?name=member", "GET", None, hdr)[2]["roles"][0]["id"]
    s, _, _ = http(f"{ks}/projects/{p['project']['id']}/users/{u['user']['id']}/roles/{role}", "PUT", None, hdr)
    assert s == 204, s
    member, member_project = auth(name, "pw-" + pw, name)
    return admin, admin_project, member, member_project


def net(c, project, name, cidr):
    n = ok(c.call("POST", "/v2.0/networks", {"network": {"name": name, "project_id": project}}), 201)["network"]
    s = ok(c.call("POST", "/v2.0/subnets", {"subnet": {"name": "sub-" + name, "network_id": n["id"], "ip_version": 4,
                                                       "cidr": cidr, "project_id": project}}), 201)["subnet"]
    return n, s


FIELDS = "fields=id&fields=name&fields=project_id&fields=tenant_id&fields=evpn_vni"   # what the sync asks

if ks_dir:
    admin_token, _, member_token, member_project = keystone_tokens()
    admin = Client(None, admin_token)
    member = Client(member_project, member_token)
    n, s = net(admin, member_project, "net-member", "10.9.0.0/24")
    r = ok(admin.call("POST", "/v2.0/routers", {"router": {"name": "r-member-evpn", "project_id": member_project,
                                                           "evpn_vni": 2001}}), 201)["router"]
    ok(admin.call("PUT", f"/v2.0/routers/{r['id']}/add_router_interface", {"subnet_id": s["id"], "advertise_host": True}), 200)
    save("routers-as-member.json", member.call("GET", "/v2.0/routers"))
    save("routers-fields-as-member.json", member.call("GET", "/v2.0/routers?" + FIELDS))
    save("router-as-member.json", member.call("GET", f"/v2.0/routers/{r['id']}"))
    save("router-create-evpn-vni-as-member.json", member.call("POST", "/v2.0/routers", {"router": {"name": "r-by-member", "evpn_vni": 2002}}))
    save("router-create-evpn-vni-0-as-member.json", member.call("POST", "/v2.0/routers", {"router": {"name": "r-by-member-auto", "evpn_vni": 0}}))
    save("routers-as-admin-keystone.json", admin.call("GET", "/v2.0/routers?" + FIELDS))
    sys.exit(0)

c = Client("project-a")
save("extension-evpn.json", c.call("GET", "/v2.0/extensions/evpn"))
na, sa = net(c, "project-a", "net-a", "10.1.0.0/24")
na2, sa2 = net(c, "project-a", "net-a2", "10.1.2.0/24")
nb, sb = net(c, "project-b", "net-b", "10.2.0.0/24")
nc, sc = net(c, "project-a", "net-c", "10.3.0.0/24")

r1 = ok(save("router-create-evpn-vni-1001.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-evpn-1001", "project_id": "project-a", "evpn_vni": 1001}})), 201)["router"]
r2 = ok(save("router-create-evpn-vni-0.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-evpn-auto", "project_id": "project-b", "evpn_vni": 0}})), 201)["router"]
r3 = ok(save("router-create-plain.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-plain", "project_id": "project-a"}})), 201)["router"]

ok(save("router-add-interface-advertise-host.json", c.call("PUT", f"/v2.0/routers/{r1['id']}/add_router_interface",
                                                           {"subnet_id": sa["id"], "advertise_host": True})), 200)
ok(save("router-add-interface.json", c.call("PUT", f"/v2.0/routers/{r1['id']}/add_router_interface",
                                            {"subnet_id": sa2["id"]})), 200)
ok(c.call("PUT", f"/v2.0/routers/{r2['id']}/add_router_interface", {"subnet_id": sb["id"]}), 200)

save("routers.json", c.call("GET", "/v2.0/routers"))
save("routers-fields.json", c.call("GET", "/v2.0/routers?" + FIELDS))
save("routers-filter-evpn-vni.json", c.call("GET", "/v2.0/routers?evpn_vni=1001&" + FIELDS))
save("router-evpn-1001.json", c.call("GET", f"/v2.0/routers/{r1['id']}"))
save("router-plain.json", c.call("GET", f"/v2.0/routers/{r3['id']}"))
save("ports-router-interface.json", c.call("GET", "/v2.0/ports?device_owner=network:router_interface"))
ports = save("ports-router-interface-device-id.json", c.call("GET", f"/v2.0/ports?device_owner=network:router_interface&device_id={r1['id']}"))
adv_port = next(p for p in ports["body"]["ports"] if p["fixed_ips"][0]["subnet_id"] == sa["id"])
save("port-fields-advertise-host.json", c.call("GET", f"/v2.0/ports/{adv_port['id']}?fields=id&fields=advertise_host"))
save("router-fields-advertise-host.json", c.call("GET", f"/v2.0/routers/{r1['id']}?fields=id&fields=advertise_host"))

save("error-put-evpn-vni.json", c.call("PUT", f"/v2.0/routers/{r1['id']}", {"router": {"evpn_vni": 1002}}))
save("error-put-evpn-vni-null.json", c.call("PUT", f"/v2.0/routers/{r1['id']}", {"router": {"evpn_vni": None}}))
save("error-evpn-vni-in-use.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-dup", "project_id": "project-b", "evpn_vni": 1001}}))
save("error-evpn-vni-out-of-range.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-big", "project_id": "project-b", "evpn_vni": 16777216}}))
save("error-advertise-host-without-evpn.json", c.call("PUT", f"/v2.0/routers/{r3['id']}/add_router_interface",
                                                      {"subnet_id": sc["id"], "advertise_host": True}))

# an EVPN router's end: interface removed, then the router deleted (its VNI is freed: a new auto
# router gets the lowest free VNI again)
r4 = ok(c.call("POST", "/v2.0/routers", {"router": {"name": "r-evpn-gone", "project_id": "project-b", "evpn_vni": 1003}}), 201)["router"]
ok(c.call("PUT", f"/v2.0/routers/{r2['id']}/remove_router_interface", {"subnet_id": sb["id"]}), 200)
save("router-delete-evpn.json", c.call("DELETE", f"/v2.0/routers/{r4['id']}"))
save("router-delete-evpn-auto.json", c.call("DELETE", f"/v2.0/routers/{r2['id']}"))
save("router-create-evpn-vni-0-again.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-evpn-auto-2", "project_id": "project-b", "evpn_vni": 0}}))
save("router-create-evpn-vni-1003-again.json", c.call("POST", "/v2.0/routers", {"router": {
    "name": "r-evpn-1003", "project_id": "project-b", "evpn_vni": 1003}}))

nbctl = [os.path.join(HERE, "ovn.sh"), "nbctl", os.path.join(neutron_dir, "ovn")]
lr = "neutron-" + r1["id"]
sections = [
    (f"ovn-nbctl list Logical_Router {lr}   (router r-evpn-1001, evpn_vni 1001)", ["list", "Logical_Router", lr]),
    (f"ovn-nbctl --columns=name,networks,options,external_ids,ha_chassis_group list Logical_Router_Port   (lrp-<port id> = router interfaces; evpn-lrp-* = the EVPN ports)",
     ["--columns=name,networks,options,external_ids,ha_chassis_group", "list", "Logical_Router_Port"]),
    ("ovn-nbctl list Logical_Switch evpn-ls-1001", ["list", "Logical_Switch", "evpn-ls-1001"]),
    ("ovn-nbctl list HA_Chassis_Group", ["list", "HA_Chassis_Group"]),
    ("ovn-nbctl list HA_Chassis", ["list", "HA_Chassis"]),
    ("ovn-nbctl show", ["show"]),
]
with open(os.path.join(out, "ovn-nb-evpn-router.txt"), "w") as f:
    version = subprocess.run(["ovn-nbctl", "--version"], capture_output=True, text=True).stdout.strip().replace("\n", ", ")
    f.write(f"# OVN northbound DB after record-evpn-fixtures.py (neutron 29.0.0 ML2/OVN + evpn plugin;\n"
            f"# {version}).\n"
            f"# Router r-evpn-1001 = {r1['id']}; its interface on sub-net-a ({sa['id']}) was added with\n"
            f"# advertise_host true (port {adv_port['id']}), the one on sub-net-a2 without.\n")
    for title, args in sections:
        f.write(f"\n## {title}\n")
        f.write(subprocess.run(nbctl + args, check=True, capture_output=True, text=True).stdout)
print("ovn-nb-evpn-router.txt")
