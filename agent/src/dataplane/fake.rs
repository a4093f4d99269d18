//! An in-memory [`DataPlane`] for unit tests: links with addresses (tagged ours or not), the
//! announcements sent, and the same refusals as the kernel implementation (never remove or take over
//! an address PureLB did not add).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::{AddressTarget, BatchResult, DataPlane};
use crate::conflict::{ConflictError, Sighting};
use crate::garp::GarpError;
use crate::netlink::{LinkAddress, LinkInfo, NetlinkError, OwnedAddress};

/// The node's network as the fake holds it; cheap to clone (clones share it).
#[derive(Clone, Default)]
pub struct FakeDataPlane {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    links: Vec<LinkInfo>,
    announced: Vec<(String, IpAddr)>,
}

impl FakeDataPlane {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a link `name` with `mac` and the node's own (untagged) addresses.
    pub fn with_link(self, name: &str, mac: Option<[u8; 6]>, addresses: &[(IpAddr, u8)]) -> Self {
        {
            let mut s = self.state();
            let index = u32::try_from(s.links.len()).unwrap_or(u32::MAX) + 1;
            s.links.push(LinkInfo {
                index,
                name: name.to_string(),
                mac,
                up: true,
                addresses: addresses
                    .iter()
                    .map(|(address, prefix_len)| LinkAddress {
                        address: *address,
                        prefix_len: *prefix_len,
                        ours: false,
                    })
                    .collect(),
            });
        }
        self
    }

    /// Puts `ip/prefix_len` on `link` as if added by someone (`ours`: by PureLB, e.g. a killed agent).
    pub fn put(&self, link: &str, ip: IpAddr, prefix_len: u8, ours: bool) {
        if let Some(l) = self.state().links.iter_mut().find(|l| l.name == link) {
            l.addresses.push(LinkAddress { address: ip, prefix_len, ours });
        }
    }

    /// Removes `ip` from every link, as someone else would.
    pub fn take_away(&self, ip: IpAddr) {
        for l in &mut self.state().links {
            l.addresses.retain(|a| a.address != ip);
        }
    }

    /// The addresses on `link`: (address, prefix length, ours).
    pub fn addresses(&self, link: &str) -> Vec<(IpAddr, u8, bool)> {
        self.state()
            .links
            .iter()
            .filter(|l| l.name == link)
            .flat_map(|l| l.addresses.iter().map(|a| (a.address, a.prefix_len, a.ours)))
            .collect()
    }

    /// Whether `link` exists.
    pub fn has_link(&self, link: &str) -> bool {
        self.state().links.iter().any(|l| l.name == link)
    }

    /// The GARP / NA announcements sent so far: (interface, address).
    pub fn announced(&self) -> Vec<(String, IpAddr)> {
        self.state().announced.clone()
    }
}

impl State {
    fn name_of(&self, index: u32) -> Result<String, NetlinkError> {
        self.links
            .iter()
            .find(|l| l.index == index)
            .map(|l| l.name.clone())
            .ok_or(NetlinkError::NoSuchLink { index })
    }

    fn add(&mut self, (index, address, prefix_len): AddressTarget) -> Result<(), NetlinkError> {
        if let Some(l) =
            self.links.iter().find(|l| l.addresses.iter().any(|a| a.address == address && !a.ours))
        {
            return Err(NetlinkError::NotOurs { address, interface: l.name.clone() });
        }
        let link =
            self.links.iter_mut().find(|l| l.index == index).ok_or(NetlinkError::NoSuchLink { index })?;
        link.addresses.retain(|a| a.address != address);
        link.addresses.push(LinkAddress { address, prefix_len, ours: true });
        Ok(())
    }

    fn delete(&mut self, (index, address, prefix_len): AddressTarget) -> Result<(), NetlinkError> {
        let interface = self.name_of(index)?;
        let Some(link) = self.links.iter_mut().find(|l| l.index == index) else { return Ok(()) };
        match link.addresses.iter().position(|a| a.address == address && a.prefix_len == prefix_len) {
            Some(i) if link.addresses[i].ours => {
                link.addresses.remove(i);
                Ok(())
            }
            Some(_) => Err(NetlinkError::NotOurs { address, interface }),
            None if link.addresses.iter().any(|a| a.address == address && !a.ours) => {
                Err(NetlinkError::NotOurs { address, interface })
            }
            None => Ok(()),
        }
    }
}

impl DataPlane for FakeDataPlane {
    async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        Ok(self.state().links.clone())
    }

    async fn owned(&self) -> Result<Vec<OwnedAddress>, NetlinkError> {
        Ok(self
            .state()
            .links
            .iter()
            .flat_map(|l| {
                l.addresses.iter().filter(|a| a.ours).map(|a| OwnedAddress {
                    index: l.index,
                    interface: l.name.clone(),
                    address: a.address,
                    prefix_len: a.prefix_len,
                })
            })
            .collect())
    }

    async fn ensure_extlb(&self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(l) = self.state().links.iter().find(|l| l.name == name) {
            return Ok(l.index);
        }
        let fake = self.clone().with_link(name, None, &[]);
        let s = fake.state();
        Ok(s.links.iter().find(|l| l.name == name).map_or(0, |l| l.index))
    }

    async fn add_many(&self, targets: &[AddressTarget]) -> BatchResult {
        let mut s = self.state();
        Ok(targets.iter().map(|t| s.add(*t)).collect())
    }

    async fn delete_many(&self, targets: &[AddressTarget]) -> BatchResult {
        let mut s = self.state();
        Ok(targets.iter().map(|t| s.delete(*t)).collect())
    }

    fn announce(
        &self,
        interface: String,
        _mac: [u8; 6],
        ip: IpAddr,
        _count: u32,
        _interval: Duration,
    ) -> BoxFuture<'static, Result<(), GarpError>> {
        self.state().announced.push((interface, ip));
        Box::pin(async { Ok(()) })
    }

    fn listen(
        &self,
        _interface: &str,
        _own_mac: [u8; 6],
    ) -> Result<BoxStream<'static, Sighting>, ConflictError> {
        Ok(Box::pin(futures::stream::pending()))
    }
}
