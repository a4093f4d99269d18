#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;

use super::testns::TestNs;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace with a veth pair `veth-a`/`veth-b` (both ends inside, up) and an `ifb` named kube-lb0
/// (down, as a node's boot scripts would leave it).
fn make_node() -> TestNs {
    let ns = TestNs::new();
    ns.ip(&["link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b"]);
    ns.ip(&["link", "set", "veth-a", "up"]);
    ns.ip(&["link", "set", "veth-b", "up"]);
    ns.ip(&["link", "add", "kube-lb0", "type", "ifb"]);
    ns
}

fn ifindex(ns: &TestNs, name: &str) -> u32 {
    let v = ns.ip_json(&["link", "show", "dev", name]);
    u32::try_from(v[0]["ifindex"].as_u64().unwrap()).unwrap()
}

/// (local, prefixlen, protocol) of every address on `dev` as `ip -j addr` reports it.
fn kernel_addresses(ns: &TestNs, dev: &str) -> Vec<(IpAddr, u8, Option<String>)> {
    let v = ns.ip_json(&["addr", "show", "dev", dev]);
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                ip(a["local"].as_str().unwrap()),
                u8::try_from(a["prefixlen"].as_u64().unwrap()).unwrap(),
                a.get("protocol").map(|p| p.to_string()),
            )
        })
        .collect()
}

fn has(ns: &TestNs, dev: &str, address: &str, prefix_len: u8) -> bool {
    kernel_addresses(ns, dev).iter().any(|(a, p, _)| *a == ip(address) && *p == prefix_len)
}

#[test]
fn ensure_extlb_adopts_an_existing_ifb_and_sets_it_up() {
    let ns = make_node();
    let before = ns.ip_json(&["link", "show"]).as_array().unwrap().len();
    let expected = ifindex(&ns, "kube-lb0");

    let index = ns.run(|| async { Netlink::new().unwrap().ensure_extlb("kube-lb0").await.unwrap() });

    assert_eq!(index, expected);
    assert_eq!(ns.ip_json(&["link", "show"]).as_array().unwrap().len(), before, "no link was created");
    let flags = ns.ip_json(&["link", "show", "dev", "kube-lb0"])[0]["flags"].clone();
    assert!(flags.as_array().unwrap().iter().any(|f| f == "UP"), "kube-lb0 is up: {flags}");
    // Adopting twice is harmless.
    let again = ns.run(|| async { Netlink::new().unwrap().ensure_extlb("kube-lb0").await.unwrap() });
    assert_eq!(again, expected);
}

#[test]
fn ensure_extlb_creates_a_dummy_or_says_to_precreate() {
    let ns = TestNs::new();
    let result = ns.run(|| async { Netlink::new().unwrap().ensure_extlb("plb-extlb").await });
    match result {
        // A kernel with dummy support: the link exists, is a dummy and is up.
        Ok(index) => {
            let v = ns.ip_json(&["-d", "link", "show", "dev", "plb-extlb"]);
            assert_eq!(u64::from(index), v[0]["ifindex"].as_u64().unwrap());
            assert_eq!(v[0]["linkinfo"]["info_kind"], "dummy");
        }
        // This lab's kernel has no dummy: the error tells the operator what to do.
        Err(e) => {
            let message = e.to_string();
            assert!(matches!(e, NetlinkError::ExtlbUnsupported { .. }), "{message}");
            assert!(message.contains("ip link add plb-extlb type ifb"), "{message}");
            assert!(ns.try_ip(&["link", "show", "dev", "plb-extlb"]).status.code() != Some(0));
        }
    }
}

#[test]
fn add_tags_addresses_and_owned_lists_exactly_them() {
    let ns = make_node();
    let lb = ifindex(&ns, "kube-lb0");
    let veth = ifindex(&ns, "veth-a");
    ns.ip(&["addr", "add", "192.0.2.11/24", "dev", "veth-a"]);

    let (owned, links) = ns.run(|| async {
        let nl = Netlink::new().unwrap();
        nl.ensure_extlb("kube-lb0").await.unwrap();
        nl.add(lb, ip("198.51.100.7"), 24).await.unwrap();
        nl.add(lb, ip("2001:db8:100::7"), 64).await.unwrap();
        nl.add(veth, ip("192.0.2.200"), 24).await.unwrap();
        // Adding again is a no-op.
        nl.add(lb, ip("198.51.100.7"), 24).await.unwrap();
        nl.add(lb, ip("2001:db8:100::7"), 64).await.unwrap();
        (nl.owned().await.unwrap(), nl.links().await.unwrap())
    });

    let lb_addrs = kernel_addresses(&ns, "kube-lb0");
    assert!(has(&ns, "kube-lb0", "198.51.100.7", 24), "{lb_addrs:?}");
    assert!(has(&ns, "kube-lb0", "2001:db8:100::7", 64), "{lb_addrs:?}");
    assert_eq!(lb_addrs.iter().filter(|(a, _, _)| *a == ip("198.51.100.7")).count(), 1);
    assert!(has(&ns, "veth-a", "192.0.2.200", 24));
    // iproute2 6.1 does not print IFA_PROTO at all; newer ones print an unknown protocol as hex. The tag
    // round-trips through the kernel either way: owned() below tells tagged from untagged addresses.
    for (a, _, proto) in &lb_addrs {
        if let Some(proto) = proto.as_deref().filter(|_| !a.to_string().starts_with("fe80")) {
            assert!(proto.contains("0x50") || proto.contains("80"), "{a} has protocol {proto}");
        }
    }
    // IPv6 without duplicate address detection: usable at once.
    let v6 = ns.ip_json(&["-6", "addr", "show", "dev", "kube-lb0"]);
    let v6_info = v6[0]["addr_info"].as_array().unwrap();
    let ours = v6_info.iter().find(|a| a["local"] == "2001:db8:100::7").unwrap();
    assert_eq!(ours["nodad"], true, "{ours}");

    let expected = vec![
        OwnedAddress { index: veth, interface: "veth-a".into(), address: ip("192.0.2.200"), prefix_len: 24 },
        OwnedAddress { index: lb, interface: "kube-lb0".into(), address: ip("198.51.100.7"), prefix_len: 24 },
        OwnedAddress {
            index: lb,
            interface: "kube-lb0".into(),
            address: ip("2001:db8:100::7"),
            prefix_len: 64,
        },
    ];
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(owned, expected_sorted);

    let veth_link = links.iter().find(|l| l.name == "veth-a").unwrap();
    assert_eq!(veth_link.index, veth);
    assert!(veth_link.up);
    assert!(veth_link.mac.is_some());
    assert_eq!(
        veth_link.addresses,
        vec![
            LinkAddress { address: ip("192.0.2.11"), prefix_len: 24, ours: false },
            LinkAddress { address: ip("192.0.2.200"), prefix_len: 24, ours: true },
        ]
    );
    let lb_link = links.iter().find(|l| l.name == "kube-lb0").unwrap();
    assert!(lb_link.up);
    // Global scope only: no link-local fe80:: addresses.
    assert!(lb_link.addresses.iter().all(|a| a.ours), "{:?}", lb_link.addresses);
    assert_eq!(lb_link.addresses.len(), 2);
}

#[test]
fn ipv6_service_addresses_are_deprecated_and_never_the_nodes_source() {
    let ns = make_node();
    let veth = ifindex(&ns, "veth-a");
    ns.ip(&["addr", "add", "2001:db8:1::11/64", "dev", "veth-a", "nodad"]);
    ns.run(|| async {
        let nl = Netlink::new().unwrap();
        nl.add(veth, ip("2001:db8:1::200"), 64).await.unwrap();
    });
    let v6 = ns.ip_json(&["-6", "addr", "show", "dev", "veth-a"]);
    let info = v6[0]["addr_info"].as_array().unwrap();
    let ours = info.iter().find(|a| a["local"] == "2001:db8:1::200").unwrap();
    assert_eq!(ours["preferred_life_time"], 0, "{ours}");
    assert_eq!(ours["valid_life_time"], u64::from(u32::MAX), "valid forever: {ours}");
    // ::201 shares a longer prefix with the Service address than with the node's ::11, so the longest
    // match rule alone would pick the Service address; deprecated, it is never chosen.
    let route = ns.ip_json(&["-6", "route", "get", "2001:db8:1::201"]);
    assert_eq!(route[0]["prefsrc"], "2001:db8:1::11", "{route}");
    // And it still receives: the kernel holds it as a local address.
    let local = ns.ip_json(&["-6", "route", "show", "table", "local", "2001:db8:1::200"]);
    assert_eq!(local.as_array().map(Vec::len), Some(1), "{local}");
}

#[test]
fn the_nodes_own_addresses_are_never_touched() {
    let ns = make_node();
    let veth = ifindex(&ns, "veth-a");
    let lb = ifindex(&ns, "kube-lb0");
    ns.ip(&["addr", "add", "192.0.2.11/24", "dev", "veth-a"]);
    ns.ip(&["addr", "add", "2001:db8:1::11/64", "dev", "veth-a", "nodad"]);

    ns.run(|| async {
        let nl = Netlink::new().unwrap();
        assert_eq!(nl.owned().await.unwrap(), vec![]);

        let e = nl.delete(veth, ip("192.0.2.11"), 24).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");
        assert!(e.to_string().contains("192.0.2.11") && e.to_string().contains("veth-a"), "{e}");
        let e = nl.delete(veth, ip("2001:db8:1::11"), 64).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");
        // Another prefix length is no excuse.
        let e = nl.delete(veth, ip("192.0.2.11"), 32).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");

        let e = nl.add(veth, ip("192.0.2.11"), 24).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");
        let e = nl.add(veth, ip("2001:db8:1::11"), 64).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");
        // Nor is another link: the node's address is not ours to announce.
        let e = nl.add(lb, ip("192.0.2.11"), 32).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NotOurs { .. }), "{e}");

        assert_eq!(nl.owned().await.unwrap(), vec![]);
    });

    let addrs = kernel_addresses(&ns, "veth-a");
    assert!(has(&ns, "veth-a", "192.0.2.11", 24), "{addrs:?}");
    assert!(has(&ns, "veth-a", "2001:db8:1::11", 64), "{addrs:?}");
    assert_eq!(addrs.iter().filter(|(a, _, _)| *a == ip("192.0.2.11")).count(), 1);
    assert!(addrs.iter().all(|(_, _, proto)| proto.is_none() || proto.as_deref() == Some("\"kernel_ll\"")));
    assert!(kernel_addresses(&ns, "kube-lb0").is_empty());
}

#[test]
fn delete_removes_only_ours_and_absent_is_fine() {
    let ns = make_node();
    let lb = ifindex(&ns, "kube-lb0");

    let owned = ns.run(|| async {
        let nl = Netlink::new().unwrap();
        nl.ensure_extlb("kube-lb0").await.unwrap();
        nl.add(lb, ip("203.0.113.9"), 32).await.unwrap();
        nl.add(lb, ip("2001:db8:100::9"), 128).await.unwrap();
        nl.delete(lb, ip("203.0.113.9"), 32).await.unwrap();
        nl.delete(lb, ip("2001:db8:100::9"), 128).await.unwrap();
        // Absent: nothing to do.
        nl.delete(lb, ip("203.0.113.9"), 32).await.unwrap();
        nl.delete(lb, ip("2001:db8:100::10"), 128).await.unwrap();
        nl.owned().await.unwrap()
    });

    assert_eq!(owned, vec![]);
    assert!(!has(&ns, "kube-lb0", "203.0.113.9", 32));
    assert!(!has(&ns, "kube-lb0", "2001:db8:100::9", 128));
}

/// Many requests in flight at once (more than `IN_FLIGHT`): every result comes back in the order asked,
/// the node's own address among them is refused while the rest succeed, and the kernel ends up with
/// exactly what was asked.
#[test]
fn batches_of_many_keep_their_order_and_refuse_only_what_is_not_ours() {
    let ns = make_node();
    let veth = ifindex(&ns, "veth-a");
    let lb = ifindex(&ns, "kube-lb0");
    ns.ip(&["addr", "add", "192.0.2.11/24", "dev", "veth-a"]);
    let mut targets: Vec<(u32, IpAddr, u8)> = (0..200u32)
        .map(|i| (lb, IpAddr::from([198, 51, 100 + (i / 250) as u8, (i % 250) as u8]), 32))
        .collect();
    targets.extend((0..50u16).map(|i| (lb, IpAddr::from([0x2001, 0xdb8, 0x100, 0, 0, 0, 0, i]), 128)));
    // The node's own address, in the middle of the batch.
    targets.insert(118, (veth, ip("192.0.2.11"), 24));

    let (added, owned_after_add, deleted, owned_after_delete) = ns.run(|| async {
        let nl = Netlink::new().unwrap();
        let added = nl.add_many(&targets).await.unwrap();
        let owned_after_add = nl.owned().await.unwrap();
        // Delete every other one (the node's address included): the rest stay.
        let half: Vec<(u32, IpAddr, u8)> = targets.iter().copied().step_by(2).collect();
        let deleted = nl.delete_many(&half).await.unwrap();
        (added, owned_after_add, deleted, nl.owned().await.unwrap())
    });

    assert_eq!(added.len(), targets.len());
    for (i, r) in added.iter().enumerate() {
        if i == 118 {
            assert!(matches!(r, Err(NetlinkError::NotOurs { .. })), "{r:?}");
        } else {
            assert!(r.is_ok(), "{:?}: {r:?}", targets[i]);
        }
    }
    assert_eq!(owned_after_add.len(), targets.len() - 1);
    assert_eq!(deleted.len(), targets.len().div_ceil(2));
    for (j, r) in deleted.iter().enumerate() {
        let i = j * 2;
        if i == 118 {
            assert!(matches!(r, Err(NetlinkError::NotOurs { .. })), "{r:?}");
        } else {
            assert!(r.is_ok(), "{:?}: {r:?}", targets[i]);
        }
    }
    let kept: BTreeSet<(IpAddr, u8)> = owned_after_delete.iter().map(|o| (o.address, o.prefix_len)).collect();
    let expected: BTreeSet<(IpAddr, u8)> =
        targets.iter().enumerate().filter(|(i, _)| i % 2 == 1).map(|(_, t)| (t.1, t.2)).collect();
    assert_eq!(kept, expected);
    assert!(has(&ns, "veth-a", "192.0.2.11", 24));
}

#[test]
fn add_with_a_new_prefix_length_replaces_ours() {
    let ns = make_node();
    let lb = ifindex(&ns, "kube-lb0");

    let owned = ns.run(|| async {
        let nl = Netlink::new().unwrap();
        nl.add(lb, ip("203.0.113.9"), 32).await.unwrap();
        nl.add(lb, ip("203.0.113.9"), 24).await.unwrap();
        nl.add(lb, ip("2001:db8:100::9"), 128).await.unwrap();
        nl.add(lb, ip("2001:db8:100::9"), 64).await.unwrap();
        nl.owned().await.unwrap()
    });

    let addresses: Vec<(IpAddr, u8)> = owned.iter().map(|o| (o.address, o.prefix_len)).collect();
    assert_eq!(addresses, vec![(ip("203.0.113.9"), 24), (ip("2001:db8:100::9"), 64)]);
}

#[test]
fn removals_reports_an_address_removed_from_outside() {
    let ns = make_node();
    let lb = ifindex(&ns, "kube-lb0");

    ns.run(|| async {
        let nl = Netlink::new().unwrap();
        nl.ensure_extlb("kube-lb0").await.unwrap();
        let mut removals = nl.removals().unwrap();
        nl.add(lb, ip("198.51.100.77"), 32).await.unwrap();
        nl.add(lb, ip("2001:db8:100::77"), 128).await.unwrap();

        for (address, cidr) in
            [("198.51.100.77", "198.51.100.77/32"), ("2001:db8:100::77", "2001:db8:100::77/128")]
        {
            let out = tokio::process::Command::new("ip")
                .args(["addr", "del", cidr, "dev", "kube-lb0"])
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let seen = tokio::time::timeout(Duration::from_secs(5), async {
                while let Some(removed) = removals.next().await {
                    if removed == ip(address) {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(seen, Ok(true), "RTM_DELADDR for {address} within 5s");
        }
    });
}

#[test]
fn default_route_interface_prefers_ipv4_then_ipv6() {
    let ns = make_node();
    ns.ip(&["addr", "add", "192.0.2.11/24", "dev", "veth-a"]);
    ns.ip(&["addr", "add", "2001:db8:1::11/64", "dev", "veth-b", "nodad"]);

    let none = ns.run(|| async { Netlink::new().unwrap().default_route_interface().await.unwrap() });
    assert_eq!(none, None);

    ns.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::1", "dev", "veth-b"]);
    let v6 = ns.run(|| async { Netlink::new().unwrap().default_route_interface().await.unwrap() });
    assert_eq!(v6.as_deref(), Some("veth-b"));

    ns.ip(&["route", "add", "default", "via", "192.0.2.254"]);
    let v4 = ns.run(|| async { Netlink::new().unwrap().default_route_interface().await.unwrap() });
    assert_eq!(v4.as_deref(), Some("veth-a"));
}

#[test]
fn new_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(Netlink::new(), Err(NetlinkError::NoRuntime)));
}

#[test]
fn concurrent_listings_on_one_connection_all_succeed() {
    // The kernel runs one dump at a time per socket and answers a second with EBUSY; the Lease renewer,
    // the reconcile and the monitor share one connection, so concurrent listings must not fail.
    let ns = make_node();
    ns.ip(&["addr", "add", "192.0.2.11/24", "dev", "veth-a"]);
    let failures = ns.run(|| async {
        let nl = Netlink::new().unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let nl = nl.clone();
                tokio::spawn(async move {
                    match i % 3 {
                        0 => nl.links().await.map(|l| l.len()),
                        1 => nl.owned().await.map(|o| o.len()),
                        _ => nl.default_route_interface().await.map(|d| d.map_or(0, |_| 1)),
                    }
                })
            })
            .collect();
        let mut failures = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                failures.push(e.to_string());
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of 64 concurrent listings failed: {:?}",
        failures.len(),
        failures.first()
    );
}
