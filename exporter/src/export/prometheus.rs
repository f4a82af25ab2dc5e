//! `exporters.prometheus`: `GET /metrics` renders the metrics the OTLP
//! path pushes, snapshotted at scrape time, for setups without a collector.

use super::MetricsSource;
use crate::otel::prometheus::{render, CONTENT_TYPE};
use axum::{http::header, routing::get, Router};
use tokio_util::sync::CancellationToken;

/// Serve until `stop`. Errors of single connections are axum's business;
/// the listener itself was bound by the caller, so a taken port fails the
/// start, not a scrape.
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: MetricsSource,
    stop: CancellationToken,
) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let source = source.clone();
            async move {
                let text = render(source.resource(), &source.collect());
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
            }
        }),
    );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!("prometheus endpoint stopped: {e}");
    }
}
