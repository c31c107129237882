//! The interval join (Flink's `KeyedStream.intervalJoin`, `IntervalJoinOperator`).
//!
//! Two keyed streams are joined per key over event time: a left element with timestamp `t`
//! meets every right element whose timestamp lies in `[t + lower, t + upper]` (both bounds
//! inclusive unless made exclusive). Each side is buffered per key and timestamp; every arriving
//! element is joined at once with what the other side has buffered, so each matching pair is
//! emitted exactly once, by whichever of its two elements arrives second. A pair carries the
//! larger of the two timestamps.
//!
//! Event time bounds the buffers: an element older than the operator's watermark is late and is
//! dropped (or sent to a side output), and each buffered element is removed by an event-time
//! cleanup timer once no element that is not late could still join it.
//!
//! A checkpoint holds the buffers per key group and key; the cleanup timers follow from the
//! buffered timestamps and are registered again on restore. After a restore, elements are
//! late against the event time their key's subtask had reached before it until the new
//! watermark catches up (see `windowing::checkpoint`), so replayed late elements are dropped
//! as they were before.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::ops::RangeInclusive;
use std::time::Duration;

use eddy_core::keygroup::key_group_range_for_operator;
use eddy_core::{Batch, Data, EddyError, Key, Result, NO_TIMESTAMP};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::{Emitter, MainOutput, OperatorContext, SideOutputs, TwoInputOperator};
use serde::{Deserialize, Serialize};

use crate::windowing::checkpoint::{cut_by_key_group, KeyedSnapshot, Restore, RestoredTime, FORMAT_VERSION};

use crate::datastream::{ConnectedStreams, DataStream, KeyedStream};
use crate::functions::{Collector, Context, OutputTag, RuntimeContext};
use crate::operators::KeyMap;
use crate::timers::TimerQueue;

/// A bound of an interval join, in milliseconds: an integer (which may be negative) or a
/// [`Duration`].
pub trait IntervalBound {
    fn to_millis(self) -> i64;
}

impl IntervalBound for i64 {
    fn to_millis(self) -> i64 {
        self
    }
}

impl IntervalBound for i32 {
    fn to_millis(self) -> i64 {
        self.into()
    }
}

impl IntervalBound for Duration {
    fn to_millis(self) -> i64 {
        i64::try_from(self.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What a [`ProcessJoinFunction`] knows about the pair it is called with.
pub struct JoinContext<'a> {
    left_timestamp: i64,
    right_timestamp: i64,
    inner: Context<'a>,
}

impl JoinContext<'_> {
    /// The timestamp of the left element of the pair.
    pub fn left_timestamp(&self) -> i64 {
        self.left_timestamp
    }
    /// The timestamp of the right element of the pair.
    pub fn right_timestamp(&self) -> i64 {
        self.right_timestamp
    }
    /// The timestamp of the pair, which its results carry: the larger of the two.
    pub fn timestamp(&self) -> i64 {
        self.inner.timestamp
    }
    /// Emits a record to a side output, with the pair's timestamp.
    pub fn output<X: Data>(&mut self, tag: &OutputTag<X>, value: X) {
        self.inner.output(tag, value)
    }
}

/// Called for every pair of an interval join (Flink's `ProcessJoinFunction`).
///
/// Records collected carry the pair's timestamp, `max(left, right)`. A closure
/// `|left: &L, right: &R, ctx: &mut JoinContext, out: &mut Collector<O>| -> Result<()>` is one.
pub trait ProcessJoinFunction<L, R, O>: Clone + Send + Sync + 'static {
    fn open(&mut self, _ctx: &RuntimeContext) -> Result<()> {
        Ok(())
    }
    fn process_element(
        &mut self,
        left: &L,
        right: &R,
        ctx: &mut JoinContext,
        out: &mut Collector<O>,
    ) -> Result<()>;
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<L, R, O, F> ProcessJoinFunction<L, R, O> for F
where
    F: FnMut(&L, &R, &mut JoinContext, &mut Collector<O>) -> Result<()> + Clone + Send + Sync + 'static,
{
    fn process_element(
        &mut self,
        left: &L,
        right: &R,
        ctx: &mut JoinContext,
        out: &mut Collector<O>,
    ) -> Result<()> {
        self(left, right, ctx, out)
    }
}

impl<T: Data, K: Key, F> KeyedStream<T, K, F>
where
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// Joins this stream with `other` over a time interval per key, set with
    /// [`between`](IntervalJoin::between) (Flink's `intervalJoin`). Both streams need event
    /// timestamps.
    ///
    /// ```
    /// use eddy::prelude::*;
    ///
    /// // (order or payment id, event time in ms)
    /// type Event = (u32, i64);
    /// let env = StreamExecutionEnvironment::local().with_parallelism(1);
    /// let timed = |events: Vec<Event>| {
    ///     env.from_collection(events).assign_timestamps_and_watermarks(
    ///         WatermarkStrategy::for_monotonous_timestamps().with_timestamp_assigner(|e: &Event, _| e.1),
    ///     )
    /// };
    /// let orders = timed(vec![(1, 10), (2, 20)]).key_by(|e: &Event| e.0);
    /// let payments = timed(vec![(1, 12), (2, 19), (1, 30)]).key_by(|e: &Event| e.0);
    /// let paid = orders
    ///     .interval_join(&payments)
    ///     .between(0, Duration::from_millis(5)) // paid within 5 ms after the order
    ///     .process(|o: &Event, p: &Event, ctx: &mut JoinContext, out: &mut Collector<(u32, i64, i64)>| {
    ///         out.collect((o.0, p.1, ctx.timestamp()));
    ///         Ok(())
    ///     })
    ///     .execute_and_collect()
    ///     .unwrap();
    /// assert_eq!(paid, vec![(1, 12, 12)]);
    /// ```
    pub fn interval_join<U: Data, G>(&self, other: &KeyedStream<U, K, G>) -> IntervalJoin<T, U, K, F, G>
    where
        G: Fn(&U) -> K + Clone + Send + Sync + 'static,
    {
        IntervalJoin { left: copy_keyed(self), right: copy_keyed(other) }
    }
}

fn copy_keyed<T, K, F: Clone>(s: &KeyedStream<T, K, F>) -> KeyedStream<T, K, F> {
    KeyedStream { stream: s.stream.clone(), key: s.key.clone(), _k: PhantomData }
}

/// Two keyed streams to be joined over a time interval; see [`KeyedStream::interval_join`].
pub struct IntervalJoin<L, R, K, FL, FR> {
    left: KeyedStream<L, K, FL>,
    right: KeyedStream<R, K, FR>,
}

impl<L, R, K, FL, FR> IntervalJoin<L, R, K, FL, FR> {
    /// Joins a left element at `t` with the right elements at `t + lower ..= t + upper`
    /// (milliseconds or [`Duration`]s; `lower` may be negative and must not exceed `upper`).
    pub fn between(
        self,
        lower: impl IntervalBound,
        upper: impl IntervalBound,
    ) -> IntervalJoined<L, R, K, FL, FR> {
        IntervalJoined {
            left: self.left,
            right: self.right,
            lower: lower.to_millis(),
            upper: upper.to_millis(),
            lower_inclusive: true,
            upper_inclusive: true,
            left_late: None,
            right_late: None,
        }
    }
}

/// An interval join with its bounds, ready for [`process`](Self::process).
pub struct IntervalJoined<L, R, K, FL, FR> {
    left: KeyedStream<L, K, FL>,
    right: KeyedStream<R, K, FR>,
    lower: i64,
    upper: i64,
    lower_inclusive: bool,
    upper_inclusive: bool,
    left_late: Option<OutputTag<L>>,
    right_late: Option<OutputTag<R>>,
}

impl<L: Data, R: Data, K: Key, FL, FR> IntervalJoined<L, R, K, FL, FR>
where
    FL: Fn(&L) -> K + Clone + Send + Sync + 'static,
    FR: Fn(&R) -> K + Clone + Send + Sync + 'static,
{
    /// Right elements at exactly `t + lower` do not join.
    pub fn lower_bound_exclusive(mut self) -> Self {
        self.lower_inclusive = false;
        self
    }

    /// Right elements at exactly `t + upper` do not join.
    pub fn upper_bound_exclusive(mut self) -> Self {
        self.upper_inclusive = false;
        self
    }

    /// Sends left elements that arrive late (timestamp below the watermark) to side output
    /// `tag` instead of dropping them.
    pub fn side_output_left_late_data(mut self, tag: &OutputTag<L>) -> Self {
        self.left_late = Some(tag.clone());
        self
    }

    /// Sends late right elements to side output `tag` instead of dropping them.
    pub fn side_output_right_late_data(mut self, tag: &OutputTag<R>) -> Self {
        self.right_late = Some(tag.clone());
        self
    }

    /// Calls `f` for every joined pair; the operator is named "Interval Join".
    pub fn process<O: Data, P: ProcessJoinFunction<L, R, O>>(&self, f: P) -> DataStream<O> {
        let env = &self.left.stream.env;
        if self.lower > self.upper {
            env.record_error(EddyError::InvalidJob(format!(
                "interval join: the lower bound ({} ms) must not be greater than the upper bound ({} ms)",
                self.lower, self.upper
            )));
        }
        let bounds = JoinBounds::new(self.lower, self.upper, self.lower_inclusive, self.upper_inclusive);
        let (key_left, key_right) = (self.left.key.clone(), self.right.key.clone());
        let late = LateTags {
            left: self.left_late.as_ref().map(|t| t.id().to_string()),
            right: self.right_late.as_ref().map(|t| t.id().to_string()),
        };
        let connected =
            ConnectedStreams { first: self.left.stream.clone(), second: self.right.stream.clone() };
        connected.transform("Interval Join", move |_| {
            Ok(IntervalJoinOperator::new(
                key_left.clone(),
                key_right.clone(),
                f.clone(),
                bounds,
                late.clone(),
            ))
        })
    }
}

/// The bounds with exclusiveness folded in: a right element at `r` joins a left element at `l`
/// when `l + lower <= r <= l + upper`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinBounds {
    pub lower: i64,
    pub upper: i64,
}

impl JoinBounds {
    pub fn new(lower: i64, upper: i64, lower_inclusive: bool, upper_inclusive: bool) -> Self {
        JoinBounds {
            lower: if lower_inclusive { lower } else { lower.saturating_add(1) },
            upper: if upper_inclusive { upper } else { upper.saturating_sub(1) },
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct LateTags {
    pub left: Option<String>,
    pub right: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum Side {
    Left,
    Right,
}

/// The elements of one key buffered on each side, by timestamp.
struct Buffers<L, R> {
    left: BTreeMap<i64, Vec<L>>,
    right: BTreeMap<i64, Vec<R>>,
}

impl<L, R> Default for Buffers<L, R> {
    fn default() -> Self {
        Buffers { left: BTreeMap::new(), right: BTreeMap::new() }
    }
}

/// Flink's `IntervalJoinOperator`.
pub(crate) struct IntervalJoinOperator<K, L, R, O, KL, KR, P> {
    key_left: KL,
    key_right: KR,
    f: P,
    bounds: JoinBounds,
    late: LateTags,
    buffers: KeyMap<K, Buffers<L, R>>,
    /// Removes the bucket (key, side, timestamp) when it fires. One timer per bucket; Flink's
    /// one per (key, side, cleanup time) is the same, as the cleanup time follows from the
    /// bucket's timestamp.
    cleanup: TimerQueue<(K, Side, i64)>,
    watermark: i64,
    /// Event time reached before a restore, per key group.
    restored_time: RestoredTime,
    /// The key groups of this subtask and their number (set in `open`).
    key_groups: RangeInclusive<usize>,
    max_parallelism: usize,
    _o: PhantomData<fn() -> O>,
}

/// The buffers of one key in a checkpoint: `(timestamp, elements)` per side.
type BufferedKey<L, R> = (Vec<(i64, Vec<L>)>, Vec<(i64, Vec<R>)>);

const OPERATOR: &str = "interval join";

impl<K, L, R, O, KL, KR, P> IntervalJoinOperator<K, L, R, O, KL, KR, P>
where
    K: Key,
    L: Data,
    R: Data,
    O: Data,
    KL: Fn(&L) -> K + Send + 'static,
    KR: Fn(&R) -> K + Send + 'static,
    P: ProcessJoinFunction<L, R, O>,
{
    pub fn new(key_left: KL, key_right: KR, f: P, bounds: JoinBounds, late: LateTags) -> Self {
        IntervalJoinOperator {
            key_left,
            key_right,
            f,
            bounds,
            late,
            buffers: KeyMap::default(),
            cleanup: TimerQueue::default(),
            watermark: i64::MIN,
            restored_time: RestoredTime::default(),
            key_groups: 0..=0,
            max_parallelism: 1,
            _o: PhantomData,
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        let entries = self.buffers.iter().map(|(key, b)| {
            let left: Vec<(i64, &Vec<L>)> = b.left.iter().map(|(ts, v)| (*ts, v)).collect();
            let right: Vec<(i64, &Vec<R>)> = b.right.iter().map(|(ts, v)| (*ts, v)).collect();
            (key, (left, right))
        });
        KeyedSnapshot {
            format_version: FORMAT_VERSION,
            operator: OPERATOR.into(),
            max_parallelism: self.max_parallelism,
            times: self.restored_time.snapshot(&self.key_groups, self.watermark, Vec::new()),
            shared: Vec::new(),
            key_groups: cut_by_key_group(entries, self.max_parallelism)?,
            functions: None,
        }
        .encode()
    }

    /// The buffers of the key groups this subtask owns, and their cleanup timers.
    fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let restore = Restore::read(restored, OPERATOR)?;
        let entries: Vec<(K, BufferedKey<L, R>)> = restore.entries()?;
        let right_upper = 0i64.saturating_sub(self.bounds.lower);
        for (key, (left, right)) in entries {
            for (ts, _) in &left {
                self.cleanup
                    .register(&(key.clone(), Side::Left, *ts), Self::cleanup_time(*ts, self.bounds.upper));
            }
            for (ts, _) in &right {
                self.cleanup.register(&(key.clone(), Side::Right, *ts), Self::cleanup_time(*ts, right_upper));
            }
            let buffers = self.buffers.entry(key).or_default();
            buffers.left.extend(left);
            buffers.right.extend(right);
        }
        self.restored_time = restore.times();
        Ok(())
    }

    /// Flink's cleanup time: once the watermark passes it, no element that is not late can
    /// join an element of this side at `ts` (`upper` is the bound relative to this side).
    fn cleanup_time(ts: i64, relative_upper: i64) -> i64 {
        if relative_upper > 0 {
            ts.saturating_add(relative_upper)
        } else {
            ts
        }
    }

    fn process_left(&mut self, value: L, ts: i64, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        let key = (self.key_left)(&value);
        if self.is_late(Side::Left, ts, &key)? {
            return emit_late(side, self.late.left.as_deref(), value, ts);
        }
        let buffers = self.buffers.entry(key.clone()).or_default();
        let (lower, upper) = (ts.saturating_add(self.bounds.lower), ts.saturating_add(self.bounds.upper));
        if lower <= upper {
            for (&right_ts, rights) in buffers.right.range(lower..=upper) {
                for right in rights {
                    join_pair(&mut self.f, &value, right, ts, right_ts, main, side)?;
                }
            }
        }
        buffers.left.entry(ts).or_default().push(value);
        self.cleanup.register(&(key, Side::Left, ts), Self::cleanup_time(ts, self.bounds.upper));
        Ok(())
    }

    fn process_right(&mut self, value: R, ts: i64, out: &mut Emitter<O>) -> Result<()> {
        let (main, side) = out.split();
        let key = (self.key_right)(&value);
        if self.is_late(Side::Right, ts, &key)? {
            return emit_late(side, self.late.right.as_deref(), value, ts);
        }
        let buffers = self.buffers.entry(key.clone()).or_default();
        // Seen from the right, the left partners lie at ts - upper ..= ts - lower.
        let (lower, upper) = (ts.saturating_sub(self.bounds.upper), ts.saturating_sub(self.bounds.lower));
        if lower <= upper {
            for (&left_ts, lefts) in buffers.left.range(lower..=upper) {
                for left in lefts {
                    join_pair(&mut self.f, left, &value, left_ts, ts, main, side)?;
                }
            }
        }
        buffers.right.entry(ts).or_default().push(value);
        let relative_upper = 0i64.saturating_sub(self.bounds.lower);
        self.cleanup.register(&(key, Side::Right, ts), Self::cleanup_time(ts, relative_upper));
        Ok(())
    }

    /// Flink drops elements below the watermark (an element at the watermark still joins).
    fn is_late(&self, side: Side, ts: i64, key: &K) -> Result<bool> {
        if ts == NO_TIMESTAMP {
            let which = if side == Side::Left { "left (first)" } else { "right (second)" };
            return Err(EddyError::User(format!(
                "a record of the {which} input has no timestamp: elements used in interval joins \
                 need meaningful event timestamps (assign them with assign_timestamps_and_watermarks)"
            )));
        }
        Ok(ts < self.restored_time.time_of(key, self.watermark))
    }

    fn remove_bucket(&mut self, key: &K, side: Side, ts: i64) {
        let Some(b) = self.buffers.get_mut(key) else { return };
        match side {
            Side::Left => b.left.remove(&ts).map(drop),
            Side::Right => b.right.remove(&ts).map(drop),
        };
        if b.left.is_empty() && b.right.is_empty() {
            self.buffers.remove(key);
        }
    }

    /// The number of buffered elements (left, right), for tests.
    #[cfg(test)]
    pub fn buffered(&self) -> (usize, usize) {
        let count = |m: &dyn Fn(&Buffers<L, R>) -> usize| self.buffers.values().map(m).sum::<usize>();
        (count(&|b| b.left.values().map(Vec::len).sum()), count(&|b| b.right.values().map(Vec::len).sum()))
    }

    /// The timestamps buffered on each side over all keys (left, right), for tests.
    #[cfg(test)]
    pub fn buffered_timestamps(&self) -> (Vec<i64>, Vec<i64>) {
        let mut left: Vec<i64> = self.buffers.values().flat_map(|b| b.left.keys().copied()).collect();
        let mut right: Vec<i64> = self.buffers.values().flat_map(|b| b.right.keys().copied()).collect();
        left.sort_unstable();
        right.sort_unstable();
        (left, right)
    }

    #[cfg(test)]
    pub fn pending_timers(&self) -> usize {
        self.cleanup.len()
    }
}

fn emit_late<X: Data>(side: &mut SideOutputs, tag: Option<&str>, value: X, ts: i64) -> Result<()> {
    match tag {
        Some(tag) => side.emit(tag, value, ts),
        None => Ok(()),
    }
}

/// Calls the join function for one pair, its results stamped with the pair's timestamp.
fn join_pair<L, R, O: Data, P: ProcessJoinFunction<L, R, O>>(
    f: &mut P,
    left: &L,
    right: &R,
    left_ts: i64,
    right_ts: i64,
    main: &mut MainOutput<O>,
    side: &mut SideOutputs,
) -> Result<()> {
    let ts = left_ts.max(right_ts);
    main.set_timestamp(ts);
    let mut ctx =
        JoinContext { left_timestamp: left_ts, right_timestamp: right_ts, inner: Context::new(ts, side) };
    let mut c = Collector::new(main);
    f.process_element(left, right, &mut ctx, &mut c)?;
    c.finish()?;
    ctx.inner.finish()
}

impl<K, L, R, O, KL, KR, P> TwoInputOperator for IntervalJoinOperator<K, L, R, O, KL, KR, P>
where
    K: Key,
    L: Data,
    R: Data,
    O: Data,
    KL: Fn(&L) -> K + Send + 'static,
    KR: Fn(&R) -> K + Send + 'static,
    P: ProcessJoinFunction<L, R, O>,
{
    type In1 = L;
    type In2 = R;
    type Out = O;

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        restored.map_or(Ok(()), |r| self.restore(r))
    }

    fn snapshot_state(&mut self, _barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.snapshot().map(Some)
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.key_groups =
            key_group_range_for_operator(ctx.max_parallelism, ctx.parallelism, ctx.subtask_index);
        self.f.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch1(&mut self, batch: Batch<L>, out: &mut Emitter<O>) -> Result<()> {
        batch.into_iter_with_timestamps().try_for_each(|(v, ts)| self.process_left(v, ts, out))
    }

    fn process_batch2(&mut self, batch: Batch<R>, out: &mut Emitter<O>) -> Result<()> {
        batch.into_iter_with_timestamps().try_for_each(|(v, ts)| self.process_right(v, ts, out))
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<O>) -> Result<()> {
        self.watermark = watermark;
        self.restored_time.release(watermark);
        while let Some((_, (key, side, ts))) = self.cleanup.pop_due(watermark) {
            self.remove_bucket(&key, side, ts);
        }
        out.emit_watermark(watermark)
    }

    fn close(&mut self) -> Result<()> {
        self.f.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::joins::harness::{timed, TwoInputHarness};
    use crate::prelude::*;

    /// A test element: key, timestamp, side ('l' or 'r').
    type Elem = (String, i64, char);

    fn elem(key: &str, ts: i64, side: char) -> Elem {
        (key.to_string(), ts, side)
    }

    fn passthrough(l: &Elem, r: &Elem, _: &mut JoinContext, out: &mut Collector<(Elem, Elem)>) -> Result<()> {
        out.collect((l.clone(), r.clone()));
        Ok(())
    }

    type Op<P> =
        IntervalJoinOperator<String, Elem, Elem, (Elem, Elem), fn(&Elem) -> String, fn(&Elem) -> String, P>;
    type PassOp = Op<fn(&Elem, &Elem, &mut JoinContext, &mut Collector<(Elem, Elem)>) -> Result<()>>;

    fn key_of(e: &Elem) -> String {
        e.0.clone()
    }

    fn harness(lower: i64, lower_incl: bool, upper: i64, upper_incl: bool) -> TwoInputHarness<PassOp> {
        harness_with_late(lower, lower_incl, upper, upper_incl, LateTags::default())
    }

    fn harness_with_late(
        lower: i64,
        lower_incl: bool,
        upper: i64,
        upper_incl: bool,
        late: LateTags,
    ) -> TwoInputHarness<PassOp> {
        let bounds = JoinBounds::new(lower, upper, lower_incl, upper_incl);
        let op: PassOp = IntervalJoinOperator::new(key_of, key_of, passthrough, bounds, late);
        TwoInputHarness::open(op).unwrap()
    }

    /// Timestamps of the joined pairs, sorted.
    fn pairs(h: &mut TwoInputHarness<PassOp>) -> Vec<(i64, i64)> {
        let mut v: Vec<(i64, i64)> = h.take_records().into_iter().map(|((l, r), _)| (l.1, r.1)).collect();
        v.sort_unstable();
        v
    }

    /// Definition of the interval join, written out: every pair of equal keys with
    /// `l + lower <= r <= l + upper` (strict where exclusive).
    fn nested_loop(
        lefts: &[(String, i64)],
        rights: &[(String, i64)],
        (lower, lower_incl): (i64, bool),
        (upper, upper_incl): (i64, bool),
    ) -> Vec<(String, i64, i64)> {
        let mut out = Vec::new();
        for (lk, l) in lefts {
            for (rk, r) in rights {
                let above = if lower_incl { *r >= l + lower } else { *r > l + lower };
                let below = if upper_incl { *r <= l + upper } else { *r < l + upper };
                if lk == rk && above && below {
                    out.push((lk.clone(), *l, *r));
                }
            }
        }
        out.sort();
        out
    }

    /// Flink's `processElementsAndWatermarks(1, 4)`: elements 1..=4 with a watermark after each,
    /// first all of one side, then all of the other.
    fn run_one_to_four(lower: (i64, bool), upper: (i64, bool), left_first: bool) -> Vec<(i64, i64)> {
        let mut h = harness(lower.0, lower.1, upper.0, upper.1);
        let sides = if left_first { [0, 1] } else { [1, 0] };
        for input in sides {
            for ts in 1..=4 {
                if input == 0 {
                    h.element1(elem("k", ts, 'l'), Some(ts)).unwrap();
                } else {
                    h.element2(elem("k", ts, 'r'), Some(ts)).unwrap();
                }
                h.watermark(input, ts).unwrap();
            }
        }
        pairs(&mut h)
    }

    fn check_bounds(lower: (i64, bool), upper: (i64, bool), flink_expected: &[(i64, i64)]) {
        let side: Vec<(String, i64)> = (1..=4).map(|t| ("k".to_string(), t)).collect();
        let by_definition: Vec<(i64, i64)> =
            nested_loop(&side, &side, lower, upper).into_iter().map(|(_, l, r)| (l, r)).collect();
        assert_eq!(by_definition, flink_expected, "the test's own expectation is inconsistent");
        for left_first in [true, false] {
            assert_eq!(run_one_to_four(lower, upper, left_first), flink_expected, "left first: {left_first}");
        }
    }

    // Expected pairs (left ts, right ts) as in Flink's IntervalJoinOperatorTest.

    #[test]
    fn positive_bounds_inclusive_lower_exclusive_upper() {
        check_bounds((1, true), (3, false), &[(1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]);
    }

    #[test]
    fn mirrored_negative_bounds_give_the_mirrored_pairs() {
        check_bounds((-3, false), (-1, true), &[(2, 1), (3, 1), (3, 2), (4, 2), (4, 3)]);
    }

    #[test]
    fn negative_inclusive_and_negative_inclusive() {
        check_bounds((-2, true), (-1, true), &[(2, 1), (3, 1), (3, 2), (4, 2), (4, 3)]);
    }

    #[test]
    fn negative_inclusive_and_positive_inclusive() {
        let expected = [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3), (3, 4), (4, 3), (4, 4)];
        check_bounds((-1, true), (1, true), &expected);
    }

    #[test]
    fn positive_inclusive_and_positive_inclusive() {
        check_bounds((1, true), (2, true), &[(1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]);
    }

    #[test]
    fn negative_exclusive_and_negative_exclusive() {
        check_bounds((-3, false), (-1, false), &[(3, 1), (4, 2)]);
    }

    #[test]
    fn negative_exclusive_and_positive_exclusive() {
        check_bounds((-1, false), (1, false), &[(1, 1), (2, 2), (3, 3), (4, 4)]);
    }

    #[test]
    fn positive_exclusive_and_positive_exclusive() {
        check_bounds((1, false), (3, false), &[(1, 3), (2, 4)]);
    }

    #[test]
    fn equal_bounds_made_exclusive_join_nothing() {
        check_bounds((2, true), (2, false), &[]);
        check_bounds((0, false), (0, true), &[]);
    }

    /// Fills both buffers with 1..=5, then moves the watermark to 1, 4 and 6, checking after each
    /// which timestamps are still buffered (Flink's state cleanup tests).
    fn check_cleanup(lower: (i64, bool), upper: (i64, bool), expected: [(&[i64], &[i64]); 3]) {
        let mut h = harness(lower.0, lower.1, upper.0, upper.1);
        for ts in 1..=5 {
            h.element1(elem("k", ts, 'l'), Some(ts)).unwrap();
        }
        for ts in 1..=5 {
            h.element2(elem("k", ts, 'r'), Some(ts)).unwrap();
        }
        for (w, (left, right)) in [1, 4, 6].into_iter().zip(expected) {
            h.watermark(0, w).unwrap();
            h.watermark(1, w).unwrap();
            assert_eq!(h.op.buffered_timestamps(), (left.to_vec(), right.to_vec()), "after watermark {w}");
        }
        assert_eq!(h.op.buffered(), (0, 0));
        assert_eq!(h.op.pending_timers(), 0);
        assert!(h.op.buffers.is_empty(), "no per-key entry is left behind");
    }

    #[test]
    fn state_cleanup_negative_inclusive_zero_inclusive() {
        check_cleanup(
            (-1, true),
            (0, true),
            [(&[2, 3, 4, 5], &[1, 2, 3, 4, 5]), (&[5], &[4, 5]), (&[], &[])],
        );
    }

    #[test]
    fn state_cleanup_negative_exclusive_positive_exclusive() {
        check_cleanup(
            (-2, false),
            (1, false),
            [(&[2, 3, 4, 5], &[1, 2, 3, 4, 5]), (&[5], &[4, 5]), (&[], &[])],
        );
    }

    #[test]
    fn state_cleanup_zero_inclusive_positive_inclusive() {
        check_cleanup((0, true), (1, true), [(&[1, 2, 3, 4, 5], &[2, 3, 4, 5]), (&[4, 5], &[5]), (&[], &[])]);
    }

    #[test]
    fn state_cleanup_negative_exclusive_positive_exclusive_two() {
        check_cleanup(
            (-1, false),
            (2, false),
            [(&[1, 2, 3, 4, 5], &[2, 3, 4, 5]), (&[4, 5], &[5]), (&[], &[])],
        );
    }

    #[test]
    fn late_elements_are_dropped_and_not_joined() {
        let mut h = harness(-1, true, 1, true);
        for ts in 1..=3 {
            h.element1(elem("k", ts, 'l'), Some(ts)).unwrap();
            h.element2(elem("k", ts, 'r'), Some(ts)).unwrap();
        }
        h.watermark_both(3).unwrap();
        h.element1(elem("k", 1, 'l'), Some(1)).unwrap(); // late: 1 < 3
        for ts in 4..=5 {
            h.element1(elem("k", ts, 'l'), Some(ts)).unwrap();
            h.element2(elem("k", ts, 'r'), Some(ts)).unwrap();
        }
        let expected = [
            (1, 1),
            (1, 2),
            (2, 1),
            (2, 2),
            (2, 3),
            (3, 2),
            (3, 3),
            (3, 4),
            (4, 3),
            (4, 4),
            (4, 5),
            (5, 4),
            (5, 5),
        ];
        assert_eq!(pairs(&mut h), expected);
    }

    #[test]
    fn late_elements_go_to_the_side_outputs_with_their_timestamps() {
        let (left_tag, right_tag) =
            (OutputTag::<Elem>::new("left_late"), OutputTag::<Elem>::new("right_late"));
        let late = LateTags { left: Some(left_tag.id().into()), right: Some(right_tag.id().into()) };
        let mut h = harness_with_late(-1, true, 1, true, late);
        let (left_late, right_late) = (h.side_output(&left_tag), h.side_output(&right_tag));
        h.element1(elem("k", 3, 'l'), Some(3)).unwrap();
        h.element2(elem("k", 3, 'r'), Some(3)).unwrap();
        h.watermark_both(3).unwrap();
        h.element1(elem("k", 4, 'l'), Some(4)).unwrap();
        h.element2(elem("k", 4, 'r'), Some(4)).unwrap();
        h.element1(elem("k", 1, 'l'), Some(1)).unwrap(); // late
        h.element2(elem("k", 2, 'r'), Some(2)).unwrap(); // late
        h.element1(elem("k", 3, 'l'), Some(3)).unwrap(); // at the watermark: not late
        h.element1(elem("k", 5, 'l'), Some(5)).unwrap();
        h.element2(elem("k", 5, 'r'), Some(5)).unwrap();
        assert_eq!(pairs(&mut h), [(3, 3), (3, 3), (3, 4), (3, 4), (4, 3), (4, 4), (4, 5), (5, 4), (5, 5)]);
        assert_eq!(left_late.take(), vec![(elem("k", 1, 'l'), Some(1))]);
        assert_eq!(right_late.take(), vec![(elem("k", 2, 'r'), Some(2))]);
    }

    #[test]
    fn a_record_without_timestamp_is_an_error_on_either_side() {
        let mut h = harness(0, true, 0, true);
        let e = h.element1(elem("k", 0, 'l'), None).unwrap_err().to_string();
        assert!(e.contains("left") && e.contains("no timestamp"), "{e}");
        let e = h.element2(elem("k", 0, 'r'), None).unwrap_err().to_string();
        assert!(e.contains("right") && e.contains("no timestamp"), "{e}");
    }

    #[test]
    fn context_and_results_carry_the_pair_timestamps() {
        #[derive(Clone)]
        struct Stamps {
            tag: OutputTag<i64>,
        }
        impl ProcessJoinFunction<Elem, Elem, (i64, i64, i64)> for Stamps {
            fn process_element(
                &mut self,
                l: &Elem,
                r: &Elem,
                ctx: &mut JoinContext,
                out: &mut Collector<(i64, i64, i64)>,
            ) -> Result<()> {
                out.collect((ctx.left_timestamp(), ctx.right_timestamp(), ctx.timestamp()));
                ctx.output(&self.tag, l.1 * 100 + r.1);
                Ok(())
            }
        }
        let tag = OutputTag::<i64>::new("side");
        let f = Stamps { tag: tag.clone() };
        let op = IntervalJoinOperator::new(
            key_of,
            key_of,
            f,
            JoinBounds::new(-5, 5, true, true),
            LateTags::default(),
        );
        let mut h = TwoInputHarness::open(op).unwrap();
        let side = h.side_output(&tag);
        h.element1(elem("k", 10, 'l'), Some(10)).unwrap();
        h.element2(elem("k", 7, 'r'), Some(7)).unwrap();
        h.element2(elem("k", 14, 'r'), Some(14)).unwrap();
        h.element1(elem("k", 12, 'l'), Some(12)).unwrap();
        let mut records = h.take_records();
        records.sort();
        assert_eq!(
            records,
            vec![
                ((10, 7, 10), Some(10)),
                ((10, 14, 14), Some(14)),
                ((12, 7, 12), Some(12)),
                ((12, 14, 14), Some(14)),
            ]
        );
        let mut side = side.take();
        side.sort();
        assert_eq!(side, vec![(1007, Some(10)), (1014, Some(14)), (1207, Some(12)), (1214, Some(14))]);
    }

    #[test]
    fn only_equal_keys_join_and_cleanup_is_per_key() {
        let mut h = harness(-10, true, 10, true);
        h.element1(elem("a", 5, 'l'), Some(5)).unwrap();
        h.element1(elem("b", 5, 'l'), Some(5)).unwrap();
        h.element2(elem("a", 6, 'r'), Some(6)).unwrap();
        h.element2(elem("c", 6, 'r'), Some(6)).unwrap();
        let got: Vec<(String, String)> = h.take_records().into_iter().map(|((l, r), _)| (l.0, r.0)).collect();
        assert_eq!(got, vec![("a".to_string(), "a".to_string())]);
        assert_eq!(h.op.buffered(), (2, 2));
        h.watermark_both(15).unwrap(); // left 5 + 10 = 15: both lefts go; rights (6 + 10) stay
        assert_eq!(h.op.buffered(), (0, 2));
        h.watermark_both(16).unwrap();
        assert_eq!(h.op.buffered(), (0, 0));
        assert!(h.op.buffers.is_empty());
    }

    #[test]
    fn watermarks_are_forwarded_after_cleanup() {
        let mut h = harness(0, true, 0, true);
        h.element1(elem("k", 1, 'l'), Some(1)).unwrap();
        h.watermark(0, 5).unwrap();
        assert_eq!(h.op.buffered(), (1, 0), "the second input holds event time back");
        h.watermark(1, 5).unwrap();
        assert_eq!(h.op.buffered(), (0, 0));
    }

    // End-to-end jobs.

    type Ev = (String, i64);

    fn events(keys: &[&str], times: impl Iterator<Item = i64>) -> Vec<Ev> {
        let mut v: Vec<Ev> = times.enumerate().map(|(i, t)| (keys[i % keys.len()].to_string(), t)).collect();
        v.sort_by_key(|e| e.1); // monotonous per input
        v
    }

    fn run_job(
        parallelism: usize,
        lefts: &[Ev],
        rights: &[Ev],
        configure: impl FnOnce(
            IntervalJoined<Ev, Ev, String, fn(&Ev) -> String, fn(&Ev) -> String>,
        ) -> IntervalJoined<Ev, Ev, String, fn(&Ev) -> String, fn(&Ev) -> String>,
    ) -> Vec<(String, i64, i64)> {
        let env = StreamExecutionEnvironment::local().with_parallelism(parallelism);
        let key: fn(&Ev) -> String = |e| e.0.clone();
        let l = timed(&env, lefts.to_vec(), |e: &Ev| e.1).key_by(key);
        let r = timed(&env, rights.to_vec(), |e: &Ev| e.1).key_by(key);
        let joined = configure(l.interval_join(&r).between(-3, Duration::from_millis(7)));
        let mut out = joined
            .process(|l: &Ev, r: &Ev, ctx: &mut JoinContext, out: &mut Collector<(String, i64, i64)>| {
                assert_eq!(ctx.timestamp(), l.1.max(r.1));
                out.collect((l.0.clone(), l.1, r.1));
                Ok(())
            })
            .execute_and_collect()
            .unwrap();
        out.sort();
        out
    }

    #[test]
    fn job_with_parallelism_two_and_many_keys_matches_the_nested_loop() {
        let keys = ["a", "b", "c", "d", "e"];
        let lefts = events(&keys, (0..300).map(|i| (i * 37) % 500));
        let rights = events(&keys[1..], (0..250).map(|i| (i * 53) % 480));
        let expected = nested_loop(&lefts, &rights, (-3, true), (7, true));
        assert!(expected.len() > 50, "the data should produce a fair number of pairs");
        assert_eq!(run_job(2, &lefts, &rights, |j| j), expected);
        let exclusive = nested_loop(&lefts, &rights, (-3, false), (7, false));
        assert_eq!(
            run_job(2, &lefts, &rights, |j| j.lower_bound_exclusive().upper_bound_exclusive()),
            exclusive
        );
    }

    #[test]
    fn job_results_carry_the_larger_timestamp() {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let key = |e: &Ev| e.0.clone();
        let l = timed(&env, vec![("x".to_string(), 10)], |e: &Ev| e.1).key_by(key);
        let r = timed(&env, vec![("x".to_string(), 4), ("x".to_string(), 13)], |e: &Ev| e.1).key_by(key);
        let joined = l.interval_join(&r).between(-10, 10).process(
            |_: &Ev, r: &Ev, _: &mut JoinContext, out: &mut Collector<i64>| {
                out.collect(r.1);
                Ok(())
            },
        );
        // A process function after the join reads the timestamps the results carry.
        #[derive(Clone)]
        struct Stamp;
        impl ProcessFunction<i64, (i64, Option<i64>)> for Stamp {
            fn process_element(
                &mut self,
                v: i64,
                ctx: &mut Context,
                out: &mut Collector<(i64, Option<i64>)>,
            ) -> Result<()> {
                out.collect((v, ctx.timestamp()));
                Ok(())
            }
        }
        let mut got = joined.process(Stamp).execute_and_collect().unwrap();
        got.sort();
        assert_eq!(got, vec![(4, Some(10)), (13, Some(13))]);
    }

    #[test]
    fn job_without_timestamps_fails_naming_the_operator() {
        let env = StreamExecutionEnvironment::local().with_parallelism(1);
        let key = |e: &Ev| e.0.clone();
        let l = env.from_collection(vec![("x".to_string(), 1)]).key_by(key);
        let r = env.from_collection(vec![("x".to_string(), 1)]).key_by(key);
        l.interval_join(&r).between(0, 0).process(passthrough_ev).collect_to_vec();
        let e = env.execute("no timestamps").unwrap_err().to_string();
        assert!(e.contains("Interval Join") && e.contains("no timestamp"), "{e}");
    }

    fn passthrough_ev(l: &Ev, r: &Ev, _: &mut JoinContext, out: &mut Collector<(Ev, Ev)>) -> Result<()> {
        out.collect((l.clone(), r.clone()));
        Ok(())
    }

    /// Left and right records of three keys, out of order by up to 12 ms, with watermarks on
    /// both inputs that leave some records late.
    fn checkpoint_steps() -> Vec<(usize, Option<Elem>, i64)> {
        let keys = ["a", "b", "c"];
        let mut steps = Vec::new();
        let mut max_ts = i64::MIN;
        for i in 0..80i64 {
            let ts = i * 2 + (i * 7 % 13) - 6;
            let side = (i % 3 == 0) as usize;
            let c = if side == 0 { 'L' } else { 'R' };
            steps.push((side, Some(elem(keys[(i / 2 % 3) as usize], ts, c)), ts));
            max_ts = max_ts.max(ts);
            if i % 5 == 4 {
                steps.push((2, None, max_ts - 3));
            }
        }
        steps.push((2, None, i64::MAX));
        steps
    }

    fn join_subtask(
        index: usize,
        parallelism: usize,
        restored: Option<&RestoredState>,
    ) -> TwoInputHarness<PassOp> {
        let bounds = JoinBounds::new(-8, 10, true, false);
        let op: PassOp = IntervalJoinOperator::new(key_of, key_of, passthrough, bounds, LateTags::default());
        TwoInputHarness::open_subtask(op, index, parallelism, restored).unwrap()
    }

    type Pairs = Vec<((Elem, Elem), Option<i64>)>;

    /// Runs `steps` (input 0 or 1 with an element, or a watermark on both) on the subtasks, each
    /// record on the subtask owning its key.
    fn run_join(subtasks: &mut [TwoInputHarness<PassOp>], steps: &[(usize, Option<Elem>, i64)]) -> Pairs {
        let p = subtasks.len();
        for (input, e, ts) in steps {
            let Some(e) = e else {
                subtasks.iter_mut().for_each(|t| t.watermark_both(*ts).unwrap());
                continue;
            };
            let t = &mut subtasks[eddy_core::keygroup::assign_key_to_operator(&key_of(e), 128, p)];
            match input {
                0 => t.element1(e.clone(), Some(*ts)).unwrap(),
                _ => t.element2(e.clone(), Some(*ts)).unwrap(),
            }
        }
        subtasks.iter_mut().flat_map(|t| t.take_records()).collect()
    }

    #[test]
    fn interval_join_buffers_survive_restore_and_rescale() {
        let steps = checkpoint_steps();
        let whole = run_join(&mut [join_subtask(0, 1, None)], &steps);
        assert!(whole.len() > 20, "{whole:?}");
        let sorted = |mut v: Pairs| {
            v.sort();
            v
        };
        for cut in 1..steps.len() {
            for (from, to) in [(1, 1), (2, 3), (2, 1)] {
                let mut before: Vec<_> = (0..from).map(|i| join_subtask(i, from, None)).collect();
                let mut out = run_join(&mut before, &steps[..cut]);
                let states: Vec<(usize, Vec<u8>)> =
                    before.iter_mut().enumerate().map(|(i, t)| (i, t.snapshot().unwrap().unwrap())).collect();
                let restored = |subtask| RestoredState {
                    states: states.clone(),
                    old_parallelism: from,
                    subtask,
                    parallelism: to,
                    max_parallelism: 128,
                    operator_name: "interval join".into(),
                };
                let mut after: Vec<_> = (0..to).map(|i| join_subtask(i, to, Some(&restored(i)))).collect();
                out.extend(run_join(&mut after, &steps[cut..]));
                if from == to {
                    assert_eq!(out, whole, "restored after step {cut}");
                } else {
                    assert_eq!(sorted(out), sorted(whole.clone()), "{from} -> {to} after step {cut}");
                }
                // Cleanup goes on after the restore: nothing is left at the end.
                assert!(after.iter().all(|t| t.op.buffered() == (0, 0) && t.op.pending_timers() == 0));
            }
        }
    }

    #[test]
    fn lower_bound_above_upper_bound_is_an_invalid_job() {
        let env = StreamExecutionEnvironment::local().with_parallelism(1);
        let key = |e: &Ev| e.0.clone();
        let l = timed(&env, vec![("x".to_string(), 1)], |e: &Ev| e.1).key_by(key);
        let r = timed(&env, vec![("x".to_string(), 1)], |e: &Ev| e.1).key_by(key);
        l.interval_join(&r).between(5, 2).process(passthrough_ev).collect_to_vec();
        let e = env.execute("bad bounds").unwrap_err().to_string();
        assert!(e.contains("lower bound (5 ms)") && e.contains("upper bound (2 ms)"), "{e}");
    }

    #[test]
    fn the_plan_names_the_operator_interval_join() {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        let key = |e: &Ev| e.0.clone();
        let l = timed(&env, vec![("x".to_string(), 1)], |e: &Ev| e.1).key_by(key);
        let r = timed(&env, vec![("x".to_string(), 1)], |e: &Ev| e.1).key_by(key);
        l.interval_join(&r).between(0, 0).process(passthrough_ev).print();
        let plan = env.execution_plan().unwrap();
        assert!(plan.contains("Interval Join"), "{plan}");
    }
}
