//! Windowing end to end: operators driven by the test harness (manual watermarks and clock),
//! operators driven directly (to read their counters and state), and small jobs.
//!
//! Every expectation is worked out by hand from Flink's documented semantics, or computed by
//! the naive reference model at the end of this file, never by running the code under test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use eddy_core::{Batch, NO_TIMESTAMP};
use eddy_runtime::time::{ClockRef, ManualClock};
use eddy_runtime::{Emitter, OneInputOperator, OperatorContext, Output};

use super::aligned::{AlignedSpec, AlignedWindowOperator};
use super::assigners::Alignment;
use super::functions::{Incremental, PassThrough, ReduceAgg};
use super::operator::{WindowOperator, WindowSpec};
use crate::prelude::*;
use crate::testing::{Emitted, OneInputHarness};

type E = (String, i64);

fn e(k: &str, v: i64) -> E {
    (k.to_string(), v)
}

fn key(e: &E) -> String {
    e.0.clone()
}

fn sum(a: E, b: E) -> E {
    (a.0, a.1 + b.1)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sorted<T: PartialOrd>(mut v: Vec<T>) -> Vec<T> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v
}

/// A record emitted with a timestamp.
fn r<T>(v: T, ts: i64) -> (T, Option<i64>) {
    (v, Some(ts))
}

type Harness<O> = OneInputHarness<E, O>;

fn harness<O: Data>(
    pipeline: impl FnOnce(KeyedStream<E, String, fn(&E) -> String>) -> DataStream<O>,
) -> Harness<O> {
    OneInputHarness::build(|s: DataStream<E>| pipeline(s.key_by(key as fn(&E) -> String))).unwrap()
}

/// Delegates to `EventTimeTrigger` under another type, so the general operator runs
/// (the aligned operator is chosen only for the default trigger type).
#[derive(Clone)]
struct SameAsEventTime;

impl<T, W: Window> Trigger<T, W> for SameAsEventTime {
    type State = ();
    fn on_element(&self, el: &T, ts: i64, w: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        Trigger::<T, W>::on_element(&EventTimeTrigger, el, ts, w, ctx)
    }
    fn on_event_time(&self, time: i64, w: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        Trigger::<T, W>::on_event_time(&EventTimeTrigger, time, w, ctx)
    }
    fn on_processing_time(&self, time: i64, w: &W, ctx: &mut TriggerContext<'_, ()>) -> TriggerResult {
        Trigger::<T, W>::on_processing_time(&EventTimeTrigger, time, w, ctx)
    }
    fn can_merge(&self) -> bool {
        true
    }
    fn on_merge(&self, w: &W, merged: &[()], ctx: &mut TriggerContext<'_, ()>) {
        Trigger::<T, W>::on_merge(&EventTimeTrigger, w, merged, ctx)
    }
    fn clear(&self, w: &W, ctx: &mut TriggerContext<'_, ()>) {
        Trigger::<T, W>::clear(&EventTimeTrigger, w, ctx)
    }
}

/// Lists a window's elements: `key [start,end) v1,v2,...` (values sorted).
#[allow(clippy::ptr_arg)]
fn list(
    key: &String,
    ctx: &mut WindowContext<String, TimeWindow>,
    elements: &[E],
    out: &mut Collector<String>,
) -> Result<()> {
    let mut vs: Vec<i64> = elements.iter().map(|e| e.1).collect();
    vs.sort();
    let vs: Vec<String> = vs.iter().map(i64::to_string).collect();
    out.collect(format!("{key} [{},{}) {}", ctx.window().start(), ctx.window().end(), vs.join(",")));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tumbling windows, functions and output timestamps
// ---------------------------------------------------------------------------------------------

fn check_tumbling_sum(mut h: Harness<E>) {
    h.process_element(e("a", 1), 0).unwrap();
    h.process_element(e("a", 2), 999).unwrap();
    h.process_element(e("b", 10), 500).unwrap();
    h.process_element(e("a", 4), 1000).unwrap();
    h.process_element(e("a", 8), -1).unwrap();
    h.process_watermark(-2).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Watermark(-2)]);
    h.process_watermark(998).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Record(e("a", 8), Some(-1)), Emitted::Watermark(998)]);
    h.process_watermark(999).unwrap();
    let out = h.take_output();
    assert_eq!(out.last(), Some(&Emitted::Watermark(999)), "results come before the watermark");
    let records: Vec<_> = out
        .into_iter()
        .filter_map(|x| match x {
            Emitted::Record(v, ts) => Some((v, ts)),
            _ => None,
        })
        .collect();
    assert_eq!(sorted(records), vec![r(e("a", 3), 999), r(e("b", 10), 999)]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 4), 1999)]);
}

#[test]
fn tumbling_reduce_fires_when_the_watermark_reaches_end_minus_one() {
    check_tumbling_sum(harness(|k| k.window(TumblingEventTimeWindows::of(ms(1000))).reduce(sum)));
}

#[test]
fn tumbling_reduce_on_the_general_operator_gives_the_same_results() {
    check_tumbling_sum(harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(1000))).trigger(SameAsEventTime).reduce(sum)
    }));
}

#[test]
fn tumbling_windows_with_negative_offset() {
    let mut h = harness(|k| k.window(TumblingEventTimeWindows::of(ms(100)).with_offset_ms(-30)).reduce(sum));
    // Windows [-30, 70), [70, 170).
    for (v, ts) in [(1, -30), (2, 69), (4, 70), (8, -31)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 8), -31), r(e("a", 3), 69), r(e("a", 4), 169)]);
}

/// The average of the values.
#[derive(Clone)]
struct Average;

impl AggregateFunction<E, (i64, i64), f64> for Average {
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, i64), v: E) {
        acc.0 += v.1;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> f64 {
        acc.0 as f64 / acc.1 as f64
    }
    fn merge(&self, acc: &mut (i64, i64), other: (i64, i64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
}

#[test]
fn aggregate_emits_the_result_of_the_accumulator() {
    let mut h = harness(|k| k.window(TumblingEventTimeWindows::of(ms(10))).aggregate(Average));
    for (v, ts) in [(1, 1), (2, 2), (6, 3), (5, 15)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    h.process_watermark(20).unwrap();
    assert_eq!(h.take_records(), vec![r(3.0, 9), r(5.0, 19)]);
}

#[test]
fn process_sees_all_elements_and_the_window() {
    let mut h = harness(|k| k.window(TumblingEventTimeWindows::of(ms(10))).process(list));
    for (k, v, ts) in [("a", 3, 1), ("a", 1, 9), ("b", 2, 5), ("a", 7, 10)] {
        h.process_element(e(k, v), ts).unwrap();
    }
    h.process_watermark(9).unwrap();
    assert_eq!(
        sorted(h.take_records()),
        vec![r("a [0,10) 1,3".to_string(), 9), r("b [0,10) 2".to_string(), 9)]
    );
    h.process_watermark(19).unwrap();
    assert_eq!(h.take_records(), vec![r("a [10,20) 7".to_string(), 19)]);
}

/// Emits `key@start-end: sum (watermark)` from a single incremental result.
#[allow(clippy::ptr_arg)]
fn describe_sum(
    key: &String,
    ctx: &mut WindowContext<String, TimeWindow>,
    v: &[E],
    out: &mut Collector<String>,
) -> Result<()> {
    assert_eq!(v.len(), 1, "incremental aggregation hands over one value");
    let w = ctx.window();
    out.collect(format!("{key}@{}-{}: {} ({})", w.start(), w.end(), v[0].1, ctx.current_watermark()));
    Ok(())
}

#[test]
fn reduce_with_passes_the_single_result_and_the_window() {
    for general in [false, true] {
        let mut h = if general {
            harness(|k| {
                k.window(TumblingEventTimeWindows::of(ms(10)))
                    .trigger(SameAsEventTime)
                    .reduce_with(sum, describe_sum)
            })
        } else {
            harness(|k| k.window(TumblingEventTimeWindows::of(ms(10))).reduce_with(sum, describe_sum))
        };
        for (v, ts) in [(1, 1), (2, 2), (4, 12)] {
            h.process_element(e("a", v), ts).unwrap();
        }
        h.process_watermark(15).unwrap();
        assert_eq!(h.take_records(), vec![r("a@0-10: 3 (15)".to_string(), 9)]);
    }
}

#[test]
fn aggregate_with_passes_the_result_and_side_outputs_carry_the_window_timestamp() {
    let side = OutputTag::<String>::new("averages");
    let (tag, consumed) = (side.clone(), side.clone());
    let mut h = harness(move |k| {
        let out = k.window(SlidingEventTimeWindows::of(ms(10), ms(5))).aggregate_with(
            Average,
            move |key: &String,
                  ctx: &mut WindowContext<String, TimeWindow>,
                  avg: &[f64],
                  out: &mut Collector<(String, f64)>| {
                out.collect((key.clone(), avg[0]));
                ctx.output(&tag, format!("{key} {}", ctx.window().start()));
                Ok(())
            },
        );
        out.get_side_output(&consumed);
        out
    });
    // Windows [0,10) and [5,15) hold 7; [5,15) and [10,20) hold 12.
    h.process_element(e("a", 2), 7).unwrap();
    h.process_element(e("a", 4), 12).unwrap();
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(
        h.take_records(),
        vec![r(("a".to_string(), 2.0), 9), r(("a".to_string(), 3.0), 14), r(("a".to_string(), 4.0), 19)]
    );
    assert_eq!(
        h.take_side_output(&side),
        vec![r("a 0".to_string(), 9), r("a 5".to_string(), 14), r("a 10".to_string(), 19)]
    );
}

#[test]
fn field_aggregations_per_window() {
    fn run(
        f: impl FnOnce(
            WindowedStream<E, String, fn(&E) -> String, TumblingEventTimeWindows, EventTimeTrigger, NoEvictor>,
        ) -> DataStream<E>,
    ) -> Vec<(E, Option<i64>)> {
        let mut f = Some(f);
        let mut h = harness(|k| (f.take().expect("once"))(k.window(TumblingEventTimeWindows::of(ms(10)))));
        for (v, ts) in [(3, 1), (1, 2), (2, 3), (5, 11)] {
            h.process_element(e("a", v), ts).unwrap();
        }
        h.process_watermark(i64::MAX).unwrap();
        h.take_records()
    }
    assert_eq!(run(|w| w.sum(|e: &mut E| &mut e.1)), vec![r(e("a", 6), 9), r(e("a", 5), 19)]);
    assert_eq!(run(|w| w.min(|e: &mut E| &mut e.1)), vec![r(e("a", 1), 9), r(e("a", 5), 19)]);
    assert_eq!(run(|w| w.max(|e: &mut E| &mut e.1)), vec![r(e("a", 3), 9), r(e("a", 5), 19)]);
    assert_eq!(run(|w| w.min_by(|e: &mut E| &mut e.1)), vec![r(e("a", 1), 9), r(e("a", 5), 19)]);
    assert_eq!(run(|w| w.max_by(|e: &mut E| &mut e.1)), vec![r(e("a", 3), 9), r(e("a", 5), 19)]);
}

#[test]
fn records_without_timestamp_fail_event_time_windows() {
    let mut h = harness(|k| k.window(TumblingEventTimeWindows::of(ms(10))).reduce(sum));
    assert!(h.process_element_without_timestamp(e("a", 1)).is_err());
    let mut h = harness(|k| k.window(TumblingEventTimeWindows::of(ms(10))).process(list));
    assert!(h.process_element_without_timestamp(e("a", 1)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Sliding windows
// ---------------------------------------------------------------------------------------------

fn check_sliding_counts(mut h: Harness<E>) {
    // Size 10, slide 5: ts 7 is in [0,10) and [5,15); ts 3 in [-5,5) and [0,10).
    h.process_element(e("a", 1), 7).unwrap();
    h.process_element(e("a", 1), 3).unwrap();
    h.process_element(e("a", 1), 12).unwrap();
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 1), 4), r(e("a", 2), 9), r(e("a", 2), 14), r(e("a", 1), 19)]);
}

#[test]
fn sliding_windows_count_each_element_in_every_window_it_belongs_to() {
    check_sliding_counts(harness(|k| k.window(SlidingEventTimeWindows::of(ms(10), ms(5))).reduce(sum)));
    check_sliding_counts(harness(|k| {
        k.window(SlidingEventTimeWindows::of(ms(10), ms(5))).trigger(SameAsEventTime).reduce(sum)
    }));
}

#[test]
fn sliding_windows_with_non_dividing_slide() {
    // Size 10, slide 4: windows start at multiples of 4. ts 9 is in [0,10), [4,14), [8,18).
    let mut h = harness(|k| k.window(SlidingEventTimeWindows::of(ms(10), ms(4))).reduce(sum));
    h.process_element(e("a", 1), 9).unwrap();
    h.process_element(e("a", 10), 3).unwrap(); // [-4,6), [0,10)
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(
        h.take_records(),
        vec![r(e("a", 10), 5), r(e("a", 11), 9), r(e("a", 1), 13), r(e("a", 1), 17)]
    );
}

// ---------------------------------------------------------------------------------------------
// Lateness
// ---------------------------------------------------------------------------------------------

fn check_lateness(mut h: Harness<E>, late: &OutputTag<E>) {
    h.process_element(e("a", 1), 1).unwrap();
    h.process_element(e("a", 2), 2).unwrap();
    h.process_watermark(9).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 9)]);
    // Late, but within the allowed lateness of 5: added, and the window fires again at once.
    h.process_element(e("a", 4), 3).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 7), 9)]);
    // A key whose window did not exist yet: created, and fired at once.
    h.process_element(e("b", 10), 5).unwrap();
    assert_eq!(h.take_records(), vec![r(e("b", 10), 9)]);
    h.process_watermark(13).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process_element(e("a", 8), 9).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 15), 9)]);
    // At max timestamp + lateness = 14 the window's state is gone: its elements are late data.
    h.process_watermark(14).unwrap();
    h.process_element(e("a", 16), 9).unwrap();
    h.process_element(e("a", 32), 10).unwrap();
    assert_eq!(h.take_records(), vec![]);
    assert_eq!(h.take_side_output(late), vec![r(e("a", 16), 9)]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 32), 19)]);
}

#[test]
fn allowed_lateness_refires_and_state_is_purged_at_end_plus_lateness() {
    let late = OutputTag::<E>::new("late");
    let t = late.clone();
    check_lateness(
        harness(move |k| {
            k.window(TumblingEventTimeWindows::of(ms(10)))
                .allowed_lateness(ms(5))
                .side_output_late_data(&t)
                .reduce(sum)
        }),
        &late,
    );
    let t = late.clone();
    check_lateness(
        harness(move |k| {
            k.window(TumblingEventTimeWindows::of(ms(10)))
                .trigger(SameAsEventTime)
                .allowed_lateness(ms(5))
                .side_output_late_data(&t)
                .reduce(sum)
        }),
        &late,
    );
}

#[test]
fn late_elements_go_to_the_side_output_with_their_timestamp() {
    let late = OutputTag::<E>::new("late");
    let t = late.clone();
    let mut h = harness(move |k| {
        k.window(SlidingEventTimeWindows::of(ms(10), ms(5))).side_output_late_data(&t).process(list)
    });
    h.process_watermark(14).unwrap();
    // ts 9 is in [0,10) and [5,15), both fired (and cleaned): late.
    h.process_element(e("a", 1), 9).unwrap();
    // ts 10 is in [5,15) (late) and [10,20) (not): accepted, not late data.
    h.process_element(e("a", 2), 10).unwrap();
    assert_eq!(h.take_side_output(&late), vec![r(e("a", 1), 9)]);
    h.process_watermark(19).unwrap();
    assert_eq!(h.take_records(), vec![r("a [10,20) 2".to_string(), 19)]);
}

/// The records of an operator driven directly.
struct Recorded<T>(Arc<Mutex<Vec<(T, i64)>>>);

impl<T: Data> Output<T> for Recorded<T> {
    fn emit_batch(&mut self, batch: Batch<T>) -> Result<()> {
        self.0.lock().unwrap().extend(batch.into_iter_with_timestamps());
        Ok(())
    }
    fn emit_watermark(&mut self, _: i64) -> Result<()> {
        Ok(())
    }
    fn emit_idle(&mut self, _: bool) -> Result<()> {
        Ok(())
    }
    fn end_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

fn operator_context() -> OperatorContext {
    OperatorContext {
        job_name: "test".into(),
        operator_name: "window".into(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: 128,
        attempt: 0,
        runtime_mode: RuntimeMode::Streaming,
        batch_size: 1024,
        clock: ClockRef(Arc::new(ManualClock::new(0))),
        auto_watermark_interval: 200,
        checkpointing: false,
        state_backend: Default::default(),
        metrics: Default::default(),
    }
}

fn batch(items: &[(&str, i64, i64)]) -> Batch<E> {
    let mut b = Batch::new();
    for &(k, v, ts) in items {
        b.push_with_timestamp(e(k, v), ts);
    }
    b
}

#[test]
fn late_elements_without_side_output_are_dropped_and_counted() {
    let ctx = operator_context();
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut out = Emitter::new(Box::new(Recorded(records.clone())), 16);
    let mut aligned = AlignedWindowOperator::<E, String, _, _, PassThrough, TimeWindow>::new(
        key,
        ReduceAgg(sum),
        PassThrough,
        AlignedSpec {
            alignment: Alignment { size: 10, slide: 10, offset: 0 },
            event_time: true,
            lateness: 0,
            late_tag: None,
        },
        &ctx,
    )
    .unwrap();
    let spec = WindowSpec {
        key,
        assigner: TumblingEventTimeWindows::of(ms(10)),
        trigger: EventTimeTrigger,
        lateness: 0,
        late_tag: None,
    };
    let mut general =
        WindowOperator::new(spec, Incremental { agg: ReduceAgg(sum), wf: PassThrough }, &ctx).unwrap();
    aligned.open(&ctx).unwrap();
    general.open(&ctx).unwrap();

    aligned.process_batch(batch(&[("a", 1, 3), ("a", 2, 15)]), &mut out).unwrap();
    general.process_batch(batch(&[("a", 1, 3), ("a", 2, 15)]), &mut out).unwrap();
    assert_eq!((aligned.open_panes(), general.open_windows()), (vec![0, 10], 2));
    aligned.process_watermark(9, &mut out).unwrap();
    general.process_watermark(9, &mut out).unwrap();
    // The fired window's state is gone at once without lateness.
    assert_eq!((aligned.open_panes(), general.open_windows()), (vec![10], 1));
    let late = batch(&[("a", 4, 0), ("b", 8, 9), ("a", 16, 10)]);
    aligned.process_batch(late.clone(), &mut out).unwrap();
    general.process_batch(late, &mut out).unwrap();
    assert_eq!((aligned.num_late_records_dropped, general.num_late_records_dropped), (2, 2));
    // Both count into their operator's numLateRecordsDropped metric (one group here).
    assert_eq!(ctx.metrics.counter("numLateRecordsDropped").count(), 4);
    aligned.process_watermark(i64::MAX, &mut out).unwrap();
    general.process_watermark(i64::MAX, &mut out).unwrap();
    out.flush_buffer().unwrap();
    assert_eq!((aligned.open_panes(), general.open_windows()), (vec![], 0));
    assert_eq!(
        std::mem::take(&mut *records.lock().unwrap()),
        vec![(e("a", 1), 9), (e("a", 1), 9), (e("a", 18), 19), (e("a", 18), 19)]
    );
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[test]
fn sessions_merge_touching_windows_and_merge_accumulators() {
    let mut h = harness(|k| k.window(EventTimeSessionWindows::with_gap(ms(10))).reduce(sum));
    // [0,10) and [5,15) merge; [30,40) is apart; [15,25) touches [0,15): merges.
    for (v, ts) in [(1, 0), (2, 5), (4, 30), (8, 15)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    h.process_element(e("b", 100), 3).unwrap();
    h.process_watermark(24).unwrap();
    assert_eq!(sorted(h.take_records()), vec![r(e("a", 11), 24), r(e("b", 100), 12)]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 4), 39)]);
}

#[test]
fn session_process_function_sees_the_merged_window() {
    let mut h = harness(|k| k.window(EventTimeSessionWindows::with_gap(ms(10))).process(list));
    for (v, ts) in [(1, 0), (2, 25), (3, 12)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    // [0,10) + [12,22): apart. [25,35) touches [12,22)? 12 <= 35 && 22 >= 25: no.
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(
        h.take_records(),
        vec![
            r("a [0,10) 1".to_string(), 9),
            r("a [12,22) 3".to_string(), 21),
            r("a [25,35) 2".to_string(), 34)
        ]
    );
}

#[test]
fn a_late_element_bridges_two_sessions() {
    let mut h = harness(|k| {
        k.window(EventTimeSessionWindows::with_gap(ms(10))).allowed_lateness(ms(100)).process(list)
    });
    h.process_element(e("a", 1), 0).unwrap();
    h.process_element(e("a", 2), 15).unwrap();
    h.process_watermark(12).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,10) 1".to_string(), 9)]);
    // ts 7 is late (7 <= 12) but allowed; [7,17) touches [0,10) and [15,25): all three merge.
    // The merged window ends after the watermark: no immediate firing.
    h.process_element(e("a", 3), 7).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(23).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(24).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,25) 1,2,3".to_string(), 24)]);
}

#[test]
fn without_lateness_the_fired_session_is_gone_and_the_late_element_joins_the_next() {
    let mut h = harness(|k| k.window(EventTimeSessionWindows::with_gap(ms(10))).process(list));
    h.process_element(e("a", 1), 0).unwrap();
    h.process_element(e("a", 2), 15).unwrap();
    h.process_watermark(12).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,10) 1".to_string(), 9)]);
    h.process_element(e("a", 3), 7).unwrap();
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r("a [7,25) 2,3".to_string(), 24)]);
}

#[test]
fn merging_a_window_past_the_watermark_fires_it_at_once() {
    // Lateness 100: [0,10) fired at watermark 20. An element at 5 merges into it ([5,15) is
    // past the watermark too): EventTimeTrigger fires on the element, not by a timer.
    let mut h = harness(|k| {
        k.window(EventTimeSessionWindows::with_gap(ms(10))).allowed_lateness(ms(100)).process(list)
    });
    h.process_element(e("a", 1), 0).unwrap();
    h.process_watermark(20).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,10) 1".to_string(), 9)]);
    h.process_element(e("a", 2), 5).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,15) 1,2".to_string(), 14)]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![], "no second firing from a timer");
}

#[test]
fn dynamic_gap_sessions() {
    // The gap is the element's value.
    let mut h = harness(|k| k.window(EventTimeSessionWindows::with_dynamic_gap(|e: &E| e.1)).reduce(sum));
    for (v, ts) in [(5, 0), (20, 10), (1, 40)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    // [0,5) and [10,30) apart; [40,41) apart.
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 5), 4), r(e("a", 20), 29), r(e("a", 1), 40)]);
}

#[test]
fn count_trigger_states_merge_with_sessions() {
    let mut h = harness(|k| {
        k.window(EventTimeSessionWindows::with_gap(ms(10))).trigger(CountTrigger::of(3)).process(list)
    });
    h.process_element(e("a", 1), 0).unwrap();
    h.process_element(e("a", 2), 20).unwrap();
    assert_eq!(h.take_records(), vec![]);
    // [10,20) touches both: counts 1 + 1 merge to 2, plus this element: 3, fires.
    h.process_element(e("a", 3), 10).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,30) 1,2,3".to_string(), 29)]);
}

#[test]
fn merging_assigners_need_a_merging_trigger() {
    #[derive(Clone)]
    struct NotMerging;
    impl<T, W: Window> Trigger<T, W> for NotMerging {
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
        fn clear(&self, _: &W, _: &mut TriggerContext<'_, ()>) {}
    }
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    env.from_collection(vec![e("a", 1)])
        .key_by(key)
        .window(EventTimeSessionWindows::with_gap(ms(10)))
        .trigger(NotMerging)
        .reduce(sum)
        .collect_to_vec();
    let err = env.execute("sessions").unwrap_err().to_string();
    assert!(err.contains("merging"), "{err}");
}

#[test]
fn invalid_assigner_parameters_fail_the_job() {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    env.from_collection(vec![e("a", 1)])
        .key_by(key)
        .window(SlidingEventTimeWindows::of(ms(10), ms(5)).with_offset_ms(5))
        .reduce(sum)
        .collect_to_vec();
    assert!(env.execute("bad").unwrap_err().to_string().contains("abs(offset) < slide"));
}

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

#[test]
fn processing_time_windows_fire_when_the_clock_reaches_their_end() {
    let mut h = harness(|k| k.window(TumblingProcessingTimeWindows::of(ms(100))).reduce(sum));
    h.set_processing_time(10).unwrap();
    h.process_element(e("a", 1), 5000).unwrap();
    h.set_processing_time(50).unwrap();
    h.process_element_without_timestamp(e("a", 2)).unwrap();
    h.set_processing_time(98).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.set_processing_time(99).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    h.set_processing_time(120).unwrap();
    h.process_element(e("a", 4), 0).unwrap();
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![], "watermarks do not fire processing-time windows");
    h.set_processing_time(250).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 4), 199)]);
}

#[test]
fn sliding_processing_time_windows_on_the_general_operator() {
    let mut h = harness(|k| k.window(SlidingProcessingTimeWindows::of(ms(100), ms(50))).reduce(sum));
    h.set_processing_time(10).unwrap();
    h.process_element(e("a", 1), 0).unwrap(); // [-50,50) and [0,100)
    h.set_processing_time(60).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 1), 49)]);
    h.process_element(e("a", 2), 0).unwrap(); // [0,100) and [50,150)
    h.set_processing_time(149).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99), r(e("a", 2), 149)]);
}

#[test]
fn processing_time_sessions() {
    let mut h = harness(|k| k.window(ProcessingTimeSessionWindows::with_gap(ms(10))).process(list));
    h.set_processing_time(100).unwrap();
    h.process_element(e("a", 1), 0).unwrap();
    h.set_processing_time(105).unwrap();
    h.process_element(e("a", 2), 0).unwrap(); // [105,115) merges with [100,110)
    h.set_processing_time(113).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.set_processing_time(114).unwrap();
    assert_eq!(h.take_records(), vec![r("a [100,115) 1,2".to_string(), 114)]);
}

#[test]
fn count_trigger_fires_every_n_elements_without_purging() {
    let mut h =
        harness(|k| k.window(TumblingEventTimeWindows::of(ms(100))).trigger(CountTrigger::of(2)).reduce(sum));
    for (v, ts) in [(1, 1), (2, 2), (4, 3)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    h.process_element(e("a", 8), 4).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 15), 99)]);
    h.process_element(e("a", 16), 5).unwrap();
    // The count trigger never fires on time; the window is cleaned up at its end.
    h.process_watermark(99).unwrap();
    h.process_element(e("a", 32), 150).unwrap();
    h.process_element(e("a", 64), 151).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 96), 199)]);
}

#[test]
fn continuous_event_time_trigger_fires_every_interval_and_at_the_end() {
    let mut h = harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(100)))
            .trigger(ContinuousEventTimeTrigger::of(ms(30)))
            .reduce(sum)
    });
    h.process_element(e("a", 1), 10).unwrap(); // first firing at 30
    h.process_watermark(29).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(30).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 1), 99)]);
    h.process_element(e("a", 2), 40).unwrap();
    h.process_watermark(60).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    // 90 and then the window's end, 99.
    h.process_watermark(99).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99), r(e("a", 3), 99)]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![]);
}

#[test]
fn continuous_processing_time_trigger_fires_every_interval_of_the_clock() {
    let mut h = harness(|k| {
        k.window(TumblingProcessingTimeWindows::of(ms(100)))
            .trigger(ContinuousProcessingTimeTrigger::of(ms(30)))
            .reduce(sum)
    });
    h.set_processing_time(10).unwrap();
    h.process_element(e("a", 1), 0).unwrap(); // first firing at 30
    h.set_processing_time(29).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.set_processing_time(30).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 1), 99)]);
    h.set_processing_time(45).unwrap();
    h.process_element(e("a", 2), 0).unwrap();
    h.set_processing_time(60).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    // 90, then the window's end at 99 (also its cleanup).
    h.set_processing_time(95).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    h.set_processing_time(99).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 99)]);
    h.set_processing_time(1000).unwrap();
    assert_eq!(h.take_records(), vec![]);
}

#[test]
fn purging_trigger_emits_only_what_arrived_since_the_last_firing() {
    let mut h = harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(100)))
            .trigger(PurgingTrigger::of(CountTrigger::of(2)))
            .process(list)
    });
    for (v, ts) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    assert_eq!(
        h.take_records(),
        vec![r("a [0,100) 1,2".to_string(), 99), r("a [0,100) 3,4".to_string(), 99)]
    );
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_records(), vec![]);
}

#[test]
fn purging_event_time_trigger_clears_contents_for_late_firings() {
    let mut h = harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(10)))
            .trigger(PurgingTrigger::of(EventTimeTrigger::create()))
            .allowed_lateness(ms(10))
            .reduce(sum)
    });
    h.process_element(e("a", 1), 1).unwrap();
    h.process_element(e("a", 2), 2).unwrap();
    h.process_watermark(9).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 3), 9)]);
    h.process_element(e("a", 4), 3).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 4), 9)]);
}

#[test]
fn end_of_stream_trigger_fires_global_windows_at_the_end() {
    let mut h =
        harness(|k| k.window(GlobalWindows::create()).trigger(EndOfStreamTrigger::create()).reduce(sum));
    for (k, v) in [("a", 1), ("b", 2), ("a", 4)] {
        h.process_element(e(k, v), 0).unwrap();
    }
    h.process_watermark(1_000_000).unwrap();
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(sorted(h.take_records()), vec![r(e("a", 5), i64::MAX), r(e("b", 2), i64::MAX)]);
}

// ---------------------------------------------------------------------------------------------
// Evictors and count windows
// ---------------------------------------------------------------------------------------------

#[test]
fn count_evictor_keeps_the_last_elements() {
    let mut h = harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(100))).evictor(CountEvictor::of(2)).process(list)
    });
    for (v, ts) in [(1, 10), (2, 20), (3, 30)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    h.process_watermark(99).unwrap();
    assert_eq!(h.take_records(), vec![r("a [0,100) 2,3".to_string(), 99)]);
}

#[test]
fn time_evictor_keeps_elements_close_to_the_latest() {
    let mut h = harness(|k| {
        k.window(TumblingEventTimeWindows::of(ms(100))).evictor(TimeEvictor::of(ms(15))).reduce(sum)
    });
    for (v, ts) in [(1, 10), (2, 30), (4, 15), (8, 20)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    // Latest 30, cutoff 15: keeps ts 30 and 20.
    h.process_watermark(99).unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 10), 99)]);
}

#[test]
fn evict_after_changes_what_later_firings_see() {
    let mut h = harness(|k| {
        k.window(GlobalWindows::create())
            .trigger(CountTrigger::of(2))
            .evictor(CountEvictor::of_after(1))
            .process(
                |key: &String,
                 _: &mut WindowContext<_, GlobalWindow>,
                 els: &[E],
                 out: &mut Collector<String>| {
                    out.collect(format!("{key}: {:?}", els.iter().map(|e| e.1).collect::<Vec<_>>()));
                    Ok(())
                },
            )
    });
    for v in 1..=4 {
        h.process_element(e("a", v), v).unwrap();
    }
    assert_eq!(
        h.take_records(),
        vec![r("a: [1, 2]".to_string(), i64::MAX), r("a: [2, 3, 4]".to_string(), i64::MAX)]
    );
}

#[test]
fn count_window_fires_and_purges_every_n_elements() {
    let mut h = harness(|k| k.count_window(3).reduce(sum));
    for v in 1..=7 {
        h.process_element(e("a", v), v).unwrap();
        h.process_element(e("b", 100 * v), 0).unwrap();
    }
    h.process_watermark(i64::MAX).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        sorted(h.take_records()),
        vec![
            r(e("a", 1 + 2 + 3), i64::MAX),
            r(e("a", 4 + 5 + 6), i64::MAX),
            r(e("b", 100 + 200 + 300), i64::MAX),
            r(e("b", 400 + 500 + 600), i64::MAX),
        ]
    );
}

#[test]
fn count_window_with_slide_emits_the_last_n_every_slide_elements() {
    let mut h = harness(|k| k.count_window_with_slide(3, 2).reduce(sum));
    for v in 1..=7 {
        h.process_element_without_timestamp(e("a", v)).unwrap();
    }
    // After 2: [1,2]; after 4: last 3 of [1..4]; after 6: last 3 of [2,3,4,5,6].
    assert_eq!(
        h.take_records(),
        vec![r(e("a", 3), i64::MAX), r(e("a", 2 + 3 + 4), i64::MAX), r(e("a", 4 + 5 + 6), i64::MAX)]
    );
}

// ---------------------------------------------------------------------------------------------
// BATCH mode
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_mode_fires_event_time_windows_at_the_end() {
    let mut h = OneInputHarness::build_with(RuntimeMode::Batch, |s: DataStream<E>| {
        s.key_by(key).window(TumblingEventTimeWindows::of(ms(10))).reduce(sum)
    })
    .unwrap();
    for (v, ts) in [(1, 15), (2, 3), (4, 12), (8, 9)] {
        h.process_element(e("a", v), ts).unwrap();
    }
    assert_eq!(h.take_records(), vec![]);
    h.process_watermark(i64::MAX).unwrap();
    h.end_input().unwrap();
    assert_eq!(h.take_records(), vec![r(e("a", 10), 9), r(e("a", 5), 19)]);
}

#[test]
fn batch_mode_fires_processing_time_windows_at_the_end() {
    let mut fast = OneInputHarness::build_with(RuntimeMode::Batch, |s: DataStream<E>| {
        s.key_by(key).window(TumblingProcessingTimeWindows::of(ms(100))).reduce(sum)
    })
    .unwrap();
    let mut general = OneInputHarness::build_with(RuntimeMode::Batch, |s: DataStream<E>| {
        s.key_by(key).window(TumblingProcessingTimeWindows::of(ms(100))).process(list)
    })
    .unwrap();
    for (now, v) in [(10, 1), (150, 2), (160, 4)] {
        fast.set_processing_time(now).unwrap();
        general.set_processing_time(now).unwrap();
        fast.process_element(e("a", v), 0).unwrap();
        general.process_element(e("a", v), 0).unwrap();
    }
    fast.set_processing_time(1000).unwrap();
    general.set_processing_time(1000).unwrap();
    assert_eq!(fast.take_records(), vec![], "no firing on the clock in BATCH mode");
    assert_eq!(general.take_records(), vec![]);
    fast.process_watermark(i64::MAX).unwrap();
    general.process_watermark(i64::MAX).unwrap();
    fast.end_input().unwrap();
    general.end_input().unwrap();
    assert_eq!(fast.take_records(), vec![r(e("a", 1), 99), r(e("a", 6), 199)]);
    assert_eq!(
        general.take_records(),
        vec![r("a [0,100) 1".to_string(), 99), r("a [100,200) 2,4".to_string(), 199)]
    );
}

#[test]
fn batch_mode_ignores_timers_registered_at_the_end() {
    // In BATCH mode the continuous trigger fires its pending timer and the window's end, but
    // the timers it registers while firing are ignored (Flink's quiesced timer service).
    let mut h = OneInputHarness::build_with(RuntimeMode::Batch, |s: DataStream<E>| {
        s.key_by(key)
            .window(TumblingEventTimeWindows::of(ms(100)))
            .trigger(ContinuousEventTimeTrigger::of(ms(30)))
            .reduce(sum)
    })
    .unwrap();
    h.process_element(e("a", 1), 10).unwrap();
    h.process_watermark(i64::MAX).unwrap();
    // Timers at 30 and 99; the one at 60 registered by the firing at 30 is ignored.
    assert_eq!(h.take_records(), vec![r(e("a", 1), 99), r(e("a", 1), 99)]);
}

// ---------------------------------------------------------------------------------------------
// Whole jobs
// ---------------------------------------------------------------------------------------------

fn timestamped(
    env: &StreamExecutionEnvironment,
    data: Vec<(String, i64, i64)>,
) -> DataStream<(String, i64, i64)> {
    // Out of order by up to the whole input: no element is late, whenever watermarks come.
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(3600))
        .with_timestamp_assigner(|r: &(String, i64, i64), _| r.1);
    env.from_collection(data).assign_timestamps_and_watermarks(strategy)
}

/// Replaces the second field by the record's timestamp.
#[derive(Clone)]
struct WithTimestamp;

impl ProcessFunction<(String, i64, i64), (String, i64, i64)> for WithTimestamp {
    fn process_element(
        &mut self,
        v: (String, i64, i64),
        ctx: &mut Context,
        out: &mut Collector<(String, i64, i64)>,
    ) -> Result<()> {
        out.collect((v.0, ctx.timestamp().unwrap_or(NO_TIMESTAMP), v.2));
        Ok(())
    }
}

/// (key, ts, value) readings: 20 keys, timestamps 0..2000 in a shuffled order.
fn readings() -> Vec<(String, i64, i64)> {
    let mut rng = Rng(7);
    (0..2000).map(|i| (format!("k{}", rng.below(20)), (i * 7919) % 2000, rng.below(100) as i64)).collect()
}

/// Sums per key and window `[start, start + size)`, windows starting at multiples of `slide`.
fn expected_sums(data: &[(String, i64, i64)], size: i64, slide: i64) -> Vec<(String, i64, i64)> {
    let mut sums: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (k, ts, v) in data {
        for start in (ts - size + 1..=*ts).filter(|s| s.rem_euclid(slide) == 0) {
            *sums.entry((k.clone(), start)).or_default() += v;
        }
    }
    sums.into_iter().map(|((k, start), v)| (k, start + size - 1, v)).collect()
}

#[test]
fn keyed_windows_end_to_end_in_both_modes() {
    let data = readings();
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        env.set_runtime_mode(mode);
        let input = timestamped(&env, data.clone());
        let keyed = input.key_by(|r: &(String, i64, i64)| r.0.clone());
        let tumbling = keyed
            .window(TumblingEventTimeWindows::of(ms(100)))
            .reduce(|a, b| (a.0, 0, a.2 + b.2))
            .process(WithTimestamp)
            .collect_to_vec();
        let sliding = keyed
            .window(SlidingEventTimeWindows::of(ms(100), ms(30)))
            .process(
                |k: &String,
                 ctx: &mut WindowContext<String, TimeWindow>,
                 els: &[(String, i64, i64)],
                 out: &mut Collector<(String, i64, i64)>| {
                    out.collect((k.clone(), ctx.window().max_timestamp(), els.iter().map(|e| e.2).sum()));
                    Ok(())
                },
            )
            .collect_to_vec();
        let sliding_agg = keyed
            .window(SlidingEventTimeWindows::of(ms(100), ms(30)))
            .reduce(|a, b| (a.0, 0, a.2 + b.2))
            .process(WithTimestamp)
            .collect_to_vec();
        env.execute("windows").unwrap();
        assert_eq!(sorted(tumbling.take()), expected_sums(&data, 100, 100), "{mode:?}");
        assert_eq!(sorted(sliding.take()), expected_sums(&data, 100, 30), "{mode:?}");
        assert_eq!(sorted(sliding_agg.take()), expected_sums(&data, 100, 30), "{mode:?}");
    }
}

#[test]
fn sessions_end_to_end_in_both_modes() {
    // Per key, values at timestamps with gaps; sessions of gap 10.
    let data: Vec<(String, i64, i64)> = vec![
        ("a".into(), 0, 1),
        ("a".into(), 8, 2),
        ("b".into(), 3, 100),
        ("a".into(), 30, 4),
        ("a".into(), 17, 8),   // joins [0,18) -> [0,27)
        ("b".into(), 13, 200), // [3,13) touches [13,23)
        ("a".into(), 50, 16),
    ];
    let expected = vec![
        ("a".to_string(), 26, 11),
        ("a".to_string(), 39, 4),
        ("a".to_string(), 59, 16),
        ("b".to_string(), 22, 300),
    ];
    for mode in [RuntimeMode::Streaming, RuntimeMode::Batch] {
        let env = StreamExecutionEnvironment::local().with_parallelism(2);
        env.set_runtime_mode(mode);
        let strategy = WatermarkStrategy::for_bounded_out_of_orderness(ms(100))
            .with_timestamp_assigner(|r: &(String, i64, i64), _| r.1);
        let out = env
            .from_collection(data.clone())
            .assign_timestamps_and_watermarks(strategy)
            .key_by(|r: &(String, i64, i64)| r.0.clone())
            .window(EventTimeSessionWindows::with_gap(ms(10)))
            .reduce_with(
                |a, b| (a.0, 0, a.2 + b.2),
                |k: &String,
                 ctx: &mut WindowContext<String, TimeWindow>,
                 v: &[(String, i64, i64)],
                 out: &mut Collector<(String, i64, i64)>| {
                    out.collect((k.clone(), ctx.window().max_timestamp(), v[0].2));
                    Ok(())
                },
            )
            .execute_and_collect()
            .unwrap();
        assert_eq!(sorted(out), expected, "{mode:?}");
    }
}

#[test]
fn window_all_runs_one_operator_over_all_elements() {
    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    let data: Vec<(String, i64, i64)> = (0..100).map(|i| (format!("k{}", i % 7), i * 3, i)).collect();
    let out = timestamped(&env, data.clone())
        .window_all(TumblingEventTimeWindows::of(ms(50)))
        .process(
            |ctx: &mut AllWindowContext<TimeWindow>,
             els: &[(String, i64, i64)],
             out: &mut Collector<(i64, usize, i64)>| {
                out.collect((ctx.window().start(), els.len(), els.iter().map(|e| e.2).sum()));
                Ok(())
            },
        )
        .execute_and_collect()
        .unwrap();
    let mut expected: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for (_, ts, v) in &data {
        let x = expected.entry(ts / 50 * 50).or_default();
        x.0 += 1;
        x.1 += v;
    }
    let expected: Vec<_> = expected.into_iter().map(|(s, (n, v))| (s, n, v)).collect();
    assert_eq!(sorted(out), expected);

    let env = StreamExecutionEnvironment::local().with_parallelism(2);
    let sums = timestamped(&env, data.clone())
        .window_all(SlidingEventTimeWindows::of(ms(100), ms(50)))
        .aggregate(SumThird)
        .execute_and_collect()
        .unwrap();
    let all: Vec<_> =
        expected_sums(&data.iter().map(|(_, t, v)| (String::new(), *t, *v)).collect::<Vec<_>>(), 100, 50)
            .into_iter()
            .map(|(_, _, v)| v)
            .collect();
    assert_eq!(sorted(sums), sorted(all));
}

#[derive(Clone)]
struct SumThird;

impl AggregateFunction<(String, i64, i64), i64, i64> for SumThird {
    fn create_accumulator(&self) -> i64 {
        0
    }
    fn add(&self, acc: &mut i64, v: (String, i64, i64)) {
        *acc += v.2;
    }
    fn get_result(&self, acc: &i64) -> i64 {
        *acc
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
}

#[test]
fn count_window_all_and_sum() {
    let env = StreamExecutionEnvironment::local().with_parallelism(3);
    let out = env
        .from_collection((1..=10).map(|i| e("x", i)).collect::<Vec<_>>())
        .count_window_all(3)
        .sum(|e: &mut E| &mut e.1)
        .execute_and_collect()
        .unwrap();
    assert_eq!(sorted(out), vec![e("x", 6), e("x", 15), e("x", 24)]);
}

#[test]
fn operator_names_follow_flink() {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    let s = env.from_collection(vec![e("a", 1)]).key_by(key);
    s.window(TumblingEventTimeWindows::of(ms(1000))).reduce(sum).collect_to_vec();
    s.count_window_with_slide(5, 2).process(
        |_: &String, _: &mut WindowContext<_, GlobalWindow>, _: &[E], _: &mut Collector<i64>| Ok(()),
    );
    let plan = env.execution_plan().unwrap();
    assert!(
        plan.contains("Window(TumblingEventTimeWindows(1000), EventTimeTrigger, ReduceFunction)"),
        "{plan}"
    );
    assert!(
        plan.contains("Window(GlobalWindows(), CountTrigger(2), CountEvictor(5), ProcessWindowFunction)"),
        "{plan}"
    );
}

// ---------------------------------------------------------------------------------------------
// Pane sharing against a naive model of Flink's semantics
// ---------------------------------------------------------------------------------------------

/// A small deterministic random generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Flink's window operator with `EventTimeTrigger` and a sum, written out naively: one sum
/// per key and window, windows found by scanning every candidate start.
struct Naive {
    size: i64,
    slide: i64,
    offset: i64,
    lateness: i64,
    watermark: i64,
    windows: BTreeMap<(String, i64), i64>,
    out: Vec<(E, Option<i64>)>,
    late: Vec<(E, Option<i64>)>,
}

impl Naive {
    fn element(&mut self, k: &str, v: i64, ts: i64) {
        let mut accepted = false;
        for start in (ts - self.size + 1..=ts).filter(|s| (s - self.offset).rem_euclid(self.slide) == 0) {
            let max_ts = start + self.size - 1;
            if max_ts + self.lateness <= self.watermark {
                continue;
            }
            accepted = true;
            let s = self.windows.entry((k.to_string(), start)).or_default();
            *s += v;
            if max_ts <= self.watermark {
                self.out.push((e(k, *s), Some(max_ts)));
            }
        }
        if !accepted && ts + self.lateness <= self.watermark {
            self.late.push((e(k, v), Some(ts)));
        }
    }

    fn watermark(&mut self, wm: i64) {
        for ((k, start), s) in &self.windows {
            let max_ts = start + self.size - 1;
            if max_ts > self.watermark && max_ts <= wm {
                self.out.push((e(k, *s), Some(max_ts)));
            }
        }
        self.watermark = wm;
        let (size, lateness) = (self.size, self.lateness);
        self.windows.retain(|(_, start), _| start + size - 1 + lateness > wm);
    }
}

/// Runs both and returns (results, late elements, results fired by late elements).
fn run_against_naive(
    seed: u64,
    size: i64,
    slide: i64,
    offset: i64,
    lateness: i64,
    general: bool,
) -> [usize; 3] {
    let late = OutputTag::<E>::new("late");
    let t = late.clone();
    let assigner = SlidingEventTimeWindows::of(ms(size as u64), ms(slide as u64)).with_offset_ms(offset);
    let mut h = harness(move |k| {
        let w = k.window(assigner).allowed_lateness(ms(lateness as u64)).side_output_late_data(&t);
        if general {
            w.trigger(SameAsEventTime).reduce(sum)
        } else {
            w.reduce(sum)
        }
    });
    let mut naive = Naive {
        size,
        slide,
        offset,
        lateness,
        watermark: i64::MIN,
        windows: BTreeMap::new(),
        out: Vec::new(),
        late: Vec::new(),
    };
    let mut rng = Rng(seed);
    let mut front = -50i64;
    let mut wm = i64::MIN;
    let mut counts = [0; 3];
    for step in 0..600 {
        let is_watermark = rng.below(6) == 0;
        if is_watermark {
            // The watermark trails the latest timestamp by a random amount.
            let next = front - rng.below(20) as i64;
            if next > wm {
                wm = next;
                h.process_watermark(wm).unwrap();
                naive.watermark(wm);
            }
        } else {
            front += rng.below(4) as i64;
            let ts = front - rng.below(30) as i64;
            let k = ["a", "b", "c"][rng.below(3) as usize];
            let v = 1 + rng.below(1000) as i64;
            h.process_element(e(k, v), ts).unwrap();
            naive.element(k, v, ts);
        }
        // After every step, the same results (in any order within the step).
        let got = sorted(h.take_records());
        let expected = sorted(std::mem::take(&mut naive.out));
        assert_eq!(
            got, expected,
            "seed {seed} size {size} slide {slide} offset {offset} L {lateness} step {step}"
        );
        let late_data = h.take_side_output(&late);
        assert_eq!(late_data, std::mem::take(&mut naive.late), "late data at step {step}");
        counts[0] += got.len();
        counts[1] += late_data.len();
        // Fired by an element, for a window whose end the watermark had passed.
        if !is_watermark {
            counts[2] += got.iter().filter(|(_, ts)| ts.is_some_and(|t| t <= wm)).count();
        }
    }
    h.process_watermark(i64::MAX).unwrap();
    naive.watermark(i64::MAX);
    assert_eq!(sorted(h.take_records()), sorted(std::mem::take(&mut naive.out)), "at the end");
    counts
}

#[test]
fn pane_sharing_matches_the_naive_computation_on_random_input() {
    let shapes =
        [(10, 10, 0), (10, 5, 0), (10, 3, 0), (10, 3, -2), (12, 4, 1), (7, 3, 2), (3, 7, 0), (20, 1, 0)];
    let mut totals = [0; 3];
    for (i, &(size, slide, offset)) in shapes.iter().enumerate() {
        for lateness in [0, 7, 25] {
            for general in [false, true] {
                let c = run_against_naive(
                    i as u64 * 31 + lateness as u64,
                    size,
                    slide,
                    offset,
                    lateness,
                    general,
                );
                totals.iter_mut().zip(c).for_each(|(t, c)| *t += c);
            }
        }
    }
    // The input exercises every path: results, late data, and re-firings of fired windows.
    assert!(totals.iter().all(|&c| c > 500), "{totals:?}");
}

#[test]
fn growing_sessions_keep_timers_proportional_to_open_windows_not_to_records() {
    let ctx = operator_context();
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut out = Emitter::new(Box::new(Recorded(records.clone())), 16);
    let spec = WindowSpec {
        key,
        assigner: EventTimeSessionWindows::with_gap(ms(1_000)),
        trigger: EventTimeTrigger,
        lateness: 0,
        late_tag: None,
    };
    let mut op =
        WindowOperator::new(spec, Incremental { agg: ReduceAgg(sum), wf: PassThrough }, &ctx).unwrap();
    // Ten keys whose sessions grow by one record every millisecond, with no watermark: every
    // record moves its session's end and its timer, leaving the old timer behind.
    for round in 0..10_000i64 {
        let b = batch(&[("a", 1, round), ("b", 1, round), ("c", 1, round), ("d", 1, round), ("e", 1, round)]);
        op.process_batch(b, &mut out).unwrap();
    }
    assert_eq!(op.open_windows(), 5);
    assert!(op.timer_entries() <= 2 * 4096, "{} timer entries for 5 sessions", op.timer_entries());
    op.process_watermark(i64::MAX, &mut out).unwrap();
    out.flush_buffer().unwrap();
    let mut fired = std::mem::take(&mut *records.lock().unwrap());
    fired.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
    // One session per key covering [0, 9_999 + 1_000): fired once, with all 10 000 records.
    assert_eq!(fired.len(), 5);
    assert!(fired.iter().all(|(r, ts)| r.1 == 10_000 && *ts == 10_998), "{fired:?}");
}
