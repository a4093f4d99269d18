//! Gratuitous ARP and unsolicited neighbour advertisements: after taking over an address, tell the
//! segment which MAC now answers for it, so neighbours and switches stop sending to the old node.
//!
//! Both are sent as whole Ethernet frames through an AF_PACKET socket on the interface, so what goes on
//! the wire does not depend on the kernel's source-address selection or on the interface's IPv6 state.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
/// 33:33 followed by the low 32 bits of ff02::1 (RFC 2464).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_OVERRIDE: u8 = 0x20;
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// Ethernet's minimum frame (without FCS); shorter frames are padded with zeros.
const MIN_FRAME: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum GarpError {
    #[error("cannot announce on {interface}: no such interface in the agent's network namespace ({source})")]
    NoInterface {
        interface: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot open a packet socket to announce on {interface}: {source} (the agent needs CAP_NET_RAW)")]
    Socket {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot send the announcement of {address} on {interface}: {source}")]
    Send {
        interface: String,
        address: IpAddr,
        #[source]
        source: io::Error,
    },
}

/// Sends `count` gratuitous ARPs (IPv4) or unsolicited neighbour advertisements (IPv6, Override set)
/// saying that `address` is at `mac`, out of `interface`, `interval` apart. A `count` of 0 sends nothing.
pub async fn announce(
    interface: &str,
    mac: [u8; 6],
    address: IpAddr,
    count: u32,
    interval: Duration,
) -> Result<(), GarpError> {
    if count == 0 {
        return Ok(());
    }
    let index = nix::net::if_::if_nametoindex(interface)
        .map_err(|source| GarpError::NoInterface { interface: interface.to_string(), source })?;
    let (frame, ethertype) = match address {
        IpAddr::V4(a) => (gratuitous_arp(mac, a), ETH_P_ARP),
        IpAddr::V6(a) => (unsolicited_na(mac, a), ETH_P_IPV6),
    };
    let socket_error = |source| GarpError::Socket { interface: interface.to_string(), source };
    let destination = packet_addr(index, ethertype, Some(&frame))
        .ok_or_else(|| socket_error(io::Error::other(format!("interface index {index} out of range"))))?;
    let socket = nix::sys::socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        // Protocol 0: this socket sends only and is never handed a received frame.
        None,
    )
    .map_err(|e| socket_error(e.into()))?;
    for n in 0..count {
        if n > 0 {
            tokio::time::sleep(interval).await;
        }
        send(&socket, &frame, &destination).await.map_err(|source| GarpError::Send {
            interface: interface.to_string(),
            address,
            source,
        })?;
    }
    Ok(())
}

/// Sends one frame on the non-blocking socket. A full send buffer (EAGAIN, ENOBUFS) drains in
/// microseconds on a live link, so it is retried briefly rather than registered with the reactor.
async fn send(socket: &OwnedFd, frame: &[u8], destination: &LinkAddr) -> io::Result<()> {
    const RETRY: Duration = Duration::from_millis(2);
    const ATTEMPTS: u32 = 500;
    let mut attempt = 0;
    loop {
        match nix::sys::socket::sendto(socket.as_raw_fd(), frame, destination, MsgFlags::empty()) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EAGAIN | nix::Error::ENOBUFS) if attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A packet-socket address: `ethertype` frames on the interface with `index`, sent to `destination`
/// (a frame's destination MAC), or with none, the address a receiving socket binds to.
#[allow(unsafe_code)]
pub(crate) fn packet_addr(index: u32, ethertype: u16, destination: Option<&[u8]>) -> Option<LinkAddr> {
    let mut sll_addr = [0u8; 8];
    let sll_halen = match destination {
        Some(mac) => {
            sll_addr[..6].copy_from_slice(mac.get(..6)?);
            6
        }
        None => 0,
    };
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: i32::try_from(index).ok()?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen,
        sll_addr,
    };
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).ok()?;
    // SAFETY: nix 0.32 has no safe constructor for a sockaddr_ll. `sll` is a fully initialised
    // `sockaddr_ll` that lives across the call, and `len` is exactly its size; `from_raw` checks the
    // length and the family, then copies the struct out with an unaligned read.
    unsafe { LinkAddr::from_raw((&raw const sll).cast::<libc::sockaddr>(), Some(len)) }
}

/// An ARP request from `address` for `address` (RFC 5227 "ARP Announcement"), broadcast.
fn gratuitous_arp(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(BROADCAST, mac, ETH_P_ARP);
    frame.extend_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    frame.extend_from_slice(&[6, 4]); // address lengths
    frame.extend_from_slice(&1u16.to_be_bytes()); // operation: request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&[0; 6]); // target MAC: unknown, as in any request
    frame.extend_from_slice(&address.octets());
    frame.resize(MIN_FRAME, 0);
    frame
}

/// An unsolicited neighbour advertisement (RFC 4861 7.2.6) for `address`, from `address` to all nodes,
/// Override set, Solicited and Router clear, with the target link-layer address option.
fn unsolicited_na(mac: [u8; 6], address: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, NA_OVERRIDE, 0, 0, 0];
    icmp.extend_from_slice(&address.octets());
    icmp.extend_from_slice(&[OPTION_TARGET_LINK_LAYER_ADDRESS, 1]); // length in units of 8 bytes
    icmp.extend_from_slice(&mac);
    let checksum = icmpv6_checksum(address, ALL_NODES, &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());

    let mut frame = ethernet(ALL_NODES_MAC, mac, ETH_P_IPV6);
    frame.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[ICMPV6, 255]); // next header, hop limit (receivers require 255)
    frame.extend_from_slice(&address.octets());
    frame.extend_from_slice(&ALL_NODES.octets());
    frame.extend_from_slice(&icmp);
    frame
}

fn ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MIN_FRAME + 32);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// The Internet checksum of `message` behind the IPv6 pseudo-header (RFC 8200 8.1).
fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + message.len());
    pseudo.extend_from_slice(&source.octets());
    pseudo.extend_from_slice(&destination.octets());
    pseudo.extend_from_slice(&(message.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
    pseudo.extend_from_slice(message);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests;
