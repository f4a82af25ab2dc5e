//! The netns probe: a pod's network setup as a timeline of log records.
//!
//! - `ebpf/netns.bpf.c` sees network namespaces being made (unshare and
//!   clone with CLONE_NEWNET) and CNI plugins being executed (exec of a
//!   file under the CNI bin directory, with its environment);
//! - [`rtnl`] gives each namespace Tapio learns of an id (nsid) in Tapio's
//!   own and listens, with NETLINK_LISTEN_ALL_NSID, to interface, address
//!   and route changes in all of them, and to the kernel dropping an id
//!   when it frees the namespace (`network.namespace.delete`);
//! - [`otlp`] writes the records.

pub mod otlp;
pub mod rtnl;

use super::{Attach, DecodeError, LoadError, ProbeSpec, Variant};
use crate::config::NetnsProbe;
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use tapio_shared::{
    read_record, record_kind, tapio_cni_exec, tapio_event_kind as kind, tapio_netns_create,
};

pub const NAME: &str = "netns";

pub const PROG_UNSHARE_ENTER: &str = "tapio_netns_unshare_enter";
pub const PROG_UNSHARE_EXIT: &str = "tapio_netns_unshare_exit";
pub const PROG_FORK: &str = "tapio_netns_fork";
pub const PROG_CNI_EXEC: &str = "tapio_cni_on_exec";
const GLOBAL_CNI_DIR: &str = "tapio_cni_dir";
const GLOBAL_CNI_DIR_LEN: &str = "tapio_cni_dir_len";

/// One variant: the syscall tracepoints and tp_btf, which every supported
/// kernel has (no kprobes or trampolines).
pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::NETNS,
    variants: &[Variant {
        label: "tracepoint+tp_btf",
        programs: &[
            (
                PROG_UNSHARE_ENTER,
                Attach::TracePoint("syscalls", "sys_enter_unshare"),
            ),
            (
                PROG_UNSHARE_EXIT,
                Attach::TracePoint("syscalls", "sys_exit_unshare"),
            ),
            (PROG_FORK, Attach::BtfTracePoint("sched_process_fork")),
            (PROG_CNI_EXEC, Attach::BtfTracePoint("sched_process_exec")),
        ],
    }],
};

/// Namespaces tracked at once (each has an id in Tapio's namespace).
const MAX_TRACKED: usize = 16384;

/// The `.rodata` globals: the CNI directory with its trailing '/'.
pub fn cni_dir_global(dir: &str) -> ([u8; tapio_shared::TAPIO_CNI_DIR_LEN as usize], u32) {
    let mut g = [0u8; tapio_shared::TAPIO_CNI_DIR_LEN as usize];
    if dir.is_empty() {
        return (g, 0);
    }
    let d = format!("{}/", dir.trim_end_matches('/'));
    // Validated to fit; cut defensively all the same.
    let n = d.len().min(g.len() - 1);
    g[..n].copy_from_slice(&d.as_bytes()[..n]);
    (g, n as u32)
}

/// Load and attach the programs with the CNI directory set.
pub fn load(
    cfg: &NetnsProbe,
    ring: super::RingConfig,
    btf: Option<&aya::Btf>,
) -> Result<super::Loaded, LoadError> {
    let (dir, len) = cni_dir_global(&cfg.cni_bin_dir);
    let mut loader = aya::EbpfLoader::with_btf(btf);
    loader
        .map_max_entries(crate::bpf_objects::MAP_EVENTS, ring.bytes)
        .override_global(
            crate::bpf_objects::GLOBAL_WAKEUP_BYTES,
            &ring.wakeup_bytes,
            true,
        )
        .override_global(GLOBAL_CNI_DIR, &dir, true)
        .override_global(GLOBAL_CNI_DIR_LEN, &len, true);
    super::load_with(&SPEC, loader, btf, true, &|_| true)
}

/// A network namespace as the records name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsRef {
    pub ino: Option<u64>,
    /// Its id in Tapio's namespace; `None` for Tapio's own.
    pub nsid: Option<i32>,
    pub path: Option<String>,
}

/// The namespaces Tapio has given an id, by id.
#[derive(Debug, Default)]
pub struct Table {
    by_nsid: HashMap<i32, NsRef>,
    by_ino: HashMap<u64, i32>,
    /// Tapio's own namespace.
    pub own_ino: u64,
}

impl Table {
    pub fn insert(&mut self, r: NsRef) -> bool {
        let (Some(id), Some(ino)) = (r.nsid, r.ino) else {
            return false;
        };
        if self.by_nsid.len() >= MAX_TRACKED && !self.by_nsid.contains_key(&id) {
            return false;
        }
        // Ids and inode numbers are both reused: drop whatever the old
        // entries of either said.
        if let Some(old) = self.by_nsid.insert(id, r) {
            if let Some(o) = old.ino {
                if self.by_ino.get(&o) == Some(&id) {
                    self.by_ino.remove(&o);
                }
            }
        }
        if let Some(old_id) = self.by_ino.insert(ino, id) {
            if old_id != id {
                self.by_nsid.remove(&old_id);
            }
        }
        true
    }

    pub fn tracked(&self, ino: u64) -> bool {
        ino == self.own_ino || self.by_ino.contains_key(&ino)
    }

    /// The namespace a notification came from.
    pub fn get(&self, nsid: Option<i32>) -> NsRef {
        match nsid {
            None => NsRef {
                ino: Some(self.own_ino),
                ..Default::default()
            },
            Some(id) => self.by_nsid.get(&id).cloned().unwrap_or(NsRef {
                nsid: Some(id),
                ..Default::default()
            }),
        }
    }

    pub fn remove(&mut self, nsid: i32) -> NsRef {
        match self.by_nsid.remove(&nsid) {
            Some(r) => {
                if let Some(i) = r.ino {
                    if self.by_ino.get(&i) == Some(&nsid) {
                        self.by_ino.remove(&i);
                    }
                }
                r
            }
            None => NsRef {
                nsid: Some(nsid),
                ..Default::default()
            },
        }
    }

    pub fn len(&self) -> usize {
        self.by_nsid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_nsid.is_empty()
    }
}

pub type SharedTable = Arc<Mutex<Table>>;

/// nsfs bind mounts of network namespaces in Tapio's mount namespace
/// (`/run/netns/<name>`, a runtime's `/var/run/netns/cni-…`): inode → path.
pub fn netns_mounts(mountinfo: &str) -> Vec<(u64, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // root is field 3, mount point 4; fstype follows the " - ".
            let sep = f.iter().position(|x| *x == "-")?;
            if f.get(sep + 1) != Some(&"nsfs") {
                return None;
            }
            let ino = f.get(3)?.strip_prefix("net:[")?.strip_suffix(']')?;
            Some((ino.parse().ok()?, unescape(f.get(4)?)))
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|t| u8::from_str_radix(t, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mount_of(ino: u64) -> Option<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    netns_mounts(&mi)
        .into_iter()
        .find(|(i, _)| *i == ino)
        .map(|(_, p)| p)
}

/// Waits for the bind mount of a namespace its creator no longer holds.
const RETRIES: usize = 5;
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// nsfs's f_type (`NSFS_MAGIC`).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Open namespace `ino` through the first of `candidates` that is it.
/// Candidates may come from a process's environment (CNI_NETNS): opened
/// non-blocking (a FIFO there must not stall the reader) and kept only if
/// the file is an nsfs inode.
fn open_ns(ino: u64, candidates: &[String]) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    candidates.iter().find_map(|p| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(p)
            .ok()?;
        // SAFETY: st is plain data the kernel fills; f is open.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 || st.f_type as i64 != NSFS_MAGIC {
            return None;
        }
        (f.metadata().ok()?.ino() == ino).then_some(f)
    })
}

/// Gives namespaces ids and keeps the table.
pub struct Tracker {
    pub table: SharedTable,
    requester: Option<rtnl::Requester>,
}

impl Tracker {
    pub fn new(rtnetlink: bool) -> Self {
        let own_ino = std::fs::metadata("/proc/self/ns/net")
            .map(|m| m.ino())
            .unwrap_or(0);
        let requester = if rtnetlink {
            rtnl::Requester::new()
                .map_err(|e| tracing::warn!(probe = NAME, "no rtnetlink socket: {e}"))
                .ok()
        } else {
            None
        };
        Self {
            table: Arc::new(Mutex::new(Table {
                own_ino,
                ..Default::default()
            })),
            requester,
        }
    }

    /// Track namespace `ino`, reachable through one of `candidates` or a
    /// bind mount. `Err` says why not (it may be gone already).
    pub fn track(&mut self, ino: u64, candidates: &[String]) -> Result<NsRef, &'static str> {
        let path = mount_of(ino);
        let mut r = NsRef {
            ino: Some(ino),
            nsid: None,
            path: path.clone(),
        };
        // Only Tapio's own namespace is known without asking: inode numbers
        // are reused at once, so a table entry may be a freed namespace
        // whose RTM_DELNSID has not been read yet. The kernel's answer is
        // the truth (an id it already gave is returned as is).
        if ino == crate::supervise::lock(&self.table).own_ino {
            return Ok(r);
        }
        let Some(req) = self.requester.as_mut() else {
            return Ok(r);
        };
        let mut all: Vec<String> = candidates.to_vec();
        all.extend(path);
        let mut f = open_ns(ino, &all);
        // `ip netns add` unshares, bind-mounts the new namespace, then
        // returns to its old one: read between the two, neither the task
        // nor a mount is it (seen in the qemu guests). The mount follows
        // within moments; a few short waits, only on this rare path.
        for _ in 0..RETRIES {
            if f.is_some() {
                break;
            }
            std::thread::sleep(RETRY_WAIT);
            if let Some(p) = mount_of(ino) {
                r.path = Some(p.clone());
                f = open_ns(ino, &[p]);
            }
        }
        let f = f.ok_or("gone before it could be opened")?;
        r.nsid = req
            .nsid_for(f.as_raw_fd())
            .map_err(|_| "the kernel refused it an id")?;
        if !crate::supervise::lock(&self.table).insert(r.clone()) {
            return Err("table full");
        }
        Ok(r)
    }

    /// Track the namespaces that exist now: bind mounts and those of live
    /// processes (bounded). Returns how many.
    pub fn adopt_existing(&mut self) -> usize {
        let mut seen: HashMap<u64, Vec<String>> = HashMap::new();
        if let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") {
            for (ino, p) in netns_mounts(&mi) {
                seen.entry(ino).or_default().push(p);
            }
        }
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                if seen.len() >= MAX_TRACKED {
                    break;
                }
                let name = e.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                let p = format!("/proc/{pid}/ns/net");
                if let Ok(m) = std::fs::metadata(&p) {
                    let v = seen.entry(m.ino()).or_default();
                    if v.len() < 2 {
                        v.push(p);
                    }
                }
            }
        }
        seen.into_iter()
            .filter(|(ino, c)| self.track(*ino, c).is_ok_and(|r| r.nsid.is_some()))
            .count()
    }
}

/// A CNI plugin's environment, the variables Tapio reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
}

/// The CNI_* variables of a NUL-separated environment block.
pub fn cni_env(env: &[u8]) -> CniEnv {
    let mut c = CniEnv::default();
    for kv in env.split(|b| *b == 0) {
        let Some(eq) = kv.iter().position(|b| *b == b'=') else {
            continue;
        };
        let v = || Some(String::from_utf8_lossy(&kv[eq + 1..]).into_owned());
        match &kv[..eq] {
            b"CNI_COMMAND" => c.command = v(),
            b"CNI_CONTAINERID" => c.container_id = v(),
            b"CNI_NETNS" => c.netns = v(),
            b"CNI_IFNAME" => c.ifname = v(),
            _ => {}
        }
    }
    c
}

/// A record of the netns probe.
pub enum Record {
    Create(tapio_netns_create),
    Cni(Box<tapio_cni_exec>),
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_NETNS_CREATE as u32 {
        Ok(Record::Create(read_record(bytes)?))
    } else if k == kind::TAPIO_EVENT_CNI_EXEC as u32 {
        Ok(Record::Cni(Box::new(read_record(bytes)?)))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

/// Turns the kernel's records into log records, tracking new namespaces.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: Arc<crate::telemetry::ProbeStats>,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
    pub tracker: Tracker,
}

impl Handler {
    fn on_create(&mut self, r: &tapio_netns_create, observed: u64) {
        let h = &r.hdr;
        let mut cands = Vec::with_capacity(2);
        if r.child_pid != 0 {
            cands.push(format!("/proc/{}/ns/net", r.child_pid));
        }
        cands.push(format!("/proc/{}/task/{}/ns/net", h.pid, h.tid));
        let ns = match self.tracker.track(r.netns_ino, &cands) {
            Ok(ns) => ns,
            Err(why) => {
                // Rare (a namespace gone within moments) and costly: its
                // changes and deletion will not be seen.
                tracing::warn!(
                    probe = NAME,
                    ino = r.netns_ino,
                    "namespace not tracked: {why}"
                );
                self.stats.lose("netns_untracked", 1);
                NsRef {
                    ino: Some(r.netns_ino),
                    ..Default::default()
                }
            }
        };
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::namespace_create(
            enc, r, &ns, &ctx, clock, observed
        ));
    }

    fn on_cni(&mut self, r: &tapio_cni_exec, observed: u64) {
        let n = (r.env_len as usize).min(r.env.len());
        // NUL-separated: every byte up to env_len, not up to the first NUL.
        let raw: Vec<u8> = r.env[..n].iter().map(|c| *c as u8).collect();
        let env = cni_env(&raw);
        if env.command.is_none() {
            // Not a runtime's call (someone ran the binary by hand), or the
            // environment was unreadable or cut.
            self.stats.lose("cni_env_missing", 1);
        }
        // The namespace the call is for, tracked so its interfaces show.
        let target = env.netns.as_deref().and_then(|p| {
            let ino = std::fs::metadata(p).ok()?.ino();
            match self.tracker.track(ino, &[p.to_string()]) {
                Ok(ns) => Some(ns),
                Err(_) => Some(NsRef {
                    ino: Some(ino),
                    ..Default::default()
                }),
            }
        });
        let h = &r.hdr;
        let ctx = self.enricher.context(h.uid, h.cgroup_id, h.pid);
        let clock = &self.clock;
        crate::encode_log!(self.emitter, |enc| otlp::cni_exec(
            enc,
            r,
            &env,
            target.as_ref(),
            &ctx,
            clock,
            observed
        ));
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
        let observed = crate::clock::unix_ns();
        let ts = match &rec {
            Record::Create(r) => {
                self.on_create(r, observed);
                r.hdr.ts_ns
            }
            Record::Cni(r) => {
                self.on_cni(r, observed);
                r.hdr.ts_ns
            }
        };
        self.stats
            .latency
            .record_ns(crate::clock::boot_ns().saturating_sub(ts));
    }
}

/// A device that left one namespace for another, waiting for its arrival
/// (the kernel sends the departure, then the arrival).
struct Departed {
    from: NsRef,
    name: String,
    kind: Option<String>,
    index: i32,
    new_index: Option<i32>,
    /// The target's id as the source numbers it (meaningful to Tapio only
    /// when the source is Tapio's own namespace).
    target_id: i32,
    at: std::time::Instant,
}

/// How long a departure waits for its arrival before it is reported
/// alone (the target has no id in Tapio's namespace).
const ARRIVAL_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Interface, address and route changes → log records.
pub struct Watcher {
    pub emitter: crate::export::Emitter,
    pub stats: Arc<crate::telemetry::ProbeStats>,
    pub table: SharedTable,
    /// (namespace id, ifindex) → name, from link notifications.
    names: HashMap<(Option<i32>, i32), String>,
    departed: Option<Departed>,
}

impl Watcher {
    pub fn new(
        emitter: crate::export::Emitter,
        stats: Arc<crate::telemetry::ProbeStats>,
        table: SharedTable,
    ) -> Self {
        Self {
            emitter,
            stats,
            table,
            names: HashMap::new(),
            departed: None,
        }
    }

    fn ifname(&self, nsid: Option<i32>, index: i32) -> Option<String> {
        self.names.get(&(nsid, index)).cloned().or_else(|| {
            nsid.is_none()
                .then(|| rtnl::own_ifname(index as u32))
                .flatten()
        })
    }

    fn flush_departed(&mut self, now: u64) {
        if let Some(d) = self.departed.take() {
            let to = if d.from.nsid.is_none() {
                crate::supervise::lock(&self.table).get(Some(d.target_id))
            } else {
                NsRef::default()
            };
            let ev = otlp::Move {
                from: &d.from,
                to: &to,
                name: &d.name,
                kind: d.kind.as_deref(),
                index: d.index,
                new_index: d.new_index,
            };
            crate::encode_log!(self.emitter, |enc| otlp::interface_move(enc, &ev, now));
        }
    }

    /// One datagram from namespace `nsid`.
    pub fn on_datagram(&mut self, buf: &[u8], nsid: Option<i32>) {
        let now = crate::clock::unix_ns();
        for (ty, p) in rtnl::messages(buf) {
            let Some(c) = rtnl::parse(ty, p) else {
                continue;
            };
            self.on_change(c, nsid, now);
        }
    }

    /// Report a departure whose arrival never came.
    pub fn tick(&mut self) {
        if self
            .departed
            .as_ref()
            .is_some_and(|d| d.at.elapsed() >= ARRIVAL_WAIT)
        {
            self.flush_departed(crate::clock::unix_ns());
        }
    }

    pub fn waiting(&self) -> bool {
        self.departed.is_some()
    }

    fn on_change(&mut self, c: rtnl::Change, nsid: Option<i32>, now: u64) {
        use rtnl::Change;
        let ns = crate::supervise::lock(&self.table).get(nsid);
        match c {
            Change::Link {
                new: true,
                index,
                name,
                kind,
                flags,
                change,
                ..
            } => {
                self.names.insert((nsid, index), name.clone());
                if change == u32::MAX {
                    let arrived = self
                        .departed
                        .as_ref()
                        .is_some_and(|d| d.name == name && d.new_index.is_none_or(|i| i == index));
                    if arrived {
                        if let Some(d) = self.departed.take() {
                            let ev = otlp::Move {
                                from: &d.from,
                                to: &ns,
                                name: &name,
                                kind: d.kind.as_deref().or(kind.as_deref()),
                                index: d.index,
                                new_index: Some(index),
                            };
                            crate::encode_log!(self.emitter, |enc| otlp::interface_move(
                                enc, &ev, now
                            ));
                        }
                        return;
                    }
                    crate::encode_log!(self.emitter, |enc| otlp::interface(
                        enc,
                        crate::otel::names::event::NETWORK_INTERFACE_CREATE,
                        &ns,
                        &name,
                        kind.as_deref(),
                        index,
                        now
                    ));
                } else if change & rtnl::IFF_UP != 0 {
                    let ev = if flags & rtnl::IFF_UP != 0 {
                        crate::otel::names::event::NETWORK_INTERFACE_UP
                    } else {
                        crate::otel::names::event::NETWORK_INTERFACE_DOWN
                    };
                    crate::encode_log!(self.emitter, |enc| otlp::interface(
                        enc,
                        ev,
                        &ns,
                        &name,
                        kind.as_deref(),
                        index,
                        now
                    ));
                }
            }
            Change::Link {
                new: false,
                index,
                name,
                kind,
                moved_to,
                ..
            } => {
                self.names.remove(&(nsid, index));
                if let Some((target_id, new_index)) = moved_to {
                    self.flush_departed(now);
                    self.departed = Some(Departed {
                        from: ns,
                        name,
                        kind,
                        index,
                        new_index,
                        target_id,
                        at: std::time::Instant::now(),
                    });
                    return;
                }
                crate::encode_log!(self.emitter, |enc| otlp::interface(
                    enc,
                    crate::otel::names::event::NETWORK_INTERFACE_DELETE,
                    &ns,
                    &name,
                    kind.as_deref(),
                    index,
                    now
                ));
            }
            Change::Addr {
                new,
                index,
                prefix,
                addr,
                label,
            } => {
                let name = label.or_else(|| self.ifname(nsid, index as i32));
                crate::encode_log!(self.emitter, |enc| otlp::address(
                    enc,
                    new,
                    &ns,
                    name.as_deref(),
                    index,
                    addr,
                    prefix,
                    now
                ));
            }
            Change::Route {
                new,
                dst,
                dst_len,
                gateway,
                oif,
                table,
            } => {
                let name = oif.and_then(|i| self.ifname(nsid, i as i32));
                let ev = otlp::Route {
                    new,
                    dst,
                    dst_len,
                    gateway,
                    oif,
                    ifname: name.as_deref(),
                    table,
                };
                crate::encode_log!(self.emitter, |enc| otlp::route(enc, &ns, &ev, now));
            }
            // Another namespace dropping its own id for a peer says
            // nothing about Tapio's ids.
            Change::NsidDeleted(_) if nsid.is_some() => {}
            Change::NsidDeleted(id) => {
                let gone = crate::supervise::lock(&self.table).remove(id);
                self.names.retain(|(n, _), _| *n != Some(id));
                crate::encode_log!(self.emitter, |enc| otlp::namespace_delete(enc, &gone, now));
            }
        }
    }
}

/// Read rtnetlink until `stop`.
pub async fn run_listener(
    mut w: Watcher,
    listener: rtnl::Listener,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the Listener owns its fd for as long as the AsyncFd owns it.
    let fd = match unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(probe = NAME, "rtnetlink listener: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let wait = if w.waiting() {
            ARRIVAL_WAIT
        } else {
            std::time::Duration::from_secs(3600)
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => w.tick(),
            g = fd.readable() => {
                let Ok(mut g) = g else { return };
                // Drain what is queued (bounded per wake).
                for _ in 0..256 {
                    match g.get_inner().recv(&mut buf) {
                        Ok((n, nsid)) => w.on_datagram(&buf[..n], nsid),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            g.clear_ready();
                            break;
                        }
                        // The socket overflowed: notifications were lost.
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            w.stats.lose("rtnetlink_overrun", 1);
                        }
                        Err(e) => {
                            tracing::warn!(probe = NAME, "rtnetlink: {e}");
                            g.clear_ready();
                            break;
                        }
                    }
                }
                w.tick();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_variables_from_an_environment_block() {
        let env = b"PATH=/usr/bin\0CNI_COMMAND=ADD\0CNI_CONTAINERID=abc123\0CNI_NETNS=/var/run/netns/cni-1\0CNI_IFNAME=eth0\0CNI_PATH=/opt/cni/bin\0";
        assert_eq!(
            cni_env(env),
            CniEnv {
                command: Some("ADD".into()),
                container_id: Some("abc123".into()),
                netns: Some("/var/run/netns/cni-1".into()),
                ifname: Some("eth0".into()),
            }
        );
        // cut at the front (the tail kept): the first variable is lost only
        assert_eq!(
            cni_env(b"MMAND=ADD\0CNI_IFNAME=eth1").ifname.as_deref(),
            Some("eth1")
        );
        assert_eq!(cni_env(b"").command, None);
    }

    #[test]
    fn nsfs_mounts_from_mountinfo() {
        let mi = "29 23 0:4 net:[4026532281] /run/netns/a\\040b rw shared:5 - nsfs nsfs rw\n\
                  30 23 0:4 mnt:[4026532282] /run/x rw - nsfs nsfs rw\n\
                  31 23 0:26 / /sys rw,nosuid - sysfs sysfs rw\n";
        assert_eq!(
            netns_mounts(mi),
            vec![(4026532281, "/run/netns/a b".to_string())]
        );
    }

    #[test]
    fn cni_dir_has_one_trailing_slash() {
        let (g, n) = cni_dir_global("/opt/cni/bin/");
        assert_eq!(&g[..n as usize], b"/opt/cni/bin/");
        assert_eq!(g[n as usize], 0);
        assert_eq!(cni_dir_global("").1, 0);
    }

    #[test]
    fn the_table_forgets_a_reused_id() {
        let mut t = Table {
            own_ino: 1,
            ..Default::default()
        };
        let r = |ino, id| NsRef {
            ino: Some(ino),
            nsid: Some(id),
            path: None,
        };
        assert!(t.insert(r(10, 0)));
        assert!(t.tracked(10) && t.tracked(1) && !t.tracked(11));
        assert!(t.insert(r(11, 0)));
        assert!(!t.tracked(10));
        // inode 11 freed and reused before its id's deletion was read
        assert!(t.insert(r(11, 1)));
        assert_eq!(t.remove(0).nsid, Some(0));
        assert!(t.tracked(11), "the new namespace's entry survives");
        assert_eq!(t.remove(1).ino, Some(11));
        assert_eq!(t.get(None).ino, Some(1));
        assert_eq!(t.get(Some(7)).nsid, Some(7));
        assert!(t.is_empty());
    }
}
