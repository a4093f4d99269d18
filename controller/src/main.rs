//! purelb-allocator: gives `type: LoadBalancer` Services addresses from ServiceGroups. A thin shell:
//! flags, logging, admin server, leader election, watches — and `purelb_core::allocate` decides.

mod allocator;
mod k8s;
mod lease;
mod metrics;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use purelb_core::api::{ServiceGroup, conditions, events, install};
use purelb_core::service::CachedService;
use tokio::sync::mpsc;

/// PureLB's allocator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The namespace PureLB is installed in (leader Lease; groups with --groups-in-namespace-only).
    #[arg(long, env = "POD_NAMESPACE", default_value = install::DEFAULT_NAMESPACE)]
    namespace: String,
    /// This replica's identity in the leader Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Leave class-less LoadBalancer Services to other controllers (only `purelb.io/purelb` is ours).
    #[arg(long)]
    ignore_classless: bool,
    /// Read ServiceGroups only from --namespace instead of every namespace.
    #[arg(long)]
    groups_in_namespace_only: bool,
    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Do not elect a leader (a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Leader Lease duration, seconds.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// Leader Lease renewal interval, milliseconds.
    #[arg(long, default_value_t = 2000)]
    lease_renew_ms: u64,
    /// Services written concurrently.
    #[arg(long, default_value_t = 32)]
    write_concurrency: usize,
    /// Log as JSON lines (default) or plain text.
    #[arg(long, default_value = "json")]
    log_format: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    purelb_runtime::init_logging(&args.log_format);
    let identity =
        args.identity.clone().unwrap_or_else(|| format!("purelb-allocator-{}", std::process::id()));
    tracing::info!(version = env!("CARGO_PKG_VERSION"), %identity, namespace = %args.namespace, "starting");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::register(&mut registry);
    let admin = purelb_runtime::Admin::new(registry);
    let admin_task = tokio::spawn(admin.clone().serve(args.admin_addr));

    let client =
        Client::try_default().await.context("building the Kubernetes client (kubeconfig or in-cluster)")?;
    let stop = purelb_runtime::stop_on_signals();
    let lease_cfg = lease::LeaseConfig {
        namespace: args.namespace.clone(),
        name: install::ALLOCATOR.into(),
        identity: identity.clone(),
        duration: Duration::from_secs(args.lease_duration),
        renew_every: Duration::from_millis(args.lease_renew_ms),
    };
    let mut stop_wait = stop.clone();
    let mut admin_task = admin_task;
    // Leadership lost to silence (the API server away for a whole Lease duration) is not fatal: the
    // replica stops writing, stands by, and competes again when the API returns. Exiting instead would
    // crash-loop every replica through an API outage.
    let mut lost_at: Option<std::time::Instant> = None;
    let result = loop {
        let leadership = if args.no_leader_election {
            None
        } else {
            tokio::select! {
                l = lease::acquire(client.clone(), lease_cfg.clone(), metrics.clone()) => Some(l?),
                _ = stop_wait.changed() => return Ok(()),
            }
        };

        // Cut down before anything holds them: the cache keeps about 0.85 KB per Service.
        let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .map(|e| {
                e.map(|ev| {
                    let cached =
                        purelb_runtime::map_event(ev, |s| CachedService::new(&s, conditions::ALLOCATED));
                    allocator::Change::Service(Box::new(cached))
                })
            });
        let groups_api: Api<ServiceGroup> = if args.groups_in_namespace_only {
            Api::namespaced(client.clone(), &args.namespace)
        } else {
            Api::all(client.clone())
        };
        let groups = watcher(groups_api, watcher::Config::default())
            .default_backoff()
            .map(|e| e.map(|ev| allocator::Change::Group(Box::new(ev))));
        let changes = futures::stream::select(services, groups);

        let (failed_tx, failed_rx) = mpsc::unbounded_channel();
        let writer = k8s::Writer::new(client.clone(), identity.clone(), args.write_concurrency, failed_tx);
        if let Some(at) = lost_at.take() {
            let message = format!(
                "{identity} leads again after {:.1} s without the API server; the allocations were rebuilt from the Services, none changed",
                at.elapsed().as_secs_f64()
            );
            tracing::info!(%message, "leading again");
            writer
                .event_on(&lease::reference(&lease_cfg), false, events::API_SERVER_REACHABLE, message)
                .await;
        }
        let settings = allocator::Settings { classless_ours: !args.ignore_classless };
        let draining = writer.clone();
        let run = allocator::Allocator::new(settings, writer, metrics.clone()).run(
            changes,
            failed_rx,
            admin.clone(),
            stop.clone(),
        );

        match leadership {
            Some(mut l) => tokio::select! {
                r = run => break (r, draining),
                _ = l.lost.changed() => {
                    // Stop writing at once: another replica may lead after this Lease expires.
                    draining.halt();
                    admin.set_ready(false);
                    tracing::warn!("lost the leader Lease (not renewed for a whole duration); standing by until it can be taken again");
                    lost_at = Some(std::time::Instant::now());
                }
                r = &mut admin_task => break (Err(anyhow::anyhow!("admin server ended: {r:?}")), draining),
            },
            None => tokio::select! {
                r = run => break (r, draining),
                r = &mut admin_task => break (Err(anyhow::anyhow!("admin server ended: {r:?}")), draining),
            },
        }
    };
    let (result, draining) = result;
    admin.set_ready(false);
    // Finish what was decided before giving up leadership, so the next leader sees it written.
    draining.drain(Duration::from_secs(10)).await;
    if !args.no_leader_election {
        // Give up the Lease last, after the loop has stopped writing, so the next leader starts at once.
        lease::release(client, &lease_cfg).await;
    }
    result
}
