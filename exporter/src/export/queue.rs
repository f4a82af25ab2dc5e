//! A bounded FIFO that drops its oldest records when full, counting them.
//! The export path's memory is bounded by these queues' capacities.

use crate::otel::wire::field_len;
use crate::telemetry::{DropReason, Signal, SignalStats, Source, SourceCounts, Telemetry};
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

/// Records already encoded as protobuf (`log_records`/`spans` fields), in
/// batch-sized chunks whose buffers are reused: pushing a record copies its
/// bytes and allocates nothing once the pool has warmed up. Same contract as
/// [`BoundedQueue`]: drops the oldest record when full, counting it.
pub struct EncodedQueue {
    state: Mutex<Chunks>,
    capacity: usize,
    /// Bound on the records' encoded bytes, queued and in flight
    /// ([`EncodedQueue::hold`]); unbounded unless set.
    max_bytes: usize,
    /// Most bytes a chunk (one request) opens for: a share of `max_bytes`
    /// ([`EncodedQueue::with_requests_in_flight`]), so that the requests in
    /// flight leave room in the bound for records to queue.
    chunk_bytes: usize,
    /// A full batch is ready: wake the exporter before its timer.
    pub batch_ready: Notify,
    batch_size: usize,
    /// Bytes each chunk keeps free in front of its records for the request
    /// header ([`crate::otel::wire::BatchFramer`]).
    headroom: usize,
    telemetry: Arc<Telemetry>,
    signal: Signal,
}

#[derive(Default)]
struct Chunks {
    chunks: VecDeque<Filling>,
    /// Buffers of sent or emptied chunks, for reuse.
    free: Vec<Vec<u8>>,
    /// Source tag vectors of taken chunks, for reuse.
    free_tags: Vec<Vec<u8>>,
    len: usize,
    /// Encoded bytes of the `len` records.
    bytes: usize,
    /// Encoded bytes of taken chunks whose requests are still in flight.
    held: usize,
    /// Mean bytes per record of the chunks taken lately: what a new
    /// chunk reserves for a batch.
    record_bytes: usize,
}

/// What `record_bytes` starts at, before any chunk was taken.
const FIRST_RECORD_BYTES: usize = 256;

/// A chunk in the queue: its records and, per record, its source.
struct Filling {
    chunk: Chunk,
    /// The source of every record ever written to the chunk; the live
    /// ones are the last `chunk.records` (drops take from the front).
    tags: Vec<u8>,
    /// Bytes the chunk was opened for: a record that would take it past
    /// them starts the next chunk instead. A buffer that grew by doubling
    /// to fit a batch sat in up to twice the memory its records took, and
    /// a full queue is dozens of chunks per signal.
    limit: usize,
    /// No more records go in (the next one did not fit `limit`).
    closed: bool,
}

/// Up to a batch of records: `buf[start..]`, each a length-delimited field.
pub struct Chunk {
    pub buf: Vec<u8>,
    pub start: usize,
    pub records: usize,
    /// Its records per source (set when taken).
    pub sources: SourceCounts,
}

/// Spare buffers kept beyond those in use: enough for the batch in flight
/// and the one filling, without holding a burst's worth of memory.
const SPARE_BUFFERS: usize = 4;

impl EncodedQueue {
    pub fn new(
        capacity: usize,
        batch_size: usize,
        headroom: usize,
        telemetry: Arc<Telemetry>,
        signal: Signal,
    ) -> Self {
        Self {
            state: Mutex::new(Chunks::default()),
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            chunk_bytes: usize::MAX,
            batch_ready: Notify::new(),
            batch_size: batch_size.max(1),
            headroom,
            telemetry,
            signal,
        }
    }

    /// Also bound the queue by its records' encoded bytes: a record that
    /// would take it past `max_bytes` drops the oldest ones (counted) first.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX).max(1);
        self
    }

    /// Up to `n` requests will be in flight at once, each holding its
    /// chunk's bytes in the bound until it ends: a chunk opens for at most
    /// a `2 n`-th of the bound, so those requests take at most half of it.
    /// (Without this, a batch of 2,048 records of ~650 bytes made each of
    /// four requests per signal ~1.3 MB outside an 8 MiB bound.) Call after
    /// [`EncodedQueue::with_max_bytes`].
    pub fn with_requests_in_flight(mut self, n: usize) -> Self {
        self.chunk_bytes = self.max_bytes / n.max(1).saturating_mul(2);
        self
    }

    fn hold(&self, bytes: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.held = st.held.saturating_add(bytes);
    }

    fn release(&self, bytes: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.held = st.held.saturating_sub(bytes);
    }

    fn stats(&self) -> &SignalStats {
        self.telemetry.signal(self.signal)
    }

    /// Drop the oldest records, counted, until `need` more bytes and one
    /// more record fit (or the queue is empty).
    fn make_room(&self, st: &mut Chunks, need: usize) {
        while st.len > 0
            && (st.len >= self.capacity
                || st.bytes.saturating_add(st.held).saturating_add(need) > self.max_bytes)
        {
            let from = st.drop_oldest();
            self.stats().drop_from(DropReason::QueueFull, from, 1);
        }
    }

    /// Append one encoded record (`wire::Encoder::record`) from `source`.
    pub fn push(&self, source: Source, record: &[u8]) {
        self.push_many(source, record);
    }

    /// Append one record that `write` encodes in place (for records still
    /// built as opentelemetry-proto messages).
    pub fn push_with(&self, source: Source, write: impl FnOnce(&mut Vec<u8>)) {
        let len = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            // Its size is known once written: a mean record's room will do.
            let need = st.mean_record();
            self.make_room(&mut st, need);
            self.close_if_short(&mut st, need);
            self.open_chunk(&mut st);
            let mut wrote = 0;
            if let Some(c) = st.chunks.back_mut() {
                let at = c.chunk.buf.len();
                write(&mut c.chunk.buf);
                wrote = c.chunk.buf.len() - at;
                c.chunk.records += 1;
                c.tags.push(source.0);
            }
            st.len += 1;
            st.bytes += wrote;
            st.len
        };
        self.stats().mark_used(source);
        self.stats().queue_len.store(len as u64, Relaxed);
        if len == self.batch_size {
            self.batch_ready.notify_one();
        }
    }

    /// Append records already encoded back to back (each a whole
    /// length-delimited field, as [`EncodedQueue::push`] takes one), all
    /// from `source`, under one lock: a reader hands over a wake's records
    /// at once instead of locking, counting and maybe notifying per record.
    /// The same as pushing them one by one: full queues drop their oldest
    /// record per record added, chunks close at the batch size.
    pub fn push_many(&self, source: Source, mut records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let (before, len) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let before = st.len;
            while !records.is_empty() {
                let Some(first) = field_len(records).filter(|n| *n <= records.len()) else {
                    break;
                };
                self.make_room(&mut st, first);
                self.open_chunk(&mut st);
                let free = self.capacity - st.len;
                let free_bytes = self
                    .max_bytes
                    .saturating_sub(st.bytes.saturating_add(st.held))
                    .max(first);
                let Some(c) = st.chunks.back_mut() else {
                    break;
                };
                // As many records as fit both the queue and this chunk go in
                // one copy: per record it was a memmove call (a tenth of the
                // agent's CPU under load went to memmove).
                let room = free.min(self.batch_size - c.chunk.records);
                let bytes = c.limit.saturating_sub(c.chunk.buf.len());
                let (mut span, mut k) = (0, 0);
                while k < room {
                    let Some(n) = field_len(&records[span..]).filter(|n| span + n <= records.len())
                    else {
                        break;
                    };
                    // An empty chunk takes a record of any size.
                    if span + n > bytes && (k > 0 || c.chunk.records > 0) {
                        c.closed = true;
                        break;
                    }
                    // The next one makes room first (next time round).
                    if span + n > free_bytes {
                        break;
                    }
                    span += n;
                    k += 1;
                }
                if k == 0 {
                    if c.closed {
                        continue;
                    }
                    break;
                }
                c.chunk.buf.extend_from_slice(&records[..span]);
                c.chunk.records += k;
                c.tags.extend(std::iter::repeat_n(source.0, k));
                st.len += k;
                st.bytes += span;
                records = &records[span..];
            }
            // The emitters' stashes hold only whole records they wrote.
            debug_assert!(records.is_empty(), "a partial record was stashed");
            (before, st.len)
        };
        self.stats().mark_used(source);
        self.stats().queue_len.store(len as u64, Relaxed);
        if before < self.batch_size && len >= self.batch_size {
            self.batch_ready.notify_one();
        }
    }

    /// Close the last chunk if a record of `need` bytes would take it
    /// past its limit.
    fn close_if_short(&self, st: &mut Chunks, need: usize) {
        if let Some(c) = st.chunks.back_mut() {
            if c.chunk.records > 0 && c.chunk.buf.len() + need > c.limit {
                c.closed = true;
            }
        }
    }

    /// Start a chunk when there is none or the last one is closed or
    /// holds a batch.
    fn open_chunk(&self, st: &mut Chunks) {
        let fresh = st
            .chunks
            .back()
            .is_none_or(|c| c.closed || c.chunk.records >= self.batch_size);
        if fresh {
            // A batch of mean records and an eighth more, so that a batch
            // a little over the mean still fits.
            let mean = st.mean_record();
            let limit = self.headroom.saturating_add(
                self.batch_size
                    .saturating_mul(mean + mean / 8)
                    .min(self.chunk_bytes),
            );
            // A spare sized for much bigger records than today's is let go.
            let mut buf = st
                .free
                .pop()
                .filter(|b| b.capacity() <= limit.saturating_mul(2))
                .unwrap_or_default();
            buf.clear();
            buf.reserve_exact(limit);
            buf.resize(self.headroom, 0);
            let mut tags = st.free_tags.pop().unwrap_or_default();
            tags.clear();
            st.chunks.push_back(Filling {
                chunk: Chunk {
                    buf,
                    start: self.headroom,
                    records: 0,
                    sources: SourceCounts::default(),
                },
                tags,
                limit,
                closed: false,
            });
        }
    }

    /// The oldest chunk: at most a batch of records, oldest first.
    pub fn take(&self) -> Option<Chunk> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Filling {
            mut chunk, tags, ..
        } = st.chunks.pop_front()?;
        st.len -= chunk.records;
        let bytes = chunk.buf.len() - chunk.start;
        st.bytes -= bytes;
        if let Some(mean) = bytes.checked_div(chunk.records) {
            st.record_bytes = if st.record_bytes == 0 {
                mean
            } else {
                (3 * st.record_bytes + mean) / 4
            };
        }
        chunk.sources = live_sources(&tags, chunk.records);
        if st.free_tags.len() < SPARE_BUFFERS {
            st.free_tags.push(tags);
        }
        self.stats().queue_len.store(st.len as u64, Relaxed);
        Some(chunk)
    }

    /// What the queue holds, per source (what a shutdown that cannot flush
    /// drops).
    pub fn sources(&self) -> SourceCounts {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut c = SourceCounts::default();
        for f in &st.chunks {
            let live = live_sources(&f.tags, f.chunk.records);
            for (a, b) in c.0.iter_mut().zip(live.0) {
                *a += b;
            }
        }
        c
    }

    /// Give a sent chunk's buffer back for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.free.len() < SPARE_BUFFERS {
            st.free.push(buf);
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A taken chunk's bytes, in a request now: they count against the queue's
/// byte bound until this is dropped (the request sent or given up, or its
/// task gone).
pub struct Held {
    queue: Arc<EncodedQueue>,
    bytes: usize,
}

impl Held {
    pub fn new(queue: &Arc<EncodedQueue>, bytes: usize) -> Self {
        queue.hold(bytes);
        Self {
            queue: queue.clone(),
            bytes,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.queue.release(self.bytes);
    }
}

/// The sources of the last `records` tags.
fn live_sources(tags: &[u8], records: usize) -> SourceCounts {
    let mut c = SourceCounts::default();
    for t in &tags[tags.len().saturating_sub(records)..] {
        c.add(Source(*t), 1);
    }
    c
}

impl Chunks {
    fn mean_record(&self) -> usize {
        if self.record_bytes == 0 {
            FIRST_RECORD_BYTES
        } else {
            self.record_bytes
        }
    }

    /// Drop the oldest record; returns its source.
    fn drop_oldest(&mut self) -> Source {
        let Some(f) = self.chunks.front_mut() else {
            return Source::AGENT;
        };
        let c = &mut f.chunk;
        let from = f
            .tags
            .len()
            .checked_sub(c.records)
            .and_then(|i| f.tags.get(i))
            .map_or(Source::AGENT, |t| Source(*t));
        // Every record was written whole by push_with, so the front one
        // parses; a chunk that does not is dropped whole rather than kept
        // (counted as one: it cannot happen, see above).
        match field_len(&c.buf[c.start..]) {
            Some(n) if c.records > 1 => {
                c.start += n;
                c.records -= 1;
                self.len -= 1;
                self.bytes -= n;
            }
            _ => {
                if let Some(f) = self.chunks.pop_front() {
                    self.len -= f.chunk.records;
                    self.bytes -= f.chunk.buf.len() - f.chunk.start;
                    if self.free.len() < SPARE_BUFFERS {
                        self.free.push(f.chunk.buf);
                    }
                    if self.free_tags.len() < SPARE_BUFFERS {
                        self.free_tags.push(f.tags);
                    }
                }
            }
        }
        from
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

    fn rec(n: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0x12];
        prost::encoding::encode_varint(len as u64, &mut v);
        v.extend(std::iter::repeat_n(n, len));
        v
    }

    /// Records handed over together land exactly as if pushed one by
    /// one: same chunks, same drops (counted per source), same order.
    #[test]
    fn push_many_is_push_one_by_one() {
        let recs: Vec<Vec<u8>> = (0..11u8)
            .map(|i| rec(i, 100 + usize::from(i) * 10))
            .collect();
        let drain = |q: &EncodedQueue| {
            let mut out = Vec::new();
            while let Some(c) = q.take() {
                out.push((c.buf[c.start..].to_vec(), c.records, c.sources.0));
            }
            out
        };
        let t1 = Telemetry::new(0);
        let one = EncodedQueue::new(7, 3, 2, t1.clone(), Signal::Logs);
        let t2 = Telemetry::new(0);
        let many = EncodedQueue::new(7, 3, 2, t2.clone(), Signal::Logs);
        for r in &recs[..4] {
            one.push(Source(1), r);
        }
        for r in &recs[4..] {
            one.push(Source(2), r);
        }
        many.push_many(Source(1), &recs[..4].concat());
        many.push_many(Source(2), &recs[4..].concat());
        many.push_many(Source(2), &[]);
        assert_eq!(many.len(), 7);
        let (s1, s2) = (t1.signal(Signal::Logs), t2.signal(Signal::Logs));
        assert_eq!(s2.dropped(DropReason::QueueFull), 4);
        for src in [Source(1), Source(2)] {
            assert_eq!(
                s1.dropped_from(DropReason::QueueFull, src),
                s2.dropped_from(DropReason::QueueFull, src)
            );
        }
        assert_eq!(drain(&one), drain(&many));
    }

    proptest::proptest! {
        /// The same for any queue and batch size, record sizes (short and
        /// multi-byte-varint ones) and ways of grouping them.
        #[test]
        fn push_many_is_push_one_by_one_for_any_grouping(
            capacity in 1usize..20,
            batch in 1usize..8,
            max_bytes in 200u64..4000,
            groups in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(1usize..300, 0..9)), 0..8),
        ) {
            let t1 = Telemetry::new(0);
            let one = EncodedQueue::new(capacity, batch, 2, t1.clone(), Signal::Logs)
                .with_max_bytes(max_bytes);
            let t2 = Telemetry::new(0);
            let many = EncodedQueue::new(capacity, batch, 2, t2.clone(), Signal::Logs)
                .with_max_bytes(max_bytes);
            let mut i = 0u8;
            for (src, lens) in &groups {
                let recs: Vec<Vec<u8>> = lens.iter().map(|n| { i = i.wrapping_add(1); rec(i, *n) }).collect();
                for r in &recs {
                    one.push(Source(*src), r);
                }
                many.push_many(Source(*src), &recs.concat());
            }
            proptest::prop_assert_eq!(one.len(), many.len());
            // Against the plain model: the newest records that fit both
            // bounds stay, every other one is counted dropped.
            let all: Vec<Vec<u8>> = {
                let mut j = 0u8;
                groups.iter().flat_map(|(_, lens)| lens.iter().map(|n| { j = j.wrapping_add(1); rec(j, *n) }).collect::<Vec<_>>()).collect()
            };
            let mut kept: std::collections::VecDeque<&Vec<u8>> = Default::default();
            let mut kept_bytes = 0;
            for r in &all {
                while !kept.is_empty() && (kept.len() >= capacity || kept_bytes + r.len() > max_bytes as usize) {
                    kept_bytes -= kept.pop_front().map_or(0, |k| k.len());
                }
                kept.push_back(r);
                kept_bytes += r.len();
            }
            proptest::prop_assert_eq!(many.len(), kept.len());
            proptest::prop_assert_eq!(t2.signal(Signal::Logs).dropped(DropReason::QueueFull) as usize, all.len() - kept.len());
            let expect: Vec<u8> = kept.iter().flat_map(|r| r.iter().copied()).collect();
            let (s1, s2) = (t1.signal(Signal::Logs), t2.signal(Signal::Logs));
            for src in [Source(0), Source(1), Source(2)] {
                proptest::prop_assert_eq!(
                    s1.dropped_from(DropReason::QueueFull, src),
                    s2.dropped_from(DropReason::QueueFull, src)
                );
            }
            let mut got = Vec::new();
            loop {
                match (one.take(), many.take()) {
                    (None, None) => break,
                    (Some(a), Some(b)) => {
                        proptest::prop_assert_eq!(&a.buf[a.start..], &b.buf[b.start..]);
                        got.extend_from_slice(&b.buf[b.start..]);
                        proptest::prop_assert_eq!(a.records, b.records);
                        proptest::prop_assert_eq!(a.sources.0, b.sources.0);
                    }
                    (a, b) => proptest::prop_assert!(false, "one {} many {}", a.is_some(), b.is_some()),
                }
            }
            proptest::prop_assert_eq!(got, expect);
        }
    }

    /// A chunk reserves a batch of the mean record and is not grown past
    /// that: records bigger than the mean start the next chunk (all kept,
    /// in order) instead of doubling the buffer.
    #[test]
    fn chunks_are_sized_by_the_mean_record_and_not_grown() {
        let t = Telemetry::new(0);
        let (batch, head) = (64, 5);
        let q = EncodedQueue::new(10_000, batch, head, t, Signal::Logs);
        let small: Vec<u8> = (0..batch as u8).flat_map(|i| rec(i, 297)).collect();
        // Before any is taken, a mean of 256 is assumed: batches of these
        // come out a few records short until it is learnt.
        for _ in 0..8 {
            q.push_many(Source(1), &small);
            while let Some(c) = q.take() {
                q.recycle(c.buf);
            }
        }
        // Learnt: 300 bytes a record; a chunk holds a batch of them.
        q.push_many(Source(1), &small);
        let c = q.take().unwrap();
        assert_eq!(c.records, batch);
        assert!(
            c.buf.capacity() <= head + batch * (300 + 300 / 8),
            "{}",
            c.buf.capacity()
        );
        q.recycle(c.buf);

        let big: Vec<Vec<u8>> = (0..batch as u8).map(|i| rec(i, 597)).collect();
        for r in &big {
            q.push(Source(2), r);
        }
        let mut got = Vec::new();
        while let Some(c) = q.take() {
            assert!(
                c.records < batch,
                "a chunk took a whole batch of bigger records"
            );
            assert!(
                c.buf.capacity() < head + batch * 600,
                "grew to {}",
                c.buf.capacity()
            );
            got.extend_from_slice(&c.buf[c.start..]);
        }
        assert_eq!(got, big.concat());
    }

    /// The byte bound drops the oldest records (counted) for a new one
    /// that would pass it; a record bigger than the bound is kept alone.
    #[test]
    fn encoded_queue_bounds_its_bytes() {
        let t = Telemetry::new(0);
        let q = EncodedQueue::new(1000, 4, 2, t.clone(), Signal::Logs).with_max_bytes(1000);
        for i in 0..10u8 {
            q.push(Source(1), &rec(i, 297));
        }
        let st = t.signal(Signal::Logs);
        assert_eq!((q.len(), st.dropped(DropReason::QueueFull)), (3, 7));
        let drain = |q: &EncodedQueue| {
            let mut got = Vec::new();
            while let Some(c) = q.take() {
                got.extend_from_slice(&c.buf[c.start..]);
            }
            got
        };
        assert_eq!(drain(&q), [rec(7, 297), rec(8, 297), rec(9, 297)].concat());
        q.push_many(Source(1), &[rec(1, 297), rec(2, 297)].concat());
        q.push(Source(2), &rec(3, 1997));
        assert_eq!((q.len(), st.dropped(DropReason::QueueFull)), (1, 9));
        q.push_many(Source(1), &[rec(4, 297), rec(5, 297)].concat());
        assert_eq!((q.len(), st.dropped(DropReason::QueueFull)), (2, 10));
        assert_eq!(drain(&q), [rec(4, 297), rec(5, 297)].concat());
    }

    /// Bytes in requests in flight count against the byte bound until
    /// the request ends; chunks open for at most a share of the bound so
    /// that those requests leave room to queue.
    #[test]
    fn requests_in_flight_count_against_the_byte_bound() {
        let t = Telemetry::new(0);
        let q = Arc::new(
            EncodedQueue::new(1000, 100, 2, t.clone(), Signal::Logs)
                .with_max_bytes(6000)
                .with_requests_in_flight(2),
        );
        let st = t.signal(Signal::Logs);
        for i in 0..12u8 {
            q.push(Source(1), &rec(i, 297));
        }
        // A chunk opens for 6000 / 4 bytes: five 300-byte records.
        let c = q.take().unwrap();
        assert_eq!(c.records, 5);
        let held = Held::new(&q, c.buf.len() - c.start);
        // 1500 bytes held + 7 records queued: the bound (20 records of 300
        // bytes) leaves room for 15 queued, so the ninth more drops the
        // oldest.
        for i in 12..21u8 {
            q.push(Source(1), &rec(i, 297));
        }
        assert_eq!((q.len(), st.dropped(DropReason::QueueFull)), (15, 1));
        // The request ended: its room is the queue's again.
        drop(held);
        for i in 21..26u8 {
            q.push(Source(1), &rec(i, 297));
        }
        assert_eq!((q.len(), st.dropped(DropReason::QueueFull)), (20, 1));
        let mut got = Vec::new();
        while let Some(c) = q.take() {
            assert!(c.buf.len() - c.start <= 1500, "{}", c.buf.len() - c.start);
            got.extend_from_slice(&c.buf[c.start..]);
        }
        let want: Vec<u8> = (6..26u8).flat_map(|i| rec(i, 297)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn encoded_queue_drops_oldest_record_and_counts() {
        let t = Telemetry::new(0);
        let q = EncodedQueue::new(5, 2, 3, t.clone(), Signal::Logs);
        for i in 0..8u8 {
            // Some records need a two-byte length.
            q.push(Source(1 + i % 2), &rec(i, 100 + usize::from(i) * 10));
        }
        assert_eq!(q.len(), 5);
        assert_eq!(t.signal(Signal::Logs).dropped(DropReason::QueueFull), 3);
        // Records 0 and 2 came from source 1, record 1 from source 2.
        let st = t.signal(Signal::Logs);
        assert_eq!(st.dropped_from(DropReason::QueueFull, Source(1)), 2);
        assert_eq!(st.dropped_from(DropReason::QueueFull, Source(2)), 1);
        assert_eq!(q.sources().0[1..3], [2, 3]);
        let mut seen = Vec::new();
        while let Some(c) = q.take() {
            let mut b = &c.buf[c.start..];
            let mut n = 0;
            while !b.is_empty() {
                let l = field_len(b).unwrap();
                seen.push(b[l - 1]);
                b = &b[l..];
                n += 1;
            }
            assert_eq!(n, c.records);
            assert_eq!(c.sources.total(), n as u64);
            q.recycle(c.buf);
        }
        assert_eq!(seen, vec![3, 4, 5, 6, 7]);
        assert!(q.is_empty());
        assert_eq!(t.signal(Signal::Logs).queue_len.load(Relaxed), 0);
    }
}
