//! The dns probe, kernel record to OTLP in one folder: `ebpf/dns.bpf.c`
//! hands over DNS packets of local clients, `decode` reads them, they are
//! parsed here (`dnsmsg`), queries are matched with responses by tuple +
//! transport + transaction id, and `otlp` writes each lookup as a
//! `dns.query` span; each is also a point in `dns.lookup.duration`.
//! Queries unanswered within the timeout end as error spans: `timeout`
//! when the probe's kernel side lost nothing meanwhile, `events_lost` when
//! it did (the response may be among the lost packets).
//!
//! Encrypted DNS (DoT, DoH) hides its lookups; each connection a process
//! opens to an encrypted resolver is counted instead, per process and
//! workload, in `tapio.dns.encrypted.connections`.

pub mod decode;
#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;
mod pending;

pub use decode::{decode, decode_encrypted, DecodeError, Encrypted, Packet, Transport};

use super::{network::Tuple, Attach, ProbeSpec, SkbDirection, Variant};
use crate::{
    dnsmsg,
    enrich::Enricher,
    telemetry::{Histogram, HistogramTally, ProbeStats},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tapio_shared::tapio_event_header;

pub const NAME: &str = "dns";
pub const MAP_PORTS: &str = "tapio_dns_ports";
pub const MAP_CFG: &str = "tapio_dns_cfg";
pub const MAP_ENC_PORTS: &str = "tapio_dns_enc_ports";
pub const MAP_DOH_NAMES: &str = "tapio_dns_doh_names";
/// The variants whose cgroup_skb programs carry TCP.
pub const VARIANT_TCP: &str = "tp_btf+cgroup_skb";
pub const VARIANT_TCP_NO_OWNER: &str = "tp_btf+cgroup_skb-no-owner";

pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::DNS,
    // DNS over TCP needs the cgroup_skb programs (TCP payload sits in page
    // fragments only bpf_skb_load_bytes reads); without them TCP lookups are
    // counted as not_captured.
    // sock_send_length (6.3+) learns socket owners in process context, so
    // queries sent later from softirq (after ARP/NDP) keep their process;
    // without it those queries carry no process.
    variants: &[
        Variant {
            label: VARIANT_TCP,
            programs: &[
                (
                    "tapio_dns_send_btf",
                    Attach::BtfTracePoint("sock_send_length"),
                ),
                (
                    "tapio_dns_egress_btf",
                    Attach::BtfTracePoint("net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_btf",
                    Attach::BtfTracePoint("netif_receive_skb"),
                ),
                (
                    "tapio_dns_tcp_connect_btf",
                    Attach::BtfTracePoint("inet_sock_set_state"),
                ),
                (
                    "tapio_dns_tcp_egress",
                    Attach::CgroupSkb(SkbDirection::Egress),
                ),
                (
                    "tapio_dns_tcp_ingress",
                    Attach::CgroupSkb(SkbDirection::Ingress),
                ),
            ],
        },
        Variant {
            label: VARIANT_TCP_NO_OWNER,
            programs: &[
                (
                    "tapio_dns_egress_btf",
                    Attach::BtfTracePoint("net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_btf",
                    Attach::BtfTracePoint("netif_receive_skb"),
                ),
                (
                    "tapio_dns_tcp_connect_btf",
                    Attach::BtfTracePoint("inet_sock_set_state"),
                ),
                (
                    "tapio_dns_tcp_egress",
                    Attach::CgroupSkb(SkbDirection::Egress),
                ),
                (
                    "tapio_dns_tcp_ingress",
                    Attach::CgroupSkb(SkbDirection::Ingress),
                ),
            ],
        },
        Variant {
            label: "tp_btf",
            programs: &[
                (
                    "tapio_dns_send_btf",
                    Attach::BtfTracePoint("sock_send_length"),
                ),
                (
                    "tapio_dns_egress_btf",
                    Attach::BtfTracePoint("net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_btf",
                    Attach::BtfTracePoint("netif_receive_skb"),
                ),
            ],
        },
        Variant {
            label: "tp_btf-no-owner",
            programs: &[
                (
                    "tapio_dns_egress_btf",
                    Attach::BtfTracePoint("net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_btf",
                    Attach::BtfTracePoint("netif_receive_skb"),
                ),
            ],
        },
        Variant {
            label: "tracepoint",
            programs: &[
                (
                    "tapio_dns_send_tp",
                    Attach::TracePoint("sock", "sock_send_length"),
                ),
                (
                    "tapio_dns_egress_tp",
                    Attach::TracePoint("net", "net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_tp",
                    Attach::TracePoint("net", "netif_receive_skb"),
                ),
            ],
        },
        Variant {
            label: "tracepoint-no-owner",
            programs: &[
                (
                    "tapio_dns_egress_tp",
                    Attach::TracePoint("net", "net_dev_queue"),
                ),
                (
                    "tapio_dns_receive_tp",
                    Attach::TracePoint("net", "netif_receive_skb"),
                ),
            ],
        },
    ],
};

/// Outstanding queries we remember; beyond this the oldest are dropped and
/// counted (`tapio.events.lost{reason=pending_evicted}`).
const MAX_PENDING: usize = 65_536;

/// How old the kernel loss counts may get while no query is expiring: under
/// load a query's baseline is about this stale, so a loss up to this long
/// before it was sent may still count against it.
const LOST_READ_EVERY_NS: u64 = 10_000_000;

/// Query ↔ response key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub tuple: Tuple,
    pub transport: Transport,
    pub id: u16,
}

impl std::hash::Hash for Key {
    /// Three integer writes: the derived Hash made nine writes (SipHash
    /// paid per call), and one write of the key as 39 bytes took foldhash's
    /// long-input path (2 % of a loaded agent's CPU); foldhash folds an
    /// integer in one multiply.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let t = &self.tuple;
        state.write_u128(u128::from_ne_bytes(super::ip_to16(t.local)));
        state.write_u128(u128::from_ne_bytes(super::ip_to16(t.remote)));
        state.write_u64(
            u64::from(t.local_port)
                | u64::from(t.remote_port) << 16
                | u64::from(self.id) << 32
                | u64::from(self.transport == Transport::Tcp) << 48,
        );
    }
}

/// A query waiting for its response.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The querying task (its owner and workload are looked up when the
    /// lookup ends: the caches were filled when the query was seen).
    pub hdr: tapio_event_header,
    pub sent_boot_ns: u64,
    pub name: String,
    pub qtype: u16,
    /// The probe's kernel losses (all reasons, summed) as read at an
    /// earlier wake than the one that handled the query: the query was
    /// written to the ring buffer after that read (else that wake would
    /// have drained it), so no loss after its send is missed
    /// ([`Handler::refresh_kernel_lost`]).
    pub lost_at_send: u64,
}

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// The response came, with this rcode.
    Answered(u8),
    /// No response within the timeout, and the probe's kernel side lost no
    /// event meanwhile: the server did not answer.
    Timeout,
    /// No response seen within the timeout, but the kernel side lost
    /// events (a full ring buffer) meanwhile: the response may be one of
    /// them, so this is not counted as a timeout.
    EventsLost,
}

/// `error.type` of a lookup whose response may have been lost.
pub const ERROR_EVENTS_LOST: &str = "events_lost";
/// `error.type` of a lookup the server did not answer.
pub const ERROR_TIMEOUT: &str = "timeout";

/// A finished lookup, ready to become a span.
#[derive(Debug, Clone)]
pub struct Lookup<'a> {
    pub key: Key,
    pub query: Pending,
    /// None: no response seen.
    pub response: Option<&'a dnsmsg::Message>,
    pub end_boot_ns: u64,
    /// Kernel losses between the query and the end (0 when answered).
    pub lost_since_sent: u64,
}

impl Lookup<'_> {
    /// The rcode, `None` for no response.
    pub fn rcode(&self) -> Option<u8> {
        self.response.map(|m| m.rcode)
    }

    pub fn end(&self) -> End {
        match self.response {
            Some(m) => End::Answered(m.rcode),
            None if self.lost_since_sent > 0 => End::EventsLost,
            None => End::Timeout,
        }
    }

    /// Failures worth an ERROR status: no answer, or the server failed.
    /// NXDOMAIN is an answer.
    pub fn failed(&self) -> bool {
        match self.response {
            None => true,
            Some(m) => !matches!(m.rcode, 0 | 3),
        }
    }
}

/// Histograms by (`dns.response.code` or `error.type`, transport), keyed
/// by how the lookup ended; names are made at export, not per lookup.
pub type DnsHistograms = Arc<Mutex<HashMap<(End, Transport), Arc<Histogram>>>>;

/// One series of `tapio.dns.encrypted.connections`: the protocol, the
/// process (executable name, not pid: a metric keeps low cardinality) and
/// its workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EncryptedSeries {
    pub doh: bool,
    /// None: the connect was not seen (Tapio started later).
    pub executable: Option<String>,
    pub workload: crate::enrich::cgroup::Workload,
}

/// Encrypted DNS connections by series, cumulative since start.
pub type EncryptedCounts = Arc<Mutex<HashMap<EncryptedSeries, u64>>>;

/// Most series kept; connections of further processes are counted under
/// their protocol alone.
pub const MAX_ENCRYPTED_SERIES: usize = 4096;

/// Spare question-name strings kept for reuse: enough for the lookups a
/// busy wake leaves pending. With 64, a resolver answering in batches (a
/// wake of a few hundred queries, then their answers) outgrew the pool, and
/// heaptrack counted one allocation for every third query under load
/// (165,121 in a 20-s run at 24k lookups/s). A name holds at most 255
/// bytes, so the pool is bounded by ~256 KiB.
const SPARE_NAMES: usize = 1024;

pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: crate::telemetry::ReaderStats,
    pub enricher: Enricher,
    pub clock: crate::clock::WallClock,
    pub ids: crate::otel::traces::IdGenerator,
    pub config: crate::config::DnsProbe,
    pub histograms: DnsHistograms,
    pending: pending::PendingQueries,
    sample_threshold: u32,
    /// Queries and responses are parsed into these (one each, so each
    /// keeps the shape, and the strings, of its kind of message).
    messages: [dnsmsg::Message; 2],
    spare_names: Vec<String>,
    /// The histograms this handler has recorded into, by rcode (16: timed
    /// out, 17: events lost) and transport: found in the shared map once,
    /// not per lookup, and counted into once per wake.
    local_histograms: [[Option<HistogramTally>; 2]; 18],
    /// The probe's kernel losses as last read ([`Handler::read_kernel_lost`]),
    /// and when (boot ns).
    kernel_lost: u64,
    kernel_lost_read_ns: u64,
    /// Kernel losses read before any record of this wake was written: a
    /// query's count at send time is at least this.
    lost_baseline: u64,
    encrypted: EncryptedCounts,
}

impl Handler {
    pub fn new(
        emitter: crate::export::Emitter,
        stats: Arc<ProbeStats>,
        config: crate::config::DnsProbe,
        histograms: DnsHistograms,
    ) -> Self {
        Self {
            emitter,
            stats: crate::telemetry::ReaderStats::new(stats),
            enricher: Enricher::default(),
            clock: crate::clock::WallClock::sample(),
            ids: crate::otel::traces::IdGenerator::default(),
            sample_threshold: super::sample_threshold(config.sample_rate),
            config,
            histograms,
            pending: pending::PendingQueries::new(MAX_PENDING),
            messages: Default::default(),
            spare_names: Vec::new(),
            local_histograms: Default::default(),
            kernel_lost: 0,
            kernel_lost_read_ns: 0,
            lost_baseline: 0,
            encrypted: EncryptedCounts::default(),
        }
    }

    /// Count encrypted DNS connections into `counts` (exported by
    /// [`encrypted_producer`]).
    pub fn counting_encrypted(mut self, counts: EncryptedCounts) -> Self {
        self.encrypted = counts;
        self
    }

    fn on_encrypted(&mut self, e: &Encrypted) {
        let mut series = EncryptedSeries {
            doh: e.doh,
            ..Default::default()
        };
        if e.hdr.pid != 0 {
            let comm = super::cstr(&e.hdr.comm, e.hdr.comm.len());
            series.executable = (!comm.is_empty()).then_some(comm);
            series.workload = self.enricher.workload(e.hdr.cgroup_id, e.hdr.pid);
        }
        let mut counts = crate::supervise::lock(&self.encrypted);
        if !counts.contains_key(&series) && counts.len() >= MAX_ENCRYPTED_SERIES {
            series = EncryptedSeries {
                doh: e.doh,
                ..Default::default()
            };
        }
        *counts.entry(series).or_default() += 1;
    }

    /// Read the kernel's loss counters when a query is about to time out
    /// (which they classify) or the last read is `LOST_READ_EVERY_NS` old;
    /// not every wake: that is a map lookup syscall per reason, 3 % of a
    /// loaded agent's CPU at ~1,000 wakes a second.
    ///
    /// The baseline a query sent in this wake starts from must be read
    /// before any of the wake's records was written. A read at an earlier
    /// wake is: the records of this wake were all written after the
    /// previous wake began (it drained the ring). This wake's own read is
    /// not, so a wake that reads keeps the earlier value as the baseline.
    fn refresh_kernel_lost(&mut self, now: u64) {
        let timeout = self.config.timeout.as_nanos() as u64;
        let expiring = self
            .pending
            .oldest_sent()
            .is_some_and(|sent| now.saturating_sub(sent) >= timeout);
        self.lost_baseline = self.kernel_lost;
        if expiring || now.saturating_sub(self.kernel_lost_read_ns) >= LOST_READ_EVERY_NS {
            self.kernel_lost = self.read_kernel_lost();
            self.kernel_lost_read_ns = now;
        }
    }

    /// The probe's kernel losses, every reason summed (a full ring buffer
    /// is the one that drops responses).
    fn read_kernel_lost(&self) -> u64 {
        self.stats.kernel_lost_total()
    }

    fn recycle(&mut self, p: Pending) {
        if self.spare_names.len() < SPARE_NAMES {
            self.spare_names.push(p.name);
        }
    }

    fn on_query(&mut self, p: &Packet<'_>, msg: &dnsmsg::Message) {
        let Some(q) = msg.questions.first() else {
            self.stats.lose("parse_error", 1);
            return;
        };
        let key = Key {
            tuple: p.tuple,
            transport: p.transport,
            id: msg.id,
        };
        // A retransmission of the same query keeps the first send time.
        let spare = &mut self.spare_names;
        let lost_at_send = self.lost_baseline;
        let inserted = self.pending.insert_new(key, || {
            let mut name = spare.pop().unwrap_or_default();
            name.clear();
            name.push_str(&q.name);
            Pending {
                hdr: p.hdr,
                sent_boot_ns: p.hdr.ts_ns,
                name,
                qtype: q.qtype,
                lost_at_send,
            }
        });
        let Some(evicted) = inserted else {
            return;
        };
        // Fill the workload cache now, while the querying task is alive.
        self.enricher.warm(p.hdr.cgroup_id, p.hdr.pid);
        if let Some((_, evicted)) = evicted {
            self.stats.lose("pending_evicted", 1);
            self.recycle(evicted);
        }
    }

    fn on_response(&mut self, p: &Packet<'_>, msg: &dnsmsg::Message) {
        let key = Key {
            tuple: p.tuple,
            transport: p.transport,
            id: msg.id,
        };
        let Some(query) = self.pending.remove(&key) else {
            // Tapio started after the query, or the query was not captured.
            self.stats.lose("unmatched", 1);
            return;
        };
        self.finish(Lookup {
            key,
            query,
            response: Some(msg),
            end_boot_ns: p.hdr.ts_ns,
            lost_since_sent: 0,
        });
    }

    fn finish(&mut self, l: Lookup<'_>) {
        let dur = l.end_boot_ns.saturating_sub(l.query.sent_boot_ns);
        let rcode = l.rcode();
        let end = l.end();
        let row = match end {
            // An rcode is 4 bits.
            End::Answered(r) => usize::from(r & 0xF),
            End::Timeout => 16,
            End::EventsLost => 17,
        };
        let col = usize::from(l.key.transport == Transport::Tcp);
        let h = self.local_histograms[row][col].get_or_insert_with(|| {
            let mut hs = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
            HistogramTally::new(hs.entry((end, l.key.transport)).or_default().clone())
        });
        h.record_ns(dur);
        let always = rcode != Some(0) || dur >= self.config.slow_threshold.as_nanos() as u64;
        let sampled =
            self.sample_threshold == u32::MAX || (self.ids.next_u32() <= self.sample_threshold);
        if always || sampled {
            let q = &l.query.hdr;
            let ctx = self.enricher.context(q.uid, q.cgroup_id, q.pid);
            let (clock, ids, max) = (&self.clock, &mut self.ids, self.config.max_answers);
            crate::encode_span!(self.emitter, |enc| otlp::query(
                enc, &l, &ctx, max, clock, ids
            ));
        }
        self.recycle(l.query);
    }

    /// End every query older than the timeout as a timed-out lookup.
    fn expire(&mut self, now: u64) {
        let timeout = self.config.timeout.as_nanos() as u64;
        // Queries enter in time order, so the first is the oldest.
        while let Some((key, query)) = self
            .pending
            .pop_oldest_if(|sent| now.saturating_sub(sent) >= timeout)
        {
            let end = query.sent_boot_ns + timeout;
            let lost_since_sent = self.kernel_lost.saturating_sub(query.lost_at_send);
            self.finish(Lookup {
                key,
                query,
                response: None,
                end_boot_ns: end,
                lost_since_sent,
            });
        }
    }

    fn on_message(&mut self, p: &Packet<'_>, m: &[u8], msg: &mut dnsmsg::Message) {
        match dnsmsg::parse_into(m, self.config.max_answers, msg) {
            Ok(()) if msg.response == p.response => {
                if p.response {
                    self.on_response(p, msg);
                } else {
                    self.on_query(p, msg);
                }
            }
            // A message flowing the wrong way is not a client lookup.
            Ok(()) => self.stats.lose("unexpected_direction", 1),
            Err(_) => self.stats.lose("parse_error", 1),
        }
    }
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
        // One time for both: a query the refresh did not see expiring is
        // not expired below with an older loss count.
        let now = self.clock.sampled_boot_ns();
        self.refresh_kernel_lost(now);
        self.expire(now);
    }

    fn end_wake(&mut self) {
        self.emitter.flush();
        self.stats.flush();
        for h in self.local_histograms.iter_mut().flatten().flatten() {
            h.flush();
        }
    }

    fn handle(&mut self, record: &[u8]) {
        if tapio_shared::record_kind(record).ok()
            == Some(tapio_shared::tapio_event_kind::TAPIO_EVENT_DNS_ENCRYPTED as u32)
        {
            if let Some(e) = self.stats.decoded(decode_encrypted(record)) {
                tracing::debug!(probe = NAME, pid = e.hdr.pid, doh = e.doh, tuple = ?e.tuple, "encrypted dns");
                self.on_encrypted(&e);
            }
            return;
        }
        let Some(p) = self.stats.decoded(decode(record)) else {
            return;
        };
        tracing::debug!(probe = NAME, pid = p.hdr.pid, response = p.response, transport = ?p.transport, tuple = ?p.tuple, len = p.payload.len(), "packet");
        if p.not_captured {
            self.stats.lose("not_captured", 1);
            return;
        }
        // Parsed into a message the handler keeps (taken out while the
        // lookup borrows it).
        let slot = usize::from(p.response);
        let mut msg = std::mem::take(&mut self.messages[slot]);
        match p.transport {
            Transport::Udp => self.on_message(&p, p.payload, &mut msg),
            Transport::Tcp => {
                for m in dnsmsg::split_tcp(p.payload) {
                    self.on_message(&p, m, &mut msg);
                }
            }
        }
        self.messages[slot] = msg;
        let lat = self.clock.sampled_boot_ns().saturating_sub(p.hdr.ts_ns);
        self.stats.record_latency_ns(lat);
    }
}

/// Exports the lookup histograms.
pub fn histogram_producer(h: DnsHistograms, start_unix_ns: u64) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics::histogram_seconds, names};
    Box::new(move |now| {
        let hs = crate::supervise::lock(&h);
        if hs.is_empty() {
            return Vec::new();
        }
        let points = hs
            .iter()
            .map(|((end, transport), hist)| {
                let mut attrs = vec![kv_str(names::attr::NETWORK_TRANSPORT, transport.name())];
                match end {
                    End::Timeout => attrs.push(kv_str(names::attr::ERROR_TYPE, ERROR_TIMEOUT)),
                    End::EventsLost => {
                        attrs.push(kv_str(names::attr::ERROR_TYPE, ERROR_EVENTS_LOST))
                    }
                    End::Answered(r) => attrs.push(kv_str(
                        names::attr::DNS_RESPONSE_CODE,
                        dnsmsg::rcode_name(*r),
                    )),
                }
                (attrs, hist.snapshot())
            })
            .collect();
        vec![histogram_seconds(
            &names::DNS_LOOKUP_DURATION,
            start_unix_ns,
            now,
            points,
        )]
    })
}

/// Exports `tapio.dns.encrypted.connections`.
pub fn encrypted_producer(
    counts: EncryptedCounts,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use super::encrypted_dns::{DOH, DOT};
    use crate::otel::{kv_str, metrics::counter, names, names::attr};
    Box::new(move |now| {
        let counts = crate::supervise::lock(&counts);
        if counts.is_empty() {
            return Vec::new();
        }
        let points = counts
            .iter()
            .map(|(s, n)| {
                let mut a = vec![kv_str(
                    attr::NETWORK_PROTOCOL_NAME,
                    if s.doh { DOH } else { DOT },
                )];
                if let Some(x) = &s.executable {
                    a.push(kv_str(attr::PROCESS_EXECUTABLE_NAME, x.clone()));
                }
                let w = &s.workload;
                if let Some(c) = &w.container_id {
                    a.push(kv_str(attr::CONTAINER_ID, c.clone()));
                }
                if let Some(p) = &w.pod_uid {
                    a.push(kv_str(attr::K8S_POD_UID, p.clone()));
                }
                if let Some(u) = &w.systemd_unit {
                    a.push(kv_str(attr::TAPIO_SYSTEMD_UNIT, u.clone()));
                }
                (a, *n)
            })
            .collect();
        vec![counter(
            &names::DNS_ENCRYPTED_CONNECTIONS,
            start_unix_ns,
            now,
            points,
        )]
    })
}

/// How long a lookup took.
pub fn duration(l: &Lookup<'_>) -> Duration {
    Duration::from_nanos(l.end_boot_ns.saturating_sub(l.query.sent_boot_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnsmsg::build;
    use crate::telemetry::Telemetry;
    use decode::fixtures::packet;

    fn handler() -> (Handler, crate::export::Exporter, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let t = Telemetry::new(0);
        let settings = crate::config::Config::default().resolve(&|_| None).unwrap();
        let ex = rt.block_on(async {
            crate::export::Exporter::start(&settings, t.clone(), crate::otel::resource::build(&[]))
                .unwrap()
        });
        let h = Handler::new(
            ex.emitter(),
            t.probe(NAME),
            crate::config::DnsProbe::default(),
            DnsHistograms::default(),
        );
        (h, ex, rt)
    }

    #[test]
    fn matches_response_to_query_and_counts_the_unmatched() {
        use crate::reader::RecordHandler;
        let (mut h, _ex, _rt) = handler();
        h.handle(&packet(
            false,
            &build::query(77, "alias.tapio.test", 1),
            1_000_000_000,
        ));
        assert_eq!(h.pending.len(), 1);
        h.handle(&packet(
            true,
            &build::cname_response(77, "alias.tapio.test", "www.tapio.test", [1, 2, 3, 4]),
            1_003_000_000,
        ));
        assert_eq!(h.pending.len(), 0);
        // A wake's counts reach the shared histograms at its end.
        h.end_wake();
        let hs = h.histograms.lock().unwrap();
        let hist = hs.get(&(End::Answered(0), Transport::Udp)).unwrap();
        assert_eq!(hist.snapshot().count(), 1);
        assert_eq!(hist.snapshot().sum_ns, 3_000_000);
        drop(hs);
        h.handle(&packet(
            true,
            &build::cname_response(78, "x.test", "y.test", [1, 2, 3, 4]),
            2,
        ));
        assert!(h.stats.lost().contains(&("unmatched", 1)));
        h.handle(&packet(false, b"\x01\x02garbage", 3));
        assert!(h.stats.lost().contains(&("parse_error", 1)));
    }

    /// A query whose response the kernel may have dropped (its loss
    /// counters rose after the query was sent) ends as `events_lost`, not
    /// as a timeout; one sent after the loss times out as before. The loss
    /// counts come through the reader the agent installs on the probe's
    /// stats (here fed from a number instead of the per-CPU map).
    #[test]
    fn expired_queries_are_events_lost_when_the_kernel_lost_events_meanwhile() {
        use crate::reader::RecordHandler;
        use crate::telemetry::Signal;
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let t = Telemetry::new(0);
        let stats = t.probe(NAME);
        let ringbuf_full = Arc::new(AtomicU64::new(5));
        let rf = ringbuf_full.clone();
        let reads = Arc::new(AtomicU64::new(0));
        let counted = reads.clone();
        stats.set_kernel_lost_reader(Box::new(move || {
            counted.fetch_add(1, Relaxed);
            Some(vec![rf.load(Relaxed), 0, 0])
        }));
        let resource = crate::otel::resource::build(&[]);
        let (emitter, batches) = crate::export::Emitter::standalone(&resource, 64, 64, t.clone());
        let config = crate::config::DnsProbe {
            timeout: Duration::from_millis(1),
            ..Default::default()
        };
        let mut h = Handler::new(emitter, stats, config, DnsHistograms::default());
        let query = |id, name| packet(false, &build::query(id, name, 1), 1);
        // Losses before the query do not count against it.
        h.on_wake();
        h.on_wake();
        h.handle(&query(1, "lost.tapio.test"));
        ringbuf_full.store(7, Relaxed);
        h.on_wake();
        // A query sent after the loss, with nothing lost since: a timeout.
        h.on_wake();
        h.handle(&query(2, "slow.tapio.test"));
        h.on_wake();
        // The common case of a full ring buffer: the query still waits in
        // it when its response is dropped, so the wake that reads it has
        // already read the higher count; the loss still counts against it.
        ringbuf_full.store(9, Relaxed);
        h.on_wake();
        h.handle(&query(3, "full.tapio.test"));
        h.on_wake();
        assert_eq!(h.pending.len(), 0);
        // Wakes with no query to expire read the counters once per
        // LOST_READ_EVERY_NS, not each time (100 wakes take far less).
        let before = reads.load(Relaxed);
        for _ in 0..100 {
            h.on_wake();
        }
        assert!(reads.load(Relaxed) - before < 50, "read on every wake");
        h.end_wake();
        let hs = h.histograms.lock().unwrap();
        let count = |e| hs.get(&(e, Transport::Udp)).map(|h| h.snapshot().count());
        assert_eq!(count(End::EventsLost), Some(2));
        assert_eq!(count(End::Timeout), Some(1));
        drop(hs);
        let (payload, n) = batches.take(Signal::Traces).unwrap();
        assert_eq!(n, 3);
        let crate::export::sink::Payload::Encoded(e) = payload else {
            panic!("not encoded")
        };
        let crate::export::sink::Payload::Traces(req) = e.decode().unwrap() else {
            panic!("not traces")
        };
        let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, k: &str| {
            s.attributes.iter().find(|a| a.key == k).and_then(|a| {
                match a.value.as_ref()?.value.as_ref()? {
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(v) => {
                        Some(v.clone())
                    }
                    _ => None,
                }
            })
        };
        let got: Vec<(String, String, bool)> = req.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| {
                let msg = s.status.clone().unwrap_or_default().message;
                (
                    attr(s, "dns.question.name").unwrap_or_default(),
                    attr(s, "error.type").unwrap_or_default(),
                    msg.contains("lost 2 kernel events"),
                )
            })
            .collect();
        let want = [
            ("lost.tapio.test", "events_lost", true),
            ("slow.tapio.test", "timeout", false),
            ("full.tapio.test", "events_lost", true),
        ];
        assert_eq!(got, want.map(|(n, e, m)| (n.to_string(), e.to_string(), m)),);
    }

    #[test]
    fn encrypted_connections_count_per_protocol_and_process() {
        use crate::reader::RecordHandler;
        let (h, _ex, _rt) = handler();
        let counts = EncryptedCounts::default();
        let mut h = h.counting_encrypted(counts.clone());
        h.handle(&decode::fixtures::encrypted(false, "kdig"));
        h.handle(&decode::fixtures::encrypted(false, "kdig"));
        h.handle(&decode::fixtures::encrypted(true, "firefox"));
        let c = counts.lock().unwrap();
        let n = |doh, x: &str| {
            c.iter()
                .find(|(s, _)| s.doh == doh && s.executable.as_deref() == Some(x))
                .map(|(_, n)| *n)
        };
        assert_eq!(n(false, "kdig"), Some(2));
        assert_eq!(n(true, "firefox"), Some(1));
        assert_eq!(c.len(), 2);
        // Not a lookup: nothing pending, nothing lost.
        assert_eq!(h.pending.len(), 0);
        assert!(h.stats.lost().iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn unanswered_queries_time_out() {
        let (mut h, _ex, _rt) = handler();
        h.config.timeout = Duration::from_millis(1);
        use crate::reader::RecordHandler;
        h.handle(&packet(false, &build::query(9, "slow.test", 28), 1));
        h.on_wake();
        assert_eq!(h.pending.len(), 0);
        let hs = h.histograms.lock().unwrap();
        assert!(hs.contains_key(&(End::Timeout, Transport::Udp)));
    }
}
