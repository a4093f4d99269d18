//! Address pools: the addresses a ServiceGroup hands out, and which of them are taken.
//!
//! - [`Family`], [`ip_to_u128`], [`u128_to_ip`]: IPv4/IPv6 and the one integer space both live in.
//! - [`Subnet`]: a CIDR (`192.0.2.0/24`), host bits masked.
//! - [`AddressRange`]: an inclusive range of one family, written as a CIDR or `first-last`.
//! - [`Aggregation`]: `default` or `/NN`, the mask a non-local address is announced with.
//! - [`PoolConfig`]: one `{subnet, pool, aggregation}` entry of a ServiceGroup, validated.
//! - [`Pool`]: a config plus its free space, with O(log n) allocate, reserve and release.
//! - [`PoolError`]: every way the above can fail, each message naming the input and the rule.
//!
//! Every address of a pool is allocatable, network and broadcast addresses included, as in PureLB.

mod aggregation;
mod allocator;
mod config;
mod error;
mod family;
mod free_space;
mod range;
mod subnet;

#[cfg(test)]
mod tests;

pub use self::aggregation::Aggregation;
pub use self::allocator::Pool;
pub use self::config::PoolConfig;
pub use self::error::PoolError;
pub use self::family::{Family, ip_to_u128, u128_to_ip};
pub use self::range::AddressRange;
pub use self::subnet::Subnet;
