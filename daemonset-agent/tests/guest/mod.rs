//! Scenarios on the two-node EVPN bed in the node guest (real VRF kernel, real FRR 10, the real
//! `bgpvpn-agent` binary driven through its `--state-file`).
//!
//! One test binary plays both sides. On the host, [`scenario`] boots the guest with
//! `hack/dataplane/bed.sh`, which starts the machines and runs this same binary inside, limited
//! to the one test, with `BGPVPN_IN_GUEST=<test name>`; there [`scenario`] hands a [`Bed`] to
//! the test's body. Needs root and a prepared guest (`hack/testbed/guest.sh prepare`); without
//! them it prints `SKIPPED: ...` and passes, unless `BGPVPN_REQUIRE_DATAPLANE=1` (CI).

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bgpvpn_crds::{
    Endpoint, EvpnNodeState, EvpnNodeStateSpec, EvpnNodeStateStatus, L3Vni, Neighbor, Underlay,
};

/// Node A's underlay settings in the bed.
pub const NODE_A_IP: &str = "172.30.0.1";
pub const NODE_B_IP: &str = "172.30.0.2";
pub const VM_IP: &str = "20.0.0.100";
/// The agent's metrics / health address inside node A.
pub const AGENT_HTTP: &str = "127.0.0.1:9469";

fn required() -> bool {
    std::env::var("BGPVPN_REQUIRE_DATAPLANE").is_ok_and(|v| v == "1")
}

fn skip(reason: &str) {
    assert!(
        !required(),
        "BGPVPN_REQUIRE_DATAPLANE=1 but the dataplane tier cannot run: {reason}"
    );
    println!("SKIPPED: needs root and the node guest: {reason}");
}

/// Whether this process runs as root (the effective uid, read from /proc without libc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// What the bed is started with.
pub struct BedSpec {
    /// Node B's VNIs, one VM at 20.0.0.100 in each.
    pub vnis: &'static str,
    /// Node A's pods, by address.
    pub pods: &'static str,
}

impl Default for BedSpec {
    fn default() -> Self {
        Self {
            vnis: "1001 1003",
            pods: "10.0.0.84",
        }
    }
}

/// Runs `body` on a fresh bed in the node guest: call it as the whole body of a `#[test]` named
/// `name`.
pub fn scenario(name: &str, spec: BedSpec, body: fn(&mut Bed)) {
    if std::env::var("BGPVPN_IN_GUEST").is_ok_and(|s| s == name) {
        let mut bed = Bed::from_env();
        body(&mut bed);
        return;
    }
    boot(name, &spec);
}

fn boot(name: &str, spec: &BedSpec) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runner = repo.join("hack/testbed/guest.sh");
    let payload = repo.join("hack/dataplane/bed.sh");
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
    // BGPVPN_AGENT_BIN: another build of the agent (e.g. one from before a fix, to see a scenario fail)
    let agent = std::env::var_os("BGPVPN_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_bgpvpn-agent")));
    let me = std::env::current_exe().expect("the test binary's path");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("guest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&runner)
        .arg("run")
        .arg(&payload)
        .arg(format!("RUN={}", me.display()))
        .arg(format!("SCENARIO={name}"))
        .arg(format!("AGENT={}", agent.display()))
        .arg(format!("VNIS={}", spec.vnis))
        .arg(format!("PODS={}", spec.pods))
        .env("GUEST_OUT", &out)
        .output()
        .expect("running guest.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!(
        "{name}: {:.1} s in the node guest ({})",
        started.elapsed().as_secs_f64(),
        versions_line(&versions)
    );
    if output.status.code() == Some(125) && !stdout.contains("bed: kernel") {
        panic!(
            "the node guest did not run the scenario (exit 125): {}",
            stderr.lines().last().unwrap_or("")
        );
    }
    assert!(
        output.status.success(),
        "scenario {name} failed in the node guest (exit {:?}); logs in {}",
        output.status.code(),
        out.display()
    );
    // the test binary inside ran exactly this one test, and it passed
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the scenario did not report success: {name}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn versions_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The running bed, seen from inside the guest.
pub struct Bed {
    pub a: String,
    pub b: String,
    pub sfx: String,
    pub work: PathBuf,
    /// Node A's pods: (netns, address).
    pub pods: Vec<(String, IpAddr)>,
    agent_bin: PathBuf,
    agent: Option<Child>,
    generation: i64,
    started: Instant,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

impl Bed {
    fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run through hack/dataplane/bed.sh"))
        };
        let pods = var("BED_PODS")
            .split_whitespace()
            .map(|p| {
                let (ns, ip) = p.split_once('=').expect("BED_PODS: ns=ip");
                (ns.to_string(), ip.parse().expect("BED_PODS: an IP"))
            })
            .collect();
        Self {
            a: var("BED_A"),
            b: var("BED_B"),
            sfx: var("BED_SFX"),
            work: PathBuf::from(var("BED_WORK")),
            pods,
            agent_bin: PathBuf::from(var("BED_AGENT")),
            agent: None,
            generation: 0,
            started: Instant::now(),
        }
    }

    pub fn log(&self, what: &str) {
        println!("[{:7.1}s] == {what}", self.started.elapsed().as_secs_f64());
    }

    /// A command in a namespace; its output, whatever its exit code.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("running ip netns exec")
    }

    /// A command in a namespace that must succeed; its stdout.
    pub fn sh(&self, ns: &str, cmd: &[&str]) -> String {
        let out = self.exec(ns, cmd);
        assert!(
            out.status.success(),
            "in {ns}: {} failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sh` with one string split on spaces (no quoting needed in these commands).
    pub fn run(&self, ns: &str, cmd: &str) -> String {
        self.sh(ns, &cmd.split_whitespace().collect::<Vec<_>>())
    }

    pub fn succeeds(&self, ns: &str, cmd: &str) -> bool {
        self.exec(ns, &cmd.split_whitespace().collect::<Vec<_>>())
            .status
            .success()
    }

    /// Node A's `vtysh -c ...` output (empty after 20 s: a stopped daemon never answers, and a
    /// failing scenario's debug dump must not hang the guest).
    pub fn vty(&self, node: &str, cmds: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", node, "timeout", "20", "vtysh", "--config_dir"])
            .arg(&self.work)
            .args(["-N", node]);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        String::from_utf8_lossy(&c.output().expect("vtysh").stdout).into_owned()
    }

    /// The body of `http://<ip>:8080/` fetched from `ns`, if it answered.
    pub fn fetch(&self, ns: &str, ip: &str) -> Option<String> {
        let url = format!("http://{ip}:8080/");
        let out = self.exec(ns, &["curl", "-s", "--max-time", "2", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Node B's VM of `vni`.
    pub fn vm(&self, vni: u32) -> String {
        format!("vm{vni}-{}", self.sfx)
    }

    /// Polls `cond` every 100 ms until it holds; panics with `what` after `secs`.
    pub fn wait(&self, what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if cond() {
                self.log(&format!("ok: {what}"));
                return;
            }
            if Instant::now() >= deadline {
                self.debug();
                panic!("not within {secs} s: {what}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asserts that `cond` holds, with the bed's state on failure.
    pub fn check(&self, what: &str, cond: bool) {
        if !cond {
            self.debug();
            panic!("check failed: {what}");
        }
        self.log(&format!("ok: {what}"));
    }

    fn debug(&self) {
        println!("---- node A");
        println!(
            "{}",
            self.vty(
                &self.a,
                &["show running-config", "show bgp l2vpn evpn route type prefix"]
            )
        );
        println!(
            "{}",
            String::from_utf8_lossy(&self.exec(&self.a, &["ip", "-d", "link", "show"]).stdout)
        );
        println!(
            "{}",
            String::from_utf8_lossy(&self.exec(&self.a, &["ip", "rule", "show"]).stdout)
        );
        println!(
            "{}",
            String::from_utf8_lossy(
                &self
                    .exec(&self.a, &["ip", "route", "show", "table", "all"])
                    .stdout
            )
        );
        println!("---- node B");
        println!(
            "{}",
            self.vty(
                &self.b,
                &["show bgp l2vpn evpn route type prefix", "show ip route vrf all"]
            )
        );
        println!("---- agent status");
        println!(
            "{}",
            std::fs::read_to_string(self.status_path()).unwrap_or_default()
        );
        let tail = |title: &str, path: PathBuf, lines: usize| {
            println!("---- {title} (tail)");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for l in text
                .lines()
                .rev()
                .take(lines)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                println!("{l}");
            }
        };
        tail("agent log", self.agent_log(), 60);
        // a daemon that died says why here (FRR's crash handler logs the signal and a backtrace)
        tail("node A's FRR log", self.work.join(&self.a).join("frr.log"), 40);
    }

    pub fn state_path(&self) -> PathBuf {
        self.work.join("state.yaml")
    }

    pub fn status_path(&self) -> PathBuf {
        self.work.join("status.json")
    }

    pub fn agent_log(&self) -> PathBuf {
        self.work.join("agent.log")
    }

    /// Node A's underlay as the operator writes it.
    pub fn underlay(&self) -> Underlay {
        Underlay {
            asn: 65001,
            router_id: NODE_A_IP.into(),
            vtep_ip: NODE_A_IP.into(),
            neighbors: vec![Neighbor {
                address: Some(NODE_B_IP.into()),
                interface: None,
                remote_asn: 64999,
                bfd: false,
            }],
            ipv4_unicast: false,
        }
    }

    /// Writes the agent's desired state (atomically, the next generation); returns the generation.
    pub fn write_state(&mut self, spec: EvpnNodeStateSpec) -> i64 {
        self.generation += 1;
        let mut obj = EvpnNodeState::new("node-a", spec);
        obj.metadata.generation = Some(self.generation);
        let tmp = self.work.join("state.yaml.tmp");
        std::fs::write(&tmp, serde_yaml::to_string(&obj).unwrap()).unwrap();
        std::fs::rename(&tmp, self.state_path()).unwrap();
        self.generation
    }

    /// Writes raw YAML as the desired state (for specs the typed API cannot express).
    pub fn write_raw_state(&mut self, yaml: &str) -> i64 {
        self.generation += 1;
        let tmp = self.work.join("state.yaml.tmp");
        std::fs::write(&tmp, yaml.replace("GENERATION", &self.generation.to_string())).unwrap();
        std::fs::rename(&tmp, self.state_path()).unwrap();
        self.generation
    }

    pub fn start_agent(&mut self, extra: &[&str]) {
        assert!(self.agent.is_none(), "the agent already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log())
            .unwrap();
        let w = self.work.display().to_string();
        let a = self.a.clone();
        let args: Vec<String> = [
            "run",
            "--state-file",
            &format!("{w}/state.yaml"),
            "--status-file",
            &format!("{w}/status.json"),
            "--state-dir",
            &format!("{w}/agent-state"),
            "--frr-pathspace",
            &a,
            "--frr-confdir",
            &w,
            "--frr-rundir",
            &format!("{w}/{a}/run"),
            "--frr-statedir",
            &format!("/run/frr/{a}"),
            "--frr-preamble",
            &format!("{w}/{a}/preamble.conf"),
            "--metrics-addr",
            AGENT_HTTP,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.a])
            .arg(&self.agent_bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the agent");
        // `ip netns exec` execs the agent: this PID is the agent's
        std::fs::write(self.work.join("pids/agent.pid"), child.id().to_string()).unwrap();
        self.agent = Some(child);
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.work.join("pids/agent.pid"));
        }
    }

    /// The agent binary the bed runs.
    pub fn agent_bin(&self) -> &Path {
        &self.agent_bin
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("the agent runs").id()
    }

    pub fn status(&self) -> Option<EvpnNodeStateStatus> {
        serde_json::from_slice(&std::fs::read(self.status_path()).ok()?).ok()
    }

    /// The status describes `generation` and says Ready=`ready`.
    pub fn status_is(&self, generation: i64, ready: bool) -> bool {
        self.status().is_some_and(|s| {
            s.observed_generation == Some(generation)
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == if ready { "True" } else { "False" })
        })
    }

    /// The per-VNI status line of `vni`, once the status describes `generation`.
    pub fn vni_status(&self, generation: i64, vni: u32) -> Option<bgpvpn_crds::L3VniStatus> {
        let s = self.status()?;
        if s.observed_generation != Some(generation) {
            return None;
        }
        s.l3vnis.into_iter().find(|v| v.vni == vni)
    }

    /// Whether node B has a route to `prefix` in `vrf-<vni>`.
    pub fn b_has_route(&self, vni: u32, prefix: &str) -> bool {
        let out = self.exec(&self.b, &["ip", "route", "show", "vrf", &format!("vrf-{vni}")]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(prefix))
    }

    /// `GET /healthz` of the agent: the HTTP status code (0 when it did not answer).
    pub fn healthz(&self) -> u16 {
        let url = format!("http://{AGENT_HTTP}/healthz");
        let out = self.exec(
            &self.a,
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                &url,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    }

    /// The agent log since byte `from`.
    pub fn agent_log_since(&self, from: usize) -> String {
        let s = std::fs::read_to_string(self.agent_log()).unwrap_or_default();
        s.get(from..).unwrap_or_default().to_string()
    }

    pub fn agent_log_len(&self) -> usize {
        std::fs::metadata(self.agent_log())
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Records a process the scenario started, so the bed's trap stops it too.
    pub fn record_pid(&self, name: &str, pid: u32) {
        std::fs::write(self.work.join(format!("pids/{name}.pid")), pid.to_string()).unwrap();
    }

    /// A new netns named `<base>-<sfx>` (removed by the bed's trap).
    pub fn netns(&self, base: &str) -> String {
        let ns = format!("{base}-{}", self.sfx);
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {ns}");
        self.run(&ns, "ip link set lo up");
        ns
    }

    /// Serves `text` on `ip`:8080 from `ns` (python3 http.server), recorded for the trap.
    pub fn serve(&self, ns: &str, ip: &str, text: &str) {
        let dir = self.work.join(format!("www-{ns}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), format!("{text}\n")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                ip,
                "--directory",
            ])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.record_pid(&format!("http-{ns}"), child.id());
        std::mem::forget(child);
    }
}

/// One L3 VNI the way the operator writes it: route targets 65000:<vni>, explicit RD.
pub fn l3vni(vrf: &str, vni: u32, rd: &str, endpoints: &[(&str, &str)]) -> L3Vni {
    L3Vni {
        bgpvpn: format!("vpn-{vni}"),
        vni,
        vrf: vrf.into(),
        import_targets: vec![format!("65000:{vni}")],
        export_targets: vec![format!("65000:{vni}")],
        route_distinguisher: rd.into(),
        local_pref: None,
        endpoints: endpoints
            .iter()
            .map(|(ip, pod)| Endpoint {
                ip: (*ip).into(),
                interface: None,
                pod: Some((*pod).into()),
                holder: None,
            })
            .collect(),
        prefixes: Vec::new(),
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
