//! The agent's side of the node model: the typed state itself ([`NodeModel`] and its parts) is
//! defined in [`bgpvpn_crds::model`], shared with the operator, and re-exported here; what is
//! the agent's own decision (kernel names, table ids, MACs, ownership markers, node settings,
//! the state file) is defined here.
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
//! for every VNI up to 16777215 and for every overflow slot (and `bvbr-4294967295`, for any
//! `u32`, is still 15).

use std::net::IpAddr;
use std::path::Path;

pub use bgpvpn_crds::model::{
    BRIDGE_PREFIX, EndpointModel, HeldBack, IfName, ModelError, NeighborModel, NodeModel, Peer, Prefix,
    PrefixModel, RtRd, UnderlayModel, VXLAN_PREFIX, VrfModel,
};
use bgpvpn_crds::{EvpnNodeState, EvpnNodeStateSpec};

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

/// `bvvx-<vni>`.
pub fn vxlan_name(vni: u32) -> IfName {
    IfName::new(&format!("{VXLAN_PREFIX}{vni}")).expect("bvvx-<u32> is at most 15 bytes")
}

/// `bvbr-<slot>`.
pub fn bridge_name(slot: u32) -> IfName {
    IfName::new(&format!("{BRIDGE_PREFIX}{slot}")).expect("bvbr-<u32> is at most 15 bytes")
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

/// Why a state file gives no [`NodeModel`].
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("reading state file {path}: {source}")]
    ReadFile { path: String, source: std::io::Error },
    #[error("parsing state file {path}: {message}")]
    ParseFile { path: String, message: String },
}

/// Reads a desired state from a YAML or JSON file holding either a whole `EVPNNodeState` object
/// (its `spec` and `metadata.generation` are used) or just its spec.
pub fn load_state_file(path: &Path) -> Result<NodeModel, StateFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateFileError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_state(&text).map_err(|e| match e {
        StateFileError::ParseFile { message, .. } => StateFileError::ParseFile {
            path: path.display().to_string(),
            message,
        },
        other => other,
    })
}

/// See [`load_state_file`].
pub fn parse_state(text: &str) -> Result<NodeModel, StateFileError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| StateFileError::ParseFile {
        path: String::new(),
        message: e.to_string(),
    })?;
    let is_object = value.get("spec").is_some() && value.get("kind").is_some();
    if is_object {
        let obj: EvpnNodeState = serde_yaml::from_value(value).map_err(|e| StateFileError::ParseFile {
            path: String::new(),
            message: e.to_string(),
        })?;
        Ok(NodeModel::try_from(&obj)?)
    } else {
        let spec: EvpnNodeStateSpec =
            serde_yaml::from_value(value).map_err(|e| StateFileError::ParseFile {
                path: String::new(),
                message: e.to_string(),
            })?;
        Ok(NodeModel::try_from(&spec)?)
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
        assert_eq!(vxlan_name(v.vni).as_str(), "bvvx-1001");
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
}
