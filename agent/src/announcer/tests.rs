//! Unit tests of the announcer loop through the fake data plane: watch events in, the fake's links
//! out. No kernel; the API writes go to an address nothing listens on (they fail and are retried in
//! the background, which the loop tolerates as it does in production).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use purelb_core::api::ServiceGroup;
use purelb_core::api::conditions;
use purelb_core::pool::Subnet;
use purelb_core::service::CachedService;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{Announcer, Change, Parts, Settings};
use crate::dataplane::fake::FakeDataPlane;
use crate::lease::{LanFacts, Renewal, lease_body};

const NODE: &str = "node-a";
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 11];

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// A Service PureLB allocated `address` from `group`, as the agent caches it.
fn service(name: &str, address: &str, group: &str) -> CachedService {
    cached(&object(name, address, group))
}

fn cached(svc: &Service) -> CachedService {
    CachedService::new(svc, conditions::ANNOUNCED)
}

/// [`service`], whole.
fn object(name: &str, address: &str, group: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "t", "resourceVersion": "1", "annotations": {
            "purelb.io/allocated-by": "PureLB", "purelb.io/allocated-from": group}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": address}]}},
    }))
    .expect("a Service")
}

fn group(name: &str, subnet: &str, pool: &str) -> ServiceGroup {
    serde_json::from_value(json!({
        "apiVersion": "purelb.io/v1", "kind": "ServiceGroup",
        "metadata": {"name": name, "namespace": "purelb-system"},
        "spec": {"local": {"v4pools": [{"subnet": subnet, "pool": pool, "aggregation": "default"}]}},
    }))
    .expect("a ServiceGroup")
}

fn lan() -> LanFacts {
    LanFacts { interface: "eth0".into(), subnets: vec![Subnet::parse("192.0.2.0/24").expect("a subnet")] }
}

fn own_lease(duration: Duration) -> Lease {
    let mut body = lease_body(NODE, "purelb-system", &lan(), duration, &MicroTime(Timestamp::now()));
    body["metadata"]["resourceVersion"] = json!("1");
    serde_json::from_value(body).expect("a Lease")
}

/// A node with `eth0` (192.0.2.11/24) in the fake.
fn node_network() -> FakeDataPlane {
    FakeDataPlane::default().with_link("eth0", Some(MAC), &[(ip("192.0.2.11"), 24)])
}

type Feed = futures::channel::mpsc::UnboundedSender<Result<Change, watcher::Error>>;

/// A running announcer: its watch feed and its stop switch.
struct Running {
    feed: Feed,
    /// The kernel's removal notices.
    removals: futures::channel::mpsc::UnboundedSender<IpAddr>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _failed: mpsc::UnboundedSender<purelb_core::allocate::ServiceKey>,
}

impl Running {
    fn send(&self, change: Change) {
        self.feed.unbounded_send(Ok(change)).expect("the loop listens");
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn listed<K>(objects: Vec<K>, wrap: impl Fn(watcher::Event<K>) -> Change) -> Vec<Change> {
    let mut out = vec![wrap(watcher::Event::Init)];
    out.extend(objects.into_iter().map(|o| wrap(watcher::Event::InitApply(o))));
    out.push(wrap(watcher::Event::InitDone));
    out
}

/// Starts the loop on `dp` with `services` listed, the local group `local` (192.0.2.200-220) and the
/// routed group `remote` (198.51.100.0/24), and this node's Lease lasting `lease`.
fn start(dp: &FakeDataPlane, services: Vec<CachedService>, lease: Duration) -> Running {
    start_with(dp, services, lease, Vec::new())
}

/// [`start`], with the Leases of other nodes listed beside this node's own.
fn start_with(
    dp: &FakeDataPlane,
    services: Vec<CachedService>,
    lease: Duration,
    others: Vec<Lease>,
) -> Running {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::metrics::Metrics::register(&mut registry);
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URI"));
    let client = kube::Client::try_from(config).expect("a client");
    let (failed_tx, failed_rx) = mpsc::unbounded_channel();
    let writer = crate::k8s::Writer::new(
        client,
        NODE,
        4,
        purelb_runtime::EventLimits::DEFAULT,
        failed_tx.clone(),
        metrics.clone(),
    );
    let (config_tx, _config_rx) = watch::channel(None);
    let renewal = Renewal { at: Instant::now(), version: "1".into(), lan: lan() };
    let (_renewed_tx, renewed_rx) = watch::channel(Some(renewal));
    let parts = Parts {
        dataplane: dp.clone(),
        writer,
        metrics,
        admin: purelb_runtime::Admin::new(registry),
        config: config_tx,
        renewed: renewed_rx,
        renew_now: std::sync::Arc::new(tokio::sync::Notify::new()),
        lease_duration: lease,
    };
    let settings = Settings { node: NODE.into(), garp_count: 1, garp_interval: Duration::ZERO };
    let (feed, changes) = futures::channel::mpsc::unbounded();
    let (removals, removed) = futures::channel::mpsc::unbounded();
    let (stop, stopped) = watch::channel(false);
    let announcer = Announcer::new(settings, parts);
    let task = tokio::spawn(async move {
        let _keep_renewed = _renewed_tx;
        let _ = announcer.run(changes, removed.boxed(), failed_rx, stopped).await;
    });
    let running = Running { feed, removals, stop, task, _failed: failed_tx };
    let groups = vec![
        group("local", "192.0.2.0/24", "192.0.2.200-192.0.2.220"),
        group("remote", "198.51.100.0/24", "198.51.100.0/24"),
    ];
    let initial = [
        listed(services, Change::Service),
        listed(Vec::new(), Change::Slice),
        listed(std::iter::once(own_lease(lease)).chain(others).collect(), Change::Lease),
        listed(Vec::new(), |e| Change::Node(Box::new(e))),
        listed(groups, |e| Change::Group(Box::new(e))),
        listed(Vec::new(), Change::Agent),
    ];
    for change in initial.into_iter().flatten() {
        running.send(change);
    }
    running
}

/// Waits up to 3 s for `done`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holds(dp: &FakeDataPlane, link: &str, address: &str) -> bool {
    dp.addresses(link).iter().any(|(a, _, ours)| *a == ip(address) && *ours)
}

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_local_service_goes_on_the_lan_interface_with_garp() {
    let dp = node_network();
    let running = start(&dp, vec![service("web", "192.0.2.200", "local")], LONG);
    eventually("192.0.2.200 on eth0", || holds(&dp, "eth0", "192.0.2.200")).await;
    eventually("a GARP for it", || dp.announced().contains(&("eth0".into(), ip("192.0.2.200")))).await;
    assert!(!holds(&dp, "kube-lb0", "192.0.2.200"));
    running.stop().await;
}

#[tokio::test]
async fn a_routed_service_goes_on_kube_lb0() {
    let dp = node_network();
    let running = start(&dp, vec![service("api", "198.51.100.5", "remote")], LONG);
    eventually("198.51.100.5 on kube-lb0", || holds(&dp, "kube-lb0", "198.51.100.5")).await;
    assert!(!holds(&dp, "eth0", "198.51.100.5"));
    assert!(dp.announced().is_empty(), "no GARP for a routed address");
    running.stop().await;
}

#[tokio::test]
async fn a_deleted_service_removes_only_what_we_added() {
    let dp = node_network();
    dp.put("eth0", ip("192.0.2.201"), 32, false);
    let web = service("web", "192.0.2.200", "local");
    let running = start(&dp, vec![web.clone(), service("db", "192.0.2.202", "local")], LONG);
    eventually("both on eth0", || holds(&dp, "eth0", "192.0.2.200") && holds(&dp, "eth0", "192.0.2.202"))
        .await;
    running.send(Change::Service(watcher::Event::Delete(web)));
    eventually("192.0.2.200 withdrawn", || !holds(&dp, "eth0", "192.0.2.200")).await;
    let left: Vec<IpAddr> = dp.addresses("eth0").iter().map(|(a, _, _)| *a).collect();
    assert_eq!(left, vec![ip("192.0.2.11"), ip("192.0.2.201"), ip("192.0.2.202")]);
    running.stop().await;
}

#[tokio::test]
async fn an_address_we_did_not_add_is_never_removed() {
    let dp = node_network();
    // A killed agent's orphan (tagged) and an operator's address inside the pool (untagged).
    dp.put("eth0", ip("192.0.2.210"), 24, true);
    dp.put("eth0", ip("192.0.2.205"), 24, false);
    let running = start(&dp, vec![service("web", "192.0.2.200", "local")], LONG);
    eventually("192.0.2.200 on eth0", || holds(&dp, "eth0", "192.0.2.200")).await;
    eventually("the orphan removed", || !holds(&dp, "eth0", "192.0.2.210")).await;
    assert!(dp.addresses("eth0").contains(&(ip("192.0.2.205"), 24, false)), "{:?}", dp.addresses("eth0"));
    assert!(dp.addresses("eth0").contains(&(ip("192.0.2.11"), 24, false)));
    running.stop().await;
}

#[tokio::test]
async fn api_silence_changes_nothing() {
    let dp = node_network();
    // A one-second Lease that is never seen renewed again: the view turns stale (fail-static).
    let services = vec![service("web", "192.0.2.200", "local"), service("api", "198.51.100.5", "remote")];
    let running = start(&dp, services, Duration::from_secs(1));
    eventually("both in place", || {
        holds(&dp, "eth0", "192.0.2.200") && holds(&dp, "kube-lb0", "198.51.100.5")
    })
    .await;
    let before = (dp.addresses("eth0"), dp.addresses("kube-lb0"));
    // Silence for well over the Lease duration, then the kernel drifts: someone removes the local
    // address, and the reconcile that follows, on a stale view, must put it back and withdraw nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    dp.take_away(ip("192.0.2.200"));
    running.removals.unbounded_send(ip("192.0.2.200")).expect("the loop listens");
    eventually("192.0.2.200 put back", || holds(&dp, "eth0", "192.0.2.200")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((dp.addresses("eth0"), dp.addresses("kube-lb0")), before);
    running.stop().await;
}

#[tokio::test]
async fn a_shared_address_stays_until_its_last_service_goes() {
    let dp = node_network();
    let (a, b) = (service("a", "198.51.100.5", "remote"), service("b", "198.51.100.5", "remote"));
    let running = start(&dp, vec![a.clone(), b.clone()], LONG);
    eventually("198.51.100.5 on kube-lb0", || holds(&dp, "kube-lb0", "198.51.100.5")).await;
    // One Service goes and another comes: once the newcomer is placed, the shared address is still
    // there, since b still places it.
    running.send(Change::Service(watcher::Event::Delete(a)));
    running.send(Change::Service(watcher::Event::Apply(service("c", "198.51.100.6", "remote"))));
    eventually("198.51.100.6 on kube-lb0", || holds(&dp, "kube-lb0", "198.51.100.6")).await;
    assert!(holds(&dp, "kube-lb0", "198.51.100.5"), "b still places it");
    running.send(Change::Service(watcher::Event::Delete(b)));
    eventually("198.51.100.5 withdrawn", || !holds(&dp, "kube-lb0", "198.51.100.5")).await;
    assert!(holds(&dp, "kube-lb0", "198.51.100.6"));
    running.stop().await;
}

fn slice(name: &str, service: &str, node: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "t", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": node, "conditions": {"ready": true}}],
    }))
    .expect("an EndpointSlice")
}

#[tokio::test]
async fn each_endpoint_slice_event_moves_an_etp_local_address() {
    let dp = node_network();
    let mut svc = object("api", "198.51.100.7", "remote");
    svc.spec.as_mut().expect("a spec").external_traffic_policy = Some("Local".into());
    let running = start(&dp, vec![cached(&svc)], LONG);
    // Not here without an endpoint on this node (checked once a routed neighbour is placed).
    running.send(Change::Service(watcher::Event::Apply(service("other", "198.51.100.8", "remote"))));
    eventually("the neighbour placed", || holds(&dp, "kube-lb0", "198.51.100.8")).await;
    assert!(!holds(&dp, "kube-lb0", "198.51.100.7"), "no endpoint here yet");
    running.send(Change::Slice(watcher::Event::Apply(slice("api-1", "api", "node-b"))));
    running.send(Change::Slice(watcher::Event::Apply(slice("api-2", "api", NODE))));
    eventually("198.51.100.7 placed with an endpoint here", || holds(&dp, "kube-lb0", "198.51.100.7")).await;
    // The endpoint moves to another node: the same slice now names node-b.
    running.send(Change::Slice(watcher::Event::Apply(slice("api-2", "api", "node-b"))));
    eventually("198.51.100.7 withdrawn", || !holds(&dp, "kube-lb0", "198.51.100.7")).await;
    running.send(Change::Slice(watcher::Event::Apply(slice("api-3", "api", NODE))));
    eventually("placed again", || holds(&dp, "kube-lb0", "198.51.100.7")).await;
    running.send(Change::Slice(watcher::Event::Delete(slice("api-3", "api", NODE))));
    eventually("withdrawn again", || !holds(&dp, "kube-lb0", "198.51.100.7")).await;
    running.stop().await;
}

/// Another node's Lease, renewed now.
fn peer_lease(node: &str) -> Lease {
    let mut body = lease_body(node, "purelb-system", &lan(), LONG, &MicroTime(Timestamp::now()));
    body["metadata"]["resourceVersion"] = json!("1");
    serde_json::from_value(body).expect("a Lease")
}

#[tokio::test]
async fn a_local_address_moves_here_when_its_holders_lease_goes() {
    let dp = node_network();
    let mut web = object("web", "192.0.2.200", "local");
    web.metadata
        .annotations
        .get_or_insert_default()
        .insert("purelb.io/announcing-IPv4".into(), "node-b, eth0".into());
    let services = vec![cached(&web), service("api", "198.51.100.5", "remote")];
    let running = start_with(&dp, services, LONG, vec![peer_lease("node-b")]);
    eventually("the routed address in place", || holds(&dp, "kube-lb0", "198.51.100.5")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!holds(&dp, "eth0", "192.0.2.200"), "node-b announces it and is live: it keeps it");
    // node-b leaves (its agent deleted its Lease on shutdown): positive evidence, the address moves here.
    running.send(Change::Lease(watcher::Event::Delete(peer_lease("node-b"))));
    eventually("192.0.2.200 taken over", || holds(&dp, "eth0", "192.0.2.200")).await;
    assert!(holds(&dp, "kube-lb0", "198.51.100.5"), "the routed address stays");
    running.stop().await;
}
