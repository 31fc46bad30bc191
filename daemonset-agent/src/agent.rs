//! The long-running agent: one loop that owns the [`Reconciler`] and starts a pass when the
//! desired state changes, when an owned kernel object changes or vanishes (netlink monitor,
//! debounced), when FRR restarts (zebra/bgpd pids change), periodically (resync), and after a
//! failed pass (backoff). Nothing is torn down on exit: a restarted agent adopts what is there.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bgpvpn_crds::EvpnNodeStateStatus;
use bgpvpn_crds::conditions::{self, types};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::frr::reload::FrrControl;
use crate::frr::sessions::BgpSession;
use crate::k8s::OwnDaemonSet;
use crate::kernel::Dataplane;
use crate::liveness::Liveness;
use crate::metrics::{Metrics, StateLabels};
use crate::model::{NodeModel, load_state_file};
use crate::monitor;
use crate::reconcile::{FrrApply, FrrResult, PassReport, Reconciler};
use crate::status::{FrrObserved, build_status, with_sessions};

/// What the source of the desired state reports.
#[derive(Debug)]
pub enum SourceEvent {
    /// A new desired state, or why the new input was refused (the dataplane is then kept).
    Desired(Result<NodeModel, String>),
    /// The source has nothing any more (file or object deleted): the dataplane is kept as is.
    Gone,
}

/// Receives each new status; resolves to whether it was stored (a failed write is retried with
/// the next pass).
pub type StatusWriter = Box<dyn FnMut(EvpnNodeStateStatus) -> BoxFuture<'static, bool> + Send>;

/// Timings of the loop.
#[derive(Clone, Debug)]
pub struct LoopTimings {
    /// Delay between a netlink event and the pass it starts (events in between are merged).
    pub debounce: Duration,
    /// Period of the kernel resync (dump and diff; kernel changes also arrive as netlink events).
    pub resync: Duration,
    /// Period of the FRR resync: one `frr-reload.py --test` against the running configuration,
    /// which also catches hand edits. Slower than a kernel resync (seconds at a thousand VNIs),
    /// and FRR changes have no event, so it has its own, longer period.
    pub frr_resync: Duration,
    /// Period of the FRR restart check (the daemons' vty sockets).
    pub frr_check: Duration,
    /// Period of the BGP session poll (`show bgp neighbors json`, one vtysh run).
    pub bgp_poll: Duration,
    /// Longest delay between retries of a failed pass.
    pub max_backoff: Duration,
}

impl Default for LoopTimings {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            resync: Duration::from_secs(30),
            frr_resync: Duration::from_secs(300),
            frr_check: Duration::from_secs(1),
            bgp_poll: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
        }
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Polls a state file (YAML or JSON; re-read whenever its content changes).
pub fn file_source(path: PathBuf, every: Duration) -> mpsc::Receiver<SourceEvent> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut last: Option<Vec<u8>> = None;
        loop {
            match std::fs::read(&path) {
                Ok(bytes) if last.as_ref() != Some(&bytes) => {
                    let ev = SourceEvent::Desired(load_state_file(&path).map_err(|e| e.to_string()));
                    last = Some(bytes);
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if last.take().is_some() && tx.send(SourceEvent::Gone).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot read the state file"),
            }
            tokio::time::sleep(every).await;
        }
    });
    rx
}

fn update_gauges(m: &Metrics, status: &EvpnNodeStateStatus, rep: &PassReport) {
    let ready = status.l3vnis.iter().filter(|v| v.ready).count() as i64;
    m.vnis
        .get_or_create(&StateLabels {
            state: "ready".into(),
        })
        .set(ready);
    m.vnis
        .get_or_create(&StateLabels {
            state: "not_ready".into(),
        })
        .set(status.l3vnis.len() as i64 - ready);
    let (mut ok, mut pending) = (0i64, 0i64);
    for v in rep.resolved.iter().flat_map(|r| r.vrfs.iter()) {
        ok += v.ready_endpoints() as i64;
        pending += (v.endpoints.len() - v.ready_endpoints()) as i64;
    }
    m.endpoints
        .get_or_create(&StateLabels {
            state: "ready".into(),
        })
        .set(ok);
    m.endpoints
        .get_or_create(&StateLabels {
            state: "pending".into(),
        })
        .set(pending);
    m.passes
        .get_or_create(&crate::metrics::ResultLabels {
            result: if rep.ok() { "ok" } else { "error" }.into(),
        })
        .inc();
    m.pass_seconds.observe(rep.duration.as_secs_f64());
}

/// The most a status write may take (the Kubernetes client's own request deadline).
const STATUS_WRITE_DEADLINE: Duration = Duration::from_secs(300);
/// Longest wait for `show bgp neighbors`: a bgpd busy with a large apply must not hold up passes.
const BGP_POLL_DEADLINE: Duration = Duration::from_secs(10);

/// Restarts the netlink monitor whenever it fails, until the receiver is gone.
fn spawn_monitor() -> (
    tokio::task::JoinHandle<()>,
    mpsc::UnboundedReceiver<monitor::Event>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = monitor::run(tx.clone()).await {
                tracing::warn!(error = %e, "netlink monitor failed; restarting it");
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (task, rx)
}

fn ticker(period: Duration, first_now: bool) -> tokio::time::Interval {
    let mut tick = interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if !first_now {
        tick.reset();
    }
    tick
}

/// What the loop carries from one event to the next.
struct AgentLoop<D: Dataplane, F: FrrControl> {
    rec: Reconciler<D, F>,
    write_status: StatusWriter,
    timings: LoopTimings,
    metrics: Metrics,
    liveness: Liveness,
    desired: Option<NodeModel>,
    /// When the next pass starts (`None`: nothing asked for one).
    due: Option<Instant>,
    /// What asked for the next pass (the latest cause), for the log.
    trigger: &'static str,
    last_frr: Option<FrrResult>,
    last_status: Option<EvpnNodeStateStatus>,
    /// The running FRR daemons, as last seen.
    fingerprint: Option<String>,
    /// FRR's version, and the daemons it was read from (read again after a restart).
    frr_version: Option<(Option<String>, String)>,
    /// The underlay BGP sessions as last read (`None`: FRR did not tell).
    sessions: Option<Vec<BgpSession>>,
    backoff: Duration,
}

impl<D: Dataplane, F: FrrControl> AgentLoop<D, F> {
    /// A pass at `at`, or earlier if one is due earlier.
    fn pass_at(&mut self, at: Instant, trigger: &'static str) {
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
        self.trigger = trigger;
    }

    /// Returns false when the source has ended.
    async fn on_source(&mut self, event: Option<SourceEvent>) -> bool {
        match event {
            Some(SourceEvent::Desired(Ok(d))) => {
                let d = self.rec.accept(d);
                for h in &d.held_back {
                    tracing::warn!(vni = h.vni, vrf = %h.vrf, reason = %h.reason, kept_running = h.kept_running, "L3 VNI held back");
                }
                tracing::info!(vnis = d.vrfs.len(), held_back = d.held_back.len(), generation = ?d.generation, "new desired state");
                self.desired = Some(d);
                self.due = Some(Instant::now());
                self.trigger = "new desired state";
                self.backoff = Duration::from_secs(1);
            }
            Some(SourceEvent::Desired(Err(e))) => {
                tracing::error!(error = %e, "desired state refused; keeping the dataplane as it is");
                let mut st = self.last_status.clone().unwrap_or_default();
                let now = Time(k8s_openapi::jiff::Timestamp::now());
                let c = conditions::condition(
                    types::READY,
                    false,
                    "InvalidSpec",
                    e,
                    st.observed_generation,
                    &now,
                );
                st.conditions = conditions::merged(&st.conditions, vec![c]);
                self.write(st).await;
            }
            Some(SourceEvent::Gone) => {
                tracing::warn!("the desired state is gone; keeping the dataplane as it is")
            }
            None => {
                tracing::error!("the desired-state source ended");
                return false;
            }
        }
        true
    }

    fn on_kernel_event(&mut self, event: monitor::Event) {
        if self.desired.is_none() {
            return;
        }
        let trigger = match event {
            monitor::Event::Owned(what) => {
                tracing::debug!(what, "owned kernel object changed");
                self.metrics.repairs.inc();
                what
            }
            monitor::Event::HostRoute => "main-table host route",
        };
        self.pass_at(Instant::now() + self.timings.debounce, trigger);
    }

    async fn on_frr_check(&mut self) {
        let fp = self.rec.frr.fingerprint().await;
        if fp == self.fingerprint {
            return;
        }
        if fp.is_some() {
            tracing::warn!(old = ?self.fingerprint, new = ?fp, "FRR (re)started: re-applying its configuration");
            self.metrics.frr_restarts.inc();
            self.rec.frr_restarted();
            self.due = Some(Instant::now());
            self.trigger = "FRR restart";
        } else {
            // a pass writes the status: nothing is announced while they are gone
            tracing::warn!("FRR daemons are not running");
            self.pass_at(Instant::now(), "FRR stopped");
        }
        self.fingerprint = fp;
    }

    /// On shutdown the dataplane and FRR stay as they are (a restarted agent adopts them), unless
    /// `uninstalled` says the agent's DaemonSet is deleted: then the node is cleaned up.
    async fn shut_down(&mut self, uninstalled: Option<&OwnDaemonSet>) {
        let deleted = match uninstalled {
            Some(own) => own.deleted().await,
            None => false,
        };
        if !deleted {
            tracing::info!("shutting down; the dataplane and FRR stay as they are");
            return;
        }
        let Some(last) = self.desired.clone().or_else(|| self.rec.accepted.clone()) else {
            tracing::info!("shutting down after an uninstall; nothing was programmed");
            return;
        };
        let rep = self.rec.teardown(&last).await;
        tracing::info!(
            kernel_writes = rep.kernel_writes,
            errors = ?rep.kernel_errors,
            warnings = ?rep.warnings,
            millis = rep.duration.as_millis() as u64,
            "shutting down after an uninstall: the node's devices, routes and rules removed"
        );
    }

    /// Reads the BGP sessions; a change goes to the status (and the log) at once.
    async fn on_bgp_poll(&mut self) {
        self.liveness.progress(BGP_POLL_DEADLINE);
        let sessions = match self.fingerprint {
            Some(_) => match tokio::time::timeout(BGP_POLL_DEADLINE, self.rec.frr.bgp_sessions()).await {
                Ok(sessions) => sessions,
                Err(_) => {
                    tracing::warn!(
                        secs = BGP_POLL_DEADLINE.as_secs(),
                        "bgpd did not list its sessions in time; the status keeps the last reading"
                    );
                    return;
                }
            },
            None => None,
        };
        if sessions == self.sessions {
            return;
        }
        for s in sessions.iter().flatten() {
            let before = self.sessions.iter().flatten().find(|b| b.peer == s.peer);
            if before.is_none_or(|b| b.state != s.state) {
                if s.established() {
                    tracing::info!(peer = %s.peer, "BGP session established");
                } else {
                    tracing::warn!(peer = %s.peer, state = %s.state, last_reset = ?s.last_reset, "BGP session not established");
                }
            }
        }
        self.metrics.sessions(sessions.as_deref().unwrap_or_default());
        self.sessions = sessions;
        if let Some(st) = &self.last_status {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let st = with_sessions(st, self.sessions.as_deref(), &now);
            self.write(st).await;
        }
    }

    fn on_frr_resync(&mut self) {
        self.rec.frr_recheck_due();
        self.pass_at(Instant::now(), "FRR resync");
    }

    /// Status, gauges and log of a pass; a failed pass is retried with backoff.
    async fn on_pass_done(&mut self, rep: PassReport) {
        let Some(d) = self.desired.as_ref() else { return };
        if let Some(f) = &rep.frr {
            self.last_frr = Some(f.clone());
            // FRR took this pass's configuration: the daemons running now hold it. Without this,
            // daemons first seen during the pass (FRR starting beside a new agent) read
            // as a restart and got the whole configuration again (25 s in the node guest).
            if f.result != FrrApply::Failed
                && let Some(fp) = self.rec.frr.fingerprint().await
            {
                self.fingerprint = Some(fp);
            }
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        if self
            .frr_version
            .as_ref()
            .is_none_or(|(of, _)| *of != self.fingerprint)
            && self.fingerprint.is_some()
        {
            let version = self.rec.frr.version().await;
            self.frr_version = version.map(|v| (self.fingerprint.clone(), v));
        }
        let frr = FrrObserved {
            applied: self.last_frr.as_ref(),
            version: self.frr_version.as_ref().map(|(_, v)| v.as_str()),
            running: self.fingerprint.is_some(),
            sessions: self.sessions.as_deref(),
        };
        let st = build_status(d, &rep, frr, self.last_status.as_ref(), &now);
        update_gauges(&self.metrics, &st, &rep);
        tracing::info!(
            trigger = self.trigger,
            ok = rep.ok(),
            kernel_writes = rep.kernel_writes,
            frr = rep.frr.as_ref().map(|f| f.result.as_str()).unwrap_or("-"),
            ready_vnis = st.programmed_vnis,
            millis = rep.duration.as_millis() as u64,
            errors = ?rep.kernel_errors,
            warnings = ?rep.warnings,
            "pass done"
        );
        if self.last_status.as_ref() != Some(&st) {
            self.write(st).await;
        }
        if rep.ok() {
            self.backoff = Duration::from_secs(1);
        } else {
            self.due = Some(Instant::now() + self.backoff);
            self.trigger = "retry";
            self.backoff = (self.backoff * 2).min(self.timings.max_backoff);
        }
    }

    /// Writes `st`; remembered only once stored (a failed write is retried with the next pass).
    async fn write(&mut self, st: EvpnNodeStateStatus) {
        self.liveness.progress(STATUS_WRITE_DEADLINE);
        if (self.write_status)(st.clone()).await {
            self.last_status = Some(st);
        }
    }
}

/// How the loop ends: `signal` stops it; `uninstalled`, when it holds by then, makes it clean the
/// node up first (see [`OwnDaemonSet`]).
pub struct Stop<S> {
    pub signal: S,
    pub uninstalled: Option<OwnDaemonSet>,
}

/// Runs until `stop.signal` resolves.
pub async fn run<D: Dataplane, F: FrrControl>(
    mut rec: Reconciler<D, F>,
    mut source: mpsc::Receiver<SourceEvent>,
    write_status: StatusWriter,
    timings: LoopTimings,
    metrics: Metrics,
    liveness: Liveness,
    stop: Stop<impl Future<Output = ()>>,
) {
    let Stop {
        signal: shutdown,
        uninstalled,
    } = stop;
    rec.metrics = Some(metrics.clone());
    rec.liveness = Some(liveness.clone());
    let (monitor_task, mut kernel_events) = spawn_monitor();
    let mut frr_check = ticker(timings.frr_check, true);
    let mut resync = ticker(timings.resync, false);
    let mut frr_resync = ticker(timings.frr_resync, false);
    let mut bgp_poll = ticker(timings.bgp_poll, true);
    let fingerprint = rec.frr.fingerprint().await;
    tracing::info!(frr = ?fingerprint, "agent loop started");
    let mut lp = AgentLoop {
        rec,
        write_status,
        timings,
        metrics,
        liveness,
        desired: None,
        due: None,
        trigger: "start",
        last_frr: None,
        last_status: None,
        fingerprint,
        frr_version: None,
        sessions: None,
        backoff: Duration::from_secs(1),
    };
    tokio::pin!(shutdown);
    loop {
        lp.liveness.progress(Duration::ZERO);
        let wake = lp.due;
        let timer = async move {
            match wake {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => {
                lp.shut_down(uninstalled.as_ref()).await;
                break;
            }
            ev = source.recv() => if !lp.on_source(ev).await { break },
            Some(ev) = kernel_events.recv() => lp.on_kernel_event(ev),
            _ = frr_check.tick() => lp.on_frr_check().await,
            _ = resync.tick() => lp.pass_at(Instant::now(), "resync"),
            _ = frr_resync.tick() => lp.on_frr_resync(),
            _ = bgp_poll.tick() => lp.on_bgp_poll().await,
            _ = timer => {
                lp.due = None;
                let Some(d) = lp.desired.as_ref() else { continue };
                // a pass is cut short by shutdown: every step is idempotent and the next agent
                // picks up from whatever state it left
                let rep = tokio::select! {
                    rep = lp.rec.pass(d) => rep,
                    _ = &mut shutdown => {
                        lp.shut_down(uninstalled.as_ref()).await;
                        break;
                    }
                };
                lp.on_pass_done(rep).await;
            }
        }
    }
    monitor_task.abort();
}

/// Writes each status as JSON to `path` (atomically).
pub fn file_status_writer(path: PathBuf) -> StatusWriter {
    Box::new(move |st: EvpnNodeStateStatus| {
        let path = path.clone();
        Box::pin(async move {
            match serde_json::to_string_pretty(&st) {
                Ok(json) => match crate::frr::reload::write_file(&path, &json) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the status file");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot encode the status");
                    false
                }
            }
        })
    })
}

/// `/metrics` and `/healthz` (200 unless the loop is stuck: see [`Liveness`]).
pub async fn serve_http(
    addr: std::net::SocketAddr,
    metrics: Metrics,
    liveness: Liveness,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let l = liveness.clone();
                async move {
                    match l.overdue() {
                        None => (StatusCode::OK, "ok\n".to_string()),
                        Some(late) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("loop stuck: {late}s past the deadline of its current step\n"),
                        ),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::frr::reload::{FrrError, FrrOutcome};
    use crate::kernel::fake::FakeKernel;
    use crate::model::{NodeSettings, Prefix, RtRd};

    /// An FRR whose bgpd lists `sessions` after `delay`; nothing else of it is used here.
    struct Bgpd {
        delay: Duration,
        sessions: Vec<BgpSession>,
    }

    #[allow(clippy::manual_async_fn)]
    impl FrrControl for Bgpd {
        fn apply(
            &mut self,
            _config: &str,
            _delta: Option<&str>,
        ) -> impl Future<Output = Result<FrrOutcome, FrrError>> + Send {
            async { Ok(FrrOutcome::Unchanged) }
        }
        fn zebra_knows_vxlan(&mut self, _ifname: &str, _vni: u32) -> impl Future<Output = bool> + Send {
            async { true }
        }
        fn evpn_prefixes_under(
            &mut self,
            _rd: &RtRd,
        ) -> impl Future<Output = Option<BTreeSet<Prefix>>> + Send {
            async { None }
        }
        fn version(&mut self) -> impl Future<Output = Option<String>> + Send {
            async { Some("10.3".into()) }
        }
        fn l3vni_mappings(&mut self) -> impl Future<Output = Option<BTreeMap<u32, String>>> + Send {
            async { Some(BTreeMap::new()) }
        }
        fn bgp_sessions(&mut self) -> impl Future<Output = Option<Vec<BgpSession>>> + Send {
            let (delay, sessions) = (self.delay, self.sessions.clone());
            async move {
                tokio::time::sleep(delay).await;
                Some(sessions)
            }
        }
        fn remove_config_file(&mut self) -> Result<(), FrrError> {
            Ok(())
        }
        fn fingerprint(&mut self) -> impl Future<Output = Option<String>> + Send {
            async { Some("zebra=1,bgpd=2".into()) }
        }
    }

    fn session(state: &str) -> BgpSession {
        BgpSession {
            peer: "172.30.0.2".into(),
            remote_asn: Some(64999),
            state: state.into(),
            established_epoch: None,
            prefixes_received: 0,
            bfd: None,
            last_reset: None,
        }
    }

    /// The loop after a first status, with `bgpd`; `written` collects what it writes.
    fn agent_loop(bgpd: Bgpd, written: Arc<Mutex<Vec<EvpnNodeStateStatus>>>) -> AgentLoop<FakeKernel, Bgpd> {
        let sink = written.clone();
        AgentLoop {
            rec: Reconciler::new(FakeKernel::new(), bgpd, NodeSettings::default()),
            write_status: Box::new(move |st| {
                sink.lock().unwrap().push(st);
                Box::pin(async { true })
            }),
            timings: LoopTimings::default(),
            metrics: Metrics::new(),
            liveness: Liveness::new(Duration::from_secs(60)),
            desired: None,
            due: None,
            trigger: "test",
            last_frr: None,
            last_status: Some(EvpnNodeStateStatus::default()),
            fingerprint: Some("zebra=1,bgpd=2".into()),
            frr_version: None,
            sessions: Some(vec![session("Established")]),
            backoff: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_change_is_written_at_once() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let bgpd = Bgpd {
            delay: Duration::from_millis(300),
            sessions: vec![session("Active")],
        };
        let mut lp = agent_loop(bgpd, written.clone());
        lp.on_bgp_poll().await;
        let first = written.lock().unwrap().clone();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].sessions_established.as_deref(), Some("0/1"));
        assert_eq!(first[0].bgp_sessions[0].state, "Active");
        // the same reading again writes nothing
        lp.on_bgp_poll().await;
        assert_eq!(written.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bgpd_that_does_not_answer_holds_the_loop_up_at_most_the_poll_deadline() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let bgpd = Bgpd {
            delay: Duration::from_secs(3600),
            sessions: vec![session("Active")],
        };
        let mut lp = agent_loop(bgpd, written.clone());
        let started = tokio::time::Instant::now();
        lp.on_bgp_poll().await;
        assert_eq!(
            started.elapsed(),
            BGP_POLL_DEADLINE,
            "the poll waited past its deadline"
        );
        // nothing written, the last reading kept
        assert!(written.lock().unwrap().is_empty());
        assert_eq!(lp.sessions, Some(vec![session("Established")]));
    }
}
