//! DNS packet records as the kernel writes them, read without allocating:
//! the payload is borrowed from the copied record.

use crate::probes::network::Tuple;
use tapio_shared::{
    read_record, record_kind, tapio_dns_direction, tapio_dns_flags, tapio_dns_packet,
    tapio_event_header, tapio_event_kind as kind,
};

pub use crate::probes::DecodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One captured packet, borrowed from its record.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The sending (query) or receiving (response) task.
    pub hdr: &'a tapio_event_header,
    pub response: bool,
    pub transport: Transport,
    /// Oriented client -> server.
    pub tuple: Tuple,
    pub payload: &'a [u8],
    pub wire_len: u16,
    pub truncated: bool,
    pub not_captured: bool,
}

/// Decode one ring-buffer record of the dns probe; [`Packet::from`] reads
/// it.
pub fn decode(bytes: &[u8]) -> Result<tapio_dns_packet, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_DNS_PACKET as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    Ok(read_record(bytes)?)
}

impl<'a> From<&'a tapio_dns_packet> for Packet<'a> {
    fn from(r: &'a tapio_dns_packet) -> Self {
        let n = usize::from(r.payload_len).min(r.payload.len());
        Packet {
            hdr: &r.hdr,
            response: u32::from(r.direction) == tapio_dns_direction::TAPIO_DNS_RESPONSE,
            transport: if r.protocol == 6 {
                Transport::Tcp
            } else {
                Transport::Udp
            },
            tuple: Tuple::from(&r.tuple),
            payload: &r.payload[..n],
            wire_len: r.wire_len,
            truncated: u32::from(r.flags) & tapio_dns_flags::TAPIO_DNS_TRUNCATED != 0,
            not_captured: u32::from(r.flags) & tapio_dns_flags::TAPIO_DNS_NOT_CAPTURED != 0,
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use tapio_shared::{as_bytes, tapio_tcp_tuple};

    /// A UDP DNS packet record between 127.0.0.1:40000 and 127.0.0.53:53.
    pub fn packet(response: bool, payload: &[u8], ts: u64) -> Vec<u8> {
        let mut hdr = crate::probes::process::fixtures::header(kind::TAPIO_EVENT_PROCESS_EXEC);
        hdr.kind = kind::TAPIO_EVENT_DNS_PACKET as u32;
        hdr.ts_ns = ts;
        let mut t =
            crate::probes::network::fixtures::v4_tuple([127, 0, 0, 1], 40000, [127, 0, 0, 53], 53);
        t._pad0 = 0;
        let mut r = tapio_dns_packet {
            hdr,
            payload_len: payload.len() as u16,
            wire_len: payload.len() as u16,
            direction: u8::from(response),
            protocol: 17,
            flags: 0,
            tuple: tapio_tcp_tuple { ..t },
            payload: [0; 512],
        };
        r.payload[..payload.len()].copy_from_slice(payload);
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::packet, *};
    use crate::dnsmsg::{self, build};

    #[test]
    fn decodes_packets() {
        let r = decode(&packet(false, &build::query(5, "a.test", 1), 1)).unwrap();
        let p = Packet::from(&r);
        assert!(!p.response);
        assert_eq!(p.transport, Transport::Udp);
        assert_eq!(p.tuple.remote_port, 53);
        assert_eq!(dnsmsg::parse(p.payload, 4).unwrap().id, 5);
        assert!(decode(&[0; 7]).is_err());
    }
}
