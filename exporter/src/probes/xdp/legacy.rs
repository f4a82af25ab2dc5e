//! The opentelemetry-proto mapping of XDP records that [`super::otlp`]
//! replaced, kept to compare with (the fidelity tests) and to measure
//! against.

use super::Mitigation;
use crate::clock::WallClock;
use crate::otel::{kv_int, kv_str, names::attr, names::event, rfc3339};
use crate::probes::legacy::record;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// An XDP auto-block started (WARN) or ended (INFO).
pub fn ddos_mitigation(m: &Mitigation, clock: &WallClock, observed: u64) -> LogRecord {
    let state = if m.started { "started" } else { "ended" };
    let mut attributes = vec![
        kv_str(attr::SOURCE_ADDRESS, m.source.to_string()),
        kv_str(attr::NETWORK_INTERFACE_NAME, m.interface.clone()),
        kv_str(attr::TAPIO_XDP_REASON, m.reason.name()),
        kv_str(attr::TAPIO_MITIGATION_STATE, state),
        kv_str(
            attr::TAPIO_MITIGATION_UNTIL,
            rfc3339(clock.to_unix_ns(m.until_ns)),
        ),
    ];
    let (severity, body) = if m.started {
        (
            SeverityNumber::Warn,
            format!(
                "{} blocked on {} for {}s: over its SYN rate",
                m.source,
                m.interface,
                m.until_ns.saturating_sub(m.at_ns) / 1_000_000_000
            ),
        )
    } else {
        attributes.push(kv_int(attr::TAPIO_MITIGATION_DROPPED, m.dropped as i64));
        (
            SeverityNumber::Info,
            format!(
                "{} unblocked on {} after dropping {} packets",
                m.source, m.interface, m.dropped
            ),
        )
    };
    record(
        event::SECURITY_DDOS_MITIGATION,
        severity,
        clock.to_unix_ns(m.at_ns),
        observed,
        body,
        attributes,
    )
}
