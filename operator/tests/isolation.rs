//! Tenant and fault isolation (issue 12) against a real kube-apiserver v1.20.2: what one
//! tenant does never renumbers, widens or blocks what a node runs for the others. One operator
//! (in-process, leading without election) serves every test of this binary.

mod support;

use std::sync::{Arc, OnceLock};

use bgpvpn_crds::{EvpnNodeState, VniBinding};
use bgpvpn_operator::metrics::Metrics;
use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use support::*;

static OPERATOR: OnceLock<Arc<Metrics>> = OnceLock::new();

/// A client, with the shared operator running; `None` when the apiserver tier is skipped.
async fn setup() -> Option<Client> {
    let client = bgpvpn_testkit::client().await?;
    OPERATOR.get_or_init(|| start_operator("isolation-tests"));
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
    running_pod(
        &client,
        &ns,
        "high",
        json!({"app": "high"}),
        &n,
        "10.20.0.1",
    )
    .await;
    running_pod(&client, &ns, "low", json!({"app": "low"}), &n, "10.20.0.2").await;
    running_pod(
        &client,
        &ns,
        "other",
        json!({"app": "other"}),
        &n,
        "10.20.0.3",
    )
    .await;

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
