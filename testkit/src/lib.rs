//! Test-only helpers for the real-parts tiers.
//!
//! [`client`] starts one real kube-apiserver (v1.37.2, or `KUBE_VERSION`) + etcd per test binary (through
//! `hack/testbed/kube-apiserver.sh`, on free loopback ports), applies the committed CRDs from
//! `crds/`, and hands each test its own client; [`client_with_controller_manager`] also runs
//! kube-controller-manager (garbage collection and the other controllers a cluster has). A
//! watcher process stops the daemons and removes their state when the test binary exits.
//!
//! Without a built apiserver the tests print `SKIPPED: …` and return, unless
//! `BGPVPN_REQUIRE_APISERVER=1` (set by `hack/test.sh`, so CI never skips), which makes that a
//! failure.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

/// A running apiserver, shared by the tests of one binary.
#[derive(Debug)]
pub struct ApiServer {
    pub kubeconfig: PathBuf,
    /// A kubectl of the server's own version (built with it by `kube-apiserver.sh build`).
    pub kubectl: PathBuf,
}

/// The binary's server, and whether it runs kube-controller-manager.
static SERVER: OnceLock<(bool, Result<ApiServer, String>)> = OnceLock::new();

/// The repository root (where `hack/`, `crds/` and `examples/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

fn script() -> PathBuf {
    repo_root().join("hack/testbed/kube-apiserver.sh")
}

fn start(controller_manager: bool) -> Result<ApiServer, String> {
    let dir = tempfile::Builder::new()
        .prefix("bgpvpn-kube-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let rundir = dir.join("kube");
    let out = Command::new(script())
        .arg("start")
        .arg(&rundir)
        .env(
            "KUBE_CONTROLLER_MANAGER",
            if controller_manager { "1" } else { "" },
        )
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "kube-apiserver.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Stops etcd + apiserver once this test binary is gone (statics are never dropped).
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {script} stop {run} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        script = script().display(),
        run = rundir.display(),
        dir = dir.display(),
    );
    Command::new("bash")
        .args(["-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cleanup watcher: {e}"))?;
    let kubectl = Command::new(script())
        .arg("kubectl")
        .output()
        .map_err(|e| e.to_string())?;
    if !kubectl.status.success() {
        return Err(format!(
            "no kubectl: {}",
            String::from_utf8_lossy(&kubectl.stderr).trim()
        ));
    }
    let server = ApiServer {
        kubeconfig: rundir.join("kubeconfig"),
        kubectl: PathBuf::from(String::from_utf8_lossy(&kubectl.stdout).trim()),
    };
    Ok(server)
}

/// The shared apiserver (started without kube-controller-manager unless this binary asked for
/// it first), or `None` (with a printed reason) when the tier is skipped.
pub fn server() -> Option<&'static ApiServer> {
    let (_, started) = SERVER.get_or_init(|| (false, start(false)));
    ready_or_skip(started)
}

/// The shared apiserver with kube-controller-manager beside it. Every test of a binary that
/// needs the controllers must ask through this (or [`client_with_controller_manager`]), or the
/// first test to run decides.
pub fn server_with_controller_manager() -> Option<&'static ApiServer> {
    let (with_kcm, started) = SERVER.get_or_init(|| (true, start(true)));
    assert!(
        *with_kcm,
        "this test binary's API server was started without kube-controller-manager: \
         ask for it in every test (client_with_controller_manager)"
    );
    ready_or_skip(started)
}

fn ready_or_skip(started: &'static Result<ApiServer, String>) -> Option<&'static ApiServer> {
    match started {
        Ok(s) => Some(s),
        Err(reason) if std::env::var("BGPVPN_REQUIRE_APISERVER").as_deref() == Ok("1") => {
            panic!("BGPVPN_REQUIRE_APISERVER=1 but the real apiserver did not start: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "SKIPPED: real kube-apiserver tier not available ({reason}); run `hack/test.sh` as root"
            );
            None
        }
    }
}

/// A fresh client of the shared apiserver with the project's CRDs established, or `None` when
/// the tier is skipped. Each test gets its own client: a client is bound to the runtime that
/// made it, and every `#[tokio::test]` has its own runtime.
pub async fn client() -> Option<kube::Client> {
    client_of(server()?).await
}

/// [`client`], of an API server with kube-controller-manager beside it.
pub async fn client_with_controller_manager() -> Option<kube::Client> {
    client_of(server_with_controller_manager()?).await
}

async fn client_of(server: &ApiServer) -> Option<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig written by kube-apiserver.sh");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    let client = kube::Client::try_from(config).expect("client from kubeconfig");
    apply_crds(&client).await;
    Some(client)
}

/// `let client = testkit::client_or_skip!();` returns from the test when the tier is skipped.
#[macro_export]
macro_rules! client_or_skip {
    () => {
        match $crate::client().await {
            Some(c) => c,
            None => return,
        }
    };
}

/// The committed CRD files (`crds/*.yaml`), as a user applies them.
pub fn committed_crd_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("crds"))
        .expect("crds/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Applies the committed CRDs (server-side apply, idempotent) and waits until each is established.
pub async fn apply_crds(client: &kube::Client) {
    for file in committed_crd_files() {
        apply_crd_file(client, &file).await;
    }
}

/// Applies every CRD of a (multi-document) YAML file and waits until each is established.
pub async fn apply_crd_file(client: &kube::Client, file: &Path) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("{} is not a CRD: {e}", file.display()));
        let name = crd.metadata.name.clone().expect("CRD has a name");
        api.patch(
            &name,
            &PatchParams::apply("bgpvpn-testkit").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established within 30 s"))
        .expect("watch CRD");
    }
}

/// The API of a Kuryr kind (`KuryrNetwork`, `KuryrPort`: group openstack.org/v1, namespaced),
/// for tests that write Kuryr's objects as Kuryr would.
pub fn kuryr_api(client: &kube::Client, kind: &str, namespace: &str) -> Api<kube::api::DynamicObject> {
    use kube::core::{ApiResource, GroupVersionKind};
    let plural = format!("{}s", kind.to_lowercase());
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("openstack.org", "v1", kind), &plural);
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Runs the server's kubectl with the test kubeconfig.
pub fn kubectl(args: &[&str]) -> Output {
    let server = server().expect("kubectl() needs the apiserver tier");
    Command::new(&server.kubectl)
        .args(args)
        .env("KUBECONFIG", &server.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

/// A name no other test (or earlier run) uses: `<prefix>-<8 hex>`.
pub fn unique_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{prefix}-{:08x}", h.finish() as u32)
}

/// Polls `probe` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
/// Tests wait for an observable state this way, never for a fixed time.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A binary of the workspace that `cargo build --workspace` put next to the running test binary
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`). Panics with a hint when missing.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace` first (hack/test.sh does)",
        path.display()
    );
    path
}
