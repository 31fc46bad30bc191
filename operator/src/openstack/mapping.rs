//! The pure part of the sync: Neutron snapshot + Kuryr objects → the objects that should exist.
//! The rules are listed in the [module documentation](super).

use std::collections::{BTreeMap, BTreeSet};

use bgpvpn_crds::validate::{parse_cidr, validate_bgpvpn, validate_binding};
use bgpvpn_crds::{AllowedNamespaces, BgpvpnSpec, VniBindingSpec, frr_auto_route_target};

use super::neutron::{EvpnRouter, FullBgpvpn, PortRoute, RouterInterfaces, Snapshot};
use super::*;
use crate::kuryr::{KuryrNetwork, KuryrPort, Lenient};

/// Name of the `BGPVPN` mirroring Neutron bgpvpn `id`.
pub fn vpn_name(id: &str) -> String {
    format!("os-{}", id.to_ascii_lowercase())
}

/// Name of the `BGPVPN` mirroring the Neutron router `id` that has an `evpn_vni`.
pub fn evpn_vpn_name(id: &str) -> String {
    format!("os-evpn-{}", id.to_ascii_lowercase())
}

/// Name of the `VNIBinding`s mirroring Neutron association `id`.
pub fn binding_name(association_id: &str) -> String {
    format!("os-{}", association_id.to_ascii_lowercase())
}

/// What the Kuryr objects say, reduced to what the mapping needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KuryrIndex {
    /// `(namespace, netId, routerId)` of every readable KuryrNetwork.
    pub networks: Vec<(String, Option<String>, Option<String>)>,
    /// Neutron port id → `(namespace, pod)`, from every readable vif.
    pub ports: BTreeMap<String, (String, String)>,
    /// Namespaces with a KuryrNetwork or KuryrPort that could not be read: the bindings the sync
    /// owns there are kept as they are.
    pub uncertain_namespaces: BTreeSet<String>,
}

impl KuryrIndex {
    pub fn new(networks: &[KuryrNetwork], ports: &[KuryrPort]) -> Self {
        let mut index = KuryrIndex::default();
        for n in networks {
            let Some(ns) = n.metadata.namespace.clone() else {
                continue;
            };
            match &n.status {
                Lenient::Ok(s) => index.networks.push((
                    ns,
                    s.net_id.as_ref().map(|s| s.to_ascii_lowercase()),
                    s.router_id.as_ref().map(|s| s.to_ascii_lowercase()),
                )),
                Lenient::Malformed(_) => {
                    index.uncertain_namespaces.insert(ns);
                }
                Lenient::Absent => {}
            }
        }
        for p in ports {
            let (Some(ns), Some(pod)) = (p.metadata.namespace.clone(), p.metadata.name.clone()) else {
                continue;
            };
            match &p.status {
                Lenient::Ok(s) => {
                    for vif in s.vifs.values() {
                        match vif {
                            Lenient::Ok(v) => {
                                index
                                    .ports
                                    .insert(v.vif.id.to_ascii_lowercase(), (ns.clone(), pod.clone()));
                            }
                            Lenient::Malformed(_) => {
                                index.uncertain_namespaces.insert(ns.clone());
                            }
                            Lenient::Absent => {}
                        }
                    }
                }
                Lenient::Malformed(_) => {
                    index.uncertain_namespaces.insert(ns);
                }
                Lenient::Absent => {}
            }
        }
        index
    }

    fn namespaces_with_router(&self, router_id: &str) -> BTreeSet<String> {
        self.networks
            .iter()
            .filter(|(_, _, r)| r.as_deref() == Some(router_id))
            .map(|(ns, _, _)| ns.clone())
            .collect()
    }

    fn namespaces_with_network(&self, network_id: &str) -> BTreeSet<String> {
        self.networks
            .iter()
            .filter(|(_, n, _)| n.as_deref() == Some(network_id))
            .map(|(ns, _, _)| ns.clone())
            .collect()
    }
}

/// What the cluster admin said of namespaces, by their labels (values in lower case).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminMapping {
    /// Namespace → its OpenStack project (label [`NAMESPACE_PROJECT_LABEL`]).
    pub projects: BTreeMap<String, String>,
    /// Namespace → the Neutron network its pods are on (label [`NAMESPACE_NETWORK_LABEL`]): how
    /// networks reach namespaces where Kuryr does not say it.
    pub networks: BTreeMap<String, String>,
}

impl AdminMapping {
    fn namespaces_on_network(&self, network_id: &str) -> impl Iterator<Item = &String> {
        self.networks
            .iter()
            .filter(move |(_, n)| n.as_str() == network_id)
            .map(|(ns, _)| ns)
    }
}

/// A `BGPVPN` the sync wants.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredVpn {
    pub neutron_id: String,
    pub spec: BgpvpnSpec,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The projects whose namespaces it may admit (its own, and its associations'), lower case.
    pub projects: BTreeSet<String>,
}

/// A `VNIBinding` the sync wants.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredBinding {
    pub neutron_id: String,
    pub namespace: String,
    pub name: String,
    pub spec: VniBindingSpec,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Something to report about one bgpvpn.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub neutron_id: String,
    /// The `BGPVPN` name the bgpvpn maps to.
    pub vpn: String,
    pub message: String,
}

/// Everything that should exist, and what to leave alone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// By name.
    pub vpns: BTreeMap<String, DesiredVpn>,
    /// By `(namespace, name)`.
    pub bindings: BTreeMap<(String, String), DesiredBinding>,
    /// Neutron ids of bgpvpns whose objects are kept exactly as they are (malformed data).
    pub keep: BTreeSet<String>,
    pub uncertain_namespaces: BTreeSet<String>,
    /// Malformed or unmirrorable bgpvpns (their objects are in `keep`).
    pub invalid: Vec<Problem>,
    /// Parts that are valid in Neutron but not mirrored (skipped; the rest is mirrored).
    pub unsupported: Vec<Problem>,
    /// Namespaces an association reaches through Kuryr but that the admin did not map to the
    /// association's project (not bound).
    pub unmapped: Vec<Problem>,
}

fn labels(neutron_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (BGPVPN_ID_KEY.to_string(), neutron_id.to_string()),
    ])
}

/// Computes the objects that should exist. A namespace is bound only when the admin mapped it
/// to the project of the association (or of the bgpvpn, when the association names none).
/// `evpn_asn` is the BGP AS of the cloud's EVPN routers, when they are mirrored.
pub fn desired(
    snapshot: &Snapshot,
    kuryr: &KuryrIndex,
    admin: &AdminMapping,
    evpn_asn: Option<u32>,
) -> Desired {
    let mut out = Desired {
        uncertain_namespaces: kuryr.uncertain_namespaces.clone(),
        ..Default::default()
    };
    let reach = Reach {
        kuryr,
        admin,
        interfaces: &snapshot.router_interfaces,
    };
    let mapped = snapshot.bgpvpns.iter().map(|f| {
        (
            &f.id,
            vpn_name(&f.id),
            f.result.as_ref().map(|full| map_one(full, &reach)),
        )
    });
    let routers = snapshot.evpn_routers.iter().map(|f| {
        let mapped = f.result.as_ref().map(|r| match evpn_asn {
            Some(asn) => map_evpn_router(r, asn, &reach),
            None => Err("EVPN routers are not mirrored (openstack.evpnRouters is not set)".into()),
        });
        (&f.id, evpn_vpn_name(&f.id), mapped)
    });
    for (neutron_id, vpn, result) in mapped.chain(routers) {
        let problem = |message: String| Problem {
            neutron_id: neutron_id.clone(),
            vpn: vpn.clone(),
            message,
        };
        match result {
            Err(problems) => {
                out.keep.insert(neutron_id.clone());
                out.invalid.push(problem(problems.join("; ")));
            }
            Ok(Err(message)) => {
                out.keep.insert(neutron_id.clone());
                out.invalid.push(problem(message));
            }
            Ok(Ok((v, bindings, unsupported, unmapped))) => {
                out.unsupported.extend(unsupported.into_iter().map(problem));
                out.unmapped.extend(unmapped.into_iter().map(problem));
                out.vpns.insert(vpn.clone(), v);
                for b in bindings {
                    out.bindings.insert((b.namespace.clone(), b.name.clone()), b);
                }
            }
        }
    }
    out
}

impl Desired {
    /// Admits `namespace` on the BGPVPN `vpn` (for bindings that are kept, not rewritten).
    pub fn admit(&mut self, vpn: &str, namespace: &str) {
        if let Some(v) = self.vpns.get_mut(vpn)
            && !v.spec.allowed_namespaces.names.iter().any(|n| n == namespace)
        {
            v.spec.allowed_namespaces.names.push(namespace.to_string());
            v.spec.allowed_namespaces.names.sort();
        }
    }
}

/// The desired BGPVPN, its bindings, the unsupported parts and the unmapped namespaces.
type Mapped = (DesiredVpn, Vec<DesiredBinding>, Vec<String>, Vec<String>);

/// Where networks, routers and ports are: Kuryr's objects, the admin's labels, Neutron's router
/// interfaces.
struct Reach<'a> {
    kuryr: &'a KuryrIndex,
    admin: &'a AdminMapping,
    interfaces: &'a RouterInterfaces,
}

/// How a binding selects its pods.
enum Via {
    /// Kuryr knows the pods' Neutron ports: the binding names the Neutron object.
    Kuryr(VniBindingSpec),
    /// The admin mapped the whole namespace to a network: every pod of it.
    AdminLabel,
}

impl Reach<'_> {
    /// The namespaces on `network_id`: Kuryr's first, then the admin's labels.
    fn network(&self, network_id: &str) -> Vec<(String, Via)> {
        let mut out: Vec<(String, Via)> = self
            .kuryr
            .namespaces_with_network(network_id)
            .into_iter()
            .map(|ns| {
                let spec = VniBindingSpec {
                    network_id: Some(network_id.to_string()),
                    ..no_target()
                };
                (ns, Via::Kuryr(spec))
            })
            .collect();
        for ns in self.admin.namespaces_on_network(network_id) {
            if !out.iter().any(|(n, _)| n == ns) {
                out.push((ns.clone(), Via::AdminLabel));
            }
        }
        out
    }

    /// The namespaces behind `router_id`: Kuryr's (by router, then by the router's networks),
    /// then the admin's labels of the router's networks.
    fn router(&self, router_id: &str) -> Result<Vec<(String, Via)>, String> {
        let mut out: Vec<(String, Via)> = self
            .kuryr
            .namespaces_with_router(router_id)
            .into_iter()
            .map(|ns| {
                let spec = VniBindingSpec {
                    router_id: Some(router_id.to_string()),
                    ..no_target()
                };
                (ns, Via::Kuryr(spec))
            })
            .collect();
        let networks = self.interfaces.of(router_id).map_err(|problems| {
            format!(
                "the interfaces of router {router_id} cannot be read: {}",
                problems.join("; ")
            )
        })?;
        for network in networks.into_iter().flatten() {
            for (ns, via) in self.network(network) {
                if !out.iter().any(|(n, _)| *n == ns) {
                    out.push((ns, via));
                }
            }
        }
        Ok(out)
    }
}

fn no_target() -> VniBindingSpec {
    VniBindingSpec {
        bgpvpn: String::new(),
        pod_selector: None,
        network_id: None,
        router_id: None,
        port_id: None,
        advertise_prefixes: vec![],
    }
}

/// Collects the bindings of one mirrored object, checking each namespace's owner.
struct Binder<'a> {
    /// The Neutron id of the object mirrored (a bgpvpn or a router).
    neutron_id: &'a str,
    /// Its `BGPVPN`'s name.
    vpn: String,
    /// Its project, for associations that name none.
    project_id: &'a str,
    /// The binding's name from the association id.
    name_of: fn(&str) -> String,
    projects: &'a BTreeMap<String, String>,
    bindings: Vec<DesiredBinding>,
    unmapped: Vec<String>,
}

impl Binder<'_> {
    /// Binds `namespace` when the admin mapped it to the association's project. `kind` names the
    /// association (`router`, `network`, `port`, `evpn-router`) in annotations and messages.
    fn bind(
        &mut self,
        namespace: String,
        association_id: &str,
        kind: &str,
        project_id: Option<&str>,
        via: Via,
    ) {
        // Kuryr or the network label says which namespaces an association reaches; only the
        // admin's project mapping says whether they are the association's project's to bind
        let owner = project_id.unwrap_or(self.project_id);
        match self.projects.get(&namespace) {
            Some(mapped) if mapped.eq_ignore_ascii_case(owner) => {}
            mapped => {
                let whose = match mapped {
                    Some(other) => format!("the admin mapped to project {other}"),
                    None => format!("is mapped to no project (Namespace label {NAMESPACE_PROJECT_LABEL})"),
                };
                self.unmapped.push(format!(
                    "{kind} association {association_id} of project {owner} reaches namespace {namespace}, which {whose}: not bound there"
                ));
                return;
            }
        }
        let spec = match via {
            Via::Kuryr(spec) => spec,
            Via::AdminLabel => VniBindingSpec {
                pod_selector: Some(Default::default()),
                ..no_target()
            },
        };
        let mut annotations = BTreeMap::from([
            (BGPVPN_ID_KEY.to_string(), self.neutron_id.to_string()),
            (ASSOCIATION_ID_ANNOTATION.to_string(), association_id.to_string()),
            (ASSOCIATION_TYPE_ANNOTATION.to_string(), kind.to_string()),
        ]);
        if let Some(p) = project_id {
            annotations.insert(PROJECT_ID_ANNOTATION.to_string(), p.to_string());
        }
        self.bindings.push(DesiredBinding {
            neutron_id: self.neutron_id.to_string(),
            namespace,
            name: (self.name_of)(association_id),
            spec: VniBindingSpec {
                bgpvpn: self.vpn.clone(),
                ..spec
            },
            labels: labels(self.neutron_id),
            annotations,
        });
    }

    /// The bound namespaces, sorted: the BGPVPN's `allowedNamespaces.names`.
    fn namespaces(&self) -> Vec<String> {
        let names: BTreeSet<String> = self.bindings.iter().map(|b| b.namespace.clone()).collect();
        names.into_iter().collect()
    }

    fn validate(&self) -> Result<(), String> {
        for binding in &self.bindings {
            validate_binding(&binding.spec)
                .map_err(|e| format!("binding {}/{}: {e}", binding.namespace, binding.name))?;
        }
        Ok(())
    }
}

fn allowed(names: Vec<String>) -> AllowedNamespaces {
    AllowedNamespaces {
        all: false,
        selector: None,
        names,
    }
}

fn map_one(full: &FullBgpvpn, reach: &Reach) -> Result<Mapped, String> {
    let b = &full.bgpvpn;
    let vni = b
        .vni
        .ok_or("the bgpvpn has no VNI; only bgpvpns with a VNI are mirrored")?;
    let mut unsupported = Vec::new();
    let mut binder = Binder {
        neutron_id: &b.id,
        vpn: vpn_name(&b.id),
        project_id: &b.project_id,
        name_of: binding_name,
        projects: &reach.admin.projects,
        bindings: Vec::new(),
        unmapped: Vec::new(),
    };
    for a in &full.routers {
        for (ns, via) in reach.router(&a.router_id)? {
            binder.bind(ns, &a.id, "router", a.project_id.as_deref(), via);
        }
    }
    for a in &full.networks {
        for (ns, via) in reach.network(&a.network_id) {
            binder.bind(ns, &a.id, "network", a.project_id.as_deref(), via);
        }
    }
    for a in &full.ports {
        if !a.advertise_fixed_ips {
            unsupported.push(format!(
                "port association {}: advertise_fixed_ips=false is not mirrored (a binding always advertises the pod's address); the association is skipped",
                a.id
            ));
            continue;
        }
        let mut prefixes = Vec::new();
        for r in &a.routes {
            match r {
                PortRoute::Prefix { prefix, local_pref } => {
                    parse_cidr(prefix)
                        .map_err(|e| format!("port association {}: route prefix: {e}", a.id))?;
                    if local_pref.is_some() {
                        unsupported.push(format!(
                            "port association {}: the local_pref of route {prefix} is not mirrored",
                            a.id
                        ));
                    }
                    if !prefixes.contains(prefix) {
                        prefixes.push(prefix.clone());
                    }
                }
                PortRoute::Bgpvpn { bgpvpn_id, .. } => {
                    unsupported.push(format!(
                        "port association {}: routes leaked from bgpvpn {bgpvpn_id} are not mirrored",
                        a.id
                    ));
                }
            }
        }
        // a port is a pod's only where Kuryr says so
        if let Some((ns, _pod)) = reach.kuryr.ports.get(&a.port_id) {
            let spec = VniBindingSpec {
                port_id: Some(a.port_id.clone()),
                advertise_prefixes: prefixes,
                ..no_target()
            };
            binder.bind(
                ns.clone(),
                &a.id,
                "port",
                a.project_id.as_deref(),
                Via::Kuryr(spec),
            );
        }
    }
    let spec = BgpvpnSpec {
        vpn_type: b.vpn_type,
        vni,
        route_targets: b.route_targets.clone(),
        import_targets: b.import_targets.clone(),
        export_targets: b.export_targets.clone(),
        route_distinguishers: b.route_distinguishers.clone(),
        local_pref: b.local_pref,
        allowed_namespaces: allowed(binder.namespaces()),
        // Neutron tenants choose port routes: what they may advertise is the admin's to allow
        // on the mirrored BGPVPN (the sync neither sets nor owns this field)
        allowed_prefixes: vec![],
    };
    validate_bgpvpn(&spec).map_err(|e| e.to_string())?;
    binder.validate()?;
    let annotations = BTreeMap::from([
        (BGPVPN_ID_KEY.to_string(), b.id.clone()),
        (PROJECT_ID_ANNOTATION.to_string(), b.project_id.clone()),
        (NAME_ANNOTATION.to_string(), b.name.clone()),
    ]);
    let projects = std::iter::once(&b.project_id)
        .chain(full.routers.iter().filter_map(|a| a.project_id.as_ref()))
        .chain(full.networks.iter().filter_map(|a| a.project_id.as_ref()))
        .chain(full.ports.iter().filter_map(|a| a.project_id.as_ref()))
        .map(|p| p.to_ascii_lowercase())
        .collect();
    Ok((
        DesiredVpn {
            neutron_id: b.id.clone(),
            spec,
            labels: labels(&b.id),
            annotations,
            projects,
        },
        binder.bindings,
        unsupported,
        binder.unmapped,
    ))
}

/// A router of Neutron's own EVPN → a BGPVPN with its VNI and the route target its FRR
/// derives, bound in the namespaces behind the router's networks. The route distinguisher is
/// left to this side's FRR, as Neutron leaves its own to FRR.
fn map_evpn_router(router: &EvpnRouter, asn: u32, reach: &Reach) -> Result<Mapped, String> {
    let mut binder = Binder {
        neutron_id: &router.id,
        vpn: evpn_vpn_name(&router.id),
        project_id: &router.project_id,
        name_of: evpn_vpn_name,
        projects: &reach.admin.projects,
        bindings: Vec::new(),
        unmapped: Vec::new(),
    };
    for (ns, via) in reach.router(&router.id)? {
        binder.bind(ns, &router.id, "evpn-router", None, via);
    }
    let spec = BgpvpnSpec {
        vpn_type: bgpvpn_crds::VpnType::L3,
        vni: router.vni,
        route_targets: vec![frr_auto_route_target(asn, router.vni)],
        import_targets: vec![],
        export_targets: vec![],
        route_distinguishers: vec![],
        local_pref: None,
        allowed_namespaces: allowed(binder.namespaces()),
        allowed_prefixes: vec![],
    };
    validate_bgpvpn(&spec).map_err(|e| e.to_string())?;
    binder.validate()?;
    let annotations = BTreeMap::from([
        (BGPVPN_ID_KEY.to_string(), router.id.clone()),
        (PROJECT_ID_ANNOTATION.to_string(), router.project_id.clone()),
        (NAME_ANNOTATION.to_string(), router.name.clone()),
        (SOURCE_ANNOTATION.to_string(), SOURCE_EVPN_ROUTER.to_string()),
    ]);
    Ok((
        DesiredVpn {
            neutron_id: router.id.clone(),
            spec,
            labels: labels(&router.id),
            annotations,
            projects: BTreeSet::from([router.project_id.to_ascii_lowercase()]),
        },
        binder.bindings,
        vec![],
        binder.unmapped,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::neutron::{
        Fetched, FetchedRouter, NetworkAssociation, PortAssociation, RouterAssociation, parse_bgpvpn,
    };
    use super::*;
    use serde_json::json;

    const V: &str = "6d1a78c1-d9f6-4823-b3c1-3489abb3f7b1";
    const ROUTER: &str = "0f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";
    const NET: &str = "1f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";
    const PORT: &str = "2f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";
    const A1: &str = "a0000000-0000-4000-8000-000000000001";
    const A2: &str = "a0000000-0000-4000-8000-000000000002";
    const A3: &str = "a0000000-0000-4000-8000-000000000003";

    fn full() -> FullBgpvpn {
        let b = parse_bgpvpn(&json!({"id": V, "name": "Blue VPN!", "project_id": "p1", "type": "l3", "route_targets": ["64512:1001"],
            "import_targets": [], "export_targets": [], "route_distinguishers": ["64512:1"], "vni": 1001, "local_pref": 100}))
        .unwrap();
        FullBgpvpn {
            bgpvpn: b,
            routers: vec![RouterAssociation {
                id: A1.into(),
                project_id: Some("p1".into()),
                router_id: ROUTER.into(),
                advertise_extra_routes: Some(true),
            }],
            networks: vec![NetworkAssociation {
                id: A2.into(),
                project_id: None,
                network_id: NET.into(),
            }],
            ports: vec![PortAssociation {
                id: A3.into(),
                project_id: None,
                port_id: PORT.into(),
                advertise_fixed_ips: true,
                routes: vec![PortRoute::Prefix {
                    prefix: "192.168.100.0/24".into(),
                    local_pref: None,
                }],
            }],
        }
    }

    fn kuryr() -> KuryrIndex {
        let nets: Vec<KuryrNetwork> = serde_json::from_value(json!([
            {"metadata": {"name": "team-a", "namespace": "team-a"}, "status": {"netId": "99999999-0000-4000-8000-000000000000", "routerId": ROUTER}},
            {"metadata": {"name": "team-b", "namespace": "team-b"}, "status": {"netId": NET, "routerId": ROUTER}},
            {"metadata": {"name": "new", "namespace": "new"}},
            {"metadata": {"name": "broken", "namespace": "broken"}, "status": "garbage"}
        ]))
        .unwrap();
        let ports: Vec<KuryrPort> = serde_json::from_value(json!([
            {"metadata": {"name": "web", "namespace": "team-c"}, "status": {"vifs": {"eth0": {"default": true, "vif": {
                "versioned_object.name": "VIFOpenVSwitch", "versioned_object.data": {"id": PORT}}}}}}
        ]))
        .unwrap();
        KuryrIndex::new(&nets, &ports)
    }

    fn snap(result: Result<FullBgpvpn, Vec<String>>) -> Snapshot {
        Snapshot {
            bgpvpns: vec![Fetched { id: V.into(), result }],
            ..Default::default()
        }
    }

    /// The admin's mapping: the three namespaces Kuryr puts behind the associations are p1's.
    fn projects() -> AdminMapping {
        AdminMapping {
            projects: ["team-a", "team-b", "team-c"]
                .map(|ns| (ns.to_string(), "p1".to_string()))
                .into(),
            networks: BTreeMap::new(),
        }
    }

    #[test]
    fn all_three_association_kinds() {
        let d = desired(&snap(Ok(full())), &kuryr(), &projects(), None);
        let name = format!("os-{V}");
        let vpn = &d.vpns[&name];
        assert_eq!(vpn.spec.vni, 1001);
        assert_eq!(vpn.spec.local_pref, Some(100));
        assert_eq!(vpn.spec.route_distinguishers, ["64512:1"]);
        assert_eq!(vpn.spec.allowed_namespaces.names, ["team-a", "team-b", "team-c"]);
        assert!(!vpn.spec.allowed_namespaces.all && vpn.spec.allowed_namespaces.selector.is_none());
        assert_eq!(vpn.labels[MANAGED_BY_LABEL], "openstack-sync");
        assert_eq!(vpn.annotations[NAME_ANNOTATION], "Blue VPN!");
        assert_eq!(vpn.annotations[PROJECT_ID_ANNOTATION], "p1");
        let keys: Vec<(&str, &str)> = d.bindings.keys().map(|(n, b)| (n.as_str(), b.as_str())).collect();
        let (b1, b2, b3) = (format!("os-{A1}"), format!("os-{A2}"), format!("os-{A3}"));
        assert_eq!(
            keys,
            [
                ("team-a", b1.as_str()),
                ("team-b", b1.as_str()),
                ("team-b", b2.as_str()),
                ("team-c", b3.as_str())
            ]
        );
        let port = &d.bindings[&("team-c".to_string(), b3.clone())];
        assert_eq!(port.spec.port_id.as_deref(), Some(PORT));
        assert_eq!(port.spec.advertise_prefixes, ["192.168.100.0/24"]);
        assert_eq!(port.spec.bgpvpn, name);
        assert_eq!(
            d.bindings[&("team-b".to_string(), b2)].spec.network_id.as_deref(),
            Some(NET)
        );
        assert_eq!(d.uncertain_namespaces, BTreeSet::from(["broken".to_string()]));
        assert!(
            d.invalid.is_empty() && d.unsupported.is_empty() && d.keep.is_empty() && d.unmapped.is_empty()
        );
        assert_eq!(vpn.projects, BTreeSet::from(["p1".to_string()]));
    }

    #[test]
    fn an_association_reaches_only_the_namespaces_of_its_project() {
        // team-a is another project's, team-c is mapped to none; the project ids compare in any case
        let mut projects = projects();
        projects.projects.insert("team-a".into(), "p2".into());
        projects.projects.remove("team-c");
        let mut f = full();
        f.routers[0].project_id = Some("P1".into());
        let d = desired(&snap(Ok(f)), &kuryr(), &projects, None);
        let keys: Vec<&str> = d.bindings.keys().map(|(n, _)| n.as_str()).collect();
        assert_eq!(keys, ["team-b", "team-b"]);
        assert_eq!(d.vpns[&vpn_name(V)].spec.allowed_namespaces.names, ["team-b"]);
        let said: Vec<&str> = d.unmapped.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("router association")
                && said[0].contains("team-a")
                && said[0].contains("project p2"),
            "{said:?}"
        );
        assert!(
            said[1].contains("port association")
                && said[1].contains("team-c")
                && said[1].contains("mapped to no project"),
            "{said:?}"
        );
    }

    #[test]
    fn invalid_data_is_kept_and_reported() {
        let d = desired(
            &snap(Err(vec!["vni 0 is outside 1..16777215".into()])),
            &kuryr(),
            &projects(),
            None,
        );
        assert!(d.vpns.is_empty() && d.bindings.is_empty());
        assert!(d.keep.contains(V));
        assert!(d.invalid[0].message.contains("vni 0"));

        let mut no_rt = full();
        no_rt.bgpvpn.route_targets.clear();
        let d = desired(&snap(Ok(no_rt)), &kuryr(), &projects(), None);
        assert!(d.vpns.is_empty() && d.keep.contains(V));
        assert!(d.invalid[0].message.contains("route target"), "{:?}", d.invalid);

        let mut bad_rt = full();
        bad_rt.bgpvpn.route_targets = vec!["64512:1001\nrouter bgp 1".into()];
        assert!(
            desired(&snap(Ok(bad_rt)), &kuryr(), &projects(), None)
                .keep
                .contains(V)
        );

        let mut host_bits = full();
        host_bits.ports[0].routes = vec![PortRoute::Prefix {
            prefix: "192.168.100.1/24".into(),
            local_pref: None,
        }];
        let d = desired(&snap(Ok(host_bits)), &kuryr(), &projects(), None);
        assert!(d.invalid[0].message.contains("host bits"), "{:?}", d.invalid);

        let mut no_vni = full();
        no_vni.bgpvpn.vni = None;
        assert!(
            desired(&snap(Ok(no_vni)), &kuryr(), &projects(), None).invalid[0]
                .message
                .contains("no VNI")
        );
    }

    #[test]
    fn unsupported_parts_are_skipped_and_said() {
        let mut f = full();
        f.ports[0].routes.push(PortRoute::Bgpvpn {
            bgpvpn_id: ROUTER.into(),
            local_pref: None,
        });
        let d = desired(&snap(Ok(f.clone())), &kuryr(), &projects(), None);
        assert_eq!(d.bindings.len(), 4);
        assert!(d.unsupported[0].message.contains("leaked"));
        f.ports[0].advertise_fixed_ips = false;
        let d = desired(&snap(Ok(f)), &kuryr(), &projects(), None);
        assert_eq!(d.bindings.len(), 3);
        assert_eq!(
            d.vpns[&format!("os-{V}")].spec.allowed_namespaces.names,
            ["team-a", "team-b"]
        );
    }

    const LABELLED_NET: &str = "3f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";

    /// `plain` (no Kuryr) is labelled by the admin as on LABELLED_NET; so is team-b, which Kuryr
    /// already puts on NET.
    fn with_network_labels() -> AdminMapping {
        let mut admin = projects();
        admin.projects.insert("plain".into(), "p1".into());
        admin.networks.insert("plain".into(), LABELLED_NET.into());
        admin.networks.insert("team-b".into(), LABELLED_NET.into());
        admin
    }

    #[test]
    fn the_admins_network_label_maps_a_namespace_without_kuryr() {
        let mut f = full();
        f.networks[0].network_id = LABELLED_NET.into();
        let mut s = snap(Ok(f));
        // the router of the router association has an interface on the labelled network too
        s.router_interfaces
            .networks
            .insert(ROUTER.into(), BTreeSet::from([LABELLED_NET.to_string()]));
        let d = desired(&s, &kuryr(), &with_network_labels(), None);
        let get = |ns: &str, a: &str| &d.bindings[&(ns.to_string(), binding_name(a))].spec;
        // the whole namespace is the network: every pod of it
        assert_eq!(get("plain", A2).pod_selector, Some(Default::default()));
        assert_eq!(get("plain", A1).pod_selector, Some(Default::default()));
        // where Kuryr says where the pods are, its answer is kept
        assert_eq!(get("team-b", A1).router_id.as_deref(), Some(ROUTER));
        assert_eq!(get("team-b", A2).pod_selector, Some(Default::default()));
        assert_eq!(
            d.vpns[&vpn_name(V)].spec.allowed_namespaces.names,
            ["plain", "team-a", "team-b", "team-c"]
        );
        // the label maps a network, not a project: another project's namespace stays unbound
        let mut other = with_network_labels();
        other.projects.insert("plain".into(), "p2".into());
        let d = desired(&s, &kuryr(), &other, None);
        assert!(!d.bindings.keys().any(|(ns, _)| ns == "plain"));
        assert_eq!(d.unmapped.len(), 2, "{:?}", d.unmapped);
    }

    #[test]
    fn unreadable_router_interfaces_keep_the_bgpvpn() {
        let mut s = snap(Ok(full()));
        s.router_interfaces.unreadable.insert(
            ROUTER.into(),
            vec!["interface port 3: network_id null is not a UUID".into()],
        );
        let d = desired(&s, &kuryr(), &with_network_labels(), None);
        assert!(d.keep.contains(V) && d.vpns.is_empty(), "{d:?}");
        assert!(
            d.invalid[0].message.contains("interfaces of router"),
            "{:?}",
            d.invalid
        );
    }

    fn evpn_router(vni: u32) -> FetchedRouter {
        FetchedRouter {
            id: ROUTER.into(),
            result: Ok(EvpnRouter {
                id: ROUTER.into(),
                name: "edge".into(),
                project_id: "p1".into(),
                vni,
            }),
        }
    }

    #[test]
    fn an_evpn_router_becomes_a_bgpvpn_with_frrs_route_target() {
        let mut s = Snapshot {
            evpn_routers: vec![evpn_router(1001)],
            ..Default::default()
        };
        s.router_interfaces.networks.insert(
            ROUTER.into(),
            BTreeSet::from([LABELLED_NET.to_string(), NET.to_string()]),
        );
        let d = desired(&s, &kuryr(), &with_network_labels(), Some(4_200_000_001));
        let name = evpn_vpn_name(ROUTER);
        assert_eq!(name, format!("os-evpn-{ROUTER}"));
        let vpn = &d.vpns[&name];
        // bgpd's auto RT: the AS's low 16 bits (4200000001 & 0xffff), then the VNI
        assert_eq!(
            (vpn.spec.vni, vpn.spec.route_targets.as_slice()),
            (1001, ["59905:1001".to_string()].as_slice())
        );
        assert!(vpn.spec.route_distinguishers.is_empty() && vpn.spec.import_targets.is_empty());
        assert_eq!(vpn.annotations[SOURCE_ANNOTATION], SOURCE_EVPN_ROUTER);
        assert_eq!(vpn.labels[BGPVPN_ID_KEY], ROUTER);
        // team-a and team-b are behind the router by Kuryr, plain by its label
        assert_eq!(vpn.spec.allowed_namespaces.names, ["plain", "team-a", "team-b"]);
        let b = &d.bindings[&("plain".to_string(), name.clone())];
        assert_eq!(
            (b.spec.bgpvpn.as_str(), &b.spec.pod_selector),
            (name.as_str(), &Some(Default::default()))
        );
        assert_eq!(b.annotations[ASSOCIATION_TYPE_ANNOTATION], "evpn-router");
        assert_eq!(
            d.bindings[&("team-a".to_string(), name.clone())]
                .spec
                .router_id
                .as_deref(),
            Some(ROUTER)
        );
        assert!(d.invalid.is_empty() && d.unmapped.is_empty(), "{d:?}");
        assert_eq!(frr_auto_route_target(64999, 1003), "64999:1003");

        // a namespace of another project is not bound, and said so
        let mut other = with_network_labels();
        other.projects.insert("plain".into(), "p2".into());
        let d = desired(&s, &kuryr(), &other, Some(64999));
        assert_eq!(d.vpns[&name].spec.allowed_namespaces.names, ["team-a", "team-b"]);
        assert!(
            d.unmapped[0].message.contains("evpn-router association"),
            "{:?}",
            d.unmapped
        );

        // a router Neutron answered badly for is kept as it is
        s.evpn_routers[0].result = Err(vec!["router x: evpn_vni is missing".into()]);
        let d = desired(&s, &kuryr(), &with_network_labels(), Some(64999));
        assert!(d.keep.contains(ROUTER) && d.vpns.is_empty());
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(
            vpn_name("6D1A78C1-D9F6-4823-B3C1-3489ABB3F7B1"),
            format!("os-{V}")
        );
        let n = vpn_name(V);
        assert!(
            n.len() <= 63
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        let mut d = desired(&snap(Ok(full())), &KuryrIndex::default(), &projects(), None);
        assert!(d.bindings.is_empty());
        assert!(d.vpns[&n].spec.allowed_namespaces.names.is_empty());
        d.admit(&n, "kept");
        d.admit(&n, "kept");
        assert_eq!(d.vpns[&n].spec.allowed_namespaces.names, ["kept"]);
    }
}
