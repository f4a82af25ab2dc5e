//! The process probe, end to end: real processes → kernel → tapio → a real
//! OTLP receiver (directly, and through the rotel collector), over gRPC and
//! HTTP. Needs root; under CI=true it fails rather than skips without it.

use std::{
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tapio_integration::{int_attr, privileged_or_skip, str_attr, Receiver, Rotel, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(20);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn config(exporter: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "exporters:\n  {exporter}:\n    endpoint: {endpoint}\n{extra}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 500ms }}\n"
    )
}

/// Run `/bin/sh -c 'exit 7'` and check its exec and exit records: path,
/// pid, parent pid, command line, exit code, and kernel timestamps within a
/// second of the wall clock.
fn assert_sh_exit_7(rx: &Receiver) {
    let before = unix_ns();
    let mut child = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("spawn sh");
    let pid = i64::from(child.id());
    let status = child.wait().unwrap();
    let after = unix_ns();
    assert_eq!(status.code(), Some(7));

    let logs = rx.wait_for_logs("exec and exit of sh", WAIT, |logs| {
        let of = |name: &str| {
            logs.iter().any(|(_, r)| {
                r.event_name == name && int_attr(&r.attributes, "process.pid") == Some(pid)
            })
        };
        of("process.exec") && of("process.exit")
    });
    let find = |name: &str| {
        logs.iter()
            .find(|(_, r)| {
                r.event_name == name && int_attr(&r.attributes, "process.pid") == Some(pid)
            })
            .cloned()
            .unwrap()
    };
    let me = i64::from(std::process::id());
    let (res, exec) = find("process.exec");
    let a = &exec.attributes;
    assert_eq!(
        str_attr(a, "process.executable.path").as_deref(),
        Some("/bin/sh")
    );
    assert_eq!(
        str_attr(a, "process.command_line").as_deref(),
        Some("/bin/sh -c exit 7")
    );
    assert_eq!(int_attr(a, "process.parent_pid"), Some(me));
    assert_eq!(int_attr(a, "process.user.id"), Some(0));
    assert_eq!(str_attr(a, "process.owner").as_deref(), Some("root"));
    assert_eq!(exec.severity_text, "INFO");
    assert!(
        exec.time_unix_nano >= before.saturating_sub(1_000_000_000)
            && exec.time_unix_nano <= after + 1_000_000_000,
        "exec time {} not within 1s of [{before}, {after}]",
        exec.time_unix_nano
    );
    assert_eq!(
        str_attr(&res.attributes, "service.name").as_deref(),
        Some("tapio")
    );
    assert!(str_attr(&res.attributes, "host.name").is_some());

    let (_, exit) = find("process.exit");
    let a = &exit.attributes;
    assert_eq!(int_attr(a, "process.exit.code"), Some(7));
    assert_eq!(int_attr(a, "process.parent_pid"), Some(me));
    assert_eq!(
        str_attr(a, "process.executable.path").as_deref(),
        Some("/bin/sh")
    );
    assert!(exit.time_unix_nano >= exec.time_unix_nano);
    assert!(exit.time_unix_nano <= after + 1_000_000_000);
}

#[test]
fn process_events_over_grpc() {
    if !privileged_or_skip("process_events_over_grpc") {
        return;
    }
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config("otlp", &rx.grpc_endpoint(), ""), &[]);
    assert_sh_exit_7(&rx);
    t.terminate();
    assert!(rx.received().grpc_requests > 0);
}

#[test]
fn process_events_over_http_with_gzip_and_headers() {
    if !privileged_or_skip("process_events_over_http_with_gzip_and_headers") {
        return;
    }
    let rx = Receiver::start();
    let extra = "    compression: gzip\n    headers: { x-tenant: team-a }";
    let t = Tapio::start(BIN, &config("otlphttp", &rx.http_endpoint(), extra), &[]);
    assert_sh_exit_7(&rx);
    t.terminate();
    let got = rx.received();
    assert!(got.http_requests > 0);
    assert!(got
        .headers
        .iter()
        .any(|(k, v)| k == "x-tenant" && v == "team-a"));
    assert!(got
        .headers
        .iter()
        .any(|(k, v)| k == "content-encoding" && v == "gzip"));
}

#[test]
fn otel_environment_variables_configure_the_exporter() {
    if !privileged_or_skip("otel_environment_variables_configure_the_exporter") {
        return;
    }
    let rx = Receiver::start();
    let ep = rx.grpc_endpoint();
    let t = Tapio::start(
        BIN,
        "pipeline:\n  logs: { schedule_delay: 100ms }\n",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ep.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20xyz"),
            ("OTEL_SERVICE_NAME", "node-agent"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
    );
    // A process of our own: the test may not count on others running.
    let status = Command::new("/bin/true").status().expect("spawn true");
    assert!(status.success());
    let logs = rx.wait_for_logs("any record", WAIT, |l| !l.is_empty());
    let res = &logs[0].0;
    assert_eq!(
        str_attr(&res.attributes, "service.name").as_deref(),
        Some("node-agent")
    );
    assert_eq!(
        str_attr(&res.attributes, "deployment.environment").as_deref(),
        Some("test")
    );
    rx.wait_for_counter(
        "tapio.events.received",
        &[("tapio.probe", "process")],
        WAIT,
        |v| v > 0,
    );
    t.terminate();
    assert!(rx
        .received()
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "Bearer xyz"));
}

#[test]
fn process_events_through_the_rotel_collector() {
    if !privileged_or_skip("process_events_through_the_rotel_collector") {
        return;
    }
    let rx = Receiver::start();
    let rotel = Rotel::start_forwarding_to(&rx.grpc_endpoint());
    for (exporter, ep) in [
        ("otlp", format!("http://{}", rotel.grpc_addr)),
        ("otlphttp", format!("http://{}", rotel.http_addr)),
    ] {
        let t = Tapio::start(BIN, &config(exporter, &ep, ""), &[]);
        assert_sh_exit_7(&rx);
        t.terminate();
    }
}

fn cgroup2_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].to_string())
    })
}

/// A process in a cgroup laid out like a Kubernetes container's gets
/// `container.id` and `k8s.pod.uid`, one in a systemd service's cgroup
/// `tapio.systemd.unit`; fork records name the child.
#[test]
fn container_and_pod_ids_from_cgroups_and_fork() {
    if !privileged_or_skip("container_and_pod_ids_from_cgroups_and_fork") {
        return;
    }
    let root = cgroup2_root().expect("a cgroup2 mount");
    let pod = "1a2b3c4d-5e6f-7081-9203-a4b5c6d7e8f9";
    let cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let base = format!("{root}/tapio-it-{}", std::process::id());
    let pod_dir = format!(
        "{base}/kubepods-besteffort-pod{}.slice",
        pod.replace('-', "_")
    );
    let ctr_dir = format!("{pod_dir}/cri-containerd-{cid}.scope");
    let unit = format!("tapio-it-{}.service", std::process::id());
    let slice_dir = format!("{base}/system.slice");
    let unit_dir = format!("{slice_dir}/{unit}");
    std::fs::create_dir_all(&ctr_dir).expect("create test cgroups");
    std::fs::create_dir_all(&unit_dir).expect("create test cgroups");
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let _cleanup = Cleanup(vec![
        ctr_dir.clone(),
        pod_dir.clone(),
        unit_dir.clone(),
        slice_dir.clone(),
        base.clone(),
    ]);

    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config("otlp", &rx.grpc_endpoint(), ""), &[]);
    let script = format!("echo $$ > {ctr_dir}/cgroup.procs && exec /bin/sleep 0.1");
    let mut child = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    assert!(child.wait().unwrap().success());
    let me = i64::from(std::process::id());
    let script = format!("echo $$ > {unit_dir}/cgroup.procs && exec /bin/sleep 0.1");
    let mut child = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let unit_pid = i64::from(child.id());
    assert!(child.wait().unwrap().success());
    fn sleep_exec(
        logs: &[(
            opentelemetry_proto::tonic::resource::v1::Resource,
            opentelemetry_proto::tonic::logs::v1::LogRecord,
        )],
        pid: i64,
    ) -> Option<usize> {
        logs.iter().position(|(_, r)| {
            r.event_name == "process.exec"
                && int_attr(&r.attributes, "process.pid") == Some(pid)
                && str_attr(&r.attributes, "process.executable.path").as_deref()
                    == Some("/bin/sleep")
        })
    }

    let logs = rx.wait_for_logs("exec of sleep in the container cgroup", WAIT, |logs| {
        sleep_exec(logs, pid).is_some()
            && sleep_exec(logs, unit_pid).is_some()
            && logs.iter().any(|(_, r)| {
                r.event_name == "process.fork"
                    && int_attr(&r.attributes, "tapio.process.child_pid") == Some(pid)
            })
    });
    let exec = logs
        .iter()
        .find(|(_, r)| {
            r.event_name == "process.exec"
                && str_attr(&r.attributes, "process.executable.path").as_deref()
                    == Some("/bin/sleep")
                && int_attr(&r.attributes, "process.pid") == Some(pid)
        })
        .unwrap();
    assert_eq!(
        str_attr(&exec.1.attributes, "container.id").as_deref(),
        Some(cid)
    );
    assert_eq!(
        str_attr(&exec.1.attributes, "k8s.pod.uid").as_deref(),
        Some(pod)
    );
    assert_eq!(str_attr(&exec.1.attributes, "tapio.systemd.unit"), None);
    let in_unit = &logs[sleep_exec(&logs, unit_pid).unwrap()].1;
    assert_eq!(
        str_attr(&in_unit.attributes, "tapio.systemd.unit").as_deref(),
        Some(unit.as_str())
    );
    assert_eq!(str_attr(&in_unit.attributes, "container.id"), None);
    let fork = logs
        .iter()
        .find(|(_, r)| {
            r.event_name == "process.fork"
                && int_attr(&r.attributes, "tapio.process.child_pid") == Some(pid)
        })
        .unwrap();
    assert_eq!(int_attr(&fork.1.attributes, "process.pid"), Some(me));
    t.terminate();
}

/// OTLP/gRPC over mutual TLS: Tapio trusts the configured CA and presents
/// its client certificate; the receiver requires both.
#[test]
fn process_events_over_grpc_with_mutual_tls() {
    if !privileged_or_skip("process_events_over_grpc_with_mutual_tls") {
        return;
    }
    let pki = tapio_integration::TestPki::new();
    let rx = Receiver::start_tls(pki.mutual_tls_server());
    let endpoint = format!("https://{}", rx.grpc_addr);
    let extra = format!(
        "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}",
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let t = Tapio::start(BIN, &config("otlp", &endpoint, &extra), &[]);
    assert_sh_exit_7(&rx);
    t.terminate();

    // Without the CA, the server's certificate is not trusted: nothing is
    // delivered and the failure is reported, not ignored.
    let rx2 = Receiver::start_tls(pki.mutual_tls_server());
    let endpoint = format!("https://{}", rx2.grpc_addr);
    let t = Tapio::start(BIN, &config("otlp", &endpoint, ""), &[]);
    let end = std::time::Instant::now() + WAIT;
    while !t.stderr().contains("export failed") {
        assert!(
            std::time::Instant::now() < end,
            "no export failure reported:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rx2.log_records().is_empty());
    t.terminate();
}

/// OTLP/gRPC to a collector's Unix socket (`unix:///path`, the collector's
/// `transport: unix`): the records arrive over it, none over TCP.
#[test]
fn process_events_over_grpc_on_a_unix_socket() {
    if !privileged_or_skip("process_events_over_grpc_on_a_unix_socket") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tapio-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = Receiver::start_unix(&dir.join("otlp.sock"));
    let t = Tapio::start(BIN, &config("otlp", &rx.grpc_unix_endpoint(), ""), &[]);
    assert_sh_exit_7(&rx);
    t.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sidecar next to a collector reads the collector's own YAML for the
/// OTLP receiver endpoint: no endpoint in Tapio's config at all.
#[test]
fn collector_config_supplies_the_endpoint() {
    if !privileged_or_skip("collector_config_supplies_the_endpoint") {
        return;
    }
    let rx = Receiver::start();
    let collector = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:{}\nexporters:\n  debug: {{}}\n",
        rx.grpc_addr.port()
    );
    let t = Tapio::start_with_args(
        BIN,
        "pipeline:\n  logs: { schedule_delay: 100ms }\n",
        &[("--collector-config", &collector)],
        &[],
    );
    assert_sh_exit_7(&rx);
    t.terminate();
}

/// The kernel wakes a reader whose ring holds a wakeup's worth of records
/// (an eighth of the ring) with no help from the interval's drain, here an
/// hour: forced wakeups are rate-limited per object (`tapio_submit`,
/// ebpf/include/tapio_bpf.h), and a limit that left a filled ring asleep
/// would lose nothing here but deliver nothing before the hour.
#[test]
fn a_ring_past_its_wakeup_threshold_wakes_the_reader() {
    if !privileged_or_skip("a_ring_past_its_wakeup_threshold_wakes_the_reader") {
        return;
    }
    let rx = Receiver::start();
    let yaml = config(
        "otlp",
        &rx.grpc_endpoint(),
        "probes:\n  process: { ring_buffer_size: 64KiB, wakeup_interval: 1h }\n  network: { enabled: false }\n  dns: { enabled: false }\n  security: { enabled: false }\n  kernel: { enabled: false }",
    );
    let t = Tapio::start(BIN, &yaml, &[]);
    // 300 processes: fork, exec and exit records, hundreds of KiB through
    // a 64 KiB ring whose wakeups come at 8 KiB.
    let mut pids = std::collections::HashSet::new();
    for _ in 0..300 {
        let mut c = Command::new("/bin/true").spawn().expect("spawn true");
        pids.insert(i64::from(c.id()));
        c.wait().expect("wait true");
    }
    // All but the records after the last wakeup (under 8 KiB, a few
    // processes' worth) arrive while Tapio runs.
    let logs = rx.wait_for_logs("execs of /bin/true before any drain", WAIT, |logs| {
        let seen = logs
            .iter()
            .filter(|(_, r)| {
                r.event_name == "process.exec"
                    && int_attr(&r.attributes, "process.pid").is_some_and(|p| pids.contains(&p))
            })
            .count();
        seen >= 250
    });
    assert!(!logs.is_empty());
    t.terminate();
}
