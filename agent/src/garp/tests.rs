#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;
use crate::netlink::testns::TestNs;

const MAC: [u8; 6] = [0x02, 0x50, 0x4c, 0x42, 0x00, 0x07];
const STALE_MAC: &str = "02:00:00:00:00:01";
const INTERVAL: Duration = Duration::from_millis(100);

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

// --- frames, without a kernel ---

#[test]
fn gratuitous_arp_is_a_broadcast_request_for_itself() {
    let address = Ipv4Addr::new(192, 0, 2, 200);
    let f = gratuitous_arp(MAC, address);
    assert_eq!(f.len(), 60);
    assert_eq!(f[0..6], [0xff; 6]);
    assert_eq!(f[6..12], MAC);
    assert_eq!(f[12..14], [0x08, 0x06]);
    assert_eq!(f[14..22], [0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    assert_eq!(f[22..28], MAC);
    assert_eq!(f[28..32], address.octets());
    assert_eq!(f[32..38], [0; 6]);
    assert_eq!(f[38..42], address.octets());
    assert!(f[42..].iter().all(|b| *b == 0));
}

#[test]
fn unsolicited_na_has_override_hop_limit_255_and_a_valid_checksum() {
    let address: Ipv6Addr = "2001:db8:1::200".parse().unwrap();
    let f = unsolicited_na(MAC, address);
    assert_eq!(f.len(), 14 + 40 + 32);
    assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(f[6..12], MAC);
    assert_eq!(f[12..14], [0x86, 0xdd]);
    assert_eq!(f[14] >> 4, 6);
    assert_eq!(u16::from_be_bytes([f[18], f[19]]), 32);
    assert_eq!(f[20], 58);
    assert_eq!(f[21], 255);
    assert_eq!(f[22..38], address.octets());
    assert_eq!(f[38..54], ALL_NODES.octets());
    let icmp = &f[54..];
    assert_eq!(icmp[0..2], [136, 0]);
    assert_eq!(icmp[4], 0x20, "Override only: not Router, not Solicited");
    assert_eq!(icmp[8..24], address.octets());
    assert_eq!(icmp[24..32], [2, 1, MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5]]);
    // A message that carries its checksum sums to zero.
    assert_eq!(icmpv6_checksum(address, ALL_NODES, icmp), 0);
}

#[test]
fn icmpv6_checksum_matches_a_known_value() {
    // An echo request (type 128, id 1, seq 1, no data) from 2001:db8::1 to 2001:db8::2; the value was
    // computed independently, by a few lines of Python summing the pseudo-header as RFC 1071 says.
    let message = [128, 0, 0, 0, 0, 1, 0, 1];
    let sum = icmpv6_checksum("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), &message);
    assert_eq!(sum, 0x2446);
}

#[tokio::test]
async fn zero_count_sends_nothing_and_needs_no_socket() {
    let result = announce("no-such-if", MAC, "192.0.2.1".parse().unwrap(), 0, INTERVAL).await;
    assert!(result.is_ok());
}

// --- on the wire, between two namespaces ---

/// A node namespace with `lan0`, wired by a veth pair to `peer0` in a neighbour namespace.
struct Segment {
    node: TestNs,
    neighbour: TestNs,
}

fn make_segment() -> Segment {
    let node = TestNs::new();
    let neighbour = TestNs::new();
    node.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "peer0", "netns", &neighbour.name]);
    node.ip(&["link", "set", "lan0", "up"]);
    neighbour.ip(&["link", "set", "peer0", "up"]);
    node.ip(&["addr", "add", "192.0.2.200/24", "dev", "lan0"]);
    node.ip(&["addr", "add", "2001:db8:1::200/64", "dev", "lan0", "nodad"]);
    neighbour.ip(&["addr", "add", "192.0.2.1/24", "dev", "peer0"]);
    neighbour.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "peer0", "nodad"]);
    Segment { node, neighbour }
}

/// tcpdump writing the frames that match `filter` on `interface` in `ns` to a pcap file.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(ns: &TestNs, interface: &str, count: usize, filter: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}-{interface}.pcap", ns.name));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "timeout", "20", "tcpdump", "-i", interface, "-U", "-c"])
            .arg(count.to_string())
            .arg("-w")
            .arg(&file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tcpdump (install it): {e}"));
        // tcpdump says "listening on" once its socket is open; frames sent before that are lost.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "tcpdump exited: {line}");
        }
        Capture { child, file }
    }

    /// Waits for tcpdump to have its frames (or time out) and returns them with their timestamps.
    fn finish(mut self) -> (Vec<(Duration, Vec<u8>)>, String) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "tcpdump did not capture all frames in 20 s: {status}");
        let bytes = std::fs::read(&self.file).unwrap();
        let decoded =
            Command::new("tcpdump").args(["-r"]).arg(&self.file).args(["-nn", "-e", "-vv"]).output();
        let decoded = String::from_utf8_lossy(&decoded.unwrap().stdout).into_owned();
        (parse_pcap(&bytes), decoded)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

fn parse_pcap(bytes: &[u8]) -> Vec<(Duration, Vec<u8>)> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "little-endian microsecond pcap");
    assert_eq!(u32_at(20), 1, "Ethernet link type");
    let mut frames = vec![];
    let mut at = 24;
    while at < bytes.len() {
        let time = Duration::from_secs(u32_at(at).into()) + Duration::from_micros(u32_at(at + 4).into());
        let len = usize::try_from(u32_at(at + 8)).unwrap();
        frames.push((time, bytes[at + 16..at + 16 + len].to_vec()));
        at += 16 + len;
    }
    frames
}

fn neighbour_mac(ns: &TestNs, family: &str, address: &str) -> String {
    let v = ns.ip_json(&[family, "neigh", "show", address, "dev", "peer0"]);
    v[0]["lladdr"].as_str().unwrap_or("none").to_string()
}

fn assert_spaced(frames: &[(Duration, Vec<u8>)]) {
    for pair in frames.windows(2) {
        let gap = pair[1].0.saturating_sub(pair[0].0);
        assert!(gap >= INTERVAL - Duration::from_millis(10), "frames {gap:?} apart, want {INTERVAL:?}");
    }
}

#[test]
fn announce_v4_sends_gratuitous_arps_the_neighbour_believes() {
    let s = make_segment();
    let address = Ipv4Addr::new(192, 0, 2, 200);
    s.neighbour.ip(&[
        "-4",
        "neigh",
        "replace",
        "192.0.2.200",
        "lladdr",
        STALE_MAC,
        "dev",
        "peer0",
        "nud",
        "stale",
    ]);
    assert_eq!(neighbour_mac(&s.neighbour, "-4", "192.0.2.200"), STALE_MAC);
    let capture = Capture::start(&s.neighbour, "peer0", 3, "arp");

    s.node.run(|| async { announce("lan0", MAC, IpAddr::V4(address), 3, INTERVAL).await.unwrap() });

    let (frames, decoded) = capture.finish();
    assert_eq!(frames.len(), 3);
    for (_, f) in &frames {
        assert_eq!(f[0..6], [0xff; 6], "broadcast");
        assert_eq!(f[6..12], MAC, "Ethernet source is the given MAC");
        assert_eq!(f[12..14], [0x08, 0x06]);
        assert_eq!(f[20..22], [0, 1], "an ARP request");
        assert_eq!(f[22..28], MAC, "sender MAC");
        assert_eq!(f[28..32], address.octets(), "sender IP");
        assert_eq!(f[38..42], address.octets(), "target IP");
    }
    assert_spaced(&frames);
    // tcpdump's own reading of the frames.
    let mac = mac_text(MAC);
    assert_eq!(decoded.matches("Request who-has 192.0.2.200 tell 192.0.2.200").count(), 3, "{decoded}");
    assert_eq!(decoded.matches(&format!("{mac} > ff:ff:ff:ff:ff:ff")).count(), 3, "{decoded}");
    // And the neighbour's kernel took it: its stale entry now points at the given MAC.
    assert_eq!(neighbour_mac(&s.neighbour, "-4", "192.0.2.200"), mac);
}

#[test]
fn announce_v6_sends_unsolicited_nas_the_neighbour_believes() {
    let s = make_segment();
    let address: Ipv6Addr = "2001:db8:1::200".parse().unwrap();
    s.neighbour.ip(&[
        "-6",
        "neigh",
        "replace",
        "2001:db8:1::200",
        "lladdr",
        STALE_MAC,
        "dev",
        "peer0",
        "nud",
        "stale",
    ]);
    assert_eq!(neighbour_mac(&s.neighbour, "-6", "2001:db8:1::200"), STALE_MAC);
    // Neighbour advertisements only: ICMPv6 type 136 right behind the fixed header.
    let capture = Capture::start(&s.neighbour, "peer0", 3, "icmp6 and ip6[40] == 136");

    s.node.run(|| async { announce("lan0", MAC, IpAddr::V6(address), 3, INTERVAL).await.unwrap() });

    let (frames, decoded) = capture.finish();
    assert_eq!(frames.len(), 3);
    for (_, f) in &frames {
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[6..12], MAC);
        assert_eq!(f[12..14], [0x86, 0xdd]);
        assert_eq!(f[20], 58, "ICMPv6");
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[38..54], "ff02::1".parse::<Ipv6Addr>().unwrap().octets(), "to all nodes");
        assert_eq!(f[54], 136, "neighbour advertisement");
        assert_eq!(f[58] & 0xe0, 0x20, "Override set, Solicited and Router clear");
        assert_eq!(f[62..78], address.octets(), "target");
        assert_eq!(
            f[78..86],
            [2, 1, MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5]],
            "target link-layer option"
        );
    }
    assert_spaced(&frames);
    let mac = mac_text(MAC);
    assert_eq!(decoded.matches("hlim 255").count(), 3, "{decoded}");
    assert_eq!(
        decoded.matches("neighbor advertisement, length 32, tgt is 2001:db8:1::200").count(),
        3,
        "{decoded}"
    );
    assert_eq!(decoded.matches("Flags [override]").count(), 3, "{decoded}");
    assert_eq!(
        decoded.matches(&format!("link-address option (2), length 8 (1): {mac}")).count(),
        3,
        "{decoded}"
    );
    assert_eq!(decoded.matches("[icmp6 sum ok]").count(), 3, "{decoded}");
    // The neighbour's kernel validated hop limit and checksum and honoured Override.
    assert_eq!(neighbour_mac(&s.neighbour, "-6", "2001:db8:1::200"), mac);
}

#[test]
fn announce_on_a_missing_interface_names_it() {
    let ns = TestNs::new();
    let e = ns
        .run(|| async { announce("nosuch0", MAC, "192.0.2.1".parse().unwrap(), 1, INTERVAL).await })
        .unwrap_err();
    assert!(matches!(e, GarpError::NoInterface { .. }), "{e}");
    assert!(e.to_string().contains("nosuch0"), "{e}");
}

#[test]
fn announce_on_a_down_interface_fails_clearly() {
    let ns = TestNs::new();
    ns.ip(&["link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]);
    let e = ns
        .run(|| async { announce("lan0", MAC, "192.0.2.1".parse().unwrap(), 1, INTERVAL).await })
        .unwrap_err();
    assert!(matches!(e, GarpError::Send { .. }), "{e}");
    assert!(e.to_string().contains("lan0") && e.to_string().contains("192.0.2.1"), "{e}");
}
