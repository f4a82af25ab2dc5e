//! tc records → OTLP log records (`network.flow.classified`,
//! `network.circuit_breaker.state_change`), written with the direct writers
//! (protobuf or OTLP/JSON from the same calls). The one place these
//! records' names and shapes are decided.

use super::{breaker_state_name, BreakerChange, Flow};
use crate::clock::WallClock;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};

/// `network.flow.classified`: a flow's L7 protocol, decided by the tc probe.
pub fn flow_classified(
    enc: &mut impl Encode,
    f: &Flow,
    iface: &str,
    clock: &WallClock,
    observed: u64,
) {
    let mut w = enc.log(clock.to_unix_ns(f.ts_boot_ns), Severity::Info);
    w.body(format_args!("{} {} -> {}", f.protocol, f.client, f.server));
    w.str(attr::NETWORK_PROTOCOL_NAME, f.protocol);
    w.str(attr::NETWORK_TRANSPORT, f.transport);
    w.str(
        attr::NETWORK_TYPE,
        if f.server.is_ipv4() { "ipv4" } else { "ipv6" },
    );
    w.display(attr::SERVER_ADDRESS, f.server.ip());
    w.int(attr::SERVER_PORT, i64::from(f.server.port()));
    w.display(attr::CLIENT_ADDRESS, f.client.ip());
    w.int(attr::CLIENT_PORT, i64::from(f.client.port()));
    w.str(attr::NETWORK_INTERFACE_NAME, iface);
    if let Some(sni) = &f.sni {
        w.str(attr::TLS_CLIENT_SERVER_NAME, sni);
    }
    if f.sni_cut {
        w.bool(attr::TAPIO_TRUNCATED, true);
    }
    w.finish_log(observed, event::NETWORK_FLOW_CLASSIFIED);
}

/// `network.circuit_breaker.state_change`: WARN when a backend is
/// ejected, INFO when it is tried again or back.
pub fn circuit_breaker_change(enc: &mut impl Encode, c: &BreakerChange, now: u64) {
    let to = breaker_state_name(c.to);
    let from = breaker_state_name(c.from);
    let severity = if to == "open" {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut w = enc.log(now, severity);
    w.body(format_args!(
        "{} backend {}: circuit breaker {from} -> {to}",
        c.service, c.backend
    ));
    w.str(attr::TAPIO_TC_SERVICE, &c.service);
    w.display(attr::TAPIO_TC_BACKEND, c.backend);
    w.str(attr::TAPIO_TC_BREAKER_STATE, to);
    w.str(attr::TAPIO_TC_BREAKER_PREVIOUS, from);
    w.int(attr::TAPIO_TC_FAILURES_IN_A_ROW, c.failures_in_a_row as i64);
    w.finish_log(now, event::NETWORK_CIRCUIT_BREAKER_STATE_CHANGE);
}

#[cfg(test)]
mod tests {
    //! The direct writer against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: equal bytes.
    use super::super::legacy;
    use super::*;
    use crate::otel::wire::{Encoder, RECORD_FIELD};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;

    fn same(enc: &Encoder, old: &LogRecord) {
        let mut want = Vec::new();
        prost::encoding::message::encode(RECORD_FIELD, old, &mut want);
        assert_eq!(enc.record(), &want[..]);
    }

    #[test]
    fn flow_classified_matches_the_old_mapping() {
        let clock = WallClock::with_offset(3_000);
        for (client, server, sni, cut) in [
            (
                "198.18.0.2:40000",
                "198.18.0.1:443",
                Some("api.tapio.test"),
                false,
            ),
            (
                "[2001:db8::2]:40000",
                "[2001:db8::1]:853",
                Some("dns.tapio.test"),
                true,
            ),
            ("198.18.0.2:40001", "198.18.0.1:6379", None, false),
        ] {
            let f = Flow {
                ts_boot_ns: 9_000_000_000,
                client: client.parse().unwrap(),
                server: server.parse().unwrap(),
                ifindex: 4,
                protocol: "tls",
                transport: "tcp",
                sni: sni.map(String::from),
                sni_cut: cut,
            };
            let mut enc = Encoder::default();
            flow_classified(&mut enc, &f, "veth-tapio0", &clock, 11);
            same(
                &enc,
                &legacy::flow_classified(&f, "veth-tapio0", &clock, 11),
            );
        }
    }

    #[test]
    fn circuit_breaker_change_matches_the_old_mapping() {
        for (from, to) in [(0, 1), (1, 2), (2, 0)] {
            let c = BreakerChange {
                service: "checkout".into(),
                backend: "198.18.0.9:8080".parse().unwrap(),
                from,
                to,
                failures_in_a_row: 5,
            };
            let mut enc = Encoder::default();
            circuit_breaker_change(&mut enc, &c, 77);
            same(&enc, &legacy::circuit_breaker_change(&c, 77));
        }
    }
}
