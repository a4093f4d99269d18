//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder writes. [`acquire`] waits until
//! this replica holds the Lease and then keeps renewing it in the background; losing it is fatal (the
//! replica stops writing and stands by, then competes again; it never exits for it, so an API outage does
//! not crash-loop the allocator). Expiry is judged by `purelb_core::lease` (monotonic clock), and time
//! during which a standby could not read the Lease does not count towards its expiry: after an outage
//! the holder gets a whole duration to renew before a standby takes over. Optimistic concurrency
//! (resourceVersion) on every write keeps a single holder.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use purelb_core::lease::{LeaseObservation, LeaseVerdict};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Which Lease, who we are, and the timings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the install namespace).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// How often the holder renews, and standbys look.
    pub renew_every: Duration,
}

/// Held leadership: `lost` turns true when renewal fails for a whole lease duration.
pub struct Leadership {
    /// Becomes `true` when the Lease is lost.
    pub lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An object reference to the leader Lease (events about leadership go there).
pub fn reference(cfg: &LeaseConfig) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            ..Default::default()
        },
        spec: None,
    }
}

/// Follows whether the API server answers, for the `api_reachable` and `fail_static_since_seconds`
/// gauges and the log lines when that changes.
struct Reachability {
    metrics: Metrics,
    down_since: Option<Instant>,
}

impl Reachability {
    fn new(metrics: Metrics) -> Self {
        metrics.api_reachable.set(1);
        Self { metrics, down_since: None }
    }

    fn answered(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(after = ?since.elapsed(), "the API server answers again");
        }
        self.metrics.api_reachable.set(1);
        self.metrics.fail_static_since_seconds.set(0);
    }

    fn failed(&mut self) {
        if self.down_since.is_none() {
            tracing::warn!("the API server does not answer: no allocation changes until it does");
            self.down_since = Some(Instant::now());
            let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.metrics.api_reachable.set(0);
            self.metrics.fail_static_since_seconds.set(i64::try_from(unix).unwrap_or(i64::MAX));
        }
    }
}

/// Waits until this replica holds the Lease, then renews it in the background.
pub async fn acquire(client: Client, cfg: LeaseConfig, metrics: Metrics) -> Result<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut seen: Option<LeaseObservation> = None;
    let mut reach = Reachability::new(metrics);
    let mut lease = loop {
        match tokio::time::timeout(
            cfg.renew_every.max(Duration::from_secs(1)),
            try_acquire(&api, &cfg, &mut seen),
        )
        .await
        {
            Ok(Ok(Some(lease))) => {
                reach.answered();
                break lease;
            }
            Ok(Ok(None)) => reach.answered(),
            Ok(Err(e)) => {
                // Not seeing the Lease is no evidence its holder stopped renewing: start over.
                seen = None;
                reach.failed();
                tracing::warn!(error = %e, lease = %cfg.name, "leader election attempt failed");
            }
            Err(_) => {
                seen = None;
                reach.failed();
                tracing::warn!(lease = %cfg.name, "leader election attempt timed out");
            }
        }
        tokio::time::sleep(cfg.renew_every).await;
    };
    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
    let (tx, lost) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut reach = reach;
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(cfg.renew_every).await;
            let attempt =
                tokio::time::timeout(cfg.renew_every.max(Duration::from_secs(1)), renew(&api, &cfg, &lease))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("renewing the Lease timed out")));
            match attempt {
                Ok(l) => {
                    reach.answered();
                    lease = l;
                    last_renewal = Instant::now();
                }
                Err(e) => {
                    reach.failed();
                    tracing::warn!(error = %e, "lease renewal failed");
                    let gone = e.to_string().contains("held by");
                    if gone || last_renewal.elapsed() >= cfg.duration {
                        let _ = tx.send(true);
                        return;
                    }
                    if let Ok(Ok(l)) = tokio::time::timeout(cfg.renew_every, api.get(&cfg.name)).await {
                        lease = l;
                    }
                }
            }
        }
    });
    Ok(Leadership { lost, task })
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
}

fn our_spec(cfg: &LeaseConfig, transitions: i32, acquire: bool, prev: Option<&LeaseSpec>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX).max(1)),
        acquire_time: if acquire { Some(now.clone()) } else { prev.and_then(|p| p.acquire_time.clone()) },
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

async fn try_acquire(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    seen: &mut Option<LeaseObservation>,
) -> Result<Option<Lease>> {
    let Some(existing) = api.get_opt(&cfg.name).await.context("reading the leader Lease")? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(cfg.name.clone()), ..Default::default() },
            spec: Some(our_spec(cfg, 0, true, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(l) => Ok(Some(l)),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        };
    };
    if holder(&existing) == Some(cfg.identity.as_str()) {
        return Ok(Some(renew(api, cfg, &existing).await?));
    }
    let duration = existing
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .unwrap_or(cfg.duration);
    let version = existing.metadata.resource_version.clone().unwrap_or_default();
    let (obs, verdict) =
        LeaseObservation::observe(seen.as_ref(), &version, holder(&existing), duration, Instant::now());
    *seen = Some(obs);
    if verdict == LeaseVerdict::Held {
        return Ok(None);
    }
    let transitions = existing.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0) + 1;
    let mut taken = existing.clone();
    taken.spec = Some(our_spec(cfg, transitions, true, existing.spec.as_ref()));
    match api.replace(&cfg.name, &PostParams::default(), &taken).await {
        Ok(l) => Ok(Some(l)),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Renews with optimistic concurrency (the resourceVersion of our last write).
async fn renew(api: &Api<Lease>, cfg: &LeaseConfig, lease: &Lease) -> Result<Lease> {
    if holder(lease) != Some(cfg.identity.as_str()) {
        bail!("the Lease is held by {:?}", holder(lease));
    }
    let mut next = lease.clone();
    let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
    next.spec = Some(our_spec(cfg, transitions, false, lease.spec.as_ref()));
    match api.replace(&cfg.name, &PostParams::default(), &next).await {
        Ok(l) => Ok(l),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let current = api.get(&cfg.name).await?;
            if holder(&current) != Some(cfg.identity.as_str()) {
                bail!("the Lease is held by {:?}", holder(&current));
            }
            Ok(api
                .replace(&cfg.name, &PostParams::default(), &{
                    let mut n = current.clone();
                    n.spec = Some(our_spec(cfg, transitions, false, current.spec.as_ref()));
                    n
                })
                .await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives the Lease up (empty holder) so a standby takes over at once. Best effort.
pub async fn release(client: Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Ok(mut lease) = api.get(&cfg.name).await else { return };
    if holder(&lease) != Some(cfg.identity.as_str()) {
        return;
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
    }
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => tracing::info!(lease = %cfg.name, "released leadership"),
        Err(e) => tracing::warn!(error = %e, "could not release the Lease"),
    }
}
