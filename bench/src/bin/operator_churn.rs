//! API writes per pod change (a benchmark command, not a test). Against a real kube-apiserver
//! (v1.37.2, started by the testkit) and the real operator binary: one BGPVPN and one VNIBinding
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
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bgpvpn_bench::{Operator, bgpvpn, binding, namespace, node, running_pod};
use bgpvpn_crds::EvpnNodeState;
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
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

const NS: &str = "churn";
const VNI: u32 = 300_000;

fn pod_ip(i: usize) -> String {
    format!("10.77.{}.{}", i / 250, i % 250 + 1)
}

/// Counter deltas of one change and how long it took to show in the EVPNNodeStates.
type Sample = ([f64; 4], Duration);

/// The operator's `bgpvpn_operator_*` metrics.
async fn scrape(operator: &Operator) -> anyhow::Result<BTreeMap<String, f64>> {
    let out = operator.metrics().await?;
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
    let k = |suffix: &str| {
        format!("bgpvpn_operator_reconcile_duration_seconds_{suffix}{{controller=\"cluster\"}}")
    };
    let d = |key: &str| b.get(key).copied().unwrap_or(0.0) - a.get(key).copied().unwrap_or(0.0);
    let n = d(&k("count"));
    (n > 0.0).then(|| 1000.0 * d(&k("sum")) / n)
}

const COUNTERS: [(&str, &str); 4] = [
    (
        "node_state",
        "bgpvpn_operator_node_state_writes_total{op=\"apply\"}",
    ),
    (
        "bgpvpn_status",
        "bgpvpn_operator_status_writes_total{kind=\"BGPVPN\"}",
    ),
    (
        "binding_status",
        "bgpvpn_operator_status_writes_total{kind=\"VNIBinding\"}",
    ),
    ("plan_passes", "bgpvpn_operator_plan_passes_total"),
];

fn deltas(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> [f64; 4] {
    COUNTERS.map(|(_, k)| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0))
}

/// Endpoints of VNI [`VNI`] over all EVPNNodeStates.
async fn endpoints(client: &Client) -> anyhow::Result<Vec<String>> {
    let list = Api::<EvpnNodeState>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    Ok(list
        .iter()
        .flat_map(|s| &s.spec.l3vnis)
        .filter(|v| v.vni == VNI)
        .flat_map(|v| v.endpoints.iter().map(|e| e.ip.clone()))
        .collect())
}

async fn wait_endpoints(
    client: &Client,
    what: &str,
    ok: impl Fn(&[String]) -> bool,
) -> anyhow::Result<Duration> {
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
    let client = bgpvpn_testkit::client()
        .await
        .context("the apiserver tier is not available (run as root, see hack/test.sh)")?;
    let server = bgpvpn_testkit::server().expect("started above");
    let operator = Operator::start(
        args.operator_bin.clone(),
        &server.kubeconfig,
        "operator-churn",
        args.debounce_ms,
        &args.operator_log,
    )?;
    println!(
        "operator: {} (metrics 127.0.0.1:{}), debounce {} ms",
        operator.binary.display(),
        operator.metrics_port,
        args.debounce_ms
    );

    namespace(&client, NS).await?;
    for n in 0..args.nodes {
        node(
            &client,
            &format!("churn-node-{n}"),
            &format!("172.28.0.{}", n + 1),
        )
        .await?;
    }
    bgpvpn(&client, "churn", VNI).await?;
    binding(&client, NS, "b", "churn", "churn").await?;
    let node_of = |i: usize| format!("churn-node-{}", i % args.nodes.max(1));
    for i in 0..args.pods {
        running_pod(
            client.clone(),
            NS.into(),
            format!("pod-{i}"),
            "churn".into(),
            node_of(i),
            pod_ip(i),
        )
        .await?;
    }
    let want = args.pods;
    wait_endpoints(&client, "initial pods", |e| e.len() == want).await?;
    let quiet = Duration::from_millis(2 * args.debounce_ms + 1000);
    tokio::time::sleep(quiet).await;
    println!(
        "{} pods on {} nodes bound to VNI {VNI}; each change waits until the operator is idle",
        args.pods, args.nodes
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let churn_start = scrape(&operator).await?;
    let mut results: Vec<(&str, Vec<Sample>)> = Vec::new();
    let mut next = args.pods;
    let kinds = [
        "add a selected pod",
        "delete a selected pod",
        "relabel a pod out of the binding",
        "relabel it back in",
        "annotate a pod (no effect)",
    ];
    for kind in kinds {
        let mut samples = Vec::new();
        for r in 0..args.repeat {
            let before = scrape(&operator).await?;
            let took = match kind {
                "add a selected pod" => {
                    let i = next;
                    next += 1;
                    running_pod(
                        client.clone(),
                        NS.into(),
                        format!("pod-{i}"),
                        "churn".into(),
                        node_of(i),
                        pod_ip(i),
                    )
                    .await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| e.contains(&ip)).await?
                }
                "delete a selected pod" => {
                    let i = r;
                    pods.delete(
                        &format!("pod-{i}"),
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| !e.contains(&ip)).await?
                }
                "relabel a pod out of the binding" | "relabel it back in" => {
                    let i = args.repeat + r;
                    let out = kind.starts_with("relabel a pod out");
                    let app = if out { "other" } else { "churn" };
                    pods.patch(
                        &format!("pod-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"labels": {"app": app}}})),
                    )
                    .await?;
                    let ip = pod_ip(i);
                    wait_endpoints(&client, kind, |e| e.contains(&ip) != out).await?
                }
                _ => {
                    let i = 2 * args.repeat + r;
                    pods.patch(
                        &format!("pod-{i}"),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {"bench/touch": format!("{r}")}}})),
                    )
                    .await?;
                    Duration::ZERO
                }
            };
            tokio::time::sleep(quiet).await;
            samples.push((deltas(&before, &scrape(&operator).await?), took));
        }
        results.push((kind, samples));
    }
    // a burst: `--burst` pods created back to back
    let before = scrape(&operator).await?;
    let t0 = Instant::now();
    let first = next;
    for i in first..first + args.burst {
        running_pod(
            client.clone(),
            NS.into(),
            format!("pod-{i}"),
            "churn".into(),
            node_of(i),
            pod_ip(i),
        )
        .await?;
    }
    let created = t0.elapsed();
    let all: Vec<String> = (first..first + args.burst).map(pod_ip).collect();
    wait_endpoints(&client, "burst", |e| all.iter().all(|ip| e.contains(ip))).await?;
    let reflected = t0.elapsed();
    tokio::time::sleep(quiet).await;
    let burst = deltas(&before, &scrape(&operator).await?);

    println!(
        "\n| pod change | EVPNNodeState writes | BGPVPN status writes | VNIBinding status writes | plan passes | reflected in EVPNNodeState after |"
    );
    println!("|---|---|---|---|---|---|");
    for (kind, samples) in &results {
        let n = samples.len() as f64;
        let mean = |k: usize| samples.iter().map(|(d, _)| d[k]).sum::<f64>() / n;
        let range = |k: usize| {
            let (lo, hi) = samples.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (d, _)| {
                (lo.min(d[k]), hi.max(d[k]))
            });
            if lo == hi {
                format!("{lo}")
            } else {
                format!("{:.1} ({lo}-{hi})", mean(k))
            }
        };
        let lat: Vec<u128> = samples.iter().map(|(_, t)| t.as_millis()).collect();
        let lat = if lat.iter().all(|&x| x == 0) {
            "-".to_string()
        } else {
            format!("{:?} ms", lat)
        };
        println!(
            "| {kind} (x{}) | {} | {} | {} | {} | {lat} |",
            samples.len(),
            range(0),
            range(1),
            range(2),
            range(3)
        );
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
    let end = scrape(&operator).await?;
    println!(
        "({} pods on {} nodes; a write = one API request counted by the operator's own metrics; mean cluster pass {} over this run)",
        args.pods,
        args.nodes,
        mean_pass_ms(&churn_start, &end)
            .map(|ms| format!("{ms:.1} ms"))
            .unwrap_or_else(|| "-".into())
    );
    if args.operator_log == "warn" {
        let _ = std::fs::remove_dir_all(&operator.dir);
    } else {
        println!("operator log: {}", operator.dir.join("operator.log").display());
    }
    Ok(())
}
