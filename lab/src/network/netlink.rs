//! A namespace's addresses read over rtnetlink, in-process: with their protocol tag (`IFA_PROTO`: PureLB's
//! agent tags the addresses it adds with it, and iproute2 6.1's `ip -j address` does not print it), and
//! where an address sits (interface name and prefix length) without starting an `ip` process, for tests
//! and benches that poll.
//!
//! Exposes [`address_protocols`] and [`placements`].

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::netns;

/// How long one read of the dump may block; a dump ends within microseconds.
const READ_TIMEOUT_SECONDS: i64 = 5;
/// Reads of one dump before the lab gives up (each read holds many addresses).
const MAX_READS: usize = 1000;

/// One address's tag: interface index, address, prefix length and `IFA_PROTO` (0 when untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressProtocol {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix_len: u8,
    pub protocol: u8,
}

/// Every address of the named namespace with its `IFA_PROTO` (blocking; runs on a thread of its own).
pub(crate) fn address_protocols(netns_name: &str) -> io::Result<Vec<AddressProtocol>> {
    netns::in_netns(netns_name, addresses)
}

/// Where `ip` sits in the named namespace: (interface name, prefix length) of each of its addresses, in
/// the kernel's order (blocking; runs on a thread of its own).
pub(crate) fn placements(netns_name: &str, ip: IpAddr) -> io::Result<Vec<(String, u8)>> {
    netns::in_netns(netns_name, move || {
        let found: Vec<AddressProtocol> = addresses()?.into_iter().filter(|a| a.ip == ip).collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let names = links()?;
        Ok(found
            .iter()
            .map(|a| {
                let name = names.iter().find(|(i, _)| *i == a.index).map(|(_, n)| n.clone());
                (name.unwrap_or_else(|| format!("index {}", a.index)), a.prefix_len)
            })
            .collect())
    })
}

/// The name iproute2 gives a protocol number (`%#x` for those it has no name for).
pub(crate) fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "kernel_lo".to_owned(),
        2 => "kernel_ra".to_owned(),
        3 => "kernel_ll".to_owned(),
        other => format!("{other:#x}"),
    }
}

fn addresses() -> io::Result<Vec<AddressProtocol>> {
    let replies = dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewAddress(address) => tag(address),
            _ => None,
        })
        .collect())
}

/// (index, name) of every link.
fn links() -> io::Result<Vec<(u32, String)>> {
    let replies = dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some((link.header.index, name.clone())),
                _ => None,
            }),
            _ => None,
        })
        .collect())
}

/// The replies to one dump `request` on a socket of its own, in the current namespace.
fn dump(request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::seconds(READ_TIMEOUT_SECONDS))
        .map_err(io::Error::from)?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0)?;

    let mut found = Vec::new();
    for _ in 0..MAX_READS {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .map_err(|e| io::Error::other(format!("decoding a dump: {e}")))?;
            let length = usize::try_from(reply.header.length).unwrap_or(0);
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("dump refused: {e}")));
                }
                NetlinkPayload::InnerMessage(inner) => found.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length.next_multiple_of(4);
        }
    }
    Err(io::Error::other(format!("the dump did not end after {MAX_READS} reads")))
}

/// IFA_LOCAL is the local end when present (IFA_ADDRESS is then a point-to-point peer); IPv6 sends
/// IFA_ADDRESS only.
fn tag(message: &AddressMessage) -> Option<AddressProtocol> {
    let (mut local, mut address, mut protocol) = (None, None, 0);
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Protocol(p) => protocol = u8::from(*p),
            _ => {}
        }
    }
    Some(AddressProtocol {
        index: message.header.index,
        ip: local.or(address)?,
        prefix_len: message.header.prefix_len,
        protocol,
    })
}
