//! OpenStack sync: mirrors networking-bgpvpn BGPVPNs and their associations into the cluster.
//!
//! An optional component, switched on by the `openstack:` section of the operator configuration
//! ([`SyncConfig`]) and run only on the elected leader ([`run`]). Every poll interval it reads
//! Neutron (`GET /v2.0/bgpvpn/bgpvpns` and, per BGPVPN, its router, network and port
//! associations, all paginated) and the Kuryr objects of the cluster, computes the objects that
//! should exist ([`mapping`], pure), and writes the difference.
//!
//! # Mapping rules
//!
//! | Neutron | cluster |
//! |---|---|
//! | bgpvpn `<id>` | `BGPVPN` named `os-<id>` (the Neutron id in lower case: unique, valid RFC 1123, and stable when the bgpvpn is renamed in Neutron, which must not tear down its VRF) |
//! | `type`, `vni`, `route_targets`, `import_targets`, `export_targets`, `route_distinguishers`, `local_pref` | the same fields of `spec` |
//! | router association (`router_id`) | one `VNIBinding` `os-<association id>` with `spec.routerId` in every namespace whose `KuryrNetwork` has `status.routerId` = that router |
//! | network association (`network_id`) | one `VNIBinding` `os-<association id>` with `spec.networkId` in every namespace whose `KuryrNetwork` has `status.netId` = that network |
//! | port association (`port_id`, `routes`) | one `VNIBinding` `os-<association id>` with `spec.portId` in the namespace of the `KuryrPort` (the pod) that has a vif with that id; the `prefix` routes become `spec.advertisePrefixes`, advertised only within the mirrored BGPVPN's `spec.allowedPrefixes`: the sync neither sets nor owns that field, the cluster admin sets it (Neutron tenants choose port routes) |
//! | the namespaces bound | `spec.allowedNamespaces.names` of the BGPVPN: exactly those namespaces (`all` is false, no selector). Namespaces are never labelled by the sync; the names are a list the sync owns beside the admin's selector. |
//! | router `<id>` with `evpn_vni` (Neutron 2026.2's own EVPN; only with `evpnRouters` set) | `BGPVPN` `os-evpn-<id>`: `vni` = `evpn_vni`, `routeTargets` = [`<bgpAsn & 0xffff>:<vni>`] (the route target bgpd derives for an L3VNI without one, as Neutron's FRR driver leaves it: `router bgp <as> vrf <vrf>` + `vni` with no `route-target`), no route distinguisher (FRR derives one on each side); one `VNIBinding` `os-evpn-<id>` in every namespace behind the router's networks (its `network:router_interface*` ports) |
//!
//! # Which namespaces a network reaches
//!
//! Kuryr's `KuryrNetwork` (`status.netId`, `status.routerId`) and `KuryrPort` say where pods'
//! Neutron ports are; such a binding names the Neutron object (`spec.networkId`, `spec.routerId`,
//! `spec.portId`). Without Kuryr (retired upstream; its CRDs absent is not an error), the admin
//! says it with the Namespace label `bgpvpn.io/openstack-network-id=<network id>`: the namespace
//! stands for that network, and a network association of it, or a router association or EVPN
//! router with an interface on it, binds the whole namespace (`podSelector: {}`). Where both
//! say something about a namespace, Kuryr's answer is used. A port association needs Kuryr.
//!
//! # Which namespaces a project reaches
//!
//! Kuryr says which namespaces an association reaches (their network is behind the router, is
//! the network, holds the port); only the cluster admin says whose they are. A namespace is
//! bound only when the admin labelled it `bgpvpn.io/openstack-project-id=<project id>` with the
//! project of the association (or of the bgpvpn, for an association without `project_id`);
//! project ids compare in any case. Namespaces are the admin's to label (tenants usually cannot
//! edit Namespace objects). A namespace an association reaches but that is not mapped to its
//! project is not bound, and is named in a Warning Event `NamespaceNotMapped` on the BGPVPN.
//!
//! # What the sync owns
//!
//! Every object written carries the label `bgpvpn.io/managed-by=openstack-sync` and
//! `bgpvpn.io/openstack-bgpvpn-id`; for a BGPVPN (cluster-scoped: only admins and the sync write
//! it) the label is the ownership mark. For a VNIBinding it is only a filter, since a tenant can
//! put it on a binding of its own: a labelled binding is the sync's only when its BGPVPN is the
//! sync's and admits the binding's namespace (which only the sync made it do). Only the sync's
//! objects are ever changed or deleted, and only the sync's bindings keep a namespace admitted
//! where its Kuryr objects cannot be read (and only while the namespace is still mapped to a
//! project of the BGPVPN). Any other labelled binding is left to its tenant and named in a
//! Warning Event `NotMadeBySync`: the label gains it nothing (the operator reports it
//! `NotAllowed` like any binding the BGPVPN does not admit).
//!
//! Objects written also carry the annotations `bgpvpn.io/openstack-bgpvpn-id`,
//! `bgpvpn.io/openstack-project-id`, `bgpvpn.io/openstack-name` (BGPVPN) or
//! `bgpvpn.io/openstack-association-id`, `bgpvpn.io/openstack-association-type` (VNIBinding).
//!
//! Not mirrored, and said so in an Event (`Unsupported`): port-association routes of type
//! `bgpvpn` (route leaking), port associations with `advertise_fixed_ips: false` (a binding always
//! advertises the pod's address), per-route `local_pref`. A router association's
//! `advertise_extra_routes` is ignored (the router's extra routes are not read).
//!
//! # Nothing lost
//!
//! * Objects that are not the sync's (above) are never changed or deleted. When the name the sync
//!   needs is taken by such an object, the clash is reported (Warning Event `NameClash` on that
//!   object, a metric, a log line) and the bgpvpn's bindings are not written either.
//! * New objects are created with `POST` (which fails on a clash, so a hand-made object created
//!   at the same moment is never taken over); owned objects are changed with server-side apply
//!   (field manager `bgpvpn-openstack-sync`), only when their spec, labels or annotations differ.
//! * Any failure to read Neutron, Keystone or the cluster (unreachable, timeout, 401, 5xx, bad
//!   JSON, a page missing) aborts the whole pass before anything is written: nothing is deleted,
//!   the owned BGPVPNs get `Synced=False` with the reason, a Warning Event `SyncFailed` is
//!   emitted on them, the failure is counted and logged, and the pass is retried with an
//!   exponential backoff (1 s doubling, up to `maxBackoffSeconds`).
//! * A bgpvpn whose data is malformed or inconsistent (missing or ill-typed fields, VNI out of
//!   range, bad route target, an association that the bgpvpn lists but the association listing
//!   lacks, ...) is reported (`Synced=False` reason `InvalidNeutronData`, Warning Event, metric)
//!   and its existing objects are kept exactly as they are. Bindings in a namespace whose Kuryr
//!   objects cannot be read are kept too.
//!
//! # Authentication
//!
//! Either `credentials` (a `clouds.yaml` in a Secret, read by the operator only; Keystone v3
//! password or application credential; the `network` endpoint from the catalog by region and
//! interface; the token renewed before it expires) or `neutronUrl` alone (no authentication, for
//! tests and `noauth` Neutron: requests carry `X-Roles: admin`). See [`auth`].

pub mod auth;
pub mod mapping;
pub mod metrics;
pub mod neutron;
mod sync;

use std::time::Duration;

use serde::Deserialize;

pub use metrics::{SyncMetrics, register_metrics, sync_metrics};
pub use sync::{CycleReport, Syncer};

/// Field manager of every write of the sync.
pub const FIELD_MANAGER: &str = "bgpvpn-openstack-sync";
/// Label (with [`MANAGED_BY_VALUE`]) that marks the objects the sync owns.
pub const MANAGED_BY_LABEL: &str = "bgpvpn.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "openstack-sync";
/// Label and annotation: the Neutron bgpvpn id an object mirrors.
pub const BGPVPN_ID_KEY: &str = "bgpvpn.io/openstack-bgpvpn-id";
/// Annotation: the Neutron project of the bgpvpn / association.
pub const PROJECT_ID_ANNOTATION: &str = "bgpvpn.io/openstack-project-id";
/// Namespace label, set by the cluster admin: the OpenStack project (id) the namespace belongs
/// to. An association reaches only the namespaces mapped to its project.
pub const NAMESPACE_PROJECT_LABEL: &str = "bgpvpn.io/openstack-project-id";
/// Namespace label the cluster admin sets to the Neutron network the namespace's pods are on,
/// for clusters without Kuryr (the namespace then stands for that network).
pub const NAMESPACE_NETWORK_LABEL: &str = "bgpvpn.io/openstack-network-id";
/// What kind of Neutron object a `BGPVPN` mirrors, when it is not a networking-bgpvpn bgpvpn.
pub const SOURCE_ANNOTATION: &str = "bgpvpn.io/openstack-source";
/// [`SOURCE_ANNOTATION`] of a router of Neutron's own EVPN (`evpn_vni`).
pub const SOURCE_EVPN_ROUTER: &str = "evpn-router";
/// Annotation: the Neutron name of the bgpvpn (or router).
pub const NAME_ANNOTATION: &str = "bgpvpn.io/openstack-name";
/// Annotation: the Neutron association a binding mirrors.
pub const ASSOCIATION_ID_ANNOTATION: &str = "bgpvpn.io/openstack-association-id";
/// Annotation: `router`, `network`, `port` or `evpn-router`.
pub const ASSOCIATION_TYPE_ANNOTATION: &str = "bgpvpn.io/openstack-association-type";

/// The `openstack:` section of the operator configuration. Absent = sync off.
///
/// ```yaml
/// openstack:
///   credentials:                 # a clouds.yaml in a Secret (see `auth`)
///     secretName: openstack-cloud
///     namespace: bgpvpn-system   # default: $POD_NAMESPACE
///     key: clouds.yaml           # default
///     cloud: openstack           # the entry under `clouds:`; default "openstack"
///   neutronUrl: http://neutron:9696   # optional with credentials (overrides the catalog);
///                                     # alone: no authentication (tests, noauth Neutron)
///   pollIntervalSeconds: 30      # default 30
///   requestTimeoutSeconds: 10    # per HTTP request; default 10
///   pageSize: 200                # Neutron `limit`; default 200
///   maxBackoffSeconds: 120       # retry backoff cap after failures; default 120
///   evpnRouters:                 # optional: mirror Neutron 2026.2's EVPN routers (evpn_vni)
///     bgpAsn: 64999              # [ovn_evpn] bgp_as of the cloud's OVN agents
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default)]
    pub credentials: Option<CredentialsRef>,
    #[serde(default)]
    pub neutron_url: Option<String>,
    #[serde(default)]
    pub poll_interval_seconds: Option<u64>,
    #[serde(default)]
    pub request_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u32>,
    #[serde(default)]
    pub max_backoff_seconds: Option<u64>,
    /// Mirror the routers of Neutron's own EVPN (2026.2, `evpn_vni`) too.
    #[serde(default)]
    pub evpn_routers: Option<EvpnRoutersConfig>,
}

/// The part of Neutron's EVPN that its API does not show.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvpnRoutersConfig {
    /// The AS of the cloud's EVPN routers: `[ovn_evpn] bgp_as` of its OVN agents. Their FRR
    /// derives each router's route target from it.
    pub bgp_asn: u32,
}

/// Where the `clouds.yaml` is.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsRef {
    pub secret_name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub cloud: Option<String>,
}

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PAGE_SIZE: u32 = 200;
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(120);

impl SyncConfig {
    /// The checks serde cannot make. The operator may call this when it loads its configuration.
    pub fn check(&self) -> Result<(), String> {
        if self.credentials.is_none() && self.neutron_url.is_none() {
            return Err(
                "openstack: set credentials (a clouds.yaml Secret) or neutronUrl (no authentication)".into(),
            );
        }
        if let Some(url) = &self.neutron_url {
            let parsed =
                reqwest::Url::parse(url).map_err(|e| format!("openstack.neutronUrl {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "openstack.neutronUrl {url:?}: only http and https are supported"
                ));
            }
        }
        if let Some(c) = &self.credentials
            && c.secret_name.is_empty()
        {
            return Err("openstack.credentials.secretName is empty".into());
        }
        for (field, value) in [
            ("pollIntervalSeconds", self.poll_interval_seconds),
            ("requestTimeoutSeconds", self.request_timeout_seconds),
            ("maxBackoffSeconds", self.max_backoff_seconds),
        ] {
            if value == Some(0) {
                return Err(format!("openstack.{field} must be at least 1"));
            }
        }
        if self.evpn_routers.as_ref().is_some_and(|e| e.bgp_asn == 0) {
            return Err("openstack.evpnRouters.bgpAsn must be an AS number (1..4294967295)".into());
        }
        if self.page_size == Some(0) {
            return Err("openstack.pageSize must be at least 1".into());
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_POLL_INTERVAL)
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }

    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    pub fn max_backoff(&self) -> Duration {
        self.max_backoff_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_MAX_BACKOFF)
    }
}

/// Where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Config,
    Credentials,
    Keystone,
    Neutron,
    Kubernetes,
}

/// What kind of failure it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Connection refused, DNS, TLS, timeout.
    Unreachable,
    /// 401 (after one renewal of the token).
    Unauthorized,
    /// Any other non-success HTTP status.
    Status(u16),
    /// Not the JSON document expected (bad JSON, missing or ill-typed parts, broken pagination).
    BadResponse,
    /// Anything else (configuration mistakes, missing objects).
    Other,
}

/// A failure of one pass of the sync. Never carries a credential.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyncError {
    pub stage: Stage,
    pub kind: Kind,
    pub message: String,
}

impl SyncError {
    pub fn new(stage: Stage, kind: Kind, message: impl Into<String>) -> Self {
        SyncError {
            stage,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn kube(context: &str, e: kube::Error) -> Self {
        let kind = match &e {
            kube::Error::Api(s) if s.code == 401 => Kind::Unauthorized,
            kube::Error::Api(s) => Kind::Status(s.code),
            kube::Error::SerdeError(_) => Kind::BadResponse,
            _ => Kind::Unreachable,
        };
        SyncError::new(Stage::Kubernetes, kind, format!("{context}: {e}"))
    }

    /// The reason in `CamelCase`, for conditions and Events (e.g. `NeutronUnreachable`).
    pub fn reason(&self) -> String {
        let stage = match self.stage {
            Stage::Config => "Config",
            Stage::Credentials => "Credentials",
            Stage::Keystone => "Keystone",
            Stage::Neutron => "Neutron",
            Stage::Kubernetes => "Kubernetes",
        };
        let kind = match self.kind {
            Kind::Unreachable => "Unreachable",
            Kind::Unauthorized => "Unauthorized",
            Kind::Status(s) if s >= 500 => "ServerError",
            Kind::Status(_) => "RequestRefused",
            Kind::BadResponse => "BadResponse",
            Kind::Other => "Error",
        };
        format!("{stage}{kind}")
    }

    /// The reason in `snake_case`, for the metric label.
    pub fn metric_reason(&self) -> &'static str {
        match (self.stage, self.kind) {
            (Stage::Config, _) => "config",
            (Stage::Credentials, _) => "credentials",
            (Stage::Keystone, Kind::Unreachable) => "keystone_unreachable",
            (Stage::Keystone, Kind::Unauthorized) => "keystone_unauthorized",
            (Stage::Keystone, Kind::BadResponse) => "keystone_bad_response",
            (Stage::Keystone, _) => "keystone_error",
            (Stage::Neutron, Kind::Unreachable) => "neutron_unreachable",
            (Stage::Neutron, Kind::Unauthorized) => "neutron_unauthorized",
            (Stage::Neutron, Kind::BadResponse) => "neutron_bad_response",
            (Stage::Neutron, _) => "neutron_error",
            (Stage::Kubernetes, _) => "kubernetes",
        }
    }
}

/// Runs the sync loop until `shutdown` resolves. Called only on the elected leader.
///
/// Failures of a pass are reported and retried inside; only a configuration that can never work
/// is returned as an error.
pub async fn run(
    client: kube::Client,
    config: SyncConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), crate::Error> {
    config.check().map_err(crate::Error::OpenStack)?;
    let syncer =
        Syncer::new(client, config, sync_metrics()).map_err(|e| crate::Error::OpenStack(e.to_string()))?;
    syncer.run(shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_checks() {
        let c: SyncConfig = serde_yaml::from_str(
            "credentials: {secretName: os, namespace: ops, cloud: prod}\npollIntervalSeconds: 5\npageSize: 50\n",
        )
        .unwrap();
        assert!(c.check().is_ok());
        assert_eq!(c.poll_interval(), Duration::from_secs(5));
        assert_eq!(c.request_timeout(), DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(c.page_size(), 50);
        assert!(
            serde_yaml::from_str::<SyncConfig>("pollInterval: 5\n")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        assert!(SyncConfig::default().check().unwrap_err().contains("credentials"));
        let bad = SyncConfig {
            neutron_url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(bad.check().is_err());
        let zero = SyncConfig {
            neutron_url: Some("http://x:9696".into()),
            poll_interval_seconds: Some(0),
            ..Default::default()
        };
        assert!(zero.check().unwrap_err().contains("pollIntervalSeconds"));
        assert!(DEFAULT_POLL_INTERVAL <= Duration::from_secs(30));
    }

    #[test]
    fn reasons() {
        let e = SyncError::new(Stage::Neutron, Kind::Status(503), "x");
        assert_eq!(e.reason(), "NeutronServerError");
        assert_eq!(e.metric_reason(), "neutron_error");
        assert_eq!(
            SyncError::new(Stage::Keystone, Kind::Unauthorized, "x").reason(),
            "KeystoneUnauthorized"
        );
    }
}
