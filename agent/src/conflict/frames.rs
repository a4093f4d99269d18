//! Reading the frames the conflict listener receives: the address and MAC an ARP frame or an IPv6
//! neighbour advertisement claims (the checksum of the latter verified), or nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    ETH_P_ARP, ETH_P_IPV6, ETHERNET_HEADER, ICMPV6, IPV6_HEADER, NEIGHBOR_ADVERTISEMENT,
    OPTION_TARGET_LINK_LAYER_ADDRESS,
};

/// The address an Ethernet ARP frame (request or reply, gratuitous or not) claims, and the MAC claiming
/// it: the sender protocol address with the sender hardware address. So an ordinary request for some
/// other address claims the asker's own address, as the kernel's neighbour cache takes it to, and is
/// reported like an announcement; the caller ignores addresses it does not hold. An RFC 5227 probe
/// (sender 0.0.0.0) only asks whether an address is free: it claims nothing (the holder's kernel answers
/// it, which is RFC 5227's defence), so it gives None, as does anything else or anything malformed.
pub(crate) fn parse_arp(frame: &[u8]) -> Option<(IpAddr, [u8; 6])> {
    if array::<2>(frame, 12)? != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    // Hardware Ethernet, protocol IPv4, address lengths 6 and 4.
    if array::<6>(frame, ETHERNET_HEADER)? != [0, 1, 0x08, 0x00, 6, 4] {
        return None;
    }
    let operation = u16::from_be_bytes(array(frame, ETHERNET_HEADER + 6)?);
    if operation != 1 && operation != 2 {
        return None;
    }
    let sender_mac = array::<6>(frame, ETHERNET_HEADER + 8)?;
    let sender_ip = Ipv4Addr::from(array::<4>(frame, ETHERNET_HEADER + 14)?);
    // The whole ARP body must be there (target hardware and protocol addresses), though unused.
    array::<4>(frame, ETHERNET_HEADER + 24)?;
    let ip = sender_ip;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || !is_unicast_mac(sender_mac) {
        return None;
    }
    Some((IpAddr::V4(ip), sender_mac))
}

/// The address an Ethernet frame carrying an ICMPv6 neighbour advertisement claims (its target), and
/// the MAC claiming it: the target link-layer address option, else the Ethernet source. Only what a
/// neighbour would believe (RFC 4861 7.1.2: hop limit 255, valid checksum, code 0, no zero-length
/// option, a unicast target) counts; None for anything else or anything malformed.
pub(crate) fn parse_na(frame: &[u8]) -> Option<(IpAddr, [u8; 6])> {
    let ethernet_source = array::<6>(frame, 6)?;
    if array::<2>(frame, 12)? != ETH_P_IPV6.to_be_bytes() {
        return None;
    }
    let header = array::<IPV6_HEADER>(frame, ETHERNET_HEADER)?;
    let [version, _, _, _, length_high, length_low, next_header, hop_limit, ..] = header;
    if version >> 4 != 6 || next_header != ICMPV6 || hop_limit != 255 {
        return None;
    }
    let start = ETHERNET_HEADER + IPV6_HEADER;
    let length = usize::from(u16::from_be_bytes([length_high, length_low]));
    // Ethernet pads short frames, so the payload length, not the frame, says where the message ends.
    let icmp = frame.get(start..start.checked_add(length)?)?;
    let [kind, code, ..] = array::<24>(icmp, 0)?;
    if kind != NEIGHBOR_ADVERTISEMENT || code != 0 {
        return None;
    }
    let source = array::<16>(frame, ETHERNET_HEADER + 8)?;
    let destination = array::<16>(frame, ETHERNET_HEADER + 24)?;
    if icmpv6_checksum(source, destination, icmp) != 0 {
        return None;
    }
    let target = Ipv6Addr::from(array::<16>(icmp, 8)?);
    if target.is_unspecified() || target.is_multicast() {
        return None;
    }
    let mut options = icmp.get(24..)?;
    let mut link_layer = None;
    while !options.is_empty() {
        let [option, units] = array::<2>(options, 0)?;
        if units == 0 {
            return None;
        }
        let size = usize::from(units) * 8;
        if option == OPTION_TARGET_LINK_LAYER_ADDRESS && link_layer.is_none() {
            link_layer = Some(array::<6>(options.get(..size)?, 2)?);
        }
        options = options.get(size..)?;
    }
    let mac = link_layer.unwrap_or(ethernet_source);
    if !is_unicast_mac(mac) {
        return None;
    }
    Some((IpAddr::V6(target), mac))
}

/// `N` bytes of `bytes` from `at`, if there are that many.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Neither all zeros nor a group address: a MAC some host could answer with.
fn is_unicast_mac(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 1 == 0
}

/// The Internet checksum of `message` behind the IPv6 pseudo-header (RFC 8200 8.1); a message that
/// carries its own correct checksum sums to 0.
pub(super) fn icmpv6_checksum(source: [u8; 16], destination: [u8; 16], message: &[u8]) -> u16 {
    fn words(bytes: &[u8]) -> u64 {
        bytes
            .chunks(2)
            .map(|pair| {
                let high = pair.first().copied().unwrap_or(0);
                let low = pair.get(1).copied().unwrap_or(0);
                u64::from(u16::from_be_bytes([high, low]))
            })
            .sum()
    }
    let length = u32::try_from(message.len()).unwrap_or(u32::MAX);
    let mut sum = words(&source)
        + words(&destination)
        + words(&length.to_be_bytes())
        + u64::from(ICMPV6)
        + words(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
