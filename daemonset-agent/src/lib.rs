//! bgpvpn-agent: the per-node agent of bgpvpn-operator.
#![forbid(unsafe_code)]

pub mod kernel;
pub mod model;
pub mod frr;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod agent;
pub mod monitor;
pub mod k8s;
pub mod liveness;
