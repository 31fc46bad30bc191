//! bgpvpn-agent: the per-node agent of bgpvpn-operator.
#![forbid(unsafe_code)]

pub mod agent;
pub mod frr;
pub mod k8s;
pub mod kernel;
pub mod liveness;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod reconcile;
pub mod status;
