use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::*;

/// A BGP VPN (EVPN type-5 L3VNI): owned by the cluster admin.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bgpvpn.io",
    version = "v1alpha1",
    kind = "BGPVPN",
    root = "Bgpvpn",
    plural = "bgpvpns",
    singular = "bgpvpn",
    shortname = "bvpn",
    category = "evpn",
    status = "BgpvpnStatus",
    selectable = ".spec.vni",
    printcolumn = r#"{"name":"VNI","type":"integer","jsonPath":".spec.vni"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"RTs","type":"string","jsonPath":".spec.routeTargets"}"#,
    printcolumn = r#"{"name":"Bindings","type":"integer","jsonPath":".status.bindings"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.readyNodesText"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BgpvpnSpec {
    /// `l3` (EVPN type-5, the only type the dataplane programs) or `l2`. Defaults to `l3`.
    #[serde(rename = "type", default)]
    pub vpn_type: VpnType,

    /// VXLAN network identifier of the L3VNI. Immutable once programmed.
    #[schemars(range(min = VNI_MIN, max = VNI_MAX))]
    pub vni: u32,

    /// Route targets used for both import and export (`ASN:nn` or `IPv4:nn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ROUTE_TARGETS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub route_targets: Vec<String>,

    /// Route targets used for import only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ROUTE_TARGETS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub import_targets: Vec<String>,

    /// Route targets used for export only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ROUTE_TARGETS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub export_targets: Vec<String>,

    /// Route distinguishers (RFC 4364 type 0 `ASN2:nn4`, type 1 `IPv4:nn2`, type 2 `ASN4:nn2`).
    /// The first one is used on every node; when empty each node derives a type-1 RD from its
    /// router id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ROUTE_DISTINGUISHERS), inner(regex(pattern = RT_RD_PATTERN), length(max = RT_RD_MAX_LEN)))]
    pub route_distinguishers: Vec<String>,

    /// BGP LOCAL_PREF of the routes advertised for this VPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,

    /// Which namespaces may bind to this BGPVPN. Empty means none.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,

    /// Prefixes (CIDR) the bindings of this BGPVPN may advertise: each `advertisePrefixes`
    /// entry must lie within one of them. Empty means none beyond the bound pods' own
    /// addresses. Default routes, link-local, multicast, loopback and unspecified prefixes are
    /// never advertised, whatever this says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ALLOWED_PREFIXES), inner(regex(pattern = CIDR_PATTERN), length(max = CIDR_MAX_LEN)))]
    pub allowed_prefixes: Vec<String>,
}

/// Type of a BGPVPN, as in networking-bgpvpn.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VpnType {
    #[default]
    L3,
    L2,
}

/// Tenancy guard: the namespaces whose VNIBindings may use a BGPVPN.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Every namespace may bind. Must be said explicitly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Namespaces whose labels match. An absent or empty selector matches no namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Namespaces admitted by name. The OpenStack sync admits exactly the namespaces it binds
    /// into this way, as a list it owns beside the admin's selector. (A selector on the label
    /// `kubernetes.io/metadata.name`, which every namespace carries, admits by name as well.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_NAMESPACE_NAMES), inner(regex(pattern = DNS_LABEL_PATTERN), length(max = DNS_LABEL_MAX_LEN)))]
    pub names: Vec<String>,
}

/// Observed state of a BGPVPN, aggregated by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpvpnStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The VNI the dataplane was programmed with (guards against edits of `spec.vni`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_vni: Option<u32>,
    /// VNIBindings that are bound to this BGPVPN and allowed.
    #[serde(default)]
    pub bindings: i32,
    /// Endpoints (pods, prefixes) of all bound bindings.
    #[serde(default)]
    pub endpoints: i32,
    /// Nodes that programmed this VPN as desired.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Nodes that should program this VPN.
    #[serde(default)]
    pub total_nodes: i32,
    /// `ready/total`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes_text: Option<String>,
}

impl BgpvpnSpec {
    /// Route targets to import: `routeTargets` plus `importTargets`, deduplicated, in order.
    pub fn effective_import_targets(&self) -> Vec<String> {
        merge_unique(&self.route_targets, &self.import_targets)
    }

    /// Route targets to export: `routeTargets` plus `exportTargets`, deduplicated, in order.
    pub fn effective_export_targets(&self) -> Vec<String> {
        merge_unique(&self.route_targets, &self.export_targets)
    }
}

/// The route target bgpd derives for an L3VNI that is given none (`vrf` + `vni` without
/// `route-target`, as Neutron 2026.2's FRR driver configures its EVPN routers): the low 16 bits
/// of the AS, then the VNI (bgpd's `form_auto_rt`, without `autort rfc8365-compatible`).
pub fn frr_auto_route_target(asn: u32, vni: u32) -> String {
    format!("{}:{vni}", asn & 0xFFFF)
}

fn merge_unique(first: &[String], second: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(first.len() + second.len());
    for rt in first.iter().chain(second) {
        if !out.contains(rt) {
            out.push(rt.clone());
        }
    }
    out
}
