//! Security records → `security.*` log records, written with the direct
//! writers (protobuf or OTLP/JSON from the same calls). The one place these
//! records' names and shapes are decided.

use super::{Capabilities, Capability, CredChange, Extra, Kind, SecEvent};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use crate::probes::process::{otlp::context_attrs, Common};
use std::fmt;

fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// The process attributes every security record starts with.
fn common_attrs(w: &mut impl RecordWriter, c: &Common, ctx: &Context<'_>) {
    w.int(attr::PROCESS_PID, i64::from(c.pid));
    w.int(attr::PROCESS_PARENT_PID, i64::from(c.ppid));
    w.int(attr::THREAD_ID, i64::from(c.tid));
    w.str(attr::PROCESS_EXECUTABLE_NAME, &c.comm);
    w.int(attr::PROCESS_USER_ID, i64::from(c.uid));
    w.int(attr::TAPIO_CGROUP_ID, c.cgroup_id as i64);
    context_attrs(w, ctx);
}

/// `security.credentials.change`: WARN when it gains root or capabilities
/// without having been root.
pub fn credentials(
    enc: &mut impl Encode,
    c: &CredChange,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let severity = if c.suspicious() {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut w = enc.log(clock.to_unix_ns(c.common.ts_boot_ns), severity);
    let (gained, lost) = (c.gained(), c.lost());
    let via = if c.syscall.is_empty() {
        "commit_creds"
    } else {
        &c.syscall
    };
    w.body(format_args!(
        "{} ({}) {via}: uid {}→{} euid {}→{} gid {}→{}{}",
        c.common.comm,
        c.common.pid,
        c.old.uid,
        c.new.uid,
        c.old.euid,
        c.new.euid,
        c.old.gid,
        c.new.gid,
        Gained(gained)
    ));
    common_attrs(&mut w, &c.common, ctx);
    if !c.syscall.is_empty() {
        w.str(attr::TAPIO_SECURITY_SYSCALL, &c.syscall);
    }
    w.str(
        attr::TAPIO_SECURITY_CREDENTIALS_HOOK,
        if c.commit_creds {
            "commit_creds"
        } else {
            "syscall"
        },
    );
    for (k, v) in [
        (attr::TAPIO_SECURITY_OLD_UID, c.old.uid),
        (attr::TAPIO_SECURITY_NEW_UID, c.new.uid),
        (attr::TAPIO_SECURITY_OLD_EUID, c.old.euid),
        (attr::TAPIO_SECURITY_NEW_EUID, c.new.euid),
        (attr::TAPIO_SECURITY_OLD_SUID, c.old.suid),
        (attr::TAPIO_SECURITY_NEW_SUID, c.new.suid),
        (attr::TAPIO_SECURITY_OLD_FSUID, c.old.fsuid),
        (attr::TAPIO_SECURITY_NEW_FSUID, c.new.fsuid),
        (attr::TAPIO_SECURITY_OLD_GID, c.old.gid),
        (attr::TAPIO_SECURITY_NEW_GID, c.new.gid),
        (attr::TAPIO_SECURITY_OLD_EGID, c.old.egid),
        (attr::TAPIO_SECURITY_NEW_EGID, c.new.egid),
    ] {
        w.int(k, i64::from(v));
    }
    if gained != 0 {
        w.display(
            attr::TAPIO_SECURITY_CAPABILITIES_GAINED,
            Capabilities(gained),
        );
    }
    if lost != 0 {
        w.display(attr::TAPIO_SECURITY_CAPABILITIES_LOST, Capabilities(lost));
    }
    w.finish_log(observed, event::SECURITY_CREDENTIALS_CHANGE);
}

/// The body's `, gained CAP_…` suffix; nothing when none were gained.
struct Gained(u64);

impl fmt::Display for Gained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return Ok(());
        }
        write!(f, ", gained {}", Capabilities(self.0))
    }
}

/// A ptrace request's name (`PTRACE_<n>` for those we do not name).
pub struct PtraceRequest(pub u64);

impl fmt::Display for PtraceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            4 => "PTRACE_POKETEXT",
            5 => "PTRACE_POKEDATA",
            6 => "PTRACE_POKEUSER",
            13 => "PTRACE_SETREGS",
            15 => "PTRACE_SETFPREGS",
            16 => "PTRACE_ATTACH",
            0x4205 => "PTRACE_SETREGSET",
            0x4206 => "PTRACE_SEIZE",
            n => return write!(f, "PTRACE_{n}"),
        };
        f.write_str(name)
    }
}

/// Memory protection as `rwx` text.
pub struct Prot(pub u64);

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        let bit = |b: u64, c: &'static str| if p & b != 0 { c } else { "-" };
        f.write_str(bit(1, "r"))?;
        f.write_str(bit(2, "w"))?;
        f.write_str(bit(4, "x"))
    }
}

/// errno name for the common failures of the hooked syscalls, from a
/// negative return value.
pub struct Errno(pub i64);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match -self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            38 => "ENOSYS",
            n => return write!(f, "E{n}"),
        };
        f.write_str(name)
    }
}

/// A BPF program type's name (its number for types newer than this
/// table).
pub struct BpfProgType(pub u64);

impl fmt::Display for BpfProgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: &[&str] = &[
            "unspec",
            "socket_filter",
            "kprobe",
            "sched_cls",
            "sched_act",
            "tracepoint",
            "xdp",
            "perf_event",
            "cgroup_skb",
            "cgroup_sock",
            "lwt_in",
            "lwt_out",
            "lwt_xmit",
            "sock_ops",
            "sk_skb",
            "cgroup_device",
            "sk_msg",
            "raw_tracepoint",
            "cgroup_sock_addr",
            "lwt_seg6local",
            "lirc_mode2",
            "sk_reuseport",
            "flow_dissector",
            "cgroup_sysctl",
            "raw_tracepoint_writable",
            "cgroup_sockopt",
            "tracing",
            "struct_ops",
            "ext",
            "lsm",
            "sk_lookup",
            "syscall",
            "netfilter",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The process a ptrace or process_vm_writev was aimed at.
fn target_attrs(w: &mut impl RecordWriter, e: &SecEvent, extra: &Extra) {
    w.int(attr::TAPIO_SECURITY_TARGET_PID, i64::from(e.target_pid));
    if let Some(x) = &extra.target_exe {
        w.str(attr::TAPIO_SECURITY_TARGET_EXECUTABLE_PATH, x);
    }
    if let Some(x) = &extra.target_comm {
        w.str(attr::TAPIO_SECURITY_TARGET_EXECUTABLE_NAME, x);
    }
}

/// Every other security record (`security.capability.use`,
/// `security.ptrace`, `security.file.change`, …); `extra` is what the
/// handler looked up in /proc.
pub fn event(
    enc: &mut impl Encode,
    e: &SecEvent,
    extra: &Extra,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let (name, severity) = match &e.kind {
        Kind::Capability { .. } => (event::SECURITY_CAPABILITY_USE, Severity::Info),
        Kind::Ptrace { .. } => (event::SECURITY_PTRACE, Severity::Warn),
        Kind::VmWritev => (event::SECURITY_PROCESS_VM_WRITEV, Severity::Warn),
        Kind::MemfdExec { .. } => (event::SECURITY_MEMFD_EXEC, Severity::Warn),
        Kind::MemoryWx { .. } => (event::SECURITY_MEMORY_WX, Severity::Warn),
        Kind::ModuleLoad => (event::SECURITY_MODULE_LOAD, Severity::Warn),
        // Unprivileged processes making the kernel load rarely used
        // modules (socket families) is a known exploit path.
        Kind::ModuleRequest { .. } if e.common.uid == 0 => {
            (event::SECURITY_MODULE_REQUEST, Severity::Info)
        }
        Kind::ModuleRequest { .. } => (event::SECURITY_MODULE_REQUEST, Severity::Warn),
        Kind::BpfLoad { .. } => (event::SECURITY_BPF_LOAD, Severity::Info),
        Kind::File { .. } => (event::SECURITY_FILE_CHANGE, Severity::Warn),
    };
    let mut w = enc.log(clock.to_unix_ns(e.common.ts_boot_ns), severity);
    let (comm, pid) = (&e.common.comm, e.common.pid);
    let target_name = extra.target_comm.as_deref().unwrap_or("?");
    let path = extra.file_path.as_deref().unwrap_or(&e.name);
    match &e.kind {
        Kind::Capability { cap, granted } => w.body(format_args!(
            "{comm} ({pid}) used {} ({})",
            Capability(*cap),
            if *granted { "granted" } else { "denied" }
        )),
        Kind::Ptrace { request } => w.body(format_args!(
            "{comm} ({pid}) {} {target_name} ({})",
            PtraceRequest(*request),
            e.target_pid
        )),
        Kind::VmWritev => w.body(format_args!(
            "{comm} ({pid}) wrote into the memory of {target_name} ({})",
            e.target_pid
        )),
        Kind::MemfdExec { named_memfd } => w.body(format_args!(
            "{comm} ({pid}) executed {} ({})",
            if *named_memfd {
                "a memfd"
            } else {
                "an unlinked tmpfs file"
            },
            e.name
        )),
        Kind::MemoryWx {
            addr, len, prot, ..
        } => w.body(format_args!(
            "{comm} ({pid}) {} {len} bytes at {addr:#x} {}",
            e.syscall,
            Prot(*prot)
        )),
        Kind::ModuleLoad => w.body(format_args!(
            "{comm} ({pid}) loaded kernel module {}",
            e.name
        )),
        Kind::ModuleRequest { .. } => w.body(format_args!(
            "{comm} ({pid}) made the kernel request module {}",
            e.name
        )),
        Kind::BpfLoad { prog_type, .. } => w.body(format_args!(
            "{comm} ({pid}) loaded BPF program {:?} ({})",
            e.name,
            BpfProgType(*prog_type)
        )),
        Kind::File { op, .. } => w.body(format_args!("{comm} ({pid}) {} {path}", op.name())),
    }
    common_attrs(&mut w, &e.common, ctx);
    if !e.syscall.is_empty() {
        w.str(attr::TAPIO_SECURITY_SYSCALL, &e.syscall);
    }
    match &e.kind {
        Kind::Capability { cap, granted } => {
            w.display(attr::TAPIO_SECURITY_CAPABILITY, Capability(*cap));
            w.bool(attr::TAPIO_SECURITY_CAPABILITY_GRANTED, *granted);
        }
        Kind::Ptrace { request } => {
            target_attrs(&mut w, e, extra);
            w.display(attr::TAPIO_SECURITY_PTRACE_REQUEST, PtraceRequest(*request));
        }
        Kind::VmWritev => target_attrs(&mut w, e, extra),
        Kind::MemfdExec { .. } => {
            w.str(attr::FILE_NAME, &e.name);
            w.display(attr::FILE_INODE, e.ino);
            if let Some(x) = &extra.exe {
                w.str(attr::PROCESS_EXECUTABLE_PATH, x);
            }
        }
        Kind::MemoryWx {
            addr, len, prot, ..
        } => {
            w.int(attr::TAPIO_SECURITY_MEMORY_ADDRESS, int(*addr));
            w.int(attr::TAPIO_SECURITY_MEMORY_LENGTH, int(*len));
            w.display(attr::TAPIO_SECURITY_MEMORY_PROTECTION, Prot(*prot));
        }
        Kind::ModuleLoad => {
            if !e.name.is_empty() {
                w.str(attr::TAPIO_SECURITY_MODULE_NAME, &e.name);
            }
        }
        Kind::ModuleRequest { wait } => {
            w.str(attr::TAPIO_SECURITY_MODULE_NAME, &e.name);
            w.bool(attr::TAPIO_SECURITY_MODULE_WAIT, *wait);
        }
        Kind::BpfLoad {
            prog_type,
            insn_count,
        } => {
            w.display(attr::TAPIO_SECURITY_BPF_PROG_TYPE, BpfProgType(*prog_type));
            w.str(attr::TAPIO_SECURITY_BPF_PROG_NAME, &e.name);
            w.int(attr::TAPIO_SECURITY_BPF_INSN_COUNT, int(*insn_count));
        }
        Kind::File {
            op,
            writes_suppressed,
            rename_target,
            mode,
            owner,
            ..
        } => {
            w.str(attr::FILE_PATH, path);
            w.str(attr::TAPIO_SECURITY_FILE_OPERATION, op.name());
            if let Some(x) = &extra.watch_path {
                w.str(attr::TAPIO_SECURITY_WATCH_PATH, x);
            }
            if e.ino != 0 {
                w.display(attr::FILE_INODE, e.ino);
            }
            if *writes_suppressed > 0 {
                w.int(
                    attr::TAPIO_SECURITY_WRITES_SUPPRESSED,
                    int(*writes_suppressed),
                );
            }
            if *rename_target {
                w.bool(attr::TAPIO_SECURITY_RENAME_TARGET, true);
            }
            if let Some(m) = mode {
                w.display(attr::TAPIO_SECURITY_FILE_MODE, format_args!("{m:o}"));
            }
            if let Some((u, g)) = owner {
                w.int(attr::TAPIO_SECURITY_FILE_UID, i64::from(*u as i32));
                w.int(attr::TAPIO_SECURITY_FILE_GID, i64::from(*g as i32));
            }
        }
    }
    if e.name_truncated {
        w.bool(attr::TAPIO_TRUNCATED, true);
    }
    if e.ret < 0 && e.ret >= -4095 {
        w.display(attr::ERROR_TYPE, Errno(e.ret));
    }
    w.finish_log(observed, name);
}

/// Security records of every kind and variant, with and without what
/// /proc and the enricher add: the fixtures the equality tests here and
/// the JSON test (`probes/otlp_json.rs`) share.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::super::{decode, fixtures::*, CredChange, Extra, SecEvent, SecurityEvent};
    use tapio_shared::{tapio_sec_flags as flags, tapio_sec_op as op};

    pub fn credentials() -> Vec<CredChange> {
        let mut out = Vec::new();
        for (old, new, old_caps, new_caps) in [
            (1000, 0, 0, 1 << 21),
            (0, 65534, 0x1ff_ffff_ffff, 0),
            (1000, 1000, 0, 1 << 63 | 1),
            (1000, 1000, 0, 0),
        ] {
            let SecurityEvent::Cred(c) = decode(&cred_bytes(old, new, old_caps, new_caps)).unwrap()
            else {
                panic!()
            };
            let mut commit = c.clone();
            commit.syscall = "".into();
            commit.commit_creds = true;
            out.extend([c, commit]);
        }
        out
    }

    pub fn events() -> Vec<SecEvent> {
        let all = flags::TAPIO_SEC_NAME_TRUNCATED
            | flags::TAPIO_SEC_BY_FD
            | flags::TAPIO_SEC_RENAME_TARGET
            | flags::TAPIO_SEC_MEMFD_NAMED;
        let cases: &[(u32, &[u8], [u64; 4])] = &[
            (op::TAPIO_SEC_CAPABILITY, b"", [21, 0, 0, 0]),
            (op::TAPIO_SEC_CAPABILITY, b"", [99, 0, 0, 0]),
            (op::TAPIO_SEC_PTRACE, b"", [16, 0, 0, 0]),
            (op::TAPIO_SEC_PTRACE, b"", [0x4205, 0, 0, 0]),
            (op::TAPIO_SEC_PTRACE, b"", [77, 0, 0, 0]),
            (op::TAPIO_SEC_VM_WRITEV, b"", [0; 4]),
            (op::TAPIO_SEC_MEMFD_EXEC, b"memfd:x\xc3\xbc", [0; 4]),
            (
                op::TAPIO_SEC_MEMORY_WX,
                b"",
                [0x7f00_0000_1000, 4096, 7, 0x22],
            ),
            (op::TAPIO_SEC_MEMORY_WX, b"", [u64::MAX, 1 << 20, 6, 0]),
            (op::TAPIO_SEC_MODULE_LOAD, b"", [0; 4]),
            (op::TAPIO_SEC_MODULE_LOAD, b"nf_tables", [0; 4]),
            (op::TAPIO_SEC_MODULE_REQUEST, b"net-pf-38", [1, 0, 0, 0]),
            (op::TAPIO_SEC_MODULE_REQUEST, b"fs-xfs", [0; 4]),
            (op::TAPIO_SEC_BPF_LOAD, b"my \"prog\"", [6, 12, 0, 0]),
            (op::TAPIO_SEC_BPF_LOAD, b"", [99, u64::MAX, 0, 0]),
            (op::TAPIO_SEC_FILE_WRITE, b"shadow", [3, 5, 0, 0]),
            (op::TAPIO_SEC_FILE_WRITE, b"passwd", [3, 0, 2, 0]),
            (op::TAPIO_SEC_FILE_TRUNCATE, b"/etc/hosts", [0; 4]),
            (op::TAPIO_SEC_FILE_RENAME, b"x.tmp", [0, 0, 1, 0]),
            (op::TAPIO_SEC_FILE_UNLINK, b"sudoers", [0; 4]),
            (op::TAPIO_SEC_FILE_CHMOD, b"/etc/shadow", [0, 0o4755, 0, 0]),
            (
                op::TAPIO_SEC_FILE_CHOWN,
                b"/etc/shadow",
                [0, 1000, 0xffff_ffff, 0],
            ),
        ];
        let mut out = Vec::new();
        for &(o, name, args) in cases {
            for (f, ret) in [(0, 0), (all, -1), (0, -13), (0, -200), (all, -5000)] {
                let SecurityEvent::Event(mut e) =
                    decode(&event_bytes(o, f, name, args, ret)).unwrap()
                else {
                    panic!()
                };
                if ret == -13 {
                    e.ino = 1234;
                    e.common.uid = 1000;
                    e.syscall = "".into();
                }
                out.push(e);
            }
        }
        out
    }

    /// Nothing found, and everything found.
    pub fn extras() -> [Extra; 2] {
        [
            Extra::default(),
            Extra {
                target_exe: Some("/usr/bin/sleep".into()),
                target_comm: Some("sleep".into()),
                exe: Some("/memfd:x (deleted)".into()),
                file_path: Some("/etc/sudoers.d/x".into()),
                watch_path: Some("/etc/sudoers.d".into()),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    //! The direct writer against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: equal bytes for every
    //! record kind; and what the records say.
    use super::super::legacy;
    use super::fixtures::{credentials as creds, events, extras};
    use super::*;
    use crate::enrich::cgroup::{self, Workload};
    use crate::otel::wire::{Encoder, RECORD_FIELD};
    use crate::probes::legacy::ProcessContext;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use prost::Message;

    fn same(enc: &Encoder, old: &LogRecord, what: &str) {
        let got = enc.record();
        // Field by field first: a difference names the field.
        let mut body = &got[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        assert_eq!(&LogRecord::decode(body).unwrap(), old, "{what}");
        let mut want = Vec::new();
        prost::encoding::message::encode(RECORD_FIELD, old, &mut want);
        assert_eq!(got, &want[..], "{what}");
    }

    fn contexts(wl: &Workload) -> [(Context<'_>, ProcessContext); 2] {
        [
            (Context::default(), ProcessContext::default()),
            (
                Context {
                    owner: Some("app"),
                    workload: Some(wl),
                    generation: 0,
                },
                ProcessContext {
                    owner: Some("app".into()),
                    workload: wl.clone(),
                    info: None,
                },
            ),
        ]
    }

    fn docker() -> Workload {
        cgroup::from_names(&format!("docker-{}.scope", "b".repeat(64)), "system.slice")
    }

    #[test]
    fn credentials_match_the_old_mapping() {
        let clock = WallClock::with_offset(3_000);
        let wl = docker();
        for c in creds() {
            for (ctx, old_ctx) in contexts(&wl) {
                let mut enc = Encoder::default();
                credentials(&mut enc, &c, &ctx, &clock, 9);
                let old = legacy::credentials(&c, &old_ctx, &clock, 9);
                same(&enc, &old, &format!("{c:?}"));
            }
        }
    }

    #[test]
    fn every_event_kind_matches_the_old_mapping() {
        let clock = WallClock::with_offset(3_000);
        let wl = docker();
        let mut kinds = std::collections::BTreeSet::new();
        for e in events() {
            for extra in extras() {
                for (ctx, old_ctx) in contexts(&wl) {
                    let mut enc = Encoder::default();
                    event(&mut enc, &e, &extra, &ctx, &clock, 9);
                    let old = legacy::event(&e, &extra, &old_ctx, &clock, 9);
                    kinds.insert(old.event_name.clone());
                    same(&enc, &old, &format!("{e:?} {extra:?}"));
                }
            }
        }
        // A kind left out of the fixtures would go untested.
        assert_eq!(kinds.len(), 9, "{kinds:?}");
    }

    fn written(write: impl FnOnce(&mut Encoder)) -> LogRecord {
        let mut enc = Encoder::default();
        write(&mut enc);
        let mut body = &enc.record()[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        LogRecord::decode(body).unwrap()
    }

    fn attr_of<'a>(r: &'a LogRecord, k: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    fn event_of(b: &[u8]) -> SecEvent {
        let super::super::SecurityEvent::Event(e) = super::super::decode(b).unwrap() else {
            panic!()
        };
        e
    }

    #[test]
    fn gaining_root_is_a_warning_with_old_and_new_ids() {
        use super::super::{decode, fixtures::cred_bytes, SecurityEvent};
        let SecurityEvent::Cred(c) = decode(&cred_bytes(1000, 0, 0, 1 << 21)).unwrap() else {
            panic!()
        };
        let clock = WallClock::with_offset(0);
        let r = written(|e| credentials(e, &c, &Context::default(), &clock, 0));
        assert_eq!(r.event_name, "security.credentials.change");
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            attr_of(&r, "tapio.security.old.euid"),
            Some(&Value::IntValue(1000))
        );
        assert_eq!(
            attr_of(&r, "tapio.security.new.euid"),
            Some(&Value::IntValue(0))
        );
        assert_eq!(
            attr_of(&r, "tapio.security.capabilities.gained"),
            Some(&Value::StringValue("CAP_SYS_ADMIN".into()))
        );
        assert_eq!(attr_of(&r, "process.pid"), Some(&Value::IntValue(1234)));
    }

    #[test]
    fn file_change_ptrace_and_memfd_records() {
        use super::super::fixtures::event_bytes;
        use tapio_shared::{tapio_sec_flags as flags, tapio_sec_op as op};
        let clock = WallClock::with_offset(0);
        let ctx = Context::default();
        let e = event_of(&event_bytes(
            op::TAPIO_SEC_FILE_CHMOD,
            0,
            b"/etc/shadow",
            [0, 0o600, 0, 0],
            0,
        ));
        let extra = Extra {
            file_path: Some("/etc/shadow".into()),
            watch_path: Some("/etc".into()),
            ..Default::default()
        };
        let r = written(|w| event(w, &e, &extra, &ctx, &clock, 0));
        assert_eq!(r.event_name, "security.file.change");
        assert_eq!(
            attr_of(&r, "tapio.security.file.operation"),
            Some(&Value::StringValue("chmod".into()))
        );
        assert_eq!(
            attr_of(&r, "tapio.security.file.mode"),
            Some(&Value::StringValue("600".into()))
        );
        let e = event_of(&event_bytes(
            op::TAPIO_SEC_PTRACE,
            0,
            b"",
            [16, 0, 0, 0],
            -1,
        ));
        let r = written(|w| event(w, &e, &Extra::default(), &ctx, &clock, 0));
        assert_eq!(r.event_name, "security.ptrace");
        assert_eq!(r.severity_text, "WARN");
        assert_eq!(
            attr_of(&r, "tapio.security.target.pid"),
            Some(&Value::IntValue(4321))
        );
        assert_eq!(
            attr_of(&r, "error.type"),
            Some(&Value::StringValue("EPERM".into()))
        );
        let e = event_of(&event_bytes(
            op::TAPIO_SEC_MEMFD_EXEC,
            flags::TAPIO_SEC_MEMFD_NAMED,
            b"memfd:x",
            [0; 4],
            0,
        ));
        let r = written(|w| event(w, &e, &Extra::default(), &ctx, &clock, 0));
        assert_eq!(r.event_name, "security.memfd.exec");
        assert_eq!(
            attr_of(&r, "file.name"),
            Some(&Value::StringValue("memfd:x".into()))
        );
    }
}
