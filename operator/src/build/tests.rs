//! Unit tests of the pure build step: a cluster view in, a plan out. No API server.

use std::sync::Arc;

use bgpvpn_crds::model::RtRd;
use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use k8s_openapi::api::core::v1::{Namespace, Node};
use serde_json::{Value, json};

use super::*;
use crate::config::{Config, UnderlayConfig};
use crate::guard::Guarded;
use crate::kuryr::{KuryrNetwork, KuryrPort};
use crate::reasons;
use crate::view::{ClusterView, KuryrView, PodView, UnreadableObject};

const NET: &str = "78f13a6a-586e-43f8-be56-70c5c04239a5";
const ROUTER: &str = "5f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b";
const PORT: &str = "2a9d2ad8-5d35-4a52-9e6f-2a0e5f8b1c11";

/// The readable objects of `values`; the others go to `unreadable`.
fn read<K>(values: &[Value], unreadable: &mut Vec<UnreadableObject>) -> Vec<Arc<K>>
where
    K: serde::de::DeserializeOwned + kube::Resource<DynamicType = ()> + Clone,
{
    let mut out = Vec::new();
    for v in values {
        match Guarded::<K>::from_json(&v.to_string()).get() {
            Ok(k) => out.push(k.clone()),
            Err(u) => unreadable.push(UnreadableObject::new(&K::api_version(&()), &K::kind(&()), u)),
        }
    }
    out
}

fn ts(secs: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + secs)
        .unwrap()
        .to_string()
}

fn vpn(name: &str, vni: u32, created: i64) -> Value {
    json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1, "creationTimestamp": ts(created)},
        "spec": {"vni": vni, "routeTargets": [format!("65000:{vni}")], "allowedNamespaces": {"all": true}}})
}

fn binding(ns: &str, name: &str, vpn: &str, created: i64, target: Value) -> Value {
    let mut spec = json!({"bgpvpn": vpn});
    spec.as_object_mut()
        .unwrap()
        .extend(target.as_object().unwrap().clone());
    json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "generation": 1, "creationTimestamp": ts(created)},
        "spec": spec})
}

fn selector(app: &str) -> Value {
    json!({"podSelector": {"matchLabels": {"app": app}}})
}

fn pod(ns: &str, name: &str, app: &str, node: &str, ip: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-pod-{name}"), "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

fn node(name: &str, ip: &str) -> Value {
    json!({"metadata": {"name": name, "uid": format!("uid-{name}")}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"metadata": {"name": name, "labels": labels}})
}

fn config() -> Config {
    Config::new(UnderlayConfig {
        asn: 65001,
        neighbors: vec![bgpvpn_crds::Neighbor {
            address: Some("172.30.0.254".into()),
            interface: None,
            remote_asn: 65000,
            bfd: false,
        }],
        ipv4_unicast: false,
    })
}

#[derive(Default)]
struct World {
    vpns: Vec<Value>,
    bindings: Vec<Value>,
    pods: Vec<Value>,
    nodes: Vec<Value>,
    namespaces: Vec<Value>,
    kuryr: Option<(Vec<Value>, Vec<Value>)>,
    states: Vec<Value>,
}

impl World {
    /// The objects as the operator reads them: each through [`Guarded`], so one that does not
    /// decode is unreadable, as from the API server.
    fn view(&self) -> ClusterView {
        let mut unreadable = Vec::new();
        let kuryr = self.kuryr.as_ref().map(|(n, p)| KuryrView {
            networks: read::<KuryrNetwork>(n, &mut unreadable),
            ports: read::<KuryrPort>(p, &mut unreadable),
        });
        ClusterView {
            bgpvpns: read::<Bgpvpn>(&self.vpns, &mut unreadable),
            bindings: read::<VniBinding>(&self.bindings, &mut unreadable),
            pods: read::<PodView>(&self.pods, &mut unreadable),
            namespaces: read::<Namespace>(&self.namespaces, &mut unreadable),
            nodes: read::<Node>(&self.nodes, &mut unreadable),
            kuryr,
            node_states: read::<EvpnNodeState>(&self.states, &mut unreadable),
            unreadable,
        }
    }

    fn plan(&self) -> Plan {
        plan(&self.view(), &config())
    }

    /// Node objects as the operator wrote them from `plan`, and as an agent reports them.
    fn agents_report(&mut self, plan: &Plan, ready: bool) {
        self.states = plan
            .nodes
            .iter()
            .map(|(name, p)| {
                let l3: Vec<Value> = p.spec.l3vnis.iter().map(|v| json!({"vni": v.vni, "vrf": v.vrf, "ready": ready, "endpoints": v.endpoints.len()})).collect();
                json!({"metadata": {"name": name, "generation": 3}, "spec": p.spec, "status": {"observedGeneration": 3, "l3vnis": l3}})
            })
            .collect();
    }
}

fn cond<'a>(conds: &'a [Cond], type_: &str) -> &'a Cond {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {conds:?}"))
}

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(ns, name)
}

fn two_node_world() -> World {
    World {
        vpns: vec![vpn("vpn-a", 1001, 0)],
        bindings: vec![binding("demo", "web", "vpn-a", 0, selector("web"))],
        pods: vec![
            pod("demo", "web-1", "web", "n1", "10.0.0.84"),
            pod("demo", "web-2", "web", "n2", "10.0.1.5"),
            pod("demo", "db", "db", "n1", "10.0.0.9"),
        ],
        nodes: vec![
            node("n1", "172.30.0.1"),
            node("n2", "172.30.0.2"),
            node("n3", "172.30.0.3"),
        ],
        namespaces: vec![namespace("demo", json!({}))],
        ..Default::default()
    }
}

#[test]
fn selected_pods_become_local_endpoints_of_their_node() {
    let plan = two_node_world().plan();
    assert_eq!(
        plan.nodes.keys().collect::<Vec<_>>(),
        ["n1", "n2", "n3"],
        "every node gets an object"
    );
    let n1 = &plan.nodes["n1"].spec;
    assert_eq!(n1.underlay.asn, 65001);
    assert_eq!(n1.underlay.router_id, "172.30.0.1");
    assert_eq!(n1.underlay.vtep_ip, "172.30.0.1");
    assert_eq!(plan.nodes["n1"].uid, "uid-n1");
    assert_eq!(n1.l3vnis.len(), 1);
    let v = &n1.l3vnis[0];
    assert_eq!(
        (v.vni, v.vrf.as_str(), v.bgpvpn.as_str()),
        (1001, "vrf-1001", "vpn-a")
    );
    assert_eq!(v.import_targets, ["65000:1001"]);
    assert_eq!(v.export_targets, ["65000:1001"]);
    assert_eq!(v.route_distinguisher, "172.30.0.1:1001");
    assert_eq!(v.endpoints.len(), 1, "the db pod is not selected");
    assert_eq!(v.endpoints[0].ip, "10.0.0.84");
    assert_eq!(v.endpoints[0].pod.as_deref(), Some("demo/web-1"));
    assert_eq!(
        plan.nodes["n2"].spec.l3vnis[0].route_distinguisher,
        "172.30.0.2:1001"
    );
    assert!(
        plan.nodes["n3"].spec.l3vnis.is_empty(),
        "no endpoint on n3, no VNI"
    );

    let b = &plan.bindings[&key("demo", "web")];
    assert_eq!(
        (b.endpoints, b.nodes.clone(), b.ready_nodes),
        (2, vec!["n1".to_string(), "n2".to_string()], 0)
    );
    assert_eq!(cond(&b.conditions, "Ready").reason, reasons::NODES_NOT_READY);
    assert_eq!(cond(&b.conditions, "Valid").reason, reasons::VALID);
    let v = &plan.bgpvpns["vpn-a"];
    assert_eq!(
        (
            v.bindings,
            v.endpoints,
            v.ready_nodes,
            v.total_nodes,
            v.programmed_vni
        ),
        (1, 2, 0, 2, Some(1001))
    );
}

#[test]
fn agent_reports_make_objects_ready() {
    let mut world = two_node_world();
    let plan = world.plan();
    world.agents_report(&plan, true);
    let plan = world.plan();
    let b = &plan.bindings[&key("demo", "web")];
    assert_eq!(
        cond(&b.conditions, "Ready").reason,
        reasons::PROGRAMMED,
        "{:?}",
        b.conditions
    );
    assert_eq!(b.ready_nodes, 2);
    let v = &plan.bgpvpns["vpn-a"];
    assert_eq!((v.ready_nodes, v.total_nodes), (2, 2));
    assert!(cond(&v.conditions, "Ready").ok);

    // an agent that has not caught up with the latest generation is not counted
    world.states[0]["status"]["observedGeneration"] = json!(2);
    let plan = world.plan();
    assert_eq!(plan.bgpvpns["vpn-a"].ready_nodes, 1);
    let ready = cond(&plan.bgpvpns["vpn-a"].conditions, "Ready");
    assert!(
        !ready.ok && ready.message.contains("n1: agent has not reported generation 3"),
        "{ready:?}"
    );

    // a new endpoint changes n1's desired VNI: not ready until written and reported again
    world.states[0]["status"]["observedGeneration"] = json!(3);
    world.pods.push(pod("demo", "web-3", "web", "n1", "10.0.0.85"));
    let plan = world.plan();
    assert_eq!(plan.bgpvpns["vpn-a"].ready_nodes, 1);
    assert!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Ready")
            .message
            .contains("n1: EVPNNodeState being updated")
    );

    world.agents_report(&world.plan(), false);
    world.states[0]["status"]["l3vnis"][0]["message"] = json!("frr-reload failed");
    let plan = world.plan();
    assert!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Ready")
            .message
            .contains("frr-reload failed")
    );
}

#[test]
fn only_running_scheduled_pods_with_addresses_count() {
    let mut world = two_node_world();
    world.pods.clear();
    let mut pending = pod("demo", "pending", "web", "n1", "10.0.0.1");
    pending["status"]["phase"] = json!("Pending");
    let mut deleting = pod("demo", "deleting", "web", "n1", "10.0.0.2");
    deleting["metadata"]["deletionTimestamp"] = json!(ts(5));
    let mut no_ip = pod("demo", "no-ip", "web", "n1", "10.0.0.3");
    no_ip["status"] = json!({"phase": "Running"});
    let mut host = pod("demo", "host", "web", "n1", "172.30.0.1");
    host["spec"]["hostNetwork"] = json!(true);
    let mut dual = pod("demo", "dual", "web", "n2", "10.0.1.7");
    dual["status"]["podIPs"] = json!([{"ip": "10.0.1.7"}, {"ip": "fd00::7"}]);
    world.pods = vec![pending, deleting, no_ip, host, dual];
    let plan = world.plan();
    assert!(plan.nodes["n1"].spec.l3vnis.is_empty());
    let ips: Vec<&str> = plan.nodes["n2"].spec.l3vnis[0]
        .endpoints
        .iter()
        .map(|e| e.ip.as_str())
        .collect();
    assert_eq!(ips, ["10.0.1.7", "fd00::7"]);
    let ready = cond(&plan.bindings[&key("demo", "web")].conditions, "Ready");
    assert!(
        ready.message.contains("1 selected pod(s) use the host network"),
        "{ready:?}"
    );
}

#[test]
fn the_later_bgpvpn_loses_a_shared_vni() {
    let mut world = two_node_world();
    world.vpns.push(vpn("vpn-b", 1001, 10));
    world
        .bindings
        .push(binding("demo", "b", "vpn-b", 5, selector("db")));
    let plan = world.plan();
    let b = &plan.bgpvpns["vpn-b"];
    assert_eq!(cond(&b.conditions, "Conflict").reason, reasons::VNI_CONFLICT);
    assert!(cond(&b.conditions, "Conflict").message.contains("vpn-a"));
    assert_eq!(cond(&b.conditions, "Ready").reason, reasons::VNI_CONFLICT);
    assert_eq!(b.programmed_vni, None);
    assert_eq!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Conflict").reason,
        reasons::NO_CONFLICT
    );
    assert_eq!(
        cond(&plan.bindings[&key("demo", "b")].conditions, "Ready").reason,
        reasons::BGPVPN_NOT_READY
    );
    assert!(
        plan.nodes["n1"].spec.l3vnis[0]
            .endpoints
            .iter()
            .all(|e| e.ip != "10.0.0.9"),
        "nothing programmed for vpn-b"
    );

    // a BGPVPN already programmed with the VNI keeps it even when an older one claims it later
    world.vpns[1]["status"] = json!({"programmedVni": 1001});
    let plan = world.plan();
    assert_eq!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Conflict").reason,
        reasons::VNI_CONFLICT
    );
    assert_eq!(
        cond(&plan.bgpvpns["vpn-b"].conditions, "Conflict").reason,
        reasons::NO_CONFLICT
    );
}

#[test]
fn a_vni_edit_after_programming_is_invalid_and_changes_nothing() {
    let mut world = two_node_world();
    world.vpns[0]["spec"]["vni"] = json!(2002);
    world.vpns[0]["status"] = json!({"programmedVni": 1001});
    let plan = world.plan();
    let v = &plan.bgpvpns["vpn-a"];
    let valid = cond(&v.conditions, "Valid");
    assert_eq!((valid.ok, valid.reason), (false, reasons::INVALID));
    assert!(valid.message.contains("immutable"), "{valid:?}");
    assert_eq!(v.programmed_vni, Some(1001));
    assert_eq!(
        plan.nodes["n1"].spec.l3vnis[0].vni, 1001,
        "the programmed VNI stays"
    );

    // with nothing programmed any more, the new VNI is taken
    world.pods.clear();
    world.vpns[0]["status"] = json!({});
    let plan = world.plan();
    assert!(cond(&plan.bgpvpns["vpn-a"].conditions, "Valid").ok);
}

#[test]
fn a_pod_of_two_bgpvpns_stays_with_the_older_binding() {
    let mut world = two_node_world();
    world.vpns.push(vpn("vpn-b", 2002, 0));
    world.bindings.push(binding(
        "demo",
        "newer",
        "vpn-b",
        30,
        json!({"podSelector": {"matchLabels": {"app": "web"}}}),
    ));
    let plan = world.plan();
    let older = &plan.bindings[&key("demo", "web")];
    let newer = &plan.bindings[&key("demo", "newer")];
    let (c_old, c_new) = (
        cond(&older.conditions, "Conflict"),
        cond(&newer.conditions, "Conflict"),
    );
    assert_eq!(
        (c_old.ok, c_old.reason, c_new.ok, c_new.reason),
        (true, reasons::POD_CONFLICT, true, reasons::POD_CONFLICT)
    );
    assert!(
        c_old.message.contains("kept here") && c_old.message.contains("demo/newer"),
        "{c_old:?}"
    );
    assert!(
        c_new.message.contains("demo/web") && c_new.message.contains("keeps it"),
        "{c_new:?}"
    );
    assert_eq!(older.endpoints, 2);
    assert_eq!(newer.endpoints, 0);
    assert_eq!(cond(&newer.conditions, "Ready").reason, reasons::NO_ENDPOINTS);
    for n in plan.nodes.values() {
        assert!(
            n.spec.l3vnis.iter().all(|v| v.vni != 2002),
            "nothing of vpn-b is programmed"
        );
    }
}

#[test]
fn tenancy_and_missing_bgpvpns() {
    let mut world = two_node_world();
    world.vpns[0]["spec"]["allowedNamespaces"] = json!({});
    let plan = world.plan();
    let ready = cond(&plan.bindings[&key("demo", "web")].conditions, "Ready");
    assert_eq!(ready.reason, reasons::NOT_ALLOWED);
    assert!(plan.nodes.values().all(|n| n.spec.l3vnis.is_empty()));

    world.vpns[0]["spec"]["allowedNamespaces"] = json!({"selector": {"matchLabels": {"team": "a"}}});
    assert_eq!(
        cond(&world.plan().bindings[&key("demo", "web")].conditions, "Ready").reason,
        reasons::NOT_ALLOWED
    );
    world.namespaces[0]["metadata"]["labels"] = json!({"team": "a"});
    assert_eq!(
        cond(&world.plan().bindings[&key("demo", "web")].conditions, "Ready").reason,
        reasons::NODES_NOT_READY
    );

    // admitted by name (the OpenStack sync's way)
    world.vpns[0]["spec"]["allowedNamespaces"] = json!({"names": ["other"]});
    let ready = cond(&world.plan().bindings[&key("demo", "web")].conditions, "Ready").clone();
    assert_eq!(ready.reason, reasons::NOT_ALLOWED);
    assert!(
        ready.message.contains("admits only the namespaces other"),
        "{ready:?}"
    );
    world.vpns[0]["spec"]["allowedNamespaces"] = json!({"names": ["other", "demo"]});
    assert_eq!(
        cond(&world.plan().bindings[&key("demo", "web")].conditions, "Ready").reason,
        reasons::NODES_NOT_READY
    );

    world.bindings[0]["spec"]["bgpvpn"] = json!("nope");
    let ready = cond(&world.plan().bindings[&key("demo", "web")].conditions, "Ready").clone();
    assert_eq!(ready.reason, reasons::BGPVPN_NOT_FOUND);
    assert!(ready.message.contains("nope"));

    world.bindings[0]["spec"]["bgpvpn"] = json!("vpn-a");
    world.vpns[0]["spec"]["type"] = json!("l2");
    let plan = world.plan();
    assert_eq!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Ready").reason,
        reasons::NOT_SUPPORTED
    );
    assert_eq!(
        cond(&plan.bindings[&key("demo", "web")].conditions, "Ready").reason,
        reasons::BGPVPN_NOT_READY
    );
}

#[test]
fn invalid_objects_are_reported_not_programmed() {
    let mut world = two_node_world();
    world.bindings.push(binding(
        "demo",
        "two-targets",
        "vpn-a",
        1,
        json!({"podSelector": {}, "networkId": NET}),
    ));
    world.vpns.push(vpn("no-rts", 3003, 0));
    world.vpns[1]["spec"]["routeTargets"] = json!([]);
    world
        .bindings
        .push(binding("demo", "to-bad-vpn", "no-rts", 2, selector("db")));
    let plan = world.plan();
    let valid = cond(&plan.bindings[&key("demo", "two-targets")].conditions, "Valid");
    assert_eq!((valid.ok, valid.reason), (false, reasons::INVALID));
    assert!(valid.message.contains("2 are set"));
    assert_eq!(
        cond(&plan.bgpvpns["no-rts"].conditions, "Ready").reason,
        reasons::INVALID
    );
    assert_eq!(
        cond(&plan.bindings[&key("demo", "to-bad-vpn")].conditions, "Ready").reason,
        reasons::BGPVPN_NOT_READY
    );
}

/// The explicit RD of each VNI (`""`: none).
fn explicit_rds(vnis: &[(u32, &str)]) -> BTreeMap<u32, Option<RtRd>> {
    vnis.iter()
        .map(|(vni, rd)| (*vni, (!rd.is_empty()).then(|| rd.parse().unwrap())))
        .collect()
}

/// The RDs, in VNI order.
fn rd_strings(rds: BTreeMap<u32, RtRd>) -> Vec<String> {
    rds.values().map(RtRd::to_string).collect()
}

#[test]
fn route_distinguishers_are_unique_per_node_and_valid_for_any_vni() {
    assert_eq!(nodes::fold_vni(1001), 1001);
    assert_eq!(nodes::fold_vni(65535), 65535);
    assert_eq!(nodes::fold_vni(65536), 1);
    assert_eq!(
        nodes::fold_vni(16_777_215),
        ((16_777_215u32 - 1) % 65535 + 1) as u16
    );
    let explicit = explicit_rds(&[
        (1, ""),
        (2, "65000:7"),
        (3, "172.30.0.1:4"),
        (4, ""),
        (65536, ""),
        (65537, ""),
    ]);
    let rds = rd_strings(nodes::assign_route_distinguishers(
        "172.30.0.1".parse().unwrap(),
        &explicit,
        &[],
    ));
    assert_eq!(
        rds,
        [
            "172.30.0.1:1",
            "65000:7",
            "172.30.0.1:4",
            "172.30.0.1:5",
            "172.30.0.1:2",
            "172.30.0.1:3"
        ]
    );

    let mut world = two_node_world();
    world.vpns[0]["spec"]["routeDistinguishers"] = json!(["65000:1"]);
    world.vpns.push(vpn("vpn-b", 70_000, 9));
    world.vpns[1]["spec"]["routeDistinguishers"] = json!(["65000:1"]);
    world
        .bindings
        .push(binding("demo", "b", "vpn-b", 3, selector("db")));
    let plan = world.plan();
    assert_eq!(plan.nodes["n1"].spec.l3vnis[0].route_distinguisher, "65000:1");
    assert_eq!(
        cond(&plan.bgpvpns["vpn-b"].conditions, "Conflict").reason,
        reasons::RD_CONFLICT
    );
    world.vpns[1]["spec"]["routeDistinguishers"] = json!([]);
    let plan = world.plan();
    let rds: Vec<(u32, &str)> = plan.nodes["n1"]
        .spec
        .l3vnis
        .iter()
        .map(|v| (v.vni, v.route_distinguisher.as_str()))
        .collect();
    assert_eq!(rds, [(1001, "65000:1"), (70_000, "172.30.0.1:4465")]);
}

#[test]
fn node_underlay_from_addresses_and_annotations() {
    let mut world = two_node_world();
    world.nodes[0]["metadata"]["annotations"] = json!({"bgpvpn.io/vtep-ip": "192.0.2.10", "bgpvpn.io/router-id": "192.0.2.11", "bgpvpn.io/asn": "64999"});
    world.nodes[1]["status"]["addresses"] =
        json!([{"type": "InternalIP", "address": "172.30.0.254"}, {"type": "Hostname", "address": "n2"}]);
    world.nodes[2]["status"] = json!({});
    let plan = world.plan();
    let n1 = &plan.nodes["n1"].spec.underlay;
    assert_eq!(
        (n1.asn, n1.router_id.as_str(), n1.vtep_ip.as_str()),
        (64999, "192.0.2.11", "192.0.2.10")
    );
    assert_eq!(n1.neighbors.len(), 1);
    assert!(
        plan.nodes["n2"].spec.underlay.neighbors.is_empty(),
        "a node does not peer with itself"
    );
    assert!(!n1.ipv4_unicast);
    // BGP as the underlay's routing reaches every node
    let mut with_unicast = config();
    with_unicast.underlay.ipv4_unicast = true;
    let unicast = super::plan(&world.view(), &with_unicast);
    assert!(unicast.nodes.values().all(|n| n.spec.underlay.ipv4_unicast));
    assert!(!plan.nodes.contains_key("n3"));
    assert!(
        plan.kept_nodes["n3"].contains("no IPv4 InternalIP"),
        "{:?}",
        plan.kept_nodes
    );

    // endpoints on a node without a usable underlay are reported, not silently dropped
    world.pods.push(pod("demo", "web-3", "web", "n3", "10.0.3.3"));
    world.nodes[0]["metadata"]["annotations"] = json!({"bgpvpn.io/asn": "zero"});
    let plan = world.plan();
    assert!(plan.kept_nodes["n1"].contains("bgpvpn.io/asn"));
    // an IPv6 VTEP: FRR 10.3's EVPN cannot use it, so the node is reported, not programmed
    world.nodes[0]["metadata"]["annotations"] = json!({"bgpvpn.io/vtep-ip": "fd00:30::1"});
    let plan = world.plan();
    assert!(
        plan.kept_nodes["n1"].contains("an IPv6 VTEP is not supported"),
        "{:?}",
        plan.kept_nodes
    );
    let b = &plan.bindings[&key("demo", "web")];
    assert_eq!(b.nodes, ["n1", "n2", "n3"]);
    let ready = cond(&b.conditions, "Ready");
    assert!(ready.message.contains("n3: no IPv4 InternalIP"), "{ready:?}");
}

fn kuryr_world() -> World {
    let mut world = two_node_world();
    world.bindings = vec![binding("demo", "by-net", "vpn-a", 0, json!({"networkId": NET}))];
    let net = json!({"metadata": {"name": "demo", "namespace": "demo"}, "spec": {"nsName": "demo", "projectId": "p", "nsLabels": {}},
        "status": {"netId": NET, "routerId": ROUTER, "subnetId": "s", "subnetCIDR": "10.0.0.0/24", "populated": true}});
    let port = |name: &str, ip: &str, port_id: &str| {
        json!({"metadata": {"name": name, "namespace": "demo"}, "spec": {"podUid": format!("uid-pod-{name}"), "podNodeName": "n1"},
            "status": {"vifs": {"eth0": {"default": true, "vif": {"id": port_id, "vif_name": format!("tap{}", &port_id[..8]), "active": true,
                "network": {"id": NET, "subnets": [{"cidr": "10.0.0.0/24", "ips": [{"address": ip}]}]}}}}}})
    };
    world.kuryr = Some((
        vec![net],
        vec![
            port("web-1", "10.0.0.84", PORT),
            port("db", "10.0.0.9", "11111111-2222-3333-4444-555555555555"),
            json!({"metadata": {"name": "broken", "namespace": "demo"}, "status": {"vifs": 7}}),
        ],
    ));
    world.pods.retain(|p| p["spec"]["nodeName"] == "n1");
    world
}

#[test]
fn kuryr_network_router_and_port_targets() {
    let mut world = kuryr_world();
    let plan = world.plan();
    let eps: Vec<(&str, Option<&str>)> = plan.nodes["n1"].spec.l3vnis[0]
        .endpoints
        .iter()
        .map(|e| (e.ip.as_str(), e.interface.as_deref()))
        .collect();
    assert_eq!(
        eps,
        [
            ("10.0.0.84", Some("tap2a9d2ad8")),
            ("10.0.0.9", Some("tap11111111"))
        ],
        "the vif addresses, not the pod's"
    );
    assert_eq!(
        plan.malformed.keys().collect::<Vec<_>>(),
        ["KuryrPort demo/broken"]
    );

    world.bindings[0] = binding(
        "demo",
        "by-router",
        "vpn-a",
        0,
        json!({"routerId": ROUTER.to_uppercase()}),
    );
    assert_eq!(world.plan().nodes["n1"].spec.l3vnis[0].endpoints.len(), 2);

    world.bindings[0] = binding("demo", "by-port", "vpn-a", 0, json!({"portId": PORT}));
    let plan = world.plan();
    assert_eq!(plan.nodes["n1"].spec.l3vnis[0].endpoints.len(), 1);
    assert_eq!(plan.bindings[&key("demo", "by-port")].endpoints, 1);

    world.bindings[0] = binding("demo", "other-net", "vpn-a", 0, json!({"networkId": ROUTER}));
    let ready = cond(
        &world.plan().bindings[&key("demo", "other-net")].conditions,
        "Ready",
    )
    .clone();
    assert_eq!(ready.reason, reasons::TARGET_NOT_FOUND);
    assert!(ready.message.contains(&format!("has netId {NET}")), "{ready:?}");

    world.kuryr = None;
    assert_eq!(
        cond(
            &world.plan().bindings[&key("demo", "other-net")].conditions,
            "Ready"
        )
        .reason,
        reasons::KURYR_NOT_INSTALLED
    );
}

#[test]
fn the_plan_does_not_depend_on_list_order() {
    let mut world = kuryr_world();
    world.vpns.push(vpn("vpn-b", 1001, 10));
    world
        .bindings
        .push(binding("demo", "web", "vpn-a", 0, selector("web")));
    world
        .bindings
        .push(binding("demo", "b", "vpn-b", 1, selector("db")));
    let first = world.plan();
    world.vpns.reverse();
    world.bindings.reverse();
    world.pods.reverse();
    world.nodes.reverse();
    assert_eq!(first, world.plan());
}

/// VNIs whose 16-bit fold collides: 65536 folds onto 1, 16777215 onto 255.
fn colliding_world() -> World {
    World {
        vpns: vec![vpn("high", 65_536, 0), vpn("low", 1, 0), vpn("other", 2, 0)],
        bindings: vec![binding("demo", "high", "high", 0, selector("web"))],
        pods: vec![
            pod("demo", "web-1", "web", "n1", "10.0.0.84"),
            pod("demo", "db", "db", "n1", "10.0.0.9"),
            pod("demo", "cache", "cache", "n1", "10.0.0.7"),
        ],
        nodes: vec![node("n1", "172.30.0.1")],
        namespaces: vec![namespace("demo", json!({}))],
        ..Default::default()
    }
}

fn rds_of(plan: &Plan, node: &str) -> Vec<(u32, String)> {
    plan.nodes[node]
        .spec
        .l3vnis
        .iter()
        .map(|v| (v.vni, v.route_distinguisher.clone()))
        .collect()
}

#[test]
fn a_programmed_route_distinguisher_stays_while_others_come_and_go() {
    let mut world = colliding_world();
    let plan = world.plan();
    assert_eq!(rds_of(&plan, "n1"), [(65_536, "172.30.0.1:1".to_string())]);
    world.agents_report(&plan, true);

    // VNI 1 folds onto the RD that 65536 already runs with: the newcomer moves, not 65536
    world
        .bindings
        .push(binding("demo", "low", "low", 1, selector("db")));
    let plan = world.plan();
    assert_eq!(
        rds_of(&plan, "n1"),
        [
            (1, "172.30.0.1:2".to_string()),
            (65_536, "172.30.0.1:1".to_string())
        ]
    );
    world.agents_report(&plan, true);

    // another VNI joins and leaves, then VNI 1 leaves: 65536 keeps its RD throughout
    world
        .bindings
        .push(binding("demo", "other", "other", 2, selector("cache")));
    let plan = world.plan();
    assert_eq!(
        rds_of(&plan, "n1"),
        [
            (1, "172.30.0.1:2".to_string()),
            (2, "172.30.0.1:3".to_string()),
            (65_536, "172.30.0.1:1".to_string())
        ]
    );
    world.agents_report(&plan, true);
    world
        .bindings
        .retain(|b| b["metadata"]["name"] != "other" && b["metadata"]["name"] != "low");
    let plan = world.plan();
    assert_eq!(rds_of(&plan, "n1"), [(65_536, "172.30.0.1:1".to_string())]);
}

#[test]
fn kept_route_distinguishers_yield_to_explicit_ones_and_new_router_ids() {
    use bgpvpn_crds::L3Vni;
    let l3 = |vni: u32, rd: &str| L3Vni {
        vni,
        route_distinguisher: rd.into(),
        ..Default::default()
    };
    let router: std::net::Ipv4Addr = "172.30.0.1".parse().unwrap();
    let programmed = vec![
        l3(255, "172.30.0.1:256"),
        l3(300, "172.30.0.1:300"),
        l3(16_777_215, "172.30.0.1:255"),
        l3(400, "192.0.2.1:400"),
    ];

    let vnis = explicit_rds(&[(255, ""), (300, ""), (400, ""), (16_777_215, "")]);
    let rds = rd_strings(nodes::assign_route_distinguishers(router, &vnis, &programmed));
    assert_eq!(
        rds,
        [
            "172.30.0.1:256",
            "172.30.0.1:300",
            "172.30.0.1:400",
            "172.30.0.1:255"
        ],
        "kept; the RD of another router id is not"
    );

    // an explicit RD that equals a kept one wins; the kept VNI takes a free number
    let vnis = explicit_rds(&[(255, ""), (300, "172.30.0.1:256")]);
    let rds = rd_strings(nodes::assign_route_distinguishers(router, &vnis, &programmed));
    assert_eq!(rds, ["172.30.0.1:255", "172.30.0.1:256"]);
}

fn prefixes_on(plan: &Plan, node: &str, vni: u32) -> Vec<String> {
    plan.nodes[node]
        .spec
        .l3vnis
        .iter()
        .filter(|v| v.vni == vni)
        .flat_map(|v| v.prefixes.iter().map(|p| p.prefix.clone()))
        .collect()
}

#[test]
fn only_prefixes_the_bgpvpn_allows_are_advertised() {
    let mut world = two_node_world();
    world.vpns[0]["spec"]["allowedPrefixes"] = json!(["192.0.2.0/24", "2001:db8::/32"]);
    world.namespaces.push(namespace("other", json!({})));
    world.pods.push(pod("other", "o", "o", "n1", "10.0.0.50"));
    world.bindings.push(binding(
        "other",
        "o",
        "vpn-a",
        1,
        json!({"podSelector": {"matchLabels": {"app": "o"}}, "advertisePrefixes": ["192.0.2.128/25"]}),
    ));
    let refused = [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.50/32",
        "10.96.0.0/12",
        "172.30.0.0/24",
        "169.254.1.0/24",
        "fe80::/64",
        "224.0.0.0/4",
        "127.0.0.0/8",
        "0.0.0.0/32",
        "192.0.0.0/8",
    ];
    let mut asked: Vec<&str> = refused.to_vec();
    asked.extend(["192.0.2.0/25", "10.0.0.84/32", "2001:DB8:5::/48"]);
    world.bindings[0]["spec"]["advertisePrefixes"] = json!(asked);
    let plan = world.plan();
    assert_eq!(
        prefixes_on(&plan, "n1", 1001),
        [
            "10.0.0.84/32",
            "192.0.2.0/25",
            "192.0.2.128/25",
            "2001:db8:5::/48"
        ]
    );
    assert_eq!(
        prefixes_on(&plan, "n2", 1001),
        ["10.0.0.84/32", "192.0.2.0/25", "2001:db8:5::/48"],
        "the other tenant's prefix stays on its node"
    );

    let web = &plan.bindings[&key("demo", "web")];
    let allowed = cond(&web.conditions, "PrefixesAllowed");
    assert_eq!((allowed.ok, allowed.reason), (false, reasons::PREFIX_NOT_ALLOWED));
    for prefix in refused {
        assert!(
            allowed.message.contains(&format!("{prefix} (")),
            "{prefix} not named: {}",
            allowed.message
        );
    }
    assert!(
        allowed.message.contains("pod other/o") && allowed.message.contains("a default route"),
        "{}",
        allowed.message
    );
    assert!(cond(&web.conditions, "WithinLimits").ok);
    assert_eq!(
        cond(&web.conditions, "Ready").reason,
        reasons::NODES_NOT_READY,
        "the binding's pods are programmed as before"
    );
    assert!(cond(&plan.bindings[&key("other", "o")].conditions, "PrefixesAllowed").ok);

    // empty allowedPrefixes: only the bound pods' own addresses
    world.vpns[0]["spec"]["allowedPrefixes"] = json!([]);
    let plan = world.plan();
    assert_eq!(prefixes_on(&plan, "n1", 1001), ["10.0.0.84/32"]);
    assert!(!cond(&plan.bindings[&key("other", "o")].conditions, "PrefixesAllowed").ok);

    // an invalid policy makes the BGPVPN invalid, not permissive
    world.vpns[0]["spec"]["allowedPrefixes"] = json!(["10.0.0.1/8"]);
    let plan = world.plan();
    assert_eq!(
        cond(&plan.bgpvpns["vpn-a"].conditions, "Valid").reason,
        reasons::INVALID
    );
    assert!(plan.nodes["n1"].spec.l3vnis.is_empty());
}

#[test]
fn a_bgpvpn_advertises_at_most_its_limit_older_bindings_first() {
    let limit = bgpvpn_crds::schema::MAX_BGPVPN_PREFIXES as usize;
    let per_binding = bgpvpn_crds::schema::MAX_ADVERTISED_PREFIXES as usize;
    let full = limit / per_binding;
    let mut world = two_node_world();
    world.vpns[0]["spec"]["allowedPrefixes"] = json!(["10.128.0.0/9"]);
    world.vpns.push(vpn("vpn-b", 2002, 0));
    world.vpns[1]["spec"]["allowedPrefixes"] = json!(["10.64.0.0/16"]);
    world.bindings.push(binding(
        "demo",
        "b",
        "vpn-b",
        0,
        json!({"podSelector": {"matchLabels": {"app": "db"}}, "advertisePrefixes": ["10.64.1.0/24"]}),
    ));
    for i in 0..=full {
        let mut prefixes: Vec<String> = (0..per_binding)
            .map(|j| format!("10.{}.{j}.0/24", 128 + i))
            .collect();
        if i == full {
            // already advertised by an older binding: costs nothing
            prefixes[0] = "10.128.0.0/24".into();
        }
        let name = format!("flood-{i:02}");
        // the newest first in the list: the creation order decides, not the list order
        world.bindings.insert(
            0,
            binding(
                "demo",
                &name,
                "vpn-a",
                100 + i as i64,
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "advertisePrefixes": prefixes}),
            ),
        );
    }
    let plan = world.plan();
    assert_eq!(prefixes_on(&plan, "n1", 1001).len(), limit);
    assert!(prefixes_on(&plan, "n1", 1001).contains(&format!("10.{}.63.0/24", 128 + full - 1)));
    assert_eq!(
        prefixes_on(&plan, "n1", 2002),
        ["10.64.1.0/24"],
        "another BGPVPN is unaffected"
    );
    assert!(
        cond(
            &plan.bindings[&key("demo", &format!("flood-{:02}", full - 1))].conditions,
            "WithinLimits"
        )
        .ok
    );
    let over = cond(
        &plan.bindings[&key("demo", &format!("flood-{full:02}"))].conditions,
        "WithinLimits",
    );
    assert_eq!((over.ok, over.reason), (false, reasons::BGPVPN_PREFIX_LIMIT));
    assert!(
        over.message
            .starts_with(&format!("{} advertisePrefixes left out", per_binding - 1)),
        "{}",
        over.message
    );
    assert!(
        cond(
            &plan.bindings[&key("demo", &format!("flood-{full:02}"))].conditions,
            "PrefixesAllowed"
        )
        .ok,
        "a limit is not a policy refusal"
    );
    assert!(cond(&plan.bindings[&key("demo", "b")].conditions, "WithinLimits").ok);
}

#[test]
fn objects_that_cannot_be_read_are_left_out_and_named() {
    let mut world = two_node_world();
    let plan = world.plan();
    world.agents_report(&plan, true);
    // a BGPVPN with a number its type cannot hold, and a binding to it
    let mut bad = vpn("vpn-bad", 1002, 1);
    bad["spec"]["localPref"] = json!(8_589_934_592u64);
    world.vpns.push(bad);
    world
        .bindings
        .push(binding("demo", "bad", "vpn-bad", 1, selector("db")));
    // n2's EVPNNodeState and the Node n3 do not decode
    world.states[1]["spec"]["l3vnis"] = json!("junk");
    world.nodes[2]["metadata"]["labels"] = json!(5);
    let plan = world.plan();

    let named: Vec<&str> = plan.malformed.keys().map(String::as_str).collect();
    assert_eq!(named, ["BGPVPN vpn-bad", "EVPNNodeState n2", "Node n3"]);
    assert!(
        plan.malformed["BGPVPN vpn-bad"].contains("cannot be read"),
        "{:?}",
        plan.malformed
    );
    let ready = cond(&plan.bindings[&key("demo", "bad")].conditions, "Ready");
    assert_eq!(ready.reason, reasons::BGPVPN_NOT_READY);
    assert!(
        ready.message.contains("BGPVPN vpn-bad cannot be read"),
        "{ready:?}"
    );
    // the nodes whose objects cannot be read are left as they are; the rest goes on
    assert_eq!(plan.nodes.keys().collect::<Vec<_>>(), ["n1"]);
    assert!(
        plan.kept_nodes["n2"].contains("its EVPNNodeState cannot be read"),
        "{:?}",
        plan.kept_nodes
    );
    assert!(
        plan.kept_nodes["n3"].contains("the Node cannot be read"),
        "{:?}",
        plan.kept_nodes
    );
    assert_eq!(plan.nodes["n1"].spec.l3vnis[0].endpoints[0].ip, "10.0.0.84");
    assert_eq!(
        cond(&plan.bindings[&key("demo", "web")].conditions, "Valid").reason,
        reasons::VALID
    );
}

#[test]
fn an_unreadable_kuryr_port_is_named_by_the_bindings_it_concerns() {
    let mut world = kuryr_world();
    world.kuryr.as_mut().unwrap().1[1]["metadata"]["labels"] = json!(5);
    let plan = world.plan();
    let ready = cond(&plan.bindings[&key("demo", "by-net")].conditions, "Ready");
    assert!(
        ready.message.contains("KuryrPort demo/db cannot be read"),
        "{ready:?}"
    );
    assert_eq!(plan.nodes["n1"].spec.l3vnis[0].endpoints.len(), 1, "web-1 still");
    assert!(
        plan.malformed.contains_key("KuryrPort demo/db"),
        "{:?}",
        plan.malformed
    );
}

/// Our object of a Node that left `nodeSelector` is deleted by the operator, and so is one that
/// names no owner; the object of a deleted Node is left to the garbage collector, and an object
/// someone else made is never touched.
#[test]
fn the_operator_retires_only_what_garbage_collection_will_not() {
    let managed = json!({"app.kubernetes.io/managed-by": "bgpvpn-operator"});
    let owned_by = |node: &str| json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": format!("uid-{node}")}]);
    let state = |name: &str, labels: &Value, owners: Value| {
        json!({"metadata": {"name": name, "uid": format!("state-{name}"), "labels": labels, "ownerReferences": owners},
            "spec": {"underlay": {"asn": 65001, "routerId": "192.0.2.1", "vtepIp": "192.0.2.1"}}})
    };
    let mut selected = node("in", "172.30.0.1");
    selected["metadata"]["labels"] = json!({"evpn": "yes"});
    let w = World {
        nodes: vec![selected, node("left", "172.30.0.2")],
        states: vec![
            state("in", &managed, owned_by("in")),
            state("left", &managed, owned_by("left")),
            state("deleted", &managed, owned_by("deleted")),
            state("ownerless", &managed, json!([])),
            state("foreign", &json!({}), json!([])),
        ],
        ..Default::default()
    };
    let mut config = config();
    config.node_selector = Some(serde_json::from_value(json!({"matchLabels": {"evpn": "yes"}})).unwrap());
    let plan = plan(&w.view(), &config);
    assert_eq!(plan.nodes.keys().collect::<Vec<_>>(), ["in"]);
    assert_eq!(
        plan.retired_nodes,
        BTreeMap::from([
            ("left".to_string(), Some("state-left".to_string())),
            ("ownerless".to_string(), Some("state-ownerless".to_string())),
        ])
    );
}
