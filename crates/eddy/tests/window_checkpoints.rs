//! Window and join operators under checkpoints on the local mini-cluster: jobs with event-time
//! windows and with an interval join checkpoint every 10 ms, fail (twice, after a
//! checkpoint completed), restart from their latest checkpoint, and write through the
//! exactly-once text file sink. What they commit must equal, line for line, what a run without
//! failures writes: a window result lost or written twice would show.
//!
//! Failures come from a pass-through operator in front of the windows: in attempt `a` < 2 its
//! subtask 0 fails once it has seen a sixth (then a third) of the records and has since heard of a completed
//! checkpoint, so the restart always has state to restore; should its input end first, it
//! fails there instead.

use std::fs;
use std::path::Path;

use eddy::prelude::*;
use eddy::{Batch, Configuration, EddyError};
use eddy_runtime::output::Emitter;
use eddy_runtime::{OneInputOperator, OperatorContext};

/// Events per source: enough for many checkpoints before, between and after the failures.
const WINDOW_EVENTS: i64 = 600_000;
/// Fewer for the join: its buffers hold what one input is ahead of the other.
const JOIN_EVENTS: i64 = 200_000;
const KEYS: i64 = 16;
const FAILURES: usize = 2;
const JOB_LIMIT: Duration = Duration::from_secs(180);

/// `(key, event time, value)`
type Event = (i64, i64, i64);

/// Passes records through; fails in subtask 0 of the first attempts (see the module docs).
struct FailTwice {
    fail_after: [u64; FAILURES],
    seen: u64,
    attempt: usize,
    subtask: usize,
    completed_since_armed: bool,
}

impl FailTwice {
    fn new(events: i64) -> Self {
        let fail_after = [events as u64 / 6, events as u64 / 3];
        FailTwice { fail_after, seen: 0, attempt: 0, subtask: 0, completed_since_armed: false }
    }

    fn armed(&self) -> bool {
        self.subtask == 0 && self.attempt < FAILURES && self.seen >= self.fail_after[self.attempt]
    }
}

impl OneInputOperator for FailTwice {
    type In = Event;
    type Out = Event;

    fn open(&mut self, ctx: &OperatorContext) -> Result<()> {
        self.attempt = ctx.attempt;
        self.subtask = ctx.subtask_index;
        Ok(())
    }

    fn process_batch(&mut self, batch: Batch<Event>, out: &mut Emitter<Event>) -> Result<()> {
        if self.armed() && self.completed_since_armed {
            return Err(EddyError::user(format!("injected failure in attempt {}", self.attempt)));
        }
        self.seen += batch.len() as u64;
        out.emit_batch(batch)
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        if self.armed() {
            self.completed_since_armed = true;
        }
        Ok(())
    }

    fn end_input(&mut self, _: &mut Emitter<Event>) -> Result<()> {
        if self.subtask == 0 && self.attempt < FAILURES {
            return Err(EddyError::user(format!("injected failure at the end of attempt {}", self.attempt)));
        }
        Ok(())
    }
}

fn env(failures: bool) -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    config.set("execution.checkpointing.interval", "10 ms");
    config.set("pipeline.auto-watermark-interval", "2 ms");
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", if failures { "5" } else { "0" });
    config.set("restart-strategy.fixed-delay.delay", "10 ms");
    StreamExecutionEnvironment::with_configuration(config).with_parallelism(2)
}

/// `n` events of `KEYS` keys, event time rising with the sequence (per source split), as
/// `(key, time, value)`, after the failing operator when `failures`.
fn events(env: &StreamExecutionEnvironment, n: i64, failures: bool, salt: i64) -> DataStream<Event> {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_millis(20))
        .with_timestamp_assigner(|e: &Event, _| e.1);
    let events = env
        .from_sequence(0, n - 1)
        .map(move |v: i64| ((v * 7 + salt) % KEYS, v / 4, v % 100))
        .assign_timestamps_and_watermarks(strategy);
    if failures {
        events.transform("FailTwice", move |_| Ok(FailTwice::new(n)))
    } else {
        events
    }
}

/// Runs the job `build` makes into a fresh directory and returns its committed lines, sorted.
fn run(
    name: &str,
    failures: bool,
    build: fn(&StreamExecutionEnvironment, bool) -> DataStream<String>,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let env = env(failures);
    build(&env, failures).sink_to(TextFileSink::new(dir.path()), "committed results");
    let client = env.execute_async(name).unwrap();
    let status = client.wait_timeout(JOB_LIMIT);
    if !status.is_terminal() {
        client.cancel();
        panic!("'{name}' did not end within {JOB_LIMIT:?} (status {status:?})");
    }
    if let Err(e) = client.wait() {
        panic!("'{name}' failed: {e}; checkpoints {:?}", client.checkpoint_stats());
    }
    let stats = client.checkpoint_stats();
    if failures {
        assert_eq!(client.restarts(), FAILURES, "one restart per injected failure: {stats:?}");
        assert!(stats.restored.is_some(), "the last attempt was restored from a checkpoint: {stats:?}");
    }
    committed_lines(dir.path())
}

/// The lines of the committed part files (in-progress and pending files are not results).
fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("part-") {
            lines.extend(fs::read_to_string(&path).unwrap().lines().map(String::from));
        }
    }
    lines.sort();
    lines
}

fn check(name: &str, build: fn(&StreamExecutionEnvironment, bool) -> DataStream<String>) {
    let expected = run(name, false, build);
    assert!(expected.len() > 1000, "the job emits enough to compare: {}", expected.len());
    let mut unique = expected.clone();
    unique.dedup();
    assert_eq!(unique.len(), expected.len(), "each result line is distinct, so duplicates would show");
    let recovered = run(name, true, build);
    assert_eq!(recovered.len(), expected.len(), "as many results as without failures");
    assert!(recovered == expected, "the recovered job's results differ from the failure-free run's");
}

/// Sum and count.
#[derive(Clone)]
struct SumCount;

impl AggregateFunction<Event, (i64, i64), (i64, i64)> for SumCount {
    fn create_accumulator(&self) -> (i64, i64) {
        (0, 0)
    }
    fn add(&self, acc: &mut (i64, i64), e: Event) {
        acc.0 += e.2;
        acc.1 += 1;
    }
    fn get_result(&self, acc: &(i64, i64)) -> (i64, i64) {
        *acc
    }
    fn merge(&self, acc: &mut (i64, i64), other: (i64, i64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
}

fn windows(env: &StreamExecutionEnvironment, failures: bool) -> DataStream<String> {
    let keyed = events(env, WINDOW_EVENTS, failures, 0).key_by(|e: &Event| e.0);
    // Sliding windows with an aggregate: the aligned operator.
    let sliding = keyed
        .window(SlidingEventTimeWindows::of(Duration::from_millis(2_000), Duration::from_millis(700)))
        .aggregate_with(
            SumCount,
            |k: &i64,
             ctx: &mut WindowContext<_, TimeWindow>,
             r: &[(i64, i64)],
             out: &mut Collector<String>| {
                out.collect(format!("sliding {k} {} {} {}", ctx.window().start(), r[0].0, r[0].1));
                Ok(())
            },
        )
        .uid("sliding");
    // Tumbling windows with a process function: the general operator, with timers.
    let tumbling = keyed
        .window(TumblingEventTimeWindows::of(Duration::from_millis(1_500)))
        .process(
            |k: &i64, ctx: &mut WindowContext<_, TimeWindow>, es: &[Event], out: &mut Collector<String>| {
                let sum: i64 = es.iter().map(|e| e.2).sum();
                out.collect(format!("tumbling {k} {} {} {sum}", ctx.window().start(), es.len()));
                Ok(())
            },
        )
        .uid("tumbling");
    // Sessions of each key's events of one value class: they merge as events arrive.
    let sessions = events(env, WINDOW_EVENTS, false, 3)
        .filter(|e: &Event| e.2 * 13 % 17 < 3)
        .key_by(|e: &Event| e.0)
        .window(EventTimeSessionWindows::with_gap(Duration::from_millis(30)))
        .reduce(|a: Event, b: Event| (a.0, a.1.max(b.1), a.2 + b.2))
        .map(|e: Event| format!("session {} {} {}", e.0, e.1, e.2))
        .uid("sessions");
    sliding.union(&tumbling).union(&sessions)
}

#[test]
fn event_time_windows_recover_exactly_once() {
    check("windows under failures", windows);
}

fn interval_join(env: &StreamExecutionEnvironment, failures: bool) -> DataStream<String> {
    let orders = events(env, JOIN_EVENTS, failures, 0).key_by(|e: &Event| e.0);
    let payments =
        events(env, JOIN_EVENTS, false, 5).filter(|e: &Event| e.2 % 3 == 0).key_by(|e: &Event| e.0);
    orders
        .interval_join(&payments)
        .between(-3, 5)
        .process(|o: &Event, p: &Event, ctx: &mut JoinContext, out: &mut Collector<String>| {
            out.collect(format!("{} {} {} {} {} {}", o.0, o.1, o.2, p.1, p.2, ctx.timestamp()));
            Ok(())
        })
        .uid("interval join")
}

#[test]
fn interval_join_recovers_exactly_once() {
    check("interval join under failures", interval_join);
}
