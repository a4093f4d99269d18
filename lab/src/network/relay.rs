//! How processes on the lab's LAN reach the API server: a TCP relay listening on `192.0.2.1:6443` inside
//! the control-plane namespace, forwarding each connection to the apiserver on `127.0.0.1` of the root
//! namespace by copying bytes in this process. No kernel link joins the namespaces, so nothing on the LAN
//! can reach anything else of the machine.
//!
//! The listening socket is made on a thread that entered the namespace; the relay then runs on a
//! process-wide runtime of its own, so it outlives whichever test's runtime created the network.
//!
//! The relay can cut one node off the API server by its source addresses ([`Relay::cut`]), as a network
//! partition would: while cut, its relayed connections carry no byte either way and its new ones are
//! accepted but never forwarded, and nothing is closed (no FIN, no RST), so its clients see a black
//! hole. (The kernel still acknowledges what fits in the sockets' buffers; clients notice the silence by
//! their own timeouts, as they do behind a real partition.) When the cut ends, the held connections are
//! closed and the clients reconnect.
//!
//! Exposes [`Relay`].

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::netns;
use crate::LabError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// === impl Relay ===

/// A running relay; dropping it closes the listener and every relayed connection.
#[derive(Debug)]
pub(crate) struct Relay {
    task: JoinHandle<()>,
    /// The source addresses cut off; every connection task watches it.
    cut: watch::Sender<HashSet<IpAddr>>,
}

impl Relay {
    /// Listens on `listen` inside the named namespace and forwards to `upstream` (root namespace).
    pub fn start(netns: &str, listen: SocketAddr, upstream: SocketAddr) -> Result<Relay, LabError> {
        let what = format!("listening on {listen} in network namespace {netns} for the API server relay");
        let listener = netns::in_netns(netns, move || {
            let listener = std::net::TcpListener::bind(listen)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .map_err(|e| LabError::io(what.clone(), e))?;
        let (cut, watching) = watch::channel(HashSet::new());
        let task = runtime().map_err(|e| LabError::io(what, e))?.spawn(serve(listener, upstream, watching));
        Ok(Relay { task, cut })
    }

    /// Cuts (`true`) or restores (`false`) relaying for connections from any of `sources`.
    pub fn cut(&self, sources: &[IpAddr], cut: bool) {
        self.cut.send_modify(|set| {
            for source in sources {
                if cut {
                    set.insert(*source);
                } else {
                    set.remove(source);
                }
            }
        });
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: std::net::TcpListener, upstream: SocketAddr, cut: watch::Receiver<HashSet<IpAddr>>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "the API server relay could not use its listener");
            return;
        }
    };
    // Dropping the set (when the relay is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    connections.spawn(forward(inbound, peer.ip(), upstream, cut.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the API server relay could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Relays one connection from `source` until either side closes it, or the source is cut off: then it
/// is held, silent, until the cut ends, and closed.
async fn forward(
    mut inbound: TcpStream,
    source: IpAddr,
    upstream: SocketAddr,
    mut cut: watch::Receiver<HashSet<IpAddr>>,
) {
    let source = canonical(source);
    if cut.borrow_and_update().contains(&source) {
        hold_while_cut(&mut cut, source).await;
        return;
    }
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await;
    let mut outbound = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%upstream, error = %e, "the API server relay could not connect to the apiserver");
            return;
        }
        Err(_) => {
            tracing::warn!(%upstream, "the API server relay timed out connecting to the apiserver");
            return;
        }
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    // Errors are resets by either side: the connection is over either way.
    let copied = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
    tokio::select! {
        // The cut first: bytes that arrive together with it are not forwarded.
        biased;
        () = until_cut(&mut cut, source) => {
            // The copy stopped with the select; both sockets stay open, unread, until the cut ends.
            hold_while_cut(&mut cut, source).await;
        }
        _ = copied => {}
    }
}

/// Returns once `source` is in the cut set (never, when the relay is gone).
async fn until_cut(cut: &mut watch::Receiver<HashSet<IpAddr>>, source: IpAddr) {
    if cut.wait_for(|set| set.contains(&source)).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Returns once `source` is no longer cut (or the relay is gone).
async fn hold_while_cut(cut: &mut watch::Receiver<HashSet<IpAddr>>, source: IpAddr) {
    let _ = cut.wait_for(|set| !set.contains(&source)).await;
}

/// An IPv4 peer of a dual-stack socket is reported as `::ffff:a.b.c.d`; the cut set holds `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The relays' runtime: one worker thread, alive as long as the process.
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("purelb-lab-relay")
                .enable_all()
                .build()
                .map_err(|e| format!("building the relay runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| std::io::Error::other(e.clone()))
}
