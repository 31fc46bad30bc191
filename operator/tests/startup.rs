//! Startup of the real binary against a real kube-apiserver: refused with a clear message while
//! the CRDs are missing; with them, it runs without Kuryr (saying so once), picks the Kuryr CRDs
//! up when they are installed later, and stops cleanly on SIGTERM.
//!
//! One test, in steps: this binary's apiserver starts without the CRDs.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use kube::ResourceExt;
use serde_json::json;
use support::*;

fn operator() -> Command {
    let server = bgpvpn_testkit::server().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bgpvpn-operator"));
    cmd.env("KUBECONFIG", &server.kubeconfig)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

#[tokio::test]
async fn refuses_without_crds_then_runs_with_or_without_kuryr() {
    if bgpvpn_testkit::server().is_none() {
        return;
    }
    // 1. no CRDs yet: a clear message and a non-zero exit
    let out = operator()
        .args([
            "run",
            "--no-leader-election",
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(fixture("operator-config.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail without CRDs");
    assert!(
        stderr.contains("not installed")
            && stderr.contains("bgpvpns.bgpvpn.io")
            && stderr.contains("kubectl apply -f crds/"),
        "{stderr}"
    );

    // a bad configuration is refused too
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "underlay: {asn: 0}\n").unwrap();
    let out = operator()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("underlay.asn"));

    // 2. with the CRDs (and no Kuryr): runs, says once that Kuryr is absent
    let client = bgpvpn_testkit::client().await.unwrap();
    let log = dir.path().join("operator.log");
    let mut child = operator()
        .args([
            "run",
            "--no-leader-election",
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(fixture("operator-config.yaml"))
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = scopeguard(child.id());
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.30.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("startup");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    let net = "0b7d1c3e-5a4f-4e2d-8c1b-9a8f7e6d5c4b";
    binding(&client, &ns, "by-net", &vpn, json!({"networkId": net})).await;
    let b = wait_binding_ready_reason(&client, &ns, "by-net", "KuryrNotInstalled").await;
    assert!(
        condition(&b.status.unwrap().conditions, "Ready")
            .unwrap()
            .message
            .contains("Kuryr")
    );

    // 3. Kuryr installed while running: found, and the binding resolves
    install_kuryr_crds(&client).await;
    put_kuryr(&client, "KuryrNetwork", &ns, &ns, json!({"spec": {"nsName": ns, "projectId": "p", "nsLabels": {}}, "status": {"netId": net, "subnetCIDR": "10.30.0.0/24"}})).await;
    let pod = running_pod(&client, &ns, "web", json!({}), &n, "10.30.0.5").await;
    put_kuryr(&client, "KuryrPort", &ns, "web", json!({"spec": {"podUid": pod.uid().unwrap(), "podNodeName": n},
        "status": {"vifs": {"eth0": {"default": true, "vif": {"id": "0b7d1c3e-5a4f-4e2d-8c1b-9a8f7e6d5c01", "active": true,
            "network": {"id": net, "subnets": [{"ips": [{"address": "10.30.0.5"}]}]}}}}}})).await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.30.0.5"])]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("Kuryr CRDs not installed").count(),
        1,
        "said once:\n{text}"
    );
    assert!(text.contains("Kuryr CRDs found"), "{text}");

    // 4. SIGTERM: a clean stop
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .expect("stops")
    .unwrap();
    guard.disarm();
    assert!(
        status.success(),
        "{status:?}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Kills the process (by PID) if the test fails before it stopped.
struct Guard(Option<u32>);
fn scopeguard(pid: u32) -> Guard {
    Guard(Some(pid))
}
impl Guard {
    fn disarm(mut self) {
        self.0 = None;
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}
