//! What each VNIBinding binds: validation, the BGPVPN it names, tenancy, and its endpoints;
//! then the cross-binding rule that a pod joins one BGPVPN only.
//!
//! A pod selected by bindings of two different BGPVPNs stays with the BGPVPN of the *oldest* of
//! those bindings (`creationTimestamp`, then `namespace/name`): traffic that already flows is
//! not cut by a newer, conflicting binding. Every binding involved reports `Conflict=True`
//! (`PodConflict`) naming the pod and the other binding; the newer ones lose the pod.

use std::collections::BTreeMap;

use bgpvpn_crds::binding::BindingTarget;
use bgpvpn_crds::validate::{Cidr, validate_binding};
use bgpvpn_crds::{AllowedNamespaces, VniBinding};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use super::prefixes::PrefixRefusal;
use super::vpns::{VpnDecision, VpnVerdict};
use super::{ObjectKey, creation_order};
use crate::reasons;
use crate::resolve::{ResolvedEndpoint, Target, resolve};
use crate::view::Index;

/// What happens to one binding.
#[derive(Clone, Debug)]
pub struct BindingDecision<'a> {
    pub binding: &'a VniBinding,
    pub key: ObjectKey,
    pub verdict: BindVerdict,
    /// The endpoints this binding programs (pods lost to a conflict are taken out).
    pub endpoints: Vec<ResolvedEndpoint>,
    /// Remarks for the status message (skipped pods, malformed Kuryr objects, ...).
    pub notes: Vec<String>,
    pub conflicts: Vec<PodConflict>,
    /// Nodes hosting endpoints of this binding that have no EVPNNodeState, with why.
    pub unplaced: BTreeMap<String, String>,
    /// `spec.advertisePrefixes`, parsed.
    pub requested_prefixes: Vec<Cidr>,
    /// Those advertised: allowed by the BGPVPN and within its limits ([`super::prefixes`]).
    pub prefixes: Vec<Cidr>,
    /// Those left out, with why.
    pub refused_prefixes: Vec<(Cidr, PrefixRefusal)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BindVerdict {
    Rejected { reason: &'static str, message: String },
    Bound { bgpvpn: String, vni: u32 },
}

/// A pod that another binding, of another BGPVPN, also selects.
#[derive(Clone, Debug, PartialEq)]
pub struct PodConflict {
    pub pod: String,
    pub other: ObjectKey,
    pub other_bgpvpn: String,
    /// This binding keeps the pod (it is the older one).
    pub kept: bool,
}

impl BindingDecision<'_> {
    pub fn bound_vni(&self) -> Option<u32> {
        match self.verdict {
            BindVerdict::Bound { vni, .. } => Some(vni),
            BindVerdict::Rejected { .. } => None,
        }
    }
}

/// Decides every binding, oldest first.
pub fn decide<'a>(
    bindings: &'a [std::sync::Arc<VniBinding>],
    vpns: &BTreeMap<String, VpnDecision>,
    index: &Index,
) -> Vec<BindingDecision<'a>> {
    let mut ordered: Vec<&VniBinding> = bindings.iter().map(|b| &**b).collect();
    ordered.sort_by_key(|b| creation_order(*b));
    let mut out: Vec<BindingDecision> = ordered.into_iter().map(|b| decide_one(b, vpns, index)).collect();
    settle_pod_conflicts(&mut out);
    super::prefixes::settle(&mut out, vpns);
    out
}

fn rejected(reason: &'static str, message: String) -> BindVerdict {
    BindVerdict::Rejected { reason, message }
}

fn decide_one<'a>(
    binding: &'a VniBinding,
    vpns: &BTreeMap<String, VpnDecision>,
    index: &Index,
) -> BindingDecision<'a> {
    let key = ObjectKey::of(binding);
    let mut decision = BindingDecision {
        binding,
        key,
        verdict: rejected(reasons::INVALID, String::new()),
        endpoints: vec![],
        notes: vec![],
        conflicts: vec![],
        unplaced: BTreeMap::new(),
        requested_prefixes: vec![],
        prefixes: vec![],
        refused_prefixes: vec![],
    };
    decision.verdict = match bind(binding, vpns, index) {
        Ok(bound) => {
            decision.endpoints = bound.resolved.endpoints;
            decision.notes = bound.resolved.notes;
            decision.requested_prefixes = bound.prefixes;
            bound.verdict
        }
        Err(verdict) => verdict,
    };
    decision
}

/// A binding that found its BGPVPN, with what it resolved to.
struct Bound {
    verdict: BindVerdict,
    resolved: crate::resolve::Resolved,
    prefixes: Vec<Cidr>,
}

/// validate → find the BGPVPN → tenancy → the BGPVPN is programmed → resolve.
fn bind(
    binding: &VniBinding,
    vpns: &BTreeMap<String, VpnDecision>,
    index: &Index,
) -> Result<Bound, BindVerdict> {
    let spec = &binding.spec;
    let namespace = binding.namespace().unwrap_or_default();
    let valid = validate_binding(spec).map_err(|e| rejected(reasons::INVALID, e.to_string()))?;
    let target = match valid.target {
        BindingTarget::Pods(sel) => Selector::try_from(sel.clone())
            .map(Target::Pods)
            .map_err(|e| rejected(reasons::INVALID, format!("spec.podSelector: {e}"))),
        BindingTarget::Network(id) => Ok(Target::Network(id.to_string())),
        BindingTarget::Router(id) => Ok(Target::Router(id.to_string())),
        BindingTarget::Port(id) => Ok(Target::Port(id.to_string())),
    }?;
    let Some(vpn) = vpns.get(&spec.bgpvpn) else {
        if let Some(u) = index.unreadable("BGPVPN", "", &spec.bgpvpn) {
            return Err(rejected(
                reasons::BGPVPN_NOT_READY,
                format!(
                    "BGPVPN {} cannot be read, so nothing of it is programmed: {}",
                    spec.bgpvpn, u.error
                ),
            ));
        }
        return Err(rejected(
            reasons::BGPVPN_NOT_FOUND,
            format!("BGPVPN {} does not exist (yet); waiting for it", spec.bgpvpn),
        ));
    };
    let labels = index.namespace_labels.get(namespace.as_str()).copied();
    namespace_allowed(&vpn.vpn.spec.allowed_namespaces, &spec.bgpvpn, &namespace, labels)
        .map_err(|m| rejected(reasons::NOT_ALLOWED, m))?;
    let vni = match &vpn.verdict {
        VpnVerdict::Accepted { vni, .. } => *vni,
        VpnVerdict::Rejected { reason, message } => {
            return Err(rejected(
                reasons::BGPVPN_NOT_READY,
                format!("BGPVPN {} is not programmed ({reason}): {message}", spec.bgpvpn),
            ));
        }
    };
    let resolved = resolve(&target, &namespace, index).map_err(|u| rejected(u.reason, u.message))?;
    Ok(Bound {
        verdict: BindVerdict::Bound {
            bgpvpn: spec.bgpvpn.clone(),
            vni,
        },
        resolved,
        prefixes: valid.advertise_prefixes,
    })
}

/// The tenancy guard of a BGPVPN.
pub fn namespace_allowed(
    allowed: &AllowedNamespaces,
    vpn: &str,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    if allowed.all || allowed.names.iter().any(|n| n == namespace) {
        return Ok(());
    }
    let selector = allowed.selector.as_ref().filter(|s| {
        s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
            || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
    });
    let Some(selector) = selector else {
        let how = if allowed.names.is_empty() {
            "admits no namespace (spec.allowedNamespaces is empty)".to_string()
        } else {
            format!("admits only the namespaces {}", allowed.names.join(", "))
        };
        return Err(format!(
            "BGPVPN {vpn} {how}; ask its admin to allow namespace {namespace}"
        ));
    };
    let empty = BTreeMap::new();
    match Selector::try_from(selector.clone()) {
        Ok(sel) if sel.matches(labels.unwrap_or(&empty)) => Ok(()),
        Ok(sel) => Err(format!(
            "namespace {namespace} does not match spec.allowedNamespaces.selector ({sel}) of BGPVPN {vpn}"
        )),
        Err(e) => Err(format!(
            "BGPVPN {vpn} has an invalid spec.allowedNamespaces.selector: {e}"
        )),
    }
}

/// One BGPVPN per pod: the oldest binding's BGPVPN keeps a pod claimed by several.
pub fn settle_pod_conflicts(decisions: &mut [BindingDecision]) {
    // `decisions` is oldest first, so the first claim of a pod is the winning one.
    let mut claims: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (i, d) in decisions.iter().enumerate() {
        if let BindVerdict::Bound { bgpvpn, .. } = &d.verdict {
            let mut pods: Vec<&str> = d.endpoints.iter().map(|e| e.pod.as_str()).collect();
            pods.dedup();
            for pod in pods {
                claims
                    .entry(pod.to_string())
                    .or_default()
                    .push((i, bgpvpn.clone()));
            }
        }
    }
    for (pod, claimants) in claims {
        let winner_vpn = claimants[0].1.clone();
        let (winners, losers): (Vec<_>, Vec<_>) =
            claimants.into_iter().partition(|(_, vpn)| *vpn == winner_vpn);
        if losers.is_empty() {
            continue;
        }
        let first_winner = decisions[winners[0].0].key.clone();
        for (li, _) in &losers {
            decisions[*li].endpoints.retain(|e| e.pod != pod);
            decisions[*li].conflicts.push(PodConflict {
                pod: pod.clone(),
                other: first_winner.clone(),
                other_bgpvpn: winner_vpn.clone(),
                kept: false,
            });
        }
        for (wi, _) in &winners {
            for (li, lvpn) in &losers {
                let other = decisions[*li].key.clone();
                decisions[*wi].conflicts.push(PodConflict {
                    pod: pod.clone(),
                    other,
                    other_bgpvpn: lvpn.clone(),
                    kept: true,
                });
            }
        }
    }
}
