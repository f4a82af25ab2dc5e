//! A bounded FIFO that drops its oldest records when full, counting them.
//! The export path's memory is bounded by these queues' capacities.

use crate::telemetry::{DropReason, Signal, SignalStats, Telemetry};
use std::{
    collections::VecDeque,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
};
use tokio::sync::Notify;

pub struct BoundedQueue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    /// A full batch is ready: wake the exporter before its timer.
    pub batch_ready: Notify,
    batch_size: usize,
    telemetry: Arc<Telemetry>,
    signal: Signal,
}

impl<T> BoundedQueue<T> {
    pub fn new(
        capacity: usize,
        batch_size: usize,
        telemetry: Arc<Telemetry>,
        signal: Signal,
    ) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            batch_ready: Notify::new(),
            batch_size: batch_size.max(1),
            telemetry,
            signal,
        }
    }

    fn stats(&self) -> &SignalStats {
        self.telemetry.signal(self.signal)
    }

    /// Append, dropping (and counting) the oldest record when full: under
    /// back-pressure the newest data is the most useful.
    pub fn push(&self, item: T) {
        let len = {
            let mut q = crate::supervise::lock(&self.items);
            if q.len() >= self.capacity {
                q.pop_front();
                self.stats().drop_records(DropReason::QueueFull, 1);
            }
            q.push_back(item);
            q.len()
        };
        self.stats().queue_len.store(len as u64, Relaxed);
        if len == self.batch_size {
            self.batch_ready.notify_one();
        }
    }

    /// Take up to `max` records, oldest first.
    pub fn take(&self, max: usize) -> Vec<T> {
        let mut q = crate::supervise::lock(&self.items);
        let n = q.len().min(max);
        let out: Vec<T> = q.drain(..n).collect();
        self.stats().queue_len.store(q.len() as u64, Relaxed);
        out
    }

    pub fn len(&self) -> usize {
        crate::supervise::lock(&self.items).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_and_counts() {
        let t = Telemetry::new(0);
        let q = BoundedQueue::new(3, 2, t.clone(), Signal::Logs);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(t.signal(Signal::Logs).dropped(DropReason::QueueFull), 2);
        assert_eq!(q.take(2), vec![2, 3]);
        assert_eq!(t.signal(Signal::Logs).queue_len.load(Relaxed), 1);
        assert_eq!(q.take(10), vec![4]);
        assert!(q.is_empty());
    }
}
