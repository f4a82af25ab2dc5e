//! Encrypted DNS (DoT, DoH) as `probes.dns.encrypted` configures it, in the
//! form both kernel sides read: DoT ports, and the hashes of the DoH
//! resolver names (`ebpf/include/tapio_tls.h` hashes each ClientHello's
//! server name the same way and looks it up).

use crate::config::EncryptedDns;
use aya::maps::{HashMap as BpfHashMap, MapData};

/// Longest resolver name hashed (`TAPIO_TLS_NAME_MAX`).
pub const NAME_MAX: usize = 128;

/// `network.protocol.name` of DNS over TLS and DNS over HTTPS.
pub const DOT: &str = "dot";
pub const DOH: &str = "doh";

/// Port map values in the dns probe (`ENC_DOT`, `ENC_DOH` in dns.bpf.c).
pub const PORT_DOT: u8 = 1;
pub const PORT_DOH: u8 = 2;

/// FNV-1a (64 bits) of the name, ASCII letters lowercased, without a
/// trailing dot: what the kernel computes over a ClientHello's server name.
pub fn name_hash(name: &str) -> u64 {
    let bare = name.strip_suffix('.').unwrap_or(name);
    bare.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The dns probe's port map: each port with the kinds it is a port of.
pub fn port_kinds(cfg: &EncryptedDns) -> Vec<(u16, u8)> {
    let mut out: Vec<(u16, u8)> = Vec::new();
    for (ports, bit) in [(&cfg.dot_ports, PORT_DOT), (&cfg.doh_ports, PORT_DOH)] {
        for &p in ports {
            match out.iter_mut().find(|(q, _)| *q == p) {
                Some((_, v)) => *v |= bit,
                None => out.push((p, bit)),
            }
        }
    }
    // Without resolver names no ClientHello on a DoH port can match:
    // leave those ports out, so their connections cost nothing.
    if cfg.doh_resolvers.is_empty() {
        out.retain_mut(|(_, v)| {
            *v &= !PORT_DOH;
            *v != 0
        });
    }
    out
}

/// Write the resolver name hashes into a kernel set.
pub fn fill_names(
    map: &mut BpfHashMap<&mut MapData, u64, u8>,
    cfg: &EncryptedDns,
) -> Result<(), aya::maps::MapError> {
    for n in &cfg.doh_resolvers {
        map.insert(name_hash(n), 1, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fnv1a_of_the_lowercased_name_without_its_trailing_dot() {
        // FNV-1a 64 of "a" and of "" (the offset basis), published values.
        assert_eq!(name_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(name_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(name_hash("DNS.Google."), name_hash("dns.google"));
        assert_ne!(name_hash("dns.google"), name_hash("dns.googl"));
    }

    #[test]
    fn ports_carry_both_kinds_and_doh_ports_need_names() {
        let mut c = EncryptedDns {
            dot_ports: vec![853, 443],
            doh_ports: vec![443, 8443],
            doh_resolvers: vec!["dns.google".into()],
        };
        assert_eq!(
            port_kinds(&c),
            vec![
                (853, PORT_DOT),
                (443, PORT_DOT | PORT_DOH),
                (8443, PORT_DOH)
            ]
        );
        c.doh_resolvers.clear();
        assert_eq!(port_kinds(&c), vec![(853, PORT_DOT), (443, PORT_DOT)]);
    }
}
