//! What the operator benchmarks share: the operator process they start against the testkit's
//! real kube-apiserver, its `/metrics`, and the objects they create.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use bgpvpn_crds::{Bgpvpn, VniBinding};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// The operator process, started with `--no-leader-election` and its own metrics port; killed
/// by its PID when dropped.
pub struct Operator {
    child: Child,
    pub binary: PathBuf,
    pub metrics_port: u16,
    /// Scratch directory with `operator.yaml` and `operator.log`.
    pub dir: PathBuf,
}

impl Operator {
    /// Starts `binary` (default: `bgpvpn-operator` next to the running benchmark) against the
    /// cluster of `kubeconfig`, with this debounce window and `RUST_LOG`.
    pub fn start(
        binary: Option<PathBuf>,
        kubeconfig: &Path,
        name: &str,
        debounce_ms: u64,
        rust_log: &str,
    ) -> anyhow::Result<Self> {
        let binary = match binary {
            Some(p) => p,
            None => std::env::current_exe()?.with_file_name("bgpvpn-operator"),
        };
        if !binary.exists() {
            bail!(
                "{} not found: build it first (cargo build --release -p bgpvpn-operator) or pass --operator-bin",
                binary.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("operator.yaml");
        std::fs::write(
            &config,
            format!(
                "underlay:\n  asn: 65001\n  neighbors:\n    - address: 172.30.0.254\n      remoteAsn: 65000\ndebounceMillis: {debounce_ms}\n"
            ),
        )?;
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&binary)
            .args([
                "run",
                "--no-leader-election",
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--config",
            ])
            .arg(&config)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("operator.log"))?)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        Ok(Self {
            child,
            binary,
            metrics_port,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The operator's `/metrics` text, read over a plain TCP connection (HTTP/1.0).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn create<K>(api: &Api<K>, body: serde_json::Value) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api
        .create(&PostParams::default(), &serde_json::from_value(body)?)
        .await?)
}

/// A Node with an InternalIP (status is written separately: create ignores it).
pub async fn node(client: &Client, name: &str, ip: &str) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    create(&api, json!({"metadata": {"name": name}})).await?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}})),
    )
    .await?;
    Ok(())
}

pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": name}}),
    )
    .await?;
    Ok(())
}

/// A pod scheduled on `node`, Running with `ip` (no kubelet: the status is patched in).
pub async fn running_pod(
    client: Client,
    ns: String,
    name: String,
    app: String,
    node: String,
    ip: String,
) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    create(&api, json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/c"}]}})).await?;
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})),
    )
    .await?;
    Ok(())
}

pub async fn bgpvpn(client: &Client, name: &str, vni: u32) -> anyhow::Result<()> {
    create(
        &Api::<Bgpvpn>::all(client.clone()),
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": name},
            "spec": {"vni": vni, "routeTargets": [format!("65000:{vni}")], "allowedNamespaces": {"all": true}}}),
    )
    .await?;
    Ok(())
}

/// A VNIBinding of the pods labelled `app=<app>` in `ns` to `vpn`.
pub async fn binding(client: &Client, ns: &str, name: &str, vpn: &str, app: &str) -> anyhow::Result<()> {
    create(
        &Api::<VniBinding>::namespaced(client.clone(), ns),
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "metadata": {"name": name},
            "spec": {"bgpvpn": vpn, "podSelector": {"matchLabels": {"app": app}}}}),
    )
    .await?;
    Ok(())
}
