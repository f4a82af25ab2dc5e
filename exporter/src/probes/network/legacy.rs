//! The network records' mapping as it was before the direct encoder (owned
//! events built into opentelemetry-proto messages), kept to measure against
//! and to compare with; see `process::legacy`.

use super::decode::{Outcome, Tuple};
use crate::clock::WallClock;
use crate::otel::{
    kv_f64, kv_int, kv_str,
    names::{attr, event, span},
    traces::IdGenerator,
};
use crate::probes::legacy::{common_attrs, record, ProcessContext};
use crate::probes::{process::Common, DecodeError};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    logs::v1::{LogRecord, SeverityNumber},
    trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_tcp_close, tapio_tcp_connect,
};

pub use super::decode::errno_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The process that called connect().
    pub common: Common,
    pub start_boot_ns: u64,
    pub end_boot_ns: u64,
    pub outcome: Outcome,
    pub errno: i32,
    pub sock_cookie: u64,
    pub tuple: Tuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The connecting process (outbound) or the closing task (inbound,
    /// pid 0 when it closed in softirq).
    pub common: Common,
    pub established_boot_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub srtt_us: u32,
    pub inbound: bool,
    pub sock_cookie: u64,
    pub tuple: Tuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkEvent {
    Connect(Connect),
    Close(Close),
}

impl NetworkEvent {
    pub fn common(&self) -> &Common {
        match self {
            NetworkEvent::Connect(c) => &c.common,
            NetworkEvent::Close(c) => &c.common,
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<NetworkEvent, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_TCP_CONNECT as u32 {
        let r: tapio_tcp_connect = read_record(bytes)?;
        Ok(NetworkEvent::Connect(Connect {
            common: Common::from(&r.hdr),
            start_boot_ns: r.start_ns,
            end_boot_ns: r.end_ns,
            outcome: Outcome::from_raw(r.outcome),
            errno: r.error,
            sock_cookie: r.sock_cookie,
            tuple: Tuple::from(&r.tuple),
        }))
    } else if k == kind::TAPIO_EVENT_TCP_CLOSE as u32 {
        let r: tapio_tcp_close = read_record(bytes)?;
        Ok(NetworkEvent::Close(Close {
            common: Common::from(&r.hdr),
            established_boot_ns: r.established_ns,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            srtt_us: r.srtt_us,
            inbound: r.inbound != 0,
            sock_cookie: r.sock_cookie,
            tuple: Tuple::from(&r.tuple),
        }))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

/// server.*/client.* and network.* for a connection, from the client side.
pub fn connection_attrs(t: &Tuple, outbound: bool) -> Vec<KeyValue> {
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
    attributes.extend(common_attrs(&c.common, ctx));
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

/// `network.connection.close`: direction, lifetime, bytes, RTT.
pub fn connection_close(
    c: &Close,
    ctx: &ProcessContext,
    clock: &WallClock,
    observed: u64,
) -> LogRecord {
    let mut a = connection_attrs(&c.tuple, !c.inbound);
    if c.common.pid != 0 {
        a.extend(common_attrs(&c.common, ctx));
    }
    let dir = if c.inbound { "inbound" } else { "outbound" };
    let secs = c.common.ts_boot_ns.saturating_sub(c.established_boot_ns) as f64 / 1e9;
    a.push(kv_str(attr::TAPIO_CONNECTION_DIRECTION, dir));
    a.push(kv_f64(attr::TAPIO_CONNECTION_DURATION, secs));
    a.push(kv_int(
        attr::TAPIO_TCP_BYTES_SENT,
        c.bytes_sent.min(i64::MAX as u64) as i64,
    ));
    a.push(kv_int(
        attr::TAPIO_TCP_BYTES_RECEIVED,
        c.bytes_received.min(i64::MAX as u64) as i64,
    ));
    a.push(kv_f64(attr::TAPIO_TCP_SRTT, f64::from(c.srtt_us) / 1e6));
    let body = format!(
        "{dir} tcp {}:{} -> {}:{} closed after {secs:.3}s, {} B sent, {} B received",
        c.tuple.local,
        c.tuple.local_port,
        c.tuple.remote,
        c.tuple.remote_port,
        c.bytes_sent,
        c.bytes_received
    );
    record(
        event::NETWORK_CONNECTION_CLOSE,
        SeverityNumber::Info,
        clock.to_unix_ns(c.common.ts_boot_ns),
        observed,
        body,
        a,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::network::fixtures::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use tapio_shared::tapio_tcp_outcome as oc;

    fn attr_of<'a>(a: &'a [KeyValue], k: &str) -> Option<&'a Value> {
        a.iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn close_record_has_direction_bytes_and_duration() {
        let b = close_bytes(true, v4_tuple([127, 0, 0, 1], 8080, [127, 0, 0, 1], 5555));
        let NetworkEvent::Close(c) = decode(&b).unwrap() else {
            panic!()
        };
        let r = connection_close(
            &c,
            &ProcessContext::default(),
            &WallClock::with_offset(0),
            0,
        );
        assert_eq!(r.event_name, "network.connection.close");
        assert_eq!(
            attr_of(&r.attributes, "tapio.connection.direction"),
            Some(&Value::StringValue("inbound".into()))
        );
        assert_eq!(
            attr_of(&r.attributes, "server.port"),
            Some(&Value::IntValue(8080))
        );
        assert_eq!(
            attr_of(&r.attributes, "client.port"),
            Some(&Value::IntValue(5555))
        );
        assert_eq!(
            attr_of(&r.attributes, "tapio.tcp.bytes_sent"),
            Some(&Value::IntValue(100))
        );
        assert_eq!(
            attr_of(&r.attributes, "tapio.connection.duration"),
            Some(&Value::DoubleValue(3.0))
        );
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
            attr_of(&s.attributes, "error.type"),
            Some(&Value::StringValue("refused".into()))
        );
        assert_eq!(
            attr_of(&s.attributes, "tapio.errno"),
            Some(&Value::StringValue("ECONNREFUSED".into()))
        );
        assert_eq!(
            attr_of(&s.attributes, "server.port"),
            Some(&Value::IntValue(9))
        );
        assert_eq!(
            attr_of(&s.attributes, "client.port"),
            Some(&Value::IntValue(40000))
        );
        assert_eq!(
            attr_of(&s.attributes, "network.type"),
            Some(&Value::StringValue("ipv4".into()))
        );
        assert_eq!(
            attr_of(&s.attributes, "process.pid"),
            Some(&Value::IntValue(1234))
        );
    }
}
