//! [`PoolError`]: every way parsing a pool or using one can fail. Each message names the offending
//! input and the rule it broke, so it can go straight into an event or a `validate` report.

use std::net::IpAddr;

use super::{AddressRange, Family};

/// Why a subnet, pool or aggregation was refused, or why an address could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// A field was empty or only spaces.
    #[error("the {what} is empty")]
    Empty { what: &'static str },

    /// A subnet without a `/prefix`.
    #[error("{what} {input} is not a CIDR (expected address/prefix, e.g. 192.0.2.0/24 or 2001:db8::/64)")]
    NotCidr { what: &'static str, input: String },

    /// A pool that is one bare address, neither a CIDR nor a range.
    #[error(
        "pool {input} is a single address, not a CIDR or a first-last range \
         (write {input}/{} for a one-address pool)",
        family.max_prefix()
    )]
    SingleAddress { input: String, family: Family },

    /// Something that should be an IP address is not one.
    #[error("{what} {input}: `{address}` is not an IPv4 or IPv6 address")]
    BadAddress { what: &'static str, input: String, address: String },

    /// The text after `/` is not a number.
    #[error("{what} {input}: the prefix length `/{prefix}` is not a number")]
    BadPrefix { what: &'static str, input: String, prefix: String },

    /// The prefix length has a leading zero (`/024`).
    #[error("{what} {input}: the prefix length `/{prefix}` has a leading zero; write it without")]
    PrefixLeadingZero { what: &'static str, input: String, prefix: String },

    /// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`).
    #[error(
        "{what} {input}: `{address}` is an IPv4-mapped IPv6 address; write the IPv4 address {v4} instead"
    )]
    Ipv4Mapped { what: &'static str, input: String, address: std::net::Ipv6Addr, v4: std::net::Ipv4Addr },

    /// An IPv6 range written with a dotted IPv4 tail.
    #[error("pool {input}: write the addresses of an IPv6 range in hex groups, without a dotted IPv4 tail")]
    DottedIpv6Range { input: String },

    /// Blanks around (or inside) a subnet, a CIDR pool or an aggregation.
    #[error(
        "{what} {input:?} has blanks in it; write it without (only the two addresses of a range may have blanks around them)"
    )]
    Blanks { what: &'static str, input: String },

    /// The prefix length is longer than the address.
    #[error("{what} {input}: prefix /{prefix} is out of range for {family} (/0–/{})", family.max_prefix())]
    PrefixOutOfRange { what: &'static str, input: String, prefix: String, family: Family },

    /// The two ends of a range are of different families.
    #[error("pool {input}: the first address is {first} and the last is {last}; both must be of one family")]
    MixedFamilies { input: String, first: Family, last: Family },

    /// A range whose first address is above its last.
    #[error("pool {input}: the first address is above the last")]
    Reversed { input: String },

    /// A pool listed under the other family (`v4pools` holding an IPv6 pool, or the reverse).
    #[error("{pool} is an {family} pool in an {list} list")]
    WrongList { pool: String, family: Family, list: Family },

    /// A pool of one family in a subnet of the other.
    #[error("pool {pool} is {pool_family} but subnet {subnet} is {subnet_family}")]
    FamilyMismatch { pool: String, pool_family: Family, subnet: String, subnet_family: Family },

    /// A pool that reaches outside its subnet.
    #[error("pool {pool} is not inside subnet {subnet}")]
    NotInSubnet { pool: String, subnet: String },

    /// An aggregation that is neither `default` nor `/NN`.
    #[error("aggregation `{input}` is not `default` or a prefix length such as /24 or /64")]
    BadAggregation { input: String },

    /// An aggregation prefix longer than the family's addresses.
    #[error("aggregation {input} is out of range for {family} (/0–/{})", family.max_prefix())]
    AggregationOutOfRange { input: String, family: Family },

    /// An address that is not in the pool it was asked of.
    #[error("address {ip} is not in pool {range}")]
    OutOfRange { ip: IpAddr, range: AddressRange },

    /// An address that is already allocated.
    #[error("address {ip} is already in use")]
    InUse { ip: IpAddr },
}
