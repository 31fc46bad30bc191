//! The kernel side: what the agent observes, the operations it can perform, and the
//! [`Dataplane`] trait behind which the one long-lived rtnetlink handle lives.
//!
//! The planning in [`plan`] is pure (observed state in, operations out), so the whole
//! diff/sweep/ordering logic is unit-tested against [`fake::FakeKernel`] without root.

#[cfg(test)]
pub mod fake;
pub mod plan;
pub mod rtnl;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use crate::model::{
    BRIDGE_PREFIX, GUARD_PRIORITY, IfName, LINK_GROUP, Prefix, ROUTE_PROTO, RULE_PRIORITY, VXLAN_PREFIX,
    format_mac, slot_of_table,
};

/// A network device as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    /// Device group; [`LINK_GROUP`] marks the agent's own devices.
    pub group: u32,
    /// Index of the master device (VRF or bridge).
    pub master: Option<u32>,
    pub up: bool,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Port settings when the link is a bridge port.
    pub bridge_port: Option<BridgePort>,
}

impl Link {
    /// Made by the agent: its device group *and* the shape it gives its devices (a VRF on one of
    /// its tables, `bvbr-*` bridges, `bvvx-*` VXLAN devices). Another program's device in that
    /// group is neither changed nor swept.
    pub fn owned(&self) -> bool {
        self.group == LINK_GROUP
            && match &self.kind {
                LinkKind::Vrf { table } => slot_of_table(*table).is_some(),
                LinkKind::Bridge { .. } => self.name.starts_with(BRIDGE_PREFIX),
                LinkKind::Vxlan(_) => self.name.starts_with(VXLAN_PREFIX),
                LinkKind::Other(_) => false,
            }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Vrf { table: u32 },
    Bridge { stp: Option<bool> },
    Vxlan(VxlanInfo),
    Other(String),
}

impl LinkKind {
    pub fn label(&self) -> &str {
        match self {
            LinkKind::Vrf { .. } => "vrf",
            LinkKind::Bridge { .. } => "bridge",
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Other(k) => k,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub local: Option<IpAddr>,
    pub port: Option<u16>,
    pub learning: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgePort {
    pub learning: Option<bool>,
    pub neigh_suppress: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteKind {
    Unicast,
    Unreachable,
    Other(u8),
}

/// A route as observed (any table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: Prefix,
    pub kind: RouteKind,
    pub protocol: u8,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub metric: u32,
}

impl Route {
    /// Made by the agent: its protocol *and* one of its VRF tables (the planner also leaves
    /// alone a table a foreign VRF holds). `proto 232` anywhere else is another program's.
    pub fn owned(&self) -> bool {
        self.protocol == ROUTE_PROTO && slot_of_table(self.table).is_some()
    }
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleVerdict {
    Lookup,
    Unreachable,
    Other(u8),
}

/// A policy rule as observed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub v6: bool,
    pub priority: u32,
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub verdict: RuleVerdict,
    pub table: u32,
    pub protocol: u8,
    pub suppress_prefixlen: Option<u32>,
    /// Any other selector (fwmark, uidrange, ports, l3mdev, ...).
    pub has_other_selectors: bool,
}

impl Rule {
    /// Made by the agent: its protocol *and* the shape of one of its two rules (a pod's or a
    /// routed prefix's lookup into an agent VRF table, a guard on an agent bridge). Any other `proto 232` rule is another
    /// program's.
    pub fn owned(&self) -> bool {
        if self.protocol != ROUTE_PROTO
            || self.dst.is_some()
            || self.oif.is_some()
            || self.has_other_selectors
        {
            return false;
        }
        let pod_lookup = self.priority == RULE_PRIORITY
            && self.verdict == RuleVerdict::Lookup
            && slot_of_table(self.table).is_some()
            && self.src.is_some_and(|s| s.len > 0)
            && self.iif.is_none()
            && self.suppress_prefixlen == Some(0);
        let guard = self.priority == GUARD_PRIORITY
            && self.verdict == RuleVerdict::Unreachable
            && self.src.is_none()
            && self.iif.as_deref().is_some_and(|i| i.starts_with(BRIDGE_PREFIX));
        pod_lookup || guard
    }
}

/// Everything read from the kernel in one pass (one dump of each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub rules: Vec<Rule>,
}

impl KernelState {
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    pub fn link_by_index(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }
}

/// How a desired route forwards.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteTarget {
    /// `dev <ifname> scope link`
    Dev(String),
    /// `via <gateway> dev <ifname> onlink`
    Via { gateway: IpAddr, dev: String },
}

/// A route the agent wants (always `proto 232`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSpec {
    pub table: u32,
    pub dst: Prefix,
    pub target: RouteTarget,
    pub metric: u32,
}

/// A rule the agent wants (always `proto 232`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleSpec {
    /// `from <src> lookup <table> suppress_prefixlength 0 pref 2000`: the pod's traffic is
    /// looked up in its VRF first.
    PodLookup { src: Prefix, table: u32 },
    /// `iif <bridge> unreachable pref 1001` (per family): traffic entering the VRF from the
    /// VPN (VXLAN -> bridge, the VRF's only L3 port) without a route in the VRF table stops
    /// instead of falling through the l3mdev rule into the main table. Input lookups carry the
    /// slave (the bridge) as iif, not the VRF device, hence the bridge here. Sockets bound to
    /// the VRF are not covered (the kernel clears the oif of l3mdev flows); the agent opens none.
    VrfGuard { v6: bool, bridge: String },
}

impl RuleSpec {
    pub fn v6(&self) -> bool {
        match self {
            RuleSpec::PodLookup { src, .. } => !src.is_ipv4(),
            RuleSpec::VrfGuard { v6, .. } => *v6,
        }
    }

    pub fn priority(&self) -> u32 {
        match self {
            RuleSpec::PodLookup { .. } => crate::model::RULE_PRIORITY,
            RuleSpec::VrfGuard { .. } => crate::model::GUARD_PRIORITY,
        }
    }

    /// The observed rule this spec asks for.
    pub fn to_rule(&self) -> Rule {
        let mut r = Rule {
            v6: self.v6(),
            priority: self.priority(),
            src: None,
            dst: None,
            iif: None,
            oif: None,
            verdict: RuleVerdict::Lookup,
            table: 0,
            protocol: ROUTE_PROTO,
            suppress_prefixlen: None,
            has_other_selectors: false,
        };
        match self {
            RuleSpec::PodLookup { src, table } => {
                r.src = Some(*src);
                r.table = *table;
                r.suppress_prefixlen = Some(0);
            }
            RuleSpec::VrfGuard { bridge, .. } => {
                r.verdict = RuleVerdict::Unreachable;
                r.iif = Some(bridge.clone());
            }
        }
        r
    }
}

/// One kernel write. `Display` prints the equivalent `ip` command (used by `plan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOp {
    DeleteRule(Rule),
    DeleteRoute(Route),
    DeleteLink {
        name: String,
        index: u32,
        kind: String,
    },
    CreateVrf {
        name: IfName,
        table: u32,
    },
    CreateBridge {
        name: IfName,
        mac: [u8; 6],
        vrf: IfName,
    },
    CreateVxlan {
        name: IfName,
        vni: u32,
        local: IpAddr,
        mtu: u32,
        bridge: IfName,
    },
    SetUp {
        name: String,
    },
    SetMaster {
        name: String,
        master: String,
    },
    SetMac {
        name: String,
        mac: [u8; 6],
    },
    SetMtu {
        name: String,
        mtu: u32,
    },
    SetStpOff {
        name: String,
    },
    /// `bridge link set dev <name> learning off neigh_suppress on`
    SetPortFlags {
        name: String,
    },
    WriteSysctl {
        key: String,
        value: String,
    },
    /// Add or replace (NLM_F_REPLACE: one write, no gap when the next hop changes).
    ReplaceRoute(RouteSpec),
    AddRule(RuleSpec),
}

impl KernelOp {
    /// Routes and rules: within one plan they name only devices and tables made before them
    /// and never the same key twice, so a run of them may be in flight at once.
    pub fn is_independent(&self) -> bool {
        matches!(
            self,
            KernelOp::DeleteRule(_)
                | KernelOp::DeleteRoute(_)
                | KernelOp::ReplaceRoute(_)
                | KernelOp::AddRule(_)
        )
    }

    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            KernelOp::DeleteRule(_) => "delete_rule",
            KernelOp::DeleteRoute(_) => "delete_route",
            KernelOp::DeleteLink { .. } => "delete_link",
            KernelOp::CreateVrf { .. } => "create_vrf",
            KernelOp::CreateBridge { .. } => "create_bridge",
            KernelOp::CreateVxlan { .. } => "create_vxlan",
            KernelOp::SetUp { .. } => "set_up",
            KernelOp::SetMaster { .. } => "set_master",
            KernelOp::SetMac { .. } => "set_mac",
            KernelOp::SetMtu { .. } => "set_mtu",
            KernelOp::SetStpOff { .. } => "set_stp_off",
            KernelOp::SetPortFlags { .. } => "set_port_flags",
            KernelOp::WriteSysctl { .. } => "write_sysctl",
            KernelOp::ReplaceRoute(_) => "replace_route",
            KernelOp::AddRule(_) => "add_rule",
        }
    }
}

fn table_name(t: u32) -> String {
    match t {
        254 => "main".into(),
        255 => "local".into(),
        253 => "default".into(),
        t => t.to_string(),
    }
}

fn family(p: &Prefix) -> &'static str {
    if p.is_ipv4() { "-4" } else { "-6" }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dst = if self.dst.len == 0 {
            "default".to_string()
        } else {
            self.dst.to_string()
        };
        match &self.target {
            RouteTarget::Dev(dev) => write!(f, "{dst} dev {dev} scope link")?,
            RouteTarget::Via { gateway, dev } => write!(f, "{dst} via {gateway} dev {dev} onlink")?,
        }
        write!(f, " table {} proto {ROUTE_PROTO}", table_name(self.table))?;
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dst = if self.dst.len == 0 {
            "default".to_string()
        } else {
            self.dst.to_string()
        };
        if self.kind == RouteKind::Unreachable {
            write!(f, "unreachable ")?;
        }
        write!(f, "{dst}")?;
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " oif {oif}")?;
        }
        write!(f, " table {} proto {}", table_name(self.table), self.protocol)?;
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_rule().fmt(f)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.src {
            Some(src) => write!(f, "from {src}")?,
            None => write!(f, "from all")?,
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        match self.verdict {
            RuleVerdict::Lookup => write!(f, " lookup {}", table_name(self.table))?,
            RuleVerdict::Unreachable => write!(f, " unreachable")?,
            RuleVerdict::Other(a) => write!(f, " action {a}")?,
        }
        if let Some(s) = self.suppress_prefixlen {
            write!(f, " suppress_prefixlength {s}")?;
        }
        write!(f, " pref {} proto {}", self.priority, self.protocol)
    }
}

impl fmt::Display for KernelOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelOp::DeleteRule(r) => write!(f, "ip {} rule del {r}", if r.v6 { "-6" } else { "-4" }),
            KernelOp::DeleteRoute(r) => write!(f, "ip {} route del {r}", family(&r.dst)),
            KernelOp::DeleteLink { name, kind, .. } => write!(f, "ip link del {name}  # {kind}"),
            KernelOp::CreateVrf { name, table } => write!(
                f,
                "ip link add {name} group {LINK_GROUP} up type vrf table {table}"
            ),
            KernelOp::CreateBridge { name, mac, vrf } => {
                write!(
                    f,
                    "ip link add {name} address {} master {vrf} group {LINK_GROUP} up type bridge stp_state 0",
                    format_mac(mac)
                )
            }
            KernelOp::CreateVxlan {
                name,
                vni,
                local,
                mtu,
                bridge,
            } => write!(
                f,
                "ip link add {name} mtu {mtu} master {bridge} group {LINK_GROUP} up type vxlan id {vni} local {local} dstport {} nolearning",
                crate::model::VXLAN_PORT
            ),
            KernelOp::SetUp { name } => write!(f, "ip link set {name} up"),
            KernelOp::SetMaster { name, master } => write!(f, "ip link set {name} master {master}"),
            KernelOp::SetMac { name, mac } => write!(f, "ip link set {name} address {}", format_mac(mac)),
            KernelOp::SetMtu { name, mtu } => write!(f, "ip link set {name} mtu {mtu}"),
            KernelOp::SetStpOff { name } => write!(f, "ip link set {name} type bridge stp_state 0"),
            KernelOp::SetPortFlags { name } => {
                write!(f, "bridge link set dev {name} learning off neigh_suppress on")
            }
            KernelOp::WriteSysctl { key, value } => write!(f, "sysctl -w {}={value}", key.replace('/', ".")),
            KernelOp::ReplaceRoute(r) => write!(f, "ip {} route replace {r}", family(&r.dst)),
            KernelOp::AddRule(r) => write!(f, "ip {} rule add {r}", if r.v6() { "-6" } else { "-4" }),
        }
    }
}

/// A failed kernel operation, typed by what was being done.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("opening the rtnetlink connection: {0}")]
    Connect(#[source] std::io::Error),
    #[error("dumping {what}: {source}")]
    Dump {
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("creating {kind} {name}: {source}")]
    CreateLink {
        kind: &'static str,
        name: String,
        source: rtnetlink::Error,
    },
    #[error("changing {name} ({what}): {source}")]
    SetLink {
        name: String,
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("deleting link {name}: {source}")]
    DeleteLink { name: String, source: rtnetlink::Error },
    #[error("adding route {route}: {source}")]
    AddRoute { route: String, source: rtnetlink::Error },
    #[error("deleting route {route}: {source}")]
    DeleteRoute { route: String, source: rtnetlink::Error },
    #[error("adding rule {rule}: {source}")]
    AddRule { rule: String, source: rtnetlink::Error },
    #[error("deleting rule {rule}: {source}")]
    DeleteRule { rule: String, source: rtnetlink::Error },
    #[error("writing sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
    #[error("{op}: no device named {name}")]
    NoSuchLink { op: &'static str, name: String },
}

/// The kernel behind a trait: one implementation over one long-lived rtnetlink handle
/// ([`rtnl::RtNetlink`]), one in-memory fake for the tests.
pub trait Dataplane: Send {
    /// Links, routes (all tables) and rules, one dump each.
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, KernelError>> + Send;
    /// Performs one write.
    fn apply(&mut self, op: &KernelOp) -> impl Future<Output = Result<(), KernelError>> + Send;
    /// Performs a run of [independent](KernelOp::is_independent) writes, possibly several at
    /// once; one result per op, in order.
    fn apply_independent(
        &mut self,
        ops: &[KernelOp],
    ) -> impl Future<Output = Vec<Result<(), KernelError>>> + Send {
        async move {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                results.push(self.apply(op).await);
            }
            results
        }
    }
    /// Reads sysctls (keys relative to `/proc/sys`, `/`-separated); missing keys are absent.
    fn read_sysctls(&mut self, keys: &[String]) -> BTreeMap<String, String>;
}
