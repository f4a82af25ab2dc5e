//! Process records → OTLP log records (`process.exec`, `process.exit`,
//! `process.fork`), written straight from the kernel record into protobuf.
//! The one place these records' names and shapes are decided.

use super::decode::{comm, Exec, ExecExt};
use crate::clock::WallClock;
use crate::enrich::{Context, ProcessInfo};
use crate::otel::{
    names::{attr, event},
    wire::{Encode, Lossy, RecordWriter, Severity},
};
use std::fmt;
use tapio_shared::{tapio_event_header, tapio_process_exit, tapio_process_fork};

/// The attributes of the task a record describes and what enrichment added
/// (owner, container, pod, systemd unit). Every probe's records carry them.
pub fn process_attrs(w: &mut impl RecordWriter, h: &tapio_event_header, ctx: &Context<'_>) {
    if ctx.generation == 0 {
        // Not borrowed from the enricher's caches: nothing says what the
        // pointers name, so nothing is reused.
        write_process_attrs(w, h, ctx);
        return;
    }
    // comm up to its NUL: the kernel does not always clear what follows.
    let mut name = [0u8; 16];
    let c = comm(h);
    let n = c.len().min(name.len());
    name[..n].copy_from_slice(&c[..n]);
    let name = u128::from_le_bytes(name);
    let (lo, hi) = (name as u64, (name >> 64) as u64);
    let key = [
        u64::from(h.tid) | u64::from(h.pid) << 32,
        u64::from(h.ppid) | u64::from(h.uid) << 32,
        h.cgroup_id,
        lo,
        hi,
        ctx.owner.map_or(0, |o| o.as_ptr() as u64),
        ctx.owner.map_or(0, |o| o.len() as u64),
        ctx.workload.map_or(0, |wl| std::ptr::from_ref(wl) as u64),
        ctx.generation,
    ];
    w.cached(&key, |w| write_process_attrs(w, h, ctx));
}

fn write_process_attrs(w: &mut impl RecordWriter, h: &tapio_event_header, ctx: &Context<'_>) {
    w.int(attr::PROCESS_PID, i64::from(h.pid));
    w.int(attr::PROCESS_PARENT_PID, i64::from(h.ppid));
    w.int(attr::THREAD_ID, i64::from(h.tid));
    w.lossy(attr::PROCESS_EXECUTABLE_NAME, comm(h));
    w.int(attr::PROCESS_USER_ID, i64::from(h.uid));
    w.int(attr::TAPIO_CGROUP_ID, h.cgroup_id as i64);
    context_attrs(w, ctx);
}

/// What enrichment added: owner name, container, pod, systemd unit.
pub fn context_attrs(w: &mut impl RecordWriter, ctx: &Context<'_>) {
    if let Some(o) = ctx.owner {
        w.str(attr::PROCESS_OWNER, o);
    }
    if let Some(wl) = ctx.workload {
        if let Some(id) = &wl.container_id {
            w.str(attr::CONTAINER_ID, id);
        }
        if let Some(uid) = &wl.pod_uid {
            w.str(attr::K8S_POD_UID, uid);
        }
        if let Some(unit) = &wl.systemd_unit {
            w.str(attr::TAPIO_SYSTEMD_UNIT, unit);
        }
    }
}

/// `process.exec`. `info` is what the handler resolved (the executable's
/// path, the command line), also remembered for the exit.
pub fn exec(
    enc: &mut impl Encode,
    r: &Exec<'_>,
    info: &ProcessInfo,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    w.body_concat(&["exec ", &info.command_line]);
    process_attrs(&mut w, &r.hdr, ctx);
    w.str(attr::PROCESS_EXECUTABLE_PATH, &info.executable_path);
    w.str(attr::PROCESS_COMMAND_LINE, &info.command_line);
    w.time(attr::PROCESS_CREATION_TIME, clock.to_unix_ns(r.start_ns));
    if r.truncated() {
        w.bool(attr::TAPIO_TRUNCATED, true);
    }
    w.finish_log(observed, event::PROCESS_EXEC);
}

/// Name of a signal number, for the signals a process dies of.
pub struct SignalName(pub u32);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "SIGHUP",
            2 => "SIGINT",
            3 => "SIGQUIT",
            4 => "SIGILL",
            5 => "SIGTRAP",
            6 => "SIGABRT",
            7 => "SIGBUS",
            8 => "SIGFPE",
            9 => "SIGKILL",
            10 => "SIGUSR1",
            11 => "SIGSEGV",
            12 => "SIGUSR2",
            13 => "SIGPIPE",
            14 => "SIGALRM",
            15 => "SIGTERM",
            24 => "SIGXCPU",
            25 => "SIGXFSZ",
            31 => "SIGSYS",
            n => return write!(f, "SIG{n}"),
        };
        f.write_str(name)
    }
}

/// `process.exit`: WARN when a signal killed it (a crash or a kill is
/// worth a look; a clean exit is not). `info`: what it ran, if we saw its
/// exec.
pub fn exit(
    enc: &mut impl Encode,
    r: &tapio_process_exit,
    info: Option<&ProcessInfo>,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let end = clock.to_unix_ns(r.hdr.ts_ns);
    let name = Lossy(comm(&r.hdr));
    let severity = if r.exit_signal != 0 {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut w = enc.log(end, severity);
    if r.exit_signal != 0 {
        w.body(format_args!(
            "{name} killed by {}",
            SignalName(r.exit_signal)
        ));
    } else {
        w.body(format_args!("{name} exited with code {}", r.exit_code));
    }
    process_attrs(&mut w, &r.hdr, ctx);
    w.int(attr::PROCESS_EXIT_CODE, i64::from(r.exit_code));
    w.time(attr::PROCESS_EXIT_TIME, end);
    if r.start_ns > 0 {
        w.time(attr::PROCESS_CREATION_TIME, clock.to_unix_ns(r.start_ns));
        let secs = r.hdr.ts_ns.saturating_sub(r.start_ns) as f64 / 1e9;
        w.f64(attr::TAPIO_PROCESS_DURATION, secs);
    }
    if let Some(info) = info {
        w.str(attr::PROCESS_EXECUTABLE_PATH, &info.executable_path);
        w.str(attr::PROCESS_COMMAND_LINE, &info.command_line);
    }
    if r.exit_signal != 0 {
        w.display(attr::TAPIO_PROCESS_EXIT_SIGNAL, SignalName(r.exit_signal));
        if r.core_dumped != 0 {
            w.bool(attr::TAPIO_PROCESS_CORE_DUMPED, true);
        }
    }
    w.finish_log(observed, event::PROCESS_EXIT);
}

/// `process.fork`: the header is the parent.
pub fn fork(
    enc: &mut impl Encode,
    r: &tapio_process_fork,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    w.body(format_args!(
        "{} forked {}",
        Lossy(comm(&r.hdr)),
        r.child_pid
    ));
    process_attrs(&mut w, &r.hdr, ctx);
    w.int(attr::TAPIO_PROCESS_CHILD_PID, i64::from(r.child_pid));
    w.finish_log(observed, event::PROCESS_FORK);
}

#[cfg(test)]
mod tests {
    //! The direct encoder against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: the bytes must be equal,
    //! and decode to equal messages.
    use super::super::{decode::*, legacy};
    use super::*;
    use crate::enrich::cgroup::{self, Workload};
    use crate::otel::wire::Encoder;
    use crate::probes::legacy::ProcessContext;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use prost::Message;

    fn same(enc: &Encoder, old: &LogRecord) {
        let mut want = Vec::new();
        prost::encoding::message::encode(crate::otel::wire::RECORD_FIELD, old, &mut want);
        let got = enc.record();
        // Field by field first: a difference names the field.
        let mut body = &got[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        assert_eq!(&LogRecord::decode(body).unwrap(), old);
        assert_eq!(got, &want[..]);
    }

    fn ctx_pair<'a>(
        owner: Option<&'a str>,
        wl: Option<&'a Workload>,
    ) -> (Context<'a>, ProcessContext) {
        (
            Context {
                owner,
                workload: wl,
                generation: 0,
            },
            ProcessContext {
                owner: owner.map(str::to_string),
                workload: wl.cloned().unwrap_or_default(),
                info: None,
            },
        )
    }

    #[test]
    fn exec_matches_the_old_mapping() {
        let clock = WallClock::with_offset(1_000_000_000_000);
        let wl = cgroup::from_names(&format!("docker-{}.scope", "b".repeat(64)), "system.slice");
        for (args, flags, owner) in [
            (&b"/bin/sh\0-c\0exit 7\0"[..], 0, Some("root")),
            (
                b"a\0\0b\xff\0",
                tapio_shared::tapio_exec_flags::TAPIO_EXEC_ARGS_TRUNCATED,
                None,
            ),
            (&[b'x'; 1000][..], 0, Some("app")),
        ] {
            let bytes = fixtures::exec_bytes(args, flags);
            let Record::Exec(r) = decode(&bytes).unwrap() else {
                panic!()
            };
            let legacy::ProcessEvent::Exec(e) = legacy::decode(&bytes).unwrap() else {
                panic!()
            };
            let (ctx, old_ctx) = ctx_pair(owner, Some(&wl));
            let info = ProcessInfo {
                executable_path: "/bin/sh".into(),
                command_line: CommandLine(r.args()).to_string(),
            };
            let mut enc = Encoder::default();
            exec(&mut enc, &r, &info, &ctx, &clock, 42);
            same(
                &enc,
                &legacy::process_exec(&e, "/bin/sh", &old_ctx, &clock, 42),
            );
        }
    }

    #[test]
    fn exit_and_fork_match_the_old_mapping() {
        let clock = WallClock::with_offset(0);
        let info = ProcessInfo {
            executable_path: "/bin/sh".into(),
            command_line: "sh -c exit 7".into(),
        };
        let pod = cgroup::from_names(
            &format!("cri-containerd-{}.scope", "c".repeat(64)),
            "kubepods-besteffort-pod1a2b3c4d_5e6f_7081_9203_a4b5c6d7e8f9.slice",
        );
        for (code, sig, with_info, wl) in [
            (7, 0, true, None),
            (0, 9, false, Some(&pod)),
            (0, 77, true, Some(&pod)),
        ] {
            let mut bytes = fixtures::exit_bytes(code, sig);
            if sig == 9 {
                let off = core::mem::offset_of!(tapio_process_exit, core_dumped);
                bytes[off..off + 4].copy_from_slice(&1u32.to_ne_bytes());
            }
            let Record::Exit(r) = decode(&bytes).unwrap() else {
                panic!()
            };
            let legacy::ProcessEvent::Exit(e) = legacy::decode(&bytes).unwrap() else {
                panic!()
            };
            let (ctx, mut old_ctx) = ctx_pair(Some("root"), wl);
            old_ctx.info = with_info.then(|| info.clone());
            let mut enc = Encoder::default();
            exit(&mut enc, &r, with_info.then_some(&info), &ctx, &clock, 3);
            same(&enc, &legacy::process_exit(&e, &old_ctx, &clock, 3));
        }
        let bytes = fixtures::fork_bytes();
        let Record::Fork(r) = decode(&bytes).unwrap() else {
            panic!()
        };
        let legacy::ProcessEvent::Fork(f) = legacy::decode(&bytes).unwrap() else {
            panic!()
        };
        let (ctx, old_ctx) = ctx_pair(None, None);
        let mut enc = Encoder::default();
        fork(&mut enc, &r, &ctx, &clock, 0);
        same(&enc, &legacy::process_fork(&f, &old_ctx, &clock, 0));
    }

    /// A process's attributes copied from an earlier record are the bytes
    /// writing them would give, and a change of any input (the header's
    /// fields, comm, the owner, the workload, the caches' generation) is
    /// written anew, for logs and for spans alike (their tags differ).
    #[test]
    fn reused_process_attributes_are_the_ones_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .unwrap();
        let mut e = crate::enrich::Enricher::new(dir.path().to_str().unwrap());
        e.users = crate::enrich::users::Users::from_file(dir.path().join("passwd"));
        e.learn_cgroup(
            7,
            &format!("docker-{}.scope", "a".repeat(64)),
            "system.slice",
        );
        e.learn_cgroup(8, "app.service", "system.slice");
        let clock = WallClock::with_offset(0);
        let bytes = fixtures::fork_bytes();
        let Record::Fork(r) = decode(&bytes).unwrap() else {
            panic!()
        };
        let base = r;
        let mut variants = vec![base];
        let mut v = base;
        v.hdr.tid += 1;
        variants.push(v);
        let mut v = base;
        v.hdr.comm[3] = b'z' as core::ffi::c_char;
        variants.push(v);
        let mut v = base;
        v.hdr.uid = 1000;
        variants.push(v);
        let mut v = base;
        v.hdr.cgroup_id = 7;
        variants.push(v);
        let mut v = base;
        v.hdr.cgroup_id = 8;
        v.hdr.ppid += 9;
        variants.push(v);

        let mut reused = Encoder::default();
        let mut check = |e: &mut crate::enrich::Enricher, f: &tapio_process_fork| {
            let ctx = e.context(f.hdr.uid, f.hdr.cgroup_id, f.hdr.pid);
            assert_ne!(ctx.generation, 0);
            let fresh_ctx = Context {
                generation: 0,
                ..ctx
            };
            let mut fresh = Encoder::default();
            fork(&mut fresh, f, &fresh_ctx, &clock, 0);
            // Twice: the second copies what the first wrote.
            for _ in 0..2 {
                fork(&mut reused, f, &ctx, &clock, 0);
                assert_eq!(reused.record(), fresh.record());
            }
            // A span between them: same key, another attribute field.
            let span = |enc: &mut Encoder, c: &Context<'_>| {
                let mut w = enc.span(&[1; 16], &[2; 8], "s", 1, 1, 2);
                process_attrs(&mut w, &f.hdr, c);
                w.finish_span(crate::otel::wire::StatusCode::Ok, format_args!(""));
            };
            span(&mut fresh, &fresh_ctx);
            span(&mut reused, &ctx);
            assert_eq!(reused.record(), fresh.record());
        };
        for f in variants.iter().chain(variants.iter().rev()) {
            check(&mut e, f);
        }
        // The workload of cgroup 7 learnt anew (in place: the same pointer)
        // makes another generation, so the copy made under the old one is
        // not used.
        check(&mut e, &variants[4]);
        e.learn_cgroup(
            7,
            &format!("docker-{}.scope", "b".repeat(64)),
            "system.slice",
        );
        check(&mut e, &variants[4]);
        let ctx = e.context(1, 7, variants[4].hdr.pid);
        let mut enc = Encoder::default();
        fork(&mut enc, &variants[4], &ctx, &clock, 0);
        let text = String::from_utf8_lossy(enc.record()).into_owned();
        assert!(text.contains(&"b".repeat(64)) && !text.contains(&"a".repeat(64)));
    }
}
