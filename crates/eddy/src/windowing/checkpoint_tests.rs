//! Window operators through a checkpoint: snapshot part way, restore into fresh operators
//! (at the same parallelism, or at another one out of the old subtasks' snapshots), feed the
//! rest; the output must equal the uninterrupted run's.
//!
//! The input is fixed and mildly out of order, with watermarks that leave some elements late,
//! so lateness, refiring and cleanup cross the checkpoint too. Each scenario is cut at many
//! points.

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use eddy_core::element::{CheckpointBarrier, CheckpointType};
use eddy_core::keygroup::assign_key_to_operator;
use eddy_core::{Batch, Data, Result, NO_TIMESTAMP};
use eddy_runtime::checkpoint::{ChainSnapshot, OperatorInit, RestoredState};
use eddy_runtime::graph::{downcast_output, upcast_output, NodeKind};
use eddy_runtime::time::{ClockRef, ManualClock};
use eddy_runtime::{OperatorContext, Output};

use crate::joins::TaggedUnion;
use crate::prelude::*;

const MAX_PARALLELISM: usize = 128;

type E = (String, i64);
type Records<O> = Vec<(O, Option<i64>)>;
type Pipeline<I, O> = fn(DataStream<I>) -> DataStream<O>;

struct Recorder<O>(Arc<Mutex<Records<O>>>);

impl<O: Data> Output<O> for Recorder<O> {
    fn emit_batch(&mut self, batch: Batch<O>) -> Result<()> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.extend(batch.into_iter_with_timestamps().map(|(r, ts)| (r, (ts != NO_TIMESTAMP).then_some(ts))));
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

/// One subtask of the last operator of a pipeline, driven by hand.
struct Subtask<I, O> {
    op: Box<dyn Output<I>>,
    out: Arc<Mutex<Records<O>>>,
    clock: Arc<ManualClock>,
}

impl<I: Data + Sync, O: Data> Subtask<I, O> {
    fn build(
        pipeline: Pipeline<I, O>,
        index: usize,
        parallelism: usize,
        restored: Option<RestoredState>,
    ) -> Self {
        let env = StreamExecutionEnvironment::local().with_parallelism(1);
        let result = pipeline(env.from_collection(Vec::<I>::new()));
        let inner = env.inner.borrow();
        let node = &inner.graph.nodes[result.ports.last().expect("an operator").node];
        let NodeKind::OneInput(factory) = &node.kind else {
            panic!("'{}' is not a one-input operator", node.name)
        };
        let clock = Arc::new(ManualClock::new(0));
        let ctx = OperatorContext {
            job_name: "checkpoint test".into(),
            operator_name: node.name.clone(),
            subtask_index: index,
            parallelism,
            max_parallelism: MAX_PARALLELISM,
            attempt: 0,
            runtime_mode: eddy_core::config::RuntimeMode::Streaming,
            batch_size: 1024,
            clock: ClockRef(clock.clone()),
            auto_watermark_interval: 200,
            checkpointing: true,
            state_backend: Default::default(),
            metrics: Default::default(),
        };
        let out = Arc::new(Mutex::new(Vec::new()));
        let main = upcast_output::<O>(Box::new(Recorder(out.clone())));
        let mut init = OperatorInit::fresh(node.name.as_str());
        init.restored = restored;
        let op = factory.create_with_state(&ctx, main, Vec::new(), init).unwrap();
        Subtask { op: downcast_output::<I>(op).unwrap(), out, clock }
    }

    fn step(&mut self, step: &Step<I>) {
        match step {
            Step::Element(v, ts) => {
                let mut b = Batch::new();
                b.push_with_timestamp(v.clone(), *ts);
                self.op.emit_batch(b).unwrap();
            }
            Step::Watermark(w) => self.op.emit_watermark(*w).unwrap(),
            Step::Clock(t) => self.set_clock(*t),
        }
    }

    fn set_clock(&mut self, t: i64) {
        self.clock.set(t);
        if self.op.next_processing_time().is_some_and(|due| due <= t) {
            self.op.on_processing_time(t).unwrap();
        }
    }

    fn snapshot(&mut self) -> Vec<u8> {
        let barrier = CheckpointBarrier { id: 1, timestamp: 0, kind: CheckpointType::Checkpoint };
        let mut snapshot = ChainSnapshot::new(1);
        self.op.emit_barrier(&barrier, &mut snapshot).unwrap();
        let snapshot = snapshot.complete().unwrap();
        snapshot.operators.into_iter().next().and_then(|s| s.state).expect("window operators have state")
    }

    fn records(&mut self) -> Records<O> {
        std::mem::take(&mut *self.out.lock().unwrap())
    }
}

#[derive(Clone, Debug)]
enum Step<I> {
    Element(I, i64),
    Watermark(i64),
    /// Processing time moves to this value.
    Clock(i64),
}

fn last_clock<I>(steps: &[Step<I>]) -> i64 {
    steps.iter().rev().find_map(|s| if let Step::Clock(t) = s { Some(*t) } else { None }).unwrap_or(0)
}

/// Runs `steps` on `from` subtasks, snapshots them all after `steps[..cut]`, restores `to`
/// subtasks out of the snapshots, runs the rest there and returns everything emitted.
/// Records go to the subtask owning their key; watermarks and time go to all.
fn run_cut<I: Data + Sync, O: Data, K: Hash>(
    pipeline: Pipeline<I, O>,
    key: fn(&I) -> K,
    steps: &[Step<I>],
    cut: usize,
    (from, to): (usize, usize),
) -> Records<O> {
    let run = |subtasks: &mut Vec<Subtask<I, O>>, steps: &[Step<I>], out: &mut Records<O>| {
        let p = subtasks.len();
        for s in steps {
            match s {
                Step::Element(v, _) => subtasks[assign_key_to_operator(&key(v), MAX_PARALLELISM, p)].step(s),
                _ => subtasks.iter_mut().for_each(|t| t.step(s)),
            }
        }
        subtasks.iter_mut().for_each(|t| out.extend(t.records()));
    };
    let mut out = Vec::new();
    let mut before: Vec<_> = (0..from).map(|i| Subtask::build(pipeline, i, from, None)).collect();
    run(&mut before, &steps[..cut], &mut out);
    let states: Vec<(usize, Vec<u8>)> = before.iter_mut().map(|t| t.snapshot()).enumerate().collect();
    let restored = |subtask| RestoredState {
        states: states.clone(),
        old_parallelism: from,
        subtask,
        parallelism: to,
        max_parallelism: MAX_PARALLELISM,
        operator_name: "window under test".into(),
    };
    let mut after: Vec<_> = (0..to).map(|i| Subtask::build(pipeline, i, to, Some(restored(i)))).collect();
    // Wall-clock time goes on across the restart.
    let now = last_clock(&steps[..cut]);
    after.iter_mut().for_each(|t| t.set_clock(now));
    run(&mut after, &steps[cut..], &mut out);
    out
}

fn uninterrupted<I: Data + Sync, O: Data>(pipeline: Pipeline<I, O>, steps: &[Step<I>]) -> Records<O> {
    let mut t = Subtask::build(pipeline, 0, 1, None);
    steps.iter().for_each(|s| t.step(s));
    t.records()
}

fn sorted<T: PartialOrd>(mut v: Vec<T>) -> Vec<T> {
    v.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    v
}

/// Checks every cut: restored at parallelism 1 the output is the uninterrupted one, in order
/// when `ordered` (the general operator keeps its timers' order); rescaled from 2 subtasks to
/// 3 and to 1, the union of the outputs is the same multiset.
fn check<I: Data + Sync, O: Data + PartialOrd + std::fmt::Debug, K: Hash>(
    pipeline: Pipeline<I, O>,
    key: fn(&I) -> K,
    steps: &[Step<I>],
    ordered: bool,
) {
    let whole = uninterrupted(pipeline, steps);
    assert!(whole.len() > 5, "the scenario emits something: {whole:?}");
    for cut in (1..steps.len()).step_by(3) {
        let restored = run_cut(pipeline, key, steps, cut, (1, 1));
        if ordered {
            assert_eq!(restored, whole, "restored after step {cut}");
        } else {
            assert_eq!(sorted(restored), sorted(whole.clone()), "restored after step {cut}");
        }
        for scale in [(2, 3), (2, 1)] {
            let rescaled = run_cut(pipeline, key, steps, cut, scale);
            assert_eq!(sorted(rescaled), sorted(whole.clone()), "rescaled {scale:?} after step {cut}");
        }
    }
}

const KEYS: [&str; 7] = ["a", "b", "c", "d", "e", "f", "g"];

/// Records of seven keys in bursts of three, timestamps rising by about 3 ms with up to 20 ms
/// of disorder, and a watermark 4 ms behind the largest timestamp every 4 records: 26 of the
/// 90 records are behind the watermark, some within the allowed lateness, some not.
fn event_time_steps() -> Vec<Step<E>> {
    let mut steps = Vec::new();
    let mut max_ts = i64::MIN;
    for i in 0..90i64 {
        let ts = i * 3 + (i * 5 % 11) * 2 - 10;
        let key = KEYS[(i / 3 * 3 % 7) as usize];
        steps.push(Step::Element((key.to_string(), i + 1), ts));
        max_ts = max_ts.max(ts);
        if i % 4 == 3 {
            steps.push(Step::Watermark(max_ts - 4));
        }
    }
    steps.push(Step::Watermark(i64::MAX));
    steps
}

fn key(e: &E) -> String {
    e.0.clone()
}

fn keyed(s: DataStream<E>) -> KeyedStream<E, String, fn(&E) -> String> {
    s.key_by(key as fn(&E) -> String)
}

fn sum(a: E, b: E) -> E {
    (a.0, a.1 + b.1)
}

/// `key [start, end) values` from all elements of a window.
fn list(
    k: &String,
    ctx: &mut WindowContext<String, TimeWindow>,
    elements: &[E],
    out: &mut Collector<String>,
) -> Result<()> {
    let vs: Vec<String> = elements.iter().map(|e| e.1.to_string()).collect();
    out.collect(format!("{k} [{},{}) {}", ctx.window().start(), ctx.window().end(), vs.join(",")));
    Ok(())
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn tumbling_windows_with_a_process_function() {
    fn pipeline(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(10))).allowed_lateness(ms(5)).process(list)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn sliding_windows_with_a_process_function() {
    fn pipeline(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(SlidingEventTimeWindows::of(ms(12), ms(5))).process(list)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn merging_session_windows() {
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(EventTimeSessionWindows::with_gap(ms(8))).allowed_lateness(ms(6)).reduce(sum)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn session_windows_with_a_count_trigger_merge_trigger_state() {
    fn pipeline(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(EventTimeSessionWindows::with_gap(ms(10))).trigger(CountTrigger::of(3)).process(list)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn count_trigger_state() {
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(30))).trigger(CountTrigger::of(2)).reduce(sum)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn count_windows_with_an_evictor() {
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).count_window_with_slide(3, 2).reduce(sum)
    }
    check(pipeline, key, &event_time_steps(), true);
}

#[test]
fn time_windows_with_an_evictor() {
    fn pipeline(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(20))).evictor(TimeEvictor::of(ms(6))).process(list)
    }
    check(pipeline, key, &event_time_steps(), true);
}

/// Sum and count, for an average.
#[derive(Clone)]
struct Average;

impl AggregateFunction<E, (i64, i64), (i64, i64)> for Average {
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, i64), v: E) {
        acc.0 += v.1;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> (i64, i64) {
        *acc
    }
    fn merge(&self, acc: &mut (i64, i64), o: (i64, i64)) {
        acc.0 += o.0;
        acc.1 += o.1;
    }
}

#[test]
fn aligned_sliding_aggregate_with_lateness() {
    fn pipeline(s: DataStream<E>) -> DataStream<(String, i64, i64, i64)> {
        keyed(s).window(SlidingEventTimeWindows::of(ms(10), ms(3))).allowed_lateness(ms(7)).aggregate_with(
            Average,
            |k: &String,
             ctx: &mut WindowContext<String, TimeWindow>,
             v: &[(i64, i64)],
             out: &mut Collector<_>| {
                out.collect((k.clone(), ctx.window().start(), v[0].0, v[0].1));
                Ok(())
            },
        )
    }
    check(pipeline, key, &event_time_steps(), false);
}

#[test]
fn aligned_tumbling_reduce() {
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(10))).reduce(sum)
    }
    check(pipeline, key, &event_time_steps(), false);
}

/// Records every few ms of processing time (their timestamps do not matter).
fn processing_time_steps() -> Vec<Step<E>> {
    let mut steps = Vec::new();
    for i in 0..80i64 {
        if i % 3 == 0 {
            steps.push(Step::Clock(i * 2));
        }
        steps.push(Step::Element((KEYS[(i * 3 % 7) as usize].to_string(), i + 1), i));
    }
    steps.push(Step::Clock(1_000));
    steps
}

#[test]
fn aligned_processing_time_windows() {
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(TumblingProcessingTimeWindows::of(ms(10))).reduce(sum)
    }
    check(pipeline, key, &processing_time_steps(), false);
}

#[test]
fn processing_time_sessions() {
    fn pipeline(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(ProcessingTimeSessionWindows::with_gap(ms(7))).process(list)
    }
    check(pipeline, key, &processing_time_steps(), true);
}

type Tagged = TaggedUnion<E, E>;

#[test]
fn window_join() {
    fn pipeline(s: DataStream<Tagged>) -> DataStream<(String, i64, i64)> {
        let either = s.map(|t: Tagged| match t {
            TaggedUnion::One(e) | TaggedUnion::Two(e) => e,
        });
        either
            .join(&either)
            .where_(key)
            .equal_to(key)
            .window(TumblingEventTimeWindows::of(ms(15)))
            .apply(|a: &E, b: &E| (a.0.clone(), a.1, b.1))
    }
    fn tagged_key(t: &Tagged) -> String {
        match t {
            TaggedUnion::One(e) | TaggedUnion::Two(e) => e.0.clone(),
        }
    }
    let steps: Vec<Step<Tagged>> = event_time_steps()
        .into_iter()
        .map(|s| match s {
            Step::Element(e, ts) if e.1 % 2 == 0 => Step::Element(TaggedUnion::One(e), ts),
            Step::Element(e, ts) => Step::Element(TaggedUnion::Two(e), ts),
            Step::Watermark(w) => Step::Watermark(w),
            Step::Clock(t) => Step::Clock(t),
        })
        .collect();
    check(pipeline, tagged_key, &steps, true);
}

#[test]
fn subtasks_that_reached_different_event_times_merge_without_firing_twice() {
    // Subtask 0 has fired the windows ending by 30, subtask 1 only those ending by 20, when
    // both are restored into one: sliding windows share panes, so the pending window ends
    // differ per key and the restored time of each key's subtask must decide.
    fn pipeline(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(SlidingEventTimeWindows::of(ms(20), ms(10))).allowed_lateness(ms(15)).reduce(sum)
    }
    let owner = |k: &str| assign_key_to_operator(&k.to_string(), MAX_PARALLELISM, 2);
    let (k0, k1) =
        (KEYS.iter().find(|k| owner(k) == 0).unwrap(), KEYS.iter().find(|k| owner(k) == 1).unwrap());
    let mut old: Vec<_> = (0..2).map(|i| Subtask::build(pipeline, i, 2, None)).collect();
    let mut whole = [Subtask::build(pipeline, 0, 1, None), Subtask::build(pipeline, 0, 1, None)];
    let feed =
        |t: &mut Subtask<E, E>, k: &str, v: i64, ts: i64| t.step(&Step::Element((k.to_string(), v), ts));
    for (i, k) in [(0, k0), (1, k1)] {
        for (v, ts) in [(1, 5), (2, 15), (4, 25)] {
            feed(&mut old[i], k, v, ts);
            feed(&mut whole[i], k, v, ts);
        }
    }
    old[0].step(&Step::Watermark(29));
    whole[0].step(&Step::Watermark(29));
    old[1].step(&Step::Watermark(19));
    whole[1].step(&Step::Watermark(19));
    let mut before: Vec<_> = old.iter_mut().flat_map(|t| t.records()).collect();
    let states: Vec<(usize, Vec<u8>)> = old.iter_mut().map(|t| t.snapshot()).enumerate().collect();
    let restored = RestoredState {
        states,
        old_parallelism: 2,
        subtask: 0,
        parallelism: 1,
        max_parallelism: MAX_PARALLELISM,
        operator_name: "merged".into(),
    };
    let mut merged = Subtask::build(pipeline, 0, 1, Some(restored));
    // Subtask 0's key receives a late element for [10, 30), which it had fired: it fires again
    // at once, as it would have before the restore. Then event time moves on for both.
    for t in [&mut merged, &mut whole[0]] {
        feed(t, k0, 8, 12);
    }
    for step in [Step::Watermark(35), Step::Watermark(i64::MAX)] {
        merged.step(&step);
        whole.iter_mut().for_each(|t| t.step(&step));
    }
    before.extend(merged.records());
    let expected: Records<E> = whole.iter_mut().flat_map(|t| t.records()).collect();
    assert_eq!(sorted(before), sorted(expected));
}

#[test]
fn state_of_another_operator_kind_is_refused() {
    fn aligned(s: DataStream<E>) -> DataStream<E> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(10))).reduce(sum)
    }
    fn general(s: DataStream<E>) -> DataStream<String> {
        keyed(s).window(TumblingEventTimeWindows::of(ms(10))).process(list)
    }
    let mut t = Subtask::build(aligned, 0, 1, None);
    t.step(&Step::Element(("a".into(), 1), 1));
    let state = t.snapshot();
    let restored = RestoredState {
        states: vec![(0, state.clone())],
        old_parallelism: 1,
        subtask: 0,
        parallelism: 1,
        max_parallelism: MAX_PARALLELISM,
        operator_name: "w".into(),
    };
    let err = build_err(general, restored.clone());
    assert!(err.contains("aligned window") && err.contains("'w'"), "{err}");
    let mut corrupt = restored;
    corrupt.states[0].1.truncate(state.len() / 2);
    let err = build_err(aligned, corrupt);
    assert!(err.contains("'w'"), "{err}");
}

fn build_err<O: Data>(pipeline: Pipeline<E, O>, restored: RestoredState) -> String {
    let env = StreamExecutionEnvironment::local().with_parallelism(1);
    let result = pipeline(env.from_collection(Vec::<E>::new()));
    let inner = env.inner.borrow();
    let node = &inner.graph.nodes[result.ports.last().expect("an operator").node];
    let NodeKind::OneInput(factory) = &node.kind else { panic!("not a one-input operator") };
    let ctx = OperatorContext {
        job_name: "checkpoint test".into(),
        operator_name: node.name.clone(),
        subtask_index: 0,
        parallelism: 1,
        max_parallelism: MAX_PARALLELISM,
        attempt: 0,
        runtime_mode: eddy_core::config::RuntimeMode::Streaming,
        batch_size: 1024,
        clock: ClockRef(Arc::new(ManualClock::new(0))),
        auto_watermark_interval: 200,
        checkpointing: true,
        state_backend: Default::default(),
        metrics: Default::default(),
    };
    let main = upcast_output::<O>(Box::new(Recorder(Arc::default())));
    let mut init = OperatorInit::fresh(node.name.as_str());
    init.restored = Some(restored);
    match factory.create_with_state(&ctx, main, Vec::new(), init) {
        Ok(_) => panic!("restoring did not fail"),
        Err(e) => e.to_string(),
    }
}
