//! Every ring-buffer record handler, over any bytes: a record's length and
//! every field (kind, lengths, enum values) are whatever the kernel side
//! wrote, so a program bug or a struct mismatch must cost a decode error,
//! never the agent.
//!
//! The memory-sample sums are kernel bytes too, though they come from a
//! map, not the ring: every record is also read as (cgroup id, allocator,
//! allocations, bytes) entries and folded into one running `Totals`, which
//! must never go down; the cgroup names the kernel captures for them are
//! the record's two halves.
//!
//! The input is a sequence of records, each a little-endian u16 length and
//! that many bytes (the last one cut where the input ends). Each record is
//! handed to every probe's real `RecordHandler` (decode, enrichment,
//! mapping to OTLP, queueing), as the ring-buffer reader does; a handler
//! counts records of another probe's kind as decode errors. XDP's handler
//! needs its pinned BPF map, so its record goes through the same
//! `xdp::decode` and log mapping the handler calls. The handlers live
//! across inputs, as they do in the agent (so a query and a later
//! response meet in the dns handler's pending table); every queue is
//! drained after each input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, Mutex};
use tapio::export::{Batches, Emitter};
use tapio::probes::{
    dns, etcd, kernel, lsm, memory, netns, network, process, security, systemd, tc, xdp,
};
use tapio::reader::RecordHandler;
use tapio::telemetry::{Signal, Telemetry};

/// A /proc that does not exist: enrichment finds nothing, deterministically
/// (the pids in fuzzed records are arbitrary).
const NO_PROC: &str = "/nonexistent-fuzz-proc";

struct World {
    handlers: Vec<Box<dyn RecordHandler>>,
    batches: Batches,
    emitter: Emitter,
    xdp_names: xdp::IfNames,
    clock: tapio::clock::WallClock,
    memory: memory::Totals,
}

fn world() -> World {
    let t = Telemetry::new(0);
    let (emitter, batches) = Emitter::standalone(&Default::default(), 256, 64, t.clone());
    let clock = tapio::clock::WallClock::with_offset(0);
    let enricher = || tapio::enrich::Enricher::new(NO_PROC);
    let mut dns = dns::Handler::new(
        emitter.clone(),
        t.probe("dns"),
        Default::default(),
        Default::default(),
    );
    dns.enricher = enricher();
    let lsm_state = lsm::State {
        names: [vec!["deny-a".into(), "audit-b".into()], vec!["c".into()]],
        ..Default::default()
    };
    let handlers: Vec<Box<dyn RecordHandler>> = vec![
        Box::new(process::Handler {
            emitter: emitter.clone(),
            stats: tapio::telemetry::ReaderStats::new(t.probe("process")),
            enricher: enricher(),
            clock,
            config: Default::default(),
        }),
        Box::new(network::Handler {
            emitter: emitter.clone(),
            stats: tapio::telemetry::ReaderStats::new(t.probe("network")),
            enricher: enricher(),
            clock,
            ids: Default::default(),
        }),
        Box::new(dns),
        Box::new(kernel::Handler {
            emitter: emitter.clone(),
            stats: t.probe("kernel"),
            enricher: enricher(),
            clock,
        }),
        Box::new(security::Handler {
            emitter: emitter.clone(),
            stats: t.probe("security"),
            enricher: enricher(),
            clock,
            watch_paths: vec!["/etc/passwd".into(), "/etc".into()],
        }),
        Box::new(tc::Handler {
            emitter: emitter.clone(),
            stats: t.probe("tc"),
            clock,
            ifnames: Arc::new([(1, "lo".to_string())].into_iter().collect()),
            logs: true,
        }),
        Box::new(lsm::Handler {
            emitter: emitter.clone(),
            stats: t.probe("lsm"),
            clock,
            state: Arc::new(Mutex::new(lsm_state)),
        }),
        Box::new(etcd::Handler {
            emitter: emitter.clone(),
            stats: t.probe("etcd"),
            clock,
            ids: Default::default(),
        }),
        Box::new(systemd::Handler {
            emitter: emitter.clone(),
            stats: t.probe("systemd"),
            enricher: enricher(),
            clock,
            slices: vec!["system.slice".into(), "user.slice".into()],
            units: Default::default(),
        }),
        // Without rtnetlink the tracker never opens a namespace: the pids
        // and CNI_NETNS paths in fuzzed records are arbitrary.
        Box::new(netns::Handler {
            emitter: emitter.clone(),
            stats: t.probe("netns"),
            enricher: enricher(),
            clock,
            tracker: netns::Tracker::new(false),
        }),
    ];
    World {
        handlers,
        batches,
        emitter,
        xdp_names: Arc::new([(1, "lo".to_string())].into_iter().collect()),
        clock,
        memory: Default::default(),
    }
}

/// One read of the memory-usage map: 28-byte entries (cgroup id u64,
/// allocator u32, allocations u64, bytes u64), as the producer sums them.
fn memory_sums(totals: &mut memory::Totals, record: &[u8]) {
    let u64_at = |b: &[u8], i: usize| {
        u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
    };
    let read: Vec<(memory::Key, memory::Sums)> = record
        .chunks_exact(28)
        .map(|e| {
            let alloc = u32::from_le_bytes(e[8..12].try_into().expect("4 bytes"));
            ((u64_at(e, 0), alloc), (u64_at(e, 12), u64_at(e, 20)))
        })
        .collect();
    let half = record.len() / 2;
    let name = |b: &[u8]| {
        let raw: Vec<core::ffi::c_char> = b.iter().map(|c| *c as core::ffi::c_char).collect();
        tapio::probes::cstr(&raw, raw.len())
    };
    let (leaf, parent) = (name(&record[..half]), name(&record[half..]));
    // Past MAX_SERIES the overflow path runs; start over well after it so
    // the sums below stay cheap.
    if totals.series.len() > memory::MAX_SERIES + 64 {
        *totals = Default::default();
    }
    let sum = |t: &memory::Totals| {
        t.series.values().fold((0u128, 0u128), |(a, b), (x, y)| {
            (a + u128::from(*x), b + u128::from(*y))
        })
    };
    let (before, n) = (sum(totals), totals.series.len());
    totals.update(&read, |id| match id % 3 {
        0 => tapio::enrich::cgroup::from_names(&leaf, &parent),
        1 => tapio::enrich::cgroup::from_names("sshd.service", "system.slice"),
        _ => Default::default(),
    });
    let after = sum(totals);
    assert!(
        after.0 >= before.0 && after.1 >= before.1 && totals.series.len() >= n,
        "a memory total went down"
    );
    for s in totals.series.keys().take(4) {
        let _ = memory::attributes(s, 100);
    }
}

thread_local! {
    static WORLD: std::cell::RefCell<World> = std::cell::RefCell::new(world());
}

fuzz_target!(|data: &[u8]| {
    WORLD.with(|w| {
        let w = &mut *w.borrow_mut();
        let mut rest = data;
        while rest.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let record = &rest[2..2 + n];
            rest = &rest[2 + n..];
            for h in w.handlers.iter_mut() {
                h.handle(record);
            }
            if let Ok(m) = xdp::decode(record, &w.xdp_names) {
                let clock = &w.clock;
                tapio::encode_log!(w.emitter, |enc| xdp::otlp::ddos_mitigation(
                    enc, &m, clock, 0
                ));
            }
            memory_sums(&mut w.memory, record);
        }
        for h in w.handlers.iter_mut() {
            h.on_wake();
        }
        for signal in [Signal::Logs, Signal::Traces] {
            while let Some((p, _)) = w.batches.take(signal) {
                // Every batch is a request the collector must be able to read.
                if let tapio::export::sink::Payload::Encoded(e) = &p {
                    assert!(e.decode().is_ok(), "an encoded batch does not decode");
                }
                w.batches.recycle(p);
            }
        }
    });
});
