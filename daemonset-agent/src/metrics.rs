//! Prometheus metrics of the agent.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// Handles to every metric; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// Kernel writes by operation and result.
    pub netlink_ops: Family<OpLabels, Counter>,
    /// FRR applies by result (Applied, Unchanged, Failed).
    pub frr_applies: Family<ResultLabels, Counter>,
    /// Of the applied ones, those done with one vtysh delta instead of frr-reload.py.
    pub frr_incremental_applies: Counter<u64, AtomicU64>,
    /// Reconcile passes by result (ok, error).
    pub passes: Family<ResultLabels, Counter>,
    pub pass_seconds: Histogram,
    /// L3 VNIs by state (ready, not_ready).
    pub vnis: Family<StateLabels, Gauge>,
    /// Endpoints by state (ready, pending).
    pub endpoints: Family<StateLabels, Gauge>,
    /// Self-repairs: passes started by a netlink event about an owned object.
    pub repairs: Counter<u64, AtomicU64>,
    /// FRR restarts seen (a new zebra/bgpd vty socket).
    pub frr_restarts: Counter<u64, AtomicU64>,
    /// Per underlay BGP neighbor: 1 while the session is established.
    pub bgp_session_established: Family<PeerLabels, Gauge>,
    /// Per underlay BGP neighbor: EVPN routes accepted from it.
    pub bgp_session_prefixes: Family<PeerLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bgpvpn_agent");
        let netlink_ops = Family::<OpLabels, Counter>::default();
        let frr_applies = Family::<ResultLabels, Counter>::default();
        let frr_incremental_applies = Counter::default();
        let passes = Family::<ResultLabels, Counter>::default();
        let pass_seconds = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        let vnis = Family::<StateLabels, Gauge>::default();
        let endpoints = Family::<StateLabels, Gauge>::default();
        let repairs = Counter::default();
        let frr_restarts = Counter::default();
        let bgp_session_established = Family::<PeerLabels, Gauge>::default();
        let bgp_session_prefixes = Family::<PeerLabels, Gauge>::default();
        registry.register(
            "netlink_ops",
            "Kernel writes (rtnetlink and sysctl) by operation and result",
            netlink_ops.clone(),
        );
        registry.register(
            "frr_applies",
            "FRR configuration applies by result",
            frr_applies.clone(),
        );
        registry.register(
            "frr_incremental_applies",
            "FRR applies done with one vtysh delta instead of frr-reload.py",
            frr_incremental_applies.clone(),
        );
        registry.register("reconcile_passes", "Reconcile passes by result", passes.clone());
        registry.register(
            "reconcile_pass_seconds",
            "Duration of reconcile passes",
            pass_seconds.clone(),
        );
        registry.register("vnis", "L3 VNIs of this node by state", vnis.clone());
        registry.register("endpoints", "Local endpoints by state", endpoints.clone());
        registry.register(
            "repairs",
            "Passes started because an owned kernel object changed or vanished",
            repairs.clone(),
        );
        registry.register(
            "frr_restarts",
            "FRR daemon restarts detected",
            frr_restarts.clone(),
        );
        registry.register(
            "bgp_session_established",
            "1 while the underlay BGP session with the peer is established",
            bgp_session_established.clone(),
        );
        registry.register(
            "bgp_session_prefixes_received",
            "EVPN routes accepted from the underlay BGP peer",
            bgp_session_prefixes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            netlink_ops,
            frr_applies,
            frr_incremental_applies,
            passes,
            pass_seconds,
            vnis,
            endpoints,
            repairs,
            frr_restarts,
            bgp_session_established,
            bgp_session_prefixes,
        }
    }

    /// The session gauges for exactly these sessions (a removed neighbor's series go).
    pub fn sessions(&self, sessions: &[crate::frr::sessions::BgpSession]) {
        self.bgp_session_established.clear();
        self.bgp_session_prefixes.clear();
        for s in sessions {
            let peer = PeerLabels { peer: s.peer.clone() };
            self.bgp_session_established
                .get_or_create(&peer)
                .set(i64::from(s.established()));
            self.bgp_session_prefixes
                .get_or_create(&peer)
                .set(i64::from(s.prefixes_received));
        }
    }

    pub fn op(&self, op: &str, ok: bool) {
        self.netlink_ops
            .get_or_create(&OpLabels {
                op: op.to_string(),
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    pub fn frr(&self, result: &str) {
        self.frr_applies
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // encoding into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
