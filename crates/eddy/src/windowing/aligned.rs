//! The fast window operator: tumbling and sliding windows, `reduce`/`aggregate`, the default
//! trigger, no evictor. It produces exactly what the general operator produces with
//! [`EventTimeTrigger`](super::EventTimeTrigger) (or [`ProcessingTimeTrigger`](super::ProcessingTimeTrigger)),
//! with far less work per record.
//!
//! **Panes.** Time is cut at every window boundary: the window starts (`offset` mod `slide`)
//! and the window ends (`offset + size` mod `slide`). The pieces between consecutive
//! boundaries are *panes*: at most two per slide, one per slide when `size % slide == 0`,
//! exactly the windows for tumbling windows. Every window is a run of whole panes, so the
//! operator keeps one accumulator per key and pane: a record costs one hash-map update,
//! whatever `size / slide` is. When a window fires, the accumulators of its panes are merged
//! per key (`AggregateFunction::merge`, or the reduce function). This is the "slicing" of
//! Flink SQL's window aggregation; panes at the gcd of size and slide would also work but can
//! be much smaller.
//!
//! **Timers.** None per key: the panes sit in a deque sorted by start, and the ends of the
//! windows not fired yet in an ordered set. When event time (or processing time) reaches a
//! window's max timestamp, the window fires for every key that has a pane in it; a pane is
//! dropped once the last window containing it is cleaned up (`max timestamp + allowed
//! lateness`). Memory is one accumulator per key and open pane.
//!
//! **Lateness.** As with `EventTimeTrigger`: an element is added to its pane when at least
//! one of the pane's windows is not late; every window of the pane that has already fired
//! and is not late fires again at once, for that key. An element none of whose windows
//! accepts it is late data (side output or dropped and counted), if `ts + lateness <=
//! watermark`.
//!
//! **Checkpoints.** The accumulators are written per key group and key, as `(pane start,
//! accumulator)` pairs, with the ends of the windows not fired yet; a restore rebuilds the panes
//! of its key groups from them. The pending window ends are shared by all keys, so after a
//! rescale that merges subtasks which had fired different windows, each key's old subtask
//! decides whether a window had already fired for it ([`super::checkpoint::RestoredTime`]);
//! no per-key timers are needed for that either, and nothing is added per record once the
//! restored time has been caught up with.
//!
//! Processing-time windows use this operator only when windows do not overlap
//! (`size <= slide`): a pane then belongs to one window, so a window that fired and receives
//! an element in the same millisecond fires again with that element alone, as in Flink.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::ops::RangeInclusive;

use eddy_core::config::RuntimeMode;
use eddy_core::keygroup::key_group_range_for_operator;
use eddy_core::{Batch, Data, EddyError, Key, Result, NO_TIMESTAMP};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::time::ClockRef;
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext};

use super::assigners::Alignment;
use super::checkpoint::{cut_by_key_group, KeyedSnapshot, Restore, RestoredTime, FORMAT_VERSION};
use super::fn_state::WindowFnState;
use super::functions::{FireContext, IncrementalAgg, InternalWindowFn};
use super::operator::cleanup_time;
use super::window::{TimeWindow, Window};
use crate::functions::RuntimeContext;
use crate::operators::KeyMap;

/// Window boundaries of tumbling and sliding windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panes {
    size: i64,
    slide: i64,
    offset: i64,
}

impl Panes {
    pub fn new(a: Alignment) -> Result<Self> {
        if a.size <= 0 || a.slide <= 0 {
            return Err(EddyError::InvalidJob(format!(
                "window size and slide must be positive (size {}, slide {})",
                a.size, a.slide
            )));
        }
        Ok(Panes { size: a.size, slide: a.slide, offset: a.offset })
    }

    fn start(&self, t: i64, offset: i64) -> i64 {
        TimeWindow::window_start_with_offset(t, offset, self.slide)
    }

    /// The pane `[start, end)` containing `t`: between the last window boundary at or before
    /// `t` and the first after it.
    pub fn pane_of(&self, t: i64) -> Option<(i64, i64)> {
        let a = self.start(t, self.offset);
        let b = self.start(t, self.offset.wrapping_add(self.size));
        let end = a.checked_add(self.slide)?.min(b.checked_add(self.slide)?);
        Some((a.max(b), end))
    }

    /// The ends of the first and last windows containing the pane `[start, end)`, if any
    /// window contains it (not when `size < slide` leaves gaps).
    pub fn windows_of(&self, start: i64, end: i64) -> Option<(i64, i64)> {
        let last_end = self.start(start, self.offset).checked_add(self.size)?;
        let first_end =
            self.start(end.checked_sub(1)?, self.offset.wrapping_add(self.size)).checked_add(self.slide)?;
        (last_end >= end && first_end <= last_end).then_some((first_end, last_end))
    }
}

struct Pane<K, Acc> {
    start: i64,
    /// The ends of the first and last windows that contain this pane.
    first_end: i64,
    last_end: i64,
    accs: KeyMap<K, Acc>,
}

/// Tumbling and sliding windows with incremental aggregation and the default trigger.
pub(crate) struct AlignedWindowOperator<T, K, KF, AG: IncrementalAgg<T>, WF, W> {
    key: KF,
    agg: AG,
    wf: WF,
    panes_of: Panes,
    event_time: bool,
    batch: bool,
    lateness: i64,
    late_tag: Option<String>,
    panes: VecDeque<Pane<K, AG::Acc>>,
    /// Ends of the windows that have not fired yet.
    pending: BTreeSet<i64>,
    /// The keyed state of the window function.
    fn_state: WindowFnState<K, W>,
    watermark: i64,
    clock: ClockRef,
    /// The last pane used (start, index), while the deque does not change shape.
    last: Option<(i64, usize)>,
    /// The pane `[start, end)` of the last element: the next one is most likely in it too, and
    /// then its pane costs two comparisons instead of two divisions.
    last_geometry: (i64, i64),
    /// Late elements dropped because no side output for late data was set.
    pub num_late_records_dropped: u64,
    /// The same count, as the operator's `numLateRecordsDropped` metric (from `open`).
    late_dropped: eddy_runtime::metrics::Counter,
    /// The time up to which windows have fired (event or processing time).
    reached: i64,
    /// Time reached before a restore, per key group (see [`super::checkpoint`]).
    restored_time: RestoredTime,
    /// The key groups of this subtask and their number (set in `open`).
    key_groups: RangeInclusive<usize>,
    max_parallelism: usize,
    _t: PhantomData<fn(T) -> W>,
}

const OPERATOR: &str = "aligned window";

/// A key's accumulators in a checkpoint: `(pane start, accumulator)`.
type PaneAccs<Acc> = Vec<(i64, Acc)>;

/// The settings of an aligned window operator.
#[derive(Clone)]
pub(crate) struct AlignedSpec {
    pub alignment: Alignment,
    pub event_time: bool,
    pub lateness: i64,
    pub late_tag: Option<String>,
}

impl<T, K, KF, AG, WF, W> AlignedWindowOperator<T, K, KF, AG, WF, W>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    AG: IncrementalAgg<T>,
    WF: InternalWindowFn<AG::Result, K, W>,
    W: Window,
{
    pub fn new(key: KF, agg: AG, wf: WF, spec: AlignedSpec, ctx: &OperatorContext) -> Result<Self> {
        if W::from_interval(0, 1).is_none() {
            return Err(EddyError::InvalidJob("aligned windows need time windows".into()));
        }
        Ok(AlignedWindowOperator {
            key,
            agg,
            wf,
            panes_of: Panes::new(spec.alignment)?,
            event_time: spec.event_time,
            batch: ctx.runtime_mode == RuntimeMode::Batch,
            lateness: if spec.event_time { spec.lateness } else { 0 },
            late_tag: spec.late_tag,
            panes: VecDeque::new(),
            pending: BTreeSet::new(),
            fn_state: WindowFnState::new(ctx.state_backend.clone(), spec.event_time, spec.lateness, false),
            watermark: i64::MIN,
            clock: ctx.clock.clone(),
            last: None,
            last_geometry: (0, 0),
            num_late_records_dropped: 0,
            late_dropped: Default::default(),
            reached: i64::MIN,
            restored_time: RestoredTime::default(),
            key_groups: 0..=0,
            max_parallelism: 1,
            _t: PhantomData,
        })
    }

    fn cleanup(&self, window_end: i64) -> i64 {
        cleanup_time(window_end.wrapping_sub(1), self.event_time, self.lateness)
    }

    fn window(start: i64, end: i64) -> Result<W> {
        W::from_interval(start, end)
            .ok_or_else(|| EddyError::InvalidJob("aligned windows need time windows".into()))
    }

    #[inline]
    fn find_pane(&mut self, start: i64) -> Option<usize> {
        if let Some((s, i)) = self.last {
            if s == start {
                return Some(i);
            }
        }
        let i = self.panes.binary_search_by_key(&start, |p| p.start).ok()?;
        self.last = Some((start, i));
        Some(i)
    }

    /// Creates the pane `[start, end)` if a window that is not late at `watermark` contains it.
    fn create_pane(&mut self, start: i64, end: i64, watermark: i64) -> Option<usize> {
        let (first_end, last_end) = self.panes_of.windows_of(start, end)?;
        if self.event_time && self.cleanup(last_end) <= watermark {
            return None;
        }
        Some(self.insert_pane(start, first_end, last_end))
    }

    fn insert_pane(&mut self, start: i64, first_end: i64, last_end: i64) -> usize {
        let pos = self.panes.partition_point(|p| p.start < start);
        self.panes.insert(pos, Pane { start, first_end, last_end, accs: KeyMap::default() });
        self.last = Some((start, pos));
        let mut e = first_end;
        while e <= last_end {
            // Event time: windows at or behind the watermark fire for this key on insertion.
            if !self.event_time || e.wrapping_sub(1) > self.watermark {
                self.pending.insert(e);
            }
            let Some(next) = e.checked_add(self.panes_of.slide) else { break };
            e = next;
        }
        pos
    }

    /// Adds one element; `t` is the time that assigns it (event or processing time).
    #[inline]
    fn add(&mut self, value: T, t: i64, ts: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        let (start, end) = match self.last_geometry {
            (start, end) if start <= t && t < end => (start, end),
            _ => {
                let Some(geometry) = self.panes_of.pane_of(t) else { return Ok(()) };
                self.last_geometry = geometry;
                geometry
            }
        };
        let key = (self.key)(&value);
        // After a restore, the event time the key's subtask had reached until the watermark
        // catches up with it: elements late then are late now.
        let wm =
            if self.event_time { self.restored_time.time_of(&key, self.watermark) } else { self.watermark };
        let idx = match self.find_pane(start) {
            Some(i) if wm != self.watermark && self.cleanup(self.panes[i].last_end) <= wm => {
                return self.skip(value, ts, wm, out)
            }
            Some(i) => i,
            None => match self.create_pane(start, end, wm) {
                Some(i) => i,
                None => return self.skip(value, ts, wm, out),
            },
        };
        let pane = &mut self.panes[idx];
        let refire = self.lateness > 0 && pane.first_end.wrapping_sub(1) <= wm;
        let fired_key = refire.then(|| key.clone());
        match pane.accs.entry(key) {
            Entry::Occupied(mut o) => self.agg.add(o.get_mut(), value),
            Entry::Vacant(v) => {
                v.insert(self.agg.create(value));
            }
        }
        match fired_key {
            Some(k) => self.refire(idx, &k, wm, out),
            None => Ok(()),
        }
    }

    /// An element that no window accepts, at event time `watermark`.
    fn skip(&mut self, value: T, ts: i64, watermark: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        if self.event_time && ts.saturating_add(self.lateness) <= watermark {
            match &self.late_tag {
                Some(tag) => out.side_output(tag, value, ts)?,
                None => {
                    self.num_late_records_dropped += 1;
                    self.late_dropped.inc();
                }
            }
        }
        Ok(())
    }

    /// Fires again, for `key`, the windows of pane `idx` that already fired and are not late
    /// (latest first, as Flink iterates an element's windows).
    fn refire(&mut self, idx: usize, key: &K, watermark: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        let (first_end, last_end) = (self.panes[idx].first_end, self.panes[idx].last_end);
        let mut e = last_end;
        while e >= first_end {
            if e.wrapping_sub(1) <= watermark {
                if self.cleanup(e) <= watermark {
                    break;
                }
                self.fire_key(e, key, out)?;
            }
            let Some(prev) = e.checked_sub(self.panes_of.slide) else { break };
            e = prev;
        }
        Ok(())
    }

    /// The panes of the window ending at `end`: indices `lo..hi`.
    fn panes_in(&self, end: i64) -> (i64, usize, usize) {
        let start = end.wrapping_sub(self.panes_of.size);
        let lo = self.panes.partition_point(|p| p.start < start);
        let hi = self.panes.partition_point(|p| p.start < end);
        (start, lo, hi)
    }

    fn fire_key(&mut self, end: i64, key: &K, out: &mut Emitter<WF::Out>) -> Result<()> {
        let (start, lo, hi) = self.panes_in(end);
        let mut acc: Option<AG::Acc> = None;
        for p in self.panes.range(lo..hi) {
            if let Some(a) = p.accs.get(key) {
                match &mut acc {
                    Some(x) => self.agg.merge(x, a.clone()),
                    None => acc = Some(a.clone()),
                }
            }
        }
        let Some(acc) = acc else { return Ok(()) };
        let Some(r) = self.agg.result(&acc) else { return Ok(()) };
        let window = Self::window(start, end)?;
        let (main, side) = out.split();
        let mut fire =
            FireContext { watermark: self.watermark, clock: &self.clock, side, state: &mut self.fn_state };
        self.wf.apply_one(key, &window, r, &mut fire, main)
    }

    /// Fires the window ending at `end` for every key with a pane in it.
    fn fire_window(&mut self, end: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        let (start, lo, hi) = self.panes_in(end);
        if lo == hi {
            return Ok(());
        }
        let window = Self::window(start, end)?;
        let Self { panes, agg, wf, clock, watermark, restored_time, fn_state, .. } = self;
        let (main, side) = out.split();
        let mut fire = FireContext { watermark: *watermark, clock, side, state: fn_state };
        // Keys for which the window had fired before a restore (only while catching up).
        let restored = &*restored_time;
        let fired = |k: &K| restored.is_active() && restored.fired(k, end);
        if hi - lo == 1 {
            for (k, acc) in &panes[lo].accs {
                if fired(k) {
                    continue;
                }
                if let Some(r) = agg.result(acc) {
                    wf.apply_one(k, &window, r, &mut fire, main)?;
                }
            }
            return Ok(());
        }
        let mut merged: KeyMap<&K, AG::Acc> = KeyMap::default();
        for p in panes.range(lo..hi) {
            for (k, a) in &p.accs {
                match merged.entry(k) {
                    Entry::Occupied(mut o) => agg.merge(o.get_mut(), a.clone()),
                    Entry::Vacant(v) => {
                        v.insert(a.clone());
                    }
                }
            }
        }
        for (k, acc) in &merged {
            if fired(k) {
                continue;
            }
            if let Some(r) = agg.result(acc) {
                wf.apply_one(k, &window, r, &mut fire, main)?;
            }
        }
        Ok(())
    }

    /// Time reached `time`: fires the windows that end by then, drops the panes no window
    /// needs any more.
    fn advance(&mut self, time: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        while let Some(&end) = self.pending.first() {
            if end.wrapping_sub(1) > time {
                break;
            }
            self.pending.pop_first();
            self.fire_window(end, out)?;
        }
        let before = self.panes.len();
        while self.panes.front().is_some_and(|p| self.cleanup(p.last_end) <= time) {
            self.panes.pop_front();
        }
        if self.panes.len() != before {
            self.last = None;
        }
        self.reached = self.reached.max(time);
        self.restored_time.release(time);
        // The function clears its state of the windows cleaned up by now.
        let (_, side) = out.split();
        for kw in self.fn_state.due(time) {
            let mut fire = FireContext {
                watermark: self.watermark,
                clock: &self.clock,
                side,
                state: &mut self.fn_state,
            };
            self.wf.clear(&kw.key, &kw.window, &mut fire)?;
        }
        Ok(())
    }

    /// The accumulators per key group and key, `(pane start, accumulator)`, and the windows not
    /// fired yet.
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        let functions = self.fn_state.snapshot(self.clock.now_ms())?;
        let mut by_key: KeyMap<&K, Vec<(i64, &AG::Acc)>> = KeyMap::default();
        for pane in &self.panes {
            for (k, acc) in &pane.accs {
                by_key.entry(k).or_default().push((pane.start, acc));
            }
        }
        let pending: Vec<i64> = self.pending.iter().copied().collect();
        let mut shared = Vec::new();
        eddy_core::codec::encode_value(&pending, &mut shared)?;
        KeyedSnapshot {
            format_version: FORMAT_VERSION,
            operator: OPERATOR.into(),
            max_parallelism: self.max_parallelism,
            times: self.restored_time.snapshot(&self.key_groups, self.reached, pending),
            shared,
            key_groups: cut_by_key_group(by_key.into_iter(), self.max_parallelism)?,
            functions,
        }
        .encode()
    }

    /// Rebuilds the panes of the key groups this subtask owns.
    fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let mut restore = Restore::read(restored, OPERATOR)?;
        self.fn_state.restore(&mut restore)?;
        for pending in restore.shared::<Vec<i64>>()? {
            self.pending.extend(pending);
        }
        let entries: Vec<(K, PaneAccs<AG::Acc>)> = restore.entries()?;
        for (key, panes) in entries {
            for (start, acc) in panes {
                let idx = match self.find_pane(start) {
                    Some(i) => i,
                    None => {
                        let geometry = self.panes_of.pane_of(start).filter(|p| p.0 == start);
                        let Some((first_end, last_end)) =
                            geometry.and_then(|(s, e)| self.panes_of.windows_of(s, e))
                        else {
                            return Err(EddyError::BadInput {
                                location: format!("checkpointed state of '{}'", restored.operator_name),
                                reason: format!(
                                    "{start} is not the start of a pane of windows of size {} and slide {}",
                                    self.panes_of.size, self.panes_of.slide
                                ),
                            });
                        };
                        // The windows were pending or had fired as the snapshot says.
                        let pending = std::mem::take(&mut self.pending);
                        let i = self.insert_pane(start, first_end, last_end);
                        self.pending = pending;
                        i
                    }
                };
                self.panes[idx].accs.insert(key.clone(), acc);
            }
        }
        self.restored_time = restore.times();
        Ok(())
    }

    /// The starts of the open panes (for tests).
    #[cfg(test)]
    pub fn open_panes(&self) -> Vec<i64> {
        self.panes.iter().map(|p| p.start).collect()
    }
}

impl<T, K, KF, AG, WF, W> OneInputOperator for AlignedWindowOperator<T, K, KF, AG, WF, W>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    AG: IncrementalAgg<T>,
    WF: InternalWindowFn<AG::Result, K, W>,
    W: Window,
{
    type In = T;
    type Out = WF::Out;

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        restored.map_or(Ok(()), |r| self.restore(r))
    }

    fn snapshot_state(&mut self, _barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        self.snapshot().map(Some)
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.max_parallelism = ctx.max_parallelism;
        self.fn_state.open(ctx.max_parallelism);
        self.key_groups =
            key_group_range_for_operator(ctx.max_parallelism, ctx.parallelism, ctx.subtask_index);
        self.late_dropped = ctx.metrics.counter("numLateRecordsDropped");
        self.wf.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Emitter<WF::Out>) -> Result<()> {
        if self.event_time {
            for (v, ts) in batch.into_iter_with_timestamps() {
                if ts == NO_TIMESTAMP {
                    return Err(EddyError::BadInput {
                        location: "window operator".into(),
                        reason: "record has no timestamp (the i64::MIN marker); is the time characteristic \
                                 meant to be processing time, or was assign_timestamps_and_watermarks(..) \
                                 forgotten?"
                            .into(),
                    });
                }
                self.add(v, ts, ts, out)?;
            }
        } else {
            let now = self.clock.now_ms();
            for (v, ts) in batch.into_iter_with_timestamps() {
                self.add(v, now, ts, out)?;
            }
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if self.event_time {
            self.advance(self.watermark, out)?;
        } else if self.batch && watermark == i64::MAX {
            self.advance(i64::MAX, out)?;
        }
        out.emit_watermark(watermark)
    }

    fn next_processing_time(&self) -> Option<i64> {
        if self.event_time || self.batch {
            return None;
        }
        self.pending.first().map(|e| e.wrapping_sub(1))
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<WF::Out>) -> Result<()> {
        if self.event_time || self.batch {
            return Ok(());
        }
        self.advance(now, out)
    }

    fn end_input(&mut self, out: &mut Emitter<WF::Out>) -> Result<()> {
        if self.batch {
            self.advance(i64::MAX, out)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.wf.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panes(size: i64, slide: i64, offset: i64) -> Panes {
        Panes::new(Alignment { size, slide, offset }).unwrap()
    }

    #[test]
    fn tumbling_panes_are_the_windows() {
        let p = panes(1000, 1000, 0);
        assert_eq!(p.pane_of(0), Some((0, 1000)));
        assert_eq!(p.pane_of(-1), Some((-1000, 0)));
        assert_eq!(p.windows_of(-1000, 0), Some((0, 0)));
        let p = panes(1000, 1000, -300);
        assert_eq!(p.pane_of(699), Some((-300, 700)));
        assert_eq!(p.windows_of(-300, 700), Some((700, 700)));
    }

    #[test]
    fn sliding_panes_split_at_window_starts_and_ends() {
        // Starts at multiples of 300, ends at 1000 + multiples of 300, i.e. 100 mod 300.
        let p = panes(1000, 300, 0);
        assert_eq!(p.pane_of(650), Some((600, 700)));
        assert_eq!(p.pane_of(720), Some((700, 900)));
        assert_eq!(p.pane_of(-1), Some((-200, 0)));
        // [600, 700) lies in the windows ending at 700, 1000, 1300 and 1600.
        assert_eq!(p.windows_of(600, 700), Some((700, 1600)));
        assert_eq!(p.windows_of(700, 900), Some((1000, 1600)));
        // Divisible: one pane per slide.
        let p = panes(1000, 250, 0);
        assert_eq!(p.pane_of(260), Some((250, 500)));
        assert_eq!(p.windows_of(250, 500), Some((500, 1250)));
    }

    #[test]
    fn every_timestamp_is_in_the_windows_of_its_pane() {
        for (size, slide, offset) in [(10, 3, 0), (10, 3, -2), (7, 7, 3), (2, 5, 0), (12, 4, 1), (5, 2, -1)] {
            let p = panes(size, slide, offset);
            for t in -60..60 {
                let (s, e) = p.pane_of(t).unwrap();
                assert!(s <= t && t < e, "{size}/{slide}/{offset}: {t} not in pane [{s}, {e})");
                // Independently: the ends of windows [w, w + size), w ≡ offset (mod slide), holding t.
                let expected: Vec<i64> = (t - size + 1..=t)
                    .filter(|w| (w - offset).rem_euclid(slide) == 0)
                    .map(|w| w + size)
                    .collect();
                let got: Vec<i64> = match p.windows_of(s, e) {
                    None => vec![],
                    Some((first, last)) => {
                        (0..).map(|i| first + i * slide).take_while(|&x| x <= last).collect()
                    }
                };
                assert_eq!(got, expected, "{size}/{slide}/{offset} at {t}");
            }
        }
    }
}
