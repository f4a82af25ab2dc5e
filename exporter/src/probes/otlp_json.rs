//! Every directly written record kind, written as OTLP/JSON by the same
//! mapping call that writes its protobuf, on the probes' fixtures: the JSON
//! must be the message the protobuf is (typed values equal, and the JSON
//! members what opentelemetry-proto's serde writes for those bytes).

use crate::clock::WallClock;
use crate::enrich::{cgroup, Context, ProcessInfo};
use crate::otel::json::{self, tests::assert_same, tests::proto_body};
use crate::otel::{traces::IdGenerator, wire};
use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};

/// Run `$write` (a mapping call on `$e`) with both encoders and compare.
macro_rules! same_json {
    ($M:ty, |$e:ident| $write:expr) => {{
        let mut p = wire::Encoder::default();
        let mut j = json::Encoder::default();
        {
            let $e = &mut p;
            $write;
        }
        {
            let $e = &mut j;
            $write;
        }
        assert_same::<$M>(j.json(), proto_body(p.record()));
    }};
}

fn docker() -> cgroup::Workload {
    cgroup::from_names(&format!("docker-{}.scope", "b".repeat(64)), "system.slice")
}

#[test]
fn process_records() {
    use super::process::{decode::*, fixtures, otlp};
    let clock = WallClock::with_offset(1_000_000_000_000);
    let wl = docker();
    let ctx = Context {
        owner: Some("root"),
        workload: Some(&wl),
        generation: 0,
    };
    for (args, flags) in [
        (&b"/bin/sh\0-c\0echo \"hi\"\\\0"[..], 0),
        (
            b"a\0\0b\xff\0\x01",
            tapio_shared::tapio_exec_flags::TAPIO_EXEC_ARGS_TRUNCATED,
        ),
    ] {
        let bytes = fixtures::exec_bytes(args, flags);
        let Record::Exec(r) = decode(&bytes).unwrap() else {
            panic!()
        };
        let info = ProcessInfo {
            executable_path: "/bin/sh".into(),
            command_line: CommandLine(r.args()).to_string(),
        };
        same_json!(LogRecord, |e| otlp::exec(e, &r, &info, &ctx, &clock, 42));
    }
    for (code, sig) in [(7, 0), (0, 9), (0, 77)] {
        let bytes = fixtures::exit_bytes(code, sig);
        let Record::Exit(r) = decode(&bytes).unwrap() else {
            panic!()
        };
        same_json!(LogRecord, |e| otlp::exit(e, &r, None, &ctx, &clock, 3));
    }
    let bytes = fixtures::fork_bytes();
    let Record::Fork(r) = decode(&bytes).unwrap() else {
        panic!()
    };
    same_json!(LogRecord, |e| otlp::fork(
        e,
        &r,
        &Context::default(),
        &clock,
        0
    ));
}

#[test]
fn network_records() {
    use super::network::{decode::*, fixtures::*, otlp};
    use tapio_shared::{tapio_family, tapio_tcp_outcome as oc, tapio_tcp_tuple};
    let clock = WallClock::with_offset(7_000_000_000);
    let wl = docker();
    let ctx = Context {
        owner: Some("root"),
        workload: Some(&wl),
        generation: 0,
    };
    let mut t6 = tapio_tcp_tuple {
        family: tapio_family::TAPIO_AF_INET6 as u16,
        sport: 1,
        dport: 443,
        ..Default::default()
    };
    t6.daddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    for t in [v4_tuple([127, 0, 0, 1], 40000, [198, 18, 0, 9], 9), t6] {
        for (outcome, err) in [(oc::TAPIO_TCP_OK, 0), (oc::TAPIO_TCP_REFUSED, 111)] {
            let b = connect_bytes(outcome, err, t);
            let Ok(Record::Connect(r)) = decode(&b) else {
                panic!()
            };
            same_json!(Span, |e| otlp::connect(
                e,
                &r,
                &ctx,
                &clock,
                &mut IdGenerator::seeded(9)
            ));
        }
        for inbound in [true, false] {
            let b = close_bytes(inbound, t);
            let Ok(Record::Close(r)) = decode(&b) else {
                panic!()
            };
            same_json!(LogRecord, |e| otlp::close(e, &r, &ctx, &clock, 11));
        }
    }
}

#[test]
fn dns_records() {
    use super::dns::{decode::fixtures::packet, otlp, Key, Lookup, Pending, Transport};
    use crate::dnsmsg::{self, build};
    let clock = WallClock::with_offset(3_000_000_000);
    let wl = docker();
    let ctx = Context {
        owner: Some("root"),
        workload: Some(&wl),
        generation: 0,
    };
    let bytes = packet(
        false,
        &build::query(7, "alias.tapio.test", 1),
        1_000_000_000,
    );
    let p = super::dns::decode(&bytes).unwrap();
    let mut nx = build::header(7, 0x8183, 1, 0);
    nx.extend(build::name("missing.tapio.test"));
    nx.extend_from_slice(&[0, 1, 0, 1]);
    let full = build::cname_response(7, "alias.tapio.test", "www.tapio.test", [1, 2, 3, 4]);
    // A lookup that expired after the kernel lost events ends as
    // `events_lost`, not `timeout`: both statuses go through the writers.
    for (response, lost) in [(None, 0), (None, 3), (Some(full), 0), (Some(nx), 0)] {
        let msg = response.as_ref().map(|b| dnsmsg::parse(b, 16).unwrap());
        let l = Lookup {
            key: Key {
                tuple: p.tuple,
                transport: Transport::Udp,
                id: 7,
            },
            query: Pending {
                hdr: p.hdr,
                sent_boot_ns: p.hdr.ts_ns,
                name: "alias.tapio.test".into(),
                qtype: 1,
                lost_at_send: 0,
            },
            response: msg.as_ref(),
            end_boot_ns: 1_004_000_000,
            lost_since_sent: lost,
        };
        same_json!(Span, |e| otlp::query(
            e,
            &l,
            &ctx,
            16,
            &clock,
            &mut IdGenerator::seeded(4)
        ));
    }
}

#[test]
fn kernel_records() {
    use super::kernel::{decode, decode_io_uring_create, fixtures, otlp};
    let clock = WallClock::with_offset(5);
    let wl = docker();
    let ctx = Context {
        owner: Some("app"),
        workload: Some(&wl),
        generation: 0,
    };
    for b in [fixtures::tp_btf_bytes(), fixtures::pid_only_bytes()] {
        let k = decode(&b).unwrap();
        same_json!(LogRecord, |e| otlp::oom_kill(e, &k, &ctx, &clock, 3));
    }
    let mut r = tapio_shared::tapio_io_uring_create {
        fd: 5,
        sq_entries: 64,
        cq_entries: 128,
        flags: 1 | 2,
        ..Default::default()
    };
    r.hdr.kind = tapio_shared::tapio_event_kind::TAPIO_EVENT_IO_URING_CREATE as u32;
    let b = tapio_shared::as_bytes(&r).to_vec();
    let c = decode_io_uring_create(&b).unwrap();
    same_json!(LogRecord, |e| otlp::io_uring_create(e, &c, &ctx, &clock, 9));
}

#[test]
fn security_records() {
    use super::security::otlp::{self, fixtures};
    let clock = WallClock::with_offset(3_000);
    let wl = docker();
    let contexts = [
        Context::default(),
        Context {
            owner: Some("app"),
            workload: Some(&wl),
            generation: 0,
        },
    ];
    for ctx in &contexts {
        for c in fixtures::credentials() {
            same_json!(LogRecord, |e| otlp::credentials(e, &c, ctx, &clock, 9));
        }
        for ev in fixtures::events() {
            for extra in fixtures::extras() {
                same_json!(LogRecord, |e| otlp::event(e, &ev, &extra, ctx, &clock, 9));
            }
        }
    }
}

#[test]
fn agent_records() {
    use crate::supervise::{failure_log, Failure, Task};
    use crate::telemetry::{config_reload, ReloadResult, ReloadSource};
    for source in ReloadSource::ALL {
        for result in ReloadResult::ALL {
            for why in [None, Some("probes.lsm: \"x\" is not a hook")] {
                same_json!(LogRecord, |e| config_reload(
                    e,
                    source,
                    "/etc/tapio/config.yaml",
                    result,
                    why,
                    77
                ));
            }
        }
    }
    for probe in [None, Some("process")] {
        let f = Failure {
            task: Task {
                kind: "reader",
                probe,
            },
            why: "panicked: \"boom\"".into(),
        };
        same_json!(LogRecord, |e| failure_log(e, &f, 5));
    }
}
