//! The process probe: `ebpf/process.bpf.c` ↔ this module. Decodes its
//! ring-buffer records into typed events; `otel::logs` maps them to OTLP.

use super::{cstr, Attach, ProbeSpec, Variant};
use tapio_shared::{
    read_record, record_kind, tapio_event_header, tapio_event_kind as kind,
    tapio_exec_flags as flags, tapio_process_exec, tapio_process_exit, tapio_process_fork,
};

pub const NAME: &str = "process";

/// Program names in `process.bpf.c`.
pub const PROG_EXEC_BTF: &str = "tapio_exec_btf";
pub const PROG_EXIT_BTF: &str = "tapio_exit_btf";
pub const PROG_FORK_BTF: &str = "tapio_fork_btf";
pub const PROG_EXEC_TP: &str = "tapio_exec_tp";
pub const PROG_EXIT_TP: &str = "tapio_exit_tp";

/// Attach variants, best first. tp_btf gives typed arguments and fork;
/// classic tracepoints work wherever tracefs does, without fork (see the
/// comment at the end of process.bpf.c).
pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::PROCESS,
    variants: &[
        Variant {
            label: "tp_btf",
            programs: &[
                (PROG_EXEC_BTF, Attach::BtfTracePoint("sched_process_exec")),
                (PROG_EXIT_BTF, Attach::BtfTracePoint("sched_process_exit")),
                (PROG_FORK_BTF, Attach::BtfTracePoint("sched_process_fork")),
            ],
        },
        Variant {
            label: "tracepoint",
            programs: &[
                (
                    PROG_EXEC_TP,
                    Attach::TracePoint("sched", "sched_process_exec"),
                ),
                (
                    PROG_EXIT_TP,
                    Attach::TracePoint("sched", "sched_process_exit"),
                ),
            ],
        },
    ],
};

/// Fields every process record has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// CLOCK_BOOTTIME ns.
    pub ts_boot_ns: u64,
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
}

impl From<&tapio_event_header> for Common {
    fn from(h: &tapio_event_header) -> Self {
        Self {
            ts_boot_ns: h.ts_ns,
            cgroup_id: h.cgroup_id,
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            comm: cstr(&h.comm, h.comm.len()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub common: Common,
    pub start_boot_ns: u64,
    pub old_pid: u32,
    pub filename: String,
    pub argv: Vec<String>,
    pub filename_truncated: bool,
    pub args_truncated: bool,
    pub args_unreadable: bool,
    pub cgroup_leaf: String,
    pub cgroup_parent: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub common: Common,
    pub start_boot_ns: u64,
    pub exit_code: i32,
    /// Signal that killed the process; 0 when it exited by itself.
    pub signal: u32,
    pub core_dumped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The parent.
    pub common: Common,
    pub child_pid: u32,
    pub child_start_boot_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    Exec(Exec),
    Exit(Exit),
    Fork(Fork),
}

impl ProcessEvent {
    pub fn common(&self) -> &Common {
        match self {
            ProcessEvent::Exec(e) => &e.common,
            ProcessEvent::Exit(e) => &e.common,
            ProcessEvent::Fork(e) => &e.common,
        }
    }
}

pub use super::DecodeError;

/// argv as the kernel copied it: NUL-separated, the last one maybe cut.
fn split_args(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn c_bytes(raw: &[core::ffi::c_char], len: usize) -> Vec<u8> {
    raw.iter()
        .take(len.min(raw.len()))
        .map(|c| *c as u8)
        .collect()
}

/// Decode one ring-buffer record of the process probe.
pub fn decode(bytes: &[u8]) -> Result<ProcessEvent, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_PROCESS_EXEC as u32 {
        let r: tapio_process_exec = read_record(bytes)?;
        let args_len = usize::from(r.args_len);
        Ok(ProcessEvent::Exec(Exec {
            common: Common::from(&r.hdr),
            start_boot_ns: r.start_ns,
            old_pid: r.old_pid,
            filename: cstr(&r.filename, usize::from(r.filename_len)),
            argv: split_args(&c_bytes(&r.args, args_len)),
            filename_truncated: r.flags & flags::TAPIO_EXEC_FILENAME_TRUNCATED != 0,
            args_truncated: r.flags & flags::TAPIO_EXEC_ARGS_TRUNCATED != 0,
            args_unreadable: r.flags & flags::TAPIO_EXEC_ARGS_UNREADABLE != 0,
            cgroup_leaf: cstr(&r.cgroup_leaf, r.cgroup_leaf.len()),
            cgroup_parent: cstr(&r.cgroup_parent, r.cgroup_parent.len()),
        }))
    } else if k == kind::TAPIO_EVENT_PROCESS_EXIT as u32 {
        let r: tapio_process_exit = read_record(bytes)?;
        Ok(ProcessEvent::Exit(Exit {
            common: Common::from(&r.hdr),
            start_boot_ns: r.start_ns,
            exit_code: r.exit_code,
            signal: r.exit_signal,
            core_dumped: r.core_dumped != 0,
        }))
    } else if k == kind::TAPIO_EVENT_PROCESS_FORK as u32 {
        let r: tapio_process_fork = read_record(bytes)?;
        Ok(ProcessEvent::Fork(Fork {
            common: Common::from(&r.hdr),
            child_pid: r.child_pid,
            child_start_boot_ns: r.child_start_ns,
        }))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Records as the kernel writes them, built through the generated types.
    use super::*;
    use tapio_shared::as_bytes;

    pub fn fill(dst: &mut [core::ffi::c_char], s: &[u8]) {
        for (d, b) in dst.iter_mut().zip(s) {
            *d = *b as core::ffi::c_char;
        }
    }

    pub fn header(k: kind) -> tapio_event_header {
        let mut h = tapio_event_header {
            ts_ns: 5_000_000_000,
            cgroup_id: 77,
            kind: k as u32,
            pid: 1234,
            tid: 1234,
            ppid: 1,
            uid: 0,
            gid: 0,
            ..Default::default()
        };
        fill(&mut h.comm, b"sh\0");
        h
    }

    pub fn exec_bytes(args: &[u8], flags: u32) -> Vec<u8> {
        let mut r = tapio_process_exec {
            hdr: header(kind::TAPIO_EVENT_PROCESS_EXEC),
            start_ns: 4_000_000_000,
            flags,
            old_pid: 1234,
            filename_len: 7,
            args_len: args.len() as u16,
            ..Default::default()
        };
        fill(&mut r.filename, b"/bin/sh\0garbage-after-len");
        fill(&mut r.args, args);
        fill(
            &mut r.cgroup_leaf,
            format!("docker-{}.scope\0", "b".repeat(64)).as_bytes(),
        );
        fill(&mut r.cgroup_parent, b"system.slice\0");
        as_bytes(&r).to_vec()
    }

    pub fn exit_bytes(code: i32, signal: u32) -> Vec<u8> {
        let r = tapio_process_exit {
            hdr: header(kind::TAPIO_EVENT_PROCESS_EXIT),
            start_ns: 4_000_000_000,
            exit_code: code,
            exit_signal: signal,
            ..Default::default()
        };
        as_bytes(&r).to_vec()
    }

    pub fn fork_bytes() -> Vec<u8> {
        let r = tapio_process_fork {
            hdr: header(kind::TAPIO_EVENT_PROCESS_FORK),
            child_pid: 1300,
            child_start_ns: 5_000_000_000,
            ..Default::default()
        };
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn decodes_exec_with_args_and_cgroup() {
        let bytes = exec_bytes(b"/bin/sh\0-c\0exit 7\0", flags::TAPIO_EXEC_ARGS_TRUNCATED);
        let ProcessEvent::Exec(e) = decode(&bytes).unwrap() else {
            panic!("not exec")
        };
        assert_eq!(e.filename, "/bin/sh");
        assert_eq!(e.argv, vec!["/bin/sh", "-c", "exit 7"]);
        assert!(e.args_truncated && !e.filename_truncated && !e.args_unreadable);
        assert_eq!(e.common.pid, 1234);
        assert_eq!(e.common.comm, "sh");
        assert_eq!(e.cgroup_parent, "system.slice");
        assert!(e.cgroup_leaf.starts_with("docker-"));
    }

    #[test]
    fn args_len_bounds_what_is_read() {
        // Bytes past args_len are ring-buffer garbage and must not show.
        let mut bytes = exec_bytes(b"ls\0-l\0", 0);
        let off = core::mem::offset_of!(tapio_process_exec, args_len);
        bytes[off..off + 2].copy_from_slice(&3u16.to_ne_bytes());
        let ProcessEvent::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(e.argv, vec!["ls"]);
    }

    #[test]
    fn decodes_exit_and_fork() {
        let ProcessEvent::Exit(x) = decode(&exit_bytes(7, 0)).unwrap() else {
            panic!()
        };
        assert_eq!((x.exit_code, x.signal, x.core_dumped), (7, 0, false));
        let ProcessEvent::Fork(f) = decode(&fork_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(f.child_pid, 1300);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short(_))));
        let mut bytes = exit_bytes(0, 0);
        bytes[16..20].copy_from_slice(&99u32.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
        // An exec kind with an exit-sized body is short, not misread.
        let mut short = exit_bytes(0, 0);
        short[16..20].copy_from_slice(&1u32.to_ne_bytes());
        assert!(matches!(decode(&short), Err(DecodeError::Short(_))));
        for n in 0..200 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = decode(&junk);
        }
    }
}

/// Turns process records into log records.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
    pub config: crate::config::ProcessProbe,
}

impl Handler {
    /// The program names the config wants attached.
    pub fn wanted(cfg: &crate::config::ProcessProbe) -> impl Fn(&str) -> bool + '_ {
        move |prog| match prog {
            PROG_EXEC_BTF | PROG_EXEC_TP => cfg.exec,
            PROG_EXIT_BTF | PROG_EXIT_TP => cfg.exit,
            PROG_FORK_BTF => cfg.fork,
            _ => true,
        }
    }

    fn exe_path(e: &Exec) -> String {
        // execve's path argument may be relative; the kernel's view of the
        // image is /proc/<pid>/exe while the process is alive.
        if e.filename.starts_with('/') {
            return e.filename.clone();
        }
        std::fs::read_link(format!("/proc/{}/exe", e.common.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| e.filename.clone())
    }

    fn map(
        &mut self,
        ev: &ProcessEvent,
        observed: u64,
    ) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
        use crate::otel::logs::{self, ProcessContext};
        let c = ev.common();
        let owner = self.enricher.users.name(c.uid).map(str::to_string);
        match ev {
            ProcessEvent::Exec(e) => {
                let workload =
                    self.enricher
                        .learn_cgroup(c.cgroup_id, &e.cgroup_leaf, &e.cgroup_parent);
                let path = Self::exe_path(e);
                self.enricher.remember_process(
                    c.pid,
                    crate::enrich::ProcessInfo {
                        executable_path: path.clone(),
                        command_line: logs::command_line(&e.argv),
                    },
                );
                let ctx = ProcessContext {
                    owner,
                    workload,
                    info: None,
                };
                logs::process_exec(e, &path, &ctx, &self.clock, observed)
            }
            ProcessEvent::Exit(e) => {
                let workload = self.enricher.workload(c.cgroup_id, c.pid);
                let info = self.enricher.forget_process(c.pid);
                let ctx = ProcessContext {
                    owner,
                    workload,
                    info,
                };
                logs::process_exit(e, &ctx, &self.clock, observed)
            }
            ProcessEvent::Fork(f) => {
                let workload = self.enricher.workload(c.cgroup_id, c.pid);
                let ctx = ProcessContext {
                    owner,
                    workload,
                    info: None,
                };
                logs::process_fork(f, &ctx, &self.clock, observed)
            }
        }
    }
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        let Some(ev) = self.stats.decoded(decode(record)) else {
            return;
        };
        let observed = crate::clock::unix_ns();
        let rec = self.map(&ev, observed);
        self.emitter.log(rec);
        let lat = crate::clock::boot_ns().saturating_sub(ev.common().ts_boot_ns);
        self.stats.latency.record_ns(lat);
    }
}
