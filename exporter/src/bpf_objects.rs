//! The compiled BPF objects, embedded so one binary is all a node needs.
//! `build.rs` compiles `ebpf/<probe>.bpf.c` into `$OUT_DIR/<probe>.bpf.o`.

/// `ebpf/process.bpf.c`.
pub static PROCESS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/process.bpf.o"));

/// `ebpf/network.bpf.c`.
pub static NETWORK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/network.bpf.o"));

/// `ebpf/dns.bpf.c`.
pub static DNS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns.bpf.o"));

/// `ebpf/xdp.bpf.c`.
pub static XDP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp.bpf.o"));
/// `ebpf/security.bpf.c`.
pub static SECURITY: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/security.bpf.o"));

/// `ebpf/lsm.bpf.c`.
pub static LSM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lsm.bpf.o"));
/// `ebpf/tc.bpf.c`.
pub static TC: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tc.bpf.o"));

/// `ebpf/kernel.bpf.c`.
pub static KERNEL: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kernel.bpf.o"));

/// `ebpf/etcd.bpf.c`.
pub static ETCD: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/etcd.bpf.o"));

/// Which clang compiled them.
pub const CLANG: &str = include_str!(concat!(env!("OUT_DIR"), "/clang-used.txt"));

/// Map names every probe object defines (`TAPIO_PROBE_MAPS` in
/// `ebpf/include/tapio_bpf.h`).
pub const MAP_EVENTS: &str = "tapio_events";
pub const MAP_LOST: &str = "tapio_lost";
/// Per-CPU slots of a tp_btf program's twin (`enum tapio_twin_slot`).
pub const MAP_TWIN: &str = "tapio_twin";

/// `.rodata` global: ring-buffer bytes that trigger a wakeup (tapio_bpf.h).
pub const GLOBAL_WAKEUP_BYTES: &str = "tapio_wakeup_bytes";
/// `.rodata` globals of probes that sample (network, dns).
pub const GLOBAL_SAMPLE_THRESHOLD: &str = "tapio_sample_threshold";
pub const GLOBAL_SLOW_NS: &str = "tapio_slow_ns";

/// `ebpf/systemd.bpf.c`.
pub static SYSTEMD: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/systemd.bpf.o"));

/// `ebpf/netns.bpf.c`.
pub static NETNS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netns.bpf.o"));
