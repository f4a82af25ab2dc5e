//! Remote policy over OpAMP: Tapio polls an OpAMP server of the test's own
//! on loopback (`opamp_server.py`, which decodes with the classes protoc
//! generated from the published opamp.proto), takes an lsm policy from its
//! remote config, and the kernel enforces it for real on a cgroup the test
//! makes. The server sees APPLYING, APPLIED or FAILED with the reason, and
//! the effective config; a broken policy keeps the last good one in force.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tapio_integration::{privileged_or_skip, Receiver, Tapio};

#[path = "support/cgroup.rs"]
mod cgroup;
use cgroup::{connect_script, listener, TestCgroup};

const BIN: &str = env!("CARGO_BIN_EXE_tapio");
const WAIT: Duration = Duration::from_secs(20);
/// AgentCapabilities: ReportsStatus | AcceptsRemoteConfig |
/// ReportsEffectiveConfig | ReportsHealth | ReportsRemoteConfig.
const CAPABILITIES: u64 = 0x1 | 0x2 | 0x4 | 0x800 | 0x1000;

/// The Python OpAMP server, killed on drop.
struct OpampServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl OpampServer {
    /// On `port` (0: any free one), keeping its files in `dir`.
    fn start(dir: &Path, port: u16) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/tests/opamp_server.py");
        let mut child = Command::new(tapio_integration::python3())
            .arg(script)
            .arg("--dir")
            .arg(dir)
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OpAMP server (python3)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the OpAMP server did not start (is opentelemetry-opamp-client installed?): {line:?}"
            )
        });
        Self {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/opamp", self.port)
    }

    /// Every AgentToServer it got, with its checks.
    fn messages(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("messages.jsonl")).unwrap_or_default();
        // The server appends a line longer than Python's 8 KiB buffer in
        // more than one write: the last line may still be half written
        // (a CI run read one cut at 8,192 bytes). Only whole lines count.
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Offer `yaml` as the remote config from the next poll on; returns
    /// the hash the server sends with it (sha256, hex).
    fn offer(&self, yaml: &str) -> String {
        let tmp = self.dir.join("remote.yaml.new");
        std::fs::write(&tmp, yaml).unwrap();
        let out = Command::new("sha256sum")
            .arg(&tmp)
            .output()
            .expect("sha256sum");
        std::fs::rename(&tmp, self.dir.join("remote.yaml")).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("a hash")
            .to_string()
    }

    /// Wait until some message satisfies `pred`; returns it.
    fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| pred(m)) {
                return m;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; got:\n{:#?}", self.messages());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OpampServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seq(m: &Value) -> u64 {
    m["msg"]["sequence_num"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn status_is(m: &Value, status: &str, hash: &str) -> bool {
    m["status"]["status"] == format!("RemoteConfigStatuses_{status}") && m["status"]["hash"] == hash
}

fn effective(m: &Value) -> Option<&str> {
    m["effective"]["tapio.yaml"]["body"].as_str()
}

fn deny_rule(name: &str, port: u16, cg: &TestCgroup) -> String {
    format!(
        "probes:\n  lsm:\n    policy:\n      rules:\n        - name: {name}\n          hook: connect\n          action: deny\n          match: {{ address: 127.0.0.1/32, port: {port}, protocol: tcp, cgroup: {} }}\n",
        cg.rel
    )
}

fn config(rx: &Receiver, server: &str, policy: &str) -> String {
    format!(
        "exporters:\n  otlp:\n    endpoint: {}\npipeline:\n  logs: {{ schedule_delay: 100ms }}\n  metrics: {{ export_interval: 200ms }}\nextensions:\n  opamp:\n    server:\n      http:\n        endpoint: {server}\n        polling_interval: 200ms\n{policy}  process: {{ enabled: false }}\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n",
        rx.grpc_endpoint()
    )
}

/// `EPERM`/`ok` for each port, connecting from inside the cgroup.
fn outcomes(cg: &TestCgroup, ports: &[u16]) -> Vec<String> {
    let out = cg.python(&connect_script(ports));
    out.split_whitespace().skip(1).map(str::to_string).collect()
}

#[test]
fn remote_policy_is_enforced_reported_and_a_broken_one_keeps_the_last_good() {
    if !privileged_or_skip(
        "opamp::remote_policy_is_enforced_reported_and_a_broken_one_keeps_the_last_good",
    ) {
        return;
    }
    let cg = TestCgroup::new("opamp");
    let (_a, a) = listener();
    let (_b, b) = listener();
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path(), 0);
    let rx = Receiver::start();
    let file_policy = deny_rule("file-deny-a", a, &cg);
    let t = Tapio::start(BIN, &config(&rx, &server.endpoint(), &file_policy), &[]);
    assert_eq!(outcomes(&cg, &[a, b]), ["EPERM", "ok"], "the file's policy");

    // The first message describes the agent in full.
    let first = server.wait_for("a first message", |m| seq(m) == 1);
    let msg = &first["msg"];
    assert_eq!(msg["capabilities"], CAPABILITIES.to_string());
    assert_eq!(
        msg["instance_uid"].as_str().map(str::len),
        Some(24),
        "16 bytes, base64"
    );
    let ids = msg["agent_description"]["identifying_attributes"]
        .as_array()
        .unwrap();
    let attr = |k: &str| {
        ids.iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"]["string_value"].clone())
    };
    assert_eq!(attr("service.name"), Some("tapio".into()));
    assert!(attr("service.instance.id").is_some());
    assert_eq!(msg["health"]["healthy"], true);
    let eff = effective(&first).expect("effective config in the first message");
    assert!(eff.contains("file-deny-a"), "{eff}");

    // A new policy: deny b instead of a.
    let hash = server.offer(&deny_rule("remote-deny-b", b, &cg));
    let applied = server.wait_for("APPLIED", |m| status_is(m, "APPLIED", &hash));
    let applying = server.wait_for("APPLYING", |m| status_is(m, "APPLYING", &hash));
    assert!(seq(&applying) < seq(&applied), "APPLYING comes first");
    let eff = server.wait_for("the new effective config", |m| {
        effective(m).is_some_and(|e| e.contains("remote-deny-b"))
    });
    assert!(!effective(&eff).unwrap().contains("file-deny-a"));
    assert_eq!(outcomes(&cg, &[a, b]), ["ok", "EPERM"], "the remote policy");

    // The file changing does not override the remote policy.
    t.rewrite_config(&config(
        &rx,
        &server.endpoint(),
        &deny_rule("file-deny-a-again", a, &cg),
    ));
    let end = Instant::now() + WAIT;
    while !t.stderr().contains("a policy from OpAMP is in force") {
        assert!(
            Instant::now() < end,
            "file change not seen:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        outcomes(&cg, &[a, b]),
        ["ok", "EPERM"],
        "still the remote policy"
    );

    // A broken policy: FAILED with the reason, the last good one stays.
    let bad = server.offer(
        "probes:\n  lsm:\n    policy:\n      rules:\n        - name: broken\n          hook: connect\n          action: deny\n          match: { path: /etc/shadow }\n",
    );
    let failed = server.wait_for("FAILED", |m| status_is(m, "FAILED", &bad));
    assert_eq!(
        failed["status"]["error"],
        "probes.lsm.policy.rules[0].match.path (line 8): does not apply to hook connect"
    );
    assert_eq!(
        outcomes(&cg, &[a, b]),
        ["ok", "EPERM"],
        "the last good policy"
    );
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[
            ("tapio.config.source", "opamp"),
            ("tapio.reload.result", "rejected"),
        ],
        WAIT,
        |v| v == 1,
    );

    // An empty remote config hands the policy back to the file (its
    // latest version).
    let empty = server.offer("");
    server.wait_for("APPLIED (empty)", |m| status_is(m, "APPLIED", &empty));
    assert_eq!(
        outcomes(&cg, &[a, b]),
        ["EPERM", "ok"],
        "the file's policy again"
    );
    rx.wait_for_counter(
        "tapio.config.reloads",
        &[
            ("tapio.config.source", "opamp"),
            ("tapio.reload.result", "applied"),
        ],
        WAIT,
        |v| v == 2,
    );

    // Every message decoded with the generated classes, no unknown field,
    // and re-encoded to exactly what Tapio sent; sequence numbers count up.
    let all = server.messages();
    for m in &all {
        assert_eq!(m["reencoded_equal"], true, "{m:#}");
        assert_eq!(m["unknown_fields"], 0, "{m:#}");
    }
    let seqs: Vec<u64> = all.iter().map(seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let before = seqs.last().copied().unwrap_or(0);
    let err = t.terminate();
    let last = server.messages().pop().unwrap();
    assert!(
        last["msg"]["agent_disconnect"].is_object(),
        "no AgentDisconnect: {last:#}\n{err}"
    );
    assert!(seq(&last) > before);
}

/// The server is down when Tapio starts: exchanges fail and are counted,
/// Tapio keeps running and enforcing, and once the server is up it gets the
/// full state (description, effective config) and a remote policy applies.
#[test]
fn server_down_then_up() {
    if !privileged_or_skip("opamp::server_down_then_up") {
        return;
    }
    let cg = TestCgroup::new("opamp-down");
    let (_a, a) = listener();
    let dir = tempfile::tempdir().unwrap();
    // A free port, freed again: nothing listens there at first.
    let port = listener().1;
    let rx = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{port}/v1/opamp");
    let policy = "probes:\n  lsm:\n    enabled: true\n    policy: { rules: [] }\n";
    let t = Tapio::start(BIN, &config(&rx, &endpoint, policy), &[]);
    rx.wait_for_counter(
        "tapio.opamp.exchanges",
        &[("tapio.opamp.result", "failed")],
        WAIT,
        |v| v >= 2,
    );
    assert_eq!(outcomes(&cg, &[a]), ["ok"]);

    let server = OpampServer::start(dir.path(), port);
    let hash = server.offer(&deny_rule("late", a, &cg));
    let first = server.wait_for("a first message", |_| true);
    assert!(
        first["msg"]["agent_description"].is_object() && effective(&first).is_some(),
        "the first message after the outage carries the full state: {first:#}"
    );
    server.wait_for("APPLIED", |m| status_is(m, "APPLIED", &hash));
    assert_eq!(outcomes(&cg, &[a]), ["EPERM"]);
    rx.wait_for_counter(
        "tapio.opamp.exchanges",
        &[("tapio.opamp.result", "ok")],
        WAIT,
        |v| v >= 1,
    );
    t.terminate();
}

impl OpampServer {
    /// Misbehave as `json` says from the next request on (see the
    /// server's doc).
    fn behave(&self, json: &str) {
        let tmp = self.dir.join("behaviour.json.new");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(&tmp, self.dir.join("behaviour.json")).unwrap();
    }

    /// Wait for at least `n` logged requests; returns them.
    fn wait_for_count(&self, n: usize) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.messages();
            if all.len() >= n {
                return all;
            }
            assert!(
                Instant::now() < end,
                "only {} requests arrived: {all:#?}",
                all.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A Tapio config with only the process probe and an OpAMP server, polled
/// every `polling`; `http_extra` goes under `server.http`, `opamp_extra`
/// under `opamp` (both indented already).
fn client_config(
    rx: &Receiver,
    server: &str,
    polling: &str,
    http_extra: &str,
    opamp_extra: &str,
) -> String {
    format!(
        "exporters:\n  otlp:\n    endpoint: {}\nextensions:\n  opamp:\n{opamp_extra}    server:\n      http:\n        endpoint: {server}\n        polling_interval: {polling}\n{http_extra}probes:\n  network: {{ enabled: false }}\n  dns: {{ enabled: false }}\n  security: {{ enabled: false }}\n",
        rx.grpc_endpoint()
    )
}

/// Wait until Tapio's stderr contains `needle`.
fn wait_stderr(t: &Tapio, needle: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    while !t.stderr().contains(needle) {
        assert!(
            Instant::now() < end,
            "no `{needle}` on stderr:\n{}",
            t.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The shortest time between two consecutive requests the server logged.
fn min_gap(msgs: &[Value]) -> f64 {
    msgs.windows(2)
        .map(|w| w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min)
}

/// A server that asks for the full state in every answer, or answers 503
/// with `Retry-After: 0`, gets requests no closer together than
/// min(polling_interval, 1 s) (500 ms here; asserted with half of it as
/// slack for scheduling), never a busy loop.
#[test]
fn an_eager_server_cannot_make_tapio_busy_loop() {
    if !privileged_or_skip("opamp::an_eager_server_cannot_make_tapio_busy_loop") {
        return;
    }
    for how in [
        r#"{"full_state": true}"#,
        r#"{"status": 503, "retry_after": "0"}"#,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = OpampServer::start(dir.path(), 0);
        server.behave(how);
        let rx = Receiver::start();
        let t = Tapio::start(
            BIN,
            &client_config(&rx, &server.endpoint(), "500ms", "", ""),
            &[],
        );
        let msgs = server.wait_for_count(6);
        let gap = min_gap(&msgs[..6]);
        assert!(gap >= 0.25, "{how}: requests {gap:.3}s apart");
        t.terminate();
    }
}

/// An answer over the limit is refused with a clear error, not read to the
/// end and applied; the server here sends no Content-Length, so the limit
/// holds while reading.
#[test]
fn an_oversized_answer_is_refused() {
    if !privileged_or_skip("opamp::an_oversized_answer_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path(), 0);
    server.behave(r#"{"no_content_length": true}"#);
    let rx = Receiver::start();
    let t = Tapio::start(
        BIN,
        &client_config(&rx, &server.endpoint(), "200ms", "", ""),
        &[],
    );
    server.wait_for("a first message", |_| true);
    // A valid config with a 9 MiB comment: over the 8 MiB limit.
    let big = format!(
        "# {}\nprobes:\n  xdp:\n    policy: {{}}\n",
        "x".repeat(9 << 20)
    );
    let hash = server.offer(&big);
    wait_stderr(&t, "the answer is larger than 8 MiB");
    // Still running and polling; the config never got as far as APPLYING.
    let n = server.messages().len();
    server.wait_for_count(n + 2);
    assert!(
        !server
            .messages()
            .iter()
            .any(|m| m["status"]["hash"] == hash.as_str()),
        "the oversized config was processed"
    );
    t.terminate();
}

/// A redirect to another host is not followed: the configured header never
/// reaches it.
#[test]
fn a_redirect_to_another_host_is_refused() {
    if !privileged_or_skip("opamp::a_redirect_to_another_host_is_refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path(), 0);
    // The same server under another name: were the redirect followed, it
    // would log a request with that Host.
    let elsewhere = format!("http://localhost:{}/v1/opamp", server.port);
    server.behave(&format!(r#"{{"redirect_to": "{elsewhere}"}}"#));
    let rx = Receiver::start();
    let t = Tapio::start(
        BIN,
        &client_config(
            &rx,
            &server.endpoint(),
            "200ms",
            "        headers: { x-tapio-token: secret }\n",
            "",
        ),
        &[],
    );
    wait_stderr(&t, "refused a redirect from");
    server.wait_for_count(3);
    let all = server.messages();
    assert!(
        all.iter().all(|m| m["redirected"] == true),
        "a request reached the redirect target: {all:#?}"
    );
    assert_eq!(all[0]["token"], "secret", "the configured header is sent");
    t.terminate();
}

/// A remote policy that leaves Tapio without its server is rolled back to
/// the file's policy after `rollback_after_unreachable` (2 s here), in its
/// latest version (an edit made while the remote policy was in force), and
/// the server hears why (FAILED) when it comes back; the same config is not
/// applied again.
#[test]
fn a_remote_policy_is_rolled_back_when_the_server_stays_away() {
    if !privileged_or_skip("opamp::a_remote_policy_is_rolled_back_when_the_server_stays_away") {
        return;
    }
    let cg = TestCgroup::new("opamp-rollback");
    let (_a, a) = listener();
    let (_b, b) = listener();
    let dir = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir.path(), 0);
    let port = server.port;
    let endpoint = server.endpoint();
    let rx = Receiver::start();
    let cfg = |policy: &str| {
        config(&rx, &endpoint, policy).replace(
            "extensions:\n  opamp:\n",
            "extensions:\n  opamp:\n    rollback_after_unreachable: 2s\n",
        )
    };
    let t = Tapio::start(BIN, &cfg(&deny_rule("file-deny-a", a, &cg)), &[]);
    assert_eq!(outcomes(&cg, &[a, b]), ["EPERM", "ok"], "the file's policy");

    let hash = server.offer(&deny_rule("remote-deny-b", b, &cg));
    server.wait_for("APPLIED", |m| status_is(m, "APPLIED", &hash));
    assert_eq!(outcomes(&cg, &[a, b]), ["ok", "EPERM"], "the remote policy");
    // An edit while the remote policy is in force: kept, not enforced.
    let both = deny_rule("file-deny-a", a, &cg)
        + &deny_rule("file-deny-b", b, &cg)
            .replace("probes:\n  lsm:\n    policy:\n      rules:\n", "");
    t.rewrite_config(&cfg(&both));
    wait_stderr(&t, "a policy from OpAMP is in force");
    assert_eq!(
        outcomes(&cg, &[a, b]),
        ["ok", "EPERM"],
        "still the remote policy"
    );

    // The server goes away (as if the policy had cut Tapio off).
    drop(server);
    wait_stderr(&t, "opamp: rolled back to the config file's policy");
    assert_eq!(
        outcomes(&cg, &[a, b]),
        ["EPERM", "EPERM"],
        "the file's latest policy"
    );
    rx.wait_for_logs("the rollback's reload record", WAIT, |logs| {
        logs.iter().any(|(_, r)| {
            r.event_name == "tapio.config.reload"
                && format!("{:?}", r.body).contains("(rollback): policy reloaded")
        })
    });

    // Back: it hears FAILED with the reason, and does not re-apply it.
    let dir2 = tempfile::tempdir().unwrap();
    let server = OpampServer::start(dir2.path(), port);
    server.offer(&deny_rule("remote-deny-b", b, &cg));
    let failed = server.wait_for("FAILED (rolled back)", |m| status_is(m, "FAILED", &hash));
    let why = failed["status"]["error"].as_str().unwrap();
    assert!(
        why.starts_with(
            "rolled back to the config file's policy: the server did not answer for 2s"
        ),
        "{why}"
    );
    let n = server.messages().len();
    server.wait_for_count(n + 3);
    assert!(
        !server
            .messages()
            .iter()
            .any(|m| status_is(m, "APPLYING", &hash)),
        "the rolled-back config was applied again"
    );
    assert_eq!(outcomes(&cg, &[a, b]), ["EPERM", "EPERM"]);
    t.terminate();
}
