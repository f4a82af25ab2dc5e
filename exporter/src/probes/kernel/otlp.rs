//! Kernel records → OTLP log records (`kernel.oom_kill`,
//! `kernel.io_uring.create`), written with the direct writers (protobuf or
//! OTLP/JSON from the same calls). The one place these records' names and
//! shapes are decided.

use super::{io_uring_setup_flags, IoUringCreate, OomKill};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use crate::probes::process::otlp::context_attrs;

/// `kernel.oom_kill` (WARN): the victim, what it held, who triggered it.
/// Attributes the hook could not see on this kernel are left out rather
/// than sent as zeros.
pub fn oom_kill(
    enc: &mut impl Encode,
    k: &OomKill,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let mut w = enc.log(clock.to_unix_ns(k.ts_boot_ns), Severity::Warn);
    let mib = |v: u64| v as f64 / f64::from(1 << 20);
    let (trigger, tpid) = (&k.trigger_comm, k.trigger_pid);
    match (&k.comm, &k.memory) {
        (Some(c), Some(m)) => w.body(format_args!(
            "OOM killer killed {c} (pid {}): anon-rss {:.1} MiB, file-rss {:.1} MiB, shmem-rss {:.1} MiB; triggered by {trigger} (pid {tpid})",
            k.pid,
            mib(m.anon_rss),
            mib(m.file_rss),
            mib(m.shmem_rss)
        )),
        (None, Some(m)) => w.body(format_args!(
            "OOM killer killed pid {}: anon-rss {:.1} MiB, file-rss {:.1} MiB, shmem-rss {:.1} MiB; triggered by {trigger} (pid {tpid})",
            k.pid,
            mib(m.anon_rss),
            mib(m.file_rss),
            mib(m.shmem_rss)
        )),
        (Some(c), None) => w.body(format_args!(
            "OOM killer killed {c} (pid {}); triggered by {trigger} (pid {tpid})",
            k.pid
        )),
        (None, None) => w.body(format_args!(
            "OOM killer killed pid {}; triggered by {trigger} (pid {tpid})",
            k.pid
        )),
    }
    w.int(attr::PROCESS_PID, i64::from(k.pid));
    if !k.pid_is_tid && k.tid != 0 {
        w.int(attr::THREAD_ID, i64::from(k.tid));
    }
    if k.ppid != 0 {
        w.int(attr::PROCESS_PARENT_PID, i64::from(k.ppid));
    }
    if let Some(comm) = &k.comm {
        w.str(attr::PROCESS_EXECUTABLE_NAME, comm);
    }
    if let Some(uid) = k.uid {
        w.int(attr::PROCESS_USER_ID, i64::from(uid));
    }
    w.int(attr::TAPIO_CGROUP_ID, k.cgroup_id as i64);
    context_attrs(&mut w, ctx);
    let cgroup_of = if k.victim_cgroup { "victim" } else { "trigger" };
    w.str(attr::TAPIO_OOM_CGROUP_SOURCE, cgroup_of);
    let bytes = |v: u64| v.min(i64::MAX as u64) as i64;
    if let Some(m) = &k.memory {
        w.int(attr::TAPIO_OOM_TOTAL_VM_BYTES, bytes(m.total_vm));
        w.int(attr::TAPIO_OOM_ANON_RSS_BYTES, bytes(m.anon_rss));
        w.int(attr::TAPIO_OOM_FILE_RSS_BYTES, bytes(m.file_rss));
        w.int(attr::TAPIO_OOM_SHMEM_RSS_BYTES, bytes(m.shmem_rss));
        w.int(attr::TAPIO_OOM_PGTABLES_BYTES, bytes(m.pgtables));
    }
    if let Some(s) = k.swap_bytes {
        w.int(attr::TAPIO_OOM_SWAP_BYTES, bytes(s));
    }
    if let Some(adj) = k.oom_score_adj {
        w.int(attr::TAPIO_OOM_SCORE_ADJ, i64::from(adj));
    }
    w.int(attr::TAPIO_OOM_TRIGGER_PID, i64::from(k.trigger_pid));
    w.str(attr::TAPIO_OOM_TRIGGER_EXECUTABLE_NAME, &k.trigger_comm);
    w.finish_log(observed, event::KERNEL_OOM_KILL);
}

/// `kernel.io_uring.create`: WARN with SQPOLL, where a kernel thread does
/// the process's I/O and no syscall marks any of it.
pub fn io_uring_create(
    enc: &mut impl Encode,
    c: &IoUringCreate,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    // Rare (a ring is set up once): the flag names may allocate.
    let flags = io_uring_setup_flags(c.flags);
    let severity = if flags.iter().any(|f| f == "sqpoll") {
        Severity::Warn
    } else {
        Severity::Info
    };
    let shown = if flags.is_empty() {
        "none".to_string()
    } else {
        flags.join(",")
    };
    let h = &c.common;
    let mut w = enc.log(clock.to_unix_ns(h.ts_boot_ns), severity);
    w.body(format_args!(
        "{} ({}) set up an io_uring: fd {}, {} SQ / {} CQ entries, flags {shown}",
        h.comm, h.pid, c.fd, c.sq_entries, c.cq_entries
    ));
    w.int(attr::PROCESS_PID, i64::from(h.pid));
    w.int(attr::PROCESS_PARENT_PID, i64::from(h.ppid));
    w.int(attr::THREAD_ID, i64::from(h.tid));
    w.str(attr::PROCESS_EXECUTABLE_NAME, &h.comm);
    w.int(attr::PROCESS_USER_ID, i64::from(h.uid));
    w.int(attr::TAPIO_CGROUP_ID, h.cgroup_id as i64);
    context_attrs(&mut w, ctx);
    w.int(attr::TAPIO_IO_URING_FD, i64::from(c.fd));
    w.int(attr::TAPIO_IO_URING_SQ_ENTRIES, i64::from(c.sq_entries));
    w.int(attr::TAPIO_IO_URING_CQ_ENTRIES, i64::from(c.cq_entries));
    w.str_array(attr::TAPIO_IO_URING_SETUP_FLAGS, |a| {
        for f in &flags {
            a.concat(&[f]);
        }
    });
    w.finish_log(observed, event::KERNEL_IO_URING_CREATE);
}

#[cfg(test)]
mod tests {
    //! The direct writer against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: equal bytes; then what
    //! the records say.
    use super::super::{fixtures::tp_btf_bytes, legacy};
    use super::*;
    use crate::otel::wire::{Encoder, RECORD_FIELD};
    use crate::probes::legacy::ProcessContext;
    use opentelemetry_proto::tonic::{
        common::v1::any_value::Value,
        logs::v1::{LogRecord, SeverityNumber},
    };
    use prost::Message;
    use tapio_shared::{tapio_event_kind as kind, tapio_io_uring_create};

    /// The new mapping's record, decoded, after checking its bytes are the
    /// old mapping's (given `ctx` as both kinds of context).
    fn oom(k: &OomKill, ctx: &ProcessContext, clock: &WallClock, observed: u64) -> LogRecord {
        let mut enc = Encoder::default();
        let c = Context {
            owner: ctx.owner.as_deref(),
            workload: Some(&ctx.workload),
            generation: 0,
        };
        oom_kill(&mut enc, k, &c, clock, observed);
        let old = legacy::oom_kill(k, ctx, clock, observed);
        same(&enc, &old);
        old
    }

    fn same(enc: &Encoder, old: &LogRecord) {
        let mut body = &enc.record()[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        assert_eq!(&LogRecord::decode(body).unwrap(), old);
        let mut want = Vec::new();
        prost::encoding::message::encode(RECORD_FIELD, old, &mut want);
        assert_eq!(enc.record(), &want[..]);
    }

    fn attr_of<'a>(r: &'a LogRecord, k: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn oom_kill_matches_the_old_mapping_with_every_field_combination() {
        let k = super::super::decode(&tp_btf_bytes()).unwrap();
        let clock = WallClock::with_offset(5);
        let wl = crate::enrich::cgroup::from_names(&k.cgroup_leaf, &k.cgroup_parent);
        for owner in [None, Some("app".to_string())] {
            for (comm, memory) in [
                (k.comm.clone(), k.memory),
                (None, k.memory),
                (k.comm.clone(), None),
                (None, None),
            ] {
                let mut k = k.clone();
                k.comm = comm;
                k.memory = memory;
                k.pid_is_tid = memory.is_none();
                k.uid = k.uid.filter(|_| owner.is_some());
                let ctx = ProcessContext {
                    owner: owner.clone(),
                    workload: wl.clone(),
                    info: None,
                };
                oom(&k, &ctx, &clock, 3);
            }
        }
    }

    #[test]
    fn io_uring_create_matches_the_old_mapping() {
        let clock = WallClock::with_offset(1_000);
        let wl = crate::enrich::cgroup::from_names("nginx.service", "system.slice");
        for flags in [0u32, 2, 1 | 2 | 8, 1 << 30] {
            let mut r = tapio_io_uring_create {
                fd: 5,
                sq_entries: 64,
                cq_entries: 128,
                flags,
                ..Default::default()
            };
            r.hdr.kind = kind::TAPIO_EVENT_IO_URING_CREATE as u32;
            r.hdr.pid = 77;
            r.hdr.uid = 1000;
            let b = tapio_shared::as_bytes(&r).to_vec();
            let c = super::super::decode_io_uring_create(&b).unwrap();
            let ctx = ProcessContext {
                owner: Some("app".into()),
                workload: wl.clone(),
                info: None,
            };
            let mut enc = Encoder::default();
            let new_ctx = Context {
                owner: Some("app"),
                workload: Some(&wl),
                generation: 0,
            };
            io_uring_create(&mut enc, &c, &new_ctx, &clock, 9);
            let old = legacy::io_uring_create(&c, &ctx, &clock, 9);
            same(&enc, &old);
            let sqpoll = flags & 2 != 0;
            assert_eq!(
                old.severity_number == SeverityNumber::Warn as i32,
                sqpoll,
                "flags {flags:#x}"
            );
        }
    }

    #[test]
    fn oom_kill_record_names_victim_trigger_memory_and_workload() {
        use super::super::{decode, fixtures};
        let k = decode(&fixtures::tp_btf_bytes()).unwrap();
        let ctx = ProcessContext {
            owner: Some("app".into()),
            workload: crate::enrich::cgroup::from_names(&k.cgroup_leaf, &k.cgroup_parent),
            info: None,
        };
        let r = oom(&k, &ctx, &WallClock::with_offset(1_000_000_000_000), 9);
        assert_eq!(r.event_name, "kernel.oom_kill");
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(r.time_unix_nano, 1_007_000_000_000);
        let int = |k: &str| attr_of(&r, k).cloned();
        let s = |v: &str| Some(Value::StringValue(v.into()));
        assert_eq!(int("process.pid"), Some(Value::IntValue(1234)));
        assert_eq!(int("thread.id"), Some(Value::IntValue(1235)));
        assert_eq!(int("process.parent_pid"), Some(Value::IntValue(1)));
        assert_eq!(int("process.executable.name"), s("hog"));
        assert_eq!(int("process.user.id"), Some(Value::IntValue(1000)));
        assert_eq!(int("process.owner"), s("app"));
        assert_eq!(int("container.id"), s(fixtures::CID));
        assert_eq!(
            int("k8s.pod.uid"),
            s("1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9")
        );
        assert_eq!(int("tapio.oom.cgroup_source"), s("victim"));
        assert_eq!(
            int("tapio.oom.anon_rss_bytes"),
            Some(Value::IntValue(60 << 20))
        );
        assert_eq!(
            int("tapio.oom.total_vm_bytes"),
            Some(Value::IntValue(300 << 20))
        );
        assert_eq!(
            int("tapio.oom.pgtables_bytes"),
            Some(Value::IntValue(256 << 10))
        );
        assert_eq!(int("tapio.oom.swap_bytes"), Some(Value::IntValue(0)));
        assert_eq!(int("tapio.oom.score_adj"), Some(Value::IntValue(1000)));
        assert_eq!(int("tapio.oom.trigger.pid"), Some(Value::IntValue(4321)));
        assert_eq!(int("tapio.oom.trigger.executable.name"), s("alloc"));
        let Some(Value::StringValue(body)) = r.body.as_ref().and_then(|b| b.value.clone()) else {
            panic!("no body")
        };
        assert_eq!(
            body,
            "OOM killer killed hog (pid 1234): anon-rss 60.0 MiB, file-rss 3.0 MiB, shmem-rss 0.0 MiB; triggered by alloc (pid 4321)"
        );
    }

    #[test]
    fn oom_kill_without_fields_leaves_them_out() {
        use super::super::{decode, fixtures};
        let k = decode(&fixtures::pid_only_bytes()).unwrap();
        // A victim outside containers: its systemd unit, as on every record.
        let ctx = ProcessContext {
            workload: crate::enrich::cgroup::from_names("nginx.service", "system.slice"),
            ..Default::default()
        };
        let r = oom(&k, &ctx, &WallClock::with_offset(0), 0);
        assert_eq!(
            attr_of(&r, "tapio.systemd.unit"),
            Some(&Value::StringValue("nginx.service".into()))
        );
        assert_eq!(attr_of(&r, "process.pid"), Some(&Value::IntValue(1234)));
        for absent in [
            "thread.id",
            "process.executable.name",
            "process.user.id",
            "tapio.oom.anon_rss_bytes",
            "tapio.oom.swap_bytes",
            "tapio.oom.score_adj",
        ] {
            assert_eq!(attr_of(&r, absent), None, "{absent}");
        }
        assert_eq!(
            attr_of(&r, "tapio.oom.cgroup_source"),
            Some(&Value::StringValue("trigger".into()))
        );
    }
}
