//! [`Dataplane`] over one long-lived rtnetlink connection (spawned once; the [`Handle`] is kept
//! for the life of the agent).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVrf,
    InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{
    Handle, IpVersion, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVrf, LinkVxlan,
    RouteMessageBuilder,
};

use super::{
    BridgePort, Dataplane, KernelError, KernelOp, KernelState, Link, LinkKind, Route, RouteKind, RouteSpec,
    RouteTarget, Rule, RuleVerdict, VxlanInfo,
};
use crate::model::{LINK_GROUP, Prefix, ROUTE_PROTO, VXLAN_PORT};

/// Requests kept outstanding by [`Dataplane::apply_independent`].
const IN_FLIGHT: usize = 64;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;

/// The real kernel.
pub struct RtNetlink {
    handle: Handle,
    /// name -> index, from the last dump plus what this agent created since.
    index: HashMap<String, u32>,
    proc_sys: PathBuf,
}

impl RtNetlink {
    /// Opens the connection and spawns its task on the current tokio runtime.
    pub fn connect() -> Result<Self, KernelError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
        tokio::spawn(conn);
        Ok(Self {
            handle,
            index: HashMap::new(),
            proc_sys: PathBuf::from("/proc/sys"),
        })
    }

    /// Reads and writes sysctls under `dir` instead of `/proc/sys` (in a container /proc/sys is
    /// read-only, so the host's is mounted elsewhere).
    pub fn with_proc_sys(mut self, dir: PathBuf) -> Self {
        self.proc_sys = dir;
        self
    }

    async fn index_of(&mut self, name: &str, op: &'static str) -> Result<u32, KernelError> {
        if let Some(i) = self.index.get(name) {
            return Ok(*i);
        }
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(Some(msg)) => {
                self.index.insert(name.to_string(), msg.header.index);
                Ok(msg.header.index)
            }
            _ => Err(KernelError::NoSuchLink {
                op,
                name: name.to_string(),
            }),
        }
    }

    async fn create(&mut self, kind: &'static str, name: &str, msg: LinkMessage) -> Result<(), KernelError> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|source| KernelError::CreateLink {
                kind,
                name: name.to_string(),
                source,
            })?;
        self.index.remove(name);
        self.index_of(name, "look up new link").await.map(|_| ())
    }

    async fn set(
        &mut self,
        name: &str,
        what: &'static str,
        build: impl FnOnce(u32) -> LinkMessage,
    ) -> Result<(), KernelError> {
        let index = self.index_of(name, what).await?;
        self.handle
            .link()
            .change(build(index))
            .execute()
            .await
            .map_err(|source| KernelError::SetLink {
                name: name.to_string(),
                what,
                source,
            })
    }

    /// The request of a route or rule op, ready to run on its own (device indexes resolved
    /// now); `None` for the other ops.
    async fn independent_request(
        &mut self,
        op: &KernelOp,
    ) -> Result<Option<BoxFuture<'static, Result<(), KernelError>>>, KernelError> {
        let handle = self.handle.clone();
        Ok(Some(match op {
            KernelOp::DeleteRule(r) => {
                let (msg, rule) = (rule_message(r), r.to_string());
                Box::pin(async move {
                    ignore_gone(handle.rule().del(msg).execute().await)
                        .map_err(|source| KernelError::DeleteRule { rule, source })
                })
            }
            KernelOp::DeleteRoute(r) => {
                let (msg, route) = (route_delete_message(r), r.to_string());
                Box::pin(async move {
                    ignore_gone(handle.route().del(msg).execute().await)
                        .map_err(|source| KernelError::DeleteRoute { route, source })
                })
            }
            KernelOp::ReplaceRoute(spec) => {
                let (msg, route) = (self.route_add_message(spec).await?, spec.to_string());
                Box::pin(async move {
                    handle
                        .route()
                        .add(msg)
                        .replace()
                        .execute()
                        .await
                        .map_err(|source| KernelError::AddRoute { route, source })
                })
            }
            KernelOp::AddRule(spec) => {
                let (msg, rule) = (rule_message(&spec.to_rule()), spec.to_string());
                Box::pin(async move {
                    let mut req = handle.rule().add();
                    *req.message_mut() = msg;
                    req.execute()
                        .await
                        .map_err(|source| KernelError::AddRule { rule, source })
                })
            }
            _ => return Ok(None),
        }))
    }

    async fn apply_op(&mut self, op: &KernelOp) -> Result<(), KernelError> {
        if let Some(request) = self.independent_request(op).await? {
            return request.await;
        }
        match op {
            KernelOp::DeleteRule(_)
            | KernelOp::DeleteRoute(_)
            | KernelOp::ReplaceRoute(_)
            | KernelOp::AddRule(_) => {
                unreachable!("routes and rules are sent by independent_request")
            }
            KernelOp::DeleteLink { name, index, .. } => {
                let res = self.handle.link().del(*index).execute().await;
                self.index.remove(name);
                ignore_gone(res).map_err(|source| KernelError::DeleteLink {
                    name: name.clone(),
                    source,
                })
            }
            KernelOp::CreateVrf { name, table } => {
                let msg = LinkVrf::new(name.as_str(), *table)
                    .link_group(LINK_GROUP)
                    .up()
                    .build();
                self.create("vrf", name.as_str(), msg).await
            }
            KernelOp::CreateBridge { name, mac, vrf } => {
                let master = self.index_of(vrf.as_str(), "create bridge").await?;
                let msg = LinkMessageBuilder::<LinkBridge>::new(name.as_str())
                    .stp_state(BridgeStpState::Disabled)
                    .address(mac.to_vec())
                    .controller(master)
                    .link_group(LINK_GROUP)
                    .up()
                    .build();
                self.create("bridge", name.as_str(), msg).await
            }
            KernelOp::CreateVxlan {
                name,
                vni,
                local,
                mtu,
                bridge,
            } => {
                let master = self.index_of(bridge.as_str(), "create vxlan").await?;
                let b = LinkVxlan::new(name.as_str(), *vni)
                    .port(VXLAN_PORT)
                    .learning(false);
                let b = match local {
                    IpAddr::V4(a) => b.local(*a),
                    IpAddr::V6(a) => b.local6(*a),
                };
                let msg = b.mtu(*mtu).controller(master).link_group(LINK_GROUP).up().build();
                self.create("vxlan", name.as_str(), msg).await
            }
            KernelOp::SetUp { name } => {
                self.set(name, "up", |i| LinkUnspec::new_with_index(i).up().build())
                    .await
            }
            KernelOp::SetMaster { name, master } => {
                let m = self.index_of(master, "set master").await?;
                self.set(name, "master", |i| {
                    LinkUnspec::new_with_index(i).controller(m).build()
                })
                .await
            }
            KernelOp::SetMac { name, mac } => {
                self.set(name, "address", |i| {
                    LinkUnspec::new_with_index(i).address(mac.to_vec()).build()
                })
                .await
            }
            KernelOp::SetMtu { name, mtu } => {
                self.set(name, "mtu", |i| LinkUnspec::new_with_index(i).mtu(*mtu).build())
                    .await
            }
            KernelOp::SetStpOff { name } => {
                let n = name.clone();
                self.set(name, "stp_state", move |i| {
                    LinkMessageBuilder::<LinkBridge>::new(&n)
                        .index(i)
                        .stp_state(BridgeStpState::Disabled)
                        .build()
                })
                .await
            }
            KernelOp::SetPortFlags { name } => {
                let index = self.index_of(name, "bridge port flags").await?;
                let msg = LinkBridgePort::new(index)
                    .learning(false)
                    .neigh_suppress(true)
                    .build();
                self.handle
                    .link()
                    .set_port(msg)
                    .execute()
                    .await
                    .map_err(|source| KernelError::SetLink {
                        name: name.clone(),
                        what: "bridge port learning/neigh_suppress",
                        source,
                    })
            }
            KernelOp::WriteSysctl { key, value } => {
                let path = self.proc_sys.join(key);
                std::fs::write(&path, value).map_err(|source| KernelError::Sysctl {
                    key: key.clone(),
                    source,
                })
            }
        }
    }

    async fn route_add_message(&mut self, spec: &RouteSpec) -> Result<RouteMessage, KernelError> {
        let oif = match &spec.target {
            RouteTarget::Dev(dev) | RouteTarget::Via { dev, .. } => self.index_of(dev, "route").await?,
        };
        let proto = RouteProtocol::from(ROUTE_PROTO);
        let mut msg = match spec.dst.addr {
            IpAddr::V4(a) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(a, spec.dst.len)
                    .table_id(spec.table)
                    .protocol(proto);
                if let RouteTarget::Via {
                    gateway: IpAddr::V4(gw),
                    ..
                } = &spec.target
                {
                    b = b.gateway(*gw).onlink();
                }
                b.build()
            }
            IpAddr::V6(a) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(a, spec.dst.len)
                    .table_id(spec.table)
                    .protocol(proto);
                if let RouteTarget::Via {
                    gateway: IpAddr::V6(gw),
                    ..
                } = &spec.target
                {
                    b = b.gateway(*gw).onlink();
                }
                b.build()
            }
        };
        if let RouteTarget::Dev(_) = &spec.target {
            msg.header.scope = RouteScope::Link;
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        if spec.metric != 0 {
            msg.attributes.push(RouteAttribute::Priority(spec.metric));
        }
        Ok(msg)
    }

    async fn dump_all(&mut self) -> Result<KernelState, KernelError> {
        let links: Vec<LinkMessage> =
            self.handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|source| KernelError::Dump {
                    what: "links",
                    source,
                })?;
        let mut routes = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let part: Vec<RouteMessage> = self
                .handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(|source| KernelError::Dump {
                    what: "routes",
                    source,
                })?;
            routes.extend(part.iter().filter_map(parse_route));
        }
        let mut rules = Vec::new();
        for v in [IpVersion::V4, IpVersion::V6] {
            let part: Vec<RuleMessage> =
                self.handle
                    .rule()
                    .get(v)
                    .execute()
                    .try_collect()
                    .await
                    .map_err(|source| KernelError::Dump {
                        what: "rules",
                        source,
                    })?;
            rules.extend(part.iter().map(parse_rule));
        }
        let links: Vec<Link> = links.iter().map(parse_link).collect();
        self.index = links.iter().map(|l| (l.name.clone(), l.index)).collect();
        Ok(KernelState { links, routes, rules })
    }
}

/// Deleting something that is already gone is success (the desired state holds).
fn ignore_gone(res: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match res {
        Err(rtnetlink::Error::NetlinkError(e))
            if matches!(e.code.map(|c| -c.get()), Some(ENOENT | ESRCH | ENODEV)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A rule message carrying every field of `r` (the kernel matches deletes on the fields given).
fn rule_message(r: &Rule) -> RuleMessage {
    let mut m = RuleMessage::default();
    m.header.family = if r.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    m.header.action = match r.verdict {
        RuleVerdict::Lookup => RuleAction::ToTable,
        RuleVerdict::Unreachable => RuleAction::Unreachable,
        RuleVerdict::Other(a) => RuleAction::from(a),
    };
    if r.verdict == RuleVerdict::Lookup {
        if r.table < 256 {
            m.header.table = r.table as u8;
        }
        m.attributes.push(RuleAttribute::Table(r.table));
    }
    m.attributes.push(RuleAttribute::Priority(r.priority));
    if let Some(src) = r.src {
        m.header.src_len = src.len;
        m.attributes.push(RuleAttribute::Source(src.addr));
    }
    if let Some(dst) = r.dst {
        m.header.dst_len = dst.len;
        m.attributes.push(RuleAttribute::Destination(dst.addr));
    }
    if let Some(i) = &r.iif {
        m.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(o) = &r.oif {
        m.attributes.push(RuleAttribute::Oifname(o.clone()));
    }
    m.attributes
        .push(RuleAttribute::Protocol(RouteProtocol::from(r.protocol)));
    if let Some(s) = r.suppress_prefixlen {
        m.attributes.push(RuleAttribute::SuppressPrefixLen(s));
    }
    m
}

fn route_delete_message(r: &Route) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if r.dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = r.dst.len;
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.scope = RouteScope::NoWhere;
    m.header.kind = match r.kind {
        RouteKind::Unicast => RouteType::Unicast,
        RouteKind::Unreachable => RouteType::Unreachable,
        RouteKind::Other(k) => RouteType::from(k),
    };
    if r.table < 256 {
        m.header.table = r.table as u8;
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if r.dst.len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst.addr)));
    }
    if r.metric != 0 {
        m.attributes.push(RouteAttribute::Priority(r.metric));
    }
    if let Some(oif) = r.oif.filter(|_| r.kind == RouteKind::Unicast) {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    m
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse_route(m: &RouteMessage) -> Option<Route> {
    let v4 = match m.header.address_family {
        AddressFamily::Inet => true,
        AddressFamily::Inet6 => false,
        _ => return None,
    };
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let (mut oif, mut gateway, mut metric) = (None, None, 0);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_addr(d),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(g) => gateway = route_addr(g),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    let any: IpAddr = if v4 {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let kind = match m.header.kind {
        RouteType::Unicast => RouteKind::Unicast,
        RouteType::Unreachable => RouteKind::Unreachable,
        other => RouteKind::Other(u8::from(other)),
    };
    Some(Route {
        table,
        dst: Prefix {
            addr: dst.unwrap_or(any),
            len: m.header.destination_prefix_length,
        },
        kind,
        protocol: u8::from(m.header.protocol),
        oif,
        gateway,
        metric,
    })
}

fn parse_rule(m: &RuleMessage) -> Rule {
    let mut r = Rule {
        v6: m.header.family == AddressFamily::Inet6,
        priority: 0,
        src: None,
        dst: None,
        iif: None,
        oif: None,
        verdict: match m.header.action {
            RuleAction::ToTable => RuleVerdict::Lookup,
            RuleAction::Unreachable => RuleVerdict::Unreachable,
            other => RuleVerdict::Other(u8::from(other)),
        },
        table: u32::from(m.header.table),
        protocol: 0,
        suppress_prefixlen: None,
        has_other_selectors: m.header.tos != 0,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Source(ip) => {
                r.src = Some(Prefix {
                    addr: *ip,
                    len: m.header.src_len,
                })
            }
            RuleAttribute::Destination(ip) => {
                r.dst = Some(Prefix {
                    addr: *ip,
                    len: m.header.dst_len,
                })
            }
            RuleAttribute::Iifname(n) => r.iif = Some(n.clone()),
            RuleAttribute::Oifname(n) => r.oif = Some(n.clone()),
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Protocol(p) => r.protocol = u8::from(*p),
            // the kernel reports "not set" as -1
            RuleAttribute::SuppressPrefixLen(s) => r.suppress_prefixlen = (*s != u32::MAX).then_some(*s),
            RuleAttribute::L3MDev(false) | RuleAttribute::FwMask(_) | RuleAttribute::FwMark(0) => {}
            RuleAttribute::FwMark(_)
            | RuleAttribute::L3MDev(true)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::Goto(_)
            | RuleAttribute::SuppressIfGroup(_) => r.has_other_selectors = true,
            _ => {}
        }
    }
    if r.verdict != RuleVerdict::Lookup {
        r.table = 0;
    }
    r
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        kind: LinkKind::Other(String::new()),
        group: 0,
        master: None,
        up: m.header.flags.contains(LinkFlags::Up),
        mac: None,
        mtu: None,
        bridge_port: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Group(g) => l.group = *g,
            LinkAttribute::Controller(c) => l.master = Some(*c),
            LinkAttribute::Mtu(mtu) => l.mtu = Some(*mtu),
            LinkAttribute::Address(a) if a.len() == 6 => l.mac = Some([a[0], a[1], a[2], a[3], a[4], a[5]]),
            LinkAttribute::LinkInfo(infos) => parse_link_info(infos, &mut l),
            _ => {}
        }
    }
    l
}

fn parse_link_info(infos: &[LinkInfo], l: &mut Link) {
    let mut port_is_bridge = false;
    for info in infos {
        match info {
            LinkInfo::Kind(k) => {
                l.kind = match k {
                    InfoKind::Vrf => LinkKind::Vrf { table: 0 },
                    InfoKind::Bridge => LinkKind::Bridge { stp: None },
                    InfoKind::Vxlan => LinkKind::Vxlan(VxlanInfo {
                        vni: 0,
                        local: None,
                        port: None,
                        learning: None,
                    }),
                    other => LinkKind::Other(other.to_string()),
                }
            }
            LinkInfo::Data(InfoData::Vrf(d)) => {
                for x in d {
                    if let (InfoVrf::TableId(t), LinkKind::Vrf { table }) = (x, &mut l.kind) {
                        *table = *t;
                    }
                }
            }
            LinkInfo::Data(InfoData::Bridge(d)) => {
                for x in d {
                    if let (InfoBridge::StpState(s), LinkKind::Bridge { stp }) = (x, &mut l.kind) {
                        *stp = Some(*s != BridgeStpState::Disabled);
                    }
                }
            }
            LinkInfo::Data(InfoData::Vxlan(d)) => {
                if let LinkKind::Vxlan(v) = &mut l.kind {
                    for x in d {
                        match x {
                            InfoVxlan::Id(id) => v.vni = *id,
                            InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(*a)),
                            InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(*a)),
                            InfoVxlan::Port(p) => v.port = Some(*p),
                            InfoVxlan::Learning(b) => v.learning = Some(*b),
                            _ => {}
                        }
                    }
                }
            }
            LinkInfo::PortKind(InfoPortKind::Bridge) => port_is_bridge = true,
            LinkInfo::PortData(InfoPortData::BridgePort(d)) => {
                let mut p = BridgePort::default();
                for x in d {
                    match x {
                        InfoBridgePort::Learning(b) => p.learning = Some(*b),
                        InfoBridgePort::NeighSupress(b) => p.neigh_suppress = Some(*b),
                        _ => {}
                    }
                }
                l.bridge_port = Some(p);
            }
            _ => {}
        }
    }
    if !port_is_bridge {
        l.bridge_port = None;
    }
}

impl Dataplane for RtNetlink {
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, KernelError>> + Send {
        self.dump_all()
    }

    fn apply(&mut self, op: &KernelOp) -> impl Future<Output = Result<(), KernelError>> + Send {
        self.apply_op(op)
    }

    /// Keeps up to [`IN_FLIGHT`] requests outstanding on the one connection instead of waiting
    /// for each acknowledgement (the kernel still applies them one by one, in order).
    async fn apply_independent(&mut self, ops: &[KernelOp]) -> Vec<Result<(), KernelError>> {
        let mut requests: Vec<BoxFuture<'static, Result<(), KernelError>>> = Vec::with_capacity(ops.len());
        for op in ops {
            requests.push(match self.independent_request(op).await {
                Ok(Some(request)) => request,
                Ok(None) => Box::pin(futures::future::ready(self.apply_op(op).await)),
                Err(e) => Box::pin(futures::future::ready(Err(e))),
            });
        }
        futures::stream::iter(requests)
            .buffered(IN_FLIGHT)
            .collect()
            .await
    }

    fn read_sysctls(&mut self, keys: &[String]) -> BTreeMap<String, String> {
        keys.iter()
            .filter_map(|k| {
                std::fs::read_to_string(self.proc_sys.join(k))
                    .ok()
                    .map(|v| (k.clone(), v.trim().to_string()))
            })
            .collect()
    }
}
