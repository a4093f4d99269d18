//! [`Subnet`]: a CIDR with its host bits masked, and the CIDR parser that pools share with it.

use std::fmt;
use std::net::IpAddr;

use super::{AddressRange, Family, PoolError, ip_to_u128, u128_to_ip};

/// A network address and prefix length, e.g. `192.0.2.0/24`. The host bits are always zero:
/// `192.0.2.5/24` parses as `192.0.2.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

// === impl Subnet ===

impl Subnet {
    /// Parses `address/prefix`, masking the host bits.
    pub fn parse(s: &str) -> Result<Subnet, PoolError> {
        parse_cidr(s, "subnet")
    }

    /// The subnet of `prefix` bits that holds `ip`, or `None` when `prefix` is longer than the address.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Subnet> {
        let family = Family::of(ip);
        if prefix > family.max_prefix() {
            return None;
        }
        let network = u128_to_ip(ip_to_u128(ip) & !family.host_mask(prefix), family);
        Some(Subnet { network, prefix })
    }

    pub fn family(&self) -> Family {
        Family::of(self.network)
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// The network address (the lowest address, host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The highest address of the subnet (the broadcast address for IPv4).
    pub fn last(&self) -> IpAddr {
        u128_to_ip(ip_to_u128(self.network) | self.host_mask(), self.family())
    }

    /// Every address of the subnet as a range.
    pub fn range(&self) -> AddressRange {
        AddressRange::from(*self)
    }

    /// Whether `ip` is in the subnet; an address of the other family never is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family() && ip_to_u128(ip) & !self.host_mask() == ip_to_u128(self.network)
    }

    /// Whether every address of `r` is in the subnet.
    pub fn contains_range(&self, r: &AddressRange) -> bool {
        self.contains(r.first()) && self.contains(r.last())
    }

    /// Whether the two subnets share an address (one holds the other, since both are prefixes).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.family() == other.family() && (self.contains(other.network) || other.contains(self.network))
    }

    fn host_mask(&self) -> u128 {
        self.family().host_mask(self.prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Parses `address/prefix` as a subnet; `what` ("subnet", "pool") names the field in errors.
pub(super) fn parse_cidr(s: &str, what: &'static str) -> Result<Subnet, PoolError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(PoolError::Empty { what });
    }
    let Some((addr, prefix)) = input.split_once('/') else {
        return Err(PoolError::NotCidr { what, input: input.to_string() });
    };
    let ip = parse_ip(addr, what, input)?;
    let family = Family::of(ip);
    let prefix_text = prefix.trim();
    let prefix = parse_prefix(prefix_text).map_err(|e| match e {
        PrefixError::NotNumber => {
            PoolError::BadPrefix { what, input: input.to_string(), prefix: prefix_text.to_string() }
        }
        PrefixError::LeadingZero => {
            PoolError::PrefixLeadingZero { what, input: input.to_string(), prefix: prefix_text.to_string() }
        }
        PrefixError::TooLong => out_of_range(what, input, prefix_text, family),
    })?;
    Subnet::new(ip, prefix).ok_or_else(|| out_of_range(what, input, prefix_text, family))
}

fn out_of_range(what: &'static str, input: &str, prefix: &str, family: Family) -> PoolError {
    PoolError::PrefixOutOfRange { what, input: input.to_string(), prefix: prefix.to_string(), family }
}

/// Parses one address (surrounding spaces allowed); `input` is the whole field, for the message. An
/// IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is refused, as the API server's `isIP`/`isCIDR` do: it
/// is an IPv4 address in disguise.
pub(super) fn parse_ip(addr: &str, what: &'static str, input: &str) -> Result<IpAddr, PoolError> {
    let ip: IpAddr = addr.trim().parse().map_err(|_| PoolError::BadAddress {
        what,
        input: input.to_string(),
        address: addr.trim().to_string(),
    })?;
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(PoolError::Ipv4Mapped { what, input: input.to_string(), address: v6, v4 });
    }
    Ok(ip)
}

pub(super) enum PrefixError {
    NotNumber,
    LeadingZero,
    TooLong,
}

/// Parses the digits of a prefix length. Only plain decimal digits count (`u8::from_str` would also
/// take `+24`), without a leading zero (`/024`: the API server's `isCIDR` and the aggregation rule
/// refuse it); a number too large for `u8` is reported as too long, not as "not a number".
pub(super) fn parse_prefix(digits: &str) -> Result<u8, PrefixError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PrefixError::NotNumber);
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(PrefixError::LeadingZero);
    }
    digits.parse().map_err(|_| PrefixError::TooLong)
}
