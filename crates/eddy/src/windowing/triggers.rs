//! Triggers: when a window's function runs (Flink's `Trigger`).
//!
//! The window operator calls its trigger for every element added to a window and for every
//! timer the trigger registered for that window. The trigger answers with a [`TriggerResult`]:
//! FIRE runs the window function over the window's contents, PURGE discards the contents
//! (window metadata and trigger state stay), FIRE_AND_PURGE does both.
//!
//! A trigger keeps what it needs per key and window in its [`Trigger::State`] (a count, the
//! next firing time), reached through [`TriggerContext::state`]; the operator stores it with
//! the window and drops it when the window is cleaned up. Timers registered through the
//! context belong to the current key and window; there is at most one per time domain and
//! timestamp.
//!
//! When session windows merge, [`Trigger::on_merge`] builds the merged window's state from
//! the states of the windows that merged, and re-registers its timers.

use std::fmt::Debug;

use eddy_core::Data;

use super::window::Window;
use crate::timers::TimeDomain;

/// What a trigger decides (Flink's `TriggerResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerResult {
    /// Nothing happens.
    Continue,
    /// The window function runs over the contents; the contents stay.
    Fire,
    /// The contents are discarded, without running the function.
    Purge,
    /// The window function runs, then the contents are discarded.
    FireAndPurge,
}

impl TriggerResult {
    pub const fn is_fire(self) -> bool {
        matches!(self, TriggerResult::Fire | TriggerResult::FireAndPurge)
    }

    pub const fn is_purge(self) -> bool {
        matches!(self, TriggerResult::Purge | TriggerResult::FireAndPurge)
    }
}

/// A timer registration or deletion asked for by a trigger; the operator applies it to the
/// current key and window after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerRequest {
    pub domain: TimeDomain,
    pub time: i64,
    pub register: bool,
}

/// What a trigger sees of the operator: time, timers and its state for the current key and
/// window (Flink's `TriggerContext`).
pub struct TriggerContext<'a, S> {
    state: &'a mut S,
    watermark: i64,
    processing_time: i64,
    requests: &'a mut Vec<TimerRequest>,
}

impl<'a, S> TriggerContext<'a, S> {
    pub(crate) fn new(
        state: &'a mut S,
        watermark: i64,
        processing_time: i64,
        requests: &'a mut Vec<TimerRequest>,
    ) -> Self {
        TriggerContext { state, watermark, processing_time, requests }
    }

    /// The operator's event time: `i64::MIN` before the first watermark.
    pub fn current_watermark(&self) -> i64 {
        self.watermark
    }

    /// Milliseconds since the epoch.
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }

    /// Calls `on_event_time(time)` once the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest { domain: TimeDomain::EventTime, time, register: true });
    }

    /// Calls `on_processing_time(time)` once the wall clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest { domain: TimeDomain::ProcessingTime, time, register: true });
    }

    pub fn delete_event_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest { domain: TimeDomain::EventTime, time, register: false });
    }

    pub fn delete_processing_time_timer(&mut self, time: i64) {
        self.requests.push(TimerRequest { domain: TimeDomain::ProcessingTime, time, register: false });
    }

    /// The trigger's state for the current key and window (`Default` for a new window).
    pub fn state(&mut self) -> &mut S {
        self.state
    }
}

/// Decides when a window fires (Flink's `Trigger`).
///
/// Implement it for custom firing logic; the built-in triggers below are all written against
/// this interface. A trigger object is shared by all keys and windows of an operator: keep
/// per-window data in [`State`](Self::State), not in fields.
///
/// ```
/// use eddy::prelude::*;
///
/// /// Fires every element whose value is negative, and at the end of the window.
/// #[derive(Clone)]
/// struct FireOnNegative;
///
/// impl Trigger<i64, TimeWindow> for FireOnNegative {
///     type State = ();
///     fn on_element(&self, v: &i64, _: i64, w: &TimeWindow, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
///         ctx.register_event_time_timer(w.max_timestamp());
///         if *v < 0 { TriggerResult::Fire } else { TriggerResult::Continue }
///     }
///     fn on_event_time(&self, t: i64, w: &TimeWindow, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
///         if t == w.max_timestamp() { TriggerResult::Fire } else { TriggerResult::Continue }
///     }
///     fn on_processing_time(&self, _: i64, _: &TimeWindow, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
///         TriggerResult::Continue
///     }
///     fn clear(&self, w: &TimeWindow, ctx: &mut TriggerContext<'_, ()>) {
///         ctx.delete_event_time_timer(w.max_timestamp());
///     }
/// }
/// ```
pub trait Trigger<T, W: Window>: Clone + Send + Sync + 'static {
    /// Per key and window; starts as `Default::default()`.
    type State: Data + Default;

    /// An element was added to `window`.
    fn on_element(
        &self,
        element: &T,
        timestamp: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Self::State>,
    ) -> TriggerResult;

    /// An event-time timer of `window` fired.
    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Self::State>,
    ) -> TriggerResult;

    /// A processing-time timer of `window` fired.
    fn on_processing_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Self::State>,
    ) -> TriggerResult;

    /// Whether [`on_merge`](Self::on_merge) is implemented; merging assigners (sessions)
    /// require it.
    fn can_merge(&self) -> bool {
        false
    }

    /// Windows merged into `window`. `merged` holds their states; `ctx.state()` starts as
    /// `Default` and should become their merged state. Timers of the merged windows are gone:
    /// register what `window` needs.
    fn on_merge(&self, _window: &W, _merged: &[Self::State], _ctx: &mut TriggerContext<'_, Self::State>) {}

    /// The window is being removed: delete its timers (its state is dropped afterwards).
    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, Self::State>);

    /// Shown in the operator name.
    fn name(&self) -> String {
        short_type_name::<Self>()
    }
}

/// `Foo` for `crate::module::Foo<Bar>`.
pub(crate) fn short_type_name<T: ?Sized>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

/// Fires once the watermark passes the end of the window (the default trigger of event-time
/// windows, Flink's `EventTimeTrigger`).
///
/// An element added to a window whose max timestamp is already at or below the watermark
/// (allowed lateness) fires the window immediately; otherwise the trigger registers an
/// event-time timer at the window's max timestamp.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventTimeTrigger;

impl EventTimeTrigger {
    pub fn create() -> Self {
        EventTimeTrigger
    }
}

impl<T, W: Window> Trigger<T, W> for EventTimeTrigger {
    type State = ();

    fn on_element(&self, _: &T, _: i64, window: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark() {
            TriggerResult::Fire
        } else {
            ctx.register_event_time_timer(window.max_timestamp());
            TriggerResult::Continue
        }
    }

    fn on_event_time(&self, time: i64, window: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        if time == window.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &W, _: &[()], ctx: &mut TriggerContext<'_, ()>) {
        // Past the watermark, on_element fires the merged window: a timer would fire it twice.
        if window.max_timestamp() > ctx.current_watermark() {
            ctx.register_event_time_timer(window.max_timestamp());
        }
    }

    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, ()>) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }

    fn name(&self) -> String {
        "EventTimeTrigger".into()
    }
}

/// Fires when the wall clock reaches the end of the window (the default trigger of
/// processing-time windows, Flink's `ProcessingTimeTrigger`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessingTimeTrigger;

impl ProcessingTimeTrigger {
    pub fn create() -> Self {
        ProcessingTimeTrigger
    }
}

impl<T, W: Window> Trigger<T, W> for ProcessingTimeTrigger {
    type State = ();

    fn on_element(&self, _: &T, _: i64, window: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        ctx.register_processing_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Fire
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, window: &W, _: &[()], ctx: &mut TriggerContext<'_, ()>) {
        if window.max_timestamp() > ctx.current_processing_time() {
            ctx.register_processing_time_timer(window.max_timestamp());
        }
    }

    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, ()>) {
        ctx.delete_processing_time_timer(window.max_timestamp());
    }

    fn name(&self) -> String {
        "ProcessingTimeTrigger".into()
    }
}

/// Fires once a window holds `max_count` elements since it last fired, then counts from zero
/// again (Flink's `CountTrigger`). Merged windows add their counts.
#[derive(Debug, Clone, Copy)]
pub struct CountTrigger {
    max_count: u64,
}

impl CountTrigger {
    pub fn of(max_count: u64) -> Self {
        CountTrigger { max_count }
    }
}

impl<T, W: Window> Trigger<T, W> for CountTrigger {
    type State = u64;

    fn on_element(&self, _: &T, _: i64, _: &W, ctx: &mut TriggerContext<'_, u64>) -> TriggerResult {
        let count = ctx.state();
        *count += 1;
        if *count >= self.max_count {
            *count = 0;
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, u64>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, u64>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _: &W, merged: &[u64], ctx: &mut TriggerContext<'_, u64>) {
        *ctx.state() = merged.iter().sum();
    }

    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, u64>) {
        *ctx.state() = 0;
    }

    fn name(&self) -> String {
        format!("CountTrigger({})", self.max_count)
    }
}

/// Fires repeatedly, every `interval` of event time, and at the end of the window (Flink's
/// `ContinuousEventTimeTrigger`).
///
/// The first firing time is aligned to the interval from the first element's timestamp:
/// `ts − ts % interval + interval`, capped at the window's max timestamp.
#[derive(Debug, Clone, Copy)]
pub struct ContinuousEventTimeTrigger {
    interval: i64,
}

impl ContinuousEventTimeTrigger {
    pub fn of(interval: std::time::Duration) -> Self {
        ContinuousEventTimeTrigger { interval: duration_ms(interval).max(1) }
    }

    fn register_next<W: Window>(&self, time: i64, window: &W, ctx: &mut TriggerContext<'_, Option<i64>>) {
        let next = time.saturating_add(self.interval).min(window.max_timestamp());
        let state = ctx.state();
        *state = Some(state.map_or(next, |s| s.min(next)));
        ctx.register_event_time_timer(next);
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousEventTimeTrigger {
    /// The next firing time.
    type State = Option<i64>;

    fn on_element(
        &self,
        _: &T,
        ts: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Option<i64>>,
    ) -> TriggerResult {
        if window.max_timestamp() <= ctx.current_watermark() {
            return TriggerResult::Fire;
        }
        ctx.register_event_time_timer(window.max_timestamp());
        if ctx.state().is_none() {
            self.register_next(ts - ts % self.interval, window, ctx);
        }
        TriggerResult::Continue
    }

    fn on_event_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Option<i64>>,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            return TriggerResult::Fire;
        }
        if *ctx.state() == Some(time) {
            *ctx.state() = None;
            self.register_next(time, window, ctx);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, Option<i64>>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _: &W, merged: &[Option<i64>], ctx: &mut TriggerContext<'_, Option<i64>>) {
        let next = merged.iter().flatten().copied().min();
        *ctx.state() = next;
        if let Some(t) = next {
            ctx.register_event_time_timer(t);
        }
    }

    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, Option<i64>>) {
        if let Some(t) = ctx.state().take() {
            ctx.delete_event_time_timer(t);
        }
    }

    fn name(&self) -> String {
        format!("ContinuousEventTimeTrigger({})", self.interval)
    }
}

/// Fires repeatedly, every `interval` of processing time (Flink's
/// `ContinuousProcessingTimeTrigger`).
#[derive(Debug, Clone, Copy)]
pub struct ContinuousProcessingTimeTrigger {
    interval: i64,
}

impl ContinuousProcessingTimeTrigger {
    pub fn of(interval: std::time::Duration) -> Self {
        ContinuousProcessingTimeTrigger { interval: duration_ms(interval).max(1) }
    }

    fn register_next<W: Window>(&self, time: i64, window: &W, ctx: &mut TriggerContext<'_, Option<i64>>) {
        let next = time.saturating_add(self.interval).min(window.max_timestamp());
        let state = ctx.state();
        *state = Some(state.map_or(next, |s| s.min(next)));
        ctx.register_processing_time_timer(next);
    }
}

impl<T, W: Window> Trigger<T, W> for ContinuousProcessingTimeTrigger {
    /// The next firing time.
    type State = Option<i64>;

    fn on_element(
        &self,
        _: &T,
        _: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Option<i64>>,
    ) -> TriggerResult {
        let now = ctx.current_processing_time();
        if ctx.state().is_none() {
            self.register_next(now - now % self.interval, window, ctx);
        }
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, Option<i64>>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(
        &self,
        time: i64,
        window: &W,
        ctx: &mut TriggerContext<'_, Option<i64>>,
    ) -> TriggerResult {
        if time == window.max_timestamp() {
            return TriggerResult::Fire;
        }
        if *ctx.state() == Some(time) {
            *ctx.state() = None;
            self.register_next(time, window, ctx);
            return TriggerResult::Fire;
        }
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn on_merge(&self, _: &W, merged: &[Option<i64>], ctx: &mut TriggerContext<'_, Option<i64>>) {
        let next = merged.iter().flatten().copied().min();
        *ctx.state() = next;
        if let Some(t) = next {
            ctx.register_processing_time_timer(t);
        }
    }

    fn clear(&self, _: &W, ctx: &mut TriggerContext<'_, Option<i64>>) {
        if let Some(t) = ctx.state().take() {
            ctx.delete_processing_time_timer(t);
        }
    }

    fn name(&self) -> String {
        format!("ContinuousProcessingTimeTrigger({})", self.interval)
    }
}

/// Turns every FIRE of the wrapped trigger into FIRE_AND_PURGE (Flink's `PurgingTrigger`).
#[derive(Debug, Clone, Copy)]
pub struct PurgingTrigger<Tr> {
    nested: Tr,
}

impl<Tr> PurgingTrigger<Tr> {
    pub fn of(nested: Tr) -> Self {
        PurgingTrigger { nested }
    }

    pub fn nested(&self) -> &Tr {
        &self.nested
    }
}

fn purging(r: TriggerResult) -> TriggerResult {
    if r.is_fire() {
        TriggerResult::FireAndPurge
    } else {
        r
    }
}

impl<T, W: Window, Tr: Trigger<T, W>> Trigger<T, W> for PurgingTrigger<Tr> {
    type State = Tr::State;

    fn on_element(&self, e: &T, ts: i64, w: &W, ctx: &mut TriggerContext<'_, Tr::State>) -> TriggerResult {
        purging(self.nested.on_element(e, ts, w, ctx))
    }

    fn on_event_time(&self, time: i64, w: &W, ctx: &mut TriggerContext<'_, Tr::State>) -> TriggerResult {
        purging(self.nested.on_event_time(time, w, ctx))
    }

    fn on_processing_time(&self, time: i64, w: &W, ctx: &mut TriggerContext<'_, Tr::State>) -> TriggerResult {
        purging(self.nested.on_processing_time(time, w, ctx))
    }

    fn can_merge(&self) -> bool {
        self.nested.can_merge()
    }

    fn on_merge(&self, w: &W, merged: &[Tr::State], ctx: &mut TriggerContext<'_, Tr::State>) {
        self.nested.on_merge(w, merged, ctx)
    }

    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, Tr::State>) {
        self.nested.clear(w, ctx)
    }

    fn name(&self) -> String {
        format!("PurgingTrigger({})", self.nested.name())
    }
}

/// Never fires (the default trigger of [`GlobalWindows`](super::GlobalWindows)).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverTrigger;

impl<T, W: Window> Trigger<T, W> for NeverTrigger {
    type State = ();

    fn on_element(&self, _: &T, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_event_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn can_merge(&self) -> bool {
        true
    }

    fn clear(&self, _: &W, _: &mut TriggerContext<'_, ()>) {}

    fn name(&self) -> String {
        "NeverTrigger".into()
    }
}

/// Fires once, when the input ends (the watermark reaches `i64::MAX`): with
/// [`GlobalWindows`](super::GlobalWindows), one result per key over the whole bounded input
/// (Flink's `GlobalWindows.createWithEndOfStreamTrigger`).
#[derive(Debug, Clone, Copy, Default)]
pub struct EndOfStreamTrigger;

impl EndOfStreamTrigger {
    pub fn create() -> Self {
        EndOfStreamTrigger
    }
}

impl<T, W: Window> Trigger<T, W> for EndOfStreamTrigger {
    type State = ();

    fn on_element(&self, _: &T, _: i64, window: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        ctx.register_event_time_timer(window.max_timestamp());
        TriggerResult::Continue
    }

    fn on_event_time(&self, time: i64, window: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        if time == window.max_timestamp() {
            TriggerResult::Fire
        } else {
            TriggerResult::Continue
        }
    }

    fn on_processing_time(&self, _: i64, _: &W, _: &mut TriggerContext<'_, ()>) -> TriggerResult {
        TriggerResult::Continue
    }

    fn clear(&self, window: &W, ctx: &mut TriggerContext<'_, ()>) {
        ctx.delete_event_time_timer(window.max_timestamp());
    }

    fn name(&self) -> String {
        "EndOfStreamTrigger".into()
    }
}

/// Milliseconds of a duration, saturating at `i64::MAX`.
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windowing::window::TimeWindow;

    /// Calls a trigger by hand and records the timers it asks for.
    struct Probe<S> {
        state: S,
        watermark: i64,
        now: i64,
        requests: Vec<TimerRequest>,
    }

    impl<S: Default> Probe<S> {
        fn new() -> Self {
            Probe { state: S::default(), watermark: i64::MIN, now: 0, requests: Vec::new() }
        }
        fn ctx(&mut self) -> TriggerContext<'_, S> {
            TriggerContext::new(&mut self.state, self.watermark, self.now, &mut self.requests)
        }
        fn take(&mut self) -> Vec<(TimeDomain, i64, bool)> {
            self.requests.drain(..).map(|r| (r.domain, r.time, r.register)).collect()
        }
    }

    const W: TimeWindow = TimeWindow::new(0, 100);
    use TimeDomain::{EventTime as E, ProcessingTime as P};

    #[test]
    fn event_time_trigger_registers_then_fires_at_max_timestamp() {
        let t = EventTimeTrigger;
        let mut p = Probe::<()>::new();
        assert_eq!(Trigger::<i32, _>::on_element(&t, &1, 5, &W, &mut p.ctx()), TriggerResult::Continue);
        assert_eq!(p.take(), vec![(E, 99, true)]);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 98, &W, &mut p.ctx()), TriggerResult::Continue);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 99, &W, &mut p.ctx()), TriggerResult::Fire);
        // A late element (watermark past the window's end) fires at once, without a timer.
        p.watermark = 99;
        assert_eq!(Trigger::<i32, _>::on_element(&t, &1, 5, &W, &mut p.ctx()), TriggerResult::Fire);
        assert_eq!(p.take(), vec![]);
        // Merging registers at the merged end only if the watermark is before it.
        p.watermark = 50;
        Trigger::<i32, _>::on_merge(&t, &W, &[(), ()], &mut p.ctx());
        assert_eq!(p.take(), vec![(E, 99, true)]);
        p.watermark = 99;
        Trigger::<i32, _>::on_merge(&t, &W, &[(), ()], &mut p.ctx());
        assert_eq!(p.take(), vec![]);
        Trigger::<i32, _>::clear(&t, &W, &mut p.ctx());
        assert_eq!(p.take(), vec![(E, 99, false)]);
    }

    #[test]
    fn processing_time_trigger_fires_on_its_timer() {
        let t = ProcessingTimeTrigger;
        let mut p = Probe::<()>::new();
        assert_eq!(Trigger::<i32, _>::on_element(&t, &1, 0, &W, &mut p.ctx()), TriggerResult::Continue);
        assert_eq!(p.take(), vec![(P, 99, true)]);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 99, &W, &mut p.ctx()), TriggerResult::Continue);
        assert_eq!(Trigger::<i32, _>::on_processing_time(&t, 99, &W, &mut p.ctx()), TriggerResult::Fire);
        p.now = 99;
        Trigger::<i32, _>::on_merge(&t, &W, &[], &mut p.ctx());
        assert_eq!(p.take(), vec![], "the merged window's end has passed");
    }

    #[test]
    fn count_trigger_fires_every_n_elements_and_merges_counts() {
        let t = CountTrigger::of(3);
        let mut p = Probe::<u64>::new();
        let results: Vec<_> =
            (0..7).map(|i| Trigger::<i32, TimeWindow>::on_element(&t, &i, 0, &W, &mut p.ctx())).collect();
        use TriggerResult::{Continue as C, Fire as F};
        assert_eq!(results, vec![C, C, F, C, C, F, C]);
        assert_eq!(p.state, 1);
        Trigger::<i32, TimeWindow>::on_merge(&t, &W, &[1, 1], &mut p.ctx());
        assert_eq!(p.state, 2);
        assert_eq!(Trigger::<i32, TimeWindow>::on_element(&t, &0, 0, &W, &mut p.ctx()), F);
    }

    #[test]
    fn continuous_event_time_trigger_fires_every_interval_and_at_the_end() {
        let t = ContinuousEventTimeTrigger::of(std::time::Duration::from_millis(30));
        let mut p = Probe::<Option<i64>>::new();
        // First element at 47: aligned to 30, next firing at 60.
        assert_eq!(Trigger::<i32, _>::on_element(&t, &1, 47, &W, &mut p.ctx()), TriggerResult::Continue);
        assert_eq!(p.take(), vec![(E, 99, true), (E, 60, true)]);
        assert_eq!(p.state, Some(60));
        // Later elements do not move it.
        Trigger::<i32, _>::on_element(&t, &1, 10, &W, &mut p.ctx());
        assert_eq!(p.take(), vec![(E, 99, true)]);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 60, &W, &mut p.ctx()), TriggerResult::Fire);
        assert_eq!(p.take(), vec![(E, 90, true)]);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 90, &W, &mut p.ctx()), TriggerResult::Fire);
        // Capped at the window's max timestamp.
        assert_eq!(p.take(), vec![(E, 99, true)]);
        assert_eq!(Trigger::<i32, _>::on_event_time(&t, 99, &W, &mut p.ctx()), TriggerResult::Fire);
        Trigger::<i32, _>::clear(&t, &W, &mut p.ctx());
        assert_eq!(p.take(), vec![(E, 99, false)]);
        assert_eq!(p.state, None);
        // Merging keeps the earliest next firing.
        Trigger::<i32, _>::on_merge(&t, &W, &[Some(70), None, Some(40)], &mut p.ctx());
        assert_eq!((p.state, p.take()), (Some(40), vec![(E, 40, true)]));
    }

    #[test]
    fn purging_trigger_purges_whenever_the_nested_trigger_fires() {
        let t = PurgingTrigger::of(CountTrigger::of(2));
        let mut p = Probe::<u64>::new();
        assert_eq!(
            Trigger::<i32, TimeWindow>::on_element(&t, &0, 0, &W, &mut p.ctx()),
            TriggerResult::Continue
        );
        assert_eq!(
            Trigger::<i32, TimeWindow>::on_element(&t, &0, 0, &W, &mut p.ctx()),
            TriggerResult::FireAndPurge
        );
        assert!(Trigger::<i32, TimeWindow>::can_merge(&t));
        assert_eq!(Trigger::<i32, TimeWindow>::name(&t), "PurgingTrigger(CountTrigger(2))");
    }

    #[test]
    fn result_flags() {
        assert!(TriggerResult::FireAndPurge.is_fire() && TriggerResult::FireAndPurge.is_purge());
        assert!(!TriggerResult::Purge.is_fire() && !TriggerResult::Fire.is_purge());
    }
}
