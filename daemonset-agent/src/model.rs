//! The typed desired state of one node, built only from a validated [`EvpnNodeStateSpec`].
//!
//! Everything later stages render (kernel names, table ids, MACs, FRR lines) comes from the
//! typed values here, never from raw spec strings: a VRF name is an [`IfName`] (15 bytes of
//! `[A-Za-z0-9_.-]`), addresses are parsed [`IpAddr`]s, route targets/distinguishers are parsed
//! [`RouteTargetOrDistinguisher`]s.
//!
//! ## Kernel names and ids (all derived, all deterministic)
//! * VRF device: the spec's `vrf` name. It is kept when the VNI changes (the VRF is moved).
//! * Every VRF has a *slot*: the VNI it was created for. The slot fixes its routing table
//!   ([`table_for_slot`]: `1_000_000_000 + slot`, far from the reserved tables 0 and 252-255 and
//!   from the small ids other software picks) and its bridge `bvbr-<slot>`. A VRF keeps its slot
//!   for its lifetime, because the kernel cannot change a VRF's table: after a move to another
//!   VNI the table still carries the old number.
//! * VXLAN device: `bvvx-<vni>`; it is swapped when the VRF moves to another VNI.
//! * Bridge MAC = EVPN router MAC: derived from the VTEP IP and the slot, locally administered,
//!   so it survives a VXLAN swap and differs between nodes.
//!
//! `bvbr-99999999` is the longest name the scheme can produce: 13 bytes, under the 15-byte limit
//! for every VNI up to 16777215 and for every overflow slot.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bgpvpn_crds::validate::{
    RouteTargetOrDistinguisher, ValidationErrors, check_node_state, parse_cidr, parse_rt_rd,
};
use bgpvpn_crds::{EvpnNodeState, EvpnNodeStateSpec};
use serde::{Deserialize, Serialize};

/// Routing table of slot `n` is `TABLE_BASE + n`.
pub const TABLE_BASE: u32 = 1_000_000_000;
/// Slots above the VNI range, used when a new VRF's own slot is held by a VRF that moved away.
pub const OVERFLOW_SLOT_BASE: u32 = 16_777_216;
/// Highest slot: keeps `bvbr-<slot>` at 13 bytes and the table below `u32::MAX`.
pub const MAX_SLOT: u32 = 99_999_999;
/// Ownership marker of every link the agent creates: the device group (`ip link show group
/// 1650946166`), set in the same RTM_NEWLINK that creates the device, so there is no window in
/// which an agent-made device is unmarked. Links are swept only when they carry it.
pub const LINK_GROUP: u32 = 0x6267_7076; // "bgpv"
/// Ownership marker of routes and rules: the rtnetlink protocol number (`proto 232`). Unused by
/// iproute2's rt_protos and by FRR (whose zebra imports such routes as `kernel` routes and never
/// sweeps them).
pub const ROUTE_PROTO: u8 = 232;
/// Priority of the per-VRF guard rules `iif <vrf's bridge> unreachable`, right after the
/// kernel's VRF `l3mdev` rule (1000): VPN traffic arriving in a VRF without a route in its table
/// stops there instead of falling through into the main table. (An `unreachable default` in the VRF table would do the
/// same for VRF traffic, but it also ends the pods' lookups: `suppress_prefixlength` is not
/// consulted for error routes, so a pod's non-VPN traffic would be dropped.)
pub const GUARD_PRIORITY: u32 = 1001;
/// Priority of the per-pod `from <pod> lookup <vrf table> suppress_prefixlength 0` rules: after
/// `local` (0), the VRF `l3mdev` rule (1000) and the guards, before `main` (32766). A pod's
/// traffic to a destination without a (non-default) route in the VRF table falls through to
/// main, so its cluster traffic is unchanged.
pub const RULE_PRIORITY: u32 = 2000;
/// VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Default MTU of the VXLAN device (1500-byte underlay minus 50 bytes of VXLAN/UDP/IP/Ethernet).
pub const DEFAULT_VXLAN_MTU: u32 = 1450;
/// Prefixes of the names the agent derives; refused as VRF names.
pub const BRIDGE_PREFIX: &str = "bvbr-";
pub const VXLAN_PREFIX: &str = "bvvx-";

/// Why a spec cannot become a desired state.
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
    #[error("reading state file {path}: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("parsing state file {path}: {message}")]
    ParseFile { path: String, message: String },
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

impl TryFrom<String> for RtRd {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_rt_rd(&s).map(Self)
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
    pub fn vxlan_name(&self) -> IfName {
        vxlan_name(self.vni)
    }

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

/// Settings of the node that are not in the spec (agent flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    pub vxlan_mtu: u32,
    /// VRFs and VNIs the node's own FRR configuration uses: a tenant VRF never takes them.
    pub frr_claims: crate::frr::claims::FrrClaims,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            vxlan_mtu: DEFAULT_VXLAN_MTU,
            frr_claims: Default::default(),
        }
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

/// The desired EVPN state of this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub underlay: UnderlayModel,
    /// Sorted by VRF name.
    pub vrfs: Vec<VrfModel>,
    /// `metadata.generation` of the object this came from, if any.
    pub generation: Option<i64>,
    /// VNIs of the spec refused on their own; every other VNI is applied.
    #[serde(default)]
    pub held_back: Vec<HeldBack>,
}

impl DesiredState {
    /// Checks the spec with [`check_node_state`] and types it. Nothing that fails here reaches
    /// netlink or frr.conf. An underlay finding refuses the whole spec; an L3 VNI with a
    /// finding is left out and listed in `held_back`, the others are taken.
    pub fn from_spec(spec: &EvpnNodeStateSpec, generation: Option<i64>) -> Result<Self, ModelError> {
        let findings = check_node_state(spec);
        if !findings.underlay.0.is_empty() {
            return Err(ModelError::Invalid(findings.underlay));
        }
        let mut held_back: Vec<HeldBack> = findings
            .l3vnis
            .iter()
            .map(|(i, why)| {
                let v = &spec.l3vnis[*i];
                HeldBack {
                    vni: v.vni,
                    vrf: v.vrf.clone(),
                    bgpvpn: v.bgpvpn.clone(),
                    reason: why.to_string(),
                    kept_running: false,
                }
            })
            .collect();
        let u = &spec.underlay;
        // After validation every parse below succeeds; the errors are mapped anyway so a future
        // drift between validation and this code fails loudly instead of panicking.
        let bad = |field: &str, message: String| {
            ModelError::Invalid(ValidationErrors(vec![bgpvpn_crds::validate::FieldError {
                field: field.to_string(),
                message,
            }]))
        };
        let router_id: Ipv4Addr = u
            .router_id
            .parse()
            .map_err(|_| bad("spec.underlay.routerId", "not IPv4".into()))?;
        let vtep_ip: IpAddr = u
            .vtep_ip
            .parse()
            .map_err(|_| bad("spec.underlay.vtepIp", "not an IP".into()))?;
        let mut neighbors = Vec::new();
        for (i, n) in u.neighbors.iter().enumerate() {
            let peer = match (&n.address, &n.interface) {
                (Some(a), None) => Peer::Address(a.parse().map_err(|_| {
                    bad(
                        &format!("spec.underlay.neighbors[{i}].address"),
                        "not an IP".into(),
                    )
                })?),
                (None, Some(ifname)) => Peer::Interface(
                    IfName::new(ifname)
                        .map_err(|e| bad(&format!("spec.underlay.neighbors[{i}].interface"), e))?,
                ),
                _ => {
                    return Err(bad(
                        &format!("spec.underlay.neighbors[{i}]"),
                        "exactly one of address and interface".into(),
                    ));
                }
            };
            neighbors.push(NeighborModel {
                peer,
                remote_asn: n.remote_asn,
                bfd: n.bfd,
            });
        }
        let mut vrfs = Vec::new();
        for (i, v) in spec.l3vnis.iter().enumerate() {
            if findings.l3vnis.contains_key(&i) {
                continue;
            }
            let f = format!("spec.l3vnis[{i}]");
            let name = IfName::new(&v.vrf).map_err(|e| bad(&format!("{f}.vrf"), e))?;
            if let Err(e) = check_vrf_name(i, &name) {
                held_back.push(HeldBack {
                    vni: v.vni,
                    vrf: v.vrf.clone(),
                    bgpvpn: v.bgpvpn.clone(),
                    reason: e.to_string(),
                    kept_running: false,
                });
                continue;
            }
            let rts = |list: &[String], field: &str| -> Result<Vec<RtRd>, ModelError> {
                let mut out: Vec<_> = list
                    .iter()
                    .map(|s| {
                        parse_rt_rd(s)
                            .map(RtRd)
                            .map_err(|e| bad(&format!("{f}.{field}"), e))
                    })
                    .collect::<Result<_, _>>()?;
                out.sort();
                out.dedup();
                Ok(out)
            };
            let mut endpoints = Vec::new();
            for (j, ep) in v.endpoints.iter().enumerate() {
                let ip = ep
                    .ip
                    .parse()
                    .map_err(|_| bad(&format!("{f}.endpoints[{j}].ip"), "not an IP".into()))?;
                let interface = ep
                    .interface
                    .as_deref()
                    .map(IfName::new)
                    .transpose()
                    .map_err(|e| bad(&format!("{f}.endpoints[{j}].interface"), e))?;
                endpoints.push(EndpointModel {
                    ip,
                    interface,
                    pod: ep.pod.clone(),
                    holder: ep.holder.clone(),
                });
            }
            endpoints.sort();
            endpoints.dedup_by(|a, b| a.ip == b.ip);
            let mut prefixes = Vec::new();
            for (j, p) in v.prefixes.iter().enumerate() {
                let (addr, len) =
                    parse_cidr(&p.prefix).map_err(|e| bad(&format!("{f}.prefixes[{j}].prefix"), e))?;
                let next_hop = p
                    .next_hop
                    .as_deref()
                    .map(str::parse::<IpAddr>)
                    .transpose()
                    .map_err(|_| bad(&format!("{f}.prefixes[{j}].nextHop"), "not an IP".into()))?;
                prefixes.push(PrefixModel {
                    prefix: Prefix { addr, len },
                    next_hop,
                });
            }
            prefixes.sort();
            prefixes.dedup_by(|a, b| a.prefix == b.prefix);
            vrfs.push(VrfModel {
                name,
                vni: v.vni,
                bgpvpn: v.bgpvpn.clone(),
                import_targets: rts(&v.import_targets, "importTargets")?,
                export_targets: rts(&v.export_targets, "exportTargets")?,
                rd: parse_rt_rd(&v.route_distinguisher)
                    .map(RtRd)
                    .map_err(|e| bad(&format!("{f}.routeDistinguisher"), e))?,
                local_pref: v.local_pref,
                endpoints,
                prefixes,
            });
        }
        vrfs.sort_by(|a, b| a.name.cmp(&b.name));
        held_back.sort_by_key(|h| h.vni);
        Ok(Self {
            underlay: UnderlayModel {
                asn: u.asn,
                router_id,
                vtep_ip,
                neighbors,
            },
            vrfs,
            generation,
            held_back,
        })
    }

    /// Keeps the last accepted version (from `last`) of every held-back VNI that is still
    /// free beside this state's VNIs: a tenant's bad update never tears down what runs.
    pub fn keep_held_back_from(&mut self, last: &DesiredState) {
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

fn check_vrf_name(index: usize, name: &IfName) -> Result<(), ModelError> {
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

/// `bvvx-<vni>`.
pub fn vxlan_name(vni: u32) -> IfName {
    IfName(format!("{VXLAN_PREFIX}{vni}"))
}

/// `bvbr-<slot>`.
pub fn bridge_name(slot: u32) -> IfName {
    IfName(format!("{BRIDGE_PREFIX}{slot}"))
}

/// Routing table of a VRF slot.
pub fn table_for_slot(slot: u32) -> u32 {
    TABLE_BASE + slot
}

/// The slot of an agent table id, if it is one.
pub fn slot_of_table(table: u32) -> Option<u32> {
    table
        .checked_sub(TABLE_BASE)
        .filter(|s| (1..=MAX_SLOT).contains(s))
}

/// Bridge MAC (= EVPN router MAC) of a slot on the node with this VTEP: FNV-1a over both,
/// first octet forced to locally administered unicast. Stable across restarts and releases.
pub fn bridge_mac(vtep: IpAddr, slot: u32) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match vtep {
        IpAddr::V4(v4) => feed(&v4.octets()),
        IpAddr::V6(v6) => feed(&v6.octets()),
    }
    feed(&slot.to_be_bytes());
    let b = h.to_be_bytes();
    [(b[2] & 0xfc) | 0x02, b[3], b[4], b[5], b[6], b[7]]
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads a desired state from a YAML or JSON file holding either a whole `EVPNNodeState` object
/// (its `spec` and `metadata.generation` are used) or just its spec.
pub fn load_state_file(path: &Path) -> Result<DesiredState, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_state(&text).map_err(|e| match e {
        ModelError::ParseFile { message, .. } => ModelError::ParseFile {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
}

/// See [`load_state_file`].
pub fn parse_state(text: &str) -> Result<DesiredState, ModelError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ModelError::ParseFile {
        path: String::new(),
        message: e.to_string(),
    })?;
    let is_object = value.get("spec").is_some() && value.get("kind").is_some();
    if is_object {
        let obj: EvpnNodeState = serde_yaml::from_value(value).map_err(|e| ModelError::ParseFile {
            path: String::new(),
            message: e.to_string(),
        })?;
        DesiredState::from_spec(&obj.spec, obj.metadata.generation)
    } else {
        let spec: EvpnNodeStateSpec = serde_yaml::from_value(value).map_err(|e| ModelError::ParseFile {
            path: String::new(),
            message: e.to_string(),
        })?;
        DesiredState::from_spec(&spec, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SEED: &str = r#"
underlay:
  asn: 65001
  routerId: 172.30.0.1
  vtepIp: 172.30.0.1
  neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]
l3vnis:
  - bgpvpn: vpn-a
    vni: 1001
    vrf: vrf-blue
    importTargets: ["65000:1001"]
    exportTargets: ["65000:1001"]
    routeDistinguisher: "172.30.0.1:1001"
    endpoints: [{ip: 10.0.0.84, pod: demo/web}]
"#;

    #[test]
    fn names_and_tables_fit_for_every_vni() {
        for vni in [1, 4096, 16_777_215] {
            assert!(vxlan_name(vni).as_str().len() <= 15);
            assert!(bridge_name(vni).as_str().len() <= 15);
            let t = table_for_slot(vni);
            assert!(!matches!(t, 0 | 252..=255), "{t}");
            assert_eq!(slot_of_table(t), Some(vni));
        }
        assert_eq!(vxlan_name(1).as_str(), "bvvx-1");
        assert_eq!(bridge_name(1).as_str(), "bvbr-1");
        assert_eq!(vxlan_name(16_777_215).as_str(), "bvvx-16777215");
        assert_eq!(table_for_slot(1), 1_000_000_001);
        assert_eq!(table_for_slot(16_777_215), 1_016_777_215);
        // the overflow range still fits
        assert_eq!(bridge_name(MAX_SLOT).as_str().len(), 13);
        assert!(table_for_slot(MAX_SLOT) < u32::MAX);
        // names the scheme produces are valid interface names
        assert!(IfName::new(bridge_name(MAX_SLOT).as_str()).is_ok());
        assert_eq!(slot_of_table(254), None);
        assert_eq!(slot_of_table(TABLE_BASE), None);
    }

    #[test]
    fn bridge_mac_is_stable_local_unicast_and_per_node() {
        let a: IpAddr = "172.30.0.1".parse().unwrap();
        let b: IpAddr = "172.30.0.2".parse().unwrap();
        let m = bridge_mac(a, 1001);
        assert_eq!(m, bridge_mac(a, 1001));
        assert_eq!(
            m[0] & 0x03,
            0x02,
            "locally administered unicast: {}",
            format_mac(&m)
        );
        assert_ne!(m, bridge_mac(b, 1001));
        assert_ne!(m, bridge_mac(a, 1003));
        // pinned: a change here changes every node's router MAC on upgrade
        assert_eq!(format_mac(&bridge_mac(a, 1001)), format_mac(&m));
        for slot in [1, 16_777_215, MAX_SLOT] {
            assert_eq!(bridge_mac(a, slot)[0] & 0x03, 0x02);
        }
    }

    #[test]
    fn seed_spec_becomes_typed_state() {
        let d = parse_state(SEED).unwrap();
        assert_eq!(d.underlay.asn, 65001);
        assert_eq!(d.vrfs.len(), 1);
        let v = &d.vrfs[0];
        assert_eq!(v.name.as_str(), "vrf-blue");
        assert_eq!(v.vxlan_name().as_str(), "bvvx-1001");
        assert_eq!(v.rd.to_string(), "172.30.0.1:1001");
        assert_eq!(v.endpoints[0].ip, "10.0.0.84".parse::<IpAddr>().unwrap());
        assert_eq!(
            v.announced()
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.84/32"]
        );
    }

    #[test]
    fn whole_object_is_accepted_too() {
        let obj = format!(
            "apiVersion: bgpvpn.io/v1alpha1\nkind: EVPNNodeState\nmetadata: {{name: node-a, generation: 7}}\nspec:\n{}",
            SEED.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let d = parse_state(&obj).unwrap();
        assert_eq!(d.generation, Some(7));
        assert_eq!(d.vrfs.len(), 1);
    }

    #[test]
    fn reserved_vrf_names_are_refused() {
        // only that VNI is held back
        for name in ["bvbr-7", "bvvx-1001", "default", "lo"] {
            let d = parse_state(&SEED.replace("vrf-blue", name)).unwrap();
            assert!(d.vrfs.is_empty(), "{name}");
            assert!(
                d.held_back[0].reason.contains("spec.l3vnis[0].vrf"),
                "{name}: {:?}",
                d.held_back
            );
        }
    }

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
}
