//! Netlink monitor: link, route and rule notifications that should start a pass.
//!
//! It listens on a subscription socket of its own (multicast groups link, IPv4/IPv6 route and
//! rule); programming stays on the agent's one request handle. Relevant events: an agent-owned
//! link, route or rule changed or vanished (repair), and a host route appearing or vanishing in
//! the main table (a CNI plugin wiring or removing a pod, which makes an endpoint ready or
//! pending). Everything else, including the EVPN routes zebra installs, is ignored.
//!
//! The kernel repeats RTM_NEWLINK for an owned device whenever anything about it changes,
//! IPv6 address configuration included; at a thousand VNIs that is a steady stream, and each
//! notification started a pass. An owned link therefore counts only when what the agent
//! programs (name, master, group, up, MTU, MAC) differs from the last notification about it.

use std::collections::HashMap;

use futures::StreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::AsyncSocket;
use tokio::sync::mpsc;

use crate::model::{LINK_GROUP, ROUTE_PROTO};

/// Receive buffer asked for the subscription socket.
const MONITOR_RCVBUF: usize = 8 * 1024 * 1024;

/// Why a notification matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An agent-owned object changed or vanished.
    Owned(&'static str),
    /// A host route in the main table appeared or vanished (pods come and go).
    HostRoute,
}

/// What the agent programs on a link, as a notification carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LinkDigest {
    name: Option<String>,
    master: Option<u32>,
    group: Option<u32>,
    up: bool,
    mtu: Option<u32>,
    mac: Option<Vec<u8>>,
}

fn digest(m: &LinkMessage) -> LinkDigest {
    let mut d = LinkDigest {
        name: None,
        master: None,
        group: None,
        up: m.header.flags.contains(LinkFlags::Up),
        mtu: None,
        mac: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => d.name = Some(n.clone()),
            LinkAttribute::Controller(i) => d.master = Some(*i),
            LinkAttribute::Group(g) => d.group = Some(*g),
            LinkAttribute::Mtu(x) => d.mtu = Some(*x),
            LinkAttribute::Address(a) => d.mac = Some(a.clone()),
            _ => {}
        }
    }
    d
}

/// Owned links as last notified, so that a repeated notification is not an event.
#[derive(Default)]
pub struct LinkMemory(HashMap<u32, LinkDigest>);

impl LinkMemory {
    /// Classifies one notification, remembering owned links.
    pub fn classify(&mut self, msg: &RouteNetlinkMessage) -> Option<Event> {
        match msg {
            RouteNetlinkMessage::NewLink(m) if link_owned(m) => {
                let d = digest(m);
                if self.0.get(&m.header.index) == Some(&d) {
                    return None;
                }
                self.0.insert(m.header.index, d);
                Some(Event::Owned("link changed"))
            }
            // the bridge's per-port messages (AF_BRIDGE) carry no group: not a loss of the marker
            RouteNetlinkMessage::NewLink(m) if m.header.interface_family == AddressFamily::Bridge => None,
            RouteNetlinkMessage::DelLink(m) | RouteNetlinkMessage::NewLink(m) => {
                // deleted, or no longer carrying the marker
                self.0.remove(&m.header.index);
                classify(msg)
            }
            _ => classify(msg),
        }
    }
}

fn link_owned(m: &LinkMessage) -> bool {
    m.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::Group(g) if *g == LINK_GROUP))
}

fn route_table(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

fn rule_owned(m: &RuleMessage) -> bool {
    m.attributes
        .iter()
        .any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == ROUTE_PROTO))
}

fn host_route_in_main(m: &RouteMessage) -> bool {
    let host_len = match m.header.address_family {
        netlink_packet_route::AddressFamily::Inet => 32,
        netlink_packet_route::AddressFamily::Inet6 => 128,
        _ => return false,
    };
    route_table(m) == crate::kernel::plan::MAIN_TABLE && m.header.destination_prefix_length == host_len
}

/// Classifies one notification.
pub fn classify(msg: &RouteNetlinkMessage) -> Option<Event> {
    match msg {
        RouteNetlinkMessage::DelLink(m) if link_owned(m) => Some(Event::Owned("link deleted")),
        RouteNetlinkMessage::NewLink(m) if link_owned(m) => Some(Event::Owned("link changed")),
        RouteNetlinkMessage::DelRoute(m) if u8::from(m.header.protocol) == ROUTE_PROTO => {
            Some(Event::Owned("route deleted"))
        }
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m)
            if host_route_in_main(m) && u8::from(m.header.protocol) != ROUTE_PROTO =>
        {
            Some(Event::HostRoute)
        }
        RouteNetlinkMessage::DelRule(m) if rule_owned(m) => Some(Event::Owned("rule deleted")),
        _ => None,
    }
}

/// Subscribes and forwards relevant events until the receiver is dropped. Returns when the
/// subscription socket fails (the caller restarts it; the periodic resync covers the gap).
pub async fn run(tx: mpsc::UnboundedSender<Event>) -> std::io::Result<()> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Rule,
    ];
    let (mut conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    // The agent's own bulk writes are echoed here. SO_RCVBUF is capped by net.core.rmem_max, so
    // a burst of tens of thousands can still overflow it; what is dropped then is mostly those
    // echoes, and the kernel resync covers the rest.
    if let Err(e) = conn.socket_mut().socket_mut().set_rx_buf_sz(MONITOR_RCVBUF) {
        tracing::warn!(error = %e, "cannot enlarge the netlink monitor's receive buffer");
    }
    let conn_task = tokio::spawn(conn);
    let mut links = LinkMemory::default();
    while let Some((msg, _)) = messages.next().await {
        if let NetlinkPayload::InnerMessage(inner) = msg.payload
            && let Some(ev) = links.classify(&inner)
            && tx.send(ev).is_err()
        {
            break;
        }
    }
    conn_task.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteProtocol;

    #[test]
    fn only_owned_objects_and_main_host_routes_count() {
        let mut owned = LinkMessage::default();
        owned.attributes.push(LinkAttribute::Group(LINK_GROUP));
        let foreign = LinkMessage::default();
        assert_eq!(
            classify(&RouteNetlinkMessage::DelLink(owned.clone())),
            Some(Event::Owned("link deleted"))
        );
        assert_eq!(classify(&RouteNetlinkMessage::DelLink(foreign)), None);

        let mut ours = RouteMessage::default();
        ours.header.protocol = RouteProtocol::from(ROUTE_PROTO);
        ours.header.address_family = netlink_packet_route::AddressFamily::Inet;
        ours.attributes.push(RouteAttribute::Table(1_000_001_001));
        assert!(classify(&RouteNetlinkMessage::DelRoute(ours.clone())).is_some());
        assert_eq!(
            classify(&RouteNetlinkMessage::NewRoute(ours)),
            None,
            "our own adds do not loop"
        );

        let mut evpn = RouteMessage::default();
        evpn.header.protocol = RouteProtocol::Bgp;
        evpn.header.address_family = netlink_packet_route::AddressFamily::Inet;
        evpn.header.destination_prefix_length = 32;
        evpn.attributes.push(RouteAttribute::Table(1_000_001_001));
        assert_eq!(
            classify(&RouteNetlinkMessage::NewRoute(evpn)),
            None,
            "zebra's EVPN routes are ignored"
        );

        let mut cni = RouteMessage::default();
        cni.header.protocol = RouteProtocol::Boot;
        cni.header.address_family = netlink_packet_route::AddressFamily::Inet;
        cni.header.destination_prefix_length = 32;
        cni.header.table = 254;
        assert_eq!(
            classify(&RouteNetlinkMessage::NewRoute(cni)),
            Some(Event::HostRoute)
        );

        let mut rule = RuleMessage::default();
        rule.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::from(ROUTE_PROTO)));
        assert!(classify(&RouteNetlinkMessage::DelRule(rule)).is_some());
    }

    #[test]
    fn a_repeated_link_notification_is_not_an_event() {
        let mut mem = LinkMemory::default();
        let mut br = LinkMessage::default();
        br.header.index = 7;
        br.attributes.push(LinkAttribute::Group(LINK_GROUP));
        br.attributes.push(LinkAttribute::IfName("bvbr-1001".into()));
        br.attributes.push(LinkAttribute::Controller(5));
        assert!(
            mem.classify(&RouteNetlinkMessage::NewLink(br.clone())).is_some(),
            "first sight"
        );
        assert_eq!(
            mem.classify(&RouteNetlinkMessage::NewLink(br.clone())),
            None,
            "same programmed attributes"
        );
        let mut moved = br.clone();
        moved
            .attributes
            .retain(|a| !matches!(a, LinkAttribute::Controller(_)));
        assert_eq!(
            mem.classify(&RouteNetlinkMessage::NewLink(moved)),
            Some(Event::Owned("link changed")),
            "master removed by hand"
        );
        assert!(mem.classify(&RouteNetlinkMessage::DelLink(br.clone())).is_some());
        assert!(
            mem.classify(&RouteNetlinkMessage::NewLink(br.clone())).is_some(),
            "recreated"
        );
        let mut port_msg = LinkMessage::default();
        port_msg.header.index = 7;
        port_msg.header.interface_family = AddressFamily::Bridge;
        assert_eq!(mem.classify(&RouteNetlinkMessage::NewLink(port_msg)), None);
        assert_eq!(
            mem.classify(&RouteNetlinkMessage::NewLink(br)),
            None,
            "a bridge-port message does not make the device new again"
        );
    }
}
