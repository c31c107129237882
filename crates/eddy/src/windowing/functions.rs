//! Window functions: what a window computes when it fires.
//!
//! - `reduce(f)` and `aggregate(AggregateFunction)` aggregate incrementally: the window keeps
//!   one accumulator per key, never the elements.
//! - `process(ProcessWindowFunction)` sees all elements of the window at once, and the window
//!   (its bounds, the watermark, side outputs, keyed state per key and per window); the window
//!   keeps the elements.
//! - `reduce_with` / `aggregate_with` combine both: incremental aggregation, and the process
//!   function receives the single aggregate with the window's metadata.
//!
//! Inside the crate, a window's contents are handled by a `WindowContents` strategy, which
//! says what is stored per key and window and how it becomes output; the window operators are
//! generic over it.

use std::marker::PhantomData;

use eddy_core::{Data, EddyError, Key, Result};
use eddy_runtime::time::ClockRef;
use eddy_runtime::{MainOutput, SideOutputs};

use super::evictors::{Evictor, EvictorContext, WindowElements};
use super::fn_state::{KeyWindow, WindowFnState};
use super::window::Window;
use crate::functions::{Collector, KeyedStateStore, OutputTag, RuntimeContext};

/// Incremental aggregation with an accumulator (Flink's `AggregateFunction`).
///
/// `merge` combines the accumulators of merging session windows and of the panes of sliding
/// windows, so it must agree with `add`: merging the accumulators of two sets of elements
/// gives the accumulator of their union.
///
/// ```
/// use eddy::prelude::*;
///
/// /// The average of the second field.
/// #[derive(Clone)]
/// struct Average;
///
/// impl AggregateFunction<(String, f64), (f64, u64), f64> for Average {
///     fn create_accumulator(&self) -> (f64, u64) { (0.0, 0) }
///     fn add(&self, acc: &mut (f64, u64), v: (String, f64)) { acc.0 += v.1; acc.1 += 1; }
///     fn get_result(&self, acc: &(f64, u64)) -> f64 { acc.0 / acc.1 as f64 }
///     fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) { acc.0 += other.0; acc.1 += other.1; }
/// }
/// ```
pub trait AggregateFunction<IN, ACC, OUT>: Clone + Send + Sync + 'static {
    fn create_accumulator(&self) -> ACC;
    fn add(&self, accumulator: &mut ACC, value: IN);
    fn get_result(&self, accumulator: &ACC) -> OUT;
    fn merge(&self, accumulator: &mut ACC, other: ACC);
}

/// What a [`ProcessWindowFunction`] knows about the window that fired (Flink's
/// `ProcessWindowFunction.Context`), with the key's state: [`global_state`](Self::global_state)
/// per key, [`window_state`](Self::window_state) per key and window.
pub struct WindowContext<'a, K, W> {
    key: &'a K,
    window: &'a W,
    watermark: i64,
    clock: &'a ClockRef,
    side: &'a mut SideOutputs,
    state: &'a mut WindowFnState<K, W>,
    /// The key of per-window state, made when first needed.
    key_window: Option<KeyWindow<K, W>>,
    error: Option<EddyError>,
}

/// The [`WindowContext`] of non-keyed windows (their single key is `()`).
pub type AllWindowContext<'a, W> = WindowContext<'a, (), W>;

impl<'a, K: Key, W: Window> WindowContext<'a, K, W> {
    fn new(key: &'a K, window: &'a W, fire: &'a mut FireContext<'_, K, W>) -> Self {
        WindowContext {
            key,
            window,
            watermark: fire.watermark,
            clock: fire.clock,
            side: fire.side,
            state: fire.state,
            key_window: None,
            error: None,
        }
    }

    /// The window that fired.
    pub fn window(&self) -> &W {
        self.window
    }

    /// The operator's event time: `i64::MIN` before the first watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Emits a record to a side output, with the window's max timestamp.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        if self.error.is_none() {
            if let Err(e) = self.side.emit(tag.id(), value, self.window.max_timestamp()) {
                self.error = Some(e);
            }
        }
    }

    /// The key's state, shared by all its windows (Flink's `globalState()`).
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// // Each window's count, and the key's running total over all its windows.
    /// let total = ValueStateDescriptor::<u64>::new("total");
    /// let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(char, i64), _| e.1);
    /// let out = StreamExecutionEnvironment::local()
    ///     .with_parallelism(1)
    ///     .from_collection(vec![('a', 1), ('a', 2), ('a', 12)])
    ///     .assign_timestamps_and_watermarks(strategy)
    ///     .key_by(|e: &(char, i64)| e.0)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
    ///     .process(move |k: &char, ctx: &mut WindowContext<char, TimeWindow>, es: &[(char, i64)], out: &mut Collector<(char, usize, u64)>| {
    ///         let mut global = ctx.global_state();
    ///         let mut t = global.state(&total);
    ///         let sum = t.value().copied().unwrap_or(0) + es.len() as u64;
    ///         t.update(sum);
    ///         out.collect((*k, es.len(), sum));
    ///         Ok(())
    ///     })
    ///     .execute_and_collect()
    ///     .unwrap();
    /// assert_eq!(out, vec![('a', 2, 2), ('a', 1, 3)]);
    /// ```
    pub fn global_state(&mut self) -> KeyedStateStore<'_, K> {
        let state = self.state.global(&mut self.error);
        KeyedStateStore { state, key: self.key, clock: self.clock, error: &mut self.error }
    }

    /// The state of the key in this window only (Flink's `windowState()`). It is the function's
    /// to clear in [`ProcessWindowFunction::clear`], which runs when the window is cleaned up.
    /// Not available with merging (session) windows.
    pub fn window_state(&mut self) -> KeyedStateStore<'_, KeyWindow<K, W>> {
        let key_window = self
            .key_window
            .get_or_insert_with(|| KeyWindow { key: self.key.clone(), window: self.window.clone() });
        let state = self.state.windows(key_window, &mut self.error);
        KeyedStateStore { state, key: key_window, clock: self.clock, error: &mut self.error }
    }

    fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// A function over all elements of a window, with the key and the window (Flink's
/// `ProcessWindowFunction`). Results are collected with the window's max timestamp.
///
/// Closures `|key: &K, ctx: &mut WindowContext<W>, elements: &[IN], out: &mut Collector<OUT>|
/// -> Result<()>` implement it.
///
/// ```
/// use eddy::prelude::*;
///
/// let env = StreamExecutionEnvironment::local().with_parallelism(1);
/// let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &(String, i64), _| e.1);
/// let out = env
///     .from_collection(vec![("a".to_string(), 1), ("a".to_string(), 7), ("a".to_string(), 12)])
///     .assign_timestamps_and_watermarks(strategy)
///     .key_by(|e: &(String, i64)| e.0.clone())
///     .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
///     .process(|key: &String, ctx: &mut WindowContext<String, TimeWindow>, elements: &[(String, i64)], out: &mut Collector<String>| {
///         out.collect(format!("{key} {} {}", ctx.window().start(), elements.len()));
///         Ok(())
///     })
///     .execute_and_collect()
///     .unwrap();
/// assert_eq!(out, vec!["a 0 2", "a 10 1"]);
/// ```
pub trait ProcessWindowFunction<IN, OUT, K, W>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<()>;

    /// The window is being cleaned up (its max timestamp plus the allowed lateness has
    /// passed): clear what [`WindowContext::window_state`] holds for it. Runs for the keys that
    /// reached their window state.
    fn clear(&mut self, _key: &K, _ctx: &mut WindowContext<'_, K, W>) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<IN, OUT, K, W, F> ProcessWindowFunction<IN, OUT, K, W> for F
where
    F: FnMut(&K, &mut WindowContext<'_, K, W>, &[IN], &mut Collector<'_, OUT>) -> Result<()>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn process(
        &mut self,
        key: &K,
        ctx: &mut WindowContext<'_, K, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        self(key, ctx, elements, out)
    }
}

/// A [`ProcessWindowFunction`] for non-keyed windows (Flink's `ProcessAllWindowFunction`).
pub trait ProcessAllWindowFunction<IN, OUT, W>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut AllWindowContext<'_, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<()>;

    /// The window is being cleaned up: clear its [`WindowContext::window_state`].
    fn clear(&mut self, _ctx: &mut AllWindowContext<'_, W>) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<IN, OUT, W, F> ProcessAllWindowFunction<IN, OUT, W> for F
where
    F: FnMut(&mut AllWindowContext<'_, W>, &[IN], &mut Collector<'_, OUT>) -> Result<()>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn process(
        &mut self,
        ctx: &mut AllWindowContext<'_, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        self(ctx, elements, out)
    }
}

/// A [`ProcessAllWindowFunction`] as the process function of the single key `()`.
#[derive(Clone)]
pub(crate) struct AllWindows<P>(pub P);

impl<IN, OUT, W, P: ProcessAllWindowFunction<IN, OUT, W>> ProcessWindowFunction<IN, OUT, (), W>
    for AllWindows<P>
{
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.0.open(ctx)
    }
    fn process(
        &mut self,
        _: &(),
        ctx: &mut AllWindowContext<'_, W>,
        elements: &[IN],
        out: &mut Collector<'_, OUT>,
    ) -> Result<()> {
        self.0.process(ctx, elements, out)
    }
    fn clear(&mut self, _: &(), ctx: &mut AllWindowContext<'_, W>) -> Result<()> {
        self.0.clear(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// What a window operator hands to its functions when a window fires.
pub(crate) struct FireContext<'a, K, W> {
    pub watermark: i64,
    pub clock: &'a ClockRef,
    pub side: &'a mut SideOutputs,
    pub state: &'a mut WindowFnState<K, W>,
}

/// Incremental aggregation inside the crate: `reduce` or an [`AggregateFunction`].
pub(crate) trait IncrementalAgg<T>: Clone + Send + Sync + 'static {
    /// Serializable: accumulators are window state, which checkpoints hold.
    type Acc: Data;
    type Result;
    /// The accumulator of one element.
    fn create(&mut self, value: T) -> Self::Acc;
    fn add(&mut self, acc: &mut Self::Acc, value: T);
    fn merge(&mut self, acc: &mut Self::Acc, other: Self::Acc);
    fn result(&mut self, acc: &Self::Acc) -> Option<Self::Result>;
}

/// A reduce function `(T, T) -> T` as an aggregation.
#[derive(Clone)]
pub(crate) struct ReduceAgg<F>(pub F);

impl<T: Data, F: FnMut(T, T) -> T + Clone + Send + Sync + 'static> IncrementalAgg<T> for ReduceAgg<F> {
    // `None` only while the reduce function runs: it takes the accumulator by value.
    type Acc = Option<T>;
    type Result = T;

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
    fn merge(&mut self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }
    fn result(&mut self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
}

/// An [`AggregateFunction`] as an aggregation.
pub(crate) struct AggregateAgg<A, ACC, OUT> {
    pub f: A,
    pub _t: PhantomData<fn() -> (ACC, OUT)>,
}

impl<A: Clone, ACC, OUT> Clone for AggregateAgg<A, ACC, OUT> {
    fn clone(&self) -> Self {
        AggregateAgg { f: self.f.clone(), _t: PhantomData }
    }
}

impl<T, ACC, OUT, A> IncrementalAgg<T> for AggregateAgg<A, ACC, OUT>
where
    ACC: Data,
    OUT: 'static,
    A: AggregateFunction<T, ACC, OUT>,
{
    type Acc = ACC;
    type Result = OUT;

    fn create(&mut self, value: T) -> ACC {
        let mut acc = self.f.create_accumulator();
        self.f.add(&mut acc, value);
        acc
    }
    #[inline]
    fn add(&mut self, acc: &mut ACC, value: T) {
        self.f.add(acc, value)
    }
    fn merge(&mut self, acc: &mut ACC, other: ACC) {
        self.f.merge(acc, other)
    }
    fn result(&mut self, acc: &ACC) -> Option<OUT> {
        Some(self.f.get_result(acc))
    }
}

/// Turns a window's input (one aggregate, or all elements) into output records.
pub(crate) trait InternalWindowFn<IN, K, W>: Clone + Send + Sync + 'static {
    type Out: Data;

    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
    /// The window's single (aggregated) value.
    fn apply_one(
        &mut self,
        key: &K,
        window: &W,
        value: IN,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<Self::Out>,
    ) -> Result<()>;
    /// All elements of the window.
    fn apply_many(
        &mut self,
        key: &K,
        window: &W,
        values: &[IN],
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<Self::Out>,
    ) -> Result<()>;
    /// The window of `key` is cleaned up and its function state was used: the function clears it.
    fn clear(&mut self, _key: &K, _window: &W, _fire: &mut FireContext<'_, K, W>) -> Result<()> {
        Ok(())
    }
}

/// Emits the aggregate itself (`reduce`, `aggregate`).
#[derive(Clone, Copy)]
pub(crate) struct PassThrough;

impl<IN: Data, K, W: Window> InternalWindowFn<IN, K, W> for PassThrough {
    type Out = IN;

    #[inline]
    fn apply_one(
        &mut self,
        _: &K,
        w: &W,
        value: IN,
        _: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<IN>,
    ) -> Result<()> {
        out.collect_with_timestamp(value, w.max_timestamp())
    }
    fn apply_many(
        &mut self,
        _: &K,
        w: &W,
        values: &[IN],
        _: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<IN>,
    ) -> Result<()> {
        values.iter().try_for_each(|v| out.collect_with_timestamp(v.clone(), w.max_timestamp()))
    }
}

/// Calls a user [`ProcessWindowFunction`].
pub(crate) struct UserFn<P, OUT> {
    pub f: P,
    pub _t: PhantomData<fn() -> OUT>,
}

impl<P: Clone, OUT> Clone for UserFn<P, OUT> {
    fn clone(&self) -> Self {
        UserFn { f: self.f.clone(), _t: PhantomData }
    }
}

impl<P, OUT> UserFn<P, OUT> {
    pub fn new(f: P) -> Self {
        UserFn { f, _t: PhantomData }
    }
}

impl<IN, OUT, K, W, P> InternalWindowFn<IN, K, W> for UserFn<P, OUT>
where
    OUT: Data,
    K: Key,
    W: Window,
    P: ProcessWindowFunction<IN, OUT, K, W>,
{
    type Out = OUT;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.f.open(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
    fn apply_one(
        &mut self,
        key: &K,
        window: &W,
        value: IN,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<OUT>,
    ) -> Result<()> {
        self.apply_many(key, window, std::slice::from_ref(&value), fire, out)
    }
    fn apply_many(
        &mut self,
        key: &K,
        window: &W,
        values: &[IN],
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<OUT>,
    ) -> Result<()> {
        out.set_timestamp(window.max_timestamp());
        let mut ctx = WindowContext::new(key, window, fire);
        let mut c = Collector::new(out);
        self.f.process(key, &mut ctx, values, &mut c)?;
        c.finish()?;
        ctx.finish()
    }
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()> {
        let mut ctx = WindowContext::new(key, window, fire);
        self.f.clear(key, &mut ctx)?;
        ctx.finish()
    }
}

/// Aggregates all elements, then hands the aggregate on (`reduce` and `aggregate` over the
/// elements an evictor left).
#[derive(Clone)]
pub(crate) struct FoldThen<AG, WF> {
    pub agg: AG,
    pub then: WF,
}

impl<T: Clone, K, W, AG, WF> InternalWindowFn<T, K, W> for FoldThen<AG, WF>
where
    AG: IncrementalAgg<T>,
    WF: InternalWindowFn<AG::Result, K, W>,
{
    type Out = WF::Out;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.then.open(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.then.close()
    }
    fn apply_one(
        &mut self,
        key: &K,
        window: &W,
        value: T,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<WF::Out>,
    ) -> Result<()> {
        let acc = self.agg.create(value);
        match self.agg.result(&acc) {
            Some(r) => self.then.apply_one(key, window, r, fire, out),
            None => Ok(()),
        }
    }
    fn apply_many(
        &mut self,
        key: &K,
        window: &W,
        values: &[T],
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<WF::Out>,
    ) -> Result<()> {
        let mut it = values.iter().cloned();
        let Some(first) = it.next() else { return Ok(()) };
        let mut acc = self.agg.create(first);
        for v in it {
            self.agg.add(&mut acc, v);
        }
        match self.agg.result(&acc) {
            Some(r) => self.then.apply_one(key, window, r, fire, out),
            None => Ok(()),
        }
    }
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()> {
        self.then.clear(key, window, fire)
    }
}

/// What the window operator stores per key and window, and how it becomes output.
pub(crate) trait WindowContents<T, K, W>: Clone + Send + Sync + 'static {
    /// Serializable: window contents are state, which checkpoints hold.
    type Acc: Data;
    type Out: Data;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()>;
    fn close(&mut self) -> Result<()>;
    fn add(&mut self, contents: &mut Option<Self::Acc>, value: T, timestamp: i64);
    fn merge(&mut self, into: &mut Option<Self::Acc>, other: Self::Acc);
    /// Runs the window function over the contents. Returns `false` if the contents are now
    /// empty (an evictor removed everything).
    fn emit(
        &mut self,
        key: &K,
        window: &W,
        contents: &mut Self::Acc,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<Self::Out>,
    ) -> Result<bool>;
    /// The window of `key` is cleaned up and its function state was used.
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()>;
}

/// An accumulator per window (`reduce`, `aggregate`, and their `_with` forms).
#[derive(Clone)]
pub(crate) struct Incremental<AG, WF> {
    pub agg: AG,
    pub wf: WF,
}

impl<T, K, W, AG, WF> WindowContents<T, K, W> for Incremental<AG, WF>
where
    AG: IncrementalAgg<T>,
    WF: InternalWindowFn<AG::Result, K, W>,
{
    type Acc = AG::Acc;
    type Out = WF::Out;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.wf.open(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.wf.close()
    }
    #[inline]
    fn add(&mut self, contents: &mut Option<AG::Acc>, value: T, _: i64) {
        match contents {
            Some(acc) => self.agg.add(acc, value),
            None => *contents = Some(self.agg.create(value)),
        }
    }
    fn merge(&mut self, into: &mut Option<AG::Acc>, other: AG::Acc) {
        match into {
            Some(acc) => self.agg.merge(acc, other),
            None => *into = Some(other),
        }
    }
    fn emit(
        &mut self,
        key: &K,
        window: &W,
        contents: &mut AG::Acc,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<WF::Out>,
    ) -> Result<bool> {
        if let Some(r) = self.agg.result(contents) {
            self.wf.apply_one(key, window, r, fire, out)?;
        }
        Ok(true)
    }
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()> {
        self.wf.clear(key, window, fire)
    }
}

/// All elements per window (`process`).
#[derive(Clone)]
pub(crate) struct Buffered<WF> {
    pub wf: WF,
}

impl<T: Data, K, W, WF: InternalWindowFn<T, K, W>> WindowContents<T, K, W> for Buffered<WF> {
    type Acc = Vec<T>;
    type Out = WF::Out;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.wf.open(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.wf.close()
    }
    fn add(&mut self, contents: &mut Option<Vec<T>>, value: T, _: i64) {
        contents.get_or_insert_with(Vec::new).push(value);
    }
    fn merge(&mut self, into: &mut Option<Vec<T>>, mut other: Vec<T>) {
        into.get_or_insert_with(Vec::new).append(&mut other);
    }
    fn emit(
        &mut self,
        key: &K,
        window: &W,
        contents: &mut Vec<T>,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<WF::Out>,
    ) -> Result<bool> {
        self.wf.apply_many(key, window, contents, fire, out)?;
        Ok(true)
    }
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()> {
        self.wf.clear(key, window, fire)
    }
}

/// All elements with timestamps, and an evictor (any function with `evictor(..)`).
#[derive(Clone)]
pub(crate) struct Evicting<E, WF> {
    pub evictor: E,
    pub wf: WF,
}

impl<T: Data, K, W, E, WF> WindowContents<T, K, W> for Evicting<E, WF>
where
    E: Evictor<T, W>,
    WF: InternalWindowFn<T, K, W>,
{
    type Acc = WindowElements<T>;
    type Out = WF::Out;

    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.wf.open(ctx)
    }
    fn close(&mut self) -> Result<()> {
        self.wf.close()
    }
    fn add(&mut self, contents: &mut Option<WindowElements<T>>, value: T, timestamp: i64) {
        contents.get_or_insert_with(WindowElements::new).push(value, timestamp);
    }
    fn merge(&mut self, into: &mut Option<WindowElements<T>>, other: WindowElements<T>) {
        into.get_or_insert_with(WindowElements::new).append(other);
    }
    fn emit(
        &mut self,
        key: &K,
        window: &W,
        contents: &mut WindowElements<T>,
        fire: &mut FireContext<'_, K, W>,
        out: &mut MainOutput<WF::Out>,
    ) -> Result<bool> {
        let ctx = EvictorContext { watermark: fire.watermark, processing_time: fire.clock.now_ms() };
        self.evictor.evict_before(contents, window, &ctx);
        self.wf.apply_many(key, window, contents.values(), fire, out)?;
        self.evictor.evict_after(contents, window, &ctx);
        Ok(!contents.is_empty())
    }
    fn clear(&mut self, key: &K, window: &W, fire: &mut FireContext<'_, K, W>) -> Result<()> {
        self.wf.clear(key, window, fire)
    }
}
