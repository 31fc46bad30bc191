//! Leader election with two operator processes (the real binary) against a real
//! kube-apiserver: one leads, the other stands by; the leader is killed (SIGKILL, by its PID)
//! and the standby takes over and keeps reconciling; a graceful stop (SIGTERM) releases the
//! Lease and exits 0.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use serde_json::json;
use support::*;

/// An operator process, killed (by its PID) when dropped.
struct OperatorProcess {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(name: &str, lease: &str, dir: &Path) -> OperatorProcess {
    let server = bgpvpn_testkit::server().unwrap();
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_bgpvpn-operator"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(fixture("operator-config.yaml"))
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--lease-namespace",
            "default",
            "--lease-name",
            lease,
        ])
        .args([
            "--lease-duration-seconds",
            "3",
            "--renew-deadline-seconds",
            "2",
            "--retry-period-seconds",
            "0.5",
        ])
        .env("KUBECONFIG", &server.kubeconfig)
        .env("POD_NAME", name)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the operator binary");
    OperatorProcess {
        child,
        metrics: format!("http://127.0.0.1:{port}"),
        log,
    }
}

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// The value of a metric line (`name{labels} value`).
async fn metric(op: &OperatorProcess, line_prefix: &str) -> Option<f64> {
    let (_, text) = get(&format!("{}/metrics", op.metrics)).await?;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn holder(client: &Client, lease: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "default");
    api.get_opt(lease).await.ok().flatten()?.spec?.holder_identity
}

async fn wait_holder(client: &Client, lease: &str, want: Option<&str>) {
    bgpvpn_testkit::wait_for(&format!("lease holder {want:?}"), TIMEOUT, || async {
        let h = holder(client, lease).await;
        (h.as_deref().filter(|h| !h.is_empty()) == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_standby_takes_over_when_the_leader_dies() {
    let client = bgpvpn_testkit::client_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let lease = bgpvpn_testkit::unique_name("bgpvpn-operator");
    let a = start("operator-a", &lease, dir.path());
    wait_holder(&client, &lease, Some("operator-a")).await;
    let b = start("operator-b", &lease, dir.path());
    bgpvpn_testkit::wait_for("b serves /readyz", TIMEOUT, || async {
        get(&format!("{}/readyz", b.metrics))
            .await
            .filter(|(c, _)| *c == 200)
    })
    .await;
    assert_eq!(
        metric(&b, "bgpvpn_operator_leader ").await,
        Some(0.0),
        "b stands by"
    );
    assert_eq!(metric(&a, "bgpvpn_operator_leader ").await, Some(1.0), "a leads");
    assert_eq!(
        get(&format!("{}/healthz", a.metrics)).await.map(|r| r.0),
        Some(200)
    );

    // the leader reconciles
    let ns = namespace(&client, json!({})).await;
    let n = node(&client, "172.31.20.1", json!({})).await;
    let vpn = bgpvpn_testkit::unique_name("ha");
    let vni = unique_vni();
    bgpvpn(&client, &vpn, vni, json!({})).await;
    binding(&client, &ns, "web", &vpn, selector("web")).await;
    running_pod(&client, &ns, "p1", json!({"app": "web"}), &n, "10.20.0.1").await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.20.0.1"])]).await;
    assert_eq!(
        metric(&b, "bgpvpn_operator_node_state_writes_total{op=\"apply\"}").await,
        None,
        "the standby wrote nothing"
    );

    // kill the leader (SIGKILL, by its PID): the standby takes over after the lease expires
    let mut a = a;
    let pid_a = a.child.id();
    a.child.kill().unwrap();
    let status = a.child.wait().unwrap();
    assert!(!status.success(), "operator-a (pid {pid_a}) was killed");
    wait_holder(&client, &lease, Some("operator-b")).await;
    bgpvpn_testkit::wait_for("b leads", TIMEOUT, || async {
        (metric(&b, "bgpvpn_operator_leader ").await == Some(1.0)).then_some(())
    })
    .await;

    // and keeps reconciling
    running_pod(&client, &ns, "p2", json!({"app": "web"}), &n, "10.20.0.2").await;
    wait_endpoints(&client, &n, &[vni], &[(vni, &["10.20.0.1", "10.20.0.2"])]).await;
    wait_binding(&client, &ns, "web", "2 endpoints", |b| {
        b.status.as_ref().is_some_and(|s| s.endpoints == 2)
    })
    .await;
    bgpvpn_testkit::wait_for("b counted its writes", TIMEOUT, || async {
        (metric(&b, "bgpvpn_operator_node_state_writes_total{op=\"apply\"}")
            .await
            .unwrap_or_default()
            >= 1.0)
            .then_some(())
    })
    .await;

    // graceful stop: SIGTERM by PID, exit 0, the lease released for the next replica
    let mut b = b;
    let term = Command::new("kill")
        .args(["-TERM", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || {
        let s = b.child.wait().unwrap();
        (s, b)
    });
    let (status, b) = tokio::time::timeout(Duration::from_secs(20), status)
        .await
        .expect("operator-b stops within 20s")
        .unwrap();
    assert!(status.success(), "graceful stop exits 0: {status:?}");
    wait_holder(&client, &lease, None).await;

    // structured logs: every line of the JSON log is a JSON object
    let lines: Vec<String> = BufReader::new(std::fs::File::open(&b.log).unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("acquired the lease")),
        "{}",
        lines.join("\n")
    );
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
    }
    drop(b);
}
