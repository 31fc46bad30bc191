//! Tenant and fault isolation (issue 12) against a real kube-apiserver: what one
//! tenant does never renumbers, widens or blocks what a node runs for the others. One operator
//! (in-process, leading without election) serves every test of this binary.

mod support;

use std::time::Duration;

use bgpvpn_crds::{EvpnNodeState, VniBinding};
use bgpvpn_operator::leader::LeaseConfig;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::*;

/// The operator the tests share; a test that restarts it holds the lock meanwhile.
static OPERATOR: tokio::sync::Mutex<Option<RunningOperator>> = tokio::sync::Mutex::const_new(None);

/// A client, with the shared operator running; `None` when the apiserver tier is skipped.
async fn setup() -> Option<Client> {
    let client = bgpvpn_testkit::client().await?;
    let mut shared = OPERATOR.lock().await;
    if shared.is_none() {
        *shared = Some(spawn_operator("isolation-tests", None));
    }
    Some(client)
}

macro_rules! setup_or_skip {
    () => {
        match setup().await {
            Some(c) => c,
            None => return,
        }
    };
}

fn rd_of(state: &EvpnNodeState, vni: u32) -> String {
    state
        .spec
        .l3vnis
        .iter()
        .find(|v| v.vni == vni)
        .map(|v| v.route_distinguisher.clone())
        .unwrap_or_default()
}

async fn delete_binding(client: &Client, ns: &str, name: &str) {
    let api: Api<VniBinding> = Api::namespaced(client.clone(), ns);
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn a_programmed_route_distinguisher_never_moves() {
    let client = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.20.1", json!({})).await;
    // two VNIs whose 16-bit fold collides, and a third that folds elsewhere
    let low = unique_vni();
    let high = low + 65_535 * 200;
    let other = unique_vni();
    let vnis = [low, high, other];
    let (vpn_low, vpn_high, vpn_other) = (
        bgpvpn_testkit::unique_name("rd-low"),
        bgpvpn_testkit::unique_name("rd-high"),
        bgpvpn_testkit::unique_name("rd-other"),
    );
    bgpvpn(&client, &vpn_low, low, json!({})).await;
    bgpvpn(&client, &vpn_high, high, json!({})).await;
    bgpvpn(&client, &vpn_other, other, json!({})).await;
    running_pod(&client, &ns, "high", json!({"app": "high"}), &n, "10.20.0.1").await;
    running_pod(&client, &ns, "low", json!({"app": "low"}), &n, "10.20.0.2").await;
    running_pod(&client, &ns, "other", json!({"app": "other"}), &n, "10.20.0.3").await;

    // the high VNI is bound first and runs with the folded number
    binding(&client, &ns, "high", &vpn_high, selector("high")).await;
    let s = wait_endpoints(&client, &n, &vnis, &[(high, &["10.20.0.1"])]).await;
    let programmed = rd_of(&s, high);
    assert_eq!(programmed, format!("172.31.20.1:{low}"));

    // the low VNI folds onto the same number: the newcomer gets another one
    binding(&client, &ns, "low", &vpn_low, selector("low")).await;
    let s = wait_endpoints(
        &client,
        &n,
        &vnis,
        &[(low, &["10.20.0.2"]), (high, &["10.20.0.1"])],
    )
    .await;
    assert_eq!(
        rd_of(&s, high),
        programmed,
        "binding VNI {low} renumbered VNI {high}"
    );
    assert_ne!(rd_of(&s, low), programmed);

    // others come and go: still the same RD
    binding(&client, &ns, "other", &vpn_other, selector("other")).await;
    let s = wait_endpoints(
        &client,
        &n,
        &vnis,
        &[
            (low, &["10.20.0.2"]),
            (high, &["10.20.0.1"]),
            (other, &["10.20.0.3"]),
        ],
    )
    .await;
    assert_eq!(
        rd_of(&s, high),
        programmed,
        "binding VNI {other} renumbered VNI {high}"
    );
    delete_binding(&client, &ns, "other").await;
    let s = wait_endpoints(
        &client,
        &n,
        &vnis,
        &[(low, &["10.20.0.2"]), (high, &["10.20.0.1"])],
    )
    .await;
    assert_eq!(
        rd_of(&s, high),
        programmed,
        "unbinding VNI {other} renumbered VNI {high}"
    );
    delete_binding(&client, &ns, "low").await;
    let s = wait_endpoints(&client, &n, &vnis, &[(high, &["10.20.0.1"])]).await;
    assert_eq!(
        rd_of(&s, high),
        programmed,
        "unbinding VNI {low} renumbered VNI {high}"
    );
}

/// The advertised prefixes of a VNI on a node.
fn prefixes_of(state: &EvpnNodeState, vni: u32) -> Vec<String> {
    state
        .spec
        .l3vnis
        .iter()
        .filter(|v| v.vni == vni)
        .flat_map(|v| v.prefixes.iter().map(|p| p.prefix.clone()))
        .collect()
}

#[tokio::test]
async fn tenants_advertise_only_what_the_admin_allows() {
    let client = setup_or_skip!();
    let (tenant, neighbour) = (
        namespace(&client, json!({})).await,
        namespace(&client, json!({})).await,
    );
    let n = node(&client, "172.31.21.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("prefixes");
    let vni = unique_vni();
    bgpvpn(
        &client,
        &vpn,
        vni,
        json!({"allowedPrefixes": ["192.0.2.0/24", "2001:db8:1::/48"]}),
    )
    .await;
    running_pod(&client, &tenant, "a", json!({"app": "a"}), &n, "10.21.0.1").await;
    running_pod(&client, &neighbour, "b", json!({"app": "b"}), &n, "10.21.0.2").await;
    binding(
        &client,
        &neighbour,
        "b",
        &vpn,
        json!({"podSelector": {"matchLabels": {"app": "b"}}, "advertisePrefixes": ["192.0.2.128/25"]}),
    )
    .await;
    let refused = [
        "0.0.0.0/0", // default routes
        "::/0",
        "10.21.0.2/32",    // the other tenant's pod
        "198.51.100.7/32", // a remote VM
        "10.96.0.0/12",    // the service CIDR
        "172.31.21.0/24",  // the underlay
        "169.254.0.0/16",  // link-local, multicast, loopback, unspecified
        "fe80::/64",
        "224.0.0.0/4",
        "127.0.0.0/8",
        "0.0.0.0/32",
    ];
    let accepted = ["10.21.0.1/32", "192.0.2.0/25", "2001:db8:1:5::/64"];
    let asked: Vec<&str> = refused.iter().chain(&accepted).copied().collect();
    binding(
        &client,
        &tenant,
        "a",
        &vpn,
        json!({"podSelector": {"matchLabels": {"app": "a"}}, "advertisePrefixes": asked}),
    )
    .await;

    // the node advertises what both bindings may, and nothing else
    let want = [
        "10.21.0.1/32",
        "192.0.2.0/25",
        "192.0.2.128/25",
        "2001:db8:1:5::/64",
    ];
    let s = wait_node_state(&client, &n, "the allowed prefixes only", |s| {
        vnis_of(s).get(&vni).is_some_and(|eps| eps.len() == 2) && prefixes_of(s, vni) == want
    })
    .await;
    assert_eq!(prefixes_of(&s, vni), want);
    let b = wait_binding(&client, &tenant, "a", "PrefixesAllowed=False", |b| {
        b.status.as_ref().is_some_and(|s| {
            cond(&s.conditions, "PrefixesAllowed") == ("False".into(), "PrefixNotAllowed".into())
        })
    })
    .await;
    let message = condition(&b.status.as_ref().unwrap().conditions, "PrefixesAllowed")
        .unwrap()
        .message
        .clone();
    for prefix in refused {
        assert!(message.contains(prefix), "{prefix} not named in {message:?}");
    }
    assert!(accepted.iter().all(|p| !message.contains(p)), "{message:?}");
    wait_event(&client, &tenant, "a", "PrefixNotAllowed").await;
    // the valid parts of the binding, and the other tenant, are unaffected
    wait_binding(&client, &neighbour, "b", "PrefixesAllowed=True", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, "PrefixesAllowed").0 == "True")
    })
    .await;
    assert_eq!(vnis_of(&s)[&vni], ["10.21.0.1", "10.21.0.2"]);

    // an admin allowing everything still never gets the always-refused kinds advertised
    let vpns: Api<bgpvpn_crds::Bgpvpn> = Api::all(client.clone());
    let everything = json!({"spec": {"allowedPrefixes": ["0.0.0.0/0", "::/0"]}});
    vpns.patch(
        &vpn,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(everything),
    )
    .await
    .unwrap();
    let want = [
        "10.21.0.1/32",
        "10.96.0.0/12",
        "172.31.21.0/24",
        "192.0.2.0/25",
        "192.0.2.128/25",
        "198.51.100.7/32",
        "2001:db8:1:5::/64",
    ];
    wait_node_state(&client, &n, "all but the always-refused prefixes", |s| {
        prefixes_of(s, vni) == want
    })
    .await;
}

#[tokio::test]
async fn one_tenant_cannot_fill_a_node_object() {
    use bgpvpn_crds::schema::{MAX_ADVERTISED_PREFIXES, MAX_BGPVPN_PREFIXES, MAX_STATUS_ITEMS};
    let client = setup_or_skip!();
    let (flooder, other) = (
        namespace(&client, json!({})).await,
        namespace(&client, json!({})).await,
    );
    let n = node(&client, "172.31.22.1", json!({})).await;
    let (vpn_flood, vpn_other) = (
        bgpvpn_testkit::unique_name("flood"),
        bgpvpn_testkit::unique_name("victim"),
    );
    let (vni_flood, vni_other) = (unique_vni(), unique_vni());
    bgpvpn(
        &client,
        &vpn_flood,
        vni_flood,
        json!({"allowedPrefixes": ["10.128.0.0/9"]}),
    )
    .await;
    bgpvpn(&client, &vpn_other, vni_other, json!({})).await;
    running_pod(&client, &flooder, "a", json!({"app": "a"}), &n, "10.22.0.1").await;

    // more bindings of the most prefixes each than one VNI of an EVPNNodeState can hold
    let per_binding = MAX_ADVERTISED_PREFIXES as usize;
    let bindings = MAX_STATUS_ITEMS as usize / per_binding + 1;
    for i in 0..bindings {
        let prefixes: Vec<String> = (0..per_binding)
            .map(|j| format!("10.{}.{j}.0/24", 128 + i))
            .collect();
        // names in creation order: within one second of creationTimestamp the name decides
        binding(
            &client,
            &flooder,
            &format!("flood-{i:03}"),
            &vpn_flood,
            json!({"podSelector": {"matchLabels": {"app": "a"}}, "advertisePrefixes": prefixes}),
        )
        .await;
    }

    // another tenant's new pod still reaches the node
    running_pod(&client, &other, "b", json!({"app": "b"}), &n, "10.22.0.2").await;
    binding(&client, &other, "b", &vpn_other, selector("b")).await;
    let s = wait_endpoints(
        &client,
        &n,
        &[vni_flood, vni_other],
        &[(vni_flood, &["10.22.0.1"]), (vni_other, &["10.22.0.2"])],
    )
    .await;
    assert_eq!(prefixes_of(&s, vni_flood).len(), MAX_BGPVPN_PREFIXES as usize);

    // the oldest bindings are kept whole; the first one past the limit says which limit
    let full = MAX_BGPVPN_PREFIXES as usize / per_binding;
    wait_binding(
        &client,
        &flooder,
        &format!("flood-{:03}", full - 1),
        "WithinLimits=True",
        |b| {
            b.status
                .as_ref()
                .is_some_and(|s| cond(&s.conditions, "WithinLimits").0 == "True")
        },
    )
    .await;
    let over = wait_binding(
        &client,
        &flooder,
        &format!("flood-{full:03}"),
        "WithinLimits=False",
        |b| {
            b.status.as_ref().is_some_and(|s| {
                cond(&s.conditions, "WithinLimits") == ("False".into(), "BGPVPNPrefixLimit".into())
            })
        },
    )
    .await;
    let message = condition(&over.status.as_ref().unwrap().conditions, "WithinLimits")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains(&vpn_flood) && message.contains(&MAX_BGPVPN_PREFIXES.to_string()),
        "{message:?}"
    );
    wait_event(
        &client,
        &flooder,
        &format!("flood-{full:03}"),
        "BGPVPNPrefixLimit",
    )
    .await;
    wait_binding(&client, &other, "b", "WithinLimits=True", |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, "WithinLimits").0 == "True")
    })
    .await;
}

/// Waits until `op` leads with its caches filled and the Kuryr objects read, then until a pass
/// that began after a change made here has been applied: everything it will ever see at startup
/// has been seen and written.
async fn settled(client: &Client, op: &RunningOperator) {
    bgpvpn_testkit::wait_for(
        "the new operator leads, synced, with Kuryr watched",
        TIMEOUT,
        || async {
            (op.leading()
                && op.health.synced.load(std::sync::atomic::Ordering::Relaxed)
                && op.metrics.kuryr_watched.get() == 1)
                .then_some(())
        },
    )
    .await;
    let before = op.passes();
    // any change wakes the pass loop
    let api: Api<Namespace> = Api::all(client.clone());
    let poke = bgpvpn_testkit::unique_name("poke");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": poke}})).unwrap(),
    )
    .await
    .unwrap();
    bgpvpn_testkit::wait_for("a pass after the change applied", TIMEOUT, || async {
        (op.passes() > before).then_some(())
    })
    .await;
}

/// The node's object and the binding's Ready condition are exactly as they were.
async fn assert_untouched(
    client: &Client,
    node: &str,
    before: &EvpnNodeState,
    ns: &str,
    binding: &str,
    ready: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    what: &str,
) {
    let now = Api::<EvpnNodeState>::all(client.clone()).get(node).await.unwrap();
    assert_eq!(
        now.metadata.generation,
        before.metadata.generation,
        "{what} changed the EVPNNodeState of {node} (generation {:?} -> {:?}; VNIs now {:?})",
        before.metadata.generation,
        now.metadata.generation,
        vnis_of(&now)
    );
    assert_eq!(
        now.spec, before.spec,
        "{what} changed the spec of EVPNNodeState {node}"
    );
    let b = Api::<VniBinding>::namespaced(client.clone(), ns)
        .get(binding)
        .await
        .unwrap();
    let cond = condition(&b.status.as_ref().unwrap().conditions, "Ready").unwrap();
    assert_eq!(
        cond, ready,
        "{what} changed the Ready condition of VNIBinding {ns}/{binding}"
    );
}

#[tokio::test]
async fn a_restart_or_failover_changes_no_node_state() {
    let client = setup_or_skip!();
    install_kuryr_crds(&client).await;
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.23.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("restart");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    let net = "7a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f01";
    put_kuryr(&client, "KuryrNetwork", &ns, &ns, json!({"spec": {"nsName": ns, "projectId": "p1", "nsLabels": {}},
        "status": {"netId": net, "routerId": "7a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f02", "subnetId": "s1", "subnetCIDR": "10.23.0.0/24", "populated": true}}))
    .await;
    let pod = running_pod(&client, &ns, "web", json!({"app": "web"}), &n, "10.23.0.10").await;
    put_kuryr(&client, "KuryrPort", &ns, "web", json!({"spec": {"podUid": pod.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": {"default": true, "vif": {"id": "7a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0faa", "address": "fa:16:3e:00:23:0a",
            "vif_name": "tap7a0e1c2a-aa", "active": true, "network": {"id": net, "subnets": [{"cidr": "10.23.0.0/24", "ips": [{"address": "10.23.0.10"}]}]}}}}}}))
    .await;
    binding(&client, &ns, "by-net", &vpn, json!({"networkId": net})).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.23.0.10"])]).await;
    agent_reports(&client, &n, true).await;
    let b = wait_binding_ready_reason(&client, &ns, "by-net", "Programmed").await;
    let ready = condition(&b.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    let before = Api::<EvpnNodeState>::all(client.clone()).get(&n).await.unwrap();

    let mut shared = OPERATOR.lock().await;
    shared.take().expect("the shared operator runs").stop();

    // no batch window: a first pass starts as soon as the core caches are filled, so whatever
    // is read after them (the Kuryr objects) must not be missing from it
    let mut config = bgpvpn_operator::config::Config::load(&fixture("operator-config.yaml")).unwrap();
    config.debounce_millis = 0;
    let spawn =
        |instance: &str, lease: Option<LeaseConfig>| spawn_operator_with(instance, lease, config.clone());

    // a restart: a new process reads everything anew
    let restarted = spawn("isolation-restarted", None);
    settled(&client, &restarted).await;
    assert_untouched(&client, &n, &before, &ns, "by-net", &ready, "a restart").await;
    restarted.stop();

    // a failover: the leader stops, the standby takes over
    let lease = LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        ..LeaseConfig::new(
            "default",
            bgpvpn_testkit::unique_name("isolation-lease"),
            "replica-a",
        )
    };
    let a = spawn("replica-a", Some(lease.clone()));
    bgpvpn_testkit::wait_for("replica-a leads", TIMEOUT, || async { a.leading().then_some(()) }).await;
    let b = spawn(
        "replica-b",
        Some(LeaseConfig {
            identity: "replica-b".into(),
            ..lease
        }),
    );
    settled(&client, &a).await;
    assert_untouched(&client, &n, &before, &ns, "by-net", &ready, "the first leader").await;
    a.stop();
    settled(&client, &b).await;
    assert_untouched(&client, &n, &before, &ns, "by-net", &ready, "a failover").await;
    *shared = Some(b);
}

/// `{"a": {"a": … "x"}}`, `depth` objects deep.
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(json!("x"), |inner, _| json!({ "a": inner }))
}

#[tokio::test]
async fn an_unreadable_object_blinds_no_watch() {
    let client = setup_or_skip!();
    install_kuryr_crds(&client).await;
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.24.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("deep");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    let net = "8a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f01";
    put_kuryr(&client, "KuryrNetwork", &ns, &ns, json!({"spec": {"nsName": ns, "projectId": "p1", "nsLabels": {}},
        "status": {"netId": net, "routerId": "8a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0f02", "subnetId": "s1", "subnetCIDR": "10.24.0.0/24", "populated": true}}))
    .await;
    let vif = |port: &str, ip: &str| {
        json!({"default": true, "vif": {"id": port, "vif_name": format!("tap{}", &port[..11]), "active": true,
            "network": {"id": net, "subnets": [{"cidr": "10.24.0.0/24", "ips": [{"address": ip}]}]}}})
    };
    let good = running_pod(&client, &ns, "good", json!({"app": "good"}), &n, "10.24.0.10").await;
    put_kuryr(
        &client,
        "KuryrPort",
        &ns,
        "good",
        json!({"spec": {"podUid": good.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": vif("8a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0faa", "10.24.0.10")}}}),
    )
    .await;
    binding(&client, &ns, "by-net", &vpn, json!({"networkId": net})).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.24.0.10"])]).await;
    agent_reports(&client, &n, true).await;
    wait_binding_ready_reason(&client, &ns, "by-net", "Programmed").await;

    // another pod's KuryrPort, 140 levels deep where the CRD keeps unknown fields: deeper than
    // serde_json reads by default (128), and the API server stores it
    let deep = running_pod(&client, &ns, "deep", json!({"app": "deep"}), &n, "10.24.0.11").await;
    put_kuryr(&client, "KuryrPort", &ns, "deep", json!({"spec": {"podUid": deep.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": vif("8a0e1c2a-0b1d-4c6e-9a51-0d3c2b1a0fbb", "10.24.0.11"), "eth1": nested(140)}}}))
    .await;
    // and a BGPVPN that is not a BGPVPN to the operator's types: a localPref of 2^33, stored
    // under an older CRD without the maximum
    let bad = bgpvpn_testkit::unique_name("bad-type");
    oversized_local_pref(&client, &bad).await;

    // the bad objects are named where a user looks; the good ones work on
    wait_binding(
        &client,
        &ns,
        "by-net",
        "both pods, the deep KuryrPort's bad part named",
        |b| {
            b.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|c| {
                    c.message.contains(&format!("KuryrPort {ns}/deep"))
                        && b.status.as_ref().unwrap().endpoints == 2
                })
        },
    )
    .await;
    wait_event(&client, &ns, "deep", "MalformedObject").await;
    wait_event(&client, "default", &bad, "MalformedObject").await;
    let s = wait_endpoints(&client, &n, &[vni], &[(vni, &["10.24.0.10", "10.24.0.11"])]).await;
    agent_reports(&client, &n, true).await;
    wait_binding_ready_reason(&client, &ns, "by-net", "Programmed").await;
    let b = wait_binding(
        &client,
        &ns,
        "by-net",
        "Programmed, on this generation of the node state",
        |b| {
            b.status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .is_some_and(|c| c.reason == "Programmed" && c.message.contains("deep"))
        },
    )
    .await;
    let ready = condition(&b.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    let before = Api::<EvpnNodeState>::all(client.clone()).get(&n).await.unwrap();
    assert_eq!(before.metadata.generation, s.metadata.generation);

    // a fresh start lists every kind anew, the bad objects in the lists
    let mut shared = OPERATOR.lock().await;
    shared.take().expect("the shared operator runs").stop();
    let restarted = spawn_operator("isolation-relisted", None);
    settled(&client, &restarted).await;
    assert_untouched(
        &client,
        &n,
        &before,
        &ns,
        "by-net",
        &ready,
        "a restart with unreadable objects",
    )
    .await;
    assert!(
        restarted.metrics.malformed_objects.get() >= 2,
        "the KuryrPort and the BGPVPN counted"
    );
    *shared = Some(restarted);
}

/// A pod whose address can never be routed (a Kuryr link-local address, say) holds back only
/// its own VNI on that node, saying why on its binding: it never reaches the agent, and every
/// other VNI there, a new one too, is programmed.
#[tokio::test]
async fn a_vni_that_cannot_be_programmed_holds_back_only_itself() {
    let client = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.21.1", json!({})).await;
    let (first, bad, other) = (unique_vni(), unique_vni(), unique_vni());
    let names = ["hold-first", "hold-bad", "hold-other"].map(bgpvpn_testkit::unique_name);
    for (name, vni) in names.iter().zip([first, bad, other]) {
        bgpvpn(&client, name, vni, json!({})).await;
    }
    for (i, ip) in ["10.21.0.1", "fe80::5", "10.21.0.3"].iter().enumerate() {
        let app = format!("hold{i}");
        running_pod(&client, &ns, &app, json!({"app": app}), &n, ip).await;
    }
    binding(&client, &ns, "first", &names[0], selector("hold0")).await;
    wait_node_state(&client, &n, "the first VNI programmed", |s| {
        vnis_of(s).contains_key(&first)
    })
    .await;
    binding(&client, &ns, "bad", &names[1], selector("hold1")).await;
    binding(&client, &ns, "other", &names[2], selector("hold2")).await;
    let state = wait_node_state(&client, &n, "the other tenant's new VNI programmed", |s| {
        vnis_of(s).contains_key(&other)
    })
    .await;
    let vnis = vnis_of(&state);
    assert!(vnis.contains_key(&first), "the first VNI stays: {vnis:?}");
    assert!(
        !vnis.contains_key(&bad),
        "the VNI with the link-local pod is held back: {vnis:?}"
    );
    assert!(
        !serde_json::to_string(&state.spec).unwrap().contains("fe80"),
        "nothing link-local reaches the agent"
    );
    wait_binding(&client, &ns, "bad", "says it is held back, and why", |b| {
        b.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Ready").is_some_and(|c| {
                c.status == "False" && c.message.contains("held back") && c.message.contains("link-local")
            })
        })
    })
    .await;

    // a VNI that already runs and then takes a pod it cannot program keeps running as it was,
    // and its binding says so instead of Ready
    agent_reports(&client, &n, true).await;
    wait_binding_ready_reason(&client, &ns, "first", "Programmed").await;
    running_pod(&client, &ns, "hold0-late", json!({"app": "hold0"}), &n, "fe80::6").await;
    let first_binding = wait_binding(&client, &ns, "first", "says it is held back, kept running", |b| {
        b.status.as_ref().is_some_and(|s| {
            condition(&s.conditions, "Ready").is_some_and(|c| {
                c.status == "False" && c.message.contains("held back") && c.message.contains("keeps running")
            })
        })
    })
    .await;
    let state = wait_node_state(&client, &n, "unchanged", |_| true).await;
    assert_eq!(
        vnis_of(&state).get(&first),
        Some(&vec!["10.21.0.1".to_string()]),
        "the first VNI runs as before: {first_binding:?}"
    );
}

/// A BGPVPN or a VNIBinding the operator's types cannot read says so in its own status (and
/// gets an Event), not only in the operator's log; the other objects work on.
#[tokio::test]
async fn an_unreadable_bgpvpn_or_binding_says_why_in_its_status() {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::ApiResource;
    let client = setup_or_skip!();
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.25.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("readable");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    running_pod(&client, &ns, "web", json!({"app": "web"}), &n, "10.25.0.10").await;
    binding(&client, &ns, "good", &vpn, selector("web")).await;
    binding(&client, &ns, "broken", &vpn, selector("web-other")).await;

    // a BGPVPN whose localPref is beyond u32, and a binding whose status another writer filled
    // with a count beyond i32
    let bad = bgpvpn_testkit::unique_name("unreadable");
    oversized_local_pref(&client, &bad).await;
    let vpns =
        Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<bgpvpn_crds::Bgpvpn>(&()));
    // Kubernetes 1.36+ checks `format: int32`: written under an older CRD without it
    let bindings =
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ApiResource::erase::<VniBinding>(&()));
    let oversized = json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "status": {"endpoints": 1_099_511_627_776u64}});
    store_under_relaxed_crd(
        &client,
        "vnibindings.bgpvpn.io",
        &["status", "endpoints"],
        "format",
        || async {
            bindings
                .patch_status(
                    "broken",
                    &PatchParams::apply("another-writer").force(),
                    &Patch::Apply(&oversized),
                )
                .await
                .ok()
        },
    )
    .await;

    let says_why = |obj: &DynamicObject| {
        let conditions = obj.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ["Valid", "Ready"].iter().all(|type_| {
            conditions.iter().any(|c| {
                c["type"] == *type_
                    && c["status"] == "False"
                    && c["reason"] == "MalformedObject"
                    && c["message"].as_str().is_some_and(|m| m.contains("cannot read"))
            })
        }) && obj.data["status"]["observedGeneration"] == json!(obj.metadata.generation)
    };
    let status_of_bad = bgpvpn_testkit::wait_for(
        "the unreadable BGPVPN says why in its status",
        TIMEOUT,
        || async { vpns.get_opt(&bad).await.unwrap().filter(|o| says_why(o)) },
    )
    .await;
    assert!(
        status_of_bad.data["status"]["conditions"]
            .to_string()
            .contains("8589934592"),
        "the message names the value: {}",
        status_of_bad.data["status"]
    );
    bgpvpn_testkit::wait_for(
        "the unreadable binding says why in its status",
        TIMEOUT,
        || async { bindings.get_opt("broken").await.unwrap().filter(|o| says_why(o)) },
    )
    .await;
    wait_event(&client, &ns, "broken", "MalformedObject").await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.25.0.10"])]).await;
}

/// A BGPVPN with a localPref of 2^33, as an older CRD without the maximum stored it.
async fn oversized_local_pref(client: &Client, name: &str) {
    use kube::api::DynamicObject;
    use kube::core::ApiResource;
    let vpns =
        Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<bgpvpn_crds::Bgpvpn>(&()));
    let body: DynamicObject = serde_json::from_value(json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": name},
        "spec": {"vni": unique_vni(), "routeTargets": ["65000:1"], "localPref": 8_589_934_592u64, "allowedNamespaces": {"all": true}}}))
    .unwrap();
    store_under_relaxed_crd(
        client,
        "bgpvpns.bgpvpn.io",
        &["spec", "localPref"],
        "maximum",
        || async { vpns.create(&PostParams::default(), &body).await.ok() },
    )
    .await;
}
