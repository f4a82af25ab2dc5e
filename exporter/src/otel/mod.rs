//! What every probe shares on the way to OTLP: the names table, the
//! resource and scope, the direct writers (`wire` for protobuf, `json` for
//! OTLP/JSON), span ids (`traces`) and the metrics builders. Which records
//! a probe writes, and their shapes, live in the probe
//! (`probes/<name>/otlp.rs`); nothing here knows a probe.

pub mod json;
pub mod metrics;
pub mod names;
pub mod prometheus;
pub mod resource;
pub mod traces;
pub mod wire;

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, Value::StringValue(v.into()))
}

pub fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, Value::IntValue(v))
}

pub fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, Value::DoubleValue(v))
}

pub fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, Value::BoolValue(v))
}

/// An array of strings.
pub fn kv_strs(key: &str, v: &[String]) -> KeyValue {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let values = v
        .iter()
        .map(|s| AnyValue {
            value: Some(Value::StringValue(s.clone())),
        })
        .collect();
    kv(key, Value::ArrayValue(ArrayValue { values }))
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: names::SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// RFC 3339 UTC text of a Unix-ns time (semconv uses it for creation/exit
/// times).
pub fn rfc3339(unix_ns: u64) -> String {
    Rfc3339(unix_ns).to_string()
}

/// A Unix-ns time shown as RFC 3339 UTC, formatted where it is written.
/// Hand-written: ten lines instead of a date crate.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub u64);

impl Rfc3339 {
    /// The text without the formatter (years 0000–9999, i.e. always for
    /// a u64 of ns: those end in 2554).
    pub fn bytes(&self) -> Option<[u8; 30]> {
        let (y, m, d, sod, nanos) = self.civil();
        if !(0..=9999).contains(&y) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000000000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y as u64);
        put(5, 2, m as u64);
        put(8, 2, d as u64);
        put(11, 2, (sod / 3600) as u64);
        put(14, 2, ((sod / 60) % 60) as u64);
        put(17, 2, (sod % 60) as u64);
        put(20, 9, nanos);
        Some(out)
    }

    /// (year, month, day, second of day, nanoseconds).
    fn civil(&self) -> (i64, i64, i64, i64, u64) {
        let unix_ns = self.0;
        let secs = (unix_ns / 1_000_000_000) as i64;
        let nanos = unix_ns % 1_000_000_000;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        // Civil-from-days (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = if m <= 2 { y + 1 } else { y };
        (y, m, d, sod, nanos)
    }
}

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d, sod, nanos) = self.civil();
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60,
            nanos
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_795_000_000_123_456_789),
            "2026-11-18T11:06:40.123456789Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
