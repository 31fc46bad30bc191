//! Leader election on a `coordination.k8s.io/v1` Lease, in the manner of client-go's
//! leaderelection: every replica tries to acquire the Lease every `retry_period`; the holder
//! renews it as often; a Lease counts as expired when its record has not changed for
//! `lease_duration`, as observed *locally* (no clock comparison between machines). Every
//! update carries the resourceVersion it read, so two candidates cannot both win.
//!
//! The leader stops leading (its controllers are stopped, and it becomes a candidate again) when
//! another identity holds the Lease or when it could not renew for `renew_deadline`, which is
//! shorter than `lease_duration`: it has stopped before anyone else may take over. On graceful
//! shutdown the leader releases the Lease (empty holder), so a standby takes over within one
//! `retry_period` instead of waiting for expiry.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::metrics::Metrics;
use crate::shutdown::{self, Shutdown};

/// Where and how to elect.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.retry_period < self.renew_deadline && self.renew_deadline < self.lease_duration) {
            return Err(format!(
                "leader election needs retry period ({:?}) < renew deadline ({:?}) < lease duration ({:?})",
                self.retry_period, self.renew_deadline, self.lease_duration
            ));
        }
        if self.identity.is_empty() {
            return Err("leader election needs an identity (POD_NAME)".into());
        }
        Ok(())
    }
}

/// Why leader election cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings or the identity cannot work (the message of [`LeaseConfig::check`]).
    #[error("{0}")]
    Config(String),
}

/// The outcome of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Someone else holds it and it has not expired.
    HeldBy(String),
    /// Another writer got there first; try again.
    Lost,
}

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// resourceVersion of the record last seen, and when it was first seen.
    observed: Option<(Option<String>, Instant)>,
}

fn seconds(d: Duration) -> i32 {
    d.as_secs().max(1).try_into().unwrap_or(i32::MAX)
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Acquires or renews the Lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let me = self.config.identity.clone();
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(seconds(self.config.lease_duration)),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Some((created.metadata.resource_version, Instant::now()));
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Lost),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let rv = current.metadata.resource_version.clone();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, Instant::now()));
        }
        let ours = holder.as_deref() == Some(me.as_str());
        if let Some(other) = holder.as_ref().filter(|_| !ours) {
            let duration = spec
                .lease_duration_seconds
                .map(|s| Duration::from_secs(s.max(1) as u64))
                .unwrap_or(self.config.lease_duration);
            let unchanged_for = self
                .observed
                .as_ref()
                .map(|(_, at)| at.elapsed())
                .unwrap_or_default();
            if unchanged_for < duration {
                return Ok(Attempt::HeldBy(other.clone()));
            }
            tracing::info!(previous = %other, "lease expired; taking over");
        }
        let mut next = current;
        let s = next.spec.get_or_insert_with(Default::default);
        if !ours {
            s.acquire_time = Some(now.clone());
            s.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        s.holder_identity = Some(me);
        s.renew_time = Some(now);
        s.lease_duration_seconds = Some(seconds(self.config.lease_duration));
        // `next` carries the resourceVersion read above: a concurrent writer makes this a 409
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(updated) => {
                self.observed = Some((updated.metadata.resource_version, Instant::now()));
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Lost),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (if still ours), so a standby need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// One attempt, bounded in time (a hung request must not outlive the renew deadline).
    async fn attempt(&mut self, limit: Duration) -> Result<Attempt, String> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }
}

enum TermEnd<E> {
    Shutdown,
    Lost(String),
    Finished(Result<(), E>),
}

/// Runs `lead` whenever this replica holds the Lease, until `shutdown`. `lead` gets a signal
/// that fires when the term ends; it must return soon after. A term that ends with an error of
/// `lead` ends the election with that error (after releasing the Lease).
pub async fn run<F, Fut, E>(
    client: Client,
    config: LeaseConfig,
    metrics: &Metrics,
    shutdown: Shutdown,
    mut lead: F,
) -> Result<(), E>
where
    F: FnMut(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<LeaderError>,
{
    config.check().map_err(LeaderError::Config)?;
    let mut elector = Elector::new(client, config.clone());
    let request_limit = config.retry_period.max(Duration::from_secs(1));
    loop {
        tracing::info!(identity = %config.identity, lease = %format!("{}/{}", config.namespace, config.name), "candidate: waiting for the lease");
        let mut last_holder = None;
        loop {
            if shutdown.is_fired() {
                return Ok(());
            }
            match elector.attempt(request_limit).await {
                Ok(Attempt::Held) => break,
                Ok(Attempt::HeldBy(holder)) if last_holder.as_ref() != Some(&holder) => {
                    tracing::info!(%holder, "lease held by another replica; standing by");
                    last_holder = Some(holder);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read or take the lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(config.retry_period) => {}
                _ = shutdown.wait() => return Ok(()),
            }
        }

        tracing::info!(identity = %config.identity, "acquired the lease: leading");
        metrics.leader.set(1);
        let (end_term, term) = shutdown::channel();
        let mut leading = std::pin::pin!(lead(term));
        let mut renewed = Instant::now();
        let end = loop {
            tokio::select! {
                result = &mut leading => break TermEnd::Finished(result),
                _ = shutdown.wait() => break TermEnd::Shutdown,
                _ = tokio::time::sleep(config.retry_period) => {
                    let left = config.renew_deadline.saturating_sub(renewed.elapsed()).max(Duration::from_millis(100));
                    match elector.attempt(left.min(request_limit)).await {
                        Ok(Attempt::Held) => renewed = Instant::now(),
                        Ok(Attempt::HeldBy(holder)) => break TermEnd::Lost(format!("the lease is held by {holder}")),
                        Ok(Attempt::Lost) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
                    }
                    if renewed.elapsed() >= config.renew_deadline {
                        break TermEnd::Lost(format!("not renewed within {:?}", config.renew_deadline));
                    }
                }
            }
        };
        end_term.fire();
        if !matches!(end, TermEnd::Finished(_))
            && tokio::time::timeout(Duration::from_secs(10), &mut leading)
                .await
                .is_err()
        {
            tracing::warn!("controllers did not stop within 10s");
        }
        metrics.leader.set(0);
        let result = match end {
            TermEnd::Lost(why) => {
                tracing::warn!(%why, "lost the lease: stopped leading");
                continue;
            }
            TermEnd::Shutdown => Ok(()),
            TermEnd::Finished(result) => result,
        };
        match elector.release().await {
            Ok(()) => tracing::info!("lease released"),
            Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
        }
        return result;
    }
}
