//! The security probe, end to end: real processes change credentials,
//! write watched files, ptrace each other, exec memfds, map W+X memory and
//! load BPF programs; a real OTLP receiver must get each as a
//! `security.*` log record with the acting pid. Needs root; under CI=true
//! it fails rather than skips without it.
//!
//! Every test runs the probe's default syscall path, one tracepoint pair
//! per hooked syscall; with `TAPIO_TEST_SECURITY_SYSCALLS=dispatch` (a
//! second pass, in `make test` and in the kernel matrix) the same tests run
//! on the tp_btf sys_enter/sys_exit dispatcher. Each start checks the
//! variant Tapio reports.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::{
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};
use tapio_integration::{int_attr, privileged_or_skip, str_attr, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(20);
/// The system interpreter (not a pyenv shim, which would add processes).
const PY: &str = "/usr/bin/python3";

/// `probes.security.syscalls` for this pass: `auto` (default) or what
/// `TAPIO_TEST_SECURITY_SYSCALLS` says (`per_syscall`, `dispatch`).
fn syscalls_mode() -> String {
    std::env::var("TAPIO_TEST_SECURITY_SYSCALLS").unwrap_or_else(|_| "auto".to_string())
}

/// `probes.security.attach` for this pass: `auto` (default) or what
/// `TAPIO_TEST_SECURITY_ATTACH` says; the kernel matrix runs the
/// credential tests once more with `tracepoint`, so the syscall path
/// (the task iterator and fork hook included) is proven on kernels that
/// would otherwise hook commit_creds.
fn attach_mode() -> String {
    std::env::var("TAPIO_TEST_SECURITY_ATTACH").unwrap_or_else(|_| "auto".to_string())
}

fn start(rx: &Receiver, security: &str) -> Tapio {
    let mode = syscalls_mode();
    let attach = attach_mode();
    let yaml = format!(
        "probes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security:\n    enabled: true\n    wakeup_interval: 10ms\n    syscalls: {mode}\n    attach: {attach}\n{security}\nexporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n",
        rx.grpc_endpoint()
    );
    let t = Tapio::start(BIN, &yaml, &[]);
    // The ready line names the variant (`security=<label>`): the pass
    // must run the syscall path it is meant to prove.
    let label = (0..100)
        .find_map(|_| {
            let err = t.stderr();
            let found = err
                .lines()
                .find(|l| l.contains("tapio ready"))
                .and_then(|l| l.split("security=").nth(1))
                .map(|rest| {
                    rest.split([',', ' ', '"'])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            found
        })
        .unwrap_or_else(|| panic!("no security variant in the ready line:\n{}", t.stderr()));
    // Per-syscall tracepoints are the default; the dispatcher only when
    // asked for (it needs only tp_btf, 5.5+: every kernel Tapio supports).
    let dispatch = mode == "dispatch";
    assert_eq!(
        label.contains("+dispatch"),
        dispatch,
        "syscalls: {mode} attached {label}"
    );
    t
}

/// Run a python script, return its pid and stdout; it must succeed.
fn python(script: &str) -> (i64, String) {
    let child = Command::new(PY)
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let pid = i64::from(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn of<'a>(
    logs: &'a [(
        opentelemetry_proto::tonic::resource::v1::Resource,
        LogRecord,
    )],
    name: &'a str,
    pid: i64,
) -> impl Iterator<Item = &'a LogRecord> + 'a {
    logs.iter().map(|(_, r)| r).filter(move |r| {
        r.event_name == name && int_attr(&r.attributes, "process.pid") == Some(pid)
    })
}

/// Does this kernel refuse fentry (the security probe's first variant)?
/// Asked of `tapio probes`, which loads every variant for real.
fn refuses_trampolines() -> bool {
    let out = Command::new(BIN)
        .args(["probes", "security"])
        .output()
        .expect("tapio probes");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains("security") && l.contains("fentry+tp_btf ") && l.contains(" no "))
}

fn s(r: &LogRecord, k: &str) -> Option<String> {
    str_attr(&r.attributes, k)
}
fn i(r: &LogRecord, k: &str) -> Option<i64> {
    int_attr(&r.attributes, k)
}

#[test]
fn setuid_and_setuid_exec_are_reported_with_old_and_new_ids() {
    if !privileged_or_skip("setuid_and_setuid_exec_are_reported_with_old_and_new_ids") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    // Root drops to nobody: INFO, old and new ids.
    let (pid, _) = python("import os; os.setgid(65534); os.setuid(65534)");
    let logs = rx.wait_for_logs("setuid of the test program", WAIT, |l| {
        of(l, "security.credentials.change", pid)
            .any(|r| s(r, "tapio.security.syscall").as_deref() == Some("setuid"))
    });
    let r = of(&logs, "security.credentials.change", pid)
        .find(|r| s(r, "tapio.security.syscall").as_deref() == Some("setuid"))
        .unwrap();
    // Seen by the set*id syscall pair where the kernel refuses both
    // fentry and kprobes (this machine), else at commit_creds.
    let hook = s(r, "tapio.security.credentials.hook");
    let expect = if attach_mode() == "tracepoint" {
        "syscall"
    } else if tapio::probes::kprobes_available() || !refuses_trampolines() {
        "commit_creds"
    } else {
        "syscall"
    };
    assert_eq!(hook.as_deref(), Some(expect), "credentials hook");
    assert_eq!(i(r, "tapio.security.old.uid"), Some(0));
    assert_eq!(i(r, "tapio.security.new.uid"), Some(65534));
    assert_eq!(i(r, "tapio.security.old.euid"), Some(0));
    assert_eq!(i(r, "tapio.security.new.euid"), Some(65534));
    assert_eq!(
        i(r, "tapio.security.new.gid"),
        Some(65534),
        "setgid came first"
    );
    assert_eq!(
        r.severity_text, "INFO",
        "dropping privileges is not suspicious"
    );
    assert!(s(r, "tapio.security.capabilities.lost").is_some_and(|c| c.contains("CAP_SETUID")));
    let g = of(&logs, "security.credentials.change", pid)
        .find(|r| s(r, "tapio.security.syscall").as_deref() == Some("setgid"))
        .expect("setgid record");
    assert_eq!(i(g, "tapio.security.old.gid"), Some(0));
    assert_eq!(i(g, "tapio.security.new.gid"), Some(65534));

    // nobody execs a setuid-root copy of `id`: euid 0 gained, WARN.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = dir.path().join("suid-id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&suid)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("euid=0"));
    let logs = rx.wait_for_logs("setuid exec", WAIT, |l| {
        of(l, "security.credentials.change", pid)
            .any(|r| s(r, "tapio.security.syscall").as_deref() == Some("execve"))
    });
    let r = of(&logs, "security.credentials.change", pid)
        .find(|r| s(r, "tapio.security.syscall").as_deref() == Some("execve"))
        .unwrap();
    assert_eq!(i(r, "tapio.security.old.euid"), Some(65534));
    assert_eq!(i(r, "tapio.security.new.euid"), Some(0));
    assert_eq!(i(r, "tapio.security.new.uid"), Some(65534));
    assert_eq!(r.severity_text, "WARN");
    t.terminate();
}

#[test]
fn a_setuid_exec_from_a_thread_is_reported() {
    if !privileged_or_skip("a_setuid_exec_from_a_thread_is_reported") {
        return;
    }
    // nobody's python starts a thread (after Tapio) that execs a
    // setuid-root copy of `id`. The exec makes that thread the leader and
    // releases the old one; on the exits-only path the exec's entry must
    // have given the thread a snapshot of its own, or the exit compares
    // against nothing and the euid 0 it gained goes unreported.
    let rx = Receiver::start();
    let t = start(&rx, "");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = dir.path().join("suid-id");
    std::fs::copy("/usr/bin/id", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let script = format!(
        "import os, threading\n\
         t = threading.Thread(target=lambda: os.execv({p:?}, [{p:?}]))\n\
         t.start()\n\
         t.join()\n",
        p = suid.display().to_string()
    );
    let child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", PY, "-c"])
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i64::from(child.id());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("euid=0"),
        "the thread's exec: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two execs in that pid: setpriv's of python (nobody's, losing root's
    // capabilities) and the thread's of `id`, the one gaining euid 0.
    let gained = |r: &&LogRecord| {
        s(r, "tapio.security.syscall").as_deref() == Some("execve")
            && i(r, "tapio.security.new.euid") == Some(0)
    };
    let logs = rx.wait_for_logs("the thread's setuid exec", WAIT, |l| {
        of(l, "security.credentials.change", pid).any(|r| gained(&r))
    });
    let r = of(&logs, "security.credentials.change", pid)
        .find(gained)
        .unwrap();
    assert_eq!(i(r, "tapio.security.old.euid"), Some(65534), "{r:?}");
    assert_eq!(i(r, "tapio.security.new.uid"), Some(65534), "{r:?}");
    assert_eq!(r.severity_text, "WARN");
    t.terminate();
}

#[test]
fn capset_and_a_new_user_namespace_are_reported_under_their_syscalls() {
    if !privileged_or_skip("capset_and_a_new_user_namespace_are_reported_under_their_syscalls") {
        return;
    }
    // Root drops CAP_NET_RAW by capset, becomes nobody, then unshares a
    // user namespace, in which it holds every capability. Each change
    // must be reported under the syscall that made it: on the syscall
    // paths (this machine) capset and unshare have hooks of their own,
    // else the exits-only path would show them at the next set*id/exec.
    let rx = Receiver::start();
    let t = start(&rx, "");
    let (pid, out) = python(
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
hdr = Header(0x20080522, 0)
data = (Data * 2)()
assert libc.capget(ctypes.byref(hdr), data) == 0, ctypes.get_errno()
CAP_NET_RAW = 13
data[0].effective &= ~(1 << CAP_NET_RAW)
data[0].permitted &= ~(1 << CAP_NET_RAW)
assert libc.capset(ctypes.byref(hdr), data) == 0, ctypes.get_errno()
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
CLONE_NEWUSER = 0x10000000
print(libc.unshare(CLONE_NEWUSER), ctypes.get_errno(), flush=True)
"#,
    );
    // The kernel refuses CLONE_NEWUSER (EPERM) to a chrooted caller: the
    // kernel-matrix guests run the tests chrooted into this machine's
    // root (their smoke boot runs an unprivileged `unshare -U` unchrooted).
    // Anywhere else it must work.
    // (Where init's root cannot be read, e.g. this machine's sandbox, we
    // take it that we are not chrooted and require the unshare.)
    let chrooted = {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/").expect("stat /");
        std::fs::metadata("/proc/1/root")
            .is_ok_and(|init| (root.dev(), root.ino()) != (init.dev(), init.ino()))
    };
    let unshared = out.trim() == "0 0";
    if chrooted && out.trim() == "-1 1" {
        eprintln!("chrooted: unshare(CLONE_NEWUSER) refused (EPERM), its record not checked");
    } else {
        assert!(unshared, "unshare(CLONE_NEWUSER) as nobody: {out}");
    }
    let by = |l: &[(
        opentelemetry_proto::tonic::resource::v1::Resource,
        LogRecord,
    )],
              call: &str| {
        of(l, "security.credentials.change", pid)
            .find(|r| s(r, "tapio.security.syscall").as_deref() == Some(call))
            .cloned()
    };
    let logs = rx.wait_for_logs("capset and unshare records", WAIT, |l| {
        by(l, "capset").is_some() && (!unshared || by(l, "unshare").is_some())
    });
    let capset = by(&logs, "capset").unwrap();
    assert_eq!(
        s(&capset, "tapio.security.capabilities.lost").as_deref(),
        Some("CAP_NET_RAW"),
        "{capset:?}"
    );
    assert_eq!(i(&capset, "tapio.security.new.uid"), Some(0));
    if !unshared {
        t.terminate();
        return;
    }
    let unshare = by(&logs, "unshare").unwrap();
    assert_eq!(i(&unshare, "tapio.security.old.euid"), Some(65534));
    assert!(
        s(&unshare, "tapio.security.capabilities.gained")
            .is_some_and(|c| c.contains("CAP_SYS_ADMIN")),
        "{unshare:?}"
    );
    assert_eq!(
        unshare.severity_text, "WARN",
        "an unprivileged user gaining capabilities"
    );
    t.terminate();
}

#[test]
fn a_process_older_than_tapio_has_its_credential_changes_reported() {
    if !privileged_or_skip("a_process_older_than_tapio_has_its_credential_changes_reported") {
        return;
    }
    // Started before Tapio, with a second thread: on the syscall path
    // without an enter program (tp_btf kernels), what each thread had
    // before comes from the task iterator Tapio runs at its start, and a
    // thread the iterator missed would report nothing. glibc's setresuid
    // changes every thread (each runs the syscall), so both report.
    let mut child = Command::new(PY)
        .args([
            "-c",
            r#"
import os, sys, threading
go = threading.Event()
t = threading.Thread(target=go.wait)
t.start()
print("ready", flush=True)
sys.stdin.readline()
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
go.set()
t.join()
print(os.getresuid(), flush=True)
"#,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let pid = i64::from(child.id());
    // The interpreter and its thread are up before Tapio loads (a thread
    // born after the start would take its process's snapshot instead).
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut ready).expect("the old process's ready line");
    assert_eq!(ready.trim(), "ready");
    let rx = Receiver::start();
    let t = start(&rx, "");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "go").expect("tell the old process to go");
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the old process's ids");
    assert!(child.wait().expect("old process").success());
    assert_eq!(rest.trim(), "(65534, 65534, 65534)");
    let setresuid = |l: &[(
        opentelemetry_proto::tonic::resource::v1::Resource,
        LogRecord,
    )]| {
        let mut tids: Vec<i64> = of(l, "security.credentials.change", pid)
            .filter(|r| s(r, "tapio.security.syscall").as_deref() == Some("setresuid"))
            .filter_map(|r| i(r, "thread.id"))
            .collect();
        tids.sort_unstable();
        tids.dedup();
        tids
    };
    let logs = rx.wait_for_logs("setresuid of both threads", WAIT, |l| {
        setresuid(l).len() == 2
    });
    for r in of(&logs, "security.credentials.change", pid)
        .filter(|r| s(r, "tapio.security.syscall").as_deref() == Some("setresuid"))
    {
        assert_eq!(i(r, "tapio.security.old.uid"), Some(0), "{r:?}");
        assert_eq!(i(r, "tapio.security.new.uid"), Some(65534), "{r:?}");
        assert_eq!(
            i(r, "tapio.security.old.gid"),
            Some(65534),
            "setresgid came first"
        );
    }
    assert!(
        of(&logs, "security.credentials.change", pid).any(|r| s(r, "tapio.security.syscall")
            .as_deref()
            == Some("setresgid")
            && i(r, "tapio.security.old.gid") == Some(0)),
        "setresgid from gid 0"
    );
    t.terminate();
}

#[test]
fn a_thread_changing_only_its_own_credentials_is_reported() {
    if !privileged_or_skip("a_thread_changing_only_its_own_credentials_is_reported") {
        return;
    }
    // A thread started after Tapio calls setresuid through the raw
    // syscall (glibc's wrapper would change every thread): only it
    // changes. On the exits-only path a thread has no snapshot of its own
    // until its first hooked exit (births are snapshotted per process),
    // so its old ids come from its process's.
    let rx = Receiver::start();
    let t = start(&rx, "");
    let (pid, out) = python(
        r#"
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
SYS_setresuid = 117  # x86_64
res = {}
def change():
    res["tid"] = threading.get_native_id()
    res["rc"] = libc.syscall(SYS_setresuid, 65534, 65534, 65534)
th = threading.Thread(target=change)
th.start()
th.join()
print(res["tid"], res["rc"], os.getresuid()[0], flush=True)
"#,
    );
    let mut f = out.split_whitespace();
    let tid: i64 = f.next().and_then(|v| v.parse().ok()).expect("thread id");
    assert_eq!(f.next(), Some("0"), "the thread's setresuid: {out}");
    assert_eq!(f.next(), Some("0"), "the main thread kept uid 0: {out}");
    let logs = rx.wait_for_logs("the thread's setresuid", WAIT, |l| {
        of(l, "security.credentials.change", pid).any(|r| i(r, "thread.id") == Some(tid))
    });
    let recs: Vec<&LogRecord> = of(&logs, "security.credentials.change", pid).collect();
    assert_eq!(recs.len(), 1, "only the thread changed: {recs:#?}");
    let r = recs[0];
    assert_eq!(s(r, "tapio.security.syscall").as_deref(), Some("setresuid"));
    assert_eq!(i(r, "tapio.security.old.uid"), Some(0), "{r:?}");
    assert_eq!(i(r, "tapio.security.new.uid"), Some(65534), "{r:?}");
    t.terminate();
}

#[test]
fn watched_files_are_reported_and_unwatched_are_not() {
    if !privileged_or_skip("watched_files_are_reported_and_unwatched_are_not") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap();
    let d = d.to_string_lossy();
    std::fs::write(format!("{d}/watched"), b"a").unwrap();
    std::fs::write(format!("{d}/victim"), b"a").unwrap();
    std::fs::write(format!("{d}/unwatched"), b"a").unwrap();
    std::fs::create_dir(format!("{d}/conf.d")).unwrap();
    std::fs::create_dir(format!("{d}/conf.d/deep")).unwrap();
    std::fs::write(format!("{d}/conf.d/deep/inner"), b"a").unwrap();
    std::fs::write(format!("{d}/conf.d/readonly"), b"a").unwrap();
    let rx = Receiver::start();
    let t = start(
        &rx,
        &format!(
            "    write_dedup_window: 1h\n    watch_paths: [{d}/watched, {d}/victim, {d}/conf.d]"
        ),
    );
    std::fs::write(format!("{d}/conf.d/wide"), b"a").unwrap();
    let script = format!(
        r#"
import os
d = "{d}"
# The writes run in a child forked with only fds 0-2 open, so up to the
# wide write below its fd table is the default one inside files_struct
# (64 fds), which the probe walks with BTF loads (a child of this test
# binary inherits a grown table). Prints the table size, then the pid.
os.closerange(3, 1 << 16)
child = os.fork()
if child:
    _, st = os.waitpid(child, 0)
    print(child, flush=True)  # os._exit flushes nothing
    os._exit(os.waitstatus_to_exitcode(st))
print([l for l in open("/proc/self/status") if l.startswith("FDSize:")][0].split()[1], flush=True)
with open(d + "/unwatched", "a") as f:
    for _ in range(10):
        f.write("x"); f.flush()
fd = os.open(d + "/watched", os.O_WRONLY | os.O_APPEND)
for _ in range(1000):
    os.write(fd, b"x")
os.close(fd)
# A write is reported as it enters; one the kernel refuses because the
# file is not open for writing (EBADF) is not. Left open, so that a
# wrong record would carry this file's path (from /proc/<pid>/fd).
ro = os.open(d + "/conf.d/readonly", os.O_RDONLY)
try:
    os.write(ro, b"x")
    raise SystemExit("a write through a read-only fd succeeded")
except OSError:
    pass
os.chmod(d + "/watched", 0o600)
os.rename(d + "/watched", d + "/moved")
os.chdir(d)
os.rename("moved", "watched")
import time
with open(d + "/conf.d/deep/inner", "a") as f:
    f.write("x"); f.flush()
    # Open while Tapio exports: the full path of a file under a watched
    # directory comes from /proc/<pid>/fd (see the README).
    time.sleep(1)
# A grown fd table (an fd past 64): the probe reads it with
# bpf_probe_read_kernel instead; the same file check must follow.
os.dup2(0, 100)
with open(d + "/conf.d/wide", "a") as f:
    f.write("x"); f.flush()
    time.sleep(1)
os.unlink(d + "/victim")
"#
    );
    let (_, out) = python(&script);
    let (fds, pid) = out.trim().split_once('\n').expect("fd table size and pid");
    assert_eq!(fds, "64", "the writer's fd table at the start");
    let pid: i64 = pid.parse().expect("the writer's pid");
    let logs = rx.wait_for_logs("unlink of the victim", WAIT, |l| {
        of(l, "security.file.change", pid)
            .any(|r| s(r, "tapio.security.file.operation").as_deref() == Some("unlink"))
    });
    let recs: Vec<&LogRecord> = of(&logs, "security.file.change", pid).collect();
    let with = |op: &str, path: &str| {
        recs.iter()
            .filter(|r| {
                s(r, "tapio.security.file.operation").as_deref() == Some(op)
                    && s(r, "file.path").as_deref() == Some(path)
            })
            .count()
    };
    let watched = format!("{d}/watched");
    let summary: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?}",
                s(r, "tapio.security.syscall"),
                s(r, "tapio.security.file.operation"),
                s(r, "file.path")
            )
        })
        .collect();
    // 1000 writes, one record (the window is an hour).
    assert_eq!(with("write", &watched), 1, "{summary:#?}");
    assert_eq!(with("chmod", &watched), 1, "{summary:#?}");
    let chmod = recs
        .iter()
        .find(|r| s(r, "tapio.security.file.operation").as_deref() == Some("chmod"))
        .unwrap();
    assert_eq!(s(chmod, "tapio.security.file.mode").as_deref(), Some("600"));
    // Away by absolute path (source matched), back by relative path
    // (target matched: the watched name was replaced).
    let renames: Vec<_> = recs
        .iter()
        .filter(|r| s(r, "tapio.security.file.operation").as_deref() == Some("rename"))
        .collect();
    assert_eq!(renames.len(), 2, "{summary:#?}");
    assert!(renames
        .iter()
        .any(
            |r| str_attr(&r.attributes, "tapio.security.rename.target").is_none()
                && s(r, "file.path").as_deref() == Some(watched.as_str())
        ));
    assert!(renames.iter().any(|r| r
        .attributes
        .iter()
        .any(|a| a.key == "tapio.security.rename.target")));
    assert_eq!(
        with("write", &format!("{d}/conf.d/deep/inner")),
        1,
        "{summary:#?}"
    );
    assert_eq!(
        with("write", &format!("{d}/conf.d/wide")),
        1,
        "{summary:#?}"
    );
    assert_eq!(with("unlink", &format!("{d}/victim")), 1, "{summary:#?}");
    assert!(
        !recs
            .iter()
            .any(|r| s(r, "file.path").unwrap_or_default().contains("readonly")),
        "a refused write reported: {summary:#?}"
    );
    for r in &recs {
        assert_eq!(r.severity_text, "WARN");
        assert!(
            !s(r, "file.path")
                .unwrap_or_default()
                .ends_with("/unwatched"),
            "unwatched file reported: {r:?}"
        );
    }
    assert!(logs.iter().all(|(_, r)| !s(r, "file.path")
        .unwrap_or_default()
        .ends_with("/unwatched")));
    t.terminate();
}

#[test]
fn ptrace_attach_is_reported_with_the_target() {
    if !privileged_or_skip("ptrace_attach_is_reported_with_the_target") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let tpid = target.id();
    let (pid, out) = python(&format!(
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
r = libc.ptrace(16, {tpid}, None, None)
print(r)
os.waitpid({tpid}, 0)  # a tracee reports its SIGSTOP to the tracer
libc.ptrace(17, {tpid}, None, None)
"#
    ));
    assert_eq!(out.trim(), "0", "PTRACE_ATTACH failed");
    let logs = rx.wait_for_logs("ptrace attach", WAIT, |l| {
        of(l, "security.ptrace", pid).next().is_some()
    });
    let r = of(&logs, "security.ptrace", pid).next().unwrap();
    assert_eq!(i(r, "tapio.security.target.pid"), Some(i64::from(tpid)));
    assert_eq!(
        s(r, "tapio.security.ptrace.request").as_deref(),
        Some("PTRACE_ATTACH")
    );
    assert_eq!(
        s(r, "tapio.security.target.executable.name").as_deref(),
        Some("sleep")
    );
    assert_eq!(r.severity_text, "WARN");
    let _ = target.kill();
    let _ = target.wait();
    t.terminate();
}

#[test]
fn process_vm_writev_is_reported_with_the_target() {
    if !privileged_or_skip("process_vm_writev_is_reported_with_the_target") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    // After fork the child's buffer sits at the parent's address: write
    // into it from the parent, and let the child check it arrived.
    let (pid, out) = python(
        r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(16)
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.read(r, 1)
    os._exit(0 if buf.value == b"tapio" else 1)
src = ctypes.create_string_buffer(b"tapio")
local = iovec(ctypes.addressof(src), 6)
remote = iovec(ctypes.addressof(buf), 6)
n = libc.process_vm_writev(child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
os.write(w, b"x")
_, status = os.waitpid(child, 0)
assert n == 6 and status == 0, (n, status)
print(child)
"#,
    );
    let child: i64 = out.trim().parse().unwrap();
    let logs = rx.wait_for_logs("process_vm_writev", WAIT, |l| {
        of(l, "security.process_vm_writev", pid).next().is_some()
    });
    let r = of(&logs, "security.process_vm_writev", pid).next().unwrap();
    assert_eq!(i(r, "tapio.security.target.pid"), Some(child));
    assert_eq!(r.severity_text, "WARN");
    assert!(str_attr(&r.attributes, "error.type").is_none());
    t.terminate();
}

#[test]
fn memfd_exec_and_rwx_memory_are_reported() {
    if !privileged_or_skip("memfd_exec_and_rwx_memory_are_reported") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    let (pid, out) = python(
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
p = libc.mmap(None, 8192, 3, 0x22, -1, 0)
assert libc.mprotect(ctypes.c_void_p(p), 8192, 7) == 0
fd = os.memfd_create("tapio-test", 0)
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
child = os.fork()
if child == 0:
    os.execve(f"/proc/self/fd/{fd}", ["true"], {})
os.waitpid(child, 0)
print(child)
"#,
    );
    let child: i64 = out.trim().parse().unwrap();
    let logs = rx.wait_for_logs("memfd exec and W+X", WAIT, |l| {
        of(l, "security.memfd.exec", child).next().is_some()
            && of(l, "security.memory.wx", pid).next().is_some()
    });
    let m = of(&logs, "security.memfd.exec", child).next().unwrap();
    assert_eq!(s(m, "file.name").as_deref(), Some("memfd:tapio-test"));
    assert_eq!(m.severity_text, "WARN");
    let w: Vec<_> = of(&logs, "security.memory.wx", pid).collect();
    assert_eq!(w.len(), 1, "once per process");
    assert_eq!(
        s(w[0], "tapio.security.syscall").as_deref(),
        Some("mprotect")
    );
    assert_eq!(
        s(w[0], "tapio.security.memory.protection").as_deref(),
        Some("rwx")
    );
    assert_eq!(i(w[0], "tapio.security.memory.length"), Some(8192));
    t.terminate();
}

/// bpf(BPF_PROG_LOAD) of `r0 = 0; exit` as a socket filter named
/// tapio_itest, from python.
const BPF_LOAD: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
insns = (ctypes.c_uint64 * 2)(0x00000000000000b7, 0x0000000000000095)
lic = ctypes.create_string_buffer(b"GPL")
attr = bytearray(128)
def put(off, fmt_bytes): attr[off:off+len(fmt_bytes)] = fmt_bytes
put(0, (1).to_bytes(4, "little"))
put(4, (2).to_bytes(4, "little"))
put(8, ctypes.addressof(insns).to_bytes(8, "little"))
put(16, ctypes.addressof(lic).to_bytes(8, "little"))
put(48, b"tapio_itest")
buf = (ctypes.c_char * 128).from_buffer(attr)
fd = libc.syscall(321, 5, buf, 128)
assert fd >= 0, ctypes.get_errno()
print(fd)
"#;

#[test]
fn bpf_loads_by_others_are_reported_and_tapios_own_are_not() {
    if !privileged_or_skip("bpf_loads_by_others_are_reported_and_tapios_own_are_not") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    let (pid, _) = python(BPF_LOAD);
    let logs = rx.wait_for_logs("bpf load", WAIT, |l| {
        of(l, "security.bpf.load", pid).next().is_some()
    });
    let r = of(&logs, "security.bpf.load", pid).next().unwrap();
    assert_eq!(
        s(r, "tapio.security.bpf.prog.name").as_deref(),
        Some("tapio_itest")
    );
    assert_eq!(
        s(r, "tapio.security.bpf.prog.type").as_deref(),
        Some("socket_filter")
    );
    assert_eq!(i(r, "tapio.security.bpf.insn_count"), Some(2));
    let own = i64::from(t.pid());
    assert_eq!(
        logs.iter()
            .filter(|(_, r)| r.event_name == "security.bpf.load"
                && int_attr(&r.attributes, "process.pid") == Some(own))
            .count(),
        0,
        "Tapio reported its own program loads: {:?}",
        logs.iter()
            .filter(|(_, r)| r.event_name == "security.bpf.load")
            .map(|(_, r)| r.body.clone())
            .collect::<Vec<_>>()
    );
    t.terminate();
}

#[test]
fn capability_use_is_reported_once_per_process_and_capability() {
    if !privileged_or_skip("capability_use_is_reported_once_per_process_and_capability") {
        return;
    }
    // The cap_capable tracepoint (6.14+), or fexit/kprobes on cap_capable
    // (the Debian guests): any security variant not labelled
    // `-no-capability` that loads here.
    let probes = std::process::Command::new(BIN)
        .args(["probes", "security"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probes.stdout);
    let capable = text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[0] == "security" && f[2] == "yes" && !f[1].ends_with("-no-capability")
    });
    if !capable {
        eprintln!("skipped: no security variant with capability records loads here\n{text}");
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "    capabilities: true");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("owned");
    std::fs::write(&f, b"x").unwrap();
    // chown to another uid needs CAP_CHOWN every time: 200 checks.
    let (pid, _) = python(&format!(
        "import os\nfor i in range(200):\n    os.chown({:?}, 1000 + i % 2, -1)\nos.setuid(65534)",
        f.to_string_lossy()
    ));
    let logs = rx.wait_for_logs("setuid after the chown loop", WAIT, |l| {
        of(l, "security.credentials.change", pid).next().is_some()
    });
    let chown: Vec<_> = of(&logs, "security.capability.use", pid)
        .filter(|r| s(r, "tapio.security.capability").as_deref() == Some("CAP_CHOWN"))
        .collect();
    assert_eq!(chown.len(), 1, "200 CAP_CHOWN checks, one record");
    assert_eq!(
        chown[0]
            .attributes
            .iter()
            .find(|a| a.key == "tapio.security.capability.granted")
            .and_then(|a| a.value.clone()),
        Some(opentelemetry_proto::tonic::common::v1::AnyValue {
            value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(true))
        })
    );
    t.terminate();
}

/// Targets no process can have (above the largest pid_max, 2^22).
const COMPAT_MARK: i64 = 4_194_404;
const NATIVE_MARK: i64 = 4_194_405;

/// From a 64-bit process, `int $0x80` (an i386 syscall): first i386
/// getpid (20) in a child, to learn whether this kernel runs them at all
/// (without IA32 emulation the child dies of SIGSEGV: prints "no-compat");
/// then i386 101, `ioperm(0, 0, 0)` (EINVAL, or ENOSYS without
/// CONFIG_X86_IOPL_IOPERM: traced either way), with edi/esi holding what
/// x86_64's 101, `ptrace`, would take as request and pid (PTRACE_ATTACH,
/// COMPAT_MARK); then a real x86_64 `ptrace(PTRACE_ATTACH, NATIVE_MARK)`
/// (ESRCH, still reported).
const COMPAT_SCRIPT: &str = r#"
import ctypes, mmap, os
libc = ctypes.CDLL(None, use_errno=True)
# int i386(nr, esi, edi): ebx, ecx, edx zero.
code = bytes([0x53,              # push rbx (callee-saved)
              0x89, 0xf8,        # mov eax, edi
              0x89, 0xd7,        # mov edi, edx
              0x31, 0xdb,        # xor ebx, ebx
              0x31, 0xc9,        # xor ecx, ecx
              0x31, 0xd2,        # xor edx, edx
              0xcd, 0x80,        # int $0x80
              0x5b, 0xc3])       # pop rbx; ret
m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
i386 = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)(
    ctypes.addressof(ctypes.c_char.from_buffer(m)))
child = os.fork()
if child == 0:
    os._exit(0 if i386(20, 0, 0) == os.getpid() else 1)
_, status = os.waitpid(child, 0)
if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
    print("no-compat")
else:
    i386(101, COMPAT_MARK, 16)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace(16, NATIVE_MARK, None, None)
    print("ok")
"#;

#[test]
fn compat_syscalls_are_not_read_as_x86_64_numbers() {
    if !privileged_or_skip("compat_syscalls_are_not_read_as_x86_64_numbers") {
        return;
    }
    let rx = Receiver::start();
    let t = start(&rx, "");
    let script = COMPAT_SCRIPT
        .replace("COMPAT_MARK", &COMPAT_MARK.to_string())
        .replace("NATIVE_MARK", &NATIVE_MARK.to_string());
    let (pid, out) = python(&script);
    if out.trim() == "no-compat" {
        eprintln!("skipped: this kernel runs no i386 syscalls (no IA32 emulation)");
        t.terminate();
        return;
    }
    assert_eq!(out.trim(), "ok");
    // The native call comes after the compat one through the same ring
    // buffer: once it is here, a record of the compat call would be too.
    let logs = rx.wait_for_logs("the x86_64 ptrace after the i386 call", WAIT, |l| {
        of(l, "security.ptrace", pid)
            .any(|r| i(r, "tapio.security.target.pid") == Some(NATIVE_MARK))
    });
    let compat: Vec<_> = of(&logs, "security.ptrace", pid)
        .filter(|r| i(r, "tapio.security.target.pid") == Some(COMPAT_MARK))
        .collect();
    assert!(
        compat.is_empty(),
        "an i386 ioperm (101) was reported as x86_64 ptrace (101): {compat:?}"
    );
    t.terminate();
}
