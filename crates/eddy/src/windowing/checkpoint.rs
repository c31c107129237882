//! Checkpoints of window and join state: one format for the general window operator, the
//! aligned window operator and the interval join.
//!
//! **Where the state lives.** On the `hashmap` backend the operators keep their per-key state in
//! heap maps. On `fjall` the general window operator keeps each key's window list (windows with
//! contents, trigger state and live timers) as one value of a keyed value state, loaded and
//! written back through the backend's cache, and its timer queues on the heap (see
//! [`super::store`]); the aligned operator is not used there (the general one computes the same
//! results), and the interval join stays on the heap. Either way a checkpoint writes the
//! state cut by key group ([`KeyGroupState`], the layout keyed state uses), in the same format
//! whatever the backend, so that a restore can take any key-group range out of the snapshots
//! of one or several old subtasks, and a savepoint of one backend restores on the other. Window
//! checkpoints are full, not incremental: what is left for window state larger than memory is a
//! window namespace on keyed state (so a record does not decode its key's whole window list)
//! and timers stored with the state.
//!
//! **Event time after a restore.** The watermark restarts at `i64::MIN`, as in keyed
//! operators and in Flink: timers fire again only once the replayed sources move event time
//! past them. What a subtask had reached is kept as a *floor* for the key groups it owned
//! ([`RestoredTime`]): an element that was late before the checkpoint is late after it, and a
//! window that had fired does not fire again, until the new watermark passes the floor.
//! Without this, records replayed after a restore could be taken as on time and produce
//! results the uninterrupted run never produced; after a rescale, key groups of subtasks that
//! had reached different event times are told apart.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use eddy_core::keygroup::assign_to_key_group;
use eddy_core::{codec, EddyError, Key, Result};
use eddy_runtime::checkpoint::RestoredState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fn_state::FunctionStateSnapshot;
use crate::state::KeyGroupState;

/// The version of [`KeyedSnapshot`]; a restore refuses any other.
pub(crate) const FORMAT_VERSION: u32 = 2;

/// What one subtask of a window or join operator writes at a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyedSnapshot {
    pub format_version: u32,
    /// Which operator wrote it ("window", "aligned window", "interval join"): state of one kind
    /// never restores into another.
    pub operator: String,
    /// The max parallelism keys were grouped by.
    pub max_parallelism: usize,
    /// How far time had advanced, per key-group range (see [`RestoredTime`]).
    pub times: Vec<TimePart>,
    /// Operator-wide state, encoded by the operator.
    #[serde(with = "serde_bytes")]
    pub shared: Vec<u8>,
    /// `Vec<(key, entry)>` per key group, in increasing key-group order.
    pub key_groups: Vec<KeyGroupState>,
    /// The keyed state of the window function, if it used any (see [`super::fn_state`]).
    pub functions: Option<FunctionStateSnapshot>,
}

/// The time a subtask had reached for the key groups `first..=last`, and (aligned windows
/// only) the ends of the windows it had not fired yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TimePart {
    pub first: usize,
    pub last: usize,
    pub time: i64,
    pub pending: Vec<i64>,
}

impl TimePart {
    fn contains(&self, key_group: usize) -> bool {
        self.first <= key_group && key_group <= self.last
    }
}

/// Groups `entries` by the key group of their key and encodes each group.
pub(crate) fn cut_by_key_group<'a, K: Key, V: Serialize>(
    entries: impl Iterator<Item = (&'a K, V)>,
    max_parallelism: usize,
) -> Result<Vec<KeyGroupState>> {
    let mut groups: BTreeMap<usize, Vec<(&K, V)>> = BTreeMap::new();
    for (k, v) in entries {
        groups.entry(assign_to_key_group(k, max_parallelism)).or_default().push((k, v));
    }
    groups
        .into_iter()
        .map(|(key_group, entries)| {
            let mut bytes = Vec::new();
            codec::encode_value(&entries, &mut bytes)?;
            Ok(KeyGroupState { key_group, bytes })
        })
        .collect()
}

impl KeyedSnapshot {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        codec::encode_value(self, &mut bytes)?;
        Ok(bytes)
    }
}

/// The snapshots a restoring subtask reads: those of the old subtasks whose key groups overlap
/// its own, checked against what `operator` writes.
pub(crate) struct Restore<'a> {
    pub restored: &'a RestoredState,
    pub snapshots: Vec<KeyedSnapshot>,
}

impl<'a> Restore<'a> {
    pub fn read(restored: &'a RestoredState, operator: &str) -> Result<Self> {
        let bad = |reason: String| EddyError::BadInput {
            location: format!("checkpointed state of '{}'", restored.operator_name),
            reason,
        };
        let mut snapshots = Vec::new();
        for bytes in restored.keyed() {
            let s: KeyedSnapshot = codec::decode_value(bytes)
                .map_err(|e| bad(format!("not the state of a {operator} operator: {e}")))?;
            if s.format_version != FORMAT_VERSION {
                return Err(bad(format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    s.format_version
                )));
            }
            if s.operator != operator {
                return Err(bad(format!(
                    "the state of a {} operator, not of a {operator} operator",
                    s.operator
                )));
            }
            if s.max_parallelism != restored.max_parallelism {
                return Err(bad(format!(
                    "keys grouped by max parallelism {}, not {}",
                    s.max_parallelism, restored.max_parallelism
                )));
            }
            snapshots.push(s);
        }
        Ok(Restore { restored, snapshots })
    }

    /// The entries of the key groups this subtask owns, out of every snapshot. A key stored
    /// under a key group it does not hash to means the bytes are not what they claim.
    pub fn entries<K: Key, V: DeserializeOwned>(&self) -> Result<Vec<(K, V)>> {
        self.decode_key_groups(self.snapshots.iter().flat_map(|s| &s.key_groups))
    }

    /// The entries of `groups` in the key groups this subtask owns; see [`Self::entries`].
    pub fn decode_key_groups<'g, K: Key, V: DeserializeOwned>(
        &self,
        groups: impl Iterator<Item = &'g KeyGroupState>,
    ) -> Result<Vec<(K, V)>> {
        let range = self.restored.key_groups();
        let max_parallelism = self.restored.max_parallelism;
        let mut out = Vec::new();
        for group in groups.filter(|g| range.contains(&g.key_group)) {
            let entries: Vec<(K, V)> = codec::decode_value(&group.bytes)?;
            let strays =
                entries.iter().filter(|(k, _)| assign_to_key_group(k, max_parallelism) != group.key_group);
            let strays = strays.count();
            if strays > 0 {
                return Err(EddyError::BadInput {
                    location: format!(
                        "checkpointed state of '{}', key group {}",
                        self.restored.operator_name, group.key_group
                    ),
                    reason: format!("{strays} of its {} keys belong to other key groups", entries.len()),
                });
            }
            out.extend(entries);
        }
        Ok(out)
    }

    /// The operator-wide state of every snapshot read.
    pub fn shared<S: DeserializeOwned>(&self) -> Result<Vec<S>> {
        self.snapshots.iter().map(|s| codec::decode_value(&s.shared)).collect()
    }

    /// The time floors of the key groups this subtask owns.
    pub fn times(&self) -> RestoredTime {
        let range = self.restored.key_groups();
        let parts = self
            .snapshots
            .iter()
            .flat_map(|s| &s.times)
            .filter(|p| p.first <= *range.end() && *range.start() <= p.last)
            .cloned()
            .collect();
        RestoredTime::new(parts, range, self.restored.max_parallelism)
    }
}

/// How far time had advanced before a restore, per key-group range: a floor under the restarted
/// watermark until it catches up (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RestoredTime {
    parts: Vec<TimePart>,
    /// Every part covers all key groups of the subtask: no key needs hashing.
    uniform: bool,
    max_parallelism: usize,
    /// The largest time of any part: the floors go once time reaches it.
    until: i64,
}

impl RestoredTime {
    fn new(mut parts: Vec<TimePart>, own: RangeInclusive<usize>, max_parallelism: usize) -> Self {
        // A subtask that had seen no time sets no floor.
        parts.retain(|p| p.time > i64::MIN);
        let uniform = parts.iter().all(|p| p.first <= *own.start() && *own.end() <= p.last);
        let until = parts.iter().map(|p| p.time).max().unwrap_or(i64::MIN);
        RestoredTime { parts, uniform, max_parallelism, until }
    }

    /// Whether a floor is still above the operator's time.
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.parts.is_empty()
    }

    /// Drops the floors once `time` has caught up with all of them.
    pub fn release(&mut self, time: i64) {
        if self.is_active() && time >= self.until {
            self.parts.clear();
        }
    }

    fn parts_of<'a, K: Key>(&'a self, key: &K) -> impl Iterator<Item = &'a TimePart> + 'a {
        let group = if self.uniform { None } else { Some(assign_to_key_group(key, self.max_parallelism)) };
        self.parts.iter().filter(move |p| group.is_none_or(|g| p.contains(g)))
    }

    /// The time `key` had reached: `time` or the floor of its key group, the larger.
    #[inline]
    pub fn time_of<K: Key>(&self, key: &K, time: i64) -> i64 {
        if !self.is_active() {
            return time;
        }
        self.parts_of(key).map(|p| p.time).fold(time, i64::max)
    }

    /// Whether the window ending at `end` had fired for `key` before the restore (aligned
    /// windows: reached and no longer pending).
    pub fn fired<K: Key>(&self, key: &K, end: i64) -> bool {
        self.is_active()
            && self
                .parts_of(key)
                .any(|p| end.wrapping_sub(1) <= p.time && p.pending.binary_search(&end).is_err())
    }

    /// The parts to write at a checkpoint taken at `time`, with `pending` window ends not fired
    /// yet, by the subtask owning `own`: the floors still active, and what it reached itself.
    pub fn snapshot(&self, own: &RangeInclusive<usize>, time: i64, mut pending: Vec<i64>) -> Vec<TimePart> {
        pending.sort_unstable();
        let mut parts = self.parts.clone();
        parts.push(TimePart { first: *own.start(), last: *own.end(), time, pending });
        parts
    }
}
