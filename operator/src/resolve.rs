//! Resolution of a binding's target to endpoints: which pod addresses, on which nodes, join the
//! VNI. Pure: reads only the [`Index`] of one pass.
//!
//! * `podSelector`: the pods of the binding's namespace whose labels match.
//! * `networkId` / `routerId`: the pods of the binding's namespace, when the namespace's
//!   `KuryrNetwork` has that `status.netId` / `status.routerId`; the addresses are those of the
//!   pod's vif in that network (taken from its `KuryrPort`).
//! * `portId`: the pod whose `KuryrPort` has a vif with that Neutron port id; the addresses are
//!   that vif's.
//!
//! Only pods that are `Running`, not being deleted, scheduled to a node, not on the host network
//! and with an address are endpoints.

use std::collections::BTreeSet;
use std::net::IpAddr;

use bgpvpn_crds::model::IfName;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::kuryr::{KuryrNetwork, KuryrPort, Vif};
use crate::reasons;
use crate::view::{Index, KuryrIndex, PodView};

/// A validated binding target.
#[derive(Clone, Debug)]
pub enum Target {
    Pods(Selector),
    Network(String),
    Router(String),
    Port(String),
}

/// One address that joins a VNI.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResolvedEndpoint {
    /// `namespace/name` of the pod.
    pub pod: String,
    pub node: String,
    pub ip: IpAddr,
    /// Host-side interface, when known (Kuryr records it as the vif name; one that is not a
    /// valid interface name is left out).
    pub interface: Option<IfName>,
    /// See [`PodView::holder`].
    pub holder: Option<String>,
}

/// What a target resolved to, with remarks for the status message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub endpoints: Vec<ResolvedEndpoint>,
    pub notes: Vec<String>,
}

/// Why a target could not be resolved at all.
#[derive(Clone, Debug, PartialEq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

/// Resolves `target` in `namespace`.
pub fn resolve(target: &Target, namespace: &str, index: &Index) -> Result<Resolved, Unresolved> {
    match target {
        Target::Pods(selector) => Ok(selected_pods(selector, namespace, index)),
        Target::Network(id) => kuryr_network_pods(NetworkMatch::Network(id), namespace, index),
        Target::Router(id) => kuryr_network_pods(NetworkMatch::Router(id), namespace, index),
        Target::Port(id) => kuryr_port_pod(id, namespace, index),
    }
}

/// Why a pod is not an endpoint (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    NotRunning,
    HostNetwork,
}

/// The node of a pod that may be an endpoint.
fn eligible_node(pod: &PodView) -> Result<&str, Skip> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(Skip::NotRunning);
    }
    let running = pod.status.phase.as_deref() == Some("Running");
    let node = pod.spec.node_name.as_deref().filter(|n| !n.is_empty());
    match node {
        _ if !running => Err(Skip::NotRunning),
        None => Err(Skip::NotRunning),
        // its address is the node's: routing it into a VRF would take the node's traffic along
        Some(_) if pod.spec.host_network == Some(true) => Err(Skip::HostNetwork),
        Some(node) => Ok(node),
    }
}

/// The pod's addresses as the kubelet reported them (`status.podIPs`, else `status.podIP`).
fn pod_ips(pod: &PodView) -> Vec<IpAddr> {
    let status = &pod.status;
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let mut ips = BTreeSet::new();
    for ip in listed.chain(status.pod_ip.as_deref()) {
        if let Ok(ip) = ip.parse() {
            ips.insert(ip);
        }
    }
    ips.into_iter().collect()
}

fn pod_key(pod: &PodView) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn host_network_note(count: usize, notes: &mut Vec<String>) {
    if count > 0 {
        notes.push(format!(
            "{count} selected pod(s) use the host network and cannot join a VRF"
        ));
    }
}

fn selected_pods(selector: &Selector, namespace: &str, index: &Index) -> Resolved {
    let mut out = Resolved::default();
    let mut host_network = 0;
    for pod in index.pods_by_namespace.get(namespace).into_iter().flatten() {
        if !selector.matches(pod.labels()) {
            continue;
        }
        match eligible_node(pod) {
            Ok(node) => {
                for ip in pod_ips(pod) {
                    out.endpoints.push(ResolvedEndpoint {
                        pod: pod_key(pod),
                        node: node.to_string(),
                        ip,
                        interface: None,
                        holder: pod.holder(),
                    });
                }
            }
            Err(Skip::HostNetwork) => host_network += 1,
            Err(Skip::NotRunning) => {}
        }
    }
    host_network_note(host_network, &mut out.notes);
    out
}

#[derive(Clone, Copy, Debug)]
enum NetworkMatch<'a> {
    Network(&'a str),
    Router(&'a str),
}

fn kuryr_index<'i, 'a>(index: &'i Index<'a>) -> Result<&'i KuryrIndex<'a>, Unresolved> {
    index.kuryr.as_ref().ok_or_else(|| Unresolved {
        reason: reasons::KURYR_NOT_INSTALLED,
        message: "the Kuryr CRDs (kuryrnetworks/kuryrports.openstack.org) are not installed; \
                  networkId, routerId and portId bindings need Kuryr"
            .into(),
    })
}

fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The namespace's KuryrNetwork carrying the id, with its network id.
fn matching_network<'a>(
    want: NetworkMatch,
    namespace: &str,
    kuryr: &KuryrIndex<'a>,
    index: &Index,
) -> Result<(&'a KuryrNetwork, Option<String>), Unresolved> {
    let nets = kuryr
        .networks_by_namespace
        .get(namespace)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (field, id) = match want {
        NetworkMatch::Network(id) => ("netId", id),
        NetworkMatch::Router(id) => ("routerId", id),
    };
    let mut seen = Vec::new();
    for net in nets {
        let name = net.name_any();
        let Some(status) = net.status.ok() else {
            match net.status.problem() {
                Some(p) => seen.push(format!(
                    "KuryrNetwork {namespace}/{name} has a malformed status ({p})"
                )),
                None => seen.push(format!("KuryrNetwork {namespace}/{name} has no status yet")),
            }
            continue;
        };
        let value = match want {
            NetworkMatch::Network(_) => status.net_id.as_deref(),
            NetworkMatch::Router(_) => status.router_id.as_deref(),
        };
        match value {
            Some(v) if same_id(v, id) => return Ok((net, status.net_id.clone())),
            Some(v) => seen.push(format!("KuryrNetwork {namespace}/{name} has {field} {v}")),
            None => seen.push(format!("KuryrNetwork {namespace}/{name} has no {field} yet")),
        }
    }
    for u in index.unreadable_in("KuryrNetwork", namespace) {
        seen.push(format!(
            "KuryrNetwork {namespace}/{} cannot be read ({})",
            u.name, u.error
        ));
    }
    let message = if seen.is_empty() {
        format!("namespace {namespace} has no KuryrNetwork (yet), so no Neutron {field} {id}")
    } else {
        format!(
            "no KuryrNetwork of namespace {namespace} has {field} {id}: {}",
            seen.join("; ")
        )
    };
    Err(Unresolved {
        reason: reasons::TARGET_NOT_FOUND,
        message,
    })
}

/// The usable vifs of a pod's KuryrPort in the given network (or its default vif when the
/// network of the vifs is not recorded).
fn port_vifs<'p>(port: &'p KuryrPort, net_id: Option<&str>, notes: &mut Vec<String>) -> Vec<&'p Vif> {
    let name = format!("{}/{}", port.namespace().unwrap_or_default(), port.name_any());
    let Some(status) = port.status.ok() else {
        if let Some(p) = port.status.problem() {
            notes.push(format!("KuryrPort {name} has a malformed status ({p})"));
        }
        return vec![];
    };
    let mut vifs = Vec::new();
    for (ifname, entry) in &status.vifs {
        let Some(entry) = entry.ok() else {
            if let Some(p) = entry.problem() {
                notes.push(format!("KuryrPort {name} vif {ifname} is malformed ({p})"));
            }
            continue;
        };
        if entry.vif.active == Some(false) {
            continue;
        }
        let in_network = match (net_id, entry.vif.network_id()) {
            (Some(want), Some(have)) => same_id(want, have),
            _ => entry.default,
        };
        if in_network {
            vifs.push(&entry.vif);
        }
    }
    vifs
}

fn vif_endpoints(pod: &PodView, node: &str, vif: &Vif, notes: &mut Vec<String>) -> Vec<ResolvedEndpoint> {
    let (ips, bad) = vif.ips();
    if !bad.is_empty() {
        notes.push(format!(
            "vif {} of pod {} has addresses that are not IPs: {}",
            vif.id,
            pod_key(pod),
            bad.join(", ")
        ));
    }
    let interface = vif.vif_name.as_deref().and_then(|n| IfName::new(n).ok());
    ips.into_iter()
        .map(|ip| ResolvedEndpoint {
            pod: pod_key(pod),
            node: node.to_string(),
            ip,
            interface: interface.clone(),
            holder: pod.holder(),
        })
        .collect()
}

/// The KuryrPort of a pod, unless it belongs to an earlier pod of the same name.
fn port_of<'a>(pod: &PodView, kuryr: &KuryrIndex<'a>) -> Option<&'a KuryrPort> {
    let port = kuryr.port_by_name.get(&(
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    ))?;
    let port_uid = port.spec.ok().and_then(|s| s.pod_uid.as_deref());
    match (port_uid, pod.metadata.uid.as_deref()) {
        (Some(a), Some(b)) if a != b => None,
        _ => Some(port),
    }
}

fn kuryr_network_pods(want: NetworkMatch, namespace: &str, index: &Index) -> Result<Resolved, Unresolved> {
    let kuryr = kuryr_index(index)?;
    let (_, net_id) = matching_network(want, namespace, kuryr, index)?;
    let mut out = Resolved::default();
    let (mut host_network, mut without_port) = (0, 0);
    for pod in index.pods_by_namespace.get(namespace).into_iter().flatten() {
        let node = match eligible_node(pod) {
            Ok(node) => node,
            Err(Skip::HostNetwork) => {
                host_network += 1;
                continue;
            }
            Err(Skip::NotRunning) => continue,
        };
        let Some(port) = port_of(pod, kuryr) else {
            match index.unreadable("KuryrPort", namespace, &pod.name_any()) {
                Some(u) => out.notes.push(format!(
                    "KuryrPort {namespace}/{} cannot be read ({})",
                    u.name, u.error
                )),
                None => without_port += 1,
            }
            continue;
        };
        let before = out.endpoints.len();
        for vif in port_vifs(port, net_id.as_deref(), &mut out.notes) {
            out.endpoints
                .extend(vif_endpoints(pod, node, vif, &mut out.notes));
        }
        if out.endpoints.len() == before {
            without_port += 1;
        }
    }
    host_network_note(host_network, &mut out.notes);
    if without_port > 0 {
        out.notes.push(format!(
            "{without_port} Running pod(s) have no Kuryr address in this network yet"
        ));
    }
    out.endpoints.sort();
    out.endpoints.dedup();
    Ok(out)
}

fn kuryr_port_pod(port_id: &str, namespace: &str, index: &Index) -> Result<Resolved, Unresolved> {
    let kuryr = kuryr_index(index)?;
    let mut notes = Vec::new();
    let found = kuryr
        .ports_by_namespace
        .get(namespace)
        .into_iter()
        .flatten()
        .find_map(|port| {
            let status = port.status.ok()?;
            status
                .vifs
                .values()
                .filter_map(|e| e.ok())
                .find(|e| same_id(&e.vif.id, port_id))
                .map(|e| (*port, &e.vif))
        });
    let Some((port, vif)) = found else {
        let mut message =
            format!("no KuryrPort in namespace {namespace} has a vif with Neutron port id {port_id}");
        let unreadable: Vec<String> = index
            .unreadable_in("KuryrPort", namespace)
            .iter()
            .map(|u| format!("KuryrPort {namespace}/{} cannot be read ({})", u.name, u.error))
            .collect();
        if !unreadable.is_empty() {
            message = format!("{message}; {}", unreadable.join("; "));
        }
        return Err(Unresolved {
            reason: reasons::TARGET_NOT_FOUND,
            message,
        });
    };
    let pod = index
        .pod_by_name
        .get(&(namespace, port.metadata.name.as_deref().unwrap_or_default()))
        .copied();
    let mut out = Resolved::default();
    match pod.filter(|p| port_of(p, kuryr).is_some()) {
        None => out.notes.push(format!(
            "the pod of KuryrPort {namespace}/{} does not exist",
            port.name_any()
        )),
        Some(pod) => match eligible_node(pod) {
            Ok(node) if vif.active != Some(false) => {
                out.endpoints = vif_endpoints(pod, node, vif, &mut notes)
            }
            Ok(_) => out.notes.push(format!(
                "port {port_id} of pod {} is not active yet",
                pod_key(pod)
            )),
            Err(Skip::HostNetwork) => host_network_note(1, &mut out.notes),
            Err(Skip::NotRunning) => out.notes.push(format!("pod {} is not Running", pod_key(pod))),
        },
    }
    out.notes.extend(notes);
    Ok(out)
}
