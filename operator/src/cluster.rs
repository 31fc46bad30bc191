//! The cluster pass: reflectors over every input kind feed one debounced loop that, on any
//! change, takes a snapshot ([`ClusterView`]), builds the [`Plan`] (pure), applies the
//! EVPNNodeStates, and publishes the plan to the status controllers.
//!
//! Inputs: BGPVPN, VNIBinding, Pod, Namespace, Node, EVPNNodeState (the agents' status), and
//! KuryrNetwork / KuryrPort once their CRDs are found (looked for again periodically while
//! absent). The first pass waits until every store is filled and the API server has said
//! whether the Kuryr CRDs exist (and, if they do, their stores are filled): a restart or a
//! failover rebuilds exactly the plan that was applied, and writes nothing.
//!
//! Every kind is watched as [`Guarded`] objects: one that does not decode is kept as unreadable
//! (reported by name in the plan's `malformed`, the log, a metric and an Event on it) and never
//! fails the list or the watch of its kind. Stored objects are trimmed to the fields the build
//! reads (pods are stored as [`PodView`]s), which keeps memory flat with many pods. The BGPVPN and VNIBinding reflectors
//! are shared with the status controllers ([`SharedInputs`]): one copy of each object.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use futures::{Future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, ObjectReference};
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::apply::NodeStateWriter;
use crate::build::{self, Plan};
use crate::config::Config;
use crate::events::Events;
use crate::guard::Guarded;
use crate::kuryr::{KuryrNetwork, KuryrPort};
use crate::metrics::Metrics;
use crate::reasons;
use crate::shutdown::Shutdown;
use crate::startup;
use crate::view::{ClusterView, KuryrView, PodView, UnreadableObject};

/// A store of every object of kind `K` (readable or not), and the stream of objects that keeps
/// it filled (whoever polls it fills the store); every change wakes the pass loop through
/// `trigger`. Readable objects are trimmed by `trim` before they are stored.
fn reflected<K>(
    client: &Client,
    trim: fn(&mut K),
    trigger: Arc<Notify>,
) -> (
    Store<Guarded<K>>,
    impl Stream<Item = Result<Guarded<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api = Api::<Guarded<K>>::all(client.clone());
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(move |obj: &mut Guarded<K>| {
                if let Some(obj) = obj.ok_mut() {
                    trim(obj);
                }
            }),
    )
    .inspect(move |event| match event {
        Ok(_) => trigger.notify_one(),
        Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying"),
    })
    .applied_objects();
    (reader, stream)
}

/// A store and the future that keeps it filled.
fn reflect<K>(
    client: &Client,
    trim: fn(&mut K),
    trigger: Arc<Notify>,
) -> (Store<Guarded<K>>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, stream) = reflected(client, trim, trigger);
    (reader, stream.for_each(|_| futures::future::ready(())))
}

/// The readable objects of a store; the others are added to `unreadable`.
fn readable<K>(store: &Store<Guarded<K>>, unreadable: &mut Vec<UnreadableObject>) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let state = store.state();
    let mut out = Vec::with_capacity(state.len());
    for obj in state {
        match obj.get() {
            Ok(k) => out.push(k.clone()),
            Err(u) => unreadable.push(UnreadableObject::new(&K::api_version(&()), &K::kind(&()), u)),
        }
    }
    out
}

/// The BGPVPN and VNIBinding reflectors, read by both the cluster pass (their stores) and the
/// status controllers (their stores and their streams, which the controllers drive), so each
/// object is held once. Made per operator term.
pub struct SharedInputs {
    /// Wakes the pass loop on any change of any input.
    pub trigger: Arc<Notify>,
    pub bgpvpns: Store<Guarded<Bgpvpn>>,
    pub bindings: Store<Guarded<VniBinding>>,
}

/// A stream of changed objects that fills a shared store.
pub type Changes<K> = futures::stream::BoxStream<'static, Result<Guarded<K>, watcher::Error>>;

impl SharedInputs {
    /// The shared reflectors, with the streams that fill them: hand those to the controllers.
    pub fn new(client: &Client) -> (Self, Changes<Bgpvpn>, Changes<VniBinding>) {
        let trigger = Arc::new(Notify::new());
        let (bgpvpns, bgpvpn_changes) = reflected::<Bgpvpn>(client, trim_meta, trigger.clone());
        let (bindings, binding_changes) = reflected::<VniBinding>(client, trim_meta, trigger.clone());
        (
            SharedInputs {
                trigger,
                bgpvpns,
                bindings,
            },
            bgpvpn_changes.boxed(),
            binding_changes.boxed(),
        )
    }
}

/// Keeps what every kind's build step reads: never the managed fields.
fn trim_meta<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
}

/// Nothing to trim: a [`PodView`] holds only what the build reads.
fn trim_pod(_: &mut PodView) {}

fn trim_node(node: &mut Node) {
    let meta = node.meta_mut();
    meta.managed_fields = None;
    // only the operator's own annotations are read
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with(bgpvpn_crds::LABEL_PREFIX));
    }
    node.spec = None;
    let status = node.status.take().unwrap_or_default();
    node.status = Some(NodeStatus {
        addresses: status.addresses,
        ..Default::default()
    });
}

fn trim_namespace(ns: &mut Namespace) {
    trim_meta(ns);
    ns.spec = None;
    ns.status = None;
}

fn trim_node_state(obj: &mut EvpnNodeState) {
    obj.meta_mut().managed_fields = None;
}

fn trim_kuryr<K: Resource>(obj: &mut K) {
    trim_meta(obj);
}

/// The Kuryr stores, once the CRDs are found and the stores are filled.
#[derive(Clone)]
struct KuryrStores {
    networks: Store<Guarded<KuryrNetwork>>,
    ports: Store<Guarded<KuryrPort>>,
}

/// What the pass loop knows of Kuryr. A pass is built only once this is not `Unknown`: a pass
/// that took "not known yet" for "not installed" would withdraw every Kuryr-resolved binding
/// from its nodes until the next pass, on every start of the operator and every failover.
#[derive(Clone, Default)]
enum Kuryr {
    /// Not asked yet, or the API server has not answered.
    #[default]
    Unknown,
    /// The CRDs are not served (looked for again periodically).
    Absent,
    /// The CRDs are served and their stores are filled.
    Watched(KuryrStores),
}

/// Every store the build reads.
struct Inputs {
    bgpvpns: Store<Guarded<Bgpvpn>>,
    bindings: Store<Guarded<VniBinding>>,
    pods: Store<Guarded<PodView>>,
    namespaces: Store<Guarded<Namespace>>,
    nodes: Store<Guarded<Node>>,
    node_states: Store<Guarded<EvpnNodeState>>,
    kuryr: watch::Receiver<Kuryr>,
}

impl Inputs {
    /// The snapshot of one pass.
    fn view(&self) -> ClusterView {
        let mut unreadable = Vec::new();
        let kuryr = match &*self.kuryr.borrow() {
            Kuryr::Watched(k) => Some(KuryrView {
                networks: readable(&k.networks, &mut unreadable),
                ports: readable(&k.ports, &mut unreadable),
            }),
            Kuryr::Unknown | Kuryr::Absent => None,
        };
        ClusterView {
            bgpvpns: readable(&self.bgpvpns, &mut unreadable),
            bindings: readable(&self.bindings, &mut unreadable),
            pods: readable(&self.pods, &mut unreadable),
            namespaces: readable(&self.namespaces, &mut unreadable),
            nodes: readable(&self.nodes, &mut unreadable),
            kuryr,
            node_states: readable(&self.node_states, &mut unreadable),
            unreadable,
        }
    }

    /// Until every store is filled and whether Kuryr is installed is known (and if it is, its
    /// stores are filled too): a pass never sees an input as empty only because it has not been
    /// read yet.
    async fn wait_until_ready(&self) {
        // a writer is only dropped with its task, which lives as long as this pass loop
        let _ = futures::join!(
            self.bgpvpns.wait_until_ready(),
            self.bindings.wait_until_ready(),
            self.pods.wait_until_ready(),
            self.namespaces.wait_until_ready(),
            self.nodes.wait_until_ready(),
            self.node_states.wait_until_ready(),
        );
        let mut kuryr = self.kuryr.clone();
        if matches!(*kuryr.borrow_and_update(), Kuryr::Unknown) {
            tracing::info!(
                "caches filled; waiting for the Kuryr objects (or to learn that Kuryr is not installed)"
            );
        }
        // the sender lives in the discovery task, as long as this pass loop
        let _ = kuryr.wait_for(|k| !matches!(k, Kuryr::Unknown)).await;
    }
}

/// Looks for the Kuryr CRDs until found (logging once while absent), then fills their stores.
/// `state` says `Absent` only on an answer that they are not served, and `Watched` only once
/// their stores are filled.
async fn discover_kuryr(
    client: Client,
    every: Duration,
    trigger: Arc<Notify>,
    state: watch::Sender<Kuryr>,
    metrics: Arc<Metrics>,
) {
    let mut told = false;
    loop {
        match startup::kuryr_missing(&client).await {
            Ok(None) => break,
            Ok(Some(missing)) => {
                if !told {
                    tracing::info!(%missing, "Kuryr CRDs not installed: running without Kuryr (networkId/routerId/portId bindings report KuryrNotInstalled); looking again every {}s", every.as_secs());
                    told = true;
                }
                state.send_if_modified(|k| {
                    let unknown = matches!(k, Kuryr::Unknown);
                    if unknown {
                        *k = Kuryr::Absent;
                    }
                    unknown
                });
            }
            // not known yet: no pass is built on a guess
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for the Kuryr CRDs; retrying in {}s", every.as_secs())
            }
        }
        tokio::time::sleep(every).await;
    }
    let (networks, drive_networks) = reflect::<KuryrNetwork>(&client, trim_kuryr, trigger.clone());
    let (ports, drive_ports) = reflect::<KuryrPort>(&client, trim_kuryr, trigger.clone());
    let install = async {
        let _ = futures::join!(networks.wait_until_ready(), ports.wait_until_ready());
        state.send_replace(Kuryr::Watched(KuryrStores {
            networks: networks.clone(),
            ports: ports.clone(),
        }));
        metrics.kuryr_watched.set(1);
        tracing::info!("Kuryr CRDs found: KuryrNetwork and KuryrPort are watched");
        trigger.notify_one();
    };
    futures::join!(drive_networks, drive_ports, install);
}

/// Everything one pass needs besides the stores.
pub struct PassContext {
    pub client: Client,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub events: Events,
    pub plan: watch::Sender<Arc<Plan>>,
    /// Set once the stores are filled (for `/readyz`).
    pub synced: Arc<AtomicBool>,
}

/// Runs the cluster pass loop until `stop`.
pub async fn run(ctx: PassContext, shared: SharedInputs, stop: Shutdown) {
    let client = ctx.client.clone();
    let trigger = shared.trigger;
    let mut tasks = JoinSet::new();
    macro_rules! input {
        ($kind:ty, $trim:expr) => {{
            let (store, drive) = reflect::<$kind>(&client, $trim, trigger.clone());
            tasks.spawn(drive);
            store
        }};
    }
    let (kuryr_tx, kuryr_rx) = watch::channel(Kuryr::Unknown);
    let inputs = Inputs {
        bgpvpns: shared.bgpvpns,
        bindings: shared.bindings,
        pods: input!(PodView, trim_pod),
        namespaces: input!(Namespace, trim_namespace),
        nodes: input!(Node, trim_node),
        node_states: input!(EvpnNodeState, trim_node_state),
        kuryr: kuryr_rx,
    };
    tasks.spawn(discover_kuryr(
        client.clone(),
        ctx.config.kuryr_discovery(),
        trigger.clone(),
        kuryr_tx,
        ctx.metrics.clone(),
    ));

    tokio::select! {
        _ = inputs.wait_until_ready() => {}
        _ = stop.wait() => return,
    }
    ctx.synced.store(true, Ordering::Relaxed);
    tracing::info!("caches filled; reconciling");

    let mut writer = NodeStateWriter::new(client.clone());
    let mut retry = Retry::default();
    let mut pace = Pace::default();
    trigger.notify_one();
    loop {
        tokio::select! {
            _ = trigger.notified() => {}
            _ = tokio::time::sleep(retry.delay().unwrap_or(ctx.config.resync())) => {}
            _ = stop.wait() => break,
        }
        // batch window: whatever else changes meanwhile is in this pass too
        tokio::select! {
            _ = tokio::time::sleep(pace.window(ctx.config.debounce())) => {}
            _ = stop.wait() => break,
        }
        let started = Instant::now();
        let ok = pass(&ctx, &inputs, &mut writer).await;
        pace.record(started);
        retry.record(ok);
    }
    ctx.synced.store(false, Ordering::Relaxed);
    ctx.metrics.kuryr_watched.set(0);
    tasks.abort_all();
}

/// One pass: snapshot → build → apply → publish. `true` when everything was written.
async fn pass(ctx: &PassContext, inputs: &Inputs, writer: &mut NodeStateWriter) -> bool {
    let timer = ctx.metrics.reconcile("cluster");
    // only this loop publishes plans: the published one is the previous pass's
    let last = ctx.plan.borrow().clone();
    let view = inputs.view();
    let plan = build::plan(&view, &ctx.config);
    let applied = writer.apply(&plan, &view.node_states, &ctx.metrics).await;
    for error in &applied.errors {
        tracing::warn!(%error, "apply failed; will retry");
    }
    record_gauges(ctx, &plan);
    report_changes(ctx, &view, &last, &plan).await;
    drop(last);
    // shared, never copied: one plan is kept between passes
    ctx.plan.send_if_modified(|current| {
        let changed = **current != plan;
        if changed {
            *current = Arc::new(plan);
        }
        changed
    });
    ctx.metrics.passes.inc();
    let ok = applied.errors.is_empty() && applied.awaiting_store == 0;
    timer.finished(!applied.errors.is_empty());
    ok
}

fn record_gauges(ctx: &PassContext, plan: &Plan) {
    let m = &ctx.metrics;
    m.nodes.set(plan.nodes.len() as i64);
    m.vnis
        .set(plan.nodes.values().map(|n| n.spec.l3vnis.len() as i64).sum());
    m.endpoints.set(
        plan.nodes
            .values()
            .flat_map(|n| &n.spec.l3vnis)
            .map(|v| v.endpoints.len() as i64)
            .sum(),
    );
    m.malformed_objects.set(plan.malformed.len() as i64);
}

/// At most this many Events about malformed objects per pass (all are logged).
const MAX_MALFORMED_EVENTS: usize = 20;

/// Where Events about the malformed objects of a view go, by `Kind ns/name`.
fn malformed_references(view: &ClusterView) -> HashMap<String, ObjectReference> {
    let mut refs: HashMap<String, ObjectReference> = view
        .unreadable
        .iter()
        .map(|u| (u.describe(), u.reference()))
        .collect();
    if let Some(k) = &view.kuryr {
        for net in &k.networks {
            refs.insert(
                format!(
                    "KuryrNetwork {}/{}",
                    net.namespace().unwrap_or_default(),
                    net.name_any()
                ),
                net.object_ref(&()),
            );
        }
        for port in &k.ports {
            refs.insert(
                format!(
                    "KuryrPort {}/{}",
                    port.namespace().unwrap_or_default(),
                    port.name_any()
                ),
                port.object_ref(&()),
            );
        }
    }
    refs
}

/// Logs (and records an Event on the object, for malformed objects and nodes) problems that
/// are new since the last pass.
async fn report_changes(ctx: &PassContext, view: &ClusterView, last: &Plan, plan: &Plan) {
    let malformed = new_entries(&last.malformed, &plan.malformed);
    if !malformed.is_empty() {
        let refs = malformed_references(view);
        for (i, (what, problem)) in malformed.into_iter().enumerate() {
            tracing::warn!(object = %what, %problem, "object not read in full: what cannot be read is ignored");
            let Some(regarding) = refs.get(what.as_str()).filter(|_| i < MAX_MALFORMED_EVENTS) else {
                continue;
            };
            let event = Event {
                type_: EventType::Warning,
                reason: reasons::MALFORMED_OBJECT.into(),
                note: Some(format!("{what}: {problem}")),
                action: "Read".into(),
                secondary: None,
            };
            ctx.events.publish(&event, regarding).await;
        }
    }
    for (node, problem) in new_entries(&last.kept_nodes, &plan.kept_nodes) {
        tracing::warn!(%node, %problem, "EVPNNodeState of this node left as it is");
        if let Some(obj) = view.nodes.iter().find(|n| n.name_any() == *node) {
            let event = Event {
                type_: EventType::Warning,
                reason: "EVPNNodeStateNotUpdated".into(),
                note: Some(format!(
                    "the EVPNNodeState of this node is left as it is: {problem}"
                )),
                action: "Program".into(),
                secondary: None,
            };
            ctx.events.publish(&event, &obj.object_ref(&())).await;
        }
    }
}

fn new_entries<'a>(
    before: &BTreeMap<String, String>,
    now: &'a BTreeMap<String, String>,
) -> Vec<(&'a String, &'a String)> {
    now.iter().filter(|(k, v)| before.get(*k) != Some(*v)).collect()
}

/// Keeps the pass loop busy at most half of the time: after a pass that took longer than the
/// debounce window (most of it waiting for the API server to take big node objects), the next
/// one waits as long, so it takes in more changes at once and writes each node less often. An
/// idle operator still answers a change within the debounce window.
#[derive(Default)]
struct Pace {
    last: Option<(Instant, Duration)>,
}

impl Pace {
    /// The most a pass makes the next one wait.
    const MAX: Duration = Duration::from_secs(10);

    /// The batch window of the next pass, starting now.
    fn window(&self, debounce: Duration) -> Duration {
        let rest = self
            .last
            .map(|(ended, took)| took.min(Self::MAX).saturating_sub(ended.elapsed()))
            .unwrap_or_default();
        debounce.max(rest)
    }

    fn record(&mut self, started: Instant) {
        self.last = Some((Instant::now(), started.elapsed()));
    }
}

/// Exponential retry after failed or incomplete passes: 1 s, 2 s, ... 60 s.
#[derive(Default)]
struct Retry {
    failures: u32,
}

impl Retry {
    fn record(&mut self, ok: bool) {
        self.failures = if ok { 0 } else { self.failures.saturating_add(1) };
    }

    fn delay(&self) -> Option<Duration> {
        (self.failures > 0)
            .then(|| Duration::from_secs(1u64 << (self.failures - 1).min(6)).min(Duration::from_secs(60)))
    }
}
