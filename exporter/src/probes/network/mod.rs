//! The network probe, kernel record to OTLP in one folder:
//! `ebpf/network.bpf.c` writes TCP connect and close records, `decode`
//! reads them, `otlp` writes `tcp.connect` spans and
//! `network.connection.close` logs, and the in-kernel connect-latency
//! histogram becomes `tapio.tcp.connect.duration` here.

pub mod decode;
#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

#[cfg(test)]
pub(crate) use decode::fixtures;
pub use decode::{decode, errno_name, DecodeError, Errno, Outcome, Record, Tuple};

use super::{Attach, ProbeSpec, Variant};

pub const NAME: &str = "network";
pub const PROG_STATE_BTF: &str = "tapio_tcp_state_btf";
/// Does the state changes the kernel skips for `PROG_STATE_BTF` because it
/// was already running on that CPU, and only those (`ebpf/network.bpf.c`).
pub const PROG_STATE_BTF_NESTED: &str = "tapio_tcp_state_btf_nested";
pub const PROG_STATE_TP: &str = "tapio_tcp_state_tp";
pub const MAP_HIST: &str = "tapio_tcp_hist";

pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::NETWORK,
    variants: &[
        Variant {
            label: "tp_btf",
            // In this order: a tracepoint runs its programs in the order
            // they were attached, and the twin looks for what the first
            // one pushed for the same event (ebpf/network.bpf.c).
            programs: &[
                (PROG_STATE_BTF, Attach::BtfTracePoint("inet_sock_set_state")),
                (
                    PROG_STATE_BTF_NESTED,
                    Attach::BtfTracePoint("inet_sock_set_state"),
                ),
            ],
        },
        Variant {
            label: "tracepoint",
            programs: &[(
                PROG_STATE_TP,
                Attach::TracePoint("sock", "inet_sock_set_state"),
            )],
        },
    ],
};

/// Turns network records into spans and logs.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: crate::telemetry::ReaderStats,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
    pub ids: crate::otel::traces::IdGenerator,
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn end_wake(&mut self) {
        self.emitter.flush();
        self.stats.flush();
    }

    fn handle(&mut self, record: &[u8]) {
        let Some(rec) = self.stats.decoded(decode(record)) else {
            return;
        };
        let h = rec.header();
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        match &rec {
            Record::Connect(r) => {
                let ids = &mut self.ids;
                crate::encode_span!(self.emitter, |enc| otlp::connect(enc, r, &ctx, clock, ids));
            }
            Record::Close(r) => {
                let observed = self.clock.sampled_unix_ns();
                crate::encode_log!(self.emitter, |enc| otlp::close(
                    enc, r, &ctx, clock, observed
                ));
            }
        }
        let lat = self
            .clock
            .sampled_boot_ns()
            .saturating_sub(rec.header().ts_ns);
        self.stats.record_latency_ns(lat);
    }
}

/// Reads the per-CPU connect histogram and exports it.
pub fn histogram_producer(
    map: aya::maps::PerCpuArray<aya::maps::MapData, tapio_shared::tapio_hist>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics::log2_histogram_seconds, names};
    let map = std::sync::Mutex::new(map);
    Box::new(move |now| {
        let map = crate::supervise::lock(&map);
        let mut points = Vec::new();
        for (i, oc) in Outcome::ALL.iter().enumerate() {
            for (v6, net) in [(0usize, "ipv4"), (1, "ipv6")] {
                let series = (i * 2 + v6) as u32;
                let Ok(per_cpu) = map.get(&series, 0) else {
                    continue;
                };
                let (buckets, sum) = crate::otel::metrics::sum_per_cpu_hist(&per_cpu);
                if buckets.iter().all(|n| *n == 0) {
                    continue;
                }
                let mut attrs = vec![kv_str(names::attr::NETWORK_TYPE, net)];
                if let Some(e) = oc.error_type() {
                    attrs.push(kv_str(names::attr::ERROR_TYPE, e));
                }
                points.push((attrs, buckets, sum));
            }
        }
        if points.is_empty() {
            return Vec::new();
        }
        vec![log2_histogram_seconds(
            &names::TCP_CONNECT_DURATION,
            start_unix_ns,
            now,
            points,
        )]
    })
}
