//! The kernel probe: `ebpf/kernel.bpf.c` ↔ this module. Decodes OOM-kill
//! and io_uring-creation records into typed events, which `otlp` writes as
//! OTLP log records; [`kills_producer`] and [`io_uring_producer`] export
//! the in-kernel counters and histograms.

#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

use super::{cstr, Attach, ProbeSpec, Variant};
use crate::config::{KernelAttach, KernelProbe};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_io_uring_create,
    tapio_io_uring_result, tapio_oom_flags as flags, tapio_oom_kill, tapio_oom_source,
};

pub const NAME: &str = "kernel";

/// Program names in `kernel.bpf.c`.
pub const PROG_OOM_BTF: &str = "tapio_oom_victim_btf";
pub const PROG_OOM_TP: &str = "tapio_oom_victim_tp";

pub const PROG_IO_URING_CREATE: &str = "tapio_io_uring_create_tp";
pub const PROG_IO_URING_SUBMIT: &str = "tapio_io_uring_submit_tp";
/// The submission event's name before Linux 6.2.
pub const PROG_IO_URING_SUBMIT_SQE: &str = "tapio_io_uring_submit_sqe_tp";
pub const PROG_IO_URING_COMPLETE: &str = "tapio_io_uring_complete_tp";

/// Per-CPU count of every victim the kernel marked (`tapio.oom.kills`).
pub const MAP_OOM_KILLS: &str = "tapio_oom_kills";
/// Per-CPU completions by opcode and result (`tapio.io_uring.operations`).
pub const MAP_IO_URING_OPS: &str = "tapio_io_uring_ops";
/// Per-CPU latency histogram by opcode (`tapio.io_uring.duration`).
pub const MAP_IO_URING_HIST: &str = "tapio_io_uring_hist";

/// io_uring's tracepoints, the same in both variants. Optional: a kernel
/// has one of the two submission events, one built without io_uring none,
/// and a refused io_uring program does not stop the OOM ones.
const IO_URING: [(&str, Attach); 4] = [
    (
        PROG_IO_URING_CREATE,
        Attach::OptionalTracePoint("io_uring", "io_uring_create"),
    ),
    (
        PROG_IO_URING_SUBMIT,
        Attach::OptionalTracePoint("io_uring", "io_uring_submit_req"),
    ),
    (
        PROG_IO_URING_SUBMIT_SQE,
        Attach::OptionalTracePoint("io_uring", "io_uring_submit_sqe"),
    ),
    (
        PROG_IO_URING_COMPLETE,
        Attach::OptionalTracePoint("io_uring", "io_uring_complete"),
    ),
];

const VARIANT_BTF: Variant = Variant {
    label: "tp_btf",
    programs: &[
        (PROG_OOM_BTF, Attach::BtfTracePoint("mark_victim")),
        IO_URING[0],
        IO_URING[1],
        IO_URING[2],
        IO_URING[3],
        super::memory::PROGRAMS[0],
        super::memory::PROGRAMS[1],
        super::memory::PROGRAMS[2],
    ],
};
const VARIANT_TP: Variant = Variant {
    label: "tracepoint",
    programs: &[
        (PROG_OOM_TP, Attach::TracePoint("oom", "mark_victim")),
        IO_URING[0],
        IO_URING[1],
        IO_URING[2],
        IO_URING[3],
        super::memory::PROGRAMS[0],
        super::memory::PROGRAMS[1],
        super::memory::PROGRAMS[2],
    ],
};

/// Whether config asks for program `prog` of this probe.
pub fn wanted(cfg: &KernelProbe, prog: &str) -> bool {
    if let Some(w) = super::memory::wanted(cfg, prog) {
        return w;
    }
    if prog == PROG_IO_URING_SUBMIT || prog == PROG_IO_URING_SUBMIT_SQE {
        // Submissions matter only to timing: none at rate 0, one hook
        // fewer per operation.
        cfg.io_uring && cfg.io_uring_sample_rate > 0.0
    } else if prog.starts_with("tapio_io_uring_") {
        cfg.io_uring
    } else {
        cfg.oom_kill
    }
}

/// Best first: tp_btf reads the victim's task (it loads only where
/// mark_victim passes one: Linux 6.8+ and backports), the classic
/// tracepoint what its record holds on this kernel.
pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::KERNEL,
    variants: &[VARIANT_BTF, VARIANT_TP],
};

/// The spec to run with `cfg`: every variant, or only the one `attach`
/// names.
pub fn spec(cfg: &KernelProbe) -> ProbeSpec {
    let variants: &'static [Variant] = match cfg.attach {
        KernelAttach::Auto => SPEC.variants,
        KernelAttach::TpBtf => &SPEC.variants[..1],
        KernelAttach::Tracepoint => &SPEC.variants[1..],
    };
    ProbeSpec { variants, ..SPEC }
}

/// Which hook wrote a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    TpBtf,
    Tracepoint,
}

/// What the victim held, in bytes: the kernel's own approximate counters
/// (per-CPU deltas not folded in), the figures of its "Killed process" line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total_vm: u64,
    pub anon_rss: u64,
    pub file_rss: u64,
    pub shmem_rss: u64,
    pub pgtables: u64,
}

/// One OOM kill. `None`/`false` fields are ones the hook could not see on
/// this kernel (the classic tracepoint of older kernels has only the pid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKill {
    /// CLOCK_BOOTTIME ns.
    pub ts_boot_ns: u64,
    pub source: Source,
    /// The victim's tgid; with `pid_is_tid`, the id of the thread marked
    /// (the same for a single-threaded process).
    pub pid: u32,
    pub pid_is_tid: bool,
    pub tid: u32,
    /// Victim's parent; 0 when unknown.
    pub ppid: u32,
    pub uid: Option<u32>,
    pub comm: Option<String>,
    pub memory: Option<Memory>,
    pub swap_bytes: Option<u64>,
    pub oom_score_adj: Option<i16>,
    /// The task whose allocation ran out of memory.
    pub trigger_pid: u32,
    pub trigger_tid: u32,
    pub trigger_comm: String,
    /// Whether the cgroup fields are the victim's (else the trigger's).
    pub victim_cgroup: bool,
    pub cgroup_id: u64,
    pub cgroup_leaf: String,
    pub cgroup_parent: String,
}

pub use super::DecodeError;

/// Decode one ring-buffer record of the kernel probe.
pub fn decode(bytes: &[u8]) -> Result<OomKill, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_OOM_KILL as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_oom_kill = read_record(bytes)?;
    let has = |f: u32| r.flags & f != 0;
    let source = if r.source == tapio_oom_source::TAPIO_OOM_SRC_TP_BTF {
        Source::TpBtf
    } else {
        Source::Tracepoint
    };
    Ok(OomKill {
        ts_boot_ns: r.hdr.ts_ns,
        source,
        pid: r.hdr.pid,
        pid_is_tid: !has(flags::TAPIO_OOM_HAS_TGID),
        tid: r.hdr.tid,
        ppid: r.hdr.ppid,
        uid: has(flags::TAPIO_OOM_HAS_UID).then_some(r.hdr.uid),
        comm: has(flags::TAPIO_OOM_HAS_COMM).then(|| cstr(&r.hdr.comm, r.hdr.comm.len())),
        memory: has(flags::TAPIO_OOM_HAS_MEMORY).then_some(Memory {
            total_vm: r.total_vm_bytes,
            anon_rss: r.anon_rss_bytes,
            file_rss: r.file_rss_bytes,
            shmem_rss: r.shmem_rss_bytes,
            pgtables: r.pgtables_bytes,
        }),
        swap_bytes: has(flags::TAPIO_OOM_HAS_SWAP).then_some(r.swap_bytes),
        oom_score_adj: has(flags::TAPIO_OOM_HAS_SCORE_ADJ).then_some(r.oom_score_adj),
        trigger_pid: r.trigger_pid,
        trigger_tid: r.trigger_tid,
        trigger_comm: cstr(&r.trigger_comm, r.trigger_comm.len()),
        victim_cgroup: has(flags::TAPIO_OOM_VICTIM_CGROUP),
        cgroup_id: r.hdr.cgroup_id,
        cgroup_leaf: cstr(&r.cgroup_leaf, r.cgroup_leaf.len()),
        cgroup_parent: cstr(&r.cgroup_parent, r.cgroup_parent.len()),
    })
}

/// `tapio.oom.kills`, cumulative since start, from the kernel's per-CPU
/// count (lost records included).
pub fn kills_producer(
    map: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{metrics::counter, names};
    let map = std::sync::Mutex::new(map);
    Box::new(move |now| {
        let map = crate::supervise::lock(&map);
        let Ok(per_cpu) = map.get(&0, 0) else {
            return Vec::new();
        };
        let total: u64 = per_cpu.iter().sum();
        vec![counter(
            &names::OOM_KILLS,
            start_unix_ns,
            now,
            vec![(Vec::new(), total)],
        )]
    })
}

/// A process set up an io_uring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoUringCreate {
    pub common: super::process::Common,
    pub fd: i32,
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// IORING_SETUP_* bits.
    pub flags: u32,
}

/// Decode an io_uring-creation record.
pub fn decode_io_uring_create(bytes: &[u8]) -> Result<IoUringCreate, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_IO_URING_CREATE as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_io_uring_create = read_record(bytes)?;
    Ok(IoUringCreate {
        common: (&r.hdr).into(),
        fd: r.fd,
        sq_entries: r.sq_entries,
        cq_entries: r.cq_entries,
        flags: r.flags,
    })
}

/// io_uring opcode names (`enum io_uring_op` of the UAPI, lowercase, in
/// opcode order, through Linux 6.18). Later opcodes are `op_<n>`; the last
/// kernel slot holds every opcode past it.
const IO_URING_OPS: [&str; 63] = [
    "nop",
    "readv",
    "writev",
    "fsync",
    "read_fixed",
    "write_fixed",
    "poll_add",
    "poll_remove",
    "sync_file_range",
    "sendmsg",
    "recvmsg",
    "timeout",
    "timeout_remove",
    "accept",
    "async_cancel",
    "link_timeout",
    "connect",
    "fallocate",
    "openat",
    "close",
    "files_update",
    "statx",
    "read",
    "write",
    "fadvise",
    "madvise",
    "send",
    "recv",
    "openat2",
    "epoll_ctl",
    "splice",
    "provide_buffers",
    "remove_buffers",
    "tee",
    "shutdown",
    "renameat",
    "unlinkat",
    "mkdirat",
    "symlinkat",
    "linkat",
    "msg_ring",
    "fsetxattr",
    "setxattr",
    "fgetxattr",
    "getxattr",
    "socket",
    "uring_cmd",
    "send_zc",
    "sendmsg_zc",
    "read_multishot",
    "waitid",
    "futex_wait",
    "futex_wake",
    "futex_waitv",
    "fixed_fd_install",
    "ftruncate",
    "bind",
    "listen",
    "recv_zc",
    "epoll_wait",
    "readv_fixed",
    "writev_fixed",
    "pipe",
];

/// The name of io_uring opcode `op`.
pub fn io_uring_op_name(op: u32) -> String {
    let last = tapio_shared::TAPIO_IO_URING_OPS - 1;
    match IO_URING_OPS.get(op as usize) {
        Some(n) => (*n).to_string(),
        None if op >= last => format!("op_{last}_or_later"),
        None => format!("op_{op}"),
    }
}

/// IORING_SETUP_* flag names (UAPI bit order), for the creation log.
const IO_URING_SETUP_FLAGS: [&str; 18] = [
    "iopoll",
    "sqpoll",
    "sq_aff",
    "cqsize",
    "clamp",
    "attach_wq",
    "r_disabled",
    "submit_all",
    "coop_taskrun",
    "taskrun_flag",
    "sqe128",
    "cqe32",
    "single_issuer",
    "defer_taskrun",
    "no_mmap",
    "registered_fd_only",
    "no_sqarray",
    "hybrid_iopoll",
];

/// The names of the set IORING_SETUP_* bits (`bit_<n>` for unknown ones).
pub fn io_uring_setup_flags(flags: u32) -> Vec<String> {
    (0..32)
        .filter(|b| flags & (1 << b) != 0)
        .map(|b| match IO_URING_SETUP_FLAGS.get(b as usize) {
            Some(n) => (*n).to_string(),
            None => format!("bit_{b}"),
        })
        .collect()
}

/// `tapio.io_uring.operations` and `tapio.io_uring.duration`, cumulative
/// since start, from the kernel's per-CPU arrays.
pub fn io_uring_producer(
    ops: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    hist: aya::maps::PerCpuArray<aya::maps::MapData, tapio_shared::tapio_hist>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{
        kv_str,
        metrics::{counter, log2_histogram_seconds},
        names,
    };
    let maps = std::sync::Mutex::new((ops, hist));
    Box::new(move |now| {
        let maps = crate::supervise::lock(&maps);
        let (ops, hist) = &*maps;
        let results = tapio_io_uring_result::TAPIO_IO_URING_RESULTS;
        let mut counts = Vec::new();
        let mut lat = Vec::new();
        for op in 0..tapio_shared::TAPIO_IO_URING_OPS {
            let opname = io_uring_op_name(op);
            for (r, result) in [
                (tapio_io_uring_result::TAPIO_IO_URING_OK, "ok"),
                (tapio_io_uring_result::TAPIO_IO_URING_ERROR, "error"),
            ] {
                let Ok(per_cpu) = ops.get(&(op * results + r), 0) else {
                    continue;
                };
                let n: u64 = per_cpu.iter().sum();
                if n > 0 {
                    let attrs = vec![
                        kv_str(names::attr::TAPIO_IO_URING_OPCODE, opname.clone()),
                        kv_str(names::attr::TAPIO_IO_URING_RESULT, result),
                    ];
                    counts.push((attrs, n));
                }
            }
            let Ok(per_cpu) = hist.get(&op, 0) else {
                continue;
            };
            let (buckets, sum) = crate::otel::metrics::sum_per_cpu_hist(&per_cpu);
            if buckets.iter().any(|n| *n > 0) {
                let attrs = vec![kv_str(names::attr::TAPIO_IO_URING_OPCODE, opname)];
                lat.push((attrs, buckets, sum));
            }
        }
        let mut out = Vec::new();
        if !counts.is_empty() {
            out.push(counter(
                &names::IO_URING_OPERATIONS,
                start_unix_ns,
                now,
                counts,
            ));
        }
        if !lat.is_empty() {
            out.push(log2_histogram_seconds(
                &names::IO_URING_DURATION,
                start_unix_ns,
                now,
                lat,
            ));
        }
        out
    })
}

/// Turns OOM-kill records into log records.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
}

impl Handler {
    fn oom_kill(&mut self, k: &OomKill, observed: u64) {
        // The names came with the record: the victim's cgroup may be gone
        // by the time anyone could ask /proc.
        let workload = self
            .enricher
            .learn_cgroup(k.cgroup_id, &k.cgroup_leaf, &k.cgroup_parent);
        let ctx = crate::enrich::Context {
            owner: k.uid.and_then(|u| self.enricher.users.name(u)),
            workload: Some(&workload),
            generation: 0,
        };
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::oom_kill(
            enc, k, &ctx, clock, observed
        ));
    }

    fn io_uring_create(&mut self, c: &IoUringCreate, observed: u64) {
        let h = &c.common;
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::io_uring_create(
            enc, c, &ctx, clock, observed
        ));
    }
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        let observed = crate::clock::unix_ns();
        let is_create = record_kind(record).ok() == Some(kind::TAPIO_EVENT_IO_URING_CREATE as u32);
        let ts = if is_create {
            let Some(c) = self.stats.decoded(decode_io_uring_create(record)) else {
                return;
            };
            self.io_uring_create(&c, observed);
            c.common.ts_boot_ns
        } else {
            let Some(k) = self.stats.decoded(decode(record)) else {
                return;
            };
            self.oom_kill(&k, observed);
            k.ts_boot_ns
        };
        let lat = crate::clock::boot_ns().saturating_sub(ts);
        self.stats.latency.record_ns(lat);
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Records as the kernel writes them, built through the generated types.
    use super::*;
    use crate::probes::process::fixtures::fill;
    use tapio_shared::as_bytes;

    pub const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A tp_btf record: a victim in a Kubernetes container, killed while
    /// `alloc` (pid 4321) allocated.
    pub fn tp_btf_record() -> tapio_oom_kill {
        let mut r = tapio_oom_kill {
            total_vm_bytes: 300 << 20,
            anon_rss_bytes: 60 << 20,
            file_rss_bytes: 3 << 20,
            shmem_rss_bytes: 4096,
            swap_bytes: 0,
            pgtables_bytes: 256 << 10,
            trigger_pid: 4321,
            trigger_tid: 4322,
            flags: flags::TAPIO_OOM_HAS_TGID
                | flags::TAPIO_OOM_HAS_COMM
                | flags::TAPIO_OOM_HAS_UID
                | flags::TAPIO_OOM_HAS_MEMORY
                | flags::TAPIO_OOM_HAS_SWAP
                | flags::TAPIO_OOM_HAS_SCORE_ADJ
                | flags::TAPIO_OOM_VICTIM_CGROUP,
            source: tapio_oom_source::TAPIO_OOM_SRC_TP_BTF,
            oom_score_adj: 1000,
            ..Default::default()
        };
        r.hdr.ts_ns = 7_000_000_000;
        r.hdr.kind = kind::TAPIO_EVENT_OOM_KILL as u32;
        r.hdr.pid = 1234;
        r.hdr.tid = 1235;
        r.hdr.ppid = 1;
        r.hdr.uid = 1000;
        r.hdr.cgroup_id = 99;
        fill(&mut r.hdr.comm, b"hog\0");
        fill(&mut r.trigger_comm, b"alloc\0");
        fill(
            &mut r.cgroup_leaf,
            format!("cri-containerd-{CID}.scope\0").as_bytes(),
        );
        fill(
            &mut r.cgroup_parent,
            b"kubepods-burstable-pod1a2b3c4d_5e6f_7081_9203_a4b5c6d7e8f9.slice\0",
        );
        r
    }

    pub fn tp_btf_bytes() -> Vec<u8> {
        as_bytes(&tp_btf_record()).to_vec()
    }

    /// What the classic tracepoint of a kernel with only `pid` in the
    /// record gives: the pid, the trigger and the trigger's cgroup.
    pub fn pid_only_bytes() -> Vec<u8> {
        let mut r = tp_btf_record();
        r.flags = 0;
        r.source = tapio_oom_source::TAPIO_OOM_SRC_TRACEPOINT;
        r.hdr.ppid = 0;
        r.hdr.uid = 0;
        r.hdr.tid = r.hdr.pid;
        r.hdr.comm = Default::default();
        r.total_vm_bytes = 0;
        r.anon_rss_bytes = 0;
        r.file_rss_bytes = 0;
        r.shmem_rss_bytes = 0;
        r.pgtables_bytes = 0;
        r.oom_score_adj = 0;
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn decodes_a_tp_btf_record() {
        let k = decode(&tp_btf_bytes()).unwrap();
        assert_eq!(k.source, Source::TpBtf);
        assert_eq!((k.pid, k.tid, k.ppid, k.pid_is_tid), (1234, 1235, 1, false));
        assert_eq!(k.comm.as_deref(), Some("hog"));
        assert_eq!(k.uid, Some(1000));
        assert_eq!(
            k.memory,
            Some(Memory {
                total_vm: 300 << 20,
                anon_rss: 60 << 20,
                file_rss: 3 << 20,
                shmem_rss: 4096,
                pgtables: 256 << 10,
            })
        );
        assert_eq!(k.swap_bytes, Some(0));
        assert_eq!(k.oom_score_adj, Some(1000));
        assert_eq!((k.trigger_pid, k.trigger_tid), (4321, 4322));
        assert_eq!(k.trigger_comm, "alloc");
        assert!(k.victim_cgroup);
        assert_eq!(k.cgroup_id, 99);
        assert!(k.cgroup_leaf.contains(CID));
        assert!(k.cgroup_parent.starts_with("kubepods-burstable-pod"));
    }

    #[test]
    fn absent_fields_are_none_not_zero() {
        let k = decode(&pid_only_bytes()).unwrap();
        assert_eq!(k.source, Source::Tracepoint);
        assert_eq!(k.pid, 1234);
        assert!(k.pid_is_tid);
        assert_eq!((k.comm, k.uid, k.memory), (None, None, None));
        assert_eq!((k.swap_bytes, k.oom_score_adj), (None, None));
        assert!(!k.victim_cgroup);
        assert_eq!(k.trigger_comm, "alloc");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[0; 8]), Err(DecodeError::Short(_))));
        let mut b = tp_btf_bytes();
        b[16..20].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(1)));
        // The right kind with a header-sized body is short, not misread.
        let b = tp_btf_bytes();
        assert!(matches!(decode(&b[..100]), Err(DecodeError::Short(_))));
        for n in 0..420 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            let _ = decode(&junk);
        }
    }

    #[test]
    fn io_uring_names_follow_the_uapi() {
        assert_eq!(io_uring_op_name(0), "nop");
        assert_eq!(io_uring_op_name(22), "read");
        assert_eq!(io_uring_op_name(23), "write");
        assert_eq!(io_uring_op_name(62), "pipe");
        assert_eq!(io_uring_op_name(63), "op_63_or_later");
        assert!(io_uring_setup_flags(0).is_empty());
        assert_eq!(io_uring_setup_flags(0b10), ["sqpoll"]);
        assert_eq!(
            io_uring_setup_flags((1 << 12) | (1 << 13) | (1 << 30)),
            ["single_issuer", "defer_taskrun", "bit_30"]
        );
    }

    #[test]
    fn decodes_an_io_uring_creation() {
        let mut r = tapio_io_uring_create {
            fd: 5,
            sq_entries: 64,
            cq_entries: 128,
            flags: 2,
            ..Default::default()
        };
        r.hdr.kind = kind::TAPIO_EVENT_IO_URING_CREATE as u32;
        r.hdr.pid = 77;
        let b = tapio_shared::as_bytes(&r).to_vec();
        let c = decode_io_uring_create(&b).unwrap();
        assert_eq!((c.fd, c.sq_entries, c.cq_entries, c.flags), (5, 64, 128, 2));
        assert_eq!(c.common.pid, 77);
        assert!(matches!(
            decode_io_uring_create(&b[..20]),
            Err(DecodeError::Short(_))
        ));
        // An OOM record is not a creation, nor the other way round.
        assert!(decode_io_uring_create(&tp_btf_bytes()).is_err());
        assert!(decode(&b).is_err());
    }

    #[test]
    fn config_picks_the_programs() {
        let mut cfg = KernelProbe::default();
        assert!(wanted(&cfg, PROG_OOM_BTF) && wanted(&cfg, PROG_IO_URING_COMPLETE));
        cfg.io_uring = false;
        assert!(wanted(&cfg, PROG_OOM_TP) && !wanted(&cfg, PROG_IO_URING_SUBMIT));
        cfg.io_uring = true;
        cfg.oom_kill = false;
        assert!(!wanted(&cfg, PROG_OOM_BTF) && wanted(&cfg, PROG_IO_URING_CREATE));
        cfg.io_uring_sample_rate = 0.0;
        assert!(!wanted(&cfg, PROG_IO_URING_SUBMIT) && !wanted(&cfg, PROG_IO_URING_SUBMIT_SQE));
        assert!(wanted(&cfg, PROG_IO_URING_COMPLETE));
    }

    #[test]
    fn attach_picks_the_variants() {
        let mut cfg = KernelProbe::default();
        let labels = |c: &KernelProbe| spec(c).variants.iter().map(|v| v.label).collect::<Vec<_>>();
        assert_eq!(labels(&cfg), ["tp_btf", "tracepoint"]);
        cfg.attach = KernelAttach::TpBtf;
        assert_eq!(labels(&cfg), ["tp_btf"]);
        cfg.attach = KernelAttach::Tracepoint;
        assert_eq!(labels(&cfg), ["tracepoint"]);
    }
}
