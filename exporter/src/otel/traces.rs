//! Typed probe events → OTLP spans (CLIENT, kernel start/end times).

use super::{kv_int, kv_str, logs::ProcessContext, names::attr, names::span};
use crate::clock::WallClock;
use crate::dnsmsg;
use crate::probes::dns::Lookup;
use crate::probes::network::{errno_name, Connect, Outcome, Tuple};
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
};

/// Trace and span ids. Every span Tapio makes is a root span, so ids only
/// need to be unique, not secret: SplitMix64 seeded from the clock and pid.
pub struct IdGenerator(u64);

impl Default for IdGenerator {
    fn default() -> Self {
        Self(
            crate::clock::unix_ns()
                ^ (u64::from(std::process::id()) << 32)
                ^ crate::clock::boot_ns().rotate_left(17),
        )
    }
}

impl IdGenerator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform u32, for sampling decisions.
    pub fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    pub fn trace_id(&mut self) -> Vec<u8> {
        let mut v = self.next().to_be_bytes().to_vec();
        v.extend_from_slice(&self.next().to_be_bytes());
        v
    }

    pub fn span_id(&mut self) -> Vec<u8> {
        self.next().to_be_bytes().to_vec()
    }
}

/// server.*/client.* and network.* for a connection, from the client side.
pub(crate) fn connection_attrs(t: &Tuple, outbound: bool) -> Vec<KeyValue> {
    let (server, server_port, client, client_port) = if outbound {
        (t.remote, t.remote_port, t.local, t.local_port)
    } else {
        (t.local, t.local_port, t.remote, t.remote_port)
    };
    vec![
        kv_str(attr::NETWORK_TRANSPORT, "tcp"),
        kv_str(attr::NETWORK_TYPE, t.network_type()),
        kv_str(attr::SERVER_ADDRESS, server.to_string()),
        kv_int(attr::SERVER_PORT, i64::from(server_port)),
        kv_str(attr::CLIENT_ADDRESS, client.to_string()),
        kv_int(attr::CLIENT_PORT, i64::from(client_port)),
    ]
}

pub fn tcp_connect(
    c: &Connect,
    ctx: &ProcessContext,
    clock: &WallClock,
    ids: &mut IdGenerator,
) -> Span {
    let mut attributes = connection_attrs(&c.tuple, true);
    attributes.extend(super::logs::common_attrs(&c.common, ctx));
    let status = match c.outcome.error_type() {
        None => Status {
            code: StatusCode::Ok as i32,
            ..Default::default()
        },
        Some(e) => {
            attributes.push(kv_str(attr::ERROR_TYPE, e));
            let errno = errno_name(c.errno);
            if !errno.is_empty() {
                attributes.push(kv_str(attr::TAPIO_ERRNO, errno.clone()));
            }
            let what = match c.outcome {
                Outcome::Refused => "connection refused",
                Outcome::Timeout => "connect timed out",
                Outcome::Unreachable => "destination unreachable",
                Outcome::Cancelled => "closed before the handshake finished",
                _ => "connect failed",
            };
            Status {
                code: StatusCode::Error as i32,
                message: format!(
                    "{what} ({errno}) to {}:{}",
                    c.tuple.remote, c.tuple.remote_port
                ),
            }
        }
    };
    Span {
        trace_id: ids.trace_id(),
        span_id: ids.span_id(),
        name: span::TCP_CONNECT.to_string(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: clock.to_unix_ns(c.start_boot_ns),
        end_time_unix_nano: clock.to_unix_ns(c.end_boot_ns),
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

/// server.*/client.*/network.* of a DNS lookup (the tuple is oriented
/// client -> server already).
fn dns_connection_attrs(t: &Tuple, transport: &str) -> Vec<KeyValue> {
    let mut a = connection_attrs(t, true);
    a[0] = kv_str(attr::NETWORK_TRANSPORT, transport);
    a
}

/// `dns.query`: query sent to response received (or timeout).
pub fn dns_query(l: &Lookup, max_answers: usize, clock: &WallClock, ids: &mut IdGenerator) -> Span {
    let mut attributes = dns_connection_attrs(&l.key.tuple, l.key.transport.name());
    attributes.extend(super::logs::common_attrs(&l.query.common, &l.query.ctx));
    attributes.push(kv_str(attr::DNS_QUESTION_NAME, l.query.name.clone()));
    attributes.push(kv_str(
        attr::DNS_QUESTION_TYPE,
        dnsmsg::type_name(l.query.qtype),
    ));
    attributes.push(kv_int(attr::TAPIO_DNS_ID, i64::from(l.key.id)));
    if let Some(m) = &l.response {
        attributes.push(kv_str(attr::DNS_RESPONSE_CODE, dnsmsg::rcode_name(m.rcode)));
        let answers: Vec<AnyValue> = m
            .answers
            .iter()
            .take(max_answers)
            .map(|a| AnyValue {
                value: Some(Value::StringValue(format!(
                    "{} {} {}",
                    a.name,
                    dnsmsg::type_name(a.rtype),
                    a.data
                ))),
            })
            .collect();
        attributes.push(KeyValue {
            key: attr::DNS_ANSWERS.to_string(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: answers })),
            }),
            ..Default::default()
        });
        if m.answers_cut {
            attributes.push(super::kv_bool(attr::TAPIO_DNS_ANSWERS_CUT, true));
        }
    }
    if let Some(e) = l.error_type() {
        attributes.push(kv_str(attr::ERROR_TYPE, e));
    }
    let status = if l.failed() {
        let what = match &l.response {
            None => format!("no response within {:?}", crate::probes::dns::duration(l)),
            Some(m) => format!("server answered {}", dnsmsg::rcode_name(m.rcode)),
        };
        Status {
            code: StatusCode::Error as i32,
            message: format!("{what} for {}", l.query.name),
        }
    } else {
        Status::default()
    };
    Span {
        trace_id: ids.trace_id(),
        span_id: ids.span_id(),
        name: span::DNS_QUERY.to_string(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: clock.to_unix_ns(l.query.sent_boot_ns),
        end_time_unix_nano: clock.to_unix_ns(l.end_boot_ns),
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::network::{decode, fixtures::*, NetworkEvent};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use tapio_shared::tapio_tcp_outcome as oc;

    fn attr_of<'a>(s: &'a Span, k: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn refused_connect_is_an_error_client_span() {
        let b = connect_bytes(
            oc::TAPIO_TCP_REFUSED,
            111,
            v4_tuple([127, 0, 0, 1], 40000, [127, 0, 0, 1], 9),
        );
        let NetworkEvent::Connect(c) = decode(&b).unwrap() else {
            panic!()
        };
        let s = tcp_connect(
            &c,
            &ProcessContext::default(),
            &WallClock::with_offset(0),
            &mut IdGenerator::default(),
        );
        assert_eq!(s.name, "tcp.connect");
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(
            (s.start_time_unix_nano, s.end_time_unix_nano),
            (5_000_000_000, 5_002_000_000)
        );
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        let st = s.status.as_ref().unwrap();
        assert_eq!(st.code, StatusCode::Error as i32);
        assert!(st.message.contains("refused"), "{}", st.message);
        assert_eq!(
            attr_of(&s, "error.type"),
            Some(&Value::StringValue("refused".into()))
        );
        assert_eq!(
            attr_of(&s, "tapio.errno"),
            Some(&Value::StringValue("ECONNREFUSED".into()))
        );
        assert_eq!(attr_of(&s, "server.port"), Some(&Value::IntValue(9)));
        assert_eq!(attr_of(&s, "client.port"), Some(&Value::IntValue(40000)));
        assert_eq!(
            attr_of(&s, "network.type"),
            Some(&Value::StringValue("ipv4".into()))
        );
        assert_eq!(attr_of(&s, "process.pid"), Some(&Value::IntValue(1234)));
    }

    #[test]
    fn ids_differ() {
        let mut g = IdGenerator::default();
        assert_ne!(g.trace_id(), g.trace_id());
        assert_ne!(g.span_id(), g.span_id());
    }
}
