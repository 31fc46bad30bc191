//! Tenant and fault isolation on the node (issue 12), each scenario on a fresh two-node bed in
//! the node guest with FRR 10: what one tenant's values or a foreign program's objects are never
//! reach, break or delete another VPN. See `guest/mod.rs` for how a scenario runs.
//!
//!     sudo BGPVPN_REQUIRE_DATAPLANE=1 cargo test -p bgpvpn-agent --test isolation_guest -- --nocapture

mod guest;

use bgpvpn_crds::EvpnNodeStateSpec;
use guest::{Bed, BedSpec, VM_IP, l3vni, scenario};

/// The seed binding: the pod 10.0.0.84 in VNI 1001.
fn seed(bed: &Bed) -> EvpnNodeStateSpec {
    EvpnNodeStateSpec {
        underlay: bed.underlay(),
        l3vnis: vec![l3vni(
            "vrf-tenant",
            1001,
            "172.30.0.1:1001",
            &[("10.0.0.84", "demo/web")],
        )],
    }
}

fn pod_reaches_vm(bed: &Bed, pod: &str, vni: u32) -> bool {
    bed.fetch(pod, VM_IP)
        .is_some_and(|b| b.contains(&format!("VNI {vni}")))
}

/// Another program's routes, rules and links carrying the agent's markers (`proto 232`, device
/// group 1650946166) outside what the agent made are never touched: not on a pass, not on the
/// sweep after an unbind.
#[test]
fn foreign_objects_with_the_agents_markers_are_left_alone() {
    scenario(
        "foreign_objects_with_the_agents_markers_are_left_alone",
        BedSpec::default(),
        |bed| {
            let a = bed.a.clone();
            let foreign = [
                (
                    "route in main",
                    "ip route add 10.99.0.0/24 dev eth-u proto 232",
                    "ip route show 10.99.0.0/24 proto 232",
                ),
                (
                    "route in table 100",
                    "ip route add 10.98.0.0/24 dev eth-u proto 232 table 100",
                    "ip route show table 100 10.98.0.0/24 proto 232",
                ),
                (
                    "rule to table 100",
                    "ip rule add from 10.97.0.1 lookup 100 proto 232 pref 3000",
                    "ip rule show pref 3000",
                ),
                (
                    "rule to main",
                    "ip rule add from 10.96.0.1 lookup main proto 232 pref 2000",
                    "ip rule show pref 2000 from 10.96.0.1",
                ),
                (
                    "dummy link in the agent's group",
                    "ip link add foreign0 group 1650946166 type dummy",
                    "ip link show foreign0",
                ),
            ];
            for (_, add, _) in &foreign {
                bed.run(&a, add);
            }
            let all_there = |bed: &Bed| {
                foreign
                    .iter()
                    .filter(|(_, _, show)| !bed.run(&a, show).trim().is_empty())
                    .count()
                    == foreign.len()
            };
            bed.check("the foreign objects exist", all_there(bed));

            let generation = bed.write_state(seed(bed));
            bed.start_agent(&[]);
            let pod = bed.pods[0].0.clone();
            bed.wait("pod -> VM of VNI 1001", 60, || pod_reaches_vm(bed, &pod, 1001));
            bed.wait("status Ready", 30, || bed.status_is(generation, true));
            for (what, _, show) in &foreign {
                bed.check(
                    &format!("after the bind: foreign {what} still there"),
                    !bed.run(&a, show).trim().is_empty(),
                );
            }

            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![],
            });
            bed.wait("unbound: the agent's own devices are swept", 30, || {
                bed.run(&a, "ip -br link show type vrf").trim().is_empty() && bed.status_is(generation, true)
            });
            bed.wait("unbound: the pod's rule is gone", 10, || {
                !bed.run(&a, "ip rule show").contains("from 10.0.0.84")
            });
            for (what, _, show) in &foreign {
                bed.check(
                    &format!("after the sweep: foreign {what} still there"),
                    !bed.run(&a, show).trim().is_empty(),
                );
            }
        },
    );
}

/// A change one tenant makes to its L3 VNI.
type EditVni = fn(&mut bgpvpn_crds::L3Vni);

fn vni_message(bed: &Bed, generation: i64, vni: u32) -> String {
    bed.vni_status(generation, vni)
        .and_then(|s| s.message)
        .unwrap_or_default()
}

/// What FRR or the kernel would refuse, or what would route or announce what is not the
/// tenant's, is refused before rendering, for that VNI only: the VNI keeps running its last
/// accepted version, every other VNI (a new one too) is applied, and the status names the item.
#[test]
fn one_tenants_bad_values_never_hold_up_another_vpn() {
    scenario(
        "one_tenants_bad_values_never_hold_up_another_vpn",
        BedSpec {
            vnis: "1001 1003",
            pods: "10.0.0.84 10.0.0.85",
        },
        |bed| {
            let a = bed.a.clone();
            let (pod1, pod2) = (bed.pods[0].0.clone(), bed.pods[1].0.clone());
            let good_1001 = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            let good_1003 = l3vni("vrf-1003", 1003, "172.30.0.1:1003", &[("10.0.0.85", "t3/web")]);
            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![good_1001.clone()],
            });
            bed.start_agent(&[]);
            bed.wait("tenant 1: pod -> VM of VNI 1001", 60, || {
                pod_reaches_vm(bed, &pod1, 1001)
            });

            // a dummy device holds another address of the node (its management address, say)
            bed.run(&a, "ip link add mgmt0 type dummy");
            bed.run(&a, "ip addr add 10.0.5.1/24 dev mgmt0");
            bed.run(&a, "ip link set mgmt0 up");

            // tenant 1 makes a bad update while tenant 3 is bound for the first time
            let variants: Vec<(&str, EditVni, &str)> = vec![
                (
                    "a link-local prefix (bgpd refuses it)",
                    |v| {
                        v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                            prefix: "fe80::/64".into(),
                            next_hop: None,
                        }]
                    },
                    "link-local",
                ),
                (
                    "a default route",
                    |v| {
                        v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                            prefix: "0.0.0.0/0".into(),
                            next_hop: None,
                        }]
                    },
                    "default route",
                ),
                (
                    "a next hop of the other family",
                    |v| {
                        v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                            prefix: "10.9.0.0/24".into(),
                            next_hop: Some("fd00::1".into()),
                        }]
                    },
                    "address family",
                ),
                (
                    "the node's VTEP as a pod",
                    |v| {
                        v.endpoints.push(bgpvpn_crds::Endpoint {
                            ip: "172.30.0.1".into(),
                            ..Default::default()
                        })
                    },
                    "underlay address",
                ),
                (
                    "a loopback pod",
                    |v| {
                        v.endpoints.push(bgpvpn_crds::Endpoint {
                            ip: "127.0.0.1".into(),
                            ..Default::default()
                        })
                    },
                    "loopback",
                ),
                (
                    "a multicast pod",
                    |v| {
                        v.endpoints.push(bgpvpn_crds::Endpoint {
                            ip: "224.0.0.5".into(),
                            ..Default::default()
                        })
                    },
                    "multicast",
                ),
                (
                    "route target 0:0",
                    |v| v.import_targets = vec!["0:0".into()],
                    "reserved",
                ),
            ];
            let mut first = true;
            for (what, edit, want) in variants {
                let mut bad_1001 = good_1001.clone();
                edit(&mut bad_1001);
                let generation = bed.write_state(EvpnNodeStateSpec {
                    underlay: bed.underlay(),
                    l3vnis: vec![bad_1001, good_1003.clone()],
                });
                bed.log(&format!("tenant 1 writes {what}"));
                if first {
                    bed.wait(
                        "tenant 3's new VPN is programmed meanwhile: pod -> VM of VNI 1003",
                        60,
                        || pod_reaches_vm(bed, &pod2, 1003),
                    );
                    first = false;
                }
                bed.wait(
                    &format!("{what}: VNI 1001 held back, saying {want:?}"),
                    30,
                    || {
                        let m = vni_message(bed, generation, 1001);
                        m.contains("held back") && m.contains(want)
                    },
                );
                bed.wait(&format!("{what}: VNI 1003 Ready"), 30, || {
                    bed.vni_status(generation, 1003).is_some_and(|s| s.ready)
                });
                bed.check(
                    &format!("{what}: tenant 1 still runs its last accepted version"),
                    pod_reaches_vm(bed, &pod1, 1001),
                );
                bed.check(
                    &format!("{what}: tenant 3 still works"),
                    pod_reaches_vm(bed, &pod2, 1003),
                );
                let frr = std::fs::read_to_string(bed.work.join("frr.conf")).unwrap_or_default();
                let in_frr: Vec<&str> = [
                    "fe80::",
                    "0.0.0.0/0",
                    "10.9.0.0/24",
                    "172.30.0.1/32",
                    "127.0.0.1",
                    "224.0.0.5",
                    " 0:0",
                ]
                .into_iter()
                .filter(|n| frr.contains(n))
                .collect();
                bed.check(
                    &format!("{what}: none of it in frr.conf (found {in_frr:?})"),
                    in_frr.is_empty(),
                );
                let tables = bed.run(&a, "ip route show table all proto 232");
                let routed: Vec<&str> = ["172.30.0.1 ", "127.0.0.1", "224.0.0.5", "10.9.0.0/24", "default"]
                    .into_iter()
                    .filter(|n| tables.contains(n))
                    .collect();
                bed.check(
                    &format!("{what}: none of it routed by the agent (found {routed:?})"),
                    routed.is_empty(),
                );
            }

            // the agent's own check: an address of this node that the state cannot know
            let mut own = good_1003.clone();
            own.endpoints.push(bgpvpn_crds::Endpoint {
                ip: "10.0.5.1".into(),
                ..Default::default()
            });
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![good_1001.clone(), own],
            });
            bed.wait(
                "an endpoint on the node's own address (mgmt0) is refused by name",
                30,
                || {
                    vni_message(bed, generation, 1003)
                        .contains("10.0.5.1 is an address of this node (on mgmt0)")
                },
            );
            bed.check("no VRF route or rule for the node's own address", {
                !bed.run(&a, "ip route show table all proto 232")
                    .contains("10.0.5.1")
                    && !bed.run(&a, "ip rule show").contains("10.0.5.1")
            });
            bed.check(
                "both tenants still work",
                pod_reaches_vm(bed, &pod1, 1001) && pod_reaches_vm(bed, &pod2, 1003),
            );

            // an underlay that cannot be is refused whole; what runs stays
            let mut underlay = bed.underlay();
            underlay.vtep_ip = "239.1.1.1".into();
            bed.write_state(EvpnNodeStateSpec {
                underlay,
                l3vnis: vec![good_1001.clone(), good_1003.clone()],
            });
            bed.wait(
                "a multicast VTEP: the whole state is refused (InvalidSpec)",
                30,
                || {
                    bed.status().is_some_and(|s| {
                        s.conditions.iter().any(|c| {
                            c.type_ == "Ready" && c.reason == "InvalidSpec" && c.message.contains("multicast")
                        })
                    })
                },
            );
            bed.check(
                "both tenants still work",
                pod_reaches_vm(bed, &pod1, 1001) && pod_reaches_vm(bed, &pod2, 1003),
            );
        },
    );
}

/// An endpoint is bound to the pod that holds it: with a stale state (operator down), a new pod
/// that takes over the address on another interface joins nothing, across an agent restart
/// too, until the state names the new holder.
#[test]
fn a_reused_address_joins_no_vpn_until_its_new_holder_is_named() {
    scenario(
        "a_reused_address_joins_no_vpn_until_its_new_holder_is_named",
        BedSpec {
            vnis: "1001",
            pods: "10.0.0.84",
        },
        |bed| {
            let a = bed.a.clone();
            let vm = bed.vm(1001);
            let with_holder = |bed: &Bed, holder: &str| {
                let mut v = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
                v.endpoints[0].holder = Some(holder.into());
                EvpnNodeStateSpec {
                    underlay: bed.underlay(),
                    l3vnis: vec![v],
                }
            };
            bed.write_state(with_holder(bed, "uid-old"));
            bed.start_agent(&[]);
            bed.wait("VM -> the pod holding 10.0.0.84", 60, || {
                bed.fetch(&vm, "10.0.0.84")
                    .is_some_and(|b| b.contains("the pod 10.0.0.84"))
            });

            bed.log("the pod goes away; another tenant's new pod gets 10.0.0.84 on a new interface (the state is stale)");
            let old = bed.pods[0].0.clone();
            bed.run(&a, "ip link del cali-p1");
            std::process::Command::new("ip")
                .args(["netns", "del", &old])
                .status()
                .unwrap();
            let new = bed.netns("newpod");
            bed.run(
                &a,
                &format!("ip link add cali-new type veth peer name eth0 netns {new}"),
            );
            bed.run(&a, "ip link set cali-new up");
            bed.run(&new, "ip addr add 10.0.0.84/32 dev eth0");
            bed.run(&new, "ip link set eth0 up");
            bed.run(&new, "ip route add 169.254.1.1 dev eth0 scope link");
            bed.run(&new, "ip route add default via 169.254.1.1 dev eth0");
            // static neighbours both ways, as the CNI does it
            let host_mac = bed
                .run(&a, "cat /sys/class/net/cali-new/address")
                .trim()
                .to_string();
            let pod_mac = bed
                .run(&new, "cat /sys/class/net/eth0/address")
                .trim()
                .to_string();
            bed.run(
                &new,
                &format!("ip neigh replace 169.254.1.1 lladdr {host_mac} dev eth0 nud permanent"),
            );
            bed.run(
                &a,
                &format!("ip neigh replace 10.0.0.84 lladdr {pod_mac} dev cali-new nud permanent"),
            );
            bed.run(&a, "ip route add 10.0.0.84/32 dev cali-new");
            bed.serve(&new, "10.0.0.84", "hello from the new pod");

            let moved = |bed: &Bed| {
                bed.status().is_some_and(|s| {
                    s.l3vnis.iter().any(|v| {
                        v.message
                            .as_deref()
                            .is_some_and(|m| m.contains("another pod holds it"))
                    })
                })
            };
            bed.wait(
                "the agent refuses the new interface for the old holder, by name",
                30,
                || moved(bed),
            );
            let not_bound = |bed: &Bed| {
                !bed.run(&a, "ip route show table 1000001001")
                    .contains("10.0.0.84")
                    && !bed.run(&a, "ip rule show").contains("from 10.0.0.84")
            };
            bed.check("no VRF route or rule for the new pod", not_bound(bed));
            bed.wait(
                "node B has no route to 10.0.0.84 in vrf-1001 any more",
                30,
                || !bed.b_has_route(1001, "10.0.0.84"),
            );
            bed.check(
                "the VM does not reach the new pod",
                bed.fetch(&vm, "10.0.0.84").is_none(),
            );

            bed.log("agent restart: the binding is remembered");
            bed.stop_agent();
            let mark = bed.agent_log_len();
            bed.start_agent(&[]);
            bed.wait("the restarted agent made a pass", 30, || {
                bed.agent_log_since(mark).contains("pass done")
            });
            bed.check("still no VRF route or rule for the new pod", not_bound(bed));
            bed.check("still refused by name", moved(bed));

            bed.log("the operator names the new holder");
            bed.write_state(with_holder(bed, "uid-new"));
            bed.wait("VM -> the new pod", 60, || {
                bed.fetch(&vm, "10.0.0.84")
                    .is_some_and(|b| b.contains("the new pod"))
            });
        },
    );
}

/// A prefix the admin allowed is announced and forwarded both ways: the VRF routes it the way
/// the node's main table does (the CNI's route to a pod subnet), and the subnet's replies go
/// through the VRF.
#[test]
fn an_allowed_prefix_reaches_the_peer() {
    scenario(
        "an_allowed_prefix_reaches_the_peer",
        BedSpec {
            vnis: "1001",
            pods: "10.0.0.84",
        },
        |bed| {
            let a = bed.a.clone();
            let subnet = bed.netns("subnet");
            bed.run(
                &a,
                &format!("ip link add cni-sub type veth peer name eth0 netns {subnet}"),
            );
            bed.run(&a, "ip addr add 10.0.9.1/24 dev cni-sub");
            bed.run(&a, "ip link set cni-sub up");
            bed.run(&subnet, "ip addr add 10.0.9.5/24 dev eth0");
            bed.run(&subnet, "ip link set eth0 up");
            bed.run(&subnet, "ip route add default via 10.0.9.1");
            bed.serve(&subnet, "10.0.9.5", "hello from the pod subnet");
            let mut v = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                prefix: "10.0.9.0/24".into(),
                next_hop: None,
            }];
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![v],
            });
            bed.start_agent(&[]);
            bed.wait("node B learned 10.0.9.0/24 in vrf-1001", 60, || {
                bed.b_has_route(1001, "10.0.9.0/24")
            });
            let vm = bed.vm(1001);
            bed.wait("VM -> a host of the announced subnet, and back", 30, || {
                bed.fetch(&vm, "10.0.9.5")
                    .is_some_and(|b| b.contains("pod subnet"))
            });
            bed.wait("status Ready", 30, || bed.status_is(generation, true));

            // without a main-table route there is nothing to forward to: not announced, and said so
            let mut v = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                prefix: "10.0.8.0/24".into(),
                next_hop: None,
            }];
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![v],
            });
            bed.wait("a prefix without a route: status says why", 30, || {
                vni_message(bed, generation, 1001).contains("no route to 10.0.8.0/24")
            });
            bed.wait("node B withdrew 10.0.9.0/24", 30, || {
                !bed.b_has_route(1001, "10.0.9.0/24")
            });
            bed.check(
                "node B never learned 10.0.8.0/24",
                !bed.b_has_route(1001, "10.0.8.0/24"),
            );
        },
    );
}

/// `/healthz` means "the loop is stuck", not "the pass is long": while a pass waits on an FRR
/// that does not answer (bgpd stopped), within the FRR deadline, the agent stays live; once
/// FRR answers again the pass completes.
#[test]
fn liveness_holds_through_a_long_frr_apply() {
    scenario(
        "liveness_holds_through_a_long_frr_apply",
        BedSpec {
            vnis: "1001 1003",
            pods: "10.0.0.84 10.0.0.85",
        },
        |bed| {
            let (pod1, pod2) = (bed.pods[0].0.clone(), bed.pods[1].0.clone());
            let first = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![first.clone()],
            });
            // a grace far below the FRR deadline: a stale heartbeat shows within seconds
            bed.start_agent(&["--liveness-grace-secs", "3", "--frr-timeout-secs", "25"]);
            bed.wait("pod -> VM of VNI 1001", 60, || pod_reaches_vm(bed, &pod1, 1001));
            // the pod may answer before the pass ends; a pass still talking to bgpd when it
            // stops would hold the next state back for the whole FRR deadline
            bed.wait("the first pass is done", 60, || {
                bed.agent_log_since(0).contains("pass done")
            });
            bed.wait("/healthz 200 while idle", 10, || bed.healthz() == 200);

            let bgpd = std::fs::read_to_string(format!("/run/frr/{}/bgpd.pid", bed.a))
                .unwrap()
                .trim()
                .to_string();
            let signal = |sig: &str| {
                assert!(
                    std::process::Command::new("kill")
                        .args([sig, &bgpd])
                        .status()
                        .unwrap()
                        .success()
                )
            };
            signal("-STOP");
            let mark = bed.agent_log_len();
            let second = l3vni("vrf-1003", 1003, "172.30.0.1:1003", &[("10.0.0.85", "t3/web")]);
            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![first, second],
            });
            bed.wait("the agent took the new state", 10, || {
                bed.agent_log_since(mark).contains("new desired state")
            });
            let started = std::time::Instant::now();
            let mut codes = Vec::new();
            while started.elapsed() < std::time::Duration::from_secs(12) {
                codes.push(bed.healthz());
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            // only what follows the new state counts: under load the first pass may log its
            // end after the pod already answered
            let still_in_pass = bed
                .agent_log_since(mark)
                .split_once("new desired state")
                .is_some_and(|(_, after)| !after.contains("pass done"));
            signal("-CONT");
            bed.check(
                "the pass waited on FRR the whole time (4x the grace)",
                still_in_pass,
            );
            bed.check(
                &format!("/healthz stayed 200 during the long pass: {codes:?}"),
                codes.iter().all(|c| *c == 200),
            );
            bed.wait("FRR answers again: tenant 3 is programmed", 90, || {
                pod_reaches_vm(bed, &pod2, 1003)
            });
            bed.check("/healthz 200", bed.healthz() == 200);
        },
    );
}

/// Two VRFs swap their route distinguishers in one update (what renumbering auto RDs did), and
/// a VRF takes the RD of one removed in the same update: no VPN goes dark or loses a route, the
/// peer keeps each VPN's routes apart, and Ready is said only once node A announces every route
/// of every VPN under its new RD (bgpd shares one path per RD and prefix between VRFs: done in
/// one step, the swap lost one VPN's route for the prefix both announce, in about one swap in
/// five).
#[test]
fn swapped_route_distinguishers_leave_both_vpns_forwarding() {
    scenario(
        "swapped_route_distinguishers_leave_both_vpns_forwarding",
        BedSpec {
            vnis: "1001 1003",
            pods: "10.0.0.84 10.0.0.85",
        },
        |bed| {
            // both VPNs also announce the same prefix (overlapping tenant address plans), each via
            // its own next hop: after the swap, each RD's route for it belongs to the other VPN
            let a = bed.a.clone();
            for (dev, net) in [("gw1", "10.0.5.1/24"), ("gw3", "10.0.6.1/24")] {
                bed.run(&a, &format!("ip link add {dev} type dummy"));
                bed.run(&a, &format!("ip addr add {net} dev {dev}"));
                bed.run(&a, &format!("ip link set {dev} up"));
            }
            let vpn = |vrf: &str, vni: u32, rd: &str, pod: &str, next_hop: &str| {
                let mut v = l3vni(vrf, vni, rd, &[(pod, "t/web")]);
                v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                    prefix: "10.0.9.0/24".into(),
                    next_hop: Some(next_hop.into()),
                }];
                v
            };
            // `None`: VPN 1001 removed from the node
            let with_rds = |bed: &Bed, rd1: Option<&str>, rd3: &str| EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: rd1
                    .map(|rd| vpn("vrf-1001", 1001, rd, "10.0.0.84", "10.0.5.2"))
                    .into_iter()
                    .chain([vpn("vrf-1003", 1003, rd3, "10.0.0.85", "10.0.6.2")])
                    .collect(),
            };
            // node A's own routes under `rd`, as bgpd holds them
            let under = |bed: &Bed, rd: &str| {
                bed.vty(
                    &a,
                    &[&format!("show bgp l2vpn evpn route rd {rd} type prefix json")],
                )
            };
            let (vm1, vm3) = (bed.vm(1001), bed.vm(1003));
            let reaches =
                |bed: &Bed, vm: &str, pod: &str| bed.fetch(vm, pod).is_some_and(|b| b.contains(pod));
            bed.write_state(with_rds(bed, Some("172.30.0.1:1"), "172.30.0.1:2"));
            bed.start_agent(&[]);
            bed.wait("both VMs reach their pods", 60, || {
                reaches(bed, &vm1, "10.0.0.84") && reaches(bed, &vm3, "10.0.0.85")
            });
            bed.wait("node B has the shared prefix in both VRFs", 30, || {
                bed.b_has_route(1001, "10.0.9.0/24") && bed.b_has_route(1003, "10.0.9.0/24")
            });
            // back and forth (the defect showed in some of the swaps only), then VPN 1003 takes
            // the RD of VPN 1001 as that one leaves, and VPN 1001 comes back under a fresh RD
            let rounds = [
                (Some("172.30.0.1:2"), "172.30.0.1:1"),
                (Some("172.30.0.1:1"), "172.30.0.1:2"),
                (Some("172.30.0.1:2"), "172.30.0.1:1"),
                (Some("172.30.0.1:1"), "172.30.0.1:2"),
                (None, "172.30.0.1:1"),
                (Some("172.30.0.1:3"), "172.30.0.1:1"),
                (Some("172.30.0.1:1"), "172.30.0.1:3"),
            ];
            for (round, (rd1, rd3)) in rounds.into_iter().enumerate() {
                let log_from = bed.agent_log_len();
                let generation = bed.write_state(with_rds(bed, rd1, rd3));
                bed.wait(&format!("round {round}: status Ready"), 60, || {
                    bed.status_is(generation, true)
                });
                // no wait here: Ready means announced
                let own = [(rd1, "10.0.0.84"), (Some(rd3), "10.0.0.85")];
                for (rd, pod) in own.into_iter().filter_map(|(rd, pod)| Some((rd?, pod))) {
                    let held = under(bed, rd);
                    bed.check(
                        &format!("round {round}: node A announces {pod} and 10.0.9.0/24 under {rd}"),
                        held.contains(&format!("[5]:[0]:[32]:[{pod}]"))
                            && held.contains("[5]:[0]:[24]:[10.0.9.0]"),
                    );
                }
                let vpn1 = rd1.is_some();
                bed.wait(
                    &format!("round {round}: node B has each VPN's routes, and only its own"),
                    30,
                    || {
                        bed.b_has_route(1001, "10.0.9.0/24") == vpn1
                            && bed.b_has_route(1001, "10.0.0.84") == vpn1
                            && bed.b_has_route(1003, "10.0.9.0/24")
                            && bed.b_has_route(1003, "10.0.0.85")
                            && !bed.b_has_route(1001, "10.0.0.85")
                            && !bed.b_has_route(1003, "10.0.0.84")
                    },
                );
                bed.wait(
                    &format!("round {round}: each VM reaches its pod, and only its own"),
                    30,
                    || {
                        reaches(bed, &vm1, "10.0.0.84") == vpn1
                            && reaches(bed, &vm3, "10.0.0.85")
                            && !reaches(bed, &vm1, "10.0.0.85")
                    },
                );
                let installed = bed.run(&bed.b, "ip route show table all");
                let shared = installed.lines().filter(|l| l.starts_with("10.0.9.0/24")).count();
                bed.check(
                    &format!("round {round}: node B installed the shared prefix once per VPN ({shared})"),
                    shared == if vpn1 { 2 } else { 1 },
                );
                // the order itself kept every route: the agent's repair was not needed
                bed.check(
                    &format!("round {round}: no route had to be announced again"),
                    !bed.agent_log_since(log_from).contains("to announce again"),
                );
            }
        },
    );
}

/// A VNI the node's own FRR configuration (the preamble) already maps to a VRF of its own: FRR 10
/// refuses the second mapping only in its log (frr-reload.py exits 0) and one of the two is
/// silently unmapped. Only that VNI is held back, saying why, the node's own VRF keeps its VNI,
/// every other VNI, a new one too, is programmed and forwards, and the VNI comes back once the
/// node's configuration gives it up.
#[test]
fn a_vni_the_nodes_own_frr_config_uses_holds_back_only_itself() {
    scenario(
        "a_vni_the_nodes_own_frr_config_uses_holds_back_only_itself",
        BedSpec {
            vnis: "1001 1003",
            pods: "10.0.0.84 10.0.0.85 10.0.0.86",
        },
        |bed| {
            let a = bed.a.clone();
            let (pod1, pod2, pod3) = (
                bed.pods[0].0.clone(),
                bed.pods[1].0.clone(),
                bed.pods[2].0.clone(),
            );
            let tenant_1001 = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            let tenant_1003 = l3vni("vrf-1003", 1003, "172.30.0.1:1003", &[("10.0.0.85", "t3/web")]);
            // the node's local FRR configuration maps VNI 1003 to a VRF of its own
            let preamble = bed.work.join(format!("{a}/preamble.conf"));
            let original = std::fs::read_to_string(&preamble).unwrap();
            std::fs::write(
                &preamble,
                format!("{original}vrf legacy\n vni 1003\nexit-vrf\n!\n"),
            )
            .unwrap();

            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1003.clone()],
            });
            bed.start_agent(&[]);
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1001.clone(), tenant_1003.clone()],
            });
            bed.wait("another tenant's new VNI 1001 forwards: pod -> VM", 90, || {
                pod_reaches_vm(bed, &pod1, 1001)
            });
            bed.wait("VNI 1003 reported held back, and why", 60, || {
                bed.vni_status(generation, 1003).is_some_and(|s| {
                    !s.ready
                        && s.message
                            .as_deref()
                            .is_some_and(|m| m.contains("VNI 1003 is already mapped to VRF legacy"))
                })
            });
            bed.check(
                "VNI 1001 reported ready",
                bed.vni_status(generation, 1001).is_some_and(|s| s.ready),
            );
            bed.check(
                "the pod of VNI 1003 reaches no VM",
                bed.fetch(&pod2, VM_IP).is_none(),
            );
            bed.serve(&pod1, "10.0.0.84", "pod 1001");
            bed.check(
                "VM 1001 -> pod",
                bed.fetch(&bed.vm(1001), "10.0.0.84")
                    .is_some_and(|b| b.contains("pod 1001")),
            );
            let running = bed.vty(&a, &["show running-config"]);
            bed.check(
                "FRR maps VNI 1003 to the node's own VRF legacy",
                running.contains("vrf legacy\n vni 1003\n"),
            );
            bed.check("and holds no VRF vrf-1003", !running.contains("vrf vrf-1003"));
            bed.check(
                "no kernel device for the held-back VNI",
                !bed.succeeds(&a, "ip link show vrf-1003"),
            );

            // a later change to another VNI is applied without retrying the refused one in vain
            let mut tenant_1001_more = tenant_1001.clone();
            tenant_1001_more.endpoints.push(bgpvpn_crds::Endpoint {
                ip: "10.0.0.86".into(),
                pod: Some("t1/web2".into()),
                ..Default::default()
            });
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1001_more, tenant_1003.clone()],
            });
            bed.wait("VNI 1001 takes a second endpoint", 60, || {
                pod_reaches_vm(bed, &pod3, 1001)
            });
            // this generation's status is written after the pass that made the pod reachable
            bed.wait("VNI 1003 still held back", 30, || {
                bed.vni_status(generation, 1003).is_some_and(|s| !s.ready)
            });

            // the node's configuration is fixed and the agent restarted: VNI 1003 is programmed
            bed.stop_agent();
            std::fs::write(&preamble, &original).unwrap();
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1001.clone(), tenant_1003.clone()],
            });
            bed.start_agent(&[]);
            bed.wait("VNI 1003 forwards once FRR takes it", 90, || {
                pod_reaches_vm(bed, &pod2, 1003)
            });
            bed.wait("both ready", 60, || {
                bed.vni_status(generation, 1001).is_some_and(|s| s.ready)
                    && bed.vni_status(generation, 1003).is_some_and(|s| s.ready)
            });
        },
    );
}

/// A mapping made by hand in vtysh holds the VNI a tenant then binds: FRR refuses the agent's
/// mapping (FRR 10: "% Configuration failed", vtysh exits 0); the agent sees it and re-applies
/// FRR in full at once, which undoes the hand-made mapping, and checks that zebra maps every
/// VNI to its VRF before it reports them ready; every other VNI keeps forwarding.
#[test]
fn a_vni_frr_leaves_unmapped_is_repaired_at_once() {
    scenario(
        "a_vni_frr_leaves_unmapped_is_repaired_at_once",
        BedSpec {
            vnis: "1001 1003",
            pods: "10.0.0.84 10.0.0.85",
        },
        |bed| {
            let a = bed.a.clone();
            let (pod1, pod2) = (bed.pods[0].0.clone(), bed.pods[1].0.clone());
            let tenant_1001 = l3vni("vrf-1001", 1001, "172.30.0.1:1001", &[("10.0.0.84", "t1/web")]);
            let tenant_1003 = l3vni("vrf-1003", 1003, "172.30.0.1:1003", &[("10.0.0.85", "t3/web")]);
            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1001.clone()],
            });
            bed.start_agent(&[]);
            bed.wait("VNI 1001: pod -> VM", 60, || pod_reaches_vm(bed, &pod1, 1001));

            // an admin maps VNI 1003 by hand, then a tenant binds VNI 1003
            bed.vty(&a, &["configure terminal", "vrf adhoc", "vni 1003", "exit-vrf"]);
            let by_hand = bed.vty(&a, &["show vrf vni"]);
            bed.log(&format!("show vrf vni after the hand-made mapping:\n{by_hand}"));
            bed.check(
                "the hand-made mapping holds VNI 1003",
                by_hand
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq(["adhoc", "1003"])),
            );
            let log_from = bed.agent_log_len();
            bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![tenant_1001.clone(), tenant_1003.clone()],
            });
            bed.wait(
                "VNI 1003 forwards well before FRR's periodic full check",
                60,
                || pod_reaches_vm(bed, &pod2, 1003),
            );
            let log = bed.agent_log_since(log_from);
            bed.check(
                "the agent logged FRR's refusal",
                log.contains("vni 1003 is already mapped"),
            );
            bed.check(
                "no VNI left unmapped after the pass",
                !log.contains("L3 VNI not mapped in FRR"),
            );
            bed.check("VNI 1001 kept forwarding", pod_reaches_vm(bed, &pod1, 1001));
            let mapped = bed.vty(&a, &["show vrf vni"]);
            bed.log(&format!("show vrf vni at the end:\n{mapped}"));
            bed.check(
                "zebra maps VNI 1003 to vrf-1003",
                mapped
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq(["vrf-1003", "1003"])),
            );
        },
    );
}
