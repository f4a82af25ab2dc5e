//! The export path: per-signal bounded queues, batching workers, retry with
//! backoff, and one sink. Nothing is dropped without being counted in
//! `tapio.export.dropped`; memory is bounded by the queue capacities.
//!
//! Records arrive already encoded in the sink's format (the probes' direct
//! encoders write protobuf for gRPC and HTTP, OTLP/JSON for stdout, from
//! the same mapping calls; prost or serde for the probes still building
//! opentelemetry-proto messages); a batch is framed in place with the
//! resource and scope encoded once, and the sinks send those bytes as they
//! are.
//!
//! Why not the opentelemetry_sdk batch processors: measured on this kind of
//! machine they delivered 2–4 % of a 200k-span burst with default settings
//! and did not report the drops, at ≈3.1 µs/span. The direct encoders cost
//! 0.4–0.8 µs per record end to end with no allocation per record, and every
//! drop is counted (`benches/export_path.rs`).

pub mod grpc;
pub mod http;
pub mod prometheus;
pub mod queue;
pub mod sink;
pub mod stdout;

use crate::config::{RetryConfig, Settings};
use crate::otel;
use crate::otel::{json, wire};
use crate::supervise::{fault_injected, lock, Task, Watch};
use crate::telemetry::{DropReason, Signal, Source, SourceCounts, Telemetry};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    metrics::v1::{metric::Data, Metric, ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
#[cfg(any(test, feature = "legacy-mapper"))]
use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};
use queue::EncodedQueue;
pub use sink::SinkError;
use sink::{Payload, Sink};
use std::{
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{task::JoinHandle, time::sleep_until};
use tokio_util::sync::CancellationToken;

/// What records are written as: protobuf for the OTLP sinks, OTLP/JSON for
/// stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Protobuf,
    Json,
}

/// The encoder of an [`Emitter`]'s format, handed to a mapping by
/// [`encode_log!`](crate::encode_log) and [`encode_span!`](crate::encode_span).
pub enum Encoders<'a> {
    Protobuf(&'a mut wire::Encoder),
    Json(&'a mut json::Encoder),
}

/// Write a log record with a probe's mapping and queue it:
/// `encode_log!(self.emitter, |enc| otlp::exec(enc, ..))`. The mapping is
/// generic over [`wire::Encode`]; this expands it once per format, so the
/// format is decided once per record, not per field.
#[macro_export]
macro_rules! encode_log {
    ($emitter:expr, |$enc:ident| $write:expr) => {
        $emitter.encode_log(|e| match e {
            $crate::export::Encoders::Protobuf($enc) => $write,
            $crate::export::Encoders::Json($enc) => $write,
        })
    };
}

/// [`encode_log!`](crate::encode_log) for spans.
#[macro_export]
macro_rules! encode_span {
    ($emitter:expr, |$enc:ident| $write:expr) => {
        $emitter.encode_span(|e| match e {
            $crate::export::Encoders::Protobuf($enc) => $write,
            $crate::export::Encoders::Json($enc) => $write,
        })
    };
}

/// What probes hold to emit records. Cheap to clone (a clone gets its own
/// encoding buffers); never blocks.
pub struct Emitter {
    logs: Arc<EncodedQueue>,
    spans: Arc<EncodedQueue>,
    format: Format,
    enc: wire::Encoder,
    json: json::Encoder,
    /// Whose records these are (`tapio.export.dropped{tapio.probe}`).
    source: Source,
    /// Records written but not yet queued ([`Emitter::stashing`]).
    stash: Option<Box<Stash>>,
    /// The stash whose buffer an encoder holds while a record is written
    /// into it, and its length before: set only during the write, so a
    /// panicking mapping's emitter can take the buffer back when dropped.
    lent: Option<(Signal, usize)>,
}

/// A reader's records of one wake, queued together by [`Emitter::flush`].
#[derive(Default)]
struct Stash {
    logs: Vec<u8>,
    logs_n: usize,
    spans: Vec<u8>,
    spans_n: usize,
}

impl Stash {
    fn buffer(&mut self, signal: Signal) -> &mut Vec<u8> {
        if signal == Signal::Traces {
            &mut self.spans
        } else {
            &mut self.logs
        }
    }

    fn count(&mut self, signal: Signal) -> &mut usize {
        if signal == Signal::Traces {
            &mut self.spans_n
        } else {
            &mut self.logs_n
        }
    }
}

/// Records a stash holds before it queues them without waiting for the
/// wake's end: bounds its memory (a few hundred bytes a record) and how far
/// the queue's count lags.
const STASH_RECORDS: usize = 64;

impl Clone for Emitter {
    /// The same queues and mode; the stash's records stay with `self`.
    fn clone(&self) -> Self {
        Self {
            logs: self.logs.clone(),
            spans: self.spans.clone(),
            format: self.format,
            enc: self.enc.clone(),
            json: self.json.clone(),
            source: self.source,
            stash: self.stash.as_ref().map(|_| Box::default()),
            lent: None,
        }
    }
}

impl Drop for Emitter {
    /// Nothing written is left uncounted: a stash is queued on the way out
    /// (after taking it back from the encoder if a mapping panicked while
    /// writing into it).
    fn drop(&mut self) {
        if let Some((signal, before)) = self.lent.take() {
            self.give_back(signal, before);
        }
        self.flush();
    }
}

/// How the batches of one format become requests.
#[derive(Debug, Clone)]
enum Framer {
    Protobuf(wire::BatchFramer),
    Json {
        logs: json::BatchFramer,
        spans: json::BatchFramer,
    },
}

impl Framer {
    fn new(format: Format, resource: &Resource) -> Self {
        let scope = otel::scope();
        match format {
            Format::Protobuf => Framer::Protobuf(wire::BatchFramer::new(resource, &scope)),
            Format::Json => Framer::Json {
                logs: json::BatchFramer::new(Signal::Logs, resource, &scope),
                spans: json::BatchFramer::new(Signal::Traces, resource, &scope),
            },
        }
    }

    fn headroom(&self) -> usize {
        match self {
            Framer::Protobuf(f) => f.headroom() + grpc::MESSAGE_PREFIX,
            Framer::Json { logs, spans } => logs.headroom().max(spans.headroom()),
        }
    }

    /// A chunk of encoded records as an export request: the header goes
    /// into the room the chunk left in front of its records.
    fn frame(&self, signal: Signal, mut c: queue::Chunk) -> (Payload, SourceCounts) {
        let n = c.sources;
        let (json, at, grpc_at) = match self {
            Framer::Protobuf(f) => {
                let at = f.frame(&mut c.buf, c.start);
                (false, at, grpc::prefix_message(&mut c.buf, at))
            }
            Framer::Json { logs, spans } => {
                let f = if signal == Signal::Traces {
                    spans
                } else {
                    logs
                };
                (true, f.frame(&mut c.buf, c.start), None)
            }
        };
        let e = sink::Encoded {
            signal,
            frame: Arc::new(sink::Frame {
                buf: c.buf,
                at,
                grpc_at,
            }),
        };
        (
            if json {
                Payload::Json(e)
            } else {
                Payload::Encoded(e)
            },
            n,
        )
    }
}

impl Emitter {
    fn new(format: Format, logs: Arc<EncodedQueue>, spans: Arc<EncodedQueue>) -> Self {
        Self {
            logs,
            spans,
            format,
            enc: wire::Encoder::default(),
            json: json::Encoder::default(),
            source: Source::AGENT,
            stash: None,
            lent: None,
        }
    }

    /// Queues for `resource`'s protobuf requests, not drained by any
    /// exporter: the caller takes batches itself (benches, tests).
    pub fn standalone(
        resource: &Resource,
        capacity: usize,
        batch: usize,
        telemetry: Arc<Telemetry>,
    ) -> (Self, Batches) {
        Self::standalone_as(Format::Protobuf, resource, capacity, batch, telemetry)
    }

    /// [`Emitter::standalone`] writing `format`.
    pub fn standalone_as(
        format: Format,
        resource: &Resource,
        capacity: usize,
        batch: usize,
        telemetry: Arc<Telemetry>,
    ) -> (Self, Batches) {
        let framer = Framer::new(format, resource);
        let room = framer.headroom();
        let e = Self::new(
            format,
            Arc::new(EncodedQueue::new(
                capacity,
                batch,
                room,
                telemetry.clone(),
                Signal::Logs,
            )),
            Arc::new(EncodedQueue::new(
                capacity,
                batch,
                room,
                telemetry,
                Signal::Traces,
            )),
        );
        let b = Batches {
            logs: e.logs.clone(),
            spans: e.spans.clone(),
            framer,
        };
        (e, b)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// A log record built as an opentelemetry-proto message: the old
    /// mappings' path, kept for the benches and tests that compare with it
    /// (every probe writes its records directly).
    #[cfg(any(test, feature = "legacy-mapper"))]
    pub fn log(&self, r: LogRecord) {
        let format = self.format;
        self.logs.push_with(self.source, |b| message(format, &r, b));
    }

    /// A span built as an opentelemetry-proto message (see [`Self::log`]).
    #[cfg(any(test, feature = "legacy-mapper"))]
    pub fn span(&self, s: Span) {
        let format = self.format;
        self.spans
            .push_with(self.source, |b| message(format, &s, b));
    }

    /// A log record written by `write` straight into this emitter's buffer
    /// of its format (its stash, if it has one), then queued. Use
    /// [`encode_log!`](crate::encode_log), which hands a generic mapping the
    /// encoder it is given.
    pub fn encode_log(&mut self, write: impl FnOnce(Encoders<'_>)) {
        if self.stash.is_some() {
            self.stash_record(Signal::Logs, write);
        } else {
            let rec = written(self.format, &mut self.enc, &mut self.json, write);
            self.logs.push(self.source, rec);
        }
    }

    /// A span written by `write`, then queued ([`encode_span!`](crate::encode_span)).
    pub fn encode_span(&mut self, write: impl FnOnce(Encoders<'_>)) {
        if self.stash.is_some() {
            self.stash_record(Signal::Traces, write);
        } else {
            let rec = written(self.format, &mut self.enc, &mut self.json, write);
            self.spans.push(self.source, rec);
        }
    }

    /// Write a record at the end of the stash of `signal`, the encoder
    /// appending to the stash's buffer itself; queue the stash when it
    /// holds [`STASH_RECORDS`].
    fn stash_record(&mut self, signal: Signal, write: impl FnOnce(Encoders<'_>)) {
        let Some(st) = self.stash.as_deref_mut() else {
            return;
        };
        let out = st.buffer(signal);
        let before = out.len();
        match self.format {
            Format::Protobuf => self.enc.record_buf().lend(out),
            Format::Json => self.json.record_buf().lend(out),
        }
        self.lent = Some((signal, before));
        match self.format {
            Format::Protobuf => write(Encoders::Protobuf(&mut self.enc)),
            Format::Json => write(Encoders::Json(&mut self.json)),
        }
        self.lent = None;
        if self.give_back(signal, before) {
            self.flush_if_full(signal);
        }
    }

    /// Return the stash buffer the encoder was lent; whether it gained a
    /// whole record (else it is as it was).
    fn give_back(&mut self, signal: Signal, before: usize) -> bool {
        let Some(st) = self.stash.as_deref_mut() else {
            return false;
        };
        let out = st.buffer(signal);
        let whole = match self.format {
            Format::Protobuf => self.enc.record_buf().give_back(out, before),
            Format::Json => self.json.record_buf().give_back(out, before),
        };
        if whole {
            *st.count(signal) += 1;
        }
        whole
    }

    fn flush_if_full(&mut self, signal: Signal) {
        self.queue_stash(signal, STASH_RECORDS);
    }

    /// Queue the stash of `signal` if it holds at least `min` records.
    fn queue_stash(&mut self, signal: Signal, min: usize) {
        let Some(st) = self.stash.as_deref_mut() else {
            return;
        };
        let n = *st.count(signal);
        if n > 0 && n >= min {
            let queue = if signal == Signal::Traces {
                &self.spans
            } else {
                &self.logs
            };
            queue.push_many(self.source, st.buffer(signal));
            st.buffer(signal).clear();
            *st.count(signal) = 0;
        }
    }

    /// Hold records written from now on until [`Emitter::flush`] (or
    /// [`STASH_RECORDS`] of a signal), then queue them under one lock. For
    /// ring-buffer readers, which flush at the end of every wake
    /// ([`crate::reader::RecordHandler::end_wake`]): pushing per record was
    /// 8 % of a busy agent's CPU in a perf profile, half of it releasing the
    /// lock the readers of several probes contend for.
    pub fn stashing(mut self) -> Self {
        self.stash.get_or_insert_with(Box::default);
        self
    }

    /// Queue what the stash holds.
    pub fn flush(&mut self) {
        self.queue_stash(Signal::Logs, 1);
        self.queue_stash(Signal::Traces, 1);
    }

    /// The same queues, its records counted as `source`'s.
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// An emitter no exporter drains (unit tests of emitting code).
    #[cfg(test)]
    pub(crate) fn detached(telemetry: Arc<Telemetry>) -> Self {
        Self::standalone(&Resource::default(), 64, 64, telemetry).0
    }
}

/// The record `write` wrote with the encoder of `format`.
fn written<'a>(
    format: Format,
    enc: &'a mut wire::Encoder,
    json: &'a mut json::Encoder,
    write: impl FnOnce(Encoders<'_>),
) -> &'a [u8] {
    use wire::Encode;
    match format {
        Format::Protobuf => {
            write(Encoders::Protobuf(enc));
            enc.record()
        }
        Format::Json => {
            write(Encoders::Json(json));
            json.record()
        }
    }
}

/// A message as a queued record of `format`: protobuf, or its serde JSON
/// (opentelemetry-proto's serde is OTLP/JSON) in the same framing.
#[cfg(any(test, feature = "legacy-mapper"))]
fn message<M: prost::Message + serde::Serialize>(format: Format, m: &M, b: &mut Vec<u8>) {
    match format {
        Format::Protobuf => prost::encoding::message::encode(wire::RECORD_FIELD, m, b),
        Format::Json => {
            let mark = wire::open(b, wire::RECORD_FIELD, 2);
            let body = b.len();
            if serde_json::to_writer(&mut *b, m).is_err() {
                // Not reachable for these types; an empty object keeps the
                // request valid and the record counted.
                b.truncate(body);
                b.extend_from_slice(b"{}");
            }
            wire::close(b, mark);
        }
    }
}

/// The draining side of [`Emitter::standalone`]'s queues.
pub struct Batches {
    logs: Arc<EncodedQueue>,
    spans: Arc<EncodedQueue>,
    framer: Framer,
}

impl Batches {
    /// The oldest batch of `signal` (logs or traces) as an export request,
    /// with its record count.
    pub fn take(&self, signal: Signal) -> Option<(Payload, u64)> {
        let q = match signal {
            Signal::Traces => &self.spans,
            _ => &self.logs,
        };
        let c = q.take()?;
        let (p, n) = self.framer.frame(signal, c);
        Some((p, n.total()))
    }

    /// Give a sent request's buffer back to its queue.
    pub fn recycle(&self, p: Payload) {
        if let Payload::Encoded(e) | Payload::Json(e) = p {
            let q = match e.signal {
                Signal::Traces => &self.spans,
                _ => &self.logs,
            };
            if let Ok(f) = Arc::try_unwrap(e.frame) {
                q.recycle(f.buf);
            }
        }
    }

    pub fn len(&self, signal: Signal) -> usize {
        match signal {
            Signal::Traces => self.spans.len(),
            _ => self.logs.len(),
        }
    }
}

/// Extra metrics beyond self-telemetry (probes' kernel aggregates).
pub type MetricProducer = Box<dyn Fn(u64) -> Vec<Metric> + Send + Sync>;

struct Shared {
    sink: Sink,
    /// Resource and scope of log and span requests, encoded once.
    framer: Framer,
    retry: RetryConfig,
    resource: Resource,
    telemetry: Arc<Telemetry>,
    /// Set when shutdown starts: nothing may wait past it.
    deadline: Mutex<Option<tokio::time::Instant>>,
    stop: CancellationToken,
    producers: Mutex<Vec<MetricProducer>>,
    last_warn: Mutex<Option<Instant>>,
}

pub struct Exporter {
    shared: Arc<Shared>,
    emitter: Emitter,
    workers: Vec<JoinHandle<()>>,
    metrics_worker: Option<JoinHandle<()>>,
    metric_interval: Duration,
}

impl Exporter {
    /// Build the sink and start one worker per signal.
    pub fn start(
        settings: &Settings,
        telemetry: Arc<Telemetry>,
        resource: Resource,
    ) -> Result<Self, SinkError> {
        let sink = Sink::new(&settings.sink)?;
        let retry = match &settings.sink {
            crate::config::SinkSettings::Otlp(o) => o.retry.clone(),
            // stdout failures (closed pipe) do not heal.
            crate::config::SinkSettings::Stdout { .. } => RetryConfig {
                enabled: false,
                ..Default::default()
            },
        };
        let cap = settings.sink.queue_size();
        let cap_bytes = settings.sink.queue_bytes();
        let format = match &settings.sink {
            crate::config::SinkSettings::Stdout { .. } => Format::Json,
            crate::config::SinkSettings::Otlp(_) => Format::Protobuf,
        };
        let framer = Framer::new(format, &resource);
        let room = framer.headroom();
        let consumers = settings.sink.consumers().max(1);
        let emitter = Emitter::new(
            format,
            Arc::new(
                EncodedQueue::new(
                    cap,
                    settings.logs.max_batch,
                    room,
                    telemetry.clone(),
                    Signal::Logs,
                )
                .with_max_bytes(cap_bytes)
                .with_requests_in_flight(consumers),
            ),
            Arc::new(
                EncodedQueue::new(
                    cap,
                    settings.traces.max_batch,
                    room,
                    telemetry.clone(),
                    Signal::Traces,
                )
                .with_max_bytes(cap_bytes)
                .with_requests_in_flight(consumers),
            ),
        );
        let shared = Arc::new(Shared {
            sink,
            framer,
            retry,
            resource,
            telemetry,
            deadline: Mutex::new(None),
            stop: CancellationToken::new(),
            producers: Mutex::new(Vec::new()),
            last_warn: Mutex::new(None),
        });
        tracing::info!(sink = %shared.sink.describe(), "exporting");
        let logs_q = emitter.logs.clone();
        let sh = shared.clone();
        let logs_batch = settings.logs;
        let w_logs = tokio::spawn(async move {
            batch_loop(
                sh,
                logs_q,
                logs_batch.schedule_delay,
                logs_batch.max_batch,
                consumers,
                Signal::Logs,
            )
            .await
        });
        let spans_q = emitter.spans.clone();
        let sh = shared.clone();
        let tb = settings.traces;
        let w_spans = tokio::spawn(async move {
            batch_loop(
                sh,
                spans_q,
                tb.schedule_delay,
                tb.max_batch,
                consumers,
                Signal::Traces,
            )
            .await
        });
        let sh = shared.clone();
        let interval = settings.metric_interval;
        let metrics_worker = Some(tokio::spawn(
            async move { metrics_loop(sh, interval).await },
        ));
        Ok(Self {
            shared,
            emitter,
            workers: vec![w_logs, w_spans],
            metrics_worker,
            metric_interval: settings.metric_interval,
        })
    }

    /// An emitter for the agent's own records.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// An emitter for probe `name`'s records: its drops are counted under
    /// its name.
    pub fn emitter_for(&self, name: &'static str) -> Emitter {
        let s = self.shared.telemetry.source(name);
        self.emitter.clone().with_source(s)
    }

    pub fn add_metric_producer(&self, p: MetricProducer) {
        lock(&self.shared.producers).push(p);
    }

    /// Watch the export workers: one that panics or ends before shutdown
    /// is reported to `watch` (the agent then stops with a failure).
    pub fn supervise(&mut self, watch: &Watch) {
        let names = ["exporter.logs", "exporter.traces"];
        self.workers = self
            .workers
            .drain(..)
            .zip(names)
            .map(|(h, n)| watch.spawn(Task::new(n), async move { h.await.map_err(join_error) }))
            .collect();
        if let Some(m) = self.metrics_worker.take() {
            self.metrics_worker = Some(watch.spawn(Task::new("exporter.metrics"), async move {
                m.await.map_err(join_error)
            }));
        }
    }

    pub fn metrics(&self) -> MetricsSource {
        MetricsSource(self.shared.clone())
    }

    pub fn sink_description(&self) -> String {
        self.shared.sink.describe()
    }

    /// Flush everything queued and a last metrics snapshot, waiting at most
    /// `timeout`; whatever is still queued then is counted as dropped.
    pub async fn shutdown(mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        *lock(&self.shared.deadline) = Some(deadline);
        self.shared.stop.cancel();
        for w in self.workers.drain(..) {
            let _ = tokio::time::timeout_at(deadline, w).await;
        }
        if let Some(m) = self.metrics_worker.take() {
            let _ = tokio::time::timeout_at(deadline, m).await;
        }
        for (q, s) in [
            (&self.emitter.logs, Signal::Logs),
            (&self.emitter.spans, Signal::Traces),
        ] {
            let left = q.sources();
            let q = left.total();
            if q > 0 {
                self.shared
                    .telemetry
                    .signal(s)
                    .drop_counts(DropReason::Shutdown, &left);
                tracing::warn!(
                    signal = s.name(),
                    records = q,
                    "shutdown deadline passed; records not flushed"
                );
            }
        }
        let _ = self.metric_interval;
    }
}

/// A worker's join error as the reason it failed (panics keep their
/// message).
fn join_error(e: tokio::task::JoinError) -> String {
    if e.is_panic() {
        format!(
            "panicked: {}",
            crate::supervise::panic_message(e.into_panic())
        )
    } else {
        e.to_string()
    }
}

/// The request the old path built from prost messages (the legacy mapper's
/// measurements and comparisons).
#[cfg(any(test, feature = "legacy-mapper"))]
pub fn logs_payload(resource: &Resource, records: Vec<LogRecord>) -> Payload {
    use opentelemetry_proto::tonic::{
        collector::logs::v1::ExportLogsServiceRequest,
        logs::v1::{ResourceLogs, ScopeLogs},
    };
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(otel::scope()),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[cfg(any(test, feature = "legacy-mapper"))]
pub fn spans_payload(resource: &Resource, spans: Vec<Span>) -> Payload {
    use opentelemetry_proto::tonic::{
        collector::trace::v1::ExportTraceServiceRequest,
        trace::v1::{ResourceSpans, ScopeSpans},
    };
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(otel::scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

async fn batch_loop(
    sh: Arc<Shared>,
    q: Arc<EncodedQueue>,
    delay: Duration,
    max: usize,
    consumers: usize,
    signal: Signal,
) {
    // Requests in flight: with one at a time a collector's round trip caps
    // throughput at a batch per round trip (the sustained-load bench saw
    // queue_full drops at ~20k records/s while Tapio's CPU idled).
    let mut inflight = tokio::task::JoinSet::new();
    loop {
        let stopping = sh.stop.is_cancelled();
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = q.batch_ready.notified() => {}
                _ = sh.stop.cancelled() => {}
            }
        }
        // Send full batches back to back; a partial one only when its
        // delay is up (or we are stopping).
        loop {
            while inflight.len() >= consumers {
                if let Some(Err(e)) = inflight.join_next().await {
                    // deliver() does not panic; if it did, say so and go on
                    // with the other requests (its records are lost).
                    tracing::error!(signal = signal.name(), error = %e, "export request task failed");
                }
            }
            let Some(chunk) = q.take() else { break };
            // In the queues' byte bound until the request ends, so that an
            // outage's retries cannot hold memory beyond it.
            let held = queue::Held::new(&q, chunk.buf.len() - chunk.start);
            let (payload, n) = sh.framer.frame(signal, chunk);
            let (sh2, q2) = (sh.clone(), q.clone());
            inflight.spawn(async move {
                deliver(&sh2, &payload, &n, signal, None).await;
                drop(held);
                if let Payload::Encoded(e) | Payload::Json(e) = payload {
                    if let Ok(f) = Arc::try_unwrap(e.frame) {
                        q2.recycle(f.buf);
                    }
                }
            });
            if q.len() < max {
                break;
            }
        }
        if stopping {
            while inflight.join_next().await.is_some() {}
            if q.is_empty() {
                return;
            }
        }
    }
}

fn data_points(ms: &[Metric]) -> u64 {
    ms.iter()
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

impl Shared {
    /// Every metric as of now: self-telemetry and the probes' producers.
    fn current_metrics(&self) -> Vec<Metric> {
        let now = crate::clock::unix_ns();
        let mut metrics = otel::metrics::self_telemetry(&self.telemetry, now);
        let producers = lock(&self.producers);
        if fault_injected("producer") {
            // Where a producer's bug would panic: with the lock held.
            panic!("TAPIO_TEST_FAULT=producer: a metric producer panics");
        }
        for p in producers.iter() {
            metrics.extend(p(now));
        }
        metrics
    }
}

/// The metrics the exporter pushes, for pull endpoints (`/metrics`): the
/// same snapshot, taken when asked.
#[derive(Clone)]
pub struct MetricsSource(Arc<Shared>);

impl MetricsSource {
    pub fn resource(&self) -> &Resource {
        &self.0.resource
    }

    pub fn collect(&self) -> Vec<Metric> {
        self.0.current_metrics()
    }
}

fn collect_metrics(sh: &Shared) -> (Payload, u64) {
    let metrics = sh.current_metrics();
    let n = data_points(&metrics);
    let payload = Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(sh.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(otel::scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    (payload, n)
}

async fn metrics_loop(sh: Arc<Shared>, interval: Duration) {
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = sh.stop.cancelled() => {}
        }
        let stopping = sh.stop.is_cancelled();
        let (payload, n) = collect_metrics(&sh);
        // Cumulative series: a later export carries what this one would
        // have, so retrying past the next interval buys nothing.
        deliver(
            &sh,
            &payload,
            &SourceCounts::of(Source::AGENT, n),
            Signal::Metrics,
            Some(interval),
        )
        .await;
        if stopping {
            return;
        }
        next += interval;
        let now = tokio::time::Instant::now();
        if next < now {
            next = now + interval;
        }
    }
}

impl Shared {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        *lock(&self.deadline)
    }

    /// Log export failures at most every 10 s: a dead collector must not
    /// turn into a log flood.
    fn warn_limited(&self, signal: Signal, msg: &str) {
        let mut last = lock(&self.last_warn);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(signal = signal.name(), "export failed: {msg}");
        }
    }
}

/// Send one payload of `n` records, retrying retryable failures with
/// exponential backoff until `max_elapsed_time` (or `cap`, or the shutdown
/// deadline). Every record ends up counted as sent or dropped.
async fn deliver(
    sh: &Shared,
    payload: &Payload,
    from: &SourceCounts,
    signal: Signal,
    cap: Option<Duration>,
) {
    let stats = sh.telemetry.signal(signal);
    let n = from.total();
    let started = tokio::time::Instant::now();
    let max_elapsed = cap.map_or(sh.retry.max_elapsed_time, |c| {
        c.min(sh.retry.max_elapsed_time)
    });
    let mut backoff = sh.retry.initial_interval;
    let mut attempt: u32 = 0;
    loop {
        let result = match sh.deadline() {
            Some(d) => match tokio::time::timeout_at(d, sh.sink.send(payload)).await {
                Ok(r) => r,
                Err(_) => Err(sink::ExportError::permanent("shutdown deadline passed")),
            },
            None => sh.sink.send(payload).await,
        };
        match result {
            Ok(acc) => {
                let rejected = acc.rejected.min(n);
                stats.sent.fetch_add(n - rejected, Relaxed);
                if rejected > 0 {
                    stats.drop_counts(DropReason::Rejected, &from.share(rejected));
                }
                if attempt > 0 {
                    tracing::info!(
                        signal = signal.name(),
                        attempts = attempt + 1,
                        "export recovered"
                    );
                }
                return;
            }
            Err(e) => {
                stats.failures.fetch_add(1, Relaxed);
                sh.warn_limited(signal, &e.message);
                attempt += 1;
                if !e.retryable {
                    let reason = if sh.deadline().is_some() {
                        DropReason::Shutdown
                    } else {
                        DropReason::Rejected
                    };
                    stats.drop_counts(reason, from);
                    return;
                }
                if !sh.retry.enabled {
                    stats.drop_counts(DropReason::RetryExhausted, from);
                    return;
                }
                // Full jitter keeps many agents from retrying in step.
                let jitter = 0.5 + (crate::clock::boot_ns() % 1000) as f64 / 2000.0;
                let wait = backoff.mul_f64(jitter);
                let until = tokio::time::Instant::now() + wait;
                if until.duration_since(started) > max_elapsed {
                    stats.drop_counts(DropReason::RetryExhausted, from);
                    return;
                }
                if let Some(d) = sh.deadline() {
                    if until > d {
                        stats.drop_counts(DropReason::Shutdown, from);
                        return;
                    }
                }
                sleep_until(until).await;
                backoff = (backoff * 2).min(sh.retry.max_interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(e: &mut Emitter, name: &'static str) {
        crate::encode_span!(e, |enc| {
            use crate::otel::wire::{Encode, RecordWriter, StatusCode};
            enc.span(&[1; 16], &[2; 8], name, 1, 1, 2)
                .finish_span(StatusCode::Unset, format_args!(""))
        });
    }

    /// A stashing emitter queues nothing until flushed (or a stash's worth
    /// is written), and nothing written is lost when it is dropped.
    #[test]
    fn stashed_records_reach_the_queue_on_flush_and_drop() {
        let t = Telemetry::new(0);
        let (e, b) = Emitter::standalone(&Resource::default(), 1024, 1024, t.clone());
        let mut e = e.stashing();
        span(&mut e, "a");
        span(&mut e, "b");
        assert_eq!(b.len(Signal::Traces), 0);
        // A clone does not carry (and so cannot duplicate) the stash.
        drop(e.clone());
        assert_eq!(b.len(Signal::Traces), 0);
        e.flush();
        assert_eq!(b.len(Signal::Traces), 2);
        for _ in 0..STASH_RECORDS {
            span(&mut e, "c");
        }
        assert_eq!(b.len(Signal::Traces), 2 + STASH_RECORDS);
        span(&mut e, "d");
        drop(e);
        assert_eq!(b.len(Signal::Traces), 3 + STASH_RECORDS);
        let (p, n) = b.take(Signal::Traces).unwrap();
        assert_eq!(n, 3 + STASH_RECORDS as u64);
        let Payload::Encoded(enc) = p else {
            panic!("not protobuf")
        };
        let Payload::Traces(req) = enc.decode().unwrap() else {
            panic!("not traces")
        };
        let names: Vec<_> = req.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names[..3], ["a", "b", "c"]);
        assert_eq!(names.last(), Some(&"d"));
    }

    fn log(e: &mut Emitter, body: &'static str) {
        crate::encode_log!(e, |enc| {
            use crate::otel::wire::{Encode, RecordWriter, Severity};
            let mut w = enc.log(5, Severity::Info);
            w.body_concat(&[body]);
            w.int("n", 7);
            w.finish_log(6, "x")
        });
    }

    fn request_bytes(b: &Batches, signal: Signal) -> Vec<u8> {
        match b.take(signal) {
            Some((Payload::Encoded(e) | Payload::Json(e), _)) => e.frame.buf[e.frame.at..].to_vec(),
            _ => Vec::new(),
        }
    }

    /// Records written straight into a stash are the bytes the plain path
    /// queues, in both formats, logs and spans interleaved.
    #[test]
    fn a_stash_holds_the_bytes_the_plain_path_queues() {
        for format in [Format::Protobuf, Format::Json] {
            let t = Telemetry::new(0);
            let r = Resource::default();
            let (mut plain, pb) = Emitter::standalone_as(format, &r, 4096, 4096, t.clone());
            let (e, sb) = Emitter::standalone_as(format, &r, 4096, 4096, t.clone());
            let mut stashing = e.stashing();
            for e in [&mut plain, &mut stashing] {
                for i in 0..(2 * STASH_RECORDS + 3) {
                    if i % 3 == 0 {
                        span(e, "s");
                    } else {
                        log(e, "l");
                    }
                }
                e.flush();
            }
            for signal in [Signal::Logs, Signal::Traces] {
                let (a, b) = (request_bytes(&pb, signal), request_bytes(&sb, signal));
                assert!(!a.is_empty(), "{format:?} {signal:?}");
                assert_eq!(a, b, "{format:?} {signal:?}");
            }
        }
    }

    /// A mapping that writes no record, or panics in the middle of one,
    /// leaves the stash with the whole records it had, and they are queued
    /// when the emitter is dropped.
    #[test]
    fn a_record_not_written_or_cut_short_leaves_the_stash_whole() {
        for format in [Format::Protobuf, Format::Json] {
            let t = Telemetry::new(0);
            let (e, b) = Emitter::standalone_as(format, &Resource::default(), 64, 64, t.clone());
            let mut e = e.stashing();
            log(&mut e, "a");
            e.encode_log(|_| {});
            let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::encode_log!(e, |enc| {
                    use crate::otel::wire::{Encode, RecordWriter, Severity};
                    let mut w = enc.log(5, Severity::Info);
                    w.int("n", 1);
                    panic!("a mapping bug");
                })
            }));
            assert!(cut.is_err());
            drop(e);
            assert_eq!(b.len(Signal::Logs), 1, "{format:?}");
            let (p, n) = b.take(Signal::Logs).unwrap();
            assert_eq!(n, 1);
            let req = match p {
                Payload::Encoded(enc) => match enc.decode().unwrap() {
                    Payload::Logs(req) => req,
                    _ => panic!("not logs"),
                },
                Payload::Json(enc) => serde_json::from_slice::<
                    opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
                >(&enc.frame.buf[enc.frame.at..])
                .unwrap(),
                _ => panic!("not encoded"),
            };
            let recs = &req.resource_logs[0].scope_logs[0].log_records;
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].event_name, "x");
        }
    }

    /// A producer that panicked while the producers lock was held (a
    /// scrape hit a bug) must not silently take every probe's metrics
    /// out of later exports.
    #[test]
    fn a_poisoned_producer_lock_keeps_the_other_producers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = Telemetry::new(0);
        let settings = crate::config::Config::default().resolve(&|_| None).unwrap();
        let ex = rt.block_on(async {
            Exporter::start(&settings, t.clone(), otel::resource::build(&[])).unwrap()
        });
        let good = |now| {
            vec![otel::metrics::gauge(
                &otel::names::EXPORT_QUEUE_LENGTH,
                now,
                vec![(vec![otel::kv_str("x", "good")], 7)],
            )]
        };
        ex.add_metric_producer(Box::new(good));
        let armed = std::sync::atomic::AtomicBool::new(true);
        ex.add_metric_producer(Box::new(move |_| {
            if armed.swap(false, Relaxed) {
                panic!("a producer bug");
            }
            Vec::new()
        }));
        let source = ex.metrics();
        let s2 = source.clone();
        let first = std::thread::spawn(move || s2.collect()).join();
        assert!(first.is_err(), "the first collect panics");
        assert!(ex.shared.producers.is_poisoned());
        let has_good = |ms: &[Metric]| {
            ms.iter().any(|m| match &m.data {
                Some(Data::Gauge(g)) => g
                    .data_points
                    .iter()
                    .any(|p| p.attributes.iter().any(|a| a.key == "x")),
                _ => false,
            })
        };
        assert!(
            has_good(&source.collect()),
            "the good producer still exports"
        );
        rt.block_on(ex.shutdown(Duration::from_millis(10)));
    }

    /// With two probes on one signal, a full queue's drops are exported
    /// under the probe whose records they were (`tapio.probe`), and the
    /// agent's own series keeps no probe: produced = sent + dropped holds
    /// per probe.
    #[test]
    fn queue_drops_are_exported_per_probe() {
        let t = Telemetry::new(0);
        let (e, batches) = Emitter::standalone(&resource(), 4, 2, t.clone());
        let process = e.clone().with_source(t.source("process"));
        let network = e.clone().with_source(t.source("network"));
        let rec = |n: &str| LogRecord {
            event_name: n.into(),
            ..Default::default()
        };
        // 3 process records, then 3 network ones: the queue of 4 drops
        // the 2 oldest, both the process probe's.
        for _ in 0..3 {
            process.log(rec("p"));
        }
        for _ in 0..3 {
            network.log(rec("n"));
        }
        assert_eq!(batches.len(Signal::Logs), 4);
        let ms = otel::metrics::self_telemetry(&t, 1);
        let dropped = ms
            .iter()
            .find(|m| m.name == otel::names::EXPORT_DROPPED.name)
            .expect("tapio.export.dropped");
        let Some(Data::Sum(sum)) = &dropped.data else {
            panic!("not a sum")
        };
        let value = |probe: Option<&str>| -> i64 {
            sum.data_points
                .iter()
                .filter(|d| {
                    let a = |k: &str| {
                        d.attributes.iter().find(|x| x.key == k).and_then(|x| {
                            match x.value.as_ref()?.value.as_ref()? {
                                opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => Some(s.clone()),
                                _ => None,
                            }
                        })
                    };
                    a("tapio.signal").as_deref() == Some("logs")
                        && a("tapio.reason").as_deref() == Some("queue_full")
                        && a("tapio.probe").as_deref() == probe
                })
                .map(|d| match d.value {
                    Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                    _ => panic!("not an int"),
                })
                .sum()
        };
        assert_eq!(value(Some("process")), 2);
        assert_eq!(value(Some("network")), 0);
        assert_eq!(value(None), 0);
    }

    use crate::otel::{
        kv_str,
        wire::{Encode, RecordWriter, Severity},
    };
    use opentelemetry_proto::tonic::collector::{
        logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest,
    };
    use prost::Message;

    fn resource() -> Resource {
        Resource {
            attributes: vec![kv_str("service.name", "x".repeat(300))],
            ..Default::default()
        }
    }

    /// A batch mixing directly encoded records and prost-built ones is the
    /// request the old path built from the same records, byte for byte.
    #[test]
    fn batches_frame_into_the_request_the_old_path_built() {
        let t = Telemetry::new(0);
        let (mut e, batches) = Emitter::standalone(&resource(), 100, 3, t);
        let mut want = Vec::new();
        for i in 0..4u64 {
            crate::encode_log!(e, |enc| {
                let mut w = enc.log(i + 1, Severity::Info);
                w.body(format_args!("record {i}"));
                w.int("n", i as i64);
                w.finish_log(0, "test.event");
            });
            let mut body = &e.enc.record()[1..];
            prost::encoding::decode_varint(&mut body).unwrap();
            want.push(LogRecord::decode(body).unwrap());
            let old = LogRecord {
                event_name: format!("old {i}"),
                ..Default::default()
            };
            e.log(old.clone());
            want.push(old);
        }
        let mut got = Vec::new();
        while let Some((p, n)) = batches.take(Signal::Logs) {
            let Payload::Encoded(enc) = &p else {
                panic!("not encoded")
            };
            let Payload::Logs(_) = enc.decode().unwrap() else {
                panic!()
            };
            let n = n as usize;
            let expect = logs_payload(&resource(), want[got.len()..got.len() + n].to_vec());
            let Payload::Logs(expect) = expect else {
                panic!()
            };
            assert_eq!(enc.bytes(), &expect.encode_to_vec()[..]);
            let req = ExportLogsServiceRequest::decode(enc.bytes()).unwrap();
            got.extend(req.resource_logs[0].scope_logs[0].log_records.clone());
            batches.recycle(p);
        }
        assert_eq!(got, want);
        assert_eq!(batches.len(Signal::Logs), 0);

        e.span(Span {
            name: "s".into(),
            ..Default::default()
        });
        let (p, n) = batches.take(Signal::Traces).unwrap();
        let Payload::Encoded(enc) = p else { panic!() };
        let req = ExportTraceServiceRequest::decode(enc.bytes()).unwrap();
        assert_eq!(
            (
                n,
                req.resource_spans[0].scope_spans[0].spans[0].name.as_str()
            ),
            (1, "s")
        );
        assert_eq!(req.resource_spans[0].resource, Some(resource()));
    }

    /// The same records through a protobuf and an OTLP/JSON emitter: each
    /// JSON request (one stdout line) is the protobuf request, batch by
    /// batch, including records still built as messages, after the queue
    /// dropped its oldest.
    #[test]
    fn json_batches_are_the_protobuf_requests() {
        use crate::otel::json::tests::same_json;
        let t = Telemetry::new(0);
        let (mut p, pb) = Emitter::standalone_as(Format::Protobuf, &resource(), 7, 3, t.clone());
        let (mut j, jb) = Emitter::standalone_as(Format::Json, &resource(), 7, 3, t);
        for e in [&mut p, &mut j] {
            for i in 0..9u64 {
                crate::encode_log!(e, |enc| {
                    let mut w = enc.log(i + 1, Severity::Info);
                    w.body(format_args!("record \"{i}\""));
                    w.int("n", i as i64);
                    w.finish_log(0, "test.event");
                });
                e.log(LogRecord {
                    event_name: format!("old {i}"),
                    severity_number: 9,
                    ..Default::default()
                });
            }
            crate::encode_span!(e, |enc| {
                let mut w = enc.span(&[1; 16], &[2; 8], "s", 3, 4, 5);
                w.str("k", "v");
                w.finish_span(wire::StatusCode::Error, format_args!("bad"));
            });
            e.span(Span {
                name: "old".into(),
                ..Default::default()
            });
        }
        for signal in [Signal::Logs, Signal::Traces] {
            let mut batches = 0;
            while let Some((pp, n)) = pb.take(signal) {
                let (jp, jn) = jb.take(signal).expect("as many JSON batches");
                assert_eq!(n, jn);
                let (Payload::Encoded(pe), Payload::Json(je)) = (&pp, &jp) else {
                    panic!("formats")
                };
                let line = std::str::from_utf8(je.bytes()).unwrap();
                assert!(!line.contains('\n'), "one line");
                let mine: serde_json::Value = serde_json::from_str(line).unwrap();
                let theirs = match signal {
                    Signal::Traces => {
                        let want = ExportTraceServiceRequest::decode(pe.bytes()).unwrap();
                        let got: ExportTraceServiceRequest = serde_json::from_str(line).unwrap();
                        assert_eq!(got, want);
                        serde_json::to_value(&want).unwrap()
                    }
                    _ => {
                        let want = ExportLogsServiceRequest::decode(pe.bytes()).unwrap();
                        let got: ExportLogsServiceRequest = serde_json::from_str(line).unwrap();
                        assert_eq!(got, want);
                        serde_json::to_value(&want).unwrap()
                    }
                };
                same_json(&mine, &theirs, "");
                pb.recycle(pp);
                jb.recycle(jp);
                batches += 1;
            }
            assert!(jb.take(signal).is_none());
            assert!(batches > 0);
        }
    }
}
