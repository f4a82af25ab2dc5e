//! Reads one probe's ring buffer asynchronously: the ring buffer's fd goes
//! into tokio's `AsyncFd`, each wake drains every record, and on stop the
//! last records are drained before returning.

use aya::maps::{MapData, RingBuf};
use tokio::io::{unix::AsyncFd, Interest};
use tokio_util::sync::CancellationToken;

/// Turns a probe's raw records into signals.
pub trait RecordHandler: Send + 'static {
    /// Called once per wake, before that wake's records (refresh clocks).
    fn on_wake(&mut self) {}
    /// One record, as the kernel wrote it.
    fn handle(&mut self, record: &[u8]);
    /// Called once per wake, after that wake's records (queue what the
    /// handler held back, see [`crate::export::Emitter::stashing`]).
    fn end_wake(&mut self) {}
    /// An error to take as the ring buffer's own, before reading a wake's
    /// records (a kernel wakeup or the interval's). Only the `TAPIO_TEST_FAULT=ringbuf:<probe>` hook returns
    /// one, to prove a reader whose ring buffer errors is reported.
    fn injected_read_error(&mut self) -> Option<std::io::Error> {
        None
    }
}

/// Read `rb` until `stop`, then drain it and return. Besides the kernel's
/// wakeups (batched, see `tapio_submit`), drain every `interval`, which
/// bounds how long a record can wait when the kernel does not wake us.
pub async fn run<H: RecordHandler>(
    rb: RingBuf<MapData>,
    mut handler: H,
    interval: std::time::Duration,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns
    // the RingBuf, and `as_raw_fd` always returns that same fd.
    let mut fd = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE) }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard?;
                if let Some(e) = handler.injected_read_error() {
                    return Err(e);
                }
                handler.on_wake();
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    handler.handle(&item);
                }
                handler.end_wake();
                guard.clear_ready();
            }
            _ = tick.tick() => {
                if let Some(e) = handler.injected_read_error() {
                    return Err(e);
                }
                handler.on_wake();
                let rb = fd.get_mut();
                while let Some(item) = rb.next() {
                    handler.handle(&item);
                }
                handler.end_wake();
            }
            _ = stop.cancelled() => {
                handler.on_wake();
                let rb = fd.get_mut();
                while let Some(item) = rb.next() {
                    handler.handle(&item);
                }
                handler.end_wake();
                return Ok(());
            }
        }
    }
}
