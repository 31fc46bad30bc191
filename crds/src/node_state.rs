use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::*;

/// The EVPN state of one node. Named after the Node and owned by it, so it goes away with it.
///
/// `spec` is written only by the operator; `status` only by the agent on that node, which
/// watches this one object by name and nothing cluster-wide.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "bgpvpn.io",
    version = "v1alpha1",
    kind = "EVPNNodeState",
    root = "EvpnNodeState",
    plural = "evpnnodestates",
    singular = "evpnnodestate",
    shortname = "ens",
    category = "evpn",
    status = "EvpnNodeStateStatus",
    selectable = ".spec.underlay.vtepIp",
    selectable = ".spec.underlay.routerId",
    printcolumn = r#"{"name":"ASN","type":"integer","jsonPath":".spec.underlay.asn"}"#,
    printcolumn = r#"{"name":"VTEP","type":"string","jsonPath":".spec.underlay.vtepIp"}"#,
    printcolumn = r#"{"name":"L3VNIs","type":"integer","jsonPath":".status.programmedVnis"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Sessions","type":"string","jsonPath":".status.sessionsEstablished"}"#,
    printcolumn = r#"{"name":"FRR","type":"string","priority":1,"jsonPath":".status.frrVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EvpnNodeStateSpec {
    /// BGP and VXLAN settings of the node.
    pub underlay: Underlay,
    /// The L3 VNIs this node takes part in, with its local endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    pub l3vnis: Vec<L3Vni>,
}

/// BGP speaker and VTEP settings of one node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Underlay {
    /// The node's own AS number.
    #[schemars(range(min = 1))]
    pub asn: u32,
    /// BGP router id (IPv4).
    #[schemars(regex(pattern = IP_PATTERN), length(max = IP_MAX_LEN))]
    pub router_id: String,
    /// Source address of the VXLAN tunnels (IPv4: FRR 10.3's EVPN takes no IPv6 VTEP); also
    /// advertised as the EVPN next hop. The BGP sessions may run over IPv6.
    #[schemars(regex(pattern = IP_PATTERN), length(max = IP_MAX_LEN))]
    pub vtep_ip: String,
    /// BGP peers carrying the `l2vpn evpn` address family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub neighbors: Vec<Neighbor>,
    /// Also run IPv4 unicast with every neighbour: announce the VTEP address (/32) and install
    /// the neighbours' routes, ECMP across them (BGP as the underlay's routing, as in a
    /// leaf-spine fabric). Off: the node reaches the other VTEPs by its own routing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv4_unicast: bool,
}

/// One BGP peer: by address, or by interface (BGP unnumbered). Exactly one of the two is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Neighbor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IP_PATTERN), length(max = IP_MAX_LEN))]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IFNAME_PATTERN), length(max = IFNAME_MAX_LEN))]
    pub interface: Option<String>,
    /// The peer's AS number.
    #[schemars(range(min = 1))]
    pub remote_asn: u32,
    /// Track the session with BFD.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bfd: bool,
}

/// One L3 VNI (an EVPN type-5 VRF) on a node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L3Vni {
    /// The BGPVPN this VNI comes from (for status only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = DNS_SUBDOMAIN_MAX_LEN))]
    pub bgpvpn: String,
    #[schemars(range(min = VNI_MIN, max = VNI_MAX))]
    pub vni: u32,
    /// Name of the VRF device (at most 15 bytes). Kept when the VNI changes, so the VRF is
    /// moved to the new VNI instead of rebuilt.
    #[schemars(regex(pattern = IFNAME_PATTERN), length(max = IFNAME_MAX_LEN))]
    pub vrf: String,
    #[schemars(length(min = 1, max = MAX_ROUTE_TARGETS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub import_targets: Vec<String>,
    #[schemars(length(min = 1, max = MAX_ROUTE_TARGETS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub export_targets: Vec<String>,
    /// Explicit RD of this VRF on this node (never left to FRR: auto RDs change on restart).
    #[schemars(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN))]
    pub route_distinguisher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// Local pods joining this VNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    pub endpoints: Vec<Endpoint>,
    /// Prefixes routed into the VRF (via a next hop) or only advertised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    pub prefixes: Vec<RoutedPrefix>,
}

/// A local pod in a VNI: its IP is routed in the VRF via the pod's host-side interface, and a
/// policy rule sends the pod's traffic to the VRF table.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The pod's IP (one address: /32 or /128).
    #[schemars(regex(pattern = IP_PATTERN), length(max = IP_MAX_LEN))]
    pub ip: String,
    /// Host-side interface of the pod. When absent the agent takes the interface of the pod's
    /// route in the main table, which the CNI plugin installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IFNAME_PATTERN), length(max = IFNAME_MAX_LEN))]
    pub interface: Option<String>,
    /// `namespace/name` of the pod, for status and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 317))]
    pub pod: Option<String>,
    /// Who holds the address: the pod's UID, and the start of its network sandbox when known.
    /// The agent binds the endpoint to the interface it first finds for this holder and never
    /// moves it to another interface while the holder stays the same: an address taken over by
    /// another pod joins nothing until the operator names the new holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub holder: Option<String>,
}

/// A prefix in a VNI: routed via `nextHop` when set (per-subnet gateway mode), and advertised.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutedPrefix {
    #[schemars(regex(pattern = CIDR_PATTERN), length(max = CIDR_MAX_LEN))]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IP_PATTERN), length(max = IP_MAX_LEN))]
    pub next_hop: Option<String>,
}

/// What the agent programmed, written by the agent only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvpnNodeStateStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The spec generation the rest of this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of L3 VNIs programmed as desired.
    #[serde(default)]
    pub programmed_vnis: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    pub l3vnis: Vec<L3VniStatus>,
    /// Result of the last FRR configuration apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frr: Option<FrrApplyStatus>,
    /// Version of the agent that wrote this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Version of the FRR the agent drives (`show version`), e.g. `10.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frr_version: Option<String>,
    /// The node's underlay BGP sessions, as its FRR last reported them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["peer"]))]
    pub bgp_sessions: Vec<BgpSessionStatus>,
    /// Established sessions of all, e.g. `1/2`; unset while FRR has not been asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_established: Option<String>,
}

/// One underlay BGP session of the node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpSessionStatus {
    /// The neighbor's address, or the interface of an unnumbered session.
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_asn: Option<u32>,
    /// FRR's session state: `Established`, `Active`, `Connect`, `Idle`, `OpenSent`, `OpenConfirm`.
    pub state: String,
    /// When the session came up, while it is `Established`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_since: Option<Time>,
    /// EVPN routes accepted from the neighbor.
    #[serde(default)]
    pub prefixes_received: u32,
    /// The BFD session's state (`Up`, `Down`, `Init`, `AdminDown`) when BFD is on for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<String>,
}

/// Per-VNI result on a node.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct L3VniStatus {
    pub vni: u32,
    pub vrf: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bgpvpn: String,
    /// Kernel and FRR state match the spec for this VNI.
    pub ready: bool,
    /// Endpoints routed in the VRF.
    #[serde(default)]
    pub endpoints: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Outcome of one FRR apply (`frr-reload.py --test`, then `--reload`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrrApplyStatus {
    /// `Applied`, `Unchanged` or `Failed`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
