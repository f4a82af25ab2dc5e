//! CPU cost per record of Tapio's userspace path, on N exec records as the
//! kernel writes them (no root needed):
//!
//!   decode → map to an OTLP LogRecord → bounded queue → batch → encode
//!
//! next to a baseline measured in the same run: protobuf-encoding the same
//! number of ready-made LogRecords (the floor any OTLP exporter pays).
//! Prints figures; asserts nothing.  `cargo bench -p tapio --bench export_path`

use prost::Message;
use std::time::Instant;
use tapio::{
    clock::WallClock,
    export::{logs_payload, queue::BoundedQueue, sink::Payload},
    otel::logs::{process_exec, ProcessContext},
    probes::process::{decode, ProcessEvent},
    telemetry::{Signal, Telemetry},
};
use tapio_shared::{as_bytes, tapio_event_kind, tapio_process_exec};

const N: usize = 200_000;
const BATCH: usize = 512;

fn cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn record(i: usize) -> Vec<u8> {
    let mut r = tapio_process_exec::default();
    r.hdr.kind = tapio_event_kind::TAPIO_EVENT_PROCESS_EXEC as u32;
    r.hdr.pid = 1000 + i as u32;
    r.hdr.ppid = 1;
    r.hdr.ts_ns = 1_000_000_000 + i as u64;
    let put = |dst: &mut [core::ffi::c_char], s: &[u8]| {
        for (d, b) in dst.iter_mut().zip(s) {
            *d = *b as core::ffi::c_char;
        }
    };
    put(&mut r.hdr.comm, b"curl\0");
    let path = b"/usr/bin/curl";
    put(&mut r.filename, path);
    r.filename_len = path.len() as u16;
    let args = b"curl\0-s\0-o\0/dev/null\0https://example.invalid/health\0";
    put(&mut r.args, args);
    r.args_len = args.len() as u16;
    put(
        &mut r.cgroup_leaf,
        format!("cri-containerd-{}.scope\0", "c".repeat(64)).as_bytes(),
    );
    put(
        &mut r.cgroup_parent,
        b"kubepods-besteffort-pod1a2b3c4d_5e6f_7081_9203_a4b5c6d7e8f9.slice\0",
    );
    as_bytes(&r).to_vec()
}

const RUNS: usize = 5;

/// Median over RUNS of CPU µs per record.
fn measure(name: &str, f: impl Fn() -> usize) -> f64 {
    let mut runs = Vec::new();
    let mut bytes = 0;
    for _ in 0..RUNS {
        let c0 = cpu_secs();
        let w0 = Instant::now();
        bytes = f();
        runs.push((
            (cpu_secs() - c0) * 1e6 / N as f64,
            w0.elapsed().as_secs_f64() * 1e3,
        ));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (us, wall) = runs[RUNS / 2];
    println!(
        "{name:<44} {us:>7.3} µs/record CPU  ({wall:.0} ms wall, {:.1} MB out)",
        bytes as f64 / 1e6
    );
    us
}

fn main() {
    let records: Vec<Vec<u8>> = (0..N).map(record).collect();
    let clock = WallClock::sample();
    let ctx = |e: &tapio::probes::process::Exec| ProcessContext {
        owner: Some("root".into()),
        workload: tapio::enrich::cgroup::from_names(&e.cgroup_leaf, &e.cgroup_parent),
        info: None,
    };
    let resource = tapio::otel::resource::build(&[]);

    // Baseline: encoding ready-made records, nothing else.
    let ready: Vec<_> = records
        .iter()
        .map(|b| match decode(b) {
            Ok(ProcessEvent::Exec(e)) => process_exec(&e, &e.filename, &ctx(&e), &clock, 0),
            _ => unreachable!(),
        })
        .collect();
    let batches: Vec<Payload> = ready
        .chunks(BATCH)
        .map(|c| logs_payload(&resource, c.to_vec()))
        .collect();
    drop(ready);
    let base = measure("baseline: protobuf-encode ready requests", || {
        batches
            .iter()
            .map(|p| match p {
                Payload::Logs(req) => req.encode_to_vec().len(),
                _ => 0,
            })
            .sum()
    });
    drop(batches);

    let telemetry = Telemetry::new(0);
    let full = measure("tapio: decode+map+queue+batch+protobuf", || {
        let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Logs);
        let mut out = 0;
        for b in &records {
            if let Ok(ProcessEvent::Exec(e)) = decode(b) {
                q.push(process_exec(&e, &e.filename, &ctx(&e), &clock, 0));
            }
            if q.len() >= BATCH {
                if let Payload::Logs(req) = logs_payload(&resource, q.take(BATCH)) {
                    out += req.encode_to_vec().len();
                }
            }
        }
        while !q.is_empty() {
            if let Payload::Logs(req) = logs_payload(&resource, q.take(BATCH)) {
                out += req.encode_to_vec().len();
            }
        }
        out
    });

    let json = measure("tapio: decode+map+queue+batch+OTLP-JSON", || {
        let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Logs);
        let mut out = 0;
        let mut flush = |q: &BoundedQueue<_>| {
            if let Payload::Logs(req) = logs_payload(&resource, q.take(BATCH)) {
                out += serde_json::to_vec(&req).map(|v| v.len()).unwrap_or(0);
            }
        };
        for b in &records {
            if let Ok(ProcessEvent::Exec(e)) = decode(b) {
                q.push(process_exec(&e, &e.filename, &ctx(&e), &clock, 0));
            }
            if q.len() >= BATCH {
                flush(&q);
            }
        }
        while !q.is_empty() {
            flush(&q);
        }
        out
    });
    println!(
        "\nratio tapio protobuf path / encode-only baseline: {:.2}",
        full / base
    );
    println!(
        "ratio tapio OTLP-JSON path / encode-only baseline: {:.2}",
        json / base
    );
    println!("({N} exec records, batches of {BATCH}, median of {RUNS} runs)");
}
