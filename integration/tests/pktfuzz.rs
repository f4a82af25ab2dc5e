//! Mutation fuzzing of the xdp filter and the tc classifier through
//! BPF_PROG_TEST_RUN, seeded with real captured traffic
//! (data/pkt-corpus/seeds.pcap, made by capture.sh there), every verdict
//! checked against a model of the policy written here from the README and
//! the programs' header comments, parsing with etherparse, never with the
//! agent's code.
//!
//! TAPIO_PKTFUZZ_PACKETS (default 1,000,000: a few seconds each) packets
//! per program;
//! TAPIO_PKTFUZZ_SEED replays a run (the seed is printed at the start and
//! with every mismatch, with the packet's hex).
//!
//! Stateful parts: the xdp rate limit and SYN-flood defence are off (their
//! GCRA state follows the kernel clock); DNS amplification is on with no
//! query ever learned, so every response is unsolicited or oversize. The
//! tc load balancer's conntrack, reverse NAT and fragment memory are
//! modelled (one backend per service, so the choice is known); the
//! classifier's per-flow counting is not. Chaos loss is 1.0: every
//! matching packet is dropped.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use etherparse::{
    EtherType, Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, UdpHeaderSlice,
};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tapio::config::{DnsAmplification, TcPolicy, XdpPolicy};
use tapio::probes::xdp::{self, Reason};
use tapio_integration::privileged_or_skip;
#[path = "support/tc_test_run.rs"]
mod tc_test_run;
use tc_test_run::TcTestRun;

const XDP_PASS: u32 = 2;
const XDP_DROP: u32 = 1;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;
/// The test run refuses frames above a page less its head- and tailroom.
const MAX_FRAME: usize = 1600;

// ---------------------------------------------------------------------
// Corpus, randomness, mutation
// ---------------------------------------------------------------------

fn seeds() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../integration/tests/data/pkt-corpus/seeds.pcap"
    );
    let raw = std::fs::read(path).expect("read seeds.pcap");
    assert_eq!(&raw[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= raw.len() {
        let caplen = u32::from_le_bytes(raw[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &raw[off + 16..off + 16 + caplen];
        if frame.len() >= 14 && frame.len() <= MAX_FRAME {
            out.push(frame.to_vec());
        }
        off += 16 + caplen;
    }
    assert!(out.len() >= 100, "corpus has {} frames", out.len());
    out
}

/// splitmix64: a run is fully determined by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

fn run_seed() -> u64 {
    match std::env::var("TAPIO_PKTFUZZ_SEED") {
        Ok(s) => {
            let s = s.trim_start_matches("0x");
            u64::from_str_radix(s, 16).expect("TAPIO_PKTFUZZ_SEED is hex")
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

fn packet_count() -> usize {
    std::env::var("TAPIO_PKTFUZZ_PACKETS")
        .ok()
        .map(|v| v.replace('_', "").parse().expect("TAPIO_PKTFUZZ_PACKETS"))
        .unwrap_or(1_000_000)
}

/// Where the mutator finds the fields worth changing. Its own walk, kept
/// loose: it only aims mutations, it decides nothing.
#[derive(Default, Debug)]
struct Layout {
    l3: usize,
    v6: bool,
    /// Offsets of IPv6 next-header bytes (the fixed header's and each
    /// extension header's), last one last.
    nh: Vec<usize>,
    l4: Option<usize>,
    proto: u8,
}

fn layout(p: &[u8]) -> Layout {
    let mut l = Layout::default();
    let mut off = 12;
    let mut et = u16::from_be_bytes([p[12], p[13]]);
    while (et == 0x8100 || et == 0x88a8) && off + 6 <= p.len() {
        off += 4;
        et = u16::from_be_bytes([p[off], p[off + 1]]);
    }
    l.l3 = off + 2;
    let b = |i: usize| p.get(i).copied().unwrap_or(0);
    if et == 0x0800 && p.len() >= l.l3 + 20 {
        l.proto = b(l.l3 + 9);
        l.l4 = Some(l.l3 + usize::from(b(l.l3) & 0xf) * 4);
    } else if et == 0x86dd && p.len() >= l.l3 + 40 {
        l.v6 = true;
        l.nh.push(l.l3 + 6);
        let mut nh = b(l.l3 + 6);
        let mut cur = l.l3 + 40;
        for _ in 0..8 {
            match nh {
                0 | 43 | 60 | 44 | 51 if cur + 2 <= p.len() => {
                    l.nh.push(cur);
                    let len = match nh {
                        44 => 8,
                        51 => (usize::from(b(cur + 1)) + 2) * 4,
                        _ => (usize::from(b(cur + 1)) + 1) * 8,
                    };
                    nh = b(cur);
                    cur += len;
                }
                _ => break,
            }
        }
        l.proto = nh;
        l.l4 = Some(cur);
    }
    l
}

/// Addresses the policies below care about, and their near neighbours.
const ADDRS4: [[u8; 4]; 8] = [
    [198, 18, 100, 1],
    [198, 18, 100, 2],
    [198, 18, 7, 1],
    [198, 18, 7, 200],
    [198, 18, 6, 255],
    [198, 18, 8, 0],
    [198, 18, 9, 9],
    [198, 19, 255, 254],
];
const PORTS: [u16; 10] = [53, 9, 8080, 8443, 80, 0, 65535, 5353, 40000, 443];

fn put16(p: &mut [u8], at: usize, v: u16) {
    if at + 2 <= p.len() {
        p[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

fn mutate(p: &mut Vec<u8>, rng: &mut Rng, seeds: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let r = rng.next();
        let l = layout(p);
        let l4 = l.l4.unwrap_or(p.len());
        match rng.below(20) {
            0 => put16(
                p,
                12,
                rng.pick(&[0x0800, 0x86dd, 0x8100, 0x88a8, 0x0806, 0x9100, r as u16]),
            ),
            1 => {
                // Push a VLAN tag.
                let tpid: u16 = rng.pick(&[0x8100, 0x88a8]);
                let mut tag = tpid.to_be_bytes().to_vec();
                tag.extend_from_slice(&(rng.next() as u16 & 0x0fff).to_be_bytes());
                p.splice(12..12, tag);
            }
            2 if l.l3 > 14 => {
                // Pop a VLAN tag.
                p.drain(12..16);
            }
            3 if !l.v6 && p.len() > l.l3 => {
                // Version / IHL.
                p[l.l3] = rng.pick(&[0x45, 0x46, 0x4f, 0x44, 0x40, 0x65, r as u8]);
            }
            4 if !l.v6 => {
                let t = u16::from_be_bytes([
                    *p.get(l.l3 + 2).unwrap_or(&0),
                    *p.get(l.l3 + 3).unwrap_or(&0),
                ]);
                let v = rng.pick(&[0, 19, 20, t.wrapping_add(1), t.wrapping_sub(1), r as u16]);
                put16(p, l.l3 + 2, v);
            }
            5 if !l.v6 => {
                // Flags / fragment offset.
                let v = rng.pick(&[0x2000, 0x0001, 0x20b9, 0x4000, 0, 0x1fff, r as u16]);
                put16(p, l.l3 + 6, v);
            }
            6 if !l.v6 && p.len() > l.l3 + 9 => {
                p[l.l3 + 9] = rng.pick(&[1, 6, 17, 58, 0, 44, 51, r as u8])
            }
            7 if l.v6 => {
                // A next-header byte of the chain.
                let at = l.nh[rng.below(l.nh.len())];
                p[at] = rng.pick(&[0, 43, 44, 51, 60, 6, 17, 58, 59, r as u8]);
            }
            8 if l.v6 && l4 <= p.len() => {
                // Insert an extension header at the end of the chain.
                let last = *l.nh.last().unwrap();
                let kind: u8 = rng.pick(&[0, 43, 44, 51, 60]);
                let mut h = vec![p[last], 0, 0, 0, 0, 0, 0, 0];
                if kind == 51 {
                    // (len + 2) * 4 bytes: 8 is too short (malformed), 12
                    // the least there is; pad to 12.
                    if rng.below(4) != 0 {
                        h[1] = 1;
                        h.extend_from_slice(&[0; 4]);
                    }
                }
                if kind == 44 && rng.below(2) == 0 {
                    h[2..4].copy_from_slice(&(rng.next() as u16 & 0xfff9).to_be_bytes());
                }
                p[last] = kind;
                p.splice(l4..l4, h);
            }
            9 if l.v6 && l.nh.len() > 1 => {
                // An extension header's length byte.
                let at = l.nh[1 + rng.below(l.nh.len() - 1)] + 1;
                if at < p.len() {
                    p[at] = rng.pick(&[0, 1, 2, 255, r as u8]);
                }
            }
            10 => put16(p, l4, rng.pick(&PORTS)),
            11 => put16(p, l4 + 2, rng.pick(&PORTS)),
            12 if l.proto == 6 && l4 + 14 <= p.len() => {
                p[l4 + 13] = rng.pick(&[0x02, 0x12, 0x10, 0x04, 0x14, 0x01, 0x11, 0x18, r as u8]);
                if rng.below(4) == 0 {
                    p[l4 + 12] = (rng.next() as u8) & 0xf0;
                }
            }
            13 if l.proto == 17 => {
                let ulen = (p.len().saturating_sub(l4)) as u16;
                put16(
                    p,
                    l4 + 4,
                    rng.pick(&[0, 7, 8, ulen, 600, 513, 512, r as u16]),
                );
            }
            14 => {
                // Source or destination address.
                let dst = rng.below(2) == 1;
                if l.v6 {
                    let at = l.l3 + if dst { 24 } else { 8 };
                    if at + 16 <= p.len() {
                        let i = rng.below(16);
                        p[at + i] ^= 1 << rng.below(8);
                    }
                } else {
                    let at = l.l3 + if dst { 16 } else { 12 };
                    if at + 4 <= p.len() {
                        p[at..at + 4].copy_from_slice(&rng.pick(&ADDRS4));
                        if rng.below(3) == 0 {
                            p[at + 3] ^= 1 << rng.below(8);
                        }
                    }
                }
            }
            15 => {
                let len = 14 + rng.below(p.len() - 13);
                p.truncate(len);
            }
            16 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(p.len());
                    p[i] ^= 1 << rng.below(8);
                }
            }
            17 => {
                let at = 14 + rng.below(p.len() - 13);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                p.splice(at..at, bytes);
            }
            18 if p.len() > 15 => {
                let at = 14 + rng.below(p.len() - 14);
                let n = (1 + rng.below(16)).min(p.len() - at);
                p.drain(at..at + n);
            }
            19 => {
                // Splice another capture's tail on.
                let o = &seeds[rng.below(seeds.len())];
                let cut = rng.below(p.len() + 1).max(14);
                let from = rng.below(o.len());
                p.truncate(cut);
                p.extend_from_slice(&o[from..]);
            }
            _ => {}
        }
        if p.len() < 14 {
            p.resize(14, 0);
        }
        p.truncate(MAX_FRAME);
    }
}

/// Each seed at every length from `min` bytes, then mutated packets (of
/// `min` bytes at least: the skb test run refuses a bare Ethernet header).
fn packets(seeds: &[Vec<u8>], seed: u64, min: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let cuts = seeds
        .iter()
        .flat_map(move |s| (min..=s.len()).map(move |l| s[..l].to_vec()));
    let mut rng = Rng(seed);
    let mutated = std::iter::repeat_with(move || {
        let mut p = seeds[rng.below(seeds.len())].clone();
        mutate(&mut p, &mut rng, seeds);
        if p.len() < min {
            p.resize(min, 0);
        }
        p
    });
    cuts.chain(mutated)
}

fn hex(p: &[u8]) -> String {
    p.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------
// The xdp policy, as the README states it
// ---------------------------------------------------------------------

/// What the filter knows of a packet.
struct Parsed {
    src: IpAddr,
    proto: u8,
    /// A later fragment: no transport header.
    fragment: bool,
    /// The transport header (its fixed part) is there.
    l4: bool,
    sport: u16,
    /// UDP payload bytes by the UDP header.
    udp_payload: usize,
    /// A DNS id follows the UDP header.
    dns_id: bool,
}

enum Read {
    NotIp,
    Malformed,
    Ip(Parsed),
}

const IPV6_EXT_FOLLOWED: usize = 6;

/// Ethernet, up to two VLAN tags (802.1Q or 802.1ad), IPv4 or IPv6 with up
/// to six extension headers (hop-by-hop, routing, fragment, destination
/// options, AH), then the fixed TCP or UDP header.
fn xdp_read(p: &[u8]) -> Read {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(p) else {
        return Read::Malformed;
    };
    let mut et = eth.ether_type();
    let mut rest = &p[14..];
    for _ in 0..2 {
        if et != EtherType::VLAN_TAGGED_FRAME && et != EtherType::PROVIDER_BRIDGING {
            break;
        }
        let Ok(v) = SingleVlanHeaderSlice::from_slice(rest) else {
            return Read::Malformed;
        };
        et = v.ether_type();
        rest = &rest[4..];
    }
    let (src, mut proto, mut cur, fragment);
    if et == EtherType::IPV4 {
        let Ok(h) = Ipv4HeaderSlice::from_slice(rest) else {
            return Read::Malformed;
        };
        src = IpAddr::V4(h.source_addr());
        proto = h.protocol().0;
        fragment = h.fragments_offset().value() != 0;
        cur = &rest[usize::from(h.ihl()) * 4..];
    } else if et == EtherType::IPV6 {
        let Ok(h) = Ipv6HeaderSlice::from_slice(rest) else {
            return Read::Malformed;
        };
        src = IpAddr::V6(h.source_addr());
        proto = h.next_header().0;
        cur = &rest[40..];
        let mut frag = false;
        let mut followed = 0;
        let missing = |src| {
            Read::Ip(Parsed {
                src,
                proto: 0,
                fragment: false,
                l4: false,
                sport: 0,
                udp_payload: 0,
                dns_id: false,
            })
        };
        while matches!(proto, 0 | 43 | 44 | 51 | 60) {
            if followed == IPV6_EXT_FOLLOWED {
                return missing(src);
            }
            followed += 1;
            let (next, len) = match proto {
                44 => match Ipv6FragmentHeaderSlice::from_slice(cur) {
                    Ok(f) => {
                        if f.fragment_offset().value() != 0 {
                            frag = true;
                        }
                        (f.next_header().0, 8)
                    }
                    Err(_) => return missing(src),
                },
                51 => match IpAuthHeaderSlice::from_slice(cur) {
                    Ok(a) => (a.next_header().0, a.slice().len()),
                    Err(_) => return missing(src),
                },
                _ => match Ipv6RawExtHeaderSlice::from_slice(cur) {
                    Ok(x) => (x.next_header().0, x.slice().len()),
                    Err(_) => return missing(src),
                },
            };
            proto = next;
            cur = &cur[len..];
            if frag {
                break;
            }
        }
        fragment = frag;
    } else {
        return Read::NotIp;
    }
    let mut r = Parsed {
        src,
        proto,
        fragment,
        l4: false,
        sport: 0,
        udp_payload: 0,
        dns_id: false,
    };
    if fragment {
        return Read::Ip(r);
    }
    match proto {
        6 => r.l4 = cur.len() >= 20,
        17 => {
            if let Ok(u) = UdpHeaderSlice::from_slice(cur) {
                r.l4 = true;
                r.sport = u.source_port();
                r.udp_payload = usize::from(u.length()).saturating_sub(8);
                r.dns_id = cur.len() >= 10;
            }
        }
        // ICMP and the rest have no ports: the address checks apply.
        _ => r.l4 = true,
    }
    Read::Ip(r)
}

struct XdpModel {
    allow: Vec<ipnet::IpNet>,
    block: Vec<ipnet::IpNet>,
    dns_max: usize,
}

impl XdpModel {
    fn reason(&self, p: &[u8]) -> Reason {
        let pk = match xdp_read(p) {
            Read::NotIp => return Reason::NotIp,
            Read::Malformed => return Reason::Malformed,
            Read::Ip(pk) => pk,
        };
        if self.allow.iter().any(|n| n.contains(&pk.src)) {
            return Reason::Allowlist;
        }
        if self.block.iter().any(|n| n.contains(&pk.src)) {
            return Reason::Blocklist;
        }
        if pk.l4 && !pk.fragment && pk.proto == 17 && pk.sport == 53 {
            // No query was ever sent: every response is unasked for.
            if self.dns_max > 0 && pk.udp_payload > self.dns_max {
                return Reason::DnsOversize;
            }
            return Reason::DnsUnsolicited;
        }
        if pk.fragment {
            return Reason::Fragment;
        }
        if !pk.l4 {
            return Reason::UnparsedL4;
        }
        Reason::Pass
    }
}

fn drops(r: Reason) -> bool {
    matches!(
        r,
        Reason::Blocklist
            | Reason::AutoBlock
            | Reason::SynFlood
            | Reason::RateLimit
            | Reason::DnsUnsolicited
            | Reason::DnsOversize
    )
}

#[test]
fn xdp_verdicts_match_the_policy_model() {
    if !privileged_or_skip("pktfuzz::xdp_verdicts_match_the_policy_model") {
        return;
    }
    let policy = XdpPolicy {
        allow: vec![
            "198.18.7.200/32".parse().unwrap(),
            "2001:db8:100::2/128".parse().unwrap(),
        ],
        block: vec![
            "198.18.7.0/24".parse().unwrap(),
            "198.18.100.1/32".parse().unwrap(),
            "198.19.0.0/16".parse().unwrap(),
            "2001:db8:100::/64".parse().unwrap(),
        ],
        rate_limit: None,
        syn_flood: None,
        dns_amplification: Some(DnsAmplification {
            query_window: Duration::from_secs(5),
            max_response_size: 512,
        }),
    };
    let model = XdpModel {
        allow: policy.allow.clone(),
        block: policy.block.clone(),
        dns_max: 512,
    };
    let ring = tapio::probes::RingConfig::new(4096, Duration::ZERO);
    let btf = aya::Btf::from_sys_fs().ok();
    let (mut ebpf, mut maps) = xdp::load_only(ring, btf.as_ref()).expect("load xdp object");
    maps.install(&policy).expect("install policy");
    let counts = |ebpf: &aya::Ebpf| -> BTreeMap<Reason, u64> {
        let m = ebpf.map(xdp::MAP_COUNTERS).expect("counters map");
        let m: aya::maps::PerCpuArray<_, tapio_shared::tapio_xdp_counter> =
            aya::maps::PerCpuArray::try_from(m).unwrap();
        xdp::read_counters(&m, [1])
            .into_iter()
            .map(|((_, r), (p, _))| (r, p))
            .collect()
    };

    let seeds = seeds();
    let n = packet_count();
    let seed = run_seed();
    eprintln!(
        "pktfuzz xdp: {n} packets, {} seeds, TAPIO_PKTFUZZ_SEED={seed:x}",
        seeds.len()
    );
    let start = Instant::now();
    let mut want: BTreeMap<Reason, u64> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let mut batch_start = counts(&ebpf);
    for (i, pkt) in packets(&seeds, seed, 14).take(n).enumerate() {
        let prog: &mut Xdp = ebpf
            .program_mut(xdp::PROG_FILTER)
            .unwrap()
            .try_into()
            .unwrap();
        let mut o = TestRunOptions::new();
        o.data_in = Some(&pkt);
        let got = prog.test_run(o).expect("BPF_PROG_TEST_RUN").return_value;
        let reason = model.reason(&pkt);
        let expect = if drops(reason) { XDP_DROP } else { XDP_PASS };
        *want.entry(reason).or_default() += 1;
        if got != expect && mismatches.len() < 20 {
            mismatches.push(format!(
                "packet {i} (seed {seed:x}): program {got}, model {expect} ({reason:?}): {}",
                hex(&pkt)
            ));
        }
        // The reason too, a batch at a time (a per-CPU map read per packet
        // would be most of the run).
        if (i + 1) % 20_000 == 0 || i + 1 == n {
            let now = counts(&ebpf);
            let got: BTreeMap<Reason, u64> = now
                .iter()
                .map(|(r, c)| (*r, c - batch_start.get(r).copied().unwrap_or(0)))
                .filter(|(_, c)| *c > 0)
                .collect();
            assert_eq!(
                got,
                want,
                "reasons counted by the program vs the model, packets {}..{i} (seed {seed:x}); \
                 mismatches so far: {mismatches:#?}",
                i + 1 - want.values().sum::<u64>() as usize
            );
            want.clear();
            batch_start = now;
        }
    }
    let took = start.elapsed();
    eprintln!(
        "pktfuzz xdp: {n} packets in {:.1} s, {} verdict mismatches",
        took.as_secs_f64(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

// ---------------------------------------------------------------------
// The tc policy: chaos verdicts and the load balancer's rewrites
// ---------------------------------------------------------------------

/// What the tc programs know of a packet (no VLAN: skb->protocol is the
/// outer ethertype; IPv6 without extension headers).
enum TcRead {
    Skip,
    LaterFragment {
        src: [u8; 4],
        dst: [u8; 4],
        id: u16,
        proto: u8,
    },
    Flow(Flow),
}

struct Flow {
    v4: Option<([u8; 4], [u8; 4])>,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    l4: usize,
    id: u16,
    more_frags: bool,
}

fn tc_read(p: &[u8]) -> TcRead {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(p) else {
        return TcRead::Skip;
    };
    let ip = &p[14..];
    let (v4, proto, l4, ip_payload, id, more_frags);
    if eth.ether_type() == EtherType::IPV4 {
        let Ok(h) = Ipv4HeaderSlice::from_slice(ip) else {
            // A cut option area still leaves the fixed header readable;
            // handled below by the transport header's bounds.
            return match ip.len() >= 20 && ip[0] >> 4 == 4 && ip[0] & 0xf >= 5 {
                true => tc_read_cut_v4(p),
                false => TcRead::Skip,
            };
        };
        let (s, d) = (h.source_addr().octets(), h.destination_addr().octets());
        if h.fragments_offset().value() != 0 {
            return TcRead::LaterFragment {
                src: s,
                dst: d,
                id: h.identification(),
                proto: h.protocol().0,
            };
        }
        let hl = usize::from(h.ihl()) * 4;
        let Some(pl) = usize::from(h.total_len()).checked_sub(hl) else {
            return TcRead::Skip;
        };
        v4 = Some((s, d));
        proto = h.protocol().0;
        l4 = 14 + hl;
        ip_payload = pl;
        id = h.identification();
        more_frags = h.more_fragments();
    } else if eth.ether_type() == EtherType::IPV6 {
        let Ok(h) = Ipv6HeaderSlice::from_slice(ip) else {
            return TcRead::Skip;
        };
        v4 = None;
        proto = h.next_header().0;
        l4 = 14 + 40;
        ip_payload = usize::from(h.payload_length());
        id = 0;
        more_frags = false;
    } else {
        return TcRead::Skip;
    }
    tc_transport(p, v4, proto, l4, ip_payload, id, more_frags)
}

/// IPv4 whose options run past the frame: the later fragment case still
/// has its addresses; anything else has no transport header in the frame.
fn tc_read_cut_v4(p: &[u8]) -> TcRead {
    let ip = &p[14..];
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if frag != 0 {
        return TcRead::LaterFragment {
            src: ip[12..16].try_into().unwrap(),
            dst: ip[16..20].try_into().unwrap(),
            id: u16::from_be_bytes([ip[4], ip[5]]),
            proto: ip[9],
        };
    }
    TcRead::Skip
}

fn tc_transport(
    p: &[u8],
    v4: Option<([u8; 4], [u8; 4])>,
    proto: u8,
    l4: usize,
    ip_payload: usize,
    id: u16,
    more_frags: bool,
) -> TcRead {
    let hdr = p.get(l4..).unwrap_or(&[]);
    let (sport, dport, flags) = match proto {
        6 => {
            if hdr.len() < 20 {
                return TcRead::Skip;
            }
            let doff = usize::from(hdr[12] >> 4) * 4;
            if doff < 20 || doff > ip_payload {
                return TcRead::Skip;
            }
            (
                u16::from_be_bytes([hdr[0], hdr[1]]),
                u16::from_be_bytes([hdr[2], hdr[3]]),
                hdr[13],
            )
        }
        17 => {
            let Ok(u) = UdpHeaderSlice::from_slice(hdr) else {
                return TcRead::Skip;
            };
            if ip_payload < 8 {
                return TcRead::Skip;
            }
            (u.source_port(), u.destination_port(), 0)
        }
        _ => return TcRead::Skip,
    };
    TcRead::Flow(Flow {
        v4,
        proto,
        sport,
        dport,
        flags,
        l4,
        id,
        more_frags,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Ingress,
    Egress,
}

struct Chaos {
    port: u16,
    proto: Option<u8>,
    dir: Option<Dir>,
}

struct Service {
    vip: ([u8; 4], u16),
    proto: u8,
    backend: ([u8; 4], u16),
}

type Tuple = ([u8; 4], [u8; 4], u16, u16, u8);
/// (source, destination, IP id, protocol, ingress).
type FragKey = ([u8; 4], [u8; 4], u16, u8, bool);

#[derive(Default)]
struct TcModel {
    chaos: Vec<Chaos>,
    services: Vec<Service>,
    /// Flows steered to a backend: (client, vip, client port, vip port, proto).
    ct: HashSet<Tuple>,
    /// Replies to translate back: (client, backend, client port, backend
    /// port, proto) -> the virtual address.
    rnat: BTreeMap<Tuple, ([u8; 4], u16)>,
    /// Translated first fragments: (src, dst, id, proto, dir) -> address.
    frags: BTreeMap<FragKey, [u8; 4]>,
}

/// What the program should return, and the rewrite it should make:
/// (the address's offset and value, the port's offset and value).
struct Expect {
    verdict: u32,
    addr: Option<(usize, [u8; 4])>,
    port: Option<(usize, u16)>,
    l4: Option<usize>,
}

impl TcModel {
    fn step(&mut self, p: &[u8], dir: Dir) -> Expect {
        let mut e = Expect {
            verdict: TC_ACT_UNSPEC,
            addr: None,
            port: None,
            l4: None,
        };
        let f = match tc_read(p) {
            TcRead::Skip => return e,
            TcRead::LaterFragment {
                src,
                dst,
                id,
                proto,
            } => {
                if let Some(a) = self.frags.get(&(src, dst, id, proto, dir == Dir::Ingress)) {
                    e.addr = Some((if dir == Dir::Ingress { 30 } else { 26 }, *a));
                }
                return e;
            }
            TcRead::Flow(f) => f,
        };
        let hit = self.chaos.iter().any(|c| {
            c.dir.is_none_or(|d| d == dir)
                && c.proto.is_none_or(|x| x == f.proto)
                && (c.port == 0 || c.port == f.sport || c.port == f.dport)
        });
        if hit {
            e.verdict = TC_ACT_SHOT;
            return e;
        }
        let Some((src, dst)) = f.v4 else {
            return e;
        };
        e.l4 = Some(f.l4);
        let syn = f.proto == 6 && f.flags & 0x12 == 0x02;
        match dir {
            Dir::Ingress => {
                let t = (src, dst, f.sport, f.dport, f.proto);
                let svc = self
                    .services
                    .iter()
                    .find(|s| s.vip == (dst, f.dport) && s.proto == f.proto);
                if !self.ct.contains(&t) {
                    let Some(s) = svc else { return e };
                    if f.proto == 6 && !syn {
                        return e;
                    }
                    self.ct.insert(t);
                    self.rnat.insert(
                        (src, s.backend.0, f.sport, s.backend.1, f.proto),
                        (dst, f.dport),
                    );
                }
                let Some(s) = svc else { return e };
                e.addr = Some((30, s.backend.0));
                e.port = Some((f.l4 + 2, s.backend.1));
                if f.more_frags {
                    self.frags
                        .insert((src, dst, f.id, f.proto, true), s.backend.0);
                }
            }
            Dir::Egress => {
                let Some(&(vip, vport)) = self.rnat.get(&(dst, src, f.dport, f.sport, f.proto))
                else {
                    return e;
                };
                e.addr = Some((26, vip));
                e.port = Some((f.l4, vport));
                if f.more_frags {
                    self.frags.insert((src, dst, f.id, f.proto, false), vip);
                }
            }
        }
        e
    }

    fn forget(&mut self) {
        self.ct.clear();
        self.rnat.clear();
        self.frags.clear();
    }
}

/// One's-complement sum of 16-bit words (an odd tail byte padded).
fn ones(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    // +0 and -0 are the same number.
    if s == 0xffff {
        0
    } else {
        s as u16
    }
}

/// Check `out` against `inp` and what the model expects; None if right.
fn tc_check(inp: &[u8], out: &[u8], e: &Expect) -> Option<String> {
    if inp.len() != out.len() {
        return Some(format!("length {} -> {}", inp.len(), out.len()));
    }
    let mut want = inp.to_vec();
    if let Some((at, a)) = e.addr {
        want[at..at + 4].copy_from_slice(&a);
    }
    if let Some((at, v)) = e.port {
        want[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    let mut skip = Vec::new();
    if e.addr.is_some() {
        skip.extend([24, 25]);
    }
    let l4csum = e.l4.and_then(|l4| {
        let proto = inp[23];
        let at = l4 + if proto == 6 { 16 } else { 6 };
        (e.addr.is_some() || e.port.is_some()).then_some((l4, at, proto))
    });
    if let Some((_, at, _)) = l4csum {
        skip.extend([at, at + 1]);
    }
    for i in 0..out.len() {
        if !skip.contains(&i) && out[i] != want[i] {
            return Some(format!(
                "byte {i}: want {:02x}, got {:02x}",
                want[i], out[i]
            ));
        }
    }
    if e.addr.is_none() && e.port.is_none() {
        return None;
    }
    // Incremental checksum updates keep each sum what it was, whether the
    // packet's checksums were right or not.
    let ihl = usize::from(inp[14] & 0xf) * 4;
    let ip_end = (14 + ihl).min(inp.len());
    if fold(ones(&inp[14..ip_end])) != fold(ones(&out[14..ip_end])) {
        return Some("IPv4 header checksum not updated".into());
    }
    if let Some((l4, at, proto)) = l4csum {
        let sum = |p: &[u8]| fold(ones(&p[26..34]) + ones(&p[l4..]));
        let (ci, co) = (
            u16::from_be_bytes([inp[at], inp[at + 1]]),
            u16::from_be_bytes([out[at], out[at + 1]]),
        );
        if proto == 17 && ci == 0 {
            if co != 0 {
                return Some("UDP without a checksum got one".into());
            }
        } else if sum(inp) != sum(out) || (proto == 17 && co == 0) {
            return Some(format!("L4 checksum not updated ({ci:04x} -> {co:04x})"));
        }
    }
    None
}

fn clear_map<const K: usize, const V: usize>(ebpf: &mut aya::Ebpf, name: &str) {
    let m = ebpf.map_mut(name).expect(name);
    let mut m: aya::maps::HashMap<_, [u8; K], [u8; V]> =
        aya::maps::HashMap::try_from(m).expect(name);
    let keys: Vec<[u8; K]> = m.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = m.remove(&k);
    }
}

#[test]
fn tc_verdicts_and_rewrites_match_the_policy_model() {
    if !privileged_or_skip("pktfuzz::tc_verdicts_and_rewrites_match_the_policy_model") {
        return;
    }
    let policy: TcPolicy = serde_yaml_ng::from_str(
        "services:
  - name: web
    address: 198.18.100.2:8080
    backends: [{ address: 198.18.9.9:80 }]
  - name: dns
    address: 198.18.100.2:53
    protocol: udp
    backends: [{ address: 198.18.9.10:5353 }]
chaos:
  experiments:
    - { name: discard, port: 9, loss: 1.0, duration: 1h }
    - { name: tls-in, port: 8443, protocol: tcp, direction: ingress, loss: 1.0, duration: 1h }
    - { name: dns-out, port: 5353, protocol: udp, direction: egress, loss: 1.0, duration: 1h }
",
    )
    .expect("policy");
    let mut model = TcModel {
        chaos: vec![
            Chaos {
                port: 9,
                proto: None,
                dir: None,
            },
            Chaos {
                port: 8443,
                proto: Some(6),
                dir: Some(Dir::Ingress),
            },
            Chaos {
                port: 5353,
                proto: Some(17),
                dir: Some(Dir::Egress),
            },
        ],
        services: vec![
            Service {
                vip: ([198, 18, 100, 2], 8080),
                proto: 6,
                backend: ([198, 18, 9, 9], 80),
            },
            Service {
                vip: ([198, 18, 100, 2], 53),
                proto: 17,
                backend: ([198, 18, 9, 10], 5353),
            },
        ],
        ..TcModel::default()
    };
    let mut t = TcTestRun::load(Some(&policy));

    let seeds = seeds();
    let n = packet_count();
    let seed = run_seed();
    eprintln!(
        "pktfuzz tc: {n} packets, {} seeds, TAPIO_PKTFUZZ_SEED={seed:x}",
        seeds.len()
    );
    let mut dirs = Rng(seed ^ 0x7463);
    let start = Instant::now();
    let mut mismatches = Vec::new();
    let (mut shot, mut rewritten) = (0u64, 0u64);
    let mut out = vec![0u8; MAX_FRAME + 64];
    // The skb test run refuses an IP frame without its whole fixed IP
    // header (EINVAL): such frames go through the xdp run only, and do not
    // count here.
    let runnable = |p: &Vec<u8>| {
        let ip_min = match (p[12], p[13]) {
            (0x08, 0x00) => 14 + 20,
            (0x86, 0xdd) => 14 + 40,
            _ => 0,
        };
        p.len() >= ip_min
    };
    let mut refused = 0u64;
    let stream = packets(&seeds, seed, 15).filter(|p| {
        let ok = runnable(p);
        refused += u64::from(!ok);
        ok
    });
    for (i, pkt) in stream.take(n).enumerate() {
        let dir = if dirs.below(2) == 0 {
            Dir::Ingress
        } else {
            Dir::Egress
        };
        let name = match dir {
            Dir::Ingress => tapio::probes::tc::PROG_INGRESS,
            Dir::Egress => tapio::probes::tc::PROG_EGRESS,
        };
        let (verdict, len) = t.run_into(name, &pkt, &mut out);
        let e = model.step(&pkt, dir);
        let got = &out[..len];
        shot += u64::from(e.verdict == TC_ACT_SHOT);
        rewritten += u64::from(e.addr.is_some());
        let wrong = if verdict != e.verdict {
            Some(format!("verdict {verdict:#x}, model {:#x}", e.verdict))
        } else if e.verdict == TC_ACT_SHOT {
            None
        } else {
            tc_check(&pkt, got, &e)
        };
        if let Some(w) = wrong {
            mismatches.push(format!(
                "packet {i} {} (seed {seed:x}): {w}\n  in:  {}\n  out: {}",
                if dir == Dir::Ingress {
                    "ingress"
                } else {
                    "egress"
                },
                hex(&pkt),
                hex(got)
            ));
            if mismatches.len() >= 20 {
                break;
            }
        }
        // Keep conntrack far below its LRU size, so nothing the model
        // remembers is evicted in the kernel.
        if (i + 1) % 20_000 == 0 {
            clear_map::<16, 16>(&mut t.loaded().ebpf, "tapio_tc_ct");
            clear_map::<16, 8>(&mut t.loaded().ebpf, "tapio_tc_rnat");
            clear_map::<12, 16>(&mut t.loaded().ebpf, "tapio_tc_frags");
            model.forget();
        }
    }
    let took = start.elapsed();
    eprintln!(
        "pktfuzz tc: {n} packets in {:.1} s ({shot} shot, {rewritten} rewritten, \
         {refused} more too short for the skb test run), {} mismatches",
        took.as_secs_f64(),
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(
        shot > 0 && rewritten > 0,
        "the fuzz never reached chaos or the balancer"
    );
}

// ---------------------------------------------------------------------
// What the fuzzer found, kept fixed (each packet as it was reported)
// ---------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn fuzz_findings_stay_fixed() {
    if !privileged_or_skip("pktfuzz::fuzz_findings_stay_fixed") {
        return;
    }
    // xdp: an IPv4 header whose options run past the frame (IHL 15, 52
    // bytes there) from a blocked source was judged by its addresses and
    // dropped as "blocklist"; it is malformed and goes to the stack.
    let policy = XdpPolicy {
        block: vec!["198.18.100.1/32".parse().unwrap()],
        dns_amplification: Some(DnsAmplification {
            query_window: Duration::from_secs(5),
            max_response_size: 512,
        }),
        ..XdpPolicy::default()
    };
    let ring = tapio::probes::RingConfig::new(4096, Duration::ZERO);
    let btf = aya::Btf::from_sys_fs().ok();
    let (mut ebpf, mut maps) = xdp::load_only(ring, btf.as_ref()).expect("load xdp object");
    maps.install(&policy).expect("install policy");
    let mut xdp_run = |p: &[u8]| {
        let prog: &mut Xdp = ebpf
            .program_mut(xdp::PROG_FILTER)
            .unwrap()
            .try_into()
            .unwrap();
        let mut o = TestRunOptions::new();
        o.data_in = Some(p);
        prog.test_run(o).expect("BPF_PROG_TEST_RUN").return_value
    };
    let cut = unhex(
        "de4d6572181f9ae2288e5f0608004f000034387b40004006ae20c6126401c6126402c2e820fbd3fc31db\
         d0498e9d80110048544f00000101080ae0b9ff3c012f3593",
    );
    assert_eq!(
        xdp_run(&cut),
        XDP_PASS,
        "options cut off: malformed, to the stack"
    );
    let mut whole = cut.clone();
    whole[14] = 0x45; // the same packet without options: blocked
    assert_eq!(xdp_run(&whole), XDP_DROP);

    // xdp: an IPv6 AH of 8 bytes (length 0: shorter than its SPI and
    // sequence number) was stepped over, and the bytes after it read as a
    // UDP header from port 53: dropped as an unsolicited DNS response.
    let ah0 = unhex(
        "9ae2288e5f06de4d6572181f86dd60019434003e334020014db80100000000000000008000022001\
         0db801000000800000000000000111000000000000000035e4ca003e5dc426a0858000010001000140\
         010466757a7a047c6573740000010001c00c02010001000000000004c612050500002904d000000000\
         0000",
    );
    assert_eq!(xdp_run(&ah0), XDP_PASS, "a malformed AH ends the parse");
    // With a well-formed 12-byte AH the response behind it is dropped.
    let mut ah1 = ah0[..54].to_vec();
    ah1.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    ah1.extend_from_slice(&ah0[62..]);
    let pl = (ah1.len() - 54) as u16;
    ah1[18..20].copy_from_slice(&pl.to_be_bytes());
    assert_eq!(xdp_run(&ah1), XDP_DROP);

    // tc: a frame whose ethertype says IPv4 but whose version nibble is 6
    // (or 0) was parsed as IPv4: chaos dropped it and the balancer
    // rewrote it.
    let policy: TcPolicy = serde_yaml_ng::from_str(
        "services:
  - name: web
    address: 198.18.100.2:8080
    backends: [{ address: 198.18.9.9:80 }]
chaos:
  experiments:
    - { name: discard, port: 9, loss: 1.0, duration: 1h }
",
    )
    .expect("policy");
    let mut t = TcTestRun::load(Some(&policy));
    let mut tc_run = |name: &str, p: &[u8]| t.run(name, p);
    let egress = tapio::probes::tc::PROG_EGRESS;
    let ingress = tapio::probes::tc::PROG_INGRESS;
    let v6_in_v4 = unhex(
        "de4d6572181f9ae2288e5f06080065000021e61a400040110089c6126401c612640290080009000d54a6\
         cc8574f7ac07464770726f6265",
    );
    assert_eq!(
        tc_run(egress, &v6_in_v4).0,
        TC_ACT_UNSPEC,
        "not IPv4: no chaos"
    );
    let mut v4 = v6_in_v4.clone();
    v4[14] = 0x45;
    assert_eq!(tc_run(egress, &v4).0, TC_ACT_SHOT);
    // A SYN to the virtual service under a version-6 nibble.
    let mut syn = unhex(
        "de4d6572181f9ae2288e5f06080065000034788e000140066e0dc6126401c612640291f41f90f1e20d86\
         c14bb6a48010003f544f00000101080a67ed3d7d0f96169e",
    );
    syn[47] = 0x02;
    syn[20..22].copy_from_slice(&[0x40, 0]); // DF, not a later fragment
    let (_, out) = tc_run(ingress, &syn);
    assert_eq!(out, syn, "not IPv4: not balanced");
    syn[14] = 0x45;
    let (_, out) = tc_run(ingress, &syn);
    assert_eq!(&out[30..34], &[198, 18, 9, 9], "IPv4: balanced");
}
