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
//!
//! The kernel step runs in rounds (dump, diff, write) until a round has nothing to write, so a
//! second pass with the same state performs zero writes. Every FRR apply result is reported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::frr::delta::delta;
use crate::frr::reload::{FrrControl, FrrError, FrrOutcome};
use crate::frr::{FrrView, render};
use crate::kernel::plan::{EndpointPins, Resolved, resolve};
use crate::kernel::{Dataplane, KernelOp, KernelState};
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::model::{IfName, NodeModel, NodeSettings};

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
    /// VNIs FRR took in its configuration but zebra does not map to their VRF, with why (FRR
    /// 10 refuses some commits only in its log while frr-reload.py exits 0).
    pub unmapped: BTreeMap<u32, String>,
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

    pub fn ok(&self) -> bool {
        self.kernel_errors.is_empty()
            && self.frr.as_ref().is_none_or(|f| f.result != FrrApply::Failed)
            && self.unmapped.is_empty()
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

    /// Polls bgpd until every RD in `rds` holds a number of type-5 routes that `ok` takes, or
    /// the deadline passes.
    async fn wait_prefixes(&mut self, rds: &[String], ok: impl Fn(usize) -> bool) -> bool {
        let start = Instant::now();
        self.progress(self.waits.route_gone + self.frr_deadline);
        loop {
            let mut all = true;
            for rd in rds {
                all &= self.frr.evpn_prefixes_under(rd).await.is_some_and(&ok);
            }
            if all {
                return true;
            }
            if start.elapsed() >= self.waits.route_gone {
                return false;
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
                return;
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
            report.unmapped = wrong;
        }
    }

    /// Brings kernel and FRR to `desired`: FRR before the kernel (a VNI move and an RD change
    /// each in their safe order), the kernel in rounds, then FRR's final view and its checks.
    pub async fn pass(&mut self, desired: &NodeModel) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport {
            generation: desired.generation,
            kernel_writes: 0,
            kernel_errors: Vec::new(),
            resolved: None,
            frr: None,
            moved: Vec::new(),
            trace: Vec::new(),
            warnings: Vec::new(),
            unmapped: BTreeMap::new(),
            duration: Duration::ZERO,
        };
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
        let mut rd_changes = match previous.as_ref() {
            Some(prev) if frr_ok => rd_changes(prev, &final_view, &moving),
            _ => Vec::new(),
        };
        if let Some(prev) = previous.as_ref().filter(|_| !rd_changes.is_empty()) {
            frr_ok = self.withdraw_old_rds(prev, &mut rd_changes, &mut report).await;
        }
        let empty = FrrView {
            vrfs: Vec::new(),
            ..final_view.clone()
        };
        let pre = final_view
            .unmapped(&moving)
            .with_retained(previous.as_ref().unwrap_or(&empty));
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
            self.apply_final_frr(&final_view, &moving, &rd_changes, &mut report)
                .await;
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

    /// An RD change, first half: the VRFs' routes withdrawn under their old RDs (counted first,
    /// to know when all are back under the new ones). Returns whether FRR took it.
    async fn withdraw_old_rds(
        &mut self,
        previous: &FrrView,
        changes: &mut [RdChange],
        report: &mut PassReport,
    ) -> bool {
        let names: Vec<IfName> = changes.iter().map(|c| c.vrf.clone()).collect();
        let list = names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        for c in changes.iter_mut() {
            c.routes_before = self.frr.evpn_prefixes_under(&c.old).await.unwrap_or(0);
        }
        let what = format!("withdraw {list} under the old RDs");
        let frr_ok = self.apply_frr(&previous.silenced(&names), &what, report).await;
        if frr_ok {
            let olds: Vec<String> = changes.iter().map(|c| c.old.clone()).collect();
            let gone = self.wait_prefixes(&olds, |n| n == 0).await;
            report.waited(
                format!("wait: routes under the old RDs of {list} withdrawn"),
                gone,
                || {
                    format!(
                        "routes under the old RDs of {list} still held after {:?}; moving on",
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

    /// FRR's final view, then its checks: every VNI mapped in zebra, and after an RD change
    /// every route announced again under the new RD.
    async fn apply_final_frr(
        &mut self,
        final_view: &FrrView,
        moving: &[IfName],
        rd_changes: &[RdChange],
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
        for c in rd_changes.iter().filter(|c| c.routes_before > 0) {
            let before = c.routes_before;
            let back = self
                .wait_prefixes(std::slice::from_ref(&c.new), |n| n >= before)
                .await;
            let what = format!("wait: {} announces its {before} routes under RD {}", c.vrf, c.new);
            report.waited(what, back, || {
                format!(
                    "{}: fewer than {before} routes under the new RD {} after {:?}",
                    c.vrf, c.new, self.waits.route_gone
                )
            });
        }
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

/// A VRF whose route distinguisher changes in this pass.
struct RdChange {
    vrf: IfName,
    old: String,
    new: String,
    /// Routes announced under the old RD before the change.
    routes_before: usize,
}

/// An RD changes in two steps: the VRF's routes are withdrawn under the old RD before any is
/// announced under the new one. In one step, two VRFs that swap RDs (and announce the same
/// prefix) replace each other's routes at the peer, which kept a stale route of the wrong VNI in
/// one VRF and lost the other's (FRR 10.3, in the node guest). A moving VRF changes in its own
/// order.
fn rd_changes(previous: &FrrView, final_view: &FrrView, moving: &[IfName]) -> Vec<RdChange> {
    final_view
        .vrfs
        .iter()
        .filter(|v| !moving.contains(&v.name))
        .filter_map(|v| {
            previous.vrf(&v.name).filter(|p| p.rd != v.rd).map(|p| RdChange {
                vrf: v.name.clone(),
                old: p.rd.to_string(),
                new: v.rd.to_string(),
                routes_before: 0,
            })
        })
        .collect()
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
