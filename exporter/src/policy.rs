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
use crate::otel;
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

/// What the running probes enforce, and where it came from.
pub struct Policies {
    /// The config file as last read validly (or the defaults without one).
    file: Config,
    /// The remote document's probes, while a remote policy is in force.
    remote: Option<Probes>,
    /// The policies the probes run now.
    in_force: Probes,
    /// +1 every time a new policy is put in force.
    generation: u64,
    targets: Vec<Box<dyn PolicyTarget>>,
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
        if probes.policies_equal(&self.in_force) {
            return Ok(());
        }
        let mut failures = Vec::new();
        for t in &mut self.targets {
            if let Err(e) = t.apply(probes) {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            self.in_force = probes.clone();
            self.generation += 1;
            self.report(source, origin, ReloadResult::Applied, None);
            Ok(())
        } else {
            // Targets that succeeded run the new policy; keep the old one
            // as "in force" so the next change retries the others.
            let why = failures.join("; ");
            self.report(source, origin, ReloadResult::Failed, Some(&why));
            Err(why)
        }
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
        self.emitter.log(otel::logs::config_reload(
            source,
            origin,
            result,
            why,
            crate::clock::unix_ns(),
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
