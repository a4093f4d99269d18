//! [`Family`] (IPv4 or IPv6) and the conversions between addresses and the `u128` space that pools
//! compute in: an IPv4 address is its 32-bit value, an IPv6 address its 128-bit value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

// === impl Family ===

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The longest prefix length (the address width in bits): 32 or 128.
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The highest address of the family, as a `u128`.
    pub(crate) fn max_value(self) -> u128 {
        match self {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        }
    }

    /// The host bits of a `/prefix` network of this family (`prefix` at most [`Family::max_prefix`]).
    pub(crate) fn host_mask(self, prefix: u8) -> u128 {
        let host_bits = u32::from(self.max_prefix().saturating_sub(prefix));
        // A shift by the full width would overflow, and `::/0` has all 128 bits as host bits.
        if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An address as an integer: the 32-bit value for IPv4, the 128-bit value for IPv6.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `family` whose integer value is `v`; for IPv4 only the low 32 bits are used.
pub fn u128_to_ip(v: u128, family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from((v & Family::V4.max_value()) as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}
