//! OTLP written straight to protobuf bytes: the generic writers every probe's
//! mapping uses (`probes/<probe>/otlp.rs`). Nothing here allocates once its
//! buffers have grown to the largest record seen: keys are the names table's
//! static strings, values are borrowed or formatted into a reused scratch.
//!
//! Fields are written in tag order, as prost writes them, so a record written
//! here is byte-for-byte what the `opentelemetry-proto` types would encode
//! (the fidelity tests in each probe's `otlp.rs` compare exactly that).
//!
//! Nested messages need their length before their body. Attributes (the
//! most numerous) have lengths known before they are written, so they are
//! sized inline. For the rest (a record, its body, array values, a status)
//! we reserve a length slot of the likely size, write the body after it and
//! fill the slot in; when the length needs another number of bytes the body
//! is moved (`copy_within`). A size pass was not taken: it would run each
//! mapping twice, formatting every text value (addresses, times, the command
//! line) twice. A scratch buffer copied in behind its length prefix costs one
//! copy of every record: measured by forcing the move on every record (a
//! one-byte slot), the exec path went from 0.78–0.79 to 0.79–0.82 µs per
//! record, within this VM's noise but never better, so the slot stays (it
//! also needs no second buffer). The slot sizes (2 bytes for a record, 1 for
//! the rest) fit nearly every record, so the move is rare.

use prost::encoding::{encoded_len_varint, WireType};
use std::fmt::{self, Write as _};

/// Append `s`, inlined for the short strings records are made of.
/// Attribute keys and most values are 3–32 bytes; for those the `memcpy`
/// call `extend_from_slice` makes (a call, then a dispatch on the size)
/// costs more than the copy: memmove was 14 % of a loaded agent's CPU,
/// over half of it from these writers (perf, sustained-load bench). Here
/// the copy is two fixed-size, possibly overlapping moves the compiler
/// inlines: the first chunk, then the last one written where it ends.
#[inline(always)]
pub(crate) fn put(buf: &mut Vec<u8>, s: &[u8]) {
    let (at, n) = (buf.len(), s.len());
    macro_rules! two_moves {
        ($k:literal) => {
            if let (Some(a), Some(b)) = (s.first_chunk::<$k>(), s.last_chunk::<$k>()) {
                buf.extend_from_slice(a);
                buf.truncate(at + n - $k);
                buf.extend_from_slice(b);
                return;
            }
        };
    }
    match n {
        0..=3 => {
            for &c in s {
                buf.push(c);
            }
            return;
        }
        4..=7 => two_moves!(4),
        8..=15 => two_moves!(8),
        16..=32 => two_moves!(16),
        _ => {}
    }
    buf.extend_from_slice(s);
}

/// LEB128, as `prost::encoding::encode_varint` writes it, specialised for
/// `Vec<u8>` (prost's goes through `BufMut::put_u8` byte by byte; this was
/// an eighth of the encoder's time).
#[inline(always)]
fn encode_varint(mut v: u64, buf: &mut Vec<u8>) {
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    let mut tmp = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        tmp[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    tmp[n] = v as u8;
    // All ten bytes in one fixed-size move, then back to the varint's end:
    // `&tmp[..=n]` would be a memcpy call per integer.
    let at = buf.len();
    buf.extend_from_slice(&tmp);
    buf.truncate(at + n + 1);
}

#[inline(always)]
fn encode_key(field: u32, wt: WireType, buf: &mut Vec<u8>) {
    encode_varint(u64::from((field << 3) | wt as u32), buf);
}

/// A varint into a slice that has room for it (length slots).
#[inline]
fn encode_varint_at(mut v: u64, out: &mut [u8]) {
    let mut i = 0;
    while v >= 0x80 {
        out[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    out[i] = v as u8;
}

/// `ScopeLogs.log_records` and `ScopeSpans.spans` are both field 2.
pub const RECORD_FIELD: u32 = 2;

/// Append `len` bytes' worth of length slot and return where the body
/// starts.
#[inline]
pub(crate) fn open(buf: &mut Vec<u8>, field: u32, slot: usize) -> Mark {
    encode_key(field, WireType::LengthDelimited, buf);
    buf.extend(std::iter::repeat_n(0, slot));
    Mark {
        body: buf.len(),
        slot,
    }
}

/// Where a nested message's body starts and how many bytes its length slot
/// has.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Mark {
    body: usize,
    slot: usize,
}

/// Write the length of the message opened at `m`, moving its body when the
/// length takes more or fewer bytes than the slot.
#[inline]
pub(crate) fn close(buf: &mut Vec<u8>, m: Mark) {
    let len = buf.len() - m.body;
    let need = encoded_len_varint(len as u64);
    let start = m.body - m.slot;
    if need > m.slot {
        let extra = need - m.slot;
        buf.resize(buf.len() + extra, 0);
        buf.copy_within(m.body..m.body + len, m.body + extra);
    } else if need < m.slot {
        let less = m.slot - need;
        buf.copy_within(m.body..m.body + len, m.body - less);
        buf.truncate(buf.len() - less);
    }
    encode_varint_at(len as u64, &mut buf[start..start + need]);
}

#[inline]
fn string(buf: &mut Vec<u8>, field: u32, s: &[u8]) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    put(buf, s);
}

#[inline]
fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    encode_key(field, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn varint(buf: &mut Vec<u8>, field: u32, v: u64) {
    encode_key(field, WireType::Varint, buf);
    encode_varint(v, buf);
}

/// A `fmt::Write` into a byte buffer.
pub(crate) struct Bytes<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put(self.0, s.as_bytes());
        Ok(())
    }
}

/// Text as the old mapping made it with `String::from_utf8_lossy`, written
/// without the intermediate String.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char(char::REPLACEMENT_CHARACTER)?;
            }
        }
        Ok(())
    }
}

/// The reusable buffers a producer (one probe handler) encodes into.
#[derive(Default)]
pub struct Encoder {
    buf: RecordBuf,
    text: String,
    blocks: Blocks,
}

/// What a block of attributes is a function of (see
/// [`RecordWriter::cached`]).
pub type BlockKey = [u64; 9];

/// Attribute blocks an encoder remembers: a process's attributes were a
/// seventh of a loaded agent's instructions (callgrind, sustained-load
/// bench), five integers and two to five strings written for every record,
/// while the records of one reader come from a few threads at a time
/// (a connecting thread's span and close log, the accepting thread's close
/// log, a resolver's lookups). Any entry may hold any key (looked up by
/// the key's first word and the record kind, then the whole key); a miss
/// writes the block as before and replaces the entries in turn (first in,
/// first out: more than 8 live blocks would miss every time; a reader
/// sees a few threads at a time). Until
/// 2026-12-07 the entry was picked by `(tid ^ field) % 4`: two threads
/// whose tids differ in the low bits, each writing spans and logs, took
/// the same two entries in turn and missed on 40 % of the network and DNS
/// records (callgrind, sustained-load bench).
const BLOCKS: usize = 8;

#[derive(Default)]
struct Block {
    key: BlockKey,
    /// The attribute field the bytes were written for (their tags): 6 in a
    /// LogRecord, 9 in a Span; 0 while empty.
    field: u32,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Blocks {
    entries: [Block; BLOCKS],
    /// The entry the next miss replaces.
    next: usize,
}

/// Length of the length-delimited field at the start of `b` (key, length
/// and body), or None if it is not one.
pub(crate) fn field_len(b: &[u8]) -> Option<usize> {
    let mut rest = b.get(1..)?;
    let len = prost::encoding::decode_varint(&mut rest).ok()? as usize;
    Some(b.len() - rest.len() + len)
}

/// An encoder's buffer: one record at a time, or, while it is lent a stash
/// ([`RecordBuf::lend`]), records appended to that stash.
#[derive(Default)]
pub(crate) struct RecordBuf {
    buf: Vec<u8>,
    /// Where the record being (or last) written starts.
    start: usize,
    appending: bool,
}

impl RecordBuf {
    /// Make room for a new record: the buffer's end while appending, else
    /// an emptied buffer.
    pub(crate) fn begin(&mut self) -> &mut Vec<u8> {
        if self.appending {
            self.start = self.buf.len();
        } else {
            self.buf.clear();
            self.start = 0;
        }
        &mut self.buf
    }

    /// The last record written.
    pub(crate) fn record(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Append the next records to `out` instead (until
    /// [`RecordBuf::give_back`]): a stash of records gets them without a
    /// copy (copying each record from the encoder's buffer into the stash
    /// was a tenth of a loaded agent's memmove time).
    pub(crate) fn lend(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(&mut self.buf, out);
        self.appending = true;
        self.start = self.buf.len();
    }

    /// Give the lent buffer back to `out`, keeping what was appended after
    /// `before` only if it is exactly one whole record: anything else (no
    /// record, one cut short) is taken off again, so a stash holds whole
    /// records only.
    pub(crate) fn give_back(&mut self, out: &mut Vec<u8>, before: usize) -> bool {
        std::mem::swap(&mut self.buf, out);
        self.appending = false;
        self.start = 0;
        let added = out.get(before..).unwrap_or_default();
        let whole = !added.is_empty() && field_len(added) == Some(added.len());
        if !whole {
            out.truncate(before);
        }
        whole
    }
}

impl Clone for Encoder {
    /// A clone is another producer: it gets buffers of its own.
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Severity of a log record (the OTLP numbers we use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

impl Severity {
    pub(crate) fn number(self) -> u64 {
        match self {
            Severity::Info => 9,
            Severity::Warn => 13,
            Severity::Error => 17,
        }
    }
    pub(crate) fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warn => "WARN",
            Severity::Error => "ERROR",
        }
    }
}

/// `Span.kind` values.
pub const SPAN_KIND_INTERNAL: u64 = 1;
pub const SPAN_KIND_CLIENT: u64 = 3;

/// `Status.code` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl Encoder {
    /// The last finished record: a `log_records`/`spans` field (key, length,
    /// body), ready to be appended to a batch.
    pub fn record(&self) -> &[u8] {
        self.buf.record()
    }

    pub(crate) fn record_buf(&mut self) -> &mut RecordBuf {
        &mut self.buf
    }
}

/// What a probe's mapping writes a record into: protobuf ([`Encoder`]) or
/// OTLP-JSON ([`crate::otel::json::Encoder`]). Mappings are generic over it,
/// so each format gets its own monomorphised copy and the protobuf path
/// pays nothing for the other.
pub trait Encode {
    type Writer<'a>: RecordWriter
    where
        Self: 'a;

    /// Start a LogRecord. Write its body next, then attributes, then
    /// [`RecordWriter::finish_log`].
    fn log(&mut self, time_unix_ns: u64, severity: Severity) -> Self::Writer<'_>;

    /// Start a Span (ids, name, kind, times). Write attributes next, then
    /// [`RecordWriter::finish_span`].
    fn span(
        &mut self,
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
        name: &str,
        kind: u64,
        start_unix_ns: u64,
        end_unix_ns: u64,
    ) -> Self::Writer<'_>;

    /// The last finished record, framed as a length-delimited
    /// `log_records`/`spans` field (for JSON, the field's body is the
    /// record's JSON object), ready to be queued.
    fn record(&self) -> &[u8];
}

/// One record's fields, in the order the mapping calls them (protobuf tag
/// order: body before attributes).
pub trait RecordWriter {
    /// LogRecord.body as a string.
    fn body(&mut self, args: fmt::Arguments<'_>);
    /// LogRecord.body as the concatenation of `parts` (no formatter).
    fn body_concat(&mut self, parts: &[&str]);
    fn str(&mut self, key: &'static str, v: &str);
    /// A string attribute from bytes that may not be UTF-8 (replacement
    /// characters where they are not).
    fn lossy(&mut self, key: &'static str, v: &[u8]);
    /// A string attribute formatted in place (addresses, times, numbers).
    fn display(&mut self, key: &'static str, v: impl fmt::Display);
    /// An IP address attribute.
    fn ip(&mut self, key: &'static str, ip: std::net::IpAddr);
    /// A Unix-ns time as RFC 3339 text.
    fn time(&mut self, key: &'static str, unix_ns: u64);
    fn int(&mut self, key: &'static str, v: i64);
    fn f64(&mut self, key: &'static str, v: f64);
    fn bool(&mut self, key: &'static str, v: bool);
    /// An array-of-strings attribute; `items` adds the elements.
    fn str_array(&mut self, key: &'static str, items: impl FnOnce(&mut Items<'_, Self>))
    where
        Self: Sized,
    {
        self.array_open(key);
        items(&mut Items(self));
        self.array_close();
    }
    /// Attributes that depend on `key` alone, written by `write`: a
    /// writer may copy what `write` wrote the last time it got this key
    /// instead of calling it again. The caller makes the key name every
    /// input of `write` (values, and the identity of borrowed text).
    fn cached(&mut self, key: &BlockKey, write: impl FnOnce(&mut Self))
    where
        Self: Sized,
    {
        let _ = key;
        write(self);
    }
    /// Start an array attribute (use [`RecordWriter::str_array`]).
    fn array_open(&mut self, key: &'static str);
    /// One string element, the concatenation of `parts`.
    fn item_concat(&mut self, parts: &[&str]);
    /// One string element, formatted in place.
    fn item_display(&mut self, v: fmt::Arguments<'_>);
    /// End the array attribute [`RecordWriter::array_open`] started.
    fn array_close(&mut self);
    /// Finish a LogRecord: observed time and event name.
    fn finish_log(self, observed_unix_ns: u64, event_name: &str);
    /// Finish a Span with its status (always present, as the old mapping
    /// set it); an empty message is left out.
    fn finish_span(self, code: StatusCode, message: fmt::Arguments<'_>);
}

/// Elements of an array attribute, as [`RecordWriter::str_array`] hands
/// them to its closure.
pub struct Items<'a, W>(&'a mut W);

impl<W: RecordWriter> Items<'_, W> {
    /// One string element, the concatenation of `parts`.
    pub fn concat(&mut self, parts: &[&str]) {
        self.0.item_concat(parts);
    }

    /// One string element, formatted in place.
    pub fn display(&mut self, v: fmt::Arguments<'_>) {
        self.0.item_display(v);
    }
}

impl Encode for Encoder {
    type Writer<'a> = ProtoWriter<'a>;

    fn log(&mut self, time_unix_ns: u64, severity: Severity) -> ProtoWriter<'_> {
        let b = self.buf.begin();
        let mark = open(b, RECORD_FIELD, 2);
        if time_unix_ns != 0 {
            fixed64(b, 1, time_unix_ns);
        }
        varint(b, 2, severity.number());
        string(b, 3, severity.text().as_bytes());
        ProtoWriter {
            buf: b,
            text: &mut self.text,
            blocks: &mut self.blocks,
            attr_field: 6,
            mark,
            array: [NO_MARK; 3],
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
    ) -> ProtoWriter<'_> {
        let b = self.buf.begin();
        let mark = open(b, RECORD_FIELD, 2);
        string(b, 1, trace_id);
        string(b, 2, span_id);
        string(b, 5, name.as_bytes());
        if kind != 0 {
            varint(b, 6, kind);
        }
        if start_unix_ns != 0 {
            fixed64(b, 7, start_unix_ns);
        }
        if end_unix_ns != 0 {
            fixed64(b, 8, end_unix_ns);
        }
        ProtoWriter {
            buf: b,
            text: &mut self.text,
            blocks: &mut self.blocks,
            attr_field: 9,
            mark,
            array: [NO_MARK; 3],
        }
    }

    fn record(&self) -> &[u8] {
        self.buf.record()
    }
}

/// Writes one record's protobuf fields in tag order.
pub struct ProtoWriter<'a> {
    buf: &'a mut Vec<u8>,
    text: &'a mut String,
    blocks: &'a mut Blocks,
    attr_field: u32,
    mark: Mark,
    /// The open array attribute's key-value, AnyValue and ArrayValue.
    array: [Mark; 3],
}

const NO_MARK: Mark = Mark { body: 0, slot: 0 };

impl ProtoWriter<'_> {
    /// A string attribute from bytes already known to be UTF-8 text.
    #[inline]
    fn bytes_as_str(&mut self, key: &'static str, v: &[u8]) {
        let any_len = 1 + len_varint(v.len() as u64) + v.len();
        let mut o = Attr::open(self.buf, self.attr_field, key, any_len);
        o.byte(0x0a); // AnyValue.string_value
        o.varint(v.len() as u64);
        o.bytes(v);
        o.close();
    }
}

/// `encoded_len_varint`, with the one-byte case (nearly every length and
/// tag an attribute has) a compare instead of prost's arithmetic.
#[inline(always)]
fn len_varint(v: u64) -> usize {
    if v < 0x80 {
        1
    } else {
        encoded_len_varint(v)
    }
}

/// One KeyValue written in a single pass into room reserved for all of
/// it. The attribute writers are the encoder's innermost loop (~20 per
/// record): through `Vec::push` each of their six to eight pieces paid a
/// capacity check and a length store, which made `bytes_as_str` and `int`
/// a sixth of the agent's CPU under load (perf, sustained-load bench).
/// Here the length is known up front, so the room is reserved once and
/// the pieces are stored through a pointer.
struct Attr<'a> {
    buf: &'a mut Vec<u8>,
    /// Where the next byte goes, within the reserved room.
    p: *mut u8,
    /// End of the attribute: `close` checks every byte was written.
    end: *mut u8,
}

impl<'a> Attr<'a> {
    /// Reserve a whole KeyValue (field `attr_field`, `key`, an AnyValue of
    /// `any_len` bytes) and write everything up to the AnyValue's body.
    #[inline(always)]
    fn open(buf: &'a mut Vec<u8>, attr_field: u32, key: &'static str, any_len: usize) -> Self {
        let kv_len =
            1 + len_varint(key.len() as u64) + key.len() + 1 + len_varint(any_len as u64) + any_len;
        let tag = u64::from((attr_field << 3) | WireType::LengthDelimited as u32);
        let total = len_varint(tag) + len_varint(kv_len as u64) + kv_len;
        buf.reserve(total);
        let len = buf.len();
        // SAFETY: `reserve` made room for `total` bytes after `len`; `end`
        // is one past them, inside (or at the end of) the allocation.
        let p = unsafe { buf.as_mut_ptr().add(len) };
        let end = unsafe { p.add(total) };
        let mut o = Attr { buf, p, end };
        o.varint(tag);
        o.varint(kv_len as u64);
        o.byte(0x0a); // KeyValue.key
        o.varint(key.len() as u64);
        o.bytes(key.as_bytes());
        o.byte(0x12); // KeyValue.value
        o.varint(any_len as u64);
        o
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        debug_assert!(self.p < self.end);
        // SAFETY: the sizes `open` reserved for are exactly what the
        // writers write (`close` asserts it in debug builds, the unit tests
        // compare every kind with prost), so `p` is inside the room.
        unsafe {
            self.p.write(b);
            self.p = self.p.add(1);
        }
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    #[inline(always)]
    fn le64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.byte(b);
        }
    }

    /// Copy `s`: short strings as two fixed-size moves (see [`put`]).
    #[inline(always)]
    fn bytes(&mut self, s: &[u8]) {
        let n = s.len();
        debug_assert!(n <= self.end as usize - self.p as usize);
        // SAFETY: room for `n` bytes at `p` (as in `byte`); `s` is a
        // separate buffer (a borrowed value or key, never `buf` itself).
        unsafe {
            let (src, dst) = (s.as_ptr(), self.p);
            macro_rules! two_moves {
                ($k:literal) => {{
                    std::ptr::copy_nonoverlapping(src, dst, $k);
                    std::ptr::copy_nonoverlapping(src.add(n - $k), dst.add(n - $k), $k);
                }};
            }
            match n {
                0 => {}
                1..=3 => {
                    for i in 0..n {
                        dst.add(i).write(*src.add(i));
                    }
                }
                4..=7 => two_moves!(4),
                8..=15 => two_moves!(8),
                16..=32 => two_moves!(16),
                _ => std::ptr::copy_nonoverlapping(src, dst, n),
            }
            self.p = self.p.add(n);
        }
    }

    #[inline(always)]
    fn close(self) {
        assert!(self.p == self.end, "an attribute's size was miscounted");
        // SAFETY: every byte up to `end` was written (just checked), and
        // `end - as_ptr()` is within the capacity `open` reserved.
        unsafe {
            let n = self.end.offset_from(self.buf.as_ptr()) as usize;
            self.buf.set_len(n);
        }
    }
}

impl RecordWriter for ProtoWriter<'_> {
    /// LogRecord.body as a string.
    fn body(&mut self, args: fmt::Arguments<'_>) {
        let m = open(self.buf, 5, 1);
        let s = open(self.buf, 1, 1);
        let _ = Bytes(self.buf).write_fmt(args);
        close(self.buf, s);
        close(self.buf, m);
    }

    /// LogRecord.body as the concatenation of `parts` (no formatter).
    fn body_concat(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let any_len = 1 + encoded_len_varint(len as u64) + len;
        encode_key(5, WireType::LengthDelimited, self.buf);
        encode_varint(any_len as u64, self.buf);
        encode_key(1, WireType::LengthDelimited, self.buf);
        encode_varint(len as u64, self.buf);
        for p in parts {
            put(self.buf, p.as_bytes());
        }
    }

    fn str(&mut self, key: &'static str, v: &str) {
        self.bytes_as_str(key, v.as_bytes());
    }

    /// A string attribute from bytes that may not be UTF-8 (replacement
    /// characters where they are not).
    fn lossy(&mut self, key: &'static str, v: &[u8]) {
        match std::str::from_utf8(v) {
            Ok(s) => self.str(key, s),
            Err(_) => self.display(key, Lossy(v)),
        }
    }

    /// A string attribute formatted in place (addresses, times, numbers).
    fn display(&mut self, key: &'static str, v: impl fmt::Display) {
        self.text.clear();
        let _ = write!(self.text, "{v}");
        let text = std::mem::take(self.text);
        self.bytes_as_str(key, text.as_bytes());
        *self.text = text;
    }

    /// An IP address attribute (IPv4 written without the formatter: every
    /// connection and DNS record has two).
    fn ip(&mut self, key: &'static str, ip: std::net::IpAddr) {
        match ip {
            std::net::IpAddr::V4(v4) => {
                let mut tmp = [0u8; 15];
                let n = ipv4_text(v4.octets(), &mut tmp);
                self.bytes_as_str(key, &tmp[..n]);
            }
            v6 => self.display(key, v6),
        }
    }

    /// A Unix-ns time as RFC 3339 text.
    fn time(&mut self, key: &'static str, unix_ns: u64) {
        match crate::otel::Rfc3339(unix_ns).bytes() {
            Some(b) => self.bytes_as_str(key, &b),
            None => self.display(key, crate::otel::Rfc3339(unix_ns)),
        }
    }

    fn int(&mut self, key: &'static str, v: i64) {
        let any_len = 1 + len_varint(v as u64);
        let mut o = Attr::open(self.buf, self.attr_field, key, any_len);
        o.byte(0x18); // AnyValue.int_value
        o.varint(v as u64);
        o.close();
    }

    fn f64(&mut self, key: &'static str, v: f64) {
        let mut o = Attr::open(self.buf, self.attr_field, key, 9);
        o.byte(0x21); // AnyValue.double_value
        o.le64(v.to_bits());
        o.close();
    }

    fn bool(&mut self, key: &'static str, v: bool) {
        let mut o = Attr::open(self.buf, self.attr_field, key, 2);
        o.byte(0x10); // AnyValue.bool_value
        o.byte(u8::from(v));
        o.close();
    }

    fn array_open(&mut self, key: &'static str) {
        let kv = open(self.buf, self.attr_field, 1);
        string(self.buf, 1, key.as_bytes());
        let any = open(self.buf, 2, 1);
        let arr = open(self.buf, 5, 1);
        self.array = [kv, any, arr];
    }

    fn item_concat(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let any_len = 1 + encoded_len_varint(len as u64) + len;
        encode_key(1, WireType::LengthDelimited, self.buf);
        encode_varint(any_len as u64, self.buf);
        encode_key(1, WireType::LengthDelimited, self.buf);
        encode_varint(len as u64, self.buf);
        for p in parts {
            put(self.buf, p.as_bytes());
        }
    }

    fn item_display(&mut self, v: fmt::Arguments<'_>) {
        let any = open(self.buf, 1, 1);
        let s = open(self.buf, 1, 1);
        let _ = Bytes(self.buf).write_fmt(v);
        close(self.buf, s);
        close(self.buf, any);
    }

    fn cached(&mut self, key: &BlockKey, write: impl FnOnce(&mut Self)) {
        let field = self.attr_field;
        let hit = self
            .blocks
            .entries
            .iter()
            .find(|b| b.key[0] == key[0] && b.field == field && b.key == *key);
        if let Some(b) = hit {
            self.buf.extend_from_slice(&b.bytes);
            return;
        }
        let start = self.buf.len();
        write(self);
        let slot = self.blocks.next;
        self.blocks.next = (slot + 1) % BLOCKS;
        let b = &mut self.blocks.entries[slot];
        b.bytes.clear();
        b.bytes.extend_from_slice(&self.buf[start..]);
        b.key = *key;
        b.field = self.attr_field;
    }

    fn array_close(&mut self) {
        let [kv, any, arr] = self.array;
        close(self.buf, arr);
        close(self.buf, any);
        close(self.buf, kv);
    }

    /// Finish a LogRecord: observed time and event name.
    fn finish_log(self, observed_unix_ns: u64, event_name: &str) {
        if observed_unix_ns != 0 {
            fixed64(self.buf, 11, observed_unix_ns);
        }
        if !event_name.is_empty() {
            string(self.buf, 12, event_name.as_bytes());
        }
        close(self.buf, self.mark);
    }

    /// Finish a Span with its status (always present, as the old mapping
    /// set it); an empty message is left out.
    fn finish_span(self, code: StatusCode, message: fmt::Arguments<'_>) {
        let st = open(self.buf, 15, 1);
        let m = open(self.buf, 2, 1);
        let before = self.buf.len();
        let _ = Bytes(self.buf).write_fmt(message);
        if self.buf.len() == before {
            // proto3 leaves an empty string out: drop the key and slot.
            self.buf.truncate(before - 2);
        } else {
            close(self.buf, m);
        }
        if code != StatusCode::Unset {
            varint(self.buf, 3, code as u64);
        }
        close(self.buf, st);
        close(self.buf, self.mark);
    }
}

/// Dotted-quad text of an IPv4 address into `out` (what `Ipv4Addr`'s
/// Display writes, without the formatter); returns its length.
pub fn ipv4_text(o: [u8; 4], out: &mut [u8; 15]) -> usize {
    let mut n = 0;
    for (i, b) in o.into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        // Three bytes stored whatever the octet's length (the last ones
        // are overwritten or past the text): no branch per digit.
        let (digits, len) = OCTET_TEXT[usize::from(b)];
        out[n..n + 3].copy_from_slice(&digits);
        n += usize::from(len);
    }
    n
}

/// Each octet's decimal digits and their count: an address is written in
/// every connection's and DNS lookup's records, up to four times.
static OCTET_TEXT: [([u8; 3], u8); 256] = {
    let mut t = [([0u8; 3], 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let (h, d, u) = ((b / 100) as u8, ((b / 10) % 10) as u8, (b % 10) as u8);
        t[b] = if b >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if b >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        b += 1;
    }
    t
};

/// The fixed part of every export request of one signal: the resource and
/// the scope, encoded once; [`BatchFramer::frame`] puts them in front of a
/// batch of records.
#[derive(Debug, Clone)]
pub struct BatchFramer {
    /// `ResourceLogs.resource` / `ResourceSpans.resource` field, encoded.
    resource_field: Vec<u8>,
    /// `ScopeLogs.scope` / `ScopeSpans.scope` field, encoded.
    scope_field: Vec<u8>,
}

impl BatchFramer {
    pub fn new(
        resource: &opentelemetry_proto::tonic::resource::v1::Resource,
        scope: &opentelemetry_proto::tonic::common::v1::InstrumentationScope,
    ) -> Self {
        let mut resource_field = Vec::new();
        prost::encoding::message::encode(1, resource, &mut resource_field);
        let mut scope_field = Vec::new();
        prost::encoding::message::encode(1, scope, &mut scope_field);
        Self {
            resource_field,
            scope_field,
        }
    }

    /// Bytes a batch must leave free in front of its records.
    pub fn headroom(&self) -> usize {
        // Three keys and three lengths of at most 5 bytes each.
        self.resource_field.len() + self.scope_field.len() + 3 * 6
    }

    /// Write the request header (`resource_logs`/`resource_spans` field 1,
    /// its resource, the `scope_logs`/`scope_spans` field 2, its scope)
    /// just before `buf[start..]`, which holds the batch's records; returns
    /// where the request starts.
    pub fn frame(&self, buf: &mut [u8], start: usize) -> usize {
        let records = buf.len() - start;
        let scope_msg = self.scope_field.len() + records;
        let resource_msg =
            self.resource_field.len() + 1 + encoded_len_varint(scope_msg as u64) + scope_msg;
        let header = 1
            + encoded_len_varint(resource_msg as u64)
            + self.resource_field.len()
            + 1
            + encoded_len_varint(scope_msg as u64)
            + self.scope_field.len();
        let at = start - header;
        let mut w = &mut buf[at..start];
        prost::encoding::encode_key(1, WireType::LengthDelimited, &mut w);
        prost::encoding::encode_varint(resource_msg as u64, &mut w);
        bytes::BufMut::put_slice(&mut w, &self.resource_field);
        prost::encoding::encode_key(2, WireType::LengthDelimited, &mut w);
        prost::encoding::encode_varint(scope_msg as u64, &mut w);
        bytes::BufMut::put_slice(&mut w, &self.scope_field);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::{
        common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue},
        logs::v1::LogRecord,
    };
    use prost::Message;

    /// `put` and the fixed-size varint write append exactly what
    /// `extend_from_slice` would, at every length and starting offset.
    #[test]
    fn put_and_varints_append_exactly() {
        let src: Vec<u8> = (0..100u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(1))
            .collect();
        for pre in 0..20 {
            for n in 0..src.len() {
                let mut a = vec![0xAA; pre];
                let mut b = a.clone();
                put(&mut a, &src[..n]);
                b.extend_from_slice(&src[..n]);
                assert_eq!(a, b, "pre {pre} len {n}");
            }
        }
        for shift in 0..64 {
            for v in [1u64 << shift, (1u64 << shift) - 1, u64::MAX >> shift] {
                let (mut a, mut b) = (vec![7u8; 3], vec![7u8; 3]);
                encode_varint(v, &mut a);
                prost::encoding::encode_varint(v, &mut b);
                assert_eq!(a, b, "{v}");
            }
        }
    }

    #[test]
    fn slots_grow_and_shrink_to_the_real_length() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut enc = Encoder::default();
            let text = "x".repeat(n);
            let mut w = enc.log(5, Severity::Info);
            w.body(format_args!("{text}"));
            w.str("k", &text);
            w.finish_log(0, "e");
            let want = LogRecord {
                time_unix_nano: 5,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(text.clone())),
                }),
                attributes: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(text.clone())),
                    }),
                    ..Default::default()
                }],
                event_name: "e".into(),
                ..Default::default()
            };
            let mut exp = Vec::new();
            prost::encoding::message::encode(RECORD_FIELD, &want, &mut exp);
            assert_eq!(enc.record(), &exp[..], "n = {n}");
        }
    }

    /// A key past 127 bytes: its length is a two-byte varint.
    const LONG_KEY: &str = concat!(
        "a.key.long.enough.to.need.two.length.bytes.",
        "a.key.long.enough.to.need.two.length.bytes.",
        "a.key.long.enough.to.need.two.length.bytes."
    );

    #[test]
    fn values_of_every_kind_match_prost() {
        let mut enc = Encoder::default();
        let mut w = enc.log(0, Severity::Warn);
        w.int("i", -3);
        w.int("z", 0);
        w.f64("d", 1.5);
        w.bool("b", true);
        w.lossy("l", b"a\xffb");
        w.display("ip", std::net::Ipv4Addr::LOCALHOST);
        // Every size class of the copy, and lengths of two-byte varints.
        let sizes = [0, 1, 3, 4, 7, 8, 15, 16, 32, 33, 127, 128, 300];
        let texts: Vec<String> = sizes.iter().map(|&n| "y".repeat(n)).collect();
        for t in &texts {
            w.str(LONG_KEY, t);
        }
        w.int("max", i64::MAX);
        w.bool("f", false);
        w.str_array("a", |a| {
            a.concat(&["o", "", "ne"]);
            a.display(format_args!("{}", "x".repeat(200)));
        });
        w.str_array("empty", |_| {});
        w.finish_log(7, "");
        let got = LogRecord::decode(&enc.record()[3..]).unwrap();
        let kv = |k: &str, v| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let s = |v: &str| AnyValue {
            value: Some(Value::StringValue(v.into())),
        };
        let want = LogRecord {
            observed_time_unix_nano: 7,
            severity_number: 13,
            severity_text: "WARN".into(),
            attributes: vec![
                kv("i", Value::IntValue(-3)),
                kv("z", Value::IntValue(0)),
                kv("d", Value::DoubleValue(1.5)),
                kv("b", Value::BoolValue(true)),
                kv("l", Value::StringValue("a\u{fffd}b".into())),
                kv("ip", Value::StringValue("127.0.0.1".into())),
            ]
            .into_iter()
            .chain(
                texts
                    .iter()
                    .map(|t| kv(LONG_KEY, Value::StringValue(t.clone()))),
            )
            .chain([
                kv("max", Value::IntValue(i64::MAX)),
                kv("f", Value::BoolValue(false)),
                kv(
                    "a",
                    Value::ArrayValue(ArrayValue {
                        values: vec![s("one"), s(&"x".repeat(200))],
                    }),
                ),
                kv("empty", Value::ArrayValue(ArrayValue { values: vec![] })),
            ])
            .collect(),
            ..Default::default()
        };
        assert_eq!(got, want);
        let mut exp = Vec::new();
        prost::encoding::message::encode(RECORD_FIELD, &want, &mut exp);
        assert_eq!(enc.record(), &exp[..]);
    }

    /// Threads each writing spans and logs (a connecting and an accepting
    /// thread, a resolver...): once each block is written, every record
    /// reuses it, whatever the tids' low bits (they once picked the entry,
    /// and 11675 and 11676 took the same two in turn).
    #[test]
    fn blocks_of_a_few_threads_are_all_reused() {
        let mut enc = Encoder::default();
        let mut written = 0;
        let mut first = std::collections::HashMap::new();
        for round in 0..3 {
            for tid in [11675u64, 11676, 11672, 4] {
                let key = [tid | 11671 << 32, 0, 1, 0, 0, 0, 0, 0, 3];
                let mut w = enc.log(1, Severity::Info);
                w.cached(&key, |w| {
                    written += 1;
                    w.int("thread.id", tid as i64);
                });
                w.finish_log(0, "e");
                let log = enc.record().to_vec();
                let mut w = enc.span(&[1; 16], &[2; 8], "s", 1, 1, 2);
                w.cached(&key, |w| {
                    written += 1;
                    w.int("thread.id", tid as i64);
                });
                w.finish_span(StatusCode::Ok, format_args!(""));
                let span = enc.record().to_vec();
                // A copy is what was written for that key and kind.
                assert_eq!(
                    first.entry(tid).or_insert((log.clone(), span.clone())),
                    &(log, span)
                );
            }
            assert_eq!(written, 8, "round {round}");
        }
    }

    #[test]
    fn fast_text_matches_display() {
        // Every octet value in every position, and the widest text.
        let every = (0..=255u8).flat_map(|b| {
            [
                [b, 9, 10, 100],
                [99, b, 0, 255],
                [1, 10, b, 7],
                [200, 2, 3, b],
            ]
        });
        for o in every.chain([[255, 255, 255, 255], [0, 0, 0, 0]]) {
            let mut t = [0; 15];
            let n = ipv4_text(o, &mut t);
            assert_eq!(&t[..n], std::net::Ipv4Addr::from(o).to_string().as_bytes());
        }
        for ns in [
            0,
            1,
            951_782_400_000_000_000,
            1_795_000_000_123_456_789,
            u64::MAX,
        ] {
            let r = crate::otel::Rfc3339(ns);
            if let Some(b) = r.bytes() {
                assert_eq!(std::str::from_utf8(&b).unwrap(), r.to_string());
            }
        }
    }

    #[test]
    fn lossy_matches_from_utf8_lossy() {
        for b in [&b"ok"[..], b"\xff", b"a\xe2\x82", b"\xe2\x82\x00x\xf0", b""] {
            assert_eq!(Lossy(b).to_string(), String::from_utf8_lossy(b));
        }
    }
}
