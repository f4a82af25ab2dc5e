//! Enrichment: what the kernel record does not carry but an operator wants
//! on it (user name, container, pod, and for exits the command that ran).
//! Every cache is bounded.

pub mod cgroup;
pub mod users;

use cgroup::Workload;
use lru::LruCache;
use std::num::NonZeroUsize;

/// Bound on each cache. A node runs far fewer live cgroups and processes
/// whose exit we still wait for; the LRU keeps the working set.
const CACHE_ENTRIES: usize = 16_384;

/// What we remember about a process between its exec and its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub executable_path: String,
    pub command_line: String,
}

/// What enrichment adds to a record, borrowed from the caches (nothing is
/// copied per record).
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub owner: Option<&'a str>,
    pub workload: Option<&'a Workload>,
    /// Which state of the caches `owner` and `workload` were borrowed
    /// from: equal generations and equal pointers mean equal text, so a
    /// writer may reuse what it encoded for them (see
    /// `RecordWriter::cached`). 0: not from an [`Enricher`], never reused.
    pub generation: u64,
}

/// Spare [`ProcessInfo`]s kept for reuse: an exec refills one instead of
/// allocating two strings.
const SPARE_INFOS: usize = 64;

/// Both caches are looked up for every record: foldhash, not SipHash, seeded
/// per process (keys are cgroup ids and pids, which the kernel assigns).
type Hasher = foldhash::fast::RandomState;

pub struct Enricher {
    workloads: LruCache<u64, Workload, Hasher>,
    processes: LruCache<u32, ProcessInfo, Hasher>,
    spare: Vec<ProcessInfo>,
    pub users: users::Users,
    /// Where `/proc` is (tests point it elsewhere).
    proc_root: String,
    /// Bumped whenever a workload is stored: an LRU `put` may reuse an
    /// evicted entry's memory, so a pointer into the cache names the same
    /// text only within one generation. Starts at 1 (0 means "not ours").
    generation: u64,
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl Enricher {
    pub fn new(proc_root: &str) -> Self {
        let n = NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            workloads: LruCache::with_hasher(n, Hasher::default()),
            processes: LruCache::with_hasher(n, Hasher::default()),
            spare: Vec::new(),
            users: users::Users::default(),
            proc_root: proc_root.to_string(),
            generation: 1,
        }
    }

    fn put_workload(&mut self, cgroup_id: u64, w: Workload) {
        self.generation += 1;
        self.workloads.put(cgroup_id, w);
    }

    /// Learn a cgroup's workload from the names the kernel captured.
    pub fn learn_cgroup(&mut self, cgroup_id: u64, leaf: &str, parent: &str) -> Workload {
        let w = cgroup::from_names(leaf, parent);
        self.put_workload(cgroup_id, w.clone());
        w
    }

    /// The workload of `cgroup_id`, asking /proc/<pid>/cgroup on a miss
    /// (the process may already be gone: then there is nothing to say).
    pub fn workload(&mut self, cgroup_id: u64, pid: u32) -> Workload {
        if let Some(w) = self.workloads.get(&cgroup_id) {
            return w.clone();
        }
        let path = std::fs::read_to_string(format!("{}/{pid}/cgroup", self.proc_root))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            });
        match path {
            Some(p) => {
                let w = cgroup::from_path(&p);
                self.put_workload(cgroup_id, w.clone());
                w
            }
            None => Workload::default(),
        }
    }

    pub fn remember_process(&mut self, pid: u32, info: ProcessInfo) {
        // The entry replaced (same pid) or evicted (cache full) is reused.
        if let Some((_, old)) = self.processes.push(pid, info) {
            self.recycle(old);
        }
    }

    /// An empty ProcessInfo, reusing the strings of one given back.
    pub fn spare_info(&mut self) -> ProcessInfo {
        let mut i = self.spare.pop().unwrap_or(ProcessInfo {
            executable_path: String::new(),
            command_line: String::new(),
        });
        i.executable_path.clear();
        i.command_line.clear();
        i
    }

    /// Give back a ProcessInfo that is no longer needed.
    pub fn recycle(&mut self, info: ProcessInfo) {
        if self.spare.len() < SPARE_INFOS {
            self.spare.push(info);
        }
    }

    /// Learn a cgroup's workload from the names the kernel captured, unless
    /// it is known already (a cgroup's id names one directory for its life).
    pub fn learn_cgroup_names(&mut self, cgroup_id: u64, leaf: &[u8], parent: &[u8]) {
        if !self.workloads.contains(&cgroup_id) {
            let w = cgroup::from_names(
                &String::from_utf8_lossy(leaf),
                &String::from_utf8_lossy(parent),
            );
            self.put_workload(cgroup_id, w);
        }
    }

    /// Fill the workload cache for a task that may be gone when its record
    /// is written (a DNS query's, answered later).
    pub fn warm(&mut self, cgroup_id: u64, pid: u32) {
        if pid != 0 && !self.workloads.contains(&cgroup_id) {
            let _ = self.workload(cgroup_id, pid);
        }
    }

    /// Owner and workload of a task, borrowed from the caches (filled from
    /// /etc/passwd and /proc on a miss). Pid 0 (softirq) has neither.
    pub fn context(&mut self, uid: u32, cgroup_id: u64, pid: u32) -> Context<'_> {
        if pid == 0 {
            return Context::default();
        }
        if !self.workloads.contains(&cgroup_id) {
            // Fills the cache when /proc knows the task.
            let _ = self.workload(cgroup_id, pid);
        }
        let (owner, users_generation) = self.users.name_and_generation(uid);
        Context {
            owner,
            workload: self.workloads.get(&cgroup_id),
            // Users count their re-reads of /etc/passwd from 0; both
            // counters only grow, so the sum changes whenever either did.
            generation: self.generation + users_generation,
        }
    }

    /// What an exiting process ran, forgetting it.
    pub fn forget_process(&mut self, pid: u32) -> Option<ProcessInfo> {
        self.processes.pop(&pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_falls_back_to_proc() {
        let dir = tempfile::tempdir().unwrap();
        let id = "a".repeat(64);
        std::fs::create_dir_all(dir.path().join("42")).unwrap();
        std::fs::write(
            dir.path().join("42/cgroup"),
            format!("0::/system.slice/docker-{id}.scope\n"),
        )
        .unwrap();
        let mut e = Enricher::new(dir.path().to_str().unwrap());
        assert_eq!(e.workload(7, 42).container_id.as_deref(), Some(id.as_str()));
        // cached by cgroup id now, even once the process is gone
        std::fs::remove_dir_all(dir.path().join("42")).unwrap();
        assert_eq!(e.workload(7, 42).container_id.as_deref(), Some(id.as_str()));
        assert_eq!(e.workload(8, 43), Workload::default());
    }

    #[test]
    fn processes_are_forgotten_at_exit() {
        let mut e = Enricher::new("/nonexistent");
        e.remember_process(
            1,
            ProcessInfo {
                executable_path: "/bin/sh".into(),
                command_line: "sh".into(),
            },
        );
        assert!(e.forget_process(1).is_some());
        assert!(e.forget_process(1).is_none());
    }
}
