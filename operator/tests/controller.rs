//! The controllers against a real kube-apiserver: one operator (in-process, leading
//! without election) serves every test of this binary, as one operator serves many tenants;
//! each test uses its own namespaces, nodes, BGPVPN names and VNIs.
//!
//! Pods are created as API objects with `spec.nodeName` and then reported `Running` with their
//! IPs, as a kubelet would; Kuryr objects as Kuryr writes them; agent status as an agent writes
//! it.

mod support;

use std::sync::{Arc, OnceLock};

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use bgpvpn_operator::metrics::Metrics;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::*;

static OPERATOR: OnceLock<Arc<Metrics>> = OnceLock::new();

/// A client, with the shared operator running; `None` when the apiserver tier is skipped.
/// kube-controller-manager runs beside the API server: the operator leaves the object of a
/// deleted Node to its garbage collector.
async fn setup() -> Option<(Client, Arc<Metrics>)> {
    let client = bgpvpn_testkit::client_with_controller_manager().await?;
    install_kuryr_crds(&client).await;
    let metrics = OPERATOR
        .get_or_init(|| start_operator("controller-tests"))
        .clone();
    Some((client, metrics))
}

macro_rules! setup_or_skip {
    () => {
        match setup().await {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test]
async fn endpoints_follow_pod_churn() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let (n1, n2) = (
        node(&client, "172.31.1.1", json!({})).await,
        node(&client, "172.31.1.2", json!({})).await,
    );
    let vpn = bgpvpn_testkit::unique_name("churn");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;

    running_pod(&client, &ns, "web-1", json!({"app": "web"}), &n1, "10.1.0.10").await;
    running_pod(&client, &ns, "db", json!({"app": "db"}), &n1, "10.1.0.99").await;
    let s1 = wait_endpoints(&client, &n1, &[vni], &[(vni, &["10.1.0.10"])]).await;
    let l3 = &s1.spec.l3vnis[0];
    assert_eq!(
        (l3.vrf.clone(), l3.route_distinguisher.clone()),
        (format!("vrf-{vni}"), format!("172.31.1.1:{vni}"))
    );
    assert_eq!(
        l3.endpoints[0].pod.as_deref(),
        Some(format!("{ns}/web-1").as_str())
    );
    assert_eq!(s1.spec.underlay.router_id, "172.31.1.1");
    let s2 = wait_node_state(&client, &n2, "written, without VNIs", |s| {
        s.spec.l3vnis.is_empty()
    })
    .await;
    assert_eq!(s2.spec.underlay.vtep_ip, "172.31.1.2");
    let b = wait_binding(&client, &ns, "web", "1 endpoint on n1", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.endpoints == 1 && s.nodes == [n1.clone()])
    })
    .await;
    assert_eq!(
        cond(&b.status.unwrap().conditions, "Ready"),
        ("False".into(), "NodesNotReady".into())
    );

    // added on another node: only that node's object is written
    running_pod(&client, &ns, "web-2", json!({"app": "web"}), &n2, "10.1.0.20").await;
    wait_endpoints(&client, &n2, &[vni], &[(vni, &["10.1.0.20"])]).await;
    let api: Api<EvpnNodeState> = Api::all(client.clone());
    assert_eq!(
        api.get(&n1).await.unwrap().resource_version(),
        s1.resource_version(),
        "n1 is not rewritten when nothing of it changed"
    );

    // IP changed
    set_pod_status(
        &client,
        &ns,
        "web-1",
        json!({"podIP": "10.1.0.11", "podIPs": [{"ip": "10.1.0.11"}]}),
    )
    .await;
    wait_endpoints(&client, &n1, &[vni], &[(vni, &["10.1.0.11"])]).await;

    // moved: deleted, and created again on the other node (pods never change node in place)
    delete_pod_now(&client, &ns, "web-1").await;
    running_pod(&client, &ns, "web-1", json!({"app": "web"}), &n2, "10.1.0.12").await;
    wait_endpoints(&client, &n1, &[vni], &[]).await;
    wait_endpoints(&client, &n2, &[vni], &[(vni, &["10.1.0.12", "10.1.0.20"])]).await;
    wait_binding(&client, &ns, "web", "2 endpoints on n2", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.endpoints == 2 && s.nodes == [n2.clone()])
    })
    .await;

    // no longer Running
    set_pod_status(&client, &ns, "web-2", json!({"phase": "Failed"})).await;
    wait_endpoints(&client, &n2, &[vni], &[(vni, &["10.1.0.12"])]).await;

    // being deleted (no kubelet finishes a graceful delete here, so it stays, terminating)
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.delete("web-1", &DeleteParams::default()).await.unwrap();
    wait_endpoints(&client, &n2, &[vni], &[]).await;
    let b = wait_binding_ready_reason(&client, &ns, "web", "NoEndpoints").await;
    assert_eq!(b.status.unwrap().endpoints, 0);
    let v = wait_bgpvpn(&client, &vpn, "nothing bound", |v| {
        v.status.as_ref().is_some_and(|s| s.total_nodes == 0)
    })
    .await;
    assert_eq!(v.status.unwrap().programmed_vni, None);
}

#[tokio::test]
async fn binding_edits_and_bgpvpn_deletion() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.2.1", json!({})).await;
    let (vpn_a, vpn_b) = (
        bgpvpn_testkit::unique_name("edit-a"),
        bgpvpn_testkit::unique_name("edit-b"),
    );
    let (vni_a, vni_b) = (unique_vni(), unique_vni());
    bgpvpn(
        &client,
        &vpn_a,
        vni_a,
        json!({"importTargets": ["65000:9"], "localPref": 200, "allowedPrefixes": ["192.0.2.0/24"]}),
    )
    .await;
    bgpvpn(
        &client,
        &vpn_b,
        vni_b,
        json!({"routeDistinguishers": ["65000:77"]}),
    )
    .await;
    running_pod(&client, &ns, "web", json!({"app": "web"}), &n, "10.2.0.1").await;
    running_pod(&client, &ns, "db", json!({"app": "db"}), &n, "10.2.0.2").await;
    binding(
        &client,
        &ns,
        "b",
        &vpn_a,
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "advertisePrefixes": ["192.0.2.0/24"]}),
    )
    .await;
    let s = wait_endpoints(&client, &n, &[vni_a, vni_b], &[(vni_a, &["10.2.0.1"])]).await;
    let l3 = &s.spec.l3vnis[0];
    assert_eq!(
        l3.import_targets,
        [format!("65000:{vni_a}"), "65000:9".to_string()]
    );
    assert_eq!(l3.export_targets, [format!("65000:{vni_a}")]);
    assert_eq!(l3.local_pref, Some(200));
    assert_eq!(
        l3.prefixes.iter().map(|p| p.prefix.as_str()).collect::<Vec<_>>(),
        ["192.0.2.0/24"]
    );

    // selector edited
    let bindings: Api<VniBinding> = Api::namespaced(client.clone(), &ns);
    bindings
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"podSelector": {"matchLabels": {"app": "db"}}}})),
        )
        .await
        .unwrap();
    wait_endpoints(&client, &n, &[vni_a, vni_b], &[(vni_a, &["10.2.0.2"])]).await;

    // moved to another BGPVPN: the VNI of the node changes with it
    bindings
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"bgpvpn": vpn_b}})),
        )
        .await
        .unwrap();
    let s = wait_endpoints(&client, &n, &[vni_a, vni_b], &[(vni_b, &["10.2.0.2"])]).await;
    assert_eq!(
        s.spec.l3vnis[0].route_distinguisher, "65000:77",
        "the BGPVPN's own RD"
    );
    let b = wait_binding(&client, &ns, "b", "observed generation 3", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == Some(3))
    })
    .await;
    assert!(
        b.status
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );

    // deleting the BGPVPN withdraws everything bound to it; the binding waits for it
    let vpns: Api<Bgpvpn> = Api::all(client.clone());
    vpns.delete(&vpn_b, &DeleteParams::default()).await.unwrap();
    wait_endpoints(&client, &n, &[vni_a, vni_b], &[]).await;
    let b = wait_binding_ready_reason(&client, &ns, "b", "BGPVPNNotFound").await;
    let ready = condition(&b.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert!(ready.message.contains(&vpn_b), "{ready:?}");
    wait_event(&client, &ns, "b", "BGPVPNNotFound").await;
}

#[tokio::test]
async fn agent_status_is_aggregated() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let (n1, n2) = (
        node(&client, "172.31.3.1", json!({})).await,
        node(&client, "172.31.3.2", json!({})).await,
    );
    let vpn = bgpvpn_testkit::unique_name("agg");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    running_pod(&client, &ns, "a", json!({"app": "web"}), &n1, "10.3.0.1").await;
    running_pod(&client, &ns, "b", json!({"app": "web"}), &n2, "10.3.0.2").await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;
    wait_endpoints(&client, &n1, &[vni], &[(vni, &["10.3.0.1"])]).await;
    wait_endpoints(&client, &n2, &[vni], &[(vni, &["10.3.0.2"])]).await;
    let v = wait_bgpvpn(&client, &vpn, "0/2", |v| {
        v.status
            .as_ref()
            .is_some_and(|s| s.ready_nodes_text.as_deref() == Some("0/2"))
    })
    .await;
    let s = v.status.unwrap();
    assert_eq!((s.bindings, s.endpoints, s.programmed_vni), (1, 2, Some(vni)));
    assert_eq!(
        cond(&s.conditions, "Ready"),
        ("False".into(), "NodesNotReady".into())
    );

    agent_reports(&client, &n1, true).await;
    wait_bgpvpn(&client, &vpn, "1/2", |v| {
        v.status
            .as_ref()
            .is_some_and(|s| s.ready_nodes_text.as_deref() == Some("1/2"))
    })
    .await;
    agent_reports(&client, &n2, false).await;
    let v = wait_bgpvpn(&client, &vpn, "agent message", |v| {
        v.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Ready"))
            .is_some_and(|c| c.message.contains("frr-reload failed"))
    })
    .await;
    assert_eq!(v.status.unwrap().ready_nodes, 1);
    agent_reports(&client, &n2, true).await;
    let v = wait_bgpvpn_condition(&client, &vpn, "Ready", "True", "Programmed").await;
    assert_eq!(
        v.status.as_ref().unwrap().ready_nodes_text.as_deref(),
        Some("2/2")
    );
    let b = wait_binding_ready_reason(&client, &ns, "web", "Programmed").await;
    let bs = b.status.unwrap();
    assert_eq!((bs.endpoints, bs.ready_nodes, bs.nodes.len()), (2, 2, 2));
    wait_event(&client, &ns, "web", "Programmed").await;
    wait_event(&client, "default", &vpn, "Programmed").await;

    // spec is never touched by the operator (GitOps-clean), and the agent's status survives
    // the operator's spec writes
    assert_eq!(v.metadata.generation, Some(1));
    assert_eq!(b.metadata.generation, Some(1));
    running_pod(&client, &ns, "c", json!({"app": "web"}), &n1, "10.3.0.3").await;
    let s = wait_endpoints(&client, &n1, &[vni], &[(vni, &["10.3.0.1", "10.3.0.3"])]).await;
    assert!(
        s.status.as_ref().is_some_and(|st| !st.l3vnis.is_empty()),
        "agent status kept"
    );
    // the new generation is not reported yet: not ready on n1 until the agent catches up
    wait_bgpvpn(&client, &vpn, "1/2, waiting for the agent of n1", |v| {
        v.status.as_ref().is_some_and(|s| {
            s.ready_nodes_text.as_deref() == Some("1/2")
                && condition(&s.conditions, "Ready").is_some_and(|c| {
                    c.message
                        .contains(&format!("{n1}: agent has not reported generation"))
                })
        })
    })
    .await;
    agent_reports(&client, &n1, true).await;
    wait_bgpvpn(&client, &vpn, "2/2 again", |v| {
        v.status
            .as_ref()
            .is_some_and(|s| s.ready_nodes_text.as_deref() == Some("2/2"))
    })
    .await;
}

#[tokio::test]
async fn a_vni_belongs_to_the_older_bgpvpn() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.4.1", json!({})).await;
    let vni = unique_vni();
    // creationTimestamp has a resolution of a second: within the same second the name decides,
    // so the names agree with the creation order
    let (older, newer) = (
        bgpvpn_testkit::unique_name("vni-a-old"),
        bgpvpn_testkit::unique_name("vni-b-new"),
    );
    bgpvpn(&client, &older, vni, json!({})).await;
    wait_bgpvpn_condition(&client, &older, "Conflict", "False", "NoConflict").await;
    bgpvpn(&client, &newer, vni, json!({})).await;
    running_pod(&client, &ns, "a", json!({"app": "a"}), &n, "10.4.0.1").await;
    running_pod(&client, &ns, "b", json!({"app": "b"}), &n, "10.4.0.2").await;
    binding(&client, &ns, "to-older", &older, selector("a")).await;
    binding(&client, &ns, "to-newer", &newer, selector("b")).await;

    let v = wait_bgpvpn_condition(&client, &newer, "Conflict", "True", "VNIConflict").await;
    let s = v.status.unwrap();
    assert!(
        condition(&s.conditions, "Conflict")
            .unwrap()
            .message
            .contains(&older)
    );
    assert_eq!(
        cond(&s.conditions, "Ready"),
        ("False".into(), "VNIConflict".into())
    );
    wait_bgpvpn_condition(&client, &older, "Conflict", "False", "NoConflict").await;
    wait_binding_ready_reason(&client, &ns, "to-newer", "BGPVPNNotReady").await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.4.0.1"])]).await;
    wait_event(&client, "default", &newer, "VNIConflict").await;

    // the older one goes: the newer one gets the VNI
    let vpns: Api<Bgpvpn> = Api::all(client.clone());
    vpns.delete(&older, &DeleteParams::default()).await.unwrap();
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.4.0.2"])]).await;
    wait_bgpvpn_condition(&client, &newer, "Conflict", "False", "NoConflict").await;
    wait_binding_ready_reason(&client, &ns, "to-older", "BGPVPNNotFound").await;
}

#[tokio::test]
async fn a_pod_selected_for_two_bgpvpns_stays_with_the_older_binding() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.5.1", json!({})).await;
    let (vpn1, vpn2) = (
        bgpvpn_testkit::unique_name("pc-1"),
        bgpvpn_testkit::unique_name("pc-2"),
    );
    let (vni1, vni2) = (unique_vni(), unique_vni());
    bgpvpn(&client, &vpn1, vni1, json!({})).await;
    bgpvpn(&client, &vpn2, vni2, json!({})).await;
    running_pod(
        &client,
        &ns,
        "shared",
        json!({"app": "web", "tier": "x"}),
        &n,
        "10.5.0.1",
    )
    .await;
    running_pod(&client, &ns, "only2", json!({"tier": "x"}), &n, "10.5.0.2").await;
    // "a-…" is older (or, within the same second, first by name)
    binding(&client, &ns, "a-first", &vpn1, selector("web")).await;
    wait_endpoints(&client, &n, &[vni1, vni2], &[(vni1, &["10.5.0.1"])]).await;
    binding(
        &client,
        &ns,
        "b-second",
        &vpn2,
        json!({"podSelector": {"matchLabels": {"tier": "x"}}}),
    )
    .await;

    let second = wait_binding(&client, &ns, "b-second", "PodConflict", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, "Conflict") == ("True".into(), "PodConflict".into()))
    })
    .await;
    let msg = condition(&second.status.as_ref().unwrap().conditions, "Conflict")
        .unwrap()
        .message
        .clone();
    assert!(
        msg.contains(&format!("{ns}/shared")) && msg.contains("a-first") && msg.contains("keeps it"),
        "{msg}"
    );
    let first = wait_binding(&client, &ns, "a-first", "PodConflict", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, "Conflict") == ("True".into(), "PodConflict".into()))
    })
    .await;
    assert!(
        condition(&first.status.as_ref().unwrap().conditions, "Conflict")
            .unwrap()
            .message
            .contains("kept here")
    );
    // the shared pod stays in VNI 1, the other pod of binding 2 is programmed
    wait_endpoints(
        &client,
        &n,
        &[vni1, vni2],
        &[(vni1, &["10.5.0.1"]), (vni2, &["10.5.0.2"])],
    )
    .await;
    wait_event(&client, &ns, "b-second", "PodConflict").await;
    wait_event(&client, &ns, "a-first", "PodConflict").await;

    // the older binding goes: the pod joins the other BGPVPN and the conflict clears
    let bindings: Api<VniBinding> = Api::namespaced(client.clone(), &ns);
    bindings
        .delete("a-first", &DeleteParams::default())
        .await
        .unwrap();
    wait_endpoints(&client, &n, &[vni1, vni2], &[(vni2, &["10.5.0.1", "10.5.0.2"])]).await;
    wait_binding(&client, &ns, "b-second", "no conflict", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, "Conflict").0 == "False")
    })
    .await;
}

#[tokio::test]
async fn tenancy_missing_bgpvpn_and_unsupported_types() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.6.1", json!({})).await;
    running_pod(&client, &ns, "p", json!({"app": "web"}), &n, "10.6.0.1").await;
    let team = bgpvpn_testkit::unique_name("team");

    // a binding to a BGPVPN that does not exist yet waits for it
    let vpn = bgpvpn_testkit::unique_name("tenancy");
    let vni = unique_vni();
    binding(&client, &ns, "web", &vpn, selector("web")).await;
    wait_binding_ready_reason(&client, &ns, "web", "BGPVPNNotFound").await;

    // it exists, but does not admit this namespace
    bgpvpn(
        &client,
        &vpn,
        vni,
        json!({"allowedNamespaces": {"selector": {"matchLabels": {"team": team}}}}),
    )
    .await;
    let b = wait_binding_ready_reason(&client, &ns, "web", "NotAllowed").await;
    assert!(
        condition(&b.status.unwrap().conditions, "Ready")
            .unwrap()
            .message
            .contains(&ns)
    );
    wait_event(&client, &ns, "web", "NotAllowed").await;
    let state = wait_node_state(&client, &n, "written", |_| true).await;
    assert!(
        !vnis_of(&state).contains_key(&vni),
        "nothing programmed for a namespace that is not allowed"
    );

    // the namespace gets the label: bound
    label_namespace(&client, &ns, json!({"team": team})).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.6.0.1"])]).await;
    wait_binding_ready_reason(&client, &ns, "web", "NodesNotReady").await;

    // type l2 is reported, not programmed
    let l2 = bgpvpn_testkit::unique_name("l2");
    bgpvpn(&client, &l2, unique_vni(), json!({"type": "l2"})).await;
    let v = wait_bgpvpn_condition(&client, &l2, "Ready", "False", "NotSupported").await;
    assert_eq!(cond(&v.status.unwrap().conditions, "Valid").0, "True");
    let ns2 = namespace(&client, json!({})).await;
    binding(&client, &ns2, "to-l2", &l2, selector("web")).await;
    wait_binding_ready_reason(&client, &ns2, "to-l2", "BGPVPNNotReady").await;
}

#[tokio::test]
async fn a_vni_edit_after_programming_is_refused_and_nothing_is_lost() {
    let (client, _) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.7.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("immutable");
    let (vni, other) = (unique_vni(), unique_vni());
    bgpvpn(&client, &vpn, vni, json!({})).await;
    running_pod(&client, &ns, "p", json!({"app": "web"}), &n, "10.7.0.1").await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.7.0.1"])]).await;
    wait_bgpvpn(&client, &vpn, "programmedVni", |v| {
        v.status.as_ref().is_some_and(|s| s.programmed_vni == Some(vni))
    })
    .await;

    // the API server refuses the edit (the CRD's CEL rule); the operator's own check stays
    // for a CRD without it (bgpvpn_crds::validate)
    let vpns: Api<Bgpvpn> = Api::all(client.clone());
    match vpns
        .patch(
            &vpn,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"vni": other}})),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{e:?}");
            assert!(
                e.message.contains("cannot change once it is programmed"),
                "{}",
                e.message
            );
        }
        result => panic!("the programmed VNI was edited: {result:?}"),
    }
    let v = vpns.get(&vpn).await.unwrap();
    assert_eq!(v.spec.vni, vni);
    assert_eq!(
        v.status.unwrap().programmed_vni,
        Some(vni),
        "the programmed VNI stays"
    );
    let state = wait_endpoints(&client, &n, &[vni], &[(vni, &["10.7.0.1"])]).await;
    assert_eq!(state.spec.l3vnis[0].vrf, format!("vrf-{vni}"));
}

#[tokio::test]
async fn kuryr_network_router_and_port_bindings() {
    let (client, metrics) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.8.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("kuryr");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    let net = "6f0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f01";
    let router = "6f0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f02";
    let port_a = "6f0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0faa";
    let port_b = "6f0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0fbb";

    binding(&client, &ns, "by-net", &vpn, json!({"networkId": net})).await;
    wait_binding_ready_reason(&client, &ns, "by-net", "TargetNotFound").await;

    // Kuryr: the namespace's network, two pods with their ports
    put_kuryr(&client, "KuryrNetwork", &ns, &ns, json!({"spec": {"nsName": ns, "projectId": "p1", "nsLabels": {}},
        "status": {"netId": net, "routerId": router, "subnetId": "s1", "subnetCIDR": "10.8.0.0/24", "populated": true}})).await;
    let a = running_pod(&client, &ns, "a", json!({"app": "a"}), &n, "10.8.0.10").await;
    let b = running_pod(&client, &ns, "b", json!({"app": "b"}), &n, "10.8.0.11").await;
    // plain os-vif shape
    put_kuryr(&client, "KuryrPort", &ns, "a", json!({"spec": {"podUid": a.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": {"default": true, "vif": {"id": port_a, "address": "fa:16:3e:00:00:0a", "vif_name": "tap6f0e1c2a-aa", "active": true,
            "network": {"id": net, "subnets": [{"cidr": "10.8.0.0/24", "ips": [{"address": "10.8.0.10"}]}]}}}}}})).await;
    // the oslo versioned-object primitive Kuryr really stores
    put_kuryr(&client, "KuryrPort", &ns, "b", json!({"spec": {"podUid": b.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": {"default": true, "vif": {"versioned_object.name": "VIFOpenVSwitch", "versioned_object.namespace": "os_vif", "versioned_object.version": "1.0",
            "versioned_object.data": {"id": port_b, "address": "fa:16:3e:00:00:0b", "vif_name": "tap6f0e1c2a-bb", "active": true,
                "network": {"versioned_object.name": "Network", "versioned_object.data": {"id": net, "subnets": {"versioned_object.name": "SubnetList", "versioned_object.data": {"objects": [
                    {"versioned_object.name": "Subnet", "versioned_object.data": {"cidr": "10.8.0.0/24", "ips": {"versioned_object.name": "FixedIPList", "versioned_object.data": {"objects": [
                        {"versioned_object.name": "FixedIP", "versioned_object.data": {"address": "10.8.0.11"}}]}}}}]}}}}}}}}}})).await;
    // a malformed one (no vif id) is tolerated and reported
    running_pod(&client, &ns, "c", json!({"app": "c"}), &n, "10.8.0.12").await;
    put_kuryr(&client, "KuryrPort", &ns, "c", json!({"spec": {"podUid": "x", "podNodeName": n}, "status": {"vifs": {"eth0": {"vif": {"address": "fa:16:3e:00:00:0c"}}}}})).await;

    let state = wait_endpoints(&client, &n, &[vni], &[(vni, &["10.8.0.10", "10.8.0.11"])]).await;
    let ifaces: Vec<Option<&str>> = state.spec.l3vnis[0]
        .endpoints
        .iter()
        .map(|e| e.interface.as_deref())
        .collect();
    assert_eq!(ifaces, [Some("tap6f0e1c2a-aa"), Some("tap6f0e1c2a-bb")]);
    wait_binding(&client, &ns, "by-net", "2 endpoints", |b| {
        b.status.as_ref().is_some_and(|s| s.endpoints == 2)
    })
    .await;
    bgpvpn_testkit::wait_for("the malformed KuryrPort counted", TIMEOUT, || async {
        (metrics.malformed_objects.get() >= 1).then_some(())
    })
    .await;

    // by router id instead: the same pods
    let bindings: Api<VniBinding> = Api::namespaced(client.clone(), &ns);
    bindings
        .patch(
            "by-net",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"networkId": null, "routerId": router}})),
        )
        .await
        .unwrap();
    wait_binding(&client, &ns, "by-net", "router binding, gen 2", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == Some(2) && s.endpoints == 2)
    })
    .await;

    // by port id: just that pod
    bindings
        .patch(
            "by-net",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"routerId": null, "portId": port_b}})),
        )
        .await
        .unwrap();
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.8.0.11"])]).await;

    // Kuryr moves the pod's address: followed
    put_kuryr(&client, "KuryrPort", &ns, "b", json!({"spec": {"podUid": b.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": {"default": true, "vif": {"id": port_b, "vif_name": "tap6f0e1c2a-bb", "active": true,
            "network": {"id": net, "subnets": [{"ips": [{"address": "10.8.0.21"}]}]}}}}}})).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.8.0.21"])]).await;

    // a port id no KuryrPort has
    bindings
        .patch(
            "by-net",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"portId": "6f0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0fcc"}})),
        )
        .await
        .unwrap();
    wait_binding_ready_reason(&client, &ns, "by-net", "TargetNotFound").await;
    wait_endpoints(&client, &n, &[vni], &[]).await;
}

#[tokio::test]
async fn node_objects_follow_nodes() {
    let (client, metrics) = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.9.1", json!({"bgpvpn.io/vtep-ip": "192.0.2.9", "bgpvpn.io/router-id": "192.0.2.10", "bgpvpn.io/asn": "64999"})).await;
    let bare = {
        let name = bgpvpn_testkit::unique_name("node-noaddr");
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(
                &Default::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
        name
    };
    let vpn = bgpvpn_testkit::unique_name("nodes");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    running_pod(&client, &ns, "p", json!({"app": "web"}), &n, "10.9.0.1").await;
    running_pod(&client, &ns, "q", json!({"app": "web"}), &bare, "10.9.0.2").await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;

    let s = wait_endpoints(&client, &n, &[vni], &[(vni, &["10.9.0.1"])]).await;
    let u = &s.spec.underlay;
    assert_eq!(
        (u.asn, u.router_id.as_str(), u.vtep_ip.as_str()),
        (64999, "192.0.2.10", "192.0.2.9")
    );
    assert_eq!(u.neighbors.len(), 1);
    assert_eq!(s.spec.l3vnis[0].route_distinguisher, format!("192.0.2.10:{vni}"));
    let nodes: Api<Node> = Api::all(client.clone());
    let node_obj = nodes.get(&n).await.unwrap();
    let owner = &s.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(owner.uid.clone())),
        ("Node", n.as_str(), node_obj.uid())
    );
    assert_eq!(
        s.labels().get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("bgpvpn-operator")
    );

    // a node without an address gets no object, and that is reported
    let b = wait_binding(&client, &ns, "web", "the bare node reported", |b| {
        b.status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Ready"))
            .is_some_and(|c| c.message.contains(&format!("{bare}: no IPv4 InternalIP")))
    })
    .await;
    assert_eq!(b.status.unwrap().nodes.len(), 2);
    let states: Api<EvpnNodeState> = Api::all(client.clone());
    assert!(states.get_opt(&bare).await.unwrap().is_none());
    wait_event(&client, "default", &bare, "EVPNNodeStateNotUpdated").await;

    // the node goes: the garbage collector deletes its object through the owner reference,
    // the operator does not
    let deletes = metrics.node_state_write_count("delete");
    nodes.delete(&n, &DeleteParams::default()).await.unwrap();
    bgpvpn_testkit::wait_for("EVPNNodeState deleted with its Node", TIMEOUT, || async {
        states.get_opt(&n).await.unwrap().is_none().then_some(())
    })
    .await;
    assert_eq!(
        metrics.node_state_write_count("delete"),
        deletes,
        "the operator deleted it, not the GC"
    );
}

/// An object carrying the operator's label that no Node owns and no node wants is deleted by
/// the operator: no garbage collector ever would.
#[tokio::test]
async fn an_ownerless_node_object_of_ours_is_deleted() {
    let (client, metrics) = setup_or_skip!();
    let name = bgpvpn_testkit::unique_name("ghost-node");
    let states: Api<EvpnNodeState> = Api::all(client.clone());
    let deletes = metrics.node_state_write_count("delete");
    let ghost: EvpnNodeState = serde_json::from_value(json!({
        "apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "bgpvpn-operator"}},
        "spec": {"underlay": {"asn": 65001, "routerId": "192.0.2.77", "vtepIp": "192.0.2.77"}}}))
    .unwrap();
    states.create(&Default::default(), &ghost).await.unwrap();
    bgpvpn_testkit::wait_for("the ownerless EVPNNodeState deleted", TIMEOUT, || async {
        states.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
    bgpvpn_testkit::wait_for("the operator's delete counted", TIMEOUT, || async {
        (metrics.node_state_write_count("delete") > deletes).then_some(())
    })
    .await;
}

/// A BGPVPN admits namespaces by name with a selector on the label every namespace carries
/// (`kubernetes.io/metadata.name`, set by the API server): no list of names needed.
#[tokio::test]
async fn a_selector_on_the_namespace_name_admits_exactly_that_namespace() {
    let (client, _) = setup_or_skip!();
    let (ns, other) = (
        namespace(&client, json!({})).await,
        namespace(&client, json!({})).await,
    );
    let n = node(&client, "172.31.8.1", json!({})).await;
    running_pod(&client, &ns, "p", json!({"app": "web"}), &n, "10.8.0.1").await;
    running_pod(&client, &other, "p", json!({"app": "web"}), &n, "10.8.0.2").await;
    let vpn = bgpvpn_testkit::unique_name("by-name");
    let vni = unique_vni();
    bgpvpn(
        &client,
        &vpn,
        vni,
        json!({"allowedNamespaces": {"selector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}),
    )
    .await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;
    binding(&client, &other, "web", &vpn, selector("web")).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.8.0.1"])]).await;
    wait_binding_ready_reason(&client, &other, "web", "NotAllowed").await;
}
