//! The general window operator (Flink's `WindowOperator` and `EvictingWindowOperator`): any
//! assigner, trigger, evictor and function.
//!
//! State is grouped by key: each key has the list of its open windows, and each window its
//! contents (an accumulator, or the elements), its trigger state and the timers it has
//! registered. A timer fires only if its window still lists it, so deleting a timer, or
//! dropping a window with its timers, never has to search the timer heaps; the heaps keep
//! stale entries until their time comes and skip them then.
//!
//! Session windows merge in place: the merged windows' contents and trigger states are moved
//! into the new window (Flink keeps a "state window" indirection instead, because its state
//! backends cannot rename state cheaply; the results are the same).
//!
//! **Checkpoints.** A snapshot holds, per key group, each key's windows with their contents,
//! trigger state and live timers (with their registration order, so that timers due at the
//! same time fire in the same order after a restore). Merged session windows need no
//! bookkeeping of their own: they are windows like the others. See [`super::checkpoint`].
//!
//! In BATCH mode only the final watermark (`i64::MAX`) arrives. It fires every event-time
//! timer, then every processing-time timer, and the timer service is quiesced, as in Flink's
//! batch timer service: timers registered while these fire are ignored.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::marker::PhantomData;
use std::ops::RangeInclusive;

use eddy_core::config::RuntimeMode;
use eddy_core::keygroup::key_group_range_for_operator;
use eddy_core::{Batch, Data, EddyError, Key, Result};
use eddy_runtime::checkpoint::RestoredState;
use eddy_runtime::time::ClockRef;
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext};
use serde::{Deserialize, Serialize};

use super::assigners::{WindowAssigner, WindowAssignerContext};
use super::checkpoint::{cut_by_key_group, KeyedSnapshot, Restore, RestoredTime, FORMAT_VERSION};
use super::fn_state::WindowFnState;
use super::functions::{FireContext, WindowContents};
use super::store::KeyedLists;
use super::triggers::{TimerRequest, Trigger, TriggerContext};
use super::window::Window;
use crate::functions::RuntimeContext;
use crate::operators::KeyMap;
use crate::timers::TimeDomain;

/// The settings every window operator shares.
#[derive(Clone)]
pub(crate) struct WindowSpec<KF, A, Tr> {
    pub key: KF,
    pub assigner: A,
    pub trigger: Tr,
    /// Allowed lateness in ms (event time only).
    pub lateness: i64,
    pub late_tag: Option<String>,
}

/// One open window of one key (serializable: a backend other than `hashmap` stores it).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "W: Serialize + serde::de::DeserializeOwned, Acc: Serialize + serde::de::DeserializeOwned, \
                 S: Serialize + serde::de::DeserializeOwned")]
pub(crate) struct WindowEntry<W, Acc, S> {
    window: W,
    /// `None`: nothing added since the window was created or purged.
    contents: Option<Acc>,
    trigger: S,
    /// The timers this window has registered and not yet fired or deleted.
    #[serde(with = "timer_list")]
    timers: Vec<(TimeDomain, i64)>,
}

/// A window's live timers as `(event time?, time)`.
mod timer_list {
    use super::{domain_of, TimeDomain};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(timers: &[(TimeDomain, i64)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(timers.iter().map(|&(d, time)| (d == TimeDomain::EventTime, time)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(TimeDomain, i64)>, D::Error> {
        let timers: Vec<(bool, i64)> = Deserialize::deserialize(d)?;
        Ok(timers.into_iter().map(|(event_time, time)| (domain_of(event_time), time)).collect())
    }
}

impl<W, Acc, S: Default> WindowEntry<W, Acc, S> {
    fn new(window: W) -> Self {
        WindowEntry { window, contents: None, trigger: S::default(), timers: Vec::new() }
    }
}

struct Timer<K, W> {
    time: i64,
    seq: u64,
    key: K,
    window: W,
}

impl<K, W> PartialEq for Timer<K, W> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl<K, W> Eq for Timer<K, W> {}
impl<K, W> PartialOrd for Timer<K, W> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K, W> Ord for Timer<K, W> {
    // Reversed: the heap's top is the earliest timer, registration order breaking ties.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// The smallest heap worth compacting.
const MIN_COMPACTION: usize = 4096;

/// Event-time and processing-time timers of all windows.
struct Timers<K, W> {
    event: BinaryHeap<Timer<K, W>>,
    processing: BinaryHeap<Timer<K, W>>,
    seq: u64,
    /// Heap size at which stale entries (deleted timers, windows merged away or purged) are
    /// dropped, so that timers take memory in proportion to live windows, not to records.
    compact_at: usize,
    /// BATCH mode after the end of input: registrations are ignored.
    quiesced: bool,
}

impl<K: Key, W: Window> Timers<K, W> {
    fn heap(&mut self, domain: TimeDomain) -> &mut BinaryHeap<Timer<K, W>> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    fn register(
        &mut self,
        domain: TimeDomain,
        time: i64,
        key: &K,
        window: &W,
        live: &mut Vec<(TimeDomain, i64)>,
    ) {
        if self.quiesced || live.contains(&(domain, time)) {
            return;
        }
        live.push((domain, time));
        self.seq += 1;
        let timer = Timer { time, seq: self.seq, key: key.clone(), window: window.clone() };
        self.heap(domain).push(timer);
    }

    /// Applies what a trigger asked for to the window `key`/`window`.
    fn apply(
        &mut self,
        requests: &mut Vec<TimerRequest>,
        key: &K,
        window: &W,
        live: &mut Vec<(TimeDomain, i64)>,
    ) {
        for r in requests.drain(..) {
            if r.register {
                self.register(r.domain, r.time, key, window, live);
            } else {
                live.retain(|t| *t != (r.domain, r.time));
            }
        }
    }

    /// The earliest timer of `domain` at or before `time`.
    fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<Timer<K, W>> {
        let heap = self.heap(domain);
        if heap.peek()?.time > time {
            return None;
        }
        heap.pop()
    }
}

type Entries<W, Acc, S> = Vec<WindowEntry<W, Acc, S>>;
type KeyWindows<K, W, Acc, S> = KeyedLists<K, WindowEntry<W, Acc, S>>;

/// The window operator for every case the aligned operator does not cover.
pub(crate) struct WindowOperator<T, K, KF, A, Tr, C>
where
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::Window>,
    C: WindowContents<T, K, A::Window>,
{
    spec: WindowSpec<KF, A, Tr>,
    contents: C,
    event_time: bool,
    merging: bool,
    batch: bool,
    keys: KeyWindows<K, A::Window, C::Acc, Tr::State>,
    timers: Timers<K, A::Window>,
    /// The keyed state of the window function.
    fn_state: WindowFnState<K, A::Window>,
    watermark: i64,
    clock: ClockRef,
    requests: Vec<TimerRequest>,
    assigned: Vec<A::Window>,
    scratch: Vec<A::Window>,
    /// Late elements dropped because no side output for late data was set.
    pub num_late_records_dropped: u64,
    /// The same count, as the operator's `numLateRecordsDropped` metric (from `open`).
    late_dropped: eddy_runtime::metrics::Counter,
    /// Event time reached before a restore, per key group (see [`super::checkpoint`]).
    restored_time: RestoredTime,
    /// The key groups of this subtask and their number (set in `open`).
    key_groups: RangeInclusive<usize>,
    max_parallelism: usize,
    _t: PhantomData<fn(T)>,
}

/// What the window operator's snapshot holds for one window of a key.
#[derive(Serialize)]
#[serde(bound = "")]
struct EntryOut<'a, W: Serialize, Acc: Serialize, S: Serialize> {
    window: &'a W,
    contents: &'a Option<Acc>,
    trigger: &'a S,
    /// `(event time?, time, registration order)`.
    timers: Vec<(bool, i64, u64)>,
}

/// [`EntryOut`] read back.
#[derive(Deserialize)]
#[serde(bound = "W: Deserialize<'de>, Acc: Deserialize<'de>, S: Deserialize<'de>")]
struct EntryIn<W, Acc, S> {
    window: W,
    contents: Option<Acc>,
    trigger: S,
    timers: Vec<(bool, i64, u64)>,
}

const OPERATOR: &str = "window";

/// The keys and their windows read back from a checkpoint.
type RestoredKeys<K, W, Acc, S> = Vec<(K, Vec<EntryIn<W, Acc, S>>)>;

fn domain_of(event_time: bool) -> TimeDomain {
    if event_time {
        TimeDomain::EventTime
    } else {
        TimeDomain::ProcessingTime
    }
}

/// When the state of `window` is cleaned up: its max timestamp plus the allowed lateness for
/// event time (`i64::MAX` on overflow), its max timestamp for processing time.
pub(crate) fn cleanup_time(max_timestamp: i64, event_time: bool, lateness: i64) -> i64 {
    if event_time {
        max_timestamp.saturating_add(lateness)
    } else {
        max_timestamp
    }
}

/// Runs the window function over `entry`'s contents, if it has any.
fn fire_entry<T, K, W: Window, Acc, S, C: WindowContents<T, K, W, Acc = Acc>>(
    contents: &mut C,
    key: &K,
    entry: &mut WindowEntry<W, Acc, S>,
    watermark: i64,
    clock: &ClockRef,
    state: &mut WindowFnState<K, W>,
    out: &mut Emitter<C::Out>,
) -> Result<()> {
    if let Some(acc) = entry.contents.as_mut() {
        let (main, side) = out.split();
        let mut fire = FireContext { watermark, clock, side, state };
        if !contents.emit(key, &entry.window, acc, &mut fire, main)? {
            entry.contents = None;
        }
    }
    Ok(())
}

impl<T, K, KF, A, Tr, C> WindowOperator<T, K, KF, A, Tr, C>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::Window>,
    C: WindowContents<T, K, A::Window>,
{
    /// The operator, keeping its windows in the backend `state.backend` names.
    pub fn new(spec: WindowSpec<KF, A, Tr>, contents: C, ctx: &OperatorContext) -> Result<Self> {
        let fn_state = WindowFnState::new(
            ctx.state_backend.clone(),
            spec.assigner.is_event_time(),
            spec.lateness,
            spec.assigner.is_merging(),
        );
        Ok(WindowOperator {
            event_time: spec.assigner.is_event_time(),
            merging: spec.assigner.is_merging(),
            spec,
            contents,
            batch: ctx.runtime_mode == RuntimeMode::Batch,
            keys: KeyedLists::new(&ctx.state_backend, ctx.max_parallelism)?,
            fn_state,
            timers: Timers {
                event: BinaryHeap::new(),
                processing: BinaryHeap::new(),
                seq: 0,
                compact_at: MIN_COMPACTION,
                quiesced: false,
            },
            watermark: i64::MIN,
            clock: ctx.clock.clone(),
            requests: Vec::new(),
            assigned: Vec::new(),
            scratch: Vec::new(),
            num_late_records_dropped: 0,
            late_dropped: Default::default(),
            restored_time: RestoredTime::default(),
            key_groups: 0..=0,
            max_parallelism: 1,
            _t: PhantomData,
        })
    }

    fn cleanup_time(&self, window: &A::Window) -> i64 {
        cleanup_time(window.max_timestamp(), self.event_time, self.spec.lateness)
    }

    fn is_window_late(&self, window: &A::Window, watermark: i64) -> bool {
        self.event_time && self.cleanup_time(window) <= watermark
    }

    fn is_element_late(&self, timestamp: i64, watermark: i64) -> bool {
        self.event_time && timestamp.saturating_add(self.spec.lateness) <= watermark
    }

    fn process_element(&mut self, value: T, ts: i64, now: i64, out: &mut Emitter<C::Out>) -> Result<()> {
        let key = (self.spec.key)(&value);
        // The event time this key had reached, for lateness: the watermark, or after a restore
        // the time its subtask had reached before, until the watermark catches up.
        let wm = self.restored_time.time_of(&key, self.watermark);
        let mut windows = std::mem::take(&mut self.assigned);
        windows.clear();
        self.spec.assigner.assign_windows(&value, ts, &WindowAssignerContext::new(now), &mut windows)?;
        let mut skipped = true;
        let mut value = Some(value);
        let n = windows.len();
        for (i, window) in windows.drain(..).enumerate() {
            let window = if self.merging { self.add_merging_window(&key, window, now, wm)? } else { window };
            if self.is_window_late(&window, wm) {
                if self.merging {
                    self.retire(&key, &window)?;
                }
                continue;
            }
            skipped = false;
            let v = if i + 1 == n { value.take() } else { value.clone() };
            if let Some(v) = v {
                self.add_to_window(&key, window, v, (ts, now, wm), out)?;
            }
        }
        self.assigned = windows;
        if skipped && self.is_element_late(ts, wm) {
            match (&self.spec.late_tag, value) {
                (Some(tag), Some(v)) => out.side_output(tag, v, ts)?,
                _ => {
                    self.num_late_records_dropped += 1;
                    self.late_dropped.inc();
                }
            }
        }
        Ok(())
    }

    /// The windows of `key`, created if it has none.
    fn entries<'s>(&'s mut self, key: &'s K) -> Result<&'s mut Entries<A::Window, C::Acc, Tr::State>> {
        self.keys.entries(key)
    }

    fn add_to_window(
        &mut self,
        key: &K,
        window: A::Window,
        value: T,
        (ts, now, watermark): (i64, i64, i64),
        out: &mut Emitter<C::Out>,
    ) -> Result<()> {
        let cleanup = self.cleanup_time(&window);
        let cleanup_domain = self.cleanup_domain();
        let Self { keys, spec, contents, timers, requests, clock, fn_state, .. } = self;
        let entries = keys.entries(key)?;
        let idx = match entries.iter().position(|e| e.window == window) {
            Some(i) => i,
            None => {
                entries.push(WindowEntry::new(window));
                entries.len() - 1
            }
        };
        let entry = &mut entries[idx];
        let result = {
            let mut ctx = TriggerContext::new(&mut entry.trigger, watermark, now, requests);
            spec.trigger.on_element(&value, ts, &entry.window, &mut ctx)
        };
        contents.add(&mut entry.contents, value, ts);
        timers.apply(requests, key, &entry.window, &mut entry.timers);
        if result.is_fire() {
            fire_entry(contents, key, entry, watermark, clock, fn_state, out)?;
        }
        if result.is_purge() {
            entry.contents = None;
        }
        if cleanup != i64::MAX {
            timers.register(cleanup_domain, cleanup, key, &entry.window, &mut entry.timers);
        }
        Ok(())
    }

    fn cleanup_domain(&self) -> TimeDomain {
        if self.event_time {
            TimeDomain::EventTime
        } else {
            TimeDomain::ProcessingTime
        }
    }

    /// Removes a window that became late before anything was added to it.
    fn retire(&mut self, key: &K, window: &A::Window) -> Result<()> {
        if let Some(entries) = self.keys.get_mut(key)? {
            entries.retain(|e| e.window != *window);
            if entries.is_empty() {
                self.keys.remove(key)?;
            }
        }
        Ok(())
    }

    /// Adds `new` to the windows of `key`, merging as the assigner says, and returns the
    /// window the element belongs to (Flink's `MergingWindowSet.addWindow`).
    fn add_merging_window(&mut self, key: &K, new: A::Window, now: i64, wm: i64) -> Result<A::Window> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(self.entries(key)?.iter().map(|e| e.window.clone()));
        scratch.push(new.clone());
        let mut groups: Vec<(A::Window, Vec<A::Window>)> = Vec::new();
        self.spec
            .assigner
            .merge_windows(&mut scratch, &mut |group, result| groups.push((result, group.to_vec())));
        self.scratch = scratch;

        let mut result_window = new.clone();
        let mut merged_new = false;
        for (result, mut group) in groups {
            if let Some(p) = group.iter().position(|w| *w == new) {
                group.remove(p);
                merged_new = true;
                result_window = result.clone();
            }
            // An existing window that contains the new one: nothing merges.
            if group.is_empty() || (group.len() == 1 && group[0] == result) {
                continue;
            }
            self.merge(key, result, &group, now, wm)?;
        }
        let entries = self.entries(key)?;
        if (result_window == new && !merged_new) && !entries.iter().any(|e| e.window == new) {
            entries.push(WindowEntry::new(new));
        }
        Ok(result_window)
    }

    /// Merges the windows `merged` of `key` into the new window `result`.
    fn merge(&mut self, key: &K, result: A::Window, merged: &[A::Window], now: i64, wm: i64) -> Result<()> {
        if self.event_time && result.max_timestamp().saturating_add(self.spec.lateness) <= wm {
            return Err(EddyError::user(format!(
                "The end timestamp of an event-time window cannot become earlier than the current \
                 watermark by merging. Current watermark: {wm} window: {result:?}"
            )));
        }
        if !self.event_time && result.max_timestamp() <= now {
            return Err(EddyError::user(format!(
                "The end timestamp of a processing-time window cannot become earlier than the current \
                 processing time by merging. Current processing time: {now} window: {result:?}"
            )));
        }
        let entries = self.entries(key)?;
        let mut old = Vec::with_capacity(merged.len());
        for w in merged {
            if let Some(i) = entries.iter().position(|e| e.window == *w) {
                old.push(entries.swap_remove(i));
            }
        }
        let mut target = WindowEntry::new(result);
        let states: Vec<Tr::State> = old.iter().map(|e| e.trigger.clone()).collect();
        let Self { spec, contents, timers, requests, .. } = self;
        {
            let mut ctx = TriggerContext::new(&mut target.trigger, wm, now, requests);
            spec.trigger.on_merge(&target.window, &states, &mut ctx);
        }
        timers.apply(requests, key, &target.window, &mut target.timers);
        for mut m in old {
            {
                let mut ctx = TriggerContext::new(&mut m.trigger, wm, now, requests);
                spec.trigger.clear(&m.window, &mut ctx);
            }
            // The merged window is gone, and with it its timers: its requests change nothing.
            requests.clear();
            if let Some(c) = m.contents {
                contents.merge(&mut target.contents, c);
            }
        }
        self.entries(key)?.push(target);
        Ok(())
    }

    /// Timer entries held, live or stale (for tests of memory bounds).
    #[cfg(test)]
    pub(crate) fn timer_entries(&self) -> usize {
        self.timers.event.len() + self.timers.processing.len()
    }

    /// Drops heap entries of timers that no window holds any more, once the heaps have grown
    /// to twice their size after the last compaction (amortized O(1) per registration).
    fn compact_timers(&mut self) -> Result<()> {
        let size = self.timers.event.len() + self.timers.processing.len();
        if size < self.timers.compact_at {
            return Ok(());
        }
        let keys = &mut self.keys;
        // A timer whose key's windows cannot be read is kept; the error fails the batch.
        let mut failed = None;
        let mut live = |domain: TimeDomain, t: &Timer<K, A::Window>| match keys.get_mut(&t.key) {
            Ok(entries) => entries.is_some_and(|entries| {
                entries.iter().any(|e| e.window == t.window && e.timers.contains(&(domain, t.time)))
            }),
            Err(e) => {
                failed = Some(e);
                true
            }
        };
        self.timers.event.retain(|t| live(TimeDomain::EventTime, t));
        self.timers.processing.retain(|t| live(TimeDomain::ProcessingTime, t));
        if let Some(e) = failed {
            return Err(e);
        }
        let kept = self.timers.event.len() + self.timers.processing.len();
        self.timers.compact_at = (2 * kept).max(MIN_COMPACTION);
        Ok(())
    }

    /// Fires the timers of `domain` due at `time`, including those registered meanwhile; then
    /// the function clears its state of the windows cleaned up by then.
    fn fire_timers(&mut self, domain: TimeDomain, time: i64, out: &mut Emitter<C::Out>) -> Result<()> {
        let now = self.clock.now_ms();
        while let Some(timer) = self.timers.pop_due(domain, time) {
            self.on_timer(domain, timer, now, out)?;
        }
        if domain == self.cleanup_domain() {
            let (_, side) = out.split();
            let (watermark, clock) = (self.watermark, &self.clock);
            for kw in self.fn_state.due(time) {
                let mut fire = FireContext { watermark, clock, side, state: &mut self.fn_state };
                self.contents.clear(&kw.key, &kw.window, &mut fire)?;
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        domain: TimeDomain,
        timer: Timer<K, A::Window>,
        now: i64,
        out: &mut Emitter<C::Out>,
    ) -> Result<()> {
        let cleanup_domain = self.cleanup_domain();
        let (event_time, lateness, watermark) = (self.event_time, self.spec.lateness, self.watermark);
        let Self { keys, spec, contents, timers, requests, clock, fn_state, .. } = self;
        let Some(entries) = keys.get_mut(&timer.key)? else { return Ok(()) };
        let Some(idx) = entries.iter().position(|e| e.window == timer.window) else { return Ok(()) };
        let entry = &mut entries[idx];
        let Some(live) = entry.timers.iter().position(|t| *t == (domain, timer.time)) else {
            return Ok(()); // deleted
        };
        entry.timers.swap_remove(live);
        let result = {
            let mut ctx = TriggerContext::new(&mut entry.trigger, watermark, now, requests);
            match domain {
                TimeDomain::EventTime => spec.trigger.on_event_time(timer.time, &entry.window, &mut ctx),
                TimeDomain::ProcessingTime => {
                    spec.trigger.on_processing_time(timer.time, &entry.window, &mut ctx)
                }
            }
        };
        timers.apply(requests, &timer.key, &entry.window, &mut entry.timers);
        if result.is_fire() {
            fire_entry(contents, &timer.key, entry, watermark, clock, fn_state, out)?;
        }
        if result.is_purge() {
            entry.contents = None;
        }
        let cleanup = cleanup_time(entry.window.max_timestamp(), event_time, lateness);
        if domain == cleanup_domain && timer.time == cleanup {
            {
                let mut ctx = TriggerContext::new(&mut entry.trigger, watermark, now, requests);
                spec.trigger.clear(&entry.window, &mut ctx);
            }
            requests.clear();
            entries.swap_remove(idx);
            if entries.is_empty() {
                keys.remove(&timer.key)?;
            }
        }
        Ok(())
    }

    /// BATCH mode at the end of input: everything fires, as at the end of every key in Flink.
    fn fire_all(&mut self, out: &mut Emitter<C::Out>) -> Result<()> {
        if self.timers.quiesced {
            return Ok(());
        }
        self.timers.quiesced = true;
        self.fire_timers(TimeDomain::EventTime, i64::MAX, out)?;
        self.fire_timers(TimeDomain::ProcessingTime, i64::MAX, out)
    }

    /// The windows of every key with their live timers, cut by key group.
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        // On the heap the windows are read in place; another backend's are copied out first.
        let copied;
        let lists: Vec<_> = match &mut self.keys {
            KeyedLists::Heap(map) => map.iter().collect(),
            backend => {
                copied = backend.copy_all()?;
                copied.iter().map(|(k, v)| (k, v)).collect()
            }
        };
        // A live timer's order is that of its earliest heap entry (later ones are re-registrations
        // of a timer deleted before).
        let mut order: KeyMap<(&K, &A::Window, bool, i64), u64> = KeyMap::default();
        for (event_time, heap) in [(true, &self.timers.event), (false, &self.timers.processing)] {
            for t in heap {
                let seq = order.entry((&t.key, &t.window, event_time, t.time)).or_insert(t.seq);
                *seq = (*seq).min(t.seq);
            }
        }
        let entries = lists.into_iter().map(|(key, entries)| {
            let windows: Vec<_> = entries
                .iter()
                .map(|e| EntryOut {
                    window: &e.window,
                    contents: &e.contents,
                    trigger: &e.trigger,
                    timers: e
                        .timers
                        .iter()
                        .map(|&(domain, time)| {
                            let event_time = domain == TimeDomain::EventTime;
                            let seq =
                                order.get(&(key, &e.window, event_time, time)).copied().unwrap_or(u64::MAX);
                            (event_time, time, seq)
                        })
                        .collect(),
                })
                .collect();
            (key, windows)
        });
        KeyedSnapshot {
            format_version: FORMAT_VERSION,
            operator: OPERATOR.into(),
            max_parallelism: self.max_parallelism,
            times: self.restored_time.snapshot(&self.key_groups, self.watermark, Vec::new()),
            shared: Vec::new(),
            key_groups: cut_by_key_group(entries, self.max_parallelism)?,
            functions: self.fn_state.snapshot(self.clock.now_ms())?,
        }
        .encode()
    }

    /// Takes the windows and timers of the key groups this subtask owns out of the snapshots.
    fn restore(&mut self, restored: &RestoredState) -> Result<()> {
        let mut restore = Restore::read(restored, OPERATOR)?;
        self.fn_state.restore(&mut restore)?;
        let keys: RestoredKeys<K, A::Window, C::Acc, Tr::State> = restore.entries()?;
        let mut timers: Vec<(u64, bool, i64, K, A::Window)> = Vec::new();
        for (key, windows) in keys {
            let entries = self.keys.entries(&key)?;
            for w in windows {
                let mut entry = WindowEntry::new(w.window);
                entry.contents = w.contents;
                entry.trigger = w.trigger;
                for (event_time, time, seq) in w.timers {
                    entry.timers.push((domain_of(event_time), time));
                    timers.push((seq, event_time, time, key.clone(), entry.window.clone()));
                }
                entries.push(entry);
            }
        }
        timers.sort_by_key(|t| t.0);
        for (_, event_time, time, key, window) in timers {
            self.timers.seq += 1;
            let timer = Timer { time, seq: self.timers.seq, key, window };
            self.timers.heap(domain_of(event_time)).push(timer);
        }
        if self.event_time {
            self.restored_time = restore.times();
        }
        Ok(())
    }

    /// Open windows (for tests).
    #[cfg(test)]
    pub fn open_windows(&mut self) -> usize {
        let mut open = 0;
        self.keys.for_each(|_, windows| open += windows.len()).expect("window state is readable");
        open
    }
}

impl<T, K, KF, A, Tr, C> OneInputOperator for WindowOperator<T, K, KF, A, Tr, C>
where
    T: Data,
    K: Key,
    KF: Fn(&T) -> K + Send + 'static,
    A: WindowAssigner<T>,
    Tr: Trigger<T, A::Window>,
    C: WindowContents<T, K, A::Window>,
{
    type In = T;
    type Out = C::Out;

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
        self.contents.open(&RuntimeContext { op: ctx.clone() })
    }

    fn process_batch(&mut self, batch: Batch<T>, out: &mut Emitter<C::Out>) -> Result<()> {
        let now = self.clock.now_ms();
        for (v, ts) in batch.into_iter_with_timestamps() {
            self.process_element(v, ts, now, out)?;
        }
        self.compact_timers()
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<C::Out>) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        self.restored_time.release(self.watermark);
        if self.batch && watermark == i64::MAX {
            self.fire_all(out)?;
        } else {
            self.fire_timers(TimeDomain::EventTime, self.watermark, out)?;
        }
        out.emit_watermark(watermark)
    }

    fn next_processing_time(&self) -> Option<i64> {
        if self.batch {
            return None;
        }
        self.timers.processing.peek().map(|t| t.time)
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<C::Out>) -> Result<()> {
        if self.batch {
            return Ok(());
        }
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn end_input(&mut self, out: &mut Emitter<C::Out>) -> Result<()> {
        if self.batch {
            self.fire_all(out)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.contents.close()
    }
}

/// One of two operators of the same input and output, chosen when the task starts (the
/// aligned window operator on the heap backend, the general one on another).
pub(crate) enum EitherOperator<L, R> {
    Left(L),
    Right(R),
}

macro_rules! either {
    ($self:ident, $op:ident => $e:expr) => {
        match $self {
            EitherOperator::Left($op) => $e,
            EitherOperator::Right($op) => $e,
        }
    };
}

impl<L, R> OneInputOperator for EitherOperator<L, R>
where
    L: OneInputOperator,
    R: OneInputOperator<In = L::In, Out = L::Out>,
{
    type In = L::In;
    type Out = L::Out;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        either!(self, op => op.open(ctx))
    }

    fn process_batch(&mut self, batch: Batch<L::In>, out: &mut Emitter<L::Out>) -> Result<()> {
        either!(self, op => op.process_batch(batch, out))
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Emitter<L::Out>) -> Result<()> {
        either!(self, op => op.process_watermark(watermark, out))
    }

    fn on_processing_time(&mut self, now: i64, out: &mut Emitter<L::Out>) -> Result<()> {
        either!(self, op => op.on_processing_time(now, out))
    }

    fn next_processing_time(&self) -> Option<i64> {
        either!(self, op => op.next_processing_time())
    }

    fn end_input(&mut self, out: &mut Emitter<L::Out>) -> Result<()> {
        either!(self, op => op.end_input(out))
    }

    fn close(&mut self) -> Result<()> {
        either!(self, op => op.close())
    }

    fn initialize_state(&mut self, restored: Option<&RestoredState>) -> Result<()> {
        either!(self, op => op.initialize_state(restored))
    }

    fn snapshot_state(&mut self, barrier: &eddy_core::CheckpointBarrier) -> Result<Option<Vec<u8>>> {
        either!(self, op => op.snapshot_state(barrier))
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        either!(self, op => op.notify_checkpoint_complete(checkpoint_id))
    }
}
