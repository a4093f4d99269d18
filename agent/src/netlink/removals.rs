//! [`Netlink::removals`]: the addresses someone removed from any link (RTM_DELADDR), from a multicast
//! subscription, so the agent can put its own back; the stream ends when notifications were lost.

use std::net::IpAddr;

use futures::StreamExt;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::AsyncSocket;

use super::messages::message_address;
use super::{Netlink, NetlinkError};

impl Netlink {
    /// Addresses removed from any link (RTM_DELADDR), by anyone, including this agent. The subscription
    /// is live when this returns; dropping the stream closes it. Must be called inside a tokio runtime.
    ///
    /// The stream ends when removals may have been missed — the kernel dropped notifications because the
    /// socket buffer overflowed, or the socket failed: re-check every address, then subscribe again.
    pub fn removals(&self) -> Result<futures::stream::BoxStream<'static, IpAddr>, NetlinkError> {
        /// Receive buffer for bursts (a node losing many addresses at once); the kernel caps it at
        /// net.core.rmem_max.
        const RECEIVE_BUFFER: usize = 1 << 20;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetlinkError::NoRuntime)?;
        let (mut connection, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr])
                .map_err(NetlinkError::Connect)?;
        connection.socket_mut().socket_mut().set_rx_buf_sz(RECEIVE_BUFFER).map_err(NetlinkError::Connect)?;
        let task = AbortOnDrop(runtime.spawn(connection));
        let stream = messages
            .map(move |(message, _)| {
                let _keep_connection = &task;
                match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
                        Notification::Removed(message_address(&m).map(|(address, _)| address))
                    }
                    NetlinkPayload::Overrun(_) => Notification::Lost,
                    _ => Notification::Removed(None),
                }
            })
            .take_while(|n| futures::future::ready(!matches!(n, Notification::Lost)))
            .filter_map(|n| {
                futures::future::ready(match n {
                    Notification::Removed(address) => address,
                    Notification::Lost => None,
                })
            });
        Ok(stream.boxed())
    }
}

/// What one message on the address-monitoring socket means to [`Netlink::removals`].
enum Notification {
    Removed(Option<IpAddr>),
    /// The kernel dropped notifications: the caller must resynchronise.
    Lost,
}

/// Aborts a spawned task when dropped, so a dropped stream closes its netlink socket.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
