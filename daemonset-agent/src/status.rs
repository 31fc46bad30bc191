//! `EvpnNodeStateStatus` from the last pass.

use bgpvpn_crds::conditions::{self, types};
use bgpvpn_crds::{EvpnNodeStateStatus, FrrApplyStatus, L3VniStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::model::NodeModel;
use crate::reconcile::{FrrApply, FrrResult, PassReport};

const FRR_NOT_RUNNING: &str = "FRR's zebra or bgpd is not running: nothing is announced; the configuration is applied again when they are back";

/// What the agent knows about FRR when it writes a status.
#[derive(Debug, Clone, Copy)]
pub struct FrrObserved<'a> {
    /// The last apply result seen (a pass that did not need FRR reports none).
    pub applied: Option<&'a FrrResult>,
    /// What the running FRR says it is.
    pub version: Option<&'a str>,
    /// zebra and bgpd run now. An apply that succeeded is not served by daemons that died since.
    pub running: bool,
}

/// Builds the status of `desired` after `report`. `previous` keeps the conditions'
/// `lastTransitionTime` while they do not flip.
pub fn build_status(
    desired: &NodeModel,
    report: &PassReport,
    frr: FrrObserved<'_>,
    previous: Option<&EvpnNodeStateStatus>,
    now: &Time,
) -> EvpnNodeStateStatus {
    let generation = desired.generation;
    let last_frr = frr.applied;
    let frr_ok = frr.running && last_frr.is_some_and(|f| f.result != FrrApply::Failed);
    let kernel_ok = report.kernel_errors.is_empty();
    let mut l3vnis = Vec::new();
    for v in &desired.vrfs {
        let plan = report
            .resolved
            .as_ref()
            .and_then(|r| r.vrfs.iter().find(|p| p.name == v.name));
        let mut problems: Vec<String> = Vec::new();
        let mut endpoints = 0;
        match plan {
            None => problems.push("not programmed yet".into()),
            Some(p) => {
                if let Some(c) = &p.conflict {
                    problems.push(c.clone());
                }
                for e in &p.endpoints {
                    match &e.interface {
                        Ok(_) => endpoints += 1,
                        Err(why) => problems.push(format!(
                            "endpoint {}{}: {why}",
                            e.ip,
                            e.pod.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                        )),
                    }
                }
                for x in &p.prefixes {
                    if let Err(why) = &x.route {
                        problems.push(format!("prefix {}: {why}", x.prefix));
                    }
                }
            }
        }
        if !kernel_ok {
            problems.push("kernel programming failed (see conditions)".into());
        }
        if !frr.running {
            problems.push(FRR_NOT_RUNNING.into());
        } else if !frr_ok {
            problems.push("FRR configuration not applied (see status.frr)".into());
        }
        if let Some(why) = report.not_served.get(&v.vni) {
            problems.push(why.clone());
        }
        if let Some(h) = desired.held_back.iter().find(|h| h.vni == v.vni) {
            problems.insert(
                0,
                format!("held back: {}; the last accepted version keeps running", h.reason),
            );
        }
        l3vnis.push(L3VniStatus {
            vni: v.vni,
            vrf: v.name.to_string(),
            bgpvpn: v.bgpvpn.clone(),
            ready: problems.is_empty(),
            endpoints,
            message: (!problems.is_empty()).then(|| problems.join("; ")),
        });
    }
    for h in desired.held_back.iter().filter(|h| !h.kept_running) {
        l3vnis.push(L3VniStatus {
            vni: h.vni,
            vrf: h.vrf.clone(),
            bgpvpn: h.bgpvpn.clone(),
            ready: false,
            endpoints: 0,
            message: Some(format!("held back: {}; not programmed", h.reason)),
        });
    }
    l3vnis.sort_by_key(|s| s.vni);
    let programmed = l3vnis.iter().filter(|s| s.ready).count() as i32;
    let dataplane_msg = if kernel_ok {
        format!("{} kernel writes in the last pass", report.kernel_writes)
    } else {
        report.kernel_errors.join("; ")
    };
    let frr_msg = match last_frr {
        _ if !frr.running => FRR_NOT_RUNNING.to_string(),
        Some(f) => format!(
            "{}{}",
            f.result.as_str(),
            f.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        None => "not applied yet".to_string(),
    };
    let all_ready = kernel_ok && frr_ok && l3vnis.iter().all(|s| s.ready);
    let ready_msg = if all_ready {
        format!("{programmed} L3 VNIs programmed")
    } else {
        let pending: Vec<String> = l3vnis
            .iter()
            .filter(|s| !s.ready)
            .map(|s| format!("{} (VNI {})", s.vrf, s.vni))
            .collect();
        format!(
            "not ready: {}",
            if pending.is_empty() {
                "see other conditions".to_string()
            } else {
                pending.join(", ")
            }
        )
    };
    let fresh = vec![
        conditions::condition(
            types::DATAPLANE_PROGRAMMED,
            kernel_ok,
            if kernel_ok { "Programmed" } else { "KernelError" },
            dataplane_msg,
            generation,
            now,
        ),
        conditions::condition(
            types::FRR_APPLIED,
            frr_ok,
            if frr.running {
                last_frr.map(|f| f.result.as_str()).unwrap_or("Pending")
            } else {
                "DaemonsNotRunning"
            },
            frr_msg,
            generation,
            now,
        ),
        conditions::condition(
            types::READY,
            all_ready,
            if all_ready { "Ready" } else { "NotReady" },
            ready_msg,
            generation,
            now,
        ),
    ];
    EvpnNodeStateStatus {
        conditions: conditions::merged(
            previous.map(|p| p.conditions.as_slice()).unwrap_or_default(),
            fresh,
        ),
        observed_generation: generation,
        programmed_vnis: programmed,
        l3vnis,
        frr: last_frr.map(|f| FrrApplyStatus {
            result: f.result.as_str().to_string(),
            time: Some(f.time.clone()),
            message: f.message.clone(),
        }),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        frr_version: frr.version.map(str::to_string),
    }
}
