//! XDP auto-block records → `security.ddos_mitigation` log records, written
//! with the direct writers (protobuf or OTLP/JSON from the same calls). The
//! one place these records' names and shapes are decided.

use super::Mitigation;
use crate::clock::WallClock;
use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};

/// An XDP auto-block started (WARN) or ended (INFO).
pub fn ddos_mitigation(enc: &mut impl Encode, m: &Mitigation, clock: &WallClock, observed: u64) {
    let severity = if m.started {
        Severity::Warn
    } else {
        Severity::Info
    };
    let mut w = enc.log(clock.to_unix_ns(m.at_ns), severity);
    if m.started {
        w.body(format_args!(
            "{} blocked on {} for {}s: over its SYN rate",
            m.source,
            m.interface,
            m.until_ns.saturating_sub(m.at_ns) / 1_000_000_000
        ));
    } else {
        w.body(format_args!(
            "{} unblocked on {} after dropping {} packets",
            m.source, m.interface, m.dropped
        ));
    }
    w.display(attr::SOURCE_ADDRESS, m.source);
    w.str(attr::NETWORK_INTERFACE_NAME, &m.interface);
    w.str(attr::TAPIO_XDP_REASON, m.reason.name());
    w.str(
        attr::TAPIO_MITIGATION_STATE,
        if m.started { "started" } else { "ended" },
    );
    w.time(attr::TAPIO_MITIGATION_UNTIL, clock.to_unix_ns(m.until_ns));
    if !m.started {
        w.int(attr::TAPIO_MITIGATION_DROPPED, m.dropped as i64);
    }
    w.finish_log(observed, event::SECURITY_DDOS_MITIGATION);
}

#[cfg(test)]
mod tests {
    //! The direct writer against the opentelemetry-proto mapping it
    //! replaced (`legacy`), on the same fixtures: equal bytes.
    use super::super::{legacy, Reason};
    use super::*;
    use crate::otel::wire::{Encoder, RECORD_FIELD};

    #[test]
    fn ddos_mitigation_matches_the_old_mapping() {
        let clock = WallClock::with_offset(7_000);
        for (source, started) in [
            ("198.18.0.7".parse().unwrap(), true),
            ("2001:db8::7".parse().unwrap(), false),
        ] {
            let m = Mitigation {
                source,
                interface: "veth-tapio0".into(),
                reason: Reason::SynFlood,
                started,
                at_ns: 5_000_000_000,
                until_ns: 65_000_000_123,
                dropped: 1234,
            };
            let mut enc = Encoder::default();
            ddos_mitigation(&mut enc, &m, &clock, 42);
            let old = legacy::ddos_mitigation(&m, &clock, 42);
            let mut want = Vec::new();
            prost::encoding::message::encode(RECORD_FIELD, &old, &mut want);
            assert_eq!(enc.record(), &want[..], "started: {started}");
        }
    }
}
