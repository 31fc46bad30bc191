//! Netlink monitor: link, route and rule notifications that should start a pass.
//!
//! It listens on a subscription socket of its own (multicast groups link, IPv4/IPv6 route and
//! rule); programming stays on the agent's one request handle. Relevant events: an agent-owned
//! link, route or rule changed or vanished (repair), and a host route appearing or vanishing in
//! the main table (a CNI plugin wiring or removing a pod, which makes an endpoint ready or
//! pending). Everything else, including the EVPN routes zebra installs, is ignored.

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::{RuleAttribute, RuleMessage};
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use crate::model::{LINK_GROUP, ROUTE_PROTO};

/// Why a notification matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An agent-owned object changed or vanished.
    Owned(&'static str),
    /// A host route in the main table appeared or vanished (pods come and go).
    HostRoute,
}

fn link_owned(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| matches!(a, LinkAttribute::Group(g) if *g == LINK_GROUP))
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
    m.attributes.iter().any(|a| matches!(a, RuleAttribute::Protocol(p) if u8::from(*p) == ROUTE_PROTO))
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
        RouteNetlinkMessage::DelRoute(m) if u8::from(m.header.protocol) == ROUTE_PROTO => Some(Event::Owned("route deleted")),
        RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m) if host_route_in_main(m) && u8::from(m.header.protocol) != ROUTE_PROTO => {
            Some(Event::HostRoute)
        }
        RouteNetlinkMessage::DelRule(m) if rule_owned(m) => Some(Event::Owned("rule deleted")),
        _ => None,
    }
}

/// Subscribes and forwards relevant events until the receiver is dropped. Returns when the
/// subscription socket fails (the caller restarts it; the periodic resync covers the gap).
pub async fn run(tx: mpsc::UnboundedSender<Event>) -> std::io::Result<()> {
    let groups = [MulticastGroup::Link, MulticastGroup::Ipv4Route, MulticastGroup::Ipv6Route, MulticastGroup::Ipv4Rule, MulticastGroup::Ipv6Rule];
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    let conn_task = tokio::spawn(conn);
    while let Some((msg, _)) = messages.next().await {
        if let NetlinkPayload::InnerMessage(inner) = msg.payload
            && let Some(ev) = classify(&inner)
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
        assert_eq!(classify(&RouteNetlinkMessage::DelLink(owned.clone())), Some(Event::Owned("link deleted")));
        assert_eq!(classify(&RouteNetlinkMessage::DelLink(foreign)), None);

        let mut ours = RouteMessage::default();
        ours.header.protocol = RouteProtocol::from(ROUTE_PROTO);
        ours.header.address_family = netlink_packet_route::AddressFamily::Inet;
        ours.attributes.push(RouteAttribute::Table(1_000_001_001));
        assert!(classify(&RouteNetlinkMessage::DelRoute(ours.clone())).is_some());
        assert_eq!(classify(&RouteNetlinkMessage::NewRoute(ours)), None, "our own adds do not loop");

        let mut evpn = RouteMessage::default();
        evpn.header.protocol = RouteProtocol::Bgp;
        evpn.header.address_family = netlink_packet_route::AddressFamily::Inet;
        evpn.header.destination_prefix_length = 32;
        evpn.attributes.push(RouteAttribute::Table(1_000_001_001));
        assert_eq!(classify(&RouteNetlinkMessage::NewRoute(evpn)), None, "zebra's EVPN routes are ignored");

        let mut cni = RouteMessage::default();
        cni.header.protocol = RouteProtocol::Boot;
        cni.header.address_family = netlink_packet_route::AddressFamily::Inet;
        cni.header.destination_prefix_length = 32;
        cni.header.table = 254;
        assert_eq!(classify(&RouteNetlinkMessage::NewRoute(cni)), Some(Event::HostRoute));

        let mut rule = RuleMessage::default();
        rule.attributes.push(RuleAttribute::Protocol(RouteProtocol::from(ROUTE_PROTO)));
        assert!(classify(&RouteNetlinkMessage::DelRule(rule)).is_some());
    }
}
