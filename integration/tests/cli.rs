//! The `tapio` command line: check-config on every shipped example and on
//! the bad fixtures, `tapio probes`, the stdout default of `tapio run`, and
//! its exit status when one of its tasks fails.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};
use tapio_integration::{point_value, privileged_or_skip, str_attr, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every Tapio config in the repository (otel-config/tapio*.yaml and
/// docker/ and deploy examples) passes `tapio check-config`.
#[test]
fn every_example_config_is_valid() {
    let mut files = Vec::new();
    for dir in ["otel-config", "docker", "docker/k8s"] {
        let Ok(rd) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("tapio") && name.ends_with(".yaml") {
                files.push(p);
            }
        }
    }
    assert!(!files.is_empty(), "no example configs found");
    let out = Command::new(BIN)
        .arg("check-config")
        .args(&files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-config failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.ends_with(": ok")).count(),
        files.len(),
        "{text}"
    );
}

#[test]
fn check_config_reports_errors_with_path_and_line_and_fails() {
    let bad = repo().join("exporter/testdata/config-two-exporters-bad-endpoint.yaml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("3 configuration errors"), "{text}");
    assert!(text.contains("exporters.otlp.endpoint (line 6)"), "{text}");
    assert!(
        text.contains("exporters.otlp.sending_queue.queue_size (line 8)"),
        "{text}"
    );
}

#[test]
fn run_with_a_bad_config_refuses_to_start() {
    let bad = repo().join("exporter/testdata/config-unknown-key.yaml");
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probes.process.ring_bufer_size (line 6): unknown field"),
        "{err}"
    );
}

/// A config file others can change (or swap) decides what a root process
/// enforces: check-config says why it is refused, and run will not start.
#[test]
fn a_config_others_can_change_is_refused_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let check = |p: &Path| {
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.code(), text)
    };
    let d = tempfile::tempdir().unwrap();
    chmod(d.path(), 0o755);
    let f = d.path().join("tapio.yaml");
    std::fs::write(&f, "exporters:\n  stdout: {}\n").unwrap();
    chmod(&f, 0o644);
    assert_eq!(check(&f), (Some(0), format!("{}: ok\n", f.display())));

    chmod(&f, 0o666);
    let (code, text) = check(&f);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("(top level): refused: the file is world-writable (mode 0666)"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused: the file is world-writable"), "{err}");

    // A root-owned 0644 file reached through a symlink into a
    // world-writable directory: anyone can replace the target.
    chmod(&f, 0o644);
    let open = d.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o1777);
    let target = open.join("tapio.yaml");
    std::fs::rename(&f, &target).unwrap();
    std::os::unix::fs::symlink(&target, &f).unwrap();
    let (code, text) = check(&f);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "refused: the directory it is in (watched for reloads), {}, is world-writable (mode 1777)",
            open.display()
        )),
        "{text}"
    );
}

#[test]
fn probes_reports_attach_types_for_this_kernel() {
    if !privileged_or_skip("probes_reports_attach_types_for_this_kernel") {
        return;
    }
    let out = Command::new(BIN).arg("probes").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "kernel features:",
        "btf ",
        "program types:",
        "tracepoint",
        "process    tp_btf       yes",
        "process    tracepoint   yes",
        "kernel     tp_btf       yes",
        "kernel     tracepoint   yes",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

/// `tapio probes lsm tc` reports those two probes only; an unknown name
/// is a usage error that lists the names.
#[test]
fn probes_reports_only_the_probes_named() {
    let out = Command::new(BIN).args(["probes", "nope"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error: {err}");
    assert!(
        err.contains("invalid value 'nope'") && err.contains("process, network, dns"),
        "{err}"
    );
    if !privileged_or_skip("probes_reports_only_the_probes_named") {
        return;
    }
    let out = Command::new(BIN)
        .args(["probes", "lsm", "tc"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let reported: std::collections::BTreeSet<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("probes "))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        reported,
        ["lsm", "tc"].into_iter().collect(),
        "only the named probes:\n{text}"
    );
}

/// With no config and no OTEL_* variables, records go to stdout as
/// OTLP-JSON lines.
#[test]
fn run_without_config_writes_otlp_json_to_stdout() {
    if !privileged_or_skip("run_without_config_writes_otlp_json_to_stdout") {
        return;
    }
    let mut cmd = Command::new(BIN);
    cmd.arg("run");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Wait for readiness on stderr.
    let mut err = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&err).contains("tapio ready") {
        assert!(
            Instant::now() < end,
            "not ready: {}",
            String::from_utf8_lossy(&err)
        );
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "tapio exited: {}", String::from_utf8_lossy(&err));
        err.extend_from_slice(&buf[..n]);
    }
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "exit 5"])
        .spawn()
        .unwrap();
    let pid = sh.id().to_string();
    sh.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut found = false;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).expect("each stdout line is one JSON document");
        for rl in v["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let attrs = r["attributes"].as_array().unwrap();
                    let get = |k: &str| {
                        attrs
                            .iter()
                            .find(|a| a["key"] == k)
                            .map(|a| a["value"].clone())
                    };
                    if r["eventName"] == "process.exit"
                        && get("process.pid").map(|v| v["intValue"].clone())
                            == Some(serde_json::json!(pid))
                    {
                        assert_eq!(get("process.exit.code").unwrap()["intValue"], "5");
                        found = true;
                    }
                }
            }
        }
    }
    assert!(
        found,
        "no process.exit for pid {pid} on stdout:\n{}",
        &stdout[..stdout.len().min(2000)]
    );
}

/// Without capabilities, `tapio run` says what it needs instead of failing
/// somewhere in the loader. (Root with an empty bounding set: no caps.)
#[test]
fn run_without_capabilities_explains_what_is_missing() {
    if !privileged_or_skip("run_without_capabilities_explains_what_is_missing") {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--",
            BIN,
            "run",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "not permitted to load BPF programs: run as root, or grant CAP_BPF and CAP_PERFMON"
        ),
        "{err}"
    );
}

/// The Kubernetes manifest is valid YAML, runs unprivileged with the
/// capabilities Tapio needs, and embeds a valid Tapio config. (No cluster
/// here: this is the static check.)
#[test]
fn daemonset_manifest_is_valid_and_unprivileged() {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo().join("docker/k8s/daemonset.yaml")).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).expect("valid YAML document"))
        .collect();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let cfg = cm["data"]["tapio.yaml"]
        .as_str()
        .expect("tapio.yaml in the ConfigMap");
    tapio::config::parse(cfg).expect("the ConfigMap's tapio.yaml is valid");
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["securityContext"]["privileged"],
        serde_yaml_ng::Value::Bool(false)
    );
    let caps: Vec<&str> = c["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for need in ["BPF", "PERFMON", "NET_ADMIN"] {
        assert!(caps.contains(&need), "missing CAP_{need}: {caps:?}");
    }
}

/// Every Prometheus query in the Grafana dashboards names a metric Tapio
/// emits, spelled the way the collector's Prometheus exporter (and Tapio's
/// own `/metrics`) spells it (dots to underscores, unit suffix, `_total`
/// for counters, `_bucket`, `_count` and `_sum` for histograms).
#[test]
fn dashboards_query_only_metrics_tapio_emits() {
    use tapio::otel::names::METRICS;
    // The same naming function the /metrics endpoint uses.
    let known: Vec<String> = METRICS
        .iter()
        .flat_map(tapio::otel::prometheus::series_names)
        .collect();
    // Label names (attributes as Prometheus spells them) are not metrics.
    let labels: Vec<String> = METRICS
        .iter()
        .flat_map(|m| m.attributes.iter())
        .map(|a| a.replace('.', "_"))
        .collect();
    let dir = repo().join("docker/grafana/dashboards");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        for p in v["panels"].as_array().unwrap() {
            if p["datasource"]["type"] != "prometheus" {
                continue;
            }
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let names: Vec<&str> = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("tapio_") || w.starts_with("dns_lookup"))
                    .filter(|w| !labels.iter().any(|l| l == w))
                    .collect();
                assert!(!names.is_empty(), "no metric in `{expr}`");
                for n in names {
                    assert!(
                        known.iter().any(|k| k == n),
                        "dashboard queries unknown metric {n}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} metric references checked");
}

/// The compose stack has every service, and every file it mounts exists.
#[test]
fn compose_stack_is_complete() {
    let text = std::fs::read_to_string(repo().join("docker/compose.yaml")).unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let services = v["services"].as_mapping().unwrap();
    for s in [
        "tapio",
        "otelcol",
        "jaeger",
        "prometheus",
        "loki",
        "grafana",
    ] {
        assert!(services.contains_key(s), "compose lacks {s}");
    }
    for (_, svc) in services {
        for vol in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = vol.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                let p = repo().join("docker").join(src);
                assert!(p.exists(), "compose mounts missing {}", p.display());
            }
        }
    }
}

/// A task that fails ends Tapio with status 1 (so `Restart=on-failure`
/// restarts it), says which task and why on stderr, and the last flush
/// carries a `tapio.task.failed` record (and, for a reader, the probe's
/// `tapio.probe.attached` at 0). The failures are made by the
/// `TAPIO_TEST_FAULT` test hook: a reader whose handler panics on its first
/// record; a reader whose ring buffer read fails (an error, not a panic); a
/// metric producer that panics with the producers lock held (the
/// metrics export worker dies).
#[test]
fn a_failed_task_ends_tapio_with_a_failure_status() {
    if !privileged_or_skip("a_failed_task_ends_tapio_with_a_failure_status") {
        return;
    }
    for (fault, task, probe, why) in [
        (
            "reader:process",
            "reader",
            Some("process"),
            "panicked: TAPIO_TEST_FAULT",
        ),
        // Not a panic: the ring buffer's read returns an error, and the
        // reader task ends with it.
        (
            "ringbuf:process",
            "reader",
            Some("process"),
            "TAPIO_TEST_FAULT: reading the ring buffer failed",
        ),
        (
            "producer",
            "exporter.metrics",
            None,
            "panicked: TAPIO_TEST_FAULT",
        ),
    ] {
        let rx = Receiver::start();
        let yaml = format!(
            "exporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 300ms }}\nprobes:\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n",
            rx.grpc_endpoint()
        );
        let mut t = Tapio::start(BIN, &yaml, &[("TAPIO_TEST_FAULT", fault)]);
        // The reader needs a record to choke on.
        for _ in 0..3 {
            let _ = Command::new("/bin/true").status();
        }
        let status = t
            .wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{fault}: tapio kept running:\n{}", t.stderr()));
        let err = t.stderr();
        assert_eq!(status.code(), Some(1), "{fault}: {status}\n{err}");
        let name = probe.map_or(task.to_string(), |p| format!("{task}:{p}"));
        assert!(
            err.contains(&format!("task failed: {why}")) && err.contains(&name),
            "{fault}: no task failure logged:\n{err}"
        );
        assert!(
            err.contains(&format!("tapio: {name} failed: {why}")),
            "{fault}: the exit error names the task:\n{err}"
        );
        let failed = rx
            .log_records()
            .into_iter()
            .find(|(_, r)| r.event_name == "tapio.task.failed");
        let (_, rec) = failed.unwrap_or_else(|| panic!("{fault}: no tapio.task.failed record"));
        assert_eq!(
            str_attr(&rec.attributes, "tapio.task").as_deref(),
            Some(task)
        );
        assert_eq!(str_attr(&rec.attributes, "tapio.probe").as_deref(), probe);
        if let Some(p) = probe {
            let last = rx
                .metrics()
                .into_iter()
                .filter(|m| m.name == "tapio.probe.attached")
                .filter_map(|m| point_value(&m, &[("tapio.probe", p)]))
                .next_back();
            assert_eq!(
                last,
                Some(0),
                "{fault}: the last export says the probe is down"
            );
        }
    }
}
