//! The CRDs against a real kube-apiserver (v1.37.2, or `KUBE_VERSION`): they install with kubectl,
//! every example applies, and malformed objects are refused by the server with a message naming
//! the field (list items by index, `spec.l3vnis[0].vrf`, as 1.35+ name them).

use bgpvpn_crds::{Bgpvpn, BgpvpnSpec, EvpnNodeState, VniBinding};
use bgpvpn_testkit::{client_or_skip, kubectl, repo_root, unique_name};
use kube::Resource;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn ok_or_dump(what: &str, out: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn crds_install_with_kubectl_and_are_established() {
    let client = client_or_skip!();
    let crds = repo_root().join("crds");
    ok_or_dump(
        "kubectl apply -f crds/",
        kubectl(&["apply", "-f", crds.to_str().unwrap()]),
    );
    for plural in ["bgpvpns", "vnibindings", "evpnnodestates"] {
        let out = ok_or_dump(
            "kubectl get crd",
            kubectl(&[
                "get",
                "crd",
                &format!("{plural}.bgpvpn.io"),
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ]),
        );
        assert_eq!(out.trim(), "True", "{plural} not established");
    }
    // the printer columns the admin sees
    let api: Api<Bgpvpn> = Api::all(client);
    let name = unique_name("cols");
    let vpn = Bgpvpn::new(
        &name,
        serde_json::from_value::<BgpvpnSpec>(json!({"vni": 4242, "routeTargets": ["65000:4242"]})).unwrap(),
    );
    api.create(&PostParams::default(), &vpn).await.unwrap();
    let table = ok_or_dump("kubectl get bgpvpn", kubectl(&["get", "bgpvpn", &name]));
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "VNI", "TYPE", "RTS", "BINDINGS", "READY", "AGE"] {
        assert!(
            header.split_whitespace().any(|h| h == col),
            "column {col} missing in {header:?}"
        );
    }
    assert!(
        table.contains("4242") && table.contains("l3") && table.contains("65000:4242"),
        "{table}"
    );
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn every_example_applies() {
    let _client = client_or_skip!();
    let examples = repo_root().join("examples");
    let out = ok_or_dump(
        "kubectl apply -R -f examples/",
        kubectl(&["apply", "-R", "-f", examples.to_str().unwrap()]),
    );
    // every YAML document of every file was created or left unchanged, none skipped
    let docs: usize = walk_yaml(&examples)
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .split("\n---")
                .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
                .count()
        })
        .sum();
    let applied = out
        .lines()
        .filter(|l| l.ends_with(" created") || l.ends_with(" unchanged") || l.ends_with(" configured"))
        .count();
    assert_eq!(applied, docs, "kubectl output:\n{out}");
    let got = ok_or_dump(
        "kubectl get",
        kubectl(&["get", "bgpvpn,vnibinding", "-A", "-o", "name"]),
    );
    for expected in [
        "bgpvpn.bgpvpn.io/vpn-1001",
        "bgpvpn.bgpvpn.io/vpn-1003",
        "vnibinding.bgpvpn.io/web-to-vpn-1001",
        "vnibinding.bgpvpn.io/frontends",
    ] {
        assert!(got.contains(expected), "{expected} missing from:\n{got}");
    }
    ok_or_dump(
        "kubectl delete -R -f examples/",
        kubectl(&["delete", "-R", "-f", examples.to_str().unwrap(), "--wait=false"]),
    );
}

fn walk_yaml(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk_yaml(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out
}

fn api_for<K: Resource<DynamicType = ()>>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(&K::group(&()), &K::version(&()), &K::kind(&()));
    let ar = ApiResource::from_gvk_with_plural(&gvk, &K::plural(&()));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Creates `body` and returns the server's error message, or panics if it was accepted.
async fn rejected(api: &Api<DynamicObject>, body: Value) -> String {
    let obj: DynamicObject = serde_json::from_value(body.clone()).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("the server accepted {body}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                status.code, 422,
                "expected 422 Invalid for {body}, got {status:?}"
            );
            status.message
        }
        Err(e) => panic!("unexpected error for {body}: {e}"),
    }
}

#[tokio::test]
async fn server_rejects_malformed_bgpvpns() {
    let client = client_or_skip!();
    let api = api_for::<Bgpvpn>(&client, None);
    let vpn = |spec: Value| json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": unique_name("bad")}, "spec": spec});
    let long_name = "x".repeat(254);
    let too_many: Vec<String> = (0..33).map(|i| format!("65000:{i}")).collect();
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "vni 0",
            vpn(json!({"vni": 0, "routeTargets": ["65000:1"]})),
            &["spec.vni", "greater than or equal to 1"],
        ),
        (
            "vni 2^24",
            vpn(json!({"vni": 16_777_216, "routeTargets": ["65000:1"]})),
            &["spec.vni", "less than or equal to 16777215"],
        ),
        (
            "vni missing",
            vpn(json!({"routeTargets": ["65000:1"]})),
            &["spec.vni", "Required"],
        ),
        (
            "unknown type",
            vpn(json!({"vni": 5, "type": "l4", "routeTargets": ["65000:1"]})),
            &["spec.type", "Unsupported value", "l4"],
        ),
        (
            "RT without number",
            vpn(json!({"vni": 5, "routeTargets": ["65000"]})),
            &["spec.routeTargets", "should match"],
        ),
        (
            "RT with letters",
            vpn(json!({"vni": 5, "routeTargets": ["AS65000:1"]})),
            &["spec.routeTargets", "should match"],
        ),
        (
            "RT smuggling an FRR command after a newline",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1\nrouter bgp 1"]})),
            &["spec.routeTargets"],
        ),
        (
            "RD malformed",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "routeDistinguishers": ["1.2.3:4"]})),
            &["spec.routeDistinguishers", "should match"],
        ),
        (
            "too many RTs",
            vpn(json!({"vni": 5, "routeTargets": too_many})),
            &["spec.routeTargets", "at most 32 items"],
        ),
        (
            "localPref beyond 32 bits",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "localPref": 4_294_967_296u64})),
            &["spec.localPref", "less than or equal to 4294967295"],
        ),
        (
            "localPref negative",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "localPref": -1})),
            &["spec.localPref", "greater than or equal to 0"],
        ),
        // the CEL rules (Kubernetes 1.35+): number ranges the pattern cannot say
        (
            "RT with a 4-byte AS and a 32-bit number",
            vpn(json!({"vni": 5, "routeTargets": ["4200000000:65536"]})),
            &["spec.routeTargets[0]", "RFC 4364"],
        ),
        (
            "RT with AS 0",
            vpn(json!({"vni": 5, "importTargets": ["0:1"]})),
            &["spec.importTargets[0]", "RFC 4364"],
        ),
        (
            "RT with an AS beyond 32 bits",
            vpn(json!({"vni": 5, "exportTargets": ["4294967296:1"]})),
            &["spec.exportTargets[0]", "RFC 4364"],
        ),
        (
            "RT with a 2-byte AS and a number beyond 32 bits",
            vpn(json!({"vni": 5, "routeTargets": ["65000:4294967296"]})),
            &["spec.routeTargets[0]", "RFC 4364"],
        ),
        (
            "RD with 300 as an IPv4 octet",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "routeDistinguishers": ["300.1.1.1:5"]})),
            &["spec.routeDistinguishers[0]", "RFC 4364"],
        ),
        (
            "RD with an IPv4 administrator and a 32-bit number",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "routeDistinguishers": ["192.0.2.1:65536"]})),
            &["spec.routeDistinguishers[0]", "RFC 4364"],
        ),
        (
            "RD with 0.0.0.0",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "routeDistinguishers": ["0.0.0.0:1"]})),
            &["spec.routeDistinguishers[0]", "RFC 4364"],
        ),
        (
            "allowed prefix with a length beyond 32",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "allowedPrefixes": ["10.0.0.0/33"]})),
            &["spec.allowedPrefixes[0]", "CIDR"],
        ),
        (
            "allowed prefix that is no address",
            vpn(json!({"vni": 5, "routeTargets": ["65000:1"], "allowedPrefixes": ["999.0.0.0/8"]})),
            &["spec.allowedPrefixes[0]", "CIDR"],
        ),
        (
            "over-long name",
            json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": long_name}, "spec": {"vni": 5, "routeTargets": ["65000:1"]}}),
            &["metadata.name", "must be no more than 253 characters"],
        ),
    ];
    for (what, body, needles) in cases {
        let msg = rejected(&api, body).await;
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{what}: {needle:?} not in server message {msg:?}"
            );
        }
    }
}

#[tokio::test]
async fn server_rejects_malformed_bindings_and_node_states() {
    let client = client_or_skip!();
    let api = api_for::<VniBinding>(&client, Some("default"));
    let binding = |spec: Value| json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "metadata": {"name": unique_name("bad"), "namespace": "default"}, "spec": spec});
    let uuid = "2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11";
    let cases: Vec<(&str, Value, &[&str])> = vec![
        ("no target", binding(json!({"bgpvpn": "vpn"})), &["oneOf"]),
        (
            "two targets",
            binding(json!({"bgpvpn": "vpn", "podSelector": {}, "routerId": uuid})),
            &["oneOf"],
        ),
        (
            "network id not a UUID",
            binding(json!({"bgpvpn": "vpn", "networkId": "net-1"})),
            &["spec.networkId", "should match"],
        ),
        (
            "bgpvpn name with upper case",
            binding(json!({"bgpvpn": "My-VPN", "podSelector": {}})),
            &["spec.bgpvpn", "should match"],
        ),
        (
            "bgpvpn name too long",
            binding(json!({"bgpvpn": "a".repeat(254), "podSelector": {}})),
            &["spec.bgpvpn", "253"],
        ),
        (
            "prefix with a newline",
            binding(json!({"bgpvpn": "vpn", "podSelector": {}, "advertisePrefixes": ["10.0.0.0/24\n"]})),
            &["spec.advertisePrefixes", "should match"],
        ),
        (
            "too many prefixes",
            binding(
                json!({"bgpvpn": "vpn", "podSelector": {}, "advertisePrefixes": vec!["10.0.0.0/24"; 65]}),
            ),
            &["spec.advertisePrefixes", "at most 64 items"],
        ),
        (
            "prefix with an IPv6 length beyond 128",
            binding(json!({"bgpvpn": "vpn", "podSelector": {}, "advertisePrefixes": ["2001:db8::/129"]})),
            &["spec.advertisePrefixes[0]", "CIDR"],
        ),
    ];
    for (what, body, needles) in cases {
        let msg = rejected(&api, body).await;
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{what}: {needle:?} not in server message {msg:?}"
            );
        }
    }

    let api = api_for::<EvpnNodeState>(&client, None);
    let underlay = json!({"asn": 65001, "routerId": "172.30.0.1", "vtepIp": "172.30.0.1"});
    let vni = |extra: Value| {
        let mut v = json!({"vni": 1001, "vrf": "vrf-1001", "importTargets": ["65000:1001"], "exportTargets": ["65000:1001"], "routeDistinguisher": "172.30.0.1:1001"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "metadata": {"name": unique_name("node")}, "spec": {"underlay": underlay, "l3vnis": [v]}})
    };
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "VRF name over 15 bytes",
            vni(json!({"vrf": "vrf-123456789012"})),
            &["spec.l3vnis[0].vrf", "15"],
        ),
        (
            "interface name with a space",
            vni(json!({"endpoints": [{"ip": "10.0.0.84", "interface": "eth 0"}]})),
            &["interface", "should match"],
        ),
        (
            "endpoint IP with a newline",
            vni(json!({"endpoints": [{"ip": "10.0.0.84\nexit"}]})),
            &["spec.l3vnis[0].endpoints[0].ip"],
        ),
        (
            "no import RT",
            vni(json!({"importTargets": []})),
            &["spec.l3vnis[0].importTargets", "at least 1"],
        ),
    ];
    for (what, body, needles) in cases {
        let msg = rejected(&api, body).await;
        for needle in needles {
            assert!(
                msg.contains(needle),
                "{what}: {needle:?} not in server message {msg:?}"
            );
        }
    }
}

/// What the schema cannot express is caught by `validate`, which every consumer runs.
#[tokio::test]
async fn the_server_takes_the_widest_valid_numbers() {
    let client = client_or_skip!();
    let api = api_for::<Bgpvpn>(&client, None);
    let name = unique_name("widest");
    let body = json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": name},
        "spec": {"vni": 7, "routeTargets": ["65535:4294967295", "4294967295:65535", "255.255.255.255:65535", "1:0"],
                 "routeDistinguishers": ["192.0.2.1:0"], "allowedPrefixes": ["10.0.0.0/8", "2001:db8::/32"]}});
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("every number at its range's edge is valid");
    let spec: BgpvpnSpec = serde_json::from_value(obj.data["spec"].clone()).unwrap();
    bgpvpn_crds::validate::validate_bgpvpn(&spec).expect("and the code agrees");
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

/// Defense in depth: where a CRD without the CEL rules is installed, the code refuses the same.
#[test]
fn code_validation_refuses_what_the_cel_rules_refuse() {
    let spec: BgpvpnSpec = serde_json::from_value(
        json!({"vni": 7, "routeTargets": ["4200000000:65536"], "routeDistinguishers": ["300.1.1.1:5"]}),
    )
    .unwrap();
    let err = bgpvpn_crds::validate::validate_bgpvpn(&spec)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spec.routeTargets[0]") && err.contains("0..65535"),
        "{err}"
    );
    assert!(
        err.contains("spec.routeDistinguishers[0]") && err.contains("not an IPv4 address"),
        "{err}"
    );
}

/// The VNI of a BGPVPN the operator has programmed cannot be edited; before that it can.
#[tokio::test]
async fn a_programmed_vni_cannot_change() {
    let client = client_or_skip!();
    let api: Api<Bgpvpn> = Api::all(client);
    let name = unique_name("vni-edit");
    let spec: BgpvpnSpec = serde_json::from_value(json!({"vni": 11, "routeTargets": ["65000:11"]})).unwrap();
    api.create(&PostParams::default(), &Bgpvpn::new(&name, spec))
        .await
        .unwrap();
    let edit = |vni: u32| Patch::Merge(json!({"spec": {"vni": vni}}));
    api.patch(&name, &PatchParams::default(), &edit(12))
        .await
        .expect("not programmed yet: a correction");
    // as the operator records it
    let programmed =
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "status": {"programmedVni": 12}});
    api.patch_status(
        &name,
        &PatchParams::apply("bgpvpn-operator").force(),
        &Patch::Apply(&programmed),
    )
    .await
    .unwrap();
    match api.patch(&name, &PatchParams::default(), &edit(13)).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message.contains("cannot change once it is programmed"),
                "{}",
                e.message
            );
        }
        other => panic!("a programmed VNI was edited: {other:?}"),
    }
    let other = Patch::Merge(json!({"spec": {"localPref": 200}}));
    api.patch(&name, &PatchParams::default(), &other)
        .await
        .expect("the rest of the spec stays editable");
    assert_eq!(api.get(&name).await.unwrap().spec.vni, 12);
    api.delete(&name, &DeleteParams::default()).await.unwrap();
}

/// The selectable fields select on the server (`kubectl get --field-selector`): BGPVPNs by VNI,
/// VNIBindings by BGPVPN, EVPNNodeStates by VTEP and router id, and every kind by name (the
/// agent's watch of its own node). A field that is not declared selectable is refused.
#[tokio::test]
async fn selectable_fields_select_on_the_server() {
    let client = client_or_skip!();
    async fn select<K>(api: &Api<K>, fields: &str) -> Vec<String>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let list = api.list(&ListParams::default().fields(fields)).await;
        let list = list.unwrap_or_else(|e| panic!("select {fields}: {e}"));
        list.items
            .iter()
            .map(|o| o.meta().name.clone().unwrap())
            .collect()
    }

    let (vpn_a, vpn_b) = (unique_name("sel-a"), unique_name("sel-b"));
    // a VNI no other test of this binary uses
    let vni = 9_000_000 + u32::from_str_radix(&vpn_a[vpn_a.len() - 5..], 16).unwrap() % 1_000_000;
    let vpns: Api<Bgpvpn> = Api::all(client.clone());
    for (name, vni) in [(&vpn_a, vni), (&vpn_b, vni + 1)] {
        let spec: BgpvpnSpec =
            serde_json::from_value(json!({"vni": vni, "routeTargets": ["65000:1"]})).unwrap();
        vpns.create(&PostParams::default(), &Bgpvpn::new(name, spec))
            .await
            .unwrap();
    }
    assert_eq!(select(&vpns, &format!("spec.vni={vni}")).await, [vpn_a.as_str()]);

    let bindings: Api<VniBinding> = Api::namespaced(client.clone(), "default");
    let (bind_a, bind_b) = (unique_name("sel-a"), unique_name("sel-b"));
    for (name, vpn) in [(&bind_a, &vpn_a), (&bind_b, &vpn_b)] {
        let binding: VniBinding = serde_json::from_value(json!({
            "apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "metadata": {"name": name},
            "spec": {"bgpvpn": vpn, "podSelector": {}}}))
        .unwrap();
        bindings.create(&PostParams::default(), &binding).await.unwrap();
    }
    assert_eq!(
        select(&bindings, &format!("spec.bgpvpn={vpn_b}")).await,
        [bind_b.as_str()]
    );

    let states: Api<EvpnNodeState> = Api::all(client.clone());
    let (node_a, node_b) = (unique_name("sel-node-a"), unique_name("sel-node-b"));
    // addresses no other test of this binary uses
    let octet = vni % 250 + 1;
    let (vtep_a, vtep_b) = (format!("198.51.100.{octet}"), format!("203.0.113.{octet}"));
    for (name, vtep) in [(&node_a, &vtep_a), (&node_b, &vtep_b)] {
        let state: EvpnNodeState = serde_json::from_value(json!({
            "apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "metadata": {"name": name},
            "spec": {"underlay": {"asn": 65001, "routerId": vtep, "vtepIp": vtep}}}))
        .unwrap();
        states.create(&PostParams::default(), &state).await.unwrap();
    }
    assert_eq!(
        select(&states, &format!("spec.underlay.vtepIp={vtep_b}")).await,
        [node_b.as_str()]
    );
    assert_eq!(
        select(&states, &format!("spec.underlay.routerId={vtep_a}")).await,
        [node_a.as_str()]
    );
    assert_eq!(
        select(&states, &format!("metadata.name={node_a}")).await,
        [node_a.as_str()]
    );

    match states
        .list(&ListParams::default().fields("spec.underlay.asn=65001"))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 400, "{e:?}"),
        other => panic!("a field that is not selectable was selected on: {other:?}"),
    }

    for name in [&vpn_a, &vpn_b] {
        vpns.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in [&bind_a, &bind_b] {
        bindings.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in [&node_a, &node_b] {
        states.delete(name, &DeleteParams::default()).await.unwrap();
    }
}
