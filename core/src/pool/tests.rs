//! Tests for the pool module: parsing of every form and every error, Display round trips, sizes,
//! and the allocator (order, reserve, release merging, exhaustion), checked against a naive model.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> Subnet {
    Subnet::parse(s).unwrap()
}

fn range(s: &str) -> AddressRange {
    AddressRange::parse(s).unwrap()
}

fn make_pool(subnet: &str, pool: &str) -> Pool {
    Pool::new(PoolConfig::parse(subnet, pool, "default", None).unwrap())
}

fn err_text(r: Result<impl std::fmt::Debug, PoolError>) -> String {
    r.unwrap_err().to_string()
}

// === Family and integer conversions ===

#[test]
fn family_of_each_address() {
    assert_eq!(Family::of(ip("192.0.2.1")), Family::V4);
    assert_eq!(Family::of(ip("2001:db8::1")), Family::V6);
}

#[test]
fn family_max_prefix() {
    assert_eq!(Family::V4.max_prefix(), 32);
    assert_eq!(Family::V6.max_prefix(), 128);
}

#[test]
fn family_display_and_order() {
    assert_eq!(Family::V4.to_string(), "IPv4");
    assert_eq!(Family::V6.to_string(), "IPv6");
    assert!(Family::V4 < Family::V6);
}

#[test]
fn ip_u128_round_trip_v4() {
    assert_eq!(ip_to_u128(ip("0.0.0.1")), 1);
    assert_eq!(ip_to_u128(ip("255.255.255.255")), u128::from(u32::MAX));
    assert_eq!(u128_to_ip(ip_to_u128(ip("192.0.2.7")), Family::V4), ip("192.0.2.7"));
}

#[test]
fn ip_u128_round_trip_v6() {
    assert_eq!(ip_to_u128(ip("::1")), 1);
    assert_eq!(ip_to_u128(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), u128::MAX);
    assert_eq!(u128_to_ip(ip_to_u128(ip("2001:db8::7")), Family::V6), ip("2001:db8::7"));
}

#[test]
fn u128_to_ip_v4_uses_low_32_bits() {
    assert_eq!(u128_to_ip((1u128 << 40) | 5, Family::V4), ip("0.0.0.5"));
}

// === Subnet ===

#[test]
fn subnet_parses_v4() {
    let s = subnet("192.0.2.0/24");
    assert_eq!(s.network(), ip("192.0.2.0"));
    assert_eq!(s.prefix_len(), 24);
    assert_eq!(s.family(), Family::V4);
}

#[test]
fn subnet_parses_v6() {
    let s = subnet("2001:db8:0:1::/64");
    assert_eq!(s.network(), ip("2001:db8:0:1::"));
    assert_eq!(s.prefix_len(), 64);
    assert_eq!(s.family(), Family::V6);
}

#[test]
fn subnet_masks_host_bits() {
    assert_eq!(subnet("192.0.2.5/24"), subnet("192.0.2.0/24"));
    assert_eq!(subnet("2001:db8::1:2/64").to_string(), "2001:db8::/64");
}

#[test]
fn subnet_trims_spaces() {
    assert_eq!(subnet("  192.0.2.0/24 "), subnet("192.0.2.0/24"));
}

#[test]
fn subnet_extremes() {
    assert_eq!(subnet("10.1.2.3/0").to_string(), "0.0.0.0/0");
    assert_eq!(subnet("10.1.2.3/32").to_string(), "10.1.2.3/32");
    assert_eq!(subnet("2001:db8::1/0").to_string(), "::/0");
    assert_eq!(subnet("2001:db8::1/128").to_string(), "2001:db8::1/128");
}

#[test]
fn subnet_display_round_trips() {
    for s in ["192.0.2.0/24", "0.0.0.0/0", "198.51.100.7/32", "2001:db8:100::/64", "::/0", "2001:db8::1/128"]
    {
        assert_eq!(subnet(s).to_string(), s);
        assert_eq!(subnet(&subnet(s).to_string()), subnet(s));
    }
}

#[test]
fn subnet_last_address() {
    assert_eq!(subnet("192.0.2.0/24").last(), ip("192.0.2.255"));
    assert_eq!(subnet("::/0").last(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_eq!(subnet("0.0.0.0/0").last(), ip("255.255.255.255"));
}

#[test]
fn subnet_new_masks_and_checks_prefix() {
    assert_eq!(Subnet::new(ip("192.0.2.77"), 28), Some(subnet("192.0.2.64/28")));
    assert_eq!(Subnet::new(ip("192.0.2.77"), 33), None);
    assert_eq!(Subnet::new(ip("2001:db8::1"), 129), None);
}

#[test]
fn subnet_contains() {
    let s = subnet("192.0.2.0/24");
    assert!(s.contains(ip("192.0.2.0")));
    assert!(s.contains(ip("192.0.2.255")));
    assert!(!s.contains(ip("192.0.3.0")));
    assert!(!s.contains(ip("192.0.1.255")));
}

#[test]
fn subnet_never_contains_other_family() {
    assert!(!subnet("0.0.0.0/0").contains(ip("::1")));
    assert!(!subnet("::/0").contains(ip("192.0.2.1")));
}

#[test]
fn subnet_zero_contains_everything_of_its_family() {
    assert!(subnet("::/0").contains(ip("ffff::1")));
    assert!(subnet("0.0.0.0/0").contains(ip("255.255.255.255")));
}

#[test]
fn subnet_contains_range() {
    let s = subnet("192.0.2.0/24");
    assert!(s.contains_range(&range("192.0.2.200-192.0.2.220")));
    assert!(s.contains_range(&range("192.0.2.0/24")));
    assert!(!s.contains_range(&range("192.0.2.200-192.0.3.1")));
    assert!(!s.contains_range(&range("192.0.1.255-192.0.2.1")));
    assert!(!s.contains_range(&range("2001:db8::/64")));
}

#[test]
fn subnet_range_covers_it() {
    assert_eq!(subnet("192.0.2.0/30").range(), range("192.0.2.0-192.0.2.3"));
}

#[test]
fn subnet_error_empty() {
    assert_eq!(Subnet::parse("  "), Err(PoolError::Empty { what: "subnet" }));
    assert_eq!(err_text(Subnet::parse("")), "the subnet is empty");
}

#[test]
fn subnet_error_not_cidr() {
    assert_eq!(
        err_text(Subnet::parse("192.0.2.0")),
        "subnet 192.0.2.0 is not a CIDR (expected address/prefix, e.g. 192.0.2.0/24 or 2001:db8::/64)"
    );
}

#[test]
fn subnet_error_bad_address() {
    assert_eq!(
        err_text(Subnet::parse("192.0.2.x/24")),
        "subnet 192.0.2.x/24: `192.0.2.x` is not an IPv4 or IPv6 address"
    );
    assert!(matches!(Subnet::parse("192.0.2.256/24"), Err(PoolError::BadAddress { .. })));
}

#[test]
fn subnet_error_bad_prefix() {
    assert_eq!(
        err_text(Subnet::parse("192.0.2.0/abc")),
        "subnet 192.0.2.0/abc: the prefix length `/abc` is not a number"
    );
    assert!(matches!(Subnet::parse("192.0.2.0/"), Err(PoolError::BadPrefix { .. })));
    assert!(matches!(Subnet::parse("192.0.2.0/+24"), Err(PoolError::BadPrefix { .. })));
    assert!(matches!(Subnet::parse("192.0.2.0/-1"), Err(PoolError::BadPrefix { .. })));
}

#[test]
fn subnet_error_prefix_out_of_range() {
    assert_eq!(
        err_text(Subnet::parse("192.0.2.0/33")),
        "subnet 192.0.2.0/33: prefix /33 is out of range for IPv4 (/0–/32)"
    );
    assert_eq!(
        err_text(Subnet::parse("2001:db8::/129")),
        "subnet 2001:db8::/129: prefix /129 is out of range for IPv6 (/0–/128)"
    );
    assert!(matches!(Subnet::parse("192.0.2.0/99999999999999"), Err(PoolError::PrefixOutOfRange { .. })));
}

// === AddressRange ===

#[test]
fn range_parses_cidr() {
    let r = range("192.0.2.0/28");
    assert_eq!(r.first(), ip("192.0.2.0"));
    assert_eq!(r.last(), ip("192.0.2.15"));
    assert_eq!(r.family(), Family::V4);
}

#[test]
fn range_parses_noncanonical_cidr_masked() {
    assert_eq!(range("192.0.2.5/28"), range("192.0.2.0/28"));
}

#[test]
fn range_parses_first_last() {
    let r = range("192.0.2.200-192.0.2.220");
    assert_eq!(r.first(), ip("192.0.2.200"));
    assert_eq!(r.last(), ip("192.0.2.220"));
}

#[test]
fn range_parses_v6_with_spaces() {
    let r = range(" 2001:db8::1 - 2001:db8::ff ");
    assert_eq!(r.first(), ip("2001:db8::1"));
    assert_eq!(r.last(), ip("2001:db8::ff"));
    assert_eq!(r.family(), Family::V6);
}

#[test]
fn range_of_one_address() {
    let r = range("192.0.2.9-192.0.2.9");
    assert_eq!(r.size(), 1);
    assert_eq!(r.to_string(), "192.0.2.9/32");
}

#[test]
fn range_new_checks_order_and_family() {
    assert_eq!(AddressRange::new(ip("192.0.2.1"), ip("192.0.2.3")).unwrap(), range("192.0.2.1-192.0.2.3"));
    assert!(matches!(AddressRange::new(ip("192.0.2.3"), ip("192.0.2.1")), Err(PoolError::Reversed { .. })));
    assert!(matches!(AddressRange::new(ip("192.0.2.3"), ip("::1")), Err(PoolError::MixedFamilies { .. })));
}

#[test]
fn range_from_subnet() {
    assert_eq!(AddressRange::from(subnet("198.51.100.0/24")), range("198.51.100.0-198.51.100.255"));
}

#[test]
fn range_error_empty() {
    assert_eq!(AddressRange::parse(" "), Err(PoolError::Empty { what: "pool" }));
}

#[test]
fn range_error_reversed() {
    assert_eq!(
        err_text(AddressRange::parse("192.0.2.10-192.0.2.1")),
        "pool 192.0.2.10-192.0.2.1: the first address is above the last"
    );
}

#[test]
fn range_error_mixed_families() {
    assert_eq!(
        err_text(AddressRange::parse("192.0.2.1-2001:db8::1")),
        "pool 192.0.2.1-2001:db8::1: the first address is IPv4 and the last is IPv6; both must be of one family"
    );
}

#[test]
fn range_error_bad_end() {
    assert_eq!(
        err_text(AddressRange::parse("192.0.2.1-192.0.2")),
        "pool 192.0.2.1-192.0.2: `192.0.2` is not an IPv4 or IPv6 address"
    );
    assert!(matches!(AddressRange::parse("-192.0.2.1"), Err(PoolError::BadAddress { .. })));
    assert!(matches!(AddressRange::parse("192.0.2.1-"), Err(PoolError::BadAddress { .. })));
    assert!(matches!(AddressRange::parse("1.1.1.1-2.2.2.2-3.3.3.3"), Err(PoolError::BadAddress { .. })));
}

#[test]
fn range_error_bad_cidr() {
    assert_eq!(
        err_text(AddressRange::parse("192.0.2.0/40")),
        "pool 192.0.2.0/40: prefix /40 is out of range for IPv4 (/0–/32)"
    );
    assert!(matches!(AddressRange::parse("nope/24"), Err(PoolError::BadAddress { what: "pool", .. })));
}

#[test]
fn range_error_single_address() {
    assert_eq!(
        err_text(AddressRange::parse("192.0.2.5")),
        "pool 192.0.2.5 is a single address, not a CIDR or a first-last range (write 192.0.2.5/32 for a one-address pool)"
    );
    assert!(err_text(AddressRange::parse("2001:db8::5")).contains("2001:db8::5/128"));
}

#[test]
fn range_error_garbage() {
    assert_eq!(err_text(AddressRange::parse("pool-a")), "pool pool-a: `pool` is not an IPv4 or IPv6 address");
    assert!(matches!(AddressRange::parse("abc"), Err(PoolError::BadAddress { .. })));
}

#[test]
fn range_contains() {
    let r = range("192.0.2.200-192.0.2.220");
    assert!(r.contains(ip("192.0.2.200")));
    assert!(r.contains(ip("192.0.2.220")));
    assert!(!r.contains(ip("192.0.2.199")));
    assert!(!r.contains(ip("192.0.2.221")));
    assert!(!r.contains(ip("::c000:2c8")));
}

#[test]
fn range_sizes() {
    assert_eq!(range("192.0.2.0/24").size(), 256);
    assert_eq!(range("192.0.2.200-192.0.2.220").size(), 21);
    assert_eq!(range("192.0.2.1/32").size(), 1);
    assert_eq!(range("0.0.0.0/0").size(), 1 << 32);
    assert_eq!(range("2001:db8:100::/64").size(), 1 << 64);
    assert_eq!(range("::/1").size(), 1 << 127);
}

#[test]
fn range_size_saturates_for_whole_v6_space() {
    assert_eq!(range("::/0").size(), u128::MAX);
}

#[test]
fn range_overlaps() {
    let r = range("192.0.2.10-192.0.2.20");
    assert!(r.overlaps(&range("192.0.2.20-192.0.2.30")));
    assert!(r.overlaps(&range("192.0.2.0-192.0.2.10")));
    assert!(r.overlaps(&range("192.0.2.12-192.0.2.13")));
    assert!(r.overlaps(&range("192.0.2.0/24")));
    assert!(!r.overlaps(&range("192.0.2.21-192.0.2.30")));
    assert!(!r.overlaps(&range("192.0.2.0-192.0.2.9")));
}

#[test]
fn range_never_overlaps_other_family() {
    assert!(!range("0.0.0.0/0").overlaps(&range("::/0")));
}

#[test]
fn range_display_uses_cidr_when_exact() {
    assert_eq!(range("192.0.2.0-192.0.2.255").to_string(), "192.0.2.0/24");
    assert_eq!(range("192.0.2.16-192.0.2.31").to_string(), "192.0.2.16/28");
    assert_eq!(range("0.0.0.0-255.255.255.255").to_string(), "0.0.0.0/0");
    assert_eq!(range("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").to_string(), "::/0");
}

#[test]
fn range_display_uses_dash_otherwise() {
    assert_eq!(range("192.0.2.200 - 192.0.2.220").to_string(), "192.0.2.200-192.0.2.220");
    // A power of two in size but not aligned.
    assert_eq!(range("192.0.2.8-192.0.2.23").to_string(), "192.0.2.8-192.0.2.23");
    // Aligned but not a power of two.
    assert_eq!(range("192.0.2.0-192.0.2.2").to_string(), "192.0.2.0-192.0.2.2");
}

#[test]
fn range_display_round_trips() {
    for s in [
        "192.0.2.0/28",
        "192.0.2.200-192.0.2.220",
        "2001:db8::1-2001:db8::ff",
        "2001:db8:100::/64",
        "::/0",
        "0.0.0.0/0",
        "203.0.113.7/32",
    ] {
        assert_eq!(range(s).to_string(), s);
        assert_eq!(range(&range(s).to_string()), range(s));
    }
}

#[test]
fn range_as_subnet() {
    assert_eq!(range("192.0.2.0-192.0.2.127").as_subnet(), Some(subnet("192.0.2.0/25")));
    assert_eq!(range("192.0.2.1-192.0.2.127").as_subnet(), None);
}

// === Aggregation ===

#[test]
fn aggregation_parses_default() {
    assert_eq!(Aggregation::parse("default", Family::V4), Ok(Aggregation::Default));
    assert_eq!(Aggregation::parse(" default ", Family::V6), Ok(Aggregation::Default));
}

#[test]
fn aggregation_parses_prefix_bounds_v4() {
    assert_eq!(Aggregation::parse("/0", Family::V4), Ok(Aggregation::Prefix(0)));
    assert_eq!(Aggregation::parse("/24", Family::V4), Ok(Aggregation::Prefix(24)));
    assert_eq!(Aggregation::parse("/32", Family::V4), Ok(Aggregation::Prefix(32)));
}

#[test]
fn aggregation_parses_prefix_bounds_v6() {
    assert_eq!(Aggregation::parse("/64", Family::V6), Ok(Aggregation::Prefix(64)));
    assert_eq!(Aggregation::parse("/128", Family::V6), Ok(Aggregation::Prefix(128)));
}

#[test]
fn aggregation_error_out_of_range() {
    assert_eq!(
        err_text(Aggregation::parse("/33", Family::V4)),
        "aggregation /33 is out of range for IPv4 (/0–/32)"
    );
    assert_eq!(
        err_text(Aggregation::parse("/129", Family::V6)),
        "aggregation /129 is out of range for IPv6 (/0–/128)"
    );
    assert!(matches!(Aggregation::parse("/300", Family::V6), Err(PoolError::AggregationOutOfRange { .. })));
}

#[test]
fn aggregation_error_not_a_prefix() {
    assert_eq!(
        err_text(Aggregation::parse("24", Family::V4)),
        "aggregation `24` is not `default` or a prefix length such as /24 or /64"
    );
    assert!(matches!(Aggregation::parse("/abc", Family::V4), Err(PoolError::BadAggregation { .. })));
    assert!(matches!(Aggregation::parse("/", Family::V4), Err(PoolError::BadAggregation { .. })));
    assert!(matches!(Aggregation::parse("Default", Family::V4), Err(PoolError::BadAggregation { .. })));
}

#[test]
fn aggregation_error_empty() {
    assert_eq!(Aggregation::parse("", Family::V4), Err(PoolError::Empty { what: "aggregation" }));
}

#[test]
fn aggregation_display_round_trips() {
    for (s, family) in
        [("default", Family::V4), ("/24", Family::V4), ("/0", Family::V6), ("/128", Family::V6)]
    {
        assert_eq!(Aggregation::parse(s, family).unwrap().to_string(), s);
    }
}

#[test]
fn aggregation_prefix_len() {
    let s = subnet("192.0.2.0/24");
    assert_eq!(Aggregation::Default.prefix_len(&s), 24);
    assert_eq!(Aggregation::Prefix(32).prefix_len(&s), 32);
    assert_eq!(Aggregation::Prefix(16).prefix_len(&s), 16);
}

// === PoolConfig ===

#[test]
fn config_parses_seed_pool() {
    let c = PoolConfig::parse("172.31.1.0/24", "172.31.1.0/24", "default", Some(Family::V4)).unwrap();
    assert_eq!(c.subnet, subnet("172.31.1.0/24"));
    assert_eq!(c.range, range("172.31.1.0/24"));
    assert_eq!(c.aggregation, Aggregation::Default);
    assert_eq!(c.family(), Family::V4);
}

#[test]
fn config_parses_range_pool() {
    let c = PoolConfig::parse("192.0.2.0/24", "192.0.2.200-192.0.2.220", "/32", Some(Family::V4)).unwrap();
    assert_eq!(c.range.size(), 21);
    assert_eq!(c.aggregation, Aggregation::Prefix(32));
}

#[test]
fn config_parses_v6_pool() {
    let c = PoolConfig::parse("2001:db8:100::/64", "2001:db8:100::/64", "/128", Some(Family::V6)).unwrap();
    assert_eq!(c.family(), Family::V6);
    assert_eq!(c.aggregation, Aggregation::Prefix(128));
}

#[test]
fn config_without_list_family_takes_either() {
    assert!(PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "default", None).is_ok());
    assert!(PoolConfig::parse("2001:db8::/64", "2001:db8::/120", "default", None).is_ok());
}

#[test]
fn config_accepts_noncanonical_subnet() {
    let c = PoolConfig::parse("192.0.2.5/24", "192.0.2.10-192.0.2.20", "default", None).unwrap();
    assert_eq!(c.subnet.to_string(), "192.0.2.0/24");
}

#[test]
fn config_display() {
    let c = PoolConfig::parse("192.0.2.0/24", "192.0.2.200-192.0.2.220", "default", None).unwrap();
    assert_eq!(c.to_string(), "subnet 192.0.2.0/24 pool 192.0.2.200-192.0.2.220 aggregation default");
}

#[test]
fn config_error_subnet_not_cidr() {
    assert!(matches!(
        PoolConfig::parse("192.0.2.0", "192.0.2.0/28", "default", None),
        Err(PoolError::NotCidr { what: "subnet", .. })
    ));
}

#[test]
fn config_error_pool_reversed() {
    assert_eq!(
        err_text(PoolConfig::parse("192.0.2.0/24", "192.0.2.10-192.0.2.1", "default", None)),
        "pool 192.0.2.10-192.0.2.1: the first address is above the last"
    );
}

#[test]
fn config_error_pool_not_in_subnet() {
    assert_eq!(
        err_text(PoolConfig::parse("192.0.2.0/24", "198.51.100.0/24", "default", None)),
        "pool 198.51.100.0/24 is not inside subnet 192.0.2.0/24"
    );
}

#[test]
fn config_error_pool_partly_outside_subnet() {
    assert!(matches!(
        PoolConfig::parse("192.0.2.0/24", "192.0.2.250-192.0.3.5", "default", None),
        Err(PoolError::NotInSubnet { .. })
    ));
    assert!(matches!(
        PoolConfig::parse("192.0.2.0/25", "192.0.2.0/24", "default", None),
        Err(PoolError::NotInSubnet { .. })
    ));
}

#[test]
fn config_error_v6_pool_in_v4_list() {
    assert_eq!(
        err_text(PoolConfig::parse("2001:db8::/64", "2001:db8::/64", "default", Some(Family::V4))),
        "2001:db8::/64 is an IPv6 pool in an IPv4 list"
    );
}

#[test]
fn config_error_v4_pool_in_v6_list() {
    assert_eq!(
        PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "default", Some(Family::V6)),
        Err(PoolError::WrongList { pool: "192.0.2.0/28".into(), family: Family::V4, list: Family::V6 })
    );
}

#[test]
fn config_error_pool_and_subnet_families_differ() {
    assert_eq!(
        err_text(PoolConfig::parse("192.0.2.0/24", "2001:db8::/64", "default", None)),
        "pool 2001:db8::/64 is IPv6 but subnet 192.0.2.0/24 is IPv4"
    );
}

#[test]
fn config_error_aggregation_out_of_range() {
    assert_eq!(
        err_text(PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "/33", None)),
        "aggregation /33 is out of range for IPv4 (/0–/32)"
    );
    // /64 is fine for IPv6 and too long for IPv4: the pool's family decides.
    assert!(PoolConfig::parse("2001:db8::/64", "2001:db8::/120", "/64", None).is_ok());
    assert!(PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "/64", None).is_err());
}

#[test]
fn config_error_bad_aggregation() {
    assert!(matches!(
        PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "all", None),
        Err(PoolError::BadAggregation { .. })
    ));
}

// === Pool: allocation order ===

#[test]
fn pool_allocates_network_address_first() {
    // PureLB's seed allocates 172.31.1.0 from 172.31.1.0/24.
    let mut p = make_pool("172.31.1.0/24", "172.31.1.0/24");
    assert_eq!(p.allocate_lowest(), Some(ip("172.31.1.0")));
}

#[test]
fn pool_allocates_in_ascending_order() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.200-192.0.2.220");
    for last_octet in 200..=220 {
        assert_eq!(p.allocate_lowest(), Some(ip(&format!("192.0.2.{last_octet}"))));
    }
}

#[test]
fn pool_allocates_broadcast_address_last() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/24");
    let all: Vec<_> = std::iter::from_fn(|| p.allocate_lowest()).collect();
    assert_eq!(all.len(), 256);
    assert_eq!(all.last(), Some(&ip("192.0.2.255")));
}

#[test]
fn pool_exhaustion_returns_none() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.1-192.0.2.2");
    assert!(p.allocate_lowest().is_some());
    assert!(p.allocate_lowest().is_some());
    assert_eq!(p.allocate_lowest(), None);
    assert_eq!(p.lowest_free(), None);
    assert_eq!(p.available(), 0);
    assert_eq!(p.free_intervals(), 0);
}

#[test]
fn pool_lowest_free_peeks_without_taking() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.8/29");
    assert_eq!(p.lowest_free(), Some(ip("192.0.2.8")));
    assert_eq!(p.lowest_free(), Some(ip("192.0.2.8")));
    assert_eq!(p.in_use(), 0);
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.8")));
    assert_eq!(p.lowest_free(), Some(ip("192.0.2.9")));
}

#[test]
fn pool_allocate_skips_reserved_address() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/29");
    p.reserve(ip("192.0.2.1")).unwrap();
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.0")));
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.2")));
}

#[test]
fn pool_allocate_skips_reserved_run() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/29");
    for a in ["192.0.2.0", "192.0.2.1", "192.0.2.2", "192.0.2.4"] {
        p.reserve(ip(a)).unwrap();
    }
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.3")));
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.5")));
}

// === Pool: reserve ===

#[test]
fn pool_reserve_marks_in_use() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    assert!(p.is_free(ip("192.0.2.7")));
    p.reserve(ip("192.0.2.7")).unwrap();
    assert!(!p.is_free(ip("192.0.2.7")));
    assert_eq!(p.in_use(), 1);
    assert_eq!(p.available(), 15);
}

#[test]
fn pool_reserve_splits_into_two_holes() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.7")).unwrap();
    let free: Vec<String> = p.free_ranges().map(|r| r.to_string()).collect();
    assert_eq!(free, ["192.0.2.0-192.0.2.6", "192.0.2.8/29"]);
}

#[test]
fn pool_reserve_at_either_end() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.0")).unwrap();
    p.reserve(ip("192.0.2.15")).unwrap();
    assert_eq!(p.free_intervals(), 1);
    assert_eq!(p.lowest_free(), Some(ip("192.0.2.1")));
}

#[test]
fn pool_reserve_twice_is_in_use() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.3")).unwrap();
    assert_eq!(p.reserve(ip("192.0.2.3")), Err(PoolError::InUse { ip: ip("192.0.2.3") }));
    assert_eq!(err_text(p.reserve(ip("192.0.2.3"))), "address 192.0.2.3 is already in use");
    assert_eq!(p.in_use(), 1);
}

#[test]
fn pool_reserve_after_allocate_is_in_use() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    let a = p.allocate_lowest().unwrap();
    assert!(matches!(p.reserve(a), Err(PoolError::InUse { .. })));
}

#[test]
fn pool_reserve_outside_is_out_of_range() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.200-192.0.2.220");
    assert_eq!(
        p.reserve(ip("192.0.2.199")),
        Err(PoolError::OutOfRange { ip: ip("192.0.2.199"), range: range("192.0.2.200-192.0.2.220") })
    );
    assert_eq!(
        err_text(p.reserve(ip("192.0.2.221"))),
        "address 192.0.2.221 is not in pool 192.0.2.200-192.0.2.220"
    );
    assert!(matches!(p.reserve(ip("2001:db8::1")), Err(PoolError::OutOfRange { .. })));
    assert_eq!(p.in_use(), 0);
}

// === Pool: release ===

#[test]
fn pool_release_merges_both_sides() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.5")).unwrap();
    assert_eq!(p.free_intervals(), 2);
    assert!(p.release(ip("192.0.2.5")));
    assert_eq!(p.free_intervals(), 1);
    assert_eq!(p.free_ranges().collect::<Vec<_>>(), [range("192.0.2.0/28")]);
}

#[test]
fn pool_release_merges_with_free_below() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.5")).unwrap();
    p.reserve(ip("192.0.2.6")).unwrap();
    assert!(p.release(ip("192.0.2.5")));
    let free: Vec<String> = p.free_ranges().map(|r| r.to_string()).collect();
    assert_eq!(free, ["192.0.2.0-192.0.2.5", "192.0.2.7-192.0.2.15"]);
}

#[test]
fn pool_release_merges_with_free_above() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.5")).unwrap();
    p.reserve(ip("192.0.2.6")).unwrap();
    assert!(p.release(ip("192.0.2.6")));
    let free: Vec<String> = p.free_ranges().map(|r| r.to_string()).collect();
    assert_eq!(free, ["192.0.2.0-192.0.2.4", "192.0.2.6-192.0.2.15"]);
}

#[test]
fn pool_release_with_no_free_neighbour() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    for _ in 0..16 {
        p.allocate_lowest().unwrap();
    }
    assert!(p.release(ip("192.0.2.5")));
    assert_eq!(p.free_ranges().collect::<Vec<_>>(), [range("192.0.2.5/32")]);
    assert!(p.release(ip("192.0.2.7")));
    assert_eq!(p.free_intervals(), 2);
    assert!(p.release(ip("192.0.2.6")));
    assert_eq!(p.free_ranges().collect::<Vec<_>>(), [range("192.0.2.5-192.0.2.7")]);
}

#[test]
fn pool_release_at_pool_edges() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    p.reserve(ip("192.0.2.0")).unwrap();
    p.reserve(ip("192.0.2.15")).unwrap();
    assert!(p.release(ip("192.0.2.0")));
    assert!(p.release(ip("192.0.2.15")));
    assert_eq!(p.free_ranges().collect::<Vec<_>>(), [range("192.0.2.0/28")]);
}

#[test]
fn pool_release_at_ends_of_address_space() {
    let mut v4 = make_pool("0.0.0.0/0", "0.0.0.0/0");
    v4.reserve(ip("0.0.0.0")).unwrap();
    v4.reserve(ip("255.255.255.255")).unwrap();
    assert!(v4.release(ip("0.0.0.0")));
    assert!(v4.release(ip("255.255.255.255")));
    assert_eq!(v4.free_intervals(), 1);

    let top = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let mut v6 = make_pool("::/0", "::/0");
    v6.reserve(ip("::")).unwrap();
    v6.reserve(ip(top)).unwrap();
    assert!(v6.release(ip(top)));
    assert!(v6.release(ip("::")));
    assert_eq!(v6.free_ranges().collect::<Vec<_>>(), [range("::/0")]);
}

#[test]
fn pool_release_free_address_is_false() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    assert!(!p.release(ip("192.0.2.3")));
    p.reserve(ip("192.0.2.3")).unwrap();
    assert!(p.release(ip("192.0.2.3")));
    assert!(!p.release(ip("192.0.2.3")));
    assert_eq!(p.in_use(), 0);
}

#[test]
fn pool_release_outside_is_false() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    assert!(!p.release(ip("192.0.2.16")));
    assert!(!p.release(ip("::1")));
    assert_eq!(p.in_use(), 0);
}

#[test]
fn pool_released_address_is_allocated_again_first() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.0/28");
    for _ in 0..5 {
        p.allocate_lowest().unwrap();
    }
    assert!(p.release(ip("192.0.2.2")));
    assert_eq!(p.lowest_free(), Some(ip("192.0.2.2")));
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.2")));
    assert_eq!(p.allocate_lowest(), Some(ip("192.0.2.5")));
}

// === Pool: sizes and IPv6 ===

#[test]
fn pool_counts() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.200-192.0.2.220");
    assert_eq!((p.size(), p.in_use(), p.available()), (21, 0, 21));
    p.allocate_lowest().unwrap();
    p.reserve(ip("192.0.2.210")).unwrap();
    assert_eq!((p.size(), p.in_use(), p.available()), (21, 2, 19));
    p.release(ip("192.0.2.210"));
    assert_eq!((p.size(), p.in_use(), p.available()), (21, 1, 20));
}

#[test]
fn pool_contains_and_is_free() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.200-192.0.2.220");
    assert!(p.contains(ip("192.0.2.200")));
    assert!(!p.contains(ip("192.0.2.100")));
    assert!(!p.is_free(ip("192.0.2.100")));
    p.reserve(ip("192.0.2.200")).unwrap();
    assert!(p.contains(ip("192.0.2.200")));
    assert!(!p.is_free(ip("192.0.2.200")));
}

#[test]
fn pool_v6_64() {
    let mut p = make_pool("2001:db8:100::/64", "2001:db8:100::/64");
    assert_eq!(p.size(), 1 << 64);
    assert_eq!(p.family(), Family::V6);
    assert_eq!(p.allocate_lowest(), Some(ip("2001:db8:100::")));
    assert_eq!(p.allocate_lowest(), Some(ip("2001:db8:100::1")));
    p.reserve(ip("2001:db8:100::2")).unwrap();
    p.reserve(ip("2001:db8:100:0:ffff:ffff:ffff:ffff")).unwrap();
    assert_eq!(p.allocate_lowest(), Some(ip("2001:db8:100::3")));
    assert_eq!(p.in_use(), 5);
    assert_eq!(p.available(), (1 << 64) - 5);
    assert!(matches!(p.reserve(ip("2001:db8:101::")), Err(PoolError::OutOfRange { .. })));
    assert_eq!(p.free_intervals(), 1);
}

#[test]
fn pool_v6_range() {
    let mut p = make_pool("2001:db8::/64", "2001:db8::1 - 2001:db8::ff");
    assert_eq!(p.size(), 255);
    assert_eq!(p.allocate_lowest(), Some(ip("2001:db8::1")));
}

#[test]
fn pool_whole_v6_space_saturates() {
    let mut p = make_pool("::/0", "::/0");
    assert_eq!(p.size(), u128::MAX);
    assert_eq!(p.available(), u128::MAX);
    assert_eq!(p.allocate_lowest(), Some(ip("::")));
    assert_eq!(p.in_use(), 1);
    assert_eq!(p.available(), u128::MAX - 1);
}

#[test]
fn pool_config_is_kept() {
    let c = PoolConfig::parse("192.0.2.0/24", "192.0.2.0/28", "/32", None).unwrap();
    assert_eq!(Pool::new(c.clone()).config(), &c);
}

// === Pool against a naive model ===

/// A small deterministic generator (xorshift64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn pool_matches_naive_model() {
    let mut p = make_pool("192.0.2.0/24", "192.0.2.64/26");
    let mut used = BTreeSet::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        // Offsets reach a little outside the pool on both sides.
        let v = 60 + (rng.next() % 72) as u8;
        let a = ip(&format!("192.0.2.{v}"));
        let inside = (64..128).contains(&v);
        match rng.next() % 4 {
            0 => {
                let lowest = (64..128u8).find(|x| !used.contains(x));
                let got = p.allocate_lowest();
                assert_eq!(got, lowest.map(|x| ip(&format!("192.0.2.{x}"))));
                if let Some(x) = lowest {
                    used.insert(x);
                }
            }
            1 => {
                let expected = if !inside {
                    Err(PoolError::OutOfRange { ip: a, range: p.config().range })
                } else if used.contains(&v) {
                    Err(PoolError::InUse { ip: a })
                } else {
                    Ok(())
                };
                assert_eq!(p.reserve(a), expected);
                if inside {
                    used.insert(v);
                }
            }
            _ => assert_eq!(p.release(a), used.remove(&v)),
        }
        assert_eq!(p.in_use(), used.len() as u128);
        assert_eq!(p.is_free(a), inside && !used.contains(&v));
        assert_eq!(
            p.lowest_free(),
            (64..128u8).find(|x| !used.contains(x)).map(|x| ip(&format!("192.0.2.{x}")))
        );
        // Intervals stay maximal: one per run of free addresses.
        let runs = (64..128u8).filter(|x| !used.contains(x) && (*x == 64 || used.contains(&(x - 1)))).count();
        assert_eq!(p.free_intervals(), runs);
    }
}

#[test]
fn subnets_overlap_when_one_holds_the_other() {
    let s = |t: &str| Subnet::parse(t).unwrap();
    assert!(s("192.0.2.0/24").overlaps(&s("192.0.2.201/32")));
    assert!(s("192.0.2.201/32").overlaps(&s("192.0.2.0/24")));
    assert!(s("192.0.2.0/24").overlaps(&s("192.0.2.0/24")));
    assert!(!s("192.0.2.0/25").overlaps(&s("192.0.2.128/25")));
    assert!(!s("192.0.2.0/24").overlaps(&s("2001:db8::/32")));
    assert!(s("2001:db8::/32").overlaps(&s("2001:db8:0:1::/64")));
}

// === regressions: pool texts the API server's CEL rules refuse (found by lab/tests/crds_property.rs) ===

#[test]
fn regression_pool_texts_are_read_as_the_crd_rules_read_them() {
    for (subnet, pool, aggregation) in [
        ("2001:db8::/064", "2001:db8::100/120", "default"),
        ("192.0.2.0/24", "192.0.2.0/28", "/032"),
        ("2001:db8::/64", "2001:DB8::A-2001:db8::b", "default "),
        ("64:ff9b::/96", "64:ff9b::192.0.2.1-64:ff9b::192.0.2.9", "/128"),
        ("::ffff:192.0.2.0/120", "::ffff:192.0.2.0/124", "default"),
        ("192.0.2.0/24 ", "192.0.2.7-192.0.2.7", "default"),
        ("192.0.2.5/24", "192.0.2.0/28 ", "/24"),
        ("192.0.2.0/ 24", "192.0.2.0/28", "default"),
    ] {
        assert!(
            PoolConfig::parse(subnet, pool, aggregation, None).is_err(),
            "{subnet:?} {pool:?} {aggregation:?}"
        );
    }
    // What the rules accept still parses: blanks around the ends of a range, a dotted IPv6 CIDR.
    PoolConfig::parse("192.0.2.0/24", " 192.0.2.1 - 192.0.2.9", "default", None).unwrap();
    PoolConfig::parse("64:ff9b::/96", "64:ff9b::192.0.2.0/120", "/0", None).unwrap();
}
