//! Neutron 2026.2's own EVPN on real parts: neutron-server 29 with the `evpn` service plugin over
//! ML2/OVN (`NEUTRON_BACKEND=ovn hack/neutron/neutron-bgpvpn.sh`: OVN's NB/SB ovsdb-servers and
//! ovn-northd on unix sockets) and the real kube-apiserver. Routers are made with `evpn_vni`
//! through Neutron's API; the sync mirrors each as a BGPVPN with the route target Neutron's FRR
//! derives, bound in the namespaces behind the router's networks (by Kuryr, or by the admin's
//! network label), and removes it with the router.
//!
//!     BGPVPN_REQUIRE_NEUTRON=1 cargo test -p bgpvpn-operator --test openstack_evpn -- --nocapture

mod openstack_support;

use std::sync::{Arc, OnceLock};

use bgpvpn_crds::validate::{validate_bgpvpn, validate_binding};
use bgpvpn_crds::{VniBinding, frr_auto_route_target};
use bgpvpn_operator::openstack::{EvpnRoutersConfig, SyncConfig, SyncMetrics, Syncer, mapping};
use kube::api::{Api, ListParams};
use openstack_support::*;
use serde_json::json;

/// A 4-byte AS, as a cloud may give its OVN agents: the route target keeps its low 16 bits.
const CLOUD_ASN: u32 = 4_200_000_001;

static OVN_NEUTRON: OnceLock<Result<Server, String>> = OnceLock::new();

fn ovn_neutron() -> Option<&'static Server> {
    let r = OVN_NEUTRON.get_or_init(|| {
        let s = Server::start("neutron-bgpvpn.sh", &[("NEUTRON_BACKEND", "ovn".into())])?;
        eprintln!(
            "MEASURE neutron tier (ML2/OVN + evpn): setup {:.1} s, start {:.1} s",
            s.setup_time.as_secs_f64(),
            s.start_time.as_secs_f64()
        );
        Ok(s)
    });
    if or_skip("neutron-server with ML2/OVN and the evpn plugin", r) {
        r.as_ref().ok()
    } else {
        None
    }
}

async fn evpn_router(os: &NeutronApi, vni: u32) -> (String, u32) {
    let made = os
        .call(
            reqwest::Method::POST,
            "/v2.0/routers",
            Some(json!({"router": {"name": format!("evpn-{}", short()), "evpn_vni": vni}})),
        )
        .await;
    let id = made["router"]["id"].as_str().unwrap().to_string();
    let allocated = made["router"]["evpn_vni"].as_u64().unwrap() as u32;
    (id, allocated)
}

#[tokio::test]
async fn evpn_routers_become_bgpvpns_bound_behind_their_networks() {
    let client = bgpvpn_testkit::client_or_skip!();
    let Some(neutron) = ovn_neutron() else { return };
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    let os = NeutronApi::noauth(&neutron.url);

    let (net_kuryr, net_label) = (os.network("10.51.0.0/24").await, os.network("10.52.0.0/24").await);
    let vni = unique_vni();
    let (router, got) = evpn_router(&os, vni).await;
    assert_eq!(got, vni);
    os.router_interface(&router, &net_kuryr).await;
    os.router_interface(&router, &net_label).await;
    // 0: Neutron allocates one
    let (auto_router, auto_vni) = evpn_router(&os, 0).await;
    assert!(auto_vni > 0);
    let plain = os.router().await;
    os.router_interface(&plain, &os.network("10.53.0.0/24").await)
        .await;

    let ns_kuryr = kuryr_namespace(&client, &os.project, &net_kuryr, &router).await;
    let ns_label = network_namespace(&client, &os.project, &net_label).await;
    let foreign = network_namespace(&client, "another-project", &net_label).await;

    let config = SyncConfig {
        neutron_url: Some(neutron.url.clone()),
        poll_interval_seconds: Some(1),
        request_timeout_seconds: Some(5),
        page_size: Some(1),
        evpn_routers: Some(EvpnRoutersConfig { bgp_asn: CLOUD_ASN }),
        ..Default::default()
    };
    let mut sync = Syncer::new(client.clone(), config, Arc::new(SyncMetrics::default())).unwrap();
    let report = sync.pass().await.unwrap();
    eprintln!("first pass: {report:?}");

    let name = mapping::evpn_vpn_name(&router);
    let v = get_vpn(&client, &name).await.expect("the router's BGPVPN");
    validate_bgpvpn(&v.spec).unwrap();
    assert_eq!(v.spec.vni, vni);
    assert_eq!(v.spec.route_targets, [frr_auto_route_target(CLOUD_ASN, vni)]);
    assert_eq!(v.spec.route_targets, [format!("59905:{vni}")]);
    assert!(v.spec.route_distinguishers.is_empty());
    let mut want = vec![ns_kuryr.clone(), ns_label.clone()];
    want.sort();
    assert_eq!(v.spec.allowed_namespaces.names, want);
    let ann = v.metadata.annotations.clone().unwrap();
    assert_eq!(ann["bgpvpn.io/openstack-source"], "evpn-router");
    assert_eq!(ann["bgpvpn.io/openstack-project-id"], os.project);
    assert_eq!(synced(&v).map(|s| s.0), Some("True".into()));

    let by_kuryr = get_binding(&client, &ns_kuryr, &name)
        .await
        .expect("binding by Kuryr");
    assert_eq!(by_kuryr.spec.router_id.as_deref(), Some(router.as_str()));
    let by_label = get_binding(&client, &ns_label, &name)
        .await
        .expect("binding by the label");
    assert_eq!(by_label.spec.pod_selector, Some(Default::default()));
    for b in [&by_kuryr, &by_label] {
        validate_binding(&b.spec).unwrap();
        assert_eq!(b.spec.bgpvpn, name);
    }
    let in_foreign = Api::<VniBinding>::namespaced(client.clone(), &foreign)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        in_foreign.items.is_empty(),
        "another project's namespace was bound"
    );

    // the auto-allocated router: its VNI as Neutron chose it, no namespace behind it
    let auto = get_vpn(&client, &mapping::evpn_vpn_name(&auto_router))
        .await
        .expect("the auto-VNI router's BGPVPN");
    assert_eq!(auto.spec.vni, auto_vni);
    assert!(auto.spec.allowed_namespaces.names.is_empty());
    // a router without EVPN is not mirrored
    assert!(get_vpn(&client, &mapping::evpn_vpn_name(&plain)).await.is_none());

    let again = sync.pass().await.unwrap();
    assert!(!again.changed(), "{again:?}");

    // the router deleted in Neutron (its interfaces first): its BGPVPN and bindings go
    for net in [&net_kuryr, &net_label] {
        let ports = os
            .call(
                reqwest::Method::GET,
                &format!("/v2.0/ports?device_id={router}&network_id={net}"),
                None,
            )
            .await;
        let port = ports["ports"][0]["id"].as_str().unwrap().to_string();
        os.call(
            reqwest::Method::PUT,
            &format!("/v2.0/routers/{router}/remove_router_interface"),
            Some(json!({"port_id": port})),
        )
        .await;
    }
    os.call(reqwest::Method::DELETE, &format!("/v2.0/routers/{router}"), None)
        .await;
    let r = sync.pass().await.unwrap();
    assert!(r.deleted >= 3, "{r:?}");
    assert!(get_vpn(&client, &name).await.is_none());
    assert!(get_binding(&client, &ns_label, &name).await.is_none());
    assert!(get_binding(&client, &ns_kuryr, &name).await.is_none());
    os.call(
        reqwest::Method::DELETE,
        &format!("/v2.0/routers/{auto_router}"),
        None,
    )
    .await;
    sync.pass().await.unwrap();
    assert!(owned_names(&client).await.is_empty());
}
