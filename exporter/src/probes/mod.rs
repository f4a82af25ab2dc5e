//! Probes: one module per `ebpf/<probe>.bpf.c`, each declaring its attach
//! variants and decoding its records. `load` picks the best variant the
//! running kernel accepts.

pub mod dns;
pub mod encrypted_dns;
pub mod etcd;
pub mod kernel;
#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod lsm;
pub mod memory;
pub mod netns;
pub mod network;
#[cfg(test)]
mod otlp_json;
pub mod process;
pub mod scope;
pub mod security;
pub mod systemd;
pub mod tc;
pub mod xdp;

use crate::bpf_objects::{
    GLOBAL_SAMPLE_THRESHOLD, GLOBAL_SLOW_NS, GLOBAL_WAKEUP_BYTES, MAP_EVENTS, MAP_LOST, MAP_TWIN,
};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{
        cgroup_skb::CgroupSkbAttachType, links::CgroupAttachMode, BtfTracePoint, CgroupSkb, FEntry,
        FExit, KProbe, ProgramError, TracePoint,
    },
    Btf, Ebpf, EbpfLoader,
};

/// How one program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// `tp_btf/<name>`.
    BtfTracePoint(&'static str),
    /// `tp_btf/<name>` where the kernel takes it; a refusal costs this
    /// program's own signal (logged), not the probe's others.
    OptionalBtfTracePoint(&'static str),
    /// `tracepoint/<category>/<name>`.
    TracePoint(&'static str, &'static str),
    /// `tracepoint/<category>/<name>` where the kernel has it; skipped
    /// (not an error) when tracefs has no such event, e.g. the module
    /// syscalls on a kernel built without CONFIG_MODULES.
    OptionalTracePoint(&'static str, &'static str),
    /// `cgroup_skb/{ingress,egress}` on the cgroup v2 root (every socket).
    CgroupSkb(SkbDirection),
    /// `fentry/<function>` (BPF trampoline, 5.5+; refused where the kernel
    /// allows no trampolines).
    FEntry(&'static str),
    /// `fexit/<function>`: the arguments and the return value.
    FExit(&'static str),
    /// `kprobe/<function>` or `kretprobe/<function>` (the program's section
    /// says which); needs CONFIG_KPROBES.
    KProbe(&'static str),
    /// `iter/<target>` (5.8+), run once where it stands in the list (after
    /// the hooks before it attached): a walk of every kernel object of the
    /// kind, e.g. `task`, to fill a map the hooks then keep up to date.
    Iter(&'static str),
}

/// Which way a cgroup_skb program sees packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkbDirection {
    Ingress,
    Egress,
}

impl From<SkbDirection> for CgroupSkbAttachType {
    fn from(d: SkbDirection) -> Self {
        match d {
            SkbDirection::Ingress => CgroupSkbAttachType::Ingress,
            SkbDirection::Egress => CgroupSkbAttachType::Egress,
        }
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` or, in hybrid mode,
/// `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
    })
}

/// One way of attaching a probe: all of its programs load, or none.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Reported by `tapio probes` and as `tapio.attach_type`.
    pub label: &'static str,
    pub programs: &'static [(&'static str, Attach)],
}

/// A probe: its object and its variants, best first.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSpec {
    pub name: &'static str,
    pub object: &'static [u8],
    pub variants: &'static [Variant],
}

/// Every probe Tapio has.
pub const ALL: &[ProbeSpec] = &[
    process::SPEC,
    network::SPEC,
    dns::SPEC,
    security::SPEC,
    kernel::SPEC,
    etcd::SPEC,
    systemd::SPEC,
    netns::SPEC,
];

/// A ring-buffer record that is not what its probe writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Short(#[from] tapio_shared::ShortRecord),
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
}

/// Text from a fixed-size C char array: up to `len` bytes or the first NUL.
pub fn cstr(raw: &[core::ffi::c_char], len: usize) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take(len.min(raw.len()))
        .map(|c| *c as u8)
        .take_while(|b| *b != 0)
        .collect();
    // Valid UTF-8 (nearly always) keeps the Vec: one allocation, not two.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{probe}: cannot load the BPF object: {source}")]
    Object {
        probe: &'static str,
        #[source]
        source: aya::EbpfError,
    },
    #[error("{probe}: no attach variant works on this kernel:\n{reasons}")]
    NoVariant {
        probe: &'static str,
        reasons: String,
    },
    #[error("{probe}: the object has no map `{map}`")]
    MissingMap {
        probe: &'static str,
        map: &'static str,
    },
    #[error("{probe}: map `{map}`: {source}")]
    Map {
        probe: &'static str,
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// The last lines of a verifier log: the rejection is at the end.
fn verifier_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n      ")
}

/// A program error in words, with the verifier's reasons when it refused.
pub fn describe(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = format!("{verifier_log:?}");
            let tail = verifier_tail(&log, 12);
            if tail.is_empty() {
                format!("BPF_PROG_LOAD: {io_error}")
            } else {
                format!("BPF_PROG_LOAD: {io_error}; verifier log tail:\n      {tail}")
            }
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(e) = src {
                s.push_str(&format!(": {e}"));
                src = e.source();
            }
            s
        }
    }
}

/// A kernel 16-byte address (IPv6, or IPv4 v4-mapped) as an [`IpAddr`]:
/// v4-mapped comes back as IPv4.
pub fn ip_from16(raw: [u8; 16]) -> std::net::IpAddr {
    let v6 = std::net::Ipv6Addr::from(raw);
    match v6.to_ipv4_mapped() {
        Some(v4) => std::net::IpAddr::V4(v4),
        None => std::net::IpAddr::V6(v6),
    }
}

/// The kernel's 16-byte form of `ip` (IPv4 v4-mapped).
pub fn ip_to16(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Attach a TC program to `iface`: tcx (6.6+) where the kernel has it,
/// else a filter on the clsact qdisc (added if missing; an existing one,
/// ours or another tool's, is shared). Returns whether tcx was used and,
/// if not, why tcx was refused.
pub fn attach_tc(
    prog: &mut aya::programs::SchedClassifier,
    iface: &str,
    dir: aya::programs::TcAttachType,
) -> Result<(bool, Option<String>), String> {
    use aya::programs::tc::{self, NlOptions, TcAttachOptions};
    let tcx = match prog.attach_with_options(
        iface,
        dir,
        TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default()),
    ) {
        Ok(_) => return Ok((true, None)),
        Err(e) => describe(&e),
    };
    if let Err(e) = tc::qdisc_add_clsact(iface) {
        let exists =
            matches!(&e, tc::TcError::NetlinkError(io) if io.raw_os_error() == Some(libc::EEXIST));
        if !exists {
            return Err(format!("tcx: {tcx}; adding clsact: {e}"));
        }
    }
    prog.attach_with_options(iface, dir, TcAttachOptions::Netlink(NlOptions::default()))
        .map(|_| (false, Some(tcx.clone())))
        .map_err(|e| format!("tcx: {tcx}; clsact: {}", describe(&e)))
}

/// Take map `map` of `probe`'s object out as a typed map.
pub fn take_map<T>(ebpf: &mut Ebpf, probe: &'static str, map: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf
        .take_map(map)
        .ok_or(LoadError::MissingMap { probe, map })?;
    T::try_from(m).map_err(|source| LoadError::Map { probe, map, source })
}

/// The words of a per-port nibble array holding `entries` (values above
/// 15 keep their low four bits; every kind of port is 1-3).
fn port_words(entries: &[(u16, u8)]) -> std::collections::BTreeMap<u32, u64> {
    let mut words = std::collections::BTreeMap::new();
    for &(port, v) in entries {
        *words.entry(u32::from(port / 16)).or_insert(0u64) |=
            u64::from(v & 0xf) << ((port % 16) * 4);
    }
    words
}

/// Load (and when `attach`, attach) every program of `v` whose role
/// `wanted` accepts. On failure the programs loaded so far are unloaded.
fn try_variant(
    ebpf: &mut Ebpf,
    v: &Variant,
    btf: Option<&Btf>,
    attach: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let mut loaded: Vec<&str> = Vec::new();
    let result = (|| {
        for (prog, how) in v.programs {
            if !wanted(prog) {
                continue;
            }
            let p = ebpf
                .program_mut(prog)
                .ok_or_else(|| format!("program {prog} missing from the object"))?;
            match how {
                Attach::BtfTracePoint(tp) => {
                    let btf = btf.ok_or("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")?;
                    let p: &mut BtfTracePoint = p.try_into().map_err(|e| describe(&e))?;
                    p.load(tp, btf)
                        .map_err(|e| format!("{prog}: {}", describe(&e)))?;
                    loaded.push(prog);
                    if attach {
                        p.attach()
                            .map_err(|e| format!("{prog}: attach: {}", describe(&e)))?;
                    }
                }
                Attach::OptionalBtfTracePoint(tp) => {
                    let step = (|| {
                        let btf = btf.ok_or("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")?;
                        let p: &mut BtfTracePoint = p.try_into().map_err(|e| describe(&e))?;
                        p.load(tp, btf)
                            .map_err(|e| format!("{prog}: {}", describe(&e)))?;
                        if attach {
                            p.attach()
                                .map_err(|e| format!("{prog}: attach: {}", describe(&e)))?;
                        }
                        Ok::<(), String>(())
                    })();
                    if let Err(why) = step {
                        tracing::warn!("optional program not running: {why}");
                    }
                }
                Attach::CgroupSkb(dir) => {
                    let p: &mut CgroupSkb = p.try_into().map_err(|e| describe(&e))?;
                    p.load().map_err(|e| format!("{prog}: {}", describe(&e)))?;
                    loaded.push(prog);
                    if attach {
                        let root =
                            cgroup2_root().ok_or("no cgroup v2 mount for cgroup_skb programs")?;
                        let f = std::fs::File::open(&root).map_err(|e| format!("{root}: {e}"))?;
                        // A bpf_link (5.7+) takes no multi flag and never
                        // displaces other programs on the cgroup.
                        p.attach(&f, (*dir).into(), CgroupAttachMode::Single)
                            .map_err(|e| format!("{prog}: attach to {root}: {}", describe(&e)))?;
                    }
                }
                Attach::FEntry(func) | Attach::FExit(func) => {
                    let btf = btf.ok_or("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")?;
                    // FEntry and FExit share no trait in aya; same steps.
                    // The kernel refuses trampolines at load where it has
                    // none (EPERM here, 6.18).
                    macro_rules! trampoline {
                        ($ty:ty, $kind:literal) => {{
                            let p: &mut $ty = p.try_into().map_err(|e| describe(&e))?;
                            p.load(func, btf).map_err(|e| {
                                format!("{prog}: {}/{func}: {}", $kind, describe(&e))
                            })?;
                            loaded.push(prog);
                            if attach {
                                p.attach().map_err(|e| {
                                    format!("{prog}: attach {func}: {}", describe(&e))
                                })?;
                            }
                        }};
                    }
                    if matches!(how, Attach::FEntry(_)) {
                        trampoline!(FEntry, "fentry")
                    } else {
                        trampoline!(FExit, "fexit")
                    }
                }
                Attach::Iter(target) => {
                    let btf = btf.ok_or("kernel BTF unavailable (/sys/kernel/btf/vmlinux)")?;
                    let p: &mut aya::programs::Iter = p.try_into().map_err(|e| describe(&e))?;
                    p.load(target, btf)
                        .map_err(|e| format!("{prog}: iter/{target}: {}", describe(&e)))?;
                    loaded.push(prog);
                    if attach {
                        run_iter(p).map_err(|e| format!("{prog}: iter/{target}: {e}"))?;
                    }
                }
                Attach::KProbe(func) => {
                    // A kprobe program loads on kernels without kprobes
                    // (the type only needs BPF events); only attaching
                    // would fail, and `tapio probes` does not attach.
                    if !kprobes_available() {
                        return Err(format!(
                            "{prog}: this kernel has no kprobes (CONFIG_KPROBES off)"
                        ));
                    }
                    let p: &mut KProbe = p.try_into().map_err(|e| describe(&e))?;
                    if p.fd().is_err() {
                        p.load().map_err(|e| format!("{prog}: {}", describe(&e)))?;
                        loaded.push(prog);
                    }
                    if attach {
                        p.attach(func, 0)
                            .map_err(|e| format!("{prog}: attach {func}: {}", describe(&e)))?;
                    }
                }
                Attach::TracePoint(cat, name) | Attach::OptionalTracePoint(cat, name) => {
                    let optional = matches!(how, Attach::OptionalTracePoint(..));
                    let missing = tracefs_mounted() && !tracepoint_exists(cat, name);
                    // Say so plainly: loading would fail first, on a CO-RE
                    // relocation of the missing event's record type.
                    if missing && !optional {
                        return Err(format!(
                            "{prog}: this kernel has no tracepoint {cat}/{name}"
                        ));
                    }
                    if missing {
                        // Not even loaded: its record type may not exist
                        // either (an event renamed between kernels).
                        continue;
                    }
                    let p: &mut TracePoint = p.try_into().map_err(|e| describe(&e))?;
                    // One program may serve several tracepoints (the same
                    // body for every syscall of a family): load it once.
                    let step = (|| {
                        if p.fd().is_err() {
                            p.load().map_err(|e| format!("{prog}: {}", describe(&e)))?;
                            loaded.push(prog);
                        }
                        if attach {
                            p.attach(cat, name).map_err(|e| {
                                format!("{prog}: attach {cat}/{name}: {}", describe(&e))
                            })?;
                        }
                        Ok::<(), String>(())
                    })();
                    match step {
                        // An optional program the kernel refuses costs its
                        // own signal, not the probe's others.
                        Err(why) if optional => {
                            tracing::warn!("optional program not running: {why}");
                        }
                        r => r?,
                    }
                }
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for prog in loaded {
            if let Some(p) = ebpf.program_mut(prog) {
                let _ = unload(p);
            }
        }
    }
    result
}

/// Run an iterator program once: reading its link's file to the end
/// walks every object (the program writes nothing there); the link goes
/// with the file.
fn run_iter(p: &mut aya::programs::Iter) -> Result<(), String> {
    let id = p.attach().map_err(|e| describe(&e))?;
    let link = p.take_link(id).map_err(|e| describe(&e))?;
    let mut file = link.into_file().map_err(|e| e.to_string())?;
    std::io::copy(&mut file, &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| format!("read: {e}"))
}

/// Is tracefs mounted (so that a missing event really is missing)?
fn tracefs_mounted() -> bool {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).is_dir())
}

/// Can kprobes be created (the perf `kprobe` PMU, or tracefs's
/// `kprobe_events`)?
pub fn kprobes_available() -> bool {
    [
        "/sys/bus/event_source/devices/kprobe/type",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// Does tracefs list `category/name` on this kernel?
pub fn tracepoint_exists(category: &str, name: &str) -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|root| std::path::Path::new(&format!("{root}/events/{category}/{name}")).exists())
}

fn unload(p: &mut aya::programs::Program) -> Result<(), ProgramError> {
    use aya::programs::Program;
    match p {
        Program::BtfTracePoint(p) => p.unload(),
        Program::TracePoint(p) => p.unload(),
        Program::CgroupSkb(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        _ => Ok(()),
    }
}

/// The outcome of trying a probe's variants on this kernel.
pub struct Loaded {
    pub ebpf: Ebpf,
    /// Label of the variant that loaded.
    pub variant: &'static str,
    /// Why the better variants did not.
    pub skipped: Vec<(&'static str, String)>,
}

/// How a probe's ring buffer is sized and drained, and the sampling
/// globals of the probes that sample.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub bytes: u32,
    /// Wake userspace only once this many bytes wait (0: every record).
    pub wakeup_bytes: u64,
    /// `Some((threshold, slow_ns))` for objects with sampling globals.
    pub sampling: Option<(u32, u64)>,
    /// `probes.scope`, for the objects that include `tapio_scope.h`.
    pub scope: Option<scope::CgroupScope>,
}

/// `bpf_get_prandom_u32() <= threshold` keeps a record: rate 1.0 keeps all.
pub fn sample_threshold(rate: f64) -> u32 {
    if rate >= 1.0 {
        u32::MAX
    } else if rate <= 0.0 {
        0
    } else {
        (rate * f64::from(u32::MAX)) as u32
    }
}

impl RingConfig {
    /// Batch wakeups at an eighth of the ring, unless the interval is zero.
    pub fn new(bytes: u64, wakeup_interval: std::time::Duration) -> Self {
        let bytes = bytes.min(u64::from(u32::MAX)) as u32;
        let wakeup_bytes = if wakeup_interval.is_zero() {
            0
        } else {
            u64::from(bytes / 8)
        };
        Self {
            bytes,
            wakeup_bytes,
            sampling: None,
            scope: None,
        }
    }

    /// Record only tasks in `scope` (None: every task).
    pub fn scoped(mut self, scope: Option<scope::CgroupScope>) -> Self {
        self.scope = scope;
        self
    }

    /// With the sampling globals set.
    pub fn sampled(mut self, rate: f64, slow: std::time::Duration) -> Self {
        self.sampling = Some((
            sample_threshold(rate),
            slow.as_nanos().min(u128::from(u64::MAX)) as u64,
        ));
        self
    }
}

/// Create a probe's maps and load, then attach if `attach`, the best
/// variant the kernel accepts.
pub fn load(
    spec: &ProbeSpec,
    ring: RingConfig,
    btf: Option<&Btf>,
    attach: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Loaded, LoadError> {
    let mut loader = EbpfLoader::with_btf(btf);
    // aya 0.14 has no wrapper type for task storage (the security probe's
    // per-task syscall state) and refuses such maps unless allowed; they are
    // still created from their BTF definition like any other map, and only
    // the BPF side uses them.
    loader
        .allow_unsupported_maps()
        .map_max_entries(MAP_EVENTS, ring.bytes)
        .override_global(GLOBAL_WAKEUP_BYTES, &ring.wakeup_bytes, true);
    let (threshold, slow_ns) = ring.sampling.unwrap_or((u32::MAX, 0));
    if ring.sampling.is_some() {
        loader
            .override_global(GLOBAL_SAMPLE_THRESHOLD, &threshold, true)
            .override_global(GLOBAL_SLOW_NS, &slow_ns, false);
    }
    let (scope_id, scope_level) = ring.scope.map_or((0, 0), |s| (s.id, s.level));
    if ring.scope.is_some() {
        loader
            .override_global(scope::GLOBAL_CGROUP, &scope_id, true)
            .override_global(scope::GLOBAL_LEVEL, &scope_level, true);
    }
    // Unscoped, the dns probe's flow map is never touched: one entry.
    loader.map_max_entries(
        scope::MAP_DNS_FLOWS,
        if ring.scope.is_some() {
            scope::DNS_FLOWS_SCOPED
        } else {
            1
        },
    );
    load_with(spec, loader, btf, attach, wanted)
}

/// [`load`] with a loader the probe has set up (globals of its own).
pub fn load_with(
    spec: &ProbeSpec,
    mut loader: EbpfLoader<'_>,
    btf: Option<&Btf>,
    attach: bool,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Loaded, LoadError> {
    let mut ebpf = loader
        .load(spec.object)
        .map_err(|source| LoadError::Object {
            probe: spec.name,
            source,
        })?;
    let mut skipped = Vec::new();
    for v in spec.variants {
        match try_variant(&mut ebpf, v, btf, attach, wanted) {
            Ok(()) => {
                return Ok(Loaded {
                    ebpf,
                    variant: v.label,
                    skipped,
                })
            }
            Err(why) => skipped.push((v.label, why)),
        }
    }
    let reasons = skipped
        .iter()
        .map(|(l, why)| format!("  {l}: {why}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(LoadError::NoVariant {
        probe: spec.name,
        reasons,
    })
}

impl Loaded {
    /// Take the probe's ring buffer, to be read by a [`crate::reader`].
    pub fn take_ringbuf(&mut self, probe: &'static str) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(MAP_EVENTS)
            .ok_or(LoadError::MissingMap {
                probe,
                map: MAP_EVENTS,
            })?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            probe,
            map: MAP_EVENTS,
            source,
        })
    }

    /// Take a per-CPU array map of `V` out of the object.
    pub fn take_percpu_array<V: aya::Pod>(
        &mut self,
        probe: &'static str,
        map: &'static str,
    ) -> Result<PerCpuArray<MapData, V>, LoadError> {
        let m = self
            .ebpf
            .take_map(map)
            .ok_or(LoadError::MissingMap { probe, map })?;
        PerCpuArray::try_from(m).map_err(|source| LoadError::Map { probe, map, source })
    }

    /// Set `map[index] = value` in an array map of u32.
    pub fn set_u32(
        &mut self,
        probe: &'static str,
        map: &'static str,
        index: u32,
        value: u32,
    ) -> Result<(), LoadError> {
        let m = self
            .ebpf
            .map_mut(map)
            .ok_or(LoadError::MissingMap { probe, map })?;
        let mut arr: aya::maps::Array<_, u32> = aya::maps::Array::try_from(m)
            .map_err(|source| LoadError::Map { probe, map, source })?;
        arr.set(index, value, 0)
            .map_err(|source| LoadError::Map { probe, map, source })
    }

    /// Set `(port, value)` in a per-port array of 4-bit values, 16 ports
    /// to a `u64` word (word `port / 16`, bits `(port % 16) * 4`; 0 means
    /// "not this kind of port"; see `port_value` in ebpf/dns.bpf.c).
    pub fn fill_port_array(
        &mut self,
        probe: &'static str,
        map: &'static str,
        entries: &[(u16, u8)],
    ) -> Result<(), LoadError> {
        let m = self
            .ebpf
            .map_mut(map)
            .ok_or(LoadError::MissingMap { probe, map })?;
        let mut words: aya::maps::Array<_, u64> = aya::maps::Array::try_from(m)
            .map_err(|source| LoadError::Map { probe, map, source })?;
        for (index, word) in port_words(entries) {
            words
                .set(index, word, 0)
                .map_err(|source| LoadError::Map { probe, map, source })?;
        }
        Ok(())
    }

    /// The DoH resolver name hashes into the probe's `u64 -> u8` set.
    pub fn fill_doh_names(
        &mut self,
        probe: &'static str,
        map: &'static str,
        cfg: &crate::config::EncryptedDns,
    ) -> Result<(), LoadError> {
        let m = self
            .ebpf
            .map_mut(map)
            .ok_or(LoadError::MissingMap { probe, map })?;
        let mut set = aya::maps::HashMap::try_from(m).map_err(|source| LoadError::Map {
            probe,
            map,
            source,
        })?;
        encrypted_dns::fill_names(&mut set, cfg).map_err(|source| LoadError::Map {
            probe,
            map,
            source,
        })
    }

    /// A reader of the runs the kernel skipped of this probe's loaded
    /// programs because one was already running on that CPU (summed), less
    /// those a `_nested` twin did in their place (`tapio_twin`'s covered
    /// slot), leaving out the programs whose skipped runs cannot be events
    /// (`crate::prog_info::misses_may_be_events`). Takes the twin map out
    /// of the object.
    pub fn recursion_reader(&mut self) -> crate::telemetry::RecursionReader {
        let twin: Option<PerCpuArray<MapData, u64>> = self
            .ebpf
            .take_map(MAP_TWIN)
            .and_then(|m| PerCpuArray::try_from(m).ok());
        let fds: Vec<aya::programs::ProgramFd> = self
            .ebpf
            .programs()
            .filter(|(n, _)| crate::prog_info::misses_may_be_events(n))
            .filter_map(|(_, p)| p.fd().ok()?.try_clone().ok())
            .collect();
        Box::new(move || {
            use std::os::fd::AsFd;
            let misses: u64 = fds
                .iter()
                .filter_map(|fd| crate::prog_info::recursion_misses(fd.as_fd()))
                .sum();
            let covered = twin.as_ref().map_or(0, |m| {
                m.get(&tapio_shared::tapio_twin_slot::TAPIO_TWIN_COVERED, 0)
                    .map_or(0, |v| v.iter().sum::<u64>())
            });
            misses.saturating_sub(covered)
        })
    }

    /// A reader of the probe's per-CPU loss counters, summed over CPUs.
    pub fn lost_reader(
        &mut self,
        probe: &'static str,
    ) -> Result<crate::telemetry::KernelLostReader, LoadError> {
        let map = self.ebpf.take_map(MAP_LOST).ok_or(LoadError::MissingMap {
            probe,
            map: MAP_LOST,
        })?;
        let arr: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
                probe,
                map: MAP_LOST,
                source,
            })?;
        let n = crate::telemetry::KERNEL_LOST_REASONS.len() as u32;
        Ok(Box::new(move || {
            (0..n)
                .map(|i| arr.get(&i, 0).ok().map(|v| v.iter().sum::<u64>()))
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each port's value lands in its word's nibble, as `port_value` in
    /// ebpf/dns.bpf.c reads it back.
    #[test]
    fn port_values_are_nibbles_of_their_word() {
        let entries = [(53u16, 1u8), (853, 1), (443, 3), (0xffff, 2), (48, 1)];
        let words = port_words(&entries);
        let read = |port: u16| {
            (words.get(&u32::from(port / 16)).copied().unwrap_or(0) >> ((port % 16) * 4)) & 0xf
        };
        for (port, v) in entries {
            assert_eq!(read(port), u64::from(v), "port {port}");
        }
        for port in [0u16, 52, 54, 49, 442, 444, 852, 0xfffe] {
            assert_eq!(read(port), 0, "port {port}");
        }
        assert_eq!(words.len(), 5 - 1); // 48 and 53 share word 3
    }

    #[test]
    fn cstr_stops_at_nul_and_len() {
        let raw: Vec<core::ffi::c_char> = b"abc\0def"
            .iter()
            .map(|b| *b as core::ffi::c_char)
            .collect();
        assert_eq!(cstr(&raw, 7), "abc");
        assert_eq!(cstr(&raw, 2), "ab");
        assert_eq!(cstr(&raw, 100), "abc");
    }

    #[test]
    fn sample_thresholds() {
        assert_eq!(sample_threshold(1.0), u32::MAX);
        assert_eq!(sample_threshold(0.0), 0);
        assert_eq!(sample_threshold(0.5), u32::MAX / 2);
    }

    #[test]
    fn verifier_tail_keeps_the_end() {
        let log = (0..30)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n");
        let t = verifier_tail(&log, 3);
        assert!(t.starts_with("line 27") && t.ends_with("line 29"), "{t}");
    }

    #[test]
    fn every_probe_has_a_variant_without_trampolines() {
        // This machine's kernel refuses fentry/fexit/LSM: each probe needs a
        // variant made only of tracepoint-family attachments.
        for p in ALL {
            assert!(p
                .variants
                .iter()
                .any(|v| v.programs.iter().all(|(_, a)| matches!(
                    a,
                    Attach::TracePoint(..)
                        | Attach::OptionalTracePoint(..)
                        | Attach::BtfTracePoint(..)
                        | Attach::OptionalBtfTracePoint(..)
                        | Attach::CgroupSkb(..)
                        | Attach::Iter(..)
                ))));
        }
    }
}
