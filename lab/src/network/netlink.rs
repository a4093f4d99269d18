//! A namespace's addresses read over rtnetlink, in-process: with their protocol tag (`IFA_PROTO`: PureLB's
//! agent tags the addresses it adds with it, and iproute2 6.1's `ip -j address` does not print it), and
//! where an address sits (interface name and prefix length) without starting an `ip` process, for tests
//! and benches that poll. A [`RouteSocket`] opened once in a namespace serves many dumps (addresses,
//! links, BIRD's kernel routes) with no thread or process per dump, for the sampler.
//!
//! A [`ChangeMonitor`] is the kernel's own report of changes (rtnetlink multicast): the sampler uses it to
//! know whether anything changed while it was not looking.
//!
//! Exposes [`address_protocols`], [`placements`], [`all_placements`], [`RouteSocket`] and
//! [`ChangeMonitor`].

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
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

/// Every address of the named namespace as (interface name, address, prefix length), from one dump of
/// its addresses and one of its links (blocking; runs on a thread of its own).
pub(crate) fn all_placements(netns_name: &str) -> io::Result<Vec<(String, IpAddr, u8)>> {
    netns::in_netns(netns_name, || {
        let mut socket = RouteSocket::open()?;
        let names = socket.links()?;
        Ok(socket
            .addresses()?
            .into_iter()
            .map(|a| {
                let name = names.iter().find(|(i, _)| *i == a.index).map(|(_, n)| n.clone());
                (name.unwrap_or_else(|| format!("index {}", a.index)), a.ip, a.prefix_len)
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
    RouteSocket::open()?.addresses()
}

/// (index, name) of every link.
fn links() -> io::Result<Vec<(u32, String)>> {
    RouteSocket::open()?.links()
}

// === impl RouteSocket ===

/// A route in a kernel table: destination, prefix length and every next hop's gateway, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelRoute {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gateways: Vec<IpAddr>,
}

/// An rtnetlink socket of the namespace it was opened in (a socket stays in its namespace whichever
/// thread uses it), for many dumps.
#[derive(Debug)]
pub(crate) struct RouteSocket {
    socket: Socket,
    sequence: u32,
}

impl RouteSocket {
    /// Opens one in the named namespace (on a thread that enters it; blocking).
    pub fn open_in(netns_name: &str) -> io::Result<RouteSocket> {
        netns::in_netns(netns_name, RouteSocket::open)
    }

    /// Opens one in the current thread's namespace.
    fn open() -> io::Result<RouteSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::seconds(READ_TIMEOUT_SECONDS))
            .map_err(io::Error::from)?;
        Ok(RouteSocket { socket, sequence: 0 })
    }

    /// Every address of every interface, with its `IFA_PROTO`.
    pub fn addresses(&mut self) -> io::Result<Vec<AddressProtocol>> {
        let replies = self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(address) => tag(address),
                _ => None,
            })
            .collect())
    }

    /// (index, name) of every link.
    pub fn links(&mut self) -> io::Result<Vec<(u32, String)>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
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

    /// The routes BIRD installed (`proto bird`, RTPROT_BIRD) in the main table, IPv4 then IPv6: what
    /// `ip route show proto bird` lists.
    pub fn bird_routes(&mut self) -> io::Result<Vec<KernelRoute>> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            for reply in self.dump(RouteNetlinkMessage::GetRoute(request))? {
                if let RouteNetlinkMessage::NewRoute(route) = reply
                    && let Some(route) = bird_route(&route)
                {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    /// The replies to one dump `request`. Replies to an earlier dump that timed out carry another
    /// sequence number and are skipped.
    fn dump(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;

        let mut found = Vec::new();
        for _ in 0..MAX_READS {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::other(format!("decoding a dump: {e}")))?;
                let length = usize::try_from(reply.header.length).unwrap_or(0);
                if reply.header.sequence_number == self.sequence {
                    match reply.payload {
                        NetlinkPayload::Done(_) => return Ok(found),
                        NetlinkPayload::Error(e) => {
                            return Err(io::Error::other(format!("dump refused: {e}")));
                        }
                        NetlinkPayload::InnerMessage(inner) => found.push(inner),
                        _ => {}
                    }
                }
                if length == 0 {
                    break;
                }
                offset += length.next_multiple_of(4);
            }
        }
        Err(io::Error::other(format!("the dump did not end after {MAX_READS} reads")))
    }
}

// === impl ChangeMonitor ===

/// rtnetlink multicast groups (`RTNLGRP_*` of linux/rtnetlink.h).
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// Receive buffer of a monitor: room for thousands of notifications between two drains.
const MONITOR_BUFFER_BYTES: libc::c_int = 4 << 20;
/// Reads of one drain before the lab gives up (a drain empties what queued since the previous one).
const MAX_DRAIN_READS: usize = 10_000;

/// What a [`ChangeMonitor`] listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// Addresses added to or removed from any interface (IPv4 and IPv6).
    Addresses,
    /// Routes BIRD installs in or removes from the main table (IPv4 and IPv6).
    BirdRoutes,
}

/// One change the kernel reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KernelChange {
    Address { added: bool, ip: IpAddr },
    BirdRoute { added: bool, route: KernelRoute },
}

/// A non-blocking rtnetlink socket subscribed to the kernel's change notifications in the namespace it
/// was opened in. The kernel queues every notification on it until [`ChangeMonitor::drain`]; one it could
/// not queue (the buffer full) makes the next drain fail with `ENOBUFS`, so nothing is lost silently.
#[derive(Debug)]
pub(crate) struct ChangeMonitor {
    socket: Socket,
    watch: Watch,
}

impl ChangeMonitor {
    /// Opens one in the named namespace (on a thread that enters it; blocking).
    pub fn open_in(netns_name: &str, watch: Watch) -> io::Result<ChangeMonitor> {
        netns::in_netns(netns_name, move || {
            let mut socket = Socket::new(NETLINK_ROUTE)?;
            socket.bind_auto()?;
            socket.set_rx_buf_sz(MONITOR_BUFFER_BYTES)?;
            let groups = match watch {
                Watch::Addresses => [RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
                Watch::BirdRoutes => [RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE],
            };
            for group in groups {
                socket.add_membership(group)?;
            }
            socket.set_non_blocking(true)?;
            Ok(ChangeMonitor { socket, watch })
        })
    }

    /// Every change reported since the previous drain (or since it was opened), in order: for
    /// [`Watch::Addresses`] every address added or removed, for [`Watch::BirdRoutes`] every BIRD route.
    /// Fails with `ENOBUFS` when the kernel dropped notifications since the previous drain.
    pub fn drain(&mut self) -> io::Result<Vec<KernelChange>> {
        let mut changes = Vec::new();
        for _ in 0..MAX_DRAIN_READS {
            let data = match self.socket.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changes),
                Err(e) => return Err(e),
            };
            let mut offset = 0;
            while offset < data.len() {
                let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::other(format!("decoding a notification: {e}")))?;
                let length = usize::try_from(message.header.length).unwrap_or(0);
                if let NetlinkPayload::InnerMessage(inner) = message.payload {
                    changes.extend(self.change(&inner));
                }
                if length == 0 {
                    break;
                }
                offset += length.next_multiple_of(4);
            }
        }
        Err(io::Error::other(format!("notifications kept coming after {MAX_DRAIN_READS} reads")))
    }

    fn change(&self, message: &RouteNetlinkMessage) -> Option<KernelChange> {
        match (self.watch, message) {
            (Watch::Addresses, RouteNetlinkMessage::NewAddress(a)) => {
                Some(KernelChange::Address { added: true, ip: tag(a)?.ip })
            }
            (Watch::Addresses, RouteNetlinkMessage::DelAddress(a)) => {
                Some(KernelChange::Address { added: false, ip: tag(a)?.ip })
            }
            (Watch::BirdRoutes, RouteNetlinkMessage::NewRoute(r)) => {
                Some(KernelChange::BirdRoute { added: true, route: bird_route(r)? })
            }
            (Watch::BirdRoutes, RouteNetlinkMessage::DelRoute(r)) => {
                Some(KernelChange::BirdRoute { added: false, route: bird_route(r)? })
            }
            _ => None,
        }
    }
}

/// The route, if BIRD installed it in the main table.
fn bird_route(route: &RouteMessage) -> Option<KernelRoute> {
    if route.header.protocol != RouteProtocol::Bird {
        return None;
    }
    let table = route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let unspecified = match route.header.address_family {
        AddressFamily::Inet6 => IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
    };
    let mut dst = unspecified;
    let mut gateways = Vec::new();
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(address) => dst = route_ip(address).unwrap_or(unspecified),
            RouteAttribute::Gateway(address) => gateways.extend(route_ip(address)),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    gateways.extend(hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(address) => route_ip(address),
                        _ => None,
                    }));
                }
            }
            _ => {}
        }
    }
    gateways.sort();
    Some(KernelRoute { dst, prefix_len: route.header.destination_prefix_length, gateways })
}

fn route_ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
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
