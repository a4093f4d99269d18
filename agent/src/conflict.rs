//! Address conflict detection in the spirit of RFC 5227: how the agent learns that another node now
//! answers for an address it holds.
//!
//! A node cut off from the Kubernetes API keeps its local addresses (fail-static), while the rest of
//! the cluster elects another node and that node announces them. The API cannot tell the cut-off node,
//! but the wire can: the new owner's gratuitous ARPs and unsolicited neighbour advertisements reach
//! every host on the segment. `listen` watches one interface for ARP (requests and replies, RFC 5227
//! announcements; probes claim nothing and are ignored) and ICMPv6 neighbour advertisements from other
//! MACs, and yields a `Sighting` for each; the announcer decides whether the address is one it holds and
//! gives it up.
//!
//! Most sightings are harmless: every ordinary ARP request or reply claims its sender's own address, so
//! each neighbour shows up with its own IP as it talks. Only a sighting of an address this node holds is
//! a conflict, and telling the two apart is the caller's job, not the listener's.
//!
//! Frames are read from AF_PACKET sockets so the Ethernet header is there: one bound to ARP, and one
//! bound to IPv6 with a classic BPF filter that lets only neighbour advertisements into the agent.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use futures::Stream;
use nix::sys::socket::{AddressFamily, LinkAddr, SockFlag, SockType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETHERNET_HEADER: usize = 14;
const IPV6_HEADER: usize = 40;
const ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// Large enough for any neighbour advertisement on a standard MTU; a longer frame is cut short, fails
/// its checksum and is dropped, as ARP and NA never need jumbo frames.
const RECEIVE_BUFFER: usize = 4096;
/// What wakes a receiver: a frame, or a socket error with nothing to read, which is how the kernel
/// says the interface went down or away.
const WAKE: Interest = Interest::READABLE.add(Interest::ERROR);

/// Another host on the segment claims `ip` with `mac`: it announced or answered for it, or asked
/// something from it (an ARP request claims its sender address too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub interface: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    #[error("cannot listen for address conflicts on {interface}: not called inside a tokio runtime")]
    NoRuntime { interface: String },
    #[error(
        "cannot listen for address conflicts on {interface}: no such interface in the agent's network \
         namespace ({source})"
    )]
    NoInterface {
        interface: String,
        #[source]
        source: nix::Error,
    },
    #[error(
        "cannot open a packet socket for {protocol} on {interface}: {source} (the agent needs CAP_NET_RAW)"
    )]
    Socket {
        interface: String,
        protocol: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen for {protocol} on {interface}: {step} failed: {source}")]
    Setup {
        interface: String,
        protocol: &'static str,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Sightings on `interface` of addresses claimed by MACs other than `own_mac`, ARP and neighbour
/// advertisements interleaved as they arrive. Must be called inside a tokio runtime. The stream ends
/// when the interface disappears (a recreated interface needs a new listener) or a read fails for
/// good; a link that merely goes down and up again keeps its listener.
pub fn listen(
    interface: &str,
    own_mac: [u8; 6],
) -> Result<impl Stream<Item = Sighting> + Send + 'static, ConflictError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(ConflictError::NoRuntime { interface: interface.to_string() });
    }
    let index = nix::net::if_::if_nametoindex(interface)
        .map_err(|source| ConflictError::NoInterface { interface: interface.to_string(), source })?;
    let arp = Receiver::open(interface, index, own_mac, Kind::Arp)?;
    let na = Receiver::open(interface, index, own_mac, Kind::NeighborAdvertisement)?;
    Ok(futures::stream::select(arp.into_stream(), na.into_stream()))
}

/// What one socket receives, and so how its frames are read.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Arp,
    NeighborAdvertisement,
}

/// One non-blocking AF_PACKET socket bound to the interface, with what is needed to turn its frames
/// into sightings.
struct Receiver {
    socket: AsyncFd<OwnedFd>,
    kind: Kind,
    interface: String,
    index: u32,
    own_mac: [u8; 6],
    buffer: Box<[u8]>,
}

// === impl Kind ===

impl Kind {
    fn protocol(self) -> &'static str {
        match self {
            Kind::Arp => "ARP",
            Kind::NeighborAdvertisement => "IPv6 neighbour advertisements",
        }
    }

    fn ethertype(self) -> u16 {
        match self {
            Kind::Arp => ETH_P_ARP,
            Kind::NeighborAdvertisement => ETH_P_IPV6,
        }
    }

    fn parse(self, frame: &[u8]) -> Option<(IpAddr, [u8; 6])> {
        match self {
            Kind::Arp => parse_arp(frame),
            Kind::NeighborAdvertisement => parse_na(frame),
        }
    }
}

// === impl Receiver ===

impl Receiver {
    fn open(interface: &str, index: u32, own_mac: [u8; 6], kind: Kind) -> Result<Receiver, ConflictError> {
        let setup = |step, source| ConflictError::Setup {
            interface: interface.to_string(),
            protocol: kind.protocol(),
            step,
            source,
        };
        let socket = nix::sys::socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            // Protocol 0 receives nothing until `bind` names one, so no frame slips in before the
            // filter is attached.
            None,
        )
        .map_err(|e| ConflictError::Socket {
            interface: interface.to_string(),
            protocol: kind.protocol(),
            source: e.into(),
        })?;
        if let Kind::NeighborAdvertisement = kind {
            attach_neighbor_advertisement_filter(&socket)
                .map_err(|e| setup("attaching the BPF filter", e))?;
        }
        let address = crate::garp::packet_addr(index, kind.ethertype(), None).ok_or_else(|| {
            setup("binding", io::Error::other(format!("interface index {index} out of range")))
        })?;
        nix::sys::socket::bind(socket.as_raw_fd(), &address).map_err(|e| setup("binding", e.into()))?;
        let socket = register(socket).map_err(|e| setup("registering with the reactor", e))?;
        Ok(Receiver {
            socket,
            kind,
            interface: interface.to_string(),
            index,
            own_mac,
            buffer: vec![0; RECEIVE_BUFFER].into_boxed_slice(),
        })
    }

    fn into_stream(self) -> impl Stream<Item = Sighting> + Send + 'static {
        futures::stream::unfold(self, |mut receiver| async move {
            receiver.next().await.map(|sighting| (sighting, receiver))
        })
    }

    /// The next sighting, or None when the socket is of no further use.
    async fn next(&mut self) -> Option<Sighting> {
        loop {
            let mut guard = match self.socket.ready(WAKE).await {
                Ok(guard) => guard,
                Err(e) => {
                    tracing::warn!(interface = %self.interface, protocol = self.kind.protocol(), error = %e,
                        "conflict listener stopped: cannot wait for frames");
                    return None;
                }
            };
            let buffer = &mut self.buffer;
            let received = guard.try_io(|socket| {
                nix::sys::socket::recvfrom::<LinkAddr>(socket.as_raw_fd(), buffer).map_err(io::Error::from)
            });
            let (length, from) = match received {
                Err(_would_block) => continue,
                Ok(Ok(received)) => received,
                Ok(Err(e)) if self.survives(&e) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(interface = %self.interface, protocol = self.kind.protocol(), error = %e,
                        "conflict listener stopped: cannot read frames");
                    return None;
                }
            };
            // Outgoing frames are this host's own announcements, whatever MAC they carry.
            if from.is_some_and(|from| from.pkttype() == libc::PACKET_OUTGOING) {
                continue;
            }
            let Some((ip, mac)) = self.buffer.get(..length).and_then(|frame| self.kind.parse(frame)) else {
                continue;
            };
            if mac == self.own_mac {
                continue;
            }
            return Some(Sighting { ip, mac, interface: self.interface.clone() });
        }
    }

    /// Whether the socket still works after `error`. The kernel reports ENETDOWN once when the link
    /// goes down and rebinds the socket when it comes back up, but a deleted interface leaves the
    /// socket bound to nothing, for good.
    fn survives(&self, error: &io::Error) -> bool {
        match error.raw_os_error() {
            Some(libc::EINTR | libc::ENOBUFS) => true,
            Some(libc::ENETDOWN) => nix::net::if_::if_nametoindex(self.interface.as_str()) == Ok(self.index),
            _ => false,
        }
    }
}

/// Hands the socket to the tokio reactor, for reading.
#[allow(unsafe_code)]
fn register(socket: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` owns its descriptor: it stays open, and `as_raw_fd` returns that same
    // descriptor, until the `OwnedFd` (and so the `AsyncFd` holding it) is dropped.
    unsafe { AsyncFd::register_with_interest(socket, WAKE) }.map_err(|e| e.into_parts().1)
}

/// Keeps only IPv6 frames carrying ICMPv6 type 136 right behind the fixed header, so the agent never
/// sees (or wakes for) the rest of the interface's IPv6 traffic.
#[allow(unsafe_code)]
fn attach_neighbor_advertisement_filter(socket: &OwnedFd) -> io::Result<()> {
    const LOAD_HALF: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LOAD_BYTE: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JUMP_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RETURN: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LOAD_HALF, 0, 0, 12),                                     // EtherType
        op(JUMP_EQUAL, 0, 5, u32::from(ETH_P_IPV6)),                 // else drop
        op(LOAD_BYTE, 0, 0, 20),                                     // IPv6 next header
        op(JUMP_EQUAL, 0, 3, u32::from(ICMPV6)),                     // else drop
        op(LOAD_BYTE, 0, 0, (ETHERNET_HEADER + IPV6_HEADER) as u32), // ICMPv6 type
        op(JUMP_EQUAL, 0, 1, u32::from(NEIGHBOR_ADVERTISEMENT)),     // else drop
        op(RETURN, 0, 0, u32::MAX),                                  // keep the whole frame
        op(RETURN, 0, 0, 0),                                         // drop
    ];
    let fprog = libc::sock_fprog { len: program.len() as libc::c_ushort, filter: program.as_mut_ptr() };
    let len = libc::socklen_t::try_from(size_of::<libc::sock_fprog>()).map_err(io::Error::other)?;
    // SAFETY: nix 0.32 has no SO_ATTACH_FILTER option. `fprog` points at `program`, both live across the
    // call, `len` is exactly the size of `fprog`, and the kernel copies the program in before returning.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

mod frames;

#[cfg(test)]
use frames::icmpv6_checksum;
pub(crate) use frames::{parse_arp, parse_na};

#[cfg(test)]
mod tests;
