//! bgpvpn-operator: reconciles BGPVPNs and VNIBindings into one EVPNNodeState per node.
//!
//! The pipeline, one module per step:
//!
//! * [`cluster`]: reflectors over every input kind; any change (debounced) starts one pass:
//!   snapshot ([`view`]) → [`build`] (pure: validate, resolve via [`resolve`], per-node state,
//!   per-object status) → [`apply`] (EVPNNodeStates written only when changed; those no node
//!   wants and no garbage collector removes, deleted) → the plan is published to the status
//!   controllers.
//! * [`guard`]: every kind is watched through [`guard::Guarded`], so one object that does not
//!   decode is reported by name instead of failing the list or the watch of its kind.
//! * [`status`]: the `BGPVPN` and `VNIBinding` controllers (kube-runtime `Controller`s) write
//!   each object's status from the latest plan by server-side apply, and emit Events.
//! * [`leader`]: Lease-based leader election; only the leader runs the above.
//! * [`metrics`], [`http`]: Prometheus `/metrics`, `/healthz`, `/readyz`.
//! * [`run`]: startup checks and the wiring of it all; [`config`]: the configuration file.

#![forbid(unsafe_code)]

pub mod apply;
pub mod build;
pub mod cluster;
pub mod config;
pub mod events;
pub mod guard;
pub mod http;
pub mod kuryr;
pub mod leader;
pub mod metrics;
pub mod openstack;
pub mod owned;
pub mod reasons;
pub mod resolve;
pub mod run;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod view;

/// Errors of the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A configuration of the OpenStack sync that can never work (see `openstack::SyncConfig`).
    #[error("OpenStack sync: {0}")]
    OpenStack(String),
}
