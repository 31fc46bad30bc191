//! The per-object outcome of a pass: the conditions and counters of every BGPVPN and
//! VNIBinding, including what the agents report in their EVPNNodeState status.
//!
//! A VNI counts as programmed on a node when that node's object, as stored, carries exactly the
//! desired L3 VNI, the agent has reported on the object's current generation
//! (`status.observedGeneration == metadata.generation`), and its `status.l3vnis` entry for the
//! VNI says `ready`.

use std::collections::{BTreeMap, BTreeSet};

use bgpvpn_crds::L3Vni;
use bgpvpn_crds::conditions::types;
use kube::ResourceExt;

use super::bindings::{BindVerdict, BindingDecision, PodConflict};
use super::nodes::Placement;
use super::vpns::{VpnDecision, VpnVerdict};
use super::{BgpvpnReport, BindingReport, Cond, ObjectKey};
use crate::reasons;
use crate::view::Index;

/// At most this many items are named in a condition message.
const LISTED: usize = 8;

/// `a, b, c and 2 more`.
pub fn listing(items: &[String]) -> String {
    let shown = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Whether the agent on `node` reports `desired` programmed; if not, why.
pub fn vni_ready(node: &str, desired: &L3Vni, index: &Index) -> Result<(), String> {
    let Some(obj) = index.node_states.get(node) else {
        return Err(format!("{node}: EVPNNodeState not written yet"));
    };
    if obj.spec.l3vnis.iter().find(|v| v.vni == desired.vni) != Some(desired) {
        return Err(format!("{node}: EVPNNodeState being updated"));
    }
    let Some(status) = &obj.status else {
        return Err(format!("{node}: agent has not reported yet"));
    };
    if status.observed_generation != obj.metadata.generation {
        return Err(format!(
            "{node}: agent has not reported generation {} yet",
            obj.metadata.generation.unwrap_or_default()
        ));
    }
    match status.l3vnis.iter().find(|s| s.vni == desired.vni) {
        Some(s) if s.ready => Ok(()),
        Some(s) => Err(format!(
            "{node}: VNI {} not ready{}",
            desired.vni,
            s.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        )),
        None => Err(format!("{node}: agent does not report VNI {}", desired.vni)),
    }
}

fn no_vpn_conflict() -> Cond {
    Cond::new(
        types::CONFLICT,
        false,
        reasons::NO_CONFLICT,
        "neither the VNI nor the route distinguisher is used by another BGPVPN",
    )
}

fn valid_cond(problem: Option<&str>) -> Cond {
    match problem {
        None => Cond::new(types::VALID, true, reasons::VALID, "the spec is valid"),
        Some(m) => Cond::new(types::VALID, false, reasons::INVALID, m),
    }
}

/// Readiness of a VNI on a set of nodes: (ready count, why the others are not).
fn readiness<'n>(
    nodes: impl IntoIterator<Item = &'n String>,
    vni: u32,
    placement: &Placement,
    unplaced: &BTreeMap<String, String>,
    index: &Index,
) -> (i32, Vec<String>) {
    let mut ready = 0;
    let mut waiting = Vec::new();
    for node in nodes {
        // held back or never placed: a version kept from before may run, but not what is asked
        if let Some(why) = unplaced.get(node) {
            waiting.push(format!("{node}: {why}"));
            continue;
        }
        let desired = placement
            .nodes
            .get(node)
            .and_then(|p| p.spec.l3vnis.iter().find(|v| v.vni == vni));
        match desired {
            Some(l3) => match vni_ready(node, l3, index) {
                Ok(()) => ready += 1,
                Err(why) => waiting.push(why),
            },
            None => waiting.push(format!("{node}: no EVPNNodeState")),
        }
    }
    (ready, waiting)
}

fn ready_cond(total: usize, ready: i32, waiting: &[String], what: &str) -> Cond {
    if waiting.is_empty() {
        Cond::new(
            types::READY,
            true,
            reasons::PROGRAMMED,
            format!("{what} programmed on {ready}/{total} nodes"),
        )
    } else {
        Cond::new(
            types::READY,
            false,
            reasons::NODES_NOT_READY,
            format!(
                "{ready}/{total} nodes programmed; waiting for {}",
                listing(waiting)
            ),
        )
    }
}

/// The report of every BGPVPN.
pub fn bgpvpn_reports(
    vpns: &BTreeMap<String, VpnDecision>,
    bindings: &[BindingDecision],
    placement: &Placement,
    index: &Index,
) -> BTreeMap<String, BgpvpnReport> {
    vpns.iter()
        .map(|(name, d)| {
            let bound: Vec<&BindingDecision> = bindings
                .iter()
                .filter(|b| matches!(&b.verdict, BindVerdict::Bound { bgpvpn, .. } if bgpvpn == name))
                .collect();
            let mut report = BgpvpnReport {
                uid: d.vpn.uid(),
                generation: d.vpn.metadata.generation,
                conditions: vec![valid_cond(d.spec_problem.as_deref())],
                programmed_vni: None,
                bindings: bound.len() as i32,
                ..Default::default()
            };
            match &d.verdict {
                VpnVerdict::Rejected { reason, message } => {
                    let conflict = matches!(*reason, reasons::VNI_CONFLICT | reasons::RD_CONFLICT);
                    report.conditions.push(if conflict {
                        Cond::new(types::CONFLICT, true, reason, message.clone())
                    } else {
                        no_vpn_conflict()
                    });
                    report
                        .conditions
                        .push(Cond::new(types::READY, false, reason, message.clone()));
                }
                VpnVerdict::Accepted { vni, .. } => {
                    report.conditions.push(no_vpn_conflict());
                    let placed: BTreeSet<&String> = placement
                        .nodes
                        .iter()
                        .filter(|(_, p)| p.spec.l3vnis.iter().any(|v| v.vni == *vni))
                        .map(|(n, _)| n)
                        .collect();
                    let mut unplaced = BTreeMap::new();
                    for b in &bound {
                        unplaced.extend(b.unplaced.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    let all: BTreeSet<&String> = placed.iter().copied().chain(unplaced.keys()).collect();
                    let (ready, waiting) = readiness(all.iter().copied(), *vni, placement, &unplaced, index);
                    report.total_nodes = all.len() as i32;
                    report.ready_nodes = ready;
                    report.endpoints = placed
                        .iter()
                        .filter_map(|n| placement.nodes[*n].spec.l3vnis.iter().find(|v| v.vni == *vni))
                        .map(|v| (v.endpoints.len() + v.prefixes.len()) as i32)
                        .sum();
                    report.programmed_vni = (!placed.is_empty()).then_some(*vni);
                    report.conditions.push(if all.is_empty() {
                        Cond::new(
                            types::READY,
                            true,
                            reasons::NO_ENDPOINTS,
                            format!(
                                "VNI {vni}: no bound endpoints ({} bindings), nothing to program",
                                bound.len()
                            ),
                        )
                    } else {
                        ready_cond(all.len(), ready, &waiting, &format!("VNI {vni}"))
                    });
                }
            }
            (name.clone(), report)
        })
        .collect()
}

fn conflict_text(c: &PodConflict) -> String {
    if c.kept {
        format!(
            "pod {} is also selected by VNIBinding {} of BGPVPN {}; kept here (older binding)",
            c.pod, c.other, c.other_bgpvpn
        )
    } else {
        format!(
            "pod {} is also selected by VNIBinding {} of BGPVPN {}, which is older and keeps it",
            c.pod, c.other, c.other_bgpvpn
        )
    }
}

/// The report of every binding.
pub fn binding_reports(
    bindings: &[BindingDecision],
    placement: &Placement,
    index: &Index,
) -> BTreeMap<ObjectKey, BindingReport> {
    bindings
        .iter()
        .map(|b| {
            let invalid =
                matches!(&b.verdict, BindVerdict::Rejected { reason, .. } if *reason == reasons::INVALID);
            let problem = match &b.verdict {
                BindVerdict::Rejected { message, .. } if invalid => Some(message.as_str()),
                _ => None,
            };
            let mut report = BindingReport {
                uid: b.binding.uid(),
                generation: b.binding.metadata.generation,
                conditions: vec![valid_cond(problem)],
                ..Default::default()
            };
            report.conditions.push(if b.conflicts.is_empty() {
                Cond::new(
                    types::CONFLICT,
                    false,
                    reasons::NO_CONFLICT,
                    "no selected pod is bound to another BGPVPN",
                )
            } else {
                let texts: Vec<String> = b.conflicts.iter().map(conflict_text).collect();
                Cond::new(types::CONFLICT, true, reasons::POD_CONFLICT, listing(&texts))
            });
            if matches!(b.verdict, BindVerdict::Bound { .. }) {
                report.conditions.extend(prefix_conditions(b));
            }
            let ready = match &b.verdict {
                BindVerdict::Rejected { reason, message } => {
                    Cond::new(types::READY, false, reason, message.clone())
                }
                BindVerdict::Bound { bgpvpn, vni } => {
                    let nodes: BTreeSet<String> = b.endpoints.iter().map(|e| e.node.clone()).collect();
                    report.endpoints = b.endpoints.len() as i32;
                    report.nodes = nodes.iter().cloned().collect();
                    if nodes.is_empty() {
                        let lost = b.conflicts.iter().filter(|c| !c.kept).count();
                        let why = if lost > 0 {
                            format!("; {lost} selected pod(s) belong to another BGPVPN (PodConflict)")
                        } else {
                            String::new()
                        };
                        Cond::new(
                            types::READY,
                            false,
                            reasons::NO_ENDPOINTS,
                            format!("no Running pod with an address matches the target{why}"),
                        )
                    } else {
                        let (ready, waiting) = readiness(nodes.iter(), *vni, placement, &b.unplaced, index);
                        report.ready_nodes = ready;
                        ready_cond(
                            nodes.len(),
                            ready,
                            &waiting,
                            &format!("{} endpoints of BGPVPN {bgpvpn} (VNI {vni})", b.endpoints.len()),
                        )
                    }
                }
            };
            report.conditions.push(with_notes(ready, &b.notes));
            (b.key.clone(), report)
        })
        .collect()
}

/// `PrefixesAllowed` and `WithinLimits` of a bound binding. Every prefix refused by policy is
/// named (a binding has at most 64).
fn prefix_conditions(b: &BindingDecision) -> [Cond; 2] {
    let (limited, refused): (Vec<_>, Vec<_>) = b
        .refused_prefixes
        .iter()
        .partition(|(_, why)| why.reason() == reasons::BGPVPN_PREFIX_LIMIT);
    let allowed = if refused.is_empty() {
        Cond::new(
            types::PREFIXES_ALLOWED,
            true,
            reasons::PREFIXES_ALLOWED,
            "every advertisePrefixes entry is allowed by the BGPVPN",
        )
    } else {
        let left_out: Vec<String> = refused
            .iter()
            .map(|(prefix, why)| format!("{prefix} ({why})"))
            .collect();
        let message = format!(
            "{} of {} advertisePrefixes left out: {}",
            refused.len(),
            b.requested_prefixes.len(),
            left_out.join("; ")
        );
        Cond::new(
            types::PREFIXES_ALLOWED,
            false,
            reasons::PREFIX_NOT_ALLOWED,
            message,
        )
    };
    let within = match limited.first() {
        None => Cond::new(
            types::WITHIN_LIMITS,
            true,
            reasons::WITHIN_LIMITS,
            "nothing of this binding is left out for a limit",
        ),
        Some((_, why)) => {
            let names: Vec<String> = limited.iter().map(|(prefix, _)| prefix.to_string()).collect();
            Cond::new(
                types::WITHIN_LIMITS,
                false,
                why.reason(),
                format!(
                    "{} advertisePrefixes left out: {why}: {}",
                    limited.len(),
                    listing(&names)
                ),
            )
        }
    };
    [allowed, within]
}

fn with_notes(mut cond: Cond, notes: &[String]) -> Cond {
    if !notes.is_empty() {
        cond.message = format!("{}. Note: {}", cond.message, listing(notes));
    }
    cond
}

/// Objects that could not be read in full, for the metric, the log and Events: Kuryr objects
/// with malformed parts, and objects of any kind that could not be read at all.
pub fn malformed(index: &Index) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = index
        .unreadable
        .values()
        .map(|u| {
            (
                u.describe(),
                format!("cannot be read, so it is left out: {}", u.error),
            )
        })
        .collect();
    let Some(k) = &index.kuryr else { return out };
    for (ns, nets) in &k.networks_by_namespace {
        for net in nets {
            for problem in [net.spec.problem(), net.status.problem()].into_iter().flatten() {
                out.insert(
                    format!("KuryrNetwork {ns}/{}", net.name_any()),
                    problem.to_string(),
                );
            }
        }
    }
    for (ns, ports) in &k.ports_by_namespace {
        for port in ports {
            let vif_problem = port.status.ok().and_then(|s| {
                s.vifs
                    .iter()
                    .find_map(|(i, v)| v.problem().map(|p| format!("vif {i}: {p}")))
            });
            let problem = port
                .spec
                .problem()
                .map(str::to_string)
                .or(port.status.problem().map(str::to_string))
                .or(vif_problem);
            if let Some(p) = problem {
                out.insert(format!("KuryrPort {ns}/{}", port.name_any()), p);
            }
        }
    }
    out
}
