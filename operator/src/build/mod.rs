//! The pure core of the operator: from a [`ClusterView`] and the [`Config`] to a [`Plan`] —
//! the desired EVPNNodeState spec of every node, and the status of every BGPVPN and
//! VNIBinding. No client, no clock: the same view always gives the same plan.
//!
//! One pass looks at the whole cluster because the rules cross objects (a VNI belongs to one
//! BGPVPN, a pod to one BGPVPN):
//!
//! 1. [`vpns::decide`]: validate each BGPVPN, settle VNI and RD conflicts.
//! 2. [`bindings::decide`]: validate each binding, find its BGPVPN, check tenancy, resolve its
//!    target to endpoints ([`crate::resolve`]), settle pods claimed by two BGPVPNs, and keep
//!    the prefixes the BGPVPN allows, within its limits ([`prefixes`]).
//! 3. [`nodes::evpn_nodes`] + [`nodes::assemble`]: the underlay of each node and its L3 VNIs.
//! 4. [`report`]: conditions and counters, with what the agents report.

pub mod bindings;
pub mod nodes;
pub mod prefixes;
pub mod report;
pub mod vpns;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bgpvpn_crds::EvpnNodeStateSpec;
use kube::ResourceExt;

use crate::config::Config;
use crate::view::{ClusterView, Index};

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of<K: kube::Resource>(obj: &K) -> Self {
        ObjectKey::new(
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A condition without its timestamp (the status writer adds it, keeping the old one when the
/// status did not flip).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ok: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            ok,
            reason,
            message: message.into(),
        }
    }
}

/// The desired object of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlan {
    /// UID of the Node, for the owner reference.
    pub uid: String,
    pub spec: EvpnNodeStateSpec,
}

/// The outcome for one BGPVPN.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BgpvpnReport {
    pub uid: Option<String>,
    /// The generation this report describes.
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub programmed_vni: Option<u32>,
    pub bindings: i32,
    pub endpoints: i32,
    pub ready_nodes: i32,
    pub total_nodes: i32,
}

/// The outcome for one VNIBinding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BindingReport {
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub conditions: Vec<Cond>,
    pub endpoints: i32,
    pub nodes: Vec<String>,
    pub ready_nodes: i32,
}

/// Everything one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The desired EVPNNodeState of every EVPN node (shared with the writer's record of what
    /// it wrote).
    pub nodes: BTreeMap<String, Arc<NodePlan>>,
    /// EVPN nodes whose object is left as it is, with why (e.g. no usable address).
    pub kept_nodes: BTreeMap<String, String>,
    /// Our EVPNNodeStates to delete, with the uid each was read with (see
    /// [`nodes::retired_node_states`]).
    pub retired_nodes: BTreeMap<String, Option<String>>,
    pub bgpvpns: BTreeMap<String, BgpvpnReport>,
    pub bindings: BTreeMap<ObjectKey, BindingReport>,
    /// Objects that could not be read in full: Kuryr objects with malformed parts (tolerated),
    /// and objects of any kind that could not be read at all (left out) (`Kind ns/name` ->
    /// problem).
    pub malformed: BTreeMap<String, String>,
}

/// Sort key "older first, then by name" (objects without a timestamp last).
pub fn creation_order<K: kube::Resource>(obj: &K) -> (i64, String) {
    let created = obj
        .meta()
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(i64::MAX);
    let name = match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    (created, name)
}

/// The whole pure pipeline.
pub fn plan(view: &ClusterView, config: &Config) -> Plan {
    let index = Index::new(view);
    let vpns = vpns::decide(&view.bgpvpns);
    let mut bindings = bindings::decide(&view.bindings, &vpns, &index);
    let mut evpn_nodes = nodes::evpn_nodes(&view.nodes, config);
    nodes::keep_unreadable(&mut evpn_nodes, &index);
    let placement = nodes::assemble(&evpn_nodes, &vpns, &mut bindings, &index.node_states);
    Plan {
        bgpvpns: report::bgpvpn_reports(&vpns, &bindings, &placement, &index),
        bindings: report::binding_reports(&bindings, &placement, &index),
        malformed: report::malformed(&index),
        retired_nodes: nodes::retired_node_states(&view.nodes, &placement, &index),
        nodes: placement.nodes,
        kept_nodes: placement.kept,
    }
}

#[cfg(test)]
mod tests;
