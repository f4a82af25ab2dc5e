//! Semantic checks on a parsed [`Config`]. Collects every error, not the
//! first, each with its key path.

use super::{model::*, ConfigError};
use std::{path::Path, time::Duration};

const MIN_RINGBUF: u64 = 4096;
/// The kernel caps ring buffers far higher; a gigabyte of locked memory per
/// probe is already a mistake worth naming.
const MAX_RINGBUF: u64 = 1 << 30;
const MAX_QUEUE: usize = 10_000_000;
const MAX_BATCH: usize = 100_000;

impl Config {
    /// Every problem in this configuration (empty when it is valid).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        self.probes.validate(&mut errs);
        self.exporters.validate(&mut errs);
        self.pipeline.validate(&mut errs);
        self.extensions.validate(&mut errs);
        for key in self.resource.attributes.keys() {
            if key.trim().is_empty() {
                errs.push(ConfigError::new(
                    "resource.attributes",
                    "attribute names cannot be empty",
                ));
            }
        }
        errs
    }
}

impl Probes {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size(
            "probes.process.ring_buffer_size",
            self.process.ring_buffer_size.0,
            errs,
        );
        ringbuf_size(
            "probes.kernel.ring_buffer_size",
            self.kernel.ring_buffer_size.0,
            errs,
        );
        for (path, r) in [
            ("probes.network.sample_rate", self.network.sample_rate),
            ("probes.dns.sample_rate", self.dns.sample_rate),
            (
                "probes.kernel.io_uring_sample_rate",
                self.kernel.io_uring_sample_rate,
            ),
        ] {
            if !(0.0..=1.0).contains(&r) {
                errs.push(ConfigError::new(
                    path,
                    format!("{r}: a fraction from 0.0 (none) to 1.0 (all)"),
                ));
            }
        }
        if self.kernel.memory_sample_every > tapio_shared::TAPIO_MEM_MAX_EVERY {
            errs.push(ConfigError::new(
                "probes.kernel.memory_sample_every",
                format!(
                    "{}: at most {} (0 turns allocation sampling off)",
                    self.kernel.memory_sample_every,
                    tapio_shared::TAPIO_MEM_MAX_EVERY
                ),
            ));
        }
        ringbuf_size(
            "probes.etcd.ring_buffer_size",
            self.etcd.ring_buffer_size.0,
            errs,
        );
        let max = tapio_shared::TAPIO_ETCD_MAX_COMMS as usize;
        if self.etcd.executables.len() > max {
            errs.push(ConfigError::new(
                "probes.etcd.executables",
                format!("{} names: at most {max}", self.etcd.executables.len()),
            ));
        }
        let max_ports = tapio_shared::TAPIO_ETCD_MAX_PORTS as usize;
        if self.etcd.client_ports.len() > max_ports {
            errs.push(ConfigError::new(
                "probes.etcd.client_ports",
                format!(
                    "{} ports: at most {max_ports}",
                    self.etcd.client_ports.len()
                ),
            ));
        }
        // 0 ends the kernel's list: it would hide the ports after it.
        if let Some(i) = self.etcd.client_ports.iter().position(|p| *p == 0) {
            errs.push(ConfigError::new(
                format!("probes.etcd.client_ports[{i}]"),
                "port 0 names no port",
            ));
        }
        for (i, e) in self.etcd.executables.iter().enumerate() {
            if e.trim().is_empty() || e.ends_with('/') {
                errs.push(ConfigError::new(
                    format!("probes.etcd.executables[{i}]"),
                    format!("`{e}` names no executable"),
                ));
            }
        }
        // Resolved here, at start, so a missing cgroup is a config error
        // naming the key rather than a probe that fails to load.
        if let Some(cg) = &self.scope.cgroup {
            if let Err(why) = crate::probes::scope::resolve_here(cg) {
                errs.push(ConfigError::new("probes.scope.cgroup", why));
            }
        }
        self.dns.encrypted.validate(errs);
        self.systemd.validate(errs);
        self.netns.validate(errs);
        self.xdp.validate(errs);
        self.lsm.validate(errs);
        self.security.validate(errs);
        self.tc.validate(errs);
    }
}

impl EncryptedDns {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        const P: &str = "probes.dns.encrypted";
        // Any number of ports: the kernel's maps are per-port arrays.
        if self
            .dot_ports
            .iter()
            .chain(&self.doh_ports)
            .any(|&p| p == 0)
        {
            errs.push(ConfigError::new(
                format!("{P}.dot_ports"),
                "port 0 is no server port",
            ));
        }
        let max = tapio_shared::TAPIO_DOH_MAX_NAMES as usize;
        if self.doh_resolvers.len() > max {
            errs.push(ConfigError::new(
                format!("{P}.doh_resolvers"),
                format!("{} names: at most {max}", self.doh_resolvers.len()),
            ));
        }
        for (i, n) in self.doh_resolvers.iter().enumerate() {
            let bare = n.strip_suffix('.').unwrap_or(n);
            let ok = !bare.is_empty()
                && bare.len() <= crate::probes::encrypted_dns::NAME_MAX
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                errs.push(ConfigError::new(
                    format!("{P}.doh_resolvers[{i}]"),
                    format!(
                        "`{n}` is not a host name (letters, digits, `-` and `.`, at most {} bytes)",
                        crate::probes::encrypted_dns::NAME_MAX
                    ),
                ));
            }
        }
    }
}

/// Most watched paths: each costs one inode entry plus one entry per
/// ancestor directory in the kernel's maps.
pub const MAX_WATCH_PATHS: usize = 256;
/// Deepest parent walk the kernel program does.
pub const MAX_WATCH_DEPTH: u32 = 16;

impl SecurityProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size(
            "probes.security.ring_buffer_size",
            self.ring_buffer_size.0,
            errs,
        );
        if self.watch_paths.len() > MAX_WATCH_PATHS {
            errs.push(ConfigError::new(
                "probes.security.watch_paths",
                format!(
                    "{} paths: at most {MAX_WATCH_PATHS} (watch a directory instead)",
                    self.watch_paths.len()
                ),
            ));
        }
        for (i, p) in self.watch_paths.iter().enumerate() {
            if !p.starts_with('/') {
                errs.push(ConfigError::new(
                    format!("probes.security.watch_paths[{i}]"),
                    format!("`{p}` is not an absolute path"),
                ));
            }
        }
        if self.watch_depth > MAX_WATCH_DEPTH {
            errs.push(ConfigError::new(
                "probes.security.watch_depth",
                format!("{}: must be from 0 to {MAX_WATCH_DEPTH}", self.watch_depth),
            ));
        }
    }
}

impl LsmProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size("probes.lsm.ring_buffer_size", self.ring_buffer_size.0, errs);
        if !self.pin_dir.starts_with('/') {
            errs.push(ConfigError::new(
                "probes.lsm.pin_dir",
                "must be an absolute path on a bpf filesystem",
            ));
        }
        self.policy.validate("probes.lsm.policy", errs);
    }
}

/// Rules per policy (`TAPIO_LSM_MAX_RULES` in events.h).
pub const LSM_MAX_RULES: usize = 16_384;

impl LsmPolicy {
    pub fn validate(&self, path: &str, errs: &mut Vec<ConfigError>) {
        if self.rules.len() > LSM_MAX_RULES {
            errs.push(ConfigError::new(
                format!("{path}.rules"),
                format!("{} rules: at most {LSM_MAX_RULES}", self.rules.len()),
            ));
        }
        let mut names = std::collections::HashSet::new();
        // Rules sharing a map key chain; the kernel walks MAX_CHAIN of
        // them, so a later one could never apply.
        let mut chains: std::collections::HashMap<String, usize> = Default::default();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("{path}.rules[{i}]");
            let n = chains.entry(r.chain_key()).or_default();
            *n += 1;
            if *n == crate::probes::lsm::MAX_CHAIN + 1 {
                errs.push(ConfigError::new(
                    format!("{at}.match"),
                    format!(
                        "{} earlier {} rules have this match (with uid/cgroup/comm/container_id aside); the kernel checks at most {} rules per match, so this one would never apply: merge rules or give them different matches",
                        crate::probes::lsm::MAX_CHAIN,
                        crate::probes::lsm::hook_name(crate::probes::lsm::hook_number(r.hook)),
                        crate::probes::lsm::MAX_CHAIN,
                    ),
                ));
            }
            if r.name.trim().is_empty() {
                errs.push(ConfigError::new(format!("{at}.name"), "rules need a name"));
            } else if !names.insert(r.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("{at}.name"),
                    format!(
                        "{:?} is used by an earlier rule; names must be unique",
                        r.name
                    ),
                ));
            }
            r.validate(&at, errs);
        }
    }
}

impl LsmRule {
    /// What the kernel looks this rule up by (rules alike share one
    /// chain): the hook and the match, conditions aside. `path` and
    /// `path_prefix` of one file share its inode's key.
    fn chain_key(&self) -> String {
        use crate::probes::lsm::{family_number, parse_device, socket_type_number};
        use LsmHook::*;
        let m = &self.matches;
        let what = match self.hook {
            Connect | Bind => format!(
                "{}/{}/{}",
                m.protocol.as_deref().unwrap_or("any"),
                m.port.unwrap_or(0),
                m.address
                    .map_or_else(|| "::/0".to_string(), |a| a.trunc().to_string())
            ),
            SocketCreate => format!(
                "{}/{}",
                m.family.as_deref().and_then(family_number).unwrap_or(0),
                m.socket_type
                    .as_deref()
                    .and_then(socket_type_number)
                    .unwrap_or(0)
            ),
            Device => format!("{:?}", m.device.as_deref().and_then(parse_device)),
            FileOpen | Exec | Ptrace | FileModify => match (m.inode, &m.path, &m.path_prefix) {
                (Some(ino), _, _) => format!("inode {ino} on {:?}", m.device),
                (None, Some(p), _) | (None, None, Some(p)) => {
                    format!("path {}", p.trim_end_matches('/'))
                }
                _ => String::new(),
            },
            ModuleLoad | Bpf => String::new(),
        };
        format!("{:?} {what}", self.hook)
    }

    fn validate(&self, at: &str, errs: &mut Vec<ConfigError>) {
        use LsmHook::*;
        let m = &self.matches;
        let mut err = |key: &str, msg: String| {
            errs.push(ConfigError::new(format!("{at}.match.{key}"), msg));
        };
        let hook = crate::probes::lsm::hook_name(crate::probes::lsm::hook_number(self.hook));
        let allowed: &[&str] = match self.hook {
            Connect | Bind => &["address", "port", "protocol"],
            SocketCreate => &["family", "socket_type"],
            Device => &["device", "access"],
            FileOpen | Exec | Ptrace => &["path", "path_prefix", "inode", "device"],
            FileModify => &["path", "path_prefix", "inode", "device", "operations"],
            ModuleLoad | Bpf => &[],
        };
        let given = [
            ("address", m.address.is_some()),
            ("port", m.port.is_some()),
            ("protocol", m.protocol.is_some()),
            ("family", m.family.is_some()),
            ("socket_type", m.socket_type.is_some()),
            ("path", m.path.is_some()),
            ("path_prefix", m.path_prefix.is_some()),
            ("device", m.device.is_some()),
            ("access", m.access.is_some()),
            ("inode", m.inode.is_some()),
            ("operations", !m.operations.is_empty()),
        ];
        for (key, set) in given {
            if set && !allowed.contains(&key) {
                err(key, format!("does not apply to hook {hook}"));
            }
        }
        if let Some(p) = &m.protocol {
            if !["tcp", "udp"].contains(&p.as_str()) {
                err("protocol", format!("{p:?}: tcp or udp"));
            }
        }
        if let Some(f) = &m.family {
            // cgroup/sock_create runs from inet_create/inet6_create only.
            if !matches!(crate::probes::lsm::family_number(f), Some(2 | 10)) {
                err(
                    "family",
                    format!("{f:?}: inet or inet6 (the kernel's socket-creation hook sees no other family)"),
                );
            }
        }
        if let Some(t) = &m.socket_type {
            if crate::probes::lsm::socket_type_number(t).is_none() {
                err(
                    "socket_type",
                    format!("{t:?}: stream, dgram, raw or a number"),
                );
            }
        }
        if matches!(self.hook, FileOpen | Exec | Ptrace | FileModify) {
            match (&m.path, &m.path_prefix, m.inode) {
                (None, None, None) => {
                    err("path", "file rules need path, path_prefix or inode".into())
                }
                (Some(_), Some(_), _) => {
                    err("path_prefix", "give one of path, path_prefix, inode".into())
                }
                (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => {
                    err("inode", "give one of path, path_prefix, inode".into())
                }
                _ => {}
            }
            if m.inode == Some(0) {
                err("inode", "0 is not an inode number".into());
            }
            match (&m.device, m.inode) {
                (Some(_), None) => err(
                    "device",
                    "on file rules, device goes with inode (the inode's filesystem)".into(),
                ),
                (Some(d), Some(_)) if crate::probes::lsm::parse_fs_device(d).is_none() => err(
                    "device",
                    format!("{d:?}: the filesystem's MAJOR:MINOR (as in /proc/self/mountinfo)"),
                ),
                _ => {}
            }
            for (key, p) in [("path", &m.path), ("path_prefix", &m.path_prefix)] {
                if let Some(p) = p {
                    if !p.starts_with('/') {
                        err(key, format!("{p:?} is not absolute"));
                    }
                }
            }
        }
        if self.hook == Device {
            match &m.device {
                None => err("device", "device rules need `device: \"c 1:3\"`".into()),
                Some(d) if crate::probes::lsm::parse_device(d).is_none() => err(
                    "device",
                    format!("{d:?}: `c|b MAJOR:MINOR` (MINOR may be `*`)"),
                ),
                _ => {}
            }
            if let Some(a) = &m.access {
                if a.is_empty() || !a.chars().all(|c| "rwm".contains(c)) {
                    err("access", format!("{a:?}: letters from r, w, m"));
                }
            }
        }
        if let Some(id) = &m.container_id {
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                err(
                    "container_id",
                    format!("{id:?}: the full container id, 64 hex digits (not the 12-digit short form)"),
                );
            }
        }
        if let Some(c) = &m.comm {
            if c.is_empty() || c.len() > 15 {
                err("comm", format!("{c:?}: 1 to 15 bytes (the kernel's comm)"));
            }
        }
    }
}

impl TcProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size("probes.tc.ring_buffer_size", self.ring_buffer_size.0, errs);
        if self.enabled == Some(true) && self.interfaces.is_empty() {
            errs.push(ConfigError::new(
                "probes.tc.interfaces",
                "the tc probe is enabled but names no interface to attach to",
            ));
        }
        for (i, name) in self.interfaces.iter().enumerate() {
            let (ns, ifname) = match name.split_once('/') {
                Some((ns, i)) => (Some(ns), i),
                None => (None, name.as_str()),
            };
            let bad_ns = ns.is_some_and(|n| n.is_empty() || n.contains(['/', ' ']) || n == "..");
            if bad_ns || ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
                errs.push(ConfigError::new(
                    format!("probes.tc.interfaces[{i}]"),
                    format!(
                        "{name:?} is not an interface name (IFNAME or NETNS/IFNAME; 1-15 characters, no space)"
                    ),
                ));
            }
        }
        self.policy.validate("probes.tc.policy", errs);
    }
}

impl TcPolicy {
    pub fn validate(&self, path: &str, errs: &mut Vec<ConfigError>) {
        const MAX_SERVICES: usize = tapio_shared::TAPIO_TC_MAX_SERVICES as usize;
        const MAX_BACKENDS: usize = tapio_shared::TAPIO_TC_MAX_BACKENDS as usize;
        const MAX_CHAOS: usize = tapio_shared::TAPIO_TC_MAX_CHAOS as usize;
        if self.services.len() > MAX_SERVICES {
            errs.push(ConfigError::new(
                format!("{path}.services"),
                format!("{} services: at most {MAX_SERVICES}", self.services.len()),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let p = format!("{path}.services[{i}]");
            if s.name.trim().is_empty() {
                errs.push(ConfigError::new(format!("{p}.name"), "cannot be empty"));
            }
            if !s.address.is_ipv4() {
                errs.push(ConfigError::new(
                    format!("{p}.address"),
                    "virtual services are IPv4 only",
                ));
            }
            if !seen.insert((s.address, s.protocol)) {
                errs.push(ConfigError::new(
                    format!("{p}.address"),
                    format!("{} is already another service's address", s.address),
                ));
            }
            if s.backends.is_empty() || s.backends.len() > MAX_BACKENDS {
                errs.push(ConfigError::new(
                    format!("{p}.backends"),
                    format!("{} backends: 1 to {MAX_BACKENDS}", s.backends.len()),
                ));
            }
            for (j, b) in s.backends.iter().enumerate() {
                if !b.address.is_ipv4() {
                    errs.push(ConfigError::new(
                        format!("{p}.backends[{j}].address"),
                        "backends are IPv4 only",
                    ));
                }
                if !(1..=1000).contains(&b.weight) {
                    errs.push(ConfigError::new(
                        format!("{p}.backends[{j}].weight"),
                        format!("{}: must be from 1 to 1000", b.weight),
                    ));
                }
            }
        }
        if let Some(cb) = &self.circuit_breaker {
            if cb.max_failures == 0 {
                errs.push(ConfigError::new(
                    format!("{path}.circuit_breaker.max_failures"),
                    "must be at least 1 (remove circuit_breaker to turn it off)",
                ));
            }
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&cb.cool_down) {
                errs.push(ConfigError::new(
                    format!("{path}.circuit_breaker.cool_down"),
                    "must be from 100ms to 1h",
                ));
            }
        }
        let ex = &self.chaos.experiments;
        if ex.len() > MAX_CHAOS {
            errs.push(ConfigError::new(
                format!("{path}.chaos.experiments"),
                format!("{} experiments: at most {MAX_CHAOS}", ex.len()),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, e) in ex.iter().enumerate() {
            let p = format!("{path}.chaos.experiments[{i}]");
            if e.name.trim().is_empty() || !names.insert(e.name.as_str()) {
                errs.push(ConfigError::new(
                    format!("{p}.name"),
                    "must be non-empty and unique",
                ));
            }
            if !(0.0..=1.0).contains(&e.loss) {
                errs.push(ConfigError::new(
                    format!("{p}.loss"),
                    format!("{}: must be from 0.0 to 1.0", e.loss),
                ));
            }
            if e.loss == 0.0 && e.latency.is_zero() {
                errs.push(ConfigError::new(
                    p.clone(),
                    "does nothing: set loss or latency",
                ));
            }
            if e.latency > Duration::from_secs(10) {
                errs.push(ConfigError::new(
                    format!("{p}.latency"),
                    "must be at most 10s",
                ));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&e.duration) {
                errs.push(ConfigError::new(
                    format!("{p}.duration"),
                    "must be from 1s to 24h: every experiment ends by itself",
                ));
            }
        }
    }
}

/// The XDP maps' capacity per list and address family.
pub const XDP_MAX_CIDRS: usize = 16_384;

impl XdpProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size("probes.xdp.ring_buffer_size", self.ring_buffer_size.0, errs);
        if self.enabled == Some(true) && self.interfaces.is_empty() {
            errs.push(ConfigError::new(
                "probes.xdp.interfaces",
                "the xdp probe is enabled but names no interface to attach to",
            ));
        }
        for (i, name) in self.interfaces.iter().enumerate() {
            // IFNAMSIZ is 16 including the NUL.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                errs.push(ConfigError::new(
                    format!("probes.xdp.interfaces[{i}]"),
                    format!("{name:?} is not an interface name (1-15 characters, no '/' or space)"),
                ));
            }
        }
        self.policy.validate("probes.xdp.policy", errs);
    }
}

impl XdpPolicy {
    pub fn validate(&self, path: &str, errs: &mut Vec<ConfigError>) {
        for (key, list) in [("allow", &self.allow), ("block", &self.block)] {
            for family_v6 in [false, true] {
                let n = list
                    .iter()
                    .filter(|c| matches!(c, ipnet::IpNet::V6(_)) == family_v6)
                    .count();
                if n > XDP_MAX_CIDRS {
                    errs.push(ConfigError::new(
                        format!("{path}.{key}"),
                        format!(
                            "{n} IPv{} CIDRs: at most {XDP_MAX_CIDRS}",
                            if family_v6 { 6 } else { 4 }
                        ),
                    ));
                }
            }
        }
        if let Some(r) = &self.rate_limit {
            if r.packets_per_second == 0 {
                errs.push(ConfigError::new(
                    format!("{path}.rate_limit.packets_per_second"),
                    "must be at least 1 (remove rate_limit to turn it off)",
                ));
            }
            if r.burst == 0 {
                errs.push(ConfigError::new(
                    format!("{path}.rate_limit.burst"),
                    "must be at least 1",
                ));
            }
        }
        if let Some(s) = &self.syn_flood {
            if s.per_source == 0 {
                errs.push(ConfigError::new(
                    format!("{path}.syn_flood.per_source"),
                    "must be at least 1 (remove syn_flood to turn it off)",
                ));
            }
            if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&s.block_for) {
                errs.push(ConfigError::new(
                    format!("{path}.syn_flood.block_for"),
                    "must be from 1s to 24h",
                ));
            }
        }
        if let Some(d) = &self.dns_amplification {
            if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&d.query_window) {
                errs.push(ConfigError::new(
                    format!("{path}.dns_amplification.query_window"),
                    "must be from 100ms to 5m",
                ));
            }
        }
    }
}

/// Ring buffers must be a power-of-two number of pages.
pub fn ringbuf_size(path: &str, n: u64, errs: &mut Vec<ConfigError>) {
    if !n.is_power_of_two() || !(MIN_RINGBUF..=MAX_RINGBUF).contains(&n) {
        errs.push(ConfigError::new(
            path,
            format!("{n} bytes: must be a power of two from 4KiB to 1GiB (e.g. 256KiB, 4MiB)"),
        ));
    }
}

impl Exporters {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        let set: Vec<&str> = [
            self.otlp.as_ref().map(|_| "otlp"),
            self.otlphttp.as_ref().map(|_| "otlphttp"),
            self.stdout.as_ref().map(|_| "stdout"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() > 1 {
            errs.push(ConfigError::new(
                "exporters",
                format!(
                    "configure one exporter, not {} ({})",
                    set.len(),
                    set.join(", ")
                ),
            ));
        }
        if let Some(o) = &self.otlp {
            o.validate("exporters.otlp", true, errs);
        }
        if let Some(o) = &self.otlphttp {
            o.validate("exporters.otlphttp", false, errs);
        }
        if let Some(s) = &self.stdout {
            if let Some(q) = s.queue_size {
                queue_size("exporters.stdout.queue_size", q, errs);
            }
        }
        if let Some(p) = &self.prometheus {
            if p.endpoint.parse::<std::net::SocketAddr>().is_err() {
                errs.push(ConfigError::new(
                    "exporters.prometheus.endpoint",
                    format!("`{}` is not IP:port (e.g. 127.0.0.1:9464)", p.endpoint),
                ));
            }
        }
    }
}

/// A queue's byte bound: below a batch of small records nothing batches.
const MIN_QUEUE_BYTES: u64 = 64 << 10;
const MAX_QUEUE_BYTES: u64 = 4 << 30;

/// Requests in flight per signal: more only adds memory (a batch each).
const MAX_CONSUMERS: usize = 64;

fn queue_size(path: &str, n: usize, errs: &mut Vec<ConfigError>) {
    if n == 0 || n > MAX_QUEUE {
        errs.push(ConfigError::new(
            path,
            format!("{n}: must be from 1 to {MAX_QUEUE}"),
        ));
    }
}

/// The socket path of a `unix:///absolute/path` endpoint: the form gRPC
/// clients take and the collector's OTLP receiver serves with
/// `transport: unix`.
pub fn unix_socket_path(endpoint: &str) -> Option<&str> {
    endpoint
        .strip_prefix("unix://")
        .filter(|p| p.starts_with('/') && p.len() > 1)
}

/// An OTLP exporter's endpoint: [`check_endpoint`]'s, or for gRPC also a
/// collector's Unix socket, `unix:///absolute/path`.
pub fn check_otlp_endpoint(text: &str, grpc: bool) -> Result<(), String> {
    if !text.starts_with("unix:") {
        return check_endpoint(text);
    }
    if !grpc {
        return Err(format!(
            "`{text}`: a Unix socket is for the gRPC exporter (exporters.otlp); \
             OTLP/HTTP goes to http(s)://host:port"
        ));
    }
    match unix_socket_path(text) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{text}`: write a Unix socket as unix:///absolute/path (e.g. unix:///run/otelcol/otlp.sock)"
        )),
    }
}

/// An OTLP endpoint: `http://host:port` or `https://host:port[/base]`.
pub fn check_endpoint(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("`{text}` is not a URL ({e}); write e.g. http://127.0.0.1:4317"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{text}`: scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    Ok(())
}

fn readable(path: &str, file: &Option<String>, errs: &mut Vec<ConfigError>) {
    if let Some(f) = file {
        if let Err(e) = std::fs::metadata(Path::new(f)) {
            errs.push(ConfigError::new(path, format!("cannot read `{f}`: {e}")));
        }
    }
}

impl OtlpExporter {
    fn validate(&self, base: &str, grpc: bool, errs: &mut Vec<ConfigError>) {
        if let Some(ep) = &self.endpoint {
            if let Err(m) = check_otlp_endpoint(ep, grpc) {
                errs.push(ConfigError::new(format!("{base}.endpoint"), m));
            }
        }
        headers(base, &self.headers, errs);
        if let Some(t) = self.timeout {
            positive(&format!("{base}.timeout"), t, errs);
        }
        tls(base, &self.tls, errs);
        if let Some(m) = self
            .endpoint
            .as_deref()
            .and_then(|ep| super::settings::tls_without_https(ep, &self.tls))
        {
            errs.push(ConfigError::new(format!("{base}.tls"), m));
        }
        let r = &self.retry_on_failure;
        if r.enabled {
            positive(
                &format!("{base}.retry_on_failure.initial_interval"),
                r.initial_interval,
                errs,
            );
            if r.max_interval < r.initial_interval {
                errs.push(ConfigError::new(
                    format!("{base}.retry_on_failure.max_interval"),
                    "must not be shorter than initial_interval",
                ));
            }
        }
        queue_size(
            &format!("{base}.sending_queue.queue_size"),
            self.sending_queue.queue_size,
            errs,
        );
        let b = self.sending_queue.queue_bytes.0;
        if !(MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES).contains(&b) {
            errs.push(ConfigError::new(
                format!("{base}.sending_queue.queue_bytes"),
                format!("{b}: must be from 64KiB to 4GiB"),
            ));
        }
        let n = self.sending_queue.num_consumers;
        if n == 0 || n > MAX_CONSUMERS {
            errs.push(ConfigError::new(
                format!("{base}.sending_queue.num_consumers"),
                format!("{n}: must be from 1 to {MAX_CONSUMERS}"),
            ));
        }
    }
}

fn headers(
    base: &str,
    map: &std::collections::BTreeMap<String, String>,
    errs: &mut Vec<ConfigError>,
) {
    for (k, v) in map {
        let path = format!("{base}.headers.{k}");
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            errs.push(ConfigError::new(
                &path,
                format!("`{k}` is not a valid header name"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(v).is_err() {
            errs.push(ConfigError::new(
                &path,
                "value has characters a header cannot carry",
            ));
        }
    }
}

fn tls(base: &str, t: &TlsConfig, errs: &mut Vec<ConfigError>) {
    readable(&format!("{base}.tls.ca_file"), &t.ca_file, errs);
    readable(&format!("{base}.tls.cert_file"), &t.cert_file, errs);
    readable(&format!("{base}.tls.key_file"), &t.key_file, errs);
    if t.cert_file.is_some() != t.key_file.is_some() {
        errs.push(ConfigError::new(
            format!("{base}.tls"),
            "cert_file and key_file go together (mutual TLS needs both)",
        ));
    }
}

/// Shortest OpAMP polling interval: a fleet polling faster is a load test.
const MIN_OPAMP_POLL: Duration = Duration::from_millis(100);

impl Extensions {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        let Some(o) = &self.opamp else { return };
        let base = "extensions.opamp";
        if let Some(uid) = &o.instance_uid {
            match uuid::Uuid::parse_str(uid) {
                Ok(u) if !u.is_nil() => {}
                _ => errs.push(ConfigError::new(
                    format!("{base}.instance_uid"),
                    format!("`{uid}` is not a UUID (e.g. 01913a7e-6c4b-7cc2-8f0e-3b1c2d4e5f60)"),
                )),
            }
        }
        let Some(h) = &o.server.http else {
            errs.push(ConfigError::new(
                format!("{base}.server"),
                "needs `http: { endpoint: … }` (the only transport Tapio speaks)",
            ));
            return;
        };
        let base = "extensions.opamp.server.http";
        match &h.endpoint {
            None => errs.push(ConfigError::new(
                format!("{base}.endpoint"),
                "is required, e.g. http://127.0.0.1:4320/v1/opamp",
            )),
            Some(ep) => {
                if let Err(m) = check_endpoint(ep) {
                    errs.push(ConfigError::new(format!("{base}.endpoint"), m));
                }
            }
        }
        headers(base, &h.headers, errs);
        if h.polling_interval < MIN_OPAMP_POLL {
            errs.push(ConfigError::new(
                format!("{base}.polling_interval"),
                "must be at least 100ms",
            ));
        }
        positive(&format!("{base}.timeout"), h.timeout, errs);
        tls(base, &h.tls, errs);
        if let Some(m) = h
            .endpoint
            .as_deref()
            .and_then(|ep| super::settings::tls_without_https(ep, &h.tls))
        {
            errs.push(ConfigError::new(format!("{base}.tls"), m));
        }
        let r = o.rollback_after_unreachable;
        if !r.is_zero() && r <= h.polling_interval {
            errs.push(ConfigError::new(
                "extensions.opamp.rollback_after_unreachable",
                format!(
                    "must be 0s (never) or longer than server.http.polling_interval ({:?})",
                    h.polling_interval
                ),
            ));
        }
    }
}

fn positive(path: &str, d: Duration, errs: &mut Vec<ConfigError>) {
    if d.is_zero() {
        errs.push(ConfigError::new(path, "must be longer than zero"));
    }
}

/// More threads than this would only contend: readers and exporters are
/// a handful of tasks.
const MAX_WORKER_THREADS: usize = 64;

impl Pipeline {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        for (name, b) in [("logs", &self.logs), ("traces", &self.traces)] {
            if let Some(d) = b.schedule_delay {
                positive(&format!("pipeline.{name}.schedule_delay"), d, errs);
            }
            if let Some(n) = b.max_export_batch_size {
                if n == 0 || n > MAX_BATCH {
                    errs.push(ConfigError::new(
                        format!("pipeline.{name}.max_export_batch_size"),
                        format!("{n}: must be from 1 to {MAX_BATCH}"),
                    ));
                }
            }
        }
        if let Some(n) = self.worker_threads {
            if n == 0 || n > MAX_WORKER_THREADS {
                errs.push(ConfigError::new(
                    "pipeline.worker_threads",
                    format!("{n}: must be from 1 to {MAX_WORKER_THREADS}"),
                ));
            }
        }
        if let Some(d) = self.metrics.export_interval {
            if d < Duration::from_millis(100) {
                errs.push(ConfigError::new(
                    "pipeline.metrics.export_interval",
                    "must be at least 100ms",
                ));
            }
        }
    }
}

impl NetnsProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size(
            "probes.netns.ring_buffer_size",
            self.ring_buffer_size.0,
            errs,
        );
        let d = &self.cni_bin_dir;
        // The kernel compares the directory with its trailing '/'.
        let max = tapio_shared::TAPIO_CNI_DIR_LEN as usize - 1;
        if !d.is_empty() && (!d.starts_with('/') || d.trim_end_matches('/').len() + 1 > max) {
            errs.push(ConfigError::new(
                "probes.netns.cni_bin_dir",
                format!("{d:?}: an absolute directory path of at most {max} bytes"),
            ));
        }
        if d.split('/').any(|c| c == ".." || c == ".") {
            errs.push(ConfigError::new(
                "probes.netns.cni_bin_dir",
                format!(
                    "{d:?}: no `.` or `..` components (the kernel compares the path as executed)"
                ),
            ));
        }
    }
}

/// Most slices the systemd probe can be told to watch.
const MAX_SYSTEMD_SLICES: usize = 64;

impl SystemdProbe {
    fn validate(&self, errs: &mut Vec<ConfigError>) {
        ringbuf_size(
            "probes.systemd.ring_buffer_size",
            self.ring_buffer_size.0,
            errs,
        );
        if self.slices.len() > MAX_SYSTEMD_SLICES {
            errs.push(ConfigError::new(
                "probes.systemd.slices",
                format!("{} slices: at most {MAX_SYSTEMD_SLICES}", self.slices.len()),
            ));
        }
        for s in &self.slices {
            // A slice is one directory of the cgroup v2 root, named as
            // systemd names slices.
            if !s.ends_with(".slice") || s.len() <= ".slice".len() || s.contains('/') {
                errs.push(ConfigError::new(
                    "probes.systemd.slices",
                    format!(
                        "{s:?}: a top-level slice name like system.slice (one cgroup directory ending in .slice, no '/')"
                    ),
                ));
            }
        }
    }
}
