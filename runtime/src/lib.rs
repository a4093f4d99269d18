//! purelb-runtime: the runtime concerns both daemons share, in one place (the kubert shape).
//!
//! - [`admin`]: the admin HTTP server: `/livez`, `/readyz`, `/metrics`.
//! - [`batch`]: a watch event and every one already waiting, taken together.
//! - [`cache`]: one watch's objects by (namespace, name), re-lists handled, and what each event touched.
//! - [`init_logging`]: JSON (default) or text logs on stderr, filtered by `RUST_LOG`.
//! - [`shutdown_signal`]: resolves on SIGTERM or Ctrl-C.
//! - [`keyed`]: work per key (a Service's writes), one at a time per key, the newest winning.
//! - [`retry`]: one API write with a timeout per call, retried with backoff under a [`RetryPolicy`].
//! - [`events`]: Kubernetes events published in order, rate-limited, at most a few at once, dropped
//!   beyond a bounded queue.
//! - [`publisher`]: writes those events (`events.k8s.io/v1`), a repeat as a count on the first, keeping
//!   a key and a name per recent event rather than the whole Event.

pub mod admin;
pub mod batch;
pub mod cache;
pub mod events;
pub mod keyed;
pub mod publisher;
pub mod retry;

pub use admin::Admin;
pub use batch::{Batch, take_ready};
pub use cache::{Cache, ObjectId, Touched, map_event};
pub use events::{EventLimits, EventQueue, PushError};
pub use keyed::Keyed;
pub use publisher::Publisher;
pub use retry::{RetryError, RetryPolicy, retry};

/// Installs the global tracing subscriber: `format` is `json` or anything else for plain text.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Spawns the usual signal handling: the first signal flips `stop` to true; a second one exits at once.
/// Signals within a second of the first are taken as the same request (a supervisor that signals both a
/// process group and its leader delivers two), so only a deliberate second signal aborts.
pub fn stop_on_signals() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let first = std::time::Instant::now();
        tracing::info!("shutting down");
        let _ = tx.send(true);
        loop {
            shutdown_signal().await;
            if first.elapsed() >= std::time::Duration::from_secs(1) {
                break;
            }
        }
        tracing::warn!("second signal: aborting");
        std::process::exit(130);
    });
    rx
}
