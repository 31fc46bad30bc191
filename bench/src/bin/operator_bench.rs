//! Operator figures (a benchmark command, not a test): against a real kube-apiserver
//! (started by the testkit) and the real operator binary, measures
//!
//! 1. the time from a VNIBinding create to its EVPNNodeState being written (median and p99 of
//!    `--samples`, 20 by default): each sample binds one more Running pod to its own BGPVPN and
//!    waits, through a watch, until the node's object carries the pod's address in that VNI.
//!    Each sample starts from an idle operator, so it includes the whole debounce window;
//! 2. the operator's resident memory (`VmRSS` and peak `VmHWM` from `/proc/<pid>/status`) once
//!    it has converged on `--pods` pods (1,000) selected by `--bindings` bindings (100), spread
//!    over `--nodes` nodes (10).
//!
//! ```sh
//! cargo build --release -p bgpvpn-operator -p bgpvpn-bench
//! target/release/operator_bench            # as root (the apiserver tier)
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bgpvpn_bench::{Operator, bgpvpn, binding, namespace, node, running_pod};
use bgpvpn_crds::{Bgpvpn, EvpnNodeState};
use clap::Parser;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "Operator latency and memory figures on a real kube-apiserver")]
struct Args {
    /// The operator binary (default: `bgpvpn-operator` next to this program).
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Latency samples (binding create -> EVPNNodeState written).
    #[arg(long, default_value_t = 20)]
    samples: usize,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    #[arg(long, default_value_t = 100)]
    bindings: usize,
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// The operator's debounce window (its default is 200 ms).
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
    /// API writes in flight while creating the scale objects.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} not in /proc/{pid}/status"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // nearest rank
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Runs `jobs` with at most `parallel` in flight.
async fn in_parallel<F>(parallel: usize, jobs: Vec<F>) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for job in jobs {
        if set.len() >= parallel {
            set.join_next().await.expect("non-empty")??;
        }
        set.spawn(job);
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

fn ip(block: usize, i: usize) -> String {
    format!("10.{}.{}.{}", 100 + block, i / 250, i % 250 + 1)
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
        "operator-bench",
        args.debounce_ms,
        "warn",
    )?;
    let (pid, dir) = (operator.pid(), operator.dir.clone());
    println!(
        "operator: {} (pid {pid}), debounce {} ms, log {}",
        operator.binary.display(),
        args.debounce_ms,
        dir.join("operator.log").display()
    );

    // 1. latency: binding create -> EVPNNodeState written
    namespace(&client, "lat").await?;
    node(&client, "lat-node", "172.29.0.1").await?;
    let states: Api<EvpnNodeState> = Api::all(client.clone());
    let mut samples = Vec::with_capacity(args.samples);
    for i in 0..args.samples {
        let vni = 100_000 + i as u32;
        let (vpn, app, pod_ip) = (format!("lat-{i}"), format!("lat-{i}"), ip(0, i));
        bgpvpn(&client, &vpn, vni).await?;
        running_pod(
            client.clone(),
            "lat".into(),
            format!("pod-{i}"),
            app.clone(),
            "lat-node".into(),
            pod_ip.clone(),
        )
        .await?;
        // start each sample from an idle operator: its status write for the new BGPVPN shows the
        // pass that saw it is done; then let that write's own (empty) pass go by
        let vpns: Api<Bgpvpn> = Api::all(client.clone());
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(vpns, &vpn, |v: Option<&Bgpvpn>| {
                v.and_then(|v| v.status.as_ref())
                    .is_some_and(|s| s.observed_generation == Some(1))
            }),
        )
        .await
        .context("BGPVPN status not written within 60 s")??;
        tokio::time::sleep(Duration::from_millis(2 * args.debounce_ms + 300)).await;
        let written = await_condition(states.clone(), "lat-node", move |s: Option<&EvpnNodeState>| {
            s.is_some_and(|s| {
                s.spec
                    .l3vnis
                    .iter()
                    .any(|v| v.vni == vni && v.endpoints.iter().any(|e| e.ip == pod_ip))
            })
        });
        let t0 = Instant::now();
        binding(&client, "lat", &format!("b-{i}"), &vpn, &app).await?;
        // the watch starts with a list, so a write that came first is seen too
        tokio::time::timeout(Duration::from_secs(60), written)
            .await
            .context("EVPNNodeState not written within 60 s")??;
        samples.push(t0.elapsed());
    }
    let mut sorted = samples.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "binding create -> EVPNNodeState written ({} samples): median {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        sorted.len(),
        ms(percentile(&sorted, 50.0)),
        ms(percentile(&sorted, 99.0)),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1])
    );

    // 2. memory at scale
    let daemons = server_pids(&server.kubeconfig);
    let daemon_cpu = |daemons: &[(String, u32)]| -> Vec<f64> {
        daemons
            .iter()
            .map(|(_, p)| cpu_seconds(*p).unwrap_or_default())
            .collect()
    };
    let daemons_before = daemon_cpu(&daemons);
    let rss_idle = proc_status_kib(pid, "VmRSS:")?;
    let t_scale = Instant::now();
    let cpu_before = cpu_seconds(pid).unwrap_or_default();
    for n in 0..args.nodes {
        node(
            &client,
            &format!("scale-node-{n}"),
            &format!("172.29.1.{}", n + 1),
        )
        .await?;
    }
    let per_binding = args.pods.div_ceil(args.bindings.max(1));
    let mut jobs = Vec::new();
    for b in 0..args.bindings {
        let ns = format!("scale-{b}");
        namespace(&client, &ns).await?;
        bgpvpn(&client, &format!("scale-{b}"), 200_000 + b as u32).await?;
        binding(&client, &ns, "b", &format!("scale-{b}"), "app").await?;
    }
    for p in 0..args.pods {
        let b = p / per_binding;
        let node = format!("scale-node-{}", p % args.nodes.max(1));
        jobs.push(running_pod(
            client.clone(),
            format!("scale-{b}"),
            format!("pod-{p}"),
            "app".into(),
            node,
            ip(1 + b / 100, p),
        ));
    }
    in_parallel(args.parallel, jobs).await?;
    let created = t_scale.elapsed();
    let cpu_created = cpu_seconds(pid).unwrap_or_default();
    let want = args.pods;
    let count = |list: &[EvpnNodeState]| -> usize {
        list.iter()
            .flat_map(|s| &s.spec.l3vnis)
            .filter(|v| v.vni >= 200_000)
            .map(|v| v.endpoints.len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = states.list(&Default::default()).await?.items;
        let got = count(&list);
        if got >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {got}/{want} endpoints written after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged = t_scale.elapsed();
    let rss = proc_status_kib(pid, "VmRSS:")?;
    let hwm = proc_status_kib(pid, "VmHWM:")?;
    let metrics = operator.metrics().await.unwrap_or_default();
    let writes = metric_line(&metrics, "bgpvpn_operator_node_state_writes_total{op=\"apply\"}");
    println!(
        "{} pods, {} bindings, {} nodes: converged in {:.1} s (objects created and all endpoints written); operator VmRSS {:.1} MiB (peak VmHWM {:.1} MiB; {:.1} MiB before the scale objects); {writes}",
        args.pods,
        args.bindings,
        args.nodes,
        converged.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss_idle as f64 / 1024.0
    );
    // where the memory and the time went
    let cpu = cpu_seconds(pid).unwrap_or_default();
    println!(
        "  breakdown: objects created in {:.1} s, then all endpoints written {:.1} s later; operator CPU {:.1} s ({:.1} s while creating); {}",
        created.as_secs_f64(),
        (converged - created).as_secs_f64(),
        cpu,
        cpu_created,
        memory_breakdown(pid).unwrap_or_else(|e| format!("no memory breakdown: {e}"))
    );
    let passes = metric_line(&metrics, "bgpvpn_operator_plan_passes_total");
    let bgpvpn_status = metric_line(&metrics, "bgpvpn_operator_status_writes_total{kind=\"BGPVPN\"}");
    let binding_status = metric_line(
        &metrics,
        "bgpvpn_operator_status_writes_total{kind=\"VNIBinding\"}",
    );
    let pass_sum = metric_line(
        &metrics,
        "bgpvpn_operator_reconcile_duration_seconds_sum{controller=\"cluster\"}",
    );
    println!("  {passes}; {pass_sum}; {bgpvpn_status}; {binding_status}");
    let daemons_cpu: Vec<String> = daemons
        .iter()
        .zip(daemon_cpu(&daemons).iter().zip(&daemons_before))
        .map(|((name, _), (after, before))| format!("{name} {:.1} s", after - before))
        .collect();
    println!(
        "  CPU while scaling: operator {:.1} s, {}",
        cpu - cpu_before,
        daemons_cpu.join(", ")
    );
    drop(operator);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn metric_line(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or("")
        .to_string()
}

/// The apiserver's and etcd's PIDs, from the `env` file next to the testkit's kubeconfig.
fn server_pids(kubeconfig: &std::path::Path) -> Vec<(String, u32)> {
    let env = kubeconfig
        .parent()
        .map(|d| d.join("env"))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .unwrap_or_default();
    [("kube-apiserver", "KUBE_APISERVER_PID="), ("etcd", "ETCD_PID=")]
        .iter()
        .filter_map(|(name, key)| {
            env.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|p| p.trim().parse().ok())
                .map(|p| (name.to_string(), p))
        })
        .collect()
}

/// utime + stime of a process, in seconds (`/proc/<pid>/stat`, clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields.get(11).context("utime")?.parse::<u64>()? + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// Resident memory by kind of mapping (`/proc/<pid>/smaps`): the main malloc heap (`[heap]`),
/// other anonymous mappings (thread malloc arenas, large allocations, stacks), files; plus the
/// open descriptors and the sockets among them.
fn memory_breakdown(pid: u32) -> anyhow::Result<String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let (mut heap, mut anon, mut file, mut anon_maps) = (0u64, 0u64, 0u64, 0usize);
    let mut kind = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let path = line.split_whitespace().nth(5);
            kind = match path {
                Some("[heap]") => 0,
                None => 1,
                Some(p) if p.starts_with('[') => 1,
                Some(_) => 2,
            };
        } else if first == "Rss:" {
            let kib: u64 = words.next().unwrap_or("0").parse().unwrap_or(0);
            match kind {
                0 => heap += kib,
                1 => {
                    anon += kib;
                    if kib > 0 {
                        anon_maps += 1;
                    }
                }
                _ => file += kib,
            }
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(Result::ok)
        .collect::<Vec<_>>();
    let sockets = fds
        .iter()
        .filter(|f| std::fs::read_link(f.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count();
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(format!(
        "RSS [heap] {:.1} MiB, other anonymous {:.1} MiB in {anon_maps} mappings, files {:.1} MiB; {} fds ({sockets} sockets)",
        mib(heap),
        mib(anon),
        mib(file),
        fds.len()
    ))
}
