//! How records travel: in [`Batch`]es, interleaved with control elements.
//!
//! A batch holds values and, when any of them carries an event timestamp, a parallel vector of
//! timestamps. Operators handle a whole batch per call, so the per-record loop is plain,
//! monomorphized Rust and every virtual call or channel operation is paid once per batch.

/// The timestamp of a record that has none (Flink's `hasTimestamp == false`).
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A run of records of one stream.
///
/// `timestamps` is either empty (no record carries a timestamp) or exactly as long as `values`,
/// with [`NO_TIMESTAMP`] for records without one.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T> {
    pub values: Vec<T>,
    pub timestamps: Vec<i64>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Batch<T> {
    pub const fn new() -> Self {
        Batch { values: Vec::new(), timestamps: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Batch { values: Vec::with_capacity(n), timestamps: Vec::new() }
    }

    /// A batch of values without timestamps.
    pub fn from_values(values: Vec<T>) -> Self {
        Batch { values, timestamps: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn has_timestamps(&self) -> bool {
        !self.timestamps.is_empty()
    }

    /// The timestamp of record `i`, or [`NO_TIMESTAMP`].
    #[inline]
    pub fn timestamp(&self, i: usize) -> i64 {
        if self.timestamps.is_empty() {
            NO_TIMESTAMP
        } else {
            self.timestamps[i]
        }
    }

    /// Appends a record without timestamp.
    #[inline]
    pub fn push(&mut self, value: T) {
        if !self.timestamps.is_empty() {
            self.timestamps.push(NO_TIMESTAMP);
        }
        self.values.push(value);
    }

    /// Appends a record with the given timestamp ([`NO_TIMESTAMP`] for none).
    #[inline]
    pub fn push_with_timestamp(&mut self, value: T, ts: i64) {
        if self.timestamps.is_empty() {
            if ts == NO_TIMESTAMP {
                self.values.push(value);
                return;
            }
            self.timestamps.resize(self.values.len(), NO_TIMESTAMP);
        }
        self.timestamps.push(ts);
        self.values.push(value);
    }

    /// Moves all records of `other` to the end of `self`, keeping timestamps aligned.
    pub fn append(&mut self, other: &mut Batch<T>) {
        match (self.timestamps.is_empty(), other.timestamps.is_empty()) {
            (true, true) => {}
            (false, true) => self.timestamps.resize(self.values.len() + other.len(), NO_TIMESTAMP),
            (true, false) => {
                self.timestamps.resize(self.values.len(), NO_TIMESTAMP);
                self.timestamps.append(&mut other.timestamps);
            }
            (false, false) => self.timestamps.append(&mut other.timestamps),
        }
        self.values.append(&mut other.values);
        other.timestamps.clear();
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.timestamps.clear();
    }

    /// Takes the records out, leaving an empty batch with the same capacity reserved.
    pub fn take(&mut self) -> Batch<T> {
        let cap = self.values.capacity();
        std::mem::replace(self, Batch::with_capacity(cap))
    }

    /// Iterates over `(value, timestamp)` pairs.
    pub fn into_iter_with_timestamps(self) -> impl Iterator<Item = (T, i64)> {
        let Batch { values, timestamps } = self;
        let mut ts = timestamps.into_iter();
        values.into_iter().map(move |v| (v, ts.next().unwrap_or(NO_TIMESTAMP)))
    }
}

/// Whether a snapshot is a checkpoint (owned by the job, taken periodically) or a savepoint
/// (taken on demand, owned by the user, always aligned).
///
/// The two synchronous kinds belong to stop-with-savepoint: the barrier of a
/// `SavepointSuspend` tells every task to stop once the savepoint is complete, without
/// ending its input (no final watermark, no end-of-input work); a `SavepointTerminate`
/// ("drain") makes the sources end their input first, so that every timer fires and the job
/// finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointType {
    Checkpoint,
    Savepoint,
    SavepointSuspend,
    SavepointTerminate,
}

impl CheckpointType {
    /// Flink's upper-case name: `CHECKPOINT`, `SAVEPOINT`, `SAVEPOINT_SUSPEND` or
    /// `SAVEPOINT_TERMINATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointType::Checkpoint => "CHECKPOINT",
            CheckpointType::Savepoint => "SAVEPOINT",
            CheckpointType::SavepointSuspend => "SAVEPOINT_SUSPEND",
            CheckpointType::SavepointTerminate => "SAVEPOINT_TERMINATE",
        }
    }

    /// The type named `name` ([`as_str`](Self::as_str)), if any.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Checkpoint, Self::Savepoint, Self::SavepointSuspend, Self::SavepointTerminate]
            .into_iter()
            .find(|t| t.as_str() == name)
    }

    /// Any kind of savepoint.
    pub fn is_savepoint(self) -> bool {
        self != CheckpointType::Checkpoint
    }

    /// A savepoint that stops the job (stop-with-savepoint).
    pub fn is_synchronous(self) -> bool {
        matches!(self, CheckpointType::SavepointSuspend | CheckpointType::SavepointTerminate)
    }
}

/// The marker that cuts a stream into what belongs to checkpoint `id` (everything before it)
/// and what comes after (Flink's `CheckpointBarrier`).
///
/// Sources inject it when the checkpoint coordinator triggers them; every task passes it on to
/// all its outputs once it has snapshotted its state, so the barriers of one checkpoint sweep
/// through the whole job graph, between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CheckpointBarrier {
    /// Checkpoint ids grow by one per triggered checkpoint, across restarts of the job.
    pub id: u64,
    /// When the coordinator triggered the checkpoint, in ms since the epoch.
    pub timestamp: i64,
    pub kind: CheckpointType,
}

/// One element of a stream as it crosses a channel between tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamElement<T> {
    Records(Batch<T>),
    /// No record with a timestamp at or below this will follow on this channel.
    Watermark(i64),
    /// The channel has become idle (`true`) or active again (`false`).
    Idle(bool),
    /// Everything before this element on this channel belongs to the checkpoint.
    CheckpointBarrier(CheckpointBarrier),
    /// This channel's producer has finished: nothing follows.
    EndOfInput,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_appear_only_when_needed() {
        let mut b = Batch::new();
        b.push(1);
        b.push_with_timestamp(2, NO_TIMESTAMP);
        assert!(!b.has_timestamps());
        b.push_with_timestamp(3, 30);
        b.push(4);
        assert_eq!(b.timestamps, vec![NO_TIMESTAMP, NO_TIMESTAMP, 30, NO_TIMESTAMP]);
    }

    #[test]
    fn append_aligns_timestamps() {
        let mut a = Batch::from_values(vec![1, 2]);
        let mut b = Batch::new();
        b.push_with_timestamp(3, 7);
        a.append(&mut b);
        assert_eq!(a.values, vec![1, 2, 3]);
        assert_eq!(a.timestamps, vec![NO_TIMESTAMP, NO_TIMESTAMP, 7]);
        let mut c = Batch::from_values(vec![9]);
        a.append(&mut c);
        assert_eq!(a.timestamps.len(), 4);
        assert!(b.is_empty() && c.is_empty());
    }
}
