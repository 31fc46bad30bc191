//! The input of one pass: a point-in-time copy of the reflector stores, as plain data (the
//! stores hand out `Arc`s, so the copy shares the objects). Nothing in here talks to the API
//! server, so [`crate::build`] is a pure function of a `ClusterView` and is tested without one.
//!
//! Pods, the kind there are most of, are held as [`PodView`]s: the few fields the build reads,
//! parsed straight from the API server's JSON.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use serde::{Deserialize, Deserializer};

use crate::guard::Unreadable;
use crate::kuryr::{KuryrNetwork, KuryrPort};

/// A Pod as the build reads it: name, labels, node, phase, addresses. Everything else of a Pod
/// (containers, volumes, conditions, managed fields, ...) is skipped while parsing, so it is
/// never allocated: a stored `PodView` takes about a tenth of the memory of a stored `Pod`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodView {
    /// Only `name`, `namespace`, `uid`, `resourceVersion`, `labels` and `deletionTimestamp`.
    #[serde(default, deserialize_with = "pod_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodViewSpec,
    #[serde(default)]
    pub status: PodViewStatus,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodViewSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub host_network: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodViewStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
    /// `lastTransitionTime` of the `PodReadyToStartContainers` condition: when the kubelet last
    /// (re)made the pod's network sandbox. The only condition kept.
    #[serde(default, rename = "conditions", deserialize_with = "sandbox_since")]
    pub sandbox_since: Option<String>,
}

fn sandbox_since<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Condition {
        #[serde(rename = "type")]
        type_: String,
        #[serde(default)]
        status: String,
        #[serde(default)]
        last_transition_time: Option<String>,
    }
    let conditions: Option<Vec<Condition>> = Option::deserialize(d)?;
    Ok(conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodReadyToStartContainers" && c.status == "True")
        .and_then(|c| c.last_transition_time))
}

impl PodView {
    /// Who holds the pod's addresses: its UID, and when its network sandbox was made (a
    /// sandbox made again, by the same pod, may come with new host interfaces).
    pub fn holder(&self) -> Option<String> {
        let uid = self.metadata.uid.as_deref()?;
        Some(match &self.status.sandbox_since {
            Some(since) => format!("{uid}@{since}"),
            None => uid.to_string(),
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct PodIp {
    pub ip: String,
}

/// The metadata of a pod, as far as the operator (and the reflector) reads it.
fn pod_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        deletion_timestamp: Option<Time>,
    }
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    })
}

impl kube::Resource for PodView {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;
    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Everything a pass reads.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub bgpvpns: Vec<Arc<Bgpvpn>>,
    pub bindings: Vec<Arc<VniBinding>>,
    pub pods: Vec<Arc<PodView>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub nodes: Vec<Arc<Node>>,
    /// `None` while the Kuryr CRDs are not installed.
    pub kuryr: Option<KuryrView>,
    /// The per-node objects as they are now (what was written, and what the agents report).
    pub node_states: Vec<Arc<EvpnNodeState>>,
    /// Objects of any of the kinds above that could not be read, and are left out of it.
    pub unreadable: Vec<UnreadableObject>,
}

/// An object that could not be read (see [`crate::guard`]), as the pass reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnreadableObject {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    pub error: String,
}

impl UnreadableObject {
    pub fn new(api_version: &str, kind: &str, u: &Unreadable) -> Self {
        UnreadableObject {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace: u.metadata.namespace.clone(),
            name: u.metadata.name.clone().unwrap_or_default(),
            uid: u.metadata.uid.clone(),
            error: u.error.clone(),
        }
    }

    /// Where an Event about it goes.
    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            namespace: self.namespace.clone(),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }

    /// `Kind namespace/name` (or `Kind name`).
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The Kuryr objects, when the Kuryr CRDs exist.
#[derive(Clone, Debug, Default)]
pub struct KuryrView {
    pub networks: Vec<Arc<KuryrNetwork>>,
    pub ports: Vec<Arc<KuryrPort>>,
}

/// Lookups over a [`ClusterView`], built once per pass.
pub struct Index<'a> {
    pub pods_by_namespace: HashMap<&'a str, Vec<&'a PodView>>,
    pub pod_by_name: HashMap<(&'a str, &'a str), &'a PodView>,
    pub namespace_labels: HashMap<&'a str, &'a BTreeMap<String, String>>,
    pub kuryr: Option<KuryrIndex<'a>>,
    pub node_states: HashMap<&'a str, &'a EvpnNodeState>,
    /// `(kind, namespace, name)` of every unreadable object ("" for cluster-scoped kinds).
    pub unreadable: HashMap<(&'a str, &'a str, &'a str), &'a UnreadableObject>,
}

/// Lookups over the Kuryr objects.
pub struct KuryrIndex<'a> {
    pub networks_by_namespace: HashMap<&'a str, Vec<&'a KuryrNetwork>>,
    pub ports_by_namespace: HashMap<&'a str, Vec<&'a KuryrPort>>,
    pub port_by_name: HashMap<(&'a str, &'a str), &'a KuryrPort>,
}

fn ns_of<K: kube::Resource>(obj: &K) -> &str {
    obj.meta().namespace.as_deref().unwrap_or_default()
}

fn name_of<K: kube::Resource>(obj: &K) -> &str {
    obj.meta().name.as_deref().unwrap_or_default()
}

impl<'a> Index<'a> {
    pub fn new(view: &'a ClusterView) -> Self {
        let mut pods_by_namespace: HashMap<&str, Vec<&PodView>> = HashMap::new();
        let mut pod_by_name = HashMap::new();
        for pod in &view.pods {
            pods_by_namespace.entry(ns_of(&**pod)).or_default().push(pod);
            pod_by_name.insert((ns_of(&**pod), name_of(&**pod)), &**pod);
        }
        for pods in pods_by_namespace.values_mut() {
            pods.sort_by_key(|p| p.name_any());
        }
        let namespace_labels = view
            .namespaces
            .iter()
            .map(|ns| (name_of(&**ns), ns.labels()))
            .collect();
        let kuryr = view.kuryr.as_ref().map(|k| {
            let mut networks_by_namespace: HashMap<&str, Vec<&KuryrNetwork>> = HashMap::new();
            for net in &k.networks {
                networks_by_namespace.entry(ns_of(&**net)).or_default().push(net);
            }
            let mut ports_by_namespace: HashMap<&str, Vec<&KuryrPort>> = HashMap::new();
            let mut port_by_name = HashMap::new();
            for port in &k.ports {
                ports_by_namespace.entry(ns_of(&**port)).or_default().push(port);
                port_by_name.insert((ns_of(&**port), name_of(&**port)), &**port);
            }
            for list in networks_by_namespace.values_mut() {
                list.sort_by(|a, b| name_of(*a).cmp(name_of(*b)));
            }
            for list in ports_by_namespace.values_mut() {
                list.sort_by(|a, b| name_of(*a).cmp(name_of(*b)));
            }
            KuryrIndex {
                networks_by_namespace,
                ports_by_namespace,
                port_by_name,
            }
        });
        let node_states = view.node_states.iter().map(|s| (name_of(&**s), &**s)).collect();
        let unreadable = view
            .unreadable
            .iter()
            .map(|u| {
                (
                    (
                        u.kind.as_str(),
                        u.namespace.as_deref().unwrap_or_default(),
                        u.name.as_str(),
                    ),
                    u,
                )
            })
            .collect();
        Index {
            pods_by_namespace,
            pod_by_name,
            namespace_labels,
            kuryr,
            node_states,
            unreadable,
        }
    }

    /// Why the object `kind` `namespace/name` could not be read, if it could not.
    pub fn unreadable(&self, kind: &str, namespace: &str, name: &str) -> Option<&'a UnreadableObject> {
        self.unreadable.get(&(kind, namespace, name)).copied()
    }

    /// The unreadable objects of `kind` in `namespace`, by name.
    pub fn unreadable_in(&self, kind: &str, namespace: &str) -> Vec<&'a UnreadableObject> {
        let mut found: Vec<&UnreadableObject> = self
            .unreadable
            .values()
            .copied()
            .filter(|u| u.kind == kind && u.namespace.as_deref().unwrap_or_default() == namespace)
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }
}
