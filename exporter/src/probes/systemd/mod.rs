//! The systemd probe, kernel record to OTLP in one folder:
//! `ebpf/systemd.bpf.c` follows the cgroups systemd makes for its units,
//! `decode` reads its records, `otlp` writes them as log records, and the
//! [`Handler`] here keeps the table of live units that the
//! `tapio.systemd.unit.processes` gauge ([`processes_producer`]) reads.

pub mod decode;
pub mod otlp;

use super::{Attach, LoadError, ProbeSpec, Variant};
use decode::{decode, unit_path, Op, UnitRecord};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tapio_shared::{tapio_unit_flags, tapio_unit_state};

pub const NAME: &str = "systemd";

/// Program names in `systemd.bpf.c`.
pub const PROG_MKDIR: &str = "tapio_unit_mkdir";
pub const PROG_RMDIR: &str = "tapio_unit_rmdir";
pub const PROG_ATTACH: &str = "tapio_unit_attach";
pub const PROG_FORK: &str = "tapio_unit_fork";
pub const PROG_EXIT: &str = "tapio_unit_exit";
/// cgroup id → `struct tapio_unit_state`.
pub const MAP_UNITS: &str = "tapio_units";

/// One variant: the cgroup tracepoints carry the `struct cgroup` only as
/// tp_btf arguments (their classic records have no task for the attach
/// and no way to reach the unit's state from an exiting task), and tp_btf
/// loads on every kernel Tapio supports (5.5+).
pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::SYSTEMD,
    variants: &[Variant {
        label: "tp_btf",
        programs: &[
            (PROG_MKDIR, Attach::BtfTracePoint("cgroup_mkdir")),
            (PROG_RMDIR, Attach::BtfTracePoint("cgroup_rmdir")),
            (PROG_ATTACH, Attach::BtfTracePoint("cgroup_attach_task")),
            (PROG_FORK, Attach::BtfTracePoint("sched_process_fork")),
            (PROG_EXIT, Attach::BtfTracePoint("sched_process_exit")),
        ],
    }],
};

/// Units Tapio reports at once (the kernel map's size).
const MAX_UNITS: usize = tapio_shared::TAPIO_UNIT_MAX as usize;
/// Deepest directory below a slice that the start-up scan and the process
/// count visit (user@.service/app.slice/… nests a few levels).
const MAX_DEPTH: usize = 8;

/// A live unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Cgroup path from the v2 root, `/system.slice/foo.service`.
    pub path: String,
    pub name: String,
    pub slice: String,
}

/// The live units of the configured slices, by cgroup id: filled from the
/// kernel's records and the start-up scan, read by the process gauge.
#[derive(Debug, Default)]
pub struct Units {
    by_id: HashMap<u64, Unit>,
    /// Units not tracked because the table was full.
    pub refused: u64,
}

impl Units {
    fn insert(&mut self, id: u64, path: &str) {
        let Some(p) = unit_path(path) else { return };
        if self.by_id.len() >= MAX_UNITS && !self.by_id.contains_key(&id) {
            self.refused += 1;
            return;
        }
        self.by_id.insert(
            id,
            Unit {
                path: path.to_string(),
                name: p.unit.to_string(),
                slice: p.slice.to_string(),
            },
        );
    }

    pub fn get(&self, id: u64) -> Option<&Unit> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

pub type SharedUnits = Arc<Mutex<Units>>;

/// Is `path` below one of `slices` (top-level slice names)?
pub fn in_slices(path: &str, slices: &[String]) -> bool {
    unit_path(path).is_some_and(|p| slices.iter().any(|s| s == p.top))
}

/// Turns unit records into log records.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: Arc<crate::telemetry::ProbeStats>,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
    pub slices: Vec<String>,
    pub units: SharedUnits,
}

impl Handler {
    fn on_record(&mut self, r: &UnitRecord, observed: u64) {
        let own = String::from_utf8_lossy(r.path());
        let id = r.raw.unit_cgroup_id;
        match r.op {
            Op::Created => {
                if in_slices(&own, &self.slices) {
                    crate::supervise::lock(&self.units).insert(id, &own);
                }
            }
            Op::Started => {
                // A fork into the cgroup has no path: the table has it.
                let path = match crate::supervise::lock(&self.units).get(id) {
                    Some(u) => u.path.clone(),
                    None if in_slices(&own, &self.slices) => own.into_owned(),
                    None => return,
                };
                let Some(p) = unit_path(&path) else { return };
                let h = &r.raw.hdr;
                let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
                let clock = &self.clock;
                crate::encode_log!(self.emitter, |enc| otlp::start(
                    enc, r, &p, &path, &ctx, clock, observed
                ));
            }
            Op::Removed => {
                let known = crate::supervise::lock(&self.units).by_id.remove(&id);
                let path = match known {
                    Some(u) => u.path,
                    None if in_slices(&own, &self.slices) => own.into_owned(),
                    None => return,
                };
                let Some(p) = unit_path(&path) else { return };
                let clock = &self.clock;
                crate::encode_log!(self.emitter, |enc| otlp::stop(
                    enc, r, &p, &path, clock, observed
                ));
            }
        }
    }
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        let Some(rec) = self.stats.decoded(decode(record)) else {
            return;
        };
        self.on_record(&rec, crate::clock::unix_ns());
        let lat = crate::clock::boot_ns().saturating_sub(rec.raw.hdr.ts_ns);
        self.stats.latency.record_ns(lat);
    }
}

/// Processes in `dir` and the cgroups below it (bounded depth).
pub fn count_processes(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: usize) -> u64 {
        let mut n = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter(|l| !l.is_empty()).count() as u64)
            .unwrap_or(0);
        if depth < MAX_DEPTH {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        n += walk(&e.path(), depth + 1);
                    }
                }
            }
        }
        n
    }
    walk(dir, 0)
}

/// Units that exist now below `slices` of the cgroup v2 mount `root`:
/// (cgroup id, path from the root, has processes). A cgroup's id is its
/// directory's inode number.
pub fn scan(root: &Path, slices: &[String]) -> Vec<(u64, String, bool)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(u64, String, bool)>) {
        if depth > MAX_DEPTH || out.len() >= MAX_UNITS {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if let (Ok(rel), Ok(md)) = (path.strip_prefix(root), e.metadata()) {
                let rel = format!("/{}", rel.to_string_lossy());
                if unit_path(&rel).is_some() {
                    out.push((md.ino(), rel, count_processes(&path) > 0));
                }
            }
            walk(root, &path, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    for s in slices {
        walk(root, &root.join(s), 1, &mut out);
    }
    out
}

/// Track the units that existed before the probe: in the table, and in the
/// kernel's map (never over state the kernel made meanwhile) so their
/// exits count and their stop carries totals.
pub fn adopt_existing(
    loaded: &mut super::Loaded,
    root: &Path,
    slices: &[String],
    units: &SharedUnits,
) -> Result<usize, LoadError> {
    let m = loaded
        .ebpf
        .map_mut(MAP_UNITS)
        .ok_or(LoadError::MissingMap {
            probe: NAME,
            map: MAP_UNITS,
        })?;
    let mut map: aya::maps::HashMap<_, u64, tapio_unit_state> = aya::maps::HashMap::try_from(m)
        .map_err(|source| LoadError::Map {
            probe: NAME,
            map: MAP_UNITS,
            source,
        })?;
    let found = scan(root, slices);
    let mut table = crate::supervise::lock(units);
    for (id, path, busy) in &found {
        let st = tapio_unit_state {
            // Non-zero: a unit already running has had its first process.
            first_ns: u64::from(*busy),
            flags: tapio_unit_flags::TAPIO_UNIT_PREEXISTING,
            ..Default::default()
        };
        // BPF_NOEXIST: a unit the kernel saw created meanwhile keeps its own.
        let _ = map.insert(id, st, 1);
        table.insert(*id, path);
    }
    Ok(found.len())
}

/// `tapio.systemd.unit.processes`: each live unit's processes, counted
/// from its cgroup at each export.
pub fn processes_producer(units: SharedUnits, root: PathBuf) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics::gauge, names};
    Box::new(move |now| {
        let list: Vec<Unit> = crate::supervise::lock(&units)
            .by_id
            .values()
            .cloned()
            .collect();
        if list.is_empty() {
            return Vec::new();
        }
        let points = list
            .into_iter()
            .map(|u| {
                let n = count_processes(&root.join(u.path.trim_start_matches('/')));
                (
                    vec![
                        kv_str(names::attr::TAPIO_SYSTEMD_UNIT, u.name),
                        kv_str(names::attr::TAPIO_SYSTEMD_SLICE, u.slice),
                    ],
                    n,
                )
            })
            .collect();
        vec![gauge(&names::SYSTEMD_UNIT_PROCESSES, now, points)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_match_the_top_component() {
        let s = vec!["system.slice".to_string()];
        assert!(in_slices("/system.slice/a.service", &s));
        assert!(in_slices(
            "/system.slice/system-getty.slice/getty@tty1.service",
            &s
        ));
        assert!(!in_slices(
            "/user.slice/user-1000.slice/session-1.scope",
            &s
        ));
        assert!(!in_slices("/system.slice/notaunit", &s));
        // kubepods scopes are not in the default slices
        let d = crate::config::SystemdProbe::default().slices;
        assert!(!in_slices(
            "/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope",
            &d
        ));
        assert!(in_slices("/user.slice/user-1000.slice/session-1.scope", &d));
    }

    #[test]
    fn scan_finds_units_and_counts_processes_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let unit = root.join("t.slice/a.service");
        std::fs::create_dir_all(unit.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("t.slice/b.scope")).unwrap();
        std::fs::create_dir_all(root.join("t.slice/other")).unwrap();
        std::fs::create_dir_all(root.join("u.slice/c.service")).unwrap();
        std::fs::write(unit.join("cgroup.procs"), "1\n2\n").unwrap();
        std::fs::write(unit.join("sub/cgroup.procs"), "3\n").unwrap();
        let mut found = scan(root, &["t.slice".to_string()]);
        found.sort_by(|a, b| a.1.cmp(&b.1));
        let got: Vec<(&str, bool)> = found.iter().map(|(_, p, b)| (p.as_str(), *b)).collect();
        assert_eq!(
            got,
            vec![("/t.slice/a.service", true), ("/t.slice/b.scope", false)]
        );
        assert_eq!(count_processes(&unit), 3);
    }
}
