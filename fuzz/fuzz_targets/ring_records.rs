//! Every ring-buffer record handler, over any bytes: a record's length and
//! every field (kind, lengths, enum values) are whatever the kernel side
//! wrote, so a program bug or a struct mismatch must cost a decode error,
//! never the agent.
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
use tapio::probes::{dns, kernel, lsm, network, process, security, tc, xdp};
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
            stats: t.probe("process"),
            enricher: enricher(),
            clock,
            config: Default::default(),
        }),
        Box::new(network::Handler {
            emitter: emitter.clone(),
            stats: t.probe("network"),
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
    ];
    World {
        handlers,
        batches,
        emitter,
        xdp_names: Arc::new([(1, "lo".to_string())].into_iter().collect()),
        clock,
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
