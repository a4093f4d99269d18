//! Reading rtnetlink messages: an address message's address and tag, a link's name and MAC, and a route's
//! table, output link and metric.

use std::net::IpAddr;

use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteType};

use super::PURELB_ADDR_PROTO;

/// The interface address of a message and whether it carries our tag. IFA_LOCAL is the local end when
/// present (IFA_ADDRESS is then the peer of a point-to-point link); IPv6 usually sends IFA_ADDRESS only.
pub(super) fn message_address(m: &AddressMessage) -> Option<(IpAddr, bool)> {
    let mut local = None;
    let mut address = None;
    let mut ours = false;
    for attribute in &m.attributes {
        match attribute {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Protocol(p) => ours = u8::from(*p) == PURELB_ADDR_PROTO,
            _ => {}
        }
    }
    local.or(address).map(|a| (a, ours))
}

pub(super) fn link_name(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("index {}", link.header.index))
}

pub(super) fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    })
}

pub(super) fn is_main_default(route: &RouteMessage) -> bool {
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table));
    route.header.destination_prefix_length == 0
        && route.header.kind == RouteType::Unicast
        && table == u32::from(RouteHeader::RT_TABLE_MAIN)
}

/// The output link of a route: RTA_OIF, else the first next hop of a multipath route.
pub(super) fn route_oif(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(index) => Some(*index),
        RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
        _ => None,
    })
}

pub(super) fn route_metric(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}
