//! `purelb-lab-echo`: the workload of the lab's pods. It answers every HTTP GET on TCP port 8080 (IPv4
//! and IPv6) with `200`, `Connection: close` and a JSON body saying who answered and whom it saw:
//! `{"pod":"echo-1","node":"node1","client":"192.0.2.11","port":40312}`, so a test that sends traffic
//! to a Service address learns which pod and node it reached and what source address (after any NAT)
//! arrived there.
//!
//! Usage: `purelb-lab-echo [--pod NAME] [--node NAME] [--port PORT]`; the names default to `$POD_NAME`
//! and `$NODE_NAME` (as a Deployment's downward API would set them), the port to 8080.
//!
//! One thread per listener and one per connection: the lab's prober opens a short connection every
//! 10 ms, far below what threads cost, and a slow client never holds up the others.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

const USAGE: &str = "usage: purelb-lab-echo [--pod NAME] [--node NAME] [--port PORT]\n\
(names default to $POD_NAME and $NODE_NAME, the port to 8080)";
/// The largest request head read; a GET from the lab's clients is well under 200 bytes.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a connection may take to send its request or accept the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Pending connections per listener: enough for a burst while a thread is being started.
const BACKLOG: i32 = 1024;

/// Who this server is, as its answers say.
struct Identity {
    pod: String,
    node: String,
    port: u16,
}

fn main() -> Result<()> {
    let identity = Arc::new(parse_args(std::env::args().skip(1))?);
    let port = identity.port;
    // v6only on `[::]`, so that `0.0.0.0` can be bound too and IPv4 peers are reported as IPv4.
    let v6 = listen(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true)?;
    let v4 = listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)?;
    println!(
        "purelb-lab-echo: pod {} on node {} listening on [::]:{port} and 0.0.0.0:{port}",
        identity.pod, identity.node
    );
    let for_v6 = Arc::clone(&identity);
    std::thread::Builder::new()
        .name("accept-v6".to_owned())
        .spawn(move || serve(&v6, &for_v6))
        .context("starting the IPv6 accept thread")?;
    serve(&v4, &identity);
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Identity> {
    let mut pod = std::env::var("POD_NAME").ok();
    let mut node = std::env::var("NODE_NAME").ok();
    let mut port = 8080;
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--pod" => pod = Some(value()?),
            "--node" => node = Some(value()?),
            "--port" => port = value()?.parse().with_context(|| format!("--port is not a port\n{USAGE}"))?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let (Some(pod), Some(node)) = (pod, node) else {
        bail!("the pod and node names are needed (--pod/--node or $POD_NAME/$NODE_NAME)\n{USAGE}")
    };
    Ok(Identity { pod, node, port })
}

fn listen(address: SocketAddr, v6_only: bool) -> Result<TcpListener> {
    let domain = if address.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .with_context(|| format!("creating a socket for {address}"))?;
    // A restarted server must not wait for the previous one's TIME_WAIT connections.
    socket.set_reuse_address(true).with_context(|| format!("SO_REUSEADDR on {address}"))?;
    if v6_only {
        socket.set_only_v6(true).with_context(|| format!("IPV6_V6ONLY on {address}"))?;
    }
    socket.bind(&address.into()).with_context(|| format!("binding {address}"))?;
    socket.listen(BACKLOG).with_context(|| format!("listening on {address}"))?;
    Ok(socket.into())
}

/// Accepts forever. Accept errors (a connection reset before it was accepted, too many open files) are
/// transient: the server waits a moment and goes on.
fn serve(listener: &TcpListener, identity: &Arc<Identity>) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let identity = Arc::clone(identity);
                let spawned = std::thread::Builder::new()
                    .name("connection".to_owned())
                    .spawn(move || answer(stream, peer, &identity));
                if let Err(e) = spawned {
                    eprintln!("purelb-lab-echo: cannot start a thread for {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("purelb-lab-echo: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn answer(mut stream: TcpStream, peer: SocketAddr, identity: &Identity) {
    if let Err(e) = try_answer(&mut stream, peer, identity) {
        // A client that gave up (the prober's timeout) is no news; anything else is worth a line.
        if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) {
            eprintln!("purelb-lab-echo: {peer}: {e}");
        }
    }
}

fn try_answer(stream: &mut TcpStream, peer: SocketAddr, identity: &Identity) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(stream)?;
    let request_line = head.lines().next().unwrap_or_default();
    let (status, body) = if request_line.starts_with("GET ") {
        let body = serde_json::json!({
            "pod": identity.pod,
            "node": identity.node,
            "client": peer.ip().to_string(),
            "port": peer.port(),
        });
        ("200 OK", body.to_string())
    } else {
        let body = serde_json::json!({ "error": format!("only GET is served, not {request_line:?}") });
        ("405 Method Not Allowed", body.to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    // Half-close, so the client reads the whole answer before it sees the end.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Reads up to the blank line that ends the request head (what follows is ignored: a GET has no body).
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "request head over 8 KiB"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed before the request ended"));
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
