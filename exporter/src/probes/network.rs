//! The network probe: `ebpf/network.bpf.c` ↔ this module. TCP connect
//! attempts become `tcp.connect` spans (`otel::traces`), closes become
//! `network.connection.close` logs (`otel::logs`), and the in-kernel
//! connect-latency histogram becomes `tapio.tcp.connect.duration`.

use super::{process::Common, Attach, ProbeSpec, Variant};
use std::net::{IpAddr, Ipv4Addr};
use tapio_shared::{
    read_record, record_kind, tapio_event_kind as kind, tapio_family, tapio_tcp_close,
    tapio_tcp_connect, tapio_tcp_outcome as outcome, tapio_tcp_tuple,
};

pub const NAME: &str = "network";
pub const PROG_STATE_BTF: &str = "tapio_tcp_state_btf";
pub const PROG_STATE_TP: &str = "tapio_tcp_state_tp";
pub const MAP_HIST: &str = "tapio_tcp_hist";

pub const SPEC: ProbeSpec = ProbeSpec {
    name: NAME,
    object: crate::bpf_objects::NETWORK,
    variants: &[
        Variant {
            label: "tp_btf",
            programs: &[(PROG_STATE_BTF, Attach::BtfTracePoint("inet_sock_set_state"))],
        },
        Variant {
            label: "tracepoint",
            programs: &[(
                PROG_STATE_TP,
                Attach::TracePoint("sock", "inet_sock_set_state"),
            )],
        },
    ],
};

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

    fn from_raw(v: u32) -> Self {
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

use super::ip_from16 as addr;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The process that called connect().
    pub common: Common,
    pub start_boot_ns: u64,
    pub end_boot_ns: u64,
    pub outcome: Outcome,
    pub errno: i32,
    pub sock_cookie: u64,
    pub tuple: Tuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The connecting process (outbound) or the closing task (inbound,
    /// pid 0 when it closed in softirq).
    pub common: Common,
    pub established_boot_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub srtt_us: u32,
    pub inbound: bool,
    pub sock_cookie: u64,
    pub tuple: Tuple,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkEvent {
    Connect(Connect),
    Close(Close),
}

impl NetworkEvent {
    pub fn common(&self) -> &Common {
        match self {
            NetworkEvent::Connect(c) => &c.common,
            NetworkEvent::Close(c) => &c.common,
        }
    }
}

pub use super::DecodeError;

pub fn decode(bytes: &[u8]) -> Result<NetworkEvent, DecodeError> {
    let k = record_kind(bytes)?;
    if k == kind::TAPIO_EVENT_TCP_CONNECT as u32 {
        let r: tapio_tcp_connect = read_record(bytes)?;
        Ok(NetworkEvent::Connect(Connect {
            common: Common::from(&r.hdr),
            start_boot_ns: r.start_ns,
            end_boot_ns: r.end_ns,
            outcome: Outcome::from_raw(r.outcome),
            errno: r.error,
            sock_cookie: r.sock_cookie,
            tuple: Tuple::from(&r.tuple),
        }))
    } else if k == kind::TAPIO_EVENT_TCP_CLOSE as u32 {
        let r: tapio_tcp_close = read_record(bytes)?;
        Ok(NetworkEvent::Close(Close {
            common: Common::from(&r.hdr),
            established_boot_ns: r.established_ns,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            srtt_us: r.srtt_us,
            inbound: r.inbound != 0,
            sock_cookie: r.sock_cookie,
            tuple: Tuple::from(&r.tuple),
        }))
    } else {
        Err(DecodeError::UnknownKind(k))
    }
}

/// Errno names for the connect failures worth naming.
pub fn errno_name(e: i32) -> String {
    match e {
        111 => "ECONNREFUSED".into(),
        110 => "ETIMEDOUT".into(),
        113 => "EHOSTUNREACH".into(),
        101 => "ENETUNREACH".into(),
        104 => "ECONNRESET".into(),
        0 => String::new(),
        n => format!("errno {n}"),
    }
}

/// Turns network records into spans and logs.
pub struct Handler {
    pub emitter: crate::export::Emitter,
    pub stats: std::sync::Arc<crate::telemetry::ProbeStats>,
    pub enricher: crate::enrich::Enricher,
    pub clock: crate::clock::WallClock,
    pub ids: crate::otel::traces::IdGenerator,
}

impl crate::reader::RecordHandler for Handler {
    fn on_wake(&mut self) {
        self.clock = crate::clock::WallClock::sample();
    }

    fn handle(&mut self, record: &[u8]) {
        use crate::otel::logs::ProcessContext;
        let Some(ev) = self.stats.decoded(decode(record)) else {
            return;
        };
        let c = ev.common();
        let ctx = if c.pid == 0 {
            ProcessContext::default()
        } else {
            ProcessContext {
                owner: self.enricher.users.name(c.uid).map(str::to_string),
                workload: self.enricher.workload(c.cgroup_id, c.pid),
                info: None,
            }
        };
        let observed = crate::clock::unix_ns();
        match &ev {
            NetworkEvent::Connect(conn) => {
                let span = crate::otel::traces::tcp_connect(conn, &ctx, &self.clock, &mut self.ids);
                self.emitter.span(span);
            }
            NetworkEvent::Close(close) => {
                self.emitter.log(crate::otel::logs::connection_close(
                    close,
                    &ctx,
                    &self.clock,
                    observed,
                ));
            }
        }
        let lat = crate::clock::boot_ns().saturating_sub(ev.common().ts_boot_ns);
        self.stats.latency.record_ns(lat);
    }
}

/// Reads the per-CPU connect histogram and exports it.
pub fn histogram_producer(
    map: aya::maps::PerCpuArray<aya::maps::MapData, tapio_shared::tapio_hist>,
    start_unix_ns: u64,
) -> crate::export::MetricProducer {
    use crate::otel::{kv_str, metrics::log2_histogram_seconds, names};
    let map = std::sync::Mutex::new(map);
    Box::new(move |now| {
        let map = crate::supervise::lock(&map);
        let mut points = Vec::new();
        for (i, oc) in Outcome::ALL.iter().enumerate() {
            for (v6, net) in [(0usize, "ipv4"), (1, "ipv6")] {
                let series = (i * 2 + v6) as u32;
                let Ok(per_cpu) = map.get(&series, 0) else {
                    continue;
                };
                let (buckets, sum) = crate::otel::metrics::sum_per_cpu_hist(&per_cpu);
                if buckets.iter().all(|n| *n == 0) {
                    continue;
                }
                let mut attrs = vec![kv_str(names::attr::NETWORK_TYPE, net)];
                if let Some(e) = oc.error_type() {
                    attrs.push(kv_str(names::attr::ERROR_TYPE, e));
                }
                points.push((attrs, buckets, sum));
            }
        }
        if points.is_empty() {
            return Vec::new();
        }
        vec![log2_histogram_seconds(
            &names::TCP_CONNECT_DURATION,
            start_unix_ns,
            now,
            points,
        )]
    })
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use tapio_shared::as_bytes;

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

    #[test]
    fn decodes_connect_v4_and_v6() {
        let bytes = connect_bytes(
            outcome::TAPIO_TCP_REFUSED,
            111,
            v4_tuple([127, 0, 0, 1], 40000, [127, 0, 0, 1], 9),
        );
        let NetworkEvent::Connect(c) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(c.outcome, Outcome::Refused);
        assert_eq!(c.outcome.error_type(), Some("refused"));
        assert_eq!(c.tuple.remote, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.tuple.remote_port, 9);
        assert_eq!(c.tuple.network_type(), "ipv4");

        let mut t6 = tapio_tcp_tuple {
            family: tapio_family::TAPIO_AF_INET6 as u16,
            sport: 1,
            dport: 443,
            ..Default::default()
        };
        t6.daddr[15] = 1; // ::1
        t6.saddr[15] = 1;
        let NetworkEvent::Connect(c) = decode(&connect_bytes(0, 0, t6)).unwrap() else {
            panic!()
        };
        assert_eq!(c.tuple.remote, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(c.tuple.network_type(), "ipv6");
        assert_eq!(c.outcome, Outcome::Ok);

        // v4-mapped on an AF_INET6 socket is IPv4 on the wire.
        let mut m = v4_tuple([127, 0, 0, 1], 1, [198, 18, 0, 2], 80);
        m.family = tapio_family::TAPIO_AF_INET6 as u16;
        let NetworkEvent::Connect(c) = decode(&connect_bytes(0, 0, m)).unwrap() else {
            panic!()
        };
        assert_eq!(c.tuple.remote, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(c.tuple.network_type(), "ipv4");
    }

    #[test]
    fn decodes_close() {
        let NetworkEvent::Close(c) = decode(&close_bytes(
            true,
            v4_tuple([127, 0, 0, 1], 80, [127, 0, 0, 1], 5555),
        ))
        .unwrap() else {
            panic!()
        };
        assert!(c.inbound);
        assert_eq!((c.bytes_sent, c.bytes_received, c.srtt_us), (100, 50, 250));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(&[0u8; 3]).is_err());
        let mut b = close_bytes(false, v4_tuple([1, 2, 3, 4], 1, [5, 6, 7, 8], 2));
        b[16..20].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(77)));
    }
}
