//! The operator's configuration file.
//!
//! `bgpvpn-operator run --config <file>` reads YAML of this shape (field names are camelCase;
//! unknown fields are refused so a typo does not go unnoticed):
//!
//! ```yaml
//! underlay:                    # BGP and VXLAN settings every node gets
//!   asn: 65001                 # the nodes' AS number; node annotation bgpvpn.io/asn overrides it
//!   neighbors:                 # BGP peers of every node, with the l2vpn evpn address family
//!     - address: 172.30.0.254  # by address ...
//!       remoteAsn: 65000
//!     - interface: eth1        # ... or BGP unnumbered on an interface
//!       remoteAsn: 65000
//!       bfd: true
//! nodeSelector:                # optional: only matching Nodes get an EVPNNodeState (default: all)
//!   matchLabels:
//!     bgpvpn.io/agent: "true"
//! debounceMillis: 200          # optional: changes are batched for this long before one pass
//!                              #   (or as long as the previous pass took, if that was longer)
//! resyncSeconds: 300           # optional: a full pass at least this often, even with no change
//! kuryrDiscoverySeconds: 30    # optional: how often to look again for the Kuryr CRDs while absent
//! openstack:                   # optional: the networking-bgpvpn sync, run by the leader
//!   neutronUrl: http://neutron:9696   # (see `openstack::SyncConfig`); absent = no sync
//! ```
//!
//! Per node, the VTEP address and the BGP router id are the Node's first IPv4 `InternalIP`
//! (for the VTEP an IPv6 `InternalIP` is taken when there is no IPv4 one); the annotations
//! `bgpvpn.io/vtep-ip`, `bgpvpn.io/router-id` and `bgpvpn.io/asn` on the Node override them.
//! A neighbor whose address is one of the node's own addresses is left out for that node, so one
//! full-mesh list can serve every node.

use std::time::Duration;

use bgpvpn_crds::Neighbor;
use bgpvpn_crds::model::UnderlayModel;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use crate::openstack::SyncConfig;

/// See the module documentation for the file format.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub underlay: UnderlayConfig,
    #[serde(default)]
    pub node_selector: Option<LabelSelector>,
    #[serde(default = "default_debounce_millis")]
    pub debounce_millis: u64,
    #[serde(default = "default_resync_seconds")]
    pub resync_seconds: u64,
    #[serde(default = "default_kuryr_discovery_seconds")]
    pub kuryr_discovery_seconds: u64,
    #[serde(default)]
    pub openstack: Option<SyncConfig>,
}

/// The underlay settings shared by every node.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnderlayConfig {
    pub asn: u32,
    #[serde(default)]
    pub neighbors: Vec<Neighbor>,
    /// IPv4 unicast with the neighbours too: BGP as the underlay's routing (the VTEP announced,
    /// the fabric's routes installed, ECMP across the neighbours).
    #[serde(default)]
    pub ipv4_unicast: bool,
}

fn default_debounce_millis() -> u64 {
    200
}
fn default_resync_seconds() -> u64 {
    300
}
fn default_kuryr_discovery_seconds() -> u64 {
    30
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: String, source: serde_yaml::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// A configuration with the given underlay and every optional setting at its default.
    pub fn new(underlay: UnderlayConfig) -> Self {
        Config {
            underlay,
            node_selector: None,
            debounce_millis: default_debounce_millis(),
            resync_seconds: default_resync_seconds(),
            kuryr_discovery_seconds: default_kuryr_discovery_seconds(),
            openstack: None,
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: shown.clone(),
                source,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: shown.clone(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks configuration YAML.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: String::new(),
            source,
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: String::new(),
            message,
        })?;
        Ok(config)
    }

    /// The underlay rules the agent applies, checked up front: a bad ASN or neighbor would
    /// otherwise make every node refuse its state.
    pub fn check(&self) -> Result<(), String> {
        // a node's own addresses come from its Node object; a peer that is one of them is left
        // out for that node (see `build::nodes::node_underlay`)
        UnderlayModel::check_peering("underlay", self.underlay.asn, &self.underlay.neighbors)
            .map_err(|e| e.to_string())?;
        if let Some(sel) = &self.node_selector {
            kube::core::Selector::try_from(sel.clone()).map_err(|e| format!("nodeSelector: {e}"))?;
        }
        if let Some(sync) = &self.openstack {
            sync.check()?;
        }
        Ok(())
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_millis)
    }

    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.resync_seconds.max(1))
    }

    pub fn kuryr_discovery(&self) -> Duration {
        Duration::from_secs(self.kuryr_discovery_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let text = "underlay:\n  asn: 65001\n  neighbors:\n    - address: 172.30.0.254\n      remoteAsn: 65000\n    - interface: eth1\n      remoteAsn: 65000\n      bfd: true\nnodeSelector:\n  matchLabels:\n    bgpvpn.io/agent: \"true\"\ndebounceMillis: 50\n";
        let c = Config::parse(text).unwrap();
        assert_eq!(c.underlay.asn, 65001);
        assert_eq!(c.underlay.neighbors.len(), 2);
        assert_eq!(c.debounce(), Duration::from_millis(50));
        assert_eq!(c.resync_seconds, 300);
        assert!(c.openstack.is_none());
    }

    #[test]
    fn mistakes_are_refused() {
        assert!(
            Config::parse("underlay: {asn: 65001}\nunderlai: {}\n")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        let err = Config::parse("underlay: {asn: 0, neighbors: [{address: nope, remoteAsn: 1}]}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("underlay.asn") && err.contains("neighbors[0].address"),
            "{err}"
        );
        let err = Config::parse(
            "underlay: {asn: 1}\nnodeSelector: {matchExpressions: [{key: a, operator: Bogus}]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nodeSelector"), "{err}");
        let err = Config::parse("underlay: {asn: 1}\nopenstack: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("openstack"), "{err}");
        assert!(
            Config::parse("underlay: {asn: 1}\nopenstack: {neutronUrl: \"http://neutron:9696\"}\n")
                .unwrap()
                .openstack
                .is_some()
        );
    }
}
