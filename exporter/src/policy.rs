//! Live policy: the one path by which a new `probes.*.policy` reaches the
//! running probes, whether it came from the watched config file
//! (`reload`) or from an OpAMP server (`opamp`). Both hand over YAML text;
//! it is parsed and validated exactly as at start (`config::parse`), and
//! only a valid policy is put in force, probe by probe, each probe staging
//! it where the kernel does not read and switching with one map write. A
//! rejected or failed policy leaves the previous one in force and is
//! reported: a log line, a `tapio.config.reload` record and
//! `tapio.config.reloads{tapio.config.source, tapio.reload.result}`.
//!
//! Precedence: a remote (OpAMP) policy, once applied, replaces the file's
//! `probes.*.policy` sections as a whole (a probe the remote document
//! leaves out gets an empty policy) and stays in force while the file
//! changes; the file's policy returns when the server sends an empty
//! remote config. Settings outside policy sections never change while
//! running, whichever the source.

use crate::config::{self, Config, Probes};
use crate::export::Emitter;
use crate::telemetry::{ReloadResult, ReloadSource, Telemetry};
use std::sync::Arc;

/// Why a policy could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{probe}: writing BPF map {map}: {source}")]
    Map {
        probe: &'static str,
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("{probe}: {message}")]
    Unsupported {
        probe: &'static str,
        message: String,
    },
}

/// A running probe whose policy can change while it runs.
pub trait PolicyTarget: Send {
    /// The probe's name, for logs.
    fn probe(&self) -> &'static str;
    /// Put the policy in `probes` in force. Called only with a validated
    /// configuration. On error the previous policy must still be in force:
    /// targets stage the new policy where the kernel does not read it and
    /// switch with one map write.
    fn apply(&mut self, probes: &Probes) -> Result<(), PolicyError>;
}

/// A target and the policies it runs (what its kernel maps hold), which
/// differ from `in_force` only when a failed change could not be undone.
struct Running {
    target: Box<dyn PolicyTarget>,
    policy: Probes,
}

/// What the running probes enforce, and where it came from.
pub struct Policies {
    /// The config file as last read validly (or the defaults without one).
    file: Config,
    /// The remote document's probes, while a remote policy is in force.
    remote: Option<Probes>,
    /// The policy last put in force on every target.
    in_force: Probes,
    /// +1 every time a new policy is put in force.
    generation: u64,
    targets: Vec<Running>,
    telemetry: Arc<Telemetry>,
    emitter: Emitter,
}

/// Parse and validate policy text: the same function at start, on a file
/// change and for OpAMP. Errors are one line, every problem named.
pub fn parse(text: &str) -> Result<Config, String> {
    config::parse(text).map_err(|errs| {
        let all: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
        all.join("; ")
    })
}

impl Policies {
    /// `file` is what the probes were started with.
    pub fn new(
        file: Config,
        targets: Vec<Box<dyn PolicyTarget>>,
        telemetry: Arc<Telemetry>,
        emitter: Emitter,
    ) -> Self {
        let targets = targets
            .into_iter()
            .map(|target| Running {
                target,
                policy: file.probes.clone(),
            })
            .collect();
        Self {
            in_force: file.probes.clone(),
            file,
            remote: None,
            generation: 0,
            targets,
            telemetry,
            emitter,
        }
    }

    /// Whether `cfg` is the config file as last read validly.
    pub fn file_is(&self, cfg: &Config) -> bool {
        &self.file == cfg
    }

    /// The config file at `path` now reads `text` (changed since the last
    /// call).
    pub fn file_changed(&mut self, path: &str, text: &str) {
        let cfg = match parse(text) {
            Ok(c) => c,
            Err(why) => {
                self.report(ReloadSource::File, path, ReloadResult::Rejected, Some(&why));
                return;
            }
        };
        if cfg.without_policy() != self.file.without_policy() {
            tracing::warn!(
                path,
                "settings other than probe policies changed; they take effect at the next restart"
            );
        }
        self.file = cfg;
        if self.remote.is_some() {
            tracing::info!(
                path,
                "the file's policy changed, but a policy from OpAMP is in force; the file's \
                 returns when the server sends an empty remote config"
            );
            return;
        }
        let probes = self.file.probes.clone();
        let _ = self.put_in_force(ReloadSource::File, path, &probes);
    }

    /// The OpAMP server at `origin` sent remote config `text` (`None`: an
    /// empty config, meaning "back to the file's policy"). Ok when the
    /// policy it carries is in force; Err with the reason when the
    /// previous policy stays.
    pub fn remote_received(&mut self, origin: &str, text: Option<&str>) -> Result<(), String> {
        let Some(text) = text else {
            let probes = self.file.probes.clone();
            self.put_in_force(ReloadSource::Opamp, origin, &probes)?;
            self.remote = None;
            return Ok(());
        };
        let cfg = match parse(text) {
            Ok(c) => c,
            Err(why) => {
                self.report(
                    ReloadSource::Opamp,
                    origin,
                    ReloadResult::Rejected,
                    Some(&why),
                );
                return Err(why);
            }
        };
        if cfg.without_policy() != Config::default() {
            tracing::warn!(
                origin,
                "the remote config sets more than probes.*.policy; only the policy is applied"
            );
        }
        self.put_in_force(ReloadSource::Opamp, origin, &cfg.probes)?;
        self.remote = Some(cfg.probes);
        Ok(())
    }

    fn put_in_force(
        &mut self,
        source: ReloadSource,
        origin: &str,
        probes: &Probes,
    ) -> Result<(), String> {
        let everywhere = self.targets.iter().all(|t| t.policy.policies_equal(probes));
        if everywhere && probes.policies_equal(&self.in_force) {
            return Ok(());
        }
        let mut failures = Vec::new();
        // Targets that took the new policy, with what they ran before.
        let mut moved = Vec::new();
        for (i, t) in self.targets.iter_mut().enumerate() {
            if t.policy.policies_equal(probes) {
                continue;
            }
            match t.target.apply(probes) {
                Ok(()) => moved.push((i, std::mem::replace(&mut t.policy, probes.clone()))),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            self.in_force = probes.clone();
            self.generation += 1;
            self.report(source, origin, ReloadResult::Applied, None);
            return Ok(());
        }
        // A policy is in force everywhere or nowhere: put the targets that
        // took it back on what they ran. One that cannot go back keeps the
        // new policy, and says so in what is reported (effective_yaml reads
        // each target's own), and the next change is applied to it whatever
        // it is.
        for (i, before) in moved {
            let t = &mut self.targets[i];
            match t.target.apply(&before) {
                Ok(()) => t.policy = before,
                Err(e) => failures.push(format!(
                    "{}: rolling back failed, the new policy stays in force there: {e}",
                    t.target.probe()
                )),
            }
        }
        let why = failures.join("; ");
        self.report(source, origin, ReloadResult::Failed, Some(&why));
        Err(why)
    }

    /// Bumped every time a new policy is put in force.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The configuration Tapio runs: the file with the policies in force,
    /// header values redacted (they often carry credentials), as YAML.
    pub fn effective_yaml(&self) -> String {
        let mut c = self.file.clone();
        c.probes.xdp.policy = self.in_force.xdp.policy.clone();
        c.probes.lsm.policy = self.in_force.lsm.policy.clone();
        c.probes.tc.policy = self.in_force.tc.policy.clone();
        // What each running probe's kernel maps hold.
        for t in &self.targets {
            let p = &t.policy;
            match t.target.probe() {
                crate::probes::xdp::NAME => c.probes.xdp.policy = p.xdp.policy.clone(),
                crate::probes::lsm::NAME => c.probes.lsm.policy = p.lsm.policy.clone(),
                crate::probes::tc::NAME => c.probes.tc.policy = p.tc.policy.clone(),
                _ => {}
            }
        }
        let ex = &mut c.exporters;
        for o in [ex.otlp.as_mut(), ex.otlphttp.as_mut()]
            .into_iter()
            .flatten()
        {
            redact(&mut o.headers);
        }
        if let Some(h) = c
            .extensions
            .opamp
            .as_mut()
            .and_then(|o| o.server.http.as_mut())
        {
            redact(&mut h.headers);
        }
        serde_yaml_ng::to_string(&c).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Report a policy that never got as far as parsing (an unreadable
    /// file).
    pub fn reject(&self, source: ReloadSource, origin: &str, result: ReloadResult, why: &str) {
        self.report(source, origin, result, Some(why));
    }

    fn report(&self, source: ReloadSource, origin: &str, result: ReloadResult, why: Option<&str>) {
        self.telemetry.reloads.count(source, result);
        match why {
            Some(w) => tracing::error!(
                origin,
                source = source.name(),
                result = result.name(),
                "policy reload: {w}; the previous policy stays in force"
            ),
            None => tracing::info!(origin, source = source.name(), "policy reloaded"),
        }
        let now = crate::clock::unix_ns();
        // A clone gets buffers of its own: reloads are rare, and `&self`
        // is all the callers hold.
        let mut emitter = self.emitter.clone();
        crate::encode_log!(emitter, |enc| crate::telemetry::config_reload(
            enc, source, origin, result, why, now
        ));
    }
}

fn redact(h: &mut std::collections::BTreeMap<String, String>) {
    for v in h.values_mut() {
        *v = "<redacted>".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it was asked to enforce; fails on demand.
    struct Recorder {
        applied: Arc<Mutex<Vec<usize>>>,
        fail: Arc<Mutex<bool>>,
    }

    impl PolicyTarget for Recorder {
        fn probe(&self) -> &'static str {
            "lsm"
        }
        fn apply(&mut self, p: &Probes) -> Result<(), PolicyError> {
            if *self.fail.lock().unwrap() {
                return Err(PolicyError::Unsupported {
                    probe: "lsm",
                    message: "map full".into(),
                });
            }
            self.applied.lock().unwrap().push(p.lsm.policy.rules.len());
            Ok(())
        }
    }

    /// A target for `probe` that refuses the policies whose lsm rule
    /// count is in `refuse`, and records the ones it took.
    struct Picky {
        probe: &'static str,
        taken: Arc<Mutex<Vec<usize>>>,
        refuse: Arc<Mutex<Vec<usize>>>,
    }

    impl PolicyTarget for Picky {
        fn probe(&self) -> &'static str {
            self.probe
        }
        fn apply(&mut self, p: &Probes) -> Result<(), PolicyError> {
            let n = p.lsm.policy.rules.len();
            if self.refuse.lock().unwrap().contains(&n) {
                return Err(PolicyError::Unsupported {
                    probe: self.probe,
                    message: format!("refuses {n} rules"),
                });
            }
            self.taken.lock().unwrap().push(n);
            Ok(())
        }
    }

    type Switches = (Arc<Mutex<Vec<usize>>>, Arc<Mutex<Vec<usize>>>);

    /// Policies over an lsm and an xdp target; each one's (taken, refuse).
    fn two_targets() -> (Policies, Switches, Switches) {
        let t = Telemetry::new(0);
        let ex = crate::export::Emitter::detached(t.clone());
        let mut sw = Vec::new();
        let targets: Vec<Box<dyn PolicyTarget>> = ["lsm", "xdp"]
            .into_iter()
            .map(|probe| {
                let s: Switches = Default::default();
                sw.push(s.clone());
                Box::new(Picky {
                    probe,
                    taken: s.0,
                    refuse: s.1,
                }) as Box<dyn PolicyTarget>
            })
            .collect();
        let p = Policies::new(parse(&rules(1)).unwrap(), targets, t, ex);
        let xdp = sw.pop().unwrap();
        let lsm = sw.pop().unwrap();
        (p, lsm, xdp)
    }

    #[test]
    fn a_policy_one_target_refuses_is_rolled_back_on_the_others() {
        let (mut p, lsm, xdp) = two_targets();
        xdp.1.lock().unwrap().push(3);
        let why = p.remote_received("opamp", Some(&rules(3))).unwrap_err();
        assert_eq!(why, "xdp: refuses 3 rules");
        // lsm took the new policy and was put back on the old one, so the
        // kernel runs what is reported.
        assert_eq!(*lsm.0.lock().unwrap(), [3, 1]);
        assert!(xdp.0.lock().unwrap().is_empty());
        let y = p.effective_yaml();
        assert!(y.contains("name: r0") && !y.contains("name: r2"), "{y}");
        assert_eq!(p.generation(), 0);
        // Once xdp accepts it, the same policy goes in everywhere.
        xdp.1.lock().unwrap().clear();
        p.remote_received("opamp", Some(&rules(3))).unwrap();
        assert_eq!(*lsm.0.lock().unwrap(), [3, 1, 3]);
        assert_eq!(*xdp.0.lock().unwrap(), [3]);
    }

    #[test]
    fn a_target_that_cannot_roll_back_is_reported_as_it_is_and_a_revert_reaches_it() {
        let (mut p, lsm, xdp) = two_targets();
        xdp.1.lock().unwrap().push(3);
        // lsm takes 3 rules, then refuses to go back to 1.
        lsm.1.lock().unwrap().push(1);
        let why = p.remote_received("opamp", Some(&rules(3))).unwrap_err();
        assert!(why.contains("xdp: refuses 3 rules"), "{why}");
        assert!(why.contains("lsm: rolling back failed"), "{why}");
        assert_eq!(*lsm.0.lock().unwrap(), [3]);
        // What is reported is what lsm's kernel maps hold: 3 rules.
        let y = p.effective_yaml();
        assert!(y.contains("name: r2"), "{y}");
        // Back to the file's policy (1 rule): lsm must get it, although it
        // is the policy last put in force everywhere.
        lsm.1.lock().unwrap().clear();
        p.remote_received("opamp", None).unwrap();
        assert_eq!(*lsm.0.lock().unwrap(), [3, 1]);
        assert!(xdp.0.lock().unwrap().is_empty(), "xdp never left it");
        let y = p.effective_yaml();
        assert!(y.contains("name: r0") && !y.contains("name: r2"), "{y}");
    }

    fn rules(n: usize) -> String {
        let mut s = String::from("probes:\n  lsm:\n    policy:\n      rules:\n");
        for i in 0..n {
            s += &format!(
                "        - {{ name: r{i}, hook: connect, action: deny, match: {{ port: {} }} }}\n",
                1000 + i
            );
        }
        if n == 0 {
            s = "probes:\n  lsm:\n    policy: { rules: [] }\n".into();
        }
        s
    }

    /// The policies, what the target applied, its failure switch, the
    /// telemetry.
    type Setup = (
        Policies,
        Arc<Mutex<Vec<usize>>>,
        Arc<Mutex<bool>>,
        Arc<Telemetry>,
    );

    fn setup() -> Setup {
        let applied = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(Mutex::new(false));
        let t = Telemetry::new(0);
        let ex = crate::export::Emitter::detached(t.clone());
        let p = Policies::new(
            parse(&rules(1)).unwrap(),
            vec![Box::new(Recorder {
                applied: applied.clone(),
                fail: fail.clone(),
            })],
            t.clone(),
            ex,
        );
        (p, applied, fail, t)
    }

    #[test]
    fn remote_wins_over_the_file_until_an_empty_remote_config() {
        let (mut p, applied, _, t) = setup();
        p.remote_received("opamp", Some(&rules(3))).unwrap();
        assert_eq!(*applied.lock().unwrap(), [3]);
        // A file edit while the remote policy is in force changes nothing.
        p.file_changed("f.yaml", &rules(2));
        assert_eq!(*applied.lock().unwrap(), [3]);
        assert!(p.effective_yaml().contains("name: r2"));
        // Back to the file's (latest) policy.
        p.remote_received("opamp", None).unwrap();
        assert_eq!(*applied.lock().unwrap(), [3, 2]);
        assert_eq!(p.generation(), 2);
        assert_eq!(t.reloads.get(ReloadSource::Opamp, ReloadResult::Applied), 2);
        // And the file is live again.
        p.file_changed("f.yaml", &rules(0));
        assert_eq!(*applied.lock().unwrap(), [3, 2, 0]);
        assert_eq!(t.reloads.get(ReloadSource::File, ReloadResult::Applied), 1);
    }

    #[test]
    fn bad_remote_policy_keeps_the_last_good_one_and_says_why() {
        let (mut p, applied, fail, t) = setup();
        let why = p
            .remote_received(
                "opamp",
                Some("probes:\n  lsm:\n    policy:\n      rulez: []\n"),
            )
            .unwrap_err();
        assert_eq!(
            why,
            "probes.lsm.policy.rulez (line 4): unknown field `rulez`, expected `rules`"
        );
        assert!(applied.lock().unwrap().is_empty());
        assert_eq!(
            t.reloads.get(ReloadSource::Opamp, ReloadResult::Rejected),
            1
        );
        // A kernel refusal: reported as failed, nothing counted as in force.
        *fail.lock().unwrap() = true;
        let why = p.remote_received("opamp", Some(&rules(2))).unwrap_err();
        assert_eq!(why, "lsm: map full");
        assert_eq!(t.reloads.get(ReloadSource::Opamp, ReloadResult::Failed), 1);
        assert_eq!(p.generation(), 0);
        assert!(p.effective_yaml().contains("name: r0"));
        assert!(!p.effective_yaml().contains("name: r1"));
    }

    #[test]
    fn effective_config_redacts_headers() {
        let (mut p, ..) = setup();
        p.file_changed(
            "f.yaml",
            "exporters:\n  otlp:\n    endpoint: http://127.0.0.1:4317\n    headers: { authorization: secret }\n",
        );
        let y = p.effective_yaml();
        assert!(y.contains("authorization: <redacted>"), "{y}");
        assert!(!y.contains("secret"));
    }
}
