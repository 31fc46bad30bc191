//! `/metrics` (Prometheus text format), `/healthz` (the process serves) and `/readyz` (startup
//! checks passed, and when leading, the caches are filled).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// What `/readyz` looks at.
#[derive(Debug, Default)]
pub struct Health {
    /// The startup checks passed.
    pub started: AtomicBool,
    /// This replica leads.
    pub leading: AtomicBool,
    /// The leader's caches are filled.
    pub synced: Arc<AtomicBool>,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.started.load(Ordering::Relaxed)
            && (!self.leading.load(Ordering::Relaxed) || self.synced.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn serve_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr`; the returned future serves until `stop`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Shutdown,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health });
    let serving = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.wait())
            .await
    };
    Ok((local, serving))
}
