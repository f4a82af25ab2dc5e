//! The netns probe, end to end: a pod's network set up the way a container
//! runtime and its CNI plugin set it up (`ip netns add`, a veth pair made
//! in one namespace with one end moved into the other, addresses, a route,
//! a CNI plugin executed with CNI_* variables and its config on stdin,
//! `ip netns del`) → kernel and rtnetlink → tapio → a real OTLP receiver.
//! Needs root; under CI=true it fails rather than skips without it.
//!
//! Containment: two namespaces of the test's own stand in for the host and
//! the pod, so both ends of the veth are in namespaces it made; addresses
//! are 198.18.0.0/15 and 2001:db8::/32 only. The namespaces go on drop, on
//! failure too.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;
use tapio_integration::{int_attr, privileged_or_skip, sh, str_attr, NetNs, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
/// Generous: the guests run under software emulation.
const WAIT: Duration = Duration::from_secs(60);

type Logs = [(Resource, LogRecord)];

fn config(rx: &Receiver, cni_dir: &str) -> String {
    format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  kernel: {{ enabled: false }}\n  systemd: {{ enabled: false }}\n  netns: {{ enabled: true, wakeup_interval: 0s, cni_bin_dir: {cni_dir} }}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n",
        rx.grpc_endpoint()
    )
}

fn ino(ns: &NetNs) -> i64 {
    std::fs::metadata(format!("/run/netns/{}", ns.name))
        .expect("stat the namespace's mount")
        .ino() as i64
}

/// The first `event` record whose attributes satisfy `pred`.
fn find<'a>(
    logs: &'a Logs,
    event: &str,
    pred: impl Fn(&LogRecord) -> bool,
) -> Option<&'a LogRecord> {
    logs.iter()
        .map(|(_, r)| r)
        .find(|r| r.event_name == event && pred(r))
}

fn in_ns(r: &LogRecord, ino: i64) -> bool {
    int_attr(&r.attributes, "tapio.network.namespace.inode") == Some(ino)
}

fn s(r: &LogRecord, k: &str) -> Option<String> {
    str_attr(&r.attributes, k)
}

/// Run the stand-in plugin as a runtime does: CNI_* in its environment,
/// the network config on stdin, the result on stdout. `filler` bytes of
/// other environment come first (libcni appends CNI_* to its own).
fn run_plugin(plugin: &str, dir: &str, command: &str, netns: &str, filler: usize) {
    let mut c = Command::new(plugin);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "tapio-test-sandbox-0001")
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", dir);
    if filler > 0 {
        // Sorts before CNI_: std passes the environment in name order.
        c.env("AAA_FILLER", "x".repeat(filler));
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"cniVersion":"1.0.0","name":"tapio-test","type":"tapio-test-plugin"}"#)
        .expect("config on stdin");
    let out = child.wait_with_output().expect("plugin exit");
    assert!(out.status.success(), "plugin failed: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cniVersion"));
}

#[test]
fn a_pod_network_setup_reads_as_a_timeline() {
    if !privileged_or_skip("a_pod_network_setup_reads_as_a_timeline") {
        return;
    }
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let dir = bin_dir.path().to_str().expect("utf-8 path").to_string();
    let plugin = format!("{dir}/tapio-test-plugin");
    std::fs::write(
        &plugin,
        "#!/bin/sh\n# reads its config like a real plugin, answers with a result\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\"}]}'\n",
    )
    .expect("write the plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config(&rx, &dir), &[]);

    let tag = std::process::id() % 100_000;
    let host = NetNs::new(&format!("tapio-cni-{tag}-h"));
    let pod = NetNs::new(&format!("tapio-cni-{tag}-p"));
    let (hi, pi) = (ino(&host), ino(&pod));
    // Changes inside a namespace are seen once Tapio has given it an id:
    // the create record says it has.
    let tracked = |l: &Logs| {
        [hi, pi].iter().all(|i| {
            find(l, "network.namespace.create", |r| in_ns(r, *i))
                .is_some_and(|r| int_attr(&r.attributes, "tapio.network.namespace.id").is_some())
        })
    };
    let end = std::time::Instant::now() + WAIT;
    while !tracked(&rx.log_records()) {
        if std::time::Instant::now() > end {
            // What came instead, and why (Tapio's own log says).
            for (_, r) in rx.log_records() {
                eprintln!("{}: {:?} {:?}", r.event_name, r.body, r.attributes);
            }
            panic!(
                "namespaces {hi} and {pi} not created and tracked in {WAIT:?}; tapio:\n{}",
                t.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (hv, pv) = (format!("tvc{tag}h"), format!("tvc{tag}p"));
    let (h, p) = (&host.name, &pod.name);
    sh(&format!("ip -n {h} link add {hv} type veth peer name {pv}"));
    sh(&format!("ip -n {h} link set {pv} netns {p}"));
    sh(&format!("ip -n {h} addr add 198.18.6.1/24 dev {hv}"));
    sh(&format!("ip -n {p} addr add 198.18.6.2/24 dev {pv}"));
    sh(&format!(
        "ip -n {p} addr add 2001:db8:6::2/64 dev {pv} nodad"
    ));
    sh(&format!("ip -n {h} link set {hv} up"));
    sh(&format!("ip -n {p} link set {pv} up"));
    sh(&format!(
        "ip -n {p} route add 198.19.6.0/24 via 198.18.6.1 dev {pv}"
    ));
    let netns_path = format!("/run/netns/{p}");
    run_plugin(&plugin, &dir, "ADD", &netns_path, 0);
    // An environment past the kernel's copy: the tail still has CNI_*.
    run_plugin(&plugin, &dir, "CHECK", &netns_path, 20_000);
    sh(&format!("ip -n {p} route del 198.19.6.0/24"));
    sh(&format!("ip -n {p} addr del 198.18.6.2/24 dev {pv}"));
    drop(pod);
    drop(host);

    let logs = rx.wait_for_logs("both namespaces deleted", WAIT, |l| {
        [hi, pi]
            .iter()
            .all(|i| find(l, "network.namespace.delete", |r| in_ns(r, *i)).is_some())
    });
    for (_, r) in &logs {
        if r.event_name.starts_with("network.") || r.event_name.starts_with("cni.") {
            eprintln!("{}: {:?}", r.event_name, r.body);
        }
    }
    // Only Tapio's own ids are reported: the pod's namespace dropping its
    // id for the host's is not a deletion of its own.
    let deletes = logs
        .iter()
        .filter(|(_, r)| {
            r.event_name == "network.namespace.delete"
                && int_attr(&r.attributes, "tapio.network.namespace.inode").is_none()
        })
        .count();
    assert_eq!(deletes, 0, "deletions of namespaces Tapio did not know");

    for i in [hi, pi] {
        let c = find(&logs, "network.namespace.create", |r| in_ns(r, i)).unwrap();
        assert_eq!(
            s(c, "tapio.network.namespace.via").as_deref(),
            Some("unshare")
        );
        assert!(int_attr(&c.attributes, "tapio.network.namespace.parent_inode").is_some());
        assert_eq!(s(c, "process.executable.name").as_deref(), Some("ip"));
    }
    let named = |r: &LogRecord, n: &str| s(r, "network.interface.name").as_deref() == Some(n);
    for dev in [&hv, &pv] {
        let c = find(&logs, "network.interface.create", |r| {
            named(r, dev) && in_ns(r, hi)
        })
        .unwrap_or_else(|| panic!("no network.interface.create for {dev} in the host namespace"));
        assert_eq!(
            s(c, "tapio.network.interface.kind").as_deref(),
            Some("veth")
        );
    }
    let mv = find(&logs, "network.interface.move", |r| named(r, &pv))
        .expect("no network.interface.move");
    assert!(in_ns(mv, hi), "moved from: {mv:?}");
    assert_eq!(
        int_attr(&mv.attributes, "tapio.network.namespace.target.inode"),
        Some(pi)
    );
    // The arrival is the move's, not a creation in the pod's namespace.
    assert!(find(&logs, "network.interface.create", |r| named(r, &pv)
        && in_ns(r, pi))
    .is_none());
    for (addr, prefix, ns, dev, ty) in [
        ("198.18.6.1", 24, hi, &hv, "ipv4"),
        ("198.18.6.2", 24, pi, &pv, "ipv4"),
        ("2001:db8:6::2", 64, pi, &pv, "ipv6"),
    ] {
        let a = find(&logs, "network.address.add", |r| {
            s(r, "tapio.network.address").as_deref() == Some(addr)
        })
        .unwrap_or_else(|| panic!("no network.address.add for {addr}"));
        assert!(in_ns(a, ns), "{addr}: {a:?}");
        assert!(named(a, dev), "{addr}: {a:?}");
        assert_eq!(
            int_attr(&a.attributes, "tapio.network.prefix_length"),
            Some(prefix)
        );
        assert_eq!(s(a, "network.type").as_deref(), Some(ty));
    }
    assert!(find(&logs, "network.address.delete", |r| {
        s(r, "tapio.network.address").as_deref() == Some("198.18.6.2") && in_ns(r, pi)
    })
    .is_some());
    for dev in [&hv, &pv] {
        assert!(
            find(&logs, "network.interface.up", |r| named(r, dev)).is_some(),
            "no network.interface.up for {dev}"
        );
    }
    for ev in ["network.route.add", "network.route.delete"] {
        let rt = find(&logs, ev, |r| {
            s(r, "tapio.network.route.destination").as_deref() == Some("198.19.6.0/24")
        })
        .unwrap_or_else(|| panic!("no {ev}"));
        assert!(in_ns(rt, pi));
        assert_eq!(
            int_attr(&rt.attributes, "tapio.network.route.table"),
            Some(254)
        );
        if ev == "network.route.add" {
            assert_eq!(
                s(rt, "tapio.network.route.gateway").as_deref(),
                Some("198.18.6.1")
            );
            assert!(named(rt, &pv), "{rt:?}");
        }
    }
    for (cmd, cut) in [("ADD", false), ("CHECK", true)] {
        let c = find(&logs, "cni.plugin.exec", |r| {
            s(r, "tapio.cni.command").as_deref() == Some(cmd)
        })
        .unwrap_or_else(|| panic!("no cni.plugin.exec for {cmd}"));
        assert_eq!(
            s(c, "tapio.cni.plugin").as_deref(),
            Some("tapio-test-plugin")
        );
        assert_eq!(
            s(c, "process.executable.path").as_deref(),
            Some(plugin.as_str())
        );
        assert_eq!(
            s(c, "tapio.cni.container_id").as_deref(),
            Some("tapio-test-sandbox-0001")
        );
        assert_eq!(
            s(c, "tapio.cni.netns").as_deref(),
            Some(netns_path.as_str())
        );
        assert_eq!(s(c, "tapio.cni.ifname").as_deref(), Some("eth0"));
        assert_eq!(
            int_attr(&c.attributes, "tapio.network.namespace.target.inode"),
            Some(pi)
        );
        assert_eq!(
            c.attributes.iter().any(|a| a.key == "tapio.truncated"),
            cut,
            "{cmd}"
        );
    }
    // Nothing but the plugin is a plugin.
    assert_eq!(
        logs.iter()
            .filter(|(_, r)| r.event_name == "cni.plugin.exec")
            .count(),
        2
    );
    drop(t);
}
