//! Keyed timers (Flink's `InternalTimerService`).
//!
//! At most one timer per key, timestamp and time domain: registering it again changes nothing,
//! and it fires once. Due timers fire in timestamp order. Deleting a timer that does not exist
//! is a no-op.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use eddy_core::Key;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

struct Entry<K> {
    timestamp: i64,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.timestamp, self.seq) == (other.timestamp, other.seq)
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    // Reversed: the heap's top is the earliest timer (registration order breaks ties).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.timestamp, other.seq).cmp(&(self.timestamp, self.seq))
    }
}

/// The timers of one time domain.
pub struct TimerQueue<K> {
    heap: BinaryHeap<Entry<K>>,
    /// The live timers; heap entries not in here were deleted (or already fired).
    live: HashSet<(i64, K), foldhash::fast::FixedState>,
    seq: u64,
    /// Heap size at which deleted entries are dropped, so that the heap stays proportional to
    /// the live timers however many are deleted.
    compact_at: usize,
}

/// The smallest heap worth compacting.
const MIN_COMPACTION: usize = 4096;

impl<K: Key> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { heap: BinaryHeap::new(), live: HashSet::default(), seq: 0, compact_at: MIN_COMPACTION }
    }
}

impl<K: Key> TimerQueue<K> {
    pub fn register(&mut self, key: &K, timestamp: i64) {
        if self.live.insert((timestamp, key.clone())) {
            self.seq += 1;
            self.heap.push(Entry { timestamp, seq: self.seq, key: key.clone() });
        }
    }

    pub fn delete(&mut self, key: &K, timestamp: i64) {
        if self.live.remove(&(timestamp, key.clone())) && self.heap.len() >= self.compact_at {
            let live = &self.live;
            self.heap.retain(|e| live.contains(&(e.timestamp, e.key.clone())));
            self.compact_at = (2 * self.heap.len()).max(MIN_COMPACTION);
        }
    }

    /// Entries in the heap, live or deleted (for tests of memory bounds).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest live timer.
    pub fn peek(&mut self) -> Option<i64> {
        while let Some(top) = self.heap.peek() {
            if self.live.contains(&(top.timestamp, top.key.clone())) {
                return Some(top.timestamp);
            }
            self.heap.pop();
        }
        None
    }

    /// The earliest live timer as of the last change (without dropping deleted ones).
    pub fn peek_hint(&self) -> Option<i64> {
        self.heap.peek().map(|e| e.timestamp)
    }

    /// Removes and returns the earliest live timer at or before `time`.
    pub fn pop_due(&mut self, time: i64) -> Option<(i64, K)> {
        while let Some(top) = self.heap.peek() {
            if top.timestamp > time {
                return None;
            }
            let e = self.heap.pop()?;
            if self.live.remove(&(e.timestamp, e.key.clone())) {
                return Some((e.timestamp, e.key));
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// The live timers in firing order (timestamp, then registration), for a checkpoint.
    pub fn snapshot(&self) -> Vec<(i64, K)> {
        let mut live: Vec<&Entry<K>> =
            self.heap.iter().filter(|e| self.live.contains(&(e.timestamp, e.key.clone()))).collect();
        live.sort_by_key(|e| (e.timestamp, e.seq));
        live.into_iter().map(|e| (e.timestamp, e.key.clone())).collect()
    }

    /// Registers the timers of a snapshot, in its order.
    pub fn restore(&mut self, timers: Vec<(i64, K)>) {
        for (timestamp, key) in timers {
            self.register(&key, timestamp);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Event-time and processing-time timers of one keyed operator.
pub struct InternalTimers<K> {
    pub event: TimerQueue<K>,
    pub processing: TimerQueue<K>,
}

impl<K: Key> Default for InternalTimers<K> {
    fn default() -> Self {
        InternalTimers { event: TimerQueue::default(), processing: TimerQueue::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_deduplicated_per_key_and_timestamp() {
        let mut q = TimerQueue::default();
        q.register(&"a".to_string(), 10);
        q.register(&"a".to_string(), 10);
        q.register(&"b".to_string(), 10);
        assert_eq!(q.len(), 2);
        let mut fired = vec![q.pop_due(10).unwrap(), q.pop_due(10).unwrap()];
        fired.sort();
        assert_eq!(fired, vec![(10, "a".to_string()), (10, "b".to_string())]);
        assert_eq!(q.pop_due(i64::MAX), None);
    }

    #[test]
    fn due_timers_fire_in_timestamp_order_and_later_ones_wait() {
        let mut q = TimerQueue::default();
        for (k, t) in [('x', 30), ('y', 10), ('z', 20), ('w', 40)] {
            q.register(&k, t);
        }
        let mut fired = Vec::new();
        while let Some(t) = q.pop_due(30) {
            fired.push(t);
        }
        assert_eq!(fired, vec![(10, 'y'), (20, 'z'), (30, 'x')]);
        assert_eq!(q.peek(), Some(40));
    }

    #[test]
    fn deleting_timers_keeps_the_heap_proportional_to_live_timers() {
        let mut q = TimerQueue::default();
        // A session-like pattern: every record moves its key's timer further out.
        for i in 0..100_000i64 {
            let key = (i % 10) as u32;
            if i >= 10 {
                q.delete(&key, i - 10 + 1_000);
            }
            q.register(&key, i + 1_000);
        }
        assert_eq!(q.len(), 10);
        assert!(q.heap_len() <= 2 * MIN_COMPACTION, "heap holds {} entries for 10 timers", q.heap_len());
        let mut fired = Vec::new();
        while let Some(t) = q.pop_due(i64::MAX) {
            fired.push(t.0);
        }
        assert_eq!(fired, (99_990..100_000).map(|i| i + 1_000).collect::<Vec<_>>());
    }

    #[test]
    fn deleted_timers_do_not_fire_and_can_be_registered_again() {
        let mut q = TimerQueue::default();
        q.register(&1u32, 5);
        q.delete(&1, 5);
        q.delete(&2, 7); // deleting what does not exist is a no-op
        assert_eq!(q.peek(), None);
        q.register(&1, 5);
        assert_eq!(q.pop_due(5), Some((5, 1)));
        assert_eq!(q.pop_due(5), None, "fires once although the heap held it twice");
    }
}
