//! `exporters.prometheus`: `GET /metrics` renders the metrics the OTLP
//! path pushes, snapshotted at scrape time, for setups without a collector.
//!
//! The endpoint runs on a thread of its own with a one-thread runtime: a
//! scrape (summing every per-CPU map, rendering the text) never takes a
//! worker of the runtime that reads the ring buffers, and a flood of
//! connections cannot either. Each connection must send its request
//! headers within [`HEADER_TIMEOUT`] and is closed after
//! [`CONNECTION_TIMEOUT`] whatever it does; at most [`MAX_CONNECTIONS`] are
//! served at once, the rest wait in the kernel's listen backlog. So a
//! client that trickles its headers a byte at a time (slowloris) holds a
//! slot for seconds, not forever.

use super::MetricsSource;
use crate::otel::prometheus::{render, CONTENT_TYPE};
use crate::supervise::{panic_message, Task, Watch};
use axum::{http::header, routing::get, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A client must have sent its whole request head by then.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer (a scrape takes milliseconds; this bounds
/// a client that reads the answer slowly).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; Prometheus uses one per target.
pub const MAX_CONNECTIONS: usize = 16;

const TASK: Task = Task::new("prometheus");

/// The running endpoint.
pub struct Server {
    watcher: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serve `listener` (bound by the caller, so a taken port fails the
    /// start, not a scrape) until `stop`. A panic (in a scrape) or the
    /// thread ending early is reported to `watch`.
    pub fn start(
        listener: std::net::TcpListener,
        source: MetricsSource,
        stop: CancellationToken,
        watch: Watch,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let w = watch.clone();
        let s = stop.clone();
        std::thread::Builder::new()
            .name("tapio-metrics".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    rt.block_on(async move {
                        let l = tokio::net::TcpListener::from_std(listener)
                            .map_err(|e| format!("listener: {e}"))?;
                        accept_loop(l, source, s, w).await;
                        Ok(())
                    })
                });
                let result = std::panic::catch_unwind(run)
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(p))));
                let _ = tx.send(result);
            })?;
        let watcher = watch.spawn(TASK, async move {
            rx.await
                .unwrap_or_else(|_| Err("the /metrics thread is gone".into()))
        });
        Ok(Self { watcher })
    }

    /// Wait for the endpoint to close (after `stop`).
    pub async fn join(self) {
        let _ = self.watcher.await;
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    source: MetricsSource,
    stop: CancellationToken,
    watch: Watch,
) {
    let app = router(move || render(source.resource(), &source.collect()));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    let mut last_warn: Option<std::time::Instant> = None;
    loop {
        // A free slot first: past the cap, clients wait in the backlog
        // rather than being accepted and starved.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(r) = conns.join_next() => {
                judge(r, &watch);
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let sock = tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // EMFILE and friends: wait a little, say so (rarely).
                    if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        last_warn = Some(std::time::Instant::now());
                        tracing::warn!("prometheus endpoint: accept failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(r) = conns.join_next() => {
                judge(r, &watch);
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let app = app.clone();
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(sock, app).await;
        });
    }
    conns.shutdown().await;
}

/// The endpoint's routes: `GET /metrics` answers `scrape()`'s text.
pub fn router<F>(scrape: F) -> Router
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    Router::new().route(
        "/metrics",
        get(move || {
            let scrape = scrape.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], scrape()) }
        }),
    )
}

/// Serve one connection: parse its request (hyper), answer it through
/// `app`, close. Every byte a client sends goes through here, so the fuzz
/// target `metrics_request` drives this with in-memory streams.
pub async fn serve_connection<S>(sock: S, app: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    let conn = b.serve_connection(TokioIo::new(sock), svc);
    // Errors of single connections (a client gone, a timeout) are the
    // client's business.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
}

/// A connection task that panicked was a scrape that panicked: a failure.
fn judge(r: Result<(), tokio::task::JoinError>, watch: &Watch) {
    if let Err(e) = r {
        if e.is_panic() {
            watch.report(
                TASK,
                format!("a scrape panicked: {}", panic_message(e.into_panic())),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What `serve_connection` answers to `request` sent whole over an
    /// in-memory connection (read until the server closes it: no
    /// keep-alive). The client does not half-close: hyper drops a
    /// connection whose read side ends before it answered.
    async fn answer(request: &[u8]) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(serve_connection(server, router(|| "up 1\n".into())));
        client.write_all(request).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        serve.await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn answers_a_scrape_and_refuses_garbage() {
        let ok = answer(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(ok.ends_with("up 1\n"), "{ok}");
        let other = answer(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404 "), "{other}");
        let post = answer(b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let garbage = answer(b"\x00\xffGET\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
            "{garbage}"
        );
    }
}
