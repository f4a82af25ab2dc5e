//! Tapio's own counters: what each probe received and lost, what each
//! export path sent, dropped and queued, and how long events took to get
//! through. Hot paths touch only atomics, or plain integers a reader adds to
//! them once per wake ([`ReaderStats`]); `otel::metrics` turns a snapshot
//! into OTLP metrics.

use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use crate::supervise::lock;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    Arc, Mutex,
};

/// Reasons a probe loses events, as exported in `tapio.reason`. The kernel
/// ones are indexed by `enum tapio_lost_reason` in the shared header.
pub const KERNEL_LOST_REASONS: [&str;
    tapio_shared::tapio_lost_reason::TAPIO_LOST_REASON_MAX as usize] =
    ["ringbuf_full", "map_full", "read_error", "end_unseen"];

/// Reason of the program runs the kernel skipped because the program was
/// already running on that CPU: read from the kernel's program info, not
/// counted by the programs.
pub const RECURSION: &str = "recursion";

/// Reads a probe's per-CPU kernel loss counters, summed over CPUs, indexed
/// like [`KERNEL_LOST_REASONS`].
pub type KernelLostReader = Box<dyn Fn() -> Option<Vec<u64>> + Send + Sync>;

/// Reads how many runs the kernel skipped of a probe's programs because
/// one was already running on that CPU ([`crate::prog_info`]).
pub type RecursionReader = Box<dyn Fn() -> u64 + Send + Sync>;

/// Upper bounds (ns) of the pipeline-latency buckets: 50 µs to 10 s.
const LATENCY_BOUNDS_NS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// The bucket of `ns`: the first whose upper bound is at least `ns`.
fn bucket(ns: u64) -> usize {
    LATENCY_BOUNDS_NS.partition_point(|&b| b < ns)
}

/// A cumulative explicit-bucket histogram of nanosecond values.
pub struct Histogram {
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds_ns: &'static [u64],
    pub counts: Vec<u64>,
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..=LATENCY_BOUNDS_NS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record_ns(&self, ns: u64) {
        self.counts[bucket(ns)].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Add a reader's counts taken since it last did.
    fn add(&self, local: &mut LocalHistogram) {
        for (shared, n) in self.counts.iter().zip(local.counts.iter_mut()) {
            if *n != 0 {
                shared.fetch_add(std::mem::take(n), Relaxed);
            }
        }
        if local.sum_ns != 0 {
            self.sum_ns
                .fetch_add(std::mem::take(&mut local.sum_ns), Relaxed);
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_ns: LATENCY_BOUNDS_NS,
            counts: self.counts.iter().map(|c| c.load(Relaxed)).collect(),
            sum_ns: self.sum_ns.load(Relaxed),
        }
    }
}

/// A [`Histogram`]'s counts in plain integers, for one reader.
#[derive(Debug, Default)]
struct LocalHistogram {
    counts: [u64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: u64,
}

impl LocalHistogram {
    fn record_ns(&mut self, ns: u64) {
        self.counts[bucket(ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }
}

/// A shared [`Histogram`] one reader records into: counted in plain
/// integers, added to the shared one by [`HistogramTally::flush`] (once
/// per wake; see [`ReaderStats`] for why).
pub struct HistogramTally {
    shared: Arc<Histogram>,
    local: LocalHistogram,
}

impl HistogramTally {
    pub fn new(shared: Arc<Histogram>) -> Self {
        Self {
            shared,
            local: LocalHistogram::default(),
        }
    }

    pub fn record_ns(&mut self, ns: u64) {
        self.local.record_ns(ns);
    }

    pub fn flush(&mut self) {
        self.shared.add(&mut self.local);
    }
}

impl Drop for HistogramTally {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A ring-buffer reader's view of its probe's counters: what it counts per
/// record (records received, their latency) it keeps in plain integers and
/// adds to the shared atomics once per wake ([`ReaderStats::flush`], from
/// the handler's `end_wake`). A locked add per counter per record waited
/// for the record's encoded bytes still in the store buffer: 6 % of a
/// loaded agent's CPU sat on those adds (perf, sustained-load bench). The
/// rest of [`ProbeStats`] is reached through `Deref`.
pub struct ReaderStats {
    shared: Arc<ProbeStats>,
    received: u64,
    latency: LocalHistogram,
}

impl ReaderStats {
    pub fn new(shared: Arc<ProbeStats>) -> Self {
        Self {
            shared,
            received: 0,
            latency: LocalHistogram::default(),
        }
    }

    /// [`ProbeStats::decoded`], the record counted here until the flush.
    pub fn decoded<T, E: std::fmt::Display>(&mut self, r: Result<T, E>) -> Option<T> {
        self.received += 1;
        self.shared.decode_result(r)
    }

    /// A record's pipeline latency, kept here until the flush.
    pub fn record_latency_ns(&mut self, ns: u64) {
        self.latency.record_ns(ns);
    }

    /// Add what was counted since the last flush to the shared counters.
    pub fn flush(&mut self) {
        if self.received != 0 {
            self.shared
                .received
                .fetch_add(std::mem::take(&mut self.received), Relaxed);
        }
        self.shared.latency.add(&mut self.latency);
    }
}

impl std::ops::Deref for ReaderStats {
    type Target = ProbeStats;
    fn deref(&self) -> &ProbeStats {
        &self.shared
    }
}

impl Drop for ReaderStats {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Per-probe counters.
pub struct ProbeStats {
    pub name: &'static str,
    pub received: AtomicU64,
    pub decode_errors: AtomicU64,
    pub latency: Histogram,
    attach_type: Mutex<String>,
    kernel_lost: Mutex<Option<KernelLostReader>>,
    recursion: Mutex<Option<RecursionReader>>,
    /// Probe-specific userspace losses (e.g. dns `unmatched`), by reason.
    user_lost: Mutex<Vec<(&'static str, u64)>>,
    /// Its reader task failed: nothing reads its ring buffer any more.
    failed: AtomicBool,
}

impl ProbeStats {
    /// Count a record read from the ring buffer and pass on its decoding;
    /// a decode error is counted (`tapio.events.lost{reason=decode_error}`)
    /// and logged the first time only, so garbage cannot flood the logs.
    pub fn decoded<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Option<T> {
        self.received.fetch_add(1, Relaxed);
        self.decode_result(r)
    }

    /// A decoding's result, its error counted and logged the first time.
    fn decode_result<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                if self.decode_errors.fetch_add(1, Relaxed) == 0 {
                    tracing::warn!(probe = self.name, "undecodable record: {e}");
                }
                None
            }
        }
    }

    /// Count `n` events lost in userspace for `reason`. Only loss paths
    /// take this lock.
    pub fn lose(&self, reason: &'static str, n: u64) {
        let mut v = lock(&self.user_lost);
        match v.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => v.push((reason, n)),
        }
    }

    pub fn set_attach_type(&self, t: &str) {
        *lock(&self.attach_type) = t.to_string();
    }

    pub fn set_kernel_lost_reader(&self, r: KernelLostReader) {
        *lock(&self.kernel_lost) = Some(r);
    }

    pub fn set_recursion_reader(&self, r: RecursionReader) {
        *lock(&self.recursion) = Some(r);
    }

    /// The probe's reader failed: `tapio.probe.attached` reports 0.
    pub fn set_failed(&self) {
        self.failed.store(true, Relaxed);
    }

    /// 1 while the probe runs, 0 once its reader failed.
    pub fn attached_value(&self) -> u64 {
        u64::from(!self.failed.load(Relaxed))
    }

    /// The kernel's loss counters ([`KERNEL_LOST_REASONS`]) summed: what
    /// [`ProbeStats::lost`] reports of them, without its other readers
    /// (the recursion count is a `BPF_OBJ_GET_INFO_BY_FD` per program,
    /// for a reader that asks a hundred times a second).
    pub fn kernel_lost_total(&self) -> u64 {
        lock(&self.kernel_lost)
            .as_ref()
            .and_then(|f| f())
            .map_or(0, |counts| {
                counts.iter().take(KERNEL_LOST_REASONS.len()).sum()
            })
    }

    /// Losses by reason name: the kernel's (its counters, then the program
    /// runs it skipped as recursion), then userspace decode errors.
    pub fn lost(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> =
            KERNEL_LOST_REASONS.iter().map(|r| (*r, 0)).collect();
        if let Some(counts) = lock(&self.kernel_lost).as_ref().and_then(|f| f()) {
            for (slot, n) in out.iter_mut().zip(counts) {
                slot.1 = n;
            }
        }
        let recursion = lock(&self.recursion).as_ref().map_or(0, |f| f());
        out.push((RECURSION, recursion));
        out.push(("decode_error", self.decode_errors.load(Relaxed)));
        out.extend(lock(&self.user_lost).iter().copied());
        out
    }

    pub fn attach_type(&self) -> String {
        lock(&self.attach_type).clone()
    }
}

/// Signals the export path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }
}

/// Why the export path dropped records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full; the oldest records made room.
    QueueFull = 0,
    /// Retries ran out (max_elapsed_time) or retry is disabled.
    RetryExhausted = 1,
    /// The destination refused the data with a permanent error.
    Rejected = 2,
    /// Shutdown deadline passed before they were flushed.
    Shutdown = 3,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::RetryExhausted,
        DropReason::Rejected,
        DropReason::Shutdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RetryExhausted => "retry_exhausted",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// Most record sources (probes, plus the agent itself) the export path
/// tells apart in `tapio.export.dropped`: Tapio has 8 probes.
pub const MAX_SOURCES: usize = 16;

/// Where exported records come from: the agent itself (its own logs and
/// metrics, index 0) or a probe, registered by name in [`Telemetry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Source(pub u8);

impl Source {
    /// Tapio's own records (task failures, policy logs, metrics).
    pub const AGENT: Source = Source(0);
}

/// Records per source (a batch's, or what a queue holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceCounts(pub [u64; MAX_SOURCES]);

impl SourceCounts {
    /// `n` records all from `s`.
    pub fn of(s: Source, n: u64) -> Self {
        let mut c = Self::default();
        c.0[usize::from(s.0) % MAX_SOURCES] = n;
        c
    }

    pub fn add(&mut self, s: Source, n: u64) {
        self.0[usize::from(s.0) % MAX_SOURCES] += n;
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `n` of these records, split over the sources in proportion (the
    /// remainder to the largest): a partial rejection does not say which
    /// records were refused.
    pub fn share(&self, n: u64) -> Self {
        let total = self.total();
        let n = n.min(total);
        if n == total {
            return *self;
        }
        let mut out = Self::default();
        let mut given = 0;
        for (o, c) in out.0.iter_mut().zip(self.0) {
            *o = (u128::from(c) * u128::from(n) / u128::from(total)) as u64;
            given += *o;
        }
        if let Some(i) = (0..MAX_SOURCES).max_by_key(|&i| self.0[i]) {
            out.0[i] += n - given;
        }
        out
    }
}

/// Per-signal export counters.
pub struct SignalStats {
    pub sent: AtomicU64,
    pub failures: AtomicU64,
    pub queue_len: AtomicU64,
    /// Dropped records by source and reason: with several probes on one
    /// signal, which probe's records were lost is what makes the
    /// accounting exact (produced = received + lost + dropped, per probe).
    dropped: [[AtomicU64; 4]; MAX_SOURCES],
    /// Sources that have queued records on this signal (their series are
    /// exported, zeros included).
    used: [AtomicBool; MAX_SOURCES],
}

impl Default for SignalStats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            queue_len: AtomicU64::new(0),
            dropped: std::array::from_fn(|_| Default::default()),
            used: std::array::from_fn(|_| AtomicBool::new(false)),
        }
    }
}

impl SignalStats {
    /// `n` records of the agent's own dropped (metrics).
    pub fn drop_records(&self, reason: DropReason, n: u64) {
        self.drop_from(reason, Source::AGENT, n);
    }

    pub fn drop_from(&self, reason: DropReason, s: Source, n: u64) {
        if n > 0 {
            self.dropped[usize::from(s.0) % MAX_SOURCES][reason as usize].fetch_add(n, Relaxed);
        }
    }

    pub fn drop_counts(&self, reason: DropReason, c: &SourceCounts) {
        for (i, n) in c.0.iter().enumerate() {
            self.drop_from(reason, Source(i as u8), *n);
        }
    }

    /// Dropped for `reason`, all sources.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .map(|d| d[reason as usize].load(Relaxed))
            .sum()
    }

    pub fn dropped_from(&self, reason: DropReason, s: Source) -> u64 {
        self.dropped[usize::from(s.0) % MAX_SOURCES][reason as usize].load(Relaxed)
    }

    /// Mark `s` as queuing records on this signal.
    pub fn mark_used(&self, s: Source) {
        let u = &self.used[usize::from(s.0) % MAX_SOURCES];
        if !u.load(Relaxed) {
            u.store(true, Relaxed);
        }
    }

    pub fn is_used(&self, s: Source) -> bool {
        self.used[usize::from(s.0) % MAX_SOURCES].load(Relaxed)
    }
}

/// How a config reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new policy is in force.
    Applied = 0,
    /// The file did not parse or validate; nothing changed.
    Rejected = 1,
    /// The kernel refused a map update; that probe keeps its old policy.
    Failed = 2,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [
        ReloadResult::Applied,
        ReloadResult::Rejected,
        ReloadResult::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Rejected => "rejected",
            ReloadResult::Failed => "failed",
        }
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadSource {
    /// The watched config file.
    File = 0,
    /// An OpAMP server's remote config.
    Opamp = 1,
}

impl ReloadSource {
    pub const ALL: [ReloadSource; 2] = [ReloadSource::File, ReloadSource::Opamp];

    pub fn name(self) -> &'static str {
        match self {
            ReloadSource::File => "file",
            ReloadSource::Opamp => "opamp",
        }
    }
}

/// `tapio.config.reload`: INFO when the new policy is in force, ERROR
/// (with the reason as the body) when the previous policy stays. `origin`
/// is the file's path or the OpAMP server's URL.
pub fn config_reload(
    enc: &mut impl Encode,
    source: ReloadSource,
    origin: &str,
    result: ReloadResult,
    why: Option<&str>,
    now: u64,
) {
    let severity = if why.is_some() {
        Severity::Error
    } else {
        Severity::Info
    };
    let mut w = enc.log(now, severity);
    match why {
        None => w.body(format_args!("{origin}: policy reloaded")),
        Some(why) => w.body(format_args!(
            "{origin}: {why}; the previous policy stays in force"
        )),
    }
    w.str(attr::TAPIO_RELOAD_RESULT, result.name());
    w.str(attr::TAPIO_CONFIG_SOURCE, source.name());
    if source == ReloadSource::File {
        w.str(attr::TAPIO_CONFIG_PATH, origin);
    }
    w.finish_log(now, event::TAPIO_CONFIG_RELOAD);
}

/// Config reloads by source and result.
#[derive(Default)]
pub struct ReloadStats([[AtomicU64; 3]; 2]);

impl ReloadStats {
    pub fn count(&self, s: ReloadSource, r: ReloadResult) {
        self.0[s as usize][r as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, s: ReloadSource, r: ReloadResult) -> u64 {
        self.0[s as usize][r as usize].load(Relaxed)
    }
}

/// OpAMP exchanges with the server: answered, or failed (unreachable,
/// an HTTP error, an undecodable answer or an error response).
#[derive(Default)]
pub struct OpampStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// All of Tapio's self-telemetry.
pub struct Telemetry {
    /// CLOCK_REALTIME ns when the agent started: the start of every
    /// cumulative series.
    pub start_unix_ns: u64,
    probes: Mutex<Vec<Arc<ProbeStats>>>,
    signals: [SignalStats; 3],
    /// Record sources by [`Source`] index; 0 is the agent.
    sources: Mutex<Vec<&'static str>>,
    pub reloads: ReloadStats,
    pub opamp: OpampStats,
}

impl Telemetry {
    pub fn new(start_unix_ns: u64) -> Arc<Self> {
        Arc::new(Self {
            start_unix_ns,
            probes: Mutex::new(Vec::new()),
            signals: Default::default(),
            sources: Mutex::new(vec!["agent"]),
            reloads: ReloadStats::default(),
            opamp: OpampStats::default(),
        })
    }

    /// The counters of probe `name`, created on first use.
    pub fn probe(&self, name: &'static str) -> Arc<ProbeStats> {
        let mut probes = lock(&self.probes);
        if let Some(p) = probes.iter().find(|p| p.name == name) {
            return p.clone();
        }
        let p = Arc::new(ProbeStats {
            name,
            received: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            latency: Histogram::default(),
            attach_type: Mutex::new(String::new()),
            kernel_lost: Mutex::new(None),
            recursion: Mutex::new(None),
            user_lost: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
        });
        probes.push(p.clone());
        p
    }

    pub fn probes(&self) -> Vec<Arc<ProbeStats>> {
        lock(&self.probes).clone()
    }

    pub fn signal(&self, s: Signal) -> &SignalStats {
        &self.signals[s as usize]
    }

    /// The source id of probe `name`, registered on first use. Past
    /// [`MAX_SOURCES`] names share the last id (never with 8 probes).
    pub fn source(&self, name: &'static str) -> Source {
        let mut v = lock(&self.sources);
        let i = match v.iter().position(|n| *n == name) {
            Some(i) => i,
            None if v.len() < MAX_SOURCES => {
                v.push(name);
                v.len() - 1
            }
            None => MAX_SOURCES - 1,
        };
        Source(i as u8)
    }

    /// Registered sources: (id, name), the agent first.
    pub fn sources(&self) -> Vec<(Source, &'static str)> {
        lock(&self.sources)
            .iter()
            .enumerate()
            .map(|(i, n)| (Source(i as u8), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader's counts reach the shared counters when it flushes (its
    /// wake's end) or goes away, in the same buckets a direct record puts
    /// them in.
    #[test]
    fn reader_counts_reach_the_probe_at_flush_and_drop() {
        let t = Telemetry::new(0);
        let shared = t.probe("process");
        let direct = Histogram::default();
        let mut r = ReaderStats::new(shared.clone());
        for ns in [1, 50_000, 50_001, 7_000_000, 20_000_000_000] {
            assert_eq!(r.decoded(Ok::<_, String>(ns)), Some(ns));
            r.record_latency_ns(ns);
            direct.record_ns(ns);
        }
        assert_eq!(r.decoded(Err::<u64, _>("short")), None);
        assert_eq!(shared.received.load(Relaxed), 0);
        assert_eq!(shared.decode_errors.load(Relaxed), 1);
        r.flush();
        assert_eq!(shared.received.load(Relaxed), 6);
        assert_eq!(shared.latency.snapshot(), direct.snapshot());
        r.record_latency_ns(3);
        drop(r);
        direct.record_ns(3);
        assert_eq!(shared.latency.snapshot(), direct.snapshot());

        let mut tally = HistogramTally::new(Arc::new(Histogram::default()));
        let shared = tally.shared.clone();
        tally.record_ns(60_000);
        assert_eq!(shared.snapshot().count(), 0);
        tally.flush();
        tally.flush();
        assert_eq!(shared.snapshot().count(), 1);
        assert_eq!(shared.snapshot().sum_ns, 60_000);
    }

    /// The record the opentelemetry-proto builder made before the direct
    /// writer, field for field.
    fn old_config_reload(
        source: ReloadSource,
        origin: &str,
        result: ReloadResult,
        why: Option<&str>,
        now: u64,
    ) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
        use crate::otel::kv_str;
        use opentelemetry_proto::tonic::{
            common::v1::{any_value::Value, AnyValue},
            logs::v1::{LogRecord, SeverityNumber},
        };
        let (severity, text, body) = match why {
            None => (
                SeverityNumber::Info,
                "INFO",
                format!("{origin}: policy reloaded"),
            ),
            Some(w) => (
                SeverityNumber::Error,
                "ERROR",
                format!("{origin}: {w}; the previous policy stays in force"),
            ),
        };
        let mut attributes = vec![
            kv_str(attr::TAPIO_RELOAD_RESULT, result.name()),
            kv_str(attr::TAPIO_CONFIG_SOURCE, source.name()),
        ];
        if source == ReloadSource::File {
            attributes.push(kv_str(attr::TAPIO_CONFIG_PATH, origin));
        }
        LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: severity as i32,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(Value::StringValue(body)),
            }),
            attributes,
            event_name: event::TAPIO_CONFIG_RELOAD.into(),
            ..Default::default()
        }
    }

    #[test]
    fn config_reload_matches_the_old_mapping() {
        use crate::otel::wire::{Encoder, RECORD_FIELD};
        for source in ReloadSource::ALL {
            for result in ReloadResult::ALL {
                for why in [None, Some("probes.lsm: no such hook")] {
                    let mut enc = Encoder::default();
                    config_reload(&mut enc, source, "/etc/tapio.yaml", result, why, 77);
                    let old = old_config_reload(source, "/etc/tapio.yaml", result, why, 77);
                    let mut want = Vec::new();
                    prost::encoding::message::encode(RECORD_FIELD, &old, &mut want);
                    assert_eq!(enc.record(), &want[..], "{source:?} {result:?} {why:?}");
                }
            }
        }
    }

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let h = Histogram::default();
        h.record_ns(50_000); // == first bound: first bucket
        h.record_ns(50_001);
        h.record_ns(20_000_000_000); // overflow bucket
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(*s.counts.last().unwrap(), 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, 20_000_100_001);
    }

    #[test]
    fn shares_split_in_proportion_and_sum_exactly() {
        let mut c = SourceCounts::default();
        c.add(Source(1), 300);
        c.add(Source(2), 100);
        c.add(Source(2), 1);
        assert_eq!(c.total(), 401);
        let s = c.share(100);
        assert_eq!(s.total(), 100);
        assert_eq!((s.0[1], s.0[2]), (75, 25));
        assert_eq!(c.share(1000), c);
        assert_eq!(c.share(0).total(), 0);
    }

    #[test]
    fn drops_are_kept_per_source() {
        let t = Telemetry::new(0);
        let p = t.source("process");
        assert_eq!(t.source("process"), p);
        let d = t.source("dns");
        let st = t.signal(Signal::Logs);
        st.drop_from(DropReason::QueueFull, p, 3);
        st.drop_counts(DropReason::QueueFull, &SourceCounts::of(d, 2));
        st.drop_records(DropReason::QueueFull, 1);
        assert_eq!(st.dropped(DropReason::QueueFull), 6);
        assert_eq!(st.dropped_from(DropReason::QueueFull, d), 2);
        assert_eq!(st.dropped_from(DropReason::QueueFull, Source::AGENT), 1);
        assert_eq!(t.sources()[0], (Source::AGENT, "agent"));
    }

    #[test]
    fn probe_stats_are_shared_by_name() {
        let t = Telemetry::new(0);
        t.probe("process").received.fetch_add(2, Relaxed);
        assert_eq!(t.probe("process").received.load(Relaxed), 2);
        assert_eq!(t.probes().len(), 1);
        let lost = t.probe("process").lost();
        assert_eq!(lost.len(), 6);
        assert_eq!(lost[3], ("end_unseen", 0));
        assert_eq!(lost[4], (RECURSION, 0));
        assert_eq!(lost[5], ("decode_error", 0));
    }

    #[test]
    fn recursion_is_read_from_its_reader() {
        let t = Telemetry::new(0);
        let p = t.probe("network");
        p.set_recursion_reader(Box::new(|| 7));
        assert!(p.lost().contains(&(RECURSION, 7)));
    }

    /// The DNS reader's frequent read sums the kernel's counters and asks
    /// nothing of the recursion reader (a syscall per program).
    #[test]
    fn kernel_lost_total_reads_only_the_kernel_counters() {
        let t = Telemetry::new(0);
        let p = t.probe("dns");
        assert_eq!(p.kernel_lost_total(), 0);
        let asked = Arc::new(AtomicU64::new(0));
        let a = asked.clone();
        p.set_recursion_reader(Box::new(move || {
            a.fetch_add(1, Relaxed);
            5
        }));
        p.set_kernel_lost_reader(Box::new(|| Some(vec![3, 0, 1, 2])));
        p.lose("unmatched", 4);
        assert_eq!(p.kernel_lost_total(), 6);
        assert_eq!(asked.load(Relaxed), 0);
        let all: u64 = p.lost().iter().map(|(_, n)| n).sum();
        assert_eq!((all, asked.load(Relaxed)), (6 + 5 + 4, 1));
    }
}
