//! The dataplane tier: the seed demo on a real VRF kernel (the node guest: user-mode-linux 7.x or
//! QEMU, on a Debian trixie root) with real FRR 10, driven through the real `bgpvpn-agent` binary.
//!
//! Runs `hack/testbed/guest.sh run hack/dataplane/evpn-agent-e2e.sh AGENT=<this crate's
//! binary>` and asserts that every check in it passed. Needs root and a prepared guest
//! (`hack/testbed/guest.sh prepare`, which `hack/test.sh` runs); without them it prints
//! `SKIPPED: ...` and passes, unless `BGPVPN_REQUIRE_DATAPLANE=1` (CI), in which case it fails.
//!
//!     sudo BGPVPN_REQUIRE_DATAPLANE=1 cargo test -p bgpvpn-agent --test dataplane_guest -- --nocapture
//!
//! As root it runs by default (about 1-2 minutes); `BGPVPN_SKIP_DATAPLANE=1` skips it when it is
//! not required. `GUEST_KERNEL=qemu` runs it on the QEMU fallback.

use std::path::PathBuf;
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
    println!("SKIPPED: needs root and the node guest: {reason}");
}

fn is_root() -> bool {
    // the effective uid, without libc: /proc/self/status "Uid: real effective saved fs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn seed_demo_in_the_node_guest_with_frr() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runner = repo.join("hack/testbed/guest.sh");
    let payload = repo.join("hack/dataplane/evpn-agent-e2e.sh");
    if !is_root() {
        return skip("not running as root");
    }
    if std::env::var("BGPVPN_SKIP_DATAPLANE").is_ok_and(|v| v == "1") {
        return skip("BGPVPN_SKIP_DATAPLANE=1");
    }
    let versions = Command::new("bash")
        .arg(&runner)
        .arg("versions")
        .output()
        .expect("running guest.sh versions");
    if !versions.status.success() {
        return skip(&format!(
            "the node guest is not prepared (hack/testbed/guest.sh prepare): {}",
            String::from_utf8_lossy(&versions.stderr).trim()
        ));
    }
    println!("node guest: {}", String::from_utf8_lossy(&versions.stdout).trim());
    // the guest sees the host paths it is given at the same place: the binary is used where cargo built it
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_bgpvpn-agent"));
    let out =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("guest-dataplane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for p in [&runner, &payload, &agent, &out] {
        let s = p.display().to_string();
        assert!(
            !s.contains([' ', ','])
                && !["/run/", "/var/log/", "/var/tmp/", "/dev/shm/"]
                    .iter()
                    .any(|d| s.starts_with(d)),
            "{s}: guest paths may not contain spaces/commas or lie under /run, /var/log, /var/tmp, /dev/shm"
        );
    }
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&runner)
        .arg("run")
        .arg(&payload)
        .arg(format!("AGENT={}", agent.display()))
        .env("GUEST_OUT", &out)
        .output()
        .expect("running guest.sh");
    let secs = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!(
        "dataplane tier in the node guest: {secs:.1} s (results in {})",
        out.display()
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or("");
    if let Some(m) = stdout.lines().find(|l| l.contains("MEASURED:")) {
        println!("{}", m.trim());
    }
    if stderr.contains("cannot mount") || output.status.code() == Some(125) && !stdout.contains("passed") {
        return skip(&format!(
            "the node guest did not run (exit {:?}): {}",
            output.status.code(),
            stderr.lines().last().unwrap_or("")
        ));
    }
    assert!(
        output.status.success(),
        "dataplane tier failed (exit {:?}): {summary}",
        output.status.code()
    );
    assert!(
        summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "unexpected summary: {summary:?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
