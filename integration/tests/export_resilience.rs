//! The export path under failure: a collector that dies mid-run costs
//! counted drops and bounded memory, never the agent; a clean shutdown
//! flushes everything accepted.

use std::{
    process::Command,
    time::{Duration, Instant},
};
use tapio_integration::{int_attr, privileged_or_skip, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(20);

/// Spawn up to `n` short processes, for at most `limit`.
fn exec_burst(n: usize, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    let mut done = 0;
    while done < n && Instant::now() < end {
        if let Ok(mut c) = Command::new("/bin/true").spawn() {
            let _ = c.wait();
        }
        done += 1;
    }
    done
}

#[test]
fn dead_collector_means_counted_drops_bounded_memory_and_recovery() {
    if !privileged_or_skip("dead_collector_means_counted_drops_bounded_memory_and_recovery") {
        return;
    }
    let rx = Receiver::start();
    let yaml = format!(
        "exporters:\n  otlp:\n    endpoint: {}\n    timeout: 500ms\n    sending_queue: {{ queue_size: 200 }}\n    retry_on_failure: {{ initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 1s }}\npipeline:\n  logs: {{ schedule_delay: 50ms, max_export_batch_size: 50 }}\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    );
    let mut t = Tapio::start(BIN, &yaml, &[]);
    rx.wait_for_counter(
        "tapio.events.received",
        &[("tapio.probe", "process")],
        WAIT,
        |_| true,
    );

    let (grpc, http) = rx.stop();
    let rss_before = t.rss_kib();
    let spawned = exec_burst(3000, Duration::from_secs(60));
    // Give the queue time to overflow and retries time to give up.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        t.is_running(),
        "tapio died with the collector:\n{}",
        t.stderr()
    );
    let rss_after = t.rss_kib();
    // 3000 processes are ~9000 records (~20 MB as OTLP); a 200-record
    // queue keeps nearly all of that out of memory.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over {spawned} processes"
    );

    let rx = Receiver::start_on(grpc, http);
    let dropped = rx.wait_for_counter(
        "tapio.export.dropped",
        &[("tapio.signal", "logs"), ("tapio.reason", "queue_full")],
        WAIT,
        |v| v > 0,
    );
    let failures = rx.wait_for_counter(
        "tapio.export.failures",
        &[("tapio.signal", "logs")],
        WAIT,
        |v| v > 0,
    );
    // Every record is accounted for: the kernel saw at least an exec and an
    // exit per process, and what was not sent was counted as dropped.
    let sent = rx.wait_for_counter(
        "tapio.export.sent",
        &[("tapio.signal", "logs")],
        WAIT,
        |_| true,
    );
    let retry_dropped = rx.wait_for_counter(
        "tapio.export.dropped",
        &[
            ("tapio.signal", "logs"),
            ("tapio.reason", "retry_exhausted"),
        ],
        WAIT,
        |_| true,
    );
    assert!(
        (sent + dropped + retry_dropped) as usize >= 2 * spawned,
        "sent {sent} + dropped {dropped}+{retry_dropped} < 2 x {spawned} processes"
    );
    eprintln!("spawned {spawned}: sent {sent}, dropped queue_full {dropped}, retry_exhausted {retry_dropped}, failures {failures}, RSS {rss_before}->{rss_after} KiB");

    // And it recovered: new events arrive.
    let mut c = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .spawn()
        .unwrap();
    let pid = i64::from(c.id());
    c.wait().unwrap();
    rx.wait_for_logs("exit after recovery", WAIT, |logs| {
        logs.iter().any(|(_, r)| {
            r.event_name == "process.exit"
                && int_attr(&r.attributes, "process.pid") == Some(pid)
                && int_attr(&r.attributes, "process.exit.code") == Some(3)
        })
    });
    t.terminate();
}

#[test]
fn clean_shutdown_flushes_everything_accepted() {
    if !privileged_or_skip("clean_shutdown_flushes_everything_accepted") {
        return;
    }
    let rx = Receiver::start();
    // Batches would wait a minute: only the shutdown flush can deliver them.
    let yaml = format!(
        "exporters:\n  otlphttp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 60s, max_export_batch_size: 100000 }}\n  metrics: {{ export_interval: 60s }}\n  shutdown_timeout: 10s\n",
        rx.http_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);
    let mut pids = Vec::new();
    for code in 0..20 {
        let mut c = Command::new("/bin/sh")
            .args(["-c", &format!("exit {code}")])
            .spawn()
            .unwrap();
        pids.push((i64::from(c.id()), code));
        c.wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rx.log_records().is_empty(),
        "records arrived before shutdown: batching is off"
    );
    let stderr = t.terminate();
    let logs = rx.log_records();
    let exits: Vec<(Option<i64>, Option<i64>)> = logs
        .iter()
        .filter(|(_, r)| r.event_name == "process.exit")
        .map(|(_, r)| {
            (
                int_attr(&r.attributes, "process.pid"),
                int_attr(&r.attributes, "process.exit.code"),
            )
        })
        .collect();
    for (pid, code) in pids {
        assert!(
            exits.contains(&(Some(pid), Some(code))),
            "exit of pid {pid} (code {code}) was not flushed at shutdown; {} log records, \
             exits (pid, code) received: {exits:?}; tapio stderr:\n{stderr}",
            logs.len()
        );
    }
    // The final metrics snapshot went out too.
    assert!(rx
        .metrics()
        .iter()
        .any(|m| m.name == "tapio.events.received"));
}

/// A ring buffer that userspace does not drain fills up; every record the
/// kernel could not reserve is counted as tapio.events.lost{reason=ringbuf_full}.
#[test]
fn ring_buffer_overflow_is_counted_per_reason() {
    if !privileged_or_skip("ring_buffer_overflow_is_counted_per_reason") {
        return;
    }
    let rx = Receiver::start();
    let yaml = format!(
        "probes:\n  process:\n    ring_buffer_size: 4KiB\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);
    // Freeze the agent: nothing drains the 4 KiB ring (two exec records).
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(t.pid() as i32, libc::SIGSTOP) };
    let n = 50;
    let spawned = exec_burst(n, Duration::from_secs(30));
    unsafe { libc::kill(t.pid() as i32, libc::SIGCONT) };
    // fork + exec + exit per process, nearly all of them refused.
    let lost = rx.wait_for_counter(
        "tapio.events.lost",
        &[("tapio.probe", "process"), ("tapio.reason", "ringbuf_full")],
        WAIT,
        |v| v as usize >= spawned,
    );
    let received = rx.wait_for_counter(
        "tapio.events.received",
        &[("tapio.probe", "process")],
        WAIT,
        |_| true,
    );
    assert!(
        (lost + received) as usize >= 3 * spawned,
        "lost {lost} + received {received} < 3 x {spawned}"
    );
    let decode = rx.wait_for_counter(
        "tapio.events.lost",
        &[("tapio.probe", "process"), ("tapio.reason", "decode_error")],
        WAIT,
        |_| true,
    );
    assert_eq!(decode, 0);
    t.terminate();
}
