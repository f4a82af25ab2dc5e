//! Network records → OTLP: `tcp.connect` spans and
//! `network.connection.close` log records, written straight from the kernel
//! record into protobuf. The one place these records' names and shapes are
//! decided.

use super::decode::{Errno, Outcome, Tuple};
use crate::clock::WallClock;
use crate::enrich::Context;
use crate::otel::{
    names::{attr, event, span},
    traces::IdGenerator,
    wire::{Encode, RecordWriter, Severity, StatusCode, SPAN_KIND_CLIENT},
};
use crate::probes::process::otlp::process_attrs;
use tapio_shared::{tapio_tcp_close, tapio_tcp_connect};

/// server.*/client.* and network.* of a connection, from the client side.
pub fn connection_attrs(w: &mut impl RecordWriter, t: &Tuple, outbound: bool, transport: &str) {
    let (server, server_port, client, client_port) = if outbound {
        (t.remote, t.remote_port, t.local, t.local_port)
    } else {
        (t.local, t.local_port, t.remote, t.remote_port)
    };
    w.str(attr::NETWORK_TRANSPORT, transport);
    w.str(attr::NETWORK_TYPE, t.network_type());
    w.ip(attr::SERVER_ADDRESS, server);
    w.int(attr::SERVER_PORT, i64::from(server_port));
    w.ip(attr::CLIENT_ADDRESS, client);
    w.int(attr::CLIENT_PORT, i64::from(client_port));
}

/// `tcp.connect`: SYN sent to established or failed; an error span with
/// `error.type` and the errno when it failed.
pub fn connect(
    enc: &mut impl Encode,
    r: &tapio_tcp_connect,
    ctx: &Context<'_>,
    clock: &WallClock,
    ids: &mut IdGenerator,
) {
    let t = Tuple::from(&r.tuple);
    let (trace_id, span_id) = (ids.trace_id_bytes(), ids.span_id_bytes());
    let mut w = enc.span(
        &trace_id,
        &span_id,
        span::TCP_CONNECT,
        SPAN_KIND_CLIENT,
        clock.to_unix_ns(r.start_ns),
        clock.to_unix_ns(r.end_ns),
    );
    connection_attrs(&mut w, &t, true, "tcp");
    process_attrs(&mut w, &r.hdr, ctx);
    let outcome = Outcome::from_raw(r.outcome);
    let Some(e) = outcome.error_type() else {
        w.finish_span(StatusCode::Ok, format_args!(""));
        return;
    };
    w.str(attr::ERROR_TYPE, e);
    let errno = Errno(r.error);
    if r.error != 0 {
        w.display(attr::TAPIO_ERRNO, &errno);
    }
    let what = match outcome {
        Outcome::Refused => "connection refused",
        Outcome::Timeout => "connect timed out",
        Outcome::Unreachable => "destination unreachable",
        Outcome::Cancelled => "closed before the handshake finished",
        _ => "connect failed",
    };
    w.finish_span(
        StatusCode::Error,
        format_args!("{what} ({errno}) to {}:{}", t.remote, t.remote_port),
    );
}

/// `network.connection.close`: direction, lifetime, bytes, RTT. Inbound
/// connections closed in softirq (pid 0) carry no process.
pub fn close(
    enc: &mut impl Encode,
    r: &tapio_tcp_close,
    ctx: &Context<'_>,
    clock: &WallClock,
    observed: u64,
) {
    let t = Tuple::from(&r.tuple);
    let inbound = r.inbound != 0;
    let dir = if inbound { "inbound" } else { "outbound" };
    let secs = r.hdr.ts_ns.saturating_sub(r.established_ns) as f64 / 1e9;
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    w.body(format_args!(
        "{dir} tcp {}:{} -> {}:{} closed after {secs:.3}s, {} B sent, {} B received",
        t.local, t.local_port, t.remote, t.remote_port, r.bytes_sent, r.bytes_received
    ));
    connection_attrs(&mut w, &t, !inbound, "tcp");
    if r.hdr.pid != 0 {
        process_attrs(&mut w, &r.hdr, ctx);
    }
    w.str(attr::TAPIO_CONNECTION_DIRECTION, dir);
    w.f64(attr::TAPIO_CONNECTION_DURATION, secs);
    w.int(
        attr::TAPIO_TCP_BYTES_SENT,
        r.bytes_sent.min(i64::MAX as u64) as i64,
    );
    w.int(
        attr::TAPIO_TCP_BYTES_RECEIVED,
        r.bytes_received.min(i64::MAX as u64) as i64,
    );
    w.f64(attr::TAPIO_TCP_SRTT, f64::from(r.srtt_us) / 1e6);
    w.finish_log(observed, event::NETWORK_CONNECTION_CLOSE);
}

#[cfg(test)]
mod tests {
    //! The direct encoder against the mapping it replaced (`legacy`), on
    //! the same fixtures and ids: equal bytes, equal decoded messages.
    use super::super::{decode::*, fixtures::*, legacy};
    use super::*;
    use crate::enrich::cgroup;
    use crate::otel::wire::Encoder;
    use crate::probes::legacy::ProcessContext;
    use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};
    use prost::Message;
    use tapio_shared::{tapio_family, tapio_tcp_outcome as oc, tapio_tcp_tuple};

    fn body(enc: &Encoder) -> &[u8] {
        let mut b = &enc.record()[1..];
        prost::encoding::decode_varint(&mut b).unwrap();
        b
    }

    fn encoded<M: Message>(m: &M) -> Vec<u8> {
        let mut v = Vec::new();
        prost::encoding::message::encode(crate::otel::wire::RECORD_FIELD, m, &mut v);
        v
    }

    fn tuples() -> Vec<tapio_tcp_tuple> {
        let mut t6 = tapio_tcp_tuple {
            family: tapio_family::TAPIO_AF_INET6 as u16,
            sport: 1,
            dport: 443,
            ..Default::default()
        };
        t6.daddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        t6.saddr[15] = 1;
        vec![v4_tuple([127, 0, 0, 1], 40000, [198, 18, 0, 9], 9), t6]
    }

    #[test]
    fn connect_matches_the_old_mapping() {
        let clock = WallClock::with_offset(7_000_000_000);
        let wl = cgroup::from_names(&format!("docker-{}.scope", "b".repeat(64)), "system.slice");
        for t in tuples() {
            for (outcome, err) in [
                (oc::TAPIO_TCP_OK, 0),
                (oc::TAPIO_TCP_REFUSED, 111),
                (oc::TAPIO_TCP_TIMEOUT, 110),
                (oc::TAPIO_TCP_UNREACHABLE, 113),
                (oc::TAPIO_TCP_CANCELLED, 0),
                (99, 5),
            ] {
                let b = connect_bytes(outcome, err, t);
                let Ok(Record::Connect(r)) = decode(&b) else {
                    panic!()
                };
                let Ok(legacy::NetworkEvent::Connect(c)) = legacy::decode(&b) else {
                    panic!()
                };
                let ctx = Context {
                    owner: Some("root"),
                    workload: Some(&wl),
                };
                let old_ctx = ProcessContext {
                    owner: Some("root".into()),
                    workload: wl.clone(),
                    info: None,
                };
                let mut enc = Encoder::default();
                connect(&mut enc, &r, &ctx, &clock, &mut IdGenerator::seeded(9));
                let old = legacy::tcp_connect(&c, &old_ctx, &clock, &mut IdGenerator::seeded(9));
                assert_eq!(Span::decode(body(&enc)).unwrap(), old);
                assert_eq!(enc.record(), &encoded(&old)[..]);
            }
        }
    }

    #[test]
    fn close_matches_the_old_mapping() {
        let clock = WallClock::with_offset(0);
        for t in tuples() {
            for (inbound, pid) in [(true, 1234), (false, 1234), (true, 0)] {
                let mut b = close_bytes(inbound, t);
                let off = core::mem::offset_of!(tapio_shared::tapio_event_header, pid);
                b[off..off + 4].copy_from_slice(&u32::to_ne_bytes(pid));
                let Ok(Record::Close(r)) = decode(&b) else {
                    panic!()
                };
                let Ok(legacy::NetworkEvent::Close(c)) = legacy::decode(&b) else {
                    panic!()
                };
                let mut enc = Encoder::default();
                close(&mut enc, &r, &Context::default(), &clock, 11);
                let old = legacy::connection_close(&c, &ProcessContext::default(), &clock, 11);
                assert_eq!(LogRecord::decode(body(&enc)).unwrap(), old);
                assert_eq!(enc.record(), &encoded(&old)[..]);
            }
        }
    }
}
