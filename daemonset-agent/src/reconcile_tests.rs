//! Pass-level tests against the fake kernel and a fake FRR.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use super::*;
use crate::frr::reload::FrrError;
use crate::kernel::fake::FakeKernel;
use crate::kernel::{KernelOp, LinkKind, Route, RouteKind, Rule, RuleVerdict};
use crate::model::{LINK_GROUP, Prefix, ROUTE_PROTO, parse_state, table_for_slot};

/// Records every applied configuration.
#[derive(Default)]
struct FakeFrr {
    running: String,
    applied: Vec<String>,
    /// The delta passed with each applied configuration (`None`: full reload).
    deltas: Vec<Option<String>>,
    fail: bool,
    /// The read-only `--test` fails (FRR untouched).
    fail_check: bool,
    /// Fail the apply after this many more successful ones.
    fail_after: Option<usize>,
    /// What zebra maps, when set by a test; else what the running configuration maps.
    mappings: Option<std::collections::BTreeMap<u32, String>>,
    /// zebra does not answer (`show vrf vni` fails).
    zebra_silent: bool,
    /// A route bgpd does not announce although configured (RD, prefix), until it was announced
    /// and then withdrawn once; `lost_for_good` keeps it lost.
    lost: Option<(String, Prefix)>,
    lost_for_good: bool,
    lost_was_configured: bool,
    /// `remove_config_file` was called (an uninstall).
    config_file_removed: bool,
}

/// The `vrf <name>` / ` vni <n>` pairs of a configuration: what zebra maps once it took it.
fn vni_mappings(config: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let mut vrf = None;
    for line in config.lines() {
        if let Some(name) = line.strip_prefix("vrf ") {
            vrf = Some(name.to_string());
        } else if let (Some(name), Some(vni)) = (&vrf, line.strip_prefix(" vni ")) {
            out.insert(vni.trim().parse().unwrap(), name.clone());
        } else if line == "exit-vrf" {
            vrf = None;
        }
    }
    out
}

/// Each BGP VRF of a rendered configuration: its RD and announced prefixes (none while its VNI
/// is unmapped).
fn bgp_vrfs(config: &str) -> BTreeMap<String, (String, BTreeSet<Prefix>)> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String, BTreeSet<Prefix>)> = None;
    for line in config.lines() {
        if let Some(vrf) = line
            .strip_prefix("router bgp ")
            .and_then(|l| l.split(" vrf ").nth(1))
        {
            current = Some((vrf.to_string(), String::new(), BTreeSet::new()));
        } else if line == "exit" {
            if let Some((vrf, rd, nets)) = current.take() {
                let mapped = config.contains(&format!("\nvrf {vrf}\n vni "));
                out.insert(vrf, (rd, if mapped { nets } else { BTreeSet::new() }));
            }
        } else if let Some((_, rd, nets)) = current.as_mut() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["rd", value] => *rd = value.to_string(),
                ["network", p] => {
                    let (addr, len) = p.split_once('/').unwrap();
                    nets.insert(Prefix {
                        addr: addr.parse().unwrap(),
                        len: len.parse().unwrap(),
                    });
                }
                _ => {}
            }
        }
    }
    out
}

impl FrrControl for FakeFrr {
    fn apply(
        &mut self,
        config: &str,
        delta: Option<&str>,
    ) -> impl Future<Output = Result<FrrOutcome, FrrError>> + Send {
        if let Some(n) = self.fail_after.as_mut() {
            if *n == 0 {
                self.fail = true;
                self.fail_after = None;
            } else {
                *n -= 1;
            }
        }
        let res = if self.fail_check {
            Err(FrrError::Check(Box::new(FrrError::Timeout {
                cmd: "frr-reload.py --test".into(),
                secs: 300,
            })))
        } else if self.fail {
            Err(FrrError::Reload {
                step: "reload",
                code: 1,
                output: "injected".into(),
            })
        } else if self.running == config {
            Ok(FrrOutcome::Unchanged)
        } else {
            self.running = config.to_string();
            let announced = bgp_vrfs(config).into_values().any(|(rd, nets)| {
                self.lost
                    .as_ref()
                    .is_some_and(|(r, p)| *r == rd && nets.contains(p))
            });
            if announced {
                self.lost_was_configured = true;
            } else if self.lost_was_configured && !self.lost_for_good {
                self.lost = None;
            }
            self.applied.push(config.to_string());
            self.deltas.push(delta.map(str::to_string));
            Ok(FrrOutcome::Applied {
                lines: 1,
                incremental: delta.is_some(),
            })
        };
        async move { res }
    }

    #[allow(clippy::manual_async_fn)] // the trait asks for a `Send` future
    fn zebra_knows_vxlan(&mut self, _ifname: &str, _vni: u32) -> impl Future<Output = bool> + Send {
        async { true }
    }

    #[allow(clippy::manual_async_fn)]
    fn evpn_prefixes_under(&mut self, rd: &RtRd) -> impl Future<Output = Option<BTreeSet<Prefix>>> + Send {
        let rd = rd.to_string();
        let mut held: BTreeSet<Prefix> = bgp_vrfs(&self.running)
            .into_values()
            .filter(|(r, _)| *r == rd)
            .flat_map(|(_, nets)| nets)
            .collect();
        if let Some((r, p)) = &self.lost
            && *r == rd
        {
            held.remove(p);
        }
        async move { Some(held) }
    }

    #[allow(clippy::manual_async_fn)]
    fn version(&mut self) -> impl Future<Output = Option<String>> + Send {
        async { Some("10.3".to_string()) }
    }

    #[allow(clippy::manual_async_fn)]
    fn l3vni_mappings(
        &mut self,
    ) -> impl Future<Output = Option<std::collections::BTreeMap<u32, String>>> + Send {
        let mappings = match &self.mappings {
            _ if self.zebra_silent => None,
            Some(set) => Some(set.clone()),
            None => Some(vni_mappings(&self.running)),
        };
        async move { mappings }
    }

    #[allow(clippy::manual_async_fn)]
    fn bgp_sessions(&mut self) -> impl Future<Output = Option<Vec<crate::frr::sessions::BgpSession>>> + Send {
        async { Some(Vec::new()) }
    }

    fn remove_config_file(&mut self) -> Result<(), FrrError> {
        self.config_file_removed = true;
        Ok(())
    }

    #[allow(clippy::manual_async_fn)]
    fn fingerprint(&mut self) -> impl Future<Output = Option<String>> + Send {
        async { Some("zebra=1,bgpd=2".into()) }
    }
}

fn spec(vrf: &str, vni: u32, endpoints: &[&str]) -> String {
    let eps: Vec<String> = endpoints.iter().map(|e| format!("{{ip: {e}}}")).collect();
    format!(
        r#"
underlay:
  asn: 65001
  routerId: 172.30.0.1
  vtepIp: 172.30.0.1
  neighbors: [{{address: 172.30.0.2, remoteAsn: 64999}}]
l3vnis:
  - vni: {vni}
    vrf: {vrf}
    importTargets: ["65000:{vni}"]
    exportTargets: ["65000:{vni}"]
    routeDistinguisher: "172.30.0.1:{vni}"
    endpoints: [{}]
"#,
        eps.join(", ")
    )
}

const EMPTY: &str = "underlay: {asn: 65001, routerId: 172.30.0.1, vtepIp: 172.30.0.1, neighbors: [{address: 172.30.0.2, remoteAsn: 64999}]}\n";

fn reconciler() -> Reconciler<FakeKernel, FakeFrr> {
    let mut k = FakeKernel::new();
    k.add_foreign_link("eth0", LinkKind::Other("veth".into()));
    k.add_pod("cali1234", "10.0.0.84");
    let mut r = Reconciler::new(k, FakeFrr::default(), NodeSettings::default());
    r.waits = Waits {
        route_gone: Duration::from_millis(50),
        zebra: Duration::from_millis(50),
        poll: Duration::from_millis(5),
    };
    r
}

fn position(trace: &[String], needle: &str) -> usize {
    trace
        .iter()
        .position(|t| t.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in trace:\n{}", trace.join("\n")))
}

#[tokio::test]
async fn seed_from_scratch_then_second_pass_writes_nothing() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    let rep = r.pass(&d).await;
    assert!(rep.ok(), "{:?}", rep.kernel_errors);
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    let t = table_for_slot(1001);
    for expected in [
        format!("ip link add vrf-blue group {LINK_GROUP} up type vrf table {t}"),
        "ip link add bvbr-1001 address".to_string(),
        "ip link add bvvx-1001 mtu 1450 master bvbr-1001".to_string(),
        "bridge link set dev bvvx-1001 learning off neigh_suppress on".to_string(),
        "sysctl -w net.ipv4.ip_forward=1".to_string(),
        format!("ip -4 rule add from all iif bvbr-1001 unreachable pref 1001 proto {ROUTE_PROTO}"),
        format!("ip -6 rule add from all iif bvbr-1001 unreachable pref 1001 proto {ROUTE_PROTO}"),
        format!("ip -4 route replace 10.0.0.84/32 dev cali1234 scope link table {t} proto {ROUTE_PROTO}"),
        format!(
            "ip -4 rule add from 10.0.0.84/32 lookup {t} suppress_prefixlength 0 pref 2000 proto {ROUTE_PROTO}"
        ),
        "sysctl -w net.ipv4.conf.cali1234.rp_filter=2".to_string(),
    ] {
        assert!(
            writes.iter().any(|w| w.starts_with(&expected)),
            "missing {expected:?} in\n{}",
            writes.join("\n")
        );
    }
    // FRR holds the VRF/VNI before any device exists
    assert!(position(&rep.trace, "frr: pre-kernel") < position(&rep.trace, "kernel: ip link add vrf-blue"));
    assert_eq!(
        r.frr.applied.len(),
        1,
        "pre-kernel and final views are equal: one apply"
    );
    assert!(r.frr.running.contains("vrf vrf-blue\n vni 1001\nexit-vrf"));
    // the VRF's bridge and VXLAN are wired as the kernel would report them
    let k = &r.dp.state;
    let vrf = k.link("vrf-blue").unwrap();
    let br = k.link("bvbr-1001").unwrap();
    assert_eq!(br.master, Some(vrf.index));
    assert_eq!(k.link("bvvx-1001").unwrap().master, Some(br.index));

    r.dp.reset_writes();
    let frr_before = r.frr.applied.len();
    let rep = r.pass(&d).await;
    assert!(rep.ok());
    assert_eq!(rep.kernel_writes, 0, "second pass wrote: {:?}", r.dp.writes);
    assert!(r.dp.writes.is_empty());
    assert_eq!(r.frr.applied.len(), frr_before, "second pass touched FRR");
}

#[tokio::test]
async fn an_uninstall_leaves_no_owned_object_and_no_frr_config_file() {
    let mut r = reconciler();
    let foreign = r.dp.add_foreign_link("tenant-x", LinkKind::Vrf { table: 100 });
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    assert!(r.pass(&d).await.ok());
    assert!(r.dp.state.link("vrf-blue").is_some());
    let rep = r.teardown(&d).await;
    assert!(rep.kernel_errors.is_empty() && rep.warnings.is_empty(), "{rep:?}");
    let k = &r.dp.state;
    assert!(k.links.iter().all(|l| l.group != LINK_GROUP), "owned links left");
    assert!(
        k.routes.iter().all(|r| r.protocol != ROUTE_PROTO),
        "owned routes left"
    );
    assert!(
        k.rules.iter().all(|r| r.protocol != ROUTE_PROTO),
        "owned rules left"
    );
    assert!(
        k.links.iter().any(|l| l.index == foreign),
        "a foreign VRF was removed"
    );
    // a router pod that starts again on this node boots without the agent's configuration
    assert!(r.frr.config_file_removed);
}

#[tokio::test]
async fn sweep_removes_only_owned_objects_devices_before_frr() {
    let mut r = reconciler();
    // foreign things, some of them in the agent's table range or with names like the agent's
    let foreign_vrf = r.dp.add_foreign_link("tenant-x", LinkKind::Vrf { table: 100 });
    r.dp.state.routes.push(Route {
        table: table_for_slot(1001),
        dst: Prefix {
            addr: "192.0.2.0".parse().unwrap(),
            len: 24,
        },
        kind: RouteKind::Unicast,
        protocol: 4,
        oif: Some(foreign_vrf),
        gateway: None,
        metric: 0,
    });
    r.dp.state.rules.push(Rule {
        v6: false,
        priority: 2000,
        src: Some(Prefix::host("10.9.9.9".parse().unwrap())),
        dst: None,
        iif: None,
        oif: None,
        verdict: RuleVerdict::Lookup,
        table: 100,
        protocol: 4,
        suppress_prefixlen: Some(0),
        has_other_selectors: false,
    });
    // a foreign rule on the agent's priority, for the bridge name the agent will use
    r.dp.state.rules.push(Rule {
        v6: false,
        priority: 1001,
        src: None,
        dst: None,
        iif: Some("bvbr-1001".into()),
        oif: None,
        verdict: RuleVerdict::Unreachable,
        table: 0,
        protocol: 0,
        suppress_prefixlen: None,
        has_other_selectors: false,
    });
    r.dp.add_foreign_link("bvvx-7", LinkKind::Other("dummy".into()));
    let foreign = r.dp.state.clone();

    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    assert!(r.pass(&d).await.ok());
    r.dp.reset_writes();
    let rep = r.pass(&parse_state(EMPTY).unwrap()).await;
    assert!(rep.ok(), "{:?}", rep.kernel_errors);
    // every owned object is gone, every foreign one is intact
    let k = &r.dp.state;
    assert!(k.links.iter().all(|l| !l.owned()), "{:?}", k.links);
    assert!(k.routes.iter().all(|x| !x.owned()));
    assert!(k.rules.iter().all(|x| !x.owned()));
    assert_eq!(k.links, foreign.links);
    assert_eq!(k.routes, foreign.routes);
    assert_eq!(k.rules, foreign.rules);
    // order: rules, routes, then VXLAN before bridge before VRF
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    let at = |s: &str| {
        writes
            .iter()
            .position(|w| w.starts_with(s))
            .unwrap_or_else(|| panic!("{s} not in {writes:?}"))
    };
    assert!(at("ip -4 rule del") < at("ip -4 route del"));
    assert!(at("ip -4 route del") < at("ip link del bvvx-1001"));
    assert!(at("ip link del bvvx-1001") < at("ip link del bvbr-1001"));
    assert!(at("ip link del bvbr-1001") < at("ip link del vrf-blue"));
    // FRR keeps the VRF until its devices are gone
    assert!(position(&rep.trace, "kernel: ip link del vrf-blue") < position(&rep.trace, "frr: final"));
    assert!(!r.frr.running.contains("vrf-blue"));
    assert!(r.frr.running.contains("router bgp 65001\n"));
}

#[tokio::test]
async fn vni_move_follows_the_safe_order() {
    let mut r = reconciler();
    assert!(
        r.pass(&parse_state(&spec("vrf-red", 1001, &["10.0.0.84"])).unwrap())
            .await
            .ok()
    );
    let before = r.dp.state.clone();
    r.dp.reset_writes();
    let rep = r
        .pass(&parse_state(&spec("vrf-red", 1003, &["10.0.0.84"])).unwrap())
        .await;
    assert!(rep.ok(), "{:?} {:?}", rep.kernel_errors, rep.warnings);
    assert_eq!(
        rep.moved.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        ["vrf-red"]
    );
    let trace = &rep.trace;
    let unmap = position(trace, "frr: unmap VNI of vrf-red");
    let gone = position(trace, "wait: EVPN routes gone");
    let rts = position(trace, "frr: new route targets, VNI unmapped");
    let del = position(trace, "kernel: ip link del bvvx-1001");
    let add = position(trace, "kernel: ip link add bvvx-1003");
    let zebra = position(trace, "wait: zebra knows bvvx-1003");
    let map = position(trace, "frr: map new VNI");
    assert!(
        unmap < gone && gone < rts && rts < del && del < add && add < zebra && zebra < map,
        "{}",
        trace.join("\n")
    );
    // the three FRR configurations: unmapped with the OLD route targets, unmapped with the new
    // ones, mapped to the new VNI
    let n = r.frr.applied.len();
    let (a, b, c) = (
        &r.frr.applied[n - 3],
        &r.frr.applied[n - 2],
        &r.frr.applied[n - 1],
    );
    assert!(
        !a.contains("\nvrf vrf-red\n") && a.contains("route-target import 65000:1001"),
        "{a}"
    );
    assert!(
        !b.contains("\nvrf vrf-red\n")
            && b.contains("route-target import 65000:1003")
            && !b.contains("65000:1001"),
        "{b}"
    );
    assert!(c.contains("vrf vrf-red\n vni 1003\nexit-vrf"), "{c}");
    // each step is one incremental change, in that order
    let deltas: Vec<&str> = r.frr.deltas[n - 3..]
        .iter()
        .map(|d| d.as_deref().unwrap_or("(full reload)"))
        .collect();
    assert_eq!(deltas[0], "vrf vrf-red\n no vni 1001\nexit-vrf\n", "{deltas:?}");
    assert!(
        deltas[1].contains("  no route-target import 65000:1001\n")
            && deltas[1].contains("  route-target export 65000:1003\n")
            && !deltas[1].contains("vni"),
        "{}",
        deltas[1]
    );
    assert_eq!(deltas[2], "vrf vrf-red\n vni 1003\nexit-vrf\n");
    // the VRF, its table and bridge (and so the router MAC) are kept; only the VXLAN is swapped
    let k = &r.dp.state;
    assert_eq!(k.link("vrf-red"), before.link("vrf-red"));
    assert_eq!(
        k.link("bvbr-1001").unwrap().mac,
        before.link("bvbr-1001").unwrap().mac
    );
    assert!(k.link("bvvx-1001").is_none());
    assert_eq!(
        k.link("bvvx-1003").unwrap().master,
        Some(k.link("bvbr-1001").unwrap().index)
    );
    // the pod's rule still points at the kept table
    assert!(
        k.rules
            .iter()
            .any(|x| x.owned() && x.table == table_for_slot(1001))
    );
    r.dp.reset_writes();
    let rep = r
        .pass(&parse_state(&spec("vrf-red", 1003, &["10.0.0.84"])).unwrap())
        .await;
    assert_eq!(rep.kernel_writes, 0);
    assert!(rep.moved.is_empty());
}

#[tokio::test]
async fn new_vrf_takes_an_overflow_slot_when_its_own_is_held_by_a_moved_vrf() {
    let mut r = reconciler();
    assert!(
        r.pass(&parse_state(&spec("vrf-red", 1001, &[])).unwrap())
            .await
            .ok()
    );
    assert!(
        r.pass(&parse_state(&spec("vrf-red", 1003, &[])).unwrap())
            .await
            .ok()
    );
    let two = format!(
        "{}{}",
        spec("vrf-red", 1003, &[]),
        spec("vrf-green", 1001, &[]).split("l3vnis:\n").nth(1).unwrap()
    );
    let rep = r.pass(&parse_state(&two).unwrap()).await;
    assert!(rep.ok(), "{:?}", rep.kernel_errors);
    let k = &r.dp.state;
    assert_eq!(
        k.link("vrf-red").unwrap().kind,
        LinkKind::Vrf {
            table: table_for_slot(1001)
        }
    );
    assert_eq!(
        k.link("vrf-green").unwrap().kind,
        LinkKind::Vrf {
            table: table_for_slot(16_777_216)
        }
    );
    assert!(k.link("bvbr-16777216").is_some());
    assert_eq!(
        k.link("bvvx-1001").unwrap().master,
        k.link("bvbr-16777216").map(|l| l.index)
    );
}

#[tokio::test]
async fn a_foreign_device_with_the_vrf_name_blocks_only_that_vrf() {
    let mut r = reconciler();
    r.dp.add_foreign_link("vrf-blue", LinkKind::Vrf { table: 10 });
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    let rep = r.pass(&d).await;
    let plan = &rep.resolved.as_ref().unwrap().vrfs[0];
    assert!(
        plan.conflict
            .as_deref()
            .unwrap()
            .contains("not managed by the agent")
    );
    assert!(r.dp.writes.iter().all(|w| !matches!(
        w,
        KernelOp::CreateBridge { .. } | KernelOp::CreateVxlan { .. } | KernelOp::AddRule(_)
    )));
    assert!(
        !r.frr.running.contains("vrf-blue"),
        "FRR must not be bound to a foreign VRF"
    );
    let st = crate::status::build_status(
        &d,
        &rep,
        crate::status::FrrObserved {
            applied: rep.frr.as_ref(),
            version: Some("10.3"),
            running: true,
            sessions: None,
        },
        None,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    assert_eq!(
        st.frr_version.as_deref(),
        Some("10.3"),
        "FRR's version reaches the status"
    );
    assert!(!st.l3vnis[0].ready);
    assert!(st.l3vnis[0].message.as_deref().unwrap().contains("not managed"));
}

#[tokio::test]
async fn endpoint_waits_for_the_cni_route_then_is_programmed() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.99"])).unwrap();
    let rep = r.pass(&d).await;
    assert!(rep.ok());
    let first_frr = rep.frr.clone();
    let st = crate::status::build_status(
        &d,
        &rep,
        crate::status::FrrObserved {
            applied: rep.frr.as_ref(),
            version: Some("10.3"),
            running: true,
            sessions: None,
        },
        None,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    assert!(!st.l3vnis[0].ready);
    assert!(
        st.l3vnis[0]
            .message
            .as_deref()
            .unwrap()
            .contains("no route to 10.0.0.99/32 in the main table")
    );
    assert!(
        !r.dp.state.rules.iter().any(|x| x.owned() && x.src.is_some()),
        "no pod rule while the endpoint is pending"
    );
    r.dp.add_pod("cali9999", "10.0.0.99");
    r.dp.reset_writes();
    let rep = r.pass(&d).await;
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    assert!(
        writes.iter().any(|w| w.contains("10.0.0.99/32 dev cali9999")),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.starts_with("ip -4 rule add from 10.0.0.99/32"))
    );
    assert!(rep.frr.is_none(), "FRR did not need an apply");
    let st = crate::status::build_status(
        &d,
        &rep,
        crate::status::FrrObserved {
            applied: first_frr.as_ref(),
            version: Some("10.3"),
            running: true,
            sessions: None,
        },
        None,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    assert!(st.l3vnis[0].ready, "{:?}", st.l3vnis[0].message);
    assert_eq!(st.programmed_vnis, 1);
    assert!(bgpvpn_crds::conditions::is_true(&st.conditions, "Ready"));

    // the same applied configuration, but bgpd died since: nothing is announced, so not Ready
    let down = crate::status::build_status(
        &d,
        &rep,
        crate::status::FrrObserved {
            applied: first_frr.as_ref(),
            version: Some("10.3"),
            running: false,
            sessions: None,
        },
        Some(&st),
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    assert!(!down.l3vnis[0].ready);
    assert!(down.l3vnis[0].message.as_deref().unwrap().contains("not running"));
    assert_eq!(down.programmed_vnis, 0);
    assert!(!bgpvpn_crds::conditions::is_true(&down.conditions, "Ready"));
    let applied = down.conditions.iter().find(|c| c.type_ == "FrrApplied").unwrap();
    assert_eq!(
        (applied.status.as_str(), applied.reason.as_str()),
        ("False", "DaemonsNotRunning")
    );
}

#[tokio::test]
async fn a_vxlan_deleted_by_hand_is_recreated_alone() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    assert!(r.pass(&d).await.ok());
    let idx = r.dp.state.link("bvvx-1001").unwrap().index;
    r.dp.state.links.retain(|l| l.index != idx);
    r.dp.reset_writes();
    let frr_before = r.frr.applied.len();
    let rep = r.pass(&d).await;
    assert!(rep.ok());
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(writes[0].starts_with("ip link add bvvx-1001"));
    assert!(writes[1].starts_with("bridge link set dev bvvx-1001"));
    assert_eq!(r.frr.applied.len(), frr_before);
}

#[tokio::test]
async fn a_bridge_moved_out_of_its_vrf_gets_its_master_back_and_nothing_else() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    assert!(r.pass(&d).await.ok());
    r.dp.state
        .links
        .iter_mut()
        .find(|l| l.name == "bvbr-1001")
        .unwrap()
        .master = None;
    r.dp.reset_writes();
    r.pass(&d).await;
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    assert_eq!(writes, ["ip link set bvbr-1001 master vrf-blue"]);
}

#[tokio::test]
async fn frr_unreachable_postpones_new_devices() {
    let mut r = reconciler();
    r.frr.fail = true;
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    let rep = r.pass(&d).await;
    assert!(!rep.ok());
    assert_eq!(rep.frr.as_ref().unwrap().result, FrrApply::Failed);
    assert!(
        r.dp.writes.is_empty(),
        "devices before their EVPN instance: {:?}",
        r.dp.writes
    );
    r.frr.fail = false;
    let rep = r.pass(&d).await;
    assert!(rep.ok());
    assert!(r.dp.state.link("bvvx-1001").is_some());
}

#[tokio::test]
async fn ipv6_endpoints_use_the_kernel_default_metric_and_stay_idempotent() {
    let mut r = reconciler();
    r.dp.add_pod("cali6", "fd00::84");
    let d = parse_state(&spec("vrf-blue", 1001, &["\"fd00::84\""])).unwrap();
    assert!(r.pass(&d).await.ok());
    let writes: Vec<String> = r.dp.writes.iter().map(|w| w.to_string()).collect();
    assert!(
        writes.iter().any(
            |w| w.starts_with("ip -6 route replace fd00::84/128 dev cali6") && w.ends_with("metric 1024")
        ),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w == "sysctl -w net.ipv6.conf.all.forwarding=1")
            || !r.dp.sysctls.contains_key("net/ipv6/conf/all/forwarding")
    );
    assert!(
        r.frr
            .running
            .contains("address-family ipv6 unicast\n  network fd00::84/128")
    );
    r.dp.reset_writes();
    assert_eq!(r.pass(&d).await.kernel_writes, 0);
}

#[tokio::test]
async fn a_failed_frr_step_stops_a_vni_move_before_the_vxlan_swap() {
    let mut r = reconciler();
    assert!(
        r.pass(&parse_state(&spec("vrf-red", 1001, &["10.0.0.84"])).unwrap())
            .await
            .ok()
    );
    r.dp.reset_writes();
    // the unmap succeeds, the route-target step fails
    r.frr.fail_after = Some(1);
    let moved = parse_state(&spec("vrf-red", 1003, &["10.0.0.84"])).unwrap();
    let rep = r.pass(&moved).await;
    assert!(!rep.ok());
    assert!(
        r.dp.writes.is_empty(),
        "VXLAN swapped out of order: {:?}",
        r.dp.writes
    );
    assert!(r.dp.state.link("bvvx-1001").is_some());
    // FRR back: the move completes in order
    r.frr.fail = false;
    let rep = r.pass(&moved).await;
    assert!(rep.ok(), "{:?}", rep.kernel_errors);
    let rts = position(&rep.trace, "frr: new route targets, VNI unmapped");
    let swap = position(&rep.trace, "kernel: ip link del bvvx-1001");
    let map = position(&rep.trace, "frr: map new VNI");
    assert!(rts < swap && swap < map, "{}", rep.trace.join("\n"));
}

#[tokio::test]
async fn frr_changes_are_incremental_once_the_running_configuration_is_known() {
    let mut r = reconciler();
    r.dp.add_pod("cali5678", "10.0.0.85");
    assert!(
        r.pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap())
            .await
            .ok()
    );
    assert_eq!(
        r.frr.deltas,
        [None],
        "the first apply after start is a full reload"
    );

    let rep = r
        .pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84", "10.0.0.85"])).unwrap())
        .await;
    assert!(rep.ok());
    assert_eq!(
        r.frr.deltas.last().unwrap().as_deref(),
        Some(
            "router bgp 65001 vrf vrf-blue\n address-family ipv4 unicast\n  network 10.0.0.85/32\n exit-address-family\nexit\n"
        )
    );
    assert!(rep.frr.unwrap().message.unwrap().contains("vtysh delta"));

    // unbind: devices first, then one delta that unmaps the VNI and removes the BGP instance
    let rep = r.pass(&parse_state(EMPTY).unwrap()).await;
    assert!(rep.ok());
    assert!(
        position(&rep.trace, "kernel: ip link del vrf-blue") < position(&rep.trace, "frr: final"),
        "{}",
        rep.trace.join("\n")
    );
    assert_eq!(
        r.frr.deltas.last().unwrap().as_deref(),
        Some("vrf vrf-blue\n no vni 1001\nexit-vrf\nno router bgp 65001 vrf vrf-blue\n")
    );

    // a resync (or an FRR restart) does not trust the memory: full reload
    r.frr_restarted();
    let n = r.frr.applied.len();
    assert!(
        r.pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap())
            .await
            .ok()
    );
    assert_eq!(r.frr.deltas[n..], [None]);
}

#[tokio::test]
async fn a_failed_apply_makes_the_next_one_a_full_reload() {
    let mut r = reconciler();
    assert!(
        r.pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap())
            .await
            .ok()
    );
    r.frr.fail = true;
    assert!(!r.pass(&parse_state(EMPTY).unwrap()).await.ok());
    r.frr.fail = false;
    assert!(r.pass(&parse_state(EMPTY).unwrap()).await.ok());
    assert_eq!(
        r.frr.deltas.last().unwrap(),
        &None,
        "after a failure the running configuration is unknown"
    );
}

#[tokio::test]
async fn a_failed_periodic_check_of_an_unchanged_view_is_a_warning_not_a_failure() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    assert!(r.pass(&d).await.ok());
    // the periodic re-check times out: FRR was not touched, the VNI stays ready
    r.frr_recheck_due();
    assert_eq!(r.frr_knowledge(), FrrKnowledge::RecheckDue);
    r.frr.fail_check = true;
    let rep = r.pass(&d).await;
    assert!(rep.ok(), "{:?}", rep.frr);
    assert!(
        rep.warnings
            .iter()
            .any(|w| w.contains("periodic FRR check failed")),
        "{:?}",
        rep.warnings
    );
    assert_eq!(
        r.frr_knowledge(),
        FrrKnowledge::Holds,
        "the next pass must not be a full reload again"
    );
    // the next change still goes out as a delta
    r.frr.fail_check = false;
    r.dp.add_pod("cali5678", "10.0.0.85");
    assert!(
        r.pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84", "10.0.0.85"])).unwrap())
            .await
            .ok()
    );
    assert!(r.frr.deltas.last().unwrap().is_some());

    // the same failure when the running configuration is unknown (after an FRR restart) fails
    r.frr_restarted();
    r.frr_recheck_due();
    assert_eq!(
        r.frr_knowledge(),
        FrrKnowledge::Unknown,
        "a full apply due stays one"
    );
    r.frr.fail_check = true;
    let rep = r
        .pass(&parse_state(&spec("vrf-blue", 1001, &["10.0.0.84", "10.0.0.85"])).unwrap())
        .await;
    assert!(!rep.ok());
    assert_eq!(r.frr_knowledge(), FrrKnowledge::Unknown);
}

#[tokio::test]
async fn a_vni_frr_does_not_map_is_reported_on_its_own_and_reapplied_in_full() {
    let mut r = reconciler();
    r.frr.mappings = Some([(1002, "adhoc".to_string())].into());
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    let rep = r.pass(&d).await;
    assert!(!rep.ok(), "an unmapped VNI is not a good pass");
    assert!(
        rep.not_served[&1001].contains("does not map VNI 1001 to vrf-blue"),
        "{:?}",
        rep.not_served
    );
    assert_eq!(
        r.frr_knowledge(),
        FrrKnowledge::Unknown,
        "the next pass re-applies FRR in full"
    );

    // a VNI another VRF holds is reported at once, naming it
    r.frr.mappings = Some([(1001, "adhoc".to_string())].into());
    let rep = r.pass(&d).await;
    assert!(
        rep.not_served[&1001].contains("FRR maps VNI 1001 to VRF adhoc"),
        "{:?}",
        rep.not_served
    );

    r.frr.mappings = Some([(1001, "vrf-blue".to_string())].into());
    let rep = r.pass(&d).await;
    assert!(rep.ok() && rep.not_served.is_empty(), "{:?}", rep.not_served);
    assert_eq!(r.frr_knowledge(), FrrKnowledge::Holds);
}

/// VRFs `(name, vni, rd)`, each announcing its own pod and the prefix 10.0.9.0/24 every VPN
/// uses (overlapping tenant address plans).
fn vrfs_with_rds(vrfs: &[(&str, u32, &str)]) -> NodeModel {
    let l3vnis: Vec<String> = vrfs
        .iter()
        .map(|(name, vni, rd)| {
            format!(
                r#"
  - vni: {vni}
    vrf: {name}
    importTargets: ["65000:{vni}"]
    exportTargets: ["65000:{vni}"]
    routeDistinguisher: "{rd}"
    endpoints: [{{ip: 10.0.0.{}}}]
    prefixes: [{{prefix: 10.0.9.0/24}}]"#,
                vni % 100
            )
        })
        .collect();
    parse_state(&format!("{EMPTY}l3vnis:{}\n", l3vnis.concat())).unwrap()
}

fn handover_reconciler() -> Reconciler<FakeKernel, FakeFrr> {
    let mut r = reconciler();
    for vni in [1, 3, 5] {
        r.dp.add_pod(&format!("cali{vni}"), &format!("10.0.0.{vni}"));
    }
    r
}

/// Fails when, between two consecutive applied configurations, a VRF withdraws under an RD
/// (silenced, its RD changed, or removed) while another VRF announces under it, or two VRFs
/// announce under one RD: bgpd holds one path per RD and prefix for every VRF, so either can
/// remove another VRF's route.
fn assert_rds_handed_over_silently(applied: &[String]) {
    for pair in applied.windows(2) {
        let (before, after) = (bgp_vrfs(&pair[0]), bgp_vrfs(&pair[1]));
        let context = || format!("\n{}\n---\n{}", pair[0], pair[1]);
        let announcers = |view: &BTreeMap<String, (String, BTreeSet<Prefix>)>, rd: &str, not: &str| {
            view.iter()
                .filter(|(o, (r, n))| o.as_str() != not && r == rd && !n.is_empty())
                .count()
        };
        for (vrf, (rd, nets)) in &before {
            let withdraws =
                !nets.is_empty() && after.get(vrf).is_none_or(|(r, n)| r != rd || !nets.is_subset(n));
            assert!(
                !withdraws || announcers(&before, rd, vrf) + announcers(&after, rd, vrf) == 0,
                "{vrf} withdraws under {rd} while another VRF announces under it{}",
                context()
            );
        }
        for (vrf, (rd, _)) in &after {
            assert!(
                announcers(&after, rd, "") <= 1,
                "two VRFs announce under {rd} ({vrf}){}",
                context()
            );
        }
    }
}

#[tokio::test]
async fn swapped_rds_are_released_then_taken_while_silent() {
    let mut r = handover_reconciler();
    let first = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:1"),
        ("vrf-1003", 1003, "172.30.0.1:2"),
    ]);
    assert!(r.pass(&first).await.ok());
    let swapped = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:2"),
        ("vrf-1003", 1003, "172.30.0.1:1"),
    ]);
    let from = r.frr.applied.len() - 1;
    let rep = r.pass(&swapped).await;
    assert!(
        rep.ok() && rep.warnings.is_empty(),
        "{:?} {:?}",
        rep.warnings,
        rep.not_served
    );
    assert_rds_handed_over_silently(&r.frr.applied[from..]);
    let withdraw = position(&rep.trace, "frr: withdraw vrf-1001,vrf-1003 under the old RDs");
    let gone = position(
        &rep.trace,
        "wait: routes under the old RDs 172.30.0.1:1,172.30.0.1:2 withdrawn: true",
    );
    let announce = position(&rep.trace, "frr: announce under the new RDs");
    let checked = position(&rep.trace, "wait: every route announced under the new RDs: true");
    assert!(
        withdraw < gone && gone < announce && announce < checked,
        "{}",
        rep.trace.join("\n")
    );
    let now = bgp_vrfs(&r.frr.running);
    assert_eq!(now["vrf-1001"].0, "172.30.0.1:2");
    assert_eq!(
        now["vrf-1001"].1.len(),
        2,
        "pod and shared prefix announced again"
    );
    assert_eq!(now["vrf-1003"].0, "172.30.0.1:1");

    // nothing changes: no handover, no extra FRR step
    let applied = r.frr.applied.len();
    let rep = r.pass(&swapped).await;
    assert!(
        rep.ok() && !rep.trace.iter().any(|t| t.contains("withdraw")),
        "{}",
        rep.trace.join("\n")
    );
    assert_eq!(r.frr.applied.len(), applied);
}

#[tokio::test]
async fn an_rd_is_taken_from_a_removed_vrf_or_with_a_vni_move_only_once_released() {
    let mut r = handover_reconciler();
    let first = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:1"),
        ("vrf-1003", 1003, "172.30.0.1:3"),
    ]);
    assert!(r.pass(&first).await.ok());

    // vrf-1001 goes; a new VRF takes its RD in the same pass
    let from = r.frr.applied.len() - 1;
    let next = vrfs_with_rds(&[
        ("vrf-1003", 1003, "172.30.0.1:3"),
        ("vrf-1005", 1005, "172.30.0.1:1"),
    ]);
    let rep = r.pass(&next).await;
    assert!(rep.ok() && rep.warnings.is_empty(), "{:?}", rep.warnings);
    assert_rds_handed_over_silently(&r.frr.applied[from..]);
    position(&rep.trace, "frr: withdraw vrf-1001 under the old RDs");
    assert!(!bgp_vrfs(&r.frr.running).contains_key("vrf-1001"));

    // vrf-1003 moves to VNI 1001 and takes vrf-1005's RD, which takes a fresh one
    let from = r.frr.applied.len() - 1;
    let mut moved = vrfs_with_rds(&[
        ("vrf-1003", 1001, "172.30.0.1:1"),
        ("vrf-1005", 1005, "172.30.0.1:5"),
    ]);
    moved.vrfs.sort_by(|a, b| a.name.cmp(&b.name));
    let rep = r.pass(&moved).await;
    assert!(rep.ok(), "{:?} {:?}", rep.kernel_errors, rep.warnings);
    assert_rds_handed_over_silently(&r.frr.applied[from..]);
    // the moving VRF gave its RD up by being unmapped; the withdrawal keeps it unmapped (it
    // starts from what FRR holds), and its routes are checked under the new RD once mapped
    let unmap = position(&rep.trace, "frr: unmap VNI of vrf-1003");
    let withdraw = position(&rep.trace, "frr: withdraw vrf-1005 under the old RDs");
    let gone = position(
        &rep.trace,
        "wait: routes under the old RDs 172.30.0.1:3,172.30.0.1:1 withdrawn: true",
    );
    let map = position(&rep.trace, "frr: map new VNI");
    let checked = position(&rep.trace, "wait: every route announced under the new RDs: true");
    assert!(
        unmap < withdraw && withdraw < gone && gone < map && map < checked,
        "{}",
        rep.trace.join("\n")
    );
    let withdrawn = &r.frr.applied[from + 2];
    assert!(!withdrawn.contains("\nvrf vrf-1003\n"), "{withdrawn}");
}

#[tokio::test]
async fn a_route_frr_loses_in_a_handover_is_announced_again() {
    let mut r = handover_reconciler();
    let first = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:1"),
        ("vrf-1003", 1003, "172.30.0.1:2"),
    ]);
    assert!(r.pass(&first).await.ok());
    let shared: Prefix = Prefix {
        addr: "10.0.9.0".parse().unwrap(),
        len: 24,
    };
    r.frr.lost = Some(("172.30.0.1:1".into(), shared));
    let swapped = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:2"),
        ("vrf-1003", 1003, "172.30.0.1:1"),
    ]);
    let rep = r.pass(&swapped).await;
    assert!(rep.ok(), "{:?}", rep.not_served);
    let short = position(
        &rep.trace,
        "wait: every route announced under the new RDs: not vrf-1003",
    );
    let again = position(&rep.trace, "frr: announce vrf-1003 again");
    let back = position(
        &rep.trace,
        "wait: every route announced again under the new RDs: true",
    );
    assert!(short < again && again < back, "{}", rep.trace.join("\n"));
}

#[tokio::test]
async fn a_route_frr_never_announces_keeps_its_vni_not_ready_and_is_announced_again_next_pass() {
    let mut r = handover_reconciler();
    let first = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:1"),
        ("vrf-1003", 1003, "172.30.0.2:2"),
    ]);
    assert!(r.pass(&first).await.ok());
    let shared = Prefix {
        addr: "10.0.9.0".parse().unwrap(),
        len: 24,
    };
    r.frr.lost = Some(("172.30.0.1:3".into(), shared));
    r.frr.lost_for_good = true;
    let changed = vrfs_with_rds(&[
        ("vrf-1001", 1001, "172.30.0.1:3"),
        ("vrf-1003", 1003, "172.30.0.2:2"),
    ]);
    let rep = r.pass(&changed).await;
    assert!(!rep.ok());
    assert!(
        rep.not_served[&1001].contains("does not announce all 2 routes of vrf-1001 under RD 172.30.0.1:3"),
        "{:?}",
        rep.not_served
    );
    assert!(
        !rep.not_served.contains_key(&1003),
        "the other VPN is served: {:?}",
        rep.not_served
    );

    // the next pass, with nothing changed, announces it again; FRR now does
    r.frr.lost_for_good = false;
    let rep = r.pass(&changed).await;
    position(&rep.trace, "frr: withdraw vrf-1001 under the old RDs");
    assert!(rep.ok(), "{:?} {}", rep.not_served, rep.trace.join("\n"));
    let rep = r.pass(&changed).await;
    assert!(
        rep.ok() && !rep.trace.iter().any(|t| t.contains("withdraw")),
        "{}",
        rep.trace.join("\n")
    );
}

#[tokio::test]
async fn a_vni_is_not_served_while_zebra_does_not_answer() {
    let mut r = reconciler();
    let d = parse_state(&spec("vrf-blue", 1001, &["10.0.0.84"])).unwrap();
    r.frr.zebra_silent = true;
    let rep = r.pass(&d).await;
    assert!(!rep.ok(), "an apply nobody can confirm is not done");
    let why = rep.not_served.get(&1001).expect("VNI 1001 reported");
    assert!(why.contains("cannot read zebra's VNI table"), "{why}");
    // zebra answers again: the next pass applies FRR in full and the VNI is served
    r.frr.zebra_silent = false;
    let rep = r.pass(&d).await;
    assert!(rep.ok(), "{:?}", rep.not_served);
    assert_eq!(
        r.frr.deltas.last(),
        Some(&None),
        "a full reload after the unknown state"
    );
}
