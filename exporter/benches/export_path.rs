//! CPU cost and heap allocations per record of Tapio's userspace path, end
//! to end, for exec, connect, close, DNS and security (capability use, credential
//! change) records as the kernel writes them (no root needed):
//!
//!   decode → enrich → map/encode → bounded queue → batch → request bytes
//!
//! Two paths in the same run:
//! - old: owned events mapped to opentelemetry-proto messages, queued,
//!   batched and prost-encoded (the `legacy` mappers, as the handlers ran
//!   them before the direct encoder);
//! - new: the probes' real handlers, writing protobuf straight from the
//!   record into the exporter's queue, batches framed in place (the exec,
//!   connect and DNS handlers' emitters stash a wake's records and queue
//!   them together, as in the agent; a wake here is 64 records);
//! - JSON: the same handlers and mapping calls writing OTLP/JSON (the
//!   stdout sink's format), batches framed in place into one line each.
//!
//! A counting global allocator gives allocations per record (the new path
//! is measured after a warm-up run, i.e. in the steady state). Prints a
//! table; asserts nothing.
//!
//!   cargo bench -p tapio --features legacy-mapper --bench export_path

use prost::Message;
use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Instant,
};
use tapio::{
    clock::WallClock,
    enrich::{Enricher, ProcessInfo},
    export::{
        logs_payload, queue::BoundedQueue, sink::Payload, spans_payload, Batches, Emitter, Format,
    },
    otel::traces::IdGenerator,
    probes::legacy::ProcessContext,
    probes::{dns, network, process, security},
    reader::RecordHandler,
    telemetry::{Signal, Telemetry},
};
use tapio_shared::{
    as_bytes, tapio_dns_packet, tapio_event_header, tapio_event_kind as kind, tapio_process_exec,
    tapio_sec_cred, tapio_sec_event, tapio_sec_op, tapio_tcp_close, tapio_tcp_connect,
    tapio_tcp_tuple,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records per run (DNS: lookups, two records each).
const N: usize = 100_000;
const BATCH: usize = 512;
const RUNS: usize = 5;

fn cpu_secs() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn put(dst: &mut [core::ffi::c_char], s: &[u8]) {
    for (d, b) in dst.iter_mut().zip(s) {
        *d = *b as core::ffi::c_char;
    }
}

fn header(k: kind, i: usize) -> tapio_event_header {
    let mut h = tapio_event_header {
        kind: k as u32,
        pid: 1000 + (i % 20_000) as u32,
        tid: 1000 + (i % 20_000) as u32,
        ppid: 1,
        ts_ns: 1_000_000_000 + i as u64,
        // One container's cgroup: what enrichment caches.
        cgroup_id: 4242,
        ..Default::default()
    };
    put(&mut h.comm, b"curl\0");
    h
}

fn exec_record(i: usize) -> Vec<u8> {
    let mut r = tapio_process_exec {
        hdr: header(kind::TAPIO_EVENT_PROCESS_EXEC, i),
        start_ns: 900_000_000,
        ..Default::default()
    };
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

fn tuple(sport: u16, dport: u16) -> tapio_tcp_tuple {
    let mut t = tapio_tcp_tuple {
        family: tapio_shared::tapio_family::TAPIO_AF_INET as u16,
        sport,
        dport,
        ..Default::default()
    };
    t.saddr[10..].copy_from_slice(&[0xff, 0xff, 198, 18, 0, 1]);
    t.daddr[10..].copy_from_slice(&[0xff, 0xff, 198, 18, 0, 2]);
    t
}

fn connect_record(i: usize) -> Vec<u8> {
    // One in ten refused: the error span has more to say.
    let refused = i.is_multiple_of(10);
    let r = tapio_tcp_connect {
        hdr: header(kind::TAPIO_EVENT_TCP_CONNECT, i),
        start_ns: 1_000_000_000 + i as u64,
        end_ns: 1_000_200_000 + i as u64,
        sock_cookie: i as u64,
        outcome: if refused {
            tapio_shared::tapio_tcp_outcome::TAPIO_TCP_REFUSED
        } else {
            tapio_shared::tapio_tcp_outcome::TAPIO_TCP_OK
        },
        error: if refused { 111 } else { 0 },
        tuple: tuple(40_000 + (i % 20_000) as u16, 443),
    };
    as_bytes(&r).to_vec()
}

/// A connection's close as the sustained-load bench's generator makes
/// them: one process, its connecting thread's outbound close (even `i`)
/// and its accepting thread's inbound one (odd `i`), as on a busy client
/// or server (the other rows give every record a process of its own).
fn close_record(i: usize) -> Vec<u8> {
    let inbound = i % 2 == 1;
    let mut hdr = header(kind::TAPIO_EVENT_TCP_CLOSE, i);
    hdr.pid = 5000;
    hdr.tid = if inbound { 5002 } else { 5001 };
    let port = 40_000 + (i % 20_000) as u16;
    let r = tapio_tcp_close {
        hdr,
        established_ns: 1_000_000_000 - 250_000_000 - i as u64,
        bytes_sent: 517 + (i % 3000) as u64,
        bytes_received: 12_345 + i as u64,
        sock_cookie: i as u64,
        inbound: u32::from(inbound),
        srtt_us: 35 + (i % 200) as u32,
        tuple: if inbound {
            tuple(443, port)
        } else {
            tuple(port, 443)
        },
    };
    as_bytes(&r).to_vec()
}

fn dns_name(v: &mut Vec<u8>, name: &str) {
    for l in name.split('.') {
        v.push(l.len() as u8);
        v.extend_from_slice(l.as_bytes());
    }
    v.push(0);
}

/// A query for `api.tapio.test` A and its answer (one CNAME, one A).
fn dns_records(i: usize) -> [Vec<u8>; 2] {
    let id = (i % 65_536) as u16;
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    dns_name(&mut q, "api.tapio.test");
    q.extend_from_slice(&[0, 1, 0, 1]);
    let mut a = q.clone();
    a[2] = 0x81;
    a[3] = 0x80;
    a[7] = 2;
    a.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
    let mut target = Vec::new();
    dns_name(&mut target, "lb.tapio.test");
    a.extend_from_slice(&(target.len() as u16).to_be_bytes());
    let toff = a.len();
    a.extend(target);
    a.extend_from_slice(&[
        0xC0, toff as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 53,
    ]);
    let packet = |response: bool, payload: &[u8], ts: u64| {
        let mut hdr = header(kind::TAPIO_EVENT_DNS_PACKET, i);
        hdr.ts_ns = ts;
        let mut r = tapio_dns_packet {
            hdr,
            payload_len: payload.len() as u16,
            wire_len: payload.len() as u16,
            direction: u8::from(response),
            protocol: 17,
            flags: 0,
            tuple: tuple(30_000 + (i / 65_536) as u16, 53),
            payload: [0; 512],
        };
        r.payload[..payload.len()].copy_from_slice(payload);
        as_bytes(&r).to_vec()
    };
    let t = 1_000_000_000 + 10 * i as u64;
    [packet(false, &q, t), packet(true, &a, t + 300_000)]
}

/// A capability check (CAP_SYS_ADMIN, granted, during unshare): the most
/// frequent security record.
fn capability_record(i: usize) -> Vec<u8> {
    let r = tapio_sec_event {
        hdr: header(kind::TAPIO_EVENT_SEC, i),
        op: tapio_sec_op::TAPIO_SEC_CAPABILITY,
        arg0: 21,
        syscall_nr: 272,
        ..Default::default()
    };
    as_bytes(&r).to_vec()
}

/// setuid(0) by uid 1000 gaining every capability (what sudo does): the
/// largest credentials record, 41 capability names.
fn credentials_record(i: usize) -> Vec<u8> {
    let mut r = tapio_sec_cred {
        hdr: header(kind::TAPIO_EVENT_SEC_CRED, i),
        new_cap_eff: 0x1ff_ffff_ffff,
        new_cap_prm: 0x1ff_ffff_ffff,
        syscall_nr: 105,
        ..Default::default()
    };
    r.hdr.uid = 1000;
    let o = &mut r.old_ids;
    (o.uid, o.euid, o.suid, o.fsuid, o.gid, o.egid) = (1000, 1000, 1000, 1000, 1000, 1000);
    as_bytes(&r).to_vec()
}

/// One measured run: CPU µs and allocations per record, bytes out.
#[derive(Clone, Copy)]
struct Run {
    us: f64,
    allocs: f64,
    bytes: usize,
}

/// The old path's figures when only the new one runs (`EXPORT_PATH_ONLY=new`).
fn skipped() -> Run {
    Run {
        us: f64::NAN,
        allocs: f64::NAN,
        bytes: 0,
    }
}

/// The owned context the old mappers took, as their handlers built it.
fn legacy_ctx(e: &mut Enricher, c: &tapio::probes::process::Common) -> ProcessContext {
    ProcessContext {
        owner: e.users.name(c.uid).map(str::to_string),
        workload: e.workload(c.cgroup_id, c.pid),
        info: None,
    }
}

/// Median over RUNS (by CPU) of `f`, which handles `n` records.
fn measure(n: usize, mut f: impl FnMut() -> usize) -> Run {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let a0 = ALLOCS.load(Relaxed);
        let c0 = cpu_secs();
        let _w0 = Instant::now();
        let bytes = f();
        runs.push(Run {
            us: (cpu_secs() - c0) * 1e6 / n as f64,
            allocs: (ALLOCS.load(Relaxed) - a0) as f64 / n as f64,
            bytes,
        });
    }
    runs.sort_by(|a, b| a.us.total_cmp(&b.us));
    runs[RUNS / 2]
}

/// Drain the old path's queue into prost-encoded requests.
fn drain_old<T: Clone>(q: &BoundedQueue<T>, all: bool, build: impl Fn(Vec<T>) -> Payload) -> usize {
    let mut out = 0;
    while q.len() >= BATCH || (all && !q.is_empty()) {
        out += match build(q.take(BATCH)) {
            Payload::Logs(r) => r.encode_to_vec().len(),
            Payload::Traces(r) => r.encode_to_vec().len(),
            _ => 0,
        };
    }
    out
}

/// Drain the new path's queue: framed requests, handed back after "send".
fn drain_new(b: &Batches, s: Signal, all: bool) -> usize {
    let mut out = 0;
    while b.len(s) >= BATCH || (all && b.len(s) > 0) {
        let Some((p, _)) = b.take(s) else { break };
        if let Payload::Encoded(e) | Payload::Json(e) = &p {
            out += std::hint::black_box(e.bytes()).len();
        }
        b.recycle(p);
    }
    out
}

fn main() {
    // EXPORT_PATH_ONLY=new: only the new path (for profiling).
    let only_new = std::env::var("EXPORT_PATH_ONLY").is_ok_and(|v| v == "new");
    // EXPORT_PATH_KIND=exec|connect|close|dns|capability|credentials: one kind only.
    let kind = std::env::var("EXPORT_PATH_KIND").unwrap_or_default();
    let want = |k: &str| kind.is_empty() || kind == k;
    let telemetry = Telemetry::new(0);
    let resource = tapio::otel::resource::build(&[]);
    let clock = WallClock::sample();
    let mut rows: Vec<(&str, Run, Run, Run)> = Vec::new();

    // Both paths see the same cached workload for the records' cgroup.
    let learn = |e: &mut Enricher| {
        let leaf = format!("cri-containerd-{}.scope", "c".repeat(64));
        e.learn_cgroup(
            4242,
            &leaf,
            "kubepods-besteffort-pod1a2b3c4d_5e6f_7081_9203_a4b5c6d7e8f9.slice",
        );
    };

    // The network handler's new path over `records` (the connect and
    // close rows), protobuf then JSON.
    let network_new = |records: &[Vec<u8>], signal: Signal| {
        let new_as = |format| {
            let (emitter, batches) =
                Emitter::standalone_as(format, &resource, N, BATCH, telemetry.clone());
            let mut h = network::Handler {
                emitter: emitter.stashing(),
                stats: tapio::telemetry::ReaderStats::new(telemetry.probe(network::NAME)),
                enricher: Enricher::default(),
                clock,
                ids: IdGenerator::seeded(1),
            };
            learn(&mut h.enricher);
            let mut run = || {
                let mut out = 0;
                for b in records {
                    h.handle(b);
                    out += drain_new(&batches, signal, false);
                }
                h.end_wake();
                out + drain_new(&batches, signal, true)
            };
            run();
            measure(N, run)
        };
        (new_as(Format::Protobuf), new_as(Format::Json))
    };

    // ---- exec → process.exec log records
    if want("exec") {
        let execs: Vec<Vec<u8>> = (0..N).map(exec_record).collect();
        let old = if only_new {
            skipped()
        } else {
            let mut enricher = Enricher::default();
            let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Logs);
            measure(N, || {
                let mut out = 0;
                for b in &execs {
                    // As the handler did: owned event, owned context, owned
                    // ProcessInfo remembered for the exit.
                    if let Ok(process::legacy::ProcessEvent::Exec(e)) = process::legacy::decode(b) {
                        let c = &e.common;
                        let owner = enricher.users.name(c.uid).map(str::to_string);
                        let workload =
                            enricher.learn_cgroup(c.cgroup_id, &e.cgroup_leaf, &e.cgroup_parent);
                        let path = e.filename.clone();
                        enricher.remember_process(
                            c.pid,
                            ProcessInfo {
                                executable_path: path.clone(),
                                command_line: process::legacy::command_line(&e.argv),
                            },
                        );
                        let ctx = ProcessContext {
                            owner,
                            workload,
                            info: None,
                        };
                        q.push(process::legacy::process_exec(&e, &path, &ctx, &clock, 1));
                    }
                    out += drain_old(&q, false, |r| logs_payload(&resource, r));
                }
                out + drain_old(&q, true, |r| logs_payload(&resource, r))
            })
        };
        let new_as = |format| {
            let (emitter, batches) =
                Emitter::standalone_as(format, &resource, N, BATCH, telemetry.clone());
            let mut h = process::Handler {
                emitter: emitter.stashing(),
                stats: tapio::telemetry::ReaderStats::new(telemetry.probe(process::NAME)),
                enricher: Enricher::default(),
                clock,
                config: Default::default(),
            };
            let mut run = || {
                let mut out = 0;
                for b in &execs {
                    h.handle(b);
                    out += drain_new(&batches, Signal::Logs, false);
                }
                h.end_wake();
                out + drain_new(&batches, Signal::Logs, true)
            };
            run(); // warm-up: caches and buffers reach their steady size
            measure(N, run)
        };
        let (new, json) = (new_as(Format::Protobuf), new_as(Format::Json));
        rows.push(("exec → process.exec log", old, new, json));
    }

    // ---- connect → tcp.connect spans
    if want("connect") {
        let connects: Vec<Vec<u8>> = (0..N).map(connect_record).collect();
        let old = if only_new {
            skipped()
        } else {
            let mut enricher = Enricher::default();
            learn(&mut enricher);
            let mut ids = IdGenerator::seeded(1);
            let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Traces);
            measure(N, || {
                let mut out = 0;
                for b in &connects {
                    if let Ok(network::legacy::NetworkEvent::Connect(c)) =
                        network::legacy::decode(b)
                    {
                        let cm = &c.common;
                        let ctx = legacy_ctx(&mut enricher, cm);
                        q.push(network::legacy::tcp_connect(&c, &ctx, &clock, &mut ids));
                    }
                    out += drain_old(&q, false, |s| spans_payload(&resource, s));
                }
                out + drain_old(&q, true, |s| spans_payload(&resource, s))
            })
        };
        let (new, json) = network_new(&connects, Signal::Traces);
        rows.push(("connect → tcp.connect span", old, new, json));
    }

    // ---- TCP close → network.connection.close logs
    if want("close") {
        let closes: Vec<Vec<u8>> = (0..N).map(close_record).collect();
        let old = if only_new {
            skipped()
        } else {
            let mut enricher = Enricher::default();
            learn(&mut enricher);
            let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Logs);
            measure(N, || {
                let mut out = 0;
                for b in &closes {
                    if let Ok(network::legacy::NetworkEvent::Close(c)) = network::legacy::decode(b)
                    {
                        let cm = &c.common;
                        let ctx = legacy_ctx(&mut enricher, cm);
                        q.push(network::legacy::connection_close(&c, &ctx, &clock, 1));
                    }
                    out += drain_old(&q, false, |r| logs_payload(&resource, r));
                }
                out + drain_old(&q, true, |r| logs_payload(&resource, r))
            })
        };
        let (new, json) = network_new(&closes, Signal::Logs);
        rows.push(("close → network.connection.close log", old, new, json));
    }

    // ---- DNS query + response → dns.query spans (per lookup)
    if want("dns") {
        let lookups: Vec<[Vec<u8>; 2]> = (0..N).map(dns_records).collect();
        let cfg = tapio::config::DnsProbe::default();
        let old = if only_new {
            skipped()
        } else {
            let mut enricher = Enricher::default();
            learn(&mut enricher);
            let mut ids = IdGenerator::seeded(2);
            let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Traces);
            let mut pending: lru::LruCache<dns::Key, dns::legacy::Pending> = lru::LruCache::new(
                std::num::NonZeroUsize::new(65_536).unwrap_or(std::num::NonZeroUsize::MIN),
            );
            measure(N, || {
                let mut out = 0;
                for [query, answer] in &lookups {
                    // As the handler did: owned packets, parsed messages, the
                    // context copied into the pending query.
                    if let Ok(p) = dns::legacy::decode(query) {
                        if let Ok(m) = tapio::dnsmsg::parse(&p.payload, cfg.max_answers) {
                            if let Some(qn) = m.questions.first() {
                                let c = &p.common;
                                let ctx = legacy_ctx(&mut enricher, c);
                                let key = dns::Key {
                                    tuple: p.tuple,
                                    transport: p.transport,
                                    id: m.id,
                                };
                                pending.push(
                                    key,
                                    dns::legacy::Pending {
                                        common: p.common.clone(),
                                        ctx,
                                        sent_boot_ns: c.ts_boot_ns,
                                        name: qn.name.clone(),
                                        qtype: qn.qtype,
                                    },
                                );
                            }
                        }
                    }
                    if let Ok(p) = dns::legacy::decode(answer) {
                        if let Ok(m) = tapio::dnsmsg::parse(&p.payload, cfg.max_answers) {
                            let key = dns::Key {
                                tuple: p.tuple,
                                transport: p.transport,
                                id: m.id,
                            };
                            if let Some(query) = pending.pop(&key) {
                                let l = dns::legacy::Lookup {
                                    key,
                                    query,
                                    response: Some(m),
                                    end_boot_ns: p.common.ts_boot_ns,
                                };
                                q.push(dns::legacy::dns_query(
                                    &l,
                                    cfg.max_answers,
                                    &clock,
                                    &mut ids,
                                ));
                            }
                        }
                    }
                    out += drain_old(&q, false, |s| spans_payload(&resource, s));
                }
                out + drain_old(&q, true, |s| spans_payload(&resource, s))
            })
        };
        let new_as = |format| {
            let (emitter, batches) =
                Emitter::standalone_as(format, &resource, N, BATCH, telemetry.clone());
            let mut h = dns::Handler::new(
                emitter.stashing(),
                telemetry.probe(dns::NAME),
                cfg.clone(),
                dns::DnsHistograms::default(),
            );
            h.clock = clock;
            learn(&mut h.enricher);
            let mut run = || {
                let mut out = 0;
                for [query, answer] in &lookups {
                    h.handle(query);
                    h.handle(answer);
                    out += drain_new(&batches, Signal::Traces, false);
                }
                h.end_wake();
                out + drain_new(&batches, Signal::Traces, true)
            };
            run();
            measure(N, run)
        };
        let (new, json) = (new_as(Format::Protobuf), new_as(Format::Json));
        rows.push(("DNS query+answer → dns.query span", old, new, json));
    }

    // ---- security records → security.* log records
    for (k, name, make) in [
        (
            "capability",
            "capability → security.capability.use",
            capability_record as fn(usize) -> Vec<u8>,
        ),
        (
            "credentials",
            "setuid → security.credentials.change",
            credentials_record,
        ),
    ] {
        if !want(k) {
            continue;
        }
        let records: Vec<Vec<u8>> = (0..N).map(make).collect();
        let old = if only_new {
            skipped()
        } else {
            let mut enricher = Enricher::default();
            learn(&mut enricher);
            let q = BoundedQueue::new(N, BATCH, telemetry.clone(), Signal::Logs);
            measure(N, || {
                let mut out = 0;
                for b in &records {
                    // As the handler did: owned event, owned context, a
                    // message built and queued.
                    if let Ok(ev) = security::decode(b) {
                        let c = ev.common();
                        let ctx = legacy_ctx(&mut enricher, c);
                        q.push(match &ev {
                            security::SecurityEvent::Cred(cc) => {
                                security::legacy::credentials(cc, &ctx, &clock, 1)
                            }
                            security::SecurityEvent::Event(e) => security::legacy::event(
                                e,
                                &security::Extra::default(),
                                &ctx,
                                &clock,
                                1,
                            ),
                        });
                    }
                    out += drain_old(&q, false, |r| logs_payload(&resource, r));
                }
                out + drain_old(&q, true, |r| logs_payload(&resource, r))
            })
        };
        let new_as = |format| {
            let (emitter, batches) =
                Emitter::standalone_as(format, &resource, N, BATCH, telemetry.clone());
            let mut h = security::Handler {
                emitter,
                stats: telemetry.probe(security::NAME),
                enricher: Enricher::default(),
                clock,
                watch_paths: Vec::new(),
            };
            learn(&mut h.enricher);
            let mut run = || {
                let mut out = 0;
                for b in &records {
                    h.handle(b);
                    out += drain_new(&batches, Signal::Logs, false);
                }
                out + drain_new(&batches, Signal::Logs, true)
            };
            run();
            measure(N, run)
        };
        let (new, json) = (new_as(Format::Protobuf), new_as(Format::Json));
        rows.push((name, old, new, json));
    }

    println!(
        "\nTapio userspace path per record, decode → enrich → encode → queue → batch → request bytes\n\
         ({N} records per kind (DNS: lookups of 2 records), batches of {BATCH}, median of {RUNS} runs, CPU time)\n"
    );
    println!(
        "| {:<36} | {:>9} | {:>9} | {:>7} | {:>9} | {:>10} | {:>10} | {:>10} | {:>7} | {:>7} | {:>7} |",
        "record",
        "old µs",
        "new µs",
        "old/new",
        "JSON µs",
        "old allocs",
        "new allocs",
        "JSON alloc",
        "old B",
        "new B",
        "JSON B"
    );
    println!(
        "|{:-<38}|{:->11}|{:->11}|{:->9}|{:->11}|{:->12}|{:->12}|{:->12}|{:->9}|{:->9}|{:->9}|",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    for (name, o, n, j) in &rows {
        println!(
            "| {:<36} | {:>9.3} | {:>9.3} | {:>7.1} | {:>9.3} | {:>10.3} | {:>10.3} | {:>10.3} | {:>7} | {:>7} | {:>7} |",
            name,
            o.us,
            n.us,
            o.us / n.us,
            j.us,
            o.allocs,
            n.allocs,
            j.allocs,
            o.bytes / N,
            n.bytes / N,
            j.bytes / N
        );
    }
    println!("\n(allocs: heap allocations per record; B: request bytes per record)");
    let _ = Arc::strong_count(&telemetry);
}
