//! Live policy. Tapio watches the directory of its config file and, when
//! the file changes, parses and validates it exactly as at start; only a
//! valid file reaches the probes, so a broken edit leaves the policy in
//! force untouched and says why (a log line, a `tapio.config.reload` log
//! record and `tapio.config.reloads{tapio.reload.result=rejected}`).
//!
//! The directory, not the file, is watched: a Kubernetes ConfigMap volume
//! swaps its content by renaming a `..data` symlink, and editors write a
//! new file and rename it over the old one; an inotify watch on the old
//! inode would miss both. Every event is followed by a re-read and a
//! content comparison, so duplicate or unrelated events cost one `read`.
//!
//! Only the `policy` sections of probes are live. Other changes are logged
//! as needing a restart and otherwise ignored.

use crate::config::{self, Config, Probes};
use crate::export::Emitter;
use crate::otel;
use crate::telemetry::{ReloadResult, Telemetry};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events closer together than this are one change (editors write in
/// several steps; ConfigMaps swap several links).
const SETTLE: Duration = Duration::from_millis(200);
/// A backstop for filesystems that do not deliver inotify events (some
/// network and overlay mounts): the file is re-read this often anyway.
const POLL: Duration = Duration::from_secs(10);

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

/// Watches one config file and feeds valid versions to the targets.
pub struct Reloader {
    path: PathBuf,
    current: Config,
    text: String,
    targets: Vec<Box<dyn PolicyTarget>>,
    telemetry: Arc<Telemetry>,
    emitter: Emitter,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        current: Config,
        targets: Vec<Box<dyn PolicyTarget>>,
        telemetry: Arc<Telemetry>,
        emitter: Emitter,
    ) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Self {
            path,
            current,
            text,
            targets,
            telemetry,
            emitter,
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

    /// Re-read the file; apply it if it changed and is valid.
    pub fn check(&mut self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            // Mid-swap (a ConfigMap between links, an editor between write
            // and rename): the next event or poll reads it again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.report(
                    ReloadResult::Rejected,
                    Some(format!("cannot read {}: {e}", self.path.display())),
                );
                return;
            }
        };
        if text == self.text {
            return;
        }
        self.text = text;
        let cfg = match config::parse(&self.text) {
            Ok(c) => c,
            Err(errs) => {
                let why = errs.to_string().trim_end().replace('\n', "; ");
                self.report(ReloadResult::Rejected, Some(why));
                return;
            }
        };
        if cfg.without_policy() != self.current.without_policy() {
            tracing::warn!(
                path = %self.path.display(),
                "settings other than probe policies changed; they take effect at the next restart"
            );
        }
        if cfg.probes.policies_equal(&self.current.probes) {
            self.current = cfg;
            return;
        }
        let mut failures = Vec::new();
        for t in &mut self.targets {
            if let Err(e) = t.apply(&cfg.probes) {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            self.current = cfg;
            self.report(ReloadResult::Applied, None);
        } else {
            // Targets that succeeded run the new policy; keep the old
            // config as "current" so the next save retries the others.
            self.report(ReloadResult::Failed, Some(failures.join("; ")));
        }
    }

    fn report(&self, result: ReloadResult, why: Option<String>) {
        self.telemetry.reloads.count(result);
        match &why {
            Some(w) => tracing::error!(
                path = %self.path.display(),
                result = result.name(),
                "policy reload: {w}; the previous policy stays in force"
            ),
            None => tracing::info!(path = %self.path.display(), "policy reloaded"),
        }
        self.emitter.log(otel::logs::config_reload(
            &self.path.display().to_string(),
            result,
            why.as_deref(),
            crate::clock::unix_ns(),
        ));
    }
}

fn watch(path: &Path, tx: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // Full means a check is already pending, which will see this
            // change too.
            let _ = tx.try_send(());
        }
    })?;
    w.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}
