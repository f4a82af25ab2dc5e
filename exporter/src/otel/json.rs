//! OTLP/JSON written by the same mapping calls as protobuf (`wire`): the
//! [`Encode`] implementation the stdout sink's emitters use, so a record
//! becomes a JSON line without being encoded to protobuf and decoded back.
//!
//! The OTLP/JSON rules (OTLP spec, "JSON Protobuf Encoding"): lowerCamelCase
//! field names, trace and span ids as hex strings, 64-bit integers as
//! decimal strings, enums as their numbers. Fields at their default value
//! are left out, as protobuf leaves them out.
//!
//! A record is queued like a protobuf one: as a length-delimited field
//! whose body is the record's JSON object, so the queue can drop its oldest
//! record the same way. [`BatchFramer::frame`] turns a chunk of them into
//! one export request in place: the length prefixes become a comma and
//! spaces (JSON whitespace), the header goes into the chunk's headroom.

use super::wire::{
    self, close, open, Encode, Lossy, Mark, RecordBuf, RecordWriter, Severity, StatusCode,
    RECORD_FIELD,
};
use crate::telemetry::Signal;
use std::fmt::{self, Write as _};

/// A `fmt::Write` that escapes what it is given as the inside of a JSON
/// string.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s.as_bytes());
        Ok(())
    }
}

/// Append `s` (UTF-8) escaped for a JSON string, without quotes.
///
/// Almost every byte Tapio writes needs no escape (names, paths, addresses),
/// so the scan skips clean 8-byte words at once and copies runs whole: a
/// byte-by-byte match was the largest single cost of the OTLP/JSON path
/// (14 % of the DNS bench). Hand-written because the escaping crates
/// either allocate a `String` or escape for HTML too.
fn escape_into(buf: &mut Vec<u8>, s: &[u8]) {
    let mut from = 0;
    let mut at = 0;
    let mut words = s.chunks_exact(8);
    for w in words.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        if word_needs_escape(u64::from_le_bytes(word)) {
            escape_run(buf, s, &mut from, at, at + 8);
        }
        at += 8;
    }
    let tail = words.remainder();
    let dirty = if tail.is_empty() {
        false
    } else if let Some(last) = s.len().checked_sub(8).and_then(|i| s.get(i..)) {
        // The last 8 bytes, overlapping words already found clean: a flag
        // can only come from the tail.
        let mut word = [0u8; 8];
        word.copy_from_slice(last);
        word_needs_escape(u64::from_le_bytes(word))
    } else {
        tail.iter().any(|&c| needs_escape(c))
    };
    if dirty {
        escape_run(buf, s, &mut from, at, s.len());
    }
    buf.extend_from_slice(&s[from..]);
}

fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// Escape the bytes of `s[at..end]` that need it, copying what precedes
/// each from `*from` on.
fn escape_run(buf: &mut Vec<u8>, s: &[u8], from: &mut usize, at: usize, end: usize) {
    for (i, &c) in s.iter().enumerate().take(end).skip(at) {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&s[*from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[usize::from(c >> 4)]);
            buf.push(HEX[usize::from(c & 0xf)]);
        } else {
            buf.extend_from_slice(esc);
        }
        *from = i + 1;
    }
}

/// Does any byte of `w` need a JSON escape: a control byte (< 0x20), `"`
/// or `\`? The bit-twiddling tests "has a byte below n" and "has a zero
/// byte" (on `w` xor the quote or backslash repeated), which are exact
/// for whether any byte matches.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\'))))
        != 0
}

/// `"text"`, escaped.
fn quoted(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    escape_into(buf, s);
    buf.push(b'"');
}

/// `"` + formatted text, escaped, + `"`.
fn quoted_fmt(buf: &mut Vec<u8>, args: fmt::Arguments<'_>) {
    buf.push(b'"');
    let _ = Escaped(buf).write_fmt(args);
    buf.push(b'"');
}

/// A 64-bit integer as OTLP/JSON wants it: a decimal string.
fn int_string(buf: &mut Vec<u8>, v: impl itoa::Integer) {
    buf.push(b'"');
    int(buf, v);
    buf.push(b'"');
}

/// Decimal text (times and ints are on every record: `itoa`, two digits a
/// step, not the formatter nor a division per digit).
fn int(buf: &mut Vec<u8>, v: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `"hex"` of a trace or span id (at most 16 bytes), built on the stack
/// and appended once: a push per digit checked the capacity 32 times.
fn hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [b'"'; 34];
    let bytes = &bytes[..bytes.len().min(16)];
    for (i, &b) in bytes.iter().enumerate() {
        text[1 + 2 * i] = HEX[usize::from(b >> 4)];
        text[2 + 2 * i] = HEX[usize::from(b & 0xf)];
    }
    buf.extend_from_slice(&text[..2 * bytes.len() + 2]);
}

/// A double as JSON: the shortest text that reads back to the same value;
/// the non-finite ones as the strings OTLP/JSON names them.
fn double(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        buf.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        // Debug: shortest round-trip text, exponent form for the very
        // large and small (Display would write 300 zeros).
        let _ = write!(wire::Bytes(buf), "{v:?}");
    }
}

/// The reusable buffer a producer writes OTLP/JSON records into.
#[derive(Default)]
pub struct Encoder {
    buf: RecordBuf,
}

impl Clone for Encoder {
    /// A clone is another producer: it gets a buffer of its own.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Encoder {
    /// The last finished record's JSON object (without the queue's length
    /// prefix).
    pub fn json(&self) -> &[u8] {
        let mut rest = self.buf.record().get(1..).unwrap_or_default();
        let _ = prost::encoding::decode_varint(&mut rest);
        rest
    }

    pub(crate) fn record_buf(&mut self) -> &mut RecordBuf {
        &mut self.buf
    }
}

impl Encode for Encoder {
    type Writer<'a> = JsonWriter<'a>;

    fn log(&mut self, time_unix_ns: u64, severity: Severity) -> JsonWriter<'_> {
        let b = self.buf.begin();
        let mark = open(b, RECORD_FIELD, 2);
        b.push(b'{');
        if time_unix_ns != 0 {
            b.extend_from_slice(b"\"timeUnixNano\":");
            int_string(b, time_unix_ns);
            b.push(b',');
        }
        b.extend_from_slice(b"\"severityNumber\":");
        int(b, severity.number());
        b.extend_from_slice(b",\"severityText\":");
        quoted(b, severity.text().as_bytes());
        JsonWriter {
            buf: b,
            mark,
            attrs: false,
            first_item: false,
        }
    }

    fn span(
        &mut self,
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
        name: &str,
        kind: u64,
        start_unix_ns: u64,
        end_unix_ns: u64,
    ) -> JsonWriter<'_> {
        let b = self.buf.begin();
        let mark = open(b, RECORD_FIELD, 2);
        b.extend_from_slice(b"{\"traceId\":");
        hex(b, trace_id);
        b.extend_from_slice(b",\"spanId\":");
        hex(b, span_id);
        b.extend_from_slice(b",\"name\":");
        quoted(b, name.as_bytes());
        if kind != 0 {
            b.extend_from_slice(b",\"kind\":");
            int(b, kind);
        }
        if start_unix_ns != 0 {
            b.extend_from_slice(b",\"startTimeUnixNano\":");
            int_string(b, start_unix_ns);
        }
        if end_unix_ns != 0 {
            b.extend_from_slice(b",\"endTimeUnixNano\":");
            int_string(b, end_unix_ns);
        }
        JsonWriter {
            buf: b,
            mark,
            attrs: false,
            first_item: false,
        }
    }

    fn record(&self) -> &[u8] {
        self.buf.record()
    }
}

/// Writes one record's JSON members.
pub struct JsonWriter<'a> {
    buf: &'a mut Vec<u8>,
    mark: Mark,
    /// The `attributes` array is open.
    attrs: bool,
    /// The next array element is the first.
    first_item: bool,
}

impl JsonWriter<'_> {
    /// `,{"key":"k","value":` (opening the attributes array at the first);
    /// the caller writes the AnyValue and `}`.
    fn key(&mut self, key: &'static str) {
        if self.attrs {
            self.buf.push(b',');
        } else {
            self.buf.extend_from_slice(b",\"attributes\":[");
            self.attrs = true;
        }
        // Keys are the names table's constants (`&'static str`): nothing in
        // them needs an escape, and escaping 20 of them per record was a
        // tenth of the JSON path's instructions.
        debug_assert!(!key.bytes().any(needs_escape), "{key:?} needs escaping");
        self.buf.extend_from_slice(b"{\"key\":\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\",\"value\":");
    }

    fn close_attrs(&mut self) {
        if self.attrs {
            self.buf.push(b']');
            self.attrs = false;
        }
    }

    fn string_attr(&mut self, key: &'static str, v: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"stringValue\":");
        quoted(self.buf, v);
        self.buf.extend_from_slice(b"}}");
    }

    fn item_sep(&mut self) {
        if !self.first_item {
            self.buf.push(b',');
        }
        self.first_item = false;
    }

    fn finish(self) {
        self.buf.push(b'}');
        close(self.buf, self.mark);
    }
}

impl RecordWriter for JsonWriter<'_> {
    fn body(&mut self, args: fmt::Arguments<'_>) {
        debug_assert!(!self.attrs, "a body after attributes");
        self.buf.extend_from_slice(b",\"body\":{\"stringValue\":");
        quoted_fmt(self.buf, args);
        self.buf.push(b'}');
    }

    fn body_concat(&mut self, parts: &[&str]) {
        debug_assert!(!self.attrs, "a body after attributes");
        self.buf.extend_from_slice(b",\"body\":{\"stringValue\":\"");
        for p in parts {
            escape_into(self.buf, p.as_bytes());
        }
        self.buf.extend_from_slice(b"\"}");
    }

    fn str(&mut self, key: &'static str, v: &str) {
        self.string_attr(key, v.as_bytes());
    }

    fn lossy(&mut self, key: &'static str, v: &[u8]) {
        match std::str::from_utf8(v) {
            Ok(s) => self.str(key, s),
            Err(_) => self.display(key, Lossy(v)),
        }
    }

    fn display(&mut self, key: &'static str, v: impl fmt::Display) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"stringValue\":");
        quoted_fmt(self.buf, format_args!("{v}"));
        self.buf.extend_from_slice(b"}}");
    }

    fn ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let mut tmp = [0u8; 15];
                let n = wire::ipv4_text(v4.octets(), &mut tmp);
                self.string_attr(key, &tmp[..n]);
            }
            v6 => self.display(key, v6),
        }
    }

    fn time(&mut self, key: &'static str, unix_ns: u64) {
        match crate::otel::Rfc3339(unix_ns).bytes() {
            Some(b) => self.string_attr(key, &b),
            None => self.display(key, crate::otel::Rfc3339(unix_ns)),
        }
    }

    fn int(&mut self, key: &'static str, v: i64) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"intValue\":");
        int_string(self.buf, v);
        self.buf.extend_from_slice(b"}}");
    }

    fn f64(&mut self, key: &'static str, v: f64) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"doubleValue\":");
        double(self.buf, v);
        self.buf.extend_from_slice(b"}}");
    }

    fn bool(&mut self, key: &'static str, v: bool) {
        self.key(key);
        self.buf.extend_from_slice(if v {
            b"{\"boolValue\":true}}"
        } else {
            b"{\"boolValue\":false}}"
        });
    }

    fn array_open(&mut self, key: &'static str) {
        self.key(key);
        self.buf.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
        self.first_item = true;
    }

    fn item_concat(&mut self, parts: &[&str]) {
        self.item_sep();
        self.buf.extend_from_slice(b"{\"stringValue\":\"");
        for p in parts {
            escape_into(self.buf, p.as_bytes());
        }
        self.buf.extend_from_slice(b"\"}");
    }

    fn item_display(&mut self, v: fmt::Arguments<'_>) {
        self.item_sep();
        self.buf.extend_from_slice(b"{\"stringValue\":");
        quoted_fmt(self.buf, v);
        self.buf.push(b'}');
    }

    fn array_close(&mut self) {
        self.buf.extend_from_slice(b"]}}}");
    }

    fn finish_log(mut self, observed_unix_ns: u64, event_name: &str) {
        self.close_attrs();
        if observed_unix_ns != 0 {
            self.buf.extend_from_slice(b",\"observedTimeUnixNano\":");
            int_string(self.buf, observed_unix_ns);
        }
        if !event_name.is_empty() {
            self.buf.extend_from_slice(b",\"eventName\":");
            quoted(self.buf, event_name.as_bytes());
        }
        self.finish();
    }

    fn finish_span(mut self, code: StatusCode, message: fmt::Arguments<'_>) {
        self.close_attrs();
        self.buf.extend_from_slice(b",\"status\":{");
        let before = self.buf.len();
        self.buf.extend_from_slice(b"\"message\":");
        let text = self.buf.len();
        quoted_fmt(self.buf, message);
        if self.buf.len() == text + 2 {
            // Empty: left out, as protobuf leaves it out.
            self.buf.truncate(before);
        }
        if code != StatusCode::Unset {
            if self.buf.len() > before {
                self.buf.push(b',');
            }
            self.buf.extend_from_slice(b"\"code\":");
            int(self.buf, code as u64);
        }
        self.buf.push(b'}');
        self.finish();
    }
}

/// The fixed part of every OTLP/JSON request of one signal, serialised
/// once: everything before the first record and after the last.
#[derive(Debug, Clone)]
pub struct BatchFramer {
    head: Vec<u8>,
    tail: &'static [u8],
}

impl BatchFramer {
    pub fn new(
        signal: Signal,
        resource: &opentelemetry_proto::tonic::resource::v1::Resource,
        scope: &opentelemetry_proto::tonic::common::v1::InstrumentationScope,
    ) -> Self {
        let (outer, inner, records) = match signal {
            Signal::Traces => ("resourceSpans", "scopeSpans", "spans"),
            Signal::Logs => ("resourceLogs", "scopeLogs", "logRecords"),
            // Metrics are not written record by record.
            Signal::Metrics => ("resourceMetrics", "scopeMetrics", "metrics"),
        };
        // Resource and scope are plain messages: their serde form is their
        // OTLP/JSON (the same crate's serde the decode-back path printed).
        let r = serde_json::to_string(resource).unwrap_or_else(|_| "{}".into());
        let s = serde_json::to_string(scope).unwrap_or_else(|_| "{}".into());
        let head = format!(
            "{{\"{outer}\":[{{\"resource\":{r},\"{inner}\":[{{\"scope\":{s},\"{records}\":["
        )
        .into_bytes();
        Self {
            head,
            tail: b"]}]}]}",
        }
    }

    /// Bytes a chunk must leave free in front of its records.
    pub fn headroom(&self) -> usize {
        self.head.len()
    }

    /// Turn `buf[start..]` (records queued from [`Encoder::record`]) into
    /// one request: the header goes just before `start`, each record's
    /// length prefix becomes a separator, the closing brackets go after.
    /// Returns where the request starts.
    pub fn frame(&self, buf: &mut Vec<u8>, start: usize) -> usize {
        let at = start - self.head.len();
        buf[at..start].copy_from_slice(&self.head);
        let mut i = start;
        let mut first = true;
        while i < buf.len() {
            let mut rest = &buf[i + 1..];
            let Ok(len) = prost::encoding::decode_varint(&mut rest) else {
                break;
            };
            let body = buf.len() - rest.len();
            buf[i..body].fill(b' ');
            if !first {
                buf[i] = b',';
            }
            first = false;
            i = body + len as usize;
        }
        buf.extend_from_slice(self.tail);
        at
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::{de::DeserializeOwned, Serialize};

    /// The escaping as it was written first, byte by byte: the oracle.
    fn escape_bytewise(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &c in s {
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                _ => out.push(c),
            }
        }
        out
    }

    #[test]
    fn escaping_by_words_matches_escaping_by_bytes() {
        // Every byte value at every position of a word, and around it.
        for c in 0..=255u8 {
            for at in 0..20 {
                let mut s = vec![b'a'; 20];
                s[at] = c;
                let mut got = Vec::new();
                escape_into(&mut got, &s);
                assert_eq!(got, escape_bytewise(&s), "byte {c:#x} at {at}");
            }
        }
        proptest::proptest!(|(s in proptest::collection::vec(proptest::num::u8::ANY, 0..64))| {
            let mut got = b"prefix".to_vec();
            escape_into(&mut got, &s);
            proptest::prop_assert_eq!(&got[6..], &escape_bytewise(&s)[..]);
        });
    }

    /// True when `mine` says what `theirs` says: every member of `mine` is
    /// in `theirs` with the same value, and what `theirs` has beyond that
    /// is a default (opentelemetry-proto's serde writes every field; we
    /// leave defaults out, as protobuf does).
    pub fn same_json(mine: &serde_json::Value, theirs: &serde_json::Value, path: &str) {
        use serde_json::Value as V;
        match (mine, theirs) {
            (V::Object(m), V::Object(t)) => {
                for (k, v) in m {
                    let Some(tv) = t.get(k) else {
                        panic!("{path}.{k}: not a field of the message ({v})");
                    };
                    same_json(v, tv, &format!("{path}.{k}"));
                }
                for (k, tv) in t {
                    if !m.contains_key(k) {
                        let default = match tv {
                            V::Null => true,
                            V::Bool(b) => !b,
                            V::Number(n) => n.as_f64() == Some(0.0),
                            V::String(s) => s.is_empty() || s == "0",
                            V::Array(a) => a.is_empty(),
                            V::Object(o) => o.is_empty(),
                        };
                        assert!(default, "{path}.{k}: missing (theirs: {tv})");
                    }
                }
            }
            (V::Array(m), V::Array(t)) => {
                assert_eq!(m.len(), t.len(), "{path}: lengths");
                for (i, (a, b)) in m.iter().zip(t).enumerate() {
                    same_json(a, b, &format!("{path}[{i}]"));
                }
            }
            (V::Number(a), V::Number(b)) => {
                assert_eq!(a.as_f64(), b.as_f64(), "{path}");
            }
            _ => assert_eq!(mine, theirs, "{path}"),
        }
    }

    /// The JSON `json` is the message the protobuf `proto` is: the typed
    /// values are equal (serde read of ours, prost read of theirs) and the
    /// JSON texts agree member by member with opentelemetry-proto's serde.
    pub fn assert_same<M>(json: &[u8], proto: &[u8])
    where
        M: prost::Message + Default + PartialEq + Serialize + DeserializeOwned + fmt::Debug,
    {
        let want = M::decode(proto).expect("protobuf decodes");
        let text = std::str::from_utf8(json).expect("UTF-8");
        let got: M = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(got, want, "typed values differ; JSON: {text}");
        let mine: serde_json::Value = serde_json::from_str(text).unwrap();
        let theirs = serde_json::to_value(&want).unwrap();
        same_json(&mine, &theirs, "");
    }

    /// A record's protobuf body (without its field key and length).
    pub fn proto_body(record: &[u8]) -> &[u8] {
        let mut b = &record[1..];
        prost::encoding::decode_varint(&mut b).unwrap();
        b
    }

    use opentelemetry_proto::tonic::{logs::v1::LogRecord, trace::v1::Span};

    #[test]
    fn every_value_kind_matches_the_protobuf() {
        fn log<E: Encode>(e: &mut E) {
            let mut w = e.log(1_795_000_000_123_456_789, Severity::Warn);
            w.body(format_args!("quote \" slash \\ nl \n tab \t bell \x07 é"));
            w.int("i", -3);
            w.int("max", i64::MAX);
            w.int("z", 0);
            w.f64("d", 1.5);
            w.f64("tiny", 1e-300);
            w.f64("whole", 2.0);
            w.bool("t", true);
            w.bool("f", false);
            w.lossy("l", b"a\xffb");
            w.ip("v4", std::net::Ipv4Addr::new(198, 18, 0, 1).into());
            w.ip("v6", "2001:db8::1".parse().unwrap());
            w.time("tm", 0);
            w.display("ctl", format_args!("\x01\x1f"));
            w.str_array("a", |a| {
                a.concat(&["o", "\"", "ne"]);
                a.display(format_args!("{}", "x".repeat(200)));
            });
            w.str_array("empty", |_| {});
            w.finish_log(7, "test.event");
        }
        let (mut p, mut j) = (wire::Encoder::default(), Encoder::default());
        log(&mut p);
        log(&mut j);
        assert_same::<LogRecord>(j.json(), proto_body(p.record()));

        fn bare<E: Encode>(e: &mut E) {
            e.log(0, Severity::Info).finish_log(0, "");
        }
        bare(&mut p);
        bare(&mut j);
        assert_eq!(j.json(), br#"{"severityNumber":9,"severityText":"INFO"}"#);
        assert_same::<LogRecord>(j.json(), proto_body(p.record()));

        fn span<E: Encode>(e: &mut E, code: StatusCode, msg: &str) {
            let mut w = e.span(
                &[0xab; 16],
                &[1, 2, 3, 4, 5, 6, 7, 0xff],
                "s",
                wire::SPAN_KIND_CLIENT,
                5,
                u64::MAX,
            );
            w.str("k", "v");
            w.finish_span(code, format_args!("{msg}"));
        }
        for (code, msg) in [
            (StatusCode::Ok, ""),
            (StatusCode::Error, "it \"broke\""),
            (StatusCode::Unset, ""),
            (StatusCode::Unset, "m"),
        ] {
            span(&mut p, code, msg);
            span(&mut j, code, msg);
            assert_same::<Span>(j.json(), proto_body(p.record()));
        }
    }

    #[test]
    fn non_finite_doubles_are_named() {
        for (v, text) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
        ] {
            let mut b = Vec::new();
            double(&mut b, v);
            assert_eq!(b, text.as_bytes());
        }
    }
}
