//! The OpenStack sync on real parts: a real neutron-server 29.0.0 with the networking-bgpvpn
//! 25.0.0 service plugin (noauth, SQLite; `hack/neutron/neutron-bgpvpn.sh`) and the real
//! kube-apiserver (testkit). Neutron is changed through its own REST API; the tests
//! assert the BGPVPN / VNIBinding objects that appear, change and disappear, that hand-made
//! objects are never touched, and that nothing is deleted while Neutron is down. Error answers
//! that a healthy Neutron never gives (500, 401, bad JSON, a failing second page, a VNI out of
//! range, a partial association listing) come from a small local fake.
//!
//! The figures (Neutron tier setup, Neutron change → CR change) are printed as `MEASURE …`
//! lines (`cargo test -p bgpvpn-operator --test openstack_sync -- --nocapture`).

mod openstack_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bgpvpn_crds::validate::{validate_bgpvpn, validate_binding};
use bgpvpn_crds::{Bgpvpn, BgpvpnSpec, VniBinding};
use bgpvpn_operator::openstack::{SyncConfig, SyncMetrics, Syncer, mapping};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use openstack_support::*;
use serde_json::{Value, json};

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "bgpvpn_operator=info".into()),
        )
        .try_init();
}

fn config(url: &str) -> SyncConfig {
    SyncConfig {
        neutron_url: Some(url.to_string()),
        poll_interval_seconds: Some(1),
        request_timeout_seconds: Some(2),
        // one item per page: every listing goes through Neutron's real pagination
        page_size: Some(1),
        max_backoff_seconds: Some(2),
        ..Default::default()
    }
}

fn syncer(client: &Client, url: &str, metrics: &Arc<SyncMetrics>) -> Syncer {
    Syncer::new(client.clone(), config(url), metrics.clone()).unwrap()
}

/// With the default page size, as deployed.
fn deployed_syncer(client: &Client, url: &str, metrics: &Arc<SyncMetrics>) -> Syncer {
    Syncer::new(
        client.clone(),
        SyncConfig {
            page_size: None,
            ..config(url)
        },
        metrics.clone(),
    )
    .unwrap()
}

/// Starts the loop (as the operator runs it) in the background; the returned sender stops it.
fn spawn_loop(
    client: &Client,
    url: &str,
    metrics: &Arc<SyncMetrics>,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = deployed_syncer(client, url, metrics);
    let h = tokio::spawn(s.run(async move {
        let _ = rx.await;
    }));
    (tx, h)
}

async fn hand_made_vpn(client: &Client, name: &str, vni: u32) -> Bgpvpn {
    let spec: BgpvpnSpec = serde_json::from_value(
        json!({"vni": vni, "routeTargets": [format!("65000:{vni}")], "allowedNamespaces": {"all": true}}),
    )
    .unwrap();
    Api::<Bgpvpn>::all(client.clone())
        .create(&PostParams::default(), &Bgpvpn::new(name, spec))
        .await
        .unwrap()
}

async fn hand_made_binding(client: &Client, ns: &str, name: &str, vpn: &str) -> VniBinding {
    let spec =
        serde_json::from_value(json!({"bgpvpn": vpn, "podSelector": {"matchLabels": {"app": "x"}}})).unwrap();
    let mut b = VniBinding::new(name, spec);
    b.metadata.namespace = Some(ns.to_string());
    Api::<VniBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &b)
        .await
        .unwrap()
}

fn rv<K: kube::Resource>(o: &K) -> String {
    o.meta().resource_version.clone().unwrap()
}

/// Deletes every object the sync owns (a clean slate between tests sharing the apiserver).
async fn delete_owned(client: &Client) {
    let lp = ListParams::default().labels("bgpvpn.io/managed-by=openstack-sync");
    for b in Api::<VniBinding>::all(client.clone()).list(&lp).await.unwrap() {
        let ns = b.metadata.namespace.clone().unwrap();
        let _ = Api::<VniBinding>::namespaced(client.clone(), &ns)
            .delete(&b.metadata.name.unwrap(), &DeleteParams::default())
            .await;
    }
    for v in Api::<Bgpvpn>::all(client.clone()).list(&lp).await.unwrap() {
        let _ = Api::<Bgpvpn>::all(client.clone())
            .delete(&v.metadata.name.unwrap(), &DeleteParams::default())
            .await;
    }
}

#[tokio::test]
async fn follows_neutron_through_its_api() {
    init_logs();
    let client = bgpvpn_testkit::client_or_skip!();
    let neutron = neutron_or_skip!();
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    delete_owned(&client).await;
    let os = NeutronApi::noauth(&neutron.url);
    os.delete_all_bgpvpns().await;

    // OpenStack side, through Neutron's API: the three association kinds on separate objects
    // (a network plugged into an associated router cannot also be network-associated).
    let net1 = os.network("10.10.0.0/24").await;
    let router = os.router().await;
    let net2 = os.network("10.20.0.0/24").await;
    let port = os.port(&net2).await;
    let vni = unique_vni();
    let vpn_id = os
        .bgpvpn(
            json!({"name": "Blue VPN", "type": "l3", "vni": vni, "local_pref": 100,
                       "route_targets": [format!("64512:{vni}")], "route_distinguishers": ["64512:1"]}),
        )
        .await;
    let ra = os
        .associate(&vpn_id, "router", json!({"router_id": router}))
        .await;
    let na = os
        .associate(&vpn_id, "network", json!({"network_id": net1}))
        .await;
    let pa = os
        .associate(&vpn_id, "port", json!({"port_id": port, "advertise_fixed_ips": true,
                                           "routes": [{"type": "prefix", "prefix": "192.168.100.0/24", "local_pref": 200}]}))
        .await;
    // Kuryr side: ns_r's network is behind the router, ns_n's network is net1, ns_p holds the
    // pod whose vif is the port. ns_x matches nothing.
    let ns_r = kuryr_namespace(&client, &os.project, &uuid_like(), &router).await;
    let ns_n = kuryr_namespace(&client, &os.project, &net1, &uuid_like()).await;
    let ns_p = kuryr_namespace(&client, &os.project, &net2, &uuid_like()).await;
    let ns_x = kuryr_namespace(&client, &os.project, &uuid_like(), &uuid_like()).await;
    kuryr_port(&client, &ns_p, "web", &port, &net2).await;
    // Objects made by hand, which the sync must never change.
    let hand_vpn = hand_made_vpn(&client, &format!("hand-{}", short()), unique_vni()).await;
    let hand_binding =
        hand_made_binding(&client, &ns_r, "hand", &hand_vpn.metadata.name.clone().unwrap()).await;

    let metrics = Arc::new(SyncMetrics::default());
    let mut sync = syncer(&client, &neutron.url, &metrics);
    let report = sync.pass().await.unwrap();
    eprintln!("first pass: {report:?}");
    assert_eq!(report.created, 4, "{report:?}");

    let name = mapping::vpn_name(&vpn_id);
    let v = get_vpn(&client, &name).await.expect("the BGPVPN appears");
    assert_eq!(v.spec.vni, vni);
    assert_eq!(v.spec.route_targets, [format!("64512:{vni}")]);
    assert_eq!(v.spec.route_distinguishers, ["64512:1"]);
    assert_eq!(v.spec.local_pref, Some(100));
    let mut want_ns = vec![ns_r.clone(), ns_n.clone(), ns_p.clone()];
    want_ns.sort();
    assert_eq!(v.spec.allowed_namespaces.names, want_ns);
    assert!(!v.spec.allowed_namespaces.all && v.spec.allowed_namespaces.selector.is_none());
    validate_bgpvpn(&v.spec).unwrap();
    let labels = v.metadata.labels.clone().unwrap();
    assert_eq!(labels["bgpvpn.io/managed-by"], "openstack-sync");
    assert_eq!(labels["bgpvpn.io/openstack-bgpvpn-id"], vpn_id);
    let ann = v.metadata.annotations.clone().unwrap();
    assert_eq!(ann["bgpvpn.io/openstack-project-id"], os.project);
    assert_eq!(ann["bgpvpn.io/openstack-name"], "Blue VPN");
    assert_eq!(synced(&v).map(|s| s.0), Some("True".into()));

    let b_r = get_binding(&client, &ns_r, &mapping::binding_name(&ra))
        .await
        .expect("router binding");
    assert_eq!(
        (b_r.spec.bgpvpn.as_str(), b_r.spec.router_id.as_deref()),
        (name.as_str(), Some(router.as_str()))
    );
    let b_n = get_binding(&client, &ns_n, &mapping::binding_name(&na))
        .await
        .expect("network binding");
    assert_eq!(b_n.spec.network_id.as_deref(), Some(net1.as_str()));
    let b_p = get_binding(&client, &ns_p, &mapping::binding_name(&pa))
        .await
        .expect("port binding");
    assert_eq!(b_p.spec.port_id.as_deref(), Some(port.as_str()));
    assert_eq!(b_p.spec.advertise_prefixes, ["192.168.100.0/24"]);
    for b in [&b_r, &b_n, &b_p] {
        validate_binding(&b.spec).unwrap();
        assert_eq!(
            b.metadata.labels.as_ref().unwrap()["bgpvpn.io/managed-by"],
            "openstack-sync"
        );
    }
    assert_eq!(
        b_p.metadata.annotations.as_ref().unwrap()["bgpvpn.io/openstack-association-type"],
        "port"
    );
    assert!(
        report.unsupported.iter().any(|m| m.contains("local_pref")),
        "{:?}",
        report.unsupported
    );
    let in_x = Api::<VniBinding>::namespaced(client.clone(), &ns_x)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(in_x.items.is_empty());

    // Nothing changed: nothing is written.
    let before = owned(&client).await;
    let again = sync.pass().await.unwrap();
    assert!(!again.changed() && again.status_writes == 0, "{again:?}");
    assert_eq!(owned(&client).await, before);

    // Route targets and local_pref change in Neutron.
    os.update_bgpvpn(&vpn_id, json!({"route_targets": [format!("64512:{}", vni + 1)], "import_targets": ["64512:7"], "local_pref": null})).await;
    let r = sync.pass().await.unwrap();
    assert_eq!(r.updated, 1, "{r:?}");
    let v = get_vpn(&client, &name).await.unwrap();
    assert_eq!(v.spec.route_targets, [format!("64512:{}", vni + 1)]);
    assert_eq!(v.spec.import_targets, ["64512:7"]);
    assert_eq!(v.spec.local_pref, None);

    // An association removed: its binding goes, and so does its namespace from the guard.
    os.dissociate(&vpn_id, "network", &na).await;
    let r = sync.pass().await.unwrap();
    assert_eq!((r.deleted, r.updated), (1, 1), "{r:?}");
    assert!(
        get_binding(&client, &ns_n, &mapping::binding_name(&na))
            .await
            .is_none()
    );
    let mut want_ns = vec![ns_r.clone(), ns_p.clone()];
    want_ns.sort();
    assert_eq!(
        get_vpn(&client, &name)
            .await
            .unwrap()
            .spec
            .allowed_namespaces
            .names,
        want_ns
    );

    // An association added.
    let na2 = os
        .associate(&vpn_id, "network", json!({"network_id": net1}))
        .await;
    sync.pass().await.unwrap();
    assert!(
        get_binding(&client, &ns_n, &mapping::binding_name(&na2))
            .await
            .is_some()
    );

    // A bgpvpn whose BGPVPN name is taken by a hand-made object: reported, never overwritten,
    // and none of its bindings are written.
    let vni2 = unique_vni();
    let vpn2 = os
        .bgpvpn(json!({"name": "clash", "vni": vni2, "route_targets": [format!("64512:{vni2}")]}))
        .await;
    os.associate(&vpn2, "router", json!({"router_id": router})).await;
    let squatter = hand_made_vpn(&client, &mapping::vpn_name(&vpn2), unique_vni()).await;
    let r = sync.pass().await.unwrap();
    assert_eq!(
        r.clashes,
        [format!("BGPVPN {}", mapping::vpn_name(&vpn2))],
        "{r:?}"
    );
    let after = get_vpn(&client, &mapping::vpn_name(&vpn2)).await.unwrap();
    assert_eq!((rv(&after), &after.spec), (rv(&squatter), &squatter.spec));
    assert!(after.metadata.labels.is_none());
    let bound: Vec<VniBinding> = Api::<VniBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(!bound.iter().any(|b| b.spec.bgpvpn == mapping::vpn_name(&vpn2)));
    poll("NameClash event", TIMEOUT, || {
        let c = client.clone();
        let n = mapping::vpn_name(&vpn2);
        async move { (!events(&c, "default", &n, "NameClash").await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(metrics.name_clashes.get(), 1);
    // still reported, still untouched, on the next pass
    let r = sync.pass().await.unwrap();
    assert_eq!(r.clashes.len(), 1);
    assert_eq!(
        rv(&get_vpn(&client, &mapping::vpn_name(&vpn2)).await.unwrap()),
        rv(&squatter)
    );

    // Data the cluster cannot take (no route target left): reported, the object kept as it was.
    let vni3 = unique_vni();
    let vpn3 = os
        .bgpvpn(json!({"name": "rt", "vni": vni3, "route_targets": [format!("64512:{vni3}")]}))
        .await;
    sync.pass().await.unwrap();
    let kept_before = get_vpn(&client, &mapping::vpn_name(&vpn3)).await.unwrap();
    os.update_bgpvpn(&vpn3, json!({"route_targets": []})).await;
    let r = sync.pass().await.unwrap();
    assert_eq!(r.invalid, std::slice::from_ref(&vpn3), "{r:?}");
    let kept = get_vpn(&client, &mapping::vpn_name(&vpn3)).await.unwrap();
    assert_eq!(kept.spec, kept_before.spec);
    let (status, reason, message) = synced(&kept).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidNeutronData"),
        "{message}"
    );
    assert!(message.contains("route target"), "{message}");
    assert_eq!(metrics.invalid_bgpvpns.get(), 1);
    // A bgpvpn without a VNI is reported and not mirrored.
    let vpn4 = os
        .bgpvpn(json!({"name": "novni", "route_targets": ["64512:4"]}))
        .await;
    let r = sync.pass().await.unwrap();
    assert!(r.invalid.contains(&vpn4));
    assert!(get_vpn(&client, &mapping::vpn_name(&vpn4)).await.is_none());
    poll("InvalidNeutronData event", TIMEOUT, || {
        let c = client.clone();
        let n = mapping::vpn_name(&vpn4);
        async move {
            events(&c, "default", &n, "InvalidNeutronData")
                .await
                .into_iter()
                .next()
        }
    })
    .await;

    // The bgpvpn deleted in Neutron: its BGPVPN and bindings go.
    os.delete_bgpvpn(&vpn_id).await;
    let r = sync.pass().await.unwrap();
    assert_eq!(r.deleted, 4, "{r:?}");
    assert!(get_vpn(&client, &name).await.is_none());
    for (ns, a) in [(&ns_r, &ra), (&ns_n, &na2), (&ns_p, &pa)] {
        assert!(
            get_binding(&client, ns, &mapping::binding_name(a))
                .await
                .is_none()
        );
    }

    // The hand-made objects were never changed.
    let hv = get_vpn(&client, &hand_vpn.metadata.name.clone().unwrap())
        .await
        .unwrap();
    assert_eq!(rv(&hv), rv(&hand_vpn));
    let hb = get_binding(&client, &ns_r, "hand").await.unwrap();
    assert_eq!(rv(&hb), rv(&hand_binding));

    // Clean up: Neutron emptied, the sync removes what it owns; the hand-made objects stay.
    os.delete_all_bgpvpns().await;
    sync.pass().await.unwrap();
    assert!(owned_names(&client).await.is_empty());
    assert!(get_vpn(&client, &mapping::vpn_name(&vpn2)).await.is_some());
    for n in [hand_vpn.metadata.name.clone().unwrap(), mapping::vpn_name(&vpn2)] {
        Api::<Bgpvpn>::all(client.clone())
            .delete(&n, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// A cluster without Kuryr (its CRDs absent): the admin's network label maps a namespace to a
/// Neutron network; a network association of it, and a router association of a router with an
/// interface on it, bind the whole namespace. Another project's namespace on the same network
/// stays unbound.
#[tokio::test]
async fn without_kuryr_the_admins_network_label_maps_namespaces() {
    init_logs();
    let client = bgpvpn_testkit::client_or_skip!();
    let neutron = neutron_or_skip!();
    let _serial = SERIAL.lock().await;
    uninstall_kuryr_crds(&client).await;
    delete_owned(&client).await;
    let os = NeutronApi::noauth(&neutron.url);
    os.delete_all_bgpvpns().await;

    let (net_a, net_b) = (os.network("10.30.0.0/24").await, os.network("10.40.0.0/24").await);
    let router = os.router().await;
    os.router_interface(&router, &net_b).await;
    let vni = unique_vni();
    let vpn_id = os
        .bgpvpn(
            json!({"name": "no kuryr", "type": "l3", "vni": vni, "route_targets": [format!("64512:{vni}")]}),
        )
        .await;
    let na = os
        .associate(&vpn_id, "network", json!({"network_id": net_a}))
        .await;
    let ra = os
        .associate(&vpn_id, "router", json!({"router_id": router}))
        .await;
    let ns_a = network_namespace(&client, &os.project, &net_a).await;
    let ns_b = network_namespace(&client, &os.project, &net_b).await;
    let foreign = network_namespace(&client, "another-project", &net_a).await;
    let unlabelled = project_namespace(&client, &os.project).await;

    let metrics = Arc::new(SyncMetrics::default());
    let mut sync = syncer(&client, &neutron.url, &metrics);
    let report = sync.pass().await.unwrap();
    assert_eq!(report.created, 3, "{report:?}");
    let name = mapping::vpn_name(&vpn_id);
    let mut want = vec![ns_a.clone(), ns_b.clone()];
    want.sort();
    assert_eq!(
        get_vpn(&client, &name)
            .await
            .unwrap()
            .spec
            .allowed_namespaces
            .names,
        want
    );
    for (ns, association) in [(&ns_a, &na), (&ns_b, &ra)] {
        let b = get_binding(&client, ns, &mapping::binding_name(association))
            .await
            .unwrap_or_else(|| panic!("no binding in {ns}"));
        // the whole namespace: every pod of it
        assert_eq!(b.spec.pod_selector, Some(Default::default()), "{ns}");
        assert!(b.spec.network_id.is_none() && b.spec.router_id.is_none());
        validate_binding(&b.spec).unwrap();
    }
    for ns in [&foreign, &unlabelled] {
        let there = Api::<VniBinding>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap();
        assert!(there.items.is_empty(), "{ns}: {:?}", there.items);
    }
    poll(
        "a NamespaceNotMapped Event naming the other project's namespace",
        TIMEOUT,
        || async {
            let warned = events(&client, "default", &name, "NamespaceNotMapped").await;
            warned
                .iter()
                .any(|e| e.note.as_deref().unwrap_or("").contains(&foreign))
                .then_some(())
        },
    )
    .await;
    // a second pass writes nothing
    let again = sync.pass().await.unwrap();
    assert!(!again.changed(), "{again:?}");

    // the admin takes the label away: the binding goes
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            &ns_a,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"labels": {"bgpvpn.io/openstack-network-id": null}}}),
            ),
        )
        .await
        .unwrap();
    let r = sync.pass().await.unwrap();
    assert_eq!(r.deleted, 1, "{r:?}");
    assert!(
        get_binding(&client, &ns_a, &mapping::binding_name(&na))
            .await
            .is_none()
    );

    os_cleanup(&os, &mut sync, &client).await;
    install_kuryr_crds(&client).await;
}

#[tokio::test]
async fn measures_neutron_change_to_cr_change() {
    init_logs();
    let client = bgpvpn_testkit::client_or_skip!();
    let neutron = neutron_or_skip!();
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    delete_owned(&client).await;
    let os = NeutronApi::noauth(&neutron.url);
    os.delete_all_bgpvpns().await;
    let router = os.router().await;
    let ns = kuryr_namespace(&client, &os.project, &uuid_like(), &router).await;
    // a realistic background: a few other bgpvpns with associations
    for _ in 0..5 {
        let v = unique_vni();
        let id = os
            .bgpvpn(json!({"vni": v, "route_targets": [format!("64512:{v}")]}))
            .await;
        os.associate(&id, "router", json!({"router_id": router})).await;
    }
    let metrics = Arc::new(SyncMetrics::default());
    let mut passes = Vec::new();
    let mut probe = deployed_syncer(&client, &neutron.url, &metrics);
    for _ in 0..5 {
        passes.push(probe.pass().await.unwrap().duration);
    }
    eprintln!(
        "MEASURE sync pass (6 bgpvpns with a router association each, no change): {}",
        stats(passes)
    );

    let poll_s = config(&neutron.url).poll_interval_seconds.unwrap();
    let (stop, handle) = spawn_loop(&client, &neutron.url, &metrics);
    let (mut created, mut updated, mut associated, mut deleted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let vni = unique_vni();
        let id = os
            .bgpvpn(json!({"vni": vni, "route_targets": [format!("64512:{vni}")]}))
            .await;
        let t0 = Instant::now();
        let name = mapping::vpn_name(&id);
        poll("BGPVPN created", TIMEOUT, || {
            let (c, n) = (client.clone(), name.clone());
            async move { get_vpn(&c, &n).await }
        })
        .await;
        created.push(t0.elapsed());

        os.update_bgpvpn(&id, json!({"route_targets": ["64512:1"]})).await;
        let t0 = Instant::now();
        poll("route targets updated", TIMEOUT, || {
            let (c, n) = (client.clone(), name.clone());
            async move {
                get_vpn(&c, &n)
                    .await
                    .filter(|v| v.spec.route_targets == ["64512:1"])
            }
        })
        .await;
        updated.push(t0.elapsed());

        let a = os.associate(&id, "router", json!({"router_id": router})).await;
        let t0 = Instant::now();
        poll("binding created", TIMEOUT, || {
            let (c, n, b) = (client.clone(), ns.clone(), mapping::binding_name(&a));
            async move { get_binding(&c, &n, &b).await }
        })
        .await;
        associated.push(t0.elapsed());

        os.delete_bgpvpn(&id).await;
        let t0 = Instant::now();
        poll("BGPVPN deleted", TIMEOUT, || {
            let (c, n) = (client.clone(), name.clone());
            async move { get_vpn(&c, &n).await.is_none().then_some(()) }
        })
        .await;
        deleted.push(t0.elapsed());
    }
    eprintln!(
        "MEASURE Neutron change -> CR change, poll interval {poll_s} s (bound: poll interval + one pass):"
    );
    eprintln!(
        "MEASURE   bgpvpn created -> BGPVPN created:       {}",
        stats(created)
    );
    eprintln!(
        "MEASURE   route targets changed -> spec changed:  {}",
        stats(updated)
    );
    eprintln!(
        "MEASURE   router associated -> VNIBinding created: {}",
        stats(associated)
    );
    eprintln!(
        "MEASURE   bgpvpn deleted -> BGPVPN deleted:       {}",
        stats(deleted)
    );
    stop.send(()).unwrap();
    handle.await.unwrap();
    assert_eq!(metrics.failures_total(), 0);
    os.delete_all_bgpvpns().await;
    probe.pass().await.unwrap();
    assert!(owned_names(&client).await.is_empty());
}

#[tokio::test]
async fn neutron_down_deletes_nothing_and_is_reported() {
    init_logs();
    let client = bgpvpn_testkit::client_or_skip!();
    let _shared = neutron_or_skip!(); // the venv is there
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    delete_owned(&client).await;
    // a Neutron of its own, to stop and start
    let mut neutron = Server::start("neutron-bgpvpn.sh", &[]).expect("a second neutron-server");
    eprintln!(
        "MEASURE neutron tier (warm venv): setup {:.1} s, start {:.1} s",
        neutron.setup_time.as_secs_f64(),
        neutron.start_time.as_secs_f64()
    );
    let os = NeutronApi::noauth(&neutron.url);
    let router = os.router().await;
    let vni = unique_vni();
    let id = os
        .bgpvpn(json!({"vni": vni, "route_targets": [format!("64512:{vni}")]}))
        .await;
    let assoc = os.associate(&id, "router", json!({"router_id": router})).await;
    let ns = kuryr_namespace(&client, &os.project, &uuid_like(), &router).await;
    let metrics = Arc::new(SyncMetrics::default());
    let mut sync = syncer(&client, &neutron.url, &metrics);
    sync.pass().await.unwrap();
    let name = mapping::vpn_name(&id);
    let vpn_before = get_vpn(&client, &name).await.unwrap();
    let binding_before = get_binding(&client, &ns, &mapping::binding_name(&assoc))
        .await
        .unwrap();

    neutron.stop();
    let err = sync.pass().await.unwrap_err();
    assert_eq!(err.reason(), "NeutronUnreachable", "{err}");
    let vpn = get_vpn(&client, &name).await.expect("kept");
    assert_eq!(
        (vpn.spec.clone(), vpn.metadata.generation),
        (vpn_before.spec.clone(), vpn_before.metadata.generation)
    );
    let binding = get_binding(&client, &ns, &mapping::binding_name(&assoc))
        .await
        .expect("kept");
    assert_eq!(rv(&binding), rv(&binding_before));
    let (status, reason, message) = synced(&vpn).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NeutronUnreachable")
    );
    assert!(message.contains("kept"), "{message}");
    assert_eq!(metrics.failure_count("neutron_unreachable"), 1);
    assert_eq!(metrics.up.get(), 0);
    poll("SyncFailed event", TIMEOUT, || {
        let (c, n) = (client.clone(), name.clone());
        async move { events(&c, "default", &n, "SyncFailed").await.into_iter().next() }
    })
    .await;

    // The loop keeps retrying with backoff, and still deletes nothing.
    let (stop, handle) = spawn_loop(&client, &neutron.url, &metrics);
    poll("three more failed passes", Duration::from_secs(20), || {
        let m = metrics.clone();
        async move { (m.failure_count("neutron_unreachable") >= 4).then_some(()) }
    })
    .await;
    stop.send(()).unwrap();
    handle.await.unwrap();
    let mut want = vec![format!("{ns}/{}", mapping::binding_name(&assoc)), name.clone()];
    want.sort();
    assert_eq!(owned_names(&client).await, want);
    assert_eq!(
        rv(&get_binding(&client, &ns, &mapping::binding_name(&assoc))
            .await
            .unwrap()),
        rv(&binding_before)
    );

    // Neutron back (on a new port): in sync again, nothing was recreated.
    neutron.restart();
    let mut sync = syncer(&client, &neutron.url, &metrics);
    let r = sync.pass().await.unwrap();
    assert!(!r.changed(), "{r:?}");
    let vpn = get_vpn(&client, &name).await.unwrap();
    assert_eq!(vpn.metadata.uid, vpn_before.metadata.uid);
    assert_eq!(synced(&vpn).map(|s| s.0), Some("True".into()));
    assert_eq!(metrics.up.get(), 1);

    os_cleanup(&NeutronApi::noauth(&neutron.url), &mut sync, &client).await;
    neutron.stop();
}

async fn os_cleanup(os: &NeutronApi, sync: &mut Syncer, client: &Client) {
    os.delete_all_bgpvpns().await;
    sync.pass().await.unwrap();
    assert!(owned_names(client).await.is_empty());
}

/// What the fake Neutron answers.
#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Good,
    ServerError,
    Unauthorized,
    BadJson,
    WrongShape,
    ItemWithoutId,
    SecondPageFails,
    Slow,
    VniOutOfRange,
    VniChanged,
    PartialAssociations,
    Empty,
}

struct Fake {
    mode: Mutex<Mode>,
    vpn: String,
    second: String,
    assoc: String,
    router: String,
    vni: u32,
}

fn page(items: Vec<Value>, key: &str, query: &str, base: &str) -> Value {
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(usize::MAX);
    let start = match param("marker") {
        Some(m) => items
            .iter()
            .position(|i| i["id"] == m.as_str())
            .map(|p| p + 1)
            .unwrap_or(items.len()),
        None => 0,
    };
    let chunk: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let mut out = json!({ key: chunk });
    if start + chunk.len() < items.len() {
        let last = chunk.last().unwrap()["id"].as_str().unwrap().to_string();
        out[format!("{key}_links")] = json!([{"rel": "next", "href": format!("http://neutron.example{base}?limit={limit}&marker={last}")}]);
    }
    out
}

async fn fake_handler(
    axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let mode = fake.mode.lock().unwrap().clone();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let json_ok = |v: Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match mode {
        Mode::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"NeutronError\": {\"type\": \"HTTPInternalServerError\"}}",
            )
                .into_response();
        }
        Mode::Unauthorized => {
            return (StatusCode::UNAUTHORIZED, "Authentication required").into_response();
        }
        Mode::BadJson => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"bgpvpns\": [{\"id\": ",
            )
                .into_response();
        }
        Mode::Slow => tokio::time::sleep(Duration::from_secs(4)).await,
        Mode::SecondPageFails if query.contains("marker=") => {
            return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
        }
        _ => {}
    }
    let vpn = |id: &str, vni: Value, routers: Value| {
        json!({"id": id, "name": "fake", "project_id": "p", "tenant_id": "p", "type": "l3", "route_targets": ["64512:9"],
               "import_targets": [], "export_targets": [], "route_distinguishers": [], "vni": vni, "local_pref": null,
               "networks": [], "routers": routers, "ports": []})
    };
    if path == "/v2.0/bgpvpn/bgpvpns" {
        let items = match mode {
            Mode::Empty => vec![],
            Mode::WrongShape => return json_ok(json!({"bgpvpns": {"not": "a list"}})),
            Mode::ItemWithoutId => vec![json!({"name": "no id"})],
            Mode::VniOutOfRange => vec![vpn(&fake.vpn, json!(16_777_216), json!([fake.router]))],
            Mode::VniChanged => vec![vpn(&fake.vpn, json!(fake.vni + 1), json!([fake.router]))],
            Mode::SecondPageFails => vec![
                vpn(&fake.vpn, json!(fake.vni), json!([fake.router])),
                vpn(&fake.second, json!(fake.vni + 2), json!([])),
            ],
            _ => vec![vpn(&fake.vpn, json!(fake.vni), json!([fake.router]))],
        };
        return json_ok(page(items, "bgpvpns", &query, &path));
    }
    if let Some(rest) = path.strip_prefix("/v2.0/bgpvpn/bgpvpns/") {
        let (_, kind) = rest.split_once('/').unwrap_or_default();
        let items = match (kind, &mode) {
            ("router_associations", Mode::PartialAssociations) => vec![],
            ("router_associations", _) => vec![
                json!({"id": fake.assoc, "router_id": fake.router, "project_id": "p", "advertise_extra_routes": true}),
            ],
            _ => vec![],
        };
        return json_ok(page(items, kind, &query, &path));
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}

#[tokio::test]
async fn failures_of_neutron_never_delete_anything() {
    init_logs();
    let client = bgpvpn_testkit::client_or_skip!();
    let _serial = SERIAL.lock().await;
    install_kuryr_crds(&client).await;
    delete_owned(&client).await;
    let fake = Arc::new(Fake {
        mode: Mutex::new(Mode::Good),
        vpn: uuid_like(),
        second: uuid_like(),
        assoc: uuid_like(),
        router: uuid_like(),
        vni: unique_vni(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(fake_handler)
        .with_state(fake.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ns = kuryr_namespace(&client, "p", &uuid_like(), &fake.router).await;
    let set = |m: Mode| *fake.mode.lock().unwrap() = m;

    let metrics = Arc::new(SyncMetrics::default());
    let mut sync = syncer(&client, &url, &metrics);
    let r = sync.pass().await.unwrap();
    assert_eq!(r.created, 2, "{r:?}");
    let name = mapping::vpn_name(&fake.vpn);
    let binding = mapping::binding_name(&fake.assoc);
    let before = owned_names(&client).await;
    let binding_rv = rv(&get_binding(&client, &ns, &binding).await.unwrap());
    let spec = get_vpn(&client, &name).await.unwrap().spec;

    let cases = [
        (Mode::ServerError, "NeutronServerError", "neutron_error"),
        (Mode::Unauthorized, "NeutronUnauthorized", "neutron_unauthorized"),
        (Mode::BadJson, "NeutronBadResponse", "neutron_bad_response"),
        (Mode::WrongShape, "NeutronBadResponse", "neutron_bad_response"),
        (Mode::ItemWithoutId, "NeutronBadResponse", "neutron_bad_response"),
        (Mode::SecondPageFails, "NeutronServerError", "neutron_error"),
        (Mode::Slow, "NeutronUnreachable", "neutron_unreachable"),
    ];
    for (mode, reason, metric) in cases {
        set(mode.clone());
        let t0 = Instant::now();
        let err = sync.pass().await.unwrap_err();
        assert_eq!(err.reason(), reason, "{mode:?}: {err}");
        if mode == Mode::Slow {
            assert!(
                t0.elapsed() < Duration::from_secs(4),
                "the request timeout (2 s) applies"
            );
        }
        assert!(metrics.failure_count(metric) >= 1, "{mode:?}");
        assert_eq!(owned_names(&client).await, before, "{mode:?} deleted something");
        assert_eq!(
            rv(&get_binding(&client, &ns, &binding).await.unwrap()),
            binding_rv,
            "{mode:?} changed the binding"
        );
        let v = get_vpn(&client, &name).await.unwrap();
        assert_eq!(v.spec, spec, "{mode:?} changed the BGPVPN");
        assert_eq!(
            synced(&v).map(|s| (s.0, s.1)),
            Some(("False".into(), reason.into())),
            "{mode:?}"
        );
    }

    // A VNI out of range for one bgpvpn: reported, its objects kept as they are.
    set(Mode::VniOutOfRange);
    let r = sync.pass().await.unwrap();
    assert_eq!(r.invalid, std::slice::from_ref(&fake.vpn));
    assert_eq!(owned_names(&client).await, before);
    let v = get_vpn(&client, &name).await.unwrap();
    assert_eq!(v.spec.vni, fake.vni);
    assert_eq!(synced(&v).map(|s| s.1), Some("InvalidNeutronData".into()));
    // An association listing that lacks what the bgpvpn lists: partial, so nothing is deleted.
    set(Mode::PartialAssociations);
    let r = sync.pass().await.unwrap();
    assert_eq!(r.invalid, std::slice::from_ref(&fake.vpn));
    assert_eq!(
        rv(&get_binding(&client, &ns, &binding).await.unwrap()),
        binding_rv
    );

    // A VNI changed in Neutron is mirrored.
    set(Mode::VniChanged);
    let r = sync.pass().await.unwrap();
    assert_eq!(r.updated, 1, "{r:?}");
    assert_eq!(get_vpn(&client, &name).await.unwrap().spec.vni, fake.vni + 1);
    assert_eq!(
        synced(&get_vpn(&client, &name).await.unwrap()).map(|s| s.0),
        Some("True".into())
    );

    // A complete, valid listing without the bgpvpn: now its objects go.
    set(Mode::Empty);
    let r = sync.pass().await.unwrap();
    assert_eq!(r.deleted, 2, "{r:?}");
    assert!(owned_names(&client).await.is_empty());
    server.abort();
}

#[tokio::test]
async fn config_mistakes_are_refused_up_front() {
    let cfg: SyncConfig =
        serde_yaml::from_str("neutronUrl: http://127.0.0.1:9\npollIntervalSeconds: 0\n").unwrap();
    assert!(cfg.check().unwrap_err().contains("pollIntervalSeconds"));
    assert!(serde_yaml::from_str::<SyncConfig>("neutronURL: x\n").is_err());
}
