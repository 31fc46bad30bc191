//! The dataplane tier: the seed demo on a real VRF kernel (the node guest: user-mode-linux 7.x or
//! QEMU, on a Debian trixie root) with real FRR 10, driven through the real `bgpvpn-agent` binary
//! and its `--state-file`, on the two-node bed of `guest/mod.rs`: bind the pod to VNI 1001,
//! unbind, bind to VNI 1003, move the VRF between VNIs both ways, repair what is deleted by hand,
//! survive an FRR restart and an agent restart under traffic.
//!
//!     sudo BGPVPN_REQUIRE_DATAPLANE=1 cargo test -p bgpvpn-agent --test dataplane_guest -- --nocapture
//!
//! `GUEST_KERNEL=qemu` runs it on the QEMU fallback.

mod guest;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bgpvpn_crds::{EvpnNodeStateSpec, Neighbor, Underlay};
use guest::{AGENT_HTTP, Bed, BedSpec, VM_IP, l3vni, path_str, scenario};

const POD_IP: &str = "10.0.0.84";
const EXT_IP: &str = "192.168.50.2";
/// The device group of everything the agent owns.
const OWNED_GROUP: &str = "1650946166";

fn bind(bed: &mut Bed, vni: u32) -> i64 {
    let underlay = bed.underlay();
    bind_over(bed, underlay, vni)
}

/// The pod bound to `vni` (VRF vrf-tenant) over `underlay`.
fn bind_over(bed: &mut Bed, underlay: Underlay, vni: u32) -> i64 {
    bed.write_state(EvpnNodeStateSpec {
        underlay,
        l3vnis: vec![l3vni(
            "vrf-tenant",
            vni,
            &format!("172.30.0.1:{vni}"),
            &[(POD_IP, "demo/web")],
        )],
    })
}

fn unbind(bed: &mut Bed) -> i64 {
    bed.write_state(EvpnNodeStateSpec {
        underlay: bed.underlay(),
        l3vnis: Vec::new(),
    })
}

fn pod(bed: &Bed) -> String {
    bed.pods[0].0.clone()
}

fn pod_reaches_vm(bed: &Bed, vni: u32) -> bool {
    bed.fetch(&pod(bed), VM_IP)
        .is_some_and(|b| b.contains(&format!("VNI {vni}")))
}

fn no_vm(bed: &Bed) -> bool {
    bed.fetch(&pod(bed), VM_IP).is_none()
}

fn vm_reaches_pod(bed: &Bed, vni: u32) -> bool {
    bed.fetch(&bed.vm(vni), POD_IP).is_some_and(|b| b.contains("pod"))
}

fn ext_ok(bed: &Bed) -> bool {
    bed.fetch(&pod(bed), EXT_IP).is_some_and(|b| b.contains("ext"))
}

/// Icmp InEchos of a namespace (/proc/net/snmp).
fn in_echos(bed: &Bed, ns: &str) -> i64 {
    let snmp = bed.run(ns, "cat /proc/net/snmp");
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp:"));
    let (names, values) = (icmp.next().unwrap_or_default(), icmp.next().unwrap_or_default());
    let at = names
        .split_whitespace()
        .position(|n| n == "InEchos")
        .expect("InEchos");
    values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .expect("an InEchos count")
}

/// Echo requests that reach (the pod, ext) from VM 1001, 3 pings each. Real packets: node B
/// sends VM 1001's packets for 192.168.50.0/24 (ext, in node A's MAIN table only) into the
/// VXLAN towards node A, where they arrive in the VRF and must find no way into main. B does it
/// with a policy rule and a table its FRR ignores (a route in B's VRF would be redistributed to
/// A, which would send the packets back: a loop). The pod is the control.
fn vpn_to_ext(bed: &Bed, ext: &str) -> (i64, i64) {
    let b = &bed.b;
    bed.run(
        b,
        "ip route replace 192.168.50.0/24 via 172.30.0.1 dev br-1001 onlink table 999",
    );
    bed.run(
        b,
        "ip rule add pref 500 iif h-vm1001 to 192.168.50.0/24 lookup 999",
    );
    let (pod0, ext0) = (in_echos(bed, &pod(bed)), in_echos(bed, ext));
    let vm = bed.vm(1001);
    for target in [EXT_IP, POD_IP] {
        let _ = bed.exec(&vm, &["ping", "-c", "3", "-i", "0.2", "-W", "1", target]);
    }
    let seen = (in_echos(bed, &pod(bed)) - pod0, in_echos(bed, ext) - ext0);
    bed.run(
        b,
        "ip rule del pref 500 iif h-vm1001 to 192.168.50.0/24 lookup 999",
    );
    bed.run(b, "ip route del 192.168.50.0/24 table 999");
    seen
}

/// `bgpvpn-agent plan` against the kernel finds nothing to change.
fn plan_is_empty(bed: &Bed) -> bool {
    let (agent, state) = (path_str(bed.agent_bin()), path_str(&bed.state_path()));
    let out = bed.exec(&bed.a, &[&agent, "plan", "--state-file", &state, "--no-frr"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let empty = text.lines().any(|l| l.starts_with("# kernel: 0 change"));
    if !empty {
        println!("{}", text.lines().take(30).collect::<Vec<_>>().join("\n"));
    }
    empty
}

/// `frr-reload.py --test` finds no difference between node A's running FRR and the agent's file.
fn frr_is_idempotent(bed: &Bed) -> bool {
    let w = path_str(&bed.work);
    let out = Command::new("/usr/lib/frr/frr-reload.py")
        .args(["--test", "--stdout", "--confdir", &w, "--bindir", "/usr/bin"])
        .args(["--rundir", &format!("{w}/{}/run", bed.a), "--pathspace", &bed.a])
        .arg(format!("{w}/frr.conf"))
        .output()
        .expect("frr-reload.py");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // `ip[v6] forwarding` stands for the node's sysctls, which FRR shows as configuration: the
    // agent hands frr-reload their state with each full apply and never puts them in its file
    let differs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("Lines To"))
        .any(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("Lines To")
                && !l.starts_with("====")
                && l != "ip forwarding"
                && l != "ipv6 forwarding"
        });
    let same = out.status.success() && !differs;
    if !same {
        println!(
            "{}",
            text.lines()
                .skip_while(|l| !l.contains("Lines To"))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    same
}

fn metric(bed: &Bed, name: &str) -> Option<f64> {
    let text = bed.run(&bed.a, &format!("curl -s http://{AGENT_HTTP}/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn owned_links(bed: &Bed) -> usize {
    bed.run(&bed.a, &format!("ip -br link show group {OWNED_GROUP}"))
        .lines()
        .count()
}

fn nothing_owned(bed: &Bed) -> bool {
    owned_links(bed) == 0 && !bed.run(&bed.a, "ip rule show").contains("proto 232")
}

/// Whether node A's routing table `table` (which may not exist yet) routes the pod.
fn a_table_has_pod(bed: &Bed, table: u32) -> bool {
    let out = bed.exec(&bed.a, &["ip", "route", "show", "table", &table.to_string()]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("10.0.0.84 "))
}

fn ms_since(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// bgpvpn-agent processes in this kernel (the guest runs only this bed).
fn agents_running() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "bgpvpn-agent")
        .count()
}

/// Another host on a main-table route of node A: the pod's ordinary, non-VPN traffic.
fn add_ext(bed: &Bed) -> String {
    let ext = bed.netns("ext");
    let a = &bed.a;
    bed.run(
        a,
        &format!("ip link add h-ext type veth peer name eth0 netns {ext}"),
    );
    bed.run(a, "ip addr add 192.168.50.1/24 dev h-ext");
    bed.run(a, "ip link set h-ext up");
    bed.run(&ext, &format!("ip addr add {EXT_IP}/24 dev eth0"));
    bed.run(&ext, "ip link set eth0 up");
    bed.run(&ext, "ip route add default via 192.168.50.1");
    bed.serve(&ext, EXT_IP, "hello from ext (main table)");
    ext
}

#[test]
fn seed_demo_in_the_node_guest_with_frr() {
    scenario(
        "seed_demo_in_the_node_guest_with_frr",
        BedSpec::default(),
        |bed| {
            let ext = add_ext(bed);
            bed.wait("ext serves", 10, || ext_ok(bed));

            let generation = unbind(bed);
            bed.start_agent(&["--bgp-poll-secs", "1"]);
            bed.wait("agent up: status Ready for the underlay-only state", 60, || {
                bed.status_is(generation, true)
            });
            bed.wait("eBGP EVPN session to node B established", 60, || {
                bed.vty(&bed.a, &["show bgp neighbors 172.30.0.2"])
                    .contains("BGP state = Established")
            });
            underlay_session_state(bed);
            bed.check("no state: the pod cannot reach 20.0.0.100", no_vm(bed));
            bed.check("no state: the pod reaches ext on a main-table route", ext_ok(bed));

            bed.log("bind the pod to VNI 1001 (vrf-tenant)");
            let t = Instant::now();
            let generation = bind(bed, 1001);
            bed.wait("the pod's route in node A's VRF table", 60, || {
                a_table_has_pod(bed, 1000001001)
            });
            let kernel_ms = ms_since(t);
            bed.wait("node B learned 10.0.0.84 in vrf-1001", 60, || {
                bed.b_has_route(1001, POD_IP)
            });
            bed.log(&format!(
            "MEASURED: state file written -> route visible at node B: {} ms (pod route in node A's VRF table after {kernel_ms} ms)",
            ms_since(t)
        ));
            bed.wait("pod -> VM of VNI 1001", 30, || pod_reaches_vm(bed, 1001));
            bed.wait("VM of VNI 1001 -> pod:8080", 10, || vm_reaches_pod(bed, 1001));
            bed.check("the pod's non-VPN traffic still uses main (ext)", ext_ok(bed));

            let (to_pod, to_ext) = vpn_to_ext(bed, &ext);
            bed.log(&format!(
                "with the guard: echo requests received by the pod +{to_pod} (control), by ext +{to_ext}"
            ));
            bed.check(
            "VRF isolation: VPN packets to a main-table address (ext) stop at node A, VPN -> pod delivered",
            to_pod >= 3 && to_ext == 0,
        );
            // the same packets leak into main without the guard rule (the agent paused meanwhile)
            let agent = bed.agent_pid().to_string();
            bed.run(&bed.a, &format!("kill -STOP {agent}"));
            bed.run(&bed.a, "ip rule del pref 1001 iif bvbr-1001 unreachable");
            let (to_pod, to_ext) = vpn_to_ext(bed, &ext);
            bed.run(&bed.a, &format!("kill -CONT {agent}"));
            bed.log(&format!("without the guard: pod +{to_pod}, ext +{to_ext}"));
            bed.check(
                "control: with the guard rule removed (agent paused) the same packets leak into main",
                to_ext >= 3,
            );
            bed.wait("the resumed agent restores the guard rule", 10, || {
                bed.run(&bed.a, "ip -4 rule show")
                    .lines()
                    .any(|l| l.starts_with("1001:") && l.contains("iif bvbr-1001 unreachable"))
            });
            bed.wait(&format!("status Ready for generation {generation}"), 30, || {
                bed.status_is(generation, true)
            });
            bed.check(
                "ownership markers: VRF, bridge, VXLAN in the agent's device group",
                owned_links(bed) == 3,
            );
            bed.check(
                "pod rule: from 10.0.0.84 lookup 1000001001 suppress_prefixlength 0 proto 232",
                bed.run(&bed.a, "ip rule show")
                    .contains("from 10.0.0.84 lookup 1000001001 suppress_prefixlength 0 proto 232"),
            );
            let port = bed.run(&bed.a, "bridge -d link show dev bvvx-1001");
            bed.check(
                "VXLAN port: learning off, neigh_suppress on",
                port.contains("learning off") && port.contains("neigh_suppress on"),
            );
            bed.check("idempotent kernel: plan shows 0 changes", plan_is_empty(bed));
            bed.check(
                "idempotent FRR: frr-reload --test shows no difference",
                frr_is_idempotent(bed),
            );
            bed.check(
                "the bind reached FRR as one vtysh delta, not a frr-reload.py run",
                metric(bed, "bgpvpn_agent_frr_incremental_applies_total").is_some_and(|n| n >= 1.0),
            );

            bed.log("unbind (no L3 VNI)");
            let t = Instant::now();
            let generation = unbind(bed);
            bed.wait("route to 10.0.0.84 withdrawn at node B", 60, || {
                !bed.b_has_route(1001, POD_IP)
            });
            bed.log(&format!("withdrawn after {} ms", ms_since(t)));
            bed.wait("unbound: no connectivity to 20.0.0.100", 10, || no_vm(bed));
            bed.wait("unbound: every owned device and rule swept", 20, || {
                nothing_owned(bed)
            });
            bed.check("unbound: ext still reachable", ext_ok(bed));
            bed.wait(
                &format!("unbound: status Ready for generation {generation}"),
                30,
                || bed.status_is(generation, true),
            );
            bed.check(
                "unbound: the incremental removal left FRR where a full reload would",
                frr_is_idempotent(bed),
            );

            bed.log("bind the pod to VNI 1003");
            let t = Instant::now();
            bind(bed, 1003);
            bed.wait("node B learned 10.0.0.84 in vrf-1003", 60, || {
                bed.b_has_route(1003, POD_IP)
            });
            bed.log(&format!("learned after {} ms", ms_since(t)));
            bed.wait("pod -> VM of VNI 1003", 30, || pod_reaches_vm(bed, 1003));
            bed.check(
                "VM 1001 is not reachable any more (no route in vrf-1001, VM 1001 cannot reach the pod)",
                !bed.b_has_route(1001, POD_IP) && bed.fetch(&bed.vm(1001), POD_IP).is_none(),
            );
            bed.wait("VM of VNI 1003 -> pod:8080", 10, || vm_reaches_pod(bed, 1003));

            bed.log("move vrf-tenant from VNI 1003 to 1001 (same VRF name)");
            let t = Instant::now();
            bind(bed, 1001);
            bed.wait("after move 1003->1001: VM 1001 answers", 60, || {
                pod_reaches_vm(bed, 1001)
            });
            bed.log(&format!("move took {} ms", ms_since(t)));
            bed.wait(
                "after move 1003->1001: node B vrf-1003 has no route to the pod",
                30,
                || !bed.b_has_route(1003, POD_IP),
            );
            bed.log("move vrf-tenant from VNI 1001 to 1003");
            let t = Instant::now();
            let generation = bind(bed, 1003);
            bed.wait("after move 1001->1003: VM 1003 answers", 60, || {
                pod_reaches_vm(bed, 1003)
            });
            bed.log(&format!("move took {} ms", ms_since(t)));
            let mac_b = bed
                .run(&bed.b, "cat /sys/class/net/br-1003/address")
                .trim()
                .to_lowercase();
            bed.wait(
                &format!("router MAC of node B's VNI 1003 installed on node A ({mac_b})"),
                20,
                || {
                    bed.run(&bed.a, "ip neigh show")
                        .lines()
                        .any(|l| l.contains("172.30.0.2") && l.to_lowercase().contains(&mac_b))
                },
            );
            bed.check(
                "the VRF kept its table across both moves (1000001003)",
                bed.run(&bed.a, "ip -d link show vrf-tenant")
                    .contains("table 1000001003"),
            );
            bed.wait("status Ready after the moves", 30, || {
                bed.status_is(generation, true)
            });
            bed.check(
                "idempotent after the moves: plan shows 0 changes",
                plan_is_empty(bed),
            );
            bed.check("idempotent FRR after the moves", frr_is_idempotent(bed));

            bed.log("delete the VXLAN device by hand");
            let t = Instant::now();
            bed.run(&bed.a, "ip link del bvvx-1003");
            bed.wait("bvvx-1003 recreated", 10, || {
                bed.succeeds(&bed.a, "ip link show bvvx-1003")
            });
            bed.log(&format!("recreated after {} ms", ms_since(t)));
            bed.wait("traffic back after the VXLAN repair", 60, || {
                pod_reaches_vm(bed, 1003)
            });
            bed.log("delete the pod's rule and VRF route by hand");
            let t = Instant::now();
            bed.run(&bed.a, "ip rule del from 10.0.0.84 lookup 1000001003 pref 2000");
            bed.run(&bed.a, "ip route del 10.0.0.84/32 table 1000001003");
            bed.wait("rule and route repaired", 10, || {
                bed.run(&bed.a, "ip rule show")
                    .contains("from 10.0.0.84 lookup 1000001003")
                    && a_table_has_pod(bed, 1000001003)
            });
            bed.log(&format!("repaired after {} ms", ms_since(t)));
            bed.wait("traffic back after the rule/route repair", 60, || {
                pod_reaches_vm(bed, 1003)
            });

            frr_restart(bed);
            agent_restart_under_traffic(bed);
        },
    );
}

/// `neighbor 172.30.0.1 shutdown` on node B, or its removal.
fn node_b_shuts_the_session(bed: &Bed, shut: bool) {
    let line = format!("{}neighbor 172.30.0.1 shutdown", if shut { "" } else { "no " });
    bed.vty(&bed.b, &["conf t", "router bgp 64999", &line]);
}

/// The underlay session in the status and the metrics: established, then shut down by node B
/// (a down session must show, with the peer's state), then back.
fn underlay_session_state(bed: &Bed) {
    let sessions = |bed: &Bed| {
        bed.status().map(|s| {
            let c = s.conditions.iter().find(|c| c.type_ == "BgpEstablished").cloned();
            (s.sessions_established, s.bgp_sessions, c)
        })
    };
    let is = |bed: &Bed, summary: &str, state: &str, condition: &str| {
        sessions(bed).is_some_and(|(sum, list, c)| {
            sum.as_deref() == Some(summary)
                && list.len() == 1
                && list[0].peer == "172.30.0.2"
                && list[0].remote_asn == Some(64999)
                && list[0].state == state
                && c.is_some_and(|c| c.status == condition)
        })
    };
    let established_metric =
        |bed: &Bed| metric(bed, r#"bgpvpn_agent_bgp_session_established{peer="172.30.0.2"}"#);
    bed.wait("status: session 1/1, 172.30.0.2 Established", 30, || {
        is(bed, "1/1", "Established", "True")
    });
    bed.check(
        "status: the session's time of establishment",
        sessions(bed).is_some_and(|(_, l, _)| l[0].established_since.is_some()),
    );
    bed.check(
        "metric: session established",
        established_metric(bed) == Some(1.0),
    );
    node_b_shuts_the_session(bed, true);
    bed.wait(
        "node B shut the session: status 0/1, BgpEstablished False",
        30,
        || {
            sessions(bed).is_some_and(|(sum, list, c)| {
                sum.as_deref() == Some("0/1")
                    && list.len() == 1
                    && list[0].state != "Established"
                    && list[0].established_since.is_none()
                    && c.is_some_and(|c| {
                        c.status == "False" && c.reason == "SessionsDown" && c.message.contains("172.30.0.2")
                    })
            })
        },
    );
    bed.log(&format!("the down session in the status: {:?}", sessions(bed)));
    bed.check(
        "metric: session not established",
        established_metric(bed) == Some(0.0),
    );
    node_b_shuts_the_session(bed, false);
    bed.wait("session back: status 1/1", 60, || {
        is(bed, "1/1", "Established", "True")
    });
}

/// Node A's FRR killed and started again with only its base configuration: the agent puts its
/// configuration back.
fn frr_restart(bed: &Bed) {
    bed.log("kill node A's FRR daemons and start them again with the base config only");
    let pid_of = |d: &str| {
        std::fs::read_to_string(format!("/run/frr/{}/{d}.pid", bed.a))
            .unwrap()
            .trim()
            .to_string()
    };
    let pids: Vec<String> = ["bgpd", "zebra", "mgmtd"].iter().map(|d| pid_of(d)).collect();
    for p in &pids {
        bed.run(&bed.a, &format!("kill {p}"));
    }
    bed.wait("node A's FRR daemons gone", 10, || {
        pids.iter().all(|p| !PathBuf::from(format!("/proc/{p}")).exists())
    });
    let said_ready = |s: &bgpvpn_crds::EvpnNodeStateStatus| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    };
    // what was applied is not announced by dead daemons: the status must not say Ready
    bed.wait("the status says FRR is not running", 20, || {
        bed.status().is_some_and(|s| {
            !said_ready(&s)
                && s.l3vnis.iter().all(|v| !v.ready)
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "FrrApplied" && c.reason == "DaemonsNotRunning")
        })
    });
    let t = Instant::now();
    // the bed's own FRR start (hack/lib/remote-cloud.sh), as bed.sh started it
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/lib/remote-cloud.sh");
    let started = Command::new("bash")
        .args(["-c", r#"set -e; . "$0"; WORK=$1; frr_start "$2" "$2""#])
        .arg(&lib)
        .arg(&bed.work)
        .arg(&bed.a)
        .status()
        .unwrap();
    assert!(started.success(), "frr_start");
    bed.wait("agent re-applied its FRR config after the restart", 60, || {
        bed.vty(&bed.a, &["show running-config"])
            .contains("router bgp 65001 vrf vrf-tenant")
    });
    bed.log(&format!("re-applied after {} ms", ms_since(t)));
    bed.wait("Ready again after the FRR restart", 60, || {
        bed.status().is_some_and(|s| said_ready(&s))
    });
    bed.wait("route back at node B after the FRR restart", 90, || {
        bed.b_has_route(1003, POD_IP)
    });
    bed.log(&format!("route back after {} ms", ms_since(t)));
    bed.wait("traffic back after the FRR restart", 60, || {
        pod_reaches_vm(bed, 1003)
    });
}

/// The agent stopped and started again during a 10 ms ping: no packet lost, and the new agent
/// adopts what is there without writing.
/// `ping -D -i 0.01 -c <count>` from the pod to the VM, its output in the bed's work dir.
struct PingFlow {
    child: std::process::Child,
    log: PathBuf,
}

/// What a finished ping flow saw.
struct PingResult {
    sent: u32,
    received: u32,
    summary: String,
    /// The longest time between two answers (`-D` stamps each).
    longest_silence_ms: f64,
}

impl PingFlow {
    fn start(bed: &Bed, name: &str, count: u32) -> Self {
        let log = bed.work.join(format!("{name}.log"));
        let count = count.to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &pod(bed),
                "ping",
                "-D",
                "-i",
                "0.01",
                "-c",
                &count,
                "-W",
                "1",
                VM_IP,
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        bed.record_pid(name, child.id());
        Self { child, log }
    }

    fn answers(text: &str) -> impl Iterator<Item = &str> {
        text.lines().filter(|l| l.contains("bytes from"))
    }

    fn replies(&self) -> usize {
        Self::answers(&std::fs::read_to_string(&self.log).unwrap_or_default()).count()
    }

    /// Waits for the ping to end (at most 60 s).
    fn finish(mut self) -> PingResult {
        let ended = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(ended.elapsed() < Duration::from_secs(60), "the ping did not end");
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&self.log).unwrap();
        let summary = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or("")
            .to_string();
        let count = |word: &str| {
            summary
                .split(',')
                .find(|part| part.contains(word))
                .and_then(|part| part.split_whitespace().next()?.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let stamps: Vec<f64> = Self::answers(&text)
            .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
            .collect();
        PingResult {
            sent: count("transmitted"),
            received: count("received"),
            longest_silence_ms: stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max) * 1000.0,
            summary,
        }
    }
}

fn agent_restart_under_traffic(bed: &mut Bed) {
    bed.log("restart the agent during ping -i 0.01");
    let ping = PingFlow::start(bed, "ping", 700);
    bed.wait("the ping runs", 10, || ping.replies() >= 50);
    bed.stop_agent();
    bed.check("no agent process left before the restart", agents_running() == 0);
    let mark = bed.agent_log_len();
    bed.start_agent(&[]);
    let flow = ping.finish();
    bed.log(&format!("ping: {}", flow.summary));
    bed.check(
        &format!(
            "no ping lost across the agent restart ({}/{})",
            flow.received, flow.sent
        ),
        flow.sent > 0 && flow.sent == flow.received,
    );
    bed.wait("the restarted agent finished its first pass", 30, || {
        bed.agent_log_since(mark).contains("pass done")
    });
    let since = bed.agent_log_since(mark);
    let first_pass = since.lines().find(|l| l.contains("pass done")).unwrap_or("");
    bed.log(&format!("first pass of the restarted agent: {first_pass:.200}"));
    bed.check(
        "restarted agent adopted the state: 0 kernel writes, FRR unchanged",
        first_pass.contains("kernel_writes=0")
            && !since
                .lines()
                .any(|l| l.contains("FRR apply") && l.contains("result=\"Applied\"")),
    );
    bed.check("exactly one agent process runs", agents_running() == 1);
    bed.check(
        "metrics endpoint serves the FRR counters",
        bed.run(&bed.a, &format!("curl -s http://{AGENT_HTTP}/metrics"))
            .contains("bgpvpn_agent_frr_applies_total"),
    );
    bed.check("healthz", bed.healthz() == 200);
}

const POD_IP6: &str = "2001:db8:84::84";
const VM_IP6: &str = "2001:db8:20::100";
/// A prefix routed behind the pod (its next hop), and an address of it the pod holds.
const ROUTED6: &str = "2001:db8:99::/64";
const ROUTED6_ADDR: &str = "2001:db8:99::1";

/// `ip` (and `cmd`) of a /128 behind a veth whose other end is `host_if` in `node`, routed
/// by `ip -6 route` there: the IPv6 half of rc_wire (a static neighbour for the gateway, as
/// Calico does it).
fn wire6(bed: &Bed, node: &str, host_if: &str, workload: &str, ip: &str, vrf: Option<&str>) {
    let mac = |ns: &str, dev: &str| {
        bed.run(ns, &format!("cat /sys/class/net/{dev}/address"))
            .trim()
            .to_string()
    };
    let (host_mac, workload_mac) = (mac(node, host_if), mac(workload, "eth0"));
    bed.run(workload, &format!("ip -6 addr add {ip}/128 dev eth0 nodad"));
    bed.run(
        workload,
        &format!("ip -6 neigh replace fe80::1 lladdr {host_mac} dev eth0 nud permanent"),
    );
    bed.run(workload, "ip -6 route add default via fe80::1 dev eth0");
    let table = vrf.map(|v| format!(" vrf {v}")).unwrap_or_default();
    bed.run(node, &format!("ip -6 route add {ip}/128 dev {host_if}{table}"));
    bed.run(
        node,
        &format!("ip -6 neigh replace {ip} lladdr {workload_mac} dev {host_if} nud permanent"),
    );
}

fn pings(bed: &Bed, from: &str, to: &str) -> bool {
    bed.succeeds(from, &format!("ping -6 -c 1 -W 2 {to}"))
}

/// Issue 17 item 1: a pod's IPv6 address (/128) in an L3 VNI next to its IPv4 one, and an IPv6
/// prefix routed behind the pod, reached from an IPv6 VM of the remote cloud and reaching it,
/// over the IPv4 underlay (type-5 routes with IPv6 prefixes); the unbind withdraws both.
#[test]
fn ipv6_pod_endpoint_and_routed_prefix_and_a_remote_ipv6_vm() {
    scenario(
        "ipv6_pod_endpoint_and_routed_prefix_and_a_remote_ipv6_vm",
        BedSpec::default(),
        |bed| {
            let (pod, vm) = (pod(bed), bed.vm(1001));
            wire6(bed, &bed.a.clone(), "cali-p1", &pod, POD_IP6, None);
            bed.run(&pod, &format!("ip -6 addr add {ROUTED6_ADDR}/128 dev lo"));
            // the remote cloud's VM 1001 gets an IPv6 address, announced like its IPv4 one
            wire6(bed, &bed.b.clone(), "h-vm1001", &vm, VM_IP6, Some("vrf-1001"));
            bed.run(&bed.b, "sysctl -qw net.ipv6.conf.all.forwarding=1");
            bed.vty(
                &bed.b,
                &[
                    "conf t",
                    "router bgp 64999 vrf vrf-1001",
                    "address-family ipv6 unicast",
                    "redistribute kernel",
                    "exit-address-family",
                    "address-family l2vpn evpn",
                    "advertise ipv6 unicast",
                ],
            );
            bed.start_agent(&[]);
            let mut vni = l3vni(
                "vrf-tenant",
                1001,
                "172.30.0.1:1001",
                &[(POD_IP, "demo/web"), (POD_IP6, "demo/web")],
            );
            vni.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                prefix: ROUTED6.into(),
                next_hop: Some(POD_IP6.into()),
            }];
            let generation = bed.write_state(EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![vni],
            });
            bed.wait("status Ready with both endpoints", 60, || {
                bed.status_is(generation, true)
                    && bed
                        .status()
                        .is_some_and(|s| s.l3vnis.first().is_some_and(|v| v.endpoints == 2))
            });
            let b_has = |bed: &Bed, prefix: &str| {
                bed.run(&bed.b, "ip -6 route show vrf vrf-1001")
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(prefix))
            };
            bed.wait("node B learned the pod's IPv6 address in vrf-1001", 60, || {
                b_has(bed, POD_IP6)
            });
            bed.wait("node A's VRF learned the VM's IPv6 address", 60, || {
                bed.run(&bed.a, "ip -6 route show vrf vrf-tenant")
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(VM_IP6))
            });
            bed.log(&format!(
                "node A vrf-tenant (IPv6):\n{}",
                bed.run(&bed.a, "ip -6 route show vrf vrf-tenant")
            ));
            bed.wait("pod -> VM over IPv6", 30, || pings(bed, &pod, VM_IP6));
            bed.wait("VM -> pod over IPv6", 30, || pings(bed, &vm, POD_IP6));
            bed.wait("node B learned the routed IPv6 prefix", 60, || {
                b_has(bed, ROUTED6)
            });
            bed.wait(
                "VM -> an address of the routed prefix, and its answer back",
                30,
                || pings(bed, &vm, ROUTED6_ADDR),
            );
            bed.check("and IPv4 beside it: pod -> VM", pod_reaches_vm(bed, 1001));
            bed.check("idempotent FRR with IPv6 announced", frr_is_idempotent(bed));
            bed.check("idempotent kernel with IPv6", plan_is_empty(bed));

            let generation = unbind(bed);
            bed.wait(
                "unbound: node B withdrew the pod's IPv6 address and prefix",
                60,
                || !b_has(bed, POD_IP6) && !b_has(bed, ROUTED6),
            );
            bed.wait("unbound: the VM no longer reaches the pod", 30, || {
                !pings(bed, &vm, POD_IP6)
            });
            bed.wait(
                &format!("unbound: status Ready for generation {generation}"),
                30,
                || bed.status_is(generation, true),
            );
        },
    );
}

/// Issue 17 item 1: the EVPN session runs over the IPv6 underlay (node A's only neighbour is
/// node B's IPv6 address) while the VTEPs stay IPv4: the routes and the seed's traffic flow as
/// over IPv4, and the status reports the IPv6 session.
#[test]
fn the_evpn_session_runs_over_an_ipv6_underlay() {
    scenario(
        "the_evpn_session_runs_over_an_ipv6_underlay",
        BedSpec::default(),
        |bed| {
            bed.run(&bed.a, "ip -6 addr add fd00:30::1/64 dev eth-u nodad");
            bed.run(&bed.b, "ip -6 addr add fd00:30::2/64 dev eth-u nodad");
            bed.vty(
                &bed.b,
                &[
                    "conf t",
                    "router bgp 64999",
                    "neighbor 172.30.0.1 shutdown",
                    "neighbor fd00:30::1 remote-as 65001",
                    "address-family l2vpn evpn",
                    "neighbor fd00:30::1 activate",
                ],
            );
            let underlay = Underlay {
                neighbors: vec![Neighbor {
                    address: Some("fd00:30::2".into()),
                    interface: None,
                    remote_asn: 64999,
                    bfd: false,
                }],
                ..bed.underlay()
            };
            bed.start_agent(&["--bgp-poll-secs", "1"]);
            let generation = bind_over(bed, underlay, 1001);
            bed.wait("status Ready", 60, || bed.status_is(generation, true));
            bed.wait(
                "the IPv6 session in the status: fd00:30::2 Established, 1/1",
                60,
                || {
                    bed.status().is_some_and(|s| {
                        s.sessions_established.as_deref() == Some("1/1")
                            && s.bgp_sessions
                                .iter()
                                .any(|x| x.peer == "fd00:30::2" && x.state == "Established")
                    })
                },
            );
            bed.wait(
                "node B learned 10.0.0.84 in vrf-1001 over the IPv6 session",
                60,
                || bed.b_has_route(1001, POD_IP),
            );
            bed.log(&format!(
                "node B vrf-1001: {}",
                bed.run(&bed.b, "ip route show vrf vrf-1001")
            ));
            bed.wait("pod -> VM of VNI 1001", 30, || pod_reaches_vm(bed, 1001));
            bed.wait("VM of VNI 1001 -> pod:8080", 30, || vm_reaches_pod(bed, 1001));
            bed.check("idempotent FRR", frr_is_idempotent(bed));
        },
    );
}

/// An IPv6 VTEP, which FRR 10.3's EVPN cannot use (measured: zebra showed the VNI's local VTEP
/// as 0.0.0.0, bgpd kept announcing the IPv4 router id as next hop, no packet passed), is
/// refused with a clear status, and the node keeps the dataplane it had.
#[test]
fn an_ipv6_vtep_is_refused_and_the_dataplane_kept() {
    scenario(
        "an_ipv6_vtep_is_refused_and_the_dataplane_kept",
        BedSpec::default(),
        |bed| {
            bed.start_agent(&[]);
            let generation = bind(bed, 1001);
            bed.wait("bound: pod -> VM of VNI 1001", 60, || {
                bed.status_is(generation, true) && pod_reaches_vm(bed, 1001)
            });
            let ipv6_vtep = Underlay {
                vtep_ip: "fd00:30::1".into(),
                ..bed.underlay()
            };
            bind_over(bed, ipv6_vtep, 1001);
            bed.wait("status: Ready False, the IPv6 VTEP named", 30, || {
                bed.status().is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Ready"
                            && c.status == "False"
                            && c.reason == "InvalidSpec"
                            && c.message.contains("an IPv6 VTEP is not supported")
                    })
                })
            });
            bed.check("the VXLAN device kept its IPv4 source", {
                bed.run(&bed.a, "ip -d link show bvvx-1001")
                    .contains("local 172.30.0.1 ")
            });
            bed.check(
                "the pod still reaches the VM of VNI 1001",
                pod_reaches_vm(bed, 1001),
            );
        },
    );
}

/// Issue 17 item 2, one uplink: with `bfd: true` on the neighbour, BFD takes a session whose
/// peer went silent down long before BGP's hold time (180 s) would; the status shows the
/// session and its BFD state, down and then up again. The detection time is printed.
/// bfdd beside the FRR of `node` (netns = FRR pathspace), its pid where the bed's cleanup
/// finds it.
fn start_bfdd(bed: &Bed, node: &str) {
    let pid_file = format!("/run/frr/{node}/bfdd.pid");
    // daemonized with its output closed: nothing keeps the command's pipes open
    let start = format!("/usr/lib/frr/bfdd -N {node} -d -P 0 -i {pid_file} >/dev/null 2>&1");
    bed.sh(node, &["sh", "-c", &start]);
    bed.wait(&format!("bfdd of {node} listening"), 20, || {
        PathBuf::from(format!("/run/frr/{node}/bfdd.vty")).exists()
    });
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    std::fs::write(bed.work.join("pids").join(format!("bfdd-{node}.pid")), pid).unwrap();
}

#[test]
fn bfd_takes_a_silent_underlay_session_down() {
    scenario(
        "bfd_takes_a_silent_underlay_session_down",
        BedSpec::default(),
        |bed| {
            // bfdd beside both nodes' FRR (the bed starts mgmtd, zebra and bgpd; the chart's
            // router runs bfdd too), its pid where the bed's cleanup finds it
            for node in [bed.a.clone(), bed.b.clone()] {
                start_bfdd(bed, &node);
            }
            bed.vty(&bed.b, &["conf t", "router bgp 64999", "neighbor 172.30.0.1 bfd"]);
            let mut underlay = bed.underlay();
            underlay.neighbors[0].bfd = true;
            bed.start_agent(&["--bgp-poll-secs", "1"]);
            let generation = bind_over(bed, underlay, 1001);
            let session = |bed: &Bed| {
                bed.status()
                    .and_then(|s| s.bgp_sessions.into_iter().find(|x| x.peer == "172.30.0.2"))
                    .map(|x| (x.state, x.bfd))
            };
            let up = |bed: &Bed| session(bed) == Some(("Established".into(), Some("Up".into())));
            bed.wait("status Ready", 60, || bed.status_is(generation, true));
            bed.wait("status: the session Established, BFD Up", 60, || up(bed));
            bed.wait("pod -> VM of VNI 1001", 30, || pod_reaches_vm(bed, 1001));

            // node B's uplink goes silent: no link change, every packet it sends lost
            bed.run(&bed.b, "modprobe sch_netem");
            let t = Instant::now();
            bed.run(&bed.b, "tc qdisc add dev eth-u root netem loss 100%");
            bed.wait("node A's bgpd took the session down", 30, || {
                !bed.vty(&bed.a, &["show bgp neighbors 172.30.0.2"])
                    .contains("BGP state = Established")
            });
            bed.log(&format!(
                "MEASURED: peer silent -> session down at node A after {} ms (BFD; BGP hold time 180 s)",
                ms_since(t)
            ));
            bed.wait("status: the session down, its BFD state Down", 30, || {
                session(bed)
                    .is_some_and(|(state, bfd)| state != "Established" && bfd.as_deref() == Some("Down"))
            });
            bed.run(&bed.b, "tc qdisc del dev eth-u root");
            bed.wait("the session and BFD up again", 120, || up(bed));
            bed.wait("pod -> VM of VNI 1001 again", 60, || pod_reaches_vm(bed, 1001));
        },
    );
}

/// Issue 17 item 3: a BGPVPN's localPref travels with its routes to an iBGP peer and decides
/// between two paths. Node A (made iBGP with node B, AS 64999) announces one prefix from two VRFs
/// whose routes node B imports into one VRF; the path with the higher localPref is best, and
/// swapping the two localPrefs swaps the best path.
#[test]
fn local_pref_reaches_an_ibgp_peer_and_picks_the_path() {
    scenario(
        "local_pref_reaches_an_ibgp_peer_and_picks_the_path",
        BedSpec::default(),
        |bed| {
            bed.vty(
                &bed.b,
                &[
                    "conf t",
                    "router bgp 64999",
                    "neighbor 172.30.0.1 remote-as 64999",
                ],
            );
            // the shared prefix, routed in node A's main table
            bed.run(&bed.a, "ip route add 10.0.9.0/24 dev cali-p1");
            let underlay = Underlay {
                asn: 64999,
                ..bed.underlay()
            };
            let two = move |lp_a: u32, lp_b: u32| {
                let vrf = |name: &str, vni: u32, lp: u32| {
                    let mut v = l3vni(name, vni, &format!("172.30.0.1:{vni}"), &[]);
                    // both export to node B's vrf-1001
                    v.export_targets = vec!["65000:1001".into()];
                    v.local_pref = Some(lp);
                    v.prefixes = vec![bgpvpn_crds::RoutedPrefix {
                        prefix: "10.0.9.0/24".into(),
                        next_hop: None,
                    }];
                    v
                };
                EvpnNodeStateSpec {
                    underlay: underlay.clone(),
                    l3vnis: vec![vrf("vrf-a", 1001, lp_a), vrf("vrf-b", 1003, lp_b)],
                }
            };
            // node B's paths to 10.0.9.0/24 in vrf-1001: (RD, localPref, best)
            let paths = |bed: &Bed| -> Vec<(String, u64, bool)> {
                let out = bed.vty(&bed.b, &["show bgp l2vpn evpn route type prefix json"]);
                let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                let mut found = Vec::new();
                for (rd, routes) in json.as_object().into_iter().flatten() {
                    let Some(route) = routes.get("[5]:[0]:[24]:[10.0.9.0]") else {
                        continue;
                    };
                    for path in route["paths"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|p| p.as_array().cloned().unwrap_or_else(|| vec![p.clone()]))
                    {
                        found.push((
                            rd.clone(),
                            path["locPrf"].as_u64().unwrap_or(0),
                            path["bestpath"].as_bool().unwrap_or(false),
                        ));
                    }
                }
                found.sort();
                found
            };
            bed.start_agent(&[]);
            let generation = bed.write_state(two(200, 100));
            bed.wait("status Ready", 60, || bed.status_is(generation, true));
            bed.wait("node B holds both paths, localPref 200 and 100", 60, || {
                let p = paths(bed);
                p.len() == 2 && p.iter().any(|x| x.1 == 200) && p.iter().any(|x| x.1 == 100)
            });
            bed.log(&format!("node B's paths (RD, localPref, best): {:?}", paths(bed)));
            let best = |bed: &Bed| bed.vty(&bed.b, &["show bgp vrf vrf-1001 ipv4 unicast 10.0.9.0/24 json"]);
            // node B's vrf-1001 chose the path with this localPref
            let picks = |bed: &Bed, local_pref: u64| {
                let v: serde_json::Value = serde_json::from_str(&best(bed)).unwrap_or_default();
                v["paths"].as_array().into_iter().flatten().any(|p| {
                    p["bestpath"]["overall"].as_bool() == Some(true)
                        && p["locPrf"].as_u64() == Some(local_pref)
                })
            };
            bed.wait(
                "node B's vrf-1001 picks localPref 200 (vrf-a's route)",
                30,
                || picks(bed, 200),
            );
            let generation = bed.write_state(two(100, 300));
            bed.wait("status Ready after the swap", 60, || {
                bed.status_is(generation, true)
            });
            bed.wait(
                "node B's vrf-1001 now picks localPref 300 (vrf-b's route)",
                60,
                || picks(bed, 300),
            );
            bed.log(&format!("after the swap: {}", best(bed)));
        },
    );
}

/// Node B's `vrf-1001` as Neutron 2026.2's own EVPN configures a router with `evpn_vni` 1001
/// (the commands its FRR driver renders, recorded from neutron 29: no route target, so bgpd
/// derives one). The BGPVPN the OpenStack sync mirrors from such a router carries
/// `frr_auto_route_target(bgp_as, vni)`: node B's routes carry exactly that target, and with it
/// the pod and the VM reach each other both ways; with the bed's own targets node A does not
/// import node B's routes.
#[test]
fn a_neutron_evpn_router_is_reached_with_the_route_target_frr_derives() {
    scenario(
        "a_neutron_evpn_router_is_reached_with_the_route_target_frr_derives",
        BedSpec::default(),
        |bed| {
            let rendered = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../operator/tests/fixtures/openstack/neutron-29/frr-add-evpn-router.conf");
            let rendered = std::fs::read_to_string(&rendered).expect("Neutron's rendered FRR commands");
            // node B's FRR boots into its config with vrf-1001 as Neutron's driver renders it
            // (a fresh start: bgpd derives an instance's targets when it is made)
            let base = std::fs::read_to_string(bed.work.join(&bed.b).join("base.conf")).unwrap();
            let mut own_vrf = false;
            let mut conf = String::new();
            for line in base.lines() {
                if line == "router bgp 64999 vrf vrf-1001" {
                    own_vrf = true;
                }
                if !own_vrf {
                    conf.push_str(line);
                    conf.push('\n');
                }
                if own_vrf && line == "exit" {
                    own_vrf = false;
                }
            }
            assert!(conf.len() < base.len(), "no vrf-1001 stanza in node B's {base}");
            conf.push_str(&rendered);
            let conf_file = bed.work.join(&bed.b).join("neutron.conf");
            std::fs::write(&conf_file, &conf).unwrap();
            let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/lib/remote-cloud.sh");
            let restarted = Command::new("bash")
                .args([
                    "-c",
                    r#"set -e; . "$0"; WORK=$1; frr_stop "$2"; chown frr:frr "$3"; frr_start "$2" "$2" "$3""#,
                ])
                .arg(&lib)
                .arg(&bed.work)
                .arg(&bed.b)
                .arg(&conf_file)
                .status()
                .unwrap();
            assert!(restarted.success(), "node B's FRR restart");
            let derived = bgpvpn_crds::frr_auto_route_target(64999, 1001);
            bed.log(&format!(
                "node B's vrf-1001 as Neutron configures it:\n{}",
                bed.vty(&bed.b, &["show bgp vrf vrf-1001 vni"])
            ));

            bed.start_agent(&[]);
            // with the bed's targets (65000:1001) node A does not import the VM's route. (Node B
            // does import the pod's: bgpd matches an auto-derived import target on the VNI alone,
            // whatever the AS, so a Neutron router accepts any target <AS>:<its VNI>.)
            let mut spec = EvpnNodeStateSpec {
                underlay: bed.underlay(),
                l3vnis: vec![l3vni(
                    "vrf-tenant",
                    1001,
                    "172.30.0.1:1001",
                    &[(POD_IP, "demo/web")],
                )],
            };
            let generation = bed.write_state(spec.clone());
            bed.wait("status Ready", 60, || bed.status_is(generation, true));
            // what node B's vrf-1001 puts on the wire: the VM's route with the derived target
            let vm_route = "[5]:[0]:[32]:[20.0.0.100]";
            let vm_route_at_a = |bed: &Bed| {
                let out = bed.vty(&bed.a, &["show bgp l2vpn evpn route type prefix json"]);
                let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                let mut communities = Vec::new();
                for routes in json.as_object().into_iter().flatten().map(|(_, r)| r) {
                    let paths = routes.get(vm_route).map(|r| r["paths"].to_string());
                    communities.extend(paths);
                }
                communities
            };
            bed.wait("node A holds the VM's type-5 route", 60, || {
                vm_route_at_a(bed).iter().any(|p| p.contains("RT:64999:1001"))
            });
            let vm_in_a = |bed: &Bed| bed.vty(&bed.a, &["show ip route vrf vrf-tenant 20.0.0.100/32"]);
            assert!(
                !vm_in_a(bed).contains("20.0.0.100/32"),
                "imported without a matching route target: {}",
                vm_in_a(bed)
            );
            assert!(!pod_reaches_vm(bed, 1001));

            // the mirrored BGPVPN's target
            spec.l3vnis[0].import_targets = vec![derived.clone()];
            spec.l3vnis[0].export_targets = vec![derived.clone()];
            let generation = bed.write_state(spec);
            bed.wait("status Ready with the derived target", 60, || {
                bed.status_is(generation, true)
            });
            bed.wait("pod -> VM 1001 (Neutron's router)", 60, || {
                pod_reaches_vm(bed, 1001)
            });
            bed.wait("VM 1001 -> pod", 30, || vm_reaches_pod(bed, 1001));
            assert!(vm_in_a(bed).contains("20.0.0.100/32"), "{}", vm_in_a(bed));
            assert!(frr_is_idempotent(bed) && plan_is_empty(bed));
        },
    );
}

/// A router of the fabric in netns `name` (made by the caller, named `*-<sfx>` so the bed's
/// cleanup removes it): FRR (the bed's own start, `conf` after its preamble) and bfdd, every
/// pid where the bed's cleanup finds it.
fn start_router(bed: &Bed, name: &str, conf: &str) {
    let conf_file = bed.work.join(format!("{name}.conf"));
    std::fs::write(&conf_file, conf).unwrap();
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/lib/remote-cloud.sh");
    let started = Command::new("bash")
        .args([
            "-c",
            r#"set -e; . "$0"; WORK=$1; frr_prepare "$2"; cat "$3" >>"$WORK/$2/base.conf"; frr_start "$2" "$2""#,
        ])
        .arg(&lib)
        .arg(&bed.work)
        .arg(name)
        .arg(&conf_file)
        .status()
        .unwrap();
    assert!(started.success(), "FRR of {name}");
    for daemon in ["mgmtd", "zebra", "bgpd"] {
        let pid = std::fs::read_to_string(format!("/run/frr/{name}/{daemon}.pid")).unwrap();
        std::fs::write(bed.work.join("pids").join(format!("{daemon}-{name}.pid")), pid).unwrap();
    }
    start_bfdd(bed, name);
}

/// The FRR of a ToR: eBGP with node A below (BFD) and node B beyond, IPv4 unicast and EVPN
/// with both; EVPN routes keep their VTEP next hop.
fn tor_conf(asn: u32, id: &str, node_a: &str, node_b: &str) -> String {
    format!(
        "router bgp {asn}
 bgp router-id {id}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {node_a} remote-as 65001
 neighbor {node_a} bfd
 neighbor {node_a} timers connect 1
 neighbor {node_b} remote-as 64999
 neighbor {node_b} timers connect 1
 address-family ipv4 unicast
  neighbor {node_a} activate
  neighbor {node_b} activate
 exit-address-family
 address-family l2vpn evpn
  neighbor {node_a} activate
  neighbor {node_b} activate
  neighbor {node_a} attribute-unchanged next-hop
  neighbor {node_b} attribute-unchanged next-hop
 exit-address-family
exit
"
    )
}

/// The next hops of `node`'s main-table route to `dst`.
fn next_hops(bed: &Bed, node: &str, dst: &str) -> Vec<String> {
    let out = bed.run(node, &format!("ip -j route show {dst}"));
    let routes: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let mut hops = Vec::new();
    for r in routes.as_array().into_iter().flatten() {
        match r["nexthops"].as_array() {
            Some(list) => hops.extend(
                list.iter()
                    .filter_map(|h| h["gateway"].as_str().map(String::from)),
            ),
            None => hops.extend(r["gateway"].as_str().map(String::from)),
        }
    }
    hops.sort();
    hops
}

/// Transmitted packets of `dev` in `node`.
fn tx_packets(bed: &Bed, node: &str, dev: &str) -> u64 {
    bed.run(node, &format!("cat /sys/class/net/{dev}/statistics/tx_packets"))
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Issue 17 item 2: node A behind two ToRs of different ASes, BGP as the underlay's routing
/// (`ipv4Unicast`), BFD on both uplinks. Node B's VTEP is reached over both (ECMP, in the
/// kernel); the uplink that carries the pod's flow goes silent (no link change): BFD takes its
/// sessions down, the routes through it go, and the flow goes on over the other uplink.
/// Restored, both paths come back.
#[test]
fn two_tors_with_ecmp_and_bfd_keep_a_flow_when_one_uplink_goes_silent() {
    scenario(
        "two_tors_with_ecmp_and_bfd_keep_a_flow_when_one_uplink_goes_silent",
        BedSpec::default(),
        |bed| {
            let (a, b) = (bed.a.clone(), bed.b.clone());
            let tors = [format!("tor1-{}", bed.sfx), format!("tor2-{}", bed.sfx)];
            let ip = |args: &str| {
                let ok = Command::new("ip").args(args.split_whitespace()).status().unwrap();
                assert!(ok.success(), "ip {args}");
            };
            // the direct link goes; each node keeps its VTEP address on lo
            bed.run(&a, "ip link del eth-u");
            bed.run(&a, "ip addr add 172.30.0.1/32 dev lo");
            bed.run(&b, "ip addr add 172.30.0.2/32 dev lo");
            bed.run(&b, "sysctl -qw net.ipv4.ip_forward=1");
            for (i, tor) in tors.iter().enumerate() {
                let n = i + 1;
                ip(&format!("netns add {tor}"));
                bed.run(tor, "ip link set lo up");
                bed.run(tor, "sysctl -qw net.ipv4.ip_forward=1");
                bed.run(
                    &a,
                    &format!("ip link add up{n} type veth peer name to-a netns {tor}"),
                );
                bed.run(
                    &b,
                    &format!("ip link add up{n} type veth peer name to-b netns {tor}"),
                );
                bed.run(&a, &format!("ip addr add 10.91.{n}.1/30 dev up{n}"));
                bed.run(&b, &format!("ip addr add 10.92.{n}.1/30 dev up{n}"));
                bed.run(tor, &format!("ip addr add 10.91.{n}.2/30 dev to-a"));
                bed.run(tor, &format!("ip addr add 10.92.{n}.2/30 dev to-b"));
                for (ns, dev) in [
                    (a.as_str(), format!("up{n}")),
                    (b.as_str(), format!("up{n}")),
                    (tor.as_str(), "to-a".to_string()),
                    (tor.as_str(), "to-b".to_string()),
                ] {
                    bed.run(ns, &format!("ip link set {dev} up"));
                }
                let conf = tor_conf(
                    65100 + n as u32,
                    &format!("10.91.{n}.2"),
                    &format!("10.91.{n}.1"),
                    &format!("10.92.{n}.1"),
                );
                start_router(bed, tor, &conf);
            }
            // node B (the remote cloud's gateway) moves to the ToRs, announcing its VTEP
            bed.vty(
                &b,
                &[
                    "conf t",
                    "router bgp 64999",
                    "no neighbor 172.30.0.1",
                    "bgp bestpath as-path multipath-relax",
                    "neighbor 10.92.1.2 remote-as 65101",
                    "neighbor 10.92.2.2 remote-as 65102",
                    "address-family ipv4 unicast",
                    "network 172.30.0.2/32",
                    "neighbor 10.92.1.2 activate",
                    "neighbor 10.92.2.2 activate",
                    "exit-address-family",
                    "address-family l2vpn evpn",
                    "neighbor 10.92.1.2 activate",
                    "neighbor 10.92.2.2 activate",
                ],
            );
            start_bfdd(bed, &a);
            let tor = |n: u32, asn: u32| Neighbor {
                address: Some(format!("10.91.{n}.2")),
                interface: None,
                remote_asn: asn,
                bfd: true,
            };
            let underlay = Underlay {
                neighbors: vec![tor(1, 65101), tor(2, 65102)],
                ipv4_unicast: true,
                ..bed.underlay()
            };
            bed.start_agent(&["--bgp-poll-secs", "1"]);
            let generation = bind_over(bed, underlay, 1001);
            bed.wait("status Ready", 60, || bed.status_is(generation, true));
            let sessions = |bed: &Bed| bed.status().and_then(|s| s.sessions_established);
            bed.wait("status: both uplink sessions Established (2/2)", 90, || {
                sessions(bed).as_deref() == Some("2/2")
            });
            let both = vec!["10.91.1.2".to_string(), "10.91.2.2".to_string()];
            bed.wait("node A reaches node B's VTEP over both ToRs (ECMP)", 60, || {
                next_hops(bed, &a, "172.30.0.2") == both
            });
            bed.wait("node B reaches node A's VTEP over both ToRs", 60, || {
                next_hops(bed, &b, "172.30.0.1").len() == 2
            });
            bed.wait("pod -> VM 1001 through the fabric", 60, || {
                pod_reaches_vm(bed, 1001)
            });
            bed.wait("VM 1001 -> pod", 30, || vm_reaches_pod(bed, 1001));
            assert!(
                frr_is_idempotent(bed),
                "the agent's FRR config with ipv4Unicast is FRR's own"
            );

            // a 10 ms ping flow; the uplink that carries it goes silent both ways
            let before = [tx_packets(bed, &a, "up1"), tx_packets(bed, &a, "up2")];
            let ping = PingFlow::start(bed, "ecmp-ping", 1500);
            bed.wait("the ping runs", 20, || ping.replies() >= 100);
            let sent = [
                tx_packets(bed, &a, "up1") - before[0],
                tx_packets(bed, &a, "up2") - before[1],
            ];
            let (used, other) = if sent[0] >= sent[1] { (1, 2) } else { (2, 1) };
            bed.log(&format!(
                "the flow leaves node A by up{used} ({sent:?} packets sent on up1, up2)"
            ));
            let cut_tor = &tors[used - 1];
            bed.run(&a, "modprobe sch_netem");
            let t = Instant::now();
            let at_cut = ping.replies();
            bed.run(&a, &format!("tc qdisc add dev up{used} root netem loss 100%"));
            bed.run(cut_tor, "tc qdisc add dev to-a root netem loss 100%");
            let cut_peer = format!("10.91.{used}.2");
            bed.wait("node A's bgpd took the silent uplink's session down", 30, || {
                !bed.vty(&a, &[&format!("show bgp neighbors {cut_peer}")])
                    .contains("BGP state = Established")
            });
            let detected = ms_since(t);
            bed.wait(
                "node A's route to node B's VTEP keeps only the other ToR",
                30,
                || next_hops(bed, &a, "172.30.0.2") == [format!("10.91.{other}.2")],
            );
            bed.wait(
                "the flow goes on over the other uplink, the first still silent",
                30,
                || ping.replies() >= at_cut + 50,
            );
            bed.wait("status: 1/2 sessions", 30, || {
                sessions(bed).as_deref() == Some("1/2")
            });
            let flow = ping.finish();
            let (tx, rx, gap_ms) = (flow.sent, flow.received, flow.longest_silence_ms);
            bed.log(&format!(
                "MEASURED: uplink up{used} silent -> BFD took its session down at node A after {detected} ms; the flow's longest silence {gap_ms:.0} ms; pings lost: {} of {tx}",
                tx - rx
            ));
            assert!(rx > 0, "ping: {}", flow.summary);

            // restored: BFD and the sessions come back, and so does the second path
            let t = Instant::now();
            bed.run(&a, &format!("tc qdisc del dev up{used} root"));
            bed.run(cut_tor, "tc qdisc del dev to-a root");
            bed.wait("status: both sessions Established again", 120, || {
                sessions(bed).as_deref() == Some("2/2")
            });
            bed.wait("node A reaches node B's VTEP over both ToRs again", 60, || {
                next_hops(bed, &a, "172.30.0.2") == both
            });
            bed.log(&format!(
                "MEASURED: uplink restored -> both paths back after {} ms",
                ms_since(t)
            ));
            bed.wait("pod -> VM 1001", 30, || pod_reaches_vm(bed, 1001));
        },
    );
}
