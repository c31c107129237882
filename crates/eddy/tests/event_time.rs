//! Event time: watermark strategies, watermark propagation and idleness, keyed timers and keyed
//! state, checked against Flink's documented semantics (`FLINK-SEMANTICS.md`, "Watermarks" and
//! "KeyedProcessFunction timers").
//!
//! Operator-level behaviour is driven through [`OneInputHarness`] and its manual clock. Whole
//! jobs either run on bounded inputs, or read from scripted sources that the test feeds record by
//! record while it moves a manual processing-time clock; the test then waits only for observed
//! conditions, with a bounded deadline. Every expected value is worked out by hand or with plain
//! Rust from the input (the reasoning is in the comments), never taken from a run of the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use eddy::prelude::*;
use eddy::source::{
    Boundedness, ReaderContext, ReaderStatus, Source, SourceOutput, SourceReader, SourceSplit,
    SplitAssignment, SplitEnumerator,
};
use eddy::testing::{Emitted, OneInputHarness};
use eddy_core::keygroup::assign_key_to_operator;
use eddy_runtime::time::ManualClock;
use serde::{Deserialize, Serialize};

/// Generous: every job here ends in well under a second when healthy.
const JOB_LIMIT: Duration = Duration::from_secs(30);

/// How long a test waits for something the engine should do within milliseconds (a timer that
/// becomes due once an input goes idle). Kept short so that a failing test stays fast.
const REACTION_LIMIT: Duration = Duration::from_secs(5);

/// Flink's default `pipeline.max-parallelism` for any parallelism up to 85.
const MAX_PARALLELISM: usize = 128;

fn env(parallelism: usize) -> StreamExecutionEnvironment {
    StreamExecutionEnvironment::local().with_parallelism(parallelism)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers: watermark generators, observation logs, a scripted source
// ---------------------------------------------------------------------------------------------

/// A punctuated generator: after every record, the watermark `timestamp - lag`. For an input
/// whose timestamps strictly increase, `lag = 0` is already a true promise (nothing at or before
/// `timestamp` follows) and `lag = 1` is what `for_monotonous_timestamps` would emit.
#[derive(Clone)]
struct EveryRecord {
    lag: i64,
}

impl<T> WatermarkGenerator<T> for EveryRecord {
    fn on_event(&mut self, _: &T, timestamp: i64, output: &mut WatermarkOutput) {
        output.emit_watermark(timestamp - self.lag);
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

/// `(key, event timestamp)`: the record of the job-level tests.
type Ev = (u64, i64);

/// Watermarks `timestamp - lag` after every record; timestamps from the record.
fn every_record(lag: i64) -> WatermarkStrategy<Ev> {
    WatermarkStrategy::for_generator(move || EveryRecord { lag }).with_timestamp_assigner(|e: &Ev, _| e.1)
}

/// State shared between operators and the test thread, which can wait for it to change.
struct Shared<S>(Arc<(Mutex<S>, Condvar)>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S: Clone + Default> Shared<S> {
    fn new() -> Self {
        Shared(Arc::new((Mutex::new(S::default()), Condvar::new())))
    }

    fn update(&self, f: impl FnOnce(&mut S)) {
        let (state, changed) = &*self.0;
        f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
        changed.notify_all();
    }

    fn get(&self) -> S {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `done` holds, at most `limit`; returns whether it held.
    fn wait_until(&self, limit: Duration, done: impl Fn(&S) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let (state, changed) = &*self.0;
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if done(&s) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = changed.wait_timeout(s, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// What an operator observed, in the order it observed it.
type Log<T> = Shared<Vec<T>>;

/// Feeds a [`Scripted`] source from the test thread.
struct Feed<T> {
    tx: mpsc::Sender<Option<T>>,
    polls: Shared<u64>,
}

impl<T> Feed<T> {
    fn send(&self, record: T) {
        self.tx.send(Some(record)).expect("the scripted source is still running");
    }

    /// The source ends: it emits the final watermark and the end of input.
    fn end(&self) {
        let _ = self.tx.send(None);
    }

    /// Returns once the source task has run its processing-time callbacks after this call.
    ///
    /// The task loop is `fire due timers; poll the reader; repeat`, and the reader counts the
    /// polls it starts. Poll `n + 1` may already be under way when this is called; poll `n + 2`
    /// starts after a timer check that followed the start of poll `n + 1`, hence after this call.
    fn wait_for_timers_to_run(&self) {
        let seen = self.polls.get();
        assert!(self.polls.wait_until(JOB_LIMIT, |n| *n >= seen + 2), "the scripted source stopped polling");
    }
}

/// An unbounded source that emits what the test [`Feed`]s it, and ends when told (or when the
/// feed is dropped, so a failing test does not leave its job running). One subtask only.
struct Scripted<T> {
    rx: Mutex<Option<mpsc::Receiver<Option<T>>>>,
    polls: Shared<u64>,
}

fn scripted<T>() -> (Feed<T>, Scripted<T>) {
    let (tx, rx) = mpsc::channel();
    let polls = Shared::new();
    (Feed { tx, polls: polls.clone() }, Scripted { rx: Mutex::new(Some(rx)), polls })
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct WholeScript;

impl SourceSplit for WholeScript {
    fn split_id(&self) -> String {
        "script".into()
    }
}

struct OneScript(bool);

impl SplitEnumerator<WholeScript> for OneScript {
    fn request_split(&mut self, _: usize) -> Result<SplitAssignment<WholeScript>> {
        Ok(if std::mem::replace(&mut self.0, true) {
            SplitAssignment::NoMoreSplits
        } else {
            SplitAssignment::Split(WholeScript)
        })
    }
}

struct ScriptReader<T> {
    rx: mpsc::Receiver<Option<T>>,
    assigned: bool,
    polls: Shared<u64>,
}

impl<T: Data> SourceReader for ScriptReader<T> {
    type Output = T;
    type Split = WholeScript;

    fn add_split(&mut self, _: WholeScript) -> Result<()> {
        self.assigned = true;
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<T>) -> Result<ReaderStatus> {
        if !self.assigned {
            return Ok(ReaderStatus::NeedsSplit);
        }
        self.polls.update(|n| *n += 1);
        // Waits briefly for the next command, as a reader should before reporting no data.
        match self.rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Some(record)) => {
                out.collect(record);
                Ok(ReaderStatus::MoreAvailable)
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok(ReaderStatus::EndOfInput),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(ReaderStatus::NothingAvailable),
        }
    }
}

impl<T: Data> Source for Scripted<T> {
    type Output = T;
    type Split = WholeScript;
    type Reader = ScriptReader<T>;

    fn boundedness(&self) -> Boundedness {
        Boundedness::ContinuousUnbounded
    }

    fn create_enumerator(&self, _: usize) -> Result<Box<dyn SplitEnumerator<WholeScript>>> {
        Ok(Box::new(OneScript(false)))
    }

    fn create_reader(&self, _: &ReaderContext) -> Result<ScriptReader<T>> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let rx = rx.ok_or_else(|| EddyError::user("a scripted source runs as exactly one subtask"))?;
        Ok(ScriptReader { rx, assigned: false, polls: self.polls.clone() })
    }
}

/// Waits for the job to end (at most [`JOB_LIMIT`]) and fails the test unless it finished.
fn await_finished(client: &JobClient) {
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("the job did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    client.wait().expect("the job finishes");
}

/// The first `n` keys (from 0 up) that key-group routing sends to `subtask` of `parallelism`.
fn keys_of_subtask(subtask: usize, parallelism: usize, n: usize) -> Vec<u64> {
    (0u64..).filter(|k| assign_key_to_operator(k, MAX_PARALLELISM, parallelism) == subtask).take(n).collect()
}

// ---------------------------------------------------------------------------------------------
// WatermarkStrategy, one operator at a time
// ---------------------------------------------------------------------------------------------

fn watermark_harness<T: Data + Sync>(strategy: WatermarkStrategy<T>) -> OneInputHarness<T, T> {
    OneInputHarness::build(move |s: DataStream<T>| s.assign_timestamps_and_watermarks(strategy)).unwrap()
}

fn rec<T>(value: T, timestamp: i64) -> Emitted<T> {
    Emitted::Record(value, Some(timestamp))
}

#[test]
fn bounded_out_of_orderness_emits_max_timestamp_minus_bound_minus_one_every_interval() {
    let mut h =
        watermark_harness(WatermarkStrategy::<u32>::for_bounded_out_of_orderness(Duration::from_millis(250)));
    h.process_element(1, 1_000).unwrap();
    h.process_element(2, 3_000).unwrap();
    h.process_element(3, 2_000).unwrap();
    // Records pass through at once, with their timestamps.
    assert_eq!(h.take_output(), vec![rec(1, 1_000), rec(2, 3_000), rec(3, 2_000)]);
    // The harness clock starts at 0: the first periodic emission is due at 0 + 200 ms.
    h.set_processing_time(199).unwrap();
    assert_eq!(h.take_output(), vec![], "no watermark before the 200 ms auto-watermark interval");
    // Largest timestamp 3000, bound 250 ms: 3000 - 250 - 1 = 2749.
    h.set_processing_time(200).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Watermark(2_749)]);
}

#[test]
fn bounded_out_of_orderness_first_watermark_is_min_and_is_not_emitted() {
    // maxTs starts at MIN + bound + 1, so before any record the watermark is MIN; a watermark
    // is only emitted when it is greater than the previous one, which starts at MIN.
    let mut h =
        watermark_harness(WatermarkStrategy::<u32>::for_bounded_out_of_orderness(Duration::from_secs(10)));
    for now in [200, 400, 600] {
        h.set_processing_time(now).unwrap();
    }
    assert_eq!(h.take_output(), vec![]);
    // The first record makes the next periodic watermark real: 0 - 10_000 - 1.
    h.process_element(7, 0).unwrap();
    h.set_processing_time(800).unwrap();
    assert_eq!(h.take_output(), vec![rec(7, 0), Emitted::Watermark(-10_001)]);
}

#[test]
fn periodic_watermarks_never_go_back_and_are_not_repeated() {
    let mut h =
        watermark_harness(WatermarkStrategy::<u32>::for_bounded_out_of_orderness(Duration::from_millis(100)));
    h.process_element(1, 1_000).unwrap();
    h.set_processing_time(200).unwrap();
    assert_eq!(h.take_output(), vec![rec(1, 1_000), Emitted::Watermark(899)]);
    // Nothing new: the watermark would be 899 again, which is not strictly greater.
    h.set_processing_time(400).unwrap();
    assert_eq!(h.take_output(), vec![]);
    // An out-of-order record (500 < 1000) does not lower the maximum, so nothing is emitted.
    h.process_element(2, 500).unwrap();
    h.set_processing_time(600).unwrap();
    assert_eq!(h.take_output(), vec![rec(2, 500)]);
    // A new maximum: 2000 - 100 - 1.
    h.process_element(3, 2_000).unwrap();
    h.set_processing_time(800).unwrap();
    assert_eq!(h.take_output(), vec![rec(3, 2_000), Emitted::Watermark(1_899)]);
}

#[test]
fn monotonous_timestamps_watermark_is_max_timestamp_minus_one() {
    let mut h = watermark_harness(WatermarkStrategy::<u32>::for_monotonous_timestamps());
    for (v, ts) in [(1, 10), (2, 20), (3, 30)] {
        h.process_element(v, ts).unwrap();
    }
    h.take_output();
    // Bound 0: 30 - 0 - 1.
    h.set_processing_time(200).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Watermark(29)]);
}

#[test]
fn no_watermarks_forwards_only_the_final_max_watermark() {
    let mut h = watermark_harness(WatermarkStrategy::<u32>::no_watermarks());
    h.process_element(1, 10).unwrap();
    h.process_element(2, 5_000).unwrap();
    for now in [200, 400, 10_000] {
        h.set_processing_time(now).unwrap();
    }
    // A watermark from upstream is replaced by this strategy's (none at all)...
    h.process_watermark(500).unwrap();
    // ...except the end-of-input watermark, which must reach everything downstream.
    h.process_watermark(i64::MAX).unwrap();
    h.end_input().unwrap();
    assert_eq!(h.take_output(), vec![rec(1, 10), rec(2, 5_000), Emitted::Watermark(i64::MAX), Emitted::End]);
}

#[test]
fn timestamp_assigner_sets_record_timestamps_from_record_and_previous_timestamp() {
    // Flink passes the record's current timestamp, or Long.MIN_VALUE when it has none.
    let strategy = WatermarkStrategy::<(String, i64)>::for_monotonous_timestamps().with_timestamp_assigner(
        |e: &(String, i64), previous| match previous {
            i64::MIN => e.1,
            p => p + e.1,
        },
    );
    let mut h = watermark_harness(strategy);
    h.process_element_without_timestamp(("a".to_string(), 5)).unwrap();
    h.process_element(("b".to_string(), 7), 1_000).unwrap();
    // The generator sees the assigned timestamps: max 1007, monotonous, so 1006.
    h.set_processing_time(200).unwrap();
    assert_eq!(
        h.take_output(),
        vec![rec(("a".to_string(), 5), 5), rec(("b".to_string(), 7), 1_007), Emitted::Watermark(1_006)]
    );
}

/// Emits the record's timestamp as watermark when the record says so (`(name, emit)`).
#[derive(Clone)]
struct OnMarker;

impl WatermarkGenerator<(String, bool)> for OnMarker {
    fn on_event(&mut self, event: &(String, bool), timestamp: i64, output: &mut WatermarkOutput) {
        if event.1 {
            output.emit_watermark(timestamp);
        }
    }
    fn on_periodic_emit(&mut self, _: &mut WatermarkOutput) {}
}

#[test]
fn punctuated_watermark_follows_the_record_that_caused_it_and_never_goes_back() {
    let mut h = watermark_harness(WatermarkStrategy::for_generator(|| OnMarker));
    let input = [("a", false, 10), ("b", true, 20), ("c", false, 30), ("d", true, 15), ("e", true, 40)];
    for (name, emit, ts) in input {
        h.process_element((name.to_string(), emit), ts).unwrap();
    }
    h.set_processing_time(1_000).unwrap();
    let r = |name: &str, emit: bool, ts: i64| rec((name.to_string(), emit), ts);
    assert_eq!(
        h.take_output(),
        vec![
            r("a", false, 10),
            r("b", true, 20),
            Emitted::Watermark(20),
            r("c", false, 30),
            // 15 would take event time back below 20: not emitted.
            r("d", true, 15),
            r("e", true, 40),
            Emitted::Watermark(40),
            // No periodic watermarks: this generator has none.
        ]
    );
}

#[test]
fn idleness_marks_the_input_idle_after_the_timeout_and_active_on_the_next_record() {
    let strategy =
        WatermarkStrategy::<u32>::for_monotonous_timestamps().with_idleness(Duration::from_secs(1));
    let mut h = watermark_harness(strategy);
    // Processing time 0: a record; at 200 the periodic watermark 100 - 1.
    h.process_element(1, 100).unwrap();
    h.set_processing_time(200).unwrap();
    assert_eq!(h.take_output(), vec![rec(1, 100), Emitted::Watermark(99)]);
    // 800 ms without records: not idle yet (the timeout is 1 s).
    h.set_processing_time(800).unwrap();
    assert_eq!(h.take_output(), vec![]);
    // 1.2 s without records: idle, said once, and no watermarks while idle.
    for now in [1_200, 1_400, 3_000] {
        h.set_processing_time(now).unwrap();
    }
    assert_eq!(h.take_output(), vec![Emitted::Idle(true)]);
    // A record makes the input active again before it travels downstream.
    h.process_element(2, 150).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Idle(false), rec(2, 150)]);
    // Periodic watermarks resume: the next emission is due at 3000 + 200.
    h.set_processing_time(3_200).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Watermark(149)]);
}

#[test]
fn final_watermark_of_an_idle_input_marks_it_active_first() {
    // Downstream valves ignore watermarks of idle channels (Flink's StatusWatermarkValve, and
    // Eddy's `WatermarkValve::input_watermark`), so the end-of-input watermark of an input that
    // went idle must first make it active again, or it is lost and timers downstream never
    // fire. In Flink the MAX watermark leaves TimestampsAndWatermarksOperator through the same
    // emitter as every other watermark, which marks the output active before emitting.
    let strategy =
        WatermarkStrategy::<u32>::for_monotonous_timestamps().with_idleness(Duration::from_secs(1));
    let mut h = watermark_harness(strategy);
    h.process_element(1, 100).unwrap();
    h.set_processing_time(5_000).unwrap();
    assert_eq!(h.take_output(), vec![rec(1, 100), Emitted::Idle(true)]);
    h.process_watermark(i64::MAX).unwrap();
    h.end_input().unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Idle(false), Emitted::Watermark(i64::MAX), Emitted::End]);
}

/// Records `(value, current watermark)` per element.
#[derive(Clone)]
struct WatermarkPerElement;

impl KeyedProcessFunction<u8, (String, bool), (String, i64)> for WatermarkPerElement {
    fn process_element(
        &mut self,
        v: (String, bool),
        ctx: &mut KeyedContext<u8>,
        out: &mut Collector<(String, i64)>,
    ) -> Result<()> {
        out.collect((v.0, ctx.timer_service().current_watermark()));
        Ok(())
    }
}

#[test]
fn punctuated_watermark_splits_a_source_batch_in_a_real_job() {
    // Ten records in one source batch; records 4 and 7 carry a watermark (their timestamps, 40
    // and 70). One channel keeps order, so the keyed operator sees 1..=4 at MIN, 5..=7 at 40 and
    // 8..=10 at 70: the watermark sits right after the record that caused it.
    let env = env(1);
    let input: Vec<(String, bool)> = (1..=10).map(|v| (format!("r{v}"), v == 4 || v == 7)).collect();
    let got = env
        .from_collection(input)
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_generator(|| OnMarker).with_timestamp_assigner(|e: &(String, bool), _| {
                e.0[1..].parse::<i64>().map_or(0, |v| v * 10)
            }),
        )
        .key_by(|_: &(String, bool)| 0u8)
        .process(WatermarkPerElement)
        .execute_and_collect()
        .unwrap();
    let expected: Vec<(String, i64)> = (1..=10)
        .map(|v| {
            let w = match v {
                1..=4 => i64::MIN,
                5..=7 => 40,
                _ => 70,
            };
            (format!("r{v}"), w)
        })
        .collect();
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------------------------------------
// KeyedProcessFunction timers and state, one operator at a time
// ---------------------------------------------------------------------------------------------

/// One instruction to [`TimerScript`], for the key it comes with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Op {
    OnEventTime(i64),
    DeleteEventTime(i64),
    OnProcessingTime(i64),
    DeleteProcessingTime(i64),
    /// Report what the context says.
    Probe,
    Put(i64),
    Get,
    Clear,
}

/// `(key, instruction)`.
type Cmd = (String, Op);

fn cmd(key: &str, op: Op) -> Cmd {
    (key.to_string(), op)
}

/// `TimeDomain`, as a record field.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Domain {
    Element,
    EventTime,
    ProcessingTime,
}

fn domain(d: Option<TimeDomain>) -> Domain {
    match d {
        None => Domain::Element,
        Some(TimeDomain::EventTime) => Domain::EventTime,
        Some(TimeDomain::ProcessingTime) => Domain::ProcessingTime,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Report {
    /// `process_element` reporting its context.
    Probe { key: String, timestamp: Option<i64>, domain: Domain, watermark: i64, processing_time: i64 },
    /// `on_timer`, with the key's value state.
    Fired { key: String, at: i64, timestamp: Option<i64>, domain: Domain, watermark: i64, value: Option<i64> },
    /// The key's value state, on `Get`.
    Value { key: String, value: Option<i64> },
}

/// Runs the [`Op`]s it receives; reports timers (and writes them to a side output, if given).
#[derive(Clone)]
struct TimerScript {
    value: ValueStateDescriptor<i64>,
    side: Option<OutputTag<String>>,
}

impl TimerScript {
    fn new(side: Option<OutputTag<String>>) -> Self {
        TimerScript { value: ValueStateDescriptor::new("value"), side }
    }
}

impl KeyedProcessFunction<String, Cmd, Report> for TimerScript {
    fn process_element(
        &mut self,
        c: Cmd,
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<Report>,
    ) -> Result<()> {
        let key = c.0;
        match c.1 {
            Op::OnEventTime(t) => ctx.timer_service().register_event_time_timer(t),
            Op::DeleteEventTime(t) => ctx.timer_service().delete_event_time_timer(t),
            Op::OnProcessingTime(t) => ctx.timer_service().register_processing_time_timer(t),
            Op::DeleteProcessingTime(t) => ctx.timer_service().delete_processing_time_timer(t),
            Op::Probe => out.collect(Report::Probe {
                key,
                timestamp: ctx.timestamp(),
                domain: domain(ctx.time_domain()),
                watermark: ctx.timer_service().current_watermark(),
                processing_time: ctx.timer_service().current_processing_time(),
            }),
            Op::Put(v) => ctx.state(&self.value).update(v),
            Op::Get => out.collect(Report::Value { key, value: ctx.state(&self.value).value().copied() }),
            Op::Clear => ctx.state(&self.value).clear(),
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        at: i64,
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<Report>,
    ) -> Result<()> {
        let key = ctx.current_key().clone();
        if let Some(tag) = &self.side {
            ctx.output(tag, format!("{key}@{at}"));
        }
        out.collect(Report::Fired {
            key,
            at,
            timestamp: ctx.timestamp(),
            domain: domain(ctx.time_domain()),
            watermark: ctx.timer_service().current_watermark(),
            value: ctx.state(&self.value).value().copied(),
        });
        Ok(())
    }
}

fn keyed_harness() -> OneInputHarness<Cmd, Report> {
    OneInputHarness::build(|s: DataStream<Cmd>| {
        s.key_by(|c: &Cmd| c.0.clone()).process(TimerScript::new(None))
    })
    .unwrap()
}

/// An event-time timer's output: it carries the timer's timestamp.
fn fired_event(key: &str, at: i64, watermark: i64, value: Option<i64>) -> Emitted<Report> {
    let r = Report::Fired {
        key: key.to_string(),
        at,
        timestamp: Some(at),
        domain: Domain::EventTime,
        watermark,
        value,
    };
    Emitted::Record(r, Some(at))
}

/// A processing-time timer's output: no timestamp.
fn fired_processing(key: &str, at: i64, watermark: i64, value: Option<i64>) -> Emitted<Report> {
    let r = Report::Fired {
        key: key.to_string(),
        at,
        timestamp: None,
        domain: Domain::ProcessingTime,
        watermark,
        value,
    };
    Emitted::Record(r, None)
}

/// A `Get` report (the tests push `Get`s at timestamp 0, which the report keeps).
fn state_value(key: &str, value: Option<i64>) -> Emitted<Report> {
    Emitted::Record(Report::Value { key: key.to_string(), value }, Some(0))
}

/// Output sorted by its debug text: for timers due at the same time, whose relative order Flink
/// does not define.
fn sorted_output(mut v: Vec<Emitted<Report>>) -> Vec<Emitted<Report>> {
    v.sort_by_key(|e| format!("{e:?}"));
    v
}

#[test]
fn event_time_timers_fire_in_timestamp_order_before_the_watermark_is_forwarded() {
    let mut h = keyed_harness();
    for (i, (key, at)) in [("a", 30), ("b", 10), ("c", 20), ("a", 40)].into_iter().enumerate() {
        h.process_element(cmd(key, Op::OnEventTime(at)), i as i64).unwrap();
    }
    assert_eq!(h.take_output(), vec![], "registering timers emits nothing");
    // Watermark 30 makes 10, 20 and 30 due (t <= 30). They fire in timestamp order, with the
    // timer service already at 30 (Flink's InternalTimerServiceImpl sets currentWatermark
    // before firing), and only then is the watermark forwarded.
    h.process_watermark(30).unwrap();
    assert_eq!(
        h.take_output(),
        vec![
            fired_event("b", 10, 30, None),
            fired_event("c", 20, 30, None),
            fired_event("a", 30, 30, None),
            Emitted::Watermark(30)
        ]
    );
    h.process_watermark(35).unwrap();
    assert_eq!(h.take_output(), vec![Emitted::Watermark(35)], "40 is not due at 35");
    h.process_watermark(i64::MAX).unwrap();
    assert_eq!(h.take_output(), vec![fired_event("a", 40, i64::MAX, None), Emitted::Watermark(i64::MAX)]);
}

#[test]
fn the_same_timer_registered_twice_fires_once_per_key_and_domain() {
    let mut h = keyed_harness();
    h.process_element(cmd("a", Op::OnEventTime(50)), 1).unwrap();
    h.process_element(cmd("a", Op::OnEventTime(50)), 2).unwrap();
    // Another key, and the other time domain, are other timers.
    h.process_element(cmd("b", Op::OnEventTime(50)), 3).unwrap();
    h.process_element(cmd("a", Op::OnProcessingTime(50)), 4).unwrap();
    h.process_element(cmd("a", Op::OnProcessingTime(50)), 5).unwrap();
    h.process_watermark(60).unwrap();
    let mut got = h.take_output();
    assert_eq!(got.pop(), Some(Emitted::Watermark(60)));
    assert_eq!(
        sorted_output(got),
        sorted_output(vec![fired_event("a", 50, 60, None), fired_event("b", 50, 60, None)])
    );
    h.set_processing_time(50).unwrap();
    h.process_watermark(100).unwrap();
    assert_eq!(h.take_output(), vec![fired_processing("a", 50, 60, None), Emitted::Watermark(100)]);
}

#[test]
fn a_deleted_timer_never_fires_and_deleting_a_missing_timer_changes_nothing() {
    let mut h = keyed_harness();
    let ops = [
        ("a", Op::OnEventTime(10)),
        ("a", Op::OnEventTime(20)),
        ("a", Op::DeleteEventTime(10)),
        // Never registered: a no-op.
        ("a", Op::DeleteEventTime(99)),
        // The timer at 20 is a's: b deleting "its" timer at 20 leaves a's alone.
        ("b", Op::DeleteEventTime(20)),
        ("a", Op::OnProcessingTime(100)),
        ("a", Op::DeleteProcessingTime(100)),
        ("a", Op::DeleteProcessingTime(7)),
        ("b", Op::OnProcessingTime(100)),
    ];
    for (i, (key, op)) in ops.into_iter().enumerate() {
        h.process_element(cmd(key, op), i as i64).unwrap();
    }
    h.process_watermark(1_000).unwrap();
    assert_eq!(h.take_output(), vec![fired_event("a", 20, 1_000, None), Emitted::Watermark(1_000)]);
    h.set_processing_time(1_000).unwrap();
    assert_eq!(h.take_output(), vec![fired_processing("b", 100, 1_000, None)]);
}

#[test]
fn timers_run_with_their_own_key_and_that_keys_state() {
    let mut h = keyed_harness();
    h.process_element(cmd("a", Op::Put(1)), 0).unwrap();
    h.process_element(cmd("b", Op::Put(2)), 0).unwrap();
    for key in ["a", "b", "c"] {
        h.process_element(cmd(key, Op::OnEventTime(5)), 0).unwrap();
        h.process_element(cmd(key, Op::OnProcessingTime(5)), 0).unwrap();
    }
    h.process_watermark(5).unwrap();
    let mut got = h.take_output();
    assert_eq!(got.pop(), Some(Emitted::Watermark(5)));
    assert_eq!(
        sorted_output(got),
        vec![fired_event("a", 5, 5, Some(1)), fired_event("b", 5, 5, Some(2)), fired_event("c", 5, 5, None)]
    );
    h.set_processing_time(5).unwrap();
    assert_eq!(
        sorted_output(h.take_output()),
        vec![
            fired_processing("a", 5, 5, Some(1)),
            fired_processing("b", 5, 5, Some(2)),
            fired_processing("c", 5, 5, None)
        ]
    );
}

#[test]
fn context_reports_domain_timestamps_and_time() {
    let mut h = keyed_harness();
    h.set_processing_time(30).unwrap();
    // Before the first watermark, the current watermark is Long.MIN_VALUE.
    h.process_element(cmd("a", Op::Probe), 12).unwrap();
    h.process_element_without_timestamp(cmd("a", Op::Probe)).unwrap();
    h.process_element(cmd("a", Op::OnEventTime(70)), 13).unwrap();
    h.process_element(cmd("a", Op::OnProcessingTime(70)), 14).unwrap();
    h.process_watermark(42).unwrap();
    h.process_element(cmd("a", Op::Probe), 15).unwrap();
    let probe = |timestamp: Option<i64>, watermark: i64| {
        let r = Report::Probe {
            key: "a".into(),
            timestamp,
            domain: Domain::Element,
            watermark,
            processing_time: 30,
        };
        Emitted::Record(r, timestamp)
    };
    assert_eq!(
        h.take_output(),
        vec![probe(Some(12), i64::MIN), probe(None, i64::MIN), Emitted::Watermark(42), probe(Some(15), 42)]
    );
    // Event-time timer: domain EventTime, timestamp (and output timestamp) = the timer's time.
    h.process_watermark(70).unwrap();
    assert_eq!(h.take_output(), vec![fired_event("a", 70, 70, None), Emitted::Watermark(70)]);
    // Processing-time timer: domain ProcessingTime, no timestamp.
    h.set_processing_time(70).unwrap();
    assert_eq!(h.take_output(), vec![fired_processing("a", 70, 70, None)]);
}

#[test]
fn processing_time_timers_fire_when_processing_time_reaches_them_and_not_before() {
    let mut h = keyed_harness();
    h.process_element(cmd("a", Op::OnProcessingTime(1_000)), 0).unwrap();
    h.process_element(cmd("b", Op::OnProcessingTime(1_500)), 0).unwrap();
    h.set_processing_time(999).unwrap();
    assert_eq!(h.take_output(), vec![]);
    h.set_processing_time(1_000).unwrap();
    assert_eq!(h.take_output(), vec![fired_processing("a", 1_000, i64::MIN, None)]);
    h.set_processing_time(1_499).unwrap();
    assert_eq!(h.take_output(), vec![]);
    // Jumping past several timers fires each once, in order.
    h.process_element(cmd("c", Op::OnProcessingTime(1_700)), 0).unwrap();
    h.set_processing_time(2_000).unwrap();
    assert_eq!(
        h.take_output(),
        vec![fired_processing("b", 1_500, i64::MIN, None), fired_processing("c", 1_700, i64::MIN, None)]
    );
    // Watermarks do not fire processing-time timers, nor the other way round.
    h.process_element(cmd("d", Op::OnProcessingTime(3_000)), 0).unwrap();
    h.process_element(cmd("d", Op::OnEventTime(3_000)), 0).unwrap();
    h.process_watermark(5_000).unwrap();
    assert_eq!(h.take_output(), vec![fired_event("d", 3_000, 5_000, None), Emitted::Watermark(5_000)]);
    h.set_processing_time(3_000).unwrap();
    assert_eq!(h.take_output(), vec![fired_processing("d", 3_000, 5_000, None)]);
}

#[test]
fn a_timer_for_a_time_already_passed_fires_at_the_next_watermark() {
    let mut h = keyed_harness();
    h.process_watermark(100).unwrap();
    h.process_element(cmd("a", Op::OnEventTime(50)), 120).unwrap();
    // Event-time timers fire only when the watermark advances.
    assert_eq!(h.take_output(), vec![Emitted::Watermark(100)]);
    h.process_watermark(101).unwrap();
    assert_eq!(h.take_output(), vec![fired_event("a", 50, 101, None), Emitted::Watermark(101)]);
}

#[test]
fn value_state_is_scoped_to_the_current_key_and_clear_removes_it() {
    let mut h = keyed_harness();
    let ops = [
        ("a", Op::Put(1)),
        ("b", Op::Get),
        ("a", Op::Get),
        ("b", Op::Put(2)),
        ("a", Op::Get),
        ("b", Op::Get),
        ("a", Op::Clear),
        ("a", Op::Get),
        ("b", Op::Get),
        ("a", Op::Put(3)),
        ("a", Op::Get),
    ];
    for (key, op) in ops {
        h.process_element(cmd(key, op), 0).unwrap();
    }
    assert_eq!(
        h.take_output(),
        vec![
            state_value("b", None),
            state_value("a", Some(1)),
            state_value("a", Some(1)),
            state_value("b", Some(2)),
            state_value("a", None),
            state_value("b", Some(2)),
            state_value("a", Some(3)),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_take_output_returns_everything_in_emission_order_once() {
    let mut h = OneInputHarness::build(|s: DataStream<i64>| s.map(|x| x * 2)).unwrap();
    h.process_element(1, 10).unwrap();
    h.process_watermark(5).unwrap();
    h.process_element(2, 20).unwrap();
    h.process_element_without_timestamp(3).unwrap();
    h.process_watermark(25).unwrap();
    h.end_input().unwrap();
    assert_eq!(
        h.take_output(),
        vec![
            rec(2, 10),
            Emitted::Watermark(5),
            rec(4, 20),
            Emitted::Record(6, None),
            Emitted::Watermark(25),
            Emitted::End
        ]
    );
    assert_eq!(h.take_output(), vec![], "take_output drains");
}

#[test]
fn harness_take_side_output_returns_what_a_keyed_process_function_wrote() {
    let tag = OutputTag::<String>::new("fired");
    let t = tag.clone();
    let mut h = OneInputHarness::build(move |s: DataStream<Cmd>| {
        let main = s.key_by(|c: &Cmd| c.0.clone()).process(TimerScript::new(Some(t.clone())));
        // Registers the side output's type with the node, as a consumer would.
        main.get_side_output(&t);
        main
    })
    .unwrap();
    h.process_element(cmd("a", Op::OnEventTime(20)), 1).unwrap();
    h.process_element(cmd("b", Op::OnEventTime(10)), 2).unwrap();
    h.process_element(cmd("b", Op::OnProcessingTime(30)), 3).unwrap();
    h.process_watermark(20).unwrap();
    h.set_processing_time(30).unwrap();
    // Side records carry the timestamp of the call that wrote them: the timer's for event
    // time, none for processing time.
    assert_eq!(
        h.take_side_output(&tag),
        vec![("b@10".to_string(), Some(10)), ("a@20".to_string(), Some(20)), ("b@30".to_string(), None)]
    );
    assert_eq!(h.take_side_output(&tag), vec![], "take_side_output drains");
    assert_eq!(h.take_records().len(), 3, "the main output has the three timer reports");
    assert_eq!(h.take_side_output(&OutputTag::<String>::new("unknown")), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Keyed state in a real job
// ---------------------------------------------------------------------------------------------

/// Emits `(key, records of this key so far)`.
#[derive(Clone)]
struct CountPerKey {
    count: ValueStateDescriptor<u64>,
}

impl KeyedProcessFunction<String, (String, u64), (String, u64)> for CountPerKey {
    fn process_element(
        &mut self,
        v: (String, u64),
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<(String, u64)>,
    ) -> Result<()> {
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect((v.0, n));
        Ok(())
    }
}

#[test]
fn count_per_key_in_a_parallel_job_matches_an_independent_count() {
    let key = |i: u64| format!("k{}", (i * i + 3 * i) % 11);
    let got = env(2)
        .from_generator(1_000, move |i| (key(i), i))
        .key_by(|r: &(String, u64)| r.0.clone())
        .process(CountPerKey { count: ValueStateDescriptor::new("count") })
        .execute_and_collect()
        .unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..1_000 {
        *expected.entry(key(i)).or_default() += 1;
    }
    // Each key's running counts are exactly 1..=n: its state is its own, whichever subtask.
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (k, n) in got {
        counts.entry(k).or_default().push(n);
    }
    let expected: BTreeMap<String, Vec<u64>> =
        expected.into_iter().map(|(k, n)| (k, (1..=n).collect())).collect();
    for c in counts.values_mut() {
        c.sort_unstable();
    }
    assert_eq!(counts, expected);
}

// ---------------------------------------------------------------------------------------------
// Watermark propagation in real jobs
// ---------------------------------------------------------------------------------------------

/// `(source, index)`; the timestamp is [`ts_of`].
type Tagged = (char, u64);

/// Source 'A' runs ten times faster in event time than source 'B'.
fn ts_of(source: char, index: u64) -> i64 {
    let i = index as i64;
    if source == 'A' {
        1 + 10 * i
    } else {
        1 + i
    }
}

fn key_of(t: &Tagged) -> u64 {
    t.1 % 8
}

/// A timer every key sets that only the end-of-input watermark reaches.
const FAR: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Obs {
    Element { subtask: usize, seq: u64, source: char, index: u64, watermark: i64 },
    Fired { subtask: usize, seq: u64, key: u64, at: i64, watermark: i64 },
}

/// Reports the operator's watermark at every element and timer, with the subtask and the order
/// of the call in it; sets a timer at each element's timestamp and one at [`FAR`].
#[derive(Clone, Default)]
struct WatermarkProbe {
    subtask: usize,
    seq: u64,
}

impl KeyedProcessFunction<u64, Tagged, Obs> for WatermarkProbe {
    fn open(&mut self, ctx: &RuntimeContext) -> Result<()> {
        self.subtask = ctx.index_of_this_subtask();
        Ok(())
    }

    fn process_element(
        &mut self,
        v: Tagged,
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<Obs>,
    ) -> Result<()> {
        self.seq += 1;
        let watermark = ctx.timer_service().current_watermark();
        out.collect(Obs::Element {
            subtask: self.subtask,
            seq: self.seq,
            source: v.0,
            index: v.1,
            watermark,
        });
        ctx.timer_service().register_event_time_timer(ts_of(v.0, v.1));
        ctx.timer_service().register_event_time_timer(FAR);
        Ok(())
    }

    fn on_timer(&mut self, at: i64, ctx: &mut KeyedContext<u64>, out: &mut Collector<Obs>) -> Result<()> {
        self.seq += 1;
        let (key, watermark) = (*ctx.current_key(), ctx.timer_service().current_watermark());
        out.collect(Obs::Fired { subtask: self.subtask, seq: self.seq, key, at, watermark });
        Ok(())
    }
}

fn tagged(source: char, n: u64) -> Vec<Tagged> {
    (0..n).map(|i| (source, i)).collect()
}

/// The timers [`WatermarkProbe`] sets for `input`, each once.
fn expected_timers(input: &[Tagged]) -> Vec<(u64, i64)> {
    let mut t: BTreeSet<(u64, i64)> = input.iter().map(|r| (key_of(r), ts_of(r.0, r.1))).collect();
    t.extend(input.iter().map(|r| (key_of(r), FAR)));
    t.into_iter().collect()
}

/// Checks the fired timers: each expected one exactly once, never before the watermark reached
/// it, and the [`FAR`] ones only at the end-of-input watermark.
fn check_timers(obs: &[Obs], input: &[Tagged]) {
    let mut fired = Vec::new();
    for o in obs {
        if let Obs::Fired { key, at, watermark, .. } = *o {
            assert!(watermark >= at, "timer {key}@{at} fired at watermark {watermark}");
            if at == FAR {
                assert_eq!(watermark, i64::MAX, "only the final watermark reaches {FAR}");
            }
            fired.push((key, at));
        }
    }
    fired.sort_unstable();
    assert_eq!(fired, expected_timers(input), "every timer fires, once");
}

/// The observations of each subtask, in the order they were made.
fn per_subtask(obs: &[Obs]) -> BTreeMap<usize, Vec<Obs>> {
    let mut by: BTreeMap<usize, Vec<Obs>> = BTreeMap::new();
    for o in obs {
        let (Obs::Element { subtask, .. } | Obs::Fired { subtask, .. }) = o;
        by.entry(*subtask).or_default().push(o.clone());
    }
    for v in by.values_mut() {
        v.sort_by_key(|o| match o {
            Obs::Element { seq, .. } | Obs::Fired { seq, .. } => *seq,
        });
    }
    by
}

#[test]
fn union_of_inputs_with_different_event_time_progress_runs_at_their_minimum() {
    // Two sources, each with its own punctuated watermarks (timestamp - 1 after every record,
    // i.e. monotonous timestamps), union-ed into a keyed operator at parallelism 2: each of its
    // subtasks has one channel per source. A runs ten times faster in event time than B.
    //
    // What the data allows, per element r processed by subtask S (channels are FIFO and every
    // watermark is broadcast to both subtasks right after the record that produced it):
    // - Upper bound. For each source Y, take the first Y record at S at or after r, Y[j]. Every
    //   Y watermark S has received before r came before Y[j] on that channel, so it is at most
    //   ts_Y(j - 1) - 1 (MIN if j = 0). The operator's watermark is the minimum over its
    //   channels, so it is at most the smallest of these bounds. For B that is far below what A
    //   alone would allow.
    // - Lower bound. For each source Y, take the last Y record at S at or before r, Y[j]: with
    //   j >= 1, the watermark ts_Y(j - 1) - 1 came before it, so Y's channel is at least there.
    //   The operator's watermark is at least the smallest of these (MIN if a source has none).
    const N: u64 = 200;
    let input: Vec<Tagged> = [tagged('A', N), tagged('B', N)].concat();
    // The data must reach both subtasks from both sources for the lower bounds to mean anything.
    let subtasks: BTreeSet<usize> =
        (0..8u64).map(|k| assign_key_to_operator(&k, MAX_PARALLELISM, 2)).collect();
    assert_eq!(subtasks, BTreeSet::from([0, 1]), "test data: keys 0..8 must span both subtasks");

    let env = env(2);
    let strategy = || {
        WatermarkStrategy::for_generator(|| EveryRecord { lag: 1 })
            .with_timestamp_assigner(|t: &Tagged, _| ts_of(t.0, t.1))
    };
    let a = env.from_collection(tagged('A', N)).assign_timestamps_and_watermarks(strategy());
    let b = env.from_collection(tagged('B', N)).assign_timestamps_and_watermarks(strategy());
    let obs = a.union(&b).key_by(key_of).process(WatermarkProbe::default()).execute_and_collect().unwrap();

    for (subtask, seen) in per_subtask(&obs) {
        let watermarks: Vec<i64> = seen
            .iter()
            .map(|o| match o {
                Obs::Element { watermark, .. } | Obs::Fired { watermark, .. } => *watermark,
            })
            .collect();
        assert!(watermarks.windows(2).all(|w| w[0] <= w[1]), "subtask {subtask}: watermark went back");

        let elements: Vec<(char, u64, i64)> = seen
            .iter()
            .filter_map(|o| match *o {
                Obs::Element { source, index, watermark, .. } => Some((source, index, watermark)),
                Obs::Fired { .. } => None,
            })
            .collect();
        let mut last_lower = i64::MIN;
        for (pos, &(source, index, watermark)) in elements.iter().enumerate() {
            let (mut upper, mut lower) = (i64::MAX, i64::MAX);
            for y in ['A', 'B'] {
                if let Some(&(_, j, _)) = elements[pos..].iter().find(|e| e.0 == y) {
                    upper = upper.min(if j == 0 { i64::MIN } else { ts_of(y, j - 1) - 1 });
                }
                let at_least = match elements[..=pos].iter().rev().find(|e| e.0 == y) {
                    Some(&(_, j, _)) if j >= 1 => ts_of(y, j - 1) - 1,
                    _ => i64::MIN,
                };
                lower = lower.min(at_least);
            }
            assert!(
                lower <= watermark && watermark <= upper,
                "subtask {subtask}, {source}[{index}] (ts {}): watermark {watermark} outside [{lower}, {upper}]",
                ts_of(source, index)
            );
            last_lower = lower;
        }
        assert!(last_lower > i64::MIN, "subtask {subtask}: the data never forced the watermark up");
    }
    assert_eq!(obs.iter().filter(|o| matches!(o, Obs::Element { .. })).count(), input.len());
    // The bounded sources end with MAX: every timer fires, the far ones at MAX.
    check_timers(&obs, &input);
}

#[test]
fn without_watermarks_event_time_stays_min_until_the_end_fires_every_timer() {
    let input = tagged('A', 300);
    let strategy =
        WatermarkStrategy::no_watermarks().with_timestamp_assigner(|t: &Tagged, _| ts_of(t.0, t.1));
    let obs = env(2)
        .from_collection(input.clone())
        .assign_timestamps_and_watermarks(strategy)
        .key_by(key_of)
        .process(WatermarkProbe::default())
        .execute_and_collect()
        .unwrap();
    for o in &obs {
        match *o {
            Obs::Element { watermark, .. } => assert_eq!(watermark, i64::MIN),
            Obs::Fired { watermark, .. } => assert_eq!(watermark, i64::MAX),
        }
    }
    assert_eq!(obs.iter().filter(|o| matches!(o, Obs::Element { .. })).count(), input.len());
    check_timers(&obs, &input);
}

// ---------------------------------------------------------------------------------------------
// Idleness in real jobs (scripted sources, manual processing time)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Element { key: u64, ts: i64, watermark: i64 },
    Fired { key: u64, at: i64, watermark: i64 },
}

/// Sets an event-time timer at every element's timestamp and logs elements and timers, with
/// the operator's watermark, where the test thread can wait for them.
#[derive(Clone)]
struct TimerPerElement {
    log: Log<Seen>,
}

impl TimerPerElement {
    fn element(&self, e: Ev, ctx: &mut KeyedContext<u64>) {
        let watermark = ctx.timer_service().current_watermark();
        self.log.update(|l| l.push(Seen::Element { key: e.0, ts: e.1, watermark }));
        ctx.timer_service().register_event_time_timer(e.1);
    }

    fn fired(&self, at: i64, ctx: &mut KeyedContext<u64>) {
        let (key, watermark) = (*ctx.current_key(), ctx.timer_service().current_watermark());
        self.log.update(|l| l.push(Seen::Fired { key, at, watermark }));
    }
}

impl KeyedProcessFunction<u64, Ev, ()> for TimerPerElement {
    fn process_element(&mut self, e: Ev, ctx: &mut KeyedContext<u64>, _: &mut Collector<()>) -> Result<()> {
        self.element(e, ctx);
        Ok(())
    }
    fn on_timer(&mut self, at: i64, ctx: &mut KeyedContext<u64>, _: &mut Collector<()>) -> Result<()> {
        self.fired(at, ctx);
        Ok(())
    }
}

impl KeyedCoProcessFunction<u64, Ev, Ev, ()> for TimerPerElement {
    fn process_element1(&mut self, e: Ev, ctx: &mut KeyedContext<u64>, _: &mut Collector<()>) -> Result<()> {
        self.element(e, ctx);
        Ok(())
    }
    fn process_element2(&mut self, e: Ev, ctx: &mut KeyedContext<u64>, _: &mut Collector<()>) -> Result<()> {
        self.element(e, ctx);
        Ok(())
    }
    fn on_timer(&mut self, at: i64, ctx: &mut KeyedContext<u64>, _: &mut Collector<()>) -> Result<()> {
        self.fired(at, ctx);
        Ok(())
    }
}

fn elements(log: &[Seen]) -> Vec<(u64, i64, i64)> {
    log.iter()
        .filter_map(|s| match *s {
            Seen::Element { key, ts, watermark } => Some((key, ts, watermark)),
            Seen::Fired { .. } => None,
        })
        .collect()
}

/// The fired timers `(key, at) -> watermarks it fired at` (more than one: it fired twice).
fn fired(log: &[Seen]) -> BTreeMap<(u64, i64), Vec<i64>> {
    let mut f: BTreeMap<(u64, i64), Vec<i64>> = BTreeMap::new();
    for s in log {
        if let Seen::Fired { key, at, watermark } = *s {
            f.entry((key, at)).or_default().push(watermark);
        }
    }
    f
}

fn has_fired(log: &[Seen], timers: &[(u64, i64)]) -> bool {
    let f = fired(log);
    timers.iter().all(|t| f.contains_key(t))
}

/// A scripted input whose records all go idle after 1 s of processing time without records.
fn idle_after_one_second() -> WatermarkStrategy<Ev> {
    WatermarkStrategy::for_monotonous_timestamps()
        .with_timestamp_assigner(|e: &Ev, _| e.1)
        .with_idleness(Duration::from_secs(1))
}

#[test]
fn an_idle_input_does_not_hold_back_timers_of_a_union_and_rejoins_once_caught_up() {
    // Keyed operator at parallelism 2, fed by the union of an active input A (a watermark equal
    // to the timestamp after every record) and an input B that sends nothing and goes idle after
    // 1 s of processing time. The clock is manual and starts at 0.
    let clock = Arc::new(ManualClock::new(0));
    let env = env(2).with_clock(clock.clone());
    let (feed_a, source_a) = scripted::<Ev>();
    let (feed_b, source_b) = scripted::<Ev>();
    let log: Log<Seen> = Shared::new();
    let a =
        env.from_source(source_a, "A").set_parallelism(1).assign_timestamps_and_watermarks(every_record(0));
    let b = env
        .from_source(source_b, "B")
        .set_parallelism(1)
        .assign_timestamps_and_watermarks(idle_after_one_second());
    a.union(&b).key_by(|e: &Ev| e.0).process(TimerPerElement { log: log.clone() });
    let client = env.execute_async("idle union").unwrap();

    // Two keys per subtask, so that every subtask's event time is observed.
    let (k0, k1) = (keys_of_subtask(0, 2, 2), keys_of_subtask(1, 2, 2));
    let first = [(k0[0], 100), (k1[0], 150), (k0[1], 200), (k1[1], 250)];
    for e in first {
        feed_a.send(e);
    }
    assert!(log.wait_until(JOB_LIMIT, |l| elements(l).len() == first.len()), "A's records arrive");
    // B is not idle (processing time is still 0) and has no watermark: the minimum is MIN.
    for (key, ts, watermark) in elements(&log.get()) {
        assert_eq!(watermark, i64::MIN, "element {key}@{ts}: B holds event time back");
    }

    // 5 s without records from B: B is idle and left out of the minimum, so event time follows
    // A alone (up to 250) and every timer fires, while both inputs are still running.
    clock.set(5_000);
    let timers: Vec<(u64, i64)> = first.to_vec();
    let fired_in_time = log.wait_until(REACTION_LIMIT, |l| has_fired(l, &timers));
    assert!(fired_in_time, "timers held back by idle B: {:?}", log.get());
    for (&(key, at), watermarks) in &fired(&log.get()) {
        assert!(
            watermarks.iter().all(|w| (at..=250).contains(w)),
            "timer {key}@{at} fired at {watermarks:?}"
        );
    }

    // B becomes active again with a record far behind (50). Its channel has no watermark (its
    // next periodic one is due at 5200 ms, and the clock stays at 5000), so it does not rejoin
    // the minimum, which stays with A: A's next records still advance event time on both
    // subtasks. (A's timestamps must keep increasing: its watermark equals the last one.)
    feed_b.send((k0[0], 50));
    let second = [(k0[0], 300), (k1[0], 310)];
    for e in second {
        feed_a.send(e);
    }
    let advanced = log.wait_until(REACTION_LIMIT, |l| has_fired(l, &second));
    assert!(advanced, "B, active again but behind, held back event time: {:?}", log.get());

    // B's late record must be in before the inputs end: once A ends, event time jumps to MAX
    // (B, behind, is not part of the minimum), and a timer set after that never fires.
    let late = (k0[0], 50);
    assert!(
        log.wait_until(JOB_LIMIT, |l| elements(l).iter().any(|e| (e.0, e.1) == late)),
        "B's record arrives"
    );

    feed_a.end();
    feed_b.end();
    await_finished(&client);
    // At the end every timer has fired exactly once, B's late one at 50 included.
    let all: Vec<(u64, i64)> = first.iter().chain(&second).copied().chain([late]).collect();
    let f = fired(&log.get());
    assert_eq!(f.keys().copied().collect::<BTreeSet<_>>(), all.into_iter().collect::<BTreeSet<_>>());
    assert!(f.values().all(|w| w.len() == 1), "a timer fired twice: {f:?}");
}

#[test]
fn an_input_that_ends_while_idle_still_fires_all_timers() {
    // One input, idle after 1 s without records. It sends a record (timer at 100), goes idle,
    // and then ends: its final MAX watermark must still reach the keyed operator and fire the
    // timer (a bounded input ends with MAX, which fires all event-time timers).
    let clock = Arc::new(ManualClock::new(0));
    let env = env(1).with_clock(clock.clone());
    let (feed, source) = scripted::<Ev>();
    let log: Log<Seen> = Shared::new();
    env.from_source(source, "goes idle")
        .assign_timestamps_and_watermarks(idle_after_one_second())
        .key_by(|e: &Ev| e.0)
        .process(TimerPerElement { log: log.clone() });
    let client = env.execute_async("idle then end").unwrap();

    feed.send((1, 100));
    assert!(log.wait_until(JOB_LIMIT, |l| elements(l).len() == 1), "the record arrives");
    clock.set(5_000);
    // The source's watermark operator has now seen 5 s without records: it is idle.
    feed.wait_for_timers_to_run();
    feed.end();
    await_finished(&client);
    assert_eq!(
        log.get(),
        vec![
            Seen::Element { key: 1, ts: 100, watermark: i64::MIN },
            Seen::Fired { key: 1, at: 100, watermark: i64::MAX }
        ]
    );
}

#[test]
fn an_idle_input_of_a_connected_keyed_operator_does_not_hold_back_its_timers() {
    // Flink: an operator's event time is the minimum over its inputs, leaving idle ones out;
    // for two inputs that is the minimum of both, unless one is idle. Input 1 (A) is active,
    // input 2 (B) sends nothing and goes idle after 1 s of (manual) processing time.
    let clock = Arc::new(ManualClock::new(0));
    let env = env(1).with_clock(clock.clone());
    let (feed_a, source_a) = scripted::<Ev>();
    let (feed_b, source_b) = scripted::<Ev>();
    let log: Log<Seen> = Shared::new();
    let a = env.from_source(source_a, "A").assign_timestamps_and_watermarks(every_record(0));
    let b = env.from_source(source_b, "B").assign_timestamps_and_watermarks(idle_after_one_second());
    a.connect(&b).key_by(|e: &Ev| e.0, |e: &Ev| e.0).process(TimerPerElement { log: log.clone() });
    let client = env.execute_async("idle connect").unwrap();

    let first = [(1, 100), (2, 200)];
    for e in first {
        feed_a.send(e);
    }
    assert!(log.wait_until(JOB_LIMIT, |l| elements(l).len() == 2), "A's records arrive");
    assert!(elements(&log.get()).iter().all(|e| e.2 == i64::MIN), "B, active, holds event time at MIN");

    clock.set(5_000);
    let fired_while_running = log.wait_until(REACTION_LIMIT, |l| has_fired(l, &first));

    feed_a.end();
    feed_b.end();
    await_finished(&client);
    let f = fired(&log.get());
    assert!(
        fired_while_running,
        "with input 2 idle, A's watermark 200 should fire the timers at 100 and 200 while the job \
         runs; they had not fired after {REACTION_LIMIT:?}; fired by the end of the job: {f:?}"
    );
    for ((key, at), watermarks) in &f {
        assert_eq!(watermarks.len(), 1, "timer {key}@{at} fired {watermarks:?}");
        assert!((*at..=200).contains(&watermarks[0]), "timer {key}@{at} fired at {watermarks:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// KeyedCoProcessFunction in a real job
// ---------------------------------------------------------------------------------------------

/// How long an order or payment waits for its partner, in event time.
const TIMEOUT: i64 = 100;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum JoinOut {
    Matched {
        id: u64,
        order_ts: i64,
        payment_ts: i64,
    },
    /// A timer fired: the state it found (`on_time`: the watermark had reached the timer).
    TimedOut {
        id: u64,
        at: i64,
        order_ts: Option<i64>,
        payment_ts: Option<i64>,
        on_time: bool,
    },
    /// A record at or below the operator's watermark (none expected).
    Late {
        id: u64,
        input: u8,
        ts: i64,
        watermark: i64,
    },
}

/// Orders (input 1) wait for payments (input 2) and the other way round, each with a timer at
/// its timestamp + [`TIMEOUT`]; whichever side arrives second emits the match and deletes the
/// first one's timer. State (the waiting timestamp) is shared by both inputs of a key.
#[derive(Clone)]
struct OrderPayment {
    order: ValueStateDescriptor<i64>,
    payment: ValueStateDescriptor<i64>,
}

impl OrderPayment {
    fn arrive(
        &self,
        (id, ts): Ev,
        input: u8,
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<JoinOut>,
    ) -> Result<()> {
        let watermark = ctx.timer_service().current_watermark();
        if watermark >= ts {
            out.collect(JoinOut::Late { id, input, ts, watermark });
        }
        let (mine, theirs) =
            if input == 1 { (&self.order, &self.payment) } else { (&self.payment, &self.order) };
        let waiting = ctx.state(theirs).value().copied();
        match waiting {
            Some(their_ts) => {
                ctx.state(theirs).clear();
                ctx.timer_service().delete_event_time_timer(their_ts + TIMEOUT);
                let (order_ts, payment_ts) = if input == 1 { (ts, their_ts) } else { (their_ts, ts) };
                out.collect(JoinOut::Matched { id, order_ts, payment_ts });
            }
            None => {
                ctx.state(mine).update(ts);
                ctx.timer_service().register_event_time_timer(ts + TIMEOUT);
            }
        }
        Ok(())
    }
}

impl KeyedCoProcessFunction<u64, Ev, Ev, JoinOut> for OrderPayment {
    fn process_element1(
        &mut self,
        e: Ev,
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<JoinOut>,
    ) -> Result<()> {
        self.arrive(e, 1, ctx, out)
    }

    fn process_element2(
        &mut self,
        e: Ev,
        ctx: &mut KeyedContext<u64>,
        out: &mut Collector<JoinOut>,
    ) -> Result<()> {
        self.arrive(e, 2, ctx, out)
    }

    fn on_timer(&mut self, at: i64, ctx: &mut KeyedContext<u64>, out: &mut Collector<JoinOut>) -> Result<()> {
        let on_time = ctx.timer_service().current_watermark() >= at;
        let order_ts = ctx.state(&self.order).value().copied();
        let payment_ts = ctx.state(&self.payment).value().copied();
        ctx.state(&self.order).clear();
        ctx.state(&self.payment).clear();
        out.collect(JoinOut::TimedOut { id: *ctx.current_key(), at, order_ts, payment_ts, on_time });
        Ok(())
    }
}

#[test]
fn keyed_co_process_matches_both_inputs_through_shared_state_and_times_out_the_rest() {
    // Key k has an order if k % 3 != 1 and a payment if k % 3 != 2, at timestamps 1 + 10k and
    // 1 + 10k + k % 5. Each input has a watermark equal to timestamp - 1 after every record.
    //
    // Why the outcome is fixed whatever the interleaving: a timer at t + TIMEOUT fires when
    // min(watermark of orders, watermark of payments) >= t + TIMEOUT. The partner of a record
    // at t has a timestamp within 4 of t, so it is ahead, on its own input's channel, of every
    // watermark >= t + TIMEOUT (those follow records at or above t + TIMEOUT + 1). Partners thus
    // always meet before the first one's timer could fire, and the match deletes that timer.
    // Records without partner time out at their timestamp + TIMEOUT (by the final MAX at the
    // latest). No record is late, as each input's timestamps increase.
    const KEYS: u64 = 90;
    let order_ts = |k: u64| 1 + 10 * k as i64;
    let payment_ts = |k: u64| 1 + 10 * k as i64 + (k % 5) as i64;
    let orders: Vec<Ev> = (0..KEYS).filter(|k| k % 3 != 1).map(|k| (k, order_ts(k))).collect();
    let payments: Vec<Ev> = (0..KEYS).filter(|k| k % 3 != 2).map(|k| (k, payment_ts(k))).collect();

    let env = env(2);
    let o = env.from_collection(orders).assign_timestamps_and_watermarks(every_record(1));
    let p = env.from_collection(payments).assign_timestamps_and_watermarks(every_record(1));
    let f = OrderPayment {
        order: ValueStateDescriptor::new("order"),
        payment: ValueStateDescriptor::new("payment"),
    };
    let mut got = o.connect(&p).key_by(|e: &Ev| e.0, |e: &Ev| e.0).process(f).execute_and_collect().unwrap();
    got.sort();

    let mut expected: Vec<JoinOut> = (0..KEYS)
        .map(|k| match k % 3 {
            0 => JoinOut::Matched { id: k, order_ts: order_ts(k), payment_ts: payment_ts(k) },
            1 => JoinOut::TimedOut {
                id: k,
                at: payment_ts(k) + TIMEOUT,
                order_ts: None,
                payment_ts: Some(payment_ts(k)),
                on_time: true,
            },
            _ => JoinOut::TimedOut {
                id: k,
                at: order_ts(k) + TIMEOUT,
                order_ts: Some(order_ts(k)),
                payment_ts: None,
                on_time: true,
            },
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}
