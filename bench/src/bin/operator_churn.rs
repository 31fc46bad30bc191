//! API writes per pod change (a benchmark command, not a test). Against a real kube-apiserver
//! v1.20.2 (started by the testkit) and the real operator binary: one BGPVPN and one VNIBinding
//! select `--pods` Running pods spread over `--nodes` nodes; then, one change at a time and each
//! after the operator went idle, a pod is added, deleted, relabelled out of / back into the
//! binding, or touched in a way that does not matter (an annotation). For each change it counts
//! what the operator wrote, from the deltas of its own counters:
//! `bgpvpn_operator_node_state_writes_total` (EVPNNodeState applies), `..._status_writes_total`
//! (BGPVPN / VNIBinding status) and `..._plan_passes_total`. A last step adds `--burst` pods at
//! once, to show how the debounce folds a burst into per-node writes.
//!
//! ```sh
//! cargo build --release -p bgpvpn-operator -p bgpvpn-bench
//! target/release/operator_churn            # as root (the apiserver tier)
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bgpvpn_crds::{Bgpvpn, EvpnNodeState, VniBinding};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Operator API writes per pod change, on a real kube-apiserver")]
struct Args {
    /// The operator binary (default: `bgpvpn-operator` next to this program).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pods: usize,
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Repetitions of each kind of change.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Pods added at once in the burst step.
    #[arg(long, default_value_t = 50)]
    burst: usize,
    /// The operator's debounce window (its default is 200 ms).
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
    /// RUST_LOG of the operator; with anything but the default its log is kept (path printed).
    #[arg(long, default_value = "warn")]
    operator_log: String,
}

/// The operator process, killed by its PID when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const NS: &str = "churn";
const VNI: u32 = 300_000;

async fn create<K>(api: &Api<K>, body: serde_json::Value) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    Ok(api.create(&PostParams::default(), &serde_json::from_value(body)?).await?)
}

async fn running_pod(client: &Client, name: &str, node: &str, ip: &str, app: &str) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    create(&api, json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.invalid/c"}]}})).await?;
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}))).await?;
    Ok(())
}

fn pod_ip(i: usize) -> String {
    format!("10.77.{}.{}", i / 250, i % 250 + 1)
}

/// Counter deltas of one change and how long it took to show in the EVPNNodeStates.
type Sample = ([f64; 4], Duration);

/// `/metrics` of the operator, read over a plain TCP connection (HTTP/1.0).
async fn scrape(port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let mut m = BTreeMap::new();
    for line in out.lines().filter(|l| l.starts_with("bgpvpn_operator_")) {
        if let Some((k, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.parse::<f64>()
        {
            m.insert(k.to_string(), v);
        }
    }
    Ok(m)
}

/// Mean duration of the operator's cluster passes between two scrapes.
fn mean_pass_ms(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> Option<f64> {
    let k = |suffix: &str| format!("bgpvpn_operator_reconcile_duration_seconds_{suffix}{{controller=\"cluster\"}}");
    let d = |key: &str| b.get(key).copied().unwrap_or(0.0) - a.get(key).copied().unwrap_or(0.0);
    let n = d(&k("count"));
    (n > 0.0).then(|| 1000.0 * d(&k("sum")) / n)
}

const COUNTERS: [(&str, &str); 4] = [
    ("node_state", "bgpvpn_operator_node_state_writes_total{op=\"apply\"}"),
    ("bgpvpn_status", "bgpvpn_operator_status_writes_total{kind=\"BGPVPN\"}"),
    ("binding_status", "bgpvpn_operator_status_writes_total{kind=\"VNIBinding\"}"),
    ("plan_passes", "bgpvpn_operator_plan_passes_total"),
];

fn deltas(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> [f64; 4] {
    COUNTERS.map(|(_, k)| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0))
}

/// Endpoints of VNI [`VNI`] over all EVPNNodeStates.
async fn endpoints(client: &Client) -> anyhow::Result<Vec<String>> {
    let list = Api::<EvpnNodeState>::all(client.clone()).list(&Default::default()).await?.items;
    Ok(list.iter().flat_map(|s| &s.spec.l3vnis).filter(|v| v.vni == VNI).flat_map(|v| v.endpoints.iter().map(|e| e.ip.clone())).collect())
}

async fn wait_endpoints(client: &Client, what: &str, ok: impl Fn(&[String]) -> bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        if ok(&endpoints(client).await?) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("{what}: not reflected in the EVPNNodeStates within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let operator_bin = match args.operator_bin.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("bgpvpn-operator"),
    };
    if !operator_bin.exists() {
        bail!("{} not found: build it first (cargo build --release -p bgpvpn-operator) or pass --operator-bin", operator_bin.display());
    }
    let client = bgpvpn_testkit::client().await.context("the apiserver tier is not available (run as root, see hack/test.sh)")?;
    let server = bgpvpn_testkit::server().expect("started above");
    let dir = std::env::temp_dir().join(format!("operator-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("operator.yaml");
    std::fs::write(&config, format!("underlay:\n  asn: 65001\n  neighbors:\n    - address: 172.30.0.254\n      remoteAsn: 65000\ndebounceMillis: {}\n", args.debounce_ms))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(&operator_bin)
        .args(["run", "--no-leader-election", "--metrics-addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .env("KUBECONFIG", &server.kubeconfig)
        .env("RUST_LOG", &args.operator_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("operator.log"))?)
        .spawn()
        .with_context(|| format!("start {}", operator_bin.display()))?;
    let _operator = Operator(child);
    println!("operator: {} (metrics 127.0.0.1:{port}), debounce {} ms", operator_bin.display(), args.debounce_ms);

    create(&Api::<Namespace>::all(client.clone()), json!({"metadata": {"name": NS}})).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for n in 0..args.nodes {
        let name = format!("churn-node-{n}");
        let ip = format!("172.28.0.{}", n + 1);
        create(&nodes, json!({"metadata": {"name": name}})).await?;
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}}))).await?;
    }
    create(
        &Api::<Bgpvpn>::all(client.clone()),
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "BGPVPN", "metadata": {"name": "churn"},
            "spec": {"vni": VNI, "routeTargets": [format!("65000:{VNI}")], "allowedNamespaces": {"all": true}}}),
    )
    .await?;
    create(
        &Api::<VniBinding>::namespaced(client.clone(), NS),
        json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "VNIBinding", "metadata": {"name": "b"},
            "spec": {"bgpvpn": "churn", "podSelector": {"matchLabels": {"app": "churn"}}}}),
    )
    .await?;
    let node_of = |i: usize| format!("churn-node-{}", i % args.nodes.max(1));
    for i in 0..args.pods {
        running_pod(&client, &format!("pod-{i}"), &node_of(i), &pod_ip(i), "churn").await?;
    }
    let want = args.pods;
    wait_endpoints(&client, "initial pods", |e| e.len() == want).await?;
    let quiet = Duration::from_millis(2 * args.debounce_ms + 1000);
    tokio::time::sleep(quiet).await;
    println!("{} pods on {} nodes bound to VNI {VNI}; each change waits until the operator is idle", args.pods, args.nodes);

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let churn_start = scrape(port).await?;
    let mut results: Vec<(&str, Vec<Sample>)> = Vec::new();
    let mut next = args.pods;
    let kinds = ["add a selected pod", "delete a selected pod", "relabel a pod out of the binding", "relabel it back in", "annotate a pod (no effect)"];
    for kind in kinds {
        let mut samples = Vec::new();
        for r in 0..args.repeat {
            let before = scrape(port).await?;
            let took = match kind {
                "add a selected pod" => {
                    let i = next;
                    next += 1;
                    running_pod(&client, &format!("pod-{i}"), &node_of(i), &pod_ip(i), "churn").await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| e.contains(&ip)).await?
                }
                "delete a selected pod" => {
                    let i = r;
                    pods.delete(&format!("pod-{i}"), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| !e.contains(&ip)).await?
                }
                "relabel a pod out of the binding" | "relabel it back in" => {
                    let i = args.repeat + r;
                    let out = kind.starts_with("relabel a pod out");
                    let app = if out { "other" } else { "churn" };
                    pods.patch(&format!("pod-{i}"), &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": app}}}))).await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| e.contains(&ip) != out).await?
                }
                _ => {
                    let i = 2 * args.repeat + r;
                    pods.patch(&format!("pod-{i}"), &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"bench/touch": format!("{r}")}}})))
                        .await?;
                    Duration::ZERO
                }
            };
            tokio::time::sleep(quiet).await;
            samples.push((deltas(&before, &scrape(port).await?), took));
        }
        results.push((kind, samples));
    }
    // a burst: `--burst` pods created back to back
    let before = scrape(port).await?;
    let t0 = Instant::now();
    let first = next;
    for i in first..first + args.burst {
        running_pod(&client, &format!("pod-{i}"), &node_of(i), &pod_ip(i), "churn").await?;
    }
    let created = t0.elapsed();
    let all: Vec<String> = (first..first + args.burst).map(pod_ip).collect();
    wait_endpoints(&client, "burst", |e| all.iter().all(|ip| e.contains(ip))).await?;
    let reflected = t0.elapsed();
    tokio::time::sleep(quiet).await;
    let burst = deltas(&before, &scrape(port).await?);

    println!("\n| pod change | EVPNNodeState writes | BGPVPN status writes | VNIBinding status writes | plan passes | reflected in EVPNNodeState after |");
    println!("|---|---|---|---|---|---|");
    for (kind, samples) in &results {
        let n = samples.len() as f64;
        let mean = |k: usize| samples.iter().map(|(d, _)| d[k]).sum::<f64>() / n;
        let range = |k: usize| {
            let (lo, hi) = samples.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (d, _)| (lo.min(d[k]), hi.max(d[k])));
            if lo == hi { format!("{lo}") } else { format!("{:.1} ({lo}-{hi})", mean(k)) }
        };
        let lat: Vec<u128> = samples.iter().map(|(_, t)| t.as_millis()).collect();
        let lat = if lat.iter().all(|&x| x == 0) { "-".to_string() } else { format!("{:?} ms", lat) };
        println!("| {kind} (x{}) | {} | {} | {} | {} | {lat} |", samples.len(), range(0), range(1), range(2), range(3));
    }
    println!(
        "| burst: {} pods created back to back ({:.1} s to create, all reflected after {:.1} s) | {} | {} | {} | {} | |",
        args.burst,
        created.as_secs_f64(),
        reflected.as_secs_f64(),
        burst[0],
        burst[1],
        burst[2],
        burst[3]
    );
    let end = scrape(port).await?;
    println!(
        "({} pods on {} nodes; a write = one API request counted by the operator's own metrics; mean cluster pass {} over this run)",
        args.pods,
        args.nodes,
        mean_pass_ms(&churn_start, &end).map(|ms| format!("{ms:.1} ms")).unwrap_or_else(|| "-".into())
    );
    if args.operator_log == "warn" {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("operator log: {}", dir.join("operator.log").display());
    }
    Ok(())
}
