//! The user function interfaces: collectors, process functions and their contexts.
//!
//! Simple transformations take closures (`map(|x| ...)`). The process functions are traits
//! with a context, as in Flink: [`ProcessFunction`], [`KeyedProcessFunction`] and
//! [`CoProcessFunction`]. Functions are cloned once per parallel subtask, so each subtask has
//! its own copy of whatever state a function keeps in its fields.

use std::marker::PhantomData;

use eddy_core::{Data, EddyError, Key, Result, NO_TIMESTAMP};
use eddy_runtime::time::ClockRef;
use eddy_runtime::{MainOutput, MetricGroup, OperatorContext, SideOutputs};

use crate::state::{
    AggregatingState, AggregatingStateDescriptor, KeyedState, ListState, ListStateDescriptor, MapState,
    MapStateDescriptor, ReducingState, ReducingStateDescriptor, StateTtlConfig, ValueState,
    ValueStateDescriptor,
};
use crate::timers::InternalTimers;
pub use crate::timers::TimeDomain;

/// Emits the results of a function (Flink's `Collector`).
pub struct Collector<'a, T> {
    out: &'a mut MainOutput<T>,
    error: Option<EddyError>,
}

impl<'a, T: Data> Collector<'a, T> {
    pub(crate) fn new(out: &'a mut MainOutput<T>) -> Self {
        Collector { out, error: None }
    }

    /// Emits a record, with the timestamp of the input record being processed.
    #[inline]
    pub fn collect(&mut self, value: T) {
        if self.error.is_none() {
            if let Err(e) = self.out.collect(value) {
                self.error = Some(e);
            }
        }
    }

    /// Emits a record with the given event timestamp (milliseconds).
    #[inline]
    pub fn collect_with_timestamp(&mut self, value: T, timestamp: i64) {
        if self.error.is_none() {
            if let Err(e) = self.out.collect_with_timestamp(value, timestamp) {
                self.error = Some(e);
            }
        }
    }

    pub(crate) fn out_mut(&mut self) -> &mut MainOutput<T> {
        self.out
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Names a side output and the type of its records (Flink's `OutputTag`).
#[derive(Debug)]
pub struct OutputTag<T> {
    id: String,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        OutputTag { id: self.id.clone(), _t: PhantomData }
    }
}

impl<T: Data> OutputTag<T> {
    pub fn new(id: impl Into<String>) -> Self {
        OutputTag { id: id.into(), _t: PhantomData }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a function can learn about where it runs (Flink's `RuntimeContext`).
#[derive(Debug, Clone)]
pub struct RuntimeContext {
    pub(crate) op: OperatorContext,
}

impl RuntimeContext {
    /// The context of the operator subtask `op` (operators build it; tests may too).
    pub fn new(op: OperatorContext) -> Self {
        RuntimeContext { op }
    }
    pub fn task_name(&self) -> &str {
        &self.op.operator_name
    }
    /// 0-based.
    pub fn index_of_this_subtask(&self) -> usize {
        self.op.subtask_index
    }
    pub fn number_of_parallel_subtasks(&self) -> usize {
        self.op.parallelism
    }
    pub fn max_number_of_parallel_subtasks(&self) -> usize {
        self.op.max_parallelism
    }
    pub fn job_name(&self) -> &str {
        &self.op.job_name
    }
    /// 0 on the job's first run, then how many restarts came before this one (Flink's
    /// `getAttemptNumber`).
    pub fn attempt_number(&self) -> usize {
        self.op.attempt
    }

    /// The metric group of this operator subtask (Flink's `getMetricGroup`): counters,
    /// gauges, meters and histograms registered here are reported with the subtask's other
    /// metrics as `<operator name>.<name>` (REST, Prometheus, `JobClient::task_metrics`).
    /// Register them in `open` and keep them in the function: a counter's `inc` is one relaxed
    /// atomic add.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// #[derive(Clone, Default)]
    /// struct Parse { bad: Option<Counter> }
    ///
    /// impl ProcessFunction<String, i64> for Parse {
    ///     fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
    ///         self.bad = Some(ctx.metrics().counter("badLines"));
    ///         Ok(())
    ///     }
    ///     fn process_element(&mut self, line: String, _: &mut Context, out: &mut Collector<i64>) -> Result<()> {
    ///         match line.trim().parse() {
    ///             Ok(n) => out.collect(n),
    ///             Err(_) => self.bad.as_ref().map_or((), |c| c.inc()),
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn metrics(&self) -> &MetricGroup {
        &self.op.metrics
    }
}

/// The context of one `process_element` call.
pub struct Context<'a> {
    pub(crate) timestamp: i64,
    pub(crate) side: &'a mut SideOutputs,
    pub(crate) error: Option<EddyError>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(timestamp: i64, side: &'a mut SideOutputs) -> Self {
        Context { timestamp, side, error: None }
    }

    /// The event timestamp of the current record, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        (self.timestamp != NO_TIMESTAMP).then_some(self.timestamp)
    }

    /// Emits a record to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        if self.error.is_none() {
            if let Err(e) = self.side.emit(&tag.id, value, self.timestamp) {
                self.error = Some(e);
            }
        }
    }

    pub(crate) fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The context of a keyed function call: a [`Context`] plus the current key, its timers and
/// its state.
pub struct KeyedContext<'a, K> {
    pub(crate) inner: Context<'a>,
    pub(crate) key: &'a K,
    pub(crate) timers: &'a mut InternalTimers<K>,
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) watermark: i64,
    pub(crate) clock: &'a ClockRef,
    pub(crate) time_domain: Option<TimeDomain>,
}

impl<K: Key> KeyedContext<'_, K> {
    /// The key of the record or timer being processed.
    pub fn current_key(&self) -> &K {
        self.key
    }
    /// The event timestamp of the current record (or the firing timer's time).
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp()
    }
    /// Emits a record to a side output.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value)
    }
    /// In `on_timer`: which kind of timer fired.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.time_domain
    }
    /// Timers and time of the current key.
    pub fn timer_service(&mut self) -> TimerService<'_, K> {
        TimerService { timers: self.timers, key: self.key, watermark: self.watermark, clock: self.clock }
    }
    /// The current key's value of a value state.
    ///
    /// This and the other state accessors never fail here: if the state cannot be reached (its
    /// name is used by another kind of state, or its restored bytes are corrupt) they return a
    /// detached handle, which reads as empty and ignores writes, and the function call fails
    /// with the error when it returns.
    pub fn state<V: Data>(&mut self, desc: &ValueStateDescriptor<V>) -> ValueState<'_, K, V> {
        self.store().into_value(desc)
    }
    /// The current key's list of a list state.
    pub fn list_state<V: Data>(&mut self, desc: &ListStateDescriptor<V>) -> ListState<'_, K, V> {
        self.store().into_list(desc)
    }
    /// The current key's map of a map state.
    pub fn map_state<UK: Key, UV: Data>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> MapState<'_, K, UK, UV> {
        self.store().into_map(desc)
    }
    /// The current key's value of a reducing state.
    pub fn reducing_state<'s, V: Data>(
        &'s mut self,
        desc: &'s ReducingStateDescriptor<V>,
    ) -> ReducingState<'s, K, V> {
        self.store().into_reducing(desc)
    }
    /// The current key's accumulator of an aggregating state.
    pub fn aggregating_state<'s, IN: 'static, ACC: Data, OUT: 'static>(
        &'s mut self,
        desc: &'s AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> AggregatingState<'s, K, IN, ACC, OUT> {
        self.store().into_aggregating(desc)
    }
    /// The current key's state, as one handle.
    pub(crate) fn store(&mut self) -> KeyedStateStore<'_, K> {
        KeyedStateStore { state: self.state, key: self.key, clock: self.clock, error: &mut self.inner.error }
    }
}

/// The keyed state of one key (or of one key and window), reached from a function's context:
/// [`KeyedStream::map`](crate::KeyedStream::map) and the other rich functions get it for the
/// record's key, and a [`WindowContext`](crate::windowing::WindowContext) has one per key
/// (`global_state`) and one per key and window (`window_state`). Flink's `KeyedStateStore`.
///
/// The accessors never fail: if the state cannot be reached (its name is used by another kind
/// of state, or its restored bytes are corrupt) they return a detached handle, which reads as
/// empty and ignores writes, and the function call fails with the error when it returns.
pub struct KeyedStateStore<'a, K> {
    pub(crate) state: &'a mut KeyedState<K>,
    pub(crate) key: &'a K,
    pub(crate) clock: &'a ClockRef,
    pub(crate) error: &'a mut Option<EddyError>,
}

impl<'a, K: Key> KeyedStateStore<'a, K> {
    /// The key this state belongs to.
    pub fn current_key(&self) -> &K {
        self.key
    }
    /// The value of a value state.
    pub fn state<V: Data>(&mut self, desc: &ValueStateDescriptor<V>) -> ValueState<'_, K, V> {
        self.reborrow().into_value(desc)
    }
    /// The list of a list state.
    pub fn list_state<V: Data>(&mut self, desc: &ListStateDescriptor<V>) -> ListState<'_, K, V> {
        self.reborrow().into_list(desc)
    }
    /// The map of a map state.
    pub fn map_state<UK: Key, UV: Data>(
        &mut self,
        desc: &MapStateDescriptor<UK, UV>,
    ) -> MapState<'_, K, UK, UV> {
        self.reborrow().into_map(desc)
    }
    /// The value of a reducing state.
    pub fn reducing_state<'s, V: Data>(
        &'s mut self,
        desc: &'s ReducingStateDescriptor<V>,
    ) -> ReducingState<'s, K, V> {
        self.reborrow().into_reducing(desc)
    }
    /// The accumulator of an aggregating state.
    pub fn aggregating_state<'s, IN: 'static, ACC: Data, OUT: 'static>(
        &'s mut self,
        desc: &'s AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> AggregatingState<'s, K, IN, ACC, OUT> {
        self.reborrow().into_aggregating(desc)
    }

    fn reborrow(&mut self) -> KeyedStateStore<'_, K> {
        KeyedStateStore { state: self.state, key: self.key, clock: self.clock, error: self.error }
    }
    fn into_value<V: Data>(self, desc: &ValueStateDescriptor<V>) -> ValueState<'a, K, V> {
        let (key, now) = (self.key, ttl_now(self.clock, desc.ttl_config()));
        let r = self.state.value_state(desc, key, now);
        detach_on_error(self.error, r, || ValueState::detached(key))
    }
    fn into_list<V: Data>(self, desc: &ListStateDescriptor<V>) -> ListState<'a, K, V> {
        let (key, now) = (self.key, ttl_now(self.clock, desc.ttl_config()));
        let r = self.state.list_state(desc, key, now);
        detach_on_error(self.error, r, || ListState::detached(key))
    }
    fn into_map<UK: Key, UV: Data>(self, desc: &MapStateDescriptor<UK, UV>) -> MapState<'a, K, UK, UV> {
        let (key, now) = (self.key, ttl_now(self.clock, desc.ttl_config()));
        let r = self.state.map_state(desc, key, now);
        detach_on_error(self.error, r, || MapState::detached(key))
    }
    fn into_reducing<V: Data>(self, desc: &'a ReducingStateDescriptor<V>) -> ReducingState<'a, K, V> {
        let (key, now) = (self.key, ttl_now(self.clock, desc.ttl_config()));
        let r = self.state.reducing_state(desc, key, now);
        detach_on_error(self.error, r, || ReducingState::detached(key, desc))
    }
    fn into_aggregating<IN: 'static, ACC: Data, OUT: 'static>(
        self,
        desc: &'a AggregatingStateDescriptor<IN, ACC, OUT>,
    ) -> AggregatingState<'a, K, IN, ACC, OUT> {
        let (key, now) = (self.key, ttl_now(self.clock, desc.ttl_config()));
        let r = self.state.aggregating_state(desc, key, now);
        detach_on_error(self.error, r, || AggregatingState::detached(key, desc))
    }
}

/// Processing time for TTL; the clock is read only for state with TTL.
fn ttl_now(clock: &ClockRef, ttl: Option<&StateTtlConfig>) -> i64 {
    ttl.map_or(0, |_| clock.now_ms())
}

/// The handle of a state access that succeeded, or else a detached one, keeping the first error
/// for the end of the function call.
fn detach_on_error<S>(error: &mut Option<EddyError>, r: Result<S>, detached: impl FnOnce() -> S) -> S {
    r.unwrap_or_else(|e| {
        error.get_or_insert(e);
        detached()
    })
}

/// Registers and deletes the current key's timers and tells the time (Flink's `TimerService`).
pub struct TimerService<'a, K> {
    timers: &'a mut InternalTimers<K>,
    key: &'a K,
    watermark: i64,
    clock: &'a ClockRef,
}

impl<K: Key> TimerService<'_, K> {
    /// Fires `on_timer` once the watermark reaches `time`. One timer per key and time.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.timers.event.register(self.key, time)
    }
    /// Fires `on_timer` once the wall clock reaches `time` (ms since the epoch).
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.timers.processing.register(self.key, time)
    }
    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.timers.event.delete(self.key, time)
    }
    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.timers.processing.delete(self.key, time)
    }
    /// The operator's event time: `i64::MIN` before the first watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }
    /// Milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now_ms()
    }
}

/// A function over single records with access to timestamps and side outputs.
///
/// ```
/// use eddy::prelude::*;
///
/// #[derive(Clone)]
/// struct SplitNegatives { negatives: OutputTag<i64> }
///
/// impl ProcessFunction<i64, i64> for SplitNegatives {
///     fn process_element(&mut self, v: i64, ctx: &mut Context, out: &mut Collector<i64>) -> Result<()> {
///         if v < 0 { ctx.output(&self.negatives, v) } else { out.collect(v) }
///         Ok(())
///     }
/// }
///
/// let env = StreamExecutionEnvironment::local().with_parallelism(1);
/// let negatives = OutputTag::<i64>::new("negatives");
/// let main = env.from_collection(vec![1, -2, 3]).process(SplitNegatives { negatives: negatives.clone() });
/// let side = main.get_side_output(&negatives).collect_to_vec();
/// let kept = main.collect_to_vec();
/// env.execute("split").unwrap();
/// assert_eq!((kept.take(), side.take()), (vec![1, 3], vec![-2]));
/// ```
pub trait ProcessFunction<I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn process_element(&mut self, value: I, ctx: &mut Context, out: &mut Collector<O>) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A process function on a keyed stream: it sees each record's key, and has keyed state and
/// timers (Flink's `KeyedProcessFunction`).
pub trait KeyedProcessFunction<K, I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<K>, out: &mut Collector<O>) -> Result<()>;
    /// A timer of `ctx.current_key()` fired at `timestamp`. Output of an event-time timer carries
    /// `timestamp`; output of a processing-time timer carries none.
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<K>,
        _out: &mut Collector<O>,
    ) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A process function over two connected keyed streams (Flink's `KeyedCoProcessFunction`).
pub trait KeyedCoProcessFunction<K, I1, I2, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn process_element1(
        &mut self,
        value: I1,
        ctx: &mut KeyedContext<K>,
        out: &mut Collector<O>,
    ) -> Result<()>;
    fn process_element2(
        &mut self,
        value: I2,
        ctx: &mut KeyedContext<K>,
        out: &mut Collector<O>,
    ) -> Result<()>;
    fn on_timer(
        &mut self,
        _timestamp: i64,
        _ctx: &mut KeyedContext<K>,
        _out: &mut Collector<O>,
    ) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A process function over two connected streams.
pub trait CoProcessFunction<I1, I2, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn process_element1(&mut self, value: I1, ctx: &mut Context, out: &mut Collector<O>) -> Result<()>;
    fn process_element2(&mut self, value: I2, ctx: &mut Context, out: &mut Collector<O>) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A map over a keyed stream with the state of the record's key (Flink's `RichMapFunction` on
/// a keyed stream, whose runtime context reaches keyed state). See
/// [`KeyedStream::map`](crate::KeyedStream::map).
///
/// Closures `|value: I, state: &mut KeyedStateStore<K>| -> Result<O>` implement it.
pub trait RichMapFunction<K, I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn map(&mut self, value: I, state: &mut KeyedStateStore<'_, K>) -> Result<O>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<K, I, O, F> RichMapFunction<K, I, O> for F
where
    F: FnMut(I, &mut KeyedStateStore<'_, K>) -> Result<O> + Clone + Send + Sync + 'static,
{
    fn map(&mut self, value: I, state: &mut KeyedStateStore<'_, K>) -> Result<O> {
        self(value, state)
    }
}

/// A flat map over a keyed stream with the state of the record's key (Flink's
/// `RichFlatMapFunction` on a keyed stream). See [`KeyedStream::flat_map`](crate::KeyedStream::flat_map).
///
/// Closures `|value: I, state: &mut KeyedStateStore<K>, out: &mut Collector<O>| -> Result<()>`
/// implement it.
pub trait RichFlatMapFunction<K, I, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn flat_map(
        &mut self,
        value: I,
        state: &mut KeyedStateStore<'_, K>,
        out: &mut Collector<O>,
    ) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<K, I, O, F> RichFlatMapFunction<K, I, O> for F
where
    F: FnMut(I, &mut KeyedStateStore<'_, K>, &mut Collector<O>) -> Result<()> + Clone + Send + Sync + 'static,
{
    fn flat_map(
        &mut self,
        value: I,
        state: &mut KeyedStateStore<'_, K>,
        out: &mut Collector<O>,
    ) -> Result<()> {
        self(value, state, out)
    }
}

/// A filter over a keyed stream with the state of the record's key (Flink's
/// `RichFilterFunction` on a keyed stream). See [`KeyedStream::filter`](crate::KeyedStream::filter).
///
/// Closures `|value: &I, state: &mut KeyedStateStore<K>| -> Result<bool>` implement it.
pub trait RichFilterFunction<K, I>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn filter(&mut self, value: &I, state: &mut KeyedStateStore<'_, K>) -> Result<bool>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<K, I, F> RichFilterFunction<K, I> for F
where
    F: FnMut(&I, &mut KeyedStateStore<'_, K>) -> Result<bool> + Clone + Send + Sync + 'static,
{
    fn filter(&mut self, value: &I, state: &mut KeyedStateStore<'_, K>) -> Result<bool> {
        self(value, state)
    }
}

/// The rich functions as keyed process functions: they run in the keyed process operator,
/// whose state, checkpoints and rescaling they share.
#[derive(Clone)]
pub(crate) struct RichMap<F>(pub F);
#[derive(Clone)]
pub(crate) struct RichFlatMap<F>(pub F);
#[derive(Clone)]
pub(crate) struct RichFilter<F>(pub F);

impl<K: Key, I, O: Data, F: RichMapFunction<K, I, O>> KeyedProcessFunction<K, I, O> for RichMap<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<K>, out: &mut Collector<O>) -> Result<()> {
        let result = self.0.map(value, &mut ctx.store())?;
        out.collect(result);
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

impl<K: Key, I, O: Data, F: RichFlatMapFunction<K, I, O>> KeyedProcessFunction<K, I, O> for RichFlatMap<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<K>, out: &mut Collector<O>) -> Result<()> {
        self.0.flat_map(value, &mut ctx.store(), out)
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

impl<K: Key, I: Data, F: RichFilterFunction<K, I>> KeyedProcessFunction<K, I, I> for RichFilter<F> {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<K>, out: &mut Collector<I>) -> Result<()> {
        if self.0.filter(&value, &mut ctx.store())? {
            out.collect(value);
        }
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}
