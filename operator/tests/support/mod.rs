//! Helpers shared by the operator's real-apiserver tests: objects created the way a kubelet,
//! Kuryr or an agent would, and waits on observable state.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use bgpvpn_operator::config::Config;
use bgpvpn_operator::http::Health;
use bgpvpn_operator::leader::LeaseConfig;
use bgpvpn_operator::metrics::Metrics;
use bgpvpn_operator::run::{Operator, Options};
use bgpvpn_operator::shutdown::Trigger;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A VNI no other test of this binary uses.
pub fn unique_vni() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(10_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An operator running on a thread (and runtime) of its own, until [`RunningOperator::stop`].
pub struct RunningOperator {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    stop: Trigger,
    thread: std::thread::JoinHandle<()>,
}

impl RunningOperator {
    /// Stops it as SIGTERM would (a leader releases its Lease) and waits until it has stopped.
    pub fn stop(self) {
        self.stop.fire();
        self.thread.join().expect("the operator thread ends cleanly");
    }

    /// Leaves it running until the test binary exits.
    pub fn detach(self) -> Arc<Metrics> {
        let metrics = self.metrics.clone();
        Box::leak(Box::new(self));
        metrics
    }

    /// Passes that applied their plan.
    pub fn passes(&self) -> u64 {
        self.metrics.passes.get()
    }

    /// Leads (with or without election).
    pub fn leading(&self) -> bool {
        self.health.leading.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Starts an operator (leading without election) on its own runtime, as `instance`: a client
/// belongs to the runtime that made it, and each `#[tokio::test]` has its own.
pub fn start_operator(instance: &str) -> Arc<Metrics> {
    spawn_operator(instance, None).detach()
}

/// Starts an operator as `instance` with the test configuration; with `lease`, it leads only
/// while it holds that Lease.
pub fn spawn_operator(instance: &str, lease: Option<LeaseConfig>) -> RunningOperator {
    let config = Config::load(&fixture("operator-config.yaml")).expect("test config");
    spawn_operator_with(instance, lease, config)
}

/// [`spawn_operator`] with another configuration.
pub fn spawn_operator_with(instance: &str, lease: Option<LeaseConfig>, config: Config) -> RunningOperator {
    // the operator's log, filtered by RUST_LOG (e.g. RUST_LOG=bgpvpn_operator=debug)
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let kubeconfig = bgpvpn_testkit::server().expect("apiserver").kubeconfig.clone();
    let instance = instance.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let (trigger, stop) = bgpvpn_operator::shutdown::channel();
    let thread = std::thread::spawn(move || {
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
                    instance,
                    leader_election: lease,
                    ..Default::default()
                },
            );
            tx.send((operator.metrics(), operator.health())).unwrap();
            operator.run(stop).await.expect("operator runs");
        });
    });
    let (metrics, health) = rx.recv().unwrap();
    RunningOperator {
        metrics,
        health,
        stop: trigger,
        thread,
    }
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Installs the Kuryr CRDs from the fixture, as Kuryr's deployment would.
pub async fn install_kuryr_crds(client: &Client) {
    bgpvpn_testkit::apply_crd_file(client, &fixture("kuryr-crds.yaml")).await;
}

pub use bgpvpn_testkit::kuryr_api;

/// Creates (or replaces the content of) a Kuryr object. The answer is not read: it may be
/// deeper than a client can parse.
pub async fn put_kuryr(client: &Client, kind: &str, ns: &str, name: &str, body: Value) {
    let mut obj =
        json!({"apiVersion": "openstack.org/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}});
    obj.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let url = kuryr_api(client, kind, ns).resource_url().to_string();
    let request = kube::core::Request::new(url)
        .patch(
            name,
            &PatchParams::apply("kuryr-controller").force(),
            &Patch::Apply(&obj),
        )
        .unwrap();
    client.request::<serde::de::IgnoredAny>(request).await.unwrap();
}

pub async fn namespace(client: &Client, labels: Value) -> String {
    let name = bgpvpn_testkit::unique_name("ns");
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
    )
    .await
    .unwrap();
    name
}

pub async fn label_namespace(client: &Client, ns: &str, labels: Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.patch(
        ns,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": labels}})),
    )
    .await
    .unwrap();
}

/// A Node with an InternalIP, as the kubelet registers it.
pub async fn node(client: &Client, ip: &str, annotations: Value) -> String {
    let name = bgpvpn_testkit::unique_name("node");
    let api: Api<Node> = Api::all(client.clone());
    let body = json!({"metadata": {"name": name, "annotations": annotations}, "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}});
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

/// A pod scheduled to `node`, then reported Running with `ip` (as the kubelet does).
pub async fn running_pod(client: &Client, ns: &str, name: &str, labels: Value, node: &str, ip: &str) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let body = json!({"metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}});
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap())
        .await
        .unwrap();
    set_pod_status(
        client,
        ns,
        name,
        json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}),
    )
    .await
}

pub async fn set_pod_status(client: &Client, ns: &str, name: &str, status: Value) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap()
}

/// Deletes a pod at once (no kubelet here to finish a graceful delete).
pub async fn delete_pod_now(client: &Client, ns: &str, name: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    bgpvpn_testkit::wait_for("pod gone", TIMEOUT, || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

pub async fn bgpvpn(client: &Client, name: &str, vni: u32, extra: Value) -> Bgpvpn {
    let mut spec =
        json!({"vni": vni, "routeTargets": [format!("65000:{vni}")], "allowedNamespaces": {"all": true}});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let api: Api<Bgpvpn> = Api::all(client.clone());
    api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": name}, "spec": spec})).unwrap())
        .await
        .unwrap()
}

pub async fn binding(client: &Client, ns: &str, name: &str, vpn: &str, target: Value) -> VniBinding {
    let mut spec = json!({"bgpvpn": vpn});
    spec.as_object_mut()
        .unwrap()
        .extend(target.as_object().unwrap().clone());
    let api: Api<VniBinding> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "metadata": {"name": name}, "spec": spec})).unwrap())
        .await
        .unwrap()
}

pub fn selector(app: &str) -> Value {
    json!({"podSelector": {"matchLabels": {"app": app}}})
}

/// `(vni -> endpoint IPs)` of a node's object.
pub fn vnis_of(state: &EvpnNodeState) -> BTreeMap<u32, Vec<String>> {
    state
        .spec
        .l3vnis
        .iter()
        .map(|v| (v.vni, v.endpoints.iter().map(|e| e.ip.clone()).collect()))
        .collect()
}

/// Waits until the node's object exists and `check` holds; returns it.
pub async fn wait_node_state(
    client: &Client,
    node: &str,
    what: &str,
    check: impl Fn(&EvpnNodeState) -> bool,
) -> EvpnNodeState {
    let api: Api<EvpnNodeState> = Api::all(client.clone());
    bgpvpn_testkit::wait_for(&format!("EVPNNodeState {node}: {what}"), TIMEOUT, || async {
        api.get_opt(node).await.unwrap().filter(|s| check(s))
    })
    .await
}

/// Waits until the node's VNIs are exactly `want` (VNI -> endpoint IPs); only `vnis` are looked at.
pub async fn wait_endpoints(
    client: &Client,
    node: &str,
    vnis: &[u32],
    want: &[(u32, &[&str])],
) -> EvpnNodeState {
    let want: BTreeMap<u32, Vec<String>> = want
        .iter()
        .map(|(v, ips)| (*v, ips.iter().map(|s| s.to_string()).collect()))
        .collect();
    wait_node_state(client, node, &format!("endpoints {want:?}"), |s| {
        let got: BTreeMap<u32, Vec<String>> =
            vnis_of(s).into_iter().filter(|(v, _)| vnis.contains(v)).collect();
        got == want
    })
    .await
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `(status, reason)` of a condition, `("", "")` when absent.
pub fn cond(conditions: &[Condition], type_: &str) -> (String, String) {
    condition(conditions, type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

pub async fn wait_binding(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&VniBinding) -> bool,
) -> VniBinding {
    let api: Api<VniBinding> = Api::namespaced(client.clone(), ns);
    bgpvpn_testkit::wait_for(&format!("VNIBinding {ns}/{name}: {what}"), TIMEOUT, || async {
        api.get_opt(name).await.unwrap().filter(|b| check(b))
    })
    .await
}

/// Waits until the binding's Ready condition has `reason`.
pub async fn wait_binding_ready_reason(client: &Client, ns: &str, name: &str, reason: &str) -> VniBinding {
    wait_binding(client, ns, name, &format!("Ready reason {reason}"), |b| {
        b.status.as_ref().is_some_and(|s| {
            cond(&s.conditions, "Ready").1 == reason && s.observed_generation == b.metadata.generation
        })
    })
    .await
}

pub async fn wait_bgpvpn(client: &Client, name: &str, what: &str, check: impl Fn(&Bgpvpn) -> bool) -> Bgpvpn {
    let api: Api<Bgpvpn> = Api::all(client.clone());
    bgpvpn_testkit::wait_for(&format!("BGPVPN {name}: {what}"), TIMEOUT, || async {
        api.get_opt(name).await.unwrap().filter(|b| check(b))
    })
    .await
}

pub async fn wait_bgpvpn_condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> Bgpvpn {
    wait_bgpvpn(client, name, &format!("{type_}={status} ({reason})"), |b| {
        b.status
            .as_ref()
            .is_some_and(|s| cond(&s.conditions, type_) == (status.to_string(), reason.to_string()))
    })
    .await
}

/// Reports the node's VNIs as an agent would after programming them.
pub async fn agent_reports(client: &Client, node: &str, ready: bool) {
    let api: Api<EvpnNodeState> = Api::all(client.clone());
    let state = api.get(node).await.unwrap();
    let l3: Vec<Value> = state
        .spec
        .l3vnis
        .iter()
        .map(|v| json!({"vni": v.vni, "vrf": v.vrf, "bgpvpn": v.bgpvpn, "ready": ready, "endpoints": v.endpoints.len(), "message": if ready { "programmed" } else { "frr-reload failed" }}))
        .collect();
    let ready_cond = json!({"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": if ready { "Programmed" } else { "FrrFailed" }, "message": "as reported by the test agent", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    let status = json!({"status": {"observedGeneration": state.metadata.generation, "programmedVnis": if ready { l3.len() } else { 0 }, "l3vnis": l3, "conditions": [ready_cond]}});
    api.patch_status(
        node,
        &PatchParams::apply("bgpvpn-agent-test").force(),
        &Patch::Apply(
            json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "status": status["status"]}),
        ),
    )
    .await
    .unwrap();
}

/// Events about one object (`regarding.name`) in a namespace.
pub async fn events_about(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Waits for an Event with `reason` about `name`.
pub async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str) -> Event {
    bgpvpn_testkit::wait_for(&format!("event {reason} about {ns}/{name}"), TIMEOUT, || async {
        events_about(client, ns, name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
}

/// One relaxed CRD at a time (the tests of a binary share the API server).
static CRD_RELAXED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stores an object the installed CRD refuses, as an older CRD without `key` at `path` (property
/// names from the schema's root) would have stored it: objects outlive the CRD version they were
/// written under. Relaxes the CRD, retries `write` until the server takes it, then re-applies
/// the committed CRDs.
pub async fn store_under_relaxed_crd<T, F, Fut>(
    client: &Client,
    crd: &str,
    path: &[&str],
    key: &str,
    write: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let _one_at_a_time = CRD_RELAXED.lock().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut value = serde_json::to_value(crds.get(crd).await.unwrap()).unwrap();
    let mut at = &mut value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for property in path {
        at = &mut at["properties"][*property];
    }
    at.as_object_mut()
        .unwrap_or_else(|| panic!("{crd}: no schema at {path:?}"))
        .remove(key);
    crds.replace(
        crd,
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .unwrap();
    let stored = bgpvpn_testkit::wait_for(
        &format!("{crd} without {key} at {path:?} takes the object"),
        TIMEOUT,
        write,
    )
    .await;
    bgpvpn_testkit::apply_crds(client).await;
    stored
}
