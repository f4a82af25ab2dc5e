//! The systemd probe, end to end: unit cgroups made the way systemd makes
//! them (a slice directory of the cgroup v2 root, a `<unit>.service`
//! directory per unit, the unit's first process moved in through
//! `cgroup.procs`, the directory removed once the unit is empty) → kernel →
//! tapio → a real OTLP receiver. Needs root; under CI=true it fails rather
//! than skips without it.
//!
//! Containment: everything lives in a slice of the test's own
//! (`tapio-test-<pid>.slice`); the OOM case runs under a 32 MiB memory
//! limit (cgroup v2's `memory.max` where the v2 hierarchy has the memory
//! controller, else a v1 memory cgroup below the test's own) and allocates
//! at most 256 MiB, so the OOM killer only ever looks inside it. Processes
//! and cgroups go on drop, on failure too.

#[path = "support/cgroup.rs"]
mod cgroup;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tapio_integration::{int_attr, privileged_or_skip, str_attr, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
/// Generous: the guests run under software emulation.
const WAIT: Duration = Duration::from_secs(60);
const LIMIT: u64 = 32 << 20;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn write(p: &Path, v: &str) {
    std::fs::write(p, v).unwrap_or_else(|e| panic!("write {v:?} to {}: {e}", p.display()));
}

/// Remove a cgroup directory, waiting (bounded) while the kernel still
/// counts a just-reaped process in it.
fn rmdir(p: &Path) {
    for _ in 0..100 {
        match std::fs::remove_dir(p) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("cgroup {} could not be removed", p.display());
}

/// Where the OOM case's memory limit lives.
enum Memcg {
    /// `memory.max` of the unit itself.
    V2,
    /// A v1 memory cgroup the process joins as well (hybrid hosts).
    V1(PathBuf),
}

/// The test's slice and its units.
struct Slice {
    root: PathBuf,
    name: String,
    units: Vec<PathBuf>,
    children: Vec<Child>,
    memcg: Option<Memcg>,
}

impl Slice {
    fn new() -> Self {
        let root = PathBuf::from(tapio::probes::cgroup2_root().expect("cgroup2 mount"));
        let name = format!("tapio-test-{}.slice", std::process::id());
        let dir = root.join(&name);
        if dir.exists() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                if e.path().is_dir() {
                    rmdir(&e.path());
                }
            }
            rmdir(&dir);
        }
        std::fs::create_dir(&dir).expect("create the test slice");
        Self {
            root,
            name,
            units: Vec::new(),
            children: Vec::new(),
            memcg: None,
        }
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// mkdir the unit's cgroup, as systemd does before it forks.
    fn unit(&mut self, unit: &str) -> PathBuf {
        let p = self.dir().join(unit);
        std::fs::create_dir(&p).expect("create unit cgroup");
        self.units.push(p.clone());
        p
    }

    /// Run `script` under sh as the unit's first process: it moves itself
    /// into the unit (and the v1 memory cgroup, if any) and then execs.
    fn spawn(&mut self, unit: &Path, script: &str, v1: bool) -> u32 {
        let mut join = format!("echo $$ > {}/cgroup.procs", unit.display());
        if let (true, Some(Memcg::V1(dir))) = (v1, &self.memcg) {
            join.push_str(&format!(" && echo $$ > {}/cgroup.procs", dir.display()));
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("{join} && exec {script}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn wait(&mut self, pid: u32) -> std::process::ExitStatus {
        let child = self.children.iter_mut().find(|c| c.id() == pid).unwrap();
        let end = Instant::now() + WAIT;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < end,
                "pid {pid} still running after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The memory limit for the OOM unit: v2's where the hierarchy has
    /// the memory controller, else a v1 memory cgroup.
    fn limit_memory(&mut self, unit: &Path) {
        let v2 = read(&self.root.join("cgroup.controllers"))
            .split_whitespace()
            .any(|c| c == "memory");
        if v2 {
            let sub = self.root.join("cgroup.subtree_control");
            if !read(&sub).split_whitespace().any(|c| c == "memory") {
                write(&sub, "+memory");
            }
            write(&self.dir().join("cgroup.subtree_control"), "+memory");
            write(&unit.join("memory.max"), &LIMIT.to_string());
            let swap = unit.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0");
            }
            assert_eq!(read(&unit.join("memory.max")), LIMIT.to_string());
            self.memcg = Some(Memcg::V2);
        } else {
            let dir = cgroup::v1_memcg("units");
            write(&dir.join("memory.limit_in_bytes"), &LIMIT.to_string());
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(&memsw, &LIMIT.to_string());
            }
            assert_eq!(
                read(&dir.join("memory.limit_in_bytes")),
                LIMIT.to_string(),
                "v1 memory limit did not hold"
            );
            self.memcg = Some(Memcg::V1(dir));
        }
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for u in self.units.iter().rev() {
            let _ = std::panic::catch_unwind(|| rmdir(u));
        }
        let _ = std::fs::remove_dir(self.dir());
        if let Some(Memcg::V1(dir)) = &self.memcg {
            let _ = std::panic::catch_unwind(|| rmdir(dir));
        }
    }
}

/// clone3(CLONE_INTO_CGROUP) a child of a python parent (outside the
/// unit) straight into `unit`; the child exits 0 at once. Its pid.
fn clone_into(unit: &Path) -> u32 {
    let script = format!(
        r#"import ctypes, os, struct
fd = os.open({:?}, os.O_RDONLY | os.O_DIRECTORY)
# struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
# stack, stack_size, tls, set_tid, set_tid_size, cgroup
args = ctypes.create_string_buffer(struct.pack("11Q", 0x200000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, fd))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
pid = libc.syscall(ctypes.c_long(435), args, ctypes.c_long(88))
if pid == 0:
    os._exit(0)
if pid < 0:
    raise OSError(ctypes.get_errno(), "clone3")
_, status = os.waitpid(pid, 0)
print(pid, status)
"#,
        unit.display().to_string()
    );
    let out = Command::new(cgroup::real_python())
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "clone3 into the cgroup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let pid: u32 = f.next().and_then(|p| p.parse().ok()).expect("child pid");
    assert_eq!(f.next(), Some("0"), "the child did not exit 0: {text}");
    pid
}

fn config(rx: &Receiver, slice: &str) -> String {
    format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  kernel: {{ enabled: false }}\n  systemd: {{ enabled: true, wakeup_interval: 0s, slices: [{slice}] }}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 300ms }}\n",
        rx.grpc_endpoint()
    )
}

fn unit_log<'a>(
    logs: &'a [(
        opentelemetry_proto::tonic::resource::v1::Resource,
        LogRecord,
    )],
    event: &str,
    unit: &str,
) -> Option<&'a LogRecord> {
    logs.iter().map(|(_, r)| r).find(|r| {
        r.event_name == event
            && str_attr(&r.attributes, "tapio.systemd.unit").as_deref() == Some(unit)
    })
}

fn f64_attr(r: &LogRecord, key: &str) -> Option<f64> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    r.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::DoubleValue(d) => Some(*d),
            _ => None,
        }
    })
}

/// Five units start and stop: one exits 0, one exits 3, one is OOM-killed,
/// one gets its process by clone3 into its cgroup, one runs until SIGTERM
/// while the process gauge counts it; a sixth was running before Tapio
/// started. Each start names its first pid; each
/// stop says how its processes ended.
#[test]
fn units_start_and_stop_with_their_first_pid_failures_and_oom_kills() {
    if !privileged_or_skip("units_start_and_stop_with_their_first_pid_failures_and_oom_kills") {
        return;
    }
    let mut s = Slice::new();
    // Running before Tapio: adopted at start.
    let pre = s.unit("pre.service");
    let pre_pid = s.spawn(&pre, "sleep 300", false);
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config(&rx, &s.name), &[]);

    let ok = s.unit("ok.service");
    let ok_pid = s.spawn(&ok, "true", false);
    assert!(s.wait(ok_pid).success());
    let fail = s.unit("fail.service");
    let fail_pid = s.spawn(&fail, "sh -c 'exit 3'", false);
    assert_eq!(s.wait(fail_pid).code(), Some(3));
    let oom = s.unit("oom.service");
    s.limit_memory(&oom);
    // The interpreter itself: a pyenv shim would fork a few dozen helpers
    // into the unit first (all counted as its exits).
    let oom_pid = s.spawn(
        &oom,
        &format!(
            "{} -c 'b = [bytearray(b\"x\" * (1 << 20)) for _ in range(256)]'",
            cgroup::real_python().display()
        ),
        true,
    );
    let status = s.wait(oom_pid);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the process was not OOM-killed: {status}"
    );
    // Forked straight into the unit (clone3 with CLONE_INTO_CGROUP, as
    // systemd 254+ starts services): no cgroup_attach_task fires.
    let forked = s.unit("fork.service");
    let fork_pid = clone_into(&forked);
    let long = s.unit("long.service");
    let long_pid = s.spawn(&long, "sleep 300", false);

    // The gauge sees the running units' processes.
    for unit in ["long.service", "pre.service"] {
        rx.wait_for_counter(
            "tapio.systemd.unit.processes",
            &[
                ("tapio.systemd.unit", unit),
                ("tapio.systemd.slice", &s.name),
            ],
            WAIT,
            |v| v == 1,
        );
    }
    for pid in [long_pid, pre_pid] {
        // SIGTERM: how `systemctl stop` ends a unit, not a failure.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        s.wait(pid);
    }
    for u in [&ok, &fail, &oom, &forked, &long, &pre] {
        rmdir(u);
    }

    let units = [
        "fork.service",
        "ok.service",
        "fail.service",
        "oom.service",
        "long.service",
        "pre.service",
    ];
    let logs = rx.wait_for_logs("a stop record per unit", WAIT, |l| {
        units
            .iter()
            .all(|u| unit_log(l, "systemd.unit.stop", u).is_some())
    });
    for (unit, pid) in [
        ("ok.service", ok_pid),
        ("fail.service", fail_pid),
        ("oom.service", oom_pid),
        ("long.service", long_pid),
        ("fork.service", fork_pid),
    ] {
        let start = unit_log(&logs, "systemd.unit.start", unit)
            .unwrap_or_else(|| panic!("no systemd.unit.start for {unit}"));
        let a = &start.attributes;
        assert_eq!(
            int_attr(a, "tapio.systemd.unit.first_pid"),
            Some(i64::from(pid)),
            "{unit}"
        );
        assert_eq!(int_attr(a, "process.pid"), Some(i64::from(pid)), "{unit}");
        assert_eq!(
            str_attr(a, "tapio.systemd.slice").as_deref(),
            Some(s.name.as_str())
        );
        assert_eq!(
            str_attr(a, "tapio.cgroup.path"),
            Some(format!("/{}/{unit}", s.name))
        );
        let entry = if unit == "fork.service" {
            "fork"
        } else {
            "attach"
        };
        assert_eq!(
            str_attr(a, "tapio.systemd.unit.entry").as_deref(),
            Some(entry),
            "{unit}"
        );
        assert_eq!(start.severity_text, "INFO");
    }
    // (result, severity, exits, failed, oom, exit code of the last failure)
    let want = [
        ("ok.service", "success", "INFO", 1, 0, 0, None),
        ("fail.service", "exit-code", "WARN", 1, 1, 0, Some(3)),
        ("oom.service", "oom-kill", "WARN", 1, 1, 1, Some(0)),
        ("long.service", "success", "INFO", 1, 0, 0, None),
        ("fork.service", "success", "INFO", 1, 0, 0, None),
        ("pre.service", "success", "INFO", 1, 0, 0, None),
    ];
    for (unit, result, sev, exits, failed, ooms, code) in want {
        let stop = unit_log(&logs, "systemd.unit.stop", unit).unwrap();
        let a = &stop.attributes;
        eprintln!("{unit}: {:?}", stop.body);
        assert_eq!(
            str_attr(a, "tapio.systemd.unit.result").as_deref(),
            Some(result),
            "{unit}"
        );
        assert_eq!(stop.severity_text, sev, "{unit}");
        assert_eq!(
            int_attr(a, "tapio.systemd.unit.exits"),
            Some(exits),
            "{unit}"
        );
        assert_eq!(
            int_attr(a, "tapio.systemd.unit.failed_exits"),
            Some(failed),
            "{unit}"
        );
        assert_eq!(
            int_attr(a, "tapio.systemd.unit.oom_kills"),
            Some(ooms),
            "{unit}"
        );
        assert_eq!(int_attr(a, "process.exit.code"), code, "{unit}");
        if unit == "pre.service" {
            assert!(a.iter().any(|k| k.key == "tapio.systemd.unit.preexisting"));
            assert_eq!(f64_attr(stop, "tapio.systemd.unit.lifetime"), None);
            assert_eq!(int_attr(a, "tapio.systemd.unit.first_pid"), None);
        } else {
            let life = f64_attr(stop, "tapio.systemd.unit.lifetime")
                .unwrap_or_else(|| panic!("{unit}: no lifetime"));
            assert!(
                life > 0.0 && life < WAIT.as_secs_f64() * 4.0,
                "{unit}: lifetime {life}"
            );
        }
    }
    let oom_stop = unit_log(&logs, "systemd.unit.stop", "oom.service").unwrap();
    assert_eq!(
        int_attr(&oom_stop.attributes, "process.pid"),
        Some(i64::from(oom_pid))
    );
    assert_eq!(
        str_attr(&oom_stop.attributes, "tapio.process.exit.signal").as_deref(),
        Some("SIGKILL")
    );
    // No unit outside the configured slice, and one stop per unit.
    for (_, r) in &logs {
        if r.event_name.starts_with("systemd.unit.") {
            assert_eq!(
                str_attr(&r.attributes, "tapio.systemd.slice").as_deref(),
                Some(s.name.as_str()),
                "{r:?}"
            );
        }
    }
    for u in units {
        let n = logs
            .iter()
            .filter(|(_, r)| {
                r.event_name == "systemd.unit.stop"
                    && str_attr(&r.attributes, "tapio.systemd.unit").as_deref() == Some(u)
            })
            .count();
        assert_eq!(n, 1, "{u}: {n} stop records");
    }
    drop(t);
}
