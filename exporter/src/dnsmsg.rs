//! DNS wire-format parsing for captured packets.
//!
//! Hand-written rather than hickory-proto or simple-dns because captures are
//! cut at 512 bytes: we want the header and question (always there) and as
//! many answers as fit, not an all-or-nothing parse. Every loop is bounded:
//! names by length and label count, compression by strictly backward
//! pointers (so no loop can form) and a jump limit, records by the counts
//! and the buffer.

use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;

/// Longest name in presentation form (RFC 1035: 255 octets on the wire).
const MAX_NAME: usize = 255;
/// Compression pointers followed per name. Backward-only pointers already
/// rule out loops; this bounds the work on hostile input.
const MAX_JUMPS: usize = 32;
/// Questions we look at (real queries have one).
const MAX_QUESTIONS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message shorter than the 12-byte header")]
    ShortHeader,
    #[error("name runs past the end of the message")]
    NameTruncated,
    #[error("label or name longer than the protocol allows")]
    NameTooLong,
    #[error("compression pointer does not point backwards")]
    BadPointer,
    #[error("too many compression pointers")]
    TooManyJumps,
    #[error("reserved label type")]
    BadLabel,
    #[error("question runs past the end of the message")]
    QuestionTruncated,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub qtype: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    /// Presentation form of the data (address, target name, …).
    pub data: String,
    /// `data` is an IPv4 or IPv6 address (an A or AAAA record of the
    /// right length): what semconv's `dns.answers` lists.
    pub is_address: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    pub rcode: u8,
    /// The TC bit: the server cut the message (client retries over TCP).
    pub tc: bool,
    pub questions: Vec<Question>,
    pub answers: Vec<Answer>,
    /// The answer count the header announced.
    pub answer_count: u16,
    /// Answers were announced but the capture or the limit cut them.
    pub answers_cut: bool,
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(off)?,
        *b.get(off + 1)?,
        *b.get(off + 2)?,
        *b.get(off + 3)?,
    ]))
}

/// Read a (possibly compressed) name at `off`. Returns the name and the
/// offset just after it in the original stream.
pub fn read_name(msg: &[u8], off: usize) -> Result<(String, usize), ParseError> {
    let mut name = String::new();
    let next = read_name_into(msg, off, &mut name)?;
    Ok((name, next))
}

/// [`read_name`] into `name` (cleared first), reusing its allocation.
pub fn read_name_into(msg: &[u8], off: usize, name: &mut String) -> Result<usize, ParseError> {
    name.clear();
    append_name(msg, off, name)
}

/// Label bytes written as they are: printable ASCII but the separator and
/// the escape (a table: the three comparisons per byte showed in the
/// parse of every message).
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_graphic() && b != b'.' && b != b'\\';
        c += 1;
    }
    t
};

/// A name appended to what `name` holds already.
fn append_name(msg: &[u8], mut off: usize, name: &mut String) -> Result<usize, ParseError> {
    let base = name.len();
    let mut end_after: Option<usize> = None;
    let mut jumps = 0;
    // The lowest position read so far: pointers must go below it.
    let mut floor = off;
    loop {
        let len = *msg.get(off).ok_or(ParseError::NameTruncated)? as usize;
        match len & 0xC0 {
            0x00 => {
                if len == 0 {
                    let next = end_after.unwrap_or(off + 1);
                    if name.len() == base {
                        name.push('.');
                    }
                    return Ok(next);
                }
                let label = msg
                    .get(off + 1..off + 1 + len)
                    .ok_or(ParseError::NameTruncated)?;
                if name.len() - base + len + 1 > MAX_NAME {
                    return Err(ParseError::NameTooLong);
                }
                if name.len() > base {
                    name.push('.');
                }
                let plain = |c: &u8| PLAIN[usize::from(*c)];
                if label.iter().all(plain) {
                    // SAFETY: every byte is ASCII, so the String stays UTF-8.
                    // Not `str::from_utf8` + `push_str`: validating what was
                    // just checked byte by byte was 7 % of a DNS record's
                    // instructions.
                    crate::otel::wire::put(unsafe { name.as_mut_vec() }, label);
                } else {
                    for &c in label {
                        // Keep names printable; escape the rest like dig does.
                        if plain(&c) {
                            name.push(c as char);
                        } else {
                            let _ = write!(name, "\\{c:03}");
                        }
                    }
                }
                off += 1 + len;
            }
            0xC0 => {
                let b2 = *msg.get(off + 1).ok_or(ParseError::NameTruncated)? as usize;
                let target = ((len & 0x3F) << 8) | b2;
                if target >= floor {
                    return Err(ParseError::BadPointer);
                }
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(ParseError::TooManyJumps);
                }
                if end_after.is_none() {
                    end_after = Some(off + 2);
                }
                floor = target;
                off = target;
            }
            _ => return Err(ParseError::BadLabel),
        }
    }
}

/// Presentation form of an answer's data, into `out` (cleared first);
/// true when it is an address.
fn rdata_into(msg: &[u8], rtype: u16, start: usize, len: usize, out: &mut String) -> bool {
    out.clear();
    let Some(d) = msg.get(start..start + len) else {
        return false;
    };
    match (rtype, len) {
        (1, 4) => {
            let mut t = [0; 15];
            let n = crate::otel::wire::ipv4_text([d[0], d[1], d[2], d[3]], &mut t);
            out.push_str(std::str::from_utf8(&t[..n]).unwrap_or_default());
            return true;
        }
        (28, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(d);
            let _ = write!(out, "{}", Ipv6Addr::from(a));
            return true;
        }
        (5 | 2 | 12, _) => {
            if read_name_into(msg, start, out).is_err() {
                out.clear();
            }
        }
        (15, _) if len > 2 => {
            let pref = u16::from_be_bytes([d[0], d[1]]);
            let _ = write!(out, "{pref} ");
            let at = out.len();
            if append_name(msg, start + 2, out).is_err() {
                out.truncate(at);
            }
        }
        (16, _) => {
            // TXT: length-prefixed strings, joined by spaces.
            let mut i = 0;
            while i < d.len() {
                let l = d[i] as usize;
                let s = d.get(i + 1..(i + 1 + l).min(d.len())).unwrap_or(&[]);
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&String::from_utf8_lossy(s));
                i += 1 + l;
            }
        }
        _ => {
            let _ = write!(out, "{} ({len} bytes)", TypeName(rtype));
        }
    }
    false
}

/// The `i`th element of `v`, added when `v` is that short: parsing into a
/// reused message keeps its elements' strings.
fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.push(T::default());
    }
    &mut v[i]
}

/// Parse one DNS message; at most `max_answers` answers are decoded.
pub fn parse(msg: &[u8], max_answers: usize) -> Result<Message, ParseError> {
    let mut m = Message::default();
    parse_into(msg, max_answers, &mut m)?;
    Ok(m)
}

/// [`parse`] into `m`, reusing its vectors and strings (a reader that
/// parses into the same message allocates nothing once it has seen the
/// largest message). On error `m` holds whatever was parsed.
pub fn parse_into(msg: &[u8], max_answers: usize, m: &mut Message) -> Result<(), ParseError> {
    if msg.len() < 12 {
        return Err(ParseError::ShortHeader);
    }
    let id = be16(msg, 0).ok_or(ParseError::ShortHeader)?;
    let flags = be16(msg, 2).ok_or(ParseError::ShortHeader)?;
    let qd = be16(msg, 4).ok_or(ParseError::ShortHeader)?;
    let an = be16(msg, 6).ok_or(ParseError::ShortHeader)?;
    m.id = id;
    m.response = flags & 0x8000 != 0;
    m.opcode = ((flags >> 11) & 0xF) as u8;
    m.rcode = (flags & 0xF) as u8;
    m.tc = flags & 0x0200 != 0;
    m.answer_count = an;
    m.answers_cut = false;
    let mut nq = 0;
    let mut na = 0;
    let mut off = 12;
    let mut spare = String::new();
    let result = (|| {
        for i in 0..usize::from(qd) {
            let name = if i < MAX_QUESTIONS {
                &mut slot(&mut m.questions, i).name
            } else {
                &mut spare
            };
            let next = read_name_into(msg, off, name)?;
            let qtype = be16(msg, next).ok_or(ParseError::QuestionTruncated)?;
            be16(msg, next + 2).ok_or(ParseError::QuestionTruncated)?;
            off = next + 4;
            if i < MAX_QUESTIONS {
                m.questions[i].qtype = qtype;
                nq = i + 1;
            }
        }
        for _ in 0..an {
            if na >= max_answers {
                m.answers_cut = true;
                break;
            }
            let a = slot(&mut m.answers, na);
            // An answer's name is nearly always a pointer to the first
            // question's (offset 12, parsed above as the same text):
            // copied, not walked again.
            let next = if msg.get(off..off + 2) == Some(&[0xC0, 0x0C]) && nq > 0 {
                a.name.clear();
                a.name.push_str(&m.questions[0].name);
                Ok(off + 2)
            } else {
                read_name_into(msg, off, &mut a.name)
            };
            // A cut capture ends the answers, it does not fail the message.
            let Ok(next) = next else {
                m.answers_cut = true;
                break;
            };
            let (Some(rtype), Some(ttl), Some(rdlen)) =
                (be16(msg, next), be32(msg, next + 4), be16(msg, next + 8))
            else {
                m.answers_cut = true;
                break;
            };
            let start = next + 10;
            let len = usize::from(rdlen);
            if start + len > msg.len() {
                m.answers_cut = true;
                break;
            }
            a.rtype = rtype;
            a.ttl = ttl;
            a.is_address = rdata_into(msg, rtype, start, len, &mut a.data);
            na += 1;
            off = start + len;
        }
        Ok(())
    })();
    m.questions.truncate(nq);
    m.answers.truncate(na);
    result
}

/// DNS over TCP: each message has a 2-byte length prefix, and one segment
/// may carry several (or the start of one). Returns the messages found, the
/// last possibly cut.
pub fn split_tcp(stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut off = 0;
    // At most one message per 14 bytes (2 + 12-byte header): bounded.
    while off + 2 <= stream.len() {
        let len = usize::from(u16::from_be_bytes([stream[off], stream[off + 1]]));
        if len == 0 {
            break;
        }
        let end = (off + 2 + len).min(stream.len());
        out.push(&stream[off + 2..end]);
        off += 2 + len;
    }
    out
}

pub fn type_name(t: u16) -> String {
    TypeName(t).to_string()
}

pub fn rcode_name(r: u8) -> String {
    Rcode(r).to_string()
}

/// A record type's name (`A`, `AAAA`, `TYPE99`), formatted where it is
/// written.
#[derive(Debug, Clone, Copy)]
pub struct TypeName(pub u16);

impl TypeName {
    /// The name when it is a known one.
    pub fn known(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "A",
            2 => "NS",
            5 => "CNAME",
            6 => "SOA",
            12 => "PTR",
            15 => "MX",
            16 => "TXT",
            28 => "AAAA",
            33 => "SRV",
            41 => "OPT",
            64 => "SVCB",
            65 => "HTTPS",
            255 => "ANY",
            _ => return None,
        })
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(s) => f.write_str(s),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

/// A response code's name (`NOERROR`, `NXDOMAIN`, `RCODE12`).
#[derive(Debug, Clone, Copy)]
pub struct Rcode(pub u8);

impl Rcode {
    /// The name when it is a known one.
    pub fn known(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            _ => return None,
        })
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(s) => f.write_str(s),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! Builds wire-format messages for tests.
    pub fn name(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in n.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    pub fn header(id: u16, flags: u16, qd: u16, an: u16) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [id, flags, qd, an, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    pub fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
        let mut v = header(id, 0x0100, 1, 0);
        v.extend(name(qname));
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    /// A response to `qname` with a CNAME to `target` (compressed against
    /// the question) and an A record for it.
    pub fn cname_response(id: u16, qname: &str, target: &str, ip: [u8; 4]) -> Vec<u8> {
        let mut v = header(id, 0x8180, 1, 2);
        v.extend(name(qname));
        v.extend_from_slice(&[0, 1, 0, 1]);
        // answer 1: <ptr to qname at 12> CNAME target
        v.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
        let t = name(target);
        v.extend_from_slice(&(t.len() as u16).to_be_bytes());
        let target_off = v.len();
        v.extend(t);
        // answer 2: <ptr to target> A ip
        v.extend_from_slice(&[0xC0, target_off as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        v.extend_from_slice(&ip);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::{build::*, *};
    use proptest::prelude::*;

    #[test]
    fn parses_query_and_cname_chain_with_compression() {
        let q = parse(&query(0xBEEF, "www.example.com", 1), 16).unwrap();
        assert_eq!(q.id, 0xBEEF);
        assert!(!q.response);
        assert_eq!(
            q.questions,
            vec![Question {
                name: "www.example.com".into(),
                qtype: 1
            }]
        );

        let r = parse(
            &cname_response(7, "alias.tapio.test", "www.tapio.test", [198, 18, 0, 10]),
            16,
        )
        .unwrap();
        assert!(r.response);
        assert_eq!(rcode_name(r.rcode), "NOERROR");
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.answers[0].name, "alias.tapio.test");
        assert_eq!(type_name(r.answers[0].rtype), "CNAME");
        assert_eq!(r.answers[0].data, "www.tapio.test");
        assert_eq!(r.answers[1].name, "www.tapio.test");
        assert_eq!(r.answers[1].data, "198.18.0.10");
        assert!(!r.answers[0].is_address && r.answers[1].is_address);
        assert!(!r.answers_cut);
    }

    #[test]
    fn only_a_and_aaaa_records_of_the_right_length_are_addresses() {
        let mut m = header(3, 0x8180, 1, 3);
        m.extend(name("a.test"));
        m.extend_from_slice(&[0, 28, 0, 1]);
        // AAAA 2001:db8::10
        m.extend_from_slice(&[0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        m.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ]);
        // An A record with 5 bytes of data, and a TXT: not addresses.
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 1, 2, 3, 4, 5]);
        m.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 3, 2, b'h', b'i']);
        let r = parse(&m, 16).unwrap();
        let got: Vec<(&str, bool)> = r
            .answers
            .iter()
            .map(|a| (a.data.as_str(), a.is_address))
            .collect();
        assert_eq!(
            got,
            [
                ("2001:db8::10", true),
                ("A (5 bytes)", false),
                ("hi", false)
            ]
        );
    }

    #[test]
    fn parsing_into_a_reused_message_equals_a_fresh_parse() {
        let big = cname_response(7, "alias.tapio.test", "www.tapio.test", [1, 2, 3, 4]);
        let small = query(8, "a.test", 28);
        let mut mx = header(9, 0x8180, 1, 1);
        mx.extend(name("m.test"));
        mx.extend_from_slice(&[
            0, 15, 0, 1, 0xC0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 4, 0, 10, 0xC0, 12,
        ]);
        let mut m = Message::default();
        for msg in [&big, &small, &big, &mx, &small] {
            parse_into(msg, 16, &mut m).unwrap();
            assert_eq!(m, parse(msg, 16).unwrap());
        }
        assert_eq!(parse(&mx, 16).unwrap().answers[0].data, "10 m.test");
    }

    /// A question whose label needs escapes, answered through the pointer
    /// to it (copied) and through a pointer to the same name elsewhere
    /// (walked): the same dig-style text both ways.
    #[test]
    fn escaped_names_read_the_same_through_the_question_pointer() {
        let mut m = build::header(9, 0x8180, 1, 2);
        let label = [b'.', b'\\', b' ', 0xFF, b'a'];
        m.push(label.len() as u8);
        m.extend_from_slice(&label);
        m.extend(build::name("test"));
        m.extend_from_slice(&[0, 1, 0, 1]);
        // Answer 1 names the question by 0xC00C, answer 2 by a pointer to
        // its own copy of the name, written as labels in answer 1's data
        // (a CNAME) at a known offset.
        let a1 = m.len();
        m.extend_from_slice(&[0xC0, 0x0C, 0, 5, 0, 1, 0, 0, 0, 60]);
        let target = {
            let mut t = vec![label.len() as u8];
            t.extend_from_slice(&label);
            t.extend(build::name("test"));
            t
        };
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let copy_at = m.len();
        m.extend_from_slice(&target);
        m.extend_from_slice(&[0xC0 | (copy_at >> 8) as u8, copy_at as u8]);
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 7]);
        let p = parse(&m, 8).unwrap();
        let want = "\\046\\092\\032\\255a.test";
        assert_eq!(p.questions[0].name, want);
        assert_eq!(p.answers.len(), 2, "{p:?}");
        assert_eq!(p.answers[0].name, want);
        assert_eq!(p.answers[0].data, want, "the CNAME's data, walked");
        assert_eq!(p.answers[1].name, want);
        assert!(a1 > 12 && !p.answers_cut);
    }

    #[test]
    fn truncated_answers_keep_the_question() {
        let full = cname_response(7, "alias.tapio.test", "www.tapio.test", [1, 2, 3, 4]);
        let cut = &full[..full.len() - 3];
        let r = parse(cut, 16).unwrap();
        assert_eq!(r.questions[0].name, "alias.tapio.test");
        assert_eq!(r.answers.len(), 1);
        assert!(r.answers_cut);
        let r = parse(&full, 1).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(r.answers_cut);
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        // A name at 12 that points to itself.
        let mut m = header(1, 0, 1, 0);
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&m, 4), Err(ParseError::BadPointer));
        // Two pointers pointing at each other.
        let mut m = header(1, 0, 1, 0);
        m.extend_from_slice(&[0xC0, 14, 0xC0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&m, 4), Err(ParseError::BadPointer));
        // Reserved label type 0x40.
        let mut m = header(1, 0, 1, 0);
        m.extend_from_slice(&[0x41, 0]);
        assert_eq!(parse(&m, 4), Err(ParseError::BadLabel));
        assert_eq!(parse(&[0; 5], 4), Err(ParseError::ShortHeader));
    }

    #[test]
    fn names_are_bounded() {
        let mut m = header(1, 0, 1, 0);
        for _ in 0..10 {
            m.push(63);
            m.extend(std::iter::repeat_n(b'a', 63));
        }
        m.push(0);
        assert_eq!(parse(&m, 4), Err(ParseError::NameTooLong));
    }

    #[test]
    fn tcp_framing_splits_several_messages() {
        let a = query(1, "a.test", 1);
        let b = query(2, "b.test", 28);
        let mut s = Vec::new();
        for m in [&a, &b] {
            s.extend_from_slice(&(m.len() as u16).to_be_bytes());
            s.extend_from_slice(m);
        }
        let parts = split_tcp(&s);
        assert_eq!(parts.len(), 2);
        assert_eq!(parse(parts[1], 4).unwrap().questions[0].qtype, 28);
        // A cut second message is returned cut.
        let parts = split_tcp(&s[..s.len() - 4]);
        assert_eq!(parts.len(), 2);
        assert!(parse(parts[1], 4).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Garbage never panics or hangs.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes, 16);
            for m in split_tcp(&bytes) {
                let _ = parse(m, 16);
            }
        }

        /// Valid messages with random mutations never panic; unmutated ones
        /// round-trip their question.
        #[test]
        fn mutated_messages_never_panic(
            label in "[a-z0-9]{1,20}",
            qtype in any::<u16>(),
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
        ) {
            let qname = format!("{label}.tapio.test");
            let msg = cname_response(9, &qname, "t.tapio.test", [10, 0, 0, 1]);
            let ok = parse(&query(3, &qname, qtype), 16).unwrap();
            prop_assert_eq!(&ok.questions[0].name, &qname);
            prop_assert_eq!(ok.questions[0].qtype, qtype);
            let mut m = msg.clone();
            for (i, v) in flips {
                if let Some(b) = m.get_mut(i) {
                    *b = v;
                }
            }
            let _ = parse(&m, 16);
        }
    }
}
