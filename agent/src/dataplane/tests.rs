//! The fake data plane keeps the kernel implementation's safety rules.

use std::net::IpAddr;
use std::time::Duration;

use super::DataPlane;
use super::fake::FakeDataPlane;
use crate::netlink::NetlinkError;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

#[tokio::test]
async fn adds_tags_and_deletes_only_its_own() {
    let dp = FakeDataPlane::default().with_link("eth0", Some([2, 0, 0, 0, 0, 1]), &[(ip("192.0.2.11"), 24)]);
    dp.put("eth0", ip("192.0.2.99"), 32, false);
    let results =
        dp.add_many(&[(1, ip("192.0.2.200"), 24), (1, ip("192.0.2.99"), 24)]).await.expect("a batch");
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(NetlinkError::NotOurs { .. })));
    let owned = dp.owned().await.expect("a listing");
    assert_eq!(owned.iter().map(|o| o.address).collect::<Vec<_>>(), vec![ip("192.0.2.200")]);
    let results =
        dp.delete_many(&[(1, ip("192.0.2.11"), 24), (1, ip("192.0.2.200"), 24)]).await.expect("a batch");
    assert!(matches!(results[0], Err(NetlinkError::NotOurs { .. })));
    assert!(results[1].is_ok());
    assert_eq!(dp.addresses("eth0"), vec![(ip("192.0.2.11"), 24, false), (ip("192.0.2.99"), 32, false)]);
    dp.take_away(ip("192.0.2.99"));
    assert_eq!(dp.addresses("eth0").len(), 1);
}

#[tokio::test]
async fn creates_the_routed_interface_and_records_announcements() {
    let dp = FakeDataPlane::default().with_link("eth0", None, &[]);
    assert!(!dp.has_link("kube-lb0"));
    let index = dp.ensure_extlb("kube-lb0").await.expect("an index");
    assert_eq!(dp.ensure_extlb("kube-lb0").await.expect("an index"), index);
    assert!(dp.has_link("kube-lb0"));
    dp.announce("eth0".into(), [0; 6], ip("192.0.2.200"), 3, Duration::ZERO).await.expect("sent");
    assert_eq!(dp.announced(), vec![("eth0".to_string(), ip("192.0.2.200"))]);
    assert!(dp.listen("eth0", [0; 6]).is_ok());
}
