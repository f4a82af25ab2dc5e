use super::*;
use std::path::PathBuf;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[test]
fn default_config_round_trips() {
    let text = serde_yaml_ng::to_string(&Config::default()).unwrap();
    assert_eq!(parse(&text).unwrap(), Config::default());
}

#[test]
fn empty_file_is_default() {
    assert_eq!(parse("# nothing\n\n").unwrap(), Config::default());
}

#[test]
fn good_file_parses() {
    let text = "probes:\n  process:\n    ring_buffer_size: 4MiB\n    fork: false\nexporters:\n  otlp:\n    endpoint: http://127.0.0.1:4317\n    compression: gzip\n    timeout: 3s\n    retry_on_failure: { initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 10s }\nresource:\n  attributes: { deployment.environment: prod, replicas: 3 }\n";
    let c = parse(text).unwrap();
    assert_eq!(c.probes.process.ring_buffer_size.0, 4 << 20);
    assert!(!c.probes.process.fork);
    let o = c.exporters.otlp.unwrap();
    assert_eq!(o.compression, Some(Compression::Gzip));
    assert_eq!(o.timeout, Some(std::time::Duration::from_secs(3)));
    assert_eq!(
        c.resource.attributes.get("replicas"),
        Some(&AttrValue::Int(3))
    );
}

/// A collector's Unix socket is a gRPC endpoint like any other.
#[test]
fn unix_socket_endpoint_parses() {
    let c = parse("exporters:\n  otlp:\n    endpoint: unix:///run/otelcol/otlp.sock\n").unwrap();
    let ep = c.exporters.otlp.unwrap().endpoint.unwrap();
    assert_eq!(super::unix_socket_path(&ep), Some("/run/otelcol/otlp.sock"));
    assert_eq!(super::unix_socket_path("unix:///"), None);
    assert_eq!(super::unix_socket_path("http://localhost:4317"), None);
}

/// Every `testdata/config-*.yaml` is invalid; its `# expect:` lines are the
/// exact errors (`path (line N): message` prefixes) `parse` must report, and
/// nothing else.
#[test]
fn every_bad_case_reports_its_exact_errors() {
    let mut seen = 0;
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("config-") || !name.ends_with(".yaml") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");
        let errs = match parse(&text) {
            Ok(_) => panic!("{name} parsed but is meant to be invalid"),
            Err(e) => e.0,
        };
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), expected.len(), "{name}: got {got:#?}");
        for (g, want) in got.iter().zip(&expected) {
            assert!(
                g.starts_with(want),
                "{name}: got `{g}`, want prefix `{want}`"
            );
        }
    }
    assert!(seen >= 5, "only {seen} bad-case fixtures found");
}

/// Every key of the configuration model appears in the README's
/// configuration reference, so the reference cannot fall behind the model.
#[test]
fn readme_documents_every_config_key() {
    fn keys(v: &serde_yaml_ng::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(m) = v.as_mapping() {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                out.push(k.to_string());
                keys(v, &format!("{prefix}{k}."), out);
            }
        }
    }
    let mut cfg = Config::default();
    // Optional sections appear only when set; set them to list their keys.
    cfg.exporters.otlp = Some(OtlpExporter {
        endpoint: Some("http://x:1".into()),
        compression: Some(Compression::Gzip),
        timeout: Some(std::time::Duration::from_secs(1)),
        tls: TlsConfig {
            ca_file: Some("a".into()),
            cert_file: Some("b".into()),
            key_file: Some("c".into()),
            server_name: Some("d".into()),
        },
        ..Default::default()
    });
    cfg.exporters.stdout = Some(StdoutExporter {
        queue_size: Some(1),
    });
    cfg.pipeline.logs.schedule_delay = Some(std::time::Duration::from_secs(1));
    cfg.pipeline.logs.max_export_batch_size = Some(1);
    cfg.pipeline.metrics.export_interval = Some(std::time::Duration::from_secs(1));
    cfg.pipeline.shutdown_timeout = Some(std::time::Duration::from_secs(1));
    cfg.pipeline.worker_threads = Some(1);
    cfg.probes.process.enabled = Some(true);
    cfg.probes.scope.cgroup = Some("kubepods.slice".into());
    cfg.exporters.prometheus = Some(PrometheusExporter::default());
    cfg.extensions.opamp = Some(OpampExtension {
        server: OpampServer {
            http: Some(OpampHttp {
                endpoint: Some("http://x:1".into()),
                ..Default::default()
            }),
        },
        instance_uid: Some("u".into()),
        ..Default::default()
    });
    let v = serde_yaml_ng::to_value(&cfg).unwrap();
    let mut all = Vec::new();
    keys(&v, "", &mut all);
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("## Configuration")
        .expect("README has a Configuration section");
    let section = &readme[start..];
    for k in all {
        assert!(
            section.contains(&format!("{k}:")),
            "README's configuration reference lacks `{k}:`"
        );
    }
}

/// `probes.scope.cgroup` names a cgroup that must exist: a missing one is
/// an error at its key; this process's own cgroup, written relative to the
/// cgroup2 mount, is accepted.
#[test]
fn scope_cgroup_must_exist_and_may_be_relative() {
    let e = parse("probes:\n  scope:\n    cgroup: tapio-no-such-cgroup/x\n")
        .expect_err("a missing cgroup is an error");
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].path, "probes.scope.cgroup", "{e}");
    assert_eq!(e.0[0].line, Some(3), "{e}");
    let Some(own) = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .filter(|o| o != "/" && crate::probes::cgroup2_root().is_some())
    else {
        eprintln!("skipped the relative case: no cgroup v2 here");
        return;
    };
    let rel = own.trim_start_matches('/');
    let text = format!("probes:\n  scope:\n    cgroup: \"{rel}\"\n");
    let c = parse(&text).expect("own cgroup, relative, is valid");
    assert_eq!(c.probes.scope.cgroup.as_deref(), Some(rel));
    let scope = crate::probes::scope::resolve_here(rel).expect("resolves");
    assert_eq!(
        scope.level as usize,
        rel.split('/').filter(|c| !c.is_empty()).count()
    );
}
