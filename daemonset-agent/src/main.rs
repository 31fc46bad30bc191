//! `bgpvpn-agent`: programs this node's EVPN dataplane (VRF, bridge, VXLAN, routes, rules)
//! and its FRR configuration from the node's desired state.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bgpvpn_agent::agent::{self, LoopTimings};
use bgpvpn_agent::frr::claims::FrrClaims;
use bgpvpn_agent::frr::reload::{FrrReload, FrrSettings};
use bgpvpn_agent::frr::{FrrView, render};
use bgpvpn_agent::k8s;
use bgpvpn_agent::kernel::Dataplane;
use bgpvpn_agent::kernel::plan::resolve;
use bgpvpn_agent::kernel::rtnl::RtNetlink;
use bgpvpn_agent::liveness::Liveness;
use bgpvpn_agent::metrics::Metrics;
use bgpvpn_agent::model::{self, IfName, NodeSettings, format_mac};
use bgpvpn_agent::reconcile::Reconciler;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bgpvpn-agent",
    version,
    about = "Per-node EVPN agent of bgpvpn-operator"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        env = "BGPVPN_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile continuously.
    Run(RunArgs),
    /// Print the kernel and FRR changes the agent would make on this node, without making them.
    Plan(PlanArgs),
    /// Print the frr.conf the agent renders for a desired state (no kernel or FRR access).
    Render {
        /// EVPNNodeState object or spec (YAML or JSON).
        #[arg(long)]
        state_file: PathBuf,
    },
}

#[derive(Args, Clone)]
struct FrrArgs {
    /// FRR pathspace (`-N`), when several FRR instances share the host.
    #[arg(long, env = "BGPVPN_FRR_PATHSPACE")]
    frr_pathspace: Option<String>,
    /// FRR configuration directory.
    #[arg(long, default_value = "/etc/frr")]
    frr_confdir: PathBuf,
    /// Where the rendered configuration is written before each apply [default: <confdir>/frr.conf].
    #[arg(long)]
    frr_config_file: Option<PathBuf>,
    /// frr-reload.py.
    #[arg(long, default_value = "/usr/lib/frr/frr-reload.py")]
    frr_reload: PathBuf,
    /// Directory of vtysh.
    #[arg(long, default_value = "/usr/bin")]
    frr_bindir: PathBuf,
    /// Directory of the daemons' vty sockets [default: vtysh's].
    #[arg(long)]
    frr_vty_socket: Option<PathBuf>,
    /// FRR's state directory, where its daemons' vty sockets tell whether they run
    /// [default: /var/run/frr[/<pathspace>]]. FRR may run in another pod: a shared directory is
    /// enough, no shared process namespace.
    #[arg(long, alias = "frr-piddir")]
    frr_statedir: Option<PathBuf>,
    /// Scratch directory for frr-reload [default: $TMPDIR].
    #[arg(long)]
    frr_rundir: Option<PathBuf>,
    /// Static FRR lines (logging, hostname, ...) put before the rendered configuration.
    #[arg(long)]
    frr_preamble: Option<PathBuf>,
    /// Deadline of one vtysh or frr-reload.py run, in seconds (a full reload of a thousand VRFs
    /// takes minutes on a slow node; a run cut short leaves FRR half-configured until the next).
    #[arg(long, default_value_t = 300)]
    frr_timeout_secs: u64,
    /// MTU of the VXLAN devices (underlay MTU minus 50).
    #[arg(long, default_value_t = model::DEFAULT_VXLAN_MTU)]
    vxlan_mtu: u32,
    /// Where the sysctls are (`net/ipv4/...` below it); in a container, a mount of the host's
    /// /proc/sys/net, since the container's own /proc/sys is read-only.
    #[arg(long, default_value = "/proc/sys")]
    proc_sys_dir: PathBuf,
}

impl FrrArgs {
    fn settings(&self) -> anyhow::Result<FrrSettings> {
        let mut s = FrrSettings::debian(self.frr_pathspace.clone());
        if let Some(p) = &self.frr_preamble {
            s.preamble = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            if !s.preamble.is_empty() && !s.preamble.ends_with('\n') {
                s.preamble.push('\n');
            }
        }
        s.confdir = self.frr_confdir.clone();
        s.config_file = self
            .frr_config_file
            .clone()
            .unwrap_or_else(|| self.frr_confdir.join("frr.conf"));
        s.reload_script = self.frr_reload.clone();
        s.timeout = std::time::Duration::from_secs(self.frr_timeout_secs);
        s.bindir = self.frr_bindir.clone();
        s.vty_socket = self.frr_vty_socket.clone();
        s.proc_sys = self.proc_sys_dir.clone();
        if let Some(p) = &self.frr_statedir {
            s.statedir = p.clone();
        }
        if let Some(r) = &self.frr_rundir {
            s.rundir = r.clone();
        }
        Ok(s)
    }
}

/// `<namespace>/<name>`, both DNS labels.
fn namespaced_name(s: &str) -> Result<(String, String), String> {
    let label = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-')
    };
    match s.split_once('/') {
        Some((ns, name)) if label(ns) && label(name) => Ok((ns.to_string(), name.to_string())),
        _ => Err(format!("{s:?}: want <namespace>/<name>")),
    }
}

#[derive(Args)]
struct RunArgs {
    /// Read the desired state from this file (YAML or JSON, an EVPNNodeState or its spec);
    /// it is re-read whenever its content changes. Without it, the agent watches the
    /// EVPNNodeState named after this node in Kubernetes and writes its status there.
    #[arg(long, conflicts_with = "node_name")]
    state_file: Option<PathBuf>,
    /// This node's name (Kubernetes mode; from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// The agent's own DaemonSet, `<namespace>/<name>` (Kubernetes mode): once it is deleted
    /// (`helm uninstall`), the agent removes every device, route and rule it owns when it is
    /// stopped. Without it, or for any other stop (upgrade, pod deleted, node drained), the
    /// dataplane stays for the next agent to adopt.
    #[arg(long, requires = "node_name", value_parser = namespaced_name)]
    own_daemonset: Option<(String, String)>,
    /// Write the status (EvpnNodeStateStatus, JSON) here after each pass.
    #[arg(long)]
    status_file: Option<PathBuf>,
    /// Directory for the agent's memory of the last FRR apply (survives agent restarts).
    #[arg(long, default_value = "/var/lib/bgpvpn-agent")]
    state_dir: PathBuf,
    /// `/healthz` fails once the loop has made no progress for this long beyond what its
    /// current step may take (a long FRR reload is progress, a hung one is not).
    #[arg(long, default_value_t = 120)]
    liveness_grace_secs: u64,
    /// Serve /metrics and /healthz on this address.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Poll period of the state file, in milliseconds.
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Debounce of netlink events, in milliseconds.
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
    /// Kernel resync period, in seconds.
    #[arg(long, default_value_t = 30)]
    resync_secs: u64,
    /// FRR resync period (a full `frr-reload.py --test`), in seconds.
    #[arg(long, default_value_t = 300)]
    frr_resync_secs: u64,
    /// BGP session poll period (`show bgp neighbors json`), in seconds: a session that goes
    /// down shows in the status within this.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    bgp_poll_secs: u64,
    #[command(flatten)]
    frr: FrrArgs,
}

#[derive(Args)]
struct PlanArgs {
    #[arg(long)]
    state_file: PathBuf,
    /// Do not ask FRR for the difference (prints the full configuration instead).
    #[arg(long)]
    no_frr: bool,
    #[command(flatten)]
    frr: FrrArgs,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Plan(args) => plan(args).await,
        Command::Render { state_file } => {
            let d = model::load_state_file(&state_file)?;
            print!("{}", render(&FrrView::from_desired(&d, &[])));
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let dp = RtNetlink::connect()
        .context("opening rtnetlink")?
        .with_proc_sys(args.frr.proc_sys_dir.clone());
    let frr = FrrReload::new(args.frr.settings()?);
    let settings = NodeSettings {
        vxlan_mtu: args.frr.vxlan_mtu,
        frr_claims: FrrClaims::from_config(&frr.settings.preamble),
    };
    let mut rec = Reconciler::new(dp, frr, settings).with_state_file(args.state_dir.join("frr-applied.json"));
    rec.frr_deadline = Duration::from_secs(args.frr.frr_timeout_secs);
    let metrics = Metrics::new();
    let liveness = Liveness::new(Duration::from_secs(args.liveness_grace_secs));
    if let Some(addr) = args.metrics_addr {
        let (m, live) = (metrics.clone(), liveness.clone());
        tokio::spawn(async move {
            if let Err(e) = agent::serve_http(addr, m, live).await {
                tracing::error!(error = %e, %addr, "metrics endpoint failed");
            }
        });
    }
    let mut uninstalled = None;
    let (source, status): (_, agent::StatusWriter) = match (&args.state_file, &args.node_name) {
        (Some(file), _) => {
            let status: agent::StatusWriter = match args.status_file.clone() {
                Some(p) => agent::file_status_writer(p),
                None => Box::new(|_| Box::pin(async { true })),
            };
            (
                agent::file_source(file.clone(), Duration::from_millis(args.poll_ms)),
                status,
            )
        }
        (None, Some(node)) => {
            let client = kube::Client::try_default()
                .await
                .context("Kubernetes client (in-cluster or KUBECONFIG)")?;
            tracing::info!(node, "watching this node's EVPNNodeState");
            if let Some((namespace, name)) = &args.own_daemonset {
                uninstalled = Some(k8s::OwnDaemonSet::watch(
                    client.clone(),
                    namespace.clone(),
                    name.clone(),
                ));
            }
            (
                k8s::kube_source(client.clone(), node.clone()),
                k8s::kube_status_writer(client, node.clone()),
            )
        }
        (None, None) => anyhow::bail!("either --state-file or --node-name (NODE_NAME) is required"),
    };
    let timings = LoopTimings {
        debounce: Duration::from_millis(args.debounce_ms),
        resync: Duration::from_secs(args.resync_secs),
        frr_resync: Duration::from_secs(args.frr_resync_secs),
        bgp_poll: Duration::from_secs(args.bgp_poll_secs),
        ..LoopTimings::default()
    };
    let stop = agent::Stop {
        signal: shutdown_signal(),
        uninstalled,
    };
    agent::run(rec, source, status, timings, metrics, liveness, stop).await;
    Ok(())
}

async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let desired = model::load_state_file(&args.state_file)?;
    let mut dp = RtNetlink::connect()
        .context("opening rtnetlink")?
        .with_proc_sys(args.frr.proc_sys_dir.clone());
    let observed = dp.dump().await?;
    let settings = NodeSettings {
        vxlan_mtu: args.frr.vxlan_mtu,
        frr_claims: FrrClaims::from_config(&args.frr.settings()?.preamble),
    };
    // a plan of the state on its own: no endpoint bound yet
    let resolved = resolve(&desired, &observed, &settings, &Default::default());
    let sysctls = dp.read_sysctls(&resolved.sysctl_keys());
    let ops = resolved.ops(&observed, &sysctls);
    println!(
        "# kernel: {} change(s) (devices created here get their sysctls in a second round)",
        ops.len()
    );
    for op in &ops {
        println!("{op}");
    }
    println!("\n# L3 VNIs");
    for v in &resolved.vrfs {
        print!(
            "{} VNI {}: table {} bridge {} (router MAC {}) vxlan {}; endpoints {}/{} ready",
            v.name,
            v.vni,
            v.table,
            v.bridge,
            format_mac(&v.bridge_mac),
            v.vxlan,
            v.ready_endpoints(),
            v.endpoints.len()
        );
        if !v.remap_from.is_empty() {
            print!(
                "; moves from VNI {:?} (safe order: unmap, wait for withdrawal, new RTs, swap VXLAN, map)",
                v.remap_from
            );
        }
        if let Some(c) = &v.conflict {
            print!("; NOT PROGRAMMABLE: {c}");
        }
        println!();
        for e in &v.endpoints {
            if let Err(why) = &e.interface {
                println!("  pending endpoint {}: {why}", e.ip);
            }
        }
    }
    let skip: Vec<IfName> = resolved
        .vrfs
        .iter()
        .filter(|v| v.conflict.is_some())
        .map(|v| v.name.clone())
        .collect();
    let config = render(&FrrView::from_desired(&desired, &skip));
    if args.no_frr {
        println!("\n# FRR: complete configuration\n{config}");
        return Ok(());
    }
    let frr = FrrReload::new(args.frr.settings()?);
    match frr.diff(&config).await {
        Ok(d) if d.trim().is_empty() => println!("\n# FRR: no change"),
        Ok(d) => println!("\n# FRR: difference to the running configuration (frr-reload.py --test)\n{d}"),
        Err(e) => {
            println!("\n# FRR: cannot ask FRR for the difference ({e}); complete configuration:\n{config}");
        }
    }
    Ok(())
}
