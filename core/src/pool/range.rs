//! [`AddressRange`]: an inclusive range of addresses of one family, written as a CIDR
//! (`192.0.2.0/28`) or as `first-last` (`192.0.2.200-192.0.2.220`).

use std::fmt;
use std::net::IpAddr;

use super::subnet::{parse_cidr, parse_ip};
use super::{Family, PoolError, Subnet, ip_to_u128, u128_to_ip};

/// The addresses from `first` to `last`, both included; both of one family and `first <= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressRange {
    first: IpAddr,
    last: IpAddr,
}

// === impl AddressRange ===

impl AddressRange {
    /// Parses a pool: a CIDR (`192.0.2.0/28`, host bits masked) or `first-last`, where spaces around
    /// either end are ignored (`2001:db8::1 - 2001:db8::ff`).
    pub fn parse(s: &str) -> Result<Self, PoolError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(PoolError::Empty { what: "pool" });
        }
        // No IPv4 or IPv6 address contains a '-', so the first one separates the two ends.
        if let Some((first, last)) = input.split_once('-') {
            let first = parse_ip(first, "pool", input)?;
            let last = parse_ip(last, "pool", input)?;
            let range = Self::checked(first, last, input)?;
            // The API server orders an IPv6 range by its hex groups and so refuses a dotted IPv4 tail.
            if range.family() == Family::V6 && input.contains('.') {
                return Err(PoolError::DottedIpv6Range { input: input.to_string() });
            }
            return Ok(range);
        }
        if input.contains('/') {
            return parse_cidr(input, "pool").map(AddressRange::from);
        }
        let ip = parse_ip(input, "pool", input)?;
        Err(PoolError::SingleAddress { input: input.to_string(), family: Family::of(ip) })
    }

    /// The range `first..=last`; refused when the ends differ in family or `first > last`.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, PoolError> {
        Self::checked(first, last, &format!("{first}-{last}"))
    }

    fn checked(first: IpAddr, last: IpAddr, input: &str) -> Result<Self, PoolError> {
        let (first_family, last_family) = (Family::of(first), Family::of(last));
        if first_family != last_family {
            return Err(PoolError::MixedFamilies {
                input: input.to_string(),
                first: first_family,
                last: last_family,
            });
        }
        if ip_to_u128(first) > ip_to_u128(last) {
            return Err(PoolError::Reversed { input: input.to_string() });
        }
        Ok(AddressRange { first, last })
    }

    pub fn first(&self) -> IpAddr {
        self.first
    }

    pub fn last(&self) -> IpAddr {
        self.last
    }

    pub fn family(&self) -> Family {
        Family::of(self.first)
    }

    /// Whether `ip` is in the range; an address of the other family never is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family() && (self.start()..=self.end()).contains(&ip_to_u128(ip))
    }

    /// The number of addresses, saturating at `u128::MAX` (`::/0` holds one more than that).
    pub fn size(&self) -> u128 {
        (self.end() - self.start()).saturating_add(1)
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, o: &AddressRange) -> bool {
        self.family() == o.family() && self.start() <= o.end() && o.start() <= self.end()
    }

    /// The subnet this range is exactly, if it is one (aligned, and a power of two in size).
    pub fn as_subnet(&self) -> Option<Subnet> {
        let span = self.end() - self.start();
        let is_cidr = span & span.wrapping_add(1) == 0 && self.start() & span == 0;
        if !is_cidr {
            return None;
        }
        let host_bits = u8::try_from(span.count_ones()).ok()?;
        Subnet::new(self.first, self.family().max_prefix().checked_sub(host_bits)?)
    }

    /// The first address as an integer.
    pub(crate) fn start(&self) -> u128 {
        ip_to_u128(self.first)
    }

    /// The last address as an integer.
    pub(crate) fn end(&self) -> u128 {
        ip_to_u128(self.last)
    }
}

impl From<Subnet> for AddressRange {
    fn from(subnet: Subnet) -> Self {
        AddressRange { first: subnet.network(), last: subnet.last() }
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_subnet() {
            Some(subnet) => subnet.fmt(f),
            None => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

/// The address `v` of the range's family (for the allocator, which computes in integers).
pub(super) fn ip_of(range: &AddressRange, v: u128) -> IpAddr {
    u128_to_ip(v, range.family())
}
