//! Network records as the kernel writes them, read without allocating.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use tapio_shared::{
    read_record, record_kind, tapio_event_header, tapio_event_kind as kind, tapio_family,
    tapio_tcp_close, tapio_tcp_connect, tapio_tcp_outcome as outcome, tapio_tcp_tuple,
};

pub use crate::probes::DecodeError;

/// One network record.
#[derive(Clone)]
pub enum Record {
    Connect(tapio_tcp_connect),
    Close(tapio_tcp_close),
}

impl Record {
    pub fn header(&self) -> &tapio_event_header {
        match self {
            Record::Connect(r) => &r.hdr,
            Record::Close(r) => &r.hdr,
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_TCP_CONNECT as u32 {
        Ok(Record::Connect(read_record(bytes)?))
    } else if k == kind::TAPIO_EVENT_TCP_CLOSE as u32 {
        Ok(Record::Close(read_record(bytes)?))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

/// How a connect attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    Timeout,
    Unreachable,
    Error,
    Cancelled,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Timeout,
        Outcome::Unreachable,
        Outcome::Error,
        Outcome::Cancelled,
    ];

    pub fn from_raw(v: u32) -> Self {
        match v {
            outcome::TAPIO_TCP_OK => Outcome::Ok,
            outcome::TAPIO_TCP_REFUSED => Outcome::Refused,
            outcome::TAPIO_TCP_TIMEOUT => Outcome::Timeout,
            outcome::TAPIO_TCP_UNREACHABLE => Outcome::Unreachable,
            outcome::TAPIO_TCP_CANCELLED => Outcome::Cancelled,
            _ => Outcome::Error,
        }
    }

    /// `error.type` value; `None` for success.
    pub fn error_type(self) -> Option<&'static str> {
        match self {
            Outcome::Ok => None,
            Outcome::Refused => Some("refused"),
            Outcome::Timeout => Some("timeout"),
            Outcome::Unreachable => Some("unreachable"),
            Outcome::Error => Some("error"),
            Outcome::Cancelled => Some("cancelled"),
        }
    }
}

/// Local and remote ends; v4-mapped addresses come back as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
}

use crate::probes::ip_from16 as addr;

impl From<&tapio_tcp_tuple> for Tuple {
    fn from(t: &tapio_tcp_tuple) -> Self {
        let (local, remote) = if u32::from(t.family) == tapio_family::TAPIO_AF_INET {
            // Stored v4-mapped by the kernel side.
            (
                IpAddr::V4(Ipv4Addr::new(
                    t.saddr[12],
                    t.saddr[13],
                    t.saddr[14],
                    t.saddr[15],
                )),
                IpAddr::V4(Ipv4Addr::new(
                    t.daddr[12],
                    t.daddr[13],
                    t.daddr[14],
                    t.daddr[15],
                )),
            )
        } else {
            (addr(t.saddr), addr(t.daddr))
        };
        Self {
            local,
            local_port: t.sport,
            remote,
            remote_port: t.dport,
        }
    }
}

impl Tuple {
    /// `ipv4` or `ipv6` as on the wire.
    pub fn network_type(&self) -> &'static str {
        if self.remote.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        }
    }
}

/// Errno name of a failed connect (ECONNREFUSED…), empty for 0.
pub struct Errno(pub i32);

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            111 => "ECONNREFUSED",
            110 => "ETIMEDOUT",
            113 => "EHOSTUNREACH",
            101 => "ENETUNREACH",
            104 => "ECONNRESET",
            0 => "",
            n => return write!(f, "errno {n}"),
        })
    }
}

/// Errno names for the connect failures worth naming.
pub fn errno_name(e: i32) -> String {
    Errno(e).to_string()
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use tapio_shared::as_bytes;
    use tapio_shared::tapio_event_kind as kind;

    pub fn v4_tuple(local: [u8; 4], lport: u16, remote: [u8; 4], rport: u16) -> tapio_tcp_tuple {
        let mut t = tapio_tcp_tuple {
            family: tapio_family::TAPIO_AF_INET as u16,
            sport: lport,
            dport: rport,
            ..Default::default()
        };
        t.saddr[10] = 0xff;
        t.saddr[11] = 0xff;
        t.saddr[12..].copy_from_slice(&local);
        t.daddr[10] = 0xff;
        t.daddr[11] = 0xff;
        t.daddr[12..].copy_from_slice(&remote);
        t
    }

    pub fn connect_bytes(outcome: u32, err: i32, tuple: tapio_tcp_tuple) -> Vec<u8> {
        let mut hdr = crate::probes::process::fixtures::header(kind::TAPIO_EVENT_PROCESS_EXEC);
        hdr.kind = kind::TAPIO_EVENT_TCP_CONNECT as u32;
        let r = tapio_tcp_connect {
            hdr,
            start_ns: 5_000_000_000,
            end_ns: 5_002_000_000,
            outcome,
            error: err,
            sock_cookie: 99,
            tuple,
        };
        as_bytes(&r).to_vec()
    }

    pub fn close_bytes(inbound: bool, tuple: tapio_tcp_tuple) -> Vec<u8> {
        let mut hdr = crate::probes::process::fixtures::header(kind::TAPIO_EVENT_PROCESS_EXEC);
        hdr.kind = kind::TAPIO_EVENT_TCP_CLOSE as u32;
        hdr.ts_ns = 9_000_000_000;
        let r = tapio_tcp_close {
            hdr,
            established_ns: 6_000_000_000,
            bytes_sent: 100,
            bytes_received: 50,
            inbound: u32::from(inbound),
            srtt_us: 250,
            tuple,
            ..Default::default()
        };
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    fn connect(b: &[u8]) -> tapio_tcp_connect {
        let Ok(Record::Connect(r)) = decode(b) else {
            panic!("not a connect")
        };
        r
    }

    #[test]
    fn decodes_connect_v4_and_v6() {
        let r = connect(&connect_bytes(
            outcome::TAPIO_TCP_REFUSED,
            111,
            v4_tuple([127, 0, 0, 1], 40000, [127, 0, 0, 1], 9),
        ));
        let (o, t) = (Outcome::from_raw(r.outcome), Tuple::from(&r.tuple));
        assert_eq!(o, Outcome::Refused);
        assert_eq!(o.error_type(), Some("refused"));
        assert_eq!(Errno(r.error).to_string(), "ECONNREFUSED");
        assert_eq!(t.remote, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(t.remote_port, 9);
        assert_eq!(t.network_type(), "ipv4");

        let mut t6 = tapio_tcp_tuple {
            family: tapio_family::TAPIO_AF_INET6 as u16,
            sport: 1,
            dport: 443,
            ..Default::default()
        };
        t6.daddr[15] = 1; // ::1
        t6.saddr[15] = 1;
        let r = connect(&connect_bytes(0, 0, t6));
        let t = Tuple::from(&r.tuple);
        assert_eq!(t.remote, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(t.network_type(), "ipv6");
        assert_eq!(Outcome::from_raw(r.outcome), Outcome::Ok);

        // v4-mapped on an AF_INET6 socket is IPv4 on the wire.
        let mut m = v4_tuple([127, 0, 0, 1], 1, [198, 18, 0, 2], 80);
        m.family = tapio_family::TAPIO_AF_INET6 as u16;
        let t = Tuple::from(&connect(&connect_bytes(0, 0, m)).tuple);
        assert_eq!(t.remote, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(t.network_type(), "ipv4");
    }

    #[test]
    fn decodes_close() {
        let Ok(Record::Close(c)) = decode(&close_bytes(
            true,
            v4_tuple([127, 0, 0, 1], 80, [127, 0, 0, 1], 5555),
        )) else {
            panic!()
        };
        assert_eq!(c.inbound, 1);
        assert_eq!((c.bytes_sent, c.bytes_received, c.srtt_us), (100, 50, 250));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(&[0u8; 3]).is_err());
        let mut b = close_bytes(false, v4_tuple([1, 2, 3, 4], 1, [5, 6, 7, 8], 2));
        b[16..20].copy_from_slice(&77u32.to_ne_bytes());
        assert!(matches!(decode(&b), Err(DecodeError::UnknownKind(77))));
    }
}
