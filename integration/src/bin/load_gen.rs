//! Load generator for `bench/sustained_load.sh`: execs, TCP connects and
//! UDP DNS lookups on loopback at fixed rates (or as fast as it can, for a
//! burst), a thread per kind (`--connect-threads`, default 2, for
//! connects: each one is the calling thread's kernel work), and its own
//! count of what it did (the ground truth the bench compares Tapio's
//! records with), as one JSON line on stdout. DNS queries and answers go
//! out and come in 32 at a time (sendmmsg/recvmmsg): one syscall per packet
//! held the generator to ~10k events/s on this 2-core VM.
//!
//! What one event is, per kind:
//! - exec: a child started with `--exec-path` and reaped (exit 0);
//! - connect: a successful `connect()` to 127.0.0.1:`--connect-port` closed
//!   with an RST (SO_LINGER 0, so neither end sits in TIME_WAIT and ports
//!   never run out), the server end accepted and closed by another thread;
//! - dns: an A query for `q.tapio.test` to 127.0.0.1:`--dns-port`, answered
//!   by the responder thread and the answer read back.
//!
//! Pacing: event i of a kind is due at start + i / rate; each turn does what
//! is due (a behind thread catches up at full speed) and sleeps up to 1 ms
//! when it is ahead, so rates hold on average, not per microsecond.
//!
//!   load_gen --duration 10 --exec-rate 500 --connect-rate 5000 \
//!       --dns-rate 5000 --exec-path /tmp/x --connect-port 5301 --dns-port 5300
//!   load_gen --burst --exec-count 1000 --connect-count 500000 ...

use anyhow::{bail, Context, Result};
use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// Most DNS queries in flight at once: bounds what a slow responder can
/// leave unanswered and keeps (port, id) pairs unique in Tapio's matcher
/// (ids count per socket, so a socket reuses an id only 65,536 queries on).
const DNS_WINDOW: u64 = 4096;
/// Client sockets the queries rotate over (each its own source port).
const DNS_SOCKETS: usize = 8;
/// Queries (or answers) per sendmmsg/recvmmsg: the syscall per packet was
/// the generator's ceiling (~10k lookups/s with one send/recv each).
const DNS_BATCH: usize = 32;
/// Children in flight at once for the exec kind.
const EXEC_PARALLEL: u64 = 4;
/// After the last query, how long to wait for answers still in flight.
const DNS_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
struct Plan {
    /// Events per second; `None`: as fast as possible (burst).
    rate: Option<f64>,
    /// Events to produce at most.
    count: u64,
}

impl Plan {
    /// How many events should be done by now.
    fn due(&self, start: Instant) -> u64 {
        match self.rate {
            Some(r) => ((start.elapsed().as_secs_f64() * r) as u64).min(self.count),
            None => self.count,
        }
    }
}

/// Sleep a little when ahead of schedule (at most 1 ms, or until the next
/// event is due).
fn wait_next(plan: &Plan, start: Instant, done: u64) {
    if let Some(r) = plan.rate {
        let next = Duration::from_secs_f64((done + 1) as f64 / r);
        let ahead = next.saturating_sub(start.elapsed());
        thread::sleep(ahead.min(Duration::from_millis(1)));
    }
}

#[derive(Default, Debug)]
struct KindResult {
    done: u64,
    failed: u64,
    secs: f64,
}

fn run_exec(plan: Plan, path: String, start: Instant, end: Instant) -> KindResult {
    let mut r = KindResult::default();
    let mut attempts = 0u64;
    while attempts < plan.count && Instant::now() < end {
        let due = plan.due(start);
        if attempts >= due {
            wait_next(&plan, start, attempts);
            continue;
        }
        let n = (due - attempts).min(EXEC_PARALLEL);
        let mut kids = Vec::with_capacity(n as usize);
        for _ in 0..n {
            attempts += 1;
            match Command::new(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(c) => kids.push(c),
                Err(_) => r.failed += 1,
            }
        }
        for mut c in kids {
            match c.wait() {
                Ok(s) if s.success() => r.done += 1,
                _ => r.failed += 1,
            }
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    r
}

/// Close with an RST: no TIME_WAIT on either end.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn run_connect(plan: Plan, to: SocketAddr, start: Instant, end: Instant) -> KindResult {
    let mut r = KindResult::default();
    let mut attempts = 0u64;
    while attempts < plan.count && Instant::now() < end {
        let due = plan.due(start);
        if attempts >= due {
            wait_next(&plan, start, attempts);
            continue;
        }
        while attempts < due && Instant::now() < end {
            attempts += 1;
            match TcpStream::connect(to) {
                Ok(s) => {
                    set_linger_zero(&s);
                    r.done += 1;
                }
                Err(_) => r.failed += 1,
            }
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    r
}

/// Accept and close until `stop`, then drain what is still queued.
fn run_accept(l: TcpListener, stop: Arc<AtomicBool>) -> u64 {
    let mut accepted = 0u64;
    let mut pfd = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            match l.accept() {
                Ok(_) => accepted += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        if stopping {
            return accepted;
        }
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
    }
}

/// An A query for `q.tapio.test` with `id`, written to `b`; its length.
fn query(id: u16, b: &mut [u8]) -> usize {
    const Q: &[u8] =
        b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01q\x05tapio\x04test\x00\x00\x01\x00\x01"; // RD; 1 question; A, IN
    b[..2].copy_from_slice(&id.to_be_bytes());
    b[2..2 + Q.len()].copy_from_slice(Q);
    2 + Q.len()
}

/// `n` datagrams of up to 512 bytes each, with their peers, for
/// recvmmsg/sendmmsg.
struct Mmsg {
    bufs: Vec<[u8; 512]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_in>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new(n: usize) -> Self {
        Self {
            bufs: vec![[0u8; 512]; n],
            lens: vec![0; n],
            // SAFETY: sockaddr_in is plain data; all zeroes is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; n],
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        }
    }

    /// Point the headers at the first `n` buffers: their whole size to
    /// receive, `lens` bytes to send; with peers when `named`.
    fn arm(&mut self, n: usize, receive: bool, named: bool) {
        self.iov.clear();
        self.hdrs.clear();
        for i in 0..n {
            self.iov.push(libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr() as *mut libc::c_void,
                iov_len: if receive { 512 } else { self.lens[i] },
            });
        }
        for i in 0..n {
            // SAFETY: msghdr is plain data; all zeroes is valid.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            if named {
                h.msg_hdr.msg_name =
                    &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            self.hdrs.push(h);
        }
    }

    /// Receive up to `n` datagrams (what is queued; blocks for the first
    /// unless `dontwait`); their lengths go to `lens`. Returns how many.
    fn recv(&mut self, fd: i32, n: usize, named: bool, dontwait: bool) -> usize {
        self.arm(n, true, named);
        let flags = if dontwait {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        // SAFETY: the headers point into buffers this struct owns and keeps
        // alive and unmoved across the call.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as u32,
                flags,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            return 0;
        }
        for i in 0..got as usize {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        got as usize
    }

    /// Send the first `n` buffers (`lens` bytes each). Returns how many
    /// left.
    fn send(&mut self, fd: i32, n: usize, named: bool) -> usize {
        self.arm(n, false, named);
        let mut sent = 0;
        while sent < n {
            // SAFETY: as in `recv`.
            let r =
                unsafe { libc::sendmmsg(fd, self.hdrs[sent..].as_mut_ptr(), (n - sent) as u32, 0) };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
        sent
    }
}

/// Answer every query with one A record (198.18.0.10), until `stop`, a
/// batch of queued queries per recvmmsg/sendmmsg.
fn run_responder(sock: UdpSocket, stop: Arc<AtomicBool>) -> u64 {
    let mut answered = 0u64;
    let fd = sock.as_raw_fd();
    let mut m = Mmsg::new(DNS_BATCH);
    while !stop.load(Ordering::Relaxed) {
        // Blocks for the first (the socket's read timeout bounds it, so
        // `stop` is looked at again), then takes what is queued.
        let got = m.recv(fd, DNS_BATCH, true, false);
        let mut out = 0;
        for i in 0..got {
            let n = m.lens[i];
            if n < 12 || n + 16 > 512 {
                continue;
            }
            let q = m.bufs[i];
            let b = &mut m.bufs[out];
            b[..2].copy_from_slice(&q[..2]);
            b[2..12].copy_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]); // QR RD RA; 1 q, 1 answer
            b[12..n].copy_from_slice(&q[12..n]);
            b[n..n + 16]
                .copy_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 0, 10]);
            m.lens[out] = n + 16;
            m.addrs[out] = m.addrs[i];
            out += 1;
        }
        answered += m.send(fd, out, true) as u64;
    }
    answered
}

fn bigger_rcvbuf(fd: i32) {
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket we own; SO_RCVBUFFORCE needs root and
    // is only an optimisation (a failure leaves the default buffer).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[derive(Default, Debug)]
struct DnsResult {
    sent: u64,
    answered: u64,
    send_failed: u64,
    secs: f64,
}

fn run_dns(plan: Plan, to: SocketAddr, start: Instant, end: Instant) -> Result<DnsResult> {
    let mut socks = Vec::with_capacity(DNS_SOCKETS);
    for _ in 0..DNS_SOCKETS {
        let s = UdpSocket::bind("127.0.0.1:0").context("bind DNS client")?;
        s.connect(to).context("connect DNS client")?;
        s.set_nonblocking(true).context("nonblocking")?;
        bigger_rcvbuf(s.as_raw_fd());
        socks.push(s);
    }
    let mut ids = [0u16; DNS_SOCKETS];
    let mut r = DnsResult::default();
    let mut rx = Mmsg::new(DNS_BATCH);
    let mut tx = Mmsg::new(DNS_BATCH);
    let mut drain = |r: &mut DnsResult| {
        let mut got = 0;
        for s in &socks {
            loop {
                let n = rx.recv(s.as_raw_fd(), DNS_BATCH, false, true);
                got += (0..n).filter(|i| rx.lens[*i] >= 12).count() as u64;
                if n < DNS_BATCH {
                    break;
                }
            }
        }
        r.answered += got;
        got
    };
    let mut attempts = 0u64;
    let mut next_sock = 0usize;
    while attempts < plan.count && Instant::now() < end {
        drain(&mut r);
        let due = plan.due(start);
        let room = DNS_WINDOW.saturating_sub(r.sent - r.answered);
        if attempts >= due || room == 0 {
            if room == 0 {
                thread::yield_now();
            } else {
                wait_next(&plan, start, attempts);
            }
            continue;
        }
        let mut n = (due - attempts).min(room);
        while n > 0 {
            // A batch goes out on one socket; the next batch on the next.
            let si = next_sock;
            next_sock = (next_sock + 1) % DNS_SOCKETS;
            let b = (n as usize).min(DNS_BATCH);
            for k in 0..b {
                tx.lens[k] = query(ids[si], &mut tx.bufs[k]);
                ids[si] = ids[si].wrapping_add(1);
            }
            let sent = tx.send(socks[si].as_raw_fd(), b, false);
            r.sent += sent as u64;
            r.send_failed += (b - sent) as u64;
            attempts += b as u64;
            n -= b as u64;
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    let grace = Instant::now() + DNS_GRACE;
    while r.answered < r.sent && Instant::now() < grace {
        if drain(&mut r) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(r)
}

struct Args {
    duration: f64,
    burst: bool,
    rates: [f64; 3],
    counts: [u64; 3],
    exec_path: String,
    connect_port: u16,
    dns_port: u16,
    max_seconds: f64,
    connect_threads: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        duration: 10.0,
        burst: false,
        rates: [0.0; 3],
        counts: [0; 3],
        exec_path: String::new(),
        connect_port: 0,
        dns_port: 0,
        max_seconds: 300.0,
        connect_threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--burst" {
            a.burst = true;
            continue;
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        let num = || v.parse::<f64>().with_context(|| format!("{k} {v}"));
        match k.as_str() {
            "--duration" => a.duration = num()?,
            "--max-seconds" => a.max_seconds = num()?,
            "--exec-rate" => a.rates[0] = num()?,
            "--connect-rate" => a.rates[1] = num()?,
            "--dns-rate" => a.rates[2] = num()?,
            "--exec-count" => a.counts[0] = num()? as u64,
            "--connect-count" => a.counts[1] = num()? as u64,
            "--dns-count" => a.counts[2] = num()? as u64,
            "--exec-path" => a.exec_path = v,
            "--connect-port" => a.connect_port = v.parse().context("--connect-port")?,
            "--dns-port" => a.dns_port = v.parse().context("--dns-port")?,
            "--connect-threads" => {
                a.connect_threads = v.parse::<usize>().context("--connect-threads")?.max(1)
            }
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.connect_port == 0 || a.dns_port == 0 {
        bail!("--connect-port and --dns-port are required");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let plans: Vec<Plan> = (0..3)
        .map(|i| {
            if a.burst {
                Plan {
                    rate: None,
                    count: a.counts[i],
                }
            } else {
                Plan {
                    rate: (a.rates[i] > 0.0).then_some(a.rates[i]),
                    count: (a.rates[i] * a.duration).round() as u64,
                }
            }
        })
        .collect();
    if plans[0].count > 0 && a.exec_path.is_empty() {
        bail!("--exec-path is required for execs");
    }
    let stop = Arc::new(AtomicBool::new(false));

    let connect_to: SocketAddr = ([127, 0, 0, 1], a.connect_port).into();
    let listener = TcpListener::bind(connect_to).context("bind connect listener")?;
    listener.set_nonblocking(true).context("nonblocking")?;
    // std listens with a backlog of 128: a full accept queue drops the
    // handshake's ACK and the connect stalls for a 1 s SYN retransmit.
    // SAFETY: listen(2) again on our bound socket only raises the backlog
    // (the kernel caps it at net.core.somaxconn).
    unsafe { libc::listen(listener.as_raw_fd(), 65535) };
    let st = stop.clone();
    let acceptor = thread::spawn(move || run_accept(listener, st));

    let dns_to: SocketAddr = ([127, 0, 0, 1], a.dns_port).into();
    let server = UdpSocket::bind(dns_to).context("bind DNS responder")?;
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .context("read timeout")?;
    bigger_rcvbuf(server.as_raw_fd());
    let st = stop.clone();
    let responder = thread::spawn(move || run_responder(server, st));

    let start = Instant::now();
    let end = start
        + Duration::from_secs_f64(if a.burst {
            a.max_seconds
        } else {
            a.duration.min(a.max_seconds)
        });
    let (pe, pc, pd) = (plans[0], plans[1], plans[2]);
    let path = a.exec_path.clone();
    let t_exec = thread::spawn(move || run_exec(pe, path, start, end));
    // A connect is kernel work (handshake and RST on loopback) for the
    // calling thread: several threads, each a share of the plan, reach
    // rates one cannot.
    let nthreads = a.connect_threads as u64;
    let t_conns: Vec<_> = (0..nthreads)
        .map(|i| {
            let share = Plan {
                rate: pc.rate.map(|r| r / nthreads as f64),
                count: pc.count / nthreads + u64::from(i < pc.count % nthreads),
            };
            thread::spawn(move || run_connect(share, connect_to, start, end))
        })
        .collect();
    let t_dns = thread::spawn(move || run_dns(pd, dns_to, start, end));

    let exec = t_exec
        .join()
        .map_err(|_| anyhow::anyhow!("exec thread panicked"))?;
    let mut conn = KindResult::default();
    for t in t_conns {
        let c = t
            .join()
            .map_err(|_| anyhow::anyhow!("connect thread panicked"))?;
        conn.done += c.done;
        conn.failed += c.failed;
        conn.secs = conn.secs.max(c.secs);
    }
    let dns = t_dns
        .join()
        .map_err(|_| anyhow::anyhow!("dns thread panicked"))??;
    let wall = start.elapsed().as_secs_f64();
    // Let the acceptor drain connections still queued, then stop both.
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let accepted = acceptor
        .join()
        .map_err(|_| anyhow::anyhow!("accept thread panicked"))?;
    let responded = responder
        .join()
        .map_err(|_| anyhow::anyhow!("responder thread panicked"))?;

    let out = serde_json::json!({
        "wall_secs": wall,
        "exec": { "planned": pe.count, "done": exec.done, "failed": exec.failed, "secs": exec.secs },
        "connect": { "planned": pc.count, "done": conn.done, "failed": conn.failed,
                     "accepted": accepted, "secs": conn.secs },
        "dns": { "planned": pd.count, "sent": dns.sent, "answered": dns.answered,
                 "send_failed": dns.send_failed, "responder_answered": responded, "secs": dns.secs },
    });
    println!("{out}");
    Ok(())
}
