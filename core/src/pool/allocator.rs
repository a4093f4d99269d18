//! [`Pool`]: a [`PoolConfig`] and which of its addresses are free. Allocation takes the lowest free
//! address, so the same Services get the same addresses after a restart that replays them in order.

use std::net::IpAddr;

use super::free_space::FreeSpace;
use super::range::ip_of;
use super::{AddressRange, Family, PoolConfig, PoolError, ip_to_u128};

/// A pool's configuration and its free space. All operations are O(log n) in the number of holes.
#[derive(Clone, Debug)]
pub struct Pool {
    config: PoolConfig,
    free: FreeSpace,
    // Exact, unlike a free count: ::/0 holds 2^128 addresses, one more than a u128 counts.
    in_use: u128,
}

// === impl Pool ===

impl Pool {
    /// A pool with every address of `config.range` free.
    pub fn new(config: PoolConfig) -> Pool {
        let free = FreeSpace::new(config.range.start(), config.range.end());
        Pool { config, free, in_use: 0 }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    pub fn family(&self) -> Family {
        self.config.range.family()
    }

    /// Takes the lowest free address.
    pub fn allocate_lowest(&mut self) -> Option<IpAddr> {
        let v = self.free.take_lowest()?;
        self.in_use += 1;
        Some(ip_of(&self.config.range, v))
    }

    /// The address [`Pool::allocate_lowest`] would take, without taking it.
    pub fn lowest_free(&self) -> Option<IpAddr> {
        self.free.lowest().map(|v| ip_of(&self.config.range, v))
    }

    /// Takes a given address (a Service asking for it, or the index replaying existing Services).
    pub fn reserve(&mut self, ip: IpAddr) -> Result<(), PoolError> {
        if !self.contains(ip) {
            return Err(PoolError::OutOfRange { ip, range: self.config.range });
        }
        if !self.free.take(ip_to_u128(ip)) {
            return Err(PoolError::InUse { ip });
        }
        self.in_use += 1;
        Ok(())
    }

    /// Frees an address; true if it was in use. Addresses outside the pool are never in use.
    pub fn release(&mut self, ip: IpAddr) -> bool {
        if !self.contains(ip) || !self.free.give(ip_to_u128(ip)) {
            return false;
        }
        self.in_use -= 1;
        true
    }

    /// Whether `ip` is in the pool and not in use.
    pub fn is_free(&self, ip: IpAddr) -> bool {
        self.contains(ip) && self.free.is_free(ip_to_u128(ip))
    }

    /// Whether `ip` is one of the pool's addresses, free or not.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.config.range.contains(ip)
    }

    /// The number of addresses, saturating at `u128::MAX`.
    pub fn size(&self) -> u128 {
        self.config.range.size()
    }

    /// The number of addresses in use.
    pub fn in_use(&self) -> u128 {
        self.in_use
    }

    /// The number of free addresses (saturating, like [`Pool::size`]).
    pub fn available(&self) -> u128 {
        self.size().saturating_sub(self.in_use)
    }

    /// The free addresses as ranges, lowest first (for `explain` and `status`).
    pub fn free_ranges(&self) -> impl Iterator<Item = AddressRange> + '_ {
        let range = self.config.range;
        self.free
            .iter()
            .filter_map(move |(start, end)| AddressRange::new(ip_of(&range, start), ip_of(&range, end)).ok())
    }

    /// The number of free intervals: the memory the pool uses, in entries.
    pub fn free_intervals(&self) -> usize {
        self.free.intervals()
    }
}
