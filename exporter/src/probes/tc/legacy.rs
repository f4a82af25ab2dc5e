//! The opentelemetry-proto mapping of tc records that [`super::otlp`]
//! replaced, kept to compare with (the fidelity tests) and to measure
//! against.

use super::{breaker_state_name, BreakerChange, Flow};
use crate::clock::WallClock;
use crate::otel::{kv_bool, kv_int, kv_str, names::attr, names::event};
use crate::probes::legacy::record;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// `network.flow.classified`: a flow's L7 protocol, decided by the tc probe.
pub fn flow_classified(f: &Flow, iface: &str, clock: &WallClock, observed: u64) -> LogRecord {
    let mut attrs = vec![
        kv_str(attr::NETWORK_PROTOCOL_NAME, f.protocol),
        kv_str(attr::NETWORK_TRANSPORT, f.transport),
        kv_str(
            attr::NETWORK_TYPE,
            if f.server.is_ipv4() { "ipv4" } else { "ipv6" },
        ),
        kv_str(attr::SERVER_ADDRESS, f.server.ip().to_string()),
        kv_int(attr::SERVER_PORT, i64::from(f.server.port())),
        kv_str(attr::CLIENT_ADDRESS, f.client.ip().to_string()),
        kv_int(attr::CLIENT_PORT, i64::from(f.client.port())),
        kv_str(attr::NETWORK_INTERFACE_NAME, iface.to_string()),
    ];
    if let Some(sni) = &f.sni {
        attrs.push(kv_str(attr::TLS_CLIENT_SERVER_NAME, sni.clone()));
    }
    if f.sni_cut {
        attrs.push(kv_bool(attr::TAPIO_TRUNCATED, true));
    }
    record(
        event::NETWORK_FLOW_CLASSIFIED,
        SeverityNumber::Info,
        clock.to_unix_ns(f.ts_boot_ns),
        observed,
        format!("{} {} -> {}", f.protocol, f.client, f.server),
        attrs,
    )
}

/// `network.circuit_breaker.state_change`: WARN when a backend is
/// ejected, INFO when it is tried again or back.
pub fn circuit_breaker_change(c: &BreakerChange, now: u64) -> LogRecord {
    let to = breaker_state_name(c.to);
    let severity = if to == "open" {
        SeverityNumber::Warn
    } else {
        SeverityNumber::Info
    };
    record(
        event::NETWORK_CIRCUIT_BREAKER_STATE_CHANGE,
        severity,
        now,
        now,
        format!(
            "{} backend {}: circuit breaker {} -> {to}",
            c.service,
            c.backend,
            breaker_state_name(c.from)
        ),
        vec![
            kv_str(attr::TAPIO_TC_SERVICE, c.service.clone()),
            kv_str(attr::TAPIO_TC_BACKEND, c.backend.to_string()),
            kv_str(attr::TAPIO_TC_BREAKER_STATE, to),
            kv_str(attr::TAPIO_TC_BREAKER_PREVIOUS, breaker_state_name(c.from)),
            kv_int(attr::TAPIO_TC_FAILURES_IN_A_ROW, c.failures_in_a_row as i64),
        ],
    )
}
