//! Sampled memory allocations: part of the kernel probe (the programs and
//! maps are in `ebpf/kernel.bpf.c`, loaded with its object), kept in a
//! module of its own because nothing of it goes through the ring buffer.
//!
//! The kernel samples page and slab allocations 1:N (a per-CPU countdown,
//! `probes.kernel.memory_sample_every`) and keeps per-CPU sums per (cgroup,
//! allocator), already scaled by N. Here those sums become the
//! `tapio.memory.allocations` and `tapio.memory.allocated` counters per
//! workload (container, pod, systemd unit: never a pid).

use super::{Attach, LoadError, Loaded};
use crate::config::KernelProbe;
use crate::enrich::cgroup::{self, Workload};
use std::collections::HashMap;
use tapio_shared::{
    tapio_mem_allocator as alloc, tapio_mem_cgroup, tapio_mem_key, tapio_mem_sampler,
    tapio_mem_usage,
};

pub const PROG_PAGE: &str = "tapio_mem_page_alloc";
pub const PROG_KMALLOC: &str = "tapio_mem_kmalloc";
pub const PROG_KMEM_CACHE: &str = "tapio_mem_kmem_cache_alloc";

/// Per-CPU sampler state: userspace writes N to every CPU.
pub const MAP_SAMPLER: &str = "tapio_mem_sampler";
/// Per-CPU sums per (cgroup, allocator).
pub const MAP_USAGE: &str = "tapio_mem_usage";
/// cgroup id → its directory names, captured at its first sample.
pub const MAP_CGROUPS: &str = "tapio_mem_cgroups";

/// The programs, in both of the kernel probe's variants. Optional: a
/// kernel that refuses one (no BTF, another prototype) loses that
/// allocator's counts, not the OOM and io_uring signals.
pub const PROGRAMS: [(&str, Attach); 3] = [
    (PROG_PAGE, Attach::OptionalBtfTracePoint("mm_page_alloc")),
    (PROG_KMALLOC, Attach::OptionalBtfTracePoint("kmalloc")),
    (
        PROG_KMEM_CACHE,
        Attach::OptionalBtfTracePoint("kmem_cache_alloc"),
    ),
];

/// `Some(wanted)` when `prog` is one of ours.
pub fn wanted(cfg: &KernelProbe, prog: &str) -> Option<bool> {
    PROGRAMS
        .iter()
        .any(|(p, _)| *p == prog)
        .then_some(cfg.memory_sample_every > 0)
}

/// The `tapio.memory.allocator` value of an allocator slot.
pub fn allocator_name(a: u32) -> &'static str {
    match a {
        alloc::TAPIO_MEM_PAGE => "page",
        alloc::TAPIO_MEM_KMALLOC => "kmalloc",
        alloc::TAPIO_MEM_KMEM_CACHE => "kmem_cache",
        _ => "unknown",
    }
}

type UsageMap = aya::maps::PerCpuHashMap<aya::maps::MapData, tapio_mem_key, tapio_mem_usage>;
type NamesMap = aya::maps::HashMap<aya::maps::MapData, u64, tapio_mem_cgroup>;

/// The kernel side's maps, taken out of the loaded object.
pub struct Maps {
    usage: UsageMap,
    names: NamesMap,
}

/// Tell the kernel's samplers N and take the maps the producer reads.
pub fn configure(loaded: &mut Loaded, every: u32) -> Result<Maps, LoadError> {
    let probe = super::kernel::NAME;
    let mut sampler = loaded.take_percpu_array::<tapio_mem_sampler>(probe, MAP_SAMPLER)?;
    let sys = |call, io_error| LoadError::Map {
        probe,
        map: MAP_SAMPLER,
        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError { call, io_error }),
    };
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| sys("nr_cpus", e))?;
    let value = tapio_mem_sampler { left: 0, every };
    let values =
        aya::maps::PerCpuValues::try_from(vec![value; cpus]).map_err(|e| sys("nr_cpus", e))?;
    sampler.set(0, values, 0).map_err(|source| LoadError::Map {
        probe,
        map: MAP_SAMPLER,
        source,
    })?;
    let usage = super::take_map(&mut loaded.ebpf, probe, MAP_USAGE)?;
    let names = super::take_map(&mut loaded.ebpf, probe, MAP_CGROUPS)?;
    Ok(Maps { usage, names })
}

/// What one exported series is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Series {
    pub allocator: &'static str,
    pub workload: Workload,
}

/// Most series kept; past it, new workloads count under the series with
/// no workload attributes (and a warning says so once).
pub const MAX_SERIES: usize = 4096;

/// A kernel key: (cgroup id, allocator).
pub type Key = (u64, u32);
/// (allocations, bytes).
pub type Sums = (u64, u64);

/// Running totals. The kernel's sums live in an LRU map, so a key can be
/// evicted (and come back from zero): totals grow by what each key gained
/// since it was last read, and never go down.
#[derive(Debug, Default)]
pub struct Totals {
    /// Per kernel key: (allocations, bytes) at the last read.
    last: HashMap<Key, Sums>,
    /// Per series: (allocations, bytes) since start.
    pub series: HashMap<Series, Sums>,
    overflowed: bool,
}

impl Totals {
    /// Fold one read of the kernel's map in: `now` holds each key's sums
    /// over all CPUs, `workload` names a cgroup id's workload.
    pub fn update(&mut self, now: &[(Key, Sums)], mut workload: impl FnMut(u64) -> Workload) {
        let mut seen = HashMap::with_capacity(now.len());
        for &(key, (allocs, bytes)) in now {
            let (a0, b0) = self.last.get(&key).copied().unwrap_or((0, 0));
            // Smaller than last time: evicted and re-added since.
            let (da, db) = if allocs < a0 || bytes < b0 {
                (allocs, bytes)
            } else {
                (allocs - a0, bytes - b0)
            };
            seen.insert(key, (allocs, bytes));
            if da == 0 && db == 0 {
                continue;
            }
            let mut s = Series {
                allocator: allocator_name(key.1),
                workload: workload(key.0),
            };
            if !self.series.contains_key(&s) && self.series.len() >= MAX_SERIES {
                if !self.overflowed {
                    tracing::warn!(
                        probe = "kernel",
                        "memory allocations: more than {MAX_SERIES} workloads; new ones count without workload attributes"
                    );
                    self.overflowed = true;
                }
                s.workload = Workload::default();
            }
            // Kernel sums are any u64 (and several cgroups share a series):
            // a total stops at u64::MAX rather than wrap, which would read
            // as a counter reset (and panics with overflow checks on).
            let t = self.series.entry(s).or_insert((0, 0));
            t.0 = t.0.saturating_add(da);
            t.1 = t.1.saturating_add(db);
        }
        // Keys gone from the map were evicted: forget them.
        self.last = seen;
    }
}

/// The workload of each cgroup id, from the names the kernel captured.
#[derive(Default)]
struct Workloads(HashMap<u64, Workload>);

impl Workloads {
    fn get(&mut self, names: &NamesMap, id: u64) -> Workload {
        if let Some(w) = self.0.get(&id) {
            return w.clone();
        }
        let w = match names.get(&id, 0) {
            Ok(n) => cgroup::from_names(
                &super::cstr(&n.leaf, n.leaf.len()),
                &super::cstr(&n.parent, n.parent.len()),
            ),
            // Not captured (yet): unknown now, asked again next time.
            Err(_) => return Workload::default(),
        };
        if self.0.len() >= 4 * MAX_SERIES {
            self.0.clear();
        }
        self.0.insert(id, w.clone());
        w
    }
}

/// The attributes of a series.
pub fn attributes(s: &Series, every: u32) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    use crate::otel::{kv_int, kv_str, names::attr};
    let mut a = vec![
        kv_str(attr::TAPIO_MEMORY_ALLOCATOR, s.allocator),
        kv_int(attr::TAPIO_MEMORY_SAMPLE_EVERY, i64::from(every)),
    ];
    if let Some(c) = &s.workload.container_id {
        a.push(kv_str(attr::CONTAINER_ID, c.clone()));
    }
    if let Some(p) = &s.workload.pod_uid {
        a.push(kv_str(attr::K8S_POD_UID, p.clone()));
    }
    if let Some(u) = &s.workload.systemd_unit {
        a.push(kv_str(attr::TAPIO_SYSTEMD_UNIT, u.clone()));
    }
    a
}

/// `tapio.memory.allocations` and `tapio.memory.allocated`, cumulative
/// since start.
pub fn producer(maps: Maps, every: u32, start_unix_ns: u64) -> crate::export::MetricProducer {
    use crate::otel::{metrics::counter, names};
    let state = std::sync::Mutex::new((maps, Totals::default(), Workloads::default()));
    Box::new(move |now| {
        let mut st = crate::supervise::lock(&state);
        let (maps, totals, workloads) = &mut *st;
        let read: Vec<(Key, Sums)> = maps
            .usage
            .iter()
            .filter_map(Result::ok)
            .map(|(k, per_cpu)| {
                let (a, b) = per_cpu.iter().fold((0u64, 0u64), |(a, b), u| {
                    (a.wrapping_add(u.allocations), b.wrapping_add(u.bytes))
                });
                ((k.cgroup_id, k.allocator), (a, b))
            })
            .collect();
        let names = &maps.names;
        totals.update(&read, |id| workloads.get(names, id));
        if totals.series.is_empty() {
            return Vec::new();
        }
        let mut allocs = Vec::with_capacity(totals.series.len());
        let mut bytes = Vec::with_capacity(totals.series.len());
        for (s, (a, b)) in &totals.series {
            let attrs = attributes(s, every);
            allocs.push((attrs.clone(), *a));
            bytes.push((attrs, *b));
        }
        vec![
            counter(&names::MEMORY_ALLOCATIONS, start_unix_ns, now, allocs),
            counter(&names::MEMORY_ALLOCATED, start_unix_ns, now, bytes),
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(u: &str) -> Workload {
        Workload {
            systemd_unit: Some(u.into()),
            ..Default::default()
        }
    }

    #[test]
    fn totals_add_what_each_key_gained() {
        let mut t = Totals::default();
        let w = |id: u64| unit(&format!("u{id}.service"));
        t.update(&[((1, 0), (100, 409_600)), ((2, 1), (50, 3200))], w);
        t.update(&[((1, 0), (300, 1_228_800)), ((2, 1), (50, 3200))], w);
        let page = Series {
            allocator: "page",
            workload: unit("u1.service"),
        };
        let km = Series {
            allocator: "kmalloc",
            workload: unit("u2.service"),
        };
        assert_eq!(t.series[&page], (300, 1_228_800));
        assert_eq!(t.series[&km], (50, 3200));
    }

    #[test]
    fn an_evicted_key_never_takes_the_total_down() {
        let mut t = Totals::default();
        let w = |_| unit("a.service");
        t.update(&[((1, 0), (500, 5000))], w);
        // Evicted: gone from the map, then back from zero.
        t.update(&[], w);
        t.update(&[((1, 0), (20, 200))], w);
        // Reinserted before a read, smaller than last seen.
        t.update(&[((1, 0), (7, 70))], w);
        let s = Series {
            allocator: "page",
            workload: unit("a.service"),
        };
        assert_eq!(t.series[&s], (527, 5270));
    }

    #[test]
    fn cgroups_of_one_workload_share_a_series() {
        let mut t = Totals::default();
        t.update(&[((1, 2), (10, 640)), ((2, 2), (5, 320))], |_| {
            unit("same.service")
        });
        assert_eq!(t.series.len(), 1);
        assert_eq!(t.series.values().next(), Some(&(15, 960)));
    }

    /// Found by the `ring_records` fuzz target: two entries of one series
    /// whose bytes add past u64::MAX wrapped the total to less than it was
    /// (the input repeats a key; two cgroups of one workload do the same).
    #[test]
    fn totals_saturate_instead_of_wrapping() {
        // The fuzzer's input: a u16 record length, then 28-byte map entries
        // (cgroup id u64, allocator u32, allocations u64, bytes u64).
        let input: &[u8] = &[
            0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0x00, 0x03, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0x00, 0x02, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,
            0x00, 0x3f,
        ];
        let read: Vec<(Key, Sums)> = input[2..]
            .chunks_exact(28)
            .map(|e| {
                let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().expect("8"));
                let alloc = u32::from_le_bytes(e[8..12].try_into().expect("4"));
                ((u64_at(0), alloc), (u64_at(12), u64_at(20)))
            })
            .collect();
        assert_eq!(read.len(), 2);
        let mut t = Totals::default();
        t.update(&read, |_| Workload::default());
        assert_eq!(t.series.values().next().map(|s| s.1), Some(u64::MAX));
        // Two cgroups of one workload, distinct keys.
        let mut t = Totals::default();
        let w = |_| unit("a.service");
        t.update(&[((1, 0), (1, u64::MAX - 1)), ((2, 0), (1, 2))], w);
        let before = t.series.values().next().copied();
        assert_eq!(before, Some((2, u64::MAX)));
        t.update(&[((1, 0), (2, u64::MAX)), ((2, 0), (2, 3))], w);
        assert_eq!(t.series.values().next().copied(), Some((4, u64::MAX)));
    }

    #[test]
    fn series_are_bounded() {
        let mut t = Totals::default();
        let read: Vec<_> = (0..(MAX_SERIES as u64 + 10))
            .map(|id| ((id, 0), (1, 4096)))
            .collect();
        t.update(&read, |id| unit(&format!("u{id}.service")));
        assert_eq!(t.series.len(), MAX_SERIES + 1);
        let total: u64 = t.series.values().map(|(a, _)| a).sum();
        assert_eq!(total, MAX_SERIES as u64 + 10);
    }

    #[test]
    fn attributes_name_the_workload_never_a_pid() {
        let s = Series {
            allocator: "kmem_cache",
            workload: Workload {
                container_id: Some("c".repeat(64)),
                pod_uid: Some("1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9".into()),
                systemd_unit: None,
            },
        };
        let keys: Vec<String> = attributes(&s, 100).into_iter().map(|k| k.key).collect();
        assert_eq!(
            keys,
            [
                "tapio.memory.allocator",
                "tapio.memory.sample_every",
                "container.id",
                "k8s.pod.uid"
            ]
        );
    }

    #[test]
    fn config_picks_the_programs() {
        let mut cfg = KernelProbe::default();
        assert_eq!(cfg.memory_sample_every, 100);
        assert_eq!(wanted(&cfg, PROG_PAGE), Some(true));
        assert_eq!(wanted(&cfg, "tapio_oom_victim_btf"), None);
        cfg.memory_sample_every = 0;
        assert_eq!(wanted(&cfg, PROG_KMEM_CACHE), Some(false));
    }

    #[test]
    fn allocator_names() {
        assert_eq!(allocator_name(alloc::TAPIO_MEM_PAGE), "page");
        assert_eq!(allocator_name(alloc::TAPIO_MEM_KMALLOC), "kmalloc");
        assert_eq!(allocator_name(alloc::TAPIO_MEM_KMEM_CACHE), "kmem_cache");
        assert_eq!(allocator_name(9), "unknown");
    }
}
