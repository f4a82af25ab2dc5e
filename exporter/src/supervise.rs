//! Every long-running task Tapio starts is watched: a task that panics, or
//! returns before shutdown was asked for, is a failure. A failure is
//! logged, exported (the probe's `tapio.probe.attached` drops to 0 and a
//! `tapio.task.failed` log record goes out with the final flush) and makes
//! `tapio run` shut down and exit non-zero.
//!
//! Exit rather than restart the task: a reader's handler and ring buffer
//! moved into the task and are gone with it, and a panic may have left
//! shared state (caches, breaker state) half-updated. Restarting the whole
//! process is what systemd (`Restart=on-failure`) and Kubernetes already do
//! well, from a clean state, and with the crash counted where operators
//! look for it.
//!
//! Locks shared between tasks are taken with [`lock`], which recovers a
//! poisoned guard: the panic that poisoned it is a task failure reported
//! here, so the remaining tasks (the final metrics flush, other probes'
//! producers, the breakers) must keep working rather than silently skip.

use crate::otel::{
    names::{attr, event},
    wire::{Encode, RecordWriter, Severity},
};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A watched task: its kind, and the probe it belongs to if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// e.g. `reader`, `reloader`, `prometheus`, `breakers`, `opamp`,
    /// `exporter.logs`.
    pub kind: &'static str,
    pub probe: Option<&'static str>,
}

impl Task {
    pub const fn new(kind: &'static str) -> Self {
        Self { kind, probe: None }
    }

    pub const fn of_probe(kind: &'static str, probe: &'static str) -> Self {
        Self {
            kind,
            probe: Some(probe),
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.probe {
            Some(p) => write!(f, "{}:{p}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}

/// A task that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub task: Task,
    pub why: String,
}

/// Hands out watched spawns; failures arrive at the [`Failures`] made with
/// it. Tasks that end after `stop` are done, not failed.
#[derive(Clone)]
pub struct Watch {
    tx: mpsc::UnboundedSender<Failure>,
    stop: CancellationToken,
}

/// The receiving end of a [`Watch`].
pub struct Failures(mpsc::UnboundedReceiver<Failure>);

impl Failures {
    /// The next failure. Never resolves while no task failed (the
    /// [`Watch`] held by the caller keeps the channel open).
    pub async fn next(&mut self) -> Option<Failure> {
        self.0.recv().await
    }

    /// Failures reported so far, without waiting.
    pub fn drain(&mut self) -> Vec<Failure> {
        let mut v = Vec::new();
        while let Ok(f) = self.0.try_recv() {
            v.push(f);
        }
        v
    }
}

impl Watch {
    pub fn new(stop: CancellationToken) -> (Self, Failures) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx, stop }, Failures(rx))
    }

    /// Report a failure found outside a task's own result (a panic caught
    /// in a request handler, a server thread gone).
    pub fn report(&self, task: Task, why: impl Into<String>) {
        let _ = self.tx.send(Failure {
            task,
            why: why.into(),
        });
    }

    /// Spawn `fut` now; the returned future completes when it does, after
    /// reporting a panic, an error, or an end before shutdown. For
    /// `JoinSet`s that want their own handle.
    pub fn watched<F, E>(&self, task: Task, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let inner = tokio::spawn(fut);
        let me = self.clone();
        async move {
            let why = match inner.await {
                Ok(Ok(())) if me.stop.is_cancelled() => return,
                Ok(Ok(())) => "ended before shutdown".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
                // Aborted: only shutdown paths abort.
                Err(_) => return,
            };
            me.report(task, why);
        }
    }

    /// [`Watch::watched`], spawned.
    pub fn spawn<F, E>(&self, task: Task, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        tokio::spawn(self.watched(task, fut))
    }

    /// [`Watch::spawn`] for tasks that cannot fail other than by panicking
    /// or ending early.
    pub fn spawn_infallible<F>(&self, task: Task, fut: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(task, async move {
            fut.await;
            Ok::<(), std::convert::Infallible>(())
        })
    }
}

/// The `tapio.task.failed` record of `f`.
pub fn failure_log(enc: &mut impl Encode, f: &Failure, now: u64) {
    let mut w = enc.log(now, Severity::Error);
    w.body(format_args!("{}: {}", f.task, f.why));
    w.str(attr::TAPIO_TASK, f.task.kind);
    if let Some(p) = f.task.probe {
        w.str(attr::TAPIO_PROBE, p);
    }
    w.finish_log(now, event::TAPIO_TASK_FAILED);
}

/// The text a panic carried (`panic!("…")` payloads are `&str` or
/// `String`).
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

/// Lock `m`, recovering the guard if a panicking holder poisoned it (see
/// the module doc: that panic is reported as a task failure already).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| {
        // Clear the flag so this is logged once per poisoning, not per lock.
        m.clear_poison();
        tracing::warn!("a lock was poisoned by a panicking task; its holder's state is kept");
        p.into_inner()
    })
}

/// Test hook, not configuration: `TAPIO_TEST_FAULT=<task>` (e.g.
/// `reader:process`, `producer`) makes that task panic on its first unit
/// of work, so the integration tests can check that a failed task is
/// reported and ends Tapio with a failure status. Read once; unset, it
/// costs one comparison per injection point at start.
pub fn fault_injected(task: &str) -> bool {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FAULT
        .get_or_init(|| std::env::var("TAPIO_TEST_FAULT").ok())
        .as_deref()
        == Some(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn failure_log_matches_the_old_mapping() {
        use crate::otel::{
            kv_str,
            wire::{Encoder, RECORD_FIELD},
        };
        use opentelemetry_proto::tonic::{
            common::v1::{any_value::Value, AnyValue},
            logs::v1::LogRecord,
        };
        for probe in [None, Some("security")] {
            let f = Failure {
                task: Task {
                    kind: "reader",
                    probe,
                },
                why: "panicked: boom".into(),
            };
            let mut enc = Encoder::default();
            failure_log(&mut enc, &f, 99);
            // The record the opentelemetry-proto builder made.
            let mut attributes = vec![kv_str(attr::TAPIO_TASK, f.task.kind)];
            if let Some(p) = probe {
                attributes.push(kv_str(attr::TAPIO_PROBE, p));
            }
            let old = LogRecord {
                time_unix_nano: 99,
                observed_time_unix_nano: 99,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: Some(AnyValue {
                    value: Some(Value::StringValue(format!("{}: {}", f.task, f.why))),
                }),
                attributes,
                event_name: event::TAPIO_TASK_FAILED.into(),
                ..Default::default()
            };
            let mut want = Vec::new();
            prost::encoding::message::encode(RECORD_FIELD, &old, &mut want);
            assert_eq!(enc.record(), &want[..], "{probe:?}");
        }
    }

    #[tokio::test]
    async fn panics_errors_and_early_ends_are_failures_ends_after_stop_are_not() {
        let stop = CancellationToken::new();
        let (w, mut f) = Watch::new(stop.clone());
        w.spawn_infallible(Task::of_probe("reader", "dns"), async { panic!("boom") })
            .await
            .unwrap();
        w.spawn(Task::new("reloader"), async { Err::<(), _>("disk gone") })
            .await
            .unwrap();
        w.spawn_infallible(Task::new("opamp"), async {})
            .await
            .unwrap();
        stop.cancel();
        w.spawn_infallible(Task::new("breakers"), async {})
            .await
            .unwrap();
        let got = f.drain();
        assert_eq!(
            got,
            [
                Failure {
                    task: Task::of_probe("reader", "dns"),
                    why: "panicked: boom".into()
                },
                Failure {
                    task: Task::new("reloader"),
                    why: "disk gone".into()
                },
                Failure {
                    task: Task::new("opamp"),
                    why: "ended before shutdown".into()
                },
            ]
        );
        assert_eq!(got[0].task.to_string(), "reader:dns");
    }

    #[test]
    fn a_poisoned_lock_still_gives_its_guard() {
        let m = Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("holder dies");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(2);
        assert_eq!(*lock(&m), [1, 2]);
        assert!(!m.is_poisoned());
    }
}
