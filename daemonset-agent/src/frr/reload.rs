//! Applying a configuration: incrementally with one `vtysh -f <delta>`, or in full with
//! `frr-reload.py --test`, then `--reload`.
//!
//! The full path is the source of truth: `--test` both checks the file (vtysh parses it) and
//! prints the difference to the running configuration; when there is none the apply is
//! `Unchanged` and FRR is not touched. The caller takes it whenever it does not know FRR's
//! running configuration (startup, FRR restart, periodic resync, a failed apply). Otherwise it
//! passes the [`delta`](super::delta::delta) from the last applied view, and a delta that vtysh
//! refuses falls back to the full path in the same apply. Either way the complete configuration
//! is written to `config_file` first, so a restarted FRR boots into it. Every outcome is
//! returned to the caller, which reports it (status, metric, log).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::sessions::{BgpSession, parse_bgp_sessions};
use crate::model::{Prefix, RtRd};

/// Pause between retries of BGP VRF removals that bgpd refused (see `apply_delta`).
const BGP_VRF_REMOVAL_RETRY: Duration = Duration::from_millis(250);
/// How long such removals are retried before the apply falls back to frr-reload.py.
const BGP_VRF_REMOVAL_DEADLINE: Duration = Duration::from_secs(30);

/// Where FRR and its tools are.
#[derive(Clone, Debug)]
pub struct FrrSettings {
    /// `frr-reload.py` (Debian: package frr-pythontools).
    pub reload_script: PathBuf,
    /// Directory of `vtysh`.
    pub bindir: PathBuf,
    /// FRR's configuration directory (`vtysh --config_dir`, `frr-reload.py --confdir`).
    pub confdir: PathBuf,
    /// The file the rendered configuration is written to before each apply. When it is
    /// `<confdir>/frr.conf`, frr-reload does not `write` the running config back.
    pub config_file: PathBuf,
    /// Scratch directory for frr-reload's temporary files.
    pub rundir: PathBuf,
    /// FRR pathspace (`-N`), when several FRR instances share a host.
    pub pathspace: Option<String>,
    /// Directory of the daemons' vty sockets, when not the default.
    pub vty_socket: Option<PathBuf>,
    /// FRR's state directory (its `localstatedir`): the daemons' vty sockets, read to tell
    /// whether they run, unless `vty_socket` names another.
    pub statedir: PathBuf,
    /// Deadline of one frr-reload/vtysh run.
    pub timeout: Duration,
    /// Static lines put before the rendered configuration (operator settings such as `log`
    /// or `hostname` that frr-reload would otherwise remove). Never derived from the spec.
    pub preamble: String,
    /// Where the node's sysctls are read (`net/ipv4/ip_forward`, ...).
    pub proc_sys: PathBuf,
}

impl FrrSettings {
    /// Debian's paths; `pathspace` also selects the state directory `/var/run/frr/<pathspace>`.
    pub fn debian(pathspace: Option<String>) -> Self {
        let statedir = match &pathspace {
            Some(ps) => PathBuf::from("/var/run/frr").join(ps),
            None => PathBuf::from("/var/run/frr"),
        };
        Self {
            reload_script: "/usr/lib/frr/frr-reload.py".into(),
            bindir: "/usr/bin".into(),
            confdir: "/etc/frr".into(),
            config_file: "/etc/frr/frr.conf".into(),
            rundir: std::env::temp_dir(),
            pathspace,
            vty_socket: None,
            statedir,
            timeout: Duration::from_secs(300),
            preamble: String::new(),
            proc_sys: "/proc/sys".into(),
        }
    }
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrrOutcome {
    /// The running configuration already matched.
    Unchanged,
    /// This many lines were changed, by `vtysh -f` of the delta (`incremental`) or by
    /// frr-reload.
    Applied { lines: usize, incremental: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    #[error("writing {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd} did not finish within {secs}s")]
    Timeout { cmd: String, secs: u64 },
    #[error("frr-reload.py --{step} failed (exit {code}): {output}")]
    Reload {
        step: &'static str,
        code: i32,
        output: String,
    },
    #[error("vtysh -f {file} failed (exit {code}): {output}")]
    Delta { file: String, code: i32, output: String },
    /// vtysh exits 0 when it cannot open a daemon's vty socket: the daemon's lines are dropped.
    #[error(
        "vtysh -f {file} did not reach {daemons}: not running, or this process may not open its vty \
         socket (group frrvty, mode 0770: the agent needs that group or CAP_DAC_OVERRIDE): {output}"
    )]
    Unreached {
        file: String,
        daemons: String,
        output: String,
    },
    #[error("vtysh -c {command:?} failed (exit {code}): {output}")]
    Vtysh {
        command: String,
        code: i32,
        output: String,
    },
    /// The read-only comparison (`frr-reload.py --test`) failed: FRR was not changed.
    #[error("checking FRR's running configuration: {0}")]
    Check(Box<FrrError>),
}

/// FRR behind a trait, so the staging logic is tested without FRR.
pub trait FrrControl: Send {
    /// Makes FRR's running configuration equal to `config` (a complete frr.conf). `delta`,
    /// when given, is the change from the running configuration to `config`, as vtysh lines.
    fn apply(
        &mut self,
        config: &str,
        delta: Option<&str>,
    ) -> impl Future<Output = Result<FrrOutcome, FrrError>> + Send;
    /// Whether zebra has learned the VXLAN device `ifname` with this VNI.
    fn zebra_knows_vxlan(&mut self, ifname: &str, vni: u32) -> impl Future<Output = bool> + Send;
    /// The prefixes of the EVPN type-5 routes bgpd holds under this (the node's own) RD; `None`
    /// when it cannot tell.
    fn evpn_prefixes_under(&mut self, rd: &RtRd) -> impl Future<Output = Option<BTreeSet<Prefix>>> + Send;
    /// FRR's version (`show version`: `FRRouting 10.3 (...)` -> `10.3`); `None` when it
    /// cannot tell.
    fn version(&mut self) -> impl Future<Output = Option<String>> + Send;
    /// The L3 VNIs zebra maps, each to its VRF; `None` when it cannot tell.
    fn l3vni_mappings(&mut self) -> impl Future<Output = Option<BTreeMap<u32, String>>> + Send;
    /// The underlay BGP sessions; `None` when FRR does not tell.
    fn bgp_sessions(&mut self) -> impl Future<Output = Option<Vec<BgpSession>>> + Send;
    /// Removes the configuration file `apply` writes (an uninstall), so an FRR that starts
    /// again on this node boots without it.
    fn remove_config_file(&mut self) -> Result<(), FrrError>;
    /// Identity of the running zebra/bgpd (their vty sockets); changes when FRR restarts,
    /// `None` when they are not running.
    fn fingerprint(&mut self) -> impl Future<Output = Option<String>> + Send;
}

/// The real thing: frr-reload.py and vtysh.
pub struct FrrReload {
    pub settings: FrrSettings,
}

impl FrrReload {
    pub fn new(settings: FrrSettings) -> Self {
        Self { settings }
    }

    fn vtysh_base_args(&self) -> Vec<String> {
        let s = &self.settings;
        let mut args = vec!["--config_dir".to_string(), s.confdir.display().to_string()];
        if let Some(ps) = &s.pathspace {
            args.extend(["-N".to_string(), ps.clone()]);
        }
        if let Some(v) = &s.vty_socket {
            args.extend(["--vty_socket".to_string(), v.display().to_string()]);
        }
        args
    }

    /// `vtysh -f` of `delta`: vtysh runs the lines in configuration mode and routes each to
    /// the daemons that own it; a refused line makes it exit non-zero.
    ///
    /// bgpd refuses `no router bgp <asn> vrf <name>` while it still holds the VRF's L3VNI, and
    /// it learns of a `no vni` sent to zebra in the same batch asynchronously (zebra tells
    /// bgpd). Removing hundreds of VRFs at once loses that race, so refused lines of that one
    /// kind are sent again, alone, until bgpd has caught up or [`BGP_VRF_REMOVAL_DEADLINE`].
    async fn apply_delta(&self, delta: &str) -> Result<usize, FrrError> {
        let started = Instant::now();
        let mut pending = delta.to_string();
        loop {
            let file = self
                .settings
                .rundir
                .join(format!("bgpvpn-agent-delta-{}.conf", std::process::id()));
            write_file(&file, &pending)?;
            let mut args = self.vtysh_base_args();
            args.extend(["-f".to_string(), file.display().to_string()]);
            let res = self.run(&self.settings.bindir.join("vtysh"), &args).await;
            let _ = std::fs::remove_file(&file);
            let (code, out) = res?;
            let unreached = unreached_daemons(&out);
            if !unreached.is_empty() {
                return Err(FrrError::Unreached {
                    file: file.display().to_string(),
                    daemons: unreached.join(" and "),
                    output: tail(&out),
                });
            }
            // vtysh reports a refused line on its output but may still exit 0 for some of them
            if code == 0
                && !out
                    .lines()
                    .any(|l| l.starts_with('%') || l.contains("Failure to communicate"))
            {
                return Ok(delta.lines().filter(|l| !l.trim().is_empty()).count());
            }
            let refused = refused_lines(&out);
            let waiting_for_bgpd = !refused.is_empty()
                && refused
                    .iter()
                    .all(|l| l.starts_with("no router bgp ") && l.contains(" vrf "));
            if !waiting_for_bgpd || started.elapsed() >= BGP_VRF_REMOVAL_DEADLINE {
                return Err(FrrError::Delta {
                    file: file.display().to_string(),
                    code,
                    output: tail(&out),
                });
            }
            tracing::debug!(
                lines = refused.len(),
                "bgpd still holds the L3VNIs of removed VRFs; retrying their removal"
            );
            pending = refused.iter().map(|l| format!("{l}\n")).collect();
            tokio::time::sleep(BGP_VRF_REMOVAL_RETRY).await;
        }
    }

    /// frr-reload.py of `config` (already in `file`). FRR shows the node's forwarding sysctls
    /// as configuration (`no ipv6 forwarding` while it is off), so a file without them would
    /// make frr-reload "correct" the node's forwarding on every full apply (in a pod, where
    /// /proc/sys is read-only, it fails and the difference stays: a full reload each time).
    /// They go into the file for frr-reload only: FRR applies them when it boots, and by then
    /// the node's forwarding may have changed.
    async fn full_reload(&self, file: &Path, config: &str) -> Result<FrrOutcome, FrrError> {
        let forwarding = KernelForwarding::read(&self.settings.proc_sys).lines();
        if forwarding.is_empty() {
            return self.reload_file(file).await;
        }
        write_file(file, &format!("{forwarding}{config}"))?;
        let res = self.reload_file(file).await;
        write_file(file, config)?;
        res
    }

    async fn reload_file(&self, file: &Path) -> Result<FrrOutcome, FrrError> {
        let (changes, diff) = self.test(file).await.map_err(|e| FrrError::Check(Box::new(e)))?;
        if changes == 0 {
            return Ok(FrrOutcome::Unchanged);
        }
        // what FRR held that the agent did not expect: someone else's change, or a lost apply
        tracing::info!(lines = changes, diff = %diff_head(&diff), "frr-reload.py: FRR differs from the configuration");
        let (code, out) = self
            .run(&self.settings.reload_script, &self.reload_args("reload", file))
            .await?;
        if code != 0 {
            return Err(FrrError::Reload {
                step: "reload",
                code,
                output: tail(&out),
            });
        }
        Ok(FrrOutcome::Applied {
            lines: changes,
            incremental: false,
        })
    }

    fn reload_args(&self, step: &str, file: &Path) -> Vec<String> {
        let s = &self.settings;
        let mut a = vec![
            format!("--{step}"),
            "--stdout".to_string(),
            "--confdir".to_string(),
            s.confdir.display().to_string(),
            "--bindir".to_string(),
            s.bindir.display().to_string(),
            "--rundir".to_string(),
            s.rundir.display().to_string(),
        ];
        if let Some(ps) = &s.pathspace {
            a.extend(["--pathspace".to_string(), ps.clone()]);
        }
        if let Some(v) = &s.vty_socket {
            a.extend(["--vty_socket".to_string(), v.display().to_string()]);
        }
        a.push(file.display().to_string());
        a
    }

    /// `program` with `args`: its exit code and its output, stdout then stderr.
    async fn run(&self, program: &Path, args: &[String]) -> Result<(i32, String), FrrError> {
        let (code, mut text, stderr) = self.run_split(program, args).await?;
        text.push_str(&stderr);
        Ok((code, text))
    }

    /// `program` with `args`: its exit code, stdout and stderr.
    async fn run_split(&self, program: &Path, args: &[String]) -> Result<(i32, String, String), FrrError> {
        let cmd = format!("{} {}", program.display(), args.join(" "));
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| FrrError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        let out = tokio::time::timeout(self.settings.timeout, child.wait_with_output())
            .await
            .map_err(|_| FrrError::Timeout {
                cmd: cmd.clone(),
                secs: self.settings.timeout.as_secs(),
            })?
            .map_err(|source| FrrError::Spawn { cmd, source })?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// `frr-reload.py --test` of `config` against the running configuration: the difference
    /// as frr-reload prints it (empty when there is none). Writes only a scratch file.
    pub async fn diff(&self, config: &str) -> Result<String, FrrError> {
        let file = self
            .settings
            .rundir
            .join(format!("bgpvpn-agent-plan-{}.conf", std::process::id()));
        // as `full_reload` compares: with the node's forwarding as FRR shows it
        write_file(
            &file,
            &format!(
                "{}{}{}{config}",
                KernelForwarding::read(&self.settings.proc_sys).lines(),
                self.settings.preamble,
                hostname_line(&self.settings.preamble)
            ),
        )?;
        let res = self.test(&file).await;
        let _ = std::fs::remove_file(&file);
        res.map(|(_, text)| text)
    }

    async fn test(&self, file: &Path) -> Result<(usize, String), FrrError> {
        let (code, stdout, stderr) = self
            .run_split(&self.settings.reload_script, &self.reload_args("test", file))
            .await?;
        if code != 0 {
            return Err(FrrError::Reload {
                step: "test",
                code,
                output: tail(&(stdout + &stderr)),
            });
        }
        // the difference is on stdout; frr-reload logs on stderr
        let diff = diff_section(&stdout);
        Ok((
            diff.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Lines To") && !l.starts_with("===="))
                .count(),
            diff,
        ))
    }

    /// `vtysh -c <command>` against this FRR.
    pub async fn vtysh(&self, command: &str) -> Result<String, FrrError> {
        let mut args = self.vtysh_base_args();
        args.extend(["-c".to_string(), command.to_string()]);
        let (code, out) = self.run(&self.settings.bindir.join("vtysh"), &args).await?;
        if code != 0 {
            return Err(FrrError::Vtysh {
                command: command.to_string(),
                code,
                output: tail(&out),
            });
        }
        Ok(out)
    }
}

/// The daemons every configuration goes to.
const CONFIG_DAEMONS: [&str; 2] = ["zebra", "bgpd"];

/// Which of [`CONFIG_DAEMONS`] `vtysh -f` did not send its configuration to. FRR 10's vtysh
/// forks one child per daemon whose socket it could open and names it (`[<pid>|zebra] sending
/// configuration`), then says it waits for them; one it could not open is skipped in silence.
/// Output without that (another vtysh) tells nothing: nothing is reported then.
fn unreached_daemons(out: &str) -> Vec<&'static str> {
    let reached: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| {
            let (tag, said) = l.strip_prefix('[')?.split_once(']')?;
            let (_pid, daemon) = tag.split_once('|')?;
            said.trim().starts_with("sending configuration").then_some(daemon)
        })
        .collect();
    if reached.is_empty() && !out.contains("Waiting for children to finish applying config") {
        return Vec::new();
    }
    CONFIG_DAEMONS
        .into_iter()
        .filter(|d| !reached.contains(d))
        .collect()
}

/// The configuration lines vtysh reports as refused (`line N: Failure to communicate[..] to
/// bgpd, line: <text>`).
fn refused_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains("Failure to communicate"))
        .filter_map(|l| l.split_once(", line: ").map(|(_, text)| text.trim().to_string()))
        .collect()
}

/// `FRRouting 10.3 (node-guest) on Linux(7.2.7).` -> `10.3`.
fn parse_version(out: &str) -> Option<String> {
    let line = out.lines().find(|l| l.starts_with("FRRouting "))?;
    let version = line.split_whitespace().nth(1)?;
    version
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_+~".contains(c))
        .then(|| version.to_string())
}

/// `show vrf vni` (columns `VRF VNI VxLAN-IF L3-SVI State Rmac`): VNI -> VRF.
fn parse_vrf_vni(out: &str) -> BTreeMap<u32, String> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let vrf = words.next()?;
            let vni = words.next()?.parse::<u32>().ok().filter(|v| *v != 0)?;
            Some((vni, vrf.to_string()))
        })
        .collect()
}

/// The prefixes of `show bgp l2vpn evpn route rd <rd> type prefix json`: FRR 10.3 prints
/// `{"<rd>": {"rd": .., "[5]:[0]:[24]:[10.0.9.0]": {.., "paths": [..]}, ..}, "numPrefix": ..}`,
/// and `{}` for an RD without routes. `None` when the output is not that JSON, or a route's
/// key does not parse.
fn parse_type5_prefixes(out: &str) -> Option<BTreeSet<Prefix>> {
    let json: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let mut prefixes = BTreeSet::new();
    for under_rd in json.as_object()?.values() {
        let Some(routes) = under_rd.as_object() else {
            continue; // numPrefix, numPaths
        };
        for (key, _) in routes.iter().filter(|(_, route)| route.get("paths").is_some()) {
            prefixes.insert(type5_prefix(key)?);
        }
    }
    Some(prefixes)
}

/// `[5]:[0]:[24]:[10.0.9.0]` -> 10.0.9.0/24.
fn type5_prefix(text: &str) -> Option<Prefix> {
    let fields: Vec<&str> = text
        .strip_prefix("[5]:[")?
        .strip_suffix(']')?
        .split("]:[")
        .collect();
    let [_eth_tag, len, addr] = fields.as_slice() else {
        return None;
    };
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= if addr.is_ipv4() { 32 } else { 128 }).then_some(Prefix { addr, len })
}

/// The part of `--test` output from the first "Lines To" header on (frr-reload logs above it).
fn diff_section(out: &str) -> String {
    match out.find("Lines To") {
        Some(i) => out[i..].to_string(),
        None => String::new(),
    }
}

/// The node's IP forwarding, as FRR 10 shows it in its running configuration: nothing while it
/// is on, `no ip forwarding` / `no ipv6 forwarding` while it is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelForwarding {
    /// `None`: unreadable (no such sysctl, IPv6 disabled): nothing said about it.
    pub ipv4: Option<bool>,
    pub ipv6: Option<bool>,
}

impl KernelForwarding {
    pub fn read(proc_sys: &Path) -> Self {
        let on = |key: &str| match std::fs::read_to_string(proc_sys.join(key)) {
            Ok(v) => Some(v.trim() != "0"),
            Err(_) => None,
        };
        Self {
            ipv4: on("net/ipv4/ip_forward"),
            ipv6: on("net/ipv6/conf/all/forwarding"),
        }
    }

    /// The lines FRR shows for this state.
    pub fn lines(&self) -> String {
        let mut out = String::new();
        if self.ipv4 == Some(false) {
            out.push_str("no ip forwarding\n");
        }
        if self.ipv6 == Some(false) {
            out.push_str("no ipv6 forwarding\n");
        }
        out
    }
}

/// The first lines of a `--test` difference, for the log (a full difference may be thousands).
fn diff_head(diff: &str) -> String {
    const SHOWN: usize = 24;
    let lines: Vec<&str> = diff
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("===="))
        .collect();
    let mut head = lines[..lines.len().min(SHOWN)].join(" | ");
    if lines.len() > SHOWN {
        head.push_str(&format!(" | ... {} more", lines.len() - SHOWN));
    }
    head
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

/// Writes via a temporary file and a rename, so FRR never reads half a file.
pub fn write_file(path: &Path, content: &str) -> Result<(), FrrError> {
    let err = |source| FrrError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The `hostname` line FRR shows in `show running-config` (vtysh adds the system host name to
/// it; frr-reload would try to remove it on every apply if the configuration lacked it), unless
/// the preamble sets one.
pub fn hostname_line(preamble: &str) -> String {
    if preamble.lines().any(|l| l.trim_start().starts_with("hostname ")) {
        return String::new();
    }
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(h)
            if !h.trim().is_empty()
                && h.trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
        {
            format!("hostname {}\n", h.trim())
        }
        _ => String::new(),
    }
}

impl FrrControl for FrrReload {
    fn apply(
        &mut self,
        config: &str,
        delta: Option<&str>,
    ) -> impl Future<Output = Result<FrrOutcome, FrrError>> + Send {
        let file = self.settings.config_file.clone();
        let config = format!(
            "{}{}{config}",
            self.settings.preamble,
            hostname_line(&self.settings.preamble)
        );
        let delta = delta.map(str::to_string);
        async move {
            // the file FRR boots into: never a forwarding line (see `full_reload`)
            write_file(&file, &config)?;
            match delta.as_deref() {
                Some("") => return Ok(FrrOutcome::Unchanged),
                Some(delta) => match self.apply_delta(delta).await {
                    Ok(lines) => {
                        return Ok(FrrOutcome::Applied {
                            lines,
                            incremental: true,
                        });
                    }
                    // part of the delta may be in: frr-reload compares with what is running
                    Err(e) => {
                        tracing::warn!(error = %e, "incremental FRR apply refused; falling back to frr-reload.py")
                    }
                },
                None => {}
            }
            self.full_reload(&file, &config).await
        }
    }

    fn zebra_knows_vxlan(&mut self, ifname: &str, vni: u32) -> impl Future<Output = bool> + Send {
        let cmd = format!("show interface {ifname}");
        async move {
            self.vtysh(&cmd)
                .await
                .is_ok_and(|out| out.contains(&format!("VxLAN Id {vni}")))
        }
    }

    fn evpn_prefixes_under(&mut self, rd: &RtRd) -> impl Future<Output = Option<BTreeSet<Prefix>>> + Send {
        let cmd = format!("show bgp l2vpn evpn route rd {rd} type prefix json");
        async move {
            let out = self.vtysh(&cmd).await.ok()?;
            parse_type5_prefixes(&out)
        }
    }

    async fn version(&mut self) -> Option<String> {
        self.vtysh("show version")
            .await
            .ok()
            .and_then(|out| parse_version(&out))
    }

    async fn l3vni_mappings(&mut self) -> Option<BTreeMap<u32, String>> {
        self.vtysh("show vrf vni")
            .await
            .ok()
            .map(|out| parse_vrf_vni(&out))
    }

    async fn bgp_sessions(&mut self) -> Option<Vec<BgpSession>> {
        self.vtysh("show bgp neighbors json")
            .await
            .ok()
            .and_then(|out| parse_bgp_sessions(&out))
    }

    fn remove_config_file(&mut self) -> Result<(), FrrError> {
        let path = &self.settings.config_file;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FrrError::Write {
                path: path.display().to_string(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    async fn fingerprint(&mut self) -> Option<String> {
        let dir = self
            .settings
            .vty_socket
            .as_ref()
            .unwrap_or(&self.settings.statedir);
        let mut parts = Vec::new();
        // FRR 10 runs mgmtd in front of zebra: a restarted mgmtd has lost the vrf/vni config too
        for (daemon, required) in [("mgmtd", false), ("zebra", true), ("bgpd", true)] {
            match daemon_identity(&dir.join(format!("{daemon}.vty"))).await {
                DaemonSocket::Listening(id) => parts.push(format!("{daemon}={id}")),
                DaemonSocket::Absent if !required => {}
                DaemonSocket::Absent | DaemonSocket::Dead => return None,
            }
        }
        Some(parts.join(","))
    }
}

/// What a daemon's vty socket says about the daemon.
#[derive(Debug, PartialEq, Eq)]
enum DaemonSocket {
    /// No socket: the daemon never ran here.
    Absent,
    /// The socket outlived its daemon (nobody listens on it).
    Dead,
    /// A daemon listens; the id (the socket's inode and time) is new with each daemon start.
    Listening(String),
}

/// A daemon's liveness and identity from its vty socket. Unlike a pid, this holds across pods:
/// FRR may run in another pod (its own pid namespace) that shares only the directory.
async fn daemon_identity(socket: &Path) -> DaemonSocket {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = tokio::fs::metadata(socket).await else {
        return DaemonSocket::Absent;
    };
    let connect = tokio::net::UnixStream::connect(socket);
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            DaemonSocket::Dead
        }
        // connected; or busy (a full backlog) or slow: someone listens either way
        _ => DaemonSocket::Listening(format!("{}.{}", meta.ino(), meta.ctime_nsec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_that_reached_only_watchfrr_names_the_daemons_it_missed() {
        // FRR 10.3's vtysh -f in the chart's agent container with only CAP_NET_ADMIN: the vty
        // sockets are frr:frrvty 0770, so only root's watchfrr.vty opened, and it exited 0
        let only_watchfrr = "[247|watchfrr] sending configuration\n[247|watchfrr] done\n\
                             Waiting for children to finish applying config...\n";
        assert_eq!(unreached_daemons(only_watchfrr), ["zebra", "bgpd"]);
        assert_eq!(
            unreached_daemons("Waiting for children to finish applying config...\n"),
            ["zebra", "bgpd"]
        );
        // the same delta with CAP_DAC_OVERRIDE
        let all = "[328|zebra] sending configuration\n[327|mgmtd] sending configuration\n\
                   [342|watchfrr] sending configuration\n[334|bgpd] sending configuration\n\
                   Waiting for children to finish applying config...\n[328|zebra] done\n[334|bgpd] done\n";
        assert!(unreached_daemons(all).is_empty());
        // a vtysh that does not name its children tells nothing
        assert!(unreached_daemons("").is_empty());
    }

    #[test]
    fn the_nodes_forwarding_is_shown_as_frr_shows_it() {
        let dir = std::env::temp_dir().join(format!("bgpvpn-agent-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4")).unwrap();
        std::fs::create_dir_all(dir.join("net/ipv6/conf/all")).unwrap();
        let set = |v4: &str, v6: &str| {
            std::fs::write(dir.join("net/ipv4/ip_forward"), v4).unwrap();
            std::fs::write(dir.join("net/ipv6/conf/all/forwarding"), v6).unwrap();
            KernelForwarding::read(&dir).lines()
        };
        // FRR 10.3 in the node guest: `show running-config` for each state
        assert_eq!(set("1\n", "1\n"), "");
        assert_eq!(set("1\n", "0\n"), "no ipv6 forwarding\n");
        assert_eq!(set("0\n", "0\n"), "no ip forwarding\nno ipv6 forwarding\n");
        // IPv6 disabled on the node: its sysctls are absent, FRR is told nothing about it
        std::fs::remove_dir_all(dir.join("net/ipv6")).unwrap();
        assert_eq!(KernelForwarding::read(&dir).lines(), "no ip forwarding\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_daemon_is_told_by_its_vty_socket() {
        let dir = std::env::temp_dir().join(format!("bgpvpn-agent-vty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("zebra.vty");
        let _ = std::fs::remove_file(&socket);
        assert_eq!(daemon_identity(&socket).await, DaemonSocket::Absent);
        let first = tokio::net::UnixListener::bind(&socket).unwrap();
        let DaemonSocket::Listening(id) = daemon_identity(&socket).await else {
            panic!("a listening socket reads as not running");
        };
        // a killed daemon leaves its socket file behind
        drop(first);
        assert_eq!(daemon_identity(&socket).await, DaemonSocket::Dead);
        // a restarted one binds a new socket there
        std::fs::remove_file(&socket).unwrap();
        let _second = tokio::net::UnixListener::bind(&socket).unwrap();
        let DaemonSocket::Listening(again) = daemon_identity(&socket).await else {
            panic!("the restarted daemon reads as not running");
        };
        assert_ne!(id, again, "a restart must change the identity");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_the_type5_routes_under_an_rd() {
        // as FRR 10.3 prints them (node guest): two routes, then an RD without any
        let out = include_str!("testdata/frr-10.3-evpn-route-rd-type-prefix.json");
        let prefix = |addr: &str, len| Prefix {
            addr: addr.parse().unwrap(),
            len,
        };
        assert_eq!(
            parse_type5_prefixes(out),
            Some([prefix("10.0.9.0", 24), prefix("10.0.0.84", 32)].into())
        );
        assert_eq!(parse_type5_prefixes("{}\n"), Some(BTreeSet::new()));
        assert_eq!(
            type5_prefix("[5]:[0]:[64]:[2001:db8:9::]"),
            Some(prefix("2001:db8:9::", 64))
        );
        for bad in [
            "",
            "% Unknown command",
            "[]",
            r#"{"1:1": {"[5]:[0]:[33]:[10.0.0.1]": {"paths": []}}}"#,
        ] {
            assert_eq!(parse_type5_prefixes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_the_version() {
        // FRR 10.3 in the node guest
        let out =
            "FRRouting 10.3 (node-guest) on Linux(7.2.7).\nCopyright 1996-2005 Kunihiro Ishiguro, et al.\n";
        assert_eq!(parse_version(out).as_deref(), Some("10.3"));
        assert_eq!(parse_version("% Unknown command\n"), None);
        assert_eq!(parse_version("FRRouting 10.3<script> (x)"), None);
    }

    #[test]
    fn reads_show_vrf_vni() {
        // as FRR 10.3 prints it, with a VRF mapped by hand whose devices do not exist
        let out = "VRF                                   VNI        VxLAN IF             L3-SVI               State Rmac              \n\
                   adhoc                                 1003       None                 None                 Down  None              \n\
                   vrf-1001                              1001       bvvx-1001            bvbr-1001            Up    02:f7:22:91:39:94 \n";
        assert_eq!(
            parse_vrf_vni(out),
            [(1001, "vrf-1001".to_string()), (1003, "adhoc".to_string())].into()
        );
        assert!(parse_vrf_vni("").is_empty());
    }

    #[test]
    fn test_output_is_parsed() {
        let out = "2026-01-01 INFO: Called via ...\n\nLines To Delete\n===============\nvrf a\n no vni 5\n\nLines To Add\n============\nvrf a\n vni 6\n";
        let d = diff_section(out);
        assert!(d.starts_with("Lines To Delete"));
        assert_eq!(
            d.lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Lines To") && !l.starts_with("===="))
                .count(),
            4
        );
        assert_eq!(diff_section("nothing to do\n"), "");
    }

    #[test]
    fn refused_lines_are_read_from_vtysh_output() {
        let out = "% Please unconfigure l3vni 1001\nline 228: Failure to communicate[13] to bgpd, line: no router bgp 65001 vrf vrf-1001\n\nline 232: Failure to communicate[13] to bgpd, line: no router bgp 65001 vrf vrf-1002 \n";
        assert_eq!(
            refused_lines(out),
            [
                "no router bgp 65001 vrf vrf-1001",
                "no router bgp 65001 vrf vrf-1002"
            ]
        );
        assert!(refused_lines("% Unknown command: foo\n").is_empty());
    }
}
