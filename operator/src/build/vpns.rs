//! Which BGPVPNs are programmed, and with which VNI.
//!
//! 1. Spec errors (`validate_bgpvpn`, a bad `allowedNamespaces.selector`) reject a BGPVPN.
//! 2. An edit of `spec.vni` after programming is reported invalid, and the programmed VNI
//!    (`status.programmedVni`) stays in use: nothing is lost.
//! 3. `type: l2` is not programmed (NotSupported).
//! 4. A VNI belongs to one BGPVPN: the one already programmed with it, else the oldest
//!    (`creationTimestamp`), else the first by name. The others get `Conflict` and nothing is
//!    programmed for them.
//! 5. Likewise for an explicit route distinguisher (the first of `routeDistinguishers`): two VRFs
//!    with one RD on a node would make the agent refuse the whole node.

use std::collections::BTreeMap;

use bgpvpn_crds::Bgpvpn;
use bgpvpn_crds::validate::{ValidBgpvpn, check_supported, validate_bgpvpn, validate_vni_unchanged};
use kube::ResourceExt;

use super::creation_order;
use crate::reasons;

/// What happens to one BGPVPN.
#[derive(Clone, Debug)]
pub struct VpnDecision<'a> {
    pub vpn: &'a Bgpvpn,
    /// Why the spec is not valid (the `Valid` condition), also when it is still programmed.
    pub spec_problem: Option<String>,
    pub verdict: VpnVerdict,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VpnVerdict {
    /// Programmed with this VNI, from what [`validate_bgpvpn`] parsed of the spec (the build
    /// never reads its strings again).
    Accepted { vni: u32, valid: ValidBgpvpn },
    /// Nothing is programmed for it.
    Rejected { reason: &'static str, message: String },
}

impl VpnDecision<'_> {
    pub fn accepted_vni(&self) -> Option<u32> {
        self.accepted().map(|(vni, _)| vni)
    }

    /// The VNI and the parsed spec of an accepted BGPVPN.
    pub fn accepted(&self) -> Option<(u32, &ValidBgpvpn)> {
        match &self.verdict {
            VpnVerdict::Accepted { vni, valid } => Some((*vni, valid)),
            VpnVerdict::Rejected { .. } => None,
        }
    }

    fn programmed_vni(&self) -> Option<u32> {
        self.vpn.status.as_ref().and_then(|s| s.programmed_vni)
    }
}

/// Decides every BGPVPN; keyed by name.
pub fn decide(vpns: &[std::sync::Arc<Bgpvpn>]) -> BTreeMap<String, VpnDecision<'_>> {
    let mut out: BTreeMap<String, VpnDecision> = vpns
        .iter()
        .map(|vpn| (vpn.name_any(), decide_alone(vpn)))
        .collect();
    settle_vni_conflicts(&mut out);
    settle_rd_conflicts(&mut out);
    out
}

/// Steps 1 to 3: the rules that look at one BGPVPN only.
fn decide_alone(vpn: &Bgpvpn) -> VpnDecision<'_> {
    let spec = &vpn.spec;
    let mut problems: Vec<String> = Vec::new();
    let valid = validate_bgpvpn(spec)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    if let Some(sel) = &spec.allowed_namespaces.selector
        && let Err(e) = kube::core::Selector::try_from(sel.clone())
    {
        problems.push(format!("spec.allowedNamespaces.selector: {e}"));
    }
    let programmed = vpn.status.as_ref().and_then(|s| s.programmed_vni);
    let Some(valid) = valid.filter(|_| problems.is_empty()) else {
        let message = problems.join("; ");
        return VpnDecision {
            vpn,
            spec_problem: Some(message.clone()),
            verdict: VpnVerdict::Rejected {
                reason: reasons::INVALID,
                message,
            },
        };
    };
    let vni_edit = validate_vni_unchanged(programmed, spec.vni)
        .err()
        .map(|e| e.to_string());
    let vni = programmed.unwrap_or(spec.vni);
    let verdict = match check_supported(spec) {
        Ok(()) => VpnVerdict::Accepted { vni, valid },
        Err(message) => VpnVerdict::Rejected {
            reason: reasons::NOT_SUPPORTED,
            message,
        },
    };
    VpnDecision {
        vpn,
        spec_problem: vni_edit,
        verdict,
    }
}

/// Sort key of claimants for one VNI or RD: already programmed with it first, then oldest, then name.
fn claim_order(d: &VpnDecision, programmed_with_it: bool) -> (bool, i64, String) {
    let (created, name) = creation_order(d.vpn);
    (!programmed_with_it, created, name)
}

fn settle_vni_conflicts(decisions: &mut BTreeMap<String, VpnDecision>) {
    let mut by_vni: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (name, d) in decisions.iter() {
        if let Some(vni) = d.accepted_vni() {
            by_vni.entry(vni).or_default().push(name.clone());
        }
    }
    for (vni, mut names) in by_vni.into_iter().filter(|(_, n)| n.len() > 1) {
        names.sort_by_key(|n| {
            let d = &decisions[n];
            claim_order(d, d.programmed_vni() == Some(vni))
        });
        let winner = names[0].clone();
        for loser in &names[1..] {
            let message = format!(
                "VNI {vni} is already used by BGPVPN {winner}; choose another VNI (nothing is programmed for this BGPVPN)"
            );
            decisions.get_mut(loser).expect("listed").verdict = VpnVerdict::Rejected {
                reason: reasons::VNI_CONFLICT,
                message,
            };
        }
    }
}

fn settle_rd_conflicts(decisions: &mut BTreeMap<String, VpnDecision>) {
    let mut by_rd = BTreeMap::new();
    for (name, d) in decisions.iter() {
        if let Some(rd) = d.accepted().and_then(|(_, valid)| valid.rd) {
            by_rd.entry(rd).or_insert_with(Vec::new).push(name.clone());
        }
    }
    for (rd, mut names) in by_rd.into_iter().filter(|(_, n)| n.len() > 1) {
        names.sort_by_key(|n| {
            let d = &decisions[n];
            claim_order(d, d.programmed_vni().is_some())
        });
        let winner = names[0].clone();
        for loser in &names[1..] {
            let message = format!(
                "route distinguisher {rd} is already used by BGPVPN {winner} (nothing is programmed for this BGPVPN)"
            );
            decisions.get_mut(loser).expect("listed").verdict = VpnVerdict::Rejected {
                reason: reasons::RD_CONFLICT,
                message,
            };
        }
    }
}
