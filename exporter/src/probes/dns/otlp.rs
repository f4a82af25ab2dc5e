//! DNS lookups → `dns.query` spans, written straight into protobuf. The one
//! place these spans' names and shapes are decided.

use super::{duration, End, Lookup, ERROR_EVENTS_LOST, ERROR_TIMEOUT};
use crate::clock::WallClock;
use crate::dnsmsg::{Rcode, TypeName};
use crate::enrich::Context;
use crate::otel::{
    names::{attr, span},
    traces::IdGenerator,
    wire::{Encode, RecordWriter, StatusCode, SPAN_KIND_CLIENT},
};
use crate::probes::{network::otlp::connection_attrs, process::otlp::process_attrs};
use std::fmt;

/// Why a lookup failed, for the span status.
struct Failure<'a>(&'a Lookup<'a>);

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.end() {
            End::Timeout => write!(f, "no response within {:?}", duration(self.0))?,
            End::EventsLost => write!(
                f,
                "no response seen within {:?} while the dns probe lost {} kernel events (the response may be one of them)",
                duration(self.0),
                self.0.lost_since_sent
            )?,
            End::Answered(r) => write!(f, "server answered {}", Rcode(r))?,
        }
        write!(f, " for {}", self.0.query.name)
    }
}

/// `dns.query`: query sent to response received (or timeout). `ctx` is the
/// querying task's enrichment.
pub fn query(
    enc: &mut impl Encode,
    l: &Lookup<'_>,
    ctx: &Context<'_>,
    max_answers: usize,
    clock: &WallClock,
    ids: &mut IdGenerator,
) {
    let (trace_id, span_id) = (ids.trace_id_bytes(), ids.span_id_bytes());
    let mut w = enc.span(
        &trace_id,
        &span_id,
        span::DNS_QUERY,
        SPAN_KIND_CLIENT,
        clock.to_unix_ns(l.query.sent_boot_ns),
        clock.to_unix_ns(l.end_boot_ns),
    );
    // The tuple is oriented client -> server already.
    connection_attrs(&mut w, &l.key.tuple, true, l.key.transport.name());
    process_attrs(&mut w, &l.query.hdr, ctx);
    w.str(attr::DNS_QUESTION_NAME, &l.query.name);
    match TypeName(l.query.qtype).known() {
        Some(t) => w.str(attr::DNS_QUESTION_TYPE, t),
        None => w.display(attr::DNS_QUESTION_TYPE, TypeName(l.query.qtype)),
    }
    w.int(attr::TAPIO_DNS_ID, i64::from(l.key.id));
    if let Some(m) = l.response {
        match Rcode(m.rcode).known() {
            Some(r) => w.str(attr::DNS_RESPONSE_CODE, r),
            None => w.display(attr::DNS_RESPONSE_CODE, Rcode(m.rcode)),
        }
        let answers = || m.answers.iter().take(max_answers);
        // semconv: the resolved addresses only; every record, CNAMEs
        // included, under tapio.dns.answers.
        w.str_array(attr::DNS_ANSWERS, |arr| {
            for a in answers().filter(|a| a.is_address) {
                arr.concat(&[&a.data]);
            }
        });
        w.str_array(attr::TAPIO_DNS_ANSWERS, |arr| {
            for a in answers() {
                match TypeName(a.rtype).known() {
                    Some(t) => arr.concat(&[&a.name, " ", t, " ", &a.data]),
                    None => {
                        arr.display(format_args!("{} {} {}", a.name, TypeName(a.rtype), a.data))
                    }
                }
            }
        });
        if m.answers_cut {
            w.bool(attr::TAPIO_DNS_ANSWERS_CUT, true);
        }
    }
    match l.end() {
        End::Timeout => w.str(attr::ERROR_TYPE, ERROR_TIMEOUT),
        End::EventsLost => w.str(attr::ERROR_TYPE, ERROR_EVENTS_LOST),
        End::Answered(0) => {}
        End::Answered(r) => w.display(attr::ERROR_TYPE, Rcode(r)),
    }
    if l.failed() {
        w.finish_span(StatusCode::Error, format_args!("{}", Failure(l)));
    } else {
        w.finish_span(StatusCode::Unset, format_args!(""));
    }
}

#[cfg(test)]
mod tests {
    //! The direct encoder against the mapping it replaced (`legacy`), on
    //! the same lookups and ids: equal bytes, equal decoded messages.
    use super::super::{decode::fixtures::packet, legacy, Key, Pending, Transport};
    use super::*;
    use crate::dnsmsg::{self, build};
    use crate::enrich::cgroup;
    use crate::otel::wire::Encoder;
    use crate::probes::legacy::ProcessContext;
    use crate::probes::process::Common;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    fn responses() -> Vec<Option<Vec<u8>>> {
        let mut nx = build::header(7, 0x8183, 1, 0);
        nx.extend(build::name("missing.tapio.test"));
        nx.extend_from_slice(&[0, 1, 0, 1]);
        let mut servfail = build::header(7, 0x8182, 1, 0);
        servfail.extend(build::name("missing.tapio.test"));
        servfail.extend_from_slice(&[0, 28, 0, 1]);
        let full = build::cname_response(7, "alias.tapio.test", "www.tapio.test", [1, 2, 3, 4]);
        let cut = full[..full.len() - 3].to_vec();
        vec![None, Some(full), Some(cut), Some(nx), Some(servfail)]
    }

    fn strings(s: &Span, key: &str) -> Vec<String> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let Some(Value::ArrayValue(a)) = s
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.clone())
        else {
            panic!("no array {key}")
        };
        a.values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// semconv's `dns.answers` is the resolved addresses; the records,
    /// CNAMEs included, are under `tapio.dns.answers`.
    #[test]
    fn dns_answers_are_addresses_and_the_records_are_tapio_dns_answers() {
        let bytes = packet(false, &build::query(7, "alias.tapio.test", 1), 1);
        let p = super::super::decode(&bytes).unwrap();
        let response =
            build::cname_response(7, "alias.tapio.test", "www.tapio.test", [198, 18, 0, 10]);
        let msg = dnsmsg::parse(&response, 16).unwrap();
        let l = Lookup {
            key: Key {
                tuple: p.tuple,
                transport: Transport::Udp,
                id: 7,
            },
            query: Pending {
                hdr: p.hdr,
                sent_boot_ns: 1,
                name: "alias.tapio.test".into(),
                qtype: 1,
                lost_at_send: 0,
            },
            response: Some(&msg),
            end_boot_ns: 2,
            lost_since_sent: 0,
        };
        let ctx = Context {
            owner: None,
            workload: None,
            generation: 0,
        };
        let mut enc = Encoder::default();
        let clock = WallClock::with_offset(0);
        query(&mut enc, &l, &ctx, 16, &clock, &mut IdGenerator::seeded(1));
        let mut body = &enc.record()[1..];
        prost::encoding::decode_varint(&mut body).unwrap();
        let s = Span::decode(body).unwrap();
        assert_eq!(strings(&s, "dns.answers"), ["198.18.0.10"]);
        assert_eq!(
            strings(&s, "tapio.dns.answers"),
            [
                "alias.tapio.test CNAME www.tapio.test",
                "www.tapio.test A 198.18.0.10"
            ]
        );
    }

    #[test]
    fn query_matches_the_old_mapping() {
        let clock = WallClock::with_offset(3_000_000_000);
        let wl = cgroup::from_names(&format!("docker-{}.scope", "b".repeat(64)), "system.slice");
        let bytes = packet(
            false,
            &build::query(7, "alias.tapio.test", 1),
            1_000_000_000,
        );
        let p = super::super::decode(&bytes).unwrap();
        for (max, response) in responses()
            .into_iter()
            .flat_map(|r| [(16, r.clone()), (1, r)])
        {
            let msg = response.as_ref().map(|b| dnsmsg::parse(b, max).unwrap());
            let key = Key {
                tuple: p.tuple,
                transport: Transport::Udp,
                id: 7,
            };
            let l = Lookup {
                key,
                query: Pending {
                    hdr: p.hdr,
                    sent_boot_ns: p.hdr.ts_ns,
                    name: "alias.tapio.test".into(),
                    qtype: 1,
                    lost_at_send: 0,
                },
                response: msg.as_ref(),
                end_boot_ns: 1_004_000_000,
                lost_since_sent: 0,
            };
            let old = legacy::Lookup {
                key,
                query: legacy::Pending {
                    common: Common::from(&p.hdr),
                    ctx: ProcessContext {
                        owner: Some("root".into()),
                        workload: wl.clone(),
                        info: None,
                    },
                    sent_boot_ns: p.hdr.ts_ns,
                    name: "alias.tapio.test".into(),
                    qtype: 1,
                },
                response: msg.clone(),
                end_boot_ns: 1_004_000_000,
            };
            let ctx = Context {
                owner: Some("root"),
                workload: Some(&wl),
                generation: 0,
            };
            let mut enc = Encoder::default();
            query(&mut enc, &l, &ctx, max, &clock, &mut IdGenerator::seeded(4));
            let want = legacy::dns_query(&old, max, &clock, &mut IdGenerator::seeded(4));
            let mut body = &enc.record()[1..];
            prost::encoding::decode_varint(&mut body).unwrap();
            assert_eq!(Span::decode(body).unwrap(), want);
            let mut exp = Vec::new();
            prost::encoding::message::encode(crate::otel::wire::RECORD_FIELD, &want, &mut exp);
            assert_eq!(enc.record(), &exp[..]);
        }
    }
}
