//! Prometheus metrics of the operator (served on `/metrics`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `bgpvpn_operator_reconciles_total` | counter | `controller` = `cluster`, `bgpvpn`, `vnibinding` |
//! | `bgpvpn_operator_reconcile_errors_total` | counter | `controller` |
//! | `bgpvpn_operator_reconcile_duration_seconds` | histogram | `controller` |
//! | `bgpvpn_operator_node_state_writes_total` | counter | `op` = `apply`, `delete` |
//! | `bgpvpn_operator_status_writes_total` | counter | `kind` = `BGPVPN`, `VNIBinding` |
//! | `bgpvpn_operator_leader` | gauge | 1 while this replica holds the Lease |
//! | `bgpvpn_operator_nodes`, `_vnis`, `_endpoints` | gauge | the last plan: EVPN nodes, (node, VNI) pairs, endpoints |
//! | `bgpvpn_operator_malformed_objects` | gauge | objects that could not be read in full (Kuryr objects with malformed parts, objects of any kind that do not decode) |
//! | `bgpvpn_operator_kuryr_watched` | gauge | 1 once the Kuryr CRDs are found and their objects read |
//! | `bgpvpn_operator_plan_passes_total` | counter | passes over the whole cluster view (counted when applied) |
//! | `bgpvpn_operator_openstack_sync_*` | | the OpenStack sync (see `openstack::metrics`) |

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

type HistogramFamily = Family<ControllerLabel, Histogram, fn() -> Histogram>;

/// Every metric, and the registry that exposes them.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabel, Counter>,
    pub reconcile_errors: Family<ControllerLabel, Counter>,
    pub reconcile_duration: HistogramFamily,
    pub node_state_writes: Family<OpLabel, Counter>,
    pub status_writes: Family<KindLabel, Counter>,
    pub leader: Gauge,
    pub nodes: Gauge,
    pub vnis: Gauge,
    pub endpoints: Gauge,
    pub malformed_objects: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// 1 once the Kuryr CRDs are found and their stores filled.
    pub kuryr_watched: Gauge,
    /// Passes that computed a plan and applied it (counted at the end of the pass); used by
    /// tests to wait for "a pass has seen this change".
    pub passes: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bgpvpn_operator");
        let reconciles = Family::default();
        let reconcile_errors = Family::default();
        let reconcile_duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)));
        let node_state_writes = Family::default();
        let status_writes = Family::default();
        let leader = Gauge::default();
        let (nodes, vnis, endpoints) = (Gauge::default(), Gauge::default(), Gauge::default());
        let malformed_objects = Gauge::default();
        let kuryr_watched = Gauge::default();
        let passes = Counter::default();
        registry.register("reconciles", "Reconciles, per controller", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, per controller",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles, per controller",
            reconcile_duration.clone(),
        );
        registry.register(
            "node_state_writes",
            "EVPNNodeState writes (apply = created or changed, delete = orphan removed)",
            node_state_writes.clone(),
        );
        registry.register(
            "status_writes",
            "Status writes of BGPVPNs and VNIBindings",
            status_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register("nodes", "EVPN nodes in the last plan", nodes.clone());
        registry.register("vnis", "(node, L3 VNI) pairs in the last plan", vnis.clone());
        registry.register(
            "endpoints",
            "Endpoints in the last plan, over all nodes",
            endpoints.clone(),
        );
        registry.register(
            "malformed_objects",
            "Objects that could not be read in full (malformed Kuryr parts; objects of any kind that do not decode)",
            malformed_objects.clone(),
        );
        registry.register(
            "kuryr_watched",
            "1 once the Kuryr CRDs are found and their objects read",
            kuryr_watched.clone(),
        );
        registry.register(
            "plan_passes",
            "Passes over the whole cluster view (counted once applied)",
            passes.clone(),
        );
        // the OpenStack sync's own set (bgpvpn_operator_openstack_sync_*), see openstack::metrics
        crate::openstack::register_metrics(registry.sub_registry_with_prefix("openstack_sync"));
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            node_state_writes,
            status_writes,
            leader,
            nodes,
            vnis,
            endpoints,
            malformed_objects,
            kuryr_watched,
            passes,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Starts timing a reconcile of `controller`; call [`ReconcileTimer::done`] at the end.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabel { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    pub fn node_state_write(&self, op: &'static str) {
        self.node_state_writes.get_or_create(&OpLabel { op }).inc();
    }

    pub fn node_state_write_count(&self, op: &'static str) -> u64 {
        self.node_state_writes.get_or_create(&OpLabel { op }).get()
    }

    pub fn status_write(&self, kind: &'static str) {
        self.status_writes.get_or_create(&KindLabel { kind }).inc();
    }
}

/// Measures one reconcile.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl ReconcileTimer<'_> {
    pub fn done<T, E>(self, result: &Result<T, E>) {
        self.finished(result.is_err());
    }

    /// Records the duration, and an error when `failed`.
    pub fn finished(self, failed: bool) {
        let label = ControllerLabel {
            controller: self.controller,
        };
        self.metrics
            .reconcile_duration
            .get_or_create(&label)
            .observe(self.start.elapsed().as_secs_f64());
        if failed {
            self.metrics.reconcile_errors.get_or_create(&label).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = Metrics::new();
        let t = m.reconcile("cluster");
        t.finished(true);
        m.node_state_write("apply");
        let text = m.encode();
        for needle in [
            "bgpvpn_operator_reconciles_total{controller=\"cluster\"} 1",
            "bgpvpn_operator_reconcile_errors_total{controller=\"cluster\"} 1",
            "bgpvpn_operator_reconcile_duration_seconds_count{controller=\"cluster\"} 1",
            "bgpvpn_operator_node_state_writes_total{op=\"apply\"} 1",
            "bgpvpn_operator_leader 0",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }
}
