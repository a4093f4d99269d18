//! How processes on the lab's LAN reach the API server: a TCP relay listening on `192.0.2.1:6443` inside
//! the control-plane namespace, forwarding each connection to the apiserver on `127.0.0.1` of the root
//! namespace by copying bytes in this process. No kernel link joins the namespaces, so nothing on the LAN
//! can reach anything else of the machine.
//!
//! The listening socket is made on a thread that entered the namespace; the relay then runs on a
//! process-wide runtime of its own, so it outlives whichever test's runtime created the network.
//!
//! Exposes [`Relay`].

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::netns;
use crate::LabError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// === impl Relay ===

/// A running relay; dropping it closes the listener and every relayed connection.
#[derive(Debug)]
pub(crate) struct Relay {
    task: JoinHandle<()>,
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
        let task = runtime().map_err(|e| LabError::io(what, e))?.spawn(serve(listener, upstream));
        Ok(Relay { task })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: std::net::TcpListener, upstream: SocketAddr) {
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
                Ok((inbound, _)) => {
                    connections.spawn(forward(inbound, upstream));
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

async fn forward(mut inbound: TcpStream, upstream: SocketAddr) {
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
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
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
