//! What the lab's benches share: when a watch first showed each Service with an ingress, and the p50/p99
//! report line.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

/// For each Service of a namespace, when a watch first showed it with an ingress.
pub struct IngressSeen {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl IngressSeen {
    /// Starts watching `ns`.
    pub fn start(client: kube::Client, ns: &str) -> IngressSeen {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let api: Api<Service> = Api::namespaced(client, ns);
        let out = seen.clone();
        let task = tokio::spawn(async move {
            let mut s = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
            while let Some(Ok(svc)) = s.next().await {
                let has_ingress = svc
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|l| l.ingress.as_ref())
                    .is_some_and(|i| !i.is_empty());
                if has_ingress {
                    out.lock().unwrap().entry(svc.name_any()).or_insert_with(Instant::now);
                }
            }
        });
        IngressSeen { seen, task }
    }

    /// Waits (at most 300 s) until every one of `names` was seen with an ingress.
    pub async fn wait_all(&self, names: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while names.iter().any(|n| !self.seen.lock().unwrap().contains_key(n)) {
            assert!(Instant::now() < deadline, "not every Service got an address within 300 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// When `name` was first seen with an ingress (waits for it).
    pub async fn when(&self, name: &str) -> Instant {
        self.wait_all(&[name.to_string()]).await;
        self.seen.lock().unwrap()[name]
    }

    /// Everything seen so far.
    pub fn snapshot(&self) -> HashMap<String, Instant> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for IngressSeen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Prints `name: n=… p50=… ms p99=… ms max=… ms`.
pub fn report(name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    let pct = |p: f64| lat[(((lat.len() - 1) as f64) * p).round() as usize].as_secs_f64() * 1e3;
    println!("{name}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms", lat.len(), pct(0.5), pct(0.99), pct(1.0));
}
