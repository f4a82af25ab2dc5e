//! The dns lookups' mapping as it was before the direct encoder (owned
//! lookups built into opentelemetry-proto messages), kept to measure
//! against and to compare with; see `process::legacy`.

use super::{Key, Transport};
use crate::clock::WallClock;
use crate::dnsmsg;
use crate::otel::{
    kv_bool, kv_int, kv_str,
    names::{attr, span},
    traces::IdGenerator,
};
use crate::probes::legacy::{common_attrs, ProcessContext};
use crate::probes::{
    network::legacy::connection_attrs, network::Tuple, process::Common, DecodeError,
};
use opentelemetry_proto::tonic::{
    common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
};
use std::time::Duration;

/// One captured packet, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub common: Common,
    pub response: bool,
    pub transport: Transport,
    pub tuple: Tuple,
    pub payload: Vec<u8>,
}

pub fn decode(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let p = super::decode(bytes)?;
    Ok(Packet {
        common: Common::from(&p.hdr),
        response: p.response,
        transport: p.transport,
        tuple: p.tuple,
        payload: p.payload.to_vec(),
    })
}

/// A query waiting for its response, with its enrichment copied.
#[derive(Debug, Clone)]
pub struct Pending {
    pub common: Common,
    pub ctx: ProcessContext,
    pub sent_boot_ns: u64,
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone)]
pub struct Lookup {
    pub key: Key,
    pub query: Pending,
    /// None: timed out.
    pub response: Option<dnsmsg::Message>,
    pub end_boot_ns: u64,
}

impl Lookup {
    pub fn error_type(&self) -> Option<String> {
        match &self.response {
            None => Some("timeout".into()),
            Some(m) if m.rcode != 0 => Some(dnsmsg::rcode_name(m.rcode)),
            Some(_) => None,
        }
    }

    pub fn failed(&self) -> bool {
        match &self.response {
            None => true,
            Some(m) => !matches!(m.rcode, 0 | 3),
        }
    }
}

fn duration(l: &Lookup) -> Duration {
    Duration::from_nanos(l.end_boot_ns.saturating_sub(l.query.sent_boot_ns))
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
    attributes.extend(common_attrs(&l.query.common, &l.query.ctx));
    attributes.push(kv_str(attr::DNS_QUESTION_NAME, l.query.name.clone()));
    attributes.push(kv_str(
        attr::DNS_QUESTION_TYPE,
        dnsmsg::type_name(l.query.qtype),
    ));
    attributes.push(kv_int(attr::TAPIO_DNS_ID, i64::from(l.key.id)));
    if let Some(m) = &l.response {
        attributes.push(kv_str(attr::DNS_RESPONSE_CODE, dnsmsg::rcode_name(m.rcode)));
        let strings = |v: Vec<String>| KeyValue {
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: v
                        .into_iter()
                        .map(|s| AnyValue {
                            value: Some(Value::StringValue(s)),
                        })
                        .collect(),
                })),
            }),
            ..Default::default()
        };
        let addresses = m
            .answers
            .iter()
            .take(max_answers)
            .filter(|a| a.is_address)
            .map(|a| a.data.clone())
            .collect();
        attributes.push(KeyValue {
            key: attr::DNS_ANSWERS.to_string(),
            ..strings(addresses)
        });
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
            key: attr::TAPIO_DNS_ANSWERS.to_string(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: answers })),
            }),
            ..Default::default()
        });
        if m.answers_cut {
            attributes.push(kv_bool(attr::TAPIO_DNS_ANSWERS_CUT, true));
        }
    }
    if let Some(e) = l.error_type() {
        attributes.push(kv_str(attr::ERROR_TYPE, e));
    }
    let status = if l.failed() {
        let what = match &l.response {
            None => format!("no response within {:?}", duration(l)),
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
