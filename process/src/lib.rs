//! What every Cairn process does the same way at start and stop: logging, its Postgres pool,
//! and waiting for the signal to shut down.
use anyhow::Context;
use sqlx::{PgPool, postgres::PgPoolOptions};
use std::time::Duration;
use tracing_subscriber::{Layer, Registry, layer::SubscriberExt, util::SubscriberInitExt};

/// Layers a process adds to its logging beside stderr (the worker keeps run logs).
pub type ExtraLayers = Vec<Box<dyn Layer<Registry> + Send + Sync>>;

/// Logs to stderr, filtered by `CAIRN_LOG` (default `info`); colours only on a terminal.
pub fn init_tracing() {
    init_tracing_with(Vec::new());
}

/// `init_tracing`, plus `extra` layers that see every event with their own filters.
pub fn init_tracing_with(extra: ExtraLayers) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| "info".into());
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let mut layers: ExtraLayers = vec![Box::new(stderr)];
    layers.extend(extra);
    tracing_subscriber::registry().with(layers).init();
}

/// A small pool for a background process. Acquiring waits at most 5 s, so an outage shows
/// up as an error to retry rather than a hang.
pub async fn connect_postgres(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("connecting to Postgres")
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
