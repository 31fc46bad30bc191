//! `bgpvpn-operator run --config <file>`: see `bgpvpn_operator::config` for the file and
//! `operator/README.md` for deployment.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bgpvpn_operator::config::Config;
use bgpvpn_operator::leader::LeaseConfig;
use bgpvpn_operator::run::{Operator, Options};
use bgpvpn_operator::shutdown;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "bgpvpn-operator",
    version,
    about = "Reconciles BGPVPNs and VNIBindings into one EVPNNodeState per node"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "BGPVPN_LOG_FORMAT",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the operator (the cluster is found through KUBECONFIG or the in-cluster service account).
    Run(RunArgs),
    /// Checks a configuration file and exits.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The configuration file (YAML).
    #[arg(long, env = "BGPVPN_OPERATOR_CONFIG")]
    config: PathBuf,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "BGPVPN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "BGPVPN_LEASE_NAME", default_value = "bgpvpn-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in Events (default: POD_NAME, else hostname-pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Lead without a Lease (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Seconds after which a Lease not renewed may be taken over.
    #[arg(long, default_value_t = 15.0)]
    lease_duration_seconds: f64,
    /// Seconds the leader keeps leading without a successful renewal.
    #[arg(long, default_value_t = 10.0)]
    renew_deadline_seconds: f64,
    /// Seconds between acquire/renew attempts.
    #[arg(long, default_value_t = 2.0)]
    retry_period_seconds: f64,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn,tower=warn,hyper=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "bgpvpn-operator".into());
    format!("{host}-{}", std::process::id())
}

fn seconds(s: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("--{flag}: {s} is not a duration in seconds"))
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let identity = args.identity.unwrap_or_else(default_identity);
    let leader_election = if args.no_leader_election {
        None
    } else {
        let mut lease = LeaseConfig::new(args.lease_namespace, args.lease_name, identity.clone());
        lease.lease_duration = seconds(args.lease_duration_seconds, "lease-duration-seconds")?;
        lease.renew_deadline = seconds(args.renew_deadline_seconds, "renew-deadline-seconds")?;
        lease.retry_period = seconds(args.retry_period_seconds, "retry-period-seconds")?;
        lease.check().map_err(anyhow::Error::msg)?;
        Some(lease)
    };
    let stop = shutdown::on_signals()?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster: {e}"))?;
    tracing::info!(%identity, version = env!("CARGO_PKG_VERSION"), "starting");
    let options = Options {
        http_addr: Some(args.metrics_addr),
        leader_election,
        instance: identity,
    };
    Ok(Operator::new(client, config, options).run(stop).await?)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::CheckConfig { config } => Config::load(&config)
            .map(|_| println!("{}: ok", config.display()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            eprintln!("bgpvpn-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
