//! Seeds for the `ring_records` target from the real kernel: load the
//! probes (process, network, dns, kernel, security), attach them, run a
//! workload command, and write every record each ring buffer delivered,
//! in the target's input format (u16 little-endian length, bytes): one
//! file per record, plus one per probe holding its first records in order
//! (a dns query and its response together).
//!
//! A tool, not a fuzz target: it is a libFuzzer binary only so that it is
//! built with the same flags as the targets (no second build of the
//! agent), and does its work once, on the first input. Needs root; from
//! fuzz/, under `flock /tmp/tapio-priv.lock`:
//! `CAPTURE_OUT=DIR CAPTURE_CMD=seeds/workload.sh cargo +nightly fuzz run -O capture_records -- -runs=1`,
//! then `cargo fuzz cmin ring_records DIR` keeps the ones that add coverage.
#![no_main]

use std::io::Write as _;
use tapio::probes::{self, dns, kernel, network, process, security, ProbeSpec, RingConfig};

/// Records kept per probe (the busiest ones see every exec on the host).
const MAX_PER_PROBE: usize = 200;
/// Records of a probe in its one "sequence" seed.
const SEQUENCE: usize = 8;

libfuzzer_sys::fuzz_target!(|_data: &[u8]| {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = std::env::var("CAPTURE_OUT").expect("CAPTURE_OUT: where to write");
        let cmd = std::env::var("CAPTURE_CMD").expect("CAPTURE_CMD: the workload");
        if let Err(e) = capture(&out, &cmd) {
            panic!("capture failed: {e:#}");
        }
    });
});

fn capture(out: &str, cmd: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let btf = aya::Btf::from_sys_fs()?;
    let specs: [(&str, &[&ProbeSpec]); 5] = [
        ("process", &[&process::SPEC]),
        ("network", &[&network::SPEC]),
        ("dns", &[&dns::SPEC]),
        ("kernel", &[&kernel::SPEC]),
        (
            "security",
            &[
                &security::SPEC,
                &security::SPEC_NO_CAPABILITY,
                &security::SPEC_TRACEPOINTS,
            ],
        ),
    ];
    let mut rings = Vec::new();
    for (name, variants) in specs {
        let mut loaded = None;
        for spec in variants {
            let ring = RingConfig::new(4 << 20, std::time::Duration::ZERO);
            match probes::load(spec, ring, Some(&btf), true, &|_| true) {
                Ok(l) => {
                    loaded = Some(l);
                    break;
                }
                Err(e) => eprintln!("{name}: {e}"),
            }
        }
        let Some(mut l) = loaded else { continue };
        let rb = l.take_ringbuf("capture")?;
        rings.push((name, l, rb));
    }
    // Only the workload's records are kept (the probes see the whole host):
    // it runs in a cgroup of its own, matched by the records' cgroup id.
    use std::os::unix::fs::MetadataExt as _;
    let cg = format!(
        "/sys/fs/cgroup/unified/tapio-capture-{}",
        std::process::id()
    );
    std::fs::create_dir_all(&cg)?;
    let cgroup_id = std::fs::metadata(&cg)?.ino();
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("echo $$ > {cg}/cgroup.procs && exec sh {cmd}"),
        ])
        .status();
    let _ = std::fs::remove_dir(&cg);
    eprintln!("workload: {:?}", status?);
    for (name, _loaded, rb) in &mut rings {
        let mut n = 0;
        let mut seq = Vec::new();
        while let Some(item) = rb.next() {
            let ours = tapio_shared::read_record::<tapio_shared::tapio_event_header>(&item)
                .is_ok_and(|h| h.cgroup_id == cgroup_id);
            if n == MAX_PER_PROBE || !ours {
                continue;
            }
            let len = u16::try_from(item.len())?;
            let mut rec = len.to_le_bytes().to_vec();
            rec.extend_from_slice(&item);
            std::fs::File::create(format!("{out}/{name}-{n:03}"))?.write_all(&rec)?;
            if n < SEQUENCE {
                seq.extend_from_slice(&rec);
            }
            n += 1;
        }
        if !seq.is_empty() {
            std::fs::write(format!("{out}/{name}-sequence"), &seq)?;
        }
        eprintln!("{name}: {n} records");
    }
    Ok(())
}
