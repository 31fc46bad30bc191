//! FRR: the typed view of the configuration, its pure rendering, and the apply mechanism.
//!
//! [`render`] writes the COMPLETE frr.conf for a [`FrrView`]; every token in it comes from a
//! typed, validated value (numbers, parsed addresses, [`IfName`]s, parsed RT/RDs), so no spec
//! string can carry an FRR command. Only non-default settings are rendered (frr-reload would
//! otherwise fight `show running-config`, which hides defaults).
//!
//! ## Announcing local endpoints: `network`, not `redistribute`
//! Each endpoint's host prefix (and each routed prefix) is announced with `network <prefix>` in
//! the VRF's `address-family ipv4|ipv6 unicast`, and `bgp network import-check` keeps its
//! default (on): a prefix is advertised only while its route is in the VRF's RIB, which zebra
//! learns from the agent's kernel route. So the announcement follows the dataplane (an endpoint
//! route deleted by hand is withdrawn until the agent repairs it), and nothing else that lives
//! in the VRF table (the `unreachable default`, EVPN routes, connected routes) is exported, which
//! `redistribute kernel|connected` would do.

pub mod claims;
pub mod delta;
pub mod reload;
pub mod sessions;

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::model::{IfName, NeighborModel, NodeModel, Peer, Prefix, RtRd};

/// One VRF as FRR sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrrVrf {
    pub name: IfName,
    /// The L3VNI mapped to the VRF; `None` while it is unmapped during a VNI move.
    pub vni: Option<u32>,
    pub rd: RtRd,
    pub import_targets: Vec<RtRd>,
    pub export_targets: Vec<RtRd>,
    pub local_pref: Option<u32>,
    /// Announced prefixes, sorted.
    pub networks: Vec<Prefix>,
}

/// Everything the agent configures in FRR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrrView {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<NeighborModel>,
    /// The VTEP address announced to the neighbours in IPv4 unicast, when BGP is the
    /// underlay's routing (`underlay.ipv4Unicast`).
    #[serde(default)]
    pub announced_vtep: Option<IpAddr>,
    /// Sorted by name.
    pub vrfs: Vec<FrrVrf>,
}

impl FrrView {
    /// The view of a desired state, leaving out the VRFs in `skip` (those the kernel side
    /// cannot program: rendering them would bind FRR to a foreign device).
    pub fn from_desired(d: &NodeModel, skip: &[IfName]) -> Self {
        let vrfs = d
            .vrfs
            .iter()
            .filter(|v| !skip.contains(&v.name))
            .map(|v| FrrVrf {
                name: v.name.clone(),
                vni: Some(v.vni),
                rd: v.rd,
                import_targets: v.import_targets.clone(),
                export_targets: v.export_targets.clone(),
                local_pref: v.local_pref,
                networks: v.announced().into_iter().collect(),
            })
            .collect();
        Self {
            asn: d.underlay.asn,
            router_id: d.underlay.router_id,
            neighbors: d.underlay.neighbors.clone(),
            announced_vtep: d.underlay.ipv4_unicast.then_some(d.underlay.vtep_ip),
            vrfs,
        }
    }

    pub fn vrf(&self, name: &IfName) -> Option<&FrrVrf> {
        self.vrfs.iter().find(|v| &v.name == name)
    }

    /// The same view with the VNI of the named VRFs unmapped.
    pub fn unmapped(&self, names: &[IfName]) -> Self {
        let mut out = self.clone();
        for v in &mut out.vrfs {
            if names.contains(&v.name) {
                v.vni = None;
            }
        }
        out
    }

    /// The same view with nothing announced from the named VRFs.
    pub fn silenced(&self, names: &[IfName]) -> Self {
        let mut out = self.clone();
        for v in &mut out.vrfs {
            if names.contains(&v.name) {
                v.networks.clear();
            }
        }
        out
    }

    /// This view plus the VRFs of `previous` it no longer has (kept until their devices are gone).
    pub fn with_retained(&self, previous: &FrrView) -> Self {
        let mut out = self.clone();
        for v in &previous.vrfs {
            if out.vrf(&v.name).is_none() {
                out.vrfs.push(v.clone());
            }
        }
        out.vrfs.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

fn peer(n: &NeighborModel) -> String {
    match &n.peer {
        Peer::Address(a) => a.to_string(),
        Peer::Interface(i) => i.to_string(),
    }
}

fn route_map_name(vrf: &IfName) -> String {
    format!("BGPVPN-LP-{vrf}")
}

/// Lines of configuration text.
#[derive(Default)]
pub(crate) struct Lines(pub(crate) String);

impl Lines {
    pub(crate) fn push(&mut self, line: impl AsRef<str>) {
        self.0.push_str(line.as_ref());
        self.0.push('\n');
    }
}

/// The complete frr.conf for `view`. Pure; golden-tested.
pub fn render(view: &FrrView) -> String {
    let mut w = Lines::default();
    w.push("! Generated by bgpvpn-agent from this node's EVPNNodeState. Do not edit:");
    w.push("! the agent undoes hand edits at its next full check (frr-reload.py).");
    w.push("!");
    // An unmapped VRF gets no `vrf` block at all: FRR does not show an empty one, and
    // frr-reload then removes just the lines inside it (`no vni N`), never the VRF itself.
    for v in &view.vrfs {
        if let Some(vni) = v.vni {
            vni_block(&mut w, v, vni, true);
            w.push("!");
        }
    }
    w.push(format!("router bgp {}", view.asn));
    w.push(format!(" bgp router-id {}", view.router_id));
    w.push(" no bgp ebgp-requires-policy");
    w.push(" no bgp default ipv4-unicast");
    if view.announced_vtep.is_some() {
        // ECMP across uplinks to routers of different ASes (two ToRs): their paths differ in
        // the first AS
        w.push(" bgp bestpath as-path multipath-relax");
    }
    for n in &view.neighbors {
        match &n.peer {
            Peer::Address(a) => w.push(format!(" neighbor {a} remote-as {}", n.remote_asn)),
            Peer::Interface(i) => w.push(format!(" neighbor {i} interface remote-as {}", n.remote_asn)),
        }
        if n.bfd {
            w.push(format!(" neighbor {} bfd", peer(n)));
        }
    }
    if let Some(vtep) = view.announced_vtep {
        w.push(" !");
        w.push(" address-family ipv4 unicast");
        w.push(format!("  network {}", Prefix::host(vtep)));
        for n in &view.neighbors {
            w.push(format!("  neighbor {} activate", peer(n)));
        }
        w.push(" exit-address-family");
    }
    w.push(" !");
    w.push(" address-family l2vpn evpn");
    for n in &view.neighbors {
        w.push(format!("  neighbor {} activate", peer(n)));
    }
    w.push("  advertise-all-vni");
    w.push(" exit-address-family");
    w.push("exit");
    w.push("!");
    for v in &view.vrfs {
        vrf_router_block(&mut w, view, v);
        w.push("!");
    }
    for v in view.vrfs.iter() {
        if route_map_block(&mut w, v) {
            w.push("!");
        }
    }
    w.0
}

/// `vrf <name>` with its `vni` line (or its removal).
pub(crate) fn vni_block(w: &mut Lines, v: &FrrVrf, vni: u32, map: bool) {
    w.push(format!("vrf {}", v.name));
    w.push(format!(" {}vni {vni}", if map { "" } else { "no " }));
    w.push("exit-vrf");
}

/// `network <prefix>`, with the VRF's localPref route-map when it has one.
pub(crate) fn network_line(v: &FrrVrf, p: &Prefix) -> String {
    match v.local_pref {
        Some(_) => format!("network {p} route-map {}", route_map_name(&v.name)),
        None => format!("network {p}"),
    }
}

/// The whole `router bgp <asn> vrf <name>` block of `v`.
pub(crate) fn vrf_router_block(w: &mut Lines, view: &FrrView, v: &FrrVrf) {
    w.push(format!("router bgp {} vrf {}", view.asn, v.name));
    w.push(format!(" bgp router-id {}", view.router_id));
    let (v4, v6): (Vec<&Prefix>, Vec<&Prefix>) = v.networks.iter().partition(|p| p.is_ipv4());
    for (afi, nets) in [("ipv4", &v4), ("ipv6", &v6)] {
        // an empty address-family block is not shown by FRR: rendering one would make every
        // frr-reload see a difference
        if nets.is_empty() {
            continue;
        }
        w.push(" !");
        w.push(format!(" address-family {afi} unicast"));
        for p in nets.iter() {
            w.push(format!("  {}", network_line(v, p)));
        }
        w.push(" exit-address-family");
    }
    w.push(" !");
    w.push(" address-family l2vpn evpn");
    w.push("  advertise ipv4 unicast");
    if !v6.is_empty() {
        w.push("  advertise ipv6 unicast");
    }
    w.push(format!("  rd {}", v.rd));
    for rt in &v.import_targets {
        w.push(format!("  route-target import {rt}"));
    }
    for rt in &v.export_targets {
        w.push(format!("  route-target export {rt}"));
    }
    w.push(" exit-address-family");
    w.push("exit");
}

/// The localPref route-map of `v`, if it has a localPref; returns whether it wrote one.
pub(crate) fn route_map_block(w: &mut Lines, v: &FrrVrf) -> bool {
    let Some(lp) = v.local_pref else { return false };
    w.push(format!("route-map {} permit 10", route_map_name(&v.name)));
    w.push(format!(" set local-preference {lp}"));
    w.push("exit");
    true
}

/// Lines whose presence in `show running-config` shows that FRR holds this view (used to
/// detect an FRR that restarted without the agent's configuration).
pub fn markers(view: &FrrView) -> Vec<String> {
    let mut m = vec![
        format!("router bgp {}", view.asn),
        "advertise-all-vni".to_string(),
    ];
    for v in &view.vrfs {
        m.push(format!("router bgp {} vrf {}", view.asn, v.name));
        if let Some(vni) = v.vni {
            m.push(format!("vni {vni}"));
        }
    }
    m
}
