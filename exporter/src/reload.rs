//! Live policy from the config file. Tapio watches the directory of its
//! config file and, when the file changes, hands the new text to
//! [`Policies`](crate::policy::Policies), which parses and validates it
//! exactly as at start; only a valid file reaches the probes, so a broken
//! edit leaves the policy in force untouched and says why.
//!
//! The directory, not the file, is watched: a Kubernetes ConfigMap volume
//! swaps its content by renaming a `..data` symlink, and editors write a
//! new file and rename it over the old one; an inotify watch on the old
//! inode would miss both. Every event is followed by a re-read and a
//! content comparison, so duplicate or unrelated events cost one `read`.
//!
//! Only the `policy` sections of probes are live. Other changes are logged
//! as needing a restart and otherwise ignored.

use crate::policy::Policies;
use crate::telemetry::{ReloadResult, ReloadSource};
use notify::{RecursiveMode, Watcher};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events closer together than this are one change (editors write in
/// several steps; ConfigMaps swap several links).
const SETTLE: Duration = Duration::from_millis(200);
/// A backstop for filesystems that do not deliver inotify events (some
/// network and overlay mounts): the file is re-read this often anyway.
const POLL: Duration = Duration::from_secs(10);

/// Watches one config file and feeds its changes to the policies.
pub struct Reloader {
    path: PathBuf,
    text: String,
    policies: Arc<Mutex<Policies>>,
    /// The text and reason of the last refusal for permissions, so a file
    /// that stays untrusted is refused once, not at every poll.
    refused: Option<(String, String)>,
}

impl Reloader {
    pub fn new(path: PathBuf, policies: Arc<Mutex<Policies>>) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // The file may have changed since it was loaded at start (the
        // probes load in between): a text that is not what is in force
        // must not become the baseline, or that change is never applied.
        let loaded = crate::config::parse(&text)
            .is_ok_and(|c| crate::supervise::lock(&policies).file_is(&c));
        let text = if loaded { text } else { String::new() };
        Self {
            path,
            text,
            policies,
            refused: None,
        }
    }

    /// Watch until `stop`. A watch that cannot be set up degrades to
    /// polling, with a warning.
    pub async fn run(mut self, stop: CancellationToken) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let _watcher = match watch(&self.path, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    "cannot watch the config directory ({e}); re-reading every {}s",
                    POLL.as_secs()
                );
                None
            }
        };
        let mut poll = tokio::time::interval(POLL);
        poll.tick().await;
        // A change made before the watch was set up sent no event.
        self.check();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {}
            }
            self.check();
        }
    }

    /// Re-read the file; hand it on if it changed.
    pub fn check(&mut self) {
        let path = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Mid-swap (a ConfigMap between links, an editor between write
            // and rename): the next event or poll reads it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                let p = crate::supervise::lock(&self.policies);
                p.reject(
                    ReloadSource::File,
                    &path,
                    ReloadResult::Rejected,
                    &format!("cannot read {path}: {e}"),
                );
                return;
            }
        };
        // The file may have become writable by others (or been swapped for
        // a link into /tmp) since start: its text is then not the admin's.
        if let Err(why) = crate::config::trust::check(&self.path) {
            let seen = (text, why);
            if self.refused.as_ref() != Some(&seen) {
                let p = crate::supervise::lock(&self.policies);
                p.reject(
                    ReloadSource::File,
                    &path,
                    ReloadResult::Rejected,
                    &format!("{path} refused: {}", seen.1),
                );
                self.refused = Some(seen);
            }
            return;
        }
        self.refused = None;
        if text == self.text {
            return;
        }
        // At start an empty file means "all defaults"; mid-run it is far more
        // likely a writer that truncated the file and has not written yet
        // (`cat > tapio.yaml`), and taking it would lift every rule.
        if is_blank(&text) {
            let p = crate::supervise::lock(&self.policies);
            p.reject(
                ReloadSource::File,
                &path,
                ReloadResult::Rejected,
                "the file is empty (truncated, a write in progress?); to lift every rule, write \
                 `rules: []`",
            );
            self.text = text;
            return;
        }
        self.text = text;
        let mut p = crate::supervise::lock(&self.policies);
        p.file_changed(&path, &self.text);
    }
}

/// Empty, or only blank lines and comments: what `config::parse` takes as
/// the default configuration.
fn is_blank(text: &str) -> bool {
    text.lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
}

fn watch(path: &Path, tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    let path = path.to_path_buf();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|e| concerns(&e, &path, &name)) {
            // Full means a check is already pending, which will see this
            // change too.
            let _ = tx.try_send(());
        }
    })?;
    w.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}

/// Whether an event in the config's directory can change what the config
/// path reads: an event on the file itself, on the file it links to (an
/// edit of the target is an edit of the config), on a `..`-name (a
/// ConfigMap swaps `..data` and its timestamped directories, never the
/// file's own link), or one without a path (the inotify queue overflowed:
/// anything may have changed). Writes to the directory's other files wake
/// nobody: a config beside a busy log or state file would otherwise cost a
/// wakeup and a re-read per write (measured: 0.77 µs of Tapio CPU per
/// write); they cost a `readlink` here instead.
fn concerns(event: &notify::Event, path: &Path, name: &OsStr) -> bool {
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            p.file_name().is_none_or(|n| {
                n == name
                    || n.as_encoded_bytes().starts_with(b"..")
                    || std::fs::read_link(path).is_ok_and(|t| t.file_name() == Some(n))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Probes};
    use crate::policy::{PolicyError, PolicyTarget};
    use crate::telemetry::Telemetry;
    use std::os::unix::fs::PermissionsExt;

    /// Records the lsm rule count of every policy put in force.
    struct Recorder(Arc<Mutex<Vec<usize>>>);

    impl PolicyTarget for Recorder {
        fn probe(&self) -> &'static str {
            "lsm"
        }
        fn apply(&mut self, p: &Probes) -> Result<(), PolicyError> {
            self.0.lock().expect("lock").push(p.lsm.policy.rules.len());
            Ok(())
        }
    }

    #[test]
    fn only_the_config_its_target_and_configmap_swaps_concern_the_watch() {
        use notify::event::{CreateKind, EventKind, ModifyKind};
        let d = tempfile::tempdir().expect("tempdir");
        let cfg = d.path().join("tapio.yaml");
        std::fs::write(&cfg, "probes: {}\n").expect("write");
        let name = OsStr::new("tapio.yaml");
        let ev = |n: &str| {
            notify::Event::new(EventKind::Modify(ModifyKind::Any)).add_path(d.path().join(n))
        };
        assert!(concerns(&ev("tapio.yaml"), &cfg, name));
        assert!(concerns(&ev("..data"), &cfg, name));
        assert!(concerns(&ev("..2026_12_06_00_00_00.1"), &cfg, name));
        assert!(concerns(&notify::Event::new(EventKind::Any), &cfg, name));
        assert!(!concerns(&ev("agent.log"), &cfg, name));
        assert!(!concerns(&ev("tapio.yaml.bak"), &cfg, name));
        assert!(!concerns(&ev("prod.yaml"), &cfg, name));
        let create = notify::Event::new(EventKind::Create(CreateKind::File))
            .add_path(d.path().join("x"))
            .add_path(cfg.clone());
        assert!(concerns(&create, &cfg, name));
        // The config a link to a file beside it: that file's edits count.
        std::fs::remove_file(&cfg).expect("rm");
        std::os::unix::fs::symlink("prod.yaml", &cfg).expect("link");
        assert!(concerns(&ev("prod.yaml"), &cfg, name));
        assert!(!concerns(&ev("agent.log"), &cfg, name));
    }

    #[tokio::test]
    async fn writes_beside_the_config_wake_nothing_and_the_config_does() {
        let d = tempfile::tempdir().expect("tempdir");
        let cfg = d.path().join("tapio.yaml");
        std::fs::write(&cfg, "probes: {}\n").expect("write");
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let _w = watch(&cfg, tx).expect("watch");
        let log = d.path().join("agent.log");
        for i in 0..100 {
            std::fs::write(&log, format!("line {i}\n")).expect("write");
        }
        // Time for the notify thread to hand over the log's events: had
        // the filter let one through, the channel would hold it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            rx.try_recv().is_err(),
            "a write to another file woke the reload task"
        );
        std::fs::write(&cfg, "probes: {}\n# edited\n").expect("write");
        let woke = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(woke, Ok(Some(()))),
            "a write to the config did not wake it"
        );
        // Now a link to a file beside it: an edit of that file wakes it.
        std::fs::write(d.path().join("prod.yaml"), "probes: {}\n").expect("write");
        std::fs::remove_file(&cfg).expect("rm");
        std::os::unix::fs::symlink("prod.yaml", &cfg).expect("link");
        tokio::time::sleep(Duration::from_millis(300)).await;
        while rx.try_recv().is_ok() {}
        std::fs::write(d.path().join("prod.yaml"), "probes: {}\n# edited\n").expect("write");
        let woke = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            matches!(woke, Ok(Some(()))),
            "a write to the config's target did not wake it"
        );
    }

    fn rules(n: usize) -> String {
        let mut s = String::from("probes:\n  lsm:\n    policy:\n      rules:\n");
        for i in 0..n {
            s += &format!(
                "        - {{ name: r{i}, hook: connect, action: deny, match: {{ port: {} }} }}\n",
                1000 + i
            );
        }
        s
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_file_that_became_writable_by_others_is_not_applied_until_fixed() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("tapio.yaml");
        std::fs::write(&f, rules(1)).expect("write");
        chmod(&f, 0o644);
        let t = Telemetry::new(0);
        let ex = crate::export::Emitter::detached(t.clone());
        let applied: Arc<Mutex<Vec<usize>>> = Default::default();
        let target = Box::new(Recorder(applied.clone())) as Box<dyn PolicyTarget>;
        let policies = Policies::new(parse(&rules(1)).expect("valid"), vec![target], t, ex);
        let mut r = Reloader::new(f.clone(), Arc::new(Mutex::new(policies)));
        std::fs::write(&f, rules(2)).expect("write");
        chmod(&f, 0o666);
        r.check();
        r.check();
        assert!(
            applied.lock().expect("lock").is_empty(),
            "untrusted text applied"
        );
        assert!(r
            .refused
            .as_ref()
            .is_some_and(|(_, why)| why.contains("world-writable")));
        chmod(&f, 0o644);
        r.check();
        assert_eq!(*applied.lock().expect("lock"), [2]);
        assert!(r.refused.is_none());
    }

    #[test]
    fn a_change_between_the_load_at_start_and_the_watch_is_applied() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("tapio.yaml");
        // Loaded at start with 1 rule; the file says 2 by the time the
        // reloader starts.
        std::fs::write(&f, rules(2)).expect("write");
        let t = Telemetry::new(0);
        let ex = crate::export::Emitter::detached(t.clone());
        let applied: Arc<Mutex<Vec<usize>>> = Default::default();
        let target = Box::new(Recorder(applied.clone())) as Box<dyn PolicyTarget>;
        let policies = Policies::new(parse(&rules(1)).expect("valid"), vec![target], t, ex);
        let mut r = Reloader::new(f.clone(), Arc::new(Mutex::new(policies)));
        r.check();
        assert_eq!(*applied.lock().expect("lock"), [2]);
    }

    #[test]
    fn a_truncated_file_does_not_lift_the_policy_and_its_completion_applies() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("tapio.yaml");
        std::fs::write(&f, rules(1)).expect("write");
        let t = Telemetry::new(0);
        let ex = crate::export::Emitter::detached(t.clone());
        let applied: Arc<Mutex<Vec<usize>>> = Default::default();
        let target = Box::new(Recorder(applied.clone())) as Box<dyn PolicyTarget>;
        let policies = Policies::new(parse(&rules(1)).expect("valid"), vec![target], t, ex);
        let mut r = Reloader::new(f.clone(), Arc::new(Mutex::new(policies)));
        for blank in ["", "\n# comment only\n"] {
            std::fs::write(&f, blank).expect("truncate");
            r.check();
            assert!(
                applied.lock().expect("lock").is_empty(),
                "{blank:?} applied"
            );
        }
        std::fs::write(&f, rules(3)).expect("write");
        r.check();
        assert_eq!(*applied.lock().expect("lock"), [3]);
        // Explicitly no rules is a policy like any other.
        std::fs::write(&f, "probes:\n  lsm:\n    policy:\n      rules: []\n").expect("write");
        r.check();
        assert_eq!(*applied.lock().expect("lock"), [3, 0]);
    }
}
