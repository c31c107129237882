//! Window assigners: which windows an element belongs to (Flink's `WindowAssigner`).
//!
//! | assigner | windows of an element at `ts` |
//! |---|---|
//! | [`TumblingEventTimeWindows`] | `[start, start + size)` with `start = ts − ((ts − offset) mod size)` |
//! | [`SlidingEventTimeWindows`] | `[s, s + size)` for `s = start(ts, offset, slide), s − slide, …` while `s > ts − size`: ⌈size / slide⌉ windows |
//! | [`EventTimeSessionWindows`] | `[ts, ts + gap)`, merged with every intersecting window of the key |
//! | `*ProcessingTime*` | the same, with the current processing time instead of `ts` |
//! | [`GlobalWindows`] | the single [`GlobalWindow`] |
//!
//! Every assigner comes with a default trigger: event-time windows fire when the watermark
//! passes their end, processing-time windows when the wall clock does, global windows never.

use std::marker::PhantomData;
use std::time::Duration;

use eddy_core::{EddyError, Result, NO_TIMESTAMP};

use super::triggers::{duration_ms, EventTimeTrigger, NeverTrigger, ProcessingTimeTrigger, Trigger};
use super::window::{GlobalWindow, TimeWindow, Window};

/// What an assigner may ask the operator.
#[derive(Debug, Clone, Copy)]
pub struct WindowAssignerContext {
    processing_time: i64,
}

impl WindowAssignerContext {
    pub(crate) fn new(processing_time: i64) -> Self {
        WindowAssignerContext { processing_time }
    }

    /// Milliseconds since the epoch (read once per batch of records).
    pub fn current_processing_time(&self) -> i64 {
        self.processing_time
    }
}

/// The geometry of tumbling and sliding windows (tumbling: `slide == size`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    pub size: i64,
    pub slide: i64,
    pub offset: i64,
}

/// Receives `(group, result)` from [`WindowAssigner::merge_windows`].
pub type MergeCallback<'a, W> = dyn FnMut(&[W], W) + 'a;

/// Assigns elements to windows (Flink's `WindowAssigner` and `MergingWindowAssigner`).
pub trait WindowAssigner<T>: Clone + Send + Sync + 'static {
    type Window: Window;
    /// The trigger used unless `trigger(..)` sets another.
    type DefaultTrigger: Trigger<T, Self::Window>;

    /// Appends the windows of `element` (with event timestamp `timestamp`, or
    /// [`NO_TIMESTAMP`]) to `windows`.
    fn assign_windows(
        &self,
        element: &T,
        timestamp: i64,
        ctx: &WindowAssignerContext,
        windows: &mut Vec<Self::Window>,
    ) -> Result<()>;

    fn default_trigger(&self) -> Self::DefaultTrigger;

    /// Whether windows follow event time (lateness and watermarks apply) rather than
    /// processing time.
    fn is_event_time(&self) -> bool;

    /// Whether windows of a key merge (session windows); then
    /// [`merge_windows`](Self::merge_windows) says how.
    fn is_merging(&self) -> bool {
        false
    }

    /// Merging assigners: calls `merge(group, result)` for every group of two or more of
    /// `windows` that merge into `result`. May reorder `windows`.
    fn merge_windows(&self, _windows: &mut [Self::Window], _merge: &mut MergeCallback<'_, Self::Window>) {}

    /// Checks the parameters when the assigner is applied to a stream.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Shown in the operator name, like Flink's `toString`.
    fn name(&self) -> String;

    /// Tumbling and sliding assigners: their geometry, which lets the window operator share
    /// partial aggregates between windows.
    #[doc(hidden)]
    fn alignment(&self) -> Option<Alignment> {
        None
    }
}

fn no_timestamp(assigner: &str) -> EddyError {
    EddyError::BadInput {
        location: assigner.to_string(),
        reason: "record has no timestamp (the i64::MIN marker); is the time characteristic meant to \
                 be processing time, or was assign_timestamps_and_watermarks(..) forgotten?"
            .into(),
    }
}

fn invalid(message: String) -> EddyError {
    EddyError::InvalidJob(message)
}

/// Appends the windows `[s, s + size)` for `s = start(ts, offset, slide), s − slide, …` while
/// `s > ts − size`, stopping rather than wrapping around at the ends of the `i64` range.
fn sliding_windows(ts: i64, size: i64, slide: i64, offset: i64, windows: &mut Vec<TimeWindow>) {
    let Some(lowest) = ts.checked_sub(size) else { return };
    let mut start = TimeWindow::window_start_with_offset(ts, offset, slide);
    while start > lowest {
        windows.push(TimeWindow::new(start, start.wrapping_add(size)));
        match start.checked_sub(slide) {
            Some(s) => start = s,
            None => break,
        }
    }
}

fn check_aligned(name: &str, size: i64, slide: i64, offset: i64) -> Result<()> {
    if size <= 0 || slide <= 0 || offset.unsigned_abs() >= slide.unsigned_abs() {
        let what = if size == slide { "abs(offset) < size" } else { "abs(offset) < slide and size > 0" };
        return Err(invalid(format!(
            "{name} parameters must satisfy {what} (size {size}, slide {slide}, offset {offset})"
        )));
    }
    Ok(())
}

macro_rules! offset_builders {
    () => {
        /// Shifts the windows' alignment by a positive offset (e.g. 15 min for windows of an
        /// hour starting at :15).
        pub fn with_offset(self, offset: Duration) -> Self {
            self.with_offset_ms(duration_ms(offset))
        }

        /// Shifts the windows' alignment by `offset_ms`, which may be negative (−8 h for days in
        /// UTC+8).
        pub fn with_offset_ms(mut self, offset_ms: i64) -> Self {
            self.offset = offset_ms;
            self
        }
    };
}

/// Non-overlapping event-time windows of a fixed size (Flink's `TumblingEventTimeWindows`).
///
/// ```
/// use eddy::prelude::*;
/// // Windows [0, 1000), [1000, 2000), ...
/// let w = TumblingEventTimeWindows::of(Duration::from_secs(1));
/// // Days starting at midnight in UTC+8.
/// let days = TumblingEventTimeWindows::of(Duration::from_secs(86_400)).with_offset_ms(-8 * 3_600_000);
/// # let _ = (w, days);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TumblingEventTimeWindows {
    size: i64,
    offset: i64,
}

impl TumblingEventTimeWindows {
    pub fn of(size: Duration) -> Self {
        TumblingEventTimeWindows { size: duration_ms(size), offset: 0 }
    }
    offset_builders!();
}

impl<T> WindowAssigner<T> for TumblingEventTimeWindows {
    type Window = TimeWindow;
    type DefaultTrigger = EventTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        ts: i64,
        _: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        if ts == NO_TIMESTAMP {
            return Err(no_timestamp("TumblingEventTimeWindows"));
        }
        let start = TimeWindow::window_start_with_offset(ts, self.offset, self.size);
        out.push(TimeWindow::new(start, start.wrapping_add(self.size)));
        Ok(())
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn validate(&self) -> Result<()> {
        check_aligned("TumblingEventTimeWindows", self.size, self.size, self.offset)
    }
    fn name(&self) -> String {
        format!("TumblingEventTimeWindows({})", self.size)
    }
    fn alignment(&self) -> Option<Alignment> {
        Some(Alignment { size: self.size, slide: self.size, offset: self.offset })
    }
}

/// Overlapping event-time windows of `size`, one starting every `slide` (Flink's
/// `SlidingEventTimeWindows`). Each element belongs to ⌈size / slide⌉ windows.
///
/// With `reduce` or `aggregate` and the default trigger, the operator keeps one partial
/// aggregate per pane of gcd(size, slide) instead of one per window.
#[derive(Debug, Clone, Copy)]
pub struct SlidingEventTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

impl SlidingEventTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingEventTimeWindows { size: duration_ms(size), slide: duration_ms(slide), offset: 0 }
    }
    offset_builders!();
}

impl<T> WindowAssigner<T> for SlidingEventTimeWindows {
    type Window = TimeWindow;
    type DefaultTrigger = EventTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        ts: i64,
        _: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        if ts == NO_TIMESTAMP {
            return Err(no_timestamp("SlidingEventTimeWindows"));
        }
        sliding_windows(ts, self.size, self.slide, self.offset, out);
        Ok(())
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn validate(&self) -> Result<()> {
        check_aligned("SlidingEventTimeWindows", self.size, self.slide, self.offset)
    }
    fn name(&self) -> String {
        format!("SlidingEventTimeWindows({}, {})", self.size, self.slide)
    }
    fn alignment(&self) -> Option<Alignment> {
        Some(Alignment { size: self.size, slide: self.slide, offset: self.offset })
    }
}

/// Non-overlapping processing-time windows (Flink's `TumblingProcessingTimeWindows`).
#[derive(Debug, Clone, Copy)]
pub struct TumblingProcessingTimeWindows {
    size: i64,
    offset: i64,
}

impl TumblingProcessingTimeWindows {
    pub fn of(size: Duration) -> Self {
        TumblingProcessingTimeWindows { size: duration_ms(size), offset: 0 }
    }
    offset_builders!();
}

impl<T> WindowAssigner<T> for TumblingProcessingTimeWindows {
    type Window = TimeWindow;
    type DefaultTrigger = ProcessingTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        _: i64,
        ctx: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        let now = ctx.current_processing_time();
        let start = TimeWindow::window_start_with_offset(now, self.offset, self.size);
        out.push(TimeWindow::new(start, start.wrapping_add(self.size)));
        Ok(())
    }
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<()> {
        check_aligned("TumblingProcessingTimeWindows", self.size, self.size, self.offset)
    }
    fn name(&self) -> String {
        format!("TumblingProcessingTimeWindows({})", self.size)
    }
    fn alignment(&self) -> Option<Alignment> {
        Some(Alignment { size: self.size, slide: self.size, offset: self.offset })
    }
}

/// Overlapping processing-time windows (Flink's `SlidingProcessingTimeWindows`).
#[derive(Debug, Clone, Copy)]
pub struct SlidingProcessingTimeWindows {
    size: i64,
    slide: i64,
    offset: i64,
}

impl SlidingProcessingTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> Self {
        SlidingProcessingTimeWindows { size: duration_ms(size), slide: duration_ms(slide), offset: 0 }
    }
    offset_builders!();
}

impl<T> WindowAssigner<T> for SlidingProcessingTimeWindows {
    type Window = TimeWindow;
    type DefaultTrigger = ProcessingTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        _: i64,
        ctx: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        sliding_windows(ctx.current_processing_time(), self.size, self.slide, self.offset, out);
        Ok(())
    }
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn validate(&self) -> Result<()> {
        check_aligned("SlidingProcessingTimeWindows", self.size, self.slide, self.offset)
    }
    fn name(&self) -> String {
        format!("SlidingProcessingTimeWindows({}, {})", self.size, self.slide)
    }
    fn alignment(&self) -> Option<Alignment> {
        Some(Alignment { size: self.size, slide: self.slide, offset: self.offset })
    }
}

/// A gap between sessions: a [`Duration`] or a number of milliseconds.
pub trait SessionGap {
    fn to_millis(self) -> i64;
}

impl SessionGap for Duration {
    fn to_millis(self) -> i64 {
        duration_ms(self)
    }
}

impl SessionGap for i64 {
    fn to_millis(self) -> i64 {
        self
    }
}

impl SessionGap for u64 {
    fn to_millis(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

fn session_window(start: i64, gap: i64) -> TimeWindow {
    TimeWindow::new(start, start.wrapping_add(gap))
}

fn check_gap(name: &str, gap: i64) -> Result<()> {
    if gap <= 0 {
        return Err(invalid(format!("{name} parameters must satisfy 0 < gap (gap {gap})")));
    }
    Ok(())
}

/// Event-time sessions: an element at `ts` opens `[ts, ts + gap)`, and windows of a key that
/// intersect (or touch) merge (Flink's `EventTimeSessionWindows`). A session fires when the
/// watermark passes its last element's timestamp + gap − 1.
///
/// ```
/// use eddy::prelude::*;
/// let fixed = EventTimeSessionWindows::with_gap(Duration::from_secs(30));
/// // Per-element gaps, as a Duration or in milliseconds.
/// let dynamic = EventTimeSessionWindows::with_dynamic_gap(|e: &(String, i64)| e.1);
/// # let _ = (fixed, dynamic);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventTimeSessionWindows {
    gap: i64,
}

impl EventTimeSessionWindows {
    pub fn with_gap(gap: Duration) -> Self {
        EventTimeSessionWindows { gap: duration_ms(gap) }
    }

    /// Sessions whose gap `extract(element)` decides per element (Flink's
    /// `DynamicEventTimeSessionWindows`).
    pub fn with_dynamic_gap<T, G, F>(extract: F) -> DynamicEventTimeSessionWindows<T, F>
    where
        G: SessionGap,
        F: Fn(&T) -> G + Clone + Send + Sync + 'static,
    {
        DynamicEventTimeSessionWindows { extract, _t: PhantomData }
    }
}

impl<T> WindowAssigner<T> for EventTimeSessionWindows {
    type Window = TimeWindow;
    type DefaultTrigger = EventTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        ts: i64,
        _: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        out.push(session_window(ts, self.gap));
        Ok(())
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &mut [TimeWindow], merge: &mut MergeCallback<'_, TimeWindow>) {
        TimeWindow::merge_windows(windows, merge)
    }
    fn validate(&self) -> Result<()> {
        check_gap("EventTimeSessionWindows", self.gap)
    }
    fn name(&self) -> String {
        format!("EventTimeSessionWindows({})", self.gap)
    }
}

/// Event-time sessions with a gap per element; see [`EventTimeSessionWindows::with_dynamic_gap`].
pub struct DynamicEventTimeSessionWindows<T, F> {
    extract: F,
    _t: PhantomData<fn(&T)>,
}

impl<T, F: Clone> Clone for DynamicEventTimeSessionWindows<T, F> {
    fn clone(&self) -> Self {
        DynamicEventTimeSessionWindows { extract: self.extract.clone(), _t: PhantomData }
    }
}

impl<T: 'static, G: SessionGap, F> WindowAssigner<T> for DynamicEventTimeSessionWindows<T, F>
where
    F: Fn(&T) -> G + Clone + Send + Sync + 'static,
{
    type Window = TimeWindow;
    type DefaultTrigger = EventTimeTrigger;

    fn assign_windows(
        &self,
        e: &T,
        ts: i64,
        _: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        let gap = (self.extract)(e).to_millis();
        check_gap("DynamicEventTimeSessionWindows", gap)?;
        out.push(session_window(ts, gap));
        Ok(())
    }
    fn default_trigger(&self) -> EventTimeTrigger {
        EventTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        true
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &mut [TimeWindow], merge: &mut MergeCallback<'_, TimeWindow>) {
        TimeWindow::merge_windows(windows, merge)
    }
    fn name(&self) -> String {
        "DynamicEventTimeSessionWindows()".into()
    }
}

/// Processing-time sessions (Flink's `ProcessingTimeSessionWindows`): an element opens
/// `[now, now + gap)`.
#[derive(Debug, Clone, Copy)]
pub struct ProcessingTimeSessionWindows {
    gap: i64,
}

impl ProcessingTimeSessionWindows {
    pub fn with_gap(gap: Duration) -> Self {
        ProcessingTimeSessionWindows { gap: duration_ms(gap) }
    }

    /// Sessions whose gap `extract(element)` decides per element.
    pub fn with_dynamic_gap<T, G, F>(extract: F) -> DynamicProcessingTimeSessionWindows<T, F>
    where
        G: SessionGap,
        F: Fn(&T) -> G + Clone + Send + Sync + 'static,
    {
        DynamicProcessingTimeSessionWindows { extract, _t: PhantomData }
    }
}

impl<T> WindowAssigner<T> for ProcessingTimeSessionWindows {
    type Window = TimeWindow;
    type DefaultTrigger = ProcessingTimeTrigger;

    fn assign_windows(
        &self,
        _: &T,
        _: i64,
        ctx: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        out.push(session_window(ctx.current_processing_time(), self.gap));
        Ok(())
    }
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &mut [TimeWindow], merge: &mut MergeCallback<'_, TimeWindow>) {
        TimeWindow::merge_windows(windows, merge)
    }
    fn validate(&self) -> Result<()> {
        check_gap("ProcessingTimeSessionWindows", self.gap)
    }
    fn name(&self) -> String {
        format!("ProcessingTimeSessionWindows({})", self.gap)
    }
}

/// Processing-time sessions with a gap per element.
pub struct DynamicProcessingTimeSessionWindows<T, F> {
    extract: F,
    _t: PhantomData<fn(&T)>,
}

impl<T, F: Clone> Clone for DynamicProcessingTimeSessionWindows<T, F> {
    fn clone(&self) -> Self {
        DynamicProcessingTimeSessionWindows { extract: self.extract.clone(), _t: PhantomData }
    }
}

impl<T: 'static, G: SessionGap, F> WindowAssigner<T> for DynamicProcessingTimeSessionWindows<T, F>
where
    F: Fn(&T) -> G + Clone + Send + Sync + 'static,
{
    type Window = TimeWindow;
    type DefaultTrigger = ProcessingTimeTrigger;

    fn assign_windows(
        &self,
        e: &T,
        _: i64,
        ctx: &WindowAssignerContext,
        out: &mut Vec<TimeWindow>,
    ) -> Result<()> {
        let gap = (self.extract)(e).to_millis();
        check_gap("DynamicProcessingTimeSessionWindows", gap)?;
        out.push(session_window(ctx.current_processing_time(), gap));
        Ok(())
    }
    fn default_trigger(&self) -> ProcessingTimeTrigger {
        ProcessingTimeTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn is_merging(&self) -> bool {
        true
    }
    fn merge_windows(&self, windows: &mut [TimeWindow], merge: &mut MergeCallback<'_, TimeWindow>) {
        TimeWindow::merge_windows(windows, merge)
    }
    fn name(&self) -> String {
        "DynamicProcessingTimeSessionWindows()".into()
    }
}

/// One window per key holding all its elements (Flink's `GlobalWindows`). The default trigger
/// never fires: set one, e.g. with `count_window` or
/// [`EndOfStreamTrigger`](super::EndOfStreamTrigger).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalWindows;

impl GlobalWindows {
    pub fn create() -> Self {
        GlobalWindows
    }
}

impl<T> WindowAssigner<T> for GlobalWindows {
    type Window = GlobalWindow;
    type DefaultTrigger = NeverTrigger;

    fn assign_windows(
        &self,
        _: &T,
        _: i64,
        _: &WindowAssignerContext,
        out: &mut Vec<GlobalWindow>,
    ) -> Result<()> {
        out.push(GlobalWindow);
        Ok(())
    }
    fn default_trigger(&self) -> NeverTrigger {
        NeverTrigger
    }
    fn is_event_time(&self) -> bool {
        false
    }
    fn name(&self) -> String {
        "GlobalWindows()".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign<A: WindowAssigner<()>>(a: &A, ts: i64, now: i64) -> Vec<A::Window> {
        let mut out = Vec::new();
        a.assign_windows(&(), ts, &WindowAssignerContext::new(now), &mut out).unwrap();
        out
    }

    fn w(start: i64, end: i64) -> TimeWindow {
        TimeWindow::new(start, end)
    }

    #[test]
    fn tumbling_windows_with_negative_timestamps_and_offsets() {
        let a = TumblingEventTimeWindows::of(Duration::from_millis(1000));
        assert_eq!(assign(&a, 0, 0), vec![w(0, 1000)]);
        assert_eq!(assign(&a, 999, 0), vec![w(0, 1000)]);
        assert_eq!(assign(&a, -1, 0), vec![w(-1000, 0)]);
        assert_eq!(assign(&a, -1000, 0), vec![w(-1000, 0)]);
        assert_eq!(assign(&a, -1001, 0), vec![w(-2000, -1000)]);
        let a = a.with_offset(Duration::from_millis(300));
        assert_eq!(assign(&a, 299, 0), vec![w(-700, 300)]);
        assert_eq!(assign(&a, 300, 0), vec![w(300, 1300)]);
        assert_eq!(assign(&a, -701, 0), vec![w(-1700, -700)]);
        let a = a.with_offset_ms(-300);
        assert_eq!(assign(&a, 699, 0), vec![w(-300, 700)]);
        assert_eq!(assign(&a, 700, 0), vec![w(700, 1700)]);
        assert_eq!(assign(&a, -301, 0), vec![w(-1300, -300)]);
    }

    #[test]
    fn event_time_assigners_reject_records_without_timestamp() {
        let mut out = Vec::new();
        let ctx = WindowAssignerContext::new(0);
        let t = TumblingEventTimeWindows::of(Duration::from_secs(1));
        assert!(WindowAssigner::<()>::assign_windows(&t, &(), NO_TIMESTAMP, &ctx, &mut out).is_err());
        let s = SlidingEventTimeWindows::of(Duration::from_secs(2), Duration::from_secs(1));
        assert!(WindowAssigner::<()>::assign_windows(&s, &(), NO_TIMESTAMP, &ctx, &mut out).is_err());
    }

    #[test]
    fn sliding_windows_hold_each_element_ceil_size_over_slide_times() {
        let a = SlidingEventTimeWindows::of(Duration::from_millis(1000), Duration::from_millis(300));
        // ts 650: last start 600; then 300, 0, -300 (> 650 - 1000); -600 is not.
        assert_eq!(assign(&a, 650, 0), vec![w(600, 1600), w(300, 1300), w(0, 1000), w(-300, 700)]);
        // ts -1: starts -300, -600, -900 (> -1001); -1200 is not.
        assert_eq!(assign(&a, -1, 0), vec![w(-300, 700), w(-600, 400), w(-900, 100)]);
        for (size, slide) in [(1000i64, 300i64), (1000, 250), (1000, 1000), (900, 300), (10, 3)] {
            let a = SlidingEventTimeWindows::of(
                Duration::from_millis(size as u64),
                Duration::from_millis(slide as u64),
            );
            for ts in -2500..2500 {
                let ws = assign(&a, ts, 0);
                // Independent count: starts s ≡ 0 mod slide with ts - size < s <= ts.
                let expected = (ts - size + 1..=ts).filter(|s| s.rem_euclid(slide) == 0).count();
                assert_eq!(ws.len(), expected, "size {size} slide {slide} ts {ts}");
                if size % slide == 0 {
                    assert_eq!(ws.len() as i64, size / slide);
                }
                assert!(ws.iter().all(|x| x.start() <= ts && ts < x.end() && x.end() - x.start() == size));
            }
        }
    }

    #[test]
    fn sliding_windows_with_offset_and_gaps() {
        let a = SlidingEventTimeWindows::of(Duration::from_millis(10), Duration::from_millis(5))
            .with_offset_ms(-2);
        assert_eq!(assign(&a, 4, 0), vec![w(3, 13), w(-2, 8)]);
        assert_eq!(assign(&a, 2, 0), vec![w(-2, 8), w(-7, 3)]);
        // size < slide: some timestamps fall in no window.
        let a = SlidingEventTimeWindows::of(Duration::from_millis(2), Duration::from_millis(5));
        assert_eq!(assign(&a, 6, 0), vec![w(5, 7)]);
        assert_eq!(assign(&a, 7, 0), vec![]);
    }

    #[test]
    fn processing_time_assigners_use_the_current_processing_time() {
        let a = TumblingProcessingTimeWindows::of(Duration::from_millis(100));
        assert_eq!(assign(&a, 5, 250), vec![w(200, 300)]);
        assert_eq!(assign(&a, NO_TIMESTAMP, 250), vec![w(200, 300)]);
        let a = SlidingProcessingTimeWindows::of(Duration::from_millis(100), Duration::from_millis(50));
        assert_eq!(assign(&a, 5, 250), vec![w(250, 350), w(200, 300)]);
        let a = ProcessingTimeSessionWindows::with_gap(Duration::from_millis(10));
        assert_eq!(assign(&a, 5, 250), vec![w(250, 260)]);
    }

    #[test]
    fn session_windows_open_ts_plus_gap() {
        let a = EventTimeSessionWindows::with_gap(Duration::from_millis(10));
        assert_eq!(assign(&a, -5, 0), vec![w(-5, 5)]);
        let d = EventTimeSessionWindows::with_dynamic_gap(|v: &i64| *v);
        let mut out = Vec::new();
        d.assign_windows(&7, 100, &WindowAssignerContext::new(0), &mut out).unwrap();
        assert_eq!(out, vec![w(100, 107)]);
        assert!(d.assign_windows(&0, 100, &WindowAssignerContext::new(0), &mut out).is_err());
        let dd = EventTimeSessionWindows::with_dynamic_gap(|_: &i64| Duration::from_millis(3));
        out.clear();
        dd.assign_windows(&0, 1, &WindowAssignerContext::new(0), &mut out).unwrap();
        assert_eq!(out, vec![w(1, 4)]);
    }

    #[test]
    fn global_windows_assign_the_global_window() {
        assert_eq!(assign(&GlobalWindows::create(), 5, 0), vec![GlobalWindow]);
    }

    #[test]
    fn parameters_are_validated() {
        let v = |a: &dyn Fn() -> Result<()>| a().is_ok();
        let t = |size, off| {
            WindowAssigner::<()>::validate(&TumblingEventTimeWindows::of(size).with_offset_ms(off))
        };
        assert!(v(&|| t(Duration::from_millis(10), 9)));
        assert!(v(&|| t(Duration::from_millis(10), -9)));
        assert!(!v(&|| t(Duration::from_millis(10), 10)));
        assert!(!v(&|| t(Duration::from_millis(10), -10)));
        assert!(!v(&|| t(Duration::ZERO, 0)));
        let s = |size, slide, off| {
            WindowAssigner::<()>::validate(
                &SlidingEventTimeWindows::of(Duration::from_millis(size), Duration::from_millis(slide))
                    .with_offset_ms(off),
            )
        };
        assert!(v(&|| s(10, 3, 2)));
        assert!(!v(&|| s(10, 3, 3)));
        assert!(!v(&|| s(10, 0, 0)));
        assert!(!v(&|| s(0, 3, 0)));
        assert!(WindowAssigner::<()>::validate(&EventTimeSessionWindows::with_gap(Duration::ZERO)).is_err());
    }
}
