//! Kubernetes mode against a real kube-apiserver (v1.20, `hack/testbed/kube-apiserver.sh`):
//! runs `hack/dataplane/kube-mode.sh` with this crate's binary. Needs root, FRR and a built API
//! server; otherwise prints `SKIPPED: ...` and passes, unless `BGPVPN_REQUIRE_APISERVER=1` or
//! `BGPVPN_REQUIRE_DATAPLANE=1` (hack/test.sh as root), in which case a missing API server is
//! built first (`BUILD=1`) and any other gap fails.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn watches_own_object_and_writes_status_by_ssa() {
    // an apiserver test and a dataplane (agent) test at once: either flag makes it required
    let required = ["BGPVPN_REQUIRE_APISERVER", "BGPVPN_REQUIRE_DATAPLANE"].iter().any(|k| std::env::var(k).is_ok_and(|v| v == "1"));
    let skip = |why: &str| {
        assert!(!required, "BGPVPN_REQUIRE_DATAPLANE=1 but the Kubernetes-mode test cannot run: {why}");
        println!("SKIPPED: needs root / kube-apiserver: {why}");
    };
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0")))
        .unwrap_or(false);
    if !root {
        return skip("not running as root");
    }
    if std::env::var("BGPVPN_SKIP_DATAPLANE").is_ok_and(|v| v == "1") && !required {
        return skip("BGPVPN_SKIP_DATAPLANE=1");
    }
    if !std::path::Path::new("/usr/lib/frr/bgpd").exists() {
        return skip("FRR missing (hack/dataplane/install-deps.sh)");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hack/dataplane/kube-mode.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("AGENT", env!("CARGO_BIN_EXE_bgpvpn-agent"));
    if required {
        cmd.env("BUILD", "1");
    }
    let out = cmd.output().expect("running kube-mode.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        return skip("kube-apiserver is not built (hack/testbed/kube-apiserver.sh build)");
    }
    let summary = stdout.lines().rev().find(|l| l.ends_with(" failed")).unwrap_or("");
    assert!(out.status.success() && summary.ends_with(" 0 failed"), "Kubernetes-mode test failed: {summary}");
}
