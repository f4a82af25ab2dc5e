//! The xdp probe: `ebpf/xdp.bpf.c` ↔ this module. Loads the filter, puts
//! the configured policy in its maps, attaches it to the configured
//! interfaces (native, else generic) with its egress learner (tcx, else
//! clsact), and turns what it does into `tapio.xdp.packets` /
//! `tapio.xdp.bytes` and `security.ddos_mitigation` logs.

#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

use super::{LoadError, Loaded, RingConfig};
use crate::bpf_objects::{GLOBAL_WAKEUP_BYTES, MAP_EVENTS};
use crate::config::{XdpMode, XdpPolicy, XdpProbe};
use crate::policy::{PolicyError, PolicyTarget};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray};
use aya::programs::{xdp::XdpMode as AyaXdpMode, SchedClassifier, TcAttachType, Xdp};
use aya::{Btf, Ebpf, EbpfLoader};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use tapio_shared::{
    tapio_xdp_block, tapio_xdp_block_state, tapio_xdp_counter, tapio_xdp_policy,
    tapio_xdp_policy_flags as pf, tapio_xdp_reason as r,
};

pub const NAME: &str = "xdp";
pub const PROG_FILTER: &str = "tapio_xdp_filter";
pub const PROG_LEARN: &str = "tapio_xdp_learn";
pub const MAP_POLICY: &str = "xdp_policy";
pub const MAP_ACTIVE: &str = "xdp_active";
pub const MAP_COUNTERS: &str = "xdp_counters";
pub const MAP_AUTOBLOCK: &str = "xdp_autoblock";
/// The policy's LPM maps, per generation: allow4, allow6, block4, block6.
const LPM_MAPS: [[&str; 4]; 2] = [
    [
        "xdp_allow4_0",
        "xdp_allow6_0",
        "xdp_block4_0",
        "xdp_block6_0",
    ],
    [
        "xdp_allow4_1",
        "xdp_allow6_1",
        "xdp_block4_1",
        "xdp_block6_1",
    ],
];

/// Why the filter passed or dropped a packet (`tapio.xdp.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Pass,
    Allowlist,
    Established,
    NotIp,
    Malformed,
    Fragment,
    UnparsedL4,
    Blocklist,
    AutoBlock,
    SynFlood,
    RateLimit,
    DnsUnsolicited,
    DnsOversize,
}

impl Reason {
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            r::TAPIO_XDP_PASS => Reason::Pass,
            r::TAPIO_XDP_ALLOWLIST => Reason::Allowlist,
            r::TAPIO_XDP_ESTABLISHED => Reason::Established,
            r::TAPIO_XDP_NOT_IP => Reason::NotIp,
            r::TAPIO_XDP_MALFORMED => Reason::Malformed,
            r::TAPIO_XDP_FRAGMENT => Reason::Fragment,
            r::TAPIO_XDP_UNPARSED_L4 => Reason::UnparsedL4,
            r::TAPIO_XDP_BLOCKLIST => Reason::Blocklist,
            r::TAPIO_XDP_AUTO_BLOCK => Reason::AutoBlock,
            r::TAPIO_XDP_SYN_FLOOD => Reason::SynFlood,
            r::TAPIO_XDP_RATE_LIMIT => Reason::RateLimit,
            r::TAPIO_XDP_DNS_UNSOLICITED => Reason::DnsUnsolicited,
            r::TAPIO_XDP_DNS_OVERSIZE => Reason::DnsOversize,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::Pass => "pass",
            Reason::Allowlist => "allowlist",
            Reason::Established => "established",
            Reason::NotIp => "not_ip",
            Reason::Malformed => "malformed",
            Reason::Fragment => "fragment",
            Reason::UnparsedL4 => "unparsed_l4",
            Reason::Blocklist => "blocklist",
            Reason::AutoBlock => "auto_block",
            Reason::SynFlood => "syn_flood",
            Reason::RateLimit => "rate_limit",
            Reason::DnsUnsolicited => "dns_unsolicited",
            Reason::DnsOversize => "dns_oversize",
        }
    }

    /// `tapio.xdp.action`: what the filter returned for this reason.
    pub fn action(self) -> &'static str {
        if self >= Reason::Blocklist {
            "drop"
        } else {
            "pass"
        }
    }
}

/// The policy as the kernel reads it (scalars; the CIDRs go to LPM maps).
pub fn compile(p: &XdpPolicy) -> tapio_xdp_policy {
    const S: u64 = 1_000_000_000;
    let mut c = tapio_xdp_policy::default();
    let mut flags = 0;
    for (list, v4, v6) in [
        (&p.allow, pf::TAPIO_XDP_F_ALLOW4, pf::TAPIO_XDP_F_ALLOW6),
        (&p.block, pf::TAPIO_XDP_F_BLOCK4, pf::TAPIO_XDP_F_BLOCK6),
    ] {
        for net in list {
            flags |= match net {
                ipnet::IpNet::V4(_) => v4,
                ipnet::IpNet::V6(_) => v6,
            };
        }
    }
    if let Some(rl) = &p.rate_limit {
        flags |= pf::TAPIO_XDP_F_RATE;
        c.rate_interval_ns = S / u64::from(rl.packets_per_second.max(1));
        c.rate_tolerance_ns = c.rate_interval_ns * u64::from(rl.burst.max(1) - 1);
    }
    if let Some(s) = &p.syn_flood {
        flags |= pf::TAPIO_XDP_F_SYN;
        // A second's worth of SYNs may come at once; more is a flood.
        c.syn_src_interval_ns = S / u64::from(s.per_source.max(1));
        c.syn_src_tolerance_ns = c.syn_src_interval_ns * u64::from(s.per_source.max(1) - 1);
        if s.per_destination > 0 {
            c.syn_dst_interval_ns = S / u64::from(s.per_destination);
            c.syn_dst_tolerance_ns = c.syn_dst_interval_ns * u64::from(s.per_destination - 1);
        }
        c.block_ns = s.block_for.as_nanos().min(u128::from(u64::MAX)) as u64;
    }
    if let Some(d) = &p.dns_amplification {
        flags |= pf::TAPIO_XDP_F_DNS;
        c.dns_window_ns = d.query_window.as_nanos().min(u128::from(u64::MAX)) as u64;
        c.dns_max_size = d.max_response_size;
    }
    c.flags = flags;
    c
}

/// The policy maps of a loaded filter: two generations and the switch.
pub struct PolicyMaps {
    lpm4: [[LpmTrie<MapData, [u8; 4], u8>; 2]; 2],
    lpm6: [[LpmTrie<MapData, [u8; 16], u8>; 2]; 2],
    scalars: Array<MapData, tapio_xdp_policy>,
    active: Array<MapData, u32>,
    gen: u32,
    /// Tapio's own endpoints (URLs): their addresses join the allow list
    /// of every generation written, resolved afresh each time.
    protect: Vec<String>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> PolicyError {
    move |source| PolicyError::Map {
        probe: NAME,
        map,
        source,
    }
}

impl PolicyMaps {
    fn take(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        fn take<T>(ebpf: &mut Ebpf, map: &'static str) -> Result<T, LoadError>
        where
            T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
        {
            super::take_map(ebpf, NAME, map)
        }
        let g = |i: usize, j: usize| LPM_MAPS[i][j];
        Ok(Self {
            lpm4: [
                [take(ebpf, g(0, 0))?, take(ebpf, g(0, 2))?],
                [take(ebpf, g(1, 0))?, take(ebpf, g(1, 2))?],
            ],
            lpm6: [
                [take(ebpf, g(0, 1))?, take(ebpf, g(0, 3))?],
                [take(ebpf, g(1, 1))?, take(ebpf, g(1, 3))?],
            ],
            scalars: take(ebpf, MAP_POLICY)?,
            active: take(ebpf, MAP_ACTIVE)?,
            gen: 0,
            protect: Vec::new(),
        })
    }

    /// Never drop traffic from `urls` (Tapio's own endpoints,
    /// [`crate::config::Settings::own_endpoints`]): a block list, an
    /// auto-block or a rate limit must not cut Tapio off from its collector
    /// or its OpAMP server. Takes effect at the next [`Self::install`].
    pub fn protect(&mut self, urls: Vec<String>) {
        self.protect = urls;
    }

    /// Write `p` into the generation the filter is not reading, then
    /// switch to it.
    pub fn install(&mut self, p: &XdpPolicy) -> Result<(), PolicyError> {
        let own: Vec<ipnet::IpNet> = super::tc::resolve_endpoints(&self.protect)
            .into_iter()
            .map(|a| ipnet::IpNet::from(a.ip()))
            .collect();
        let mut allow = p.allow.clone();
        allow.extend(own.iter().filter(|n| !p.allow.contains(n)));
        let p = &XdpPolicy { allow, ..p.clone() };
        let idle = 1 - self.gen;
        let i = idle as usize;
        for (j, list) in [&p.allow, &p.block].into_iter().enumerate() {
            let name4 = LPM_MAPS[i][j * 2];
            let name6 = LPM_MAPS[i][j * 2 + 1];
            let m4 = &mut self.lpm4[i][j];
            let old: Vec<_> = m4.keys().filter_map(Result::ok).collect();
            for k in old {
                m4.remove(&k).map_err(map_err(name4))?;
            }
            let m6 = &mut self.lpm6[i][j];
            let old: Vec<_> = m6.keys().filter_map(Result::ok).collect();
            for k in old {
                m6.remove(&k).map_err(map_err(name6))?;
            }
            for net in list {
                match net.trunc() {
                    ipnet::IpNet::V4(n) => self.lpm4[i][j]
                        .insert(
                            &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                            1,
                            0,
                        )
                        .map_err(map_err(name4))?,
                    ipnet::IpNet::V6(n) => self.lpm6[i][j]
                        .insert(
                            &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                            1,
                            0,
                        )
                        .map_err(map_err(name6))?,
                }
            }
        }
        self.scalars
            .set(idle, compile(p), 0)
            .map_err(map_err(MAP_POLICY))?;
        self.active.set(0, idle, 0).map_err(map_err(MAP_ACTIVE))?;
        self.gen = idle;
        Ok(())
    }
}

impl PolicyTarget for PolicyMaps {
    fn probe(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, probes: &crate::config::Probes) -> Result<(), PolicyError> {
        self.install(&probes.xdp.policy)
    }
}

/// Where the filter runs on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub interface: String,
    pub ifindex: u32,
    /// `native` or `generic`.
    pub xdp_mode: &'static str,
    /// `tcx` or `clsact`.
    pub egress: &'static str,
}

/// The variant label for a set of attachments (`tapio.attach_type`).
fn label(att: &[Attached]) -> &'static str {
    let native = att.iter().all(|a| a.xdp_mode == "native");
    let generic = att.iter().all(|a| a.xdp_mode == "generic");
    let tcx = att.iter().all(|a| a.egress == "tcx");
    match (native, generic, tcx) {
        (true, _, true) => "xdp-native+tcx",
        (true, _, false) => "xdp-native+clsact",
        (_, true, true) => "xdp-generic+tcx",
        (_, true, false) => "xdp-generic+clsact",
        (_, _, true) => "xdp-mixed+tcx",
        (_, _, false) => "xdp-mixed+clsact",
    }
}

/// A loaded filter, its policy in force, attached to `cfg.interfaces`.
pub struct Started {
    pub loaded: Loaded,
    pub policy: PolicyMaps,
    pub attached: Vec<Attached>,
}

fn attach_err(why: String) -> LoadError {
    LoadError::NoVariant {
        probe: NAME,
        reasons: format!("  {why}"),
    }
}

/// Load the object with `ring` sizing and the policy installed, without
/// attaching (also what `tapio probes` checks).
pub fn load_only(ring: RingConfig, btf: Option<&Btf>) -> Result<(Ebpf, PolicyMaps), LoadError> {
    let mut ebpf = EbpfLoader::with_btf(btf)
        .map_max_entries(MAP_EVENTS, ring.bytes)
        .override_global(GLOBAL_WAKEUP_BYTES, &ring.wakeup_bytes, true)
        .load(crate::bpf_objects::XDP)
        .map_err(|source| LoadError::Object {
            probe: NAME,
            source,
        })?;
    for prog in [PROG_FILTER, PROG_LEARN] {
        let p = ebpf
            .program_mut(prog)
            .ok_or_else(|| attach_err(format!("program {prog} missing from the object")))?;
        let res = match prog {
            PROG_FILTER => <&mut Xdp>::try_from(p).and_then(|x| x.load()),
            _ => <&mut SchedClassifier>::try_from(p).and_then(|x| x.load()),
        };
        res.map_err(|e| attach_err(format!("{prog}: {}", super::describe(&e))))?;
    }
    let policy = PolicyMaps::take(&mut ebpf)?;
    Ok((ebpf, policy))
}

/// Load, install `cfg.policy` (before any packet is seen) with the
/// addresses of `own` (Tapio's own endpoints) exempt, and attach.
pub fn start(
    cfg: &XdpProbe,
    ring: RingConfig,
    btf: Option<&Btf>,
    own: &[String],
) -> Result<Started, LoadError> {
    let (mut ebpf, mut policy) = load_only(ring, btf)?;
    policy.protect(own.to_vec());
    policy
        .install(&cfg.policy)
        .map_err(|e| attach_err(e.to_string()))?;
    let mut attached: Vec<Attached> = Vec::new();
    for iface in &cfg.interfaces {
        let ifindex =
            ifindex(iface).ok_or_else(|| attach_err(format!("{iface}: no such interface")))?;
        if let Some(other) = attached
            .iter()
            .find(|a| if_slot(a.ifindex) == if_slot(ifindex))
        {
            return Err(attach_err(format!(
                "{iface} (ifindex {ifindex}) and {} (ifindex {}) share a counter slot \
                 (ifindex mod {}); filter them from separate Tapio instances",
                other.interface,
                other.ifindex,
                tapio_shared::TAPIO_XDP_IF_SLOTS
            )));
        }
        super::tc::require_ethernet(iface).map_err(attach_err)?;
        let xdp_mode = attach_xdp(&mut ebpf, iface, cfg.mode)?;
        let egress = attach_egress(&mut ebpf, iface)?;
        tracing::info!(
            probe = NAME,
            interface = %iface,
            xdp = xdp_mode,
            egress,
            "attached"
        );
        attached.push(Attached {
            interface: iface.clone(),
            ifindex,
            xdp_mode,
            egress,
        });
    }
    let variant = label(&attached);
    Ok(Started {
        loaded: Loaded {
            ebpf,
            variant,
            skipped: Vec::new(),
        },
        policy,
        attached,
    })
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn attach_xdp(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<&'static str, LoadError> {
    let p: &mut Xdp = ebpf
        .program_mut(PROG_FILTER)
        .ok_or_else(|| attach_err(format!("program {PROG_FILTER} missing")))?
        .try_into()
        .map_err(|e| attach_err(super::describe(&e)))?;
    let tries: &[(AyaXdpMode, &'static str)] = match mode {
        XdpMode::Auto => &[(AyaXdpMode::Driver, "native"), (AyaXdpMode::Skb, "generic")],
        XdpMode::Native => &[(AyaXdpMode::Driver, "native")],
        XdpMode::Generic => &[(AyaXdpMode::Skb, "generic")],
    };
    let mut why = Vec::new();
    for (flags, name) in tries {
        match p.attach(iface, *flags) {
            Ok(_) => return Ok(name),
            Err(e) => why.push(format!("{name}: {}", super::describe(&e))),
        }
    }
    Err(attach_err(format!(
        "{iface}: XDP attach failed ({})",
        why.join("; ")
    )))
}

/// The egress learner, via tcx or clsact (`super::attach_tc`).
fn attach_egress(ebpf: &mut Ebpf, iface: &str) -> Result<&'static str, LoadError> {
    let p: &mut SchedClassifier = ebpf
        .program_mut(PROG_LEARN)
        .ok_or_else(|| attach_err(format!("program {PROG_LEARN} missing")))?
        .try_into()
        .map_err(|e| attach_err(super::describe(&e)))?;
    super::tc::remove_leftover_filters(iface, TcAttachType::Egress, PROG_LEARN);
    match super::attach_tc(p, iface, TcAttachType::Egress) {
        Ok((true, _)) => Ok("tcx"),
        Ok((false, _)) => Ok("clsact"),
        Err(why) => Err(attach_err(format!("{iface}: {why}"))),
    }
}

pub use super::{ip_from16 as addr, ip_to16 as addr16};

/// Interface names by index, for the counters' `network.interface.name`.
pub type IfNames = std::sync::Arc<BTreeMap<u32, String>>;

pub fn if_names(att: &[Attached]) -> IfNames {
    std::sync::Arc::new(
        att.iter()
            .map(|a| (a.ifindex, a.interface.clone()))
            .collect(),
    )
}

fn if_name(names: &IfNames, ifindex: u32) -> String {
    names
        .get(&ifindex)
        .cloned()
        .unwrap_or_else(|| format!("ifindex:{ifindex}"))
}

/// The counters' slot of an interface (`TAPIO_XDP_IF_SLOTS` in events.h).
pub fn if_slot(ifindex: u32) -> u32 {
    ifindex % tapio_shared::TAPIO_XDP_IF_SLOTS
}

/// Summed per-CPU counters of `ifindexes`: (ifindex, reason) ->
/// (packets, bytes); series that never counted are left out.
pub fn read_counters<T: std::borrow::Borrow<MapData>>(
    map: &PerCpuArray<T, tapio_xdp_counter>,
    ifindexes: impl IntoIterator<Item = u32>,
) -> BTreeMap<(u32, Reason), (u64, u64)> {
    let mut out = BTreeMap::new();
    for ifindex in ifindexes {
        for raw in 0..r::TAPIO_XDP_REASON_MAX {
            let Some(reason) = Reason::from_raw(raw) else {
                continue;
            };
            let idx = if_slot(ifindex) * r::TAPIO_XDP_REASON_MAX + raw;
            let Ok(per_cpu) = map.get(&idx, 0) else {
                continue;
            };
            let (mut p, mut b) = (0u64, 0u64);
            for c in per_cpu.iter() {
                p += c.packets;
                b += c.bytes;
            }
            if p > 0 {
                out.insert((ifindex, reason), (p, b));
            }
        }
    }
    out
}

/// `tapio.xdp.packets` and `tapio.xdp.bytes`, cumulative since start.
pub fn counters_producer(
    map: PerCpuArray<MapData, tapio_xdp_counter>,
    names: IfNames,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics::counter, names as n};
    let map = std::sync::Mutex::new(map);
    Box::new(move |now| {
        let map = crate::supervise::lock(&map);
        let counts = read_counters(&map, names.keys().copied());
        if counts.is_empty() {
            return Vec::new();
        }
        let mut packets = Vec::new();
        let mut bytes = Vec::new();
        for ((ifindex, reason), (p, b)) in counts {
            let attrs = vec![
                kv_str(n::attr::TAPIO_XDP_ACTION, reason.action()),
                kv_str(n::attr::TAPIO_XDP_REASON, reason.name()),
                kv_str(n::attr::NETWORK_INTERFACE_NAME, if_name(&names, ifindex)),
            ];
            packets.push((attrs.clone(), p));
            bytes.push((attrs, b));
        }
        vec![
            counter(&n::XDP_PACKETS, start_unix_ns, now, packets),
            counter(&n::XDP_BYTES, start_unix_ns, now, bytes),
        ]
    })
}

/// A change of an auto-block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mitigation {
    pub source: IpAddr,
    pub interface: String,
    pub reason: Reason,
    pub started: bool,
    /// CLOCK_BOOTTIME ns of the change.
    pub at_ns: u64,
    /// CLOCK_BOOTTIME ns the block ends (started) or ended.
    pub until_ns: u64,
    /// Packets dropped under the block (ended only).
    pub dropped: u64,
}

/// Reads auto-block starts from the ring buffer and finds their ends by
/// sweeping the auto-block map (the kernel cannot tell when a source it
/// no longer hears from is unblocked).
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub clock: crate::clock::WallClock,
    pub names: IfNames,
    pub autoblock: HashMap<MapData, [u8; 16], tapio_xdp_block_state>,
    pub last_sweep: std::time::Instant,
}

/// How often expired auto-blocks are looked for.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Handler {
    fn emit(&mut self, m: &Mitigation) {
        let now = crate::clock::unix_ns();
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::ddos_mitigation(
            enc, m, clock, now
        ));
    }

    fn sweep(&mut self) {
        let now = crate::clock::boot_ns();
        let expired: Vec<([u8; 16], tapio_xdp_block_state)> = self
            .autoblock
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, st)| st.until_ns <= now)
            .collect();
        for (k, st) in expired {
            // Re-blocked since we read it: not over yet.
            match self.autoblock.get(&k, 0) {
                Ok(cur) if cur.since_ns != st.since_ns || cur.until_ns > now => continue,
                _ => {}
            }
            let _ = self.autoblock.remove(&k);
            self.emit(&Mitigation {
                source: addr(k),
                interface: if_name(&self.names, st.ifindex),
                reason: Reason::SynFlood,
                started: false,
                at_ns: st.until_ns,
                until_ns: st.until_ns,
                dropped: st.dropped,
            });
        }
    }
}

/// The auto-block an XDP ring-buffer record announces (a reason the
/// exporter does not know reads as a SYN flood, the only one that blocks).
pub fn decode(record: &[u8], names: &IfNames) -> Result<Mitigation, tapio_shared::ShortRecord> {
    let b = tapio_shared::read_record::<tapio_xdp_block>(record)?;
    Ok(Mitigation {
        source: addr(b.addr),
        interface: if_name(names, b.ifindex),
        reason: Reason::from_raw(b.reason).unwrap_or(Reason::SynFlood),
        started: true,
        at_ns: b.hdr.ts_ns,
        until_ns: b.until_ns,
        dropped: 0,
    })
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = std::time::Instant::now();
            self.sweep();
        }
    }

    fn handle(&mut self, record: &[u8]) {
        self.stats
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(m) = self.stats.decoded(decode(record, &self.names)) else {
            return;
        };
        self.stats
            .latency
            .record_ns(crate::clock::boot_ns().saturating_sub(m.at_ns));
        self.emit(&m);
    }
}

/// Test helper: the IPv4 address as the filter's key.
pub fn v4(a: Ipv4Addr) -> [u8; 16] {
    addr16(IpAddr::V4(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DnsAmplification, RateLimit, SynFlood};
    use std::time::Duration;

    #[test]
    fn reasons_round_trip_and_split_pass_from_drop() {
        for raw in 0..r::TAPIO_XDP_REASON_MAX {
            let reason = Reason::from_raw(raw).expect("every kernel reason is known");
            assert_eq!(reason.action() == "drop", raw >= r::TAPIO_XDP_BLOCKLIST);
        }
        assert_eq!(Reason::from_raw(r::TAPIO_XDP_REASON_MAX), None);
    }

    #[test]
    fn compile_sets_flags_and_gcra_intervals() {
        let p = XdpPolicy {
            allow: vec!["198.18.0.0/15".parse().unwrap()],
            block: vec!["2001:db8::/32".parse().unwrap()],
            rate_limit: Some(RateLimit {
                packets_per_second: 1000,
                burst: 50,
            }),
            syn_flood: Some(SynFlood {
                per_source: 10,
                per_destination: 0,
                block_for: Duration::from_secs(3),
            }),
            dns_amplification: Some(DnsAmplification::default()),
        };
        let c = compile(&p);
        assert_eq!(
            c.flags,
            pf::TAPIO_XDP_F_ALLOW4
                | pf::TAPIO_XDP_F_BLOCK6
                | pf::TAPIO_XDP_F_RATE
                | pf::TAPIO_XDP_F_SYN
                | pf::TAPIO_XDP_F_DNS
        );
        assert_eq!(c.rate_interval_ns, 1_000_000);
        assert_eq!(c.rate_tolerance_ns, 49_000_000);
        assert_eq!(c.syn_src_interval_ns, 100_000_000);
        assert_eq!(c.syn_dst_interval_ns, 0);
        assert_eq!(c.block_ns, 3_000_000_000);
        assert_eq!(c.dns_max_size, 4096);
        assert_eq!(compile(&XdpPolicy::default()).flags, 0);
    }

    #[test]
    fn decodes_a_block_record_whatever_its_reason() {
        let mut b = tapio_xdp_block {
            until_ns: 9,
            ifindex: 3,
            reason: r::TAPIO_XDP_REASON_MAX + 7,
            addr: v4(Ipv4Addr::new(198, 18, 0, 9)),
            ..Default::default()
        };
        b.hdr.ts_ns = 5;
        let bytes = tapio_shared::as_bytes(&b);
        let names: IfNames = std::sync::Arc::new([(3, "veth0".to_string())].into());
        let m = decode(bytes, &names).unwrap();
        assert_eq!(m.source, "198.18.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(m.interface, "veth0");
        assert_eq!(m.reason, Reason::SynFlood);
        assert_eq!((m.started, m.at_ns, m.until_ns), (true, 5, 9));
        assert_eq!(
            decode(bytes, &IfNames::default()).unwrap().interface,
            "ifindex:3"
        );
        assert!(decode(&bytes[..bytes.len() - 1], &names).is_err());
    }

    #[test]
    fn addresses_map_both_ways() {
        let a: IpAddr = "198.18.0.7".parse().unwrap();
        assert_eq!(addr(addr16(a)), a);
        let b: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(addr(addr16(b)), b);
    }
}
