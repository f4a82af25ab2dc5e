//! The etcd probe against a real etcd (Debian's `etcd-server`, on
//! loopback, in a data directory of the test's own): Tapio's WAL sync
//! histogram must count what etcd's own `etcd_disk_wal_fsync_duration_seconds`
//! counts over the same run, and its request histogram the calls etcd's
//! `grpc_server_handling_seconds` counts. Needs root; under CI=true it fails
//! rather than skips without.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tapio_integration::{privileged_or_skip, str_attr, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
/// Generous: the guests run under software emulation.
const WAIT: Duration = Duration::from_secs(90);
const PUTS: usize = 40;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn which(bin: &str) -> Option<String> {
    std::env::var("PATH").ok()?.split(':').find_map(|d| {
        let p = format!("{d}/{bin}");
        std::path::Path::new(&p).exists().then_some(p)
    })
}

/// An etcd of the test's own, killed on drop.
struct Etcd {
    child: Child,
    client: String,
    metrics: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// On client port `c`, with the per-call gRPC histograms
    /// (`--metrics=extensive`).
    fn start(exe: &str, c: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, m) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let child = Command::new(exe)
            .arg("--name=tapio-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=tapio-test={peer}"))
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{m}"))
            .arg("--metrics=extensive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        Self {
            child,
            client,
            metrics: m,
            _dir: dir,
        }
    }

    /// etcd's `/metrics` text, if it answers.
    fn scrape(&self) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("200 OK").then_some(body)
    }

    /// (count, sum seconds) of etcd's own WAL fsync histogram.
    fn wal_fsync(&self) -> (u64, f64) {
        let body = self.scrape().expect("etcd /metrics");
        let get = |name: &str| -> f64 {
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in etcd's metrics"))
        };
        (
            get("etcd_disk_wal_fsync_duration_seconds_count ") as u64,
            get("etcd_disk_wal_fsync_duration_seconds_sum "),
        )
    }

    /// (count, sum seconds) of etcd's own handling-time histograms of
    /// unary gRPC calls, over all methods.
    fn unary_calls(&self) -> (u64, f64) {
        let body = self.scrape().expect("etcd /metrics");
        let mut got = (0, 0.0);
        for l in body.lines().filter(|l| l.contains("grpc_type=\"unary\"")) {
            let v = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            match (l.split('{').next(), v) {
                (Some("grpc_server_handling_seconds_count"), Some(v)) => got.0 += v as u64,
                (Some("grpc_server_handling_seconds_sum"), Some(v)) => got.1 += v,
                _ => {}
            }
        }
        got
    }

    fn ctl(&self, args: &[&str]) {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client))
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last exported (count, sum) of one of Tapio's histograms, and how
/// many exports of it arrived.
fn tapio_hist(rx: &Receiver, name: &str) -> (usize, Option<(u64, f64)>) {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let ms: Vec<_> = rx
        .metrics()
        .into_iter()
        .filter(|m| m.name == name)
        .collect();
    let last = ms.last().and_then(|m| match &m.data {
        Some(Data::Histogram(h)) => h.data_points.first().map(|p| (p.count, p.sum())),
        _ => None,
    });
    (ms.len(), last)
}

const WAL: &str = "tapio.etcd.wal_fsync.duration";
const REQ: &str = "tapio.etcd.request.duration";

/// etcdctl puts and gets on a fresh single-member etcd: every WAL sync etcd
/// times itself, Tapio counts from the kernel. Tapio's count is read from
/// an export that began after etcd's count was first read, and etcd's is
/// read again once that export arrived, so (each WAL sync being one
/// fdatasync that etcd times right after it returns) etcd's first count ≤
/// Tapio's + 1 (etcd also times the directory fsync at WAL creation) and
/// Tapio's ≤ its second count + 1. The run makes at least PUTS syncs, and
/// etcd's bbolt database, synced just as often, is not counted (it would
/// double the count). With a zero span threshold every counted sync is
/// also an `etcd.wal_fsync` span on a `*.wal` file of process `etcd`.
///
/// The same run's requests: Tapio follows every connection to etcd's
/// client port from its accept (Tapio is up before etcd starts), so its
/// request count equals the unary calls etcd's own
/// `grpc_server_handling_seconds` counted (the 2×PUTS etcdctl calls plus
/// whatever etcd's own gateway asked, both sides count those), read after
/// the calls ended. Each of Tapio's times runs from the read that brought
/// the request to the write that ended the answer, which encloses etcd's
/// handler time, and lies inside the etcdctl process that made the call.
#[test]
fn wal_fsyncs_and_requests_match_etcds_own_histograms() {
    if !privileged_or_skip("wal_fsyncs_and_requests_match_etcds_own_histograms") {
        return;
    }
    let Some(exe) = which("etcd") else {
        panic!("etcd is not installed (apt-get install etcd-server etcd-client; `make deps`)");
    };
    let rx = Receiver::start();
    let client_port = free_port();
    let yaml = format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  kernel: {{ enabled: false }}\n  etcd: {{ enabled: true, slow_threshold: 0s, wakeup_interval: 0s, client_ports: [{client_port}] }}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  metrics: {{ export_interval: 300ms }}\n  traces: {{ schedule_delay: 100ms }}\n",
        rx.grpc_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);
    let etcd = Etcd::start(&exe, client_port);
    let end = Instant::now() + WAIT;
    while etcd.scrape().is_none() {
        assert!(Instant::now() < end, "etcd did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (start_count, _) = etcd.wal_fsync();
    let (calls_before, _) = etcd.unary_calls();
    let ctl_start = Instant::now();
    for i in 0..PUTS {
        etcd.ctl(&["put", &format!("k{i}"), &format!("v{i}")]);
        etcd.ctl(&["get", &format!("k{i}")]);
    }
    let ctl_time = ctl_start.elapsed().as_secs_f64();
    let (before, _) = etcd.wal_fsync();
    assert!(
        before >= start_count + PUTS as u64,
        "{PUTS} puts made only {} WAL syncs",
        before - start_count
    );
    let (calls, etcd_req_sum) = etcd.unary_calls();
    assert!(
        calls >= calls_before + 2 * PUTS as u64,
        "etcd counted {calls_before} then {calls} unary calls for {} etcdctl calls",
        2 * PUTS
    );
    // The calls take most of WAIT under emulation: the exports get their
    // own bound.
    let end = Instant::now() + WAIT;
    let (n0, _) = tapio_hist(&rx, WAL);
    while tapio_hist(&rx, WAL).0 < n0 + 2 {
        assert!(
            Instant::now() < end,
            "no WAL histogram export; tapio stderr:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, got) = tapio_hist(&rx, WAL);
    let (count, sum) = got.expect("histogram point");
    let (after, etcd_sum) = etcd.wal_fsync();
    eprintln!(
        "etcd counted {before}..{after} WAL syncs ({etcd_sum:.4} s), tapio {count} ({sum:.4} s)"
    );
    // etcd also times one directory fsync when it creates its WAL (the
    // parent of member/wal, after renaming wal.tmp; strace shows it), which
    // is not a *.wal file: its count is one ahead of the kernel's.
    assert!(
        before <= count + 1 && count <= after + 1,
        "tapio counted {count} WAL syncs, etcd {before} then {after}; tapio stderr:\n{}",
        t.stderr()
    );
    // The kernel's time is inside etcd's (which adds Go's scheduling).
    assert!(
        sum > 0.0 && sum <= etcd_sum * 1.05 + 0.001,
        "tapio {sum} s, etcd {etcd_sum} s"
    );
    let spans = rx.spans();
    let wal: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "etcd.wal_fsync")
        .collect();
    assert!(!wal.is_empty(), "no etcd.wal_fsync span");
    for s in &wal {
        assert!(
            str_attr(&s.attributes, "file.name").is_some_and(|f| f.ends_with(".wal")),
            "{s:?}"
        );
        assert_eq!(
            str_attr(&s.attributes, "process.executable.name").as_deref(),
            Some("etcd")
        );
    }

    // Requests: the export read above began after the last call ended.
    let (_, got) = tapio_hist(&rx, REQ);
    let (req_count, req_sum) = got.unwrap_or_else(|| {
        panic!(
            "no {REQ} export (etcd counted {calls} calls); tapio stderr:\n{}",
            t.stderr()
        )
    });
    let (calls_after, _) = etcd.unary_calls();
    eprintln!(
        "etcd counted {calls}..{calls_after} unary calls ({etcd_req_sum:.4} s handling), tapio {req_count} requests ({req_sum:.4} s); {} etcdctl runs took {ctl_time:.3} s",
        2 * PUTS
    );
    assert_eq!(
        (req_count, calls_after),
        (calls, calls),
        "tapio counted {req_count} requests, etcd {calls} then {calls_after} unary calls; tapio stderr:\n{}",
        t.stderr()
    );
    assert!(
        req_sum >= etcd_req_sum && req_sum <= ctl_time,
        "tapio's request time {req_sum} s is not between etcd's handling time {etcd_req_sum} s and the etcdctl runs' {ctl_time} s"
    );
    drop(etcd);
    t.terminate();
}
