//! The operators behind the DataStream API, all on the runtime's one- and two-input core.
//!
//! Each handles a batch per call. Where it can, an operator transforms the batch in place
//! (`map` reuses the batch's allocation when input and output have the same layout, `filter`
//! retains in place), so a chain of them moves records without copying them.

use std::collections::HashMap;
use std::sync::Arc;

use eddy_core::config::{RuntimeMode, StateBackendConfig, StateBackendKind};
use eddy_core::keygroup::assign_to_key_group;
use eddy_core::CheckpointBarrier;
use eddy_core::{Batch, Data, Key, Result};
use eddy_runtime::checkpoint::storage::{split_shared_files, with_shared_files};
use eddy_runtime::checkpoint::{RestoredState, SnapshotBytes};
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext, TwoInputOperator};

use crate::functions::{
    CoProcessFunction, Collector, Context, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
    ProcessFunction, RuntimeContext,
};
use crate::state::{KeyedState, KeyedStateDescriptor, ValueStateDescriptor};
use crate::timers::{InternalTimers, TimeDomain};
use eddy_runtime::time::ClockRef;

/// Hash maps for per-key state. Keys are routed to subtasks by the stable key-group hash; inside
/// a subtask any fast hash will do, and a fixed seed keeps iteration order reproducible.
pub(crate) type KeyMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

pub(crate) struct MapOperator<I, O, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, F: FnMut(I) -> O + Send + 'static> OneInputOperator for MapOperator<I, O, F> {
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        let values: Vec<O> = batch.values.into_iter().map(f).collect();
        out.emit_batch(Batch { values, timestamps: batch.timestamps })
    }
}

pub(crate) struct FilterOperator<T, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Data, F: FnMut(&T) -> bool + Send + 'static> OneInputOperator for FilterOperator<T, F> {
    type In = T;
    type Out = T;

    #[inline]
    fn process_batch(&mut self, mut batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        let f = &mut self.f;
        if batch.timestamps.is_empty() {
            batch.values.retain(|v| f(v));
            return out.emit_batch(batch);
        }
        let mut kept = Batch::with_capacity(batch.len());
        for (v, ts) in batch.into_iter_with_timestamps() {
            if f(&v) {
                kept.push_with_timestamp(v, ts);
            }
        }
        out.emit_batch(kept)
    }
}

pub(crate) struct FlatMapOperator<I, O, F> {
    pub f: F,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, F: FnMut(I, &mut Collector<O>) + Send + 'static> OneInputOperator
    for FlatMapOperator<I, O, F>
{
    type In = I;
    type Out = O;

    #[inline]
    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        let (main, _) = out.split();
        let mut c = Collector::new(main);
        if batch.timestamps.is_empty() {
            for v in batch.values {
                f(v, &mut c);
            }
        } else {
            for (v, ts) in batch.into_iter_with_timestamps() {
                c.out_mut().set_timestamp(ts);
                f(v, &mut c);
            }
            c.out_mut().set_timestamp(eddy_core::NO_TIMESTAMP);
        }
        c.finish()
    }
}

/// Calls `f` for every record of `batch` with its context (timestamp, side outputs) and a
/// collector; the first error stops the batch.
fn process_each<I, O: Data>(
    batch: Batch<I>,
    out: &mut Emitter<O>,
    mut f: impl FnMut(I, &mut Context, &mut Collector<O>) -> Result<()>,
) -> Result<()> {
    let (main, side) = out.split();
    for (v, ts) in batch.into_iter_with_timestamps() {
        main.set_timestamp(ts);
        let mut ctx = Context::new(ts, side);
        let mut c = Collector::new(main);
        f(v, &mut ctx, &mut c)?;
        c.finish()?;
        ctx.finish()?;
    }
    Ok(())
}

pub(crate) struct ProcessOperator<I, O, P> {
    pub f: P,
    pub _t: std::marker::PhantomData<fn(I) -> O>,
}

impl<I: Data, O: Data, P: ProcessFunction<I, O>> OneInputOperator for ProcessOperator<I, O, P> {
    type In = I;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        process_each(batch, out, |v, ctx, c| f.process_element(v, ctx, c))
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

/// What every keyed function operator keeps besides the function: timers, keyed state, the
/// current event time and the clock.
pub(crate) struct KeyedCore<K> {
    pub timers: InternalTimers<K>,
    pub state: KeyedState<K>,
    pub watermark: i64,
    pub clock: ClockRef,
    /// Key groups of the operator (set in `open`): how its state is split in a snapshot.
    pub max_parallelism: usize,
}

/// A placeholder for a snapshot moved out of a [`KeyedCoreSnapshot`].
fn empty_snapshot() -> crate::state::KeyedStateSnapshot {
    crate::state::KeyedStateSnapshot {
        format_version: crate::state::SNAPSHOT_FORMAT_VERSION,
        max_parallelism: 1,
        states: Vec::new(),
        shared: Vec::new(),
    }
}

/// What a keyed operator's checkpoint holds: its keyed state by key group and its timers.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "K: Key")]
struct KeyedCoreSnapshot<K> {
    state: crate::state::KeyedStateSnapshot,
    event_timers: Vec<(i64, K)>,
    processing_timers: Vec<(i64, K)>,
}

impl<K: Key> KeyedCore<K> {
    /// Timers and keyed state on the backend the job's configuration names (`state.backend`).
    pub fn new(ctx: &OperatorContext) -> Result<Self> {
        Ok(KeyedCore {
            timers: InternalTimers::default(),
            state: KeyedState::new(ctx.state_backend.clone(), ctx.max_parallelism)?,
            watermark: i64::MIN,
            clock: ctx.clock.clone(),
            max_parallelism: ctx.max_parallelism,
        })
    }

    /// Keyed state and timers as bytes, for checkpoint or savepoint `barrier`: a savepoint is
    /// always a full snapshot, a checkpoint may be incremental (`state.backend.incremental`),
    /// its bytes then listing the shared files it references for the checkpoint storage.
    pub fn snapshot(&mut self, barrier: &CheckpointBarrier) -> Result<Vec<u8>> {
        self.snapshot_async(barrier)?.into_bytes()
    }

    /// [`snapshot`](Self::snapshot) in two parts: on the `fjall` backend this call writes the
    /// state caches back, takes an MVCC view and copies the timers, and the deferred part
    /// reads the view, encodes the bytes and writes the shared files of an incremental
    /// checkpoint. On the heap backend the whole snapshot is taken now.
    pub fn snapshot_async(&mut self, barrier: &CheckpointBarrier) -> Result<SnapshotBytes> {
        let now = self.clock.now_ms();
        let pending = if barrier.kind.is_savepoint() {
            self.state.snapshot_async(self.max_parallelism, now)?
        } else {
            self.state.checkpoint_async(self.max_parallelism, now, barrier.id)?
        };
        let deferred = pending.is_deferred();
        let (event_timers, processing_timers) =
            (self.timers.event.snapshot(), self.timers.processing.snapshot());
        let build = move || -> Result<Vec<u8>> {
            let state = pending.finish()?;
            let shared: Vec<_> = state.shared.iter().map(|s| s.file.clone()).collect();
            let snapshot = KeyedCoreSnapshot { state, event_timers, processing_timers };
            let mut bytes = Vec::new();
            eddy_core::codec::encode_value(&snapshot, &mut bytes)?;
            if shared.is_empty() {
                return Ok(bytes);
            }
            with_shared_files(&shared, &bytes)
        };
        Ok(match deferred {
            true => SnapshotBytes::Deferred(Box::new(build)),
            false => SnapshotBytes::Ready(build()?),
        })
    }

    /// Restores the keyed state and timers of the key groups this subtask owns, out of the
    /// snapshots of every old subtask that held some of them (only its own without a rescale).
    pub fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let decode = |bytes: &[u8]| -> Result<KeyedCoreSnapshot<K>> {
            eddy_core::codec::decode_value(split_shared_files(bytes)?.1)
        };
        let snapshots: Vec<KeyedCoreSnapshot<K>> = restored.keyed().map(decode).collect::<Result<_>>()?;
        let range = restored.key_groups();
        let mut snapshots = snapshots;
        let states: Vec<_> =
            snapshots.iter_mut().map(|s| std::mem::replace(&mut s.state, empty_snapshot())).collect();
        self.state.restore(states, range.clone())?;
        let max_parallelism = restored.max_parallelism;
        let mine = |timers: Vec<(i64, K)>| -> Vec<(i64, K)> {
            timers
                .into_iter()
                .filter(|(_, k)| range.contains(&assign_to_key_group(k, max_parallelism)))
                .collect()
        };
        let (mut event, mut processing) = (Vec::new(), Vec::new());
        for s in snapshots {
            event.extend(mine(s.event_timers));
            processing.extend(mine(s.processing_timers));
        }
        self.timers.event.restore(event);
        self.timers.processing.restore(processing);
        Ok(())
    }

    /// Calls `f` with a keyed context for `key` and a collector, then checks both for errors.
    pub fn call<O: Data>(
        &mut self,
        key: &K,
        ts: i64,
        domain: Option<TimeDomain>,
        out: &mut Emitter<O>,
        f: impl FnOnce(&mut KeyedContext<K>, &mut Collector<O>) -> Result<()>,
    ) -> Result<()> {
        let (main, side) = out.split();
        main.set_timestamp(ts);
        let mut ctx = KeyedContext {
            inner: Context::new(ts, side),
            key,
            timers: &mut self.timers,
            state: &mut self.state,
            watermark: self.watermark,
            clock: &self.clock,
            time_domain: domain,
        };
        let mut c = Collector::new(main);
        f(&mut ctx, &mut c)?;
        c.finish()?;
        ctx.inner.finish()
    }

    /// Fires, in timestamp order, the timers of `domain` due at `time` (including timers that
    /// firing timers register for times already due).
    pub fn fire<O: Data>(
        &mut self,
        domain: TimeDomain,
        time: i64,
        out: &mut Emitter<O>,
        mut on_timer: impl FnMut(i64, &mut KeyedContext<K>, &mut Collector<O>) -> Result<()>,
    ) -> Result<()> {
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.timers.event,
                TimeDomain::ProcessingTime => &mut self.timers.processing,
            };
            let Some((ts, key)) = queue.pop_due(time) else { return Ok(()) };
            let out_ts = if domain == TimeDomain::EventTime { ts } else { eddy_core::NO_TIMESTAMP };
            self.call(&key, out_ts, Some(domain), out, |ctx, c| on_timer(ts, ctx, c))?;
        }
    }

    /// Event time advanced: fire due event-time timers, then forward the watermark.
    pub fn advance_watermark<O: Data>(
        &mut self,
        watermark: i64,
        out: &mut Emitter<O>,
        on_timer: impl FnMut(i64, &mut KeyedContext<K>, &mut Collector<O>) -> Result<()>,
    ) -> Result<()> {
        self.watermark = watermark;
        self.fire(TimeDomain::EventTime, watermark, out, on_timer)?;
        out.emit_watermark(watermark)
    }

    pub fn next_processing_time(&self) -> Option<i64> {
        self.timers.processing.peek_hint()
    }
}

pub(crate) struct KeyedProcessOperator<K, I, O, KF, P> {
    pub key: KF,
    pub f: P,
    pub core: KeyedCore<K>,
    pub _t: std::marker::PhantomData<fn(K, I) -> O>,
}

impl<K, I, O, KF, P> OneInputOperator for KeyedProcessOperator<K, I, O, KF, P>
where
    K: Key,
    I: Data,
    O: Data,
    KF: Fn(&I) -> K + Send + 'static,
    P: KeyedProcessFunction<K, I, O>,
{
    type In = I;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.core.max_parallelism = ctx.max_parallelism;
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        restored.map_or(Ok(()), |r| self.core.restore(r))
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.core.snapshot(barrier).map(Some)
    }

    fn snapshot_state_async(
        &mut self,
        barrier: &eddy_core::CheckpointBarrier,
    ) -> Result<Option<SnapshotBytes>> {
        self.core.snapshot_async(barrier).map(Some)
    }

    fn process_batch(&mut self, batch: Batch<I>, out: &mut Emitter<O>) -> Result<()> {
        for (v, ts) in batch.into_iter_with_timestamps() {
            let key = (self.key)(&v);
            let f = &mut self.f;
            self.core.call(&key, ts, None, out, |ctx, c| f.process_element(v, ctx, c))?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        self.core.advance_watermark(watermark, out, |ts, ctx, c| f.on_timer(ts, ctx, c))
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.core.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        self.core.fire(TimeDomain::ProcessingTime, now, out, |ts, ctx, c| f.on_timer(ts, ctx, c))
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

pub(crate) struct KeyedCoProcessOperator<K, I1, I2, O, KF1, KF2, P> {
    pub key1: KF1,
    pub key2: KF2,
    pub f: P,
    pub core: KeyedCore<K>,
    pub _t: std::marker::PhantomData<fn(K, I1, I2) -> O>,
}

impl<K, I1, I2, O, KF1, KF2, P> TwoInputOperator for KeyedCoProcessOperator<K, I1, I2, O, KF1, KF2, P>
where
    K: Key,
    I1: Data,
    I2: Data,
    O: Data,
    KF1: Fn(&I1) -> K + Send + 'static,
    KF2: Fn(&I2) -> K + Send + 'static,
    P: KeyedCoProcessFunction<K, I1, I2, O>,
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.core.max_parallelism = ctx.max_parallelism;
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        restored.map_or(Ok(()), |r| self.core.restore(r))
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.core.snapshot(barrier).map(Some)
    }

    fn snapshot_state_async(
        &mut self,
        barrier: &eddy_core::CheckpointBarrier,
    ) -> Result<Option<SnapshotBytes>> {
        self.core.snapshot_async(barrier).map(Some)
    }

    fn process_batch1(&mut self, batch: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        for (v, ts) in batch.into_iter_with_timestamps() {
            let key = (self.key1)(&v);
            let f = &mut self.f;
            self.core.call(&key, ts, None, out, |ctx, c| f.process_element1(v, ctx, c))?;
        }
        Ok(())
    }

    fn process_batch2(&mut self, batch: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        for (v, ts) in batch.into_iter_with_timestamps() {
            let key = (self.key2)(&v);
            let f = &mut self.f;
            self.core.call(&key, ts, None, out, |ctx, c| f.process_element2(v, ctx, c))?;
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        self.core.advance_watermark(watermark, out, |ts, ctx, c| f.on_timer(ts, ctx, c))
    }

    fn next_processing_time(&self) -> Option<i64> {
        self.core.next_processing_time()
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        self.core.fire(TimeDomain::ProcessingTime, now, out, |ts, ctx, c| f.on_timer(ts, ctx, c))
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

/// How a keyed aggregation folds the records of a key into an accumulator.
pub(crate) trait Aggregator<T>: Clone + Send + Sync + 'static {
    type Acc: Data;
    fn create(&mut self, value: T) -> Self::Acc;
    fn add(&mut self, acc: &mut Self::Acc, value: T);
    /// The current result (cloned out: STREAMING emits it and keeps the accumulator).
    fn get(acc: &Self::Acc) -> Option<T>;
    fn into_result(acc: Self::Acc) -> Option<T>;
}

/// A user reduce function `(T, T) -> T`.
#[derive(Clone)]
pub(crate) struct ReduceWith<F>(pub F);

impl<T: Data, F: FnMut(T, T) -> T + Clone + Send + Sync + 'static> Aggregator<T> for ReduceWith<F> {
    // `None` only while the function runs: it takes the accumulator by value.
    type Acc = Option<T>;

    fn create(&mut self, value: T) -> Option<T> {
        Some(value)
    }
    #[inline]
    fn add(&mut self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(a, value),
            None => value,
        });
    }
    fn get(acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
    fn into_result(acc: Option<T>) -> Option<T> {
        acc
    }
}

/// A built-in aggregation that updates the accumulator in place (`sum`, `min`, `max`, ...).
#[derive(Clone)]
pub(crate) struct InPlace<F>(pub F);

impl<T: Data, F: FnMut(&mut T, T) + Clone + Send + Sync + 'static> Aggregator<T> for InPlace<F> {
    type Acc = T;

    fn create(&mut self, value: T) -> T {
        value
    }
    #[inline]
    fn add(&mut self, acc: &mut T, value: T) {
        (self.0)(acc, value)
    }
    #[inline]
    fn get(acc: &T) -> Option<T> {
        Some(acc.clone())
    }
    fn into_result(acc: T) -> Option<T> {
        Some(acc)
    }
}

/// Keyed `reduce` and the aggregations built on it.
///
/// STREAMING: emits the updated result for every input record. BATCH: emits one final result
/// per key when the input ends.
///
/// Where the accumulators live follows `state.backend` (see [`Accumulators`]); either way a
/// snapshot is the one a keyed process function with one value state named
/// [`AGGREGATE_STATE`] writes, so a savepoint of one backend restores on the other, and at
/// any parallelism.
pub(crate) struct AggregateOperator<T, K, KF, A: Aggregator<T>> {
    key: KF,
    agg: A,
    accs: Accumulators<K, A::Acc>,
    mode: RuntimeMode,
}

/// The name of a keyed aggregation's accumulator state in its snapshots.
pub(crate) const AGGREGATE_STATE: &str = "aggregate";

/// Where a keyed aggregation keeps its accumulators.
enum Accumulators<K, Acc> {
    /// `hashmap`: one plain hash map, the fastest path. The configuration is kept for
    /// restores, which decode snapshots through keyed state.
    Heap { map: KeyMap<K, Acc>, config: Arc<StateBackendConfig>, max_parallelism: usize, clock: ClockRef },
    /// Any other backend: a value state per key, so that incremental checkpoints and state
    /// larger than memory work as for keyed process functions.
    Backend { core: Box<KeyedCore<K>>, desc: ValueStateDescriptor<Acc> },
}

impl<T, K, KF, A> AggregateOperator<T, K, KF, A>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: Aggregator<T>,
{
    pub fn new(key: KF, agg: A, ctx: &OperatorContext) -> Result<Self> {
        let accs = match ctx.state_backend.kind {
            StateBackendKind::HashMap => Accumulators::Heap {
                map: KeyMap::default(),
                config: ctx.state_backend.clone(),
                max_parallelism: ctx.max_parallelism,
                clock: ctx.clock.clone(),
            },
            _ => Accumulators::Backend {
                core: Box::new(KeyedCore::new(ctx)?),
                desc: ValueStateDescriptor::new(AGGREGATE_STATE),
            },
        };
        Ok(AggregateOperator { key, agg, accs, mode: ctx.runtime_mode })
    }

    /// Folds `value` into its key's accumulator in `map` and returns the accumulator.
    #[inline]
    fn fold<'m>(key: &KF, agg: &mut A, map: &'m mut KeyMap<K, A::Acc>, value: T) -> &'m A::Acc {
        use std::collections::hash_map::Entry;
        match map.entry(key(&value)) {
            Entry::Occupied(o) => {
                let acc = o.into_mut();
                agg.add(acc, value);
                acc
            }
            Entry::Vacant(v) => v.insert(agg.create(value)),
        }
    }

    /// Folds `value` into its key's accumulator in keyed state; returns the result to emit if
    /// `emit`.
    fn fold_in_state(
        key: &KF,
        agg: &mut A,
        state: &mut KeyedState<K>,
        desc: &ValueStateDescriptor<A::Acc>,
        value: T,
        emit: bool,
    ) -> Result<Option<T>> {
        let key = key(&value);
        if let Some(acc) = state.value_state(desc, &key, 0)?.into_value_mut() {
            agg.add(acc, value);
            return Ok(if emit { A::get(acc) } else { None });
        }
        let acc = agg.create(value);
        let result = if emit { A::get(&acc) } else { None };
        state.value_state(desc, &key, 0)?.update(acc);
        Ok(result)
    }

    fn emit_all(&mut self, out: &mut Emitter<T>) -> Result<()> {
        match &mut self.accs {
            Accumulators::Heap { map, .. } => {
                for (_, acc) in map.drain() {
                    if let Some(v) = A::into_result(acc) {
                        out.collect(v)?;
                    }
                }
            }
            Accumulators::Backend { core, desc } => {
                for key in desc.keys_in(&mut core.state)? {
                    let mut acc = core.state.value_state(desc, &key, 0)?;
                    if let Some(v) = acc.value().and_then(A::get) {
                        out.collect(v)?;
                    }
                    acc.clear();
                }
            }
        }
        Ok(())
    }
}

/// The bytes [`KeyedCore::snapshot`] writes for one value state `name` holding `entries`, with
/// no timers: what a keyed aggregation on the heap writes.
fn value_state_snapshot<'a, K: Key, V: Data>(
    name: &str,
    entries: impl Iterator<Item = (&'a K, &'a V)>,
    max_parallelism: usize,
) -> Result<Vec<u8>> {
    use crate::state::{KeyedStateSnapshot, Stamped, StateKind, StateSnapshot};
    let stamped = entries.map(|(k, v)| (k, Stamped { value: v, stamp: 0 }));
    let key_groups = crate::windowing::checkpoint::cut_by_key_group(stamped, max_parallelism)?;
    let state = StateSnapshot {
        name: name.to_string(),
        kind: StateKind::Value,
        value_types: std::any::type_name::<V>().to_string(),
        ttl: false,
        key_groups,
    };
    let snapshot: KeyedCoreSnapshot<K> = KeyedCoreSnapshot {
        state: KeyedStateSnapshot {
            format_version: crate::state::SNAPSHOT_FORMAT_VERSION,
            max_parallelism,
            states: vec![state],
            shared: Vec::new(),
        },
        event_timers: Vec::new(),
        processing_timers: Vec::new(),
    };
    let mut bytes = Vec::new();
    eddy_core::codec::encode_value(&snapshot, &mut bytes)?;
    Ok(bytes)
}

impl<T, K, KF, A> OneInputOperator for AggregateOperator<T, K, KF, A>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: Aggregator<T>,
{
    type In = T;
    type Out = T;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        match &mut self.accs {
            Accumulators::Heap { max_parallelism, .. } => *max_parallelism = ctx.max_parallelism,
            Accumulators::Backend { core, .. } => core.max_parallelism = ctx.max_parallelism,
        }
        Ok(())
    }

    /// The accumulators of the keys this subtask owns, as they were at the checkpoint, out of
    /// snapshots of either backend (incremental ones included).
    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        let Some(restored) = restored else { return Ok(()) };
        match &mut self.accs {
            Accumulators::Backend { core, .. } => core.restore(restored),
            Accumulators::Heap { map, config, clock, .. } => {
                let mut core = KeyedCore {
                    timers: InternalTimers::default(),
                    state: KeyedState::new(config.clone(), restored.max_parallelism)?,
                    watermark: i64::MIN,
                    clock: clock.clone(),
                    max_parallelism: restored.max_parallelism,
                };
                core.restore(restored)?;
                let desc = ValueStateDescriptor::<A::Acc>::new(AGGREGATE_STATE);
                for key in desc.keys_in(&mut core.state)? {
                    let acc = core.state.value_state(&desc, &key, 0)?.value().cloned();
                    if let Some(acc) = acc {
                        map.insert(key, acc);
                    }
                }
                Ok(())
            }
        }
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        match &mut self.accs {
            Accumulators::Heap { map, max_parallelism, .. } => {
                value_state_snapshot(AGGREGATE_STATE, map.iter(), *max_parallelism).map(Some)
            }
            Accumulators::Backend { core, .. } => core.snapshot(barrier).map(Some),
        }
    }

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        let (key, agg) = (&self.key, &mut self.agg);
        let emit = self.mode != RuntimeMode::Batch;
        let Batch { values, timestamps } = batch;
        // The result keeps the timestamp of the record that updated it.
        let mut ts = timestamps.into_iter();
        match &mut self.accs {
            Accumulators::Heap { map, .. } if !emit => {
                for v in values {
                    Self::fold(key, agg, map, v);
                }
            }
            Accumulators::Heap { map, .. } => {
                for v in values {
                    let t = ts.next().unwrap_or(eddy_core::NO_TIMESTAMP);
                    if let Some(r) = A::get(Self::fold(key, agg, map, v)) {
                        out.collect_with_timestamp(r, t)?;
                    }
                }
            }
            Accumulators::Backend { core, desc } => {
                for v in values {
                    let t = ts.next().unwrap_or(eddy_core::NO_TIMESTAMP);
                    if let Some(r) = Self::fold_in_state(key, agg, &mut core.state, desc, v, emit)? {
                        out.collect_with_timestamp(r, t)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn end_input(&mut self, out: &mut Emitter<T>) -> Result<()> {
        if self.mode == RuntimeMode::Batch {
            self.emit_all(out)?;
        }
        Ok(())
    }
}

/// Pre-aggregates per key before the keyed exchange (BATCH only).
///
/// A small direct-mapped cache of partial results that stays in the CPU cache. A record whose
/// key holds its slot is folded in place. A record of another key weakens the holder (a hit
/// counter, as in frequent-items sketches) and passes on unaggregated; once the counter runs
/// out, the holder's partial result is sent on and the new key takes the slot. Frequent keys
/// thus stay and cross the exchange a few times instead of once per record, rare keys cannot
/// push them out, memory stays bounded whatever the number of keys, and the keyed operator
/// downstream merges the partial results (which is why reduce functions must be associative,
/// as for Flink's batch combiners). The job graph leaves the combiner out in STREAMING, where
/// every update must be emitted; should it run there anyway, it passes records through.
pub(crate) struct CombineOperator<T, K, KF, A: Aggregator<T>> {
    key: KF,
    agg: A,
    slots: Vec<Option<Slot<K, A::Acc>>>,
    mode: RuntimeMode,
}

struct Slot<K, Acc> {
    key: K,
    acc: Acc,
    strength: u32,
}

/// The most a slot's hit counter can hold: how many misses a proven-frequent key survives.
const MAX_STRENGTH: u32 = 16;

/// Slots of a combiner: a few hundred KiB for typical records, within a core's L2 cache.
pub(crate) const COMBINER_SLOTS: usize = 16384;

impl<T, K, KF, A> CombineOperator<T, K, KF, A>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: Aggregator<T>,
{
    pub fn new(key: KF, agg: A, mode: RuntimeMode) -> Self {
        let slots =
            if mode == RuntimeMode::Batch { (0..COMBINER_SLOTS).map(|_| None).collect() } else { Vec::new() };
        CombineOperator { key, agg, slots, mode }
    }
}

impl<T, K, KF, A> OneInputOperator for CombineOperator<T, K, KF, A>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: Aggregator<T>,
{
    type In = T;
    type Out = T;

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Emitter<T>) -> Result<()> {
        if self.mode != RuntimeMode::Batch {
            return out.emit_batch(batch);
        }
        let mask = self.slots.len() - 1;
        for v in batch.values {
            let key = (self.key)(&v);
            let slot = &mut self.slots[eddy_core::keygroup::hash_code(&key) as usize & mask];
            match slot {
                Some(s) if s.key == key => {
                    self.agg.add(&mut s.acc, v);
                    s.strength = (s.strength + 1).min(MAX_STRENGTH);
                }
                Some(s) if s.strength > 1 => {
                    s.strength -= 1;
                    out.collect(v)?;
                }
                _ => {
                    let taken = Slot { key, acc: self.agg.create(v), strength: 1 };
                    if let Some(r) = slot.replace(taken).and_then(|s| A::into_result(s.acc)) {
                        out.collect(r)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn end_input(&mut self, out: &mut Emitter<T>) -> Result<()> {
        for slot in &mut self.slots {
            if let Some(r) = slot.take().and_then(|s| A::into_result(s.acc)) {
                out.collect(r)?;
            }
        }
        Ok(())
    }
}

pub(crate) struct CoMapOperator<I1, I2, O, F1, F2> {
    pub f1: F1,
    pub f2: F2,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

impl<I1, I2, O, F1, F2> TwoInputOperator for CoMapOperator<I1, I2, O, F1, F2>
where
    I1: Data,
    I2: Data,
    O: Data,
    F1: FnMut(I1) -> O + Send + 'static,
    F2: FnMut(I2) -> O + Send + 'static,
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        let values = b.values.into_iter().map(&mut self.f1).collect();
        out.emit_batch(Batch { values, timestamps: b.timestamps })
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        let values = b.values.into_iter().map(&mut self.f2).collect();
        out.emit_batch(Batch { values, timestamps: b.timestamps })
    }
}

pub(crate) struct CoFlatMapOperator<I1, I2, O, F1, F2> {
    pub f1: F1,
    pub f2: F2,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

fn flat_map_batch<I, O: Data>(
    b: Batch<I>,
    out: &mut Emitter<O>,
    f: &mut impl FnMut(I, &mut Collector<O>),
) -> Result<()> {
    let (main, _) = out.split();
    let mut c = Collector::new(main);
    for (v, ts) in b.into_iter_with_timestamps() {
        c.out_mut().set_timestamp(ts);
        f(v, &mut c);
    }
    c.finish()
}

impl<I1, I2, O, F1, F2> TwoInputOperator for CoFlatMapOperator<I1, I2, O, F1, F2>
where
    I1: Data,
    I2: Data,
    O: Data,
    F1: FnMut(I1, &mut Collector<O>) + Send + 'static,
    F2: FnMut(I2, &mut Collector<O>) + Send + 'static,
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        flat_map_batch(b, out, &mut self.f1)
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        flat_map_batch(b, out, &mut self.f2)
    }
}

pub(crate) struct CoProcessOperator<I1, I2, O, P> {
    pub f: P,
    pub _t: std::marker::PhantomData<fn(I1, I2) -> O>,
}

impl<I1: Data, I2: Data, O: Data, P: CoProcessFunction<I1, I2, O>> TwoInputOperator
    for CoProcessOperator<I1, I2, O, P>
{
    type In1 = I1;
    type In2 = I2;
    type Out = O;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch1(&mut self, b: Batch<I1>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        process_each(b, out, |v, ctx, c| f.process_element1(v, ctx, c))
    }

    fn process_batch2(&mut self, b: Batch<I2>, out: &mut Emitter<O>) -> Result<()> {
        let f = &mut self.f;
        process_each(b, out, |v, ctx, c| f.process_element2(v, ctx, c))
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}
