//! A real Kubernetes node: the node guest runs containerd and the kubelet
//! (`hack/testbed/node/node.sh`), and the kubelet registers the Node itself with a real
//! kube-apiserver reached over a tap, authenticated as `system:node:<name>` and authorized by the
//! Node authorizer. A pod pinned to that node gets its IP from CNI and serves HTTP, fetched from
//! the apiserver's network namespace through the node.
//!
//! Root only (network namespace, tap, the node guest); without root, a built kubelet or a
//! prepared guest it prints `SKIPPED: ...`, unless `BGPVPN_REQUIRE_DATAPLANE=1`.
//! `NODE_TEST_KEEP=1` keeps the run directory (logs of the guest, containerd and the kubelet).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOST_IP: &str = "10.98.0.1";
const NODE_IP: &str = "10.98.0.2";
const POD_CIDR: &str = "10.244.0.0/24";
const POD_PREFIX: &str = "10.244.0.";

fn required() -> bool {
    std::env::var("BGPVPN_REQUIRE_DATAPLANE").is_ok_and(|v| v == "1")
}

fn skip(reason: &str) {
    assert!(
        !required(),
        "BGPVPN_REQUIRE_DATAPLANE=1 but the node test cannot run: {reason}"
    );
    println!("SKIPPED: needs root, the node guest and a kubelet: {reason}");
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .trim()
    .to_string()
}

/// stdout of a testbed script (a path or a line of versions), or why it could not run.
fn script_out(repo: &Path, script: &str, args: &[&str]) -> Result<String, String> {
    let o = Command::new(repo.join(script))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!("{script} {}: {}", args.join(" "), text(&o)))
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(o.status.success(), "{cmd:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything one run started; dropped (also on a failed assertion) it stops the guest, the
/// apiserver and removes the namespace. A watcher process does the same if the test binary is
/// killed.
struct Bed {
    repo: PathBuf,
    ns: String,
    node: String,
    dir: PathBuf,
    kubectl: PathBuf,
    guest: Option<Child>,
    /// When the guest was started.
    booted: Instant,
    /// Commands run on the node so far.
    execs: u32,
}

impl Bed {
    fn out(&self) -> PathBuf {
        self.dir.join("guest-out")
    }

    fn kube(&self) -> PathBuf {
        self.dir.join("kube")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.kube().join("kubeconfig"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        if !o.status.success() {
            self.fail(&format!("kubectl {} failed: {}", args.join(" "), text(&o)));
        }
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `kubectl wait <args>` (a watch); fails as soon as the guest is gone instead of waiting
    /// out the timeout.
    fn wait(&mut self, args: &[&str]) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.kube().join("kubeconfig"))
            .arg("wait")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl wait");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let o = child.wait_with_output().expect("kubectl wait output");
                if !status.success() {
                    self.fail(&format!("kubectl wait {} failed: {}", args.join(" "), text(&o)));
                }
                return;
            }
            if let Some(status) = self.guest_exited() {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!(
                    "the node guest exited ({status}) during kubectl wait {}",
                    args.join(" ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `script` (bash) on the node: its exit code and output (node.sh's exec channel; this
    /// bed has no `kubectl exec`).
    fn on_node(&mut self, script: &str) -> (i32, String) {
        self.on_node_within(script, 60)
    }

    /// [`Self::on_node`] for a script bounded by itself to `secs`: the node gets a minute more,
    /// so the script's own message is what a slow node reports.
    fn on_node_within(&mut self, script: &str, secs: u64) -> (i32, String) {
        self.execs += 1;
        let dir = self.out().join("exec");
        let tmp = dir.join(format!("{}.sh.tmp", self.execs));
        std::fs::write(&tmp, script).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{}.sh", self.execs))).unwrap();
        let rc = dir.join(format!("{}.rc", self.execs));
        if !poll(secs + 60, || rc.exists() || self.guest_exited().is_some()) || !rc.exists() {
            self.fail(&format!("the node did not run {script:?}"));
        }
        let out = std::fs::read_to_string(dir.join(format!("{}.out", self.execs))).unwrap_or_default();
        let code = std::fs::read_to_string(&rc).unwrap().trim().parse().unwrap_or(-1);
        (code, out)
    }

    /// `helm <args>` against this bed's apiserver, in the release's namespace.
    fn helm(&self, helm: &str, args: &[&str], repo: &Path) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, helm]).args(args);
        if matches!(args.first(), Some(&"install") | Some(&"upgrade")) {
            c.arg(repo.join("charts/bgpvpn-operator"));
        }
        c.args(["--namespace", RELEASE_NS, "--kubeconfig"])
            .arg(self.kube().join("kubeconfig"))
            .stdin(Stdio::null())
            .output()
            .expect("helm")
    }

    /// The agent pod that replaced `old`, once it is Ready.
    fn wait_new_agent(&mut self, old: &str) -> String {
        let mut new = String::new();
        if !poll(300, || {
            new = agent_pod(self);
            !new.is_empty() && new != old && !new.contains(' ')
        }) {
            self.fail(&format!("no agent pod replaced {old}"));
        }
        self.wait(&[
            "--for=condition=Ready",
            &format!("pod/{new}"),
            "-n",
            RELEASE_NS,
            "--timeout=300s",
        ]);
        new
    }

    /// The first `pass done` line of an agent pod's log (the node writes the containers' logs).
    fn first_pass(&mut self, pod: &str) -> String {
        let pods = self.out().join("pods");
        let mut line = None;
        let found = poll(120, || {
            line = std::fs::read_dir(&pods)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(&format!("_{pod}_")))
                .filter_map(|e| std::fs::read_to_string(e.path().join("agent/0.log")).ok())
                .find_map(|log| {
                    log.lines()
                        .find(|l| l.contains(r#""message":"pass done""#))
                        .map(str::to_string)
                });
            line.is_some()
        });
        if !found {
            self.fail(&format!("no pass of {pod} in its log"));
        }
        line.unwrap()
    }

    fn guest_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.guest.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Prints what the node and the apiserver say, then fails the test.
    fn fail(&self, what: &str) -> ! {
        for f in ["guest.log", "guest-out/containerd.log", "guest-out/kubelet.log"] {
            let s = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            println!("---- {f} (tail)");
            for l in s.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
                println!("{l}");
            }
        }
        // the containers' logs, as the node writes them (no `kubectl logs` here)
        let mut logs = Vec::new();
        let mut dirs = vec![self.out().join("pods")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    logs.push(p);
                }
            }
        }
        logs.sort();
        for p in logs {
            let s = std::fs::read_to_string(&p).unwrap_or_default();
            println!("---- {} (tail)", p.display());
            for l in s.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev() {
                println!("{l}");
            }
        }
        println!("---- kubectl describe nodes,pods");
        println!("{}", text(&self.kubectl(&["describe", "nodes,pods", "-A"])));
        panic!("{what} (logs in {})", self.dir.display());
    }

    fn stop_guest(&mut self) {
        let Some(mut child) = self.guest.take() else {
            return;
        };
        // the payload stops the kubelet and containerd and the guest powers off
        let _ = std::fs::write(self.out().join("stop"), "");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // guest.sh kills the guest's process group on TERM
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop_guest();
        let _ = Command::new(self.repo.join("hack/testbed/kube-apiserver.sh"))
            .arg("stop")
            .arg(self.kube())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        if std::env::var_os("NODE_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn suffix() -> String {
    let mut b = [0u8; 3];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// Polls `cond` every 50 ms until it holds or `secs` pass.
fn poll(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a node bed starts besides the apiserver and the node.
#[derive(Default)]
struct NodeOptions {
    /// kube-controller-manager and kube-scheduler: Deployments, DaemonSets, service accounts.
    controllers: bool,
    /// More OCI archives for the node's containerd.
    extra_images: Vec<String>,
    /// The guest's memory (guest.sh's default when `None`).
    memory: Option<&'static str>,
}

/// One node bed at a time: two UML guests and their apiservers on two cores only slow each other.
static ONE_BED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A netns with a tap, a real apiserver on it and the node guest on the other end, its kubelet
/// registered and its Node Ready. `None`: skipped (not root, nothing built), said so.
fn start_node(opts: NodeOptions) -> Option<Bed> {
    if !is_root() {
        skip("not running as root");
        return None;
    }
    let repo = bgpvpn_testkit::repo_root();
    let found = (|| {
        let kubelet = script_out(&repo, "hack/testbed/kube-apiserver.sh", &["kubelet"])?;
        let kubectl = script_out(&repo, "hack/testbed/kube-apiserver.sh", &["kubectl"])?;
        let versions = script_out(&repo, "hack/testbed/guest.sh", &["versions"])?;
        // built here if missing: local files only, no download
        let images = script_out(&repo, "hack/testbed/node/images.sh", &[])?;
        Ok::<_, String>((kubelet, PathBuf::from(kubectl), versions, images))
    })();
    let (kubelet, kubectl, versions, images) = match found {
        Ok(f) => f,
        Err(e) => {
            skip(&e);
            return None;
        }
    };
    println!("node guest: {versions}");

    let sfx = suffix();
    let dir = tempfile::Builder::new()
        .prefix("bgpvpn-node-")
        .tempdir_in("/tmp") // not /run or /var/tmp: the guest mounts its own there
        .expect("tempdir")
        .keep();
    std::fs::create_dir_all(dir.join("guest-out")).unwrap();
    let mut bed = Bed {
        repo: repo.clone(),
        ns: format!("bgpvpn-node-{sfx}"),
        node: format!("node-{sfx}"),
        dir,
        kubectl,
        guest: None,
        booted: Instant::now(),
        execs: 0,
    };
    // the backstop if this binary is killed: the same cleanup once its PID is gone
    let watcher = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         g=$(cat {dir}/guest.pid 2>/dev/null) && grep -q guest.sh /proc/$g/cmdline && kill $g; \
         {api} stop {dir}/kube >/dev/null 2>&1; ip netns del {ns} 2>/dev/null; {rm}",
        pid = std::process::id(),
        dir = bed.dir.display(),
        api = repo.join("hack/testbed/kube-apiserver.sh").display(),
        ns = bed.ns,
        rm = if std::env::var_os("NODE_TEST_KEEP").is_none() {
            format!("rm -rf {}", bed.dir.display())
        } else {
            String::new()
        },
    );
    // it outlives this process by design: never waited for
    #[allow(clippy::zombie_processes)]
    let _watcher = Command::new("bash")
        .args(["-c", &watcher])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cleanup watcher");

    let tap = format!("ntap{sfx}");
    for args in [
        vec!["netns", "add", &bed.ns],
        vec!["-n", &bed.ns, "link", "set", "lo", "up"],
        vec!["-n", &bed.ns, "tuntap", "add", "dev", &tap, "mode", "tap"],
        vec!["-n", &bed.ns, "addr", "add", "10.98.0.1/24", "dev", &tap],
        vec!["-n", &bed.ns, "link", "set", &tap, "up"],
        // the pods are reached through the node
        vec!["-n", &bed.ns, "route", "add", POD_CIDR, "via", NODE_IP],
    ] {
        run_ok(Command::new("ip").args(&args));
    }
    let controllers = if opts.controllers { "1" } else { "" };
    let o = Command::new("ip")
        .args(["netns", "exec", &bed.ns])
        .arg(repo.join("hack/testbed/kube-apiserver.sh"))
        .arg("start")
        .arg(bed.kube())
        .env("KUBE_BIND_ADDRESS", HOST_IP)
        .env("KUBE_NODES", &bed.node)
        .env("KUBE_CONTROLLER_MANAGER", controllers)
        .env("KUBE_SCHEDULER", controllers)
        // all of them: a real kubelet registers its Node tainted not-ready, and only the
        // node-lifecycle controller lifts that
        .env("KUBE_CONTROLLERS", if opts.controllers { "*" } else { "" })
        .stdin(Stdio::null())
        .output()
        .expect("kube-apiserver.sh start");
    assert!(o.status.success(), "kube-apiserver.sh start: {}", text(&o));
    println!("{}", String::from_utf8_lossy(&o.stderr).trim());
    let kubelet_kubeconfig = bed.kube().join(format!("kubelet-{}.kubeconfig", bed.node));

    // the kubelet's credentials are a node's, and nothing more
    let whoami = Command::new("ip")
        .args(["netns", "exec", &bed.ns])
        .arg(&bed.kubectl)
        .arg("--kubeconfig")
        .arg(&kubelet_kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .output()
        .expect("kubectl auth whoami");
    let whoami = text(&whoami);
    assert!(
        whoami.starts_with(&format!("system:node:{} ", bed.node)) && whoami.contains("system:nodes"),
        "the kubelet's identity: {whoami}"
    );

    let log = std::fs::File::create(bed.dir.join("guest.log")).unwrap();
    bed.booted = Instant::now();
    let mut guest = Command::new("ip");
    guest
        .args(["netns", "exec", &bed.ns])
        .arg(repo.join("hack/testbed/guest.sh"))
        .arg("run")
        .arg(repo.join("hack/testbed/node/node.sh"))
        .arg(format!("NODE_NAME={}", bed.node))
        .arg(format!("NODE_IP={NODE_IP}"))
        .arg(format!("POD_CIDR={POD_CIDR}"))
        .arg(format!("KUBELET={kubelet}"))
        .arg(format!("KUBELET_KUBECONFIG={}", kubelet_kubeconfig.display()))
        .arg(format!("IMAGES={images}"))
        .arg(format!("EXTRA_IMAGES={}", opts.extra_images.join(" ")))
        .env("TAP", &tap)
        .env("GUEST_OUT", bed.out())
        .env("GUEST_TIMEOUT", "1800")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(m) = opts.memory {
        guest.env("GUEST_MEM", m);
    }
    let guest = guest.spawn().expect("guest.sh run");
    std::fs::write(bed.dir.join("guest.pid"), guest.id().to_string()).unwrap();
    bed.guest = Some(guest);

    let started = bed.out().join("kubelet.started");
    let ok = poll(600, || started.exists() || bed.guest_exited().is_some());
    if !ok || !started.exists() {
        bed.fail("the node payload did not start the kubelet");
    }
    let kubelet_started = Instant::now();
    println!(
        "boot to kubelet started: {:.1} s",
        (kubelet_started - bed.booted).as_secs_f64()
    );

    // kubectl wait watches: first for the Node to exist, then for its Ready condition
    let node = format!("node/{}", bed.node);
    bed.wait(&["--for=create", &node, "--timeout=600s"]);
    let registered = Instant::now();
    bed.wait(&["--for=condition=Ready", &node, "--timeout=600s"]);
    let ready = Instant::now();
    println!(
        "kubelet start to Node registered: {:.1} s, to Node Ready: {:.1} s",
        (registered - kubelet_started).as_secs_f64(),
        (ready - kubelet_started).as_secs_f64()
    );
    println!("{}", bed.kubectl_ok(&["get", "nodes", "-o", "wide"]));
    // the kubelet registered it: the Node carries what only the kubelet reports
    let info = bed.kubectl_ok(&[
        "get",
        &node,
        "-o",
        "jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}",
    ]);
    assert!(info.contains("containerd://"), "node info: {info}");
    Some(bed)
}

#[test]
fn kubelet_registers_and_runs_a_pod_with_a_cni_address() {
    let _one = ONE_BED.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut bed) = start_node(NodeOptions::default()) else {
        return;
    };

    let pod = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
  "metadata": {{"name": "web", "namespace": "default", "labels": {{"app": "web"}}}},
  "spec": {{"nodeName": "{node}", "automountServiceAccountToken": false,
    "containers": [{{"name": "web", "image": "localhost/testbed-web:1", "imagePullPolicy": "Never",
      "ports": [{{"containerPort": 8080}}],
      "readinessProbe": {{"httpGet": {{"path": "/", "port": 8080}}, "periodSeconds": 1}}}}]}}}}"#,
        node = bed.node
    );
    let manifest = bed.dir.join("pod.json");
    std::fs::write(&manifest, pod).unwrap();
    let created = Instant::now();
    bed.kubectl_ok(&["apply", "-f", &manifest.display().to_string()]);
    bed.wait(&[
        "--for=jsonpath={.status.phase}=Running",
        "pod/web",
        "--timeout=600s",
    ]);
    let running = Instant::now();
    bed.wait(&["--for=condition=Ready", "pod/web", "--timeout=600s"]);
    let pod_ready = Instant::now();
    println!(
        "pod create to Running: {:.1} s, to Ready (readiness probe): {:.1} s",
        (running - created).as_secs_f64(),
        (pod_ready - created).as_secs_f64()
    );
    println!("{}", bed.kubectl_ok(&["get", "pods", "-o", "wide"]));
    let ip = bed.kubectl_ok(&["get", "pod/web", "-o", "jsonpath={.status.podIP}"]);
    assert!(
        ip.starts_with(POD_PREFIX),
        "pod IP {ip} is not from the CNI range {POD_CIDR}"
    );

    // from the apiserver's namespace, routed through the node onto the CNI bridge
    let url = format!("http://{ip}:8080/");
    let o = Command::new("ip")
        .args(["netns", "exec", &bed.ns, "curl", "-s", "--max-time", "10", &url])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() || body != "web" {
        bed.fail(&format!("GET {url}: {:?} {body:?}", o.status));
    }
    println!("GET {url} from {} -> {body:?} (the pod's hostname)", bed.ns);

    let t = Instant::now();
    bed.kubectl_ok(&["delete", "pod/web", "--wait=true", "--timeout=120s"]);
    println!("pod deleted in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    bed.stop_guest();
    println!("node stopped in {:.1} s", t.elapsed().as_secs_f64());
}

/// The path and the lines of a script's output (`lab-images.sh`: the archive, then one line per
/// image).
fn lab_images(repo: &Path) -> Result<(String, Vec<String>), String> {
    let agent = bgpvpn_testkit::built_binary("bgpvpn-agent");
    let operator = bgpvpn_testkit::built_binary("bgpvpn-operator");
    let out = script_out(
        repo,
        "hack/testbed/node/lab-images.sh",
        &[&agent.display().to_string(), &operator.display().to_string()],
    )?;
    let mut lines = out.lines().map(str::to_string);
    let archive = lines.next().ok_or("lab-images.sh printed nothing")?;
    Ok((archive, lines.collect()))
}

const RELEASE: &str = "bgpvpn-operator";
const RELEASE_NS: &str = "bgpvpn-system";

/// The chart on the real node: `helm install` with the lab's images (FRR 10 from Debian's
/// packages, the agent and the operator this build made). The operator Deployment and the agent
/// DaemonSet run for real: scheduled, with service-account tokens, RBAC, probes, and the router
/// DaemonSet's FRR with the node directories the two share. The agent reports its node Ready with
/// the FRR configuration applied to the router and that FRR's version, and the seed's pod, bound to vpn-1001 with the seed's own
/// manifests, is programmed on the node.
#[test]
fn the_chart_runs_the_operator_and_the_agent_on_the_node() {
    let _one = ONE_BED.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root() {
        return skip("not running as root");
    }
    let repo = bgpvpn_testkit::repo_root();
    // fetched and built before any namespace is entered
    let found = (|| {
        let helm = script_out(&repo, "hack/testbed/get-helm.sh", &[])?;
        let (archive, images) = lab_images(&repo)?;
        Ok::<_, String>((helm, archive, images))
    })();
    let (helm, archive, images) = match found {
        Ok(f) => f,
        Err(e) => return skip(&e),
    };
    for line in &images {
        println!("lab image: {line}");
    }
    let Some(mut bed) = start_node(NodeOptions {
        controllers: true,
        extra_images: vec![archive],
        memory: Some("2G"),
    }) else {
        return;
    };
    let env = std::fs::read_to_string(bed.kube().join("env")).unwrap();
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("KUBE_APISERVER_URL="))
        .expect("KUBE_APISERVER_URL in env");
    let port = url.rsplit(':').next().unwrap();

    let values = format!(
        "operator.image.repository=localhost/bgpvpn-operator,operator.image.tag=lab,\
         operator.image.pullPolicy=Never,operator.replicas=1,\
         agent.image.repository=localhost/bgpvpn-agent,agent.image.tag=lab,agent.image.pullPolicy=Never,\
         frr.image.repository=localhost/bgpvpn-frr,frr.image.tag=lab,frr.image.pullPolicy=Never,\
         apiServer.host={HOST_IP},apiServer.port={port},\
         underlay.neighbors[0].address={HOST_IP},underlay.neighbors[0].remoteAsn=64999"
    );
    let t = Instant::now();
    let o = bed.helm(
        &helm,
        &["install", RELEASE, "--create-namespace", "--set", &values],
        &repo,
    );
    if !o.status.success() {
        bed.fail(&format!("helm install: {}", text(&o)));
    }
    println!("helm install: {:.1} s", t.elapsed().as_secs_f64());
    let operator = format!("deployment/{RELEASE}-operator");
    let agent = format!("daemonset/{RELEASE}-agent");
    let router = format!("daemonset/{RELEASE}-router");
    bed.wait(&[
        "--for=condition=Available",
        &operator,
        "-n",
        RELEASE_NS,
        "--timeout=600s",
    ]);
    println!("operator Available: {:.1} s", t.elapsed().as_secs_f64());
    bed.wait(&[
        "--for=jsonpath={.status.numberReady}=1",
        &agent,
        "-n",
        RELEASE_NS,
        "--timeout=600s",
    ]);
    println!("agent pod Ready: {:.1} s", t.elapsed().as_secs_f64());
    bed.wait(&[
        "--for=jsonpath={.status.numberReady}=1",
        &router,
        "-n",
        RELEASE_NS,
        "--timeout=600s",
    ]);
    println!("router pod Ready: {:.1} s", t.elapsed().as_secs_f64());
    // the operator made the node's object; the agent, through the router's FRR, applied it and said so
    let state = format!("evpnnodestate/{}", bed.node);
    bed.wait(&["--for=create", &state, "--timeout=300s"]);
    bed.wait(&["--for=condition=FrrApplied", &state, "--timeout=300s"]);
    bed.wait(&["--for=condition=Ready", &state, "--timeout=300s"]);
    println!("node state Ready: {:.1} s", t.elapsed().as_secs_f64());
    println!("{}", bed.kubectl_ok(&["get", "pods", "-A", "-o", "wide"]));
    // read from the router's daemons once the agent has seen them running
    bed.wait(&["--for=jsonpath={.status.frrVersion}", &state, "--timeout=120s"]);
    let frr = bed.kubectl_ok(&["get", &state, "-o", "jsonpath={.status.frrVersion}"]);
    println!("the router pod's FRR: {frr}");
    assert!(frr.starts_with("10."), "FRR version {frr:?}");
    let ready = "{range .items[*].status.containerStatuses[*]}{.name}={.ready} {end}";
    assert_eq!(
        release_pods(&bed, "agent", ready).trim(),
        "agent=true",
        "agent pod"
    );
    assert_eq!(
        release_pods(&bed, "router", ready).trim(),
        "frr=true",
        "router pod"
    );

    // the seed's own manifests bind a pod of namespace demo to vpn-1001
    for f in [
        "00-namespace.yaml",
        "10-bgpvpn-vni-1001.yaml",
        "20-binding-vni-1001.yaml",
    ] {
        let path = repo.join("examples/seed").join(f);
        bed.kubectl_ok(&["apply", "-f", &path.display().to_string()]);
    }
    let pod = r#"{"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
  "spec": {"automountServiceAccountToken": false,
    "containers": [{"name": "web", "image": "localhost/testbed-web:1", "imagePullPolicy": "Never",
      "ports": [{"containerPort": 8080}],
      "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}}"#;
    // the ServiceAccount admission wants the namespace's account, which the controller-manager makes
    bed.wait(&[
        "--for=create",
        "serviceaccount/default",
        "-n",
        "demo",
        "--timeout=120s",
    ]);
    let manifest = bed.dir.join("demo-pod.json");
    std::fs::write(&manifest, pod).unwrap();
    let t = Instant::now();
    bed.kubectl_ok(&["apply", "-f", &manifest.display().to_string()]);
    bed.wait(&["--for=condition=Ready", "pod/web", "-n", "demo", "--timeout=600s"]);
    let ip = bed.kubectl_ok(&["get", "pod/web", "-n", "demo", "-o", "jsonpath={.status.podIP}"]);
    bed.wait(&[
        "--for=jsonpath={.status.l3vnis[0].endpoints}=1",
        &state,
        "--timeout=300s",
    ]);
    bed.wait(&[
        "--for=jsonpath={.status.l3vnis[0].ready}=true",
        &state,
        "--timeout=300s",
    ]);
    println!(
        "pod {ip} bound to vpn-1001 and programmed on the node: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let vni = bed.kubectl_ok(&[
        "get",
        &state,
        "-o",
        "jsonpath={.status.l3vnis[0].vni} {.status.l3vnis[0].vrf}",
    ]);
    let (vni, vrf) = vni.split_once(' ').unwrap();
    assert_eq!(vni, "1001");
    // on the node itself: the VRF, its VXLAN device, and the pod's route in the VRF's table
    let (rc, out) = bed.on_node(&format!(
        "ip -d link show {vrf} && ip -br link show master {vrf} && ip route show vrf {vrf}"
    ));
    println!("on the node:\n{out}");
    assert!(
        rc == 0 && out.contains("vrf table") && out.contains(&format!("{ip} dev ")),
        "the node's {vrf}: {out}"
    );
    // and in the router's FRR, asked from the agent container as the agent asks it: zebra maps
    // the VNI and bgpd has the VRF's instance (vtysh exits 0 having reached neither when the
    // agent may not open their sockets)
    let agent_vtysh = repo.join("hack/testbed/node/agent-vtysh");
    let frr_holds_vrf = format!(
        "out=$({} -c 'show vrf vni' -c 'show running-config' 2>&1) && \
         printf '%s\\n' \"$out\" | grep -Eq '^{vrf} +{vni} ' && \
         printf '%s\\n' \"$out\" | grep -q '^router bgp 65001 vrf {vrf}$'",
        agent_vtysh.display()
    );
    let (rc, out) = bed.on_node(&format!(
        "{frr_holds_vrf}; rc=$?; printf '%s\\n' \"$out\"; exit $rc"
    ));
    println!("the router's FRR:\n{out}");
    assert_eq!(rc, 0, "FRR in the router pod does not hold {vrf}: {out}");
    // the underlay neighbor (the host, where no BGP speaker listens) never answers: a down
    // session shows in `kubectl get ens` and in its condition
    bed.wait(&[
        "--for=jsonpath={.status.sessionsEstablished}=0/1",
        &state,
        "--timeout=120s",
    ]);
    let table = bed.kubectl_ok(&["get", "ens", "-o", "wide"]);
    println!("{table}");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "SESSIONS")
        .expect("a SESSIONS column");
    assert_eq!(row.get(column), Some(&"0/1"), "kubectl get ens:\n{table}");
    let session = bed.kubectl_ok(&[
        "get",
        &state,
        "-o",
        r#"jsonpath={.status.bgpSessions[0].peer} {.status.bgpSessions[0].state} {.status.conditions[?(@.type=="BgpEstablished")].reason}"#,
    ]);
    println!("the down session: {session}");
    let fields: Vec<&str> = session.split_whitespace().collect();
    assert!(
        fields.len() == 3
            && fields[0] == HOST_IP
            && fields[1] != "Established"
            && fields[2] == "SessionsDown",
        "the down session in the status: {session}"
    );

    // What a node operator does, each in turn: the dataplane is adopted, never rebuilt
    let vrf_index = |bed: &mut Bed| {
        let (rc, out) = bed.on_node(&format!("cat /sys/class/net/{vrf}/ifindex"));
        assert_eq!(rc, 0, "{vrf} on the node: {out}");
        out.trim().to_string()
    };
    let index = vrf_index(&mut bed);

    // 1. the agent pod deleted: the DaemonSet's next agent takes the node over without a write,
    // and FRR, in its own pod, runs on untouched
    let bgpd = |bed: &mut Bed| {
        let (rc, out) = bed.on_node("pgrep -x bgpd");
        assert_eq!(rc, 0, "no bgpd on the node: {out}");
        out.trim().to_string()
    };
    let bgpd_before = bgpd(&mut bed);
    let old = agent_pod(&bed);
    let t = Instant::now();
    bed.kubectl_ok(&["delete", "pod", &old, "-n", RELEASE_NS, "--wait=true"]);
    println!("agent pod {old} deleted in {:.1} s", t.elapsed().as_secs_f64());
    let new = bed.wait_new_agent(&old);
    let first = bed.first_pass(&new);
    println!(
        "agent pod deleted, {new} Ready in {:.1} s; its first pass: {first}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        first.contains(r#""kernel_writes":0"#),
        "the new agent rewrote the node: {first}"
    );
    // FRR, untouched in its own pod, already holds what the new agent renders (FRR shows the
    // node's forwarding sysctls as configuration: they must not read as a difference)
    assert!(
        first.contains(r#""frr":"Unchanged""#),
        "the new agent changed FRR: {first}"
    );
    assert_eq!(vrf_index(&mut bed), index, "{vrf} was recreated");
    assert_eq!(
        bgpd(&mut bed),
        bgpd_before,
        "replacing the agent pod restarted bgpd"
    );

    // 2. the router's FRR killed: the kubelet restarts it, and it boots into the configuration
    // the agent wrote to the node's directory (the time from the kill is printed, not asserted)
    let (rc, out) = bed.on_node_within(
        &format!(
            r#"set -u
old=$(pgrep -x zebra) || {{ echo 'no zebra'; exit 2; }}
pid=$(pgrep -x watchfrr) || {{ echo 'no watchfrr'; exit 3; }}
t0=$(date +%s%N); kill -9 $pid
ms() {{ echo $(( ($(date +%s%N) - t0) / 1000000 )); }}
until z=$(pgrep -x zebra) && [ "$z" != "$old" ] && pgrep -x bgpd >/dev/null; do
  [ $(ms) -lt 120000 ] || {{ echo "FRR not back after 120 s"; exit 4; }}
  sleep 0.05
done
up=$(ms)
until {frr_holds_vrf}; do
  [ $(ms) -lt 120000 ] || {{ echo "FRR running again after $up ms, without {vrf} after 120 s"; exit 5; }}
  sleep 0.05
done
echo "zebra and bgpd running again after $up ms, holding {vrf} with VNI {vni} after $(ms) ms""#
        ),
        120,
    );
    println!("FRR router killed: {}", out.trim());
    assert_eq!(rc, 0, "FRR router kill: {out}");
    bed.wait(&["--for=condition=Ready", &state, "--timeout=300s"]);
    assert_eq!(vrf_index(&mut bed), index, "{vrf} was recreated");

    // 3. helm upgrade with a changed value: the agent rolls, the node stays programmed
    let before = agent_pod(&bed);
    let o = bed.helm(
        &helm,
        &[
            "upgrade",
            RELEASE,
            "--reuse-values",
            "--set",
            "agent.logLevel=debug",
        ],
        &repo,
    );
    if !o.status.success() {
        bed.fail(&format!("helm upgrade: {}", text(&o)));
    }
    let upgraded = bed.wait_new_agent(&before);
    let level = bed.kubectl_ok(&[
        "get",
        "pod",
        &upgraded,
        "-n",
        RELEASE_NS,
        "-o",
        r#"jsonpath={.spec.containers[?(@.name=="agent")].env[?(@.name=="RUST_LOG")].value}"#,
    ]);
    assert_eq!(level, "debug", "the upgraded agent's RUST_LOG");
    let first = bed.first_pass(&upgraded);
    assert!(
        first.contains(r#""kernel_writes":0"#),
        "the upgraded agent rewrote the node: {first}"
    );
    assert!(
        first.contains(r#""frr":"Unchanged""#),
        "the upgraded agent changed FRR: {first}"
    );
    bed.wait(&["--for=condition=Ready", &state, "--timeout=300s"]);
    assert_eq!(vrf_index(&mut bed), index, "{vrf} was recreated");
    println!("helm upgrade: {upgraded} runs with RUST_LOG=debug, the node untouched");

    // 4. helm uninstall: nothing the agent owned is left on the node
    let o = bed.helm(&helm, &["uninstall", RELEASE, "--wait", "--timeout=300s"], &repo);
    if !o.status.success() {
        bed.fail(&format!("helm uninstall: {}", text(&o)));
    }
    // `--wait` waits for the DaemonSets, not for their pods (background cascade): each agent
    // cleans its node up when its pod is stopped
    for component in ["agent", "router"] {
        let mut left = String::new();
        if !poll(120, || {
            left = release_pods(&bed, component, "{.items[*].metadata.name}");
            left.is_empty()
        }) {
            bed.fail(&format!(
                "{component} pods left 120 s after helm uninstall: {left}"
            ));
        }
    }
    let (rc, out) = bed.on_node(
        "ip -d link show group 1650946166; ip -4 rule show | grep -w 'proto 232'; \
         ip -6 rule show | grep -w 'proto 232'; \
         ip -4 route show table all proto 232; ip -6 route show table all proto 232; \
         pgrep -a -x 'bgpd|zebra|watchfrr'; ls -A /var/lib/bgpvpn-agent; \
         grep -sE '^(vrf|router bgp) ' /var/lib/bgpvpn-frr/frr.conf; true",
    );
    assert_eq!(rc, 0);
    assert!(
        out.trim().is_empty(),
        "left on the node after helm uninstall:\n{out}"
    );
    println!("helm uninstall: no owned link, rule or route, no FRR daemon or stanza, no agent state left");
}

/// The agent pod's name (one node: one pod).
fn agent_pod(bed: &Bed) -> String {
    release_pods(bed, "agent", "{.items[*].metadata.name}")
}

/// `jsonpath` of the release's pods of one component (agent, router, operator).
fn release_pods(bed: &Bed, component: &str, jsonpath: &str) -> String {
    bed.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        RELEASE_NS,
        "-l",
        &format!("app.kubernetes.io/component={component}"),
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
}
