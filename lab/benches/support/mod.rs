//! What the lab's benches share: when a watch first showed each Service with an ingress, the p50/p99
//! report line, knobs from the environment, the API server's request counters, and a process's CPU
//! seconds and memory from /proc.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
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
        if let Err(missing) = self.try_wait_all(names, Duration::from_secs(300)).await {
            panic!("{missing} Services got no address within 300 s");
        }
    }

    /// Waits (at most `timeout`) until every one of `names` was seen with an ingress; Err: how many
    /// were not.
    pub async fn try_wait_all(&self, names: &[String], timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = names.iter().filter(|n| !self.seen.lock().unwrap().contains_key(*n)).count();
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(missing);
            }
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

/// The environment variable `name` as a number, else `default`.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `apiserver_request_total` summed over codes, scopes and versions: "VERB resource[.group][/subresource]"
/// → count. Non-resource requests (/metrics, /healthz) are left out.
pub type Requests = BTreeMap<String, f64>;

pub async fn request_totals(client: &kube::Client) -> Requests {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.expect("reading the API server's /metrics");
    let mut out = Requests::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line["apiserver_request_total{".len()..].rsplit_once("} ") else {
            continue;
        };
        let labels: HashMap<&str, &str> = labels
            .split("\",")
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k, v.trim_end_matches('"')))
            .collect();
        let resource = labels.get("resource").copied().unwrap_or("");
        if resource.is_empty() {
            continue;
        }
        let mut key = format!("{} {resource}", labels.get("verb").copied().unwrap_or("?"));
        if let Some(g) = labels.get("group").filter(|g| !g.is_empty()) {
            key += &format!(".{g}");
        }
        if let Some(s) = labels.get("subresource").filter(|s| !s.is_empty()) {
            key += &format!("/{s}");
        }
        // Failures apart (a 409 is a write lost to a conflict and retried, a 404 a delete of nothing).
        if let Some(code) = labels.get("code").filter(|c| !c.starts_with('2')) {
            key += &format!(" ({code})");
        }
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

pub fn delta(after: &Requests, before: &Requests) -> Requests {
    after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0))).collect()
}

/// User plus system CPU seconds of process `pid` so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<u64> =
        stat.rsplit_once(')').unwrap().1.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the ")": state is field 3 (not a number, so skipped), utime and stime are fields 14 and 15.
    let ticks = f[10] + f[11];
    ticks as f64 / clock_ticks_per_second()
}

/// USER_HZ (100 on Linux everywhere in practice; asked of getconf to be sure).
pub fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A `Vm*` line of /proc/PID/status, in MB.
pub fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// The `p` quantile of `sorted`, in ms.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize].as_secs_f64() * 1e3
}

/// The sum of an agent's samples whose line starts with `metric` (a name, or a name and its labels),
/// read from its admin server inside its node's namespace; `None` when it cannot be read.
pub fn agent_metric(node: &purelb_lab::LabNode, admin: &str, metric: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = node.tcp_connect(admin.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let samples = text.lines().filter(|l| {
        l.strip_prefix(metric)
            .is_some_and(|rest| rest.starts_with(' ') || (rest.starts_with('{') && !metric.contains('{')))
    });
    Some(samples.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}
