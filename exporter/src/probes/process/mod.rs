//! The process probe, kernel record to OTLP in one folder:
//! `ebpf/process.bpf.c` writes the records, `decode` reads them, `otlp`
//! writes them as OTLP log records, and the [`Handler`] here adds what
//! enrichment knows in between.

pub mod decode;
#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

#[cfg(test)]
pub(crate) use decode::fixtures;
pub use decode::{decode, Common, DecodeError, Record};

use super::{Attach, ProbeSpec, Variant};
use decode::{CommandLine, ExecExt};
use std::fmt::Write as _;
use tapio_shared::{tapio_process_exit, tapio_process_fork};

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

/// Turns process records into log records.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: crate::telemetry::ReaderStats,
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

    /// What the exec ran, into a recycled ProcessInfo: the executable's
    /// path and the command line.
    fn resolve(&mut self, r: &decode::Exec<'_>) -> crate::enrich::ProcessInfo {
        let mut info = self.enricher.spare_info();
        let filename = r.filename();
        // execve's path argument may be relative; the kernel's view of the
        // image is /proc/<pid>/exe while the process is alive.
        let linked = (!filename.starts_with(b"/"))
            .then(|| std::fs::read_link(format!("/proc/{}/exe", r.hdr.pid)).ok())
            .flatten();
        match (linked, std::str::from_utf8(filename)) {
            (Some(p), _) => info.executable_path.push_str(&p.to_string_lossy()),
            (None, Ok(f)) => info.executable_path.push_str(f),
            (None, Err(_)) => {
                let lossy = crate::otel::wire::Lossy(filename);
                let _ = write!(info.executable_path, "{lossy}");
            }
        }
        CommandLine(r.args()).write_to(&mut info.command_line);
        info
    }

    fn exec(&mut self, r: &decode::Exec<'_>, observed: u64) {
        let h = &r.hdr;
        self.enricher
            .learn_cgroup_names(h.cgroup_id, r.cgroup_leaf(), r.cgroup_parent());
        let info = self.resolve(r);
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::exec(
            enc, r, &info, &ctx, clock, observed
        ));
        self.enricher.remember_process(h.pid, info);
    }

    fn exit(&mut self, r: &tapio_process_exit, observed: u64) {
        let h = &r.hdr;
        let info = self.enricher.forget_process(h.pid);
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::exit(
            enc,
            r,
            info.as_ref(),
            &ctx,
            clock,
            observed
        ));
        if let Some(i) = info {
            self.enricher.recycle(i);
        }
    }

    fn fork(&mut self, r: &tapio_process_fork, observed: u64) {
        let h = &r.hdr;
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::fork(
            enc, r, &ctx, clock, observed
        ));
    }
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
        let observed = self.clock.sampled_unix_ns();
        match &rec {
            Record::Exec(r) => self.exec(r, observed),
            Record::Exit(r) => self.exit(r, observed),
            Record::Fork(r) => self.fork(r, observed),
        }
        let lat = self
            .clock
            .sampled_boot_ns()
            .saturating_sub(rec.header().ts_ns);
        self.stats.record_latency_ns(lat);
    }
}
