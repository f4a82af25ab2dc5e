//! The opentelemetry-proto mapping of security records that [`super::otlp`]
//! replaced, kept to compare with (the fidelity tests) and to measure
//! against.

use super::{capability_name, capability_names, CredChange, Extra, Kind, SecEvent};
use crate::clock::WallClock;
use crate::otel::{
    kv_bool, kv_int, kv_str,
    names::{attr, event},
};
use crate::probes::legacy::{common_attrs, record, ProcessContext};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

pub fn credentials(
    c: &CredChange,
    ctx: &ProcessContext,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut a = common_attrs(&c.common, ctx);
    if !c.syscall.is_empty() {
        a.push(kv_str(attr::TAPIO_SECURITY_SYSCALL, c.syscall.clone()));
    }
    a.push(kv_str(
        attr::TAPIO_SECURITY_CREDENTIALS_HOOK,
        if c.commit_creds {
            "commit_creds"
        } else {
            "syscall"
        },
    ));
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
        a.push(kv_int(k, i64::from(v)));
    }
    let gained = capability_names(c.gained());
    if !gained.is_empty() {
        a.push(kv_str(
            attr::TAPIO_SECURITY_CAPABILITIES_GAINED,
            gained.join(","),
        ));
    }
    let lost = capability_names(c.lost());
    if !lost.is_empty() {
        a.push(kv_str(
            attr::TAPIO_SECURITY_CAPABILITIES_LOST,
            lost.join(","),
        ));
    }
    let sev = if c.suspicious() {
        SeverityNumber::Warn
    } else {
        SeverityNumber::Info
    };
    let mut body = format!(
        "{} ({}) {}: uid {}→{} euid {}→{} gid {}→{}",
        c.common.comm,
        c.common.pid,
        if c.syscall.is_empty() {
            "commit_creds"
        } else {
            &c.syscall
        },
        c.old.uid,
        c.new.uid,
        c.old.euid,
        c.new.euid,
        c.old.gid,
        c.new.gid
    );
    if !gained.is_empty() {
        body.push_str(&format!(", gained {}", gained.join(",")));
    }
    record(
        event::SECURITY_CREDENTIALS_CHANGE,
        sev,
        clock.to_unix_ns(c.common.ts_boot_ns),
        observed,
        body,
        a,
    )
}

pub fn ptrace_request_name(r: u64) -> String {
    match r {
        4 => "PTRACE_POKETEXT".into(),
        5 => "PTRACE_POKEDATA".into(),
        6 => "PTRACE_POKEUSER".into(),
        13 => "PTRACE_SETREGS".into(),
        15 => "PTRACE_SETFPREGS".into(),
        16 => "PTRACE_ATTACH".into(),
        0x4205 => "PTRACE_SETREGSET".into(),
        0x4206 => "PTRACE_SEIZE".into(),
        n => format!("PTRACE_{n}"),
    }
}

pub fn prot_text(prot: u64) -> String {
    let mut s = String::new();
    s.push(if prot & 1 != 0 { 'r' } else { '-' });
    s.push(if prot & 2 != 0 { 'w' } else { '-' });
    s.push(if prot & 4 != 0 { 'x' } else { '-' });
    s
}

/// errno name for the common failures of the hooked syscalls.
pub fn errno_name(ret: i64) -> String {
    match -ret {
        1 => "EPERM".into(),
        2 => "ENOENT".into(),
        3 => "ESRCH".into(),
        13 => "EACCES".into(),
        14 => "EFAULT".into(),
        16 => "EBUSY".into(),
        17 => "EEXIST".into(),
        22 => "EINVAL".into(),
        38 => "ENOSYS".into(),
        n => format!("E{n}"),
    }
}

fn bpf_prog_type_name(t: u64) -> String {
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
    NAMES
        .get(t as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| t.to_string())
}

pub fn event(
    e: &SecEvent,
    extra: &Extra,
    ctx: &ProcessContext,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut a = common_attrs(&e.common, ctx);
    if !e.syscall.is_empty() {
        a.push(kv_str(attr::TAPIO_SECURITY_SYSCALL, e.syscall.clone()));
    }
    let failed = e.ret < 0 && e.ret >= -4095;
    let who = format!("{} ({})", e.common.comm, e.common.pid);
    let target = |a: &mut Vec<_>| {
        a.push(kv_int(
            attr::TAPIO_SECURITY_TARGET_PID,
            i64::from(e.target_pid),
        ));
        if let Some(x) = &extra.target_exe {
            a.push(kv_str(
                attr::TAPIO_SECURITY_TARGET_EXECUTABLE_PATH,
                x.clone(),
            ));
        }
        if let Some(x) = &extra.target_comm {
            a.push(kv_str(
                attr::TAPIO_SECURITY_TARGET_EXECUTABLE_NAME,
                x.clone(),
            ));
        }
    };
    let target_name = extra.target_comm.clone().unwrap_or_else(|| "?".to_string());
    let (name, sev, body) = match &e.kind {
        Kind::Capability { cap, granted } => {
            a.push(kv_str(
                attr::TAPIO_SECURITY_CAPABILITY,
                capability_name(*cap),
            ));
            a.push(kv_bool(attr::TAPIO_SECURITY_CAPABILITY_GRANTED, *granted));
            let verdict = if *granted { "granted" } else { "denied" };
            (
                event::SECURITY_CAPABILITY_USE,
                SeverityNumber::Info,
                format!("{who} used {} ({verdict})", capability_name(*cap)),
            )
        }
        Kind::Ptrace { request } => {
            target(&mut a);
            a.push(kv_str(
                attr::TAPIO_SECURITY_PTRACE_REQUEST,
                ptrace_request_name(*request),
            ));
            (
                event::SECURITY_PTRACE,
                SeverityNumber::Warn,
                format!(
                    "{who} {} {target_name} ({})",
                    ptrace_request_name(*request),
                    e.target_pid
                ),
            )
        }
        Kind::VmWritev => {
            target(&mut a);
            (
                event::SECURITY_PROCESS_VM_WRITEV,
                SeverityNumber::Warn,
                format!(
                    "{who} wrote into the memory of {target_name} ({})",
                    e.target_pid
                ),
            )
        }
        Kind::MemfdExec { named_memfd } => {
            a.push(kv_str(attr::FILE_NAME, e.name.clone()));
            a.push(kv_str(attr::FILE_INODE, e.ino.to_string()));
            if let Some(x) = &extra.exe {
                a.push(kv_str(attr::PROCESS_EXECUTABLE_PATH, x.clone()));
            }
            let what = if *named_memfd {
                "a memfd"
            } else {
                "an unlinked tmpfs file"
            };
            (
                event::SECURITY_MEMFD_EXEC,
                SeverityNumber::Warn,
                format!("{who} executed {what} ({})", e.name),
            )
        }
        Kind::MemoryWx {
            addr,
            len,
            prot,
            mmap_flags: _,
        } => {
            a.push(kv_int(attr::TAPIO_SECURITY_MEMORY_ADDRESS, int(*addr)));
            a.push(kv_int(attr::TAPIO_SECURITY_MEMORY_LENGTH, int(*len)));
            a.push(kv_str(
                attr::TAPIO_SECURITY_MEMORY_PROTECTION,
                prot_text(*prot),
            ));
            (
                event::SECURITY_MEMORY_WX,
                SeverityNumber::Warn,
                format!(
                    "{who} {} {len} bytes at {addr:#x} {}",
                    e.syscall,
                    prot_text(*prot)
                ),
            )
        }
        Kind::ModuleLoad => {
            if !e.name.is_empty() {
                a.push(kv_str(attr::TAPIO_SECURITY_MODULE_NAME, e.name.clone()));
            }
            (
                event::SECURITY_MODULE_LOAD,
                SeverityNumber::Warn,
                format!("{who} loaded kernel module {}", e.name),
            )
        }
        Kind::ModuleRequest { wait } => {
            a.push(kv_str(attr::TAPIO_SECURITY_MODULE_NAME, e.name.clone()));
            a.push(kv_bool(attr::TAPIO_SECURITY_MODULE_WAIT, *wait));
            // Unprivileged processes making the kernel load rarely used
            // modules (socket families) is a known exploit path.
            let sev = if e.common.uid == 0 {
                SeverityNumber::Info
            } else {
                SeverityNumber::Warn
            };
            (
                event::SECURITY_MODULE_REQUEST,
                sev,
                format!("{who} made the kernel request module {}", e.name),
            )
        }
        Kind::BpfLoad {
            prog_type,
            insn_count,
        } => {
            a.push(kv_str(
                attr::TAPIO_SECURITY_BPF_PROG_TYPE,
                bpf_prog_type_name(*prog_type),
            ));
            a.push(kv_str(attr::TAPIO_SECURITY_BPF_PROG_NAME, e.name.clone()));
            a.push(kv_int(
                attr::TAPIO_SECURITY_BPF_INSN_COUNT,
                int(*insn_count),
            ));
            (
                event::SECURITY_BPF_LOAD,
                SeverityNumber::Info,
                format!(
                    "{who} loaded BPF program {:?} ({})",
                    e.name,
                    bpf_prog_type_name(*prog_type)
                ),
            )
        }
        Kind::File {
            op,
            writes_suppressed,
            rename_target,
            mode,
            owner,
            ..
        } => {
            let path = extra.file_path.clone().unwrap_or_else(|| e.name.clone());
            a.push(kv_str(attr::FILE_PATH, path.clone()));
            a.push(kv_str(attr::TAPIO_SECURITY_FILE_OPERATION, op.name()));
            if let Some(w) = &extra.watch_path {
                a.push(kv_str(attr::TAPIO_SECURITY_WATCH_PATH, w.clone()));
            }
            if e.ino != 0 {
                a.push(kv_str(attr::FILE_INODE, e.ino.to_string()));
            }
            if *writes_suppressed > 0 {
                a.push(kv_int(
                    attr::TAPIO_SECURITY_WRITES_SUPPRESSED,
                    int(*writes_suppressed),
                ));
            }
            if *rename_target {
                a.push(kv_bool(attr::TAPIO_SECURITY_RENAME_TARGET, true));
            }
            if let Some(m) = mode {
                a.push(kv_str(attr::TAPIO_SECURITY_FILE_MODE, format!("{m:o}")));
            }
            if let Some((u, g)) = owner {
                a.push(kv_int(attr::TAPIO_SECURITY_FILE_UID, i64::from(*u as i32)));
                a.push(kv_int(attr::TAPIO_SECURITY_FILE_GID, i64::from(*g as i32)));
            }
            (
                event::SECURITY_FILE_CHANGE,
                SeverityNumber::Warn,
                format!("{who} {} {path}", op.name()),
            )
        }
    };
    if e.name_truncated {
        a.push(kv_bool(attr::TAPIO_TRUNCATED, true));
    }
    if failed {
        a.push(kv_str(attr::ERROR_TYPE, errno_name(e.ret)));
    }
    record(
        name,
        sev,
        clock.to_unix_ns(e.common.ts_boot_ns),
        observed,
        body,
        a,
    )
}
