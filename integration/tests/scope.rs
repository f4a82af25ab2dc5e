//! `probes.scope`, end to end: with the scope set to a test cgroup, a
//! process inside it is recorded (exec, exit, TCP connect and close both
//! ways, a DNS lookup) and the same from a process outside it is not. The
//! outside run is followed by an inside marker run whose records are
//! waited for, so each probe's ring (in order) has been read past the
//! outside run's events when their absence is checked.

use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tapio::otel::names::attr;
use tapio_integration::{int_attr, privileged_or_skip, str_attr, Receiver, Tapio};

#[path = "support/cgroup.rs"]
mod cgroup;

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(30);

/// A DNS server on loopback that answers every query with an empty
/// NOERROR response, until dropped.
struct Responder {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                let mut r = buf[..n].to_vec();
                r[2] = 0x81; // QR, RD
                r[3] = 0x80; // RA, NOERROR
                let _ = sock.send_to(&r, from);
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A python script: connect to `extra` (a listener of the test's, 0: none),
/// connect to a listener of its own and accept, then look `name` up at the
/// responder. Prints its pid and its own listener's port.
fn script(dns_port: u16, name: &str, extra: u16) -> String {
    format!(
        r#"import os, socket, struct
out = [str(os.getpid())]
if {extra}:
    c = socket.create_connection(("127.0.0.1", {extra})); c.close()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
c = socket.create_connection(l.getsockname())
a, _ = l.accept()
out.append(str(l.getsockname()[1]))
c.close(); a.close(); l.close()
q = struct.pack(">HHHHHH", 0x5c0e, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in "{name}".split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(q, ("127.0.0.1", {dns_port}))
u.recvfrom(512)
print(" ".join(out))
"#
    )
}

/// (pid, own listener port) from a script's output.
fn parse(out: &str) -> (i64, i64) {
    let f: Vec<i64> = out
        .split_whitespace()
        .map(|v| v.parse().expect("pid and port"))
        .collect();
    assert_eq!(f.len(), 2, "script output {out:?}");
    (f[0], f[1])
}

fn log_named<'a>(logs: &'a [LogRecord], name: &str, pid: i64) -> Option<&'a LogRecord> {
    logs.iter()
        .find(|r| r.event_name == name && int_attr(&r.attributes, "process.pid") == Some(pid))
}

fn closes(logs: &[LogRecord], port: i64, dir: &str) -> usize {
    logs.iter()
        .filter(|r| {
            r.event_name == "network.connection.close"
                && int_attr(&r.attributes, attr::SERVER_PORT) == Some(port)
                && str_attr(&r.attributes, attr::TAPIO_CONNECTION_DIRECTION).as_deref() == Some(dir)
        })
        .count()
}

fn connects(spans: &[Span], port: i64) -> usize {
    spans
        .iter()
        .filter(|s| {
            s.name == "tcp.connect" && int_attr(&s.attributes, attr::SERVER_PORT) == Some(port)
        })
        .count()
}

fn lookups(spans: &[Span], name: &str) -> usize {
    spans
        .iter()
        .filter(|s| {
            s.name == "dns.query"
                && str_attr(&s.attributes, attr::DNS_QUESTION_NAME).as_deref() == Some(name)
        })
        .count()
}

/// Wait until one in-scope run's records are all in: exec and exit,
/// outbound and inbound on its own listener, outbound to `extra`, the
/// lookup.
fn wait_in_scope(rx: &Receiver, what: &str, pid: i64, own: i64, extra: i64, name: &str) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let logs: Vec<LogRecord> = rx.log_records().into_iter().map(|(_, r)| r).collect();
        let spans = rx.spans();
        let missing: Vec<&str> = [
            (log_named(&logs, "process.exec", pid).is_some(), "exec"),
            (log_named(&logs, "process.exit", pid).is_some(), "exit"),
            (connects(&spans, own) == 1, "connect to its own listener"),
            (closes(&logs, own, "outbound") == 1, "outbound close"),
            (closes(&logs, own, "inbound") == 1, "inbound close"),
            (extra == 0 || connects(&spans, extra) == 1, "connect out"),
            (
                extra == 0 || closes(&logs, extra, "outbound") == 1,
                "close out",
            ),
            (lookups(&spans, name) == 1, "dns lookup"),
        ]
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| w)
        .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{what}: timed out waiting for {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn only_the_scope_cgroup_is_recorded_exec_tcp_and_dns() {
    if !privileged_or_skip("only_the_scope_cgroup_is_recorded_exec_tcp_and_dns") {
        return;
    }
    let cg = cgroup::TestCgroup::at(format!("tapio-scope-{}", std::process::id()));
    let dns = Responder::start();
    // The test's own listener: outside the scope, so a connection an
    // in-scope process makes to it is recorded outbound only.
    let outside = TcpListener::bind("127.0.0.1:0").expect("listener");
    let outside_port = outside.local_addr().expect("addr").port();
    let accepter = std::thread::spawn(move || {
        for _ in 0..2 {
            let _ = outside.accept();
        }
    });
    let rx = Receiver::start();
    let yaml = format!(
        "probes:\n  scope:\n    cgroup: {}\n  process: {{ enabled: true }}\n  network: {{ enabled: true }}\n  dns: {{ enabled: true, ports: [{}], timeout: 2s }}\n  security: {{ enabled: false }}\n  xdp: {{ enabled: false }}\n  lsm: {{ enabled: false }}\n  kernel: {{ enabled: false }}\n  tc: {{ enabled: false }}\n  systemd: {{ enabled: false }}\n  etcd: {{ enabled: false }}\n  netns: {{ enabled: false }}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  traces: {{ schedule_delay: 100ms }}\n",
        cg.rel,
        dns.port,
        rx.grpc_endpoint()
    );
    let tapio = Tapio::start(BIN, &yaml, &[]);

    let id = std::process::id();
    let (in_name, out_name, mark_name) = (
        format!("in-{id}.scope.test"),
        format!("out-{id}.scope.test"),
        format!("marker-{id}.scope.test"),
    );
    // The interpreter itself: a pyenv shim would exec helpers in the scope.
    let python = cgroup::real_python();
    let py = python.to_str().expect("utf-8 path");
    let run_in =
        |name: &str, extra: u16| parse(&cg.run(py, &["-c", &script(dns.port, name, extra)]));
    let (in_pid, in_own) = run_in(&in_name, outside_port);
    wait_in_scope(
        &rx,
        "inside",
        in_pid,
        in_own,
        i64::from(outside_port),
        &in_name,
    );

    let out = Command::new(&python)
        .args(["-c", &script(dns.port, &out_name, outside_port)])
        .output()
        .expect("python3");
    assert!(out.status.success(), "outside script failed: {out:?}");
    let (out_pid, out_own) = parse(&String::from_utf8_lossy(&out.stdout));

    let (mark_pid, mark_own) = run_in(&mark_name, 0);
    wait_in_scope(&rx, "marker", mark_pid, mark_own, 0, &mark_name);

    let logs: Vec<LogRecord> = rx.log_records().into_iter().map(|(_, r)| r).collect();
    let spans = rx.spans();
    // Outside: nothing at all, though its records would come before the
    // marker's in every probe's ring.
    assert!(
        log_named(&logs, "process.exec", out_pid).is_none(),
        "outside exec recorded"
    );
    assert!(
        log_named(&logs, "process.exit", out_pid).is_none(),
        "outside exit recorded"
    );
    assert_eq!(connects(&spans, out_own), 0, "outside connect recorded");
    assert_eq!(
        closes(&logs, out_own, "outbound"),
        0,
        "outside close recorded"
    );
    assert_eq!(
        closes(&logs, out_own, "inbound"),
        0,
        "outside accept recorded"
    );
    assert_eq!(lookups(&spans, &out_name), 0, "outside lookup recorded");
    // The outside listener took two connections: the inside one recorded
    // outbound only (its accepted end belongs to the listener's cgroup).
    assert_eq!(connects(&spans, i64::from(outside_port)), 1);
    assert_eq!(closes(&logs, i64::from(outside_port), "outbound"), 1);
    assert_eq!(closes(&logs, i64::from(outside_port), "inbound"), 0);
    // And the test's own exec of python3 (outside) neither.
    assert!(
        logs.iter()
            .filter(|r| r.event_name == "process.exec")
            .all(|r| {
                let pid = int_attr(&r.attributes, "process.pid");
                pid == Some(in_pid) || pid == Some(mark_pid)
            }),
        "an exec from outside the scope was recorded"
    );
    let _ = accepter.join();
    tapio.terminate();
}
