//! End to end through a real collector: tapio (process, network and dns
//! probes) → rotel (OTLP over gRPC, then over HTTP) → an OTLP receiver.
//! Logs, spans and metrics of all three probes must arrive, each with
//! Tapio's resource attributes.

use std::{
    net::{TcpListener, TcpStream},
    time::{Duration, Instant},
};
use tapio_integration::{
    int_attr, point_value, privileged_or_skip, str_attr, Dnsmasq, NsPair, Receiver, Rotel, Tapio,
};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn three_probes_through_rotel_over_grpc_and_http() {
    if !privileged_or_skip("three_probes_through_rotel_over_grpc_and_http") {
        return;
    }
    let pair = NsPair::new(&format!("e{}", std::process::id() % 100_000));
    let _dnsmasq = Dnsmasq::start(
        &pair.b,
        "198.18.0.2",
        &["--host-record=e2e.tapio.test,198.18.0.10"],
    );
    let dig = || {
        let out = pair
            .a
            .command("dig")
            .args([
                "+short",
                "+tries=1",
                "+time=1",
                "@198.18.0.2",
                "e2e.tapio.test",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("198.18.0.10")
    };
    let end = Instant::now() + WAIT;
    while !dig() {
        assert!(Instant::now() < end, "dnsmasq did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    let rx = Receiver::start();
    let rotel = Rotel::start_forwarding_to(&rx.grpc_endpoint());
    for (exporter, ep) in [
        ("otlp", format!("http://{}", rotel.grpc_addr)),
        ("otlphttp", format!("http://{}", rotel.http_addr)),
    ] {
        let yaml = format!(
            "exporters:\n  {exporter}:\n    endpoint: {ep}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  traces: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 300ms }}\nresource:\n  attributes:\n    deployment.environment: e2e-{exporter}\n"
        );
        let t = Tapio::start(BIN, &yaml, &[]);
        let env = format!("e2e-{exporter}");

        // process: a real exec; network: a real connect; dns: a real lookup.
        let mut sh = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let sh_pid = i64::from(sh.id());
        sh.wait().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let client_port = i64::from(c.local_addr().unwrap().port());
        assert!(dig());

        let ours = |attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            str_attr(attrs, "deployment.environment").as_deref() == Some(env.as_str())
                && str_attr(attrs, "service.name").as_deref() == Some("tapio")
                && str_attr(attrs, "host.name").is_some()
        };
        rx.wait_for_logs("process.exit through rotel", WAIT, |logs| {
            logs.iter().any(|(res, r)| {
                ours(&res.attributes)
                    && r.event_name == "process.exit"
                    && int_attr(&r.attributes, "process.pid") == Some(sh_pid)
            })
        });
        let end = Instant::now() + WAIT;
        loop {
            let got = rx.received();
            let spans: Vec<_> = got
                .traces
                .iter()
                .flat_map(|r| r.resource_spans.iter())
                .filter(|rs| rs.resource.as_ref().is_some_and(|r| ours(&r.attributes)))
                .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
                .collect();
            let connect = spans.iter().any(|s| {
                s.name == "tcp.connect"
                    && int_attr(&s.attributes, "client.port") == Some(client_port)
            });
            let dns = spans.iter().any(|s| {
                s.name == "dns.query"
                    && str_attr(&s.attributes, "dns.question.name").as_deref()
                        == Some("e2e.tapio.test")
            });
            let metrics: Vec<_> = got
                .metrics
                .iter()
                .flat_map(|r| r.resource_metrics.iter())
                .filter(|rm| rm.resource.as_ref().is_some_and(|r| ours(&r.attributes)))
                .flat_map(|rm| rm.scope_metrics.iter().flat_map(|sm| sm.metrics.iter()))
                .collect();
            let received = |probe: &str| {
                metrics.iter().any(|m| {
                    m.name == "tapio.events.received"
                        && point_value(m, &[("tapio.probe", probe)]).is_some_and(|v| v > 0)
                })
            };
            let histograms = ["tapio.tcp.connect.duration", "dns.lookup.duration"]
                .iter()
                .all(|n| metrics.iter().any(|m| m.name == *n));
            if connect
                && dns
                && received("process")
                && received("network")
                && received("dns")
                && histograms
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "{exporter}: connect span {connect}, dns span {dns}, received metrics {}/{}/{}, histograms {histograms}",
                received("process"),
                received("network"),
                received("dns")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(c);
        t.terminate();
    }
}
