//! The typed model of one node's EVPN state, shared by the operator and the agent: the values
//! an [`EvpnNodeStateSpec`] carries, parsed once. A VRF name is an [`IfName`] (15 bytes of
//! `[A-Za-z0-9_.-]`), addresses are [`IpAddr`]s, route targets and distinguishers are
//! [`RtRd`]s. Everything later stages render (kernel names, FRR lines) comes from these typed
//! values, never from raw spec strings.
//!
//! The CRD structs of [`crate::node_state`] are the wire format, converted at two doors:
//! `NodeModel::try_from(&spec)` parses a spec once ([`ParsedNodeState`]: every field checked and
//! typed, every finding collected, per L3 VNI where a VNI is refused on its own), and
//! `EvpnNodeStateSpec::from(&model)` writes one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::schema::{MAX_ROUTE_TARGETS, MAX_STATUS_ITEMS, VNI_MAX, VNI_MIN};
use crate::validate::{Cidr, RouteTargetOrDistinguisher, ValidationErrors, parse_rt_list, parse_rt_rd};
use crate::{Endpoint, EvpnNodeState, EvpnNodeStateSpec, L3Vni, Neighbor, RoutedPrefix, Underlay};

/// Prefixes of the names the agent derives for its own bridge and VXLAN devices; refused as VRF
/// names.
pub const BRIDGE_PREFIX: &str = "bvbr-";
pub const VXLAN_PREFIX: &str = "bvvx-";

/// Why a spec cannot become a [`NodeModel`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// (The field errors are in the message, not repeated as a `source`.)
    #[error("invalid EVPNNodeState spec: {0}")]
    Invalid(ValidationErrors),
    #[error("spec.l3vnis[{index}].vrf: {name:?} {reason}")]
    ReservedVrfName {
        index: usize,
        name: String,
        reason: &'static str,
    },
}

impl From<ValidationErrors> for ModelError {
    fn from(e: ValidationErrors) -> Self {
        ModelError::Invalid(e)
    }
}

/// A Linux interface name that is safe to use anywhere: 1..15 bytes of `[A-Za-z0-9_.-]`,
/// not `.` or `..`. The only way to get one is [`IfName::new`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    pub fn new(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a valid interface name (1..15 of [A-Za-z0-9_.-])"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IP prefix without host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// The host prefix of one address (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.len))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.len == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.len))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A parsed route target or route distinguisher; (de)serialized as its canonical text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RtRd(pub RouteTargetOrDistinguisher);

impl RtRd {
    /// Parses `ASN2:nn4`, `IPv4:nn2` or `ASN4:nn2` (see [`parse_rt_rd`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        parse_rt_rd(s).map(Self)
    }
}

impl std::str::FromStr for RtRd {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl TryFrom<String> for RtRd {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<RtRd> for String {
    fn from(r: RtRd) -> String {
        r.0.to_string()
    }
}

impl fmt::Display for RtRd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A BGP peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Peer {
    Address(IpAddr),
    /// BGP unnumbered over this interface.
    Interface(IfName),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborModel {
    pub peer: Peer,
    pub remote_asn: u32,
    pub bfd: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayModel {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub vtep_ip: IpAddr,
    pub neighbors: Vec<NeighborModel>,
    /// IPv4 unicast with the neighbours (see `Underlay::ipv4_unicast`).
    pub ipv4_unicast: bool,
}

/// A local pod in a VRF.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointModel {
    pub ip: IpAddr,
    /// Host-side interface; `None`: the interface of the pod's main-table route.
    pub interface: Option<IfName>,
    /// `namespace/name`, for status and logs only (never rendered into FRR or netlink).
    pub pod: Option<String>,
    /// Who holds the address (see `Endpoint::holder`); never rendered.
    #[serde(default)]
    pub holder: Option<String>,
}

/// A prefix in a VRF, routed via `next_hop` when set, and advertised.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PrefixModel {
    pub prefix: Prefix,
    pub next_hop: Option<IpAddr>,
}

/// One L3 VNI on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrfModel {
    pub name: IfName,
    pub vni: u32,
    /// The BGPVPN it comes from, for status only.
    pub bgpvpn: String,
    pub import_targets: Vec<RtRd>,
    pub export_targets: Vec<RtRd>,
    pub rd: RtRd,
    pub local_pref: Option<u32>,
    pub endpoints: Vec<EndpointModel>,
    pub prefixes: Vec<PrefixModel>,
}

impl VrfModel {
    pub fn has_ipv6(&self) -> bool {
        self.endpoints.iter().any(|e| e.ip.is_ipv6()) || self.prefixes.iter().any(|p| !p.prefix.is_ipv4())
    }

    /// Prefixes announced with `network`: every endpoint's host prefix and every prefix.
    pub fn announced(&self) -> BTreeSet<Prefix> {
        self.endpoints
            .iter()
            .map(|e| Prefix::host(e.ip))
            .chain(self.prefixes.iter().map(|p| p.prefix))
            .collect()
    }
}

/// An L3 VNI of the spec that is not applied as written, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    pub vni: u32,
    pub vrf: String,
    pub bgpvpn: String,
    pub reason: String,
    /// The node keeps running the last accepted version of this VNI.
    #[serde(default)]
    pub kept_running: bool,
}

/// The EVPN state of one node, typed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeModel {
    pub underlay: UnderlayModel,
    /// Sorted by VRF name.
    pub vrfs: Vec<VrfModel>,
    /// `metadata.generation` of the object this came from, if any.
    pub generation: Option<i64>,
    /// VNIs of the spec refused on their own; every other VNI is applied.
    #[serde(default)]
    pub held_back: Vec<HeldBack>,
}

impl NodeModel {
    /// Keeps the last accepted version (from `last`) of every held-back VNI that is still
    /// free beside this state's VNIs: a tenant's bad update never tears down what runs.
    pub fn keep_held_back_from(&mut self, last: &NodeModel) {
        for h in &mut self.held_back {
            let Some(old) = last.vrfs.iter().find(|v| v.vni == h.vni) else {
                continue;
            };
            let clash = self.vrfs.iter().any(|v| {
                v.name == old.name
                    || v.rd == old.rd
                    || v.vni == old.vni
                    || v.endpoints
                        .iter()
                        .any(|e| old.endpoints.iter().any(|o| o.ip == e.ip))
            });
            if !clash {
                self.vrfs.push(old.clone());
                h.kept_running = true;
            }
        }
        self.vrfs.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn vrf(&self, name: &IfName) -> Option<&VrfModel> {
        self.vrfs.iter().find(|v| &v.name == name)
    }
}

pub fn check_vrf_name(index: usize, name: &IfName) -> Result<(), ModelError> {
    let s = name.as_str();
    let reason = if s.starts_with(BRIDGE_PREFIX) || s.starts_with(VXLAN_PREFIX) {
        Some("starts with a prefix the agent uses for its own bridge/VXLAN devices")
    } else if s == "default" || s == "lo" {
        Some("is reserved (FRR's default VRF / the loopback device)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ModelError::ReservedVrfName {
            index,
            name: s.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

impl TryFrom<&EvpnNodeStateSpec> for NodeModel {
    type Error = ModelError;

    /// The door from the wire: [`ParsedNodeState`], once. Nothing that fails here reaches
    /// netlink or frr.conf. An underlay finding refuses the whole spec; an L3 VNI with a finding
    /// (or a reserved VRF name, see [`check_vrf_name`]) is left out and listed in `held_back`,
    /// the others are taken.
    fn try_from(spec: &EvpnNodeStateSpec) -> Result<Self, ModelError> {
        let parsed = ParsedNodeState::new(spec);
        let underlay = parsed.underlay.map_err(ModelError::Invalid)?;
        let held = |v: &L3Vni, reason: String| HeldBack {
            vni: v.vni,
            vrf: v.vrf.clone(),
            bgpvpn: v.bgpvpn.clone(),
            reason,
            kept_running: false,
        };
        let (mut vrfs, mut held_back, mut reserved) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (v, parsed)) in spec.l3vnis.iter().zip(parsed.l3vnis).enumerate() {
            match parsed {
                Err(why) => held_back.push(held(v, why.to_string())),
                Ok(vrf) => match check_vrf_name(i, &vrf.name) {
                    Err(e) => reserved.push(held(v, e.to_string())),
                    Ok(()) => vrfs.push(vrf),
                },
            }
        }
        held_back.extend(reserved);
        vrfs.sort_by(|a, b| a.name.cmp(&b.name));
        held_back.sort_by_key(|h| h.vni);
        Ok(Self {
            underlay,
            vrfs,
            generation: None,
            held_back,
        })
    }
}

impl TryFrom<&EvpnNodeState> for NodeModel {
    type Error = ModelError;

    /// The spec of the object, with its `metadata.generation`.
    fn try_from(obj: &EvpnNodeState) -> Result<Self, ModelError> {
        let mut model = NodeModel::try_from(&obj.spec)?;
        model.generation = obj.metadata.generation;
        Ok(model)
    }
}

/// The door to the wire. `l3vnis` come in the model's order (by VRF name); `generation` and
/// `held_back` are not part of a spec.
impl From<&NodeModel> for EvpnNodeStateSpec {
    fn from(m: &NodeModel) -> Self {
        EvpnNodeStateSpec {
            underlay: Underlay::from(&m.underlay),
            l3vnis: m.vrfs.iter().map(L3Vni::from).collect(),
        }
    }
}

impl From<&UnderlayModel> for Underlay {
    fn from(u: &UnderlayModel) -> Self {
        Underlay {
            asn: u.asn,
            router_id: u.router_id.to_string(),
            vtep_ip: u.vtep_ip.to_string(),
            neighbors: u.neighbors.iter().map(Neighbor::from).collect(),
            ipv4_unicast: u.ipv4_unicast,
        }
    }
}

impl From<&NeighborModel> for Neighbor {
    fn from(n: &NeighborModel) -> Self {
        let (address, interface) = match &n.peer {
            Peer::Address(ip) => (Some(ip.to_string()), None),
            Peer::Interface(name) => (None, Some(name.to_string())),
        };
        Neighbor {
            address,
            interface,
            remote_asn: n.remote_asn,
            bfd: n.bfd,
        }
    }
}

impl From<&VrfModel> for L3Vni {
    fn from(v: &VrfModel) -> Self {
        let strings = |list: &[RtRd]| list.iter().map(RtRd::to_string).collect();
        L3Vni {
            bgpvpn: v.bgpvpn.clone(),
            vni: v.vni,
            vrf: v.name.to_string(),
            import_targets: strings(&v.import_targets),
            export_targets: strings(&v.export_targets),
            route_distinguisher: v.rd.to_string(),
            local_pref: v.local_pref,
            endpoints: v
                .endpoints
                .iter()
                .map(|e| Endpoint {
                    ip: e.ip.to_string(),
                    interface: e.interface.as_ref().map(IfName::to_string),
                    pod: e.pod.clone(),
                    holder: e.holder.clone(),
                })
                .collect(),
            prefixes: v
                .prefixes
                .iter()
                .map(|p| RoutedPrefix {
                    prefix: p.prefix.to_string(),
                    next_hop: p.next_hop.map(|ip| ip.to_string()),
                })
                .collect(),
        }
    }
}

/// What is wrong with one EVPNNodeState spec, split by what it stops: an underlay finding
/// stops the whole object (there is no node without it), an L3 VNI finding only that VNI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStateFindings {
    pub underlay: ValidationErrors,
    /// By index into `spec.l3vnis`.
    pub l3vnis: BTreeMap<usize, ValidationErrors>,
}

impl NodeStateFindings {
    pub fn is_empty(&self) -> bool {
        self.underlay.0.is_empty() && self.l3vnis.values().all(|e| e.0.is_empty())
    }

    /// Every finding in one list.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        let mut all = self.underlay;
        for (_, e) in self.l3vnis {
            all.0.extend(e.0);
        }
        all.into_result(())
    }
}

/// The one parse of an EVPNNodeState spec: every field is checked and typed once, and every
/// finding is collected (so a user fixes them in one go). Besides syntax: nothing FRR or the
/// kernel would refuse, and nothing that would route or announce what is not a tenant's (the
/// node's own addresses, reserved ranges, a next hop of the other family). A value repeated
/// across VNIs (VNI, VRF, RD, endpoint) is charged to the later VNI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedNodeState {
    /// The underlay, or the findings that stop the whole object (the underlay's, and a list
    /// longer than the schema allows).
    pub underlay: Result<UnderlayModel, ValidationErrors>,
    /// By index into `spec.l3vnis`: the VNI, or its findings, which stop only that VNI.
    pub l3vnis: Vec<Result<VrfModel, ValidationErrors>>,
}

impl ParsedNodeState {
    pub fn new(spec: &EvpnNodeStateSpec) -> Self {
        let mut errors = ValidationErrors::default();
        let u = &spec.underlay;
        check_asn(&mut errors, "spec.underlay.asn", u.asn);
        let router_id = u.router_id.parse::<Ipv4Addr>().ok();
        match router_id {
            None => errors.push(
                "spec.underlay.routerId",
                format!("{:?} is not an IPv4 address", u.router_id),
            ),
            Some(id) if id.is_unspecified() || id.is_multicast() || id.is_broadcast() => errors.push(
                "spec.underlay.routerId",
                format!("{id} cannot be a BGP router id"),
            ),
            Some(_) => {}
        }
        let vtep = u.vtep_ip.parse::<IpAddr>().ok();
        match vtep {
            None => errors.push(
                "spec.underlay.vtepIp",
                format!("{:?} is not an IP address", u.vtep_ip),
            ),
            Some(ip) => {
                if let Err(why) = check_vtep(ip) {
                    errors.push("spec.underlay.vtepIp", why);
                }
            }
        }
        let own: BTreeSet<IpAddr> = vtep.into_iter().chain(router_id.map(IpAddr::V4)).collect();
        let (neighbors, peers) = parse_neighbors(&mut errors, "spec.underlay.neighbors", &u.neighbors, &own);
        // the schema's item limits: an object past them is refused whole by the API server
        too_many(&mut errors, "spec.l3vnis", spec.l3vnis.len());
        let underlay = match (router_id, vtep) {
            (Some(router_id), Some(vtep_ip)) if errors.0.is_empty() => Ok(UnderlayModel {
                asn: u.asn,
                router_id,
                vtep_ip,
                neighbors,
                ipv4_unicast: u.ipv4_unicast,
            }),
            _ => Err(errors),
        };
        let mut seen = Seen::default();
        let l3vnis = spec
            .l3vnis
            .iter()
            .enumerate()
            .map(|(i, v)| parse_l3vni(i, v, &own, &peers, &mut seen))
            .collect();
        ParsedNodeState { underlay, l3vnis }
    }

    /// The findings alone, by what they stop.
    pub fn into_findings(self) -> NodeStateFindings {
        NodeStateFindings {
            underlay: self.underlay.err().unwrap_or_default(),
            l3vnis: self
                .l3vnis
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.err().map(|e| (i, e)))
                .collect(),
        }
    }
}

impl UnderlayModel {
    /// Checks the AS number and the BGP peers an underlay is given before any node's own
    /// addresses are known (the operator's configuration, shared by every node): every rule of
    /// [`ParsedNodeState`] for them but the one against the node's own addresses. `field` is
    /// the path of the underlay, e.g. `underlay`.
    pub fn check_peering(
        field: &str,
        asn: u32,
        neighbors: &[Neighbor],
    ) -> Result<Vec<NeighborModel>, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        check_asn(&mut errors, &format!("{field}.asn"), asn);
        let (neighbors, _) = parse_neighbors(
            &mut errors,
            &format!("{field}.neighbors"),
            neighbors,
            &BTreeSet::new(),
        );
        errors.into_result(neighbors)
    }
}

/// Whether `ip` can be this node's VXLAN source (VTEP).
pub fn check_vtep(ip: IpAddr) -> Result<(), String> {
    if let Some(why) = unusable_address(ip) {
        return Err(format!("{ip} cannot be a VXLAN source: {why}"));
    }
    if ip.is_ipv6() {
        // measured in the node guest: zebra showed the VNI's local VTEP as 0.0.0.0, bgpd
        // announced the type-5 routes with the IPv4 router id as next hop, and no packet passed
        return Err(format!(
            "{ip}: an IPv6 VTEP is not supported: FRR 10.3's EVPN takes no IPv6 VXLAN source \
             (the BGP sessions may run over IPv6; the VTEP must be IPv4)"
        ));
    }
    Ok(())
}

/// Why an address can never be a pod, a next hop, a VTEP or a peer: unspecified, loopback,
/// link-local, multicast or broadcast.
pub fn unusable_address(ip: IpAddr) -> Option<String> {
    Cidr::host(ip)
        .never_advertised()
        .map(|why| why.replace("overlaps the", "in the"))
}

fn check_asn(errors: &mut ValidationErrors, field: &str, asn: u32) {
    if asn == 0 {
        errors.push(field, "0 is not a valid AS number");
    }
}

fn too_many(errors: &mut ValidationErrors, field: &str, n: usize) {
    if n > MAX_STATUS_ITEMS as usize {
        errors.push(field, format!("at most {MAX_STATUS_ITEMS} entries, got {n}"));
    }
}

/// The BGP peers of an underlay (`field` is the path of the list), and the addresses among
/// them. A peer may not be one of the node's `own` addresses.
fn parse_neighbors(
    errors: &mut ValidationErrors,
    field: &str,
    neighbors: &[Neighbor],
    own: &BTreeSet<IpAddr>,
) -> (Vec<NeighborModel>, BTreeSet<IpAddr>) {
    let mut peers = BTreeSet::new();
    let mut out = Vec::with_capacity(neighbors.len());
    for (i, n) in neighbors.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let peer = match (&n.address, &n.interface) {
            (Some(a), None) => match a.parse::<IpAddr>() {
                Err(_) => {
                    errors.push(format!("{f}.address"), format!("{a:?} is not an IP address"));
                    None
                }
                Ok(ip) if own.contains(&ip) => {
                    errors.push(
                        format!("{f}.address"),
                        format!("{ip} is this node itself (its VTEP or router id)"),
                    );
                    None
                }
                Ok(ip) => {
                    if let Some(why) = unusable_address(ip) {
                        errors.push(
                            format!("{f}.address"),
                            format!("{ip} cannot be a BGP peer: {why}"),
                        );
                    }
                    if !peers.insert(ip) {
                        errors.push(format!("{f}.address"), format!("{ip} appears twice"));
                    }
                    Some(Peer::Address(ip))
                }
            },
            (None, Some(ifname)) => IfName::new(ifname)
                .map_err(|e| errors.push(format!("{f}.interface"), e))
                .ok()
                .map(Peer::Interface),
            _ => {
                errors.push(&f, "exactly one of address and interface is required");
                None
            }
        };
        check_asn(errors, &format!("{f}.remoteAsn"), n.remote_asn);
        if let Some(peer) = peer {
            out.push(NeighborModel {
                peer,
                remote_asn: n.remote_asn,
                bfd: n.bfd,
            });
        }
    }
    (out, peers)
}

/// Values already taken by the earlier L3 VNIs of a spec.
#[derive(Default)]
struct Seen<'a> {
    vnis: BTreeSet<u32>,
    vrfs: BTreeSet<&'a str>,
    rds: BTreeSet<RtRd>,
    endpoint_ips: BTreeSet<IpAddr>,
}

/// One L3 VNI (index `i`) of a spec; `own` and `peers` are the underlay's addresses.
fn parse_l3vni<'a>(
    i: usize,
    v: &'a L3Vni,
    own: &BTreeSet<IpAddr>,
    peers: &BTreeSet<IpAddr>,
    seen: &mut Seen<'a>,
) -> Result<VrfModel, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let errors = &mut errors;
    let f = format!("spec.l3vnis[{i}]");
    too_many(errors, &format!("{f}.endpoints"), v.endpoints.len());
    too_many(errors, &format!("{f}.prefixes"), v.prefixes.len());
    if !(VNI_MIN..=VNI_MAX).contains(&v.vni) {
        errors.push(
            format!("{f}.vni"),
            format!("{} is outside {VNI_MIN}..{VNI_MAX}", v.vni),
        );
    }
    if !seen.vnis.insert(v.vni) {
        errors.push(format!("{f}.vni"), format!("VNI {} appears twice", v.vni));
    }
    let name = IfName::new(&v.vrf)
        .map_err(|e| errors.push(format!("{f}.vrf"), e))
        .ok();
    if !seen.vrfs.insert(v.vrf.as_str()) {
        errors.push(format!("{f}.vrf"), format!("VRF {} appears twice", v.vrf));
    }
    let [import_targets, export_targets] = [
        ("importTargets", &v.import_targets),
        ("exportTargets", &v.export_targets),
    ]
    .map(|(field, list)| {
        if list.is_empty() {
            errors.push(format!("{f}.{field}"), "at least one route target is needed");
        }
        let mut rts = parse_rt_list(errors, &format!("{f}.{field}"), list, MAX_ROUTE_TARGETS);
        rts.sort();
        rts.dedup();
        rts
    });
    let rd = match RtRd::parse(&v.route_distinguisher) {
        Ok(rd) if !seen.rds.insert(rd) => {
            errors.push(
                format!("{f}.routeDistinguisher"),
                format!("RD {rd} is used by two VRFs"),
            );
            None
        }
        Ok(rd) => Some(rd),
        Err(e) => {
            errors.push(format!("{f}.routeDistinguisher"), e);
            None
        }
    };
    let mut endpoints = parse_endpoints(errors, &f, v, own, peers, &mut seen.endpoint_ips);
    let mut prefixes = parse_prefixes(errors, &f, v, own);
    match (name, rd) {
        (Some(name), Some(rd)) if errors.0.is_empty() => {
            endpoints.sort();
            endpoints.dedup_by(|a, b| a.ip == b.ip);
            prefixes.sort();
            prefixes.dedup_by(|a, b| a.prefix == b.prefix);
            Ok(VrfModel {
                name,
                vni: v.vni,
                bgpvpn: v.bgpvpn.clone(),
                import_targets,
                export_targets,
                rd,
                local_pref: v.local_pref,
                endpoints,
                prefixes,
            })
        }
        _ => Err(std::mem::take(errors)),
    }
}

/// The endpoints of L3 VNI `f` (its path); `own` and `peers` are the underlay's addresses,
/// `taken` the endpoint addresses of the earlier VNIs.
fn parse_endpoints(
    errors: &mut ValidationErrors,
    f: &str,
    v: &L3Vni,
    own: &BTreeSet<IpAddr>,
    peers: &BTreeSet<IpAddr>,
    taken: &mut BTreeSet<IpAddr>,
) -> Vec<EndpointModel> {
    let mut endpoints = Vec::with_capacity(v.endpoints.len());
    for (j, ep) in v.endpoints.iter().enumerate() {
        let field = format!("{f}.endpoints[{j}].ip");
        let ip = match ep.ip.parse::<IpAddr>() {
            Err(_) => {
                errors.push(field, format!("{:?} is not an IP address", ep.ip));
                None
            }
            Ok(ip) => {
                if let Some(why) = unusable_address(ip) {
                    errors.push(&field, format!("{ip} cannot be a pod address: {why}"));
                } else if own.contains(&ip) || peers.contains(&ip) {
                    errors.push(
                        &field,
                        format!("{ip} is an underlay address (this node's VTEP or router id, or a BGP peer)"),
                    );
                }
                // one pod IP in two VRFs would need two policy rules for the same source
                if !taken.insert(ip) {
                    errors.push(&field, format!("{ip} is an endpoint of two VNIs"));
                }
                Some(ip)
            }
        };
        let interface = match ep.interface.as_deref().map(IfName::new).transpose() {
            Ok(interface) => Some(interface),
            Err(e) => {
                errors.push(format!("{f}.endpoints[{j}].interface"), e);
                None
            }
        };
        if let (Some(ip), Some(interface)) = (ip, interface) {
            endpoints.push(EndpointModel {
                ip,
                interface,
                pod: ep.pod.clone(),
                holder: ep.holder.clone(),
            });
        }
    }
    endpoints
}

/// The prefixes of L3 VNI `f` (its path); `own` are the node's own addresses.
fn parse_prefixes(
    errors: &mut ValidationErrors,
    f: &str,
    v: &L3Vni,
    own: &BTreeSet<IpAddr>,
) -> Vec<PrefixModel> {
    let mut prefixes = Vec::with_capacity(v.prefixes.len());
    for (j, p) in v.prefixes.iter().enumerate() {
        let prefix = match Cidr::parse(&p.prefix) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(format!("{f}.prefixes[{j}].prefix"), e);
                None
            }
        };
        if let Some(why) = prefix.and_then(|c| c.never_advertised()) {
            errors.push(
                format!("{f}.prefixes[{j}].prefix"),
                format!("{} is never routed or announced: {why}", p.prefix),
            );
        }
        let next_hop = match &p.next_hop {
            None => Some(None),
            Some(nh) => {
                let field = format!("{f}.prefixes[{j}].nextHop");
                match nh.parse::<IpAddr>() {
                    Err(_) => {
                        errors.push(field, format!("{nh:?} is not an IP address"));
                        None
                    }
                    Ok(ip) => {
                        if prefix.is_some_and(|c| c.addr.is_ipv4() != ip.is_ipv4()) {
                            errors.push(
                                &field,
                                format!("{ip} is not of the address family of {}", p.prefix),
                            );
                        }
                        if let Some(why) = unusable_address(ip) {
                            errors.push(&field, format!("{ip} cannot be a next hop: {why}"));
                        } else if own.contains(&ip) {
                            errors.push(&field, format!("{ip} is this node's own underlay address"));
                        }
                        Some(Some(ip))
                    }
                }
            }
        };
        if let (Some(c), Some(next_hop)) = (prefix, next_hop) {
            prefixes.push(PrefixModel {
                prefix: Prefix {
                    addr: c.addr,
                    len: c.len,
                },
                next_hop,
            });
        }
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_contains() {
        let p = Prefix {
            addr: "10.1.0.0".parse().unwrap(),
            len: 16,
        };
        assert!(p.contains("10.1.2.3".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        let all = Prefix {
            addr: "0.0.0.0".parse().unwrap(),
            len: 0,
        };
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
    }

    /// The findings of the one parse.
    fn check_node_state(spec: &EvpnNodeStateSpec) -> NodeStateFindings {
        ParsedNodeState::new(spec).into_findings()
    }

    /// Every finding of the one parse as one result.
    fn validate_node_state(spec: &EvpnNodeStateSpec) -> Result<(), ValidationErrors> {
        check_node_state(spec).into_result()
    }

    fn node() -> EvpnNodeStateSpec {
        EvpnNodeStateSpec {
            underlay: Underlay {
                asn: 65001,
                router_id: "172.30.0.1".into(),
                vtep_ip: "172.30.0.1".into(),
                neighbors: vec![Neighbor {
                    address: Some("172.30.0.2".into()),
                    interface: None,
                    remote_asn: 64999,
                    bfd: false,
                }],
                ipv4_unicast: false,
            },
            l3vnis: vec![L3Vni {
                bgpvpn: "vpn-a".into(),
                vni: 1001,
                vrf: "vrf-1001".into(),
                import_targets: vec!["65000:1001".into()],
                export_targets: vec!["65000:1001".into()],
                route_distinguisher: "172.30.0.1:1001".into(),
                local_pref: None,
                endpoints: vec![Endpoint {
                    ip: "10.0.0.84".into(),
                    interface: None,
                    pod: Some("demo/web".into()),
                    holder: None,
                }],
                prefixes: vec![],
            }],
        }
    }

    #[test]
    fn node_state_rules() {
        assert!(validate_node_state(&node()).is_ok());
        let mut s = node();
        s.l3vnis.push(s.l3vnis[0].clone());
        let err = validate_node_state(&s).unwrap_err().to_string();
        assert!(
            err.contains("appears twice") && err.contains("used by two VRFs") && err.contains("two VNIs"),
            "{err}"
        );
        let mut s = node();
        s.l3vnis[0].vrf = "vrf-with-a-very-long-name".into();
        s.l3vnis[0].import_targets.clear();
        s.underlay.neighbors[0].interface = Some("eth0".into());
        let err = validate_node_state(&s).unwrap_err().to_string();
        assert!(
            err.contains(".vrf") && err.contains("importTargets") && err.contains("exactly one of address"),
            "{err}"
        );
    }

    #[test]
    fn dangerous_values_are_findings_of_their_own_vni_or_of_the_underlay() {
        let bad_vni = |edit: fn(&mut L3Vni)| {
            let mut s = node();
            let mut other = s.l3vnis[0].clone();
            (other.vni, other.vrf, other.route_distinguisher) =
                (1003, "vrf-1003".into(), "172.30.0.1:1003".into());
            other.endpoints[0].ip = "10.0.0.85".into();
            edit(&mut other);
            s.l3vnis.push(other);
            let f = check_node_state(&s);
            assert!(f.underlay.0.is_empty() && !f.l3vnis.contains_key(&0), "{f:?}");
            f.l3vnis.get(&1).map(|e| e.to_string()).unwrap_or_default()
        };
        for (edit, want) in [
            (
                (|v: &mut L3Vni| {
                    v.prefixes = vec![crate::RoutedPrefix {
                        prefix: "fe80::/64".into(),
                        next_hop: None,
                    }]
                }) as fn(&mut L3Vni),
                "link-local",
            ),
            (
                |v| {
                    v.prefixes = vec![crate::RoutedPrefix {
                        prefix: "0.0.0.0/0".into(),
                        next_hop: None,
                    }]
                },
                "default route",
            ),
            (
                |v| {
                    v.prefixes = vec![crate::RoutedPrefix {
                        prefix: "10.9.0.0/24".into(),
                        next_hop: Some("fd00::1".into()),
                    }]
                },
                "address family",
            ),
            (|v| v.endpoints[0].ip = "172.30.0.1".into(), "underlay address"),
            (|v| v.endpoints[0].ip = "172.30.0.2".into(), "underlay address"),
            (|v| v.endpoints[0].ip = "127.0.0.1".into(), "loopback"),
            (|v| v.endpoints[0].ip = "224.0.0.5".into(), "multicast"),
            (|v| v.endpoints[0].ip = "10.0.0.84".into(), "two VNIs"),
            (|v| v.import_targets = vec!["0:0".into()], "reserved"),
            (
                |v| v.route_distinguisher = "0.0.0.0:7".into(),
                "not an administrator",
            ),
            (
                |v| v.route_distinguisher = "172.30.0.1:1001".into(),
                "used by two VRFs",
            ),
        ] {
            let found = bad_vni(edit);
            assert!(found.contains(want), "want {want:?}: {found:?}");
        }
        for (edit, want) in [
            (
                (|s: &mut EvpnNodeStateSpec| s.underlay.vtep_ip = "239.1.1.1".into())
                    as fn(&mut EvpnNodeStateSpec),
                "multicast",
            ),
            (|s| s.underlay.vtep_ip = "0.0.0.0".into(), "unspecified"),
            (
                |s| s.underlay.vtep_ip = "fd00:30::1".into(),
                "an IPv6 VTEP is not supported",
            ),
            (
                |s| s.underlay.neighbors[0].address = Some("172.30.0.1".into()),
                "this node itself",
            ),
            (
                |s| s.underlay.neighbors[0].address = Some("0.0.0.0".into()),
                "unspecified",
            ),
            (|s| s.underlay.router_id = "0.0.0.0".into(), "router id"),
        ] {
            let mut s = node();
            edit(&mut s);
            let f = check_node_state(&s);
            assert!(f.underlay.to_string().contains(want), "want {want:?}: {f:?}");
        }
    }

    #[test]
    fn node_state_item_limits_of_the_schema() {
        let mut s = node();
        s.l3vnis[0].prefixes = (0..=MAX_STATUS_ITEMS)
            .map(|i| crate::RoutedPrefix {
                prefix: format!("10.{}.{}.0/24", i / 256, i % 256),
                next_hop: None,
            })
            .collect();
        let err = validate_node_state(&s).unwrap_err().to_string();
        assert!(
            err.contains("spec.l3vnis[0].prefixes: at most 4096 entries, got 4097"),
            "{err}"
        );
        s.l3vnis[0].prefixes.pop();
        assert!(validate_node_state(&s).is_ok());
    }

    #[test]
    fn one_parse_gives_the_model_and_per_vni_findings() {
        let mut s = node();
        let mut other = s.l3vnis[0].clone();
        (other.vni, other.vrf) = (1003, "vrf-1003".into());
        s.l3vnis.push(other);
        let parsed = ParsedNodeState::new(&s);
        assert!(parsed.underlay.is_ok() && parsed.l3vnis[0].is_ok(), "{parsed:?}");
        let why = parsed.l3vnis[1].as_ref().unwrap_err().to_string();
        assert!(
            why.contains("used by two VRFs") && why.contains("two VNIs"),
            "{why}"
        );
        let m = NodeModel::try_from(&s).unwrap();
        assert_eq!(m.vrfs.len(), 1);
        assert_eq!(
            (m.held_back[0].vni, m.held_back[0].reason.as_str()),
            (1003, why.as_str())
        );
        s.underlay.asn = 0;
        assert!(
            NodeModel::try_from(&s)
                .unwrap_err()
                .to_string()
                .contains("spec.underlay.asn")
        );
    }

    #[test]
    fn model_and_spec_round_trip() {
        let mut s = node();
        s.underlay.neighbors.push(Neighbor {
            address: None,
            interface: Some("eth1".into()),
            remote_asn: 65000,
            bfd: true,
        });
        s.l3vnis[0].local_pref = Some(200);
        s.l3vnis[0].endpoints[0].interface = Some("tap1".into());
        s.l3vnis[0].prefixes = vec![crate::RoutedPrefix {
            prefix: "10.9.0.0/24".into(),
            next_hop: Some("10.0.0.84".into()),
        }];
        let m = NodeModel::try_from(&s).unwrap();
        assert_eq!(EvpnNodeStateSpec::from(&m), s);
        assert_eq!(NodeModel::try_from(&EvpnNodeStateSpec::from(&m)).unwrap(), m);
    }

    #[test]
    fn peering_is_checked_without_the_nodes_addresses() {
        let n = |address: &str| Neighbor {
            address: Some(address.into()),
            interface: None,
            remote_asn: 65000,
            bfd: false,
        };
        assert_eq!(
            UnderlayModel::check_peering("underlay", 65001, &[n("172.30.0.2")])
                .unwrap()
                .len(),
            1
        );
        let err = UnderlayModel::check_peering("underlay", 0, &[n("nope"), n("10.0.0.1"), n("10.0.0.1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("underlay.asn")
                && err.contains("underlay.neighbors[0].address")
                && err.contains("underlay.neighbors[2].address: 10.0.0.1 appears twice"),
            "{err}"
        );
    }
}
