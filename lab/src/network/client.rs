//! A client outside the cluster, and what it saw: the namespace behind the router that traffic to Service
//! addresses comes from, one-off requests to the echo servers, and a [`Prober`] that sends one every
//! 10 ms and records each answer or failure, so a test can say how long an address was unreachable.
//!
//! ```text
//!   client 198.19.0.2/24, 2001:db8:200::2/64 ── veth ── router 198.19.0.1/24, 2001:db8:200::1/64 ── LAN
//! ```
//!
//! The client's only routes are its defaults via the router, which forwards already; the nodes reach it
//! through their own default routes via the router. Nothing is announced for it over BGP.
//!
//! Requests are made in-process, on a thread that entered the client's namespace (as
//! [`LabNode::tcp_connect`](super::LabNode::tcp_connect) does), so polling every 10 ms starts no process.
//!
//! Exposes [`LabClient`], [`EchoReply`], [`Failure`], [`Prober`], [`ProbeConfig`], [`Probe`] and
//! [`ProbeReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::netns::{self, Namespaces};
use super::tools::Tools;
use super::{LAN_INTERFACE, Network};
use crate::LabError;

/// The client's addresses, and the router's on the client's link (the client's gateways).
pub const CLIENT_IPV4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 2);
pub const CLIENT_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 2);
pub const CLIENT_ROUTER_IPV4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
pub const CLIENT_ROUTER_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1);
const CLIENT_PREFIX_V4: u8 = 24;
const CLIENT_PREFIX_V6: u8 = 64;
/// The router's end of the client's veth.
const ROUTER_PORT: &str = "client";
/// The most of an answer read: the echo server's are under 200 bytes.
const MAX_ANSWER: u64 = 64 * 1024;

// === impl Network ===

impl Network {
    /// Adds the client namespace behind the router (one per network: a second call fails while the first
    /// [`LabClient`] lives). Dropping the client deletes its namespace, and with it the router's end of
    /// its veth and the router's routes to it.
    pub async fn add_client(&self) -> Result<LabClient, LabError> {
        if self.client_taken.swap(true, Ordering::SeqCst) {
            return Err(LabError::io(
                "adding a client to the lab network",
                io::Error::other("this network already has a client (its addresses are fixed); use that one"),
            ));
        }
        let slot = ClientSlot(Arc::clone(&self.client_taken));
        let netns = format!("{}-client", self.prefix);
        let mut namespaces = Namespaces::default();
        namespaces.add(&self.tools, &netns).await?;
        self.tools
            .sysctl(
                &netns,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_ra=0",
                    "net.ipv6.conf.default.accept_ra=0",
                ],
            )
            .await?;
        self.tools
            .ip_batch(
                &self.router,
                &[
                    format!("link add {ROUTER_PORT} type veth peer name {LAN_INTERFACE} netns {netns}"),
                    format!("link set {ROUTER_PORT} up"),
                    format!("address add {CLIENT_ROUTER_IPV4}/{CLIENT_PREFIX_V4} dev {ROUTER_PORT}"),
                    format!("address add {CLIENT_ROUTER_IPV6}/{CLIENT_PREFIX_V6} dev {ROUTER_PORT} nodad"),
                ],
            )
            .await?;
        self.tools
            .ip_batch(
                &netns,
                &[
                    "link set lo up".to_owned(),
                    format!("link set {LAN_INTERFACE} up"),
                    format!("address add {CLIENT_IPV4}/{CLIENT_PREFIX_V4} dev {LAN_INTERFACE}"),
                    format!("address add {CLIENT_IPV6}/{CLIENT_PREFIX_V6} dev {LAN_INTERFACE} nodad"),
                    format!("route add default via {CLIENT_ROUTER_IPV4}"),
                    format!("route add ::/0 via {CLIENT_ROUTER_IPV6}"),
                ],
            )
            .await?;
        tracing::info!(netns = %netns, "lab client ready behind the router");
        Ok(LabClient { netns, tools: self.tools.clone(), _namespaces: namespaces, _slot: slot })
    }
}

/// Frees the network's client slot once the client's namespace is gone.
#[derive(Debug)]
struct ClientSlot(Arc<AtomicBool>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

// === impl LabClient ===

/// The machine outside the cluster: `198.19.0.2` and `2001:db8:200::2`, behind the router. Made by
/// [`Network::add_client`]; dropping it deletes its namespace.
#[derive(Debug)]
pub struct LabClient {
    netns: String,
    tools: Tools,
    // Drop order: the namespace goes before the slot is freed.
    _namespaces: Namespaces,
    _slot: ClientSlot,
}

impl LabClient {
    /// The client's network namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        CLIENT_IPV4
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        CLIENT_IPV6
    }

    /// A command that runs `program` inside the client's namespace (`ip netns exec <netns> <program>`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(&self.tools.ip);
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }

    /// `GET /` from the client to `to` (an echo server, usually through a Service address), in at most
    /// `timeout` for the whole exchange; the echo server's answer, or [`LabError::Request`] saying how
    /// it failed.
    pub async fn http_get(&self, to: SocketAddr, timeout: Duration) -> Result<EchoReply, LabError> {
        fetch_in(&self.netns, to, timeout).await?.map_err(|failure| LabError::Request {
            what: format!("GET http://{to}/ from the lab client"),
            failure,
        })
    }

    /// Starts probing `to` from the client: one `GET /` every `config.interval`, each on a new
    /// connection, until [`Prober::stop`] or the configuration's limits.
    pub fn probe(&self, to: SocketAddr, config: ProbeConfig) -> Result<Prober, LabError> {
        Prober::start(&self.netns, to, config)
    }
}

// === requests ===

/// What the echo server answered: who answered, and the source address and port it saw.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EchoReply {
    pub pod: String,
    pub node: String,
    /// The peer address the pod saw (a node's, when kube-proxy masqueraded the connection).
    pub client: IpAddr,
    pub port: u16,
}

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No connection within the timeout: the SYN went unanswered (nobody holds the address, or its
    /// packets are dropped).
    ConnectTimeout,
    /// Refused: a RST or an ICMP port unreachable (nothing listens; kube-proxy rejects connections to a
    /// Service without endpoints).
    Refused,
    /// An ICMP host or network unreachable: no route, or no neighbour answered.
    Unreachable,
    /// Connected, then reset before a whole answer arrived.
    Reset,
    /// Connected, but no whole answer within the timeout.
    ResponseTimeout,
    /// An answer, but not the echo server's `200` with its JSON.
    BadAnswer(String),
    /// Any other socket error.
    Other(String),
}

impl Failure {
    /// A short name for counting failures by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::ConnectTimeout => "connect-timeout",
            Failure::Refused => "refused",
            Failure::Unreachable => "unreachable",
            Failure::Reset => "reset",
            Failure::ResponseTimeout => "response-timeout",
            Failure::BadAnswer(_) => "bad-answer",
            Failure::Other(_) => "other",
        }
    }

    fn from_io(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                Failure::Reset
            }
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Failure::Unreachable,
            io::ErrorKind::TimedOut => Failure::ConnectTimeout,
            _ => Failure::Other(e.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ConnectTimeout => f.write_str("no connection within the timeout"),
            Failure::Refused => f.write_str("connection refused"),
            Failure::Unreachable => f.write_str("host or network unreachable"),
            Failure::Reset => f.write_str("connection reset"),
            Failure::ResponseTimeout => f.write_str("connected, but no whole answer within the timeout"),
            Failure::BadAnswer(what) => write!(f, "not the echo server's answer: {what}"),
            Failure::Other(what) => f.write_str(what),
        }
    }
}

/// `GET /` on a new connection to `to`, bounded by `timeout` as a whole. The socket belongs to the
/// network namespace of the thread that runs this (a current-thread runtime's).
pub(crate) async fn fetch(to: SocketAddr, timeout: Duration) -> Result<EchoReply, Failure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut stream = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(to))
        .await
        .map_err(|_| Failure::ConnectTimeout)?
        .map_err(|e| Failure::from_io(&e))?;
    let exchange = async {
        let request = format!("GET / HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream).take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    };
    let answer = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| Failure::ResponseTimeout)?
        .map_err(|e| Failure::from_io(&e))?;
    parse_answer(&answer)
}

/// The echo server's JSON from a whole HTTP answer, which must be a `200`.
pub(crate) fn parse_answer(answer: &[u8]) -> Result<EchoReply, Failure> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::BadAnswer(format!("no end of the HTTP head in {text:?}")));
    };
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(Failure::BadAnswer(format!("status line {status:?}")));
    }
    serde_json::from_str(body).map_err(|e| Failure::BadAnswer(format!("body {body:?}: {e}")))
}

/// [`fetch`] from inside the network namespace `netns`, on a thread of its own (the caller's runtime is
/// not blocked).
pub(crate) async fn fetch_in(
    netns: &str,
    to: SocketAddr,
    timeout: Duration,
) -> Result<Result<EchoReply, Failure>, LabError> {
    let what = format!("GET http://{to}/ from network namespace {netns}");
    let netns = netns.to_owned();
    tokio::task::spawn_blocking(move || {
        netns::in_netns(&netns, move || Ok(current_thread_runtime()?.block_on(fetch(to, timeout))))
    })
    .await
    .map_err(|e| LabError::io(what.clone(), io::Error::other(e)))?
    .map_err(|e| LabError::io(what, e))
}

fn current_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

// === impl Prober ===

/// How a [`Prober`] probes.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Between two requests; default 10 ms. Requests overlap when one takes longer.
    pub interval: Duration,
    /// For each request as a whole; default 1 s.
    pub timeout: Duration,
    /// It stops after this many requests; default 6,000 (a minute at 10 ms).
    pub max_requests: usize,
    /// It stops sending after this long; default 60 s.
    pub max_duration: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
            max_requests: 6_000,
            max_duration: Duration::from_secs(60),
        }
    }
}

/// One request of a [`Prober`].
#[derive(Debug, Clone)]
pub struct Probe {
    /// Its number, from 0, in the order sent.
    pub seq: usize,
    /// When it was sent, since the prober started.
    pub sent: Duration,
    /// How long until it was answered or failed.
    pub latency: Duration,
    pub result: Result<EchoReply, Failure>,
}

/// Requests sent from the client at a steady pace, on a thread of their own inside the client's
/// namespace. Stop it with [`Prober::stop`] (or let it reach its limits and [`Prober::finish`]);
/// dropping it stops it too, and the thread ends within one request timeout.
#[derive(Debug)]
pub struct Prober {
    to: SocketAddr,
    config: ProbeConfig,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<JoinHandle<io::Result<Vec<Probe>>>>,
}

impl Prober {
    fn start(netns: &str, to: SocketAddr, config: ProbeConfig) -> Result<Prober, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (thread_stop, thread_sent, thread_config) =
            (Arc::clone(&stop), Arc::clone(&sent), config.clone());
        let thread = netns::spawn_in_netns(netns, "purelb-lab-prober", move || {
            current_thread_runtime()?.block_on(probe_loop(to, thread_config, thread_stop, thread_sent))
        })
        .map_err(|e| LabError::io(format!("starting a prober of {to} in {netns}"), e))?;
        Ok(Prober { to, config, stop, sent, thread: Some(thread) })
    }

    /// How many requests it has sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending, waits for the requests in flight (at most one timeout) and reports.
    pub async fn stop(self) -> Result<ProbeReport, LabError> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits until it reaches its limits (`max_requests` or `max_duration`) and reports.
    pub async fn finish(mut self) -> Result<ProbeReport, LabError> {
        let what = format!("probing {}", self.to);
        let Some(thread) = self.thread.take() else {
            return Err(LabError::io(what, io::Error::other("the prober was already joined")));
        };
        let probes = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| LabError::io(what.clone(), io::Error::other(e)))?
            .map_err(|_| LabError::io(what.clone(), io::Error::other("the prober's thread panicked")))?
            .map_err(|e| LabError::io(what, e))?;
        Ok(ProbeReport { to: self.to, interval: self.config.interval, probes })
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends a request every interval until stopped or at a limit, then waits for those in flight.
async fn probe_loop(
    to: SocketAddr,
    config: ProbeConfig,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> io::Result<Vec<Probe>> {
    let began = Instant::now();
    let mut ticker = tokio::time::interval(config.interval.max(Duration::from_millis(1)));
    // A late tick (a busy machine) skips ahead instead of sending a burst: the pace is the point.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut probes = Vec::new();
    for seq in 0..config.max_requests {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) || began.elapsed() >= config.max_duration {
            break;
        }
        let timeout = config.timeout;
        in_flight.spawn(async move {
            let sent = began.elapsed();
            let start = Instant::now();
            let result = fetch(to, timeout).await;
            Probe { seq, sent, latency: start.elapsed(), result }
        });
        sent.fetch_add(1, Ordering::Relaxed);
        while let Some(done) = in_flight.try_join_next() {
            probes.push(done.map_err(io::Error::other)?);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        probes.push(done.map_err(io::Error::other)?);
    }
    probes.sort_by_key(|p| p.seq);
    Ok(probes)
}

// === impl ProbeReport ===

/// Every request a [`Prober`] made, in the order sent.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub to: SocketAddr,
    pub interval: Duration,
    pub probes: Vec<Probe>,
}

impl ProbeReport {
    pub fn sent(&self) -> usize {
        self.probes.len()
    }

    pub fn failed(&self) -> usize {
        self.probes.iter().filter(|p| p.result.is_err()).count()
    }

    /// The longest run of failed requests, as time: from the first failure of the run to the next
    /// success (or, for a run that lasts to the end, to one interval after its last failure). Zero when
    /// nothing failed; a single failure among successes counts about one interval.
    pub fn longest_outage(&self) -> Duration {
        let mut longest = Duration::ZERO;
        let mut run_start: Option<Duration> = None;
        for probe in &self.probes {
            match (&probe.result, run_start) {
                (Err(_), None) => run_start = Some(probe.sent),
                (Ok(_), Some(start)) => {
                    longest = longest.max(probe.sent.saturating_sub(start));
                    run_start = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(last)) = (run_start, self.probes.last()) {
            longest = longest.max(last.sent.saturating_sub(start) + self.interval);
        }
        longest
    }

    /// The pods that answered.
    pub fn pods_seen(&self) -> BTreeSet<String> {
        self.answers().map(|a| a.pod.clone()).collect()
    }

    /// The nodes whose pods answered.
    pub fn nodes_seen(&self) -> BTreeSet<String> {
        self.answers().map(|a| a.node.clone()).collect()
    }

    /// The source addresses the echo servers saw: the client's own where nothing rewrote it, else the
    /// masquerading node's (see [`Network::node_with_address`]).
    pub fn clients_seen(&self) -> BTreeSet<IpAddr> {
        self.answers().map(|a| a.client).collect()
    }

    /// How many requests failed, by [`Failure::kind`].
    pub fn failures_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for failure in self.probes.iter().filter_map(|p| p.result.as_ref().err()) {
            *counts.entry(failure.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// One line for assertion messages: counts, outage, who answered.
    pub fn summary(&self) -> String {
        format!(
            "{} requests to {} every {:?}: {} failed {:?}, longest outage {:?}, pods {:?}, nodes {:?}",
            self.sent(),
            self.to,
            self.interval,
            self.failed(),
            self.failures_by_kind(),
            self.longest_outage(),
            self.pods_seen(),
            self.nodes_seen()
        )
    }

    fn answers(&self) -> impl Iterator<Item = &EchoReply> {
        self.probes.iter().filter_map(|p| p.result.as_ref().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(pod: &str, node: &str) -> EchoReply {
        EchoReply { pod: pod.to_owned(), node: node.to_owned(), client: IpAddr::from(CLIENT_IPV4), port: 1 }
    }

    /// A report of probes sent every 10 ms with these outcomes (`None` = failed).
    fn report(outcomes: &[Option<(&str, &str)>]) -> ProbeReport {
        let probes = outcomes
            .iter()
            .enumerate()
            .map(|(seq, outcome)| Probe {
                seq,
                sent: Duration::from_millis(10 * seq as u64),
                latency: Duration::from_millis(1),
                result: outcome.map(|(p, n)| reply(p, n)).ok_or(Failure::Refused),
            })
            .collect();
        ProbeReport {
            to: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 240), 80)),
            interval: Duration::from_millis(10),
            probes,
        }
    }

    #[test]
    fn an_answer_is_read_from_its_json() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 59\r\nConnection: close\r\n\r\n\
            {\"client\":\"192.0.2.11\",\"node\":\"node1\",\"pod\":\"echo-1\",\"port\":40312}";
        let parsed = parse_answer(answer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.pod, "echo-1");
        assert_eq!(parsed.node, "node1");
        assert_eq!(parsed.client, IpAddr::from(Ipv4Addr::new(192, 0, 2, 11)));
        assert_eq!(parsed.port, 40312);
    }

    #[test]
    fn anything_but_a_200_with_json_is_a_bad_answer() {
        for answer in
            [&b"HTTP/1.1 503 Service Unavailable\r\n\r\n{}"[..], b"HTTP/1.1 200 OK\r\n\r\nhello", b"HTTP/1.1"]
        {
            assert!(matches!(parse_answer(answer), Err(Failure::BadAnswer(_))), "{answer:?}");
        }
    }

    #[test]
    fn socket_errors_are_told_apart() {
        let kind = |k| Failure::from_io(&io::Error::from(k)).kind();
        assert_eq!(kind(io::ErrorKind::ConnectionRefused), "refused");
        assert_eq!(kind(io::ErrorKind::ConnectionReset), "reset");
        assert_eq!(kind(io::ErrorKind::HostUnreachable), "unreachable");
        assert_eq!(kind(io::ErrorKind::PermissionDenied), "other");
    }

    #[test]
    fn no_failure_is_no_outage() {
        let r = report(&[Some(("a", "node1")), Some(("b", "node2"))]);
        assert_eq!(r.failed(), 0);
        assert_eq!(r.longest_outage(), Duration::ZERO);
        assert_eq!(r.pods_seen(), BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert_eq!(r.nodes_seen(), BTreeSet::from(["node1".to_owned(), "node2".to_owned()]));
    }

    #[test]
    fn the_longest_outage_runs_from_the_first_failure_to_the_next_success() {
        let ok = Some(("a", "node1"));
        let r = report(&[ok, None, ok, None, None, None, ok, None, None]);
        assert_eq!(r.failed(), 6);
        // seq 3 (30 ms) to seq 6 (60 ms).
        assert_eq!(r.longest_outage(), Duration::from_millis(30));
        assert_eq!(r.failures_by_kind(), BTreeMap::from([("refused", 6)]));
    }

    #[test]
    fn an_outage_that_lasts_to_the_end_counts_one_interval_past_its_last_failure() {
        let ok = Some(("a", "node1"));
        let r = report(&[ok, None, None, None, None, None]);
        // seq 1 (10 ms) to seq 5 (50 ms), plus 10 ms.
        assert_eq!(r.longest_outage(), Duration::from_millis(50));
        assert_eq!(report(&[None]).longest_outage(), Duration::from_millis(10));
        assert_eq!(report(&[]).longest_outage(), Duration::ZERO);
    }
}
