//! purelb-agent: one per node; puts each PureLB address on the right interface of the right node.
//! A thin shell: flags, logging, admin server, the node Lease, six watches — and
//! `purelb_core::announce` decides.
//!
//! Modules: `announcer` (the loop), `desired` (desired set and kernel diff), `k8s` (API writes), `lease`
//! (node Lease renewal and liveness), `config` (LBNodeAgent → interfaces), `metrics`, and the kernel
//! adapters `netlink` and `garp`. What it decides comes from `purelb_core::announce` (`facts`, `report`).
//!
//! Shutdown (SIGTERM), make before break: stop reconciling, delete the node Lease (the others elect new
//! holders at once on its deletion), keep each local address until another node's gratuitous ARP / NA
//! for it is heard (at most `--handover-timeout-ms`), then withdraw the local addresses and, only when
//! PureLB is being uninstalled (the DaemonSet gone or being deleted), the routed ones too (`shutdown`);
//! then exit. A second signal exits at once.
//!
//! Timing defaults: the Lease lasts 4 s and is renewed every 2 s, so a node that vanishes loses its
//! addresses after at most 4 s (+ the 250 ms liveness tick and the watch latency): under 5 s; and each
//! node writes 0.5 Lease updates per second.

mod announcer;
mod config;
mod conflict;
mod dataplane;
mod desired;
mod garp;
mod k8s;
mod lease;
mod metrics;
mod netlink;
mod shutdown;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use purelb_core::announce::facts;
use purelb_core::api::{LBNodeAgent, ServiceGroup, conditions, install};
use purelb_core::service::CachedService;
use purelb_runtime::{EventLimits, map_event};
use tokio::sync::{mpsc, watch};

use crate::announcer::{Announcer, Change, Parts, Settings};

/// PureLB's node agent.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// This node's name (the Kubernetes Node name).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// The namespace PureLB is installed in (node Leases, LBNodeAgents).
    #[arg(long, env = "POD_NAMESPACE", default_value = install::DEFAULT_NAMESPACE)]
    namespace: String,
    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9091")]
    admin_addr: SocketAddr,
    /// Node Lease duration, milliseconds (written rounded up to whole seconds).
    #[arg(long, default_value_t = 4000)]
    lease_duration_ms: u64,
    /// Node Lease renewal interval, milliseconds.
    #[arg(long, default_value_t = 2000)]
    lease_renew_ms: u64,
    /// Gratuitous ARP / unsolicited NA packets sent per takeover.
    #[arg(long, default_value_t = 3)]
    garp_count: u32,
    /// Gap between them, milliseconds.
    #[arg(long, default_value_t = 50)]
    garp_interval_ms: u64,
    /// On SIGTERM, how long each local address is kept after the Lease is given up, waiting for its
    /// next holder's gratuitous ARP / NA, milliseconds.
    #[arg(long, default_value_t = 3000)]
    handover_timeout_ms: u64,
    /// The agent's own DaemonSet (in --namespace): on SIGTERM, routed addresses are withdrawn only if
    /// it is gone or being deleted (an uninstall); otherwise the next agent adopts them.
    #[arg(long, default_value = install::AGENT)]
    daemonset: String,
    /// Services whose report is written concurrently.
    #[arg(long, default_value_t = 16)]
    write_concurrency: usize,
    /// Events published per second on average, once the burst is spent (as the kubelet's
    /// --event-qps); beyond 1,000 waiting, an event is dropped and counted.
    #[arg(long, default_value_t = EventLimits::DEFAULT.per_second, value_parser = positive_rate)]
    event_qps: f64,
    /// Events published at once after a quiet period (as the kubelet's --event-burst).
    #[arg(long, default_value_t = EventLimits::DEFAULT.burst, value_parser = clap::value_parser!(u32).range(1..))]
    event_burst: u32,
    /// Log as JSON lines (default) or plain text.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
}

/// A rate above zero (events per second).
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate above zero")),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    purelb_runtime::init_logging(&args.log_format);
    let node = args.node_name.trim().to_string();
    if node.is_empty() {
        bail!("--node-name (NODE_NAME) is empty");
    }
    // The Lease has whole seconds: judge our own liveness by what the others will read.
    let lease_duration = Duration::from_secs(
        u64::try_from(lease::duration_seconds(Duration::from_millis(args.lease_duration_ms))).unwrap_or(1),
    );
    let renew_every = Duration::from_millis(args.lease_renew_ms);
    if renew_every >= lease_duration {
        bail!(
            "--lease-renew-ms ({renew_every:?}) must be shorter than the Lease duration ({lease_duration:?})"
        );
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %node, namespace = %args.namespace, ?lease_duration, ?renew_every, "starting");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let admin = purelb_runtime::Admin::new(registry);
    let admin_task = tokio::spawn(admin.clone().serve(args.admin_addr));

    let netlink = netlink::Netlink::new().context("opening rtnetlink")?;
    let client =
        Client::try_default().await.context("building the Kubernetes client (kubeconfig or in-cluster)")?;
    let stop = purelb_runtime::stop_on_signals();

    let (config_tx, config_rx) = watch::channel(None);
    let (renewed_tx, renewed_rx) = watch::channel(None::<lease::Renewal>);
    let renew_now = std::sync::Arc::new(tokio::sync::Notify::new());
    let leases: Api<Lease> = Api::namespaced(client.clone(), &args.namespace);
    let renewer = lease::Renewer {
        api: leases.clone(),
        namespace: args.namespace.clone(),
        node: node.clone(),
        duration: lease_duration,
        every: renew_every,
        netlink: netlink.clone(),
        config: config_rx,
        renewed: renewed_tx,
        renew_now: renew_now.clone(),
        metrics: metrics.clone(),
    };
    let (renew_stop, renew_stopped) = watch::channel(false);
    let renew_task = tokio::spawn(renewer.run(renew_stopped));

    let changes = watches(&client, &args.namespace);
    let removals = match netlink.removals() {
        Ok(s) => s
            .chain(
                futures::stream::once(async {
                    tracing::warn!("the kernel's address notices ended; relying on the periodic resync");
                    None
                })
                .filter_map(|x: Option<IpAddr>| async move { x }),
            )
            .chain(futures::stream::pending())
            .boxed(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow address removals; relying on the periodic resync");
            futures::stream::pending().boxed()
        }
    };
    let (failed_tx, failed_rx) = mpsc::unbounded_channel();
    let limits = EventLimits { per_second: args.event_qps, burst: args.event_burst, ..EventLimits::DEFAULT };
    let writer =
        k8s::Writer::new(client.clone(), &node, args.write_concurrency, limits, failed_tx, metrics.clone());
    let settings = Settings {
        node: node.clone(),
        garp_count: args.garp_count,
        garp_interval: Duration::from_millis(args.garp_interval_ms),
    };
    let parts = Parts {
        dataplane: netlink.clone(),
        writer,
        metrics,
        admin: admin.clone(),
        config: config_tx,
        renewed: renewed_rx,
        renew_now,
        lease_duration,
    };
    let run = Announcer::new(settings, parts).run(changes, removals, failed_rx, stop);

    let outcome = tokio::select! {
        r = run => r.map_err(anyhow::Error::from),
        r = admin_task => Err(anyhow::anyhow!("admin server ended: {r:?}")),
    };
    admin.set_ready(false);
    // Give up the Lease: the others elect the next holders at once.
    let _ = renew_stop.send(true);
    if tokio::time::timeout(renew_every * 2, renew_task).await.is_err() {
        tracing::warn!("the Lease renewer did not stop in time");
    }
    // Keep each local address until its next holder announces it; routed ones stay unless PureLB is
    // being uninstalled (see `shutdown`). The Lease's deletion and the DaemonSet's read go together, so
    // a slow API server costs the grace period once, not twice.
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &args.namespace);
    let ((), departure) = tokio::join!(
        lease::delete(&leases, &node, Duration::from_secs(5)),
        shutdown::read_departure(&daemonsets, &args.daemonset, Duration::from_secs(3)),
    );
    tracing::info!(?departure, "departure judged");
    let (result, local) = match outcome {
        Ok(mut handover) => {
            let unclaimed = handover.wait(Duration::from_millis(args.handover_timeout_ms)).await;
            if !unclaimed.is_empty() {
                tracing::warn!(addresses = ?unclaimed, "no other node announced these in time; withdrawing them anyway");
            }
            (Ok(()), Some(handover.local().clone()))
        }
        // The loop failed: nothing is known about what is local; withdraw everything.
        Err(e) => (Err(e), None),
    };
    let only = match (&departure, &local) {
        (shutdown::Departure::Restart(why), Some(local)) => {
            tracing::info!(reason = %why, "restarting, not uninstalling: routed addresses stay for the next agent");
            Some(local)
        }
        (shutdown::Departure::Uninstall(why), _) => {
            tracing::info!(reason = %why, "uninstalling: withdrawing every address");
            None
        }
        (_, None) => None,
    };
    match shutdown::withdraw(&netlink, only).await {
        Ok(n) => tracing::info!(addresses = n, "withdrew addresses"),
        Err(e) => tracing::error!(error = %e, "could not list our addresses to withdraw them"),
    }
    result
}

/// The six watches, merged.
fn watches(
    client: &Client,
    namespace: &str,
) -> impl futures::Stream<Item = Result<Change, watcher::Error>> + Send + 'static {
    let all = watcher::Config::default();
    let services = watcher(Api::<Service>::all(client.clone()), all.clone())
        .default_backoff()
        .map(|e| {
            e.map(|ev| Change::Service(map_event(ev, |s| CachedService::new(&s, conditions::ANNOUNCED))))
        })
        .boxed();
    let slices = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(facts::SERVICE_NAME_LABEL),
    )
    .default_backoff()
    .map(|e| e.map(|ev| Change::Slice(ev.modify(facts::trim_slice))))
    .boxed();
    let leases = watcher(
        Api::<Lease>::namespaced(client.clone(), namespace),
        watcher::Config::default().labels(&format!("{}={}", lease::LEASE_LABEL.0, lease::LEASE_LABEL.1)),
    )
    .default_backoff()
    .map(|e| e.map(Change::Lease))
    .boxed();
    // Whole Nodes (their Ready condition tells a graceful shutdown), trimmed before they are cached.
    let nodes = watcher(Api::<Node>::all(client.clone()), all.clone())
        .default_backoff()
        .map(|e| e.map(|ev| Change::Node(Box::new(ev.modify(facts::trim_node)))))
        .boxed();
    let groups = watcher(Api::<ServiceGroup>::all(client.clone()), all.clone())
        .default_backoff()
        .map(|e| e.map(|ev| Change::Group(Box::new(ev))))
        .boxed();
    let agents = watcher(Api::<LBNodeAgent>::namespaced(client.clone(), namespace), all)
        .default_backoff()
        .map(|e| e.map(Change::Agent))
        .boxed();
    futures::stream::select_all([services, slices, leases, nodes, groups, agents])
}
