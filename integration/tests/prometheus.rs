//! `exporters.prometheus`: Debian's real `prometheus` scrapes Tapio's
//! `/metrics` on loopback, and its HTTP API then has Tapio's series, with
//! values and with the names the dashboards query.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tapio::otel::names::METRICS;
use tapio::otel::prometheus::series_names;
use tapio_integration::{privileged_or_skip, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`; the body, if the answer was 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // HTTP/1.0 or 1.1, as the server answers a 1.0 request.
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn debian_prometheus_scrapes_tapio() {
    if !privileged_or_skip("prometheus::debian_prometheus_scrapes_tapio") {
        return;
    }
    let Ok(prom) = which("prometheus") else {
        panic!("prometheus is not installed (make deps installs Debian's package)");
    };
    let metrics_port = free_port();
    let t = Tapio::start(
        BIN,
        &format!(
            "exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{metrics_port}\npipeline:\n  metrics: {{ export_interval: 1h }}\nprobes:\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n"
        ),
        &[],
    );
    for _ in 0..5 {
        Command::new("true").status().unwrap();
    }
    let text = get(metrics_port, "/metrics").expect("GET /metrics");
    assert!(
        text.contains("# TYPE tapio_events_received_total counter"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tapio\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let api_port = free_port();
    let _prom = Prometheus(
        Command::new(prom)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{api_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // Wait for a scrape that saw the process probe count events.
    let query = "/api/v1/query?query=tapio_events_received_total%7Btapio_probe%3D%22process%22%7D";
    let end = Instant::now() + WAIT;
    let value = loop {
        let v = get(api_port, query)
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|j| {
                j["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
            });
        if let Some(v) = v.filter(|v| *v > 0.0) {
            break v;
        }
        assert!(
            Instant::now() < end,
            "Prometheus has no tapio_events_received_total > 0; last answer {:?}",
            get(api_port, query)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(value >= 5.0, "at least the five `true` execs: {value}");

    // Every series Prometheus stored from Tapio is one the names table
    // (and so the dashboards) knows, spelled the collector's way.
    let names = get(
        api_port,
        "/api/v1/label/__name__/values?match%5B%5D=%7Bjob%3D%22tapio%22%7D",
    )
    .expect("label values");
    let names: serde_json::Value = serde_json::from_str(&names).unwrap();
    let known: Vec<String> = METRICS.iter().flat_map(series_names).collect();
    let scrape_own = ["up", "target_info"];
    let got: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|n| !n.starts_with("scrape_") && !scrape_own.contains(n))
        .collect();
    assert!(
        got.contains(&"tapio_pipeline_latency_seconds_bucket"),
        "{got:?}"
    );
    for n in &got {
        assert!(
            known.iter().any(|k| k == n),
            "Prometheus has unknown series {n}"
        );
    }
    t.terminate();
}

fn which(cmd: &str) -> Result<String, ()> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| format!("{d}/{cmd}"))
        .find(|p| std::path::Path::new(p).exists())
        .ok_or(())
}

/// Slow clients cannot hold `/metrics`: more connections than the cap,
/// each trickling its request headers a byte at a time and never ending
/// them; a normal scrape still gets its answer (it waits, bounded, for a
/// slot), and the server closes every slow connection once its header
/// timeout passes (the client sees EOF or a reset while still sending).
#[test]
fn slow_clients_cannot_hold_the_metrics_endpoint() {
    if !privileged_or_skip("prometheus::slow_clients_cannot_hold_the_metrics_endpoint") {
        return;
    }
    let port = free_port();
    let t = Tapio::start(
        BIN,
        &format!(
            "exporters:\n  prometheus:\n    endpoint: 127.0.0.1:{port}\npipeline:\n  metrics: {{ export_interval: 1h }}\nprobes:\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n"
        ),
        &[],
    );
    let slow_count = tapio::export::prometheus::MAX_CONNECTIONS + 4;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut slow = Vec::new();
    for i in 0..slow_count {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let stop = stop.clone();
        // One byte every 200 ms for at most a minute, until the server
        // closes or the test ends.
        std::thread::spawn(move || {
            for _ in 0..300 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || w.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        slow.push((i, s));
    }

    // A normal scrape succeeds; the bound is generous (it may wait for a
    // slot while the slow ones hold all of them).
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for the scrape");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("the scrape is answered");
    assert!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    assert!(text.contains("# TYPE tapio_events_received_total counter"));

    // Every slow connection is closed by the server.
    for (i, mut s) in slow {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("slow connection {i} still open after 60 s: {e}"),
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.terminate();
}
