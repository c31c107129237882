//! The broadcast state pattern: a low-volume stream (rules, configuration, patterns) sent to
//! every subtask of an operator, which keeps it in *broadcast state* and applies it to the
//! records of a main stream.
//!
//! 1. [`DataStream::broadcast_with`](crate::DataStream::broadcast_with) turns the rule stream
//!    into a [`BroadcastStream`] and declares its broadcast states, each a map named by a
//!    [`MapStateDescriptor`] ([`BroadcastStream::with_state`] declares more).
//! 2. The main stream is connected to it: a keyed stream with
//!    `keyed.connect(&broadcast).process(f)` and a [`KeyedBroadcastProcessFunction`], any stream
//!    with `stream.connect(&broadcast).process(f)` and a [`BroadcastProcessFunction`].
//! 3. `process_broadcast_element` sees each broadcast record on every subtask, and may read and
//!    write the broadcast state (and, keyed, visit every key's state with
//!    [`apply_to_keyed_state`](KeyedBroadcastContext::apply_to_keyed_state)).
//!    `process_element` sees the main records of its subtask and may only read the broadcast
//!    state (keyed: plus the key's state and timers, as in a
//!    [`KeyedProcessFunction`](crate::functions::KeyedProcessFunction)).
//!
//! Every subtask must change its broadcast state the same way, from the broadcast records
//! alone: that keeps the copies equal. The order in which broadcast and main records reach a
//! subtask is not defined (as in Flink), so a function that must not miss a rule keeps records
//! that arrive before it (in keyed state, say) and handles them when it comes.
//!
//! Broadcast state is checkpointed by every subtask. On restore each subtask takes the copy of
//! old subtask `index % old_parallelism`, which works for any new parallelism since the copies
//! are the same.
//!
//! ```
//! use eddy::prelude::*;
//!
//! /// Drops the words that a rule has banned; a word seen before its ban passes.
//! #[derive(Clone)]
//! struct Censor { banned: MapStateDescriptor<String, bool> }
//!
//! impl BroadcastProcessFunction<String, String, String> for Censor {
//!     fn process_element(&mut self, w: String, ctx: &mut ReadOnlyBroadcastContext, out: &mut Collector<String>) -> Result<()> {
//!         if !ctx.broadcast_state(&self.banned)?.contains(&w) {
//!             out.collect(w);
//!         }
//!         Ok(())
//!     }
//!     fn process_broadcast_element(&mut self, w: String, ctx: &mut BroadcastContext, _: &mut Collector<String>) -> Result<()> {
//!         ctx.broadcast_state(&self.banned)?.put(w, true);
//!         Ok(())
//!     }
//! }
//!
//! let env = StreamExecutionEnvironment::local().with_parallelism(2);
//! let banned = MapStateDescriptor::<String, bool>::new("banned");
//! let rules = env.from_collection(Vec::<String>::new()).broadcast_with(&banned);
//! let words = env.from_collection(vec!["a".to_string(), "b".to_string()]);
//! let mut out = words.connect(&rules).process(Censor { banned }).execute_and_collect().unwrap();
//! out.sort();
//! assert_eq!(out, vec!["a", "b"]);
//! ```

use std::any::Any;
use std::borrow::Borrow;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use eddy_core::codec::{decode_value, encode_value};
use eddy_core::{Batch, Data, EddyError, Key, Result};
use eddy_runtime::checkpoint::storage::{split_shared_files, with_shared_files};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::time::ClockRef;
use eddy_runtime::{Emitter, OperatorContext, TwoInputOperator};
use serde::{Deserialize, Serialize};

use crate::datastream::DataStream;
use crate::functions::{Collector, Context, KeyedContext, OutputTag, RuntimeContext};
use crate::operators::{KeyMap, KeyedCore};
use crate::state::{KeyedState, KeyedStateDescriptor, MapStateDescriptor};
use crate::timers::{InternalTimers, TimeDomain};

/// The version of the broadcast state layout this build writes; restore refuses others.
pub const BROADCAST_STATE_FORMAT_VERSION: u32 = 1;

/// A stream whose records go to every subtask of the operator it is connected to, with the
/// broadcast states that operator keeps (Flink's `BroadcastStream`).
pub struct BroadcastStream<T> {
    pub(crate) stream: DataStream<T>,
    pub(crate) declared: Vec<Declared>,
}

impl<T> Clone for BroadcastStream<T> {
    fn clone(&self) -> Self {
        BroadcastStream { stream: self.stream.clone(), declared: self.declared.clone() }
    }
}

impl<T: Data> BroadcastStream<T> {
    /// Declares one more broadcast state.
    pub fn with_state<UK: Key, UV: Data>(mut self, desc: &MapStateDescriptor<UK, UV>) -> Self {
        self.declared.push(Declared::of(desc));
        self
    }

    /// The names of the declared broadcast states.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.declared.iter().map(|d| d.name.as_str())
    }
}

type MakeTable = dyn Fn() -> Box<dyn BroadcastTable> + Send + Sync;

/// A declared broadcast state: its name and how to make its (typed) map.
#[derive(Clone)]
pub(crate) struct Declared {
    name: String,
    make: Arc<MakeTable>,
}

impl Declared {
    pub(crate) fn of<UK: Key, UV: Data>(desc: &MapStateDescriptor<UK, UV>) -> Self {
        Declared { name: desc.name().to_string(), make: Arc::new(|| Box::new(KeyMap::<UK, UV>::default())) }
    }
}

/// A broadcast state's map, whose types only its declaration knows.
pub(crate) trait BroadcastTable: Send {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn types(&self) -> String;
    fn encode(&self) -> Result<Vec<u8>>;
    /// Replaces the entries by the decoded `bytes`.
    fn decode(&mut self, bytes: &[u8]) -> Result<()>;
}

fn map_types<UK, UV>() -> String {
    format!("({}, {})", std::any::type_name::<UK>(), std::any::type_name::<UV>())
}

impl<UK: Key, UV: Data> BroadcastTable for KeyMap<UK, UV> {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn types(&self) -> String {
        map_types::<UK, UV>()
    }
    fn encode(&self) -> Result<Vec<u8>> {
        let entries: Vec<(&UK, &UV)> = self.iter().collect();
        let mut bytes = Vec::new();
        encode_value(&entries, &mut bytes)?;
        Ok(bytes)
    }
    fn decode(&mut self, bytes: &[u8]) -> Result<()> {
        let entries: Vec<(UK, UV)> = decode_value(bytes)?;
        self.clear();
        self.extend(entries);
        Ok(())
    }
}

enum Content {
    Live(Box<dyn BroadcastTable>),
    /// Restored, but not declared by this program: written back as it was.
    Undeclared {
        types: String,
        bytes: Vec<u8>,
    },
}

struct Slot {
    name: String,
    content: Content,
}

#[derive(Debug, Serialize, Deserialize)]
struct BroadcastSnapshot {
    format_version: u32,
    /// `(name, key and value types, entries encoded as Vec<(UK, UV)>)`.
    states: Vec<(String, String, Vec<u8>)>,
}

/// The broadcast states of one operator subtask.
pub(crate) struct BroadcastStateStore {
    slots: Vec<Slot>,
    operator: String,
}

impl BroadcastStateStore {
    pub fn new(declared: &[Declared], operator: &str) -> Self {
        let slots = declared
            .iter()
            .map(|d| Slot { name: d.name.clone(), content: Content::Live((d.make)()) })
            .collect();
        BroadcastStateStore { slots, operator: operator.to_string() }
    }

    fn misuse(&self, name: &str, what: impl std::fmt::Display) -> EddyError {
        EddyError::InvalidJob(format!("broadcast state '{name}' of '{}' {what}", self.operator))
    }

    fn table(&self, name: &str) -> Result<&dyn BroadcastTable> {
        match self.slots.iter().find(|s| s.name == name).map(|s| &s.content) {
            Some(Content::Live(t)) => Ok(t.as_ref()),
            _ => {
                Err(self.misuse(name, "is not declared: pass its descriptor to broadcast_with or with_state"))
            }
        }
    }

    fn map<UK: Key, UV: Data>(&self, desc: &MapStateDescriptor<UK, UV>) -> Result<&KeyMap<UK, UV>> {
        let table = self.table(desc.name())?;
        table.as_any().downcast_ref::<KeyMap<UK, UV>>().ok_or_else(|| {
            self.misuse(desc.name(), format!("holds {}, not {}", table.types(), map_types::<UK, UV>()))
        })
    }

    fn map_mut<UK: Key, UV: Data>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<&mut KeyMap<UK, UV>> {
        // Checked by the shared borrow first, so the error can name the types.
        self.map(desc)?;
        let slot = self.slots.iter_mut().find(|s| s.name == desc.name());
        match slot.map(|s| &mut s.content) {
            Some(Content::Live(t)) => t
                .as_any_mut()
                .downcast_mut::<KeyMap<UK, UV>>()
                .ok_or_else(|| unreachable_mismatch(desc.name())),
            _ => Err(unreachable_mismatch(desc.name())),
        }
    }

    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let states = self
            .slots
            .iter()
            .map(|s| match &s.content {
                Content::Live(t) => Ok((s.name.clone(), t.types(), t.encode()?)),
                Content::Undeclared { types, bytes } => Ok((s.name.clone(), types.clone(), bytes.clone())),
            })
            .collect::<Result<Vec<_>>>()?;
        let mut bytes = Vec::new();
        encode_value(
            &BroadcastSnapshot { format_version: BROADCAST_STATE_FORMAT_VERSION, states },
            &mut bytes,
        )?;
        Ok(bytes)
    }

    /// Takes the copy of old subtask `index % old_parallelism` (any copy, should that one have
    /// written none: they are all the same).
    pub fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let wanted = restored.subtask % restored.old_parallelism.max(1);
        let copy = restored.states.iter().find(|(old, _)| *old == wanted).or_else(|| restored.states.first());
        let Some((old, bytes)) = copy else { return Ok(()) };
        let bad = |reason: String| EddyError::BadInput {
            location: format!(
                "broadcast state of '{}', subtask {} of the checkpoint",
                self.operator,
                old + 1
            ),
            reason,
        };
        let snapshot: BroadcastSnapshot = decode_value(bytes).map_err(|e| bad(e.to_string()))?;
        if snapshot.format_version != BROADCAST_STATE_FORMAT_VERSION {
            let v = snapshot.format_version;
            return Err(bad(format!(
                "format version {v} (this build reads {BROADCAST_STATE_FORMAT_VERSION})"
            )));
        }
        for (name, types, bytes) in snapshot.states {
            match self.slots.iter_mut().find(|s| s.name == name) {
                Some(Slot { content: Content::Live(t), .. }) => {
                    if t.types() != types {
                        let now = t.types();
                        return Err(bad(format!(
                            "state '{name}' holds {types} and is now declared as {now}"
                        )));
                    }
                    t.decode(&bytes).map_err(|e| bad(format!("state '{name}': {e}")))?;
                }
                Some(slot) => slot.content = Content::Undeclared { types, bytes },
                None => self.slots.push(Slot { name, content: Content::Undeclared { types, bytes } }),
            }
        }
        Ok(())
    }
}

fn unreachable_mismatch(name: &str) -> EddyError {
    EddyError::InvalidJob(format!("broadcast state '{name}' changed its type while in use"))
}

/// Read access to a broadcast state (what `process_element` gets).
pub struct ReadOnlyBroadcastState<'a, UK, UV> {
    map: &'a KeyMap<UK, UV>,
}

/// The reads both broadcast state handles share.
macro_rules! broadcast_reads {
    () => {
        pub fn get<Q>(&self, key: &Q) -> Option<&UV>
        where
            UK: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.get(key)
        }
        pub fn contains<Q>(&self, key: &Q) -> bool
        where
            UK: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.map.contains_key(key)
        }
        /// The entries, in an order that is the same on every subtask.
        pub fn entries(&self) -> impl Iterator<Item = (&UK, &UV)> + '_ {
            self.map.iter()
        }
        pub fn keys(&self) -> impl Iterator<Item = &UK> + '_ {
            self.map.keys()
        }
        pub fn values(&self) -> impl Iterator<Item = &UV> + '_ {
            self.map.values()
        }
        pub fn len(&self) -> usize {
            self.map.len()
        }
        pub fn is_empty(&self) -> bool {
            self.map.is_empty()
        }
    };
}

impl<UK: Key, UV: Data> ReadOnlyBroadcastState<'_, UK, UV> {
    broadcast_reads!();
}

/// Read and write access to a broadcast state (what `process_broadcast_element` gets).
pub struct BroadcastState<'a, UK, UV> {
    map: &'a mut KeyMap<UK, UV>,
}

impl<UK: Key, UV: Data> BroadcastState<'_, UK, UV> {
    broadcast_reads!();

    pub fn put(&mut self, key: UK, value: UV) {
        self.map.insert(key, value);
    }
    pub fn put_all(&mut self, entries: impl IntoIterator<Item = (UK, UV)>) {
        self.map.extend(entries)
    }
    pub fn remove<Q>(&mut self, key: &Q) -> Option<UV>
    where
        UK: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key)
    }
    pub fn clear(&mut self) {
        self.map.clear()
    }
}

/// The context of [`BroadcastProcessFunction::process_element`]: the broadcast state read-only
/// (Flink's `ReadOnlyContext`).
pub struct ReadOnlyBroadcastContext<'a> {
    inner: Context<'a>,
    broadcast: &'a BroadcastStateStore,
    watermark: i64,
    clock: &'a ClockRef,
}

/// The context of [`BroadcastProcessFunction::process_broadcast_element`]: the broadcast state
/// to read and write.
pub struct BroadcastContext<'a> {
    inner: Context<'a>,
    broadcast: &'a mut BroadcastStateStore,
    watermark: i64,
    clock: &'a ClockRef,
}

/// Timestamp, side outputs and time, shared by the broadcast contexts.
macro_rules! context_common {
    () => {
        /// The event timestamp of the current record, if it has one.
        pub fn timestamp(&self) -> Option<i64> {
            self.inner.timestamp()
        }
        /// Emits a record to a side output.
        pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
            self.inner.output(tag, value)
        }
        /// The operator's event time: `i64::MIN` before the first watermark.
        pub fn current_watermark(&self) -> i64 {
            self.watermark
        }
        /// Milliseconds since the epoch.
        pub fn current_processing_time(&self) -> i64 {
            self.clock.now_ms()
        }
    };
}

impl ReadOnlyBroadcastContext<'_> {
    context_common!();

    /// The broadcast state `desc`, read-only; an error if the broadcast stream did not declare
    /// it with these types.
    pub fn broadcast_state<UK: Key, UV: Data>(
        &self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<ReadOnlyBroadcastState<'_, UK, UV>> {
        Ok(ReadOnlyBroadcastState { map: self.broadcast.map(desc)? })
    }
}

impl BroadcastContext<'_> {
    context_common!();

    /// The broadcast state `desc`; an error if the broadcast stream did not declare it with
    /// these types.
    pub fn broadcast_state<UK: Key, UV: Data>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<BroadcastState<'_, UK, UV>> {
        Ok(BroadcastState { map: self.broadcast.map_mut(desc)? })
    }
}

/// The context of [`KeyedBroadcastProcessFunction::process_element`] and `on_timer`: the
/// current key with its state and timers (everything of a [`KeyedContext`], which it derefs
/// to), and the broadcast state read-only.
pub struct KeyedReadOnlyContext<'c, 'a, K> {
    keyed: &'c mut KeyedContext<'a, K>,
    broadcast: &'c BroadcastStateStore,
}

impl<'a, K: Key> Deref for KeyedReadOnlyContext<'_, 'a, K> {
    type Target = KeyedContext<'a, K>;
    fn deref(&self) -> &Self::Target {
        self.keyed
    }
}

impl<K: Key> DerefMut for KeyedReadOnlyContext<'_, '_, K> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.keyed
    }
}

impl<K: Key> KeyedReadOnlyContext<'_, '_, K> {
    /// The broadcast state `desc`, read-only; an error if the broadcast stream did not declare
    /// it with these types.
    pub fn broadcast_state<UK: Key, UV: Data>(
        &self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<ReadOnlyBroadcastState<'_, UK, UV>> {
        Ok(ReadOnlyBroadcastState { map: self.broadcast.map(desc)? })
    }
}

/// The context of [`KeyedBroadcastProcessFunction::process_broadcast_element`]: the broadcast
/// state to read and write, and every key's state through
/// [`apply_to_keyed_state`](Self::apply_to_keyed_state).
pub struct KeyedBroadcastContext<'a, K> {
    inner: Context<'a>,
    broadcast: &'a mut BroadcastStateStore,
    state: &'a mut KeyedState<K>,
    timers: &'a mut InternalTimers<K>,
    watermark: i64,
    clock: &'a ClockRef,
}

impl<K: Key> KeyedBroadcastContext<'_, K> {
    context_common!();

    /// The broadcast state `desc`; an error if the broadcast stream did not declare it with
    /// these types.
    pub fn broadcast_state<UK: Key, UV: Data>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> Result<BroadcastState<'_, UK, UV>> {
        Ok(BroadcastState { map: self.broadcast.map_mut(desc)? })
    }

    /// Calls `f` once for every key of this subtask that holds an entry of the keyed state
    /// `desc` (Flink's `applyToKeyedState`), with a keyed context for that key: its state (of
    /// any descriptor, not only `desc`) and its timers. Keys are visited in a fixed order;
    /// the function's first error stops the visit.
    ///
    /// Records to emit go to the collector of `process_broadcast_element`, which `f` can
    /// capture.
    pub fn apply_to_keyed_state<D: KeyedStateDescriptor>(
        &mut self,
        desc: &D,
        mut f: impl FnMut(&mut KeyedContext<K>) -> Result<()>,
    ) -> Result<()> {
        let keys = desc.keys_in(self.state)?;
        for key in &keys {
            let mut ctx = KeyedContext {
                inner: Context::new(self.inner.timestamp, &mut *self.inner.side),
                key,
                timers: &mut *self.timers,
                state: &mut *self.state,
                watermark: self.watermark,
                clock: self.clock,
                time_domain: None,
            };
            f(&mut ctx)?;
            ctx.inner.finish()?;
        }
        Ok(())
    }
}

/// A function over a stream connected to a [`BroadcastStream`] (Flink's
/// `BroadcastProcessFunction`).
pub trait BroadcastProcessFunction<I, B, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    /// A record of the main stream, with the broadcast state read-only.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut ReadOnlyBroadcastContext,
        out: &mut Collector<O>,
    ) -> Result<()>;
    /// A broadcast record (every subtask sees each one), with the broadcast state to update.
    fn process_broadcast_element(
        &mut self,
        value: B,
        ctx: &mut BroadcastContext,
        out: &mut Collector<O>,
    ) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A function over a keyed stream connected to a [`BroadcastStream`] (Flink's
/// `KeyedBroadcastProcessFunction`).
pub trait KeyedBroadcastProcessFunction<K, I, B, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    /// A record of the keyed stream: its key's state and timers, the broadcast state read-only.
    fn process_element(
        &mut self,
        value: I,
        ctx: &mut KeyedReadOnlyContext<K>,
        out: &mut Collector<O>,
    ) -> Result<()>;
    /// A broadcast record (every subtask sees each one): the broadcast state to update, and
    /// every key's state through `apply_to_keyed_state`.
    fn process_broadcast_element(
        &mut self,
        value: B,
        ctx: &mut KeyedBroadcastContext<K>,
        out: &mut Collector<O>,
    ) -> Result<()>;
    /// A timer of `ctx.current_key()` fired at `timestamp`.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedReadOnlyContext<K>,
        _out: &mut Collector<O>,
    ) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A stream connected to a broadcast stream (Flink's `BroadcastConnectedStream`).
pub struct BroadcastConnectedStream<I, B> {
    pub(crate) main: DataStream<I>,
    pub(crate) broadcast: BroadcastStream<B>,
}

impl<I: Data, B: Data> BroadcastConnectedStream<I, B> {
    /// Applies a [`BroadcastProcessFunction`].
    pub fn process<O: Data, P: BroadcastProcessFunction<I, B, O>>(&self, f: P) -> DataStream<O> {
        let declared = self.broadcast.declared.clone();
        self.main.connect(&self.broadcast.stream).transform("Broadcast Process", move |ctx| {
            Ok(BroadcastProcessOperator {
                f: f.clone(),
                broadcast: BroadcastStateStore::new(&declared, &ctx.operator_name),
                watermark: i64::MIN,
                clock: ctx.clock.clone(),
                _t: PhantomData,
            })
        })
    }
}

/// A keyed stream connected to a broadcast stream.
pub struct KeyedBroadcastConnectedStream<I, B, K, F> {
    pub(crate) main: DataStream<I>,
    pub(crate) key: F,
    pub(crate) broadcast: BroadcastStream<B>,
    pub(crate) _k: PhantomData<fn() -> K>,
}

impl<I: Data, B: Data, K: Key, F> KeyedBroadcastConnectedStream<I, B, K, F>
where
    F: Fn(&I) -> K + Clone + Send + Sync + 'static,
{
    /// Applies a [`KeyedBroadcastProcessFunction`].
    pub fn process<O: Data, P: KeyedBroadcastProcessFunction<K, I, B, O>>(&self, f: P) -> DataStream<O> {
        let declared = self.broadcast.declared.clone();
        let key = self.key.clone();
        self.main.connect(&self.broadcast.stream).transform("Keyed Broadcast Process", move |ctx| {
            Ok(KeyedBroadcastProcessOperator {
                key: key.clone(),
                f: f.clone(),
                core: KeyedCore::new(ctx)?,
                broadcast: BroadcastStateStore::new(&declared, &ctx.operator_name),
                _t: PhantomData,
            })
        })
    }
}

pub(crate) struct BroadcastProcessOperator<I, B, O, P> {
    f: P,
    broadcast: BroadcastStateStore,
    watermark: i64,
    clock: ClockRef,
    _t: PhantomData<fn(I, B) -> O>,
}

impl<I: Data, B: Data, O: Data, P: BroadcastProcessFunction<I, B, O>> TwoInputOperator
    for BroadcastProcessOperator<I, B, O, P>
{
    type In1 = I;
    type In2 = B;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        restored.map_or(Ok(()), |r| self.broadcast.restore(r))
    }

    fn snapshot_state(&mut self, _barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.broadcast.snapshot().map(Some)
    }

    fn process_batch1(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in batch.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = ReadOnlyBroadcastContext {
                inner: Context::new(ts, side),
                broadcast: &self.broadcast,
                watermark: self.watermark,
                clock: &self.clock,
            };
            let mut c = Collector::new(main);
            self.f.process_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.inner.finish()?;
        }
        Ok(())
    }

    fn process_batch2(&mut self, batch: Batch<B>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        for (v, ts) in batch.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = BroadcastContext {
                inner: Context::new(ts, side),
                broadcast: &mut self.broadcast,
                watermark: self.watermark,
                clock: &self.clock,
            };
            let mut c = Collector::new(main);
            self.f.process_broadcast_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.inner.finish()?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<O>) -> Result<()> {
        self.watermark = watermark;
        out.emit_watermark(watermark)
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

pub(crate) struct KeyedBroadcastProcessOperator<K, I, B, O, KF, P> {
    key: KF,
    f: P,
    core: KeyedCore<K>,
    broadcast: BroadcastStateStore,
    _t: PhantomData<fn(K, I, B) -> O>,
}

/// A keyed broadcast operator's checkpoint: its keyed state and timers (as a keyed process
/// operator writes them) and its copy of the broadcast state.
#[derive(Serialize, Deserialize)]
struct KeyedBroadcastSnapshot {
    #[serde(with = "serde_bytes")]
    keyed: Vec<u8>,
    #[serde(with = "serde_bytes")]
    broadcast: Vec<u8>,
}

/// `restored` with each old subtask's bytes replaced by one part of them.
fn restored_part(
    restored: &RestoredState,
    parts: &[(usize, KeyedBroadcastSnapshot)],
    part: impl Fn(&KeyedBroadcastSnapshot) -> &Vec<u8>,
) -> RestoredState {
    RestoredState {
        states: parts.iter().map(|(old, s)| (*old, part(s).clone())).collect(),
        ..restored.clone()
    }
}

impl<K, I, B, O, KF, P> TwoInputOperator for KeyedBroadcastProcessOperator<K, I, B, O, KF, P>
where
    K: Key,
    I: Data,
    B: Data,
    O: Data,
    KF: Fn(&I) -> K + Send + 'static,
    P: KeyedBroadcastProcessFunction<K, I, B, O>,
{
    type In1 = I;
    type In2 = B;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.core.max_parallelism = ctx.max_parallelism;
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        let Some(restored) = restored else { return Ok(()) };
        let parts = restored
            .states
            .iter()
            .map(|(old, bytes)| {
                // The keyed part's shared files (incremental checkpoints) head the whole state.
                let (_, bytes) = split_shared_files(bytes)?;
                let s = decode_value::<KeyedBroadcastSnapshot>(bytes).map_err(|e| EddyError::BadInput {
                    location: format!(
                        "state of '{}', subtask {} of the checkpoint",
                        restored.operator_name,
                        old + 1
                    ),
                    reason: e.to_string(),
                })?;
                Ok((*old, s))
            })
            .collect::<Result<Vec<_>>>()?;
        self.core.restore(&restored_part(restored, &parts, |s| &s.keyed))?;
        self.broadcast.restore(&restored_part(restored, &parts, |s| &s.broadcast))
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        let keyed = self.core.snapshot(barrier)?;
        // The checkpoint storage finds the shared files an incremental snapshot references in
        // a header at the front of an operator's bytes: moved from the keyed part to the whole.
        let (shared, keyed) = split_shared_files(&keyed)?;
        let snapshot =
            KeyedBroadcastSnapshot { keyed: keyed.to_vec(), broadcast: self.broadcast.snapshot()? };
        let mut bytes = Vec::new();
        encode_value(&snapshot, &mut bytes)?;
        if shared.is_empty() {
            return Ok(Some(bytes));
        }
        with_shared_files(&shared, &bytes).map(Some)
    }

    fn process_batch1(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        for (v, ts) in batch.into_iter_with_timestamps() {
            let key = (self.key)(&v);
            let (f, broadcast) = (&mut self.f, &self.broadcast);
            self.core.call(&key, ts, None, out, |keyed, c| {
                f.process_element(v, &mut KeyedReadOnlyContext { keyed, broadcast }, c)
            })?;
        }
        Ok(())
    }

    fn process_batch2(&mut self, batch: Batch<B>, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        let core = &mut self.core;
        for (v, ts) in batch.into_iter_with_timestamps() {
            main.set_timestamp(ts);
            let mut ctx = KeyedBroadcastContext {
                inner: Context::new(ts, side),
                broadcast: &mut self.broadcast,
                state: &mut core.state,
                timers: &mut core.timers,
                watermark: core.watermark,
                clock: &core.clock,
            };
            let mut c = Collector::new(main);
            self.f.process_broadcast_element(v, &mut ctx, &mut c)?;
            c.finish()?;
            ctx.inner.finish()?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<O>) -> Result<()> {
        let (f, broadcast) = (&mut self.f, &self.broadcast);
        self.core.advance_watermark(watermark, out, |ts, keyed, c| {
            f.on_timer(ts, &mut KeyedReadOnlyContext { keyed, broadcast }, c)
        })
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.core.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<O>) -> Result<()> {
        let (f, broadcast) = (&mut self.f, &self.broadcast);
        self.core.fire(TimeDomain::ProcessingTime, now, out, |ts, keyed, c| {
            f.on_timer(ts, &mut KeyedReadOnlyContext { keyed, broadcast }, c)
        })
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MapStateDescriptor<String, i64> {
        MapStateDescriptor::new("rules")
    }

    fn store_holding(entries: &[(&str, i64)]) -> BroadcastStateStore {
        let mut s = BroadcastStateStore::new(&[Declared::of(&rules())], "op");
        let map = s.map_mut(&rules()).unwrap();
        map.extend(entries.iter().map(|(k, v)| (k.to_string(), *v)));
        s
    }

    fn restored(
        states: Vec<(usize, Vec<u8>)>,
        old: usize,
        subtask: usize,
        parallelism: usize,
    ) -> RestoredState {
        RestoredState::new("op", states, old, subtask, parallelism, 128)
    }

    fn sorted(s: &BroadcastStateStore) -> Vec<(String, i64)> {
        let mut v: Vec<_> = s.map(&rules()).unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect();
        v.sort();
        v
    }

    #[test]
    fn each_new_subtask_takes_the_copy_of_old_subtask_index_modulo_old_parallelism() {
        // The copies differ here only so that the test can tell which one was taken.
        let copies: Vec<(usize, Vec<u8>)> =
            (0..2).map(|i| (i, store_holding(&[("copy", i as i64)]).snapshot().unwrap())).collect();
        for (subtask, parallelism, want) in [(0, 3, 0), (1, 3, 1), (2, 3, 0), (0, 1, 0)] {
            let mut s = BroadcastStateStore::new(&[Declared::of(&rules())], "op");
            s.restore(&restored(copies.clone(), 2, subtask, parallelism)).unwrap();
            assert_eq!(sorted(&s), vec![("copy".to_string(), want)], "subtask {subtask} of {parallelism}");
        }
    }

    #[test]
    fn undeclared_and_mistyped_states_are_errors_not_silent_loss() {
        let bytes = store_holding(&[("a", 1)]).snapshot().unwrap();
        // Not declared now: kept and written back.
        let mut s = BroadcastStateStore::new(&[], "op");
        s.restore(&restored(vec![(0, bytes.clone())], 1, 0, 1)).unwrap();
        let err = s.map(&rules()).unwrap_err().to_string();
        assert!(err.contains("broadcast state 'rules' of 'op' is not declared"), "{err}");
        assert_eq!(s.snapshot().unwrap(), bytes);
        // Declared with other types.
        let other = MapStateDescriptor::<String, String>::new("rules");
        let mut s = BroadcastStateStore::new(&[Declared::of(&other)], "op");
        let err = s.restore(&restored(vec![(0, bytes)], 1, 0, 1)).unwrap_err().to_string();
        assert!(err.contains("state 'rules' holds (alloc::string::String, i64)"), "{err}");
        let err = s.map(&rules()).unwrap_err().to_string();
        assert!(err.contains("holds (alloc::string::String, alloc::string::String), not"), "{err}");
    }

    #[test]
    fn corrupt_bytes_name_the_operator_and_subtask() {
        let mut s = BroadcastStateStore::new(&[Declared::of(&rules())], "rules op");
        let err = s.restore(&restored(vec![(0, vec![1, 2, 3])], 1, 0, 1)).unwrap_err();
        assert!(matches!(err, EddyError::BadInput { .. }), "{err:?}");
        assert!(err.to_string().contains("broadcast state of 'rules op', subtask 1"), "{err}");
    }
}
