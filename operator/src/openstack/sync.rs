//! One pass of the sync (read everything, then write the difference) and the loop around it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgpvpn_crds::conditions::{self, types::SYNCED};
use bgpvpn_crds::validate::is_uuid;
use bgpvpn_crds::{Bgpvpn, BgpvpnSpec, VniBinding};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret as KubeSecret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::{Value, json};

use super::auth::{Keystone, http_builder, parse_clouds_yaml};
use super::mapping::{self, Desired, DesiredBinding, DesiredVpn, KuryrIndex};
use super::neutron::{Access, Neutron};
use super::*;
use crate::events::Events;
use crate::guard::Guarded;
use crate::kuryr::{KuryrNetwork, KuryrPort};
use crate::owned::{Created, Deleted, OwnedWriter};
use crate::reasons;
use crate::view::UnreadableObject;

const API_VERSION: &str = "bgpvpn.io/v1alpha1";
/// Events about one failure go to at most this many BGPVPNs.
const MAX_FAILURE_EVENTS: usize = 20;

/// What one successful pass saw and did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CycleReport {
    /// bgpvpns read from Neutron.
    pub bgpvpns: usize,
    /// Neutron ids of the bgpvpns refused as malformed (their objects are kept as they are).
    pub invalid: Vec<String>,
    /// Parts of bgpvpns that are not mirrored.
    pub unsupported: Vec<String>,
    /// `BGPVPN <name>` / `VNIBinding <ns>/<name>` taken by an object the sync does not own.
    pub clashes: Vec<String>,
    /// Writes that the API server refused (reported; retried next pass).
    pub write_errors: Vec<String>,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Owned objects left as they are (malformed Neutron data, unreadable Kuryr objects, clash).
    pub kept: usize,
    pub status_writes: usize,
    pub duration: Duration,
}

impl CycleReport {
    /// Whether the pass wrote any object (not counting status).
    pub fn changed(&self) -> bool {
        self.created + self.updated + self.deleted > 0
    }
}

/// Lists `K` (every namespace) with `lp`: the objects that can be read, and those that cannot
/// (one of those never fails the list).
async fn list_guarded<K>(
    client: &kube::Client,
    lp: &ListParams,
) -> Result<(Vec<K>, Vec<UnreadableObject>), kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let items = Api::<Guarded<K>>::all(client.clone()).list(lp).await?.items;
    let (mut readable, mut unreadable) = (Vec::new(), Vec::new());
    for item in items {
        match item.into_inner() {
            Ok(obj) => readable.push(Arc::unwrap_or_clone(obj)),
            Err(u) => unreadable.push(UnreadableObject::new(&K::api_version(&()), &K::kind(&()), &u)),
        }
    }
    Ok((readable, unreadable))
}

/// The labelled bindings that are the sync's (their BGPVPN is the sync's and admits their
/// namespace), and the others.
fn sort_out_bindings(labelled: Vec<VniBinding>, owned_vpns: &[Bgpvpn]) -> (Vec<VniBinding>, Vec<VniBinding>) {
    labelled.into_iter().partition(|b| {
        let ns = b.namespace().unwrap_or_default();
        owned_vpns
            .iter()
            .find(|v| v.name_any() == b.spec.bgpvpn)
            .is_some_and(|v| v.spec.allowed_namespaces.names.contains(&ns))
    })
}

/// An Event to publish (unless `key` is set and the same message went out already).
struct PendingEvent {
    /// Empty: always published; else the problem it reports, published once per change.
    key: String,
    message: String,
    type_: EventType,
    reason: &'static str,
    regarding: ObjectReference,
}

/// What the writing half of a pass collects.
#[derive(Default)]
struct Outcome {
    report: CycleReport,
    events: Vec<PendingEvent>,
}

impl Outcome {
    fn event(
        &mut self,
        key: String,
        message: String,
        type_: EventType,
        reason: &'static str,
        regarding: ObjectReference,
    ) {
        self.events.push(PendingEvent {
            key,
            message,
            type_,
            reason,
            regarding,
        });
    }
}

/// One object the sync mirrors: as read (if it exists) and as Neutron wants it.
struct Mirror<'a, K> {
    kind: &'static str,
    namespace: Option<&'a str>,
    name: &'a str,
    neutron_id: &'a str,
    /// The owned object as read, and whether it differs from what is wanted.
    have: Option<(&'a K, bool)>,
    /// The server-side apply body of an update (every owned field present).
    apply_body: Value,
    /// The object to create when there is none.
    new_object: K,
    /// What to say when the name is taken by an object the sync does not own.
    clash_message: String,
}

/// How one mirrored object was written.
enum Mirrored {
    Unchanged,
    Updated,
    Created,
    /// Refused, or its name taken: what depends on it waits.
    NotWritten,
}

fn path(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The sync: holds the clients, the Keystone session and what was reported already.
pub struct Syncer {
    client: kube::Client,
    /// Every write of a BGPVPN or VNIBinding the sync owns.
    writer: OwnedWriter,
    config: SyncConfig,
    metrics: Arc<SyncMetrics>,
    events: Events,
    /// The Neutron client and the hash of the clouds.yaml it was built from.
    neutron: Option<(u64, Neutron)>,
    /// Problems already reported (key → message), so Events and logs follow changes only.
    reported: HashMap<String, String>,
    /// The reason of the failure being reported, while passes fail.
    failing: Option<String>,
}

fn kube_err(context: &str) -> impl FnOnce(kube::Error) -> SyncError + '_ {
    move |e| SyncError::kube(context, e)
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn owned_selector() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
}

fn subset_differs(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().any(|(k, v)| have.get(k) != Some(v))
}

fn reference(kind: &str, namespace: Option<&str>, name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        uid,
        ..Default::default()
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The BGPVPN as written by server-side apply: every field the sync owns is present (empty lists,
/// `null`), so a value that disappears from Neutron is cleared rather than left behind.
fn vpn_apply_body(name: &str, want: &DesiredVpn, uid: Option<String>) -> Value {
    let s = &want.spec;
    let mut metadata = json!({"name": name, "labels": want.labels, "annotations": want.annotations});
    if let Some(uid) = uid {
        // an owned object replaced by a hand-made one of the same name is refused (uid is immutable)
        metadata["uid"] = Value::String(uid);
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": "BGPVPN",
        "metadata": metadata,
        "spec": {
            "type": s.vpn_type,
            "vni": s.vni,
            "routeTargets": s.route_targets,
            "importTargets": s.import_targets,
            "exportTargets": s.export_targets,
            "routeDistinguishers": s.route_distinguishers,
            "localPref": s.local_pref,
            "allowedNamespaces": {"all": false, "selector": null, "names": s.allowed_namespaces.names},
        },
    })
}

fn binding_apply_body(want: &DesiredBinding, uid: Option<String>) -> Value {
    let mut spec = serde_json::to_value(&want.spec).expect("a binding spec serializes");
    spec["advertisePrefixes"] = json!(want.spec.advertise_prefixes);
    let mut metadata = json!({"name": want.name, "namespace": want.namespace, "labels": want.labels, "annotations": want.annotations});
    if let Some(uid) = uid {
        metadata["uid"] = Value::String(uid);
    }
    json!({"apiVersion": API_VERSION, "kind": "VNIBinding", "metadata": metadata, "spec": spec})
}

impl Syncer {
    /// A sync with its own metrics (tests) or the process-wide ones ([`super::run`]).
    pub fn new(
        client: kube::Client,
        config: SyncConfig,
        metrics: Arc<SyncMetrics>,
    ) -> Result<Self, SyncError> {
        config
            .check()
            .map_err(|m| SyncError::new(Stage::Config, Kind::Other, m))?;
        let instance = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty());
        let events = Events::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Ok(Syncer {
            writer: OwnedWriter::new(client.clone(), FIELD_MANAGER),
            client,
            config,
            metrics,
            events,
            neutron: None,
            reported: HashMap::new(),
            failing: None,
        })
    }

    /// Passes until `shutdown`: every poll interval after a success, with an exponential backoff
    /// (1 s doubling, ±10 %, capped at `maxBackoffSeconds`) after failures.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        tracing::info!(
            poll_s = self.config.poll_interval().as_secs(),
            "OpenStack sync started"
        );
        loop {
            let next = tokio::select! {
                r = self.pass() => match r {
                    Ok(_) => {
                        failures = 0;
                        self.config.poll_interval()
                    }
                    Err(_) => {
                        failures = failures.saturating_add(1);
                        backoff(failures, self.config.max_backoff())
                    }
                },
                _ = &mut shutdown => break,
            };
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("OpenStack sync stopped");
    }

    /// One pass, with its outcome reported (metrics, conditions, Events, log).
    pub async fn pass(&mut self) -> Result<CycleReport, SyncError> {
        let started = Instant::now();
        let result = self.try_pass().await;
        let elapsed = started.elapsed();
        self.metrics.pass_duration.observe(elapsed.as_secs_f64());
        match result {
            Ok(mut report) => {
                report.duration = elapsed;
                self.metrics
                    .passes
                    .get_or_create(&metrics::ResultLabel { result: "ok" })
                    .inc();
                self.metrics.up.set(1);
                self.metrics
                    .last_success
                    .set(Timestamp::now().as_millisecond() as f64 / 1000.0);
                if let Some(reason) = self.failing.take() {
                    tracing::info!(previous = %reason, "OpenStack sync recovered");
                }
                if report.changed() {
                    tracing::info!(
                        created = report.created,
                        updated = report.updated,
                        deleted = report.deleted,
                        ms = elapsed.as_millis() as u64,
                        "OpenStack sync pass wrote changes"
                    );
                } else {
                    tracing::debug!(
                        bgpvpns = report.bgpvpns,
                        ms = elapsed.as_millis() as u64,
                        "OpenStack sync pass: no change"
                    );
                }
                Ok(report)
            }
            Err(e) => {
                self.report_failure(&e).await;
                Err(e)
            }
        }
    }

    async fn neutron(&mut self) -> Result<Neutron, SyncError> {
        let timeout = self.config.request_timeout();
        let page = self.config.page_size();
        let Some(creds) = self.config.credentials.clone() else {
            if let Some((_, n)) = &self.neutron {
                return Ok(n.clone());
            }
            let url = self
                .config
                .neutron_url
                .clone()
                .expect("checked: credentials or neutronUrl");
            let http = http_builder(timeout)
                .build()
                .map_err(|e| SyncError::new(Stage::Config, Kind::Other, format!("HTTP client: {e}")))?;
            let n = Neutron::new(http, Access::NoAuth { url }, page, self.metrics.clone());
            self.neutron = Some((0, n.clone()));
            return Ok(n);
        };
        let cred_err = |m: String| SyncError::new(Stage::Credentials, Kind::Other, m);
        let namespace = creds
            .namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                cred_err("openstack.credentials.namespace is not set and $POD_NAMESPACE is empty".into())
            })?;
        let key = creds.key.clone().unwrap_or_else(|| "clouds.yaml".into());
        let cloud = creds.cloud.clone().unwrap_or_else(|| "openstack".into());
        let secret = Api::<KubeSecret>::namespaced(self.client.clone(), &namespace)
            .get(&creds.secret_name)
            .await
            .map_err(|e| {
                let mut err = SyncError::kube(&format!("Secret {namespace}/{}", creds.secret_name), e);
                err.stage = Stage::Credentials;
                err
            })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&key))
            .map(|b| b.0.clone())
            .ok_or_else(|| {
                cred_err(format!(
                    "Secret {namespace}/{} has no key {key:?}",
                    creds.secret_name
                ))
            })?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&bytes, &cloud).hash(&mut h);
        let hash = h.finish();
        if let Some((old, n)) = &self.neutron
            && *old == hash
        {
            return Ok(n.clone());
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            cred_err(format!(
                "Secret {namespace}/{} key {key:?} is not UTF-8",
                creds.secret_name
            ))
        })?;
        let cloud_config = parse_clouds_yaml(&text, &cloud).map_err(cred_err)?;
        let keystone = Keystone::new(&cloud_config, timeout, self.config.neutron_url.clone())?;
        tracing::info!(secret = %format!("{namespace}/{}", creds.secret_name), %cloud, keystone = ?keystone, "loaded OpenStack credentials");
        let n = Neutron::new(
            keystone.http().clone(),
            Access::Keystone(Arc::new(keystone)),
            page,
            self.metrics.clone(),
        );
        self.neutron = Some((hash, n.clone()));
        Ok(n)
    }

    /// What the admin's Namespace labels say: the project of a namespace
    /// ([`NAMESPACE_PROJECT_LABEL`]) and the Neutron network of its pods
    /// ([`NAMESPACE_NETWORK_LABEL`]). A network label that is not a UUID is logged and ignored.
    async fn admin_mapping(&self) -> Result<mapping::AdminMapping, SyncError> {
        let (namespaces, _) = list_guarded::<Namespace>(&self.client, &ListParams::default())
            .await
            .map_err(kube_err("list the namespaces mapped to OpenStack"))?;
        let mut admin = mapping::AdminMapping::default();
        for ns in &namespaces {
            let label = |key: &str| {
                ns.labels()
                    .get(key)
                    .map(|v| v.trim().to_ascii_lowercase())
                    .filter(|v| !v.is_empty())
            };
            if let Some(project) = label(NAMESPACE_PROJECT_LABEL) {
                admin.projects.insert(ns.name_any(), project);
            }
            match label(NAMESPACE_NETWORK_LABEL) {
                Some(network) if is_uuid(&network) => {
                    admin.networks.insert(ns.name_any(), network);
                }
                Some(network) => tracing::warn!(
                    namespace = %ns.name_any(),
                    "the Namespace label {NAMESPACE_NETWORK_LABEL}={network:?} is not a Neutron network id (UUID): ignored"
                ),
                None => {}
            }
        }
        Ok(admin)
    }

    /// The Kuryr objects, and those that cannot be read. Without the Kuryr CRDs, Kuryr says
    /// nothing: networks reach namespaces only through the admin's labels.
    async fn kuryr(&self) -> Result<(KuryrIndex, Vec<UnreadableObject>), SyncError> {
        let lp = ListParams::default();
        let nets = list_guarded::<KuryrNetwork>(&self.client, &lp).await;
        let ports = list_guarded::<KuryrPort>(&self.client, &lp).await;
        let ((nets, mut unreadable), (ports, bad_ports)) = match (nets, ports) {
            (Ok(n), Ok(p)) => (n, p),
            (Err(e), _) | (_, Err(e)) if is_status(&e, 404) => {
                tracing::debug!(
                    "the Kuryr CRDs are not installed: only the admin's namespace labels map networks"
                );
                return Ok((KuryrIndex::default(), Vec::new()));
            }
            (Err(e), _) => return Err(SyncError::kube("list KuryrNetwork", e)),
            (_, Err(e)) => return Err(SyncError::kube("list KuryrPort", e)),
        };
        unreadable.extend(bad_ports);
        let mut index = KuryrIndex::new(&nets, &ports);
        // what an unreadable object says is not known: what the sync owns there is kept
        index
            .uncertain_namespaces
            .extend(unreadable.iter().filter_map(|u| u.namespace.clone()));
        Ok((index, unreadable))
    }

    async fn try_pass(&mut self) -> Result<CycleReport, SyncError> {
        let neutron = self.neutron().await?;
        let mut snapshot = neutron.snapshot().await?;
        let (kuryr, mut unreadable) = self.kuryr().await?;
        let admin = self.admin_mapping().await?;
        let evpn_asn = self.config.evpn_routers.as_ref().map(|e| e.bgp_asn);
        if evpn_asn.is_some() {
            snapshot.evpn_routers = neutron.evpn_routers().await?;
        }
        // Kuryr says which router a namespace's network is behind; otherwise Neutron's router
        // interfaces do
        if evpn_asn.is_some() || !admin.networks.is_empty() {
            snapshot.router_interfaces = neutron.router_interfaces().await?;
        }
        let (owned_vpns, bad_vpns) = list_guarded::<Bgpvpn>(&self.client, &owned_selector())
            .await
            .map_err(kube_err("list owned BGPVPNs"))?;
        let (labelled_bindings, bad_bindings) = list_guarded::<VniBinding>(&self.client, &owned_selector())
            .await
            .map_err(kube_err("list owned VNIBindings"))?;
        // Everything is read: from here on, nothing aborts the pass.

        // The label is only a filter: a tenant can put it on a binding of its own. A binding is
        // the sync's when its BGPVPN (cluster-scoped: only admins and the sync write it) is the
        // sync's and admits the binding's namespace, which only the sync made it do. The others
        // are left to their tenants (the label gives them nothing), and said so.
        let (owned_bindings, forged) = sort_out_bindings(labelled_bindings, &owned_vpns);

        // owned objects that cannot be read are left as they are, and so is what they concern
        let unreadable_vpns: BTreeSet<String> = bad_vpns.iter().map(|u| u.name.clone()).collect();
        let unreadable_bindings: BTreeSet<(String, String)> = bad_bindings
            .iter()
            .map(|u| (u.namespace.clone().unwrap_or_default(), u.name.clone()))
            .collect();
        unreadable.extend(bad_vpns);
        unreadable.extend(bad_bindings);
        let mut desired = mapping::desired(&snapshot, &kuryr, &admin, evpn_asn);
        desired
            .uncertain_namespaces
            .extend(unreadable_bindings.iter().map(|(ns, _)| ns.clone()));
        // where Kuryr cannot be read, the sync's own bindings stay admitted, while their
        // namespace is still mapped to a project of the BGPVPN
        for b in &owned_bindings {
            let ns = b.namespace().unwrap_or_default();
            let mapped = desired
                .vpns
                .get(&b.spec.bgpvpn)
                .is_some_and(|v| admin.projects.get(&ns).is_some_and(|p| v.projects.contains(p)));
            if desired.uncertain_namespaces.contains(&ns)
                && !desired.bindings.contains_key(&(ns.clone(), b.name_any()))
                && mapped
            {
                desired.admit(&b.spec.bgpvpn, &ns);
            }
        }
        let report = CycleReport {
            bgpvpns: snapshot.bgpvpns.len() + snapshot.evpn_routers.len(),
            invalid: desired.invalid.iter().map(|p| p.neutron_id.clone()).collect(),
            unsupported: desired.unsupported.iter().map(|p| p.message.clone()).collect(),
            ..Default::default()
        };
        let mut out = Outcome {
            report,
            events: Vec::new(),
        };

        // BGPVPNs: create or update.
        let owned_vpn: BTreeMap<String, &Bgpvpn> = owned_vpns.iter().map(|v| (v.name_any(), v)).collect();
        let vpns_api: Api<Bgpvpn> = Api::all(self.client.clone());
        let mut not_written: BTreeSet<String> = BTreeSet::new();
        let mut created_vpns: BTreeSet<String> = BTreeSet::new();
        for (name, want) in &desired.vpns {
            if unreadable_vpns.contains(name) {
                not_written.insert(name.clone());
                out.report.kept += 1;
                continue;
            }
            let have = owned_vpn.get(name).map(|have| {
                // allowedPrefixes is the admin's to set on a mirrored BGPVPN: not the sync's
                let have_spec = BgpvpnSpec {
                    allowed_prefixes: want.spec.allowed_prefixes.clone(),
                    ..have.spec.clone()
                };
                let differs = have_spec != want.spec
                    || subset_differs(have.labels(), &want.labels)
                    || subset_differs(have.annotations(), &want.annotations);
                (*have, differs)
            });
            let mut new_object = Bgpvpn::new(name, want.spec.clone());
            new_object.metadata.labels = Some(want.labels.clone());
            new_object.metadata.annotations = Some(want.annotations.clone());
            let mirror = Mirror {
                kind: "BGPVPN",
                namespace: None,
                name,
                neutron_id: &want.neutron_id,
                apply_body: vpn_apply_body(name, want, have.and_then(|(h, _)| h.uid())),
                have,
                new_object,
                clash_message: format!(
                    "Neutron bgpvpn {} maps to BGPVPN {name}, which exists and is not managed by the OpenStack sync \
                     (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); it is left alone and the bgpvpn is not mirrored",
                    want.neutron_id
                ),
            };
            match self.mirror(&vpns_api, mirror, &mut out).await {
                Mirrored::NotWritten => {
                    not_written.insert(name.clone());
                }
                Mirrored::Created => {
                    created_vpns.insert(name.clone());
                }
                Mirrored::Unchanged | Mirrored::Updated => {}
            }
        }

        // VNIBindings: create or update, except those of BGPVPNs that could not be written.
        let owned_binding: BTreeMap<(String, String), &VniBinding> = owned_bindings
            .iter()
            .map(|b| ((b.namespace().unwrap_or_default(), b.name_any()), b))
            .collect();
        for (key, want) in &desired.bindings {
            if not_written.contains(&want.spec.bgpvpn) || unreadable_bindings.contains(key) {
                if owned_binding.contains_key(key) || unreadable_bindings.contains(key) {
                    out.report.kept += 1;
                }
                continue;
            }
            let (ns, name) = key;
            let have = owned_binding.get(key).map(|have| {
                let differs = have.spec != want.spec
                    || subset_differs(have.labels(), &want.labels)
                    || subset_differs(have.annotations(), &want.annotations);
                (*have, differs)
            });
            let mut new_object = VniBinding::new(name, want.spec.clone());
            new_object.metadata.namespace = Some(ns.clone());
            new_object.metadata.labels = Some(want.labels.clone());
            new_object.metadata.annotations = Some(want.annotations.clone());
            let mirror = Mirror {
                kind: "VNIBinding",
                namespace: Some(ns),
                name,
                neutron_id: &want.neutron_id,
                apply_body: binding_apply_body(want, have.and_then(|(h, _)| h.uid())),
                have,
                new_object,
                clash_message: format!(
                    "a Neutron association of bgpvpn {} maps to VNIBinding {ns}/{name}, which exists and is not managed by the OpenStack sync; it is left alone",
                    want.neutron_id
                ),
            };
            self.mirror(&Api::namespaced(self.client.clone(), ns), mirror, &mut out)
                .await;
        }

        // Deletions: only owned objects, only when Neutron no longer has them, never for kept ones.
        for b in &owned_bindings {
            let key = (b.namespace().unwrap_or_default(), b.name_any());
            if desired.bindings.contains_key(&key) {
                continue;
            }
            let id = b.labels().get(BGPVPN_ID_KEY).cloned().unwrap_or_default();
            if desired.keep.contains(&id)
                || desired.uncertain_namespaces.contains(&key.0)
                || not_written.contains(&b.spec.bgpvpn)
            {
                out.report.kept += 1;
                continue;
            }
            let api: Api<VniBinding> = Api::namespaced(self.client.clone(), &key.0);
            let why = format!("deleted: the Neutron association of bgpvpn {id} is gone");
            self.delete_owned("VNIBinding", &api, b, why, &mut out).await;
        }
        for v in &owned_vpns {
            let name = v.name_any();
            if desired.vpns.contains_key(&name) {
                continue;
            }
            let id = v.labels().get(BGPVPN_ID_KEY).cloned().unwrap_or_default();
            if desired.keep.contains(&id) {
                out.report.kept += 1;
                continue;
            }
            let why = format!("deleted: Neutron bgpvpn {id} is gone");
            self.delete_owned("BGPVPN", &vpns_api, v, why, &mut out).await;
        }
        let Outcome { mut report, events } = out;

        self.write_synced_conditions(&owned_vpns, &created_vpns, &desired, &mut report)
            .await;
        self.report_problems(&forged, &desired, &unreadable, &owned_vpn, events, &report)
            .await;
        self.metrics.neutron_bgpvpns.set(report.bgpvpns as i64);
        self.metrics.invalid_bgpvpns.set(report.invalid.len() as i64);
        self.metrics.name_clashes.set(report.clashes.len() as i64);
        Ok(report)
    }

    /// The `Synced` condition of every owned BGPVPN that still exists, and of those just made.
    async fn write_synced_conditions(
        &self,
        owned_vpns: &[Bgpvpn],
        created_vpns: &BTreeSet<String>,
        desired: &Desired,
        report: &mut CycleReport,
    ) {
        let now = Time(Timestamp::now());
        let invalid: BTreeMap<&str, &str> = desired
            .invalid
            .iter()
            .map(|p| (p.vpn.as_str(), p.message.as_str()))
            .collect();
        let mut statuses: Vec<(String, Vec<Condition>, Condition)> = Vec::new();
        for v in owned_vpns {
            let name = v.name_any();
            let previous = v
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let cond = match (invalid.get(name.as_str()), desired.vpns.get(&name)) {
                (Some(msg), _) => conditions::condition(
                    SYNCED,
                    false,
                    "InvalidNeutronData",
                    truncate(
                        &format!("Neutron data refused, object left as it was: {msg}"),
                        1000,
                    ),
                    v.metadata.generation,
                    &now,
                ),
                (None, Some(want)) => self.synced_condition(&name, want, desired, report, &now),
                (None, None) => continue, // deleted above
            };
            statuses.push((name, previous, cond));
        }
        for name in created_vpns {
            let want = &desired.vpns[name];
            statuses.push((
                name.clone(),
                Vec::new(),
                self.synced_condition(name, want, desired, report, &now),
            ));
        }
        for (name, previous, cond) in statuses {
            if self.write_condition(&name, &previous, cond).await {
                report.status_writes += 1;
            }
        }
    }

    /// Reports what is wrong (Events and log), once per change; counts it.
    async fn report_problems(
        &mut self,
        forged: &[VniBinding],
        desired: &Desired,
        unreadable: &[UnreadableObject],
        owned_vpn: &BTreeMap<String, &Bgpvpn>,
        mut events: Vec<PendingEvent>,
        report: &CycleReport,
    ) {
        let mut current: BTreeSet<String> = BTreeSet::new();
        for b in forged {
            let (ns, name) = (b.namespace().unwrap_or_default(), b.name_any());
            let key = format!("forged/{ns}/{name}");
            current.insert(key.clone());
            let message = format!(
                "this VNIBinding carries the label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}, but the OpenStack sync did not make it: \
                 BGPVPN {} does not admit namespace {ns} for the sync; the sync leaves it alone, and the label gives it nothing",
                b.spec.bgpvpn
            );
            events.push(PendingEvent {
                key,
                message,
                type_: EventType::Warning,
                reason: "NotMadeBySync",
                regarding: reference("VNIBinding", Some(&ns), &name, b.uid()),
            });
        }
        for p in &desired.unmapped {
            let key = format!("unmapped/{}/{}", p.neutron_id, p.message);
            current.insert(key.clone());
            let uid = owned_vpn.get(&p.vpn).and_then(|v| v.uid());
            events.push(PendingEvent {
                key,
                message: p.message.clone(),
                type_: EventType::Warning,
                reason: "NamespaceNotMapped",
                regarding: reference("BGPVPN", None, &p.vpn, uid),
            });
        }
        for u in unreadable {
            let key = format!("unreadable/{}", u.describe());
            current.insert(key.clone());
            let message = format!(
                "{} cannot be read, so what the OpenStack sync owns there is left as it is: {}",
                u.describe(),
                u.error
            );
            events.push(PendingEvent {
                key,
                message,
                type_: EventType::Warning,
                reason: reasons::MALFORMED_OBJECT,
                regarding: u.reference(),
            });
        }
        for p in &desired.invalid {
            let key = format!("invalid/{}", p.neutron_id);
            current.insert(key.clone());
            let uid = owned_vpn.get(&p.vpn).and_then(|v| v.uid());
            events.push(PendingEvent {
                key,
                message: format!("Neutron bgpvpn {} is not mirrored: {}", p.neutron_id, p.message),
                type_: EventType::Warning,
                reason: "InvalidNeutronData",
                regarding: reference("BGPVPN", None, &p.vpn, uid),
            });
        }
        for p in &desired.unsupported {
            let key = format!("unsupported/{}/{}", p.neutron_id, p.message);
            current.insert(key.clone());
            events.push(PendingEvent {
                key,
                message: p.message.clone(),
                type_: EventType::Warning,
                reason: "Unsupported",
                regarding: reference("BGPVPN", None, &p.vpn, None),
            });
        }
        for e in &events {
            if e.key.starts_with("clash/") || e.key.starts_with("unreadable/") {
                current.insert(e.key.clone());
            }
        }
        for e in &report.write_errors {
            let key = format!("write/{e}");
            current.insert(key.clone());
            if !self.reported.contains_key(&key) {
                tracing::warn!(error = %e, "OpenStack sync: a write was refused; retrying next pass");
            }
            self.reported.insert(key, e.clone());
        }
        for e in events {
            if !e.key.is_empty() {
                if self.reported.get(&e.key) == Some(&e.message) {
                    continue;
                }
                tracing::warn!(reason = %e.reason, message = %e.message, "OpenStack sync");
                self.reported.insert(e.key, e.message.clone());
            }
            self.publish(e.type_, e.reason, &e.message, &e.regarding).await;
        }
        self.reported.retain(|k, _| current.contains(k));
        if !report.write_errors.is_empty() {
            self.metrics
                .failures
                .get_or_create(&metrics::ReasonLabel {
                    reason: "kubernetes_write",
                })
                .inc_by(report.write_errors.len() as u64);
        }
    }

    /// Brings one mirrored object to what Neutron wants: nothing when it is there, an apply of
    /// the owned fields when it differs, a create when there is none.
    async fn mirror<K>(&self, api: &Api<K>, m: Mirror<'_, K>, out: &mut Outcome) -> Mirrored
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let at = path(m.namespace, m.name);
        let regarding = |uid| reference(m.kind, m.namespace, m.name, uid);
        match m.have {
            Some((_, false)) => {
                out.report.unchanged += 1;
                Mirrored::Unchanged
            }
            Some((have, true)) => match self.writer.apply::<K>(m.namespace, m.name, &m.apply_body).await {
                Ok(()) => {
                    out.report.updated += 1;
                    self.metrics.wrote(m.kind, "update");
                    let note = format!("updated from Neutron bgpvpn {}", m.neutron_id);
                    out.event(
                        String::new(),
                        note,
                        EventType::Normal,
                        "Updated",
                        regarding(have.uid()),
                    );
                    Mirrored::Updated
                }
                Err(e) => {
                    out.report
                        .write_errors
                        .push(format!("update {} {at}: {e}", m.kind));
                    Mirrored::NotWritten
                }
            },
            None => match self.writer.create(api, &m.new_object).await {
                Ok(Created::Made { uid }) => {
                    out.report.created += 1;
                    self.metrics.wrote(m.kind, "create");
                    let note = format!("created from Neutron bgpvpn {}", m.neutron_id);
                    out.event(String::new(), note, EventType::Normal, "Created", regarding(uid));
                    Mirrored::Created
                }
                Ok(Created::NameTaken { by_uid }) => {
                    out.report.clashes.push(format!("{} {at}", m.kind));
                    let key = format!("clash/{}/{at}", m.kind);
                    out.event(
                        key,
                        m.clash_message,
                        EventType::Warning,
                        "NameClash",
                        regarding(by_uid),
                    );
                    Mirrored::NotWritten
                }
                Err(e) => {
                    out.report
                        .write_errors
                        .push(format!("create {} {at}: {e}", m.kind));
                    Mirrored::NotWritten
                }
            },
        }
    }

    /// Deletes one owned object Neutron no longer has (only the one read: uid precondition).
    async fn delete_owned<K>(&self, kind: &'static str, api: &Api<K>, obj: &K, why: String, out: &mut Outcome)
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let (namespace, name) = (obj.namespace(), obj.name_any());
        match self.writer.delete(api, &name, obj.uid()).await {
            Ok(Deleted::Deleted) => {
                out.report.deleted += 1;
                self.metrics.wrote(kind, "delete");
                let regarding = reference(kind, namespace.as_deref(), &name, obj.uid());
                out.event(String::new(), why, EventType::Normal, "Deleted", regarding);
            }
            Ok(Deleted::AlreadyGone | Deleted::Replaced) => {}
            Err(e) => {
                let at = path(namespace.as_deref(), &name);
                out.report.write_errors.push(format!("delete {kind} {at}: {e}"));
            }
        }
    }

    fn synced_condition(
        &self,
        name: &str,
        want: &DesiredVpn,
        desired: &Desired,
        report: &CycleReport,
        now: &Time,
    ) -> Condition {
        let bindings = desired
            .bindings
            .values()
            .filter(|b| b.spec.bgpvpn == name)
            .count();
        let failed: Vec<&String> = report.write_errors.iter().filter(|e| e.contains(name)).collect();
        if failed.is_empty() {
            let msg = format!(
                "mirrors Neutron bgpvpn {} with {bindings} binding(s) in {} namespace(s)",
                want.neutron_id,
                want.spec.allowed_namespaces.names.len()
            );
            conditions::condition(SYNCED, true, "Synced", msg, None, now)
        } else {
            let msg = failed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ");
            conditions::condition(SYNCED, false, "WriteFailed", truncate(&msg, 1000), None, now)
        }
    }

    /// Writes the `Synced` condition by server-side apply when it differs from `previous`.
    async fn write_condition(&self, name: &str, previous: &[Condition], mut cond: Condition) -> bool {
        if let Some(old) = conditions::find(previous, SYNCED) {
            if old.status == cond.status && old.reason == cond.reason && old.message == cond.message {
                return false;
            }
            if old.status == cond.status {
                cond.last_transition_time = old.last_transition_time.clone();
            }
        }
        let body = json!({"apiVersion": API_VERSION, "kind": "BGPVPN", "metadata": {"name": name}, "status": {"conditions": [cond]}});
        let api: Api<Bgpvpn> = Api::all(self.client.clone());
        match api
            .patch_status(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            Ok(_) => {
                self.metrics.wrote("BGPVPN", "status");
                true
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "could not write the Synced condition");
                false
            }
        }
    }

    /// Events about BGPVPNs (cluster-scoped) go to `default` (see [`crate::events`]).
    async fn publish(&self, type_: EventType, reason: &str, note: &str, regarding: &ObjectReference) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: "Sync".into(),
            secondary: None,
        };
        self.events.publish(&ev, regarding).await;
    }

    /// A failed pass: nothing was written; mark every owned BGPVPN `Synced=False`, say it once in
    /// an Event, count it.
    async fn report_failure(&mut self, e: &SyncError) {
        let reason = e.reason();
        self.metrics
            .passes
            .get_or_create(&metrics::ResultLabel { result: "failed" })
            .inc();
        self.metrics
            .failures
            .get_or_create(&metrics::ReasonLabel {
                reason: e.metric_reason(),
            })
            .inc();
        self.metrics.up.set(0);
        let first = self.failing.as_deref() != Some(reason.as_str());
        if first {
            tracing::warn!(%reason, error = %e, "OpenStack sync pass failed; every object is kept as it is, retrying with backoff");
        } else {
            tracing::debug!(%reason, error = %e, "OpenStack sync pass failed again");
        }
        let Ok((owned, _)) = list_guarded::<Bgpvpn>(&self.client, &owned_selector()).await else {
            self.failing = Some(reason);
            return;
        };
        let now = Time(Timestamp::now());
        let message = truncate(
            &format!("not synced, objects kept as they are: {}", e.message),
            1000,
        );
        for (i, v) in owned.iter().enumerate() {
            let name = v.name_any();
            let previous = v
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let cond = conditions::condition(
                SYNCED,
                false,
                &reason,
                message.clone(),
                v.metadata.generation,
                &now,
            );
            self.write_condition(&name, &previous, cond).await;
            if first && i < MAX_FAILURE_EVENTS {
                self.publish(
                    EventType::Warning,
                    "SyncFailed",
                    &message,
                    &reference("BGPVPN", None, &name, v.uid()),
                )
                .await;
            }
        }
        self.failing = Some(reason);
    }
}

/// 1 s, 2 s, 4 s, ... up to `max`, ±10 %.
pub(crate) fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16)).min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let permille = 900 + (nanos % 201) as u64; // 0.9 .. 1.1
    Duration::from_millis(base.as_millis() as u64 * permille / 1000).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        let b1 = backoff(1, cap);
        assert!(
            b1 >= Duration::from_millis(900) && b1 <= Duration::from_millis(1100),
            "{b1:?}"
        );
        let b4 = backoff(4, cap);
        assert!(
            b4 >= Duration::from_millis(7200) && b4 <= Duration::from_millis(8800),
            "{b4:?}"
        );
        assert!(backoff(30, cap) <= cap);
        assert!(backoff(30, Duration::from_secs(2)) <= Duration::from_secs(2));
    }

    #[test]
    fn apply_bodies_set_every_owned_field() {
        let want = DesiredVpn {
            neutron_id: "x".into(),
            spec: serde_json::from_value(json!({"vni": 5, "routeTargets": ["1:1"]})).unwrap(),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            annotations: BTreeMap::new(),
            projects: BTreeSet::new(),
        };
        let body = vpn_apply_body("os-x", &want, Some("u".into()));
        assert_eq!(body["spec"]["localPref"], Value::Null);
        assert_eq!(body["spec"]["importTargets"], json!([]));
        assert_eq!(
            body["spec"]["allowedNamespaces"],
            json!({"all": false, "selector": null, "names": []})
        );
        assert_eq!(body["metadata"]["uid"], "u");
        let b = DesiredBinding {
            neutron_id: "x".into(),
            namespace: "ns".into(),
            name: "os-a".into(),
            spec: serde_json::from_value(
                json!({"bgpvpn": "os-x", "routerId": "0f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f"}),
            )
            .unwrap(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        let body = binding_apply_body(&b, None);
        assert_eq!(
            body["spec"],
            json!({"bgpvpn": "os-x", "routerId": "0f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f", "advertisePrefixes": []})
        );
        assert!(body["metadata"].get("uid").is_none());
    }

    #[test]
    fn only_bindings_their_bgpvpn_admits_are_the_syncs() {
        let vpn: Bgpvpn = serde_json::from_value(
            json!({"metadata": {"name": "os-v", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "spec": {"vni": 5, "routeTargets": ["1:1"], "allowedNamespaces": {"names": ["team-a"]}}}),
        )
        .unwrap();
        let binding = |ns: &str, vpn: &str| -> VniBinding {
            serde_json::from_value(json!({"metadata": {"name": "os-b", "namespace": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
                "spec": {"bgpvpn": vpn, "podSelector": {}}}))
            .unwrap()
        };
        let labelled = vec![
            binding("team-a", "os-v"),
            binding("tenant", "os-v"),
            binding("team-a", "os-other"),
        ];
        let (own, forged) = sort_out_bindings(labelled, &[vpn]);
        let where_ = |v: &[VniBinding]| {
            v.iter()
                .map(|b| (b.namespace().unwrap(), b.spec.bgpvpn.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(where_(&own), [("team-a".to_string(), "os-v".to_string())]);
        assert_eq!(
            where_(&forged),
            [
                ("tenant".to_string(), "os-v".to_string()),
                ("team-a".to_string(), "os-other".to_string())
            ]
        );
    }
}
