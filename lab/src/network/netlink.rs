//! The protocol tag (`IFA_PROTO`) of a namespace's addresses, read over rtnetlink: PureLB's agent tags
//! the addresses it adds with it, and iproute2 6.1's `ip -j address` does not print it.
//!
//! Exposes [`address_protocols`].

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::netns;

/// How long one read of the dump may block; a dump ends within microseconds.
const READ_TIMEOUT_SECONDS: i64 = 5;
/// Reads of one dump before the lab gives up (each read holds many addresses).
const MAX_READS: usize = 1000;

/// One address's tag: interface index, address, and `IFA_PROTO` (0 when untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressProtocol {
    pub index: u32,
    pub ip: IpAddr,
    pub protocol: u8,
}

/// Every address of the named namespace with its `IFA_PROTO` (blocking; runs on a thread of its own).
pub(crate) fn address_protocols(netns_name: &str) -> io::Result<Vec<AddressProtocol>> {
    netns::in_netns(netns_name, dump)
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

fn dump() -> io::Result<Vec<AddressProtocol>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::seconds(READ_TIMEOUT_SECONDS))
        .map_err(io::Error::from)?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
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
                .map_err(|e| io::Error::other(format!("decoding an address dump: {e}")))?;
            let length = usize::try_from(reply.header.length).unwrap_or(0);
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("address dump refused: {e}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
                    found.extend(tag(&address));
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length.next_multiple_of(4);
        }
    }
    Err(io::Error::other(format!("the address dump did not end after {MAX_READS} reads")))
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
    Some(AddressProtocol { index: message.header.index, ip: local.or(address)?, protocol })
}
