//! Shared by the OpenStack sync tests: real neutron-server / Keystone processes (through
//! `hack/neutron/*.sh`), a client of Neutron's REST API to change it the way an OpenStack user
//! would, Kuryr objects, and small waits.
//!
//! The servers are started on free loopback ports in a temporary directory; a watcher process
//! stops them (by the PID the script recorded) and removes the directory when the test binary
//! exits. When the venv cannot be set up, tests print `SKIPPED: …` and return, unless
//! `BGPVPN_REQUIRE_NEUTRON=1` (set by `hack/test.sh` as root), which makes that a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bgpvpn_crds::{Bgpvpn, VniBinding};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Tests of one binary that share the apiserver and a Neutron run one at a time: two syncs over
/// the same objects would fight.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn script(name: &str) -> PathBuf {
    repo_root().join("hack/neutron").join(name)
}

fn run_script(name: &str, args: &[&str], envs: &[(&str, String)]) -> Result<Duration, String> {
    let t0 = Instant::now();
    let out = Command::new(script(name))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(t0.elapsed())
}

/// Runs `script stop <dir>` and removes `<root>` once this test binary has exited.
fn watch(script_name: &str, root: &Path, dir: &Path) -> Result<(), String> {
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {script} stop {dir} >/dev/null 2>&1; rm -rf {root}",
        pid = std::process::id(),
        script = script(script_name).display(),
        dir = dir.display(),
        root = root.display(),
    );
    Command::new("bash")
        .args(["-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the cleanup watcher: {e}"))
}

/// A running neutron-server (or Keystone) started by a `hack/neutron` script.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    pub dir: PathBuf,
    script: &'static str,
    /// `setup` (venv, config, schema) and `start` (to ready) durations.
    pub setup_time: Duration,
    pub start_time: Duration,
}

impl Server {
    /// `setup` + `start` in a fresh directory; `env` goes to both.
    pub fn start(script_name: &'static str, env: &[(&str, String)]) -> Result<Server, String> {
        let root = tempfile::Builder::new()
            .prefix("bgpvpn-os-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let dir = root.join("srv");
        watch(script_name, &root, &dir)?;
        let d = dir.to_str().unwrap();
        let setup_time = run_script(script_name, &["setup", d], env)?;
        let start_time = run_script(script_name, &["start", d], env)?;
        let url = std::fs::read_to_string(dir.join("endpoint"))
            .map_err(|e| e.to_string())?
            .trim()
            .to_string();
        Ok(Server {
            url,
            dir,
            script: script_name,
            setup_time,
            start_time,
        })
    }

    /// Stops the server (it can be started again with [`Server::restart`], on a new port).
    pub fn stop(&self) {
        run_script(self.script, &["stop", self.dir.to_str().unwrap()], &[]).expect("stop");
    }

    pub fn restart(&mut self) {
        run_script(self.script, &["start", self.dir.to_str().unwrap()], &[]).expect("start again");
        self.url = std::fs::read_to_string(self.dir.join("endpoint"))
            .unwrap()
            .trim()
            .to_string();
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    }
}

/// Turns a failed start into a skip (or a failure when `BGPVPN_REQUIRE_NEUTRON=1`).
pub fn or_skip<T>(what: &str, r: &Result<T, String>) -> bool {
    match r {
        Ok(_) => true,
        Err(reason) if std::env::var("BGPVPN_REQUIRE_NEUTRON").as_deref() == Ok("1") => {
            panic!("BGPVPN_REQUIRE_NEUTRON=1 but {what} did not start: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "SKIPPED: {what} not available ({reason}); run `hack/neutron/install.sh` (needs PyPI) or `hack/test.sh` as root"
            );
            false
        }
    }
}

static NEUTRON: OnceLock<Result<Server, String>> = OnceLock::new();

/// The noauth neutron-server shared by the tests of this binary.
pub fn shared_neutron() -> Option<&'static Server> {
    let r = NEUTRON.get_or_init(|| {
        let s = Server::start("neutron-bgpvpn.sh", &[])?;
        eprintln!(
            "MEASURE neutron tier: setup {:.1} s, start {:.1} s",
            s.setup_time.as_secs_f64(),
            s.start_time.as_secs_f64()
        );
        Ok(s)
    });
    if or_skip("the neutron-server tier", r) {
        r.as_ref().ok()
    } else {
        None
    }
}

#[macro_export]
macro_rules! neutron_or_skip {
    () => {
        match openstack_support::shared_neutron() {
            Some(n) => n,
            None => return,
        }
    };
}

/// A client of Neutron's REST API acting as an admin of one project.
#[derive(Clone, Debug)]
pub struct NeutronApi {
    pub url: String,
    pub project: String,
    /// `None`: noauth (identity from headers); `Some`: a Keystone token.
    pub token: Option<String>,
    http: reqwest::Client,
}

impl NeutronApi {
    pub fn noauth(url: &str) -> Self {
        let project = uuid_like().replace('-', "");
        NeutronApi {
            url: url.to_string(),
            project,
            token: None,
            http: reqwest::Client::new(),
        }
    }

    pub fn with_token(url: &str, project: &str, token: &str) -> Self {
        NeutronApi {
            url: url.to_string(),
            project: project.to_string(),
            token: Some(token.to_string()),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("Accept", "application/json");
        req = match &self.token {
            Some(t) => req.header("X-Auth-Token", t),
            None => req
                .header("X-Project-Id", &self.project)
                .header("X-User-Id", "test")
                .header("X-Roles", "admin"),
        };
        if let Some(mut b) = body {
            if self.token.is_none() {
                // noauth: every create body must name its project
                if let Some(obj) = b
                    .as_object_mut()
                    .and_then(|o| o.values_mut().next())
                    .and_then(Value::as_object_mut)
                    && method == reqwest::Method::POST
                {
                    obj.entry("project_id").or_insert(json!(self.project));
                }
            }
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn create(&self, path: &str, kind: &str, body: Value) -> String {
        let v = self
            .call(reqwest::Method::POST, path, Some(json!({ kind: body })))
            .await;
        v[kind]["id"].as_str().unwrap().to_string()
    }

    pub async fn network(&self, cidr: &str) -> String {
        let net = self
            .create(
                "/v2.0/networks",
                "network",
                json!({"name": format!("t-{}", short())}),
            )
            .await;
        self.create(
            "/v2.0/subnets",
            "subnet",
            json!({"network_id": net, "ip_version": 4, "cidr": cidr}),
        )
        .await;
        net
    }

    pub async fn router(&self) -> String {
        self.create(
            "/v2.0/routers",
            "router",
            json!({"name": format!("t-{}", short())}),
        )
        .await
    }

    /// Plugs `network` into `router` (a new port on it, added as a router interface).
    pub async fn router_interface(&self, router: &str, network: &str) {
        let port = self.port(network).await;
        self.call(
            reqwest::Method::PUT,
            &format!("/v2.0/routers/{router}/add_router_interface"),
            Some(json!({"port_id": port})),
        )
        .await;
    }

    pub async fn port(&self, network: &str) -> String {
        self.create(
            "/v2.0/ports",
            "port",
            json!({"network_id": network, "name": format!("t-{}", short())}),
        )
        .await
    }

    pub async fn bgpvpn(&self, body: Value) -> String {
        self.create("/v2.0/bgpvpn/bgpvpns", "bgpvpn", body).await
    }

    pub async fn update_bgpvpn(&self, id: &str, body: Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/v2.0/bgpvpn/bgpvpns/{id}"),
            Some(json!({"bgpvpn": body})),
        )
        .await;
    }

    pub async fn delete_bgpvpn(&self, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v2.0/bgpvpn/bgpvpns/{id}"),
            None,
        )
        .await;
    }

    /// `kind` = `router`, `network` or `port`.
    pub async fn associate(&self, bgpvpn: &str, kind: &str, body: Value) -> String {
        self.create(
            &format!("/v2.0/bgpvpn/bgpvpns/{bgpvpn}/{kind}_associations"),
            &format!("{kind}_association"),
            body,
        )
        .await
    }

    pub async fn dissociate(&self, bgpvpn: &str, kind: &str, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v2.0/bgpvpn/bgpvpns/{bgpvpn}/{kind}_associations/{id}"),
            None,
        )
        .await;
    }

    /// Deletes every bgpvpn this server has (a clean slate for a test).
    pub async fn delete_all_bgpvpns(&self) {
        let list = self
            .call(reqwest::Method::GET, "/v2.0/bgpvpn/bgpvpns", None)
            .await;
        for b in list["bgpvpns"].as_array().unwrap() {
            self.delete_bgpvpn(b["id"].as_str().unwrap()).await;
        }
    }
}

pub fn short() -> String {
    uuid_like()[..8].to_string()
}

/// A random UUID-shaped id.
pub fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    let f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut &f, &mut bytes).unwrap();
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A VNI no other test of this binary uses.
pub fn unique_vni() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(20_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Installs the Kuryr CRDs from the shared fixture, as Kuryr's deployment would.
pub async fn install_kuryr_crds(client: &Client) {
    bgpvpn_testkit::apply_crd_file(client, &fixture("kuryr-crds.yaml")).await;
}

/// Deletes the Kuryr CRDs (and so every Kuryr object) and waits until they are gone, as on a
/// cluster that never ran Kuryr. [`install_kuryr_crds`] brings them back.
pub async fn uninstall_kuryr_crds(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["kuryrnetworks.openstack.org", "kuryrports.openstack.org"] {
        let _ = api.delete(name, &Default::default()).await;
        poll(&format!("CRD {name} gone"), Duration::from_secs(60), || {
            let api = api.clone();
            async move { api.get_opt(name).await.unwrap().is_none().then_some(()) }
        })
        .await;
    }
}

/// A new namespace of project `project` whose pods the admin says are on Neutron network
/// `network` (the Namespace label for clusters without Kuryr).
pub async fn network_namespace(client: &Client, project: &str, network: &str) -> String {
    let name = bgpvpn_testkit::unique_name("os");
    let labels = json!({PROJECT_LABEL: project, "bgpvpn.io/openstack-network-id": network});
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
        )
        .await
        .unwrap();
    name
}

pub use bgpvpn_testkit::kuryr_api;

/// The Namespace label by which the cluster admin maps a namespace to an OpenStack project.
pub const PROJECT_LABEL: &str = "bgpvpn.io/openstack-project-id";

/// A new namespace of OpenStack project `project` (labelled so by the admin), with Kuryr's
/// KuryrNetwork in it (network and router of the namespace).
pub async fn kuryr_namespace(client: &Client, project: &str, net_id: &str, router_id: &str) -> String {
    let ns = project_namespace(client, project).await;
    let obj = json!({"apiVersion": "openstack.org/v1", "kind": "KuryrNetwork", "metadata": {"name": ns, "namespace": ns},
        "spec": {"nsName": ns, "projectId": project, "nsLabels": {}},
        "status": {"netId": net_id, "routerId": router_id, "subnetId": uuid_like(), "subnetCIDR": "10.0.0.0/24", "populated": true}});
    kuryr_api(client, "KuryrNetwork", &ns)
        .create(&PostParams::default(), &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
    ns
}

/// A pod's KuryrPort whose default vif is Neutron port `port_id` with address 10.20.0.5, in
/// Kuryr's own (versioned object) format; `spec.podUid` is the pod's when the pod exists.
pub async fn kuryr_port(client: &Client, ns: &str, pod: &str, port_id: &str, net_id: &str) {
    kuryr_port_with_ip(client, ns, pod, port_id, net_id, "10.20.0.5").await
}

/// [`kuryr_port`] with the vif's address.
pub async fn kuryr_port_with_ip(
    client: &Client,
    ns: &str,
    pod: &str,
    port_id: &str,
    net_id: &str,
    address: &str,
) {
    let existing = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .get_opt(pod)
        .await
        .unwrap();
    let pod_uid = existing.and_then(|p| p.metadata.uid).unwrap_or_else(uuid_like);
    // oslo versioned-object primitives, nested the way Kuryr stores them
    let vo = |name: &str, data: Value| json!({"versioned_object.name": name, "versioned_object.namespace": "os_vif", "versioned_object.version": "1.0", "versioned_object.data": data});
    let ip = vo("FixedIP", json!({"address": address}));
    let subnet = vo(
        "Subnet",
        json!({"cidr": "10.20.0.0/24", "ips": vo("FixedIPList", json!({"objects": [ip]}))}),
    );
    let network = vo(
        "Network",
        json!({"id": net_id, "subnets": vo("SubnetList", json!({"objects": [subnet]}))}),
    );
    let vif = vo(
        "VIFOpenVSwitch",
        json!({"id": port_id, "address": "fa:16:3e:00:00:01", "active": true, "vif_name": format!("tap{}", &port_id[..11]), "network": network}),
    );
    let obj = json!({"apiVersion": "openstack.org/v1", "kind": "KuryrPort", "metadata": {"name": pod, "namespace": ns, "labels": {"kuryr.openstack.org/nodeName": "node-1"}},
        "spec": {"podUid": pod_uid, "podNodeName": "node-1"},
        "status": {"vifs": {"eth0": {"default": true, "vif": vif}}}});
    kuryr_api(client, "KuryrPort", ns)
        .create(&PostParams::default(), &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
}

/// A new namespace mapped to OpenStack project `project` by the admin's label.
pub async fn project_namespace(client: &Client, project: &str) -> String {
    let name = bgpvpn_testkit::unique_name("os");
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name, "labels": {PROJECT_LABEL: project}}}))
            .unwrap(),
    )
    .await
    .unwrap();
    name
}

pub async fn namespace(client: &Client) -> String {
    let name = bgpvpn_testkit::unique_name("os");
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
    name
}

pub async fn get_vpn(client: &Client, name: &str) -> Option<Bgpvpn> {
    Api::<Bgpvpn>::all(client.clone()).get_opt(name).await.unwrap()
}

pub async fn get_binding(client: &Client, ns: &str, name: &str) -> Option<VniBinding> {
    Api::<VniBinding>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

/// The objects the sync owns, by `namespace/name` (cluster-scoped: `name`) → resourceVersion.
pub async fn owned(client: &Client) -> std::collections::BTreeMap<String, String> {
    let lp = ListParams::default().labels("bgpvpn.io/managed-by=openstack-sync");
    let mut out = std::collections::BTreeMap::new();
    for v in Api::<Bgpvpn>::all(client.clone()).list(&lp).await.unwrap() {
        out.insert(
            v.metadata.name.clone().unwrap(),
            v.metadata.resource_version.clone().unwrap(),
        );
    }
    for b in Api::<VniBinding>::all(client.clone()).list(&lp).await.unwrap() {
        out.insert(
            format!(
                "{}/{}",
                b.metadata.namespace.clone().unwrap(),
                b.metadata.name.clone().unwrap()
            ),
            b.metadata.resource_version.clone().unwrap(),
        );
    }
    out
}

/// Same as [`owned`] without the resourceVersions of BGPVPNs (their status changes).
pub async fn owned_names(client: &Client) -> Vec<String> {
    owned(client).await.into_keys().collect()
}

pub fn synced(v: &Bgpvpn) -> Option<(String, String, String)> {
    let c = v
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Events (events.k8s.io) of `reason` about an object named `name`.
pub async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// Polls `probe` every 20 ms (finer than testkit's 100 ms, for the latency figures) until it
/// returns `Some`; panics after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// min / median / max of some durations, in ms.
pub fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "n={} min {:.0} ms, median {:.0} ms, max {:.0} ms",
        v.len(),
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1])
    )
}
