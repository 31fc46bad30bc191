//! The per-node desired state: the underlay of each node, and every VNI with its local
//! endpoints.
//!
//! * Underlay: ASN and neighbors from the configuration; router id and VTEP from the Node's
//!   `InternalIP`, overridable by the annotations `bgpvpn.io/router-id`, `bgpvpn.io/vtep-ip`,
//!   `bgpvpn.io/asn`. A node whose underlay cannot be built keeps its current object untouched
//!   (and is reported) rather than losing its dataplane.
//! * One L3 VNI per BGPVPN that has endpoints on the node: VRF `vrf-<vni>`, import RTs =
//!   `routeTargets ∪ importTargets`, export RTs = `routeTargets ∪ exportTargets`.
//! * RD: the BGPVPN's first `routeDistinguishers` entry; else the type-1 RD
//!   `<router id>:<n>`. A VNI the node's object already carries keeps the RD it has there (a
//!   changed RD withdraws and re-advertises every route of the VRF, and a peer that sees two
//!   VRFs swap RDs loses one's router MAC). A new VNI takes `n` = the VNI when it fits in 16
//!   bits, else the VNI folded into 1..65535, moved to the next free number on a clash. Unique
//!   per node (router id) and per VRF.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgpvpn_crds::model::{IfName, NodeStateFindings, ParsedNodeState, RtRd, check_vtep};
use bgpvpn_crds::validate::{RouteTargetOrDistinguisher, ValidBgpvpn};
use bgpvpn_crds::{Endpoint, EvpnNodeState, EvpnNodeStateSpec, L3Vni, RoutedPrefix, Underlay};
use k8s_openapi::api::core::v1::Node;
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};

use super::NodePlan;
use super::bindings::{BindVerdict, BindingDecision};
use super::vpns::VpnDecision;
use crate::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::config::{Config, UnderlayConfig};
use crate::view::Index;

/// Node annotation overriding the VTEP address.
pub const ANNOTATION_VTEP_IP: &str = "bgpvpn.io/vtep-ip";
/// Node annotation overriding the BGP router id.
pub const ANNOTATION_ROUTER_ID: &str = "bgpvpn.io/router-id";
/// Node annotation overriding the AS number.
pub const ANNOTATION_ASN: &str = "bgpvpn.io/asn";

/// A node that takes part in EVPN.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub uid: String,
    pub underlay: Result<Underlay, String>,
}

/// The EVPN nodes (every Node, or those matching `nodeSelector`), keyed by name.
pub fn evpn_nodes(nodes: &[Arc<Node>], config: &Config) -> BTreeMap<String, NodeInfo> {
    let selector = config
        .node_selector
        .clone()
        .and_then(|s| Selector::try_from(s).ok());
    nodes
        .iter()
        .filter(|n| selector.as_ref().is_none_or(|s| s.matches(n.labels())))
        .map(|n| {
            (
                n.name_any(),
                NodeInfo {
                    uid: n.uid().unwrap_or_default(),
                    underlay: node_underlay(n, &config.underlay),
                },
            )
        })
        .collect()
}

/// A node whose Node or EVPNNodeState could not be read keeps its object as it is: nothing
/// is known of its addresses, or of the route distinguishers it runs, and an orphan is never
/// deleted on a guess.
pub fn keep_unreadable(nodes: &mut BTreeMap<String, NodeInfo>, index: &Index) {
    for u in index.unreadable.values() {
        let why = match u.kind.as_str() {
            "Node"
                if index.node_states.contains_key(u.name.as_str())
                    || index.unreadable("EVPNNodeState", "", &u.name).is_some() =>
            {
                format!("the Node cannot be read: {}", u.error)
            }
            "EVPNNodeState"
                if nodes.contains_key(&u.name) || index.unreadable("Node", "", &u.name).is_some() =>
            {
                format!("its EVPNNodeState cannot be read: {}", u.error)
            }
            _ => continue,
        };
        let info = nodes.entry(u.name.clone()).or_insert_with(|| NodeInfo {
            uid: u.uid.clone().unwrap_or_default(),
            underlay: Err(String::new()),
        });
        info.underlay = Err(match &info.underlay {
            Err(before) if !before.is_empty() => format!("{before}; {why}"),
            _ => why,
        });
    }
}

/// Our EVPNNodeStates that no EVPN node wants any more and that garbage collection will not
/// remove, by name with their uid: their Node still exists (it left `nodeSelector`), or they
/// name no Node as owner. The object of a deleted Node is left to the garbage collector, which
/// deletes it through its owner reference.
pub fn retired_node_states(
    nodes: &[Arc<Node>],
    placement: &Placement,
    index: &Index,
) -> BTreeMap<String, Option<String>> {
    let existing: BTreeSet<&str> = nodes.iter().filter_map(|n| n.meta().name.as_deref()).collect();
    index
        .node_states
        .iter()
        .filter(|(_, obj)| obj.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY))
        .filter(|(name, _)| !placement.nodes.contains_key(**name) && !placement.kept.contains_key(**name))
        .filter(|(name, obj)| {
            existing.contains(**name) || !obj.owner_references().iter().any(|o| o.kind == "Node")
        })
        .map(|(name, obj)| (name.to_string(), obj.uid()))
        .collect()
}

/// The underlay of one node.
pub fn node_underlay(node: &Node, config: &UnderlayConfig) -> Result<Underlay, String> {
    let annotations = node.annotations();
    let internal: Vec<IpAddr> = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let first_v4 = internal.iter().find_map(|ip| match ip {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    });
    let router_id: Ipv4Addr = match annotations.get(ANNOTATION_ROUTER_ID) {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("annotation {ANNOTATION_ROUTER_ID}: {s:?} is not an IPv4 address"))?,
        None => first_v4
            .ok_or_else(|| format!("no IPv4 InternalIP address and no {ANNOTATION_ROUTER_ID} annotation"))?,
    };
    let vtep: IpAddr = match annotations.get(ANNOTATION_VTEP_IP) {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("annotation {ANNOTATION_VTEP_IP}: {s:?} is not an IP address"))?,
        None => first_v4
            .map(IpAddr::V4)
            .or(internal.first().copied())
            .ok_or_else(|| format!("no InternalIP address and no {ANNOTATION_VTEP_IP} annotation"))?,
    };
    check_vtep(vtep).map_err(|why| format!("the node's VTEP: {why}"))?;
    let asn = match annotations.get(ANNOTATION_ASN) {
        Some(s) => s.trim().parse::<u32>().ok().filter(|a| *a > 0).ok_or_else(|| {
            format!("annotation {ANNOTATION_ASN}: {s:?} is not an AS number (1..4294967295)")
        })?,
        None => config.asn,
    };
    let own: BTreeSet<IpAddr> = internal
        .iter()
        .copied()
        .chain([vtep, IpAddr::V4(router_id)])
        .collect();
    let neighbors = config
        .neighbors
        .iter()
        .filter(|n| {
            n.address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_none_or(|a| !own.contains(&a))
        })
        .cloned()
        .collect();
    Ok(Underlay {
        asn,
        router_id: router_id.to_string(),
        vtep_ip: vtep.to_string(),
        neighbors,
        ipv4_unicast: config.ipv4_unicast,
    })
}

/// The desired objects, and the nodes whose object is left as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    pub nodes: BTreeMap<String, Arc<NodePlan>>,
    pub kept: BTreeMap<String, String>,
}

/// Puts every bound endpoint on its node. Endpoints on nodes without an object are recorded in
/// the binding (`unplaced`); an address already used by another VNI on the same node is left
/// out and noted.
/// `current` is each node's object as stored: the RDs it carries are kept.
pub fn assemble(
    nodes: &BTreeMap<String, NodeInfo>,
    vpns: &BTreeMap<String, VpnDecision>,
    bindings: &mut [BindingDecision],
    current: &HashMap<&str, &EvpnNodeState>,
) -> Placement {
    let mut l3: BTreeMap<&str, BTreeMap<u32, L3Vni>> = BTreeMap::new();
    let mut ip_vni: BTreeMap<(String, IpAddr), u32> = BTreeMap::new();
    for b in bindings.iter_mut() {
        let BindVerdict::Bound { bgpvpn, vni } = &b.verdict else {
            continue;
        };
        let (bgpvpn, vni) = (bgpvpn.clone(), *vni);
        // bound only to an accepted BGPVPN (bindings::decide); should that ever break, this
        // binding is left out rather than the pass of every VPN panicking
        let Some((_, valid)) = vpns.get(&bgpvpn).and_then(VpnDecision::accepted) else {
            debug_assert!(false, "binding bound to BGPVPN {bgpvpn}, which is not accepted");
            continue;
        };
        let mut placed_nodes = BTreeSet::new();
        let mut kept = Vec::with_capacity(b.endpoints.len());
        for ep in std::mem::take(&mut b.endpoints) {
            let (node_name, info) = match nodes.get_key_value(&ep.node) {
                Some((name, info)) => (name, info),
                None => {
                    b.unplaced.insert(
                        ep.node.clone(),
                        "not an EVPN node (no such Node, or not selected by the operator's nodeSelector)"
                            .into(),
                    );
                    kept.push(ep);
                    continue;
                }
            };
            if let Err(why) = &info.underlay {
                b.unplaced.insert(ep.node.clone(), why.clone());
                kept.push(ep);
                continue;
            }
            match ip_vni.entry((ep.node.clone(), ep.ip)) {
                Entry::Occupied(o) if *o.get() != vni => {
                    b.notes.push(format!(
                        "{} (pod {}) on node {} is already an endpoint of VNI {}; left out",
                        ep.ip,
                        ep.pod,
                        ep.node,
                        o.get()
                    ));
                    continue;
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(v) => {
                    v.insert(vni);
                }
            }
            let entry = l3
                .entry(node_name.as_str())
                .or_default()
                .entry(vni)
                .or_insert_with(|| l3vni_template(&bgpvpn, vni, valid));
            let ip = ep.ip.to_string();
            if !entry.endpoints.iter().any(|e| e.ip == ip) {
                entry.endpoints.push(Endpoint {
                    ip,
                    interface: ep.interface.as_ref().map(IfName::to_string),
                    pod: Some(ep.pod.clone()),
                    holder: ep.holder.clone(),
                });
            }
            placed_nodes.insert(node_name.as_str());
            kept.push(ep);
        }
        b.endpoints = kept;
        for node in placed_nodes {
            let entry = l3
                .get_mut(node)
                .and_then(|m| m.get_mut(&vni))
                .expect("placed above");
            for prefix in b.prefixes.iter().map(|p| p.to_string()) {
                if !entry.prefixes.iter().any(|p| p.prefix == prefix) {
                    entry.prefixes.push(RoutedPrefix {
                        prefix,
                        next_hop: None,
                    });
                }
            }
        }
    }

    let mut placement = Placement::default();
    for (name, info) in nodes {
        let underlay = match &info.underlay {
            Ok(u) => u.clone(),
            Err(why) => {
                placement.kept.insert(name.clone(), why.clone());
                continue;
            }
        };
        let mut l3vnis: Vec<L3Vni> = l3
            .remove(name.as_str())
            .unwrap_or_default()
            .into_values()
            .collect();
        for v in &mut l3vnis {
            v.endpoints.sort();
            v.prefixes.sort();
            // kept until the next plan: no spare capacity (a VNI has often one endpoint per node)
            v.endpoints.shrink_to_fit();
            v.prefixes.shrink_to_fit();
        }
        let router_id: Ipv4Addr = underlay
            .router_id
            .parse()
            .expect("node_underlay yields an IPv4 router id");
        let programmed = current
            .get(name.as_str())
            .map(|obj| obj.spec.l3vnis.as_slice())
            .unwrap_or_default();
        let explicit: BTreeMap<u32, Option<RtRd>> = l3vnis
            .iter()
            .map(|v| (v.vni, vpns[&v.bgpvpn].accepted().and_then(|(_, valid)| valid.rd)))
            .collect();
        let rds = assign_route_distinguishers(router_id, &explicit, programmed);
        for v in &mut l3vnis {
            v.route_distinguisher = rds[&v.vni].to_string();
        }
        let mut spec = EvpnNodeStateSpec { underlay, l3vnis };
        let findings = ParsedNodeState::new(&spec).into_findings();
        if !findings.underlay.0.is_empty() {
            // never hand an agent a state it refuses; keep what it has and say why
            placement.kept.insert(
                name.clone(),
                format!("the desired state is invalid: {}", findings.underlay),
            );
            continue;
        }
        for (vni, why) in hold_back(&mut spec, findings, programmed) {
            let kept = if spec.l3vnis.iter().any(|v| v.vni == vni) {
                "; the version programmed before keeps running"
            } else {
                ""
            };
            let bound_here = |b: &&mut BindingDecision| matches!(&b.verdict, BindVerdict::Bound { vni: v, .. } if *v == vni);
            for b in bindings.iter_mut().filter(bound_here) {
                b.unplaced.insert(
                    name.clone(),
                    format!("VNI {vni} held back on this node: {why}{kept}"),
                );
            }
        }
        placement.nodes.insert(
            name.clone(),
            Arc::new(NodePlan {
                uid: info.uid.clone(),
                spec,
            }),
        );
    }
    placement
}

/// Takes every L3 VNI with a finding out of `spec`: the node keeps running what it has for
/// that VNI (`programmed`, when that is still valid beside the others), and no other VNI is
/// held up. Returns the VNIs held back, with why.
fn hold_back(
    spec: &mut EvpnNodeStateSpec,
    mut findings: NodeStateFindings,
    programmed: &[L3Vni],
) -> Vec<(u32, String)> {
    let mut held: Vec<(u32, String)> = Vec::new();
    // a kept programmed VNI may itself clash with the rest: then it goes too
    for _ in 0..3 {
        if findings.l3vnis.is_empty() {
            break;
        }
        for (index, why) in findings.l3vnis.iter().rev() {
            let vni = spec.l3vnis[*index].vni;
            if !held.iter().any(|(v, _)| *v == vni) {
                held.push((vni, why.to_string()));
            }
            match programmed
                .iter()
                .find(|p| p.vni == vni && spec.l3vnis[*index] != **p)
            {
                Some(last) => spec.l3vnis[*index] = last.clone(),
                None => {
                    spec.l3vnis.remove(*index);
                }
            }
        }
        findings = ParsedNodeState::new(spec).into_findings();
    }
    let mut index = 0;
    spec.l3vnis.retain(|_| {
        let keep = !findings.l3vnis.contains_key(&index);
        index += 1;
        keep
    });
    held.sort();
    held
}

/// An L3 VNI of `bgpvpn` without endpoints, prefixes, or its RD (which
/// [`assign_route_distinguishers`] decides per node).
fn l3vni_template(bgpvpn: &str, vni: u32, valid: &ValidBgpvpn) -> L3Vni {
    let strings = |list: &[RtRd]| list.iter().map(RtRd::to_string).collect();
    L3Vni {
        bgpvpn: bgpvpn.to_string(),
        vni,
        vrf: vrf_name(vni),
        import_targets: strings(&valid.import_targets),
        export_targets: strings(&valid.export_targets),
        route_distinguisher: String::new(),
        local_pref: valid.local_pref,
        endpoints: vec![],
        prefixes: vec![],
    }
}

/// The VRF device of a VNI (at most 12 bytes: `vrf-16777215`).
pub fn vrf_name(vni: u32) -> String {
    format!("vrf-{vni}")
}

/// The RD of every VNI of a node: its explicit one (`explicit`, by VNI: the BGPVPN's), else
/// one derived here (see the module documentation). `programmed` is what the node's object
/// carries now (read from the stored object): a VNI found there keeps its type-1 RD of this
/// router id unless an explicit RD has taken it.
pub fn assign_route_distinguishers(
    router_id: Ipv4Addr,
    explicit: &BTreeMap<u32, Option<RtRd>>,
    programmed: &[L3Vni],
) -> BTreeMap<u32, RtRd> {
    let mut rds: BTreeMap<u32, RtRd> = explicit
        .iter()
        .filter_map(|(vni, rd)| rd.map(|rd| (*vni, rd)))
        .collect();
    let mut taken: BTreeSet<RtRd> = rds.values().copied().collect();
    let programmed_rd: BTreeMap<u32, RtRd> = programmed
        .iter()
        .filter_map(|v| match RtRd::parse(&v.route_distinguisher) {
            // an RD of an older router id is not this node's to keep
            Ok(rd @ RtRd(RouteTargetOrDistinguisher::Ipv4(ip, _))) if ip == router_id => Some((v.vni, rd)),
            _ => None,
        })
        .collect();
    let derived = || {
        explicit
            .iter()
            .filter(|(_, rd)| rd.is_none())
            .map(|(vni, _)| *vni)
    };
    // kept RDs first, so a new VNI can never take the RD of one already programmed
    for vni in derived() {
        if let Some(rd) = programmed_rd.get(&vni).filter(|rd| taken.insert(**rd)) {
            rds.insert(vni, *rd);
        }
    }
    for vni in derived().filter(|vni| !rds.contains_key(vni)).collect::<Vec<_>>() {
        let mut n = fold_vni(vni);
        let rd = loop {
            let rd = RtRd(RouteTargetOrDistinguisher::Ipv4(router_id, n));
            if taken.insert(rd) {
                break rd;
            }
            n = if n == u16::MAX { 1 } else { n + 1 };
        };
        rds.insert(vni, rd);
    }
    rds
}

/// The VNI itself when it fits the 16-bit number of a type-1 RD, else folded into 1..65535.
pub fn fold_vni(vni: u32) -> u16 {
    match u16::try_from(vni) {
        Ok(n) if n > 0 => n,
        _ => ((vni.saturating_sub(1)) % 65535 + 1) as u16,
    }
}
