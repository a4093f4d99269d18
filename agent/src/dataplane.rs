//! The announcer's data-plane seam: everything the loop asks of the node's network.
//!
//! [`DataPlane`] is what `announcer` calls: list the links (with their addresses and MACs, from which
//! the LAN interface and the connected subnets are read), list the addresses PureLB added, add and
//! remove addresses, make sure the routed-address interface exists, send gratuitous ARP / unsolicited
//! NA, and listen for other MACs announcing our local addresses. [`Netlink`] (rtnetlink plus the raw
//! sockets of `garp` and `conflict`) is the kernel's implementation; another way of announcing (a BGP
//! speaker, another kernel API) is another one. Under `#[cfg(test)]`, `fake::FakeDataPlane` keeps the
//! links in memory so the announcer's loop can be tested without a kernel.
//!
//! The safety rule holds in every implementation: an address is only ever removed when it carries
//! PureLB's tag (`LinkAddress::ours`); anything else is refused with [`NetlinkError::NotOurs`].

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::conflict::{ConflictError, Sighting};
use crate::garp::GarpError;
use crate::netlink::{LinkInfo, Netlink, NetlinkError, OwnedAddress};

/// One address to add or remove: (link index, address, prefix length).
pub type AddressTarget = (u32, IpAddr, u8);

/// Per-target results of a batch, in the batch's order; Err when the batch could not start at all.
pub type BatchResult = Result<Vec<Result<(), NetlinkError>>, NetlinkError>;

/// What the announcer needs from the node's network. See the module documentation.
pub trait DataPlane: Send + Sync + 'static {
    /// Every link with its global-scope addresses.
    fn links(&self) -> impl Future<Output = Result<Vec<LinkInfo>, NetlinkError>> + Send;
    /// The addresses PureLB added (tagged), wherever they are.
    fn owned(&self) -> impl Future<Output = Result<Vec<OwnedAddress>, NetlinkError>> + Send;
    /// The index of the routed-address interface `name`, created when missing.
    fn ensure_extlb(&self, name: &str) -> impl Future<Output = Result<u32, NetlinkError>> + Send;
    /// Adds (and tags) each target; one already there and ours is success, one there and not ours fails.
    fn add_many(&self, targets: &[AddressTarget]) -> impl Future<Output = BatchResult> + Send;
    /// Removes each target; one that is not ours is refused and left alone.
    fn delete_many(&self, targets: &[AddressTarget]) -> impl Future<Output = BatchResult> + Send;
    /// Tells the LAN on `interface` that `mac` now answers for `ip` (`count` packets, `interval` apart).
    fn announce(
        &self,
        interface: String,
        mac: [u8; 6],
        ip: IpAddr,
        count: u32,
        interval: Duration,
    ) -> BoxFuture<'static, Result<(), GarpError>>;
    /// Sightings on `interface` of addresses claimed by MACs other than `own_mac`.
    fn listen(
        &self,
        interface: &str,
        own_mac: [u8; 6],
    ) -> Result<BoxStream<'static, Sighting>, ConflictError>;
}

// === impl DataPlane for Netlink ===

impl DataPlane for Netlink {
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        Netlink::links(self).await
    }

    async fn owned(&self) -> Result<Vec<OwnedAddress>, NetlinkError> {
        Netlink::owned(self).await
    }

    async fn ensure_extlb(&self, name: &str) -> Result<u32, NetlinkError> {
        Netlink::ensure_extlb(self, name).await
    }

    async fn add_many(&self, targets: &[AddressTarget]) -> BatchResult {
        Netlink::add_many(self, targets).await
    }

    async fn delete_many(&self, targets: &[AddressTarget]) -> BatchResult {
        Netlink::delete_many(self, targets).await
    }

    fn announce(
        &self,
        interface: String,
        mac: [u8; 6],
        ip: IpAddr,
        count: u32,
        interval: Duration,
    ) -> BoxFuture<'static, Result<(), GarpError>> {
        Box::pin(async move { crate::garp::announce(&interface, mac, ip, count, interval).await })
    }

    fn listen(
        &self,
        interface: &str,
        own_mac: [u8; 6],
    ) -> Result<BoxStream<'static, Sighting>, ConflictError> {
        crate::conflict::listen(interface, own_mac).map(StreamExt::boxed)
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
