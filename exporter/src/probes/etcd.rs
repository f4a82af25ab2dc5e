//! The etcd probe: `ebpf/etcd.bpf.c` ↔ this module. Every WAL sync of a
//! watched etcd process is timed into `tapio.etcd.wal_fsync.duration` in
//! the kernel; one slower than `slow_threshold` also arrives as a record
//! and becomes an `etcd.wal_fsync` span. Requests on etcd's client ports
//! (gRPC over h2c), followed frame by frame through the process's
//! read/write calls, are timed into `tapio.etcd.request.duration`.

use super::{cstr, Attach, DecodeError, LoadError, Loaded, ProbeSpec, Variant};
use crate::config::EtcdProbe;
use tapio_shared::{
    read_record, record_kind, tapio_etcd_comm, tapio_etcd_fsync, tapio_event_kind as kind,
    TAPIO_ETCD_MAX_COMMS, TAPIO_ETCD_MAX_PORTS,
};

pub const NAME: &str = "etcd";

pub const PROG_FDATASYNC_ENTER: &str = "tapio_etcd_fdatasync_enter";
pub const PROG_FSYNC_ENTER: &str = "tapio_etcd_fsync_enter";
/// One program for both exits.
pub const PROG_SYNC_EXIT: &str = "tapio_etcd_sync_exit";

pub const PROG_ACCEPT_EXIT: &str = "tapio_etcd_accept_exit";
pub const PROG_CLOSE: &str = "tapio_etcd_close";
/// One program for both read and write entries.
pub const PROG_IO_ENTER: &str = "tapio_etcd_io_enter";
pub const PROG_READ_EXIT: &str = "tapio_etcd_read_exit";
pub const PROG_WRITE_EXIT: &str = "tapio_etcd_write_exit";

/// The process names (comm) watched.
pub const MAP_COMMS: &str = "tapio_etcd_comms";
/// Per-CPU histogram of every WAL sync.
pub const MAP_WAL_HIST: &str = "tapio_etcd_wal_hist";
/// The client ports followed.
pub const MAP_PORTS: &str = "tapio_etcd_ports";
/// Per-CPU histogram of every request.
pub const MAP_REQ_HIST: &str = "tapio_etcd_req_hist";

/// The WAL sync programs, in both variants.
const WAL_PROGRAMS: [(&str, Attach); 4] = [
    (
        PROG_FDATASYNC_ENTER,
        Attach::TracePoint("syscalls", "sys_enter_fdatasync"),
    ),
    (
        PROG_FSYNC_ENTER,
        Attach::TracePoint("syscalls", "sys_enter_fsync"),
    ),
    (
        PROG_SYNC_EXIT,
        Attach::TracePoint("syscalls", "sys_exit_fdatasync"),
    ),
    (
        PROG_SYNC_EXIT,
        Attach::TracePoint("syscalls", "sys_exit_fsync"),
    ),
];

/// Variant labels.
pub const VARIANT_REQUESTS: &str = "tracepoint+requests";
pub const VARIANT_WAL: &str = "tracepoint";

pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::ETCD,
    // Request timing hooks every read/write/close on the host; without
    // client ports (or where its programs are refused) only the WAL
    // programs run.
    variants: &[
        Variant {
            label: VARIANT_REQUESTS,
            programs: &[
                WAL_PROGRAMS[0],
                WAL_PROGRAMS[1],
                WAL_PROGRAMS[2],
                WAL_PROGRAMS[3],
                (
                    PROG_ACCEPT_EXIT,
                    Attach::TracePoint("syscalls", "sys_exit_accept4"),
                ),
                (
                    PROG_ACCEPT_EXIT,
                    Attach::TracePoint("syscalls", "sys_exit_accept"),
                ),
                (
                    PROG_CLOSE,
                    Attach::TracePoint("syscalls", "sys_enter_close"),
                ),
                (
                    PROG_IO_ENTER,
                    Attach::TracePoint("syscalls", "sys_enter_read"),
                ),
                (
                    PROG_IO_ENTER,
                    Attach::TracePoint("syscalls", "sys_enter_write"),
                ),
                (
                    PROG_READ_EXIT,
                    Attach::TracePoint("syscalls", "sys_exit_read"),
                ),
                (
                    PROG_WRITE_EXIT,
                    Attach::TracePoint("syscalls", "sys_exit_write"),
                ),
            ],
        },
        WAL_ONLY,
    ],
};

const WAL_ONLY: Variant = Variant {
    label: VARIANT_WAL,
    programs: &WAL_PROGRAMS,
};

/// The probe without request timing (`client_ports: []`).
pub const SPEC_WAL_ONLY: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::ETCD,
    variants: &[WAL_ONLY],
};

/// What to load for this config.
pub fn spec(cfg: &EtcdProbe) -> &'static ProbeSpec {
    if cfg.client_ports.is_empty() {
        &SPEC_WAL_ONLY
    } else {
        &SPEC
    }
}

/// The kernel compares a task's comm: the executable's file name cut to
/// 15 bytes. A configured path counts by its file name.
pub fn comm_of(exe: &str) -> String {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    name.bytes().take(15).map(char::from).collect()
}

/// Write the watched names and client ports into the kernel's tables.
pub fn configure(loaded: &mut Loaded, cfg: &EtcdProbe) -> Result<(), LoadError> {
    let mut map: aya::maps::Array<aya::maps::MapData, tapio_etcd_comm> =
        super::take_map(&mut loaded.ebpf, NAME, MAP_COMMS)?;
    for (i, exe) in cfg
        .executables
        .iter()
        .take(TAPIO_ETCD_MAX_COMMS as usize)
        .enumerate()
    {
        let mut v = tapio_etcd_comm::default();
        for (d, b) in v.comm.iter_mut().zip(comm_of(exe).bytes()) {
            *d = b as core::ffi::c_char;
        }
        map.set(i as u32, v, 0).map_err(|source| LoadError::Map {
            probe: NAME,
            map: MAP_COMMS,
            source,
        })?;
    }
    let mut ports: aya::maps::Array<aya::maps::MapData, u32> =
        super::take_map(&mut loaded.ebpf, NAME, MAP_PORTS)?;
    for (i, port) in cfg
        .client_ports
        .iter()
        .take(TAPIO_ETCD_MAX_PORTS as usize)
        .enumerate()
    {
        ports
            .set(i as u32, u32::from(*port), 0)
            .map_err(|source| LoadError::Map {
                probe: NAME,
                map: MAP_PORTS,
                source,
            })?;
    }
    Ok(())
}

/// A cumulative histogram (`tapio.etcd.wal_fsync.duration` or
/// `tapio.etcd.request.duration`) from its per-CPU kernel map.
pub fn hist_producer(
    def: &'static crate::otel::names::MetricDef,
    hist: aya::maps::PerCpuArray<aya::maps::MapData, tapio_shared::tapio_hist>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::metrics::log2_histogram_seconds;
    let hist = std::sync::Mutex::new(hist);
    Box::new(move |now| {
        let hist = crate::supervise::lock(&hist);
        let Ok(per_cpu) = hist.get(&0, 0) else {
            return Vec::new();
        };
        let (buckets, sum) = crate::otel::metrics::sum_per_cpu_hist(&per_cpu);
        if buckets.iter().all(|n| *n == 0) {
            return Vec::new();
        }
        vec![log2_histogram_seconds(
            def,
            start_unix_ns,
            now,
            vec![(Vec::new(), buckets, sum)],
        )]
    })
}

/// A WAL sync slower than the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFsync {
    pub common: super::process::Common,
    pub start_boot_ns: u64,
    pub duration_ns: u64,
    pub ret: i64,
    pub fd: i32,
    /// `fdatasync` or `fsync`.
    pub syscall: &'static str,
    pub file: String,
}

pub fn decode(bytes: &[u8]) -> Result<WalFsync, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_ETCD_WAL_FSYNC as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_etcd_fsync = read_record(bytes)?;
    Ok(WalFsync {
        common: (&r.hdr).into(),
        start_boot_ns: r.start_ns,
        duration_ns: r.duration_ns,
        ret: r.ret,
        fd: r.fd,
        syscall: if r.syscall == 1 { "fsync" } else { "fdatasync" },
        file: cstr(&r.file, r.file.len()),
    })
}

/// `etcd.wal_fsync`: a WAL sync over the slow threshold, with `error.type`
/// (the errno's text) and an error status when the sync failed. Written
/// straight to the wire (see `otel::wire`).
pub fn write_span(
    enc: &mut impl crate::otel::wire::Encode,
    f: &WalFsync,
    clock: &crate::clock::WallClock,
    ids: &mut crate::otel::traces::IdGenerator,
) {
    use crate::otel::names::{attr, span};
    use crate::otel::wire::{RecordWriter, StatusCode, SPAN_KIND_INTERNAL};
    let start = clock.to_unix_ns(f.start_boot_ns);
    let (trace_id, span_id) = (ids.trace_id_bytes(), ids.span_id_bytes());
    let mut w = enc.span(
        &trace_id,
        &span_id,
        span::ETCD_WAL_FSYNC,
        SPAN_KIND_INTERNAL,
        start,
        // Kernel bytes: a duration near u64::MAX must not wrap (fuzzed).
        start.saturating_add(f.duration_ns),
    );
    w.int(attr::PROCESS_PID, i64::from(f.common.pid));
    w.int(attr::THREAD_ID, i64::from(f.common.tid));
    w.str(attr::PROCESS_EXECUTABLE_NAME, &f.common.comm);
    w.str(attr::FILE_NAME, &f.file);
    w.str(attr::TAPIO_ETCD_SYSCALL, f.syscall);
    w.int(attr::TAPIO_ETCD_FD, i64::from(f.fd));
    if f.ret < 0 {
        w.display(
            attr::ERROR_TYPE,
            std::io::Error::from_raw_os_error(errno(f.ret)),
        );
        w.finish_span(StatusCode::Error, format_args!(""));
    } else {
        w.finish_span(StatusCode::Unset, format_args!(""));
    }
}

/// The errno of a failed sync's return value (`-errno`); a value no errno
/// has (kernel bytes are untrusted) reads as 0 rather than overflowing.
fn errno(ret: i64) -> i32 {
    i32::try_from(ret.unsigned_abs()).unwrap_or(0)
}

/// Turns slow-sync records into spans.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub clock: crate::clock::WallClock,
    pub ids: crate::otel::traces::IdGenerator,
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        let Some(f) = self.stats.decoded(decode(record)) else {
            return;
        };
        let (clock, ids) = (&self.clock, &mut self.ids);
        crate::encode_span!(self.emitter, |enc| write_span(enc, &f, clock, ids));
        let lat = crate::clock::boot_ns().saturating_sub(f.common.ts_boot_ns);
        self.stats.latency.record_ns(lat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prost mapping the direct writer replaced: the oracle of
    /// `the_direct_span_matches_the_old_mapping`.
    fn span(
        f: &WalFsync,
        clock: &crate::clock::WallClock,
        ids: &mut crate::otel::traces::IdGenerator,
    ) -> opentelemetry_proto::tonic::trace::v1::Span {
        use crate::otel::{kv_int, kv_str, names};
        use opentelemetry_proto::tonic::trace::v1::{
            span::SpanKind, status::StatusCode, Span, Status,
        };
        let start = clock.to_unix_ns(f.start_boot_ns);
        let mut attributes = vec![
            kv_int(names::attr::PROCESS_PID, i64::from(f.common.pid)),
            kv_int(names::attr::THREAD_ID, i64::from(f.common.tid)),
            kv_str(names::attr::PROCESS_EXECUTABLE_NAME, f.common.comm.clone()),
            kv_str(names::attr::FILE_NAME, f.file.clone()),
            kv_str(names::attr::TAPIO_ETCD_SYSCALL, f.syscall),
            kv_int(names::attr::TAPIO_ETCD_FD, i64::from(f.fd)),
        ];
        let status = if f.ret < 0 {
            attributes.push(kv_str(
                names::attr::ERROR_TYPE,
                std::io::Error::from_raw_os_error(errno(f.ret)).to_string(),
            ));
            Some(Status {
                code: StatusCode::Error as i32,
                message: String::new(),
            })
        } else {
            None
        };
        Span {
            trace_id: ids.trace_id(),
            span_id: ids.span_id(),
            name: names::span::ETCD_WAL_FSYNC.into(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start.saturating_add(f.duration_ns),
            attributes,
            status,
            ..Default::default()
        }
    }

    fn record() -> tapio_etcd_fsync {
        let mut r = tapio_etcd_fsync {
            start_ns: 5_000_000_000,
            duration_ns: 250_000_000,
            ret: 0,
            fd: 11,
            syscall: 0,
            ..Default::default()
        };
        r.hdr.kind = kind::TAPIO_EVENT_ETCD_WAL_FSYNC as u32;
        r.hdr.ts_ns = 5_250_000_000;
        r.hdr.pid = 700;
        r.hdr.tid = 703;
        crate::probes::process::fixtures::fill(&mut r.hdr.comm, b"etcd\0");
        crate::probes::process::fixtures::fill(
            &mut r.file,
            b"0000000000000000-0000000000000000.wal\0",
        );
        r
    }

    #[test]
    fn a_slow_sync_becomes_a_span() {
        let b = tapio_shared::as_bytes(&record()).to_vec();
        let f = decode(&b).unwrap();
        assert_eq!((f.common.pid, f.fd, f.syscall), (700, 11, "fdatasync"));
        assert_eq!(f.file, "0000000000000000-0000000000000000.wal");
        let clock = crate::clock::WallClock::with_offset(1_000);
        let s = span(&f, &clock, &mut crate::otel::traces::IdGenerator::seeded(1));
        assert_eq!(s.name, "etcd.wal_fsync");
        assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 250_000_000);
        assert_eq!(s.start_time_unix_nano, 5_000_001_000);
        assert!(s.status.is_none());
        let mut r = record();
        r.ret = -5;
        let f = decode(tapio_shared::as_bytes(&r)).unwrap();
        let s = span(&f, &clock, &mut crate::otel::traces::IdGenerator::seeded(1));
        assert!(s.status.is_some());
        assert!(s.attributes.iter().any(|a| a.key == "error.type"));
        assert!(matches!(decode(&b[..40]), Err(DecodeError::Short(_))));
    }

    /// `f` as the direct writer encodes it (ids seeded as the oracle's).
    fn written(f: &WalFsync, clock: &crate::clock::WallClock) -> crate::otel::wire::Encoder {
        let mut enc = crate::otel::wire::Encoder::default();
        write_span(
            &mut enc,
            f,
            clock,
            &mut crate::otel::traces::IdGenerator::seeded(1),
        );
        enc
    }

    /// Found by the CI fuzz pass (ring_records): a duration near u64::MAX
    /// wrapped the span's end time, and a return value of i64::MIN has no
    /// negation; both panicked with overflow checks on.
    #[test]
    fn extreme_kernel_values_saturate_instead_of_overflowing() {
        let clock = crate::clock::WallClock::with_offset(1_000);
        for (duration_ns, ret) in [(u64::MAX, 0), (u64::MAX - 1, i64::MIN), (1, i64::MIN)] {
            let mut r = record();
            r.duration_ns = duration_ns;
            r.ret = ret;
            let f = decode(tapio_shared::as_bytes(&r)).unwrap();
            let enc = written(&f, &clock);
            let mut body = &enc.record()[1..];
            prost::encoding::decode_varint(&mut body).unwrap();
            let s = <opentelemetry_proto::tonic::trace::v1::Span as prost::Message>::decode(body)
                .unwrap();
            assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        }
        assert_eq!(errno(-5), 5);
        assert_eq!(errno(i64::MIN), 0);
    }

    #[test]
    fn the_direct_span_matches_the_old_mapping() {
        use prost::Message;
        let clock = crate::clock::WallClock::with_offset(1_000);
        for ret in [0, -5, -28] {
            let mut r = record();
            r.ret = ret;
            let f = decode(tapio_shared::as_bytes(&r)).unwrap();
            let mut want = span(&f, &clock, &mut crate::otel::traces::IdGenerator::seeded(1));
            // The writer always writes a status; an empty one is Unset, as
            // the old mapping's absent one was.
            want.status.get_or_insert_with(Default::default);
            let enc = written(&f, &clock);
            let mut old = Vec::new();
            prost::encoding::message::encode(crate::otel::wire::RECORD_FIELD, &want, &mut old);
            assert_eq!(enc.record(), &old[..], "ret {ret}");
            let mut body = &enc.record()[1..];
            prost::encoding::decode_varint(&mut body).unwrap();
            assert_eq!(
                opentelemetry_proto::tonic::trace::v1::Span::decode(body).unwrap(),
                want
            );
        }
    }

    #[test]
    fn no_client_ports_loads_no_read_write_hooks() {
        let mut cfg = EtcdProbe {
            client_ports: vec![2379],
            ..EtcdProbe::default()
        };
        assert_eq!(spec(&cfg).variants[0].label, VARIANT_REQUESTS);
        // Refused request programs fall back to the WAL ones.
        assert_eq!(spec(&cfg).variants.last().unwrap().label, VARIANT_WAL);
        cfg.client_ports.clear();
        // Off is the default: every read/write on the host would pay.
        assert_eq!(cfg, EtcdProbe::default());
        let s = spec(&cfg);
        assert_eq!(s.variants.len(), 1);
        assert!(s.variants[0].programs.iter().all(|(p, _)| [
            PROG_FDATASYNC_ENTER,
            PROG_FSYNC_ENTER,
            PROG_SYNC_EXIT
        ]
        .contains(p)));
    }

    #[test]
    fn comm_is_the_file_name_cut_to_15_bytes() {
        assert_eq!(comm_of("etcd"), "etcd");
        assert_eq!(comm_of("/usr/bin/etcd"), "etcd");
        assert_eq!(comm_of("/opt/x/etcd-v3.5.12-linux"), "etcd-v3.5.12-li");
    }
}
