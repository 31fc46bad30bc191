//! Metrics of the OpenStack sync.
//!
//! One process-wide set ([`sync_metrics`]); the operator exposes it by calling
//! [`register_metrics`] on its registry (with the prefix it uses, e.g.
//! `registry.sub_registry_with_prefix("openstack_sync")`). Tests give each [`super::Syncer`]
//! its own set.
//!
//! | metric (after the prefix) | type | labels |
//! |---|---|---|
//! | `passes_total` | counter | `result` = `ok`, `failed` |
//! | `failures_total` | counter | `reason` = `neutron_unreachable`, `neutron_unauthorized`, `neutron_error`, `neutron_bad_response`, `keystone_*`, `credentials`, `config`, `kubernetes` |
//! | `up` | gauge | 1 when the last pass succeeded |
//! | `last_success_timestamp_seconds` | gauge | Unix time of the last successful pass |
//! | `pass_duration_seconds` | histogram | |
//! | `writes_total` | counter | `kind` = `BGPVPN`, `VNIBinding`; `op` = `create`, `update`, `delete`, `status` |
//! | `neutron_bgpvpns` | gauge | bgpvpns read in the last successful pass |
//! | `invalid_bgpvpns` | gauge | of those, the ones reported as malformed (objects kept as they are) |
//! | `name_clashes` | gauge | names taken by objects the sync does not own, in the last pass |
//! | `token_issues_total` | counter | Keystone tokens issued |

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    pub kind: &'static str,
    pub op: &'static str,
}

/// The metrics of one sync (clones share the values).
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    pub passes: Family<ResultLabel, Counter>,
    pub failures: Family<ReasonLabel, Counter>,
    pub up: Gauge,
    pub last_success: Gauge<f64, AtomicU64>,
    pub pass_duration: Histogram,
    pub writes: Family<WriteLabel, Counter>,
    pub neutron_bgpvpns: Gauge,
    pub invalid_bgpvpns: Gauge,
    pub name_clashes: Gauge,
    pub token_issues: Counter,
}

impl Default for SyncMetrics {
    fn default() -> Self {
        SyncMetrics {
            passes: Family::default(),
            failures: Family::default(),
            up: Gauge::default(),
            last_success: Gauge::default(),
            pass_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            writes: Family::default(),
            neutron_bgpvpns: Gauge::default(),
            invalid_bgpvpns: Gauge::default(),
            name_clashes: Gauge::default(),
            token_issues: Counter::default(),
        }
    }
}

impl SyncMetrics {
    /// Registers every metric of this set.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "passes",
            "Passes of the OpenStack sync, by result",
            self.passes.clone(),
        );
        registry.register(
            "failures",
            "Failed passes of the OpenStack sync, by reason",
            self.failures.clone(),
        );
        registry.register(
            "up",
            "1 when the last pass of the OpenStack sync succeeded",
            self.up.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful pass",
            self.last_success.clone(),
        );
        registry.register(
            "pass_duration_seconds",
            "Duration of a pass (Neutron + cluster reads and writes)",
            self.pass_duration.clone(),
        );
        registry.register(
            "writes",
            "Objects written by the OpenStack sync, by kind and operation",
            self.writes.clone(),
        );
        registry.register(
            "neutron_bgpvpns",
            "bgpvpns read from Neutron in the last successful pass",
            self.neutron_bgpvpns.clone(),
        );
        registry.register(
            "invalid_bgpvpns",
            "bgpvpns whose Neutron data was refused in the last pass (objects kept)",
            self.invalid_bgpvpns.clone(),
        );
        registry.register(
            "name_clashes",
            "Object names taken by objects the sync does not own, in the last pass",
            self.name_clashes.clone(),
        );
        registry.register(
            "token_issues",
            "Keystone tokens issued",
            self.token_issues.clone(),
        );
    }

    pub fn failure_count(&self, reason: &'static str) -> u64 {
        self.failures.get_or_create(&ReasonLabel { reason }).get()
    }

    pub fn failures_total(&self) -> u64 {
        self.passes.get_or_create(&ResultLabel { result: "failed" }).get()
    }

    pub fn successes_total(&self) -> u64 {
        self.passes.get_or_create(&ResultLabel { result: "ok" }).get()
    }

    pub fn write_count(&self, kind: &'static str, op: &'static str) -> u64 {
        self.writes.get_or_create(&WriteLabel { kind, op }).get()
    }

    pub(crate) fn wrote(&self, kind: &'static str, op: &'static str) {
        self.writes.get_or_create(&WriteLabel { kind, op }).inc();
    }
}

static GLOBAL: LazyLock<Arc<SyncMetrics>> = LazyLock::new(|| Arc::new(SyncMetrics::default()));

/// The process-wide metrics that [`super::run`] updates.
pub fn sync_metrics() -> Arc<SyncMetrics> {
    GLOBAL.clone()
}

/// Registers the process-wide metrics of the sync.
pub fn register_metrics(registry: &mut Registry) {
    GLOBAL.register(registry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let m = SyncMetrics::default();
        let mut registry = Registry::with_prefix("bgpvpn_operator_openstack_sync");
        m.register(&mut registry);
        m.failures
            .get_or_create(&ReasonLabel {
                reason: "neutron_unreachable",
            })
            .inc();
        m.wrote("BGPVPN", "create");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("bgpvpn_operator_openstack_sync_failures_total{reason=\"neutron_unreachable\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("bgpvpn_operator_openstack_sync_writes_total{kind=\"BGPVPN\",op=\"create\"} 1"),
            "{out}"
        );
        assert!(out.contains("bgpvpn_operator_openstack_sync_up 0"), "{out}");
    }
}
