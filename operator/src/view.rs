//! The input of one pass: a point-in-time copy of the reflector stores, as plain data. Nothing
//! in here talks to the API server, so [`crate::build`] is a pure function of a `ClusterView`
//! and is tested without one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::ResourceExt;

use crate::kuryr::{KuryrNetwork, KuryrPort};

/// Everything a pass reads.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub bgpvpns: Vec<Arc<Bgpvpn>>,
    pub bindings: Vec<Arc<VniBinding>>,
    pub pods: Vec<Arc<Pod>>,
    pub namespaces: Vec<Arc<Namespace>>,
    pub nodes: Vec<Arc<Node>>,
    /// `None` while the Kuryr CRDs are not installed.
    pub kuryr: Option<KuryrView>,
    /// The per-node objects as they are now (what was written, and what the agents report).
    pub node_states: Vec<Arc<EvpnNodeState>>,
}

/// The Kuryr objects, when the Kuryr CRDs exist.
#[derive(Clone, Debug, Default)]
pub struct KuryrView {
    pub networks: Vec<Arc<KuryrNetwork>>,
    pub ports: Vec<Arc<KuryrPort>>,
}

/// Lookups over a [`ClusterView`], built once per pass.
pub struct Index<'a> {
    pub pods_by_namespace: HashMap<&'a str, Vec<&'a Pod>>,
    pub pod_by_name: HashMap<(&'a str, &'a str), &'a Pod>,
    pub namespace_labels: HashMap<&'a str, &'a BTreeMap<String, String>>,
    pub kuryr: Option<KuryrIndex<'a>>,
    pub node_states: HashMap<&'a str, &'a EvpnNodeState>,
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
        let mut pods_by_namespace: HashMap<&str, Vec<&Pod>> = HashMap::new();
        let mut pod_by_name = HashMap::new();
        for pod in &view.pods {
            pods_by_namespace.entry(ns_of(&**pod)).or_default().push(pod);
            pod_by_name.insert((ns_of(&**pod), name_of(&**pod)), &**pod);
        }
        for pods in pods_by_namespace.values_mut() {
            pods.sort_by_key(|p| p.name_any());
        }
        let namespace_labels = view.namespaces.iter().map(|ns| (name_of(&**ns), ns.labels())).collect();
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
            KuryrIndex { networks_by_namespace, ports_by_namespace, port_by_name }
        });
        let node_states = view.node_states.iter().map(|s| (name_of(&**s), &**s)).collect();
        Index { pods_by_namespace, pod_by_name, namespace_labels, kuryr, node_states }
    }
}
