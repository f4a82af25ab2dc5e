//! The lsm probe on this machine's kernel: network, socket and device rules
//! through cgroup hooks, enforced for real on processes in a cgroup the
//! test creates (so nothing else on the host is affected), with decisions
//! checked at a real OTLP receiver. BPF LSM rules are refused, loudly, on
//! kernels that refuse BPF LSM programs (this machine's), and enforced where
//! the kernel runs them: integration/vm/ runs these tests in the Debian
//! guests too.

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use std::process::Command;
use std::time::{Duration, Instant};
use tapio_integration::{int_attr, point_value, privileged_or_skip, str_attr, Receiver, Tapio};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(20);

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::{connect_script, listener, TestCgroup};

/// The tests of this file run in parallel, each starting and stopping its
/// own Tapio; the one that counts every lsm link on the machine
/// (`bpftool link list`) runs alone, the others side by side.
static LINKS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn links_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    LINKS.read().unwrap_or_else(|e| e.into_inner())
}

fn links_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    LINKS.write().unwrap_or_else(|e| e.into_inner())
}

fn config(rx: &Receiver, extra: &str, rules: &str) -> String {
    format!(
        "exporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 200ms }}\nprobes:\n  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n  lsm:\n{extra}    policy:\n      rules:\n{rules}",
        rx.grpc_endpoint()
    )
}

#[test]
fn container_id_rule_covers_the_containers_cgroups_made_before_and_after_it() {
    if !privileged_or_skip(
        "lsm::container_id_rule_covers_the_containers_cgroups_made_before_and_after_it",
    ) {
        return;
    }
    let _links = links_shared();
    // Container ids of the test's own (64 hex digits), named the way the
    // runtimes name their cgroups.
    let pid = std::process::id();
    let id = format!("{pid:016x}").repeat(4);
    let other = format!("{:016x}", u64::from(pid) + 1).repeat(4);
    let before = TestCgroup::at(format!("tapio-lsm-docker-{id}.scope"));
    let elsewhere = TestCgroup::at(format!("tapio-lsm-docker-{other}.scope"));
    let (_a, port) = listener();
    let rx = Receiver::start();
    let rules = format!(
        "        - name: no-db-from-ctr\n          hook: connect\n          action: deny\n          match: {{ address: 127.0.0.1/32, port: {port}, container_id: {id} }}\n"
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    // A cgroup of the container that existed when the policy was applied.
    assert!(before.python(&connect_script(&[port])).ends_with("EPERM"));
    // Another cgroup of the same container, made now (a second runtime
    // layout: a pod directory holding the container's scope): the kernel
    // recognises it as it is made, no reload needed.
    let pod = TestCgroup::at(format!("tapio-lsm-pod-{pid}"));
    let after = TestCgroup::at(format!("{}/cri-containerd-{id}.scope", pod.rel));
    assert!(
        after.python(&connect_script(&[port])).ends_with("EPERM"),
        "a cgroup made after the policy was not matched"
    );
    // A descendant of a container cgroup is the container too.
    let child = TestCgroup::at(format!("{}/init", after.rel));
    assert!(child.python(&connect_script(&[port])).ends_with("EPERM"));
    // Another container and the host are not affected.
    assert!(elsewhere.python(&connect_script(&[port])).ends_with("ok"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[
            ("tapio.lsm.rule", "no-db-from-ctr"),
            ("tapio.lsm.action", "deny"),
        ],
        WAIT,
        |v| v == 3,
    );
    t.terminate();
}

fn connect_rule(name: &str, action: &str, port: u16, cg: &TestCgroup) -> String {
    format!(
        "        - name: {name}\n          hook: connect\n          action: {action}\n          match: {{ address: 127.0.0.1/32, port: {port}, protocol: tcp, cgroup: {} }}\n",
        cg.rel
    )
}

fn decisions(rx: &Receiver, rule: &str) -> Vec<LogRecord> {
    rx.log_records()
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| {
            l.event_name == "security.policy_decision"
                && str_attr(&l.attributes, "tapio.lsm.rule").as_deref() == Some(rule)
        })
        .collect()
}

#[test]
fn connect_rule_denies_one_port_from_a_cgroup_and_reports_it() {
    if !privileged_or_skip("lsm::connect_rule_denies_one_port_from_a_cgroup_and_reports_it") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("c");
    let (_a, denied) = listener();
    let (_b, open) = listener();
    let rx = Receiver::start();
    let t = Tapio::start(
        BIN,
        &config(&rx, "", &connect_rule("no-db", "deny", denied, &cg)),
        &[],
    );
    let out = cg.python(&connect_script(&[denied, open]));
    let f: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(f[1..], ["EPERM", "ok"], "{out}");
    // Outside the cgroup the rule does not apply.
    assert!(std::net::TcpStream::connect(("127.0.0.1", denied)).is_ok());

    rx.wait_for_logs("policy decision", WAIT, |l| {
        l.iter()
            .any(|(_, r)| r.event_name == "security.policy_decision")
    });
    let d = decisions(&rx, "no-db");
    assert_eq!(d.len(), 1, "exactly the one denied connect");
    let a = &d[0].attributes;
    assert_eq!(str_attr(a, "tapio.lsm.action").as_deref(), Some("deny"));
    assert_eq!(str_attr(a, "tapio.lsm.hook").as_deref(), Some("connect"));
    assert_eq!(int_attr(a, "server.port"), Some(i64::from(denied)));
    assert_eq!(str_attr(a, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(int_attr(a, "process.pid"), f[0].parse().ok());
    assert_eq!(d[0].severity_text, "WARN");
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "no-db"), ("tapio.lsm.action", "deny")],
        WAIT,
        |v| v == 1,
    );
    t.terminate();
}

#[test]
fn audit_rule_allows_and_reports() {
    if !privileged_or_skip("lsm::audit_rule_allows_and_reports") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("a");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let t = Tapio::start(
        BIN,
        &config(&rx, "", &connect_rule("watch-db", "audit", port, &cg)),
        &[],
    );
    let out = cg.python(&connect_script(&[port, port]));
    assert!(out.ends_with("ok ok"), "{out}");
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[
            ("tapio.lsm.rule", "watch-db"),
            ("tapio.lsm.action", "audit"),
        ],
        WAIT,
        |v| v == 2,
    );
    // Logs are batched apart from metrics: wait for both records.
    rx.wait_for_logs("two audit decisions", WAIT, |l| {
        l.iter()
            .filter(|(_, r)| {
                r.event_name == "security.policy_decision"
                    && str_attr(&r.attributes, "tapio.lsm.rule").as_deref() == Some("watch-db")
            })
            .count()
            >= 2
    });
    let d = decisions(&rx, "watch-db");
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].severity_text, "INFO");
    t.terminate();
}

#[test]
fn socket_and_device_rules_are_enforced_in_the_cgroup() {
    if !privileged_or_skip("lsm::socket_and_device_rules_are_enforced_in_the_cgroup") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("s");
    let rx = Receiver::start();
    let rules = format!(
        "        - name: no-raw-sockets\n          hook: socket_create\n          action: deny\n          match: {{ family: inet, socket_type: raw, cgroup: {0} }}\n        - name: no-dev-full\n          hook: device\n          action: deny\n          match: {{ device: \"c 1:7\", access: w, cgroup: {0} }}\n",
        cg.rel
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    let out = cg.python(
        "import socket\ntry:\n  socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('raw ok')\nexcept PermissionError: print('raw EPERM')\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print('dgram ok')",
    );
    assert_eq!(out, "raw EPERM\ndgram ok");
    // /dev/full is c 1:7; /dev/null (c 1:3) is untouched; reading
    // /dev/full is allowed (the rule is for writes).
    let out = cg.run(
        "sh",
        &["-c", "echo x > /dev/full 2>/dev/null; echo w=$?; echo x > /dev/null && echo null-ok; head -c1 /dev/full >/dev/null && echo r-ok"],
    );
    assert!(out.contains("null-ok") && out.contains("r-ok"), "{out}");
    assert!(!out.contains("w=0"), "write to /dev/full allowed: {out}");
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "no-dev-full")],
        WAIT,
        |v| v >= 1,
    );
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "no-raw-sockets")],
        WAIT,
        |v| v == 1,
    );
    t.terminate();
}

#[test]
fn reload_flips_deny_to_allow_and_a_broken_policy_keeps_the_rules() {
    if !privileged_or_skip("lsm::reload_flips_deny_to_allow_and_a_broken_policy_keeps_the_rules") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("r");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let deny = config(&rx, "", &connect_rule("db", "deny", port, &cg));
    let t = Tapio::start(BIN, &deny, &[]);
    let try_it = || cg.python(&connect_script(&[port]));
    assert!(try_it().ends_with("EPERM"));

    t.rewrite_config(&config(&rx, "", &connect_rule("db", "audit", port, &cg)));
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[("tapio.reload.result", "applied")],
        WAIT,
        |v| v >= 1,
    );
    assert!(try_it().ends_with("ok"), "still denied after the reload");

    t.rewrite_config(&deny);
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[("tapio.reload.result", "applied")],
        WAIT,
        |v| v >= 2,
    );
    assert!(try_it().ends_with("EPERM"));

    // Broken: an unknown hook. The deny stays.
    t.rewrite_config(&deny.replace("hook: connect", "hook: conect"));
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[("tapio.reload.result", "rejected")],
        WAIT,
        |v| v >= 1,
    );
    assert!(
        try_it().ends_with("EPERM"),
        "a rejected policy lifted the rule"
    );
    // Decisions of both generations add up under the rule's name.
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "db"), ("tapio.lsm.action", "deny")],
        WAIT,
        |v| v == 3,
    );
    let err = t.terminate();
    assert!(err.contains("previous policy stays in force"), "{err}");
}

#[test]
fn tapio_is_exempt_unless_a_rule_includes_it() {
    if !privileged_or_skip("lsm::tapio_is_exempt_unless_a_rule_includes_it") {
        return;
    }
    let _links = links_shared();
    let rx = Receiver::start();
    let port = rx.grpc_addr.port();
    // A rule that would cut Tapio off from its collector: processes named
    // `tapio` may not connect to the receiver's port.
    let rules = format!(
        "        - name: no-export\n          hook: connect\n          action: deny\n          match: {{ address: 127.0.0.1/32, port: {port}, comm: tapio }}\n"
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    // Another process called `tapio` is denied...
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("tapio");
    std::fs::copy("/usr/bin/python3", &fake).unwrap();
    let out = Command::new(&fake)
        .args(["-c", &connect_script(&[port])])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with("EPERM"));
    // ...while Tapio keeps exporting: the decision reaches the receiver.
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "no-export")],
        WAIT,
        |v| v == 1,
    );
    t.terminate();
}

#[test]
fn bpf_lsm_rules_are_enforced_or_refused_loudly() {
    if !privileged_or_skip("lsm::bpf_lsm_rules_are_enforced_or_refused_loudly") {
        return;
    }
    let _links = links_shared();
    let lsm_works = std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.contains("bpf"))
        .unwrap_or(false)
        && Command::new(BIN)
            .args(["probes", "lsm"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.contains("lsm") && l.contains("file_open") && l.contains("yes"))
            })
            .unwrap_or(false);
    if lsm_works {
        // Nothing to refuse here: the same rules must be enforced instead.
        bpf_lsm_rules_are_enforced_in_the_cgroup();
        return;
    }
    let cg = TestCgroup::new("x");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let mut rules = connect_rule("net", "deny", port, &cg);
    rules.push_str(
        "        - name: no-shadow\n          hook: file_open\n          action: deny\n          match: { path: /etc/hostname }\n",
    );
    // file_modify is BPF LSM too (path_* hooks): refused the same way.
    rules.push_str(
        "        - name: keep-hostname\n          hook: file_modify\n          action: deny\n          match: { path: /etc/hostname, operations: [unlink, rename] }\n",
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    let gauge = |rule: &str, state: &str| {
        rx.metrics()
            .iter()
            .filter(|m| m.name == "tapio.lsm.rules")
            .filter_map(|m| point_value(m, &[("tapio.lsm.rule", rule), ("tapio.lsm.state", state)]))
            .next_back()
    };
    rx.wait_for_counter(
        "tapio.lsm.rules",
        &[
            ("tapio.lsm.rule", "no-shadow"),
            ("tapio.lsm.state", "refused"),
        ],
        WAIT,
        |v| v == 1,
    );
    assert_eq!(gauge("net", "enforced"), Some(1));
    assert!(cg.python(&connect_script(&[port])).ends_with("EPERM"));
    let err = t.terminate();
    assert!(
        err.contains("rule refused") && err.contains("no-shadow") && err.contains("BPF LSM"),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.contains("rule refused")
            && l.contains("keep-hostname")
            && l.contains("hook file_modify cannot be enforced on this kernel")
            && l.contains("BPF LSM refused")),
        "{err}"
    );
    assert_eq!(gauge("keep-hostname", "refused"), Some(1));
    let probes = Command::new(BIN).args(["probes", "lsm"]).output().unwrap();
    let text = String::from_utf8_lossy(&probes.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("lsm") && l.contains("file_open") && l.contains("no")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("lsm") && l.contains("file_modify") && l.contains(" no ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("lsm") && l.contains("connect") && l.contains("yes")),
        "{text}"
    );
}

/// Where the kernel runs BPF LSM programs (the Debian guests of
/// integration/vm): a file no process of the test cgroup may open while
/// another opens, an executable it may not run while /bin/true runs, an
/// executable it may not ptrace while another is traced, and an audit rule
/// that allows and reports; every decision logged and counted.
fn bpf_lsm_rules_are_enforced_in_the_cgroup() {
    let cg = TestCgroup::new("b");
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(path("secret"), "secret\n").unwrap();
    std::fs::write(path("public"), "public\n").unwrap();
    std::fs::write(path("audited"), "audited\n").unwrap();
    std::fs::create_dir(path("protected")).unwrap();
    std::fs::create_dir(path("tree")).unwrap();
    std::fs::write(path("tree/inside"), "inside\n").unwrap();
    std::fs::copy("/bin/true", path("denied-true")).unwrap();
    std::fs::copy("/bin/sleep", path("protected/sleep")).unwrap();
    // The allowed target sits beside the protected directory on the same
    // filesystem, so only the prefix tells them apart.
    std::fs::copy("/bin/sleep", path("sleep")).unwrap();
    let rule = |name: &str, hook: &str, action: &str, m: &str| {
        format!(
            "        - name: {name}\n          hook: {hook}\n          action: {action}\n          match: {{ {m}, cgroup: {} }}\n",
            cg.rel
        )
    };
    let rules = [
        rule(
            "no-secret",
            "file_open",
            "deny",
            &format!("path: {}", path("secret")),
        ),
        rule(
            "see-audited",
            "file_open",
            "audit",
            &format!("path: {}", path("audited")),
        ),
        rule(
            "no-exec",
            "exec",
            "deny",
            &format!("path: {}", path("denied-true")),
        ),
        rule(
            "no-ptrace",
            "ptrace",
            "deny",
            &format!("path_prefix: {}", path("protected")),
        ),
        // One inode key, one chain: the directory itself (audit), then its
        // subtree (deny). A file inside must meet the subtree rule.
        rule(
            "tree-itself",
            "file_open",
            "audit",
            &format!("path: {}", path("tree")),
        ),
        rule(
            "tree-below",
            "file_open",
            "deny",
            &format!("path_prefix: {}", path("tree")),
        ),
    ]
    .concat();
    let rx = Receiver::start();
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    for r in [
        "no-secret",
        "see-audited",
        "no-exec",
        "no-ptrace",
        "tree-below",
    ] {
        rx.wait_for_counter(
            "tapio.lsm.rules",
            &[("tapio.lsm.rule", r), ("tapio.lsm.state", "enforced")],
            WAIT,
            |v| v == 1,
        );
    }
    let open = |f: &str| {
        cg.python(&format!(
            "try:\n  open('{}').read(); print('ok')\nexcept PermissionError: print('EPERM')",
            path(f)
        ))
    };
    assert_eq!(open("secret"), "EPERM");
    assert_eq!(open("public"), "ok");
    assert_eq!(open("audited"), "ok");
    assert_eq!(
        open("tree/inside"),
        "EPERM",
        "an exact-path rule on the directory hid its subtree rule"
    );
    // Outside the cgroup the rules do not apply.
    assert_eq!(std::fs::read_to_string(path("secret")).unwrap(), "secret\n");
    let exec = |p: &str| {
        cg.python(&format!(
            "import subprocess\ntry:\n  subprocess.run(['{p}'], check=True); print('ok')\nexcept PermissionError: print('EPERM')"
        ))
    };
    assert_eq!(exec(&path("denied-true")), "EPERM");
    assert_eq!(exec("/bin/true"), "ok");
    // Both live until dropped: a `sleep 30` could end before a slow guest
    // got to it, and a zombie refuses PTRACE_ATTACH with EPERM whatever the
    // rules say (the hook sees no mm and decides nothing).
    let protected = Tracee::spawn(&path("protected/sleep"));
    let other = Tracee::spawn(&path("sleep"));
    let started = std::time::Instant::now();
    let ptrace = |pid: u32| {
        cg.python(&format!(
            "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             if libc.ptrace(16, {pid}, 0, 0) == 0:\n  os.waitpid({pid}, 0); libc.ptrace(17, {pid}, 0, 0); print('attached')\n\
             else: print(os.strerror(ctypes.get_errno()))"
        ))
    };
    let got = ptrace(protected.pid());
    eprintln!(
        "ptrace of the protected target: {got} ({:?} after it started)",
        started.elapsed()
    );
    assert_eq!(
        got,
        "Operation not permitted",
        "{}",
        ptrace_diagnosis(&rx, &t, &protected)
    );
    let got = ptrace(other.pid());
    eprintln!(
        "ptrace of the other target: {got} ({:?} after it started)",
        started.elapsed()
    );
    assert_eq!(got, "attached", "{}", ptrace_diagnosis(&rx, &t, &other));
    // The denial was the rule's, of the protected target: a target that had
    // exited would also have been refused, with no decision.
    rx.wait_for_logs("the no-ptrace decision", WAIT, |l| {
        l.iter().any(|(_, r)| {
            r.event_name == "security.policy_decision"
                && str_attr(&r.attributes, "tapio.lsm.rule").as_deref() == Some("no-ptrace")
        })
    });
    let targets: Vec<Option<i64>> = decisions(&rx, "no-ptrace")
        .iter()
        .map(|d| int_attr(&d.attributes, "tapio.lsm.target.pid"))
        .collect();
    assert_eq!(
        targets,
        [Some(i64::from(protected.pid()))],
        "{}",
        ptrace_diagnosis(&rx, &t, &protected)
    );
    drop(protected);
    drop(other);

    for (r, action, n) in [
        ("no-secret", "deny", 1),
        ("see-audited", "audit", 1),
        ("no-exec", "deny", 1),
        ("no-ptrace", "deny", 1),
        ("tree-below", "deny", 1),
    ] {
        rx.wait_for_counter(
            "tapio.lsm.decisions",
            &[("tapio.lsm.rule", r), ("tapio.lsm.action", action)],
            WAIT,
            |v| v >= n,
        );
        let d = decisions(&rx, r);
        assert!(!d.is_empty(), "no security.policy_decision for {r}");
        assert_eq!(
            str_attr(&d[0].attributes, "tapio.lsm.action").as_deref(),
            Some(action)
        );
    }
    t.terminate();
    keep_bpf_deny_does_not_stop_the_next_tapio();
}

/// A process for the ptrace rule to guard or not: `sleep infinity` from a
/// copy of the binary at `exe`, killed and reaped when dropped.
struct Tracee(std::process::Child);

impl Tracee {
    fn spawn(exe: &str) -> Self {
        Self(Command::new(exe).arg("infinity").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why a PTRACE_ATTACH of `target` went the way it did: what the kernel
/// says of the target (a zombie, or traced already, is refused by ptrace
/// itself), the no-ptrace decisions Tapio exported (each with the tracer's
/// and the target's pid: none for `target` means the BPF program did not
/// refuse it), and Tapio's stderr.
fn ptrace_diagnosis(rx: &Receiver, t: &Tapio, target: &Tracee) -> String {
    let pid = target.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let status: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("State:") || l.starts_with("TracerPid:"))
        .collect();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("({e})"));
    // Decisions are exported every 100 ms: give the last one time to come.
    std::thread::sleep(Duration::from_secs(2));
    let decided: Vec<String> = decisions(rx, "no-ptrace")
        .iter()
        .map(|d| {
            format!(
                "{} by pid {:?} of target pid {:?}",
                str_attr(&d.attributes, "tapio.lsm.action").unwrap_or_default(),
                int_attr(&d.attributes, "process.pid"),
                int_attr(&d.attributes, "tapio.lsm.target.pid"),
            )
        })
        .collect();
    format!(
        "target pid {pid} ({exe}): {status:?}; no-ptrace decisions: {decided:?}; tapio stderr:\n{}",
        t.stderr()
    )
}

/// BPF LSM: `on_exit: keep` with a `bpf` deny (BPF_PROG_LOAD by anyone but
/// Tapio) and an `exec` deny covering Tapio's binary. After SIGKILL the
/// pinned programs still enforce both, yet a new Tapio execs and loads its
/// programs: it is exempt from them before it loads anything.
fn keep_bpf_deny_does_not_stop_the_next_tapio() {
    let rx = Receiver::start();
    let pins = Pins(format!("/sys/fs/bpf/tapio-test-b-{}", std::process::id()));
    let extra = format!("    on_exit: keep\n    pin_dir: {}/lsm\n", pins.0);
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let rules = format!(
        "        - name: no-bpf\n          hook: bpf\n          action: deny\n          match: {{}}\n        - name: no-exec-here\n          hook: exec\n          action: deny\n          match: {{ path_prefix: {bin_dir} }}\n"
    );
    let t = Tapio::start(BIN, &config(&rx, &extra, &rules), &[]);
    kill9(t);
    // BPF_PROG_LOAD of a two-instruction socket filter by another process.
    let load = || {
        let out = Command::new(tapio_integration::python3())
            .args([
                "-c",
                "import ctypes,struct,os\n\
libc=ctypes.CDLL(None,use_errno=True)\n\
ins=ctypes.create_string_buffer(struct.pack('<BBhiBBhi',0xb7,0,0,0,0x95,0,0,0))\n\
lic=ctypes.create_string_buffer(b'GPL')\n\
a=ctypes.create_string_buffer(struct.pack('<IIQQ',1,2,ctypes.addressof(ins),ctypes.addressof(lic))+bytes(48))\n\
fd=libc.syscall(321,5,a,72)\n\
print('loaded' if fd>=0 else os.strerror(ctypes.get_errno()))",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(load(), "Operation not permitted", "the pinned bpf deny");
    // A new Tapio starts (exec of its binary, BPF_PROG_LOAD) and runs.
    let t = Tapio::start(BIN, &config(&rx, &extra, &rules), &[]);
    rx.wait_for_counter(
        "tapio.lsm.rules",
        &[
            ("tapio.lsm.rule", "no-bpf"),
            ("tapio.lsm.state", "enforced"),
        ],
        WAIT,
        |v| v == 1,
    );
    assert_eq!(load(), "Operation not permitted", "the new run's bpf deny");
    t.terminate();
    drop(pins);
    // Unlinking a pin drops the link's last reference only when bpffs frees
    // the inode, after an RCU grace period, and the trampoline is updated
    // from a work item after that: seconds under emulation (once, in the
    // 6.12 guest, the first load after the unlink was still refused).
    let end = Instant::now() + WAIT;
    let mut got = load();
    while got != "loaded" && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        got = load();
    }
    assert_eq!(got, "loaded", "pins left enforcing");
}

fn kill9(t: Tapio) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(t.pid() as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    drop(t);
}

#[test]
fn on_exit_keep_enforces_after_tapio_dies_and_release_does_not() {
    if !privileged_or_skip("lsm::on_exit_keep_enforces_after_tapio_dies_and_release_does_not") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("k");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let pins = format!("/sys/fs/bpf/tapio-test-{}", std::process::id());
    let try_it = || cg.python(&connect_script(&[port]));

    // release (the default): dies -> enforcement ends with it.
    let t = Tapio::start(
        BIN,
        &config(&rx, "", &connect_rule("r", "deny", port, &cg)),
        &[],
    );
    assert!(try_it().ends_with("EPERM"));
    kill9(t);
    assert!(
        try_it().ends_with("ok"),
        "release kept enforcing after SIGKILL"
    );

    // keep: dies -> the pinned links still enforce the last policy.
    let extra = format!("    on_exit: keep\n    pin_dir: {pins}/lsm\n");
    let t = Tapio::start(
        BIN,
        &config(&rx, &extra, &connect_rule("k", "deny", port, &cg)),
        &[],
    );
    assert!(try_it().ends_with("EPERM"));
    kill9(t);
    assert!(
        try_it().ends_with("EPERM"),
        "keep stopped enforcing after SIGKILL"
    );
    // A new Tapio with `release` takes over and removes the old pins;
    // when it exits, nothing is left.
    let extra_release = format!("    pin_dir: {pins}/lsm\n");
    let t = Tapio::start(
        BIN,
        &config(&rx, &extra_release, &connect_rule("k2", "deny", port, &cg)),
        &[],
    );
    assert!(try_it().ends_with("EPERM"));
    t.terminate();
    assert!(try_it().ends_with("ok"), "pins of the keep run survived");
    let left: Vec<_> = std::fs::read_dir(format!("{pins}/lsm"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "pins left: {left:?}");
    let _ = std::fs::remove_dir(format!("{pins}/lsm"));
    let _ = std::fs::remove_dir(&pins);
}

/// BPF links in the system whose program is one of Tapio's lsm programs
/// (names `tapio_lsm_*`), from `bpftool link list` and `prog list`.
fn lsm_links() -> usize {
    let json = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("bpftool")
            .args(args)
            .output()
            .expect("bpftool");
        serde_json::from_slice(&out.stdout).expect("bpftool json")
    };
    let progs = json(&["-j", "prog", "list"]);
    let ours: std::collections::HashSet<u64> = progs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("tapio_lsm"))
        })
        .filter_map(|p| p["id"].as_u64())
        .collect();
    json(&["-j", "link", "list"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|id| ours.contains(&id)))
        .count()
}

/// SIGKILL and restart under `on_exit: keep`, twice: the new Tapio adopts
/// the enforcement (it attaches its own links, then drops the pinned
/// ones), so there is exactly one set of links (`bpftool link list`) after
/// each restart, never two stacked, and the port is denied at every point
/// in between, as the README promises for `keep`. A last restart under
/// `release` takes the pinned set over too, and its clean exit leaves none.
#[test]
fn a_keep_restart_adopts_the_pinned_set_instead_of_stacking_a_second() {
    if !privileged_or_skip("lsm::a_keep_restart_adopts_the_pinned_set_instead_of_stacking_a_second")
    {
        return;
    }
    let _links = links_alone();
    let cg = TestCgroup::new("t");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let pins = format!("/sys/fs/bpf/tapio-test-adopt-{}", std::process::id());
    let try_it = || cg.python(&connect_script(&[port]));
    let base = lsm_links();
    // Ours, over what was there before (i64: a miscount shows negative).
    let ours = || lsm_links() as i64 - base as i64;
    let keep = format!("    on_exit: keep\n    pin_dir: {pins}/lsm\n");
    let yaml = config(&rx, &keep, &connect_rule("k", "deny", port, &cg));

    let mut t = Tapio::start(BIN, &yaml, &[]);
    let set = ours();
    assert!(set > 0, "no lsm links while running");
    assert!(try_it().ends_with("EPERM"));
    // What survives SIGKILL: the pinned links (the cgroup-mkdir tracepoint
    // and device links are not pinned, see the README).
    let mut pinned = None;
    for round in 1..=2 {
        kill9(t);
        let left = ours();
        assert!(
            left > 0 && left <= set,
            "round {round}: {left} of {set} links after SIGKILL"
        );
        assert_eq!(
            *pinned.get_or_insert(left),
            left,
            "round {round}: pinned set changed"
        );
        assert!(
            try_it().ends_with("EPERM"),
            "round {round}: keep lifted the deny"
        );
        t = Tapio::start(BIN, &yaml, &[]);
        assert_eq!(
            ours(),
            set,
            "round {round}: after the restart there must be one set, not two:\n{}",
            t.stderr()
        );
        assert!(try_it().ends_with("EPERM"));
    }
    kill9(t);
    let release = format!("    pin_dir: {pins}/lsm\n");
    let t = Tapio::start(
        BIN,
        &config(&rx, &release, &connect_rule("k", "deny", port, &cg)),
        &[],
    );
    assert_eq!(ours(), set, "release restart: one set");
    assert!(try_it().ends_with("EPERM"));
    t.terminate();
    assert_eq!(ours(), 0, "links left after a clean release exit");
    assert!(try_it().ends_with("ok"));
    let _ = std::fs::remove_dir(format!("{pins}/lsm"));
    let _ = std::fs::remove_dir(&pins);
}

/// A Kubernetes ConfigMap volume: `tapio.yaml -> ..data/tapio.yaml`,
/// `..data -> ..<timestamp>/`; an update writes a new timestamped directory
/// and renames a new `..data` link over the old one. The file's own inode
/// never changes, so only a directory watch sees it.
#[test]
fn configmap_style_symlink_swap_is_applied() {
    if !privileged_or_skip("lsm::configmap_style_symlink_swap_is_applied") {
        return;
    }
    let _links = links_shared();
    use std::os::unix::fs::symlink;
    let cg = TestCgroup::new("m");
    let (_a, port) = listener();
    let rx = Receiver::start();
    let vol = tempfile::tempdir().unwrap();
    let write_version = |name: &str, yaml: &str| {
        let dir = vol.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tapio.yaml"), yaml).unwrap();
        let tmp = vol.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(name, &tmp).unwrap();
        std::fs::rename(&tmp, vol.path().join("..data")).unwrap();
    };
    write_version(
        "..v1",
        &config(&rx, "", &connect_rule("cm", "deny", port, &cg)),
    );
    symlink("..data/tapio.yaml", vol.path().join("tapio.yaml")).unwrap();
    let t = Tapio::start_with_config_path(BIN, &vol.path().join("tapio.yaml"));
    assert!(cg.python(&connect_script(&[port])).ends_with("EPERM"));
    write_version(
        "..v2",
        &config(&rx, "", &connect_rule("cm", "audit", port, &cg)),
    );
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[("tapio.reload.result", "applied")],
        WAIT,
        |v| v >= 1,
    );
    assert!(cg.python(&connect_script(&[port])).ends_with("ok"));
    t.terminate();
}

/// A command in a network namespace of its own whose loopback also holds
/// 198.18.1.1 (so nothing it connects to leaves it), inside `cg`.
fn in_private_net(cg: &TestCgroup, script: &str) -> String {
    cg.run(
        "unshare",
        &[
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip addr add 198.18.1.1/32 dev lo && exec \"$1\" -c \"$0\"",
            script,
            tapio_integration::python3(),
        ],
    )
}

/// Connects to port 9 of each address, as root and then as uid 1000:
/// `ok`, `EPERM` or `errN` (111: refused, 101: no route; both mean the
/// policy allowed it).
const TWO_UIDS: &str = "import socket,os,sys\n\
def c(a):\n  s=socket.socket()\n  try:\n    s.connect((a,9)); return 'ok'\n  except PermissionError: return 'EPERM'\n  except OSError as e: return 'err%d' % e.errno\n\
r=[c('198.18.1.1'), c('198.18.2.1')]\n\
pid=os.fork()\n\
if pid==0:\n  os.setuid(1000); print('uid1000', *[c('198.18.1.1'), c('198.18.2.1')]); sys.stdout.flush(); os._exit(0)\n\
os.waitpid(pid,0)\nprint('uid0', *r)";

#[test]
fn a_more_specific_network_rule_does_not_hide_a_broader_deny() {
    if !privileged_or_skip("lsm::a_more_specific_network_rule_does_not_hide_a_broader_deny") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("p");
    let rx = Receiver::start();
    // The /24 rule's condition (uid 1000) fails for root: the /15 deny
    // behind it must still be consulted.
    let rules = format!(
        "        - name: deny-15\n          hook: connect\n          action: deny\n          match: {{ address: 198.18.0.0/15, cgroup: {0} }}\n        - name: audit-24\n          hook: connect\n          action: audit\n          match: {{ address: 198.18.1.0/24, uid: 1000, cgroup: {0} }}\n",
        cg.rel
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    let out = in_private_net(&cg, TWO_UIDS);
    let lines: Vec<&str> = out.lines().collect();
    // uid 1000: the /24 audit rule applies to 198.18.1.1 (allowed: nothing
    // listens), 198.18.2.1 is outside the /24 and denied by the /15.
    assert!(lines.contains(&"uid1000 err111 EPERM"), "{out}");
    // root: the /24 rule does not apply, so the /15 deny does.
    assert!(lines.contains(&"uid0 EPERM EPERM"), "{out}");
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "deny-15"), ("tapio.lsm.action", "deny")],
        WAIT,
        |v| v == 3,
    );
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[
            ("tapio.lsm.rule", "audit-24"),
            ("tapio.lsm.action", "audit"),
        ],
        WAIT,
        |v| v == 1,
    );
    t.terminate();
}

#[test]
fn socket_create_rule_without_family_or_type_covers_every_socket() {
    if !privileged_or_skip("lsm::socket_create_rule_without_family_or_type_covers_every_socket") {
        return;
    }
    let _links = links_shared();
    let cg = TestCgroup::new("n");
    let rx = Receiver::start();
    let rules = format!(
        "        - name: no-sockets\n          hook: socket_create\n          action: deny\n          match: {{ cgroup: {} }}\n",
        cg.rel
    );
    let t = Tapio::start(BIN, &config(&rx, "", &rules), &[]);
    rx.wait_for_counter(
        "tapio.lsm.rules",
        &[
            ("tapio.lsm.rule", "no-sockets"),
            ("tapio.lsm.state", "enforced"),
        ],
        WAIT,
        |v| v == 1,
    );
    let out = cg.python(
        "import socket\n\
for f,t in ((socket.AF_INET,socket.SOCK_STREAM),(socket.AF_INET6,socket.SOCK_DGRAM)):\n  try:\n    socket.socket(f,t); print('ok')\n  except PermissionError: print('EPERM')",
    );
    assert_eq!(out, "EPERM\nEPERM", "{out}");
    // Outside the cgroup the rule does not apply.
    assert!(std::net::UdpSocket::bind("127.0.0.1:0").is_ok());
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[
            ("tapio.lsm.rule", "no-sockets"),
            ("tapio.lsm.action", "deny"),
        ],
        WAIT,
        |v| v == 2,
    );
    t.terminate();
}

/// Removes a pin directory (releasing what is pinned in it) on drop, so a
/// failed test leaves no enforcement behind.
struct Pins(String);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawn a process running `prog args` whose pid is `pid` (the pid a dead
/// Tapio had), in `cg`: ns_last_pid makes the next fork get it unless
/// another process forks first, so this retries a bounded number of
/// times. Returns its stdout.
fn with_pid(pid: u32, cg: &TestCgroup, prog: &str, args: &[&str]) -> String {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let out = cg.run(prog, args);
        if out.split_whitespace().next() == Some(pid.to_string().as_str()) {
            return out;
        }
    }
    panic!("no process got pid {pid} in 200 tries");
}

/// A Tapio started by `unshare --pid --fork`: its getpid() is 1, not the
/// pid the kernel's programs see. Killed (SIGTERM through --kill-child) on
/// drop.
struct PidNsTapio {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl PidNsTapio {
    fn start(yaml: &str) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("tapio.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child=SIGTERM",
                BIN,
                "run",
                "--config",
            ])
            .arg(&cfg)
            .env("TAPIO_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let buf = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("tapio ready") {
                    let _ = tx.send(());
                }
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
        let t = Self {
            child,
            _dir: dir,
            stderr,
        };
        assert!(
            rx.recv_timeout(Duration::from_secs(60)).is_ok(),
            "tapio in a pid namespace did not become ready:\n{}",
            t.stderr.lock().unwrap()
        );
        t
    }
}

impl Drop for PidNsTapio {
    /// SIGTERM to Tapio (unshare's child), then wait for unshare, which
    /// exits with it: nothing of this run is left attached afterwards.
    fn drop(&mut self) {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the child of our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `on_exit: keep` with a rule that would cut Tapio off from its collector
/// (processes named `tapio` may not connect to it). After SIGKILL the
/// pinned programs do not exempt a process that gets the dead Tapio's pid;
/// a new Tapio, even one whose getpid() is not its host pid (a pid
/// namespace), is exempt from them and from its own programs and keeps
/// exporting; another process named `tapio` stays denied throughout.
#[test]
fn keep_exemption_is_tapio_itself_across_restarts_not_its_old_pid() {
    if !privileged_or_skip("lsm::keep_exemption_is_tapio_itself_across_restarts_not_its_old_pid") {
        return;
    }
    let _links = links_shared();
    let rx = Receiver::start();
    let port = rx.grpc_addr.port();
    let pins = Pins(format!("/sys/fs/bpf/tapio-test-x-{}", std::process::id()));
    let extra = format!("    on_exit: keep\n    pin_dir: {}/lsm\n", pins.0);
    let rule = |name: &str| {
        format!(
            "        - name: {name}\n          hook: connect\n          action: deny\n          match: {{ address: 127.0.0.1/32, port: {port}, comm: tapio }}\n"
        )
    };
    let cg = TestCgroup::new("e");
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("tapio");
    std::fs::copy("/usr/bin/python3", &fake).unwrap();
    let fake = fake.display().to_string();
    let script = format!(
        "import socket,os\ns=socket.socket()\ntry:\n  s.connect(('127.0.0.1',{port})); r='ok'\nexcept PermissionError: r='EPERM'\nprint(os.getpid(), r)"
    );

    let t = Tapio::start(BIN, &config(&rx, &extra, &rule("first")), &[]);
    // Tapio exports: its metrics arrive.
    rx.wait_for_counter(
        "tapio.lsm.rules",
        &[("tapio.lsm.rule", "first"), ("tapio.lsm.state", "enforced")],
        WAIT,
        |v| v == 1,
    );
    let old = t.pid();
    kill9(t);
    // The pinned programs still deny, and not even a `tapio` that got the
    // dead one's pid is exempt.
    let out = with_pid(old, &cg, &fake, &["-c", &script]);
    assert_eq!(
        out,
        format!("{old} EPERM"),
        "the dead Tapio's pid is exempt"
    );

    // A new Tapio whose getpid() is 1: exempt from the pinned programs it
    // takes over from and from its own, it keeps exporting.
    let t2 = PidNsTapio::start(&config(&rx, &extra, &rule("second")));
    rx.wait_for_counter(
        "tapio.lsm.rules",
        &[
            ("tapio.lsm.rule", "second"),
            ("tapio.lsm.state", "enforced"),
        ],
        WAIT,
        |v| v == 1,
    );
    let out = cg.run(&fake, &["-c", &script]);
    assert!(out.ends_with("EPERM"), "another tapio is exempt: {out}");
    // Decisions of the new run reach the receiver too: its export path is
    // through the rule.
    rx.wait_for_counter(
        "tapio.lsm.decisions",
        &[("tapio.lsm.rule", "second"), ("tapio.lsm.action", "deny")],
        WAIT,
        |v| v >= 1,
    );
    drop(t2);
    drop(pins);
    let out = cg.run(&fake, &["-c", &script]);
    assert!(out.ends_with("ok"), "pins left enforcing: {out}");
}
