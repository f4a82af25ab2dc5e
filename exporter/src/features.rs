//! What this kernel and process can do, for `tapio probes` and for clear
//! errors at start-up (not root, no BTF, no tracefs...).

use aya::programs::{LsmAttachType, ProgramType};
use std::path::Path;

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
pub const BPFFS: &str = "/sys/fs/bpf";
pub const TRACEFS: &str = "/sys/kernel/tracing";
const SECURITYFS_LSM: &str = "/sys/kernel/security/lsm";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability bits of this process.
fn cap_eff() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Whether this process may load tracing BPF programs.
pub fn privileged() -> bool {
    let caps = cap_eff();
    let has = |c: u32| caps & (1u64 << c) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

pub fn has_btf() -> bool {
    Path::new(BTF_PATH).exists()
}

fn fs_magic(path: &str) -> Option<i64> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const TRACEFS_MAGIC: i64 = 0x74726163;
const SECURITYFS_MAGIC: i64 = 0x73636673;

pub fn bpffs_mounted() -> bool {
    fs_magic(BPFFS) == Some(BPF_FS_MAGIC)
}

pub fn tracefs_mounted() -> bool {
    fs_magic(TRACEFS) == Some(TRACEFS_MAGIC)
}

fn mount(fstype: &str, target: &str) -> std::io::Result<()> {
    let src = std::ffi::CString::new(fstype)?;
    let dst = std::ffi::CString::new(target)?;
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Mount tracefs (classic tracepoints need it), bpffs and securityfs where
/// they are missing. Best effort: a failure is reported by `tapio probes`
/// and surfaces as the attach error of the probe that needed it.
pub fn mount_pseudo_filesystems() {
    for (fs, path, magic) in [
        ("tracefs", TRACEFS, TRACEFS_MAGIC),
        ("bpf", BPFFS, BPF_FS_MAGIC),
        ("securityfs", "/sys/kernel/security", SECURITYFS_MAGIC),
    ] {
        if fs_magic(path) != Some(magic) && Path::new(path).is_dir() {
            match mount(fs, path) {
                Ok(()) => tracing::info!("mounted {fs} at {path}"),
                Err(e) => tracing::debug!("cannot mount {fs} at {path}: {e}"),
            }
        }
    }
}

/// Pre-5.11 kernels charge BPF memory to RLIMIT_MEMLOCK.
pub fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(
            "cannot raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn kernel_at_least(major: u8, minor: u8) -> bool {
    aya::util::KernelVersion::current()
        .map(|v| v >= aya::util::KernelVersion::new(major, minor, 0))
        .unwrap_or(false)
}

/// Program types Tapio's probes use or fall back to, probed by loading a
/// minimal program of each type (what `bpftool feature probe` does).
pub fn program_types() -> Vec<(&'static str, Result<bool, String>)> {
    let types: [(&str, ProgramType); 10] = [
        ("tracepoint", ProgramType::TracePoint),
        ("raw_tracepoint", ProgramType::RawTracePoint),
        ("tracing: fentry/fexit", ProgramType::Tracing),
        ("lsm (BPF LSM)", ProgramType::Lsm(LsmAttachType::Mac)),
        ("kprobe", ProgramType::KProbe),
        ("xdp", ProgramType::Xdp),
        ("sched_cls (tc)", ProgramType::SchedClassifier),
        ("cgroup_sock_addr", ProgramType::CgroupSockAddr),
        ("cgroup_device", ProgramType::CgroupDevice),
        ("socket_filter", ProgramType::SocketFilter),
    ];
    types
        .into_iter()
        .map(|(n, t)| {
            (
                n,
                aya::sys::is_program_supported(t).map_err(|e| e.to_string()),
            )
        })
        .collect()
}

/// Facts `tapio probes` prints, each with the reason behind it.
pub fn kernel_facts() -> Vec<(&'static str, bool, String)> {
    let lsms = std::fs::read_to_string(SECURITYFS_LSM).unwrap_or_default();
    let kprobe_pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    vec![
        (
            "privileges",
            privileged(),
            "CAP_SYS_ADMIN, or CAP_BPF + CAP_PERFMON, in the effective set".into(),
        ),
        (
            "btf",
            has_btf(),
            format!("{BTF_PATH} (CO-RE relocations, tp_btf)"),
        ),
        ("bpffs", bpffs_mounted(), format!("{BPFFS} (pinning)")),
        (
            "tracefs",
            tracefs_mounted(),
            format!("{TRACEFS} (classic tracepoints)"),
        ),
        (
            "bpf_lsm_active",
            lsms.split(',').any(|l| l.trim() == "bpf"),
            format!(
                "`bpf` in {SECURITYFS_LSM}: {}",
                if lsms.is_empty() {
                    "(unreadable)"
                } else {
                    lsms.trim()
                }
            ),
        ),
        (
            "kprobes",
            kprobe_pmu,
            "kprobe PMU in /sys/bus/event_source/devices (CONFIG_KPROBES)".into(),
        ),
        (
            "tcx",
            kernel_at_least(6, 6),
            "TC links (tcx) arrived in 6.6; clsact before".into(),
        ),
        (
            "ringbuf",
            kernel_at_least(5, 8),
            "BPF ring buffer arrived in 5.8".into(),
        ),
    ]
}
