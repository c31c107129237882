//! Window join and co-group (Flink's `JoinedStreams` and `CoGroupedStreams`).
//!
//! `a.co_group(&b).where_(ka).equal_to(kb).window(assigner).apply(f)` groups the elements of
//! both streams by key and window, and calls `f` once per key and window with the elements of
//! each side. `a.join(&b)...apply(f)` is the inner join built on it: `f` is called for every
//! pair of the key's window, so a window with an empty side yields nothing.
//!
//! As in Flink, there is no dedicated operator: each input is tagged with its side
//! ([`TaggedUnion`]), the two are unioned, keyed by the key of either side, and windowed with the
//! ordinary window operator, whose window function splits the elements by side again. Triggers,
//! allowed lateness and the results' timestamps (the window's max timestamp) are therefore
//! exactly those of windows.

use std::marker::PhantomData;
use std::time::Duration;

use eddy_core::{Data, Key, Result};
use serde::{Deserialize, Serialize};

use crate::datastream::DataStream;
use crate::functions::Collector;
use crate::windowing::{
    Evictor, NoEvictor, ProcessWindowFunction, Trigger, WindowAssigner, WindowContext, WindowedStream,
};

/// An element of either input of a window join or co-group, in their union (Flink's
/// `CoGroupedStreams.TaggedUnion`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaggedUnion<A, B> {
    /// An element of the first stream.
    One(A),
    /// An element of the second stream.
    Two(B),
}

/// Marks the stages of a window join.
#[derive(Debug, Clone, Copy)]
pub struct Join;

/// Marks the stages of a co-group.
#[derive(Debug, Clone, Copy)]
pub struct CoGroup;

impl<A: Data> DataStream<A> {
    /// Joins this stream with `other` per key and window (Flink's `join`): continue with
    /// [`where_`](JoinedStreams::where_), `equal_to` and `window`.
    pub fn join<B: Data>(&self, other: &DataStream<B>) -> JoinedStreams<A, B> {
        JoinedStreams { first: self.clone(), second: other.clone() }
    }

    /// Groups this stream and `other` together per key and window (Flink's `coGroup`):
    /// continue with [`where_`](CoGroupedStreams::where_), `equal_to` and `window`.
    pub fn co_group<B: Data>(&self, other: &DataStream<B>) -> CoGroupedStreams<A, B> {
        CoGroupedStreams { first: self.clone(), second: other.clone() }
    }
}

/// Two streams to be joined; see [`DataStream::join`].
pub struct JoinedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

/// Two streams to be co-grouped; see [`DataStream::co_group`].
pub struct CoGroupedStreams<A, B> {
    first: DataStream<A>,
    second: DataStream<B>,
}

impl<A: Data, B: Data> JoinedStreams<A, B> {
    /// The key of the first stream's elements.
    pub fn where_<K: Key, KA>(self, key: KA) -> Where<Join, A, B, K, KA>
    where
        KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    {
        Where { first: self.first, second: self.second, key1: key, _m: PhantomData }
    }
}

impl<A: Data, B: Data> CoGroupedStreams<A, B> {
    /// The key of the first stream's elements.
    pub fn where_<K: Key, KA>(self, key: KA) -> Where<CoGroup, A, B, K, KA>
    where
        KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    {
        Where { first: self.first, second: self.second, key1: key, _m: PhantomData }
    }
}

/// A join or co-group with the key of the first stream.
pub struct Where<M, A, B, K, KA> {
    first: DataStream<A>,
    second: DataStream<B>,
    key1: KA,
    _m: PhantomData<fn() -> (M, K)>,
}

impl<M, A: Data, B: Data, K: Key, KA> Where<M, A, B, K, KA>
where
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
{
    /// The key of the second stream's elements: elements of equal keys meet.
    pub fn equal_to<KB>(self, key: KB) -> EqualTo<M, A, B, K, KA, KB>
    where
        KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        EqualTo { first: self.first, second: self.second, key1: self.key1, key2: key, _m: PhantomData }
    }
}

/// A join or co-group with the keys of both streams, ready for `window`.
pub struct EqualTo<M, A, B, K, KA, KB> {
    first: DataStream<A>,
    second: DataStream<B>,
    key1: KA,
    key2: KB,
    _m: PhantomData<fn() -> (M, K)>,
}

impl<M, A: Data, B: Data, K: Key, KA, KB> EqualTo<M, A, B, K, KA, KB>
where
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
{
    /// Assigns the elements of both streams to windows (for example
    /// `TumblingEventTimeWindows::of(..)`), per key.
    // The key selector of the union is a closure: its type can only be named as `impl Fn`,
    // which a type alias cannot hold.
    #[allow(clippy::type_complexity)]
    pub fn window<WA>(
        self,
        assigner: WA,
    ) -> WithWindow<
        M,
        A,
        B,
        K,
        impl Fn(&TaggedUnion<A, B>) -> K + Clone + Send + Sync + 'static,
        WA,
        WA::DefaultTrigger,
        NoEvictor,
    >
    where
        WA: WindowAssigner<TaggedUnion<A, B>>,
    {
        let names = OperatorNames {
            assigner: assigner.name(),
            trigger: assigner.default_trigger().name(),
            evictor: None,
        };
        // As Flink: tag each input with its side, union them, key the union by either key.
        let one = tag(&self.first, TaggedUnion::One);
        let two = tag(&self.second, TaggedUnion::Two);
        let (key1, key2) = (self.key1, self.key2);
        let key = move |t: &TaggedUnion<A, B>| match t {
            TaggedUnion::One(a) => key1(a),
            TaggedUnion::Two(b) => key2(b),
        };
        WithWindow { windowed: one.union(&two).key_by(key).window(assigner), names, _m: PhantomData }
    }
}

/// Tags the elements of `input` with their side, at the input's parallelism so that the tagger
/// chains to it (as Flink's `Input1Tagger` / `Input2Tagger`).
fn tag<X: Data, A: Data, B: Data>(
    input: &DataStream<X>,
    wrap: fn(X) -> TaggedUnion<A, B>,
) -> DataStream<TaggedUnion<A, B>> {
    let tagged = input.map(wrap);
    if let Some(port) = tagged.ports.first() {
        input.env.inner.borrow_mut().graph.node_mut(port.node).inherit_parallelism = true;
    }
    tagged
}

/// What the operator name shows: `Window(assigner, trigger, [evictor, ]Join)`, in the form of
/// Flink's window operator names.
#[derive(Debug, Clone)]
struct OperatorNames {
    assigner: String,
    trigger: String,
    evictor: Option<String>,
}

impl OperatorNames {
    fn operator(&self, function: &str) -> String {
        let evictor = self.evictor.as_ref().map(|e| format!("{e}, ")).unwrap_or_default();
        format!("Window({}, {}, {evictor}{function})", self.assigner, self.trigger)
    }
}

/// A window join or co-group with its windows: optionally set [`trigger`](Self::trigger),
/// [`evictor`](Self::evictor) and [`allowed_lateness`](Self::allowed_lateness), then `apply`
/// the function.
pub struct WithWindow<M, A, B, K, F, WA, Tr, Ev> {
    windowed: WindowedStream<TaggedUnion<A, B>, K, F, WA, Tr, Ev>,
    names: OperatorNames,
    _m: PhantomData<fn() -> M>,
}

impl<M, A, B, K, F, WA, Tr, Ev> WithWindow<M, A, B, K, F, WA, Tr, Ev>
where
    A: Data,
    B: Data,
    K: Key,
    F: Fn(&TaggedUnion<A, B>) -> K + Clone + Send + Sync + 'static,
    WA: WindowAssigner<TaggedUnion<A, B>>,
    Tr: Trigger<TaggedUnion<A, B>, WA::Window>,
    Ev: Evictor<TaggedUnion<A, B>, WA::Window>,
{
    /// Replaces the assigner's default trigger. The trigger sees the elements of both streams
    /// as [`TaggedUnion`]s.
    pub fn trigger<Tr2>(self, trigger: Tr2) -> WithWindow<M, A, B, K, F, WA, Tr2, Ev>
    where
        Tr2: Trigger<TaggedUnion<A, B>, WA::Window>,
    {
        let names = OperatorNames { trigger: trigger.name(), ..self.names };
        WithWindow { windowed: self.windowed.trigger(trigger), names, _m: PhantomData }
    }

    /// Removes elements of either stream from a window before and/or after the function runs.
    pub fn evictor<Ev2>(self, evictor: Ev2) -> WithWindow<M, A, B, K, F, WA, Tr, Ev2>
    where
        Ev2: Evictor<TaggedUnion<A, B>, WA::Window>,
    {
        let names = OperatorNames { evictor: Some(evictor.name()), ..self.names };
        WithWindow { windowed: self.windowed.evictor(evictor), names, _m: PhantomData }
    }

    /// How long after a window's end elements may still arrive for it; each one fires the
    /// window again, with all its elements (see `WindowedStream::allowed_lateness`).
    pub fn allowed_lateness(self, lateness: Duration) -> Self {
        WithWindow { windowed: self.windowed.allowed_lateness(lateness), ..self }
    }

    fn process<O: Data, P>(&self, function: &str, f: P) -> DataStream<O>
    where
        P: ProcessWindowFunction<TaggedUnion<A, B>, O, K, WA::Window>,
    {
        self.windowed.process(f).name(&self.names.operator(function))
    }
}

impl<A, B, K, F, WA, Tr, Ev> WithWindow<Join, A, B, K, F, WA, Tr, Ev>
where
    A: Data,
    B: Data,
    K: Key,
    F: Fn(&TaggedUnion<A, B>) -> K + Clone + Send + Sync + 'static,
    WA: WindowAssigner<TaggedUnion<A, B>>,
    Tr: Trigger<TaggedUnion<A, B>, WA::Window>,
    Ev: Evictor<TaggedUnion<A, B>, WA::Window>,
{
    /// Calls `f` for every pair of elements of the two streams with equal keys in the same
    /// window, and emits what it returns (Flink's `JoinFunction`). An inner join: a window
    /// with elements of only one stream emits nothing. Results carry the window's max
    /// timestamp.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// // (user id, event time in ms)
    /// type Click = (u32, i64);
    /// let env = StreamExecutionEnvironment::local().with_parallelism(2);
    /// let timed = |events: Vec<Click>| {
    ///     env.from_collection(events).assign_timestamps_and_watermarks(
    ///         WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Click, _| e.1),
    ///     )
    /// };
    /// let views = timed(vec![(1, 100), (2, 300), (1, 1200)]);
    /// let clicks = timed(vec![(1, 500), (2, 1500)]);
    /// let mut pairs = views
    ///     .join(&clicks)
    ///     .where_(|v: &Click| v.0)
    ///     .equal_to(|c: &Click| c.0)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
    ///     .apply(|v: &Click, c: &Click| (v.0, v.1, c.1))
    ///     .execute_and_collect()
    ///     .unwrap();
    /// pairs.sort();
    /// assert_eq!(pairs, vec![(1, 100, 500)]);
    /// ```
    pub fn apply<O: Data, G>(&self, f: G) -> DataStream<O>
    where
        G: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static,
    {
        self.process("Join", JoinWindowFunction { f: Mapped(f), _t: PhantomData })
    }

    /// Like [`apply`](Self::apply), with a function that emits any number of results per pair
    /// (Flink's `FlatJoinFunction`).
    pub fn apply_flat<O: Data, G>(&self, f: G) -> DataStream<O>
    where
        G: FnMut(&A, &B, &mut Collector<O>) + Clone + Send + Sync + 'static,
    {
        self.process("Join", JoinWindowFunction { f: Flat(f), _t: PhantomData })
    }
}

impl<A, B, K, F, WA, Tr, Ev> WithWindow<CoGroup, A, B, K, F, WA, Tr, Ev>
where
    A: Data,
    B: Data,
    K: Key,
    F: Fn(&TaggedUnion<A, B>) -> K + Clone + Send + Sync + 'static,
    WA: WindowAssigner<TaggedUnion<A, B>>,
    Tr: Trigger<TaggedUnion<A, B>, WA::Window>,
    Ev: Evictor<TaggedUnion<A, B>, WA::Window>,
{
    /// Calls `f` once per key and window that holds elements of either stream, with the
    /// elements of each (Flink's `CoGroupFunction`); one side may be empty. Results carry the
    /// window's max timestamp. Elements come in no particular order.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// // (user id, event time in ms)
    /// type Event = (u32, i64);
    /// let env = StreamExecutionEnvironment::local().with_parallelism(2);
    /// let timed = |events: Vec<Event>| {
    ///     env.from_collection(events).assign_timestamps_and_watermarks(
    ///         WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Event, _| e.1),
    ///     )
    /// };
    /// let views = timed(vec![(1, 100), (1, 200), (2, 300)]);
    /// let clicks = timed(vec![(1, 500), (3, 600)]);
    /// // Views and clicks per user and second.
    /// let mut counts = views
    ///     .co_group(&clicks)
    ///     .where_(|v: &Event| v.0)
    ///     .equal_to(|c: &Event| c.0)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(1)))
    ///     .apply(|views: &[Event], clicks: &[Event], out: &mut Collector<(u32, usize, usize)>| {
    ///         let user = views.first().or(clicks.first()).map_or(0, |e| e.0);
    ///         out.collect((user, views.len(), clicks.len()));
    ///     })
    ///     .execute_and_collect()
    ///     .unwrap();
    /// counts.sort();
    /// assert_eq!(counts, vec![(1, 2, 1), (2, 1, 0), (3, 0, 1)]);
    /// ```
    pub fn apply<O: Data, G>(&self, f: G) -> DataStream<O>
    where
        G: FnMut(&[A], &[B], &mut Collector<O>) + Clone + Send + Sync + 'static,
    {
        self.process("CoGroup", CoGroupWindowFunction { f, _t: PhantomData })
    }
}

/// The window function of a co-group (Flink's `CoGroupWindowFunction`): splits the window's
/// elements by side and calls the user function with both.
struct CoGroupWindowFunction<G, A, B> {
    f: G,
    _t: PhantomData<fn(A, B)>,
}

impl<G: Clone, A, B> Clone for CoGroupWindowFunction<G, A, B> {
    fn clone(&self) -> Self {
        CoGroupWindowFunction { f: self.f.clone(), _t: PhantomData }
    }
}

impl<A, B, O, K, W, G> ProcessWindowFunction<TaggedUnion<A, B>, O, K, W> for CoGroupWindowFunction<G, A, B>
where
    A: Data,
    B: Data,
    O: Data,
    G: FnMut(&[A], &[B], &mut Collector<O>) + Clone + Send + Sync + 'static,
{
    fn process(
        &mut self,
        _key: &K,
        _ctx: &mut WindowContext<'_, K, W>,
        elements: &[TaggedUnion<A, B>],
        out: &mut Collector<'_, O>,
    ) -> Result<()> {
        let (ones, twos) = split_sides(elements);
        (self.f)(&ones, &twos, out);
        Ok(())
    }
}

/// The elements of one key and window, split by side.
fn split_sides<A: Clone, B: Clone>(elements: &[TaggedUnion<A, B>]) -> (Vec<A>, Vec<B>) {
    let (mut ones, mut twos) = (Vec::new(), Vec::new());
    for e in elements {
        match e {
            TaggedUnion::One(a) => ones.push(a.clone()),
            TaggedUnion::Two(b) => twos.push(b.clone()),
        }
    }
    (ones, twos)
}

/// A join function emitting through a collector: [`Flat`] or [`Mapped`].
trait FlatJoin<A, B, O>: Clone + Send + Sync + 'static {
    fn join(&mut self, a: &A, b: &B, out: &mut Collector<O>);
}

#[derive(Clone)]
struct Flat<G>(G);

impl<A, B, O, G> FlatJoin<A, B, O> for Flat<G>
where
    G: FnMut(&A, &B, &mut Collector<O>) + Clone + Send + Sync + 'static,
{
    fn join(&mut self, a: &A, b: &B, out: &mut Collector<O>) {
        (self.0)(a, b, out)
    }
}

#[derive(Clone)]
struct Mapped<G>(G);

impl<A, B, O: Data, G> FlatJoin<A, B, O> for Mapped<G>
where
    G: FnMut(&A, &B) -> O + Clone + Send + Sync + 'static,
{
    fn join(&mut self, a: &A, b: &B, out: &mut Collector<O>) {
        out.collect((self.0)(a, b))
    }
}

/// The window function of a join (Flink's `CoGroupWindowFunction` over a
/// `JoinCoGroupFunction`): every pair of the window, first-stream element outermost.
struct JoinWindowFunction<J, A, B> {
    f: J,
    _t: PhantomData<fn(A, B)>,
}

impl<J: Clone, A, B> Clone for JoinWindowFunction<J, A, B> {
    fn clone(&self) -> Self {
        JoinWindowFunction { f: self.f.clone(), _t: PhantomData }
    }
}

impl<A, B, O, K, W, J> ProcessWindowFunction<TaggedUnion<A, B>, O, K, W> for JoinWindowFunction<J, A, B>
where
    A: Data,
    B: Data,
    O: Data,
    J: FlatJoin<A, B, O>,
{
    fn process(
        &mut self,
        _key: &K,
        _ctx: &mut WindowContext<'_, K, W>,
        elements: &[TaggedUnion<A, B>],
        out: &mut Collector<'_, O>,
    ) -> Result<()> {
        let twos: Vec<&B> = elements
            .iter()
            .filter_map(|e| match e {
                TaggedUnion::Two(b) => Some(b),
                TaggedUnion::One(_) => None,
            })
            .collect();
        if twos.is_empty() {
            return Ok(());
        }
        for e in elements {
            if let TaggedUnion::One(a) = e {
                for b in &twos {
                    self.f.join(a, b, out);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::joins::harness::timed;
    use crate::prelude::*;
    use crate::testing::OneInputHarness;

    /// (key, event time)
    type Ev = (String, i64);

    fn ev(key: &str, ts: i64) -> Ev {
        (key.to_string(), ts)
    }

    /// Records with non-decreasing timestamps, keys taken in turn from `keys`.
    fn events(keys: &[&str], times: impl Iterator<Item = i64>) -> Vec<Ev> {
        let mut v: Vec<Ev> = times.enumerate().map(|(i, t)| ev(keys[i % keys.len()], t)).collect();
        v.sort_by_key(|e| e.1);
        v
    }

    /// The starts of the windows `[s, s + size)` holding `ts`, `s` a multiple of `slide`, found by
    /// trying every multiple of `slide` in reach.
    fn window_starts(ts: i64, size: i64, slide: i64) -> Vec<i64> {
        let first = (ts - size).div_euclid(slide) - 1;
        let last = ts.div_euclid(slide) + 1;
        (first..=last).map(|k| k * slide).filter(|s| *s <= ts && ts < s + size).collect()
    }

    /// The window join by definition: every pair of equal keys in a common window, with the
    /// window's max timestamp.
    fn nested_loop_join(ones: &[Ev], twos: &[Ev], size: i64, slide: i64) -> Vec<(String, i64, i64, i64)> {
        let mut out = Vec::new();
        for a in ones {
            for b in twos {
                if a.0 != b.0 {
                    continue;
                }
                for s in window_starts(a.1, size, slide) {
                    if window_starts(b.1, size, slide).contains(&s) {
                        out.push((a.0.clone(), a.1, b.1, s + size - 1));
                    }
                }
            }
        }
        out.sort();
        out
    }

    type Group = (String, Vec<i64>, Vec<i64>, i64);

    /// The co-group by definition: per key and window with elements of either side, the
    /// timestamps of each side, and the window's max timestamp.
    fn nested_loop_co_group(ones: &[Ev], twos: &[Ev], size: i64, slide: i64) -> Vec<Group> {
        let mut groups = BTreeSet::new();
        for e in ones.iter().chain(twos) {
            for s in window_starts(e.1, size, slide) {
                groups.insert((e.0.clone(), s));
            }
        }
        let in_group = |side: &[Ev], key: &str, s: i64| -> Vec<i64> {
            let mut v: Vec<i64> =
                side.iter().filter(|e| e.0 == key && s <= e.1 && e.1 < s + size).map(|e| e.1).collect();
            v.sort_unstable();
            v
        };
        let mut out: Vec<Group> = groups
            .into_iter()
            .map(|(key, s)| {
                let (a, b) = (in_group(ones, &key, s), in_group(twos, &key, s));
                (key, a, b, s + size - 1)
            })
            .collect();
        out.sort();
        out
    }

    /// Appends the timestamp each result carries.
    #[derive(Clone)]
    struct WithTimestamp;

    impl<T: Data> ProcessFunction<T, (T, i64)> for WithTimestamp {
        fn process_element(&mut self, v: T, ctx: &mut Context, out: &mut Collector<(T, i64)>) -> Result<()> {
            out.collect((v, ctx.timestamp().unwrap_or(i64::MIN)));
            Ok(())
        }
    }

    fn inputs(
        env: &StreamExecutionEnvironment,
        ones: &[Ev],
        twos: &[Ev],
    ) -> (DataStream<Ev>, DataStream<Ev>) {
        (timed(env, ones.to_vec(), |e: &Ev| e.1), timed(env, twos.to_vec(), |e: &Ev| e.1))
    }

    fn key(e: &Ev) -> String {
        e.0.clone()
    }

    fn run_join<WA: WindowAssigner<TaggedUnion<Ev, Ev>>>(
        ones: &[Ev],
        twos: &[Ev],
        assigner: WA,
    ) -> Vec<(String, i64, i64, i64)> {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let (a, b) = inputs(&env, ones, twos);
        let joined = a
            .join(&b)
            .where_(key)
            .equal_to(key)
            .window(assigner)
            .apply(|a: &Ev, b: &Ev| (a.0.clone(), a.1, b.1));
        let mut out: Vec<_> = joined
            .process(WithTimestamp)
            .execute_and_collect()
            .unwrap()
            .into_iter()
            .map(|((k, a, b), t)| (k, a, b, t))
            .collect();
        out.sort();
        out
    }

    fn sorted_ts(side: &[Ev]) -> Vec<i64> {
        let mut v: Vec<i64> = side.iter().map(|e| e.1).collect();
        v.sort_unstable();
        v
    }

    fn run_co_group<WA: WindowAssigner<TaggedUnion<Ev, Ev>>>(
        ones: &[Ev],
        twos: &[Ev],
        assigner: WA,
    ) -> Vec<Group> {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let (a, b) = inputs(&env, ones, twos);
        let grouped = a.co_group(&b).where_(key).equal_to(key).window(assigner).apply(
            |a: &[Ev], b: &[Ev], out: &mut Collector<(String, Vec<i64>, Vec<i64>)>| {
                let key = a.first().or(b.first()).map(|e| e.0.clone()).unwrap_or_default();
                out.collect((key, sorted_ts(a), sorted_ts(b)));
            },
        );
        let mut out: Vec<Group> = grouped
            .process(WithTimestamp)
            .execute_and_collect()
            .unwrap()
            .into_iter()
            .map(|((k, a, b), t)| (k, a, b, t))
            .collect();
        out.sort();
        out
    }

    /// Keys a..e on the first stream and b..f on the second: some keys have one side only.
    fn many() -> (Vec<Ev>, Vec<Ev>) {
        let ones = events(&["a", "b", "c", "d", "e"], (0..200).map(|i| (i * 37) % 400));
        let twos = events(&["b", "c", "d", "e", "f", "b"], (0..150).map(|i| (i * 53) % 390));
        (ones, twos)
    }

    #[test]
    fn the_windows_of_the_tests_are_right() {
        assert_eq!(window_starts(7, 10, 10), vec![0]);
        assert_eq!(window_starts(-1, 10, 10), vec![-10]);
        assert_eq!(window_starts(7, 10, 5), vec![0, 5]);
        assert_eq!(window_starts(10, 10, 5), vec![5, 10]);
    }

    #[test]
    fn tumbling_window_join_equals_the_nested_loop() {
        let (ones, twos) = many();
        let expected = nested_loop_join(&ones, &twos, 10, 10);
        assert!(expected.len() > 100, "the data should produce a fair number of pairs");
        assert_eq!(run_join(&ones, &twos, TumblingEventTimeWindows::of(Duration::from_millis(10))), expected);
    }

    #[test]
    fn sliding_window_join_equals_the_nested_loop() {
        let (ones, twos) = many();
        let expected = nested_loop_join(&ones, &twos, 20, 5);
        let sliding = SlidingEventTimeWindows::of(Duration::from_millis(20), Duration::from_millis(5));
        assert_eq!(run_join(&ones, &twos, sliding), expected);
    }

    #[test]
    fn tumbling_co_group_equals_the_nested_loop_with_one_sided_groups() {
        let (ones, twos) = many();
        let expected = nested_loop_co_group(&ones, &twos, 10, 10);
        assert!(expected.iter().any(|g| g.1.is_empty()) && expected.iter().any(|g| g.2.is_empty()));
        assert_eq!(
            run_co_group(&ones, &twos, TumblingEventTimeWindows::of(Duration::from_millis(10))),
            expected
        );
    }

    #[test]
    fn sliding_co_group_equals_the_nested_loop() {
        let (ones, twos) = many();
        let expected = nested_loop_co_group(&ones, &twos, 20, 5);
        let sliding = SlidingEventTimeWindows::of(Duration::from_millis(20), Duration::from_millis(5));
        assert_eq!(run_co_group(&ones, &twos, sliding), expected);
    }

    #[test]
    fn join_emits_nothing_for_a_window_with_one_side_and_co_group_calls_with_an_empty_side() {
        let ones = vec![ev("x", 1), ev("y", 2)];
        let twos = vec![ev("x", 3), ev("z", 15)];
        let tumbling = TumblingEventTimeWindows::of(Duration::from_millis(10));
        assert_eq!(run_join(&ones, &twos, tumbling), vec![("x".to_string(), 1, 3, 9)]);
        let groups = run_co_group(&ones, &twos, tumbling);
        let expected: Vec<Group> = vec![
            ("x".to_string(), vec![1], vec![3], 9),
            ("y".to_string(), vec![2], vec![], 9),
            ("z".to_string(), vec![], vec![15], 19),
        ];
        assert_eq!(groups, expected);
    }

    #[test]
    fn session_windows_merge_over_both_streams() {
        let ones = vec![ev("k", 1), ev("k", 3), ev("k", 20)];
        let twos = vec![ev("k", 4), ev("k", 12)];
        let sessions = EventTimeSessionWindows::with_gap(Duration::from_millis(5));
        // Sessions of k: {1, 3, 4} = [1, 9), {12} = [12, 17), {20} = [20, 25).
        assert_eq!(
            run_join(&ones, &twos, sessions),
            vec![("k".to_string(), 1, 4, 8), ("k".to_string(), 3, 4, 8)]
        );
        let expected: Vec<Group> = vec![
            ("k".to_string(), vec![], vec![12], 16),
            ("k".to_string(), vec![1, 3], vec![4], 8),
            ("k".to_string(), vec![20], vec![], 24),
        ];
        assert_eq!(run_co_group(&ones, &twos, sessions), expected);
    }

    #[test]
    fn apply_flat_emits_any_number_of_results_per_pair() {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let (a, b) = inputs(&env, &[ev("x", 1), ev("x", 2)], &[ev("x", 5), ev("y", 6)]);
        let mut out = a
            .join(&b)
            .where_(key)
            .equal_to(key)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
            .apply_flat(|a: &Ev, b: &Ev, out: &mut Collector<i64>| {
                if a.1 == 2 {
                    out.collect(a.1);
                    out.collect(b.1);
                }
            })
            .execute_and_collect()
            .unwrap();
        out.sort();
        assert_eq!(out, vec![2, 5]);
    }

    fn plan_of(build: impl FnOnce(&StreamExecutionEnvironment)) -> String {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        build(&env);
        env.execution_plan().unwrap()
    }

    #[test]
    fn plans_name_the_window_join_and_co_group() {
        let tumbling = TumblingEventTimeWindows::of(Duration::from_millis(10));
        let plan = plan_of(|env| {
            let (a, b) = inputs(env, &[], &[]);
            a.join(&b).where_(key).equal_to(key).window(tumbling).apply(|a: &Ev, _: &Ev| a.1).print();
        });
        assert!(plan.contains("Window(TumblingEventTimeWindows(10), EventTimeTrigger, Join)"), "{plan}");
        let plan = plan_of(|env| {
            let (a, b) = inputs(env, &[], &[]);
            a.co_group(&b)
                .where_(key)
                .equal_to(key)
                .window(tumbling)
                .evictor(CountEvictor::of(100))
                .apply(|a: &[Ev], _: &[Ev], out: &mut Collector<usize>| out.collect(a.len()))
                .print();
        });
        let evictor = Evictor::<TaggedUnion<Ev, Ev>, TimeWindow>::name(&CountEvictor::of(100));
        let name = format!("Window(TumblingEventTimeWindows(10), EventTimeTrigger, {evictor}, CoGroup)");
        assert!(plan.contains(&name), "{name} in {plan}");
    }

    #[test]
    fn trigger_and_evictor_are_passed_to_the_window() {
        let (ones, twos) = many();
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let (a, b) = inputs(&env, &ones, &twos);
        // Purging after the (only) firing and evicting nothing give the default results.
        let joined = a
            .join(&b)
            .where_(key)
            .equal_to(key)
            .window(TumblingEventTimeWindows::of(Duration::from_millis(10)))
            .trigger(PurgingTrigger::of(EventTimeTrigger::create()))
            .evictor(CountEvictor::of(1_000))
            .apply(|a: &Ev, b: &Ev| (a.0.clone(), a.1, b.1));
        let plan = env.execution_plan().unwrap();
        assert!(plan.contains("PurgingTrigger"), "{plan}");
        let mut out: Vec<_> = joined.execute_and_collect().unwrap();
        out.sort();
        let expected: Vec<_> =
            nested_loop_join(&ones, &twos, 10, 10).into_iter().map(|(k, a, b, _)| (k, a, b)).collect();
        assert_eq!(out, expected);
    }

    /// Drives the join's window operator by hand: first stream 1, second stream 2, watermark 24
    /// (the window [0, 10) fires), then the first stream's record at 3. It is too late for the
    /// window unless the allowed lateness keeps the window until 9 + lateness > 24.
    fn join_with_a_late_record(lateness: Option<Duration>) -> Vec<(i64, i64)> {
        let mut h = OneInputHarness::build(move |s: DataStream<TaggedUnion<Ev, Ev>>| {
            let first = s.flat_map(|t: TaggedUnion<Ev, Ev>, out: &mut Collector<Ev>| {
                if let TaggedUnion::One(e) = t {
                    out.collect(e)
                }
            });
            let second = s.flat_map(|t: TaggedUnion<Ev, Ev>, out: &mut Collector<Ev>| {
                if let TaggedUnion::Two(e) = t {
                    out.collect(e)
                }
            });
            let mut w = first
                .join(&second)
                .where_(key)
                .equal_to(key)
                .window(TumblingEventTimeWindows::of(Duration::from_millis(10)));
            if let Some(l) = lateness {
                w = w.allowed_lateness(l);
            }
            w.apply(|a: &Ev, b: &Ev| (a.1, b.1))
        })
        .unwrap();
        h.process_element(TaggedUnion::One(ev("k", 1)), 1).unwrap();
        h.process_element(TaggedUnion::Two(ev("k", 2)), 2).unwrap();
        h.process_watermark(24).unwrap();
        h.process_element(TaggedUnion::One(ev("k", 3)), 3).unwrap();
        h.process_watermark(i64::MAX).unwrap();
        let mut out: Vec<(i64, i64)> = h.take_records().into_iter().map(|(r, _)| r).collect();
        out.sort();
        out
    }

    #[test]
    fn allowed_lateness_is_passed_to_the_window() {
        assert_eq!(join_with_a_late_record(None), vec![(1, 2)], "the late record is dropped");
        // Accepted late, the record fires the window again: with all its pairs.
        assert_eq!(join_with_a_late_record(Some(Duration::from_millis(20))), vec![(1, 2), (1, 2), (3, 2)]);
    }
}
