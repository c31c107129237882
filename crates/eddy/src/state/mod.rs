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

mod backend;
mod descriptors;
mod entry;
mod keys;
mod list;
mod lsm;
mod map;
mod pending;
mod snapshot;
mod ttl;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use eddy_core::config::{StateBackendConfig, StateBackendKind};
use eddy_core::keygroup::UPPER_BOUND_MAX_PARALLELISM;
use eddy_core::{Data, EddyError, Key, Result};
use serde::{Deserialize, Serialize};

use backend::{Backend, Content, Incremental};
pub use descriptors::{
    AggregatingStateDescriptor, ListStateDescriptor, MapStateDescriptor, ReducingStateDescriptor,
    ValueStateDescriptor,
};
pub use keys::KeyedStateDescriptor;
pub use list::ListState;
use lsm::{LsmStore, LsmTable};
pub use map::MapState;
pub use pending::PendingSnapshot;
use pending::{IncrementalPart, Source};
use snapshot::{select_key_groups, Table};
pub use snapshot::{
    KeyGroupFile, KeyGroupState, KeyedStateSnapshot, SharedKeyGroup, StateSnapshot, SNAPSHOT_FORMAT_VERSION,
};
pub use ttl::{StateTtlConfig, StateVisibility, UpdateType};
pub use value::{AggregatingState, ReducingState, ValueState};

pub(crate) use entry::Stamped;
use entry::{Access, Entry, ListEntry, MapEntry};

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
///
/// Where the entries live is the backend's business (`state.backend`): typed hash maps in
/// memory (`hashmap`, [`KeyedState::default`]) or an embedded LSM tree on local disk (`fjall`,
/// see [`KeyedState::new`]). The handles, their semantics and the snapshot format are the same
/// on both, so a savepoint taken on one restores on the other.
pub struct KeyedState<K> {
    slots: Vec<Slot<K>>,
    backend: Backend,
    config: Arc<StateBackendConfig>,
    incremental: Incremental,
}

struct Slot<K> {
    name: String,
    kind: StateKind,
    content: Content<K>,
}

impl<K: Key> Default for KeyedState<K> {
    /// Keyed state on the heap backend.
    fn default() -> Self {
        KeyedState {
            slots: Vec::new(),
            backend: Backend::Heap,
            config: Arc::default(),
            incremental: Incremental::new(),
        }
    }
}

impl<K: Key> KeyedState<K> {
    /// Keyed state on the backend `config` names, its keys grouped for `max_parallelism`.
    /// The `fjall` backend opens its LSM tree in a new directory now, removed on drop.
    pub fn new(config: Arc<StateBackendConfig>, max_parallelism: usize) -> Result<Self> {
        check_max_parallelism(max_parallelism)?;
        let backend = match config.kind {
            StateBackendKind::HashMap => Backend::Heap,
            StateBackendKind::Fjall => Backend::Lsm(LsmStore::open(&config, max_parallelism)?),
        };
        Ok(KeyedState { slots: Vec::new(), backend, config, incremental: Incremental::new() })
    }

    /// The backend the state lives in.
    pub fn backend(&self) -> StateBackendKind {
        match self.backend {
            Backend::Heap => StateBackendKind::HashMap,
            Backend::Lsm(_) => StateBackendKind::Fjall,
        }
    }

    /// `key`'s value of the value state `desc`.
    pub fn value_state<'a, V: Data>(
        &'a mut self,
        desc: &ValueStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ValueState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        Ok(ValueState::new(self.access::<Stamped<V>>(desc.name(), StateKind::Value, ttl, key, now)?))
    }

    /// `key`'s list of the list state `desc`.
    pub fn list_state<'a, V: Data>(
        &'a mut self,
        desc: &ListStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ListState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        Ok(ListState::new(self.access::<ListEntry<V>>(desc.name(), StateKind::List, ttl, key, now)?))
    }

    /// `key`'s map of the map state `desc`.
    pub fn map_state<'a, UK: Key, UV: Data>(
        &'a mut self,
        desc: &MapStateDescriptor<UK, UV>,
        key: &'a K,
        now: i64,
    ) -> Result<MapState<'a, K, UK, UV>> {
        let ttl = desc.ttl_config().copied();
        Ok(MapState::new(self.access::<MapEntry<UK, UV>>(desc.name(), StateKind::Map, ttl, key, now)?))
    }

    /// `key`'s value of the reducing state `desc`.
    pub fn reducing_state<'a, V: Data>(
        &'a mut self,
        desc: &'a ReducingStateDescriptor<V>,
        key: &'a K,
        now: i64,
    ) -> Result<ReducingState<'a, K, V>> {
        let ttl = desc.ttl_config().copied();
        let access = self.access::<Stamped<V>>(desc.name(), StateKind::Reducing, ttl, key, now)?;
        Ok(ReducingState::new(access, &*desc.reduce))
    }

    /// `key`'s accumulator of the aggregating state `desc`.
    pub fn aggregating_state<'a, IN: 'static, ACC: Data, OUT: 'static>(
        &'a mut self,
        desc: &'a AggregatingStateDescriptor<IN, ACC, OUT>,
        key: &'a K,
        now: i64,
    ) -> Result<AggregatingState<'a, K, IN, ACC, OUT>> {
        let ttl = desc.ttl_config().copied();
        let access = self.access::<Stamped<ACC>>(desc.name(), StateKind::Aggregating, ttl, key, now)?;
        Ok(AggregatingState::new(access, &*desc.function))
    }

    /// Whether no state holds an entry for any key.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| match &s.content {
            Content::Restored { snapshot, .. } => snapshot.key_groups.is_empty(),
            Content::Heap(table) => table.is_empty(),
            Content::Lsm(table) => match &self.backend {
                Backend::Lsm(store) => table.is_empty(store),
                Backend::Heap => true,
            },
        })
    }

    /// Writes all state as bytes per state and key group, keys grouped for `max_parallelism`
    /// (a full, canonical snapshot: what savepoints hold). With `cleanup_full_snapshot`,
    /// entries expired at `now` are left out.
    pub fn snapshot(&mut self, max_parallelism: usize, now: i64) -> Result<KeyedStateSnapshot> {
        self.snapshot_async(max_parallelism, now)?.finish()
    }

    /// The synchronous part of [`snapshot`](Self::snapshot): on the `fjall` backend it writes
    /// the caches back and takes an MVCC view, and the returned [`PendingSnapshot`] reads the
    /// view when it is finished, on any thread, seeing none of the changes made after this
    /// call. On the heap backend the entries are copied now.
    pub fn snapshot_async(&mut self, max_parallelism: usize, now: i64) -> Result<PendingSnapshot> {
        check_max_parallelism(max_parallelism)?;
        self.flush()?;
        let view = self.backend.view(max_parallelism)?;
        let mut states = Vec::with_capacity(self.slots.len());
        let mut sources = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            let (key_groups, source) = match &slot.content {
                Content::Restored { max_parallelism: restored, snapshot } => {
                    if *restored != max_parallelism && !snapshot.key_groups.is_empty() {
                        return Err(EddyError::InvalidJob(format!(
                            "keyed state '{}' was restored with max parallelism {restored} and cannot be \
                             snapshotted with {max_parallelism}",
                            slot.name
                        )));
                    }
                    (Vec::new(), Source::Restored(snapshot.clone()))
                }
                Content::Heap(table) => (table.snapshot(max_parallelism, now)?, Source::Taken),
                Content::Lsm(table) => (Vec::new(), Source::Lsm(table.entry_writer())),
            };
            states.push(self.header(slot, key_groups));
            sources.push(source);
        }
        let snapshot = KeyedStateSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            max_parallelism,
            states,
            shared: Vec::new(),
        };
        Ok(PendingSnapshot { snapshot, sources, view, now, incremental: None })
    }

    /// The snapshot for checkpoint `checkpoint_id`: incremental when `state.backend.incremental`
    /// is set, the backend is `fjall` and checkpoints go to a directory (only the key groups
    /// written to since the previous snapshot are written, each as a new file under
    /// `<dir>/<job-id>/shared/`; the others are referenced from earlier checkpoints), otherwise
    /// the same as [`snapshot`](Self::snapshot).
    pub fn checkpoint(
        &mut self,
        max_parallelism: usize,
        now: i64,
        checkpoint_id: u64,
    ) -> Result<KeyedStateSnapshot> {
        self.checkpoint_async(max_parallelism, now, checkpoint_id)?.finish()
    }

    /// The synchronous part of [`checkpoint`](Self::checkpoint) (see
    /// [`snapshot_async`](Self::snapshot_async)): it notes which key groups changed, and the
    /// [`PendingSnapshot`] writes their files when it is finished.
    ///
    /// The pending snapshots of one `KeyedState` must be finished in the order they were
    /// taken (the runtime's snapshot thread does). A later snapshot references the files an
    /// earlier one writes; if the earlier one failed, the later one writes those key groups
    /// itself, from its own view.
    pub fn checkpoint_async(
        &mut self,
        max_parallelism: usize,
        now: i64,
        checkpoint_id: u64,
    ) -> Result<PendingSnapshot> {
        if !self.incremental_possible() {
            return self.snapshot_async(max_parallelism, now);
        }
        check_max_parallelism(max_parallelism)?;
        self.flush()?;
        let view = self.backend.view(max_parallelism)?;
        let (Some((dir, job_id)), Backend::Lsm(store)) = (&self.config.checkpoints, &self.backend) else {
            return Err(EddyError::user("incremental checkpoint without an LSM backend"));
        };
        // Key groups an earlier snapshot found empty are no longer referenced.
        self.incremental.base.retain(|_, slot| !matches!(slot.get(), Some(None)));
        let mut write = Vec::new();
        for key_group in 0..max_parallelism {
            if store.changed[key_group].swap(false, std::sync::atomic::Ordering::Relaxed) {
                let slot = Arc::new(backend::SharedSlot::new());
                self.incremental.base.insert(key_group, slot.clone());
                write.push((key_group, slot));
            }
        }
        let base = self.incremental.base.iter().map(|(kg, slot)| (*kg, slot.clone())).collect();
        let part = IncrementalPart {
            dir: dir.clone(),
            job_id: job_id.clone(),
            checkpoint_id,
            token: self.incremental.token,
            write,
            base,
            changed: store.changed.clone(),
        };
        let sources = self
            .slots
            .iter()
            .map(|slot| match &slot.content {
                Content::Restored { snapshot, .. } => Source::Restored(snapshot.clone()),
                Content::Lsm(table) => Source::Lsm(table.entry_writer()),
                Content::Heap(_) => Source::Taken,
            })
            .collect();
        let states = self.slots.iter().map(|slot| self.header(slot, Vec::new())).collect();
        let snapshot = KeyedStateSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            max_parallelism,
            states,
            shared: Vec::new(),
        };
        Ok(PendingSnapshot { snapshot, sources, view, now, incremental: Some(part) })
    }

    /// Replaces all state by the key groups in `key_groups` of `snapshots` (the snapshots of
    /// all subtasks before a rescale, or just this subtask's own).
    ///
    /// The snapshots are checked here (same max parallelism, known format, key groups in range,
    /// no key group twice, one kind per name); the shared files of incremental snapshots are
    /// read and checked (size and CRC-32: a missing or corrupt file is an error naming it); the
    /// entries are decoded and checked when a descriptor first names their state.
    pub fn restore(
        &mut self,
        snapshots: Vec<KeyedStateSnapshot>,
        key_groups: RangeInclusive<usize>,
    ) -> Result<()> {
        let (resolved, shared) = backend::resolve_shared(snapshots, &key_groups, &self.config)?;
        let (max_parallelism, states) = select_key_groups(resolved, key_groups.clone())?;
        self.slots = states
            .into_iter()
            .map(|snapshot| Slot {
                name: snapshot.name.clone(),
                kind: snapshot.kind,
                content: Content::Restored { max_parallelism, snapshot: Arc::new(snapshot) },
            })
            .collect();
        self.incremental.base.clear();
        if let Backend::Lsm(store) = &mut self.backend {
            *store = LsmStore::open(&self.config, store.max_parallelism)?;
            if store.max_parallelism == max_parallelism {
                // Key groups restored from shared files are unchanged until written to; the
                // others are written whole by the next incremental checkpoint.
                for kg in key_groups {
                    store.mark_changed(kg, !shared.contains_key(&kg));
                }
                self.incremental.base =
                    shared.into_iter().map(|(kg, file)| (kg, backend::written(file))).collect();
            }
        }
        Ok(())
    }

    /// The name, kind, types and TTL flag of `slot`, with `key_groups`.
    fn header(&self, slot: &Slot<K>, key_groups: Vec<KeyGroupState>) -> StateSnapshot {
        let (value_types, ttl) = match &slot.content {
            Content::Restored { snapshot, .. } => (snapshot.value_types.clone(), snapshot.ttl),
            Content::Heap(t) => (t.value_types(), t.ttl().is_some()),
            Content::Lsm(t) => (t.value_types(), t.ttl().is_some()),
        };
        StateSnapshot { name: slot.name.clone(), kind: slot.kind, value_types, ttl, key_groups }
    }

    /// Whether checkpoints can be incremental; warns once when they are asked to be and cannot.
    fn incremental_possible(&mut self) -> bool {
        if !self.config.incremental {
            return false;
        }
        let why = match (&self.backend, &self.config.checkpoints) {
            (Backend::Lsm(_), Some(_)) => return true,
            (Backend::Heap, _) => "the hashmap backend takes full snapshots",
            (Backend::Lsm(_), None) => "checkpoints are kept in memory (state.checkpoints.dir is not set)",
        };
        if !self.incremental.warned {
            self.incremental.warned = true;
            tracing::warn!(reason = why, "state.backend.incremental is set, but checkpoints are full");
        }
        false
    }

    /// Writes every LSM state's changed cached entries back to the tree.
    fn flush(&mut self) -> Result<()> {
        if let Backend::Lsm(store) = &mut self.backend {
            for slot in &mut self.slots {
                if let Content::Lsm(table) = &mut slot.content {
                    table.flush(store)?;
                }
            }
        }
        Ok(())
    }

    /// The keys holding an entry of state `name` (of entries `E`), in a fixed order: by key
    /// group on the `fjall` backend, in the heap map's (seeded) order on the heap. None if the
    /// state was never written or restored.
    pub(crate) fn keys_of<E: Entry>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtlConfig>,
    ) -> Result<Vec<K>> {
        if !self.slots.iter().any(|s| s.name == name) {
            return Ok(Vec::new());
        }
        let i = self.slot_index::<E>(name, kind, ttl)?;
        // The tree then holds every entry the cache had changed.
        self.flush()?;
        let lost =
            || EddyError::InvalidJob(format!("keyed state '{name}' does not hold {}", E::value_types()));
        match (&self.slots[i].content, &self.backend) {
            (Content::Heap(table), _) => {
                let table = table.as_any().downcast_ref::<Table<K, E>>().ok_or_else(lost)?;
                Ok(table.entries.keys().cloned().collect())
            }
            (Content::Lsm(table), Backend::Lsm(store)) => {
                let id = table.id();
                let view = store.view();
                let mut keys = Vec::new();
                for key_group in 0..store.max_parallelism {
                    for kv in store.scan(&view, key_group, id) {
                        let (key, _) = kv?;
                        keys.push(eddy_core::codec::decode_value::<K>(&key[4..])?);
                    }
                }
                Ok(keys)
            }
            _ => Err(lost()),
        }
    }

    /// A handle on `key`'s entry in state `name`; see [`KeyedState::slot_index`].
    fn access<'a, E: Entry>(
        &'a mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtlConfig>,
        key: &'a K,
        now: i64,
    ) -> Result<Access<'a, K, E>> {
        let i = self.slot_index::<E>(name, kind, ttl)?;
        let ttl_now = ttl.map(|c| c.at(now));
        let lost =
            || EddyError::InvalidJob(format!("keyed state '{name}' does not hold {}", E::value_types()));
        match (&mut self.slots[i].content, &mut self.backend) {
            (Content::Heap(table), _) => {
                let table = table.as_any_mut().downcast_mut::<Table<K, E>>().ok_or_else(lost)?;
                Ok(Access::new(&mut table.entries, key, ttl_now))
            }
            (Content::Lsm(table), Backend::Lsm(store)) => {
                let table = table.as_any_mut().downcast_mut::<LsmTable<K, E>>().ok_or_else(lost)?;
                Ok(Access::cached(table.slot(key, store)?, key, ttl_now))
            }
            _ => Err(lost()),
        }
    }

    /// The position of state `name`, created on first use, decoded on first use after a
    /// restore, and checked against the kind, types and TTL the caller expects.
    fn slot_index<E: Entry>(
        &mut self,
        name: &str,
        kind: StateKind,
        ttl: Option<StateTtlConfig>,
    ) -> Result<usize> {
        let i = match self.slots.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                let content = self.new_table::<E>(name, ttl)?;
                self.slots.push(Slot { name: name.to_string(), kind, content });
                self.slots.len() - 1
            }
        };
        let misuse = |what: String| EddyError::InvalidJob(format!("keyed state '{name}' {what}"));
        let slot = &self.slots[i];
        if slot.kind != kind {
            return Err(misuse(format!("is a {} state, not a {kind} state", slot.kind)));
        }
        let ttl_mismatch = |was: bool| {
            let with = |t: bool| if t { "with" } else { "without" };
            misuse(format!("was written {} TTL and is now used {} TTL", with(was), with(ttl.is_some())))
        };
        if let Content::Restored { snapshot, .. } = &slot.content {
            if snapshot.ttl != ttl.is_some() {
                return Err(ttl_mismatch(snapshot.ttl));
            }
            if snapshot.value_types != E::value_types() {
                let (was, now) = (&snapshot.value_types, E::value_types());
                return Err(misuse(format!("was written holding {was} and is now read as {now}")));
            }
            // Decoded into a new table that replaces the bytes only once all decode: after an
            // error the state stays unreadable rather than half restored.
            let mut content = self.new_table::<E>(name, ttl)?;
            if let Content::Restored { max_parallelism, snapshot } = &self.slots[i].content {
                restore_table::<K, E>(&mut content, &mut self.backend, name, *max_parallelism, snapshot)?;
            }
            self.slots[i].content = content;
        }
        let (had_ttl, right_type) = match &mut self.slots[i].content {
            Content::Heap(t) => (t.ttl().is_some(), t.as_any().is::<Table<K, E>>()),
            Content::Lsm(t) => (t.ttl().is_some(), t.as_any().is::<LsmTable<K, E>>()),
            Content::Restored { .. } => unreachable!("restored state was made live above"),
        };
        if had_ttl != ttl.is_some() {
            return Err(ttl_mismatch(had_ttl));
        }
        if !right_type {
            let types = match &self.slots[i].content {
                Content::Heap(t) => t.value_types(),
                Content::Lsm(t) => t.value_types(),
                Content::Restored { .. } => String::new(),
            };
            return Err(misuse(format!("holds {types}, not {}", E::value_types())));
        }
        match &mut self.slots[i].content {
            Content::Heap(t) => t.set_ttl(ttl),
            Content::Lsm(t) => t.set_ttl(ttl),
            Content::Restored { .. } => {}
        }
        Ok(i)
    }

    /// An empty table of entries `E` in this state's backend.
    fn new_table<E: Entry>(&mut self, name: &str, ttl: Option<StateTtlConfig>) -> Result<Content<K>> {
        Ok(match &mut self.backend {
            Backend::Heap => Content::Heap(Box::new(Table::<K, E>::new(ttl))),
            Backend::Lsm(store) => {
                let id = u16::try_from(self.incremental.next_state_id).map_err(|_| {
                    EddyError::InvalidJob("an operator can have at most 65536 keyed states".into())
                })?;
                self.incremental.next_state_id += 1;
                Content::Lsm(Box::new(LsmTable::<K, E>::new(name, id, ttl, store)))
            }
        })
    }
}

/// Decodes the restored key groups of state `name` into `content`, a new, empty table.
fn restore_table<K: Key, E: Entry>(
    content: &mut Content<K>,
    backend: &mut Backend,
    name: &str,
    max_parallelism: usize,
    snapshot: &StateSnapshot,
) -> Result<()> {
    match (content, backend) {
        (Content::Heap(t), _) => {
            if let Some(t) = t.as_any_mut().downcast_mut::<Table<K, E>>() {
                for kg in &snapshot.key_groups {
                    t.restore_key_group(name, max_parallelism, kg)?;
                }
            }
        }
        (Content::Lsm(t), Backend::Lsm(store)) => {
            if store.max_parallelism != max_parallelism && !snapshot.key_groups.is_empty() {
                return Err(EddyError::InvalidJob(format!(
                    "keyed state '{name}' was written with max parallelism {max_parallelism}, the \
                     operator has {}",
                    store.max_parallelism
                )));
            }
            if let Some(t) = t.as_any_mut().downcast_mut::<LsmTable<K, E>>() {
                t.restore(max_parallelism, &snapshot.key_groups, store)?;
            }
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn check_max_parallelism(max_parallelism: usize) -> Result<()> {
    if max_parallelism == 0 || max_parallelism > UPPER_BOUND_MAX_PARALLELISM {
        return Err(EddyError::InvalidJob(format!(
            "max parallelism {max_parallelism} is not in 1..={UPPER_BOUND_MAX_PARALLELISM}"
        )));
    }
    Ok(())
}
