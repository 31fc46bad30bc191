#!/usr/bin/env python3
"""record-keystone-fixtures.py <keystone-dir> <neutron-url> <out-dir>

Records real Keystone v3 answers for the token-parsing tests of the OpenStack sync
(operator/tests/fixtures/openstack/). Run against a server from `keystone.sh setup/start`:
registers a `network` service (public + internal endpoints in RegionOne, pointing at
<neutron-url>), then records the answers to
  * a password token issue, project-scoped (admin)          -> keystone-token-password.json
  * an application-credential token issue (admin role)     -> keystone-token-appcred.json
  * a password token issue for a user with `member` only    -> keystone-token-member.json
  * a token issue with a wrong password                     -> keystone-token-401.json
Each file is {"status": int, "x_subject_token": str|null, "body": <the JSON answer>}. The tokens
are from a throwaway Keystone; they are recorded as they came.
"""
import json
import os
import sys
import urllib.error
import urllib.request

ks_dir, neutron_url, out = sys.argv[1:4]
base = open(os.path.join(ks_dir, "endpoint")).read().strip()
password = open(os.path.join(ks_dir, "admin-password")).read().strip()


def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers.get("X-Subject-Token"), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("X-Subject-Token"), json.loads(e.read() or b"null")


def password_auth(user, pw, project="admin"):
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": pw}}},
                     "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}


def save(name, answer):
    status, token, body = answer
    with open(os.path.join(out, name), "w") as f:
        json.dump({"status": status, "x_subject_token": token, "body": body}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{name}: HTTP {status}")


status, admin, body = call("POST", "/auth/tokens", password_auth("admin", password))
assert status == 201, (status, body)
me = body["token"]["user"]["id"]
project = body["token"]["project"]["id"]
_, _, services = call("GET", "/services?type=network", token=admin)
if services["services"]:
    service = services["services"][0]["id"]
else:
    service = call("POST", "/services", {"service": {"type": "network", "name": "neutron"}}, admin)[2]["service"]["id"]
    for interface in ("public", "internal"):
        call("POST", "/endpoints", {"endpoint": {"service_id": service, "interface": interface, "region_id": "RegionOne", "url": neutron_url}}, admin)

save("keystone-token-password.json", call("POST", "/auth/tokens", password_auth("admin", password)))

status, _, cred = call("POST", f"/users/{me}/application_credentials",
                       {"application_credential": {"name": f"fixture-{os.getpid()}", "roles": [{"name": "admin"}]}}, admin)
assert status == 201, (status, cred)
cred = cred["application_credential"]
save("keystone-token-appcred.json", call("POST", "/auth/tokens", {"auth": {"identity": {
    "methods": ["application_credential"], "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}}))

roles = call("GET", "/roles?name=member", token=admin)[2]["roles"]
user_pw = "member-" + password
status, _, user = call("POST", "/users", {"user": {"name": f"member-{os.getpid()}", "domain_id": "default", "password": user_pw}}, admin)
assert status == 201, (status, user)
user = user["user"]
call("PUT", f"/projects/{project}/users/{user['id']}/roles/{roles[0]['id']}", token=admin)
save("keystone-token-member.json", call("POST", "/auth/tokens", password_auth(user["name"], user_pw)))

save("keystone-token-401.json", call("POST", "/auth/tokens", password_auth("admin", "wrong-" + password)))
