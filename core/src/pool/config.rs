//! [`PoolConfig`]: one `{subnet, pool, aggregation}` entry of a ServiceGroup, parsed and checked.

use std::fmt;

use super::{AddressRange, Aggregation, Family, PoolError, Subnet};

/// A validated pool entry: `range` lies inside `subnet`, and `aggregation` fits the family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolConfig {
    pub subnet: Subnet,
    pub range: AddressRange,
    pub aggregation: Aggregation,
}

// === impl PoolConfig ===

impl PoolConfig {
    /// Parses and checks one pool entry. With `family` set (the entry came from `v4pools` or
    /// `v6pools`), a pool of the other family is refused, naming both.
    ///
    /// Checks, in order: the subnet is a CIDR; the pool is a CIDR or `first-last` range with
    /// `first <= last`; the pool is of the list's family; the pool is of the subnet's family and
    /// inside it; the aggregation is valid for the family.
    pub fn parse(
        subnet: &str,
        pool: &str,
        aggregation: &str,
        family: Option<Family>,
    ) -> Result<PoolConfig, PoolError> {
        // As the CRD's rules read them: a subnet, a CIDR pool and an aggregation exactly as written; only
        // the ends of an `a-b` range may have blanks around them.
        let is_range = pool.contains('-');
        for (what, text) in [("subnet", subnet), ("pool", pool), ("aggregation", aggregation)] {
            let blank = text.chars().any(char::is_whitespace);
            if blank && !(what == "pool" && is_range) && !text.trim().is_empty() {
                return Err(PoolError::Blanks { what, input: text.to_string() });
            }
        }
        let parsed_subnet = Subnet::parse(subnet)?;
        let range = AddressRange::parse(pool)?;
        let pool_text = pool.trim();
        if let Some(list) = family
            && range.family() != list
        {
            return Err(PoolError::WrongList { pool: pool_text.to_string(), family: range.family(), list });
        }
        if range.family() != parsed_subnet.family() {
            return Err(PoolError::FamilyMismatch {
                pool: pool_text.to_string(),
                pool_family: range.family(),
                subnet: subnet.trim().to_string(),
                subnet_family: parsed_subnet.family(),
            });
        }
        if !parsed_subnet.contains_range(&range) {
            return Err(PoolError::NotInSubnet {
                pool: pool_text.to_string(),
                subnet: subnet.trim().to_string(),
            });
        }
        let aggregation = Aggregation::parse(aggregation, range.family())?;
        Ok(PoolConfig { subnet: parsed_subnet, range, aggregation })
    }

    pub fn family(&self) -> Family {
        self.range.family()
    }
}

impl fmt::Display for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subnet {} pool {} aggregation {}", self.subnet, self.range, self.aggregation)
    }
}
