//! Sampled memory allocations (kernel probe), end to end: a workload of a
//! known size in a cgroup named like a systemd service → the kernel's 1:N
//! sampler and per-cgroup sums → tapio → a real OTLP receiver.
//! Needs root; under CI=true it fails rather than skips without.
//!
//! The workload is a child forked from this test that maps, touches and
//! unmaps anonymous memory (huge pages off, so every 4 KiB page it touches
//! is one page allocation) and makes pipes (slab objects), then exits.
//! Its size is bounded (16 MiB mapped at a time).

#[path = "support/cgroup.rs"]
mod cgroup;

use cgroup::TestCgroup;
use std::time::{Duration, Instant};
use tapio_integration::{privileged_or_skip, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
/// Generous: the guests run under software emulation.
const WAIT: Duration = Duration::from_secs(90);
const CHUNK: usize = 16 << 20;
const PAGE: usize = 4096;
const PIPES: usize = 2000;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(rx: &Receiver, every: u32) -> String {
    format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  kernel: {{ enabled: true, oom_kill: false, io_uring: false, memory_sample_every: {every} }}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    )
}

/// Fork a child, move it into `cg`, let it touch `rounds` × [`CHUNK`] of
/// fresh anonymous memory and make [`PIPES`] pipes, and reap it.
fn run_workload(cg: &TestCgroup, rounds: usize) {
    let mut go = [0i32; 2];
    // SAFETY: plain syscalls; the child runs only async-signal-safe calls
    // (no allocation) and leaves with _exit.
    unsafe {
        assert_eq!(libc::pipe(go.as_mut_ptr()), 0, "pipe");
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let mut b = [0u8; 1];
            libc::close(go[1]);
            if libc::read(go[0], b.as_mut_ptr().cast(), 1) != 1 {
                libc::_exit(2);
            }
            for _ in 0..rounds {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    libc::_exit(3);
                }
                libc::madvise(p, CHUNK, libc::MADV_NOHUGEPAGE);
                let base = p.cast::<u8>();
                let mut off = 0;
                while off < CHUNK {
                    std::ptr::write_volatile(base.add(off), 1);
                    off += PAGE;
                }
                libc::munmap(p, CHUNK);
            }
            let mut fds = [0i32; 2];
            for _ in 0..PIPES {
                if libc::pipe(fds.as_mut_ptr()) == 0 {
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
            }
            libc::_exit(0);
        }
        libc::close(go[0]);
        std::fs::write(cg.path.join("cgroup.procs"), pid.to_string())
            .expect("move the workload into its cgroup");
        assert_eq!(libc::write(go[1], b"g".as_ptr().cast(), 1), 1);
        libc::close(go[1]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "workload failed: status {status:#x}"
        );
    }
}

/// The last exported value of `name` for the unit and allocator.
fn value(rx: &Receiver, name: &str, unit: &str, allocator: &str) -> Option<i64> {
    rx.metrics()
        .iter()
        .filter(|m| m.name == name)
        .filter_map(|m| {
            tapio_integration::point_value(
                m,
                &[
                    ("tapio.systemd.unit", unit),
                    ("tapio.memory.allocator", allocator),
                ],
            )
        })
        .next_back()
}

fn exports(rx: &Receiver) -> usize {
    rx.metrics()
        .iter()
        .filter(|m| m.name == "tapio.memory.allocated")
        .count()
}

/// Wait for two more exports than `n0`, counted once the workload was
/// reaped: the first may have been collected before, the second was
/// collected after, so it holds all of the workload's samples.
fn wait_after(rx: &Receiver, t: &Tapio, n0: usize) {
    let end = Instant::now() + WAIT;
    while exports(rx) < n0 + 2 {
        assert!(
            Instant::now() < end,
            "no tapio.memory.allocated exports after the workload; tapio stderr:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every allocation sampled (N = 1): the counts are exact, so the page
/// bytes of the workload's cgroup are what it touched (plus the little the
/// kernel allocates for it besides: page tables, interrupts landing on its
/// CPU), and its pipes show up as kmalloc and kmem_cache allocations.
#[test]
fn every_allocation_at_one_in_one() {
    if !privileged_or_skip("every_allocation_at_one_in_one") {
        return;
    }
    let _one = serial();
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config(&rx, 1), &[]);
    let unit = format!("tapio-memtest-exact-{}.service", std::process::id());
    let cg = TestCgroup::at(unit.clone());
    let rounds = 8;
    run_workload(&cg, rounds);
    wait_after(&rx, &t, exports(&rx));
    let touched = (rounds * CHUNK) as i64;
    let bytes = value(&rx, "tapio.memory.allocated", &unit, "page")
        .unwrap_or_else(|| panic!("no page bytes for {unit}; tapio stderr:\n{}", t.stderr()));
    let pages = value(&rx, "tapio.memory.allocations", &unit, "page").unwrap_or(0);
    assert!(
        bytes >= touched && bytes <= touched + touched / 50 + (4 << 20),
        "page bytes {bytes} for {touched} touched"
    );
    assert!(
        pages >= (touched / PAGE as i64) && pages <= (touched / PAGE as i64) * 102 / 100 + 1024,
        "{pages} page allocations for {} pages touched",
        touched / PAGE as i64
    );
    // Each pipe: its pipe_inode_info and buffer array (kmalloc), two
    // files and an inode (kmem_cache).
    let km = value(&rx, "tapio.memory.allocations", &unit, "kmalloc").unwrap_or(0);
    let kc = value(&rx, "tapio.memory.allocations", &unit, "kmem_cache").unwrap_or(0);
    eprintln!(
        "1:1: {pages} pages, {bytes} bytes for {touched} touched; kmalloc {km}, kmem_cache {kc}"
    );
    assert!(
        km >= 2 * PIPES as i64 && kc >= 2 * PIPES as i64,
        "{km} kmalloc, {kc} kmem_cache for {PIPES} pipes; tapio stderr:\n{}",
        t.stderr()
    );
    drop(cg);
    t.terminate();
}

/// One in a hundred: the sampled estimate of the same kind of workload
/// (25 × 16 MiB = 102,400 pages, about 1,000 samples) is within 10 % of
/// what it touched. The sampler's gaps are uniform on 1..199 (sd 57), so
/// the estimate's standard error is about 1.8 %; 10 % is over five of
/// them, and an estimate not scaled by N (1 %) or scaled twice fails.
#[test]
fn one_in_a_hundred_estimates_the_total() {
    if !privileged_or_skip("one_in_a_hundred_estimates_the_total") {
        return;
    }
    let _one = serial();
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config(&rx, 100), &[]);
    let unit = format!("tapio-memtest-sampled-{}.service", std::process::id());
    let cg = TestCgroup::at(unit.clone());
    let rounds = 25;
    run_workload(&cg, rounds);
    wait_after(&rx, &t, exports(&rx));
    let touched = (rounds * CHUNK) as f64;
    let bytes = value(&rx, "tapio.memory.allocated", &unit, "page")
        .unwrap_or_else(|| panic!("no page bytes for {unit}; tapio stderr:\n{}", t.stderr()))
        as f64;
    let ratio = bytes / touched;
    eprintln!("1:100: estimated {bytes} page bytes for {touched} touched (ratio {ratio:.4})");
    assert!(
        (0.9..=1.1).contains(&ratio),
        "estimated {bytes} page bytes for {touched} touched (ratio {ratio:.3})"
    );
    let sampled_every = rx
        .metrics()
        .iter()
        .filter(|m| m.name == "tapio.memory.allocated")
        .filter_map(|m| match &m.data {
            Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => s
                .data_points
                .iter()
                .find(|p| {
                    tapio_integration::str_attr(&p.attributes, "tapio.systemd.unit").as_deref()
                        == Some(unit.as_str())
                })
                .and_then(|p| {
                    tapio_integration::int_attr(&p.attributes, "tapio.memory.sample_every")
                }),
            _ => None,
        })
        .next_back();
    assert_eq!(sampled_every, Some(100));
    // Never a pid on these metrics.
    for m in rx
        .metrics()
        .iter()
        .filter(|m| m.name.starts_with("tapio.memory."))
    {
        if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) = &m.data {
            for p in &s.data_points {
                assert!(
                    p.attributes.iter().all(|a| !a.key.contains("pid")),
                    "{:?}",
                    p.attributes
                );
            }
        }
    }
    drop(cg);
    t.terminate();
}
