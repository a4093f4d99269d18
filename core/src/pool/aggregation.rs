//! [`Aggregation`]: the prefix length a non-local address is announced with on `kube-lb0`,
//! `default` (the subnet's own prefix) or an explicit `/NN`.

use std::fmt;

use super::subnet::{PrefixError, parse_prefix};
use super::{Family, PoolError, Subnet};

/// A pool's aggregation: `default` or `/NN` (`/0`–`/32` for IPv4, `/0`–`/128` for IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregation {
    Default,
    Prefix(u8),
}

// === impl Aggregation ===

impl Aggregation {
    /// Parses `default` or `/NN`, checking the prefix length against `family`.
    pub fn parse(s: &str, family: Family) -> Result<Self, PoolError> {
        let input = s.trim();
        if input.is_empty() {
            return Err(PoolError::Empty { what: "aggregation" });
        }
        if input == "default" {
            return Ok(Aggregation::Default);
        }
        let Some(digits) = input.strip_prefix('/') else {
            return Err(PoolError::BadAggregation { input: input.to_string() });
        };
        let out_of_range = || PoolError::AggregationOutOfRange { input: input.to_string(), family };
        match parse_prefix(digits) {
            Ok(prefix) if prefix <= family.max_prefix() => Ok(Aggregation::Prefix(prefix)),
            Ok(_) | Err(PrefixError::TooLong) => Err(out_of_range()),
            Err(PrefixError::NotNumber) => Err(PoolError::BadAggregation { input: input.to_string() }),
            Err(PrefixError::LeadingZero) => Err(PoolError::PrefixLeadingZero {
                what: "aggregation",
                input: input.to_string(),
                prefix: digits.to_string(),
            }),
        }
    }

    /// The prefix length to announce with: the subnet's own for `default`.
    pub fn prefix_len(&self, subnet: &Subnet) -> u8 {
        match self {
            Aggregation::Default => subnet.prefix_len(),
            Aggregation::Prefix(prefix) => *prefix,
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Default => f.write_str("default"),
            Aggregation::Prefix(prefix) => write!(f, "/{prefix}"),
        }
    }
}
