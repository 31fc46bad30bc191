//! One reconcile pass: observe, diff, and apply FRR and kernel changes in the order FRR needs.
//!
//! * **Create:** FRR VRF/VNI stanzas first, then the devices.
//! * **Delete:** devices first, then the FRR stanzas (a removed VRF stays in FRR, as last
//!   applied, until its devices are gone).
//! * **Move a VRF to another VNI** (FRR 8.4 lost the router MAC with the naive order; FRR 10.3
//!   did not in the bed, and this order is correct on both, so it stays): unmap
//!   the VNI with the old route targets still in place → wait until the VRF table holds no EVPN
//!   route → apply the new route targets (still unmapped) → swap the VXLAN device → wait until
//!   zebra knows the new one → map the new VNI.
//! * **Hand over an RD** (one VRF's RD changes, or goes to another VRF): the releasing VRFs
//!   withdraw under their old RDs → wait until those RDs are empty → set the new RDs, still
//!   silent → announce → check every route is announced under its new RD (see [`RdHandover`]).
//!
//! The kernel step runs in rounds (dump, diff, write) until a round has nothing to write, so a
//! second pass with the same state performs zero writes. Every FRR apply result is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::frr::delta::delta;
use crate::frr::reload::{FrrControl, FrrError, FrrOutcome};
use crate::frr::{FrrView, FrrVrf, render};
use crate::kernel::plan::{EndpointPins, Resolved, resolve};
use crate::kernel::{Dataplane, KernelOp, KernelState};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::model::{IfName, NodeModel, NodeSettings, Prefix, RtRd};

/// rtnetlink protocol of routes zebra installs from BGP (EVPN type-5 routes among them).
pub const RTPROT_BGP: u8 = 186;
const MAX_KERNEL_ROUNDS: usize = 4;

/// How an FRR apply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrrApply {
    Applied,
    Unchanged,
    Failed,
}

impl FrrApply {
    /// As in the status (`status.frr.result`, the `FRRApplied` reason) and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FrrApply::Applied => "Applied",
            FrrApply::Unchanged => "Unchanged",
            FrrApply::Failed => "Failed",
        }
    }
}

/// Result of the last FRR apply of a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct FrrResult {
    pub result: FrrApply,
    pub message: Option<String>,
    pub time: Time,
}

/// What one pass did and found.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub generation: Option<i64>,
    /// Kernel writes performed.
    pub kernel_writes: usize,
    pub kernel_errors: Vec<String>,
    /// Per-VRF kernel facts from the last round.
    pub resolved: Option<Resolved>,
    pub frr: Option<FrrResult>,
    /// VRFs moved to another VNI in this pass.
    pub moved: Vec<IfName>,
    /// Steps in order (`frr: ...`, `kernel: ...`, `wait: ...`), for logs and tests.
    pub trace: Vec<String>,
    pub warnings: Vec<String>,
    /// VNIs FRR took in its configuration but does not serve, with why: zebra does not map the
    /// VNI to its VRF (FRR 10 refuses some commits only in its log while frr-reload.py exits 0),
    /// or bgpd does not announce the VRF's routes after an RD handover.
    pub not_served: BTreeMap<u32, String>,
    pub duration: Duration,
}

impl PassReport {
    /// Records a wait in the trace (`<what>: <done>`), and as a warning when it ran out.
    fn waited(&mut self, what: String, done: bool, ran_out: impl FnOnce() -> String) {
        self.trace.push(format!("{what}: {done}"));
        if !done {
            self.warnings.push(ran_out());
        }
    }

    fn new(generation: Option<i64>) -> Self {
        Self {
            generation,
            kernel_writes: 0,
            kernel_errors: Vec::new(),
            resolved: None,
            frr: None,
            moved: Vec::new(),
            trace: Vec::new(),
            warnings: Vec::new(),
            not_served: BTreeMap::new(),
            duration: Duration::ZERO,
        }
    }

    pub fn ok(&self) -> bool {
        self.kernel_errors.is_empty()
            && self.frr.as_ref().is_none_or(|f| f.result != FrrApply::Failed)
            && self.not_served.is_empty()
    }
}

/// Deadlines of the waits in a VNI move.
#[derive(Clone, Debug)]
pub struct Waits {
    pub route_gone: Duration,
    pub zebra: Duration,
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self {
            route_gone: Duration::from_secs(15),
            zebra: Duration::from_secs(15),
            poll: Duration::from_millis(200),
        }
    }
}

/// What the agent knows of FRR's running configuration; it decides how the next pass applies
/// FRR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrrKnowledge {
    /// FRR runs the view last applied: a pass applies only what changed (or nothing).
    Holds,
    /// FRR should run the view last applied, and the periodic full comparison is due. If that
    /// read-only comparison itself fails (a `--test` slower than its deadline at a thousand
    /// VRFs), FRR was not touched: a warning, not a failed apply that would mark every VNI not
    /// ready and force a full reload into every following pass.
    RecheckDue,
    /// Unknown (startup, FRR restart, a failed apply, a VNI zebra does not map): the next pass
    /// applies the whole configuration, even if the view did not change.
    Unknown,
}

/// Holds the dataplane, FRR and the memory of the last FRR apply.
pub struct Reconciler<D: Dataplane, F: FrrControl> {
    pub dp: D,
    pub frr: F,
    pub settings: NodeSettings,
    /// The view FRR was last brought to (persisted in `applied_path`).
    pub applied: Option<FrrView>,
    pub applied_path: Option<PathBuf>,
    /// The last desired state taken (persisted in `accepted_path`): a VNI whose new spec is
    /// refused keeps running as it was, across agent restarts too.
    pub accepted: Option<NodeModel>,
    pub accepted_path: Option<PathBuf>,
    /// Each endpoint's interface (persisted in `pins_path`).
    pub pins: EndpointPins,
    pub pins_path: Option<PathBuf>,
    /// What the agent knows of FRR's running configuration.
    frr_knowledge: FrrKnowledge,
    pub waits: Waits,
    pub metrics: Option<Metrics>,
    /// Told before each step how long it may take (see [`Liveness`]).
    pub liveness: Option<Liveness>,
    /// The most one FRR apply may take (the deadline of one vtysh / frr-reload.py run).
    pub frr_deadline: Duration,
    /// VRFs whose routes FRR did not announce after the last RD handover: the next pass
    /// announces them again.
    unannounced: Vec<IfName>,
}

impl<D: Dataplane, F: FrrControl> Reconciler<D, F> {
    pub fn new(dp: D, frr: F, settings: NodeSettings) -> Self {
        Self {
            dp,
            frr,
            settings,
            applied: None,
            applied_path: None,
            accepted: None,
            accepted_path: None,
            pins: EndpointPins::default(),
            pins_path: None,
            frr_knowledge: FrrKnowledge::Unknown,
            waits: Waits::default(),
            metrics: None,
            liveness: None,
            frr_deadline: Duration::from_secs(300),
            unannounced: Vec::new(),
        }
    }

    /// Remembers the last applied view across agent restarts.
    pub fn with_state_file(mut self, path: PathBuf) -> Self {
        self.applied = load(&path);
        let accepted = path.with_file_name("desired-accepted.json");
        self.accepted = load(&accepted);
        self.accepted_path = Some(accepted);
        let pins = path.with_file_name("endpoint-pins.json");
        self.pins = load(&pins).unwrap_or_default();
        self.pins_path = Some(pins);
        self.applied_path = Some(path);
        self
    }

    /// Takes a new desired state: held-back VNIs keep their last accepted version; the result
    /// is remembered (and persisted) as the last accepted state.
    pub fn accept(&mut self, mut desired: NodeModel) -> NodeModel {
        if let Some(last) = &self.accepted {
            desired.keep_held_back_from(last);
        }
        persist(
            self.accepted_path.as_deref(),
            "the accepted desired state",
            &desired,
        );
        self.accepted = Some(desired.clone());
        desired
    }

    /// What the agent knows of FRR's running configuration.
    pub fn frr_knowledge(&self) -> FrrKnowledge {
        self.frr_knowledge
    }

    /// FRR (re)started: its running configuration is unknown.
    pub fn frr_restarted(&mut self) {
        self.frr_knowledge = FrrKnowledge::Unknown;
    }

    /// The periodic comparison with FRR's running configuration is due (a full apply already
    /// due stays one).
    pub fn frr_recheck_due(&mut self) {
        if self.frr_knowledge == FrrKnowledge::Holds {
            self.frr_knowledge = FrrKnowledge::RecheckDue;
        }
    }

    /// The next step takes at most `step`.
    fn progress(&self, step: Duration) {
        if let Some(l) = &self.liveness {
            l.progress(step);
        }
    }

    fn record_pins(&mut self, resolved: &Resolved, generation: Option<i64>) {
        let before = self.pins.clone();
        self.pins.update(resolved, generation);
        if self.pins != before {
            persist(self.pins_path.as_deref(), "the endpoint pins", &self.pins);
        }
    }

    async fn apply_frr(&mut self, view: &FrrView, what: &str, report: &mut PassReport) -> bool {
        let holds = self.frr_knowledge == FrrKnowledge::Holds;
        if holds && self.applied.as_ref() == Some(view) {
            return true;
        }
        // incremental only from a configuration known to be running
        let delta = if holds {
            self.applied.as_ref().and_then(|a| delta(a, view))
        } else {
            None
        };
        let t0 = Instant::now();
        // a check and an apply, each within the FRR deadline
        self.progress(self.frr_deadline * 2);
        let res = self.frr.apply(&render(view), delta.as_deref()).await;
        if let Err(FrrError::Check(e)) = &res
            && self.frr_knowledge == FrrKnowledge::RecheckDue
            && self.applied.as_ref() == Some(view)
        {
            tracing::warn!(stage = what, error = %e, "periodic FRR check failed; FRR was not changed, keeping the applied view");
            report
                .trace
                .push(format!("frr: {what}: check failed, FRR unchanged"));
            report
                .warnings
                .push(format!("periodic FRR check failed (FRR not changed): {e}"));
            self.frr_knowledge = FrrKnowledge::Holds;
            return true;
        }
        let millis = t0.elapsed().as_millis() as u64;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let ok = res.is_ok();
        if let (
            Some(m),
            Ok(FrrOutcome::Applied {
                incremental: true, ..
            }),
        ) = (&self.metrics, &res)
        {
            m.frr_incremental_applies.inc();
        }
        let result = match res {
            Ok(FrrOutcome::Unchanged) => {
                report.trace.push(format!("frr: {what}: unchanged"));
                FrrResult {
                    result: FrrApply::Unchanged,
                    message: None,
                    time: now,
                }
            }
            Ok(FrrOutcome::Applied { lines, incremental }) => {
                let how = if incremental { "vtysh delta" } else { "frr-reload" };
                report
                    .trace
                    .push(format!("frr: {what}: applied ({lines} lines, {how})"));
                FrrResult {
                    result: FrrApply::Applied,
                    message: Some(format!("{what}: {lines} lines changed ({how})")),
                    time: now,
                }
            }
            Err(e) => {
                report.trace.push(format!("frr: {what}: FAILED"));
                tracing::warn!(stage = what, error = %e, "FRR apply failed");
                FrrResult {
                    result: FrrApply::Failed,
                    message: Some(format!("{what}: {e}")),
                    time: now,
                }
            }
        };
        if let Some(m) = &self.metrics {
            m.frr(result.result.as_str());
        }
        tracing::info!(
            stage = what,
            result = result.result.as_str(),
            millis,
            message = result.message.as_deref().unwrap_or(""),
            "FRR apply"
        );
        report.frr = Some(result);
        if ok {
            self.applied = Some(view.clone());
            self.frr_knowledge = FrrKnowledge::Holds;
            persist(self.applied_path.as_deref(), "the applied FRR view", view);
        } else {
            // re-apply next time even if unchanged
            self.frr_knowledge = FrrKnowledge::Unknown;
        }
        ok
    }

    /// Polls the kernel until none of `tables` holds an EVPN route, or `deadline` passes.
    async fn wait_evpn_routes_gone(&mut self, tables: &[u32]) -> bool {
        let start = Instant::now();
        self.progress(self.waits.route_gone);
        loop {
            if self.dp.dump().await.is_ok_and(|k| !has_evpn_routes(&k, tables)) {
                return true;
            }
            if start.elapsed() >= self.waits.route_gone {
                return false;
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Polls bgpd until the type-5 prefixes under each RD of `rds` satisfy `settled`, or the
    /// deadline passes. Returns the RDs that did not settle.
    async fn wait_type5(
        &mut self,
        rds: &[RtRd],
        settled: impl Fn(&RtRd, &BTreeSet<Prefix>) -> bool,
    ) -> Vec<RtRd> {
        let start = Instant::now();
        self.progress(self.waits.route_gone + self.frr_deadline);
        loop {
            let mut open = Vec::new();
            for rd in rds {
                let done = self
                    .frr
                    .evpn_prefixes_under(rd)
                    .await
                    .is_some_and(|held| settled(rd, &held));
                if !done {
                    open.push(*rd);
                }
            }
            if open.is_empty() || start.elapsed() >= self.waits.route_gone {
                return open;
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Polls zebra until it knows the VXLAN device, or `deadline` passes.
    async fn wait_zebra_knows(&mut self, ifname: &str, vni: u32) -> bool {
        let start = Instant::now();
        // each poll is one vtysh run
        self.progress(self.waits.zebra + self.frr_deadline);
        loop {
            if self.frr.zebra_knows_vxlan(ifname, vni).await {
                return true;
            }
            if start.elapsed() >= self.waits.zebra {
                return false;
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// After an apply: every VNI of `view` is mapped to its VRF in zebra. One that is not, after
    /// zebra had time to learn the devices, is reported on its own VNI, and the next pass
    /// re-applies FRR in full (which also undoes a hand-made mapping that took the VNI).
    async fn check_vni_mappings(&mut self, view: &FrrView, report: &mut PassReport) {
        let wanted: BTreeMap<u32, &IfName> =
            view.vrfs.iter().filter_map(|v| Some((v.vni?, &v.name))).collect();
        if wanted.is_empty() {
            return;
        }
        let start = Instant::now();
        self.progress(self.waits.zebra + self.frr_deadline);
        let wrong = loop {
            let Some(mapped) = self.frr.l3vni_mappings().await else {
                // nothing says these VNIs are served: what was applied may never have arrived
                let why = "cannot read zebra's VNI table (vtysh show vrf vni failed: is zebra running, \
                           and may the agent open its vty socket?); re-applying FRR in full";
                break wanted.keys().map(|vni| (*vni, why.to_string())).collect();
            };
            let wrong: BTreeMap<u32, String> = wanted
                .iter()
                .filter(|(vni, vrf)| mapped.get(vni).map(String::as_str) != Some(vrf.as_str()))
                .map(|(vni, vrf)| {
                    let why = match mapped.get(vni) {
                        Some(other) => format!("FRR maps VNI {vni} to VRF {other}, not {vrf}; re-applying FRR in full"),
                        None => format!("FRR took the configuration but does not map VNI {vni} to {vrf} (see FRR's log); re-applying FRR in full"),
                    };
                    (*vni, why)
                })
                .collect();
            // a VNI held by another VRF will not come right by waiting
            let settled = wrong.keys().all(|vni| mapped.contains_key(vni));
            if wrong.is_empty() || settled || start.elapsed() >= self.waits.zebra {
                break wrong;
            }
            tokio::time::sleep(self.waits.poll).await;
        };
        report.trace.push(format!(
            "check: VNIs mapped in zebra: {}",
            if wrong.is_empty() {
                "all".to_string()
            } else {
                format!("not {:?}", wrong.keys().collect::<Vec<_>>())
            }
        ));
        if !wrong.is_empty() {
            for why in wrong.values() {
                tracing::warn!(%why, "L3 VNI not mapped in FRR");
            }
            self.frr_knowledge = FrrKnowledge::Unknown;
            report.not_served = wrong;
        }
    }

    /// Brings kernel and FRR to `desired`: FRR before the kernel (a VNI move and an RD change
    /// each in their safe order), the kernel in rounds, then FRR's final view and its checks.
    pub async fn pass(&mut self, desired: &NodeModel) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport::new(desired.generation);
        let observed = match self.dp.dump().await {
            Ok(s) => s,
            Err(e) => {
                report.kernel_errors.push(e.to_string());
                report.duration = started.elapsed();
                return report;
            }
        };
        let resolved = resolve(desired, &observed, &self.settings, &self.pins);
        let conflicted: Vec<IfName> = resolved
            .vrfs
            .iter()
            .filter(|v| v.conflict.is_some())
            .map(|v| v.name.clone())
            .collect();
        let final_view = FrrView::from_desired(desired, &conflicted);
        let previous = self.applied.clone();
        let moving = moving_vrfs(&resolved, &final_view, previous.as_ref());

        let mut frr_ok = true;
        if !moving.is_empty() {
            frr_ok = self
                .unmap_moving(&moving, previous.as_ref(), &resolved, &mut report)
                .await;
        }
        let handover = match previous.as_ref() {
            Some(prev) if frr_ok => rd_handover(prev, &final_view, &moving, &self.unannounced),
            _ => RdHandover::default(),
        };
        if !handover.released_rds.is_empty() {
            frr_ok = self.release_rds(&handover, &mut report).await;
        }
        let empty = FrrView {
            vrfs: Vec::new(),
            ..final_view.clone()
        };
        let held = self.applied.clone().unwrap_or(empty);
        // a VRF takes its RD while silent, and announces in a step of its own
        let pre = final_view
            .unmapped(&moving)
            .silenced(&handover.quiet)
            .with_retained(&held);
        // Only a changed view needs FRR before the kernel; a forced re-check of an unchanged
        // view (resync, FRR restart) runs after the kernel step so it never delays a repair.
        if frr_ok && self.applied.as_ref() != Some(&pre) {
            let what = if moving.is_empty() {
                "pre-kernel"
            } else {
                "new route targets, VNI unmapped"
            };
            frr_ok = self.apply_frr(&pre, what, &mut report).await;
        }
        if frr_ok && !handover.quiet.is_empty() {
            let announcing = final_view.unmapped(&moving).with_retained(&pre);
            frr_ok = self
                .apply_frr(&announcing, "announce under the new RDs", &mut report)
                .await;
        }
        // With FRR not (yet) holding the new VRFs, new devices would come before their EVPN
        // instance; repairs of what FRR already has are still made.
        let frr_has_all = self
            .applied
            .as_ref()
            .is_some_and(|a| final_view.vrfs.iter().all(|v| a.vrf(&v.name).is_some()));
        if !frr_ok && (!frr_has_all || !moving.is_empty()) {
            // a VNI move continues only in the safe order: no VXLAN swap before its FRR steps
            report.warnings.push(
                "FRR is not reachable or refused the configuration: kernel changes postponed".to_string(),
            );
            report.duration = started.elapsed();
            return report;
        }

        let resolved = self.kernel_rounds(desired, observed, resolved, &mut report).await;
        self.record_pins(&resolved, desired.generation);
        report.resolved = Some(resolved);
        if !report.kernel_errors.is_empty() {
            // keep FRR at the pre-kernel view: removing a VRF's stanzas while its devices may
            // still exist is the order FRR cannot take
            report.duration = started.elapsed();
            return report;
        }

        self.wait_moved_vxlans_known(&moving, &final_view, &mut report)
            .await;
        if frr_ok {
            self.apply_final_frr(&final_view, &moving, &handover, &mut report)
                .await;
        }
        report.duration = started.elapsed();
        report
    }

    /// The node cleaned up for an uninstall: every device, route and rule the agent owns
    /// removed (the kernel step of a pass to `last` without its VRFs), and the persisted state
    /// and FRR's configuration file removed, so a new install starts afresh. The running FRR is
    /// left alone: its router pod goes with the same uninstall.
    pub async fn teardown(&mut self, last: &NodeModel) -> PassReport {
        let started = Instant::now();
        let mut empty = last.clone();
        empty.vrfs.clear();
        empty.held_back.clear();
        let mut report = PassReport::new(empty.generation);
        match self.dp.dump().await {
            Ok(observed) => {
                let resolved = resolve(&empty, &observed, &self.settings, &self.pins);
                self.kernel_rounds(&empty, observed, resolved, &mut report).await;
            }
            Err(e) => report.kernel_errors.push(e.to_string()),
        }
        for path in [&self.applied_path, &self.accepted_path, &self.pins_path]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                report.warnings.push(format!("removing {}: {e}", path.display()));
            }
        }
        if let Err(e) = self.frr.remove_config_file() {
            report.warnings.push(e.to_string());
        }
        report.duration = started.elapsed();
        report
    }

    /// A VNI move, first half: the moving VRFs' VNIs unmapped in FRR (with their old route
    /// targets), then their EVPN routes gone from the kernel before the route targets change.
    /// Returns whether FRR took the unmapping.
    async fn unmap_moving(
        &mut self,
        moving: &[IfName],
        previous: Option<&FrrView>,
        resolved: &Resolved,
        report: &mut PassReport,
    ) -> bool {
        report.moved = moving.to_vec();
        let names = moving.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        let mut frr_ok = true;
        if let Some(prev) =
            previous.filter(|p| moving.iter().any(|n| p.vrf(n).is_some_and(|v| v.vni.is_some())))
        {
            let what = format!("unmap VNI of {names} (old route targets)");
            frr_ok = self.apply_frr(&prev.unmapped(moving), &what, report).await;
        }
        let tables: Vec<u32> = resolved
            .vrfs
            .iter()
            .filter(|v| moving.contains(&v.name))
            .map(|v| v.table)
            .collect();
        let gone = self.wait_evpn_routes_gone(&tables).await;
        tracing::info!(vrfs = %names, gone, "wait: EVPN routes of the moving VRFs withdrawn");
        report.waited(format!("wait: EVPN routes gone from {names}"), gone, || {
            format!(
                "EVPN routes of {names} still installed after {:?}; moving on",
                self.waits.route_gone
            )
        });
        frr_ok
    }

    /// An RD handover, first half: the releasing VRFs silenced under their old RDs, and those
    /// RDs empty, before any VRF takes one. Returns whether FRR took it.
    async fn release_rds(&mut self, handover: &RdHandover, report: &mut PassReport) -> bool {
        let list = names(&handover.releasing);
        let mut frr_ok = true;
        if let Some(from) = self.applied.clone().filter(|_| !handover.releasing.is_empty()) {
            let what = format!("withdraw {list} under the old RDs");
            frr_ok = self
                .apply_frr(&from.silenced(&handover.releasing), &what, report)
                .await;
        }
        if frr_ok {
            let held = self
                .wait_type5(&handover.released_rds, |_, prefixes| prefixes.is_empty())
                .await;
            let rds = handover
                .released_rds
                .iter()
                .map(|rd| rd.to_string())
                .collect::<Vec<_>>();
            report.waited(
                format!("wait: routes under the old RDs {} withdrawn", rds.join(",")),
                held.is_empty(),
                || {
                    format!(
                        "routes under the old RDs {} still held after {:?}; moving on",
                        held.iter().map(|rd| rd.to_string()).collect::<Vec<_>>().join(","),
                        self.waits.route_gone
                    )
                },
            );
        }
        frr_ok
    }

    /// The kernel brought to `desired`, in rounds (each a fresh dump, resolve and diff) until
    /// nothing is left to write, a write fails, or [`MAX_KERNEL_ROUNDS`]. Returns the last
    /// resolution.
    async fn kernel_rounds(
        &mut self,
        desired: &NodeModel,
        observed: KernelState,
        resolved: Resolved,
        report: &mut PassReport,
    ) -> Resolved {
        let mut last_resolved = resolved;
        // the first round works on the pass's dump (tens of thousands of objects at scale: not copied)
        let mut first_dump = Some(observed);
        for round in 0..MAX_KERNEL_ROUNDS {
            self.progress(Duration::ZERO);
            let observed = match first_dump.take() {
                Some(dump) => dump,
                None => match self.dp.dump().await {
                    Ok(s) => s,
                    Err(e) => {
                        report.kernel_errors.push(e.to_string());
                        break;
                    }
                },
            };
            let r = resolve(desired, &observed, &self.settings, &self.pins);
            let sysctls = self.dp.read_sysctls(&r.sysctl_keys());
            let ops = r.ops(&observed, &sysctls);
            last_resolved = r;
            if ops.is_empty() || !self.write_ops(&ops, report).await {
                break;
            }
            if round + 1 == MAX_KERNEL_ROUNDS {
                report.warnings.push(format!(
                    "kernel state still differs after {MAX_KERNEL_ROUNDS} rounds"
                ));
            }
        }
        last_resolved
    }

    /// One round's kernel writes: a run of independent writes goes out together, anything else
    /// one by one. Returns whether every write succeeded.
    async fn write_ops(&mut self, ops: &[KernelOp], report: &mut PassReport) -> bool {
        let mut all_ok = true;
        let mut start = 0;
        while start < ops.len() {
            let len = if ops[start].is_independent() {
                ops[start..].iter().take_while(|o| o.is_independent()).count()
            } else {
                1
            };
            let run = &ops[start..start + len];
            start += len;
            let results = if len == 1 {
                vec![self.dp.apply(&run[0]).await]
            } else {
                self.dp.apply_independent(run).await
            };
            for (op, res) in run.iter().zip(results) {
                if let Some(m) = &self.metrics {
                    m.op(op.label(), res.is_ok());
                }
                match res {
                    Ok(()) => {
                        report.kernel_writes += 1;
                        report.trace.push(format!("kernel: {op}"));
                        tracing::info!(op = %op, "kernel write");
                    }
                    Err(e) => {
                        tracing::warn!(op = %op, error = %e, "kernel write failed");
                        report.trace.push(format!("kernel: FAILED {op}"));
                        report.kernel_errors.push(e.to_string());
                        all_ok = false;
                    }
                }
            }
        }
        all_ok
    }

    /// A moved VRF is mapped only once zebra knows its new VXLAN device.
    async fn wait_moved_vxlans_known(
        &mut self,
        moving: &[IfName],
        final_view: &FrrView,
        report: &mut PassReport,
    ) {
        for name in moving {
            if let Some(v) = final_view.vrf(name)
                && let Some(vni) = v.vni
            {
                let ifname = crate::model::vxlan_name(vni);
                let known = self.wait_zebra_knows(ifname.as_str(), vni).await;
                tracing::info!(%ifname, vni, known, "wait: zebra knows the new VXLAN device");
                report.waited(format!("wait: zebra knows {ifname} (VNI {vni})"), known, || {
                    format!(
                        "zebra did not report {ifname} within {:?}; mapping VNI {vni} anyway",
                        self.waits.zebra
                    )
                });
            }
        }
    }

    /// FRR's final view, then its checks: every VNI mapped in zebra, and after an RD handover
    /// every route of the VRFs that took an RD announced under it.
    async fn apply_final_frr(
        &mut self,
        final_view: &FrrView,
        moving: &[IfName],
        handover: &RdHandover,
        report: &mut PassReport,
    ) {
        let what = if moving.is_empty() { "final" } else { "map new VNI" };
        let ok = self.apply_frr(final_view, what, report).await;
        if !ok {
            return;
        }
        if report.frr.as_ref().is_some_and(|f| f.result != FrrApply::Failed) {
            self.check_vni_mappings(final_view, report).await;
        }
        self.check_announced(final_view, &handover.taking, report).await;
    }

    /// Waits until FRR announces every route of `taking` under its RD. A VRF still short gets
    /// one re-announcement (withdrawn, then announced again); one still short after that is
    /// not served (not ready), and the next pass announces it again.
    async fn check_announced(&mut self, final_view: &FrrView, taking: &[IfName], report: &mut PassReport) {
        let mut short: Vec<&FrrVrf> = taking
            .iter()
            .filter_map(|n| final_view.vrf(n))
            .filter(|v| v.vni.is_some() && !v.networks.is_empty())
            .collect();
        for attempt in ["", " again"] {
            if short.is_empty() {
                break;
            }
            if !attempt.is_empty() {
                let vrfs: Vec<IfName> = short.iter().map(|v| v.name.clone()).collect();
                let list = names(&vrfs);
                let silent = final_view.silenced(&vrfs);
                if !self
                    .apply_frr(&silent, &format!("withdraw {list} to announce again"), report)
                    .await
                {
                    break;
                }
                let rds: Vec<RtRd> = short.iter().map(|v| v.rd).collect();
                self.wait_type5(&rds, |_, prefixes| prefixes.is_empty()).await;
                if !self
                    .apply_frr(final_view, &format!("announce {list} again"), report)
                    .await
                {
                    break;
                }
            }
            let rds: Vec<RtRd> = short.iter().map(|v| v.rd).collect();
            let expected = |rd: &RtRd, held: &BTreeSet<Prefix>| {
                final_view
                    .vrfs
                    .iter()
                    .find(|v| v.rd == *rd)
                    .is_none_or(|v| v.networks.iter().all(|n| held.contains(n)))
            };
            let open = self.wait_type5(&rds, expected).await;
            short.retain(|v| open.contains(&v.rd));
            let list = names(&short.iter().map(|v| v.name.clone()).collect::<Vec<_>>());
            report.trace.push(format!(
                "wait: every route announced{attempt} under the new RDs: {}",
                if short.is_empty() {
                    "true".to_string()
                } else {
                    format!("not {list}")
                }
            ));
        }
        for v in &short {
            let why = format!(
                "FRR does not announce all {} routes of {} under RD {} (waited {:?}, announced once \
                 more); announced again in the next pass",
                v.networks.len(),
                v.name,
                v.rd,
                self.waits.route_gone
            );
            tracing::warn!(%why, "routes not announced");
            if let Some(vni) = v.vni {
                report.not_served.insert(vni, why);
            }
        }
        self.unannounced = short.iter().map(|v| v.name.clone()).collect();
    }
}

/// The VRFs whose VNI changes in this pass: in the kernel (a VXLAN device to swap) or in FRR.
fn moving_vrfs(resolved: &Resolved, final_view: &FrrView, previous: Option<&FrrView>) -> Vec<IfName> {
    final_view
        .vrfs
        .iter()
        .filter(|v| {
            let kernel = resolved
                .vrfs
                .iter()
                .any(|r| r.name == v.name && !r.remap_from.is_empty());
            let frr = previous
                .and_then(|p| p.vrf(&v.name))
                .and_then(|p| p.vni)
                .is_some_and(|old| Some(old) != v.vni);
            kernel || frr
        })
        .map(|v| v.name.clone())
        .collect()
}

/// The VRFs an RD handover touches in this pass. bgpd keys a local type-5 route by RD and
/// prefix, one path for every VRF: a VRF that withdraws under an RD while another announces
/// the same prefix under it removes the other's route (FRR 10.3, node guest: two VPNs that
/// swapped RDs and announce the same prefix, one of them lost it). So an RD is released
/// (routes withdrawn, gone) before it is taken, and taken while silent.
#[derive(Debug, Default, PartialEq)]
struct RdHandover {
    /// VRFs of the previous view whose RD changes or goes to another VRF (or that must
    /// announce again): silenced first. A moving VRF is not: unmapped, it announces nothing.
    releasing: Vec<IfName>,
    /// The RDs those VRFs and moving ones give up, empty before any is taken.
    released_rds: Vec<RtRd>,
    /// VRFs of the final view that take a new RD or one another VRF held (or that must announce
    /// again): their routes are checked under it at the end.
    taking: Vec<IfName>,
    /// The taking VRFs that are not moving: silent until their RD is set, then announced in a
    /// step of their own (a moving VRF announces once its new VNI is mapped).
    quiet: Vec<IfName>,
}

/// The handover from `previous` to `final_view`; the VRFs in `again` go through it even with
/// their RD unchanged.
fn rd_handover(previous: &FrrView, final_view: &FrrView, moving: &[IfName], again: &[IfName]) -> RdHandover {
    let held_by_other =
        |view: &FrrView, v: &FrrVrf| view.vrfs.iter().any(|o| o.rd == v.rd && o.name != v.name);
    let changes = |other: &FrrView, v: &FrrVrf| other.vrf(&v.name).is_some_and(|o| o.rd != v.rd);
    let released: Vec<&FrrVrf> = previous
        .vrfs
        .iter()
        .filter(|p| again.contains(&p.name) || changes(final_view, p) || held_by_other(final_view, p))
        .collect();
    let taking: Vec<IfName> = final_view
        .vrfs
        .iter()
        .filter(|v| again.contains(&v.name) || changes(previous, v) || held_by_other(previous, v))
        .map(|v| v.name.clone())
        .collect();
    RdHandover {
        releasing: released
            .iter()
            .filter(|v| !moving.contains(&v.name))
            .map(|v| v.name.clone())
            .collect(),
        released_rds: released.iter().map(|v| v.rd).collect(),
        quiet: taking.iter().filter(|n| !moving.contains(n)).cloned().collect(),
        taking,
    }
}

fn names(vrfs: &[IfName]) -> String {
    vrfs.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// Whether any of `tables` holds a route zebra installed from BGP.
pub fn has_evpn_routes(k: &KernelState, tables: &[u32]) -> bool {
    k.routes
        .iter()
        .any(|r| r.protocol == RTPROT_BGP && tables.contains(&r.table))
}

/// What an earlier run of the agent persisted at `path`, if it is there and still decodes.
fn load<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Persists `value` at `path` (atomically); a failure only costs what a restart remembers.
fn persist(path: Option<&std::path::Path>, what: &str, value: &impl serde::Serialize) {
    let Some(path) = path else { return };
    let written = serde_json::to_string(value)
        .map_err(|e| e.to_string())
        .and_then(|json| crate::frr::reload::write_file(path, &json).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot persist {what}");
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
