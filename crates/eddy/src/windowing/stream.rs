//! [`WindowedStream`] and [`AllWindowedStream`]: `key_by(..).window(..)` and `window_all(..)`.

use std::any::TypeId;
use std::marker::PhantomData;
use std::ops::AddAssign;
use std::time::Duration;

use eddy_core::config::StateBackendKind;
use eddy_core::{Data, EddyError, Key};
use eddy_runtime::graph::TypeOf;
use eddy_runtime::OperatorContext;

use super::aligned::{AlignedSpec, AlignedWindowOperator};
use super::assigners::{Alignment, GlobalWindows, WindowAssigner};
use super::evictors::{CountEvictor, Evictor, NoEvictor};
use super::functions::{
    AggregateAgg, AggregateFunction, AllWindows, Buffered, Evicting, FoldThen, Incremental, IncrementalAgg,
    InternalWindowFn, PassThrough, ProcessAllWindowFunction, ProcessWindowFunction, ReduceAgg, UserFn,
    WindowContents,
};
use super::operator::{EitherOperator, WindowOperator, WindowSpec};
use super::triggers::{
    duration_ms, CountTrigger, EventTimeTrigger, ProcessingTimeTrigger, PurgingTrigger, Trigger,
};
use super::window::Window;
use crate::datastream::{DataStream, KeyedStream};
use crate::functions::OutputTag;

/// A keyed stream cut into windows (Flink's `WindowedStream`): configure it with
/// [`trigger`](Self::trigger), [`evictor`](Self::evictor),
/// [`allowed_lateness`](Self::allowed_lateness) and
/// [`side_output_late_data`](Self::side_output_late_data), then apply a window function.
///
/// ```
/// use eddy::prelude::*;
///
/// let env = StreamExecutionEnvironment::local().with_parallelism(2);
/// let readings = vec![("a".to_string(), 100, 1.0), ("b".to_string(), 200, 5.0), ("a".to_string(), 900, 3.0), ("a".to_string(), 1200, 7.0)];
/// let strategy = WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|r: &(String, i64, f64), _| r.1);
/// let mut sums = env
///     .from_collection(readings)
///     .assign_timestamps_and_watermarks(strategy)
///     .key_by(|r: &(String, i64, f64)| r.0.clone())
///     .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
///     .reduce(|a, b| (a.0, a.1.max(b.1), a.2 + b.2))
///     .execute_and_collect()
///     .unwrap();
/// sums.sort_by(|x, y| x.partial_cmp(y).unwrap());
/// assert_eq!(sums, vec![("a".to_string(), 900, 4.0), ("a".to_string(), 1200, 7.0), ("b".to_string(), 200, 5.0)]);
/// ```
pub struct WindowedStream<T, K, F, A, Tr, Ev> {
    stream: DataStream<T>,
    key: F,
    assigner: A,
    trigger: Tr,
    evictor: Option<Ev>,
    lateness: i64,
    late_tag: Option<OutputTag<T>>,
    _k: PhantomData<fn() -> K>,
}

impl<T, K, F: Clone, A: Clone, Tr: Clone, Ev: Clone> Clone for WindowedStream<T, K, F, A, Tr, Ev> {
    fn clone(&self) -> Self {
        WindowedStream {
            stream: self.stream.clone(),
            key: self.key.clone(),
            assigner: self.assigner.clone(),
            trigger: self.trigger.clone(),
            evictor: self.evictor.clone(),
            lateness: self.lateness,
            late_tag: self.late_tag.clone(),
            _k: PhantomData,
        }
    }
}

impl<T: Data, K: Key, F> KeyedStream<T, K, F>
where
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// Groups the elements of each key into the windows `assigner` gives them.
    pub fn window<A: WindowAssigner<T>>(
        &self,
        assigner: A,
    ) -> WindowedStream<T, K, F, A, A::DefaultTrigger, NoEvictor> {
        if let Err(e) = assigner.validate() {
            self.stream.env.record_error(e);
        }
        let trigger = assigner.default_trigger();
        check_merging(&self.stream, &assigner, &trigger);
        WindowedStream {
            stream: self.stream.clone(),
            key: self.key.clone(),
            assigner,
            trigger,
            evictor: None,
            lateness: 0,
            late_tag: None,
            _k: PhantomData,
        }
    }

    /// Windows of `size` elements per key: every `size` elements of a key, the window fires
    /// over them and is emptied (GlobalWindows + `PurgingTrigger(CountTrigger(size))`).
    /// Results carry the timestamp `i64::MAX`, the global window's max timestamp.
    pub fn count_window(
        &self,
        size: u64,
    ) -> WindowedStream<T, K, F, GlobalWindows, PurgingTrigger<CountTrigger>, NoEvictor> {
        self.window(GlobalWindows::create()).trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// Sliding count windows: every `slide` elements of a key, the window fires over the last
    /// `size` elements (GlobalWindows + `CountEvictor(size)` + `CountTrigger(slide)`).
    pub fn count_window_with_slide(
        &self,
        size: u64,
        slide: u64,
    ) -> WindowedStream<T, K, F, GlobalWindows, CountTrigger, CountEvictor> {
        self.window(GlobalWindows::create())
            .evictor(CountEvictor::of(usize::try_from(size).unwrap_or(usize::MAX)))
            .trigger(CountTrigger::of(slide))
    }
}

fn check_merging<T, A: WindowAssigner<T>, Tr: Trigger<T, A::Window>>(
    stream: &DataStream<T>,
    assigner: &A,
    trigger: &Tr,
) {
    if assigner.is_merging() && !trigger.can_merge() {
        stream.env.record_error(EddyError::InvalidJob(format!(
            "A merging window assigner ({}) cannot be used with a trigger that does not support merging ({}).",
            assigner.name(),
            trigger.name()
        )));
    }
}

impl<T, K, F, A, Tr, Ev> WindowedStream<T, K, F, A, Tr, Ev>
where
    T: Data,
    K: Key,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::Window>,
    Ev: Evictor<T, A::Window>,
{
    /// Replaces the assigner's default trigger.
    pub fn trigger<Tr2: Trigger<T, A::Window>>(self, trigger: Tr2) -> WindowedStream<T, K, F, A, Tr2, Ev> {
        check_merging(&self.stream, &self.assigner, &trigger);
        WindowedStream {
            stream: self.stream,
            key: self.key,
            assigner: self.assigner,
            trigger,
            evictor: self.evictor,
            lateness: self.lateness,
            late_tag: self.late_tag,
            _k: PhantomData,
        }
    }

    /// Removes elements before and/or after the window function runs. Windows then keep all
    /// their elements, even for `reduce` and `aggregate`.
    pub fn evictor<Ev2: Evictor<T, A::Window>>(self, evictor: Ev2) -> WindowedStream<T, K, F, A, Tr, Ev2> {
        WindowedStream {
            stream: self.stream,
            key: self.key,
            assigner: self.assigner,
            trigger: self.trigger,
            evictor: Some(evictor),
            lateness: self.lateness,
            late_tag: self.late_tag,
            _k: PhantomData,
        }
    }

    /// How long after the watermark passed a window's end elements may still arrive for it
    /// (event time; default 0). Each such element fires the window again; its state is
    /// dropped when the watermark reaches `max timestamp + lateness`.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = duration_ms(lateness);
        self
    }

    /// Sends elements that arrive too late for all their windows to the side output `tag`
    /// (read it with `get_side_output(&tag)` on the result), instead of dropping them.
    pub fn side_output_late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    /// Combines the elements of each window with `reduce`, incrementally.
    pub fn reduce<R>(&self, reduce: R) -> DataStream<T>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.incremental("ReduceFunction", ReduceAgg(reduce), PassThrough)
    }

    /// Aggregates the elements of each window with an [`AggregateFunction`], incrementally.
    pub fn aggregate<ACC, OUT, AG>(&self, agg: AG) -> DataStream<OUT>
    where
        ACC: Data,
        OUT: Data,
        AG: AggregateFunction<T, ACC, OUT>,
    {
        self.incremental("AggregateFunction", AggregateAgg { f: agg, _t: PhantomData }, PassThrough)
    }

    /// Runs a [`ProcessWindowFunction`] over all elements of each window.
    pub fn process<OUT: Data, P>(&self, f: P) -> DataStream<OUT>
    where
        P: ProcessWindowFunction<T, OUT, K, A::Window>,
    {
        self.buffered("ProcessWindowFunction", UserFn::new(f))
    }

    /// Reduces incrementally; the process function gets the single result with the window.
    pub fn reduce_with<R, OUT: Data, P>(&self, reduce: R, f: P) -> DataStream<OUT>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
        P: ProcessWindowFunction<T, OUT, K, A::Window>,
    {
        self.incremental("ReduceFunction, ProcessWindowFunction", ReduceAgg(reduce), UserFn::new(f))
    }

    /// Aggregates incrementally; the process function gets the single result with the window.
    pub fn aggregate_with<ACC, V, OUT, AG, P>(&self, agg: AG, f: P) -> DataStream<OUT>
    where
        ACC: Data,
        V: 'static,
        OUT: Data,
        AG: AggregateFunction<T, ACC, V>,
        P: ProcessWindowFunction<V, OUT, K, A::Window>,
    {
        let agg = AggregateAgg { f: agg, _t: PhantomData };
        self.incremental("AggregateFunction, ProcessWindowFunction", agg, UserFn::new(f))
    }

    /// Sum of a field per window; the other fields are those of one element of the window.
    pub fn sum<N, G>(&self, field: G) -> DataStream<T>
    where
        N: AddAssign + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.incremental(
            "SumAggregator",
            ReduceAgg(move |mut acc: T, mut v: T| {
                let x = *field(&mut v);
                *field(&mut acc) += x;
                acc
            }),
            PassThrough,
        )
    }

    /// Minimum of a field per window; the other fields are those of one element of the window.
    pub fn min<N, G>(&self, field: G) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce_named("MinAggregator", move |mut acc: T, mut v: T| {
            let x = *field(&mut v);
            if x < *field(&mut acc) {
                *field(&mut acc) = x;
            }
            acc
        })
    }

    /// Maximum of a field per window; the other fields are those of one element of the window.
    pub fn max<N, G>(&self, field: G) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce_named("MaxAggregator", move |mut acc: T, mut v: T| {
            let x = *field(&mut v);
            if x > *field(&mut acc) {
                *field(&mut acc) = x;
            }
            acc
        })
    }

    /// The element with the smallest field per window.
    pub fn min_by<N, G>(&self, field: G) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce_named(
            "MinByAggregator",
            move |mut acc: T, mut v: T| {
                if *field(&mut v) < *field(&mut acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    /// The element with the largest field per window.
    pub fn max_by<N, G>(&self, field: G) -> DataStream<T>
    where
        N: PartialOrd + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        self.reduce_named(
            "MaxByAggregator",
            move |mut acc: T, mut v: T| {
                if *field(&mut v) > *field(&mut acc) {
                    v
                } else {
                    acc
                }
            },
        )
    }

    fn reduce_named<R>(&self, name: &str, reduce: R) -> DataStream<T>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        self.incremental(name, ReduceAgg(reduce), PassThrough)
    }

    /// `Window(assigner, trigger, [evictor, ]function)`, as Flink names window operators.
    fn operator_name(&self, function: &str) -> String {
        let evictor = self.evictor.as_ref().map(|e| format!("{}, ", e.name())).unwrap_or_default();
        format!("Window({}, {}, {evictor}{function})", self.assigner.name(), self.trigger.name())
    }

    fn add_operator<Op, M>(&self, function: &str, make: M) -> DataStream<Op::Out>
    where
        Op: eddy_runtime::OneInputOperator<In = T>,
        M: Fn(&OperatorContext) -> eddy_core::Result<Op> + Send + Sync + 'static,
    {
        let out = self.stream.transform(&self.operator_name(function), make);
        if let Some(tag) = &self.late_tag {
            let node = out.ports[0].node;
            self.stream.env.inner.borrow_mut().graph.add_side_output_type(node, tag.id(), TypeOf::<T>::arc());
        }
        out
    }

    fn spec(&self) -> WindowSpec<F, A, Tr> {
        WindowSpec {
            key: self.key.clone(),
            assigner: self.assigner.clone(),
            trigger: self.trigger.clone(),
            lateness: self.lateness,
            late_tag: self.late_tag.as_ref().map(|t| t.id().to_string()),
        }
    }

    fn general<C: WindowContents<T, K, A::Window>>(&self, function: &str, contents: C) -> DataStream<C::Out> {
        let spec = self.spec();
        self.add_operator(function, move |ctx| WindowOperator::new(spec.clone(), contents.clone(), ctx))
    }

    /// The geometry of the windows if the aligned operator computes them: tumbling or
    /// sliding windows with their default trigger (by type) and no evictor.
    fn aligned(&self) -> Option<Alignment> {
        let a = self.assigner.alignment()?;
        <A::Window as Window>::from_interval(0, 1)?;
        if self.evictor.is_some() {
            return None;
        }
        let trigger = TypeId::of::<Tr>();
        let default = if self.assigner.is_event_time() {
            trigger == TypeId::of::<EventTimeTrigger>()
        } else {
            // Processing-time windows must not overlap: see the aligned operator's docs.
            trigger == TypeId::of::<ProcessingTimeTrigger>() && a.size <= a.slide
        };
        default.then_some(a)
    }

    fn incremental<AG, WF>(&self, function: &str, agg: AG, wf: WF) -> DataStream<WF::Out>
    where
        AG: IncrementalAgg<T>,
        WF: InternalWindowFn<AG::Result, K, A::Window>,
    {
        if let Some(evictor) = &self.evictor {
            let contents = Evicting { evictor: evictor.clone(), wf: FoldThen { agg, then: wf } };
            return self.general(function, contents);
        }
        if let Some(alignment) = self.aligned() {
            let key = self.key.clone();
            let spec = AlignedSpec {
                alignment,
                event_time: self.assigner.is_event_time(),
                lateness: self.lateness,
                late_tag: self.late_tag.as_ref().map(|t| t.id().to_string()),
            };
            let general = self.spec();
            // The aligned operator keeps its panes on the heap; on another backend the general
            // operator, whose windows go through keyed state, computes the same results.
            return self.add_operator(function, move |ctx| {
                if ctx.state_backend.kind != StateBackendKind::HashMap {
                    let contents = Incremental { agg: agg.clone(), wf: wf.clone() };
                    return WindowOperator::new(general.clone(), contents, ctx).map(EitherOperator::Right);
                }
                AlignedWindowOperator::<T, K, F, AG, WF, A::Window>::new(
                    key.clone(),
                    agg.clone(),
                    wf.clone(),
                    spec.clone(),
                    ctx,
                )
                .map(EitherOperator::Left)
            });
        }
        self.general(function, Incremental { agg, wf })
    }

    fn buffered<WF: InternalWindowFn<T, K, A::Window>>(&self, function: &str, wf: WF) -> DataStream<WF::Out> {
        match &self.evictor {
            Some(evictor) => self.general(function, Evicting { evictor: evictor.clone(), wf }),
            None => self.general(function, Buffered { wf }),
        }
    }
}

/// The key of every element of a non-keyed windowed stream.
fn no_key<T>(_: &T) {}

/// A non-keyed stream cut into windows (Flink's `AllWindowedStream`). The window operator
/// runs with parallelism 1 and sees every element.
///
/// ```
/// use eddy::prelude::*;
///
/// let env = StreamExecutionEnvironment::local().with_parallelism(2);
/// let mut totals = env
///     .from_collection((1..=10).collect::<Vec<i64>>())
///     .count_window_all(4)
///     .reduce(|a, b| a + b)
///     .execute_and_collect()
///     .unwrap();
/// totals.sort();
/// assert_eq!(totals, vec![1 + 2 + 3 + 4, 5 + 6 + 7 + 8]);
/// ```
pub struct AllWindowedStream<T, A, Tr, Ev> {
    inner: WindowedStream<T, (), fn(&T), A, Tr, Ev>,
}

impl<T, A: Clone, Tr: Clone, Ev: Clone> Clone for AllWindowedStream<T, A, Tr, Ev> {
    fn clone(&self) -> Self {
        AllWindowedStream { inner: self.inner.clone() }
    }
}

impl<T: Data> DataStream<T> {
    /// Cuts the whole stream into windows, in one operator of parallelism 1.
    pub fn window_all<A: WindowAssigner<T>>(
        &self,
        assigner: A,
    ) -> AllWindowedStream<T, A, A::DefaultTrigger, NoEvictor> {
        let key: fn(&T) = no_key::<T>;
        AllWindowedStream { inner: self.key_by(key).window(assigner) }
    }

    /// Windows of `size` elements of the whole stream.
    pub fn count_window_all(
        &self,
        size: u64,
    ) -> AllWindowedStream<T, GlobalWindows, PurgingTrigger<CountTrigger>, NoEvictor> {
        self.window_all(GlobalWindows::create()).trigger(PurgingTrigger::of(CountTrigger::of(size)))
    }

    /// Every `slide` elements, a window over the last `size` elements of the whole stream.
    pub fn count_window_all_with_slide(
        &self,
        size: u64,
        slide: u64,
    ) -> AllWindowedStream<T, GlobalWindows, CountTrigger, CountEvictor> {
        self.window_all(GlobalWindows::create())
            .evictor(CountEvictor::of(usize::try_from(size).unwrap_or(usize::MAX)))
            .trigger(CountTrigger::of(slide))
    }
}

impl<T, A, Tr, Ev> AllWindowedStream<T, A, Tr, Ev>
where
    T: Data,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::Window>,
    Ev: Evictor<T, A::Window>,
{
    pub fn trigger<Tr2: Trigger<T, A::Window>>(self, trigger: Tr2) -> AllWindowedStream<T, A, Tr2, Ev> {
        AllWindowedStream { inner: self.inner.trigger(trigger) }
    }

    pub fn evictor<Ev2: Evictor<T, A::Window>>(self, evictor: Ev2) -> AllWindowedStream<T, A, Tr, Ev2> {
        AllWindowedStream { inner: self.inner.evictor(evictor) }
    }

    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        AllWindowedStream { inner: self.inner.allowed_lateness(lateness) }
    }

    pub fn side_output_late_data(self, tag: &OutputTag<T>) -> Self {
        AllWindowedStream { inner: self.inner.side_output_late_data(tag) }
    }

    fn non_parallel<U: Data>(stream: DataStream<U>) -> DataStream<U> {
        stream.set_parallelism(1).set_max_parallelism(1)
    }

    pub fn reduce<R>(&self, reduce: R) -> DataStream<T>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
    {
        Self::non_parallel(self.inner.reduce(reduce))
    }

    pub fn aggregate<ACC, OUT, AG>(&self, agg: AG) -> DataStream<OUT>
    where
        ACC: Data,
        OUT: Data,
        AG: AggregateFunction<T, ACC, OUT>,
    {
        Self::non_parallel(self.inner.aggregate(agg))
    }

    pub fn process<OUT: Data, P>(&self, f: P) -> DataStream<OUT>
    where
        P: ProcessAllWindowFunction<T, OUT, A::Window>,
    {
        Self::non_parallel(self.inner.buffered("ProcessAllWindowFunction", UserFn::new(AllWindows(f))))
    }

    pub fn reduce_with<R, OUT: Data, P>(&self, reduce: R, f: P) -> DataStream<OUT>
    where
        R: FnMut(T, T) -> T + Clone + Send + Sync + 'static,
        P: ProcessAllWindowFunction<T, OUT, A::Window>,
    {
        let name = "ReduceFunction, ProcessAllWindowFunction";
        Self::non_parallel(self.inner.incremental(name, ReduceAgg(reduce), UserFn::new(AllWindows(f))))
    }

    pub fn aggregate_with<ACC, V, OUT, AG, P>(&self, agg: AG, f: P) -> DataStream<OUT>
    where
        ACC: Data,
        V: 'static,
        OUT: Data,
        AG: AggregateFunction<T, ACC, V>,
        P: ProcessAllWindowFunction<V, OUT, A::Window>,
    {
        let name = "AggregateFunction, ProcessAllWindowFunction";
        let agg = AggregateAgg { f: agg, _t: PhantomData };
        Self::non_parallel(self.inner.incremental(name, agg, UserFn::new(AllWindows(f))))
    }

    pub fn sum<N, G>(&self, field: G) -> DataStream<T>
    where
        N: AddAssign + Copy + 'static,
        G: Fn(&mut T) -> &mut N + Clone + Send + Sync + 'static,
    {
        Self::non_parallel(self.inner.sum(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    type E = (String, i64);

    fn keyed() -> KeyedStream<E, String, fn(&E) -> String> {
        fn key(e: &E) -> String {
            e.0.clone()
        }
        StreamExecutionEnvironment::local().from_collection(Vec::new()).key_by(key as fn(&E) -> String)
    }

    #[test]
    fn the_aligned_operator_runs_only_tumbling_and_sliding_windows_with_their_default_trigger() {
        let k = keyed();
        let ms = Duration::from_millis;
        let aligned = |size, slide, offset| Some(Alignment { size, slide, offset });
        assert_eq!(k.window(TumblingEventTimeWindows::of(ms(10))).aligned(), aligned(10, 10, 0));
        assert_eq!(
            k.window(SlidingEventTimeWindows::of(ms(10), ms(3)).with_offset_ms(-1)).aligned(),
            aligned(10, 3, -1)
        );
        assert_eq!(
            k.window(TumblingEventTimeWindows::of(ms(10))).trigger(EventTimeTrigger).aligned(),
            aligned(10, 10, 0)
        );
        assert_eq!(k.window(TumblingProcessingTimeWindows::of(ms(10))).aligned(), aligned(10, 10, 0));
        // Overlapping processing-time windows, other triggers, evictors, sessions, global
        // windows: the general operator.
        assert_eq!(k.window(SlidingProcessingTimeWindows::of(ms(10), ms(5))).aligned(), None);
        assert_eq!(
            k.window(TumblingEventTimeWindows::of(ms(10))).trigger(CountTrigger::of(2)).aligned(),
            None
        );
        assert_eq!(
            k.window(TumblingEventTimeWindows::of(ms(10)))
                .trigger(PurgingTrigger::of(EventTimeTrigger))
                .aligned(),
            None
        );
        assert_eq!(
            k.window(TumblingEventTimeWindows::of(ms(10))).evictor(CountEvictor::of(1)).aligned(),
            None
        );
        assert_eq!(k.window(EventTimeSessionWindows::with_gap(ms(10))).aligned(), None);
        assert_eq!(k.window(GlobalWindows::create()).aligned(), None);
    }
}
