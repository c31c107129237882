//! Keyed state, scoped to the key of the record or timer being processed.
//!
//! A keyed function (a [`KeyedProcessFunction`](crate::functions::KeyedProcessFunction) or
//! [`KeyedCoProcessFunction`](crate::functions::KeyedCoProcessFunction)) declares its state
//! with descriptors and reaches it through its context. Each access is scoped to the current
//! key: two keys never see each other's state, whichever subtask they run on.
//!
//! | state | descriptor | context accessor | operations |
//! | --- | --- | --- | --- |
//! | [`ValueState`] | [`ValueStateDescriptor`] | `ctx.state(&d)` | `value`, `update`, `clear` |
//! | [`ListState`] | [`ListStateDescriptor`] | `ctx.list_state(&d)` | `get`, `add`, `add_all`, `update`, `clear` |
//! | [`MapState`] | [`MapStateDescriptor`] | `ctx.map_state(&d)` | `get`, `put`, `put_all`, `remove`, `contains`, `entries`, `keys`, `values`, `is_empty`, `clear` |
//! | [`ReducingState`] | [`ReducingStateDescriptor`] (a reduce function) | `ctx.reducing_state(&d)` | `get`, `add`, `clear` |
//! | [`AggregatingState`] | [`AggregatingStateDescriptor`] (an [`AggregateFunction`](crate::windowing::AggregateFunction)) | `ctx.aggregating_state(&d)` | `get`, `add`, `clear` |
//!
//! ```
//! use eddy::prelude::*;
//!
//! /// Emits each key's distinct words so far, and how often it saw each.
//! #[derive(Clone)]
//! struct Words { seen: MapStateDescriptor<String, u32>, order: ListStateDescriptor<String> }
//!
//! impl KeyedProcessFunction<u8, (u8, String), (u8, Vec<(String, u32)>)> for Words {
//!     fn process_element(&mut self, (k, w): (u8, String), ctx: &mut KeyedContext<u8>, out: &mut Collector<(u8, Vec<(String, u32)>)>) -> Result<()> {
//!         let mut seen = ctx.map_state(&self.seen);
//!         let n = seen.get(&w).copied().unwrap_or(0);
//!         seen.put(w.clone(), n + 1);
//!         if n == 0 {
//!             ctx.list_state(&self.order).add(w);
//!         }
//!         let words = ctx.list_state(&self.order).get().to_vec();
//!         let mut seen = ctx.map_state(&self.seen);
//!         out.collect((k, words.into_iter().map(|w| { let n = seen.get(&w).copied().unwrap_or(0); (w, n) }).collect()));
//!         Ok(())
//!     }
//! }
//!
//! let env = StreamExecutionEnvironment::local().with_parallelism(2);
//! let words = Words { seen: MapStateDescriptor::new("seen"), order: ListStateDescriptor::new("order") };
//! let out = env
//!     .from_collection(vec![(1, "a".to_string()), (2, "b".to_string()), (1, "c".to_string()), (1, "a".to_string())])
//!     .key_by(|r: &(u8, String)| r.0)
//!     .process(words)
//!     .execute_and_collect()
//!     .unwrap();
//! assert!(out.contains(&(1, vec![("a".to_string(), 2), ("c".to_string(), 1)])));
//! assert!(out.contains(&(2, vec![("b".to_string(), 1)])));
//! ```
//!
//! # Names and errors
//!
//! A name identifies one state of an operator: using a name with another kind of state, other
//! types or another TTL setting than it was created with is an error
//! ([`EddyError::InvalidJob`]). That holds across a restore too: a snapshot records each state's
//! kind, value types (by Rust type name, so renaming a type makes its state unreadable, as
//! renaming a class does in Flink) and whether it has TTL. Bytes that do not decode are an
//! [`EddyError::BadInput`] naming the state and the key group.
//!
//! The context's accessors do not return these errors: like
//! [`Context::output`](crate::functions::Context::output), they hand back a detached handle,
//! which reads as empty and ignores writes, and the error fails the function call as soon as it
//! returns, so the task fails (and restarts, if so configured). [`KeyedState`]'s own accessors
//! return them as `Result`s.
//!
//! # Time to live
//!
//! A descriptor with [`enable_time_to_live`](ValueStateDescriptor::enable_time_to_live) lets
//! entries expire [`StateTtlConfig::ttl`] after their last access, in processing time from the
//! operator's clock (a `ManualClock` in tests). As in Flink:
//!
//! - Entries expire one by one: a value, a list element, a map entry. Reducing and aggregating
//!   state fold into a fresh value once the old one has expired.
//! - [`UpdateType::OnCreateAndWrite`] (the default) restarts the clock of an entry when it is
//!   written; [`UpdateType::OnReadAndWrite`] also when it is read.
//! - [`StateVisibility::NeverReturnExpired`] (the default) hides expired entries;
//!   [`StateVisibility::ReturnExpiredIfNotCleanedUp`] returns them to the one read that finds
//!   them.
//! - Cleanup: a read removes the expired entries it finds. With
//!   [`StateTtlConfig::cleanup_full_snapshot`], snapshots leave expired entries out (live state
//!   keeps them until read). An entry never read again is otherwise kept: there is no
//!   background cleanup yet.
//! - TTL is part of the state's format: state written with TTL does not restore into a
//!   descriptor without it, nor the reverse (as in Flink).
//!
//! # Snapshots by key group
//!
//! [`KeyedState::snapshot`] writes every state as bytes per key group: each key belongs to the
//! key group `eddy_core::keygroup::assign_to_key_group(key, max_parallelism)`, the same one the
//! keyed exchange routes it by, and the entries of one state and key group are one
//! `Vec<(key, entry)>` encoded with `eddy_core::codec` (under TTL every value carries the time of
//! its last access). [`KeyedState::restore`] takes one or more snapshots and keeps the key groups
//! of one subtask's range, so a job rescaled from 2 to 3 subtasks gives each new subtask exactly
//! the keys it now owns. Restored bytes are decoded when a descriptor first names their state,
//! since only the descriptor knows the types; state never named again is carried over to the
//! next snapshot as it is.

mod descriptors;
mod entry;
mod keys;
mod list;
mod map;
mod snapshot;
mod ttl;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;

use eddy_core::keygroup::UPPER_BOUND_MAX_PARALLELISM;
use eddy_core::{Data, EddyError, Key, Result};
use serde::{Deserialize, Serialize};

pub use descriptors::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
pub use keys::KeyedStateDescriptor;
pub use list::ListState;
pub use map::MapState;
use snapshot::{select_key_groups, StateTable, Table};
pub use snapshot::{KeyGroupState, KeyedStateSnapshot, StateSnapshot, SNAPSHOT_FORMAT_VERSION};
pub use ttl::{StateTtlConfig, StateVisibility, UpdateType};
pub use value::{AggregatingState, ReducingState, ValueState};

use entry::{Access, Entry, ListEntry, MapEntry, Stamped};

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The kinds of keyed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateKind {
    Value,
    List,
    Map,
    Reducing,
    Aggregating,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Value => "value",
            StateKind::List => "list",
            StateKind::Map => "map",
            StateKind::Reducing => "reducing",
            StateKind::Aggregating => "aggregating",
        })
    }
}

/// All keyed state of one operator instance: every named state, for every key.
///
/// Operators reach it through the function's context; tests and checkpoints use it directly.
/// The accessors take the current processing time `now`, which only TTL reads.
pub struct KeyedState<K> {
    slots: Vec<Slot<K>>,
}

struct Slot<K> {
    name: String,
    kind: StateKind,
    content: Content<K>,
}

enum Content<K> {
    /// Restored bytes, waiting for a descriptor to say their types.
    Restored {
        max_parallelism: usize,
        snapshot: StateSnapshot,
    },
    Live(Box<dyn StateTable<K>>),
}

impl<K: Key> Default for KeyedState<K> {
    fn default() -> Self {
        KeyedState { slots: Vec::new() }
    }
}

impl<K: Key> KeyedState<K> {
    /// `key`'s value of the value state `desc`.
    pub fn value_state<'a, V: Data>(
        &'a mut self,
        desc: &ValueStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ValueState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        let entries = self.table::<Stamped<V>>(desc.name(), StateKind::Value, ttl)?;
        Ok(ValueState::new(Access::new(entries, key, ttl.map(|c| c.at(now)))))
    }

    /// `key`'s list of the list state `desc`.
    pub fn list_state<'a, V: Data>(
        &'a mut self,
        desc: &ListStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ListState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        let entries = self.table::<ListEntry<V>>(desc.name(), StateKind::List, ttl)?;
        Ok(ListState::new(Access::new(entries, key, ttl.map(|c| c.at(now)))))
    }

    /// `key`'s map of the map state `desc`.
    pub fn map_state<'a, UK: Key, UV: Data>(
        &'a mut self,
        desc: &MapStateDescriptor<UK, UV>,
        key: &'a K,
        now: i64,
    ) -> Result<MapState<'a, K, UK, UV>> {
        let ttl = desc.ttl_config().copied();
        let entries = self.table::<MapEntry<UK, UV>>(desc.name(), StateKind::Map, ttl)?;
        Ok(MapState::new(Access::new(entries, key, ttl.map(|c| c.at(now)))))
    }

    /// `key`'s value of the reducing state `desc`.
    pub fn reducing_state<'a, V: Data>(
        &'a mut self,
        desc: &'a ReducingStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ReducingState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        let entries = self.table::<Stamped<V>>(desc.name(), StateKind::Reducing, ttl)?;
        Ok(ReducingState::new(Access::new(entries, key, ttl.map(|c| c.at(now))), &*desc.reduce))
    }

    /// `key`'s accumulator of the aggregating state `desc`.
    pub fn aggregating_state<'a, IN: 'static, ACC: Data, OUT: 'static>(
        &'a mut self,
        desc: &'a AggregatingStateDescriptor<IN, ACC, OUT>,
        key: &'a K,
        now: i64,
    ) -> Result<AggregatingState<'a, K, IN, ACC, OUT>> {
        let ttl = desc.ttl_config().copied();
        let entries = self.table::<Stamped<ACC>>(desc.name(), StateKind::Aggregating, ttl)?;
        Ok(AggregatingState::new(Access::new(entries, key, ttl.map(|c| c.at(now))), &*desc.function))
    }

    /// Whether no state holds an entry for any key.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| match &s.content {
            Content::Restored { snapshot, .. } => snapshot.key_groups.is_empty(),
            Content::Live(table) => table.is_empty(),
        })
    }

    /// Writes all state as bytes per state and key group, keys grouped for `max_parallelism`.
    /// With `cleanup_full_snapshot`, entries expired at `now` are left out.
    pub fn snapshot(&self, max_parallelism: usize, now: i64) -> Result<KeyedStateSnapshot> {
        check_max_parallelism(max_parallelism)?;
        let mut states = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            states.push(match &slot.content {
                Content::Restored { max_parallelism: restored, snapshot } => {
                    if *restored != max_parallelism && !snapshot.key_groups.is_empty() {
                        return Err(EddyError::InvalidJob(format!(
                            "keyed state '{}' was restored with max parallelism {restored} and cannot be \
                             snapshotted with {max_parallelism}",
                            slot.name
                        )));
                    }
                    snapshot.clone()
                }
                Content::Live(table) => StateSnapshot {
                    name: slot.name.clone(),
                    kind: slot.kind,
                    value_types: table.value_types(),
                    ttl: table.ttl().is_some(),
                    key_groups: table.snapshot(max_parallelism, now)?,
                },
            });
        }
        Ok(KeyedStateSnapshot { format_version: SNAPSHOT_FORMAT_VERSION, max_parallelism, states })
    }

    /// Replaces all state by the key groups in `key_groups` of `snapshots` (the snapshots of
    /// all subtasks before a rescale, or just this subtask's own).
    ///
    /// The snapshots are checked here (same max parallelism, known format, key groups in range,
    /// no key group twice, one kind per name); the entries are decoded and checked when a
    /// descriptor first names their state.
    pub fn restore(
        &mut self,
        snapshots: &[KeyedStateSnapshot],
        key_groups: RangeInclusive<usize>,
    ) -> Result<()> {
        let (max_parallelism, states) = select_key_groups(snapshots, key_groups)?;
        self.slots = states
            .into_iter()
            .map(|snapshot| Slot {
                name: snapshot.name.clone(),
                kind: snapshot.kind,
                content: Content::Restored { max_parallelism, snapshot },
            })
            .collect();
        Ok(())
    }

    /// The entries of state `name`, created on first use, decoded on first use after a restore,
    /// and checked against the kind, types and TTL the caller expects.
    fn table<E: Entry>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtlConfig>,
    ) -> Result<&mut Map<K, E>> {
        let slot = match self.slots.iter().position(|s| s.name == name) {
            Some(i) => &mut self.slots[i],
            None => {
                let table: Box<dyn StateTable<K>> = Box::new(Table::<K, E>::new(ttl));
                self.slots.push(Slot { name: name.to_string(), kind, content: Content::Live(table) });
                self.slots.last_mut().expect("just pushed")
            }
        };
        let misuse = |what: String| EddyError::InvalidJob(format!("keyed state '{name}' {what}"));
        if slot.kind != kind {
            return Err(misuse(format!("is a {} state, not a {kind} state", slot.kind)));
        }
        let ttl_mismatch = |was: bool| {
            let with = |t: bool| if t { "with" } else { "without" };
            misuse(format!("was written {} TTL and is now used {} TTL", with(was), with(ttl.is_some())))
        };
        if let Content::Restored { max_parallelism, snapshot } = &slot.content {
            if snapshot.ttl != ttl.is_some() {
                return Err(ttl_mismatch(snapshot.ttl));
            }
            if snapshot.value_types != E::value_types() {
                let (was, now) = (&snapshot.value_types, E::value_types());
                return Err(misuse(format!("was written holding {was} and is now read as {now}")));
            }
            let mut table = Table::<K, E>::new(ttl);
            for kg in &snapshot.key_groups {
                table.restore_key_group(name, *max_parallelism, kg)?;
            }
            slot.content = Content::Live(Box::new(table));
        }
        let Content::Live(table) = &mut slot.content else {
            unreachable!("restored state was made live above")
        };
        if table.ttl().is_some() != ttl.is_some() {
            return Err(ttl_mismatch(table.ttl().is_some()));
        }
        if !table.as_any().is::<Table<K, E>>() {
            return Err(misuse(format!("holds {}, not {}", table.value_types(), E::value_types())));
        }
        table.set_ttl(ttl);
        match table.as_any_mut().downcast_mut::<Table<K, E>>() {
            Some(t) => Ok(&mut t.entries),
            None => Err(misuse(format!("does not hold {}", E::value_types()))),
        }
    }
}

pub(crate) fn check_max_parallelism(max_parallelism: usize) -> Result<()> {
    if max_parallelism == 0 || max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(EddyError::InvalidJob(format!(
            "max parallelism {max_parallelism} is not in 1..={UPPER_BOUND_MAX_PARALLELISM}"
        )));
    }
    Ok(())
}
