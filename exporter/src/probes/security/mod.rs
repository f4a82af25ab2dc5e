//! The security probe: `ebpf/security.bpf.c` ↔ this module. Decodes
//! credential changes and the other security records, resolves the watched
//! paths of the config into the kernel's inode maps, and hands typed events
//! to [`otlp`], which writes them as log records.

use super::{cstr, process::Common, Attach, ProbeSpec, Variant};
use crate::enrich::Enricher;
use std::{
    borrow::Cow,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_sec_cred, tapio_sec_event,
    tapio_sec_flags as flags, tapio_sec_op as op,
};

#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

pub const NAME: &str = "security";
pub const MAP_CFG: &str = "tapio_sec_cfg";
pub const MAP_WATCH_INO: &str = "tapio_sec_watch_ino";
pub const MAP_WATCH_REL: &str = "tapio_sec_watch_rel";
pub const MAP_WATCH_DEVS: &str = "tapio_sec_watch_devs";
pub const MAP_WATCH_BITS: &str = "tapio_sec_watch_bits";
/// The dispatcher's handler by syscall number (enum tapio_sec_syscall).
pub const MAP_SYSCALLS: &str = "tapio_sec_syscalls";
/// Indexes of `tapio_sec_cfg` (enum in the C file).
pub const CFG_SELF_TGID: u32 = 0;
pub const CFG_FIM_DEPTH: u32 = 1;
pub const CFG_WRITE_WINDOW: u32 = 2;

pub const PROG_CRED_ENTER: &str = "tapio_sec_cred_enter";
pub const PROG_CRED_EXIT: &str = "tapio_sec_cred_exit";
pub const PROG_CRED_FORK: &str = "tapio_sec_cred_fork";
pub const PROG_CRED_SEEN_EXIT: &str = "tapio_sec_cred_seen_exit";
pub const PROG_CRED_ITER: &str = "tapio_sec_cred_iter";
pub const PROG_CRED_SEEN_EXEC: &str = "tapio_sec_cred_seen_exec";
pub const PROG_CAPABLE: &str = "tapio_sec_capable";
pub const PROG_CAPABLE_FEXIT: &str = "tapio_sec_capable_fexit";
pub const PROG_CAPABLE_KP: &str = "tapio_sec_capable_kp";
pub const PROG_CAPABLE_KRETP: &str = "tapio_sec_capable_kretp";
pub const PROG_COMMIT_CREDS: &str = "tapio_sec_commit_creds";
pub const PROG_COMMIT_CREDS_KP: &str = "tapio_sec_commit_creds_kp";
pub const PROG_MODULE_REQUEST: &str = "tapio_sec_module_request";
/// Every program that reports capability use (one per attach kind).
pub const CAPABILITY_PROGRAMS: &[&str] = &[
    PROG_CAPABLE,
    PROG_CAPABLE_FEXIT,
    PROG_CAPABLE_KP,
    PROG_CAPABLE_KRETP,
];
pub const PROG_PTRACE: &str = "tapio_sec_ptrace_enter";
pub const PROG_VM_WRITEV: &str = "tapio_sec_vm_writev_enter";
pub const PROG_MMAP: &str = "tapio_sec_mmap_enter";
pub const PROG_MPROTECT: &str = "tapio_sec_mprotect_enter";
pub const PROG_EXEC_BTF: &str = "tapio_sec_exec_btf";
pub const PROG_EXEC_TP: &str = "tapio_sec_exec_tp";
pub const PROG_EXIT_INJECT: &str = "tapio_sec_exit_inject";
pub const PROG_BPF: &str = "tapio_sec_bpf_enter";
pub const PROG_EXIT_BPF: &str = "tapio_sec_exit_bpf";
pub const PROG_INIT_MODULE: &str = "tapio_sec_init_module_enter";
pub const PROG_FINIT_MODULE: &str = "tapio_sec_finit_module_enter";
pub const PROG_MODULE_LOAD: &str = "tapio_sec_module_load";
pub const PROG_EXIT_MODULE: &str = "tapio_sec_exit_module";
pub const PROG_EXIT_FILE: &str = "tapio_sec_exit_file";
/// The dispatcher: every hooked syscall through one pair.
pub const PROG_SYS_ENTER: &str = "tapio_sec_sys_enter";
pub const PROG_SYS_EXIT: &str = "tapio_sec_sys_exit";
/// Programs of the file-integrity family (attached only with watch paths).
pub const FILE_PROGRAMS: &[&str] = &[
    "tapio_sec_write_enter",
    "tapio_sec_ftruncate_enter",
    "tapio_sec_fchmod_enter",
    "tapio_sec_fchown_enter",
    "tapio_sec_openat_enter",
    "tapio_sec_open_enter",
    "tapio_sec_unlink_enter",
    "tapio_sec_unlinkat_enter",
    "tapio_sec_chmod_enter",
    "tapio_sec_fchmodat_enter",
    "tapio_sec_chown_enter",
    "tapio_sec_fchownat_enter",
    "tapio_sec_truncate_enter",
    "tapio_sec_rename_enter",
    "tapio_sec_renameat_enter",
    PROG_EXIT_FILE,
];

const fn tp(name: &'static str) -> Attach {
    Attach::TracePoint("syscalls", name)
}
const fn opt(name: &'static str) -> Attach {
    Attach::OptionalTracePoint("syscalls", name)
}

/// Every variant attaches these; they differ in how syscalls are hooked
/// (`dispatch`: the tp_btf sys_enter/sys_exit pair, which hooks whatever
/// `configure` puts in its table; else one tracepoint per syscall), in how
/// credentials are seen (`syscall_creds`: the set*id/exec pairs;
/// `syscall_creds_seen`: their exits only, against each task's last seen
/// credentials; `commit_creds`: none of those, a commit_creds hook among the extras
/// sees every path), and in the exec and capability hooks.
///
/// The extras come first: a function hook the kernel refuses (fentry
/// here) fails the variant before any syscall hook is attached and taken
/// down again. Nothing reports Tapio's own BPF loads or capability checks
/// in the meantime: those programs are silent until `configure` has set
/// Tapio's pid, and the dispatcher's table is empty until then.
macro_rules! programs {
    (dispatch; $($extra:expr),* $(,)?) => {
        &[
            $($extra,)*
            (PROG_MODULE_LOAD, Attach::OptionalTracePoint("module", "module_load")),
            (PROG_MODULE_REQUEST, Attach::OptionalTracePoint("module", "module_request")),
            (PROG_SYS_EXIT, Attach::BtfTracePoint("sys_exit")),
            (PROG_SYS_ENTER, Attach::BtfTracePoint("sys_enter")),
        ]
    };
    (syscall_creds; $($extra:expr),* $(,)?) => {
        programs!(@all [
            (PROG_CRED_ENTER, tp("sys_enter_setuid")),
            (PROG_CRED_ENTER, tp("sys_enter_setgid")),
            (PROG_CRED_ENTER, tp("sys_enter_setreuid")),
            (PROG_CRED_ENTER, tp("sys_enter_setregid")),
            (PROG_CRED_ENTER, tp("sys_enter_setresuid")),
            (PROG_CRED_ENTER, tp("sys_enter_setresgid")),
            (PROG_CRED_ENTER, tp("sys_enter_setfsuid")),
            (PROG_CRED_ENTER, tp("sys_enter_setfsgid")),
            (PROG_CRED_ENTER, tp("sys_enter_execve")),
            (PROG_CRED_ENTER, tp("sys_enter_execveat")),
            (PROG_CRED_ENTER, tp("sys_enter_capset")),
            (PROG_CRED_ENTER, tp("sys_enter_unshare")),
            (PROG_CRED_ENTER, tp("sys_enter_setns")),
            (PROG_CRED_EXIT, tp("sys_exit_setuid")),
            (PROG_CRED_EXIT, tp("sys_exit_setgid")),
            (PROG_CRED_EXIT, tp("sys_exit_setreuid")),
            (PROG_CRED_EXIT, tp("sys_exit_setregid")),
            (PROG_CRED_EXIT, tp("sys_exit_setresuid")),
            (PROG_CRED_EXIT, tp("sys_exit_setresgid")),
            (PROG_CRED_EXIT, tp("sys_exit_setfsuid")),
            (PROG_CRED_EXIT, tp("sys_exit_setfsgid")),
            (PROG_CRED_EXIT, tp("sys_exit_execve")),
            (PROG_CRED_EXIT, tp("sys_exit_execveat")),
            (PROG_CRED_EXIT, tp("sys_exit_capset")),
            (PROG_CRED_EXIT, tp("sys_exit_unshare")),
            (PROG_CRED_EXIT, tp("sys_exit_setns")),
        ] $($extra),*)
    };
    // Credentials at the set*id/exec exits only, against what each task
    // was last seen with (security.bpf.c, "Credentials at the syscall
    // exits only"): births snapshot first, then the exits attach, then
    // the iterator snapshots every task alive, so no task falls between.
    (syscall_creds_seen; $($extra:expr),* $(,)?) => {
        programs!(@all [
            (PROG_CRED_FORK, Attach::BtfTracePoint("sched_process_fork")),
            (PROG_CRED_SEEN_EXEC, tp("sys_enter_execve")),
            (PROG_CRED_SEEN_EXEC, tp("sys_enter_execveat")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setuid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setgid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setreuid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setregid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setresuid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setresgid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setfsuid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setfsgid")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_execve")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_execveat")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_capset")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_unshare")),
            (PROG_CRED_SEEN_EXIT, tp("sys_exit_setns")),
            (PROG_CRED_ITER, Attach::Iter("task")),
        ] $($extra),*)
    };
    (commit_creds; $($extra:expr),* $(,)?) => {
        programs!(@all [] $($extra),*)
    };
    (@all [$($cred:expr),* $(,)?] $($extra:expr),*) => {
        &[
            $($extra,)*
            $($cred,)*
            (PROG_PTRACE, tp("sys_enter_ptrace")),
            (PROG_VM_WRITEV, tp("sys_enter_process_vm_writev")),
            (PROG_MMAP, tp("sys_enter_mmap")),
            (PROG_MPROTECT, tp("sys_enter_mprotect")),
            (PROG_MPROTECT, opt("sys_enter_pkey_mprotect")),
            (PROG_EXIT_INJECT, tp("sys_exit_ptrace")),
            (PROG_EXIT_INJECT, tp("sys_exit_process_vm_writev")),
            (PROG_EXIT_INJECT, tp("sys_exit_mmap")),
            (PROG_EXIT_INJECT, tp("sys_exit_mprotect")),
            (PROG_EXIT_INJECT, opt("sys_exit_pkey_mprotect")),
            // Absent on kernels without CONFIG_MODULES (nothing to see).
            (PROG_INIT_MODULE, opt("sys_enter_init_module")),
            (PROG_FINIT_MODULE, opt("sys_enter_finit_module")),
            (PROG_MODULE_LOAD, Attach::OptionalTracePoint("module", "module_load")),
            (PROG_MODULE_REQUEST, Attach::OptionalTracePoint("module", "module_request")),
            (PROG_EXIT_MODULE, opt("sys_exit_init_module")),
            (PROG_EXIT_MODULE, opt("sys_exit_finit_module")),
            ("tapio_sec_write_enter", tp("sys_enter_write")),
            ("tapio_sec_write_enter", tp("sys_enter_pwrite64")),
            ("tapio_sec_write_enter", tp("sys_enter_writev")),
            ("tapio_sec_write_enter", tp("sys_enter_pwritev")),
            ("tapio_sec_write_enter", opt("sys_enter_pwritev2")),
            ("tapio_sec_ftruncate_enter", tp("sys_enter_ftruncate")),
            ("tapio_sec_fchmod_enter", tp("sys_enter_fchmod")),
            ("tapio_sec_fchown_enter", tp("sys_enter_fchown")),
            ("tapio_sec_openat_enter", tp("sys_enter_openat")),
            ("tapio_sec_open_enter", opt("sys_enter_open")),
            ("tapio_sec_unlink_enter", opt("sys_enter_unlink")),
            ("tapio_sec_unlink_enter", opt("sys_enter_rmdir")),
            ("tapio_sec_unlinkat_enter", tp("sys_enter_unlinkat")),
            ("tapio_sec_chmod_enter", opt("sys_enter_chmod")),
            ("tapio_sec_fchmodat_enter", tp("sys_enter_fchmodat")),
            ("tapio_sec_fchmodat_enter", opt("sys_enter_fchmodat2")),
            ("tapio_sec_chown_enter", opt("sys_enter_chown")),
            ("tapio_sec_chown_enter", opt("sys_enter_lchown")),
            ("tapio_sec_fchownat_enter", tp("sys_enter_fchownat")),
            ("tapio_sec_truncate_enter", tp("sys_enter_truncate")),
            ("tapio_sec_rename_enter", opt("sys_enter_rename")),
            ("tapio_sec_renameat_enter", opt("sys_enter_renameat")),
            ("tapio_sec_renameat_enter", tp("sys_enter_renameat2")),
            // No exit for the write family: a write is reported as it
            // enters (see fd_op_enter in security.bpf.c).
            (PROG_EXIT_FILE, tp("sys_exit_ftruncate")),
            (PROG_EXIT_FILE, tp("sys_exit_fchmod")),
            (PROG_EXIT_FILE, tp("sys_exit_fchown")),
            (PROG_EXIT_FILE, tp("sys_exit_openat")),
            (PROG_EXIT_FILE, opt("sys_exit_open")),
            (PROG_EXIT_FILE, opt("sys_exit_unlink")),
            (PROG_EXIT_FILE, opt("sys_exit_rmdir")),
            (PROG_EXIT_FILE, tp("sys_exit_unlinkat")),
            (PROG_EXIT_FILE, opt("sys_exit_chmod")),
            (PROG_EXIT_FILE, tp("sys_exit_fchmodat")),
            (PROG_EXIT_FILE, opt("sys_exit_fchmodat2")),
            (PROG_EXIT_FILE, opt("sys_exit_chown")),
            (PROG_EXIT_FILE, opt("sys_exit_lchown")),
            (PROG_EXIT_FILE, tp("sys_exit_fchownat")),
            (PROG_EXIT_FILE, tp("sys_exit_truncate")),
            (PROG_EXIT_FILE, opt("sys_exit_rename")),
            (PROG_EXIT_FILE, opt("sys_exit_renameat")),
            (PROG_EXIT_FILE, tp("sys_exit_renameat2")),
            (PROG_EXIT_BPF, tp("sys_exit_bpf")),
            (PROG_BPF, tp("sys_enter_bpf")),
        ]
    };
}

const EXEC_BTF: (&str, Attach) = (PROG_EXEC_BTF, Attach::BtfTracePoint("sched_process_exec"));
const EXEC_TP: (&str, Attach) = (
    PROG_EXEC_TP,
    Attach::TracePoint("sched", "sched_process_exec"),
);
const CAP_TP: (&str, Attach) = (
    PROG_CAPABLE,
    Attach::TracePoint("capability", "cap_capable"),
);

// Trampolines: every credential change through commit_creds (not only the
// set*id/exec syscalls), and capability checks on kernels before the
// cap_capable tracepoint (6.14), without the NOAUDIT ones. Each in two
// forms: the syscall dispatcher (`+dispatch`, best) and one tracepoint per
// syscall (the fallback, and `syscalls: per_syscall`).
const COMMIT_FENTRY: (&str, Attach) = (PROG_COMMIT_CREDS, Attach::FEntry("commit_creds"));
const CAP_FEXIT: (&str, Attach) = (PROG_CAPABLE_FEXIT, Attach::FExit("cap_capable"));
const COMMIT_KP: (&str, Attach) = (PROG_COMMIT_CREDS_KP, Attach::KProbe("commit_creds"));
const CAP_KP: (&str, Attach) = (PROG_CAPABLE_KP, Attach::KProbe("cap_capable"));
const CAP_KRETP: (&str, Attach) = (PROG_CAPABLE_KRETP, Attach::KProbe("cap_capable"));

const D_FENTRY_CAP: Variant = Variant {
    label: "fentry+tp_btf+dispatch",
    programs: programs!(dispatch; EXEC_BTF, COMMIT_FENTRY, CAP_FEXIT),
};
const VARIANT_FENTRY_CAP: Variant = Variant {
    label: "fentry+tp_btf",
    programs: programs!(commit_creds; EXEC_BTF, COMMIT_FENTRY, CAP_FEXIT),
};
const D_FENTRY: Variant = Variant {
    label: "fentry+tp_btf+dispatch-no-capability",
    programs: programs!(dispatch; EXEC_BTF, COMMIT_FENTRY),
};
const VARIANT_FENTRY: Variant = Variant {
    label: "fentry+tp_btf-no-capability",
    programs: programs!(commit_creds; EXEC_BTF, COMMIT_FENTRY),
};
// The same functions by kprobe, for kernels that refuse trampolines but
// have kprobes.
const D_KPROBE_CAP: Variant = Variant {
    label: "kprobe+tp_btf+dispatch",
    programs: programs!(dispatch; EXEC_BTF, COMMIT_KP, CAP_KP, CAP_KRETP),
};
const VARIANT_KPROBE_CAP: Variant = Variant {
    label: "kprobe+tp_btf",
    programs: programs!(commit_creds; EXEC_BTF, COMMIT_KP, CAP_KP, CAP_KRETP),
};
const D_KPROBE: Variant = Variant {
    label: "kprobe+tp_btf+dispatch-no-capability",
    programs: programs!(dispatch; EXEC_BTF, COMMIT_KP),
};
const VARIANT_KPROBE: Variant = Variant {
    label: "kprobe+tp_btf-no-capability",
    programs: programs!(commit_creds; EXEC_BTF, COMMIT_KP),
};
// Tracepoints only: credentials from the set*id/exec syscalls (in the
// dispatcher's table, or their own tracepoint pairs).
const D_BTF_CAP: Variant = Variant {
    label: "tp_btf+dispatch+cap_capable",
    programs: programs!(dispatch; EXEC_BTF, CAP_TP),
};
const VARIANT_BTF_CAP: Variant = Variant {
    label: "tp_btf+cap_capable",
    programs: programs!(syscall_creds_seen; EXEC_BTF, CAP_TP),
};
const D_BTF: Variant = Variant {
    label: "tp_btf+dispatch-no-capability",
    programs: programs!(dispatch; EXEC_BTF),
};
const VARIANT_BTF: Variant = Variant {
    label: "tp_btf-no-capability",
    programs: programs!(syscall_creds_seen; EXEC_BTF),
};
const VARIANT_TP_CAP: Variant = Variant {
    label: "tracepoint+cap_capable",
    programs: programs!(syscall_creds; EXEC_TP, CAP_TP),
};
const VARIANT_TP: Variant = Variant {
    label: "tracepoint-no-capability",
    programs: programs!(syscall_creds; EXEC_TP),
};

/// Variant lists, best first, by (what is wanted, `syscalls`). Within each,
/// the fentry, kprobe and tracepoint kinds are each one run (see [`spec`]);
/// a capability hook outranks the cheaper syscall path (a signal more), the
/// per-syscall tracepoints outrank the dispatcher otherwise: measured side
/// by side (`bench/security_overhead.sh`), they cost less on every hooked
/// syscall and nothing on the others, which the dispatcher taxes with one
/// program pair each (README, "Security probe: syscall hot loops").
const CAP_AUTO: &[Variant] = &[
    VARIANT_FENTRY_CAP,
    D_FENTRY_CAP,
    VARIANT_KPROBE_CAP,
    D_KPROBE_CAP,
    VARIANT_BTF_CAP,
    D_BTF_CAP,
    VARIANT_BTF,
    D_BTF,
    VARIANT_TP_CAP,
    VARIANT_TP,
];
const CAP_DISPATCH: &[Variant] = &[D_FENTRY_CAP, D_KPROBE_CAP, D_BTF_CAP, D_BTF];
const CAP_PER_SYSCALL: &[Variant] = &[
    VARIANT_FENTRY_CAP,
    VARIANT_KPROBE_CAP,
    VARIANT_BTF_CAP,
    VARIANT_BTF,
    VARIANT_TP_CAP,
    VARIANT_TP,
];
const CREDS_AUTO: &[Variant] = &[
    VARIANT_FENTRY,
    D_FENTRY,
    VARIANT_KPROBE,
    D_KPROBE,
    VARIANT_BTF,
    D_BTF,
    VARIANT_TP,
];
const CREDS_DISPATCH: &[Variant] = &[D_FENTRY, D_KPROBE, D_BTF];
const CREDS_PER_SYSCALL: &[Variant] = &[VARIANT_FENTRY, VARIANT_KPROBE, VARIANT_BTF, VARIANT_TP];
const TP_AUTO: &[Variant] = &[VARIANT_BTF, D_BTF, VARIANT_TP];
const TP_DISPATCH: &[Variant] = &[D_BTF];
const TP_PER_SYSCALL: &[Variant] = &[VARIANT_BTF, VARIANT_TP];

/// Best first: fentry/fexit, kprobes, then tracepoints only (credentials
/// from the set*id/exec syscalls; capabilities from the
/// capability/cap_capable tracepoint, 6.14+, or none); each with the
/// syscall dispatcher, else per-syscall tracepoints. tp_btf/
/// sched_process_exec hands over bprm->file; the classic tracepoint reads
/// mm->exe_file, the same file by then.
pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::SECURITY,
    variants: CAP_AUTO,
};

/// What `tapio run` loads when `capabilities` is off (the default), so the
/// reported variant does not claim a hook that is not attached.
pub const SPEC_NO_CAPABILITY: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::SECURITY,
    variants: CREDS_AUTO,
};

/// With neither credentials nor capabilities wanted, no variant needs a
/// function hook (a fentry label would claim one that is not attached).
pub const SPEC_TRACEPOINTS: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::SECURITY,
    variants: TP_AUTO,
};

/// Does `label` hook syscalls through the dispatcher, and does it see
/// credentials at commit_creds (so the set*id/exec syscalls stay out of
/// the dispatcher's table)? None: no such variant.
pub fn variant_syscalls(label: &str) -> Option<(bool, bool)> {
    let v = CAP_AUTO
        .iter()
        .chain(CREDS_AUTO)
        .find(|v| v.label == label)?;
    let has = |names: &[&str]| v.programs.iter().any(|(p, _)| names.contains(p));
    Some((
        has(&[PROG_SYS_ENTER]),
        has(&[PROG_COMMIT_CREDS, PROG_COMMIT_CREDS_KP]),
    ))
}

/// The spec to run with `cfg`: the variants it wants, on the syscall path
/// (`syscalls`) and of the attach kind (`attach`) it asks for (each list
/// holds fentry, kprobe, then tracepoint variants, so every kind is one
/// sub-slice).
pub fn spec(cfg: &crate::config::SecurityProbe) -> ProbeSpec {
    use crate::config::{SecurityAttach as A, SecuritySyscalls as S};
    let lists = if cfg.capabilities {
        [CAP_AUTO, CAP_DISPATCH, CAP_PER_SYSCALL]
    } else if cfg.credentials {
        [CREDS_AUTO, CREDS_DISPATCH, CREDS_PER_SYSCALL]
    } else {
        // No function hook wanted: `attach` has nothing to choose.
        let variants = match cfg.syscalls {
            S::Auto => TP_AUTO,
            S::Dispatch => TP_DISPATCH,
            S::PerSyscall => TP_PER_SYSCALL,
        };
        return ProbeSpec {
            variants,
            ..SPEC_TRACEPOINTS
        };
    };
    let all = match cfg.syscalls {
        S::Auto => lists[0],
        S::Dispatch => lists[1],
        S::PerSyscall => lists[2],
    };
    let kind = |v: &Variant| {
        if v.label.starts_with("fentry") {
            A::Fentry
        } else if v.label.starts_with("kprobe") {
            A::Kprobe
        } else {
            A::Tracepoint
        }
    };
    let variants = match cfg.attach {
        A::Auto => all,
        want => {
            let start = all
                .iter()
                .position(|v| kind(v) == want)
                .unwrap_or(all.len());
            let len = all[start..].iter().take_while(|v| kind(v) == want).count();
            &all[start..start + len]
        }
    };
    ProbeSpec { variants, ..SPEC }
}

/// Capability names by number (include/uapi/linux/capability.h).
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub fn capability_name(cap: u64) -> String {
    Capability(cap).to_string()
}

/// A capability's name, formatted where it is written.
pub struct Capability(pub u64);

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match CAPABILITIES.get(self.0 as usize) {
            Some(n) => f.write_str(n),
            None => write!(f, "CAP_{}", self.0),
        }
    }
}

/// The names of the capabilities set in a mask, comma-separated (what
/// `capability_names(mask).join(",")` is, without the Vec).
pub struct Capabilities(pub u64);

impl std::fmt::Display for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        for i in (0..64).filter(|i| self.0 & (1u64 << i) != 0) {
            write!(f, "{sep}{}", Capability(i))?;
            sep = ",";
        }
        Ok(())
    }
}

/// Names of the capabilities set in `mask`.
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(capability_name)
        .collect()
}

/// Names of the x86_64 syscalls this probe hooks.
/// Borrowed for the syscalls named here: decoding a record allocates no
/// name.
pub fn syscall_name(nr: u32) -> Cow<'static, str> {
    let n = match nr {
        1 => "write",
        2 => "open",
        9 => "mmap",
        10 => "mprotect",
        18 => "pwrite64",
        20 => "writev",
        59 => "execve",
        76 => "truncate",
        77 => "ftruncate",
        82 => "rename",
        84 => "rmdir",
        87 => "unlink",
        90 => "chmod",
        91 => "fchmod",
        92 => "chown",
        93 => "fchown",
        94 => "lchown",
        101 => "ptrace",
        56 => "clone",
        57 => "fork",
        58 => "vfork",
        105 => "setuid",
        106 => "setgid",
        113 => "setreuid",
        114 => "setregid",
        117 => "setresuid",
        119 => "setresgid",
        122 => "setfsuid",
        116 => "setgroups",
        123 => "setfsgid",
        126 => "capset",
        157 => "prctl",
        249 => "request_key",
        250 => "keyctl",
        272 => "unshare",
        308 => "setns",
        435 => "clone3",
        175 => "init_module",
        257 => "openat",
        260 => "fchownat",
        263 => "unlinkat",
        264 => "renameat",
        268 => "fchmodat",
        296 => "pwritev",
        311 => "process_vm_writev",
        313 => "finit_module",
        316 => "renameat2",
        321 => "bpf",
        322 => "execveat",
        328 => "pwritev2",
        329 => "pkey_mprotect",
        452 => "fchmodat2",
        0 => "",
        n => return Cow::Owned(format!("syscall_{n}")),
    };
    Cow::Borrowed(n)
}

// Syscall numbers here (SYSCALLS, syscall_name) and in the BPF object
// (-D__TARGET_ARCH_x86, pt_regs fields) are x86_64's.
#[cfg(not(target_arch = "x86_64"))]
compile_error!("the security probe's syscall numbers are x86_64's");

/// The config switch a hooked syscall belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `credentials`, where no commit_creds hook loads.
    Credentials,
    CodeInjection,
    Bpf,
    Modules,
    /// Some `watch_paths` entry resolved.
    Files,
}

/// Every syscall the probe hooks: (x86_64 number, name, the dispatcher's
/// handler, family). Numbers are arch/x86/entry/syscalls/syscall_64.tbl
/// (a test checks them against libc's `SYS_*`); the per-syscall variants
/// name the same syscalls by tracepoint.
pub const SYSCALLS: &[(u32, &str, u32, Family)] = {
    use tapio_shared::tapio_sec_syscall as h;
    use Family::*;
    &[
        (105, "setuid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (106, "setgid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (113, "setreuid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (114, "setregid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (117, "setresuid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (119, "setresgid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (122, "setfsuid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (123, "setfsgid", h::TAPIO_SEC_SYS_CRED, Credentials),
        (59, "execve", h::TAPIO_SEC_SYS_CRED, Credentials),
        (322, "execveat", h::TAPIO_SEC_SYS_CRED, Credentials),
        // The other paths to new credentials a syscall takes: capability
        // sets, a new user namespace (its owner gets every capability in
        // it), joining one.
        (126, "capset", h::TAPIO_SEC_SYS_CRED, Credentials),
        (272, "unshare", h::TAPIO_SEC_SYS_CRED, Credentials),
        (308, "setns", h::TAPIO_SEC_SYS_CRED, Credentials),
        (101, "ptrace", h::TAPIO_SEC_SYS_PTRACE, CodeInjection),
        (
            311,
            "process_vm_writev",
            h::TAPIO_SEC_SYS_VM_WRITEV,
            CodeInjection,
        ),
        (9, "mmap", h::TAPIO_SEC_SYS_MMAP, CodeInjection),
        (10, "mprotect", h::TAPIO_SEC_SYS_MPROTECT, CodeInjection),
        (
            329,
            "pkey_mprotect",
            h::TAPIO_SEC_SYS_MPROTECT,
            CodeInjection,
        ),
        (321, "bpf", h::TAPIO_SEC_SYS_BPF, Bpf),
        (175, "init_module", h::TAPIO_SEC_SYS_INIT_MODULE, Modules),
        (313, "finit_module", h::TAPIO_SEC_SYS_FINIT_MODULE, Modules),
        (1, "write", h::TAPIO_SEC_SYS_WRITE, Files),
        (18, "pwrite64", h::TAPIO_SEC_SYS_WRITE, Files),
        (20, "writev", h::TAPIO_SEC_SYS_WRITE, Files),
        (296, "pwritev", h::TAPIO_SEC_SYS_WRITE, Files),
        (328, "pwritev2", h::TAPIO_SEC_SYS_WRITE, Files),
        (77, "ftruncate", h::TAPIO_SEC_SYS_FTRUNCATE, Files),
        (91, "fchmod", h::TAPIO_SEC_SYS_FCHMOD, Files),
        (93, "fchown", h::TAPIO_SEC_SYS_FCHOWN, Files),
        (257, "openat", h::TAPIO_SEC_SYS_OPENAT, Files),
        (2, "open", h::TAPIO_SEC_SYS_OPEN, Files),
        (87, "unlink", h::TAPIO_SEC_SYS_UNLINK, Files),
        (84, "rmdir", h::TAPIO_SEC_SYS_UNLINK, Files),
        (263, "unlinkat", h::TAPIO_SEC_SYS_UNLINKAT, Files),
        (90, "chmod", h::TAPIO_SEC_SYS_CHMOD, Files),
        (268, "fchmodat", h::TAPIO_SEC_SYS_FCHMODAT, Files),
        (452, "fchmodat2", h::TAPIO_SEC_SYS_FCHMODAT, Files),
        (92, "chown", h::TAPIO_SEC_SYS_CHOWN, Files),
        (94, "lchown", h::TAPIO_SEC_SYS_CHOWN, Files),
        (260, "fchownat", h::TAPIO_SEC_SYS_FCHOWNAT, Files),
        (76, "truncate", h::TAPIO_SEC_SYS_TRUNCATE, Files),
        (82, "rename", h::TAPIO_SEC_SYS_RENAME, Files),
        (264, "renameat", h::TAPIO_SEC_SYS_RENAMEAT, Files),
        (316, "renameat2", h::TAPIO_SEC_SYS_RENAMEAT, Files),
    ]
};

/// The dispatcher's table for `cfg`: (syscall number, handler) for the
/// families that are on. `commit_creds`: credentials are seen by a
/// commit_creds hook, so the set*id/exec syscalls stay out; `files`: some
/// watched path resolved.
pub fn dispatch_table(
    cfg: &crate::config::SecurityProbe,
    commit_creds: bool,
    files: bool,
) -> Vec<(u32, u32)> {
    SYSCALLS
        .iter()
        .filter(|(_, _, _, f)| match f {
            Family::Credentials => cfg.credentials && !commit_creds,
            Family::CodeInjection => cfg.code_injection,
            Family::Bpf => cfg.bpf,
            Family::Modules => cfg.modules,
            Family::Files => files,
        })
        .map(|(nr, _, h, _)| (*nr, *h))
        .collect()
}

/// A task's ids (struct cred).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    pub uid: u32,
    pub euid: u32,
    pub suid: u32,
    pub fsuid: u32,
    pub gid: u32,
    pub egid: u32,
    pub sgid: u32,
    pub fsgid: u32,
}

impl From<&tapio_shared::tapio_ids> for Ids {
    fn from(i: &tapio_shared::tapio_ids) -> Self {
        Self {
            uid: i.uid,
            euid: i.euid,
            suid: i.suid,
            fsuid: i.fsuid,
            gid: i.gid,
            egid: i.egid,
            sgid: i.sgid,
            fsgid: i.fsgid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredChange {
    pub common: Common,
    pub old: Ids,
    pub new: Ids,
    pub old_cap_eff: u64,
    pub new_cap_eff: u64,
    pub old_cap_prm: u64,
    pub new_cap_prm: u64,
    pub syscall: Cow<'static, str>,
    /// Seen at commit_creds (any path), not at a set*id/exec syscall pair.
    pub commit_creds: bool,
}

impl CredChange {
    /// Capabilities in the effective set now that were not before.
    pub fn gained(&self) -> u64 {
        self.new_cap_eff & !self.old_cap_eff
    }
    pub fn lost(&self) -> u64 {
        self.old_cap_eff & !self.new_cap_eff
    }
    /// Gaining root, or gaining capabilities without having been root.
    pub fn suspicious(&self) -> bool {
        let to_root = (self.new.euid == 0 && self.old.euid != 0)
            || (self.new.uid == 0 && self.old.uid != 0)
            || (self.new.fsuid == 0 && self.old.fsuid != 0);
        to_root || (self.old.euid != 0 && self.gained() != 0)
    }
}

/// File operations reported for watched paths: the same six a
/// `file_modify` rule names.
pub use crate::config::FileOperation as FileOp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Capability {
        cap: u64,
        granted: bool,
    },
    Ptrace {
        request: u64,
    },
    VmWritev,
    MemfdExec {
        named_memfd: bool,
    },
    MemoryWx {
        addr: u64,
        len: u64,
        prot: u64,
        mmap_flags: u64,
    },
    ModuleLoad,
    /// request_module(): `name` is the alias the kernel asked for.
    ModuleRequest {
        wait: bool,
    },
    BpfLoad {
        prog_type: u64,
        insn_count: u64,
    },
    File {
        op: FileOp,
        /// The fd the file was reached through (fd ops and open).
        fd: Option<u64>,
        /// Levels above the file where the watch matched (fd ops), or
        /// 1 + level of the watched directory above the start dir (path
        /// ops matched by directory).
        level: u64,
        writes_suppressed: u64,
        rename_target: bool,
        mode: Option<u64>,
        owner: Option<(u32, u32)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecEvent {
    pub common: Common,
    pub kind: Kind,
    pub ret: i64,
    pub syscall: Cow<'static, str>,
    pub target_pid: u32,
    pub ino: u64,
    pub dev: u32,
    pub watch: u32,
    pub name: String,
    pub name_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityEvent {
    Cred(CredChange),
    Event(SecEvent),
}

impl SecurityEvent {
    pub fn common(&self) -> &Common {
        match self {
            SecurityEvent::Cred(c) => &c.common,
            SecurityEvent::Event(e) => &e.common,
        }
    }
}

pub use super::DecodeError;

/// Decode one ring-buffer record of the security probe.
pub fn decode(bytes: &[u8]) -> Result<SecurityEvent, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_SEC_CRED as u32 {
        let r: tapio_sec_cred = read_record(bytes)?;
        return Ok(SecurityEvent::Cred(CredChange {
            common: Common::from(&r.hdr),
            old: Ids::from(&r.old_ids),
            new: Ids::from(&r.new_ids),
            old_cap_eff: r.old_cap_eff,
            new_cap_eff: r.new_cap_eff,
            old_cap_prm: r.old_cap_prm,
            new_cap_prm: r.new_cap_prm,
            syscall: syscall_name(r.syscall_nr),
            commit_creds: r.source == tapio_shared::tapio_sec_cred_source::TAPIO_SEC_CRED_COMMIT,
        }));
    }
    if k != kind::TAPIO_EVENT_SEC as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_sec_event = read_record(bytes)?;
    let fd_op = r.flags & flags::TAPIO_SEC_BY_FD != 0;
    let file = |op: FileOp| Kind::File {
        op,
        fd: fd_op.then_some(r.arg0),
        level: r.arg2,
        writes_suppressed: if op == FileOp::Write { r.arg1 } else { 0 },
        rename_target: r.flags & flags::TAPIO_SEC_RENAME_TARGET != 0,
        mode: (op == FileOp::Chmod).then_some(r.arg1),
        owner: (op == FileOp::Chown).then_some((r.arg1 as u32, r.arg2 as u32)),
    };
    let kind = match r.op {
        op::TAPIO_SEC_CAPABILITY => Kind::Capability {
            cap: r.arg0,
            granted: r.ret == 0,
        },
        op::TAPIO_SEC_PTRACE => Kind::Ptrace { request: r.arg0 },
        op::TAPIO_SEC_VM_WRITEV => Kind::VmWritev,
        op::TAPIO_SEC_MEMFD_EXEC => Kind::MemfdExec {
            named_memfd: r.flags & flags::TAPIO_SEC_MEMFD_NAMED != 0,
        },
        op::TAPIO_SEC_MEMORY_WX => Kind::MemoryWx {
            addr: r.arg0,
            len: r.arg1,
            prot: r.arg2,
            mmap_flags: r.arg3,
        },
        op::TAPIO_SEC_MODULE_LOAD => Kind::ModuleLoad,
        op::TAPIO_SEC_MODULE_REQUEST => Kind::ModuleRequest { wait: r.arg0 != 0 },
        op::TAPIO_SEC_BPF_LOAD => Kind::BpfLoad {
            prog_type: r.arg0,
            insn_count: r.arg1,
        },
        op::TAPIO_SEC_FILE_WRITE => file(FileOp::Write),
        op::TAPIO_SEC_FILE_TRUNCATE => file(FileOp::Truncate),
        op::TAPIO_SEC_FILE_RENAME => file(FileOp::Rename),
        op::TAPIO_SEC_FILE_UNLINK => file(FileOp::Unlink),
        op::TAPIO_SEC_FILE_CHMOD => file(FileOp::Chmod),
        op::TAPIO_SEC_FILE_CHOWN => file(FileOp::Chown),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(SecurityEvent::Event(SecEvent {
        common: Common::from(&r.hdr),
        kind,
        ret: r.ret,
        syscall: syscall_name(r.syscall_nr),
        target_pid: r.target_pid,
        ino: r.ino,
        dev: r.dev,
        watch: r.watch,
        name: cstr(&r.name, usize::from(r.name_len)),
        name_truncated: r.flags & flags::TAPIO_SEC_NAME_TRUNCATED != 0,
    }))
}

// ---------------------------------------------------------------------
// Watched paths → kernel maps

/// FNV-1a 64, as `match_path` in the C file computes it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A userspace `st_dev` as the kernel's `s_dev` (MKDEV: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xfffff)) as u32
}

/// Map key of `tapio_sec_watch_ino` (struct watch_ino).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchIno {
    pub ino: u64,
    pub dev: u32,
    pub _pad: u32,
}
// SAFETY: two integers and explicit padding, no holes.
unsafe impl aya::Pod for WatchIno {}

/// Map key of `tapio_sec_watch_rel` (struct watch_rel).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchRel {
    pub ino: u64,
    pub hash: u64,
    pub dev: u32,
    pub _pad: u32,
}
// SAFETY: integers and explicit padding, no holes.
unsafe impl aya::Pod for WatchRel {}

/// What the kernel maps get for the configured watch paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchSet {
    /// Watch index → the canonical path.
    pub paths: Vec<String>,
    pub by_inode: Vec<(WatchIno, u32)>,
    pub by_rel: Vec<(WatchRel, u32)>,
    /// Some watched path is a directory (the kernel walks parents).
    pub has_dirs: bool,
    /// Filesystems (kernel dev_t) holding a watched directory.
    pub dir_devs: Vec<u32>,
    /// Paths that could not be resolved, with why.
    pub skipped: Vec<(String, String)>,
}

/// Resolve `paths` (symlinks followed) to inodes, and to (ancestor inode,
/// hash of the rest) pairs for every ancestor directory.
pub fn resolve_watches(paths: &[String]) -> WatchSet {
    let mut set = WatchSet::default();
    for p in paths {
        let canon = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(e) => {
                set.skipped.push((p.clone(), e.to_string()));
                continue;
            }
        };
        let md = match std::fs::metadata(&canon) {
            Ok(m) => m,
            Err(e) => {
                set.skipped.push((p.clone(), e.to_string()));
                continue;
            }
        };
        let idx = set.paths.len() as u32;
        set.paths.push(canon.to_string_lossy().into_owned());
        set.has_dirs |= md.is_dir();
        if md.is_dir() && !set.dir_devs.contains(&kernel_dev(md.dev())) {
            set.dir_devs.push(kernel_dev(md.dev()));
        }
        set.by_inode.push((
            WatchIno {
                ino: md.ino(),
                dev: kernel_dev(md.dev()),
                _pad: 0,
            },
            idx,
        ));
        for anc in canon.ancestors().skip(1) {
            let Ok(am) = std::fs::metadata(anc) else {
                continue;
            };
            let Ok(rest) = canon.strip_prefix(anc) else {
                continue;
            };
            let rest = rest.to_string_lossy();
            if rest.is_empty() {
                continue;
            }
            set.by_rel.push((
                WatchRel {
                    ino: am.ino(),
                    hash: fnv1a64(rest.as_bytes()),
                    dev: kernel_dev(am.dev()),
                    _pad: 0,
                },
                idx,
            ));
        }
    }
    set
}

/// Bits in `tapio_sec_watch_bits` (WATCH_BITS in security.bpf.c).
const WATCH_BITS: usize = 4096;

/// The filter bit of an inode number: the same function as watch_bit() in
/// security.bpf.c, which tests it before each watch_ino lookup.
fn watch_bit(ino: u64) -> usize {
    ((ino ^ (ino >> 12) ^ (ino >> 24)) as usize) & (WATCH_BITS - 1)
}

/// The filter with the bit of every watched inode set.
fn watch_bits(watches: &WatchSet) -> [u64; WATCH_BITS / 64] {
    let mut bits = [0u64; WATCH_BITS / 64];
    for (k, _) in &watches.by_inode {
        let b = watch_bit(k.ino);
        bits[b / 64] |= 1 << (b % 64);
    }
    bits
}

fn map_err(map: &'static str, source: aya::maps::MapError) -> super::LoadError {
    super::LoadError::Map {
        probe: NAME,
        map,
        source,
    }
}

/// Fill the probe's config and watch maps.
pub fn configure(
    loaded: &mut super::Loaded,
    cfg: &crate::config::SecurityProbe,
    watches: &WatchSet,
) -> Result<(), super::LoadError> {
    let ebpf = &mut loaded.ebpf;
    {
        let m = ebpf
            .map_mut(MAP_WATCH_INO)
            .ok_or(super::LoadError::MissingMap {
                probe: NAME,
                map: MAP_WATCH_INO,
            })?;
        let mut h: aya::maps::HashMap<_, WatchIno, u32> =
            aya::maps::HashMap::try_from(m).map_err(|e| map_err(MAP_WATCH_INO, e))?;
        for (k, v) in &watches.by_inode {
            h.insert(k, v, 0).map_err(|e| map_err(MAP_WATCH_INO, e))?;
        }
    }
    {
        // After the inodes: a bit set before its key is in place would only
        // cost a lookup that misses; the reverse would hide a watch.
        let m = ebpf
            .map_mut(MAP_WATCH_BITS)
            .ok_or(super::LoadError::MissingMap {
                probe: NAME,
                map: MAP_WATCH_BITS,
            })?;
        let mut a: aya::maps::Array<_, [u64; WATCH_BITS / 64]> =
            aya::maps::Array::try_from(m).map_err(|e| map_err(MAP_WATCH_BITS, e))?;
        a.set(0, watch_bits(watches), 0)
            .map_err(|e| map_err(MAP_WATCH_BITS, e))?;
    }
    {
        let m = ebpf
            .map_mut(MAP_WATCH_REL)
            .ok_or(super::LoadError::MissingMap {
                probe: NAME,
                map: MAP_WATCH_REL,
            })?;
        let mut h: aya::maps::HashMap<_, WatchRel, u32> =
            aya::maps::HashMap::try_from(m).map_err(|e| map_err(MAP_WATCH_REL, e))?;
        for (k, v) in &watches.by_rel {
            h.insert(k, v, 0).map_err(|e| map_err(MAP_WATCH_REL, e))?;
        }
    }
    {
        let m = ebpf
            .map_mut(MAP_WATCH_DEVS)
            .ok_or(super::LoadError::MissingMap {
                probe: NAME,
                map: MAP_WATCH_DEVS,
            })?;
        let mut h: aya::maps::HashMap<_, u32, u8> =
            aya::maps::HashMap::try_from(m).map_err(|e| map_err(MAP_WATCH_DEVS, e))?;
        for d in &watches.dir_devs {
            h.insert(d, 1, 0).map_err(|e| map_err(MAP_WATCH_DEVS, e))?;
        }
    }
    let m = ebpf.map_mut(MAP_CFG).ok_or(super::LoadError::MissingMap {
        probe: NAME,
        map: MAP_CFG,
    })?;
    let mut arr: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(m).map_err(|e| map_err(MAP_CFG, e))?;
    let depth = if watches.has_dirs {
        u64::from(cfg.watch_depth)
    } else {
        0
    };
    let window = cfg.write_dedup_window.as_nanos().min(u128::from(u64::MAX)) as u64;
    // Tapio's pid last: the programs that must not report Tapio stay
    // silent until it is set (and every other value is in place).
    for (i, v) in [
        (CFG_FIM_DEPTH, depth),
        (CFG_WRITE_WINDOW, window),
        (CFG_SELF_TGID, u64::from(std::process::id())),
    ] {
        arr.set(i, v, 0).map_err(|e| map_err(MAP_CFG, e))?;
    }
    // The dispatcher hooks nothing until its table is filled: after the
    // settings above, so its first call sees all of them.
    if let Some((true, commit_creds)) = variant_syscalls(loaded.variant) {
        let table = dispatch_table(cfg, commit_creds, !watches.paths.is_empty());
        let m = loaded
            .ebpf
            .map_mut(MAP_SYSCALLS)
            .ok_or(super::LoadError::MissingMap {
                probe: NAME,
                map: MAP_SYSCALLS,
            })?;
        let mut arr: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(m).map_err(|e| map_err(MAP_SYSCALLS, e))?;
        for (nr, h) in table {
            arr.set(nr, h, 0).map_err(|e| map_err(MAP_SYSCALLS, e))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// Handler

/// What userspace looked up for a record (best effort, from /proc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    pub target_exe: Option<String>,
    pub target_comm: Option<String>,
    /// The actor's executable (memfd exec).
    pub exe: Option<String>,
    pub file_path: Option<String>,
    pub watch_path: Option<String>,
}

/// Turns security records into log records.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub enricher: Enricher,
    pub clock: crate::clock::WallClock,
    /// Watch index → watched path.
    pub watch_paths: Vec<String>,
}

impl Handler {
    /// The program names the config wants attached.
    pub fn wanted(cfg: &crate::config::SecurityProbe) -> impl Fn(&str) -> bool + '_ {
        move |prog| match prog {
            PROG_CRED_ENTER | PROG_CRED_EXIT | PROG_CRED_FORK | PROG_CRED_SEEN_EXIT
            | PROG_CRED_SEEN_EXEC | PROG_CRED_ITER | PROG_COMMIT_CREDS | PROG_COMMIT_CREDS_KP => {
                cfg.credentials
            }
            p if CAPABILITY_PROGRAMS.contains(&p) => cfg.capabilities,
            PROG_PTRACE | PROG_VM_WRITEV | PROG_MMAP | PROG_MPROTECT | PROG_EXEC_BTF
            | PROG_EXEC_TP | PROG_EXIT_INJECT => cfg.code_injection,
            PROG_BPF | PROG_EXIT_BPF => cfg.bpf,
            // What it hooks is its table (see `dispatch_table`).
            PROG_SYS_ENTER | PROG_SYS_EXIT => {
                cfg.credentials
                    || cfg.code_injection
                    || cfg.bpf
                    || cfg.modules
                    || !cfg.watch_paths.is_empty()
            }
            PROG_INIT_MODULE | PROG_FINIT_MODULE | PROG_MODULE_LOAD | PROG_MODULE_REQUEST
            | PROG_EXIT_MODULE => cfg.modules,
            p if FILE_PROGRAMS.contains(&p) => !cfg.watch_paths.is_empty(),
            _ => true,
        }
    }

    /// Best-effort path of the changed file, for `file.path`.
    pub fn file_path(&self, e: &SecEvent, fd: Option<u64>, level: u64) -> String {
        let watched = self.watch_paths.get(e.watch as usize).cloned();
        if let Some(fd) = fd {
            if level == 0 {
                if let Some(w) = watched {
                    return w;
                }
            }
            // The writer usually still has the file open.
            if let Ok(p) = std::fs::read_link(format!("/proc/{}/fd/{fd}", e.common.pid)) {
                let p = p.to_string_lossy().into_owned();
                if watched.as_deref().is_some_and(|w| p.starts_with(w)) {
                    return p;
                }
            }
            return match (watched, level) {
                (Some(w), 1) => format!("{w}/{}", e.name),
                (Some(w), _) => format!("{w}/.../{}", e.name),
                (None, _) => e.name.clone(),
            };
        }
        if e.name.starts_with('/') {
            return e.name.clone();
        }
        // Relative to the caller's cwd (or a dfd we did not keep); when
        // the caller is gone, the watched path it names.
        if let Some(w) = watched.filter(|w| w.ends_with(&format!("/{}", e.name))) {
            return w;
        }
        match std::fs::read_link(format!("/proc/{}/cwd", e.common.pid)) {
            Ok(cwd) => Path::new(&cwd).join(&e.name).to_string_lossy().into_owned(),
            Err(_) => e.name.clone(),
        }
    }

    fn target(pid: u32) -> (Option<String>, Option<String>) {
        if pid == 0 {
            return (None, None);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p: PathBuf| p.to_string_lossy().into_owned());
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim_end().to_string());
        (exe, comm)
    }

    /// What /proc adds to a record, looked up while the process may still
    /// be there.
    fn extra(&self, e: &SecEvent) -> Extra {
        match &e.kind {
            Kind::Ptrace { .. } | Kind::VmWritev => {
                let (exe, comm) = Self::target(e.target_pid);
                Extra {
                    target_exe: exe,
                    target_comm: comm,
                    ..Default::default()
                }
            }
            Kind::MemfdExec { .. } => Extra {
                exe: std::fs::read_link(format!("/proc/{}/exe", e.common.pid))
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned()),
                ..Default::default()
            },
            Kind::File { fd, level, .. } => Extra {
                file_path: Some(self.file_path(e, *fd, *level)),
                watch_path: self.watch_paths.get(e.watch as usize).cloned(),
                ..Default::default()
            },
            _ => Extra::default(),
        }
    }

    fn emit(&mut self, ev: &SecurityEvent, observed: u64) {
        let extra = match ev {
            SecurityEvent::Cred(_) => Extra::default(),
            SecurityEvent::Event(e) => self.extra(e),
        };
        let c = ev.common();
        let ctx = self.enricher.context(c.uid, c.cgroup_id, c.pid);
        let clock = &self.clock;
        match ev {
            SecurityEvent::Cred(cc) => crate::encode_log!(self.emitter, |enc| otlp::credentials(
                enc, cc, &ctx, clock, observed
            )),
            SecurityEvent::Event(e) => crate::encode_log!(self.emitter, |enc| otlp::event(
                enc, e, &extra, &ctx, clock, observed
            )),
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
        self.emit(&ev, observed);
        let lat = crate::clock::boot_ns().saturating_sub(ev.common().ts_boot_ns);
        self.stats.latency.record_ns(lat);
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::probes::process::fixtures::{fill, header};
    use tapio_shared::as_bytes;

    pub fn cred_bytes(old_euid: u32, new_euid: u32, old_caps: u64, new_caps: u64) -> Vec<u8> {
        let mut r = tapio_sec_cred {
            hdr: header(kind::TAPIO_EVENT_SEC_CRED),
            old_cap_eff: old_caps,
            new_cap_eff: new_caps,
            syscall_nr: 105,
            ..Default::default()
        };
        r.old_ids.uid = old_euid;
        r.old_ids.euid = old_euid;
        r.new_ids.uid = new_euid;
        r.new_ids.euid = new_euid;
        as_bytes(&r).to_vec()
    }

    pub fn event_bytes(o: u32, f: u32, name: &[u8], args: [u64; 4], ret: i64) -> Vec<u8> {
        let mut r = tapio_sec_event {
            hdr: header(kind::TAPIO_EVENT_SEC),
            op: o,
            flags: f,
            arg0: args[0],
            arg1: args[1],
            arg2: args[2],
            arg3: args[3],
            ret,
            target_pid: 4321,
            syscall_nr: 101,
            name_len: name.len() as u16,
            ..Default::default()
        };
        fill(&mut r.name, name);
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn decodes_a_credential_change() {
        let SecurityEvent::Cred(c) = decode(&cred_bytes(0, 65534, 0x1ff_ffff_ffff, 0)).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.old.euid, c.new.euid), (0, 65534));
        assert_eq!(c.syscall, "setuid");
        assert!(!c.suspicious(), "dropping root is not suspicious");
        assert_eq!(c.gained(), 0);
        let SecurityEvent::Cred(up) = decode(&cred_bytes(1000, 0, 0, 1 << 21)).unwrap() else {
            panic!()
        };
        assert!(up.suspicious());
        assert_eq!(capability_names(up.gained()), vec!["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn decodes_commit_creds_and_module_requests() {
        let mut b = cred_bytes(65534, 65534, 0, 0x1ff_ffff_ffff);
        // source and syscall_nr are the record's last two u32s.
        let n = b.len();
        b[n - 8..n - 4].copy_from_slice(&272u32.to_ne_bytes());
        b[n - 4..].copy_from_slice(
            &tapio_shared::tapio_sec_cred_source::TAPIO_SEC_CRED_COMMIT.to_ne_bytes(),
        );
        let SecurityEvent::Cred(c) = decode(&b).unwrap() else {
            panic!()
        };
        assert!(c.commit_creds);
        assert_eq!(c.syscall, "unshare");
        assert!(c.suspicious(), "nobody gaining capabilities");
        let b = event_bytes(
            op::TAPIO_SEC_MODULE_REQUEST,
            0,
            b"net-pf-5",
            [1, 0, 0, 0],
            0,
        );
        let SecurityEvent::Event(e) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, Kind::ModuleRequest { wait: true });
        assert_eq!(e.name, "net-pf-5");
    }

    #[test]
    fn decodes_events_by_op() {
        let b = event_bytes(op::TAPIO_SEC_PTRACE, 0, b"", [16, 0, 0, 0], 0);
        let SecurityEvent::Event(e) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(e.kind, Kind::Ptrace { request: 16 });
        assert_eq!(e.target_pid, 4321);
        let b = event_bytes(
            op::TAPIO_SEC_FILE_WRITE,
            flags::TAPIO_SEC_BY_FD,
            b"passwd\0junk",
            [3, 41, 0, 0],
            10,
        );
        let SecurityEvent::Event(e) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(e.name, "passwd");
        let Kind::File {
            op,
            fd,
            writes_suppressed,
            ..
        } = e.kind
        else {
            panic!()
        };
        assert_eq!((op, fd, writes_suppressed), (FileOp::Write, Some(3), 41));
        let b = event_bytes(99, 0, b"", [0; 4], 0);
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));
        for n in 0..100 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + n) as u8).collect();
            let _ = decode(&junk);
        }
    }

    #[test]
    fn dev_encoding_matches_the_kernel() {
        // st_dev 0x803 is 8:3 (sda3); the kernel's s_dev is 8 << 20 | 3.
        assert_eq!(kernel_dev(0x803), (8 << 20) | 3);
        // A large minor (e.g. overlay's anonymous 0:123456).
        let minor: u64 = 123_456;
        let st = (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(kernel_dev(st), 123_456);
    }

    #[test]
    fn fnv_is_fnv1a_64() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn watch_bits_hold_every_watched_inode() {
        let key = |ino| WatchIno {
            ino,
            dev: 0,
            _pad: 0,
        };
        let set = WatchSet {
            by_inode: vec![(key(7), 0), (key(0x1234_5678_9abc), 1)],
            ..WatchSet::default()
        };
        let bits = watch_bits(&set);
        let on = |ino| {
            let b = watch_bit(ino);
            bits[b / 64] >> (b % 64) & 1 == 1
        };
        assert!(on(7) && on(0x1234_5678_9abc));
        // The C side's mix: ino ^ ino >> 12 ^ ino >> 24, low 12 bits.
        assert_eq!(watch_bit(0x1234_5678_9abc), (0xabc ^ 0x789 ^ 0x456));
        assert!(!on(8));
        assert_eq!(bits.iter().map(|w| w.count_ones()).sum::<u32>(), 2);
    }

    #[test]
    fn watches_resolve_to_inodes_and_ancestor_hashes() {
        let dir = std::env::temp_dir().join(format!("tapio-sec-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("watched");
        std::fs::write(&f, b"x").unwrap();
        let set = resolve_watches(&[
            f.to_string_lossy().into_owned(),
            "/nonexistent/tapio".to_string(),
        ]);
        assert_eq!(set.paths.len(), 1);
        assert_eq!(set.skipped.len(), 1);
        assert!(!set.has_dirs);
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(set.by_inode[0].0.ino, md.ino());
        // The parent directory maps "watched" to watch 0.
        let pm = std::fs::metadata(&dir).unwrap();
        assert!(set
            .by_rel
            .iter()
            .any(|(k, v)| k.ino == pm.ino() && k.hash == fnv1a64(b"watched") && *v == 0));
        // The root maps the whole path without its leading '/'.
        let canon = std::fs::canonicalize(&f).unwrap();
        let rel = canon.to_string_lossy().trim_start_matches('/').to_string();
        let rm = std::fs::metadata("/").unwrap();
        assert!(set
            .by_rel
            .iter()
            .any(|(k, _)| k.ino == rm.ino() && k.hash == fnv1a64(rel.as_bytes())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_capabilities_no_variant_claims_cap_capable() {
        let mut cfg = crate::config::SecurityProbe::default();
        assert!(!cfg.capabilities, "capability records are opt-in");
        for v in spec(&cfg).variants {
            assert!(!v.label.contains("cap_capable"), "{}", v.label);
            assert!(v
                .programs
                .iter()
                .all(|(p, _)| !CAPABILITY_PROGRAMS.contains(p)));
        }
        cfg.capabilities = true;
        assert_eq!(spec(&cfg).variants[0].label, "fentry+tp_btf");
        assert!(spec(&cfg)
            .variants
            .iter()
            .any(|v| v.label == "tp_btf+cap_capable"));
    }

    #[test]
    fn attach_picks_one_kind_of_variant() {
        use crate::config::SecurityAttach as A;
        let mut cfg = crate::config::SecurityProbe {
            capabilities: true,
            ..Default::default()
        };
        let labels = |cfg: &crate::config::SecurityProbe| {
            spec(cfg)
                .variants
                .iter()
                .map(|v| v.label)
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(&cfg).len(), 10);
        cfg.attach = A::Kprobe;
        assert_eq!(labels(&cfg), ["kprobe+tp_btf", "kprobe+tp_btf+dispatch"]);
        cfg.attach = A::Tracepoint;
        assert_eq!(
            labels(&cfg),
            [
                "tp_btf+cap_capable",
                "tp_btf+dispatch+cap_capable",
                "tp_btf-no-capability",
                "tp_btf+dispatch-no-capability",
                "tracepoint+cap_capable",
                "tracepoint-no-capability"
            ]
        );
        cfg.capabilities = false;
        cfg.attach = A::Fentry;
        assert_eq!(
            labels(&cfg),
            [
                "fentry+tp_btf-no-capability",
                "fentry+tp_btf+dispatch-no-capability"
            ]
        );
    }

    #[test]
    fn syscalls_picks_the_tracepoints_or_the_dispatcher() {
        use crate::config::{SecurityAttach as A, SecuritySyscalls as S};
        for (credentials, capabilities) in [(true, true), (true, false), (false, false)] {
            for attach in [A::Auto, A::Fentry, A::Kprobe, A::Tracepoint] {
                let mut cfg = crate::config::SecurityProbe {
                    credentials,
                    capabilities,
                    attach,
                    ..Default::default()
                };
                let auto = spec(&cfg).variants;
                assert!(
                    !auto[0].label.contains("+dispatch"),
                    "per-syscall tracepoints are the default: {}",
                    auto[0].label
                );
                cfg.syscalls = S::Dispatch;
                let d = spec(&cfg).variants;
                cfg.syscalls = S::PerSyscall;
                let t = spec(&cfg).variants;
                assert!(!d.is_empty() && !t.is_empty());
                assert!(d
                    .iter()
                    .all(|v| variant_syscalls(v.label) == Some((true, false))
                        || variant_syscalls(v.label) == Some((true, true))));
                assert!(t
                    .iter()
                    .all(|v| matches!(variant_syscalls(v.label), Some((false, _)))));
                // Auto is both, nothing else.
                assert_eq!(auto.len(), d.len() + t.len());
            }
        }
    }

    #[test]
    fn syscall_numbers_are_x86_64s() {
        let libc_nr = |name: &str| -> i64 {
            match name {
                "setuid" => libc::SYS_setuid,
                "setgid" => libc::SYS_setgid,
                "setreuid" => libc::SYS_setreuid,
                "setregid" => libc::SYS_setregid,
                "setresuid" => libc::SYS_setresuid,
                "setresgid" => libc::SYS_setresgid,
                "setfsuid" => libc::SYS_setfsuid,
                "setfsgid" => libc::SYS_setfsgid,
                "execve" => libc::SYS_execve,
                "execveat" => libc::SYS_execveat,
                "capset" => libc::SYS_capset,
                "unshare" => libc::SYS_unshare,
                "setns" => libc::SYS_setns,
                "ptrace" => libc::SYS_ptrace,
                "process_vm_writev" => libc::SYS_process_vm_writev,
                "mmap" => libc::SYS_mmap,
                "mprotect" => libc::SYS_mprotect,
                "pkey_mprotect" => libc::SYS_pkey_mprotect,
                "bpf" => libc::SYS_bpf,
                "init_module" => libc::SYS_init_module,
                "finit_module" => libc::SYS_finit_module,
                "write" => libc::SYS_write,
                "pwrite64" => libc::SYS_pwrite64,
                "writev" => libc::SYS_writev,
                "pwritev" => libc::SYS_pwritev,
                "pwritev2" => libc::SYS_pwritev2,
                "ftruncate" => libc::SYS_ftruncate,
                "fchmod" => libc::SYS_fchmod,
                "fchown" => libc::SYS_fchown,
                "openat" => libc::SYS_openat,
                "open" => libc::SYS_open,
                "unlink" => libc::SYS_unlink,
                "rmdir" => libc::SYS_rmdir,
                "unlinkat" => libc::SYS_unlinkat,
                "chmod" => libc::SYS_chmod,
                "fchmodat" => libc::SYS_fchmodat,
                "fchmodat2" => libc::SYS_fchmodat2,
                "chown" => libc::SYS_chown,
                "lchown" => libc::SYS_lchown,
                "fchownat" => libc::SYS_fchownat,
                "truncate" => libc::SYS_truncate,
                "rename" => libc::SYS_rename,
                "renameat" => libc::SYS_renameat,
                "renameat2" => libc::SYS_renameat2,
                other => panic!("no libc number for {other}"),
            }
        };
        for (nr, name, _, _) in SYSCALLS {
            assert_eq!(i64::from(*nr), libc_nr(name), "{name}");
            assert_eq!(syscall_name(*nr), *name, "syscall_name({nr})");
            assert!(*nr < tapio_shared::TAPIO_SEC_SYSCALL_MAX, "{name}");
        }
    }

    /// The program the per-syscall variants attach for a dispatcher
    /// handler: the C dispatcher calls that program's body.
    fn program_of(h: u32) -> &'static str {
        use tapio_shared::tapio_sec_syscall as s;
        match h {
            s::TAPIO_SEC_SYS_CRED => PROG_CRED_ENTER,
            s::TAPIO_SEC_SYS_PTRACE => PROG_PTRACE,
            s::TAPIO_SEC_SYS_VM_WRITEV => PROG_VM_WRITEV,
            s::TAPIO_SEC_SYS_MMAP => PROG_MMAP,
            s::TAPIO_SEC_SYS_MPROTECT => PROG_MPROTECT,
            s::TAPIO_SEC_SYS_BPF => PROG_BPF,
            s::TAPIO_SEC_SYS_INIT_MODULE => PROG_INIT_MODULE,
            s::TAPIO_SEC_SYS_FINIT_MODULE => PROG_FINIT_MODULE,
            s::TAPIO_SEC_SYS_WRITE => "tapio_sec_write_enter",
            s::TAPIO_SEC_SYS_FTRUNCATE => "tapio_sec_ftruncate_enter",
            s::TAPIO_SEC_SYS_FCHMOD => "tapio_sec_fchmod_enter",
            s::TAPIO_SEC_SYS_FCHOWN => "tapio_sec_fchown_enter",
            s::TAPIO_SEC_SYS_OPENAT => "tapio_sec_openat_enter",
            s::TAPIO_SEC_SYS_OPEN => "tapio_sec_open_enter",
            s::TAPIO_SEC_SYS_UNLINK => "tapio_sec_unlink_enter",
            s::TAPIO_SEC_SYS_UNLINKAT => "tapio_sec_unlinkat_enter",
            s::TAPIO_SEC_SYS_CHMOD => "tapio_sec_chmod_enter",
            s::TAPIO_SEC_SYS_FCHMODAT => "tapio_sec_fchmodat_enter",
            s::TAPIO_SEC_SYS_CHOWN => "tapio_sec_chown_enter",
            s::TAPIO_SEC_SYS_FCHOWNAT => "tapio_sec_fchownat_enter",
            s::TAPIO_SEC_SYS_TRUNCATE => "tapio_sec_truncate_enter",
            s::TAPIO_SEC_SYS_RENAME => "tapio_sec_rename_enter",
            s::TAPIO_SEC_SYS_RENAMEAT => "tapio_sec_renameat_enter",
            other => panic!("handler {other} has no program"),
        }
    }

    #[test]
    fn the_dispatcher_hooks_exactly_what_the_tracepoints_hook() {
        // VARIANT_TP_CAP attaches one enter tracepoint per syscall of
        // every family (VARIANT_BTF_CAP the same, bar the set*id/exec
        // enters: it hooks their exits only): the dispatcher's table must
        // name the same syscalls, each with the body of the program that
        // tracepoint runs.
        let per_syscall: Vec<(&str, &str)> = VARIANT_TP_CAP
            .programs
            .iter()
            .filter_map(|(p, a)| match a {
                Attach::TracePoint("syscalls", t) | Attach::OptionalTracePoint("syscalls", t) => {
                    t.strip_prefix("sys_enter_").map(|n| (n, *p))
                }
                _ => None,
            })
            .collect();
        assert_eq!(per_syscall.len(), SYSCALLS.len());
        for (_, name, h, _) in SYSCALLS {
            let prog = per_syscall
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .unwrap_or_else(|| panic!("no sys_enter_{name} tracepoint"));
            assert_eq!(prog, program_of(*h), "{name}");
        }
    }

    #[test]
    fn the_dispatch_table_follows_the_config() {
        use tapio_shared::tapio_sec_syscall as s;
        let cfg = crate::config::SecurityProbe::default();
        let has = |t: &[(u32, u32)], nr: u32| t.iter().any(|(n, _)| *n == nr);
        let t = dispatch_table(&cfg, false, false);
        assert!(has(&t, 117) && has(&t, 59), "set*id and exec");
        assert!(has(&t, 101) && has(&t, 321) && has(&t, 313));
        assert!(!has(&t, 1), "no write hook without a watched path");
        assert!(t.iter().all(|(_, h)| *h != s::TAPIO_SEC_SYS_WRITE));
        // commit_creds sees credentials: no set*id/exec in the table.
        let t = dispatch_table(&cfg, true, true);
        assert!(t.iter().all(|(_, h)| *h != s::TAPIO_SEC_SYS_CRED));
        assert!(has(&t, 1) && has(&t, 82));
        let off = crate::config::SecurityProbe {
            credentials: false,
            code_injection: false,
            bpf: false,
            modules: false,
            ..Default::default()
        };
        assert!(dispatch_table(&off, false, false).is_empty());
        // No syscall twice (the array holds one handler per number).
        let all = dispatch_table(&cfg, false, true);
        let mut nrs: Vec<u32> = all.iter().map(|(n, _)| *n).collect();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), all.len());
    }

    #[test]
    fn commit_creds_variants_drop_the_syscall_pairs() {
        // One credential change, one record: a variant with a commit_creds
        // hook must not also attach the set*id/exec pairs.
        for v in SPEC.variants.iter().chain(SPEC_NO_CAPABILITY.variants) {
            let commit = v
                .programs
                .iter()
                .any(|(p, _)| [PROG_COMMIT_CREDS, PROG_COMMIT_CREDS_KP].contains(p));
            let pairs = v
                .programs
                .iter()
                .any(|(p, _)| [PROG_CRED_ENTER, PROG_CRED_EXIT, PROG_CRED_SEEN_EXIT].contains(p));
            // The dispatcher takes set*id/exec into its table exactly when
            // no commit_creds hook loads (see `configure`).
            let (dispatch, commit_seen) = variant_syscalls(v.label).unwrap();
            assert_eq!(commit, commit_seen, "{}", v.label);
            let syscall_creds = pairs || (dispatch && !commit);
            assert!(
                commit != syscall_creds,
                "{}: commit {commit}, syscall pairs {syscall_creds}",
                v.label
            );
        }
        // Neither credentials nor capabilities: no function hook claimed.
        let cfg = crate::config::SecurityProbe {
            credentials: false,
            ..Default::default()
        };
        assert!(spec(&cfg)
            .variants
            .iter()
            .all(|v| !v.label.contains("fentry") && !v.label.contains("kprobe")));
    }

    #[test]
    fn exit_only_credentials_see_births_before_the_exits_and_the_living_after() {
        // The fork hook attaches before the exits and the task iterator
        // runs after them: a task born in between is snapshotted at
        // birth, one alive before by the walk, none falls between.
        let mut seen = 0;
        for v in SPEC.variants.iter().chain(SPEC_NO_CAPABILITY.variants) {
            let at = |name: &str| v.programs.iter().position(|(p, _)| *p == name);
            let exits: Vec<usize> = (0..v.programs.len())
                .filter(|&i| v.programs[i].0 == PROG_CRED_SEEN_EXIT)
                .collect();
            let (Some(fork), Some(iter)) = (at(PROG_CRED_FORK), at(PROG_CRED_ITER)) else {
                assert!(exits.is_empty(), "{}: exits without snapshots", v.label);
                continue;
            };
            seen += 1;
            assert_eq!(exits.len(), 13, "{}", v.label);
            assert!(exits.iter().all(|&i| fork < i && i < iter), "{}", v.label);
            // A thread's exec takes its snapshot at entry, before the exit
            // that compares against it can run.
            let execs: Vec<usize> = (0..v.programs.len())
                .filter(|&i| v.programs[i].0 == PROG_CRED_SEEN_EXEC)
                .collect();
            assert_eq!(execs.len(), 2, "{}", v.label);
            assert!(
                execs.iter().all(|&i| exits.iter().all(|&e| i < e)),
                "{}",
                v.label
            );
            assert!(
                at(PROG_CRED_ENTER).is_none(),
                "{}: enter and exit-only",
                v.label
            );
            assert_eq!(v.programs[iter].1, Attach::Iter("task"));
        }
        assert!(seen >= 2, "the tp_btf per-syscall variants use it");
    }

    #[test]
    fn every_hook_program_is_in_a_family() {
        let cfg = crate::config::SecurityProbe {
            credentials: false,
            capabilities: false,
            code_injection: false,
            modules: false,
            bpf: false,
            ..Default::default()
        };
        let w = Handler::wanted(&cfg);
        for v in SPEC.variants {
            for (p, _) in v.programs {
                assert!(!w(p), "{p} is attached with every family off");
            }
        }
    }
}
