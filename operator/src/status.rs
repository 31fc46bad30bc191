//! The `BGPVPN` and `VNIBinding` controllers (kube-runtime `Controller`s): each reconcile
//! writes one object's status from the latest [`Plan`] — by server-side apply of the status
//! subresource with the operator's field manager, only when it changed — and records an Event
//! when a condition enters a new reason worth telling. Spec is never touched.
//!
//! Every new plan reconciles all objects (`reconcile_all_on`); an object whose generation the
//! plan has not seen yet is left for the next plan.

use std::sync::Arc;
use std::time::Duration;

use bgpvpn_crds::conditions::{self, types};
use bgpvpn_crds::{Bgpvpn, BgpvpnStatus, VniBinding, VniBindingStatus};
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::apply::FIELD_MANAGER;
use crate::build::{BgpvpnReport, BindingReport, Cond, ObjectKey, Plan};
use crate::cluster::Changes;
use crate::events::Events;
use crate::guard::{Guarded, Unreadable};
use crate::metrics::Metrics;
use crate::reasons;
use crate::shutdown::Shutdown;

/// What the status reconcilers share.
pub struct StatusContext {
    pub client: Client,
    pub plan: watch::Receiver<Arc<Plan>>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
}

/// Errors of a status reconcile.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("write status of {0}: {1}")]
    Write(String, #[source] kube::Error),
}

/// `now`, to the second (the API server keeps no more; comparing finer would rewrite forever).
fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid time"))
}

fn conditions_of(fresh: &[Cond], generation: Option<i64>, previous: &[Condition]) -> Vec<Condition> {
    let now = now();
    // never an empty message: a condition's message is required, and an API server that turns
    // "" into null in a server-side apply then refuses it as not a string
    let message = |c: &Cond| {
        if c.message.is_empty() {
            c.reason.to_string()
        } else {
            c.message.clone()
        }
    };
    let fresh = fresh
        .iter()
        .map(|c| conditions::condition(c.type_, c.ok, c.reason, message(c), generation, &now))
        .collect();
    conditions::merged(previous, fresh)
}

/// The status a BGPVPN should have.
pub fn bgpvpn_status(report: &BgpvpnReport, previous: &BgpvpnStatus) -> BgpvpnStatus {
    BgpvpnStatus {
        conditions: conditions_of(&report.conditions, report.generation, &previous.conditions),
        observed_generation: report.generation,
        programmed_vni: report.programmed_vni,
        bindings: report.bindings,
        endpoints: report.endpoints,
        ready_nodes: report.ready_nodes,
        total_nodes: report.total_nodes,
        ready_nodes_text: Some(format!("{}/{}", report.ready_nodes, report.total_nodes)),
    }
}

/// The status a VNIBinding should have.
pub fn binding_status(report: &BindingReport, previous: &VniBindingStatus) -> VniBindingStatus {
    VniBindingStatus {
        conditions: conditions_of(&report.conditions, report.generation, &previous.conditions),
        observed_generation: report.generation,
        endpoints: report.endpoints,
        nodes: report.nodes.clone(),
        ready_nodes: report.ready_nodes,
    }
}

/// The Events a condition change is worth: a condition that enters a warning reason (Invalid,
/// conflicts, NotAllowed, ...), and Ready entering `Programmed`.
pub fn events_for(previous: &[Condition], current: &[Condition]) -> Vec<Event> {
    current
        .iter()
        .filter(|c| {
            conditions::find(previous, &c.type_).is_none_or(|p| p.reason != c.reason || p.status != c.status)
        })
        .filter_map(|c| {
            let warning =
                reasons::is_warning(&c.reason) && (c.status == "False") != (c.type_ == types::CONFLICT);
            let programmed = c.type_ == types::READY && c.reason == reasons::PROGRAMMED;
            (warning || programmed).then(|| Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: c.reason.clone(),
                note: Some(truncate(&c.message, 1000)),
                action: match c.type_.as_str() {
                    types::VALID => "Validate",
                    types::CONFLICT => "CheckConflicts",
                    _ => "Program",
                }
                .into(),
                secondary: None,
            })
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn publish<K: Resource<DynamicType = ()>>(ctx: &StatusContext, obj: &K, events: Vec<Event>) {
    let reference = obj.object_ref(&());
    for event in events {
        ctx.events.publish(&event, &reference).await;
    }
}

/// Reconciles one BGPVPN's status. An unreadable object is left as it is (the cluster pass
/// reports it).
pub async fn reconcile_bgpvpn(
    obj: Arc<Guarded<Bgpvpn>>,
    ctx: Arc<StatusContext>,
) -> Result<Action, StatusError> {
    let timer = ctx.metrics.reconcile("bgpvpn");
    let result = match obj.get() {
        Ok(obj) => write_bgpvpn(obj, &ctx).await,
        Err(unreadable) => write_unreadable::<Bgpvpn>(unreadable, "BGPVPN", &ctx).await,
    };
    timer.done(&result);
    result
}

async fn write_bgpvpn(obj: &Bgpvpn, ctx: &StatusContext) -> Result<Action, StatusError> {
    let plan = ctx.plan.borrow().clone();
    let name = obj.name_any();
    let Some(report) = plan
        .bgpvpns
        .get(&name)
        .filter(|r| r.uid == obj.uid() && r.generation == obj.metadata.generation)
    else {
        return Ok(Action::await_change());
    };
    let previous = obj.status.clone().unwrap_or_default();
    let status = bgpvpn_status(report, &previous);
    if status == previous {
        return Ok(Action::await_change());
    }
    let api: Api<Bgpvpn> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": Bgpvpn::api_version(&()), "kind": Bgpvpn::kind(&()), "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| StatusError::Write(format!("BGPVPN {name}"), e))?;
    ctx.metrics.status_write("BGPVPN");
    tracing::debug!(bgpvpn = %name, ready = %status.ready_nodes_text.as_deref().unwrap_or_default(), "status written");
    publish(ctx, obj, events_for(&previous.conditions, &status.conditions)).await;
    Ok(Action::await_change())
}

/// Reconciles one VNIBinding's status (as [`reconcile_bgpvpn`]).
pub async fn reconcile_binding(
    obj: Arc<Guarded<VniBinding>>,
    ctx: Arc<StatusContext>,
) -> Result<Action, StatusError> {
    let timer = ctx.metrics.reconcile("vnibinding");
    let result = match obj.get() {
        Ok(obj) => write_binding(obj, &ctx).await,
        Err(unreadable) => write_unreadable::<VniBinding>(unreadable, "VNIBinding", &ctx).await,
    };
    timer.done(&result);
    result
}

async fn write_binding(obj: &VniBinding, ctx: &StatusContext) -> Result<Action, StatusError> {
    let plan = ctx.plan.borrow().clone();
    let key = ObjectKey::of(obj);
    let Some(report) = plan
        .bindings
        .get(&key)
        .filter(|r| r.uid == obj.uid() && r.generation == obj.metadata.generation)
    else {
        return Ok(Action::await_change());
    };
    let previous = obj.status.clone().unwrap_or_default();
    let status = binding_status(report, &previous);
    if status == previous {
        return Ok(Action::await_change());
    }
    let api: Api<VniBinding> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch =
        json!({"apiVersion": VniBinding::api_version(&()), "kind": VniBinding::kind(&()), "status": status});
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| StatusError::Write(format!("VNIBinding {key}"), e))?;
    ctx.metrics.status_write("VNIBinding");
    tracing::debug!(binding = %key, endpoints = status.endpoints, "status written");
    publish(ctx, obj, events_for(&previous.conditions, &status.conditions)).await;
    Ok(Action::await_change())
}

/// The status of an object the operator's types cannot read: `Valid` and `Ready` false with
/// the decoding error, and nothing else (nothing the operator said of it before still holds).
/// Its Event comes from the cluster pass, which also leaves it out.
pub fn unreadable_conditions(unreadable: &Unreadable) -> Vec<Condition> {
    let message = format!(
        "the operator cannot read this object, so it is left out: {}",
        unreadable.error
    );
    let fresh = [types::VALID, types::READY]
        .map(|type_| Cond::new(type_, false, reasons::MALFORMED_OBJECT, message.clone()));
    conditions_of(&fresh, unreadable.metadata.generation, &unreadable.conditions)
}

async fn write_unreadable<K>(
    unreadable: &Unreadable,
    kind: &'static str,
    ctx: &StatusContext,
) -> Result<Action, StatusError>
where
    K: Resource<DynamicType = ()>,
{
    let meta = &unreadable.metadata;
    let Some(name) = meta.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let conditions = unreadable_conditions(unreadable);
    if conditions == unreadable.conditions && unreadable.observed_generation == meta.generation {
        return Ok(Action::await_change());
    }
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match &meta.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
        None => Api::all_with(ctx.client.clone(), &resource),
    };
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "status": {"observedGeneration": meta.generation, "conditions": conditions}});
    let what = format!("{kind} {}", unreadable_key(meta));
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| StatusError::Write(what.clone(), e))?;
    ctx.metrics.status_write(kind);
    tracing::debug!(object = %what, "status of an unreadable object written");
    Ok(Action::await_change())
}

fn unreadable_key(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

fn error_policy<K>(obj: Arc<K>, error: &StatusError, _ctx: Arc<StatusContext>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    tracing::warn!(kind = %K::kind(&()), name = %obj.name_any(), error = %error, "status reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// A `()` each time a new plan is published.
fn plan_changes(rx: watch::Receiver<Arc<Plan>>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

/// Status writes in flight at once, per controller: a new plan reconciles every object, and
/// each write in flight holds a connection to the API server.
const CONCURRENT_RECONCILES: u16 = 8;

/// Runs the BGPVPN status controller until `stop`, over the shared reflector (`store`, filled
/// by `changes`, which this controller drives).
pub async fn run_bgpvpn_controller(
    ctx: Arc<StatusContext>,
    store: Store<Guarded<Bgpvpn>>,
    changes: Changes<Bgpvpn>,
    stop: Shutdown,
) {
    Controller::for_stream(changes, store)
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .reconcile_all_on(plan_changes(ctx.plan.clone()))
        .graceful_shutdown_on(stop.wait())
        .run(reconcile_bgpvpn, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Runs the VNIBinding status controller until `stop` (as [`run_bgpvpn_controller`]).
pub async fn run_binding_controller(
    ctx: Arc<StatusContext>,
    store: Store<Guarded<VniBinding>>,
    changes: Changes<VniBinding>,
    stop: Shutdown,
) {
    Controller::for_stream(changes, store)
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .reconcile_all_on(plan_changes(ctx.plan.clone()))
        .graceful_shutdown_on(stop.wait())
        .run(reconcile_binding, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(type_: &str, status: &str, reason: &str) -> Condition {
        conditions::condition(type_, status == "True", reason, "m", Some(1), &now())
    }

    #[test]
    fn an_unreadable_objects_status_is_written_once() {
        let mut unreadable = Unreadable {
            metadata: ObjectMeta {
                name: Some("x".into()),
                generation: Some(3),
                ..Default::default()
            },
            error: "invalid value: integer `8589934592`, expected u32".into(),
            observed_generation: Some(2),
            conditions: vec![
                c("Ready", "True", "Programmed"),
                c("Conflict", "False", "NoConflict"),
            ],
        };
        let first = unreadable_conditions(&unreadable);
        let types: Vec<&str> = first.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Valid"], "only what holds now: {first:?}");
        assert!(first.iter().all(|c| c.status == "False"
            && c.reason == "MalformedObject"
            && c.message.contains("8589934592")));
        // read back as written: nothing left to write
        unreadable.conditions = first.clone();
        unreadable.observed_generation = Some(3);
        assert_eq!(unreadable_conditions(&unreadable), first);
    }

    #[test]
    fn events_only_for_news_worth_telling() {
        let before = vec![
            c("Valid", "True", "Valid"),
            c("Conflict", "False", "NoConflict"),
            c("Ready", "False", "NodesNotReady"),
        ];
        assert!(events_for(&before, &before).is_empty(), "no change, no event");
        let after = vec![
            c("Valid", "True", "Valid"),
            c("Conflict", "True", "PodConflict"),
            c("Ready", "True", "Programmed"),
        ];
        let events = events_for(&before, &after);
        let got: Vec<(String, bool)> = events
            .iter()
            .map(|e| (e.reason.clone(), e.type_ == EventType::Warning))
            .collect();
        assert_eq!(
            got,
            [
                ("PodConflict".to_string(), true),
                ("Programmed".to_string(), false)
            ]
        );
        let not_allowed = vec![c("Ready", "False", "NotAllowed")];
        assert_eq!(events_for(&[], &not_allowed)[0].type_, EventType::Warning);
        assert!(events_for(&[], &[c("Ready", "False", "NodesNotReady")]).is_empty());
    }

    #[test]
    fn status_keeps_transition_times_and_is_stable() {
        let report = BgpvpnReport {
            uid: Some("u".into()),
            generation: Some(2),
            conditions: vec![Cond::new("Ready", true, "Programmed", "ok")],
            programmed_vni: Some(7),
            bindings: 1,
            endpoints: 3,
            ready_nodes: 1,
            total_nodes: 2,
        };
        let first = bgpvpn_status(&report, &BgpvpnStatus::default());
        assert_eq!(first.ready_nodes_text.as_deref(), Some("1/2"));
        assert_eq!(first.conditions[0].observed_generation, Some(2));
        let again = bgpvpn_status(&report, &first);
        assert_eq!(first, again, "an unchanged report writes nothing");
    }
}
