//! `EvpnNodeStateStatus` from the last pass.

use bgpvpn_crds::conditions::{self, types};
use bgpvpn_crds::{BgpSessionStatus, EvpnNodeStateStatus, FrrApplyStatus, L3VniStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::frr::sessions::BgpSession;

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
    /// The underlay BGP sessions as last read (`None`: not read yet, or FRR did not tell).
    pub sessions: Option<&'a [BgpSession]>,
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
    let status = EvpnNodeStateStatus {
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
        bgp_sessions: Vec::new(),
        sessions_established: None,
    };
    with_sessions(&status, frr.sessions, now)
}

/// `status` with the underlay BGP sessions as just read: the list, the `1/2` summary and the
/// `BgpEstablished` condition (for the generation the status describes).
pub fn with_sessions(
    status: &EvpnNodeStateStatus,
    sessions: Option<&[BgpSession]>,
    now: &Time,
) -> EvpnNodeStateStatus {
    let mut out = status.clone();
    let generation = status.observed_generation;
    let condition = |ok, reason, message: String| {
        conditions::condition(types::BGP_ESTABLISHED, ok, reason, message, generation, now)
    };
    let fresh: Condition = match sessions {
        None => Condition {
            status: "Unknown".to_string(),
            ..condition(
                false,
                "NotObserved",
                "FRR has not reported the node's BGP sessions".into(),
            )
        },
        Some([]) => condition(
            false,
            "NoNeighbors",
            "no underlay BGP neighbor is configured: nothing is advertised".into(),
        ),
        Some(all) if all.iter().all(BgpSession::established) => {
            condition(true, "Established", format!("{} sessions established", all.len()))
        }
        Some(all) => {
            let down: Vec<String> = all
                .iter()
                .filter(|s| !s.established())
                .map(|s| match &s.last_reset {
                    Some(why) => format!("{} ({}, last reset: {why})", s.peer, s.state),
                    None => format!("{} ({})", s.peer, s.state),
                })
                .collect();
            condition(
                false,
                "SessionsDown",
                format!("not established: {}", down.join(", ")),
            )
        }
    };
    conditions::upsert(&mut out.conditions, fresh);
    out.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    out.bgp_sessions = sessions
        .unwrap_or_default()
        .iter()
        .take(bgpvpn_crds::schema::MAX_STATUS_ITEMS as usize)
        .map(|s| BgpSessionStatus {
            peer: s.peer.clone(),
            remote_asn: s.remote_asn,
            state: s.state.clone(),
            established_since: s
                .established_epoch
                .and_then(|t| k8s_openapi::jiff::Timestamp::from_second(t).ok())
                .map(Time),
            prefixes_received: s.prefixes_received,
            bfd: s.bfd.clone(),
        })
        .collect();
    out.sessions_established = sessions.map(|all| {
        let up = all.iter().filter(|s| s.established()).count();
        format!("{up}/{}", all.len())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frr::sessions::parse_bgp_sessions;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn sessions_reach_the_status_with_their_summary_and_condition() {
        let ready = conditions::condition(types::READY, true, "Ready", "", Some(4), &at(1_700_000_000));
        let base = EvpnNodeStateStatus {
            observed_generation: Some(4),
            conditions: vec![ready],
            ..Default::default()
        };
        let cond = |st: &EvpnNodeStateStatus| {
            let c = conditions::find(&st.conditions, types::BGP_ESTABLISHED).unwrap();
            (
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
                c.observed_generation,
            )
        };
        // FRR 10.3: one session up with BFD, one neighbor that never answers
        let two = parse_bgp_sessions(include_str!("frr/testdata/frr-10.3-bgp-neighbors-up.json")).unwrap();
        let st = with_sessions(&base, Some(&two), &at(1_800_000_000));
        // the pass's conditions stay
        assert_eq!(st.conditions.len(), 2);
        assert!(conditions::is_true(&st.conditions, types::READY));
        assert_eq!(st.sessions_established.as_deref(), Some("1/2"));
        let (status, reason, message, generation) = cond(&st);
        assert_eq!(
            (status.as_str(), reason.as_str(), generation),
            ("False", "SessionsDown", Some(4))
        );
        assert_eq!(
            message,
            "not established: 172.30.0.9 (Active, last reset: Waiting for peer OPEN)"
        );
        let up = &st.bgp_sessions[0];
        assert_eq!(
            (up.peer.as_str(), up.state.as_str()),
            ("172.30.0.2", "Established")
        );
        assert_eq!(up.established_since, Some(at(1796190862)));
        assert_eq!(up.bfd.as_deref(), Some("Up"));
        assert_eq!(st.bgp_sessions[1].established_since, None);

        // the down one comes up: True, and the time of the flip is now
        let mut all_up = two.clone();
        all_up[1].state = "Established".into();
        let later = with_sessions(&st, Some(&all_up), &at(1_800_000_100));
        assert_eq!(later.sessions_established.as_deref(), Some("2/2"));
        assert_eq!(cond(&later).0, "True");
        let flipped = conditions::find(&later.conditions, types::BGP_ESTABLISHED).unwrap();
        assert_eq!(flipped.last_transition_time, at(1_800_000_100));

        let none = with_sessions(&base, Some(&[]), &at(1_800_000_000));
        assert_eq!(
            (cond(&none).0.as_str(), cond(&none).1.as_str()),
            ("False", "NoNeighbors")
        );
        assert_eq!(none.sessions_established.as_deref(), Some("0/0"));
        let unknown = with_sessions(&base, None, &at(1_800_000_000));
        assert_eq!(
            (cond(&unknown).0.as_str(), cond(&unknown).1.as_str()),
            ("Unknown", "NotObserved")
        );
        assert_eq!(unknown.sessions_established, None);
        assert!(unknown.bgp_sessions.is_empty());
    }
}
