//! Kubernetes mode against a real kube-apiserver and FRR 10: the agent watches its own
//! EVPNNodeState (field selector on the name), programs it, writes the status by server-side
//! apply, reports a kernel failure in the status, and keeps running (dataplane untouched) while
//! the API server is gone.
//!
//! One test binary plays both sides. On the host, the test boots the node guest's trixie root on
//! the host kernel (`hack/testbed/guest.sh chroot hack/dataplane/kube-bed.sh`), which starts the
//! API server and FRR in a network namespace of its own and runs this same binary there with
//! `BGPVPN_IN_GUEST=<test name>`; inside, the test body starts the agent and checks it. The host
//! kernel is used on purpose when it has no VRF: a kernel error must then reach the status. Needs
//! root, a prepared guest root and a built API server; otherwise prints `SKIPPED: ...` and passes,
//! unless `BGPVPN_REQUIRE_APISERVER=1` or `BGPVPN_REQUIRE_DATAPLANE=1` (hack/test.sh as root), in
//! which case a missing API server is built first and any other gap fails.

mod guest;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bgpvpn_crds::EvpnNodeState;
use bgpvpn_crds::conditions::types;
use bgpvpn_testkit::wait_for;
use guest::is_root;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const SCENARIO: &str = "watches_own_object_and_writes_status_by_ssa";
const AGENT_HTTP: &str = "127.0.0.1:9470";
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn watches_own_object_and_writes_status_by_ssa() {
    if std::env::var("BGPVPN_IN_GUEST").is_ok_and(|s| s == SCENARIO) {
        return in_the_bed().await;
    }
    boot();
}

fn required() -> bool {
    // an apiserver test and a dataplane (agent) test at once: either flag makes it required
    ["BGPVPN_REQUIRE_APISERVER", "BGPVPN_REQUIRE_DATAPLANE"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1"))
}

fn skip(why: &str) {
    assert!(
        !required(),
        "BGPVPN_REQUIRE_DATAPLANE=1 but the Kubernetes-mode test cannot run: {why}"
    );
    println!("SKIPPED: needs root / kube-apiserver: {why}");
}

/// On the host: starts the bed with this binary inside and asserts that the test passed there.
fn boot() {
    if !is_root() {
        return skip("not running as root");
    }
    if std::env::var("BGPVPN_SKIP_DATAPLANE").is_ok_and(|v| v == "1") && !required() {
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
    if required() {
        // built on the host (Go toolchain, downloads); the chroot only starts it (no kubelet)
        let built = Command::new("bash")
            .arg(repo.join("hack/testbed/kube-apiserver.sh"))
            .args(["build", "kube-apiserver", "kubectl"])
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
    let me = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("bash")
        .arg(&guest)
        .arg("chroot")
        .arg(repo.join("hack/dataplane/kube-bed.sh"))
        .arg(format!("RUN={}", me.display()))
        .arg(format!("SCENARIO={SCENARIO}"))
        .arg(format!("TESTBED_CACHE={cache}"))
        .output()
        .expect("running kube-bed.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        return skip("kube-apiserver is not built (hack/testbed/kube-apiserver.sh build)");
    }
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "the Kubernetes-mode test failed in the bed (exit {:?})",
        out.status.code()
    );
}

/// The bed as kube-bed.sh started it.
struct KubeBed {
    node: String,
    pathspace: String,
    work: PathBuf,
    apiserver_run: PathBuf,
    started: Instant,
}

impl KubeBed {
    fn from_env() -> Self {
        let var =
            |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through kube-bed.sh"));
        KubeBed {
            node: var("KUBE_BED_NODE"),
            pathspace: var("KUBE_BED_PATHSPACE"),
            work: PathBuf::from(var("KUBE_BED_WORK")),
            apiserver_run: PathBuf::from(var("KUBE_BED_APISERVER")),
            started: Instant::now(),
        }
    }

    fn log(&self, what: &str) {
        println!("[{:6.1}s] == {what}", self.started.elapsed().as_secs_f64());
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.work.join("agent.log")).unwrap_or_default()
    }

    /// The agent of this node, in Kubernetes mode, with its PID where kube-bed.sh's trap finds it.
    fn start_agent(&self) -> Child {
        let (w, ps) = (self.work.display().to_string(), &self.pathspace);
        let log = std::fs::File::create(self.work.join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bgpvpn-agent"))
            .args(["run", "--state-dir", &format!("{w}/state"), "--frr-pathspace", ps])
            .args([
                "--frr-confdir",
                &w,
                "--frr-rundir",
                &w,
                "--frr-statedir",
                &format!("/run/frr/{ps}"),
            ])
            .args([
                "--frr-preamble",
                &format!("{w}/{ps}/preamble.conf"),
                "--metrics-addr",
                AGENT_HTTP,
            ])
            .env("NODE_NAME", &self.node)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting bgpvpn-agent");
        std::fs::write(self.work.join("pids/agent.pid"), child.id().to_string()).unwrap();
        child
    }
}

fn object(node: &str, with_vrf: bool) -> serde_json::Value {
    let mut spec = json!({"underlay": {"asn": 65001, "routerId": "172.30.0.1", "vtepIp": "172.30.0.1",
        "neighbors": [{"address": "172.30.0.2", "remoteAsn": 64999}]}});
    if with_vrf {
        spec["l3vnis"] = json!([{"vni": 1001, "vrf": "vrf-blue", "importTargets": ["65000:1001"],
            "exportTargets": ["65000:1001"], "routeDistinguisher": "172.30.0.1:1001"}]);
    }
    json!({"apiVersion": "bgpvpn.io/v1alpha1", "kind": "EVPNNodeState", "metadata": {"name": node}, "spec": spec})
}

/// Whether the status describes `generation` with condition `type_` = `status`.
fn reports(obj: &EvpnNodeState, generation: i64, type_: &str, status: &str) -> bool {
    obj.status.as_ref().is_some_and(|st| {
        st.observed_generation == Some(generation)
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status && c.observed_generation == Some(generation))
    })
}

fn healthz_ok() -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "2", &format!("http://{AGENT_HTTP}/healthz")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Inside the bed's network namespace: the agent against the real API server and FRR.
async fn in_the_bed() {
    let bed = KubeBed::from_env();
    let client = kube::Client::try_default()
        .await
        .expect("a client from KUBECONFIG");
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/evpnnodestate.yaml");
    bgpvpn_testkit::apply_crd_file(&client, &crd).await;
    bed.log("CRD established");

    let states: Api<EvpnNodeState> = Api::all(client.clone());
    let apply = |with_vrf: bool| {
        let (states, node) = (states.clone(), bed.node.clone());
        async move {
            states
                .patch(
                    &node,
                    &PatchParams::apply("kube-mode-test"),
                    &Patch::Apply(object(&node, with_vrf)),
                )
                .await
                .expect("apply the EVPNNodeState")
        }
    };
    let get = || {
        let (states, node) = (states.clone(), bed.node.clone());
        async move { states.get(&node).await.ok() }
    };
    let first = apply(false).await;
    assert_eq!(first.metadata.generation, Some(1));
    // another node's object: the agent must not act on it (its watch selects its own by name)
    let other = format!("{}-other", bed.node);
    states
        .patch(
            &other,
            &PatchParams::apply("kube-mode-test"),
            &Patch::Apply(object(&other, true)),
        )
        .await
        .unwrap();
    let mut agent = bed.start_agent();

    let st = wait_for(
        "generation 1: Ready=True written by the agent",
        TIMEOUT,
        || async { get().await.filter(|o| reports(o, 1, types::READY, "True")) },
    )
    .await;
    bed.log("generation 1: Ready=True written by the agent");
    let frr = st
        .status
        .as_ref()
        .and_then(|s| s.frr.as_ref())
        .map(|f| f.result.as_str());
    assert!(
        matches!(frr, Some("Applied" | "Unchanged")),
        "status.frr: {frr:?}"
    );
    assert!(reports(&st, 1, types::FRR_APPLIED, "True"));
    let by_agent = st
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|f| f.manager.as_deref() == Some("bgpvpn-agent") && f.operation.as_deref() == Some("Apply"));
    assert!(
        by_agent,
        "the status is not written by server-side apply as bgpvpn-agent"
    );
    bed.log("FrrApplied=True; status written by server-side apply, field manager bgpvpn-agent");

    apply(true).await;
    let st = wait_for("generation 2: DataplaneProgrammed=False", TIMEOUT, || async {
        get()
            .await
            .filter(|o| reports(o, 2, types::DATAPLANE_PROGRAMMED, "False"))
    })
    .await;
    assert!(reports(&st, 2, types::READY, "False"));
    let message = st
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.type_ == types::DATAPLANE_PROGRAMMED)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    bed.log(&format!(
        "generation 2 (a VRF on a kernel without VRF): DataplaneProgrammed=False: {message:.160}"
    ));
    let others = states
        .list(&ListParams::default().fields(&format!("metadata.name={other}")))
        .await
        .unwrap();
    assert!(
        others.items.iter().all(|o| o.status.is_none()),
        "the agent wrote another node's status"
    );

    bed.log("stop the API server");
    let stopped =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/testbed/kube-apiserver.sh"))
            .arg("stop")
            .arg(&bed.apiserver_run)
            .status()
            .unwrap();
    assert!(stopped.success());
    wait_for(
        "the agent logged the watch failure and kept the dataplane",
        TIMEOUT,
        || async {
            bed.agent_log()
                .contains("keeping the dataplane as it is")
                .then_some(())
        },
    )
    .await;
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent exited without the API server"
    );
    assert!(healthz_ok(), "the agent is not healthy without the API server");
    bed.log("the agent runs on, healthy, without the API server");

    let term = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = wait_for("the agent exits on SIGTERM", Duration::from_secs(10), || {
        let done = agent.try_wait().unwrap();
        async move { done }
    })
    .await;
    bed.log(&format!("the agent exited on SIGTERM ({exited})"));
}
