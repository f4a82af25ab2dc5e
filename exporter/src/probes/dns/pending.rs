//! Queries waiting for their response: a map to match responses and a FIFO
//! for time order. Neither allocates per query once grown (an LRU cache
//! allocates a node per entry, one heap allocation per lookup).
//!
//! The map hashes with foldhash rather than std's SipHash (which showed in
//! the dns profile): keys are tuples and ids of local clients' queries, so
//! a local process could pick them, and foldhash's per-process random seed
//! keeps precomputed collisions out, while the map's capacity bounds
//! the damage any collisions could do.

use super::{Key, Pending};
use std::collections::{HashMap, VecDeque};

pub struct PendingQueries {
    map: HashMap<Key, Pending, foldhash::fast::RandomState>,
    /// Keys in the order their queries were sent, with the send time that
    /// tells a live entry from one already answered (and maybe reused).
    order: VecDeque<(Key, u64)>,
    capacity: usize,
}

impl PendingQueries {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn live(&self, k: &Key, sent: u64) -> bool {
        self.map.get(k).is_some_and(|p| p.sent_boot_ns == sent)
    }

    /// Add a query (its key must not be pending); returns the oldest one
    /// when it had to make room. Callers go through
    /// [`PendingQueries::insert_new`].
    fn insert(&mut self, k: Key, p: Pending) -> Option<(Key, Pending)> {
        let evicted = if self.map.len() >= self.capacity {
            self.pop_oldest_if(|_| true)
        } else {
            None
        };
        self.order.push_back((k, p.sent_boot_ns));
        self.map.insert(k, p);
        self.trim_order();
        evicted
    }

    /// [`PendingQueries::insert`] unless `k` is pending already (a
    /// retransmission keeps its first send time): one hash of the key
    /// where `contains` and `insert` made two. `p` is made only when it
    /// goes in; `None` when `k` was pending, else what went out to make
    /// room.
    pub fn insert_new(
        &mut self,
        k: Key,
        p: impl FnOnce() -> Pending,
    ) -> Option<Option<(Key, Pending)>> {
        if self.map.len() >= self.capacity {
            // Full: evict only for a key that is new (the rare path).
            if self.map.contains_key(&k) {
                return None;
            }
            return Some(self.insert(k, p()));
        }
        match self.map.entry(k) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(v) => {
                let p = v.insert(p());
                self.order.push_back((k, p.sent_boot_ns));
                self.trim_order();
                Some(None)
            }
        }
    }

    /// Answered queries stay in `order` until they reach its front; bound
    /// it when many pile up behind an old one.
    fn trim_order(&mut self) {
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order
                .retain(|(k, sent)| map.get(k).is_some_and(|p| p.sent_boot_ns == *sent));
        }
    }

    /// The query answered by a response with key `k`.
    pub fn remove(&mut self, k: &Key) -> Option<Pending> {
        self.map.remove(k)
    }

    /// The send time of the oldest pending query.
    pub fn oldest_sent(&mut self) -> Option<u64> {
        while let Some(&(k, sent)) = self.order.front() {
            if self.live(&k, sent) {
                return Some(sent);
            }
            self.order.pop_front();
        }
        None
    }

    /// The oldest pending query, if `old` says its send time is old enough.
    pub fn pop_oldest_if(&mut self, old: impl Fn(u64) -> bool) -> Option<(Key, Pending)> {
        while let Some(&(k, sent)) = self.order.front() {
            if !self.live(&k, sent) {
                self.order.pop_front();
                continue;
            }
            if !old(sent) {
                return None;
            }
            self.order.pop_front();
            return self.map.remove(&k).map(|p| (k, p));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::dns::Transport;
    use crate::probes::network::Tuple;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(id: u16) -> Key {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Key {
            tuple: Tuple {
                local: ip,
                local_port: 1,
                remote: ip,
                remote_port: 53,
            },
            transport: Transport::Udp,
            id,
        }
    }

    fn query(sent: u64) -> Pending {
        Pending {
            hdr: Default::default(),
            sent_boot_ns: sent,
            name: String::new(),
            qtype: 1,
            lost_at_send: 0,
        }
    }

    #[test]
    fn insert_new_keeps_the_first_send_and_evicts_only_for_a_new_key() {
        let mut p = PendingQueries::new(2);
        assert!(matches!(p.insert_new(key(1), || query(10)), Some(None)));
        // A retransmission: refused, its Pending never made.
        assert!(p.insert_new(key(1), || unreachable!()).is_none());
        assert!(matches!(p.insert_new(key(2), || query(20)), Some(None)));
        // Full: a retransmission still evicts nothing.
        assert!(p.insert_new(key(2), || unreachable!()).is_none());
        assert_eq!(p.len(), 2);
        // Full: a new key pushes the oldest out.
        let Some(Some((k, q))) = p.insert_new(key(3), || query(30)) else {
            panic!("the oldest query was not evicted");
        };
        assert_eq!((k, q.sent_boot_ns), (key(1), 10));
        assert_eq!(p.remove(&key(2)).map(|q| q.sent_boot_ns), Some(20));
        assert_eq!(p.oldest_sent(), Some(30));
    }

    #[test]
    fn oldest_first_answered_skipped_full_evicts_oldest() {
        let mut p = PendingQueries::new(3);
        assert!(p.insert(key(1), query(10)).is_none());
        assert!(p.insert(key(2), query(20)).is_none());
        assert!(p.remove(&key(1)).is_some());
        // Key 1 reused by a later query: its old entry is stale.
        assert!(p.insert(key(1), query(30)).is_none());
        assert!(p.insert(key(3), query(40)).is_none());
        let (k, q) = p.insert(key(4), query(50)).unwrap();
        assert_eq!((k, q.sent_boot_ns), (key(2), 20));
        assert!(p.pop_oldest_if(|s| s < 30).is_none());
        let (k, _) = p.pop_oldest_if(|s| s <= 30).unwrap();
        assert_eq!(k, key(1));
        assert_eq!(p.len(), 2);
        // Many answered queries never grow the order past its bound.
        for i in 0..100 {
            p.insert(key(100 + i), query(100 + u64::from(i)));
            p.remove(&key(100 + i));
        }
        assert!(p.order.len() <= 6);
        assert_eq!(p.len(), 2);
    }
}
