//! The opentelemetry-proto mapping of kernel records that [`super::otlp`]
//! replaced, kept to compare with (the fidelity tests) and to measure
//! against.

use super::{IoUringCreate, OomKill};
use crate::clock::WallClock;
use crate::otel::{kv_int, kv_str, names::attr, names::event};
use crate::probes::legacy::{common_attrs, context_attrs, record, ProcessContext};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// `kernel.oom_kill` (WARN): the victim, what it held, who triggered it.
/// Attributes the hook could not see on this kernel are left out rather
/// than sent as zeros.
/// `kernel.io_uring.create`: WARN with SQPOLL, where a kernel thread
/// does the process's I/O and no syscall marks any of it.
pub fn io_uring_create(
    c: &IoUringCreate,
    ctx: &ProcessContext,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut a = common_attrs(&c.common, ctx);
    a.push(kv_int(attr::TAPIO_IO_URING_FD, i64::from(c.fd)));
    a.push(kv_int(
        attr::TAPIO_IO_URING_SQ_ENTRIES,
        i64::from(c.sq_entries),
    ));
    a.push(kv_int(
        attr::TAPIO_IO_URING_CQ_ENTRIES,
        i64::from(c.cq_entries),
    ));
    let flags = super::io_uring_setup_flags(c.flags);
    a.push(crate::otel::kv_strs(
        attr::TAPIO_IO_URING_SETUP_FLAGS,
        &flags,
    ));
    let sqpoll = flags.iter().any(|f| f == "sqpoll");
    let severity = if sqpoll {
        SeverityNumber::Warn
    } else {
        SeverityNumber::Info
    };
    let shown = if flags.is_empty() {
        "none".to_string()
    } else {
        flags.join(",")
    };
    let body = format!(
        "{} ({}) set up an io_uring: fd {}, {} SQ / {} CQ entries, flags {shown}",
        c.common.comm, c.common.pid, c.fd, c.sq_entries, c.cq_entries
    );
    record(
        event::KERNEL_IO_URING_CREATE,
        severity,
        clock.to_unix_ns(c.common.ts_boot_ns),
        observed,
        body,
        a,
    )
}

pub fn oom_kill(k: &OomKill, ctx: &ProcessContext, clock: &WallClock, observed: u64) -> LogRecord {
    let mut a = vec![kv_int(attr::PROCESS_PID, i64::from(k.pid))];
    if !k.pid_is_tid && k.tid != 0 {
        a.push(kv_int(attr::THREAD_ID, i64::from(k.tid)));
    }
    if k.ppid != 0 {
        a.push(kv_int(attr::PROCESS_PARENT_PID, i64::from(k.ppid)));
    }
    if let Some(comm) = &k.comm {
        a.push(kv_str(attr::PROCESS_EXECUTABLE_NAME, comm.clone()));
    }
    if let Some(uid) = k.uid {
        a.push(kv_int(attr::PROCESS_USER_ID, i64::from(uid)));
    }
    a.push(kv_int(attr::TAPIO_CGROUP_ID, k.cgroup_id as i64));
    context_attrs(ctx, &mut a);
    let cgroup_of = if k.victim_cgroup { "victim" } else { "trigger" };
    a.push(kv_str(attr::TAPIO_OOM_CGROUP_SOURCE, cgroup_of));
    let bytes = |v: u64| v.min(i64::MAX as u64) as i64;
    if let Some(m) = &k.memory {
        a.push(kv_int(attr::TAPIO_OOM_TOTAL_VM_BYTES, bytes(m.total_vm)));
        a.push(kv_int(attr::TAPIO_OOM_ANON_RSS_BYTES, bytes(m.anon_rss)));
        a.push(kv_int(attr::TAPIO_OOM_FILE_RSS_BYTES, bytes(m.file_rss)));
        a.push(kv_int(attr::TAPIO_OOM_SHMEM_RSS_BYTES, bytes(m.shmem_rss)));
        a.push(kv_int(attr::TAPIO_OOM_PGTABLES_BYTES, bytes(m.pgtables)));
    }
    if let Some(s) = k.swap_bytes {
        a.push(kv_int(attr::TAPIO_OOM_SWAP_BYTES, bytes(s)));
    }
    if let Some(adj) = k.oom_score_adj {
        a.push(kv_int(attr::TAPIO_OOM_SCORE_ADJ, i64::from(adj)));
    }
    a.push(kv_int(
        attr::TAPIO_OOM_TRIGGER_PID,
        i64::from(k.trigger_pid),
    ));
    a.push(kv_str(
        attr::TAPIO_OOM_TRIGGER_EXECUTABLE_NAME,
        k.trigger_comm.clone(),
    ));
    let who = match &k.comm {
        Some(c) => format!("{c} (pid {})", k.pid),
        None => format!("pid {}", k.pid),
    };
    let mib = |v: u64| v as f64 / f64::from(1 << 20);
    let held = match &k.memory {
        Some(m) => format!(
            ": anon-rss {:.1} MiB, file-rss {:.1} MiB, shmem-rss {:.1} MiB",
            mib(m.anon_rss),
            mib(m.file_rss),
            mib(m.shmem_rss)
        ),
        None => String::new(),
    };
    let body = format!(
        "OOM killer killed {who}{held}; triggered by {} (pid {})",
        k.trigger_comm, k.trigger_pid
    );
    record(
        event::KERNEL_OOM_KILL,
        SeverityNumber::Warn,
        clock.to_unix_ns(k.ts_boot_ns),
        observed,
        body,
        a,
    )
}
