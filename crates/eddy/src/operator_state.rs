//! Operator state: lists of values that belong to a parallel subtask rather than to a key.
//!
//! Keyed state follows the keys; operator state follows the subtask. A function that has to
//! remember something across failures without a key (a source's offsets, a sink's buffer, a
//! count) implements [`CheckpointedFunction`] next to its main trait and keeps that state in
//! list states:
//!
//! - on start, [`initialize_state`](CheckpointedFunction::initialize_state) declares its list
//!   states by [`ListStateDescriptor`] and, when the job restores
//!   ([`is_restored`](FunctionInitializationContext::is_restored)), reads them back into its
//!   fields;
//! - at each checkpoint, [`snapshot_state`](CheckpointedFunction::snapshot_state) copies its
//!   fields into the list states, which are then written with the checkpoint.
//!
//! The list is the unit of redistribution when a job is restored with another parallelism:
//!
//! | declared with | after a rescale, each subtask gets |
//! | --- | --- |
//! | [`list_state`](FunctionInitializationContext::list_state) (even-split) | every `parallelism`-th element of all old subtasks' lists, concatenated in old subtask order |
//! | [`union_list_state`](FunctionInitializationContext::union_list_state) | all elements of all old subtasks' lists |
//!
//! With an unchanged parallelism each subtask gets back its own list, whichever way it was
//! declared.
//!
//! Functions with operator state are added with the `*_checkpointed` methods of
//! [`DataStream`](crate::DataStream) ([`map_checkpointed`](crate::DataStream::map_checkpointed),
//! [`flat_map_checkpointed`](crate::DataStream::flat_map_checkpointed),
//! [`process_checkpointed`](crate::DataStream::process_checkpointed)); plain `map`, `filter` and
//! `process` are untouched and pay nothing for it.
//!
//! ```
//! use eddy::prelude::*;
//!
//! /// Emits records in groups of three; what waits in the buffer survives failures.
//! #[derive(Clone)]
//! struct Triples { buffer: Vec<i64>, state: ListStateDescriptor<i64> }
//!
//! impl FlatMapFunction<i64, Vec<i64>> for Triples {
//!     fn flat_map(&mut self, v: i64, out: &mut Collector<Vec<i64>>) -> Result<()> {
//!         self.buffer.push(v);
//!         if self.buffer.len() == 3 {
//!             out.collect(std::mem::take(&mut self.buffer));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! impl CheckpointedFunction for Triples {
//!     fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
//!         let restored = ctx.list_state(&self.state)?;
//!         self.buffer = restored.get().to_vec();
//!         Ok(())
//!     }
//!     fn snapshot_state(&mut self, ctx: &mut FunctionSnapshotContext) -> Result<()> {
//!         ctx.list_state(&self.state)?.update(self.buffer.clone());
//!         Ok(())
//!     }
//! }
//!
//! let env = StreamExecutionEnvironment::local().with_parallelism(1);
//! let f = Triples { buffer: Vec::new(), state: ListStateDescriptor::new("buffer") };
//! let out = env.from_collection((1..=6).collect()).flat_map_checkpointed(f).execute_and_collect().unwrap();
//! assert_eq!(out, vec![vec![1, 2, 3], vec![4, 5, 6]]);
//! ```

use std::any::Any;

use eddy_core::codec::{decode_value, encode_value};
use eddy_core::{Batch, Data, EddyError, Result};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext};
use serde::{Deserialize, Serialize};

use crate::functions::{Collector, Context, ProcessFunction, RuntimeContext};
use crate::state::ListStateDescriptor;

/// The version of the operator state layout this build writes; restore refuses others.
pub const OPERATOR_STATE_FORMAT_VERSION: u32 = 1;

/// A function with operator state (Flink's `CheckpointedFunction`), implemented next to its
/// main trait ([`MapFunction`], [`FlatMapFunction`] or [`ProcessFunction`]).
///
/// Each parallel subtask has its own copy of the function, and of its operator state.
pub trait CheckpointedFunction {
    /// Called once when the subtask starts, before `open`: declare the list states and, after a
    /// restore, read them back.
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()>;

    /// Called when a checkpoint's barrier reaches the function, after every record before it:
    /// write what must survive a failure into the list states.
    fn snapshot_state(&mut self, ctx: &mut FunctionSnapshotContext) -> Result<()>;

    /// The checkpoint `checkpoint_id` is complete and stored (Flink's `CheckpointListener`).
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }
}

/// A one-to-one function over records that can fail (Flink's `MapFunction`), for
/// [`DataStream::map_checkpointed`](crate::DataStream::map_checkpointed).
pub trait MapFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn map(&mut self, value: I) -> Result<O>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A function emitting zero or more records per record (Flink's `FlatMapFunction`), for
/// [`DataStream::flat_map_checkpointed`](crate::DataStream::flat_map_checkpointed).
pub trait FlatMapFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn flat_map(&mut self, value: I, out: &mut Collector<O>) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// How a list state is dealt out when the parallelism changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// Every subtask gets an even share of all elements.
    EvenSplit,
    /// Every subtask gets all elements.
    Union,
}

impl Redistribution {
    fn declared_with(self) -> &'static str {
        match self {
            Redistribution::EvenSplit => "list_state (even-split)",
            Redistribution::Union => "union_list_state (union)",
        }
    }
}

/// A list of values of one operator subtask (Flink's operator `ListState`).
pub struct OperatorListState<'a, V> {
    values: &'a mut Vec<V>,
}

impl<V: Data> OperatorListState<'_, V> {
    pub fn get(&self) -> &[V] {
        self.values
    }
    pub fn add(&mut self, value: V) {
        self.values.push(value)
    }
    pub fn add_all(&mut self, values: impl IntoIterator<Item = V>) {
        self.values.extend(values)
    }
    /// Replaces the list.
    pub fn update(&mut self, values: Vec<V>) {
        *self.values = values
    }
    pub fn clear(&mut self) {
        self.values.clear()
    }
    /// Takes the list out, leaving it empty.
    pub fn take(&mut self) -> Vec<V> {
        std::mem::take(self.values)
    }
}

/// A live list whose element type only its creator knows.
trait LiveList: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Every element encoded on its own, so that elements can be dealt out without their type.
    fn encode_elements(&self) -> Result<Vec<Vec<u8>>>;
}

impl<V: Data> LiveList for Vec<V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode_elements(&self) -> Result<Vec<Vec<u8>>> {
        self.iter()
            .map(|v| {
                let mut bytes = Vec::new();
                encode_value(v, &mut bytes)?;
                Ok(bytes)
            })
            .collect()
    }
}

enum Content {
    /// Restored elements (this subtask's share), decoded when a descriptor names their type.
    Restored(Vec<Vec<u8>>),
    Live(Box<dyn LiveList>),
}

struct Slot {
    name: String,
    mode: Redistribution,
    value_type: String,
    content: Content,
}

/// What a checkpoint holds for one subtask's operator state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OperatorStateSnapshot {
    format_version: u32,
    states: Vec<ListSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ListSnapshot {
    name: String,
    mode: Redistribution,
    /// The Rust type of the elements, which a descriptor must name again to read them.
    value_type: String,
    /// Each element encoded with `eddy_core::codec`.
    elements: Vec<Vec<u8>>,
}

/// All operator list states of one operator subtask (Flink's `OperatorStateStore`).
///
/// Operators with a [`CheckpointedFunction`] keep one; it is public so that operators written
/// against the runtime's operator traits can use it too.
#[derive(Default)]
pub struct OperatorStateStore {
    slots: Vec<Slot>,
    /// The operator, for errors.
    operator: String,
}

impl OperatorStateStore {
    /// An empty store of the operator named `operator` (the name appears in errors).
    pub fn new(operator: impl Into<String>) -> Self {
        OperatorStateStore { slots: Vec::new(), operator: operator.into() }
    }

    /// The even-split list state `desc`, created empty on first use.
    pub fn list_state<V: Data>(&mut self, desc: &ListStateDescriptor<V>) -> Result<OperatorListState<'_, V>> {
        self.list(desc, Redistribution::EvenSplit)
    }

    /// The union list state `desc`, created empty on first use.
    pub fn union_list_state<V: Data>(
        &mut self,
        desc: &ListStateDescriptor<V>,
    ) -> Result<OperatorListState<'_, V>> {
        self.list(desc, Redistribution::Union)
    }

    /// The names of the states in this store, declared or restored.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    fn list<V: Data>(
        &mut self,
        desc: &ListStateDescriptor<V>,
        mode: Redistribution,
    ) -> Result<OperatorListState<'_, V>> {
        let name = desc.name();
        let misuse = |what: String| {
            EddyError::InvalidJob(format!("operator state '{name}' of '{}' {what}", self.operator))
        };
        if desc.ttl_config().is_some() {
            return Err(misuse("has a TTL: time-to-live applies to keyed state only".into()));
        }
        let value_type = std::any::type_name::<V>();
        let index = match self.slots.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                let content = Content::Live(Box::new(Vec::<V>::new()));
                self.slots.push(Slot { name: name.into(), mode, value_type: value_type.into(), content });
                self.slots.len() - 1
            }
        };
        let slot = &self.slots[index];
        if slot.mode != mode {
            let (was, now) = (slot.mode.declared_with(), mode.declared_with());
            return Err(misuse(format!("was declared with {was} and is now declared with {now}")));
        }
        if slot.value_type != value_type {
            let was = &slot.value_type;
            return Err(misuse(format!("holds {was} and is now read as {value_type}")));
        }
        let operator = &self.operator;
        let slot = &mut self.slots[index];
        if let Content::Restored(elements) = &slot.content {
            let values = elements
                .iter()
                .enumerate()
                .map(|(i, bytes)| {
                    decode_value::<V>(bytes).map_err(|e| EddyError::BadInput {
                        location: format!("operator state '{name}' of '{operator}', element {i}"),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<Vec<V>>>()?;
            slot.content = Content::Live(Box::new(values));
        }
        let Content::Live(list) = &mut slot.content else {
            unreachable!("restored state was made live above")
        };
        match list.as_any_mut().downcast_mut::<Vec<V>>() {
            Some(values) => Ok(OperatorListState { values }),
            None => Err(misuse(format!("does not hold {value_type}"))),
        }
    }

    /// Every state as bytes, for a checkpoint. States restored but not declared since are
    /// written back as they were, so a function that skips a state does not lose it.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let states = self
            .slots
            .iter()
            .map(|s| {
                let elements = match &s.content {
                    Content::Restored(elements) => elements.clone(),
                    Content::Live(list) => list.encode_elements()?,
                };
                Ok(ListSnapshot {
                    name: s.name.clone(),
                    mode: s.mode,
                    value_type: s.value_type.clone(),
                    elements,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut bytes = Vec::new();
        encode_value(
            &OperatorStateSnapshot { format_version: OPERATOR_STATE_FORMAT_VERSION, states },
            &mut bytes,
        )?;
        Ok(bytes)
    }

    /// Replaces the store's state by this subtask's share of `restored`: its own lists without a
    /// rescale; after one, an even split or the union of all old subtasks' lists, as each list
    /// was declared.
    pub fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let mut merged: Vec<ListSnapshot> = Vec::new();
        for (old, bytes) in &restored.states {
            let bad = |reason: String| EddyError::BadInput {
                location: format!(
                    "operator state of '{}', subtask {} of the checkpoint",
                    self.operator,
                    old + 1
                ),
                reason,
            };
            let snapshot: OperatorStateSnapshot = decode_value(bytes).map_err(|e| bad(e.to_string()))?;
            if snapshot.format_version != OPERATOR_STATE_FORMAT_VERSION {
                let v = snapshot.format_version;
                return Err(bad(format!(
                    "format version {v} (this build reads {OPERATOR_STATE_FORMAT_VERSION})"
                )));
            }
            for list in snapshot.states {
                match merged.iter_mut().find(|m| m.name == list.name) {
                    Some(m) if (m.mode, &m.value_type) != (list.mode, &list.value_type) => {
                        return Err(bad(format!(
                            "state '{}' differs in redistribution or type between subtasks",
                            list.name
                        )));
                    }
                    Some(m) => m.elements.extend(list.elements),
                    None => merged.push(list),
                }
            }
        }
        self.slots = merged
            .into_iter()
            .map(|list| {
                let elements = match list.mode {
                    Redistribution::EvenSplit => restored.even_split(list.elements),
                    Redistribution::Union => list.elements,
                };
                Slot {
                    name: list.name,
                    mode: list.mode,
                    value_type: list.value_type,
                    content: Content::Restored(elements),
                }
            })
            .collect();
        Ok(())
    }
}

/// What [`CheckpointedFunction::initialize_state`] is given (Flink's
/// `FunctionInitializationContext`).
pub struct FunctionInitializationContext<'a> {
    store: &'a mut OperatorStateStore,
    restored: bool,
    runtime: &'a RuntimeContext,
}

impl<'a> FunctionInitializationContext<'a> {
    /// A context over `store`; `restored`: the job restarts from a checkpoint.
    pub fn new(store: &'a mut OperatorStateStore, restored: bool, runtime: &'a RuntimeContext) -> Self {
        FunctionInitializationContext { store, restored, runtime }
    }

    /// Whether the job restarts from a checkpoint (the lists then hold what was restored).
    pub fn is_restored(&self) -> bool {
        self.restored
    }

    /// Where the function runs (subtask index, parallelism, attempt).
    pub fn runtime_context(&self) -> &RuntimeContext {
        self.runtime
    }

    /// The even-split list state `desc`: after a rescale, each subtask gets an even share of
    /// all elements.
    pub fn list_state<V: Data>(&mut self, desc: &ListStateDescriptor<V>) -> Result<OperatorListState<'_, V>> {
        self.store.list_state(desc)
    }

    /// The union list state `desc`: after a rescale, each subtask gets all elements.
    pub fn union_list_state<V: Data>(
        &mut self,
        desc: &ListStateDescriptor<V>,
    ) -> Result<OperatorListState<'_, V>> {
        self.store.union_list_state(desc)
    }

    /// The store itself (Flink's `getOperatorStateStore`).
    pub fn operator_state_store(&mut self) -> &mut OperatorStateStore {
        self.store
    }
}

/// What [`CheckpointedFunction::snapshot_state`] is given (Flink's `FunctionSnapshotContext`).
pub struct FunctionSnapshotContext<'a> {
    store: &'a mut OperatorStateStore,
    checkpoint_id: u64,
    checkpoint_timestamp: i64,
}

impl<'a> FunctionSnapshotContext<'a> {
    pub fn new(store: &'a mut OperatorStateStore, checkpoint_id: u64, checkpoint_timestamp: i64) -> Self {
        FunctionSnapshotContext { store, checkpoint_id, checkpoint_timestamp }
    }

    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// When the checkpoint was triggered, in ms since the epoch.
    pub fn checkpoint_timestamp(&self) -> i64 {
        self.checkpoint_timestamp
    }

    /// The even-split list state `desc` (declared in `initialize_state`, or created now).
    pub fn list_state<V: Data>(&mut self, desc: &ListStateDescriptor<V>) -> Result<OperatorListState<'_, V>> {
        self.store.list_state(desc)
    }

    /// The union list state `desc` (declared in `initialize_state`, or created now).
    pub fn union_list_state<V: Data>(
        &mut self,
        desc: &ListStateDescriptor<V>,
    ) -> Result<OperatorListState<'_, V>> {
        self.store.union_list_state(desc)
    }

    pub fn operator_state_store(&mut self) -> &mut OperatorStateStore {
        self.store
    }
}

/// The record-at-a-time part of a checkpointed function: how it handles a batch.
pub(crate) trait BatchLogic<I, O>: CheckpointedFunction + Send + 'static {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()>;
    fn close(&mut self) -> Result<()>;
}

/// A [`MapFunction`] as batch logic.
pub(crate) struct AsMap<F>(pub F);
/// A [`FlatMapFunction`] as batch logic.
pub(crate) struct AsFlatMap<F>(pub F);
/// A [`ProcessFunction`] as batch logic.
pub(crate) struct AsProcess<F>(pub F);

macro_rules! delegate_checkpointed {
    ($wrapper:ident) => {
        impl<F: CheckpointedFunction> CheckpointedFunction for $wrapper<F> {
            fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
                self.0.initialize_state(ctx)
            }
            fn snapshot_state(&mut self, ctx: &mut FunctionSnapshotContext) -> Result<()> {
                self.0.snapshot_state(ctx)
            }
            fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
                self.0.notify_checkpoint_complete(checkpoint_id)
            }
        }
    };
}

delegate_checkpointed!(AsMap);
delegate_checkpointed!(AsFlatMap);
delegate_checkpointed!(AsProcess);

impl<I: Data, O: Data, F: MapFunction<I, O> + CheckpointedFunction> BatchLogic<I, O> for AsMap<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let Batch { values, timestamps } = batch;
        let values = values.into_iter().map(|v| self.0.map(v)).collect::<Result<Vec<O>>>()?;
        out.emit_batch(Batch { values, timestamps })
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

impl<I: Data, O: Data, F: FlatMapFunction<I, O> + CheckpointedFunction> BatchLogic<I, O> for AsFlatMap<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let (main, _) = out.split();
        let mut c = Collector::new(main);
        for (v, ts) in batch.into_iter_with_timestamps() {
            c.out_mut().set_timestamp(ts);
            self.0.flat_map(v, &mut c)?;
        }
        c.out_mut().set_timestamp(eddy_core::NO_TIMESTAMP);
        c.finish()
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

impl<I: Data, O: Data, F: ProcessFunction<I, O> + CheckpointedFunction> BatchLogic<I, O> for AsProcess<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in batch.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = Context::new(ts, side);
            let mut c = Collector::new(main);
            self.0.process_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.finish()?;
        }
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// Runs a function with operator state: restores the store before `open`, and at each
/// checkpoint lets the function fill it and writes it.
pub(crate) struct CheckpointedFunctionOperator<I, O, L> {
    logic: L,
    store: OperatorStateStore,
    runtime: RuntimeContext,
    _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I, O, L> CheckpointedFunctionOperator<I, O, L> {
    pub fn new(logic: L, ctx: &OperatorContext) -> Self {
        CheckpointedFunctionOperator {
            logic,
            store: OperatorStateStore::new(ctx.operator_name.clone()),
            runtime: RuntimeContext { op: ctx.clone() },
            _t: std::marker::PhantomData,
        }
    }
}

impl<I: Data, O: Data, L: BatchLogic<I, O>> OneInputOperator for CheckpointedFunctionOperator<I, O, L> {
    type In = I;
    type Out = O;

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        if let Some(r) = restored {
            self.store.restore(r)?;
        }
        let mut ctx = FunctionInitializationContext::new(&mut self.store, restored.is_some(), &self.runtime);
        self.logic.initialize_state(&mut ctx)
    }

    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        self.logic.open(&self.runtime)
    }

    #[inline]
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        self.logic.process_batch(batch, out)
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let mut ctx = FunctionSnapshotContext::new(&mut self.store, barrier.id, barrier.timestamp);
        self.logic.snapshot_state(&mut ctx)?;
        self.store.snapshot().map(Some)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.logic.notify_checkpoint_complete(checkpoint_id)
    }

    fn close(&mut self) -> Result<()> {
        self.logic.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored(
        states: Vec<(usize, Vec<u8>)>,
        old: usize,
        subtask: usize,
        parallelism: usize,
    ) -> RestoredState {
        RestoredState::new("op", states, old, subtask, parallelism, 128)
    }

    fn store_with(values: &[i64], union: &[i64]) -> Vec<u8> {
        let mut s = OperatorStateStore::new("op");
        s.list_state(&ListStateDescriptor::<i64>::new("even")).unwrap().add_all(values.iter().copied());
        s.union_list_state(&ListStateDescriptor::<i64>::new("union")).unwrap().add_all(union.iter().copied());
        s.snapshot().unwrap()
    }

    #[test]
    fn declared_mode_and_type_are_checked_also_after_a_restore() {
        let bytes = store_with(&[1], &[2]);
        let mut s = OperatorStateStore::new("op");
        s.restore(&restored(vec![(0, bytes)], 1, 0, 1)).unwrap();
        let err = s.union_list_state(&ListStateDescriptor::<i64>::new("even")).err().unwrap().to_string();
        assert!(err.contains("'even' of 'op' was declared with list_state"), "{err}");
        let err = s.list_state(&ListStateDescriptor::<String>::new("even")).err().unwrap().to_string();
        assert!(err.contains("holds i64 and is now read as alloc::string::String"), "{err}");
        assert_eq!(s.list_state(&ListStateDescriptor::<i64>::new("even")).unwrap().get(), &[1]);
    }

    #[test]
    fn undeclared_restored_state_is_written_back_unchanged() {
        let bytes = store_with(&[1, 2], &[3]);
        let mut s = OperatorStateStore::new("op");
        s.restore(&restored(vec![(0, bytes.clone())], 1, 0, 1)).unwrap();
        assert_eq!(s.snapshot().unwrap(), bytes);
    }

    #[test]
    fn corrupt_bytes_are_an_error_naming_the_operator_and_subtask() {
        let mut s = OperatorStateStore::new("buffering");
        let err = s.restore(&restored(vec![(1, vec![0xff, 0x01])], 2, 0, 2)).unwrap_err();
        assert!(matches!(err, EddyError::BadInput { .. }), "{err:?}");
        assert!(err.to_string().contains("operator state of 'buffering', subtask 2"), "{err}");
    }
}
