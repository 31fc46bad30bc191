//! The seed story end to end: `hack/lab.sh` on real parts (kube-apiserver, operator, agent, FRR 10
//! in the node guest), which asserts every observation and exits non-zero on the first that does
//! not hold. By default the node guest is a real Kubernetes node (kubelet, containerd, CNI) and the
//! chart runs there, installed with Helm; the OpenStack variant runs the agent as a process.
//! Root only: it creates network namespaces, a tap device and the node guest
//! (`hack/testbed/guest.sh`).

use std::process::{Command, Stdio};

use bgpvpn_testkit::built_binary;

/// One lab at a time: each boots a node guest, and two on 2 cores would only slow each other.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `hack/lab.sh args`; asserts it passed, left nothing running and printed `expected` too.
fn run_lab(args: &[&str], expected: &[&str]) {
    let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root {
        assert!(
            std::env::var("BGPVPN_REQUIRE_DATAPLANE").as_deref() != Ok("1"),
            "BGPVPN_REQUIRE_DATAPLANE=1 but not root"
        );
        eprintln!("SKIPPED: the lab needs root (network namespaces, tap, user-mode-linux)");
        return;
    }
    let (operator, agent) = (built_binary("bgpvpn-operator"), built_binary("bgpvpn-agent"));
    let root = bgpvpn_testkit::repo_root();
    let out = Command::new(root.join("hack/lab.sh"))
        .args(args)
        .env("OPERATOR_BIN", &operator)
        .env("AGENT_BIN", &agent)
        .stdin(Stdio::null())
        .output()
        .expect("run hack/lab.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hack/lab.sh {args:?} failed");
    // every process the lab started is gone: none still has its run directory as cwd or in its
    // command line (processes may take a moment to exit after their parent's cleanup)
    let run_dir = stdout
        .lines()
        .find_map(|l| l.split("run directory ").nth(1))
        .expect("hack/lab.sh names its run directory")
        .trim()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let leftovers = processes_using(&run_dir);
        if leftovers.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left behind by the lab: {leftovers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for line in [
        "OK  pod -> 20.0.0.100:8080 answers: hello from vm1",
        "OK  vm1 -> pod 10.0.0.84:8080 answers: hello from pod web",
        "OK  pod -> 20.0.0.100:8080 no longer answers",
        "OK  pod -> 20.0.0.100:8080: now the OTHER vm answers: hello from vm2",
        "the seed story held on real parts",
    ]
    .iter()
    .chain(expected)
    {
        assert!(stdout.contains(line), "missing {line:?}");
    }
}

fn processes_using(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if cwd.starts_with(dir) || cmdline.contains(dir) {
            found.push(format!("{pid}: {}", cmdline.trim()));
        }
    }
    found
}

/// The README's main command: the chart's pods on a real node (FRR in the router pod), the demo
/// pod from CNI at 10.0.0.84, and the agent pod replaced during a flow without a kernel write and
/// without a lost ping.
#[test]
fn seed_story_with_kubectl_on_a_real_node() {
    run_lab(
        &[],
        &[
            "Ready: kubelet v1.",
            "operator, agent and router running; the router pod's FRR: 10.",
            "OK  web Running 10.0.0.84 on lab-node-a",
            "pings answered, its first pass wrote 0 kernel objects",
        ],
    );
}

/// The BGPVPNs and router associations are made in a real neutron-server and reach the cluster
/// through the OpenStack sync; the pod's network is resolved through Kuryr's objects.
#[test]
fn seed_story_through_neutron_and_kuryr() {
    run_lab(&["--openstack"], &[]);
}
