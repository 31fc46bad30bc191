//! The seed flow end to end, with the whole operator in-process (its configuration switches the
//! OpenStack sync on): the admin creates a BGPVPN with a VNI in Neutron, the tenant associates
//! its router there, and, with no Kubernetes object written by hand, the pod of the tenant's
//! namespace (Kuryr put it on a network behind that router) appears as an endpoint of that VNI
//! in the EVPNNodeState of its node. Dissociating the router in Neutron takes it out again.
//! A project's associations reach only the namespaces the admin mapped to that project, and a
//! tenant that puts the sync's label on a binding of its own gains nothing by it.
//! Real neutron-server + networking-bgpvpn (noauth), real kube-apiserver (v1.37.2).

mod openstack_support;

use std::time::Instant;

use bgpvpn_crds::EvpnNodeState;
use bgpvpn_operator::config::Config;
use bgpvpn_operator::openstack::mapping;
use bgpvpn_operator::run::{Operator, Options};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use openstack_support::*;
use serde_json::json;

/// Runs the operator (once for the tests of this binary) on a runtime of its own (a client
/// belongs to the runtime that made it).
fn start_operator(neutron_url: &str) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| run_operator(neutron_url));
}

fn run_operator(neutron_url: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let kubeconfig = bgpvpn_testkit::server().expect("apiserver").kubeconfig.clone();
    let config = Config::parse(&format!(
        "underlay:\n  asn: 65001\ndebounceMillis: 50\nkuryrDiscoverySeconds: 1\nopenstack:\n  neutronUrl: {neutron_url}\n  pollIntervalSeconds: 1\n  maxBackoffSeconds: 2\n"
    ))
    .expect("operator configuration");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
            let client = Client::try_from(
                kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .unwrap(),
            )
            .unwrap();
            let operator = Operator::new(
                client,
                config,
                Options {
                    instance: "openstack-e2e".into(),
                    ..Default::default()
                },
            );
            let (_keep, stop) = bgpvpn_operator::shutdown::channel();
            operator.run(stop).await.expect("operator runs");
        });
    });
}

async fn node(client: &Client, ip: &str) -> String {
    let name = bgpvpn_testkit::unique_name("node");
    let api: Api<Node> = Api::all(client.clone());
    let body =
        json!({"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
        .await
        .unwrap();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}})),
    )
    .await
    .unwrap();
    name
}

/// A pod as a kubelet reports it: Running on `node` with `ip`.
async fn running_pod(client: &Client, ns: &str, name: &str, node: &str, ip: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let body = json!({"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}});
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
        .await
        .unwrap();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})),
    )
    .await
    .unwrap();
}

async fn endpoints_of(client: &Client, node: &str, vni: u32) -> Option<Vec<String>> {
    let state = Api::<EvpnNodeState>::all(client.clone())
        .get_opt(node)
        .await
        .unwrap()?;
    state
        .spec
        .l3vnis
        .iter()
        .find(|l| l.vni == vni)
        .map(|l| l.endpoints.iter().map(|e| e.ip.clone()).collect())
}

#[tokio::test]
async fn a_router_associated_in_neutron_reaches_the_node_state() {
    let client = bgpvpn_testkit::client_or_skip!();
    let neutron = neutron_or_skip!();
    // one at a time: the tests share Neutron and the operator
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    let os = NeutronApi::noauth(&neutron.url);

    // What Kuryr did: the namespace's network (a real Neutron network behind a real router) and
    // a Neutron port for the pod, recorded in KuryrNetwork / KuryrPort.
    let router = os.router().await;
    let net = os.network("10.20.0.0/24").await;
    let port = os.port(&net).await;
    let ns = kuryr_namespace(&client, &os.project, &net, &router).await;
    let node = node(&client, "172.31.9.1").await;
    running_pod(&client, &ns, "web", &node, "10.20.0.5").await;
    kuryr_port(&client, &ns, "web", &port, &net).await;
    start_operator(&neutron.url);

    // The admin's BGPVPN and the tenant's router association, in Neutron only.
    let vni = unique_vni();
    let vpn = os
        .bgpvpn(json!({"name": "seed", "vni": vni, "route_targets": [format!("64512:{vni}")]}))
        .await;
    let assoc = os.associate(&vpn, "router", json!({"router_id": router})).await;
    let t0 = Instant::now();
    let eps = loop {
        if let Some(e) = endpoints_of(&client, &node, vni).await.filter(|e| !e.is_empty()) {
            break e;
        }
        if t0.elapsed() > TIMEOUT {
            let b = get_binding(&client, &ns, &mapping::binding_name(&assoc)).await;
            let v = get_vpn(&client, &mapping::vpn_name(&vpn)).await;
            panic!(
                "no endpoint for VNI {vni} on {node} after {TIMEOUT:?}; binding: {:?}; BGPVPN: {:?}",
                b.map(|b| b.status),
                v.map(|v| (v.spec, v.status))
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    eprintln!(
        "MEASURE Neutron router association -> EVPNNodeState endpoint (whole operator, poll 1 s): {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(eps, ["10.20.0.5"]);
    let state = Api::<EvpnNodeState>::all(client.clone())
        .get(&node)
        .await
        .unwrap();
    let l3 = state.spec.l3vnis.iter().find(|l| l.vni == vni).unwrap();
    assert_eq!(l3.bgpvpn, mapping::vpn_name(&vpn));
    assert!(l3.import_targets.contains(&format!("64512:{vni}")));
    // the binding the sync wrote is admitted (spec.allowedNamespaces.names) and resolved
    // (Ready needs a node agent, which this test has not: the controller's count is enough)
    poll(
        "the binding's endpoint counted by the controller",
        TIMEOUT,
        || {
            let (c, n, b) = (client.clone(), ns.clone(), mapping::binding_name(&assoc));
            async move { (get_binding(&c, &n, &b).await?.status?.endpoints == 1).then_some(()) }
        },
    )
    .await;

    // The tenant dissociates the router in Neutron: the VNI leaves the node.
    os.dissociate(&vpn, "router", &assoc).await;
    let t0 = Instant::now();
    poll("the VNI gone from the node", TIMEOUT, || {
        let (c, n) = (client.clone(), node.clone());
        async move {
            endpoints_of(&c, &n, vni)
                .await
                .is_none_or(|e| e.is_empty())
                .then_some(())
        }
    })
    .await;
    eprintln!(
        "MEASURE Neutron router dissociation -> endpoint gone from EVPNNodeState: {} ms",
        t0.elapsed().as_millis()
    );
    assert!(
        get_binding(&client, &ns, &mapping::binding_name(&assoc))
            .await
            .is_none()
    );
    os.delete_bgpvpn(&vpn).await;
    poll("the BGPVPN gone", TIMEOUT, || {
        let (c, n) = (client.clone(), mapping::vpn_name(&vpn));
        async move { get_vpn(&c, &n).await.is_none().then_some(()) }
    })
    .await;
}

/// Sync passes that succeeded so far (the operator's process-wide sync metrics).
fn sync_passes() -> u64 {
    use bgpvpn_operator::openstack::metrics::ResultLabel;
    bgpvpn_operator::openstack::sync_metrics()
        .passes
        .get_or_create(&ResultLabel { result: "ok" })
        .get()
}

/// Waits until the sync has made `n` more successful passes.
async fn sync_passes_after(n: u64) {
    let from = sync_passes();
    poll(&format!("{n} more OpenStack sync passes"), TIMEOUT, || async {
        (sync_passes() >= from + n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_project_reaches_only_its_namespaces_and_a_forged_label_gains_nothing() {
    use bgpvpn_crds::VniBinding;
    let client = bgpvpn_testkit::client_or_skip!();
    let neutron = neutron_or_skip!();
    // one at a time: the tests share Neutron and the operator
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    start_operator(&neutron.url);
    // two tenants of the cloud
    let p = NeutronApi::noauth(&neutron.url);
    let q = NeutronApi::noauth(&neutron.url);
    let router = p.router().await;
    let (net_a, net_x) = (p.network("10.31.0.0/24").await, q.network("10.32.0.0/24").await);
    let node = node(&client, "172.31.31.1").await;
    // P's namespace (the admin mapped it to P), its network behind P's router
    let ns_a = kuryr_namespace(&client, &p.project, &net_a, &router).await;
    running_pod(&client, &ns_a, "a", &node, "10.31.0.5").await;
    kuryr_port_with_ip(&client, &ns_a, "a", &p.port(&net_a).await, &net_a, "10.31.0.5").await;
    // Q's namespace, whose Kuryr network is (also) behind P's router: not P's to bind
    let ns_x = kuryr_namespace(&client, &q.project, &net_x, &router).await;
    running_pod(&client, &ns_x, "x", &node, "10.32.0.6").await;
    kuryr_port_with_ip(&client, &ns_x, "x", &uuid_like(), &net_x, "10.32.0.6").await;
    // Q's namespace T, with a Kuryr object that cannot be read in full (a vif without an id):
    // the sync keeps what it owns there as it is
    let ns_t = project_namespace(&client, &q.project).await;
    running_pod(&client, &ns_t, "t", &node, "10.33.0.7").await;
    let bad = json!({"apiVersion": "openstack.org/v1", "kind": "KuryrPort", "metadata": {"name": "t", "namespace": ns_t},
        "spec": {"podUid": uuid_like(), "podNodeName": node}, "status": {"vifs": {"eth0": {"default": true, "vif": {"address": "fa:16:3e:00:00:07"}}}}});
    kuryr_api(&client, "KuryrPort", &ns_t)
        .create(&PostParams::default(), &serde_json::from_value(bad).unwrap())
        .await
        .unwrap();
    // and one nested deeper than a JSON parser reads by default: the sync's lists go on
    let deep = (0..140).fold(json!("x"), |inner, _| json!({ "a": inner }));
    let deep = json!({"apiVersion": "openstack.org/v1", "kind": "KuryrPort", "metadata": {"name": "deep", "namespace": ns_t},
        "spec": {"podUid": uuid_like(), "podNodeName": node}, "status": {"vifs": {"eth0": deep}}});
    let url = kuryr_api(&client, "KuryrPort", &ns_t).resource_url().to_string();
    let create = kube::core::Request::new(url)
        .create(&PostParams::default(), serde_json::to_vec(&deep).unwrap())
        .unwrap();
    // (the answer is as deep: not parsed)
    client.request::<serde::de::IgnoredAny>(create).await.unwrap();

    // P's BGPVPN, with P's router associated
    let vni = unique_vni();
    let vpn = p
        .bgpvpn(json!({"name": "p-only", "vni": vni, "route_targets": [format!("64512:{vni}")]}))
        .await;
    let vpn_name = mapping::vpn_name(&vpn);
    p.associate(&vpn, "router", json!({"router_id": router})).await;
    // the tenant of T forges the sync's ownership label on a binding of its own, to P's BGPVPN
    let forged: VniBinding = serde_json::from_value(json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding",
        "metadata": {"name": "os-forged", "namespace": ns_t, "labels": {"bgpvpn.io/managed-by": "openstack-sync", "bgpvpn.io/openstack-bgpvpn-id": vpn}},
        "spec": {"bgpvpn": vpn_name, "podSelector": {}}}))
    .unwrap();
    Api::<VniBinding>::namespaced(client.clone(), &ns_t)
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();

    // P's pod joins P's VPN
    poll("P's pod on the node", TIMEOUT, || {
        let (c, n) = (client.clone(), node.clone());
        async move {
            endpoints_of(&c, &n, vni)
                .await
                .filter(|e| e.contains(&"10.31.0.5".to_string()))
                .map(drop)
        }
    })
    .await;
    // whatever the next passes do, they do it by now
    sync_passes_after(3).await;
    let v = get_vpn(&client, &vpn_name).await.unwrap();
    assert_eq!(
        v.spec.allowed_namespaces.names,
        std::slice::from_ref(&ns_a),
        "only P's namespace is admitted"
    );
    let eps = endpoints_of(&client, &node, vni).await.unwrap();
    assert_eq!(eps, ["10.31.0.5"], "only P's pod is in P's VPN");
    // the forged binding is left to its tenant, refused, and says why
    let b = poll("the forged binding refused", TIMEOUT, || {
        let (c, n) = (client.clone(), ns_t.clone());
        async move {
            let b = get_binding(&c, &n, "os-forged").await?;
            let ready = b
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?
                .clone();
            (ready.reason == "NotAllowed").then_some(b)
        }
    })
    .await;
    assert!(b.metadata.deletion_timestamp.is_none());
    poll("an Event saying the sync did not make it", TIMEOUT, || {
        let (c, n) = (client.clone(), ns_t.clone());
        async move {
            events(&c, &n, "os-forged", "NotMadeBySync")
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    // and the admin hears of the namespace that P's association would reach but is Q's
    let e = poll("an Event about the namespace not mapped to P", TIMEOUT, || {
        let (c, n) = (client.clone(), vpn_name.clone());
        async move {
            events(&c, "default", &n, "NamespaceNotMapped")
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    assert!(
        e.note.as_deref().unwrap_or_default().contains(&ns_x),
        "{:?}",
        e.note
    );
    p.delete_bgpvpn(&vpn).await;
}
