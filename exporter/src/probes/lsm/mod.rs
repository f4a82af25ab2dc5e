//! The lsm probe: `ebpf/lsm.bpf.c` ↔ this module. Loads every enforcement
//! program the kernel accepts, compiles the configured rules into its maps
//! (refusing, loudly, the rules whose hook this kernel cannot run), and
//! turns decisions into `security.policy_decision` logs and
//! `tapio.lsm.decisions`.

#[cfg(any(test, feature = "legacy-mapper"))]
pub mod legacy;
pub mod otlp;

use super::{LoadError, Loaded, RingConfig};
use crate::bpf_objects::{GLOBAL_WAKEUP_BYTES, MAP_EVENTS};
use crate::config::{FileOperation, LsmAction, LsmHook, LsmPolicy, LsmProbe, LsmRule, OnExit};
use crate::policy::{PolicyError, PolicyTarget};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray};
use aya::programs::{
    links::{CgroupAttachMode, FdLink},
    CgroupDevice, CgroupSock, CgroupSockAddr, Lsm,
};
use aya::{Btf, Ebpf, EbpfLoader};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tapio_shared::{
    tapio_lsm_action as act, tapio_lsm_decision, tapio_lsm_hook as hk, tapio_lsm_hook_flags as hf,
    tapio_lsm_rule, tapio_lsm_rule_flags as rf, TAPIO_LSM_MAX_RULES,
};

pub const NAME: &str = "lsm";
pub const MAP_RULES: &str = "lsm_rules";
pub const MAP_COUNTERS: &str = "lsm_counters";
pub const MAP_ACTIVE: &str = "lsm_active";
pub const MAP_EXEMPT: &str = "lsm_exempt";
/// Where `on_exit: keep` pins `lsm_exempt` (in `pin_dir`), so the next
/// Tapio can exempt itself from the programs a dead one left.
pub const PIN_EXEMPT: &str = "lsm_exempt";
pub const MAP_WHOAMI: &str = "lsm_whoami";
/// Tells Tapio its tgid and cgroup id as the kernel sees them.
pub const PROG_WHOAMI: &str = "tapio_lsm_whoami";
/// The prctl option `tapio_lsm_whoami` waits for (`TAPIO_WHOAMI`).
const WHOAMI_OPTION: libc::c_int = 0x5441_5049;
/// Rules one map key can chain (the kernel's bounded walk).
pub const MAX_CHAIN: usize = tapio_shared::TAPIO_LSM_MAX_CHAIN as usize;
pub const MAP_CONTAINER_IDS: &str = "lsm_container_ids";
pub const MAP_CONTAINER_CGROUPS: &str = "lsm_container_cgroups";
/// Sees cgroups created after a policy with `container_id` was applied.
pub const PROG_CGROUP_MKDIR: &str = "tapio_lsm_cgroup_mkdir";
/// Containers a policy may name (`lsm_container_ids` entries).
pub const MAX_CONTAINERS: usize = 4096;

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
enum Kind {
    SockAddr,
    Sock,
    Device,
    Lsm(&'static str),
}

/// Every program, the hook it enforces, and how it attaches.
const PROGRAMS: &[(&str, u32, Kind)] = &[
    ("tapio_lsm_connect4", hk::TAPIO_LSM_CONNECT, Kind::SockAddr),
    ("tapio_lsm_connect6", hk::TAPIO_LSM_CONNECT, Kind::SockAddr),
    ("tapio_lsm_sendmsg4", hk::TAPIO_LSM_CONNECT, Kind::SockAddr),
    ("tapio_lsm_sendmsg6", hk::TAPIO_LSM_CONNECT, Kind::SockAddr),
    ("tapio_lsm_bind4", hk::TAPIO_LSM_BIND, Kind::SockAddr),
    ("tapio_lsm_bind6", hk::TAPIO_LSM_BIND, Kind::SockAddr),
    (
        "tapio_lsm_sock_create",
        hk::TAPIO_LSM_SOCKET_CREATE,
        Kind::Sock,
    ),
    ("tapio_lsm_dev", hk::TAPIO_LSM_DEVICE, Kind::Device),
    (
        "tapio_lsm_file_open",
        hk::TAPIO_LSM_FILE_OPEN,
        Kind::Lsm("file_open"),
    ),
    (
        "tapio_lsm_exec",
        hk::TAPIO_LSM_EXEC,
        Kind::Lsm("bprm_check_security"),
    ),
    (
        "tapio_lsm_ptrace",
        hk::TAPIO_LSM_PTRACE,
        Kind::Lsm("ptrace_access_check"),
    ),
    (
        "tapio_lsm_read_file",
        hk::TAPIO_LSM_MODULE_LOAD,
        Kind::Lsm("kernel_read_file"),
    ),
    (
        "tapio_lsm_load_data",
        hk::TAPIO_LSM_MODULE_LOAD,
        Kind::Lsm("kernel_load_data"),
    ),
    (
        "tapio_lsm_module_request",
        hk::TAPIO_LSM_MODULE_LOAD,
        Kind::Lsm("kernel_module_request"),
    ),
    ("tapio_lsm_bpf", hk::TAPIO_LSM_BPF, Kind::Lsm("bpf")),
    (
        "tapio_lsm_path_unlink",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_unlink"),
    ),
    (
        "tapio_lsm_path_rmdir",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_rmdir"),
    ),
    (
        "tapio_lsm_path_rename",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_rename"),
    ),
    (
        "tapio_lsm_path_truncate",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_truncate"),
    ),
    (
        PROG_FILE_TRUNCATE,
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("file_truncate"),
    ),
    (
        "tapio_lsm_path_chmod",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_chmod"),
    ),
    (
        "tapio_lsm_path_chown",
        hk::TAPIO_LSM_FILE_MODIFY,
        Kind::Lsm("path_chown"),
    ),
];

/// `file_truncate` (6.2+): ftruncate() and open(O_TRUNC) go through it
/// instead of `path_truncate` on newer kernels. Older kernels lack the
/// hook and do not need it, so its absence does not refuse `file_modify`.
const PROG_FILE_TRUNCATE: &str = "tapio_lsm_file_truncate";
const OPTIONAL: &[&str] = &[PROG_FILE_TRUNCATE];

pub fn hook_number(h: LsmHook) -> u32 {
    match h {
        LsmHook::Connect => hk::TAPIO_LSM_CONNECT,
        LsmHook::Bind => hk::TAPIO_LSM_BIND,
        LsmHook::SocketCreate => hk::TAPIO_LSM_SOCKET_CREATE,
        LsmHook::Device => hk::TAPIO_LSM_DEVICE,
        LsmHook::FileOpen => hk::TAPIO_LSM_FILE_OPEN,
        LsmHook::Exec => hk::TAPIO_LSM_EXEC,
        LsmHook::Ptrace => hk::TAPIO_LSM_PTRACE,
        LsmHook::ModuleLoad => hk::TAPIO_LSM_MODULE_LOAD,
        LsmHook::Bpf => hk::TAPIO_LSM_BPF,
        LsmHook::FileModify => hk::TAPIO_LSM_FILE_MODIFY,
    }
}

/// `tapio_lsm_file_op` bit of a file_modify operation.
pub fn file_op_bit(op: FileOperation) -> u32 {
    use tapio_shared::tapio_lsm_file_op as fo;
    match op {
        FileOperation::Write => fo::TAPIO_LSM_OP_WRITE,
        FileOperation::Truncate => fo::TAPIO_LSM_OP_TRUNCATE,
        FileOperation::Rename => fo::TAPIO_LSM_OP_RENAME,
        FileOperation::Unlink => fo::TAPIO_LSM_OP_UNLINK,
        FileOperation::Chmod => fo::TAPIO_LSM_OP_CHMOD,
        FileOperation::Chown => fo::TAPIO_LSM_OP_CHOWN,
    }
}

/// The operation a file_modify decision reports (`tapio.security.file.operation`).
pub fn file_op_name(bit: u32) -> &'static str {
    FileOperation::ALL
        .into_iter()
        .find(|o| file_op_bit(*o) == bit)
        .map_or("unknown", FileOperation::name)
}

/// A filesystem's `MAJOR:MINOR` → the kernel's dev_t encoding.
pub fn parse_fs_device(s: &str) -> Option<u32> {
    let (maj, min) = s.trim().split_once(':')?;
    let maj: u32 = maj.parse().ok()?;
    let min: u32 = min.parse().ok()?;
    (maj < (1 << 12) && min < (1 << 20)).then_some((maj << 20) | min)
}

/// `tapio.lsm.hook` values.
pub fn hook_name(h: u32) -> &'static str {
    match h {
        hk::TAPIO_LSM_CONNECT => "connect",
        hk::TAPIO_LSM_BIND => "bind",
        hk::TAPIO_LSM_SOCKET_CREATE => "socket_create",
        hk::TAPIO_LSM_DEVICE => "device",
        hk::TAPIO_LSM_FILE_OPEN => "file_open",
        hk::TAPIO_LSM_EXEC => "exec",
        hk::TAPIO_LSM_PTRACE => "ptrace",
        hk::TAPIO_LSM_MODULE_LOAD => "module_load",
        hk::TAPIO_LSM_BPF => "bpf",
        hk::TAPIO_LSM_FILE_MODIFY => "file_modify",
        _ => "unknown",
    }
}

pub fn family_number(s: &str) -> Option<u32> {
    Some(match s {
        "unix" => 1,
        "inet" | "ipv4" => 2,
        "inet6" | "ipv6" => 10,
        "netlink" => 16,
        "packet" => 17,
        n => n.parse().ok()?,
    })
}

pub fn socket_type_number(s: &str) -> Option<u32> {
    Some(match s {
        "stream" => 1,
        "dgram" => 2,
        "raw" => 3,
        n => n.parse().ok()?,
    })
}

/// `c 1:3` / `b 8:*` → (BPF_DEVCG_DEV_CHAR=2 | BLOCK=1, major, minor or any).
pub fn parse_device(s: &str) -> Option<(u32, u32, u32)> {
    let (t, rest) = s.trim().split_once(char::is_whitespace)?;
    let t = match t {
        "c" => 2,
        "b" => 1,
        _ => return None,
    };
    let (maj, min) = rest.trim().split_once(':')?;
    let maj = maj.parse().ok()?;
    let min = if min == "*" {
        u32::MAX
    } else {
        min.parse().ok()?
    };
    Some((t, maj, min))
}

fn access_mask(s: &str) -> u32 {
    // BPF_DEVCG_ACC_MKNOD = 1, READ = 2, WRITE = 4.
    s.chars()
        .map(|c| match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// The kernel's dev_t encoding of a userspace st_dev (MKDEV).
fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

/// A rule's fate on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    Enforced,
    Refused(String),
}

/// Keys of one compiled rule.
enum RuleKey {
    Net(Vec<(u32, [u8; 20])>), // (prefixlen, hook|proto|port|addr)
    Inode(Vec<(u32, u32, u64)>),
    Sock(u32, u32),
    Dev(u32, u32, u32),
    Any(u32),
}

impl RuleKey {
    /// One name per map key, for chaining the rules that share it.
    fn names(&self) -> Vec<String> {
        match self {
            RuleKey::Net(keys) => keys.iter().map(|(p, k)| format!("n{p}{k:?}")).collect(),
            RuleKey::Inode(keys) => keys.iter().map(|k| format!("i{k:?}")).collect(),
            RuleKey::Sock(f, t) => vec![format!("s{f}/{t}")],
            RuleKey::Dev(t, maj, min) => vec![format!("d{t}/{maj}/{min}")],
            RuleKey::Any(h) => vec![format!("a{h}")],
        }
    }
}

/// What a policy becomes in the kernel.
pub struct Compiled {
    /// Rules in kernel order with their names (index = rule slot).
    pub rules: Vec<(String, tapio_lsm_rule)>,
    net: BTreeMap<(u32, [u8; 20]), u32>,
    inode: BTreeMap<(u32, u32, u64), u32>,
    sock: BTreeMap<(u32, u32), u32>,
    dev: BTreeMap<(u32, u32, u32), u32>,
    any: BTreeMap<u32, u32>,
    /// Per hook: which lookups its rules need (`tapio_lsm_hook_flags`).
    pub info: BTreeMap<u32, u32>,
    /// Every configured rule and what happened to it.
    pub states: Vec<(String, &'static str, RuleState)>,
}

/// Environment a policy compiles against.
pub struct Env<'a> {
    /// Hooks whose programs are attached.
    pub available: &'a [u32],
    /// Why unavailable hooks are (for the refusal message).
    pub why_unavailable: &'a BTreeMap<u32, String>,
    pub cgroup_root: Option<&'a Path>,
    /// Tapio's config file: no subtree rule covers it.
    pub config_path: Option<&'a Path>,
    /// Tapio's binary: no exec or file_open rule covers it unless one
    /// names it with `path` (or says `include_tapio`).
    pub binary: Option<&'a Path>,
    /// Container id -> slot (the kernel's `container` is slot + 1).
    pub containers: &'a BTreeMap<String, u32>,
}

fn resolve_cgroup(root: Option<&Path>, p: &str) -> Result<(u64, u32), String> {
    let root = root.ok_or("no cgroup v2 mount")?;
    let full = if p.starts_with(root.to_string_lossy().as_ref()) {
        PathBuf::from(p)
    } else {
        root.join(p.trim_start_matches('/'))
    };
    let meta = std::fs::metadata(&full).map_err(|e| format!("cgroup {}: {e}", full.display()))?;
    let rel = full
        .strip_prefix(root)
        .map_err(|_| format!("{} is not under {}", full.display(), root.display()))?;
    let level = rel.components().count() as u32;
    Ok((meta.ino(), level))
}

/// Every cgroup below `root` whose name carries one of `ids` (as
/// enrich::cgroup parses it): (cgroup id, container id). Bounded in depth
/// and count: a node has thousands of cgroups, not millions.
pub fn container_cgroups(
    root: &Path,
    ids: &std::collections::BTreeSet<String>,
) -> Vec<(u64, String)> {
    const MAX_DEPTH: usize = 12;
    const MAX_DIRS: usize = 200_000;
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(md) = e.metadata() else { continue };
            if !md.is_dir() {
                continue;
            }
            seen += 1;
            if seen > MAX_DIRS {
                tracing::warn!(
                    probe = NAME,
                    "container_id: stopped after {MAX_DIRS} cgroups"
                );
                return out;
            }
            let name = e.file_name();
            if let Some(id) = crate::enrich::cgroup::container_id(&name.to_string_lossy()) {
                if ids.contains(&id) {
                    // cgroup v2: a cgroup's id is its directory's inode.
                    out.push((md.ino(), id));
                }
            }
            if depth + 1 < MAX_DEPTH {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    out
}

fn inode_of(p: &str) -> Result<(u32, u64), String> {
    let m = std::fs::metadata(p).map_err(|e| format!("{p}: {e}"))?;
    Ok((kernel_dev(m.dev()), m.ino()))
}

fn net_key(hook: u32, proto: u8, port: u16, addr: [u8; 16]) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[0] = hook as u8;
    k[1] = proto;
    k[2..4].copy_from_slice(&port.to_be_bytes());
    k[4..20].copy_from_slice(&addr);
    k
}

fn compile_rule(r: &LsmRule, env: &Env) -> Result<(tapio_lsm_rule, RuleKey), String> {
    let hook = hook_number(r.hook);
    if !env.available.contains(&hook) {
        let why = env
            .why_unavailable
            .get(&hook)
            .cloned()
            .unwrap_or_else(|| "its program did not load".into());
        return Err(format!(
            "hook {} cannot be enforced on this kernel: {why}",
            hook_name(hook)
        ));
    }
    let m = &r.matches;
    let mut k = tapio_lsm_rule {
        uid: m.uid.unwrap_or(u32::MAX),
        action: match r.action {
            LsmAction::Deny => act::TAPIO_LSM_DENY,
            LsmAction::Audit => act::TAPIO_LSM_AUDIT,
        },
        hook,
        ..Default::default()
    };
    if m.include_tapio {
        k.flags |= rf::TAPIO_LSM_R_INCLUDE_TAPIO;
    }
    if let Some(c) = &m.cgroup {
        let (id, level) = resolve_cgroup(env.cgroup_root, c)?;
        k.cgroup_id = id;
        k.cgroup_level = level;
    }
    if let Some(c) = &m.comm {
        for (d, s) in k.comm.iter_mut().zip(c.bytes().take(15)) {
            *d = s as core::ffi::c_char;
        }
    }
    if let Some(a) = &m.access {
        k.access = access_mask(a);
    }
    if let Some(id) = &m.container_id {
        let slot = env
            .containers
            .get(&id.to_ascii_lowercase())
            .ok_or_else(|| format!("more than {MAX_CONTAINERS} containers named by rules"))?;
        k.container = slot + 1;
    }
    let key = match r.hook {
        LsmHook::Connect | LsmHook::Bind => {
            let proto = match m.protocol.as_deref() {
                Some("tcp") => 6,
                Some("udp") => 17,
                _ => 0,
            };
            let port = m.port.unwrap_or(0);
            // No address: ::/0, which holds the v4-mapped IPv4 addresses
            // too (the kernel walks every prefix holding the address).
            let nets: Vec<ipnet::IpNet> = match m.address {
                Some(n) => vec![n.trunc()],
                None => vec![ipnet::IpNet::V6(Default::default())],
            };
            let keys = nets
                .into_iter()
                .map(|n| {
                    let (addr, bits) = match n {
                        ipnet::IpNet::V4(v) => (
                            super::ip_to16(v.addr().into()),
                            96 + u32::from(v.prefix_len()),
                        ),
                        ipnet::IpNet::V6(v) => (v.addr().octets(), u32::from(v.prefix_len())),
                    };
                    (32 + bits, net_key(hook, proto, port, addr))
                })
                .collect();
            RuleKey::Net(keys)
        }
        LsmHook::SocketCreate => RuleKey::Sock(
            m.family.as_deref().and_then(family_number).unwrap_or(0),
            m.socket_type
                .as_deref()
                .and_then(socket_type_number)
                .unwrap_or(0),
        ),
        LsmHook::Device => {
            let (t, maj, min) = m
                .device
                .as_deref()
                .and_then(parse_device)
                .ok_or("device rule without a device")?;
            RuleKey::Dev(t, maj, min)
        }
        LsmHook::FileOpen | LsmHook::Exec | LsmHook::Ptrace | LsmHook::FileModify => {
            k.access = m
                .operations
                .iter()
                .map(|o| file_op_bit(*o))
                .fold(0, |a, b| a | b);
            if let Some(ino) = m.inode {
                // dev 0: any filesystem (the kernel looks it up second).
                let dev = match m.device.as_deref() {
                    Some(d) => parse_fs_device(d).ok_or("bad filesystem device")?,
                    None => 0,
                };
                return Ok((k, RuleKey::Inode(vec![(hook, dev, ino)])));
            }
            let (p, prefix) = match (&m.path, &m.path_prefix) {
                (Some(p), _) => (p, false),
                (None, Some(p)) => (p, true),
                _ => return Err("file rule without a path".into()),
            };
            if prefix {
                k.flags |= rf::TAPIO_LSM_R_PREFIX;
            }
            let (dev, ino) = inode_of(p)?;
            RuleKey::Inode(vec![(hook, dev, ino)])
        }
        LsmHook::ModuleLoad | LsmHook::Bpf => RuleKey::Any(hook),
    };
    Ok((k, key))
}

/// Turn `policy` into map contents for `env`.
pub fn compile(policy: &LsmPolicy, env: &Env) -> Compiled {
    let mut c = Compiled {
        rules: Vec::new(),
        net: BTreeMap::new(),
        inode: BTreeMap::new(),
        sock: BTreeMap::new(),
        dev: BTreeMap::new(),
        any: BTreeMap::new(),
        info: BTreeMap::new(),
        states: Vec::new(),
    };
    // Rules sharing a key chain in config order: remember each key's last
    // rule to link it to the next, and how long its chain is.
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    let mut chain_len: BTreeMap<String, usize> = BTreeMap::new();
    for r in &policy.rules {
        let hook = hook_name(hook_number(r.hook));
        let compiled = compile_rule(r, env).and_then(|(rule, key)| {
            // Validation refuses chains the kernel would not walk to the
            // end; paths that name one inode (links) are only seen here.
            let full = key
                .names()
                .into_iter()
                .any(|k| chain_len.get(&k).copied().unwrap_or(0) >= MAX_CHAIN);
            if full {
                return Err(format!(
                    "{MAX_CHAIN} earlier rules have the same match (the kernel checks at most {MAX_CHAIN} per match)"
                ));
            }
            for k in key.names() {
                *chain_len.entry(k).or_default() += 1;
            }
            Ok((rule, key))
        });
        match compiled {
            Err(why) => c
                .states
                .push((r.name.clone(), hook, RuleState::Refused(why))),
            Ok((rule, key)) => {
                let mut flags = hf::TAPIO_LSM_F_RULES;
                if matches!(r.hook, LsmHook::Connect | LsmHook::Bind) {
                    flags |= if r.matches.protocol.is_some() {
                        hf::TAPIO_LSM_F_EXACT_PROTO
                    } else {
                        hf::TAPIO_LSM_F_ANY_PROTO
                    };
                    flags |= if r.matches.port.is_some() {
                        hf::TAPIO_LSM_F_EXACT_PORT
                    } else {
                        hf::TAPIO_LSM_F_ANY_PORT
                    };
                }
                if r.matches.inode.is_some() && r.matches.device.is_none() {
                    flags |= hf::TAPIO_LSM_F_ANY_DEV;
                }
                *c.info.entry(rule.hook).or_default() |= flags;
                let idx = c.rules.len();
                let id1 = idx as u32 + 1;
                c.rules.push((r.name.clone(), rule));
                let mut link = |kname: String, first: &mut dyn FnMut() -> bool| {
                    if let Some(prev) = last.insert(kname, idx) {
                        c.rules[prev].1.next = id1;
                    } else {
                        first();
                    }
                };
                let names = key.names();
                match key {
                    RuleKey::Net(keys) => {
                        for ((plen, k), n) in keys.into_iter().zip(names) {
                            let mut ins = || c.net.insert((plen, k), id1).is_none();
                            link(n, &mut ins);
                        }
                    }
                    RuleKey::Inode(keys) => {
                        for (k, n) in keys.into_iter().zip(names) {
                            let mut ins = || c.inode.insert(k, id1).is_none();
                            link(n, &mut ins);
                        }
                    }
                    RuleKey::Sock(f, t) => {
                        let mut ins = || c.sock.insert((f, t), id1).is_none();
                        link(format!("s{f}/{t}"), &mut ins);
                    }
                    RuleKey::Dev(t, maj, min) => {
                        let mut ins = || c.dev.insert((t, maj, min), id1).is_none();
                        link(format!("d{t}/{maj}/{min}"), &mut ins);
                    }
                    RuleKey::Any(h) => {
                        let mut ins = || c.any.insert(h, id1).is_none();
                        link(format!("a{h}"), &mut ins);
                    }
                }
                c.states.push((r.name.clone(), hook, RuleState::Enforced));
            }
        }
    }
    // Tapio's own files (hook 0 entries: a mask of the hooks that never
    // cover the file), unless a rule names the file itself: its config
    // file for every hook, so the operator can always fix the policy; its
    // binary for exec and file_open (exec opens it), so the rules a dead
    // `keep` Tapio left cannot stop the next one starting.
    let own = [
        (env.config_path, u32::MAX),
        (
            env.binary,
            (1 << hk::TAPIO_LSM_EXEC) | (1 << hk::TAPIO_LSM_FILE_OPEN),
        ),
    ];
    for (file, mask) in own {
        let Some(file) = file else { continue };
        let named = policy.rules.iter().any(|r| {
            r.matches.path.as_deref().map(Path::new) == Some(file) || r.matches.include_tapio
        });
        if named {
            continue;
        }
        if let Ok(m) = std::fs::metadata(file) {
            *c.inode
                .entry((0, kernel_dev(m.dev()), m.ino()))
                .or_default() |= mask;
        }
    }
    c
}

/// Value: (first rule index + 1, the entry's own prefix length), so the
/// kernel can ask next for a shorter prefix (`struct net_val`).
type NetTrie = LpmTrie<MapData, [u8; 20], [u32; 2]>;

/// The maps of one loaded probe and the double-buffer switch.
pub struct PolicyMaps {
    rules: Array<MapData, tapio_lsm_rule>,
    counters: Arc<Mutex<PerCpuArray<MapData, u64>>>,
    active: Array<MapData, u32>,
    net: [NetTrie; 2],
    inode: [HashMap<MapData, [u8; 16], u32>; 2],
    sock: [HashMap<MapData, [u8; 8], u32>; 2],
    dev: [HashMap<MapData, [u8; 16], u32>; 2],
    any: [Array<MapData, u32>; 2],
    container_ids: HashMap<MapData, u64, u32>,
    container_cgroups: HashMap<MapData, u64, u32>,
    /// Container id -> slot, stable for the life of the process (the slot
    /// is what both generations' rules refer to).
    containers: BTreeMap<String, u32>,
    info: [Array<MapData, u32>; 2],
    gen: u32,
    pub state: Arc<Mutex<State>>,
    available: Vec<u32>,
    why_unavailable: BTreeMap<u32, String>,
    cgroup_root: Option<PathBuf>,
    config_path: Option<PathBuf>,
    binary: Option<PathBuf>,
    /// Why new cgroups are not recognised (the cgroup_mkdir program did
    /// not attach), if so.
    mkdir_missing: Option<String>,
}

/// What userspace knows about the policy in force, shared with the
/// decision handler and the metric producer.
#[derive(Default)]
pub struct State {
    /// Rule names per generation, by slot.
    pub names: [Vec<String>; 2],
    /// Decisions of rules whose generation was since overwritten.
    pub retired: BTreeMap<(String, &'static str), u64>,
    /// Action of each rule per generation.
    pub actions: [Vec<&'static str>; 2],
    /// Every configured rule: (name, hook, enforced or refused).
    pub rules: Vec<(String, &'static str, RuleState)>,
    pub generation: u32,
}

fn perr(map: &'static str) -> impl Fn(aya::maps::MapError) -> PolicyError {
    move |source| PolicyError::Map {
        probe: NAME,
        map,
        source,
    }
}

fn action_name(a: u32) -> &'static str {
    if a == act::TAPIO_LSM_DENY {
        "deny"
    } else {
        "audit"
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
        Ok(Self {
            rules: take(ebpf, MAP_RULES)?,
            counters: Arc::new(Mutex::new(take(ebpf, MAP_COUNTERS)?)),
            active: take(ebpf, MAP_ACTIVE)?,
            net: [take(ebpf, "lsm_net_0")?, take(ebpf, "lsm_net_1")?],
            inode: [take(ebpf, "lsm_inode_0")?, take(ebpf, "lsm_inode_1")?],
            sock: [take(ebpf, "lsm_sock_0")?, take(ebpf, "lsm_sock_1")?],
            dev: [take(ebpf, "lsm_dev_0")?, take(ebpf, "lsm_dev_1")?],
            any: [take(ebpf, "lsm_any_0")?, take(ebpf, "lsm_any_1")?],
            container_ids: take(ebpf, MAP_CONTAINER_IDS)?,
            container_cgroups: take(ebpf, MAP_CONTAINER_CGROUPS)?,
            containers: BTreeMap::new(),
            info: [take(ebpf, "lsm_info_0")?, take(ebpf, "lsm_info_1")?],
            gen: 0,
            state: Arc::new(Mutex::new(State::default())),
            available: Vec::new(),
            why_unavailable: BTreeMap::new(),
            cgroup_root: super::cgroup2_root().map(PathBuf::from),
            config_path: None,
            binary: None,
            mkdir_missing: None,
        })
    }

    /// Compile `policy` and put it in force: write the idle generation,
    /// then flip.
    pub fn install(&mut self, policy: &LsmPolicy) -> Result<(), PolicyError> {
        let wanted = self.add_containers(policy)?;
        let env = Env {
            available: &self.available,
            why_unavailable: &self.why_unavailable,
            cgroup_root: self.cgroup_root.as_deref(),
            config_path: self.config_path.as_deref(),
            binary: self.binary.as_deref(),
            containers: &self.containers,
        };
        let c = compile(policy, &env);
        for (name, hook, st) in &c.states {
            if let RuleState::Refused(why) = st {
                tracing::error!(probe = NAME, rule = %name, hook, "rule refused: {why}");
            }
        }
        let idle = 1 - self.gen;
        let i = idle as usize;
        let base = idle * TAPIO_LSM_MAX_RULES;
        // The idle generation's counters belong to the policy before the
        // current one: fold them into the retired totals and zero them.
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let old_names = std::mem::take(&mut st.names[i]);
            let old_actions = std::mem::take(&mut st.actions[i]);
            let ncpu = aya::util::nr_cpus().map_err(|(_, e)| PolicyError::Unsupported {
                probe: NAME,
                message: format!("counting CPUs: {e}"),
            })?;
            for (slot, name) in old_names.iter().enumerate() {
                let idx = base + slot as u32;
                if let Ok(v) = counters.get(&idx, 0) {
                    let n: u64 = v.iter().sum();
                    if n > 0 {
                        let action = old_actions.get(slot).copied().unwrap_or("deny");
                        *st.retired.entry((name.clone(), action)).or_default() += n;
                    }
                }
                let zero = aya::maps::PerCpuValues::try_from(vec![0u64; ncpu]).map_err(|e| {
                    PolicyError::Unsupported {
                        probe: NAME,
                        message: format!("zeroing counters: {e}"),
                    }
                })?;
                counters.set(idx, zero, 0).map_err(perr(MAP_COUNTERS))?;
            }
        }
        // Clear the idle maps.
        let old: Vec<_> = self.net[i].keys().filter_map(Result::ok).collect();
        for k in old {
            self.net[i].remove(&k).map_err(perr("lsm_net"))?;
        }
        for m in [&mut self.inode[i], &mut self.dev[i]] {
            let old: Vec<_> = m.keys().filter_map(Result::ok).collect();
            for k in old {
                m.remove(&k).map_err(perr("lsm_inode/dev"))?;
            }
        }
        let old: Vec<_> = self.sock[i].keys().filter_map(Result::ok).collect();
        for k in old {
            self.sock[i].remove(&k).map_err(perr("lsm_sock"))?;
        }
        for h in 0..hk::TAPIO_LSM_HOOK_MAX {
            self.any[i].set(h, 0, 0).map_err(perr("lsm_any"))?;
        }
        // Fill it.
        for (slot, (_, r)) in c.rules.iter().enumerate() {
            self.rules
                .set(base + slot as u32, *r, 0)
                .map_err(perr(MAP_RULES))?;
        }
        for ((plen, k), v) in &c.net {
            self.net[i]
                .insert(&Key::new(*plen, *k), [*v, *plen], 0)
                .map_err(perr("lsm_net"))?;
        }
        for ((h, dev, ino), v) in &c.inode {
            let mut k = [0u8; 16];
            k[0..4].copy_from_slice(&h.to_ne_bytes());
            k[4..8].copy_from_slice(&dev.to_ne_bytes());
            k[8..16].copy_from_slice(&ino.to_ne_bytes());
            self.inode[i].insert(k, *v, 0).map_err(perr("lsm_inode"))?;
        }
        for ((f, t), v) in &c.sock {
            let mut k = [0u8; 8];
            k[0..4].copy_from_slice(&f.to_ne_bytes());
            k[4..8].copy_from_slice(&t.to_ne_bytes());
            self.sock[i].insert(k, *v, 0).map_err(perr("lsm_sock"))?;
        }
        for ((t, maj, min), v) in &c.dev {
            let mut k = [0u8; 16];
            k[0..4].copy_from_slice(&t.to_ne_bytes());
            k[4..8].copy_from_slice(&maj.to_ne_bytes());
            k[8..12].copy_from_slice(&min.to_ne_bytes());
            self.dev[i].insert(k, *v, 0).map_err(perr("lsm_dev"))?;
        }
        for (h, v) in &c.any {
            self.any[i].set(*h, *v, 0).map_err(perr("lsm_any"))?;
        }
        for h in 0..hk::TAPIO_LSM_HOOK_MAX {
            let f = c.info.get(&h).copied().unwrap_or(0);
            self.info[i].set(h, f, 0).map_err(perr("lsm_info"))?;
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.names[i] = c.rules.iter().map(|(n, _)| n.clone()).collect();
            st.actions[i] = c.rules.iter().map(|(_, r)| action_name(r.action)).collect();
            st.rules = c.states.clone();
        }
        self.active.set(0, idle, 0).map_err(perr(MAP_ACTIVE))?;
        self.gen = idle;
        // Only now, with no rule of the new generation naming them: new
        // cgroups of containers no longer named stop being recorded.
        for (id, _) in self
            .containers
            .iter()
            .filter(|(id, _)| !wanted.contains(*id))
        {
            let _ = self
                .container_ids
                .remove(&super::security::fnv1a64(id.as_bytes()));
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation = idle;
        Ok(())
    }
}

impl PolicyMaps {
    /// Give every container id of `policy` a slot, tell the kernel its
    /// hash, and record the cgroups it has now. Returns the ids named.
    fn add_containers(
        &mut self,
        policy: &LsmPolicy,
    ) -> Result<std::collections::BTreeSet<String>, PolicyError> {
        let wanted: std::collections::BTreeSet<String> = policy
            .rules
            .iter()
            .filter_map(|r| r.matches.container_id.as_ref())
            .map(|id| id.to_ascii_lowercase())
            .collect();
        for id in &wanted {
            if !self.containers.contains_key(id) && self.containers.len() < MAX_CONTAINERS {
                let slot = self.containers.len() as u32;
                self.containers.insert(id.clone(), slot);
            }
            if let Some(slot) = self.containers.get(id) {
                self.container_ids
                    .insert(super::security::fnv1a64(id.as_bytes()), slot + 1, 0)
                    .map_err(perr(MAP_CONTAINER_IDS))?;
            }
        }
        if wanted.is_empty() {
            return Ok(wanted);
        }
        if let Some(why) = &self.mkdir_missing {
            tracing::warn!(
                probe = NAME,
                "container_id rules match only the containers that exist now (until the next reload): {why}"
            );
        }
        let Some(root) = self.cgroup_root.as_deref() else {
            return Ok(wanted);
        };
        for (cg, id) in container_cgroups(root, &wanted) {
            if let Some(slot) = self.containers.get(&id) {
                self.container_cgroups
                    .insert(cg, slot + 1, 0)
                    .map_err(perr(MAP_CONTAINER_CGROUPS))?;
            }
        }
        Ok(wanted)
    }
}

impl PolicyTarget for PolicyMaps {
    fn probe(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, probes: &crate::config::Probes) -> Result<(), PolicyError> {
        self.install(&probes.lsm.policy)
    }
}

/// What `start` loaded and attached.
pub struct Started {
    pub loaded: Loaded,
    pub policy: PolicyMaps,
    /// Hooks that run, and why the others do not.
    pub available: Vec<u32>,
    pub unavailable: BTreeMap<u32, String>,
    /// The attachments: hold them as long as enforcement should last from
    /// this process (pinned ones outlive it).
    pub links: Vec<Held>,
}

fn err(why: String) -> LoadError {
    LoadError::NoVariant {
        probe: NAME,
        reasons: format!("  {why}"),
    }
}

/// The object, the programs that loaded, and why each refused hook was.
pub type LoadedPrograms = (Ebpf, Vec<&'static str>, BTreeMap<u32, String>);

/// Load every program (those the kernel refuses are reported per hook).
pub fn load(ring: RingConfig, btf: Option<&Btf>) -> Result<LoadedPrograms, LoadError> {
    let mut ebpf = EbpfLoader::with_btf(btf)
        .map_max_entries(MAP_EVENTS, ring.bytes)
        .override_global(GLOBAL_WAKEUP_BYTES, &ring.wakeup_bytes, true)
        .load(crate::bpf_objects::LSM)
        .map_err(|source| LoadError::Object {
            probe: NAME,
            source,
        })?;
    let mut loaded = Vec::new();
    let mut refused: BTreeMap<u32, String> = BTreeMap::new();
    for (prog, hook, kind) in PROGRAMS {
        let Some(p) = ebpf.program_mut(prog) else {
            refused.insert(*hook, format!("{prog} missing from the object"));
            continue;
        };
        let r = match kind {
            Kind::SockAddr => <&mut CgroupSockAddr>::try_from(p).and_then(|p| p.load()),
            Kind::Sock => <&mut CgroupSock>::try_from(p).and_then(|p| p.load()),
            Kind::Device => <&mut CgroupDevice>::try_from(p).and_then(|p| p.load()),
            Kind::Lsm(name) => match btf {
                Some(btf) => <&mut Lsm>::try_from(p).and_then(|p| p.load(name, btf)),
                None => {
                    refused.insert(*hook, "kernel BTF unavailable".into());
                    continue;
                }
            },
        };
        match r {
            Ok(()) => loaded.push(*prog),
            Err(e) if OPTIONAL.contains(prog) => {
                tracing::debug!(
                    probe = NAME,
                    program = prog,
                    "optional program not loaded: {}",
                    super::describe(&e)
                );
            }
            Err(e) => {
                let why = match kind {
                    Kind::Lsm(_) => format!(
                        "BPF LSM refused ({}); needs CONFIG_BPF_LSM, `bpf` in the lsm= boot list and a kernel that allows trampolines",
                        super::describe(&e).lines().next().unwrap_or_default()
                    ),
                    _ => super::describe(&e),
                };
                refused.entry(*hook).or_insert(why);
            }
        }
    }
    Ok((ebpf, loaded, refused))
}

/// Load, install the policy, attach, and (with `on_exit: keep`) pin.
pub fn start(
    cfg: &LsmProbe,
    ring: RingConfig,
    btf: Option<&Btf>,
    config_path: Option<&Path>,
) -> Result<Started, LoadError> {
    let pin_dir = Path::new(&cfg.pin_dir);
    // Before loading anything: the programs a dead `keep` Tapio left must
    // exempt this one, or their `bpf` rule refuses its loads.
    let guess = Identity::from_proc();
    if let Some(me) = guess {
        claim_pinned_exempt(pin_dir, me);
    }
    let (mut ebpf, loaded_progs, mut refused) = load(ring, btf)?;
    // Tapio itself is exempt (unless a rule says include_tapio), as the
    // kernel sees it: /proc can be another pid namespace's.
    let me = match whoami(&mut ebpf) {
        Ok(me) => me,
        Err(why) => {
            let me = guess.ok_or_else(|| err(format!("cannot tell Tapio's own pid: {why}")))?;
            tracing::warn!(
                probe = NAME,
                tgid = me.tgid,
                "exempting Tapio by its pid from /proc (the kernel did not say: {why})"
            );
            me
        }
    };
    if guess != Some(me) {
        claim_pinned_exempt(pin_dir, me);
    }
    {
        let m = ebpf.map_mut(MAP_EXEMPT).ok_or(LoadError::MissingMap {
            probe: NAME,
            map: MAP_EXEMPT,
        })?;
        let mut h: HashMap<_, u32, u64> =
            HashMap::try_from(m).map_err(|source| LoadError::Map {
                probe: NAME,
                map: MAP_EXEMPT,
                source,
            })?;
        h.insert(me.tgid, me.cgroup_id, 0)
            .map_err(|source| LoadError::Map {
                probe: NAME,
                map: MAP_EXEMPT,
                source,
            })?;
    }
    let mut policy = PolicyMaps::take(&mut ebpf)?;
    policy.config_path = config_path.and_then(|p| std::fs::canonicalize(p).ok());
    policy.binary = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let root = super::cgroup2_root().ok_or_else(|| err("no cgroup v2 mount".into()))?;
    let cg = std::fs::File::open(&root).map_err(|e| err(format!("{root}: {e}")))?;
    let mut links: Vec<(&'static str, Link)> = Vec::new();
    for (prog, hook, kind) in PROGRAMS {
        if !loaded_progs.contains(prog) || refused.contains_key(hook) {
            continue;
        }
        let Some(p) = ebpf.program_mut(prog) else {
            continue;
        };
        // The three cgroup program types share no trait in aya; same steps.
        macro_rules! cgroup_link {
            ($ty:ty, $wrap:expr) => {
                <&mut $ty>::try_from(p)
                    .map_err(|e| super::describe(&e))
                    .and_then(|p| {
                        let id = p
                            .attach(&cg, CgroupAttachMode::Single)
                            .map_err(|e| super::describe(&e))?;
                        let l = p.take_link(id).map_err(|e| super::describe(&e))?;
                        $wrap(l)
                    })
            };
        }
        let link: Result<Link, String> = match kind {
            Kind::SockAddr => cgroup_link!(CgroupSockAddr, |l| FdLink::try_from(l)
                .map(Link::Fd)
                .map_err(|e: aya::programs::links::LinkError| e.to_string())),
            Kind::Sock => cgroup_link!(CgroupSock, |l| FdLink::try_from(l)
                .map(Link::Fd)
                .map_err(|e: aya::programs::links::LinkError| e.to_string())),
            Kind::Device => cgroup_link!(CgroupDevice, |l| Ok(Link::Device(l))),
            Kind::Lsm(_) => <&mut Lsm>::try_from(p)
                .map_err(|e| super::describe(&e))
                .and_then(|p| {
                    let id = p.attach().map_err(|e| super::describe(&e))?;
                    let l = p.take_link(id).map_err(|e| super::describe(&e))?;
                    Ok(Link::Fd(l.into()))
                }),
        };
        match link {
            Ok(l) => links.push((prog, l)),
            Err(why) => {
                refused.entry(*hook).or_insert(format!("attach: {why}"));
            }
        }
    }
    // container_id rules: cgroups made after a policy is applied.
    let mkdir = attach_cgroup_mkdir(&mut ebpf);
    policy.mkdir_missing = mkdir.as_ref().err().cloned();
    // A hook runs only if all of its programs attached.
    let available: Vec<u32> = (1..hk::TAPIO_LSM_HOOK_MAX)
        .filter(|h| !refused.contains_key(h))
        .collect();
    links.retain(|(prog, _)| {
        PROGRAMS
            .iter()
            .any(|(p, h, _)| p == prog && available.contains(h))
    });
    policy.available = available.clone();
    policy.why_unavailable = refused.clone();
    policy
        .install(&cfg.policy)
        .map_err(|e| err(e.to_string()))?;
    let mut pinned = keep_or_release(cfg, links)?;
    pin_exempt(cfg, &ebpf)?;
    let exempt: HashMap<MapData, u32, u64> = super::take_map(&mut ebpf, NAME, MAP_EXEMPT)?;
    pinned.push(Held::Exempt(ExemptGuard {
        map: exempt,
        tgid: me.tgid,
    }));
    // Not pinned: under `keep` the last policy stays enforced for the
    // containers known when Tapio died, new ones are not added.
    if let Ok(l) = mkdir {
        pinned.push(Held::Tracepoint(l));
    }
    let variant = match (
        available.contains(&hk::TAPIO_LSM_CONNECT),
        available.contains(&hk::TAPIO_LSM_FILE_OPEN),
    ) {
        (true, true) => "cgroup+bpf_lsm",
        (true, false) => "cgroup",
        (false, true) => "bpf_lsm",
        (false, false) => return Err(err(format!("no enforcement hook works here: {refused:?}"))),
    };
    let mut loaded = Loaded {
        ebpf,
        variant,
        skipped: Vec::new(),
    };
    for (h, why) in &refused {
        loaded.skipped.push((hook_name(*h), why.clone()));
    }
    Ok(Started {
        loaded,
        policy,
        available,
        unavailable: refused,
        links: pinned,
    })
}

/// Tapio as the kernel's rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// In the initial pid namespace (what `bpf_get_current_pid_tgid` says).
    pub tgid: u32,
    /// The cgroup v2 Tapio runs in: a process that later gets Tapio's pid
    /// is not exempt unless it is in this cgroup too.
    pub cgroup_id: u64,
}

impl Identity {
    /// From /proc: the first `NSpid` (the pid in /proc's namespace, the
    /// host's where Tapio sees the host's /proc) and the cgroup directory's
    /// inode. Used before anything is loaded; `whoami` asks the kernel.
    pub fn from_proc() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(std::process::id);
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
        let root = super::cgroup2_root()?;
        let dir = Path::new(&root).join(rel.trim_start_matches('/'));
        let cgroup_id = std::fs::metadata(dir).ok()?.ino();
        Some(Self { tgid, cgroup_id })
    }
}

/// Ask the kernel who this process is: attach `tapio_lsm_whoami` for one
/// prctl carrying a random nonce, read what it recorded, detach.
fn whoami(ebpf: &mut Ebpf) -> Result<Identity, String> {
    let mut nonce = [0u8; 8];
    // SAFETY: getrandom(2) writes at most `nonce.len()` bytes into it.
    let n = unsafe { libc::getrandom(nonce.as_mut_ptr().cast(), nonce.len(), 0) };
    if n != nonce.len() as isize {
        return Err("getrandom failed".into());
    }
    let nonce = u64::from_ne_bytes(nonce) | 1;
    {
        let m = ebpf
            .map_mut(MAP_WHOAMI)
            .ok_or_else(|| format!("{MAP_WHOAMI} missing"))?;
        let mut a: Array<_, [u64; 3]> = Array::try_from(m).map_err(|e| e.to_string())?;
        a.set(0, [nonce, 0, 0], 0).map_err(|e| e.to_string())?;
    }
    let p = ebpf
        .program_mut(PROG_WHOAMI)
        .ok_or_else(|| format!("{PROG_WHOAMI} missing from the object"))?;
    let p: &mut aya::programs::TracePoint = p.try_into().map_err(|e| super::describe(&e))?;
    p.load().map_err(|e| super::describe(&e))?;
    let link = p
        .attach("syscalls", "sys_enter_prctl")
        .map_err(|e| format!("attach syscalls/sys_enter_prctl: {}", super::describe(&e)));
    let attached = match link {
        Ok(link) => {
            // SAFETY: prctl(2) with an option no kernel knows: EINVAL, no
            // effect; only the tracepoint program sees it.
            unsafe {
                libc::prctl(WHOAMI_OPTION, nonce as libc::c_ulong, 0, 0, 0);
            }
            let _ = p.detach(link);
            Ok(())
        }
        Err(e) => Err(e),
    };
    let _ = p.unload();
    attached?;
    let m = ebpf
        .map(MAP_WHOAMI)
        .ok_or_else(|| format!("{MAP_WHOAMI} missing"))?;
    let a: Array<_, [u64; 3]> = Array::try_from(m).map_err(|e| e.to_string())?;
    let [seen, cgroup_id, tgid] = a.get(&0, 0).map_err(|e| e.to_string())?;
    if seen != nonce || tgid == 0 {
        return Err("the tracepoint did not see the prctl".into());
    }
    Ok(Identity {
        tgid: tgid as u32,
        cgroup_id,
    })
}

/// A `keep` run's pinned exemption (if any) now names this process, and
/// only it: the dead Tapio's pid is exempt no more.
fn claim_pinned_exempt(pin_dir: &Path, me: Identity) {
    let path = pin_dir.join(PIN_EXEMPT);
    if !path.exists() {
        return;
    }
    let r = (|| -> Result<(), String> {
        let data = MapData::from_pin(&path).map_err(|e| e.to_string())?;
        let map = aya::maps::Map::from_map_data(data).map_err(|e| e.to_string())?;
        let mut h: HashMap<MapData, u32, u64> =
            HashMap::try_from(map).map_err(|e| e.to_string())?;
        let old: Vec<u32> = h.keys().filter_map(Result::ok).collect();
        h.insert(me.tgid, me.cgroup_id, 0)
            .map_err(|e| e.to_string())?;
        for k in old.into_iter().filter(|k| *k != me.tgid) {
            let _ = h.remove(&k);
        }
        Ok(())
    })();
    match r {
        Ok(()) => tracing::info!(
            probe = NAME,
            tgid = me.tgid,
            "the pinned programs of a previous run now exempt this process"
        ),
        Err(why) => tracing::warn!(
            probe = NAME,
            "{}: {why}; its programs do not exempt this process until they are replaced",
            path.display()
        ),
    }
}

/// `keep`: pin this run's exemption next to its links (replacing the
/// last run's); `release`: remove a pin a `keep` run left.
fn pin_exempt(cfg: &LsmProbe, ebpf: &Ebpf) -> Result<(), LoadError> {
    let path = Path::new(&cfg.pin_dir).join(PIN_EXEMPT);
    let _ = std::fs::remove_file(&path);
    if cfg.on_exit == OnExit::Keep {
        let m = ebpf.map(MAP_EXEMPT).ok_or(LoadError::MissingMap {
            probe: NAME,
            map: MAP_EXEMPT,
        })?;
        m.pin(&path)
            .map_err(|e| err(format!("pinning {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Removes Tapio's exemption when it exits (under `keep` the pinned
/// programs outlive it and its pid must not stay exempt).
pub struct ExemptGuard {
    map: HashMap<MapData, u32, u64>,
    tgid: u32,
}

impl Drop for ExemptGuard {
    fn drop(&mut self) {
        let _ = self.map.remove(&self.tgid);
    }
}

/// Load and attach the cgroup_mkdir tracepoint program.
fn attach_cgroup_mkdir(
    ebpf: &mut Ebpf,
) -> Result<aya::programs::trace_point::TracePointLink, String> {
    let p = ebpf
        .program_mut(PROG_CGROUP_MKDIR)
        .ok_or_else(|| format!("{PROG_CGROUP_MKDIR} missing from the object"))?;
    let p: &mut aya::programs::TracePoint = p.try_into().map_err(|e| super::describe(&e))?;
    p.load().map_err(|e| super::describe(&e))?;
    let id = p
        .attach("cgroup", "cgroup_mkdir")
        .map_err(|e| format!("attach cgroup/cgroup_mkdir: {}", super::describe(&e)))?;
    p.take_link(id).map_err(|e| super::describe(&e))
}

/// An attachment as made.
enum Link {
    Fd(FdLink),
    /// cgroup/dev links cannot become an FdLink in aya 0.14, so they cannot
    /// be pinned: device rules are released with Tapio even under `keep`.
    Device(aya::programs::cgroup_device::CgroupDeviceLink),
}

/// A link kept alive by Tapio: held open (detached when Tapio exits) or
/// pinned (outlives it). Only its drop matters.
pub enum Held {
    Open(#[allow(dead_code)] FdLink),
    Device(#[allow(dead_code)] aya::programs::cgroup_device::CgroupDeviceLink),
    Pinned(#[allow(dead_code)] aya::programs::links::PinnedLink),
    Tracepoint(#[allow(dead_code)] aya::programs::trace_point::TracePointLink),
    Exempt(#[allow(dead_code)] ExemptGuard),
}

/// `release`: hold the links (they go with the process) and remove pins
/// a `keep` run left. `keep`: replace the pins with these links.
fn keep_or_release(
    cfg: &LsmProbe,
    links: Vec<(&'static str, Link)>,
) -> Result<Vec<Held>, LoadError> {
    let dir = Path::new(&cfg.pin_dir);
    let mut out = Vec::new();
    if cfg.on_exit == OnExit::Keep {
        std::fs::create_dir_all(dir).map_err(|e| {
            err(format!(
                "{}: {e} (is it on a bpf filesystem?)",
                dir.display()
            ))
        })?;
    }
    // The new links are attached already, so removing the old pins leaves
    // no moment without enforcement.
    for (prog, _, _) in PROGRAMS {
        let _ = std::fs::remove_file(dir.join(prog));
    }
    for (prog, link) in links {
        let link = match link {
            Link::Fd(l) => l,
            Link::Device(l) => {
                if cfg.on_exit == OnExit::Keep {
                    tracing::warn!(
                        probe = NAME,
                        "device rules cannot be pinned; they stop when Tapio exits"
                    );
                }
                out.push(Held::Device(l));
                continue;
            }
        };
        match cfg.on_exit {
            OnExit::Release => out.push(Held::Open(link)),
            OnExit::Keep => {
                let p = dir.join(prog);
                let pinned = link
                    .pin(&p)
                    .map_err(|e| err(format!("pinning {}: {e}", p.display())))?;
                out.push(Held::Pinned(pinned));
            }
        }
    }
    Ok(out)
}

/// `tapio.lsm.decisions` (counter) and `tapio.lsm.rules` (gauge).
pub fn metrics_producer(
    counters: Arc<Mutex<PerCpuArray<MapData, u64>>>,
    state: Arc<Mutex<State>>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics, names as n};
    Box::new(move |now| {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        let counters = counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut totals = st.retired.clone();
        for g in 0..2usize {
            let base = g as u32 * TAPIO_LSM_MAX_RULES;
            for (slot, name) in st.names[g].iter().enumerate() {
                let Ok(v) = counters.get(&(base + slot as u32), 0) else {
                    continue;
                };
                let n: u64 = v.iter().sum();
                let action = st.actions[g].get(slot).copied().unwrap_or("deny");
                if n > 0 || g as u32 == st.generation {
                    *totals.entry((name.clone(), action)).or_default() += n;
                }
            }
        }
        let decisions = totals
            .into_iter()
            .map(|((rule, action), v)| {
                (
                    vec![
                        kv_str(n::attr::TAPIO_LSM_RULE, rule),
                        kv_str(n::attr::TAPIO_LSM_ACTION, action),
                    ],
                    v,
                )
            })
            .collect();
        let rules = st
            .rules
            .iter()
            .map(|(name, hook, s)| {
                let state = match s {
                    RuleState::Enforced => "enforced",
                    RuleState::Refused(_) => "refused",
                };
                (
                    vec![
                        kv_str(n::attr::TAPIO_LSM_RULE, name.clone()),
                        kv_str(n::attr::TAPIO_LSM_HOOK, *hook),
                        kv_str(n::attr::TAPIO_LSM_STATE, state),
                    ],
                    1,
                )
            })
            .collect();
        vec![
            metrics::counter(&n::LSM_DECISIONS, start_unix_ns, now, decisions),
            metrics::gauge(&n::LSM_RULES, now, rules),
        ]
    })
}

/// The counters map, shared with the metric producer.
pub fn counters(p: &PolicyMaps) -> Arc<Mutex<PerCpuArray<MapData, u64>>> {
    p.counters.clone()
}

/// A decision, decoded.
#[derive(Debug, Clone)]
pub struct Decision {
    pub raw: tapio_lsm_decision,
    pub rule: String,
    pub hook: &'static str,
    pub action: &'static str,
}

pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: Arc<crate::telemetry::ProbeStats>,
    pub clock: crate::clock::WallClock,
    pub state: Arc<Mutex<State>>,
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        self.stats
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(d) = self
            .stats
            .decoded(tapio_shared::read_record::<tapio_lsm_decision>(record))
        else {
            return;
        };
        let rule = {
            let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            st.names
                .get(d.generation as usize & 1)
                .and_then(|n| n.get(d.rule as usize))
                .cloned()
                .unwrap_or_else(|| format!("#{}", d.rule))
        };
        let dec = Decision {
            raw: d,
            rule,
            hook: hook_name(d.hook),
            action: action_name(d.action),
        };
        self.stats
            .latency
            .record_ns(crate::clock::boot_ns().saturating_sub(d.hdr.ts_ns));
        let (clock, now) = (&self.clock, crate::clock::unix_ns());
        crate::encode_log!(self.emitter, |enc| otlp::policy_decision(
            enc, &dec, clock, now
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LsmMatch;

    fn rule(name: &str, hook: LsmHook, action: LsmAction, m: LsmMatch) -> LsmRule {
        LsmRule {
            name: name.into(),
            hook,
            action,
            matches: m,
        }
    }

    #[test]
    fn file_modify_inode_and_container_rules_compile_to_their_keys() {
        use tapio_shared::tapio_lsm_file_op as fo;
        let available = [hk::TAPIO_LSM_FILE_MODIFY, hk::TAPIO_LSM_CONNECT];
        let id = "ab".repeat(32);
        let containers = BTreeMap::from([(id.clone(), 6u32)]);
        let env = Env {
            available: &available,
            why_unavailable: &BTreeMap::new(),
            cgroup_root: None,
            config_path: None,
            binary: None,
            containers: &containers,
        };
        let p = LsmPolicy {
            rules: vec![
                rule(
                    "any-fs",
                    LsmHook::FileModify,
                    LsmAction::Deny,
                    LsmMatch {
                        inode: Some(1234),
                        operations: vec![FileOperation::Unlink, FileOperation::Rename],
                        ..Default::default()
                    },
                ),
                rule(
                    "one-fs",
                    LsmHook::FileModify,
                    LsmAction::Audit,
                    LsmMatch {
                        inode: Some(99),
                        device: Some("8:3".into()),
                        container_id: Some(id.to_ascii_uppercase()),
                        ..Default::default()
                    },
                ),
            ],
        };
        let c = compile(&p, &env);
        assert!(c.states.iter().all(|(_, _, s)| *s == RuleState::Enforced));
        let h = hk::TAPIO_LSM_FILE_MODIFY;
        assert_eq!(
            c.inode.get(&(h, 0, 1234)),
            Some(&1),
            "no device: any filesystem"
        );
        assert_eq!(c.inode.get(&(h, (8 << 20) | 3, 99)), Some(&2));
        assert_eq!(
            c.rules[0].1.access,
            fo::TAPIO_LSM_OP_UNLINK | fo::TAPIO_LSM_OP_RENAME
        );
        assert_eq!(c.rules[1].1.access, 0, "no operations: all");
        assert_eq!(c.rules[0].1.container, 0);
        assert_eq!(c.rules[1].1.container, 7, "slot + 1, id case-folded");
        assert_ne!(c.info[&h] & hf::TAPIO_LSM_F_ANY_DEV, 0);
        assert_eq!(parse_fs_device("259:1"), Some((259 << 20) | 1));
        assert_eq!(parse_fs_device("c 8:3"), None);
        assert_eq!(file_op_name(fo::TAPIO_LSM_OP_CHOWN), "chown");
    }

    #[test]
    fn container_cgroups_are_found_by_the_id_in_their_names() {
        let root = tempfile_dir("ctr");
        let id = "0123456789abcdef".repeat(4);
        let other = "fedcba9876543210".repeat(4);
        for d in [
            format!("system.slice/docker-{id}.scope"),
            format!("kubepods/burstable/podx/{id}"),
            format!("machine.slice/libpod-conmon-{id}.scope"),
            format!("system.slice/docker-{other}.scope"),
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let want = std::collections::BTreeSet::from([id.clone()]);
        let mut found: Vec<u64> = container_cgroups(&root, &want)
            .into_iter()
            .map(|(ino, i)| {
                assert_eq!(i, id);
                ino
            })
            .collect();
        found.sort_unstable();
        let mut expect: Vec<u64> = [
            format!("system.slice/docker-{id}.scope"),
            format!("kubepods/burstable/podx/{id}"),
        ]
        .iter()
        .map(|d| std::fs::metadata(root.join(d)).unwrap().ino())
        .collect();
        expect.sort_unstable();
        assert_eq!(found, expect, "conmon and other containers left out");
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tapio-lsm-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rules_past_the_chain_the_kernel_walks_are_refused_not_enforced() {
        // Nine names of one file (hard links): validation cannot see they
        // share an inode, the compiler can.
        let dir = tempfile_dir("chain");
        std::fs::write(dir.join("f0"), "x").unwrap();
        for i in 1..=MAX_CHAIN {
            std::fs::hard_link(dir.join("f0"), dir.join(format!("f{i}"))).unwrap();
        }
        let available = [hk::TAPIO_LSM_FILE_OPEN, hk::TAPIO_LSM_CONNECT];
        let env = Env {
            available: &available,
            why_unavailable: &BTreeMap::new(),
            cgroup_root: None,
            config_path: None,
            binary: None,
            containers: &BTreeMap::new(),
        };
        let mut rules: Vec<LsmRule> = (0..=MAX_CHAIN)
            .map(|i| {
                rule(
                    &format!("r{i}"),
                    LsmHook::FileOpen,
                    LsmAction::Deny,
                    LsmMatch {
                        path: Some(dir.join(format!("f{i}")).display().to_string()),
                        uid: Some(1000 + i as u32),
                        ..Default::default()
                    },
                )
            })
            .collect();
        // No address: one key, ::/0, which holds IPv4 (v4-mapped) too.
        rules.push(rule(
            "any-address",
            LsmHook::Connect,
            LsmAction::Deny,
            LsmMatch {
                port: Some(80),
                ..Default::default()
            },
        ));
        let c = compile(&LsmPolicy { rules }, &env);
        for (name, _, st) in &c.states[..MAX_CHAIN] {
            assert_eq!(*st, RuleState::Enforced, "{name}");
        }
        assert!(
            matches!(&c.states[MAX_CHAIN].2, RuleState::Refused(w) if w.contains("the kernel checks at most 8 per match")),
            "{:?}",
            c.states[MAX_CHAIN]
        );
        assert_eq!(
            c.rules.len(),
            MAX_CHAIN + 1,
            "8 file rules + the connect rule"
        );
        assert_eq!(c.net.len(), 1);
        assert_eq!(c.net.keys().next().unwrap().0, 32, "::/0");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn devices_parse() {
        assert_eq!(parse_device("c 1:3"), Some((2, 1, 3)));
        assert_eq!(parse_device("b 8:*"), Some((1, 8, u32::MAX)));
        assert_eq!(parse_device("x 1:3"), None);
        assert_eq!(parse_device("c 1"), None);
        assert_eq!(access_mask("rw"), 6);
    }

    #[test]
    fn rules_on_missing_hooks_are_refused_and_same_keys_chain() {
        let available = [hk::TAPIO_LSM_CONNECT];
        let why = BTreeMap::from([(hk::TAPIO_LSM_FILE_OPEN, "BPF LSM refused".to_string())]);
        let env = Env {
            available: &available,
            why_unavailable: &why,
            cgroup_root: None,
            config_path: None,
            binary: None,
            containers: &BTreeMap::new(),
        };
        let m = LsmMatch {
            address: Some("198.18.0.0/15".parse().unwrap()),
            port: Some(80),
            ..Default::default()
        };
        let p = LsmPolicy {
            rules: vec![
                rule("a", LsmHook::Connect, LsmAction::Audit, m.clone()),
                rule("b", LsmHook::Connect, LsmAction::Deny, m),
                rule(
                    "f",
                    LsmHook::FileOpen,
                    LsmAction::Deny,
                    LsmMatch {
                        path: Some("/etc/hostname".into()),
                        ..Default::default()
                    },
                ),
            ],
        };
        let c = compile(&p, &env);
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].1.next, 2, "b chains after a");
        assert_eq!(c.net.len(), 1);
        let (_, key) = c.net.iter().next().unwrap();
        assert_eq!(*key, 1);
        assert!(matches!(&c.states[2].2, RuleState::Refused(w) if w.contains("BPF LSM refused")));
        // 198.18.0.0/15 as v4-mapped: 32 + 96 + 15 bits.
        assert_eq!(c.net.keys().next().unwrap().0, 32 + 96 + 15);
    }
}
