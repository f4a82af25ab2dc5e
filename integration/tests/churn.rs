//! Policy churn under traffic: hundreds of reloads of the config file
//! (valid policies alternating, invalid ones, files read half-written or
//! truncated, ConfigMap-style symlink swaps, a dangling link and a link into
//! a world-writable directory) while a process in the test's cgroup probes
//! a port every policy denies, throughout. The kernel must refuse that port
//! on every probe (the old policy or the new one, never none), the port the
//! policies disagree on must be seen both ways (the reloads took effect
//! under traffic), and Tapio must hold as many BPF maps and no more fds
//! after the churn than before it.
//!
//! `TAPIO_CHURN_RELOADS` sets the number of reloads (default 200, which
//! takes about a minute; the README records a 1,000-reload run).

use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tapio_integration::{privileged_or_skip, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
/// Longest one reload may take to show in Tapio's log (settling is 200ms;
/// this is a liveness bound on a busy machine, not a performance claim).
const STEP: Duration = Duration::from_secs(20);

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::{listener, TestCgroup};

/// A config whose lsm policy denies `d` and denies (`f_deny`) or audits `f`
/// from the cgroup; `note` makes otherwise equal texts differ.
fn policy(
    rx: &Receiver,
    cg: &TestCgroup,
    d: Option<u16>,
    f: u16,
    f_deny: bool,
    note: usize,
) -> String {
    let rule = |name: &str, action: &str, port: u16| {
        format!(
            "        - name: {name}\n          hook: connect\n          action: {action}\n          match: {{ address: 127.0.0.1/32, port: {port}, protocol: tcp, cgroup: {} }}\n",
            cg.rel
        )
    };
    let mut rules = String::new();
    if let Some(d) = d {
        rules += &rule("always", "deny", d);
    }
    rules += &rule("flip", if f_deny { "deny" } else { "audit" }, f);
    format!(
        "# {note}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 200ms }}\n  metrics: {{ export_interval: 1s }}\nprobes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  lsm:\n    policy:\n      rules:\n{rules}",
        rx.grpc_endpoint()
    )
}

/// Lines of Tapio's log that report a file reload (applied or rejected).
fn reloads(t: &Tapio) -> usize {
    t.stderr()
        .lines()
        .filter(|l| l.contains("policy reloaded") || l.contains("policy reload: "))
        .count()
}

/// Wait until Tapio has logged `n` reloads.
fn wait_reloads(t: &Tapio, n: usize, what: &str) {
    let end = Instant::now() + STEP;
    while reloads(t) < n {
        assert!(
            Instant::now() < end,
            "no reload logged for {what} (want {n}, have {}); stderr tail:\n{}",
            reloads(t),
            tail(&t.stderr())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Tapio's open fds and, of those, the BPF maps (by `map_id` in fdinfo).
fn fds_and_maps(pid: u32) -> Fds {
    let mut f = Fds::default();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        if info.lines().any(|l| l.starts_with("map_id:")) {
            f.maps += 1;
        }
        // Strip the inode so like kinds group: `socket`, `anon_inode:bpf-map`.
        let kind = target
            .split(['[', ':'])
            .next()
            .unwrap_or_default()
            .to_string();
        let kind = if kind == "anon_inode" { target } else { kind };
        *f.kinds.entry(kind).or_default() += 1;
    }
    f
}

/// A process's open files by kind: sockets come and go with the export
/// connections (one per consumer, opened when first used), so they are
/// bounded apart from everything else, which must not move at all.
#[derive(Default, Debug)]
struct Fds {
    maps: usize,
    kinds: std::collections::BTreeMap<String, usize>,
}

impl Fds {
    fn sockets(&self) -> usize {
        self.kinds.get("socket").copied().unwrap_or(0)
    }
    fn others(&self) -> usize {
        self.kinds.values().sum::<usize>() - self.sockets()
    }
}

/// Every BPF map in the system (`bpftool map list`): other tests and
/// agents on the machine change it too, so it is printed, not asserted.
fn system_maps() -> usize {
    Command::new("bpftool")
        .args(["map", "list", "-j"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Accept and drop every connection, so successful probes never fill the
/// backlog.
fn accept_forever(l: std::net::TcpListener) {
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
}

/// Connects to `d` and `f` from the cgroup until the stop file appears
/// (or an hour passes), then prints the outcome counts as JSON.
const PROBER: &str = r#"
import socket, os, sys, time, json
d, f, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = {"d_eperm": 0, "d_other": [], "f_eperm": 0, "f_ok": 0, "f_other": 0}
def probe(p):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", p)); return "ok"
    except PermissionError:
        return "eperm"
    except OSError as e:
        return "err%d" % e.errno
    finally:
        s.close()
end = time.time() + 3600
while not os.path.exists(stop) and time.time() < end:
    r = probe(d)
    if r == "eperm":
        c["d_eperm"] += 1
    elif len(c["d_other"]) < 20:
        c["d_other"].append("%s@%.3f" % (r, time.time()))
    r = probe(f)
    c["f_eperm" if r == "eperm" else "f_ok" if r == "ok" else "f_other"] += 1
    time.sleep(0.002)
print(json.dumps(c))
"#;

/// The prober, killed if the test fails before stopping it (it would
/// otherwise keep probing, and keep the test harness's inherited fds, such
/// as a lock, open for up to an hour).
struct Prober(Option<std::process::Child>);

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn policy_churn_under_traffic_never_lifts_the_deny_and_leaks_nothing() {
    if !privileged_or_skip(
        "churn::policy_churn_under_traffic_never_lifts_the_deny_and_leaks_nothing",
    ) {
        return;
    }
    let target: usize = std::env::var("TAPIO_CHURN_RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let cg = TestCgroup::new("churn");
    let (ld, d) = listener();
    let (lf, f) = listener();
    accept_forever(ld);
    accept_forever(lf);
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &policy(&rx, &cg, Some(d), f, false, 0), &[]);
    let dir = t.config_path().parent().expect("config dir").to_path_buf();
    let cfg = t.config_path();
    let open = dir.join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let fds_start = fds_and_maps(t.pid());
    // The baseline for leaks is taken after the first round of all eight
    // kinds of change: what is made once, lazily (the reload watcher's
    // inotify and its wakeup fds, which may come up after the ready line;
    // the export connections), is there by then, and a leak per reload
    // still shows over the rest.
    let mut fds_warm = None;
    let sys0 = system_maps();

    let stop = dir.join("stop");
    let procs = cg.path.join("cgroup.procs");
    let mut prober = Prober(Some(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {} && exec \"$PY\" -c \"$0\" \"$@\"",
                procs.display()
            ))
            .env("PY", tapio_integration::python3())
            .arg(PROBER)
            .args([d.to_string(), f.to_string(), stop.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prober"),
    ));

    let started = Instant::now();
    let rename_in = |text: &str| {
        let tmp = dir.join(".tapio.yaml.new");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &cfg).expect("rename");
    };
    let link_in = |to: &Path| {
        let tmp = dir.join(".tapio.yaml.link");
        let _ = std::fs::remove_file(&tmp);
        symlink(to, &tmp).expect("symlink");
        std::fs::rename(&tmp, &cfg).expect("rename link");
    };
    let mut seen = reloads(&t);
    let mut i = 0usize;
    let mut kinds = [0usize; 8];
    // Valid policies alternate the `flip` rule, so each applied one changes
    // what the kernel holds.
    while seen < target {
        let kind = i % 8;
        kinds[kind] += 1;
        // Note i + 1: the file Tapio started with is note 0 (the audit
        // variant: an unchanged policy is not a reload).
        let a = policy(&rx, &cg, Some(d), f, true, i + 1);
        let b = policy(&rx, &cg, Some(d), f, false, i + 1);
        match kind {
            // Valid, by rename (editors, `kubectl cp`).
            0 => rename_in(&a),
            1 => rename_in(&b),
            // Invalid: an unknown hook.
            2 => rename_in(&a.replace("hook: connect", "hook: conect")),
            // Written in place and read half-way (cut inside the `flip`
            // rule's action: invalid), then completed.
            3 => {
                let cut = a.rfind("action: deny").expect("flip rule") + "action: de".len();
                let mut w = std::fs::File::create(&cfg).expect("open in place");
                w.write_all(&a.as_bytes()[..cut]).expect("write half");
                w.flush().expect("flush");
                seen += 1;
                wait_reloads(&t, seen, "a half-written file");
                w.write_all(&a.as_bytes()[cut..]).expect("write rest");
            }
            // Truncated in place and read empty, then written.
            4 => {
                let mut w = std::fs::File::create(&cfg).expect("truncate");
                seen += 1;
                wait_reloads(&t, seen, "a truncated file");
                w.write_all(b.as_bytes()).expect("write");
            }
            // ConfigMap-style: a new file, and a symlink renamed over.
            5 => {
                let v = dir.join(format!("v{i}.yaml"));
                std::fs::write(&v, &a).expect("write version");
                link_in(&v);
            }
            // A link into a world-writable directory, to a policy without
            // the deny: refused for where it lives.
            6 => {
                let v = open.join(format!("v{i}.yaml"));
                std::fs::write(&v, policy(&rx, &cg, None, f, true, i)).expect("write");
                link_in(&v);
            }
            // A dangling link (mid-swap), then a valid file.
            _ => {
                link_in(&dir.join("missing.yaml"));
                std::thread::sleep(Duration::from_millis(50));
                rename_in(&b);
            }
        }
        seen += 1;
        wait_reloads(&t, seen, &format!("step {i} (kind {kind})"));
        // Keep the directory small: old versions are not needed.
        if kind == 7 {
            for e in std::fs::read_dir(&dir).expect("ls").flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with('v') && n.ends_with(".yaml") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            for e in std::fs::read_dir(&open).expect("ls").flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        i += 1;
        if i == 8 {
            fds_warm = Some(fds_and_maps(t.pid()));
        }
    }
    let elapsed = started.elapsed();
    let fds0 = fds_warm.expect("at least one round of changes");
    std::fs::write(&stop, "").expect("stop prober");
    let out = prober
        .0
        .take()
        .expect("prober running")
        .wait_with_output()
        .expect("prober");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let c: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "prober output `{text}` ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let fds1 = fds_and_maps(t.pid());
    let sys1 = system_maps();
    let err = t.stderr();
    let applied = err
        .lines()
        .filter(|l| l.contains("policy reloaded"))
        .count();
    let rejected = err
        .lines()
        .filter(|l| l.contains("policy reload: "))
        .count();
    println!(
        "churn: {seen} reloads ({applied} applied, {rejected} rejected) in {:.1}s over {i} steps {kinds:?}; \
         probes: {c}; tapio fds at start {:?}, after the first round {:?}, at the end {:?}; its map fds {} -> {}; \
         bpftool map list (whole system) {sys0} -> {sys1}",
        elapsed.as_secs_f64(),
        fds_start.kinds,
        fds0.kinds,
        fds1.kinds,
        fds_start.maps,
        fds1.maps
    );
    assert_eq!(
        c["d_other"].as_array().map(Vec::len),
        Some(0),
        "the always-denied port was reachable during the churn: {c}"
    );
    assert!(
        c["d_eperm"].as_u64() > Some(100),
        "too few probes to prove anything: {c}"
    );
    assert!(
        c["f_eperm"].as_u64() > Some(0) && c["f_ok"].as_u64() > Some(0),
        "the flip port was not seen both denied and allowed: the reloads did not take effect: {c}"
    );
    assert_eq!(
        fds1.maps, fds_start.maps,
        "BPF map fds changed over the churn"
    );
    // Everything but sockets (files, inotify, epoll, eventfds, BPF objects)
    // must be where it was: a leak per reload would be hundreds.
    assert!(
        fds1.others() <= fds0.others() + 2,
        "non-socket fds grew over {seen} reloads: {:?} -> {:?}",
        fds0.kinds,
        fds1.kinds
    );
    // The export client opens one connection per consumer when it is first
    // used (4 by default; not all may be open after the first round) and
    // may be mid-reconnect on any of them.
    assert!(
        fds1.sockets() <= fds0.sockets() + 8,
        "sockets grew over {seen} reloads: {:?} -> {:?}",
        fds0.kinds,
        fds1.kinds
    );
    assert!(
        err.contains("refused: the directory it is in (watched for reloads)"),
        "{}",
        tail(&err)
    );
    assert!(err.contains("the file is empty"), "{}", tail(&err));
    t.terminate();
}
