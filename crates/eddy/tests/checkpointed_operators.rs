//! The built-in keyed operators under checkpoints: keyed `sum`, a `KeyedProcessFunction` and
//! a rich map on a keyed stream with value state restore their state from the latest checkpoint after a failure, so the
//! final counts equal a failure-free run's. Window and join operators are covered by
//! `window_checkpoints.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{FailOnce, MaxPerKey};
use eddy::prelude::*;
use eddy::Configuration;

const KEYS: i64 = 50;
/// Long enough (a second or more in a debug build) for many 20 ms checkpoints to complete
/// after the failure point.
const N: i64 = 3_000_000;
const JOB_LIMIT: Duration = Duration::from_secs(120);

fn env() -> StreamExecutionEnvironment {
    let mut config = Configuration::new();
    config.set("restart-strategy.type", "fixed-delay");
    config.set("restart-strategy.fixed-delay.attempts", "3");
    config.set("restart-strategy.fixed-delay.delay", "10 ms");
    config.set("execution.checkpointing.interval", "20 ms");
    StreamExecutionEnvironment::with_configuration(config).with_parallelism(2)
}

/// Runs the job and returns the highest count per key the sink saw.
fn run(env: StreamExecutionEnvironment, counts: DataStream<(i64, i64)>) -> BTreeMap<i64, i64> {
    let sink = MaxPerKey::default();
    counts
        .transform("FailOnce", |_| Ok(FailOnce::after((N / 3) as u64)))
        .sink_to(sink.clone(), "max per key");
    let client = env.execute_async("checkpointed keyed operators").unwrap();
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal(), "the job did not end within {JOB_LIMIT:?}");
    if let Err(e) = client.wait() {
        panic!("the job failed: {e}; checkpoints {:?}", client.checkpoint_stats());
    }
    assert_eq!(client.restarts(), 1, "the injected failure restarted the job once");
    assert!(client.checkpoint_stats().restored.is_some(), "{:?}", client.checkpoint_stats());
    let max = sink.0.lock().unwrap().clone();
    max
}

fn expected() -> BTreeMap<i64, i64> {
    (0..KEYS).map(|k| (k, N / KEYS)).collect()
}

#[test]
fn keyed_sum_restores_its_accumulators_from_the_checkpoint() {
    let env = env();
    let counts = env
        .from_sequence(0, N - 1)
        .map(|v: i64| (v % KEYS, 1i64))
        .key_by(|t: &(i64, i64)| t.0)
        .sum(|t: &mut (i64, i64)| &mut t.1)
        .uid("sum");
    assert_eq!(run(env, counts), expected());
}

#[derive(Clone)]
struct CountWithState {
    count: ValueStateDescriptor<i64>,
}

impl KeyedProcessFunction<i64, i64, (i64, i64)> for CountWithState {
    fn process_element(
        &mut self,
        _v: i64,
        ctx: &mut KeyedContext<i64>,
        out: &mut Collector<(i64, i64)>,
    ) -> Result<()> {
        let key = *ctx.current_key();
        let mut count = ctx.state(&self.count);
        let n = count.value().copied().unwrap_or(0) + 1;
        count.update(n);
        out.collect((key, n));
        Ok(())
    }
}

#[test]
fn a_keyed_process_function_restores_its_value_state_from_the_checkpoint() {
    let env = env();
    let counts = env
        .from_sequence(0, N - 1)
        .key_by(|v: &i64| v % KEYS)
        .process(CountWithState { count: ValueStateDescriptor::new("count") })
        .uid("count");
    assert_eq!(run(env, counts), expected());
}

#[test]
fn a_rich_map_on_a_keyed_stream_restores_its_keyed_state_from_the_checkpoint() {
    let env = env();
    let count = ValueStateDescriptor::<i64>::new("count");
    let counts = env
        .from_sequence(0, N - 1)
        .key_by(|v: &i64| v % KEYS)
        .map(move |_v: i64, state: &mut KeyedStateStore<i64>| {
            let key = *state.current_key();
            let mut c = state.state(&count);
            let n = c.value().copied().unwrap_or(0) + 1;
            c.update(n);
            Ok((key, n))
        })
        .uid("rich count");
    assert_eq!(run(env, counts), expected());
}

/// Keeps a sum per key and reports it 10 ms (event time) after each key's first record.
#[derive(Clone)]
struct SumThenReport {
    sum: ValueStateDescriptor<i64>,
}

impl KeyedProcessFunction<String, (String, i64), (String, i64)> for SumThenReport {
    fn process_element(
        &mut self,
        v: (String, i64),
        ctx: &mut KeyedContext<String>,
        _out: &mut Collector<(String, i64)>,
    ) -> Result<()> {
        let first = ctx.state(&self.sum).value().is_none();
        let mut sum = ctx.state(&self.sum);
        let s = sum.value().copied().unwrap_or(0) + v.1;
        sum.update(s);
        if first {
            let at = ctx.timestamp().unwrap_or(0) + 10;
            ctx.timer_service().register_event_time_timer(at);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _ts: i64,
        ctx: &mut KeyedContext<String>,
        out: &mut Collector<(String, i64)>,
    ) -> Result<()> {
        let key = ctx.current_key().clone();
        let sum = ctx.state(&self.sum).value().copied().unwrap_or(0);
        out.collect((key, sum));
        Ok(())
    }
}

#[test]
fn keyed_state_and_timers_survive_a_snapshot_and_restore() {
    use eddy::testing::OneInputHarness;
    let pipeline = |s: DataStream<(String, i64)>| {
        s.key_by(|t: &(String, i64)| t.0.clone())
            .process(SumThenReport { sum: ValueStateDescriptor::new("sum") })
    };
    let first = [("a", 1, 100), ("b", 2, 101), ("a", 3, 102)];
    let second = [("b", 4, 103), ("c", 5, 104), ("a", 6, 105)];
    let feed = |h: &mut OneInputHarness<(String, i64), (String, i64)>, records: &[(&str, i64, i64)]| {
        for &(k, v, ts) in records {
            h.process_element((k.to_string(), v), ts).unwrap();
        }
    };
    // Uninterrupted.
    let mut whole = OneInputHarness::build(pipeline).unwrap();
    feed(&mut whole, &first);
    feed(&mut whole, &second);
    whole.process_watermark(200).unwrap();
    let mut expected = whole.take_records();
    expected.sort();
    assert_eq!(expected.len(), 3, "one report per key: {expected:?}");

    // Snapshot after the first part, restore into a new operator, go on.
    let mut before = OneInputHarness::build(pipeline).unwrap();
    feed(&mut before, &first);
    let state = before.snapshot(1).unwrap();
    assert!(state.is_some(), "a keyed process operator has state to snapshot");
    let mut after = OneInputHarness::build_restored(pipeline, state).unwrap();
    feed(&mut after, &second);
    after.process_watermark(200).unwrap();
    let mut restored = after.take_records();
    restored.sort();
    assert_eq!(restored, expected, "the timers of a and b and their sums came back");
}

#[test]
fn the_text_file_sink_commits_every_update_exactly_once_across_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let env = env();
    env.from_sequence(0, N - 1)
        .map(|v: i64| (v % KEYS, 1i64))
        .key_by(|t: &(i64, i64)| t.0)
        .sum(|t: &mut (i64, i64)| &mut t.1)
        .uid("sum")
        .transform("FailOnce", |_| Ok(FailOnce::after((N / 3) as u64)))
        .write_as_text(&out);
    let client = env.execute_async("exactly-once text files").unwrap();
    assert!(client.wait_timeout(JOB_LIMIT).is_terminal(), "the job did not end within {JOB_LIMIT:?}");
    client.wait().unwrap();
    assert_eq!(client.restarts(), 1);
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("part-"), "only committed files are left: {name}");
        lines.extend(std::fs::read_to_string(entry.path()).unwrap().lines().map(str::to_string));
    }
    lines.sort();
    let mut expected: Vec<String> =
        (0..KEYS).flat_map(|k| (1..=N / KEYS).map(move |c| format!("({k},{c})"))).collect();
    expected.sort();
    assert_eq!(lines.len(), expected.len(), "every update once: nothing lost, nothing twice");
    assert_eq!(lines, expected);
}
