//! The admin HTTP server: `/livez` (the process runs), `/readyz` (set by the daemon: e.g. after the first
//! full sync), `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// Shared admin state.
#[derive(Clone)]
pub struct Admin {
    ready: Arc<AtomicBool>,
    registry: Arc<Registry>,
}

impl Admin {
    /// A not-yet-ready admin state serving `registry`.
    pub fn new(registry: Registry) -> Self {
        Self { ready: Arc::new(AtomicBool::new(false)), registry: Arc::new(registry) }
    }

    /// Marks the process ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, addr: SocketAddr) -> Result<()> {
        let app = Router::new()
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin server to {addr}"))?;
        tracing::info!(%addr, "admin server listening");
        axum::serve(listener, app).await.context("admin server")
    }
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, &'static str) {
    if admin.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(admin): State<Admin>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &admin.registry) {
        Ok(()) => (
            StatusCode::OK,
            [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], "encoding failed".into())
        }
    }
}
