//! Golden files of the rendered frr.conf (tests/golden/<name>.conf from <name>.yaml).
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p bgpvpn-agent --test frr_golden`.

use std::path::PathBuf;

use bgpvpn_agent::frr::{FrrView, render};
use bgpvpn_agent::model::parse_state;

fn golden(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let spec = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    let desired = parse_state(&spec).unwrap_or_else(|e| panic!("{name}.yaml: {e}"));
    let rendered = render(&FrrView::from_desired(&desired, &[]));
    let path = dir.join(format!("{name}.conf"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        rendered,
        expected,
        "{name}: rendering differs from {} (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

#[test]
fn empty_state() {
    golden("empty");
}

#[test]
fn seed_state() {
    golden("seed");
}

#[test]
fn full_state() {
    golden("full");
}

#[test]
fn rendering_is_deterministic_and_order_independent() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let spec = std::fs::read_to_string(dir.join("full.yaml")).unwrap();
    let a = parse_state(&spec).unwrap();
    let mut reordered: bgpvpn_crds::EvpnNodeStateSpec = serde_yaml::from_str(&spec).unwrap();
    reordered.l3vnis.reverse();
    for v in &mut reordered.l3vnis {
        v.endpoints.reverse();
        v.import_targets.reverse();
    }
    let b = bgpvpn_agent::model::NodeModel::try_from(&reordered).unwrap();
    assert_eq!(
        render(&FrrView::from_desired(&a, &[])),
        render(&FrrView::from_desired(&b, &[]))
    );
}

/// Strings cannot inject FRR commands: every rendered token comes from a validated, typed
/// value, and validation refuses anything that is not one. Each hostile spec below is refused
/// before a single line is rendered: the whole spec (underlay), or its L3 VNI, held back.
#[test]
fn hostile_strings_are_refused_before_rendering() {
    let base =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/seed.yaml"))
            .unwrap();
    let hostile = [
        ("vrf: vrf-blue", "vrf: \"vrf-blue\\n line vty\""),
        ("vrf: vrf-blue", "vrf: \"a b\""),
        ("vrf: vrf-blue", "vrf: \"vrf;exit\""),
        (
            "[\"65000:1001\"]\n    exportTargets",
            "[\"65000:1001\\nrouter bgp 1\"]\n    exportTargets",
        ),
        (
            "exportTargets: [\"65000:1001\"]",
            "exportTargets: [\"65000:1001 additive\"]",
        ),
        (
            "routeDistinguisher: \"172.30.0.1:1001\"",
            "routeDistinguisher: \"172.30.0.1:1001\\n!\\nno router bgp 65001\"",
        ),
        (
            "routerId: 172.30.0.1",
            "routerId: \"172.30.0.1\\n neighbor 6.6.6.6 remote-as 666\"",
        ),
        (
            "address: 172.30.0.2",
            "address: \"172.30.0.2 remote-as 1\\n neighbor 9.9.9.9\"",
        ),
        (
            "- ip: 10.0.0.84",
            "- ip: \"10.0.0.84/32\\n  redistribute kernel\"",
        ),
        (
            "- address: 172.30.0.2",
            "- interface: \"eth0 interface\"\n      address: 172.30.0.2",
        ),
    ];
    for (from, to) in hostile {
        assert!(base.contains(from), "fixture lacks {from:?}");
        let spec = base.replacen(from, to, 1);
        match parse_state(&spec) {
            Err(_) => {}
            Ok(d) => assert!(
                d.vrfs.is_empty() && d.held_back.len() == 1,
                "hostile spec was accepted ({to:?}); it would render:\n{}",
                render(&FrrView::from_desired(&d, &[]))
            ),
        }
    }
}
