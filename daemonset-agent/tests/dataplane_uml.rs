//! The dataplane tier: the seed demo on a real VRF kernel (Debian's user-mode-linux) with real
//! FRR 8.4, driven through the real `bgpvpn-agent` binary.
//!
//! Runs `hack/testbed/uml-guest.sh hack/dataplane/evpn-agent-e2e.sh AGENT=<this crate's
//! binary>` and asserts that every check in it passed. Needs root and the host packages of
//! `hack/dataplane/install-deps.sh`; without them it prints `SKIPPED: ...` and passes, unless
//! `BGPVPN_REQUIRE_DATAPLANE=1` (CI), in which case it fails.
//!
//!     sudo BGPVPN_REQUIRE_DATAPLANE=1 cargo test -p bgpvpn-agent --test dataplane_uml -- --nocapture
//!
//! As root it runs by default (about 3-4 minutes); `BGPVPN_SKIP_DATAPLANE=1` skips it when it is
//! not required.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn required() -> bool {
    std::env::var("BGPVPN_REQUIRE_DATAPLANE").is_ok_and(|v| v == "1")
}

/// Skips (or fails, when required) with a reason.
fn skip(reason: &str) {
    if required() {
        panic!("BGPVPN_REQUIRE_DATAPLANE=1 but the dataplane tier cannot run: {reason}");
    }
    println!("SKIPPED: needs root / UML: {reason}");
}

fn is_root() -> bool {
    // the effective uid, without libc: /proc/self/status "Uid: real effective saved fs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0")))
        .unwrap_or(false)
}

#[test]
fn seed_demo_on_uml_with_frr() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runner = repo.join("hack/testbed/uml-guest.sh");
    let payload = repo.join("hack/dataplane/evpn-agent-e2e.sh");
    if !is_root() {
        return skip("not running as root");
    }
    if std::env::var("BGPVPN_SKIP_DATAPLANE").is_ok_and(|v| v == "1") {
        return skip("BGPVPN_SKIP_DATAPLANE=1");
    }
    for (path, what) in [
        ("/usr/lib/frr/zebra", "FRR (hack/dataplane/install-deps.sh)"),
        ("/usr/lib/frr/bgpd", "FRR (hack/dataplane/install-deps.sh)"),
        ("/usr/lib/frr/frr-reload.py", "frr-pythontools (hack/dataplane/install-deps.sh)"),
        ("/usr/bin/vtysh", "FRR (hack/dataplane/install-deps.sh)"),
        ("/usr/bin/python3", "python3 (hack/dataplane/install-deps.sh)"),
        ("/usr/bin/curl", "curl (hack/dataplane/install-deps.sh)"),
        ("/sbin/depmod", "kmod (hack/dataplane/install-deps.sh)"),
    ] {
        if !Path::new(path).exists() {
            return skip(&format!("{path} missing: install {what}"));
        }
    }
    // the guest shares this host's "/" read-only, so the binary is used where cargo built it
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_bgpvpn-agent"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("uml-dataplane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for p in [&runner, &payload, &agent, &out] {
        let s = p.display().to_string();
        assert!(
            !s.contains([' ', ',']) && !["/run/", "/var/log/", "/var/tmp/", "/dev/shm/"].iter().any(|d| s.starts_with(d)),
            "{s}: UML paths may not contain spaces/commas or lie under /run, /var/log, /var/tmp, /dev/shm"
        );
    }
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&runner)
        .arg(&payload)
        .arg(format!("AGENT={}", agent.display()))
        .env("UML_OUT", &out)
        .output()
        .expect("running uml-guest.sh");
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!("UML dataplane tier: {secs:.1} s (results in {})", out.display());
    let summary = stdout.lines().rev().find(|l| l.ends_with(" failed")).unwrap_or("");
    if let Some(m) = stdout.lines().find(|l| l.contains("MEASURED:")) {
        println!("{}", m.trim());
    }
    if stderr.contains("cannot mount") || output.status.code() == Some(125) && !stdout.contains("passed") {
        return skip(&format!("the UML guest did not run (exit {:?}): {}", output.status.code(), stderr.lines().last().unwrap_or("")));
    }
    assert!(output.status.success(), "dataplane tier failed (exit {:?}): {summary}", output.status.code());
    assert!(summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"), "unexpected summary: {summary:?}");
    let _ = std::fs::remove_dir_all(&out);
}
