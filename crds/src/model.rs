//! The typed model of one node's EVPN state, shared by the operator and the agent: the values
//! an [`EvpnNodeStateSpec`] carries, parsed once. A VRF name is an [`IfName`] (15 bytes of
//! `[A-Za-z0-9_.-]`), addresses are [`IpAddr`]s, route targets and distinguishers are
//! [`RtRd`]s. Everything later stages render (kernel names, FRR lines) comes from these typed
//! values, never from raw spec strings.
//!
//! The CRD structs of [`crate::node_state`] are the wire format; [`NodeModel::from_spec`] is the
//! door from it.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::EvpnNodeStateSpec;
use crate::validate::{
    FieldError, RouteTargetOrDistinguisher, ValidationErrors, check_node_state, parse_cidr, parse_rt_rd,
};

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
            ModelError::Invalid(ValidationErrors(vec![FieldError {
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
}
