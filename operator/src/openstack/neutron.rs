//! A read-only client of the networking-bgpvpn API (`/v2.0/bgpvpn/...`) and strict parsers of
//! its answers.
//!
//! Listings are paginated (`limit`, then the `marker` of the `<collection>_links` `next` link,
//! applied to our own URL so a proxy's host name in the link does not matter), every request has
//! a timeout, and a 401 makes the token be issued again once. Any failure of a request or of the
//! shape of a page fails the whole snapshot: the sync then writes nothing.
//!
//! One bgpvpn or association with a bad field does not fail the snapshot: it is parsed on its
//! own, and its problems are returned with its id so the sync can report it and leave its
//! objects alone. Only an item without a usable id fails the snapshot (its objects could not be
//! told apart).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bgpvpn_crds::VpnType;
use bgpvpn_crds::validate::is_uuid;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use super::auth::{Keystone, excerpt, without_url};
use super::{Kind, Stage, SyncError, SyncMetrics};

/// Safety stop for a pagination that never ends.
const MAX_PAGES: usize = 10_000;
/// Association listings fetched at the same time.
const CONCURRENCY: usize = 4;
/// The project sent with noauth requests (Neutron's noauth takes identity from headers).
const NOAUTH_PROJECT: &str = "bgpvpn-openstack-sync";

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Access {
    /// No Keystone: `X-Project-Id` / `X-Roles: admin` headers, as Neutron's noauth expects.
    NoAuth {
        url: String,
    },
    Keystone(Arc<Keystone>),
}

/// The client.
#[derive(Clone, Debug)]
pub struct Neutron {
    http: reqwest::Client,
    access: Access,
    page_size: u32,
    metrics: Arc<SyncMetrics>,
}

fn err(kind: Kind, m: String) -> SyncError {
    SyncError::new(Stage::Neutron, kind, m)
}

impl Neutron {
    pub fn new(http: reqwest::Client, access: Access, page_size: u32, metrics: Arc<SyncMetrics>) -> Self {
        Neutron {
            http,
            access,
            page_size: page_size.max(1),
            metrics,
        }
    }

    async fn base_and_token(&self) -> Result<(String, Option<super::auth::Secret>), SyncError> {
        match &self.access {
            Access::NoAuth { url } => Ok((url.clone(), None)),
            Access::Keystone(k) => {
                let (token, url) = k.token(&self.metrics).await?;
                Ok((url, Some(token)))
            }
        }
    }

    /// GET `path_and_query` (starting with `/v2.0/`) as JSON; one retry with a new token on
    /// 401, and one retry when the connection broke before an answer (a pooled keep-alive
    /// connection the server closed at that moment: GET is idempotent).
    pub async fn get(&self, path_and_query: &str) -> Result<Value, SyncError> {
        let (mut renewed, mut resent) = (false, false);
        loop {
            let (base, token) = self.base_and_token().await?;
            let url = join(&base, path_and_query);
            let mut req = self.http.get(&url).header("Accept", "application/json");
            req = match &token {
                Some(t) => req.header("X-Auth-Token", t.expose()),
                None => req
                    .header("X-Project-Id", NOAUTH_PROJECT)
                    .header("X-User-Id", NOAUTH_PROJECT)
                    .header("X-Roles", "admin"),
            };
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if !resent && !e.is_timeout() => {
                    tracing::debug!(%url, error = %without_url(&e), "Neutron request failed; sending it once more");
                    resent = true;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    return Err(err(Kind::Unreachable, format!("GET {url}: {}", without_url(&e))));
                }
            };
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| err(Kind::Unreachable, format!("GET {url}: {}", without_url(&e))))?;
            if status.as_u16() == 401 {
                if let (Access::Keystone(k), false) = (&self.access, renewed) {
                    tracing::info!(%url, "Neutron refused the token; issuing a new one");
                    k.invalidate().await;
                    renewed = true;
                    continue;
                }
                return Err(err(Kind::Unauthorized, format!("GET {url}: 401 Unauthorized")));
            }
            if !status.is_success() {
                return Err(err(
                    Kind::Status(status.as_u16()),
                    format!("GET {url}: {status}: {}", excerpt(&body)),
                ));
            }
            return serde_json::from_slice(&body)
                .map_err(|e| err(Kind::BadResponse, format!("GET {url}: not JSON: {e}")));
        }
    }

    /// Every item of a paginated collection.
    pub async fn list(&self, path: &str, key: &str) -> Result<Vec<Value>, SyncError> {
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        let mut seen_markers = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let sep = if path.contains('?') { '&' } else { '?' };
            let mut query = format!("{path}{sep}limit={}", self.page_size);
            if let Some(m) = &marker {
                query.push_str("&marker=");
                query.push_str(&urlencode(m));
            }
            let page = self.get(&query).await?;
            let bad = |m: String| err(Kind::BadResponse, format!("GET {query}: {m}"));
            let obj = page
                .as_object()
                .ok_or_else(|| bad("the answer is not a JSON object".into()))?;
            let list = obj
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("no {key:?} list in the answer")))?;
            items.extend(list.iter().cloned());
            let next = match obj.get(&format!("{key}_links")) {
                None | Some(Value::Null) => None,
                Some(links) => next_marker(links).map_err(bad)?,
            };
            match next {
                None => return Ok(items),
                Some(m) => {
                    if !seen_markers.insert(m.clone()) {
                        return Err(bad(format!("pagination loops (marker {m} seen twice)")));
                    }
                    marker = Some(m);
                }
            }
        }
        Err(err(
            Kind::BadResponse,
            format!("GET {path}: more than {MAX_PAGES} pages"),
        ))
    }

    /// Everything the sync needs from Neutron, or the first failure.
    pub async fn snapshot(&self) -> Result<Snapshot, SyncError> {
        let raw = self.list("/v2.0/bgpvpn/bgpvpns", "bgpvpns").await?;
        let mut ids = BTreeSet::new();
        let mut parsed = Vec::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            let id = item_id(item).map_err(|m| {
                err(
                    Kind::BadResponse,
                    format!("GET /v2.0/bgpvpn/bgpvpns: item {i}: {m}"),
                )
            })?;
            if !ids.insert(id.clone()) {
                return Err(err(
                    Kind::BadResponse,
                    format!("GET /v2.0/bgpvpn/bgpvpns: bgpvpn {id} listed twice"),
                ));
            }
            parsed.push((id, parse_bgpvpn(item)));
        }
        let entries: Vec<Fetched> = futures::stream::iter(parsed)
            .map(|(id, bgpvpn)| async move {
                let bgpvpn = match bgpvpn {
                    Ok(b) => b,
                    Err(problems) => {
                        return Ok::<_, SyncError>(Fetched {
                            id,
                            result: Err(problems),
                        });
                    }
                };
                let base = format!("/v2.0/bgpvpn/bgpvpns/{id}");
                let (r, n, p) = (
                    format!("{base}/router_associations"),
                    format!("{base}/network_associations"),
                    format!("{base}/port_associations"),
                );
                let (routers, networks, ports) = futures::try_join!(
                    self.list(&r, "router_associations"),
                    self.list(&n, "network_associations"),
                    self.list(&p, "port_associations"),
                )?;
                for list in [&routers, &networks, &ports] {
                    for (i, a) in list.iter().enumerate() {
                        item_id(a).map_err(|m| {
                            err(
                                Kind::BadResponse,
                                format!("GET {base}/..._associations: item {i}: {m}"),
                            )
                        })?;
                    }
                }
                Ok(Fetched {
                    id,
                    result: assemble(bgpvpn, &routers, &networks, &ports),
                })
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Snapshot {
            bgpvpns: entries,
            ..Default::default()
        })
    }

    /// The routers with an `evpn_vni` (Neutron 2026.2's `evpn` extension), each parsed on its
    /// own. A Neutron without that extension is a configuration mistake, not an empty answer.
    pub async fn evpn_routers(&self) -> Result<Vec<FetchedRouter>, SyncError> {
        match self.get("/v2.0/extensions/evpn").await {
            Ok(_) => {}
            Err(e) if e.kind == Kind::Status(404) => {
                return Err(SyncError::new(
                    Stage::Config,
                    Kind::Other,
                    "openstack.evpnRouters is set, but this Neutron has no `evpn` extension \
                     (it needs Neutron 2026.2 with the evpn service plugin)",
                ));
            }
            Err(e) => return Err(e),
        }
        let path = "/v2.0/routers?fields=id&fields=name&fields=project_id&fields=tenant_id&fields=evpn_vni";
        let raw = self.list(path, "routers").await?;
        let mut ids = BTreeSet::new();
        let mut out = Vec::new();
        for (i, item) in raw.iter().enumerate() {
            let id = item_id(item)
                .map_err(|m| err(Kind::BadResponse, format!("GET /v2.0/routers: item {i}: {m}")))?;
            if !ids.insert(id.clone()) {
                return Err(err(
                    Kind::BadResponse,
                    format!("GET /v2.0/routers: router {id} listed twice"),
                ));
            }
            match parse_evpn_router(item) {
                Ok(None) => {}
                Ok(Some(router)) => out.push(FetchedRouter {
                    id,
                    result: Ok(router),
                }),
                Err(problems) => out.push(FetchedRouter {
                    id,
                    result: Err(problems),
                }),
            }
        }
        Ok(out)
    }

    /// The networks each router has an interface on (its `network:router_interface*` ports).
    pub async fn router_interfaces(&self) -> Result<RouterInterfaces, SyncError> {
        let owners: String = ROUTER_INTERFACE_OWNERS
            .iter()
            .map(|o| format!("device_owner={o}&"))
            .collect();
        let path =
            format!("/v2.0/ports?{owners}fields=id&fields=device_id&fields=device_owner&fields=network_id");
        let raw = self.list(&path, "ports").await?;
        parse_router_interfaces(&raw).map_err(|m| {
            err(
                Kind::BadResponse,
                format!("GET /v2.0/ports (router interfaces): {m}"),
            )
        })
    }
}

/// The `device_owner`s of a router's interface on a tenant network (legacy, DVR, HA).
pub const ROUTER_INTERFACE_OWNERS: [&str; 3] = [
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

fn join(base: &str, path_and_query: &str) -> String {
    // a catalog URL may or may not end with "/" or carry the version already
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v2.0").unwrap_or(base);
    format!("{base}{path_and_query}")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The marker of the `next` link, if there is one.
fn next_marker(links: &Value) -> Result<Option<String>, String> {
    let links = links.as_array().ok_or("the links are not a list")?;
    for link in links {
        if link.get("rel").and_then(Value::as_str) != Some("next") {
            continue;
        }
        let href = link
            .get("href")
            .and_then(Value::as_str)
            .ok_or("a next link has no href")?;
        let url = reqwest::Url::parse(href).map_err(|e| format!("next link {href:?}: {e}"))?;
        let marker = url
            .query_pairs()
            .find(|(k, _)| k == "marker")
            .map(|(_, v)| v.into_owned());
        return match marker {
            Some(m) if !m.is_empty() => Ok(Some(m)),
            _ => Err(format!("next link {href:?} has no marker")),
        };
    }
    Ok(None)
}

fn item_id(item: &Value) -> Result<String, String> {
    match item.get("id") {
        Some(Value::String(id)) if is_uuid(id) => Ok(id.to_ascii_lowercase()),
        Some(other) => Err(format!("id {other} is not a UUID")),
        None => Err("has no id".into()),
    }
}

/// All of Neutron's bgpvpns, each parsed on its own, and (when they are read) its EVPN routers
/// and the networks behind its routers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub bgpvpns: Vec<Fetched>,
    pub evpn_routers: Vec<FetchedRouter>,
    pub router_interfaces: RouterInterfaces,
}

/// One router with an `evpn_vni`, or what was wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchedRouter {
    /// The router id (lower case).
    pub id: String,
    pub result: Result<EvpnRouter, Vec<String>>,
}

/// A router of Neutron's own EVPN (`evpn_vni` set), fields checked.
#[derive(Clone, Debug, PartialEq)]
pub struct EvpnRouter {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub vni: u32,
}

/// The networks behind each router, from its interface ports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouterInterfaces {
    /// Router id → network ids (lower case).
    pub networks: BTreeMap<String, BTreeSet<String>>,
    /// Routers with an interface port that could not be read: what they reach is not known.
    pub unreadable: BTreeMap<String, Vec<String>>,
}

impl RouterInterfaces {
    pub fn of(&self, router_id: &str) -> Result<Option<&BTreeSet<String>>, &[String]> {
        match self.unreadable.get(router_id) {
            Some(problems) => Err(problems),
            None => Ok(self.networks.get(router_id)),
        }
    }
}

/// One bgpvpn and its associations, or what was wrong with them.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// The bgpvpn id (lower case).
    pub id: String,
    pub result: Result<FullBgpvpn, Vec<String>>,
}

/// A bgpvpn with its associations, all fields checked.
#[derive(Clone, Debug, PartialEq)]
pub struct FullBgpvpn {
    pub bgpvpn: Bgpvpn,
    pub routers: Vec<RouterAssociation>,
    pub networks: Vec<NetworkAssociation>,
    pub ports: Vec<PortAssociation>,
}

/// A bgpvpn as Neutron shows it to an admin.
#[derive(Clone, Debug, PartialEq)]
pub struct Bgpvpn {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub vpn_type: VpnType,
    pub route_targets: Vec<String>,
    pub import_targets: Vec<String>,
    pub export_targets: Vec<String>,
    pub route_distinguishers: Vec<String>,
    /// `None` when the bgpvpn has no VNI.
    pub vni: Option<u32>,
    pub local_pref: Option<u32>,
    /// The read-only id lists, when Neutron returns them (used to check the association listings).
    pub networks: Option<Vec<String>>,
    pub routers: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouterAssociation {
    pub id: String,
    pub project_id: Option<String>,
    pub router_id: String,
    pub advertise_extra_routes: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetworkAssociation {
    pub id: String,
    pub project_id: Option<String>,
    pub network_id: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PortAssociation {
    pub id: String,
    pub project_id: Option<String>,
    pub port_id: String,
    pub advertise_fixed_ips: bool,
    pub routes: Vec<PortRoute>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PortRoute {
    Prefix {
        prefix: String,
        local_pref: Option<u32>,
    },
    Bgpvpn {
        bgpvpn_id: String,
        local_pref: Option<u32>,
    },
}

/// Field readers that collect every problem of one object.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    what: String,
    problems: Vec<String>,
}

impl<'a> Fields<'a> {
    fn new(item: &'a Value, what: String) -> Result<Self, Vec<String>> {
        match item.as_object() {
            Some(obj) => Ok(Fields {
                obj,
                what,
                problems: Vec::new(),
            }),
            None => Err(vec![format!("{what} is not a JSON object")]),
        }
    }

    fn problem(&mut self, m: String) {
        self.problems.push(format!("{}: {m}", self.what));
    }

    /// A required string.
    fn string(&mut self, key: &str) -> String {
        match self.obj.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.problem(format!("{key} is {}, not a string", type_name(other)));
                String::new()
            }
            None => {
                self.problem(format!("{key} is missing"));
                String::new()
            }
        }
    }

    /// A required UUID (returned in lower case).
    fn uuid(&mut self, key: &str) -> String {
        let s = self.string(key);
        if !s.is_empty() && !is_uuid(&s) {
            self.problem(format!("{key} {s:?} is not a UUID"));
        }
        s.to_ascii_lowercase()
    }

    /// An optional string (`null` or absent: `None`).
    fn opt_string(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.problem(format!("{key} is {}, not a string", type_name(other)));
                None
            }
        }
    }

    /// A list of strings that must be present (admin-only lists are absent for non-admins).
    fn strings(&mut self, key: &str, admin_only: bool) -> Vec<String> {
        match self.obj.get(key) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => self.problem(format!("{key}[{i}] is {}, not a string", type_name(v))),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(format!("{key} is {}, not a list", type_name(other)));
                Vec::new()
            }
            None if admin_only => {
                self.problem(format!(
                    "{key} is missing (an admin-only field: are the credentials admin?)"
                ));
                Vec::new()
            }
            None => {
                self.problem(format!("{key} is missing"));
                Vec::new()
            }
        }
    }

    /// An optional list of UUIDs (absent: `None`).
    fn opt_uuids(&mut self, key: &str) -> Option<Vec<String>> {
        self.obj.get(key)?;
        let list = self.strings(key, false);
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.into_iter().enumerate() {
            if is_uuid(&s) {
                out.push(s.to_ascii_lowercase());
            } else {
                self.problem(format!("{key}[{i}] {s:?} is not a UUID"));
            }
        }
        Some(out)
    }

    /// An optional integer in `min..=max` (`null`: `None`); `required_key` when the key itself
    /// must be present.
    fn opt_int(&mut self, key: &str, min: u64, max: u64, required_key: Option<&str>) -> Option<u32> {
        match self.obj.get(key) {
            None => {
                if let Some(why) = required_key {
                    self.problem(format!("{key} is missing ({why})"));
                }
                None
            }
            Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Some(v as u32),
                _ => {
                    self.problem(format!("{key} {n} is outside {min}..{max}"));
                    None
                }
            },
            Some(other) => {
                self.problem(format!("{key} is {}, not an integer", type_name(other)));
                None
            }
        }
    }

    /// The owner: `project_id`, or the older `tenant_id`; required.
    fn project_id(&mut self) -> String {
        let id = self.opt_string("project_id").or_else(|| {
            self.obj
                .get("tenant_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match id {
            Some(p) if !p.is_empty() => p,
            _ => {
                self.problem("project_id is missing".into());
                String::new()
            }
        }
    }

    fn opt_bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.problem(format!("{key} is {}, not a boolean", type_name(other)));
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems)
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses one item of `GET /v2.0/bgpvpn/bgpvpns`.
pub fn parse_bgpvpn(item: &Value) -> Result<Bgpvpn, Vec<String>> {
    let mut f = Fields::new(item, "bgpvpn".into())?;
    let id = f.uuid("id");
    let name = f.opt_string("name").unwrap_or_default();
    let project_id = f.project_id();
    let vpn_type = match f.string("type").as_str() {
        "l3" => VpnType::L3,
        "l2" => VpnType::L2,
        "" => VpnType::L3,
        other => {
            f.problem(format!("type {other:?} is neither l3 nor l2"));
            VpnType::L3
        }
    };
    let route_targets = f.strings("route_targets", true);
    let import_targets = f.strings("import_targets", true);
    let export_targets = f.strings("export_targets", true);
    let route_distinguishers = f.strings("route_distinguishers", true);
    let vni = f.opt_int(
        "vni",
        1,
        16_777_215,
        Some("an admin-only field: are the credentials admin, is the bgpvpn-vni extension on?"),
    );
    let local_pref = f.opt_int("local_pref", 0, u32::MAX as u64, None);
    let networks = f.opt_uuids("networks");
    let routers = f.opt_uuids("routers");
    let ports = f.opt_uuids("ports");
    f.finish(Bgpvpn {
        id,
        name,
        project_id,
        vpn_type,
        route_targets,
        import_targets,
        export_targets,
        route_distinguishers,
        vni,
        local_pref,
        networks,
        routers,
        ports,
    })
}

/// Parses one item of `GET /v2.0/routers`: `None` for a router without `evpn_vni` (`null`).
/// A missing `evpn_vni` key is a problem: the policy may hide it from these credentials.
pub fn parse_evpn_router(item: &Value) -> Result<Option<EvpnRouter>, Vec<String>> {
    let mut f = Fields::new(
        item,
        format!("router {}", item.get("id").and_then(Value::as_str).unwrap_or("?")),
    )?;
    let id = f.uuid("id");
    let name = f.opt_string("name").unwrap_or_default();
    let vni = f.opt_int(
        "evpn_vni",
        1,
        16_777_215,
        Some("do these credentials see the evpn extension's fields (admin)?"),
    );
    let project_id = f.project_id();
    let evpn = !matches!(f.obj.get("evpn_vni"), Some(Value::Null));
    let router = vni.map(|vni| EvpnRouter {
        id,
        name,
        project_id,
        vni,
    });
    match f.finish(router) {
        // a router that is not EVPN's: its other fields do not concern the sync
        _ if !evpn => Ok(None),
        other => other,
    }
}

/// Router interface ports → the networks of each router. A port without a usable id or
/// router id fails the listing (it could not be attributed); a bad network id makes only its
/// router's interfaces unknown.
pub fn parse_router_interfaces(ports: &[Value]) -> Result<RouterInterfaces, String> {
    let mut out = RouterInterfaces::default();
    for (i, port) in ports.iter().enumerate() {
        item_id(port).map_err(|m| format!("item {i}: {m}"))?;
        let router = match port.get("device_id") {
            Some(Value::String(r)) if is_uuid(r) => r.to_ascii_lowercase(),
            other => return Err(format!("item {i}: device_id {other:?} is not a router id (UUID)")),
        };
        match port.get("device_owner").and_then(Value::as_str) {
            Some(o) if ROUTER_INTERFACE_OWNERS.contains(&o) => {}
            // the filter was not applied: not an interface
            _ => continue,
        }
        match port.get("network_id") {
            Some(Value::String(n)) if is_uuid(n) => {
                out.networks
                    .entry(router)
                    .or_default()
                    .insert(n.to_ascii_lowercase());
            }
            other => out
                .unreadable
                .entry(router)
                .or_default()
                .push(format!("interface port {i}: network_id {other:?} is not a UUID")),
        }
    }
    Ok(out)
}

pub fn parse_router_association(item: &Value) -> Result<RouterAssociation, Vec<String>> {
    let mut f = Fields::new(
        item,
        format!(
            "router association {}",
            item.get("id").and_then(Value::as_str).unwrap_or("?")
        ),
    )?;
    let a = RouterAssociation {
        id: f.uuid("id"),
        project_id: f.opt_string("project_id"),
        router_id: f.uuid("router_id"),
        advertise_extra_routes: f.opt_bool("advertise_extra_routes"),
    };
    f.finish(a)
}

pub fn parse_network_association(item: &Value) -> Result<NetworkAssociation, Vec<String>> {
    let mut f = Fields::new(
        item,
        format!(
            "network association {}",
            item.get("id").and_then(Value::as_str).unwrap_or("?")
        ),
    )?;
    let a = NetworkAssociation {
        id: f.uuid("id"),
        project_id: f.opt_string("project_id"),
        network_id: f.uuid("network_id"),
    };
    f.finish(a)
}

pub fn parse_port_association(item: &Value) -> Result<PortAssociation, Vec<String>> {
    let mut f = Fields::new(
        item,
        format!(
            "port association {}",
            item.get("id").and_then(Value::as_str).unwrap_or("?")
        ),
    )?;
    let id = f.uuid("id");
    let project_id = f.opt_string("project_id");
    let port_id = f.uuid("port_id");
    let advertise_fixed_ips = f.opt_bool("advertise_fixed_ips").unwrap_or(true);
    let mut routes = Vec::new();
    match f.obj.get("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                let mut rf = match Fields::new(r, format!("routes[{i}]")) {
                    Ok(rf) => rf,
                    Err(p) => {
                        p.into_iter().for_each(|m| f.problem(m));
                        continue;
                    }
                };
                let local_pref = rf.opt_int("local_pref", 0, u32::MAX as u64, None);
                match rf.string("type").as_str() {
                    "prefix" => {
                        let prefix = rf.string("prefix");
                        routes.push(PortRoute::Prefix { prefix, local_pref });
                    }
                    "bgpvpn" => {
                        let bgpvpn_id = rf.uuid("bgpvpn_id");
                        routes.push(PortRoute::Bgpvpn {
                            bgpvpn_id,
                            local_pref,
                        });
                    }
                    "" => {}
                    other => rf.problem(format!("type {other:?} is neither prefix nor bgpvpn")),
                }
                let problems = rf.problems;
                problems.into_iter().for_each(|m| f.problem(m));
            }
        }
        Some(other) => f.problem(format!("routes is {}, not a list", type_name(other))),
    }
    f.finish(PortAssociation {
        id,
        project_id,
        port_id,
        advertise_fixed_ips,
        routes,
    })
}

fn parse_all<T>(
    items: &[Value],
    parse: fn(&Value) -> Result<T, Vec<String>>,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match parse(item) {
            Ok(v) => out.push(v),
            Err(p) => problems.extend(p),
        }
    }
    out
}

/// Checks the association listings against each other and against the bgpvpn's own id lists.
fn assemble(
    bgpvpn: Bgpvpn,
    routers: &[Value],
    networks: &[Value],
    ports: &[Value],
) -> Result<FullBgpvpn, Vec<String>> {
    let mut problems = Vec::new();
    let routers = parse_all(routers, parse_router_association, &mut problems);
    let networks = parse_all(networks, parse_network_association, &mut problems);
    let ports = parse_all(ports, parse_port_association, &mut problems);
    // The bgpvpn lists the ids of what is associated; an association listing that lacks one is
    // partial, and acting on it would delete bindings.
    let check =
        |kind: &str, listed: &Option<Vec<String>>, found: Vec<&String>, problems: &mut Vec<String>| {
            if let Some(listed) = listed {
                let found: BTreeSet<&String> = found.into_iter().collect();
                for id in listed {
                    if !found.contains(id) {
                        problems.push(format!(
                            "bgpvpn lists {kind} {id}, but its {kind}_associations do not"
                        ));
                    }
                }
            }
        };
    check(
        "router",
        &bgpvpn.routers,
        routers.iter().map(|a| &a.router_id).collect(),
        &mut problems,
    );
    check(
        "network",
        &bgpvpn.networks,
        networks.iter().map(|a| &a.network_id).collect(),
        &mut problems,
    );
    check(
        "port",
        &bgpvpn.ports,
        ports.iter().map(|a| &a.port_id).collect(),
        &mut problems,
    );
    if problems.is_empty() {
        Ok(FullBgpvpn {
            bgpvpn,
            routers,
            networks,
            ports,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "6d1a78c1-d9f6-4823-b3c1-3489abb3f7b1";
    const R: &str = "0f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";

    fn vpn() -> Value {
        // as neutron-server 28.0.2 + networking-bgpvpn 24.0.0 answered an admin (unchanged in 29 + 25)
        json!({"id": ID, "tenant_id": "0123", "networks": [], "routers": [R], "ports": [], "name": "v1", "type": "l3",
               "route_targets": ["64512:1"], "route_distinguishers": [], "import_targets": [], "export_targets": [],
               "vni": 1001, "local_pref": null, "project_id": "0123"})
    }

    #[test]
    fn a_real_answer_parses() {
        let b = parse_bgpvpn(&vpn()).unwrap();
        assert_eq!(
            (b.vni, b.local_pref, b.vpn_type, b.project_id.as_str()),
            (Some(1001), None, VpnType::L3, "0123")
        );
        assert_eq!(b.routers, Some(vec![R.to_string()]));
    }

    #[test]
    fn bad_fields_are_all_reported() {
        let mut v = vpn();
        v["vni"] = json!(16_777_216);
        v["route_targets"] = json!(["64512:1", 7]);
        v["type"] = json!("l4");
        v["local_pref"] = json!(-1);
        v.as_object_mut().unwrap().remove("import_targets");
        let p = parse_bgpvpn(&v).unwrap_err().join("\n");
        for want in [
            "vni 16777216 is outside",
            "route_targets[1]",
            "type \"l4\"",
            "local_pref -1",
            "import_targets is missing (an admin-only",
        ] {
            assert!(p.contains(want), "{want} not in {p}");
        }
        let mut non_admin = vpn();
        non_admin.as_object_mut().unwrap().remove("vni");
        assert!(parse_bgpvpn(&non_admin).unwrap_err()[0].contains("admin-only"));
        assert!(parse_bgpvpn(&json!([1])).is_err());
    }

    #[test]
    fn associations() {
        let ra = parse_router_association(
            &json!({"id": R, "router_id": ID, "project_id": "p", "advertise_extra_routes": true}),
        )
        .unwrap();
        assert_eq!(ra.router_id, ID);
        let pa = parse_port_association(
            &json!({"id": R, "port_id": ID, "advertise_fixed_ips": true, "routes": [
            {"type": "prefix", "prefix": "192.168.100.0/24", "local_pref": 200},
            {"type": "bgpvpn", "bgpvpn_id": ID}]}),
        )
        .unwrap();
        assert_eq!(
            pa.routes,
            vec![
                PortRoute::Prefix {
                    prefix: "192.168.100.0/24".into(),
                    local_pref: Some(200)
                },
                PortRoute::Bgpvpn {
                    bgpvpn_id: ID.into(),
                    local_pref: None
                },
            ]
        );
        let bad = parse_port_association(&json!({"id": R, "port_id": "nope", "routes": [{"type": "x"}, 5]}))
            .unwrap_err()
            .join("\n");
        assert!(
            bad.contains("port_id \"nope\"") && bad.contains("type \"x\"") && bad.contains("routes[1]"),
            "{bad}"
        );
    }

    #[test]
    fn a_partial_association_listing_is_refused() {
        let b = parse_bgpvpn(&vpn()).unwrap();
        let p = assemble(b.clone(), &[], &[], &[]).unwrap_err();
        assert!(p[0].contains("lists router"), "{p:?}");
        let ok = assemble(b, &[json!({"id": ID, "router_id": R})], &[], &[]).unwrap();
        assert_eq!(ok.routers.len(), 1);
    }

    #[test]
    fn evpn_routers_parse_and_others_are_skipped() {
        let r = parse_evpn_router(&json!({"id": R, "name": "r1", "project_id": "p1", "evpn_vni": 1001}))
            .unwrap()
            .unwrap();
        assert_eq!((r.vni, r.project_id.as_str(), r.id.as_str()), (1001, "p1", R));
        // not an EVPN router: nothing else of it matters
        assert_eq!(
            parse_evpn_router(&json!({"id": R, "evpn_vni": null, "project_id": 7})).unwrap(),
            None
        );
        let hidden = parse_evpn_router(&json!({"id": R, "project_id": "p1"})).unwrap_err();
        assert!(hidden[0].contains("evpn_vni is missing"), "{hidden:?}");
        let bad = parse_evpn_router(&json!({"id": R, "evpn_vni": 16_777_216}))
            .unwrap_err()
            .join("\n");
        assert!(
            bad.contains("evpn_vni 16777216 is outside") && bad.contains("project_id is missing"),
            "{bad}"
        );
    }

    /// The answers of a real neutron-server 29.0.0 with the evpn service plugin over OVN
    /// (`hack/neutron/record-evpn-fixtures.py`).
    fn recorded(name: &str) -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/openstack/neutron-29")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str::<Value>(&text).unwrap()["body"].clone()
    }

    #[test]
    fn neutron_29s_routers_and_interfaces_parse() {
        let routers = recorded("routers-fields.json");
        let parsed: Vec<Option<EvpnRouter>> = routers["routers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| parse_evpn_router(r).unwrap())
            .collect();
        let evpn: Vec<(&str, u32)> = parsed
            .iter()
            .flatten()
            .map(|r| (r.name.as_str(), r.vni))
            .collect();
        // an explicit VNI, an auto-allocated one, and a router without EVPN (skipped)
        assert_eq!(evpn, [("r-evpn-1001", 1001), ("r-evpn-auto", 1)]);
        assert_eq!(parsed.iter().filter(|r| r.is_none()).count(), 1);
        let ports = recorded("ports-router-interface.json");
        let interfaces = parse_router_interfaces(ports["ports"].as_array().unwrap()).unwrap();
        let r1001 = parsed.iter().flatten().find(|r| r.vni == 1001).unwrap();
        assert!(
            !interfaces.of(&r1001.id).unwrap().unwrap().is_empty(),
            "{interfaces:?}"
        );
        assert!(interfaces.unreadable.is_empty());
    }

    #[test]
    fn router_interfaces_by_router() {
        const N: &str = "1f3b5a8e-6a0e-4c39-9d0b-0a1b2c3d4e5f";
        let port = |id: &str, router: &str, owner: &str, net: Value| json!({"id": id, "device_id": router, "device_owner": owner, "network_id": net});
        let got = parse_router_interfaces(&[
            port(ID, R, "network:router_interface", json!(N)),
            port(
                ID,
                R,
                "network:ha_router_replicated_interface",
                json!(N.to_uppercase()),
            ),
            port(ID, ID, "network:router_interface_distributed", json!("nope")),
            port(ID, ID, "compute:nova", json!(N)),
        ])
        .unwrap();
        assert_eq!(got.of(R).unwrap().unwrap(), &BTreeSet::from([N.to_string()]));
        assert!(got.of(ID).unwrap_err()[0].contains("network_id"));
        assert_eq!(got.of("other").unwrap(), None);
        let unattributable = parse_router_interfaces(&[port(ID, "", "network:router_interface", json!(N))]);
        assert!(unattributable.unwrap_err().contains("device_id"));
    }

    #[test]
    fn pagination_links() {
        let links = json!([{"rel": "next", "href": "http://elsewhere:1/v2.0/bgpvpn/bgpvpns?limit=2&marker=87ef2e86-f022-4f0f-b9c0-fa7b96fb996d"},
                           {"rel": "previous", "href": "http://x/?marker=a&page_reverse=True"}]);
        assert_eq!(
            next_marker(&links).unwrap().as_deref(),
            Some("87ef2e86-f022-4f0f-b9c0-fa7b96fb996d")
        );
        assert_eq!(
            next_marker(&json!([{"rel": "previous", "href": "http://x/?marker=a"}])).unwrap(),
            None
        );
        assert!(next_marker(&json!([{"rel": "next", "href": "http://x/?limit=1"}])).is_err());
        assert!(next_marker(&json!("x")).is_err());
        assert_eq!(join("http://n:9696/v2.0/", "/v2.0/x"), "http://n:9696/v2.0/x");
        assert_eq!(
            join("http://n/networking", "/v2.0/x"),
            "http://n/networking/v2.0/x"
        );
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
