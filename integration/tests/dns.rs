//! The dns probe, end to end: dnsmasq in one test namespace, dig in the
//! other (198.18.0.0/15 and 2001:db8::/32 only), spans and histograms at a
//! real OTLP receiver.

use opentelemetry_proto::tonic::{
    common::v1::any_value::Value,
    trace::v1::{status::StatusCode, Span},
};
use std::{
    process::Stdio,
    time::{Duration, Instant},
};
use tapio_integration::{
    int_attr, privileged_or_skip, sh, str_attr, Dnsmasq, NsPair, Receiver, Tapio,
};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(30);

fn wait_span(rx: &Receiver, what: &str, pred: impl Fn(&Span) -> bool) -> Span {
    rx.wait_for_span(what, WAIT, |s| s.name == "dns.query" && pred(s))
}

/// The string array attribute `key` (`dns.answers`: the addresses;
/// `tapio.dns.answers`: every record as `name TYPE data`).
fn strings(s: &Span, key: &str) -> Vec<String> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::ArrayValue(arr) => Some(
                arr.values
                    .iter()
                    .filter_map(|v| match v.value.as_ref()? {
                        Value::StringValue(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// dig in namespace `a`; returns (pid, answer lines, "Query time" in ms).
fn dig(pair: &NsPair, args: &[&str]) -> (i64, String, Option<u64>) {
    let child = pair
        .a
        .command("dig")
        .args(["+tries=1", "+time=2"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("dig (apt-get install bind9-dnsutils)");
    let pid = i64::from(child.id());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ms = text
        .lines()
        .find_map(|l| l.strip_prefix(";; Query time: "))
        .and_then(|t| t.split_whitespace().next()?.parse().ok());
    (pid, text, ms)
}

#[test]
fn dns_lookups_become_spans_with_answers_rcodes_and_timeouts() {
    if !privileged_or_skip("dns_lookups_become_spans_with_answers_rcodes_and_timeouts") {
        return;
    }
    let pair = NsPair::new(&format!("d{}", std::process::id() % 100_000));
    sh(&format!(
        "ip -n {} neigh add 198.18.0.4 lladdr 02:00:00:00:00:99 dev {} nud permanent",
        pair.a.name,
        pair.a_dev()
    ));
    let _dnsmasq = Dnsmasq::start(
        &pair.b,
        "198.18.0.2,2001:db8::2",
        &[
            "--local=/tapio.test/",
            "--host-record=www.tapio.test,198.18.0.10,2001:db8::10",
            "--cname=alias.tapio.test,www.tapio.test",
        ],
    );
    // dnsmasq answers once it is listening.
    let end = Instant::now() + WAIT;
    while !dig(&pair, &["+short", "@198.18.0.2", "www.tapio.test"])
        .1
        .contains("198.18.0.10")
    {
        assert!(Instant::now() < end, "dnsmasq did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    let rx = Receiver::start();
    let yaml = format!(
        "probes:\n  dns:\n    timeout: 1s\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  traces: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);

    // A CNAME chain over UDP/IPv4: name compression in the answers.
    let (pid, out, ms) = dig(&pair, &["@198.18.0.2", "alias.tapio.test", "A"]);
    assert!(out.contains("198.18.0.10"), "{out}");
    let s = wait_span(&rx, "alias A", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    let a = &s.attributes;
    assert_eq!(
        str_attr(a, "dns.question.name").as_deref(),
        Some("alias.tapio.test")
    );
    assert_eq!(str_attr(a, "tapio.dns.question.type").as_deref(), Some("A"));
    assert_eq!(
        str_attr(a, "tapio.dns.response.code").as_deref(),
        Some("NOERROR")
    );
    assert_eq!(str_attr(a, "network.transport").as_deref(), Some("udp"));
    assert_eq!(str_attr(a, "network.type").as_deref(), Some("ipv4"));
    assert_eq!(str_attr(a, "server.address").as_deref(), Some("198.18.0.2"));
    assert_eq!(int_attr(a, "server.port"), Some(53));
    assert_eq!(
        str_attr(a, "process.executable.name").as_deref(),
        Some("dig")
    );
    assert_eq!(s.kind, 3);
    // The CNAME chain: semconv's dns.answers holds the address only,
    // tapio.dns.answers every record.
    assert_eq!(strings(&s, "dns.answers"), ["198.18.0.10"]);
    assert_eq!(
        strings(&s, "tapio.dns.answers"),
        [
            "alias.tapio.test CNAME www.tapio.test",
            "www.tapio.test A 198.18.0.10"
        ]
    );
    let took_ms = (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
    if let Some(ms) = ms {
        // The kernel sees less than dig does (no userspace on either side).
        assert!(took_ms <= ms as f64 + 2.0, "span {took_ms} ms, dig {ms} ms");
    }

    // AAAA over IPv6.
    let (pid, out, _) = dig(&pair, &["@2001:db8::2", "www.tapio.test", "AAAA"]);
    assert!(out.contains("2001:db8::10"), "{out}");
    let s = wait_span(&rx, "AAAA", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    assert_eq!(
        str_attr(&s.attributes, "tapio.dns.question.type").as_deref(),
        Some("AAAA")
    );
    assert_eq!(
        str_attr(&s.attributes, "network.type").as_deref(),
        Some("ipv6")
    );
    assert_eq!(
        str_attr(&s.attributes, "server.address").as_deref(),
        Some("2001:db8::2")
    );
    assert_eq!(strings(&s, "dns.answers"), ["2001:db8::10"]);
    assert_eq!(
        strings(&s, "tapio.dns.answers"),
        ["www.tapio.test AAAA 2001:db8::10"]
    );

    // A CNAME chain to an AAAA record.
    let (pid, out, _) = dig(&pair, &["@198.18.0.2", "alias.tapio.test", "AAAA"]);
    assert!(out.contains("2001:db8::10"), "{out}");
    let s = wait_span(&rx, "alias AAAA", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    assert_eq!(strings(&s, "dns.answers"), ["2001:db8::10"]);
    assert_eq!(
        strings(&s, "tapio.dns.answers"),
        [
            "alias.tapio.test CNAME www.tapio.test",
            "www.tapio.test AAAA 2001:db8::10"
        ]
    );

    // NXDOMAIN is an answer: error.type says so, the status is not ERROR.
    let (pid, out, _) = dig(&pair, &["@198.18.0.2", "nope.tapio.test", "A"]);
    assert!(out.contains("NXDOMAIN"), "{out}");
    let s = wait_span(&rx, "NXDOMAIN", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    assert_eq!(
        str_attr(&s.attributes, "tapio.dns.response.code").as_deref(),
        Some("NXDOMAIN")
    );
    assert_eq!(
        str_attr(&s.attributes, "error.type").as_deref(),
        Some("NXDOMAIN")
    );
    assert_ne!(s.status.as_ref().unwrap().code, StatusCode::Error as i32);

    // DNS over TCP: two queries on one connection (+keepopen), each its
    // own span, matched by transaction id behind the length prefixes.
    let (pid, out, _) = dig(
        &pair,
        &[
            "+tcp",
            "+keepopen",
            "@198.18.0.2",
            "www.tapio.test",
            "A",
            "alias.tapio.test",
            "A",
        ],
    );
    assert!(out.contains("198.18.0.10"), "{out}");
    for name in ["www.tapio.test", "alias.tapio.test"] {
        let s = wait_span(&rx, &format!("tcp {name}"), |s| {
            int_attr(&s.attributes, "process.pid") == Some(pid)
                && str_attr(&s.attributes, "dns.question.name").as_deref() == Some(name)
        });
        assert_eq!(
            str_attr(&s.attributes, "network.transport").as_deref(),
            Some("tcp")
        );
        assert_eq!(
            str_attr(&s.attributes, "tapio.dns.response.code").as_deref(),
            Some("NOERROR")
        );
        assert_eq!(strings(&s, "dns.answers"), ["198.18.0.10"]);
        assert!(
            strings(&s, "tapio.dns.answers").contains(&"www.tapio.test A 198.18.0.10".to_string()),
            "{:?}",
            strings(&s, "tapio.dns.answers")
        );
    }

    // No answer at all: a timeout span after the configured second.
    let (pid, _, _) = dig(&pair, &["@198.18.0.4", "www.tapio.test", "A"]);
    let s = wait_span(&rx, "timeout", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    assert_eq!(
        str_attr(&s.attributes, "error.type").as_deref(),
        Some("timeout")
    );
    assert_eq!(s.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(s.end_time_unix_nano - s.start_time_unix_nano, 1_000_000_000);

    // Every lookup is in the histogram.
    let end = Instant::now() + WAIT;
    loop {
        let have = |label: &str, key: &str| {
            rx.metrics().iter().any(|m| {
                m.name == "dns.lookup.duration"
                    && matches!(&m.data, Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Histogram(h))
                        if h.data_points.iter().any(|p| str_attr(&p.attributes, key).as_deref() == Some(label) && p.count >= 1))
            })
        };
        if have("NOERROR", "tapio.dns.response.code")
            && have("NXDOMAIN", "tapio.dns.response.code")
            && have("timeout", "error.type")
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "dns.lookup.duration lacks NOERROR/NXDOMAIN/timeout points"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.terminate();
}
