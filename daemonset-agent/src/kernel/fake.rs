//! An in-memory kernel for the unit tests: applies [`KernelOp`]s the way Linux would (indexes,
//! masters, route replace, sysctls) and records every write.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;

use super::{
    BridgePort, Dataplane, KernelError, KernelOp, KernelState, Link, LinkKind, Route, RouteKind, RouteTarget,
    VxlanInfo,
};
use crate::model::{LINK_GROUP, Prefix, ROUTE_PROTO, VXLAN_PORT};

#[derive(Clone, Debug, Default)]
pub struct FakeKernel {
    pub state: KernelState,
    pub sysctls: BTreeMap<String, String>,
    /// Every write, in order.
    pub writes: Vec<KernelOp>,
    /// Ops that fail (matched by label) with RequestFailed.
    pub fail_label: Option<&'static str>,
    next_index: u32,
}

impl FakeKernel {
    pub fn new() -> Self {
        let mut k = Self {
            next_index: 1,
            ..Default::default()
        };
        k.add_foreign_link("lo", LinkKind::Other("loopback".into()));
        k.sysctls.insert("net/ipv4/ip_forward".into(), "0".into());
        k
    }

    /// A device the agent did not create (group 0).
    pub fn add_foreign_link(&mut self, name: &str, kind: LinkKind) -> u32 {
        let index = self.alloc();
        self.state.links.push(Link {
            index,
            name: name.into(),
            kind,
            group: 0,
            master: None,
            up: true,
            mac: None,
            mtu: Some(1500),
            bridge_port: None,
        });
        self.sysctls
            .insert(format!("net/ipv4/conf/{name}/rp_filter"), "1".into());
        index
    }

    /// A pod attached the way a CNI plugin does it: host veth + host route in main.
    pub fn add_pod(&mut self, veth: &str, ip: &str) -> u32 {
        let index = self.add_foreign_link(veth, LinkKind::Other("veth".into()));
        let ip: IpAddr = ip.parse().unwrap();
        self.state.routes.push(Route {
            table: 254,
            dst: Prefix::host(ip),
            kind: RouteKind::Unicast,
            protocol: 4,
            oif: Some(index),
            gateway: None,
            metric: 0,
        });
        index
    }

    pub fn reset_writes(&mut self) {
        self.writes.clear();
    }

    fn alloc(&mut self) -> u32 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    fn index(&self, name: &str, op: &'static str) -> Result<u32, KernelError> {
        self.state
            .link(name)
            .map(|l| l.index)
            .ok_or_else(|| KernelError::NoSuchLink {
                op,
                name: name.to_string(),
            })
    }

    fn link_mut(&mut self, name: &str, op: &'static str) -> Result<&mut Link, KernelError> {
        self.state
            .links
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| KernelError::NoSuchLink {
                op,
                name: name.to_string(),
            })
    }

    fn create(
        &mut self,
        name: &str,
        kind: LinkKind,
        master: Option<u32>,
        mac: Option<[u8; 6]>,
        mtu: u32,
    ) -> Result<(), KernelError> {
        if self.state.link(name).is_some() {
            return Err(KernelError::CreateLink {
                kind: "link",
                name: name.into(),
                source: rtnetlink::Error::RequestFailed,
            });
        }
        let index = self.alloc();
        let bridge_port = master
            .filter(|m| {
                matches!(
                    self.state.link_by_index(*m).map(|l| &l.kind),
                    Some(LinkKind::Bridge { .. })
                )
            })
            .map(|_| BridgePort {
                learning: Some(true),
                neigh_suppress: Some(false),
            });
        let mac = mac.or(Some([0x0a, 0, 0, 0, 0, index as u8]));
        self.state.links.push(Link {
            index,
            name: name.into(),
            kind,
            group: LINK_GROUP,
            master,
            up: true,
            mac,
            mtu: Some(mtu),
            bridge_port,
        });
        self.sysctls
            .insert(format!("net/ipv4/conf/{name}/rp_filter"), "1".into());
        Ok(())
    }

    fn apply_sync(&mut self, op: &KernelOp) -> Result<(), KernelError> {
        if self.fail_label == Some(op.label()) {
            return Err(KernelError::SetLink {
                name: op.to_string(),
                what: "injected failure",
                source: rtnetlink::Error::RequestFailed,
            });
        }
        self.writes.push(op.clone());
        match op {
            KernelOp::DeleteRule(r) => {
                let before = self.state.rules.len();
                self.state.rules.retain(|x| x != r);
                assert!(
                    self.state.rules.len() < before,
                    "deleting a rule that is not there: {r}"
                );
            }
            KernelOp::DeleteRoute(r) => {
                let before = self.state.routes.len();
                self.state.routes.retain(|x| x != r);
                assert!(
                    self.state.routes.len() < before,
                    "deleting a route that is not there: {r}"
                );
            }
            KernelOp::DeleteLink { name, .. } => {
                let index = self.index(name, "delete")?;
                self.state.links.retain(|l| l.index != index);
                for l in &mut self.state.links {
                    if l.master == Some(index) {
                        l.master = None;
                        l.bridge_port = None;
                    }
                }
                // like the kernel: routes through the device go with it
                self.state.routes.retain(|r| r.oif != Some(index));
            }
            KernelOp::CreateVrf { name, table } => {
                self.create(name.as_str(), LinkKind::Vrf { table: *table }, None, None, 65575)?
            }
            KernelOp::CreateBridge { name, mac, vrf } => {
                let m = self.index(vrf.as_str(), "create bridge")?;
                self.create(
                    name.as_str(),
                    LinkKind::Bridge { stp: Some(false) },
                    Some(m),
                    Some(*mac),
                    1500,
                )?
            }
            KernelOp::CreateVxlan {
                name,
                vni,
                local,
                mtu,
                bridge,
            } => {
                let m = self.index(bridge.as_str(), "create vxlan")?;
                let kind = LinkKind::Vxlan(VxlanInfo {
                    vni: *vni,
                    local: Some(*local),
                    port: Some(VXLAN_PORT),
                    learning: Some(false),
                });
                self.create(name.as_str(), kind, Some(m), None, *mtu)?
            }
            KernelOp::SetUp { name } => self.link_mut(name, "up")?.up = true,
            KernelOp::SetMaster { name, master } => {
                let m = self.index(master, "master")?;
                let is_bridge = matches!(
                    self.state.link_by_index(m).map(|l| &l.kind),
                    Some(LinkKind::Bridge { .. })
                );
                let l = self.link_mut(name, "master")?;
                l.master = Some(m);
                l.bridge_port = is_bridge.then_some(BridgePort {
                    learning: Some(true),
                    neigh_suppress: Some(false),
                });
            }
            KernelOp::SetMac { name, mac } => self.link_mut(name, "mac")?.mac = Some(*mac),
            KernelOp::SetMtu { name, mtu } => self.link_mut(name, "mtu")?.mtu = Some(*mtu),
            KernelOp::SetStpOff { name } => {
                self.link_mut(name, "stp")?.kind = LinkKind::Bridge { stp: Some(false) }
            }
            KernelOp::SetPortFlags { name } => {
                let l = self.link_mut(name, "port flags")?;
                let p = l
                    .bridge_port
                    .as_mut()
                    .expect("port flags on a link that is no bridge port");
                p.learning = Some(false);
                p.neigh_suppress = Some(true);
            }
            KernelOp::WriteSysctl { key, value } => {
                self.sysctls.insert(key.clone(), value.clone());
            }
            KernelOp::ReplaceRoute(spec) => {
                let (kind, oif, gateway) = match &spec.target {
                    RouteTarget::Dev(d) => (RouteKind::Unicast, Some(self.index(d, "route")?), None),
                    RouteTarget::Via { gateway, dev } => (
                        RouteKind::Unicast,
                        Some(self.index(dev, "route")?),
                        Some(*gateway),
                    ),
                };
                self.state
                    .routes
                    .retain(|r| !(r.table == spec.table && r.dst == spec.dst && r.metric == spec.metric));
                self.state.routes.push(Route {
                    table: spec.table,
                    dst: spec.dst,
                    kind,
                    protocol: ROUTE_PROTO,
                    oif,
                    gateway,
                    metric: spec.metric,
                });
            }
            KernelOp::AddRule(spec) => self.state.rules.push(spec.to_rule()),
        }
        Ok(())
    }
}

impl Dataplane for FakeKernel {
    fn dump(&mut self) -> impl Future<Output = Result<KernelState, KernelError>> + Send {
        let s = self.state.clone();
        async move { Ok(s) }
    }

    fn apply(&mut self, op: &KernelOp) -> impl Future<Output = Result<(), KernelError>> + Send {
        let r = self.apply_sync(op);
        async move { r }
    }

    fn read_sysctls(&mut self, keys: &[String]) -> BTreeMap<String, String> {
        keys.iter()
            .filter_map(|k| self.sysctls.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}
