//! The tc probe: `ebpf/tc.bpf.c` ↔ this module. A TC classifier on the
//! ingress and egress of the interfaces named in config:
//!
//! - per-CPU traffic counters by L7 protocol → `tapio.tc.packets`/`bytes`;
//! - `network.flow.classified` logs (with the TLS server name) when
//!   `probes.tc.flow_logs` is on;
//! - a live policy ([`TcTarget`]): weighted load balancing of virtual
//!   services, the circuit breaker ([`Breakers`], run here from the
//!   kernel's per-backend SYN-ACK/RST counts), and chaos experiments.
//!
//! Interfaces come from config, so this probe is not a static
//! [`super::ProbeSpec`]: [`load`] loads the object with aya's `EbpfLoader`
//! and attaches to each interface, tcx first and clsact where the kernel
//! has no tcx.

#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

use super::{describe, LoadError, Loaded, RingConfig};
use crate::bpf_objects::{GLOBAL_WAKEUP_BYTES, MAP_EVENTS};
use crate::config::{ChaosDirection, L4Protocol, TcPolicy, TcProbe};
use crate::policy::{PolicyError, PolicyTarget};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::{SchedClassifier, TcAttachType};
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_tc_addr, tapio_tc_backend,
    tapio_tc_backend_stats, tapio_tc_cb_state as cb, tapio_tc_cfg, tapio_tc_chaos, tapio_tc_count,
    tapio_tc_flow, tapio_tc_flow_flags, tapio_tc_key, tapio_tc_proto as proto, tapio_tc_service,
    TAPIO_TC_MAX_CHAOS,
};

pub const NAME: &str = "tc";
pub const PROG_INGRESS: &str = "tapio_tc_ingress";
pub const PROG_EGRESS: &str = "tapio_tc_egress";
pub const MAP_COUNTS: &str = "tapio_tc_counts";
pub const MAP_GEN: &str = "tapio_tc_gen";
pub const MAP_CFGS: &str = "tapio_tc_cfgs";
pub const MAP_SERVICES: &str = "tapio_tc_services";
pub const MAP_CB: &str = "tapio_tc_cb";
pub const MAP_CB_RUN: &str = "tapio_tc_cb_run";
pub const MAP_BSTATS: &str = "tapio_tc_bstats";
pub const MAP_EXPERIMENTS: &str = "tapio_tc_experiments";
pub const MAP_CHAOS_DROPS: &str = "tapio_tc_chaos_drops";
pub const MAP_VIPS: &str = "tapio_tc_vips";
pub const MAP_DEADLINES: &str = "tapio_tc_deadlines";
pub const MAP_EXEMPT: &str = "tapio_tc_exempt";
pub const MAP_DOT_PORTS: &str = "tapio_tc_dot_ports";
pub const MAP_DOH_NAMES: &str = "tapio_tc_doh_names";
/// Where [`MAP_DEADLINES`] is pinned (bpffs is cleared at boot, as
/// CLOCK_BOOTTIME deadlines need).
pub const DEADLINES_PIN: &str = "/sys/fs/bpf/tapio/tc_chaos_deadlines";
pub const MAP_FRAG_COUNTS: &str = "tapio_tc_frag_counts";
/// `tapio_tc_frag_counts` slots (enum frag_counter in tc.bpf.c).
pub const FRAG_TRANSLATED: u32 = 0;
pub const FRAG_UNMATCHED: u32 = 1;

/// Attach types, reported by `tapio probes` and as `tapio.attach_type`.
pub const VARIANT_TCX: &str = "tcx";
pub const VARIANT_CLSACT: &str = "clsact";
pub const VARIANT_MIXED: &str = "tcx+clsact";

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// `network.protocol.name` of a kernel protocol number.
pub fn proto_name(p: u32) -> &'static str {
    match p {
        proto::TAPIO_TC_HTTP => "http",
        proto::TAPIO_TC_HTTP2 => "http2",
        proto::TAPIO_TC_GRPC => "grpc",
        proto::TAPIO_TC_TLS => "tls",
        proto::TAPIO_TC_DNS => "dns",
        proto::TAPIO_TC_MYSQL => "mysql",
        proto::TAPIO_TC_POSTGRESQL => "postgresql",
        proto::TAPIO_TC_REDIS => "redis",
        proto::TAPIO_TC_KAFKA => "kafka",
        proto::TAPIO_TC_DOT => super::encrypted_dns::DOT,
        proto::TAPIO_TC_DOH => super::encrypted_dns::DOH,
        _ => "unknown",
    }
}

/// `network.io.direction` (semconv) of a hook direction.
pub fn direction_name(d: u8) -> &'static str {
    if d == 0 {
        "receive"
    } else {
        "transmit"
    }
}

/// An interface as config names it: `IFNAME` or `NETNS/IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub config: String,
    pub netns: Option<String>,
    pub name: String,
}

impl Iface {
    pub fn parse(s: &str) -> Self {
        match s.split_once('/') {
            Some((ns, name)) => Self {
                config: s.to_string(),
                netns: Some(ns.to_string()),
                name: name.to_string(),
            },
            None => Self {
                config: s.to_string(),
                netns: None,
                name: s.to_string(),
            },
        }
    }
}

/// Run `f` on a thread that has entered network namespace `ns` (by
/// `ip netns` name): interface names, tcx links and netlink sockets all
/// resolve in the calling thread's namespace. Without `ns`, run it here.
fn in_netns<T: Send>(
    ns: Option<&str>,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    let Some(ns) = ns else {
        return f();
    };
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns on this thread only, with an fd we own; the
            // thread ends right after `f`.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
            }
            f()
        })
        .join()
        .map_err(|_| "attach thread panicked".to_string())?
    })
}

fn ifindex(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("{name:?}: bad name"))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(format!(
            "interface {name}: {}",
            std::io::Error::last_os_error()
        ))
    } else {
        Ok(i)
    }
}

/// The link-layer type (`ARPHRD_*`) of interface `name` in the calling
/// thread's network namespace. Asked with SIOCGIFHWADDR on a socket made
/// here: `/sys/class/net` shows the namespace sysfs was mounted in, not
/// the one an attach thread has entered.
pub fn link_type(name: &str) -> Result<u16, String> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(format!("interface {name}: name too long"));
    }
    // SAFETY: a plain socket(2); the fd is owned and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: just created and owned here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of `req`,
    // which lives across the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCGIFHWADDR,
            &mut req,
        )
    };
    if rc != 0 {
        return Err(format!(
            "interface {name}: link type: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the kernel filled the hwaddr member of the union.
    Ok(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

fn link_type_name(t: u16) -> &'static str {
    match t {
        libc::ARPHRD_NONE => "none (tun, wireguard)",
        libc::ARPHRD_TUNNEL => "ipip",
        libc::ARPHRD_TUNNEL6 => "ip6tnl",
        libc::ARPHRD_SIT => "sit",
        libc::ARPHRD_IPGRE => "gre",
        823 => "ip6gre",
        libc::ARPHRD_PPP => "ppp",
        libc::ARPHRD_INFINIBAND => "infiniband",
        519 => "rawip",
        _ => "not Ethernet",
    }
}

/// The XDP and tc programs read an Ethernet header first: on a device
/// without one (L3 devices: tun, wireguard, ip tunnels) every packet would
/// be misparsed, so such a device is refused rather than filtered wrongly.
/// Loopback frames carry an (all-zero) Ethernet header.
pub fn require_ethernet(name: &str) -> Result<(), String> {
    match link_type(name)? {
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Ok(()),
        t => Err(format!(
            "interface {name} has link type {t} ({}), without an Ethernet header; \
             Tapio's packet programs parse Ethernet frames, so they are not attached to it",
            link_type_name(t)
        )),
    }
}

/// Remove the clsact filters named `prog` from `iface` in `dir`. A Tapio
/// that died without cleaning up (SIGKILL, OOM kill) leaves its clsact
/// filters attached, with its last policy in their maps (tcx links and
/// XDP links die with their process; clsact filters do not), and the next
/// Tapio would run beside them: counting twice, injecting chaos twice.
/// Filters are found by the program name aya gives them. Failing to look
/// is logged, not fatal: the attach that follows still works.
pub fn remove_leftover_filters(iface: &str, dir: TcAttachType, prog: &str) {
    match aya::programs::tc::qdisc_detach_program(iface, dir, prog) {
        Ok(()) => tracing::warn!(
            interface = iface,
            program = prog,
            "removed clsact filters a previous Tapio left attached"
        ),
        Err(aya::programs::tc::TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {
        }
        // No clsact qdisc on the device: nothing can be left over.
        Err(aya::programs::tc::TcError::NetlinkError(e))
            if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {}
        Err(e) => tracing::warn!(
            interface = iface,
            program = prog,
            "looking for leftover clsact filters: {e}"
        ),
    }
}

/// Names of the interfaces the probe runs on, by ifindex (as the kernel
/// reports them in counter keys).
pub type IfNames = HashMap<u32, String>;

/// Load the object and, when `attach`, attach both programs to every
/// interface of `cfg`. `encrypted` says which TLS flows are DoT and DoH.
pub fn load(
    cfg: &TcProbe,
    encrypted: &crate::config::EncryptedDns,
    ring: RingConfig,
    btf: Option<&aya::Btf>,
    attach: bool,
) -> Result<(Loaded, IfNames), LoadError> {
    let mut loader = aya::EbpfLoader::with_btf(btf);
    loader
        .map_max_entries(MAP_EVENTS, ring.bytes)
        .override_global(GLOBAL_WAKEUP_BYTES, &ring.wakeup_bytes, true);
    if attach {
        let pin = std::path::Path::new(DEADLINES_PIN);
        let dir_ok = crate::features::bpffs_mounted()
            && pin
                .parent()
                .is_some_and(|d| std::fs::create_dir_all(d).is_ok());
        if dir_ok {
            loader.map_pin_path(MAP_DEADLINES, pin);
        } else {
            tracing::warn!(
                "no bpffs at {}: chaos experiments restart their duration when Tapio restarts",
                crate::features::BPFFS
            );
        }
    }
    let mut ebpf = loader
        .load(crate::bpf_objects::TC)
        .map_err(|source| LoadError::Object {
            probe: NAME,
            source,
        })?;
    let fail = |reasons: String| LoadError::NoVariant {
        probe: NAME,
        reasons,
    };
    fill_encrypted_dns(&mut ebpf, encrypted)?;
    let ifaces: Vec<Iface> = cfg.interfaces.iter().map(|s| Iface::parse(s)).collect();
    let mut names = IfNames::new();
    let mut used_tcx = Vec::new();
    let mut skipped = Vec::new();
    for (prog_name, dir) in [
        (PROG_INGRESS, TcAttachType::Ingress),
        (PROG_EGRESS, TcAttachType::Egress),
    ] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(prog_name)
            .ok_or_else(|| fail(format!("  program {prog_name} missing from the object")))?
            .try_into()
            .map_err(|e| fail(format!("  {prog_name}: {}", describe(&e))))?;
        prog.load()
            .map_err(|e| fail(format!("  {prog_name}: {}", describe(&e))))?;
        if !attach {
            continue;
        }
        for iface in &ifaces {
            let name = iface.name.clone();
            let (idx, tcx, why) = in_netns(iface.netns.as_deref(), || {
                let idx = ifindex(&name)?;
                require_ethernet(&name)?;
                remove_leftover_filters(&name, dir, prog_name);
                let (tcx, why) = super::attach_tc(prog, &name, dir)?;
                Ok((idx, tcx, why))
            })
            .map_err(|e| fail(format!("  {prog_name} on {}: {e}", iface.config)))?;
            names.insert(idx, iface.config.clone());
            used_tcx.push(tcx);
            if let Some(w) = why {
                skipped.push((VARIANT_TCX, format!("{}: {w}", iface.config)));
            }
        }
    }
    let variant = if used_tcx.iter().all(|t| *t) {
        VARIANT_TCX
    } else if used_tcx.iter().all(|t| !*t) {
        VARIANT_CLSACT
    } else {
        VARIANT_MIXED
    };
    skipped.dedup();
    Ok((
        Loaded {
            ebpf,
            variant,
            skipped,
        },
        names,
    ))
}

/// DoT ports and DoH resolver names, before any packet is classified.
fn fill_encrypted_dns(
    ebpf: &mut aya::Ebpf,
    cfg: &crate::config::EncryptedDns,
) -> Result<(), LoadError> {
    let err = |map: &'static str| {
        move |source| LoadError::Map {
            probe: NAME,
            map,
            source,
        }
    };
    let m = ebpf.map_mut(MAP_DOT_PORTS).ok_or(LoadError::MissingMap {
        probe: NAME,
        map: MAP_DOT_PORTS,
    })?;
    let mut ports: BpfHashMap<_, u16, u8> = BpfHashMap::try_from(m).map_err(err(MAP_DOT_PORTS))?;
    for p in &cfg.dot_ports {
        ports.insert(p, 1, 0).map_err(err(MAP_DOT_PORTS))?;
    }
    let m = ebpf.map_mut(MAP_DOH_NAMES).ok_or(LoadError::MissingMap {
        probe: NAME,
        map: MAP_DOH_NAMES,
    })?;
    let mut names = BpfHashMap::try_from(m).map_err(err(MAP_DOH_NAMES))?;
    super::encrypted_dns::fill_names(&mut names, cfg).map_err(err(MAP_DOH_NAMES))
}

/// Whether this kernel can create tcx links (6.6+): `BPF_LINK_CREATE`
/// with `BPF_TCX_INGRESS` on ifindex 0 fails with ENODEV where tcx
/// exists (the device lookup comes after the attach type is accepted)
/// and EINVAL where it does not. Nothing is attached.
pub fn tcx_supported(prog_fd: std::os::fd::BorrowedFd<'_>) -> bool {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_TCX_INGRESS: u32 = 46;
    // union bpf_attr.link_create: prog_fd, target_ifindex, attach_type, flags.
    let mut attr = [0u32; 32];
    attr[0] = std::os::fd::AsRawFd::as_raw_fd(&prog_fd) as u32;
    attr[1] = 0;
    attr[2] = BPF_TCX_INGRESS;
    // SAFETY: bpf(2) with a zeroed, correctly sized attr.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if rc >= 0 {
        // SAFETY: a link fd we just got and own.
        unsafe { libc::close(rc as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::ENODEV)
}

/// Whether EDT latency injection can work: it needs the fq qdisc. From
/// the kernel's config (`/proc/config.gz`, `/boot/config-*`), a loaded
/// `sch_fq`, or its module file.
pub fn fq_available() -> (bool, String) {
    if std::path::Path::new("/sys/module/sch_fq").exists() {
        return (true, "sch_fq is loaded".into());
    }
    let release = crate::features::kernel_release();
    let config = read_gz("/proc/config.gz")
        .or_else(|| std::fs::read_to_string(format!("/boot/config-{release}")).ok());
    if let Some(c) = config {
        return match c.lines().find(|l| l.starts_with("CONFIG_NET_SCH_FQ=")) {
            Some(l) if l.ends_with("=y") => (true, "CONFIG_NET_SCH_FQ=y".into()),
            Some(l) if l.ends_with("=m") => {
                let dir = format!("/lib/modules/{release}/kernel/net/sched");
                let present = std::fs::read_dir(&dir)
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .any(|e| e.file_name().to_string_lossy().starts_with("sch_fq.ko"))
                    })
                    .unwrap_or(false);
                if present {
                    (true, "sch_fq module available".into())
                } else {
                    (false, format!("CONFIG_NET_SCH_FQ=m but no module in {dir}"))
                }
            }
            _ => (
                false,
                "this kernel is built without the fq qdisc (CONFIG_NET_SCH_FQ)".into(),
            ),
        };
    }
    (
        false,
        "cannot tell whether the fq qdisc exists (no kernel config, sch_fq not loaded)".into(),
    )
}

fn read_gz(path: &str) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// A decided flow, from a `tapio_tc_flow` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub ts_boot_ns: u64,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub ifindex: u32,
    pub protocol: &'static str,
    pub transport: &'static str,
    pub sni: Option<String>,
    pub sni_cut: bool,
}

pub use super::DecodeError;

pub fn decode(bytes: &[u8]) -> Result<Flow, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_TC_FLOW as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_tc_flow = read_record(bytes)?;
    let t = super::network::Tuple::from(&r.tuple);
    let n = usize::from(r.sni_len).min(r.sni.len());
    let sni = (n > 0).then(|| {
        let b: Vec<u8> = r.sni[..n].iter().map(|c| *c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    });
    Ok(Flow {
        ts_boot_ns: r.hdr.ts_ns,
        client: SocketAddr::new(t.local, t.local_port),
        server: SocketAddr::new(t.remote, t.remote_port),
        ifindex: r.ifindex,
        protocol: proto_name(u32::from(r.proto)),
        transport: if r.l4proto == IPPROTO_UDP {
            "udp"
        } else {
            "tcp"
        },
        sni,
        sni_cut: r.flags & tapio_tc_flow_flags::TAPIO_TC_SNI_CUT != 0,
    })
}

/// Turns `tapio_tc_flow` records into `network.flow.classified` logs.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: Arc<crate::telemetry::ProbeStats>,
    pub clock: crate::clock::WallClock,
    pub ifnames: Arc<IfNames>,
    pub logs: bool,
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        let Some(flow) = self.stats.decoded(decode(record)) else {
            return;
        };
        if self.logs {
            let iface = self
                .ifnames
                .get(&flow.ifindex)
                .cloned()
                .unwrap_or_else(|| flow.ifindex.to_string());
            let (clock, now) = (&self.clock, crate::clock::unix_ns());
            crate::encode_log!(self.emitter, |enc| otlp::flow_classified(
                enc, &flow, &iface, clock, now
            ));
        }
        let lat = crate::clock::boot_ns().saturating_sub(flow.ts_boot_ns);
        self.stats.latency.record_ns(lat);
    }
}

/// The socket addresses of `urls` (`scheme://host[:port][/path]`; the port
/// defaults by scheme), resolved now. Unresolvable ones are logged and
/// skipped: they cannot be protected, and must not stop the policy. A
/// Unix socket (`unix:///path`) sends no packets a policy could touch.
pub fn resolve_endpoints(urls: &[String]) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for url in urls {
        if crate::config::unix_socket_path(url).is_some() {
            continue;
        }
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, p)) => (h, p.strip_prefix(':').and_then(|p| p.parse().ok())),
                None => (v6, None),
            },
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()),
                None => (authority, None),
            },
        };
        match (host, port.unwrap_or(default_port)).to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => tracing::warn!(
                endpoint = %url,
                "cannot resolve Tapio's own endpoint, so it is not exempt from packet policies: {e}"
            ),
        }
    }
    out
}

/// FNV-1a, 64 bits: a stable hash (std's is seeded per process).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn v4(a: &SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(v) => Some(*v),
        SocketAddr::V6(_) => None,
    }
}

fn l4(p: L4Protocol) -> u8 {
    match p {
        L4Protocol::Tcp => IPPROTO_TCP,
        L4Protocol::Udp => IPPROTO_UDP,
    }
}

/// The kernel key of a backend or virtual address.
fn addr_key(a: SocketAddrV4, proto: u8, gen: u8) -> tapio_tc_addr {
    tapio_tc_addr {
        addr: u32::from_ne_bytes(a.ip().octets()),
        port: a.port().to_be(),
        proto,
        generation: gen,
    }
}

#[cfg(test)]
fn key_addr(k: &tapio_tc_addr) -> SocketAddrV4 {
    SocketAddrV4::new(
        std::net::Ipv4Addr::from(k.addr.to_ne_bytes()),
        u16::from_be(k.port),
    )
}

/// One backend's circuit breaker.
#[derive(Debug, Clone)]
struct Breaker {
    service: String,
    state: u32,
    in_a_row: u64,
    seen_failures: u64,
    seen_successes: u64,
    opened: Option<Instant>,
}

pub fn breaker_state_name(s: u32) -> &'static str {
    match s {
        cb::TAPIO_TC_CB_OPEN => "open",
        cb::TAPIO_TC_CB_HALF_OPEN => "half_open",
        _ => "closed",
    }
}

/// A state change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerChange {
    pub service: String,
    pub backend: SocketAddrV4,
    pub from: u32,
    pub to: u32,
    pub failures_in_a_row: u64,
}

/// The breaker state machine, kept apart from the maps so it is tested
/// without a kernel.
impl Breaker {
    fn new(service: &str) -> Self {
        Self {
            service: service.to_string(),
            state: cb::TAPIO_TC_CB_CLOSED,
            in_a_row: 0,
            seen_failures: 0,
            seen_successes: 0,
            opened: None,
        }
    }

    /// The kernel opened this breaker: take its counts and open.
    fn adopt_open(&mut self, failures: u64, successes: u64, now: Instant) -> Option<u32> {
        self.in_a_row += failures.saturating_sub(self.seen_failures);
        self.seen_failures = failures;
        self.seen_successes = successes;
        self.state = cb::TAPIO_TC_CB_OPEN;
        self.opened = Some(now);
        Some(self.state)
    }

    /// Feed cumulative counts; returns the new state when it changed.
    fn step(
        &mut self,
        failures: u64,
        successes: u64,
        now: Instant,
        cfg: &crate::config::CircuitBreaker,
    ) -> Option<u32> {
        let df = failures.saturating_sub(self.seen_failures);
        let ds = successes.saturating_sub(self.seen_successes);
        self.seen_failures = failures;
        self.seen_successes = successes;
        let before = self.state;
        match self.state {
            cb::TAPIO_TC_CB_CLOSED => {
                if ds > 0 {
                    self.in_a_row = 0;
                }
                self.in_a_row += df;
                if self.in_a_row >= u64::from(cfg.max_failures) {
                    self.state = cb::TAPIO_TC_CB_OPEN;
                    self.opened = Some(now);
                }
            }
            cb::TAPIO_TC_CB_OPEN => {
                if self
                    .opened
                    .is_some_and(|t| now.duration_since(t) >= cfg.cool_down)
                {
                    self.state = cb::TAPIO_TC_CB_HALF_OPEN;
                }
            }
            _ => {
                // Half-open: the first answer decides.
                if df > 0 {
                    self.state = cb::TAPIO_TC_CB_OPEN;
                    self.opened = Some(now);
                    self.in_a_row += df;
                } else if ds > 0 {
                    self.state = cb::TAPIO_TC_CB_CLOSED;
                    self.in_a_row = 0;
                    self.opened = None;
                }
            }
        }
        (self.state != before).then_some(self.state)
    }
}

/// The probe's maps and the policy in force; shared by the policy
/// target, the breaker loop and the metric producer.
pub struct Shared {
    counts: PerCpuHashMap<MapData, tapio_tc_key, tapio_tc_count>,
    bstats: PerCpuHashMap<MapData, tapio_tc_addr, tapio_tc_backend_stats>,
    drops: PerCpuArray<MapData, u64>,
    gen: Array<MapData, u32>,
    cfgs: Array<MapData, tapio_tc_cfg>,
    services: BpfHashMap<MapData, tapio_tc_addr, tapio_tc_service>,
    experiments: Array<MapData, tapio_tc_chaos>,
    cb: BpfHashMap<MapData, tapio_tc_addr, u32>,
    cb_run: BpfHashMap<MapData, tapio_tc_addr, u64>,
    vips: BpfHashMap<MapData, tapio_tc_addr, u8>,
    /// Endpoints chaos never touches: v4-mapped address + port (network
    /// order) + 2 bytes of padding; rewritten by each apply.
    exempt: BpfHashMap<MapData, [u8; 20], u8>,
    /// Tapio's own endpoints (URLs), resolved into `exempt` at each apply.
    protect: Vec<String>,
    /// Pinned: experiment key -> [deadline ns, owner] (see [`Self::apply`]).
    stored: BpfHashMap<MapData, u64, [u64; 2]>,
    /// Hash of the interfaces: the stored deadlines that are this instance's.
    owner: u64,
    /// Whether a policy was applied yet (stored deadlines are resumed only
    /// by the first).
    applied_once: bool,
    ifnames: Arc<IfNames>,
    active: u32,
    policy: TcPolicy,
    /// Experiment names by slot in the active generation.
    slot_names: Vec<String>,
    /// Drops of experiments counted in retired generations, by name.
    retired_drops: HashMap<String, u64>,
    /// Deadline (CLOCK_BOOTTIME ns) of each running experiment, kept while
    /// its definition is unchanged.
    deadlines: HashMap<String, (crate::config::ChaosExperiment, u64)>,
    breakers: HashMap<(SocketAddrV4, u8), Breaker>,
    fq: (bool, String),
    ncpus: usize,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> PolicyError {
    move |source| PolicyError::Map {
        probe: NAME,
        map,
        source,
    }
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    loaded: &mut Loaded,
    map: &'static str,
) -> Result<T, LoadError> {
    let m = loaded
        .ebpf
        .take_map(map)
        .ok_or(LoadError::MissingMap { probe: NAME, map })?;
    T::try_from(m).map_err(|source| LoadError::Map {
        probe: NAME,
        map,
        source,
    })
}

impl Shared {
    pub fn new(loaded: &mut Loaded, ifnames: Arc<IfNames>) -> Result<Self, LoadError> {
        Ok(Self {
            counts: take(loaded, MAP_COUNTS)?,
            bstats: take(loaded, MAP_BSTATS)?,
            drops: take(loaded, MAP_CHAOS_DROPS)?,
            gen: take(loaded, MAP_GEN)?,
            cfgs: take(loaded, MAP_CFGS)?,
            services: take(loaded, MAP_SERVICES)?,
            experiments: take(loaded, MAP_EXPERIMENTS)?,
            cb: take(loaded, MAP_CB)?,
            cb_run: take(loaded, MAP_CB_RUN)?,
            vips: take(loaded, MAP_VIPS)?,
            exempt: take(loaded, MAP_EXEMPT)?,
            protect: Vec::new(),
            stored: take(loaded, MAP_DEADLINES)?,
            owner: {
                let mut names: Vec<&String> = ifnames.values().collect();
                names.sort();
                fnv1a(serde_json::to_string(&names).unwrap_or_default().as_bytes())
            },
            applied_once: false,
            ifnames,
            active: 0,
            policy: TcPolicy::default(),
            slot_names: Vec::new(),
            retired_drops: HashMap::new(),
            deadlines: HashMap::new(),
            breakers: HashMap::new(),
            fq: fq_available(),
            ncpus: aya::util::nr_cpus().map_err(|(_, e)| LoadError::NoVariant {
                probe: NAME,
                reasons: format!("  counting possible CPUs: {e}"),
            })?,
        })
    }

    /// Never inject chaos into traffic with `urls` (Tapio's own endpoints,
    /// [`crate::config::Settings::own_endpoints`]); resolved at each apply.
    pub fn protecting(mut self, urls: Vec<String>) -> Self {
        self.protect = urls;
        self
    }

    /// Put the resolved own endpoints in the exemption map. It is not
    /// double-buffered: it changes only when a name resolves differently,
    /// and chaos is the only thing that reads it.
    fn refresh_exempt(&mut self) -> Result<(), PolicyError> {
        let want: Vec<[u8; 20]> = resolve_endpoints(&self.protect)
            .into_iter()
            .map(|a| {
                let mut k = [0u8; 20];
                k[..16].copy_from_slice(&super::ip_to16(a.ip()));
                k[16..18].copy_from_slice(&a.port().to_be_bytes());
                k
            })
            .collect();
        let old: Vec<[u8; 20]> = self.exempt.keys().filter_map(Result::ok).collect();
        for k in old.iter().filter(|k| !want.contains(k)) {
            self.exempt.remove(k).map_err(map_err(MAP_EXEMPT))?;
        }
        for k in want.iter().filter(|k| !old.contains(k)) {
            self.exempt.insert(k, 1, 0).map_err(map_err(MAP_EXEMPT))?;
        }
        Ok(())
    }

    /// Stage `policy` in the generation the kernel is not reading, then
    /// flip. On error nothing the kernel reads has changed.
    pub fn apply(&mut self, policy: &TcPolicy) -> Result<(), PolicyError> {
        if !self.fq.0 {
            if let Some(e) = policy
                .chaos
                .experiments
                .iter()
                .find(|e| !e.latency.is_zero())
            {
                return Err(PolicyError::Unsupported {
                    probe: NAME,
                    message: format!(
                        "chaos experiment {:?}: latency injection needs the fq qdisc, and {}",
                        e.name, self.fq.1
                    ),
                });
            }
        }
        self.refresh_exempt()?;
        let next = 1 - self.active;
        let g = next as u8;
        // Leftovers of the generation before last.
        let stale: Vec<tapio_tc_addr> = self
            .services
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == g)
            .collect();
        for k in &stale {
            self.services.remove(k).map_err(map_err(MAP_SERVICES))?;
        }
        let stale: Vec<tapio_tc_addr> = self
            .vips
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == g)
            .collect();
        for k in &stale {
            self.vips.remove(k).map_err(map_err(MAP_VIPS))?;
        }
        for s in &policy.services {
            let Some(vip) = v4(&s.address) else { continue };
            let p = l4(s.protocol);
            let mut svc = tapio_tc_service::default();
            for (i, b) in s.backends.iter().enumerate().take(svc.backends.len()) {
                let Some(ba) = v4(&b.address) else { continue };
                let k = addr_key(ba, p, 0);
                svc.backends[i] = tapio_tc_backend {
                    addr: k.addr,
                    port: k.port,
                    weight: b.weight,
                };
                svc.n_backends = i as u32 + 1;
                svc.total_weight += u32::from(b.weight);
            }
            self.services
                .insert(addr_key(vip, p, g), svc, 0)
                .map_err(map_err(MAP_SERVICES))?;
            // Any port: later fragments carry none.
            let any = addr_key(SocketAddrV4::new(*vip.ip(), 0), 0, g);
            self.vips.insert(any, 1, 0).map_err(map_err(MAP_VIPS))?;
        }
        // Chaos: deadlines survive a reload while the experiment is unchanged,
        // and a restart: the first policy applied resumes the deadlines
        // stored (pinned) by the Tapio before.
        let now = crate::clock::boot_ns();
        let mut deadlines = HashMap::new();
        let mut names = Vec::new();
        for (i, e) in policy.chaos.experiments.iter().enumerate() {
            let key = self.experiment_key(e);
            let stored = (!self.applied_once)
                .then(|| self.stored.get(&key, 0).ok())
                .flatten()
                .filter(|v| v[1] == self.owner)
                .map(|v| v[0]);
            let expires = match (self.deadlines.get(&e.name), stored) {
                (Some((old, t)), _) if old == e => *t,
                (_, Some(t)) => {
                    tracing::info!(
                        experiment = %e.name,
                        deadline_boot_ns = t,
                        resumed = true,
                        "chaos experiment keeps the deadline it had before the restart"
                    );
                    t
                }
                _ => {
                    let t =
                        now.saturating_add(e.duration.as_nanos().min(u128::from(u64::MAX)) as u64);
                    tracing::info!(
                        experiment = %e.name,
                        deadline_boot_ns = t,
                        resumed = false,
                        "chaos experiment starts"
                    );
                    t
                }
            };
            deadlines.insert(e.name.clone(), (e.clone(), expires));
            let slot = next * TAPIO_TC_MAX_CHAOS + i as u32;
            let c = tapio_tc_chaos {
                expires_ns: expires,
                delay_ns: e.latency.as_nanos().min(u128::from(u64::MAX)) as u64,
                // Dropped when bpf_get_prandom_u32() < threshold.
                loss_threshold: (e.loss * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32,
                port: e.port,
                proto: e.protocol.map(l4).unwrap_or(0),
                direction: match e.direction {
                    ChaosDirection::Ingress => 0,
                    ChaosDirection::Egress => 1,
                    ChaosDirection::Both => 2,
                },
            };
            self.experiments
                .set(slot, c, 0)
                .map_err(map_err(MAP_EXPERIMENTS))?;
            let zeros = PerCpuValues::try_from(vec![0u64; self.ncpus]).map_err(|e| {
                PolicyError::Unsupported {
                    probe: NAME,
                    message: format!("per-CPU values: {e}"),
                }
            })?;
            self.drops
                .set(slot, zeros, 0)
                .map_err(map_err(MAP_CHAOS_DROPS))?;
            names.push(e.name.clone());
        }
        let cfg = tapio_tc_cfg {
            n_chaos: policy.chaos.experiments.len() as u32,
            chaos_off: u32::from(policy.chaos.disabled),
            max_failures: policy
                .circuit_breaker
                .as_ref()
                .map_or(0, |c| c.max_failures),
        };
        self.cfgs.set(next, cfg, 0).map_err(map_err(MAP_CFGS))?;
        // The switch: one map write.
        self.gen.set(0, next, 0).map_err(map_err(MAP_GEN))?;
        // Fold the retired generation's drops into the totals by name.
        for (i, name) in self.slot_names.iter().enumerate() {
            let slot = self.active * TAPIO_TC_MAX_CHAOS + i as u32;
            if let Ok(v) = self.drops.get(&slot, 0) {
                *self.retired_drops.entry(name.clone()).or_default() += v.iter().sum::<u64>();
            }
        }
        self.active = next;
        self.slot_names = names;
        self.store_deadlines(&deadlines);
        self.deadlines = deadlines;
        self.applied_once = true;
        // Backends no longer in any service lose their breaker.
        let wanted: std::collections::HashSet<(SocketAddrV4, u8)> = policy
            .services
            .iter()
            .flat_map(|s| {
                let p = l4(s.protocol);
                s.backends
                    .iter()
                    .filter_map(move |b| v4(&b.address).map(|a| (a, p)))
            })
            .collect();
        let gone: Vec<(SocketAddrV4, u8)> = self
            .breakers
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for k in gone {
            self.breakers.remove(&k);
            let _ = self.cb.remove(&addr_key(k.0, k.1, 0));
            let _ = self.cb_run.remove(&addr_key(k.0, k.1, 0));
        }
        if policy.circuit_breaker.is_none() {
            for (k, b) in self.breakers.iter_mut() {
                b.state = cb::TAPIO_TC_CB_CLOSED;
                let _ = self.cb.remove(&addr_key(k.0, k.1, 0));
                // A breaker enabled later starts from a clean run.
                let _ = self.cb_run.remove(&addr_key(k.0, k.1, 0));
            }
        }
        self.policy = policy.clone();
        Ok(())
    }

    /// The stored-deadline key of an experiment: its whole definition and
    /// the interfaces, so a changed experiment starts afresh.
    fn experiment_key(&self, e: &crate::config::ChaosExperiment) -> u64 {
        let def = serde_json::to_string(e).unwrap_or_else(|_| e.name.clone());
        fnv1a(format!("{}|{def}", self.owner).as_bytes())
    }

    /// Make the pinned map hold exactly this instance's running
    /// experiments (other instances' entries are left alone). Best effort:
    /// a failure costs only the deadline's survival of a restart.
    fn store_deadlines(
        &mut self,
        deadlines: &HashMap<String, (crate::config::ChaosExperiment, u64)>,
    ) {
        let want: HashMap<u64, u64> = deadlines
            .values()
            .map(|(e, t)| (self.experiment_key(e), *t))
            .collect();
        let ours_gone: Vec<u64> = self
            .stored
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| v[1] == self.owner && !want.contains_key(k))
            .map(|(k, _)| k)
            .collect();
        for k in ours_gone {
            let _ = self.stored.remove(&k);
        }
        for (k, t) in want {
            if let Err(e) = self.stored.insert(k, [t, self.owner], 0) {
                tracing::warn!("storing a chaos deadline in {MAP_DEADLINES}: {e}");
            }
        }
    }

    /// One breaker tick: read the kernel's per-backend counts and move
    /// the state machines; returns the changes to report.
    pub fn breaker_tick(&mut self, now: Instant) -> Vec<BreakerChange> {
        let Some(cfg) = self.policy.circuit_breaker.clone() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let backends: Vec<(String, SocketAddrV4, u8)> = self
            .policy
            .services
            .iter()
            .flat_map(|s| {
                let p = l4(s.protocol);
                s.backends
                    .iter()
                    .filter_map(move |b| v4(&b.address).map(|a| (s.name.clone(), a, p)))
            })
            .collect();
        for (service, addr, p) in backends {
            let k = addr_key(addr, p, 0);
            let (failures, successes) = match self.bstats.get(&k, 0) {
                Ok(v) => v
                    .iter()
                    .fold((0, 0), |(f, s), x| (f + x.failures, s + x.successes)),
                Err(_) => (0, 0),
            };
            let b = self.breakers.entry((addr, p)).or_insert_with(|| {
                let mut b = Breaker::new(&service);
                // Start from the counts so far: history is not failures.
                b.seen_failures = failures;
                b.seen_successes = successes;
                b
            });
            let from = b.state;
            // The kernel opens a breaker itself at max_failures in a row
            // (so the bound holds however late this tick is): adopt it.
            let kernel_open = self.cb.get(&k, 0).ok() == Some(cb::TAPIO_TC_CB_OPEN);
            let step = if kernel_open && from != cb::TAPIO_TC_CB_OPEN {
                b.adopt_open(failures, successes, now)
            } else {
                b.step(failures, successes, now, &cfg)
            };
            if let Some(to) = step {
                let r = if to == cb::TAPIO_TC_CB_CLOSED {
                    self.cb.remove(&k)
                } else {
                    self.cb.insert(k, to, 0)
                };
                if let Err(e) = r {
                    tracing::warn!(backend = %addr, "circuit breaker: writing {MAP_CB}: {e}");
                }
                changes.push(BreakerChange {
                    service: b.service.clone(),
                    backend: addr,
                    from,
                    to,
                    failures_in_a_row: b.in_a_row,
                });
            }
        }
        changes
    }

    /// Every tc metric, cumulative since `start`.
    pub fn metrics(
        &self,
        start: u64,
        now: u64,
    ) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
        use crate::otel::{kv_int, kv_str, metrics, names};
        let mut packets = Vec::new();
        let mut bytes = Vec::new();
        for (k, v) in self.counts.iter().filter_map(Result::ok) {
            let (p, b) = v
                .iter()
                .fold((0u64, 0u64), |(p, b), c| (p + c.packets, b + c.bytes));
            let iface = self
                .ifnames
                .get(&k.ifindex)
                .cloned()
                .unwrap_or_else(|| k.ifindex.to_string());
            let attrs = vec![
                kv_str(
                    names::attr::NETWORK_PROTOCOL_NAME,
                    proto_name(u32::from(k.proto)),
                ),
                kv_str(
                    names::attr::NETWORK_IO_DIRECTION,
                    direction_name(k.direction),
                ),
                kv_int(names::attr::SERVER_PORT, i64::from(k.server_port)),
                kv_str(names::attr::NETWORK_INTERFACE_NAME, iface),
            ];
            packets.push((attrs.clone(), p));
            bytes.push((attrs, b));
        }
        let mut out = Vec::new();
        if !packets.is_empty() {
            out.push(metrics::counter(&names::TC_PACKETS, start, now, packets));
            out.push(metrics::counter(&names::TC_BYTES, start, now, bytes));
        }
        let mut conns = Vec::new();
        let mut fails = Vec::new();
        let mut states = Vec::new();
        for s in &self.policy.services {
            let p = l4(s.protocol);
            for b in &s.backends {
                let Some(a) = v4(&b.address) else { continue };
                let attrs = vec![
                    kv_str(names::attr::TAPIO_TC_SERVICE, s.name.clone()),
                    kv_str(names::attr::TAPIO_TC_BACKEND, a.to_string()),
                ];
                let (c, f) = match self.bstats.get(&addr_key(a, p, 0), 0) {
                    Ok(v) => v
                        .iter()
                        .fold((0, 0), |(c, f), x| (c + x.connections, f + x.failures)),
                    Err(_) => (0, 0),
                };
                conns.push((attrs.clone(), c));
                fails.push((attrs.clone(), f));
                if self.policy.circuit_breaker.is_some() {
                    let st = self
                        .breakers
                        .get(&(a, p))
                        .map_or(cb::TAPIO_TC_CB_CLOSED, |b| b.state);
                    states.push((attrs, u64::from(st)));
                }
            }
        }
        if !conns.is_empty() {
            out.push(metrics::counter(
                &names::TC_LB_CONNECTIONS,
                start,
                now,
                conns,
            ));
            out.push(metrics::counter(&names::TC_LB_FAILURES, start, now, fails));
        }
        if !states.is_empty() {
            out.push(metrics::gauge(
                &names::TC_CIRCUIT_BREAKER_STATE,
                now,
                states,
            ));
        }
        let mut drops: HashMap<String, u64> = self.retired_drops.clone();
        for (i, name) in self.slot_names.iter().enumerate() {
            let slot = self.active * TAPIO_TC_MAX_CHAOS + i as u32;
            if let Ok(v) = self.drops.get(&slot, 0) {
                *drops.entry(name.clone()).or_default() += v.iter().sum::<u64>();
            }
        }
        if !drops.is_empty() {
            let mut points: Vec<_> = drops
                .into_iter()
                .map(|(n, v)| (vec![kv_str(names::attr::TAPIO_TC_EXPERIMENT, n)], v))
                .collect();
            points.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            out.push(metrics::counter(
                &names::TC_CHAOS_DROPPED,
                start,
                now,
                points,
            ));
        }
        out
    }
}

/// The tc probe's live policy.
pub struct TcTarget(pub Arc<Mutex<Shared>>);

impl PolicyTarget for TcTarget {
    fn probe(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, probes: &crate::config::Probes) -> Result<(), PolicyError> {
        crate::supervise::lock(&self.0).apply(&probes.tc.policy)
    }
}

/// Exports the counters (and breaker states) on every metric export.
pub fn metric_producer(
    shared: Arc<Mutex<Shared>>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    Box::new(move |now| crate::supervise::lock(&shared).metrics(start_unix_ns, now))
}

/// How often the breaker reads the kernel's counts.
pub const BREAKER_TICK: Duration = Duration::from_millis(100);

/// Run the circuit breakers until `stop`.
pub async fn run_breakers(
    shared: Arc<Mutex<Shared>>,
    mut emitter: crate::export::Emitter,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(BREAKER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let changes = crate::supervise::lock(&shared).breaker_tick(Instant::now());
        for c in changes {
            tracing::info!(
                service = %c.service,
                backend = %c.backend,
                from = breaker_state_name(c.from),
                to = breaker_state_name(c.to),
                "circuit breaker"
            );
            let now = crate::clock::unix_ns();
            crate::encode_log!(emitter, |enc| otlp::circuit_breaker_change(enc, &c, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CircuitBreaker;
    use tapio_shared::as_bytes;

    #[test]
    fn interface_names_with_and_without_netns() {
        assert_eq!(Iface::parse("eth0").netns, None);
        let i = Iface::parse("tapio-tc-x/veth0");
        assert_eq!(i.netns.as_deref(), Some("tapio-tc-x"));
        assert_eq!(i.name, "veth0");
        assert_eq!(i.config, "tapio-tc-x/veth0");
    }

    #[test]
    fn protocol_and_direction_names() {
        assert_eq!(proto_name(proto::TAPIO_TC_GRPC), "grpc");
        assert_eq!(proto_name(proto::TAPIO_TC_POSTGRESQL), "postgresql");
        assert_eq!(proto_name(99), "unknown");
        assert_eq!(direction_name(0), "receive");
        assert_eq!(direction_name(1), "transmit");
    }

    #[test]
    fn decodes_a_flow_with_sni() {
        let mut r = tapio_tc_flow::default();
        r.hdr.kind = kind::TAPIO_EVENT_TC_FLOW as u32;
        r.tuple = crate::probes::network::fixtures::v4_tuple(
            [198, 18, 0, 1],
            40000,
            [198, 18, 0, 2],
            443,
        );
        r.proto = proto::TAPIO_TC_TLS as u8;
        r.l4proto = IPPROTO_TCP;
        r.ifindex = 7;
        for (d, s) in r.sni.iter_mut().zip(b"example.test") {
            *d = *s as core::ffi::c_char;
        }
        r.sni_len = 12;
        let f = decode(as_bytes(&r)).unwrap();
        assert_eq!(f.protocol, "tls");
        assert_eq!(f.sni.as_deref(), Some("example.test"));
        assert_eq!(f.server, "198.18.0.2:443".parse().unwrap());
        assert_eq!(f.client.port(), 40000);
        assert_eq!(f.transport, "tcp");
        assert!(!f.sni_cut);
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let cfg = CircuitBreaker {
            max_failures: 3,
            cool_down: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        let mut b = Breaker::new("web");
        assert_eq!(b.step(2, 10, t0, &cfg), None);
        // A success resets the run of failures.
        assert_eq!(b.step(2, 11, t0, &cfg), None);
        assert_eq!(b.step(4, 11, t0, &cfg), None);
        assert_eq!(b.step(5, 11, t0, &cfg), Some(cb::TAPIO_TC_CB_OPEN));
        assert_eq!(b.step(5, 11, t0 + Duration::from_secs(4), &cfg), None);
        assert_eq!(
            b.step(5, 11, t0 + Duration::from_secs(5), &cfg),
            Some(cb::TAPIO_TC_CB_HALF_OPEN)
        );
        // Half-open and it fails again: open for another cool-down.
        assert_eq!(
            b.step(6, 11, t0 + Duration::from_secs(6), &cfg),
            Some(cb::TAPIO_TC_CB_OPEN)
        );
        assert_eq!(
            b.step(6, 11, t0 + Duration::from_secs(11), &cfg),
            Some(cb::TAPIO_TC_CB_HALF_OPEN)
        );
        assert_eq!(
            b.step(6, 12, t0 + Duration::from_secs(12), &cfg),
            Some(cb::TAPIO_TC_CB_CLOSED)
        );
    }

    #[test]
    fn own_endpoint_urls_resolve_with_scheme_default_ports() {
        let got = resolve_endpoints(&[
            "http://198.18.0.2:4317".into(),
            "https://[2001:db8::1]/v1/opamp".into(),
            "http://198.18.0.3".into(),
            "http://user@198.18.0.4:8080/x?y".into(),
            "unix:///run/otelcol/otlp.sock".into(),
        ]);
        let want: Vec<SocketAddr> = [
            "198.18.0.2:4317",
            "[2001:db8::1]:443",
            "198.18.0.3:80",
            "198.18.0.4:8080",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn kernel_address_keys_round_trip() {
        let a: SocketAddrV4 = "198.18.1.2:8080".parse().unwrap();
        let k = addr_key(a, IPPROTO_TCP, 1);
        assert_eq!(k.port, 8080u16.to_be());
        assert_eq!(k.addr.to_ne_bytes(), [198, 18, 1, 2]);
        assert_eq!(key_addr(&k), a);
    }
}
