//! The netns probe's log records: namespaces, interfaces, addresses,
//! routes, CNI plugin calls. The one place their names and shapes are
//! decided. rtnetlink notifications carry no timestamp: theirs is when
//! Tapio read them.

use super::{CniEnv, NsRef};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use crate::probes::process::otlp::process_attrs;
use std::net::IpAddr;
use tapio_shared::{tapio_cni_exec, tapio_cni_flags as cni_flags, tapio_netns_create};

fn ns_attrs(w: &mut impl RecordWriter, ns: &NsRef) {
    if let Some(i) = ns.ino {
        w.int(attr::TAPIO_NETNS_INODE, i as i64);
    }
    if let Some(id) = ns.nsid {
        w.int(attr::TAPIO_NETNS_ID, i64::from(id));
    }
    if let Some(p) = &ns.path {
        w.str(attr::TAPIO_NETNS_PATH, p);
    }
}

/// How a namespace is named in a body: its path, else its inode.
struct Named<'a>(&'a NsRef);

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.0.path, self.0.ino, self.0.nsid) {
            (Some(p), _, _) => f.write_str(p),
            (None, Some(i), _) => write!(f, "net:[{i}]"),
            (None, None, Some(id)) => write!(f, "nsid {id}"),
            _ => f.write_str("an unknown namespace"),
        }
    }
}

/// `network.namespace.create`: the header is the creating task.
pub fn namespace_create(
    enc: &mut impl Encode,
    r: &tapio_netns_create,
    ns: &NsRef,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let via = if r.via == tapio_shared::tapio_netns_via::TAPIO_NETNS_CLONE {
        "clone"
    } else {
        "unshare"
    };
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    w.body(format_args!(
        "network namespace {} created by pid {} ({via})",
        Named(ns),
        r.hdr.pid
    ));
    process_attrs(&mut w, &r.hdr, ctx);
    ns_attrs(&mut w, ns);
    w.int(attr::TAPIO_NETNS_PARENT_INODE, r.parent_netns_ino as i64);
    w.str(attr::TAPIO_NETNS_VIA, via);
    w.finish_log(observed, event::NETWORK_NAMESPACE_CREATE);
}

/// `network.namespace.delete`: the kernel dropped the namespace's id.
pub fn namespace_delete(enc: &mut impl Encode, ns: &NsRef, now: u64) {
    let mut w = enc.log(now, Severity::Info);
    w.body(format_args!("network namespace {} deleted", Named(ns)));
    ns_attrs(&mut w, ns);
    w.finish_log(now, event::NETWORK_NAMESPACE_DELETE);
}

fn if_attrs(w: &mut impl RecordWriter, name: Option<&str>, index: i64) {
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        w.str(attr::NETWORK_INTERFACE_NAME, n);
    }
    w.int(attr::TAPIO_NETWORK_INTERFACE_INDEX, index);
}

/// `network.interface.create`/`delete`/`up`/`down`.
pub fn interface(
    enc: &mut impl Encode,
    ev: &str,
    ns: &NsRef,
    name: &str,
    kind: Option<&str>,
    index: i32,
    now: u64,
) {
    let what = match ev.rsplit('.').next().unwrap_or(ev) {
        "create" => "created",
        "delete" => "deleted",
        "up" => "set up",
        _ => "set down",
    };
    let mut w = enc.log(now, Severity::Info);
    w.body(format_args!("interface {name} {what} in {}", Named(ns)));
    ns_attrs(&mut w, ns);
    if_attrs(&mut w, Some(name), i64::from(index));
    if let Some(k) = kind {
        w.str(attr::TAPIO_NETWORK_INTERFACE_KIND, k);
    }
    w.finish_log(now, ev);
}

/// An interface that moved between namespaces.
pub struct Move<'a> {
    pub from: &'a NsRef,
    /// Empty when the target has no id in Tapio's namespace.
    pub to: &'a NsRef,
    pub name: &'a str,
    pub kind: Option<&'a str>,
    pub index: i32,
    pub new_index: Option<i32>,
}

/// `network.interface.move`: the source namespace's attributes, the
/// target's under `tapio.network.namespace.target.*`.
pub fn interface_move(enc: &mut impl Encode, m: &Move<'_>, now: u64) {
    let mut w = enc.log(now, Severity::Info);
    w.body(format_args!(
        "interface {} moved from {} to {}",
        m.name,
        Named(m.from),
        Named(m.to)
    ));
    ns_attrs(&mut w, m.from);
    if_attrs(&mut w, Some(m.name), i64::from(m.index));
    if let Some(k) = m.kind {
        w.str(attr::TAPIO_NETWORK_INTERFACE_KIND, k);
    }
    if let Some(i) = m.to.ino {
        w.int(attr::TAPIO_NETNS_TARGET_INODE, i as i64);
    }
    if let Some(id) = m.to.nsid {
        w.int(attr::TAPIO_NETNS_TARGET_ID, i64::from(id));
    }
    w.finish_log(now, event::NETWORK_INTERFACE_MOVE);
}

fn network_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    }
}

/// `network.address.add`/`delete`.
#[allow(clippy::too_many_arguments)]
pub fn address(
    enc: &mut impl Encode,
    new: bool,
    ns: &NsRef,
    ifname: Option<&str>,
    index: u32,
    addr: IpAddr,
    prefix: u8,
    now: u64,
) {
    let mut w = enc.log(now, Severity::Info);
    w.body(format_args!(
        "address {addr}/{prefix} {} {} in {}",
        if new { "added to" } else { "removed from" },
        ifname.unwrap_or("?"),
        Named(ns)
    ));
    ns_attrs(&mut w, ns);
    if_attrs(&mut w, ifname, i64::from(index));
    w.ip(attr::TAPIO_NETWORK_ADDRESS, addr);
    w.int(attr::TAPIO_NETWORK_PREFIX_LENGTH, i64::from(prefix));
    w.str(attr::NETWORK_TYPE, network_type(addr));
    let ev = if new {
        event::NETWORK_ADDRESS_ADD
    } else {
        event::NETWORK_ADDRESS_DELETE
    };
    w.finish_log(now, ev);
}

/// A route change.
pub struct Route<'a> {
    pub new: bool,
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub ifname: Option<&'a str>,
    pub table: u32,
}

/// `network.route.add`/`delete`.
pub fn route(enc: &mut impl Encode, ns: &NsRef, r: &Route<'_>, now: u64) {
    let dst = match r.dst {
        Some(d) if r.dst_len > 0 => format!("{d}/{}", r.dst_len),
        _ => "default".to_string(),
    };
    let mut w = enc.log(now, Severity::Info);
    match r.gateway {
        Some(g) => w.body(format_args!(
            "route {dst} via {g} {} in {}",
            if r.new { "added" } else { "removed" },
            Named(ns)
        )),
        None => w.body(format_args!(
            "route {dst} dev {} {} in {}",
            r.ifname.unwrap_or("?"),
            if r.new { "added" } else { "removed" },
            Named(ns)
        )),
    }
    ns_attrs(&mut w, ns);
    if let Some(i) = r.oif {
        if_attrs(&mut w, r.ifname, i64::from(i));
    }
    w.str(attr::TAPIO_NETWORK_ROUTE_DESTINATION, &dst);
    if let Some(g) = r.gateway {
        w.ip(attr::TAPIO_NETWORK_ROUTE_GATEWAY, g);
    }
    w.int(attr::TAPIO_NETWORK_ROUTE_TABLE, i64::from(r.table));
    if let Some(d) = r.dst.or(r.gateway) {
        w.str(attr::NETWORK_TYPE, network_type(d));
    }
    let ev = if r.new {
        event::NETWORK_ROUTE_ADD
    } else {
        event::NETWORK_ROUTE_DELETE
    };
    w.finish_log(now, ev);
}

/// `cni.plugin.exec`: the header is the plugin's new image. `target` is
/// the namespace CNI_NETNS names, when Tapio could open it.
pub fn cni_exec(
    enc: &mut impl Encode,
    r: &tapio_cni_exec,
    env: &CniEnv,
    target: Option<&NsRef>,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let n = usize::from(r.filename_len).min(r.filename.len());
    let path = crate::probes::process::decode::text(&r.filename, n);
    let path = String::from_utf8_lossy(path);
    let plugin = path.rsplit('/').next().unwrap_or(&path);
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    w.body(format_args!(
        "CNI plugin {plugin} {} for {} ({})",
        env.command.as_deref().unwrap_or("?"),
        env.container_id.as_deref().unwrap_or("?"),
        env.ifname.as_deref().unwrap_or("?"),
    ));
    process_attrs(&mut w, &r.hdr, ctx);
    w.str(attr::PROCESS_EXECUTABLE_PATH, &path);
    w.str(attr::TAPIO_CNI_PLUGIN, plugin);
    for (k, v) in [
        (attr::TAPIO_CNI_COMMAND, &env.command),
        (attr::TAPIO_CNI_CONTAINER_ID, &env.container_id),
        (attr::TAPIO_CNI_NETNS, &env.netns),
        (attr::TAPIO_CNI_IFNAME, &env.ifname),
    ] {
        if let Some(v) = v {
            w.str(k, v);
        }
    }
    w.int(attr::TAPIO_NETNS_INODE, r.netns_ino as i64);
    if let Some(t) = target {
        if let Some(i) = t.ino {
            w.int(attr::TAPIO_NETNS_TARGET_INODE, i as i64);
        }
        if let Some(id) = t.nsid {
            w.int(attr::TAPIO_NETNS_TARGET_ID, i64::from(id));
        }
    }
    let cut = cni_flags::TAPIO_CNI_FILENAME_TRUNCATED
        | cni_flags::TAPIO_CNI_ENV_TAIL
        | cni_flags::TAPIO_CNI_ENV_UNREADABLE;
    if r.flags & cut != 0 {
        w.bool(attr::TAPIO_TRUNCATED, true);
    }
    w.finish_log(observed, event::CNI_PLUGIN_EXEC);
}
