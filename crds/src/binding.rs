use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::*;

/// Attaches endpoints of the binding's namespace to a BGPVPN: owned by the tenant.
///
/// Exactly one target is set: `podSelector`, `networkId`, `routerId` or `portId`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "bgpvpn.io",
    version = "v1alpha1",
    kind = "VNIBinding",
    root = "VniBinding",
    plural = "vnibindings",
    singular = "vnibinding",
    shortname = "vnib",
    category = "evpn",
    namespaced,
    status = "VniBindingStatus",
    selectable = ".spec.bgpvpn",
    printcolumn = r#"{"name":"BGPVPN","type":"string","jsonPath":".spec.bgpvpn"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.endpoints"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [
    {"required": ["podSelector"]},
    {"required": ["networkId"]},
    {"required": ["routerId"]},
    {"required": ["portId"]},
]))]
pub struct VniBindingSpec {
    /// Name of the (cluster-scoped) BGPVPN to join.
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(min = 1, max = DNS_SUBDOMAIN_MAX_LEN))]
    pub bgpvpn: String,

    /// Running pods of this namespace whose labels match (works without OpenStack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// A Neutron network id: the pods of the namespace whose KuryrNetwork has this `netId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UUID_PATTERN), length(max = UUID_LEN))]
    pub network_id: Option<String>,

    /// A Neutron router id: the pods of the namespace whose KuryrNetwork has this `routerId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UUID_PATTERN), length(max = UUID_LEN))]
    pub router_id: Option<String>,

    /// A Neutron port id: the pod of this namespace whose KuryrPort carries a vif with this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = UUID_PATTERN), length(max = UUID_LEN))]
    pub port_id: Option<String>,

    /// Extra prefixes (CIDR) advertised into the VPN from the nodes of the bound endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ADVERTISED_PREFIXES), inner(regex(pattern = CIDR_PATTERN), length(max = CIDR_MAX_LEN)))]
    pub advertise_prefixes: Vec<String>,
}

/// Observed state of a VNIBinding.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VniBindingStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Endpoints (pod IPs) the target resolved to.
    #[serde(default)]
    pub endpoints: i32,
    /// Nodes hosting those endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STATUS_ITEMS))]
    pub nodes: Vec<String>,
    /// Of those nodes, the ones whose agent reports them programmed.
    #[serde(default)]
    pub ready_nodes: i32,
}

/// The one target of a binding, once validated.
#[derive(Clone, Debug, PartialEq)]
pub enum BindingTarget<'a> {
    Pods(&'a LabelSelector),
    Network(&'a str),
    Router(&'a str),
    Port(&'a str),
}
