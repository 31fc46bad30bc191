//! Kubernetes mode against a real kube-apiserver (`hack/testbed/kube-apiserver.sh`):
//! runs `hack/dataplane/kube-mode.sh` with this crate's binary and FRR 10, inside the node
//! guest's trixie root on the host kernel (`hack/testbed/guest.sh chroot`). Needs root, a prepared
//! guest root and a built API server; otherwise prints `SKIPPED: ...` and passes, unless
//! `BGPVPN_REQUIRE_APISERVER=1` or `BGPVPN_REQUIRE_DATAPLANE=1` (hack/test.sh as root), in which
//! case a missing API server is built first and any other gap fails.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn watches_own_object_and_writes_status_by_ssa() {
    // an apiserver test and a dataplane (agent) test at once: either flag makes it required
    let required = ["BGPVPN_REQUIRE_APISERVER", "BGPVPN_REQUIRE_DATAPLANE"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1"));
    let skip = |why: &str| {
        assert!(
            !required,
            "BGPVPN_REQUIRE_DATAPLANE=1 but the Kubernetes-mode test cannot run: {why}"
        );
        println!("SKIPPED: needs root / kube-apiserver: {why}");
    };
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false);
    if !root {
        return skip("not running as root");
    }
    if std::env::var("BGPVPN_SKIP_DATAPLANE").is_ok_and(|v| v == "1") && !required {
        return skip("BGPVPN_SKIP_DATAPLANE=1");
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let guest = repo.join("hack/testbed/guest.sh");
    if !Command::new("bash")
        .arg(&guest)
        .arg("versions")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return skip("the guest root is not prepared (hack/testbed/guest.sh prepare)");
    }
    let kube_apiserver = repo.join("hack/testbed/kube-apiserver.sh");
    if required {
        // built on the host (Go toolchain, downloads); the chroot only starts it
        let built = Command::new("bash")
            .arg(&kube_apiserver)
            .arg("build")
            .status()
            .expect("running kube-apiserver.sh build");
        assert!(built.success(), "kube-apiserver.sh build failed");
    }
    let cache = std::env::var("TESTBED_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/bgpvpn-operator",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    let mut cmd = Command::new("bash");
    cmd.arg(&guest)
        .arg("chroot")
        .arg(repo.join("hack/dataplane/kube-mode.sh"))
        .arg(format!("AGENT={}", env!("CARGO_BIN_EXE_bgpvpn-agent")))
        .arg(format!("TESTBED_CACHE={cache}"));
    let out = cmd.output().expect("running kube-mode.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        return skip("kube-apiserver is not built (hack/testbed/kube-apiserver.sh build)");
    }
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.ends_with(" failed"))
        .unwrap_or("");
    assert!(
        out.status.success() && summary.ends_with(" 0 failed"),
        "Kubernetes-mode test failed: {summary}"
    );
}
