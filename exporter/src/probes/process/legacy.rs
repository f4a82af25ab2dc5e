//! The process records' mapping as it was before the direct encoder: owned
//! events (Strings) built into opentelemetry-proto messages. Kept only to
//! measure against (`--features legacy-mapper`, benches/export_path.rs) and
//! to compare with (`otlp.rs` tests); Tapio itself does not run it.

use super::decode::Common;
use crate::clock::WallClock;
use crate::otel::{
    kv_bool, kv_f64, kv_int, kv_str,
    names::{attr, event},
    rfc3339,
};
use crate::probes::legacy::{common_attrs, record, ProcessContext};
use crate::probes::{cstr, DecodeError};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_exec_flags as flags,
    tapio_process_exec, tapio_process_exit, tapio_process_fork,
};

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

/// The command line as one string, the way `ps` shows it.
pub fn command_line(argv: &[String]) -> String {
    argv.join(" ")
}

pub fn process_exec(
    e: &Exec,
    exe_path: &str,
    ctx: &ProcessContext,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut a = common_attrs(&e.common, ctx);
    let cmd = command_line(&e.argv);
    a.push(kv_str(attr::PROCESS_EXECUTABLE_PATH, exe_path.to_string()));
    a.push(kv_str(attr::PROCESS_COMMAND_LINE, cmd.clone()));
    a.push(kv_str(
        attr::PROCESS_CREATION_TIME,
        rfc3339(clock.to_unix_ns(e.start_boot_ns)),
    ));
    if e.filename_truncated || e.args_truncated {
        a.push(kv_bool(attr::TAPIO_TRUNCATED, true));
    }
    record(
        event::PROCESS_EXEC,
        SeverityNumber::Info,
        clock.to_unix_ns(e.common.ts_boot_ns),
        observed,
        format!("exec {cmd}"),
        a,
    )
}

/// Name of a signal number, for the signals a process dies of.
pub fn signal_name(sig: u32) -> String {
    let name = match sig {
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
        n => return format!("SIG{n}"),
    };
    name.to_string()
}

pub fn process_exit(e: &Exit, ctx: &ProcessContext, clock: &WallClock, observed: u64) -> LogRecord {
    let mut a = common_attrs(&e.common, ctx);
    let end = clock.to_unix_ns(e.common.ts_boot_ns);
    a.push(kv_int(attr::PROCESS_EXIT_CODE, i64::from(e.exit_code)));
    a.push(kv_str(attr::PROCESS_EXIT_TIME, rfc3339(end)));
    if e.start_boot_ns > 0 {
        a.push(kv_str(
            attr::PROCESS_CREATION_TIME,
            rfc3339(clock.to_unix_ns(e.start_boot_ns)),
        ));
        let secs = e.common.ts_boot_ns.saturating_sub(e.start_boot_ns) as f64 / 1e9;
        a.push(kv_f64(attr::TAPIO_PROCESS_DURATION, secs));
    }
    if let Some(info) = &ctx.info {
        a.push(kv_str(
            attr::PROCESS_EXECUTABLE_PATH,
            info.executable_path.clone(),
        ));
        a.push(kv_str(
            attr::PROCESS_COMMAND_LINE,
            info.command_line.clone(),
        ));
    }
    // A crash or a kill is worth a look; a clean exit is not.
    let (severity, body) = if e.signal != 0 {
        a.push(kv_str(
            attr::TAPIO_PROCESS_EXIT_SIGNAL,
            signal_name(e.signal),
        ));
        if e.core_dumped {
            a.push(kv_bool(attr::TAPIO_PROCESS_CORE_DUMPED, true));
        }
        (
            SeverityNumber::Warn,
            format!("{} killed by {}", e.common.comm, signal_name(e.signal)),
        )
    } else {
        (
            SeverityNumber::Info,
            format!("{} exited with code {}", e.common.comm, e.exit_code),
        )
    };
    record(event::PROCESS_EXIT, severity, end, observed, body, a)
}

pub fn process_fork(e: &Fork, ctx: &ProcessContext, clock: &WallClock, observed: u64) -> LogRecord {
    let mut a = common_attrs(&e.common, ctx);
    a.push(kv_int(
        attr::TAPIO_PROCESS_CHILD_PID,
        i64::from(e.child_pid),
    ));
    record(
        event::PROCESS_FORK,
        SeverityNumber::Info,
        clock.to_unix_ns(e.common.ts_boot_ns),
        observed,
        format!("{} forked {}", e.common.comm, e.child_pid),
        a,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::ProcessInfo;
    use crate::probes::process::fixtures;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn attr_of<'a>(r: &'a LogRecord, k: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn exec_record_has_design_attributes() {
        let bytes = fixtures::exec_bytes(b"/bin/sh\0-c\0exit 7\0", 0);
        let ProcessEvent::Exec(e) = decode(&bytes).unwrap() else {
            panic!()
        };
        let clock = WallClock::with_offset(1_000_000_000_000);
        let ctx = ProcessContext {
            owner: Some("root".into()),
            workload: crate::enrich::cgroup::from_names(&e.cgroup_leaf, &e.cgroup_parent),
            info: None,
        };
        let r = process_exec(&e, "/bin/sh", &ctx, &clock, 42);
        assert_eq!(r.event_name, "process.exec");
        assert_eq!(r.time_unix_nano, 1_005_000_000_000);
        assert_eq!(r.observed_time_unix_nano, 42);
        assert_eq!(r.severity_number, SeverityNumber::Info as i32);
        assert_eq!(attr_of(&r, "process.pid"), Some(&Value::IntValue(1234)));
        assert_eq!(attr_of(&r, "process.parent_pid"), Some(&Value::IntValue(1)));
        assert_eq!(
            attr_of(&r, "process.executable.path"),
            Some(&Value::StringValue("/bin/sh".into()))
        );
        assert_eq!(
            attr_of(&r, "process.command_line"),
            Some(&Value::StringValue("/bin/sh -c exit 7".into()))
        );
        assert_eq!(
            attr_of(&r, "process.owner"),
            Some(&Value::StringValue("root".into()))
        );
        assert_eq!(
            attr_of(&r, "container.id"),
            Some(&Value::StringValue("b".repeat(64)))
        );
        assert_eq!(attr_of(&r, "k8s.pod.uid"), None);
        assert_eq!(attr_of(&r, "tapio.truncated"), None);
    }

    #[test]
    fn exit_record_carries_code_lifetime_and_severity() {
        let ProcessEvent::Exit(e) = decode(&fixtures::exit_bytes(7, 0)).unwrap() else {
            panic!()
        };
        let clock = WallClock::with_offset(0);
        let ctx = ProcessContext {
            info: Some(ProcessInfo {
                executable_path: "/bin/sh".into(),
                command_line: "sh -c exit 7".into(),
            }),
            ..Default::default()
        };
        let r = process_exit(&e, &ctx, &clock, 0);
        assert_eq!(r.event_name, "process.exit");
        assert_eq!(attr_of(&r, "process.exit.code"), Some(&Value::IntValue(7)));
        assert_eq!(
            attr_of(&r, "tapio.process.duration"),
            Some(&Value::DoubleValue(1.0))
        );
        assert_eq!(
            attr_of(&r, "process.command_line"),
            Some(&Value::StringValue("sh -c exit 7".into()))
        );
        assert_eq!(r.severity_number, SeverityNumber::Info as i32);

        let ProcessEvent::Exit(k) = decode(&fixtures::exit_bytes(0, 9)).unwrap() else {
            panic!()
        };
        let r = process_exit(&k, &ProcessContext::default(), &clock, 0);
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(
            attr_of(&r, "tapio.process.exit.signal"),
            Some(&Value::StringValue("SIGKILL".into()))
        );
    }

    #[test]
    fn fork_record_names_the_child() {
        let ProcessEvent::Fork(f) = decode(&fixtures::fork_bytes()).unwrap() else {
            panic!()
        };
        let r = process_fork(
            &f,
            &ProcessContext::default(),
            &WallClock::with_offset(0),
            0,
        );
        assert_eq!(r.event_name, "process.fork");
        assert_eq!(
            attr_of(&r, "tapio.process.child_pid"),
            Some(&Value::IntValue(1300))
        );
    }
}
