//! Pure diff of desired against observed kernel state.
//!
//! [`resolve`] decides the per-VRF facts that depend on the kernel (slot/table, conflicts with
//! foreign devices, the pod interfaces, a pending VNI move); [`Resolved::ops`] turns them into
//! the ordered list of writes. Ownership is decided only by the markers ([`LINK_GROUP`] on links,
//! [`ROUTE_PROTO`] on routes and rules): anything without them is never changed or deleted.
//!
//! Write order: rules, routes and links that are no longer wanted are removed first (VXLAN
//! before bridge before VRF), then VRFs, bridges and VXLAN devices are created or fixed, then
//! sysctls, routes and rules. A master is only set when it differs (every RTM_NEWLINK with a
//! master makes FRR flush its neighbours).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    KernelOp, KernelState, Link, LinkKind, Route, RouteKind, RouteSpec, RouteTarget, Rule, RuleSpec,
};
use crate::model::{
    IfName, LINK_GROUP, MAX_SLOT, NodeModel, NodeSettings, OVERFLOW_SLOT_BASE, Prefix, VXLAN_PORT,
    bridge_mac, bridge_name, slot_of_table, table_for_slot, vxlan_name,
};

/// Main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Local routing table (the node's own addresses).
pub const LOCAL_TABLE: u32 = 255;
/// Route type of an address of the node itself.
const RTN_LOCAL: u8 = 2;

/// The metric the kernel gives a route added without one: 0 for IPv4, 1024 for IPv6. The
/// desired routes carry it so that what is read back compares equal.
pub fn default_metric(dst: &Prefix) -> u32 {
    if dst.is_ipv4() { 0 } else { 1024 }
}

/// Where one local endpoint stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPlan {
    pub ip: IpAddr,
    pub pod: Option<String>,
    pub holder: Option<String>,
    /// The host-side interface (name, index), or why it is not used.
    pub interface: Result<(String, u32), String>,
}

impl EndpointPlan {
    pub fn ifname(&self) -> Option<&str> {
        self.interface.as_ref().ok().map(|(n, _)| n.as_str())
    }
}

/// The interface an endpoint was bound to, for which holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub holder: Option<String>,
    /// Without a holder: the generation of the state that bound it.
    pub generation: Option<i64>,
    pub ifindex: u32,
    pub ifname: String,
}

/// Which interface each endpoint is bound to. An address that shows up on another interface
/// while the desired state still names the same holder is another pod's (an address reused
/// while the state is stale: operator down, failover) and joins nothing until the holder
/// changes. Persisted across agent restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPins(pub BTreeMap<IpAddr, Pin>);

impl EndpointPins {
    /// Why `link` may not take `ip` for `holder`, if it may not.
    fn refuses(
        &self,
        ip: IpAddr,
        holder: Option<&String>,
        generation: Option<i64>,
        link: &Link,
    ) -> Option<String> {
        let pin = self.0.get(&ip)?;
        let same_holder = match holder {
            Some(h) => pin.holder.as_ref() == Some(h),
            None => pin.holder.is_none() && pin.generation == generation,
        };
        (same_holder && pin.ifindex != link.index).then(|| {
            format!(
                "{ip} moved from interface {} (#{}) to {} (#{}) while the desired state still names the same holder{}: another pod holds it now; not routed until the state names the new holder",
                pin.ifname,
                pin.ifindex,
                link.name,
                link.index,
                holder.map(|h| format!(" ({h})")).unwrap_or_default()
            )
        })
    }

    /// After a pass: every endpoint bound in it is pinned to its interface; pins of endpoints
    /// that were refused or are waiting stay; pins of addresses no longer desired go.
    pub fn update(&mut self, resolved: &Resolved, generation: Option<i64>) {
        let mut next = BTreeMap::new();
        for e in resolved.vrfs.iter().flat_map(|v| v.endpoints.iter()) {
            match &e.interface {
                Ok((ifname, ifindex)) => {
                    let kept = self
                        .0
                        .get(&e.ip)
                        .filter(|p| p.ifindex == *ifindex && p.holder == e.holder);
                    let mut pin = kept.cloned().unwrap_or(Pin {
                        holder: e.holder.clone(),
                        generation,
                        ifindex: *ifindex,
                        ifname: ifname.clone(),
                    });
                    pin.generation = generation;
                    next.insert(e.ip, pin);
                }
                Err(_) => {
                    if let Some(p) = self.0.get(&e.ip) {
                        next.insert(e.ip, p.clone());
                    }
                }
            }
        }
        self.0 = next;
    }
}

/// Where one routed prefix stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixPlan {
    pub prefix: Prefix,
    /// How the VRF table forwards it (`via` the spec's next hop, or as the main table routes
    /// it), or why it is not routed. Only a routed prefix is announced: FRR's `network` takes
    /// a prefix only while a route to it exists in the VRF.
    pub route: Result<RouteTarget, String>,
}

/// Kernel facts of one desired VRF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrfPlan {
    pub name: IfName,
    pub vni: u32,
    /// Why the VRF cannot be programmed (a foreign device holds one of its names).
    pub conflict: Option<String>,
    pub slot: u32,
    pub table: u32,
    pub bridge: IfName,
    pub vxlan: IfName,
    pub bridge_mac: [u8; 6],
    /// VNIs of the agent's VXLAN devices still attached to this VRF's bridge (a VNI move).
    pub remap_from: Vec<u32>,
    pub endpoints: Vec<EndpointPlan>,
    pub prefixes: Vec<PrefixPlan>,
}

impl VrfPlan {
    pub fn ready_endpoints(&self) -> usize {
        self.endpoints.iter().filter(|e| e.interface.is_ok()).count()
    }
}

/// The result of [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub vrfs: Vec<VrfPlan>,
    pub ipv6: bool,
    pub vtep: IpAddr,
    pub vxlan_mtu: u32,
}

/// Decides slots, conflicts and endpoint interfaces for `desired` on this kernel.
/// Hash lookups over one observed state. A node at a thousand VNIs has thousands of links and
/// tens of thousands of routes and rules; linear scans per desired object made every pass, even
/// a no-op one, quadratic (6-10 s per pass at 1000 VNIs / 10000 endpoints in UML).
struct Observed<'a> {
    state: &'a KernelState,
    by_name: HashMap<&'a str, &'a Link>,
    by_index: HashMap<u32, &'a Link>,
    by_master: HashMap<u32, Vec<&'a Link>>,
    /// Main-table routes not owned by the agent (the CNI's routes to pods), by destination.
    main_routes: HashMap<Prefix, &'a Route>,
    /// The node's own addresses (`local` routes of the local table), with their device.
    local_addrs: HashMap<IpAddr, Option<u32>>,
}

impl<'a> Observed<'a> {
    fn new(state: &'a KernelState) -> Self {
        let mut main_routes = HashMap::new();
        let mut local_addrs = HashMap::new();
        for r in &state.routes {
            if r.table == MAIN_TABLE && r.kind == RouteKind::Unicast && r.oif.is_some() && !r.owned() {
                main_routes.entry(r.dst).or_insert(r);
            }
            if r.table == LOCAL_TABLE
                && r.kind == RouteKind::Other(RTN_LOCAL)
                && r.dst.len == Prefix::host(r.dst.addr).len
            {
                local_addrs.insert(r.dst.addr, r.oif);
            }
        }
        let mut by_master: HashMap<u32, Vec<&Link>> = HashMap::new();
        for l in &state.links {
            if let Some(m) = l.master {
                by_master.entry(m).or_default().push(l);
            }
        }
        Self {
            state,
            by_name: state.links.iter().map(|l| (l.name.as_str(), l)).collect(),
            by_index: state.links.iter().map(|l| (l.index, l)).collect(),
            by_master,
            main_routes,
            local_addrs,
        }
    }

    fn link(&self, name: &str) -> Option<&'a Link> {
        self.by_name.get(name).copied()
    }

    fn link_by_index(&self, index: u32) -> Option<&'a Link> {
        self.by_index.get(&index).copied()
    }

    /// The links enslaved to the link with this index.
    fn ports_of(&self, master: u32) -> impl Iterator<Item = &'a Link> + '_ {
        self.by_master.get(&master).into_iter().flatten().copied()
    }
}

pub fn resolve(
    desired: &NodeModel,
    observed: &KernelState,
    settings: &NodeSettings,
    pins: &EndpointPins,
) -> Resolved {
    let observed = &Observed::new(observed);
    let vtep = desired.underlay.vtep_ip;
    let desired_names: BTreeSet<&str> = desired.vrfs.iter().map(|v| v.name.as_str()).collect();
    // Slots kept by existing agent VRFs that stay.
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut kept: BTreeMap<&str, u32> = BTreeMap::new();
    for v in &desired.vrfs {
        if let Some(l) = observed.link(v.name.as_str())
            && l.owned()
            && let LinkKind::Vrf { table } = l.kind
            && let Some(slot) = slot_of_table(table)
            && used.insert(slot)
        {
            kept.insert(v.name.as_str(), slot);
        }
    }
    // Slots a new VRF must not take: held by a foreign device, or by an agent VRF that stays.
    let taken = |slot: u32, used: &BTreeSet<u32>| {
        used.contains(&slot)
            || observed
                .link(bridge_name(slot).as_str())
                .is_some_and(|l| !l.owned())
            || observed.state.links.iter().any(|l| {
                matches!(l.kind, LinkKind::Vrf { table } if table == table_for_slot(slot))
                    && (!l.owned() || desired_names.contains(l.name.as_str()))
            })
    };
    let mut vrfs = Vec::new();
    for v in &desired.vrfs {
        let slot = match kept.get(v.name.as_str()) {
            Some(s) => *s,
            None => {
                let slot = std::iter::once(v.vni)
                    .chain(OVERFLOW_SLOT_BASE..=MAX_SLOT)
                    .find(|s| !taken(*s, &used))
                    .unwrap_or(MAX_SLOT);
                used.insert(slot);
                slot
            }
        };
        let bridge = bridge_name(slot);
        let vxlan = vxlan_name(v.vni);
        let foreign = |name: &str| observed.link(name).filter(|l| !l.owned());
        let conflict = [v.name.as_str(), bridge.as_str(), vxlan.as_str()]
            .into_iter()
            .find_map(|n| foreign(n).map(|l| format!("device {n} ({}) exists and is not managed by the agent (group {} instead of {LINK_GROUP})", l.kind.label(), l.group)))
            .or_else(|| settings.frr_claims.conflict(v.name.as_str(), v.vni));
        let remap_from = observed
            .link(bridge.as_str())
            .filter(|b| b.owned())
            .map(|b| {
                observed
                    .ports_of(b.index)
                    .filter(|l| l.owned())
                    .filter_map(|l| match &l.kind {
                        LinkKind::Vxlan(x) if x.vni != v.vni => Some(x.vni),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let endpoints = v
            .endpoints
            .iter()
            .map(|ep| EndpointPlan {
                ip: ep.ip,
                pod: ep.pod.clone(),
                holder: ep.holder.clone(),
                interface: endpoint_interface(observed, ep.ip, ep.interface.as_ref()).and_then(|link| {
                    match pins.refuses(ep.ip, ep.holder.as_ref(), desired.generation, link) {
                        Some(why) => Err(why),
                        None => Ok((link.name.clone(), link.index)),
                    }
                }),
            })
            .collect();
        let prefixes = v
            .prefixes
            .iter()
            .map(|p| PrefixPlan {
                prefix: p.prefix,
                route: match p.next_hop {
                    None => main_route_target(observed, p.prefix),
                    Some(nh) if observed.local_addrs.contains_key(&nh) => {
                        Err(format!("next hop {nh} is an address of this node"))
                    }
                    Some(nh) => connected_dev(observed, nh).map(|dev| RouteTarget::Via { gateway: nh, dev }),
                },
            })
            .collect();
        vrfs.push(VrfPlan {
            name: v.name.clone(),
            vni: v.vni,
            conflict,
            slot,
            table: table_for_slot(slot),
            bridge_mac: bridge_mac(vtep, slot),
            bridge,
            vxlan,
            remap_from,
            endpoints,
            prefixes,
        });
    }
    Resolved {
        ipv6: desired.vrfs.iter().any(|v| v.has_ipv6()),
        vrfs,
        vtep,
        vxlan_mtu: settings.vxlan_mtu,
    }
}

/// The pod's host-side interface: the one named in the spec, or the one of the pod's host
/// route in the main table (which the CNI plugin installed).
fn endpoint_interface<'a>(
    observed: &Observed<'a>,
    ip: IpAddr,
    named: Option<&IfName>,
) -> Result<&'a Link, String> {
    if let Some(dev) = observed.local_addrs.get(&ip) {
        let on = dev
            .and_then(|i| observed.link_by_index(i))
            .map(|l| format!(" (on {})", l.name))
            .unwrap_or_default();
        return Err(format!(
            "{ip} is an address of this node{on}: never routed into a VRF"
        ));
    }
    let link = match named {
        Some(n) => observed
            .link(n.as_str())
            .ok_or_else(|| format!("interface {n} not found"))?,
        None => {
            let host = Prefix::host(ip);
            let route = observed.main_routes.get(&host).ok_or_else(|| {
                format!("no route to {host} in the main table yet (the CNI plugin adds it)")
            })?;
            let oif = route.oif.unwrap_or_default();
            observed
                .link_by_index(oif)
                .ok_or_else(|| format!("the main-table route to {host} uses unknown interface #{oif}"))?
        }
    };
    if link.owned() {
        return Err(format!(
            "interface {} is one of the agent's own devices",
            link.name
        ));
    }
    if let Some(m) = link.master.and_then(|m| observed.link_by_index(m))
        && matches!(m.kind, LinkKind::Vrf { .. })
    {
        return Err(format!("interface {} is enslaved to VRF {}", link.name, m.name));
    }
    Ok(link)
}

/// How the main table routes exactly `prefix` (the CNI's route to a pod subnet, say), for a
/// prefix advertised without a next hop.
fn main_route_target(observed: &Observed, prefix: Prefix) -> Result<RouteTarget, String> {
    let route = observed.main_routes.get(&prefix).ok_or_else(|| {
        format!(
            "the main table has no route to {prefix} (and no next hop is given): not routed, not announced"
        )
    })?;
    let dev = observed
        .link_by_index(route.oif.unwrap_or_default())
        .filter(|l| !l.owned())
        .map(|l| l.name.clone())
        .ok_or_else(|| format!("the main-table route to {prefix} uses no usable interface"))?;
    Ok(match route.gateway {
        Some(gateway) => RouteTarget::Via { gateway, dev },
        None => RouteTarget::Dev(dev),
    })
}

/// The device of the longest directly connected main-table route that holds `nh`.
fn connected_dev(observed: &Observed, nh: IpAddr) -> Result<String, String> {
    observed
        .state
        .routes
        .iter()
        .filter(|r| {
            r.table == MAIN_TABLE
                && r.kind == RouteKind::Unicast
                && r.gateway.is_none()
                && r.oif.is_some()
                && r.dst.contains(nh)
        })
        .max_by_key(|r| r.dst.len)
        .and_then(|r| observed.link_by_index(r.oif.unwrap_or_default()))
        .map(|l| l.name.clone())
        .ok_or_else(|| format!("next hop {nh} is not on a directly connected network of the main table"))
}

impl Resolved {
    /// Names of the sysctls [`Resolved::ops`] looks at.
    pub fn sysctl_keys(&self) -> Vec<String> {
        let mut keys = vec!["net/ipv4/ip_forward".to_string()];
        if self.ipv6 {
            keys.push("net/ipv6/conf/all/forwarding".to_string());
        }
        let mut devs = BTreeSet::new();
        for v in self.vrfs.iter().filter(|v| v.conflict.is_none()) {
            devs.insert(v.name.to_string());
            devs.insert(v.bridge.to_string());
            devs.extend(v.endpoints.iter().filter_map(|e| e.ifname().map(str::to_string)));
        }
        keys.extend(devs.into_iter().map(|d| format!("net/ipv4/conf/{d}/rp_filter")));
        keys
    }

    /// Routes the agent wants, per table.
    pub fn desired_routes(&self) -> Vec<RouteSpec> {
        let mut out = Vec::new();
        for v in self.vrfs.iter().filter(|v| v.conflict.is_none()) {
            for ep in &v.endpoints {
                if let Some(dev) = ep.ifname() {
                    let dst = Prefix::host(ep.ip);
                    out.push(RouteSpec {
                        table: v.table,
                        dst,
                        target: RouteTarget::Dev(dev.to_string()),
                        metric: default_metric(&dst),
                    });
                }
            }
            for p in &v.prefixes {
                if let Ok(target) = &p.route {
                    out.push(RouteSpec {
                        table: v.table,
                        dst: p.prefix,
                        target: target.clone(),
                        metric: default_metric(&p.prefix),
                    });
                }
            }
        }
        out.sort();
        out
    }

    /// Rules the agent wants: per VRF the guards, per ready endpoint its lookup rule.
    pub fn desired_rules(&self) -> Vec<RuleSpec> {
        let mut out = Vec::new();
        for v in self.vrfs.iter().filter(|v| v.conflict.is_none()) {
            for v6 in [false, true] {
                out.push(RuleSpec::VrfGuard {
                    v6,
                    bridge: v.bridge.to_string(),
                });
            }
            for e in v.endpoints.iter().filter(|e| e.interface.is_ok()) {
                out.push(RuleSpec::PodLookup {
                    src: Prefix::host(e.ip),
                    table: v.table,
                });
            }
            // what a routed prefix sends back goes through the VRF too
            for p in v.prefixes.iter().filter(|p| p.route.is_ok()) {
                out.push(RuleSpec::PodLookup {
                    src: p.prefix,
                    table: v.table,
                });
            }
        }
        out.sort();
        out
    }

    /// The ordered writes that bring `observed` to the desired state; empty when it is there:
    /// deletes first (rules, routes, then links: VXLAN, bridge, VRF), then per kind the links,
    /// the sysctls, the routes and the rules.
    pub fn ops(&self, observed: &KernelState, sysctls: &BTreeMap<String, String>) -> Vec<KernelOp> {
        let observed = &Observed::new(observed);
        let protected = self.protected(observed);
        let links = self.link_ops(observed, &protected);
        let (delete_routes, replace_routes) = self.route_ops(observed, &links.fresh, &protected);
        let (delete_rules, add_rules) = self.rule_ops(observed, &protected);
        let mut ops = delete_rules;
        ops.extend(delete_routes);
        ops.extend(links.deletes.into_iter().map(|(_, op)| op));
        ops.extend(links.vrfs);
        ops.extend(links.bridges);
        ops.extend(links.vxlans);
        ops.extend(self.sysctl_ops(sysctls));
        ops.extend(replace_routes);
        ops.extend(add_rules);
        ops
    }

    /// What the agent has for a conflicted VRF: kept as it is, no create, no delete.
    fn protected(&self, observed: &Observed) -> Protected {
        let mut protected = Protected::default();
        for v in self.vrfs.iter().filter(|v| v.conflict.is_some()) {
            for n in [v.name.as_str(), v.bridge.as_str(), v.vxlan.as_str()] {
                if observed.link(n).is_some_and(Link::owned) {
                    protected.links.insert(n.to_string());
                }
            }
            if let Some(Link {
                kind: LinkKind::Vrf { table },
                ..
            }) = observed.link(v.name.as_str()).filter(|l| l.owned())
            {
                protected.tables.insert(*table);
            }
        }
        protected
    }

    fn active(&self) -> impl Iterator<Item = &VrfPlan> {
        self.vrfs.iter().filter(|v| v.conflict.is_none())
    }

    /// The VRF, bridge and VXLAN device of every active VRF; owned links no VRF wants go.
    fn link_ops(&self, observed: &Observed, protected: &Protected) -> LinkOps {
        let mut out = LinkOps::default();
        let wanted: BTreeSet<String> = self
            .active()
            .flat_map(|v| [v.name.to_string(), v.bridge.to_string(), v.vxlan.to_string()])
            .collect();
        for l in observed.state.links.iter().filter(|l| l.owned()) {
            if !wanted.contains(&l.name) && !protected.links.contains(&l.name) {
                out.delete(l);
            }
        }
        for v in self.active() {
            self.vrf_link_ops(v, observed, &mut out);
            self.bridge_link_ops(v, observed, &mut out);
            self.vxlan_link_ops(v, observed, &mut out);
        }
        // stable: in observed order within one kind
        out.deletes.sort_by_key(|(order, _)| *order);
        out
    }

    fn vrf_link_ops(&self, v: &VrfPlan, observed: &Observed, out: &mut LinkOps) {
        match observed.link(v.name.as_str()) {
            Some(l) if matches!(l.kind, LinkKind::Vrf { table } if table == v.table) => {
                if !l.up {
                    out.vrfs.push(KernelOp::SetUp { name: l.name.clone() });
                }
            }
            existing => {
                if let Some(l) = existing {
                    out.delete(l);
                }
                out.fresh.insert(v.name.to_string());
                out.vrfs.push(KernelOp::CreateVrf {
                    name: v.name.clone(),
                    table: v.table,
                });
            }
        }
    }

    fn bridge_link_ops(&self, v: &VrfPlan, observed: &Observed, out: &mut LinkOps) {
        match observed.link(v.bridge.as_str()) {
            Some(l) if matches!(l.kind, LinkKind::Bridge { .. }) => {
                if l.mac != Some(v.bridge_mac) {
                    out.bridges.push(KernelOp::SetMac {
                        name: l.name.clone(),
                        mac: v.bridge_mac,
                    });
                }
                if !out.master_is(observed, l, v.name.as_str()) {
                    out.bridges.push(KernelOp::SetMaster {
                        name: l.name.clone(),
                        master: v.name.to_string(),
                    });
                }
                if l.kind == (LinkKind::Bridge { stp: Some(true) }) {
                    out.bridges.push(KernelOp::SetStpOff { name: l.name.clone() });
                }
                if !l.up {
                    out.bridges.push(KernelOp::SetUp { name: l.name.clone() });
                }
            }
            existing => {
                if let Some(l) = existing {
                    out.delete(l);
                }
                out.fresh.insert(v.bridge.to_string());
                out.bridges.push(KernelOp::CreateBridge {
                    name: v.bridge.clone(),
                    mac: v.bridge_mac,
                    vrf: v.name.clone(),
                });
            }
        }
    }

    fn vxlan_link_ops(&self, v: &VrfPlan, observed: &Observed, out: &mut LinkOps) {
        let vxlan_ok = |l: &Link| {
            matches!(&l.kind, LinkKind::Vxlan(x)
                if x.vni == v.vni && x.local == Some(self.vtep) && x.port == Some(VXLAN_PORT) && x.learning == Some(false))
        };
        match observed.link(v.vxlan.as_str()) {
            Some(l) if vxlan_ok(l) => {
                let enslaved = out.master_is(observed, l, v.bridge.as_str());
                if !enslaved {
                    out.vxlans.push(KernelOp::SetMaster {
                        name: l.name.clone(),
                        master: v.bridge.to_string(),
                    });
                }
                if l.mtu != Some(self.vxlan_mtu) {
                    out.vxlans.push(KernelOp::SetMtu {
                        name: l.name.clone(),
                        mtu: self.vxlan_mtu,
                    });
                }
                if !l.up {
                    out.vxlans.push(KernelOp::SetUp { name: l.name.clone() });
                }
                let port_ok = l
                    .bridge_port
                    .as_ref()
                    .is_some_and(|p| p.learning == Some(false) && p.neigh_suppress == Some(true));
                if !enslaved || !port_ok {
                    out.vxlans.push(KernelOp::SetPortFlags { name: l.name.clone() });
                }
            }
            existing => {
                if let Some(l) = existing {
                    out.delete(l);
                }
                out.fresh.insert(v.vxlan.to_string());
                out.vxlans.push(KernelOp::CreateVxlan {
                    name: v.vxlan.clone(),
                    vni: v.vni,
                    local: self.vtep,
                    mtu: self.vxlan_mtu,
                    bridge: v.bridge.clone(),
                });
                out.vxlans.push(KernelOp::SetPortFlags {
                    name: v.vxlan.to_string(),
                });
            }
        }
    }

    /// Only where the value is known and wrong (a device created in this pass is looked at in
    /// the next round of the same pass).
    fn sysctl_ops(&self, sysctls: &BTreeMap<String, String>) -> Vec<KernelOp> {
        let mut out = Vec::new();
        for key in self.sysctl_keys() {
            let want = if key.ends_with("/rp_filter") {
                // 1 = strict; 0 (off) and 2 (loose) both let the VRF traffic through
                match sysctls.get(&key).map(String::as_str) {
                    Some("1") => Some("2"),
                    _ => None,
                }
            } else {
                match sysctls.get(&key).map(String::as_str) {
                    Some("1") | None => None,
                    Some(_) => Some("1"),
                }
            };
            if let Some(value) = want {
                out.push(KernelOp::WriteSysctl {
                    key,
                    value: value.to_string(),
                });
            }
        }
        out
    }

    /// (deletes, replaces): owned routes nobody wants go (not in a protected table, nor in a
    /// table a foreign VRF uses); a desired route missing or pointing elsewhere is replaced.
    fn route_ops(
        &self,
        observed: &Observed,
        fresh: &BTreeSet<String>,
        protected: &Protected,
    ) -> (Vec<KernelOp>, Vec<KernelOp>) {
        let desired_routes = self.desired_routes();
        let index_of = |name: &str| {
            if fresh.contains(name) {
                None
            } else {
                observed.link(name).map(|l| l.index)
            }
        };
        let satisfied = |spec: &RouteSpec, r: &super::Route| {
            r.table == spec.table
                && r.dst == spec.dst
                && r.metric == spec.metric
                && match &spec.target {
                    RouteTarget::Dev(dev) => {
                        r.kind == RouteKind::Unicast
                            && r.gateway.is_none()
                            && r.oif.is_some()
                            && r.oif == index_of(dev)
                    }
                    RouteTarget::Via { gateway, dev } => {
                        r.kind == RouteKind::Unicast
                            && r.gateway == Some(*gateway)
                            && r.oif.is_some()
                            && r.oif == index_of(dev)
                    }
                }
        };
        let desired_keys: HashSet<(u32, Prefix, u32)> = desired_routes
            .iter()
            .map(|s| (s.table, s.dst, s.metric))
            .collect();
        // a foreign VRF on a table of the agent's range: that table is not the agent's
        let foreign_tables: HashSet<u32> = observed
            .state
            .links
            .iter()
            .filter(|l| !l.owned())
            .filter_map(|l| match l.kind {
                LinkKind::Vrf { table } => Some(table),
                _ => None,
            })
            .collect();
        let mut deletes = Vec::new();
        let mut owned_routes: HashMap<(u32, Prefix, u32), Vec<&Route>> = HashMap::new();
        for r in observed
            .state
            .routes
            .iter()
            .filter(|r| r.owned() && !foreign_tables.contains(&r.table))
        {
            if !desired_keys.contains(&(r.table, r.dst, r.metric)) && !protected.tables.contains(&r.table) {
                deletes.push(KernelOp::DeleteRoute(r.clone()));
            }
            owned_routes
                .entry((r.table, r.dst, r.metric))
                .or_default()
                .push(r);
        }
        let replaces = desired_routes
            .into_iter()
            .filter(|spec| {
                !owned_routes
                    .get(&(spec.table, spec.dst, spec.metric))
                    .is_some_and(|rs| rs.iter().any(|r| satisfied(spec, r)))
            })
            .map(KernelOp::ReplaceRoute)
            .collect();
        (deletes, replaces)
    }

    /// (deletes, adds): each observed owned rule takes one equal desired rule; the rest are
    /// deleted unless they belong to a protected VRF.
    fn rule_ops(&self, observed: &Observed, protected: &Protected) -> (Vec<KernelOp>, Vec<KernelOp>) {
        let desired_rules = self.desired_rules();
        let mut unmatched: HashMap<Rule, Vec<usize>> = HashMap::new();
        for (i, spec) in desired_rules.iter().enumerate().rev() {
            unmatched.entry(spec.to_rule()).or_default().push(i);
        }
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let mut deletes = Vec::new();
        for r in observed.state.rules.iter().filter(|r| r.owned()) {
            match unmatched.get_mut(r).and_then(Vec::pop) {
                Some(i) => {
                    seen.insert(i);
                }
                _ if protected.tables.contains(&r.table) => {}
                _ if r
                    .iif
                    .as_ref()
                    .or(r.oif.as_ref())
                    .is_some_and(|n| protected.links.contains(n)) => {}
                _ => deletes.push(KernelOp::DeleteRule(r.clone())),
            }
        }
        let adds = desired_rules
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !seen.contains(i))
            .map(|(_, spec)| KernelOp::AddRule(spec))
            .collect();
        (deletes, adds)
    }
}

/// Links, routes and rules of conflicted VRFs: left as they are.
#[derive(Default)]
struct Protected {
    links: BTreeSet<String>,
    tables: BTreeSet<u32>,
}

/// The link writes of a plan, by kind.
#[derive(Default)]
struct LinkOps {
    /// Deletes, with their order: devices stacked on others go first.
    deletes: Vec<(u8, KernelOp)>,
    vrfs: Vec<KernelOp>,
    bridges: Vec<KernelOp>,
    vxlans: Vec<KernelOp>,
    /// Names (re)created by this plan: their observed index is stale or absent.
    fresh: BTreeSet<String>,
}

impl LinkOps {
    fn delete(&mut self, l: &Link) {
        let order = match l.kind {
            LinkKind::Vxlan(_) => 0,
            LinkKind::Bridge { .. } => 1,
            LinkKind::Vrf { .. } => 2,
            LinkKind::Other(_) => 3,
        };
        self.deletes.push((
            order,
            KernelOp::DeleteLink {
                name: l.name.clone(),
                index: l.index,
                kind: l.kind.label().to_string(),
            },
        ));
    }

    /// Whether `l`'s master is `master` as observed (never for a master made in this plan).
    fn master_is(&self, observed: &Observed, l: &Link, master: &str) -> bool {
        !self.fresh.contains(master) && observed.link(master).is_some_and(|m| l.master == Some(m.index))
    }
}
