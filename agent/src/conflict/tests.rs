#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::*;
use crate::netlink::testns::TestNs;

const OWN_MAC: [u8; 6] = [0x02, 0x50, 0x4c, 0x42, 0x00, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0x50, 0x4c, 0x42, 0x00, 0x02];
const OTHER_MAC: [u8; 6] = [0x02, 0x50, 0x4c, 0x42, 0x00, 0x03];
const INTERVAL: Duration = Duration::from_millis(50);

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

// --- frames, built as garp.rs builds them ---

fn make_ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = destination.to_vec();
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An Ethernet ARP frame, padded to the 60-byte minimum.
fn make_arp(operation: u16, sender_mac: [u8; 6], sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = make_ethernet([0xff; 6], sender_mac, 0x0806);
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    frame.extend_from_slice(&operation.to_be_bytes());
    frame.extend_from_slice(&sender_mac);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip.octets());
    frame.resize(60, 0);
    frame
}

/// An Ethernet frame with a neighbour advertisement for `target` from `source_mac`, with `options`
/// behind the target, to all nodes, hop limit 255 and a correct checksum.
fn make_na(source_mac: [u8; 6], target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let all_nodes = v6("ff02::1");
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(options);
    let checksum = icmpv6_checksum(target.octets(), all_nodes.octets(), &icmp);
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = make_ethernet([0x33, 0x33, 0, 0, 0, 1], source_mac, 0x86dd);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&u16::try_from(icmp.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&[58, 255]);
    frame.extend_from_slice(&target.octets());
    frame.extend_from_slice(&all_nodes.octets());
    frame.extend_from_slice(&icmp);
    frame
}

fn tlla(mac: [u8; 6]) -> Vec<u8> {
    let mut option = vec![2, 1];
    option.extend_from_slice(&mac);
    option
}

/// Rewrites the checksum of an NA frame after a test changed its message.
fn fix_checksum(frame: &mut [u8]) {
    frame[56..58].copy_from_slice(&[0, 0]);
    let source: [u8; 16] = frame[22..38].try_into().unwrap();
    let destination: [u8; 16] = frame[38..54].try_into().unwrap();
    let checksum = icmpv6_checksum(source, destination, &frame[54..]);
    frame[56..58].copy_from_slice(&checksum.to_be_bytes());
}

// --- ARP parser ---

#[test]
fn gratuitous_arp_claims_its_sender_address() {
    let address = v4("192.0.2.200");
    let frame = make_arp(1, PEER_MAC, address, address);
    assert_eq!(parse_arp(&frame), Some((IpAddr::V4(address), PEER_MAC)));
}

#[test]
fn arp_reply_claims_its_sender_address() {
    let frame = make_arp(2, PEER_MAC, v4("192.0.2.200"), v4("192.0.2.1"));
    assert_eq!(parse_arp(&frame), Some((IpAddr::V4(v4("192.0.2.200")), PEER_MAC)));
}

#[test]
fn an_ordinary_arp_request_claims_the_askers_own_address() {
    // Harmless: the caller only acts on addresses it holds, and this one is the peer's.
    let frame = make_arp(1, PEER_MAC, v4("192.0.2.7"), v4("192.0.2.1"));
    assert_eq!(parse_arp(&frame), Some((IpAddr::V4(v4("192.0.2.7")), PEER_MAC)));
}

#[test]
fn an_arp_probe_claims_nothing() {
    // RFC 5227: a probe asks whether the address is free; the holder keeps (defends) it.
    let frame = make_arp(1, PEER_MAC, Ipv4Addr::UNSPECIFIED, v4("192.0.2.200"));
    assert_eq!(parse_arp(&frame), None);
}

#[test]
fn arp_without_padding_is_read() {
    let frame = make_arp(2, PEER_MAC, v4("192.0.2.200"), v4("192.0.2.1"));
    assert_eq!(parse_arp(&frame[..42]), Some((IpAddr::V4(v4("192.0.2.200")), PEER_MAC)));
}

#[test]
fn arp_uses_the_sender_hardware_address_not_the_ethernet_source() {
    let mut frame = make_arp(2, PEER_MAC, v4("192.0.2.200"), v4("192.0.2.1"));
    frame[6..12].copy_from_slice(&OTHER_MAC);
    assert_eq!(parse_arp(&frame), Some((IpAddr::V4(v4("192.0.2.200")), PEER_MAC)));
}

#[test]
fn truncated_arp_is_ignored_at_every_length() {
    let frame = make_arp(1, PEER_MAC, v4("192.0.2.200"), v4("192.0.2.200"));
    for length in 0..42 {
        assert_eq!(parse_arp(&frame[..length]), None, "{length} bytes");
    }
}

#[test]
fn arp_with_other_operations_or_formats_is_ignored() {
    let good = make_arp(1, PEER_MAC, v4("192.0.2.200"), v4("192.0.2.200"));
    let cases: &[(usize, u8, &str)] = &[
        (13, 0x00, "EtherType not ARP"),
        (15, 6, "hardware type not Ethernet"),
        (16, 0x86, "protocol type not IPv4"),
        (18, 8, "hardware length not 6"),
        (19, 16, "protocol length not 4"),
        (21, 3, "RARP request"),
    ];
    for (at, value, what) in cases {
        let mut frame = good.clone();
        frame[*at] = *value;
        assert_eq!(parse_arp(&frame), None, "{what}");
    }
}

#[test]
fn arp_claiming_nothing_or_from_a_group_mac_is_ignored() {
    let zero = Ipv4Addr::UNSPECIFIED;
    assert_eq!(parse_arp(&make_arp(1, PEER_MAC, zero, zero)), None, "probe for 0.0.0.0");
    assert_eq!(parse_arp(&make_arp(1, PEER_MAC, Ipv4Addr::BROADCAST, zero)), None, "broadcast sender");
    assert_eq!(parse_arp(&make_arp(1, PEER_MAC, v4("224.0.0.1"), zero)), None, "multicast sender");
    assert_eq!(parse_arp(&make_arp(1, [0xff; 6], v4("192.0.2.9"), zero)), None, "broadcast MAC");
    assert_eq!(parse_arp(&make_arp(1, [0; 6], v4("192.0.2.9"), zero)), None, "zero MAC");
}

#[test]
fn neighbor_advertisement_is_not_arp() {
    assert_eq!(parse_arp(&make_na(PEER_MAC, v6("2001:db8:1::200"), &tlla(PEER_MAC))), None);
}

// --- neighbour advertisement parser ---

#[test]
fn unsolicited_na_claims_its_target_with_the_option_mac() {
    let target = v6("2001:db8:1::200");
    let mut frame = make_na(PEER_MAC, target, &tlla(PEER_MAC));
    assert_eq!(frame.len(), 14 + 40 + 32, "the size garp.rs sends");
    assert_eq!(parse_na(&frame), Some((IpAddr::V6(target), PEER_MAC)));
    // The option, not the Ethernet source, names the MAC.
    frame[6..12].copy_from_slice(&OTHER_MAC);
    assert_eq!(parse_na(&frame), Some((IpAddr::V6(target), PEER_MAC)));
}

#[test]
fn na_without_the_option_falls_back_to_the_ethernet_source() {
    let target = v6("2001:db8:1::200");
    assert_eq!(parse_na(&make_na(OTHER_MAC, target, &[])), Some((IpAddr::V6(target), OTHER_MAC)));
}

#[test]
fn na_option_is_found_behind_other_options() {
    let target = v6("2001:db8:1::200");
    // A nonce option (type 14, 8 bytes), then the target link-layer address.
    let mut options = vec![14, 1, 1, 2, 3, 4, 5, 6];
    options.extend_from_slice(&tlla(PEER_MAC));
    assert_eq!(parse_na(&make_na(OTHER_MAC, target, &options)), Some((IpAddr::V6(target), PEER_MAC)));
}

#[test]
fn na_with_ethernet_padding_is_read() {
    let target = v6("2001:db8:1::200");
    let mut frame = make_na(PEER_MAC, target, &[]);
    assert_eq!(frame.len(), 78);
    frame.resize(90, 0);
    assert_eq!(parse_na(&frame), Some((IpAddr::V6(target), PEER_MAC)));
}

#[test]
fn truncated_na_is_ignored_at_every_length() {
    let frame = make_na(PEER_MAC, v6("2001:db8:1::200"), &tlla(PEER_MAC));
    for length in 0..frame.len() {
        assert_eq!(parse_na(&frame[..length]), None, "{length} bytes");
    }
}

#[test]
fn na_a_neighbour_would_reject_is_ignored() {
    let good = make_na(PEER_MAC, v6("2001:db8:1::200"), &tlla(PEER_MAC));
    let cases: &[(usize, u8, &str)] = &[
        (13, 0x00, "EtherType not IPv6"),
        (14, 0x40, "IP version 4"),
        (20, 17, "next header UDP"),
        (21, 64, "hop limit below 255: routed here"),
        (54, 135, "a solicitation"),
        (55, 1, "code not 0"),
        (57, 0x55, "bad checksum"),
        (79, 0, "a zero-length option"),
        (79, 9, "an option running past the message"),
    ];
    for (at, value, what) in cases {
        let mut frame = good.clone();
        frame[*at] = *value;
        if !what.contains("checksum") && *at >= 54 {
            fix_checksum(&mut frame);
        }
        assert_eq!(parse_na(&frame), None, "{what}");
    }
}

#[test]
fn na_with_a_payload_length_past_the_frame_is_ignored() {
    let mut frame = make_na(PEER_MAC, v6("2001:db8:1::200"), &tlla(PEER_MAC));
    frame[18..20].copy_from_slice(&33u16.to_be_bytes());
    assert_eq!(parse_na(&frame), None);
    frame[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse_na(&frame), None);
}

#[test]
fn na_for_a_multicast_or_unspecified_target_is_ignored() {
    assert_eq!(parse_na(&make_na(PEER_MAC, v6("ff02::1"), &tlla(PEER_MAC))), None);
    assert_eq!(parse_na(&make_na(PEER_MAC, Ipv6Addr::UNSPECIFIED, &tlla(PEER_MAC))), None);
    assert_eq!(parse_na(&make_na(PEER_MAC, v6("2001:db8::1"), &tlla([0x33, 0x33, 0, 0, 0, 1]))), None);
}

#[test]
fn garbage_is_ignored_by_both_parsers() {
    let mut seed: u32 = 0x5eed;
    for length in [0, 1, 13, 14, 41, 42, 60, 77, 78, 86, 200, 1500] {
        for _ in 0..50 {
            let frame: Vec<u8> = (0..length)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            // Random bytes never pass the EtherType and format checks together; the point is no panic.
            assert_eq!(parse_arp(&frame), None);
            assert_eq!(parse_na(&frame), None);
        }
    }
}

#[test]
fn icmpv6_checksum_matches_a_known_value() {
    // The same independently computed echo request as in garp's tests.
    let message = [128, 0, 0, 0, 0, 1, 0, 1];
    let sum = icmpv6_checksum(v6("2001:db8::1").octets(), v6("2001:db8::2").octets(), &message);
    assert_eq!(sum, 0x2446);
}

// --- on the wire, between two namespaces ---

/// A node namespace with `lan0` (MAC `OWN_MAC`), wired by a veth pair to `peer0` (MAC `PEER_MAC`) in a
/// neighbour namespace.
struct Segment {
    node: TestNs,
    neighbour: TestNs,
}

fn make_segment() -> Segment {
    let node = TestNs::new();
    let neighbour = TestNs::new();
    node.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "peer0", "netns", &neighbour.name]);
    node.ip(&["link", "set", "lan0", "address", &mac_text(OWN_MAC), "up"]);
    neighbour.ip(&["link", "set", "peer0", "address", &mac_text(PEER_MAC), "up"]);
    Segment { node, neighbour }
}

/// Listens on `lan0` in the node namespace for `window`, running `send` once the listener is open;
/// returns each sighting with how long after `send` began it arrived.
fn sightings_while(s: &Segment, window: Duration, send: impl FnOnce()) -> Vec<(Duration, Sighting)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel::<Instant>();
    std::thread::scope(|scope| {
        let listener = scope.spawn(move || {
            s.node.run(move || async move {
                let stream = listen("lan0", OWN_MAC).unwrap();
                let mut stream = std::pin::pin!(stream);
                ready_tx.send(()).unwrap();
                let start = start_rx.recv().unwrap();
                let deadline = tokio::time::Instant::from_std(start + window);
                let mut seen = vec![];
                while let Ok(Some(sighting)) = tokio::time::timeout_at(deadline, stream.next()).await {
                    seen.push((start.elapsed(), sighting));
                }
                seen
            })
        });
        ready_rx.recv().unwrap();
        start_tx.send(Instant::now()).unwrap();
        send();
        listener.join().unwrap()
    })
}

fn announce_from(ns: &TestNs, interface: &str, mac: [u8; 6], address: IpAddr) {
    ns.run(|| async { crate::garp::announce(interface, mac, address, 1, INTERVAL).await.unwrap() });
}

fn sighting(ip: &str, mac: [u8; 6]) -> Sighting {
    Sighting { ip: ip.parse().unwrap(), mac, interface: "lan0".to_string() }
}

/// The sightings of `ip`: the kernels on the segment may chatter (router solicitations, MLD), and
/// only what concerns the test address counts.
fn of(seen: &[(Duration, Sighting)], ip: &str) -> Vec<(Duration, Sighting)> {
    let ip: IpAddr = ip.parse().unwrap();
    seen.iter().filter(|(_, s)| s.ip == ip).cloned().collect()
}

#[test]
fn gratuitous_arp_from_the_peer_is_sighted_within_a_second() {
    let s = make_segment();
    let address = "192.0.2.200";
    let seen = sightings_while(&s, Duration::from_secs(1), || {
        announce_from(&s.neighbour, "peer0", PEER_MAC, address.parse().unwrap());
    });
    let seen = of(&seen, address);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, sighting(address, PEER_MAC));
    assert!(seen[0].0 < Duration::from_secs(1), "{:?}", seen[0].0);
}

#[test]
fn unsolicited_na_from_the_peer_is_sighted_within_a_second() {
    let s = make_segment();
    let address = "2001:db8:1::200";
    let seen = sightings_while(&s, Duration::from_secs(1), || {
        announce_from(&s.neighbour, "peer0", PEER_MAC, address.parse().unwrap());
    });
    let seen = of(&seen, address);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, sighting(address, PEER_MAC));
    assert!(seen[0].0 < Duration::from_secs(1), "{:?}", seen[0].0);
}

#[test]
fn frames_sent_from_the_listeners_own_end_are_not_sighted() {
    let s = make_segment();
    // Another MAC than the listener's own, so only the direction keeps these out.
    let seen = sightings_while(&s, Duration::from_millis(500), || {
        announce_from(&s.node, "lan0", OTHER_MAC, "192.0.2.200".parse().unwrap());
        announce_from(&s.node, "lan0", OTHER_MAC, "2001:db8:1::200".parse().unwrap());
    });
    assert!(seen.iter().all(|(_, s)| s.mac != OTHER_MAC), "{seen:?}");
}

#[test]
fn frames_from_the_peer_with_the_listeners_own_mac_are_not_sighted() {
    let s = make_segment();
    let seen = sightings_while(&s, Duration::from_millis(500), || {
        announce_from(&s.neighbour, "peer0", OWN_MAC, "192.0.2.200".parse().unwrap());
        announce_from(&s.neighbour, "peer0", OWN_MAC, "2001:db8:1::200".parse().unwrap());
        // Then a real one, to show the listener was listening.
        announce_from(&s.neighbour, "peer0", PEER_MAC, "192.0.2.201".parse().unwrap());
    });
    let seen: Vec<Sighting> = seen.into_iter().map(|(_, s)| s).filter(|s| s.mac != PEER_MAC).collect();
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn the_peer_kernels_own_answers_are_sighted() {
    // A node that took an address over answers ARP and neighbour solicitations for it; the node that
    // lost it sees the answers, not only the announcements.
    let s = make_segment();
    s.node.ip(&["addr", "add", "192.0.2.1/24", "dev", "lan0"]);
    s.node.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "lan0", "nodad"]);
    s.neighbour.ip(&["addr", "add", "192.0.2.200/24", "dev", "peer0"]);
    s.neighbour.ip(&["addr", "add", "2001:db8:1::200/64", "dev", "peer0", "nodad"]);
    let seen = sightings_while(&s, Duration::from_secs(2), || {
        for address in ["192.0.2.200", "2001:db8:1::200"] {
            let out = Command::new("ip")
                .args(["netns", "exec", &s.node.name, "ping", "-c", "1", "-W", "1", address])
                .output()
                .unwrap();
            assert!(out.status.success(), "ping {address}: {}", String::from_utf8_lossy(&out.stderr));
        }
    });
    for address in ["192.0.2.200", "2001:db8:1::200"] {
        let of_address = of(&seen, address);
        assert!(!of_address.is_empty(), "no sighting of {address}: {seen:?}");
        assert!(of_address.iter().all(|(_, s)| *s == sighting(address, PEER_MAC)), "{of_address:?}");
    }
}

#[test]
fn an_arp_request_from_the_peer_for_another_address_is_sighted_as_the_peers_own() {
    // The peer asks who has 192.0.2.1 (the node's address): the sighting names the asker's address,
    // 192.0.2.200, which the caller does not hold and so ignores.
    let s = make_segment();
    s.node.ip(&["addr", "add", "192.0.2.1/24", "dev", "lan0"]);
    s.neighbour.ip(&["addr", "add", "192.0.2.200/24", "dev", "peer0"]);
    let seen = sightings_while(&s, Duration::from_secs(1), || {
        let out = Command::new("ip")
            .args(["netns", "exec", &s.neighbour.name, "ping", "-c", "1", "-W", "1", "192.0.2.1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ping: {}", String::from_utf8_lossy(&out.stderr));
    });
    let of_peer = of(&seen, "192.0.2.200");
    assert!(!of_peer.is_empty(), "no sighting of the peer's address: {seen:?}");
    assert!(of_peer.iter().all(|(_, s)| *s == sighting("192.0.2.200", PEER_MAC)), "{of_peer:?}");
    assert!(of_peer[0].0 < Duration::from_secs(1), "{:?}", of_peer[0].0);
    // The node's own reply is outgoing and its address is never reported.
    assert!(of(&seen, "192.0.2.1").is_empty(), "{seen:?}");
}

#[tokio::test]
async fn listen_on_a_missing_interface_names_it() {
    let e = listen("nosuch0", OWN_MAC).err().unwrap();
    assert!(matches!(e, ConflictError::NoInterface { .. }), "{e}");
    assert!(e.to_string().contains("nosuch0"), "{e}");
}

#[test]
fn listen_outside_a_runtime_fails_instead_of_panicking() {
    let e = listen("lo", OWN_MAC).err().unwrap();
    assert!(matches!(e, ConflictError::NoRuntime { .. }), "{e}");
}

#[test]
fn listener_ends_when_its_interface_is_deleted() {
    let s = make_segment();
    let ended = s.node.run(|| async {
        let stream = listen("lan0", OWN_MAC).unwrap();
        let mut stream = std::pin::pin!(stream);
        s.node.ip(&["link", "del", "lan0"]);
        tokio::time::timeout(Duration::from_secs(1), async { while stream.next().await.is_some() {} })
            .await
            .is_ok()
    });
    assert!(ended, "the stream should end once lan0 is gone");
}

#[test]
fn listener_survives_its_link_going_down_and_up() {
    let s = make_segment();
    let address = "192.0.2.200";
    let seen = sightings_while(&s, Duration::from_secs(1), || {
        s.node.ip(&["link", "set", "lan0", "down"]);
        s.node.ip(&["link", "set", "lan0", "up"]);
        announce_from(&s.neighbour, "peer0", PEER_MAC, address.parse().unwrap());
    });
    let seen = of(&seen, address);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, sighting(address, PEER_MAC));
}
