//! The operator process: startup checks, the HTTP endpoints, leader election, and — while
//! leading — the cluster pass, the two status controllers and the optional OpenStack sync.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use tokio::sync::watch;

use crate::build::Plan;
use crate::config::Config;
use crate::events::Events;
use crate::http::Health;
use crate::leader::{self, LeaderError, LeaseConfig};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::startup::StartupError;
use crate::status::StatusContext;
use crate::{cluster, http, openstack, startup, status};

/// Name of the controller in Events.
pub const CONTROLLER_NAME: &str = "bgpvpn-operator";

/// Why an operator replica stopped with an error. Each variant shows as the error it wraps.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The CRDs are not served, or could not be checked.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The HTTP endpoints (`/metrics`, `/healthz`, `/readyz`) could not be bound.
    #[error(transparent)]
    Http(#[from] std::io::Error),
    /// Leader election cannot run with this configuration.
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// How the process runs (the configuration file says what it does).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Where `/metrics`, `/healthz`, `/readyz` are served; `None`: not served.
    pub http_addr: Option<SocketAddr>,
    /// `None`: lead right away (a single replica, or tests).
    pub leader_election: Option<LeaseConfig>,
    /// This replica's name in Events (the pod name).
    pub instance: String,
}

/// One operator replica.
pub struct Operator {
    client: Client,
    config: Arc<Config>,
    options: Options,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Operator {
    pub fn new(client: Client, config: Config, options: Options) -> Self {
        Operator {
            client,
            config: Arc::new(config),
            options,
            metrics: Arc::new(Metrics::new()),
            health: Arc::new(Health::default()),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Runs until `shutdown`. Fails at once when the CRDs are missing.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), RunError> {
        startup::check_crds(&self.client).await?;
        self.health.started.store(true, Ordering::Relaxed);
        let serving = match self.options.http_addr {
            Some(addr) => {
                let (local, serving) =
                    http::serve(addr, self.metrics.clone(), self.health.clone(), shutdown.clone()).await?;
                tracing::info!(addr = %local, "serving /metrics, /healthz, /readyz");
                Some(tokio::spawn(serving))
            }
            None => None,
        };
        let result = match self.options.leader_election.clone() {
            Some(lease) => {
                leader::run(
                    self.client.clone(),
                    lease,
                    &self.metrics,
                    shutdown.clone(),
                    |term| self.lead(term),
                )
                .await
            }
            None => self.lead(shutdown.clone()).await,
        };
        if let Some(serving) = serving {
            serving.abort();
        }
        result
    }

    /// The leader's work, until `term` fires.
    async fn lead(&self, term: Shutdown) -> Result<(), RunError> {
        self.health.leading.store(true, Ordering::Relaxed);
        let (plan_tx, plan_rx) = watch::channel(Arc::new(Plan::default()));
        let reporter = Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(self.options.instance.clone()),
        };
        let events = Events::new(self.client.clone(), reporter);
        let pass = cluster::PassContext {
            client: self.client.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            events: events.clone(),
            plan: plan_tx,
            synced: self.health.synced.clone(),
        };
        let status_ctx = Arc::new(StatusContext {
            client: self.client.clone(),
            plan: plan_rx,
            events,
            metrics: self.metrics.clone(),
        });
        let (shared, bgpvpn_changes, binding_changes) = cluster::SharedInputs::new(&self.client);
        let (bgpvpns, bindings) = (shared.bgpvpns.clone(), shared.bindings.clone());
        tokio::join!(
            cluster::run(pass, shared, term.clone()),
            status::run_bgpvpn_controller(status_ctx.clone(), bgpvpns, bgpvpn_changes, term.clone()),
            status::run_binding_controller(status_ctx, bindings, binding_changes, term.clone()),
            self.openstack_sync(term.clone()),
        );
        self.health.leading.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The OpenStack sync, when configured; restarted after a failure until `term`.
    async fn openstack_sync(&self, term: Shutdown) {
        let Some(sync) = self.config.openstack.clone() else {
            return;
        };
        loop {
            match openstack::run(self.client.clone(), sync.clone(), term.wait()).await {
                Ok(()) => return,
                Err(e) => tracing::error!(error = %e, "OpenStack sync failed; restarting in 30s"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                _ = term.wait() => return,
            }
        }
    }
}
