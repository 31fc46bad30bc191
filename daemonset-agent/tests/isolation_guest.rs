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
    EvpnNodeStateSpec { underlay: bed.underlay(), l3vnis: vec![l3vni("vrf-tenant", 1001, "172.30.0.1:1001", &[("10.0.0.84", "demo/web")])] }
}

fn pod_reaches_vm(bed: &Bed, pod: &str, vni: u32) -> bool {
    bed.fetch(pod, VM_IP).is_some_and(|b| b.contains(&format!("VNI {vni}")))
}

/// Another program's routes, rules and links carrying the agent's markers (`proto 232`, device
/// group 1650946166) outside what the agent made are never touched: not on a pass, not on the
/// sweep after an unbind.
#[test]
fn foreign_objects_with_the_agents_markers_are_left_alone() {
    scenario("foreign_objects_with_the_agents_markers_are_left_alone", BedSpec::default(), |bed| {
        let a = bed.a.clone();
        let foreign = [
            ("route in main", "ip route add 10.99.0.0/24 dev eth-u proto 232", "ip route show 10.99.0.0/24 proto 232"),
            ("route in table 100", "ip route add 10.98.0.0/24 dev eth-u proto 232 table 100", "ip route show table 100 10.98.0.0/24 proto 232"),
            ("rule to table 100", "ip rule add from 10.97.0.1 lookup 100 proto 232 pref 3000", "ip rule show pref 3000"),
            ("rule to main", "ip rule add from 10.96.0.1 lookup main proto 232 pref 2000", "ip rule show pref 2000 from 10.96.0.1"),
            ("dummy link in the agent's group", "ip link add foreign0 group 1650946166 type dummy", "ip link show foreign0"),
        ];
        for (_, add, _) in &foreign {
            bed.run(&a, add);
        }
        let all_there = |bed: &Bed| foreign.iter().filter(|(_, _, show)| !bed.run(&a, show).trim().is_empty()).count() == foreign.len();
        bed.check("the foreign objects exist", all_there(bed));

        let generation = bed.write_state(seed(bed));
        bed.start_agent(&[]);
        let pod = bed.pods[0].0.clone();
        bed.wait("pod -> VM of VNI 1001", 60, || pod_reaches_vm(bed, &pod, 1001));
        bed.wait("status Ready", 30, || bed.status_is(generation, true));
        for (what, _, show) in &foreign {
            bed.check(&format!("after the bind: foreign {what} still there"), !bed.run(&a, show).trim().is_empty());
        }

        let generation = bed.write_state(EvpnNodeStateSpec { underlay: bed.underlay(), l3vnis: vec![] });
        bed.wait("unbound: the agent's own devices are swept", 30, || {
            bed.run(&a, "ip -br link show type vrf").trim().is_empty() && bed.status_is(generation, true)
        });
        bed.wait("unbound: the pod's rule is gone", 10, || !bed.run(&a, "ip rule show").contains("from 10.0.0.84"));
        for (what, _, show) in &foreign {
            bed.check(&format!("after the sweep: foreign {what} still there"), !bed.run(&a, show).trim().is_empty());
        }
    });
}
