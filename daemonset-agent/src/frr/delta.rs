//! The incremental change between two [`FrrView`]s, as vtysh configuration lines.
//!
//! The hot path of the agent (a binding, an endpoint, a VNI move) changes one VRF. Replaying the
//! whole configuration through `frr-reload.py` costs a Python start, a `show running-config` and
//! about ten `vtysh` processes; the delta is one `vtysh -f` of the changed lines, the same
//! mechanism frr-reload uses for its own additions. vtysh still decides which daemon gets which
//! line, so the agent does not encode FRR's daemon split (which moved with mgmtd in FRR 9/10).
//!
//! [`delta`] covers what a pass changes in normal operation: VRFs added or removed, a VNI mapped
//! or unmapped, route distinguishers, route targets and announced prefixes. Anything else (ASN,
//! router id, neighbours, a localPref change) returns `None` and the caller falls back to a full
//! reload. The result must leave FRR exactly where a full reload of `render(to)` would; the
//! dataplane test checks that with `frr-reload.py --test` after every incremental apply.
//! Pure; like [`render`](super::render), every token comes from a typed value.

use std::collections::BTreeSet;

use super::{
    FrrView, FrrVrf, Lines, network_line, route_map_block, route_map_name, vni_block, vrf_router_block,
};
use crate::model::{Prefix, RtRd};

/// The lines that bring FRR from `from` to `to`, or `None` when the change is outside what an
/// incremental apply covers. An empty string means the views configure the same thing.
pub fn delta(from: &FrrView, to: &FrrView) -> Option<String> {
    if from.asn != to.asn
        || from.router_id != to.router_id
        || from.neighbors != to.neighbors
        || from.announced_vtep != to.announced_vtep
    {
        return None;
    }
    let mut out = Lines::default();
    // A VRF that goes away releases its VNI first, before another VRF may take it. Its BGP
    // instance goes last: bgpd refuses to remove it until it has heard from zebra that the
    // VNI is unmapped, and the rest of the batch gives it that time.
    let mut last = Lines::default();
    for old in &from.vrfs {
        if to.vrf(&old.name).is_none() {
            if let Some(vni) = old.vni {
                vni_block(&mut out, old, vni, false);
            }
            last.push(format!("no router bgp {} vrf {}", from.asn, old.name));
            if old.local_pref.is_some() {
                last.push(format!("no route-map {} permit 10", route_map_name(&old.name)));
            }
        }
    }
    for new in &to.vrfs {
        match from.vrf(&new.name) {
            None => {
                route_map_block(&mut out, new);
                if let Some(vni) = new.vni {
                    vni_block(&mut out, new, vni, true);
                }
                vrf_router_block(&mut out, to, new);
            }
            Some(old) if old != new => change_vrf(&mut out, to.asn, old, new)?,
            Some(_) => {}
        }
    }
    out.0.push_str(&last.0);
    Some(out.0)
}

fn change_vrf(out: &mut Lines, asn: u32, old: &FrrVrf, new: &FrrVrf) -> Option<()> {
    if old.local_pref != new.local_pref {
        return None;
    }
    if old.vni != new.vni {
        if let Some(vni) = old.vni {
            vni_block(out, old, vni, false);
        }
        if let Some(vni) = new.vni {
            vni_block(out, new, vni, true);
        }
    }
    let evpn_changed = old.rd != new.rd
        || old.import_targets != new.import_targets
        || old.export_targets != new.export_targets;
    if old.networks == new.networks && !evpn_changed {
        return Some(());
    }
    out.push(format!("router bgp {asn} vrf {}", new.name));
    for v4 in [true, false] {
        let before: BTreeSet<&Prefix> = old.networks.iter().filter(|p| p.is_ipv4() == v4).collect();
        let after: BTreeSet<&Prefix> = new.networks.iter().filter(|p| p.is_ipv4() == v4).collect();
        if before == after {
            continue;
        }
        out.push(format!(
            " address-family {} unicast",
            if v4 { "ipv4" } else { "ipv6" }
        ));
        for p in before.difference(&after) {
            out.push(format!("  no network {p}"));
        }
        for p in after.difference(&before) {
            out.push(format!("  {}", network_line(new, p)));
        }
        out.push(" exit-address-family");
    }
    let had_v6 = old.networks.iter().any(|p| !p.is_ipv4());
    let has_v6 = new.networks.iter().any(|p| !p.is_ipv4());
    if had_v6 != has_v6 || evpn_changed {
        out.push(" address-family l2vpn evpn");
        // `rd` replaces the configured one (`no rd` would have to name the old value)
        if old.rd != new.rd {
            out.push(format!("  rd {}", new.rd));
        }
        if has_v6 && !had_v6 {
            out.push("  advertise ipv6 unicast");
        } else if had_v6 && !has_v6 {
            out.push("  no advertise ipv6 unicast");
        }
        route_targets(out, "import", &old.import_targets, &new.import_targets);
        route_targets(out, "export", &old.export_targets, &new.export_targets);
        out.push(" exit-address-family");
    }
    out.push("exit");
    Some(())
}

fn route_targets(out: &mut Lines, direction: &str, before: &[RtRd], after: &[RtRd]) {
    for rt in before.iter().filter(|rt| !after.contains(rt)) {
        out.push(format!("  no route-target {direction} {rt}"));
    }
    for rt in after.iter().filter(|rt| !before.contains(rt)) {
        out.push(format!("  route-target {direction} {rt}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frr::render;
    use crate::model::parse_state;

    fn view(vrfs: &[(&str, Option<u32>, &[&str])]) -> FrrView {
        let mut l3 = String::new();
        for (name, vni, eps) in vrfs {
            let vni_num = vni.unwrap_or(4000);
            let eps: Vec<String> = eps.iter().map(|e| format!("{{ip: \"{e}\"}}")).collect();
            l3.push_str(&format!(
                "  - {{vni: {vni_num}, vrf: {name}, importTargets: [\"65000:{vni_num}\"], exportTargets: [\"65000:{vni_num}\"], routeDistinguisher: \"172.30.0.1:{vni_num}\", endpoints: [{}]}}\n",
                eps.join(", ")
            ));
        }
        let spec = format!(
            "underlay: {{asn: 65001, routerId: 172.30.0.1, vtepIp: 172.30.0.1, neighbors: [{{address: 172.30.0.2, remoteAsn: 64999}}]}}\nl3vnis:\n{l3}"
        );
        let spec = if vrfs.is_empty() {
            spec.replace("l3vnis:\n", "")
        } else {
            spec
        };
        let mut v = FrrView::from_desired(&parse_state(&spec).unwrap(), &[]);
        for (name, vni, _) in vrfs {
            if vni.is_none() {
                v = v.unmapped(&[crate::model::IfName::new(name).unwrap()]);
            }
        }
        v
    }

    #[test]
    fn a_new_vrf_is_its_rendered_blocks() {
        let to = view(&[("vrf-blue", Some(1001), &["10.0.0.84"])]);
        let d = delta(&view(&[]), &to).unwrap();
        assert_eq!(
            d,
            "vrf vrf-blue\n vni 1001\nexit-vrf\nrouter bgp 65001 vrf vrf-blue\n bgp router-id 172.30.0.1\n !\n address-family ipv4 unicast\n  network 10.0.0.84/32\n exit-address-family\n !\n address-family l2vpn evpn\n  advertise ipv4 unicast\n  rd 172.30.0.1:1001\n  route-target import 65000:1001\n  route-target export 65000:1001\n exit-address-family\nexit\n"
        );
        // every line of the delta is in the full rendering
        let full = render(&to);
        assert!(
            d.lines().all(|l| full.lines().any(|f| f == l)),
            "{d}\n---\n{full}"
        );
    }

    #[test]
    fn endpoints_added_and_removed_touch_only_their_network_lines() {
        let from = view(&[
            ("vrf-blue", Some(1001), &["10.0.0.84", "10.0.0.85"]),
            ("vrf-red", Some(1003), &["10.0.1.1"]),
        ]);
        let to = view(&[
            ("vrf-blue", Some(1001), &["10.0.0.84", "10.0.0.86", "fd00::1"]),
            ("vrf-red", Some(1003), &["10.0.1.1"]),
        ]);
        assert_eq!(
            delta(&from, &to).unwrap(),
            "router bgp 65001 vrf vrf-blue\n address-family ipv4 unicast\n  no network 10.0.0.85/32\n  network 10.0.0.86/32\n exit-address-family\n address-family ipv6 unicast\n  network fd00::1/128\n exit-address-family\n address-family l2vpn evpn\n  advertise ipv6 unicast\n exit-address-family\nexit\n"
        );
        assert_eq!(
            delta(&to, &from).unwrap(),
            "router bgp 65001 vrf vrf-blue\n address-family ipv4 unicast\n  no network 10.0.0.86/32\n  network 10.0.0.85/32\n exit-address-family\n address-family ipv6 unicast\n  no network fd00::1/128\n exit-address-family\n address-family l2vpn evpn\n  no advertise ipv6 unicast\n exit-address-family\nexit\n"
        );
        assert_eq!(delta(&from, &from).unwrap(), "");
    }

    #[test]
    fn removed_vrf_releases_its_vni_before_its_bgp_instance_goes() {
        let from = view(&[("vrf-blue", Some(1001), &["10.0.0.84"])]);
        assert_eq!(
            delta(&from, &view(&[])).unwrap(),
            "vrf vrf-blue\n no vni 1001\nexit-vrf\nno router bgp 65001 vrf vrf-blue\n"
        );
        // an unmapped VRF has no VNI left to release
        let unmapped = from.unmapped(&[crate::model::IfName::new("vrf-blue").unwrap()]);
        assert_eq!(
            delta(&unmapped, &view(&[])).unwrap(),
            "no router bgp 65001 vrf vrf-blue\n"
        );
        assert_eq!(
            delta(&from, &unmapped).unwrap(),
            "vrf vrf-blue\n no vni 1001\nexit-vrf\n"
        );
        assert_eq!(
            delta(&unmapped, &from).unwrap(),
            "vrf vrf-blue\n vni 1001\nexit-vrf\n"
        );
        // with several changes, every BGP instance removal comes after the rest of the batch
        let two = view(&[
            ("vrf-blue", Some(1001), &["10.0.0.84"]),
            ("vrf-red", Some(1003), &["10.0.1.1"]),
        ]);
        let d = delta(&two, &view(&[("vrf-green", Some(1005), &["10.0.2.1"])])).unwrap();
        let first_removal = d.find("no router bgp").unwrap();
        assert!(
            d[..first_removal].contains("router bgp 65001 vrf vrf-green\n")
                && d[..first_removal].contains(" no vni 1003\n"),
            "{d}"
        );
        assert!(
            d[first_removal..]
                .lines()
                .all(|l| l.starts_with("no router bgp 65001 vrf ")),
            "{d}"
        );
    }

    #[test]
    fn local_pref_is_carried_by_route_map_and_network_lines() {
        let mut to = view(&[("vrf-blue", Some(1001), &["10.0.0.84"])]);
        to.vrfs[0].local_pref = Some(200);
        let d = delta(&view(&[]), &to).unwrap();
        assert!(
            d.starts_with("route-map BGPVPN-LP-vrf-blue permit 10\n set local-preference 200\nexit\n"),
            "{d}"
        );
        assert!(
            d.contains("  network 10.0.0.84/32 route-map BGPVPN-LP-vrf-blue\n"),
            "{d}"
        );
        assert!(
            delta(&to, &view(&[]))
                .unwrap()
                .ends_with("no router bgp 65001 vrf vrf-blue\nno route-map BGPVPN-LP-vrf-blue permit 10\n")
        );
    }

    #[test]
    fn changes_outside_the_incremental_set_ask_for_a_full_reload() {
        let from = view(&[("vrf-blue", Some(1001), &["10.0.0.84"])]);
        let mut other_asn = from.clone();
        other_asn.asn = 65002;
        let mut other_lp = from.clone();
        other_lp.vrfs[0].local_pref = Some(300);
        let mut no_neighbors = from.clone();
        no_neighbors.neighbors.clear();
        for to in [other_asn, other_lp, no_neighbors] {
            assert_eq!(delta(&from, &to), None, "{to:?}");
        }
    }
}
