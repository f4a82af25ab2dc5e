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
    let lived_ns = r.hdr.ts_ns.saturating_sub(r.established_ns);
    let secs = lived_ns as f64 / 1e9;
    let mut w = enc.log(clock.to_unix_ns(r.hdr.ts_ns), Severity::Info);
    let mut text = Text::default();
    close_body(
        &mut text,
        inbound,
        &t,
        lived_ns,
        r.bytes_sent,
        r.bytes_received,
    );
    w.body_concat(&[text.as_str()]);
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

/// A close log's body: "{dir} tcp {local}:{port} -> {remote}:{port}
/// closed after {secs:.3}s, {sent} B sent, {received} B received", the
/// text `format_args!` made, written without the formatter (it was a fifth
/// of a busy agent's instructions: two close logs per connection, each with
/// two addresses, four integers and a float through `core::fmt`).
fn close_body(out: &mut Text, inbound: bool, t: &Tuple, lived_ns: u64, sent: u64, received: u64) {
    out.push(if inbound { b"inbound" } else { b"outbound" });
    out.push(b" tcp ");
    out.ip(t.local);
    out.push(b":");
    out.uint(u64::from(t.local_port));
    out.push(b" -> ");
    out.ip(t.remote);
    out.push(b":");
    out.uint(u64::from(t.remote_port));
    out.push(b" closed after ");
    out.secs3(lived_ns);
    out.push(b"s, ");
    out.uint(sent);
    out.push(b" B sent, ");
    out.uint(received);
    out.push(b" B received");
}

/// ASCII text in a stack buffer (a close body is at most ~170 bytes: two
/// IPv6 addresses and three 20-digit numbers).
struct Text {
    buf: [u8; 256],
    len: usize,
    /// A piece that is not ASCII was written (see `as_str`).
    non_ascii: bool,
}

impl Default for Text {
    fn default() -> Self {
        Self {
            buf: [0; 256],
            len: 0,
            non_ascii: false,
        }
    }
}

impl Text {
    /// ASCII only (`as_str` relies on it): literals, digits, addresses;
    /// other text goes through `write_str`.
    fn push(&mut self, b: &[u8]) {
        debug_assert!(b.is_ascii());
        self.put(b);
    }

    fn put(&mut self, b: &[u8]) {
        let end = (self.len + b.len()).min(self.buf.len());
        let (dst, b) = (&mut self.buf[self.len..end], &b[..end - self.len]);
        // The pieces are 1–20 bytes: two fixed-size moves instead of a
        // memcpy call (see `wire::put`).
        macro_rules! two_moves {
            ($k:literal) => {
                if let (Some(x), Some(y)) = (b.first_chunk::<$k>(), b.last_chunk::<$k>()) {
                    let n = dst.len();
                    dst[..$k].copy_from_slice(x);
                    dst[n - $k..].copy_from_slice(y);
                    self.len = end;
                    return;
                }
            };
        }
        match b.len() {
            4..=7 => two_moves!(4),
            8..=16 => two_moves!(8),
            17..=32 => two_moves!(16),
            _ => {}
        }
        dst.copy_from_slice(b);
        self.len = end;
    }

    fn uint(&mut self, v: u64) {
        // itoa: two digits per step from a table, half the digit loop's
        // instructions (five integers in every close body).
        self.push(itoa::Buffer::new().format(v).as_bytes());
    }

    fn ip(&mut self, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let mut tmp = [0u8; 15];
                let n = crate::otel::wire::ipv4_text(v4.octets(), &mut tmp);
                self.push(&tmp[..n]);
            }
            v6 => {
                use std::fmt::Write;
                let _ = write!(self, "{v6}");
            }
        }
    }

    /// `{:.3}` of `ns as f64 / 1e9`, from integers where that is exactly
    /// what the formatter prints: below 2^20 s the float is within 2^-33 of
    /// ns/1e9, and ns/1e9 is at least 1e-9 from a rounding boundary unless
    /// it sits on one (ns % 1e6 == 5e5), where the formatter decides.
    fn secs3(&mut self, ns: u64) {
        const LIMIT_NS: u64 = (1 << 20) * 1_000_000_000;
        if ns < LIMIT_NS && ns % 1_000_000 != 500_000 {
            let ms = (ns + 500_000) / 1_000_000;
            self.uint(ms / 1000);
            let frac = ms % 1000;
            self.push(&[
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
        } else {
            use std::fmt::Write;
            let _ = write!(self, "{:.3}", ns as f64 / 1e9);
        }
    }

    fn as_str(&self) -> &str {
        let b = &self.buf[..self.len];
        if self.non_ascii {
            // Only through `write_str` (an IPv6 address: ASCII too); a cut
            // (never, at this size) may split a character there.
            return std::str::from_utf8(b).unwrap_or_default();
        }
        // SAFETY: every byte pushed was ASCII (`push` takes ASCII pieces
        // only; `write_str` sets `non_ascii` otherwise), so is any prefix.
        // Not `from_utf8`: validating every close body again was 1.2 % of
        // a loaded agent's instructions.
        debug_assert!(b.is_ascii());
        unsafe { std::str::from_utf8_unchecked(b) }
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.non_ascii |= !s.is_ascii();
        self.put(s.as_bytes());
        Ok(())
    }
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
                    generation: 0,
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

    /// The close body written by hand is the formatter's text, rounding
    /// of the lifetime included (ties and huge values go to the formatter).
    #[test]
    fn close_body_is_the_formatted_text() {
        let v6 = Tuple::from(&tuples()[1]);
        let v4 = Tuple::from(&tuples()[0]);
        let mut lives: Vec<u64> = vec![
            0,
            1,
            499_999,
            500_000,
            500_001,
            999_999,
            1_000_000,
            1_000_500_000,
            1_234_567_890,
            9_999_500_000,
            9_999_499_999,
            (1 << 20) * 1_000_000_000 - 1,
            (1 << 20) * 1_000_000_000,
            u64::MAX / 3,
            u64::MAX,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lives.push(x % 100_000_000_000_000);
            lives.push((x % 1_000_000) * 1_000_000 + 500_000 - (x >> 60));
        }
        for t in [v4, v6] {
            for (i, ns) in lives.iter().enumerate() {
                let (sent, rcvd) = (lives[(i + 1) % lives.len()], u64::MAX - *ns);
                let secs = *ns as f64 / 1e9;
                let want = format!(
                    "outbound tcp {}:{} -> {}:{} closed after {secs:.3}s, {} B sent, {} B received",
                    t.local, t.local_port, t.remote, t.remote_port, sent, rcvd
                );
                let mut got = Text::default();
                close_body(&mut got, false, &t, *ns, sent, rcvd);
                assert_eq!(got.as_str(), want, "{ns} ns");
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
