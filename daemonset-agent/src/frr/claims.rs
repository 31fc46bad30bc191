//! What the node's own FRR configuration (the preamble the agent prepends to frr.conf) already
//! uses: VRF names and L3 VNIs. A tenant VRF that collides with one is refused before rendering:
//! FRR 10 refuses a VNI mapped to a second VRF only in its log (mgmtd: "vni N is already mapped
//! to another vrf") while `frr-reload.py` and `vtysh -f` exit 0, so one of the two would be
//! silently unmapped.

use std::collections::{BTreeMap, BTreeSet};

/// VRFs and VNIs the node's own FRR configuration holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrrClaims {
    /// VRF names with a `vrf <name>` block or a `router bgp <asn> vrf <name>` instance.
    pub vrfs: BTreeSet<String>,
    /// L3 VNI -> the VRF whose `vrf` block maps it.
    pub vnis: BTreeMap<u32, String>,
}

impl FrrClaims {
    /// Reads the claims out of FRR configuration text (only the two statements above; anything
    /// else is FRR's to judge).
    pub fn from_config(config: &str) -> Self {
        let mut claims = FrrClaims::default();
        let mut in_vrf: Option<String> = None;
        for line in config.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let top_level = !line.starts_with(char::is_whitespace);
            match words.as_slice() {
                ["vrf", name] if top_level => {
                    claims.vrfs.insert(name.to_string());
                    in_vrf = Some(name.to_string());
                }
                ["router", "bgp", _, "vrf", name, ..] if top_level => {
                    claims.vrfs.insert(name.to_string());
                    in_vrf = None;
                }
                ["vni", vni, ..] if !top_level => {
                    if let (Some(vrf), Ok(vni)) = (&in_vrf, vni.parse::<u32>()) {
                        claims.vnis.insert(vni, vrf.clone());
                    }
                }
                ["exit-vrf"] => in_vrf = None,
                _ if top_level && !words.is_empty() && !words[0].starts_with('!') => in_vrf = None,
                _ => {}
            }
        }
        claims
    }

    /// Why a tenant VRF `name` with `vni` cannot go beside this configuration, if it cannot.
    pub fn conflict(&self, name: &str, vni: u32) -> Option<String> {
        if let Some(other) = self.vnis.get(&vni) {
            return Some(format!(
                "VNI {vni} is already mapped to VRF {other} in this node's own FRR configuration"
            ));
        }
        self.vrfs
            .contains(name)
            .then(|| format!("VRF {name} is already configured in this node's own FRR configuration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vrf_blocks_and_bgp_instances() {
        let claims = FrrClaims::from_config(
            "frr defaults datacenter\nvrf legacy\n vni 1003 prefix-routes-only\nexit-vrf\n!\nvrf mgmt\nexit-vrf\n\
             router bgp 65000 vrf storage\n address-family l2vpn evpn\n  advertise ipv4 unicast\n exit-address-family\nexit\n\
             interface eth1\n vni 9\n",
        );
        assert_eq!(
            claims.vrfs,
            ["legacy", "mgmt", "storage"].map(String::from).into()
        );
        assert_eq!(
            claims.vnis,
            [(1003, "legacy".to_string())].into(),
            "only a vni inside a vrf block"
        );
        assert!(claims.conflict("vrf-1003", 1003).unwrap().contains("VRF legacy"));
        assert!(claims.conflict("storage", 7).unwrap().contains("VRF storage"));
        assert_eq!(claims.conflict("vrf-1001", 1001), None);
        assert_eq!(FrrClaims::from_config(""), FrrClaims::default());
    }
}
