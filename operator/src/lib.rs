//! bgpvpn-operator: reconciles BGPVPNs and VNIBindings into one EVPNNodeState per node.

#![forbid(unsafe_code)]

pub mod openstack;

/// Errors of the operator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
