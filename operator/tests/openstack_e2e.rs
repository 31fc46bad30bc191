//! The seed flow end to end, with the whole operator in-process (its configuration switches the
//! OpenStack sync on): the admin creates a BGPVPN with a VNI in Neutron, the tenant associates
//! its router there, and, with no Kubernetes object written by hand, the pod of the tenant's
//! namespace (Kuryr put it on a network behind that router) appears as an endpoint of that VNI
//! in the EVPNNodeState of its node. Dissociating the router in Neutron takes it out again.
//! Real neutron-server + networking-bgpvpn (noauth), real kube-apiserver v1.20.2.

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

/// Runs the operator on a runtime of its own (a client belongs to the runtime that made it).
fn start_operator(neutron_url: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let kubeconfig = bgpvpn_testkit::server()
        .expect("apiserver")
        .kubeconfig
        .clone();
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
    let body = json!({"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(body).unwrap(),
    )
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
    api.create(
        &PostParams::default(),
        &serde_json::from_value(body).unwrap(),
    )
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
    install_kuryr_crds(&client).await;
    let os = NeutronApi::noauth(&neutron.url);

    // What Kuryr did: the namespace's network (a real Neutron network behind a real router) and
    // a Neutron port for the pod, recorded in KuryrNetwork / KuryrPort.
    let router = os.router().await;
    let net = os.network("10.20.0.0/24").await;
    let port = os.port(&net).await;
    let ns = kuryr_namespace(&client, &net, &router).await;
    let node = node(&client, "172.31.9.1").await;
    running_pod(&client, &ns, "web", &node, "10.20.0.5").await;
    kuryr_port(&client, &ns, "web", &port, &net).await;
    start_operator(&neutron.url);

    // The admin's BGPVPN and the tenant's router association, in Neutron only.
    let vni = unique_vni();
    let vpn = os
        .bgpvpn(json!({"name": "seed", "vni": vni, "route_targets": [format!("64512:{vni}")]}))
        .await;
    let assoc = os
        .associate(&vpn, "router", json!({"router_id": router}))
        .await;
    let t0 = Instant::now();
    let eps = loop {
        if let Some(e) = endpoints_of(&client, &node, vni)
            .await
            .filter(|e| !e.is_empty())
        {
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
