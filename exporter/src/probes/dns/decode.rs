//! DNS packet records as the kernel writes them, read without allocating:
//! the payload is borrowed from the copied record.

use crate::probes::network::Tuple;
use tapio_shared::{
    read_record, record_kind, tapio_dns_direction, tapio_dns_encrypted, tapio_dns_encryption,
    tapio_dns_flags, tapio_dns_packet, tapio_event_header, tapio_event_kind as kind,
    tapio_tcp_tuple, TAPIO_DNS_PAYLOAD,
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

/// One captured packet, its payload borrowed from the ring-buffer record.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// The sending (query) or receiving (response) task.
    pub hdr: tapio_event_header,
    pub response: bool,
    pub transport: Transport,
    /// Oriented client -> server.
    pub tuple: Tuple,
    pub payload: &'a [u8],
    pub wire_len: u16,
    pub truncated: bool,
    pub not_captured: bool,
}

/// Decode one ring-buffer record of the dns probe. The fixed fields are
/// copied out (checked length, unaligned reads); the payload, most of the
/// record, is borrowed rather than copied.
pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    use core::mem::offset_of;
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_DNS_PACKET as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    // A record ends after its payload's size class (TAPIO_DNS_PAYLOAD_SMALL
    // bytes, or the whole struct): the fixed part and the payload it says
    // it holds must be there, no more.
    let payload_at = offset_of!(tapio_dns_packet, payload);
    let short = |want| {
        DecodeError::Short(tapio_shared::ShortRecord {
            want,
            got: bytes.len(),
        })
    };
    if bytes.len() < payload_at {
        return Err(short(payload_at));
    }
    let u16_at = |off: usize| u16::from_ne_bytes([bytes[off], bytes[off + 1]]);
    let n = usize::from(u16_at(offset_of!(tapio_dns_packet, payload_len)))
        .min(TAPIO_DNS_PAYLOAD as usize);
    if bytes.len() < payload_at + n {
        return Err(short(payload_at + n));
    }
    let hdr: tapio_event_header = read_record(bytes)?;
    let tuple: tapio_tcp_tuple = read_record(&bytes[offset_of!(tapio_dns_packet, tuple)..])?;
    let flags = u32::from(u16_at(offset_of!(tapio_dns_packet, flags)));
    Ok(Packet {
        hdr,
        response: u32::from(bytes[offset_of!(tapio_dns_packet, direction)])
            == tapio_dns_direction::TAPIO_DNS_RESPONSE,
        transport: if bytes[offset_of!(tapio_dns_packet, protocol)] == 6 {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        tuple: Tuple::from(&tuple),
        payload: &bytes[payload_at..payload_at + n],
        wire_len: u16_at(offset_of!(tapio_dns_packet, wire_len)),
        truncated: flags & tapio_dns_flags::TAPIO_DNS_TRUNCATED != 0,
        not_captured: flags & tapio_dns_flags::TAPIO_DNS_NOT_CAPTURED != 0,
    })
}

/// An encrypted DNS connection a local process opened.
#[derive(Debug, Clone, Copy)]
pub struct Encrypted {
    /// The socket's owner as learnt at connect (pid 0: not seen).
    pub hdr: tapio_event_header,
    /// Oriented client -> server.
    pub tuple: Tuple,
    /// DNS over HTTPS (else DNS over TLS).
    pub doh: bool,
}

/// Decode a `tapio_dns_encrypted` record.
pub fn decode_encrypted(bytes: &[u8]) -> Result<Encrypted, DecodeError> {
    let k = record_kind(bytes)?;
    if k != kind::TAPIO_EVENT_DNS_ENCRYPTED as u32 {
        return Err(DecodeError::UnknownKind(k));
    }
    let r: tapio_dns_encrypted = read_record(bytes)?;
    Ok(Encrypted {
        hdr: r.hdr,
        tuple: Tuple::from(&r.tuple),
        doh: u32::from(r.encryption) == tapio_dns_encryption::TAPIO_DNS_DOH,
    })
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

    /// An encrypted DNS record from 127.0.0.1:40000 to 127.0.0.1:853.
    pub fn encrypted(doh: bool, comm: &str) -> Vec<u8> {
        let mut hdr = crate::probes::process::fixtures::header(kind::TAPIO_EVENT_PROCESS_EXEC);
        hdr.kind = kind::TAPIO_EVENT_DNS_ENCRYPTED as u32;
        hdr.comm = [0; 16];
        for (d, s) in hdr.comm.iter_mut().zip(comm.bytes()) {
            *d = s as core::ffi::c_char;
        }
        let r = tapio_dns_encrypted {
            hdr,
            tuple: crate::probes::network::fixtures::v4_tuple(
                [127, 0, 0, 1],
                40000,
                [127, 0, 0, 1],
                853,
            ),
            encryption: if doh { 2 } else { 1 },
            _pad0: [0; 7],
        };
        as_bytes(&r).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::packet, *};
    use crate::dnsmsg::{self, build};
    use tapio_shared::tapio_dns_packet;

    #[test]
    fn decodes_packets() {
        let bytes = packet(false, &build::query(5, "a.test", 1), 1);
        let p = decode(&bytes).unwrap();
        assert!(!p.response);
        assert_eq!(p.transport, Transport::Udp);
        assert_eq!(p.tuple.remote_port, 53);
        assert_eq!(dnsmsg::parse(p.payload, 4).unwrap().id, 5);
        assert!(decode(&[0; 7]).is_err());
        // A record cut after its payload (the kernel's small size class)
        // is whole; one cut inside it is short, not misread.
        let at = core::mem::offset_of!(tapio_dns_packet, payload);
        let len = usize::from(u16::from_ne_bytes(
            bytes[core::mem::offset_of!(tapio_dns_packet, payload_len)..][..2]
                .try_into()
                .unwrap(),
        ));
        let cut = decode(&bytes[..at + len]).unwrap();
        assert_eq!(cut.payload, p.payload);
        let small = at + tapio_shared::TAPIO_DNS_PAYLOAD_SMALL as usize;
        assert_eq!(decode(&bytes[..small]).unwrap().payload, p.payload);
        for short in [at + len - 1, at - 1, 8] {
            assert!(
                matches!(decode(&bytes[..short]), Err(DecodeError::Short(_))),
                "{short}"
            );
        }
        let mut resp = packet(true, &build::query(5, "a.test", 1), 1);
        let at = core::mem::offset_of!(tapio_dns_packet, payload_len);
        resp[at..at + 2].copy_from_slice(&9999u16.to_ne_bytes());
        let p = decode(&resp).unwrap();
        assert!(p.response);
        assert_eq!(p.payload.len(), 512);
    }
}
