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
    // many.tapio.test: 20 addresses, an answer of ~360 bytes, too long for
    // the kernel's small record (TAPIO_DNS_PAYLOAD_SMALL): the full one.
    let many: Vec<String> = (100..120).map(|i| format!("198.18.0.{i}")).collect();
    let many_records: Vec<String> = many
        .iter()
        .map(|a| format!("--host-record=many.tapio.test,{a}"))
        .collect();
    let mut records = vec![
        "--local=/tapio.test/",
        "--host-record=www.tapio.test,198.18.0.10,2001:db8::10",
        "--cname=alias.tapio.test,www.tapio.test",
    ];
    records.extend(many_records.iter().map(String::as_str));
    let _dnsmasq = Dnsmasq::start(&pair.b, "198.18.0.2,2001:db8::2", &records);
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

    // A long answer: every address, from the full-size record.
    let (pid, out, _) = dig(&pair, &["@198.18.0.2", "many.tapio.test", "A"]);
    assert!(out.contains("198.18.0.119"), "{out}");
    let s = wait_span(&rx, "many A", |s| {
        int_attr(&s.attributes, "process.pid") == Some(pid)
    });
    // probes.dns.max_answers (16 by default) are kept: ~290 bytes in.
    let got = strings(&s, "dns.answers");
    assert_eq!(got.len(), 16, "{got:?}");
    assert!(got.iter().all(|a| many.contains(a)), "{got:?}");

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

/// Every point of the last export of `name`: (attributes as key=value, value).
fn points(rx: &Receiver, name: &str) -> Vec<(Vec<String>, i64)> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
    let Some(m) = rx.metrics().into_iter().rfind(|m| m.name == name) else {
        return Vec::new();
    };
    let Some(Data::Sum(s)) = m.data else {
        return Vec::new();
    };
    s.data_points
        .iter()
        .map(|p| {
            let mut a: Vec<String> = p
                .attributes
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        str_attr(std::slice::from_ref(kv), &kv.key).unwrap_or_default()
                    )
                })
                .collect();
            a.sort();
            let v = match p.value {
                Some(number_data_point::Value::AsInt(i)) => i,
                _ => -1,
            };
            (a, v)
        })
        .collect()
}

/// A TLS client (python3) that says one line and holds the connection.
fn python_tls(port: u16, sni: &str) -> std::process::Child {
    let script = format!(
        "{}/../integration/tests/tc_client.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = std::process::Command::new(tapio_integration::python3())
        .arg("-u")
        .arg(script)
        .args(["tls", "127.0.0.1", &port.to_string(), sni])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    // Its report line comes after the TLS exchange.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(!line.is_empty(), "TLS client to {port} failed");
    c
}

#[test]
fn encrypted_dns_connections_are_counted_per_process() {
    if !privileged_or_skip("encrypted_dns_connections_are_counted_per_process") {
        return;
    }
    const DOH_PORT: u16 = 44353;
    let rx = Receiver::start();
    let yaml = format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns:\n    encrypted:\n      dot_ports: [853]\n      doh_ports: [{DOH_PORT}]\n      doh_resolvers: [doh.tapio.test]\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);

    // TLS servers on loopback: the DoT port, and a DoH resolver's port.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout {d}/k.pem -out {d}/c.pem -days 1 -subj /CN=doh.tapio.test 2>/dev/null"
    ));
    let server = |port: u16| {
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-rev", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "-cert",
                &format!("{d}/c.pem"),
                "-key",
                &format!("{d}/k.pem"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl")
    };
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut procs = Kill(vec![server(853), server(DOH_PORT)]);
    for port in [853, DOH_PORT] {
        let end = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "TLS server on {port} did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // First plain TLS to the DoH port under another name: not DNS.
    procs.0.push(python_tls(DOH_PORT, "www.tapio.test"));
    // DoH from openssl, with the configured name.
    let st = std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{DOH_PORT}"))
        .args(["-servername", "doh.tapio.test"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl s_client failed");
    // DoT from python3.
    procs.0.push(python_tls(853, "dot.tapio.test"));

    const NAME: &str = "tapio.dns.encrypted.connections";
    rx.wait_for_counter(
        NAME,
        &[
            ("network.protocol.name", "dot"),
            ("process.executable.name", "python3"),
        ],
        WAIT,
        |v| v == 1,
    );
    rx.wait_for_counter(
        NAME,
        &[
            ("network.protocol.name", "doh"),
            ("process.executable.name", "openssl"),
        ],
        WAIT,
        |v| v == 1,
    );
    // The plain TLS connection went first: had it been counted, it would
    // be in this export. Exactly the two connections, one each.
    let got = points(&rx, NAME);
    let mut total = 0;
    for (attrs, v) in &got {
        assert!(
            !attrs.contains(&"network.protocol.name=doh".to_string())
                || attrs.contains(&"process.executable.name=openssl".to_string()),
            "a non-DoH connection was counted: {got:?}"
        );
        total += v;
    }
    assert_eq!(total, 2, "{got:?}");
    drop(procs);
    t.terminate();
}
