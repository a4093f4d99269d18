//! The agent's only access to the kernel's links and addresses (rtnetlink).
//!
//! Every address the agent adds is tagged with [`PURELB_ADDR_PROTO`] in IFA_PROTO, so a restarted agent
//! finds its own orphans with [`Netlink::owned`] and never removes or re-adds an address the node owns:
//! [`Netlink::add`] and [`Netlink::delete`] refuse to touch an address that carries no tag.
//! [`Netlink::removals`] reports addresses someone else removed, so the agent can put them back.
//!
//! IPv6 addresses are added without duplicate address detection and deprecated (preferred lifetime 0,
//! valid forever): they receive traffic as any other, but the kernel never picks one as the source of
//! what the node sends (RFC 6724 rule 3). Without that, a Service address on the LAN interface, in the
//! node's own /64, is as good a source as the node's own address, and kube-proxy's masquerade and the
//! node's own connections would leave from an address that can move to another node.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol, AddressScope,
    CacheInfo,
};
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{Handle, LinkDummy, LinkUnspec, RouteMessageBuilder};
use tokio::sync::Mutex;

/// Address requests outstanding at once in [`Netlink::add_many`] and [`Netlink::delete_many`]: enough to
/// hide the round trips, few enough that the replies fit the socket's buffer.
const IN_FLIGHT: usize = 32;

/// The kernel's addresses grouped by address (one address may be on several links).
fn by_address(listing: Vec<KernelAddress>) -> HashMap<IpAddr, Vec<KernelAddress>> {
    let mut map: HashMap<IpAddr, Vec<KernelAddress>> = HashMap::new();
    for a in listing {
        map.entry(a.address).or_default().push(a);
    }
    map
}

/// IFA_PROTO value that tags every address the agent adds.
pub const PURELB_ADDR_PROTO: u8 = 0x50;

/// A handle on one rtnetlink connection; clones share it. The connection task ends when the last clone
/// is dropped.
///
/// The kernel runs one dump (a listing of links, addresses or routes) at a time per socket and answers
/// another started meanwhile with EBUSY. The Lease renewer and the reconcile list concurrently over this
/// one connection, so every listing takes `dumps` first; other requests need no turn.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    dumps: Arc<Mutex<()>>,
}

/// A link (interface) with its global-scope addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// The link-layer address, when it is a 6-byte (Ethernet-like) one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub addresses: Vec<LinkAddress>,
}

/// One address on a link; `ours` when it carries [`PURELB_ADDR_PROTO`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub ours: bool,
}

/// An address the agent added (tagged with [`PURELB_ADDR_PROTO`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnedAddress {
    pub index: u32,
    pub interface: String,
    pub address: IpAddr,
    pub prefix_len: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error(
        "cannot open a netlink socket: {0} (the agent needs CAP_NET_ADMIN in the node's network namespace)"
    )]
    Connect(#[source] std::io::Error),
    #[error("netlink must be used from inside a tokio runtime")]
    NoRuntime,
    #[error("netlink request failed while {what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error(
        "no link with index {index}; it was removed or never existed — check the interface configuration"
    )]
    NoSuchLink { index: u32 },
    #[error(
        "{address} on {interface} was not added by PureLB (it carries no IFA_PROTO {PURELB_ADDR_PROTO:#x} tag); \
         leaving it alone — take the address out of the ServiceGroup pool or off the node"
    )]
    NotOurs { address: IpAddr, interface: String },
    #[error(
        "the kernel refused to create {name} as a dummy link ({source}); \
         pre-create it on every node, e.g. `ip link add {name} type ifb`, and the agent will adopt it"
    )]
    ExtlbUnsupported {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("created {name} but cannot find it afterwards; is something else removing links?")]
    ExtlbVanished { name: String },
}

/// An address as the kernel reports it, with the facts the agent decides on.
#[derive(Clone, Debug)]
struct KernelAddress {
    index: u32,
    address: IpAddr,
    prefix_len: u8,
    global: bool,
    ours: bool,
}

// === impl Netlink ===

impl Netlink {
    /// Opens a connection and spawns it on the current tokio runtime.
    pub fn new() -> Result<Netlink, NetlinkError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        runtime.spawn(connection);
        Ok(Netlink { handle, dumps: Arc::default() })
    }

    /// Every link with its global-scope IPv4 and IPv6 addresses.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, NetlinkError> {
        let links = self.link_messages().await?;
        let mut by_index: HashMap<u32, Vec<LinkAddress>> = HashMap::new();
        for a in self.addresses().await?.into_iter().filter(|a| a.global) {
            by_index.entry(a.index).or_default().push(LinkAddress {
                address: a.address,
                prefix_len: a.prefix_len,
                ours: a.ours,
            });
        }
        Ok(links
            .iter()
            .map(|link| LinkInfo {
                index: link.header.index,
                name: link_name(link),
                mac: link_mac(link),
                up: link.header.flags.contains(LinkFlags::Up),
                addresses: by_index.remove(&link.header.index).unwrap_or_default(),
            })
            .collect())
    }

    /// The link of the IPv4 default route in the main table, else that of the IPv6 one. With several
    /// default routes, the one with the lowest metric wins.
    pub async fn default_route_interface(&self) -> Result<Option<String>, NetlinkError> {
        let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
        for query in [v4, v6] {
            let routes: Vec<RouteMessage> = {
                let _turn = self.dumps.lock().await;
                self.handle.route().get(query).execute().try_collect().await
            }
            .map_err(|source| request("listing routes", source))?;
            let best = routes
                .iter()
                .filter(|r| is_main_default(r))
                .filter_map(|r| route_oif(r).map(|oif| (route_metric(r), oif)))
                .min();
            if let Some((_, index)) = best {
                return Ok(Some(self.link_name(index).await?));
            }
        }
        Ok(None)
    }

    /// Adopts the link called `name`, whatever its kind, or creates it as a dummy; either way sets it up
    /// and returns its index.
    pub async fn ensure_extlb(&self, name: &str) -> Result<u32, NetlinkError> {
        let index = match self.link_index(name).await? {
            Some(index) => index,
            None => self.create_dummy(name).await?,
        };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|source| request(format!("setting {name} (index {index}) up"), source))?;
        Ok(index)
    }

    /// Every address tagged [`PURELB_ADDR_PROTO`], on any link.
    pub async fn owned(&self) -> Result<Vec<OwnedAddress>, NetlinkError> {
        let names: HashMap<u32, String> =
            self.link_messages().await?.iter().map(|l| (l.header.index, link_name(l))).collect();
        let mut owned: Vec<OwnedAddress> = self
            .addresses()
            .await?
            .into_iter()
            .filter(|a| a.ours)
            .map(|a| OwnedAddress {
                index: a.index,
                interface: names.get(&a.index).cloned().unwrap_or_else(|| format!("index {}", a.index)),
                address: a.address,
                prefix_len: a.prefix_len,
            })
            .collect();
        owned.sort();
        Ok(owned)
    }

    /// Adds each `address/prefix_len` to its link `index`, tagged as ours (IPv6 without DAD). Already
    /// there and ours is success; ours with another prefix length is replaced. Present anywhere without
    /// our tag is an error, and that address is left alone. One listing of the kernel's addresses serves
    /// them all, and up to [`IN_FLIGHT`] requests are outstanding at once: adding n addresses costs n
    /// requests, not n listings, nor n round trips one after the other. Results are in `targets` order.
    pub async fn add_many(
        &self,
        targets: &[(u32, IpAddr, u8)],
    ) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        let listing = by_address(self.addresses().await?);
        let listing = &listing;
        Ok(futures::stream::iter(targets.iter().copied())
            .map(|(index, address, prefix_len)| {
                let same = listing.get(&address).map(Vec::as_slice).unwrap_or_default();
                self.add_one(same, index, address, prefix_len)
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await)
    }

    /// One address: see [`Netlink::add_many`].
    #[cfg(test)]
    pub async fn add(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
        self.add_many(&[(index, address, prefix_len)]).await?.pop().unwrap_or(Ok(()))
    }

    /// One address of [`Netlink::add_many`]; `same` is what the kernel holds with that address.
    async fn add_one(
        &self,
        same: &[KernelAddress],
        index: u32,
        address: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        if let Some(theirs) = same.iter().find(|a| !a.ours) {
            return Err(NetlinkError::NotOurs { address, interface: self.link_name(theirs.index).await? });
        }
        let here: Vec<&KernelAddress> = same.iter().filter(|a| a.index == index).collect();
        if here.iter().any(|a| a.prefix_len == prefix_len) {
            return Ok(());
        }
        for stale in here {
            self.remove(index, address, stale.prefix_len).await?;
        }
        let mut req = self.handle.address().add(index, address, prefix_len);
        let message = req.message_mut();
        message.attributes.push(AddressAttribute::Protocol(AddressProtocol::from(PURELB_ADDR_PROTO)));
        if address.is_ipv6() {
            message.header.flags |= AddressHeaderFlags::Nodad;
            message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = u32::MAX;
            message.attributes.push(AddressAttribute::CacheInfo(lifetimes));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            // Lost a race with another writer: judge what is there now.
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                match self.addresses().await?.into_iter().find(|a| a.address == address && a.index == index) {
                    Some(a) if a.ours => Ok(()),
                    Some(_) => {
                        Err(NetlinkError::NotOurs { address, interface: self.link_name(index).await? })
                    }
                    None => Err(request(self.describe(index, address, prefix_len, "adding").await, e)),
                }
            }
            Err(e) => Err(request(self.describe(index, address, prefix_len, "adding").await, e)),
        }
    }

    /// Deletes addresses, each only if the kernel shows it tagged ours: absent is fine, untagged is
    /// refused with [`NetlinkError::NotOurs`] (never remove what we did not add). One listing serves
    /// them all and up to [`IN_FLIGHT`] requests are outstanding at once, as in
    /// [`Netlink::add_many`]. Kernel 6.18 ignores the tag on deletion, so the check is this listing; the
    /// window between is small. Results are in `targets` order.
    pub async fn delete_many(
        &self,
        targets: &[(u32, IpAddr, u8)],
    ) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        let here = by_address(self.addresses().await?);
        let here = &here;
        Ok(futures::stream::iter(targets.iter().copied())
            .map(|(index, address, prefix_len)| async move {
                let same: Vec<&KernelAddress> = here
                    .get(&address)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter(|a| a.index == index)
                    .collect();
                match same.iter().find(|a| a.prefix_len == prefix_len) {
                    Some(a) if a.ours => self.remove(index, address, prefix_len).await,
                    Some(_) => self.not_ours(index, address).await,
                    None if same.iter().any(|a| !a.ours) => self.not_ours(index, address).await,
                    None => Ok(()),
                }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await)
    }

    /// One address: see [`Netlink::delete_many`].
    #[cfg(test)]
    pub async fn delete(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
        self.delete_many(&[(index, address, prefix_len)]).await?.pop().unwrap_or(Ok(()))
    }

    async fn not_ours(&self, index: u32, address: IpAddr) -> Result<(), NetlinkError> {
        Err(NetlinkError::NotOurs { address, interface: self.link_name(index).await? })
    }

    async fn create_dummy(&self, name: &str) -> Result<u32, NetlinkError> {
        let request = self.handle.link().add(LinkDummy::new(name).up().build());
        request
            .execute()
            .await
            .map_err(|source| NetlinkError::ExtlbUnsupported { name: name.to_string(), source })?;
        self.link_index(name).await?.ok_or_else(|| NetlinkError::ExtlbVanished { name: name.to_string() })
    }

    /// Removes an address the caller has checked is ours. The kernel (6.18) ignores IFA_PROTO on
    /// RTM_DELADDR, so the check cannot travel with the request; the window between them is a dump's length.
    async fn remove(&self, index: u32, address: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = match address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.index = index;
        message.header.prefix_len = prefix_len;
        message.attributes.push(AddressAttribute::Local(address));
        message.attributes.push(AddressAttribute::Address(address));
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(request(self.describe(index, address, prefix_len, "removing").await, e)),
        }
    }

    async fn addresses(&self) -> Result<Vec<KernelAddress>, NetlinkError> {
        let messages: Vec<AddressMessage> = {
            let _turn = self.dumps.lock().await;
            self.handle.address().get().execute().try_collect().await
        }
        .map_err(|source| request("listing addresses", source))?;
        Ok(messages
            .iter()
            .filter_map(|m| {
                let (address, ours) = message_address(m)?;
                Some(KernelAddress {
                    index: m.header.index,
                    address,
                    prefix_len: m.header.prefix_len,
                    global: m.header.scope == AddressScope::Universe,
                    ours,
                })
            })
            .collect())
    }

    async fn link_messages(&self) -> Result<Vec<LinkMessage>, NetlinkError> {
        let _turn = self.dumps.lock().await;
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| request("listing links", source))
    }

    async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        Ok(self.link_messages().await?.iter().find(|l| link_name(l) == name).map(|l| l.header.index))
    }

    async fn link_name(&self, index: u32) -> Result<String, NetlinkError> {
        self.link_messages()
            .await?
            .iter()
            .find(|l| l.header.index == index)
            .map(link_name)
            .ok_or(NetlinkError::NoSuchLink { index })
    }

    /// "adding 192.0.2.1/24 to eth0 (index 2)", for error messages.
    async fn describe(&self, index: u32, address: IpAddr, prefix_len: u8, verb: &str) -> String {
        let name = self.link_name(index).await.unwrap_or_else(|_| "a missing link".to_string());
        let preposition = if verb == "adding" { "to" } else { "from" };
        format!("{verb} {address}/{prefix_len} {preposition} {name} (index {index})")
    }
}

fn request(what: impl Into<String>, source: rtnetlink::Error) -> NetlinkError {
    NetlinkError::Request { what: what.into(), source }
}

/// The errno of a kernel refusal, if that is what `e` is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

mod messages;
mod removals;

use messages::{is_main_default, link_mac, link_name, message_address, route_metric, route_oif};

#[cfg(test)]
pub(crate) mod testns;

#[cfg(test)]
mod tests;
